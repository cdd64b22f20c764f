//! Cache throughput and per-entry memory overhead.
//!
//! `cargo bench -p brasa-cache --bench cache_ops` prints the overhead per entry (measured with a
//! counting global allocator) and then criterion's retrieve and save throughput with 1 M entries.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use brasa_cache::{CacheConfig, MemoryBudget, PolicyCache, PER_ENTRY_OVERHEAD};
use criterion::{criterion_group, Criterion, Throughput};

/// Counts bytes currently allocated (as requested; the allocator's own headers are not seen).
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ENTRIES: usize = 1_000_000;
const T0: u64 = 1_763_800_000_000;
const VALUE: &[u8] = b"\x03\x07\x08\x09Class-1Class-22Class-333";

/// MAC-address-like keys, as the SR OS example uses the User-Name.
fn keys(n: usize) -> Vec<[u8; 17]> {
    (0..n as u64)
        .map(|i| {
            let mut k = [b':'; 17];
            let s = format!("{:012x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16);
            for (j, pair) in s.as_bytes().chunks(2).enumerate() {
                k[j * 3] = pair[0];
                k[j * 3 + 1] = pair[1];
            }
            k
        })
        .collect()
}

fn config() -> CacheConfig {
    CacheConfig {
        max_entries: 2 * ENTRIES,
        max_entry_lifetime: Duration::from_secs(3600),
        ..CacheConfig::default()
    }
}

/// A cache holding `keys`, inserted in a scattered order so that slab slots and allocations
/// are not laid out in the order the benchmark later walks the keys.
fn filled(keys: &[[u8; 17]]) -> PolicyCache {
    let mut c = PolicyCache::new(config(), 1, Arc::new(MemoryBudget::new(usize::MAX)));
    for i in 0..keys.len() {
        c.save(&keys[scatter(i, keys.len())], VALUE, T0)
            .expect("bench save");
    }
    c
}

/// A permutation of `0..n` (7919 is prime and does not divide the sizes used).
fn scatter(i: usize, n: usize) -> usize {
    (i * 7919) % n
}

fn report_overhead() {
    let keys = keys(ENTRIES);
    let before = ALLOCATED.load(Ordering::Relaxed);
    let c = filled(&keys);
    let after = ALLOCATED.load(Ordering::Relaxed);
    let payload = ENTRIES * (17 + VALUE.len());
    let overhead = (after - before - payload) as f64 / ENTRIES as f64;
    println!(
        "overhead: {ENTRIES} entries of 17 B key + {} B value: {:.1} B per entry beyond key and \
         value (heap bytes requested); budget charges {} B per entry",
        VALUE.len(),
        overhead,
        PER_ENTRY_OVERHEAD
    );
    black_box(c);
}

fn bench(c: &mut Criterion) {
    let keys = keys(ENTRIES);
    let mut cache = filled(&keys);
    // Keys are walked in array order (in a daemon the key comes from the packet being handled,
    // already in cache); the table, slots and values are hit in an order unrelated to it.
    const BATCH: usize = 4096;

    let mut g = c.benchmark_group("cache_1M");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut at = 0;
    g.bench_function("retrieve", |b| {
        b.iter(|| {
            let mut found = 0usize;
            for _ in 0..BATCH {
                at = (at + 1) % ENTRIES;
                found += cache.retrieve(&keys[at], T0 + 1).map_or(0, <[u8]>::len);
            }
            black_box(found)
        })
    });
    let mut now = T0;
    g.bench_function("save_replace", |b| {
        b.iter(|| {
            now += 1;
            for _ in 0..BATCH {
                at = (at + 1) % ENTRIES;
                let _ = black_box(cache.save(&keys[at], VALUE, now));
            }
            cache.expire(now);
        })
    });
    g.finish();

    // The same lookups on a cache that fits in L2: the CPU cost without DRAM misses.
    let hot_keys = &keys[..HOT];
    let mut hot = filled(hot_keys);
    let mut g = c.benchmark_group("cache_10k");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut at = 0;
    g.bench_function("retrieve", |b| {
        b.iter(|| {
            let mut found = 0usize;
            for _ in 0..BATCH {
                at = (at + 1) % HOT;
                found += hot.retrieve(&hot_keys[at], T0 + 1).map_or(0, <[u8]>::len);
            }
            black_box(found)
        })
    });
    g.finish();
}

const HOT: usize = 10_000;

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = bench
}

fn main() {
    report_overhead();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
