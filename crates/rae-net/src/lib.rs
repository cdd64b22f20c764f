//! The tokio daemon of the Routing Awareness Entity (COMET D4.3 §4): it owns the sockets and
//! timers and drives the sans-IO [`Rae`] engine and one [`Session`] per inter-RAE connection
//! (both from `brasa-rae`).
//!
//! Tasks: one actor owning the engine (all state changes happen there), one listener, one
//! connector per peer whose AS number is larger than ours (the RAE with the smaller AS number
//! opens the connection, so each pair has one), one task per connection, and the CME client.
//! Connection tasks talk to the actor through channels; operator queries go through
//! [`RaeHandle`].
#![warn(missing_docs)]
#![forbid(unsafe_code)]

use brasa_rae::config::RaeConfig;
use brasa_rae::engine::{Counters, Output, Rae, RouteView};
use brasa_rae::rib::Prefix;
use brasa_rae::session::{Session, SessionError, SessionEvent};
use brasa_rae::wire::{self, CmeMessage, Frame, InterRaeMessage, WireError};
use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

/// First reconnect delay; it doubles after each failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Why the daemon could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The daemon has stopped.
    #[error("the RAE daemon has stopped")]
    Stopped,
}

/// One peer as shown to operators.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerView {
    /// The peer's AS number.
    pub as_number: u32,
    /// Where its RAE listens.
    pub address: String,
    /// TTL of our packets towards it.
    pub ttl: u32,
    /// Whether a session is up.
    pub state: SessionState,
    /// Seconds since the session came up.
    pub established_for_secs: Option<f64>,
    /// Update messages received from it.
    pub updates_in: u64,
    /// Withdraw messages received from it.
    pub withdraws_in: u64,
    /// Update messages sent to it.
    pub updates_out: u64,
    /// Withdraw messages sent to it.
    pub withdraws_out: u64,
    /// Times the session went down.
    pub session_drops: u64,
    /// Why the last session ended.
    pub last_error: Option<String>,
}

/// Whether a peer's session is up.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Open exchanged: routes flow.
    Established,
    /// No session (connecting, or waiting to be connected to).
    Idle,
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SessionState::Established => "established",
            SessionState::Idle => "idle",
        })
    }
}

/// Daemon-wide figures for `/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricsView {
    /// Local AS number.
    pub local_as: u32,
    /// Engine counters.
    pub counters: Counters,
    /// Configured peers.
    pub peers_configured: usize,
    /// Established sessions.
    pub sessions_established: usize,
    /// RIB keys (prefix × class).
    pub routes: usize,
    /// Candidate paths in the RIB.
    pub paths: usize,
    /// Preferred paths in the RIB.
    pub preferred_paths: usize,
    /// Whether the CME connection is up.
    pub cme_connected: bool,
    /// Reply messages received from the CME (one per GenericRequest it has processed).
    pub cme_replies: u64,
    /// Frames that closed a session or CME connection as malformed.
    pub malformed_frames: u64,
}

enum Query {
    Peers(oneshot::Sender<Vec<PeerView>>),
    Routes {
        prefix: Option<Prefix>,
        cos: Option<u32>,
        preferred_only: bool,
        reply: oneshot::Sender<Vec<RouteView>>,
    },
    Metrics(oneshot::Sender<MetricsView>),
}

enum Event {
    SessionUp {
        peer: usize,
        conn: u64,
        tx: mpsc::UnboundedSender<Vec<u8>>,
    },
    Update {
        peer: usize,
        conn: u64,
        update: brasa_rae::proto::Update,
    },
    Withdraw {
        peer: usize,
        conn: u64,
        withdraw: brasa_rae::proto::Withdraw,
    },
    SessionDown {
        peer: usize,
        conn: u64,
        reason: String,
        malformed: bool,
    },
    MalformedBeforeOpen,
    CmeUp(mpsc::UnboundedSender<Vec<u8>>),
    CmeReply(u64),
    CmeDown {
        malformed: bool,
    },
    Query(Query),
}

