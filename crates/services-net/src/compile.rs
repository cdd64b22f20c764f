//! From brasa-services' configuration to the data plane's service tables.
//!
//! [`Compiler`] keeps the data plane's [`ServiceTablesBuilder`] and the specs it was last given.
//! [`Compiler::prepare`] derives the complete set of specs the new configuration wants (a pure
//! function of the configuration and the ports), compares it with the installed set and applies
//! only the differences — to a copy of the builder, so that a refusal changes nothing. Objects
//! that did not change keep their slots, hence their counters, MACs and policer buckets.
//!
//! Mapping decisions (the data plane is not SR OS):
//! - every SAP direction with a QoS policy gets a policer instance of its own (SR OS's per-SAP
//!   policers), metered with the policy's lowest-numbered policer and the SAP's overrides;
//! - `mode srtcm` is RFC 2697 (CIR, CBS, MBS as EBS), `trtcm1` RFC 2698, `trtcm2` (the
//!   default) RFC 4115 with EIR = PIR − CIR; `max` rates are the data plane's largest;
//! - `stat-mode` `no-stats` and `minimal` are the same in the data plane; every `offered-*`
//!   mode counts per colour (`offered-total-cir`);
//! - an IES/VPRN interface is its SAP cross-connected with its TAP port (see
//!   [`brasa_services::kernel`]).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use brasa_dataplane::acl::{self, Disposition, IpFamily, Match, PortRange, VidMatch};
use brasa_dataplane::pipeline::PortId;
use brasa_dataplane::policer::{self, ColourMode, Meter, PolicerConfig, MAX_RATE_KBPS};
use brasa_dataplane::sap::{PortEncap, SapEncap, SapId as DpSapId, Tag as DpTag};
use brasa_dataplane::service::{
    EpipeSpec, FilterAction, FilterEntrySpec, FilterKind as DpFilterKind, FilterSpec, GreSpec,
    L3Interface, L3Spec, PolicerSpec, PortSpec, SapDirection as DpDirection, SapSpec, ServiceError,
    ServiceSpec, ServiceTables, ServiceTablesBuilder, VplsSpec,
};
use brasa_dataplane::wire::MacAddr as DpMac;
use brasa_services::kernel;
use brasa_services::model::{
    Action, AdminState, Direction, FilterKind, FilterRef, MeterMode, PortMatch, QosRef, Rate, Sap,
    ServiceBody, ServiceId, StatMode,
};
use brasa_services::{Encapsulation, Environment, SapId, SapTags, ServiceConfig, Tag, Transaction};
use imbl::{OrdMap, OrdSet};

/// Why [`Compiler::stage_transaction`] did not take a transaction.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The transaction does not compile, or the data plane's builder refused it; the
    /// compiler is as it was.
    #[error(transparent)]
    Refused(CompileError),
    /// The builder refused the transaction, and then the staged transactions before it when
    /// they were derived again from the base: the compiler is the base, and every staged
    /// transaction must be taken back.
    #[error("{refused}; and the staged transactions before it no longer compile: {again}")]
    Broken {
        /// Why the transaction was refused.
        refused: CompileError,
        /// Why the staged transactions before it were refused when derived again.
        again: CompileError,
    },
}

/// Why a configuration cannot be given to the data plane.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A port of the configuration is not one of the data plane's.
    #[error("port {0} is not a data-plane interface")]
    NoPort(String),
    /// An interface's TAP is not (yet) a data-plane port.
    #[error("the TAP {tap} of {service} interface {interface:?} is not a data-plane port")]
    NoTap {
        /// The service.
        service: ServiceId,
        /// The interface.
        interface: String,
        /// The TAP's name.
        tap: String,
    },
    /// A match criterion the data plane cannot evaluate.
    #[error("{filter} entry {entry}: {what} is not supported by brasa's data plane")]
    Unsupported {
        /// The filter (`ip-filter 10`).
        filter: String,
        /// The entry id.
        entry: u32,
        /// The criterion.
        what: String,
    },
    /// An empty port range (`lt 0`, `gt 65535`).
    #[error("{filter} entry {entry}: the port criterion matches no port")]
    EmptyPortRange {
        /// The filter.
        filter: String,
        /// The entry id.
        entry: u32,
    },
    /// The GRE tunnel's next hop could not be resolved.
    #[error("epipe {service}: GRE tunnel to {remote}: {reason}")]
    GreNextHop {
        /// The service.
        service: ServiceId,
        /// The far end.
        remote: IpAddr,
        /// Why.
        reason: String,
    },
    /// The data plane refused a spec.
    #[error("data plane: {0}")]
    Refused(#[from] ServiceError),
}

/// Where the GRE packets of a tunnel leave: resolved by the shell from the kernel's routes and
/// neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreNextHop {
    /// The data-plane port.
    pub port: PortId,
    /// 802.1Q tag on that port, if any.
    pub vlan: Option<u16>,
    /// The next hop's MAC address.
    pub mac: DpMac,
    /// The largest outer IP packet.
    pub mtu: u16,
}

