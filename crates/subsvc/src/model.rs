//! A subscriber service and its PCC rules (Nokia SR OS, "PCC rules in a subscriber
//! service"), validated, with a stable JSON form.
//!
//! A PCC rule is unidirectional: [`Direction::Ingress`] is traffic from the subscriber,
//! [`Direction::Egress`] traffic to the subscriber. Its flows (IPv4 and IPv6 mixed) say what
//! it matches, its precedence where it sits among the subscriber's rules (lower first, none
//! last), its actions what happens to what it matches. A rule that rate-limits or accounts
//! gets one dynamic policer, whose template parameters it may override.

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most dynamic policers of one subscriber per direction (SR OS: 63 per SLA profile
/// instance and direction).
pub const MAX_POLICERS_PER_DIRECTION: usize = 63;

/// What a committed service asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "kebab-case")]
pub enum ServiceRequest {
    /// `operation = add`: activate the service.
    Add(SubscriberService),
    /// `operation = delete`: deactivate the service instance of that name.
    Delete {
        /// The service instance name (its key).
        name: String,
    },
}

impl ServiceRequest {
    /// The operation of the request.
    pub fn operation(&self) -> Operation {
        match self {
            Self::Add(_) => Operation::Add,
            Self::Delete { .. } => Operation::Delete,
        }
    }

    /// The service instance name.
    pub fn name(&self) -> &str {
        match self {
            Self::Add(service) => &service.name,
            Self::Delete { name } => name,
        }
    }

    /// Checks the request (see [`SubscriberService::validate`]); a delete needs a name.
    pub fn validate(&self) -> Result<(), ValidationError> {
        match self {
            Self::Add(service) => service.validate(),
            Self::Delete { name } if name.is_empty() => Err(ValidationError::NoName),
            Self::Delete { .. } => Ok(()),
        }
    }
}

/// `sub_svc.operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// Activate.
    Add,
    /// Deactivate.
    Delete,
}

/// What to do when a service of the same type is active already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TypeConflictAction {
    /// No check: services of the same type are active side by side.
    #[default]
    None,
    /// The active service stays; the new one is refused.
    KeepOld,
    /// The active services of that type are deactivated; the new one is activated.
    KeepNew,
}

/// What a service's RADIUS accounting reports (Alc-Sub-Serv-Acct-Stats-Type values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AcctStatsType {
    /// 1: no accounting session for the service.
    #[default]
    Off,
    /// 2: octets, packets and session time.
    VolumeTime,
    /// 3: session time only.
    Time,
}

impl AcctStatsType {
    /// The type of an Alc-Sub-Serv-Acct-Stats-Type value (1 off, 2 volume-time, 3 time).
    pub fn from_wire(value: u32) -> Option<Self> {
        match value {
            1 => Some(Self::Off),
            2 => Some(Self::VolumeTime),
            3 => Some(Self::Time),
            _ => None,
        }
    }

    /// Its Alc-Sub-Serv-Acct-Stats-Type value.
    pub fn to_wire(self) -> u32 {
        match self {
            Self::Off => 1,
            Self::VolumeTime => 2,
            Self::Time => 3,
        }
    }
}

/// Shortest interim interval, seconds, as SR OS has it (Alc-Sub-Serv-Acct-Interim-Ivl: "a value
/// [1 to 299] seconds is rounded to 300s"): shorter ones (but 0) are raised to it unless the
/// caller gives another minimum.
pub const MIN_ACCT_INTERVAL: u32 = 300;
/// Longest interim interval, seconds (180 days): longer ones are lowered to it.
pub const MAX_ACCT_INTERVAL: u32 = 15_552_000;

/// One subscriber service instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SubscriberService {
    /// The instance name, unique per subscriber: the key a deactivation matches, and the
    /// value of Alc-Sub-Serv-Activate in its accounting.
    pub name: String,
    /// The service type that [`TypeConflictAction`] compares; `None` never conflicts.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    /// What to do when a service of the same type is active.
    #[serde(default)]
    pub type_conflict_action: TypeConflictAction,
    /// What its accounting reports.
    #[serde(default)]
    pub acct_stats_type: AcctStatsType,
    /// Interim-Update interval in seconds as given (0: none); `None` takes the configured
    /// default. See [`SubscriberService::interim_interval`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acct_interval: Option<u32>,
    /// The PCC rules.
    #[serde(default)]
    pub rules: Vec<PccRule>,
}

