//! What the speaker tells its consumer: sessions coming and going, and VPN routes announced,
//! replaced and withdrawn.
//!
//! The Adj-RIB-In changes are always explicit: a consumer that applies [`RouteEvent::Announce`]
//! as an upsert and [`RouteEvent::Withdraw`] as a delete, keyed by (peer, RD, prefix), holds
//! exactly the peer's Adj-RIB-In. Session loss never removes routes silently: without graceful
//! restart every route is withdrawn with its own event; with it, the routes stay (stale) and are
//! either re-announced, left alone when the new session announces them unchanged, or withdrawn
//! at the new session's End-of-RIB or when the restart or stale timer runs out.

use crate::error::{Notification, ProtocolError};
use crate::types::{
    Community, ExtendedCommunity, FamilySet, LabelStack, LargeCommunity, RouteDistinguisher,
    RouteTarget, VpnFamily, VpnPrefix,
};
use crate::wire::update::Origin;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// The path attributes of a VPN route, shared by every route announced with them (one
/// allocation per distinct attribute set, not per route).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteAttrs {
    /// The next hop: the PE's loopback in the seed's `RT/RD@PE-IP` notation.
    pub next_hop: IpAddr,
    /// ORIGIN.
    pub origin: Origin,
    /// AS numbers of the AS_PATH in order, segments flattened (empty inside one AS).
    pub as_path: Box<[u32]>,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// The route targets among the extended communities, in order.
    pub route_targets: Box<[RouteTarget]>,
    /// Every extended community, route targets included, in order.
    pub extended_communities: Box<[ExtendedCommunity]>,
    /// Standard communities (RFC 1997): the `community` of the seed's `community@VPN`.
    pub communities: Box<[Community]>,
    /// Large communities (RFC 8092).
    pub large_communities: Box<[LargeCommunity]>,
}

/// One VPN route as the peer announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Route distinguisher.
    pub rd: RouteDistinguisher,
    /// Customer prefix.
    pub prefix: VpnPrefix,
    /// MPLS labels, outermost (the downstream label) first.
    pub labels: LabelStack,
    /// Path attributes.
    pub attrs: Arc<RouteAttrs>,
}

/// What was negotiated when a session reached Established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The peer's AS.
    pub remote_as: u32,
    /// The peer's BGP Identifier.
    pub remote_id: Ipv4Addr,
    /// Negotiated hold time in seconds (0: no keepalives, no hold timer).
    pub hold_time: u16,
    /// VPN families both sides announced.
    pub families: FamilySet,
    /// Both sides announced 4-octet AS.
    pub four_octet_as: bool,
    /// The peer announced route refresh, so [`crate::Peer::request_route_refresh`] works.
    pub route_refresh: bool,
    /// Graceful restart applies to this session: the peer's restart time in seconds and the
    /// families whose routes are kept (stale) if the session is lost.
    pub graceful_restart: Option<(u16, FamilySet)>,
    /// The peer asked to be a restarting speaker (R bit): it had restarted.
    pub peer_restarted: bool,
    /// The peer announced add-path, which this speaker does not announce, so it is not used.
    pub add_path_refused: bool,
    /// The peer announced enhanced route refresh, likewise not used.
    pub enhanced_route_refresh_refused: bool,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// The transport closed or failed without a NOTIFICATION.
    ConnectionLost,
    /// The peer sent this NOTIFICATION.
    NotificationReceived(Notification),
    /// This speaker found this error and sent its NOTIFICATION (hold timer expiry included).
    ProtocolError(ProtocolError),
    /// The session was stopped by the operator (CEASE sent).
    Stopped,
}

/// An event for the consumer, in the order the changes happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteEvent {
    /// A session reached Established.
    PeerUp {
        /// The peer's configured address.
        peer: IpAddr,
        /// What was negotiated.
        session: SessionInfo,
    },
    /// An established session ended. `stale` routes are kept under graceful restart (the
    /// others have been withdrawn with their own events before this one).
    PeerDown {
        /// The peer's configured address.
        peer: IpAddr,
        /// Why.
        reason: DownReason,
        /// Routes kept as stale.
        stale: usize,
    },
    /// A route is new or replaces the one with the same (peer, RD, prefix).
    Announce {
        /// The peer's configured address.
        peer: IpAddr,
        /// The route.
        route: Route,
    },
    /// The route with this (peer, RD, prefix) is gone.
    Withdraw {
        /// The peer's configured address.
        peer: IpAddr,
        /// Route distinguisher.
        rd: RouteDistinguisher,
        /// Prefix.
        prefix: VpnPrefix,
    },
    /// The peer finished its initial announcement of `family` (RFC 4724 End-of-RIB); any stale
    /// route of that family not re-announced has been withdrawn before this event.
    EndOfRib {
        /// The peer's configured address.
        peer: IpAddr,
        /// The family.
        family: VpnFamily,
    },
}
