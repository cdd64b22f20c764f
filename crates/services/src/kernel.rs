//! The L3 kernel plan: the Linux kernel is the L3 engine of IES and VPRN services.
//!
//! Each IP interface of an IES or VPRN is a TAP device that the data plane owns and
//! cross-connects with the interface's SAP (tags popped towards the kernel, pushed towards the
//! SAP), the way VPP's linux-cp plugin pairs its interfaces with TAPs. The kernel gives the TAP
//! its addresses, answers ARP/ND and ping, and routes between the TAPs of one routing instance.
//! An IES lives in the daemon's own network namespace; each VPRN gets a network namespace of
//! its own, so overlapping customer addresses never meet. The executor keeps VPRN namespaces
//! anonymous, alive only through a descriptor it holds: like the TAPs, they vanish with the
//! process, and nothing of them can outlive a crash.
//!
//! This needs neither the kernel's 802.1Q module nor VRF devices (kernels built without them are
//! common in VMs), and keeps brasa in the path of every L3 SAP frame: SAP filters, policers
//! and counters apply to L3 SAPs exactly as to L2 ones.
//!
//! From a configuration, [`desired`] derives the kernel objects brasa wants; [`plan`] turns two
//! such states into ordered [`KernelStep`]s, each with its [`inverse`](KernelStep::inverse), so
//! an executor that fails at step N undoes steps N−1..0 with [`KernelPlan::rollback`] and leaves
//! the kernel as it was. TAPs have deterministic names of at most 15 bytes starting with
//! [`NAME_PREFIX`], an alias (IFLA_IFALIAS) saying what they are and a stable, locally
//! administered MAC address; routes carry [`ROUTE_PROTOCOL`]. The data plane opens TAPs
//! without `TUNSETPERSIST`, so they vanish with the process; what can outlive a crash is a
//! route of the daemon's own namespace that goes through no TAP (a blackhole), and
//! [`reconcile`] removes those before it builds the configuration's state afresh.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::ServiceConfig;
use crate::model::{AdminState, RouteTarget, ServiceBody, ServiceId};

/// The first bytes of every link name brasa creates ("brasa services").
pub const NAME_PREFIX: &str = "brs";
/// The first word of every alias brasa gives a link it creates.
pub const ALIAS_PREFIX: &str = "brasa";
/// The route protocol (`rtm_protocol`) of the routes brasa installs, so that they can be found
/// after a crash. Unassigned in iproute2's `rt_protos`.
pub const ROUTE_PROTOCOL: u8 = 196;

/// The network namespace an L3 object lives in: `None` is the daemon's own (IES), `Some(name)`
/// a VPRN's ([`vprn_namespace`] names it for the executor and for operators).
pub type Namespace = Option<String>;

/// An L3 interface's TAP device.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tap {
    /// The interface name (at most 15 bytes).
    pub name: String,
    /// The IFLA_IFALIAS brasa sets: what the TAP is.
    pub alias: String,
    /// Its MAC address: stable across restarts, locally administered.
    pub mac: [u8; 6],
    /// Where it lives.
    pub namespace: Namespace,
}

/// An address on a TAP.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    /// The TAP's namespace.
    pub namespace: Namespace,
    /// The TAP.
    pub link: String,
    /// Address and prefix length.
    pub addr: IpNet,
}

/// Where a route goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteVia {
    /// Through a gateway.
    Gateway(IpAddr),
    /// Discarded.
    Blackhole,
}

/// A route brasa installs (with protocol [`ROUTE_PROTOCOL`], in the main table of its
/// namespace).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    /// The routing instance's namespace.
    pub namespace: Namespace,
    /// The destination.
    pub prefix: IpNet,
    /// The target.
    pub via: RouteVia,
}

/// The kernel objects a configuration wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelState {
    /// VPRN namespaces.
    pub namespaces: BTreeSet<String>,
    /// TAPs by name (all up).
    pub taps: BTreeMap<String, Tap>,
    /// Addresses.
    pub addresses: BTreeSet<Address>,
    /// Routes.
    pub routes: BTreeSet<Route>,
}

