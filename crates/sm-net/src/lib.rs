//! `brasa-sm-net`: the Subscriber Manager's tokio shell over the sans-IO core `brasa-sm`.
//!
//! - [`service::SmService`]: the core behind a mutex, a store thread that group-commits every
//!   accepted change ([`brasa_subscriber::SubscriberStore::apply_batch`]) before it is answered
//!   or pushed, a timer task, a sender and a reader task per EP stream.
//! - [`grpc::SmServer`]: the tonic translation of the LEG API
//!   ([`pb::subscriber_manager_server`]) and the EP protocol ([`pb::enforcement_point_server`]).
//! - [`bgp::BgpLeg`]: the BGP LEG: the speaker of `brasa-bgp-net` and the task that applies its
//!   route events through the same durable path, with back-pressure down to the peers' TCP.
//! - [`client::EpClient`]: the reference enforcement point's connection, driving a
//!   [`brasa_sm::EpReplica`]; [`leg::LegClient`]: a small LEG client.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod bgp;
pub mod client;
pub mod grpc;
pub mod leg;
pub mod service;

/// The protobuf messages with the gRPC stubs (`crates/proto/proto/sm/sm.proto`).
pub use brasa_proto::brasa::sm as pb;

pub use bgp::BgpLeg;
pub use client::{ClientError, ClientEvent, EpClient, EpClientOptions};
pub use grpc::{status, SmServer};
pub use leg::LegClient;
pub use service::{Pending, ServiceStats, SmService, StartError};
