//! Active/standby SM nodes over one PostgreSQL database: the shell that runs
//! [`brasa_sm::lease::Leadership`] with a [`PgLease`] and turns its transitions into the
//! service's role.
//!
//! * **Taking over.** When the lease is won, the fence gets the new token first (so the store
//!   may commit), then the records are read from the database and the index rebuilt
//!   ([`SmService::activate`]); until that is done the node still refuses traffic. The read
//!   happens after the take-over, when the old active can no longer commit, so it sees every
//!   acknowledged change.
//! * **Stepping down** (the lease lost or run out, or a commit fenced): the fence is cleared
//!   and the service returns to standby at once ([`SmService::deactivate`]); EP sessions and
//!   LEG calls are refused with the name and gRPC address of the active node when known.
//! * **Store failure** while active: the node gives the lease up (stops renewing), so that a
//!   standby takes over, and serves nothing until restarted.
//! * The lease connection is blocking (the `postgres` crate): it lives on its own thread, so a
//!   slow database delays renewals but never the runtime, and a renewal that hangs past the
//!   lease steps the node down by its own clock.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brasa_sm::lease::{Leadership, LeaseConfig, LeaseReply, LeaseRequest, Transition};
use brasa_sm_net::SmService;
use brasa_subscriber::{Snapshot, StoreError, SubscriberStore};
use brasa_subscriber_pg::lease::{Fence, LeaseAnswer, LeaseRow, NodeRow, PgLease};
use brasa_subscriber_pg::PgStore;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::sm_config::HaResolved;

/// What `brasa sm status` shows: this node's view and every node's last report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HaStatus {
    /// This node's name.
    pub node: String,
    /// `active`, `activating` (lease won, index being rebuilt) or `standby`.
    pub role: String,
    /// The token this node commits with, while active.
    pub token: Option<u64>,
    /// The lease row as last read: the leader and its fencing token.
    pub leader: Option<LeaderView>,
    /// Every node's last report.
    pub nodes: Vec<NodeView>,
}

/// The lease row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaderView {
    /// The node that last took the lease.
    pub node: String,
    /// Its fencing token.
    pub token: u64,
    /// Milliseconds until the lease expires by the database's clock (negative: expired).
    pub expires_in_ms: i64,
}

/// One node's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeView {
    /// Its name.
    pub node: String,
    /// Its gRPC address.
    pub grpc: String,
    /// `active` or `standby`.
    pub role: String,
    /// The token it reported (0 as a standby).
    pub token: u64,
    /// Milliseconds since its last report.
    pub seen_ms_ago: i64,
}

/// The running leadership task.
pub struct SmHa {
    status: Arc<Mutex<HaStatus>>,
}

