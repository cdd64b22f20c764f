//! The Adj-RIB-In of one peer for VPN-IPv4 and VPN-IPv6, keyed by (RD, prefix).
//!
//! One hash table per family with packed keys (16 bytes for VPN-IPv4, 32 for VPN-IPv6) and a
//! 24-byte entry: the label stack inline, a stale flag, and a shared pointer to the route's
//! attributes, which are interned so that every route announced with the same attributes
//! points at one allocation.

use crate::event::{Route, RouteAttrs};
use crate::types::{LabelStack, RouteDistinguisher, VpnFamily, VpnPrefix};
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

type Hasher = foldhash::fast::RandomState;

/// What an announcement did to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Announced {
    /// The route is new, or its labels or attributes changed.
    Changed,
    /// The same route was already there (perhaps stale, now fresh again).
    Unchanged,
}

#[derive(Debug, Clone)]
struct Entry {
    attrs: Arc<RouteAttrs>,
    labels: LabelStack,
    stale: bool,
}

trait Key: Copy + Eq + Hash {
    fn new(rd: RouteDistinguisher, prefix: VpnPrefix) -> Option<Self>;
    fn route(self) -> (RouteDistinguisher, VpnPrefix);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct V4Key {
    rd: u64,
    addr: u32,
    len: u8,
}

impl Key for V4Key {
    fn new(rd: RouteDistinguisher, prefix: VpnPrefix) -> Option<Self> {
        match prefix {
            VpnPrefix::V4 { addr, len } => Some(V4Key {
                rd: rd.0,
                addr: u32::from(addr),
                len,
            }),
            VpnPrefix::V6 { .. } => None,
        }
    }