impl SubscriberService {
    /// A service with `name`, no type, no accounting and no rules.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            service_type: None,
            type_conflict_action: TypeConflictAction::None,
            acct_stats_type: AcctStatsType::Off,
            acct_interval: None,
            rules: Vec::new(),
        }
    }

    /// The interim interval in seconds, `None` for no Interim-Updates: `default` when the
    /// service gives none; 0 is none; anything shorter than `minimum` is raised to it and
    /// anything past 180 days lowered to it, as SR OS does with
    /// Alc-Sub-Serv-Acct-Interim-Ivl (its `minimum` is [`MIN_ACCT_INTERVAL`]). A `minimum`
    /// past 180 days counts as 180 days.
    pub fn interim_interval(&self, default: Option<u32>, minimum: u32) -> Option<u32> {
        match self.acct_interval.or(default)? {
            0 => None,
            secs => Some(secs.clamp(minimum.min(MAX_ACCT_INTERVAL), MAX_ACCT_INTERVAL)),
        }
    }

    /// Whether any rule has the account action: the counter rule then sums those rules'
    /// policers (see [`crate::counters`]).
    pub fn has_accounted_rules(&self) -> bool {
        self.rules.iter().any(|r| r.actions.account)
    }

    /// Checks the service on its own: a name; rule names unique; each rule valid (see
    /// [`PccRule::validate`]); at most [`MAX_POLICERS_PER_DIRECTION`] policers per direction.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.name.is_empty() {
            return Err(ValidationError::NoName);
        }
        if self.service_type.as_deref() == Some("") {
            return Err(ValidationError::EmptyType);
        }
        for (index, rule) in self.rules.iter().enumerate() {
            rule.validate().map_err(|error| ValidationError::Rule {
                rule: rule_label(index, &rule.name),
                error,
            })?;
            if self.rules[..index].iter().any(|r| r.name == rule.name) {
                return Err(ValidationError::DuplicateRule(rule.name.clone()));
            }
        }
        for direction in [Direction::Ingress, Direction::Egress] {
            let policers = policers(self.rules.iter(), direction);
            if policers > MAX_POLICERS_PER_DIRECTION {
                return Err(ValidationError::TooManyPolicers {
                    direction,
                    count: policers,
                });
            }
        }
        Ok(())
    }
}

/// How many of `rules` have a dynamic policer in `direction`.
pub(crate) fn policers<'a>(
    rules: impl Iterator<Item = &'a PccRule>,
    direction: Direction,
) -> usize {
    rules
        .filter(|r| r.direction == direction && r.has_policer())
        .count()
}

fn rule_label(index: usize, name: &str) -> String {
    if name.is_empty() {
        format!("#{}", index + 1)
    } else {
        format!("{name:?}")
    }
}

/// The direction of a PCC rule, named as on the BNG's subscriber side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// From the subscriber (upstream; Acct-Input-*).
    Ingress,
    /// To the subscriber (downstream; Acct-Output-*).
    Egress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        })
    }
}

/// One PCC rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PccRule {
    /// Its name, unique among the subscriber's rules.
    pub name: String,
    /// Which traffic it sees.
    pub direction: Direction,
    /// Lower first; `None` after every rule that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precedence: Option<u32>,
    /// What it matches: any of them.
    pub flows: Vec<Flow>,
    /// What happens to what it matches.
    #[serde(default)]
    pub actions: Actions,
    /// Overrides of the dynamic policer template; only for a rule with a policer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policer: Option<PolicerOverrides>,
}

impl PccRule {
    /// A rule with `name` and `direction`, no flows, forwarding.
    pub fn new(name: impl Into<String>, direction: Direction) -> Self {
        Self {
            name: name.into(),
            direction,
            precedence: None,
            flows: Vec::new(),
            actions: Actions::default(),
            policer: None,
        }
    }

    /// Whether the rule gets a dynamic policer: it rate-limits or accounts (one at most).
    pub fn has_policer(&self) -> bool {
        self.actions.rate_limit.is_some() || self.actions.account
    }

    /// Checks the rule: a name, a direction, at least one flow, each flow valid, actions
    /// that agree, policer overrides only with a policer and within their ranges.
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.name.is_empty() {
            return Err(RuleError::NoName);
        }
        if self.flows.is_empty() {
            return Err(RuleError::NoFlow);
        }
        for (index, flow) in self.flows.iter().enumerate() {
            flow.validate().map_err(|error| RuleError::Flow {
                index: index + 1,
                error,
            })?;
        }
        self.actions.validate()?;
        if let Some(policer) = &self.policer {
            if !self.has_policer() {
                return Err(RuleError::PolicerWithoutRateLimitOrAccount);
            }
            policer.validate()?;
        }
        Ok(())
    }
}

