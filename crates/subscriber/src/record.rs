//! The public subscriber and VPN records, the change set every index operation returns, and the
//! index errors.

use brasa_subsvc::{ServiceError, SubscriberServices};
use serde::{Deserialize, Serialize};

use crate::learned::RouteChange;
use crate::mapping::{CommunityMapping, Mapping, MplsVpnId, Prefix};
use crate::name::{NameError, SubscriberName};

/// The domain every subscriber and enforcement point belongs to unless told otherwise.
pub const DEFAULT_DOMAIN: &str = "subscribers";

/// A subscriber as the API, the store and the CSV files see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscriber {
    /// The key.
    pub name: SubscriberName,
    /// The subscriber domain (a configured domain).
    pub domain: String,
    /// Network-ID mappings, in the order they were given.
    pub mappings: Vec<Mapping>,
    /// `community@VPN` network IDs (CE as subscriber), in the order they were given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<CommunityMapping>,
    /// `range@VPN` mappings the BGP LEG derived from the routes carrying one of
    /// `communities` (ascending). Never stored or exported, and ignored on input: they are
    /// derived again from the LEG's routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learned: Vec<Mapping>,
    /// Policy: ordered `name = value` properties.
    pub properties: Vec<(String, String)>,
    /// Opaque state the enforcement point asked the SM to keep.
    #[serde(default)]
    pub state: Vec<u8>,
    /// Whether a login event is in force.
    pub logged_in: bool,
    /// When the SM logs the subscriber out by itself, in the caller's clock (seconds).
    pub auto_logout: Option<u64>,
    /// Its active subscriber services (PCC rules), in activation order. They belong to the
    /// subscriber's session: a logout clears them.
    #[serde(default, skip_serializing_if = "SubscriberServices::is_empty")]
    pub services: SubscriberServices,
}

impl Subscriber {
    /// A logged-out subscriber of the default domain with no mappings or policy.
    pub fn new(name: SubscriberName) -> Self {
        Subscriber {
            name,
            domain: DEFAULT_DOMAIN.to_owned(),
            mappings: Vec::new(),
            communities: Vec::new(),
            learned: Vec::new(),
            properties: Vec::new(),
            state: Vec::new(),
            logged_in: false,
            auto_logout: None,
            services: SubscriberServices::new(),
        }
    }

    /// Whether an enforcement point has anything to match for this subscriber: an IP mapping,
    /// configured or learnt.
    pub fn has_ip_mappings(&self) -> bool {
        !self.mappings.is_empty() || !self.learned.is_empty()
    }

    /// Every IP mapping an enforcement point installs: the configured ones, then the learnt.
    pub fn ip_mappings(&self) -> impl Iterator<Item = &Mapping> {
        self.mappings.iter().chain(&self.learned)
    }
}

/// A login event: the LEG API call of the same name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Login {
    /// Subscriber name (validated and case-folded by the index).
    pub name: String,
    /// Domain; `None` keeps the current one, or the default for a new subscriber.
    pub domain: Option<String>,
    /// Mappings to give the subscriber. Exact mappings held by others move to this subscriber.
    pub mappings: Vec<Mapping>,
    /// `community@VPN` network IDs to give the subscriber (they move like exact mappings).
    pub communities: Vec<CommunityMapping>,
    /// Add to the current mappings instead of replacing them.
    pub additive: bool,
    /// Properties to set (existing keys are overwritten in place, new ones appended).
    pub properties: Vec<(String, String)>,
    /// Automatic logout time, in the caller's clock.
    pub auto_logout: Option<u64>,
}

/// How a VPN is recognised on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VpnKind {
    /// Traffic tagged with this VLAN-id.
    Vlan(u16),
    /// MPLS/VPN: one or more `RT/RD@PE-IP` entries with their downstream labels.
    Mpls(Vec<MplsVpnEntry>),
}

/// One `RT/RD@PE-IP` of an MPLS/VPN and the labels the BGP LEG learnt for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MplsVpnEntry {
    /// The static identity configured by the operator.
    #[serde(with = "text")]
    pub id: MplsVpnId,
    /// Downstream labels and the IP ranges behind each, as set through the SM API (AddVpn,
    /// SetMplsLabel, CSV import); stored with the VPN.
    pub labels: Vec<DownstreamLabel>,
    /// Downstream labels the BGP LEG learnt from the routes matching this entry, ascending.
    /// Never stored or exported, and refused on input: they are derived again from the LEG's
    /// routes (whose ranges go to the subscribers holding `community@VPN`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learned_labels: Vec<u32>,
}

impl MplsVpnEntry {
    /// An entry without labels.
    pub fn new(id: MplsVpnId) -> Self {
        MplsVpnEntry {
            id,
            labels: Vec::new(),
            learned_labels: Vec::new(),
        }
    }

