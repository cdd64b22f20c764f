//! The L3 kernel plan: the Linux kernel is the L3 engine of IES and VPRN services.
//!
//! From a configuration, [`desired`] derives the kernel objects brasa wants: a VRF device per
//! VPRN (table `vrf_table_base + id`), VLAN sub-interfaces for tagged SAPs (802.1Q, or for QinQ an
//! 802.1ad outer link with an 802.1Q link on it), interface addresses and static routes. [`plan`]
//! turns two such states into ordered [`KernelStep`]s, each with its [`inverse`](KernelStep::inverse),
//! so an executor that fails at step N undoes steps N−1..0 with [`KernelPlan::rollback`] and
//! leaves the kernel as it was.
//!
//! Every link brasa creates has a deterministic name of at most 15 bytes starting with
//! [`NAME_PREFIX`], and an alias (IFLA_IFALIAS) that says what it is; static routes carry
//! [`ROUTE_PROTOCOL`]. After a crash, [`reconcile`] turns what the kernel holds into a plan that
//! removes it all and builds the configuration's state afresh.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{Environment, ServiceConfig};
use crate::id::{PortName, SapId, SapTags, Tag};
use crate::model::{AdminState, RouteTarget, ServiceBody, ServiceId};

/// The first bytes of every link name brasa creates ("brasa services").
pub const NAME_PREFIX: &str = "brs";
/// The first word of every alias brasa gives a link it creates.
pub const ALIAS_PREFIX: &str = "brasa";
/// The route protocol (`rtm_protocol`) of the routes brasa installs, so that they can be found
/// after a crash. Unassigned in iproute2's `rt_protos`.
pub const ROUTE_PROTOCOL: u8 = 196;
/// The kernel's main routing table, where IES static routes go.
pub const MAIN_TABLE: u32 = 254;

/// The VLAN protocol of a VLAN link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VlanProtocol {
    /// 802.1Q (TPID 0x8100): dot1q SAPs and the inner tag of QinQ SAPs.
    Dot1q,
    /// 802.1ad (TPID 0x88a8): the outer tag of QinQ SAPs.
    Dot1ad,
}

/// What a link is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkKind {
    /// A data-plane port brasa uses as it is (null or untagged SAP): never created or deleted.
    Port,
    /// A VRF device with its routing table.
    Vrf {
        /// The table.
        table: u32,
    },
    /// A VLAN link on `parent`.
    Vlan {
        /// The parent link.
        parent: String,
        /// The tag protocol.
        protocol: VlanProtocol,
        /// The VLAN id.
        id: u16,
    },
}

/// A link brasa wants, with the attributes it manages.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Link {
    /// The interface name.
    pub name: String,
    /// The IFLA_IFALIAS brasa sets (`None` for ports, which brasa does not create).
    pub alias: Option<String>,
    /// What it is.
    pub kind: LinkKind,
    /// The VRF it is enslaved to.
    pub master: Option<String>,
}

impl Link {
    fn created(&self) -> bool {
        self.kind != LinkKind::Port
    }

    /// Parents before children: VRFs, then links on ports (and ports), then links on links.
    fn rank(&self) -> u8 {
        match &self.kind {
            LinkKind::Vrf { .. } => 0,
            LinkKind::Port => 1,
            LinkKind::Vlan { parent, .. } if parent.starts_with(NAME_PREFIX) => 2,
            LinkKind::Vlan { .. } => 1,
        }
    }
}

/// Where a route goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteVia {
    /// Through a gateway.
    Gateway(IpAddr),
    /// Discarded.
    Blackhole,
}

/// A route brasa installs (with protocol [`ROUTE_PROTOCOL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    /// The routing table.
    pub table: u32,
    /// The destination.
    pub prefix: IpNet,
    /// The target.
    pub via: RouteVia,
}

/// The kernel objects a configuration wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelState {
    /// Links by name (created ones are up; ports' up state is not brasa's).
    pub links: BTreeMap<String, Link>,
    /// Addresses: (link name, address with prefix length).
    pub addresses: BTreeSet<(String, IpNet)>,
    /// Routes.
    pub routes: BTreeSet<Route>,
}

