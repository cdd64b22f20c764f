//! The in-memory subscriber index: records, name table, per-VPN LPM tables, domains.
//!
//! Every operation validates completely before it mutates anything and returns a [`ChangeSet`];
//! an `Err` means nothing changed.
//!
//! **What the BGP LEG learnt** ([`SubscriberIndex::learn`]) lives beside the configuration and
//! is kept consistent with it by every operation:
//!
//! * A route matches the MPLS/VPN entry `RT/RD@PE-IP` whose PE is the route's next hop and
//!   whose RT/RD is the route's distinguisher or one of its route targets. Its downstream label
//!   becomes a learnt label of every entry it matches (counted per route, so a label stays
//!   while any route carries it).
//! * In each VPN it matches, the route *claims* its prefix for every community it carries that
//!   some subscriber holds as `community@VPN` (at most one subscriber holds a community in a
//!   VPN). Of the claims on one prefix, the lowest community wins: its holder gets the prefix
//!   as a learnt `range@VPN` mapping. The outcome depends on the set of routes only, never on
//!   the order they came in.
//! * Configured mappings take precedence: a prefix that a subscriber holds as an exact
//!   configured mapping is not installed for a learnt claim (it is *shadowed*) until the
//!   configured mapping goes away.
//! * Configuration that comes after the routes (a VPN, an MPLS entry, a `community@VPN`)
//!   applies to the routes already held, so no route refresh is needed.

use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use brasa_subsvc::{ServiceError, ServiceRequest, SubscriberServices, TypeConflictAction};
use hashbrown::{HashMap, HashSet, HashTable};

use crate::learned::{LearnOp, LearnedRoute, PeerRoutes, RouteAttributes, RouteChange, RouteTable};
use crate::lpm::{Lpm4, Lpm6, MAX_VALUE};
use crate::mapping::{
    parse_vlan_id, Community, CommunityMapping, IpSpec, Mapping, MplsVpnId, Prefix,
    RouteDistinguisher,
};
use crate::name::{validate_name, NameCase, SubscriberName};
use crate::record::{
    ChangeSet, DownstreamLabel, IndexError, Login, MplsVpnEntry, Subscriber, SubscriberChange, Vpn,
    VpnChange, VpnKind, DEFAULT_DOMAIN,
};
use crate::store::StoredRecords;

type Hasher = foldhash::fast::RandomState;
type Map<K, V> = HashMap<K, V, Hasher>;
type Set<K> = HashSet<K, Hasher>;

/// Identifier of a VPN table; [`GLOBAL_VPN`] is the non-VPN address space.
pub type VpnId = u32;
/// The table of mappings without `@VPN`.
pub const GLOBAL_VPN: VpnId = 0;

/// Index configuration (the `[subscriber_manager]` settings that shape the data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexConfig {
    /// Configured domains; subscribers and VPNs may only use these.
    pub domains: Vec<String>,
    /// Case rule for subscriber names.
    pub name_case: NameCase,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            domains: vec![DEFAULT_DOMAIN.to_owned()],
            name_case: NameCase::Sensitive,
        }
    }
}

/// A mapping bound to a VPN table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Bound {
    ip: IpSpec,
    vpn: VpnId,
}

/// Compact stored form of a subscriber (about 90 bytes plus its name and mapping allocations).
struct Record {
    name: Box<str>,
    mappings: Box<[Bound]>,
    properties: Box<[(Box<str>, Box<str>)]>,
    state: Box<[u8]>,
    /// Boxed: most subscribers have none, and an empty record stays one pointer wide.
    services: Option<Box<SubscriberServices>>,
    auto_logout: Option<u64>,
    domain: u16,
    logged_in: bool,
}

/// The learnt claims on one prefix of a VPN.
#[derive(Default)]
struct Claim {
    /// Held communities carried by routes with this prefix, and how many routes carry each.
    communities: Vec<(Community, u32)>,
    /// The holder of the lowest community: the subscriber the prefix is learnt for.
    owner: Option<u32>,
    /// Whether `owner` holds the prefix in the LPM table (false while a configured mapping
    /// shadows it).
    installed: bool,
}

struct VpnSlot {
    vpn: Option<Vpn>,
    v4: Lpm4,
    v6: Lpm6,
    /// Per MPLS entry, the learnt labels and how many routes carry each.
    label_refs: Map<MplsVpnId, Map<u32, u32>>,
    /// Learnt claims per prefix.
    claims: Map<Prefix, Claim>,
}

impl VpnSlot {
    fn new(vpn: Option<Vpn>) -> Self {
        VpnSlot {
            vpn,
            v4: Lpm4::new(),
            v6: Lpm6::new(),
            label_refs: Map::default(),
            claims: Map::default(),
        }
    }

    fn owner(&self, p: Prefix) -> Option<u32> {
        match p {
            Prefix::V4(a, l) => self.v4.get_exact(u32::from(a), l),
            Prefix::V6(a, l) => self.v6.get_exact(u128::from(a), l),
        }
    }

    fn insert(&mut self, p: Prefix, id: u32) {
        match p {
            Prefix::V4(a, l) => self.v4.insert(u32::from(a), l, id),
            Prefix::V6(a, l) => self.v6.insert(u128::from(a), l, id),
        };
    }

    fn remove_if_owned(&mut self, p: Prefix, id: u32) {
        if self.owner(p) == Some(id) {
            match p {
                Prefix::V4(a, l) => self.v4.remove(u32::from(a), l),
                Prefix::V6(a, l) => self.v6.remove(u128::from(a), l),
            };
        }
    }

    fn prefix_count(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// Where a mapping of a pending call goes: an existing VPN table or a VLAN VPN to create.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Existing(VpnId),
    NewVlan(Box<str>, u16),
}

/// The subscriber database in memory.
pub struct SubscriberIndex {
    config: IndexConfig,
    records: Vec<Option<Record>>,
    free: Vec<u32>,
    by_name: HashTable<u32>,
    /// Subscribers by the value of their [`SESSION_PROPERTY`] (hash of the value → id; the
    /// value itself is the record's, compared on lookup), for requests that name a session
    /// rather than a subscriber (a CoA-Request's Acct-Session-Id). Several subscribers may
    /// hold one value: properties are the operator's.
    by_session: HashTable<u32>,
    hasher: Hasher,
    vpns: Vec<Option<VpnSlot>>,
    vpn_by_name: HashMap<Box<str>, VpnId, Hasher>,
    domain_counts: Vec<usize>,
    auto_logout: BTreeSet<(u64, u32)>,
    /// The MPLS/VPN entries and their VPNs (an `RT/RD@PE-IP` belongs to one VPN).
    mpls_entries: HashMap<MplsVpnId, VpnId, Hasher>,
    /// `community@VPN` holders.
    community_holders: HashMap<(VpnId, Community), u32, Hasher>,
    /// Each holder's `community@VPN` network IDs, in the order given (only subscribers that
    /// hold any: CE subscribers are few, so the record stays compact).
    communities_of: HashMap<u32, Box<[(VpnId, Community)]>, Hasher>,
    /// The learnt prefixes each subscriber holds in the LPM tables, in the order its post-image
    /// lists them (by VPN, then prefix), so that building one needs no sort.
    learned_of: Map<u32, BTreeSet<(VpnId, Prefix)>>,
    /// The BGP LEG's routes.
    routes: RouteTable,
}

/// Collects the subscribers an operation touches with their domain before it.
#[derive(Default)]
struct Touched {
    subs: Vec<(Box<str>, Option<u16>)>,
    seen: Set<Box<str>>,
    vpns: Vec<Box<str>>,
    /// Notes nothing: the operation's change set is not wanted.
    discard: bool,
}

impl Touched {
    /// Collects nothing (an index that follows another needs no change sets).
    fn discarding() -> Self {
        Touched {
            discard: true,
            ..Touched::default()
        }
    }

    fn note(&mut self, name: &str, old_domain: Option<u16>) {
        if self.discard {
            return;
        }
        if !self.seen.contains(name) {
            self.seen.insert(name.into());
            self.subs.push((name.into(), old_domain));
        }
    }

    fn note_vpn(&mut self, name: &str) {
        if !self.discard && !self.vpns.iter().any(|v| &**v == name) {
            self.vpns.push(name.into());
        }
    }
}

impl SubscriberIndex {
    /// An empty index. Domain names are validated like subscriber names.
    pub fn new(config: IndexConfig) -> Result<Self, IndexError> {
        for d in &config.domains {
            validate_name(d).map_err(|source| IndexError::InvalidEntityName {
                what: "domain",
                name: d.clone(),
                source,
            })?;
        }
        Ok(SubscriberIndex {
            domain_counts: vec![0; config.domains.len()],
            config,
            records: Vec::new(),
            free: Vec::new(),
            by_name: HashTable::new(),
            by_session: HashTable::new(),
            hasher: Hasher::default(),
            vpns: vec![Some(VpnSlot::new(None))],
            vpn_by_name: HashMap::with_hasher(Hasher::default()),
            auto_logout: BTreeSet::new(),
            mpls_entries: HashMap::default(),
            community_holders: HashMap::default(),
            communities_of: HashMap::default(),
            learned_of: HashMap::default(),
            routes: RouteTable::default(),
        })
    }

    /// Rebuilds an index from what a store loaded.
    pub fn restore(
        config: IndexConfig,
        vpns: Vec<Vpn>,
        subscribers: Vec<Subscriber>,
    ) -> Result<Self, IndexError> {
        let mut index = Self::new(config)?;
        for vpn in vpns {
            index.add_vpn(vpn)?;
        }
        index.reserve(subscribers.len());
        for sub in subscribers {
            index.put(sub)?;
        }
        Ok(index)
    }

    /// Reserves room for `additional` subscribers with one global IPv4 mapping each.
    pub fn reserve(&mut self, additional: usize) {
        self.records.reserve(additional);
        let hasher = &self.hasher;
        let records = &self.records;
        self.by_name
            .reserve(additional, |id| hash_name(hasher, name_at(records, *id)));
        if let Some(Some(global)) = self.vpns.first_mut() {
            global.v4.reserve(additional);
        }
    }

    /// The configuration.
    pub fn config(&self) -> &IndexConfig {
        &self.config
    }

    /// Number of subscribers.
    pub fn len(&self) -> usize {
        self.records.len() - self.free.len()
    }

    /// Whether there is no subscriber.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // ---------------------------------------------------------------- queries

    /// The subscriber called `name` (case-folded if names are case-insensitive).
    pub fn get(&self, name: &str) -> Option<Subscriber> {
        self.find(&self.fold(name)).map(|id| self.snapshot(id))
    }

