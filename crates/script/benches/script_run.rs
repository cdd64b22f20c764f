//! Runs of the document's script (`examples/python/python_cache.py`) per second.
//!
//! `cargo bench -p brasa-script --bench script_run`: an Access-Accept (User-Name and three
//! Class attributes saved into the cache) and an Interim-Update (retrieve, split, three
//! Class attributes set, lifetime reset), each with a `PolicyCache`, the default 1 s time
//! limit armed and tracing off, on a thread other than the one that started Python (as the
//! daemon runs them).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use brasa_cache::{CacheConfig, MemoryBudget, PolicyCache};
use brasa_radius::{Code, Dictionary, Message};
use brasa_script::{PolicyCacheAt, RunOptions, Script, ScriptHost, Verdict};
use criterion::{criterion_group, BatchSize, Criterion, Throughput};

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/python/python_cache.py"
);
const NOW: u64 = 1_403_751_738_000;
const MAC: &[u8] = b"00:20:fc:1e:cd:53";

fn access_accept() -> Message {
    let mut p = Message::new(Code::AccessAccept, 7);
    p.add(25, b"Class-1").unwrap();
    p.add(25, b"Class-22").unwrap();
    p.add(25, b"Class-333").unwrap();
    p.add(1, MAC).unwrap();
    p
}

fn interim_update(dict: &Dictionary) -> Message {
    let mut p = Message::new(Code::AccountingRequest, 9);
    p.add(40, 3u32.to_be_bytes()).unwrap();
    p.add(4, vec![192, 168, 1, 254]).unwrap();
    p.add(1, MAC).unwrap();
    p.add(
        44,
        b"00:20:fc:1e:cd:53|1/1/9@1/1/9@sla-profile-1_2014/06/26 03:02:18",
    )
    .unwrap();
    p.add(46, 300u32.to_be_bytes()).unwrap();
    p.add(55, 1_403_752_038u32.to_be_bytes()).unwrap();
    for typ in 19..=26 {
        p.add_vsa(dict, 6527, typ, &[0, 1, 0, 0, 0, 0, 0, 0, 0, 0])
            .expect("vsa fits");
    }
    p
}

fn bench(c: &mut Criterion) {
    let host = ScriptHost::new(std::time::Instant::now).expect("host starts");
    let script = Script::load("python-script-1", EXAMPLE).expect("example loads");
    let dict = Dictionary::builtin();
    let options = RunOptions::default();
    let mut cache = PolicyCache::new(
        CacheConfig::default(),
        1,
        Arc::new(MemoryBudget::new(256 << 20)),
    );

    let mut group = c.benchmark_group("python_cache.py");
    group.throughput(Throughput::Elements(1));

    let accept = access_accept();
    group.bench_function("access-accept", |b| {
        b.iter_batched(
            || accept.clone(),
            |mut p| {
                let mut at = PolicyCacheAt::new(&mut cache, NOW);
                let report = host.run(&script, &mut p, &dict, Some(&mut at), &options);
                assert!(report.is_ok() && report.verdict == Verdict::Continue);
                black_box(p)
            },
            BatchSize::SmallInput,
        )
    });

    // What the Access-Accept stores, so this case also runs on its own (`-- interim`).
    cache
        .save(MAC, b"\x03\x07\x08\x09Class-1Class-22Class-333", NOW)
        .expect("entry fits");
    let interim = interim_update(&dict);
    group.bench_function("interim-update", |b| {
        b.iter_batched(
            || interim.clone(),
            |mut p| {
                let mut at = PolicyCacheAt::new(&mut cache, NOW);
                let report = host.run(&script, &mut p, &dict, Some(&mut at), &options);
                assert!(report.is_ok() && report.verdict == Verdict::Continue);
                black_box(p)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = bench
}

fn main() {
    // On a thread of its own, as the daemon's script worker runs.
    std::thread::spawn(benches).join().expect("bench thread");
    Criterion::default().configure_from_args().final_summary();
}
