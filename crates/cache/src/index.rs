//! The key index: open addressing with linear probing over 8-byte buckets `tag << 32 | handle`.
//!
//! `tag` is the top 32 bits of the key's hash with bit 0 forced to 1, so an occupied bucket is
//! never 0 (the empty marker). A probe compares tags only; the entry's record (key, value,
//! expiry) is read only when all 32 bits match, so a lookup touches one index cache line and
//! then one record, instead of hashbrown's control bytes, bucket, slot and allocation.
//!
//! The home bucket is derived from the tag alone (`tag * capacity >> 32`): growing the table and
//! deleting by backward shift never need the key, so neither reads a record. Tags of entries in
//! one probe run share their top `log2(capacity)` bits; the remaining bits still make a false
//! tag match rare (1 in 2048 per compared bucket at 2^21 buckets), and a false match only costs
//! one key compare.

/// Bucket value of an empty bucket.
const EMPTY: u64 = 0;
/// The table grows (doubling) before more than 4/5 of its buckets are occupied.
const MAX_LOAD_NUM: usize = 4;
const MAX_LOAD_DEN: usize = 5;
/// First capacity; it doubles from here, so it is always a power of two.
const MIN_CAPACITY: usize = 8;
/// Buckets compared at once. The first `GROUP - 1` buckets are mirrored after the last one, so
/// a group starting anywhere is contiguous.
pub(crate) const GROUP: usize = 4;

/// Index bytes per entry at the lowest load the table has after growing (2/5): 8 / 0.4.
pub(crate) const WORST_BYTES_PER_ENTRY: usize = 8 * 2 * MAX_LOAD_DEN / MAX_LOAD_NUM;

pub(crate) struct Index {
    /// `cap` buckets, then copies of the first `GROUP - 1` (none while `cap` is 0).
    buckets: Vec<u64>,
    cap: usize,
    len: usize,
}

#[inline(always)]
fn bucket_tag(b: u64) -> u32 {
    (b >> 32) as u32
}

#[inline(always)]
fn bucket_handle(b: u64) -> u32 {
    b as u32
}

#[inline(always)]
fn home_in(tag: u32, cap: usize) -> usize {
    ((u64::from(tag) * cap as u64) >> 32) as usize
}

impl Index {
    pub(crate) fn new() -> Self {
        Index {
            buckets: Vec::new(),
            cap: 0,
            len: 0,
        }
    }

    /// The tag of a key hash.
    #[inline(always)]
    pub(crate) fn tag(hash: u64) -> u32 {
        (hash >> 32) as u32 | 1
    }

    /// The home bucket of `tag`; `None` when the table has no buckets yet.
    #[inline(always)]
    pub(crate) fn home(&self, tag: u32) -> Option<usize> {
        (self.cap != 0).then(|| home_in(tag, self.cap))
    }

    #[inline(always)]
    pub(crate) fn wrap(&self, p: usize) -> usize {
        if p >= self.cap {
            p - self.cap
        } else {
            p
        }
    }

    /// The bucket after `p`.
    #[inline(always)]
    pub(crate) fn next(&self, p: usize) -> usize {
        self.wrap(p + 1)
    }

    /// Address of bucket `p`, for prefetching.
    #[inline(always)]
    pub(crate) fn bucket_ptr(&self, p: usize) -> *const u8 {
        self.buckets[p..].as_ptr().cast()
    }

    /// Bit masks of the `GROUP` buckets from `p`: tag matches on the probe sequence (before
    /// the first empty bucket), and empty buckets. Computed without branches.
    #[inline(always)]
    pub(crate) fn group(&self, p: usize, tag: u32) -> (u32, u32) {
        let g = &self.buckets[p..p + GROUP];
        let (mut matches, mut empty) = (0u32, 0u32);
        for (k, &b) in g.iter().enumerate() {
            matches |= u32::from(bucket_tag(b) == tag) << k;
            empty |= u32::from(b == EMPTY) << k;
        }
        // Tags have bit 0 set, so an empty bucket never matches; drop matches past an empty.
        (
            matches & (empty & empty.wrapping_neg()).wrapping_sub(1),
            empty,
        )
    }

    /// The first of the `GROUP` buckets from `p` whose tag is `tag` (position and handle),
    /// found without a branch per bucket. It may lie past an empty bucket, i.e. off the probe
    /// sequence; the caller's key compare then fails and it falls back to [`Index::find_from`].
    #[inline(always)]
    pub(crate) fn first_in_window(&self, p: usize, tag: u32) -> Option<(usize, u32)> {
        let w: &[u64; GROUP] = self.buckets[p..p + GROUP]
            .try_into()
            .expect("a window is GROUP buckets");
        let mut matches = 0u32;
        for (k, &b) in w.iter().enumerate() {
            matches |= u32::from(bucket_tag(b) == tag) << k;
        }
        if matches == 0 {
            return None;
        }
        let k = matches.trailing_zeros() as usize & (GROUP - 1);
        Some((self.wrap(p + k), bucket_handle(w[k])))
    }

    /// The handle in bucket `p` (`p` may run into the mirrored buckets).
    #[inline(always)]
    pub(crate) fn handle_at(&self, p: usize) -> u32 {
        bucket_handle(self.buckets[p])
    }

