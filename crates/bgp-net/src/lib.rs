//! The tokio shell of the BGP LEG speaker: it owns the TCP connections and the timers of the
//! sans-IO [`brasa_bgp::Peer`]s and hands their [`RouteEvent`]s to the consumer.
//!
//! * One task per configured peer drives its `Peer`: dials (active peers, with the core's
//!   doubling back-off) or takes connections from the listeners (passive peers), writes what
//!   the core asks, sleeps until its next timer.
//! * One task per listen address accepts connections and hands each to the task of the peer
//!   whose address it comes from; connections from unknown addresses are closed at once.
//! * Events go to the consumer through the bounded channel it passes to [`Speaker::start`].
//!   A full channel is back-pressure, never loss: the peer's task stops reading its socket
//!   (TCP flow control then slows the peer down) while it keeps sending its keepalives, and
//!   it restarts its hold timer, since unread input is no sign of a dead peer.
//! * [`Speaker::shutdown`] sends CEASE (administrative shutdown) on every session.
#![forbid(unsafe_code)]

use brasa_bgp::{
    Action, ConfigError, LocalConfig, Opened, Peer, PeerConfig, PeerStats, RequestError,
    RouteEvent, SessionInfo, State,
};
use brasa_bgp::{Route, VpnFamily};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Shortest time a write may take before the connection is given up (the hold time when longer).
const WRITE_TIMEOUT_MIN_SECS: u16 = 30;
/// How long a closing connection waits for the peer's close after our FIN (see [`linger_close`]).
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// One configured peer.
#[derive(Debug, Clone)]
pub struct NetPeerConfig {
    /// The session parameters (address, AS, hold time, mode, families, graceful restart).
    pub peer: PeerConfig,
    /// The TCP port an active peer is dialled on (179 normally).
    pub port: u16,
    /// The source address for dialling; the system picks one when `None`.
    pub local_address: Option<IpAddr>,
}

/// The speaker's configuration.
#[derive(Debug, Clone)]
pub struct SpeakerConfig {
    /// Local AS and router id.
    pub local: LocalConfig,
    /// Addresses to accept connections on (port 0 picks a free port; see
    /// [`Speaker::listen_addrs`]). Needed for passive peers.
    pub listen: Vec<SocketAddr>,
    /// The peers.
    pub peers: Vec<NetPeerConfig>,
}

/// Why the speaker did not start; nothing was left running.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A peer's configuration is invalid.
    #[error("peer {peer}: {source}")]
    Peer {
        /// The peer's address.
        peer: IpAddr,
        /// What is wrong.
        #[source]
        source: ConfigError,
    },
    /// Two peers have the same address.
    #[error("peer {0} is configured twice")]
    DuplicatePeer(IpAddr),
    /// A passive peer needs a listen address.
    #[error("peer {0} is passive but no listen address is configured")]
    NoListener(IpAddr),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The system's reason.
        #[source]
        source: io::Error,
    },
}

/// Why a request to a running speaker failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    /// No peer has this address.
    #[error("no peer {0} is configured")]
    UnknownPeer(IpAddr),
    /// The speaker is shutting down.
    #[error("the speaker is shut down")]
    ShutDown,
    /// The peer cannot do it in its state.
    #[error(transparent)]
    Request(#[from] RequestError),
}

/// A snapshot of one peer.
#[derive(Debug, Clone)]
pub struct PeerStatus {
    /// The peer's address.
    pub address: IpAddr,
    /// Session state.
    pub state: State,
    /// What was negotiated, when Established.
    pub session: Option<SessionInfo>,
    /// Counters.
    pub stats: PeerStats,
    /// Routes in the Adj-RIB-In.
    pub routes: usize,
    /// Of which stale (graceful restart).
    pub stale: usize,
    /// Heap bytes of the Adj-RIB-In.
    pub rib_bytes: usize,
}

