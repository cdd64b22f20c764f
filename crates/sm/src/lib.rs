//! `brasa-sm`: the Subscriber Manager's sans-IO core (seed 003, Cisco SCMS SM).
//!
//! - [`core::SmCore`]: the subscriber index and the EP sessions behind one API driven with `now`:
//!   operations go in ([`op::Op`], from LEG calls, operator commands, RADIUS events and EP
//!   state writes), change sets come out to be made durable, and only committed changes are
//!   queued for the EPs.
//! - [`ep::EpTable`]: the EP protocol, SM side: push mode (full sync of the domain, then every
//!   change, sequence numbers and cumulative acknowledgements), pull mode (lookups of unknown
//!   addresses, changes of pulled subscribers pushed), keep-alives, failure detection, resync,
//!   quarantine of EPs that cause back-pressure, cascade pairs.
//! - [`replica::EpReplica`]: the EP side: the reference enforcement point's table and link
//!   rules (acknowledgements, keep-alives, dead SM, failure action).
//! - [`bgp_leg::BgpLeg`]: the BGP LEG, SM side: the speaker's route events as changes to what
//!   the index learnt, End-of-RIB and restart-timer sweeps of the routes restored after a
//!   restart, per-peer counters.
//! - [`convert`]: protobuf messages (without gRPC) ↔ records and operations, every field of
//!   untrusted input checked; [`config::SmConfig`]: the resolved configuration.
//!
//! Nothing here opens a socket, reads a clock or starts a thread; `brasa-sm-net` is the tokio
//! shell (gRPC services, group-commit store thread, timers, the reference EP's connection).
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod bgp_leg;
pub mod config;
pub mod convert;
pub mod core;
pub mod ep;
pub mod lease;
pub mod op;
pub mod replica;
pub mod service_proto;

/// The generated protobuf messages (`crates/proto/proto/sm/sm.proto`), without the gRPC stubs.
pub use brasa_proto::brasa::sm as pb;

pub use config::{EpConfig, EpMode, FailureAction, SmConfig};
pub use op::{ErrorKind, Op, SmError};
pub use replica::{EpReplica, LinkOptions, LinkTimeout, ProtocolError, ReplicaEvent};
