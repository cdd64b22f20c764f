use std::net::IpAddr;
use std::time::Duration;

use thiserror::Error;

/// One python-policy's cache configuration (SR OS `config>python>py-policy>cache`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Maximum bytes of key plus value of one entry (`entry-size`).
    pub entry_size: usize,
    /// Maximum number of entries (`max-entries`).
    pub max_entries: usize,
    /// Lifetime of a newly saved entry and the cap of `set_lifetime` (`max-entry-lifetime`).
    pub max_entry_lifetime: Duration,
    /// Whether entries are journalled and survive a restart (`persistence`).
    pub persistence: bool,
    /// Entries living less than these are not synchronised / persisted (`minimum-lifetimes`).
    pub minimum_lifetimes: MinimumLifetimes,
    /// Multi-chassis synchronisation peer (`mcs-peer ADDRESS sync-tag TAG`).
    pub mcs_peer: Option<McsPeer>,
    /// Administratively down: saves are refused and lookups miss (`shutdown`).
    pub shutdown: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            entry_size: 1024,
            max_entries: 65_536,
            max_entry_lifetime: Duration::from_secs(3600),
            persistence: false,
            minimum_lifetimes: MinimumLifetimes::default(),
            mcs_peer: None,
            shutdown: false,
        }
    }
}

/// Minimum remaining lifetimes below which an entry is not replicated or persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MinimumLifetimes {
    /// Below this, an entry is not synchronised to the standby of this node.
    pub high_availability: Duration,
    /// Below this, an entry is not sent to the multi-chassis peer.
    pub multi_chassis_redundancy: Duration,
    /// Below this, an entry is not written to / restored from the journal.
    pub persistence: Duration,
}

/// The multi-chassis synchronisation peer of a cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McsPeer {
    /// The peer's address.
    pub address: IpAddr,
    /// Both nodes pair caches carrying the same tag (at most [`McsPeer::MAX_SYNC_TAG`] bytes).
    pub sync_tag: String,
}

impl McsPeer {
    /// Longest allowed `sync-tag`, as in SR OS.
    pub const MAX_SYNC_TAG: usize = 32;
}

/// A configuration value outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// `entry-size` must be at least 1 and fit the journal's 32-bit lengths.
    #[error("entry-size must be between 1 and {max} bytes")]
    EntrySize {
        /// Largest allowed value.
        max: usize,
    },
    /// `max-entries` must be at least 1 and below 2^32.
    #[error("max-entries must be between 1 and {max}")]
    MaxEntries {
        /// Largest allowed value.
        max: usize,
    },
    /// `max-entry-lifetime` must be at least one second.
    #[error("max-entry-lifetime must be at least 1 second")]
    MaxEntryLifetime,
    /// `sync-tag` is empty or longer than 32 bytes.
    #[error("sync-tag must be 1 to 32 characters")]
    SyncTag,
}

impl CacheConfig {
    /// Largest accepted `entry-size` (16 MiB; also bounds a journal record).
    pub const MAX_ENTRY_SIZE: usize = 16 << 20;
    /// Largest accepted `max-entries` (slots are 32-bit indices).
    pub const MAX_ENTRIES: usize = (u32::MAX - 1) as usize;

    /// Checks every value is in range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.entry_size == 0 || self.entry_size > Self::MAX_ENTRY_SIZE {
            return Err(ConfigError::EntrySize {
                max: Self::MAX_ENTRY_SIZE,
            });
        }
        if self.max_entries == 0 || self.max_entries > Self::MAX_ENTRIES {
            return Err(ConfigError::MaxEntries {
                max: Self::MAX_ENTRIES,
            });
        }
        if self.max_entry_lifetime < Duration::from_secs(1) {
            return Err(ConfigError::MaxEntryLifetime);
        }
        if let Some(peer) = &self.mcs_peer {
            if peer.sync_tag.is_empty() || peer.sync_tag.len() > McsPeer::MAX_SYNC_TAG {
                return Err(ConfigError::SyncTag);
            }
        }
        Ok(())
    }

    pub(crate) fn max_lifetime_ms(&self) -> u64 {
        duration_ms(self.max_entry_lifetime)
    }
}

pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
