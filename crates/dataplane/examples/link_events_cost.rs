//! What following MTU changes costs the worker: one `LinkEvents::drain` on an empty queue (a
//! non-blocking `recv` that finds nothing) per batch that transmits. Prints the cost per call
//! and per frame of a full 256-frame batch.
//!
//!     cargo run --release -p brasa-dataplane --example link_events_cost [-- CALLS]

use brasa_dataplane::io::netlink::LinkEvents;
use std::time::Instant;

fn main() {
    let calls: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let mut links = LinkEvents::open().expect("netlink socket");
    let mut changes = 0u64;
    let began = Instant::now();
    for _ in 0..calls {
        let _ = links.drain(|_, _| changes += 1);
    }
    let per_call = began.elapsed().as_secs_f64() / f64::from(calls) * 1e9;
    println!(
        "LinkEvents::drain, empty queue: {per_call:.0} ns per call, {:.2} ns per frame of a 256-frame batch ({calls} calls, {changes} MTU changes seen)",
        per_call / 256.0
    );
}
