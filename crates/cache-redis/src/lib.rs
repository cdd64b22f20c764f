//! `brasa-cache-redis`: python-policy caches shared through Redis, so that several brasa
//! RADIUS nodes behind one address see the same entries (an Access-Accept saved by node A,
//! the Interim-Update answered by node B), with the `alc.cache` semantics of the Nokia SR OS
//! Python cache document: lifetimes, `entry-size`, `max-entries`, `max-entry-lifetime`,
//! `shutdown`, and the dump / set-lifetime / clear tools, which see every node's entries.
//!
//! * [`RedisCaches`] holds the policies whose cache is in Redis and this node's shared
//!   connection ([`RedisTarget`]: standalone, Sentinel or Cluster).
//! * [`RedisCaches::policy`] gives the Python worker a [`PolicyHandle`]: blocking calls on a
//!   connection of the worker's own (driven on the worker's thread, so a call costs no thread
//!   hand-off; the shared connection serves the operator tools and the sweep), each bounded by
//!   a deadline (the smaller of the configured call timeout and what is left of
//!   the script's time limit). A call that fails or runs out of time returns
//!   [`CacheError::Backend`], which fails the script run: its packet gets the script's
//!   `action-on-fail`, and the worker never waits longer than the run may last.
//! * [`layout`] is the data layout and the Lua scripts that make each save (size, count,
//!   write) atomic across nodes.
//!
//! This is a shell crate (tokio, sockets); the limits are decided by the scripts inside Redis.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod layout;
mod store;
mod target;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use brasa_cache::{CacheConfig, CacheError, RefusalReason};
use redis::{AsyncCommands, RedisError, Script, ScriptInvocation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::layout::{PolicyKeys, SaveReply, Scripts};
use crate::store::Store;
pub use crate::target::{redacted, Credentials, RedisTarget, TargetError};

/// How often index members of expired entries are removed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Dump pages: index members per `ZSCAN` step, values fetched per pipeline.
const DUMP_PAGE: usize = 512;

/// Where the caches live and how long a call may take.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// The deployment.
    pub target: RedisTarget,
    /// Prefix of every key (the policy's hash tag follows).
    pub key_prefix: String,
    /// Longest a script's cache call may wait for Redis (the script's remaining time limit
    /// bounds it too).
    pub call_timeout: Duration,
    /// Longest an operator tool's call may wait.
    pub tool_timeout: Duration,
    /// Longest a connection attempt may take.
    pub connect_timeout: Duration,
}

impl RedisSettings {
    /// Default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "brasa:pc:";
}

/// One python-policy whose cache is in Redis.
#[derive(Debug, Clone)]
pub struct RedisPolicySpec {
    /// The python-policy.
    pub policy: String,
    /// Its limits. `persistence`, `mcs_peer` and `minimum_lifetimes` do not apply (Redis
    /// persists and replicates itself) and are ignored.
    pub config: CacheConfig,
}

/// Why an operator request on a Redis-backed cache failed.
#[derive(Debug, Error)]
pub enum RedisCacheError {
    /// No python-policy of that name has its cache in Redis.
    #[error("python-policy {0:?} has no Redis-backed cache")]
    NoCache(String),
    /// The cache refused the operation, or Redis failed ([`CacheError::Backend`]).
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The Redis client could not be built.
    #[error("cannot use Redis at {target}: {source}")]
    Client {
        /// The target (no password).
        target: String,
        /// Why.
        #[source]
        source: RedisError,
    },
}

/// One live entry for the dump tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisEntry {
    /// Entry key.
    pub key: Vec<u8>,
    /// Entry value.
    pub value: Vec<u8>,
    /// Milliseconds left.
    pub remaining_ms: u64,
}

