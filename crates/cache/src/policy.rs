//! One policy's cache: entry records in size-class pages ([`crate::store`]) indexed by a tagged
//! open-addressing table ([`crate::index`]), with a min-heap of `(expiry, record)` entries for
//! reclaiming expired entries without scanning.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::mem::size_of;
use std::sync::Arc;

use foldhash::fast::RandomState;

use crate::config::duration_ms;
use crate::error::{CacheError, RefusalReason};
use crate::event::{CacheEvent, Change, Origin, Version};
use crate::index::{self, Index};
use crate::prefetch::prefetch;
use crate::store::{self, Handle, Rec, Store, ValueAt};
use crate::{CacheConfig, MemoryBudget, Millis};

/// Upper bound of any expiry (lifetimes are capped well below it).
const NEVER: Millis = Millis::MAX - 1;

/// A heap record `(expiry second, record handle)`; stale records (entry re-saved, cleared,
/// moved, or the handle reused) are skipped when popped: an entry is only reclaimed if its own
/// exact expiry has passed. The expiry is kept as whole Unix seconds rounded UP (8-byte records
/// instead of 16); [`PolicyCache::expire`] looks one second ahead to stay exact.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ExpiryRecord {
    at_secs: u32,
    slot: Handle,
}

impl ExpiryRecord {
    fn new(at: Millis, slot: Handle) -> Self {
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

/// Bytes one entry costs beyond its key and value, charged to the memory budget, for entries of
/// up to [`INLINE_ENTRY_MAX`] bytes of key plus value (all entries of the SR OS use: user names,
/// MAC addresses, RADIUS attributes): the 24-byte record header, up to 7 bytes of rounding to the
/// record's 8-byte size class, the index bucket (8 bytes) at the table's lowest load after
/// growth (2/5), and one 8-byte expiry-heap record. Records live in shared pages, so there is
/// no per-entry allocation and no allocator header.
pub const PER_ENTRY_OVERHEAD: usize =
    store::HEADER + (store::GRANULE - 1) + index::WORST_BYTES_PER_ENTRY + size_of::<ExpiryRecord>();

/// Largest key plus value stored inline in the size-class pages (charged
/// [`PER_ENTRY_OVERHEAD`]); larger entries get their own allocation and are charged
/// [`LARGE_ENTRY_OVERHEAD`].
pub const INLINE_ENTRY_MAX: usize = store::INLINE_MAX - store::HEADER;

/// Bytes charged beyond key and value for an entry larger than [`INLINE_ENTRY_MAX`]: a 40-byte
/// slot, the allocator's header and rounding for its `key ++ value` allocation (24, glibc), the
/// index bucket at its lowest load and the expiry-heap record.
pub const LARGE_ENTRY_OVERHEAD: usize = store::BIG_SLOT
    + store::BIG_ALLOC_OVERHEAD
    + index::WORST_BYTES_PER_ENTRY
    + size_of::<ExpiryRecord>();

/// Counters of one cache (a snapshot; see [`PolicyCache::counters`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheCounters {
    /// Live and not yet reclaimed entries.
    pub entries: usize,
    /// Bytes charged to the global budget: keys, values and [`PER_ENTRY_OVERHEAD`] each
    /// ([`LARGE_ENTRY_OVERHEAD`] for an entry over [`INLINE_ENTRY_MAX`] bytes).
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
        time_left(self.remaining_ms)
    }
}

/// `remaining_ms` as SR OS prints a remaining lifetime in `tools dump ... cache`:
/// `0d 00:12:08` (whole seconds, rounded down).
pub fn time_left(remaining_ms: u64) -> String {
    let s = remaining_ms / 1000;
    format!(
        "{}d {:02}:{:02}:{:02}",
        s / 86_400,
        s / 3600 % 24,
        s / 60 % 60,
        s % 60
    )
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
    index: Index,
    store: Store,
    len: usize,
    bytes: usize,
    /// Records removed so far. A batched lookup uses the bucket positions it prefetched only
    /// while this is unchanged (a removal shifts buckets and moves a record).
    removals: u64,
    expiry: BinaryHeap<ExpiryRecord>,
    tombstones: HashMap<Box<[u8]>, Version>,
    tombstone_expiry: BinaryHeap<Reverse<(Millis, Box<[u8]>)>>,
    counters: CacheCounters,
    record_changes: bool,
    changes: Vec<Change>,
}

