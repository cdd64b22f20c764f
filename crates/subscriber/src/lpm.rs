//! Longest-prefix-match tables.
//!
//! [`Lpm4`] is a DIR-24-8 table (Gupta, Lin, McKeown 1998; the layout of DPDK `rte_lpm`): a
//! 2^24-entry first level indexed by the top 24 address bits and 256-entry second-level groups for
//! /25–/32 prefixes, so a lookup is one or two dependent loads whatever the table size. The first
//! level is allocated zeroed on first insert; the kernel maps its pages lazily, so a VPN with a few
//! prefixes costs a few pages of resident memory, not 80 MB.
//!
//! [`Lpm6`] keeps one hash table per prefix length present and probes the lengths longest-first:
//! O(number of distinct lengths) ≤ 129 probes, in practice 2–4 (a /64 or /56 per subscriber and
//! an aggregate).
//!
//! Both keep the authoritative rule set (prefix → value) next to the accelerated structure, which
//! answers "who owns exactly this prefix" and gives the covering rule to restore on removal.

use hashbrown::HashMap;

use crate::mapping::{mask4, mask6};

type Hasher = foldhash::fast::RandomState;

const EXTENDED: u32 = 1 << 31;
const TBL24_LEN: usize = 1 << 24;

/// IPv4 longest-prefix-match table mapping prefixes to `u32` values below 2^31 - 1.
pub struct Lpm4 {
    rules: HashMap<u64, u32, Hasher>,
    rules_per_len: Vec<u32>,
    /// 0 = no route; `EXTENDED | group` = see `tbl8`; otherwise value + 1.
    tbl24: Vec<u32>,
    depth24: Vec<u8>,
    tbl8: Vec<u32>,
    depth8: Vec<u8>,
    free_groups: Vec<u32>,
}

/// Largest value an [`Lpm4`] or [`Lpm6`] can hold.
pub const MAX_VALUE: u32 = EXTENDED - 2;

fn key4(addr: u32, len: u8) -> u64 {
    (u64::from(addr) << 8) | u64::from(len)
}

