//! COMET coupled approach (CURLING, COMET D4.3 §6): stateful content-aware forwarding, as
//! sans-IO cores.
//!
//! Four entities exchange the UDP messages of [`wire`]: the [`cafe::Cafe`] forwards content
//! chunks along the content states its CRME installs; the [`crme::Crme`] resolves Consume
//! requests CRME to CRME towards the content source, configures the CAFEs on the path, keeps
//! the ActiveSessions table and optimises routes; the [`server::ContentServer`] sends content
//! and the [`client::ContentClient`] reassembles and checks it. They take `now` and received
//! datagrams and return what to send; none opens a socket, reads a clock or spawns a task.
//! [`scenario`] parses the document's `+time ON_ROUTER …` scenario files and the entity
//! arguments, and [`naming`] maps its router names to loopback addresses. The tokio shell that
//! runs entities as real UDP endpoints, and the scenario runner, are `brasa-curling-net`.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod cafe;
pub mod client;
pub mod crme;
pub mod naming;
pub mod scenario;
pub mod server;
pub mod wire;

use std::net::SocketAddrV4;

/// A datagram a core wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub to: SocketAddrV4,
    /// The encoded message.
    pub payload: Vec<u8>,
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::net::{Ipv4Addr, SocketAddrV4};

    /// Router `a.b` at `port` in the emulation's loopback plan.
    pub fn ep(a: u8, b: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(127, 0, a, b), port)
    }
}
