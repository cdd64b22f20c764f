//! What the BGP LEG learnt, in the SM's terms: the routes of its peers (the LEG's view of their
//! Adj-RIB-In), from which the index derives each MPLS/VPN's downstream labels and the
//! `range@VPN` mappings of the subscribers holding `community@VPN` (Cisco SCMS SM, "Information
//! About Handling VPNs").
//!
//! A route is identified by (peer, route distinguisher, prefix), exactly as BGP identifies it,
//! so an announcement replaces the route with the same key and a withdrawal removes it. Routes
//! that match no configured VPN are kept (so that a VPN or a community configured later takes
//! effect without a route refresh) but change nothing and are not stored; routes that match are
//! stored ([`crate::SubscriberStore`]) so that a restarted SM comes back with its mappings and
//! reconciles them against what the peers announce again ([`LearnOp::SweepStale`]).

use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::{HashMap, HashSet, HashTable};
use serde::{Deserialize, Serialize};

use crate::mapping::{Community, Prefix, RouteDistinguisher};

type Hasher = foldhash::fast::RandomState;

/// The address family of a route's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteFamily {
    /// VPN-IPv4.
    Ipv4,
    /// VPN-IPv6.
    Ipv6,
}

/// What identifies a route: the peer that announced it, its route distinguisher and prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    /// The BGP peer's address.
    pub peer: IpAddr,
    /// The 8-byte route distinguisher as BGP carries it (RFC 4364 §4.2), big-endian.
    pub rd: u64,
    /// The customer prefix.
    pub prefix: Prefix,
}

impl RouteKey {
    /// The family of the prefix.
    pub fn family(&self) -> RouteFamily {
        match self.prefix {
            Prefix::V4(..) => RouteFamily::Ipv4,
            Prefix::V6(..) => RouteFamily::Ipv6,
        }
    }

    /// The route distinguisher in text (`1000:1`, `192.0.2.1:7`; `type3:…` for a type that
    /// has no text form).
    pub fn rd_text(&self) -> String {
        match RouteDistinguisher::from_wire(self.rd) {
            Some(rd) => rd.to_string(),
            None => format!("type{}:{:012x}", self.rd >> 48, self.rd & 0xffff_ffff_ffff),
        }
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} from {}", self.prefix, self.peer)?;
        write!(f, " (RD {})", self.rd_text())
    }
}

/// The attributes of a route that the SM uses; many routes share one (interned).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteAttributes {
    /// The next hop: the PE loopback of `RT/RD@PE-IP` (an IPv4-mapped IPv6 next hop is held as
    /// the IPv4 address it is).
    pub next_hop: IpAddr,
    /// Route targets, ascending, each once.
    pub targets: Box<[RouteDistinguisher]>,
    /// Standard communities, ascending, each once.
    pub communities: Box<[Community]>,
}

impl RouteAttributes {
    /// Attributes in canonical form: the next hop unmapped, targets and communities sorted and
    /// deduplicated (so that equal attribute sets compare and intern as equal).
    pub fn new(
        next_hop: IpAddr,
        mut targets: Vec<RouteDistinguisher>,
        mut communities: Vec<Community>,
    ) -> Self {
        let next_hop = match next_hop {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(next_hop, IpAddr::V4),
            v4 => v4,
        };
        targets.sort_unstable_by_key(rd_order);
        targets.dedup();
        communities.sort_unstable();
        communities.dedup();
        RouteAttributes {
            next_hop,
            targets: targets.into_boxed_slice(),
            communities: communities.into_boxed_slice(),
        }
    }
}

fn rd_order(rd: &RouteDistinguisher) -> (u8, u64, u32) {
    match *rd {
        RouteDistinguisher::As { asn, assigned } => (0, u64::from(asn), assigned),
        RouteDistinguisher::Ip { addr, assigned } => {
            (1, u64::from(u32::from(addr)), u32::from(assigned))
        }
    }
}

/// One route as the BGP LEG learnt it. Its serde form is the JSON route record
/// ([`crate::route_record`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedRoute {
    /// Its identity.
    pub key: RouteKey,
    /// The downstream label (the first label of the route's label stack).
    pub label: u32,
    /// Next hop, route targets, communities.
    pub attrs: Arc<RouteAttributes>,
}

/// A change the BGP LEG asks of the index ([`crate::SubscriberIndex::learn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LearnOp {
    /// A route is new or replaces the one with the same key.
    Announce(LearnedRoute),
    /// The route with this key is gone.
    Withdraw(RouteKey),
    /// The peer has announced everything again (End-of-RIB of `family`, or of every family when
    /// `None`), or will not come back in time: its routes restored from the store and not
    /// announced since are withdrawn.
    SweepStale {
        /// The peer.
        peer: IpAddr,
        /// The family the End-of-RIB was for; `None` for all.
        family: Option<RouteFamily>,
    },
}

