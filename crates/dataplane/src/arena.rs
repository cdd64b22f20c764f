//! Huge-page arenas for the per-owner arrays the packet path reads at random: classifier
//! entries and actions, PCC rule actions and state.
//!
//! Why: 100 000 owners each with a few hundred bytes of entries, actions and state, allocated
//! one by one with `malloc`, lie in 4 KiB pages spread over hundreds of megabytes. A random
//! owner per packet then costs a page walk beside every cache miss, and the walks, not the
//! misses, were the largest cost measured (round 6 in `docs/perf/dataplane.md`: the heap in
//! huge pages alone gave +20 %). An [`Arena`] carves every array of one item type out of
//! chunks of 2 MiB, allocated 2 MiB-aligned and advised `MADV_HUGEPAGE` before they are first
//! touched (this kernel's transparent huge pages are `madvise`-only, as for the MAC table in
//! [`crate::fdb`]); a hundred thousand owners' arrays then fit a few dozen TLB entries.
//!
//! An array is a [`Block`]: a pointer and a length (16 bytes, what the `Box<[T]>` it replaces
//! cost), dereferencing to `&[T]` without going through the arena, freed into its arena's free
//! list when dropped. Arenas are process-wide (one `static` per item type, see [`ArenaItem`])
//! and never give chunks back, for two reasons: a block must stay valid for as long as anyone
//! holds it — the control side reads the final counters of a policy the stage removed, and
//! rule sets are shared by snapshots the stage no longer runs — and a block must be cheap to
//! dereference, which a pointer into memory that never moves is. The price is that memory once
//! used by the arrays of an item type stays with that type (reused by later blocks), the
//! high-water mark of a `malloc` arena.

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Mutex;

/// Bytes per chunk: one huge page.
pub const CHUNK_BYTES: usize = 2 << 20;

/// A cache line.
const LINE: usize = 64;

/// An item type with a process-wide arena of its own.
pub trait ArenaItem: Sized + Send + Sync + 'static {
    /// The arena blocks of this type are carved from and freed into.
    fn arena() -> &'static Arena<Self>;
}

/// Where blocks of one item type come from: chunks of [`CHUNK_BYTES`] in huge pages, a
/// bump pointer in the last, and free lists by length (owners mostly have arrays of the same
/// few lengths, so an exact-length list is reused as is). Locked only to allocate and to free,
/// which the control side does, never the packet path.
pub struct Arena<T> {
    state: Mutex<State>,
    item: PhantomData<fn() -> T>,
}

/// The arena's bookkeeping (no item of `T` in it).
#[derive(Default)]
struct State {
    /// Each chunk's first item's address (chunks are never freed).
    chunks: Vec<usize>,
    /// Items used of the last chunk.
    bump: usize,
    /// Free blocks' addresses by length.
    free: std::collections::BTreeMap<usize, Vec<usize>>,
}

/// Why a block could not be allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArenaError {
    /// More items than one chunk holds: blocks never span chunks.
    #[error("an array of {len} items exceeds a chunk of {max}")]
    TooLong {
        /// Items asked for.
        len: usize,
        /// Most items one block can hold.
        max: usize,
    },
}

impl<T> Arena<T> {
    /// An arena with no chunk yet (the first block allocates one).
    pub const fn new() -> Self {
        Self {
            state: Mutex::new(State {
                chunks: Vec::new(),
                bump: 0,
                free: std::collections::BTreeMap::new(),
            }),
            item: PhantomData,
        }
    }

    /// Most items one block can hold.
    pub const fn max_len() -> usize {
        match CHUNK_BYTES.checked_div(std::mem::size_of::<T>()) {
            Some(max) => max,
            None => 0,
        }
    }

