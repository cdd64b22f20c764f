//! One peer: the RFC 4271 §8 session state machine, capability negotiation, timers, and the
//! peer's Adj-RIB-In with graceful restart as a receiver (RFC 4724 §4.2).
//!
//! The peer is sans-IO. Its shell tells it about the transport (`connection_opened`,
//! `connection_failed`, `connection_closed`), feeds it received bytes (`handle_input`) and the
//! time (`handle_timeout` at `poll_timeout`), and carries out what it asks: bytes to write
//! (`poll_transmit`, always before the next action), transport actions (`poll_action`), and
//! events for the consumer (`poll_event`).

use crate::error::{CeaseReason, ProtocolError};
use crate::event::{DownReason, Route, RouteAttrs, RouteEvent, SessionInfo};
use crate::rib::{AdjRibIn, Announced};
use crate::types::{AfiSafi, FamilySet, VpnFamily};
use crate::wire::open::{cap, Capabilities, GracefulRestart, OpenRepr};
use crate::wire::update::{Update, UpdateContext, VpnNlriIter};
use crate::wire::{
    emit_end_of_rib, emit_keepalive, emit_route_refresh, Message, MessageType, HEADER_LEN,
};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The hold time used while waiting for the peer's OPEN (RFC 4271 §8.2.2 suggests 4 minutes).
const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);
/// The restart time this speaker announces in its own graceful restart capability. It keeps no
/// routes of its own for others (it announces none), so the value only tells the peer that
/// this speaker understands graceful restart as a receiver.
const OWN_RESTART_TIME: u16 = 120;

/// The identity of this speaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalConfig {
    /// Local AS number.
    pub asn: u32,
    /// BGP Identifier.
    pub router_id: Ipv4Addr,
}

/// Who opens the transport connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectMode {
    /// This speaker dials the peer (and retries with back-off).
    Active,
    /// This speaker waits for the peer to connect.
    Passive,
}

/// The configuration of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's address: its identity in events, and where an active peer is dialled.
    pub address: IpAddr,
    /// The AS the peer must announce (the local AS for iBGP).
    pub remote_as: u32,
    /// The hold time proposed, in seconds: 0 (no keepalives) or at least 3.
    pub hold_time: u16,
    /// Who connects.
    pub mode: ConnectMode,
    /// First delay before redialling after a failed or lost connection; doubles per failure.
    pub connect_retry: Duration,
    /// Longest delay between dials.
    pub connect_retry_max: Duration,
    /// VPN families announced (at least one).
    pub families: FamilySet,
    /// Announce graceful restart (receiver): keep the peer's routes stale over a session loss.
    pub graceful_restart: bool,
    /// After the session is re-established, how long stale routes wait for the End-of-RIB
    /// before they are removed anyway.
    pub stale_routes_time: Duration,
}

impl PeerConfig {
    /// A peer with the defaults of RFC 4271 (hold time 90 s, connect retry 30 s doubling to 2
    /// minutes), both VPN families, graceful restart, and 360 s for the stale routes.
    pub fn new(address: IpAddr, remote_as: u32, mode: ConnectMode) -> Self {
        PeerConfig {
            address,
            remote_as,
            hold_time: 90,
            mode,
            connect_retry: Duration::from_secs(30),
            connect_retry_max: Duration::from_secs(120),
            families: FamilySet::BOTH,
            graceful_restart: true,
            stale_routes_time: Duration::from_secs(360),
        }
    }
}

/// An invalid peer configuration or API call; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Hold time 1 or 2.
    #[error("hold time must be 0 or at least 3 seconds, not {0}")]
    HoldTime(u16),
    /// No VPN family.
    #[error("at least one VPN family is required")]
    NoFamily,
    /// AS 0.
    #[error("the remote AS must not be 0")]
    RemoteAs,
    /// A zero connect retry.
    #[error("the connect retry delay must be positive and at most the maximum")]
    ConnectRetry,
    /// The router id is 0.0.0.0.
    #[error("the router id must not be 0.0.0.0")]
    RouterId,
}

/// A request the peer cannot carry out in its state; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The session is not Established.
    #[error("the session is not established")]
    NotEstablished,
    /// The peer did not announce route refresh.
    #[error("the peer did not announce route refresh")]
    RouteRefreshNotSupported,
    /// The family was not negotiated.
    #[error("{0} was not negotiated")]
    FamilyNotNegotiated(VpnFamily),
    /// A connection arrived while the session already has one (or is stopped).
    #[error("the peer is {0:?} and takes no new connection")]
    ConnectionRefused(State),
}

