//! Enforcement-point sessions, sans-IO: connect, full sync, sequenced updates with a window of
//! unacknowledged updates, pull lookups, keep-alives, quarantine and cascade pairs.
//!
//! Nothing here reads a clock or touches a socket: every entry point takes `now`, and what must
//! go to an EP comes out of [`EpTable::poll_transmit`]. The shell calls `poll_transmit` for the
//! sessions [`EpTable::take_wakeups`] names whenever it can write to their streams.
//!
//! **Full sync without a snapshot.** A sync walks the index by storage id with a cursor
//! (`SubscriberIndex::domain_members_from`), a batch per message, while the index keeps changing.
//! A committed change for a subscriber whose id is at or above the cursor is not queued, because
//! the walk will send its latest state; one below the cursor was already sent and is queued. So
//! each subscriber reaches the EP once per sync with its latest state, in bounded memory, and a
//! 1 M-subscriber sync never stops the LEGs.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use brasa_subscriber::{ChangeSet, DomainEvent, SubscriberIndex};

use crate::config::{EpConfig, EpMode, FailureAction, SmConfig};
use crate::convert::{address, subscriber_into_proto, subscriber_to_proto, vpn_to_proto};
use crate::op::{ErrorKind, Op, SmError};
use crate::pb;

/// Identifies one connection of one EP (unique for the life of the process).
pub type SessionId = u64;

/// What the shell should do next for one session.
#[derive(Debug)]
pub enum Transmit {
    /// Send this message.
    Message(pb::SmMessage),
    /// End the stream with this error (the session is already gone from the table).
    Close(SmError),
    /// Nothing to send now; wait for a wake-up.
    Idle,
    /// The session does not exist (the EP disconnected).
    Gone,
}

/// The role of a session in its cascade pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Not in a pair.
    Single,
    /// The pair member that is updated.
    Active,
    /// The pair member that learns from the active one and is not updated.
    Standby,
}

impl Role {
    /// The name in operator output and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Single => "single",
            Role::Active => "active",
            Role::Standby => "standby",
        }
    }
}

/// What an EP is doing, as the operator sees it (`brasa sm eps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EpState {
    /// No connection.
    Disconnected,
    /// Connected; a full sync is running (or due).
    Syncing,
    /// Connected and in step with the SM.
    Synced,
    /// Connected as the standby of its cascade pair (not updated).
    Standby,
    /// Refused until its quarantine ends.
    Quarantined,
}

impl EpState {
    /// The name in operator output and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EpState::Disconnected => "disconnected",
            EpState::Syncing => "syncing",
            EpState::Synced => "synced",
            EpState::Standby => "standby",
            EpState::Quarantined => "quarantined",
        }
    }
}

/// Where an EP is in the quarantine cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuarantineState {
    /// Never quarantined, or long enough ago.
    None,
    /// Refused until the quarantine timeout passes.
    Quarantined,
    /// Back, but a new failure now doubles the timeout.
    PostQuarantine,
}

