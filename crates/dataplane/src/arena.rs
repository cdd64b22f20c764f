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

/// A cache line of untyped memory: the unit a [`packed_arrays!`] block is carved in.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct Line([std::mem::MaybeUninit<u8>; LINE]);

impl Line {
    /// A line of no particular bytes.
    pub const UNINIT: Line = Line([std::mem::MaybeUninit::uninit(); LINE]);
}

impl ArenaItem for Line {
    fn arena() -> &'static Arena<Self> {
        static ARENA: Arena<Line> = Arena::new();
        &ARENA
    }
}

/// The size and alignment of the items of one array of a [`packed_arrays!`] block.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    size: usize,
    align: usize,
}

impl Shape {
    /// The shape of `T`.
    pub const fn of<T>() -> Self {
        Self {
            size: std::mem::size_of::<T>(),
            align: std::mem::align_of::<T>(),
        }
    }

    /// Whether a line-aligned block can hold items of this shape at their alignment.
    pub const fn fits_a_line(&self) -> bool {
        self.align <= LINE
    }
}

/// Byte offset of array `k` of a packed block whose arrays have `shapes` and `lens` items:
/// the first at 0, each next one right after the previous at its own alignment. With `k` a
/// constant the loop unrolls to a few adds and masks.
#[inline(always)]
pub const fn packed_offset(shapes: &[Shape], lens: &[u16], k: usize) -> usize {
    let mut at = 0;
    let mut i = 0;
    while i < k {
        at = (at + shapes[i].size * lens[i] as usize).next_multiple_of(shapes[i + 1].align);
        i += 1;
    }
    at
}

/// Bytes a packed block of arrays of `shapes` with `lens` items spans.
#[inline(always)]
pub const fn packed_end(shapes: &[Shape], lens: &[u16]) -> usize {
    match shapes.len().checked_sub(1) {
        Some(last) => packed_offset(shapes, lens, last) + shapes[last].size * lens[last] as usize,
        None => 0,
    }
}

/// Copies `items` to `at`.
///
/// # Safety
/// `at` must be aligned for `T` and valid for writes of `items.len()` items, in memory no
/// reference covers.
#[inline]
pub unsafe fn write_array<T: Copy>(at: *mut u8, items: &[T]) {
    // SAFETY: the caller's contract; `items` is a distinct borrow, so the two do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), at.cast::<T>(), items.len()) };
}

