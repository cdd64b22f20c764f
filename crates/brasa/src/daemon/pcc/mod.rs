//! The data plane of `brasa run` as an enforcement point (EP) of the Subscriber Manager
//! (`[dataplane.subscribers]`): it holds the SM's subscribers through an EP connection
//! (push mode, brasa-sm-net's `EpClient` over the configured SM nodes, following a
//! fail-over), compiles each subscriber — its global addresses and its active subscriber
//! services (PCC rules, Nokia SR OS) — and installs it in the PCC stage the workers run, one
//! install per subscriber change; and it sends each service instance's RADIUS accounting
//! (Start, Interim-Update, Stop) to a `[[radius.pool]]` through the same client the dynamic
//! data services use.
//!
//! Tasks: the EP task (connects, reads the replica's events, installs; a full sync replaces
//! the set), the accounting timer (Interim-Updates) and the accounting sender (one record at
//! a time, so a service's Start always precedes its Stop on the wire).

pub mod api;
pub mod compile;
pub mod config;
pub mod enforcer;

use super::dynsvc::radius;
use super::services::{on_shared, ServicesComponent};
use brasa_dataplane::io::worker::Handle;
use brasa_dataplane::pcc::PccStage;
use brasa_dataplane::pipeline::Shared;
use brasa_sm::{EpReplica, ReplicaEvent};
use brasa_sm_net::{ClientEvent, EpClient, EpClientOptions};
use brasa_subscriber::Subscriber;
use brasa_subsvc::{Accounting, AcctRecord, SubscriberServices};
use config::SubscribersResolved;
use enforcer::Enforcer;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

/// The services of a subscriber record.
fn services_of(_subscriber: &Subscriber) -> SubscriberServices {
    SubscriberServices::new()
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
    acct_queue: Option<mpsc::UnboundedSender<AcctRecord>>,
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

    /// Installs subscriber `subscriber` as the SM pushed it with `services` (nothing when
    /// that is installed already).
    pub async fn upsert(&self, subscriber: &Subscriber, services: &SubscriberServices) {
        let name = subscriber.name.as_str();
        let prepared = match self.enforcer().prepare(subscriber, services) {
            Ok(Some(prepared)) => prepared,
            Ok(None) => return,
            Err(error) => {
                self.stats.install_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(subscriber = %name, %error, "subscriber not enforced");
                return;
            }
        };
        for refused in prepared.refused() {
            self.stats.compile_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(subscriber = %name, service = %refused.service, reason = %refused.reason, "subscriber service refused by the data plane: not enforced");
        }
        let policy = prepared.policy().clone();
        match on_shared(&self.handle, &self.stage, move |stage, _| {
            stage.install(policy).map(|_| ())
        })
        .await
        {
            Ok(Ok(())) => {
                let records = self.enforcer().installed(prepared, Instant::now());
                self.send(records);
            }
            Ok(Err(error)) => {
                self.stats.install_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(subscriber = %name, %error, "subscriber not enforced");
            }
            Err(error) => {
                tracing::warn!(subscriber = %name, error = %error.detail, "subscriber not enforced")
            }
        }
    }

    /// Removes subscriber `name` (its services' Stops are sent).
    pub async fn remove(&self, name: &str) {
        if self.enforcer().get(name).is_none() {
            return;
        }
        let owned = name.to_string();
        if let Err(error) = on_shared(&self.handle, &self.stage, move |stage, _| {
            stage.remove(&owned);
        })
        .await
        {
            tracing::warn!(subscriber = %name, error = %error.detail, "subscriber not removed");
            return;
        }
        let records = self.enforcer().removed(name, Instant::now());
        self.send(records);
    }

    /// Makes the enforced set `subscribers` (a full sync): each is installed, every other
    /// one removed.
    pub async fn replace_all(&self, subscribers: Vec<Subscriber>) {
        let keep: std::collections::HashSet<&str> =
            subscribers.iter().map(|s| s.name.as_str()).collect();
        let gone: Vec<String> = self
            .enforcer()
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| !keep.contains(name.as_str()))
            .collect();
        for name in gone {
            self.remove(&name).await;
        }
        for subscriber in &subscribers {
            self.upsert(subscriber, &services_of(subscriber)).await;
        }
    }

    fn send(&self, records: Vec<AcctRecord>) {
        if records.is_empty() {
            return;
        }
        if let Some(queue) = &self.acct_queue {
            for record in records {
                let _ = queue.send(record);
            }
        }
        self.acct_changed.notify_one();
    }
}

/// Starts the enforcement point on the data plane of `services` (started with the PCC
/// stage: `services::start` with the section's defaults).
pub fn start(
    config: SubscribersResolved,
    services: &ServicesComponent,
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
    });
    let (acct_tx, acct_rx) = mpsc::unbounded_channel();
    let pool = config.accounting.as_ref().map(|a| a.pool.clone());
    let component = Arc::new(PccComponent {
        handle: services.handle().clone(),
        stage,
        enforcer: Mutex::new(Enforcer::new(accounting)),
        stats: Stats::default(),
        connected: AtomicBool::new(false),
        acct_changed: Notify::new(),
        acct_queue: pool.as_ref().map(|_| acct_tx),
        config,
    });
    if let Some(pool) = pool {
        tokio::spawn(acct_sender(component.clone(), pool, acct_rx));
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
async fn follow(component: &PccComponent, client: &mut EpClient) -> bool {
    // Upserts and removes inside a full sync build the staged table; the sync's end
    // installs the table whole.
    let mut syncing = false;
    while let Some(event) = client.next_event().await {
        match event {
            ClientEvent::Replica(ReplicaEvent::SyncBegin { .. }) => syncing = true,
            ClientEvent::Replica(ReplicaEvent::SyncEnd { .. }) => {
                syncing = false;
                component.stats.syncs.fetch_add(1, Ordering::Relaxed);
                let subscribers = client.replica().subscribers();
                component.replace_all(subscribers).await;
            }
            ClientEvent::Replica(ReplicaEvent::Upsert(subscriber)) if !syncing => {
                component
                    .upsert(&subscriber, &services_of(&subscriber))
                    .await;
            }
            ClientEvent::Replica(ReplicaEvent::Remove(name)) if !syncing => {
                component.remove(&name).await;
            }
            ClientEvent::Ended { error, cleared } => {
                tracing::warn!(%error, cleared, "the Subscriber Manager connection ended");
                return cleared;
            }
            ClientEvent::Replica(_) => {}
        }
    }
    false
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

/// Sends the records in order to the pool's accounting servers.
async fn acct_sender(
    component: Arc<PccComponent>,
    pool: brasa_aaa::PoolConfig,
    mut queue: mpsc::UnboundedReceiver<AcctRecord>,
) {
    let healths = radius::ServerHealths::default();
    while let Some(record) = queue.recv().await {
        let build = |_: &brasa_aaa::UpstreamConfig, _: [u8; 16], id: u8| {
            let mut message = record.message.clone();
            message.identifier = id;
            Some(message)
        };
        let answered = radius::exchange(
            &healths,
            &pool,
            &pool.acct_servers,
            radius::MessageAuthenticator::Keep,
            &build,
        )
        .await;
        if answered.is_some() {
            component.stats.acct_sent.fetch_add(1, Ordering::Relaxed);
        } else {
            component.stats.acct_failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(subscriber = %record.instance.subscriber, service = %record.instance.service, pool = %pool.name, "no accounting server answered");
        }
    }
}
