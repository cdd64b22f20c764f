//! The immutable service snapshot ([`ServiceTables`]) and the builder that validates specs
//! into it.
//!
//! Every object (SAP, service, filter, policer) gets a *slot* — an index into the snapshot's
//! vectors and into the stage's state vectors — when it is created, and keeps it until it is
//! removed; a slot reused by a new object gets a new *generation*, which is how the stage
//! tells "the same SAP, changed" (state kept) from "another SAP in the old slot" (state reset,
//! MACs flushed).

use super::spec::*;
use super::ServiceError;
use crate::acl::{self, Disposition, IpFamily, Match, Rule, RuleAction, RuleSet};
use crate::cow::CowVec;
use crate::fdb::{MAX_BRIDGE_SLOT, MAX_SAP_SLOT};
use crate::flow::FxBuildHasher;
use crate::pipeline::PortId;
use crate::policer::{PolicerParams, RateLimit};
use crate::sap::{EgressTags, PortSaps, SapEncap, SapId, Tag};
use crate::wire::{
    ethernet, ip_protocol, vlan, EtherType, GrePacket, GreRepr, Ipv4Packet, Ipv4Repr, Ipv6Packet,
    Ipv6Repr, MacAddr,
};
use imbl::{shared_ptr::DefaultSharedPtr, GenericHashMap, OrdSet};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// What a SAP's frames do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SapRole {
    /// Cross-connected (Epipe).
    Epipe,
    /// Bridged (VPLS).
    Vpls,
    /// Captured for the control plane (VPLS capture SAP).
    Capture,
    /// Left to the kernel (IES/VPRN).
    L3,
}

/// Compiled filters and policer of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DirEntry {
    /// Filter slots: MAC, IPv4, IPv6.
    pub filters: [Option<u32>; 3],
    /// Policer slot.
    pub policer: Option<u32>,
}

impl DirEntry {
    /// The MAC filter's position in [`DirEntry::filters`].
    pub const MAC: usize = 0;
    /// The IPv4 filter's position.
    pub const IPV4: usize = 1;
    /// The IPv6 filter's position.
    pub const IPV6: usize = 2;

    pub fn has_filters(&self) -> bool {
        self.filters.iter().any(Option::is_some)
    }
}

/// A SAP in the snapshot. `repr(C)` and the alignment put every field a received packet
/// reads (an Epipe's, a VPLS's, filtered or not) in the first cache line, the one line the
/// stage prefetches; the rest (egress, MAC limits, the id) is read by the control side, on
/// the checked egress path and when a MAC is learned.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct SapEntry {
    pub service: u32,
    /// In the first line because `Option<SapEntry>` keeps its tag in this field's niche (the
    /// largest), and every read of a slot tests that tag first.
    pub bum_limit: Option<RateLimit>,
    /// The other end of an Epipe.
    pub peer: Peer,
    pub ingress: DirEntry,
    pub service_mtu: u16,
    /// Split-horizon group index + 1 within the VPLS; 0 = none.
    pub shg: u16,
    pub role: SapRole,
    /// SAP or service shut down.
    pub down: bool,
    /// For an IP interface's ends: the subscriber direction of the IP packets arriving on
    /// this SAP and crossing to the other end (the interface SAP: from the subscribers,
    /// ingress; the TAP: to them, egress). `None` for every other SAP.
    pub subscriber_side: Option<crate::pcc::Direction>,
    /// Learn source MACs (SAP and VPLS both allow it).
    pub learn: bool,
    pub generation: u32,
    pub port: PortId,
    pub outer_tpid: u16,
    pub port_mtu: u16,
    pub egress_tags: EgressTags,
    pub egress: DirEntry,
    pub id: SapId,
    /// MAC limit (learned + static); `u32::MAX` = none.
    pub max_mac: u32,
    pub discard_unknown_source: bool,
    pub static_count: u32,
    /// Age learned MACs (SAP and VPLS both allow it).
    pub age: bool,
}

const _: () = assert!(
    std::mem::offset_of!(SapEntry, learn) < 64
        && std::mem::offset_of!(SapEntry, ingress) + std::mem::size_of::<DirEntry>() <= 64
        && std::mem::offset_of!(SapEntry, bum_limit) + std::mem::size_of::<Option<RateLimit>>()
            <= 64
        && std::mem::size_of::<Option<SapEntry>>() == std::mem::size_of::<SapEntry>()
);

/// The other end of an Epipe SAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    None,
    Sap(u32),
    Gre,
}

/// A GRE endpoint with its pre-built outer headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GreEntry {
    pub spec: GreSpec,
    /// Ethernet (+ tag) + IP + GRE header, with lengths and checksum to fill per packet.
    pub header: Vec<u8>,
    /// Offset of the IP header in `header`.
    pub ip_offset: usize,
}

/// A service in the snapshot.
#[derive(Debug, Clone)]
pub(crate) struct ServiceEntry {
    pub id: ServiceId,
    pub generation: u32,
    pub down: bool,
    pub mtu: u16,
    pub kind: ServiceKind,
}

#[derive(Debug, Clone)]
pub(crate) enum ServiceKind {
    Epipe {
        saps: [Option<u32>; 2],
        gre: Option<Arc<GreEntry>>,
    },
    Vpls(Arc<VplsEntry>),
    /// An IES or VPRN: the routing instance its IP interfaces' packets are in.
    L3(crate::pcc::RoutingInstance),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VplsEntry {
    pub spec: VplsSpec,
    /// Forwarding members (not capture SAPs) in slot order, which is also the flooding order.
    pub members: Vec<u32>,
    /// Static MACs (48-bit) and their SAP slots.
    pub statics: Vec<(u64, u32)>,
}

/// A filter in the snapshot.
#[derive(Debug, Clone)]
pub(crate) struct FilterEntry {
    pub generation: u32,
    pub rules: Arc<RuleSet>,
    /// Entry ids in rule-index order (for counters by entry).
    pub entry_ids: Arc<[u32]>,
}

/// A policer in the snapshot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PolicerEntry {
    pub generation: u32,
    pub params: PolicerParams,
}

/// The key a GRE packet is demultiplexed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TunnelKey {
    pub local: [u8; 16],
    pub remote: [u8; 16],
    pub key: Option<u32>,
}

impl TunnelKey {
    /// The key of a configured tunnel.
    pub fn of(gre: &GreSpec) -> Self {
        let (local, remote, key) = gre.identity();
        Self::new(local, remote, key)
    }

