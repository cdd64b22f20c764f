//! The run-time home of every python-policy cache: restore at start-up, journal every change,
//! reclaim expired entries, feed the multi-chassis peer links, answer the operator tools.
//!
//! Scripts, tools and peer events all mutate the one [`CacheSet`] behind a mutex (held for a
//! single cache operation, never across I/O). Each mutation is recorded by the core as a
//! `Change`; a dedicated *drain* thread, woken by [`CacheService::changed`] or by its tick,
//! takes the recorded changes, appends them to the journals of persistent caches and queues the
//! peer's share on the [`crate::sync`] links, then writes the journals outside the lock. So a
//! script never waits for a disk or a socket, and the order of changes per cache is kept.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self as std_mpsc, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use brasa_cache::journal::{Journal, JournalError};
use brasa_cache::sync::{SyncConfigError, SyncKey, SyncStatus, SyncedCache};
use brasa_cache::{
    CacheConfig, CacheError, CacheEvent, CacheSet, ConfigError, Millis, Origin, RefusalReason,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::sync::{Links, PeerAddress};
use crate::util::{lock, Wake};
use crate::wall_clock_ms;

/// How often the drain thread runs without being woken (expiry, journal sync).
const TICK: Duration = Duration::from_millis(500);

/// One python-policy's cache (`cache create`) with the run-time details the core leaves out.
#[derive(Debug, Clone)]
pub struct PolicyCacheSpec {
    /// The python-policy name.
    pub policy: String,
    /// Limits, lifetimes, persistence, peer and shutdown.
    pub config: CacheConfig,
    /// Where the multi-chassis peer accepts sync streams; required when `config.mcs_peer` is set
    /// (its address is the peer's, the port is the peer's sync listener).
    pub peer: Option<SocketAddr>,
}

/// How this node takes part in multi-chassis sync.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// Where it accepts its peers' streams; its own streams leave from this address too, and
    /// the peers admit it by it.
    pub listen: SocketAddr,
    /// The key every peer shares with it (SR OS multi-chassis peer `authentication-key`).
    pub key: SyncKey,
}

/// Everything the service needs.
#[derive(Debug, Clone)]
pub struct CacheServiceConfig {
    /// This node's id in write versions; must differ from the peer's.
    pub node_id: u32,
    /// Bound on the memory of all caches together.
    pub global_memory: usize,
    /// Folder of the journals of persistent caches (SR OS `python-policy-cache location`).
    pub location: PathBuf,
    /// Multi-chassis sync; required by a cache with an `mcs-peer`.
    pub sync: Option<SyncSettings>,
    /// How often journals are synced to disk (they are written to the OS after every batch).
    pub sync_interval: Duration,
    /// The caches.
    pub caches: Vec<PolicyCacheSpec>,
}

