//! `brasa-cache`: the per-python-policy key/value cache of the SR OS `alc.cache` API, as a
//! sans-IO core.
//!
//! * [`PolicyCache`] holds one policy's entries (byte-string keys and values, each with an
//!   absolute expiry), enforces the policy's [`CacheConfig`] limits and keeps [`CacheCounters`].
//! * [`CacheSet`] holds every policy's cache under one global [`MemoryBudget`] that no policy can
//!   exceed.
//! * Every mutation can be observed as a [`CacheEvent`] (the replication and journal record);
//!   [`PolicyCache::apply`] merges events from a peer or a journal with last-writer-wins on a
//!   [`Version`] `(timestamp, node_id)`.
//! * [`journal`] is the only module that touches the file system: an append-only,
//!   checksummed record log with compaction and torn-tail recovery.
//! * [`sync`] is the multi-chassis peer link (SR OS `mcs-peer … sync-tag`) as a state machine:
//!   shared-key handshake, tag agreement, resync, acknowledged live events; the shell only
//!   moves its messages.
//!
//! Time is never read here: every operation takes `now`, wall-clock milliseconds since the Unix
//! epoch, supplied by the caller. Expiry times are absolute in that same time base so that they
//! survive a restart (journal) and mean the same thing on a peer (replication).
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod budget;
mod config;
mod error;
mod event;
mod index;
pub mod journal;
mod policy;
mod prefetch;
mod set;
mod store;
pub mod sync;

pub use budget::MemoryBudget;
pub use config::{CacheConfig, ConfigError, McsPeer, MinimumLifetimes};
pub use error::{CacheError, RefusalReason};
pub use event::{CacheEvent, Change, DecodeError, Origin, Version};
pub use policy::{
    ApplyOutcome, CacheCounters, EntryView, PolicyCache, RestoreStats, INLINE_ENTRY_MAX,
    LARGE_ENTRY_OVERHEAD, PER_ENTRY_OVERHEAD,
};
pub use set::{CacheSet, DEFAULT_GLOBAL_MEMORY};

/// Milliseconds since the Unix epoch, supplied by the caller (never read inside this crate).
pub type Millis = u64;