/// Answers where a tunnel's packets go.
pub trait GreResolver {
    /// The next hop towards `remote` from `local`.
    fn resolve(&self, local: IpAddr, remote: IpAddr) -> Result<GreNextHop, String>;
}

/// A resolver for configurations without GRE tunnels: every lookup fails.
pub struct NoGre;

impl GreResolver for NoGre {
    fn resolve(&self, _: IpAddr, _: IpAddr) -> Result<GreNextHop, String> {
        Err("no GRE next-hop resolution in this context".to_string())
    }
}

/// The complete set of specs a configuration wants from the data plane, with the indexes an
/// incremental compile needs. Persistent maps: a transaction's copy costs O(1) and each entry
/// it recompiles copies a few tree nodes of pointers.
#[derive(Debug, Clone, Default, PartialEq)]
struct Plane {
    ports: OrdMap<PortId, PortSpec>,
    policers: OrdMap<u32, PolicerSpec>,
    filters: OrdMap<(DpFilterKind, u32), Arc<FilterSpec>>,
    services: OrdMap<ServiceId, Arc<ServiceSpec>>,
    saps: OrdMap<DpSapId, Arc<SapSpec>>,
    /// The SAPs of each service (the TAP SAPs of IP interfaces included).
    service_saps: OrdMap<ServiceId, OrdSet<DpSapId>>,
    /// The SAPs that name each QoS policy: a change of the policy recompiles them.
    qos_users: OrdMap<QosRef, OrdSet<SapId>>,
    /// The Epipes with a GRE tunnel, whose next hops every transaction resolves again.
    gre_services: OrdSet<ServiceId>,
}

/// The plane entries a compile may have changed: what [`apply`] compares, in key order.
#[derive(Debug, Default)]
struct Keys {
    ports: BTreeSet<PortId>,
    policers: BTreeSet<u32>,
    filters: BTreeSet<(DpFilterKind, u32)>,
    services: BTreeSet<ServiceId>,
    saps: BTreeSet<DpSapId>,
}

impl Keys {
    /// Every entry of either plane: what a compile of the whole configuration compares.
    fn union(old: &Plane, new: &Plane) -> Self {
        Self {
            ports: old.ports.keys().chain(new.ports.keys()).copied().collect(),
            policers: old
                .policers
                .keys()
                .chain(new.policers.keys())
                .copied()
                .collect(),
            filters: old
                .filters
                .keys()
                .chain(new.filters.keys())
                .copied()
                .collect(),
            services: old
                .services
                .keys()
                .chain(new.services.keys())
                .copied()
                .collect(),
            saps: old.saps.keys().chain(new.saps.keys()).copied().collect(),
        }
    }
}

/// A compiled transaction: the snapshot to install and the compiler state to keep once it is.
pub struct Compiled {
    builder: ServiceTablesBuilder,
    plane: Plane,
    policer_ids: PolicerIds,
    tables: Option<Arc<ServiceTables>>,
}

impl Compiled {
    /// The snapshot to install: the installed one with what changed since, this transaction
    /// and those committed without a snapshot before it (see [`Compiler::build`]).
    pub fn tables(&mut self) -> Arc<ServiceTables> {
        self.tables
            .get_or_insert_with(|| self.builder.build())
            .clone()
    }
}

/// Policer instance ids, stable per (SAP, direction) while the SAP keeps a policer there.
/// A new key takes the lowest free id, so the ids depend only on the order keys are asked for
/// (SAP order, in both compiles), never on the order they were given back.
#[derive(Debug, Clone, Default, PartialEq)]
struct PolicerIds {
    by_sap: OrdMap<(SapId, Direction), u32>,
    free: OrdSet<u32>,
    next: u32,
}

impl PolicerIds {
    fn get(&mut self, key: (SapId, Direction)) -> u32 {
        if let Some(id) = self.by_sap.get(&key) {
            return *id;
        }
        let id = self.free.remove_min().unwrap_or_else(|| {
            self.next += 1;
            self.next
        });
        self.by_sap.insert(key, id);
        id
    }

    fn release(&mut self, key: &(SapId, Direction)) {
        if let Some(id) = self.by_sap.remove(key) {
            self.free.insert(id);
        }
    }

    /// Frees the ids of SAP directions that `config` does not police.
    fn keep_only(&mut self, config: &ServiceConfig) {
        let stale: Vec<(SapId, Direction)> = self
            .by_sap
            .keys()
            .filter(|(sap, dir)| {
                config
                    .sap(sap)
                    .and_then(|s| config.sap_policer(s, *dir))
                    .is_none()
            })
            .cloned()
            .collect();
        for key in &stale {
            self.release(key);
        }
    }
}

/// Keeps the data plane's builder in step with the service configuration. A clone is cheap
/// (persistent maps): what a caller keeps to go back to.
#[derive(Clone, Default)]
pub struct Compiler {
    builder: ServiceTablesBuilder,
    plane: Plane,
    policer_ids: PolicerIds,
}