/// Why the service refused to start or an operator request.
#[derive(Debug, Error)]
pub enum CacheServiceError {
    /// No python-policy of that name has a cache.
    #[error("python-policy {0:?} has no cache")]
    NoCache(String),
    /// The cache refused the operation (not found, limits).
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A cache configuration is out of range.
    #[error("cache of python-policy {policy:?}: {source}")]
    Config {
        /// The policy.
        policy: String,
        /// What is wrong.
        #[source]
        source: ConfigError,
    },
    /// A cache has an `mcs-peer` but no peer sync address.
    #[error("cache of python-policy {0:?}: mcs-peer needs a peer sync address")]
    PeerAddress(String),
    /// A cache has an `mcs-peer` but the node takes no part in sync.
    #[error("cache of python-policy {0:?}: mcs-peer needs the node's sync listener and key")]
    NoSync(String),
    /// Two caches name the same peer address with different sync ports.
    #[error("caches name mcs-peer {first} and {second}: one peer address, two sync ports")]
    PeerPorts {
        /// One of them.
        first: SocketAddr,
        /// The other.
        second: SocketAddr,
    },
    /// The multi-chassis sync configuration cannot work.
    #[error(transparent)]
    Sync(#[from] SyncConfigError),
    /// A journal could not be opened or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The location folder could not be created.
    #[error("cannot create the cache location {path}: {source}")]
    Location {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The peer sync listener could not be bound.
    #[error("cannot listen for cache peers on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One live entry for the dump tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryDump {
    /// Entry key.
    pub key: Vec<u8>,
    /// Entry value.
    pub value: Vec<u8>,
    /// Milliseconds left.
    pub remaining_ms: u64,
    /// Remaining lifetime as SR OS prints it (`0d 00:12:08`).
    pub time_left: String,
}

/// Counters and state of one cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheStats {
    /// The python-policy.
    pub policy: String,
    /// Entries held.
    pub entries: usize,
    /// Bytes charged to the global budget.
    pub bytes: usize,
    /// Successful saves.
    pub saves: u64,
    /// Retrieves that found an entry.
    pub hits: u64,
    /// Retrieves that found none.
    pub misses: u64,
    /// Entries reclaimed at the end of their lifetime.
    pub expirations: u64,
    /// Entries cleared.
    pub clears: u64,
    /// Successful lifetime changes.
    pub lifetime_changes: u64,
    /// Refused saves by reason (`entry_too_large`, `too_many_entries`, … in JSON).
    pub refused: BTreeMap<RefusalReason, u64>,
    /// Events from the peer applied, ignored as older, refused by a limit.
    pub peer_applied: u64,
    /// See `peer_applied`.
    pub peer_stale: u64,
    /// See `peer_applied`.
    pub peer_refused: u64,
    /// Whether the cache is journalled.
    pub persistence: bool,
    /// Journal size in bytes (0 without persistence).
    pub journal_bytes: u64,
    /// Journal records.
    pub journal_records: u64,
    /// Where the multi-chassis peer accepts sync streams, if the cache has one.
    pub mcs_peer: Option<SocketAddr>,
    /// The sync tag, if any.
    pub sync_tag: Option<String>,
    /// `shutdown` configured.
    pub shutdown: bool,
}

/// Everything the service counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheServiceStats {
    /// This node's id.
    pub node_id: u32,
    /// The global memory bound.
    pub global_memory_limit: usize,
    /// Bytes charged by all caches.
    pub global_memory_used: usize,
    /// Per cache, by policy name.
    pub caches: Vec<CacheStats>,
    /// Multi-chassis sync: every peer link in both directions.
    pub sync: Option<SyncStatus>,
}

struct PolicyRuntime {
    persistence: bool,
    persistence_min_ms: u64,
    /// Where the multi-chassis peer is dialled, for a replicated cache.
    peer: Option<SocketAddr>,
}

struct Shared {
    node_id: u32,
    set: Arc<Mutex<CacheSet>>,
    policies: BTreeMap<String, PolicyRuntime>,
    links: Option<Arc<Links>>,
    journals: Mutex<HashMap<String, Journal>>,
    /// Whether any cache records its changes (persistence or a peer): only then does a change
    /// give the drain thread work that cannot wait for its tick.
    records_changes: bool,
    wake: Wake,
    stopping: AtomicBool,
}

impl Shared {
    fn caches(&self) -> MutexGuard<'_, CacheSet> {
        lock(&self.set)
    }
}

/// The running cache service. See the module documentation.
pub struct CacheService {
    shared: Arc<Shared>,
    drain: Mutex<Option<JoinHandle<()>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    sync_address: Option<SocketAddr>,
}