/// A handle on a running RAE: queries and shutdown.
#[derive(Clone)]
pub struct RaeHandle {
    events: mpsc::UnboundedSender<Event>,
    shutdown: watch::Sender<bool>,
    listen: SocketAddr,
}

impl RaeHandle {
    /// Where the RAE listens for peers.
    pub fn listen_address(&self) -> SocketAddr {
        self.listen
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Query,
    ) -> Result<T, DaemonError> {
        let (tx, rx) = oneshot::channel();
        self.events
            .send(Event::Query(make(tx)))
            .map_err(|_| DaemonError::Stopped)?;
        rx.await.map_err(|_| DaemonError::Stopped)
    }

    /// The peers and their sessions.
    pub async fn peers(&self) -> Result<Vec<PeerView>, DaemonError> {
        self.ask(Query::Peers).await
    }

    /// RIB entries, optionally for one prefix and/or class.
    pub async fn routes(
        &self,
        prefix: Option<Prefix>,
        cos: Option<u32>,
    ) -> Result<Vec<RouteView>, DaemonError> {
        self.ask(|reply| Query::Routes {
            prefix,
            cos,
            preferred_only: false,
            reply,
        })
        .await
    }

    /// Preferred paths only, for every prefix and class.
    pub async fn preferred(&self) -> Result<Vec<RouteView>, DaemonError> {
        self.ask(|reply| Query::Routes {
            prefix: None,
            cos: None,
            preferred_only: true,
            reply,
        })
        .await
    }

    /// Daemon-wide figures.
    pub async fn metrics(&self) -> Result<MetricsView, DaemonError> {
        self.ask(Query::Metrics).await
    }

    /// Stops every task and closes every socket (peers see the RAE die).
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Resolves once the actor that owns the engine has ended (after [`RaeHandle::shutdown`]):
    /// no more routes are processed or sent.
    pub async fn terminated(&self) {
        self.events.closed().await;
    }
}

/// Starts a RAE listening on its configured `local_ip_address:local_port_number`.
pub async fn start(config: RaeConfig) -> Result<RaeHandle, DaemonError> {
    let addr = SocketAddr::V4(config.local_address);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind { addr, source })?;
    start_with_listener(config, listener)
}

/// Starts a RAE on an already bound listener.
pub fn start_with_listener(
    config: RaeConfig,
    listener: TcpListener,
) -> Result<RaeHandle, DaemonError> {
    let listen = listener.local_addr().map_err(|source| DaemonError::Bind {
        addr: SocketAddr::V4(config.local_address),
        source,
    })?;
    let (events, rx) = mpsc::unbounded_channel();
    let (shutdown, _) = watch::channel(false);
    let handle = RaeHandle {
        events: events.clone(),
        shutdown: shutdown.clone(),
        listen,
    };
    let shared = Shared {
        events,
        shutdown: shutdown.clone(),
        config: std::sync::Arc::new(config.clone()),
        next_conn: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1)),
    };
    tokio::spawn(accept_loop(shared.clone(), listener));
    for (index, peer) in config.peers.iter().enumerate() {
        if config.local_as < peer.as_number {
            tokio::spawn(connect_loop(shared.clone(), index));
        }
    }
    if let Some(cme) = config.cme_address {
        tokio::spawn(cme_loop(shared.clone(), cme));
    }
    tracing::info!(local_as = config.local_as, %listen, peers = config.peers.len(), "RAE started");
    let actor = Actor {
        peers: config.peers.iter().map(|_| PeerState::default()).collect(),
        rae: Rae::new(config, Instant::now()),
        cme: None,
        cme_version: None,
        cme_replies: 0,
        malformed: 0,
    };
    tokio::spawn(actor.run(rx, shutdown.subscribe()));
    Ok(handle)
}

