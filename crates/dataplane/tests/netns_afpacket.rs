//! The AF_PACKET shell on real interfaces: the transmit ring (delivery across a veth pair,
//! wrap-around, a full ring, MTU limits and the fallback for frames larger than a slot) and
//! the worker forwarding through it, following MTU changes as they happen. Each test creates its own network namespace and veth
//! pairs inside it, and deletes them when it ends; needs root. Named `netns_*` so nextest's
//! `serial` group runs them one at a time.

use brasa_dataplane::build;
use brasa_dataplane::control::{self, ForwardRule};
mod support;

use brasa_dataplane::io::afpacket::RingConfig;
use brasa_dataplane::io::worker::{self, PortConfig, Tuning, WorkerConfig};
use brasa_dataplane::pipeline::{pkt_type, Batch, IpHandoff, PacketMeta, Verdict};
use brasa_dataplane::wire::comet::CometPacket;
use brasa_dataplane::wire::{EtherType, EthernetFrame};
use std::net::Ipv4Addr;
use std::time::Duration;
use support::{wait_until, Capture, Netns};

/// IEEE local experimental EtherType: nothing in the namespace reacts to it.
const TEST_TYPE: u16 = 0x88b5;

/// A test frame of `len` bytes carrying sequence number `seq`.
fn frame(seq: u32, len: usize) -> Vec<u8> {
    let mut frame = vec![0u8; len.max(18)];
    frame[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xb0]);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xa0]);
    frame[12..14].copy_from_slice(&TEST_TYPE.to_be_bytes());
    frame[14..18].copy_from_slice(&seq.to_be_bytes());
    for (i, byte) in frame[18..].iter_mut().enumerate() {
        *byte = (seq as usize + i) as u8;
    }
    frame
}

fn seq(frame: &[u8]) -> u32 {
    u32::from_be_bytes([frame[14], frame[15], frame[16], frame[17]])
}

/// A batch whose frames are all to be sent on port 0.
fn batch_of(frames: &[Vec<u8>]) -> Batch {
    let mut batch = Batch::new(frames.len().max(1));
    for frame in frames {
        assert!(batch.push(frame, PacketMeta::new(0, pkt_type::HOST, TEST_TYPE)));
    }
    for (_, meta) in batch.iter_mut() {
        meta.verdict = Verdict::Transmit(0);
    }
    batch
}

#[test]
fn netns_tx_ring_delivers_a_batch_across_a_veth_pair() {
    let ns = Netns::new();
    ns.veth("a0", "b0");
    let mut capture = Capture::open(&ns, "b0");
    let mut ring = ns.tx_ring("a0", 1024);
    let frames: Vec<Vec<u8>> = (0..200).map(|i| frame(i, 60 + i as usize * 7)).collect();
    assert_eq!(ring.send_from_batch(&batch_of(&frames), 0), (200, 200));
    let got = capture.wait_for(200, TEST_TYPE);
    assert_eq!(got, frames, "frames arrive whole and in order");
    assert!(wait_until(|| ring.in_flight() == 0));
    assert!(!ring.flush());
    assert!(capture.ring.take_statistics().is_ok_and(|s| s.drops == 0));
}

#[test]
fn netns_tx_ring_wraps_around() {
    let ns = Netns::new();
    ns.veth("a0", "b0");
    let mut capture = Capture::open(&ns, "b0");
    let mut ring = ns.tx_ring("a0", 8);
    // Rounded up to one 64 KiB block of 2 KiB slots.
    let slots = ring.slots();
    assert_eq!(slots, 32);
    let total = slots as u32 * 3 + 5;
    let frames: Vec<Vec<u8>> = (0..total).map(|i| frame(i, 64)).collect();
    for chunk in frames.chunks(20) {
        assert_eq!(
            ring.send_from_batch(&batch_of(chunk), 0),
            (chunk.len(), chunk.len())
        );
        // Slots come back once the peer has received the frames.
        assert!(wait_until(|| ring.in_flight() == 0), "slots not given back");
    }
    let got = capture.wait_for(total as usize, TEST_TYPE);
    assert_eq!(got.len(), total as usize);
    assert!(got.iter().map(|f| seq(f)).eq(0..total), "in order");
    assert_eq!(got, frames);
}

