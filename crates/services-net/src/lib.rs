//! The shell of [`brasa_services`]: what touches the kernel.
//!
//! * [`kernel`]: the L3 kernel plan executed over rtnetlink, step by step, rolled back when a
//!   step fails; TAPs through the data plane ([`kernel::TapHost`]).
//! * [`compile`]: the configuration compiled into the data plane's service tables, only what
//!   changed applied, all or nothing.
//! * [`journal`]: the manager's journal file, replayed at start and compacted as it grows.
//! * [`manager`]: the running configuration; a transaction runs validation, kernel plan,
//!   compilation and installation, all or nothing, serialised.
//! * [`namespace`]: the anonymous network namespaces of VPRNs, alive only while held.

pub mod compile;
pub mod journal;
pub mod kernel;
pub mod manager;
pub mod namespace;

pub use kernel::{Kernel, KernelError, PlanError, TapHost};
pub use manager::{
    ApplyError, ApplySummary, CompactError, Compaction, Durability, ServiceManager, ServicePlane,
    StageTicket, StagedInstallError,
};