impl QuarantineState {
    /// The name in operator output and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineState::None => "none",
            QuarantineState::Quarantined => "quarantined",
            QuarantineState::PostQuarantine => "post-quarantine",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quarantine {
    None,
    Active { until: Instant },
    Post { until: Instant },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncState {
    /// No sync in progress.
    Idle,
    /// A sync is due: SyncBegin and the VPNs go out with the next message.
    Pending,
    /// Sending members from this storage id on.
    Members { cursor: u32 },
}

struct Session {
    sid: SessionId,
    role: Role,
    connected_at: Instant,
    last_rx: Instant,
    last_tx: Instant,
    welcome: Option<pb::Welcome>,
    next_seq: u64,
    acked: u64,
    /// Since when acknowledgements have not progressed while updates are outstanding.
    ack_wait_since: Option<Instant>,
    sync: SyncState,
    sync_sent: u64,
    sync_total: u64,
    synced: bool,
    queue: VecDeque<pb::Update>,
    sent_vpns: HashSet<String>,
    pulled: HashSet<String>,
    keepalive_due: bool,
}

impl Session {
    fn in_flight(&self) -> u64 {
        self.next_seq - 1 - self.acked
    }

    fn receives(&self) -> bool {
        self.role != Role::Standby
    }
}

/// Counters of one EP (since the SM started).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct EpCounters {
    /// Connections accepted.
    pub connections: u64,
    /// Connections refused (quarantine, bad Hello).
    pub refused: u64,
    /// Full syncs started.
    pub syncs: u64,
    /// Updates sent.
    pub updates_sent: u64,
    /// Pull requests answered.
    pub pulls: u64,
    /// Pull requests that found a subscriber of the EP's domain.
    pub pull_hits: u64,
    /// Link failures (keep-alive timeout, disconnect).
    pub failures: u64,
    /// Times quarantined.
    pub quarantines: u64,
    /// Cascade fail-overs to this EP.
    pub failovers: u64,
}

struct EpSlot {
    config: EpConfig,
    partner: Option<usize>,
    session: Option<Session>,
    quarantine: Quarantine,
    quarantine_timeout: Duration,
    quarantine_reason: String,
    last_failure: Option<String>,
    counters: EpCounters,
}

/// What an operator sees of one EP (`brasa sm eps`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EpView {
    /// Configured id.
    pub id: String,
    /// Domain.
    pub domain: String,
    /// Push or pull.
    pub mode: EpMode,
    /// Failure action.
    pub failure_action: FailureAction,
    /// Cascade partner.
    pub cascade_partner: Option<String>,
    /// What it is doing.
    pub state: EpState,
    /// Role of the current connection.
    pub role: Option<Role>,
    /// Current connection number.
    pub session: Option<SessionId>,
    /// Seconds since the current connection was accepted.
    pub connected_for_s: Option<u64>,
    /// Highest sequence number sent on the current connection.
    pub seq_sent: u64,
    /// Highest sequence number acknowledged.
    pub seq_acked: u64,
    /// Updates queued, not yet sent.
    pub backlog: usize,
    /// Subscribers sent by the running sync, and how many it will send.
    pub sync_progress: Option<(u64, u64)>,
    /// Where it is in the quarantine cycle.
    pub quarantine: QuarantineState,
    /// Seconds left in the current quarantine or post-quarantine period.
    pub quarantine_left_s: Option<u64>,
    /// The quarantine timeout the next quarantine would use (doubles inside post-quarantine).
    pub quarantine_timeout_s: u64,
    /// Why it was last quarantined.
    pub quarantine_reason: Option<String>,
    /// The last link failure.
    pub last_failure: Option<String>,
    /// Counters.
    pub counters: EpCounters,
}

/// Every configured EP and its current session.
pub struct EpTable {
    slots: Vec<EpSlot>,
    by_id: HashMap<String, usize>,
    sessions: HashMap<SessionId, usize>,
    closed: HashMap<SessionId, SmError>,
    wake: Vec<SessionId>,
    next_sid: SessionId,
    keepalive: Duration,
    window: u64,
    max_backlog: usize,
    ack_timeout: Duration,
    quarantine_timeout: Duration,
    post_quarantine: Duration,
    batch: usize,
}