/// One kernel operation. The executor performs it over rtnetlink.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KernelStep {
    /// Create a VRF or VLAN link (down, without master), with its alias.
    CreateLink {
        /// Name.
        name: String,
        /// IFLA_IFALIAS.
        alias: String,
        /// What to create.
        kind: LinkKind,
    },
    /// Delete a link brasa created (it is down and has no master by then).
    DeleteLink {
        /// Name.
        name: String,
        /// Its alias (for the inverse).
        alias: String,
        /// What it is (for the inverse).
        kind: LinkKind,
    },
    /// Set or clear the link's master VRF.
    SetMaster {
        /// The link.
        link: String,
        /// The new master.
        master: Option<String>,
        /// The master before (for the inverse).
        previous: Option<String>,
    },
    /// Set the link up or down.
    SetUp {
        /// The link.
        link: String,
        /// Up (true) or down.
        up: bool,
    },
    /// Add an address.
    AddAddress {
        /// The link.
        link: String,
        /// Address and prefix length.
        addr: IpNet,
    },
    /// Remove an address.
    DelAddress {
        /// The link.
        link: String,
        /// Address and prefix length.
        addr: IpNet,
    },
    /// Add a route.
    AddRoute(Route),
    /// Remove a route.
    DelRoute(Route),
}

impl KernelStep {
    /// The step that undoes this one.
    pub fn inverse(&self) -> KernelStep {
        match self.clone() {
            KernelStep::CreateLink { name, alias, kind } => {
                KernelStep::DeleteLink { name, alias, kind }
            }
            KernelStep::DeleteLink { name, alias, kind } => {
                KernelStep::CreateLink { name, alias, kind }
            }
            KernelStep::SetMaster {
                link,
                master,
                previous,
            } => KernelStep::SetMaster {
                link,
                master: previous,
                previous: master,
            },
            KernelStep::SetUp { link, up } => KernelStep::SetUp { link, up: !up },
            KernelStep::AddAddress { link, addr } => KernelStep::DelAddress { link, addr },
            KernelStep::DelAddress { link, addr } => KernelStep::AddAddress { link, addr },
            KernelStep::AddRoute(route) => KernelStep::DelRoute(route),
            KernelStep::DelRoute(route) => KernelStep::AddRoute(route),
        }
    }
}

impl fmt::Display for KernelStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelStep::CreateLink { name, alias, .. } => write!(f, "create {name} ({alias})"),
            KernelStep::DeleteLink { name, alias, .. } => write!(f, "delete {name} ({alias})"),
            KernelStep::SetMaster { link, master, .. } => match master {
                Some(master) => write!(f, "set {link} master {master}"),
                None => write!(f, "set {link} nomaster"),
            },
            KernelStep::SetUp { link, up } => {
                write!(f, "set {link} {}", if *up { "up" } else { "down" })
            }
            KernelStep::AddAddress { link, addr } => write!(f, "add address {addr} to {link}"),
            KernelStep::DelAddress { link, addr } => {
                write!(f, "remove address {addr} from {link}")
            }
            KernelStep::AddRoute(route) => write!(f, "add route {route:?}"),
            KernelStep::DelRoute(route) => write!(f, "remove route {route:?}"),
        }
    }
}

/// Ordered kernel steps: removals first (routes, addresses, links children-first), then
/// creations (links parents-first, masters, addresses, link up, routes).
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

/// The name of the VRF device of VPRN `id` (at most 14 bytes).
pub fn vrf_name(id: ServiceId) -> String {
    format!("{NAME_PREFIX}v{id}")
}

/// The alias of the VRF device of VPRN `id`.
pub fn vrf_alias(id: ServiceId, table: u32) -> String {
    format!("{ALIAS_PREFIX} vprn {id} table {table}")
}

/// The name and alias of the VLAN link for `tags` on `port`: the name is [`NAME_PREFIX`], a
/// letter for the role (`q` 802.1Q on a port, `o` a QinQ outer link, `i` a QinQ inner link) and
/// 11 hex digits of a hash of the alias, so it is the same after every restart.
pub fn vlan_link(port: &PortName, role: VlanRole) -> (String, String) {
    let (letter, alias) = match role {
        VlanRole::Dot1q(tag) => ('q', format!("{ALIAS_PREFIX} vlan {port}:{tag}")),
        VlanRole::Outer(outer) => ('o', format!("{ALIAS_PREFIX} qinq-outer {port}:{outer}")),
        VlanRole::Inner(outer, inner) => {
            ('i', format!("{ALIAS_PREFIX} vlan {port}:{outer}.{inner}"))
        }
    };
    let hash = fnv1a(alias.as_bytes()) & 0xfff_ffff_ffff;
    (format!("{NAME_PREFIX}{letter}{hash:011x}"), alias)
}

