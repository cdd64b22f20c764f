//! The data plane of `brasa run` as an enforcement point (EP) of the Subscriber Manager
//! (`[dataplane.subscribers]`): it holds the SM's subscribers through an EP connection
//! (push mode, brasa-sm-net's `EpClient` over the configured SM nodes, following a
//! fail-over), compiles each subscriber — its global addresses and its active subscriber
//! services (PCC rules, Nokia SR OS) — and installs it in the PCC stage the workers run, one
//! install per subscriber change; and it sends each service instance's RADIUS accounting
//! (Start, Interim-Update, Stop) to a `[[radius.pool]]` through the same client the dynamic
//! data services use, journaling each record first ([`journal`]) so that the instances a
//! crash ended get their Stop at the next start.
//!
//! Tasks: the EP task (connects, reads the replica's events, installs; a full sync replaces
//! the set), the accounting timer (Interim-Updates) and the accounting sender (journals a
//! batch, then sends it one record at a time, so a service's Start always precedes its Stop
//! on the wire).

pub mod api;
pub mod compile;
pub mod config;
pub mod enforcer;
pub mod journal;

use super::dynsvc::radius;
use super::services::{on_shared, ServicesComponent};
use brasa_dataplane::io::worker::Handle;
use brasa_dataplane::pcc::{PccStage, SubscriberPolicy};
use brasa_dataplane::pipeline::Shared;
use brasa_radius::AcctTerminateCause;
use brasa_sm::{EpReplica, ReplicaEvent};
use brasa_sm_net::{ClientEvent, EpClient, EpClientOptions};
use brasa_subscriber::Subscriber;
use brasa_subsvc::{Accounting, AcctRecord};
use config::SubscribersResolved;
use enforcer::Enforcer;
use journal::AcctJournal;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

/// Most subscribers one job of the data plane installs: enough to amortise the job's round
/// trip, few enough that the first worker's packets do not wait long behind it.
const JOB: usize = 256;

/// One subscriber change the SM pushed.
#[derive(Debug)]
pub enum Change {
    /// Install or replace the subscriber (the whole record).
    Upsert(Subscriber),
    /// Remove the subscriber.
    Remove(String),
}

impl Change {
    fn name(&self) -> &str {
        match self {
            Change::Upsert(subscriber) => subscriber.name.as_str(),
            Change::Remove(name) => name,
        }
    }
}

/// What one change comes to.
enum Step {
    Install(enforcer::Prepared),
    Remove(String),
}

/// Counters of the enforcement point (`/metrics`, `show subscriber-services`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Services the SM pushed that the data plane refused (left out).
    pub compile_refused: AtomicU64,
    /// Subscribers not installed: an address invalid for the data plane or owned by another.
    pub install_refused: AtomicU64,
    /// Accounting-Requests answered.
    pub acct_sent: AtomicU64,
    /// Accounting-Requests no server answered.
    pub acct_failed: AtomicU64,
    /// Accounting-Requests dropped unsent: the queue to the pool was full (its servers answer
    /// slower than records are made, or not at all).
    pub acct_dropped: AtomicU64,
    /// Stops queued at start-up for the instances an earlier run left open (a crash).
    pub acct_recovered: AtomicU64,
    /// Batches of records the accounting journal could not write (sent all the same).
    pub acct_journal_errors: AtomicU64,
    /// Full syncs received.
    pub syncs: AtomicU64,
    /// Connections to an SM made.
    pub connects: AtomicU64,
}

/// The running enforcement point.
pub struct PccComponent {
    config: SubscribersResolved,
    handle: Handle,
    stage: Shared<PccStage>,
    enforcer: Mutex<Enforcer>,
    /// Counters.
    pub stats: Stats,
    connected: AtomicBool,
    /// New Interim-Update deadlines.
    acct_changed: Notify,
    acct_queue: Option<mpsc::Sender<AcctRecord>>,
}

impl PccComponent {
    fn enforcer(&self) -> MutexGuard<'_, Enforcer> {
        self.enforcer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the EP is connected to an SM.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The configuration.
    pub fn config(&self) -> &SubscribersResolved {
        &self.config
    }

    /// The PCC stage's default-action counters.
    pub async fn stage_stats(&self) -> Option<brasa_dataplane::pcc::PccStats> {
        on_shared(&self.handle, &self.stage, |stage, _| stage.stats())
            .await
            .ok()
    }

