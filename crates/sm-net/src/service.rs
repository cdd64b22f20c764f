//! The tokio shell: one [`SmCore`] behind a mutex, a store thread that group-commits, a timer
//! task, and per-EP sender tasks.
//!
//! **Ordering and durability.** A caller applies its operations and hands the change sets to
//! the store thread *under the core lock*, so the store commits in exactly the order the index
//! changed. The store thread takes every job waiting when it becomes free (group commit: one
//! fsync for all of them), and only after the commit answers the callers and queues the changes
//! for the EPs. A store failure answers every pending caller with `Unavailable` and makes the
//! service refuse further changes, because the index now holds changes that are not durable.
//!
//! **Active/standby.** A service opened with [`SmService::open_standby`] refuses every change
//! and EP session until [`SmService::activate`] gives it an index of the database's records
//! (taken after this node won the lease); [`SmService::deactivate`] returns it to standby. Each activation
//! is a new *term*: a change applied in an earlier term and still queued is never committed in
//! a later one (its index is gone). A commit the store refuses as fenced wakes
//! [`SmService::fenced`], so that the node steps down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use brasa_bgp::RouteEvent;
use brasa_subscriber::{ChangeSet, Snapshot, StoreError, SubscriberIndex, SubscriberStore};
use tokio::sync::{oneshot, Notify};

use crate::pb;
use brasa_sm::config::SmConfig;
use brasa_sm::core::SmCore;
use brasa_sm::ep::{SessionId, Transmit};
use brasa_sm::op::{ErrorKind, Op, SmError};

/// Why the service did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is inconsistent.
    #[error("subscriber manager config: {0}")]
    Config(#[from] brasa_sm::config::ConfigError),
    /// The store could not be read.
    #[error("subscriber store: {0}")]
    Store(#[from] brasa_subscriber::StoreError),
    /// The stored records do not fit the configuration (e.g. a domain was removed).
    #[error("stored subscribers do not fit the configuration: {0}")]
    Restore(brasa_subscriber::IndexError),
    /// The index handed to [`SmService::activate`] was built for other domains or another name
    /// case than this service's.
    #[error(
        "the index handed over was built for another configuration ({index:?}, not {config:?})"
    )]
    ForeignIndex {
        /// What the index was built for.
        index: brasa_subscriber::IndexConfig,
        /// What the service has.
        config: brasa_subscriber::IndexConfig,
    },
    /// The gRPC socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start the store thread: {0}")]
    Thread(std::io::Error),
}

type Done = oneshot::Sender<Result<Vec<ChangeSet>, SmError>>;

enum StoreJob {
    Changes {
        changes: Vec<ChangeSet>,
        done: Option<Done>,
        /// The term the changes were applied in.
        term: u64,
    },
    /// The service the thread reports to (sent once, first, when the service exists).
    Attach(std::sync::Weak<Inner>),
    Stop,
}

/// Store and commit counters.
#[derive(Debug, Default)]
struct StoreCounters {
    commits: AtomicU64,
    change_sets: AtomicU64,
    commit_micros: AtomicU64,
    failures: AtomicU64,
}

/// A snapshot of the service counters (`/metrics`, `brasa sm show counts`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ServiceStats {
    /// Subscribers in the database.
    pub subscribers: usize,
    /// Per configured domain.
    pub domains: Vec<(String, usize)>,
    /// VPNs.
    pub vpns: usize,
    /// Routes the BGP LEG holds.
    #[serde(default)]
    pub learned_routes: usize,
    /// Connected EPs.
    pub connected_eps: usize,
    /// Operation counters.
    pub ops: brasa_sm::core::SmCounters,
    /// Store commits (each one fsync).
    pub commits: u64,
    /// Change sets made durable.
    pub committed_changes: u64,
    /// Total time spent committing, in microseconds.
    pub commit_micros: u64,
    /// Failed commits.
    pub store_failures: u64,
    /// Why the service refuses changes, if it does.
    pub failed: Option<String>,
}

struct Inner {
    config: SmConfig,
    core: Mutex<SmCore>,
    /// Incremented by every activation and step-down (see the module doc).
    term: AtomicU64,
    /// Woken when the store refuses a commit as fenced.
    fenced: Notify,
    /// A standby serves no LEG or EP traffic at all (`failed` says why).
    standby: std::sync::atomic::AtomicBool,
    store: Mutex<std::sync::mpsc::Sender<StoreJob>>,
    store_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    senders: Mutex<HashMap<SessionId, Arc<Notify>>>,
    failed: Mutex<Option<String>>,
    counters: StoreCounters,
    stop: tokio::sync::watch::Sender<bool>,
}

