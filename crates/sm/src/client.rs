//! The reference enforcement-point client: what an EP (the brasa data plane, `brasa sm
//! ep-watch`, the tests) runs to hold its domain's subscribers.
//!
//! [`EpReplica`] is sans-IO: it takes the SM's messages, checks the sequence numbers (a gap is a
//! protocol error, so a lost update cannot go unnoticed), and keeps the subscribers in its own
//! [`SubscriberIndex`] so that address lookups are the same longest-prefix match as in the SM.
//! A full sync is built beside the current table and replaces it at `SyncEnd`, so the EP keeps
//! enforcing the old state while a resync runs. [`EpClient`] is the tokio shell: one gRPC
//! stream, acknowledgements, keep-alives, failure detection and the failure action.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use brasa_subscriber::{IndexConfig, NameCase, Subscriber, SubscriberIndex, Vpn, DEFAULT_DOMAIN};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::convert::{subscriber_from_proto, vpn_from_proto};
use crate::pb;
use crate::pb::enforcement_point_client::EnforcementPointClient;

/// A message from the SM that breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Updates arrived before the Welcome.
    #[error("updates before Welcome")]
    NoWelcome,
    /// A sequence number was skipped or repeated.
    #[error("sequence gap: expected update {expected}, got {got}")]
    Gap {
        /// The next sequence number the EP expected.
        expected: u64,
        /// What came.
        got: u64,
    },
    /// A record does not decode.
    #[error("bad record from the SM: {0}")]
    BadRecord(String),
    /// A message without a body.
    #[error("empty message from the SM")]
    Empty,
}

/// What one SM message did to the replica.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplicaEvent {
    /// The SM accepted the connection.
    Welcome(pb::Welcome),
    /// A full sync started (push: this many subscribers will follow).
    SyncBegin {
        /// Subscribers announced.
        subscribers: u64,
    },
    /// The full sync is installed; the EP now holds this many subscribers.
    SyncEnd {
        /// Subscribers held.
        subscribers: usize,
    },
    /// A subscriber was installed or replaced.
    Upsert(Subscriber),
    /// A subscriber was removed.
    Remove(String),
    /// A VPN was installed or replaced.
    VpnUpsert(Vpn),
    /// A VPN was removed.
    VpnRemove(String),
    /// The answer to a pull request.
    Pulled {
        /// The request.
        request_id: u64,
        /// The subscriber, not found, or the SM's error text.
        result: Result<Option<Subscriber>, String>,
    },
    /// A keep-alive.
    KeepAlive,
}

struct Table {
    index: SubscriberIndex,
    vpns: HashMap<String, Vpn>,
}

impl Table {
    fn new(domain: &str) -> Result<Table, ProtocolError> {
        let index = SubscriberIndex::new(IndexConfig {
            domains: vec![domain.to_owned()],
            name_case: NameCase::Sensitive,
        })
        .map_err(|e| ProtocolError::BadRecord(format!("domain {domain:?}: {e}")))?;
        Ok(Table {
            index,
            vpns: HashMap::new(),
        })
    }

    fn default_domain() -> Table {
        Table::new(DEFAULT_DOMAIN).expect("the default domain name is valid")
    }

    /// Installs `sub` as the SM sent it. The SM is authoritative: an exact mapping held by
    /// another subscriber here moves (the SM's update of that subscriber comes too).
    fn install(&mut self, sub: Subscriber) -> Result<(), String> {
        if self.index.id_of(sub.name.as_str()).is_some() {
            let _ = self.index.remove(sub.name.as_str());
        }
        for m in &sub.mappings {
            if let Some(vpn) = m.vpn.as_deref() {
                if self.index.vpn(vpn).is_none() {
                    if let Some(v) = self.vpns.get(vpn) {
                        let _ = self.index.add_vpn(v.clone());
                    }
                }
            }
            if let Ok(Some(_)) = self.index.owner_of(m) {
                let _ = self.index.logout_by_mapping(m);
            }
        }
        let name = sub.name.as_str().to_owned();
        self.index
            .upsert(sub)
            .map(|_| ())
            .map_err(|e| format!("cannot install {name:?}: {e}"))
    }

    fn install_vpn(&mut self, vpn: Vpn) {
        if self.index.vpn(&vpn.name).is_none() {
            let _ = self.index.add_vpn(vpn.clone());
        }
        self.vpns.insert(vpn.name.clone(), vpn);
    }
}

