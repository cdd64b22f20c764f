//! What the data plane's namespace tests share: network namespaces deleted on drop (also when
//! a test fails), veth pairs inside them, and frames captured with a receive ring.
#![allow(dead_code)]

mod capture;
pub use capture::Capture;

use brasa_dataplane::io::afpacket::{TxRing, TxRingConfig};
use brasa_dataplane::io::netdev::NetDev;
use brasa_dataplane::wire::MacAddr;
use std::time::{Duration, Instant};

/// How long a test waits for what it expects: generous, since on a loaded machine the softirq
/// work that moves frames across a veth can wait seconds for `ksoftirqd`.
pub const WAIT: Duration = Duration::from_secs(20);

/// A network namespace (brasa-testkit's, deleted on drop) with IPv6 off, so that the only
/// frames on its links are the ones a test sends; with the helpers these tests share.
pub struct Netns(brasa_testkit::netns::Netns);

impl std::ops::Deref for Netns {
    type Target = brasa_testkit::netns::Netns;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Netns {
    pub fn new() -> Self {
        Self::with_prefix("bdptx")
    }

    /// A namespace whose name ends with `tag` (after this process's id and a counter).
    pub fn with_prefix(tag: &str) -> Self {
        let ns = brasa_testkit::netns::Netns::new(tag);
        ns.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1");
        Self(ns)
    }

    pub fn mac(&self, interface: &str) -> MacAddr {
        self.sh(&format!("cat /sys/class/net/{interface}/address"))
            .trim()
            .parse()
            .expect("MAC")
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

    pub fn tx_ring(&self, interface: &str, frames: u32) -> TxRing {
        let interface = interface.to_string();
        self.enter(move || {
            let dev = NetDev::lookup(&interface).expect("interface");
            TxRing::open(&interface, dev.ifindex, TxRingConfig { frames }).expect("tx ring")
        })
    }
}

impl Capture {
    /// Waits until `count` frames of `ethertype` arrived (or `WAIT` passed) and returns them;
    /// no frame may have been too large to read.
    pub fn wait_for(&mut self, count: usize, ethertype: u16) -> Vec<Vec<u8>> {
        let found = self.wait_for_matching(count, WAIT, |f| {
            f.get(12..14) == Some(&ethertype.to_be_bytes()[..])
        });
        assert_eq!(self.oversized, 0);
        found
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