#[test]
fn netns_tx_ring_full_refuses_frames_and_sends_them_when_the_link_returns() {
    let ns = Netns::new();
    ns.veth("a0", "b0");
    let mut capture = Capture::open(&ns, "b0");
    let mut ring = ns.tx_ring("a0", 8);
    let slots = ring.slots();
    // Peer down: a0 loses its carrier, the kernel cannot send and keeps the slots queued.
    ns.sh("ip link set b0 down");
    let frames: Vec<Vec<u8>> = (0..slots as u32 + 10).map(|i| frame(i, 64)).collect();
    let (mut accepted, mut attempted) = (0, 0);
    for chunk in frames.chunks(16) {
        let (a, t) = ring.send_from_batch(&batch_of(chunk), 0);
        accepted += a;
        attempted += t;
    }
    assert_eq!(attempted, frames.len());
    assert_eq!(
        accepted, slots,
        "the ring holds `slots` frames, the rest is refused"
    );
    assert_eq!(ring.in_flight(), slots);
    assert!(ring.flush(), "frames still wait");
    ns.sh("ip link set b0 up");
    assert!(
        wait_until(|| !ring.flush() && ring.in_flight() == 0),
        "queued frames left once the link came back ({} in flight)",
        ring.in_flight()
    );
    let got = capture.wait_for(slots, TEST_TYPE);
    assert_eq!(got, frames[..slots].to_vec(), "the queued frames, in order");
    // The ring works normally afterwards.
    let more = vec![frame(1000, 64)];
    assert_eq!(ring.send_from_batch(&batch_of(&more), 0), (1, 1));
    assert_eq!(capture.wait_for(slots + 1, TEST_TYPE).last(), more.last());
}

#[test]
fn netns_tx_ring_checks_the_mtu_and_sends_frames_larger_than_a_slot() {
    let ns = Netns::new();
    ns.veth("a0", "b0");
    let mut capture = Capture::open(&ns, "b0");
    let mut ring = ns.tx_ring("a0", 64);
    assert_eq!(ring.slot_capacity(), 2048 - 32 - 10);
    // MTU 1500: 1514 bytes untagged, 1518 with an 802.1Q tag; nothing shorter than a header.
    let mut tagged = frame(3, 1518);
    tagged[12..14].copy_from_slice(&EtherType::VLAN.to_be_bytes());
    tagged[16..18].copy_from_slice(&TEST_TYPE.to_be_bytes());
    let mut tagged_long = tagged.clone();
    tagged_long.push(0);
    let batch = [
        frame(0, 1514),
        frame(1, 1515),
        frame(2, 18)[..12].to_vec(),
        tagged.clone(),
        tagged_long,
    ];
    assert_eq!(ring.send_from_batch(&batch_of(&batch), 0), (2, 5));
    assert_eq!(capture.wait_for(1, TEST_TYPE), vec![batch[0].clone()]);
    assert_eq!(
        capture.wait_for(1, EtherType::VLAN).len(),
        1,
        "the tagged frame"
    );
    // Raised MTU: a frame larger than a slot goes out through the fallback socket, after the
    // frames queued before it; longer than the MTU is still refused.
    ns.sh("ip link set a0 mtu 3000 && ip link set b0 mtu 3000");
    ring.refresh_mtu().expect("MTU");
    let batch = [
        frame(10, 1000),
        frame(11, 2500),
        frame(12, 3015),
        frame(13, 1000),
    ];
    assert_eq!(ring.send_from_batch(&batch_of(&batch), 0), (3, 4));
    let got = capture.wait_for(4, TEST_TYPE);
    let mut seqs: Vec<u32> = got.iter().map(|f| seq(f)).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [0, 10, 11, 13]);
    assert!(got.contains(&batch[1]), "the 2500-byte frame arrives whole");
}