/// What the store must do for one learnt route: keep `new`, or delete the route when `None`.
/// Only routes that match a configured VPN are stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteChange {
    /// The route.
    #[serde(with = "stored_key")]
    pub key: RouteKey,
    /// The route to store, `None` to delete it.
    pub new: Option<LearnedRoute>,
}

/// Route counts of one peer in the SM.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRoutes {
    /// Routes held.
    pub routes: usize,
    /// Of which match at least one configured VPN (and are stored).
    pub matched: usize,
    /// Of which were restored from the store and not announced again since.
    pub stale: usize,
}

/// The key of a stored route, as the store's table key: fixed width, so that it needs no
/// escaping and sorts by peer.
pub(crate) fn store_key(key: &RouteKey) -> [u8; 42] {
    let mut out = [0u8; 42];
    let peer = match key.peer {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    out[..16].copy_from_slice(&peer.octets());
    out[16..24].copy_from_slice(&key.rd.to_be_bytes());
    let (family, addr, len) = match key.prefix {
        Prefix::V4(a, l) => (4, a.to_ipv6_mapped().octets(), l),
        Prefix::V6(a, l) => (6, a.octets(), l),
    };
    out[24] = family;
    out[25..41].copy_from_slice(&addr);
    out[41] = len;
    out
}

mod stored_key {
    use super::RouteKey;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct Key {
        peer: std::net::IpAddr,
        rd: u64,
        prefix: String,
    }

    pub fn serialize<S: serde::Serializer>(k: &RouteKey, s: S) -> Result<S::Ok, S::Error> {
        Key {
            peer: k.peer,
            rd: k.rd,
            prefix: k.prefix.to_string(),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<RouteKey, D::Error> {
        let k = Key::deserialize(d)?;
        Ok(RouteKey {
            peer: k.peer,
            rd: k.rd,
            prefix: k.prefix.parse().map_err(serde::de::Error::custom)?,
        })
    }
}

/// One route held by the index.
pub(crate) struct Slot {
    pub(crate) route: LearnedRoute,
    /// Restored from the store and not announced since.
    pub(crate) stale: bool,
    /// Matched at least one configured VPN entry when last applied (so it is stored).
    pub(crate) matched: bool,
}

/// The routes, addressed by a `u32` id, with the look-ups that configuration changes need.
#[derive(Default)]
pub(crate) struct RouteTable {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    by_key: HashTable<u32>,
    hasher: Hasher,
    /// Routes per next hop: a new `RT/RD@PE-IP` looks at the routes of its PE only.
    by_next_hop: HashMap<IpAddr, HashSet<u32, Hasher>, Hasher>,
    /// Routes per community: a new `community@VPN` looks at the routes carrying it only.
    by_community: HashMap<Community, HashSet<u32, Hasher>, Hasher>,
    /// Interned attribute sets (each route holds one reference).
    attrs: HashSet<Arc<RouteAttributes>, Hasher>,
    peers: HashMap<IpAddr, PeerRoutes, Hasher>,
}

impl RouteTable {
    pub(crate) fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub(crate) fn find(&self, key: &RouteKey) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.by_key
            .find(hash, |id| self.key_at(*id) == Some(key))
            .copied()
    }

    fn key_at(&self, id: u32) -> Option<&RouteKey> {
        Some(&self.slots.get(id as usize)?.as_ref()?.route.key)
    }

    pub(crate) fn get(&self, id: u32) -> Option<&Slot> {
        self.slots.get(id as usize)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut Slot> {
        self.slots.get_mut(id as usize)?.as_mut()
    }

    /// Every route, in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Slot)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i as u32, s)))
    }

    /// The shared copy of `attrs`.
    pub(crate) fn intern(&mut self, attrs: Arc<RouteAttributes>) -> Arc<RouteAttributes> {
        if let Some(existing) = self.attrs.get(&attrs) {
            return existing.clone();
        }
        self.attrs.insert(attrs.clone());
        attrs
    }

    /// Drops the interned copy when `attrs` was its last user besides the caller's reference.
    fn release(&mut self, attrs: &Arc<RouteAttributes>) {
        // The table's copy, the route's (being dropped) and the caller's.
        if Arc::strong_count(attrs) <= 2 {
            self.attrs.remove(attrs);
        }
    }

    /// Inserts a route that is not in the table (its attributes already interned).
    pub(crate) fn insert(&mut self, route: LearnedRoute, stale: bool) -> u32 {
        let hash = self.hasher.hash_one(route.key);
        let peer = self.peers.entry(route.key.peer).or_default();
        peer.routes += 1;
        peer.stale += usize::from(stale);
        let slot = Slot {
            route,
            stale,
            matched: false,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(slot);
                id
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_key.insert_unique(hash, id, |i| {
            slots[*i as usize]
                .as_ref()
                .map_or(0, |s| hasher.hash_one(s.route.key))
        });
        self.index(id);
        id
    }

    /// Replaces the label and attributes of route `id`; returns the old attributes.
    pub(crate) fn replace(&mut self, id: u32, label: u32, attrs: Arc<RouteAttributes>) {
        self.unindex(id);
        let old = match self.get_mut(id) {
            Some(slot) => {
                slot.route.label = label;
                std::mem::replace(&mut slot.route.attrs, attrs)
            }
            None => return,
        };
        self.release(&old);
        self.index(id);
    }

    /// Removes route `id`.
    pub(crate) fn remove(&mut self, id: u32) -> Option<Slot> {
        self.unindex(id);
        let slot = self.slots.get_mut(id as usize)?.take()?;
        let hash = self.hasher.hash_one(slot.route.key);
        if let Ok(entry) = self.by_key.find_entry(hash, |i| *i == id) {
            entry.remove();
        }
        self.free.push(id);
        if let Some(peer) = self.peers.get_mut(&slot.route.key.peer) {
            peer.routes -= 1;
            peer.stale -= usize::from(slot.stale);
            peer.matched -= usize::from(slot.matched);
            if peer.routes == 0 {
                self.peers.remove(&slot.route.key.peer);
            }
        }
        self.release(&slot.route.attrs);
        Some(slot)
    }

    fn index(&mut self, id: u32) {
        let Some(slot) = self.get(id) else {
            return;
        };
        let attrs = slot.route.attrs.clone();
        self.by_next_hop
            .entry(attrs.next_hop)
            .or_default()
            .insert(id);
        for c in attrs.communities.iter() {
            self.by_community.entry(*c).or_default().insert(id);
        }
    }

    fn unindex(&mut self, id: u32) {
        let Some(slot) = self.get(id) else {
            return;
        };
        let attrs = slot.route.attrs.clone();
        if let Some(set) = self.by_next_hop.get_mut(&attrs.next_hop) {
            set.remove(&id);
            if set.is_empty() {
                self.by_next_hop.remove(&attrs.next_hop);
            }
        }
        for c in attrs.communities.iter() {
            if let Some(set) = self.by_community.get_mut(c) {
                set.remove(&id);
                if set.is_empty() {
                    self.by_community.remove(c);
                }
            }
        }
    }

    /// Routes whose next hop is `pe`.
    pub(crate) fn with_next_hop(&self, pe: IpAddr) -> Vec<u32> {
        self.by_next_hop
            .get(&pe)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Routes carrying `community`.
    pub(crate) fn with_community(&self, community: Community) -> Vec<u32> {
        self.by_community
            .get(&community)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Marks route `id` as announced (not stale).
    pub(crate) fn refresh(&mut self, id: u32) {
        let Some(slot) = self.slots.get_mut(id as usize).and_then(Option::as_mut) else {
            return;
        };
        if slot.stale {
            slot.stale = false;
            if let Some(peer) = self.peers.get_mut(&slot.route.key.peer) {
                peer.stale -= 1;
            }
        }
    }

    /// Records whether route `id` matches a configured VPN.
    pub(crate) fn set_matched(&mut self, id: u32, matched: bool) {
        let Some(slot) = self.slots.get_mut(id as usize).and_then(Option::as_mut) else {
            return;
        };
        if slot.matched != matched {
            slot.matched = matched;
            if let Some(peer) = self.peers.get_mut(&slot.route.key.peer) {
                if matched {
                    peer.matched += 1;
                } else {
                    peer.matched -= 1;
                }
            }
        }
    }

    /// Route counts per peer.
    pub(crate) fn peers(&self) -> impl Iterator<Item = (IpAddr, PeerRoutes)> + '_ {
        self.peers.iter().map(|(p, c)| (*p, *c))
    }

    /// Distinct attribute sets held.
    pub(crate) fn attribute_sets(&self) -> usize {
        self.attrs.len()
    }

    /// Heap bytes of the table and its look-ups (capacity, not only what is used).
    pub(crate) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let sets: usize = self
            .by_next_hop
            .values()
            .chain(self.by_community.values())
            .map(|s| s.capacity() * (size_of::<u32>() + 1))
            .sum();
        let attrs: usize = self
            .attrs
            .iter()
            .map(|a| {
                size_of::<RouteAttributes>()
                    + 16
                    + a.targets.len() * size_of::<RouteDistinguisher>()
                    + a.communities.len() * size_of::<Community>()
            })
            .sum();
        self.slots.capacity() * size_of::<Option<Slot>>()
            + self.free.capacity() * size_of::<u32>()
            + self.by_key.capacity() * (size_of::<u32>() + 1)
            + sets
            + attrs
    }
}
