//! A vector stored in fixed-size chunks that snapshots share: cloning it copies one pointer
//! per chunk, and a write copies only the chunk it lands in (when a snapshot still holds it).
//!
//! This is what lets the service builder hand out a new snapshot per transaction in time
//! proportional to the change rather than to the table: with 100 000 SAPs, a transaction
//! that adds one Epipe copies two or three chunks instead of every entry. A read is one more
//! load than a flat vector's (the chunk pointer, from an array small enough to stay cached).
//! The chunks are [`SharedArray`]s, in huge pages: the packet path reads an entry of a random
//! chunk per packet, and in the heap's 4 KiB pages each such read brought a page walk.

use crate::arena::SharedArray;

/// A vector of `T` in chunks of `N` entries (`N` a power of two), shared copy-on-write.
/// Positions past the end read as absent; a write past the end grows the vector with
/// `T::default()`.
#[derive(Debug)]
pub(crate) struct CowVec<T, const N: usize> {
    chunks: Vec<SharedArray<T, N>>,
}

impl<T, const N: usize> Clone for CowVec<T, N> {
    fn clone(&self) -> Self {
        Self {
            chunks: self.chunks.clone(),
        }
    }
}

impl<T, const N: usize> Default for CowVec<T, N> {
    fn default() -> Self {
        Self { chunks: Vec::new() }
    }
}

impl<T: Clone + Default, const N: usize> CowVec<T, N> {
    const POWER_OF_TWO: () = assert!(N.is_power_of_two());

    /// An empty vector.
    pub fn new() -> Self {
        Self::default()
    }

    /// `len` default entries.
    pub fn with_len(len: usize) -> Self {
        let mut v = Self::new();
        v.grow_to(len);
        v
    }

    /// Positions held (a multiple of `N`).
    #[inline]
    pub fn len(&self) -> usize {
        self.chunks.len() * N
    }

    /// True when it holds no position.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The entry at `i`.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&T> {
        #[allow(clippy::let_unit_value)]
        let () = Self::POWER_OF_TWO;
        // `i % N` is below N: the inner index needs no check.
        self.chunks.get(i / N).map(|chunk| &chunk[i % N])
    }

    /// The entry at `i`, for writing: its chunk is copied first if a clone shares it.
    #[inline]
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks
            .get_mut(i / N)
            .map(|chunk| &mut chunk.make_mut()[i % N])
    }

    /// Stores `value` at `i`, growing the vector if needed.
    pub fn set(&mut self, i: usize, value: T) {
        self.grow_to(i + 1);
        if let Some(slot) = self.get_mut(i) {
            *slot = value;
        }
    }

    fn grow_to(&mut self, len: usize) {
        while self.len() < len {
            self.chunks.push(SharedArray::from_fn(|_| T::default()));
        }
    }

    /// Every position, in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flat_map(|chunk| chunk.iter())
    }

    /// Hints the CPU to fetch the entry at `i`: its first cache line, where entries keep the
    /// fields a packet reads (the SAP entry's packet fields in one line instead of two took
    /// Epipe at 100 000 SAPs from ~9.5 to ~10.9 Mpps: round 12 in `docs/perf/dataplane.md`).
    #[inline]
    pub fn prefetch(&self, i: usize) {
        if let Some(entry) = self.get(i) {
            crate::fdb::prefetch_read(entry as *const T);
        }
    }

    /// True when `self` and `other` hold the same chunk at position `i` (no copy was made
    /// since one was cloned from the other).
    #[cfg(test)]
    pub fn shares_chunk(&self, other: &Self, i: usize) -> bool {
        match (self.chunks.get(i / N), other.chunks.get(i / N)) {
            (Some(a), Some(b)) => a.ptr_eq(b),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_and_grows() {
        let mut v: CowVec<Option<u32>, 4> = CowVec::new();
        assert_eq!(v.len(), 0);
        assert_eq!(v.get(0), None);
        v.set(5, Some(7));
        assert_eq!(v.len(), 8);
        assert_eq!(v.get(5), Some(&Some(7)));
        assert_eq!(v.get(4), Some(&None));
        assert_eq!(v.get(8), None);
        let present: Vec<usize> = v
            .iter()
            .enumerate()
            .filter(|(_, x)| x.is_some())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(present, vec![5]);
        assert_eq!(CowVec::<u8, 4>::with_len(5).len(), 8);
    }

    #[test]
    fn a_write_copies_only_its_chunk_and_leaves_the_clone_alone() {
        let mut a: CowVec<u32, 4> = CowVec::with_len(16);
        for i in 0..16 {
            a.set(i, i as u32);
        }
        let b = a.clone();
        assert!((0..16).all(|i| a.shares_chunk(&b, i)));
        a.set(9, 100);
        assert_eq!(a.get(9), Some(&100));
        assert_eq!(b.get(9), Some(&9), "the clone keeps its value");
        for i in 0..16 {
            assert_eq!(a.shares_chunk(&b, i), !(8..12).contains(&i), "position {i}");
        }
    }
}
