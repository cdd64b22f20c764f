//! Typed changes: what one command of the text form (or one TOML field) asks for. A batch of
//! them is applied as one transaction by [`ServiceConfig::prepare`](crate::ServiceConfig::prepare).

use std::net::IpAddr;
use std::ops::Range;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::id::MacAddr;
use crate::model::{
    Action, AdminState, CustomerId, Direction, EntryId, FilterKind, FilterRef, FrameType,
    GreTunnel, MacFilterType, MacMask, MeterMode, PolicerId, PolicerRate, PolicyId, PortMatch,
    QosRef, SapPath, ServiceId, ServiceKind, StatMode, TagMask,
};

/// Where a change came from, so that an error can point at it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Origin {
    /// A command of the text form: 1-based line and column of its first word.
    Text {
        /// Line, from 1.
        line: u32,
        /// Column (characters), from 1.
        col: u32,
    },
    /// A TOML value: byte offsets in the file (`serde_spanned` spans), which the binary's
    /// `common::config::Source` turns into `file:line:col`.
    Toml(Range<usize>),
    /// A change built by a program.
    #[default]
    Api,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Text { line, col } => write!(f, "{line}:{col}"),
            Origin::Toml(span) => write!(f, "bytes {}..{}", span.start, span.end),
            Origin::Api => f.write_str("api"),
        }
    }
}

/// One change and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Where the change came from.
    pub origin: Origin,
    /// What it does.
    pub edit: Edit,
}

impl Change {
    /// A change built by a program.
    pub fn api(edit: Edit) -> Self {
        Self {
            origin: Origin::Api,
            edit,
        }
    }
}

/// What happens to an object that has no creation parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOp<S> {
    /// `… create`: the object must not exist.
    Create,
    /// Entering the object's context without `create`: it must exist (for `static-route-entry`,
    /// which SR OS creates on entry, it is created when missing).
    Enter,
    /// `no …`: the object must exist and must not be referenced.
    Delete,
    /// A setting of the existing object.
    Set(S),
}

/// A change to the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// A service (`epipe 1000 customer 1 create`, `no epipe 1000`, `description …`).
    Service {
        /// The service id.
        id: ServiceId,
        /// The kind named by the command; it must match an existing service's.
        kind: ServiceKind,
        /// What happens.
        op: ServiceOp,
    },
    /// A VPLS split-horizon group.
    SplitHorizonGroup {
        /// The VPLS.
        service: ServiceId,
        /// The group name.
        name: String,
        /// What happens.
        op: NodeOp<DescriptionSetting>,
    },
    /// An IES/VPRN IP interface.
    Interface {
        /// The service.
        service: ServiceId,
        /// The interface name.
        name: String,
        /// What happens.
        op: NodeOp<InterfaceSetting>,
    },
    /// An IES/VPRN static route.
    StaticRoute {
        /// The service.
        service: ServiceId,
        /// The destination prefix.
        prefix: IpNet,
        /// What happens.
        op: NodeOp<RouteSetting>,
    },
    /// A SAP.
    Sap {
        /// Where the SAP sits.
        path: SapPath,
        /// What happens.
        op: SapOp,
    },
    /// A SAP's per-policer override (`ingress / policer-override / policer P create`).
    PolicerOverride {
        /// The SAP.
        path: SapPath,
        /// Ingress or egress.
        dir: Direction,
        /// The policer id in the SAP's QoS policy.
        policer: PolicerId,
        /// What happens; only rate, mbs, cbs, stat-mode and packet-byte-offset may be set.
        op: NodeOp<PolicerSetting>,
    },
    /// A filter policy.
    Filter {
        /// The filter.
        filter: FilterRef,
        /// What happens.
        op: NodeOp<FilterSetting>,
    },
    /// A filter entry.
    FilterEntry {
        /// The filter.
        filter: FilterRef,
        /// The entry id.
        entry: EntryId,
        /// What happens.
        op: NodeOp<EntrySetting>,
    },
    /// A sap-ingress / sap-egress policy.
    QosPolicy {
        /// The policy.
        policy: QosRef,
        /// What happens.
        op: NodeOp<DescriptionSetting>,
    },
    /// A policer of a QoS policy.
    Policer {
        /// The policy.
        policy: QosRef,
        /// The policer id.
        policer: PolicerId,
        /// What happens.
        op: NodeOp<PolicerSetting>,
    },
}

/// What happens to a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceOp {
    /// `epipe N customer C create`.
    Create {
        /// The customer.
        customer: CustomerId,
    },
    /// `epipe N [customer C]`: the service must exist (and belong to `customer` if given).
    Enter {
        /// The customer named, if any.
        customer: Option<CustomerId>,
    },
    /// `no epipe N`: the service must be shut down and hold no SAPs or interfaces.
    Delete,
    /// A setting.
    Set(ServiceSetting),
}

/// A setting of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceSetting {
    /// `description TEXT` / `no description`.
    Description(Option<String>),
    /// `shutdown` / `no shutdown`.
    Admin(AdminState),
    /// Epipe `gre-tunnel local A remote B [key K]` / `no gre-tunnel`.
    GreTunnel(Option<GreTunnel>),
    /// VPLS `fdb-table-size N` / `no fdb-table-size`.
    FdbTableSize(Option<u32>),
    /// VPLS `local-age SECONDS` / `no local-age`.
    LocalAge(Option<u32>),
    /// VPRN `route-distinguisher RD` / `no route-distinguisher`.
    RouteDistinguisher(Option<String>),
}

/// A description, the only setting of split-horizon groups and QoS policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptionSetting(pub Option<String>);

