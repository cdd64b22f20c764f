//! The shell of [`brasa_services`]: what touches the kernel.
//!
//! * [`kernel`]: the L3 kernel plan executed over rtnetlink, step by step, rolled back when a
//!   step fails, and the snapshot of brasa-created links and routes that a restart reconciles.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod kernel;

pub use kernel::{Kernel, KernelError, PlanError};
