//! Entry records, packed into size-class pages.
//!
//! An entry of up to [`INLINE_MAX`] bytes of header + key + value is one *record* in a page of
//! its size class (strides of 8 bytes, 24 to 512): a 24-byte header (`expires_at: u64`,
//! `version_ts: u64`, `node_id: u32`, `key_len: u16`, `value_len: u16`, little-endian) followed
//! by the key and the value. Expiry, key and value therefore share one or two adjacent cache
//! lines, and there is no per-entry allocation (no allocator header, no pointer). Larger
//! entries ("big") keep a 40-byte slot with their own `key ++ value` allocation.
//!
//! Records are addressed by a 32-bit [`Handle`]: `page << 12 | slot` (4096 slots a page), or
//! `1 << 31 | index` for a big entry. Reaching a record is one load from the page table and a
//! multiplication by the page's stride. Each class is dense: removing a record moves the
//! class's last record into the hole (the caller re-points that record's index bucket), so
//! there are no free slots and no fragmentation; a page is released when it empties.

use crate::event::Version;
use crate::prefetch::prefetch;
use crate::Millis;

/// Bytes of a record's header.
pub(crate) const HEADER: usize = 24;
/// Largest record stored inline; larger entries are big.
pub(crate) const INLINE_MAX: usize = 512;
/// Inline strides are multiples of this.
pub(crate) const GRANULE: usize = 8;
/// Inline size classes: strides 24, 32, …, 512.
const CLASSES: usize = (INLINE_MAX - HEADER) / GRANULE + 1;
/// What [`Store::target`] answers for a big entry.
const BIG: u32 = CLASSES as u32;
/// Handle bit of a big entry.
const BIG_BIT: u32 = 1 << 31;
const SLOT_BITS: u32 = 12;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;
/// Records a page holds.
const PAGE_SLOTS: usize = 1 << SLOT_BITS;
/// Pages a cache can have (page numbers fit in the handle below the big bit); when they are
/// all in use, new entries go to the big class.
const MAX_PAGES: usize = 1 << (31 - SLOT_BITS);
/// Big entries a cache can have.
const MAX_BIG: usize = BIG_BIT as usize;
/// Slots a new page starts with (pages grow by doubling up to `PAGE_SLOTS`).
const FIRST_PAGE_SLOTS: usize = 4;

/// Allocator bytes beyond the request for a big entry's `key ++ value` box: glibc's 8-byte
/// chunk header plus rounding to 16 bytes.
pub(crate) const BIG_ALLOC_OVERHEAD: usize = 24;

/// Where a record lives: `page << 12 | slot`, or `1 << 31 | index` for a big entry.
pub(crate) type Handle = u32;

#[inline(always)]
fn handle(page: usize, slot: usize) -> Handle {
    (page << SLOT_BITS | slot) as u32
}

/// The inline class of an entry of `entry_len` bytes of key plus value, if it is not big.
fn inline_class(entry_len: usize) -> Option<u32> {
    (entry_len <= INLINE_MAX - HEADER)
        .then(|| ((HEADER + entry_len).div_ceil(GRANULE) - HEADER / GRANULE) as u32)
}

fn stride(class: u32) -> usize {
    (class as usize + HEADER / GRANULE) * GRANULE
}

/// Where a value is: a byte range of its page (or of its big entry's allocation).
#[derive(Clone, Copy)]
pub(crate) struct ValueAt {
    start: usize,
    end: usize,
}

/// A record, read.
#[derive(Clone, Copy)]
pub(crate) struct Rec<'a> {
    pub(crate) expires_at: Millis,
    pub(crate) version: Version,
    pub(crate) key: &'a [u8],
    pub(crate) value: &'a [u8],
}

#[inline(always)]
fn u64_at(s: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&s[at..at + 8]);
    u64::from_le_bytes(b)
}

#[inline(always)]
fn read(s: &[u8]) -> Rec<'_> {
    let key_len = usize::from(u16::from_le_bytes([s[20], s[21]]));
    let value_len = usize::from(u16::from_le_bytes([s[22], s[23]]));
    let (key, rest) = s[HEADER..].split_at(key_len);
    Rec {
        expires_at: u64_at(s, 0),
        version: Version {
            timestamp: u64_at(s, 8),
            node_id: u32::from_le_bytes([s[16], s[17], s[18], s[19]]),
        },
        key,
        value: &rest[..value_len],
    }
}

