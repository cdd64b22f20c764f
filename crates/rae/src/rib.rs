//! The routing information base: for each (prefix, class of service) the candidate paths with
//! their AS path and aggregated metric, ranked by the decision process.

use crate::metric::Metric;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// An IPv4 prefix whose host bits are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    address: u32,
    length: u8,
}

impl Prefix {
    /// The prefix of `address`/`length` (host bits cleared; `length` capped at 32).
    pub fn new(address: Ipv4Addr, length: u8) -> Self {
        Self::from_bits(u32::from(address), length)
    }

    /// Same as [`Prefix::new`] from the address as an integer.
    pub fn from_bits(address: u32, length: u8) -> Self {
        let length = length.min(32);
        let mask = if length == 0 {
            0
        } else {
            u32::MAX << (32 - length)
        };
        Self {
            address: address & mask,
            length,
        }
    }

    /// The network address.
    pub fn address(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.address)
    }

    /// The network address as an integer.
    pub fn bits(&self) -> u32 {
        self.address
    }

    /// The prefix length.
    pub fn length(&self) -> u8 {
        self.length
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address(), self.length)
    }
}

impl std::str::FromStr for Prefix {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (ip, length) = text.split_once('/').unwrap_or((text, "32"));
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{text:?}: not an IPv4 prefix"))?;
        let length: u8 = length
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| format!("{text:?}: prefix length must be 0..=32"))?;
        Ok(Prefix::new(ip, length))
    }
}

impl serde::Serialize for Prefix {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Prefix {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A RIB key: a prefix in one class of service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    /// Destination prefix.
    pub prefix: Prefix,
    /// Class of service id.
    pub cos: u32,
}

/// Where a candidate path was learned: a peer index into `RaeConfig::peers`, or the local
/// domain (its own prefixes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin(u16);

impl Origin {
    /// The domain's own prefix.
    pub const LOCAL: Origin = Origin(u16::MAX);

    /// Learned from peer `index`.
    pub fn peer(index: usize) -> Origin {
        Origin(
            u16::try_from(index)
                .unwrap_or(u16::MAX - 1)
                .min(u16::MAX - 1),
        )
    }

    /// The peer index, `None` for [`Origin::LOCAL`].
    pub fn peer_index(self) -> Option<usize> {
        (self != Origin::LOCAL).then_some(usize::from(self.0))
    }
}

/// An AS path, shared between every route that carries the same one.
pub type AsPath = Arc<[u32]>;

/// One candidate path towards a [`RouteKey`].
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// Who advertised it.
    pub origin: Origin,
    /// AS path starting with the next AS (empty for the domain's own prefixes).
    pub as_path: AsPath,
    /// Aggregated metric from our border with `origin` to the prefix.
    pub metric: Metric,
    /// Value of the achievement function (larger is better).
    pub achievement: f64,
}

/// All candidates of a key, kept sorted best first; the first `preferred` are preferred.
#[derive(Debug, Default)]
pub struct RouteEntry {
    /// Candidates, best first.
    pub candidates: Vec<Candidate>,
    /// How many of the first candidates are preferred paths.
    pub preferred: u8,
    /// Whether the key waits in the export queue.
    pub(crate) queued: bool,
    /// Peers (bit = peer index < 64) that currently hold our advertisement of this key.
    pub(crate) advertised: u64,
}

impl RouteEntry {
    /// Whether the entry holds nothing and waits for nothing (it can be dropped).
    fn is_idle(&self) -> bool {
        self.candidates.is_empty() && !self.queued && self.advertised == 0
    }

    /// The preferred paths, best first.
    pub fn preferred(&self) -> &[Candidate] {
        &self.candidates[..usize::from(self.preferred).min(self.candidates.len())]
    }
}

/// The RIB: route entries keyed by prefix and class, plus the AS-path interner.
///
/// Entries live in a slab (`slots`) and the hash index maps keys to slot numbers: a 16-byte
/// hash bucket instead of a bucket holding the whole entry keeps the table small at millions of
/// routes (hash tables grow by powers of two, so the bucket size is paid up to twice).
#[derive(Default)]
pub struct Rib {
    index: HashMap<RouteKey, u32, foldhash::fast::RandomState>,
    slots: Vec<RouteEntry>,
    free: Vec<u32>,
    as_paths: HashSet<AsPath, foldhash::fast::RandomState>,
    interned_since_sweep: usize,
    paths: usize,
}

