use std::fs;
use std::sync::Arc;
use std::time::Duration;

use brasa_cache::journal::{scan, Journal, MAGIC};
use brasa_cache::{CacheConfig, CacheEvent, MemoryBudget, MinimumLifetimes, PolicyCache};

const T0: u64 = 1_763_800_000_000;

fn config() -> CacheConfig {
    CacheConfig {
        persistence: true,
        max_entry_lifetime: Duration::from_secs(3600),
        minimum_lifetimes: MinimumLifetimes {
            persistence: Duration::from_secs(60),
            ..MinimumLifetimes::default()
        },
        ..CacheConfig::default()
    }
}

fn cache() -> PolicyCache {
    let mut c = PolicyCache::new(config(), 1, Arc::new(MemoryBudget::new(1 << 30)));
    c.record_changes(true);
    c
}

/// Runs a few operations on a journalled cache and returns the journal's bytes and events.
fn write_journal(path: &std::path::Path) -> Vec<CacheEvent> {
    let (mut journal, recovery) = Journal::open(path).unwrap();
    assert!(recovery.events.is_empty());
    let mut c = cache();
    c.save(b"00:20:fc:1e:cd:53", b"\x03\x07\x08\x09Class-1", T0)
        .unwrap();
    c.save(b"b", b"bee", T0 + 1).unwrap();
    c.set_lifetime(b"b", 900, T0 + 2).unwrap();
    c.save(b"c", b"short", T0 + 3).unwrap();
    c.set_lifetime(b"c", 30, T0 + 4).unwrap();
    c.save(b"d", b"gone", T0 + 5).unwrap();
    c.clear(b"d", T0 + 6);
    c.save(b"e", b"last", T0 + 7).unwrap();
    let events: Vec<CacheEvent> = c.drain_changes().into_iter().map(|ch| ch.event).collect();
    for e in &events {
        journal.append(e);
    }
    journal.flush().unwrap();
    // Dropped without compaction or sync: the "crash".
    events
}

#[test]
fn restart_restores_entries_with_remaining_lifetimes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p1.journal");
    write_journal(&path);
    let (_journal, recovery) = Journal::open(&path).unwrap();
    assert_eq!(recovery.cut_bytes, 0);
    let mut c = cache();
    let stats = c.restore(recovery.events, T0 + 100_000);
    // "c" has 30 s (< the 60 s persistence minimum) and is gone anyway by now; "d" was cleared.
    assert_eq!(stats.restored, 3);
    assert_eq!(
        c.retrieve(b"00:20:fc:1e:cd:53", T0 + 100_000),
        Some(&b"\x03\x07\x08\x09Class-1"[..])
    );
    assert_eq!(
        c.get_lifetime(b"00:20:fc:1e:cd:53", T0 + 100_000),
        Some(3500)
    );
    assert_eq!(c.get_lifetime(b"b", T0 + 100_000), Some(800));
    assert_eq!(c.retrieve(b"c", T0 + 100_000), None);
    assert_eq!(c.retrieve(b"d", T0 + 100_000), None);
    assert!(c.drain_changes().is_empty());
    assert_eq!(c.counters().saves, 0);
}

#[test]
fn entries_below_the_persistence_minimum_are_not_restored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p1.journal");
    write_journal(&path);
    let (_journal, recovery) = Journal::open(&path).unwrap();
    let mut c = cache();
    // At T0+10 s "c" still has 20 s: alive, but below the 60 s minimum.
    let stats = c.restore(recovery.events, T0 + 10_000);
    assert_eq!(stats.dropped_short_lived, 1);
    assert_eq!(c.retrieve(b"c", T0 + 10_000), None);
    assert_eq!(c.len(), 3);
}

