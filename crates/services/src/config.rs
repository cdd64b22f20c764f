//! The running configuration and its transactions.
//!
//! [`ServiceConfig`] is built from persistent maps (`imbl`), so a candidate is an O(1) clone of
//! the running state; a batch of [`Change`]s is applied to the candidate one by one, each checked
//! against indexes (SAP owners, references, addresses per VRF, static MACs per VPLS, the Epipe
//! holding each GRE tunnel) rather than by scanning the configuration, then the rules that only
//! hold at the end of a batch are checked on the objects the batch touched. The result is a
//! [`Transaction`]: the new configuration, the [`Diff`] for the data plane and the
//! [`KernelPlan`] for L3, or a [`TxnError`] that points at the change responsible, with the
//! running state untouched.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use imbl::{HashMap as PHashMap, OrdMap, OrdSet};
use ipnet::IpNet;
use thiserror::Error;

use crate::change::{
    Change, DescriptionSetting, Edit, EntrySetting, FilterSetting, InterfaceSetting, MatchSetting,
    NodeOp, Origin, PolicerSetting, RouteSetting, SapOp, SapSetting, ServiceOp, ServiceSetting,
};
use crate::id::{MacAddr, PortName, Ports, SapId, SapPortError};
use crate::kernel::{self, KernelPlan};
use crate::limits;
use crate::model::*;

/// What a transaction is checked against besides the configuration: the data plane's ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// Data-plane ports with their encapsulations; every SAP's port must be one of them.
    pub ports: Ports,
}

impl Environment {
    /// An environment with these ports.
    pub fn new(ports: Ports) -> Self {
        Self { ports }
    }
}

/// Something a SAP refers to, counted so that deleting it while in use is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Referent {
    Filter(FilterRef),
    Qos(QosRef),
}

/// A routing instance: the base router (IES) or one VPRN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vrf {
    /// The base routing instance (IES interfaces).
    Base,
    /// The VRF of a VPRN.
    Vprn(ServiceId),
}

impl Vrf {
    fn of(id: ServiceId, kind: ServiceKind) -> Self {
        match kind {
            ServiceKind::Vprn => Vrf::Vprn(id),
            _ => Vrf::Base,
        }
    }
}

impl fmt::Display for Vrf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Vrf::Base => f.write_str("the base routing instance"),
            Vrf::Vprn(id) => write!(f, "vprn {id}"),
        }
    }
}

/// The running service configuration: services, SAPs, filters and QoS policies, with the
/// indexes the validator needs. Cloning is O(1).
#[derive(Debug, Clone, Default)]
pub struct ServiceConfig {
    // Values are behind `Arc` so that copying a tree node on write copies pointers, not SAPs.
    services: OrdMap<ServiceId, Arc<Service>>,
    saps: OrdMap<SapId, Arc<Sap>>,
    filters: OrdMap<FilterRef, Filter>,
    qos: OrdMap<QosRef, QosPolicy>,
    // Indexes, all derived from the maps above.
    service_saps: OrdSet<(ServiceId, SapId)>,
    routed: OrdSet<ServiceId>,
    references: PHashMap<Referent, u32>,
    addresses: PHashMap<(Vrf, IpAddr), (ServiceId, String)>,
    static_macs: PHashMap<(ServiceId, MacAddr), SapId>,
    base_routes: PHashMap<IpNet, ServiceId>,
    gre_tunnels: PHashMap<GreTunnel, ServiceId>,
    generation: u64,
}

impl PartialEq for ServiceConfig {
    /// Equal contents; the commit counter is not compared.
    fn eq(&self, other: &Self) -> bool {
        self.services == other.services
            && self.saps == other.saps
            && self.filters == other.filters
            && self.qos == other.qos
    }
}

impl Eq for ServiceConfig {}

/// A validated batch: the configuration it leads to, what changed, and the kernel steps.
#[derive(Debug, Clone)]
pub struct Transaction {
    config: ServiceConfig,
    diff: Diff,
    kernel_plan: KernelPlan,
    base_generation: u64,
}

impl Transaction {
    /// The configuration after the batch.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// What the batch added, changed and removed, for the data-plane tables.
    pub fn diff(&self) -> &Diff {
        &self.diff
    }

    /// The kernel steps (with their inverses) that take the kernel from the running
    /// configuration's L3 state to the new one.
    pub fn kernel_plan(&self) -> &KernelPlan {
        &self.kernel_plan
    }
}

/// How an object changed in a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delta {
    /// It did not exist before.
    Added,
    /// It exists before and after, with other settings.
    Changed,
    /// It no longer exists.
    Removed,
}

/// What a transaction changed, by object. Look the old objects up in the running configuration
/// and the new ones in [`Transaction::config`]. Objects touched but left as they were are not
/// listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Services (their own settings, not their SAPs).
    pub services: Vec<(ServiceId, Delta)>,
    /// SAPs, by id (a SAP id is unique across services).
    pub saps: Vec<(SapId, Delta)>,
    /// Filters.
    pub filters: Vec<(FilterRef, Delta)>,
    /// QoS policies.
    pub qos_policies: Vec<(QosRef, Delta)>,
}

impl Diff {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.saps.is_empty()
            && self.filters.is_empty()
            && self.qos_policies.is_empty()
    }
}

/// A refused transaction: the change that broke a rule and the rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{origin}: {error}")]
pub struct TxnError {
    /// Where the offending change came from.
    pub origin: Origin,
    /// What is wrong.
    pub error: ValidationError,
}

/// A transaction asked to commit onto a configuration other than the one it was prepared from.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("the transaction was prepared against an older configuration; prepare it again")]
pub struct StaleTransaction;

