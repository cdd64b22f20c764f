//! COMET coupled approach (CURLING, seed 004 §6): stateful content-aware forwarding.
//!
//! Four entities exchange the UDP messages of [`wire`]: the [`cafe::Cafe`] forwards content
//! chunks along the content states its CRME installs; the [`crme::Crme`] resolves Consume
//! requests CRME to CRME towards the content source, configures the CAFEs on the path, keeps
//! the ActiveSessions table and optimises routes; the [`server::ContentServer`] sends content
//! and the [`client::ContentClient`] reassembles and checks it. Those four are sans-IO cores:
//! they take `now` and received datagrams, and return what to send. [`shell`] runs them as
//! real UDP endpoints with batched I/O, and [`scenario`] drives a whole multi-domain emulation
//! from one scenario file in the document's `+time ON_ROUTER …` style.
#![warn(missing_docs)]

pub mod cafe;
pub mod client;
pub mod crme;
pub mod scenario;
pub mod server;
pub mod shell;
pub mod udp;
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