/// Workers on c0 and c1 of `ns` that forward key 01 out of c1 to r0's MAC.
fn forwarder(
    ns: &Netns,
    tick_interval: Duration,
    tuning: Tuning,
) -> (worker::Handle, std::thread::JoinHandle<()>) {
    let r_mac = ns.mac("r0");
    let (handle, thread) = ns.enter(move || {
        worker::start_tuned(
            WorkerConfig {
                ports: ["c0", "c1"]
                    .iter()
                    .map(|name| PortConfig::af_packet(name, IpHandoff::Kernel))
                    .collect(),
                tun: None,
                ring: RingConfig::default(),
                batch_size: 64,
                tick_interval,
            },
            tuning,
        )
        .expect("worker")
    });
    let rule = ForwardRule::Ethernet {
        key: 0x01,
        device: "c1".into(),
        mac: r_mac.to_string(),
    };
    let added = handle
        .call(move |p, _| control::forward_add(p, &rule))
        .expect("workers running");
    control::merged(added).expect("an answer").expect("rule");
    (handle, thread)
}

/// Source s0 ═ c0 [worker(s)] c1 ═ r0 receiver, in one namespace: the workers forward COMET
/// frames by key through their transmit path (ring, or `sendmmsg` for comparison) and count
/// what they received in the one pipeline they share.
fn worker_forwards(tuning: Tuning) {
    let ns = Netns::new();
    ns.veth("s0", "c0");
    ns.veth("c1", "r0");
    let mut capture = Capture::open(&ns, "r0");
    let r_mac = ns.mac("r0");
    let (handle, thread) = forwarder(&ns, Duration::from_millis(100), tuning);
    let ip = build::ipv4_udp(
        Ipv4Addr::new(198, 18, 1, 2),
        Ipv4Addr::new(198, 18, 2, 2),
        4000,
        9,
        b"through the ring",
    );
    let comet = build::comet_frame(ns.mac("s0"), ns.mac("c0"), 0, &[0x01, 0x02], &ip);
    let frames = vec![comet; 300];
    let mut source = ns.tx_ring("s0", 1024);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (index, chunk) in frames.chunks(100).enumerate() {
        // The frames reach c0 on the sending CPU: send from each CPU in turn, so that with
        // several workers every one of them gets some (PACKET_FANOUT_CPU).
        set_cpu(index % cpus);
        let mut batch = Batch::new(chunk.len());
        for frame in chunk {
            assert!(batch.push(frame, PacketMeta::new(0, pkt_type::HOST, EtherType::COMET)));
        }
        for (_, meta) in batch.iter_mut() {
            meta.verdict = Verdict::Transmit(0);
        }
        assert_eq!(source.send_from_batch(&batch, 0), (100, 100));
        assert!(wait_until(|| source.in_flight() == 0));
    }
    let got = capture.wait_for(300, EtherType::COMET);
    assert_eq!(got.len(), 300);
    let c1_mac = ns.mac("c1");
    for out in &got {
        let eth = EthernetFrame::new_checked(&out[..]).expect("Ethernet");
        assert_eq!(eth.dst(), r_mac);
        assert_eq!(eth.src(), c1_mac);
        let comet = CometPacket::new_checked(eth.payload()).expect("COMET");
        assert_eq!((comet.index(), comet.keys()), (1, &[0x01, 0x02][..]));
        assert_eq!(comet.payload(), &ip[..]);
    }
    let stats = stats(&handle);
    assert_eq!(stats.interfaces[0].counters.rx_packets, 300);
    assert_eq!(stats.interfaces[1].counters.tx_packets, 300);
    for reason in ["rx_ring_full", "tx_error"] {
        assert!(
            stats.drops.contains(&(reason.to_string(), 0)),
            "{reason}: {:?}",
            stats.drops
        );
    }
    handle.stop();
    thread.join().expect("worker thread");
}

fn set_cpu(cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is the empty set; `cpu` is below the CPU count.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: sets this thread's affinity to a valid set.
    let ret = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(ret, 0, "sched_setaffinity");
}

#[test]
fn netns_worker_forwards_through_its_transmit_ring() {
    worker_forwards(Tuning {
        cpus: vec![0],
        ..Tuning::default()
    });
}

#[test]
fn netns_worker_forwards_with_sendmmsg() {
    worker_forwards(Tuning {
        sendmmsg: true,
        ..Tuning::default()
    });
}

