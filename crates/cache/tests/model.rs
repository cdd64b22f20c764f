//! The cache against a plain map model under random operation sequences.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use brasa_cache::{CacheConfig, CacheError, MemoryBudget, PolicyCache, PER_ENTRY_OVERHEAD};
use proptest::prelude::*;

const T0: u64 = 1_763_800_000_000;
const MAX_ENTRIES: usize = 4;
const ENTRY_SIZE: usize = 8;
const MAX_LIFETIME_MS: u64 = 10_000;

#[derive(Debug, Clone)]
enum Op {
    Save(u8, usize),
    Clear(u8),
    SetLifetime(u8, u64),
    Retrieve(u8),
    Advance(u64),
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..8, 0usize..10).prop_map(|(k, n)| Op::Save(k, n)),
        1 => (0u8..8).prop_map(Op::Clear),
        2 => (0u8..8, 0u64..15).prop_map(|(k, s)| Op::SetLifetime(k, s)),
        3 => (0u8..8).prop_map(Op::Retrieve),
        2 => (0u64..4000).prop_map(Op::Advance),
        1 => Just(Op::Expire),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn cache_matches_a_map_model(ops in prop::collection::vec(op(), 1..80)) {
        let budget = Arc::new(MemoryBudget::new(1 << 20));
        let config = CacheConfig {
            entry_size: ENTRY_SIZE,
            max_entries: MAX_ENTRIES,
            max_entry_lifetime: Duration::from_millis(MAX_LIFETIME_MS),
            ..CacheConfig::default()
        };
        let mut cache = PolicyCache::new(config, 1, Arc::clone(&budget));
        // key -> (value, expires_at)
        let mut model: BTreeMap<Vec<u8>, (Vec<u8>, u64)> = BTreeMap::new();
        let mut now = T0;
        for op in ops {
            model.retain(|_, (_, at)| *at > now);
            match op {
                Op::Save(k, n) => {
                    let key = vec![k];
                    let value = vec![k ^ 0x55; n];
                    let got = cache.save(&key, &value, now);
                    let want = if 1 + n > ENTRY_SIZE {
                        Err(CacheError::EntryTooLarge { size: 1 + n, limit: ENTRY_SIZE })
                    } else if !model.contains_key(&key) && model.len() >= MAX_ENTRIES {
                        Err(CacheError::TooManyEntries { limit: MAX_ENTRIES })
                    } else {
                        model.insert(key, (value, now + MAX_LIFETIME_MS));
                        Ok(())
                    };
                    prop_assert_eq!(got, want);
                }
                Op::Clear(k) => {
                    prop_assert_eq!(cache.clear(&[k], now), model.remove(&vec![k]).is_some());
                }
                Op::SetLifetime(k, s) => {
                    let got = cache.set_lifetime(&[k], s, now);
                    let want = match model.get_mut(&vec![k]) {
                        Some(entry) => {
                            let ms = (s * 1000).min(MAX_LIFETIME_MS);
                            entry.1 = now + ms;
                            Ok(ms / 1000)
                        }
                        None => Err(CacheError::NotFound),
                    };
                    prop_assert_eq!(got, want);
                }
                Op::Retrieve(k) => {
                    let want = model.get(&vec![k]).map(|(v, _)| v.clone());
                    prop_assert_eq!(cache.retrieve(&[k], now).map(<[u8]>::to_vec), want);
                }
                Op::Advance(ms) => now += ms,
                Op::Expire => {
                    cache.expire(now);
                    prop_assert_eq!(cache.len(), model.len());
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
            for (k, (_, at)) in &model {
                prop_assert_eq!(cache.get_lifetime(k, now), Some((at - now) / 1000));
            }
            // The budget holds exactly what the cache holds, expired-but-unreclaimed included.
            let counters = cache.counters();
            prop_assert_eq!(budget.used(), counters.bytes);
            prop_assert!(counters.bytes >= model.len() * (PER_ENTRY_OVERHEAD + 1));
        }
        drop(cache);
        prop_assert_eq!(budget.used(), 0);
    }
}