    pub fn new(local: IpAddr, remote: IpAddr, key: Option<u32>) -> Self {
        Self {
            local: crate::flow::addr_bytes(local),
            remote: crate::flow::addr_bytes(remote),
            key,
        }
    }
}

/// An access port in the snapshot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PortEntry {
    pub saps: PortSaps,
}

/// A persistent hash map (a hash array mapped trie): an O(1) clone that shares its nodes, and
/// writes that copy only the nodes on their path.
pub(crate) type PMap<K, V> = GenericHashMap<K, V, FxBuildHasher, DefaultSharedPtr>;

/// Entries per shared chunk of the snapshot's slot vectors. Measured (`service_bench apply`
/// and `acl`, 100 000 SAPs): with 64 a snapshot holds thousands of chunk pointers, whose
/// reference counts (one cache miss each) made cloning and dropping a snapshot cost more than
/// copying a larger chunk does, and the pointer arrays crowded the packet path's cache.
pub(crate) const CHUNK: usize = 1024;

/// The slot vector of one kind of object.
pub(crate) type SlotVec<T> = CowVec<Option<T>, CHUNK>;

/// The service configuration the packet path reads: immutable, shared through `Arc`, swapped
/// whole. Built by [`ServiceTablesBuilder`]. Consecutive snapshots share what did not change
/// (slot vectors in copy-on-write chunks, persistent maps), so building one costs in
/// proportion to the change, not to the configuration.
#[derive(Debug, Clone, Default)]
pub struct ServiceTables {
    pub(crate) ports: Vec<Option<PortEntry>>,
    pub(crate) exact: crate::sap::SapIndex,
    pub(crate) saps: SlotVec<SapEntry>,
    pub(crate) services: SlotVec<ServiceEntry>,
    pub(crate) filters: SlotVec<FilterEntry>,
    pub(crate) policers: SlotVec<PolicerEntry>,
    pub(crate) tunnels: PMap<TunnelKey, u32>,
    pub(crate) sap_ids: PMap<SapId, u32>,
    pub(crate) service_ids: PMap<ServiceId, u32>,
    pub(crate) filter_ids: PMap<(FilterKind, u32), u32>,
    pub(crate) policer_ids: PMap<PolicerId, u32>,
    pub(crate) has_vpls: bool,
    /// This snapshot's number (unique per process), the number of the snapshot it was built
    /// from, and the slots changed since that one: a stage that has the base installed
    /// reconciles only those.
    pub(crate) epoch: u64,
    pub(crate) base: u64,
    pub(crate) changed: Arc<Changed>,
}

/// Slots changed between two snapshots (repeats allowed).
#[derive(Debug, Clone, Default)]
pub(crate) struct Changed {
    pub saps: Vec<u32>,
    pub services: Vec<u32>,
    pub filters: Vec<u32>,
    pub policers: Vec<u32>,
}

/// Object generations, unique in the process (builders share the counter).
static GENERATIONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// Snapshot numbers, unique in the process (builders share the counter).
static EPOCHS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl ServiceTables {
    /// Number of SAPs.
    pub fn sap_count(&self) -> usize {
        self.sap_ids.len()
    }

    /// Number of services.
    pub fn service_count(&self) -> usize {
        self.service_ids.len()
    }

    /// The SAPs, in id order.
    pub fn sap_ids(&self) -> Vec<SapId> {
        let mut ids: Vec<SapId> = self.sap_ids.keys().copied().collect();
        ids.sort();
        ids
    }

    /// The SAPs of a service, in id order.
    pub fn saps_of(&self, service: ServiceId) -> Vec<SapId> {
        let Some(&slot) = self.service_ids.get(&service) else {
            return Vec::new();
        };
        let mut ids: Vec<SapId> = self
            .saps
            .iter()
            .flatten()
            .filter(|sap| sap.service == slot)
            .map(|sap| sap.id)
            .collect();
        ids.sort();
        ids
    }

    pub(crate) fn sap(&self, slot: u32) -> Option<&SapEntry> {
        self.saps.get(slot as usize)?.as_ref()
    }

    pub(crate) fn service(&self, slot: u32) -> Option<&ServiceEntry> {
        self.services.get(slot as usize)?.as_ref()
    }

    pub(crate) fn filter(&self, slot: u32) -> Option<&FilterEntry> {
        self.filters.get(slot as usize)?.as_ref()
    }

    pub(crate) fn policer(&self, slot: u32) -> Option<&PolicerEntry> {
        self.policers.get(slot as usize)?.as_ref()
    }
}

/// Slot allocation for one kind of object.
#[derive(Debug, Clone, Default)]
struct Slots {
    free: Vec<u32>,
    next: u32,
}

impl Slots {
    fn take(&mut self, max: u32) -> Option<u32> {
        if let Some(slot) = self.free.pop() {
            return Some(slot);
        }
        if self.next > max {
            return None;
        }
        self.next += 1;
        Some(self.next - 1)
    }
}

/// Stores `value` in `slot` and notes the slot as changed.
fn put<T: Clone>(vec: &mut SlotVec<T>, dirty: &mut Vec<u32>, slot: u32, value: T) {
    dirty.push(slot);
    vec.set(slot as usize, Some(value));
}

/// Validates specs into a [`ServiceTables`]. Long-lived on the control side: it keeps the
/// specs, the slots and the working snapshot, every operation validates completely before it
/// changes anything (an `Err` changed nothing), and [`ServiceTablesBuilder::build`] hands out
/// a snapshot to install. For an all-or-nothing transaction of several operations, clone the
/// builder, apply them to the clone, and keep the clone only if all succeeded.
#[derive(Debug, Clone, Default)]
pub struct ServiceTablesBuilder {
    tables: ServiceTables,
    port_specs: HashMap<PortId, PortSpec>,
    // The specs are persistent maps of shared values, so that cloning the builder (a
    // transaction) is O(1) and a write copies a few trie nodes of pointers.
    sap_specs: PMap<SapId, Arc<SapSpec>>,
    service_specs: PMap<ServiceId, Arc<ServiceSpec>>,
    filter_specs: PMap<(FilterKind, u32), Arc<FilterSpec>>,
    policer_specs: PMap<PolicerId, PolicerSpec>,
    /// The SAPs of each service, in id order.
    service_saps: PMap<ServiceId, OrdSet<SapId>>,
    /// Per port, how many `*.i`, `o.0` and `o.*` SAPs it has (lookup shortcuts).
    pattern_counts: HashMap<PortId, [u32; 3]>,
    /// The GRE demultiplexing key of each Epipe slot with a tunnel.
    tunnel_keys: PMap<u32, TunnelKey>,
    /// Slots changed since the last build.
    dirty: Changed,
    /// VPLS services configured (the stage allocates its MAC table for the first).
    vpls_count: usize,
    sap_slots: Slots,
    service_slots: Slots,
    filter_slots: Slots,
    policer_slots: Slots,
}

