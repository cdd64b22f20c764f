//! Cache throughput and per-entry memory overhead.
//!
//! `cargo bench -p brasa-cache --bench cache_ops` prints the overhead per entry (measured with a
//! counting global allocator), a quick summary of retrieves per second at 1 M entries (one key
//! per call, and batched with `retrieve_many`), then criterion's retrieve and save throughput
//! with 1 M and 10 k entries.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brasa_cache::{CacheConfig, MemoryBudget, PolicyCache, PER_ENTRY_OVERHEAD};
use criterion::{criterion_group, Criterion, Throughput};

/// Counts bytes currently allocated (as requested; the allocator's own headers are not seen).
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to `System` with the caller's layout and pointer, so
// `System`'s guarantees hold; the counter is a side effect with no bearing on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's guarantees for `alloc` are passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with `layout` (every allocation goes through it).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `dealloc`; `new_size` is the caller's, under `realloc`'s contract.
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

/// A cache holding `keys`, inserted in a scattered order so that records and index buckets
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

/// Best and median of `runs` passes over all keys, in million retrieves per second.
fn passes(runs: usize, mut pass: impl FnMut() -> usize) -> (f64, f64) {
    let mut rates: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let n = pass();
            n as f64 / t.elapsed().as_secs_f64() / 1e6
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    (rates[runs - 1], rates[runs / 2])
}

/// Passes over every key in the quick summary (the best one is reported: the machine this runs
/// on is shared, and interference only ever slows a pass down).
const PASSES: usize = 11;

/// Retrieves per second over all 1 M keys, one call per key and batched, and the latency of
/// one lookup; checks that every value was found.
fn report_retrieve_rates() {
    let keys = keys(ENTRIES);
    let mut cache = filled(&keys);
    let (single, single_median) = passes(PASSES, || {
        let mut found = 0;
        for k in &keys {
            found += usize::from(cache.retrieve(k, T0 + 1).is_some());
        }
        assert_eq!(found, ENTRIES);
        found
    });
    let (batched, batched_median) = passes(PASSES, || {
        let mut found = 0;
        for block in keys.chunks(4096) {
            cache.retrieve_many(block, T0 + 1, |_, v| found += usize::from(v.is_some()));
        }
        assert_eq!(found, ENTRIES);
        found
    });
    // Latency: each lookup waits for the previous one (the next key depends on the value's
    // first byte, which is read), as when a daemon does one lookup per packet between other work.
    let (chained, chained_median) = passes(PASSES, || {
        let mut at = 0usize;
        for _ in 0..ENTRIES {
            let v = cache.retrieve(&keys[at], T0 + 1).expect("present");
            at = (at + 1 + usize::from(v[0] & 0x80)) % ENTRIES;
        }
        ENTRIES
    });
    println!(
        "retrieve, {ENTRIES} entries, one key per call: {single:.2} M/s (best of {PASSES} passes \
         over every key; median {single_median:.2})"
    );
    println!(
        "retrieve, {ENTRIES} entries, retrieve_many of 4096 keys: {batched:.2} M/s (best of \
         {PASSES}; median {batched_median:.2})"
    );
    println!(
        "retrieve, {ENTRIES} entries, each lookup waiting for the previous one: {:.0} ns per \
         lookup (best of {PASSES}; median {:.0})",
        1e3 / chained,
        1e3 / chained_median
    );
}

fn bench(c: &mut Criterion) {
    let keys = keys(ENTRIES);
    let mut cache = filled(&keys);
    // Keys are walked in array order (in a daemon the key comes from the packet being handled,
    // already in cache); the index and the records are hit in an order unrelated to it.
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
    let mut block = 0;
    g.bench_function("retrieve_many", |b| {
        b.iter(|| {
            let start = block * BATCH % (ENTRIES - BATCH);
            block += 1;
            let mut found = 0usize;
            cache.retrieve_many(&keys[start..start + BATCH], T0 + 1, |_, v| {
                found += v.map_or(0, <[u8]>::len)
            });
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
    let mut block = 0;
    g.bench_function("retrieve_many", |b| {
        b.iter(|| {
            let mut found = 0usize;
            for _ in 0..BATCH / HOT_BLOCK {
                let start = block * HOT_BLOCK % (HOT - HOT_BLOCK);
                block += 1;
                hot.retrieve_many(&hot_keys[start..start + HOT_BLOCK], T0 + 1, |_, v| {
                    found += v.map_or(0, <[u8]>::len)
                });
            }
            black_box(found)
        })
    });
    g.finish();
}

/// Keys per `retrieve_many` call on the small cache (4096 / 8 calls per iteration).
const HOT_BLOCK: usize = 512;

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
    report_retrieve_rates();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