impl EpTable {
    /// The table of `config.eps` (validated by [`SmConfig::validate`]).
    pub fn new(config: &SmConfig) -> Self {
        let by_id: HashMap<String, usize> = config
            .eps
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i))
            .collect();
        let slots = config
            .eps
            .iter()
            .map(|e| EpSlot {
                partner: e
                    .cascade_partner
                    .as_ref()
                    .and_then(|p| by_id.get(p).copied()),
                config: e.clone(),
                session: None,
                quarantine: Quarantine::None,
                quarantine_timeout: config.quarantine_timeout,
                quarantine_reason: String::new(),
                last_failure: None,
                counters: EpCounters::default(),
            })
            .collect();
        EpTable {
            slots,
            by_id,
            sessions: HashMap::new(),
            closed: HashMap::new(),
            wake: Vec::new(),
            next_sid: 1,
            keepalive: config.keepalive_interval,
            window: config.window as u64,
            max_backlog: config.max_backlog,
            ack_timeout: config.ack_timeout,
            quarantine_timeout: config.quarantine_timeout,
            post_quarantine: config.post_quarantine,
            batch: config.batch,
        }
    }

    /// Sessions with something new to send (or to close); drained.
    pub fn take_wakeups(&mut self) -> Vec<SessionId> {
        let mut out = std::mem::take(&mut self.wake);
        out.sort_unstable();
        out.dedup();
        out
    }

    fn slot_of(&self, ep: &str) -> Result<usize, SmError> {
        self.by_id.get(ep).copied().ok_or_else(|| {
            let mut known: Vec<&str> = self.by_id.keys().map(String::as_str).collect();
            known.sort_unstable();
            SmError::not_found(format!(
                "EP {ep:?} is not configured (configured: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    /// An EP's Hello: refuses or opens a session (replacing an older one of the same EP) and
    /// starts its sync. The first transmit of the session is the Welcome.
    pub fn connect(&mut self, now: Instant, hello: &pb::Hello) -> Result<SessionId, SmError> {
        let i = self.slot_of(&hello.ep_id)?;
        match self.check_hello(i, now, hello) {
            Ok(role) => Ok(self.open(i, now, role)),
            Err(e) => {
                self.slots[i].counters.refused += 1;
                Err(e)
            }
        }
    }

    fn check_hello(&mut self, i: usize, now: Instant, hello: &pb::Hello) -> Result<Role, SmError> {
        self.expire_quarantine(i, now);
        let slot = &self.slots[i];
        let cfg = &slot.config;
        if !hello.domain.is_empty() && hello.domain != cfg.domain {
            return Err(SmError::invalid(format!(
                "EP {:?} is configured for domain {:?}, not {:?}",
                cfg.id, cfg.domain, hello.domain
            )));
        }
        let mode = pb::Mode::try_from(hello.mode).unwrap_or(pb::Mode::Unspecified);
        let wanted = mode_to_proto(cfg.mode);
        if mode != pb::Mode::Unspecified && mode != wanted {
            return Err(SmError::invalid(format!(
                "EP {:?} is configured for {} mode, not {}",
                cfg.id,
                cfg.mode.as_str(),
                if mode == pb::Mode::Push {
                    EpMode::Push.as_str()
                } else {
                    EpMode::Pull.as_str()
                }
            )));
        }
        let role = self.role_of(i, hello.role)?;
        if let Quarantine::Active { until } = self.slots[i].quarantine {
            let left = until.saturating_duration_since(now).as_secs().max(1);
            return Err(SmError::new(
                ErrorKind::Unavailable,
                format!(
                    "EP {:?} is quarantined for another {left} s ({}); `brasa sm release-quarantine {}` lifts it",
                    cfg.id, self.slots[i].quarantine_reason, cfg.id
                ),
            ));
        }
        Ok(role)
    }

    fn role_of(&self, i: usize, role: i32) -> Result<Role, SmError> {
        let slot = &self.slots[i];
        let role = pb::CascadeRole::try_from(role).unwrap_or(pb::CascadeRole::RoleUnspecified);
        match (slot.config.cascade_partner.as_deref(), role) {
            (None, pb::CascadeRole::RoleUnspecified | pb::CascadeRole::Active) => Ok(Role::Single),
            (None, pb::CascadeRole::Standby) => Err(SmError::invalid(format!(
                "EP {:?} is not in a cascade pair; it cannot be standby",
                slot.config.id
            ))),
            (Some(p), pb::CascadeRole::RoleUnspecified) => Err(SmError::invalid(format!(
                "EP {:?} is in a cascade pair with {p:?}: its Hello must say ACTIVE or STANDBY",
                slot.config.id
            ))),
            (Some(_), pb::CascadeRole::Active) => Ok(Role::Active),
            (Some(_), pb::CascadeRole::Standby) => Ok(Role::Standby),
        }
    }

    fn open(&mut self, i: usize, now: Instant, role: Role) -> SessionId {
        if let Some(old) = self.slots[i].session.take() {
            self.sessions.remove(&old.sid);
            self.close_sid(
                old.sid,
                SmError::new(
                    ErrorKind::Unavailable,
                    "replaced by a newer connection of the same EP",
                ),
            );
        }
        let sid = self.next_sid;
        self.next_sid += 1;
        let slot = &mut self.slots[i];
        slot.counters.connections += 1;
        let cfg = &slot.config;
        let welcome = pb::Welcome {
            session: sid,
            mode: mode_to_proto(cfg.mode) as i32,
            domain: cfg.domain.clone(),
            failure_action: match cfg.failure_action {
                FailureAction::Ignore => pb::FailureAction::Ignore,
                FailureAction::ClearMappings => pb::FailureAction::ClearMappings,
            } as i32,
            keepalive_interval_ms: u32::try_from(self.keepalive.as_millis()).unwrap_or(u32::MAX),
            role: role_to_proto(role) as i32,
        };
        slot.session = Some(Session {
            sid,
            role,
            connected_at: now,
            last_rx: now,
            last_tx: now,
            welcome: Some(welcome),
            next_seq: 1,
            acked: 0,
            ack_wait_since: None,
            sync: SyncState::Idle,
            sync_sent: 0,
            sync_total: 0,
            synced: false,
            queue: VecDeque::new(),
            sent_vpns: HashSet::new(),
            pulled: HashSet::new(),
            keepalive_due: false,
        });
        tracing::info!(ep = %cfg.id, session = sid, ?role, "EP connected");
        self.sessions.insert(sid, i);
        if role == Role::Active {
            self.demote_partner(i);
        }
        if role != Role::Standby {
            self.start_sync(i);
        }
        self.wake.push(sid);
        sid
    }

    fn demote_partner(&mut self, i: usize) {
        let Some(p) = self.slots[i].partner else {
            return;
        };
        let partner_id = self.slots[p].config.id.clone();
        if let Some(s) = self.slots[p].session.as_mut() {
            if s.role == Role::Active {
                tracing::info!(ep = %partner_id, "cascade partner became active; this EP is now standby");
                s.role = Role::Standby;
                s.sync = SyncState::Idle;
                s.queue.clear();
            }
        }
    }

    fn start_sync(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if let Some(s) = slot.session.as_mut() {
            slot.counters.syncs += 1;
            s.sync = SyncState::Pending;
            s.synced = false;
            s.queue.clear();
            s.sent_vpns.clear();
            s.pulled.clear();
            s.sync_sent = 0;
            self.wake.push(s.sid);
        }
    }

    fn close_sid(&mut self, sid: SessionId, why: SmError) {
        self.closed.insert(sid, why);
        self.wake.push(sid);
    }

    /// Ends the current session of slot `i` (link failure or quarantine).
    fn drop_session(&mut self, i: usize, why: SmError) {
        if let Some(s) = self.slots[i].session.take() {
            self.sessions.remove(&s.sid);
            self.close_sid(s.sid, why);
        }
    }

    fn fail(&mut self, i: usize, reason: String) {
        let slot = &mut self.slots[i];
        tracing::warn!(ep = %slot.config.id, %reason, "EP link failure");
        slot.counters.failures += 1;
        slot.last_failure = Some(reason.clone());
        self.drop_session(i, SmError::new(ErrorKind::Unavailable, reason));
    }

    fn quarantine(&mut self, i: usize, now: Instant, reason: String) {
        let slot = &mut self.slots[i];
        let timeout = match slot.quarantine {
            Quarantine::Post { until } if now < until => slot.quarantine_timeout * 2,
            _ => self.quarantine_timeout,
        };
        slot.quarantine_timeout = timeout;
        slot.quarantine = Quarantine::Active {
            until: now + timeout,
        };
        slot.quarantine_reason = reason.clone();
        slot.counters.quarantines += 1;
        slot.last_failure = Some(format!("quarantined: {reason}"));
        tracing::warn!(ep = %slot.config.id, timeout_s = timeout.as_secs(), %reason, "EP quarantined");
        let message = format!(
            "quarantined for {} s: {reason}",
            timeout.as_secs_f64().ceil() as u64
        );
        self.drop_session(i, SmError::new(ErrorKind::Unavailable, message));
    }

    fn expire_quarantine(&mut self, i: usize, now: Instant) {
        let slot = &mut self.slots[i];
        match slot.quarantine {
            Quarantine::Active { until } if now >= until => {
                tracing::info!(ep = %slot.config.id, "quarantine over; post-quarantine period begins");
                slot.quarantine = Quarantine::Post {
                    until: now + self.post_quarantine,
                };
            }
            Quarantine::Post { until } if now >= until => {
                slot.quarantine = Quarantine::None;
                slot.quarantine_timeout = self.quarantine_timeout;
            }
            _ => {}
        }
    }

    /// The operator lifts a quarantine: the EP may reconnect at once, and the timeout is back
    /// to its initial value.
    pub fn release_quarantine(&mut self, ep: &str) -> Result<(), SmError> {
        let i = self.slot_of(ep)?;
        let slot = &mut self.slots[i];
        if slot.quarantine == Quarantine::None {
            return Err(SmError::new(
                ErrorKind::FailedPrecondition,
                format!("EP {ep:?} is not quarantined"),
            ));
        }
        tracing::info!(ep, "quarantine released by the operator");
        slot.quarantine = Quarantine::None;
        slot.quarantine_timeout = self.quarantine_timeout;
        Ok(())
    }

    /// The operator asks for a full resynchronisation of a connected EP.
    pub fn resync(&mut self, ep: &str) -> Result<(), SmError> {
        let i = self.slot_of(ep)?;
        match &self.slots[i].session {
            None => Err(SmError::new(
                ErrorKind::FailedPrecondition,
                format!("EP {ep:?} is not connected"),
            )),
            Some(s) if s.role == Role::Standby => Err(SmError::new(
                ErrorKind::FailedPrecondition,
                format!("EP {ep:?} is the standby of its cascade pair and is not updated"),
            )),
            Some(_) => {
                self.start_sync(i);
                Ok(())
            }
        }
    }

    /// A message from an EP. Returns an operation to apply when the EP wrote subscriber state.
    pub fn receive(
        &mut self,
        now: Instant,
        sid: SessionId,
        msg: pb::EpMessage,
        index: &SubscriberIndex,
    ) -> Option<Op> {
        let i = *self.sessions.get(&sid)?;
        let protocol_error = |m: String| SmError::invalid(m);
        let body = {
            let s = self.slots[i].session.as_mut()?;
            s.last_rx = now;
            msg.body
        };
        use pb::ep_message::Body;
        match body {
            None => self.drop_session(i, protocol_error("empty EP message".into())),
            Some(Body::Hello(_)) => {
                self.drop_session(i, protocol_error("Hello sent twice on one stream".into()))
            }
            Some(Body::KeepAlive(_)) => {}
            Some(Body::Ack(a)) => {
                let s = self.slots[i].session.as_mut()?;
                if a.seq >= s.next_seq {
                    let sent = s.next_seq - 1;
                    self.drop_session(
                        i,
                        protocol_error(format!(
                            "acknowledgement of update {} but only {sent} were sent",
                            a.seq
                        )),
                    );
                } else if a.seq > s.acked {
                    s.acked = a.seq;
                    s.ack_wait_since = (s.in_flight() > 0).then_some(now);
                    self.wake.push(sid);
                }
            }
            Some(Body::Pull(p)) => self.pull(i, sid, p, index),
            Some(Body::Role(r)) => self.role_change(i, r.role),
            Some(Body::State(st)) => {
                return Some(Op::SetState {
                    name: st.name,
                    state: st.state,
                })
            }
        }
        None
    }

    fn pull(&mut self, i: usize, sid: SessionId, p: pb::PullRequest, index: &SubscriberIndex) {
        let slot = &mut self.slots[i];
        let domain = slot.config.domain.clone();
        let pull_mode = slot.config.mode == EpMode::Pull;
        slot.counters.pulls += 1;
        let mut result = pb::PullResult {
            request_id: p.request_id,
            subscriber: None,
            error: String::new(),
        };
        let found = address(&p.address).and_then(|addr| {
            index
                .lookup(addr, p.vpn.as_deref())
                .map_err(crate::op::SmError::from)
                .map(|name| name.and_then(|n| index.get(n)))
        });
        match found {
            Err(e) => result.error = e.message,
            Ok(Some(sub)) if sub.domain == domain => {
                slot.counters.pull_hits += 1;
                result.subscriber = Some(subscriber_to_proto(&sub));
                if let Some(s) = slot.session.as_mut() {
                    if pull_mode {
                        s.pulled.insert(sub.name.as_str().to_owned());
                    }
                }
            }
            Ok(_) => {}
        }
        if let Some(s) = slot.session.as_mut() {
            s.queue.push_back(pb::Update {
                body: Some(pb::update::Body::Pull(result)),
            });
        }
        self.wake.push(sid);
    }

    fn role_change(&mut self, i: usize, role: i32) {
        let new = match self.role_of(i, role) {
            Ok(Role::Single) if self.slots[i].partner.is_none() => return,
            Ok(r) => r,
            Err(e) => return self.drop_session(i, e),
        };
        let Some(s) = self.slots[i].session.as_mut() else {
            return;
        };
        let old = s.role;
        if old == new {
            return;
        }
        s.role = new;
        let id = self.slots[i].config.id.clone();
        match new {
            Role::Active => {
                tracing::info!(ep = %id, "cascade fail-over: EP became active; synchronising it");
                self.slots[i].counters.failovers += 1;
                self.demote_partner(i);
                self.start_sync(i);
            }
            _ => {
                tracing::info!(ep = %id, "EP became standby; it is no longer updated");
                if let Some(s) = self.slots[i].session.as_mut() {
                    s.sync = SyncState::Idle;
                    s.queue.clear();
                }
            }
        }
    }

    /// The EP's stream ended (closed, reset or failed).
    pub fn disconnected(&mut self, sid: SessionId) {
        self.closed.remove(&sid);
        // The session's sender must wake up to see that it is gone.
        self.wake.push(sid);
        let Some(i) = self.sessions.remove(&sid) else {
            return;
        };
        let slot = &mut self.slots[i];
        if slot.session.as_ref().is_some_and(|s| s.sid == sid) {
            slot.session = None;
            slot.counters.failures += 1;
            slot.last_failure = Some("the EP closed the connection".into());
            tracing::info!(ep = %slot.config.id, session = sid, "EP disconnected");
        }
    }

    /// Queues what a committed change set means for each connected EP.
    pub fn committed(&mut self, now: Instant, changes: &ChangeSet, index: &SubscriberIndex) {
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            let domain = slot.config.domain.as_str();
            let mode = slot.config.mode;
            let Some(s) = slot.session.as_mut() else {
                continue;
            };
            if !s.receives() {
                continue;
            }
            let before = s.queue.len();
            match mode {
                EpMode::Push => {
                    if s.sync == SyncState::Pending {
                        // The sync has not started; it will send the latest state of everything.
                        continue;
                    }
                    let count = changes.events_for(domain).count() + changes.vpns.len();
                    if count > self.max_backlog / 2 {
                        // An import-sized change: a fresh sync is cheaper than the queue.
                        slot.counters.syncs += 1;
                        s.sync = SyncState::Pending;
                        s.synced = false;
                        s.queue.clear();
                        s.sent_vpns.clear();
                        s.sync_sent = 0;
                        self.wake.push(s.sid);
                        continue;
                    }
                    queue_push_events(s, domain, changes, index);
                }
                EpMode::Pull => queue_pull_events(s, domain, changes),
            }
            if s.queue.len() != before {
                self.wake.push(s.sid);
            }
            if s.queue.len() > self.max_backlog {
                let n = s.queue.len();
                self.quarantine(
                    i,
                    now,
                    format!("{n} updates waiting for the EP (more than max_backlog)"),
                );
            }
        }
    }

    /// Keep-alives, failure detection, acknowledgement timeouts and quarantine periods.
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            self.expire_quarantine(i, now);
            let Some(s) = self.slots[i].session.as_mut() else {
                continue;
            };
            let silent = now.saturating_duration_since(s.last_rx);
            if silent > self.keepalive * 3 {
                let reason = format!(
                    "no message from the EP for {:.1} s (keep-alive interval {:.1} s)",
                    silent.as_secs_f64(),
                    self.keepalive.as_secs_f64()
                );
                self.fail(i, reason);
                continue;
            }
            if let Some(since) = s.ack_wait_since {
                let waited = now.saturating_duration_since(since);
                if waited > self.ack_timeout {
                    let reason = format!(
                        "{} updates unacknowledged for {:.1} s",
                        s.in_flight(),
                        waited.as_secs_f64()
                    );
                    self.quarantine(i, now, reason);
                    continue;
                }
            }
            if now.saturating_duration_since(s.last_tx) >= self.keepalive && !s.keepalive_due {
                s.keepalive_due = true;
                self.wake.push(s.sid);
            }
        }
    }

    /// The next message for session `sid`, or what else to do.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        sid: SessionId,
        index: &SubscriberIndex,
    ) -> Transmit {
        if let Some(why) = self.closed.remove(&sid) {
            return Transmit::Close(why);
        }
        let Some(&i) = self.sessions.get(&sid) else {
            return Transmit::Gone;
        };
        let batch = self.batch;
        let window = self.window;
        let slot = &mut self.slots[i];
        let domain = slot.config.domain.clone();
        let mode = slot.config.mode;
        let Some(s) = slot.session.as_mut() else {
            return Transmit::Gone;
        };
        if let Some(w) = s.welcome.take() {
            s.last_tx = now;
            return Transmit::Message(pb::SmMessage {
                body: Some(pb::sm_message::Body::Welcome(w)),
            });
        }
        let room = window.saturating_sub(s.in_flight()).min(batch as u64) as usize;
        let mut updates = Vec::new();
        while updates.len() < room {
            match s.queue.pop_front() {
                Some(u) => updates.push(u),
                None => break,
            }
        }
        if updates.len() < room && s.receives() {
            fill_sync(s, &domain, mode, index, room, &mut updates);
        }
        if updates.is_empty() {
            if s.keepalive_due {
                s.keepalive_due = false;
                s.last_tx = now;
                return Transmit::Message(pb::SmMessage {
                    body: Some(pb::sm_message::Body::KeepAlive(pb::KeepAlive {})),
                });
            }
            return Transmit::Idle;
        }
        let first_seq = s.next_seq;
        s.next_seq += updates.len() as u64;
        if s.ack_wait_since.is_none() {
            s.ack_wait_since = Some(now);
        }
        s.last_tx = now;
        s.keepalive_due = false;
        slot.counters.updates_sent += updates.len() as u64;
        // More may be ready (a longer queue, the rest of a sync): ask to be polled again.
        if !s.queue.is_empty() || s.sync != SyncState::Idle {
            self.wake.push(sid);
        }
        Transmit::Message(pb::SmMessage {
            body: Some(pb::sm_message::Body::Updates(pb::Updates {
                first_seq,
                updates,
            })),
        })
    }

    /// Operator view of every EP.
    pub fn views(&self, now: Instant) -> Vec<EpView> {
        self.slots
            .iter()
            .map(|slot| {
                let s = slot.session.as_ref();
                let (quarantine, left) = match slot.quarantine {
                    Quarantine::None => (QuarantineState::None, None),
                    Quarantine::Active { until } => (QuarantineState::Quarantined, Some(until)),
                    Quarantine::Post { until } => (QuarantineState::PostQuarantine, Some(until)),
                };
                let state = match s {
                    None if quarantine == QuarantineState::Quarantined => EpState::Quarantined,
                    None => EpState::Disconnected,
                    Some(s) if s.role == Role::Standby => EpState::Standby,
                    Some(s) if s.synced => EpState::Synced,
                    Some(_) => EpState::Syncing,
                };
                EpView {
                    id: slot.config.id.clone(),
                    domain: slot.config.domain.clone(),
                    mode: slot.config.mode,
                    failure_action: slot.config.failure_action,
                    cascade_partner: slot.config.cascade_partner.clone(),
                    state,
                    role: s.map(|s| s.role),
                    session: s.map(|s| s.sid),
                    connected_for_s: s
                        .map(|s| now.saturating_duration_since(s.connected_at).as_secs()),
                    seq_sent: s.map_or(0, |s| s.next_seq - 1),
                    seq_acked: s.map_or(0, |s| s.acked),
                    backlog: s.map_or(0, |s| s.queue.len()),
                    sync_progress: s
                        .filter(|s| s.sync != SyncState::Idle)
                        .map(|s| (s.sync_sent, s.sync_total)),
                    quarantine,
                    quarantine_left_s: left
                        .map(|u| u.saturating_duration_since(now).as_secs_f64().ceil() as u64),
                    quarantine_timeout_s: match slot.quarantine {
                        Quarantine::Post { .. } | Quarantine::Active { .. } => {
                            slot.quarantine_timeout.as_secs()
                        }
                        Quarantine::None => self.quarantine_timeout.as_secs(),
                    },
                    quarantine_reason: (slot.quarantine != Quarantine::None)
                        .then(|| slot.quarantine_reason.clone()),
                    last_failure: slot.last_failure.clone(),
                    counters: slot.counters.clone(),
                }
            })
            .collect()
    }

    /// Ends every session (shutdown).
    pub fn close_all(&mut self, why: &str) {
        for i in 0..self.slots.len() {
            self.drop_session(i, SmError::new(ErrorKind::Unavailable, why));
        }
    }

    /// Number of connected EPs.
    pub fn connected(&self) -> usize {
        self.sessions.len()
    }
}

