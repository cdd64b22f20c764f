//! Forwarding over veth in network namespaces: brasa's transit CAFE on AF_PACKET and on AF_XDP
//! ports beside the Linux kernel's IP forwarding, same topology, same generator, same run; or,
//! with `BENCH_SERVICE=vpls`, brasa's VPLS beside a Linux bridge.
//! Needs root, iproute2 and `trafgen` (Debian `netsniff-ng`).
//!
//!     [BENCH_SERVICE=vpls] [BENCH_IO=af_packet|af_xdp] [BENCH_XDP_MODE=generic] [BENCH_TRAFGEN_CPUS=N] [BENCH_WORKERS=N]
//!     [BENCH_WORKER_NICE=-10] [BENCH_WORKER_CPU=1[,0]] [BENCH_TX=sendmmsg]
//!     [BENCH_RING_BLOCKS=16] [BENCH_RATE=300000pps] [BENCH_BASELINE=1] \
//!     cargo run --release -p brasa-dataplane --example veth_bench [-- SECONDS [ROUNDS]]
//!
//! Topology: generator `g` (g0) ═ (c0) forwarder `c` (c1) ═ (b0) sink `b`. trafgen floods g0
//! with 64-byte IPv4/UDP packets (kernel phase) or the same packets behind a COMET header
//! (brasa phases, key 01 → c1); the figure is the rate at which frames arrive on b0. Each round
//! runs a kernel phase, then a brasa phase per I/O (both by default; `BENCH_IO` picks one): the
//! workers are started for their phase only, so the kernel phase has no packet sockets or XDP
//! program on c0/c1. On AF_XDP the program runs in native mode on c0 and c1
//! (`BENCH_XDP_MODE=generic`: generic mode); veth has no zero-copy, so the sockets are in copy
//! mode.
//!
//! CPU is measured per phase: the generator's processes (user + system, which includes the
//! softirq work run in their context: the kernel's forwarding, and brasa's receive-ring copy),
//! the worker thread (the same, for its transmit path and the sink's receive), `ksoftirqd`
//! (softirq work deferred to it), and the machine-wide shares from `/proc/stat`.
//!
//! `BENCH_WORKERS` starts that many workers (`PACKET_FANOUT` by receiving CPU; trafgen process
//! `i` runs on CPU `i`); `BENCH_WORKER_NICE` sets the workers' nice value; `BENCH_WORKER_CPU`
//! pins worker `i` to the `i`-th CPU of the list; `BENCH_TX=sendmmsg` transmits with
//! `sendmmsg` instead of the transmit ring; `BENCH_RING_BLOCKS` sets the receive ring's 256 KiB
//! blocks (default 64); `BENCH_RATE` is passed to trafgen's `-b` (the same offered rate in
//! both phases). `BENCH_BASELINE=1` adds a third phase per round: the COMET frames flood c0
//! with nothing listening (the kernel drops them on receipt), which costs what the
//! generator's own sending and c0's receipt cost; subtracting its CPU per packet from each
//! phase's leaves what forwarding costs.
//!
//! `BENCH_SERVICE=vpls` compares L2 forwarding instead. trafgen sends 802.1Q frames (VLAN 100,
//! 68 bytes with the tag) from g0 to b0's MAC. The kernel phase bridges them with a Linux
//! bridge `br0` in `c` (ports c0 and c1, b0's MAC a static FDB entry on c1; it exists only
//! during that phase). This kernel has no VLAN filtering in its bridge (`vlan_filtering 1` is
//! refused) and no 8021q module, so the Linux bridge forwards the tagged frames by destination
//! MAC without reading the tag. The brasa phases run the service stage: c0 and c1 are dot1q
//! access ports, VPLS 1 has SAPs `c0:100` and `c1:100`, b0's MAC is a static MAC on `c1:100`;
//! each frame is matched to its SAP by port and tag, its source learned, its destination looked
//! up, its tag rewritten for the egress SAP (the same VLAN) and sent out of c1. Both sides learn
//! the one source and look up the one destination; brasa does the SAP match and retag on top.

