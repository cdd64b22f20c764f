//! The Redis-backed caches against real `redis-server`s started by each test: entries and
//! limits shared by two nodes, atomic max-entries under concurrent saves, lifetimes, the
//! operator tools, a dead or frozen Redis (calls fail within their deadline, then recover),
//! a three-master Redis Cluster, and a master found through Sentinel and followed through a
//! fail-over.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use brasa_cache::{CacheConfig, CacheError, RefusalReason};
use brasa_cache_redis::testing::{free_port, RedisServer};
use brasa_cache_redis::{RedisCaches, RedisPolicySpec, RedisSettings, RedisTarget};

const POLICY: &str = "python-policy-1";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn config(max_entries: usize, lifetime: Duration) -> CacheConfig {
    CacheConfig {
        entry_size: 64,
        max_entries,
        max_entry_lifetime: lifetime,
        ..CacheConfig::default()
    }
}

/// A node's caches on `url` with one policy.
fn node(rt: &tokio::runtime::Runtime, url: &str, config: CacheConfig) -> Arc<RedisCaches> {
    let _inside = rt.enter();
    RedisCaches::start(
        RedisSettings {
            target: RedisTarget::parse(url).expect("url"),
            key_prefix: RedisSettings::DEFAULT_PREFIX.into(),
            call_timeout: Duration::from_millis(200),
            tool_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_millis(500),
        },
        vec![RedisPolicySpec {
            policy: POLICY.into(),
            config,
        }],
    )
    .expect("caches")
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

/// Waits (with a deadline) until `node` has connected.
fn until_connected(node: &RedisCaches) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !node.connected() {
        assert!(Instant::now() < deadline, "no connection by the deadline");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (with a deadline) until `node` saves successfully: it has connected.
fn until_saved(node: &RedisCaches, key: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match node.policy(POLICY, far()).unwrap().save(key, b"v") {
            Ok(()) => return,
            Err(CacheError::Backend { reason }) if Instant::now() < deadline => {
                let _ = reason;
                thread::sleep(Duration::from_millis(20));
            }
            Err(err) => panic!("no save by the deadline: {err}"),
        }
    }
}

#[test]
fn two_nodes_share_entries_limits_and_tools() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), "");
    let rt = runtime();
    let a = node(&rt, &redis.url(), config(2, Duration::from_secs(3600)));
    let b = node(&rt, &redis.url(), config(2, Duration::from_secs(3600)));
    until_saved(&a, b"00:20:fc:1e:cd:53");
    until_connected(&b);

    let mut on_b = b.policy(POLICY, far()).unwrap();
    assert_eq!(on_b.retrieve(b"00:20:fc:1e:cd:53").unwrap(), b"v");
    assert!((3599..=3600).contains(&on_b.get_lifetime(b"00:20:fc:1e:cd:53").unwrap()));
    // Interim-Update on node B.
    assert_eq!(on_b.set_lifetime(b"00:20:fc:1e:cd:53", 900).unwrap(), 900);
    let mut on_a = a.policy(POLICY, far()).unwrap();
    assert!((898..=900).contains(&on_a.get_lifetime(b"00:20:fc:1e:cd:53").unwrap()));
    assert_eq!(
        on_a.set_lifetime(b"00:20:fc:1e:cd:53", 86_400).unwrap(),
        3600,
        "capped by max-entry-lifetime"
    );

    // max-entries counts both nodes' entries; a re-save of a present key is no new entry.
    on_b.save(b"second", b"v").unwrap();
    assert_eq!(
        on_a.save(b"third", b"v"),
        Err(CacheError::TooManyEntries { limit: 2 })
    );
    on_a.save(b"second", b"updated").unwrap();
    assert_eq!(
        on_a.save(b"k", &[0; 64]),
        Err(CacheError::EntryTooLarge {
            size: 65,
            limit: 64
        })
    );
    assert_eq!(on_a.retrieve(b"absent"), Err(CacheError::NotFound));
    assert_eq!(on_a.clear(b"absent"), Err(CacheError::NotFound));
    assert_eq!(on_a.set_lifetime(b"absent", 5), Err(CacheError::NotFound));
    assert_eq!(on_a.get_lifetime(b"absent"), Err(CacheError::NotFound));

    // The tools of either node see every entry.
    let dump = rt.block_on(b.dump(POLICY)).unwrap();
    let keys: Vec<&[u8]> = dump.iter().map(|e| e.key.as_slice()).collect();
    assert_eq!(keys, [&b"00:20:fc:1e:cd:53"[..], b"second"]);
    assert_eq!(dump[1].value, b"updated");
    assert!(dump[0].remaining_ms > 3_500_000 && dump[0].remaining_ms <= 3_600_000);
    rt.block_on(b.clear_entry(POLICY, b"second")).unwrap();
    assert_eq!(on_a.retrieve(b"second"), Err(CacheError::NotFound));
    assert_eq!(
        rt.block_on(a.set_entry_lifetime(POLICY, b"00:20:fc:1e:cd:53", 1200))
            .unwrap(),
        1200
    );
    assert!(matches!(
        rt.block_on(a.clear_entry("other", b"k")),
        Err(brasa_cache_redis::RedisCacheError::NoCache(_))
    ));
    // A zero lifetime removes the entry now, as in the embedded cache.
    on_b.save(b"short", b"v").unwrap();
    assert_eq!(on_b.set_lifetime(b"short", 0).unwrap(), 0);
    assert_eq!(on_a.retrieve(b"short"), Err(CacheError::NotFound));

    let stats = rt.block_on(a.stats());
    assert!(stats.connected);
    let cache = &stats.caches[0];
    assert_eq!(cache.entries, Some(1));
    assert_eq!(cache.refused[&RefusalReason::TooManyEntries], 1);
    assert_eq!(cache.refused[&RefusalReason::EntryTooLarge], 1);
    let on_b = &rt.block_on(b.stats()).caches[0];
    assert_eq!(on_b.hits, 1);
    assert_eq!(on_b.backend_failures, 0);
}