fn write_header(s: &mut [u8], expires_at: Millis, version: Version) {
    s[0..8].copy_from_slice(&expires_at.to_le_bytes());
    s[8..16].copy_from_slice(&version.timestamp.to_le_bytes());
    s[16..20].copy_from_slice(&version.node_id.to_le_bytes());
}

fn write(s: &mut [u8], key: &[u8], value: &[u8], expires_at: Millis, version: Version) {
    write_header(s, expires_at, version);
    // Inline entries are at most INLINE_MAX - HEADER bytes: both lengths fit in u16.
    s[20..22].copy_from_slice(&(key.len() as u16).to_le_bytes());
    s[22..24].copy_from_slice(&(value.len() as u16).to_le_bytes());
    let (k, rest) = s[HEADER..].split_at_mut(key.len());
    k.copy_from_slice(key);
    rest[..value.len()].copy_from_slice(value);
}

/// A page: up to `PAGE_SLOTS` records of one class, dense from slot 0; it grows by doubling.
struct Page {
    stride: usize,
    data: Vec<u8>,
    class: u32,
}

/// One inline class: its pages in order (all full but the last) and its record count.
#[derive(Default)]
struct Class {
    pages: Vec<u32>,
    len: usize,
}

/// A big entry: more than `INLINE_MAX - HEADER` bytes of key plus value (or no page was
/// left).
struct BigSlot {
    data: Box<[u8]>,
    expires_at: Millis,
    version_ts: Millis,
    node_id: u32,
    key_len: u32,
}

/// Bytes of one big slot.
pub(crate) const BIG_SLOT: usize = std::mem::size_of::<BigSlot>();

/// Every record of one cache.
pub(crate) struct Store {
    pages: Vec<Page>,
    /// Released page numbers, for reuse.
    free_pages: Vec<u32>,
    classes: Vec<Class>,
    big: Vec<BigSlot>,
}

impl Store {
    pub(crate) fn new() -> Self {
        Store {
            pages: Vec::new(),
            free_pages: Vec::new(),
            classes: (0..CLASSES).map(|_| Class::default()).collect(),
            big: Vec::new(),
        }
    }

    /// Whether `h` is a big entry.
    #[inline(always)]
    pub(crate) fn is_big(h: Handle) -> bool {
        h & BIG_BIT != 0
    }

    /// Whether `class` (from [`Store::target`]) is the big class.
    pub(crate) fn class_is_big(class: u32) -> bool {
        class == BIG
    }

    /// The bytes of inline record `h`.
    #[inline(always)]
    fn slot(&self, h: Handle) -> &[u8] {
        let page = &self.pages[(h >> SLOT_BITS) as usize];
        let off = (h & SLOT_MASK) as usize * page.stride;
        &page.data[off..off + page.stride]
    }

    fn slot_mut(&mut self, h: Handle) -> &mut [u8] {
        let page = &mut self.pages[(h >> SLOT_BITS) as usize];
        let off = (h & SLOT_MASK) as usize * page.stride;
        &mut page.data[off..off + page.stride]
    }