    /// The names of the subscribers whose [`SESSION_PROPERTY`] is `session` (none, one, or
    /// several when the operator's properties give one session to several subscribers).
    pub fn with_session<'a>(&'a self, session: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.by_session
            .iter_hash(self.hasher.hash_one(session))
            .filter(move |&&id| session_at(&self.records, id) == Some(session))
            .map(|&id| name_at(&self.records, id))
    }

    /// The subscriber called `name` if it is in `domain` (the SM API's name-in-domain key).
    pub fn get_in_domain(&self, name: &str, domain: &str) -> Option<Subscriber> {
        let id = self.find(&self.fold(name))?;
        let wanted = self.domain_id(domain).ok()?;
        (self.record(id).domain == wanted).then(|| self.snapshot(id))
    }

    /// The VPN table id of a VPN name.
    pub fn vpn_id(&self, name: &str) -> Option<VpnId> {
        self.vpn_by_name.get(name).copied()
    }

    /// The VPN called `name`.
    pub fn vpn(&self, name: &str) -> Option<&Vpn> {
        let id = self.vpn_id(name)?;
        self.vpns.get(id as usize)?.as_ref()?.vpn.as_ref()
    }

    /// All VPNs.
    pub fn vpns(&self) -> impl Iterator<Item = &Vpn> {
        self.vpns.iter().flatten().filter_map(|s| s.vpn.as_ref())
    }

    /// The VPN an MPLS flow belongs to, from the PE loopback and the downstream label.
    pub fn vpn_for_label(&self, pe: IpAddr, label: u32) -> Option<&Vpn> {
        self.vpns().find(|v| match &v.kind {
            VpnKind::Mpls(entries) => entries.iter().any(|e| e.id.pe == pe && e.has_label(label)),
            VpnKind::Vlan(_) => false,
        })
    }

    /// The VPN of a VLAN-id.
    pub fn vpn_for_vlan(&self, vlan: u16) -> Option<&Vpn> {
        self.vpns().find(|v| v.kind == VpnKind::Vlan(vlan))
    }

    /// Hot path: the subscriber id owning the longest prefix containing `addr` in table `vpn`.
    #[inline]
    pub fn lookup_v4(&self, vpn: VpnId, addr: u32) -> Option<u32> {
        self.vpns.get(vpn as usize)?.as_ref()?.v4.lookup(addr)
    }

    /// Hot path for bursts: [`Self::lookup_v4`] of each address of `addrs` into `out`.
    pub fn lookup_v4_batch(&self, vpn: VpnId, addrs: &[u32], out: &mut [Option<u32>]) {
        match self.vpns.get(vpn as usize).and_then(Option::as_ref) {
            Some(slot) => slot.v4.lookup_batch(addrs, out),
            None => out.iter_mut().for_each(|o| *o = None),
        }
    }

    /// The name of subscriber id `id` (as returned by [`Self::lookup_v4`]).
    pub fn name_of(&self, id: u32) -> Option<&str> {
        Some(&self.records.get(id as usize)?.as_ref()?.name)
    }

    /// The subscriber whose mapping is the longest prefix containing `addr`, in the global
    /// space (`vpn = None`) or a VPN.
    pub fn lookup(&self, addr: IpAddr, vpn: Option<&str>) -> Result<Option<&str>, IndexError> {
        let table = match vpn {
            None => GLOBAL_VPN,
            Some(v) => self
                .vpn_id(v)
                .ok_or_else(|| IndexError::UnknownVpn(v.to_owned()))?,
        };
        let slot = self.slot(table);
        let id = match addr {
            IpAddr::V4(a) => slot.and_then(|s| s.v4.lookup(u32::from(a))),
            IpAddr::V6(a) => slot.and_then(|s| s.v6.lookup(u128::from(a))),
        };
        Ok(id.and_then(|id| self.name_of(id)))
    }

    /// The subscriber holding exactly this mapping.
    pub fn owner_of(&self, mapping: &Mapping) -> Result<Option<&str>, IndexError> {
        let table = match mapping.vpn.as_deref() {
            None => GLOBAL_VPN,
            Some(v) => self
                .vpn_id(v)
                .ok_or_else(|| IndexError::UnknownVpn(v.to_owned()))?,
        };
        let bound = Bound {
            ip: mapping.ip,
            vpn: table,
        };
        Ok(self.exact_holder(bound).and_then(|id| self.name_of(id)))
    }

    /// Names starting with `prefix`, sorted, at most `limit`. (A scan: an operator query.)
    pub fn names_with_prefix(&self, prefix: &str, limit: usize) -> Vec<&str> {
        self.names_matching(|n| n.starts_with(prefix), limit)
    }

    /// Names ending with `suffix`, sorted, at most `limit`.
    pub fn names_with_suffix(&self, suffix: &str, limit: usize) -> Vec<&str> {
        self.names_matching(|n| n.ends_with(suffix), limit)
    }

