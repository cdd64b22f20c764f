use std::sync::Arc;
use std::time::Duration;

use brasa_cache::{
    CacheConfig, CacheError, CacheSet, MemoryBudget, PolicyCache, RefusalReason, PER_ENTRY_OVERHEAD,
};

const T0: u64 = 1_763_800_000_000;

fn cache(config: CacheConfig) -> PolicyCache {
    PolicyCache::new(config, 1, Arc::new(MemoryBudget::new(1 << 30)))
}

fn small() -> CacheConfig {
    CacheConfig {
        entry_size: 16,
        max_entries: 2,
        max_entry_lifetime: Duration::from_secs(1200),
        ..CacheConfig::default()
    }
}

#[test]
fn save_lives_max_entry_lifetime_and_resave_restarts_it() {
    let mut c = cache(small());
    c.save(b"mac", b"v1", T0).unwrap();
    assert_eq!(c.get_lifetime(b"mac", T0), Some(1200));
    assert_eq!(c.get_lifetime(b"mac", T0 + 500_500), Some(699));
    c.save(b"mac", b"v2", T0 + 500_000).unwrap();
    assert_eq!(c.retrieve(b"mac", T0 + 500_000), Some(&b"v2"[..]));
    assert_eq!(c.get_lifetime(b"mac", T0 + 500_000), Some(1200));
    assert_eq!(c.len(), 1);
    // Expires exactly at save time + lifetime.
    assert!(c.retrieve(b"mac", T0 + 500_000 + 1_199_999).is_some());
    assert_eq!(c.retrieve(b"mac", T0 + 500_000 + 1_200_000), None);
    let n = c.counters();
    assert_eq!((n.saves, n.hits, n.misses, n.expirations), (2, 2, 1, 1));
    assert_eq!(n.entries, 0);
    assert_eq!(n.bytes, 0);
}

#[test]
fn set_lifetime_is_capped_and_zero_expires() {
    let mut c = cache(small());
    c.save(b"k", b"v", T0).unwrap();
    assert_eq!(c.set_lifetime(b"k", 900, T0 + 10_000), Ok(900));
    assert_eq!(c.get_lifetime(b"k", T0 + 10_000), Some(900));
    assert_eq!(c.set_lifetime(b"k", 99_999, T0), Ok(1200));
    assert_eq!(c.get_lifetime(b"k", T0), Some(1200));
    assert_eq!(c.set_lifetime(b"nope", 5, T0), Err(CacheError::NotFound));
    assert_eq!(c.set_lifetime(b"k", 0, T0), Ok(0));
    assert_eq!(c.retrieve(b"k", T0), None);
    assert_eq!(c.set_lifetime(b"k", 5, T0), Err(CacheError::NotFound));
}

#[test]
fn clear_removes_and_reports_liveness() {
    let mut c = cache(small());
    c.save(b"k", b"v", T0).unwrap();
    assert!(c.clear(b"k", T0));
    assert!(!c.clear(b"k", T0));
    assert_eq!(c.retrieve(b"k", T0), None);
    assert_eq!(c.counters().clears, 1);
    assert_eq!(c.counters().bytes, 0);
}

#[test]
fn each_limit_refuses_with_its_error_and_changes_nothing() {
    let mut c = cache(small());
    c.save(b"a", b"1", T0).unwrap();
    let err = c.save(b"b", &[0; 16], T0).unwrap_err();
    assert_eq!(
        err,
        CacheError::EntryTooLarge {
            size: 17,
            limit: 16
        }
    );
    // A too-large re-save leaves the old value.
    assert!(c.save(b"a", &[0; 16], T0).is_err());
    assert_eq!(c.retrieve(b"a", T0), Some(&b"1"[..]));
    c.save(b"b", b"2", T0).unwrap();
    assert_eq!(
        c.save(b"c", b"3", T0),
        Err(CacheError::TooManyEntries { limit: 2 })
    );
    // Re-saving an existing key is not a new entry.
    c.save(b"b", b"22", T0).unwrap();
    // Once an entry expires, its room is reclaimed by the save itself.
    c.set_lifetime(b"a", 1, T0).unwrap();
    c.save(b"c", b"3", T0 + 1000).unwrap();
    assert_eq!(c.len(), 2);
    let n = c.counters();
    assert_eq!(n.refused(RefusalReason::EntryTooLarge), 2);
    assert_eq!(n.refused(RefusalReason::TooManyEntries), 1);
}