    /// Chunks allocated so far (each [`CHUNK_BYTES`]).
    pub fn chunks(&self) -> usize {
        self.lock().chunks.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent between any two statements that can panic (none of them
        // runs while it is half updated), so a poisoned lock is still a valid one.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The layout of one chunk: 2 MiB-aligned, so that it is exactly one huge page.
    fn chunk_layout() -> std::alloc::Layout {
        // CHUNK_BYTES is a power of two and at least any item's alignment we hold (asserted
        // in `reserve`), so this cannot fail.
        std::alloc::Layout::from_size_align(CHUNK_BYTES, CHUNK_BYTES)
            .unwrap_or_else(|_| std::alloc::Layout::new::<u8>())
    }

    /// Room for `len` items that no block covers, as the address of the first.
    fn reserve(&self, len: usize) -> Result<usize, ArenaError> {
        let max = Self::max_len();
        if len > max {
            return Err(ArenaError::TooLong { len, max });
        }
        const { assert!(std::mem::align_of::<T>() <= CHUNK_BYTES) };
        let mut state = self.lock();
        if let Some(at) = state.free.get_mut(&len).and_then(Vec::pop) {
            return Ok(at);
        }
        let last = match state.chunks.last() {
            Some(&base) if state.bump + len <= max => base,
            _ => {
                let layout = Self::chunk_layout();
                // SAFETY: the layout has a non-zero size.
                let raw = unsafe { std::alloc::alloc(layout) };
                if raw.is_null() {
                    std::alloc::handle_alloc_error(layout);
                }
                // The advice must come before the pages are first written. Failure only means
                // small pages.
                #[cfg(target_os = "linux")]
                // SAFETY: advice on memory this allocation owns, which it never frees.
                unsafe {
                    libc::madvise(raw.cast(), layout.size(), libc::MADV_HUGEPAGE)
                };
                // Addresses are kept exposed: blocks are made from them in `Block::from_fn`.
                let base = raw.expose_provenance();
                state.chunks.push(base);
                state.bump = 0;
                base
            }
        };
        let at = last + state.bump * std::mem::size_of::<T>();
        state.bump += len + Self::gap(len);
        Ok(at)
    }

    /// Items left unused after a block of `len`: at least a line when the block is a multiple
    /// of four lines. Blocks of one size follow one another in a chunk, and at a power-of-two
    /// stride the same part of each (the state line of every owner's 8th rule, 512 bytes
    /// apart) falls in the same few cache sets — an eighth of the L1's with eight 64-byte
    /// states — where the lines a batch prefetched evict one another before they are read.
    /// One line more makes the stride odd in lines, and such parts spread over every set.
    fn gap(len: usize) -> usize {
        let size = std::mem::size_of::<T>();
        if (len * size).is_multiple_of(4 * LINE) {
            LINE.div_ceil(size)
        } else {
            0
        }
    }

    /// Takes back a block's room (its items already dropped).
    fn release(&self, at: usize, len: usize) {
        self.lock().free.entry(len).or_default().push(at);
    }
}

impl<T> Default for Arena<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// An array of `T` in `T`'s arena: derefs to `&[T]`, frees its room when dropped.
pub struct Block<T: ArenaItem> {
    ptr: NonNull<T>,
    len: usize,
}

// SAFETY: a block owns its items as a `Box<[T]>` does (no other block covers them, and the
// memory is never freed), so it may move to and be shared with other threads when `T` may.
unsafe impl<T: ArenaItem> Send for Block<T> {}
// SAFETY: as above; shared access hands out `&T` only.
unsafe impl<T: ArenaItem> Sync for Block<T> {}

impl<T: ArenaItem> Block<T> {
    /// An empty block (takes no room).
    pub const fn empty() -> Self {
        Self {
            ptr: NonNull::dangling(),
            len: 0,
        }
    }

    /// A block of the items `items` yields.
    pub fn from_exact_iter<I>(items: I) -> Result<Self, ArenaError>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: ExactSizeIterator,
    {
        let items = items.into_iter();
        let room = items.len();
        if room == 0 || std::mem::size_of::<T>() == 0 {
            return Ok(Self::empty());
        }
        let at = T::arena().reserve(room)?;
        let first = std::ptr::with_exposed_provenance_mut::<T>(at);
        let mut len = 0;
        for item in items.take(room) {
            // SAFETY: `reserve` gave room for `room` items at `at`, aligned for `T` (chunks are
            // 2 MiB-aligned and items packed at multiples of their size), that no block covers
            // and nobody reads: writing into it races with nothing. If the iterator panics, the
            // items written so far leak and the room stays reserved, which is safe.
            unsafe { first.add(len).write(item) };
            len += 1;
        }
        // An iterator yielding fewer items than it announced leaves its block shorter (the
        // rest of the room is freed with it, under the shorter length: wasted, not unsafe).
        Ok(Self {
            // SAFETY: `at` is a chunk address, never null.
            ptr: unsafe { NonNull::new_unchecked(first) },
            len,
        })
    }

    /// A block of `len` items, item `i` being `make(i)`.
    pub fn from_fn(len: usize, make: impl FnMut(usize) -> T) -> Result<Self, ArenaError> {
        Self::from_exact_iter((0..len).map(make))
    }

    /// A block holding `items`, moved.
    pub fn from_vec(items: Vec<T>) -> Result<Self, ArenaError> {
        Self::from_exact_iter(items)
    }

    /// A block holding copies of `items`.
    pub fn from_slice(items: &[T]) -> Result<Self, ArenaError>
    where
        T: Clone,
    {
        Self::from_exact_iter(items.iter().cloned())
    }
}

impl<T: ArenaItem> std::ops::Deref for Block<T> {
    type Target = [T];

    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: `len` items written in `from_fn` (or none, with a dangling aligned pointer),
        // in memory that is never freed and that no other block covers until this one drops.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: ArenaItem> Drop for Block<T> {
    fn drop(&mut self) {
        if self.len == 0 {
            return;
        }
        // SAFETY: the items were written in `from_fn` and are dropped once, here; nothing can
        // read them afterwards (the block is going, and its room is not handed out again until
        // `release` below).
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr(),
                self.len,
            ))
        };
        T::arena().release(self.ptr.as_ptr().addr(), self.len);
    }
}

