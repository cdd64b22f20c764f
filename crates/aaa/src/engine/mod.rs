//! The sans-IO RADIUS engine: datagrams and the time in, datagrams and records out.

mod coa;
mod hooks;
mod intake;
mod local;
mod reply;
mod upstream;

use crate::client::{
    reply_ma_context, Exchange, IdSpace, MessageAuthenticator as Ma, ReplyError, Retry,
    ServerHealth, Timeout,
};
use crate::clients::ClientTable;
use crate::config::{
    EngineConfig, Handler, LoadBalance, LocalDatabase, PoolConfig, UpstreamConfig,
};
use crate::dedup::{ReplyCache, RequestKey, Seen};
use crate::policy::{Direction, HookContext, Policy, Verdict};
use crate::sessions::SessionDirectory;
use crate::stats::{ClientStats, ServerStats, StatsSnapshot, UpstreamStats};
use brasa_radius::attr::{
    EAP_MESSAGE, ERROR_CAUSE, MESSAGE_AUTHENTICATOR, NAS_IP_ADDRESS, PROXY_STATE, USER_NAME,
};
use brasa_radius::auth::{self, MessageAuthenticator};
use brasa_radius::{wire, Code, Dictionary, ErrorCause, Message};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
pub use reply::finalize_response;
use reply::{copy_proxy_states, remove_proxy_state};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The engine's tables hash keys it made itself or that arrived from known clients; foldhash
/// with a per-table random seed costs a fraction of SipHash per lookup.
type Hasher = foldhash::fast::RandomState;

/// Sockets (of 256 Identifiers each) per upstream server: 16 384 requests in flight.
const MAX_SLOTS_PER_UPSTREAM: usize = 64;
/// CoA/Disconnect requests to a NAS: wait this long, this many times.
const COA_TIMEOUT: Duration = Duration::from_secs(3);
const COA_ATTEMPTS: u32 = 3;

/// Index of a listening socket in [`Engine::listeners`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(pub usize);

/// What a listening socket takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    /// Access-Requests (and Status-Server) from NASes.
    Auth,
    /// Accounting-Requests (and Status-Server) from NASes.
    Acct,
    /// CoA/Disconnect requests from AAA servers.
    Coa,
}

/// One upstream server: pool, auth or accounting list, position in that list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamKey {
    /// Index of the pool.
    pub pool: usize,
    /// Accounting list (`true`) or authentication list.
    pub accounting: bool,
    /// Index in the list.
    pub server: usize,
}

/// A socket the shell owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SocketRef {
    /// A listening socket.
    Listener(ListenerId),
    /// The `slot`-th socket towards an upstream server (opened by the shell on first use).
    Upstream {
        /// The server.
        key: UpstreamKey,
        /// Socket slot (each with its own 256 Identifiers).
        slot: u16,
    },
    /// The `slot`-th socket that sends CoA/Disconnect requests to NASes.
    NasCoa {
        /// Socket slot.
        slot: u16,
    },
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Socket to send from.
    pub socket: SocketRef,
    /// Destination.
    pub to: SocketAddr,
    /// The datagram.
    pub bytes: Vec<u8>,
}

/// Names one exchange parked at an external hook (see [`Engine::resume_hook`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HookTicket(pub u64);

/// A packet handed to an external hook processor.
#[derive(Clone, Debug, PartialEq)]
pub struct HookRequest {
    /// Quote it in [`Engine::resume_hook`].
    pub ticket: HookTicket,
    /// [`crate::ExternalHooks::handler`] of the server.
    pub handler: usize,
    /// Where the packet is going.
    pub direction: Direction,
    /// The packet at this point (encrypted attributes in the NAS's context). Only its attributes
    /// may be changed: code, identifier and authenticator are the engine's.
    pub packet: Message,
    /// Name of the NAS client.
    pub client: Arc<str>,
    /// Name of the server that received the request.
    pub server: Arc<str>,
}

/// What an external hook processor decided.
#[derive(Clone, Debug, PartialEq)]
pub enum HookResult {
    /// Go on with this packet (its attributes replace the parked packet's).
    Continue(Message),
    /// Discard the packet; counted as dropped by policy.
    Drop,
}

