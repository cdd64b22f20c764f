//! `brasa dataplane` with AF_XDP interfaces: XDP in native mode on both ends of a veth pair
//! (two data planes in a row), attachment hygiene across kill -9 and restart (exactly one
//! program attached, never one left behind), a stale program of brasa's replaced, another
//! program never touched (the interface falls back to AF_PACKET and says why). Network
//! namespaces are the tests' own; needs root and a kernel with XDP sockets.

mod dataplane_support;

use brasa_dataplane::build;
use brasa_dataplane::io::netdev::NetDev;
use brasa_dataplane::io::xdp::asm::{reg, Asm};
use brasa_dataplane::io::xdp::netlink::{self as xdp_netlink, Attached, Attachment};
use brasa_dataplane::io::xdp::{bpf, XdpModeRequest, XdpPort, PROGRAM_NAME};
use brasa_dataplane::wire::comet::CometPacket;
use brasa_dataplane::wire::{EtherType, EthernetFrame};
use dataplane_support::{send_frames, veth, Capture, Daemon, Io, Netns, NetnsMac};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn attached(ns: &Netns, interface: &str) -> Attachment {
    let interface = interface.to_string();
    ns.enter(move || {
        let dev = NetDev::lookup(&interface).expect("interface");
        xdp_netlink::query(dev.ifindex).expect("query")
    })
}