/// How the compiler names data-plane ports.
pub trait PortIds {
    /// The data-plane port of an interface name (access ports, network ports and TAPs).
    fn port_id(&self, name: &str) -> Option<PortId>;
    /// The TPID of the outer tag on an access port (0x8100 unless configured, as in SR OS).
    fn outer_tpid(&self, _name: &str) -> u16 {
        brasa_dataplane::wire::EtherType::VLAN
    }
}

impl<F: Fn(&str) -> Option<PortId>> PortIds for F {
    fn port_id(&self, name: &str) -> Option<PortId> {
        self(name)
    }
}

impl Compiler {
    /// A compiler whose data plane has no services yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Compiles the whole of `config` into a snapshot, leaving this compiler as it is until
    /// [`commit`](Self::commit): every object's spec is derived again and compared with the
    /// installed one. It costs in proportion to the configuration; it is the reference that
    /// [`prepare_transaction`](Self::prepare_transaction) must agree with, and what to use
    /// when the environment or the ports changed under the configuration.
    pub fn prepare(
        &self,
        config: &ServiceConfig,
        env: &Environment,
        ports: &dyn PortIds,
        gre: &dyn GreResolver,
    ) -> Result<Compiled, CompileError> {
        let mut policer_ids = self.policer_ids.clone();
        let mut plane = Plane::default();
        let mut keys = Keys::default();
        let nothing = ServiceConfig::new();
        plane.compile_ports(env, ports, &mut keys)?;
        for (reference, _) in config.filters() {
            plane.compile_filter(config, reference, &mut keys)?;
        }
        for (id, _) in config.services() {
            plane.compile_service(config, id, ports, gre, &mut keys)?;
        }
        for (id, _) in config.saps() {
            plane.compile_sap(&nothing, config, id, ports, &mut policer_ids, &mut keys)?;
        }
        policer_ids.keep_only(config);
        let keys = Keys::union(&self.plane, &plane);
        self.finish(plane, policer_ids, &keys)
    }

    /// Compiles a transaction prepared against `running` (the configuration this compiler's
    /// last committed compile was made from, with the same `env` and ports): only the objects
    /// the transaction changed, the SAPs of the QoS policies it changed, the IP services whose
    /// SAPs it changed and the GRE Epipes (whose next hops may have moved) are derived again
    /// and compared, so a transaction costs in proportion to what it changes. The result is
    /// the one [`prepare`](Self::prepare) gives for `txn.config()`.
    pub fn prepare_transaction(
        &self,
        running: &ServiceConfig,
        txn: &Transaction,
        env: &Environment,
        ports: &dyn PortIds,
        gre: &dyn GreResolver,
    ) -> Result<Compiled, CompileError> {
        let (plane, policer_ids, keys) = self.derive_transaction(running, txn, env, ports, gre)?;
        self.finish(plane, policer_ids, &keys)
    }

    /// Compiles a transaction as [`prepare_transaction`](Self::prepare_transaction) does and
    /// commits it at once, writing its changes into this compiler's builder in place, for a
    /// transaction staged behind others ([`build`](Self::build) makes their snapshot). A
    /// prepared compile writes into a copy of the builder, and a copy shares the builder's
    /// chunks, so each transaction copied every chunk it wrote to (a few KiB per SAP table);
    /// in place, only the first write to a chunk after `base` was taken copies it.
    ///
    /// `base` is this compiler as it was when the staged transactions began (a clone, kept
    /// to take them back). `Err` leaves the compiler as it was: a refusal of the data
    /// plane's builder, which may come halfway through the transaction's writes, is undone
    /// by deriving the builder again from `base`'s with the differences between `base`'s
    /// plane and this one (what [`prepare`](Self::prepare) compares). `Err` with
    /// [`StageError::Broken`] when that derivation failed too (a builder that refuses what it
    /// took before): the compiler is then `base`, and the staged transactions must all be
    /// taken back.
    pub fn stage_transaction(
        &mut self,
        running: &ServiceConfig,
        txn: &Transaction,
        env: &Environment,
        ports: &dyn PortIds,
        gre: &dyn GreResolver,
        base: &Compiler,
    ) -> Result<(), StageError> {
        let (plane, policer_ids, keys) = self
            .derive_transaction(running, txn, env, ports, gre)
            .map_err(StageError::Refused)?;
        let Err(refused) = apply(&mut self.builder, &self.plane, &plane, &keys) else {
            self.plane = plane;
            self.policer_ids = policer_ids;
            return Ok(());
        };
        let mut builder = base.builder.clone();
        let keys = Keys::union(&base.plane, &self.plane);
        match apply(&mut builder, &base.plane, &self.plane, &keys) {
            Ok(()) => {
                self.builder = builder;
                Err(StageError::Refused(refused.into()))
            }
            Err(again) => {
                *self = base.clone();
                Err(StageError::Broken {
                    refused: refused.into(),
                    again: again.into(),
                })
            }
        }
    }

