//! The service model: services and their SAPs, filters and QoS policies, as the running
//! configuration holds them. Every field is what the operator configured; `None` means the
//! default (SR OS prints nothing for it), and the `effective_*` helpers resolve defaults.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use imbl::OrdMap;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::id::{MacAddr, SapId};

/// Service ids, `1..=2147483647`.
pub type ServiceId = u32;
/// Customer ids, `1..=2147483647`.
pub type CustomerId = u32;
/// Filter ids, `1..=65535` per filter kind.
pub type FilterId = u32;
/// Filter entry ids, `1..=2097151`.
pub type EntryId = u32;
/// sap-ingress / sap-egress policy ids, `1..=65535`.
pub type PolicyId = u32;
/// Policer ids within a policy, `1..=63`.
pub type PolicerId = u32;

/// `shutdown` (down) or `no shutdown` (up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminState {
    /// `no shutdown`.
    Up,
    /// `shutdown`.
    Down,
}

/// The four service kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceKind {
    /// Point-to-point Ethernet (VLL): two endpoints, SAP↔SAP or SAP↔GRE tunnel.
    Epipe,
    /// Multipoint Ethernet bridge with MAC learning.
    Vpls,
    /// IP interfaces in the base routing instance (the kernel's main table).
    Ies,
    /// IP interfaces in a VRF of their own.
    Vprn,
}

impl ServiceKind {
    /// The SR OS keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            ServiceKind::Epipe => "epipe",
            ServiceKind::Vpls => "vpls",
            ServiceKind::Ies => "ies",
            ServiceKind::Vprn => "vprn",
        }
    }

    /// True for IES and VPRN, whose SAPs sit under IP interfaces.
    pub fn is_routed(self) -> bool {
        matches!(self, ServiceKind::Ies | ServiceKind::Vprn)
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// A service: what every kind has, and its kind's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The customer it belongs to.
    pub customer: CustomerId,
    /// `description`.
    pub description: Option<String>,
    /// Services are created `shutdown`, as in SR OS.
    pub admin: AdminState,
    /// The kind's settings.
    pub body: ServiceBody,
}

/// The kind-specific part of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceBody {
    /// Epipe settings.
    Epipe(Epipe),
    /// VPLS settings.
    Vpls(Vpls),
    /// IES settings.
    Ies(Routed),
    /// VPRN settings.
    Vprn(Routed),
}

impl ServiceBody {
    /// The empty body of a new service of `kind`.
    pub fn new(kind: ServiceKind) -> Self {
        match kind {
            ServiceKind::Epipe => ServiceBody::Epipe(Epipe::default()),
            ServiceKind::Vpls => ServiceBody::Vpls(Vpls::default()),
            ServiceKind::Ies => ServiceBody::Ies(Routed::default()),
            ServiceKind::Vprn => ServiceBody::Vprn(Routed::default()),
        }
    }

    /// The service kind.
    pub fn kind(&self) -> ServiceKind {
        match self {
            ServiceBody::Epipe(_) => ServiceKind::Epipe,
            ServiceBody::Vpls(_) => ServiceKind::Vpls,
            ServiceBody::Ies(_) => ServiceKind::Ies,
            ServiceBody::Vprn(_) => ServiceKind::Vprn,
        }
    }

    /// The routed part of an IES or VPRN.
    pub fn routed(&self) -> Option<&Routed> {
        match self {
            ServiceBody::Ies(routed) | ServiceBody::Vprn(routed) => Some(routed),
            _ => None,
        }
    }
}

impl Service {
    /// The service kind.
    pub fn kind(&self) -> ServiceKind {
        self.body.kind()
    }
}

/// Epipe settings besides its SAPs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Epipe {
    /// The GRE tunnel endpoint, when the service leaves the box (brasa's stand-in for a spoke-SDP
    /// over a GRE SDP).
    pub gre_tunnel: Option<GreTunnel>,
}

/// A GRE tunnel endpoint of an Epipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GreTunnel {
    /// Our address.
    pub local: IpAddr,
    /// The far end.
    pub remote: IpAddr,
    /// The GRE key, when the far end uses one.
    pub key: Option<u32>,
}

impl fmt::Display for GreTunnel {
    /// The CLI's words: `local A remote B[ key K]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "local {} remote {}", self.local, self.remote)?;
        match self.key {
            Some(key) => write!(f, " key {key}"),
            None => Ok(()),
        }
    }
}

