//! One policy's cache: a slab of entries indexed by a hash table of slot numbers, with a
//! min-heap of `(expiry, slot)` records for reclaiming expired entries without scanning.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;
use std::mem::size_of;
use std::sync::Arc;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use crate::config::duration_ms;
use crate::error::{CacheError, RefusalReason};
use crate::event::{CacheEvent, Change, Origin, Version};
use crate::{CacheConfig, MemoryBudget, Millis};

/// Marks a free slot (no live entry ever expires at `u64::MAX`: lifetimes are capped).
const FREE: Millis = Millis::MAX;
/// End of the free-slot list.
const NO_SLOT: u32 = u32::MAX;

/// One entry. Key and value share one exact-size allocation (`key ++ value`).
struct Slot {
    data: Box<[u8]>,
    expires_at: Millis,
    version_ts: Millis,
    node_id: u32,
    /// Length of the key prefix of `data`; for a free slot, the next free slot.
    key_len: u32,
}

impl Slot {
    fn key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }
    fn value(&self) -> &[u8] {
        &self.data[self.key_len as usize..]
    }
    fn is_free(&self) -> bool {
        self.expires_at == FREE
    }
    fn version(&self) -> Version {
        Version {
            timestamp: self.version_ts,
            node_id: self.node_id,
        }
    }
}

/// A heap record `(expiry second, slot)`; stale records (entry re-saved, cleared or slot
/// reused) are skipped when popped: an entry is only reclaimed if its own exact expiry has
/// passed. The expiry is kept as whole Unix seconds rounded UP (8-byte records instead of 16);
/// [`PolicyCache::expire`] looks one second ahead to stay exact.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ExpiryRecord {
    at_secs: u32,
    slot: u32,
}

impl ExpiryRecord {
    fn new(at: Millis, slot: u32) -> Self {
        let secs = at.div_ceil(1000);
        ExpiryRecord {
            at_secs: u32::try_from(secs).unwrap_or(u32::MAX),
            slot,
        }
    }
    /// When the record fires: at or after the expiry it was made for.
    fn at(self) -> Millis {
        u64::from(self.at_secs) * 1000
    }
}

impl Ord for ExpiryRecord {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: `BinaryHeap` is a max-heap and we want the earliest expiry on top.
        (other.at(), other.slot).cmp(&(self.at(), self.slot))
    }
}

impl PartialOrd for ExpiryRecord {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Bytes one entry costs beyond its key and value, charged to the memory budget:
/// the slab slot, one 8-byte heap record, the hash index bucket (a `u32` plus one control byte) at the
/// table's lowest load factor after growth (7/16), and 16 bytes of allocator header/rounding for
/// the key+value allocation.
pub const PER_ENTRY_OVERHEAD: usize =
    size_of::<Slot>() + size_of::<ExpiryRecord>() + (size_of::<u32>() + 1) * 16 / 7 + 1 + 16;

/// Counters of one cache (a snapshot; see [`PolicyCache::counters`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheCounters {
    /// Live and not yet reclaimed entries.
    pub entries: usize,
    /// Bytes charged to the global budget (keys, values and [`PER_ENTRY_OVERHEAD`] each).
    pub bytes: usize,
    /// Successful saves (local).
    pub saves: u64,
    /// Retrieves that found a live entry.
    pub hits: u64,
    /// Retrieves that found nothing (or an expired entry).
    pub misses: u64,
    /// Entries reclaimed because their lifetime ended.
    pub expirations: u64,
    /// Entries removed by `clear`.
    pub clears: u64,
    /// Successful `set_lifetime` calls.
    pub lifetime_changes: u64,
    /// Refused saves and lifetime changes, indexed like [`RefusalReason::ALL`].
    pub refused: [u64; 4],
    /// Peer events applied.
    pub peer_applied: u64,
    /// Peer events ignored because the local entry had a later version.
    pub peer_stale: u64,
    /// Peer events refused by a local limit.
    pub peer_refused: u64,
}

impl CacheCounters {
    /// Refusals for one reason.
    pub fn refused(&self, reason: RefusalReason) -> u64 {
        self.refused[reason.index()]
    }
}

/// One live entry as shown by the dump tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryView<'a> {
    /// Entry key.
    pub key: &'a [u8],
    /// Entry value.
    pub value: &'a [u8],
    /// Milliseconds until expiry.
    pub remaining_ms: u64,
    /// Version of the last write.
    pub version: Version,
}

