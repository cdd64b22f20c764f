//! The reference enforcement point, sans-IO: what an EP (the brasa data plane, `brasa sm
//! ep-watch`, the tests) runs to hold its domain's subscribers and to keep its link to the SM.
//!
//! [`EpReplica`] takes the SM's messages with [`EpReplica::handle`], checks the sequence numbers
//! (a gap is a protocol error, so a lost update cannot go unnoticed) and keeps the subscribers in
//! its own [`SubscriberIndex`], so that address lookups are the same longest-prefix match as in
//! the SM. A full sync is built beside the current table and replaces it at `SyncEnd`, so the EP
//! keeps enforcing the old state while a resync runs.
//!
//! The link rules live here too, driven by the caller's clock like quinn-proto: what the EP must
//! send comes out of [`EpReplica::poll_transmit`] (the Hello, then pull requests, role changes
//! and state writes in the order asked, a cumulative acknowledgement after updates, a
//! keep-alive when nothing else went out for one interval); [`EpReplica::poll_timeout`] says
//! when to call [`EpReplica::handle_timeout`], which reports a dead SM after three silent
//! intervals; [`EpReplica::connection_lost`] applies the failure action the Welcome named. The
//! tokio shell (`brasa_sm_net::EpClient`) only moves messages and sleeps.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use brasa_subscriber::{IndexConfig, NameCase, Subscriber, SubscriberIndex, Vpn, DEFAULT_DOMAIN};

use crate::convert::{subscriber_from_proto, vpn_from_proto};
use crate::pb;

/// Silent keep-alive intervals after which the SM is taken for dead.
pub const DEAD_AFTER_INTERVALS: u32 = 3;

/// Most subscribers a full sync's announced count reserves room for in the staged table (a
/// false count then costs at most this much memory; a larger sync grows the table as it comes).
const SYNC_RESERVE_MAX: u64 = 1 << 20;

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
    /// A second Welcome on one connection.
    #[error("a second Welcome on one connection")]
    WelcomeTwice,
    /// A message arrived, or a request was made, with no connection started.
    #[error("no connection to the SM (call connect first)")]
    NotConnected,
}

/// The SM said nothing for [`DEAD_AFTER_INTERVALS`] keep-alive intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no message from the SM for {:.1} s", .silent.as_secs_f64())]
pub struct LinkTimeout {
    /// How long the SM has been silent.
    pub silent: Duration,
}

/// How the EP behaves on its link. Both switches are on for a real EP; turning one off only
/// serves to exercise the SM's back-pressure handling (`ack`) or failure detection
/// (`keepalives`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkOptions {
    /// Acknowledge updates.
    pub ack: bool,
    /// Send keep-alives.
    pub keepalives: bool,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            ack: true,
            keepalives: true,
        }
    }
}

/// One connection's state.
struct Link {
    options: LinkOptions,
    welcome: Option<pb::Welcome>,
    /// From the Welcome; no timer runs before it.
    keepalive: Option<Duration>,
    last_rx: Instant,
    last_tx: Instant,
    ack_due: bool,
    outbox: VecDeque<pb::ep_message::Body>,
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
    ///
    /// An EP matches traffic on IP mappings only: the learnt ones are installed like the
    /// configured ones, and `community@VPN` network IDs (the SM's input for learning them)
    /// are not kept.
    fn install(&mut self, mut sub: Subscriber) -> Result<(), String> {
        if self.index.id_of(sub.name.as_str()).is_some() {
            let _ = self.index.remove(sub.name.as_str());
        }
        let learned = std::mem::take(&mut sub.learned);
        sub.mappings.extend(learned);
        sub.communities.clear();
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
            .put(sub)
            .map_err(|e| format!("cannot install {name:?}: {e}"))
    }

    fn install_vpn(&mut self, vpn: Vpn) {
        if self.index.vpn(&vpn.name).is_none() {
            // The table only needs the VPN's name and domain; its labels live in `vpns`.
            let _ = self.index.add_vpn(vpn.configured());
        }
        self.vpns.insert(vpn.name.clone(), vpn);
    }
}

/// The subscribers an EP holds, kept in step with the SM, and its link to the SM.
pub struct EpReplica {
    domain: String,
    table: Table,
    staged: Option<Table>,
    last_seq: u64,
    syncs: u64,
    anomalies: Vec<String>,
    link: Option<Link>,
    next_pull: u64,
    /// Report every upsert, removal, VPN change and keep-alive as an event.
    data_events: bool,
}

