//! `brasa-subscriber`: the Subscriber Manager core (seed 003, Cisco SCMS SM).
//!
//! Sans-IO: no sockets, threads or clocks. The [`SubscriberIndex`] holds subscriber records,
//! their network-ID mappings in per-VPN longest-prefix-match tables and the VPNs; every operation
//! validates fully, then applies, and returns a [`ChangeSet`] that a [`SubscriberStore`] makes
//! durable and the push-mode sender turns into per-domain [`DomainEvent`]s. The only I/O in the
//! crate is the [`store`] module (redb) and the reader/writer passed to the [`csv`] functions.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod csv;
pub mod index;
pub mod learned;
pub mod lpm;
pub mod mapping;
pub mod name;
pub mod record;
pub mod route_record;
pub mod store;

pub use index::{
    IndexConfig, LearnedRouteView, SubscriberIndex, VpnId, GLOBAL_VPN, SESSION_PROPERTY,
};
pub use learned::{
    LearnOp, LearnedRoute, PeerRoutes, RouteAttributes, RouteChange, RouteFamily, RouteKey,
};
pub use mapping::{
    Community, CommunityMapping, IpSpec, Mapping, MappingParseError, MplsVpnId, NetworkId, Prefix,
    RouteDistinguisher,
};
pub use name::{NameCase, NameError, SubscriberName};
pub use record::{
    ChangeSet, DomainEvent, DownstreamLabel, IndexError, Login, MplsVpnEntry, Subscriber,
    SubscriberChange, Vpn, VpnChange, VpnKind, DEFAULT_DOMAIN,
};

pub use route_record::RouteFormat;
pub use store::{RedbStore, Snapshot, StoreError, StoredRecords, StoredWrite, SubscriberStore};
