//! The shell of [`brasa_services`]: what touches the kernel.
//!
//! * [`kernel`]: the L3 kernel plan executed over rtnetlink, step by step, rolled back when a
//!   step fails; TAPs through the data plane ([`kernel::TapHost`]).
//! * [`namespace`]: the anonymous network namespaces of VPRNs, alive only while held.

pub mod kernel;
pub mod namespace;

pub use kernel::{Kernel, KernelError, PlanError, TapHost};