impl Default for Lpm4 {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for Lpm6 {
    fn default() -> Self {
        Self::new()
    }
}

impl Lpm4 {
    /// An empty table (allocates only the per-length counters).
    pub fn new() -> Self {
        Lpm4 {
            rules: HashMap::with_hasher(Hasher::default()),
            rules_per_len: vec![0; 33],
            tbl24: Vec::new(),
            depth24: Vec::new(),
            tbl8: Vec::new(),
            depth8: Vec::new(),
            free_groups: Vec::new(),
        }
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the table holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Reserves room for `additional` more prefixes in the rule set.
    pub fn reserve(&mut self, additional: usize) {
        self.rules.reserve(additional);
    }

    /// The value stored for exactly `addr/len`, if any.
    pub fn get_exact(&self, addr: u32, len: u8) -> Option<u32> {
        self.rules.get(&key4(addr & mask4(len), len)).copied()
    }

    /// The value of the longest prefix containing `addr`.
    #[inline]
    pub fn lookup(&self, addr: u32) -> Option<u32> {
        let entry = *self.tbl24.get((addr >> 8) as usize)?;
        let entry = if entry & EXTENDED == 0 {
            entry
        } else {
            let slot = (((entry & !EXTENDED) as usize) << 8) | (addr & 0xff) as usize;
            *self.tbl8.get(slot)?
        };
        entry.checked_sub(1)
    }

    /// [`Self::lookup`] of every address of `addrs` into `out` (as many as the shorter holds).
    ///
    /// Two passes over the batch: all first-level reads, then all second-level reads. Each pass
    /// is a run of independent loads, so their cache misses overlap instead of queueing behind
    /// each lookup's dependent pair — what a data plane does with a burst of packets.
    pub fn lookup_batch(&self, addrs: &[u32], out: &mut [Option<u32>]) {
        const CHUNK: usize = 32;
        for (addrs, out) in addrs.chunks(CHUNK).zip(out.chunks_mut(CHUNK)) {
            let mut first = [0u32; CHUNK];
            for (e, &a) in first.iter_mut().zip(addrs) {
                *e = self.tbl24.get((a >> 8) as usize).copied().unwrap_or(0);
            }
            for ((o, &e), &a) in out.iter_mut().zip(&first).zip(addrs) {
                let entry = if e & EXTENDED == 0 {
                    e
                } else {
                    let slot = (((e & !EXTENDED) as usize) << 8) | (a & 0xff) as usize;
                    self.tbl8.get(slot).copied().unwrap_or(0)
                };
                *o = entry.checked_sub(1);
            }
        }
    }

    /// Inserts or replaces `addr/len` (host bits are ignored) and returns the previous value.
    ///
    /// # Panics
    /// Never for `value <= MAX_VALUE` and `len <= 32`; larger values are a caller bug and are
    /// clamped by the index before they get here.
    pub fn insert(&mut self, addr: u32, len: u8, value: u32) -> Option<u32> {
        debug_assert!(value <= MAX_VALUE && len <= 32);
        let len = len.min(32);
        let addr = addr & mask4(len);
        let previous = self.rules.insert(key4(addr, len), value);
        if previous.is_none() {
            self.rules_per_len[usize::from(len)] += 1;
        }
        if self.tbl24.is_empty() {
            self.tbl24 = vec![0; TBL24_LEN];
            self.depth24 = vec![0; TBL24_LEN];
        }
        self.paint(addr, len, value + 1, len, |depth| depth <= len);
        previous
    }

    /// Removes exactly `addr/len` and returns its value.
    pub fn remove(&mut self, addr: u32, len: u8) -> Option<u32> {
        let len = len.min(32);
        let addr = addr & mask4(len);
        let value = self.rules.remove(&key4(addr, len))?;
        self.rules_per_len[usize::from(len)] -= 1;
        // Slots this rule painted fall back to the longest rule that covers it.
        let (cover_entry, cover_depth) = (0..len)
            .rev()
            .filter(|l| self.rules_per_len[usize::from(*l)] > 0)
            .find_map(|l| {
                self.rules
                    .get(&key4(addr & mask4(l), l))
                    .map(|v| (v + 1, l))
            })
            .unwrap_or((0, 0));
        self.paint(addr, len, cover_entry, cover_depth, |depth| depth == len);
        if len > 24 {
            self.collapse_group(addr);
        }
        Some(value)
    }

    /// Writes `(entry, depth)` into every slot of `addr/len` whose current depth passes `replace`.
    fn paint(&mut self, addr: u32, len: u8, entry: u32, depth: u8, replace: impl Fn(u8) -> bool) {
        if len <= 24 {
            let first = (addr >> 8) as usize;
            let count = 1usize << (24 - len);
            for i in first..first + count {
                let current = self.tbl24[i];
                if current & EXTENDED != 0 {
                    let base = ((current & !EXTENDED) as usize) << 8;
                    for j in base..base + 256 {
                        if replace(self.depth8[j]) {
                            self.tbl8[j] = entry;
                            self.depth8[j] = depth;
                        }
                    }
                } else if replace(self.depth24[i]) {
                    self.tbl24[i] = entry;
                    self.depth24[i] = depth;
                }
            }
        } else {
            let i = (addr >> 8) as usize;
            let base = match self.tbl24[i] {
                current if current & EXTENDED != 0 => ((current & !EXTENDED) as usize) << 8,
                current => {
                    let group = self.allocate_group(current, self.depth24[i]);
                    self.tbl24[i] = EXTENDED | group;
                    (group as usize) << 8
                }
            };
            let first = base + (addr & 0xff) as usize;
            let count = 1usize << (32 - len);
            for j in first..first + count {
                if replace(self.depth8[j]) {
                    self.tbl8[j] = entry;
                    self.depth8[j] = depth;
                }
            }
        }
    }

    fn allocate_group(&mut self, fill: u32, depth: u8) -> u32 {
        let group = match self.free_groups.pop() {
            Some(g) => g,
            None => {
                let g = (self.tbl8.len() >> 8) as u32;
                self.tbl8.resize(self.tbl8.len() + 256, 0);
                self.depth8.resize(self.depth8.len() + 256, 0);
                g
            }
        };
        let base = (group as usize) << 8;
        self.tbl8[base..base + 256].fill(fill);
        self.depth8[base..base + 256].fill(depth);
        group
    }

    /// Folds a second-level group back into its first-level slot once no /25–/32 is left in it.
    fn collapse_group(&mut self, addr: u32) {
        let i = (addr >> 8) as usize;
        let current = self.tbl24[i];
        if current & EXTENDED == 0 {
            return;
        }
        let group = current & !EXTENDED;
        let base = (group as usize) << 8;
        let (entry, depth) = (self.tbl8[base], self.depth8[base]);
        let uniform = depth <= 24
            && self.tbl8[base..base + 256].iter().all(|e| *e == entry)
            && self.depth8[base..base + 256].iter().all(|d| *d == depth);
        if uniform {
            self.tbl24[i] = entry;
            self.depth24[i] = depth;
            self.free_groups.push(group);
        }
    }

    /// Every rule, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u8, u32)> + '_ {
        self.rules
            .iter()
            .map(|(k, v)| ((k >> 8) as u32, (k & 0xff) as u8, *v))
    }