    /// The plane and policer ids `txn` gives, and the entries of the plane it may change.
    fn derive_transaction(
        &self,
        running: &ServiceConfig,
        txn: &Transaction,
        env: &Environment,
        ports: &dyn PortIds,
        gre: &dyn GreResolver,
    ) -> Result<(Plane, PolicerIds, Keys), CompileError> {
        let config = txn.config();
        let diff = txn.diff();
        let mut saps: BTreeSet<SapId> = diff.saps.iter().map(|(id, _)| id.clone()).collect();
        for (policy, _) in &diff.qos_policies {
            if let Some(users) = self.plane.qos_users.get(policy) {
                saps.extend(users.iter().cloned());
            }
        }
        let mut services: BTreeSet<ServiceId> = diff.services.iter().map(|(id, _)| *id).collect();
        services.extend(self.plane.gre_services.iter().copied());
        // An IP interface is compiled only while its SAP is up.
        for sap in &saps {
            for config in [running, config] {
                if let Some(sap) = config.sap(sap) {
                    if config
                        .service(sap.service)
                        .is_some_and(|s| s.kind().is_routed())
                    {
                        services.insert(sap.service);
                    }
                }
            }
        }
        let mut plane = self.plane.clone();
        let mut policer_ids = self.policer_ids.clone();
        let mut keys = Keys::default();
        plane.compile_ports(env, ports, &mut keys)?;
        for (reference, _) in &diff.filters {
            plane.compile_filter(config, *reference, &mut keys)?;
        }
        for id in services {
            plane.compile_service(config, id, ports, gre, &mut keys)?;
        }
        for id in &saps {
            plane.compile_sap(running, config, id, ports, &mut policer_ids, &mut keys)?;
        }
        // Given back only now, so that no SAP of this transaction takes another's old id:
        // the order the full compile hands them out in.
        for sap in &saps {
            for dir in [Direction::Ingress, Direction::Egress] {
                let policed = config
                    .sap(sap)
                    .and_then(|s| config.sap_policer(s, dir))
                    .is_some();
                if !policed {
                    policer_ids.release(&(sap.clone(), dir));
                }
            }
        }
        Ok((plane, policer_ids, keys))
    }

    /// The GRE tunnels (local, remote) the next [`prepare_transaction`] of `txn` resolves:
    /// those of the Epipes it changed and of every Epipe with a tunnel.
    ///
    /// [`prepare_transaction`]: Self::prepare_transaction
    pub fn tunnels_of(&self, txn: &Transaction) -> BTreeSet<(IpAddr, IpAddr)> {
        let config = txn.config();
        txn.diff()
            .services
            .iter()
            .map(|(id, _)| *id)
            .chain(self.plane.gre_services.iter().copied())
            .filter_map(|id| match &config.service(id)?.body {
                ServiceBody::Epipe(epipe) => epipe.gre_tunnel.map(|t| (t.local, t.remote)),
                _ => None,
            })
            .collect()
    }

    /// Applies the entries of `keys` that differ between the installed plane and `plane` to
    /// a copy of the builder and builds the snapshot.
    fn finish(
        &self,
        plane: Plane,
        policer_ids: PolicerIds,
        keys: &Keys,
    ) -> Result<Compiled, CompileError> {
        let mut builder = self.builder.clone();
        apply(&mut builder, &self.plane, &plane, keys)?;
        Ok(Compiled {
            builder,
            plane,
            policer_ids,
            tables: None,
        })
    }

    /// Keeps a prepared compilation: once its snapshot is installed, or, without one built,
    /// to install later with [`build`](Self::build) (the next compile starts from it either
    /// way).
    pub fn commit(&mut self, compiled: Compiled) {
        self.builder = compiled.builder;
        self.plane = compiled.plane;
        self.policer_ids = compiled.policer_ids;
    }

    /// The snapshot of every compilation committed since the last snapshot was built, for
    /// the data plane to install over that one: many transactions, one install, and the
    /// data plane looks only at the slots they changed.
    pub fn build(&mut self) -> Arc<ServiceTables> {
        self.builder.build()
    }

    /// The data-plane SAP of a configuration SAP, as installed.
    pub fn dataplane_sap(&self, sap: &SapId, ports: &dyn PortIds) -> Option<DpSapId> {
        let id = sap_id(sap, ports).ok()?;
        self.plane.saps.contains_key(&id).then_some(id)
    }

    /// The policer instance metering `sap` in `dir`, as installed.
    pub fn sap_policer(&self, sap: &SapId, dir: Direction) -> Option<u32> {
        self.policer_ids.by_sap.get(&(sap.clone(), dir)).copied()
    }
}