/// The role of a VLAN link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VlanRole {
    /// 802.1Q `tag` on the port.
    Dot1q(u16),
    /// 802.1ad `outer` on the port.
    Outer(u16),
    /// 802.1Q `inner` on the 802.1ad `outer` link.
    Inner(u16, u16),
}

/// FNV-1a, 64 bits: stable across Rust versions, unlike `DefaultHasher`, which names that must
/// survive upgrades need.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// True when a link with this name and alias was created by brasa.
pub fn is_brasa_link(name: &str, alias: Option<&str>) -> bool {
    alias.is_some_and(|a| a.starts_with(ALIAS_PREFIX) && a[ALIAS_PREFIX.len()..].starts_with(' '))
        || (name.starts_with(NAME_PREFIX) && name.len() == crate::id::MAX_IFNAME_LEN)
        || name
            .strip_prefix(NAME_PREFIX)
            .and_then(|rest| rest.strip_prefix('v'))
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// The link an L3 SAP's addresses go on, adding it (and a QinQ outer link) to `links`.
fn sap_link(sap: &SapId, master: Option<&str>, links: &mut BTreeMap<String, Link>) -> String {
    let port = sap.port();
    let mut vlan = |parent: String, role: VlanRole, protocol, id, master: Option<&str>| {
        let (name, alias) = vlan_link(port, role);
        links.insert(
            name.clone(),
            Link {
                name: name.clone(),
                alias: Some(alias),
                kind: LinkKind::Vlan {
                    parent,
                    protocol,
                    id,
                },
                master: master.map(str::to_owned),
            },
        );
        name
    };
    let on_port = match sap.tags() {
        SapTags::Null | SapTags::Dot1q(Tag::Id(0)) | SapTags::Qinq(Tag::Id(0), Tag::Id(0)) => None,
        SapTags::Dot1q(Tag::Id(tag)) | SapTags::Qinq(Tag::Id(0), Tag::Id(tag)) => Some(vlan(
            port.to_string(),
            VlanRole::Dot1q(tag),
            VlanProtocol::Dot1q,
            tag,
            master,
        )),
        SapTags::Qinq(Tag::Id(outer), Tag::Id(0)) => Some(vlan(
            port.to_string(),
            VlanRole::Outer(outer),
            VlanProtocol::Dot1ad,
            outer,
            master,
        )),
        SapTags::Qinq(Tag::Id(outer), Tag::Id(inner)) => {
            // The outer link carries no addresses and stays out of any VRF: several SAPs (of
            // several services) may share it.
            let parent = vlan(
                port.to_string(),
                VlanRole::Outer(outer),
                VlanProtocol::Dot1ad,
                outer,
                None,
            );
            Some(vlan(
                parent,
                VlanRole::Inner(outer, inner),
                VlanProtocol::Dot1q,
                inner,
                master,
            ))
        }
        // Validation keeps wildcard SAPs off IP interfaces.
        SapTags::Dot1q(Tag::Any) | SapTags::Qinq(..) => return port.to_string(),
    };
    match on_port {
        Some(name) => name,
        None => {
            links.insert(
                port.to_string(),
                Link {
                    name: port.to_string(),
                    alias: None,
                    kind: LinkKind::Port,
                    master: master.map(str::to_owned),
                },
            );
            port.to_string()
        }
    }
}

/// The kernel state `config` wants: for every admin-up IES/VPRN, its VRF (VPRN), the links of its
/// admin-up interfaces whose SAP is admin up, their addresses, and the static routes whose
/// target is admin up and, for a next hop, on a subnet of such an interface.
pub fn desired(config: &ServiceConfig, env: &Environment) -> KernelState {
    let mut state = KernelState::default();
    for (id, service) in config.routed_services() {
        if service.admin != AdminState::Up {
            continue;
        }
        let (routed, vrf) = match &service.body {
            ServiceBody::Ies(routed) => (routed, None),
            ServiceBody::Vprn(routed) => {
                let table = env.vrf_table_base.saturating_add(id);
                let name = vrf_name(id);
                state.links.insert(
                    name.clone(),
                    Link {
                        name: name.clone(),
                        alias: Some(vrf_alias(id, table)),
                        kind: LinkKind::Vrf { table },
                        master: None,
                    },
                );
                (routed, Some((name, table)))
            }
            _ => continue,
        };
        let mut connected = Vec::new();
        for interface in routed.interfaces.values() {
            let Some(sap_id) = &interface.sap else {
                continue;
            };
            let sap_up = config
                .sap(sap_id)
                .is_some_and(|sap| sap.admin == AdminState::Up);
            if interface.admin != AdminState::Up || !sap_up {
                continue;
            }
            let link = sap_link(
                sap_id,
                vrf.as_ref().map(|(name, _)| name.as_str()),
                &mut state.links,
            );
            for net in interface.addresses() {
                state.addresses.insert((link.clone(), net));
                connected.push(net);
            }
        }
        let table = vrf.as_ref().map_or(MAIN_TABLE, |(_, table)| *table);
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
                table,
                prefix: *prefix,
                via,
            });
        }
    }
    state
}

