//! The tokio shell of brasa's RADIUS server/proxy: it owns what the sans-IO
//! [`brasa_aaa::Engine`] must not touch, the UDP sockets (through [`brasa_udp`]), the clock and
//! timers, the external hook processors and the accounting files.
//!
//! [`RadiusService::start_with_hooks`] binds every listener of an engine and runs it: one receive
//! task per socket feeding batches of datagrams to the engine (behind a mutex held only for the
//! engine call), a timer task sleeping until the engine's next deadline, and a task that hands
//! the answers of a [`HookProcessor`] back to the engine in batches.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod accounting;
mod hooks;
mod service;

pub use hooks::{HookCompletion, HookProcessor};
pub use service::{RadiusService, ShellError};