/// The running SM service (cheap to clone; every clone is the same service).
#[derive(Clone)]
pub struct SmService {
    inner: Arc<Inner>,
}

/// Operations applied to the index and on their way to the disk.
pub struct Pending {
    results: Vec<Result<Option<usize>, SmError>>,
    done: Option<oneshot::Receiver<Result<Vec<ChangeSet>, SmError>>>,
}

impl Pending {
    /// Waits until the accepted operations are durable; one result per submitted operation, in
    /// order. If the commit failed, every accepted operation reports `Unavailable`.
    pub async fn wait(self) -> Vec<Result<ChangeSet, SmError>> {
        let committed = match self.done {
            None => Ok(Vec::new()),
            Some(rx) => rx.await.unwrap_or_else(|_| {
                Err(SmError::new(
                    ErrorKind::Unavailable,
                    "the subscriber store stopped before the change was durable",
                ))
            }),
        };
        match committed {
            Ok(mut sets) => {
                let mut sets: Vec<Option<ChangeSet>> = sets.drain(..).map(Some).collect();
                self.results
                    .into_iter()
                    .map(|r| {
                        r.map(|slot| {
                            slot.and_then(|i| sets.get_mut(i).and_then(Option::take))
                                .unwrap_or_default()
                        })
                    })
                    .collect()
            }
            Err(e) => self
                .results
                .into_iter()
                .map(|r| r.and_then(|_| Err(e.clone())))
                .collect(),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SmService {
    /// Loads the store, rebuilds the index and starts the store thread and the timer task.
    /// Must be called inside a tokio runtime.
    pub fn open(
        config: SmConfig,
        store: Box<dyn SubscriberStore + Send>,
    ) -> Result<SmService, StartError> {
        Self::start(config, store, None)
    }

    /// Starts a standby: the store thread and the timer task run, the index is empty, and every
    /// change and EP session is refused with `why` (which should name the active node) until
    /// [`Self::activate`]. The store is not read.
    pub fn open_standby(
        config: SmConfig,
        store: Box<dyn SubscriberStore + Send>,
        why: String,
    ) -> Result<SmService, StartError> {
        Self::start(config, store, Some(why))
    }

    fn start(
        config: SmConfig,
        store: Box<dyn SubscriberStore + Send>,
        standby: Option<String>,
    ) -> Result<SmService, StartError> {
        config.validate()?;
        // The store is only ever touched by its own thread: a database client may block or
        // drive a runtime of its own, which an async worker must not do. The thread loads the
        // records first (an active node) and hands them back.
        let (tx, rx) = std::sync::mpsc::channel();
        let (loaded_tx, loaded_rx) = std::sync::mpsc::channel();
        let load = standby.is_none();
        let thread = std::thread::Builder::new()
            .name("sm-store".into())
            .spawn(move || {
                let mut store = store;
                let snapshot = if load {
                    store.load()
                } else {
                    Ok(Snapshot::default())
                };
                let ok = snapshot.is_ok();
                let _ = loaded_tx.send(snapshot);
                if ok {
                    store_thread(store, rx);
                }
            })
            .map_err(StartError::Thread)?;
        let snapshot = loaded_rx
            .recv()
            .map_err(|_| StartError::Thread(std::io::Error::other("the store thread died")))??;
        let started = Instant::now();
        let (subscribers, routes) = (snapshot.subscribers.len(), snapshot.routes.len());
        let index = snapshot
            .into_index(config.index.clone())
            .map_err(StartError::Restore)?;
        tracing::info!(
            subscribers,
            bgp_leg_routes = routes,
            ms = started.elapsed().as_millis() as u64,
            "subscriber database restored"
        );
        let (core, swept) = core_over(&config, index)?;
        let inner = Arc::new(Inner {
            config: config.clone(),
            core: Mutex::new(core),
            term: AtomicU64::new(0),
            fenced: Notify::new(),
            standby: std::sync::atomic::AtomicBool::new(standby.is_some()),
            store: Mutex::new(tx),
            store_thread: Mutex::new(Some(thread)),
            senders: Mutex::new(HashMap::new()),
            failed: Mutex::new(standby),
            counters: StoreCounters::default(),
            stop: tokio::sync::watch::channel(false).0,
        });
        let _ = lock(&inner.store).send(StoreJob::Attach(Arc::downgrade(&inner)));
        let service = SmService { inner };
        service.store_unacknowledged(swept);
        let tick = (config.keepalive_interval / 10)
            .clamp(Duration::from_millis(10), Duration::from_millis(250));
        tokio::spawn(service.clone().timers(tick));
        Ok(service)
    }

    /// Makes a standby active over `index`, the database's records as of a moment after this
    /// node took the lease (so that no other node can have committed since): the index a
    /// standby kept ready from the change log and brought up to date with its tail, or one
    /// built from a full read. EP sessions of the previous term are closed, and changes are
    /// accepted again. Refused, changing nothing, if the index was built for another index
    /// configuration than the service's.
    pub fn activate(&self, index: SubscriberIndex) -> Result<(), StartError> {
        if index.config() != &self.inner.config.index {
            return Err(StartError::ForeignIndex {
                index: index.config().clone(),
                config: self.inner.config.index.clone(),
            });
        }
        let (core, swept) = core_over(&self.inner.config, index)?;
        {
            let mut current = lock(&self.inner.core);
            current.close_all("the subscriber manager changed role");
            *current = core;
            // Under the core lock: no change of the old term is submitted after this.
            self.inner.term.fetch_add(1, Ordering::SeqCst);
            *lock(&self.inner.failed) = None;
            self.inner.standby.store(false, Ordering::SeqCst);
        }
        self.store_unacknowledged(swept);
        Ok(())
    }

    /// The index configuration (domains, name case) an index handed to [`Self::activate`]
    /// must have.
    pub fn index_config(&self) -> &brasa_subscriber::IndexConfig {
        &self.inner.config.index
    }

    /// Returns to standby: every change and EP session is refused with `why` from now on,
    /// and changes of this term still queued for the store are answered `Unavailable`
    /// instead of committed.
    pub fn deactivate(&self, why: String) {
        {
            let _core = lock(&self.inner.core);
            self.inner.term.fetch_add(1, Ordering::SeqCst);
            *lock(&self.inner.failed) = Some(why.clone());
            self.inner.standby.store(true, Ordering::SeqCst);
        }
        self.with_core(|core| core.close_all(&why));
    }

    /// Updates why a standby refuses (e.g. the active node changed); no effect while active.
    pub fn set_standby_reason(&self, why: String) {
        let mut failed = lock(&self.inner.failed);
        if self.inner.standby.load(Ordering::SeqCst) {
            *failed = Some(why);
        }
    }

    /// Why this node serves no LEG or EP traffic, while it is a standby.
    pub fn standby(&self) -> Option<String> {
        if self.inner.standby.load(Ordering::SeqCst) {
            lock(&self.inner.failed).clone()
        } else {
            None
        }
    }

    /// Why changes and EP sessions are refused, if they are (standby, store failure, shutdown).
    pub fn refusal(&self) -> Option<String> {
        lock(&self.inner.failed).clone()
    }

    /// Resolves when the store has refused a commit because this node's fencing token is no
    /// longer the current one (another node took over).
    pub async fn fenced(&self) {
        self.inner.fenced.notified().await;
    }

    /// Queues changes no caller waits for (the BGP LEG's sweep at start-up).
    fn store_unacknowledged(&self, changes: ChangeSet) {
        if changes.is_empty() {
            return;
        }
        let term = self.inner.term.load(Ordering::SeqCst);
        let _ = lock(&self.inner.store).send(StoreJob::Changes {
            changes: vec![changes],
            done: None,
            term,
        });
    }

    /// Stops the timer task, closes every EP session and stops the store thread once every
    /// queued commit is done (the store file is closed when this returns).
    pub async fn shutdown(&self) {
        *lock(&self.inner.failed) = Some("the subscriber manager is shutting down".into());
        self.inner.stop.send_replace(true);
        self.with_core(|core| core.close_all("the subscriber manager is shutting down"));
        let _ = lock(&self.inner.store).send(StoreJob::Stop);
        let thread = lock(&self.inner.store_thread).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Resolves once [`Self::shutdown`] has been called.
    pub async fn stopped(&self) {
        let mut rx = self.inner.stop.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Locks the core (for queries and operator actions). Never hold it across an await.
    pub fn core(&self) -> MutexGuard<'_, SmCore> {
        lock(&self.inner.core)
    }

    /// Applies `ops` in order (each one validated against the state the previous ones left)
    /// and sends the accepted changes to the store in one job.
    pub fn submit(&self, ops: Vec<Result<Op, SmError>>) -> Pending {
        let failed = lock(&self.inner.failed).clone();
        let mut core = lock(&self.inner.core);
        let now = unix_now();
        let mut changes = Vec::new();
        let results = ops
            .into_iter()
            .map(|op| {
                if let Some(why) = &failed {
                    return Err(SmError::new(ErrorKind::Unavailable, why.clone()));
                }
                let c = core.apply(op?, now)?;
                if c.is_empty() {
                    return Ok(None);
                }
                changes.push(c);
                Ok(Some(changes.len() - 1))
            })
            .collect();
        let done = self.send_to_store(changes);
        drop(core);
        Pending { results, done }
    }

    /// Applies a batch of the BGP speaker's events (in order, as one change set) on the same
    /// durable path as every other change: the EPs hear of it only once it is committed.
    /// Refused (nothing applied) while the store has failed.
    ///
    /// A refusal (standby, failed store) hands the events back, so that the caller can hold
    /// them until this node is active.
    pub fn submit_bgp(
        &self,
        events: Vec<RouteEvent>,
    ) -> Result<Pending, (SmError, Vec<RouteEvent>)> {
        if let Some(why) = lock(&self.inner.failed).clone() {
            return Err((SmError::new(ErrorKind::Unavailable, why), events));
        }
        let mut core = lock(&self.inner.core);
        let changes = core.apply_bgp(Instant::now(), events);
        let results = vec![Ok((!changes.is_empty()).then_some(0))];
        let done = self.send_to_store(if changes.is_empty() {
            Vec::new()
        } else {
            vec![changes]
        });
        drop(core);
        Ok(Pending { results, done })
    }

    /// Applies one operation and waits until it is durable.
    pub async fn execute(&self, op: Op) -> Result<ChangeSet, SmError> {
        let mut out = self.submit(vec![Ok(op)]).wait().await;
        out.pop()
            .unwrap_or_else(|| Err(SmError::new(ErrorKind::Internal, "no result")))
    }

    /// Runs `f` on the core (under the lock) and sends the change set it returns to the store;
    /// used for CSV imports, which validate every row against the index before applying any.
    /// Blocks for as long as `f` runs: call it off the async runtime's workers.
    pub fn submit_with<T>(
        &self,
        f: impl FnOnce(&mut SmCore) -> Result<(T, ChangeSet), SmError>,
    ) -> Result<(T, Pending), SmError> {
        if let Some(why) = lock(&self.inner.failed).clone() {
            return Err(SmError::new(ErrorKind::Unavailable, why));
        }
        let mut core = lock(&self.inner.core);
        let (value, changes) = f(&mut core)?;
        let results = vec![Ok((!changes.is_empty()).then_some(0))];
        let done = self.send_to_store(if changes.is_empty() {
            Vec::new()
        } else {
            vec![changes]
        });
        drop(core);
        Ok((value, Pending { results, done }))
    }

    fn send_to_store(
        &self,
        changes: Vec<ChangeSet>,
    ) -> Option<oneshot::Receiver<Result<Vec<ChangeSet>, SmError>>> {
        if changes.is_empty() {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        let job = StoreJob::Changes {
            changes,
            done: Some(tx),
            term: self.inner.term.load(Ordering::SeqCst),
        };
        if lock(&self.inner.store).send(job).is_err() {
            // The receiver is gone: `rx` then reports the store as stopped.
            return Some(rx);
        }
        Some(rx)
    }

    /// Wakes the senders of sessions the core says have something to send.
    fn wake(&self, sids: Vec<SessionId>) {
        wake_senders(&self.inner, sids);
    }

    /// Runs `f` on the core and wakes the sessions it touched.
    pub fn with_core<T>(&self, f: impl FnOnce(&mut SmCore) -> T) -> T {
        let (value, wake) = {
            let mut core = lock(&self.inner.core);
            let value = f(&mut core);
            (value, core.take_wakeups())
        };
        self.wake(wake);
        value
    }

    /// Counters and sizes.
    pub fn stats(&self) -> ServiceStats {
        let c = &self.inner.counters;
        let core = lock(&self.inner.core);
        let index = core.index();
        ServiceStats {
            subscribers: index.len(),
            domains: index
                .count_by_domain()
                .into_iter()
                .map(|(d, n)| (d.to_owned(), n))
                .collect(),
            vpns: index.vpns().count(),
            learned_routes: index.learned_route_count(),
            connected_eps: core.connected_eps(),
            ops: core.counters().clone(),
            commits: c.commits.load(Ordering::Relaxed),
            committed_changes: c.change_sets.load(Ordering::Relaxed),
            commit_micros: c.commit_micros.load(Ordering::Relaxed),
            store_failures: c.failures.load(Ordering::Relaxed),
            failed: lock(&self.inner.failed).clone(),
        }
    }

    async fn timers(self, tick: Duration) {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_expire = 0u64;
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = self.stopped() => return,
            }
            let now = Instant::now();
            let unix = unix_now();
            let wake = {
                let mut core = lock(&self.inner.core);
                core.handle_timeout(now);
                let mut changes = Vec::new();
                if unix != last_expire {
                    last_expire = unix;
                    changes.push(core.expire(unix));
                }
                if core.poll_bgp_timeout().is_some_and(|at| at <= now) {
                    changes.push(core.bgp_timeout(now));
                }
                changes.retain(|c| !c.is_empty());
                if !changes.is_empty() && lock(&self.inner.failed).is_none() {
                    let job = StoreJob::Changes {
                        changes,
                        done: None,
                        term: self.inner.term.load(Ordering::SeqCst),
                    };
                    let _ = lock(&self.inner.store).send(job);
                }
                core.take_wakeups()
            };
            self.wake(wake);
        }
    }

    /// Registers an EP session's sender and returns the stream of messages to the EP; also
    /// starts the task that reads the EP's messages.
    pub(crate) fn start_session(
        &self,
        sid: SessionId,
        inbound: tonic::Streaming<pb::EpMessage>,
    ) -> tokio::sync::mpsc::Receiver<Result<pb::SmMessage, tonic::Status>> {
        let notify = Arc::new(Notify::new());
        lock(&self.inner.senders).insert(sid, notify.clone());
        // Small: back-pressure from the EP's TCP connection reaches the core quickly, so the
        // window and the queue (not this channel) hold what the EP has not taken.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(self.clone().sender(sid, notify.clone(), tx));
        tokio::spawn(self.clone().reader(sid, inbound));
        notify.notify_one();
        rx
    }

    async fn sender(
        self,
        sid: SessionId,
        notify: Arc<Notify>,
        tx: tokio::sync::mpsc::Sender<Result<pb::SmMessage, tonic::Status>>,
    ) {
        loop {
            // Capacity first, so that a message taken from the core is never dropped.
            let Ok(permit) = tx.reserve().await else {
                break;
            };
            let next = {
                let mut core = lock(&self.inner.core);
                core.poll_transmit(Instant::now(), sid)
            };
            match next {
                Transmit::Message(m) => permit.send(Ok(m)),
                Transmit::Close(e) => {
                    permit.send(Err(crate::grpc::status(e)));
                    break;
                }
                Transmit::Gone => break,
                Transmit::Idle => {
                    drop(permit);
                    notify.notified().await;
                }
            }
        }
        lock(&self.inner.senders).remove(&sid);
    }

    async fn reader(self, sid: SessionId, mut inbound: tonic::Streaming<pb::EpMessage>) {
        loop {
            let msg = tokio::select! {
                m = inbound.message() => m,
                _ = self.stopped() => break,
            };
            let msg = match msg {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(session = sid, %status, "EP stream error");
                    break;
                }
            };
            let op = self.with_core(|core| core.ep_receive(Instant::now(), sid, msg));
            if let Some(op) = op {
                let pending = self.submit(vec![Ok(op)]);
                tokio::spawn(async move {
                    for r in pending.wait().await {
                        if let Err(e) = r {
                            tracing::warn!(session = sid, error = %e, "EP state update refused");
                        }
                    }
                });
            }
        }
        self.with_core(|core| core.ep_disconnected(sid));
    }
}

/// The core over `index`; also returns the removal of the routes of BGP LEG peers that are no
/// longer configured (to be stored; the rest wait for their peer's End-of-RIB).
fn core_over(config: &SmConfig, index: SubscriberIndex) -> Result<(SmCore, ChangeSet), StartError> {
    let mut core = SmCore::new(config, index)
        .map_err(|e| StartError::Config(brasa_sm::config::ConfigError::Invalid(e.message)))?;
    let swept = core.start_bgp_leg(Instant::now());
    Ok((core, swept))
}

fn wake_senders(inner: &Inner, sids: Vec<SessionId>) {
    if sids.is_empty() {
        return;
    }
    let senders = lock(&inner.senders);
    for sid in sids {
        if let Some(n) = senders.get(&sid) {
            n.notify_one();
        }
    }
}

/// A poisoned lock means a panic elsewhere already failed a request; the data it protects is
/// still consistent (every core operation validates before it mutates), so keep serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Most change sets committed in one transaction.
const MAX_GROUP: usize = 65_536;

fn store_thread(
    mut store: Box<dyn SubscriberStore + Send>,
    rx: std::sync::mpsc::Receiver<StoreJob>,
) {
    let mut inner = std::sync::Weak::new();
    let mut stop = false;
    while !stop {
        let Ok(first) = rx.recv() else {
            break;
        };
        let mut jobs: Vec<(Vec<ChangeSet>, Option<Done>, u64)> = Vec::new();
        let mut size = 0;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                StoreJob::Changes {
                    changes,
                    done,
                    term,
                } => {
                    size += changes.len();
                    jobs.push((changes, done, term));
                }
                StoreJob::Attach(service) => inner = service,
                StoreJob::Stop => {
                    stop = true;
                    break;
                }
            }
            if size < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        let Some(inner) = inner.upgrade() else {
            break;
        };
        // Changes of an earlier term were applied to an index that is gone (the node stepped
        // down since): never commit them.
        let term = inner.term.load(Ordering::SeqCst);
        let (jobs, stale): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|j| j.2 == term);
        for (_, done, _) in stale {
            if let Some(done) = done {
                let _ = done.send(Err(SmError::new(
                    ErrorKind::Unavailable,
                    "this subscriber manager stepped down before the change was committed",
                )));
            }
        }
        if jobs.is_empty() {
            continue;
        }
        let mut lens = Vec::with_capacity(jobs.len());
        let mut flat = Vec::new();
        let mut dones = Vec::with_capacity(jobs.len());
        for (changes, done, _) in jobs {
            lens.push(changes.len());
            flat.extend(changes);
            dones.push(done);
        }
        let started = Instant::now();
        let result = store.apply_batch(&flat);
        let c = &inner.counters;
        match result {
            Ok(()) => {
                c.commits.fetch_add(1, Ordering::Relaxed);
                c.change_sets
                    .fetch_add(flat.len() as u64, Ordering::Relaxed);
                c.commit_micros
                    .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                let wake = {
                    let mut core = lock(&inner.core);
                    let now = Instant::now();
                    for changes in &flat {
                        core.committed(now, changes);
                    }
                    core.take_wakeups()
                };
                wake_senders(&inner, wake);
                let mut rest = flat.into_iter();
                for (len, done) in lens.into_iter().zip(dones) {
                    let mine: Vec<ChangeSet> = rest.by_ref().take(len).collect();
                    if let Some(done) = done {
                        let _ = done.send(Ok(mine));
                    }
                }
            }
            Err(e) => {
                c.failures.fetch_add(1, Ordering::Relaxed);
                let why = if matches!(e, StoreError::Fenced(_)) {
                    // Nothing was written; the leadership task steps the node down.
                    tracing::warn!(error = %e, "commit fenced: another node is active");
                    inner.standby.store(true, Ordering::SeqCst);
                    inner.fenced.notify_one();
                    format!("{e}; connect to the active subscriber manager")
                } else {
                    tracing::error!(error = %e, "subscriber store commit failed");
                    format!(
                        "the subscriber store failed ({e}); changes are refused until the SM is restarted"
                    )
                };
                *lock(&inner.failed) = Some(why.clone());
                for done in dones.into_iter().flatten() {
                    let _ = done.send(Err(SmError::new(ErrorKind::Unavailable, why.clone())));
                }
            }
        }
    }
    tracing::debug!("subscriber store thread stopped");
}