/// RFC 4271 §8 states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Stopped: refuses connections.
    Idle,
    /// Waiting to dial, or dialling (active mode).
    Connect,
    /// Waiting for the peer to connect (passive mode).
    Active,
    /// OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for the KEEPALIVE.
    OpenConfirm,
    /// Session up.
    Established,
}

/// What the shell must do with the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Dial the peer; report `connection_opened` or `connection_failed`.
    Connect,
    /// Close the connection after writing what `poll_transmit` returned.
    Disconnect,
}

/// How `connection_opened` took a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// The peer had no connection.
    New,
    /// The new connection replaces the Established one, which the shell must close without
    /// writing to it again.
    Replaced,
}

/// Counters of one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Sessions that reached Established.
    pub established: u64,
    /// UPDATE messages processed.
    pub updates: u64,
    /// Routes announced (new or changed).
    pub announced: u64,
    /// Routes withdrawn (by the peer, by treat-as-withdraw, or by session loss / stale sweep).
    pub withdrawn: u64,
    /// UPDATEs whose announcements RFC 7606 turned into withdrawals.
    pub treat_as_withdraw: u64,
    /// Attributes ignored under RFC 7606's attribute-discard rule.
    pub attributes_discarded: u64,
    /// NLRI of families that were not negotiated (IPv4 unicast included), ignored.
    pub ignored_nlri: u64,
    /// ROUTE-REFRESH messages received (this speaker announces nothing, so they need no answer).
    pub route_refresh_received: u64,
    /// The last error that ended a session, as sent in a NOTIFICATION.
    pub last_error: Option<ProtocolError>,
}

#[derive(Debug, Clone)]
struct Negotiated {
    info: SessionInfo,
    ctx: UpdateContext,
    keepalive: Duration,
}

/// One BGP peer: session state machine plus Adj-RIB-In.
#[derive(Debug)]
pub struct Peer {
    local: LocalConfig,
    config: PeerConfig,
    state: State,
    negotiated: Option<Negotiated>,
    rib: AdjRibIn,
    transmit: Vec<u8>,
    actions: VecDeque<Action>,
    events: VecDeque<RouteEvent>,
    connect_retry_at: Option<Instant>,
    hold_at: Option<Instant>,
    keepalive_at: Option<Instant>,
    /// Stale routes are removed at this time if no new session has come up.
    restart_at: Option<Instant>,
    /// Stale routes are removed at this time if the new session's End-of-RIB has not come.
    stale_deadline: Option<Instant>,
    backoff: Duration,
    stats: PeerStats,
}