impl ServiceTablesBuilder {
    /// An empty configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// A generation no other object of the process has had: two builders (a rebuilt
    /// configuration) never hand out the same one, so their objects are never confused.
    fn next_generation(&mut self) -> u32 {
        loop {
            let generation = GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Generation 0 means "no object" in the stage's state.
            if generation != 0 {
                return generation;
            }
        }
    }

    /// A snapshot of the configuration as it is now. It records what changed since the
    /// previous one, so that installing it over that one costs in proportion to the change.
    pub fn build(&mut self) -> Arc<ServiceTables> {
        self.tables.base = self.tables.epoch;
        self.tables.epoch = EPOCHS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.tables.changed = Arc::new(std::mem::take(&mut self.dirty));
        Arc::new(self.tables.clone())
    }

    /// The snapshot being built (read-only).
    pub fn tables(&self) -> &ServiceTables {
        &self.tables
    }

    /// The spec of a SAP.
    pub fn sap(&self, id: &SapId) -> Option<&SapSpec> {
        self.sap_specs.get(id).map(|spec| &**spec)
    }

    /// The spec of a service.
    pub fn service(&self, id: ServiceId) -> Option<&ServiceSpec> {
        self.service_specs.get(&id).map(|spec| &**spec)
    }

    // --- ports -----------------------------------------------------------------------

    /// Adds or changes an access port. Its encapsulation cannot change while it has SAPs.
    pub fn set_port(&mut self, spec: PortSpec) -> Result<(), ServiceError> {
        if spec.outer_tpid != EtherType::VLAN && spec.outer_tpid != EtherType::QINQ {
            return Err(ServiceError::Tpid(spec.outer_tpid));
        }
        if let Some(mtu) = spec.mtu {
            if !(64..=9216).contains(&mtu) {
                return Err(ServiceError::Mtu(mtu));
            }
        }
        if let Some(old) = self.port_specs.get(&spec.port) {
            if old.encap != spec.encap && self.sap_specs.keys().any(|id| id.port == spec.port) {
                return Err(ServiceError::PortInUse(spec.port));
            }
        }
        self.port_specs.insert(spec.port, spec);
        let saps = match self.tables.ports.get(usize::from(spec.port)) {
            Some(Some(entry)) if entry.saps.encap == spec.encap => PortSaps {
                outer_tpid: spec.outer_tpid,
                ..entry.saps
            },
            _ => PortSaps::new(spec.encap, spec.outer_tpid),
        };
        let i = usize::from(spec.port);
        if self.tables.ports.len() <= i {
            self.tables.ports.resize(i + 1, None);
        }
        self.tables.ports[i] = Some(PortEntry { saps });
        // TPID and MTU are copied into the SAPs of the port.
        let ids: Vec<SapId> = self
            .sap_specs
            .keys()
            .filter(|id| id.port == spec.port)
            .copied()
            .collect();
        for id in ids {
            self.refresh_sap(&id);
        }
        Ok(())
    }

    /// Removes an access port (refused while it has SAPs).
    pub fn remove_port(&mut self, port: PortId) -> Result<(), ServiceError> {
        if !self.port_specs.contains_key(&port) {
            return Err(ServiceError::NoPort(port));
        }
        if self.sap_specs.keys().any(|id| id.port == port) {
            return Err(ServiceError::PortInUse(port));
        }
        self.port_specs.remove(&port);
        if let Some(entry) = self.tables.ports.get_mut(usize::from(port)) {
            *entry = None;
        }
        Ok(())
    }

    // --- policers --------------------------------------------------------------------

    /// Adds or changes a policer (a changed policer keeps its slot, so its buckets and
    /// counters survive).
    pub fn set_policer(&mut self, spec: PolicerSpec) -> Result<(), ServiceError> {
        let params = PolicerParams::new(spec.config).map_err(|source| ServiceError::Policer {
            id: spec.id,
            source,
        })?;
        let (slot, generation) = match self.tables.policer_ids.get(&spec.id) {
            Some(&slot) => (slot, self.tables.policer(slot).map_or(0, |p| p.generation)),
            None => {
                let slot = self
                    .policer_slots
                    .take(u32::MAX - 1)
                    .ok_or(ServiceError::TooMany("policers"))?;
                (slot, self.next_generation())
            }
        };
        self.policer_specs.insert(spec.id, spec);
        self.tables.policer_ids.insert(spec.id, slot);
        put(
            &mut self.tables.policers,
            &mut self.dirty.policers,
            slot,
            PolicerEntry { generation, params },
        );
        Ok(())
    }

    fn policer_users(&self, id: PolicerId) -> bool {
        self.sap_specs
            .values()
            .any(|s| s.ingress.policer == Some(id) || s.egress.policer == Some(id))
            || self.filter_specs.values().any(|f| {
                f.entries
                    .iter()
                    .any(|e| e.action == FilterAction::RateLimit { policer: id })
            })
    }

    /// Removes a policer (refused while a SAP or filter entry uses it).
    pub fn remove_policer(&mut self, id: PolicerId) -> Result<(), ServiceError> {
        let Some(&slot) = self.tables.policer_ids.get(&id) else {
            return Err(ServiceError::NoPolicer(id));
        };
        if self.policer_users(id) {
            return Err(ServiceError::InUse(format!("policer {id}")));
        }
        self.policer_specs.remove(&id);
        self.tables.policer_ids.remove(&id);
        if let Some(entry) = self.tables.policers.get_mut(slot as usize) {
            *entry = None;
        }
        self.dirty.policers.push(slot);
        self.policer_slots.free.push(slot);
        Ok(())
    }

    // --- filters ---------------------------------------------------------------------

