//! `brasa-python`: the tokio shells of brasa's Python component (SR OS python-policies, the
//! Nokia SR OS Python cache document).
//!
//! * [`cache_service::CacheService`] owns every python-policy cache ([`brasa_cache::CacheSet`])
//!   at run time: it restores persistent caches from their journals, appends every change to
//!   them, reclaims expired entries, replicates caches to their multi-chassis peer over gRPC
//!   (the transport of [`brasa_cache::sync`]) and answers the operator tools (dump, clear, set-lifetime).
//! * [`worker::PythonPolicies`] is the [`brasa_aaa_net::HookProcessor`] of the RADIUS
//!   service: the engine parks a packet at a hook point bound to a script, the worker runs the
//!   script on its own thread and hands the packet back, so RADIUS I/O never waits for Python.
//!
//! The protocol logic lives in the sans-IO cores (`brasa-cache`, `brasa-script`,
//! `brasa-aaa::Engine`); this crate only moves data between them, the disk, the network and
//! threads.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod cache_service;
mod sync;
mod util;
pub mod worker;
/// Milliseconds since the Unix epoch now: the time base of cache lifetimes and versions.
pub fn wall_clock_ms() -> brasa_cache::Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
