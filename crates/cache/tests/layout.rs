//! The record layout under stress: keys and values of every size (across size classes and the
//! inline/large boundary), many keys (index growth, backward-shift deletion, records moved by
//! removals), checked against a map model including the exact budget charge; and the batched
//! lookup against one `retrieve` per key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use brasa_cache::{
    CacheConfig, MemoryBudget, PolicyCache, INLINE_ENTRY_MAX, LARGE_ENTRY_OVERHEAD,
    PER_ENTRY_OVERHEAD,
};
use proptest::prelude::*;

const T0: u64 = 1_763_800_000_000;
const MAX_LIFETIME_MS: u64 = 10_000;

fn config() -> CacheConfig {
    CacheConfig {
        entry_size: 4096,
        max_entries: 10_000,
        max_entry_lifetime: Duration::from_millis(MAX_LIFETIME_MS),
        ..CacheConfig::default()
    }
}

/// Key `k` of a family of keys whose lengths vary from 0 to 40 bytes.
fn key(k: u8) -> Vec<u8> {
    let len = usize::from(k) * 7 % 41;
    (0..len).map(|i| k.wrapping_mul(31) ^ i as u8).collect()
}

/// A value of `len` bytes, different for each key and length.
fn value(k: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| k ^ (i as u8).wrapping_mul(7) ^ len as u8)
        .collect()
}

fn charge(k: &[u8], v: &[u8]) -> usize {
    let len = k.len() + v.len();
    len + if len > INLINE_ENTRY_MAX {
        LARGE_ENTRY_OVERHEAD
    } else {
        PER_ENTRY_OVERHEAD
    }
}

/// Value lengths clustered around the interesting sizes: small, around class boundaries,
/// around the inline limit, large.
fn value_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..64,
        200usize..300,
        (INLINE_ENTRY_MAX - 48)..(INLINE_ENTRY_MAX + 8),
        600usize..2000,
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Save(u8, usize),
    Clear(u8),
    SetLifetime(u8, u64),
    Retrieve(u8),
    RetrieveMany(Vec<u8>),
    Advance(u64),
    Expire,
}