/// The subscribers an EP holds, kept in step with the SM.
pub struct EpReplica {
    domain: String,
    table: Table,
    staged: Option<Table>,
    last_seq: u64,
    welcome: Option<pb::Welcome>,
    syncs: u64,
    anomalies: Vec<String>,
}

impl Default for EpReplica {
    fn default() -> Self {
        Self::new()
    }
}

impl EpReplica {
    /// An empty replica, waiting for a Welcome.
    pub fn new() -> Self {
        EpReplica {
            domain: DEFAULT_DOMAIN.to_owned(),
            table: Table::default_domain(),
            staged: None,
            last_seq: 0,
            welcome: None,
            syncs: 0,
            anomalies: Vec::new(),
        }
    }

    /// Processes one message of the SM.
    pub fn handle(&mut self, msg: pb::SmMessage) -> Result<Vec<ReplicaEvent>, ProtocolError> {
        use pb::sm_message::Body;
        match msg.body.ok_or(ProtocolError::Empty)? {
            Body::Welcome(w) => {
                // A new connection: sequence numbers start again; the table stays until the
                // sync that follows replaces it.
                if w.domain != self.domain {
                    self.table = Table::new(&w.domain)?;
                    self.domain = w.domain.clone();
                }
                self.last_seq = 0;
                self.staged = None;
                self.welcome = Some(w.clone());
                Ok(vec![ReplicaEvent::Welcome(w)])
            }
            Body::KeepAlive(_) => Ok(vec![ReplicaEvent::KeepAlive]),
            Body::Updates(u) => {
                if self.welcome.is_none() {
                    return Err(ProtocolError::NoWelcome);
                }
                if u.first_seq != self.last_seq + 1 {
                    return Err(ProtocolError::Gap {
                        expected: self.last_seq + 1,
                        got: u.first_seq,
                    });
                }
                self.last_seq += u.updates.len() as u64;
                let mut events = Vec::with_capacity(u.updates.len());
                for update in u.updates {
                    if let Some(e) = self.apply(update)? {
                        events.push(e);
                    }
                }
                Ok(events)
            }
        }
    }

    fn target(&mut self) -> &mut Table {
        self.staged.as_mut().unwrap_or(&mut self.table)
    }

    fn apply(&mut self, update: pb::Update) -> Result<Option<ReplicaEvent>, ProtocolError> {
        use pb::update::Body;
        let bad = |e: crate::op::SmError| ProtocolError::BadRecord(e.message);
        Ok(Some(match update.body.ok_or(ProtocolError::Empty)? {
            Body::SyncBegin(b) => {
                self.staged = Some(Table::new(&self.domain)?);
                ReplicaEvent::SyncBegin {
                    subscribers: b.subscribers,
                }
            }
            Body::SyncEnd(_) => {
                if let Some(t) = self.staged.take() {
                    self.table = t;
                }
                self.syncs += 1;
                ReplicaEvent::SyncEnd {
                    subscribers: self.table.index.len(),
                }
            }
            Body::Upsert(s) => {
                let sub = subscriber_from_proto(s, NameCase::Sensitive).map_err(bad)?;
                if let Err(e) = self.target().install(sub.clone()) {
                    self.anomalies.push(e);
                }
                ReplicaEvent::Upsert(sub)
            }
            Body::Remove(r) => {
                let _ = self.target().index.remove(&r.name);
                ReplicaEvent::Remove(r.name)
            }
            Body::VpnUpsert(v) => {
                let vpn = vpn_from_proto(v).map_err(bad)?;
                self.target().install_vpn(vpn.clone());
                ReplicaEvent::VpnUpsert(vpn)
            }
            Body::VpnRemove(v) => {
                let t = self.target();
                t.vpns.remove(&v.name);
                let _ = t.index.remove_vpn(&v.name);
                ReplicaEvent::VpnRemove(v.name)
            }
            Body::Pull(p) => {
                let result = if !p.error.is_empty() {
                    Err(p.error)
                } else {
                    match p.subscriber {
                        None => Ok(None),
                        Some(s) => {
                            let sub = subscriber_from_proto(s, NameCase::Sensitive).map_err(bad)?;
                            if let Err(e) = self.target().install(sub.clone()) {
                                self.anomalies.push(e);
                            }
                            Ok(Some(sub))
                        }
                    }
                };
                ReplicaEvent::Pulled {
                    request_id: p.request_id,
                    result,
                }
            }
        }))
    }

