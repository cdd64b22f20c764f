use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a cache operation was refused. A refused operation changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CacheError {
    /// Key plus value is longer than the policy's `entry-size`.
    #[error("entry of {size} bytes exceeds entry-size {limit}")]
    EntryTooLarge {
        /// Bytes of key plus value.
        size: usize,
        /// The configured `entry-size`.
        limit: usize,
    },
    /// The cache already holds `max-entries` entries.
    #[error("cache is full ({limit} entries)")]
    TooManyEntries {
        /// The configured `max-entries`.
        limit: usize,
    },
    /// Saving would take all caches together over the global memory bound.
    #[error("global cache memory bound exceeded: need {needed} bytes, {available} available")]
    GlobalMemoryExceeded {
        /// Bytes this save would add (key, value and bookkeeping).
        needed: usize,
        /// Bytes left under the global bound.
        available: usize,
    },
    /// The policy's cache is shut down.
    #[error("cache is shut down")]
    CacheShutdown,
    /// No live entry has this key.
    #[error("no such entry")]
    NotFound,
}

impl CacheError {
    /// The counter bucket of a refused save, or `None` for [`CacheError::NotFound`].
    pub fn refusal_reason(&self) -> Option<RefusalReason> {
        match self {
            CacheError::EntryTooLarge { .. } => Some(RefusalReason::EntryTooLarge),
            CacheError::TooManyEntries { .. } => Some(RefusalReason::TooManyEntries),
            CacheError::GlobalMemoryExceeded { .. } => Some(RefusalReason::GlobalMemoryExceeded),
            CacheError::CacheShutdown => Some(RefusalReason::CacheShutdown),
            CacheError::NotFound => None,
        }
    }
}

/// The reasons a save can be refused, used to index the refusal counters (snake_case in JSON,
/// as [`RefusalReason::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// See [`CacheError::EntryTooLarge`].
    EntryTooLarge,
    /// See [`CacheError::TooManyEntries`].
    TooManyEntries,
    /// See [`CacheError::GlobalMemoryExceeded`].
    GlobalMemoryExceeded,
    /// See [`CacheError::CacheShutdown`].
    CacheShutdown,
}

impl RefusalReason {
    /// Every reason, in counter order.
    pub const ALL: [RefusalReason; 4] = [
        RefusalReason::EntryTooLarge,
        RefusalReason::TooManyEntries,
        RefusalReason::GlobalMemoryExceeded,
        RefusalReason::CacheShutdown,
    ];

    /// A stable snake_case label for metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::EntryTooLarge => "entry_too_large",
            RefusalReason::TooManyEntries => "too_many_entries",
            RefusalReason::GlobalMemoryExceeded => "global_memory_exceeded",
            RefusalReason::CacheShutdown => "cache_shutdown",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}