use brasa_dataplane::build;
use brasa_dataplane::control::{self, ForwardRule};
use brasa_dataplane::io::afpacket::RingConfig;
use brasa_dataplane::io::worker::{
    self, PortConfig, PortIo, StageFactory, Tuning, WorkerConfig, XdpPortConfig,
};
use brasa_dataplane::io::xdp::XdpModeRequest;
use brasa_dataplane::pipeline::IpHandoff;
use brasa_dataplane::sap::{PortEncap, SapEncap, SapId, Tag};
use brasa_dataplane::service::{
    PortSpec, SapSpec, ServiceSpec, ServiceStage, ServiceStageConfig, ServiceTables,
    ServiceTablesBuilder, VplsSpec,
};
use brasa_dataplane::stages::service_stages;
use brasa_dataplane::wire::{EtherType, MacAddr};
use brasa_testkit::cpu::{stat_cpu_seconds, threads_cpu_seconds};
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Self {
        let name = format!("bdpbench{}{tag}", std::process::id());
        sh_root(&format!("ip netns add {name}"));
        let ns = Ns(name);
        ns.sh("ip link set lo up");
        ns
    }

    fn sh(&self, command: &str) -> String {
        sh_root(&format!("ip netns exec {} sh -c '{command}'", self.0))
    }

    fn counter(&self, interface: &str, name: &str) -> u64 {
        self.sh(&format!("cat /sys/class/net/{interface}/statistics/{name}"))
            .trim()
            .parse()
            .unwrap_or(0)
    }

    fn mac(&self, interface: &str) -> MacAddr {
        self.sh(&format!("cat /sys/class/net/{interface}/address"))
            .trim()
            .parse()
            .expect("MAC")
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn sh_root(command: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", command])
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Names of the worker threads start with this ("brasa-dataplane", "brasa-dp1", …).
const WORKER_PREFIX: &str = "brasa-d";

/// CPU seconds used so far by this process's worker threads.
fn worker_cpu_seconds() -> f64 {
    threads_cpu_seconds(std::process::id())
        .into_iter()
        .filter(|(name, _)| name.starts_with(WORKER_PREFIX))
        .map(|(_, seconds)| seconds)
        .sum()
}

/// CPU seconds used so far by the `ksoftirqd/N` threads.
fn ksoftirqd_seconds() -> f64 {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    procs
        .flatten()
        .filter(|p| {
            std::fs::read_to_string(p.path().join("comm"))
                .is_ok_and(|c| c.starts_with("ksoftirqd/"))
        })
        .map(|p| {
            stat_cpu_seconds(&std::fs::read_to_string(p.path().join("stat")).unwrap_or_default())
        })
        .sum()
}

/// CPU seconds of waited-for children (trafgen and its forks, reaped when a phase ends).
fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Machine-wide /proc/stat totals: (busy, softirq, steal, all) in ticks.
fn proc_stat() -> (f64, f64, f64, f64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return (0.0, 0.0, 0.0, 0.0);
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal
    let all: f64 = (0..8).map(get).sum();
    let idle = get(3) + get(4);
    (all - idle, get(6), get(7), all)
}

/// Linux thread ids of this process's worker threads.
fn worker_thread_ids() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            if !comm.starts_with(WORKER_PREFIX) {
                return None;
            }
            task.file_name().to_str()?.parse().ok()
        })
        .collect()
}

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// trafgen processes (`BENCH_TRAFGEN_CPUS`, default 1).
fn generators() -> usize {
    env("BENCH_TRAFGEN_CPUS").unwrap_or(1)
}

/// Where trafgen's frame file is written (removed when the bench ends).
fn trafgen_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("bdpbench{}", std::process::id()))
}

fn trafgen_conf(frame: &[u8]) -> String {
    let bytes: Vec<String> = frame.iter().map(|b| format!("0x{b:02x}")).collect();
    format!("{{ {} }}\n", bytes.join(", "))
}

/// What one phase measured.
#[derive(Default, Clone, Copy)]
struct Phase {
    offered: f64,
    forwarded: f64,
    generator_cpu: f64,
    ksoftirqd_cpu: f64,
    worker_cpu: f64,
    machine_busy: f64,
    machine_softirq: f64,
    machine_steal: f64,
    ring_drops: u64,
    tx_errors: u64,
}

