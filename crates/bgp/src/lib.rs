//! Sans-IO BGP-4 speaker core for the Subscriber Manager's BGP LEG (Cisco SCMS SM, "Information
//! About Handling VPNs"): it learns MPLS/VPN downstream labels and customer routes from iBGP
//! sessions with route reflectors or PEs.
//!
//! * [`wire`] — checked views and emitters for every message, with RFC 7606 error handling;
//!   errors are [`ProtocolError`]s that name their NOTIFICATION (code, subcode, data);
//! * [`Peer`] — one peer's RFC 4271 session state machine (timers, capability negotiation)
//!   and its VPN-IPv4/VPN-IPv6 Adj-RIB-In with graceful restart as a receiver (RFC 4724);
//! * [`RouteEvent`] — what the consumer gets: sessions up and down, routes announced and
//!   withdrawn (with RD, labels, route targets, communities, next hop), End-of-RIB.
//!
//! Nothing here opens sockets, reads clocks or spawns threads: the caller passes `now` and
//! moves the bytes (`brasa-bgp-net` is the tokio shell).
//!
//! ```
//! use brasa_bgp::{ConnectMode, LocalConfig, Opened, Peer, PeerConfig, RouteEvent};
//! use std::time::Instant;
//!
//! let local = LocalConfig { asn: 65000, router_id: "192.0.2.1".parse()? };
//! let config = PeerConfig::new("127.0.0.2".parse()?, 65000, ConnectMode::Passive);
//! let mut peer = Peer::new(local, config)?;
//! let now = Instant::now();
//! peer.start(now);
//! peer.connection_opened(now)?; // the shell accepted the peer's TCP connection
//! let open = peer.poll_transmit().expect("our OPEN");
//! assert_eq!(open[18], 1);
//! // ... feed the peer's bytes with `handle_input`, drain `poll_event` for RouteEvents.
//! assert!(peer.poll_event().is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
pub mod event;
pub mod peer;
pub mod rib;
pub mod types;
pub mod wire;

pub use error::{CeaseReason, Notification, ProtocolError};
pub use event::{DownReason, Route, RouteAttrs, RouteEvent, SessionInfo};
pub use peer::{
    Action, ConfigError, ConnectMode, LocalConfig, Opened, Peer, PeerConfig, PeerStats,
    RequestError, State,
};
pub use rib::AdjRibIn;
pub use types::{
    AfiSafi, Community, ExtendedCommunity, FamilySet, Label, LabelStack, LargeCommunity,
    RouteDistinguisher, RouteTarget, VpnFamily, VpnPrefix,
};