/// Adds sync updates (SyncBegin and the VPNs, members from the cursor, SyncEnd) up to `room`.
fn fill_sync(
    s: &mut Session,
    domain: &str,
    mode: EpMode,
    index: &SubscriberIndex,
    room: usize,
    out: &mut Vec<pb::Update>,
) {
    use pb::update::Body;
    if s.sync == SyncState::Pending {
        s.sync_total = match mode {
            EpMode::Push => index.domain_member_count(domain) as u64,
            EpMode::Pull => 0,
        };
        out.push(pb::Update {
            body: Some(Body::SyncBegin(pb::SyncBegin {
                subscribers: s.sync_total,
            })),
        });
        match mode {
            EpMode::Push => {
                for vpn in index.vpns().filter(|v| v.domain == domain) {
                    s.sent_vpns.insert(vpn.name.clone());
                    out.push(pb::Update {
                        body: Some(Body::VpnUpsert(vpn_to_proto(vpn))),
                    });
                }
                s.sync = SyncState::Members { cursor: 0 };
            }
            EpMode::Pull => {
                out.push(pb::Update {
                    body: Some(Body::SyncEnd(pb::SyncEnd {})),
                });
                s.sync = SyncState::Idle;
                s.synced = true;
                return;
            }
        }
    }
    let SyncState::Members { cursor } = s.sync else {
        return;
    };
    let want = room.saturating_sub(out.len()).max(1);
    let (members, next) = index.domain_members_from(domain, cursor, want);
    s.sync_sent += members.len() as u64;
    for sub in members {
        // A VPN created after the sync began is sent before the first member that uses it.
        for vpn in sub.ip_mappings().filter_map(|m| m.vpn.as_deref()) {
            if !s.sent_vpns.contains(vpn) {
                if let Some(v) = index.vpn(vpn) {
                    s.sent_vpns.insert(vpn.to_owned());
                    out.push(pb::Update {
                        body: Some(Body::VpnUpsert(vpn_to_proto(v))),
                    });
                }
            }
        }
        out.push(pb::Update {
            body: Some(Body::Upsert(subscriber_into_proto(sub))),
        });
    }
    match next {
        Some(cursor) => s.sync = SyncState::Members { cursor },
        None => {
            out.push(pb::Update {
                body: Some(Body::SyncEnd(pb::SyncEnd {})),
            });
            s.sync = SyncState::Idle;
            s.synced = true;
        }
    }
}