/// Applies the differences between two planes over `keys`: removals first (SAPs, services,
/// filters, policers, ports: what refers before what is referred to), then additions and
/// changes in the opposite order, each kind in key order — the same builder operations in the
/// same order whether `keys` is every entry or only those a transaction touched.
fn apply(
    builder: &mut ServiceTablesBuilder,
    old: &Plane,
    new: &Plane,
    keys: &Keys,
) -> Result<(), ServiceError> {
    for id in removed(&keys.saps, &old.saps, &new.saps) {
        builder.remove_sap(id)?;
    }
    // A SAP that moves to another service in one transaction (`no sap` in one, `sap … create`
    // in the other) leaves its old service first: the builder takes no SAP from one service to
    // another. It is added back with the SAPs below.
    let mut moved = BTreeSet::new();
    for id in &keys.saps {
        if let (Some(was), Some(is)) = (old.saps.get(id), new.saps.get(id)) {
            if was.service != is.service {
                builder.remove_sap(id)?;
                moved.insert(id);
            }
        }
    }
    // A service whose type changes is removed and added again (the builder refuses a type
    // change while it has SAPs; they are re-added below).
    let mut readd = BTreeSet::new();
    for id in &keys.services {
        let Some(spec) = old.services.get(id) else {
            continue;
        };
        let retyped = new
            .services
            .get(id)
            .is_some_and(|n| std::mem::discriminant(&**n) != std::mem::discriminant(&**spec));
        if !new.services.contains_key(id) || retyped {
            for sap in old.service_saps.get(id).into_iter().flatten() {
                if new.saps.contains_key(sap) && !moved.contains(sap) {
                    builder.remove_sap(sap)?;
                    readd.insert(*sap);
                }
            }
            builder.remove_service(*id)?;
        }
    }
    for key in removed(&keys.filters, &old.filters, &new.filters) {
        builder.remove_filter(key.0, key.1)?;
    }
    for id in removed(&keys.policers, &old.policers, &new.policers) {
        builder.remove_policer(*id)?;
    }
    for id in removed(&keys.ports, &old.ports, &new.ports) {
        builder.remove_port(*id)?;
    }
    for spec in changed(&keys.ports, &old.ports, &new.ports) {
        builder.set_port(*spec)?;
    }
    for spec in changed(&keys.policers, &old.policers, &new.policers) {
        builder.set_policer(*spec)?;
    }
    for spec in changed(&keys.filters, &old.filters, &new.filters) {
        builder.set_filter((**spec).clone())?;
    }
    // An Epipe that gives up or changes its GRE tunnel releases it before any service is set:
    // another Epipe of the transaction may take it over (the validator allows that when the
    // release comes first), and services are set in key order below.
    for id in &keys.services {
        if let (Some(was), Some(is)) = (old.services.get(id), new.services.get(id)) {
            if let (ServiceSpec::Epipe(was), ServiceSpec::Epipe(is)) = (&**was, &**is) {
                if was
                    .gre
                    .is_some_and(|t| is.gre.map(|g| g.identity()) != Some(t.identity()))
                {
                    builder.set_service(ServiceSpec::Epipe(EpipeSpec { gre: None, ..*was }))?;
                }
            }
        }
    }
    for id in &keys.services {
        if let Some(spec) = new.services.get(id) {
            if old.services.get(id) != Some(spec) || builder.service(*id).is_none() {
                builder.set_service((**spec).clone())?;
            }
        }
    }
    let saps: BTreeSet<&DpSapId> = keys.saps.iter().chain(&readd).collect();
    for id in saps {
        if let Some(spec) = new.saps.get(id) {
            if old.saps.get(id) != Some(spec) || builder.sap(id).is_none() {
                builder.set_sap((**spec).clone())?;
            }
        }
    }
    Ok(())
}

/// The keys of `keys` that `old` holds and `new` does not: entries to remove.
fn removed<'a, K: Ord + Clone, V: Clone>(
    keys: &'a BTreeSet<K>,
    old: &'a OrdMap<K, V>,
    new: &'a OrdMap<K, V>,
) -> impl Iterator<Item = &'a K> {
    keys.iter()
        .filter(|key| old.contains_key(*key) && !new.contains_key(*key))
}

/// The entries of `new` under `keys` that `old` lacks or holds otherwise: entries to set.
fn changed<'a, K: Ord + Clone, V: Clone + PartialEq>(
    keys: &'a BTreeSet<K>,
    old: &'a OrdMap<K, V>,
    new: &'a OrdMap<K, V>,
) -> impl Iterator<Item = &'a V> {
    keys.iter().filter_map(|key| {
        let spec = new.get(key)?;
        (old.get(key) != Some(spec)).then_some(spec)
    })
}

/// The data-plane SAP id of a configuration SAP.
fn sap_id(sap: &SapId, ports: &dyn PortIds) -> Result<DpSapId, CompileError> {
    let port = ports
        .port_id(sap.port().as_str())
        .ok_or_else(|| CompileError::NoPort(sap.port().to_string()))?;
    let tag = |tag: Tag| match tag {
        Tag::Any => DpTag::Any,
        Tag::Id(0) => DpTag::Untagged,
        Tag::Id(id) => DpTag::Id(id),
    };
    let encap = match sap.tags() {
        SapTags::Null => SapEncap::Null,
        SapTags::Dot1q(t) => SapEncap::Dot1q { tag: tag(t) },
        SapTags::Qinq(outer, inner) => SapEncap::Qinq {
            outer: tag(outer),
            inner: tag(inner),
        },
    };
    Ok(DpSapId { port, encap })
}