impl Phase {
    /// CPU ns per forwarded packet: generator + ksoftirqd + worker.
    fn ns_per_packet(&self) -> f64 {
        (self.generator_cpu + self.ksoftirqd_cpu + self.worker_cpu) * 1e9 / self.forwarded.max(1.0)
    }
}

/// Floods `frame` out of g0 for `seconds`; measures what arrives on the sink interface and the
/// CPU used.
fn flood(g: &Ns, sink: (&Ns, &str), frame: &[u8], seconds: u64) -> Phase {
    let (b, sink_if) = sink;
    let dir = trafgen_dir();
    std::fs::create_dir_all(&dir).expect("temp dir");
    let conf = dir.join("frame.cfg");
    std::fs::write(&conf, trafgen_conf(frame)).expect("trafgen config");
    let (tx0, rx0) = (
        g.counter("g0", "tx_packets"),
        b.counter(sink_if, "rx_packets"),
    );
    let (children0, soft0, worker0) = (
        children_cpu_seconds(),
        ksoftirqd_seconds(),
        worker_cpu_seconds(),
    );
    let stat0 = proc_stat();
    let mut trafgen = Command::new("ip");
    trafgen
        .args([
            "netns",
            "exec",
            &g.0,
            "timeout",
            &seconds.to_string(),
            "trafgen",
            "-o",
            "g0",
            "-i",
        ])
        .arg(&conf)
        .args(["-P", &generators().to_string(), "-q", "-C", "-Q"]);
    if let Ok(rate) = std::env::var("BENCH_RATE") {
        trafgen.args(["-b", &rate]);
    }
    let started = Instant::now();
    let _ = trafgen
        .output()
        .expect("trafgen (Debian package netsniff-ng)");
    let elapsed = started.elapsed().as_secs_f64().max(seconds as f64);
    std::thread::sleep(Duration::from_millis(200));
    let (tx1, rx1) = (
        g.counter("g0", "tx_packets"),
        b.counter(sink_if, "rx_packets"),
    );
    let stat1 = proc_stat();
    let all = (stat1.3 - stat0.3).max(1.0);
    Phase {
        offered: (tx1 - tx0) as f64 / seconds as f64,
        forwarded: (rx1 - rx0) as f64 / seconds as f64,
        generator_cpu: (children_cpu_seconds() - children0) / elapsed,
        ksoftirqd_cpu: (ksoftirqd_seconds() - soft0) / elapsed,
        worker_cpu: (worker_cpu_seconds() - worker0) / elapsed,
        machine_busy: (stat1.0 - stat0.0) / all,
        machine_softirq: (stat1.1 - stat0.1) / all,
        machine_steal: (stat1.2 - stat0.2) / all,
        ring_drops: 0,
        tx_errors: 0,
    }
}

/// The baseline phase: frames flood c0 and are dropped there; `forwarded` is what c0 received.
fn flood_counting(g: &Ns, c: &Ns, frame: &[u8], seconds: u64) -> Phase {
    flood(g, (c, "c0"), frame, seconds)
}

/// The I/O brasa's ports use in a phase.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Io {
    AfPacket,
    AfXdp,
}

impl Io {
    fn port(self, name: &str) -> PortConfig {
        PortConfig {
            name: name.into(),
            ip_handoff: IpHandoff::Kernel,
            io: match self {
                Io::AfPacket => PortIo::AfPacket,
                Io::AfXdp => PortIo::AfXdp(XdpPortConfig {
                    mode: if std::env::var("BENCH_XDP_MODE").is_ok_and(|m| m == "generic") {
                        XdpModeRequest::Generic
                    } else {
                        XdpModeRequest::Native
                    },
                    // Access ports: every frame belongs to a SAP.
                    redirect_all: vpls_mode(),
                    ..XdpPortConfig::default()
                }),
            },
        }
    }
}

/// True with `BENCH_SERVICE=vpls`: brasa's VPLS against a Linux bridge.
fn vpls_mode() -> bool {
    std::env::var("BENCH_SERVICE").is_ok_and(|v| v == "vpls")
}

/// The VLAN of the VPLS SAPs and of the generated frames.
const VPLS_VLAN: u16 = 100;

