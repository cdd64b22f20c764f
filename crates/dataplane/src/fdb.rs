//! The MAC table (forwarding database) of the VPLS bridges: (bridge, MAC) → SAP.
//!
//! One open-addressing table for every bridge, sized once when it is created (at most 80 %
//! full, so probes stay short; 32 MiB for a million entries, in huge pages where Linux gives
//! them), with linear probing and backward-shift deletion (no
//! tombstones, so a table that learns and ages for months does not slow down). A slot is
//! 16 bytes — the key (bridge + MAC in one `u64`), the SAP reference and the last-seen second —
//! four to a cache line. Learning, refreshing and moving an entry in the packet path never
//! allocate; a full table refuses to learn (the caller counts it).
//!
//! The SAP reference is a slot index plus an 8-bit *epoch*: flushing a SAP's MACs (`clear`, a
//! removed SAP, a SAP slot reused by another SAP) bumps the SAP's epoch in the caller's state,
//! which makes every entry holding the old epoch stale at once, without a scan; stale entries
//! read as absent and the ageing sweep removes them. [`STATIC_EPOCH`] marks static MACs,
//! which never age and never move.
//!
//! Ageing is an incremental sweep: each [`Fdb::sweep`] call examines a bounded number of slots
//! from a cursor, so the whole table is covered every few seconds without ever scanning it
//! in one tick.

use crate::arena::HugeSlice;

/// Epoch value of a static entry.
pub const STATIC_EPOCH: u8 = 0xff;

/// Highest SAP slot an entry can name (24 bits).
pub const MAX_SAP_SLOT: u32 = (1 << 24) - 1;

/// Highest bridge slot (the key keeps 16 bits for it, and slot + 1 so that a key is never 0).
pub const MAX_BRIDGE_SLOT: u32 = 0xfffe;

/// One entry as the table stores it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(16))]
struct Slot {
    /// `(bridge + 1) << 48 | mac`; 0 = empty.
    key: u64,
    /// SAP slot (24 bits) | epoch << 24.
    sap: u32,
    /// Last time the source was seen, seconds of the caller's clock.
    seen: u32,
}

/// What the table knows about a MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Bridge slot.
    pub bridge: u32,
    /// MAC address (48 bits).
    pub mac: u64,
    /// SAP slot.
    pub sap: u32,
    /// Epoch of the SAP when learned ([`STATIC_EPOCH`] for static entries).
    pub epoch: u8,
    /// Last seen (seconds).
    pub seen: u32,
}

impl Entry {
    /// True for a static entry.
    pub fn is_static(&self) -> bool {
        self.epoch == STATIC_EPOCH
    }
}

/// A (bridge, MAC) key with the slot its probe starts at, hashed once by [`Fdb::key`] so that
/// the packet path's prefetch and its lookup do not each hash it. Only meaningful for the
/// table that made it (the home slot depends on its seed and size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    key: u64,
    home: usize,
}

impl Key {
    /// The MAC (48 bits).
    #[inline]
    pub fn mac(&self) -> u64 {
        self.key & 0xffff_ffff_ffff
    }
}

/// A slot index returned by a lookup, for a later update without a second probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRef(usize);

/// The table.
pub struct Fdb {
    /// In huge pages ([`HugeSlice`]): a random lookup in a table of tens of megabytes then
    /// costs a cache miss, not a cache miss plus a page walk.
    slots: HugeSlice<Slot>,
    mask: usize,
    shift: u32,
    seed: u64,
    len: usize,
    max_entries: usize,
    cursor: usize,
}

impl std::fmt::Debug for Fdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fdb")
            .field("len", &self.len)
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

#[inline]
fn make_key(bridge: u32, mac: u64) -> u64 {
    ((u64::from(bridge) + 1) << 48) | (mac & 0xffff_ffff_ffff)
}

/// A slot's SAP reference: the SAP slot (24 bits) and its epoch above it.
#[inline]
fn sap_ref(sap: u32, epoch: u8) -> u32 {
    (sap & MAX_SAP_SLOT) | (u32::from(epoch) << 24)
}

