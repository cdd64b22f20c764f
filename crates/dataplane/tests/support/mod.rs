//! What the data plane's namespace tests share: network namespaces deleted on drop (also when
//! a test fails), veth pairs inside them, and frames captured with a receive ring.
#![allow(dead_code)]

use brasa_dataplane::io::afpacket::{RingConfig, RxRing, TxRing, TxRingConfig};
use brasa_dataplane::io::netdev::NetDev;
use brasa_dataplane::pipeline::Batch;
use brasa_dataplane::wire::MacAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a test waits for what it expects: generous, since on a loaded machine the softirq
/// work that moves frames across a veth can wait seconds for `ksoftirqd`.
pub const WAIT: Duration = Duration::from_secs(20);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Self {
        Self::with_prefix("bdptx")
    }

    /// A namespace whose name starts with `prefix` (then this process's id and a counter).
    pub fn with_prefix(prefix: &str) -> Self {
        let name = format!(
            "{prefix}{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self { name };
        ns.sh("ip link set lo up && sysctl -qw net.ipv6.conf.all.disable_ipv6=1");
        ns
    }

    pub fn sh(&self, command: &str) -> String {
        run(Command::new("ip").args(["netns", "exec", &self.name, "sh", "-c", command]))
    }

    pub fn mac(&self, interface: &str) -> MacAddr {
        self.sh(&format!("cat /sys/class/net/{interface}/address"))
            .trim()
            .parse()
            .expect("MAC")
    }

    /// Runs `f` on a thread inside the namespace (sockets it opens stay in it).
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let file = std::fs::File::open(&path).expect("open netns");
            // SAFETY: setns on this thread with a namespace descriptor.
            let ret = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(ret, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread")
    }

    /// A veth pair `a` ═ `b` inside the namespace, both ends up.
    pub fn veth(&self, a: &str, b: &str) {
        self.sh(&format!(
            "ip link add {a} type veth peer name {b} && ip link set {a} up && ip link set {b} up"
        ));
    }

    /// A veth pair `a` (here) ═ `b` (in `other`), both ends up.
    pub fn veth_to(&self, a: &str, other: &Netns, b: &str) {
        self.sh(&format!(
            "ip link add {a} type veth peer name {b} netns {} && ip link set {a} up",
            other.name
        ));
        other.sh(&format!("ip link set {b} up"));
    }

    /// Runs a command inside the namespace; its output whatever the status.
    pub fn output(&self, program: &str, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    pub fn tx_ring(&self, interface: &str, frames: u32) -> TxRing {
        let interface = interface.to_string();
        self.enter(move || {
            let dev = NetDev::lookup(&interface).expect("interface");
            TxRing::open(&interface, dev.ifindex, TxRingConfig { frames }).expect("tx ring")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub fn run(command: &mut Command) -> String {
    let output = command.output().expect("spawn");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Frames arriving on one interface, read from a receive ring.
pub struct Capture {
    pub ring: RxRing,
    batch: Batch,
    pub frames: Vec<Vec<u8>>,
}

impl Capture {
    pub fn open(ns: &Netns, interface: &str) -> Self {
        let interface = interface.to_string();
        let ring = ns.enter(move || {
            let dev = NetDev::lookup(&interface).expect("capture interface");
            RxRing::open(
                &interface,
                dev.ifindex,
                0,
                RingConfig {
                    block_size: 1 << 16,
                    block_count: 64,
                    block_timeout_ms: 1,
                },
            )
            .expect("capture ring")
        });
        Self {
            ring,
            batch: Batch::new(64),
            frames: Vec::new(),
        }
    }

    pub fn poll(&mut self) {
        let mut oversized = 0;
        let frames = &mut self.frames;
        self.ring.drain(&mut self.batch, &mut oversized, |batch| {
            frames.extend(batch.iter().map(|(buf, _)| buf.as_slice().to_vec()));
            batch.clear();
        });
        frames.extend(self.batch.iter().map(|(buf, _)| buf.as_slice().to_vec()));
        self.batch.clear();
        assert_eq!(oversized, 0);
    }

    /// Waits until `count` frames of `ethertype` arrived (or `WAIT` passed) and returns them.
    pub fn wait_for(&mut self, count: usize, ethertype: u16) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + WAIT;
        loop {
            self.poll();
            let found: Vec<Vec<u8>> = self
                .frames
                .iter()
                .filter(|f| f.get(12..14) == Some(&ethertype.to_be_bytes()[..]))
                .cloned()
                .collect();
            if found.len() >= count || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

pub fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}