impl CacheService {
    /// Creates the caches, restores persistent ones from their journals (cutting torn tails),
    /// binds the peer listener and starts the drain thread and the peer links. Must be called
    /// inside a tokio runtime.
    pub async fn start(config: CacheServiceConfig) -> Result<CacheService, CacheServiceError> {
        let now = wall_clock_ms();
        let mut set = CacheSet::new(config.global_memory, config.node_id);
        let mut policies = BTreeMap::new();
        let mut peers: Vec<PeerAddress> = Vec::new();
        let mut journals = HashMap::new();
        let persistent = config.caches.iter().any(|c| c.config.persistence);
        if persistent {
            std::fs::create_dir_all(&config.location).map_err(|source| {
                CacheServiceError::Location {
                    path: config.location.clone(),
                    source,
                }
            })?;
        }
        for spec in &config.caches {
            let cache = set
                .configure(&spec.policy, spec.config.clone())
                .map_err(|source| CacheServiceError::Config {
                    policy: spec.policy.clone(),
                    source,
                })?;
            let peer = match &spec.config.mcs_peer {
                None => None,
                Some(mcs) => {
                    let address = spec
                        .peer
                        .ok_or_else(|| CacheServiceError::PeerAddress(spec.policy.clone()))?;
                    if config.sync.is_none() {
                        return Err(CacheServiceError::NoSync(spec.policy.clone()));
                    }
                    let shared = SyncedCache {
                        tag: mcs.sync_tag.clone(),
                        policy: spec.policy.clone(),
                    };
                    match peers.iter_mut().find(|p| p.dial.ip() == address.ip()) {
                        Some(peer) if peer.dial != address => {
                            return Err(CacheServiceError::PeerPorts {
                                first: peer.dial,
                                second: address,
                            })
                        }
                        Some(peer) => peer.caches.push(shared),
                        None => peers.push(PeerAddress {
                            dial: address,
                            caches: vec![shared],
                        }),
                    }
                    Some(address)
                }
            };
            cache.record_changes(spec.config.persistence || peer.is_some());
            if spec.config.persistence {
                let path = config
                    .location
                    .join(format!("{}.journal", file_name(&spec.policy)));
                let (mut journal, recovery) = Journal::open(&path)?;
                if recovery.cut_bytes > 0 {
                    tracing::warn!(policy = %spec.policy, path = %path.display(), cut = recovery.cut_bytes,
                        "cache journal had a torn or corrupt tail; cut at the last good record");
                }
                if let Some(aside) = &recovery.set_aside {
                    tracing::warn!(policy = %spec.policy, moved_to = %aside.display(),
                        "cache journal was unreadable; set aside and started empty");
                }
                let restored = cache.restore(recovery.events, now);
                tracing::info!(policy = %spec.policy, restored = restored.restored,
                    dropped_short_lived = restored.dropped_short_lived, refused = restored.refused,
                    "python-policy cache restored");
                // Start from a compact journal: one record per live entry.
                journal.compact(&cache.persistence_snapshot(now))?;
                journals.insert(spec.policy.clone(), journal);
            }
            policies.insert(
                spec.policy.clone(),
                PolicyRuntime {
                    persistence: spec.config.persistence,
                    persistence_min_ms: duration_ms(spec.config.minimum_lifetimes.persistence),
                    peer,
                },
            );
        }
        let (wake, woken) = std_mpsc::sync_channel(1);
        let wake = Wake(wake);
        let set = Arc::new(Mutex::new(set));
        let links = match &config.sync {
            None => None,
            Some(sync) => Some(Arc::new(Links::new(
                config.node_id,
                sync.key.clone(),
                sync.listen.ip(),
                peers,
                set.clone(),
                wake.clone(),
            )?)),
        };
        let mut tasks = Vec::new();
        let mut sync_address = None;
        if let (Some(links), Some(sync)) = (&links, &config.sync) {
            let address = sync.listen;
            let (bound, link_tasks) = links
                .start(address)
                .await
                .map_err(|source| CacheServiceError::Listen { address, source })?;
            tracing::info!(address = %bound, "python-policy cache sync listening");
            sync_address = Some(bound);
            tasks = link_tasks;
        }
        let records_changes = policies
            .values()
            .any(|runtime| runtime.persistence || runtime.peer.is_some());
        let shared = Arc::new(Shared {
            node_id: config.node_id,
            set,
            policies,
            links,
            journals: Mutex::new(journals),
            records_changes,
            wake,
            stopping: AtomicBool::new(false),
        });
        let drain_shared = shared.clone();
        let sync_interval = config.sync_interval;
        let drain = std::thread::Builder::new()
            .name("brasa-cache-drain".into())
            .spawn(move || drain_loop(&drain_shared, &woken, sync_interval))
            .map_err(|source| CacheServiceError::Location {
                path: config.location.clone(),
                source,
            })?;
        Ok(CacheService {
            shared,
            drain: Mutex::new(Some(drain)),
            tasks,
            sync_address,
        })
    }

    /// The address the peer listener is bound to (useful with port 0).
    pub fn sync_address(&self) -> Option<SocketAddr> {
        self.sync_address
    }

    /// The caches, for scripts: lock for one operation at a time, then call
    /// [`CacheService::changed`] after mutating.
    pub fn caches(&self) -> &Mutex<CacheSet> {
        &self.shared.set
    }

    /// Whether `policy` has a cache.
    pub fn has_cache(&self, policy: &str) -> bool {
        self.shared.policies.contains_key(policy)
    }

    /// Tells the drain thread that caches changed (journal and peer get the changes promptly).
    /// Cheap and non-blocking; call it after every batch of mutations. Caches that neither
    /// persist nor replicate leave their expired entries to the drain's tick, so for them this
    /// wakes nothing (a wake-up per script run would cost more than the run's cache work).
    pub fn changed(&self) {
        if self.shared.records_changes {
            self.shared.wake.wake();
        }
    }