/// VPLS 1 with SAPs `c0:100` (port 0) and `c1:100` (port 1), `sink` static on `c1:100`.
fn vpls_tables(sink: MacAddr) -> std::sync::Arc<ServiceTables> {
    let mut b = ServiceTablesBuilder::new();
    let sap = |port| SapId {
        port,
        encap: SapEncap::Dot1q {
            tag: Tag::Id(VPLS_VLAN),
        },
    };
    for port in 0..2 {
        b.set_port(PortSpec::new(port, PortEncap::Dot1q))
            .expect("port");
    }
    b.set_service(ServiceSpec::Vpls(VplsSpec::new(1)))
        .expect("VPLS");
    b.set_sap(SapSpec::new(sap(0), 1)).expect("SAP c0:100");
    b.set_sap(SapSpec {
        static_macs: vec![sink],
        ..SapSpec::new(sap(1), 1)
    })
    .expect("SAP c1:100");
    b.build()
}

/// The kernel side of `BENCH_SERVICE=vpls`: a Linux bridge of c0 and c1 for one phase.
fn linux_bridge_phase(c: &Ns, g: &Ns, b: &Ns, frame: &[u8], seconds: u64) -> Phase {
    c.sh(&format!(
        "ip link add br0 type bridge && ip link set c0 master br0 && ip link set c1 master br0 \
         && ip link set br0 up && bridge fdb add {} dev c1 master static",
        b.mac("b0")
    ));
    let phase = flood(g, (b, "b0"), frame, seconds);
    c.sh("ip link del br0");
    phase
}

fn brasa_phase(io: Io, c: &Ns, g: &Ns, b: &Ns, frame: &[u8], seconds: u64) -> Phase {
    let ns_path = format!("/var/run/netns/{}", c.0);
    let b_mac = b.mac("b0");
    let tuning = Tuning {
        workers: env("BENCH_WORKERS").unwrap_or(1),
        sendmmsg: std::env::var("BENCH_TX").is_ok_and(|v| v == "sendmmsg"),
        cpus: std::env::var("BENCH_WORKER_CPU")
            .unwrap_or_default()
            .split(',')
            .filter_map(|cpu| cpu.trim().parse().ok())
            .collect(),
        stages: if vpls_mode() {
            StageFactory::new(|| service_stages(ServiceStage::new(ServiceStageConfig::default())))
        } else {
            StageFactory::default()
        },
        ..Tuning::default()
    };
    let (handle, thread) = std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(ns_path).expect("netns");
        // SAFETY: setns on this thread only.
        assert_eq!(
            unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        worker::start_tuned(
            WorkerConfig {
                ports: vec![io.port("c0"), io.port("c1")],
                tun: None,
                ring: RingConfig {
                    block_count: env("BENCH_RING_BLOCKS")
                        .unwrap_or(RingConfig::default().block_count),
                    ..RingConfig::default()
                },
                batch_size: 256,
                tick_interval: Duration::from_secs(1),
            },
            tuning,
        )
        .expect("worker")
    })
    .join()
    .expect("worker thread");
    if io == Io::AfXdp {
        let ports = handle.ports();
        assert!(
            ports.iter().all(|p| p.xdp_mode.is_some()),
            "AF_XDP did not attach: {:?}",
            ports.iter().map(|p| &p.fallback).collect::<Vec<_>>()
        );
    }
    if vpls_mode() {
        let tables = vpls_tables(b_mac);
        let installed = handle
            .call(move |p, now| {
                p.stage_mut::<ServiceStage>()
                    .map(|stage| stage.install(tables.clone(), now))
                    .is_some()
            })
            .expect("workers running");
        assert!(
            installed.iter().all(|ok| *ok),
            "a worker without a service stage"
        );
    } else {
        let rule = ForwardRule::Ethernet {
            key: 0x01,
            device: "c1".into(),
            mac: b_mac.to_string(),
        };
        let added = handle
            .call(move |p, _| control::forward_add(p, &rule))
            .expect("workers running");
        control::merged(added).expect("answer").expect("rule");
    }
    // `BENCH_WORKER_NICE=-10` gives the worker the priority a data-plane core would have.
    if let Some(nice) = env::<i32>("BENCH_WORKER_NICE") {
        for tid in worker_thread_ids() {
            // SAFETY: setpriority on one of our own threads.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
        }
    }
    let mut phase = flood(g, (b, "b0"), frame, seconds);
    let stats = control::merged(
        handle
            .call(|p, _| control::stats(p))
            .expect("workers running"),
    )
    .expect("answer");
    let drop_count = |name: &str| {
        stats
            .drops
            .iter()
            .find(|(reason, _)| reason == name)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    };
    phase.ring_drops = drop_count("rx_ring_full");
    phase.tx_errors = drop_count("tx_error");
    handle.stop();
    let _ = thread.join();
    phase
}