/// Declares a struct holding several arrays of `Copy` items in one line-aligned block of
/// [`Line`]s, each right after the previous one at its alignment, with an accessor per array:
/// an owner's classifier summary, entries and actions, so that the lines a packet reads are
/// one allocation, one page and neighbours (pairs of lines the adjacent-line prefetcher
/// fetches together), instead of blocks in several arenas' chunks.
///
/// ```ignore
/// packed_arrays! {
///     /// Doc.
///     pub(crate) struct Both {
///         0 wide: Wide,
///         1 small: Small,
///     }
/// }
/// ```
///
/// Items must be aligned to at most a line; each array holds at most `u16::MAX` items (the
/// lengths are `u16`s, so that a handle with six arrays is 28 bytes). Indexes are the arrays'
/// positions, from 0 in order.
macro_rules! packed_arrays {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $idx:literal $field:ident: $item:ty ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            lines: $crate::arena::Block<$crate::arena::Line>,
            lens: [u16; [$($idx),+].len()],
        }

        impl $name {
            const ARRAYS: usize = [$($idx),+].len();
            const SHAPES: [$crate::arena::Shape; $name::ARRAYS] =
                [$($crate::arena::Shape::of::<$item>()),+];
            const FIT: () = {
                let mut i = 0;
                while i < Self::ARRAYS {
                    assert!(Self::SHAPES[i].fits_a_line(), "items must be aligned to at most a line");
                    i += 1;
                }
                $( assert!($idx < Self::ARRAYS); )+
            };

            /// A block with no items (takes no room).
            #[allow(dead_code)]
            $vis const fn empty() -> Self {
                Self {
                    lines: $crate::arena::Block::empty(),
                    lens: [0; $name::ARRAYS],
                }
            }

            /// A block holding copies of the arrays.
            #[allow(clippy::too_many_arguments)]
            $vis fn new($($field: &[$item]),+) -> Result<Self, $crate::arena::ArenaError> {
                let () = Self::FIT;
                let mut lens = [0u16; $name::ARRAYS];
                $(
                    lens[$idx] = u16::try_from($field.len()).map_err(|_| {
                        $crate::arena::ArenaError::TooLong {
                            len: $field.len(),
                            max: usize::from(u16::MAX),
                        }
                    })?;
                )+
                let room = $crate::arena::packed_end(&Self::SHAPES, &lens).div_ceil(64);
                let mut lines =
                    $crate::arena::Block::from_fn(room, |_| $crate::arena::Line::UNINIT)?;
                let base = lines.as_mut_ptr().cast::<u8>();
                $(
                    // SAFETY: the array starts at its `packed_offset` and ends at or before
                    // `packed_end`, within the block's `room` lines, which this function owns
                    // (no reference covers them yet). The block is line-aligned, the offset a
                    // multiple of the item's alignment, which is at most a line (`FIT`). The
                    // lines are untyped (`MaybeUninit`), so any bytes may be written over them.
                    unsafe {
                        $crate::arena::write_array(
                            base.add($crate::arena::packed_offset(&Self::SHAPES, &lens, $idx)),
                            $field,
                        )
                    };
                )+
                Ok(Self { lines, lens })
            }

            $(
                $(#[$fmeta])*
                #[inline(always)]
                #[allow(dead_code)]
                $vis fn $field(&self) -> &[$item] {
                    let at = $crate::arena::packed_offset(&Self::SHAPES, &self.lens, $idx);
                    // SAFETY: `new` wrote `lens[$idx]` items of this very type (the one declared
                    // at this index) from this offset, aligned for it, and nothing writes the
                    // block afterwards (it is reachable through `&self` only). An empty block
                    // has all lengths 0 and a dangling pointer aligned to a line.
                    unsafe {
                        std::slice::from_raw_parts(
                            self.lines.as_ptr().cast::<u8>().add(at).cast::<$item>(),
                            usize::from(self.lens[$idx]),
                        )
                    }
                }
            )+

            /// Every array as one span of bytes, for prefetching.
            #[inline(always)]
            #[allow(dead_code)]
            $vis fn bytes(&self) -> (*const u8, usize) {
                (
                    self.lines.as_ptr().cast(),
                    $crate::arena::packed_end(&Self::SHAPES, &self.lens),
                )
            }
        }

        impl Clone for $name {
            fn clone(&self) -> Self {
                // The same lengths fitted a chunk before, so they fit again.
                Self::new($(self.$field()),+).unwrap_or_else(|_| Self::empty())
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    $(.field(stringify!($field), &self.$field()))+
                    .finish()
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                true $(&& self.$field() == other.$field())+
            }
        }

        impl Eq for $name {}
    };
}
pub(crate) use packed_arrays;

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

/// A growable vector in huge pages, for the state a packet path indexes at random by slot (the
/// service stage's per-SAP, per-filter and per-policer state): its room is a [`HugeSlice`],
/// replaced by one twice as large when it runs out, so a random slot costs a cache miss but
/// seldom a page walk. Positions past the length hold `T::default()` until they are reached,
/// which is what lets it grow without `unsafe`: items move to the new room by
/// [`std::mem::take`].
pub struct HugeVec<T> {
    room: HugeSlice<T>,
    len: usize,
}

impl<T: Default> HugeVec<T> {
    /// An empty vector (no room yet).
    pub fn new() -> Self {
        Self {
            room: HugeSlice::from_fn(0, |_| T::default()),
            len: 0,
        }
    }

    /// Lengthens the vector to `len` with `T::default()` items (a shorter `len` changes
    /// nothing). When the room is too small it is replaced by one of at least twice the size,
    /// so that growing by small steps stays linear.
    pub fn grow_to(&mut self, len: usize) {
        if len <= self.len {
            return;
        }
        if len > self.room.len() {
            let room = len.max(2 * self.room.len());
            let mut old =
                std::mem::replace(&mut self.room, HugeSlice::from_fn(0, |_| T::default()));
            self.room = HugeSlice::from_fn(room, |i| {
                old.get_mut(i).map(std::mem::take).unwrap_or_default()
            });
        }
        self.len = len;
    }
}

