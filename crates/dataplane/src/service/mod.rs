//! The service data plane of an SR OS-like service router: SAPs on access ports, Epipe
//! cross-connects (SAP↔SAP, SAP↔Ethernet-over-GRE), VPLS bridging, IES/VPRN SAPs left to the
//! kernel, capture SAPs punted to the control plane, per-SAP filters and policers, counters.
//!
//! * [`spec`]: the plain configuration types ([`SapSpec`], [`EpipeSpec`], [`VplsSpec`],
//!   [`FilterSpec`], [`PolicerSpec`], …) the control side compiles its model into.
//! * [`ServiceTablesBuilder`] validates them into an immutable [`ServiceTables`] snapshot
//!   (`Send + Sync`, shared through `Arc`).
//! * [`ServiceStage`] is the pipeline stage: it holds the installed snapshot and, beside it,
//!   the mutable state (MAC table, policer buckets, counters, punt queue), keyed by the
//!   objects' slots and generations so that it survives a swap for objects that still exist.
//!   The control side reaches it through `Pipeline::stage_mut::<ServiceStage>()` and installs
//!   a new snapshot with [`ServiceStage::install`] between two batches.
//! * [`throttle`]: the data trigger throttle of capture SAPs ([`TriggerThrottle`]), shared
//!   lock-free by the workers and by the control side, which releases its marks.

pub mod spec;
mod stage;
mod tables;
pub mod throttle;

pub use spec::*;
pub use stage::{
    AccessPortCounters, FdbEntryView, FilterCounters, Punted, SapCounters, ServiceCounters,
    ServiceStage, ServiceStageConfig, DEFAULT_FDB_ENTRIES, DEFAULT_PUNT_QUEUE, PUNT_SNAPLEN,
};
pub use tables::{ServiceTables, ServiceTablesBuilder, TRANSPARENT_ETHERNET};
pub use throttle::{ThrottleKey, TriggerThrottle};

use crate::acl::RuleError;
use crate::pipeline::PortId;
use crate::policer::PolicerError;
use crate::sap::{SapEncapError, SapId};
use crate::wire::MacAddr;

/// Why a configuration change was refused (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The port has no service encapsulation configured.
    #[error("port {0} is not an access port (no encapsulation configured)")]
    NoPort(PortId),
    /// The port still has SAPs.
    #[error("port {0} has SAPs: remove them before changing its encapsulation or removing it")]
    PortInUse(PortId),
    /// A TPID other than 0x8100 and 0x88a8.
    #[error("TPID {0:#06x} is not supported: expected 0x8100 or 0x88a8")]
    Tpid(u16),
    /// An MTU out of range.
    #[error("MTU {0} is out of range: expected 64 to 9216")]
    Mtu(u16),
    /// The SAP encapsulation is invalid or does not fit its port.
    #[error(transparent)]
    Encap(#[from] SapEncapError),
    /// No such SAP.
    #[error("no SAP {0:?}")]
    NoSap(SapId),
    /// No such service.
    #[error("no service {0}")]
    NoService(u32),
    /// The service has SAPs (removing it or changing its type).
    #[error("service {0} has SAPs: remove them first")]
    ServiceInUse(u32),
    /// The SAP belongs to another service.
    #[error("SAP {sap:?} belongs to service {service}: remove it there first")]
    SapInOtherService {
        /// The SAP.
        sap: SapId,
        /// Its service.
        service: u32,
    },
    /// An Epipe already has its two endpoints.
    #[error("Epipe {0} already has two endpoints (SAPs or a GRE tunnel)")]
    EpipeFull(u32),
    /// Two Epipes with the same tunnel addresses and key.
    #[error("Epipe {0}: another Epipe uses the same GRE local, remote and key")]
    DuplicateTunnel(u32),
    /// Invalid GRE endpoint.
    #[error("invalid GRE endpoint: {0}")]
    Gre(String),
    /// An ageing time of 0.
    #[error("VPLS {0}: the ageing time must be at least 1 second")]
    AgeTime(u32),
    /// The SAP names a split-horizon group the VPLS does not declare.
    #[error("VPLS {service} has no split-horizon group {group:?}")]
    NoSplitHorizonGroup {
        /// The VPLS.
        service: u32,
        /// The group.
        group: String,
    },
    /// A static MAC that is multicast, zero, repeated or already static on another SAP.
    #[error("static MAC {0} is multicast, zero, or already static in this VPLS")]
    StaticMac(MacAddr),
    /// VPLS-only settings on an Epipe or L3 SAP.
    #[error("SAP {0:?}: capture, split horizon, MAC limits, static MACs and BUM limits exist only in a VPLS")]
    VplsOnly(SapId),
    /// Filters or policers on an IES/VPRN SAP in no interface pair (its frames are the
    /// kernel's own copy).
    #[error("SAP {0:?} is an IES/VPRN SAP with no interface TAP: its frames are the kernel's, so data-plane filters and policers cannot apply")]
    L3Qos(SapId),
    /// An IES/VPRN whose interface pairs repeat a SAP or pair a SAP with itself.
    #[error("IES/VPRN {0}: every interface pairs two different SAPs, each in one pair only")]
    L3Pair(u32),
    /// A capture SAP with more than an ingress MAC filter.
    #[error("capture SAP {0:?} takes only an ingress MAC filter")]
    CaptureSap(SapId),
    /// A BUM limit of zero.
    #[error("SAP {0:?}: the BUM limit needs a rate and a burst of at least 1 packet")]
    BumLimit(SapId),
    /// No such filter.
    #[error("no {kind:?} filter {id}")]
    NoFilter {
        /// Kind.
        kind: FilterKind,
        /// Id.
        id: u32,
    },
    /// A filter entry whose match does not fit the filter's kind.
    #[error("{kind:?} filter {id} entry {entry}: the match criteria do not fit the filter type")]
    FilterEntryKind {
        /// Kind.
        kind: FilterKind,
        /// Filter id.
        id: u32,
        /// Entry id.
        entry: u32,
    },
    /// A filter that does not compile.
    #[error("{kind:?} filter {id}: {source}")]
    Filter {
        /// Kind.
        kind: FilterKind,
        /// Id.
        id: u32,
        /// Why.
        source: RuleError,
    },
    /// No such policer.
    #[error("no policer {0}")]
    NoPolicer(u32),
    /// An invalid policer.
    #[error("policer {id}: {source}")]
    Policer {
        /// Id.
        id: u32,
        /// Why.
        source: PolicerError,
    },
    /// The object is still referenced.
    #[error("{0} is in use")]
    InUse(String),
    /// Too many objects of a kind.
    #[error("too many {0}")]
    TooMany(&'static str),
}