/// VPLS settings besides its SAPs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vpls {
    /// `fdb-table-size`: the most MACs the service learns (default: the data plane's).
    pub fdb_table_size: Option<u32>,
    /// `local-age`: seconds before a learned MAC ages out (default 300).
    pub local_age: Option<u32>,
    /// Split-horizon groups by name: SAPs of one group never forward to each other.
    pub split_horizon_groups: BTreeMap<String, SplitHorizonGroup>,
}

/// The default `local-age`, seconds.
pub const DEFAULT_LOCAL_AGE: u32 = 300;

/// A VPLS split-horizon group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitHorizonGroup {
    /// `description`.
    pub description: Option<String>,
}

/// The L3 settings of an IES or VPRN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routed {
    /// IP interfaces by name.
    pub interfaces: BTreeMap<String, Interface>,
    /// Static routes by prefix.
    pub static_routes: BTreeMap<IpNet, StaticRoute>,
    /// VPRN `route-distinguisher`, kept for BGP VPNs (brasa does not use it yet).
    pub route_distinguisher: Option<String>,
}

/// An IP interface of an IES or VPRN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// `description`.
    pub description: Option<String>,
    /// Interfaces are created `no shutdown`.
    pub admin: AdminState,
    /// The primary IPv4 address with its prefix length (`address 192.0.2.1/24`).
    pub ipv4: Option<Ipv4Net>,
    /// IPv6 addresses (`ipv6 / address 2001:db8::1/64`).
    pub ipv6: BTreeSet<Ipv6Net>,
    /// The SAP the interface sits on (its settings are in the config's SAP table).
    pub sap: Option<SapId>,
}

impl Default for Interface {
    fn default() -> Self {
        Self {
            description: None,
            admin: AdminState::Up,
            ipv4: None,
            ipv6: BTreeSet::new(),
            sap: None,
        }
    }
}

impl Interface {
    /// Every address of the interface, IPv4 first.
    pub fn addresses(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.ipv4
            .map(IpNet::V4)
            .into_iter()
            .chain(self.ipv6.iter().copied().map(IpNet::V6))
    }
}

/// A static route (`static-route-entry PREFIX`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute {
    /// Where it goes; `None` until a `next-hop` or `black-hole` is configured (inactive).
    pub target: Option<RouteTarget>,
    /// The admin state of the target (`next-hop X / no shutdown`); created up.
    pub admin: AdminState,
    /// `description` of the target.
    pub description: Option<String>,
}

impl Default for StaticRoute {
    fn default() -> Self {
        Self {
            target: None,
            admin: AdminState::Up,
            description: None,
        }
    }
}

/// The target of a static route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteTarget {
    /// Forward through this gateway (on a connected subnet of the service).
    NextHop(IpAddr),
    /// Discard (`black-hole`).
    BlackHole,
}

/// Where a SAP sits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SapPath {
    /// The service.
    pub service: ServiceId,
    /// The IP interface, for IES/VPRN SAPs.
    pub interface: Option<String>,
    /// The SAP id.
    pub sap: SapId,
}

/// A SAP and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sap {
    /// The service it belongs to.
    pub service: ServiceId,
    /// The IP interface it sits under (IES/VPRN).
    pub interface: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// SAPs are created `no shutdown`.
    pub admin: AdminState,
    /// `capture-sap`: a VPLS SAP that only captures frames for dynamic services (no forwarding,
    /// no learning).
    pub capture: bool,
    /// `split-horizon-group` (VPLS), fixed at creation as in SR OS.
    pub split_horizon_group: Option<String>,
    /// Ingress settings.
    pub ingress: SapDirection,
    /// Egress settings.
    pub egress: SapDirection,
    /// `max-nbr-mac-addr`: the most MACs learned on this SAP (VPLS).
    pub max_mac_addresses: Option<u32>,
    /// `static-mac` entries (VPLS).
    pub static_macs: BTreeSet<MacAddr>,
    /// `disable-learning` (VPLS).
    pub disable_learning: bool,
    /// `disable-aging` (VPLS).
    pub disable_aging: bool,
    /// The `dynamic-services` context of a capture SAP.
    pub dynamic_services: DynamicServices,
}