/// A setting of an IP interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceSetting {
    /// `description` / `no description`.
    Description(Option<String>),
    /// `shutdown` / `no shutdown`.
    Admin(AdminState),
    /// `address A/L` / `no address`.
    Ipv4(Option<Ipv4Net>),
    /// `ipv6 / address A/L` (true) / `ipv6 / no address A/L` (false).
    Ipv6(Ipv6Net, bool),
}

/// A setting of a static route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSetting {
    /// `next-hop A`: enters (creating) the route's next hop.
    NextHop(IpAddr),
    /// `no next-hop A`.
    NoNextHop(IpAddr),
    /// `black-hole`: enters (creating) the route's discard target.
    BlackHole,
    /// `no black-hole`.
    NoBlackHole,
    /// `shutdown` / `no shutdown` of the target.
    Admin(AdminState),
    /// `description` of the target.
    Description(Option<String>),
}

/// What happens to a SAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SapOp {
    /// `sap ID [capture-sap] [split-horizon-group NAME] create`.
    Create {
        /// `capture-sap`.
        capture: bool,
        /// `split-horizon-group NAME`.
        split_horizon_group: Option<String>,
    },
    /// `sap ID`: the SAP must exist in this service (and interface).
    Enter,
    /// `no sap ID`.
    Delete,
    /// A setting.
    Set(SapSetting),
}

/// A setting of a SAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SapSetting {
    /// `description` / `no description`.
    Description(Option<String>),
    /// `shutdown` / `no shutdown`.
    Admin(AdminState),
    /// `ingress|egress / filter ip|ipv6|mac N` (Some) / `no filter ip|ipv6|mac` (None).
    Filter(Direction, FilterKind, Option<u32>),
    /// `ingress|egress / qos N` / `no qos`.
    Qos(Direction, Option<PolicyId>),
    /// `ingress|egress / no policer-override`: removes every override of the direction.
    ClearPolicerOverrides(Direction),
    /// `max-nbr-mac-addr N` / `no max-nbr-mac-addr`.
    MaxMacAddresses(Option<u32>),
    /// `static-mac MAC` (true) / `no static-mac MAC` (false).
    StaticMac(MacAddr, bool),
    /// `disable-learning` / `no disable-learning`.
    DisableLearning(bool),
    /// `disable-aging` / `no disable-aging`.
    DisableAging(bool),
    /// `dynamic-services / dynamic-services-policy NAME` / `no dynamic-services-policy`.
    DynamicServicesPolicy(Option<String>),
    /// `dynamic-services / shutdown` / `no shutdown`.
    DynamicServicesAdmin(AdminState),
}

/// A setting of a policer or of a policer override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicerSetting {
    /// `description` (policers only).
    Description(Option<String>),
    /// `rate PIR [cir CIR]` / `no rate`.
    Rate(Option<PolicerRate>),
    /// `mbs SIZE [bytes|kilobytes]` / `no mbs`, in bytes.
    Mbs(Option<u32>),
    /// `cbs SIZE [bytes|kilobytes]` / `no cbs`, in bytes.
    Cbs(Option<u32>),
    /// `mode srtcm|trtcm1|trtcm2` / `no mode` (policers only).
    Mode(Option<MeterMode>),
    /// `stat-mode MODE` / `no stat-mode`.
    StatMode(Option<StatMode>),
    /// `packet-byte-offset add N|subtract N` / `no packet-byte-offset`.
    PacketByteOffset(Option<i32>),
}

/// A setting of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterSetting {
    /// `description` / `no description`.
    Description(Option<String>),
    /// `default-action forward|drop` / `no default-action` (drop).
    DefaultAction(Option<Action>),
    /// `type normal|vid` (MAC filters; `no type` = normal). The filter must have no entries.
    MacType(MacFilterType),
}

/// A setting of a filter entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntrySetting {
    /// `description` / `no description`.
    Description(Option<String>),
    /// `action forward|drop` / `no action`.
    Action(Option<Action>),
    /// `no match`: removes every criterion.
    ClearMatch,
    /// One criterion, from `match …` or inside its context.
    Match(MatchSetting),
}

/// One match criterion of a filter entry; `None` removes it (`no src-ip`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchSetting {
    /// `match protocol P` (ip) / `match next-header P` (ipv6).
    Protocol(Option<u8>),
    /// `src-ip PREFIX`.
    SrcIp(Option<IpNet>),
    /// `dst-ip PREFIX`.
    DstIp(Option<IpNet>),
    /// `src-port …`.
    SrcPort(Option<PortMatch>),
    /// `dst-port …`.
    DstPort(Option<PortMatch>),
    /// `dscp NAME`.
    Dscp(Option<u8>),
    /// `icmp-type N`.
    IcmpType(Option<u8>),
    /// `icmp-code N`.
    IcmpCode(Option<u8>),
    /// `match frame-type T` (mac).
    FrameType(Option<FrameType>),
    /// `src-mac ADDR [MASK]`.
    SrcMac(Option<MacMask>),
    /// `dst-mac ADDR [MASK]`.
    DstMac(Option<MacMask>),
    /// `etype 0xNNNN`.
    Etype(Option<u16>),
    /// `outer-tag VALUE [MASK]`.
    OuterTag(Option<TagMask>),
    /// `inner-tag VALUE [MASK]`.
    InnerTag(Option<TagMask>),
}

impl MatchSetting {
    /// The filter kinds this criterion belongs to.
    pub fn applies_to(&self, kind: FilterKind) -> bool {
        use MatchSetting::*;
        match self {
            Protocol(_) | SrcIp(_) | DstIp(_) | SrcPort(_) | DstPort(_) | Dscp(_) | IcmpType(_)
            | IcmpCode(_) => kind != FilterKind::Mac,
            FrameType(_) | SrcMac(_) | DstMac(_) | Etype(_) | OuterTag(_) | InnerTag(_) => {
                kind == FilterKind::Mac
            }
        }
    }
}