    /// The cumulative acknowledgement to send: every update up to this one is applied.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The failure action `clear-mappings`: forget every subscriber.
    pub fn clear(&mut self) {
        // The domain was accepted when the Welcome arrived, so it builds a table again.
        self.table = Table::new(&self.domain).unwrap_or_else(|_| Table::default_domain());
        self.staged = None;
    }

    /// The Welcome of the current connection.
    pub fn welcome(&self) -> Option<&pb::Welcome> {
        self.welcome.as_ref()
    }

    /// Whether a full sync is being received.
    pub fn syncing(&self) -> bool {
        self.staged.is_some()
    }

    /// Full syncs completed.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Updates the replica could not install as sent (should stay empty).
    pub fn anomalies(&self) -> &[String] {
        &self.anomalies
    }

    /// The subscriber whose mapping is the longest prefix containing `addr`.
    pub fn lookup(&self, addr: IpAddr, vpn: Option<&str>) -> Option<Subscriber> {
        let index = &self.table.index;
        let name = index.lookup(addr, vpn).ok().flatten()?;
        index.get(name)
    }

    /// The subscriber called `name`.
    pub fn get(&self, name: &str) -> Option<Subscriber> {
        self.table.index.get(name)
    }

    /// Subscribers held.
    pub fn len(&self) -> usize {
        self.table.index.len()
    }

