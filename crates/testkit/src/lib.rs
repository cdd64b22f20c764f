//! `brasa-testkit`: fixtures shared by the crates' tests (a dev-dependency, never part of the
//! binary).
//!
//! * [`netns`]: real network namespaces, created with a unique name and deleted on drop, so that
//!   a failing test leaves nothing behind.
//! * [`vlan_shim`]: a VLAN tagger for test hosts on kernels without the 802.1Q module.
//! * [`postgres`]: a throw-away PostgreSQL instance (Debian's `initdb` + `pg_ctl`) in a
//!   temporary directory, on a free 127.0.0.1 port, stopped when dropped.
//! * [`radclient`]: FreeRADIUS's `radclient` run with a request on stdin, as a real peer.
//! * [`cpu`]: the process's CPU time, for benches that print CPU per operation.
//! * [`capture`]: tcpdump as an independent decoder, returned once it listens.

pub mod capture;
pub mod cpu;
pub mod netns;
pub mod postgres;
pub mod radclient;
pub mod vlan_shim;
