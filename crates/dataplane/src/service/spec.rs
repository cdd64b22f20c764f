//! The plain configuration types the control side compiles its service model into. They are
//! deliberately close to SR OS: a port has an encapsulation, a SAP is a port and tags bound to
//! a service, services are Epipe, VPLS, IES and VPRN, filters are ordered entries with a
//! default action, policers are named by id. [`super::ServiceTablesBuilder`] validates them.

use crate::acl::{Disposition, Match};
use crate::pipeline::PortId;
use crate::policer::{PolicerConfig, RateLimit};
use crate::sap::{PortEncap, SapId};
use crate::wire::MacAddr;
use serde::Serialize;
use std::net::IpAddr;

/// A service id (SR OS `service-id`).
pub type ServiceId = u32;

/// A policer id. One id is one policer *instance* (one set of buckets): SAPs and filter
/// entries that name the same id share it (an aggregate policer); a per-SAP policer is a
/// policer id per SAP.
pub type PolicerId = u32;

/// Default service MTU (SR OS): the largest frame a service carries, without the SAP's
/// delimiting tags and without FCS.
pub const DEFAULT_SERVICE_MTU: u16 = 1514;

/// Default MAC ageing time of a VPLS, seconds (SR OS `local-age`).
pub const DEFAULT_AGE_SECS: u32 = 300;

/// A port with SAPs (an access port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortSpec {
    /// The pipeline port.
    pub port: PortId,
    /// Encapsulation.
    pub encap: PortEncap,
    /// TPID of the outer tag (dot1q: the only tag): 0x8100 (SR OS default) or 0x88a8.
    pub outer_tpid: u16,
    /// Largest frame sent or received on the port, without FCS; `None` = the SR OS default
    /// for the encapsulation (null 1514, dot1q 1518, QinQ 1522).
    pub mtu: Option<u16>,
}

impl PortSpec {
    /// A port with the default TPID and MTU.
    pub fn new(port: PortId, encap: PortEncap) -> Self {
        Self {
            port,
            encap,
            outer_tpid: crate::wire::EtherType::VLAN,
            mtu: None,
        }
    }

    /// The MTU in force.
    pub fn effective_mtu(&self) -> u16 {
        self.mtu.unwrap_or(match self.encap {
            PortEncap::Null => 1514,
            PortEncap::Dot1q => 1518,
            PortEncap::Qinq => 1522,
        })
    }
}

/// The filters and policer of one direction of a SAP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SapDirection {
    /// MAC filter id (evaluated first).
    pub mac_filter: Option<u32>,
    /// IPv4 filter id (IPv4 packets).
    pub ip_filter: Option<u32>,
    /// IPv6 filter id (IPv6 packets).
    pub ipv6_filter: Option<u32>,
    /// Policer applied after the filters.
    pub policer: Option<PolicerId>,
}

/// A SAP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SapSpec {
    /// Port and tags.
    pub id: SapId,
    /// The service it belongs to.
    pub service: ServiceId,
    /// Administratively down: its frames are dropped (`service_down`), and frames for it are
    /// not sent. The SAP still claims its tags (SR OS: a SAP that is down does not pass its
    /// frames to a less specific SAP).
    pub shutdown: bool,
    /// A capture SAP (VPLS only): its frames go to the control plane (`Verdict::Punt`) after
    /// the ingress MAC filter; it never forwards and never learns.
    pub capture: bool,
    /// Ingress filters and policer.
    pub ingress: SapDirection,
    /// Egress filters and policer.
    pub egress: SapDirection,
    /// Split-horizon group (VPLS; declared in the VPLS): frames are never forwarded between
    /// SAPs of one group.
    pub split_horizon_group: Option<String>,
    /// Most MAC addresses (learned and static) on this SAP (VPLS, SR OS `max-nbr-mac-addr`).
    pub max_mac: Option<u32>,
    /// With `max_mac` reached, drop frames with an unknown source instead of forwarding them
    /// unlearned (SR OS `discard-unknown-source`).
    pub discard_unknown_source: bool,
    /// Static MACs on this SAP (VPLS): never aged, never moved.
    pub static_macs: Vec<MacAddr>,
    /// Learn the source MACs of this SAP's frames (SR OS `disable-learning` is `false`; the
    /// VPLS's own setting must allow learning too).
    pub learning: bool,
    /// Age the MACs learned on this SAP (SR OS `disable-aging` is `false`; the VPLS's own
    /// setting must allow ageing too).
    pub ageing: bool,
    /// Limit on broadcast, unknown-unicast and multicast frames entering the VPLS from this
    /// SAP; `None` = no limit. This is what keeps a broadcast storm on one SAP from taking
    /// the worker from the others: above it, frames are dropped before they are replicated.
    pub bum_limit: Option<RateLimit>,
}