    fn names_matching(&self, keep: impl Fn(&str) -> bool, limit: usize) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .records
            .iter()
            .flatten()
            .map(|r| &*r.name)
            .filter(|n| keep(n))
            .collect();
        out.sort_unstable();
        out.truncate(limit);
        out
    }

    /// Subscribers per configured domain, in configuration order.
    pub fn count_by_domain(&self) -> Vec<(&str, usize)> {
        self.config
            .domains
            .iter()
            .map(String::as_str)
            .zip(self.domain_counts.iter().copied())
            .collect()
    }

    /// Every subscriber, in storage order.
    pub fn iter(&self) -> impl Iterator<Item = Subscriber> + '_ {
        (0..self.records.len() as u32)
            .filter(|id| self.records[*id as usize].is_some())
            .map(|id| self.snapshot(id))
    }

    /// The subscribers an enforcement point of `domain` holds in push mode (full sync).
    pub fn domain_members<'a>(&'a self, domain: &str) -> impl Iterator<Item = Subscriber> + 'a {
        let wanted = self.domain_id(domain).ok();
        (0..self.records.len() as u32)
            .filter(move |id| {
                self.records[*id as usize]
                    .as_ref()
                    .is_some_and(|r| Some(r.domain) == wanted)
                    && self.has_ip(*id)
            })
            .map(|id| self.snapshot(id))
    }

    /// A resumable full sync: up to `max` push-mode members of `domain` (as
    /// [`Self::domain_members`]) whose storage id is `>= start`, in id order, and the id to
    /// resume from (`None` once the table is exhausted).
    ///
    /// Ids are stable while a subscriber exists, so a sender that remembers the cursor knows
    /// which subscribers it has already sent ([`Self::id_of`] below the cursor) while the index
    /// keeps changing between calls.
    pub fn domain_members_from(
        &self,
        domain: &str,
        start: u32,
        max: usize,
    ) -> (Vec<Subscriber>, Option<u32>) {
        let Ok(wanted) = self.domain_id(domain) else {
            return (Vec::new(), None);
        };
        let mut out = Vec::new();
        let end = self.records.len() as u32;
        let mut id = start;
        while id < end {
            if out.len() >= max {
                return (out, Some(id));
            }
            if let Some(r) = &self.records[id as usize] {
                if r.domain == wanted && self.has_ip(id) {
                    out.push(self.snapshot(id));
                }
            }
            id += 1;
        }
        (out, None)
    }

    /// How many subscribers of `domain` a push-mode full sync sends (those with mappings).
    pub fn domain_member_count(&self, domain: &str) -> usize {
        let Ok(wanted) = self.domain_id(domain) else {
            return 0;
        };
        (0..self.records.len() as u32)
            .filter(|id| {
                self.records[*id as usize]
                    .as_ref()
                    .is_some_and(|r| r.domain == wanted)
                    && self.has_ip(*id)
            })
            .count()
    }

    /// The storage id of the subscriber called `name` (already case-folded, as in change sets).
    pub fn id_of(&self, name: &str) -> Option<u32> {
        self.find(name)
    }

    // ------------------------------------------------------------- operations

    /// Adds a new subscriber; fails if the name exists or an exact mapping is held by another.
    pub fn add(&mut self, sub: Subscriber) -> Result<ChangeSet, IndexError> {
        let name = self.fold(sub.name.as_str());
        if self.find(&name).is_some() {
            return Err(IndexError::SubscriberExists(name));
        }
        self.upsert(sub)
    }

    /// Creates or replaces a subscriber record as given (CLU and import semantics): exact
    /// mappings held by another subscriber are an error, not a move.
    pub fn upsert(&mut self, sub: Subscriber) -> Result<ChangeSet, IndexError> {
        let mut touched = Touched::default();
        self.upsert_noting(sub, &mut touched)?;
        Ok(self.finish(touched))
    }

    /// As [`Self::upsert`], without the change set: for an index that follows another (a
    /// restore, a standby, an enforcement point's replica), where nobody would read it.
    pub fn put(&mut self, sub: Subscriber) -> Result<(), IndexError> {
        self.upsert_noting(sub, &mut Touched::discarding())
    }

    fn upsert_noting(&mut self, sub: Subscriber, touched: &mut Touched) -> Result<(), IndexError> {
        let UpsertPlan {
            name,
            existing,
            domain,
            targets,
            communities,
        } = self.plan_upsert(&sub)?;

        let vpn_ids = self.create_vlans(&targets, domain, touched);
        let id = self.ensure_record(name, domain, existing, touched);
        self.clear_mappings(id, touched);
        let bounds: Vec<Bound> = sub
            .mappings
            .iter()
            .zip(vpn_ids)
            .map(|(m, vpn)| Bound { ip: m.ip, vpn })
            .collect();
        self.install(id, &bounds, touched);
        self.set_communities(id, communities, touched);
        self.set_record_properties(id, box_properties(sub.properties));
        if let Some(r) = self.records[id as usize].as_mut() {
            r.mappings = bounds.into_boxed_slice();
            r.state = sub.state.into_boxed_slice();
            r.services = boxed_services(sub.services);
            r.logged_in = sub.logged_in;
        }
        self.set_auto_logout(id, sub.auto_logout);
        Ok(())
    }

    /// Checks everything [`Self::upsert`] would check, without changing anything.
    pub fn validate_upsert(&self, sub: &Subscriber) -> Result<(), IndexError> {
        self.plan_upsert(sub).map(|_| ())
    }

    fn plan_upsert(&self, sub: &Subscriber) -> Result<UpsertPlan, IndexError> {
        let name = self.validated_name(sub.name.as_str())?;
        let existing = self.find(name.as_str());
        let domain = self.domain_id(&sub.domain)?;
        validate_properties(&sub.properties)?;
        validate_services(name.as_str(), &sub.services)?;
        let targets = self.resolve(&sub.mappings, domain)?;
        for (mapping, target) in sub.mappings.iter().zip(&targets) {
            for p in mapping.ip.prefixes() {
                if let Some(owner) = self.target_owner(target, p) {
                    if Some(owner) != existing {
                        return Err(IndexError::MappingTaken {
                            mapping: mapping.to_string(),
                            owner: self.name_of(owner).unwrap_or_default().to_owned(),
                        });
                    }
                }
            }
        }
        let communities = self.resolve_communities(&sub.communities, domain)?;
        for (held, text) in communities.iter().zip(&sub.communities) {
            if let Some(&owner) = self.community_holders.get(held) {
                if Some(owner) != existing {
                    return Err(IndexError::MappingTaken {
                        mapping: text.to_string(),
                        owner: self.name_of(owner).unwrap_or_default().to_owned(),
                    });
                }
            }
        }
        self.check_capacity(existing)?;
        Ok(UpsertPlan {
            name,
            existing,
            domain,
            targets,
            communities,
        })
    }

    /// A login event: creates the subscriber if needed, sets domain, mappings (replacing or
    /// adding), properties and auto-logout, marks it logged in. Exact mappings held by other
    /// subscribers move to this one: each old owner loses the mapping that held the prefix and
    /// appears in the change set.
    pub fn login(&mut self, req: Login) -> Result<ChangeSet, IndexError> {
        let name = self.validated_name(&req.name)?;
        let existing = self.find(name.as_str());
        let domain = match (&req.domain, existing) {
            (Some(d), _) => self.domain_id(d)?,
            (None, Some(id)) => self.record(id).domain,
            (None, None) => self.domain_id(DEFAULT_DOMAIN)?,
        };
        validate_properties(&req.properties)?;
        let kept: Vec<Bound> = match existing {
            Some(id) if req.additive => self.record(id).mappings.to_vec(),
            _ => Vec::new(),
        };
        for b in &kept {
            self.check_vpn_domain(b.vpn, domain, &self.bound_text(*b))?;
        }
        // Mappings the subscriber already holds identically are no-ops in additive mode.
        let new_mappings: Vec<Mapping> = req
            .mappings
            .iter()
            .filter(|m| {
                !kept
                    .iter()
                    .any(|b| b.ip == m.ip && self.vpn_id_of(m.vpn.as_deref()) == Some(b.vpn))
            })
            .cloned()
            .collect();
        let targets = self.resolve(&new_mappings, domain)?;
        let kept_communities: Vec<(VpnId, Community)> = match existing {
            Some(id) if req.additive => self.communities_of(id).to_vec(),
            _ => Vec::new(),
        };
        for (vpn, c) in &kept_communities {
            let text = self.community_text(*vpn, *c);
            self.check_vpn_domain(*vpn, domain, &text)?;
        }
        let asked = self.resolve_communities(&req.communities, domain)?;
        let new_communities: Vec<(VpnId, Community)> = asked
            .into_iter()
            .filter(|held| !kept_communities.contains(held))
            .collect();
        let community_moves: Vec<(u32, (VpnId, Community))> = new_communities
            .iter()
            .filter_map(|held| {
                let owner = *self.community_holders.get(held)?;
                (Some(owner) != existing).then_some((owner, *held))
            })
            .collect();
        let mut moves: Vec<(u32, Bound)> = Vec::new();
        for (mapping, target) in new_mappings.iter().zip(&targets) {
            for p in mapping.ip.prefixes() {
                let Some(owner) = self.target_owner(target, p) else {
                    continue;
                };
                if Some(owner) == existing {
                    if req.additive {
                        return Err(IndexError::MappingTaken {
                            mapping: mapping.to_string(),
                            owner: name.to_string(),
                        });
                    }
                    continue;
                }
                let Target::Existing(vpn) = target else {
                    continue;
                };
                if let Some(b) = self.holder_bound(owner, *vpn, p) {
                    if !moves.contains(&(owner, b)) {
                        moves.push((owner, b));
                    }
                }
            }
        }
        self.check_capacity(existing)?;

        let mut touched = Touched::default();
        let vpn_ids = self.create_vlans(&targets, domain, &mut touched);
        for (owner, bound) in moves {
            self.touch(owner, &mut touched);
            self.uninstall(owner, &[bound], &mut touched);
            if let Some(r) = self.records[owner as usize].as_mut() {
                let mut left = r.mappings.to_vec();
                left.retain(|b| *b != bound);
                r.mappings = left.into_boxed_slice();
            }
        }
        for (owner, held) in community_moves {
            self.touch(owner, &mut touched);
            let left: Vec<(VpnId, Community)> = self
                .communities_of(owner)
                .iter()
                .copied()
                .filter(|h| *h != held)
                .collect();
            self.set_communities(owner, left, &mut touched);
        }
        let id = self.ensure_record(name, domain, existing, &mut touched);
        if !req.additive {
            self.clear_mappings(id, &mut touched);
        }
        let added: Vec<Bound> = new_mappings
            .iter()
            .zip(vpn_ids)
            .map(|(m, vpn)| Bound { ip: m.ip, vpn })
            .collect();
        self.install(id, &added, &mut touched);
        let mut communities = kept_communities;
        communities.extend(new_communities);
        self.set_communities(id, communities, &mut touched);
        let properties = merge_properties(&self.record(id).properties, req.properties);
        self.set_record_properties(id, properties);
        if let Some(r) = self.records[id as usize].as_mut() {
            let mut all = kept;
            all.extend(added);
            r.mappings = all.into_boxed_slice();
            r.logged_in = true;
        }
        self.set_auto_logout(id, req.auto_logout);
        Ok(self.finish(touched))
    }

    /// Logs a subscriber out: it loses its mappings and its auto-logout time; the record and its
    /// policy stay. With `domain`, the subscriber must be in that domain.
    pub fn logout(&mut self, name: &str, domain: Option<&str>) -> Result<ChangeSet, IndexError> {
        let name = self.fold(name);
        let id = self
            .find(&name)
            .ok_or_else(|| IndexError::UnknownSubscriber(name.clone()))?;
        if let Some(d) = domain {
            let actual = &self.config.domains[usize::from(self.record(id).domain)];
            if actual != d {
                return Err(IndexError::NotInDomain {
                    name,
                    domain: d.to_owned(),
                    actual: actual.clone(),
                });
            }
        }
        let mut touched = Touched::default();
        touched.note(&name, Some(self.record(id).domain));
        self.clear_mappings(id, &mut touched);
        self.set_communities(id, Vec::new(), &mut touched);
        if let Some(r) = self.records[id as usize].as_mut() {
            r.logged_in = false;
            r.services = None;
        }
        self.set_auto_logout(id, None);
        Ok(self.finish(touched))
    }

    /// Removes the mapping from the subscriber holding exactly it; a subscriber left without
    /// mappings is logged out.
    pub fn logout_by_mapping(&mut self, mapping: &Mapping) -> Result<ChangeSet, IndexError> {
        let vpn = self
            .vpn_id_of(mapping.vpn.as_deref())
            .ok_or_else(|| IndexError::UnknownVpn(mapping.vpn.as_deref().unwrap_or("").into()))?;
        let bound = Bound {
            ip: mapping.ip,
            vpn,
        };
        let id = self
            .exact_holder(bound)
            .ok_or_else(|| IndexError::NoSuchMapping(mapping.to_string()))?;
        let mut touched = Touched::default();
        let (name, domain) = (self.record(id).name.clone(), self.record(id).domain);
        touched.note(&name, Some(domain));
        self.uninstall(id, &[bound], &mut touched);
        let mut clear_timer = false;
        let holds_communities = self.communities_of.contains_key(&id);
        if let Some(r) = self.records[id as usize].as_mut() {
            let mut left = r.mappings.to_vec();
            left.retain(|b| *b != bound);
            r.mappings = left.into_boxed_slice();
            if r.mappings.is_empty() && !holds_communities {
                r.logged_in = false;
                r.services = None;
                clear_timer = true;
            }
        }
        if clear_timer {
            self.set_auto_logout(id, None);
        }
        Ok(self.finish(touched))
    }

    /// Deletes a subscriber and its mappings.
    pub fn remove(&mut self, name: &str) -> Result<ChangeSet, IndexError> {
        let name = self.fold(name);
        let id = self
            .find(&name)
            .ok_or_else(|| IndexError::UnknownSubscriber(name.clone()))?;
        let mut touched = Touched::default();
        touched.note(&name, Some(self.record(id).domain));
        self.clear_mappings(id, &mut touched);
        self.set_communities(id, Vec::new(), &mut touched);
        self.set_auto_logout(id, None);
        let hash = hash_name(&self.hasher, &name);
        if let Ok(entry) = self.by_name.find_entry(hash, |c| *c == id) {
            entry.remove();
        }
        self.set_record_properties(id, Box::new([]));
        if let Some(r) = self.records[id as usize].take() {
            self.domain_counts[usize::from(r.domain)] -= 1;
        }
        self.free.push(id);
        Ok(self.finish(touched))
    }

    /// Sets properties: existing keys are overwritten in place, new keys appended in order.
    pub fn set_properties(
        &mut self,
        name: &str,
        properties: Vec<(String, String)>,
    ) -> Result<ChangeSet, IndexError> {
        validate_properties(&properties)?;
        let id = self.existing(name)?;
        let mut touched = Touched::default();
        touched.note(&self.record(id).name.clone(), Some(self.record(id).domain));
        let properties = merge_properties(&self.record(id).properties, properties);
        self.set_record_properties(id, properties);
        Ok(self.finish(touched))
    }

    /// Replaces the opaque state an enforcement point keeps in the SM.
    pub fn set_state(&mut self, name: &str, state: Vec<u8>) -> Result<ChangeSet, IndexError> {
        let id = self.existing(name)?;
        let mut touched = Touched::default();
        touched.note(&self.record(id).name.clone(), Some(self.record(id).domain));
        if let Some(r) = self.records[id as usize].as_mut() {
            r.state = state.into_boxed_slice();
        }
        Ok(self.finish(touched))
    }

    /// Applies the subscriber service requests of one message (an Access-Accept, a CoA-Request,
    /// a LEG or operator call) to the subscriber `name`, in order and all or nothing (see
    /// [`SubscriberServices::apply_all`]). A subscriber that does not exist is an error unless
    /// `create_in` names the domain to create it in (logged out, without mappings: the services
    /// of an Access-Accept arrive before the accounting Start that logs the subscriber in).
    /// On `Err` nothing changed.
    pub fn apply_services(
        &mut self,
        name: &str,
        create_in: Option<&str>,
        requests: Vec<ServiceRequest>,
    ) -> Result<ChangeSet, IndexError> {
        // Ok: the record to change; Err: the record to create (name, domain).
        let slot: Result<u32, (SubscriberName, u16)> = match create_in {
            None => Ok(self.existing(name)?),
            Some(domain) => {
                let valid = self.validated_name(name)?;
                match self.find(valid.as_str()) {
                    Some(id) => Ok(id),
                    None => {
                        let domain = self.domain_id(domain)?;
                        self.check_capacity(None)?;
                        Err((valid, domain))
                    }
                }
            }
        };
        let mut services = match slot {
            Ok(id) => self.record(id).services.as_deref().cloned(),
            Err(_) => None,
        }
        .unwrap_or_default();
        services
            .apply_all(requests)
            .map_err(|(request, source)| IndexError::ServiceRefused {
                subscriber: name.to_owned(),
                request,
                source,
            })?;
        let mut touched = Touched::default();
        let id = match slot {
            Ok(id) => {
                touched.note(&self.record(id).name.clone(), Some(self.record(id).domain));
                id
            }
            Err((name, domain)) => self.ensure_record(name, domain, None, &mut touched),
        };
        if let Some(r) = self.records[id as usize].as_mut() {
            r.services = boxed_services(services);
        }
        Ok(self.finish(touched))
    }

    /// Logs out every subscriber whose auto-logout time is `<= now`.
    pub fn expire(&mut self, now: u64) -> ChangeSet {
        let due: Vec<u32> = self
            .auto_logout
            .range(..=(now, u32::MAX))
            .map(|(_, id)| *id)
            .collect();
        let mut out = ChangeSet::default();
        for id in due {
            let Some(name) = self.name_of(id).map(str::to_owned) else {
                continue;
            };
            if let Ok(changes) = self.logout(&name, None) {
                out.merge(changes);
            }
        }
        out
    }

    /// Adds a VPN (the CLU's static configuration). Routes the BGP LEG already holds for its
    /// MPLS entries apply at once.
    pub fn add_vpn(&mut self, vpn: Vpn) -> Result<ChangeSet, IndexError> {
        validate_name(&vpn.name).map_err(|source| IndexError::InvalidEntityName {
            what: "VPN",
            name: vpn.name.clone(),
            source,
        })?;
        if self.vpn_by_name.contains_key(vpn.name.as_str()) {
            return Err(IndexError::VpnExists(format!("{:?}", vpn.name)));
        }
        self.domain_id(&vpn.domain)?;
        self.validate_vpn_kind(&vpn, None)?;
        let entries = mpls_ids(&vpn);
        let mut touched = Touched::default();
        let id = self.insert_vpn(vpn, &mut touched);
        let routes = self.reconfigure(id, &entries, &mut touched, |_| {});
        Ok(self.finish_with_routes(touched, routes))
    }

    /// Removes a VPN that no subscriber mapping or `community@VPN` uses.
    pub fn remove_vpn(&mut self, name: &str) -> Result<ChangeSet, IndexError> {
        let id = self
            .vpn_id(name)
            .ok_or_else(|| IndexError::UnknownVpn(name.to_owned()))?;
        let prefixes = self.slot(id).map_or(0, VpnSlot::prefix_count);
        let communities = self
            .community_holders
            .keys()
            .filter(|(v, _)| *v == id)
            .count();
        if prefixes > 0 || communities > 0 {
            return Err(IndexError::VpnInUse {
                vpn: name.to_owned(),
                prefixes,
                communities,
            });
        }
        let entries = self.vpn(name).map(mpls_ids).unwrap_or_default();
        let mut touched = Touched::default();
        let routes = self.reconfigure(id, &entries, &mut touched, |index| {
            for e in &entries {
                index.mpls_entries.remove(e);
            }
            index.vpn_by_name.remove(name);
            index.vpns[id as usize] = None;
        });
        touched.note_vpn(name);
        Ok(self.finish_with_routes(touched, routes))
    }

    /// Adds `RT/RD@PE-IP` entries to an MPLS/VPN (a new PE of the VPN); routes the BGP LEG
    /// holds for them apply at once.
    pub fn add_mpls_entries(
        &mut self,
        vpn: &str,
        ids: &[MplsVpnId],
    ) -> Result<ChangeSet, IndexError> {
        let vid = self.mpls_vpn_named(vpn)?;
        for (i, id) in ids.iter().enumerate() {
            if ids[..i].contains(id) {
                return Err(IndexError::InvalidVpn {
                    vpn: vpn.to_owned(),
                    reason: format!("{id} is listed twice"),
                });
            }
            if self.mpls_entries.contains_key(id) {
                return Err(IndexError::VpnExists(format!("with {id}")));
            }
        }
        let mut touched = Touched::default();
        let routes = self.reconfigure(vid, ids, &mut touched, |index| {
            for id in ids {
                index.mpls_entries.insert(*id, vid);
            }
            if let Some(VpnKind::Mpls(entries)) = index.vpn_kind_mut(vid) {
                entries.extend(ids.iter().map(|id| MplsVpnEntry::new(*id)));
            }
        });
        touched.note_vpn(vpn);
        Ok(self.finish_with_routes(touched, routes))
    }

    /// Removes `RT/RD@PE-IP` entries from an MPLS/VPN (with their labels); at least one entry
    /// must remain.
    pub fn remove_mpls_entries(
        &mut self,
        vpn: &str,
        ids: &[MplsVpnId],
    ) -> Result<ChangeSet, IndexError> {
        let vid = self.mpls_vpn_named(vpn)?;
        for id in ids {
            if self.mpls_entries.get(id) != Some(&vid) {
                return Err(IndexError::UnknownMplsVpn(format!("{id} in VPN {vpn:?}")));
            }
        }
        let remaining = match self.vpn(vpn).map(|v| &v.kind) {
            Some(VpnKind::Mpls(entries)) => entries.iter().filter(|e| !ids.contains(&e.id)).count(),
            _ => 0,
        };
        if remaining == 0 {
            return Err(IndexError::InvalidVpn {
                vpn: vpn.to_owned(),
                reason: "an MPLS/VPN keeps at least one RT/RD@PE-IP; remove the VPN instead".into(),
            });
        }
        let mut touched = Touched::default();
        let routes = self.reconfigure(vid, ids, &mut touched, |index| {
            for id in ids {
                index.mpls_entries.remove(id);
            }
            if let Some(VpnKind::Mpls(entries)) = index.vpn_kind_mut(vid) {
                entries.retain(|e| !ids.contains(&e.id));
            }
        });
        touched.note_vpn(vpn);
        Ok(self.finish_with_routes(touched, routes))
    }

    /// BGP LEG: sets the IP ranges of a downstream label of a configured MPLS/VPN.
    pub fn set_mpls_label(
        &mut self,
        id: MplsVpnId,
        label: u32,
        ranges: Vec<Prefix>,
    ) -> Result<ChangeSet, IndexError> {
        if label > crate::mapping::MAX_LABEL {
            return Err(IndexError::InvalidVpn {
                vpn: id.to_string(),
                reason: format!("label {label} does not fit in 20 bits"),
            });
        }
        let vpn_id = self.mpls_vpn(id)?;
        let Some(Some(slot)) = self.vpns.get_mut(vpn_id as usize) else {
            return Err(IndexError::UnknownMplsVpn(id.to_string()));
        };
        let Some(vpn) = slot.vpn.as_mut() else {
            return Err(IndexError::UnknownMplsVpn(id.to_string()));
        };
        if let VpnKind::Mpls(entries) = &mut vpn.kind {
            if let Some(entry) = entries.iter_mut().find(|e| e.id == id) {
                match entry.labels.iter_mut().find(|l| l.label == label) {
                    Some(l) => l.ranges = ranges,
                    None => entry.labels.push(DownstreamLabel { label, ranges }),
                }
            }
        }
        let name = vpn.name.clone();
        Ok(ChangeSet {
            subscribers: Vec::new(),
            vpns: vec![VpnChange {
                name,
                new: Some(vpn.clone()),
            }],
            ..ChangeSet::default()
        })
    }

    /// BGP LEG: withdraws a downstream label.
    pub fn remove_mpls_label(
        &mut self,
        id: MplsVpnId,
        label: u32,
    ) -> Result<ChangeSet, IndexError> {
        let vpn_id = self.mpls_vpn(id)?;
        let Some(Some(VpnSlot { vpn: Some(vpn), .. })) = self.vpns.get_mut(vpn_id as usize) else {
            return Err(IndexError::UnknownMplsVpn(id.to_string()));
        };
        if let VpnKind::Mpls(entries) = &mut vpn.kind {
            for e in entries.iter_mut().filter(|e| e.id == id) {
                e.labels.retain(|l| l.label != label);
            }
        }
        Ok(ChangeSet {
            subscribers: Vec::new(),
            vpns: vec![VpnChange {
                name: vpn.name.clone(),
                new: Some(vpn.clone()),
            }],
            ..ChangeSet::default()
        })
    }

    // ------------------------------------------------------------- BGP LEG

    /// Applies what the BGP LEG learnt, in order, and returns one change set for all of it:
    /// the subscribers whose learnt mappings changed, the VPNs whose learnt labels changed, and
    /// the routes to store (those matching a configured VPN) or to delete. Only the routes are
    /// for the store ([`ChangeSet::learned_only`]).
    ///
    /// An announcement equal to the route held (a peer re-announcing its table after a
    /// graceful restart) only marks the route as announced; it changes nothing else.
    pub fn learn(&mut self, ops: impl IntoIterator<Item = LearnOp>) -> ChangeSet {
        let mut touched = Touched::default();
        let mut routes = Vec::new();
        for op in ops {
            match op {
                LearnOp::Announce(route) => self.announce(route, &mut touched, &mut routes),
                LearnOp::Withdraw(key) => {
                    if let Some(rid) = self.routes.find(&key) {
                        self.withdraw(rid, &mut touched, &mut routes);
                    }
                }
                LearnOp::SweepStale { peer, family } => {
                    let stale: Vec<u32> = self
                        .routes
                        .iter()
                        .filter(|(_, s)| {
                            s.stale
                                && s.route.key.peer == peer
                                && family.is_none_or(|f| s.route.key.family() == f)
                        })
                        .map(|(rid, _)| rid)
                        .collect();
                    for rid in stale {
                        self.withdraw(rid, &mut touched, &mut routes);
                    }
                }
            }
        }
        let mut changes = self.finish_with_routes(touched, routes);
        changes.learned_only = true;
        changes
    }

    /// Puts back the routes the store held (at start-up, after [`Self::restore`]): each is
    /// *stale* until its peer announces it again, and goes at the peer's End-of-RIB if it is
    /// not ([`LearnOp::SweepStale`]). Until then the learnt labels and mappings they give are
    /// in force, so enforcement points keep them across the restart.
    pub fn restore_learned(&mut self, routes: Vec<LearnedRoute>) {
        let mut touched = Touched::discarding();
        for route in routes {
            if self.routes.find(&route.key).is_none() {
                self.restore_route(route, &mut touched);
            }
        }
    }

    /// Brings the records `stored` names to the state a store holds them in: what a standby
    /// applies when it follows the store another node commits to, so that it holds a ready
    /// index instead of records to index at a take-over. Afterwards the index equals one
    /// rebuilt from the whole store ([`Self::restore`], [`Self::restore_learned`]) whenever
    /// `stored` holds every key written since the index last equalled the store, read from one
    /// consistent state of it. Applying the same records twice changes nothing.
    ///
    /// The records are post-images, not operations, so their order does not matter: the named
    /// subscribers first let go of their mappings and `community@VPN` network IDs (a mapping
    /// may have moved between two of them), the VPNs change, then each subscriber takes its
    /// stored record and each route is taken back and restored as a restart restores it
    /// (stale until its peer announces it again).
    ///
    /// The records come from outside the index and are validated like any operation, but they
    /// are applied one after another: an `Err` (records that do not fit the configuration, or
    /// that are not one state of a store) consumes the index, which must be rebuilt from the
    /// whole store.
    pub fn apply_stored(mut self, stored: StoredRecords) -> Result<Self, IndexError> {
        let StoredRecords {
            vpns,
            subscribers,
            routes,
        } = stored;
        // Nothing reads what the steps touch: a standby sends no change sets.
        let mut touched = Touched::discarding();
        for (name, record) in &subscribers {
            let Some(id) = self.find(name) else {
                continue;
            };
            if record.is_some() {
                self.clear_mappings(id, &mut touched);
                self.set_communities(id, Vec::new(), &mut touched);
            } else {
                self.remove(name)?;
            }
        }
        // VPNs: first what goes (removed VPNs, MPLS entries that left, VPNs replaced by one
        // of another kind), then what comes, so that an entry or VLAN-id that moved between
        // two VPNs is free when its new VPN takes it.
        let mut arriving = Vec::new();
        for (name, record) in vpns {
            let current = self.vpn(&name).map(Vpn::configured);
            match (current, record) {
                (None, None) => {}
                (Some(_), None) => {
                    self.remove_vpn(&name)?;
                }
                (None, Some(new)) => arriving.push(new),
                (Some(current), Some(new)) if current == new => {}
                (Some(current), Some(new)) => match (&current.kind, &new.kind) {
                    (VpnKind::Mpls(_), VpnKind::Mpls(entries)) if current.domain == new.domain => {
                        let vid = self.mpls_vpn_named(&name)?;
                        let staying = entries
                            .iter()
                            .filter(|e| self.mpls_entries.get(&e.id) == Some(&vid))
                            .cloned()
                            .collect();
                        self.set_mpls_entries(vid, staying, &mut touched);
                        arriving.push(new);
                    }
                    _ => {
                        self.remove_vpn(&name)?;
                        arriving.push(new);
                    }
                },
            }
        }
        for new in arriving {
            match self.vpn_id(&new.name) {
                Some(vid) => {
                    self.validate_vpn_kind(&new, Some(vid))?;
                    let VpnKind::Mpls(entries) = new.kind else {
                        continue;
                    };
                    self.set_mpls_entries(vid, entries, &mut touched);
                }
                None => {
                    self.add_vpn(new)?;
                }
            }
        }
        for (_, record) in subscribers {
            if let Some(sub) = record {
                self.put(sub)?;
            }
        }
        let mut ignored = Vec::new();
        for (key, record) in routes {
            if let Some(rid) = self.routes.find(&key) {
                self.withdraw(rid, &mut touched, &mut ignored);
            }
            if let Some(route) = record {
                self.restore_route(route, &mut touched);
            }
        }
        Ok(self)
    }

    /// Routes the BGP LEG holds.
    pub fn learned_route_count(&self) -> usize {
        self.routes.len()
    }

    /// Route counts per peer, by address.
    pub fn learned_peers(&self) -> Vec<(IpAddr, PeerRoutes)> {
        let mut out: Vec<(IpAddr, PeerRoutes)> = self.routes.peers().collect();
        out.sort_unstable_by_key(|(p, _)| *p);
        out
    }

    /// Heap bytes held for the BGP LEG's routes (table, look-ups, interned attributes), and
    /// the number of distinct attribute sets.
    pub fn learned_memory(&self) -> (usize, usize) {
        (self.routes.heap_bytes(), self.routes.attribute_sets())
    }

    /// The BGP LEG's routes, each with the VPNs it matches and who holds its prefix there
    /// (only those matching `vpn` when given), in no particular order.
    pub fn learned_routes<'a>(
        &'a self,
        vpn: Option<&str>,
    ) -> Result<impl Iterator<Item = LearnedRouteView<'a>> + 'a, IndexError> {
        let only = match vpn {
            None => None,
            Some(name) => Some(
                self.vpn_id(name)
                    .ok_or_else(|| IndexError::UnknownVpn(name.to_owned()))?,
            ),
        };
        Ok(self.routes.iter().filter_map(move |(_, slot)| {
            let route = &slot.route;
            let mut vpns: Vec<VpnId> = Vec::new();
            for (_, v) in self.route_entries(route.key.rd, &route.attrs) {
                if !vpns.contains(&v) {
                    vpns.push(v);
                }
            }
            if only.is_some_and(|o| !vpns.contains(&o)) {
                return None;
            }
            let holders = vpns
                .iter()
                .filter_map(|v| {
                    let claim = self.slot(*v)?.claims.get(&route.key.prefix)?;
                    let owner = claim.owner.filter(|_| claim.installed)?;
                    Some((self.vpn_name(*v)?, self.name_of(owner)?))
                })
                .collect();
            Some(LearnedRouteView {
                route,
                stale: slot.stale,
                vpns: vpns.iter().filter_map(|v| self.vpn_name(*v)).collect(),
                holders,
            })
        }))
    }

    // ---------------------------------------------------------------- helpers

    fn fold(&self, name: &str) -> String {
        match self.config.name_case {
            NameCase::Sensitive => name.to_owned(),
            NameCase::Insensitive => name.to_ascii_lowercase(),
        }
    }

    fn validated_name(&self, raw: &str) -> Result<SubscriberName, IndexError> {
        SubscriberName::new(raw, self.config.name_case).map_err(|source| IndexError::InvalidName {
            name: raw.to_owned(),
            source,
        })
    }

    /// Replaces the properties of live record `id`, keeping the session table in step.
    fn set_record_properties(&mut self, id: u32, properties: Box<[(Box<str>, Box<str>)]>) {
        let changed = session_at(&self.records, id) != session_of(&properties);
        if changed {
            if let Some(old) = session_at(&self.records, id) {
                let hash = self.hasher.hash_one(old);
                if let Ok(entry) = self.by_session.find_entry(hash, |c| *c == id) {
                    entry.remove();
                }
            }
        }
        let new = session_of(&properties).map(|s| self.hasher.hash_one(s));
        if let Some(r) = self.records[id as usize].as_mut() {
            r.properties = properties;
        }
        if let (true, Some(hash)) = (changed, new) {
            let hasher = &self.hasher;
            let records = &self.records;
            self.by_session.insert_unique(hash, id, |id| {
                hasher.hash_one(session_at(records, *id).unwrap_or(""))
            });
        }
    }

    fn find(&self, name: &str) -> Option<u32> {
        let hash = hash_name(&self.hasher, name);
        self.by_name
            .find(hash, |id| name_at(&self.records, *id) == name)
            .copied()
    }

    fn existing(&self, name: &str) -> Result<u32, IndexError> {
        let name = self.fold(name);
        self.find(&name).ok_or(IndexError::UnknownSubscriber(name))
    }

    fn record(&self, id: u32) -> &Record {
        match self.records.get(id as usize) {
            Some(Some(r)) => r,
            // Ids come from the name table or the LPM tables, which only hold live records.
            _ => unreachable!("subscriber id {id} is not live"),
        }
    }

    fn slot(&self, vpn: VpnId) -> Option<&VpnSlot> {
        self.vpns.get(vpn as usize)?.as_ref()
    }

    fn domain_id(&self, domain: &str) -> Result<u16, IndexError> {
        self.config
            .domains
            .iter()
            .position(|d| d == domain)
            .map(|p| p as u16)
            .ok_or_else(|| IndexError::UnknownDomain(domain.to_owned()))
    }

    fn vpn_id_of(&self, vpn: Option<&str>) -> Option<VpnId> {
        match vpn {
            None => Some(GLOBAL_VPN),
            Some(v) => self.vpn_id(v),
        }
    }

    fn bound_text(&self, b: Bound) -> String {
        Mapping {
            ip: b.ip,
            vpn: self
                .slot(b.vpn)
                .and_then(|s| s.vpn.as_ref())
                .map(|v| v.name.as_str().into()),
        }
        .to_string()
    }

    fn check_vpn_domain(&self, vpn: VpnId, domain: u16, mapping: &str) -> Result<(), IndexError> {
        let Some(v) = self.slot(vpn).and_then(|s| s.vpn.as_ref()) else {
            return Ok(());
        };
        let wanted = &self.config.domains[usize::from(domain)];
        if &v.domain != wanted {
            return Err(IndexError::VpnDomainMismatch {
                mapping: mapping.to_owned(),
                vpn_domain: v.domain.clone(),
                domain: wanted.clone(),
            });
        }
        Ok(())
    }

    /// Resolves each mapping's VPN and refuses duplicates within the call.
    fn resolve(&self, mappings: &[Mapping], domain: u16) -> Result<Vec<Target>, IndexError> {
        let mut out = Vec::with_capacity(mappings.len());
        let mut seen: HashMap<(Target, Prefix), (), Hasher> = HashMap::default();
        for m in mappings {
            let target = match m.vpn.as_deref() {
                None => Target::Existing(GLOBAL_VPN),
                Some(name) => match self.vpn_id(name) {
                    Some(id) => {
                        self.check_vpn_domain(id, domain, &m.to_string())?;
                        Target::Existing(id)
                    }
                    None => match parse_vlan_id(name) {
                        Some(vlan) if self.vpn_for_vlan(vlan).is_none() => {
                            Target::NewVlan(name.into(), vlan)
                        }
                        Some(_) => {
                            return Err(IndexError::InvalidVpn {
                                vpn: name.to_owned(),
                                reason: "this VLAN-id belongs to a VPN of another name".into(),
                            })
                        }
                        None => return Err(IndexError::UnknownVpn(name.to_owned())),
                    },
                },
            };
            if mappings.len() > 1 {
                for p in m.ip.prefixes() {
                    if seen.insert((target.clone(), p), ()).is_some() {
                        return Err(IndexError::DuplicateMapping(m.to_string(), p.to_string()));
                    }
                }
            }
            out.push(target);
        }
        Ok(out)
    }

    /// Who holds `p` in the target's table through a configured mapping (a learnt mapping
    /// gives way to a configured one, so it does not count).
    fn target_owner(&self, target: &Target, p: Prefix) -> Option<u32> {
        match target {
            Target::Existing(vpn) => {
                let slot = self.slot(*vpn)?;
                if slot.claims.get(&p).is_some_and(|c| c.installed) {
                    return None;
                }
                slot.owner(p)
            }
            Target::NewVlan(..) => None,
        }
    }

    /// The mapping of `owner` in `vpn` whose prefixes include `p`.
    fn holder_bound(&self, owner: u32, vpn: VpnId, p: Prefix) -> Option<Bound> {
        self.record(owner)
            .mappings
            .iter()
            .find(|b| b.vpn == vpn && b.ip.prefixes().contains(&p))
            .copied()
    }

    fn exact_holder(&self, bound: Bound) -> Option<u32> {
        let first = *bound.ip.prefixes().first()?;
        let owner = self.slot(bound.vpn)?.owner(first)?;
        self.record(owner)
            .mappings
            .contains(&bound)
            .then_some(owner)
    }

    fn check_capacity(&self, existing: Option<u32>) -> Result<(), IndexError> {
        if existing.is_none()
            && self.free.is_empty()
            && self.records.len() as u64 > u64::from(MAX_VALUE)
        {
            return Err(IndexError::Full);
        }
        Ok(())
    }

    fn create_vlans(
        &mut self,
        targets: &[Target],
        domain: u16,
        touched: &mut Touched,
    ) -> Vec<VpnId> {
        targets
            .iter()
            .map(|t| match t {
                Target::Existing(id) => *id,
                Target::NewVlan(name, vlan) => match self.vpn_id(name) {
                    Some(id) => id,
                    None => self.insert_vpn(
                        Vpn {
                            name: name.to_string(),
                            domain: self.config.domains[usize::from(domain)].clone(),
                            kind: VpnKind::Vlan(*vlan),
                        },
                        touched,
                    ),
                },
            })
            .collect()
    }

    fn insert_vpn(&mut self, vpn: Vpn, touched: &mut Touched) -> VpnId {
        let name: Box<str> = vpn.name.as_str().into();
        touched.note_vpn(&name);
        let entries = mpls_ids(&vpn);
        let slot = VpnSlot::new(Some(vpn));
        let id = match self.vpns.iter().skip(1).position(Option::is_none) {
            Some(free) => {
                self.vpns[free + 1] = Some(slot);
                (free + 1) as VpnId
            }
            None => {
                self.vpns.push(Some(slot));
                (self.vpns.len() - 1) as VpnId
            }
        };
        self.vpn_by_name.insert(name, id);
        for e in entries {
            self.mpls_entries.insert(e, id);
        }
        id
    }

    fn validate_vpn_kind(&self, vpn: &Vpn, except: Option<VpnId>) -> Result<(), IndexError> {
        let invalid = |reason: String| IndexError::InvalidVpn {
            vpn: vpn.name.clone(),
            reason,
        };
        match &vpn.kind {
            VpnKind::Vlan(vlan) => {
                if !(1..=4094).contains(vlan) {
                    return Err(invalid(format!("VLAN-id {vlan} is outside 1..=4094")));
                }
                if let Some(other) = self.vpn_for_vlan(*vlan) {
                    if self.vpn_id(&other.name) != except {
                        return Err(IndexError::VpnExists(format!("with VLAN-id {vlan}")));
                    }
                }
            }
            VpnKind::Mpls(entries) => {
                if entries.is_empty() {
                    return Err(invalid("an MPLS/VPN needs at least one RT/RD@PE-IP".into()));
                }
                for (i, e) in entries.iter().enumerate() {
                    if !e.learned_labels.is_empty() {
                        return Err(invalid(format!(
                            "{} lists learnt labels; those come from the BGP LEG only",
                            e.id
                        )));
                    }
                    if entries[..i].iter().any(|o| o.id == e.id) {
                        return Err(invalid(format!("{} is listed twice", e.id)));
                    }
                    if let Ok(other) = self.mpls_vpn(e.id) {
                        if Some(other) != except {
                            return Err(IndexError::VpnExists(format!("with {}", e.id)));
                        }
                    }
                    for (j, l) in e.labels.iter().enumerate() {
                        if l.label > crate::mapping::MAX_LABEL {
                            return Err(invalid(format!("{} has a label above 2^20-1", e.id)));
                        }
                        if e.labels[..j].iter().any(|o| o.label == l.label) {
                            return Err(invalid(format!("{} lists label {} twice", e.id, l.label)));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn mpls_vpn(&self, id: MplsVpnId) -> Result<VpnId, IndexError> {
        self.mpls_entries
            .get(&id)
            .copied()
            .ok_or_else(|| IndexError::UnknownMplsVpn(id.to_string()))
    }

    /// The id of the MPLS/VPN called `name`.
    fn mpls_vpn_named(&self, name: &str) -> Result<VpnId, IndexError> {
        let id = self
            .vpn_id(name)
            .ok_or_else(|| IndexError::UnknownVpn(name.to_owned()))?;
        match self.vpn(name).map(|v| &v.kind) {
            Some(VpnKind::Mpls(_)) => Ok(id),
            _ => Err(IndexError::InvalidVpn {
                vpn: name.to_owned(),
                reason: "it is a VLAN VPN, not an MPLS/VPN".into(),
            }),
        }
    }

    fn vpn_kind_mut(&mut self, vpn: VpnId) -> Option<&mut VpnKind> {
        Some(
            &mut self
                .vpns
                .get_mut(vpn as usize)?
                .as_mut()?
                .vpn
                .as_mut()?
                .kind,
        )
    }

    fn vpn_name(&self, vpn: VpnId) -> Option<&str> {
        Some(self.slot(vpn)?.vpn.as_ref()?.name.as_str())
    }

    /// Returns the id of `name`, creating the record (or moving it to `domain`).
    fn ensure_record(
        &mut self,
        name: SubscriberName,
        domain: u16,
        existing: Option<u32>,
        touched: &mut Touched,
    ) -> u32 {
        if let Some(id) = existing {
            let old = self.record(id).domain;
            touched.note(name.as_str(), Some(old));
            if old != domain {
                self.domain_counts[usize::from(old)] -= 1;
                self.domain_counts[usize::from(domain)] += 1;
                if let Some(r) = self.records[id as usize].as_mut() {
                    r.domain = domain;
                }
            }
            return id;
        }
        touched.note(name.as_str(), None);
        let record = Record {
            name: name.into_boxed(),
            mappings: Box::new([]),
            properties: Box::new([]),
            state: Box::new([]),
            services: None,
            auto_logout: None,
            domain,
            logged_in: false,
        };
        let hash = hash_name(&self.hasher, &record.name);
        let id = match self.free.pop() {
            Some(id) => {
                self.records[id as usize] = Some(record);
                id
            }
            None => {
                self.records.push(Some(record));
                (self.records.len() - 1) as u32
            }
        };
        let hasher = &self.hasher;
        let records = &self.records;
        self.by_name
            .insert_unique(hash, id, |id| hash_name(hasher, name_at(records, *id)));
        self.domain_counts[usize::from(domain)] += 1;
        id
    }

    /// Installs configured mappings of `id`; a learnt mapping on the same prefix is shadowed.
    fn install(&mut self, id: u32, bounds: &[Bound], touched: &mut Touched) {
        for b in bounds {
            for p in b.ip.prefixes() {
                let Some(Some(slot)) = self.vpns.get_mut(b.vpn as usize) else {
                    continue;
                };
                let mut shadowed = None;
                if let Some(claim) = slot.claims.get_mut(&p).filter(|c| c.installed) {
                    claim.installed = false;
                    shadowed = claim.owner;
                }
                slot.insert(p, id);
                if let Some(learner) = shadowed {
                    self.forget_learned(learner, b.vpn, p);
                    self.touch(learner, touched);
                }
            }
        }
    }

    /// Removes configured mappings of `id`; a learnt mapping they shadowed takes their place.
    fn uninstall(&mut self, id: u32, bounds: &[Bound], touched: &mut Touched) {
        for b in bounds {
            for p in b.ip.prefixes() {
                let Some(Some(slot)) = self.vpns.get_mut(b.vpn as usize) else {
                    continue;
                };
                let learnt_here = slot.claims.get(&p).is_some_and(|c| c.installed);
                if learnt_here || slot.owner(p) != Some(id) {
                    continue;
                }
                slot.remove_if_owned(p, id);
                let Some(learner) = slot.claims.get(&p).and_then(|c| c.owner) else {
                    continue;
                };
                slot.insert(p, learner);
                if let Some(claim) = slot.claims.get_mut(&p) {
                    claim.installed = true;
                }
                self.learned_of
                    .entry(learner)
                    .or_default()
                    .insert((b.vpn, p));
                self.touch(learner, touched);
            }
        }
    }

    fn clear_mappings(&mut self, id: u32, touched: &mut Touched) {
        let old = match self.records[id as usize].as_mut() {
            Some(r) => std::mem::take(&mut r.mappings),
            None => return,
        };
        self.uninstall(id, &old, touched);
    }

    /// Notes subscriber `id` (whose domain does not change) in `touched`.
    fn touch(&self, id: u32, touched: &mut Touched) {
        if let Some(r) = self.records.get(id as usize).and_then(Option::as_ref) {
            touched.note(&r.name, Some(r.domain));
        }
    }

    /// Whether subscriber `id` has an IP mapping, configured or learnt.
    fn has_ip(&self, id: u32) -> bool {
        self.records
            .get(id as usize)
            .and_then(Option::as_ref)
            .is_some_and(|r| !r.mappings.is_empty())
            || self.learned_of.contains_key(&id)
    }

    fn communities_of(&self, id: u32) -> &[(VpnId, Community)] {
        self.communities_of.get(&id).map_or(&[], |c| c)
    }

    fn community_text(&self, vpn: VpnId, c: Community) -> String {
        format!("{c}@{}", self.vpn_name(vpn).unwrap_or_default())
    }

    /// Resolves `community@VPN` network IDs: the VPN must exist and be an MPLS/VPN of the
    /// subscriber's domain, and each may be given once.
    fn resolve_communities(
        &self,
        communities: &[CommunityMapping],
        domain: u16,
    ) -> Result<Vec<(VpnId, Community)>, IndexError> {
        let mut out: Vec<(VpnId, Community)> = Vec::with_capacity(communities.len());
        for cm in communities {
            let vpn = self.mpls_vpn_named(&cm.vpn).map_err(|e| match e {
                IndexError::InvalidVpn { vpn, .. } => IndexError::InvalidVpn {
                    reason: format!("{cm}: community@VPN needs an MPLS/VPN, not a VLAN VPN"),
                    vpn,
                },
                other => other,
            })?;
            self.check_vpn_domain(vpn, domain, &cm.to_string())?;
            if out.contains(&(vpn, cm.community)) {
                return Err(IndexError::DuplicateCommunity(cm.to_string()));
            }
            out.push((vpn, cm.community));
        }
        Ok(out)
    }

    /// Gives subscriber `id` exactly these `community@VPN` network IDs (each free or already
    /// its own): the routes carrying a new one claim their prefixes for it, those carrying a
    /// dropped one no longer do.
    fn set_communities(&mut self, id: u32, new: Vec<(VpnId, Community)>, touched: &mut Touched) {
        let old: Vec<(VpnId, Community)> = self
            .communities_of
            .remove(&id)
            .map(Vec::from)
            .unwrap_or_default();
        for held in &old {
            if !new.contains(held) {
                self.community_holders.remove(held);
                self.recount_community(*held, false, touched);
            }
        }
        for held in &new {
            if !old.contains(held) {
                self.community_holders.insert(*held, id);
                self.recount_community(*held, true, touched);
            }
        }
        if !new.is_empty() {
            self.communities_of.insert(id, new.into_boxed_slice());
        }
    }

    /// Adds (or takes back) the claims of every route that carries `community` and matches
    /// `vpn`.
    fn recount_community(
        &mut self,
        (vpn, community): (VpnId, Community),
        add: bool,
        touched: &mut Touched,
    ) {
        for rid in self.routes.with_community(community) {
            let Some(slot) = self.routes.get(rid) else {
                continue;
            };
            let (prefix, rd) = (slot.route.key.prefix, slot.route.key.rd);
            let attrs = slot.route.attrs.clone();
            if self
                .route_entries(rd, &attrs)
                .iter()
                .any(|(_, v)| *v == vpn)
            {
                self.count_claim(vpn, prefix, community, add);
                self.settle(vpn, prefix, touched);
            }
        }
    }

    /// The configured entries a route matches: those whose PE is its next hop and whose RT/RD
    /// is its route distinguisher or one of its route targets.
    fn route_entries(&self, rd: u64, attrs: &RouteAttributes) -> Vec<(MplsVpnId, VpnId)> {
        let mut out = Vec::new();
        if self.mpls_entries.is_empty() {
            return out;
        }
        let targets = RouteDistinguisher::from_wire(rd)
            .into_iter()
            .chain(attrs.targets.iter().copied());
        for target in targets {
            let id = MplsVpnId {
                rd: target,
                pe: attrs.next_hop,
            };
            if let Some(&vpn) = self.mpls_entries.get(&id) {
                if !out.iter().any(|(e, _)| *e == id) {
                    out.push((id, vpn));
                }
            }
        }
        out
    }

    fn matches_any(&self, rid: u32) -> bool {
        self.routes.get(rid).is_some_and(|s| {
            !self
                .route_entries(s.route.key.rd, &s.route.attrs)
                .is_empty()
        })
    }

    /// Adds (`add`) or takes back what route `rid` gives under the current configuration, in
    /// every VPN it matches or only in `only`: its label to each entry it matches, its claims
    /// on its prefix in each VPN. Returns whether the route matches any entry.
    fn contribute(
        &mut self,
        rid: u32,
        only: Option<VpnId>,
        add: bool,
        touched: &mut Touched,
    ) -> bool {
        let Some(slot) = self.routes.get(rid) else {
            return false;
        };
        let (prefix, label, rd) = (slot.route.key.prefix, slot.route.label, slot.route.key.rd);
        let attrs = slot.route.attrs.clone();
        let entries = self.route_entries(rd, &attrs);
        for (i, &(entry, vpn)) in entries.iter().enumerate() {
            if only.is_some_and(|o| o != vpn) {
                continue;
            }
            self.count_label(vpn, entry, label, add, touched);
            // Claims once per VPN, however many of its entries the route matches.
            if entries[..i].iter().any(|(_, v)| *v == vpn) || self.community_holders.is_empty() {
                continue;
            }
            for &c in attrs.communities.iter() {
                if self.community_holders.contains_key(&(vpn, c)) {
                    self.count_claim(vpn, prefix, c, add);
                    self.settle(vpn, prefix, touched);
                }
            }
        }
        !entries.is_empty()
    }

    fn count_label(
        &mut self,
        vpn: VpnId,
        entry: MplsVpnId,
        label: u32,
        add: bool,
        touched: &mut Touched,
    ) {
        let Some(Some(slot)) = self.vpns.get_mut(vpn as usize) else {
            return;
        };
        let refs = slot.label_refs.entry(entry).or_default();
        let changed = if add {
            let n = refs.entry(label).or_insert(0);
            *n += 1;
            *n == 1
        } else {
            match refs.get_mut(&label) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    refs.remove(&label);
                    true
                }
                None => false,
            }
        };
        if refs.is_empty() {
            slot.label_refs.remove(&entry);
        }
        if !changed {
            return;
        }
        let Some(v) = slot.vpn.as_mut() else {
            return;
        };
        if let VpnKind::Mpls(entries) = &mut v.kind {
            if let Some(e) = entries.iter_mut().find(|e| e.id == entry) {
                match (e.learned_labels.binary_search(&label), add) {
                    (Err(i), true) => e.learned_labels.insert(i, label),
                    (Ok(i), false) => {
                        e.learned_labels.remove(i);
                    }
                    _ => {}
                }
            }
        }
        touched.note_vpn(&v.name);
    }

    fn count_claim(&mut self, vpn: VpnId, prefix: Prefix, community: Community, add: bool) {
        let Some(Some(slot)) = self.vpns.get_mut(vpn as usize) else {
            return;
        };
        let claim = slot.claims.entry(prefix).or_default();
        match claim.communities.iter().position(|(c, _)| *c == community) {
            Some(i) if add => claim.communities[i].1 += 1,
            Some(i) => {
                claim.communities[i].1 -= 1;
                if claim.communities[i].1 == 0 {
                    claim.communities.swap_remove(i);
                }
            }
            None if add => claim.communities.push((community, 1)),
            None => {}
        }
    }

    /// Gives prefix `p` of `vpn` to the holder of the lowest held community that claims it (or
    /// to nobody), unless a configured mapping holds it.
    fn settle(&mut self, vpn: VpnId, p: Prefix, touched: &mut Touched) {
        let Some(Some(slot)) = self.vpns.get(vpn as usize) else {
            return;
        };
        let Some(claim) = slot.claims.get(&p) else {
            return;
        };
        let holders = &self.community_holders;
        let want = claim
            .communities
            .iter()
            .filter_map(|(c, _)| holders.get(&(vpn, *c)).map(|h| (*c, *h)))
            .min()
            .map(|(_, holder)| holder);
        let (old, installed) = (claim.owner, claim.installed);
        let empty = claim.communities.is_empty();
        if want != old {
            let Some(Some(slot)) = self.vpns.get_mut(vpn as usize) else {
                return;
            };
            if let (true, Some(old)) = (installed, old) {
                slot.remove_if_owned(p, old);
            }
            let now_installed = want.is_some() && slot.owner(p).is_none();
            if let (true, Some(new)) = (now_installed, want) {
                slot.insert(p, new);
            }
            if let Some(claim) = slot.claims.get_mut(&p) {
                claim.owner = want;
                claim.installed = now_installed;
            }
            if let (true, Some(old)) = (installed, old) {
                self.forget_learned(old, vpn, p);
                self.touch(old, touched);
            }
            if let (true, Some(new)) = (now_installed, want) {
                self.learned_of.entry(new).or_default().insert((vpn, p));
                self.touch(new, touched);
            }
        }
        if empty {
            if let Some(Some(slot)) = self.vpns.get_mut(vpn as usize) {
                slot.claims.remove(&p);
            }
        }
    }

    fn forget_learned(&mut self, id: u32, vpn: VpnId, p: Prefix) {
        if let Some(set) = self.learned_of.get_mut(&id) {
            set.remove(&(vpn, p));
            if set.is_empty() {
                self.learned_of.remove(&id);
            }
        }
    }

    fn announce(&mut self, route: LearnedRoute, touched: &mut Touched, out: &mut Vec<RouteChange>) {
        let attrs = self.routes.intern(route.attrs);
        match self.routes.find(&route.key) {
            Some(rid) => {
                let unchanged = self.routes.get(rid).is_some_and(|s| {
                    s.route.label == route.label && Arc::ptr_eq(&s.route.attrs, &attrs)
                });
                self.routes.refresh(rid);
                if unchanged {
                    return;
                }
                self.contribute(rid, None, false, touched);
                self.routes.replace(rid, route.label, attrs);
                let matched = self.contribute(rid, None, true, touched);
                self.store_route(rid, matched, true, out);
            }
            None => {
                let rid = self.routes.insert(
                    LearnedRoute {
                        key: route.key,
                        label: route.label,
                        attrs,
                    },
                    false,
                );
                let matched = self.contribute(rid, None, true, touched);
                self.store_route(rid, matched, true, out);
            }
        }
    }

    fn withdraw(&mut self, rid: u32, touched: &mut Touched, out: &mut Vec<RouteChange>) {
        self.contribute(rid, None, false, touched);
        if let Some(slot) = self.routes.remove(rid) {
            if slot.matched {
                out.push(RouteChange {
                    key: slot.route.key,
                    new: None,
                });
            }
        }
    }

    /// Records whether route `rid` matches a VPN `now`, and what the store must do about it:
    /// keep a matching route (when it `changed`, or just started to match), delete one that
    /// stopped matching.
    fn store_route(&mut self, rid: u32, now: bool, changed: bool, out: &mut Vec<RouteChange>) {
        let Some(slot) = self.routes.get(rid) else {
            return;
        };
        let was = slot.matched;
        let change = match (was, now) {
            (_, true) if changed || !was => Some(RouteChange {
                key: slot.route.key,
                new: Some(slot.route.clone()),
            }),
            (true, false) => Some(RouteChange {
                key: slot.route.key,
                new: None,
            }),
            _ => None,
        };
        self.routes.set_matched(rid, now);
        out.extend(change);
    }

    /// Changes the configuration of `vpn` with `change`; around it, the routes that `entries`
    /// match are taken back under the old configuration and applied under the new one.
    /// Returns what the store must do for the routes whose matching changed.
    fn reconfigure(
        &mut self,
        vpn: VpnId,
        entries: &[MplsVpnId],
        touched: &mut Touched,
        change: impl FnOnce(&mut Self),
    ) -> Vec<RouteChange> {
        let mut affected: Vec<u32> = Vec::new();
        let mut seen: Set<u32> = Set::default();
        for e in entries {
            for rid in self.routes.with_next_hop(e.pe) {
                let Some(slot) = self.routes.get(rid) else {
                    continue;
                };
                let carries = RouteDistinguisher::from_wire(slot.route.key.rd) == Some(e.rd)
                    || slot.route.attrs.targets.contains(&e.rd);
                if carries && seen.insert(rid) {
                    affected.push(rid);
                }
            }
        }
        for rid in &affected {
            self.contribute(*rid, Some(vpn), false, touched);
        }
        change(self);
        for rid in &affected {
            self.contribute(*rid, Some(vpn), true, touched);
        }
        let mut out = Vec::new();
        for rid in affected {
            let now = self.matches_any(rid);
            self.store_route(rid, now, false, &mut out);
        }
        out
    }

    /// Puts back a stored route that the index does not hold, stale until its peer announces
    /// it again.
    fn restore_route(&mut self, route: LearnedRoute, touched: &mut Touched) {
        let attrs = self.routes.intern(route.attrs);
        let rid = self.routes.insert(
            LearnedRoute {
                key: route.key,
                label: route.label,
                attrs,
            },
            true,
        );
        let matched = self.contribute(rid, None, true, touched);
        self.routes.set_matched(rid, matched);
    }

    /// Gives MPLS/VPN `vpn` exactly `entries` (their configured labels; learnt labels are
    /// derived again from the routes). An entry must not belong to another VPN.
    fn set_mpls_entries(&mut self, vpn: VpnId, entries: Vec<MplsVpnEntry>, touched: &mut Touched) {
        let old: Vec<MplsVpnId> = match self.slot(vpn).and_then(|s| s.vpn.as_ref()) {
            Some(v) => mpls_ids(v),
            None => return,
        };
        let mut affected = old.clone();
        affected.extend(entries.iter().map(|e| e.id).filter(|id| !old.contains(id)));
        let entries: Vec<MplsVpnEntry> = entries
            .into_iter()
            .map(|e| MplsVpnEntry {
                learned_labels: Vec::new(),
                ..e
            })
            .collect();
        // The routes' matching changes with the entries; whether they stay stored is the
        // store's business, and it says so in the records a standby applies.
        let _ = self.reconfigure(vpn, &affected, touched, |index| {
            for id in &old {
                index.mpls_entries.remove(id);
            }
            for e in &entries {
                index.mpls_entries.insert(e.id, vpn);
            }
            if let Some(kind) = index.vpn_kind_mut(vpn) {
                *kind = VpnKind::Mpls(entries);
            }
        });
    }

    fn set_auto_logout(&mut self, id: u32, at: Option<u64>) {
        let Some(r) = self.records[id as usize].as_mut() else {
            return;
        };
        if let Some(old) = r.auto_logout.take() {
            self.auto_logout.remove(&(old, id));
        }
        r.auto_logout = at;
        if let Some(at) = at {
            self.auto_logout.insert((at, id));
        }
    }

    fn snapshot(&self, id: u32) -> Subscriber {
        let r = self.record(id);
        Subscriber {
            name: SubscriberName::from_trusted(&r.name),
            domain: self.config.domains[usize::from(r.domain)].clone(),
            mappings: r.mappings.iter().map(|b| self.public_mapping(*b)).collect(),
            communities: self
                .communities_of(id)
                .iter()
                .map(|(vpn, c)| CommunityMapping {
                    community: *c,
                    vpn: self.vpn_name(*vpn).unwrap_or_default().into(),
                })
                .collect(),
            learned: self.learned_mappings(id),
            properties: r
                .properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            state: r.state.to_vec(),
            logged_in: r.logged_in,
            auto_logout: r.auto_logout,
            services: r.services.as_deref().cloned().unwrap_or_default(),
        }
    }

    /// The learnt mappings of `id`, by VPN then prefix.
    fn learned_mappings(&self, id: u32) -> Vec<Mapping> {
        let Some(set) = self.learned_of.get(&id) else {
            return Vec::new();
        };
        set.iter()
            .map(|&(vpn, p)| Mapping {
                ip: match p {
                    Prefix::V4(a, l) => IpSpec::V4Prefix(a, l),
                    Prefix::V6(a, l) => IpSpec::V6Prefix(a, l),
                },
                vpn: self.vpn_name(vpn).map(Into::into),
            })
            .collect()
    }

    fn public_mapping(&self, b: Bound) -> Mapping {
        Mapping {
            ip: b.ip,
            vpn: self
                .slot(b.vpn)
                .and_then(|s| s.vpn.as_ref())
                .map(|v| v.name.as_str().into()),
        }
    }

    fn finish(&self, touched: Touched) -> ChangeSet {
        ChangeSet {
            subscribers: touched
                .subs
                .into_iter()
                .map(|(name, old)| SubscriberChange {
                    new: self.find(&name).map(|id| self.snapshot(id)),
                    name: SubscriberName::from_trusted(&name),
                    old_domain: old.map(|d| self.config.domains[usize::from(d)].clone()),
                })
                .collect(),
            vpns: touched
                .vpns
                .into_iter()
                .map(|name| VpnChange {
                    new: self.vpn(&name).cloned(),
                    name: name.into(),
                })
                .collect(),
            ..ChangeSet::default()
        }
    }

    fn finish_with_routes(&self, touched: Touched, routes: Vec<RouteChange>) -> ChangeSet {
        let mut changes = self.finish(touched);
        changes.routes = routes;
        changes
    }
}

/// What [`SubscriberIndex::upsert`] checked and will apply.
struct UpsertPlan {
    name: SubscriberName,
    existing: Option<u32>,
    domain: u16,
    targets: Vec<Target>,
    communities: Vec<(VpnId, Community)>,
}

/// One route of the BGP LEG as [`SubscriberIndex::learned_routes`] shows it.
#[derive(Debug, Clone)]
pub struct LearnedRouteView<'a> {
    /// The route.
    pub route: &'a LearnedRoute,
    /// Restored from the store and not announced again since.
    pub stale: bool,
    /// The VPNs it matches (empty: ignored, as its RT/RD@PE is not configured).
    pub vpns: Vec<&'a str>,
    /// (VPN, subscriber) for each VPN where a subscriber holds the route's prefix as a learnt
    /// mapping (the holder of the lowest claiming community).
    pub holders: Vec<(&'a str, &'a str)>,
}

fn mpls_ids(vpn: &Vpn) -> Vec<MplsVpnId> {
    match &vpn.kind {
        VpnKind::Mpls(entries) => entries.iter().map(|e| e.id).collect(),
        VpnKind::Vlan(_) => Vec::new(),
    }
}

fn hash_name(hasher: &Hasher, name: &str) -> u64 {
    hasher.hash_one(name)
}

/// The property that names a subscriber's session: the accounting session id the RADIUS login
/// events keep (`[subscriber_manager.radius] properties = ["Acct-Session-Id"]`); its key is
/// matched without regard to case.
pub const SESSION_PROPERTY: &str = "Acct-Session-Id";

fn session_of(properties: &[(Box<str>, Box<str>)]) -> Option<&str> {
    properties
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(SESSION_PROPERTY))
        .map(|(_, value)| &**value)
}

fn session_at(records: &[Option<Record>], id: u32) -> Option<&str> {
    session_of(&records.get(id as usize)?.as_ref()?.properties)
}

fn name_at(records: &[Option<Record>], id: u32) -> &str {
    records
        .get(id as usize)
        .and_then(Option::as_ref)
        .map_or("", |r| &r.name)
}

fn validate_properties(props: &[(String, String)]) -> Result<(), IndexError> {
    for (k, v) in props {
        let bad = |reason| IndexError::InvalidProperty {
            key: k.clone(),
            reason,
        };
        if k.is_empty() {
            return Err(bad("the key is empty"));
        }
        if !k.bytes().all(|b| b.is_ascii_graphic()) || k.contains('=') {
            return Err(bad("keys are printable ASCII without spaces or '='"));
        }
        if v.chars().any(char::is_control) {
            return Err(bad("the value holds a control character"));
        }
    }
    Ok(())
}

/// Checks a subscriber's services as given whole (import, replace, an EP's copy): each valid,
/// names unique, rule names unique across them, dynamic policers within the per-direction
/// limit — what activating them one by one checks. Their type-conflict actions are not
/// replayed: they act at activation, and services of one type may be active side by side.
fn validate_services(name: &str, services: &SubscriberServices) -> Result<(), IndexError> {
    let mut replay = SubscriberServices::new();
    for (request, service) in services.iter().enumerate() {
        let refused = |source| IndexError::ServiceRefused {
            subscriber: name.to_owned(),
            request,
            source,
        };
        if replay.get(&service.name).is_some() {
            return Err(refused(ServiceError::NameInUse(service.name.clone())));
        }
        let mut side_by_side = service.clone();
        side_by_side.type_conflict_action = TypeConflictAction::None;
        replay.activate(side_by_side).map_err(refused)?;
    }
    Ok(())
}

/// `None` for no services, so that a record without any holds no allocation.
fn boxed_services(services: SubscriberServices) -> Option<Box<SubscriberServices>> {
    (!services.is_empty()).then(|| Box::new(services))
}

fn box_properties(props: Vec<(String, String)>) -> Box<[(Box<str>, Box<str>)]> {
    props
        .into_iter()
        .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
        .collect()
}

fn merge_properties(
    current: &[(Box<str>, Box<str>)],
    updates: Vec<(String, String)>,
) -> Box<[(Box<str>, Box<str>)]> {
    let mut out = current.to_vec();
    for (k, v) in updates {
        match out.iter_mut().find(|(key, _)| **key == *k) {
            Some(slot) => slot.1 = v.into_boxed_str(),
            None => out.push((k.into_boxed_str(), v.into_boxed_str())),
        }
    }
    out.into_boxed_slice()
}