impl Rib {
    /// The entry of `key`.
    pub fn get(&self, key: &RouteKey) -> Option<&RouteEntry> {
        self.index.get(key).map(|slot| &self.slots[*slot as usize])
    }

    /// The entry of `key`, created empty when missing.
    pub(crate) fn entry(&mut self, key: RouteKey) -> &mut RouteEntry {
        let slots = &mut self.slots;
        let free = &mut self.free;
        let slot = *self.index.entry(key).or_insert_with(|| match free.pop() {
            Some(slot) => slot,
            None => {
                slots.push(RouteEntry::default());
                (slots.len() - 1) as u32
            }
        });
        &mut self.slots[slot as usize]
    }

    /// The entry of `key` if present.
    pub(crate) fn get_mut(&mut self, key: &RouteKey) -> Option<&mut RouteEntry> {
        self.index
            .get(key)
            .map(|slot| &mut self.slots[*slot as usize])
    }

    /// Removes the entry of `key` when it has no candidate and waits for nothing.
    pub(crate) fn remove_if_empty(&mut self, key: &RouteKey) {
        if let Some(slot) = self.index.get(key).copied() {
            if self.slots[slot as usize].is_idle() {
                self.index.remove(key);
                self.slots[slot as usize] = RouteEntry::default();
                self.free.push(slot);
            }
        }
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&RouteKey, &RouteEntry)> {
        self.index
            .iter()
            .map(|(key, slot)| (key, &self.slots[*slot as usize]))
    }

    /// Calls `visit` on every entry mutably.
    pub(crate) fn for_each_mut(&mut self, mut visit: impl FnMut(&RouteKey, &mut RouteEntry)) {
        for (key, slot) in &self.index {
            visit(key, &mut self.slots[*slot as usize]);
        }
    }

    /// Drops entries that hold nothing any more.
    pub(crate) fn retain_nonempty(&mut self) {
        let slots = &mut self.slots;
        let free = &mut self.free;
        self.index.retain(|_, slot| {
            let keep = !slots[*slot as usize].is_idle();
            if !keep {
                slots[*slot as usize] = RouteEntry::default();
                free.push(*slot);
            }
            keep
        });
    }

    /// Number of keys (prefix × class) with an entry.
    pub fn route_count(&self) -> usize {
        self.index.len()
    }

    /// Number of candidate paths over all keys.
    pub fn path_count(&self) -> usize {
        self.paths
    }

    pub(crate) fn add_paths(&mut self, added: usize, removed: usize) {
        self.paths = self.paths + added - removed;
    }

    /// The shared copy of `path`.
    pub fn intern(&mut self, path: &[u32]) -> AsPath {
        if let Some(shared) = self.as_paths.get(path) {
            return shared.clone();
        }
        let shared: AsPath = Arc::from(path);
        self.as_paths.insert(shared.clone());
        self.interned_since_sweep += 1;
        shared
    }

    /// Forgets AS paths no route uses any more, once enough new ones were interned.
    pub(crate) fn sweep_as_paths(&mut self) {
        if self.interned_since_sweep > 1024 && self.interned_since_sweep * 2 > self.as_paths.len() {
            self.as_paths.retain(|p| Arc::strong_count(p) > 1);
            self.interned_since_sweep = 0;
        }
    }

    /// Number of distinct AS paths held.
    pub fn as_path_count(&self) -> usize {
        self.as_paths.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_clear_host_bits_and_round_trip_as_text() {
        let p = Prefix::new(Ipv4Addr::new(10, 203, 1, 77), 24);
        assert_eq!(p.to_string(), "10.203.1.0/24");
        assert_eq!("10.203.1.0/24".parse::<Prefix>(), Ok(p));
        assert_eq!(Prefix::from_bits(u32::MAX, 0).to_string(), "0.0.0.0/0");
        assert!("10.0.0.0/33".parse::<Prefix>().is_err());
        assert!("nonsense".parse::<Prefix>().is_err());
    }

    #[test]
    fn as_paths_are_shared() {
        let mut rib = Rib::default();
        let a = rib.intern(&[5, 7]);
        let b = rib.intern(&[5, 7]);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(rib.as_path_count(), 1);
    }
}
