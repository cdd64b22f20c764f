//! AF_XDP ports on real interfaces: brasa's XDP program in native mode on veth, what it
//! redirects into the socket and what it leaves to the kernel (ARP, ping to the host's own
//! address), the socket's rings under a flood, and attachment hygiene (a stale program of
//! brasa's is replaced, another program is never touched, nothing stays attached after the
//! port is dropped). Each test creates its own namespace (prefix `bxdp`) and deletes it when
//! it ends; needs root and a kernel with XDP sockets, which every test checks first and fails
//! on, saying so, when missing.

mod support;

use brasa_dataplane::build;
use brasa_dataplane::control::{self, ForwardRule};
use brasa_dataplane::io::afpacket::{RingConfig, TxRing};
use brasa_dataplane::io::netdev::NetDev;
use brasa_dataplane::io::worker::{
    self, Handle, IoKind, PortConfig, PortIo, Tuning, WorkerConfig, XdpPortConfig,
};
use brasa_dataplane::io::xdp::netlink::{self as xdp_netlink, Attached};
use brasa_dataplane::io::xdp::xsk::{Xsk, XskConfig, XskTarget};
use brasa_dataplane::io::xdp::{XdpMode, XdpModeRequest, XdpPort, PROGRAM_NAME};
use brasa_dataplane::pipeline::{pkt_type, Batch, IpHandoff, PacketMeta, Verdict};
use brasa_dataplane::wire::{EtherType, MacAddr};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use support::{wait_until, Capture, Netns, WAIT};

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

/// Workers on AF_XDP ports c0 and c1 (native XDP) forwarding key 01 out of c1 to r0's MAC;
/// `frames` UMEM frames per socket (half of them receive).
fn xdp_forwarder(ns: &Netns, frames: u32, workers: usize) -> (Handle, std::thread::JoinHandle<()>) {
    let r_mac = ns.mac("r0");
    let (handle, thread) = ns.enter(move || {
        let port = |name: &str| PortConfig {
            name: name.to_string(),
            ip_handoff: IpHandoff::Kernel,
            io: PortIo::AfXdp(XdpPortConfig {
                mode: XdpModeRequest::Native,
                umem: XskConfig {
                    frames,
                    ..XskConfig::default()
                },
                ..XdpPortConfig::default()
            }),
        };
        worker::start_tuned(
            WorkerConfig {
                ports: vec![port("c0"), port("c1")],
                tun: None,
                ring: RingConfig::default(),
                batch_size: 64,
                tick_interval: Duration::from_millis(100),
            },
            Tuning {
                workers,
                ..Tuning::default()
            },
        )
        .expect("workers")
    });
    for info in handle.ports() {
        assert_eq!(
            (info.io, info.xdp_mode, info.fallback.as_deref()),
            (IoKind::AfXdp, Some(XdpMode::Native), None),
            "{info:?}"
        );
    }
    let rule = ForwardRule::Ethernet {
        key: 0x01,
        device: "c1".into(),
        mac: r_mac.to_string(),
    };
    let added = handle
        .call(move |p, _| control::forward_add(p, &rule))
        .expect("workers");
    control::merged(added).expect("answer").expect("rule");
    (handle, thread)
}

fn stats(handle: &Handle) -> control::Stats {
    control::merged(handle.call(|p, _| control::stats(p)).expect("workers")).expect("answer")
}

fn drops(stats: &control::Stats, reason: &str) -> u64 {
    stats
        .drops
        .iter()
        .find(|(r, _)| r == reason)
        .map_or(0, |(_, n)| *n)
}

/// Sends `frames` out of `interface` through a transmit ring, waiting until the kernel took
/// them all.
fn blast(ring: &mut TxRing, frames: &[Vec<u8>]) {
    for chunk in frames.chunks(256) {
        let mut batch = Batch::new(chunk.len());
        for frame in chunk {
            assert!(batch.push(frame, PacketMeta::new(0, pkt_type::HOST, EtherType::COMET)));
        }
        for (_, meta) in batch.iter_mut() {
            meta.verdict = Verdict::Transmit(0);
        }
        let (accepted, attempted) = ring.send_from_batch(&batch, 0);
        assert_eq!(accepted, attempted);
        assert!(wait_until(|| ring.in_flight() == 0));
    }
}