    /// Whether it holds no subscriber.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every subscriber held, sorted by name.
    pub fn subscribers(&self) -> Vec<Subscriber> {
        let mut all: Vec<Subscriber> = self.table.index.iter().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// VPNs held.
    pub fn vpns(&self) -> Vec<Vpn> {
        let mut all: Vec<Vpn> = self.table.vpns.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

/// Why the client stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The SM could not be reached.
    #[error("cannot connect to the SM at {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// The SM refused or ended the stream.
    #[error("the SM ended the stream: {} ({:?})", .0.message(), .0.code())]
    Status(tonic::Status),
    /// The SM broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// Nothing from the SM for three keep-alive intervals.
    #[error("no message from the SM for {0:.1} s")]
    KeepAliveTimeout(f64),
    /// The SM closed the stream normally.
    #[error("the SM closed the stream")]
    Closed,
    /// The client was stopped.
    #[error("the client is stopped")]
    Stopped,
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct EpClientOptions {
    /// `http://127.0.0.1:7790`.
    pub endpoint: String,
    /// The Hello to send.
    pub hello: pb::Hello,
    /// Acknowledge updates (turn off only to exercise the SM's back-pressure handling).
    pub ack: bool,
    /// Send keep-alives (turn off only to exercise the SM's failure detection).
    pub keepalives: bool,
    /// Report every upsert and remove as an event; without it only Welcome, sync boundaries,
    /// pull results and the end are reported (a data plane reads the replica instead).
    pub data_events: bool,
}

impl EpClientOptions {
    /// Options for EP `id` at `endpoint`, acknowledging and sending keep-alives.
    pub fn new(endpoint: impl Into<String>, id: impl Into<String>) -> Self {
        EpClientOptions {
            endpoint: endpoint.into(),
            hello: pb::Hello {
                ep_id: id.into(),
                ..pb::Hello::default()
            },
            ack: true,
            keepalives: true,
            data_events: true,
        }
    }

    /// With this cascade role.
    pub fn role(mut self, role: pb::CascadeRole) -> Self {
        self.hello.role = role as i32;
        self
    }
}

/// What the client reports.
#[derive(Debug)]
pub enum ClientEvent {
    /// A message changed the replica.
    Replica(ReplicaEvent),
    /// The connection ended; `cleared` says whether the failure action erased the mappings.
    Ended {
        /// Why.
        error: ClientError,
        /// The replica was cleared (failure action `clear-mappings`).
        cleared: bool,
    },
}

/// Events waiting for the consumer before the client stops reading the SM.
const EVENT_QUEUE: usize = 4096;

type PullWaiters = HashMap<u64, oneshot::Sender<Result<Option<Subscriber>, String>>>;

/// One connection of an EP to the SM.
pub struct EpClient {
    replica: Arc<Mutex<EpReplica>>,
    out: mpsc::Sender<pb::EpMessage>,
    events: mpsc::Receiver<ClientEvent>,
    pulls: Arc<Mutex<PullWaiters>>,
    next_pull: AtomicU64,
    task: tokio::task::JoinHandle<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl EpClient {
    /// Connects, says Hello and waits for the Welcome (a refusal is an error here).
    pub async fn connect(options: EpClientOptions) -> Result<EpClient, ClientError> {
        Self::connect_with(options, EpReplica::new()).await
    }

    /// As [`Self::connect`], keeping the subscribers of an earlier connection until the new
    /// sync replaces them (what an EP does across a reconnect).
    pub async fn connect_with(
        options: EpClientOptions,
        replica: EpReplica,
    ) -> Result<EpClient, ClientError> {
        let channel = tonic::transport::Endpoint::from_shared(options.endpoint.clone())
            .map_err(|source| ClientError::Connect {
                endpoint: options.endpoint.clone(),
                source,
            })?
            .initial_stream_window_size(8 << 20)
            .initial_connection_window_size(16 << 20)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
                endpoint: options.endpoint.clone(),
                source,
            })?;
        let mut grpc = EnforcementPointClient::new(channel)
            .max_decoding_message_size(crate::grpc::MAX_MESSAGE)
            .max_encoding_message_size(crate::grpc::MAX_MESSAGE);
        let (out, out_rx) = mpsc::channel(64);
        let hello = pb::EpMessage {
            body: Some(pb::ep_message::Body::Hello(options.hello.clone())),
        };
        out.send(hello).await.map_err(|_| ClientError::Stopped)?;
        let mut inbound = grpc
            .attach(ReceiverStream::new(out_rx))
            .await
            .map_err(ClientError::Status)?
            .into_inner();
        let replica = Arc::new(Mutex::new(replica));
        // Bounded: a consumer that falls behind slows the reading of the stream (and so the SM,
        // through the window) instead of queueing without limit.
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        // The Welcome comes first; reading it here makes `connect` fail for a refused EP.
        let first = inbound
            .message()
            .await
            .map_err(ClientError::Status)?
            .ok_or(ClientError::Closed)?;
        let keepalive = match &first.body {
            Some(pb::sm_message::Body::Welcome(w)) => {
                Duration::from_millis(u64::from(w.keepalive_interval_ms.max(1)))
            }
            _ => return Err(ProtocolError::NoWelcome.into()),
        };
        let welcome = lock(&replica).handle(first)?;
        for e in welcome {
            let _ = events_tx.send(ClientEvent::Replica(e)).await;
        }
        let pulls: Arc<Mutex<PullWaiters>> = Arc::default();
        let task = tokio::spawn(run(
            inbound,
            out.clone(),
            replica.clone(),
            events_tx,
            pulls.clone(),
            keepalive,
            options,
        ));
        Ok(EpClient {
            replica,
            out,
            events,
            pulls,
            next_pull: AtomicU64::new(1),
            task,
        })
    }

    /// The next event (`None` once the connection ended and every event was read).
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// Waits for the end of the next full sync; returns the subscribers then held.
    pub async fn wait_synced(&mut self) -> Result<usize, ClientError> {
        loop {
            match self.next_event().await {
                Some(ClientEvent::Replica(ReplicaEvent::SyncEnd { subscribers })) => {
                    return Ok(subscribers)
                }
                Some(ClientEvent::Ended { error, .. }) => return Err(error),
                Some(_) => {}
                None => return Err(ClientError::Stopped),
            }
        }
    }

    /// Pull mode: asks the SM who `addr` (in `vpn`) is.
    pub async fn pull(
        &self,
        addr: &str,
        vpn: Option<&str>,
    ) -> Result<Result<Option<Subscriber>, String>, ClientError> {
        let id = self.next_pull.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pulls).insert(id, tx);
        let msg = pb::EpMessage {
            body: Some(pb::ep_message::Body::Pull(pb::PullRequest {
                request_id: id,
                address: addr.to_owned(),
                vpn: vpn.map(str::to_owned),
            })),
        };
        self.out.send(msg).await.map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::Stopped)
    }