impl<T: ArenaItem + Clone> Clone for Block<T> {
    fn clone(&self) -> Self {
        // The same length fitted a chunk before, so it fits again.
        Self::from_slice(self).unwrap_or_else(|_| Self::empty())
    }
}

impl<T: ArenaItem + std::fmt::Debug> std::fmt::Debug for Block<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: ArenaItem + PartialEq> PartialEq for Block<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: ArenaItem + Eq> Eq for Block<T> {}

impl<T: ArenaItem> Default for Block<T> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<T: ArenaItem> std::ops::DerefMut for Block<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as for `deref`, and `&mut self` is exclusive: no other block covers the items.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

/// A cache line of untyped memory: the unit a [`Pair`] is carved in.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct Line([std::mem::MaybeUninit<u8>; LINE]);

impl ArenaItem for Line {
    fn arena() -> &'static Arena<Self> {
        static ARENA: Arena<Line> = Arena::new();
        &ARENA
    }
}

/// Two arrays in one block, the second right after the first (at its alignment): an owner's
/// classifier entries and the actions they lead to, so that a packet's scan and its action are
/// adjacent lines — one allocation, one page, pairs of lines the adjacent-line prefetcher
/// fetches together — instead of two blocks in two arenas' chunks.
///
/// Items are `Copy` (nothing to drop) and aligned to at most a line (the block's alignment).
pub struct Pair<A, B> {
    lines: Block<Line>,
    /// Items in the first array.
    first: u32,
    /// Items in the second array.
    second: u32,
    items: PhantomData<(A, B)>,
}

impl<A: Copy, B: Copy> Pair<A, B> {
    const ALIGNED: () = assert!(
        std::mem::align_of::<A>() <= LINE && std::mem::align_of::<B>() <= LINE,
        "a pair's items must be aligned to at most a line"
    );

    /// An empty pair (takes no room).
    pub const fn empty() -> Self {
        Self {
            lines: Block::empty(),
            first: 0,
            second: 0,
            items: PhantomData,
        }
    }

    /// Byte offset of the second array: the end of the first, rounded up to `B`'s alignment.
    #[inline(always)]
    fn second_offset(first: usize) -> usize {
        (first * std::mem::size_of::<A>()).next_multiple_of(std::mem::align_of::<B>())
    }

    /// A pair holding copies of `first` then `second`.
    pub fn new(first: &[A], second: &[B]) -> Result<Self, ArenaError> {
        let () = Self::ALIGNED;
        let offset = Self::second_offset(first.len());
        let bytes = offset + std::mem::size_of_val(second);
        let room = bytes.div_ceil(LINE);
        let max = Arena::<Line>::max_len();
        let (Ok(first_len), Ok(second_len)) =
            (u32::try_from(first.len()), u32::try_from(second.len()))
        else {
            return Err(ArenaError::TooLong { len: room, max });
        };
        let mut lines = Block::from_fn(room, |_| Line([std::mem::MaybeUninit::uninit(); LINE]))?;
        let base = lines.as_mut_ptr().cast::<u8>();
        for (i, item) in first.iter().enumerate() {
            // SAFETY: item `i` of the first array ends at most `offset <= bytes` bytes into the
            // block's `room` lines; the block is line-aligned and `A` needs no more (`ALIGNED`),
            // and sizes are multiples of alignments, so `base + i * size_of::<A>()` is aligned.
            // The lines are untyped (`MaybeUninit`), so any bytes may be written over them.
            unsafe { base.cast::<A>().add(i).write(*item) };
        }
        for (i, item) in second.iter().enumerate() {
            // SAFETY: as above: item `i` of the second array lies in `offset..bytes`, and
            // `offset` is a multiple of `B`'s alignment.
            unsafe { base.add(offset).cast::<B>().add(i).write(*item) };
        }
        Ok(Self {
            lines,
            first: first_len,
            second: second_len,
            items: PhantomData,
        })
    }

