//! Frames arriving on one interface of a network namespace, read from an AF_PACKET receive
//! ring. Shared by the data plane's namespace tests and brasa's (which include this file by
//! path).

use brasa_dataplane::io::afpacket::{RingConfig, RxRing};
use brasa_dataplane::io::netdev::NetDev;
use brasa_dataplane::pipeline::Batch;
use brasa_testkit::netns::Netns;
use std::time::{Duration, Instant};

/// Frames arriving on one interface, read from a receive ring.
pub struct Capture {
    pub ring: RxRing,
    batch: Batch,
    /// Every frame read so far.
    pub frames: Vec<Vec<u8>>,
    /// Frames too large for a batch buffer, so not in `frames`.
    pub oversized: u64,
}

impl Capture {
    /// Opens a ring on `interface` inside `ns`.
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
            oversized: 0,
        }
    }

    /// Reads what the ring holds now into `frames`.
    pub fn poll(&mut self) {
        let frames = &mut self.frames;
        self.ring
            .drain(&mut self.batch, &mut self.oversized, |batch| {
                frames.extend(batch.iter().map(|(buf, _)| buf.as_slice().to_vec()));
                batch.clear();
            });
        frames.extend(self.batch.iter().map(|(buf, _)| buf.as_slice().to_vec()));
        self.batch.clear();
    }

    /// Waits until `count` captured frames satisfy `matches` (or `timeout` passed) and returns
    /// those.
    pub fn wait_for_matching(
        &mut self,
        count: usize,
        timeout: Duration,
        matches: impl Fn(&[u8]) -> bool,
    ) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll();
            let found: Vec<Vec<u8>> = self.frames.iter().filter(|f| matches(f)).cloned().collect();
            if found.len() >= count || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