    /// Bytes of memory the table has touched or reserved (first level counted in full).
    pub fn heap_bytes(&self) -> usize {
        self.rules.capacity() * 13
            + self.tbl24.capacity() * 5
            + self.tbl8.capacity() * 5
            + self.free_groups.capacity() * 4
    }
}

/// IPv6 longest-prefix-match table: one exact-match hash per prefix length present.
pub struct Lpm6 {
    rules: HashMap<(u128, u8), u32, Hasher>,
    rules_per_len: Vec<u32>,
    /// Lengths with at least one rule, longest first.
    lengths: Vec<u8>,
}

impl Lpm6 {
    /// An empty table.
    pub fn new() -> Self {
        Lpm6 {
            rules: HashMap::with_hasher(Hasher::default()),
            rules_per_len: vec![0; 129],
            lengths: Vec::new(),
        }
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the table holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The value stored for exactly `addr/len`.
    pub fn get_exact(&self, addr: u128, len: u8) -> Option<u32> {
        self.rules.get(&(addr & mask6(len), len)).copied()
    }

    /// The value of the longest prefix containing `addr`.
    pub fn lookup(&self, addr: u128) -> Option<u32> {
        self.lengths
            .iter()
            .find_map(|&l| self.rules.get(&(addr & mask6(l), l)).copied())
    }

    /// Inserts or replaces `addr/len` and returns the previous value.
    pub fn insert(&mut self, addr: u128, len: u8, value: u32) -> Option<u32> {
        let len = len.min(128);
        let previous = self.rules.insert((addr & mask6(len), len), value);
        if previous.is_none() {
            self.rules_per_len[usize::from(len)] += 1;
            if self.rules_per_len[usize::from(len)] == 1 {
                self.lengths.push(len);
                self.lengths.sort_unstable_by(|a, b| b.cmp(a));
            }
        }
        previous
    }

    /// Removes exactly `addr/len` and returns its value.
    pub fn remove(&mut self, addr: u128, len: u8) -> Option<u32> {
        let len = len.min(128);
        let value = self.rules.remove(&(addr & mask6(len), len))?;
        self.rules_per_len[usize::from(len)] -= 1;
        if self.rules_per_len[usize::from(len)] == 0 {
            self.lengths.retain(|l| *l != len);
        }
        Some(value)
    }

    /// Every rule, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u128, u8, u32)> + '_ {
        self.rules.iter().map(|((a, l), v)| (*a, *l, *v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obviously correct reference: scan every rule.
    fn naive4(rules: &[(u32, u8, u32)], addr: u32) -> Option<u32> {
        rules
            .iter()
            .filter(|(a, l, _)| addr & mask4(*l) == *a)
            .max_by_key(|(_, l, _)| *l)
            .map(|(_, _, v)| *v)
    }

    #[test]
    fn batched_lookups_equal_single_lookups() {
        let mut t = Lpm4::new();
        let mut out = vec![Some(7); 3];
        t.lookup_batch(&[1, 2, 3], &mut out);
        assert_eq!(out, [None, None, None], "an empty table");
        t.insert(0x0a00_0000, 8, 1);
        t.insert(0x0a01_0181, 32, 5);
        let addrs: Vec<u32> = (0..100)
            .map(|i| 0x0a01_0100 + i * 3)
            .chain([0x0b00_0000])
            .collect();
        let mut out = vec![None; addrs.len()];
        t.lookup_batch(&addrs, &mut out);
        for (a, o) in addrs.iter().zip(&out) {
            assert_eq!(*o, t.lookup(*a), "{a:#x}");
        }
        assert!(out.contains(&Some(5)) && out.contains(&None));
    }

    #[test]
    fn longest_prefix_wins_and_removal_restores_the_cover() {
        let mut t = Lpm4::new();
        assert_eq!(t.lookup(0x0a00_0001), None);
        t.insert(0x0a00_0000, 8, 1);
        t.insert(0x0a01_0000, 16, 2);
        t.insert(0x0a01_0100, 24, 3);
        t.insert(0x0a01_0180, 25, 4);
        t.insert(0x0a01_0181, 32, 5);
        assert_eq!(t.lookup(0x0a01_0181), Some(5));
        assert_eq!(t.lookup(0x0a01_0182), Some(4));
        assert_eq!(t.lookup(0x0a01_0101), Some(3));
        assert_eq!(t.lookup(0x0a01_0201), Some(2));
        assert_eq!(t.lookup(0x0a02_0000), Some(1));
        assert_eq!(t.lookup(0x0b00_0000), None);
        assert_eq!(t.remove(0x0a01_0180, 25), Some(4));
        assert_eq!(t.lookup(0x0a01_0182), Some(3));
        assert_eq!(t.lookup(0x0a01_0181), Some(5));
        assert_eq!(t.remove(0x0a01_0181, 32), Some(5));
        assert_eq!(t.lookup(0x0a01_0181), Some(3));
        assert!(
            t.free_groups.len() == 1,
            "the emptied group was folded back"
        );
        assert_eq!(t.remove(0x0a01_0100, 24), Some(3));
        assert_eq!(t.lookup(0x0a01_0181), Some(2));
        assert_eq!(t.remove(0x0a00_0000, 8), Some(1));
        assert_eq!(t.lookup(0x0a02_0000), None);
        assert_eq!(t.remove(0x0a00_0000, 8), None);
        t.insert(0, 0, 9);
        assert_eq!(t.lookup(0xffff_ffff), Some(9));
        assert_eq!(t.lookup(0x0a01_0001), Some(2));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn dir24_matches_a_linear_scan(
            ops in proptest::collection::vec(
                (any::<bool>(), 0u32..64, prop_oneof![18..=24u8, 25..=32u8], 0u32..1000),
                1..60),
            probes in proptest::collection::vec(any::<u32>(), 64),
        ) {
            let mut t = Lpm4::new();
            let mut model: Vec<(u32, u8, u32)> = Vec::new();
            // Cluster addresses in 10.0.0.0/18 so prefixes actually overlap.
            let base = 0x0a00_0000u32;
            for (insert, spread, len, value) in ops {
                let addr = (base | (spread.wrapping_mul(0x0101_0101) & 0x3fff)) & mask4(len);
                if insert {
                    model.retain(|(a, l, _)| !(*a == addr && *l == len));
                    model.push((addr, len, value));
                    t.insert(addr, len, value);
                } else {
                    let expected = model.iter().position(|(a, l, _)| *a == addr && *l == len);
                    let got = t.remove(addr, len);
                    prop_assert_eq!(got, expected.map(|i| model.remove(i).2));
                }
            }
            for p in probes {
                let addr = base | (p & 0x3fff);
                prop_assert_eq!(t.lookup(addr), naive4(&model, addr), "addr {:#x}", addr);
                prop_assert_eq!(t.lookup(p), naive4(&model, p));
            }
        }
    }

    #[test]
    fn ipv6_longest_prefix_wins() {
        let mut t = Lpm6::new();
        let a = |s: &str| u128::from(s.parse::<std::net::Ipv6Addr>().unwrap());
        t.insert(a("2001:db8::"), 32, 1);
        t.insert(a("2001:db8:1::"), 48, 2);
        t.insert(a("2001:db8:1::7"), 128, 3);
        assert_eq!(t.lookup(a("2001:db8:1::7")), Some(3));
        assert_eq!(t.lookup(a("2001:db8:1::8")), Some(2));
        assert_eq!(t.lookup(a("2001:db8:2::8")), Some(1));
        assert_eq!(t.lookup(a("2001:db9::")), None);
        assert_eq!(t.remove(a("2001:db8:1::"), 48), Some(2));
        assert_eq!(t.lookup(a("2001:db8:1::8")), Some(1));
        assert_eq!(t.get_exact(a("2001:db8:1::7"), 128), Some(3));
    }
}