#[derive(Default)]
struct Counters {
    saves: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    clears: AtomicU64,
    lifetime_changes: AtomicU64,
    refused: [AtomicU64; RefusalReason::ALL.len()],
    backend_failures: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Policy {
    config: CacheConfig,
    keys: PolicyKeys,
    /// This node's counts (the entries are shared; the traffic is per node).
    counters: Counters,
}

impl Policy {
    fn refuse(&self, err: CacheError) -> CacheError {
        if let Some(reason) = err.refusal_reason() {
            let index = RefusalReason::ALL
                .iter()
                .position(|r| *r == reason)
                .unwrap_or(0);
            bump(&self.counters.refused[index]);
        }
        err
    }

    fn lifetime_ms(&self, secs: u64) -> u64 {
        let max = u64::try_from(self.config.max_entry_lifetime.as_millis()).unwrap_or(u64::MAX);
        secs.saturating_mul(1000).min(max)
    }
}

/// Counters of one Redis-backed cache on this node, and its shared entry count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedisCacheStats {
    /// The python-policy.
    pub policy: String,
    /// Live entries in Redis (all nodes'); `None` when Redis did not answer.
    pub entries: Option<u64>,
    /// Successful saves by this node.
    pub saves: u64,
    /// Retrieves that found an entry.
    pub hits: u64,
    /// Retrieves that found none.
    pub misses: u64,
    /// Entries cleared.
    pub clears: u64,
    /// Successful lifetime changes.
    pub lifetime_changes: u64,
    /// Refused saves by reason (`global_memory_exceeded` is Redis's `maxmemory`).
    pub refused: BTreeMap<RefusalReason, u64>,
    /// Calls that failed because Redis failed or did not answer in time.
    pub backend_failures: u64,
    /// `shutdown` configured.
    pub shutdown: bool,
}

/// The Redis connection and every Redis-backed cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedisCachesStats {
    /// The target, passwords hidden.
    pub target: String,
    /// Whether this node is connected now.
    pub connected: bool,
    /// Why not, when it is not.
    pub last_error: Option<String>,
    /// Per cache, by policy name.
    pub caches: Vec<RedisCacheStats>,
}

/// Every python-policy cache kept in Redis, and this node's connection to it.
pub struct RedisCaches {
    store: Arc<Store>,
    scripts: Scripts,
    policies: BTreeMap<String, Policy>,
    settings: RedisSettings,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The Python workers' own connections, between script runs.
    workers: Mutex<Vec<WorkerConn>>,
}

impl RedisCaches {
    /// Starts connecting to Redis and the sweep of expired index members. Must be called
    /// inside a tokio runtime, whose tasks then carry the shared connection (operator tools,
    /// sweep). Redis need not be up: until
    /// it is, calls fail with [`CacheError::Backend`].
    pub fn start(
        settings: RedisSettings,
        policies: Vec<RedisPolicySpec>,
    ) -> Result<Arc<RedisCaches>, RedisCacheError> {
        let (store, connector) =
            Store::start(&settings.target, settings.connect_timeout).map_err(|source| {
                RedisCacheError::Client {
                    target: settings.target.to_string(),
                    source,
                }
            })?;
        let policies = policies
            .into_iter()
            .map(|spec| {
                let policy = Policy {
                    keys: PolicyKeys::new(&settings.key_prefix, &spec.policy),
                    config: spec.config,
                    counters: Counters::default(),
                };
                (spec.policy, policy)
            })
            .collect();
        let caches = Arc::new_cyclic(|weak: &std::sync::Weak<RedisCaches>| {
            let weak = weak.clone();
            let sweeper = tokio::spawn(async move {
                let mut tick = tokio::time::interval(SWEEP_INTERVAL);
                loop {
                    tick.tick().await;
                    let Some(caches) = weak.upgrade() else { return };
                    caches.sweep().await;
                }
            });
            RedisCaches {
                store,
                scripts: Scripts::new(),
                policies,
                settings,
                tasks: vec![connector, sweeper],
                workers: Mutex::new(Vec::new()),
            }
        });
        Ok(caches)
    }

    /// Whether this node is connected to Redis now.
    pub fn connected(&self) -> bool {
        self.store.connected()
    }