/// The match of one flow: a 5-tuple (any part of it) and/or a DSCP. A flow with addresses
/// is of their family; one without matches IPv4 and IPv6.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Flow {
    /// Source prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_ip: Option<IpNet>,
    /// Destination prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_ip: Option<IpNet>,
    /// IP protocol (IPv4) or next header (IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    /// Source port or range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_port: Option<PortRange>,
    /// Destination port or range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<PortRange>,
    /// DSCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dscp: Option<Dscp>,
}

/// IP protocols whose header starts with 16-bit source and destination ports.
const PORT_PROTOCOLS: [u8; 4] = [6, 17, 132, 136]; // TCP, UDP, SCTP, UDP-Lite

impl Flow {
    /// The address family the flow is limited to, if any.
    pub fn family(&self) -> Option<Family> {
        self.src_ip.or(self.dst_ip).map(|net| match net {
            IpNet::V4(_) => Family::Ipv4,
            IpNet::V6(_) => Family::Ipv6,
        })
    }

    /// Checks the flow: at least one criterion; both prefixes of one family and without
    /// host bits; ports only with a protocol that has them (or none given).
    pub fn validate(&self) -> Result<(), FlowError> {
        if *self == Flow::default() {
            return Err(FlowError::Empty);
        }
        if let (Some(src), Some(dst)) = (self.src_ip, self.dst_ip) {
            if matches!(src, IpNet::V4(_)) != matches!(dst, IpNet::V4(_)) {
                return Err(FlowError::MixedFamilies { src, dst });
            }
        }
        for net in [self.src_ip, self.dst_ip].into_iter().flatten() {
            if net.trunc() != net {
                return Err(FlowError::HostBits(net));
            }
        }
        let ports = self.src_port.is_some() || self.dst_port.is_some();
        if let Some(protocol) = self
            .protocol
            .filter(|p| ports && !PORT_PROTOCOLS.contains(p))
        {
            return Err(FlowError::PortsWithoutPortProtocol(protocol));
        }
        for range in [self.src_port, self.dst_port].into_iter().flatten() {
            if range.first > range.last {
                return Err(FlowError::EmptyPortRange(range));
            }
        }
        Ok(())
    }
}

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

/// A port (`first == last`) or an inclusive range; JSON `"80"` or `"1000-2000"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port, included.
    pub last: u16,
}

impl PortRange {
    /// One port.
    pub fn single(port: u16) -> Self {
        Self {
            first: port,
            last: port,
        }
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let port = |s: &str| {
            s.trim()
                .parse::<u16>()
                .map_err(|_| format!("port {s:?}: expected 0..=65535"))
        };
        match text.split_once('-') {
            Some((first, last)) => Ok(Self {
                first: port(first)?,
                last: port(last)?,
            }),
            None => port(text).map(Self::single),
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A DSCP value (0..=63).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Dscp(u8);

impl Dscp {
    /// The DSCP `value`; `None` past 63.
    pub fn new(value: u8) -> Option<Self> {
        (value <= 63).then_some(Self(value))
    }

    /// Its 6-bit value.
    pub fn value(self) -> u8 {
        self.0
    }

    /// A DSCP by its SR OS name (`be`, `ef`, `af11`..`af43`, `cs1`..`cs7`, `nc1`, `nc2`,
    /// `cp<n>`), case-insensitive: the names of the services' filters and policies.
    pub fn from_name(name: &str) -> Option<Self> {
        brasa_services::model::dscp_value(name).and_then(Self::new)
    }
}

/// The number of an IP protocol by its SR OS name (`tcp`, `udp`, `icmp`, `ipv6-icmp`, …),
/// case-insensitive, as the services' filters have them.
pub fn protocol_number(name: &str) -> Option<u8> {
    brasa_services::model::protocol_value(name)
}

impl<'de> Deserialize<'de> for Dscp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u8::deserialize(deserializer)?;
        Dscp::new(value)
            .ok_or_else(|| serde::de::Error::custom(format!("DSCP {value}: expected 0..=63")))
    }
}

impl fmt::Display for Dscp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Whether matching traffic goes on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Gate {
    /// Forward (the default).
    #[default]
    Forward,
    /// Drop.
    Drop,
}

/// The actions of a rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Actions {
    /// Forward or drop.
    #[serde(default)]
    pub gate: Gate,
    /// Rate-limit with a dynamic policer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Count what the rule's dynamic policer forwards into the service's accounting.
    #[serde(default)]
    pub account: bool,
    /// Rewrite the DSCP of matching packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark_dscp: Option<Dscp>,
}