fn op(keys: u8) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..keys, value_len()).prop_map(|(k, n)| Op::Save(k, n)),
        2 => (0..keys).prop_map(Op::Clear),
        2 => (0..keys, 0u64..15).prop_map(|(k, s)| Op::SetLifetime(k, s)),
        2 => (0..keys).prop_map(Op::Retrieve),
        2 => prop::collection::vec(0..keys, 0..40).prop_map(Op::RetrieveMany),
        2 => (0u64..4000).prop_map(Op::Advance),
        1 => Just(Op::Expire),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_sizes_match_a_map_model_and_the_exact_charge(
        ops in prop::collection::vec(op(64), 1..300),
    ) {
        let budget = Arc::new(MemoryBudget::new(1 << 30));
        let mut cache = PolicyCache::new(config(), 1, Arc::clone(&budget));
        let mut model: BTreeMap<Vec<u8>, (Vec<u8>, u64)> = BTreeMap::new();
        let mut now = T0;
        for op in ops {
            model.retain(|_, (_, at)| *at > now);
            match op {
                Op::Save(k, n) => {
                    let (key, value) = (key(k), value(k, n));
                    prop_assert_eq!(cache.save(&key, &value, now), Ok(()));
                    model.insert(key, (value, now + MAX_LIFETIME_MS));
                }
                Op::Clear(k) => {
                    prop_assert_eq!(cache.clear(&key(k), now), model.remove(&key(k)).is_some());
                }
                Op::SetLifetime(k, s) => {
                    let got = cache.set_lifetime(&key(k), s, now).ok();
                    let want = model.get_mut(&key(k)).map(|entry| {
                        let ms = (s * 1000).min(MAX_LIFETIME_MS);
                        entry.1 = now + ms;
                        ms / 1000
                    });
                    prop_assert_eq!(got, want);
                }
                Op::Retrieve(k) => {
                    let want = model.get(&key(k)).map(|(v, _)| v.clone());
                    prop_assert_eq!(cache.retrieve(&key(k), now).map(<[u8]>::to_vec), want);
                }
                Op::RetrieveMany(ks) => {
                    let keys: Vec<Vec<u8>> = ks.iter().map(|&k| key(k)).collect();
                    let mut got = Vec::new();
                    cache.retrieve_many(&keys, now, |i, v| got.push((i, v.map(<[u8]>::to_vec))));
                    let want: Vec<(usize, Option<Vec<u8>>)> = keys
                        .iter()
                        .enumerate()
                        .map(|(i, k)| (i, model.get(k).map(|(v, _)| v.clone())))
                        .collect();
                    prop_assert_eq!(got, want);
                }
                Op::Advance(ms) => now += ms,
                Op::Expire => {
                    cache.expire(now);
                    prop_assert_eq!(cache.len(), model.len());
                    let charged: usize = model.iter().map(|(k, (v, _))| charge(k, v)).sum();
                    prop_assert_eq!(cache.counters().bytes, charged);
                }
            }
            model.retain(|_, (_, at)| *at > now);
            let listed: Vec<(Vec<u8>, Vec<u8>, u64)> = cache
                .entries(now)
                .iter()
                .map(|e| (e.key.to_vec(), e.value.to_vec(), e.remaining_ms))
                .collect();
            let expected: Vec<(Vec<u8>, Vec<u8>, u64)> = model
                .iter()
                .map(|(k, (v, at))| (k.clone(), v.clone(), at - now))
                .collect();
            prop_assert_eq!(listed, expected);
            for (k, (v, _)) in &model {
                prop_assert_eq!(cache.peek(k, now), Some(&v[..]));
            }
            prop_assert_eq!(budget.used(), cache.counters().bytes);
        }
        drop(cache);
        prop_assert_eq!(budget.used(), 0);
    }

    /// `retrieve_many` does what one `retrieve` per key does: same values in the same order,
    /// same hits, misses and reclaimed expired entries, same state afterwards.
    #[test]
    fn retrieve_many_equals_one_retrieve_per_key(
        setup in prop::collection::vec((0u8..200, value_len(), 0u64..20), 0..300),
        advance in 0u64..25_000,
        batches in prop::collection::vec(prop::collection::vec(0u8..255, 0..100), 1..4),
        shutdown in prop::bool::weighted(0.1),
    ) {
        let budget = Arc::new(MemoryBudget::new(1 << 30));
        let mut one = PolicyCache::new(config(), 1, Arc::clone(&budget));
        let mut many = PolicyCache::new(config(), 1, Arc::clone(&budget));
        for &(k, n, secs) in &setup {
            for c in [&mut one, &mut many] {
                c.save(&key(k), &value(k, n), T0).unwrap();
                c.set_lifetime(&key(k), secs, T0).unwrap();
            }
        }
        if shutdown {
            for c in [&mut one, &mut many] {
                c.set_config(CacheConfig { shutdown: true, ..config() });
            }
        }
        let now = T0 + advance;
        for batch in &batches {
            let keys: Vec<Vec<u8>> = batch.iter().map(|&k| key(k)).collect();
            let want: Vec<(usize, Option<Vec<u8>>)> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| (i, one.retrieve(k, now).map(<[u8]>::to_vec)))
                .collect();
            let mut got = Vec::new();
            many.retrieve_many(&keys, now, |i, v| got.push((i, v.map(<[u8]>::to_vec))));
            prop_assert_eq!(got, want);
            prop_assert_eq!(many.counters(), one.counters());
        }
        prop_assert_eq!(many.len(), one.len());
        let state = |c: &PolicyCache| -> Vec<(Vec<u8>, Vec<u8>, u64)> {
            c.entries(now).iter().map(|e| (e.key.to_vec(), e.value.to_vec(), e.remaining_ms)).collect()
        };
        prop_assert_eq!(state(&many), state(&one));
    }
}

/// Thousands of entries: the index grows many times, and clearing most of them moves records
/// around; every survivor is still found with its value.
#[test]
fn many_entries_survive_growth_and_mass_removal() {
    let budget = Arc::new(MemoryBudget::new(1 << 30));
    let mut c = PolicyCache::new(
        CacheConfig {
            max_entries: 100_000,
            ..config()
        },
        1,
        Arc::clone(&budget),
    );
    let key = |i: u32| format!("{:02x}:{:02x}:{:06x}", i % 251, i % 13, i).into_bytes();
    let value = |i: u32| vec![i as u8; (i as usize * 13) % 700];
    for i in 0..20_000 {
        c.save(&key(i), &value(i), T0).unwrap();
    }
    for i in (0..20_000).filter(|i| i % 3 != 0) {
        assert!(c.clear(&key(i), T0), "{i}");
    }
    assert_eq!(c.len(), 6667);
    let keys: Vec<Vec<u8>> = (0..20_000).map(key).collect();
    let mut found = 0;
    c.retrieve_many(&keys, T0, |i, v| {
        let i = i as u32;
        assert_eq!(
            v.map(<[u8]>::to_vec),
            i.is_multiple_of(3).then(|| value(i)),
            "{i}"
        );
        found += usize::from(v.is_some());
    });
    assert_eq!(found, 6667);
    assert_eq!(c.counters().hits, 6667);
    assert_eq!(c.counters().misses, 20_000 - 6667);
    // Everything expires; the pages and the budget are given back.
    assert_eq!(c.expire(T0 + MAX_LIFETIME_MS), 6667);
    assert!(c.is_empty());
    assert_eq!(budget.used(), 0);
}