impl SmHa {
    /// The current view.
    pub fn status(&self) -> HaStatus {
        lock(&self.status).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A question for the lease thread, and where the answer goes.
struct Ask {
    request: LeaseRequest,
    reply: oneshot::Sender<Result<LeaseReply, ()>>,
}

enum LeaseJob {
    Ask(Ask),
    /// Give up the lease held with this token (clean shutdown), then stop.
    Release(Option<u64>),
}

/// Starts the leadership task of `service` (opened as a standby over a store fenced by
/// `fence`).
pub fn start(
    service: SmService,
    ha: HaResolved,
    url: String,
    fence: Fence,
    grpc: SocketAddr,
) -> anyhow::Result<Arc<SmHa>> {
    let status = Arc::new(Mutex::new(HaStatus {
        node: ha.node.clone(),
        role: "standby".into(),
        ..HaStatus::default()
    }));
    let (jobs, rx) = std::sync::mpsc::channel();
    let thread = LeaseThread {
        url: url.clone(),
        node: ha.node.clone(),
        lease: ha.lease,
        grpc: grpc.to_string(),
        status: status.clone(),
        service: service.clone(),
        fence: fence.clone(),
        client: None,
    };
    std::thread::Builder::new()
        .name("sm-lease".into())
        .spawn(move || thread.run(rx))?;
    let task = Task {
        service,
        fence,
        url,
        status: status.clone(),
        lead: Leadership::new(LeaseConfig::new(ha.lease), Instant::now()),
        jobs,
    };
    tokio::spawn(task.run());
    Ok(Arc::new(SmHa { status }))
}

struct Task {
    service: SmService,
    fence: Fence,
    url: String,
    status: Arc<Mutex<HaStatus>>,
    lead: Leadership,
    jobs: std::sync::mpsc::Sender<LeaseJob>,
}

type Loading = tokio::task::JoinHandle<Result<Snapshot, StoreError>>;

impl Task {
    async fn run(mut self) {
        let mut in_flight: Option<oneshot::Receiver<Result<LeaseReply, ()>>> = None;
        // The records being read for the token this node just took.
        let mut loading: Option<(u64, Loading)> = None;
        let mut active = false;
        loop {
            if let Some(t) = self.lead.handle_timeout(Instant::now()) {
                self.transition(t, &mut loading, &mut active);
            }
            if in_flight.is_none() {
                if let Some(request) = self.lead.poll_request(Instant::now()) {
                    let (reply, rx) = oneshot::channel();
                    if self
                        .jobs
                        .send(LeaseJob::Ask(Ask { request, reply }))
                        .is_err()
                    {
                        break;
                    }
                    in_flight = Some(rx);
                }
            }
            if active && self.service.standby().is_none() && self.service.refusal().is_some() {
                // The store failed (not fenced): this node cannot commit; let another take over.
                tracing::error!(
                    "the subscriber store failed while active: giving up the lease to a standby"
                );
                self.fence.set(None);
                lock(&self.status).role = "failed".into();
                let _ = self.jobs.send(LeaseJob::Release(self.lead.token()));
                return;
            }
            let deadline = tokio::time::Instant::from_std(self.lead.poll_timeout());
            tokio::select! {
                reply = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                    in_flight = None;
                    let reply = reply.unwrap_or(Err(()));
                    if let Some(t) = self.lead.handle_reply(Instant::now(), reply) {
                        self.transition(t, &mut loading, &mut active);
                    }
                }
                loaded = async { (&mut loading.as_mut().expect("guarded").1).await }, if loading.is_some() => {
                    let Some((token, _)) = loading.take() else { continue };
                    self.finish_activation(token, loaded, &mut active);
                }
                _ = self.service.fenced() => {
                    // A stale wake-up (from a term already ended) finds the service serving.
                    if self.service.standby().is_some() {
                        if let Some(t) = self.lead.fenced() {
                            self.transition(t, &mut loading, &mut active);
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.service.stopped() => break,
            }
        }
        let _ = self.jobs.send(LeaseJob::Release(self.lead.token()));
    }

    fn transition(
        &mut self,
        t: Transition,
        loading: &mut Option<(u64, Loading)>,
        active: &mut bool,
    ) {
        match t {
            Transition::BecameActive { token } => {
                tracing::info!(token, "subscriber manager lease taken: reading the records");
                self.fence.set(Some(token));
                let mut status = lock(&self.status);
                status.role = "activating".into();
                status.token = Some(token);
                drop(status);
                let url = self.url.clone();
                let load = tokio::task::spawn_blocking(move || PgStore::connect(&url)?.load());
                *loading = Some((token, load));
            }
            Transition::SteppedDown { reason } => {
                tracing::warn!(reason, "subscriber manager stepping down to standby");
                self.fence.set(None);
                if let Some((_, load)) = loading.take() {
                    load.abort();
                }
                *active = false;
                let mut status = lock(&self.status);
                status.role = "standby".into();
                status.token = None;
                drop(status);
                self.service
                    .deactivate(format!("this subscriber manager is a standby ({reason})"));
            }
        }
    }

    fn finish_activation(
        &mut self,
        token: u64,
        loaded: Result<Result<Snapshot, StoreError>, tokio::task::JoinError>,
        active: &mut bool,
    ) {
        if self.lead.token() != Some(token) {
            return;
        }
        let snapshot = match loaded {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the records after taking the lease");
                self.give_up(token);
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the records failed");
                self.give_up(token);
                return;
            }
        };
        let started = Instant::now();
        match self.service.activate(snapshot) {
            Ok(()) => {
                *active = true;
                lock(&self.status).role = "active".into();
                tracing::info!(
                    token,
                    ms = started.elapsed().as_millis() as u64,
                    "subscriber manager active"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "the stored records do not restore");
                self.give_up(token);
            }
        }
    }

    /// This node cannot serve: it lets the lease go and steps down (a standby, with a healthy
    /// store, takes over).
    fn give_up(&mut self, token: u64) {
        self.fence.set(None);
        let _ = self.jobs.send(LeaseJob::Release(Some(token)));
        if let Some(Transition::SteppedDown { .. }) = self.lead.fenced() {
            let mut status = lock(&self.status);
            status.role = "standby".into();
            status.token = None;
        }
    }
}

/// The blocking side: the lease connection (reconnected after a failure), the node reports
/// and the status reads.
struct LeaseThread {
    url: String,
    node: String,
    lease: Duration,
    grpc: String,
    status: Arc<Mutex<HaStatus>>,
    service: SmService,
    fence: Fence,
    client: Option<PgLease>,
}

impl LeaseThread {
    fn run(mut self, rx: std::sync::mpsc::Receiver<LeaseJob>) {
        while let Ok(job) = rx.recv() {
            match job {
                LeaseJob::Ask(ask) => {
                    let answer = self.ask(ask.request);
                    let _ = ask.reply.send(answer);
                    if let Err(e) = self.report() {
                        tracing::debug!(error = %e, "SM node report failed");
                    }
                }
                LeaseJob::Release(token) => {
                    if let (Some(token), Ok(client)) = (token, self.connected()) {
                        if let Err(e) = client.release(token) {
                            tracing::warn!(error = %e, "could not release the SM lease");
                        }
                    }
                    // A node that stopped must not look like a live standby.
                    let grpc = self.grpc.clone();
                    if let Ok(client) = self.connected() {
                        let _ = client.report(&grpc, "stopped", None);
                    }
                    return;
                }
            }
        }
    }

    fn connected(&mut self) -> Result<&mut PgLease, StoreError> {
        if self.client.is_none() {
            self.client = Some(PgLease::connect(&self.url, &self.node)?);
        }
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::Fenced("no lease connection".into()))
    }

    fn ask(&mut self, request: LeaseRequest) -> Result<LeaseReply, ()> {
        let lease = self.lease;
        let answer = self.connected().and_then(|c| match request {
            LeaseRequest::Acquire => c.acquire(lease),
            LeaseRequest::Renew { token } => c.renew(token, lease),
        });
        match answer {
            Ok(LeaseAnswer::Held(token)) => Ok(LeaseReply::Held { token }),
            Ok(LeaseAnswer::HeldBy { holder, token }) => Ok(LeaseReply::HeldBy { holder, token }),
            Ok(LeaseAnswer::Lost) => Ok(LeaseReply::Lost),
            Err(e) => {
                tracing::warn!(error = %e, "SM lease request failed");
                self.client = None;
                Err(())
            }
        }
    }

    /// Records this node's role and reads the lease row and every node's report.
    fn report(&mut self) -> Result<(), StoreError> {
        let held = self.fence.get();
        let role = if held.is_some() { "active" } else { "standby" };
        let grpc = self.grpc.clone();
        let client = self.connected()?;
        client.report(&grpc, role, held)?;
        let row = client.status()?;
        let nodes = client.nodes()?;
        let leader_grpc = nodes
            .iter()
            .find(|n| n.name == row.holder)
            .map(|n| n.grpc.clone());
        if row.holder != self.node && row.expires_in_ms > 0 {
            self.service.set_standby_reason(standby_reason(
                &self.node,
                &row,
                leader_grpc.as_deref(),
            ));
        }
        let mut status = lock(&self.status);
        status.leader = (!row.holder.is_empty()).then(|| LeaderView {
            node: row.holder.clone(),
            token: row.token,
            expires_in_ms: row.expires_in_ms,
        });
        status.nodes = nodes.into_iter().map(node_view).collect();
        Ok(())
    }
}

fn node_view(n: NodeRow) -> NodeView {
    NodeView {
        node: n.name,
        grpc: n.grpc,
        role: n.role,
        token: n.token,
        seen_ms_ago: n.seen_ms_ago,
    }
}

fn standby_reason(node: &str, row: &LeaseRow, grpc: Option<&str>) -> String {
    match grpc {
        Some(grpc) => format!(
            "this subscriber manager ({node}) is a standby; the active one is {} at {grpc} \
             (fencing token {})",
            row.holder, row.token
        ),
        None => format!(
            "this subscriber manager ({node}) is a standby; the active one is {} (fencing \
             token {})",
            row.holder, row.token
        ),
    }
}
