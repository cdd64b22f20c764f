//! CPU and latency of the Python worker's Redis calls: a throw-away `redis-server` on
//! 127.0.0.1, then N rounds of the Interim-Update's three calls (`retrieve`, `save`,
//! `set_lifetime`) from one plain thread, as the Python worker makes them.
//!
//! `cargo run --release -p brasa-cache-redis --features testing --example call_cost -- [ROUNDS]`

use std::time::{Duration, Instant};

use brasa_cache::CacheConfig;
use brasa_cache_redis::testing::RedisServer;
use brasa_cache_redis::{RedisCaches, RedisPolicySpec, RedisSettings, RedisTarget};
use brasa_testkit::cpu::process_cpu_seconds as cpu_seconds;

const POLICY: &str = "python-policy-1";

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let server = RedisServer::start(dir.path(), "");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let caches = {
        let _inside = rt.enter();
        RedisCaches::start(
            RedisSettings {
                target: RedisTarget::parse(&server.url()).expect("url"),
                key_prefix: RedisSettings::DEFAULT_PREFIX.into(),
                call_timeout: Duration::from_secs(1),
                tool_timeout: Duration::from_secs(2),
                connect_timeout: Duration::from_secs(1),
            },
            vec![RedisPolicySpec {
                policy: POLICY.into(),
                config: CacheConfig {
                    entry_size: 256,
                    max_entries: 1_000_000,
                    ..CacheConfig::default()
                },
            }],
        )
        .expect("caches")
    };
    let far = || Instant::now() + Duration::from_secs(60);
    let connected_by = Instant::now() + Duration::from_secs(20);
    while caches
        .policy(POLICY, far())
        .expect("policy")
        .save(b"warm-up", b"v")
        .is_err()
    {
        assert!(
            Instant::now() < connected_by,
            "no connection to redis-server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let keys: Vec<Vec<u8>> = (0..1000)
        .map(|i| format!("user-{i}").into_bytes())
        .collect();
    let mut latencies = Vec::with_capacity(rounds);
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    for round in 0..rounds {
        let key = &keys[round % keys.len()];
        let call = Instant::now();
        let mut cache = caches.policy(POLICY, far()).expect("policy");
        let _ = cache.retrieve(key);
        cache.save(key, b"class-1;class-2;class-3").expect("save");
        cache.set_lifetime(key, 3600).expect("set_lifetime");
        latencies.push(call.elapsed());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "{rounds} rounds of retrieve+save+set_lifetime: {:.0} rounds/s, {:.1} us CPU per round \
         (this process, all threads), p50 {:?}, p99 {:?}",
        rounds as f64 / elapsed,
        cpu / rounds as f64 * 1e6,
        at(0.5),
        at(0.99)
    );
    drop(server);
}