    /// Whether `label` is one of the entry's downstream labels, set or learnt.
    pub fn has_label(&self, label: u32) -> bool {
        self.labels.iter().any(|l| l.label == label) || self.learned_labels.contains(&label)
    }
}

/// A downstream MPLS label and the IP ranges it carries (learnt from BGP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownstreamLabel {
    /// The 20-bit label.
    pub label: u32,
    /// IP ranges routed with this label.
    #[serde(with = "text_vec")]
    pub ranges: Vec<Prefix>,
}

/// A VPN entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vpn {
    /// The name mappings use after `@`.
    pub name: String,
    /// The domain; subscribers with mappings in this VPN must be in the same domain.
    pub domain: String,
    /// VLAN or MPLS/VPN.
    pub kind: VpnKind,
}

impl Vpn {
    /// The VPN without what the BGP LEG learnt (its stored and exported form).
    pub fn configured(&self) -> Vpn {
        let mut vpn = self.clone();
        if let VpnKind::Mpls(entries) = &mut vpn.kind {
            for e in entries {
                e.learned_labels.clear();
            }
        }
        vpn
    }

    /// Whether any entry holds a learnt label.
    pub fn has_learned(&self) -> bool {
        matches!(&self.kind, VpnKind::Mpls(entries) if entries.iter().any(|e| !e.learned_labels.is_empty()))
    }
}

/// What happened to one subscriber in an operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberChange {
    /// The subscriber.
    pub name: SubscriberName,
    /// Its domain before the operation, `None` if it did not exist.
    pub old_domain: Option<String>,
    /// Its record after the operation, `None` if it was removed.
    pub new: Option<Subscriber>,
}

/// What happened to one VPN in an operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnChange {
    /// The VPN name.
    pub name: String,
    /// Its record after the operation, `None` if it was removed.
    pub new: Option<Vpn>,
}

/// Everything one operation changed: what the store must make durable and what push mode sends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSet {
    /// Changed subscribers, each once, in the order they were first touched.
    pub subscribers: Vec<SubscriberChange>,
    /// Changed VPNs (created automatically or by the operator), each once.
    pub vpns: Vec<VpnChange>,
    /// Routes of the BGP LEG to store or delete, in order (only the store reads these).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteChange>,
    /// Only what the BGP LEG learnt changed ([`crate::SubscriberIndex::learn`]): the
    /// subscribers and VPNs differ from their stored records only in their learnt mappings and
    /// labels, which are not stored, so a store writes the `routes` alone. The post-images
    /// are still what the enforcement points need.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub learned_only: bool,
}

/// What an enforcement point of one domain must be told about a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainEvent<'a> {
    /// Install or replace this subscriber (push mode).
    Upsert(&'a Subscriber),
    /// Forget this subscriber and its mappings (push and pull mode).
    Remove(&'a SubscriberName),
}

impl ChangeSet {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty() && self.vpns.is_empty() && self.routes.is_empty()
    }

    /// Appends `other`, keeping one entry per subscriber (the later one wins, the earliest
    /// `old_domain` is kept) so that batches coalesce. The result is learnt only if both were.
    pub fn merge(&mut self, other: ChangeSet) {
        self.learned_only = match (self.is_empty(), other.is_empty()) {
            (_, true) => self.learned_only,
            (true, false) => other.learned_only,
            (false, false) => self.learned_only && other.learned_only,
        };
        for change in other.subscribers {
            match self.subscribers.iter_mut().find(|c| c.name == change.name) {
                Some(existing) => existing.new = change.new,
                None => self.subscribers.push(change),
            }
        }
        for change in other.vpns {
            match self.vpns.iter_mut().find(|c| c.name == change.name) {
                Some(existing) => existing.new = change.new,
                None => self.vpns.push(change),
            }
        }
        self.routes.extend(other.routes);
    }

    /// Domains whose enforcement points must hear about this change set.
    pub fn domains(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        let subs = self.subscribers.iter().flat_map(|c| {
            [
                c.old_domain.as_deref(),
                c.new.as_ref().map(|s| s.domain.as_str()),
            ]
        });
        for d in subs.flatten() {
            if !out.contains(&d) {
                out.push(d);
            }
        }
        out
    }

    /// The events for enforcement points of `domain`, implementing automatic domain roaming: a
    /// subscriber that moved away is removed from its old domain and installed in the new one.
    ///
    /// In push mode an EP installs every `Upsert`; in pull mode it only acts on `Remove`.
    /// A subscriber is installed while it has IP mappings (configured or learnt); one without
    /// is removed.
    pub fn events_for<'a>(&'a self, domain: &'a str) -> impl Iterator<Item = DomainEvent<'a>> {
        self.subscribers.iter().filter_map(move |c| {
            let present = c
                .new
                .as_ref()
                .filter(|s| s.domain == domain && s.has_ip_mappings());
            match present {
                Some(s) => Some(DomainEvent::Upsert(s)),
                None => {
                    let was_here = c.old_domain.as_deref() == Some(domain);
                    let is_here = c.new.as_ref().is_some_and(|s| s.domain == domain);
                    (was_here || is_here).then_some(DomainEvent::Remove(&c.name))
                }
            }
        })
    }
}