impl Sap {
    /// A new SAP with SR OS defaults.
    pub fn new(
        service: ServiceId,
        interface: Option<String>,
        capture: bool,
        split_horizon_group: Option<String>,
    ) -> Self {
        Self {
            service,
            interface,
            description: None,
            admin: AdminState::Up,
            capture,
            split_horizon_group,
            ingress: SapDirection::default(),
            egress: SapDirection::default(),
            max_mac_addresses: None,
            static_macs: BTreeSet::new(),
            disable_learning: false,
            disable_aging: false,
            dynamic_services: DynamicServices::default(),
        }
    }

    /// The settings of one direction.
    pub fn direction(&self, dir: Direction) -> &SapDirection {
        match dir {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// The settings of one direction, to change.
    pub fn direction_mut(&mut self, dir: Direction) -> &mut SapDirection {
        match dir {
            Direction::Ingress => &mut self.ingress,
            Direction::Egress => &mut self.egress,
        }
    }
}

/// The `dynamic-services` context of a capture SAP, kept for the dynamic data services of
/// Nokia SR OS (the data-trigger machinery is a later component).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicServices {
    /// `dynamic-services-policy NAME`.
    pub policy: Option<String>,
    /// Created `shutdown`: a capture SAP triggers only after `no shutdown`.
    pub admin: AdminState,
}

impl Default for DynamicServices {
    fn default() -> Self {
        Self {
            policy: None,
            admin: AdminState::Down,
        }
    }
}

/// Ingress (from the SAP's port into the service) or egress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// `ingress`.
    Ingress,
    /// `egress`.
    Egress,
}

impl Direction {
    /// The SR OS keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    /// The kind of QoS policy a SAP references in this direction.
    pub fn qos_kind(self) -> QosKind {
        match self {
            Direction::Ingress => QosKind::SapIngress,
            Direction::Egress => QosKind::SapEgress,
        }
    }
}

/// One direction of a SAP: its filters, QoS policy and policer overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SapDirection {
    /// `filter ip N`.
    pub ip_filter: Option<FilterId>,
    /// `filter ipv6 N`.
    pub ipv6_filter: Option<FilterId>,
    /// `filter mac N`.
    pub mac_filter: Option<FilterId>,
    /// `qos N`: a sap-ingress (ingress) or sap-egress (egress) policy.
    pub qos: Option<PolicyId>,
    /// `policer-override / policer P`: per-SAP values that replace the policy's.
    pub policer_overrides: BTreeMap<PolicerId, PolicerOverride>,
}

impl SapDirection {
    /// The filter of `kind` applied in this direction.
    pub fn filter(&self, kind: FilterKind) -> Option<FilterId> {
        match kind {
            FilterKind::Ip => self.ip_filter,
            FilterKind::Ipv6 => self.ipv6_filter,
            FilterKind::Mac => self.mac_filter,
        }
    }

    /// The filter slot of `kind`.
    pub fn filter_mut(&mut self, kind: FilterKind) -> &mut Option<FilterId> {
        match kind {
            FilterKind::Ip => &mut self.ip_filter,
            FilterKind::Ipv6 => &mut self.ipv6_filter,
            FilterKind::Mac => &mut self.mac_filter,
        }
    }

    /// Every filter applied in this direction.
    pub fn filters(&self) -> impl Iterator<Item = FilterRef> + '_ {
        FilterKind::ALL
            .into_iter()
            .filter_map(|kind| self.filter(kind).map(|id| FilterRef { kind, id }))
    }
}

/// A forward or drop decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `forward`.
    Forward,
    /// `drop`.
    Drop,
}

/// The three filter kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FilterKind {
    /// `ip-filter`: IPv4 match criteria.
    Ip,
    /// `ipv6-filter`: IPv6 match criteria.
    Ipv6,
    /// `mac-filter`: Ethernet match criteria.
    Mac,
}

impl FilterKind {
    /// All kinds, in export order.
    pub const ALL: [FilterKind; 3] = [FilterKind::Ip, FilterKind::Ipv6, FilterKind::Mac];

    /// The keyword of the filter definition (`ip-filter`).
    pub fn definition_keyword(self) -> &'static str {
        match self {
            FilterKind::Ip => "ip-filter",
            FilterKind::Ipv6 => "ipv6-filter",
            FilterKind::Mac => "mac-filter",
        }
    }

    /// The keyword used when a SAP applies the filter (`filter ip N`).
    pub fn reference_keyword(self) -> &'static str {
        match self {
            FilterKind::Ip => "ip",
            FilterKind::Ipv6 => "ipv6",
            FilterKind::Mac => "mac",
        }
    }
}