impl SapSpec {
    /// A SAP with no filters, policers or limits.
    pub fn new(id: SapId, service: ServiceId) -> Self {
        Self {
            id,
            service,
            shutdown: false,
            capture: false,
            ingress: SapDirection::default(),
            egress: SapDirection::default(),
            split_horizon_group: None,
            max_mac: None,
            discard_unknown_source: false,
            static_macs: Vec::new(),
            learning: true,
            ageing: true,
            bum_limit: None,
        }
    }
}

/// The far end of an Epipe that leaves the box: Ethernet over GRE (transparent Ethernet
/// bridging, protocol 0x6558) to `remote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GreSpec {
    /// Port the encapsulated packets leave by.
    pub port: PortId,
    /// 802.1Q tag on that port (`None` = untagged).
    pub vlan: Option<u16>,
    /// Local tunnel address (source of encapsulated packets; what return packets are sent to).
    pub local: IpAddr,
    /// Remote tunnel address.
    pub remote: IpAddr,
    /// MAC address of the next hop towards `remote` (resolved by the control side).
    pub next_hop: MacAddr,
    /// GRE key (RFC 2890), sent and required on receipt.
    pub key: Option<u32>,
    /// TTL / hop limit of the outer header.
    pub ttl: u8,
    /// Largest outer IP packet; larger ones are dropped (`mtu`), never fragmented.
    pub mtu: u16,
}

impl GreSpec {
    /// What tells this tunnel apart from another at the far end, and so what a received GRE
    /// packet is demultiplexed by: the local and remote addresses and the key. Two Epipes
    /// cannot share it.
    pub fn identity(&self) -> (IpAddr, IpAddr, Option<u32>) {
        (self.local, self.remote, self.key)
    }
}

/// An Epipe (VLL): two endpoints cross-connected — two SAPs, or one SAP and a GRE tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EpipeSpec {
    /// Service id.
    pub id: ServiceId,
    /// Administratively down.
    pub shutdown: bool,
    /// Service MTU.
    pub mtu: u16,
    /// The GRE endpoint, when the second endpoint is a tunnel.
    pub gre: Option<GreSpec>,
}

/// A VPLS: a bridge of SAPs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VplsSpec {
    /// Service id.
    pub id: ServiceId,
    /// Administratively down.
    pub shutdown: bool,
    /// Service MTU.
    pub mtu: u16,
    /// Most MACs in this VPLS (SR OS `fdb-table-size`); `None` = as many as the table holds.
    pub fdb_size: Option<u32>,
    /// Ageing time of learned MACs, seconds.
    pub age_secs: u32,
    /// Learn source MACs (SR OS `disable-learning` is `false` here).
    pub learning: bool,
    /// Age learned MACs (SR OS `disable-aging` is `false` here).
    pub ageing: bool,
    /// Split-horizon groups SAPs may name.
    pub split_horizon_groups: Vec<String>,
}

impl VplsSpec {
    /// A VPLS with the SR OS defaults.
    pub fn new(id: ServiceId) -> Self {
        Self {
            id,
            shutdown: false,
            mtu: DEFAULT_SERVICE_MTU,
            fdb_size: None,
            age_secs: DEFAULT_AGE_SECS,
            learning: true,
            ageing: true,
            split_horizon_groups: Vec::new(),
        }
    }
}