enum Command {
    Accepted(TcpStream),
    Dialled(io::Result<TcpStream>),
    Status(oneshot::Sender<PeerStatus>),
    Routes(oneshot::Sender<Vec<(Route, bool)>>),
    RouteRefresh(VpnFamily, oneshot::Sender<Result<(), RequestError>>),
    Shutdown,
}

/// A running speaker.
#[derive(Debug)]
pub struct Speaker {
    peers: HashMap<IpAddr, mpsc::Sender<Command>>,
    listen_addrs: Vec<SocketAddr>,
    peer_tasks: Vec<JoinHandle<()>>,
    listener_tasks: Vec<JoinHandle<()>>,
}

impl Speaker {
    /// Validates `config`, binds the listen addresses and starts every peer. Events go to
    /// `events`, in order per peer.
    pub async fn start(
        config: SpeakerConfig,
        events: mpsc::Sender<RouteEvent>,
    ) -> Result<Speaker, StartError> {
        let mut cores = Vec::new();
        for p in &config.peers {
            let address = p.peer.address;
            let core =
                Peer::new(config.local, p.peer.clone()).map_err(|source| StartError::Peer {
                    peer: address,
                    source,
                })?;
            if cores
                .iter()
                .any(|(c, _): &(Peer, _)| c.config().address == address)
            {
                return Err(StartError::DuplicatePeer(address));
            }
            if p.peer.mode == brasa_bgp::ConnectMode::Passive && config.listen.is_empty() {
                return Err(StartError::NoListener(address));
            }
            cores.push((core, p.clone()));
        }
        let mut listeners = Vec::new();
        for addr in &config.listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind {
                    addr: *addr,
                    source,
                })?;
            listeners.push(listener);
        }
        let listen_addrs = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();

        let mut peers = HashMap::new();
        let mut peer_tasks = Vec::new();
        for (core, net) in cores {
            let (tx, rx) = mpsc::channel(16);
            peers.insert(net.peer.address, tx.clone());
            let task = PeerTask {
                core,
                net,
                commands: tx,
                events: events.clone(),
                conn: None,
                input: Vec::new(),
            };
            peer_tasks.push(tokio::spawn(task.run(rx)));
        }
        let listener_tasks = listeners
            .into_iter()
            .map(|l| {
                let peers = peers.clone();
                tokio::spawn(accept_loop(l, peers))
            })
            .collect();
        Ok(Speaker {
            peers,
            listen_addrs,
            peer_tasks,
            listener_tasks,
        })
    }

    /// The bound listen addresses (with the ports the system chose for port 0).
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.listen_addrs
    }

    /// A snapshot of every peer, in no particular order.
    pub async fn status(&self) -> Vec<PeerStatus> {
        let mut out = Vec::new();
        for address in self.peers.keys() {
            if let Ok(s) = self.peer_status(*address).await {
                out.push(s);
            }
        }
        out
    }

    /// A snapshot of one peer.
    pub async fn peer_status(&self, peer: IpAddr) -> Result<PeerStatus, SpeakerError> {
        self.ask(peer, Command::Status).await
    }

    /// The routes of one peer's Adj-RIB-In, each with its stale flag.
    pub async fn routes(&self, peer: IpAddr) -> Result<Vec<(Route, bool)>, SpeakerError> {
        self.ask(peer, Command::Routes).await
    }

    /// Asks `peer` to send `family` again (route refresh).
    pub async fn route_refresh(&self, peer: IpAddr, family: VpnFamily) -> Result<(), SpeakerError> {
        Ok(self
            .ask(peer, |tx| Command::RouteRefresh(family, tx))
            .await??)
    }

    async fn ask<T>(
        &self,
        peer: IpAddr,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SpeakerError> {
        let tx = self
            .peers
            .get(&peer)
            .ok_or(SpeakerError::UnknownPeer(peer))?;
        let (reply, answer) = oneshot::channel();
        tx.send(command(reply))
            .await
            .map_err(|_| SpeakerError::ShutDown)?;
        answer.await.map_err(|_| SpeakerError::ShutDown)
    }

    /// Sends CEASE on every session, closes the connections and the listeners, and waits for
    /// the peer tasks to end. The withdrawals of the stopped sessions are offered to the event
    /// channel but not waited for if it is full.
    pub async fn shutdown(self) {
        for task in &self.listener_tasks {
            task.abort();
        }
        for tx in self.peers.values() {
            let _ = tx.send(Command::Shutdown).await;
        }
        for task in self.peer_tasks {
            let _ = task.await;
        }
    }
}

