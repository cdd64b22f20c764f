//! `brasa-sm`: the Subscriber Manager service (seed 003, Cisco SCMS SM).
//!
//! - LEG API ([`pb::subscriber_manager_server`]): login/logout, add/remove, properties, state,
//!   VPNs, queries and a bulk stream whose batches apply in order. Every accepted change is
//!   durable (group-committed through [`brasa_subscriber::SubscriberStore::apply_batch`])
//!   before it is answered or pushed.
//! - EP protocol ([`pb::enforcement_point_server`]): push mode (full sync of the domain, then
//!   every change, sequence numbers and cumulative acknowledgements), pull mode (lookups of
//!   unknown addresses, changes of pulled subscribers pushed), keep-alives, failure action,
//!   resync on reconnect, quarantine of EPs that cause back-pressure, cascade pairs.
//!
//! The protocol logic is sans-IO ([`core::SmCore`], [`ep::EpTable`]: `now` in, messages out);
//! [`service::SmService`] and [`grpc::SmServer`] are the tokio/tonic shell;
//! [`client::EpClient`] / [`client::EpReplica`] are the reference EP.
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod convert;
pub mod core;
pub mod ep;
pub mod grpc;
pub mod leg;
pub mod op;
pub mod service;

/// The generated protobuf messages and gRPC stubs (`crates/proto/proto/sm/sm.proto`).
pub use brasa_proto::brasa::sm as pb;

pub use client::{ClientError, ClientEvent, EpClient, EpClientOptions, EpReplica, ReplicaEvent};
pub use config::{EpConfig, EpMode, FailureAction, SmConfig};
pub use grpc::SmServer;
pub use leg::LegClient;
pub use op::{ErrorKind, Op, SmError};
pub use service::{Pending, ServiceStats, SmService, StartError};