impl Default for EpReplica {
    fn default() -> Self {
        Self::new()
    }
}

impl EpReplica {
    /// An empty replica without a connection.
    pub fn new() -> Self {
        EpReplica {
            domain: DEFAULT_DOMAIN.to_owned(),
            table: Table::default_domain(),
            staged: None,
            last_seq: 0,
            syncs: 0,
            anomalies: Vec::new(),
            link: None,
            next_pull: 1,
            data_events: true,
        }
    }

    /// Whether [`Self::handle`] reports each upsert, removal, VPN change and keep-alive as an
    /// event (on by default). Off, it reports only the Welcome, the sync boundaries and pull
    /// results, and a full sync installs each record without copying it for an event: what a
    /// data plane that reads the table wants.
    pub fn set_data_events(&mut self, on: bool) {
        self.data_events = on;
    }

    /// Starts a connection: the first transmit is `hello`. The subscribers stay until the sync
    /// that follows the Welcome replaces them (what an EP does across a reconnect); sequence
    /// numbers start again.
    pub fn connect(&mut self, now: Instant, hello: pb::Hello, options: LinkOptions) {
        self.last_seq = 0;
        self.staged = None;
        let mut outbox = VecDeque::new();
        outbox.push_back(pb::ep_message::Body::Hello(hello));
        self.link = Some(Link {
            options,
            welcome: None,
            keepalive: None,
            last_rx: now,
            last_tx: now,
            ack_due: false,
            outbox,
        });
    }

    /// Processes one message of the SM.
    pub fn handle(
        &mut self,
        now: Instant,
        msg: pb::SmMessage,
    ) -> Result<Vec<ReplicaEvent>, ProtocolError> {
        use pb::sm_message::Body;
        let link = self.link.as_mut().ok_or(ProtocolError::NotConnected)?;
        link.last_rx = now;
        match msg.body.ok_or(ProtocolError::Empty)? {
            Body::Welcome(w) => {
                if link.welcome.is_some() {
                    return Err(ProtocolError::WelcomeTwice);
                }
                link.keepalive = Some(Duration::from_millis(u64::from(
                    w.keepalive_interval_ms.max(1),
                )));
                link.welcome = Some(w.clone());
                // The table stays until the sync that follows replaces it.
                if w.domain != self.domain {
                    self.table = Table::new(&w.domain)?;
                    self.domain = w.domain.clone();
                }
                Ok(vec![ReplicaEvent::Welcome(w)])
            }
            Body::KeepAlive(_) if self.data_events => Ok(vec![ReplicaEvent::KeepAlive]),
            Body::KeepAlive(_) => Ok(Vec::new()),
            Body::Updates(u) => {
                if link.welcome.is_none() {
                    return Err(ProtocolError::NoWelcome);
                }
                if u.first_seq != self.last_seq + 1 {
                    return Err(ProtocolError::Gap {
                        expected: self.last_seq + 1,
                        got: u.first_seq,
                    });
                }
                link.ack_due = link.options.ack;
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

    /// The next message to send to the SM, if any: queued requests first, then the cumulative
    /// acknowledgement of every update applied, then a keep-alive when nothing went out for
    /// one interval. Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<pb::EpMessage> {
        use pb::ep_message::Body;
        let link = self.link.as_mut()?;
        let body = if let Some(body) = link.outbox.pop_front() {
            body
        } else if link.ack_due {
            link.ack_due = false;
            Body::Ack(pb::Ack { seq: self.last_seq })
        } else if link.options.keepalives
            && link
                .keepalive
                .is_some_and(|k| now.saturating_duration_since(link.last_tx) >= k)
        {
            Body::KeepAlive(pb::KeepAlive {})
        } else {
            return None;
        };
        link.last_tx = now;
        Some(pb::EpMessage { body: Some(body) })
    }

    /// When [`Self::handle_timeout`] must run next (`None`: no timer, before the Welcome or
    /// without a connection).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let link = self.link.as_ref()?;
        let k = link.keepalive?;
        let dead = link.last_rx + k * DEAD_AFTER_INTERVALS;
        Some(if link.options.keepalives {
            dead.min(link.last_tx + k)
        } else {
            dead
        })
    }

    /// Timers: an SM silent for [`DEAD_AFTER_INTERVALS`] intervals is a link failure (end the
    /// connection, then call [`Self::connection_lost`]); a keep-alive that is due comes out of
    /// [`Self::poll_transmit`].
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), LinkTimeout> {
        let Some(link) = self.link.as_ref() else {
            return Ok(());
        };
        let Some(k) = link.keepalive else {
            return Ok(());
        };
        let silent = now.saturating_duration_since(link.last_rx);
        if silent >= k * DEAD_AFTER_INTERVALS {
            return Err(LinkTimeout { silent });
        }
        Ok(())
    }