#[test]
fn every_truncation_of_the_last_record_replays_the_good_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p1.journal");
    let events = write_journal(&path);
    let full = fs::read(&path).unwrap();
    let last_len = 8 + events.last().unwrap().encoded_len();
    let last_start = full.len() - last_len;
    for cut in last_start..full.len() {
        fs::write(&path, &full[..cut]).unwrap();
        let (mut journal, recovery) = Journal::open(&path).unwrap();
        assert_eq!(recovery.events, events[..events.len() - 1], "cut at {cut}");
        assert_eq!(recovery.cut_bytes, (cut - last_start) as u64);
        assert_eq!(fs::metadata(&path).unwrap().len(), last_start as u64);
        // Appending after recovery continues a valid journal.
        journal.append(events.last().unwrap());
        journal.flush().unwrap();
        drop(journal);
        let (_j, again) = Journal::open(&path).unwrap();
        assert_eq!(again.events, events);
    }
}

#[test]
fn a_flipped_byte_cuts_the_journal_at_the_record_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p1.journal");
    let events = write_journal(&path);
    let full = fs::read(&path).unwrap();
    // Record boundaries.
    let mut starts = vec![MAGIC.len()];
    for e in &events {
        starts.push(starts.last().unwrap() + 8 + e.encoded_len());
    }
    for at in MAGIC.len()..full.len() {
        let mut bad = full.clone();
        bad[at] ^= 0x40;
        let record = starts.iter().rposition(|&s| s <= at).unwrap();
        let s = scan(&bad);
        assert_eq!(s.events, events[..record], "flip at {at}");
        assert_eq!(s.good_len, starts[record]);
    }
}

#[test]
fn a_foreign_file_is_set_aside_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p1.journal");
    fs::write(&path, b"not a journal at all").unwrap();
    let (_journal, recovery) = Journal::open(&path).unwrap();
    assert!(recovery.events.is_empty());
    let aside = recovery.set_aside.unwrap();
    assert_eq!(fs::read(&aside).unwrap(), b"not a journal at all");
    assert_eq!(fs::read(&path).unwrap(), MAGIC);
    // A torn header (crash while creating) is simply restarted.
    fs::write(&path, &MAGIC[..3]).unwrap();
    let (_journal, recovery) = Journal::open(&path).unwrap();
    assert!(recovery.set_aside.is_none());
    assert_eq!(fs::read(&path).unwrap(), MAGIC);
}

#[test]
fn compaction_keeps_exactly_the_live_long_lived_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p1.journal");
    let (mut journal, _) = Journal::open(&path).unwrap();
    let mut c = cache();
    for round in 0..50u64 {
        for k in 0..20u32 {
            c.save(&k.to_be_bytes(), &round.to_be_bytes(), T0 + round)
                .unwrap();
        }
        c.clear(&7u32.to_be_bytes(), T0 + round);
        for ch in c.drain_changes() {
            journal.append(&ch.event);
        }
    }
    c.set_lifetime(&3u32.to_be_bytes(), 10, T0 + 100).unwrap();
    for ch in c.drain_changes() {
        journal.append(&ch.event);
    }
    journal.sync().unwrap();
    let before = journal.len_bytes();
    let live = c.persistence_snapshot(T0 + 100);
    assert_eq!(live.len(), 18);
    journal.compact(&live).unwrap();
    assert!(journal.len_bytes() < before / 40);
    assert!(!dir.path().join("p1.journal.tmp").exists());
    // Appends after compaction go to the new file.
    c.save(b"new", b"x", T0 + 200).unwrap();
    for ch in c.drain_changes() {
        journal.append(&ch.event);
    }
    journal.flush().unwrap();
    drop(journal);
    let (_j, recovery) = Journal::open(&path).unwrap();
    assert_eq!(recovery.events.len(), 19);
    let mut restored = cache();
    restored.restore(recovery.events, T0 + 300);
    assert_eq!(restored.len(), 19);
    assert_eq!(
        restored.retrieve(&5u32.to_be_bytes(), T0 + 300),
        Some(&49u64.to_be_bytes()[..])
    );
    assert_eq!(restored.retrieve(&7u32.to_be_bytes(), T0 + 300), None);
    assert_eq!(restored.retrieve(&3u32.to_be_bytes(), T0 + 300), None);
}