#[derive(Clone)]
struct Shared {
    events: mpsc::UnboundedSender<Event>,
    shutdown: watch::Sender<bool>,
    config: std::sync::Arc<RaeConfig>,
    next_conn: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Shared {
    fn conn_id(&self) -> u64 {
        self.next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

#[derive(Default)]
struct PeerState {
    conn: Option<(u64, mpsc::UnboundedSender<Vec<u8>>)>,
    since: Option<Instant>,
    updates_in: u64,
    withdraws_in: u64,
    updates_out: u64,
    withdraws_out: u64,
    drops: u64,
    last_error: Option<String>,
}

struct Actor {
    rae: Rae,
    peers: Vec<PeerState>,
    cme: Option<mpsc::UnboundedSender<Vec<u8>>>,
    cme_version: Option<u64>,
    cme_replies: u64,
    malformed: u64,
}

impl Actor {
    async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            self.dispatch();
            let deadline = self.rae.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.handle(event),
                    None => break,
                },
                () = async {
                    match deadline {
                        Some(deadline) => tokio::time::sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                } => self.rae.handle_timeout(Instant::now()),
                () = stop_signal(&mut shutdown) => break,
            }
        }
        tracing::info!(local_as = self.rae.config().local_as, "RAE stopped");
    }

    fn dispatch(&mut self) {
        while let Some(output) = self.rae.poll_transmit() {
            match output {
                Output::Peer { peer, message } => {
                    let Some(state) = self.peers.get_mut(peer) else {
                        continue;
                    };
                    match &message {
                        InterRaeMessage::Update(_) => state.updates_out += 1,
                        InterRaeMessage::Withdraw(_) => state.withdraws_out += 1,
                        _ => {}
                    }
                    if let Some((_, tx)) = &state.conn {
                        let mut frame = Vec::new();
                        message.emit(&mut frame);
                        let _ = tx.send(frame);
                    }
                }
                Output::Cme(request) => {
                    if let Some(tx) = &self.cme {
                        let mut frame = Vec::new();
                        CmeMessage::GenericRequest(request).emit(&mut frame);
                        let _ = tx.send(frame);
                    }
                }
            }
        }
    }

    fn handle(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::SessionUp { peer, conn, tx } => {
                let Some(state) = self.peers.get_mut(peer) else {
                    return;
                };
                if state.conn.is_some() {
                    // A newer connection replaces the old one: forget what the old one taught us.
                    self.rae.peer_down(peer, now);
                }
                state.conn = Some((conn, tx));
                state.since = Some(now);
                self.rae.peer_up(peer, now);
            }
            Event::Update { peer, conn, update } => {
                if self.is_current(peer, conn) {
                    self.peers[peer].updates_in += 1;
                    self.rae.handle_update(peer, update, now);
                }
            }
            Event::Withdraw {
                peer,
                conn,
                withdraw,
            } => {
                if self.is_current(peer, conn) {
                    self.peers[peer].withdraws_in += 1;
                    self.rae.handle_withdraw(peer, withdraw, now);
                }
            }
            Event::SessionDown {
                peer,
                conn,
                reason,
                malformed,
            } => {
                if malformed {
                    self.malformed += 1;
                }
                if self.is_current(peer, conn) {
                    let state = &mut self.peers[peer];
                    state.conn = None;
                    state.since = None;
                    state.drops += 1;
                    state.last_error = Some(reason);
                    self.rae.peer_down(peer, now);
                }
            }
            Event::MalformedBeforeOpen => self.malformed += 1,
            Event::CmeUp(tx) => {
                self.cme = Some(tx);
                self.cme_version = None;
                self.rae.set_cme_connected(true);
            }
            Event::CmeReply(version) => {
                self.cme_replies += 1;
                if self.cme_version.is_some_and(|previous| previous != version) {
                    tracing::info!(version, "CME restarted: sending the full state again");
                    self.rae.cme_full_state();
                }
                self.cme_version = Some(version);
            }
            Event::CmeDown { malformed } => {
                if malformed {
                    self.malformed += 1;
                }
                self.cme = None;
                self.rae.set_cme_connected(false);
            }
            Event::Query(query) => self.answer(query, now),
        }
    }

    fn is_current(&self, peer: usize, conn: u64) -> bool {
        self.peers
            .get(peer)
            .and_then(|s| s.conn.as_ref())
            .is_some_and(|(current, _)| *current == conn)
    }

    fn answer(&self, query: Query, now: Instant) {
        match query {
            Query::Peers(reply) => {
                let views = self
                    .rae
                    .config()
                    .peers
                    .iter()
                    .zip(&self.peers)
                    .map(|(config, state)| PeerView {
                        as_number: config.as_number,
                        address: config.address.to_string(),
                        ttl: config.ttl,
                        state: if state.conn.is_some() {
                            SessionState::Established
                        } else {
                            SessionState::Idle
                        },
                        established_for_secs: state
                            .since
                            .map(|s| now.duration_since(s).as_secs_f64()),
                        updates_in: state.updates_in,
                        withdraws_in: state.withdraws_in,
                        updates_out: state.updates_out,
                        withdraws_out: state.withdraws_out,
                        session_drops: state.drops,
                        last_error: state.last_error.clone(),
                    })
                    .collect();
                let _ = reply.send(views);
            }
            Query::Routes {
                prefix,
                cos,
                preferred_only,
                reply,
            } => {
                let mut routes = self.rae.routes(prefix, cos);
                if preferred_only {
                    for route in &mut routes {
                        route.paths.retain(|p| p.preferred);
                    }
                    routes.retain(|r| !r.paths.is_empty());
                }
                let _ = reply.send(routes);
            }
            Query::Metrics(reply) => {
                let rib = self.rae.rib();
                let _ = reply.send(MetricsView {
                    local_as: self.rae.config().local_as,
                    counters: self.rae.counters().clone(),
                    peers_configured: self.peers.len(),
                    sessions_established: self.peers.iter().filter(|p| p.conn.is_some()).count(),
                    routes: rib.route_count(),
                    paths: rib.path_count(),
                    preferred_paths: rib.iter().map(|(_, e)| e.preferred().len()).sum(),
                    cme_connected: self.cme.is_some(),
                    cme_replies: self.cme_replies,
                    malformed_frames: self.malformed,
                });
            }
        }
    }
}