impl EntryView<'_> {
    /// Remaining lifetime as SR OS prints it in `tools dump ... cache`: `0d 00:12:08`
    /// (whole seconds, rounded down).
    pub fn time_left(&self) -> String {
        let s = self.remaining_ms / 1000;
        format!(
            "{}d {:02}:{:02}:{:02}",
            s / 86_400,
            s / 3600 % 24,
            s / 60 % 60,
            s % 60
        )
    }
}

/// What [`PolicyCache::apply`] did with a peer event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The event was newer and is now reflected.
    Applied,
    /// The local state has the same or a later version; nothing changed.
    Stale,
    /// A local limit refused the entry; nothing changed.
    Refused(CacheError),
}

/// What [`PolicyCache::restore`] did with a journal's events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// Entries live after the restore.
    pub restored: usize,
    /// Entries dropped because they expired or live less than the persistence minimum.
    pub dropped_short_lived: usize,
    /// Events refused by a limit (the configuration shrank since they were written).
    pub refused: usize,
}

/// The cache of one python-policy.
pub struct PolicyCache {
    config: CacheConfig,
    max_lifetime_ms: u64,
    node_id: u32,
    budget: Arc<MemoryBudget>,
    hasher: RandomState,
    index: HashTable<u32>,
    slots: Vec<Slot>,
    free_head: u32,
    len: usize,
    bytes: usize,
    expiry: BinaryHeap<ExpiryRecord>,
    tombstones: HashMap<Box<[u8]>, Version>,
    tombstone_expiry: BinaryHeap<Reverse<(Millis, Box<[u8]>)>>,
    counters: CacheCounters,
    record_changes: bool,
    changes: Vec<Change>,
}