    /// The record of a valid handle.
    pub(crate) fn get(&self, h: Handle) -> Rec<'_> {
        if Self::is_big(h) {
            let b = &self.big[(h & !BIG_BIT) as usize];
            let (key, value) = b.data.split_at(b.key_len as usize);
            Rec {
                expires_at: b.expires_at,
                version: Version {
                    timestamp: b.version_ts,
                    node_id: b.node_id,
                },
                key,
                value,
            }
        } else {
            read(self.slot(h))
        }
    }

    /// The lookup fast path: if `h`'s key is `key`, its expiry and where its value is (for
    /// [`Store::value_at`]). Reads the header and the key only.
    #[inline(always)]
    pub(crate) fn expiry_if_key(&self, h: Handle, key: &[u8]) -> Option<(Millis, ValueAt)> {
        if Self::is_big(h) {
            return self.big_expiry_if_key(h, key);
        }
        let page = &self.pages[(h >> SLOT_BITS) as usize];
        let off = (h & SLOT_MASK) as usize * page.stride;
        let slot = &page.data[off..off + page.stride];
        // The key is read only once its length is known: if the record runs into a second
        // cache line, start loading that line now rather than after the first one arrives
        // (unconditionally: a branch on the record's alignment would mispredict).
        prefetch(slot.as_ptr().wrapping_add(slot.len() - 1));
        let (header, rest) = slot.split_first_chunk::<HEADER>()?;
        let key_len = usize::from(u16::from_le_bytes([header[20], header[21]]));
        let value_len = usize::from(u16::from_le_bytes([header[22], header[23]]));
        let (expiry, _) = header.split_first_chunk::<8>()?;
        let start = off + HEADER + key_len;
        eq(rest.get(..key_len)?, key).then(|| {
            (
                u64::from_le_bytes(*expiry),
                ValueAt {
                    start,
                    end: start + value_len,
                },
            )
        })
    }

    #[inline(never)]
    fn big_expiry_if_key(&self, h: Handle, key: &[u8]) -> Option<(Millis, ValueAt)> {
        let b = &self.big[(h & !BIG_BIT) as usize];
        let key_len = b.key_len as usize;
        (b.data.get(..key_len)? == key).then_some((
            b.expires_at,
            ValueAt {
                start: key_len,
                end: b.data.len(),
            },
        ))
    }

    /// The value [`Store::expiry_if_key`] located (no record changed since).
    #[inline(always)]
    pub(crate) fn value_at(&self, h: Handle, at: ValueAt) -> &[u8] {
        let data = if Self::is_big(h) {
            &self.big[(h & !BIG_BIT) as usize].data[..]
        } else {
            &self.pages[(h >> SLOT_BITS) as usize].data[..]
        };
        &data[at.start..at.end]
    }

    /// The value of a valid handle.
    #[inline(always)]
    pub(crate) fn value(&self, h: Handle) -> &[u8] {
        if Self::is_big(h) {
            let b = &self.big[(h & !BIG_BIT) as usize];
            return &b.data[b.key_len as usize..];
        }
        let (header, rest) = self
            .slot(h)
            .split_first_chunk::<HEADER>()
            .expect("a record has a header");
        let key_len = usize::from(u16::from_le_bytes([header[20], header[21]]));
        let value_len = usize::from(u16::from_le_bytes([header[22], header[23]]));
        &rest[key_len..key_len + value_len]
    }

    /// The record of `h`, or `None` if no record has that handle (any more).
    pub(crate) fn try_get(&self, h: Handle) -> Option<Rec<'_>> {
        let present = if Self::is_big(h) {
            ((h & !BIG_BIT) as usize) < self.big.len()
        } else {
            self.pages
                .get((h >> SLOT_BITS) as usize)
                .is_some_and(|p| ((h & SLOT_MASK) as usize + 1) * p.stride <= p.data.len())
        };
        present.then(|| self.get(h))
    }

    /// Starts loading the cache lines of `h`'s record.
    #[inline(always)]
    pub(crate) fn prefetch(&self, h: Handle) {
        if Self::is_big(h) {
            prefetch(self.big[(h & !BIG_BIT) as usize..].as_ptr().cast());
        } else {
            let page = &self.pages[(h >> SLOT_BITS) as usize];
            let p = page
                .data
                .as_ptr()
                .wrapping_add((h & SLOT_MASK) as usize * page.stride);
            prefetch(p);
            prefetch(p.wrapping_add(page.stride - 1));
        }
    }

    /// The class a new entry of `entry_len` bytes goes to: its size class, or `BIG` if it is
    /// big or no page is left; `None` if even the big class is full.
    pub(crate) fn target(&self, entry_len: usize) -> Option<u32> {
        match inline_class(entry_len) {
            Some(c) if self.class_has_room(c) => Some(c),
            _ if self.big.len() < MAX_BIG => Some(BIG),
            _ => None,
        }
    }

    fn class_has_room(&self, c: u32) -> bool {
        self.classes[c as usize].len & (PAGE_SLOTS - 1) != 0
            || !self.free_pages.is_empty()
            || self.pages.len() < MAX_PAGES
    }

    /// Whether re-saving `h` with `entry_len` bytes keeps it where it is: its class is the one
    /// the new size belongs to (or both are big).
    pub(crate) fn fits_in_place(&self, h: Handle, entry_len: usize) -> bool {
        match inline_class(entry_len) {
            Some(want) => !Self::is_big(h) && self.pages[(h >> SLOT_BITS) as usize].class == want,
            None => Self::is_big(h),
        }
    }

    /// Stores a new record in `class` (from [`Store::target`]).
    pub(crate) fn insert(
        &mut self,
        class: u32,
        key: &[u8],
        value: &[u8],
        expires_at: Millis,
        version: Version,
    ) -> Handle {
        if class == BIG {
            self.big.push(BigSlot {
                data: concat(key, value),
                expires_at,
                version_ts: version.timestamp,
                node_id: version.node_id,
                key_len: key.len() as u32,
            });
            return (self.big.len() - 1) as u32 | BIG_BIT;
        }
        let h = self.push(class);
        write(self.slot_mut(h), key, value, expires_at, version);
        h
    }

    /// Appends a zeroed record to `class`; returns its handle.
    fn push(&mut self, class: u32) -> Handle {
        let stride = stride(class);
        let slot = self.classes[class as usize].len % PAGE_SLOTS;
        if slot == 0 {
            let page = Page {
                stride,
                data: Vec::new(),
                class,
            };
            let id = match self.free_pages.pop() {
                Some(id) => {
                    self.pages[id as usize] = page;
                    id
                }
                None => {
                    self.pages.push(page);
                    (self.pages.len() - 1) as u32
                }
            };
            self.classes[class as usize].pages.push(id);
        }
        let cl = &mut self.classes[class as usize];
        let id = *cl.pages.last().expect("the class has a page") as usize;
        cl.len += 1;
        let data = &mut self.pages[id].data;
        if data.len() + stride > data.capacity() {
            let want = (data.capacity() * 2).clamp(FIRST_PAGE_SLOTS * stride, PAGE_SLOTS * stride);
            data.reserve_exact(want - data.len());
        }
        data.resize(data.len() + stride, 0);
        handle(id, slot)
    }

    /// Replaces `h`'s value, expiry and version in place ([`Store::fits_in_place`] holds).
    pub(crate) fn overwrite(
        &mut self,
        h: Handle,
        key: &[u8],
        value: &[u8],
        expires_at: Millis,
        version: Version,
    ) {
        if Self::is_big(h) {
            let b = &mut self.big[(h & !BIG_BIT) as usize];
            if b.data.len() == key.len() + value.len() {
                b.data[key.len()..].copy_from_slice(value);
            } else {
                b.data = concat(key, value);
            }
            b.expires_at = expires_at;
            b.version_ts = version.timestamp;
            b.node_id = version.node_id;
        } else {
            write(self.slot_mut(h), key, value, expires_at, version);
        }
    }

    /// Sets `h`'s expiry and version.
    pub(crate) fn set_expiry(&mut self, h: Handle, expires_at: Millis, version: Version) {
        if Self::is_big(h) {
            let b = &mut self.big[(h & !BIG_BIT) as usize];
            b.expires_at = expires_at;
            b.version_ts = version.timestamp;
            b.node_id = version.node_id;
        } else {
            write_header(self.slot_mut(h), expires_at, version);
        }
    }

    /// Removes `h`'s record. If another record moved into its place (its class's last one),
    /// returns the handle that record had: it now lives at `h`.
    pub(crate) fn remove(&mut self, h: Handle) -> Option<Handle> {
        if Self::is_big(h) {
            let i = (h & !BIG_BIT) as usize;
            self.big.swap_remove(i);
            return (i < self.big.len()).then_some(self.big.len() as u32 | BIG_BIT);
        }
        let (id, slot) = ((h >> SLOT_BITS) as usize, (h & SLOT_MASK) as usize);
        let class = self.pages[id].class as usize;
        let cl = &mut self.classes[class];
        cl.len -= 1;
        let last = cl.len;
        let last_id = cl.pages[last / PAGE_SLOTS] as usize;
        let last_slot = last % PAGE_SLOTS;
        let stride = self.pages[id].stride;
        let (dst, src) = (slot * stride, last_slot * stride);
        let moved = (id, slot) != (last_id, last_slot);
        if moved {
            if id == last_id {
                self.pages[id].data.copy_within(src..src + stride, dst);
            } else {
                let (to, from) = if id < last_id {
                    let (low, high) = self.pages.split_at_mut(last_id);
                    (&mut low[id], &high[0])
                } else {
                    let (low, high) = self.pages.split_at_mut(id);
                    (&mut high[0], &low[last_id])
                };
                to.data[dst..dst + stride].copy_from_slice(&from.data[src..src + stride]);
            }
        }
        let data = &mut self.pages[last_id].data;
        data.truncate(src);
        if data.is_empty() {
            *data = Vec::new();
            cl.pages.pop();
            self.free_pages.push(last_id as u32);
        }
        moved.then(|| handle(last_id, last_slot))
    }

    /// Every record's handle.
    pub(crate) fn handles(&self) -> impl Iterator<Item = Handle> + '_ {
        let inline = self.classes.iter().flat_map(|cl| {
            (0..cl.len).map(move |i| handle(cl.pages[i / PAGE_SLOTS] as usize, i % PAGE_SLOTS))
        });
        inline.chain((0..self.big.len()).map(|i| i as u32 | BIG_BIT))
    }

    /// Capacity of all pages (for tests).
    #[cfg(test)]
    fn page_bytes(&self) -> usize {
        self.pages.iter().map(|p| p.data.capacity()).sum()
    }
}

