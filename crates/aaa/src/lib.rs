//! brasa's RADIUS server/proxy engine, sans-IO.
//!
//! The engine is split the way quinn splits QUIC: [`Engine`] is a deterministic state machine
//! that takes datagrams and the current time and returns datagrams to send ([`Output`]); its
//! tokio shell (sockets, clock, accounting files, hook processors) is the `brasa-aaa-net` crate.
//! All protocol decisions (client authentication, duplicate detection, upstream selection,
//! identifier allocation, retransmission and failover, dead-server detection, CoA/Disconnect
//! relay, policy hooks) live here, so they are tested without a network. [`client::Exchange`]
//! is the client side of one request (signing, retransmission, answer verification), shared by
//! the proxy and `brasa radius send`.
//!
//! Direction names follow the router's view (seed 000): `egress` is towards the AAA server,
//! `ingress` is from it.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod client;
pub mod clients;
pub mod config;
mod dedup;
pub mod engine;
pub mod local;
pub mod policy;
mod sessions;
pub mod stats;

pub use config::{
    ClientConfig, EngineConfig, ExternalHooks, Handler, LoadBalance, LocalDatabase, LocalUser,
    PoolConfig, ServerConfig, UpstreamConfig, DEFAULT_EXTERNAL_HOOK_TIMEOUT,
};
pub use engine::{
    Engine, HookRequest, HookResult, HookTicket, ListenerId, ListenerKind, Output, SocketRef,
    Transmit, UpstreamKey,
};
pub use policy::{Direction, HookContext, Policy, RewritePolicy, RewriteRule, Verdict};
pub use stats::{ClientStats, ServerStats, StatsSnapshot, UpstreamStats};