impl Peer {
    /// A peer in Idle; `start` begins connecting.
    pub fn new(local: LocalConfig, config: PeerConfig) -> Result<Self, ConfigError> {
        if matches!(config.hold_time, 1 | 2) {
            return Err(ConfigError::HoldTime(config.hold_time));
        }
        if config.families.is_empty() {
            return Err(ConfigError::NoFamily);
        }
        if config.remote_as == 0 {
            return Err(ConfigError::RemoteAs);
        }
        if config.connect_retry.is_zero() || config.connect_retry > config.connect_retry_max {
            return Err(ConfigError::ConnectRetry);
        }
        if local.router_id.is_unspecified() {
            return Err(ConfigError::RouterId);
        }
        Ok(Peer {
            local,
            backoff: config.connect_retry,
            config,
            state: State::Idle,
            negotiated: None,
            rib: AdjRibIn::default(),
            transmit: Vec::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            connect_retry_at: None,
            hold_at: None,
            keepalive_at: None,
            restart_at: None,
            stale_deadline: None,
            stats: PeerStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// What was negotiated, while the session is Established.
    pub fn session(&self) -> Option<&SessionInfo> {
        self.negotiated
            .as_ref()
            .filter(|_| self.state == State::Established)
            .map(|n| &n.info)
    }

    /// Counters.
    pub fn stats(&self) -> &PeerStats {
        &self.stats
    }

    /// The Adj-RIB-In.
    pub fn rib(&self) -> &AdjRibIn {
        &self.rib
    }

    /// ManualStart (RFC 4271 §8.1.2): an active peer dials now, a passive one waits.
    /// Does nothing unless the peer is Idle.
    pub fn start(&mut self, _now: Instant) {
        if self.state != State::Idle {
            return;
        }
        self.backoff = self.config.connect_retry;
        match self.config.mode {
            ConnectMode::Active => {
                self.state = State::Connect;
                self.actions.push_back(Action::Connect);
            }
            ConnectMode::Passive => self.state = State::Active,
        }
    }

    /// ManualStop: sends CEASE (administrative shutdown) if a session is open, withdraws every
    /// route, and stays Idle until `start`.
    pub fn stop(&mut self, now: Instant) {
        if matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        ) {
            ProtocolError::Cease(CeaseReason::AdministrativeShutdown)
                .notification()
                .emit(&mut self.transmit);
            self.actions.push_back(Action::Disconnect);
        }
        self.session_down(now, DownReason::Stopped, false);
        for family in VpnFamily::ALL {
            self.flush(family);
        }
        self.restart_at = None;
        self.stale_deadline = None;
        self.connect_retry_at = None;
        self.state = State::Idle;
    }

    /// A transport connection to the peer is up (dialled or accepted): sends the OPEN.
    ///
    /// A peer never opens a second connection while its session is Established unless it lost
    /// the first one (a restart whose close did not reach us, or whose NOTIFICATION we have
    /// not read yet): the old session is then ended as by `connection_closed` — graceful
    /// restart applies — and the new connection replaces it (RFC 4724 §4.2). While OPENs are
    /// being exchanged the new connection is refused (the first one wins the collision), and a
    /// stopped peer refuses every connection.
    pub fn connection_opened(&mut self, now: Instant) -> Result<Opened, RequestError> {
        let opened = match self.state {
            State::Connect | State::Active => Opened::New,
            State::Established => {
                self.connection_closed(now);
                Opened::Replaced
            }
            state => return Err(RequestError::ConnectionRefused(state)),
        };
        self.transmit.clear();
        self.connect_retry_at = None;
        self.own_open().emit(&mut self.transmit);
        self.state = State::OpenSent;
        self.hold_at = Some(now + OPEN_HOLD_TIME);
        Ok(opened)
    }

    /// A dial failed: retry after the back-off.
    pub fn connection_failed(&mut self, now: Instant) {
        if self.state == State::Connect {
            self.schedule_redial(now);
        }
    }

    /// The transport closed or failed without a NOTIFICATION (graceful restart applies).
    pub fn connection_closed(&mut self, now: Instant) {
        if matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        ) {
            self.transmit.clear();
            self.session_down(now, DownReason::ConnectionLost, true);
            self.restart(now);
        }
    }

    /// The shell stopped reading the transport because its consumer is slow (back-pressure):
    /// silence from the peer is then no evidence that it is dead, so the hold timer restarts.
    pub fn reading_paused(&mut self, now: Instant) {
        if let (Some(_), Some(n)) = (self.hold_at, &self.negotiated) {
            if self.state == State::Established {
                self.hold_at = Some(now + Duration::from_secs(u64::from(n.info.hold_time)));
            }
        }
    }

    /// Asks the peer to send `family` again (RFC 2918), e.g. after the consumer lost state.
    pub fn request_route_refresh(&mut self, family: VpnFamily) -> Result<(), RequestError> {
        let n = self
            .negotiated
            .as_ref()
            .filter(|_| self.state == State::Established);
        let n = n.ok_or(RequestError::NotEstablished)?;
        if !n.info.route_refresh {
            return Err(RequestError::RouteRefreshNotSupported);
        }
        if !n.info.families.contains(family) {
            return Err(RequestError::FamilyNotNegotiated(family));
        }
        emit_route_refresh(&mut self.transmit, family.afi_safi());
        Ok(())
    }

    /// Bytes to write to the transport, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.transmit.is_empty()).then(|| std::mem::take(&mut self.transmit))
    }

    /// The next transport action, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the consumer, if any.
    pub fn poll_event(&mut self) -> Option<RouteEvent> {
        self.events.pop_front()
    }