    /// The first array.
    #[inline(always)]
    pub fn first(&self) -> &[A] {
        // SAFETY: `first` items of `A` were written at the block's start in `new`, and nothing
        // writes the block afterwards (it is only reachable through `&self`); the pointer is
        // line-aligned (a dangling one of `Line`'s alignment when empty, with no items).
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<A>(), self.first as usize) }
    }

    /// The second array.
    #[inline(always)]
    pub fn second(&self) -> &[B] {
        let offset = Self::second_offset(self.first as usize);
        // SAFETY: as for `first`: `second` items of `B` were written from `offset` in `new`,
        // which is within the block or its end (zero items), and aligned for `B`.
        unsafe {
            std::slice::from_raw_parts(
                self.lines.as_ptr().cast::<u8>().add(offset).cast::<B>(),
                self.second as usize,
            )
        }
    }

    /// Both arrays as one span of bytes, for prefetching.
    #[inline(always)]
    pub fn bytes(&self) -> (*const u8, usize) {
        (
            self.lines.as_ptr().cast(),
            Self::second_offset(self.first as usize) + std::mem::size_of_val(self.second()),
        )
    }
}

impl<A: Copy, B: Copy> Clone for Pair<A, B> {
    fn clone(&self) -> Self {
        // The same lengths fitted a chunk before, so they fit again.
        Self::new(self.first(), self.second()).unwrap_or_else(|_| Self::empty())
    }
}

impl<A: Copy + std::fmt::Debug, B: Copy + std::fmt::Debug> std::fmt::Debug for Pair<A, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("first", &self.first())
            .field("second", &self.second())
            .finish()
    }
}

impl<A: Copy + PartialEq, B: Copy + PartialEq> PartialEq for Pair<A, B> {
    fn eq(&self, other: &Self) -> bool {
        self.first() == other.first() && self.second() == other.second()
    }
}

impl<A: Copy + Eq, B: Copy + Eq> Eq for Pair<A, B> {}

impl<A: Copy, B: Copy> Default for Pair<A, B> {
    fn default() -> Self {
        Self::empty()
    }
}

/// A fixed-length array in memory of its own, 2 MiB-aligned and advised `MADV_HUGEPAGE`
/// before it is first written when it is 2 MiB or more: for the tables a packet indexes at
/// random that outgrow a chunk (the PCC stage's address tables and subscriber slots), which
/// are reallocated whole when they grow rather than carved from an arena.
pub struct HugeSlice<T> {
    ptr: NonNull<T>,
    len: usize,
}

// SAFETY: a `HugeSlice` owns its items as a `Box<[T]>` does.
unsafe impl<T: Send> Send for HugeSlice<T> {}
// SAFETY: as above; shared access hands out `&T` only.
unsafe impl<T: Sync> Sync for HugeSlice<T> {}