    /// Applies `changes` in order, as the SM pushed them: every subscriber's last change
    /// counts (an Upsert carries the whole record), each subscriber is compiled away from the
    /// packet path, and up to [`JOB`] of them are installed or removed by one job on the data
    /// plane's first worker — each one whole, so no packet sees half a subscriber's services.
    pub async fn apply(&self, changes: Vec<Change>) {
        let mut last: HashMap<String, Change> = HashMap::with_capacity(changes.len());
        let mut order = Vec::with_capacity(changes.len());
        for change in changes {
            let name = change.name().to_string();
            if last.insert(name.clone(), change).is_none() {
                order.push(name);
            }
        }
        for chunk in order.chunks(JOB) {
            let steps = self.prepare(chunk.iter().filter_map(|name| last.remove(name)));
            self.install(steps).await;
        }
    }

    /// The steps of `changes`: compiled policies to install, subscribers to remove.
    fn prepare(&self, changes: impl Iterator<Item = Change>) -> Vec<Step> {
        let mut enforcer = self.enforcer();
        let mut steps = Vec::new();
        for change in changes {
            match change {
                Change::Upsert(subscriber) => {
                    let name = subscriber.name.as_str();
                    match enforcer.prepare(&subscriber, &subscriber.services) {
                        Ok(Some(prepared)) => {
                            for refused in prepared.refused() {
                                self.stats.compile_refused.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(subscriber = %name, service = %refused.service, reason = %refused.reason, "subscriber service refused by the data plane: not enforced");
                            }
                            steps.push(Step::Install(prepared));
                        }
                        Ok(None) => {}
                        Err(error) => {
                            self.stats.install_refused.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(subscriber = %name, %error, "subscriber not enforced");
                        }
                    }
                }
                Change::Remove(name) => {
                    if enforcer.get(&name).is_some() {
                        steps.push(Step::Remove(name));
                    }
                }
            }
        }
        steps
    }

    /// Runs `steps` as one job of the first worker, then records what was installed and
    /// sends the accounting that follows.
    async fn install(&self, steps: Vec<Step>) {
        if steps.is_empty() {
            return;
        }
        let jobs: Vec<Result<Arc<SubscriberPolicy>, String>> = steps
            .iter()
            .map(|step| match step {
                Step::Install(prepared) => Ok(prepared.policy().clone()),
                Step::Remove(name) => Err(name.clone()),
            })
            .collect();
        let results = on_shared(&self.handle, &self.stage, move |stage, _| {
            jobs.into_iter()
                .map(|job| match job {
                    Ok(policy) => stage.install(policy).map(|_| ()),
                    Err(name) => {
                        stage.remove(&name);
                        Ok(())
                    }
                })
                .collect::<Vec<_>>()
        })
        .await;
        let results = match results {
            Ok(results) => results,
            Err(error) => {
                tracing::warn!(error = %error.detail, "subscribers not enforced: the data plane stopped");
                return;
            }
        };
        let now = Instant::now();
        let mut records = Vec::new();
        {
            let mut enforcer = self.enforcer();
            for (step, result) in steps.into_iter().zip(results) {
                match (step, result) {
                    (Step::Install(prepared), Ok(())) => {
                        records.extend(enforcer.installed(prepared, now))
                    }
                    (Step::Install(prepared), Err(error)) => {
                        self.stats.install_refused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(subscriber = %prepared.policy().name(), %error, "subscriber not enforced");
                    }
                    (Step::Remove(name), _) => records.extend(enforcer.removed(&name, now)),
                }
            }
        }
        self.send(records);
    }

    /// Makes the enforced set `subscribers` (a full sync): each is installed, every other
    /// one removed.
    pub async fn replace_all(&self, subscribers: Vec<Subscriber>) {
        let keep: std::collections::HashSet<&str> =
            subscribers.iter().map(|s| s.name.as_str()).collect();
        let mut changes: Vec<Change> = self
            .enforcer()
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| !keep.contains(name.as_str()))
            .map(Change::Remove)
            .collect();
        changes.extend(subscribers.into_iter().map(Change::Upsert));
        self.apply(changes).await;
    }

    fn send(&self, records: Vec<AcctRecord>) {
        if records.is_empty() {
            return;
        }
        if let Some(queue) = &self.acct_queue {
            for record in records {
                if queue.try_send(record).is_err() {
                    let dropped = self.stats.acct_dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    // Logged at 1, 2, 4, … drops: a dead pool must not flood the log too.
                    if dropped.is_power_of_two() {
                        tracing::warn!(
                            pool = %queue_pool_name(&self.config),
                            dropped,
                            "accounting queue full: subscriber service records dropped unsent"
                        );
                    }
                }
            }
        }
        self.acct_changed.notify_one();
    }
}

