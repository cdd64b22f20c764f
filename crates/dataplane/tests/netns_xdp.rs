//! AF_XDP ports on real interfaces: brasa's XDP program in native mode on veth, what it
//! redirects into the socket and what it leaves to the kernel (ARP, ping to the host's own
//! address), the socket's rings under a flood, and attachment hygiene (a stale program of
//! brasa's is replaced, another program is never touched, nothing stays attached after the
//! port is dropped). Each test creates its own namespace (prefix `bxdp`) and deletes it when
//! it ends; needs root and a kernel with XDP sockets, which every test checks first and fails
//! on, saying so, when missing.

mod support;

use brasa_dataplane::build;
use brasa_dataplane::io::netdev::NetDev;
use brasa_dataplane::io::xdp::netlink::{self as xdp_netlink, Attached};
use brasa_dataplane::io::xdp::xsk::{Xsk, XskConfig, XskTarget};
use brasa_dataplane::io::xdp::{XdpMode, XdpModeRequest, XdpPort, PROGRAM_NAME};
use brasa_dataplane::pipeline::Batch;
use brasa_dataplane::wire::{EtherType, MacAddr};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use support::{Netns, WAIT};

/// Fails (does not skip) when the kernel cannot run the tests.
fn require_xdp() {
    // SAFETY: socket(2); closed right away.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    assert!(
        fd >= 0,
        "this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: closes the descriptor just opened.
    unsafe { libc::close(fd) };
}

fn attached(ns: &Netns, interface: &str) -> xdp_netlink::Attachment {
    let interface = interface.to_string();
    ns.enter(move || {
        let dev = NetDev::lookup(&interface).expect("interface");
        xdp_netlink::query(dev.ifindex).expect("query")
    })
}

struct Port {
    xdp: XdpPort,
    xsk: Xsk,
}

/// brasa's program on `interface` with a socket on queue 0.
fn open_port(ns: &Netns, interface: &str, redirect_all: bool) -> Port {
    let interface = interface.to_string();
    ns.enter(move || {
        let dev = NetDev::lookup(&interface).expect("interface");
        let xdp = XdpPort::attach(
            &interface,
            dev.ifindex,
            dev.mac,
            1,
            redirect_all,
            XdpModeRequest::Native,
        )
        .expect("attach");
        let xsk = Xsk::open(
            &interface,
            XskTarget {
                ifindex: dev.ifindex,
                queue: 0,
                port: 0,
                mac: dev.mac,
                mtu: 1500,
            },
            XskConfig {
                frames: 256,
                ..XskConfig::default()
            },
        )
        .expect("socket");
        xdp.register(0, xsk.raw_fd()).expect("register");
        Port { xdp, xsk }
    })
}

impl Port {
    /// Frames received within `wait` (stops early once `count` arrived).
    fn receive(&mut self, count: usize, wait: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut batch = Batch::new(64);
        let mut frames = Vec::new();
        while frames.len() < count && Instant::now() < deadline {
            let mut oversized = 0;
            while self.xsk.receive(&mut batch, &mut oversized) > 0 {
                frames.extend(batch.iter().map(|(buf, _)| buf.as_slice().to_vec()));
                batch.clear();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        frames
    }
}

fn comet_frame(src: MacAddr, dst: MacAddr, tag: u8) -> Vec<u8> {
    let ip = build::ipv4_udp(
        Ipv4Addr::new(198, 18, 1, 2),
        Ipv4Addr::new(198, 18, 2, 2),
        4000,
        9,
        &[tag; 32],
    );
    build::comet_frame(src, dst, 0, &[0x01], &ip)
}

fn send(ns: &Netns, interface: &str, frames: Vec<Vec<u8>>) {
    let interface = interface.to_string();
    ns.enter(move || {
        use brasa_dataplane::io::afpacket::TxSocket;
        use brasa_dataplane::pipeline::{pkt_type, PacketMeta, Verdict};
        let dev = NetDev::lookup(&interface).expect("interface");
        let mut socket = TxSocket::open(&interface, dev.ifindex).expect("socket");
        let mut batch = Batch::new(frames.len().max(1));
        for frame in &frames {
            assert!(batch.push(frame, PacketMeta::new(0, pkt_type::HOST, EtherType::COMET)));
        }
        for (_, meta) in batch.iter_mut() {
            meta.verdict = Verdict::Transmit(0);
        }
        let (accepted, attempted) = socket.send_from_batch(&batch, 0);
        assert_eq!(accepted, attempted);
    });
}

/// Host `h` (s0, 198.18.0.2) ═ (c0, 198.18.0.1) `c`, brasa's program on c0.
fn pair() -> (Netns, Netns) {
    let (h, c) = (Netns::with_prefix("bxdph"), Netns::with_prefix("bxdpc"));
    h.veth_to("s0", &c, "c0");
    h.sh("ip addr add 198.18.0.2/24 dev s0");
    c.sh("ip addr add 198.18.0.1/24 dev c0");
    (h, c)
}

#[test]
fn netns_xdp_native_redirects_comet_and_leaves_arp_and_ping_to_the_kernel() {
    require_xdp();
    let (h, c) = pair();
    let mut port = open_port(&c, "c0", false);
    assert_eq!(port.xdp.mode(), XdpMode::Native);
    let found = attached(&c, "c0");
    assert_eq!(found.mode, Attached::Driver);
    assert_eq!(
        brasa_dataplane::io::xdp::bpf::program_name(found.prog_id).unwrap(),
        PROGRAM_NAME
    );
    // COMET and transit IPv4 to c0's MAC are the data plane's.
    let mut frames: Vec<Vec<u8>> = (0..10)
        .map(|i| comet_frame(h.mac("s0"), c.mac("c0"), i))
        .collect();
    let transit = build::ipv4_udp(
        Ipv4Addr::new(198, 18, 0, 2),
        Ipv4Addr::new(198, 18, 9, 9),
        4000,
        9,
        b"transit",
    );
    frames.push(build::ethernet(
        h.mac("s0"),
        c.mac("c0"),
        EtherType::IPV4,
        &transit,
    ));
    send(&h, "s0", frames.clone());
    let got = port.receive(frames.len(), WAIT);
    assert_eq!(got, frames);
    // The kernel still answers ARP and ping for its own address on the same port, and none
    // of that reaches the socket.
    let ping = h.output("ping", &["-c", "3", "-i", "0.2", "-W", "2", "198.18.0.1"]);
    assert!(
        ping.status.success(),
        "ping: {}{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr)
    );
    assert!(port.receive(1, Duration::from_millis(200)).is_empty());
    drop(port);
    assert_eq!(attached(&c, "c0").mode, Attached::None);
}