    fn compile_filter(&self, spec: &FilterSpec) -> Result<(RuleSet, Vec<u32>), ServiceError> {
        let mut rules = Vec::with_capacity(spec.entries.len());
        for entry in &spec.entries {
            let matcher = match (spec.kind, entry.matcher) {
                (FilterKind::Mac, m @ Match::Mac(_)) => m,
                (FilterKind::Ip, Match::Ip(mut ip)) | (FilterKind::Ipv6, Match::Ip(mut ip)) => {
                    let family = if spec.kind == FilterKind::Ip {
                        IpFamily::V4
                    } else {
                        IpFamily::V6
                    };
                    if ip.family.is_some_and(|f| f != family) {
                        return Err(ServiceError::FilterEntryKind {
                            kind: spec.kind,
                            id: spec.id,
                            entry: entry.id,
                        });
                    }
                    ip.family = Some(family);
                    Match::Ip(ip)
                }
                _ => {
                    return Err(ServiceError::FilterEntryKind {
                        kind: spec.kind,
                        id: spec.id,
                        entry: entry.id,
                    })
                }
            };
            let action = match entry.action {
                FilterAction::Forward => RuleAction::FORWARD,
                FilterAction::Drop => RuleAction::DROP,
                FilterAction::RateLimit { policer } => {
                    let slot = *self
                        .tables
                        .policer_ids
                        .get(&policer)
                        .ok_or(ServiceError::NoPolicer(policer))?;
                    RuleAction {
                        disposition: Disposition::Forward,
                        policer: Some(slot),
                        account: false,
                    }
                }
            };
            rules.push(Rule {
                order: entry.id,
                matches: vec![matcher],
                action,
            });
        }
        let default = RuleAction {
            disposition: spec.default_action,
            policer: None,
            account: false,
        };
        let set = acl::compile(&rules, default).map_err(|source| ServiceError::Filter {
            kind: spec.kind,
            id: spec.id,
            source,
        })?;
        let mut entry_ids: Vec<u32> = spec.entries.iter().map(|e| e.id).collect();
        entry_ids.sort_unstable();
        Ok((set, entry_ids))
    }

    /// Adds or changes a filter (validated and compiled; entry hit counters are kept by
    /// entry id).
    pub fn set_filter(&mut self, spec: FilterSpec) -> Result<(), ServiceError> {
        let (rules, entry_ids) = self.compile_filter(&spec)?;
        let key = (spec.kind, spec.id);
        let (slot, generation) = match self.tables.filter_ids.get(&key) {
            Some(&slot) => (slot, self.tables.filter(slot).map_or(0, |f| f.generation)),
            None => {
                let slot = self
                    .filter_slots
                    .take(u32::MAX - 1)
                    .ok_or(ServiceError::TooMany("filters"))?;
                (slot, self.next_generation())
            }
        };
        self.tables.filter_ids.insert(key, slot);
        put(
            &mut self.tables.filters,
            &mut self.dirty.filters,
            slot,
            FilterEntry {
                generation,
                rules: Arc::new(rules),
                entry_ids: entry_ids.into(),
            },
        );
        self.filter_specs.insert(key, Arc::new(spec));
        Ok(())
    }

    /// Removes a filter (refused while a SAP uses it).
    pub fn remove_filter(&mut self, kind: FilterKind, id: u32) -> Result<(), ServiceError> {
        let Some(&slot) = self.tables.filter_ids.get(&(kind, id)) else {
            return Err(ServiceError::NoFilter { kind, id });
        };
        let uses = |d: &SapDirection| match kind {
            FilterKind::Mac => d.mac_filter == Some(id),
            FilterKind::Ip => d.ip_filter == Some(id),
            FilterKind::Ipv6 => d.ipv6_filter == Some(id),
        };
        if self
            .sap_specs
            .values()
            .any(|s| uses(&s.ingress) || uses(&s.egress))
        {
            return Err(ServiceError::InUse(format!("{kind:?} filter {id}")));
        }
        self.filter_specs.remove(&(kind, id));
        self.tables.filter_ids.remove(&(kind, id));
        if let Some(entry) = self.tables.filters.get_mut(slot as usize) {
            *entry = None;
        }
        self.dirty.filters.push(slot);
        self.filter_slots.free.push(slot);
        Ok(())
    }

    // --- services --------------------------------------------------------------------