    /// Tells the SM this EP's cascade role changed (fail-over).
    pub async fn set_role(&self, role: pb::CascadeRole) -> Result<(), ClientError> {
        self.send(pb::ep_message::Body::Role(pb::RoleChange {
            role: role as i32,
        }))
        .await
    }

    /// Writes a subscriber's opaque state in the SM.
    pub async fn set_state(&self, name: &str, state: Vec<u8>) -> Result<(), ClientError> {
        self.send(pb::ep_message::Body::State(pb::StateUpdate {
            name: name.to_owned(),
            state,
        }))
        .await
    }

    async fn send(&self, body: pb::ep_message::Body) -> Result<(), ClientError> {
        self.out
            .send(pb::EpMessage { body: Some(body) })
            .await
            .map_err(|_| ClientError::Stopped)
    }

    /// The replica (do not hold the guard across an await).
    pub fn replica(&self) -> MutexGuard<'_, EpReplica> {
        lock(&self.replica)
    }

    /// Ends the connection and returns the replica (to reconnect with it).
    pub fn close(self) -> EpReplica {
        self.task.abort();
        let replica = std::mem::take(&mut *lock(&self.replica));
        replica
    }
}

impl Drop for EpClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    mut inbound: tonic::Streaming<pb::SmMessage>,
    out: mpsc::Sender<pb::EpMessage>,
    replica: Arc<Mutex<EpReplica>>,
    events: mpsc::Sender<ClientEvent>,
    pulls: Arc<Mutex<PullWaiters>>,
    keepalive: Duration,
    options: EpClientOptions,
) {
    let mut tick = tokio::time::interval((keepalive / 4).max(Duration::from_millis(5)));
    let mut last_rx = Instant::now();
    let mut last_tx = Instant::now();
    let error = loop {
        tokio::select! {
            msg = inbound.message() => {
                let msg = match msg {
                    Ok(Some(m)) => m,
                    Ok(None) => break ClientError::Closed,
                    Err(status) => break ClientError::Status(status),
                };
                last_rx = Instant::now();
                let has_updates = matches!(msg.body, Some(pb::sm_message::Body::Updates(_)));
                let (result, seq) = {
                    let mut r = lock(&replica);
                    let result = r.handle(msg);
                    (result, r.last_seq())
                };
                let evs = match result {
                    Ok(evs) => evs,
                    Err(e) => break ClientError::Protocol(e),
                };
                if has_updates && options.ack {
                    let ack = pb::EpMessage { body: Some(pb::ep_message::Body::Ack(pb::Ack { seq })) };
                    if out.send(ack).await.is_err() {
                        break ClientError::Stopped;
                    }
                    last_tx = Instant::now();
                }
                for e in evs {
                    if let ReplicaEvent::Pulled { request_id, result } = &e {
                        if let Some(waiter) = lock(&pulls).remove(request_id) {
                            let _ = waiter.send(result.clone());
                        }
                    }
                    let data = matches!(
                        e,
                        ReplicaEvent::Upsert(_)
                            | ReplicaEvent::Remove(_)
                            | ReplicaEvent::VpnUpsert(_)
                            | ReplicaEvent::VpnRemove(_)
                            | ReplicaEvent::KeepAlive
                    );
                    if !data || options.data_events {
                        // A dropped receiver only means nobody listens.
                        let _ = events.send(ClientEvent::Replica(e)).await;
                    }
                }
            }
            _ = tick.tick() => {
                let silent = last_rx.elapsed();
                if silent > keepalive * 3 {
                    break ClientError::KeepAliveTimeout(silent.as_secs_f64());
                }
                if options.keepalives && last_tx.elapsed() >= keepalive {
                    let ka = pb::EpMessage { body: Some(pb::ep_message::Body::KeepAlive(pb::KeepAlive {})) };
                    if out.send(ka).await.is_err() {
                        break ClientError::Stopped;
                    }
                    last_tx = Instant::now();
                }
            }
        }
    };
    let clear = {
        let mut r = lock(&replica);
        let clear = r
            .welcome()
            .is_some_and(|w| w.failure_action == pb::FailureAction::ClearMappings as i32);
        if clear {
            r.clear();
        }
        clear
    };
    tracing::debug!(%error, cleared = clear, "EP connection ended");
    let _ = events
        .send(ClientEvent::Ended {
            error,
            cleared: clear,
        })
        .await;
}