impl PolicyCache {
    /// An empty cache charging `budget`, writing versions as `node_id`.
    ///
    /// The configuration is assumed valid ([`CacheConfig::validate`]).
    pub fn new(config: CacheConfig, node_id: u32, budget: Arc<MemoryBudget>) -> Self {
        PolicyCache {
            max_lifetime_ms: config.max_lifetime_ms(),
            config,
            node_id,
            budget,
            hasher: RandomState::default(),
            index: HashTable::new(),
            slots: Vec::new(),
            free_head: NO_SLOT,
            len: 0,
            bytes: 0,
            expiry: BinaryHeap::new(),
            tombstones: HashMap::new(),
            tombstone_expiry: BinaryHeap::new(),
            counters: CacheCounters::default(),
            record_changes: false,
            changes: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Replaces the configuration. Limits apply to later saves; existing entries stay (as in
    /// SR OS, lowering a limit does not evict).
    pub fn set_config(&mut self, config: CacheConfig) {
        self.max_lifetime_ms = config.max_lifetime_ms();
        self.config = config;
    }

    /// Entries held (including expired ones not yet reclaimed by [`PolicyCache::expire`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Starts (or stops) recording every mutation for [`PolicyCache::drain_changes`]; the shell
    /// turns it on when persistence or peer sync is configured.
    pub fn record_changes(&mut self, on: bool) {
        self.record_changes = on;
        if !on {
            self.changes = Vec::new();
        }
    }

    /// Takes the mutations recorded since the last call, oldest first.
    pub fn drain_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// The event to send the multi-chassis peer for `change`, or `None` if it must not be sent
    /// (it came from the peer). A save or lifetime change leaving less than the MCS minimum
    /// lifetime is sent as a clear with the same version, so the peer drops any older copy
    /// instead of keeping a stale value.
    pub fn peer_event(&self, change: &Change, now: Millis) -> Option<CacheEvent> {
        if change.origin != Origin::Local {
            return None;
        }
        let min = duration_ms(self.config.minimum_lifetimes.multi_chassis_redundancy);
        if change.event.outlives(now, min) {
            Some(change.event.clone())
        } else {
            Some(CacheEvent::Clear {
                key: change.event.key().to_vec(),
                version: change.event.version(),
            })
        }
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> CacheCounters {
        CacheCounters {
            entries: self.len,
            bytes: self.bytes,
            ..self.counters.clone()
        }
    }

    fn charge_of(entry_len: usize) -> usize {
        entry_len + PER_ENTRY_OVERHEAD
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn find(&self, key: &[u8]) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(self.hash(key), |&i| slots[i as usize].key() == key)
            .copied()
    }

    /// The slot of a live (unexpired) entry.
    fn find_live(&self, key: &[u8], now: Millis) -> Option<u32> {
        self.find(key)
            .filter(|&i| self.slots[i as usize].expires_at > now)
    }

    fn refuse(&mut self, error: CacheError) -> CacheError {
        if let Some(reason) = error.refusal_reason() {
            self.counters.refused[reason.index()] += 1;
        }
        error
    }

    /// The version a local write of `key` gets: `now`, but always after what it overwrites so
    /// that a clock step backwards cannot make a peer ignore it.
    fn next_version(&self, key: &[u8], slot: Option<u32>, now: Millis) -> Version {
        let previous = slot
            .map(|i| self.slots[i as usize].version())
            .or_else(|| self.tombstones.get(key).copied());
        let timestamp = match previous {
            Some(v) if v.timestamp >= now => v.timestamp + 1,
            _ => now,
        };
        Version {
            timestamp,
            node_id: self.node_id,
        }
    }

    fn check_size(&self, key: &[u8], value: &[u8]) -> Result<(), CacheError> {
        let size = key.len() + value.len();
        if size > self.config.entry_size {
            return Err(CacheError::EntryTooLarge {
                size,
                limit: self.config.entry_size,
            });
        }
        Ok(())
    }

    /// Stores `value` under `key` with a fresh `max-entry-lifetime`, replacing any previous value
    /// and restarting its lifetime. Refused saves change nothing.
    pub fn save(&mut self, key: &[u8], value: &[u8], now: Millis) -> Result<(), CacheError> {
        if self.config.shutdown {
            return Err(self.refuse(CacheError::CacheShutdown));
        }
        if let Err(e) = self.check_size(key, value) {
            return Err(self.refuse(e));
        }
        let slot = self.find(key);
        let version = self.next_version(key, slot, now);
        let expires_at = now.saturating_add(self.max_lifetime_ms).min(FREE - 1);
        if let Err(e) = self.upsert(slot, key, value, expires_at, version, now) {
            return Err(self.refuse(e));
        }
        self.counters.saves += 1;
        if self.record_changes {
            self.changes.push(Change {
                event: CacheEvent::Save {
                    key: key.to_vec(),
                    value: value.to_vec(),
                    expires_at,
                    version,
                },
                origin: Origin::Local,
            });
        }
        Ok(())
    }

    /// Inserts or replaces an entry, enforcing `max-entries` and the global budget.
    fn upsert(
        &mut self,
        slot: Option<u32>,
        key: &[u8],
        value: &[u8],
        expires_at: Millis,
        version: Version,
        now: Millis,
    ) -> Result<u32, CacheError> {
        let charge = Self::charge_of(key.len() + value.len());
        // An expired entry is reclaimed first: `charge` may run `expire`, which must not free
        // the slot while it is being overwritten.
        let slot = match slot {
            Some(i) if self.slots[i as usize].expires_at <= now => {
                self.remove_slot(i);
                self.counters.expirations += 1;
                None
            }
            other => other,
        };
        match slot {
            Some(i) => {
                let old_charge = Self::charge_of(self.slots[i as usize].data.len());
                if charge > old_charge {
                    self.charge(charge - old_charge, now)?;
                } else {
                    self.budget.release(old_charge - charge);
                }
                self.bytes = self.bytes + charge - old_charge;
                let entry = &mut self.slots[i as usize];
                if entry.data.len() == key.len() + value.len() {
                    // Same size (the common re-save): reuse the allocation.
                    entry.data[key.len()..].copy_from_slice(value);
                } else {
                    entry.data = concat(key, value);
                }
                entry.expires_at = expires_at;
                entry.version_ts = version.timestamp;
                entry.node_id = version.node_id;
                self.expiry.push(ExpiryRecord::new(expires_at, i));
                self.tombstones.remove(key);
                Ok(i)
            }
            None => {
                if self.len >= self.config.max_entries {
                    self.expire(now);
                    if self.len >= self.config.max_entries {
                        return Err(CacheError::TooManyEntries {
                            limit: self.config.max_entries,
                        });
                    }
                }
                self.charge(charge, now)?;
                self.bytes += charge;
                let entry = Slot {
                    data: concat(key, value),
                    expires_at,
                    version_ts: version.timestamp,
                    node_id: version.node_id,
                    key_len: key.len() as u32,
                };
                let i = if self.free_head != NO_SLOT {
                    let i = self.free_head;
                    self.free_head = self.slots[i as usize].key_len;
                    self.slots[i as usize] = entry;
                    i
                } else {
                    self.slots.push(entry);
                    (self.slots.len() - 1) as u32
                };
                let slots = &self.slots;
                let hasher = &self.hasher;
                self.index
                    .insert_unique(self.hasher.hash_one(key), i, |&j| {
                        hasher.hash_one(slots[j as usize].key())
                    });
                self.len += 1;
                self.expiry.push(ExpiryRecord::new(expires_at, i));
                self.tombstones.remove(key);
                Ok(i)
            }
        }
    }

    /// Charges the global budget, reclaiming this cache's expired entries once if needed.
    fn charge(&mut self, bytes: usize, now: Millis) -> Result<(), CacheError> {
        if self.budget.try_charge(bytes) {
            return Ok(());
        }
        self.expire(now);
        if self.budget.try_charge(bytes) {
            return Ok(());
        }
        Err(CacheError::GlobalMemoryExceeded {
            needed: bytes,
            available: self.budget.available(),
        })
    }

    fn remove_slot(&mut self, i: u32) {
        let entry = &mut self.slots[i as usize];
        let data = std::mem::take(&mut entry.data);
        let key_len = entry.key_len as usize;
        entry.expires_at = FREE;
        entry.key_len = self.free_head;
        self.free_head = i;
        let hash = self.hasher.hash_one(&data[..key_len]);
        if let Ok(found) = self.index.find_entry(hash, |&j| j == i) {
            found.remove();
        }
        let charge = Self::charge_of(data.len());
        self.budget.release(charge);
        self.bytes -= charge;
        self.len -= 1;
    }

    /// The value stored under `key`, if it is live. Counts a hit or a miss; an expired entry
    /// found on the way is reclaimed.
    pub fn retrieve(&mut self, key: &[u8], now: Millis) -> Option<&[u8]> {
        if self.config.shutdown {
            self.counters.misses += 1;
            return None;
        }
        match self.find(key) {
            Some(i) if self.slots[i as usize].expires_at > now => {
                self.counters.hits += 1;
                Some(self.slots[i as usize].value())
            }
            Some(i) => {
                self.remove_slot(i);
                self.counters.expirations += 1;
                self.counters.misses += 1;
                None
            }
            None => {
                self.counters.misses += 1;
                None
            }
        }
    }

    /// Like [`PolicyCache::retrieve`] without counting or reclaiming (for tools and tests).
    pub fn peek(&self, key: &[u8], now: Millis) -> Option<&[u8]> {
        self.find_live(key, now)
            .map(|i| self.slots[i as usize].value())
    }

    /// Removes the entry; returns whether a live one was there.
    pub fn clear(&mut self, key: &[u8], now: Millis) -> bool {
        let Some(i) = self.find(key) else {
            return false;
        };
        let live = self.slots[i as usize].expires_at > now;
        let version = self.next_version(key, Some(i), now);
        self.remove_slot(i);
        self.note_tombstone(key, version, now);
        if live {
            self.counters.clears += 1;
        } else {
            self.counters.expirations += 1;
        }
        if self.record_changes {
            self.changes.push(Change {
                event: CacheEvent::Clear {
                    key: key.to_vec(),
                    version,
                },
                origin: Origin::Local,
            });
        }
        live
    }

    /// Remaining lifetime of a live entry in whole seconds (rounded down).
    pub fn get_lifetime(&self, key: &[u8], now: Millis) -> Option<u64> {
        self.find_live(key, now)
            .map(|i| (self.slots[i as usize].expires_at - now) / 1000)
    }

    /// Sets the remaining lifetime of a live entry to `secs` seconds, capped by
    /// `max-entry-lifetime`; returns the lifetime applied. Zero expires the entry now.
    pub fn set_lifetime(&mut self, key: &[u8], secs: u64, now: Millis) -> Result<u64, CacheError> {
        if self.config.shutdown {
            return Err(self.refuse(CacheError::CacheShutdown));
        }
        let i = self.find_live(key, now).ok_or(CacheError::NotFound)?;
        let ms = secs.saturating_mul(1000).min(self.max_lifetime_ms);
        let expires_at = now.saturating_add(ms).min(FREE - 1);
        let version = self.next_version(key, Some(i), now);
        let entry = &mut self.slots[i as usize];
        entry.expires_at = expires_at;
        entry.version_ts = version.timestamp;
        entry.node_id = version.node_id;
        self.expiry.push(ExpiryRecord::new(expires_at, i));
        self.counters.lifetime_changes += 1;
        if self.record_changes {
            let value = self.slots[i as usize].value().to_vec();
            self.changes.push(Change {
                event: CacheEvent::SetLifetime {
                    key: key.to_vec(),
                    value,
                    expires_at,
                    version,
                },
                origin: Origin::Local,
            });
        }
        Ok(ms / 1000)
    }

    /// Reclaims every entry whose lifetime ended at or before `now`; returns how many.
    /// Cost is proportional to the expired entries (plus stale heap records and the entries
    /// expiring within the next second), never the cache.
    pub fn expire(&mut self, now: Millis) -> usize {
        let mut reclaimed = 0;
        // Records are in whole seconds rounded up: one firing within the coming second may be
        // for an entry that expired at or before `now`, or for one still live (kept).
        let horizon = now.saturating_add(999);
        let mut keep = Vec::new();
        while let Some(top) = self.expiry.peek().copied() {
            if top.at() > horizon {
                break;
            }
            self.expiry.pop();
            let entry = &self.slots[top.slot as usize];
            if entry.is_free() {
                continue;
            }
            if entry.expires_at <= now {
                self.remove_slot(top.slot);
                reclaimed += 1;
            } else if ExpiryRecord::new(entry.expires_at, top.slot) == top {
                keep.push(top);
            }
        }
        self.expiry.extend(keep);
        self.counters.expirations += reclaimed as u64;
        while let Some(Reverse((at, _))) = self.tombstone_expiry.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, key))) = self.tombstone_expiry.pop() {
                if let Some(v) = self.tombstones.get(&key) {
                    if v.timestamp.saturating_add(self.max_lifetime_ms) <= now {
                        self.tombstones.remove(&key);
                    }
                }
            }
        }
        // Re-saves and lifetime changes leave stale records behind; rebuild when they dominate
        // so the heap stays O(entries). Amortised O(1) per mutation.
        if self.expiry.len() > 2 * self.len + 1024 {
            self.rebuild_expiry();
        }
        reclaimed as usize
    }