fn print_phase(label: &str, phase: &Phase) {
    let lost = phase.offered - phase.forwarded;
    let loss = if lost > 0.5 {
        format!(
            "{:.0} offered, {:.1} % lost",
            phase.offered,
            100.0 * lost / phase.offered
        )
    } else {
        format!("{:.0} offered, no loss", phase.offered)
    };
    println!("  {label:<22}: {:>9.0} pps ({loss})", phase.forwarded);
    println!(
        "  {:<22}  CPU: generator {:.0} %, worker {:.0} %, ksoftirqd {:.0} % of a core; \
         {:.0} ns/packet; machine busy {:.0} %, softirq {:.0} %, steal {:.0} %",
        "",
        phase.generator_cpu * 100.0,
        phase.worker_cpu * 100.0,
        phase.ksoftirqd_cpu * 100.0,
        phase.ns_per_packet(),
        phase.machine_busy * 100.0,
        phase.machine_softirq * 100.0,
        phase.machine_steal * 100.0,
    );
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let rounds: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let (g, c, b) = (Ns::new("g"), Ns::new("c"), Ns::new("b"));
    // A queue per generator or worker, whichever is more: on AF_XDP a worker serves the
    // sockets of its queues, and veth hands a frame sent on g0's transmit queue i to c0's
    // receive queue i. XPS maps trafgen process i (on CPU i) to transmit queue i; without it
    // every frame of the one flow would hash to the same queue. Neither the kernel's forwarding
    // nor AF_PACKET depends on the queue a frame arrives on.
    let queues = generators().max(env("BENCH_WORKERS").unwrap_or(1));
    let q = format!("numtxqueues {queues} numrxqueues {queues}");
    g.sh(&format!(
        "ip link add g0 {q} type veth peer name c0 {q} netns {} && ip link set g0 up",
        c.0
    ));
    c.sh(&format!(
        "ip link add c1 {q} type veth peer name b0 {q} netns {} && ip link set c1 up && ip link set c0 up",
        b.0
    ));
    if queues > 1 {
        for queue in 0..queues {
            g.sh(&format!(
                "echo {:x} > /sys/class/net/g0/queues/tx-{queue}/xps_cpus",
                1u64 << queue
            ));
        }
    }
    b.sh("ip link set b0 up && ip addr add 198.18.2.2/24 dev b0");
    g.sh("ip addr add 198.18.1.2/24 dev g0");
    c.sh("sysctl -qw net.ipv4.ip_forward=1 && ip addr add 198.18.1.1/24 dev c0 && ip addr add 198.18.2.1/24 dev c1");
    // The sink is not the destination (it drops what it receives early); no ARP on the path.
    c.sh(&format!(
        "ip neigh replace 198.18.2.99 lladdr {} dev c1 nud permanent",
        b.mac("b0")
    ));
    let ip = build::ipv4_udp(
        Ipv4Addr::new(198, 18, 1, 2),
        Ipv4Addr::new(198, 18, 2, 99),
        4000,
        9,
        &[0u8; 18],
    );
    let (plain, comet) = if vpls_mode() {
        // One frame for both sides: tagged, to the sink's MAC.
        let tagged = build::tagged(
            g.mac("g0"),
            b.mac("b0"),
            &[(EtherType::VLAN, VPLS_VLAN)],
            EtherType::IPV4,
            &ip,
        );
        (tagged.clone(), tagged)
    } else {
        (
            build::ethernet(g.mac("g0"), c.mac("c0"), EtherType::IPV4, &ip),
            build::comet_frame(g.mac("g0"), c.mac("c0"), 0, &[0x01, 0x02], &ip),
        )
    };
    let (kernel_label, brasa_labels, ratio_label) = if vpls_mode() {
        (
            "Linux bridge",
            ["brasa VPLS, AF_PACKET", "brasa VPLS, AF_XDP"],
            "ratio brasa/bridge",
        )
    } else {
        (
            "kernel IP forwarding",
            ["brasa CAFE, AF_PACKET", "brasa CAFE, AF_XDP"],
            "ratio brasa/kernel",
        )
    };

    println!(
        "veth forwarding, {seconds} s per phase, {rounds} round(s), {} trafgen process(es), \
         {} / {}-byte frames, {} worker(s), {queues} queue(s): tx {}, ring blocks {}, nice {}, \
         cpu {}{}",
        generators(),
        plain.len(),
        comet.len(),
        env::<usize>("BENCH_WORKERS").unwrap_or(1),
        std::env::var("BENCH_TX").unwrap_or_else(|_| "ring".into()),
        env::<u32>("BENCH_RING_BLOCKS").unwrap_or(RingConfig::default().block_count),
        std::env::var("BENCH_WORKER_NICE").unwrap_or_else(|_| "0".into()),
        std::env::var("BENCH_WORKER_CPU").unwrap_or_else(|_| "any".into()),
        std::env::var("BENCH_RATE")
            .map(|r| format!(", rate {r}"))
            .unwrap_or_default(),
    );
    let ios: Vec<Io> = match std::env::var("BENCH_IO").as_deref() {
        Ok("af_packet") => vec![Io::AfPacket],
        Ok("af_xdp") => vec![Io::AfXdp],
        _ => vec![Io::AfPacket, Io::AfXdp],
    };
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); ios.len()];
    for round in 1..=rounds {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "round {round} (load {})",
            load.split_whitespace().next().unwrap_or("?")
        );
        let kernel = if vpls_mode() {
            linux_bridge_phase(&c, &g, &b, &plain, seconds)
        } else {
            flood(&g, (&b, "b0"), &plain, seconds)
        };
        print_phase(kernel_label, &kernel);
        for (index, io) in ios.iter().enumerate() {
            let brasa = brasa_phase(*io, &c, &g, &b, &comet, seconds);
            let label = match io {
                Io::AfPacket => brasa_labels[0],
                Io::AfXdp => brasa_labels[1],
            };
            print_phase(label, &brasa);
            let ratio = brasa.forwarded / kernel.forwarded.max(1.0);
            ratios[index].push(ratio);
            println!(
                "  {:<22}: {ratio:.2}; brasa lost {} frames on receipt, {} on transmit; \
                 worker {:.0} ns/packet ({:.0} kpps per core-second); CPU per packet vs \
                 kernel {:.2}",
                ratio_label,
                brasa.ring_drops,
                brasa.tx_errors,
                brasa.worker_cpu * 1e9 / brasa.forwarded.max(1.0),
                brasa.forwarded / brasa.worker_cpu.max(0.001) / 1e3,
                brasa.ns_per_packet() / kernel.ns_per_packet().max(1.0),
            );
        }
        if std::env::var("BENCH_BASELINE").is_ok_and(|v| v == "1") {
            let base = flood_counting(&g, &c, &comet, seconds);
            println!(
                "  {:<22}: {:>9.0} pps sent, {:.0} ns/packet (generator {:.0} %); forwarding \
                 itself: kernel {:.0} ns/packet",
                "baseline (no forwarder)",
                base.forwarded,
                base.ns_per_packet(),
                base.generator_cpu * 100.0,
                kernel.ns_per_packet() - base.ns_per_packet(),
            );
        }
    }
    if rounds > 1 {
        for (io, ratios) in ios.iter().zip(&ratios) {
            let mut sorted = ratios.clone();
            sorted.sort_by(f64::total_cmp);
            let list: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
            println!(
                "{} ratios: {} (min {:.2}, median {:.2}, max {:.2})",
                if *io == Io::AfXdp {
                    "AF_XDP"
                } else {
                    "AF_PACKET"
                },
                list.join(" "),
                sorted[0],
                sorted[sorted.len() / 2],
                sorted[sorted.len() - 1],
            );
        }
    }
    let _ = std::fs::remove_dir_all(trafgen_dir());
}