/// The steps that take the kernel from `old` to `new`.
pub fn plan(old: &KernelState, new: &KernelState) -> KernelPlan {
    let mut steps = Vec::new();
    for route in old.routes.difference(&new.routes) {
        steps.push(KernelStep::DelRoute(*route));
    }
    for (link, addr) in old.addresses.difference(&new.addresses) {
        steps.push(KernelStep::DelAddress {
            link: link.clone(),
            addr: *addr,
        });
    }
    // A link is kept when the same link (name, alias and kind) is wanted; its master may change.
    let kept = |link: &Link| {
        new.links
            .get(&link.name)
            .is_some_and(|n| n.alias == link.alias && n.kind == link.kind)
    };
    let mut removed: Vec<&Link> = old.links.values().collect();
    removed.sort_by_key(|link| std::cmp::Reverse(link.rank()));
    for link in removed {
        let stays = kept(link);
        let master_changes = new.links.get(&link.name).map(|n| &n.master) != Some(&link.master);
        if link.created() && !stays {
            steps.push(KernelStep::SetUp {
                link: link.name.clone(),
                up: false,
            });
        }
        if link.master.is_some() && (!stays || master_changes) {
            steps.push(KernelStep::SetMaster {
                link: link.name.clone(),
                master: None,
                previous: link.master.clone(),
            });
        }
        if link.created() && !stays {
            steps.push(KernelStep::DeleteLink {
                name: link.name.clone(),
                alias: link.alias.clone().unwrap_or_default(),
                kind: link.kind.clone(),
            });
        }
    }
    let mut added: Vec<&Link> = new.links.values().collect();
    added.sort_by_key(|link| link.rank());
    let is_new = |link: &Link| {
        old.links
            .get(&link.name)
            .is_none_or(|o| o.alias != link.alias || o.kind != link.kind)
    };
    for link in &added {
        if link.created() && is_new(link) {
            steps.push(KernelStep::CreateLink {
                name: link.name.clone(),
                alias: link.alias.clone().unwrap_or_default(),
                kind: link.kind.clone(),
            });
        }
    }
    for link in &added {
        let before = old
            .links
            .get(&link.name)
            .filter(|_| !is_new(link))
            .and_then(|o| o.master.clone());
        if link.master.is_some() && link.master != before {
            steps.push(KernelStep::SetMaster {
                link: link.name.clone(),
                master: link.master.clone(),
                previous: None,
            });
        }
    }
    for (link, addr) in new.addresses.difference(&old.addresses) {
        steps.push(KernelStep::AddAddress {
            link: link.clone(),
            addr: *addr,
        });
    }
    for link in &added {
        if link.created() && is_new(link) {
            steps.push(KernelStep::SetUp {
                link: link.name.clone(),
                up: true,
            });
        }
    }
    for route in new.routes.difference(&old.routes) {
        steps.push(KernelStep::AddRoute(*route));
    }
    KernelPlan { steps }
}

/// A link the executor found in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingLink {
    /// Its name.
    pub name: String,
    /// Its IFLA_IFALIAS, if any.
    pub alias: Option<String>,
    /// Its master, if any.
    pub master: Option<String>,
    /// Whether it is up.
    pub up: bool,
    /// Its addresses (only those of ports matter: see [`reconcile`]).
    pub addresses: Vec<IpNet>,
}