impl<T> HugeSlice<T> {
    /// `len` items, item `i` being `make(i)`.
    pub fn from_fn(len: usize, mut make: impl FnMut(usize) -> T) -> Self {
        let Some(layout) = Self::layout(len) else {
            return Self {
                ptr: NonNull::dangling(),
                len,
            };
        };
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc(layout) }.cast::<T>();
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout);
        };
        #[cfg(target_os = "linux")]
        if layout.align() == CHUNK_BYTES {
            // SAFETY: advice on memory this allocation owns; failure only means small pages.
            unsafe { libc::madvise(raw.cast(), layout.size(), libc::MADV_HUGEPAGE) };
        }
        // Until every item is written, a panic in `make` drops those written and frees the
        // allocation with its own layout.
        let mut partial = Partial {
            ptr,
            written: 0,
            layout: Some(layout),
        };
        for i in 0..len {
            let item = make(i);
            // SAFETY: item `i` of the `len` allocated, not yet written.
            unsafe { ptr.as_ptr().add(i).write(item) };
            partial.written = i + 1;
        }
        std::mem::forget(partial);
        Self { ptr, len }
    }

    /// The allocation of `len` items; `None` when it is empty (zero items or zero-sized
    /// items), which needs none.
    fn layout(len: usize) -> Option<std::alloc::Layout> {
        let bytes = len.checked_mul(std::mem::size_of::<T>())?;
        if bytes == 0 {
            return None;
        }
        let align = if bytes >= CHUNK_BYTES {
            CHUNK_BYTES
        } else {
            std::mem::align_of::<T>()
        };
        let layout =
            std::alloc::Layout::from_size_align(bytes, align.max(std::mem::align_of::<T>()));
        // Too large for the address space: as `Vec` does, treat it as out of memory.
        Some(
            layout
                .unwrap_or_else(|_| std::alloc::handle_alloc_error(std::alloc::Layout::new::<T>())),
        )
    }
}