    /// Live entries of `policy`'s cache, sorted by key (`tools dump python python-policy NAME cache`).
    pub fn dump(&self, policy: &str) -> Result<Vec<EntryDump>, CacheServiceError> {
        let now = wall_clock_ms();
        let set = self.shared.caches();
        let cache = set
            .get(policy)
            .ok_or_else(|| CacheServiceError::NoCache(policy.to_owned()))?;
        Ok(cache
            .entries(now)
            .into_iter()
            .map(|e| EntryDump {
                key: e.key.to_vec(),
                value: e.value.to_vec(),
                remaining_ms: e.remaining_ms,
                time_left: e.time_left(),
            })
            .collect())
    }

    /// Removes one entry (`clear python python-policy NAME cache …`); `NotFound` if absent.
    pub fn clear(&self, policy: &str, key: &[u8]) -> Result<(), CacheServiceError> {
        let now = wall_clock_ms();
        let removed = {
            let mut set = self.shared.caches();
            let cache = set
                .get_mut(policy)
                .ok_or_else(|| CacheServiceError::NoCache(policy.to_owned()))?;
            cache.clear(key, now)
        };
        self.changed();
        if removed {
            Ok(())
        } else {
            Err(CacheError::NotFound.into())
        }
    }

    /// Sets the remaining lifetime of one entry (`tools perform python-policy NAME cache …
    /// set-lifetime N`), capped by `max-entry-lifetime`; returns the lifetime applied.
    pub fn set_lifetime(
        &self,
        policy: &str,
        key: &[u8],
        seconds: u64,
    ) -> Result<u64, CacheServiceError> {
        let now = wall_clock_ms();
        let applied = {
            let mut set = self.shared.caches();
            let cache = set
                .get_mut(policy)
                .ok_or_else(|| CacheServiceError::NoCache(policy.to_owned()))?;
            cache.set_lifetime(key, seconds, now)?
        };
        self.changed();
        Ok(applied)
    }

    /// Counters of every cache and peer link.
    pub fn stats(&self) -> CacheServiceStats {
        let journals: HashMap<String, (u64, u64)> = lock(&self.shared.journals)
            .iter()
            .map(|(policy, j)| (policy.clone(), (j.len_bytes(), j.records())))
            .collect();
        let set = self.shared.caches();
        let caches = set
            .iter()
            .map(|(policy, cache)| {
                let counters = cache.counters();
                let config = cache.config();
                let (journal_bytes, journal_records) =
                    journals.get(policy).copied().unwrap_or_default();
                let runtime = self.shared.policies.get(policy);
                CacheStats {
                    policy: policy.to_owned(),
                    entries: counters.entries,
                    bytes: counters.bytes,
                    saves: counters.saves,
                    hits: counters.hits,
                    misses: counters.misses,
                    expirations: counters.expirations,
                    clears: counters.clears,
                    lifetime_changes: counters.lifetime_changes,
                    refused: RefusalReason::ALL
                        .iter()
                        .map(|r| (*r, counters.refused(*r)))
                        .collect(),
                    peer_applied: counters.peer_applied,
                    peer_stale: counters.peer_stale,
                    peer_refused: counters.peer_refused,
                    persistence: config.persistence,
                    journal_bytes,
                    journal_records,
                    mcs_peer: runtime.and_then(|r| r.peer),
                    sync_tag: config.mcs_peer.as_ref().map(|p| p.sync_tag.clone()),
                    shutdown: config.shutdown,
                }
            })
            .collect();
        let budget = set.budget();
        CacheServiceStats {
            node_id: self.shared.node_id,
            global_memory_limit: budget.limit(),
            global_memory_used: budget.used(),
            caches,
            sync: self.shared.links.as_ref().map(|links| links.status()),
        }
    }