/// Resolves once the daemon is told to stop (the watch guard is not held across awaits).
async fn stop_signal(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

async fn accept_loop(shared: Shared, listener: TcpListener) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    tokio::spawn(run_connection(shared.clone(), stream, remote, None));
                }
                Err(err) => {
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(MIN_BACKOFF).await;
                }
            },
            () = stop_signal(&mut shutdown) => return,
        }
    }
}

fn connect_socket(local: SocketAddrV4, ttl: u32) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_ttl_v4(ttl)?;
    socket.set_nonblocking(true)?;
    // Our connections come from our own address so that the peer recognises us.
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(*local.ip(), 0)).into())?;
    Ok(tokio::net::TcpSocket::from_std_stream(
        std::net::TcpStream::from(socket),
    ))
}

async fn connect_loop(shared: Shared, peer: usize) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut backoff = MIN_BACKOFF;
    let target = shared.config.peers[peer].address;
    let ttl = shared.config.peers[peer].ttl;
    loop {
        let attempt = async {
            let socket = connect_socket(shared.config.local_address, ttl)?;
            socket.connect(SocketAddr::V4(target)).await
        };
        let connected = tokio::select! {
            result = attempt => result,
            () = stop_signal(&mut shutdown) => return,
        };
        match connected {
            Ok(stream) => {
                let remote = SocketAddr::V4(target);
                if run_connection(shared.clone(), stream, remote, Some(peer)).await {
                    backoff = MIN_BACKOFF;
                }
            }
            Err(err) => tracing::debug!(peer = %target, %err, "connect failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {},
            () = stop_signal(&mut shutdown) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Why a connection ended, for the log and the peer view.
enum Closed {
    Eof,
    Io(std::io::Error),
    Wire(WireError),
    Session(SessionError),
    Replaced,
    Shutdown,
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Eof => write!(f, "connection closed by the peer"),
            Closed::Io(err) => write!(f, "socket error: {err}"),
            Closed::Wire(err) => write!(f, "malformed frame: {err}"),
            Closed::Session(err) => write!(f, "{err}"),
            Closed::Replaced => write!(f, "replaced by a newer connection"),
            Closed::Shutdown => write!(f, "shutting down"),
        }
    }
}

/// Runs one inter-RAE connection to its end; returns whether the session was established.
async fn run_connection(
    shared: Shared,
    stream: TcpStream,
    remote: SocketAddr,
    initiator_for: Option<usize>,
) -> bool {
    let config = shared.config.clone();
    let conn = shared.conn_id();
    let now = Instant::now();
    let mut peer = initiator_for;
    let (mut session, first) = match initiator_for {
        Some(index) => {
            let (session, open) = Session::initiate(
                config.local_as,
                config.peers[index].as_number,
                config.hold_time,
                now,
            );
            (session, Some(open))
        }
        None => (
            Session::accept(config.local_as, config.hold_time, now),
            None,
        ),
    };
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut out) = mpsc::unbounded_channel::<Vec<u8>>();
    let mut shutdown = shared.shutdown.subscribe();
    let mut buffer: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut established = false;
    let remote_ip = remote.ip();
    let result: Closed = 'conn: {
        if let Some(open) = first {
            let mut frame = Vec::new();
            open.emit(&mut frame);
            if let Err(err) = writer.write_all(&frame).await {
                break 'conn Closed::Io(err);
            }
        }
        loop {
            let deadline = tokio::time::Instant::from_std(session.poll_timeout());
            tokio::select! {
                read = reader.read_buf(&mut buffer) => {
                    match read {
                        Ok(0) => break 'conn Closed::Eof,
                        Ok(_) => {}
                        Err(err) => break 'conn Closed::Io(err),
                    }
                    let mut consumed = 0;
                    loop {
                        let length = match wire::check_frame(&buffer[consumed..]) {
                            Ok(Some(length)) => length,
                            Ok(None) => break,
                            Err(err) => break 'conn Closed::Wire(err),
                        };
                        let frame = Frame::new_unchecked(&buffer[consumed..consumed + length]);
                        consumed += length;
                        let message = match InterRaeMessage::parse(&frame) {
                            Ok(message) => message,
                            Err(err) => break 'conn Closed::Wire(err),
                        };
                        let known = |as_number: u32| {
                            config
                                .peer_index(as_number)
                                .is_some_and(|i| std::net::IpAddr::V4(*config.peers[i].address.ip()) == remote_ip)
                        };
                        let (event, reply) = match session.handle_message(message, Instant::now(), known) {
                            Ok(result) => result,
                            Err(err) => break 'conn Closed::Session(err),
                        };
                        match event {
                            Some(SessionEvent::Established { peer_as }) => {
                                let Some(index) = config.peer_index(peer_as) else {
                                    break 'conn Closed::Session(SessionError::UnknownPeer(peer_as));
                                };
                                peer = Some(index);
                                established = true;
                                if let Err(err) = writer.as_ref().set_ttl(config.peers[index].ttl) {
                                    tracing::warn!(peer_as, %err, "cannot set the socket TTL");
                                }
                                tracing::info!(local_as = config.local_as, peer_as, %remote, "session established");
                                let _ = shared.events.send(Event::SessionUp { peer: index, conn, tx: tx.clone() });
                            }
                            Some(SessionEvent::Update(update)) => {
                                if let Some(peer) = peer {
                                    let _ = shared.events.send(Event::Update { peer, conn, update });
                                }
                            }
                            Some(SessionEvent::Withdraw(withdraw)) => {
                                if let Some(peer) = peer {
                                    let _ = shared.events.send(Event::Withdraw { peer, conn, withdraw });
                                }
                            }
                            None => {}
                        }
                        // Written after the TTL is set: the confirming Open already uses it.
                        if let Some(reply) = reply {
                            let mut frame = Vec::new();
                            reply.emit(&mut frame);
                            if let Err(err) = writer.write_all(&frame).await {
                                break 'conn Closed::Io(err);
                            }
                        }
                    }
                    buffer.drain(..consumed);
                }
                frame = out.recv(), if established => {
                    let Some(frame) = frame else { break 'conn Closed::Replaced };
                    if let Err(err) = writer.write_all(&frame).await {
                        break 'conn Closed::Io(err);
                    }
                    session.on_sent(Instant::now());
                }
                () = tokio::time::sleep_until(deadline) => {
                    match session.handle_timeout(Instant::now()) {
                        Ok(Some(keepalive)) => {
                            let mut frame = Vec::new();
                            keepalive.emit(&mut frame);
                            if let Err(err) = writer.write_all(&frame).await {
                                break 'conn Closed::Io(err);
                            }
                        }
                        Ok(None) => {}
                        Err(err) => break 'conn Closed::Session(err),
                    }
                }
                () = stop_signal(&mut shutdown) => break 'conn Closed::Shutdown,
            }
        }
    };
    let malformed = matches!(result, Closed::Wire(_));
    match &result {
        Closed::Wire(_) | Closed::Session(_) => {
            tracing::warn!(local_as = config.local_as, %remote, reason = %result, "inter-RAE session closed")
        }
        _ => {
            tracing::info!(local_as = config.local_as, %remote, reason = %result, "inter-RAE session closed")
        }
    }
    match (peer, established) {
        (Some(peer), true) => {
            let _ = shared.events.send(Event::SessionDown {
                peer,
                conn,
                reason: result.to_string(),
                malformed,
            });
        }
        _ if malformed => {
            // Not a session yet: still count the malformed frame.
            let _ = shared.events.send(Event::MalformedBeforeOpen);
        }
        _ => {}
    }
    established
}