impl Actions {
    fn validate(&self) -> Result<(), RuleError> {
        if self.gate == Gate::Drop
            && (self.rate_limit.is_some() || self.account || self.remark_dscp.is_some())
        {
            return Err(RuleError::DropWithOtherActions);
        }
        if let Some(limit) = self.rate_limit {
            if limit.pir_kbps == 0 {
                return Err(RuleError::ZeroPir);
            }
            if let Some(cir) = limit.cir_kbps.filter(|&cir| cir > limit.pir_kbps) {
                return Err(RuleError::CirAbovePir {
                    cir,
                    pir: limit.pir_kbps,
                });
            }
        }
        Ok(())
    }
}

/// The rates of a rule's dynamic policer (a two-rate three-colour meter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RateLimit {
    /// Peak information rate, kb/s.
    pub pir_kbps: u32,
    /// Committed information rate, kb/s; `None` is 0 (everything out of profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cir_kbps: Option<u32>,
}

/// A burst size: the template's, or this many bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BurstSize {
    /// The dynamic policer template's value.
    Default,
    /// Bytes.
    Bytes(u32),
}

/// Largest MBS or CBS, bytes: the data plane's policers take bursts up to 1 GiB, so a rule the
/// model accepts is one the data plane can install.
pub const MAX_BURST_BYTES: u32 = 1 << 30;
/// Parent levels of an arbiter (SR OS: 1..=8).
pub const PARENT_LEVELS: std::ops::RangeInclusive<u8> = 1..=8;
/// Parent weights (SR OS: 1..=100).
pub const PARENT_WEIGHTS: std::ops::RangeInclusive<u8> = 1..=100;
/// Packet byte offsets (SR OS: subtract up to 32, add up to 31 bytes).
pub const PACKET_BYTE_OFFSETS: std::ops::RangeInclusive<i8> = -32..=31;

/// Overrides of the dynamic policer template for one rule. brasa has no hierarchical
/// scheduler: the parent arbiter, level and weight are recorded and shown, not enforced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PolicerOverrides {
    /// Parent arbiter name (recorded only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_arbiter: Option<String>,
    /// Level at the parent arbiter, 1..=8 (recorded only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_level: Option<u8>,
    /// Weight at that level, 1..=100 (recorded only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_weight: Option<u8>,
    /// Maximum burst size (of the PIR bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mbs: Option<BurstSize>,
    /// Committed burst size (of the CIR bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cbs: Option<BurstSize>,
    /// Which counters the policer keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat_mode: Option<StatMode>,
    /// Bytes added to (or, negative, taken from) each packet's size before metering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packet_byte_offset: Option<i8>,
}

impl PolicerOverrides {
    fn validate(&self) -> Result<(), RuleError> {
        if self.parent_arbiter.as_deref() == Some("") {
            return Err(RuleError::EmptyArbiter);
        }
        if (self.parent_level.is_some() || self.parent_weight.is_some())
            && self.parent_arbiter.is_none()
        {
            return Err(RuleError::ParentWithoutArbiter);
        }
        for (what, burst) in [("mbs", self.mbs), ("cbs", self.cbs)] {
            if let Some(BurstSize::Bytes(bytes)) = burst {
                in_range(what, Some(bytes), 0..=MAX_BURST_BYTES)?;
            }
        }
        in_range("parent-level", self.parent_level, PARENT_LEVELS)?;
        in_range("parent-weight", self.parent_weight, PARENT_WEIGHTS)?;
        in_range(
            "packet-byte-offset",
            self.packet_byte_offset,
            PACKET_BYTE_OFFSETS,
        )
    }
}

/// `Ok` when `value` is absent or within `range`.
fn in_range<T: Copy + PartialOrd + Into<i64>>(
    what: &'static str,
    value: Option<T>,
    range: std::ops::RangeInclusive<T>,
) -> Result<(), RuleError> {
    match value {
        Some(v) if !range.contains(&v) => Err(RuleError::OutOfRange {
            what,
            value: v.into(),
            first: (*range.start()).into(),
            last: (*range.end()).into(),
        }),
        _ => Ok(()),
    }
}

/// The SR OS policer stat modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatMode {
    /// `no-stats`.
    NoStats,
    /// `minimal`.
    Minimal,
    /// `offered-profile-no-cir`.
    OfferedProfileNoCir,
    /// `offered-priority-no-cir`.
    OfferedPriorityNoCir,
    /// `offered-profile-cir`.
    OfferedProfileCir,
    /// `offered-priority-cir`.
    OfferedPriorityCir,
    /// `offered-total-cir`.
    OfferedTotalCir,
    /// `offered-limited-profile-cir`.
    OfferedLimitedProfileCir,
    /// `offered-profile-capped-cir`.
    OfferedProfileCappedCir,
    /// `offered-limited-capped-cir`.
    OfferedLimitedCappedCir,
}