fn wait_for_attachment(
    ns: &Netns,
    interface: &str,
    done: impl Fn(&Attachment) -> bool,
) -> Attachment {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = attached(ns, interface);
        if done(&found) || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn comet(net: (&Netns, &Netns), keys: &[u8]) -> Vec<u8> {
    let ip = build::ipv4_udp(
        Ipv4Addr::new(198, 18, 1, 2),
        Ipv4Addr::new(198, 18, 2, 2),
        4000,
        9,
        b"xdp",
    );
    build::comet_frame(net.0.mac("a0"), net.1.mac("c0"), 0, keys, &ip)
}

/// a ═ c [brasa] c1 ═ d0 [brasa] ═ b: the c1 ═ d0 pair has brasa's program in native mode on
/// both ends; a frame crosses both data planes, one key each.
#[test]
fn netns_xdp_native_on_both_ends_of_a_veth_pair() {
    let (a, c, d, b) = (
        Netns::new("xa"),
        Netns::new("xc"),
        Netns::new("xd"),
        Netns::new("xb"),
    );
    veth(&a, "a0", &c, "c0");
    veth(&c, "c1", &d, "d0");
    veth(&d, "d1", &b, "b0");
    let first = Daemon::start_io(&c, Io::AfXdp, &[("c0", "kernel"), ("c1", "kernel")]);
    let second = Daemon::start_io(&d, Io::AfXdp, &[("d0", "kernel"), ("d1", "kernel")]);
    for (ns, interface) in [(&c, "c1"), (&d, "d0")] {
        assert_eq!(
            attached(ns, interface).mode,
            Attached::Driver,
            "{interface}"
        );
    }
    for daemon in [&first, &second] {
        let ports = daemon.brasa_json(&["show", "dataplane", "ports"]);
        for port in ports.as_array().expect("ports") {
            assert_eq!(
                (port["io"].as_str(), port["xdp_mode"].as_str()),
                (Some("af-xdp"), Some("native")),
                "{port}"
            );
            assert_eq!(port["zero_copy"], false, "veth has copy mode only");
        }
    }
    first.cafe_ok(&[
        "forward",
        "add-ethernet",
        "0a",
        "c1",
        &d.mac("d0").to_string(),
    ]);
    second.cafe_ok(&[
        "forward",
        "add-ethernet",
        "0b",
        "d1",
        &b.mac("b0").to_string(),
    ]);
    let mut capture = Capture::open(&b, "b0");
    send_frames(
        &a,
        "a0",
        vec![comet((&a, &c), &[0x0a, 0x0b]); 5],
        EtherType::COMET,
    );
    let got = capture.wait_for_matching(5, WAIT, |f| {
        EthernetFrame::new_checked(f).is_ok_and(|e| e.ethertype() == EtherType::COMET)
    });
    assert_eq!(got.len(), 5, "{}\n{}", first.log_text(), second.log_text());
    for frame in got {
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!((eth.src(), eth.dst()), (d.mac("d1"), b.mac("b0")));
        assert_eq!(CometPacket::new_checked(eth.payload()).unwrap().index(), 2);
    }
    let text = second.brasa_text(&["show", "dataplane", "ports"]);
    assert!(text.contains("af_xdp") && text.contains("native"), "{text}");
}

/// kill -9 leaves nothing attached (the kernel detaches a link whose owner died); a restart
/// attaches exactly one program, brasa's; a clean stop leaves nothing.
#[test]
fn netns_xdp_kill_9_and_restart_leave_exactly_one_program() {
    let (a, c) = (Netns::new("xka"), Netns::new("xkc"));
    veth(&a, "a0", &c, "c0");
    let mut daemon = Daemon::start_io(&c, Io::AfXdp, &[("c0", "kernel")]);
    let first = attached(&c, "c0");
    assert_eq!(first.mode, Attached::Driver);
    assert_eq!(bpf::program_name(first.prog_id).unwrap(), PROGRAM_NAME);
    daemon.kill_9();
    let after_kill = wait_for_attachment(&c, "c0", |a| a.mode == Attached::None);
    assert_eq!(
        after_kill.mode,
        Attached::None,
        "nothing left after kill -9"
    );
    let restarted = Daemon::start_io(&c, Io::AfXdp, &[("c0", "kernel")]);
    let second = attached(&c, "c0");
    assert_eq!(second.mode, Attached::Driver);
    assert_ne!(second.prog_id, first.prog_id);
    assert_eq!(bpf::program_name(second.prog_id).unwrap(), PROGRAM_NAME);
    restarted.cafe_ok(&["stats"]);
    drop(restarted);
    assert_eq!(
        wait_for_attachment(&c, "c0", |a| a.mode == Attached::None).mode,
        Attached::None,
        "nothing left after a clean stop"
    );
    drop(daemon);
}

/// A program of brasa's attached the old way (as on a kernel without XDP links) by a brasa
/// that was killed outlives it; the next brasa finds it by name and replaces it, and leaves
/// nothing when it stops.
#[test]
fn netns_xdp_stale_program_of_brasa_is_replaced() {
    let (a, c) = (Netns::new("xsa"), Netns::new("xsc"));
    veth(&a, "a0", &c, "c0");
    let stale = c.enter(|| {
        let dev = NetDev::lookup("c0").expect("c0");
        let port =
            XdpPort::attach_netlink("c0", dev.ifindex, dev.mac, 1, false, XdpModeRequest::Native)
                .expect("attach");
        // As if the process died: nothing detaches it.
        std::mem::forget(port);
        xdp_netlink::query(dev.ifindex).expect("query")
    });
    assert_eq!(stale.mode, Attached::Driver);
    // Still there after the thread that attached it is gone.
    assert_eq!(attached(&c, "c0").prog_id, stale.prog_id);
    let daemon = Daemon::start_io(&c, Io::AfXdp, &[("c0", "kernel")]);
    let now = attached(&c, "c0");
    assert_eq!(now.mode, Attached::Driver);
    assert_ne!(now.prog_id, stale.prog_id, "the stale program was replaced");
    assert!(
        daemon
            .log_text()
            .contains("removed a stale brasa XDP program"),
        "{}",
        daemon.log_text()
    );
    drop(daemon);
    assert_eq!(
        wait_for_attachment(&c, "c0", |a| a.mode == Attached::None).mode,
        Attached::None
    );
}

/// Another program on the interface is never touched: brasa uses AF_PACKET there and says
/// why, in its log and in `show dataplane ports`.
#[test]
fn netns_xdp_another_program_is_left_alone_and_af_packet_is_used() {
    let (a, c) = (Netns::new("xoa"), Netns::new("xoc"));
    veth(&a, "a0", &c, "c0");
    let other = c.enter(|| {
        let mut asm = Asm::new();
        asm.mov_imm(reg::R0, 2).exit();
        let program =
            bpf::Program::load_xdp("not_brasa", &asm.finish().expect("assemble")).expect("load");
        let dev = NetDev::lookup("c0").expect("c0");
        xdp_netlink::set(
            dev.ifindex,
            program.raw_fd(),
            xdp_netlink::XDP_FLAGS_DRV_MODE,
        )
        .expect("attach");
        xdp_netlink::query(dev.ifindex).expect("query")
    });
    let daemon = Daemon::start_with(
        &c,
        &[],
        "[[dataplane.interface]]\nname = \"c0\"\nio = \"af_xdp\"\n",
    );
    let ports = daemon.brasa_json(&["show", "dataplane", "ports"]);
    let port = &ports[0];
    assert_eq!(port["io"], "af-packet", "{port}");
    let reason = port["fallback"].as_str().expect("a reason");
    assert!(reason.contains("not_brasa"), "{reason}");
    assert!(
        daemon
            .log_text()
            .contains("AF_XDP is not available on this interface; using AF_PACKET"),
        "{}",
        daemon.log_text()
    );
    assert_eq!(attached(&c, "c0").prog_id, other.prog_id);
    drop(daemon);
    assert_eq!(attached(&c, "c0").prog_id, other.prog_id, "still attached");
    c.enter(|| {
        let dev = NetDev::lookup("c0").expect("c0");
        xdp_netlink::set(dev.ifindex, -1, xdp_netlink::XDP_FLAGS_DRV_MODE).expect("detach");
    });
}