/// What [`Fdb::refresh`] found for a source MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    /// The entry names the SAP and epoch asked about; its last-seen time is refreshed.
    Known,
    /// The entry names something else (another SAP, an older epoch, or it is static).
    Other(SlotRef, Entry),
    /// No entry.
    Absent,
}

/// Why an insertion failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// The table holds its maximum number of entries.
    Full,
}

impl Fdb {
    /// A table for up to `max_entries` entries (at least 1), with `seed` mixed into the hash so
    /// that the slots chosen MAC addresses land in are not predictable across processes.
    pub fn new(max_entries: usize, seed: u64) -> Self {
        let max_entries = max_entries.max(1);
        // At most 80 % full: probe runs stay within a cache line or two.
        let slots = (max_entries + max_entries / 4).next_power_of_two().max(16);
        Self {
            slots: HugeSlice::from_fn(slots, |_| Slot::default()),
            mask: slots - 1,
            shift: 64 - slots.trailing_zeros(),
            seed: seed | 1,
            len: 0,
            max_entries,
            cursor: 0,
        }
    }

    /// Entries stored (stale ones included until swept).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most entries.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Slots (the entries and a quarter more, rounded up to a power of two).
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        // Fibonacci hashing of the seeded key: the high bits of the product.
        ((key ^ self.seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    /// The key of (`bridge`, `mac`) in this table, hashed.
    #[inline]
    pub fn key(&self, bridge: u32, mac: u64) -> Key {
        let key = make_key(bridge, mac);
        Key {
            key,
            home: self.home(key),
        }
    }

    /// Hints the CPU to fetch the slot a lookup of `key` starts at.
    #[inline]
    pub fn prefetch(&self, key: Key) {
        if let Some(slot) = self.slots.get(key.home) {
            prefetch_read(slot as *const Slot);
        }
    }

    #[inline]
    fn find(&self, key: u64) -> Option<usize> {
        self.find_from(key, self.home(key))
    }

    #[inline(always)]
    fn find_from(&self, key: u64, home: usize) -> Option<usize> {
        let mut i = home;
        loop {
            let slot = self.slots.get(i)?;
            if slot.key == key {
                return Some(i);
            }
            if slot.key == 0 {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline(always)]
    fn entry_at(&self, i: usize) -> Option<Entry> {
        let slot = self.slots.get(i)?;
        if slot.key == 0 {
            return None;
        }
        Some(Entry {
            bridge: ((slot.key >> 48) as u32).wrapping_sub(1),
            mac: slot.key & 0xffff_ffff_ffff,
            sap: slot.sap & MAX_SAP_SLOT,
            epoch: (slot.sap >> 24) as u8,
            seen: slot.seen,
        })
    }

    /// The entry for (`bridge`, `mac`), stale or not, and where it is.
    #[inline]
    pub fn lookup(&self, bridge: u32, mac: u64) -> Option<(SlotRef, Entry)> {
        self.lookup_key(self.key(bridge, mac))
    }

    /// [`Fdb::lookup`] of a key already hashed.
    #[inline(always)]
    pub fn lookup_key(&self, key: Key) -> Option<(SlotRef, Entry)> {
        let i = self.find_from(key.key, key.home)?;
        Some((SlotRef(i), self.entry_at(i)?))
    }

    /// Points the entry at `at` to `sap`/`epoch` and refreshes it to `seen`.
    #[inline]
    pub fn update(&mut self, at: SlotRef, sap: u32, epoch: u8, seen: u32) {
        if let Some(slot) = self.slots.get_mut(at.0) {
            if slot.key != 0 {
                slot.sap = sap_ref(sap, epoch);
                slot.seen = seen;
            }
        }
    }

    /// The learning probe of a frame's source: when the entry of `key` names `sap` at `epoch`
    /// (the MAC is where it was learned, and that learning is current), refreshes its last-seen
    /// time — writing only when it changed, so that a source seen every packet leaves its cache
    /// line clean — and says [`Sighting::Known`]. That is the common case, and it costs one
    /// compare of the stored reference instead of decoding the entry. Anything else (another
    /// SAP, an older epoch, a static entry, no entry) is returned for the caller to decide.
    #[inline(always)]
    pub fn refresh(&mut self, key: Key, sap: u32, epoch: u8, seen: u32) -> Sighting {
        let Some(i) = self.find_from(key.key, key.home) else {
            return Sighting::Absent;
        };
        let owner = sap_ref(sap, epoch);
        match self.slots.get_mut(i) {
            Some(slot) if slot.sap == owner && epoch != STATIC_EPOCH => {
                if slot.seen != seen {
                    slot.seen = seen;
                }
                Sighting::Known
            }
            _ => self
                .entry_at(i)
                .map_or(Sighting::Absent, |entry| Sighting::Other(SlotRef(i), entry)),
        }
    }

    /// Adds (or overwrites) the entry for (`bridge`, `mac`).
    pub fn insert(
        &mut self,
        bridge: u32,
        mac: u64,
        sap: u32,
        epoch: u8,
        seen: u32,
    ) -> Result<(), InsertError> {
        let key = make_key(bridge, mac);
        let value = sap_ref(sap, epoch);
        let mut i = self.home(key);
        loop {
            let Some(slot) = self.slots.get_mut(i) else {
                return Err(InsertError::Full);
            };
            if slot.key == key {
                slot.sap = value;
                slot.seen = seen;
                return Ok(());
            }
            if slot.key == 0 {
                if self.len >= self.max_entries {
                    return Err(InsertError::Full);
                }
                *slot = Slot {
                    key,
                    sap: value,
                    seen,
                };
                self.len += 1;
                return Ok(());
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Removes the entry at index `i` by shifting back the entries of its probe run.
    fn remove_at(&mut self, mut i: usize) {
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let Some(&next) = self.slots.get(j) else {
                break;
            };
            if next.key == 0 {
                break;
            }
            let home = self.home(next.key);
            // `next` may stay at `j` if its home lies cyclically in (i, j].
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if stays {
                continue;
            }
            if let Some(slot) = self.slots.get_mut(i) {
                *slot = next;
            }
            i = j;
        }
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = Slot::default();
        }
        self.len -= 1;
    }

    /// Removes the entry for (`bridge`, `mac`); returns it.
    pub fn remove(&mut self, bridge: u32, mac: u64) -> Option<Entry> {
        let i = self.find(make_key(bridge, mac))?;
        let entry = self.entry_at(i)?;
        self.remove_at(i);
        Some(entry)
    }

    /// Examines up to `budget` slots from the sweep cursor and removes the entries `expired`
    /// says to. Returns the number of slots examined (a slot that received a shifted entry
    /// after a removal is examined again).
    pub fn sweep(&mut self, budget: usize, mut expired: impl FnMut(&Entry) -> bool) -> usize {
        let mut examined = 0;
        while examined < budget {
            examined += 1;
            let i = self.cursor;
            match self.entry_at(i) {
                Some(entry) if expired(&entry) => {
                    self.remove_at(i);
                    // The slot may now hold a shifted entry: look at it again.
                    if self.slots.get(i).is_some_and(|s| s.key != 0) {
                        continue;
                    }
                }
                _ => {}
            }
            self.cursor = (i + 1) & self.mask;
        }
        examined
    }

    /// Removes every entry `remove` says to, in one pass (control path: flushes whose epoch
    /// would wrap, whole-table clears).
    pub fn retain(&mut self, mut remove: impl FnMut(&Entry) -> bool) -> usize {
        let mut removed = 0;
        let mut i = 0;
        let mut passes = 0;
        // Backward shifts can move an entry from the start of the table to its end, so a
        // second pass catches what wrapped.
        while passes < 2 {
            while i < self.slots.len() {
                match self.entry_at(i) {
                    Some(entry) if remove(&entry) => {
                        self.remove_at(i);
                        removed += 1;
                    }
                    _ => i += 1,
                }
            }
            i = 0;
            passes += 1;
        }
        removed
    }

    /// Every entry, in slot order (control path).
    pub fn iter(&self) -> impl Iterator<Item = Entry> + '_ {
        (0..self.slots.len()).filter_map(|i| self.entry_at(i))
    }
}

/// Hints the CPU to bring the cache line at `ptr` into L1 (a hint: it never faults, whatever
/// the address).
#[inline(always)]
pub fn prefetch_read<T>(ptr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch(ptr.cast::<i8>(), core::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

/// Hints the CPU to fetch every cache line that `bytes` bytes at `ptr` overlap, at most
/// `max_lines` of them. An array whose start is not line-aligned spans one line more than its
/// size suggests (eight 32-byte entries at an odd 32-byte offset touch five lines, not four):
/// counting lines from the aligned-down start covers the last entry too.
#[inline(always)]
pub fn prefetch_span(ptr: *const u8, bytes: usize, max_lines: usize) {
    let start = ptr.wrapping_sub(ptr as usize % 64);
    for line in 0..span_lines(ptr as usize, bytes).min(max_lines) {
        prefetch_read(start.wrapping_add(line * 64));
    }
}

/// [`prefetch_span`] over the bytes of `items`.
#[inline(always)]
pub fn prefetch_slice<T>(items: &[T], max_lines: usize) {
    prefetch_span(
        items.as_ptr().cast::<u8>(),
        std::mem::size_of_val(items),
        max_lines,
    );
}

/// How many 64-byte lines `bytes` bytes at address `at` overlap.
#[inline(always)]
fn span_lines(at: usize, bytes: usize) -> usize {
    if bytes == 0 {
        return 0;
    }
    (at % 64 + bytes).div_ceil(64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A SAP slot holding a static MAC in these tests.
    const STATIC_SAP: u32 = 9;

    #[test]
    fn a_span_counts_the_lines_it_overlaps() {
        assert_eq!(span_lines(0, 0), 0);
        assert_eq!(span_lines(0, 256), 4);
        // Eight 32-byte entries at an odd 32-byte offset straddle a fifth line.
        assert_eq!(span_lines(32, 256), 5);
        assert_eq!(span_lines(48, 64), 2);
        assert_eq!(span_lines(63, 1), 1);
        assert_eq!(span_lines(63, 2), 2);
    }

    #[test]
    fn insert_lookup_update_remove() {
        let mut fdb = Fdb::new(100, 7);
        fdb.insert(3, 0xaabb, 5, 1, 10).unwrap();
        fdb.insert(4, 0xaabb, 6, 0, 10).unwrap();
        let (at, entry) = fdb.lookup(3, 0xaabb).unwrap();
        assert_eq!(
            (entry.bridge, entry.mac, entry.sap, entry.epoch, entry.seen),
            (3, 0xaabb, 5, 1, 10)
        );
        fdb.update(at, 9, 2, 11);
        assert_eq!(fdb.lookup(3, 0xaabb).unwrap().1.sap, 9);
        assert_eq!(fdb.lookup(4, 0xaabb).unwrap().1.sap, 6);
        assert_eq!(fdb.remove(3, 0xaabb).unwrap().sap, 9);
        assert!(fdb.lookup(3, 0xaabb).is_none());
        assert_eq!(fdb.len(), 1);
    }

    #[test]
    fn refresh_settles_a_source_on_its_own_sap_and_reports_anything_else() {
        let mut fdb = Fdb::new(100, 11);
        fdb.insert(1, 0xa, 5, 3, 10).unwrap();
        fdb.insert(1, 0xb, STATIC_SAP, STATIC_EPOCH, 0).unwrap();
        let seen = |fdb: &Fdb, mac| fdb.lookup(1, mac).unwrap().1.seen;
        // Its own SAP and epoch: refreshed, nothing else changes.
        assert_eq!(fdb.refresh(fdb.key(1, 0xa), 5, 3, 12), Sighting::Known);
        assert_eq!(seen(&fdb, 0xa), 12);
        assert_eq!(fdb.refresh(fdb.key(1, 0xa), 5, 3, 12), Sighting::Known);
        // Another SAP, or the same SAP after a flush (a newer epoch): the entry, untouched.
        for (sap, epoch) in [(6, 3), (5, 4)] {
            let Sighting::Other(at, entry) = fdb.refresh(fdb.key(1, 0xa), sap, epoch, 20) else {
                panic!("an entry on SAP 5 epoch 3 is not settled for SAP {sap} epoch {epoch}");
            };
            assert_eq!((entry.sap, entry.epoch, entry.seen), (5, 3, 12));
            assert_eq!(Some((at, entry)), fdb.lookup(1, 0xa));
        }
        // A static entry is reported, whatever the SAP asking.
        assert!(matches!(
            fdb.refresh(fdb.key(1, 0xb), STATIC_SAP, 3, 20),
            Sighting::Other(_, e) if e.is_static()
        ));
        // Unknown MAC, or known in another bridge only.
        assert_eq!(fdb.refresh(fdb.key(1, 0xc), 5, 3, 20), Sighting::Absent);
        assert_eq!(fdb.refresh(fdb.key(2, 0xa), 5, 3, 20), Sighting::Absent);
        assert_eq!(seen(&fdb, 0xa), 12);
    }

    #[test]
    fn full_table_refuses_new_keys_but_updates_old_ones() {
        let mut fdb = Fdb::new(4, 1);
        for mac in 0..4 {
            fdb.insert(0, mac, 1, 0, 0).unwrap();
        }
        assert_eq!(fdb.insert(0, 99, 1, 0, 0), Err(InsertError::Full));
        assert_eq!(fdb.insert(0, 2, 7, 0, 0), Ok(()));
        assert_eq!(fdb.lookup(0, 2).unwrap().1.sap, 7);
    }

    #[test]
    fn random_operations_agree_with_a_hash_map() {
        // A small table with many collisions: backward shifts are exercised constantly.
        let mut fdb = Fdb::new(200, 3);
        let mut model: HashMap<(u32, u64), u32> = HashMap::new();
        let mut x: u64 = 0x1234_5678;
        for step in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bridge = (x % 3) as u32;
            let mac = (x >> 8) % 300;
            match x % 4 {
                0 | 1 => {
                    let ok = fdb.insert(bridge, mac, step & 0xffff, 0, 0).is_ok();
                    if ok {
                        model.insert((bridge, mac), step & 0xffff);
                    } else {
                        assert!(!model.contains_key(&(bridge, mac)));
                        assert_eq!(model.len(), 200);
                    }
                }
                2 => {
                    assert_eq!(
                        fdb.remove(bridge, mac).map(|e| e.sap),
                        model.remove(&(bridge, mac))
                    );
                }
                _ => {
                    let removed = fdb.sweep(7, |e| e.mac % 5 == 0);
                    assert!(removed <= 7);
                    // The sweep removes what it reached: the model follows the table, and the
                    // lengths and every survivor are checked below.
                    model.retain(|(b, m), _| {
                        let kept = fdb.lookup(*b, *m).is_some();
                        assert!(kept || m % 5 == 0, "the sweep removed {m}");
                        kept
                    });
                }
            }
            assert_eq!(fdb.len(), model.len());
        }
        for ((bridge, mac), sap) in &model {
            assert_eq!(fdb.lookup(*bridge, *mac).unwrap().1.sap, *sap);
        }
    }

    #[test]
    fn sweep_covers_the_table_incrementally_and_retain_clears() {
        let mut fdb = Fdb::new(1_000, 9);
        for mac in 0..1_000 {
            fdb.insert(1, mac, 2, (mac % 2) as u8, 0).unwrap();
        }
        let slots = fdb.slot_count();
        let mut examined = 0;
        while examined < slots {
            examined += fdb.sweep(64, |e| e.epoch == 1);
        }
        // One full pass may miss an entry that wrapped around the end: a second catches it.
        fdb.sweep(slots, |e| e.epoch == 1);
        assert_eq!(fdb.len(), 500);
        assert!(fdb.iter().all(|e| e.epoch == 0));
        assert_eq!(fdb.retain(|e| e.mac < 100), 50);
        assert_eq!(fdb.len(), 450);
    }

    #[test]
    fn holds_a_million_entries() {
        let mut fdb = Fdb::new(1 << 20, 5);
        for mac in 0..(1u64 << 20) {
            fdb.insert((mac % 7) as u32, mac * 0x0001_0000_0101, 1, 0, 0)
                .unwrap();
        }
        assert_eq!(fdb.len(), 1 << 20);
        for mac in (0..(1u64 << 20)).step_by(997) {
            assert!(fdb
                .lookup((mac % 7) as u32, mac * 0x0001_0000_0101)
                .is_some());
        }
    }
}