    /// Whether `policy`'s cache is in Redis.
    pub fn has_cache(&self, policy: &str) -> bool {
        self.policies.contains_key(policy)
    }

    /// The cache of `policy` for one script run that must end by `deadline`. Its calls block
    /// the calling thread, which must not be inside a tokio runtime: they run the worker's
    /// own connection on a single-threaded runtime of their own.
    pub fn policy<'a>(&'a self, policy: &str, deadline: Instant) -> Option<PolicyHandle<'a>> {
        let policy = self.policies.get(policy)?;
        Some(PolicyHandle {
            caches: self,
            policy,
            deadline,
            worker: self.take_worker_conn(),
        })
    }

    /// Runs `call` on the runtime until it completes or `timeout` passes; a failure of
    /// Redis, or no answer in time, is [`CacheError::Backend`].
    async fn bounded<T>(
        &self,
        policy: &Policy,
        timeout: Duration,
        call: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, CacheError> {
        let result = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(err)) if err.code() == Some("OOM") => {
                // Redis's `maxmemory` is the global bound of the shared caches.
                return Err(policy.refuse(CacheError::GlobalMemoryExceeded {
                    needed: 0,
                    available: 0,
                }));
            }
            Ok(Err(err)) => {
                self.store.failed(&err);
                format!("Redis at {}: {err}", self.store_target())
            }
            Err(_) => format!(
                "Redis at {} did not answer within {timeout:?}",
                self.store_target()
            ),
        };
        bump(&policy.counters.backend_failures);
        Err(CacheError::Backend { reason: result })
    }

    fn store_target(&self) -> String {
        self.settings.target.to_string()
    }

    fn conn(&self, policy: &Policy) -> Result<store::Conn, CacheError> {
        self.store.conn().map_err(|reason| {
            bump(&policy.counters.backend_failures);
            CacheError::Backend { reason }
        })
    }

    async fn save(
        &self,
        mut conn: store::Conn,
        policy: &Policy,
        timeout: Duration,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), CacheError> {
        if policy.config.shutdown {
            return Err(policy.refuse(CacheError::CacheShutdown));
        }
        let lifetime = policy.lifetime_ms(u64::MAX);
        let mut call = entry_call(&self.scripts.save, policy, key);
        call.arg(value)
            .arg(policy.config.entry_size)
            .arg(policy.config.max_entries)
            .arg(lifetime);
        let reply: Vec<i64> = self
            .bounded(policy, timeout, call.invoke_async(&mut conn))
            .await?;
        match SaveReply::decode(&reply) {
            Some(SaveReply::Saved) => {
                bump(&policy.counters.saves);
                Ok(())
            }
            Some(SaveReply::TooLarge(size)) => Err(policy.refuse(CacheError::EntryTooLarge {
                size,
                limit: policy.config.entry_size,
            })),
            Some(SaveReply::Full) => Err(policy.refuse(CacheError::TooManyEntries {
                limit: policy.config.max_entries,
            })),
            None => {
                bump(&policy.counters.backend_failures);
                Err(CacheError::Backend {
                    reason: format!("unexpected reply {reply:?} from the save script"),
                })
            }
        }
    }

    async fn retrieve(
        &self,
        mut conn: store::Conn,
        policy: &Policy,
        timeout: Duration,
        key: &[u8],
    ) -> Result<Vec<u8>, CacheError> {
        if policy.config.shutdown {
            bump(&policy.counters.misses);
            return Err(CacheError::NotFound);
        }
        let entry = policy.keys.entry(key);
        let value: Option<Vec<u8>> = self
            .bounded(policy, timeout, conn.get(entry.as_slice()))
            .await?;
        match value {
            Some(value) => {
                bump(&policy.counters.hits);
                Ok(value)
            }
            None => {
                bump(&policy.counters.misses);
                Err(CacheError::NotFound)
            }
        }
    }

    async fn clear(
        &self,
        mut conn: store::Conn,
        policy: &Policy,
        timeout: Duration,
        key: &[u8],
    ) -> Result<(), CacheError> {
        let call = entry_call(&self.scripts.clear, policy, key);
        let removed: i64 = self
            .bounded(policy, timeout, call.invoke_async(&mut conn))
            .await?;
        if removed == 0 {
            return Err(CacheError::NotFound);
        }
        bump(&policy.counters.clears);
        Ok(())
    }

    async fn get_lifetime(
        &self,
        mut conn: store::Conn,
        policy: &Policy,
        timeout: Duration,
        key: &[u8],
    ) -> Result<u64, CacheError> {
        if policy.config.shutdown {
            return Err(CacheError::NotFound);
        }
        let entry = policy.keys.entry(key);
        let pttl: i64 = self
            .bounded(policy, timeout, conn.pttl(entry.as_slice()))
            .await?;
        match pttl {
            // No such key.
            -2 => Err(CacheError::NotFound),
            // A key without expiry was not written by brasa: it lives as long as allowed.
            -1 => Ok(policy.lifetime_ms(u64::MAX) / 1000),
            ms => Ok(u64::try_from(ms).unwrap_or(0) / 1000),
        }
    }

    async fn set_lifetime(
        &self,
        mut conn: store::Conn,
        policy: &Policy,
        timeout: Duration,
        key: &[u8],
        secs: u64,
    ) -> Result<u64, CacheError> {
        if policy.config.shutdown {
            return Err(policy.refuse(CacheError::CacheShutdown));
        }
        let ms = policy.lifetime_ms(secs);
        let mut call = entry_call(&self.scripts.set_lifetime, policy, key);
        call.arg(ms);
        let set: i64 = self
            .bounded(policy, timeout, call.invoke_async(&mut conn))
            .await?;
        if set == 0 {
            return Err(CacheError::NotFound);
        }
        bump(&policy.counters.lifetime_changes);
        Ok(ms / 1000)
    }

    fn operator_policy(&self, policy: &str) -> Result<&Policy, RedisCacheError> {
        self.policies
            .get(policy)
            .ok_or_else(|| RedisCacheError::NoCache(policy.to_owned()))
    }

    /// Live entries of `policy`'s cache from every node, sorted by key (`tools dump python
    /// python-policy NAME cache`). Entries saved or expiring meanwhile may or may not appear.
    pub async fn dump(&self, policy: &str) -> Result<Vec<RedisEntry>, RedisCacheError> {
        let p = self.operator_policy(policy)?;
        let timeout = self.settings.tool_timeout;
        let mut conn = self.conn(p)?;
        let mut members: Vec<Vec<u8>> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<Vec<u8>>) = self
                .bounded(
                    p,
                    timeout,
                    redis::cmd("ZSCAN")
                        .arg(p.keys.index())
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(DUMP_PAGE)
                        .query_async::<(u64, Vec<Vec<u8>>)>(&mut conn),
                )
                .await?;
            // ZSCAN pairs each member with its score.
            members.extend(page.into_iter().step_by(2));
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        members.sort_unstable();
        members.dedup();
        let mut entries = Vec::with_capacity(members.len());
        for page in members.chunks(DUMP_PAGE) {
            let mut pipe = redis::pipe();
            for key in page {
                let entry = p.keys.entry(key);
                pipe.get(entry.as_slice()).pttl(entry.as_slice());
            }
            let replies: Vec<(Option<Vec<u8>>, i64)> = self
                .bounded(p, timeout, pipe.query_async(&mut conn))
                .await?;
            entries.extend(page.iter().zip(replies).filter_map(|(key, (value, pttl))| {
                Some(RedisEntry {
                    key: key.clone(),
                    value: value?,
                    remaining_ms: u64::try_from(pttl).ok()?,
                })
            }));
        }
        Ok(entries)
    }

    /// Removes one entry for every node (`clear python python-policy NAME cache …`).
    pub async fn clear_entry(&self, policy: &str, key: &[u8]) -> Result<(), RedisCacheError> {
        let p = self.operator_policy(policy)?;
        let conn = self.conn(p)?;
        Ok(self.clear(conn, p, self.settings.tool_timeout, key).await?)
    }

    /// Sets the remaining lifetime of one entry, capped by `max-entry-lifetime` (`tools
    /// perform python-policy NAME cache … set-lifetime N`); returns the lifetime applied.
    pub async fn set_entry_lifetime(
        &self,
        policy: &str,
        key: &[u8],
        seconds: u64,
    ) -> Result<u64, RedisCacheError> {
        let p = self.operator_policy(policy)?;
        let conn = self.conn(p)?;
        Ok(self
            .set_lifetime(conn, p, self.settings.tool_timeout, key, seconds)
            .await?)
    }

    /// This node's counters and the shared entry counts.
    pub async fn stats(&self) -> RedisCachesStats {
        let mut caches = Vec::with_capacity(self.policies.len());
        for (name, policy) in &self.policies {
            let entries = match self.conn(policy) {
                Ok(mut conn) => self
                    .bounded(
                        policy,
                        self.settings.tool_timeout,
                        self.scripts
                            .count
                            .key(policy.keys.index())
                            .invoke_async::<u64>(&mut conn),
                    )
                    .await
                    .ok(),
                Err(_) => None,
            };
            let c = &policy.counters;
            let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
            caches.push(RedisCacheStats {
                policy: name.clone(),
                entries,
                saves: load(&c.saves),
                hits: load(&c.hits),
                misses: load(&c.misses),
                clears: load(&c.clears),
                lifetime_changes: load(&c.lifetime_changes),
                refused: RefusalReason::ALL
                    .iter()
                    .zip(&c.refused)
                    .map(|(reason, count)| (*reason, load(count)))
                    .collect(),
                backend_failures: load(&c.backend_failures),
                shutdown: policy.config.shutdown,
            });
        }
        RedisCachesStats {
            target: self.store_target(),
            connected: self.store.connected(),
            last_error: self.store.last_error(),
            caches,
        }
    }

    /// Removes index members of expired entries of every policy.
    async fn sweep(&self) {
        for (name, policy) in &self.policies {
            let Ok(mut conn) = self.store.conn() else {
                return;
            };
            let swept = tokio::time::timeout(
                self.settings.tool_timeout,
                self.scripts
                    .sweep
                    .key(policy.keys.index())
                    .invoke_async::<u64>(&mut conn),
            )
            .await;
            match swept {
                Ok(Ok(n)) if n > 0 => {
                    tracing::debug!(policy = %name, swept = n, "expired Redis cache index members removed")
                }
                Ok(Err(err)) => self.store.failed(&err),
                _ => {}
            }
        }
    }
}