impl<T: Default> Default for HugeVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::ops::Deref for HugeVec<T> {
    type Target = [T];

    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: the first `len` items of the room, which holds at least `len` (`grow_to`
        // makes room before it lengthens), all written (`HugeSlice::from_fn` writes every
        // item). No bounds check: every access by slot goes through here.
        unsafe { std::slice::from_raw_parts(self.room.ptr.as_ptr(), self.len) }
    }
}

impl<T> std::ops::DerefMut for HugeVec<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as for `deref`, and `&mut self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.room.ptr.as_ptr(), self.len) }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for HugeVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The untyped lines [`SharedArray`]s are carved from: an arena of their own, so that the
/// large arrays do not interleave with the classifier's small blocks in [`Line`]'s.
#[repr(C, align(64))]
pub struct SharedLine([std::mem::MaybeUninit<u8>; LINE]);

impl ArenaItem for SharedLine {
    fn arena() -> &'static Arena<Self> {
        static ARENA: Arena<SharedLine> = Arena::new();
        &ARENA
    }
}

/// The first line of a [`SharedArray`]'s block: its reference count (the items follow, a
/// line in, so that the count's writes never touch an item's line).
#[repr(C, align(64))]
struct SharedHeader {
    count: std::sync::atomic::AtomicUsize,
}

/// `N` items of `T` in huge pages, shared by reference counting and copied on write: what
/// `Arc<[T; N]>` does, in a block of [`SharedLine`]s instead of the heap's 4 KiB pages. The
/// chunks of the service snapshot's slot vectors and SAP index are these: a packet reads one
/// item of each at random, and with 100 000 SAPs the heap's pages cost a page walk per read.
pub struct SharedArray<T, const N: usize> {
    /// The block's first line (the header; the items start a line further).
    header: NonNull<SharedHeader>,
    items: PhantomData<T>,
}

// SAFETY: as `Arc<[T; N]>`: the items are shared between clones (hence `Sync` for `Send`) and
// dropped by whichever clone goes last (hence `Send` for both), the count is atomic.
unsafe impl<T: Send + Sync, const N: usize> Send for SharedArray<T, N> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync, const N: usize> Sync for SharedArray<T, N> {}

impl<T, const N: usize> SharedArray<T, N> {
    /// Lines of the block: the header, then the items.
    const LINES: usize = 1 + (N * std::mem::size_of::<T>()).div_ceil(LINE);

    /// The items fit a chunk, at a line's alignment.
    const FITS: () =
        assert!(std::mem::align_of::<T>() <= LINE && Self::LINES <= Arena::<SharedLine>::max_len());

    /// An array whose item `i` is `make(i)`, written in place (a chunk of a slot vector is
    /// larger than a stack frame should hold).
    pub fn from_fn(mut make: impl FnMut(usize) -> T) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::FITS;
        // `FITS` holds, so the arena cannot refuse the length; it allocates (or aborts on
        // out-of-memory, as the heap does) for anything else.
        let Ok(at) = SharedLine::arena().reserve(Self::LINES) else {
            std::alloc::handle_alloc_error(std::alloc::Layout::new::<SharedHeader>());
        };
        let header = std::ptr::with_exposed_provenance_mut::<SharedHeader>(at);
        // SAFETY: `reserve` gave `LINES` lines at `at`, line-aligned, that no block covers and
        // nobody reads: the header goes in the first.
        unsafe {
            header.write(SharedHeader {
                count: std::sync::atomic::AtomicUsize::new(1),
            })
        };
        let first = std::ptr::with_exposed_provenance_mut::<T>(at + LINE);
        for i in 0..N {
            // SAFETY: item `i` of the `N` that the lines after the header hold (`LINES` counts
            // them), aligned (`FITS`: at most a line's alignment, and the items start on a
            // line), not yet written. A panic in `make` leaks the block, which is safe.
            unsafe { first.add(i).write(make(i)) };
        }
        Self {
            // SAFETY: `at` is a chunk address, never null.
            header: unsafe { NonNull::new_unchecked(header) },
            items: PhantomData,
        }
    }

    fn count(&self) -> &std::sync::atomic::AtomicUsize {
        // SAFETY: the header was written in `from_fn` and lives while any clone does (this one).
        unsafe { &self.header.as_ref().count }
    }

    fn first(&self) -> *mut T {
        self.header
            .as_ptr()
            .cast::<u8>()
            .wrapping_add(LINE)
            .cast::<T>()
    }

    /// True when `self` and `other` are clones of one array (no copy was made between them).
    pub fn ptr_eq(&self, other: &Self) -> bool {
        self.header == other.header
    }

    /// The items for writing: copied first into an array of this handle's own when another
    /// clone shares them (as `Arc::make_mut`).
    pub fn make_mut(&mut self) -> &mut [T; N]
    where
        T: Clone,
    {
        // Acquire: the other clones' reads of the items happen before this one's writes.
        if self.count().load(std::sync::atomic::Ordering::Acquire) != 1 {
            let copy = Self::from_fn(|i| self[i].clone());
            *self = copy;
        }
        // SAFETY: this handle is the only one (the count is 1, and `&mut self` keeps it from
        // being cloned meanwhile), so nothing else reads the items; `N` of them were written.
        unsafe { &mut *self.first().cast::<[T; N]>() }
    }
}

impl<T, const N: usize> std::ops::Deref for SharedArray<T, N> {
    type Target = [T; N];

    #[inline(always)]
    fn deref(&self) -> &[T; N] {
        // SAFETY: `N` items written in `from_fn`, alive while any clone is (this one), and
        // written only through `make_mut`, which requires this handle to be the only one.
        unsafe { &*self.first().cast::<[T; N]>() }
    }
}

impl<T, const N: usize> Clone for SharedArray<T, N> {
    fn clone(&self) -> Self {
        // Relaxed, as `Arc`: a new clone is made from an existing one, which keeps it alive.
        self.count()
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self {
            header: self.header,
            items: PhantomData,
        }
    }
}

impl<T, const N: usize> Drop for SharedArray<T, N> {
    fn drop(&mut self) {
        // Release, then Acquire before the items are dropped (as `Arc`): every other clone's
        // use of them happens before their drop.
        if self
            .count()
            .fetch_sub(1, std::sync::atomic::Ordering::Release)
            != 1
        {
            return;
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        // SAFETY: the last clone: nothing else can read the items; they were written in
        // `from_fn` and are dropped once, here, before their room goes back to the arena.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(self.first(), N));
        }
        SharedLine::arena().release(self.header.as_ptr().addr(), Self::LINES);
    }
}

impl<T: std::fmt::Debug, const N: usize> std::fmt::Debug for SharedArray<T, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
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

    /// A 64-byte line-aligned item, as the classifier's summaries.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(align(64))]
    struct Head([u32; 3]);

    packed_arrays! {
        /// Three arrays of different alignments in one block.
        struct Three {
            0 heads: Head,
            1 wide: Wide,
            2 small: Small,
        }
    }

    #[test]
    fn arrays_longer_than_a_u16_counts_are_refused() {
        let small = vec![Small(0, 0, 0); usize::from(u16::MAX) + 1];
        assert_eq!(
            Three::new(&[], &[], &small).err(),
            Some(ArenaError::TooLong {
                len: small.len(),
                max: usize::from(u16::MAX)
            })
        );
        assert!(Three::new(&[], &[], &[]).unwrap().bytes().1 == 0);
    }

    #[test]
    fn a_huge_vec_grows_with_defaults_and_keeps_its_items() {
        let mut v: HugeVec<u64> = HugeVec::new();
        assert!(v.is_empty());
        v.grow_to(3);
        v[1] = 7;
        v.grow_to(2);
        assert_eq!(&v[..], &[0, 7, 0]);
        let big = CHUNK_BYTES / 8 + 1;
        v.grow_to(big);
        assert_eq!(v.len(), big);
        assert_eq!((v[1], v[big - 1]), (7, 0));
        assert_eq!(
            v.as_ptr() as usize % CHUNK_BYTES,
            0,
            "2 MiB and more: huge-page aligned"
        );
        v[big - 1] = 9;
        v.grow_to(big + 1);
        assert_eq!((v[1], v[big - 1], v[big]), (7, 9, 0));
    }

    proptest! {
        /// `SharedArray` behaves as `Arc<[T; N]>` with `Arc::make_mut` over any sequence of
        /// clones, writes and drops: the same contents, the same sharing, and every item
        /// dropped exactly once.
        #[test]
        fn shared_arrays_behave_as_arcs(
            ops in proptest::collection::vec((0u8..3, 0usize..8, 0usize..4, any::<u64>()), 1..120),
        ) {
            let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
            let drops = DROPS.load(Ordering::Relaxed);
            let mut made = 0usize;
            {
                let mut live: Vec<(SharedArray<Item, 4>, std::sync::Arc<[u64; 4]>)> = Vec::new();
                for (op, pick, at, value) in ops {
                    match (op, live.is_empty()) {
                        (_, true) | (0, _) => {
                            live.push((
                                SharedArray::from_fn(|i| item(value ^ i as u64)),
                                std::sync::Arc::new(std::array::from_fn(|i| value ^ i as u64)),
                            ));
                            made += 4;
                        }
                        (1, false) => {
                            let (a, r) = &live[pick % live.len()];
                            let copy = (a.clone(), r.clone());
                            live.push(copy);
                        }
                        _ => {
                            let n = pick % live.len();
                            if value % 3 == 0 {
                                live.swap_remove(n);
                            } else {
                                let (a, r) = &mut live[n];
                                if std::sync::Arc::strong_count(r) > 1 {
                                    made += 4;
                                }
                                a.make_mut()[at].value = value;
                                std::sync::Arc::make_mut(r)[at] = value;
                            }
                        }
                    }
                    for (a, r) in &live {
                        let values: Vec<u64> = a.iter().map(|i| i.value).collect();
                        prop_assert_eq!(&values[..], &r[..]);
                        prop_assert_eq!(a.as_ptr() as usize % LINE, 0);
                    }
                    for (a, r) in &live {
                        for (b, q) in &live {
                            prop_assert_eq!(a.ptr_eq(b), std::sync::Arc::ptr_eq(r, q));
                        }
                    }
                }
            }
            prop_assert_eq!(DROPS.load(Ordering::Relaxed) - drops, made);
        }

        /// A packed block's arrays read back as written, from a line-aligned block in which
        /// each array starts right after the previous one (at its alignment), and survive
        /// other blocks coming and going.
        #[test]
        fn packed_arrays_lie_back_to_back(
            sets in proptest::collection::vec(
                (0usize..3, 0usize..12, 0usize..12, any::<u8>()),
                1..40,
            ),
        ) {
            let make = |&(h, a, b, tag): &(usize, usize, usize, u8)| {
                let heads: Vec<Head> = (0..h).map(|i| Head([u32::from(tag), i as u32, 7])).collect();
                let wide: Vec<Wide> = (0..a).map(|i| Wide([tag ^ i as u8; 20])).collect();
                let small: Vec<Small> =
                    (0..b).map(|i| Small(u32::from(tag), i as u32, !(i as u32))).collect();
                (heads, wide, small)
            };
            let mut live = Vec::new();
            for (n, set) in sets.iter().enumerate() {
                let (heads, wide, small) = make(set);
                let block = Three::new(&heads, &wide, &small).unwrap();
                prop_assert_eq!(block.heads(), &heads[..]);
                prop_assert_eq!(block.wide(), &wide[..]);
                prop_assert_eq!(block.small(), &small[..]);
                let end = 64 * heads.len() + 32 * wide.len() + 12 * small.len();
                if end > 0 {
                    let base = block.heads().as_ptr() as usize;
                    prop_assert_eq!(base % LINE, 0);
                    prop_assert_eq!(block.wide().as_ptr() as usize - base, 64 * heads.len());
                    prop_assert_eq!(
                        block.small().as_ptr() as usize - base,
                        64 * heads.len() + 32 * wide.len()
                    );
                    prop_assert_eq!(block.bytes(), (base as *const u8, end));
                }
                prop_assert_eq!(&block.clone(), &block);
                live.push((block, n));
                if n % 3 == 2 {
                    live.swap_remove(n % live.len());
                }
            }
            for (block, n) in &live {
                let (heads, wide, small) = make(&sets[*n]);
                prop_assert_eq!(block.heads(), &heads[..]);
                prop_assert_eq!(block.wide(), &wide[..]);
                prop_assert_eq!(block.small(), &small[..]);
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