/// Why a change cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    /// A number or string out of its range or format.
    #[error("expected {0}")]
    Invalid(String),
    /// The service does not exist.
    #[error("service {0} does not exist (add 'customer N create' to create it)")]
    NoSuchService(ServiceId),
    /// The service exists already.
    #[error("service {0} already exists")]
    ServiceExists(ServiceId),
    /// The command names another kind than the service has.
    #[error("service {id} is a {existing}, not a {requested}")]
    WrongKind {
        /// The service.
        id: ServiceId,
        /// Its kind.
        existing: ServiceKind,
        /// The kind the change named.
        requested: ServiceKind,
    },
    /// The command names another customer than the service has.
    #[error("service {id} belongs to customer {existing}, not {requested}")]
    WrongCustomer {
        /// The service.
        id: ServiceId,
        /// Its customer.
        existing: CustomerId,
        /// The customer the change named.
        requested: CustomerId,
    },
    /// A service must be shut down before it is deleted.
    #[error("service {0} must be shut down before it is deleted")]
    ServiceNotShutdown(ServiceId),
    /// A service still holds SAPs or interfaces.
    #[error("service {id} still has {what}; remove them first")]
    ServiceNotEmpty {
        /// The service.
        id: ServiceId,
        /// What it still holds.
        what: &'static str,
    },
    /// A setting or object that this kind of service (or SAP) does not have.
    #[error("{what} does not apply to {to}")]
    NotApplicable {
        /// The setting or object.
        what: &'static str,
        /// What it was applied to.
        to: String,
    },
    /// The SAP does not exist where the change says.
    #[error("SAP {0} does not exist here (add 'create' to create it)")]
    NoSuchSap(SapId),
    /// The SAP exists already, possibly in another service.
    #[error("SAP {sap} already exists in service {service}")]
    SapExists {
        /// The SAP.
        sap: SapId,
        /// The service holding it.
        service: ServiceId,
    },
    /// The SAP does not fit the data plane's ports.
    #[error(transparent)]
    SapPort(#[from] SapPortError),
    /// Another Epipe already ends in the same GRE tunnel (local, remote and key): the far end
    /// could not tell the two services apart.
    #[error("epipe {service} already uses gre-tunnel {tunnel}")]
    GreTunnelInUse {
        /// The tunnel.
        tunnel: GreTunnel,
        /// The Epipe that holds it.
        service: ServiceId,
    },
    /// An Epipe has at most two endpoints.
    #[error("epipe {0} already has two endpoints (SAPs or a GRE tunnel)")]
    TooManyEndpoints(ServiceId),
    /// A capture SAP's restrictions.
    #[error("capture SAP {sap}: {rule}")]
    CaptureSap {
        /// The SAP.
        sap: SapId,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The filter does not exist.
    #[error("{0} does not exist")]
    NoSuchFilter(FilterRef),
    /// The filter exists already.
    #[error("{0} already exists")]
    FilterExists(FilterRef),
    /// The QoS policy does not exist.
    #[error("{0} does not exist")]
    NoSuchPolicy(QosRef),
    /// The QoS policy exists already.
    #[error("{0} already exists")]
    PolicyExists(QosRef),
    /// An object still referenced cannot be deleted or retyped.
    #[error("{what} is still used by {users} SAP(s)")]
    InUse {
        /// The object.
        what: String,
        /// How many SAP references remain.
        users: u32,
    },
    /// A child object (entry, policer, interface, group, override) does not exist.
    #[error("{0} does not exist")]
    NoSuchObject(String),
    /// A child object exists already.
    #[error("{0} already exists")]
    ObjectExists(String),
    /// The address is used by another interface of the same routing instance.
    #[error(
        "address {addr} is already used in {vrf} by interface {interface:?} of service {service}"
    )]
    DuplicateAddress {
        /// The address.
        addr: IpAddr,
        /// The routing instance.
        vrf: Vrf,
        /// The service holding it.
        service: ServiceId,
        /// The interface holding it.
        interface: String,
    },
    /// An IP interface without a SAP at the end of a transaction.
    #[error("interface {interface:?} of service {service} has no SAP")]
    InterfaceWithoutSap {
        /// The service.
        service: ServiceId,
        /// The interface.
        interface: String,
    },
    /// A next hop outside every subnet of the service's interfaces.
    #[error("next-hop {next_hop} of static route {prefix} is on no subnet of service {service}")]
    NextHopUnreachable {
        /// The service.
        service: ServiceId,
        /// The route.
        prefix: IpNet,
        /// Its next hop.
        next_hop: IpAddr,
    },
    /// The static route already has another target.
    #[error("static route {prefix} already has a target ({existing}); remove it first (brasa allows one next-hop per static-route-entry)")]
    RouteTargetTaken {
        /// The route.
        prefix: IpNet,
        /// Its current target.
        existing: String,
    },
    /// A policer's CIR above its PIR.
    #[error("{policy} policer {policer}: cir {cir} is above the rate {pir}")]
    CirAbovePir {
        /// The policy.
        policy: QosRef,
        /// The policer.
        policer: PolicerId,
        /// Its PIR.
        pir: Rate,
        /// Its CIR.
        cir: Rate,
    },
    /// The static MAC is already configured on another SAP of the VPLS.
    #[error("static MAC {mac} is already on SAP {sap} of service {service}")]
    StaticMacTaken {
        /// The MAC.
        mac: MacAddr,
        /// The VPLS.
        service: ServiceId,
        /// The SAP holding it.
        sap: SapId,
    },
}

type Result<T, E = ValidationError> = std::result::Result<T, E>;

fn invalid(message: String) -> ValidationError {
    ValidationError::Invalid(message)
}

fn check_range(what: &str, value: u32, range: &std::ops::RangeInclusive<u32>) -> Result<()> {
    limits::check(what, value, range).map_err(invalid)
}

fn check_description(text: &Option<String>) -> Result<()> {
    match text {
        Some(text) => limits::check_description(text).map_err(invalid),
        None => Ok(()),
    }
}

fn check_name(text: &str) -> Result<()> {
    limits::check_name(text).map_err(invalid)
}

/// The objects a batch touched, each with the origin of the last change that touched it.
#[derive(Default)]
struct Touched {
    services: BTreeMap<ServiceId, Origin>,
    saps: BTreeMap<SapId, Origin>,
    filters: BTreeMap<FilterRef, Origin>,
    qos: BTreeMap<QosRef, Origin>,
    routed: BTreeMap<ServiceId, Origin>,
}

impl ServiceConfig {
    /// An empty configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates `changes` as one batch against this configuration. On success the
    /// [`Transaction`] holds the new configuration; this one is unchanged until
    /// [`commit`](Self::commit). On error nothing changed and the error names the change at fault.
    pub fn prepare(&self, changes: &[Change], env: &Environment) -> Result<Transaction, TxnError> {
        let mut candidate = self.clone();
        let mut touched = Touched::default();
        for change in changes {
            candidate
                .apply(&change.edit, &change.origin, env, &mut touched)
                .map_err(|error| TxnError {
                    origin: change.origin.clone(),
                    error,
                })?;
        }
        candidate.check_batch(&touched)?;
        let diff = Diff::between(self, &candidate, &touched);
        let kernel_plan = if touched.routed.is_empty() {
            KernelPlan::default()
        } else {
            kernel::plan(&kernel::desired(self), &kernel::desired(&candidate))
        };
        Ok(Transaction {
            config: candidate,
            diff,
            kernel_plan,
            base_generation: self.generation,
        })
    }

    /// Makes `txn`'s configuration the running one. Refused when another transaction was
    /// committed since `txn` was prepared.
    pub fn commit(&mut self, txn: Transaction) -> Result<(), StaleTransaction> {
        if txn.base_generation != self.generation {
            return Err(StaleTransaction);
        }
        *self = txn.config;
        self.generation = txn.base_generation + 1;
        Ok(())
    }

    /// Prepares and commits in one step; returns the committed transaction's diff and plan.
    pub fn apply_changes(
        &mut self,
        changes: &[Change],
        env: &Environment,
    ) -> Result<(Diff, KernelPlan), TxnError> {
        let Transaction {
            config,
            diff,
            kernel_plan,
            base_generation,
        } = self.prepare(changes, env)?;
        *self = config;
        self.generation = base_generation + 1;
        Ok((diff, kernel_plan))
    }

    /// Every service, by id.
    pub fn services(&self) -> impl Iterator<Item = (ServiceId, &Service)> {
        self.services.iter().map(|(id, s)| (*id, &**s))
    }

    /// One service.
    pub fn service(&self, id: ServiceId) -> Option<&Service> {
        self.services.get(&id).map(|s| &**s)
    }

    /// Every SAP, by id.
    pub fn saps(&self) -> impl Iterator<Item = (&SapId, &Sap)> {
        self.saps.iter().map(|(id, sap)| (id, &**sap))
    }

    /// One SAP.
    pub fn sap(&self, id: &SapId) -> Option<&Sap> {
        self.saps.get(id).map(|s| &**s)
    }

    /// The SAPs of one service (for IES/VPRN: of all its interfaces), in SAP id order.
    pub fn service_saps(&self, service: ServiceId) -> impl Iterator<Item = (&SapId, &Sap)> {
        self.service_saps
            .range(lower_bound(service)..)
            .take_while(move |(s, _)| *s == service)
            .filter_map(|(_, sap)| self.saps.get_key_value(sap))
            .map(|(id, sap)| (id, &**sap))
    }

    /// The number of SAPs in the configuration.
    pub fn sap_count(&self) -> usize {
        self.saps.len()
    }