/// A filter of one kind, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FilterRef {
    /// The filter kind.
    pub kind: FilterKind,
    /// The filter id.
    pub id: FilterId,
}

impl fmt::Display for FilterRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.definition_keyword(), self.id)
    }
}

/// The type of a MAC filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MacFilterType {
    /// `normal`: MAC address, ethertype and frame-type criteria.
    #[default]
    Normal,
    /// `vid`: VLAN tag criteria (`outer-tag` / `inner-tag`), e.g. to keep VLANs from triggering
    /// on a capture SAP.
    Vid,
}

/// A filter policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// `description`.
    pub description: Option<String>,
    /// `default-action`: what happens to a packet no entry matches (SR OS default: drop).
    pub default_action: Action,
    /// `type` of a MAC filter; always `Normal` for IP filters.
    pub mac_type: MacFilterType,
    /// Entries by id; evaluated in ascending order, the first match decides.
    pub entries: OrdMap<EntryId, FilterEntry>,
}

impl Default for Filter {
    fn default() -> Self {
        Self {
            description: None,
            default_action: Action::Drop,
            mac_type: MacFilterType::Normal,
            entries: OrdMap::new(),
        }
    }
}

/// A filter entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterEntry {
    /// `description`.
    pub description: Option<String>,
    /// `action`; an entry without one is inactive (skipped), as in SR OS.
    pub action: Option<Action>,
    /// IP criteria (ip-filter, ipv6-filter).
    pub ip: IpMatch,
    /// Ethernet criteria (mac-filter).
    pub mac: MacMatch,
}

/// IP match criteria; every `Some` must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpMatch {
    /// `match protocol P` (IPv4) / `match next-header P` (IPv6).
    pub protocol: Option<u8>,
    /// `src-ip PREFIX`.
    pub src_ip: Option<IpNet>,
    /// `dst-ip PREFIX`.
    pub dst_ip: Option<IpNet>,
    /// `src-port eq|range|lt|gt`.
    pub src_port: Option<PortMatch>,
    /// `dst-port eq|range|lt|gt`.
    pub dst_port: Option<PortMatch>,
    /// `dscp NAME`.
    pub dscp: Option<u8>,
    /// `icmp-type N`.
    pub icmp_type: Option<u8>,
    /// `icmp-code N`.
    pub icmp_code: Option<u8>,
}

/// A TCP/UDP port criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortMatch {
    /// `eq N`.
    Eq(u16),
    /// `range LOW HIGH`, both included.
    Range(u16, u16),
    /// `lt N`: strictly below.
    Lt(u16),
    /// `gt N`: strictly above.
    Gt(u16),
}

/// Ethernet match criteria; every `Some` must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MacMatch {
    /// `match frame-type T`.
    pub frame_type: Option<FrameType>,
    /// `src-mac ADDR [MASK]`.
    pub src_mac: Option<MacMask>,
    /// `dst-mac ADDR [MASK]`.
    pub dst_mac: Option<MacMask>,
    /// `etype 0xNNNN`.
    pub etype: Option<u16>,
    /// `outer-tag VALUE [MASK]` (vid filters).
    pub outer_tag: Option<TagMask>,
    /// `inner-tag VALUE [MASK]` (vid filters).
    pub inner_tag: Option<TagMask>,
}

/// A MAC address and the mask of the bits that must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacMask {
    /// The address.
    pub addr: MacAddr,
    /// The mask (all ones when omitted).
    pub mask: MacAddr,
}

/// A VLAN tag value and the mask of the bits that must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TagMask {
    /// The tag value, `0..=4095`.
    pub value: u16,
    /// The mask (4095 when omitted).
    pub mask: u16,
}

/// Ethernet frame formats of `match frame-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// `802dot3`.
    Ieee8023,
    /// `802dot2-llc`.
    Ieee8022Llc,
    /// `802dot2-snap`.
    Ieee8022Snap,
    /// `ethernet_II`.
    EthernetII,
}

impl FrameType {
    /// The SR OS keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            FrameType::Ieee8023 => "802dot3",
            FrameType::Ieee8022Llc => "802dot2-llc",
            FrameType::Ieee8022Snap => "802dot2-snap",
            FrameType::EthernetII => "ethernet_II",
        }
    }

    /// Every frame type.
    pub const ALL: [FrameType; 4] = [
        FrameType::Ieee8023,
        FrameType::Ieee8022Llc,
        FrameType::Ieee8022Snap,
        FrameType::EthernetII,
    ];
}