impl EpipeSpec {
    /// An Epipe with the defaults and no tunnel.
    pub fn new(id: ServiceId) -> Self {
        Self {
            id,
            shutdown: false,
            mtu: DEFAULT_SERVICE_MTU,
            gre: None,
        }
    }
}

/// An IES or VPRN: IP interfaces on SAPs, routed by the kernel. Each interface's SAP is
/// cross-connected with a TAP port the kernel holds the interface's addresses on (the SAP's
/// tags popped towards the TAP, pushed back towards the SAP); the SAP's filters and policers
/// apply as on any SAP. A SAP of the service that is in no interface pair is left to the
/// kernel's own copy of its frames (`Verdict::Ignore`), as on a port the kernel also receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct L3Spec {
    /// Service id.
    pub id: ServiceId,
    /// A VPRN (a routing instance of its own) rather than an IES.
    pub vprn: bool,
    /// The IP interfaces: each pairs a SAP with the TAP's SAP (a null SAP on the TAP port).
    pub interfaces: Vec<L3Interface>,
}

impl L3Spec {
    /// The routing instance of the service's IP interfaces: its own for a VPRN, the base
    /// instance for an IES.
    pub fn routing_instance(&self) -> crate::pcc::RoutingInstance {
        if self.vprn {
            crate::pcc::RoutingInstance::Vprn(self.id)
        } else {
            crate::pcc::RoutingInstance::Base
        }
    }
}

/// One IP interface of an IES or VPRN: its SAP and the TAP the kernel holds it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct L3Interface {
    /// The interface's SAP.
    pub sap: SapId,
    /// The null SAP on the interface's TAP port.
    pub tap: SapId,
}

impl L3Spec {
    /// The SAP cross-connected with `sap`, if `sap` is one end of an interface.
    pub fn peer_of(&self, sap: &SapId) -> Option<SapId> {
        self.interfaces.iter().find_map(|pair| {
            if pair.sap == *sap {
                Some(pair.tap)
            } else if pair.tap == *sap {
                Some(pair.sap)
            } else {
                None
            }
        })
    }
}

/// A service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServiceSpec {
    /// Epipe.
    Epipe(EpipeSpec),
    /// VPLS.
    Vpls(VplsSpec),
    /// IES or VPRN.
    L3(L3Spec),
}

impl ServiceSpec {
    /// Its id.
    pub fn id(&self) -> ServiceId {
        match self {
            ServiceSpec::Epipe(s) => s.id,
            ServiceSpec::Vpls(s) => s.id,
            ServiceSpec::L3(s) => s.id,
        }
    }
}

/// Which header a filter matches (SR OS `ip-filter`, `ipv6-filter`, `mac-filter`; each has
/// its own id space).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FilterKind {
    /// IPv4 fields.
    Ip,
    /// IPv6 fields.
    Ipv6,
    /// Ethernet fields (normal and `type vid`).
    Mac,
}

/// What a filter entry does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum FilterAction {
    /// Forward.
    Forward,
    /// Drop.
    Drop,
    /// Forward through a policer (SR OS `rate-limit`).
    RateLimit {
        /// The policer.
        policer: PolicerId,
    },
}

/// One filter entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FilterEntrySpec {
    /// Entry id: entries are evaluated in ascending id order.
    pub id: u32,
    /// Match criteria: `Match::Ip` for IP and IPv6 filters, `Match::Mac` for MAC filters.
    pub matcher: Match,
    /// Action.
    pub action: FilterAction,
}

/// A filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilterSpec {
    /// Filter id (in the kind's id space).
    pub id: u32,
    /// Kind.
    pub kind: FilterKind,
    /// What happens to packets no entry matches.
    pub default_action: Disposition,
    /// Entries.
    pub entries: Vec<FilterEntrySpec>,
}

/// A policer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PolicerSpec {
    /// Id.
    pub id: PolicerId,
    /// Parameters.
    pub config: PolicerConfig,
}
