//! Active/standby SM nodes over one PostgreSQL database: the shell that runs
//! [`brasa_sm::lease::Leadership`] with a [`PgLease`] and turns its transitions into the
//! service's role.
//!
//! * **Staying warm.** A standby's follower thread keeps a ready index of the records from the
//!   database's change log ([`Follower`]: it polls the log's head every [`FOLLOW_INTERVAL`],
//!   reads only the records the new entries name and applies them to the index; a pruned log
//!   makes it read everything again).
//! * **Taking over.** When the lease is won, the fence gets the new token first (so the store
//!   may commit), then the follower applies the tail of the log and hands its index over, and
//!   the service serves from it ([`SmService::activate`]); until that is done the node still
//!   refuses traffic. The tail is read after the take-over, when the old active can no longer
//!   commit, so the index holds every acknowledged change. A node without a replica (its
//!   follower never reached the database) reads and indexes the records in full instead.
//! * **Stepping down** (the lease lost or run out, or a commit fenced): the fence is cleared
//!   and the service returns to standby at once ([`SmService::deactivate`]); EP sessions and
//!   LEG calls are refused with the name and gRPC address of the active node when known. The
//!   follower reads the records again (its index became the service's, which may hold
//!   changes that were never committed) and follows the log.
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
use brasa_subscriber::StoreError;
use brasa_subscriber_pg::change_log::{CatchUp, FollowError, Follower, Promotion};
use brasa_subscriber_pg::lease::{Fence, LeaseAnswer, LeaseRow, NodeRow, PgLease};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::sm_config::HaResolved;

/// What `brasa sm status` shows: this node's view and every node's last report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HaStatus {
    /// This node's name.
    pub node: String,
    /// `active`, `activating` (lease won, tail of the change log being applied) or `standby`.
    pub role: String,
    /// The token this node commits with, while active.
    pub token: Option<u64>,
    /// The lease row as last read: the leader and its fencing token.
    pub leader: Option<LeaderView>,
    /// Every node's last report.
    pub nodes: Vec<NodeView>,
    /// The newest entry of the database's change log, as last read.
    #[serde(default)]
    pub change_log_head: u64,
    /// The ready index of the records this node keeps while it is a standby.
    #[serde(default)]
    pub replica: Option<ReplicaView>,
    /// What this node's follower did since it started.
    #[serde(default)]
    pub follower: FollowerView,
    /// How this node last became active.
    #[serde(default)]
    pub activation: Option<ActivationView>,
    /// How many times it became active, by how it got its records.
    #[serde(default)]
    pub activations: ActivationCounts,
}

/// A standby's index of the records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaView {
    /// The last change-log entry it reflects.
    pub position: u64,
    /// Subscribers it holds.
    pub subscribers: usize,
    /// Change-log entries it has not applied yet (the head minus its position).
    pub behind: u64,
    /// Age of the oldest entry it has not applied, by the database's clock (0: up to date).
    pub lag_ms: i64,
}

/// What the follower did since the node started.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FollowerView {
    /// Reads of every record (one at start; more after a step-down or a pruned log).
    pub full_loads: u64,
    /// Change-log entries applied to the replica.
    pub applied_batches: u64,
    /// Records read for them.
    pub applied_records: u64,
    /// Why it last read every record.
    pub last_full_load: Option<String>,
}

/// How a node became active.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActivationView {
    /// The fencing token it took.
    pub token: u64,
    /// `warm` (the replica plus the tail of the change log) or `full` (every record read).
    pub from: String,
    /// The change-log entry the records reflected.
    pub position: u64,
    /// Entries of the tail applied after the take-over.
    pub tail_batches: u64,
    /// Subscribers it served from.
    pub subscribers: usize,
    /// From the take-over to the index in hand (the tail applied, or every record read and
    /// indexed), in milliseconds.
    pub read_ms: u64,
    /// From the index in hand to serving (the SM core put over it), in milliseconds.
    #[serde(alias = "rebuild_ms")]
    pub serve_ms: u64,
}

/// Activations by how the node got its records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ActivationCounts {
    /// From the warm replica.
    pub warm: u64,
    /// By reading every record.
    pub full: u64,
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
    let (follow, follow_rx) = std::sync::mpsc::channel();
    let follower = FollowerThread {
        follower: Follower::new(&url, service.index_config().clone()),
        status: status.clone(),
        failing: false,
        wait: FOLLOW_INTERVAL,
    };
    std::thread::Builder::new()
        .name("sm-follower".into())
        .spawn(move || follower.run(follow_rx))?;
    let task = Task {
        service,
        fence,
        status: status.clone(),
        lead: Leadership::new(LeaseConfig::new(ha.lease), Instant::now()),
        jobs,
        follow,
    };
    tokio::spawn(task.run());
    Ok(Arc::new(SmHa { status }))
}

struct Task {
    service: SmService,
    fence: Fence,
    status: Arc<Mutex<HaStatus>>,
    lead: Leadership,
    jobs: std::sync::mpsc::Sender<LeaseJob>,
    follow: std::sync::mpsc::Sender<FollowJob>,
}

/// The records being brought up to date for the token this node just took.
struct Loading {
    token: u64,
    since: Instant,
    promotion: oneshot::Receiver<Result<Promotion, FollowError>>,
}

