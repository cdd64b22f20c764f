//! RAE decision benchmark, in memory (prints its figures; run with
//! `cargo bench -p brasa-rae --bench rae_decision`):
//!
//! 1. paths per second through decision: one RAE receives N prefixes × 2 classes (default
//!    N = 1 000 000, `RAE_BENCH_PREFIXES` to change) from one peer in Update messages of 2048
//!    routes; only `Rae::handle_update` (path construction, loop check, decision, queueing) is
//!    timed, then the batch export to a second peer is timed separately;
//! 2. bytes per path: live heap growth of the RIB measured by a counting global allocator,
//!    divided by the number of paths.
//!
//! Convergence over real sessions is `cargo bench -p brasa-rae-net --bench rae_convergence`.

#[path = "../tests/support/domain.rs"]
mod domain;

use brasa_rae::config::RaeConfig;
use brasa_rae::engine::{Output, Rae};
use brasa_rae::proto;
use brasa_rae::wire::InterRaeMessage;
use domain::Domain;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's guarantees for `alloc` are passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with `layout` (every allocation goes through it).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as for `dealloc`; the caller's guarantees for `new_size` are passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn decision_config() -> RaeConfig {
    let domain = Domain {
        as_number: 10,
        ip: "127.0.0.10".into(),
        port: 10001,
        peers: vec![
            (20, "127.0.0.20".into(), 10001),
            (30, "127.0.0.30".into(), 10001),
        ],
        prefixes: vec![],
        cme_port: None,
        hold_time: 0.0,
        minimum_update_interval: 0,
    };
    domain.config()
}

fn batch(start: u32, count: u32) -> proto::Update {
    let base = u32::from(std::net::Ipv4Addr::new(11, 0, 0, 0));
    let mut routes = Vec::with_capacity(count as usize * 2);
    for i in start..start + count {
        for cos in [1, 2] {
            routes.push(proto::Route {
                address: base + (i << 8),
                prefix_length: 24,
                cos_id: cos,
                paths: vec![proto::PathAttributes {
                    // ~37 000 distinct AS paths, as in a mid-size table.
                    as_path: vec![20, 100 + (i % 1000), 50_000 + (i % 37)],
                    maximum_delay: 0.001 + f64::from(i % 100) * 1e-4,
                    loss_ratio: 1e-6,
                    supported_bandwidth: 10e6,
                }],
            });
        }
    }
    proto::Update { routes }
}

fn decision_and_memory(prefixes: u32) {
    let t0 = Instant::now();
    let before = LIVE.load(Ordering::Relaxed);
    let mut rae = Rae::new(decision_config(), t0);
    rae.peer_up(1, t0);
    let mut in_decision = Duration::ZERO;
    let per_message = 1024; // 2048 routes
    let mut start = 0;
    while start < prefixes {
        let count = per_message.min(prefixes - start);
        let update = batch(start, count);
        let began = Instant::now();
        rae.handle_update(0, update, t0);
        in_decision += began.elapsed();
        start += count;
    }
    let paths = rae.rib().path_count();
    let after = LIVE.load(Ordering::Relaxed);
    let began = Instant::now();
    rae.handle_timeout(t0);
    let mut exported = 0usize;
    while let Some(output) = rae.poll_transmit() {
        if let Output::Peer {
            message: InterRaeMessage::Update(update),
            ..
        } = output
        {
            exported += update.routes.len();
        }
    }
    let export = began.elapsed();
    println!("prefixes x classes        : {prefixes} x 2 = {paths} paths from one peer");
    println!(
        "decision (handle_update)  : {:.3} s, {:.2} M paths/s",
        in_decision.as_secs_f64(),
        paths as f64 / in_decision.as_secs_f64() / 1e6
    );
    println!(
        "export batch to a peer    : {:.3} s for {exported} routes, {:.2} M routes/s",
        export.as_secs_f64(),
        exported as f64 / export.as_secs_f64() / 1e6
    );
    println!(
        "RIB memory                : {:.1} MiB live, {:.1} bytes per path ({} distinct AS paths)",
        (after - before) as f64 / 1048576.0,
        (after - before) as f64 / paths as f64,
        rae.rib().as_path_count()
    );
}

fn main() {
    let prefixes: u32 = std::env::var("RAE_BENCH_PREFIXES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    decision_and_memory(prefixes);
}
