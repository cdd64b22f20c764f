use std::sync::Arc;
use std::time::Duration;

use brasa_cache::{
    ApplyOutcome, CacheConfig, CacheEvent, McsPeer, MemoryBudget, MinimumLifetimes, Origin,
    PolicyCache, Version,
};
use proptest::prelude::*;

const T0: u64 = 1_763_800_000_000;

fn config() -> CacheConfig {
    CacheConfig {
        max_entries: 1000,
        max_entry_lifetime: Duration::from_secs(3600),
        minimum_lifetimes: MinimumLifetimes {
            multi_chassis_redundancy: Duration::from_secs(120),
            ..MinimumLifetimes::default()
        },
        mcs_peer: Some(McsPeer {
            address: "127.0.0.2".parse().unwrap(),
            sync_tag: "bng-pair".into(),
        }),
        ..CacheConfig::default()
    }
}

fn node(id: u32) -> PolicyCache {
    let mut c = PolicyCache::new(config(), id, Arc::new(MemoryBudget::new(1 << 30)));
    c.record_changes(true);
    c
}

fn state(c: &PolicyCache, now: u64) -> Vec<(Vec<u8>, Vec<u8>, u64)> {
    c.entries(now)
        .iter()
        .map(|e| (e.key.to_vec(), e.value.to_vec(), e.remaining_ms))
        .collect()
}

#[test]
fn local_changes_are_sent_and_peer_changes_are_not_echoed() {
    let mut a = node(1);
    let mut b = node(2);
    a.save(b"k", b"v", T0).unwrap();
    let changes = a.drain_changes();
    assert_eq!(changes.len(), 1);
    let event = a.peer_event(&changes[0], T0).unwrap();
    assert_eq!(b.apply(&event, T0 + 5), ApplyOutcome::Applied);
    assert_eq!(b.retrieve(b"k", T0 + 5), Some(&b"v"[..]));
    assert_eq!(b.get_lifetime(b"k", T0 + 5), Some(3599));
    let echoed = b.drain_changes();
    assert_eq!(echoed[0].origin, Origin::Peer);
    assert_eq!(b.peer_event(&echoed[0], T0 + 5), None);
    // The same event again is stale.
    assert_eq!(b.apply(&event, T0 + 6), ApplyOutcome::Stale);
}

#[test]
fn short_lived_entries_are_not_sent_but_replace_older_copies_with_a_clear() {
    let mut a = node(1);
    a.save(b"k", b"v", T0).unwrap();
    a.set_lifetime(b"k", 60, T0 + 1).unwrap();
    let changes = a.drain_changes();
    assert!(matches!(
        a.peer_event(&changes[0], T0 + 1),
        Some(CacheEvent::Save { .. })
    ));
    let second = a.peer_event(&changes[1], T0 + 1).unwrap();
    assert_eq!(
        second,
        CacheEvent::Clear {
            key: b"k".to_vec(),
            version: changes[1].event.version()
        }
    );
    assert!(a.peer_snapshot(T0 + 1).is_empty());
    a.set_lifetime(b"k", 600, T0 + 2).unwrap();
    assert_eq!(a.peer_snapshot(T0 + 2).len(), 1);
}

#[test]
fn a_stale_save_does_not_resurrect_a_cleared_entry() {
    let mut b = node(2);
    let v1 = Version {
        timestamp: T0,
        node_id: 1,
    };
    let v2 = Version {
        timestamp: T0 + 10,
        node_id: 1,
    };
    let save = CacheEvent::Save {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        expires_at: T0 + 3_600_000,
        version: v1,
    };
    let clear = CacheEvent::Clear {
        key: b"k".to_vec(),
        version: v2,
    };
    assert_eq!(b.apply(&clear, T0 + 20), ApplyOutcome::Applied);
    assert_eq!(b.apply(&save, T0 + 20), ApplyOutcome::Stale);
    assert_eq!(b.retrieve(b"k", T0 + 20), None);
    // A local write after the remote clear wins over it.
    b.save(b"k", b"mine", T0 + 5).unwrap();
    assert_eq!(
        b.drain_changes().last().unwrap().event.version().timestamp,
        T0 + 11
    );
}

#[derive(Debug, Clone)]
enum Op {
    Save(u8, u8),
    Clear(u8),
    SetLifetime(u8, u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6, any::<u8>()).prop_map(|(k, v)| Op::Save(k, v)),
        (0u8..6).prop_map(Op::Clear),
        (0u8..6, 1u16..4000).prop_map(|(k, s)| Op::SetLifetime(k, s)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Two writers make concurrent changes (with clock skew); two replicas receive every event
    /// in different orders and end identical, and identical to each writer after exchange.
    #[test]
    fn replicas_converge_whatever_the_delivery_order(
        ops_a in prop::collection::vec((op(), 0u64..50), 1..30),
        ops_b in prop::collection::vec((op(), 0u64..50), 1..30),
        seed in any::<u64>(),
    ) {
        let mut events = Vec::new();
        for (id, ops) in [(1u32, &ops_a), (2u32, &ops_b)] {
            let mut w = node(id);
            for (o, dt) in ops {
                let now = T0 + dt;
                match o {
                    Op::Save(k, v) => { let _ = w.save(&[*k], &[*v], now); }
                    Op::Clear(k) => { w.clear(&[*k], now); }
                    Op::SetLifetime(k, s) => { let _ = w.set_lifetime(&[*k], u64::from(*s), now); }
                }
            }
            events.extend(w.drain_changes().into_iter().map(|c| c.event));
        }
        let now = T0 + 100;
        let mut shuffled = events.clone();
        // Deterministic shuffle from the seed.
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut r1 = node(3);
        let mut r2 = node(4);
        for e in &events { r1.apply(e, now); }
        for e in shuffled.iter().rev() { r2.apply(e, now); }
        prop_assert_eq!(state(&r1, now), state(&r2, now));
        // And a replica that sees everything twice, reversed, agrees too.
        let mut r3 = node(5);
        for e in events.iter().rev().chain(events.iter()) { r3.apply(e, now); }
        prop_assert_eq!(state(&r1, now), state(&r3, now));
    }
}

#[test]
fn a_resync_carries_the_clears_a_disconnected_peer_missed() {
    let mut a = node(1);
    let mut b = node(2);
    a.save(b"stays", b"1", T0).unwrap();
    a.save(b"cleared", b"2", T0).unwrap();
    for change in a.drain_changes() {
        b.apply(&a.peer_event(&change, T0).unwrap(), T0);
    }
    // The link is down while `cleared` is cleared on a.
    assert!(a.clear(b"cleared", T0 + 1000));
    a.drain_changes();
    assert_eq!(b.retrieve(b"cleared", T0 + 1000), Some(&b"2"[..]));
    let resync = a.peer_resync(T0 + 2000);
    assert_eq!(resync.len(), 2, "one live entry and one tombstone");
    for event in &resync {
        b.apply(event, T0 + 2000);
    }
    assert_eq!(b.retrieve(b"cleared", T0 + 2000), None);
    assert_eq!(b.retrieve(b"stays", T0 + 2000), Some(&b"1"[..]));
}