/// A call of one of the entry scripts: KEYS = the policy's index and `key`'s entry, ARGV
/// starting with `key`.
fn entry_call<'s>(script: &'s Script, policy: &Policy, key: &[u8]) -> ScriptInvocation<'s> {
    let mut call = script.key(policy.keys.index());
    call.key(policy.keys.entry(key)).arg(key);
    call
}

/// A Python worker's own connection, driven on the worker's thread by a single-threaded
/// runtime: a call then costs the worker a socket write and a read, where a call through the
/// shared connection hops to a runtime thread and back (two thread wake-ups, which made up most
/// of a call's CPU). Kept in a pool between script runs.
struct WorkerConn {
    runtime: tokio::runtime::Runtime,
    conn: Option<store::Conn>,
}

impl WorkerConn {
    fn new() -> Result<WorkerConn, String> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|runtime| WorkerConn {
                runtime,
                conn: None,
            })
            .map_err(|err| format!("cannot start a Redis runtime for the Python worker: {err}"))
    }
}

impl RedisCaches {
    fn take_worker_conn(&self) -> Result<WorkerConn, String> {
        let pooled = self
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        pooled.map_or_else(WorkerConn::new, Ok)
    }
}

impl Drop for RedisCaches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // The caches may be dropped inside the daemon's runtime, where dropping a runtime
        // would panic: the workers' runtimes are shut down without waiting.
        let workers = std::mem::take(
            self.workers
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for worker in workers {
            worker.runtime.shutdown_background();
        }
    }
}