    /// Writes what is pending to the journals, syncs them and stops every task and thread.
    pub fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(links) = &self.shared.links {
            links.shutdown();
        }
        self.shared.wake.wake();
        if let Some(drain) = lock(&self.drain).take() {
            let _ = drain.join();
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for CacheService {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn drain_loop(shared: &Shared, woken: &std_mpsc::Receiver<()>, sync_interval: Duration) {
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    loop {
        let stopping = shared.stopping.load(Ordering::SeqCst);
        let wait = if stopping {
            Ok(())
        } else {
            woken.recv_timeout(TICK)
        };
        if let Err(RecvTimeoutError::Disconnected) = wait {
            return;
        }
        unsynced |= drain_once(shared);
        if unsynced && (stopping || last_sync.elapsed() >= sync_interval) {
            for (policy, journal) in lock(&shared.journals).iter_mut() {
                if let Err(err) = journal.sync() {
                    tracing::error!(%policy, %err, "cannot sync the cache journal");
                }
            }
            last_sync = Instant::now();
            unsynced = false;
        }
        if stopping {
            return;
        }
    }
}

/// Takes the recorded changes of every cache, journals them and queues them for the peer;
/// reclaims expired entries and compacts journals that grew. Returns whether journals were
/// written.
fn drain_once(shared: &Shared) -> bool {
    let now = wall_clock_ms();
    let mut journal_events: Vec<(String, Vec<CacheEvent>)> = Vec::new();
    let mut peer_events: Vec<(&str, Vec<CacheEvent>)> = Vec::new();
    let mut compactions: Vec<(String, Vec<CacheEvent>)> = Vec::new();
    {
        let mut set = shared.caches();
        set.expire(now);
        for (policy, runtime) in &shared.policies {
            let Some(cache) = set.get_mut(policy) else {
                continue;
            };
            let changes = cache.drain_changes();
            if changes.is_empty() {
                continue;
            }
            if runtime.persistence {
                let events = changes
                    .iter()
                    .map(|change| persistable(&change.event, now, runtime.persistence_min_ms))
                    .collect();
                journal_events.push((policy.clone(), events));
            }
            if runtime.peer.is_some() {
                let events: Vec<CacheEvent> = changes
                    .iter()
                    .filter(|change| change.origin == Origin::Local)
                    .filter_map(|change| cache.peer_event(change, now))
                    .collect();
                if !events.is_empty() {
                    peer_events.push((policy, events));
                }
            }
        }
        let journals = lock(&shared.journals);
        for (policy, journal) in journals.iter() {
            if journal.len_bytes() < (1 << 20) {
                continue;
            }
            if let Some(cache) = set.get(policy) {
                let live = cache.persistence_snapshot(now);
                if journal.should_compact(&live) {
                    compactions.push((policy.clone(), live));
                }
            }
        }
    }
    // The caches' lock is released: the links take the sync node's lock, which is taken
    // before the caches' everywhere else.
    if let Some(links) = &shared.links {
        for (policy, events) in peer_events {
            links.queue(now, policy, events);
        }
    }
    let mut wrote = false;
    let mut journals = lock(&shared.journals);
    for (policy, events) in journal_events {
        let Some(journal) = journals.get_mut(&policy) else {
            continue;
        };
        for event in &events {
            journal.append(event);
        }
        if let Err(err) = journal.flush() {
            tracing::error!(%policy, %err, "cannot append to the cache journal");
        }
        wrote = true;
    }
    for (policy, live) in compactions {
        if let Some(journal) = journals.get_mut(&policy) {
            match journal.compact(&live) {
                Ok(()) => tracing::debug!(%policy, entries = live.len(), "cache journal compacted"),
                Err(err) => tracing::error!(%policy, %err, "cannot compact the cache journal"),
            }
        }
    }
    wrote
}

/// The journal record for `event`: a write that leaves less than the persistence minimum is
/// journalled as a clear with the same version, so an older persisted value of the key cannot
/// come back after a restart.
fn persistable(event: &CacheEvent, now: Millis, min_ms: u64) -> CacheEvent {
    if event.outlives(now, min_ms) {
        event.clone()
    } else {
        CacheEvent::Clear {
            key: event.key().to_vec(),
            version: event.version(),
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A file name for a policy's journal. Policy names may contain anything printable: other
/// characters become `_`, and a hash of the real name keeps two such names apart.
fn file_name(policy: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if !policy.is_empty() && policy.chars().all(plain) {
        return policy.to_owned();
    }
    let hash = fnv1a(policy.as_bytes());
    let sanitized: String = policy
        .chars()
        .map(|c| if plain(c) { c } else { '_' })
        .collect();
    format!("{sanitized}-{hash:08x}")
}

/// The default node id of a node whose peers reach it at `sync_listen`: peers listen on
/// different addresses, so a hash of the address tells them apart (never 0).
pub fn default_node_id(sync_listen: Option<SocketAddr>) -> u32 {
    sync_listen.map_or(1, |address| fnv1a(address.to_string().as_bytes()).max(1))
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}
