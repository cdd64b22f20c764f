//! `brasa-services`: the control half of brasa's service data plane — SAPs, Epipe / VPLS / IES /
//! VPRN services, filters and policers, as an SR OS service router has them on access ports
//! (Nokia SR OS services, filter and QoS guides; the dynamic data services of Nokia SR OS feed it
//! CLI snippets from operator scripts).
//!
//! Sans-IO: no sockets, threads, clocks or files. The pieces:
//! - [`id`]: SAP ids (`eth1:1214.101`), Linux port names, the SR OS → Linux [`PortMap`], the
//!   data plane's [`Ports`] with their encapsulations.
//! - [`model`]: services, SAPs, filters, QoS policies and policers.
//! - [`change`]: a typed [`Change`] per command; what both configuration forms produce.
//! - [`cli`]: the SR OS-like text form — [`cli::parse`] turns a snippet into changes with
//!   `line:col` errors, [`cli::export`] writes a whole configuration back.
//! - [`toml`]: the `[[service.*]]`, `[[filter.*]]`, `[[qos.*]]` form of the daemon config.
//! - [`config`]: the running [`ServiceConfig`] and its transactions: a batch of changes is
//!   validated completely and yields a [`Transaction`] (new config, [`Diff`], [`KernelPlan`]) or a
//!   [`TxnError`], with the running state untouched.
//! - [`kernel`]: the L3 plan (VRFs, VLAN links, addresses, routes), each step with its inverse,
//!   deterministic names, and the crash [`kernel::reconcile`] plan.
//! - [`alloc`]: free service and filter ids in a range (`dyn.select_free_id`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod alloc;
pub mod change;
pub mod cli;
pub mod config;
pub mod id;
pub mod kernel;
pub mod limits;
pub mod model;
pub mod toml;

pub use change::{Change, Edit, NodeOp, Origin, SapOp, ServiceOp};
pub use config::{
    Delta, Diff, Environment, ServiceConfig, StaleTransaction, Transaction, TxnError,
    ValidationError, Vrf,
};
pub use id::{Encapsulation, MacAddr, PortMap, PortName, Ports, SapId, SapTags, Tag};
pub use kernel::{KernelPlan, KernelStep};