#[test]
fn concurrent_saves_from_two_nodes_never_exceed_max_entries() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), "");
    let rt = runtime();
    let nodes = [
        node(&rt, &redis.url(), config(50, Duration::from_secs(60))),
        node(&rt, &redis.url(), config(50, Duration::from_secs(60))),
    ];
    until_saved(&nodes[0], b"first");
    until_connected(&nodes[1]);
    let saved: usize = thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|t| {
                let node = &nodes[t % 2];
                scope.spawn(move || {
                    (0..40)
                        .filter(|i| {
                            let key = format!("{t}-{i}");
                            node.policy(POLICY, far())
                                .unwrap()
                                .save(key.as_bytes(), b"v")
                                .is_ok()
                        })
                        .count()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_eq!(saved, 49, "50 entries with the first one");
    assert_eq!(rt.block_on(nodes[1].dump(POLICY)).unwrap().len(), 50);
}

#[test]
fn entries_expire_with_their_redis_ttl_and_free_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), "");
    let rt = runtime();
    let a = node(&rt, &redis.url(), config(1, Duration::from_secs(1)));
    until_saved(&a, b"k");
    let mut cache = a.policy(POLICY, far()).unwrap();
    assert_eq!(
        cache.save(b"other", b"v"),
        Err(CacheError::TooManyEntries { limit: 1 })
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while cache.retrieve(b"k").is_ok() {
        assert!(Instant::now() < deadline, "the entry never expired");
        thread::sleep(Duration::from_millis(50));
    }
    // The expired entry no longer counts.
    cache.save(b"other", b"v").unwrap();
    assert_eq!(rt.block_on(a.stats()).caches[0].entries, Some(1));
}