    /// From bucket `start` on `tag`'s probe sequence, the first bucket whose tag matches and
    /// for whose handle `f` returns `Some`: its position and `f`'s answer.
    #[inline(always)]
    pub(crate) fn find_from<T>(
        &self,
        tag: u32,
        start: usize,
        mut f: impl FnMut(u32) -> Option<T>,
    ) -> Option<(usize, T)> {
        let mut p = start;
        loop {
            let (mut matches, empty) = self.group(p, tag);
            while matches != 0 {
                let k = matches.trailing_zeros() as usize;
                if let Some(t) = f(bucket_handle(self.buckets[p + k])) {
                    return Some((self.wrap(p + k), t));
                }
                matches &= matches - 1;
            }
            if empty != 0 {
                return None;
            }
            p = self.wrap(p + GROUP);
        }
    }

    /// The first bucket whose tag matches and for whose handle `f` returns `Some`.
    #[inline(always)]
    pub(crate) fn find<T>(&self, tag: u32, f: impl FnMut(u32) -> Option<T>) -> Option<(usize, T)> {
        let home = self.home(tag)?;
        self.find_from(tag, home, f)
    }

    /// From `start`, the first bucket whose tag matches (its position and handle): where a
    /// lookup will compare keys first. Reads the index only.
    #[inline(always)]
    pub(crate) fn first_match(&self, tag: u32, start: usize) -> Option<(usize, u32)> {
        self.find_from(tag, start, Some)
    }

    /// The position of the bucket holding `handle` (whose tag is `tag`).
    pub(crate) fn position(&self, tag: u32, handle: u32) -> Option<usize> {
        self.find(tag, |h| (h == handle).then_some(()))
            .map(|(p, ())| p)
    }

    /// Writes bucket `p` (and its mirror).
    #[inline(always)]
    fn put(buckets: &mut [u64], cap: usize, p: usize, b: u64) {
        buckets[p] = b;
        if p < GROUP - 1 {
            buckets[cap + p] = b;
        }
    }

    /// Points the bucket at `p` to another handle (the entry's record moved).
    pub(crate) fn set_handle(&mut self, p: usize, handle: u32) {
        let b = self.buckets[p];
        debug_assert_ne!(b, EMPTY);
        let b = (b & !u64::from(u32::MAX)) | u64::from(handle);
        Self::put(&mut self.buckets, self.cap, p, b);
    }

    /// Adds a bucket for a key known to be absent.
    pub(crate) fn insert(&mut self, tag: u32, handle: u32) {
        if (self.len + 1) * MAX_LOAD_DEN > self.cap * MAX_LOAD_NUM {
            self.grow();
        }
        let b = u64::from(tag) << 32 | u64::from(handle);
        Self::place(&mut self.buckets, self.cap, b);
        self.len += 1;
    }

    fn place(buckets: &mut [u64], cap: usize, b: u64) {
        let mut p = home_in(bucket_tag(b), cap);
        while buckets[p] != EMPTY {
            p += 1;
            if p == cap {
                p = 0;
            }
        }
        Self::put(buckets, cap, p, b);
    }

    fn grow(&mut self) {
        let cap = (self.cap * 2).max(MIN_CAPACITY);
        let mut buckets = vec![EMPTY; cap + GROUP - 1];
        for &b in &self.buckets[..self.cap] {
            if b != EMPTY {
                Self::place(&mut buckets, cap, b);
            }
        }
        self.buckets = buckets;
        self.cap = cap;
    }

    /// Empties bucket `p`, shifting later buckets of the run back so that every entry stays
    /// reachable from its home without tombstones.
    pub(crate) fn remove_at(&mut self, p: usize) {
        let cap = self.cap;
        // Capacities are powers of two (doubling from MIN_CAPACITY).
        let dist = |from: usize, to: usize| to.wrapping_sub(from) & (cap - 1);
        let mut hole = p;
        let mut q = self.next(p);
        loop {
            let b = self.buckets[q];
            if b == EMPTY {
                break;
            }
            // The entry at `q` may fill the hole if the hole lies on its probe path
            // (between its home and `q`).
            if dist(home_in(bucket_tag(b), cap), q) >= dist(hole, q) {
                Self::put(&mut self.buckets, cap, hole, b);
                hole = q;
            }
            q = self.next(q);
        }
        Self::put(&mut self.buckets, cap, hole, EMPTY);
        self.len -= 1;
    }

    /// Number of buckets.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(ix: &Index, tag: u32, handle: u32) -> bool {
        ix.position(tag, handle).is_some()
    }

    #[test]
    fn insert_find_remove_with_colliding_homes() {
        let mut ix = Index::new();
        // Tags with equal top bits share a home: long runs, wrap-around and backward shifts.
        let tags: Vec<u32> = (0..200u32)
            .map(|i| (i % 7).wrapping_mul(0x2000_0000) | (i << 3) | 1)
            .collect();
        for (h, &t) in tags.iter().enumerate() {
            ix.insert(t, h as u32);
        }
        assert!(ix.capacity() * 4 >= tags.len() * 5);
        for (h, &t) in tags.iter().enumerate() {
            assert!(lookup(&ix, t, h as u32));
        }
        for (h, &t) in tags.iter().enumerate().step_by(3) {
            let p = ix.position(t, h as u32).unwrap();
            ix.remove_at(p);
        }
        for (h, &t) in tags.iter().enumerate() {
            assert_eq!(lookup(&ix, t, h as u32), h % 3 != 0, "{h}");
        }
        assert_eq!(ix.len, tags.len() - tags.len().div_ceil(3));
    }

    #[test]
    fn set_handle_keeps_the_tag() {
        let mut ix = Index::new();
        ix.insert(0xdead_beef, 7);
        let p = ix.position(0xdead_beef, 7).unwrap();
        ix.set_handle(p, 9);
        assert!(!lookup(&ix, 0xdead_beef, 7));
        assert!(lookup(&ix, 0xdead_beef, 9));
        assert_eq!(ix.first_match(0xdead_beef, p), Some((p, 9)));
    }
}
