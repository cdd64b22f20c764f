//! brasa's userspace data plane.
//!
//! * [`wire`]: zero-copy views of the packet formats it reads and writes.
//! * [`packet`], [`pipeline`]: reusable buffers with headroom, batches, and the ordered stages
//!   every batch runs through, with per-port counters and drops by reason.
//! * [`stages`], [`cafe`]: link-layer classification, the stateless CAFE (intercept, forward,
//!   decapsulate) and the IP handoff to the kernel.
//! * [`pcap`]: pcap files for tests and benchmarks.
//! * [`sap`], [`service`], [`fdb`]: SR OS-like SAPs on access ports, Epipe (SAP↔SAP, SAP↔GRE),
//!   VPLS bridging with its MAC table, IES/VPRN SAPs left to the kernel, capture SAPs.
//! * [`acl`], [`policer`]: the classifier and the three-colour markers the service filters
//!   and the PCC rules use; [`arena`]: the huge-page memory their per-owner arrays live in.
//! * [`pcc`]: PCC-rule enforcement per subscriber (lookup by address, classification by
//!   precedence per direction, drop, trTCM rate limits, DSCP remark, counters).
//!
//! The cores here never open sockets, read clocks or spawn threads: the caller passes `now` and
//! owns the I/O (the `io` module holds the AF_XDP, AF_PACKET, TUN and TAP shells and the worker
//! threads, one pipeline each).
#![warn(missing_docs)]

pub mod acl;
pub mod agent;
pub mod arena;
pub mod build;
pub mod cafe;
pub mod control;
mod cow;
pub mod fdb;
pub mod flow;
#[cfg(target_os = "linux")]
pub mod io;
pub mod packet;
pub mod pcap;
pub mod pcc;
pub mod pipeline;
pub mod policer;
pub mod sap;
pub mod service;
pub mod stages;
pub mod wire;
