//! Subscriber lookup by address: longest-prefix match over the prefixes subscribers own.
//!
//! One open-addressing hash table per prefix length present, probed longest first (tuple-space
//! search). Subscribers own a handful of lengths (IPv4 hosts /32, IPv6 /128 and delegated /56
//! or /64, an occasional framed route), so a lookup is one to three probes, whatever the number
//! of subscribers; each probe is one cache line that the stage can prefetch a batch ahead.
//! A DIR-24-8 table would answer any IPv4 lookup in one or two loads, but costs 64 MB before
//! the first subscriber; here memory follows the subscribers (16 bytes per IPv4 and 32 per
//! IPv6 prefix at ≤ 50 % load).
//!
//! Tables use linear probing with backward-shift deletion (no tombstones), so lookups stay
//! short however many subscribers come and go.

use crate::acl::{mask128, mask32, Prefix};
use crate::arena::HugeSlice;
use std::net::IpAddr;

/// An address as the tables hash it.
pub(crate) trait Key: Copy + Eq + Default {
    /// Address bits.
    const BITS: u8;
    /// The address with the bits beyond `len` cleared.
    fn masked(self, len: u8) -> Self;
    /// 64 well-mixed bits.
    fn hash(self) -> u64;
}

impl Key for u32 {
    const BITS: u8 = 32;
    #[inline(always)]
    fn masked(self, len: u8) -> Self {
        self & mask32(len)
    }
    #[inline(always)]
    fn hash(self) -> u64 {
        // Fibonacci hashing: the multiply spreads every address bit into the high bits the
        // table index is taken from.
        u64::from(self).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

impl Key for u128 {
    const BITS: u8 = 128;
    #[inline(always)]
    fn masked(self, len: u8) -> Self {
        self & mask128(len)
    }
    #[inline(always)]
    fn hash(self) -> u64 {
        let folded = (self as u64) ^ ((self >> 64) as u64).rotate_left(29);
        folded.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// No value: the slot is free.
const FREE: u32 = u32::MAX;

#[derive(Clone, Copy, Default)]
struct Slot<K> {
    key: K,
    value: u32,
}

/// The prefixes of one length.
struct Table<K> {
    /// In huge pages once 2 MiB or more: a random probe per packet in 4 KiB pages costs a
    /// page walk beside its cache miss.
    slots: HugeSlice<Slot<K>>,
    /// log2 of the slot count, for taking the index from the hash's high bits.
    bits: u32,
    len: usize,
}

impl<K: Key> Table<K> {
    fn with_bits(bits: u32) -> Self {
        Self {
            slots: HugeSlice::from_fn(1 << bits, |_| Slot {
                key: K::default(),
                value: FREE,
            }),
            bits,
            len: 0,
        }
    }

    #[inline(always)]
    fn home(&self, key: K) -> usize {
        (key.hash() >> (64 - self.bits)) as usize
    }

    #[inline(always)]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    #[inline]
    fn get(&self, key: K) -> Option<u32> {
        let mut i = self.home(key);
        loop {
            let slot = self.slots.get(i)?;
            if slot.value == FREE {
                return None;
            }
            if slot.key == key {
                return Some(slot.value);
            }
            i = (i + 1) & self.mask();
        }
    }

    #[inline]
    fn prefetch(&self, key: K) {
        if let Some(slot) = self.slots.get(self.home(key)) {
            crate::fdb::prefetch_read(slot);
        }
    }

    /// Inserts or replaces; returns the value replaced.
    fn insert(&mut self, key: K, value: u32) -> Option<u32> {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.mask();
        let mut i = self.home(key);
        loop {
            let slot = &mut self.slots[i];
            if slot.value == FREE {
                *slot = Slot { key, value };
                self.len += 1;
                return None;
            }
            if slot.key == key {
                return Some(std::mem::replace(&mut slot.value, value));
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let mut bigger = Table::with_bits(self.bits + 1);
        for slot in self.slots.iter().filter(|slot| slot.value != FREE) {
            bigger.insert(slot.key, slot.value);
        }
        *self = bigger;
    }

    fn remove(&mut self, key: K) -> Option<u32> {
        let mask = self.mask();
        let mut i = self.home(key);
        loop {
            let slot = self.slots[i];
            if slot.value == FREE {
                return None;
            }
            if slot.key == key {
                break;
            }
            i = (i + 1) & mask;
        }
        let removed = self.slots[i].value;
        // Backward-shift deletion: move up every later entry of the run whose home is not
        // between the hole and itself, so no probe sequence crosses a free slot.
        let mut hole = i;
        let mut j = (i + 1) & mask;
        loop {
            let slot = self.slots[j];
            if slot.value == FREE {
                break;
            }
            let home = self.home(slot.key);
            let distance_to_hole = j.wrapping_sub(home) & mask;
            let distance_moved = j.wrapping_sub(hole) & mask;
            if distance_to_hole >= distance_moved {
                self.slots[hole] = slot;
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.slots[hole] = Slot {
            key: K::default(),
            value: FREE,
        };
        self.len -= 1;
        Some(removed)
    }
}

/// Longest-prefix match over the prefixes of one family.
pub(crate) struct Lpm<K> {
    /// Indexed by prefix length; `None` for a length no prefix has.
    tables: Vec<Option<Table<K>>>,
    /// Lengths present, longest first.
    lengths: Vec<u8>,
}

impl<K: Key> Default for Lpm<K> {
    fn default() -> Self {
        Self {
            tables: (0..=K::BITS).map(|_| None).collect(),
            lengths: Vec::new(),
        }
    }
}

impl<K: Key> Lpm<K> {
    /// The value of the longest prefix covering `addr`.
    #[inline]
    pub fn lookup(&self, addr: K) -> Option<u32> {
        self.lengths.iter().find_map(|&len| {
            self.tables
                .get(usize::from(len))?
                .as_ref()?
                .get(addr.masked(len))
        })
    }

    /// Hints the CPU to fetch the slot the first (longest) probe for `addr` reads.
    #[inline]
    pub fn prefetch(&self, addr: K) {
        if let Some(&len) = self.lengths.first() {
            if let Some(Some(table)) = self.tables.get(usize::from(len)) {
                table.prefetch(addr.masked(len));
            }
        }
    }

    /// The value stored for exactly `addr/len`.
    pub fn get_exact(&self, addr: K, len: u8) -> Option<u32> {
        self.tables.get(usize::from(len))?.as_ref()?.get(addr)
    }

    /// Stores `value` for `addr/len` (`addr` has no bits beyond `len`, `len` ≤ the family's
    /// bits); returns the value replaced.
    pub fn insert(&mut self, addr: K, len: u8, value: u32) -> Option<u32> {
        let entry = self.tables.get_mut(usize::from(len))?;
        let table = entry.get_or_insert_with(|| Table::with_bits(4));
        let replaced = table.insert(addr, value);
        if !self.lengths.contains(&len) {
            self.lengths.push(len);
            self.lengths.sort_unstable_by(|a, b| b.cmp(a));
        }
        replaced
    }

    /// Removes `addr/len`; returns its value.
    pub fn remove(&mut self, addr: K, len: u8) -> Option<u32> {
        let entry = self.tables.get_mut(usize::from(len))?;
        let table = entry.as_mut()?;
        let removed = table.remove(addr)?;
        if table.len == 0 {
            *entry = None;
            self.lengths.retain(|&l| l != len);
        }
        Some(removed)
    }
}

/// The IPv4 and IPv6 prefixes subscribers own, each mapped to the subscriber's slot.
#[derive(Default)]
pub(crate) struct AddressIndex {
    /// IPv4 prefixes.
    pub v4: Lpm<u32>,
    /// IPv6 prefixes.
    pub v6: Lpm<u128>,
}

impl AddressIndex {
    /// The slot owning exactly `prefix`.
    pub fn owner(&self, prefix: &Prefix) -> Option<u32> {
        match prefix.addr {
            IpAddr::V4(a) => self.v4.get_exact(u32::from(a), prefix.len),
            IpAddr::V6(a) => self.v6.get_exact(u128::from(a), prefix.len),
        }
    }

    /// Maps `prefix` (validated) to `slot`.
    pub fn insert(&mut self, prefix: &Prefix, slot: u32) {
        match prefix.addr {
            IpAddr::V4(a) => self.v4.insert(u32::from(a), prefix.len, slot),
            IpAddr::V6(a) => self.v6.insert(u128::from(a), prefix.len, slot),
        };
    }

    /// True when no prefix is mapped.
    pub fn is_empty(&self) -> bool {
        self.v4.lengths.is_empty() && self.v6.lengths.is_empty()
    }

    /// Unmaps `prefix`.
    pub fn remove(&mut self, prefix: &Prefix) {
        match prefix.addr {
            IpAddr::V4(a) => self.v4.remove(u32::from(a), prefix.len),
            IpAddr::V6(a) => self.v6.remove(u128::from(a), prefix.len),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn longest_prefix_wins_and_removal_uncovers_the_shorter() {
        let mut lpm = Lpm::<u32>::default();
        lpm.insert(0x0a00_0000, 8, 1);
        lpm.insert(0x0a01_0200, 24, 2);
        lpm.insert(0x0a01_0203, 32, 3);
        assert_eq!(lpm.lookup(0x0a01_0203), Some(3));
        assert_eq!(lpm.lookup(0x0a01_0204), Some(2));
        assert_eq!(lpm.lookup(0x0a02_0000), Some(1));
        assert_eq!(lpm.lookup(0x0b00_0000), None);
        assert_eq!(lpm.remove(0x0a01_0203, 32), Some(3));
        assert_eq!(lpm.lookup(0x0a01_0203), Some(2));
        assert_eq!(lpm.remove(0x0a01_0203, 32), None);
        assert_eq!(lpm.lengths, vec![24, 8]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Inserts and removals of /32s and /24s in one small address range (dense runs, so
        /// backward shifts happen) agree with a reference after every step.
        #[test]
        fn agrees_with_a_reference(ops in proptest::collection::vec((any::<bool>(), 0u32..256, any::<bool>(), 0u32..16), 1..200)) {
            let mut lpm = Lpm::<u32>::default();
            let mut reference: BTreeMap<(u32, u8), u32> = BTreeMap::new();
            for (insert, host, short, value) in ops {
                let (addr, len) = if short { (host << 8, 24) } else { (host, 32) };
                if insert {
                    prop_assert_eq!(lpm.insert(addr, len, value), reference.insert((addr, len), value));
                } else {
                    prop_assert_eq!(lpm.remove(addr, len), reference.remove(&(addr, len)));
                }
                for probe in (0..256u32).chain((0..256).map(|i| i << 8)) {
                    let expected = reference
                        .get(&(probe, 32))
                        .or_else(|| reference.get(&(probe & 0xffff_ff00, 24)))
                        .copied();
                    prop_assert_eq!(lpm.lookup(probe), expected, "probe {}", probe);
                }
            }
        }
    }

    #[test]
    fn ipv6_prefixes_of_several_lengths() {
        let mut lpm = Lpm::<u128>::default();
        let p56: u128 = 0x2001_0db8_0000_1200 << 64;
        lpm.insert(p56, 56, 7);
        lpm.insert(p56 | 1, 128, 8);
        assert_eq!(lpm.lookup(p56 | 0x42), Some(7));
        assert_eq!(lpm.lookup(p56 | 1), Some(8));
        assert_eq!(lpm.lookup(p56 + (1 << 72)), None);
    }
}