/// The QoS policies a SAP names.
fn qos_refs(sap: &Sap) -> impl Iterator<Item = QosRef> + '_ {
    [Direction::Ingress, Direction::Egress]
        .into_iter()
        .filter_map(|dir| {
            Some(QosRef {
                kind: dir.qos_kind(),
                id: sap.direction(dir).qos?,
            })
        })
}

impl Plane {
    fn link(&mut self, service: ServiceId, sap: DpSapId) {
        self.service_saps.entry(service).or_default().insert(sap);
    }

    fn unlink(&mut self, service: ServiceId, sap: &DpSapId) {
        if let Some(saps) = self.service_saps.get_mut(&service) {
            saps.remove(sap);
            if saps.is_empty() {
                self.service_saps.remove(&service);
            }
        }
    }

    /// The access ports of `env`.
    fn compile_ports(
        &mut self,
        env: &Environment,
        ports: &dyn PortIds,
        keys: &mut Keys,
    ) -> Result<(), CompileError> {
        for (name, encap) in env.ports.iter() {
            let port = ports
                .port_id(name.as_str())
                .ok_or_else(|| CompileError::NoPort(name.to_string()))?;
            let encap = match encap {
                Encapsulation::Null => PortEncap::Null,
                Encapsulation::Dot1q => PortEncap::Dot1q,
                Encapsulation::Qinq => PortEncap::Qinq,
            };
            keys.ports.insert(port);
            self.ports.insert(
                port,
                PortSpec {
                    outer_tpid: ports.outer_tpid(name.as_str()),
                    ..PortSpec::new(port, encap)
                },
            );
        }
        Ok(())
    }

    /// Derives one filter's spec from `config` again (removes it when `config` has none).
    fn compile_filter(
        &mut self,
        config: &ServiceConfig,
        reference: FilterRef,
        keys: &mut Keys,
    ) -> Result<(), CompileError> {
        let kind = match reference.kind {
            FilterKind::Ip => DpFilterKind::Ip,
            FilterKind::Ipv6 => DpFilterKind::Ipv6,
            FilterKind::Mac => DpFilterKind::Mac,
        };
        keys.filters.insert((kind, reference.id));
        let Some(filter) = config.filter(reference) else {
            self.filters.remove(&(kind, reference.id));
            return Ok(());
        };
        let name = reference.to_string();
        let mut entries = Vec::new();
        for (entry_id, entry) in filter.entries.iter() {
            // An entry without an action is inactive, as in SR OS.
            let Some(action) = entry.action else {
                continue;
            };
            let matcher = match reference.kind {
                FilterKind::Ip | FilterKind::Ipv6 => {
                    Match::Ip(ip_match(&name, *entry_id, reference.kind, &entry.ip)?)
                }
                FilterKind::Mac => Match::Mac(mac_match(&name, *entry_id, &entry.mac)?),
            };
            entries.push(FilterEntrySpec {
                id: *entry_id,
                matcher,
                action: match action {
                    Action::Forward => FilterAction::Forward,
                    Action::Drop => FilterAction::Drop,
                },
            });
        }
        self.filters.insert(
            (kind, reference.id),
            Arc::new(FilterSpec {
                id: reference.id,
                kind,
                default_action: disposition(filter.default_action),
                entries,
            }),
        );
        Ok(())
    }

