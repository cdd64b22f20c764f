//! In-memory throughput of the CAFE pipeline: transit forwarding, ingress intercept +
//! encapsulation with 10 000 filters, egress decapsulation. Prints Mpps and TSC cycles per
//! packet on one core, then the same with one pipeline per worker thread on `BENCH_WORKERS`
//! threads (default 2, pinned to CPUs 0, 1, …) and the scaling against one.
//!
//!     [BENCH_WORKERS=2] cargo run --release -p brasa-dataplane --example pipeline_bench [-- SECONDS]
//!
//! Each batch is refilled from template frames before it runs (the copy a receive ring costs is
//! included), then classified, looked up and rewritten in place. With several workers each has
//! its own pipeline, built the way the data plane builds them (replicated tables, counters of
//! its own), as the shell's workers do.

use brasa_dataplane::build;
use brasa_dataplane::control::{self, FilterRequest, ForwardRule};
use brasa_dataplane::pipeline::{
    pkt_type, Batch, IpHandoff, LinkKind, PacketMeta, Pipeline, Port, Verdict,
};
use brasa_dataplane::stages::cafe_stages;
use brasa_dataplane::wire::{EtherType, MacAddr};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const BATCH: usize = 256;
const MAC_IN: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const MAC_PEER: MacAddr = MacAddr([0xaa, 0x11, 0xb0, 0, 0, 1]);

fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions on x86_64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

fn pipeline() -> Pipeline {
    let port = |name: &str| Port {
        name: name.into(),
        link: LinkKind::Ethernet,
        mac: MAC_IN,
        ip_handoff: IpHandoff::Kernel,
    };
    let mut p = Pipeline::new(vec![port("in0"), port("out0")], cafe_stages());
    for key in [0x01u8, 0x21] {
        control::forward_add(
            &mut p,
            &ForwardRule::Ethernet {
                key,
                device: "out0".into(),
                mac: MAC_PEER.to_string(),
            },
        )
        .expect("rule");
    }
    p
}