/// Whether a change of `name` must be queued during a sync at `cursor`: only if the walk has
/// passed the subscriber (or it no longer exists, so the walk will not send it).
fn already_walked(sync: SyncState, index: &SubscriberIndex, name: &str) -> bool {
    match sync {
        SyncState::Members { cursor } => index.id_of(name).is_none_or(|id| id < cursor),
        SyncState::Idle => true,
        SyncState::Pending => false,
    }
}

fn queue_push_events(s: &mut Session, domain: &str, changes: &ChangeSet, index: &SubscriberIndex) {
    use pb::update::Body;
    for v in &changes.vpns {
        match &v.new {
            Some(vpn) if vpn.domain == domain => {
                s.sent_vpns.insert(vpn.name.clone());
                s.queue.push_back(pb::Update {
                    body: Some(Body::VpnUpsert(vpn_to_proto(vpn))),
                });
            }
            Some(_) => {}
            None => {
                if s.sent_vpns.remove(&v.name) {
                    s.queue.push_back(pb::Update {
                        body: Some(Body::VpnRemove(pb::VpnRemove {
                            name: v.name.clone(),
                        })),
                    });
                }
            }
        }
    }
    for event in changes.events_for(domain) {
        let (name, update) = match event {
            DomainEvent::Upsert(sub) => (sub.name.as_str(), Body::Upsert(subscriber_to_proto(sub))),
            DomainEvent::Remove(name) => (
                name.as_str(),
                Body::Remove(pb::Remove {
                    name: name.as_str().to_owned(),
                }),
            ),
        };
        if already_walked(s.sync, index, name) {
            s.queue.push_back(pb::Update { body: Some(update) });
        }
    }
}

fn queue_pull_events(s: &mut Session, domain: &str, changes: &ChangeSet) {
    use pb::update::Body;
    for c in &changes.subscribers {
        let name = c.name.as_str();
        if !s.pulled.contains(name) {
            continue;
        }
        let body = match &c.new {
            Some(sub) if sub.domain == domain && sub.has_ip_mappings() => {
                Body::Upsert(subscriber_to_proto(sub))
            }
            _ => {
                s.pulled.remove(name);
                Body::Remove(pb::Remove {
                    name: name.to_owned(),
                })
            }
        };
        s.queue.push_back(pb::Update { body: Some(body) });
    }
}

fn mode_to_proto(mode: EpMode) -> pb::Mode {
    match mode {
        EpMode::Push => pb::Mode::Push,
        EpMode::Pull => pb::Mode::Pull,
    }
}

fn role_to_proto(role: Role) -> pb::CascadeRole {
    match role {
        Role::Single => pb::CascadeRole::RoleUnspecified,
        Role::Active => pb::CascadeRole::Active,
        Role::Standby => pb::CascadeRole::Standby,
    }
}
