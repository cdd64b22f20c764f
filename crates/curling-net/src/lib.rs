//! The tokio shell of CURLING (COMET D4.3 §6): runs the sans-IO cores of `brasa-curling` as
//! real UDP endpoints and executes scenario files.
//!
//! [`shell::Entity`] runs one core (CAFE, CRME, content server or client) on one task and one
//! socket with batched I/O (`brasa-udp`: `recvmmsg`/`sendmmsg`, UDP GSO/GRO), saves what clients
//! complete and turns core events into the document's log lines; [`runner`] starts the entities
//! of a parsed scenario and drives its publish, consume, display and end lines at their times.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod runner;
pub mod shell;