/// One kernel operation. The executor performs it over rtnetlink (TAPs through the data plane,
/// which must own their descriptors).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KernelStep {
    /// Create a VPRN's network namespace (loopback up, forwarding on).
    CreateNamespace {
        /// Its name.
        name: String,
    },
    /// Delete a VPRN namespace (empty of brasa's TAPs by then).
    DeleteNamespace {
        /// Its name.
        name: String,
    },
    /// Create a TAP (down, with its alias and MAC, forwarding on) in its namespace.
    CreateTap(Tap),
    /// Delete a TAP (down by then).
    DeleteTap(Tap),
    /// Set a TAP up or down.
    SetUp {
        /// The TAP's namespace.
        namespace: Namespace,
        /// The TAP.
        link: String,
        /// Up (true) or down.
        up: bool,
    },
    /// Add an address.
    AddAddress(Address),
    /// Remove an address.
    DelAddress(Address),
    /// Add a route.
    AddRoute(Route),
    /// Remove a route.
    DelRoute(Route),
}

impl KernelStep {
    /// The step that undoes this one.
    pub fn inverse(&self) -> KernelStep {
        match self.clone() {
            KernelStep::CreateNamespace { name } => KernelStep::DeleteNamespace { name },
            KernelStep::DeleteNamespace { name } => KernelStep::CreateNamespace { name },
            KernelStep::CreateTap(tap) => KernelStep::DeleteTap(tap),
            KernelStep::DeleteTap(tap) => KernelStep::CreateTap(tap),
            KernelStep::SetUp {
                namespace,
                link,
                up,
            } => KernelStep::SetUp {
                namespace,
                link,
                up: !up,
            },
            KernelStep::AddAddress(address) => KernelStep::DelAddress(address),
            KernelStep::DelAddress(address) => KernelStep::AddAddress(address),
            KernelStep::AddRoute(route) => KernelStep::DelRoute(route),
            KernelStep::DelRoute(route) => KernelStep::AddRoute(route),
        }
    }
}

/// `name` or `name (in NAMESPACE)`, for messages.
struct In<'a>(&'a str, &'a Namespace);

impl fmt::Display for In<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(namespace) => write!(f, "{} (in {namespace})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

impl fmt::Display for KernelStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelStep::CreateNamespace { name } => write!(f, "create namespace {name}"),
            KernelStep::DeleteNamespace { name } => write!(f, "delete namespace {name}"),
            KernelStep::CreateTap(tap) => {
                write!(
                    f,
                    "create {} ({})",
                    In(&tap.name, &tap.namespace),
                    tap.alias
                )
            }
            KernelStep::DeleteTap(tap) => {
                write!(
                    f,
                    "delete {} ({})",
                    In(&tap.name, &tap.namespace),
                    tap.alias
                )
            }
            KernelStep::SetUp {
                namespace,
                link,
                up,
            } => write!(
                f,
                "set {} {}",
                In(link, namespace),
                if *up { "up" } else { "down" }
            ),
            KernelStep::AddAddress(a) => {
                write!(f, "add address {} to {}", a.addr, In(&a.link, &a.namespace))
            }
            KernelStep::DelAddress(a) => write!(
                f,
                "remove address {} from {}",
                a.addr,
                In(&a.link, &a.namespace)
            ),
            KernelStep::AddRoute(route) => write!(f, "add route {}", RouteText(route)),
            KernelStep::DelRoute(route) => write!(f, "remove route {}", RouteText(route)),
        }
    }
}

struct RouteText<'a>(&'a Route);

impl fmt::Display for RouteText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let route = self.0;
        match route.via {
            RouteVia::Gateway(gateway) => write!(f, "{} via {gateway}", route.prefix)?,
            RouteVia::Blackhole => write!(f, "blackhole {}", route.prefix)?,
        }
        if let Some(namespace) = &route.namespace {
            write!(f, " (in {namespace})")?;
        }
        Ok(())
    }
}