fn pin_to(cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is the empty set; `cpu` is below CPU_SETSIZE.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: sets this thread's affinity; failure leaves it unpinned, which only costs accuracy.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}

/// Runs `workers` threads for `seconds`, each with a pipeline and frames from `make`, started
/// together; returns the packets all of them ran per second.
fn run_workers(
    make: &(dyn Fn() -> (Pipeline, Vec<Vec<u8>>) + Sync),
    workers: usize,
    seconds: f64,
) -> f64 {
    let barrier = std::sync::Barrier::new(workers);
    let deadline = Duration::from_secs_f64(seconds);
    let counts: Vec<(u64, f64)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..workers)
            .map(|index| {
                let barrier = &barrier;
                scope.spawn(move || {
                    pin_to(index);
                    let (mut pipeline, frames) = make();
                    let mut batch = Batch::new(BATCH);
                    let mut next = 0usize;
                    let mut packets = 0u64;
                    barrier.wait();
                    let start = Instant::now();
                    while start.elapsed() < deadline {
                        for _ in 0..256 {
                            batch.clear();
                            for _ in 0..BATCH {
                                batch.push(
                                    &frames[next % frames.len()],
                                    PacketMeta::new(0, pkt_type::HOST, 0),
                                );
                                next += 1;
                            }
                            pipeline.run(&mut batch, packets);
                            packets += BATCH as u64;
                        }
                    }
                    (packets, start.elapsed().as_secs_f64())
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("worker"))
            .collect()
    });
    counts
        .iter()
        .map(|(packets, elapsed)| *packets as f64 / elapsed)
        .sum()
}

fn scaling(name: &str, make: &(dyn Fn() -> (Pipeline, Vec<Vec<u8>>) + Sync), seconds: f64) {
    let workers: usize = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let one = run_workers(make, 1, seconds);
    let many = run_workers(make, workers, seconds);
    println!(
        "{name:<44} 1 worker {:>6.2} Mpps, {workers} workers {:>6.2} Mpps: {:.2}x",
        one / 1e6,
        many / 1e6,
        many / one
    );
}

fn run(name: &str, pipeline: &mut Pipeline, frames: &[Vec<u8>], seconds: f64, expect: Verdict) {
    let mut batch = Batch::new(BATCH);
    let mut next = 0usize;
    let mut packets = 0u64;
    // Warm-up, and a check that the scenario does what it claims.
    for _ in 0..64 {
        batch.clear();
        for _ in 0..BATCH {
            batch.push(
                &frames[next % frames.len()],
                PacketMeta::new(0, pkt_type::HOST, 0),
            );
            next += 1;
        }
        pipeline.run(&mut batch, 0);
        assert!(
            batch.iter().all(|(_, meta)| meta.verdict == expect),
            "{name}: unexpected verdicts"
        );
    }
    let deadline = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let start_cycles = cycles();
    while start.elapsed() < deadline {
        for _ in 0..256 {
            batch.clear();
            for _ in 0..BATCH {
                batch.push(
                    &frames[next % frames.len()],
                    PacketMeta::new(0, pkt_type::HOST, 0),
                );
                next += 1;
            }
            pipeline.run(&mut batch, packets);
            packets += BATCH as u64;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let spent_cycles = cycles() - start_cycles;
    println!(
        "{name:<44} {:>7.2} Mpps  {:>6.1} cycles/packet  ({packets} packets in {elapsed:.2} s, {}-byte frames)",
        packets as f64 / elapsed / 1e6,
        spent_cycles as f64 / packets as f64,
        frames[0].len()
    );
}

/// Ingress edge: 10 000 exact 5-tuple filters and a frame for each.
fn edge(payload: &[u8]) -> (Pipeline, Vec<Vec<u8>>) {
    let mut edge = pipeline();
    let filters = 10_000u32;
    let mut frames = Vec::with_capacity(filters as usize);
    for id in 0..filters {
        let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + 256 + id);
        let request = FilterRequest {
            id,
            timeout: 0,
            src: Some(src.into()),
            dst: Some(Ipv4Addr::new(198, 19, 0, 1).into()),
            protocol: 17,
            src_port: 4000,
            dst_port: 80,
            keys: "2132".into(),
            bandwidth: 0,
            cos: String::new(),
            as_path: vec![],
        };
        control::intercept_add(&mut edge, &request, 0).expect("filter");
        let packet = build::ipv4_udp(src, Ipv4Addr::new(198, 19, 0, 1), 4000, 80, payload);
        frames.push(build::ethernet(MAC_PEER, MAC_IN, EtherType::IPV4, &packet));
    }
    (edge, frames)
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let payload = [0u8; 18]; // 64-byte IPv4/UDP packet inside
    let ip = build::ipv4_udp(
        Ipv4Addr::new(198, 18, 1, 2),
        Ipv4Addr::new(198, 18, 2, 2),
        4000,
        80,
        &payload,
    );
    // Transit: COMET frames, key 0x01 of [01 02], forwarded over Ethernet.
    let transit = || {
        (
            pipeline(),
            vec![build::comet_frame(MAC_PEER, MAC_IN, 0, &[0x01, 0x02], &ip)],
        )
    };
    // Ingress edge: traffic cycles over all 10 000 filters.
    let ingress = || edge(&payload);
    // Egress edge: decapsulation.
    let egress = || {
        (
            pipeline(),
            vec![build::comet_frame(MAC_PEER, MAC_IN, 2, &[0x01, 0x02], &ip)],
        )
    };
    type Scenario<'a> = (
        &'a str,
        &'a (dyn Fn() -> (Pipeline, Vec<Vec<u8>>) + Sync),
        Verdict,
    );
    let scenarios: [Scenario; 3] = [
        (
            "transit forward (1 key rule)",
            &transit,
            Verdict::Transmit(1),
        ),
        (
            "intercept + encap (10k filters, 2 keys)",
            &ingress,
            Verdict::Transmit(1),
        ),
        ("egress decapsulation", &egress, Verdict::ToKernel),
    ];
    for (name, make, expect) in scenarios {
        let (mut pipeline, frames) = make();
        run(name, &mut pipeline, &frames, seconds, expect);
    }
    println!("one pipeline per worker:");
    for (name, make, _) in scenarios {
        scaling(name, make, seconds);
    }
}