#[test]
fn shutdown_refuses_saves_and_misses() {
    let mut c = cache(CacheConfig {
        shutdown: true,
        ..small()
    });
    assert_eq!(c.save(b"k", b"v", T0), Err(CacheError::CacheShutdown));
    assert_eq!(c.retrieve(b"k", T0), None);
    assert_eq!(c.counters().refused(RefusalReason::CacheShutdown), 1);
}

#[test]
fn global_bound_is_shared_and_no_policy_exceeds_it() {
    let per_entry = PER_ENTRY_OVERHEAD + 8;
    let mut set = CacheSet::new(3 * per_entry, 1);
    let config = CacheConfig {
        max_entries: 100,
        ..small()
    };
    set.configure("p1", config.clone()).unwrap();
    set.configure("p2", config).unwrap();
    set.get_mut("p1")
        .unwrap()
        .save(b"key1", b"val1", T0)
        .unwrap();
    set.get_mut("p1")
        .unwrap()
        .save(b"key2", b"val2", T0)
        .unwrap();
    set.get_mut("p2")
        .unwrap()
        .save(b"key3", b"val3", T0)
        .unwrap();
    assert_eq!(set.budget().used(), 3 * per_entry);
    let err = set
        .get_mut("p2")
        .unwrap()
        .save(b"key4", b"val4", T0)
        .unwrap_err();
    assert!(
        matches!(err, CacheError::GlobalMemoryExceeded { .. }),
        "{err:?}"
    );
    // Growing a value is refused too; shrinking is fine.
    assert!(set
        .get_mut("p1")
        .unwrap()
        .save(b"key1", b"val1+", T0)
        .is_err());
    set.get_mut("p1").unwrap().save(b"key1", b"v", T0).unwrap();
    assert_eq!(set.budget().used(), 3 * per_entry - 3);
    // Clearing or dropping a cache gives memory back.
    set.get_mut("p1").unwrap().clear(b"key2", T0);
    set.get_mut("p2")
        .unwrap()
        .save(b"key4", b"val4", T0)
        .unwrap();
    set.remove("p2");
    assert_eq!(set.budget().used(), per_entry - 3);
    assert_eq!(
        set.get("p1")
            .unwrap()
            .counters()
            .refused(RefusalReason::GlobalMemoryExceeded),
        1
    );
}

#[test]
fn expire_reclaims_only_expired_entries_from_the_heap() {
    let mut c = cache(CacheConfig {
        max_entries: 10_000,
        ..small()
    });
    for i in 0..1000u32 {
        c.save(&i.to_be_bytes(), b"v", T0).unwrap();
        c.set_lifetime(&i.to_be_bytes(), u64::from(i % 10) + 1, T0)
            .unwrap();
    }
    assert_eq!(c.next_expiry(), Some(T0 + 1));
    assert_eq!(c.expire(T0 + 999), 0);
    assert_eq!(c.expire(T0 + 1000), 100);
    assert_eq!(c.expire(T0 + 5500), 400);
    assert_eq!(c.len(), 500);
    // A lifetime extended after saving is honoured: the stale heap record does not reclaim it.
    c.set_lifetime(&9u32.to_be_bytes(), 100, T0).unwrap();
    assert_eq!(c.expire(T0 + 10_000), 499);
    assert_eq!(c.get_lifetime(&9u32.to_be_bytes(), T0 + 10_000), Some(90));
    assert_eq!(c.counters().expirations, 999);
}

#[test]
fn heavy_resaving_keeps_the_heap_bounded() {
    let mut c = cache(small());
    for i in 0..100_000u64 {
        c.save(b"k", b"v", T0 + i).unwrap();
        c.expire(T0 + i);
    }
    assert_eq!(c.len(), 1);
    assert_eq!(c.get_lifetime(b"k", T0 + 99_999), Some(1200));
}

#[test]
fn entries_are_listed_sorted_by_key_with_remaining_time() {
    let mut c = cache(CacheConfig {
        max_entries: 10,
        ..small()
    });
    c.save(b"b", b"2", T0).unwrap();
    c.save(b"a", b"1", T0).unwrap();
    c.save(b"c", b"3", T0).unwrap();
    c.set_lifetime(b"c", 0, T0).unwrap();
    let list = c.entries(T0 + 72_000);
    let keys: Vec<&[u8]> = list.iter().map(|e| e.key).collect();
    assert_eq!(keys, vec![&b"a"[..], &b"b"[..]]);
    assert_eq!(list[0].value, b"1");
    assert_eq!(list[0].remaining_ms, 1_128_000);
    assert_eq!(list[0].time_left(), "0d 00:18:48");
    let day = brasa_cache::EntryView {
        remaining_ms: 90_061_999,
        ..list[0]
    };
    assert_eq!(day.time_left(), "1d 01:01:01");
}

