//! How `alc.cache` reaches a python-policy's cache.

use brasa_cache::{CacheError, Millis, PolicyCache};

/// The cache of the python-policy a script runs for, as `alc.cache` sees it.
///
/// Every method maps to one `alc.cache` function. A miss is [`CacheError::NotFound`]; a refused
/// save is the refusal (`EntryTooLarge`, `TooManyEntries`, `GlobalMemoryExceeded`,
/// `CacheShutdown`). The script sees each as a Python exception (see [`crate`] for the
/// hierarchy). Operations take effect at once and are not undone when the run later fails,
/// as in SR OS.
///
/// [`PolicyCacheAt`] implements it over a [`PolicyCache`]; a daemon implements it over its own
/// shared cache set.
pub trait ScriptCache {
    /// `cache.save(value, key)`: stores `value` under `key` with a fresh lifetime.
    fn save(&mut self, key: &[u8], value: &[u8]) -> Result<(), CacheError>;
    /// `cache.retrieve(key)`: the value stored under `key`.
    fn retrieve(&mut self, key: &[u8]) -> Result<Vec<u8>, CacheError>;
    /// `cache.clear(key)`: removes the entry.
    fn clear(&mut self, key: &[u8]) -> Result<(), CacheError>;
    /// `cache.get_lifetime(key)`: remaining lifetime in whole seconds.
    fn get_lifetime(&mut self, key: &[u8]) -> Result<u64, CacheError>;
    /// `cache.set_lifetime(key, secs)`: sets the remaining lifetime; returns the lifetime
    /// applied (capped by the policy's `max-entry-lifetime`).
    fn set_lifetime(&mut self, key: &[u8], secs: u64) -> Result<u64, CacheError>;
}

/// A [`PolicyCache`] seen at one instant: every operation of a run uses the same `now`.
pub struct PolicyCacheAt<'a> {
    /// The policy's cache.
    pub cache: &'a mut PolicyCache,
    /// Wall-clock milliseconds since the Unix epoch.
    pub now: Millis,
}

impl<'a> PolicyCacheAt<'a> {
    /// `cache` as of `now`.
    pub fn new(cache: &'a mut PolicyCache, now: Millis) -> Self {
        PolicyCacheAt { cache, now }
    }
}

impl ScriptCache for PolicyCacheAt<'_> {
    fn save(&mut self, key: &[u8], value: &[u8]) -> Result<(), CacheError> {
        self.cache.save(key, value, self.now)
    }

    fn retrieve(&mut self, key: &[u8]) -> Result<Vec<u8>, CacheError> {
        self.cache
            .retrieve(key, self.now)
            .map(<[u8]>::to_vec)
            .ok_or(CacheError::NotFound)
    }

    fn clear(&mut self, key: &[u8]) -> Result<(), CacheError> {
        if self.cache.clear(key, self.now) {
            Ok(())
        } else {
            Err(CacheError::NotFound)
        }
    }

    fn get_lifetime(&mut self, key: &[u8]) -> Result<u64, CacheError> {
        self.cache
            .get_lifetime(key, self.now)
            .ok_or(CacheError::NotFound)
    }

    fn set_lifetime(&mut self, key: &[u8], secs: u64) -> Result<u64, CacheError> {
        self.cache.set_lifetime(key, secs, self.now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brasa_cache::{CacheConfig, MemoryBudget};
    use std::sync::Arc;

    #[test]
    fn policy_cache_at_maps_misses_to_not_found() {
        let mut cache = PolicyCache::new(
            CacheConfig::default(),
            1,
            Arc::new(MemoryBudget::new(1 << 20)),
        );
        let mut at = PolicyCacheAt::new(&mut cache, 1_000_000);
        assert_eq!(at.retrieve(b"k"), Err(CacheError::NotFound));
        assert_eq!(at.clear(b"k"), Err(CacheError::NotFound));
        assert_eq!(at.get_lifetime(b"k"), Err(CacheError::NotFound));
        assert_eq!(at.set_lifetime(b"k", 5), Err(CacheError::NotFound));
        at.save(b"k", b"v").unwrap();
        assert_eq!(at.retrieve(b"k").unwrap(), b"v");
        assert_eq!(at.get_lifetime(b"k").unwrap(), 3600);
        assert_eq!(at.set_lifetime(b"k", 900).unwrap(), 900);
        assert_eq!(at.get_lifetime(b"k").unwrap(), 900);
        at.clear(b"k").unwrap();
        assert_eq!(at.retrieve(b"k"), Err(CacheError::NotFound));
    }
}