/// Why an index operation was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// The subscriber name breaks the naming rules.
    #[error("invalid subscriber name {name:?}: {source}")]
    InvalidName {
        /// The refused name.
        name: String,
        /// The rule it breaks.
        source: NameError,
    },
    /// A VPN or domain name breaks the naming rules.
    #[error("invalid {what} name {name:?}: {source}")]
    InvalidEntityName {
        /// "VPN" or "domain".
        what: &'static str,
        /// The refused name.
        name: String,
        /// The rule it breaks.
        source: NameError,
    },
    /// No subscriber of that name.
    #[error("no subscriber named {0:?}")]
    UnknownSubscriber(String),
    /// `add` of a name that exists.
    #[error("subscriber {0:?} already exists")]
    SubscriberExists(String),
    /// The domain is not in the configured list.
    #[error("domain {0:?} is not configured")]
    UnknownDomain(String),
    /// A mapping names a VPN that does not exist and is not a VLAN-id.
    #[error("VPN {0:?} does not exist (only IP@VLAN-id creates a VPN automatically)")]
    UnknownVpn(String),
    /// `add_vpn` of a name, VLAN-id or RT/RD@PE that exists.
    #[error("VPN {0} already exists")]
    VpnExists(String),
    /// The subscriber and the VPN of one of its mappings are in different domains.
    #[error("mapping {mapping} is in VPN domain {vpn_domain:?} but the subscriber is in domain {domain:?}")]
    VpnDomainMismatch {
        /// The mapping text.
        mapping: String,
        /// The VPN's domain.
        vpn_domain: String,
        /// The subscriber's domain.
        domain: String,
    },
    /// Two mappings of one call cover the same prefix.
    #[error("mapping {0} is given twice in one call (prefix {1} overlaps exactly)")]
    DuplicateMapping(String, String),
    /// An exact mapping belongs to another subscriber and the call may not move it.
    #[error("mapping {mapping} belongs to subscriber {owner:?}")]
    MappingTaken {
        /// The mapping text.
        mapping: String,
        /// Its owner.
        owner: String,
    },
    /// Logout in a domain the subscriber is not in.
    #[error("subscriber {name:?} is in domain {actual:?}, not {domain:?}")]
    NotInDomain {
        /// The subscriber.
        name: String,
        /// The domain the call named.
        domain: String,
        /// The subscriber's domain.
        actual: String,
    },
    /// Logout by a mapping nobody holds.
    #[error("no subscriber holds mapping {0}")]
    NoSuchMapping(String),
    /// Removing a VPN that subscribers still use.
    #[error("VPN {vpn:?} still holds {prefixes} subscriber prefixes and {communities} community@VPN network IDs")]
    VpnInUse {
        /// The VPN.
        vpn: String,
        /// How many prefixes reference it.
        prefixes: usize,
        /// How many `community@VPN` network IDs name it.
        communities: usize,
    },
    /// Two `community@VPN` network IDs of one call are the same.
    #[error("{0} is given twice in one call")]
    DuplicateCommunity(String),
    /// A property key is empty or not printable ASCII.
    #[error("property {key:?}: {reason}")]
    InvalidProperty {
        /// The key.
        key: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A VPN definition is inconsistent.
    #[error("VPN {vpn:?}: {reason}")]
    InvalidVpn {
        /// The VPN.
        vpn: String,
        /// What is wrong.
        reason: String,
    },
    /// BGP information for an `RT/RD@PE-IP` that no VPN was configured with.
    #[error("no VPN is configured with MPLS/VPN {0}")]
    UnknownMplsVpn(String),
    /// More subscribers or prefixes than the index addresses (2^31 - 2).
    #[error("the index is full")]
    Full,
    /// A subscriber service request was refused; none of the requests of the call applied.
    #[error("subscriber {subscriber:?}, service request {}: {source}", .request + 1)]
    ServiceRefused {
        /// The subscriber.
        subscriber: String,
        /// 0-based position of the refused request in the call.
        request: usize,
        /// Why it was refused.
        source: ServiceError,
    },
}

mod text {
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: serde::Deserializer<'de>,
    {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

mod text_vec {
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: serde::Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.to_string()))
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Vec<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: serde::Deserializer<'de>,
    {
        let texts = <Vec<String> as serde::Deserialize>::deserialize(d)?;
        texts
            .iter()
            .map(|t| t.parse().map_err(serde::de::Error::custom))
            .collect()
    }
}