    /// The connection ended (closed, refused, failed, timed out): applies the failure action
    /// the Welcome named and returns whether it erased the subscribers (`clear-mappings`).
    pub fn connection_lost(&mut self) -> bool {
        let Some(link) = self.link.take() else {
            return false;
        };
        let clear = link
            .welcome
            .is_some_and(|w| w.failure_action == pb::FailureAction::ClearMappings as i32);
        if clear {
            self.clear();
        }
        self.staged = None;
        clear
    }

    /// Pull mode: asks the SM who `address` (in `vpn`) is; the answer comes back as
    /// [`ReplicaEvent::Pulled`] with the returned request id.
    pub fn pull(&mut self, address: &str, vpn: Option<&str>) -> Result<u64, ProtocolError> {
        let link = self.link.as_mut().ok_or(ProtocolError::NotConnected)?;
        let request_id = self.next_pull;
        self.next_pull += 1;
        link.outbox
            .push_back(pb::ep_message::Body::Pull(pb::PullRequest {
                request_id,
                address: address.to_owned(),
                vpn: vpn.map(str::to_owned),
            }));
        Ok(request_id)
    }

    /// Tells the SM this EP's cascade role changed (fail-over).
    pub fn set_role(&mut self, role: pb::CascadeRole) -> Result<(), ProtocolError> {
        self.queue(pb::ep_message::Body::Role(pb::RoleChange {
            role: role as i32,
        }))
    }

    /// Writes a subscriber's opaque state in the SM.
    pub fn set_state(&mut self, name: &str, state: Vec<u8>) -> Result<(), ProtocolError> {
        self.queue(pb::ep_message::Body::State(pb::StateUpdate {
            name: name.to_owned(),
            state,
        }))
    }

    fn queue(&mut self, body: pb::ep_message::Body) -> Result<(), ProtocolError> {
        let link = self.link.as_mut().ok_or(ProtocolError::NotConnected)?;
        link.outbox.push_back(body);
        Ok(())
    }

    fn target(&mut self) -> &mut Table {
        self.staged.as_mut().unwrap_or(&mut self.table)
    }

    fn apply(&mut self, update: pb::Update) -> Result<Option<ReplicaEvent>, ProtocolError> {
        use pb::update::Body;
        let bad = |e: crate::op::SmError| ProtocolError::BadRecord(e.message);
        let data = self.data_events;
        let event = match update.body.ok_or(ProtocolError::Empty)? {
            Body::SyncBegin(b) => {
                let mut staged = Table::new(&self.domain)?;
                // Room for what the sync announces, so that the table does not grow (and copy
                // itself) a million times over; bounded, as the count is only the SM's word.
                let room = b.subscribers.min(SYNC_RESERVE_MAX);
                staged.index.reserve(usize::try_from(room).unwrap_or(0));
                self.staged = Some(staged);
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
                let event = data.then(|| ReplicaEvent::Upsert(sub.clone()));
                if let Err(e) = self.target().install(sub) {
                    self.anomalies.push(e);
                }
                return Ok(event);
            }
            Body::Remove(r) => {
                let _ = self.target().index.remove(&r.name);
                ReplicaEvent::Remove(r.name)
            }
            Body::VpnUpsert(v) => {
                let vpn = vpn_from_proto(v).map_err(bad)?;
                let event = data.then(|| ReplicaEvent::VpnUpsert(vpn.clone()));
                self.target().install_vpn(vpn);
                return Ok(event);
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
        };
        let wanted = data || !matches!(event, ReplicaEvent::Remove(_) | ReplicaEvent::VpnRemove(_));
        Ok(wanted.then_some(event))
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
        self.link.as_ref()?.welcome.as_ref()
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