    /// Derives one service's spec from `config` again, with the TAP ports and SAPs of its IP
    /// interfaces (removes them all when `config` has no such service).
    fn compile_service(
        &mut self,
        config: &ServiceConfig,
        id: ServiceId,
        ports: &dyn PortIds,
        gre: &dyn GreResolver,
        keys: &mut Keys,
    ) -> Result<(), CompileError> {
        keys.services.insert(id);
        if let Some(old) = self.services.remove(&id) {
            if let ServiceSpec::L3(l3) = &*old {
                for interface in &l3.interfaces {
                    keys.ports.insert(interface.tap.port);
                    keys.saps.insert(interface.tap);
                    self.ports.remove(&interface.tap.port);
                    self.saps.remove(&interface.tap);
                    self.unlink(id, &interface.tap);
                }
            }
        }
        self.gre_services.remove(&id);
        let Some(service) = config.service(id) else {
            return Ok(());
        };
        let shutdown = service.admin != AdminState::Up;
        let spec = match &service.body {
            ServiceBody::Epipe(epipe) => {
                let gre = match epipe.gre_tunnel {
                    Some(tunnel) => {
                        let hop = gre.resolve(tunnel.local, tunnel.remote).map_err(|reason| {
                            CompileError::GreNextHop {
                                service: id,
                                remote: tunnel.remote,
                                reason,
                            }
                        })?;
                        self.gre_services.insert(id);
                        Some(GreSpec {
                            port: hop.port,
                            vlan: hop.vlan,
                            local: tunnel.local,
                            remote: tunnel.remote,
                            next_hop: hop.mac,
                            key: tunnel.key,
                            ttl: 64,
                            mtu: hop.mtu,
                        })
                    }
                    None => None,
                };
                ServiceSpec::Epipe(EpipeSpec {
                    shutdown,
                    gre,
                    ..EpipeSpec::new(id)
                })
            }
            ServiceBody::Vpls(vpls) => ServiceSpec::Vpls(VplsSpec {
                shutdown,
                fdb_size: vpls.fdb_table_size,
                age_secs: vpls
                    .local_age
                    .unwrap_or(brasa_services::model::DEFAULT_LOCAL_AGE),
                split_horizon_groups: vpls.split_horizon_groups.keys().cloned().collect(),
                ..VplsSpec::new(id)
            }),
            ServiceBody::Ies(routed) | ServiceBody::Vprn(routed) => {
                let vprn = matches!(service.body, ServiceBody::Vprn(_));
                let kind = if vprn { "vprn" } else { "ies" };
                let mut interfaces = Vec::new();
                // Only interfaces the kernel plan gives a TAP (service, interface and SAP up).
                for (name, interface) in &routed.interfaces {
                    let Some(sap) = &interface.sap else {
                        continue;
                    };
                    let sap_up = config.sap(sap).is_some_and(|s| s.admin == AdminState::Up);
                    if shutdown || interface.admin != AdminState::Up || !sap_up {
                        continue;
                    }
                    let tap = kernel::tap(kind, id, name, None).name;
                    let tap_port = ports.port_id(&tap).ok_or_else(|| CompileError::NoTap {
                        service: id,
                        interface: name.clone(),
                        tap: tap.clone(),
                    })?;
                    let tap_sap = DpSapId {
                        port: tap_port,
                        encap: SapEncap::Null,
                    };
                    interfaces.push(L3Interface {
                        sap: sap_id(sap, ports)?,
                        tap: tap_sap,
                    });
                }
                for interface in &interfaces {
                    let tap = interface.tap;
                    keys.ports.insert(tap.port);
                    keys.saps.insert(tap);
                    self.ports
                        .insert(tap.port, PortSpec::new(tap.port, PortEncap::Null));
                    self.saps.insert(tap, Arc::new(SapSpec::new(tap, id)));
                    self.link(id, tap);
                }
                ServiceSpec::L3(L3Spec {
                    id,
                    vprn,
                    interfaces,
                })
            }
        };
        self.services.insert(id, Arc::new(spec));
        Ok(())
    }

    /// Derives one SAP's spec from `config` again, with its policers (removes them when
    /// `config` has no such SAP); `running` is the configuration the plane was compiled from.
    /// The policer ids of directions no longer policed stay taken: the caller gives them back
    /// once every SAP is compiled.
    fn compile_sap(
        &mut self,
        running: &ServiceConfig,
        config: &ServiceConfig,
        id: &SapId,
        ports: &dyn PortIds,
        policer_ids: &mut PolicerIds,
        keys: &mut Keys,
    ) -> Result<(), CompileError> {
        let dp_id = sap_id(id, ports)?;
        keys.saps.insert(dp_id);
        if let Some(old) = running.sap(id) {
            for policy in qos_refs(old) {
                if let Some(users) = self.qos_users.get_mut(&policy) {
                    users.remove(id);
                    if users.is_empty() {
                        self.qos_users.remove(&policy);
                    }
                }
            }
        }
        if let Some(old) = self.saps.remove(&dp_id) {
            self.unlink(old.service, &dp_id);
            for policer in [old.ingress.policer, old.egress.policer]
                .into_iter()
                .flatten()
            {
                keys.policers.insert(policer);
                self.policers.remove(&policer);
            }
        }
        let Some(sap) = config.sap(id) else {
            return Ok(());
        };
        let mut spec = SapSpec::new(dp_id, sap.service);
        spec.shutdown = sap.admin != AdminState::Up;
        spec.capture = sap.capture;
        spec.split_horizon_group = sap.split_horizon_group.clone();
        spec.max_mac = sap.max_mac_addresses;
        spec.static_macs = sap.static_macs.iter().map(|m| DpMac(m.0)).collect();
        spec.learning = !sap.disable_learning;
        spec.ageing = !sap.disable_aging;
        for dir in [Direction::Ingress, Direction::Egress] {
            let settings = sap.direction(dir);
            let target: &mut DpDirection = match dir {
                Direction::Ingress => &mut spec.ingress,
                Direction::Egress => &mut spec.egress,
            };
            target.ip_filter = settings.ip_filter;
            target.ipv6_filter = settings.ipv6_filter;
            target.mac_filter = settings.mac_filter;
            if let Some((_, effective)) = config.sap_policer(sap, dir) {
                let policer = policer_ids.get((id.clone(), dir));
                keys.policers.insert(policer);
                self.policers.insert(
                    policer,
                    PolicerSpec {
                        id: policer,
                        config: policer_config(&effective),
                    },
                );
                target.policer = Some(policer);
            }
        }
        for policy in qos_refs(sap) {
            self.qos_users.entry(policy).or_default().insert(id.clone());
        }
        self.link(sap.service, dp_id);
        self.saps.insert(dp_id, Arc::new(spec));
        Ok(())
    }
}

