//! COMET decoupled approach (seed 004 §4): the Routing Awareness Entity.
//!
//! [`rae`] holds the sans-IO core (configuration, RIB, path construction, decision process,
//! sessions, wire format) and its tokio shell ([`rae::daemon`]).
#![warn(missing_docs)]

pub mod rae;