#[test]
fn netns_two_workers_share_the_pipeline_and_its_counters() {
    worker_forwards(Tuning {
        workers: 2,
        ..Tuning::default()
    });
}

#[test]
fn worker_refuses_a_cpu_that_does_not_exist() {
    let err = worker::start_tuned(
        WorkerConfig {
            ports: Vec::new(),
            tun: None,
            ring: RingConfig::default(),
            batch_size: 1,
            tick_interval: Duration::from_millis(100),
        },
        Tuning {
            cpus: vec![1023],
            ..Tuning::default()
        },
    );
    assert!(err.is_err());
}

/// The counters of every worker, summed.
fn stats(handle: &worker::Handle) -> control::Stats {
    let all = handle
        .call(|p, _| control::stats(p))
        .expect("workers running");
    control::merged(all).expect("an answer")
}

fn tx_errors(handle: &worker::Handle) -> u64 {
    let stats = stats(handle);
    let found = stats.drops.iter().find(|(reason, _)| reason == "tx_error");
    found.expect("tx_error counter").1
}

/// A worker whose tick is 10 s follows MTU changes of its egress interface at once (from the
/// kernel's link notifications), in both directions: after `ip link set c1 mtu 1600` a
/// 1614-byte frame leaves, after `mtu 1500` it is refused again while a 1514-byte one leaves.
#[test]
fn netns_worker_follows_mtu_changes_at_once() {
    let ns = Netns::with_prefix("qraemtu");
    ns.veth("s0", "c0");
    ns.veth("c1", "r0");
    // Only c1's MTU limits what crosses: every other end takes jumbo frames.
    ns.sh("ip link set s0 mtu 9000 && ip link set c0 mtu 9000 && ip link set r0 mtu 9000");
    let mut capture = Capture::open(&ns, "r0");
    let (handle, thread) = forwarder(&ns, Duration::from_secs(10), Tuning::default());
    // COMET frames that leave c1 with `len` bytes (the forward stage keeps their length).
    let (s_mac, c_mac) = (ns.mac("s0"), ns.mac("c0"));
    let comet_of_len = |len: usize| {
        let ip = |payload: usize| {
            build::ipv4_udp(
                Ipv4Addr::new(198, 18, 1, 2),
                Ipv4Addr::new(198, 18, 2, 2),
                4000,
                9,
                &vec![0x5a; payload],
            )
        };
        let overhead = build::comet_frame(s_mac, c_mac, 0, &[0x01], &ip(0)).len();
        let frame = build::comet_frame(s_mac, c_mac, 0, &[0x01], &ip(len - overhead));
        assert_eq!(frame.len(), len);
        frame
    };
    let (big, small) = (comet_of_len(1614), comet_of_len(1514));
    let mut source = ns.tx_ring("s0", 64);
    let mut send = |frame: &Vec<u8>| {
        let mut batch = Batch::new(1);
        assert!(batch.push(frame, PacketMeta::new(0, pkt_type::HOST, EtherType::COMET)));
        for (_, meta) in batch.iter_mut() {
            meta.verdict = Verdict::Transmit(0);
        }
        assert_eq!(source.send_from_batch(&batch, 0), (1, 1));
    };

    // MTU 1500: the 1614-byte frame is refused.
    send(&big);
    assert!(
        wait_until(|| tx_errors(&handle) == 1),
        "{:?}",
        stats(&handle).drops
    );
    // Raised to 1600: it leaves, without waiting for a tick.
    ns.sh("ip link set c1 mtu 1600");
    send(&big);
    let got = capture.wait_for(1, EtherType::COMET);
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [1614]);
    assert_eq!(tx_errors(&handle), 1);
    // Lowered to 1500 again: refused again, while a frame that fits still leaves.
    ns.sh("ip link set c1 mtu 1500");
    send(&big);
    assert!(
        wait_until(|| tx_errors(&handle) == 2),
        "{:?}",
        stats(&handle).drops
    );
    send(&small);
    let got = capture.wait_for(2, EtherType::COMET);
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [1614, 1514]);
    handle.stop();
    thread.join().expect("worker thread");
}