impl StatMode {
    const ALL: [(StatMode, &'static str); 10] = [
        (Self::NoStats, "no-stats"),
        (Self::Minimal, "minimal"),
        (Self::OfferedProfileNoCir, "offered-profile-no-cir"),
        (Self::OfferedPriorityNoCir, "offered-priority-no-cir"),
        (Self::OfferedProfileCir, "offered-profile-cir"),
        (Self::OfferedPriorityCir, "offered-priority-cir"),
        (Self::OfferedTotalCir, "offered-total-cir"),
        (
            Self::OfferedLimitedProfileCir,
            "offered-limited-profile-cir",
        ),
        (Self::OfferedProfileCappedCir, "offered-profile-capped-cir"),
        (Self::OfferedLimitedCappedCir, "offered-limited-capped-cir"),
    ];

    /// The stat mode of its SR OS name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(m, _)| *m)
    }

    /// Its SR OS name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(m, _)| *m == self)
            .map_or("", |(_, n)| n)
    }
}

/// Why a service is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    /// No instance name.
    #[error("subscriber service: the name is missing")]
    NoName,
    /// A type that is the empty string.
    #[error("subscriber service: the type is empty")]
    EmptyType,
    /// Two rules of the service have one name.
    #[error("subscriber service: two PCC rules are named {0:?}")]
    DuplicateRule(String),
    /// A rule is invalid.
    #[error("PCC rule {rule}: {error}")]
    Rule {
        /// The rule's name, or `#n` for an unnamed one.
        rule: String,
        /// What is wrong with it.
        error: RuleError,
    },
    /// More policers in one direction than a subscriber may have.
    #[error("subscriber service: {count} {direction} PCC rules need a dynamic policer, at most {MAX_POLICERS_PER_DIRECTION} per direction")]
    TooManyPolicers {
        /// The direction.
        direction: Direction,
        /// How many.
        count: usize,
    },
}

/// Why a PCC rule is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    /// No name.
    #[error("the name is missing")]
    NoName,
    /// No flow.
    #[error("no flow: a PCC rule matches at least one flow")]
    NoFlow,
    /// A flow is invalid.
    #[error("flow {index}: {error}")]
    Flow {
        /// 1-based position of the flow in the rule.
        index: usize,
        /// What is wrong with it.
        error: FlowError,
    },
    /// Drop together with an action that needs forwarded traffic.
    #[error("drop cannot be combined with rate-limit, account or DSCP remark")]
    DropWithOtherActions,
    /// A PIR of 0.
    #[error("rate-limit PIR 0 kb/s: use the drop action to block traffic")]
    ZeroPir,
    /// CIR above PIR.
    #[error("rate-limit CIR {cir} kb/s is above the PIR {pir} kb/s")]
    CirAbovePir {
        /// CIR, kb/s.
        cir: u32,
        /// PIR, kb/s.
        pir: u32,
    },
    /// Policer overrides on a rule without a policer.
    #[error("policer parameters need a rate-limit or account action (only those create a dynamic policer)")]
    PolicerWithoutRateLimitOrAccount,
    /// An empty arbiter name.
    #[error("policer parent-arbiter is empty")]
    EmptyArbiter,
    /// Level or weight without an arbiter.
    #[error("policer parent-level and parent-weight need a parent-arbiter")]
    ParentWithoutArbiter,
    /// A value out of its range.
    #[error("policer {what} {value}: expected {first}..={last}")]
    OutOfRange {
        /// Which parameter.
        what: &'static str,
        /// The value given.
        value: i64,
        /// Smallest allowed.
        first: i64,
        /// Largest allowed.
        last: i64,
    },
}

/// Why a flow is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlowError {
    /// No criterion at all.
    #[error("no match criterion (give at least one of src/dst ip, protocol, ports, dscp)")]
    Empty,
    /// An IPv4 and an IPv6 prefix in one flow.
    #[error("source {src} and destination {dst} are of different address families")]
    MixedFamilies {
        /// Source prefix.
        src: IpNet,
        /// Destination prefix.
        dst: IpNet,
    },
    /// A prefix with bits set past its length.
    #[error("prefix {0} has host bits set (did you mean {trunc}?)", trunc = .0.trunc())]
    HostBits(IpNet),
    /// Ports with a protocol that has none.
    #[error("ports given with protocol {0}, which has no ports (expected 6 tcp, 17 udp, 132 sctp or 136 udplite)")]
    PortsWithoutPortProtocol(u8),
    /// A range whose first port is above its last.
    #[error("port range {0} is empty")]
    EmptyPortRange(PortRange),
}