async fn cme_loop(shared: Shared, cme: SocketAddrV4) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut backoff = MIN_BACKOFF;
    loop {
        let connected = tokio::select! {
            result = TcpStream::connect(SocketAddr::V4(cme)) => result,
            () = stop_signal(&mut shutdown) => return,
        };
        match connected {
            Ok(stream) => {
                backoff = MIN_BACKOFF;
                tracing::info!(%cme, "connected to the CME");
                let malformed = run_cme(&shared, stream, &mut shutdown).await;
                let _ = shared.events.send(Event::CmeDown { malformed });
                if *shutdown.borrow() {
                    return;
                }
            }
            Err(err) => tracing::debug!(%cme, %err, "CME connect failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {},
            () = stop_signal(&mut shutdown) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Runs one CME connection; returns whether it ended on a malformed frame.
async fn run_cme(shared: &Shared, stream: TcpStream, shutdown: &mut watch::Receiver<bool>) -> bool {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut out) = mpsc::unbounded_channel::<Vec<u8>>();
    let _ = shared.events.send(Event::CmeUp(tx));
    let mut buffer = Vec::with_capacity(4096);
    loop {
        tokio::select! {
            read = reader.read_buf(&mut buffer) => {
                match read {
                    Ok(0) => { tracing::info!("CME closed the connection"); return false; }
                    Ok(_) => {}
                    Err(err) => { tracing::info!(%err, "CME connection failed"); return false; }
                }
                let mut consumed = 0;
                loop {
                    let length = match wire::check_frame(&buffer[consumed..]) {
                        Ok(Some(length)) => length,
                        Ok(None) => break,
                        Err(err) => { tracing::warn!(%err, "malformed frame from the CME"); return true; }
                    };
                    let frame = Frame::new_unchecked(&buffer[consumed..consumed + length]);
                    consumed += length;
                    match CmeMessage::parse(&frame) {
                        Ok(CmeMessage::Reply(reply)) => {
                            let _ = shared.events.send(Event::CmeReply(reply.version));
                        }
                        Ok(CmeMessage::GenericRequest(_)) => {
                            tracing::warn!("the CME sent a GenericRequest: closing");
                            return true;
                        }
                        Err(err) => { tracing::warn!(%err, "malformed frame from the CME"); return true; }
                    }
                }
                buffer.drain(..consumed);
            }
            frame = out.recv() => {
                let Some(frame) = frame else { return false };
                if let Err(err) = writer.write_all(&frame).await {
                    tracing::info!(%err, "CME connection failed");
                    return false;
                }
            }
            () = stop_signal(shutdown) => return false,
        }
    }
}