async fn accept_loop(listener: TcpListener, peers: HashMap<IpAddr, mpsc::Sender<Command>>) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors and the like: wait instead of spinning.
                tracing::warn!(%err, "bgp: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match peers.get(&canonical(from.ip())) {
            Some(tx) => {
                let _ = tx.send(Command::Accepted(stream)).await;
            }
            None => tracing::info!(%from, "bgp: connection from an unconfigured address closed"),
        }
    }
}

/// An IPv4-mapped IPv6 address (a dual-stack listener) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

struct PeerTask {
    core: Peer,
    net: NetPeerConfig,
    commands: mpsc::Sender<Command>,
    events: mpsc::Sender<RouteEvent>,
    conn: Option<TcpStream>,
    input: Vec<u8>,
}

enum Wake {
    Read(io::Result<usize>),
    Timer,
    Command(Option<Command>),
    EventSlot(Result<(), ()>),
}

impl PeerTask {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        self.core.start(Instant::now());
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            self.flush().await;
            let deadline = self.core.poll_timeout().map(tokio::time::Instant::from_std);
            let sleep = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            let blocked = self.core.pending_events() > 0;
            let wake = tokio::select! {
                biased;
                cmd = commands.recv() => Wake::Command(cmd),
                // Events first: the socket is read only when none wait (back-pressure).
                slot = self.events.reserve(), if blocked => Wake::EventSlot(slot.map(|permit| {
                    if let Some(event) = self.core.poll_event() {
                        permit.send(event);
                    }
                }).map_err(|_| ())),
                () = sleep => Wake::Timer,
                n = read(self.conn.as_mut(), &mut chunk), if !blocked && self.conn.is_some() => Wake::Read(n),
            };
            let now = Instant::now();
            match wake {
                Wake::EventSlot(Ok(())) => {
                    // Hand over every event that fits without waiting.
                    while self.core.pending_events() > 0 {
                        let Ok(permit) = self.events.try_reserve() else {
                            break;
                        };
                        if let Some(event) = self.core.poll_event() {
                            permit.send(event);
                        }
                    }
                }
                Wake::EventSlot(Err(())) => {
                    tracing::info!(peer = %self.net.peer.address, "bgp: event consumer gone, stopping the peer");
                    self.stop().await;
                    return;
                }
                Wake::Timer => {
                    if blocked {
                        self.core.reading_paused(now);
                    }
                    self.core.handle_timeout(now);
                }
                Wake::Read(Ok(0)) | Wake::Read(Err(_)) => {
                    tracing::info!(peer = %self.net.peer.address, "bgp: connection closed");
                    self.close_connection(now);
                }
                Wake::Read(Ok(n)) => {
                    self.input.extend_from_slice(&chunk[..n]);
                    let used = self.core.handle_input(now, &self.input);
                    self.input.drain(..used);
                }
                Wake::Command(None) | Wake::Command(Some(Command::Shutdown)) => {
                    self.stop().await;
                    return;
                }
                Wake::Command(Some(command)) => self.command(now, command),
            }
        }
    }

    fn command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Accepted(stream) | Command::Dialled(Ok(stream)) => {
                if let Ok(opened) = self.core.connection_opened(now) {
                    if opened == Opened::Replaced {
                        tracing::info!(peer = %self.net.peer.address, "bgp: new connection replaces the established one");
                    }
                    let _ = stream.set_nodelay(true);
                    self.conn = Some(stream);
                    self.input.clear();
                    tracing::debug!(peer = %self.net.peer.address, "bgp: connected");
                } else {
                    // Connection collision or a stopped peer: refuse the new connection.
                    let mut bytes = Vec::new();
                    brasa_bgp::ProtocolError::Cease(brasa_bgp::CeaseReason::ConnectionRejected)
                        .notification()
                        .emit(&mut bytes);
                    tokio::spawn(async move {
                        let mut stream = stream;
                        let _ = stream.write_all(&bytes).await;
                    });
                }
            }
            Command::Dialled(Err(err)) => {
                tracing::debug!(peer = %self.net.peer.address, %err, "bgp: dial failed");
                self.core.connection_failed(now);
            }
            Command::Status(reply) => {
                let rib = self.core.rib();
                let _ = reply.send(PeerStatus {
                    address: self.net.peer.address,
                    state: self.core.state(),
                    session: self.core.session().cloned(),
                    stats: self.core.stats().clone(),
                    routes: rib.len(),
                    stale: rib.stale(),
                    rib_bytes: rib.heap_bytes(),
                });
            }
            Command::Routes(reply) => {
                let _ = reply.send(self.core.rib().iter().collect());
            }
            Command::RouteRefresh(family, reply) => {
                let _ = reply.send(self.core.request_route_refresh(family));
            }
            Command::Shutdown => {}
        }
    }

    /// Writes what the core queued, then carries out its actions, in that order (a
    /// NOTIFICATION is written before the close it precedes).
    async fn flush(&mut self) {
        loop {
            if let Some(bytes) = self.core.poll_transmit() {
                if let Some(conn) = self.conn.as_mut() {
                    // A peer that stops reading would otherwise hold this task (and its timers)
                    // forever; after a hold time without progress it is as good as dead.
                    let limit = Duration::from_secs(u64::from(
                        self.net.peer.hold_time.max(WRITE_TIMEOUT_MIN_SECS),
                    ));
                    let written = tokio::time::timeout(limit, conn.write_all(&bytes)).await;
                    if let Err(err) =
                        written.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
                    {
                        tracing::info!(peer = %self.net.peer.address, %err, "bgp: write failed");
                        self.close_connection(Instant::now());
                    }
                }
                continue;
            }
            match self.core.poll_action() {
                Some(Action::Connect) => self.dial(),
                Some(Action::Disconnect) => {
                    if let Some(conn) = self.conn.take() {
                        tokio::spawn(linger_close(conn));
                    }
                }
                None => return,
            }
        }
    }

    fn close_connection(&mut self, now: Instant) {
        self.conn = None;
        self.input.clear();
        self.core.connection_closed(now);
    }

    fn dial(&self) {
        let addr = SocketAddr::new(self.net.peer.address, self.net.port);
        let local = self.net.local_address;
        let timeout = self.net.peer.connect_retry;
        let commands = self.commands.clone();
        tokio::spawn(async move {
            let result = tokio::time::timeout(timeout, connect(addr, local))
                .await
                .unwrap_or_else(|_| {
                    Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
                });
            let _ = commands.send(Command::Dialled(result)).await;
        });
    }

    async fn stop(&mut self) {
        self.core.stop(Instant::now());
        self.flush().await;
        while let Some(event) = self.core.poll_event() {
            if self.events.try_send(event).is_err() {
                break;
            }
        }
    }
}

/// Closes a connection without losing what was just written to it (a NOTIFICATION): FIN after
/// the data, then input is read and discarded until the peer closes or [`CLOSE_LINGER`] passes.
/// Closing a socket with unread input makes the kernel answer with RST, and a peer that gets
/// RST may never read the NOTIFICATION still in its receive queue.
async fn linger_close(mut conn: TcpStream) {
    let _ = conn.shutdown().await;
    let mut scratch = [0u8; 4096];
    let drained = async {
        while let Ok(read) = conn.read(&mut scratch).await {
            if read == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, drained).await;
}

async fn read(conn: Option<&mut TcpStream>, chunk: &mut [u8]) -> io::Result<usize> {
    match conn {
        Some(c) => c.read(chunk).await,
        None => std::future::pending().await,
    }
}

async fn connect(addr: SocketAddr, local: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = local {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(addr).await
}
