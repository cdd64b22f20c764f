//! Bytes per content state in a CAFE holding 1 M states, measured with a counting allocator.
//!
//! `cargo run --release -p brasa-curling --example state_memory [STATES]`

use brasa_curling::cafe::{Cafe, CafeConfig};
use brasa_curling::wire::{self, Neighbour};
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn ep(a: u8, b: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(127, 0, a, b), port)
}

fn main() {
    let states: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let crme = ep(2, 1, 3000);
    let rss_before = rss_bytes();
    let before = LIVE.load(Ordering::Relaxed);
    let mut cafe = Cafe::new(CafeConfig {
        me: ep(2, 2, 2000),
        crme,
        neighbours: vec![Neighbour {
            cafe: ep(1, 2, 2000),
            crme: ep(1, 1, 3000),
        }],
        announce_interval: Duration::from_secs(1),
    });
    for i in 0..states {
        // 16-byte content IDs, one next hop and a known previous hop: the common case.
        let id = format!("content-{i:08}");
        cafe.process_configure(
            crme,
            &wire::Configure {
                remove: false,
                cafe: ep(2, 2, 2000),
                prev_hop: Some(ep(1, 2, 2000)),
                next_hop: ep(2, 3, 2000),
                content_id: &id,
            },
        );
        while cafe.poll_event().is_some() {}
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    let rss = rss_bytes().saturating_sub(rss_before);
    println!(
        "{} content states, 16-byte IDs, 1 next hop: {} bytes allocated, {:.1} bytes/state (heap bytes requested, excluding allocator overhead)",
        cafe.len(),
        bytes,
        bytes as f64 / cafe.len() as f64
    );
    println!(
        "resident set grew by {rss} bytes = {:.1} bytes/state (including allocator overhead)",
        rss as f64 / cafe.len() as f64
    );
}

/// Resident set size from /proc/self/statm (0 where unavailable).
fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}