/// What the engine asks the shell to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send a datagram.
    Transmit(Transmit),
    /// Append an accounting record to a local database's log.
    Accounting {
        /// Index of the local database.
        database: usize,
        /// The record (the shell adds the time).
        record: serde_json::Map<String, serde_json::Value>,
    },
    /// Run an external hook on a packet and answer with [`Engine::resume_hook`].
    Hook(HookRequest),
}

/// A NAS request on its way through the engine.
#[derive(Clone, Debug)]
struct ClientRequest {
    listener: usize,
    from: SocketAddr,
    client: usize,
    server: usize,
    /// The request in the NAS's crypto context, after the egress hook.
    request: Message,
    /// Whether the NAS's request carried a Message-Authenticator.
    had_message_authenticator: bool,
    dedup: RequestKey,
    /// Servers already tried, for failover.
    tried: Vec<usize>,
}

/// A CoA/Disconnect request from an AAA server being relayed to a NAS.
#[derive(Clone, Debug)]
struct CoaRequest {
    listener: usize,
    from: SocketAddr,
    secret: Vec<u8>,
    request: Message,
    had_message_authenticator: bool,
    dedup: RequestKey,
}

#[derive(Clone, Debug)]
enum Origin {
    Client(Box<ClientRequest>),
    Probe,
    Coa(Box<CoaRequest>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum PendingSocket {
    Upstream(usize, bool, usize, u16),
    NasCoa(u16),
}

type PendingKey = (PendingSocket, u8);

#[derive(Debug)]
struct Pending {
    origin: Origin,
    /// The request as sent, its timer, and what its answer must satisfy.
    exchange: Exchange,
    /// The Proxy-State brasa added (none in probes), taken out of the answer.
    proxy_state: Option<[u8; 4]>,
    destination: SocketAddr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Pending(PendingKey),
    Probe(usize, bool, usize),
    Hook(u64),
}

/// An exchange waiting for an external hook: the request (and, at ingress, the reply); the
/// hooked packet's attributes are with the processor until it answers.
#[derive(Debug)]
struct Parked {
    job: Box<ClientRequest>,
    reply: Option<Message>,
    deadline: Instant,
}

#[derive(Debug)]
struct Upstream {
    config: UpstreamConfig,
    /// `config.secret`, shared with every exchange in flight.
    secret: Arc<[u8]>,
    ids: IdSpace,
    health: ServerHealth,
    probe_outstanding: bool,
    stats: UpstreamStats,
    rtt: Option<Duration>,
}

#[derive(Debug)]
struct Pool {
    config: PoolConfig,
    auth: Vec<Upstream>,
    acct: Vec<Upstream>,
    cursor: [usize; 2],
}

impl Pool {
    fn list(&self, accounting: bool) -> &[Upstream] {
        if accounting {
            &self.acct
        } else {
            &self.auth
        }
    }

    fn list_mut(&mut self, accounting: bool) -> &mut Vec<Upstream> {
        if accounting {
            &mut self.acct
        } else {
            &mut self.auth
        }
    }
}

#[derive(Debug)]
struct Listener {
    address: SocketAddr,
    kind: ListenerKind,
    server: usize,
}

/// The RADIUS server/proxy state machine. See the crate documentation.
pub struct Engine {
    dictionary: Arc<Dictionary>,
    clients: ClientTable,
    client_stats: Vec<ClientStats>,
    servers: Vec<crate::config::ServerConfig>,
    server_stats: Vec<ServerStats>,
    listeners: Vec<Listener>,
    pools: Vec<Pool>,
    local_databases: Vec<LocalDatabase>,
    policies: Vec<Arc<dyn Policy>>,
    replies: ReplyCache,
    pending: HashMap<PendingKey, Pending, Hasher>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    coa_ids: IdSpace,
    sessions: SessionDirectory,
    rng: StdRng,
    next_proxy_state: u32,
    unknown_client: u64,
    coa_unroutable: u64,
    parked: HashMap<u64, Parked, Hasher>,
    next_ticket: u64,
    external_hook_timeout: Duration,
    hooks_deferred: u64,
    hook_timeouts: u64,
    /// Client and server names as hook requests carry them (shared, not copied per packet).
    client_names: Vec<Arc<str>>,
    server_names: Vec<Arc<str>>,
}

impl Engine {
    /// Builds an engine. `seed` feeds the generator of Request Authenticators and Proxy-State
    /// tokens: the shell passes OS randomness, tests a constant.
    pub fn new(config: EngineConfig, dictionary: Arc<Dictionary>, seed: [u8; 32]) -> Self {
        let client_stats = config
            .clients
            .iter()
            .map(|c| ClientStats {
                name: c.name.clone(),
                ..ClientStats::default()
            })
            .collect();
        let mut listeners = Vec::new();
        for (index, server) in config.servers.iter().enumerate() {
            if let Some(address) = server.auth_listen {
                listeners.push(Listener {
                    address,
                    kind: ListenerKind::Auth,
                    server: index,
                });
            }
            if let Some(address) = server.acct_listen {
                listeners.push(Listener {
                    address,
                    kind: ListenerKind::Acct,
                    server: index,
                });
            }
        }
        if let Some(address) = config.coa_listen {
            listeners.push(Listener {
                address,
                kind: ListenerKind::Coa,
                server: usize::MAX,
            });
        }
        let pools = config
            .pools
            .iter()
            .map(|pool| {
                let upstreams = |list: &[UpstreamConfig]| {
                    list.iter()
                        .map(|server| Upstream {
                            secret: Arc::from(&server.secret[..]),
                            config: server.clone(),
                            ids: IdSpace::new(MAX_SLOTS_PER_UPSTREAM),
                            health: ServerHealth::default(),
                            probe_outstanding: false,
                            stats: UpstreamStats {
                                pool: pool.name.clone(),
                                name: server.name.clone(),
                                address: server.address.to_string(),
                                ..UpstreamStats::default()
                            },
                            rtt: None,
                        })
                        .collect()
                };
                Pool {
                    auth: upstreams(&pool.auth_servers),
                    acct: upstreams(&pool.acct_servers),
                    config: pool.clone(),
                    cursor: [0; 2],
                }
            })
            .collect();
        let server_stats = config
            .servers
            .iter()
            .map(|s| ServerStats {
                name: s.name.clone(),
                requests: 0,
            })
            .collect();
        let client_names = config.clients.iter().map(|c| Arc::from(&*c.name)).collect();
        let server_names = config.servers.iter().map(|s| Arc::from(&*s.name)).collect();
        Self {
            dictionary,
            clients: ClientTable::new(config.clients),
            client_stats,
            servers: config.servers,
            server_stats,
            listeners,
            pools,
            local_databases: config.local_databases,
            policies: config.policies,
            replies: ReplyCache::new(config.duplicate_window),
            pending: HashMap::default(),
            timers: BinaryHeap::new(),
            coa_ids: IdSpace::new(MAX_SLOTS_PER_UPSTREAM),
            sessions: SessionDirectory::default(),
            rng: StdRng::from_seed(seed),
            next_proxy_state: 0,
            unknown_client: 0,
            coa_unroutable: 0,
            parked: HashMap::default(),
            next_ticket: 0,
            external_hook_timeout: config.external_hook_timeout,
            hooks_deferred: 0,
            hook_timeouts: 0,
            client_names,
            server_names,
        }
    }

    /// The listening sockets the shell must open, by [`ListenerId`] order.
    pub fn listeners(&self) -> Vec<(ListenerId, SocketAddr, ListenerKind)> {
        self.listeners
            .iter()
            .enumerate()
            .map(|(index, l)| (ListenerId(index), l.address, l.kind))
            .collect()
    }

    /// The address of an upstream server (the shell connects its slot sockets there).
    pub fn upstream_address(&self, key: UpstreamKey) -> Option<SocketAddr> {
        self.upstream(key).map(|u| u.config.address)
    }

    /// The local database at `index` (the shell needs its accounting log path).
    pub fn local_database(&self, index: usize) -> Option<&LocalDatabase> {
        self.local_databases.get(index)
    }

    /// The dictionary in force.
    pub fn dictionary(&self) -> &Arc<Dictionary> {
        &self.dictionary
    }

    /// When [`Engine::handle_timeout`] must be called next.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// A datagram arrived on `socket` from `from`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        socket: SocketRef,
        from: SocketAddr,
        bytes: &[u8],
        out: &mut Vec<Output>,
    ) {
        match socket {
            SocketRef::Listener(ListenerId(index)) => {
                match self.listeners.get(index).map(|l| l.kind) {
                    Some(ListenerKind::Coa) => {
                        self.handle_coa_request(now, index, from, bytes, out)
                    }
                    Some(kind) => self.handle_nas_request(now, index, kind, from, bytes, out),
                    None => {}
                }
            }
            SocketRef::Upstream { key, slot } => {
                let socket = PendingSocket::Upstream(key.pool, key.accounting, key.server, slot);
                self.handle_reply(now, socket, from, bytes, out);
            }
            SocketRef::NasCoa { slot } => {
                self.handle_reply(now, PendingSocket::NasCoa(slot), from, bytes, out)
            }
        }
    }

    /// Runs every timer due at `now` (retransmissions, failover, Status-Server probes).
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        while let Some(Reverse((at, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Pending(key) => {
                    if self
                        .pending
                        .get(&key)
                        .is_some_and(|p| p.exchange.deadline() == at)
                    {
                        self.expire_pending(now, key, out);
                    }
                }
                Timer::Probe(pool, accounting, server) => self.send_probe(
                    now,
                    UpstreamKey {
                        pool,
                        accounting,
                        server,
                    },
                    out,
                ),
                Timer::Hook(ticket) => {
                    if self.parked.get(&ticket).is_some_and(|p| p.deadline == at) {
                        if let Some(parked) = self.parked.remove(&ticket) {
                            self.hook_timeouts += 1;
                            self.client_stats[parked.job.client].dropped_by_policy += 1;
                            self.replies.forget(&parked.job.dedup);
                            tracing::warn!(client = %self.clients.all()[parked.job.client].name,
                                "external hook did not answer in time; packet dropped");
                        }
                    }
                }
            }
        }
    }

    /// All counters now.
    pub fn stats(&self) -> StatsSnapshot {
        let mut upstreams = Vec::new();
        for pool in &self.pools {
            for upstream in pool.auth.iter().chain(&pool.acct) {
                let mut stats = upstream.stats.clone();
                stats.state = if upstream.health.alive() {
                    "alive"
                } else {
                    "dead"
                }
                .into();
                stats.in_flight = upstream.ids.in_flight() as u64;
                stats.rtt_us = upstream.rtt.map(|d| d.as_micros() as u64).unwrap_or(0);
                upstreams.push(stats);
            }
        }
        StatsSnapshot {
            unknown_client: self.unknown_client,
            clients: self.client_stats.clone(),
            servers: self.server_stats.clone(),
            upstreams,
            coa_unroutable: self.coa_unroutable,
            duplicate_cache_entries: self.replies.len() as u64,
            sessions: self.sessions.len() as u64,
            hooks_deferred: self.hooks_deferred,
            hooks_pending: self.parked.len() as u64,
            hook_timeouts: self.hook_timeouts,
        }
    }

    fn add_pending(&mut self, key: PendingKey, pending: Pending) {
        self.timers
            .push(Reverse((pending.exchange.deadline(), Timer::Pending(key))));
        self.pending.insert(key, pending);
    }

    /// The next Proxy-State token.
    fn proxy_state(&mut self) -> [u8; 4] {
        let token = self.next_proxy_state.to_be_bytes();
        self.next_proxy_state = self.next_proxy_state.wrapping_add(1);
        token
    }

    fn upstream(&self, key: UpstreamKey) -> Option<&Upstream> {
        self.pools
            .get(key.pool)?
            .list(key.accounting)
            .get(key.server)
    }

    fn upstream_mut(&mut self, key: UpstreamKey) -> Option<&mut Upstream> {
        self.pools
            .get_mut(key.pool)?
            .list_mut(key.accounting)
            .get_mut(key.server)
    }
}