/// The two SAP QoS policy kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QosKind {
    /// `sap-ingress`.
    SapIngress,
    /// `sap-egress`.
    SapEgress,
}

impl QosKind {
    /// The SR OS keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            QosKind::SapIngress => "sap-ingress",
            QosKind::SapEgress => "sap-egress",
        }
    }
}

/// A QoS policy of one kind, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QosRef {
    /// The policy kind.
    pub kind: QosKind,
    /// The policy id.
    pub id: PolicyId,
}

impl fmt::Display for QosRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.keyword(), self.id)
    }
}

/// A sap-ingress or sap-egress policy.
///
/// brasa has no forwarding classes: all traffic of a SAP goes through the policy's
/// [`metering_policer`](QosPolicy::metering_policer), the lowest-numbered policer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QosPolicy {
    /// `description`.
    pub description: Option<String>,
    /// Policers by id.
    pub policers: BTreeMap<PolicerId, Policer>,
}

impl QosPolicy {
    /// The policer that meters a SAP's traffic: the lowest-numbered one.
    pub fn metering_policer(&self) -> Option<(PolicerId, &Policer)> {
        self.policers.iter().next().map(|(id, p)| (*id, p))
    }
}

/// A rate in kbps, or `max` (unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rate {
    /// A rate in kilobits per second.
    Kbps(u32),
    /// No limit.
    Max,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Kbps(kbps) => write!(f, "{kbps}"),
            Rate::Max => f.write_str("max"),
        }
    }
}

/// `rate PIR cir CIR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PolicerRate {
    /// The peak information rate.
    pub pir: Rate,
    /// The committed information rate.
    pub cir: Rate,
}

impl Default for PolicerRate {
    /// SR OS's default: `rate max cir 0`.
    fn default() -> Self {
        Self {
            pir: Rate::Max,
            cir: Rate::Kbps(0),
        }
    }
}

/// The metering algorithm of a policer (`mode`, the 7210 SAS keyword; brasa's policers default to
/// the RFC 4115 behaviour of SR OS 7750 policers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MeterMode {
    /// `srtcm`: single rate three colour (RFC 2697): CBS and MBS both filled at CIR.
    SrTcm,
    /// `trtcm1`: two rate three colour (RFC 2698).
    TrTcm1,
    /// `trtcm2`: two rate three colour with independent buckets (RFC 4115).
    #[default]
    TrTcm2,
}

impl MeterMode {
    /// The keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            MeterMode::SrTcm => "srtcm",
            MeterMode::TrTcm1 => "trtcm1",
            MeterMode::TrTcm2 => "trtcm2",
        }
    }

    /// Every mode.
    pub const ALL: [MeterMode; 3] = [MeterMode::SrTcm, MeterMode::TrTcm1, MeterMode::TrTcm2];
}

/// What a policer counts (`stat-mode`, SR OS keywords).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StatMode {
    /// `no-stats`.
    NoStats,
    /// `minimal` (the default): offered, dropped and forwarded totals.
    #[default]
    Minimal,
    /// `offered-profile-no-cir`.
    OfferedProfileNoCir,
    /// `offered-priority-no-cir`.
    OfferedPriorityNoCir,
    /// `offered-limited-profile-cir`.
    OfferedLimitedProfileCir,
    /// `offered-profile-cir`.
    OfferedProfileCir,
    /// `offered-priority-cir`.
    OfferedPriorityCir,
    /// `offered-total-cir`.
    OfferedTotalCir,
    /// `offered-profile-capped-cir`.
    OfferedProfileCappedCir,
    /// `offered-limited-capped-cir`.
    OfferedLimitedCappedCir,
}

impl StatMode {
    /// Every stat mode.
    pub const ALL: [StatMode; 10] = [
        StatMode::NoStats,
        StatMode::Minimal,
        StatMode::OfferedProfileNoCir,
        StatMode::OfferedPriorityNoCir,
        StatMode::OfferedLimitedProfileCir,
        StatMode::OfferedProfileCir,
        StatMode::OfferedPriorityCir,
        StatMode::OfferedTotalCir,
        StatMode::OfferedProfileCappedCir,
        StatMode::OfferedLimitedCappedCir,
    ];