/// The plan that brings the kernel from what an earlier brasa left (after a crash) to what
/// `config` wants: every brasa link in `links` (recognised by [`is_brasa_link`]) and every route
/// in `routes` (the executor lists those with [`ROUTE_PROTOCOL`]) is removed, then the
/// configuration's state is built from scratch. Links that are not brasa's are left alone,
/// except that they are released from a brasa VRF they are enslaved to; pass every link.
///
/// A port that the configuration uses whole (a null or `:0` SAP on an IP interface) is brasa's
/// for L3: its addresses are removed (IPv6 link-local ones, which the kernel manages, excepted)
/// before the configuration's are added. Addresses an earlier run put on a port the
/// configuration no longer uses are not recognisable and stay.
pub fn reconcile(
    links: &[ExistingLink],
    routes: &[Route],
    config: &ServiceConfig,
    env: &Environment,
) -> KernelPlan {
    let want = desired(config, env);
    let mut steps: Vec<KernelStep> = routes.iter().copied().map(KernelStep::DelRoute).collect();
    for link in links {
        let used_whole = want
            .links
            .get(&link.name)
            .is_some_and(|l| l.kind == LinkKind::Port);
        if used_whole {
            let link_local = |net: &IpNet| match net {
                IpNet::V6(v6) => v6.addr().segments()[0] & 0xffc0 == 0xfe80,
                IpNet::V4(_) => false,
            };
            for addr in link.addresses.iter().filter(|net| !link_local(net)) {
                steps.push(KernelStep::DelAddress {
                    link: link.name.clone(),
                    addr: *addr,
                });
            }
        }
    }
    let brasa = |link: &ExistingLink| is_brasa_link(&link.name, link.alias.as_deref());
    let mut stale: Vec<&ExistingLink> = links.iter().filter(|link| brasa(link)).collect();
    // Ports brasa enslaved to one of its VRFs are released first.
    for port in links.iter().filter(|link| !brasa(link)) {
        if let Some(master) = &port.master {
            if stale.iter().any(|link| link.name == *master) {
                steps.push(KernelStep::SetMaster {
                    link: port.name.clone(),
                    master: None,
                    previous: Some(master.clone()),
                });
            }
        }
    }
    // Children first: inner QinQ links, then links on ports, then VRFs.
    let rank = |link: &ExistingLink| match link.name.as_bytes().get(NAME_PREFIX.len()) {
        Some(b'i') => 0,
        Some(b'v') => 2,
        _ => 1,
    };
    stale.sort_by_key(|link| rank(link));
    for link in stale {
        if link.up {
            steps.push(KernelStep::SetUp {
                link: link.name.clone(),
                up: false,
            });
        }
        if link.master.is_some() {
            steps.push(KernelStep::SetMaster {
                link: link.name.clone(),
                master: None,
                previous: link.master.clone(),
            });
        }
        steps.push(KernelStep::DeleteLink {
            name: link.name.clone(),
            alias: link.alias.clone().unwrap_or_default(),
            kind: stale_kind(link),
        });
    }
    steps.extend(plan(&KernelState::default(), &want).steps);
    KernelPlan { steps }
}

/// What a stale link was, as far as its name tells (only its inverse needs it).
fn stale_kind(link: &ExistingLink) -> LinkKind {
    match link.name.as_bytes().get(NAME_PREFIX.len()) {
        Some(b'v') => LinkKind::Vrf { table: 0 },
        _ => LinkKind::Vlan {
            parent: String::new(),
            protocol: VlanProtocol::Dot1q,
            id: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_ifnamsiz_and_are_stable() {
        let port = PortName::new("enp0s31f6long").unwrap();
        let (name, alias) = vlan_link(&port, VlanRole::Inner(4094, 4094));
        assert_eq!(name.len(), 15);
        assert!(name.starts_with("brsi"));
        assert_eq!(alias, "brasa vlan enp0s31f6long:4094.4094");
        assert_eq!(vlan_link(&port, VlanRole::Inner(4094, 4094)).0, name);
        assert_ne!(vlan_link(&port, VlanRole::Inner(4094, 4093)).0, name);
        assert!(vrf_name(2_147_483_647).len() <= 15);
        assert!(is_brasa_link(&name, None));
        assert!(is_brasa_link("brsv12", None));
        assert!(is_brasa_link("anything", Some("brasa vprn 1 table 10001")));
        assert!(!is_brasa_link("br0", None));
        assert!(!is_brasa_link("brsvx", Some("docker")));
    }
}