/// Accounting records waiting for the pool at most: a pool that answers slowly or not at all
/// (each record waits out its timeout and retries) costs bounded memory; what does not fit is
/// dropped and counted (`brasa_pcc_accounting_requests_total{result="dropped"}`).
const ACCT_QUEUE: usize = 65_536;

fn queue_pool_name(config: &SubscribersResolved) -> &str {
    config
        .accounting
        .as_ref()
        .map_or("", |a| a.pool.name.as_str())
}

/// Most records journaled with one `fdatasync` before they are sent.
const JOURNAL_BATCH: usize = 256;

/// Starts the enforcement point on the data plane of `services` (started with the PCC
/// stage: `services::start` with the section's defaults). With accounting, the journal in
/// `<data_dir>/pcc` is opened first and the Stops of the instances an earlier run left
/// open are queued before any other record.
pub fn start(
    config: SubscribersResolved,
    services: &ServicesComponent,
    data_dir: &Path,
) -> anyhow::Result<Arc<PccComponent>> {
    let stage = services
        .pcc()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the data plane runs no PCC stage"))?;
    let accounting = config.accounting.as_ref().map(|acct| {
        use rand::RngCore;
        Accounting::new(
            acct.nas_identifier.clone(),
            rand::rng().next_u32(),
            acct.default_interval,
        )
        .with_min_interval(acct.min_interval)
    });
    let (acct_tx, acct_rx) = mpsc::channel(ACCT_QUEUE);
    let pool = config.accounting.as_ref().map(|a| a.pool.clone());
    let (journal, left) = match &pool {
        Some(_) => {
            let dir = data_dir.join("pcc");
            let (journal, left) = AcctJournal::open(&dir).map_err(|error| {
                anyhow::anyhow!(
                    "cannot open the accounting journal in {}: {error}",
                    dir.display()
                )
            })?;
            (Some(journal), left)
        }
        None => (None, Vec::new()),
    };
    let component = Arc::new(PccComponent {
        handle: services.handle().clone(),
        stage,
        enforcer: Mutex::new(Enforcer::new(accounting, config.vpns.clone())),
        stats: Stats::default(),
        connected: AtomicBool::new(false),
        acct_changed: Notify::new(),
        acct_queue: pool.as_ref().map(|_| acct_tx),
        config,
    });
    let recovered: Vec<AcctRecord> = left
        .iter()
        .filter_map(|reported| match reported.stop(AcctTerminateCause::NasReboot) {
            Ok(stop) => Some(stop),
            Err(error) => {
                tracing::warn!(subscriber = %reported.instance.subscriber, service = %reported.instance.service, %error, "no Stop for a service instance a crash ended");
                None
            }
        })
        .collect();
    if !recovered.is_empty() {
        tracing::info!(
            instances = recovered.len(),
            "sending the Stops of the subscriber service instances the last run left open"
        );
        component
            .stats
            .acct_recovered
            .fetch_add(recovered.len() as u64, Ordering::Relaxed);
        component.send(recovered);
    }
    if let (Some(pool), Some(journal)) = (pool, journal) {
        tokio::spawn(acct_sender(component.clone(), pool, acct_rx, journal));
        tokio::spawn(acct_timer(component.clone()));
    }
    tokio::spawn(ep_task(component.clone()));
    Ok(component)
}

