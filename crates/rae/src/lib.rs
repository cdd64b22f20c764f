//! The Routing Awareness Entity (COMET D4.3 §4): QoS path-vector routing between COMET domains,
//! as a sans-IO core.
//!
//! Each RAE learns content delivery paths towards other domains' prefixes, per class of
//! service, with aggregated QoS metrics (delay, loss, bandwidth); ranks them with a
//! reference-point multi-criteria decision process; keeps and advertises the preferred ones; and
//! reports them to its domain's CME.
//!
//! Nothing here opens a socket, reads a clock or spawns a task: every entry point takes `now`
//! and returns what to send. The tokio daemon that owns the sockets and timers is
//! `brasa-rae-net`.
//!
//! - [`config`]: the Appendix A `ConfigurationMessage`, validated into [`config::RaeConfig`].
//! - [`metric`]: QoS metrics and their composition along a path.
//! - [`decision`]: the achievement function ranking candidate paths.
//! - [`rib`]: the routing information base (prefix × class → ranked candidates).
//! - [`engine`]: [`engine::Rae`], the routing logic: updates in, decisions, batched exports out.
//! - [`wire`]: the 5-byte-header framing and message codec shared by inter-RAE and CME links.
//! - [`session`]: one inter-RAE session's state machine (open/confirm, keepalive, hold timer).
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
pub mod decision;
pub mod engine;
pub mod metric;
pub mod rib;
pub mod session;
pub mod wire;

pub use brasa_proto::brasa::rae as proto;