/// Ordered kernel steps: removals first (routes, addresses, TAPs, namespaces), then creations
/// (namespaces, TAPs, addresses, TAPs up, routes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelPlan {
    /// The steps, in execution order.
    pub steps: Vec<KernelStep>,
}

impl KernelPlan {
    /// True when the kernel needs no change.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The steps that undo the first `executed` steps (those that succeeded before a failure),
    /// in the order to run them.
    pub fn rollback(&self, executed: usize) -> Vec<KernelStep> {
        self.steps[..executed.min(self.steps.len())]
            .iter()
            .rev()
            .map(KernelStep::inverse)
            .collect()
    }

    /// The steps that undo the whole plan (e.g. the data plane refused the transaction after
    /// the kernel accepted it).
    pub fn inverse(&self) -> Vec<KernelStep> {
        self.rollback(self.steps.len())
    }
}

/// The name of VPRN `id`'s namespace.
pub fn vprn_namespace(id: ServiceId) -> String {
    format!("vprn-{id}")
}

/// The TAP of interface `interface` of service `service` (`kind` is `ies` or `vprn`): its
/// name ([`NAME_PREFIX`], `t`, 11 hex digits of a hash of the alias), alias and MAC, the same
/// after every restart so that customers' ARP caches stay right.
pub fn tap(kind: &str, service: ServiceId, interface: &str, namespace: Namespace) -> Tap {
    let alias = format!("{ALIAS_PREFIX} {kind} {service} interface {interface:?}");
    let hash = fnv1a(alias.as_bytes());
    let bytes = hash.to_be_bytes();
    Tap {
        name: format!("{NAME_PREFIX}t{:011x}", hash & 0xfff_ffff_ffff),
        // Locally administered (bit 1), unicast (bit 0 clear).
        mac: [0x02, bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]],
        alias,
        namespace,
    }
}

/// FNV-1a, 64 bits: stable across Rust versions, unlike `DefaultHasher`, which names that must
/// survive upgrades need.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The kernel state `config` wants: for every admin-up IES/VPRN, its namespace (VPRN), a TAP
/// per admin-up interface whose SAP is admin up, their addresses, and the static routes whose
/// target is admin up and, for a next hop, on a subnet of such an interface.
pub fn desired(config: &ServiceConfig) -> KernelState {
    let mut state = KernelState::default();
    for (id, service) in config.routed_services() {
        if service.admin != AdminState::Up {
            continue;
        }
        let (routed, kind, namespace) = match &service.body {
            ServiceBody::Ies(routed) => (routed, "ies", None),
            ServiceBody::Vprn(routed) => {
                let name = vprn_namespace(id);
                state.namespaces.insert(name.clone());
                (routed, "vprn", Some(name))
            }
            _ => continue,
        };
        let mut connected = Vec::new();
        for (name, interface) in &routed.interfaces {
            let Some(sap_id) = &interface.sap else {
                continue;
            };
            let sap_up = config
                .sap(sap_id)
                .is_some_and(|sap| sap.admin == AdminState::Up);
            if interface.admin != AdminState::Up || !sap_up {
                continue;
            }
            let tap = tap(kind, id, name, namespace.clone());
            for net in interface.addresses() {
                state.addresses.insert(Address {
                    namespace: namespace.clone(),
                    link: tap.name.clone(),
                    addr: net,
                });
                connected.push(net);
            }
            state.taps.insert(tap.name.clone(), tap);
        }
        for (prefix, route) in &routed.static_routes {
            let via = match route.target {
                Some(_) if route.admin != AdminState::Up => continue,
                Some(RouteTarget::BlackHole) => RouteVia::Blackhole,
                Some(RouteTarget::NextHop(gateway))
                    if connected.iter().any(|net| net.contains(&gateway)) =>
                {
                    RouteVia::Gateway(gateway)
                }
                _ => continue,
            };
            state.routes.insert(Route {
                namespace: namespace.clone(),
                prefix: *prefix,
                via,
            });
        }
    }
    state
}