/// Source s0 ═ c0 [workers, AF_XDP] c1 ═ r0: malformed frames are dropped and counted
/// (malformed COMET, and a runt the program leaves to the kernel), a flood that overruns the
/// receive ring while the worker is stalled is dropped by the kernel and counted per port,
/// and the data plane forwards everything sent after both.
#[test]
fn netns_xdp_worker_counts_malformed_frames_and_ring_overruns_and_keeps_forwarding() {
    require_xdp();
    let ns = Netns::with_prefix("bxdpw");
    ns.veth("s0", "c0");
    ns.veth("c1", "r0");
    let mut capture = Capture::open(&ns, "r0");
    let (handle, thread) = xdp_forwarder(&ns, 256, 1);
    let (s_mac, c_mac) = (ns.mac("s0"), ns.mac("c0"));
    let good = comet_frame(s_mac, c_mac, 1);
    let mut bad_version = good.clone();
    bad_version[14] = 0xff;
    let mut bad_index = good.clone();
    bad_index[15] = 0x7f;
    let truncated = good[..16].to_vec();
    let mut source = ns.tx_ring("s0", 1024);
    blast(
        &mut source,
        &[
            bad_version,
            bad_index,
            truncated,
            good.clone(),
            good.clone(),
        ],
    );
    assert_eq!(capture.wait_for(2, EtherType::COMET).len(), 2);
    assert!(
        wait_until(|| drops(&stats(&handle), "malformed_comet") == 3),
        "{:?}",
        stats(&handle).drops
    );

    // Stall the worker while 4000 frames arrive: the 128-frame RX ring overflows.
    let (stalled_tx, stalled) = std::sync::mpsc::channel();
    handle
        .submit(Box::new(move |_, _| {
            let _ = stalled_tx.send(());
            std::thread::sleep(Duration::from_millis(500));
        }))
        .expect("worker");
    stalled.recv().expect("stalled");
    let flood: Vec<Vec<u8>> = (0..4000)
        .map(|i| comet_frame(s_mac, c_mac, i as u8))
        .collect();
    blast(&mut source, &flood);
    assert!(
        wait_until(|| {
            let stats = stats(&handle);
            stats.interfaces[0].counters.rx_dropped > 0 && drops(&stats, "rx_ring_full") > 0
        }),
        "{:?}",
        stats(&handle)
    );
    let stats_after_flood = stats(&handle);
    let c0 = stats_after_flood.interfaces[0].counters;
    assert!(c0.rx_packets >= 128, "the ring's frames were read: {c0:?}");
    assert_eq!(
        c0.rx_packets + c0.rx_dropped,
        5 + 4000,
        "every frame was read or counted as dropped: {c0:?}"
    );
    // Forwarding goes on.
    let before = capture.frames.len();
    let after: Vec<Vec<u8>> = (0..100).map(|_| good.clone()).collect();
    blast(&mut source, &after);
    assert!(
        wait_until(|| {
            capture.poll();
            capture.frames.len() >= before + 100
        }),
        "{} of 100 forwarded after the flood",
        capture.frames.len() - before
    );
    assert_eq!(capture.oversized, 0);
    handle.stop();
    thread.join().expect("worker thread");
    assert_eq!(
        attached(&ns, "c0").mode,
        Attached::None,
        "the program is gone once the workers stopped"
    );
}

/// Two workers on AF_XDP ports: counters are per worker and summed on read.
#[test]
fn netns_xdp_two_workers_forward_and_sum_their_counters() {
    require_xdp();
    let ns = Netns::with_prefix("bxdp2");
    ns.veth("s0", "c0");
    ns.veth("c1", "r0");
    let mut capture = Capture::open(&ns, "r0");
    let (handle, thread) = xdp_forwarder(&ns, 512, 2);
    assert_eq!(handle.workers(), 2);
    let frames: Vec<Vec<u8>> = (0..300)
        .map(|i| comet_frame(ns.mac("s0"), ns.mac("c0"), i as u8))
        .collect();
    let mut source = ns.tx_ring("s0", 1024);
    // In bursts of 50, each forwarded before the next: a burst of all 300 can overflow the
    // veth backlog or an RX ring on a loaded machine, which this test is not about.
    for (sent, burst) in frames.chunks(50).enumerate() {
        blast(&mut source, burst);
        let expected = (sent + 1) * 50;
        assert_eq!(capture.wait_for(expected, EtherType::COMET).len(), expected);
    }
    let stats = stats(&handle);
    assert_eq!(stats.interfaces[0].counters.rx_packets, 300);
    assert_eq!(stats.interfaces[1].counters.tx_packets, 300);
    handle.stop();
    thread.join().expect("worker thread");
}

/// A TAP added at run time is a port of every worker: what the kernel sends out of it is
/// received (and counted) like any port's, a frame transmitted to it reaches the kernel, and
/// once removed the device is gone.
#[test]
fn netns_tap_port_added_and_removed_at_run_time() {
    let ns = Netns::with_prefix("bxdpt");
    ns.veth("s0", "c0");
    let (handle, thread) = ns.enter(|| {
        worker::start_tuned(
            WorkerConfig {
                ports: vec![PortConfig::af_packet("c0", IpHandoff::Kernel)],
                tun: None,
                ring: RingConfig::default(),
                batch_size: 64,
                tick_interval: Duration::from_millis(100),
            },
            Tuning {
                workers: 2,
                ..Tuning::default()
            },
        )
        .expect("workers")
    });
    let tap_handle = handle.clone();
    let id = ns
        .enter(move || tap_handle.add_tap_port("bxtap0"))
        .expect("TAP port");
    assert_eq!(id, 1);
    let ports = handle.ports();
    assert_eq!(ports[1].io, IoKind::Tap);
    // The kernel sends out of the TAP (an IPv4 address on it makes it send ARP requests).
    ns.sh("ip link set bxtap0 up && ip addr add 198.18.7.1/24 dev bxtap0");
    let _ = ns.output("ping", &["-c", "1", "-W", "1", "198.18.7.2"]);
    assert!(
        wait_until(|| stats(&handle).interfaces[1].counters.rx_packets > 0),
        "frames from the TAP were received: {:?}",
        stats(&handle).interfaces
    );
    // A second TAP of the same name is refused and changes nothing.
    let again = handle.clone();
    assert!(ns.enter(move || again.add_tap_port("bxtap0")).is_err());
    assert_eq!(handle.ports().len(), 2);
    // Configured interfaces cannot be removed; the TAP can, and then it is gone.
    assert!(matches!(
        handle.remove_port("c0"),
        Err(brasa_dataplane::io::IoError::NotRemovable(_))
    ));
    handle.remove_port("bxtap0").expect("removed");
    assert!(
        wait_until(|| !ns
            .output("ip", &["link", "show", "bxtap0"])
            .status
            .success()),
        "the TAP device disappears"
    );
    assert_eq!(stats(&handle).interfaces.len(), 1);
    handle.stop();
    thread.join().expect("worker thread");
}
