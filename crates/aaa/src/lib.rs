//! brasa's RADIUS server/proxy engine.
//!
//! The engine is split the way quinn splits QUIC: [`Engine`] is a deterministic, sans-IO state
//! machine that takes datagrams and the current time and returns datagrams to send
//! ([`Output`]), while [`shell`] owns the UDP sockets, the clock and the accounting files. All
//! protocol decisions (client authentication, duplicate detection, upstream selection, identifier
//! allocation, retransmission and failover, dead-server detection, CoA/Disconnect relay, policy
//! hooks) live in the engine, so they are tested without a network.
//!
//! Direction names follow the router's view (seed 000): `egress` is towards the AAA server,
//! `ingress` is from it.
#![warn(missing_docs)]

pub mod client;
pub mod clients;
pub mod config;
mod dedup;
pub mod engine;
pub mod local;
pub mod policy;
mod sessions;
pub mod shell;
pub mod stats;
mod udp;

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
