//! One module per top-level subcommand.

pub mod cafe;
pub mod curling;
pub mod dataplane;
pub mod dynsvc;
pub mod passwd;
pub mod pcc;
pub mod radius;
pub mod rae;
pub mod run;
pub mod service;
pub mod show;
pub mod sm;
pub mod subsvc;
pub mod tools;