    /// Service ids from `start` upwards, ascending.
    pub(crate) fn service_ids_from(
        &self,
        start: ServiceId,
    ) -> impl Iterator<Item = ServiceId> + '_ {
        self.services.range(start..).map(|(id, _)| *id)
    }

    /// Ids of filters of `kind` from `start` upwards, ascending.
    pub(crate) fn filter_ids_from(
        &self,
        kind: FilterKind,
        start: FilterId,
    ) -> impl Iterator<Item = FilterId> + '_ {
        self.filters
            .range(FilterRef { kind, id: start }..)
            .take_while(move |(filter, _)| filter.kind == kind)
            .map(|(filter, _)| filter.id)
    }

    /// Every filter.
    pub fn filters(&self) -> impl Iterator<Item = (FilterRef, &Filter)> {
        self.filters.iter().map(|(r, f)| (*r, f))
    }

    /// One filter.
    pub fn filter(&self, filter: FilterRef) -> Option<&Filter> {
        self.filters.get(&filter)
    }

    /// Every QoS policy.
    pub fn qos_policies(&self) -> impl Iterator<Item = (QosRef, &QosPolicy)> {
        self.qos.iter().map(|(r, p)| (*r, p))
    }

    /// One QoS policy.
    pub fn qos_policy(&self, policy: QosRef) -> Option<&QosPolicy> {
        self.qos.get(&policy)
    }

    /// The IES and VPRN services, by id.
    pub fn routed_services(&self) -> impl Iterator<Item = (ServiceId, &Service)> {
        self.routed
            .iter()
            .filter_map(|id| self.services.get(id).map(|s| (*id, &**s)))
    }

    /// The endpoints an Epipe has (SAPs plus its GRE tunnel); it is operationally up with two.
    pub fn epipe_endpoints(&self, id: ServiceId) -> usize {
        let gre = match self.services.get(&id).map(|s| &s.body) {
            Some(ServiceBody::Epipe(epipe)) => usize::from(epipe.gre_tunnel.is_some()),
            _ => 0,
        };
        gre + self.service_saps(id).count()
    }

    /// True when the service is admin up and, for an Epipe, has its two endpoints.
    pub fn is_operational(&self, id: ServiceId) -> bool {
        match self.services.get(&id) {
            Some(service) if service.admin == AdminState::Up => {
                service.kind() != ServiceKind::Epipe || self.epipe_endpoints(id) == 2
            }
            _ => false,
        }
    }

    /// The effective policer that meters a SAP's traffic in `dir`: the SAP's QoS policy's
    /// metering policer with the SAP's override applied. `None` without a policy or policer.
    pub fn sap_policer(&self, sap: &Sap, dir: Direction) -> Option<(PolicerId, EffectivePolicer)> {
        let settings = sap.direction(dir);
        let policy = self.qos.get(&QosRef {
            kind: dir.qos_kind(),
            id: settings.qos?,
        })?;
        let (id, policer) = policy.metering_policer()?;
        Some((id, policer.effective(settings.policer_overrides.get(&id))))
    }

    fn service_of(&self, id: ServiceId, kind: ServiceKind) -> Result<&Service> {
        let service = self
            .services
            .get(&id)
            .ok_or(ValidationError::NoSuchService(id))?;
        if service.kind() != kind {
            return Err(ValidationError::WrongKind {
                id,
                existing: service.kind(),
                requested: kind,
            });
        }
        Ok(service)
    }

    fn service_mut(&mut self, id: ServiceId, kind: ServiceKind) -> Result<&mut Service> {
        self.service_of(id, kind)?;
        self.services
            .get_mut(&id)
            .map(Arc::make_mut)
            .ok_or(ValidationError::NoSuchService(id))
    }

    fn any_service(&self, id: ServiceId) -> Result<&Service> {
        self.services
            .get(&id)
            .map(|s| &**s)
            .ok_or(ValidationError::NoSuchService(id))
    }

    fn routed_mut(&mut self, id: ServiceId) -> Result<&mut Routed> {
        let service = self
            .services
            .get_mut(&id)
            .map(Arc::make_mut)
            .ok_or(ValidationError::NoSuchService(id))?;
        match &mut service.body {
            ServiceBody::Ies(routed) | ServiceBody::Vprn(routed) => Ok(routed),
            other => Err(ValidationError::NotApplicable {
                what: "an IP interface or static route",
                to: format!("{} {id}", other.kind()),
            }),
        }
    }

    fn vpls_mut(&mut self, id: ServiceId) -> Result<&mut Vpls> {
        let service = self
            .services
            .get_mut(&id)
            .map(Arc::make_mut)
            .ok_or(ValidationError::NoSuchService(id))?;
        match &mut service.body {
            ServiceBody::Vpls(vpls) => Ok(vpls),
            other => Err(ValidationError::NotApplicable {
                what: "a split-horizon group",
                to: format!("{} {id}", other.kind()),
            }),
        }
    }

    fn reference(&mut self, referent: Referent, add: bool) {
        let count = self.references.get(&referent).copied().unwrap_or(0);
        let count = if add {
            count + 1
        } else {
            count.saturating_sub(1)
        };
        if count == 0 {
            self.references.remove(&referent);
        } else {
            self.references.insert(referent, count);
        }
    }

    fn users(&self, referent: Referent) -> u32 {
        self.references.get(&referent).copied().unwrap_or(0)
    }

    /// How many SAPs refer to `referent`; an `op` that deletes it while any does is refused.
    fn users_unless_deleted<S>(&self, referent: Referent, op: &NodeOp<S>) -> Result<u32> {
        let users = self.users(referent);
        if matches!(op, NodeOp::Delete) && users > 0 {
            return Err(ValidationError::InUse {
                what: match referent {
                    Referent::Filter(filter) => filter.to_string(),
                    Referent::Qos(policy) => policy.to_string(),
                },
                users,
            });
        }
        Ok(users)
    }

    fn apply(
        &mut self,
        edit: &Edit,
        origin: &Origin,
        env: &Environment,
        touched: &mut Touched,
    ) -> Result<()> {
        match edit {
            Edit::Service { id, kind, op } => {
                touched.services.insert(*id, origin.clone());
                if kind.is_routed() {
                    touched.routed.insert(*id, origin.clone());
                }
                self.apply_service(*id, *kind, op)
            }
            Edit::SplitHorizonGroup { service, name, op } => {
                touched.services.insert(*service, origin.clone());
                self.apply_split_horizon_group(*service, name, op)
            }
            Edit::Interface { service, name, op } => {
                touched.services.insert(*service, origin.clone());
                touched.routed.insert(*service, origin.clone());
                self.apply_interface(*service, name, op)
            }
            Edit::StaticRoute {
                service,
                prefix,
                op,
            } => {
                touched.services.insert(*service, origin.clone());
                touched.routed.insert(*service, origin.clone());
                self.apply_static_route(*service, *prefix, op)
            }
            Edit::Sap { path, op } => {
                touched.saps.insert(path.sap.clone(), origin.clone());
                if path.interface.is_some() {
                    touched.routed.insert(path.service, origin.clone());
                }
                self.apply_sap(path, op, env)
            }
            Edit::PolicerOverride {
                path,
                dir,
                policer,
                op,
            } => {
                touched.saps.insert(path.sap.clone(), origin.clone());
                self.apply_policer_override(path, *dir, *policer, op)
            }
            Edit::Filter { filter, op } => {
                touched.filters.insert(*filter, origin.clone());
                self.apply_filter(*filter, op)
            }
            Edit::FilterEntry { filter, entry, op } => {
                touched.filters.insert(*filter, origin.clone());
                self.apply_filter_entry(*filter, *entry, op)
            }
            Edit::QosPolicy { policy, op } => {
                touched.qos.insert(*policy, origin.clone());
                self.apply_qos_policy(*policy, op)
            }
            Edit::Policer {
                policy,
                policer,
                op,
            } => {
                touched.qos.insert(*policy, origin.clone());
                self.apply_policer(*policy, *policer, op)
            }
        }
    }

    fn apply_service(&mut self, id: ServiceId, kind: ServiceKind, op: &ServiceOp) -> Result<()> {
        check_range("a service id", id, &limits::SERVICE_ID)?;
        match op {
            ServiceOp::Create { customer } => {
                check_range("a customer id", *customer, &limits::CUSTOMER_ID)?;
                if self.services.contains_key(&id) {
                    return Err(ValidationError::ServiceExists(id));
                }
                self.services.insert(
                    id,
                    Arc::new(Service {
                        customer: *customer,
                        description: None,
                        admin: AdminState::Down,
                        body: ServiceBody::new(kind),
                    }),
                );
                if kind.is_routed() {
                    self.routed.insert(id);
                }
                Ok(())
            }
            ServiceOp::Enter { customer } => {
                let service = self.service_of(id, kind)?;
                match customer {
                    Some(customer) if *customer != service.customer => {
                        Err(ValidationError::WrongCustomer {
                            id,
                            existing: service.customer,
                            requested: *customer,
                        })
                    }
                    _ => Ok(()),
                }
            }
            ServiceOp::Delete => {
                let service = self.service_of(id, kind)?;
                if service.admin != AdminState::Down {
                    return Err(ValidationError::ServiceNotShutdown(id));
                }
                if self.service_saps(id).next().is_some() {
                    return Err(ValidationError::ServiceNotEmpty { id, what: "SAPs" });
                }
                if service
                    .body
                    .routed()
                    .is_some_and(|r| !r.interfaces.is_empty())
                {
                    return Err(ValidationError::ServiceNotEmpty {
                        id,
                        what: "interfaces",
                    });
                }
                let tunnel = match &service.body {
                    ServiceBody::Epipe(epipe) => epipe.gre_tunnel,
                    _ => None,
                };
                let base_prefixes: Vec<IpNet> = match &service.body {
                    ServiceBody::Ies(routed) => routed.static_routes.keys().copied().collect(),
                    _ => Vec::new(),
                };
                if let Some(tunnel) = tunnel {
                    self.gre_tunnels.remove(&tunnel);
                }
                for prefix in base_prefixes {
                    self.base_routes.remove(&prefix);
                }
                self.services.remove(&id);
                self.routed.remove(&id);
                Ok(())
            }
            ServiceOp::Set(setting) => self.apply_service_setting(id, kind, setting),
        }
    }

    fn apply_service_setting(
        &mut self,
        id: ServiceId,
        kind: ServiceKind,
        setting: &ServiceSetting,
    ) -> Result<()> {
        let not_applicable = |what| ValidationError::NotApplicable {
            what,
            to: format!("{kind} {id}"),
        };
        // The endpoint count and the tunnel's holder are read before the service is borrowed
        // mutably.
        let sap_count = self.service_saps(id).count();
        let mut held_tunnel = None;
        if let ServiceSetting::GreTunnel(tunnel) = setting {
            if let Some(tunnel) = tunnel {
                if let Some(&holder) = self.gre_tunnels.get(tunnel).filter(|&&h| h != id) {
                    return Err(ValidationError::GreTunnelInUse {
                        tunnel: *tunnel,
                        service: holder,
                    });
                }
            }
            if let Some(ServiceBody::Epipe(epipe)) = self.services.get(&id).map(|s| &s.body) {
                held_tunnel = epipe.gre_tunnel;
            }
        }
        let service = self.service_mut(id, kind)?;
        match (setting, &mut service.body) {
            (ServiceSetting::Description(text), _) => {
                check_description(text)?;
                service.description.clone_from(text);
            }
            (ServiceSetting::Admin(state), _) => service.admin = *state,
            (ServiceSetting::GreTunnel(tunnel), ServiceBody::Epipe(epipe)) => {
                if let Some(tunnel) = tunnel {
                    if epipe.gre_tunnel.is_none() && sap_count >= 2 {
                        return Err(ValidationError::TooManyEndpoints(id));
                    }
                    check_gre(tunnel)?;
                }
                epipe.gre_tunnel = *tunnel;
            }
            (ServiceSetting::FdbTableSize(size), ServiceBody::Vpls(vpls)) => {
                if let Some(size) = size {
                    check_range("an fdb-table-size", *size, &limits::FDB_TABLE_SIZE)?;
                }
                vpls.fdb_table_size = *size;
            }
            (ServiceSetting::LocalAge(age), ServiceBody::Vpls(vpls)) => {
                if let Some(age) = age {
                    check_range("a local-age in seconds", *age, &limits::LOCAL_AGE_SECONDS)?;
                }
                vpls.local_age = *age;
            }
            (ServiceSetting::RouteDistinguisher(rd), ServiceBody::Vprn(routed)) => {
                if let Some(rd) = rd {
                    check_route_distinguisher(rd)?;
                }
                routed.route_distinguisher.clone_from(rd);
            }
            (ServiceSetting::GreTunnel(_), _) => return Err(not_applicable("gre-tunnel")),
            (ServiceSetting::FdbTableSize(_), _) => return Err(not_applicable("fdb-table-size")),
            (ServiceSetting::LocalAge(_), _) => return Err(not_applicable("local-age")),
            (ServiceSetting::RouteDistinguisher(_), _) => {
                return Err(not_applicable("route-distinguisher"))
            }
        }
        if let ServiceSetting::GreTunnel(tunnel) = setting {
            if let Some(old) = held_tunnel {
                self.gre_tunnels.remove(&old);
            }
            if let Some(new) = tunnel {
                self.gre_tunnels.insert(*new, id);
            }
        }
        Ok(())
    }

    fn apply_split_horizon_group(
        &mut self,
        service: ServiceId,
        name: &str,
        op: &NodeOp<DescriptionSetting>,
    ) -> Result<()> {
        check_name(name)?;
        let label = || format!("split-horizon-group {name:?} of service {service}");
        if matches!(op, NodeOp::Delete)
            && self
                .service_saps(service)
                .any(|(_, sap)| sap.split_horizon_group.as_deref() == Some(name))
        {
            return Err(ValidationError::InUse {
                what: label(),
                users: 1,
            });
        }
        let groups = &mut self.vpls_mut(service)?.split_horizon_groups;
        if let Some((group, DescriptionSetting(text))) =
            child_op(groups, name.to_owned(), op, label)?
        {
            check_description(text)?;
            group.description.clone_from(text);
        }
        Ok(())
    }

    fn apply_interface(
        &mut self,
        service: ServiceId,
        name: &str,
        op: &NodeOp<InterfaceSetting>,
    ) -> Result<()> {
        check_name(name)?;
        let label = || format!("interface {name:?} of service {service}");
        let vrf = Vrf::of(service, self.any_service(service)?.kind());
        let routed = self.routed_mut(service)?;
        match op {
            NodeOp::Create => {
                if routed.interfaces.contains_key(name) {
                    return Err(ValidationError::ObjectExists(label()));
                }
                routed
                    .interfaces
                    .insert(name.to_owned(), Interface::default());
                Ok(())
            }
            NodeOp::Enter => match routed.interfaces.contains_key(name) {
                true => Ok(()),
                false => Err(ValidationError::NoSuchObject(label())),
            },
            NodeOp::Delete => {
                let interface = routed
                    .interfaces
                    .get(name)
                    .ok_or_else(|| ValidationError::NoSuchObject(label()))?;
                if let Some(sap) = &interface.sap {
                    return Err(ValidationError::InUse {
                        what: format!("{} (SAP {sap})", label()),
                        users: 1,
                    });
                }
                let addresses: Vec<IpNet> = interface.addresses().collect();
                routed.interfaces.remove(name);
                for net in addresses {
                    self.addresses.remove(&(vrf, net.addr()));
                }
                Ok(())
            }
            NodeOp::Set(setting) => {
                let interface = routed
                    .interfaces
                    .get_mut(name)
                    .ok_or_else(|| ValidationError::NoSuchObject(label()))?;
                let (old, new) = match setting {
                    InterfaceSetting::Description(text) => {
                        check_description(text)?;
                        interface.description.clone_from(text);
                        return Ok(());
                    }
                    InterfaceSetting::Admin(state) => {
                        interface.admin = *state;
                        return Ok(());
                    }
                    InterfaceSetting::Ipv4(net) => {
                        let old = interface.ipv4.map(IpNet::V4);
                        interface.ipv4 = *net;
                        (old, net.map(IpNet::V4))
                    }
                    InterfaceSetting::Ipv6(net, true) => {
                        if !interface.ipv6.insert(*net) {
                            return Ok(());
                        }
                        (None, Some(IpNet::V6(*net)))
                    }
                    InterfaceSetting::Ipv6(net, false) => {
                        if !interface.ipv6.remove(net) {
                            return Err(ValidationError::NoSuchObject(format!(
                                "address {net} on {}",
                                label()
                            )));
                        }
                        (Some(IpNet::V6(*net)), None)
                    }
                };
                if let Some(old) = old {
                    self.addresses.remove(&(vrf, old.addr()));
                }
                if let Some(new) = new {
                    if !is_host_address(new) {
                        return Err(invalid(format!(
                            "a host address with its prefix length (not a network, broadcast, \
                             multicast or loopback address), found {new}"
                        )));
                    }
                    if let Some((owner, owner_if)) = self.addresses.get(&(vrf, new.addr())) {
                        return Err(ValidationError::DuplicateAddress {
                            addr: new.addr(),
                            vrf,
                            service: *owner,
                            interface: owner_if.clone(),
                        });
                    }
                    self.addresses
                        .insert((vrf, new.addr()), (service, name.to_owned()));
                }
                Ok(())
            }
        }
    }

    fn apply_static_route(
        &mut self,
        service: ServiceId,
        prefix: IpNet,
        op: &NodeOp<RouteSetting>,
    ) -> Result<()> {
        if prefix.trunc() != prefix {
            return Err(invalid(format!(
                "a network prefix without host bits, found {prefix} (did you mean {}?)",
                prefix.trunc()
            )));
        }
        let label = || format!("static-route-entry {prefix} of service {service}");
        // IES routes share the base routing instance: one prefix, one service.
        let base = self.any_service(service)?.kind() == ServiceKind::Ies;
        match (op, base.then(|| self.base_routes.get(&prefix)).flatten()) {
            (NodeOp::Create | NodeOp::Enter, Some(owner)) if *owner != service => {
                return Err(ValidationError::ObjectExists(format!(
                    "static-route-entry {prefix} in the base routing instance (ies {owner})"
                )));
            }
            (NodeOp::Create | NodeOp::Enter, _) if base => {
                self.base_routes.insert(prefix, service);
            }
            (NodeOp::Delete, _) if base => {
                self.base_routes.remove(&prefix);
            }
            _ => {}
        }
        let routed = self.routed_mut(service)?;
        match op {
            // SR OS creates a static-route-entry when it is entered.
            NodeOp::Create | NodeOp::Enter => {
                routed.static_routes.entry(prefix).or_default();
                Ok(())
            }
            NodeOp::Delete => routed
                .static_routes
                .remove(&prefix)
                .map(drop)
                .ok_or_else(|| ValidationError::NoSuchObject(label())),
            NodeOp::Set(setting) => {
                let route = routed
                    .static_routes
                    .get_mut(&prefix)
                    .ok_or_else(|| ValidationError::NoSuchObject(label()))?;
                set_route_target(route, prefix, setting)
            }
        }
    }

    fn sap_at(&self, path: &SapPath) -> Result<&Sap> {
        match self.saps.get(&path.sap) {
            Some(sap) if sap.service == path.service && sap.interface == path.interface => Ok(sap),
            _ => Err(ValidationError::NoSuchSap(path.sap.clone())),
        }
    }

    fn sap_mut(&mut self, path: &SapPath) -> Result<&mut Sap> {
        self.sap_at(path)?;
        self.saps
            .get_mut(&path.sap)
            .map(Arc::make_mut)
            .ok_or_else(|| ValidationError::NoSuchSap(path.sap.clone()))
    }

    fn apply_sap(&mut self, path: &SapPath, op: &SapOp, env: &Environment) -> Result<()> {
        let service = self.any_service(path.service)?;
        let kind = service.kind();
        match (&path.interface, service.body.routed()) {
            (None, None) => {}
            (Some(name), Some(routed)) => {
                if !routed.interfaces.contains_key(name) {
                    return Err(ValidationError::NoSuchObject(format!(
                        "interface {name:?} of service {}",
                        path.service
                    )));
                }
            }
            (None, Some(_)) => {
                return Err(ValidationError::NotApplicable {
                    what: "a SAP outside an IP interface",
                    to: format!("{kind} {}", path.service),
                })
            }
            (Some(_), None) => {
                return Err(ValidationError::NotApplicable {
                    what: "an IP interface",
                    to: format!("{kind} {}", path.service),
                })
            }
        }
        match op {
            SapOp::Create {
                capture,
                split_horizon_group,
            } => self.create_sap(path, kind, *capture, split_horizon_group, env),
            SapOp::Enter => self.sap_at(path).map(drop),
            SapOp::Delete => self.delete_sap(path),
            SapOp::Set(setting) => self.apply_sap_setting(path, kind, setting),
        }
    }

    fn create_sap(
        &mut self,
        path: &SapPath,
        kind: ServiceKind,
        capture: bool,
        split_horizon_group: &Option<String>,
        env: &Environment,
    ) -> Result<()> {
        let sap_id = &path.sap;
        if let Some(existing) = self.saps.get(sap_id) {
            return Err(ValidationError::SapExists {
                sap: sap_id.clone(),
                service: existing.service,
            });
        }
        sap_id.check_port(&env.ports)?;
        if capture {
            if kind != ServiceKind::Vpls {
                return Err(ValidationError::NotApplicable {
                    what: "capture-sap",
                    to: format!("{kind} {}", path.service),
                });
            }
            if !sap_id.has_wildcard() {
                return Err(ValidationError::CaptureSap {
                    sap: sap_id.clone(),
                    rule: "a capture SAP needs a wildcard tag (port:*, port:*.*, port:N.*)",
                });
            }
            if split_horizon_group.is_some() {
                return Err(ValidationError::CaptureSap {
                    sap: sap_id.clone(),
                    rule: "a capture SAP does not forward, so it has no split-horizon group",
                });
            }
        }
        if let Some(group) = split_horizon_group {
            let vpls = self.vpls_mut(path.service)?;
            if !vpls.split_horizon_groups.contains_key(group) {
                return Err(ValidationError::NoSuchObject(format!(
                    "split-horizon-group {group:?} of service {}",
                    path.service
                )));
            }
        }
        if kind == ServiceKind::Epipe && self.epipe_endpoints(path.service) >= 2 {
            return Err(ValidationError::TooManyEndpoints(path.service));
        }
        if let Some(name) = &path.interface {
            if sap_id.has_wildcard() {
                return Err(invalid(format!(
                    "a SAP without wildcards on an IP interface, found {sap_id}"
                )));
            }
            let routed = self.routed_mut(path.service)?;
            let interface = routed
                .interfaces
                .get_mut(name)
                .ok_or_else(|| ValidationError::NoSuchObject(format!("interface {name:?}")))?;
            if let Some(existing) = &interface.sap {
                return Err(ValidationError::ObjectExists(format!(
                    "SAP {existing} on interface {name:?} (one SAP per interface)"
                )));
            }
            interface.sap = Some(sap_id.clone());
        }
        self.saps.insert(
            sap_id.clone(),
            Arc::new(Sap::new(
                path.service,
                path.interface.clone(),
                capture,
                split_horizon_group.clone(),
            )),
        );
        self.service_saps.insert((path.service, sap_id.clone()));
        Ok(())
    }

    fn delete_sap(&mut self, path: &SapPath) -> Result<()> {
        let sap = self.sap_at(path)?.clone();
        for dir in [Direction::Ingress, Direction::Egress] {
            let settings = sap.direction(dir);
            for filter in settings.filters() {
                self.reference(Referent::Filter(filter), false);
            }
            if let Some(id) = settings.qos {
                self.reference(
                    Referent::Qos(QosRef {
                        kind: dir.qos_kind(),
                        id,
                    }),
                    false,
                );
            }
        }
        for mac in &sap.static_macs {
            self.static_macs.remove(&(path.service, *mac));
        }
        if let Some(name) = &path.interface {
            if let Some(interface) = self.routed_mut(path.service)?.interfaces.get_mut(name) {
                interface.sap = None;
            }
        }
        self.saps.remove(&path.sap);
        self.service_saps.remove(&(path.service, path.sap.clone()));
        Ok(())
    }

    fn apply_sap_setting(
        &mut self,
        path: &SapPath,
        kind: ServiceKind,
        setting: &SapSetting,
    ) -> Result<()> {
        let sap = self.sap_at(path)?;
        let capture = sap.capture;
        let not_applicable = |what| ValidationError::NotApplicable {
            what,
            to: format!(
                "{}SAP {} of {kind} {}",
                if capture { "capture " } else { "" },
                path.sap,
                path.service
            ),
        };
        let capture_rule = |rule| ValidationError::CaptureSap {
            sap: path.sap.clone(),
            rule,
        };
        let vpls_forwarding = kind == ServiceKind::Vpls && !capture;
        match setting {
            SapSetting::Description(text) => {
                check_description(text)?;
                self.sap_mut(path)?.description.clone_from(text);
            }
            SapSetting::Admin(state) => self.sap_mut(path)?.admin = *state,
            SapSetting::Filter(dir, filter_kind, id) => {
                if let Some(id) = id {
                    let filter = FilterRef {
                        kind: *filter_kind,
                        id: *id,
                    };
                    let definition = self
                        .filters
                        .get(&filter)
                        .ok_or(ValidationError::NoSuchFilter(filter))?;
                    if capture
                        && (*dir != Direction::Ingress
                            || *filter_kind != FilterKind::Mac
                            || definition.mac_type != MacFilterType::Vid)
                    {
                        return Err(capture_rule(
                            "a capture SAP takes only an ingress MAC filter of type vid",
                        ));
                    }
                    if *filter_kind == FilterKind::Mac && kind.is_routed() {
                        return Err(not_applicable("a MAC filter"));
                    }
                }
                let old = self.sap_mut(path)?.direction(*dir).filter(*filter_kind);
                if let Some(old) = old {
                    self.reference(
                        Referent::Filter(FilterRef {
                            kind: *filter_kind,
                            id: old,
                        }),
                        false,
                    );
                }
                if let Some(id) = id {
                    self.reference(
                        Referent::Filter(FilterRef {
                            kind: *filter_kind,
                            id: *id,
                        }),
                        true,
                    );
                }
                *self
                    .sap_mut(path)?
                    .direction_mut(*dir)
                    .filter_mut(*filter_kind) = *id;
            }
            SapSetting::Qos(dir, id) => {
                let qos_kind = dir.qos_kind();
                if let Some(id) = id {
                    if capture {
                        return Err(capture_rule("a capture SAP has no QoS policy"));
                    }
                    let policy = QosRef {
                        kind: qos_kind,
                        id: *id,
                    };
                    if !self.qos.contains_key(&policy) {
                        return Err(ValidationError::NoSuchPolicy(policy));
                    }
                    self.reference(Referent::Qos(policy), true);
                }
                let sap = self.sap_mut(path)?;
                let old = std::mem::replace(&mut sap.direction_mut(*dir).qos, *id);
                if let Some(old) = old {
                    self.reference(
                        Referent::Qos(QosRef {
                            kind: qos_kind,
                            id: old,
                        }),
                        false,
                    );
                }
            }
            SapSetting::ClearPolicerOverrides(dir) => {
                self.sap_mut(path)?
                    .direction_mut(*dir)
                    .policer_overrides
                    .clear();
            }
            SapSetting::MaxMacAddresses(limit) => {
                if !vpls_forwarding {
                    return Err(not_applicable("max-nbr-mac-addr"));
                }
                if let Some(limit) = limit {
                    check_range("a max-nbr-mac-addr", *limit, &limits::MAC_LIMIT)?;
                }
                self.sap_mut(path)?.max_mac_addresses = *limit;
            }
            SapSetting::StaticMac(mac, add) => {
                if !vpls_forwarding {
                    return Err(not_applicable("static-mac"));
                }
                let key = (path.service, *mac);
                if *add {
                    if mac.0[0] & 1 == 1 || mac.0 == [0; 6] {
                        return Err(invalid(format!(
                            "a unicast, non-zero static MAC, found {mac}"
                        )));
                    }
                    match self.static_macs.get(&key) {
                        Some(owner) if *owner == path.sap => return Ok(()),
                        Some(owner) => {
                            return Err(ValidationError::StaticMacTaken {
                                mac: *mac,
                                service: path.service,
                                sap: owner.clone(),
                            })
                        }
                        None => {}
                    }
                    self.static_macs.insert(key, path.sap.clone());
                    self.sap_mut(path)?.static_macs.insert(*mac);
                } else {
                    if !self.sap_mut(path)?.static_macs.remove(mac) {
                        return Err(ValidationError::NoSuchObject(format!(
                            "static-mac {mac} on SAP {}",
                            path.sap
                        )));
                    }
                    self.static_macs.remove(&key);
                }
            }
            SapSetting::DisableLearning(on) => {
                if !vpls_forwarding {
                    return Err(not_applicable("disable-learning"));
                }
                self.sap_mut(path)?.disable_learning = *on;
            }
            SapSetting::DisableAging(on) => {
                if !vpls_forwarding {
                    return Err(not_applicable("disable-aging"));
                }
                self.sap_mut(path)?.disable_aging = *on;
            }
            SapSetting::DynamicServicesPolicy(name) => {
                if !capture {
                    return Err(not_applicable("dynamic-services"));
                }
                if let Some(name) = name {
                    check_name(name)?;
                }
                self.sap_mut(path)?.dynamic_services.policy.clone_from(name);
            }
            SapSetting::DynamicServicesAdmin(state) => {
                if !capture {
                    return Err(not_applicable("dynamic-services"));
                }
                self.sap_mut(path)?.dynamic_services.admin = *state;
            }
        }
        Ok(())
    }

    fn apply_policer_override(
        &mut self,
        path: &SapPath,
        dir: Direction,
        policer: PolicerId,
        op: &NodeOp<PolicerSetting>,
    ) -> Result<()> {
        check_range("a policer id", policer, &limits::POLICER_ID)?;
        let sap = self.sap_mut(path)?;
        if sap.capture {
            return Err(ValidationError::CaptureSap {
                sap: path.sap.clone(),
                rule: "a capture SAP has no policers",
            });
        }
        let label = || {
            format!(
                "{} policer-override for policer {policer} on SAP {}",
                dir.keyword(),
                path.sap
            )
        };
        if let NodeOp::Set(setting) = op {
            check_policer_setting(setting)?;
        }
        let overrides = &mut sap.direction_mut(dir).policer_overrides;
        let Some((over, setting)) = child_op(overrides, policer, op, label)? else {
            return Ok(());
        };
        match setting {
            PolicerSetting::Rate(rate) => over.rate = *rate,
            PolicerSetting::Mbs(bytes) => over.mbs = *bytes,
            PolicerSetting::Cbs(bytes) => over.cbs = *bytes,
            PolicerSetting::StatMode(mode) => over.stat_mode = *mode,
            PolicerSetting::PacketByteOffset(offset) => over.packet_byte_offset = *offset,
            PolicerSetting::Description(_) | PolicerSetting::Mode(_) => {
                return Err(ValidationError::NotApplicable {
                    what: "description and mode",
                    to: label(),
                })
            }
        }
        Ok(())
    }

    fn apply_filter(&mut self, filter: FilterRef, op: &NodeOp<FilterSetting>) -> Result<()> {
        check_range("a filter id", filter.id, &limits::FILTER_ID)?;
        let users = self.users_unless_deleted(Referent::Filter(filter), op)?;
        let found = node_op(
            &mut self.filters,
            filter,
            op,
            || ValidationError::FilterExists(filter),
            || ValidationError::NoSuchFilter(filter),
        )?;
        let Some((definition, setting)) = found else {
            return Ok(());
        };
        match setting {
            FilterSetting::Description(text) => {
                check_description(text)?;
                definition.description.clone_from(text);
            }
            FilterSetting::DefaultAction(action) => {
                definition.default_action = action.unwrap_or(Action::Drop);
            }
            FilterSetting::MacType(mac_type) => {
                if filter.kind != FilterKind::Mac {
                    return Err(ValidationError::NotApplicable {
                        what: "type",
                        to: filter.to_string(),
                    });
                }
                if definition.mac_type != *mac_type {
                    if !definition.entries.is_empty() {
                        return Err(invalid(format!(
                            "{filter} without entries before its type changes"
                        )));
                    }
                    if users > 0 {
                        return Err(ValidationError::InUse {
                            what: filter.to_string(),
                            users,
                        });
                    }
                    definition.mac_type = *mac_type;
                }
            }
        }
        Ok(())
    }

    fn apply_filter_entry(
        &mut self,
        filter: FilterRef,
        entry: EntryId,
        op: &NodeOp<EntrySetting>,
    ) -> Result<()> {
        check_range("an entry id", entry, &limits::ENTRY_ID)?;
        let definition = self
            .filters
            .get_mut(&filter)
            .ok_or(ValidationError::NoSuchFilter(filter))?;
        let mac_type = definition.mac_type;
        let label = || format!("entry {entry} of {filter}");
        let Some((item, setting)) = child_op(&mut definition.entries, entry, op, label)? else {
            return Ok(());
        };
        match setting {
            EntrySetting::Description(text) => {
                check_description(text)?;
                item.description.clone_from(text);
            }
            EntrySetting::Action(action) => item.action = *action,
            EntrySetting::ClearMatch => {
                item.ip = IpMatch::default();
                item.mac = MacMatch::default();
            }
            EntrySetting::Match(criterion) => {
                check_criterion(filter, mac_type, criterion)?;
                set_criterion(item, criterion);
            }
        }
        Ok(())
    }

    fn apply_qos_policy(&mut self, policy: QosRef, op: &NodeOp<DescriptionSetting>) -> Result<()> {
        check_range("a QoS policy id", policy.id, &limits::QOS_POLICY_ID)?;
        self.users_unless_deleted(Referent::Qos(policy), op)?;
        let found = node_op(
            &mut self.qos,
            policy,
            op,
            || ValidationError::PolicyExists(policy),
            || ValidationError::NoSuchPolicy(policy),
        )?;
        if let Some((definition, DescriptionSetting(text))) = found {
            check_description(text)?;
            definition.description.clone_from(text);
        }
        Ok(())
    }

    fn apply_policer(
        &mut self,
        policy: QosRef,
        policer: PolicerId,
        op: &NodeOp<PolicerSetting>,
    ) -> Result<()> {
        check_range("a policer id", policer, &limits::POLICER_ID)?;
        if let NodeOp::Set(setting) = op {
            check_policer_setting(setting)?;
        }
        let definition = self
            .qos
            .get_mut(&policy)
            .ok_or(ValidationError::NoSuchPolicy(policy))?;
        let label = || format!("policer {policer} of {policy}");
        let Some((item, setting)) = child_op(&mut definition.policers, policer, op, label)? else {
            return Ok(());
        };
        match setting {
            PolicerSetting::Description(text) => item.description.clone_from(text),
            PolicerSetting::Rate(rate) => item.rate = rate.unwrap_or_default(),
            PolicerSetting::Mbs(bytes) => item.mbs = *bytes,
            PolicerSetting::Cbs(bytes) => item.cbs = *bytes,
            PolicerSetting::Mode(mode) => item.mode = mode.unwrap_or_default(),
            PolicerSetting::StatMode(mode) => item.stat_mode = mode.unwrap_or_default(),
            PolicerSetting::PacketByteOffset(offset) => {
                item.packet_byte_offset = offset.unwrap_or(0)
            }
        }
        Ok(())
    }

    /// The rules that hold between objects, checked once at the end of a batch on what it
    /// touched (SR OS lets a script build an interface before giving it its SAP).
    fn check_batch(&self, touched: &Touched) -> Result<(), TxnError> {
        for (policy, origin) in &touched.qos {
            let Some(definition) = self.qos.get(policy) else {
                continue;
            };
            for (id, policer) in &definition.policers {
                if let (Rate::Kbps(pir), Rate::Kbps(cir)) = (policer.rate.pir, policer.rate.cir) {
                    if policer.mode != MeterMode::SrTcm && cir > pir {
                        return Err(TxnError {
                            origin: origin.clone(),
                            error: ValidationError::CirAbovePir {
                                policy: *policy,
                                policer: *id,
                                pir: policer.rate.pir,
                                cir: policer.rate.cir,
                            },
                        });
                    }
                }
            }
        }
        for (id, origin) in &touched.routed {
            let Some(routed) = self.services.get(id).and_then(|s| s.body.routed()) else {
                continue;
            };
            let fail = |error| TxnError {
                origin: origin.clone(),
                error,
            };
            for (name, interface) in &routed.interfaces {
                if interface.sap.is_none() {
                    return Err(fail(ValidationError::InterfaceWithoutSap {
                        service: *id,
                        interface: name.clone(),
                    }));
                }
            }
            for (prefix, route) in &routed.static_routes {
                if let Some(RouteTarget::NextHop(next_hop)) = route.target {
                    let connected = routed
                        .interfaces
                        .values()
                        .flat_map(Interface::addresses)
                        .any(|net| net.contains(&next_hop) && net.addr() != next_hop);
                    if !connected {
                        return Err(fail(ValidationError::NextHopUnreachable {
                            service: *id,
                            prefix: *prefix,
                            next_hop,
                        }));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The children of an object by key (groups, filter entries, policers, overrides): create,
/// enter and delete mean the same for all of them.
trait Children {
    type Key;
    type Value: Default;
    fn has(&self, key: &Self::Key) -> bool;
    fn add(&mut self, key: Self::Key);
    fn take(&mut self, key: &Self::Key) -> bool;
    fn child_mut(&mut self, key: &Self::Key) -> Option<&mut Self::Value>;
}

impl<K: Ord, V: Default> Children for BTreeMap<K, V> {
    type Key = K;
    type Value = V;
    fn has(&self, key: &K) -> bool {
        self.contains_key(key)
    }
    fn add(&mut self, key: K) {
        self.insert(key, V::default());
    }
    fn take(&mut self, key: &K) -> bool {
        self.remove(key).is_some()
    }
    fn child_mut(&mut self, key: &K) -> Option<&mut V> {
        self.get_mut(key)
    }
}

impl<K: Ord + Clone, V: Default + Clone> Children for OrdMap<K, V> {
    type Key = K;
    type Value = V;
    fn has(&self, key: &K) -> bool {
        self.contains_key(key)
    }
    fn add(&mut self, key: K) {
        self.insert(key, V::default());
    }
    fn take(&mut self, key: &K) -> bool {
        self.remove(key).is_some()
    }
    fn child_mut(&mut self, key: &K) -> Option<&mut V> {
        self.get_mut(key)
    }
}

/// Applies `op`'s create, enter or delete to the child `key` of `map`; for a `Set`, returns the
/// child and the setting for the caller to apply.
fn child_op<'m, 's, M: Children, S>(
    map: &'m mut M,
    key: M::Key,
    op: &'s NodeOp<S>,
    label: impl Fn() -> String,
) -> Result<Option<(&'m mut M::Value, &'s S)>> {
    node_op(
        map,
        key,
        op,
        || ValidationError::ObjectExists(label()),
        || ValidationError::NoSuchObject(label()),
    )
}

/// [`child_op`] with the caller's errors for an existing and a missing object.
fn node_op<'m, 's, M: Children, S>(
    map: &'m mut M,
    key: M::Key,
    op: &'s NodeOp<S>,
    exists: impl FnOnce() -> ValidationError,
    missing: impl FnOnce() -> ValidationError,
) -> Result<Option<(&'m mut M::Value, &'s S)>> {
    match op {
        NodeOp::Create if map.has(&key) => Err(exists()),
        NodeOp::Create => {
            map.add(key);
            Ok(None)
        }
        NodeOp::Enter if map.has(&key) => Ok(None),
        NodeOp::Delete if map.take(&key) => Ok(None),
        NodeOp::Set(setting) => match map.child_mut(&key) {
            Some(child) => Ok(Some((child, setting))),
            None => Err(missing()),
        },
        NodeOp::Enter | NodeOp::Delete => Err(missing()),
    }
}

fn lower_bound(service: ServiceId) -> (ServiceId, SapId) {
    // The smallest SAP id: an empty port name cannot be built through PortName::new, so this
    // one is spelled out as the least possible key.
    (service, SapId::least())
}

impl SapId {
    /// The least SAP id in the total order, used as a range bound.
    pub(crate) fn least() -> Self {
        SapId::new(PortName::least(), crate::id::SapTags::Null)
    }
}

fn check_gre(tunnel: &GreTunnel) -> Result<()> {
    if tunnel.local.is_ipv4() != tunnel.remote.is_ipv4() {
        return Err(invalid(format!(
            "GRE local and remote addresses of one family, found {} and {}",
            tunnel.local, tunnel.remote
        )));
    }
    for addr in [tunnel.local, tunnel.remote] {
        if addr.is_unspecified() || addr.is_multicast() {
            return Err(invalid(format!(
                "a unicast GRE tunnel address, found {addr}"
            )));
        }
    }
    Ok(())
}

/// Checks an SR OS route distinguisher: `ASN:N` or `IPv4:N`.
fn check_route_distinguisher(rd: &str) -> Result<()> {
    let bad = || {
        invalid(format!(
            "a route distinguisher ASN:NUMBER or IPv4:NUMBER, found {rd:?}"
        ))
    };
    let (admin, assigned) = rd.split_once(':').ok_or_else(bad)?;
    let assigned: u32 = assigned.parse().map_err(|_| bad())?;
    if admin.parse::<std::net::Ipv4Addr>().is_ok() {
        return if assigned <= u32::from(u16::MAX) {
            Ok(())
        } else {
            Err(bad())
        };
    }
    let asn: u32 = admin.parse().map_err(|_| bad())?;
    if asn > u32::from(u16::MAX) && assigned > u32::from(u16::MAX) {
        return Err(bad());
    }
    Ok(())
}

fn set_route_target(route: &mut StaticRoute, prefix: IpNet, setting: &RouteSetting) -> Result<()> {
    let taken = |existing: RouteTarget| ValidationError::RouteTargetTaken {
        prefix,
        existing: match existing {
            RouteTarget::NextHop(addr) => format!("next-hop {addr}"),
            RouteTarget::BlackHole => "black-hole".into(),
        },
    };
    let missing = |what: String| {
        ValidationError::NoSuchObject(format!("{what} of static-route-entry {prefix}"))
    };
    let wanted = match setting {
        RouteSetting::NextHop(addr) => {
            if addr.is_ipv4() != prefix.addr().is_ipv4() {
                return Err(invalid(format!(
                    "a next-hop of the route's address family, found {addr} for {prefix}"
                )));
            }
            RouteTarget::NextHop(*addr)
        }
        RouteSetting::BlackHole => RouteTarget::BlackHole,
        RouteSetting::NoNextHop(addr) => {
            if route.target != Some(RouteTarget::NextHop(*addr)) {
                return Err(missing(format!("next-hop {addr}")));
            }
            *route = StaticRoute::default();
            return Ok(());
        }
        RouteSetting::NoBlackHole => {
            if route.target != Some(RouteTarget::BlackHole) {
                return Err(missing("black-hole".into()));
            }
            *route = StaticRoute::default();
            return Ok(());
        }
        RouteSetting::Admin(state) => {
            route
                .target
                .ok_or_else(|| missing("next-hop or black-hole".into()))?;
            route.admin = *state;
            return Ok(());
        }
        RouteSetting::Description(text) => {
            check_description(text)?;
            route
                .target
                .ok_or_else(|| missing("next-hop or black-hole".into()))?;
            route.description.clone_from(text);
            return Ok(());
        }
    };
    match route.target {
        Some(existing) if existing != wanted => Err(taken(existing)),
        _ => {
            route.target = Some(wanted);
            Ok(())
        }
    }
}

fn check_policer_setting(setting: &PolicerSetting) -> Result<()> {
    match setting {
        PolicerSetting::Description(text) => check_description(text),
        PolicerSetting::Rate(Some(rate)) => {
            for (what, value) in [("a rate in kbps", rate.pir), ("a cir in kbps", rate.cir)] {
                if let Rate::Kbps(kbps) = value {
                    check_range(what, kbps, &limits::RATE_KBPS)?;
                }
            }
            if rate.pir == Rate::Kbps(0) {
                return Err(invalid("a rate above 0 kbps (or max)".into()));
            }
            Ok(())
        }
        PolicerSetting::Mbs(Some(bytes)) | PolicerSetting::Cbs(Some(bytes)) => {
            check_range("a burst size in bytes", *bytes, &limits::BURST_BYTES)
        }
        PolicerSetting::PacketByteOffset(Some(offset)) => {
            let (range, what) = if *offset >= 0 {
                (limits::BYTE_OFFSET_ADD, "packet-byte-offset add")
            } else {
                (limits::BYTE_OFFSET_SUBTRACT, "packet-byte-offset subtract")
            };
            limits::check(what, offset.abs(), &range).map_err(invalid)
        }
        _ => Ok(()),
    }
}

fn check_criterion(
    filter: FilterRef,
    mac_type: MacFilterType,
    criterion: &MatchSetting,
) -> Result<()> {
    if !criterion.applies_to(filter.kind) {
        return Err(ValidationError::NotApplicable {
            what: "this match criterion",
            to: filter.to_string(),
        });
    }
    let want_v4 = filter.kind == FilterKind::Ip;
    match criterion {
        MatchSetting::SrcIp(Some(net)) | MatchSetting::DstIp(Some(net)) => {
            if net.addr().is_ipv4() != want_v4 {
                return Err(invalid(format!(
                    "an {} prefix in {filter}, found {net}",
                    if want_v4 { "IPv4" } else { "IPv6" }
                )));
            }
            if net.trunc() != *net {
                return Err(invalid(format!(
                    "a prefix without host bits, found {net} (did you mean {}?)",
                    net.trunc()
                )));
            }
        }
        MatchSetting::SrcPort(Some(PortMatch::Range(low, high)))
        | MatchSetting::DstPort(Some(PortMatch::Range(low, high)))
            if low > high =>
        {
            return Err(invalid(format!(
                "a port range low..high, found {low} {high}"
            )));
        }
        MatchSetting::Dscp(Some(value)) if *value > 63 => {
            return Err(invalid(format!("a DSCP value 0..=63, found {value}")));
        }
        MatchSetting::Etype(Some(etype)) => {
            check_range("an ethertype", u32::from(*etype), &limits::ETHERTYPE)?;
        }
        MatchSetting::OuterTag(tag) | MatchSetting::InnerTag(tag) => {
            if let Some(tag) = tag {
                check_range("a tag value", u32::from(tag.value), &limits::TAG_MATCH)?;
                check_range("a tag mask", u32::from(tag.mask), &limits::TAG_MATCH)?;
            }
            if mac_type != MacFilterType::Vid && tag.is_some() {
                return Err(ValidationError::NotApplicable {
                    what: "outer-tag / inner-tag",
                    to: format!("{filter} (a MAC filter of type normal; use type vid)"),
                });
            }
        }
        MatchSetting::SrcMac(Some(_)) | MatchSetting::DstMac(Some(_)) | MatchSetting::Etype(_)
            if mac_type == MacFilterType::Vid =>
        {
            return Err(ValidationError::NotApplicable {
                what: "MAC address and ethertype criteria",
                to: format!("{filter} (a MAC filter of type vid)"),
            });
        }
        _ => {}
    }
    Ok(())
}

fn set_criterion(entry: &mut FilterEntry, criterion: &MatchSetting) {
    let (ip, mac) = (&mut entry.ip, &mut entry.mac);
    match criterion {
        MatchSetting::Protocol(v) => ip.protocol = *v,
        MatchSetting::SrcIp(v) => ip.src_ip = *v,
        MatchSetting::DstIp(v) => ip.dst_ip = *v,
        MatchSetting::SrcPort(v) => ip.src_port = *v,
        MatchSetting::DstPort(v) => ip.dst_port = *v,
        MatchSetting::Dscp(v) => ip.dscp = *v,
        MatchSetting::IcmpType(v) => ip.icmp_type = *v,
        MatchSetting::IcmpCode(v) => ip.icmp_code = *v,
        MatchSetting::FrameType(v) => mac.frame_type = *v,
        MatchSetting::SrcMac(v) => mac.src_mac = *v,
        MatchSetting::DstMac(v) => mac.dst_mac = *v,
        MatchSetting::Etype(v) => mac.etype = *v,
        MatchSetting::OuterTag(v) => mac.outer_tag = *v,
        MatchSetting::InnerTag(v) => mac.inner_tag = *v,
    }
}

impl Diff {
    fn between(old: &ServiceConfig, new: &ServiceConfig, touched: &Touched) -> Self {
        fn deltas<K: Ord + Clone, V: PartialEq>(
            keys: impl Iterator<Item = K>,
            old: impl Fn(&K) -> Option<V>,
            new: impl Fn(&K) -> Option<V>,
        ) -> Vec<(K, Delta)> {
            keys.filter_map(|key| {
                let delta = match (old(&key), new(&key)) {
                    (None, Some(_)) => Delta::Added,
                    (Some(_), None) => Delta::Removed,
                    (Some(a), Some(b)) if a != b => Delta::Changed,
                    _ => return None,
                };
                Some((key, delta))
            })
            .collect()
        }
        Diff {
            services: deltas(
                touched.services.keys().copied(),
                |id| old.services.get(id),
                |id| new.services.get(id),
            ),
            saps: deltas(
                touched.saps.keys().cloned(),
                |id| old.saps.get(id),
                |id| new.saps.get(id),
            ),
            filters: deltas(
                touched.filters.keys().copied(),
                |id| old.filters.get(id),
                |id| new.filters.get(id),
            ),
            qos_policies: deltas(
                touched.qos.keys().copied(),
                |id| old.qos.get(id),
                |id| new.qos.get(id),
            ),
        }
    }
}