    fn check_service(&self, spec: &ServiceSpec) -> Result<(), ServiceError> {
        let id = spec.id();
        let saps: Vec<&SapSpec> = self
            .service_saps
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|sap| self.sap(sap))
            .collect();
        if let Some(old) = self.service(id) {
            if std::mem::discriminant(old) != std::mem::discriminant(spec) && !saps.is_empty() {
                return Err(ServiceError::ServiceInUse(id));
            }
        }
        match spec {
            ServiceSpec::Epipe(e) => {
                check_mtu(e.mtu)?;
                if let Some(gre) = &e.gre {
                    check_gre(gre)?;
                    if saps.len() > 1 {
                        return Err(ServiceError::EpipeFull(id));
                    }
                    let key = TunnelKey::of(gre);
                    if let Some(&other) = self.tables.tunnels.get(&key) {
                        if self.tables.service(other).map(|s| s.id) != Some(id) {
                            return Err(ServiceError::DuplicateTunnel(id));
                        }
                    }
                }
            }
            ServiceSpec::Vpls(v) => {
                check_mtu(v.mtu)?;
                if v.age_secs == 0 {
                    return Err(ServiceError::AgeTime(id));
                }
                for sap in &saps {
                    if let Some(group) = &sap.split_horizon_group {
                        if !v.split_horizon_groups.contains(group) {
                            return Err(ServiceError::NoSplitHorizonGroup {
                                service: id,
                                group: group.clone(),
                            });
                        }
                    }
                }
                if v.split_horizon_groups.len() >= usize::from(u16::MAX) {
                    return Err(ServiceError::TooMany("split-horizon groups"));
                }
            }
            ServiceSpec::L3(l3) => {
                let mut seen = std::collections::BTreeSet::new();
                for pair in &l3.interfaces {
                    if pair.sap == pair.tap || !seen.insert(pair.sap) || !seen.insert(pair.tap) {
                        return Err(ServiceError::L3Pair(l3.id));
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds or changes a service. Its type cannot change while it has SAPs.
    pub fn set_service(&mut self, spec: ServiceSpec) -> Result<(), ServiceError> {
        self.check_service(&spec)?;
        let id = spec.id();
        let existing = self.tables.service_ids.get(&id).copied();
        let max = if matches!(spec, ServiceSpec::Vpls(_)) {
            MAX_BRIDGE_SLOT
        } else {
            u32::MAX - 1
        };
        let slot = match existing {
            Some(slot) if slot <= max => slot,
            Some(_) => return Err(ServiceError::TooMany("VPLS services")),
            None => self
                .service_slots
                .take(max)
                .ok_or(ServiceError::TooMany("services"))?,
        };
        let generation = match existing.and_then(|s| self.tables.service(s)) {
            Some(entry) => entry.generation,
            None => self.next_generation(),
        };
        let was_vpls = matches!(self.service(id), Some(ServiceSpec::Vpls(_)));
        let is_vpls = matches!(spec, ServiceSpec::Vpls(_));
        self.service_specs.insert(id, Arc::new(spec));
        if was_vpls != is_vpls {
            self.count_vpls_change(is_vpls);
        }
        self.tables.service_ids.insert(id, slot);
        // A placeholder the refresh below fills in.
        put(
            &mut self.tables.services,
            &mut self.dirty.services,
            slot,
            ServiceEntry {
                id,
                generation,
                down: false,
                mtu: DEFAULT_SERVICE_MTU,
                kind: ServiceKind::L3(crate::pcc::RoutingInstance::Base),
            },
        );
        self.refresh_service(id, None);
        Ok(())
    }

    fn count_vpls_change(&mut self, added: bool) {
        if added {
            self.vpls_count += 1;
        } else {
            self.vpls_count = self.vpls_count.saturating_sub(1);
        }
        self.tables.has_vpls = self.vpls_count > 0;
    }

    /// Removes a service (refused while it has SAPs).
    pub fn remove_service(&mut self, id: ServiceId) -> Result<(), ServiceError> {
        let Some(&slot) = self.tables.service_ids.get(&id) else {
            return Err(ServiceError::NoService(id));
        };
        if self
            .service_saps
            .get(&id)
            .is_some_and(|saps| !saps.is_empty())
        {
            return Err(ServiceError::ServiceInUse(id));
        }
        self.service_saps.remove(&id);
        if let Some(ServiceSpec::Vpls(_)) = self.service_specs.remove(&id).as_deref() {
            self.count_vpls_change(false);
        }
        self.tables.service_ids.remove(&id);
        if let Some(entry) = self.tables.services.get_mut(slot as usize) {
            *entry = None;
        }
        self.dirty.services.push(slot);
        self.service_slots.free.push(slot);
        if let Some(key) = self.tunnel_keys.remove(&slot) {
            self.tables.tunnels.remove(&key);
        }
        Ok(())
    }

    /// Rebuilds a service's entry (and its SAPs', which copy service fields) from the specs.
    ///
    /// With `changed_sap` (the id and slot of a SAP of it just added, changed or removed, the
    /// service itself unchanged), only that SAP's entry is rebuilt, and in an Epipe its
    /// peer's: the other SAPs of a VPLS copy nothing that depends on their siblings, and
    /// rewriting them all would copy every chunk of the snapshot they live in. A VPLS then
    /// updates its member and static-MAC lists from the previous ones instead of reading
    /// every SAP's spec.
    fn refresh_service(&mut self, id: ServiceId, changed_sap: Option<(SapId, u32)>) {
        let (Some(spec), Some(&slot)) = (
            self.service_specs
                .get(&id)
                .map(|spec| ServiceSpec::clone(spec)),
            self.tables.service_ids.get(&id),
        ) else {
            return;
        };
        let previous_vpls = match self.tables.service(slot).map(|s| &s.kind) {
            Some(ServiceKind::Vpls(vpls)) => Some(vpls.clone()),
            _ => None,
        };
        let incremental = changed_sap.is_some() && previous_vpls.is_some();
        let sap_slots: Vec<(SapId, u32)> = match changed_sap {
            Some(changed) if incremental => vec![changed],
            _ => self
                .service_saps
                .get(&id)
                .into_iter()
                .flatten()
                .filter_map(|sap| Some((*sap, *self.tables.sap_ids.get(sap)?)))
                .collect(),
        };
        let (down, mtu, kind) = match &spec {
            ServiceSpec::Epipe(e) => {
                let mut saps = [None, None];
                for (i, (_, slot)) in sap_slots.iter().take(2).enumerate() {
                    saps[i] = Some(*slot);
                }
                let gre = e.gre.map(|g| Arc::new(gre_entry(g)));
                if let Some(key) = self.tunnel_keys.remove(&slot) {
                    self.tables.tunnels.remove(&key);
                }
                if let Some(g) = &e.gre {
                    let key = TunnelKey::of(g);
                    self.tables.tunnels.insert(key, slot);
                    self.tunnel_keys.insert(slot, key);
                }
                (e.shutdown, e.mtu, ServiceKind::Epipe { saps, gre })
            }
            ServiceSpec::Vpls(v) => {
                let (members, statics) = match (&previous_vpls, changed_sap) {
                    (Some(previous), Some((sap_id, sap_slot))) if incremental => {
                        self.vpls_lists_after(previous, &sap_id, sap_slot)
                    }
                    _ => self.vpls_lists(&sap_slots),
                };
                (
                    v.shutdown,
                    v.mtu,
                    ServiceKind::Vpls(Arc::new(VplsEntry {
                        spec: v.clone(),
                        members,
                        statics,
                    })),
                )
            }
            ServiceSpec::L3(l3) => (
                false,
                DEFAULT_SERVICE_MTU,
                ServiceKind::L3(l3.routing_instance()),
            ),
        };
        self.dirty.services.push(slot);
        if let Some(Some(entry)) = self.tables.services.get_mut(slot as usize) {
            entry.down = down;
            entry.mtu = mtu;
            entry.kind = kind;
        }
        // An Epipe's SAPs and an L3 interface's SAP and TAP point at each other: both ends are
        // rewritten when one changes.
        let paired = matches!(spec, ServiceSpec::Epipe(_) | ServiceSpec::L3(_));
        for (sap_id, _) in sap_slots {
            if paired || changed_sap.is_none_or(|(changed, _)| changed == sap_id) {
                self.refresh_sap(&sap_id);
            }
        }
    }

    /// The flooding members (in slot order) and static MACs of a VPLS with `saps`.
    fn vpls_lists(&self, saps: &[(SapId, u32)]) -> (Vec<u32>, Vec<(u64, u32)>) {
        let mut members = Vec::new();
        let mut statics = Vec::new();
        for (sap_id, sap_slot) in saps {
            let Some(sap) = self.sap_specs.get(sap_id) else {
                continue;
            };
            if !sap.capture {
                members.push(*sap_slot);
            }
            for mac in &sap.static_macs {
                statics.push((acl::mac_bits(*mac), *sap_slot));
            }
        }
        members.sort_unstable();
        statics.sort_unstable();
        (members, statics)
    }

    /// The lists of `previous` after SAP `sap_id` in `sap_slot` was added, changed or
    /// removed: O(members) copying, no lookups.
    fn vpls_lists_after(
        &self,
        previous: &VplsEntry,
        sap_id: &SapId,
        sap_slot: u32,
    ) -> (Vec<u32>, Vec<(u64, u32)>) {
        let spec = self.sap_specs.get(sap_id);
        let mut members = previous.members.clone();
        let forwards = spec.is_some_and(|sap| !sap.capture);
        match (members.binary_search(&sap_slot), forwards) {
            (Ok(i), false) => {
                members.remove(i);
            }
            (Err(i), true) => members.insert(i, sap_slot),
            _ => {}
        }
        let mut statics: Vec<(u64, u32)> = previous
            .statics
            .iter()
            .filter(|(_, slot)| *slot != sap_slot)
            .copied()
            .collect();
        if let Some(sap) = spec {
            statics.extend(
                sap.static_macs
                    .iter()
                    .map(|mac| (acl::mac_bits(*mac), sap_slot)),
            );
            statics.sort_unstable();
        }
        (members, statics)
    }

    // --- SAPs ------------------------------------------------------------------------

    fn filter_slot(&self, kind: FilterKind, id: Option<u32>) -> Result<Option<u32>, ServiceError> {
        id.map(|id| {
            self.tables
                .filter_ids
                .get(&(kind, id))
                .copied()
                .ok_or(ServiceError::NoFilter { kind, id })
        })
        .transpose()
    }

    fn dir_entry(&self, d: &SapDirection) -> Result<DirEntry, ServiceError> {
        Ok(DirEntry {
            filters: [
                self.filter_slot(FilterKind::Mac, d.mac_filter)?,
                self.filter_slot(FilterKind::Ip, d.ip_filter)?,
                self.filter_slot(FilterKind::Ipv6, d.ipv6_filter)?,
            ],
            policer: d
                .policer
                .map(|id| {
                    self.tables
                        .policer_ids
                        .get(&id)
                        .copied()
                        .ok_or(ServiceError::NoPolicer(id))
                })
                .transpose()?,
        })
    }

    fn check_sap(&self, spec: &SapSpec) -> Result<(), ServiceError> {
        spec.id.encap.validate().map_err(ServiceError::Encap)?;
        let port = self
            .port_specs
            .get(&spec.id.port)
            .ok_or(ServiceError::NoPort(spec.id.port))?;
        if !spec.id.encap.fits(port.encap) {
            return Err(ServiceError::Encap(
                crate::sap::SapEncapError::PortMismatch {
                    sap: spec.id.encap,
                    port: port.encap,
                },
            ));
        }
        let service = self
            .service(spec.service)
            .ok_or(ServiceError::NoService(spec.service))?;
        if let Some(old) = self.sap_specs.get(&spec.id) {
            if old.service != spec.service {
                return Err(ServiceError::SapInOtherService {
                    sap: spec.id,
                    service: old.service,
                });
            }
        }
        self.dir_entry(&spec.ingress)?;
        self.dir_entry(&spec.egress)?;
        if let Some(limit) = spec.bum_limit {
            if limit.pps == 0 || limit.burst == 0 {
                return Err(ServiceError::BumLimit(spec.id));
            }
        }
        let vpls_only = spec.capture
            || spec.split_horizon_group.is_some()
            || spec.max_mac.is_some()
            || spec.discard_unknown_source
            || !spec.static_macs.is_empty()
            || spec.bum_limit.is_some();
        match service {
            ServiceSpec::Vpls(v) => {
                if let Some(group) = &spec.split_horizon_group {
                    if !v.split_horizon_groups.contains(group) {
                        return Err(ServiceError::NoSplitHorizonGroup {
                            service: v.id,
                            group: group.clone(),
                        });
                    }
                }
                let mut seen = std::collections::HashSet::new();
                for mac in &spec.static_macs {
                    if mac.is_multicast() || *mac == MacAddr::default() || !seen.insert(*mac) {
                        return Err(ServiceError::StaticMac(*mac));
                    }
                    let taken = self
                        .service_saps
                        .get(&v.id)
                        .into_iter()
                        .flatten()
                        .filter(|other| **other != spec.id)
                        .filter_map(|other| self.sap_specs.get(other))
                        .any(|other| other.static_macs.contains(mac));
                    if taken {
                        return Err(ServiceError::StaticMac(*mac));
                    }
                }
                if spec.capture
                    && (spec.ingress.ip_filter.is_some()
                        || spec.ingress.ipv6_filter.is_some()
                        || spec.ingress.policer.is_some()
                        || spec.egress != SapDirection::default()
                        || !spec.static_macs.is_empty())
                {
                    return Err(ServiceError::CaptureSap(spec.id));
                }
            }
            ServiceSpec::Epipe(e) => {
                if vpls_only {
                    return Err(ServiceError::VplsOnly(spec.id));
                }
                let others = self
                    .service_saps
                    .get(&e.id)
                    .map_or(0, |saps| saps.iter().filter(|s| **s != spec.id).count());
                if others + usize::from(e.gre.is_some()) >= 2 {
                    return Err(ServiceError::EpipeFull(e.id));
                }
            }
            ServiceSpec::L3(l3) => {
                if vpls_only {
                    return Err(ServiceError::VplsOnly(spec.id));
                }
                let left_to_the_kernel = l3.peer_of(&spec.id).is_none();
                let qos = spec.ingress != SapDirection::default()
                    || spec.egress != SapDirection::default();
                if left_to_the_kernel && qos {
                    return Err(ServiceError::L3Qos(spec.id));
                }
            }
        }
        Ok(())
    }

    /// Adds or changes a SAP. A SAP cannot move to another service (remove it first).
    pub fn set_sap(&mut self, spec: SapSpec) -> Result<(), ServiceError> {
        self.check_sap(&spec)?;
        let id = spec.id;
        let service = spec.service;
        if !self.tables.sap_ids.contains_key(&id) {
            let slot = self
                .sap_slots
                .take(MAX_SAP_SLOT)
                .ok_or(ServiceError::TooMany("SAPs"))?;
            self.tables.sap_ids.insert(id, slot);
            let generation = self.next_generation();
            // Placeholder; refresh_sap fills it in.
            put(
                &mut self.tables.saps,
                &mut self.dirty.saps,
                slot,
                SapEntry {
                    id,
                    generation,
                    service: 0,
                    role: SapRole::L3,
                    down: true,
                    port: id.port,
                    outer_tpid: EtherType::VLAN,
                    port_mtu: 0,
                    service_mtu: 0,
                    egress_tags: EgressTags::NONE,
                    ingress: DirEntry::default(),
                    egress: DirEntry::default(),
                    shg: 0,
                    max_mac: u32::MAX,
                    discard_unknown_source: false,
                    static_count: 0,
                    bum_limit: None,
                    learn: false,
                    age: false,
                    peer: Peer::None,
                    subscriber_side: None,
                },
            );
            self.index_sap(&id, slot, true);
        }
        self.sap_specs.insert(id, Arc::new(spec));
        self.service_saps.entry(service).or_default().insert(id);
        if let Some(&slot) = self.tables.sap_ids.get(&id) {
            self.refresh_service(service, Some((id, slot)));
        }
        Ok(())
    }

    /// Removes a SAP.
    pub fn remove_sap(&mut self, id: &SapId) -> Result<(), ServiceError> {
        let Some(spec) = self.sap_specs.remove(id) else {
            return Err(ServiceError::NoSap(*id));
        };
        if let Some(saps) = self.service_saps.get_mut(&spec.service) {
            saps.remove(id);
        }
        let slot = self.tables.sap_ids.remove(id);
        if let Some(slot) = slot {
            self.index_sap(id, slot, false);
            if let Some(entry) = self.tables.saps.get_mut(slot as usize) {
                *entry = None;
            }
            self.dirty.saps.push(slot);
            self.sap_slots.free.push(slot);
        }
        self.refresh_service(spec.service, slot.map(|slot| (*id, slot)));
        Ok(())
    }

    /// Adds or removes a SAP in its port's lookup structures.
    fn index_sap(&mut self, id: &SapId, slot: u32, add: bool) {
        let value = add.then_some(slot);
        if let Some(key) = id.encap.exact_key(id.port) {
            if add {
                self.tables.exact.insert(key, slot);
            } else {
                self.tables.exact.remove(key);
            }
        }
        let pattern = match id.encap {
            SapEncap::Qinq {
                outer: Tag::Any,
                inner: Tag::Id(_),
            } => Some(0),
            SapEncap::Qinq {
                outer: Tag::Id(_),
                inner: Tag::Untagged,
            } => Some(1),
            SapEncap::Qinq {
                outer: Tag::Id(_),
                inner: Tag::Any,
            } => Some(2),
            _ => None,
        };
        let counts = self.pattern_counts.entry(id.port).or_default();
        if let Some(i) = pattern {
            counts[i] = if add {
                counts[i] + 1
            } else {
                counts[i].saturating_sub(1)
            };
        }
        let counts = *counts;
        let Some(Some(port)) = self.tables.ports.get_mut(usize::from(id.port)) else {
            return;
        };
        match id.encap {
            SapEncap::Null
            | SapEncap::Dot1q { tag: Tag::Untagged }
            | SapEncap::Qinq {
                outer: Tag::Untagged,
                ..
            } => port.saps.untagged = value,
            SapEncap::Dot1q { tag: Tag::Any }
            | SapEncap::Qinq {
                outer: Tag::Any,
                inner: Tag::Any,
            } => port.saps.any = value,
            _ => {}
        }
        port.saps.has_any_inner = counts[0] > 0;
        port.saps.has_outer_zero = counts[1] > 0;
        port.saps.has_outer_any = counts[2] > 0;
    }

    /// Rebuilds a SAP's entry from its spec, its port and its service.
    fn refresh_sap(&mut self, id: &SapId) {
        let Some(spec) = self.sap_specs.get(id) else {
            return;
        };
        let (Some(&slot), Some(&service_slot)) = (
            self.tables.sap_ids.get(id),
            self.tables.service_ids.get(&spec.service),
        ) else {
            return;
        };
        let Some(port) = self.port_specs.get(&id.port) else {
            return;
        };
        let Some(service) = self.tables.service(service_slot) else {
            return;
        };
        let mut subscriber_side = None;
        let (role, peer, shg) = match (&service.kind, self.service(spec.service)) {
            (ServiceKind::Epipe { saps, gre }, _) => {
                let peer = if gre.is_some() {
                    Peer::Gre
                } else {
                    saps.iter()
                        .flatten()
                        .find(|&&s| s != slot)
                        .map_or(Peer::None, |&s| Peer::Sap(s))
                };
                (SapRole::Epipe, peer, 0)
            }
            (ServiceKind::Vpls(_), Some(ServiceSpec::Vpls(v))) => {
                let shg = spec
                    .split_horizon_group
                    .as_ref()
                    .and_then(|g| v.split_horizon_groups.iter().position(|x| x == g))
                    .map_or(0, |i| i as u16 + 1);
                let role = if spec.capture {
                    SapRole::Capture
                } else {
                    SapRole::Vpls
                };
                (role, Peer::None, shg)
            }
            (ServiceKind::L3(_), Some(ServiceSpec::L3(l3))) => {
                let peer = l3
                    .peer_of(id)
                    .and_then(|other| self.tables.sap_ids.get(&other))
                    .map_or(Peer::None, |&slot| Peer::Sap(slot));
                subscriber_side = l3.interfaces.iter().find_map(|pair| {
                    if pair.sap == *id {
                        Some(crate::pcc::Direction::Ingress)
                    } else if pair.tap == *id {
                        Some(crate::pcc::Direction::Egress)
                    } else {
                        None
                    }
                });
                (SapRole::L3, peer, 0)
            }
            _ => (SapRole::L3, Peer::None, 0),
        };
        // An interface whose other end (its TAP, or its SAP) is missing is down: its frames
        // have nowhere to go.
        let half_interface = role == SapRole::L3
            && peer == Peer::None
            && matches!(
                self.service_specs.get(&spec.service).map(|s| &**s),
                Some(ServiceSpec::L3(l3)) if l3.peer_of(id).is_some()
            );
        // Every reference was checked by check_sap; a dangling one cannot happen here, and
        // would read as "no filter".
        let ingress = self.dir_entry(&spec.ingress).unwrap_or_default();
        let egress = self.dir_entry(&spec.egress).unwrap_or_default();
        let entry = SapEntry {
            id: *id,
            generation: self.tables.sap(slot).map_or(0, |s| s.generation),
            service: service_slot,
            role,
            down: spec.shutdown || service.down || half_interface,
            port: id.port,
            outer_tpid: port.outer_tpid,
            port_mtu: port.effective_mtu(),
            service_mtu: service.mtu,
            egress_tags: id.encap.egress_tags(),
            ingress,
            egress,
            shg,
            max_mac: spec.max_mac.unwrap_or(u32::MAX),
            discard_unknown_source: spec.discard_unknown_source,
            static_count: spec.static_macs.len() as u32,
            bum_limit: spec.bum_limit,
            learn: spec.learning
                && matches!(self.service_specs.get(&spec.service).map(|s| &**s), Some(ServiceSpec::Vpls(v)) if v.learning),
            age: spec.ageing
                && matches!(self.service_specs.get(&spec.service).map(|s| &**s), Some(ServiceSpec::Vpls(v)) if v.ageing),
            peer,
            subscriber_side,
        };
        put(&mut self.tables.saps, &mut self.dirty.saps, slot, entry);
    }
}

fn check_mtu(mtu: u16) -> Result<(), ServiceError> {
    if !(64..=9216).contains(&mtu) {
        return Err(ServiceError::Mtu(mtu));
    }
    Ok(())
}

fn check_gre(gre: &GreSpec) -> Result<(), ServiceError> {
    if gre.local.is_ipv4() != gre.remote.is_ipv4() {
        return Err(ServiceError::Gre(
            "local and remote must be of one family".into(),
        ));
    }
    if gre.ttl == 0 {
        return Err(ServiceError::Gre("TTL must be at least 1".into()));
    }
    if gre.vlan.is_some_and(|v| !(1..=4094).contains(&v)) {
        return Err(ServiceError::Gre("VLAN id must be 1 to 4094".into()));
    }
    if gre.next_hop.is_multicast() {
        return Err(ServiceError::Gre("the next-hop MAC must be unicast".into()));
    }
    if !(576..=9216).contains(&gre.mtu) {
        return Err(ServiceError::Gre(format!(
            "MTU {} is not 576 to 9216",
            gre.mtu
        )));
    }
    Ok(())
}

/// The outer headers of a GRE endpoint, with zero lengths and checksum (filled per packet).
fn gre_entry(spec: GreSpec) -> GreEntry {
    let gre = GreRepr {
        protocol: TRANSPARENT_ETHERNET,
        checksum: false,
        key: spec.key,
        sequence: None,
    };
    let ip_len = if spec.local.is_ipv4() { 20 } else { 40 };
    let l2 = ethernet::HEADER_LEN
        + if spec.vlan.is_some() {
            vlan::HEADER_LEN
        } else {
            0
        };
    let mut header = vec![0u8; l2 + ip_len + gre.header_len()];
    header[0..6].copy_from_slice(&spec.next_hop.0);
    let ip_type = if spec.local.is_ipv4() {
        EtherType::IPV4
    } else {
        EtherType::IPV6
    };
    match spec.vlan {
        Some(vid) => {
            header[12..14].copy_from_slice(&EtherType::VLAN.to_be_bytes());
            header[14..16].copy_from_slice(&(vid & 0xfff).to_be_bytes());
            header[16..18].copy_from_slice(&ip_type.to_be_bytes());
        }
        None => header[12..14].copy_from_slice(&ip_type.to_be_bytes()),
    }
    match (spec.local, spec.remote) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            protocol: ip_protocol::GRE,
            payload_len: 0,
            ttl: spec.ttl,
            dscp: 0,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut header[l2..l2 + 20])),
        (IpAddr::V6(src), IpAddr::V6(dst)) => Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: ip_protocol::GRE,
            payload_len: 0,
            hop_limit: spec.ttl,
            traffic_class: 0,
        }
        .emit(&mut Ipv6Packet::new_unchecked(&mut header[l2..l2 + 40])),
        // check_gre refused mixed families.
        _ => {}
    }
    gre.emit(&mut GrePacket::new_unchecked(&mut header[l2 + ip_len..]));
    GreEntry {
        spec,
        header,
        ip_offset: l2,
    }
}