/// `a == b`, inline: keys are short (user names, MAC addresses), so comparing eight bytes at
/// a time (the last word overlapping) beats a call to `memcmp`.
#[inline(always)]
fn eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let (Some(a0), Some(b0), Some(a1), Some(b1)) = (
        a.first_chunk::<8>(),
        b.first_chunk::<8>(),
        a.last_chunk::<8>(),
        b.last_chunk::<8>(),
    ) else {
        return a == b;
    };
    let word = |w: &[u8; 8]| u64::from_ne_bytes(*w);
    let mut diff = (word(a0) ^ word(b0)) | (word(a1) ^ word(b1));
    // Keys over 16 bytes: the words in between (the last one may overlap the tail word).
    let mut i = 8;
    while i + 8 < n {
        if let (Some(x), Some(y)) = (a[i..].first_chunk::<8>(), b[i..].first_chunk::<8>()) {
            diff |= word(x) ^ word(y);
        }
        i += 8;
    }
    diff == 0
}

fn concat(key: &[u8], value: &[u8]) -> Box<[u8]> {
    let mut data = Vec::with_capacity(key.len() + value.len());
    data.extend_from_slice(key);
    data.extend_from_slice(value);
    data.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: Version = Version {
        timestamp: 5,
        node_id: 2,
    };

    #[test]
    fn classes_cover_every_inline_size_with_less_than_a_granule_of_rounding() {
        for len in 0..=INLINE_MAX - HEADER {
            let c = inline_class(len).unwrap();
            let s = stride(c);
            assert!(s >= HEADER + len && s < HEADER + len + GRANULE, "{len}");
            assert!((c as usize) < CLASSES);
        }
        assert_eq!(inline_class(INLINE_MAX - HEADER + 1), None);
        assert_eq!(stride(CLASSES as u32 - 1), INLINE_MAX);
    }

    #[test]
    fn records_round_trip_and_removal_keeps_classes_dense() {
        let mut s = Store::new();
        let mut live: Vec<(Handle, Vec<u8>, Vec<u8>)> = Vec::new();
        for i in 0..3000u32 {
            let key = i.to_be_bytes().to_vec();
            let value = vec![i as u8; (i as usize * 7) % 700];
            let class = s.target(key.len() + value.len()).unwrap();
            let h = s.insert(class, &key, &value, u64::from(i), V);
            live.push((h, key, value));
        }
        for (h, k, v) in &live {
            let r = s.get(*h);
            assert_eq!((r.key, r.value, r.version), (&k[..], &v[..], V));
        }
        // Remove every other entry, following moves as the cache does.
        let mut n = 0;
        while n < live.len() {
            let (h, _, _) = live.swap_remove(n);
            if let Some(from) = s.remove(h) {
                let moved = live.iter_mut().find(|(x, _, _)| *x == from).unwrap();
                moved.0 = h;
            }
            n += 1;
        }
        assert_eq!(s.handles().count(), live.len());
        for (h, k, v) in &live {
            let r = s.get(*h);
            assert_eq!((r.key, r.value), (&k[..], &v[..]));
            assert_eq!(
                r.expires_at,
                u64::from(u32::from_be_bytes(k[..].try_into().unwrap()))
            );
        }
        loop {
            let first = s.handles().next();
            let Some(h) = first else { break };
            s.remove(h);
        }
        assert_eq!(s.page_bytes(), 0, "empty pages are released");
        assert!(s.try_get(handle(0, 0)).is_none());
    }
}