    /// The SR OS keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            StatMode::NoStats => "no-stats",
            StatMode::Minimal => "minimal",
            StatMode::OfferedProfileNoCir => "offered-profile-no-cir",
            StatMode::OfferedPriorityNoCir => "offered-priority-no-cir",
            StatMode::OfferedLimitedProfileCir => "offered-limited-profile-cir",
            StatMode::OfferedProfileCir => "offered-profile-cir",
            StatMode::OfferedPriorityCir => "offered-priority-cir",
            StatMode::OfferedTotalCir => "offered-total-cir",
            StatMode::OfferedProfileCappedCir => "offered-profile-capped-cir",
            StatMode::OfferedLimitedCappedCir => "offered-limited-capped-cir",
        }
    }
}

/// A policer of a QoS policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policer {
    /// `description`.
    pub description: Option<String>,
    /// `rate PIR cir CIR`.
    pub rate: PolicerRate,
    /// `mbs` in bytes (`None`: [`default_burst`] of the PIR).
    pub mbs: Option<u32>,
    /// `cbs` in bytes (`None`: [`default_burst`] of the CIR).
    pub cbs: Option<u32>,
    /// `mode`.
    pub mode: MeterMode,
    /// `stat-mode`.
    pub stat_mode: StatMode,
    /// `packet-byte-offset add N` (positive) / `subtract N` (negative): bytes added to each
    /// packet's size before metering.
    pub packet_byte_offset: i32,
}

/// The burst a rate gets when none is configured: 10 ms at that rate, at least 16 KiB (a jumbo
/// frame and a bit); `max` rates have no bucket to size and get the floor.
pub fn default_burst(rate: Rate) -> u32 {
    const FLOOR: u32 = 16 * 1024;
    match rate {
        // kbps × 10 ms = kbps × 1000 / 8 / 100 bytes = kbps × 1.25 bytes.
        Rate::Kbps(kbps) => FLOOR.max(kbps.saturating_add(kbps / 4)),
        Rate::Max => FLOOR,
    }
}

/// The resolved parameters of a policer on one SAP: the policy's policer with the SAP's
/// `policer-override` applied and defaults filled in. What the data plane meters with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectivePolicer {
    /// The rates.
    pub rate: PolicerRate,
    /// Maximum burst, bytes.
    pub mbs: u32,
    /// Committed burst, bytes.
    pub cbs: u32,
    /// The algorithm.
    pub mode: MeterMode,
    /// What to count.
    pub stat_mode: StatMode,
    /// Bytes added to (or, negative, removed from) each packet's size.
    pub packet_byte_offset: i32,
}

impl Policer {
    /// This policer's parameters with `over` applied and defaults filled in.
    pub fn effective(&self, over: Option<&PolicerOverride>) -> EffectivePolicer {
        let rate = over.and_then(|o| o.rate).unwrap_or(self.rate);
        let mbs = over.and_then(|o| o.mbs).or(self.mbs);
        let cbs = over.and_then(|o| o.cbs).or(self.cbs);
        EffectivePolicer {
            rate,
            mbs: mbs.unwrap_or_else(|| default_burst(rate.pir)),
            cbs: cbs.unwrap_or_else(|| default_burst(rate.cir)),
            mode: self.mode,
            stat_mode: over.and_then(|o| o.stat_mode).unwrap_or(self.stat_mode),
            packet_byte_offset: over
                .and_then(|o| o.packet_byte_offset)
                .unwrap_or(self.packet_byte_offset),
        }
    }
}

/// Per-SAP replacements for a policer's values (`policer-override / policer P create`).
/// `None` keeps the policy's value. An override for a policer the policy lacks has no effect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicerOverride {
    /// `rate`.
    pub rate: Option<PolicerRate>,
    /// `mbs`, bytes.
    pub mbs: Option<u32>,
    /// `cbs`, bytes.
    pub cbs: Option<u32>,
    /// `stat-mode`.
    pub stat_mode: Option<StatMode>,
    /// `packet-byte-offset`.
    pub packet_byte_offset: Option<i32>,
}

/// The DSCP names SR OS uses, by value; values without a name are written `cpN`.
const DSCP_NAMES: [(&str, u8); 21] = [
    ("be", 0),
    ("cs1", 8),
    ("af11", 10),
    ("af12", 12),
    ("af13", 14),
    ("cs2", 16),
    ("af21", 18),
    ("af22", 20),
    ("af23", 22),
    ("cs3", 24),
    ("af31", 26),
    ("af32", 28),
    ("af33", 30),
    ("cs4", 32),
    ("af41", 34),
    ("af42", 36),
    ("af43", 38),
    ("cs5", 40),
    ("ef", 46),
    ("nc1", 48),
    ("nc2", 56),
];