impl Task {
    async fn run(mut self) {
        let mut in_flight: Option<oneshot::Receiver<Result<LeaseReply, ()>>> = None;
        let mut loading: Option<Loading> = None;
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
                loaded = async { (&mut loading.as_mut().expect("guarded").promotion).await }, if loading.is_some() => {
                    let Some(l) = loading.take() else { continue };
                    self.finish_activation(l, loaded, &mut active);
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

    fn transition(&mut self, t: Transition, loading: &mut Option<Loading>, active: &mut bool) {
        match t {
            Transition::BecameActive { token } => {
                tracing::info!(
                    token,
                    "subscriber manager lease taken: reading the tail of the change log"
                );
                self.fence.set(Some(token));
                let mut status = lock(&self.status);
                status.role = "activating".into();
                status.token = Some(token);
                drop(status);
                let (reply, promotion) = oneshot::channel();
                let _ = self.follow.send(FollowJob::Promote(reply));
                *loading = Some(Loading {
                    token,
                    since: Instant::now(),
                    promotion,
                });
            }
            Transition::SteppedDown { reason } => {
                tracing::warn!(reason, "subscriber manager stepping down to standby");
                self.fence.set(None);
                // A promotion still on its way is dropped with its receiver.
                *loading = None;
                let _ = self.follow.send(FollowJob::Follow);
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
        loading: Loading,
        promoted: Result<Result<Promotion, FollowError>, oneshot::error::RecvError>,
        active: &mut bool,
    ) {
        let token = loading.token;
        if self.lead.token() != Some(token) {
            return;
        }
        let promotion = match promoted {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the records after taking the lease");
                self.give_up(token);
                return;
            }
            Err(_) => {
                tracing::error!("the follower thread stopped");
                self.give_up(token);
                return;
            }
        };
        let read_ms = millis(loading.since.elapsed());
        let mut view = ActivationView {
            token,
            from: if promotion.reload.is_some() {
                "full"
            } else {
                "warm"
            }
            .into(),
            position: promotion.position,
            tail_batches: promotion.tail_batches,
            subscribers: promotion.index.len(),
            read_ms,
            serve_ms: 0,
        };
        let started = Instant::now();
        match self.service.activate(promotion.index) {
            Ok(()) => {
                *active = true;
                view.serve_ms = millis(started.elapsed());
                tracing::info!(
                    token,
                    from = view.from,
                    position = view.position,
                    tail_batches = view.tail_batches,
                    read_ms = view.read_ms,
                    serve_ms = view.serve_ms,
                    "subscriber manager active"
                );
                let mut status = lock(&self.status);
                status.role = "active".into();
                match promotion.reload {
                    None => status.activations.warm += 1,
                    Some(_) => status.activations.full += 1,
                }
                status.activation = Some(view);
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

/// How often a standby's follower looks at the change log's head (one indexed read of one
/// row when nothing changed).
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);

/// The longest wait between catch-ups that keep failing: each failure doubles the wait from
/// [`FOLLOW_INTERVAL`], so that records which do not fit the configuration (each attempt then
/// reads everything) or an unreachable database are not retried ten times a second.
const FOLLOW_BACKOFF_MAX: Duration = Duration::from_secs(10);

enum FollowJob {
    /// Catch up one last time and hand the replica over (the node holds the lease).
    Promote(oneshot::Sender<Result<Promotion, FollowError>>),
    /// Follow the change log again (the node stepped down).
    Follow,
}

/// The standby's follower: its own connection (blocking), the replica, and the status it
/// publishes. It stops when the leadership task drops its channel.
struct FollowerThread {
    follower: Follower,
    status: Arc<Mutex<HaStatus>>,
    /// The last catch-up failed (logged once until one succeeds).
    failing: bool,
    /// The wait before the next catch-up.
    wait: Duration,
}

impl FollowerThread {
    fn run(mut self, jobs: std::sync::mpsc::Receiver<FollowJob>) {
        use std::sync::mpsc::RecvTimeoutError;
        let mut following = true;
        loop {
            let job = if following {
                jobs.recv_timeout(self.wait)
            } else {
                jobs.recv().map_err(|_| RecvTimeoutError::Disconnected)
            };
            match job {
                Ok(FollowJob::Promote(reply)) => {
                    following = false;
                    let promotion = self.follower.promote();
                    self.publish();
                    let _ = reply.send(promotion);
                }
                Ok(FollowJob::Follow) => {
                    following = true;
                    self.catch_up();
                }
                Err(RecvTimeoutError::Timeout) => self.catch_up(),
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn catch_up(&mut self) {
        match self.follower.catch_up() {
            Ok(outcome) => {
                if let CatchUp::Reloaded(why) = &outcome {
                    tracing::info!(
                        reason = %why,
                        subscribers = self.follower.replica().map_or(0, |r| r.subscribers()),
                        "standby replica read in full"
                    );
                    lock(&self.status).follower.last_full_load = Some(why.to_string());
                }
                self.failing = false;
                self.wait = FOLLOW_INTERVAL;
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(error = %e, "the standby cannot follow the change log");
                }
                self.failing = true;
                self.wait = (self.wait * 2).min(FOLLOW_BACKOFF_MAX);
            }
        }
        self.publish();
    }

    fn publish(&self) {
        let counters = self.follower.counters();
        let mut status = lock(&self.status);
        status.follower.full_loads = counters.full_loads;
        status.follower.applied_batches = counters.applied_batches;
        status.follower.applied_records = counters.applied_records;
        let head = status.change_log_head;
        status.replica = self.follower.replica().map(|r| ReplicaView {
            position: r.position(),
            subscribers: r.subscribers(),
            behind: head.saturating_sub(r.position()),
            lag_ms: status.replica.as_ref().map_or(0, |v| v.lag_ms),
        });
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
        let position = lock(&self.status).replica.as_ref().map(|r| r.position);
        let client = self.connected()?;
        client.report(&grpc, role, held)?;
        let row = client.status()?;
        let nodes = client.nodes()?;
        let log = client.change_log(position)?;
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
        status.change_log_head = log.head;
        if let Some(replica) = &mut status.replica {
            replica.behind = log.head.saturating_sub(replica.position);
            replica.lag_ms = log.unapplied_age_ms.unwrap_or(0);
        }
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