/// The TAP an interface of a routed service uses, when the interface is up in `state`.
pub fn interface_tap<'a>(
    state: &'a KernelState,
    kind: &str,
    service: ServiceId,
    interface: &str,
) -> Option<&'a Tap> {
    state.taps.get(&tap(kind, service, interface, None).name)
}

/// The steps that take the kernel from `old` to `new`.
pub fn plan(old: &KernelState, new: &KernelState) -> KernelPlan {
    let mut steps = Vec::new();
    for route in old.routes.difference(&new.routes) {
        steps.push(KernelStep::DelRoute(route.clone()));
    }
    // A TAP is kept when the same TAP (name, alias, MAC, namespace) is wanted.
    let kept = |tap: &Tap| new.taps.get(&tap.name) == Some(tap);
    for address in old.addresses.difference(&new.addresses) {
        // Addresses of a TAP that goes away go with it.
        if old.taps.get(&address.link).is_some_and(kept) {
            steps.push(KernelStep::DelAddress(address.clone()));
        }
    }
    for tap in old.taps.values().filter(|tap| !kept(tap)) {
        steps.push(KernelStep::SetUp {
            namespace: tap.namespace.clone(),
            link: tap.name.clone(),
            up: false,
        });
        // Deleting a TAP removes its addresses; say so in the plan, so that the inverse puts
        // them back.
        for address in old.addresses.iter().filter(|a| a.link == tap.name) {
            steps.push(KernelStep::DelAddress(address.clone()));
        }
        steps.push(KernelStep::DeleteTap(tap.clone()));
    }
    for name in old.namespaces.difference(&new.namespaces) {
        steps.push(KernelStep::DeleteNamespace { name: name.clone() });
    }
    for name in new.namespaces.difference(&old.namespaces) {
        steps.push(KernelStep::CreateNamespace { name: name.clone() });
    }
    let is_new = |tap: &Tap| old.taps.get(&tap.name) != Some(tap);
    for tap in new.taps.values().filter(|tap| is_new(tap)) {
        steps.push(KernelStep::CreateTap(tap.clone()));
    }
    let recreated = |address: &Address| new.taps.get(&address.link).is_some_and(is_new);
    for address in &new.addresses {
        if !old.addresses.contains(address) || recreated(address) {
            steps.push(KernelStep::AddAddress(address.clone()));
        }
    }
    for tap in new.taps.values().filter(|tap| is_new(tap)) {
        steps.push(KernelStep::SetUp {
            namespace: tap.namespace.clone(),
            link: tap.name.clone(),
            up: true,
        });
    }
    for route in new.routes.difference(&old.routes) {
        steps.push(KernelStep::AddRoute(route.clone()));
    }
    KernelPlan { steps }
}

/// The plan that brings the kernel from what an earlier brasa left (after a crash) to what
/// `config` wants. The earlier run's TAPs and VPRN namespaces vanished with it; what can remain
/// are routes of the daemon's own namespace that went through no TAP (blackholes): pass the
/// routes with [`ROUTE_PROTOCOL`] found there. They are removed, then the configuration's
/// state is built from scratch.
pub fn reconcile(routes: &[Route], config: &ServiceConfig) -> KernelPlan {
    let mut steps: Vec<KernelStep> = routes
        .iter()
        .filter(|route| route.namespace.is_none())
        .cloned()
        .map(KernelStep::DelRoute)
        .collect();
    steps.extend(plan(&KernelState::default(), &desired(config)).steps);
    KernelPlan { steps }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_fit_ifnamsiz_and_are_stable() {
        let tap = tap("vprn", 2_147_483_647, "a very long interface name", None);
        assert_eq!(tap.name.len(), 15);
        assert!(tap.name.starts_with("brst"));
        assert_eq!(
            tap.alias,
            "brasa vprn 2147483647 interface \"a very long interface name\""
        );
        let again = super::tap("vprn", 2_147_483_647, "a very long interface name", None);
        assert_eq!(again, tap);
        assert_ne!(
            super::tap("vprn", 2_147_483_646, "a very long interface name", None).name,
            tap.name
        );
        assert_eq!(tap.mac[0] & 0x03, 0x02, "locally administered unicast");
    }
}