/// The SR OS name of a DSCP value (`ef`, `af41`, `cp5`).
pub fn dscp_name(value: u8) -> String {
    DSCP_NAMES
        .iter()
        .find(|(_, v)| *v == value)
        .map(|(name, _)| (*name).to_owned())
        .unwrap_or_else(|| format!("cp{value}"))
}

/// The DSCP value of an SR OS name (`ef`, `af41`, `cp5`, also `cs6`/`cs7` for `nc1`/`nc2`).
pub fn dscp_value(name: &str) -> Option<u8> {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "cs6" => return Some(48),
        "cs7" => return Some(56),
        _ => {}
    }
    if let Some((_, v)) = DSCP_NAMES.iter().find(|(n, _)| *n == lower) {
        return Some(*v);
    }
    let value: u8 = lower.strip_prefix("cp")?.parse().ok()?;
    // A named value has exactly one spelling, so `cp46` is not `ef`.
    (value < 64 && !DSCP_NAMES.iter().any(|(_, v)| *v == value)).then_some(value)
}

/// IP protocol names accepted in `match protocol`, by number.
const PROTOCOL_NAMES: [(&str, u8); 10] = [
    ("icmp", 1),
    ("igmp", 2),
    ("tcp", 6),
    ("udp", 17),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("ipv6-icmp", 58),
    ("ospf-igp", 89),
    ("sctp", 132),
];

/// The name of an IP protocol number, when it has one.
pub fn protocol_name(value: u8) -> Option<&'static str> {
    PROTOCOL_NAMES
        .iter()
        .find(|(_, v)| *v == value)
        .map(|(n, _)| *n)
}

/// The number of an IP protocol name.
pub fn protocol_value(name: &str) -> Option<u8> {
    PROTOCOL_NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// True when `addr` is a usable interface address: not unspecified, multicast or loopback, and
/// (IPv4) not the subnet's broadcast address for prefixes up to /30.
pub fn is_host_address(net: IpNet) -> bool {
    let addr = net.addr();
    if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
        return false;
    }
    match net {
        IpNet::V4(v4) => {
            v4.prefix_len() > 30
                || (v4.addr() != v4.network() && v4.addr() != v4.broadcast())
                    && v4.addr() != Ipv4Addr::BROADCAST
        }
        IpNet::V6(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dscp_names_round_trip() {
        for value in 0..64u8 {
            assert_eq!(dscp_value(&dscp_name(value)), Some(value));
        }
        assert_eq!(dscp_value("cs6"), Some(48));
        assert_eq!(dscp_value("cp46"), None);
        assert_eq!(dscp_value("cp64"), None);
    }

    #[test]
    fn effective_policer_applies_overrides_and_defaults() {
        let policer = Policer {
            rate: PolicerRate {
                pir: Rate::Kbps(100_000),
                cir: Rate::Kbps(10_000),
            },
            cbs: Some(5000),
            ..Policer::default()
        };
        let plain = policer.effective(None);
        assert_eq!(plain.mbs, 125_000);
        assert_eq!(plain.cbs, 5000);
        let over = PolicerOverride {
            rate: Some(PolicerRate {
                pir: Rate::Kbps(1000),
                cir: Rate::Kbps(0),
            }),
            stat_mode: Some(StatMode::NoStats),
            ..PolicerOverride::default()
        };
        let eff = policer.effective(Some(&over));
        assert_eq!(eff.rate.pir, Rate::Kbps(1000));
        assert_eq!(eff.mbs, 16 * 1024);
        assert_eq!(eff.cbs, 5000);
        assert_eq!(eff.stat_mode, StatMode::NoStats);
    }

    #[test]
    fn host_addresses_exclude_network_and_broadcast() {
        assert!(is_host_address("192.0.2.1/24".parse().unwrap()));
        assert!(!is_host_address("192.0.2.0/24".parse().unwrap()));
        assert!(!is_host_address("192.0.2.255/24".parse().unwrap()));
        assert!(is_host_address("192.0.2.0/31".parse().unwrap()));
        assert!(!is_host_address("127.0.0.1/8".parse().unwrap()));
        assert!(!is_host_address("::/64".parse().unwrap()));
        assert!(is_host_address("2001:db8::1/64".parse().unwrap()));
    }
}
