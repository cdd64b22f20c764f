//! `brasa-testkit`: helpers shared by the crates' tests (a dev-dependency, never part of the
//! binary).
//!
//! * [`postgres`]: a throw-away PostgreSQL instance (Debian's `initdb` + `pg_ctl`) in a
//!   temporary directory, on a free 127.0.0.1 port, stopped when dropped.
#![forbid(unsafe_code)]

pub mod postgres;