    fn route(self) -> (RouteDistinguisher, VpnPrefix) {
        (
            RouteDistinguisher(self.rd),
            VpnPrefix::V4 {
                addr: Ipv4Addr::from(self.addr),
                len: self.len,
            },
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct V6Key {
    rd: u64,
    addr: [u8; 16],
    len: u8,
}

impl Key for V6Key {
    fn new(rd: RouteDistinguisher, prefix: VpnPrefix) -> Option<Self> {
        match prefix {
            VpnPrefix::V6 { addr, len } => Some(V6Key {
                rd: rd.0,
                addr: addr.octets(),
                len,
            }),
            VpnPrefix::V4 { .. } => None,
        }
    }

    fn route(self) -> (RouteDistinguisher, VpnPrefix) {
        (
            RouteDistinguisher(self.rd),
            VpnPrefix::V6 {
                addr: Ipv6Addr::from(self.addr),
                len: self.len,
            },
        )
    }
}

#[derive(Debug)]
struct Table<K> {
    routes: HashMap<K, Entry, Hasher>,
    stale: usize,
}

impl<K> Default for Table<K> {
    fn default() -> Self {
        Self {
            routes: HashMap::default(),
            stale: 0,
        }
    }
}

impl<K: Key> Table<K> {
    fn announce(&mut self, key: K, labels: LabelStack, attrs: &Arc<RouteAttrs>) -> Announced {
        match self.routes.get_mut(&key) {
            Some(entry) => {
                if entry.stale {
                    entry.stale = false;
                    self.stale -= 1;
                }
                if entry.labels == labels && Arc::ptr_eq(&entry.attrs, attrs) {
                    return Announced::Unchanged;
                }
                entry.labels = labels;
                entry.attrs = Arc::clone(attrs);
                Announced::Changed
            }
            None => {
                self.routes.insert(
                    key,
                    Entry {
                        attrs: Arc::clone(attrs),
                        labels,
                        stale: false,
                    },
                );
                Announced::Changed
            }
        }
    }

    fn withdraw(&mut self, key: K) -> bool {
        match self.routes.remove(&key) {
            Some(entry) => {
                self.stale -= usize::from(entry.stale);
                true
            }
            None => false,
        }
    }

    fn mark_stale(&mut self) -> usize {
        self.routes.values_mut().for_each(|e| e.stale = true);
        self.stale = self.routes.len();
        self.stale
    }

    fn sweep_stale(&mut self, removed: &mut dyn FnMut(RouteDistinguisher, VpnPrefix)) -> usize {
        if self.stale == 0 {
            return 0;
        }
        let swept = self.stale;
        self.routes.retain(|key, entry| {
            if entry.stale {
                let (rd, prefix) = key.route();
                removed(rd, prefix);
            }
            !entry.stale
        });
        self.stale = 0;
        swept
    }

    fn clear(&mut self, removed: &mut dyn FnMut(RouteDistinguisher, VpnPrefix)) -> usize {
        let count = self.routes.len();
        for key in self.routes.keys() {
            let (rd, prefix) = key.route();
            removed(rd, prefix);
        }
        self.routes = HashMap::default();
        self.stale = 0;
        count
    }

    fn heap_bytes(&self) -> usize {
        // hashbrown: one slot of (K, Entry) plus one control byte per bucket.
        self.routes.capacity() * (std::mem::size_of::<(K, Entry)>() + 1)
    }
}

/// Adj-RIB-In for the VPN families of one peer.
#[derive(Debug, Default)]
pub struct AdjRibIn {
    v4: Table<V4Key>,
    v6: Table<V6Key>,
    attrs: HashSet<Arc<RouteAttrs>, Hasher>,
    attrs_after_prune: usize,
}

impl AdjRibIn {
    /// Returns the shared copy of `attrs`, adding it when new.
    pub(crate) fn intern(&mut self, attrs: RouteAttrs) -> Arc<RouteAttrs> {
        if let Some(shared) = self.attrs.get(&attrs) {
            return Arc::clone(shared);
        }
        if self.attrs.len() >= 2 * self.attrs_after_prune + 1024 {
            // Attribute sets no route uses any more are held only by this set.
            self.attrs.retain(|a| Arc::strong_count(a) > 1);
            self.attrs_after_prune = self.attrs.len();
        }
        let shared = Arc::new(attrs);
        self.attrs.insert(Arc::clone(&shared));
        shared
    }

    /// Adds or replaces a route.
    pub(crate) fn announce(
        &mut self,
        rd: RouteDistinguisher,
        prefix: VpnPrefix,
        labels: LabelStack,
        attrs: &Arc<RouteAttrs>,
    ) -> Announced {
        match prefix.family() {
            VpnFamily::Ipv4 => V4Key::new(rd, prefix).map(|k| self.v4.announce(k, labels, attrs)),
            VpnFamily::Ipv6 => V6Key::new(rd, prefix).map(|k| self.v6.announce(k, labels, attrs)),
        }
        .unwrap_or(Announced::Unchanged)
    }

    /// Removes a route; `false` when it was not there.
    pub(crate) fn withdraw(&mut self, rd: RouteDistinguisher, prefix: VpnPrefix) -> bool {
        match prefix.family() {
            VpnFamily::Ipv4 => V4Key::new(rd, prefix).is_some_and(|k| self.v4.withdraw(k)),
            VpnFamily::Ipv6 => V6Key::new(rd, prefix).is_some_and(|k| self.v6.withdraw(k)),
        }
    }

    /// Marks every route of `family` stale; returns how many.
    pub(crate) fn mark_stale(&mut self, family: VpnFamily) -> usize {
        match family {
            VpnFamily::Ipv4 => self.v4.mark_stale(),
            VpnFamily::Ipv6 => self.v6.mark_stale(),
        }
    }

    /// Removes the stale routes of `family`, calling `removed` for each.
    pub(crate) fn sweep_stale(
        &mut self,
        family: VpnFamily,
        removed: &mut dyn FnMut(RouteDistinguisher, VpnPrefix),
    ) -> usize {
        match family {
            VpnFamily::Ipv4 => self.v4.sweep_stale(removed),
            VpnFamily::Ipv6 => self.v6.sweep_stale(removed),
        }
    }

    /// Removes every route of `family`, calling `removed` for each.
    pub(crate) fn clear(
        &mut self,
        family: VpnFamily,
        removed: &mut dyn FnMut(RouteDistinguisher, VpnPrefix),
    ) -> usize {
        let count = match family {
            VpnFamily::Ipv4 => self.v4.clear(removed),
            VpnFamily::Ipv6 => self.v6.clear(removed),
        };
        if self.is_empty() {
            self.attrs = HashSet::default();
            self.attrs_after_prune = 0;
        }
        count
    }

    /// Routes held.
    pub fn len(&self) -> usize {
        self.v4.routes.len() + self.v6.routes.len()
    }

    /// Whether no route is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Routes held as stale (graceful restart).
    pub fn stale(&self) -> usize {
        self.v4.stale + self.v6.stale
    }

    /// Stale routes of one family.
    pub(crate) fn stale_in(&self, family: VpnFamily) -> usize {
        match family {
            VpnFamily::Ipv4 => self.v4.stale,
            VpnFamily::Ipv6 => self.v6.stale,
        }
    }

    /// Distinct attribute sets held.
    pub fn attribute_sets(&self) -> usize {
        self.attrs.len()
    }

    /// Bytes the tables and the interned attributes occupy on the heap (estimate from
    /// capacities; the benchmarks measure the allocator as well).
    pub fn heap_bytes(&self) -> usize {
        let attrs: usize = self
            .attrs
            .iter()
            .map(|a| {
                std::mem::size_of::<RouteAttrs>()
                    + 16
                    + a.as_path.len() * 4
                    + a.route_targets.len() * std::mem::size_of::<crate::types::RouteTarget>()
                    + a.extended_communities.len() * 8
                    + a.communities.len() * 4
                    + a.large_communities.len() * 12
            })
            .sum();
        self.v4.heap_bytes() + self.v6.heap_bytes() + self.attrs.capacity() * 9 + attrs
    }

    /// Every route with its stale flag, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Route, bool)> + '_ {
        fn expand<K: Key>(t: &Table<K>) -> impl Iterator<Item = (Route, bool)> + '_ {
            t.routes.iter().map(|(k, e)| {
                let (rd, prefix) = k.route();
                (
                    Route {
                        rd,
                        prefix,
                        labels: e.labels,
                        attrs: Arc::clone(&e.attrs),
                    },
                    e.stale,
                )
            })
        }
        expand(&self.v4).chain(expand(&self.v6))
    }

    /// Looks one route up.
    pub fn get(&self, rd: RouteDistinguisher, prefix: VpnPrefix) -> Option<(Route, bool)> {
        let entry = match prefix.family() {
            VpnFamily::Ipv4 => self.v4.routes.get(&V4Key::new(rd, prefix)?),
            VpnFamily::Ipv6 => self.v6.routes.get(&V6Key::new(rd, prefix)?),
        }?;
        Some((
            Route {
                rd,
                prefix,
                labels: entry.labels,
                attrs: Arc::clone(&entry.attrs),
            },
            entry.stale,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Label;
    use crate::wire::update::Origin;
    use std::net::IpAddr;

    fn attrs(nh: u8) -> RouteAttrs {
        RouteAttrs {
            next_hop: IpAddr::V4(Ipv4Addr::new(10, 0, 0, nh)),
            origin: Origin::Igp,
            as_path: Box::new([]),
            med: None,
            local_pref: Some(100),
            route_targets: Box::new([]),
            extended_communities: Box::new([]),
            communities: Box::new([]),
            large_communities: Box::new([]),
        }
    }

    #[test]
    fn entries_stay_compact() {
        assert_eq!(std::mem::size_of::<(V4Key, Entry)>(), 40);
        assert_eq!(std::mem::size_of::<(V6Key, Entry)>(), 56);
    }

    #[test]
    fn announce_replace_withdraw_and_stale_sweep() {
        let mut rib = AdjRibIn::default();
        let a = rib.intern(attrs(1));
        assert!(Arc::ptr_eq(&a, &rib.intern(attrs(1))));
        let rd = RouteDistinguisher::as2(1000, 1);
        let p: VpnPrefix = "1.1.1.0/24".parse().unwrap();
        let q: VpnPrefix = "2001:db8::/32".parse().unwrap();
        let l10 = LabelStack::single(Label::new(10).unwrap());
        assert_eq!(rib.announce(rd, p, l10, &a), Announced::Changed);
        assert_eq!(rib.announce(rd, p, l10, &a), Announced::Unchanged);
        assert_eq!(rib.announce(rd, q, l10, &a), Announced::Changed);
        let b = rib.intern(attrs(2));
        assert_eq!(rib.announce(rd, p, l10, &b), Announced::Changed);
        assert_eq!(rib.get(rd, p).unwrap().0.attrs, b);

        assert_eq!(rib.mark_stale(VpnFamily::Ipv4), 1);
        assert_eq!(rib.stale(), 1);
        assert_eq!(rib.announce(rd, p, l10, &b), Announced::Unchanged);
        assert_eq!(rib.stale(), 0);
        rib.mark_stale(VpnFamily::Ipv4);
        let mut gone = Vec::new();
        assert_eq!(
            rib.sweep_stale(VpnFamily::Ipv4, &mut |rd, p| gone.push((rd, p))),
            1
        );
        assert_eq!(gone, vec![(rd, p)]);
        assert_eq!(rib.len(), 1);
        assert!(rib.withdraw(rd, q));
        assert!(!rib.withdraw(rd, q));
        assert!(rib.is_empty());
    }
}