/// GRE protocol type of Ethernet frames (transparent Ethernet bridging).
pub const TRANSPARENT_ETHERNET: u16 = 0x6558;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sap::PortEncap;

    fn sap(port: PortId, k: usize) -> SapId {
        SapId {
            port,
            encap: SapEncap::Qinq {
                outer: Tag::Id(1 + (k / 4000) as u16),
                inner: Tag::Id(1 + (k % 4000) as u16),
            },
        }
    }

    fn add_epipe(b: &mut ServiceTablesBuilder, k: usize) {
        let id = k as u32 + 1;
        b.set_service(ServiceSpec::Epipe(EpipeSpec::new(id)))
            .unwrap();
        b.set_sap(SapSpec::new(sap(0, k), id)).unwrap();
        b.set_sap(SapSpec::new(sap(1, k), id)).unwrap();
    }

    /// Chunks of `a` that `b` holds too.
    fn shared<T: Clone + Default, const N: usize>(a: &CowVec<T, N>, b: &CowVec<T, N>) -> usize {
        (0..a.len())
            .step_by(N)
            .filter(|i| a.shares_chunk(b, *i))
            .count()
    }

    #[test]
    fn a_transaction_copies_only_the_chunks_it_changes() {
        let mut b = ServiceTablesBuilder::new();
        for port in 0..2 {
            b.set_port(PortSpec::new(port, PortEncap::Qinq)).unwrap();
        }
        for k in 0..5_000 {
            add_epipe(&mut b, k);
        }
        let before = b.build();
        // A transaction as the control side runs it: on a clone of the builder.
        let mut candidate = b.clone();
        add_epipe(&mut candidate, 5_000);
        let after = candidate.build();
        assert_eq!(after.sap_count(), before.sap_count() + 2);
        let sap_chunks = after.saps.len() / CHUNK;
        assert!(sap_chunks >= 8, "{sap_chunks} chunks of SAPs");
        // The two new SAPs land in one or two chunks, the service in one.
        assert!(shared(&after.saps, &before.saps) >= sap_chunks - 2);
        assert!(shared(&after.services, &before.services) >= after.services.len() / CHUNK - 1);
        let index_chunks = after.exact.chunk_count();
        assert!(index_chunks >= 4, "{index_chunks} chunks of the SAP index");
        assert!(after.exact.shared_chunks(&before.exact) >= index_chunks - 2);
        // Only the changes are listed for the stage, and the old snapshot is untouched.
        assert_eq!(after.base, before.epoch);
        let mut changed = after.changed.saps.clone();
        changed.sort_unstable();
        changed.dedup();
        assert_eq!(changed.len(), 2);
        assert!(changed.iter().all(|slot| before.sap(*slot).is_none()));
        assert!(changed.iter().all(|slot| after.sap(*slot).is_some()));
        // The builder the transaction started from still describes the old configuration.
        assert_eq!(b.tables().sap_count(), before.sap_count());
        assert!(b.sap(&sap(0, 5_000)).is_none());
        assert!(candidate.sap(&sap(0, 5_000)).is_some());
    }
}
