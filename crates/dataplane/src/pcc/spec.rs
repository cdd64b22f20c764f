//! The plain input types the control side compiles its subscriber-service model into: one
//! [`SubscriberPccSpec`] per subscriber, holding the addresses it owns and the PCC rules of all
//! its active services. Nothing here is validated; [`super::SubscriberPolicy::compile`] does it.

use crate::acl::{Disposition, IpMatch, Prefix};
use crate::service::ServiceId;
use serde::Serialize;

/// Where an address is unique: the base routing instance (the global address space: ports
/// outside services and IES interfaces) or one VPRN's (its IP interfaces), as on SR OS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoutingInstance {
    /// The global address space.
    #[default]
    Base,
    /// The VPRN service with this id.
    Vprn(ServiceId),
}

impl std::fmt::Display for RoutingInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoutingInstance::Base => f.write_str("base"),
            RoutingInstance::Vprn(id) => write!(f, "vprn {id}"),
        }
    }
}

/// An address prefix a subscriber owns inside one VPRN (`…@VPN` in the Subscriber Manager).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct VprnPrefix {
    /// The VPRN service whose routing instance holds the prefix.
    pub vprn: ServiceId,
    /// The prefix.
    pub prefix: Prefix,
}

impl std::fmt::Display for VprnPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} in vprn {}", self.prefix, self.vprn)
    }
}

/// Which traffic of its subscriber a PCC rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// From the subscriber: packets whose source address the subscriber owns.
    Ingress,
    /// To the subscriber: packets whose destination address the subscriber owns.
    Egress,
}

impl Direction {
    /// Both directions, in counter order.
    pub const ALL: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    /// Stable name for JSON and logs.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// A PCC rule's dynamic policer: an RFC 2698 two-rate three-colour marker, colour-blind, with
/// the SR OS overrides a PCC rule can carry. Red packets are dropped; green and yellow ones
/// are forwarded. The rule's counters are kept whatever SR OS `stat-mode` the model records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct PccPolicer {
    /// Peak information rate, kbps (≥ 1): the rate-limit action's PIR.
    pub pir_kbps: u64,
    /// Committed information rate, kbps (≤ PIR; 0 = everything within the PIR is yellow).
    pub cir_kbps: u64,
    /// Maximum burst size, bytes; `None` = the default (10 ms at the PIR).
    pub mbs: Option<u64>,
    /// Committed burst size, bytes; `None` = the default (10 ms at the CIR).
    pub cbs: Option<u64>,
    /// Bytes added to (negative: removed from) each packet's IP length before it is metered
    /// (SR OS `packet-byte-offset`). Counters are not affected: they count IP octets.
    pub packet_byte_offset: i16,
}

/// What a PCC rule does with the packets it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct PccAction {
    /// Forward (the default) or drop. A dropping rule takes no policer and no remark.
    pub disposition: Disposition,
    /// Rate-limit with this policer (SR OS `qos_action_rate_limit_pir` and its overrides).
    pub rate_limit: Option<PccPolicer>,
    /// The rule's forwarded traffic counts towards its service's volume accounting (SR OS
    /// `qos_action_account`). The data plane counts every rule alike; the flag is carried so
    /// that whoever reads the counters can apply the counter rule.
    pub account: bool,
    /// Rewrite the DSCP of forwarded packets to this value (0–63).
    pub remark_dscp: Option<u8>,
}

/// One PCC rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PccRuleSpec {
    /// Name, unique among the subscriber's rules of the same direction: the rule's policer
    /// state and counters follow this name across policy changes (the compiler from the
    /// service model makes it unique, e.g. by prefixing the service name).
    pub name: String,
    /// Which traffic it applies to.
    pub direction: Direction,
    /// Precedence: the lowest value is evaluated first. Rules of equal precedence are
    /// evaluated in the order they are listed.
    pub precedence: u32,
    /// The flows (at least one, any mix of IPv4 and IPv6): a packet matching any of them
    /// matches the rule. Addresses, protocol, port ranges and DSCP as in [`IpMatch`].
    pub flows: Vec<IpMatch>,
    /// What happens to matching packets.
    pub action: PccAction,
}

/// One subscriber as the PCC stage sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SubscriberPccSpec {
    /// The subscriber's name (as in the Subscriber Manager).
    pub name: String,
    /// The IPv4 and IPv6 addresses and prefixes it owns (a host is a /32 or /128, a delegated
    /// prefix a /56 or /64, a framed route any length). A packet belongs to the subscriber
    /// owning the longest prefix that covers its address. These are in the base routing
    /// instance.
    pub addresses: Vec<Prefix>,
    /// The prefixes it owns inside VPRNs: matched only on the packets of that VPRN's IP
    /// interfaces, so that two subscribers of different VPRNs may own the same address.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vprn_addresses: Vec<VprnPrefix>,
    /// The PCC rules of all its active services. Empty: a subscriber without services, whose
    /// traffic gets [`PccDefaults::no_services`].
    pub rules: Vec<PccRuleSpec>,
}

/// What happens to traffic the PCC rules do not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PccDefaults {
    /// Packets whose source and destination belong to no subscriber.
    pub unknown: Disposition,
    /// Packets of a subscriber that has no PCC rule at all (no services).
    pub no_services: Disposition,
}