/// An entry a lookup found: its index bucket, record, expiry and value.
#[derive(Clone, Copy)]
struct Found {
    pos: usize,
    handle: Handle,
    expires_at: Millis,
    value: ValueAt,
}

/// Keys a batched lookup hashes and prefetches before resolving any of them.
const BATCH_WINDOW: usize = 16;

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
            index: Index::new(),
            store: Store::new(),
            len: 0,
            bytes: 0,
            removals: 0,
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

    /// Budget bytes of an entry of `entry_len` bytes of key plus value, big or inline.
    fn charge_of(entry_len: usize, big: bool) -> usize {
        entry_len
            + if big {
                LARGE_ENTRY_OVERHEAD
            } else {
                PER_ENTRY_OVERHEAD
            }
    }

    fn charge_of_record(&self, h: Handle) -> usize {
        let r = self.store.get(h);
        Self::charge_of(r.key.len() + r.value.len(), Store::is_big(h))
    }

    /// The index tag of `key`. The key is the whole hashed input, so it is written without
    /// the length prefix `Hash for [u8]` adds (foldhash mixes the length into its seed).
    #[inline(always)]
    fn tag(&self, key: &[u8]) -> u32 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(key);
        Index::tag(hasher.finish())
    }

    /// The index position and record of `key`'s entry (live or expired).
    #[inline(always)]
    fn find(&self, tag: u32, key: &[u8]) -> Option<(usize, Handle)> {
        self.find_entry(tag, key).map(|f| (f.pos, f.handle))
    }

    /// `key`'s entry (live or expired).
    #[inline(always)]
    fn find_entry(&self, tag: u32, key: &[u8]) -> Option<Found> {
        let home = self.index.home(tag)?;
        // Most entries sit within a few buckets of home: pick the first tag match there
        // without branching, and scan group by group only if that was not the key.
        if let Some((pos, h)) = self.index.first_in_window(home, tag) {
            if let Some((expires_at, value)) = self.store.expiry_if_key(h, key) {
                return Some(Found {
                    pos,
                    handle: h,
                    expires_at,
                    value,
                });
            }
        }
        self.find_entry_from(tag, key, home)
    }

    /// [`PolicyCache::find_entry`] by scanning groups from bucket `p` of the key's probe
    /// sequence on.
    #[inline(never)]
    fn find_entry_from(&self, tag: u32, key: &[u8], mut p: usize) -> Option<Found> {
        loop {
            let (mut matches, empty) = self.index.group(p, tag);
            while matches != 0 {
                let q = p + matches.trailing_zeros() as usize;
                let h = self.index.handle_at(q);
                if let Some((expires_at, value)) = self.store.expiry_if_key(h, key) {
                    return Some(Found {
                        pos: self.index.wrap(q),
                        handle: h,
                        expires_at,
                        value,
                    });
                }
                matches &= matches - 1;
            }
            if empty != 0 {
                return None;
            }
            p = self.index.wrap(p + index::GROUP);
        }
    }

    /// The record of a live (unexpired) entry.
    fn find_live(&self, key: &[u8], now: Millis) -> Option<Handle> {
        self.find_entry(self.tag(key), key)
            .filter(|f| f.expires_at > now)
            .map(|f| f.handle)
    }

    fn refuse(&mut self, error: CacheError) -> CacheError {
        if let Some(reason) = error.refusal_reason() {
            self.counters.refused[reason.index()] += 1;
        }
        error
    }

    /// The version a local write of `key` gets: `now`, but always after what it overwrites so
    /// that a clock step backwards cannot make a peer ignore it.
    fn next_version(&self, key: &[u8], slot: Option<Handle>, now: Millis) -> Version {
        let previous = slot
            .map(|h| self.store.get(h).version)
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
        let tag = self.tag(key);
        let slot = self.find(tag, key).map(|(_, h)| h);
        let version = self.next_version(key, slot, now);
        let expires_at = now.saturating_add(self.max_lifetime_ms).min(NEVER);
        if let Err(e) = self.upsert(tag, slot, key, value, expires_at, version, now) {
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
    #[allow(clippy::too_many_arguments)]
    fn upsert(
        &mut self,
        tag: u32,
        slot: Option<Handle>,
        key: &[u8],
        value: &[u8],
        expires_at: Millis,
        version: Version,
        now: Millis,
    ) -> Result<(), CacheError> {
        let entry_len = key.len() + value.len();
        // An expired entry is reclaimed first; the save then stores a new entry.
        let slot = match slot {
            Some(h) if self.store.get(h).expires_at <= now => {
                self.remove_entry(None, h);
                self.counters.expirations += 1;
                None
            }
            other => other,
        };
        let Some(h) = slot else {
            return self.insert_new(tag, key, value, expires_at, version, now);
        };
        // Same size class: rewrite in place; otherwise the entry moves to its new class.
        let target = if self.store.fits_in_place(h, entry_len) {
            None
        } else {
            Some(
                self.store
                    .target(entry_len)
                    .ok_or(CacheError::TooManyEntries {
                        limit: self.config.max_entries,
                    })?,
            )
        };
        let big = target.map_or(Store::is_big(h), Store::class_is_big);
        let charge = Self::charge_of(entry_len, big);
        let old_charge = self.charge_of_record(h);
        let removals = self.removals;
        if charge > old_charge {
            self.charge(charge - old_charge, now)?;
        } else {
            self.budget.release(old_charge - charge);
        }
        self.bytes = self.bytes + charge - old_charge;
        // `charge` may have run `expire`, which moves records: then look the live entry up
        // again (`expire` only removes expired entries and only frees room in `target`).
        let (pos, h) = if self.removals == removals {
            (None, h)
        } else {
            let (p, h) = self.find(tag, key).expect("a live entry survives expire");
            (Some(p), h)
        };
        match target {
            None => {
                self.store.overwrite(h, key, value, expires_at, version);
                self.expiry.push(ExpiryRecord::new(expires_at, h));
            }
            Some(class) => {
                let pos = pos.unwrap_or_else(|| {
                    self.index
                        .position(tag, h)
                        .expect("a live entry is indexed")
                });
                let new = self.store.insert(class, key, value, expires_at, version);
                self.index.set_handle(pos, new);
                self.expiry.push(ExpiryRecord::new(expires_at, new));
                self.drop_record(h);
            }
        }
        Ok(())
    }

    fn insert_new(
        &mut self,
        tag: u32,
        key: &[u8],
        value: &[u8],
        expires_at: Millis,
        version: Version,
        now: Millis,
    ) -> Result<(), CacheError> {
        if self.len >= self.config.max_entries {
            self.expire(now);
            if self.len >= self.config.max_entries {
                return Err(CacheError::TooManyEntries {
                    limit: self.config.max_entries,
                });
            }
        }
        let class =
            self.store
                .target(key.len() + value.len())
                .ok_or(CacheError::TooManyEntries {
                    limit: self.config.max_entries,
                })?;
        let charge = Self::charge_of(key.len() + value.len(), Store::class_is_big(class));
        self.charge(charge, now)?;
        self.bytes += charge;
        let h = self.store.insert(class, key, value, expires_at, version);
        self.index.insert(tag, h);
        self.len += 1;
        self.expiry.push(ExpiryRecord::new(expires_at, h));
        if !self.tombstones.is_empty() {
            self.tombstones.remove(key);
        }
        Ok(())
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

    /// Removes the entry whose record is `h` (its index bucket at `pos`, if known) and gives
    /// its bytes back to the budget.
    fn remove_entry(&mut self, pos: Option<usize>, h: Handle) {
        let pos = pos.unwrap_or_else(|| {
            let tag = self.tag(self.store.get(h).key);
            self.index.position(tag, h).expect("an entry is indexed")
        });
        self.index.remove_at(pos);
        let charge = self.charge_of_record(h);
        self.budget.release(charge);
        self.bytes -= charge;
        self.len -= 1;
        self.drop_record(h);
    }

    /// Removes record `h` from the store. The record that moves into its place gets its index
    /// bucket re-pointed and an expiry-heap record under its new handle.
    fn drop_record(&mut self, h: Handle) {
        self.removals += 1;
        if let Some(from) = self.store.remove(h) {
            let r = self.store.get(h);
            let expires_at = r.expires_at;
            let tag = self.tag(r.key);
            let pos = self
                .index
                .position(tag, from)
                .expect("a moved record is indexed");
            self.index.set_handle(pos, h);
            self.expiry.push(ExpiryRecord::new(expires_at, h));
        }
    }

    /// The value stored under `key`, if it is live. Counts a hit or a miss; an expired entry
    /// found on the way is reclaimed.
    #[inline]
    pub fn retrieve(&mut self, key: &[u8], now: Millis) -> Option<&[u8]> {
        if self.config.shutdown {
            self.counters.misses += 1;
            return None;
        }
        let found = self.find_entry(self.tag(key), key);
        self.resolve(found, now)
    }

    /// The end of every retrieve once the key's entry is found (or not): expiry check,
    /// counters, reclaiming an expired entry.
    #[inline(always)]
    fn resolve(&mut self, found: Option<Found>, now: Millis) -> Option<&[u8]> {
        match found {
            Some(f) if f.expires_at > now => {
                self.counters.hits += 1;
                Some(self.store.value_at(f.handle, f.value))
            }
            Some(f) => {
                self.reclaim_on_retrieve(f.pos, f.handle);
                None
            }
            None => {
                self.counters.misses += 1;
                None
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn reclaim_on_retrieve(&mut self, pos: usize, h: Handle) {
        self.remove_entry(Some(pos), h);
        self.counters.expirations += 1;
        self.counters.misses += 1;
    }

    /// Retrieves every key of `keys` exactly as that many [`PolicyCache::retrieve`] calls in
    /// order would (same hits and misses counted, same expired entries reclaimed), handing
    /// `found(i, value)` the result for `keys[i]`, in order.
    ///
    /// Faster than the calls one by one on a large cache: the index buckets, then the records
    /// of a window of keys are prefetched before any of them is read, so their memory
    /// latencies overlap instead of adding up. Each key still gets the full lookup — hash,
    /// probe, key compare, expiry check and counting.
    pub fn retrieve_many<K: AsRef<[u8]>>(
        &mut self,
        keys: &[K],
        now: Millis,
        mut found: impl FnMut(usize, Option<&[u8]>),
    ) {
        if self.config.shutdown {
            for i in 0..keys.len() {
                self.counters.misses += 1;
                found(i, None);
            }
            return;
        }
        let mut tags = [0u32; BATCH_WINDOW];
        let mut firsts = [None; BATCH_WINDOW];
        for (w, window) in keys.chunks(BATCH_WINDOW).enumerate() {
            // Hash each key and start loading its home bucket.
            for (tag, key) in tags.iter_mut().zip(window) {
                *tag = self.tag(key.as_ref());
                if let Some(home) = self.index.home(*tag) {
                    prefetch(self.index.bucket_ptr(home));
                }
            }
            // Find each key's first tag match (index only) and start loading that record.
            for (first, &tag) in firsts.iter_mut().zip(&tags[..window.len()]) {
                *first = self
                    .index
                    .home(tag)
                    .and_then(|home| self.index.first_match(tag, home));
                if let Some((_, h)) = *first {
                    self.store.prefetch(h);
                }
            }
            // Finish each lookup in order. A reclaimed entry shifts buckets and moves a
            // record: the lookups after it start afresh.
            let removals = self.removals;
            for (j, key) in window.iter().enumerate() {
                let key = key.as_ref();
                let entry = if self.removals == removals {
                    self.find_after(tags[j], key, firsts[j])
                } else {
                    self.find_entry(tags[j], key)
                };
                let value = self.resolve(entry, now);
                found(w * BATCH_WINDOW + j, value);
            }
        }
    }

    /// [`PolicyCache::find`] given the first tag match on the key's probe sequence (`None`:
    /// there is none, so the key is absent).
    #[inline(always)]
    fn find_after(&self, tag: u32, key: &[u8], first: Option<(usize, Handle)>) -> Option<Found> {
        let (pos, h) = first?;
        if let Some((expires_at, value)) = self.store.expiry_if_key(h, key) {
            return Some(Found {
                pos,
                handle: h,
                expires_at,
                value,
            });
        }
        self.find_entry_from(tag, key, self.index.next(pos))
    }

    /// Like [`PolicyCache::retrieve`] without counting or reclaiming (for tools and tests).
    pub fn peek(&self, key: &[u8], now: Millis) -> Option<&[u8]> {
        self.find_live(key, now).map(|h| self.store.value(h))
    }

    /// Removes the entry; returns whether a live one was there.
    pub fn clear(&mut self, key: &[u8], now: Millis) -> bool {
        let Some((pos, h)) = self.find(self.tag(key), key) else {
            return false;
        };
        let live = self.store.get(h).expires_at > now;
        let version = self.next_version(key, Some(h), now);
        self.remove_entry(Some(pos), h);
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
            .map(|h| (self.store.get(h).expires_at - now) / 1000)
    }

    /// Sets the remaining lifetime of a live entry to `secs` seconds, capped by
    /// `max-entry-lifetime`; returns the lifetime applied. Zero expires the entry now.
    pub fn set_lifetime(&mut self, key: &[u8], secs: u64, now: Millis) -> Result<u64, CacheError> {
        if self.config.shutdown {
            return Err(self.refuse(CacheError::CacheShutdown));
        }
        let h = self.find_live(key, now).ok_or(CacheError::NotFound)?;
        let ms = secs.saturating_mul(1000).min(self.max_lifetime_ms);
        let expires_at = now.saturating_add(ms).min(NEVER);
        let version = self.next_version(key, Some(h), now);
        self.store.set_expiry(h, expires_at, version);
        self.expiry.push(ExpiryRecord::new(expires_at, h));
        self.counters.lifetime_changes += 1;
        if self.record_changes {
            let value = self.store.get(h).value.to_vec();
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
            // A stale record may name a handle no record has any more, or another entry.
            let Some(expires_at) = self.store.try_get(top.slot).map(|r| r.expires_at) else {
                continue;
            };
            if expires_at <= now {
                self.remove_entry(None, top.slot);
                reclaimed += 1;
            } else if ExpiryRecord::new(expires_at, top.slot) == top {
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
        // Re-saves, lifetime changes and moves leave stale records behind; rebuild when they
        // dominate so the heap stays O(entries). Amortised O(1) per mutation.
        if self.expiry.len() > 2 * self.len + 1024 {
            self.rebuild_expiry();
        }
        reclaimed as usize
    }

    fn rebuild_expiry(&mut self) {
        let records: Vec<ExpiryRecord> = self
            .store
            .handles()
            .map(|h| ExpiryRecord::new(self.store.get(h).expires_at, h))
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
            .store
            .handles()
            .map(|h| self.store.get(h))
            .filter(|r| r.expires_at > now)
            .map(|r: Rec<'_>| EntryView {
                key: r.key,
                value: r.value,
                remaining_ms: r.expires_at - now,
                version: r.version,
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
        let tag = self.tag(key);
        let found = self.find(tag, key);
        let current = found
            .map(|(_, h)| self.store.get(h).version)
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
                if let Some((pos, h)) = found {
                    self.remove_entry(Some(pos), h);
                }
                self.note_tombstone(key, version, now);
                return ApplyOutcome::Applied;
            }
        };
        if expires_at <= now {
            // Already expired: the same as absent, but remember the version.
            if let Some((pos, h)) = found {
                self.remove_entry(Some(pos), h);
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
        let slot = found.map(|(_, h)| h);
        match self.upsert(tag, slot, key, value, expires_at, version, now) {
            Ok(()) => ApplyOutcome::Applied,
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
        // Removing moves records, so the short-lived entries are collected by key first.
        let short: Vec<Box<[u8]>> = self
            .store
            .handles()
            .map(|h| self.store.get(h))
            .filter(|r| r.expires_at <= now || r.expires_at - now < min)
            .map(|r| r.key.into())
            .collect();
        stats.dropped_short_lived = short.len();
        for key in short {
            if let Some((pos, h)) = self.find(self.tag(&key), &key) {
                self.remove_entry(Some(pos), h);
            }
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
