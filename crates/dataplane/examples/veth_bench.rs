//! Forwarding over veth in network namespaces: brasa's transit CAFE beside the Linux kernel's
//! IP forwarding, same topology, same generator, same run. Needs root, iproute2 and `trafgen`
//! (Debian `netsniff-ng`).
//!
//!     [BENCH_TRAFGEN_CPUS=N] [BENCH_WORKER_NICE=-10] cargo run --release -p brasa-dataplane --example veth_bench [-- SECONDS]
//!
//! Topology: generator `g` (g0) ═ (c0) forwarder `c` (c1) ═ (b0) sink `b`. trafgen floods g0
//! with 64-byte IPv4/UDP packets (kernel phase) or the same packets behind a COMET header
//! (brasa phase, key 01 → c1); the figure is the rate at which frames arrive on b0.

use brasa_dataplane::build;
use brasa_dataplane::control::{self, ForwardRule};
use brasa_dataplane::io::afpacket::RingConfig;
use brasa_dataplane::io::worker::{self, PortConfig, WorkerConfig};
use brasa_dataplane::pipeline::IpHandoff;
use brasa_dataplane::wire::{EtherType, MacAddr};
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

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

/// CPU seconds (user + system) used so far by this process's thread named `name`.
fn thread_cpu_seconds(name: &str) -> f64 {
    let ticks = 100.0; // USER_HZ
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // After the parenthesised command: utime and stime are the 12th and 13th fields.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        return (utime + stime) / ticks;
    }
    0.0
}

/// Linux thread id of this process's thread named `name`.
fn thread_id(name: &str) -> Option<i32> {
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .find_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            (comm.trim() == name)
                .then(|| task.file_name().to_str()?.parse().ok())
                .flatten()
        })
}

/// trafgen processes (`BENCH_TRAFGEN_CPUS`, default 1).
fn generators() -> usize {
    std::env::var("BENCH_TRAFGEN_CPUS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn trafgen_conf(frame: &[u8]) -> String {
    let bytes: Vec<String> = frame.iter().map(|b| format!("0x{b:02x}")).collect();
    format!("{{ {} }}\n", bytes.join(", "))
}

/// Floods `frame` out of g0 for `seconds`; returns (sent, received on b0) per second.
fn flood(g: &Ns, b: &Ns, frame: &[u8], seconds: u64) -> (f64, f64) {
    let dir = std::env::temp_dir().join(format!("bdpbench{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("frame.cfg");
    std::fs::write(&conf, trafgen_conf(frame)).unwrap();
    let (tx0, rx0) = (g.counter("g0", "tx_packets"), b.counter("b0", "rx_packets"));
    let _ = Command::new("ip")
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
        .args(["-P", &generators().to_string(), "-q", "-C", "-Q"])
        .output()
        .expect("trafgen (Debian package netsniff-ng)");
    std::thread::sleep(Duration::from_millis(200));
    let (tx1, rx1) = (g.counter("g0", "tx_packets"), b.counter("b0", "rx_packets"));
    (
        (tx1 - tx0) as f64 / seconds as f64,
        (rx1 - rx0) as f64 / seconds as f64,
    )
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let (g, c, b) = (Ns::new("g"), Ns::new("c"), Ns::new("b"));
    g.sh(&format!(
        "ip link add g0 type veth peer name c0 netns {} && ip link set g0 up",
        c.0
    ));
    c.sh(&format!(
        "ip link add c1 type veth peer name b0 netns {} && ip link set c1 up && ip link set c0 up",
        b.0
    ));
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
    let plain = build::ethernet(g.mac("g0"), c.mac("c0"), EtherType::IPV4, &ip);
    let comet = build::comet_frame(g.mac("g0"), c.mac("c0"), 0, &[0x01, 0x02], &ip);

    let (kernel_offered, kernel_pps) = flood(&g, &b, &plain, seconds);

    let ns_path = format!("/var/run/netns/{}", c.0);
    let b_mac = b.mac("b0");
    let handle = std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(ns_path).expect("netns");
        // SAFETY: setns on this thread only.
        assert_eq!(
            unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        worker::start(WorkerConfig {
            ports: vec![
                PortConfig {
                    name: "c0".into(),
                    ip_handoff: IpHandoff::Kernel,
                },
                PortConfig {
                    name: "c1".into(),
                    ip_handoff: IpHandoff::Kernel,
                },
            ],
            tun: None,
            ring: RingConfig::default(),
            batch_size: 256,
            tick_interval: Duration::from_secs(1),
        })
        .expect("worker")
    })
    .join()
    .expect("worker thread");
    let (handle, thread) = handle;
    let (tx, rx) = std::sync::mpsc::channel();
    handle
        .submit(Box::new(move |p, _| {
            let rule = ForwardRule::Ethernet {
                key: 0x01,
                device: "c1".into(),
                mac: b_mac.to_string(),
            };
            tx.send(control::forward_add(p, &rule)).unwrap();
        }))
        .unwrap();
    rx.recv().unwrap().expect("rule");
    // `BENCH_WORKER_NICE=-10` gives the worker the priority a data-plane core would have.
    if let Some(nice) = std::env::var("BENCH_WORKER_NICE")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    {
        if let Some(tid) = thread_id("brasa-dataplane") {
            // SAFETY: setpriority on one of our own threads.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
        }
    }
    let cpu_before = thread_cpu_seconds("brasa-dataplane");
    let c1_before = c.counter("c1", "tx_packets");
    let (brasa_offered, brasa_pps) = flood(&g, &b, &comet, seconds);
    let worker_cpu = (thread_cpu_seconds("brasa-dataplane") - cpu_before) / seconds as f64;
    let c1_sent = (c.counter("c1", "tx_packets") - c1_before) as f64 / seconds as f64;
    let (tx, rx) = std::sync::mpsc::channel();
    handle
        .submit(Box::new(move |p, _| {
            tx.send(control::stats(p)).unwrap();
        }))
        .unwrap();
    let stats = rx.recv().unwrap();
    let received = stats
        .interfaces
        .first()
        .map(|i| i.counters.rx_packets)
        .unwrap_or(0);
    handle.stop();
    let _ = thread.join();

    println!(
        "veth forwarding, {seconds} s per phase, {} trafgen process(es), {} / {}-byte frames",
        generators(),
        plain.len(),
        comet.len()
    );
    println!(
        "  kernel IP forwarding : {:>10.0} pps forwarded ({:.0} offered)",
        kernel_pps, kernel_offered
    );
    println!(
        "  brasa transit CAFE   : {:>10.0} pps forwarded ({:.0} offered)",
        brasa_pps, brasa_offered
    );
    println!(
        "  ratio brasa/kernel   : {:>10.2}",
        brasa_pps / kernel_pps.max(1.0)
    );
    println!(
        "  brasa worker received: {:>10.0} pps from its ring, sent {c1_sent:.0} pps out of c1",
        received as f64 / seconds as f64
    );
    println!(
        "  brasa worker thread  : {:>9.0}% of one core, {:.0} pps per core-second \
         (kernel forwarding runs in the senders' softirq)",
        worker_cpu * 100.0,
        brasa_pps / worker_cpu.max(0.001)
    );
}
