use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{CacheConfig, ConfigError, MemoryBudget, PolicyCache};

/// Default global bound on the memory of all caches together: 256 MiB.
pub const DEFAULT_GLOBAL_MEMORY: usize = 256 << 20;

/// Every python-policy's cache, sharing one [`MemoryBudget`].
pub struct CacheSet {
    budget: Arc<MemoryBudget>,
    node_id: u32,
    caches: BTreeMap<String, PolicyCache>,
}

impl CacheSet {
    /// An empty set bounded by `global_memory` bytes; local writes are versioned with `node_id`.
    pub fn new(global_memory: usize, node_id: u32) -> Self {
        CacheSet {
            budget: Arc::new(MemoryBudget::new(global_memory)),
            node_id,
            caches: BTreeMap::new(),
        }
    }

    /// The shared budget.
    pub fn budget(&self) -> &Arc<MemoryBudget> {
        &self.budget
    }

    /// Creates the cache of `policy` (`cache create`), or reconfigures it if it exists.
    pub fn configure(
        &mut self,
        policy: &str,
        config: CacheConfig,
    ) -> Result<&mut PolicyCache, ConfigError> {
        config.validate()?;
        let cache = self
            .caches
            .entry(policy.to_owned())
            .and_modify(|c| c.set_config(config.clone()))
            .or_insert_with(|| PolicyCache::new(config, self.node_id, Arc::clone(&self.budget)));
        Ok(cache)
    }

    /// Deletes the cache of `policy` (`no cache`), releasing its memory.
    pub fn remove(&mut self, policy: &str) -> Option<PolicyCache> {
        self.caches.remove(policy)
    }

    /// The cache of `policy`.
    pub fn get(&self, policy: &str) -> Option<&PolicyCache> {
        self.caches.get(policy)
    }

    /// The cache of `policy`, mutably.
    pub fn get_mut(&mut self, policy: &str) -> Option<&mut PolicyCache> {
        self.caches.get_mut(policy)
    }

    /// All caches by policy name, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PolicyCache)> {
        self.caches.iter().map(|(n, c)| (n.as_str(), c))
    }

    /// Reclaims expired entries of every cache; returns how many.
    pub fn expire(&mut self, now: crate::Millis) -> usize {
        self.caches.values_mut().map(|c| c.expire(now)).sum()
    }
}