    /// Events waiting for `poll_event`.
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.connect_retry_at,
            self.hold_at,
            self.keepalive_at,
            self.restart_at,
            self.stale_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.hold_at.is_some_and(|t| t <= now) {
            self.fail(now, ProtocolError::HoldTimerExpired);
        }
        if self.keepalive_at.is_some_and(|t| t <= now) {
            if let Some(n) = &self.negotiated {
                emit_keepalive(&mut self.transmit);
                self.keepalive_at = Some(now + n.keepalive);
            }
        }
        if self.connect_retry_at.is_some_and(|t| t <= now) {
            self.connect_retry_at = None;
            if self.state == State::Connect {
                self.actions.push_back(Action::Connect);
            }
        }
        if self.restart_at.is_some_and(|t| t <= now)
            || self.stale_deadline.is_some_and(|t| t <= now)
        {
            self.restart_at = None;
            self.stale_deadline = None;
            for family in VpnFamily::ALL {
                self.sweep_stale(family);
            }
        }
    }

    /// Reads the messages at the start of `input`; returns how many bytes were used (the rest
    /// is an incomplete message: pass it again with more bytes). After an error the session is
    /// down and the whole input is consumed.
    pub fn handle_input(&mut self, now: Instant, input: &[u8]) -> usize {
        let mut pos = 0;
        while self.connected() {
            let Some(rest) = input.get(pos..) else { break };
            match Message::new_unchecked(rest).check() {
                Ok(None) => return pos,
                Ok(Some((kind, len))) => {
                    pos += len;
                    let body = rest.get(HEADER_LEN..len).unwrap_or(&[]);
                    if let Err(err) = self.handle_message(now, kind, body) {
                        self.fail(now, err);
                    }
                }
                Err(err) => self.fail(now, err),
            }
        }
        input.len()
    }

    fn connected(&self) -> bool {
        matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        )
    }

    fn handle_message(
        &mut self,
        now: Instant,
        kind: MessageType,
        body: &[u8],
    ) -> Result<(), ProtocolError> {
        let fsm_subcode = match self.state {
            State::OpenSent => 1,
            State::OpenConfirm => 2,
            _ => 3,
        };
        let unexpected = ProtocolError::UnexpectedMessage {
            state: fsm_subcode,
            message: kind.name(),
        };
        match (self.state, kind) {
            (_, MessageType::Notification) => {
                let notification = crate::error::Notification::parse(body)?;
                self.actions.push_back(Action::Disconnect);
                self.session_down(now, DownReason::NotificationReceived(notification), false);
                self.restart(now);
            }
            (State::OpenSent, MessageType::Open) => self.receive_open(now, body)?,
            (State::OpenConfirm, MessageType::Keepalive) => self.established(now),
            (State::Established, MessageType::Keepalive) => self.restart_hold(now),
            (State::Established, MessageType::Update) => {
                self.restart_hold(now);
                self.receive_update(body)?;
            }
            (State::Established, MessageType::RouteRefresh) => {
                self.stats.route_refresh_received += 1;
            }
            _ => return Err(unexpected),
        }
        Ok(())
    }

    fn own_open(&self) -> OpenRepr {
        let graceful_restart = self.config.graceful_restart.then(|| GracefulRestart {
            restarting: false,
            notification: false,
            restart_time: OWN_RESTART_TIME,
            families: Vec::new(),
        });
        OpenRepr {
            asn: self.local.asn,
            hold_time: self.config.hold_time,
            bgp_id: self.local.router_id,
            capabilities: Capabilities {
                multiprotocol: self
                    .config
                    .families
                    .iter()
                    .map(VpnFamily::afi_safi)
                    .collect(),
                route_refresh: true,
                four_octet_as: Some(self.local.asn),
                graceful_restart,
                ..Capabilities::default()
            },
        }
    }

    fn receive_open(&mut self, now: Instant, body: &[u8]) -> Result<(), ProtocolError> {
        let open = OpenRepr::parse(body)?;
        if matches!(open.hold_time, 1 | 2) {
            return Err(ProtocolError::UnacceptableHoldTime(open.hold_time));
        }
        if open.asn != self.config.remote_as {
            return Err(ProtocolError::BadPeerAs {
                expected: self.config.remote_as,
                received: open.asn,
            });
        }
        let internal = open.asn == self.local.asn;
        if open.bgp_id.is_unspecified() || (internal && open.bgp_id == self.local.router_id) {
            return Err(ProtocolError::BadBgpIdentifier(open.bgp_id));
        }
        let caps = &open.capabilities;
        let announced: FamilySet = caps
            .multiprotocol
            .iter()
            .filter_map(|f| f.vpn_family())
            .collect();
        let families = announced.intersection(self.config.families);
        if families.is_empty() {
            let mut required = Vec::new();
            for family in self.config.families.iter() {
                let f = family.afi_safi();
                required.extend_from_slice(&[cap::MULTIPROTOCOL, 4]);
                required.extend_from_slice(&f.afi.to_be_bytes());
                required.extend_from_slice(&[0, f.safi]);
            }
            return Err(ProtocolError::UnsupportedCapability(required));
        }
        let hold_time = open.hold_time.min(self.config.hold_time);
        let gr = caps
            .graceful_restart
            .as_ref()
            .filter(|_| self.config.graceful_restart);
        let gr_families = |forwarding_only: bool| -> FamilySet {
            gr.map(|g| {
                g.families
                    .iter()
                    .filter(|(_, forwarding)| *forwarding || !forwarding_only)
                    .filter_map(|(f, _)| f.vpn_family())
                    .collect::<FamilySet>()
                    .intersection(families)
            })
            .unwrap_or_default()
        };
        // RFC 4724 §4.2: stale routes survive the restart only for the families whose
        // forwarding state the peer says it preserved.
        let preserved = gr_families(true);
        for family in VpnFamily::ALL {
            if !preserved.contains(family) && self.rib.stale_in(family) > 0 {
                self.sweep_stale(family);
            }
        }
        let info = SessionInfo {
            remote_as: open.asn,
            remote_id: open.bgp_id,
            hold_time,
            families,
            four_octet_as: caps.four_octet_as.is_some(),
            route_refresh: caps.route_refresh,
            graceful_restart: gr.map(|g| (g.restart_time, gr_families(false))),
            peer_restarted: gr.is_some_and(|g| g.restarting),
            add_path_refused: !caps.add_path.is_empty(),
            enhanced_route_refresh_refused: caps.enhanced_route_refresh,
        };
        let ctx = UpdateContext {
            four_octet_as: info.four_octet_as,
            multiple_labels: false,
            internal,
        };
        let keepalive = Duration::from_secs(u64::from(hold_time / 3).max(1));
        self.negotiated = Some(Negotiated {
            info,
            ctx,
            keepalive,
        });
        emit_keepalive(&mut self.transmit);
        self.state = State::OpenConfirm;
        self.restart_hold(now);
        self.keepalive_at = (hold_time > 0).then(|| now + keepalive);
        Ok(())
    }

    fn restart_hold(&mut self, now: Instant) {
        let hold = self.negotiated.as_ref().map_or(0, |n| n.info.hold_time);
        self.hold_at = (hold > 0).then(|| now + Duration::from_secs(u64::from(hold)));
    }

    fn established(&mut self, now: Instant) {
        let Some(info) = self.negotiated.as_ref().map(|n| n.info.clone()) else {
            return;
        };
        self.state = State::Established;
        self.stats.established += 1;
        self.backoff = self.config.connect_retry;
        self.restart_hold(now);
        // This speaker announces nothing, so its End-of-RIB markers follow at once; a
        // restarting peer waits for them before it sends its own routes (RFC 4724 §4.1).
        for family in info.families.iter() {
            emit_end_of_rib(&mut self.transmit, family.afi_safi());
        }
        self.restart_at = None;
        if self.rib.stale() > 0 {
            self.stale_deadline = Some(now + self.config.stale_routes_time);
        }
        self.events.push_back(RouteEvent::PeerUp {
            peer: self.config.address,
            session: info,
        });
    }

    fn receive_update(&mut self, body: &[u8]) -> Result<(), ProtocolError> {
        let Some(n) = &self.negotiated else {
            return Ok(());
        };
        let (ctx, families) = (n.ctx, n.info.families);
        let update = Update::parse(body, &ctx)?;
        let peer = self.config.address;
        self.stats.updates += 1;
        self.stats.attributes_discarded += u64::from(update.discarded);
        if let Some(family) = update.end_of_rib() {
            if let Some(family) = family.vpn_family().filter(|f| families.contains(*f)) {
                self.sweep_stale(family);
                if self.rib.stale() == 0 {
                    self.stale_deadline = None;
                }
                self.events.push_back(RouteEvent::EndOfRib { peer, family });
            }
            return Ok(());
        }
        self.stats.ignored_nlri +=
            u64::from(!update.nlri.is_empty() || !update.withdrawn.is_empty());
        if let Some(unreach) = &update.mp_unreach {
            match VpnNlriIter::unreachable(unreach).filter(|_| negotiated(families, unreach.family))
            {
                Some(routes) => routes.for_each(|r| self.withdraw(r.rd, r.prefix)),
                None => self.stats.ignored_nlri += 1,
            }
        }
        let Some(reach) = &update.mp_reach else {
            return Ok(());
        };
        let Some(routes) =
            VpnNlriIter::reachable(reach, &ctx).filter(|_| negotiated(families, reach.family))
        else {
            self.stats.ignored_nlri += 1;
            return Ok(());
        };
        if update.treat_as_withdraw.is_some() {
            self.stats.treat_as_withdraw += 1;
            routes.for_each(|r| self.withdraw(r.rd, r.prefix));
            return Ok(());
        }
        let Some(next_hop) = reach.next_hop else {
            return Ok(());
        };
        let attrs = self.rib.intern(RouteAttrs {
            next_hop,
            origin: update.origin.unwrap_or_default(),
            as_path: update.as_path_numbers(&ctx).into_boxed_slice(),
            med: update.med,
            local_pref: update.local_pref,
            route_targets: update
                .extended_communities()
                .filter_map(|c| c.route_target())
                .collect(),
            extended_communities: update.extended_communities().collect(),
            communities: update.communities().collect(),
            large_communities: update.large_communities().collect(),
        });
        for r in routes {
            if self.rib.announce(r.rd, r.prefix, r.labels, &attrs) == Announced::Changed {
                self.stats.announced += 1;
                let route = Route {
                    rd: r.rd,
                    prefix: r.prefix,
                    labels: r.labels,
                    attrs: Arc::clone(&attrs),
                };
                self.events.push_back(RouteEvent::Announce { peer, route });
            }
        }
        Ok(())
    }

    fn withdraw(&mut self, rd: crate::types::RouteDistinguisher, prefix: crate::types::VpnPrefix) {
        if self.rib.withdraw(rd, prefix) {
            self.stats.withdrawn += 1;
            self.events.push_back(RouteEvent::Withdraw {
                peer: self.config.address,
                rd,
                prefix,
            });
        }
    }

    fn sweep_stale(&mut self, family: VpnFamily) {
        let peer = self.config.address;
        let events = &mut self.events;
        let swept = self.rib.sweep_stale(family, &mut |rd, prefix| {
            events.push_back(RouteEvent::Withdraw { peer, rd, prefix });
        });
        self.stats.withdrawn += swept as u64;
    }

    fn flush(&mut self, family: VpnFamily) {
        let peer = self.config.address;
        let events = &mut self.events;
        let removed = self.rib.clear(family, &mut |rd, prefix| {
            events.push_back(RouteEvent::Withdraw { peer, rd, prefix });
        });
        self.stats.withdrawn += removed as u64;
    }

    /// Sends the NOTIFICATION for `err`, closes, and handles the session loss (no graceful
    /// restart: RFC 4724 keeps routes only over a loss without NOTIFICATION).
    fn fail(&mut self, now: Instant, err: ProtocolError) {
        err.notification().emit(&mut self.transmit);
        self.actions.push_back(Action::Disconnect);
        self.stats.last_error = Some(err.clone());
        self.session_down(now, DownReason::ProtocolError(err), false);
        self.restart(now);
    }

    /// Ends the session: the routes of the families graceful restart covers become stale (when
    /// `graceful` and it was negotiated), the others are withdrawn.
    fn session_down(&mut self, now: Instant, reason: DownReason, graceful: bool) {
        let was_established = self.state == State::Established;
        self.hold_at = None;
        self.keepalive_at = None;
        self.stale_deadline = None;
        let negotiated = self.negotiated.take();
        if !was_established {
            // The routes are those of an earlier session; their restart timer keeps running.
            return;
        }
        let (restart_time, kept) = match negotiated.and_then(|n| n.info.graceful_restart) {
            Some((time, families)) if graceful && time > 0 => (time, families),
            _ => (0, FamilySet::EMPTY),
        };
        let mut stale = 0;
        for family in VpnFamily::ALL {
            if kept.contains(family) {
                stale += self.rib.mark_stale(family);
            } else {
                self.flush(family);
            }
        }
        self.restart_at = (stale > 0).then(|| now + Duration::from_secs(u64::from(restart_time)));
        self.events.push_back(RouteEvent::PeerDown {
            peer: self.config.address,
            reason,
            stale,
        });
    }

    /// After a session loss the peer starts again by itself (RFC 4271's automatic start):
    /// passive peers wait for the next connection, active ones redial after the back-off.
    fn restart(&mut self, now: Instant) {
        match self.config.mode {
            ConnectMode::Passive => self.state = State::Active,
            ConnectMode::Active => {
                self.state = State::Connect;
                self.schedule_redial(now);
            }
        }
    }

    fn schedule_redial(&mut self, now: Instant) {
        self.connect_retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(self.config.connect_retry_max);
    }
}

fn negotiated(families: FamilySet, family: AfiSafi) -> bool {
    family.vpn_family().is_some_and(|f| families.contains(f))
}