fn disposition(action: Action) -> Disposition {
    match action {
        Action::Forward => Disposition::Forward,
        Action::Drop => Disposition::Drop,
    }
}

fn kbps(rate: Rate) -> u64 {
    match rate {
        Rate::Kbps(kbps) => u64::from(kbps),
        Rate::Max => MAX_RATE_KBPS,
    }
}

fn policer_config(p: &brasa_services::model::EffectivePolicer) -> PolicerConfig {
    let pir = kbps(p.rate.pir);
    let cir = kbps(p.rate.cir).min(pir);
    let burst = |rate: u64, bytes: u32| (rate > 0).then_some(u64::from(bytes));
    let meter = match p.mode {
        MeterMode::SrTcm => Meter::SrTcm {
            cir_kbps: cir,
            cbs: burst(cir, p.cbs),
            ebs: burst(cir, p.mbs),
        },
        MeterMode::TrTcm1 => Meter::TrTcm {
            pir_kbps: pir,
            mbs: burst(pir, p.mbs),
            cir_kbps: cir,
            cbs: burst(cir, p.cbs),
        },
        MeterMode::TrTcm2 => {
            let eir = pir - cir;
            Meter::Rfc4115 {
                cir_kbps: cir,
                cbs: burst(cir, p.cbs),
                eir_kbps: eir,
                ebs: burst(eir, p.mbs),
            }
        }
    };
    PolicerConfig {
        meter,
        colour_mode: ColourMode::Blind,
        packet_byte_offset: p
            .packet_byte_offset
            .clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16,
        stat_mode: match p.stat_mode {
            StatMode::NoStats => policer::StatMode::NoStats,
            StatMode::Minimal => policer::StatMode::Minimal,
            _ => policer::StatMode::OfferedTotalCir,
        },
    }
}

fn port_range(
    filter: &str,
    entry: u32,
    port: Option<PortMatch>,
) -> Result<Option<PortRange>, CompileError> {
    let empty = || CompileError::EmptyPortRange {
        filter: filter.to_string(),
        entry,
    };
    Ok(match port {
        None => None,
        Some(PortMatch::Eq(port)) => Some(PortRange::single(port)),
        Some(PortMatch::Range(first, last)) => Some(PortRange { first, last }),
        Some(PortMatch::Lt(port)) => Some(PortRange {
            first: 0,
            last: port.checked_sub(1).ok_or_else(empty)?,
        }),
        Some(PortMatch::Gt(port)) => Some(PortRange {
            first: port.checked_add(1).ok_or_else(empty)?,
            last: u16::MAX,
        }),
    })
}

fn ip_match(
    filter: &str,
    entry: u32,
    kind: FilterKind,
    m: &brasa_services::model::IpMatch,
) -> Result<acl::IpMatch, CompileError> {
    if m.icmp_code.is_some() {
        return Err(CompileError::Unsupported {
            filter: filter.to_string(),
            entry,
            what: "icmp-code".to_string(),
        });
    }
    let prefix = |net: ipnet::IpNet| acl::Prefix::new(net.network(), net.prefix_len());
    Ok(acl::IpMatch {
        family: Some(if kind == FilterKind::Ipv6 {
            IpFamily::V6
        } else {
            IpFamily::V4
        }),
        src: m.src_ip.map(prefix),
        dst: m.dst_ip.map(prefix),
        protocol: m.protocol,
        src_port: port_range(filter, entry, m.src_port)?,
        dst_port: port_range(filter, entry, m.dst_port)?,
        dscp: m.dscp,
        icmp_type: m.icmp_type,
    })
}

fn mac_match(
    filter: &str,
    entry: u32,
    m: &brasa_services::model::MacMatch,
) -> Result<acl::MacMatch, CompileError> {
    use brasa_services::model::FrameType;
    match m.frame_type {
        // The data plane sees Ethernet II frames; other framings carry no EtherType it reads.
        None | Some(FrameType::EthernetII) => {}
        Some(other) => {
            return Err(CompileError::Unsupported {
                filter: filter.to_string(),
                entry,
                what: format!("frame-type {}", other.keyword()),
            })
        }
    }
    let mac = |mask: brasa_services::model::MacMask| acl::MacMask {
        mac: DpMac(mask.addr.0),
        mask: DpMac(mask.mask.0),
    };
    let vid = |tag: brasa_services::model::TagMask| VidMatch::Masked {
        value: tag.value,
        mask: tag.mask,
    };
    Ok(acl::MacMatch {
        src: m.src_mac.map(mac),
        dst: m.dst_mac.map(mac),
        ethertype: m.etype,
        outer_vid: m.outer_tag.map(vid),
        inner_vid: m.inner_tag.map(vid),
    })
}

#[cfg(test)]
mod tests;