/// One policy's Redis-backed cache for one script run: blocking calls bounded by the run's
/// deadline. Every method maps to one `alc.cache` function; see
/// `brasa_script::ScriptCache`.
pub struct PolicyHandle<'a> {
    caches: &'a RedisCaches,
    policy: &'a Policy,
    deadline: Instant,
    /// The run's connection (taken from the pool, given back on drop), or why there is none.
    worker: Result<WorkerConn, String>,
}

impl PolicyHandle<'_> {
    /// The timeout of the next call: the call timeout, or what is left until the deadline.
    fn timeout(&self) -> Result<Duration, CacheError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bump(&self.policy.counters.backend_failures);
            return Err(CacheError::Backend {
                reason: "no time left in the script's time limit for a Redis call".into(),
            });
        }
        Ok(left.min(self.caches.settings.call_timeout))
    }

    /// Runs one call on the worker's own connection, connecting it first if needed. While
    /// the shared connection is down the call fails at once, as every call did before the
    /// workers had connections of their own: a script never waits for Redis to come back.
    fn call<'h, T, F>(
        &'h mut self,
        call: impl FnOnce(&'h RedisCaches, store::Conn, &'h Policy, Duration) -> F,
    ) -> Result<T, CacheError>
    where
        F: Future<Output = Result<T, CacheError>>,
    {
        let timeout = self.timeout()?;
        let (caches, policy) = (self.caches, self.policy);
        let backend = |reason: String| {
            bump(&policy.counters.backend_failures);
            CacheError::Backend { reason }
        };
        let worker = self
            .worker
            .as_mut()
            .map_err(|reason| backend(reason.clone()))?;
        let conn = match &worker.conn {
            Some(conn) => conn.clone(),
            None => {
                caches.conn(policy)?;
                let conn = worker
                    .runtime
                    .block_on(caches.store.connect_own(timeout))
                    .map_err(backend)?;
                worker.conn = Some(conn.clone());
                conn
            }
        };
        let result = worker.runtime.block_on(call(caches, conn, policy, timeout));
        if matches!(result, Err(CacheError::Backend { .. })) {
            // A timeout or a broken connection: the next call starts a fresh one.
            worker.conn = None;
        }
        result
    }

    /// `cache.save(value, key)`.
    pub fn save(&mut self, key: &[u8], value: &[u8]) -> Result<(), CacheError> {
        self.call(|caches, conn, policy, timeout| caches.save(conn, policy, timeout, key, value))
    }

    /// `cache.retrieve(key)`.
    pub fn retrieve(&mut self, key: &[u8]) -> Result<Vec<u8>, CacheError> {
        self.call(|caches, conn, policy, timeout| caches.retrieve(conn, policy, timeout, key))
    }

    /// `cache.clear(key)`.
    pub fn clear(&mut self, key: &[u8]) -> Result<(), CacheError> {
        self.call(|caches, conn, policy, timeout| caches.clear(conn, policy, timeout, key))
    }

    /// `cache.get_lifetime(key)`.
    pub fn get_lifetime(&mut self, key: &[u8]) -> Result<u64, CacheError> {
        self.call(|caches, conn, policy, timeout| caches.get_lifetime(conn, policy, timeout, key))
    }

    /// `cache.set_lifetime(key, secs)`: returns the lifetime applied.
    pub fn set_lifetime(&mut self, key: &[u8], secs: u64) -> Result<u64, CacheError> {
        self.call(|caches, conn, policy, timeout| {
            caches.set_lifetime(conn, policy, timeout, key, secs)
        })
    }
}

impl Drop for PolicyHandle<'_> {
    fn drop(&mut self) {
        let worker = std::mem::replace(&mut self.worker, Err(String::new()));
        if let Ok(worker) = worker {
            self.caches
                .workers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(worker);
        }
    }
}