    fn rebuild_expiry(&mut self) {
        let records: Vec<ExpiryRecord> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_free())
            .map(|(i, s)| ExpiryRecord::new(s.expires_at, i as u32))
            .collect();
        self.expiry = BinaryHeap::from(records);
    }

    /// When [`PolicyCache::expire`] may next have work: never after the earliest expiry,
    /// possibly up to a second before it (or earlier if that entry was re-saved or cleared).
    pub fn next_expiry(&self) -> Option<Millis> {
        self.expiry.peek().map(|r| r.at().saturating_sub(999))
    }

    /// Live entries sorted by key (a stable order for the dump tool).
    pub fn entries(&self, now: Millis) -> Vec<EntryView<'_>> {
        let mut out: Vec<EntryView<'_>> = self
            .slots
            .iter()
            .filter(|s| !s.is_free() && s.expires_at > now)
            .map(|s| EntryView {
                key: s.key(),
                value: s.value(),
                remaining_ms: s.expires_at - now,
                version: s.version(),
            })
            .collect();
        out.sort_unstable_by(|a, b| a.key.cmp(b.key));
        out
    }

    /// Save events for every live entry with at least `min_lifetime_ms` left, sorted by key:
    /// the content of a compacted journal or of a full resync to a peer.
    pub fn snapshot(&self, now: Millis, min_lifetime_ms: u64) -> Vec<CacheEvent> {
        self.entries(now)
            .into_iter()
            .filter(|e| e.remaining_ms >= min_lifetime_ms)
            .map(|e| CacheEvent::Save {
                key: e.key.to_vec(),
                value: e.value.to_vec(),
                expires_at: now + e.remaining_ms,
                version: e.version,
            })
            .collect()
    }

    /// The journal snapshot: live entries with at least the persistence minimum left.
    pub fn persistence_snapshot(&self, now: Millis) -> Vec<CacheEvent> {
        self.snapshot(now, duration_ms(self.config.minimum_lifetimes.persistence))
    }

    /// The full-resync snapshot for the peer: live entries with at least the MCS minimum left.
    pub fn peer_snapshot(&self, now: Millis) -> Vec<CacheEvent> {
        self.snapshot(
            now,
            duration_ms(self.config.minimum_lifetimes.multi_chassis_redundancy),
        )
    }

    /// What a peer needs after a (re)connect: [`PolicyCache::peer_snapshot`] plus a `Clear` for
    /// every remembered tombstone, so that entries cleared while the peer was away are cleared
    /// there too.
    pub fn peer_resync(&self, now: Millis) -> Vec<CacheEvent> {
        let mut events = self.peer_snapshot(now);
        events.extend(
            self.tombstones
                .iter()
                .map(|(key, version)| CacheEvent::Clear {
                    key: key.to_vec(),
                    version: *version,
                }),
        );
        events
    }

    fn tracks_tombstones(&self) -> bool {
        self.config.mcs_peer.is_some()
    }

    fn note_tombstone(&mut self, key: &[u8], version: Version, now: Millis) {
        if !self.tracks_tombstones() {
            return;
        }
        // A write older than the clear cannot outlive it by more than max-entry-lifetime.
        let forget_at = version.timestamp.saturating_add(self.max_lifetime_ms);
        if forget_at <= now {
            return;
        }
        let key: Box<[u8]> = key.into();
        self.tombstones.insert(key.clone(), version);
        self.tombstone_expiry.push(Reverse((forget_at, key)));
    }

    /// Merges an event from the multi-chassis peer with last-writer-wins on [`Version`]; an
    /// applied event is recorded as a [`Change`] with [`Origin::Peer`] (journal, don't echo).
    pub fn apply(&mut self, event: &CacheEvent, now: Millis) -> ApplyOutcome {
        let outcome = self.apply_inner(event, now);
        match &outcome {
            ApplyOutcome::Applied => {
                self.counters.peer_applied += 1;
                if self.record_changes {
                    self.changes.push(Change {
                        event: event.clone(),
                        origin: Origin::Peer,
                    });
                }
            }
            ApplyOutcome::Stale => self.counters.peer_stale += 1,
            ApplyOutcome::Refused(_) => self.counters.peer_refused += 1,
        }
        outcome
    }

    fn apply_inner(&mut self, event: &CacheEvent, now: Millis) -> ApplyOutcome {
        let key = event.key();
        let version = event.version();
        let slot = self.find(key);
        let current = slot
            .map(|i| self.slots[i as usize].version())
            .or_else(|| self.tombstones.get(key).copied());
        if current.is_some_and(|c| c >= version) {
            return ApplyOutcome::Stale;
        }
        let (value, expires_at) = match event {
            CacheEvent::Save {
                value, expires_at, ..
            }
            | CacheEvent::SetLifetime {
                value, expires_at, ..
            } => (value, *expires_at),
            CacheEvent::Clear { .. } => {
                if let Some(i) = slot {
                    self.remove_slot(i);
                }
                self.note_tombstone(key, version, now);
                return ApplyOutcome::Applied;
            }
        };
        if expires_at <= now {
            // Already expired: the same as absent, but remember the version.
            if let Some(i) = slot {
                self.remove_slot(i);
            }
            self.note_tombstone(key, version, now);
            return ApplyOutcome::Applied;
        }
        if self.config.shutdown {
            return ApplyOutcome::Refused(CacheError::CacheShutdown);
        }
        if let Err(e) = self.check_size(key, value) {
            return ApplyOutcome::Refused(e);
        }
        let expires_at = expires_at.min(now.saturating_add(self.max_lifetime_ms));
        match self.upsert(slot, key, value, expires_at, version, now) {
            Ok(_) => ApplyOutcome::Applied,
            Err(e) => ApplyOutcome::Refused(e),
        }
    }

    /// Rebuilds the cache from journal events (oldest first), then drops entries that live
    /// less than the persistence minimum. Nothing is recorded as a change or counted as a save.
    pub fn restore(
        &mut self,
        events: impl IntoIterator<Item = CacheEvent>,
        now: Millis,
    ) -> RestoreStats {
        let mut stats = RestoreStats::default();
        for event in events {
            if let ApplyOutcome::Refused(_) = self.apply_inner(&event, now) {
                stats.refused += 1;
            }
        }
        let min = duration_ms(self.config.minimum_lifetimes.persistence);
        let short: Vec<u32> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_free() && (s.expires_at <= now || s.expires_at - now < min))
            .map(|(i, _)| i as u32)
            .collect();
        stats.dropped_short_lived = short.len();
        for i in short {
            self.remove_slot(i);
        }
        stats.restored = self.len;
        stats
    }
}

impl Drop for PolicyCache {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

fn concat(key: &[u8], value: &[u8]) -> Box<[u8]> {
    let mut data = Vec::with_capacity(key.len() + value.len());
    data.extend_from_slice(key);
    data.extend_from_slice(value);
    data.into_boxed_slice()
}