impl<T> std::ops::Deref for HugeSlice<T> {
    type Target = [T];

    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: `len` items written in `from_fn` (or none, with a dangling aligned pointer).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> std::ops::DerefMut for HugeSlice<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as above, and `&mut self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for HugeSlice<T> {
    fn drop(&mut self) {
        drop(Partial {
            ptr: self.ptr,
            written: self.len,
            layout: Self::layout(self.len),
        });
    }
}

/// A [`HugeSlice`]'s allocation with its first `written` items: dropping it drops them and
/// frees the allocation.
struct Partial<T> {
    ptr: NonNull<T>,
    written: usize,
    /// `None`: nothing was allocated.
    layout: Option<std::alloc::Layout>,
}

impl<T> Drop for Partial<T> {
    fn drop(&mut self) {
        // SAFETY: the first `written` items were written and nothing else drops them.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr(),
                self.written,
            ))
        };
        if let Some(layout) = self.layout {
            // SAFETY: allocated with this layout in `HugeSlice::from_fn`, freed once, here.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr().cast(), layout) };
        }
    }
}

/// Gives `$item` a process-wide arena of its own.
macro_rules! arena_item {
    ($item:ty) => {
        impl $crate::arena::ArenaItem for $item {
            fn arena() -> &'static $crate::arena::Arena<Self> {
                static ARENA: $crate::arena::Arena<$item> = $crate::arena::Arena::new();
                &ARENA
            }
        }
    };
}
pub(crate) use arena_item;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// 48 bytes with a drop counter, so that tests see every item dropped once.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Item {
        value: u64,
        pad: [u64; 5],
    }

    static DROPS: AtomicUsize = AtomicUsize::new(0);

    impl Drop for Item {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::Relaxed);
        }
    }

    arena_item!(Item);

    /// One test at a time uses `Item`'s arena (they count its chunks and drops).
    static SERIAL: Mutex<()> = Mutex::new(());

    fn item(value: u64) -> Item {
        Item { value, pad: [0; 5] }
    }

    fn values(block: &Block<Item>) -> Vec<u64> {
        block.iter().map(|i| i.value).collect()
    }

    #[test]
    fn blocks_hold_their_items_in_one_aligned_chunk() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let a = Block::from_fn(3, |i| item(i as u64)).unwrap();
        let b = Block::from_fn(5, |i| item(10 + i as u64)).unwrap();
        assert_eq!(values(&a), [0, 1, 2]);
        assert_eq!(values(&b), [10, 11, 12, 13, 14]);
        let base = a.as_ptr() as usize & !(CHUNK_BYTES - 1);
        assert_eq!(base % CHUNK_BYTES, 0);
        assert_eq!(b.as_ptr() as usize & !(CHUNK_BYTES - 1), base, "same chunk");
        assert!(Block::<Item>::empty().is_empty());
        assert_eq!(Block::from_fn(0, |i| item(i as u64)).unwrap().len(), 0);
    }

    #[test]
    fn a_freed_block_is_reused_and_its_items_dropped_once() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let drops = DROPS.load(Ordering::Relaxed);
        let a = Block::from_fn(7, |i| item(i as u64)).unwrap();
        let at = a.as_ptr();
        drop(a);
        assert_eq!(DROPS.load(Ordering::Relaxed) - drops, 7);
        let b = Block::from_fn(7, |i| item(100 + i as u64)).unwrap();
        assert_eq!(b.as_ptr(), at, "same room");
        assert_eq!(values(&b), (100..107).collect::<Vec<_>>());
        let c = b.clone();
        assert_ne!(c.as_ptr(), b.as_ptr());
        assert_eq!(c, b);
    }

    #[test]
    fn too_long_is_refused_and_a_full_chunk_starts_another() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let max = Arena::<Item>::max_len();
        assert_eq!(
            Block::from_fn(max + 1, |i| item(i as u64)).err(),
            Some(ArenaError::TooLong { len: max + 1, max })
        );
        let before = Item::arena().chunks();
        let whole = Block::from_fn(max, |i| item(i as u64)).unwrap();
        assert_eq!(
            whole.as_ptr() as usize % CHUNK_BYTES,
            0,
            "a chunk of its own"
        );
        assert!(Item::arena().chunks() > before);
        assert_eq!(whole.last().map(|i| i.value), Some(max as u64 - 1));
    }

    /// 12 bytes, 4-aligned: packed after 32-byte items without padding.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Small(u32, u32, u32);

    /// 32 bytes, 32-aligned, as the classifier's IPv4 entries.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(align(32))]
    struct Wide([u8; 20]);

    proptest! {
        /// A pair's arrays read back as written, from a line-aligned block in which the second
        /// array starts right after the first (at its alignment), and survive other pairs
        /// coming and going.
        #[test]
        fn pairs_hold_both_arrays_back_to_back(
            sets in proptest::collection::vec((0usize..12, 0usize..12, any::<u8>()), 1..40),
        ) {
            let make = |&(a, b, tag): &(usize, usize, u8)| {
                let wide: Vec<Wide> = (0..a).map(|i| Wide([tag ^ i as u8; 20])).collect();
                let small: Vec<Small> =
                    (0..b).map(|i| Small(u32::from(tag), i as u32, !(i as u32))).collect();
                (wide, small)
            };
            let mut live = Vec::new();
            for (n, set) in sets.iter().enumerate() {
                let (wide, small) = make(set);
                let pair = Pair::new(&wide, &small).unwrap();
                prop_assert_eq!(pair.first(), &wide[..]);
                prop_assert_eq!(pair.second(), &small[..]);
                if !wide.is_empty() || !small.is_empty() {
                    prop_assert_eq!(pair.first().as_ptr() as usize % LINE, 0);
                    prop_assert_eq!(
                        pair.second().as_ptr() as usize - pair.first().as_ptr() as usize,
                        32 * wide.len()
                    );
                    prop_assert_eq!(pair.bytes().1, 32 * wide.len() + 12 * small.len());
                }
                prop_assert_eq!(&pair.clone(), &pair);
                live.push((pair, n));
                if n % 3 == 2 {
                    live.swap_remove(n % live.len());
                }
            }
            for (pair, n) in &live {
                let (wide, small) = make(&sets[*n]);
                prop_assert_eq!(pair.first(), &wide[..]);
                prop_assert_eq!(pair.second(), &small[..]);
            }
        }

        /// Blocks allocated and freed in any order never overlap and keep their contents.
        #[test]
        fn blocks_never_overlap(ops in proptest::collection::vec((0usize..40, 1usize..20), 1..200)) {
            let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
            let mut live: Vec<(Block<Item>, u64)> = Vec::new();
            for (n, (pick, len)) in ops.into_iter().enumerate() {
                if pick < 15 && !live.is_empty() {
                    live.swap_remove(pick % live.len());
                } else {
                    let tag = (n as u64) << 32;
                    live.push((Block::from_fn(len, |i| item(tag + i as u64)).unwrap(), tag));
                }
                for (block, tag) in &live {
                    let expected: Vec<u64> = (0..block.len() as u64).map(|i| tag + i).collect();
                    prop_assert_eq!(values(block), expected);
                }
                let mut spans: Vec<(usize, usize)> = live
                    .iter()
                    .map(|(b, _)| (b.as_ptr() as usize, b.as_ptr() as usize + b.len() * 48))
                    .collect();
                spans.sort_unstable();
                for pair in spans.windows(2) {
                    prop_assert!(pair[0].1 <= pair[1].0, "overlap {:?}", pair);
                }
            }
        }
    }
}