#[test]
fn config_validation() {
    assert!(CacheConfig::default().validate().is_ok());
    let bad = CacheConfig {
        entry_size: 0,
        ..CacheConfig::default()
    };
    assert!(bad.validate().is_err());
    let bad = CacheConfig {
        max_entry_lifetime: Duration::from_millis(10),
        ..CacheConfig::default()
    };
    assert!(bad.validate().is_err());
    let bad = CacheConfig {
        mcs_peer: Some(brasa_cache::McsPeer {
            address: "127.0.0.2".parse().unwrap(),
            sync_tag: "x".repeat(33),
        }),
        ..CacheConfig::default()
    };
    assert!(bad.validate().is_err());
}

#[test]
fn sub_second_expiry_is_exact() {
    let mut c = cache(small());
    c.save(b"k", b"v", T0 + 500).unwrap();
    let exact = T0 + 500 + 1_200_000;
    assert_eq!(c.peek(b"k", exact - 1), Some(&b"v"[..]));
    assert_eq!(c.peek(b"k", exact), None);
    assert_eq!(c.get_lifetime(b"k", exact), None);
    // The heap works in whole seconds but reclaims exactly at the expiry.
    assert_eq!(c.next_expiry(), Some(exact - 499));
    assert_eq!(c.expire(exact - 1), 0);
    assert_eq!(c.len(), 1);
    assert_eq!(c.expire(exact), 1);
    assert!(c.is_empty());
}

#[test]
fn resaving_an_expired_key_under_a_tight_budget_stays_consistent() {
    let per_entry = PER_ENTRY_OVERHEAD + 2;
    let mut set = CacheSet::new(2 * per_entry + 1, 1);
    set.configure("p", small()).unwrap();
    let c = set.get_mut("p").unwrap();
    c.save(b"a", b"1", T0).unwrap();
    c.save(b"b", b"2", T0).unwrap();
    c.set_lifetime(b"a", 1, T0).unwrap();
    // "a" has expired but is not reclaimed; its re-save needs two bytes more than the bound
    // has left, and would still need one more after "a" is reclaimed.
    let err = c.save(b"a", b"123", T0 + 1000).unwrap_err();
    assert!(
        matches!(err, CacheError::GlobalMemoryExceeded { .. }),
        "{err:?}"
    );
    assert_eq!(c.retrieve(b"a", T0 + 1000), None);
    assert_eq!(c.len(), 1);
    assert_eq!(c.entries(T0 + 1000).len(), 1);
    assert_eq!(set.budget().used(), per_entry);
    // With room, the expired key is re-saved as a new entry.
    let c = set.get_mut("p").unwrap();
    c.save(b"a", b"12", T0 + 1000).unwrap();
    assert_eq!(c.retrieve(b"a", T0 + 1000), Some(&b"12"[..]));
    assert_eq!(c.entries(T0 + 1000).len(), 2);
    c.clear(b"a", T0 + 1000);
    c.clear(b"b", T0 + 1000);
    assert_eq!(set.budget().used(), 0);
}

#[test]
fn reconfiguring_keeps_entries_and_applies_new_limits_to_later_saves() {
    let mut set = CacheSet::new(1 << 20, 1);
    set.configure("p", small()).unwrap();
    set.get_mut("p").unwrap().save(b"k", b"v", T0).unwrap();
    let tighter = CacheConfig {
        entry_size: 2,
        ..small()
    };
    let c = set.configure("p", tighter).unwrap();
    assert_eq!(c.retrieve(b"k", T0), Some(&b"v"[..]));
    assert!(matches!(
        c.save(b"k", b"vv", T0),
        Err(CacheError::EntryTooLarge { size: 3, limit: 2 })
    ));
    let invalid = CacheConfig {
        max_entries: 0,
        ..small()
    };
    assert!(set.configure("p", invalid).is_err());
    assert_eq!(set.get("p").unwrap().config().entry_size, 2);
    assert_eq!(set.iter().count(), 1);
}

#[test]
fn resave_with_a_same_size_value_replaces_it() {
    let mut c = cache(small());
    c.save(b"key", b"aaaa", T0).unwrap();
    let bytes = c.counters().bytes;
    c.save(b"key", b"bbbb", T0 + 1).unwrap();
    assert_eq!(c.retrieve(b"key", T0 + 1), Some(&b"bbbb"[..]));
    assert_eq!(c.counters().bytes, bytes);
    c.save(b"key", b"cc", T0 + 2).unwrap();
    assert_eq!(c.retrieve(b"key", T0 + 2), Some(&b"cc"[..]));
    assert_eq!(c.counters().bytes, bytes - 2);
}