#[test]
fn a_dead_or_frozen_redis_fails_calls_within_their_deadline_and_service_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path(), "");
    let rt = runtime();
    let a = node(&rt, &redis.url(), config(100, Duration::from_secs(60)));
    until_saved(&a, b"k");

    // Frozen: the call gives up at the run's deadline (here shorter than the call timeout).
    redis.signal("STOP");
    let deadline = Instant::now() + Duration::from_millis(50);
    let err = a
        .policy(POLICY, deadline)
        .unwrap()
        .retrieve(b"k")
        .unwrap_err();
    assert!(
        matches!(&err, CacheError::Backend { reason } if reason.contains("did not answer within")),
        "{err:?}"
    );
    // With the deadline past, a call is not even attempted.
    let err = a
        .policy(POLICY, deadline)
        .unwrap()
        .retrieve(b"k")
        .unwrap_err();
    assert!(
        matches!(&err, CacheError::Backend { reason } if reason.contains("no time left")),
        "{err:?}"
    );
    redis.signal("CONT");
    assert_eq!(
        a.policy(POLICY, far()).unwrap().retrieve(b"k").unwrap(),
        b"v"
    );

    // Dead: calls fail (not hang) until it is back; then the node reconnects by itself.
    redis.kill();
    for _ in 0..3 {
        let err = a
            .policy(POLICY, far())
            .unwrap()
            .save(b"k2", b"v")
            .unwrap_err();
        assert!(matches!(err, CacheError::Backend { .. }), "{err:?}");
    }
    let stats = rt.block_on(a.stats());
    assert!(!stats.connected);
    assert_eq!(stats.caches[0].entries, None);
    assert!(stats.caches[0].backend_failures >= 4);
    redis.restart();
    until_saved(&a, b"k3");
    // The restarted Redis kept nothing (no persistence configured): a miss, not an error.
    assert_eq!(
        a.policy(POLICY, far()).unwrap().retrieve(b"k"),
        Err(CacheError::NotFound)
    );
}

#[test]
fn redis_maxmemory_is_the_global_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), "maxmemory 2mb\nmaxmemory-policy noeviction");
    let rt = runtime();
    let a = node(
        &rt,
        &redis.url(),
        CacheConfig {
            entry_size: 64 << 10,
            max_entries: 1000,
            ..CacheConfig::default()
        },
    );
    until_saved(&a, b"first");
    let mut cache = a.policy(POLICY, far()).unwrap();
    let value = vec![7u8; 60 << 10];
    let refusal = (0..100)
        .map(|i| cache.save(format!("k{i}").as_bytes(), &value))
        .find_map(Result::err)
        .expect("2 MB of Redis memory fill up");
    assert!(
        matches!(refusal, CacheError::GlobalMemoryExceeded { .. }),
        "{refusal:?}"
    );
    let stats = rt.block_on(a.stats());
    assert_eq!(
        stats.caches[0].refused[&RefusalReason::GlobalMemoryExceeded],
        1
    );
}

/// Whether `master` serves `slot` (from the `myself` line of `CLUSTER NODES`).
fn serves(master: &RedisServer, slot: u16) -> bool {
    let nodes = master.cli(&["CLUSTER", "NODES"]).unwrap_or_default();
    let Some(myself) = nodes.lines().find(|line| line.contains("myself")) else {
        return false;
    };
    myself.split_whitespace().skip(8).any(|range| {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        matches!((first.parse::<u16>(), last.parse::<u16>()), (Ok(f), Ok(l)) if (f..=l).contains(&slot))
    })
}