/// Connects to the SM nodes (the first that accepts), follows the pushes, reconnects after
/// a loss (to whichever node is active then) with a back-off of up to 5 s.
async fn ep_task(component: Arc<PccComponent>) {
    let config = &component.config;
    let mut options = EpClientOptions::new(
        config.endpoints.first().cloned().unwrap_or_default(),
        config.ep_id.clone(),
    );
    options.hello.domain = config.domain.clone();
    let mut replica = EpReplica::new();
    let mut backoff = Duration::from_millis(100);
    let mut logged = false;
    loop {
        let mut client = match EpClient::connect_any(&config.endpoints, options.clone(), replica)
            .await
        {
            Ok(client) => client,
            Err(error) => {
                if !logged {
                    tracing::warn!(%error, "the data plane cannot reach a Subscriber Manager; retrying");
                    logged = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                replica = EpReplica::new();
                continue;
            }
        };
        logged = false;
        backoff = Duration::from_millis(100);
        component.stats.connects.fetch_add(1, Ordering::Relaxed);
        component.connected.store(true, Ordering::Relaxed);
        tracing::info!("the data plane is an enforcement point of the Subscriber Manager");
        let cleared = follow(&component, &mut client).await;
        component.connected.store(false, Ordering::Relaxed);
        replica = client.close();
        if cleared {
            // The SM's failure action: the mappings are gone, so is their enforcement.
            component.replace_all(Vec::new()).await;
        }
        tokio::time::sleep(backoff).await;
    }
}

/// Applies the client's events until the connection ends; whether the replica was cleared.
/// The pushes waiting at once (up to [`JOB`]) are applied together.
async fn follow(component: &PccComponent, client: &mut EpClient) -> bool {
    // Upserts and removes inside a full sync build the staged table; the sync's end
    // installs the table whole.
    let mut syncing = false;
    let mut pending = Vec::new();
    loop {
        let waiting = if pending.is_empty() || pending.len() >= JOB {
            None
        } else {
            client.try_next_event()
        };
        let event = match waiting {
            Some(event) => Some(event),
            None if pending.is_empty() => client.next_event().await,
            None => {
                component.apply(std::mem::take(&mut pending)).await;
                continue;
            }
        };
        let event = match event {
            Some(ClientEvent::Replica(ReplicaEvent::Upsert(subscriber))) if !syncing => {
                pending.push(Change::Upsert(subscriber));
                continue;
            }
            Some(ClientEvent::Replica(ReplicaEvent::Remove(name))) if !syncing => {
                pending.push(Change::Remove(name));
                continue;
            }
            other => other,
        };
        component.apply(std::mem::take(&mut pending)).await;
        match event {
            Some(ClientEvent::Replica(ReplicaEvent::SyncBegin { .. })) => syncing = true,
            Some(ClientEvent::Replica(ReplicaEvent::SyncEnd { .. })) => {
                syncing = false;
                component.stats.syncs.fetch_add(1, Ordering::Relaxed);
                let subscribers = client.replica().subscribers();
                component.replace_all(subscribers).await;
            }
            Some(ClientEvent::Ended { error, cleared }) => {
                tracing::warn!(%error, cleared, "the Subscriber Manager connection ended");
                return cleared;
            }
            Some(ClientEvent::Replica(_)) => {}
            None => return false,
        }
    }
}

/// Sends the Interim-Updates when they are due.
async fn acct_timer(component: Arc<PccComponent>) {
    loop {
        let deadline = component.enforcer().poll_timeout();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {
                let records = component.enforcer().handle_timeout(Instant::now());
                component.send(records);
            }
            _ = component.acct_changed.notified() => {}
        }
    }
}

/// Sends the records in order to the pool's accounting servers, each batch journaled first
/// (on a blocking thread: the write ends with an `fdatasync`).
async fn acct_sender(
    component: Arc<PccComponent>,
    pool: brasa_aaa::PoolConfig,
    mut queue: mpsc::Receiver<AcctRecord>,
    journal: AcctJournal,
) {
    let healths = radius::ServerHealths::default();
    let mut journal = Some(journal);
    let mut batch = Vec::with_capacity(JOURNAL_BATCH);
    while queue.recv_many(&mut batch, JOURNAL_BATCH).await > 0 {
        if let Some(mut open) = journal.take() {
            let records = std::mem::take(&mut batch);
            let written = tokio::task::spawn_blocking(move || {
                let result = open.record(&records);
                (open, records, result)
            })
            .await;
            match written {
                Ok((open, records, result)) => {
                    journal = Some(open);
                    batch = records;
                    if let Err(error) = result {
                        component
                            .stats
                            .acct_journal_errors
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::error!(%error, "cannot write the accounting journal: these instances get no Stop after a crash");
                    }
                }
                Err(error) => {
                    // The batch went down with the writer: nothing left to send of it.
                    tracing::error!(%error, "the accounting journal's writer panicked: a batch of records is lost and journaling stops");
                    continue;
                }
            }
        }
        for record in batch.drain(..) {
            send_record(&component, &pool, &healths, record).await;
        }
    }
}

/// Sends one record to the pool's accounting servers and counts the outcome.
async fn send_record(
    component: &PccComponent,
    pool: &brasa_aaa::PoolConfig,
    healths: &radius::ServerHealths,
    record: AcctRecord,
) {
    let build = |_: &brasa_aaa::UpstreamConfig, _: [u8; 16], id: u8| {
        let mut message = record.message.clone();
        message.identifier = id;
        Some(message)
    };
    let answered = radius::exchange(
        healths,
        pool,
        &pool.acct_servers,
        radius::MessageAuthenticator::Keep,
        &build,
    )
    .await;
    if answered.is_some() {
        component.stats.acct_sent.fetch_add(1, Ordering::Relaxed);
    } else {
        component.stats.acct_failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(subscriber = %record.instance().subscriber, service = %record.instance().service, pool = %pool.name, "no accounting server answered");
    }
}