#[test]
fn a_three_master_cluster_holds_a_policy_in_one_slot() {
    let dir = tempfile::tempdir().unwrap();
    let masters: Vec<RedisServer> = (0..3)
        .map(|_| {
            RedisServer::start(
                dir.path(),
                "cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout 5000",
            )
        })
        .collect();
    let addresses: Vec<String> = masters
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.port))
        .collect();
    let mut create = vec!["--cluster", "create"];
    create.extend(addresses.iter().map(String::as_str));
    create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
    masters[0].cli(&create).expect("cluster created");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !masters.iter().all(|m| {
        m.cli(&["CLUSTER", "INFO"])
            .is_some_and(|info| info.contains("cluster_state:ok"))
    }) {
        assert!(Instant::now() < deadline, "cluster never became ok");
        thread::sleep(Duration::from_millis(50));
    }
    let slot: u16 = masters[0]
        .cli(&["CLUSTER", "KEYSLOT", &format!("{{{POLICY}}}")])
        .and_then(|reply| reply.trim().parse().ok())
        .expect("the hash tag's slot");
    let owner = masters
        .iter()
        .position(|m| serves(m, slot))
        .expect("a master serves the policy's slot");
    // The URL names a master that does not serve the slot: the client must follow the
    // cluster's slot map.
    let seed = &masters[(owner + 1) % masters.len()];
    let rt = runtime();
    let url = format!("redis+cluster://127.0.0.1:{}", seed.port);
    let a = node(&rt, &url, config(2, Duration::from_secs(60)));
    let b = node(&rt, &url, config(2, Duration::from_secs(60)));
    until_saved(&a, b"k1");
    until_saved(&b, b"k2");
    // The max-entries limit holds across nodes (the save script touches the index and the
    // entry in one slot).
    assert_eq!(
        a.policy(POLICY, far()).unwrap().save(b"k3", b"v"),
        Err(CacheError::TooManyEntries { limit: 2 })
    );
    assert_eq!(
        b.policy(POLICY, far()).unwrap().set_lifetime(b"k1", 30),
        Ok(30)
    );
    assert_eq!(rt.block_on(a.dump(POLICY)).unwrap().len(), 2);
    assert!(rt.block_on(b.clear_entry(POLICY, b"k1")).is_ok());
    assert_eq!(
        a.policy(POLICY, far()).unwrap().retrieve(b"k1"),
        Err(CacheError::NotFound)
    );
    // Every key of the policy lives on the slot's master, none elsewhere.
    for (index, master) in masters.iter().enumerate() {
        let keys = master
            .cli(&["--scan", "--pattern", "brasa:pc:*"])
            .unwrap_or_default();
        if index == owner {
            assert!(keys.contains("brasa:pc:{python-policy-1}:e:k2"), "{keys}");
        } else {
            assert!(keys.trim().is_empty(), "master {index} holds {keys}");
        }
    }
}

#[test]
fn a_master_found_through_sentinel_and_followed_through_a_failover() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = RedisServer::start(dir.path(), "");
    let replica = RedisServer::start(dir.path(), &format!("replicaof 127.0.0.1 {}", master.port));
    let sentinel = RedisServer::start_with(
        "redis-sentinel",
        dir.path(),
        free_port(),
        &format!(
            "sentinel monitor brasa-test 127.0.0.1 {} 1\nsentinel down-after-milliseconds brasa-test 1000\nsentinel failover-timeout brasa-test 5000",
            master.port
        ),
    );
    let rt = runtime();
    let url = format!("redis+sentinel://127.0.0.1:{}/brasa-test", sentinel.port);
    let a = node(&rt, &url, config(10, Duration::from_secs(60)));
    until_saved(&a, b"k");
    // The entry is on the master the Sentinel named.
    let keys = master.cli(&["--scan", "--pattern", "brasa:pc:*"]).unwrap();
    assert!(keys.contains("brasa:pc:{python-policy-1}:e:k"), "{keys}");
    // Once the replica has it, the master dies; the Sentinel promotes the replica and the node
    // follows it by itself, with the replicated entry.
    let deadline = Instant::now() + Duration::from_secs(20);
    while replica
        .cli(&["EXISTS", "brasa:pc:{python-policy-1}:e:k"])
        .is_none_or(|n| n.trim() != "1")
    {
        assert!(Instant::now() < deadline, "the replica never had the entry");
        thread::sleep(Duration::from_millis(20));
    }
    master.kill();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !replica
        .cli(&["ROLE"])
        .is_some_and(|role| role.starts_with("master"))
    {
        assert!(
            Instant::now() < deadline,
            "the Sentinel never promoted the replica"
        );
        thread::sleep(Duration::from_millis(50));
    }
    until_saved(&a, b"after");
    assert_eq!(
        a.policy(POLICY, far()).unwrap().retrieve(b"k").unwrap(),
        b"v"
    );
    let keys = replica.cli(&["--scan", "--pattern", "brasa:pc:*"]).unwrap();
    assert!(
        keys.contains("brasa:pc:{python-policy-1}:e:after"),
        "{keys}"
    );
}
