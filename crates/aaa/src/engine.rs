//! The sans-IO RADIUS engine: datagrams and the time in, datagrams and records out.

use crate::clients::ClientTable;
use crate::config::{
    EngineConfig, Handler, LoadBalance, LocalDatabase, PoolConfig, UpstreamConfig,
};
use crate::dedup::{ReplyCache, RequestKey, Seen};
use crate::ids::IdSpace;
use crate::local::{self, AuthOutcome};
use crate::policy::{Direction, HookContext, Policy, Verdict};
use crate::sessions::SessionDirectory;
use crate::stats::{ClientStats, ServerStats, StatsSnapshot, UpstreamStats};
use brasa_radius::attr::{
    EAP_MESSAGE, ERROR_CAUSE, MESSAGE_AUTHENTICATOR, NAS_IP_ADDRESS, PROXY_STATE, USER_NAME,
};
use brasa_radius::auth::{self, MessageAuthenticator};
use brasa_radius::{Code, Dictionary, ErrorCause, Packet, RawAttribute};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    pub packet: Packet,
    /// Name of the NAS client.
    pub client: String,
    /// Name of the server that received the request.
    pub server: String,
}

/// What an external hook processor decided.
#[derive(Clone, Debug, PartialEq)]
pub enum HookResult {
    /// Go on with this packet (its attributes replace the parked packet's).
    Continue(Packet),
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
    request: Packet,
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
    request: Packet,
    had_message_authenticator: bool,
    nas: usize,
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
    /// Authenticator of the request as sent (verifies the reply).
    sent_authenticator: [u8; 16],
    proxy_state: Vec<u8>,
    bytes: Vec<u8>,
    destination: SocketAddr,
    sent_at: Instant,
    deadline: Instant,
    attempts: u32,
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
    reply: Option<Packet>,
    deadline: Instant,
}

#[derive(Debug)]
struct Upstream {
    config: UpstreamConfig,
    ids: IdSpace,
    alive: bool,
    consecutive_timeouts: u32,
    dead_since: Option<Instant>,
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
    pending: HashMap<PendingKey, Pending>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    coa_ids: IdSpace,
    sessions: SessionDirectory,
    rng: StdRng,
    next_proxy_state: u32,
    unknown_client: u64,
    coa_unroutable: u64,
    parked: HashMap<u64, Parked>,
    next_ticket: u64,
    external_hook_timeout: Duration,
    hooks_deferred: u64,
    hook_timeouts: u64,
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
                            config: server.clone(),
                            ids: IdSpace::new(MAX_SLOTS_PER_UPSTREAM),
                            alive: true,
                            consecutive_timeouts: 0,
                            dead_since: None,
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
            pending: HashMap::new(),
            timers: BinaryHeap::new(),
            coa_ids: IdSpace::new(MAX_SLOTS_PER_UPSTREAM),
            sessions: SessionDirectory::default(),
            rng: StdRng::from_seed(seed),
            next_proxy_state: 0,
            unknown_client: 0,
            coa_unroutable: 0,
            parked: HashMap::new(),
            next_ticket: 0,
            external_hook_timeout: config.external_hook_timeout,
            hooks_deferred: 0,
            hook_timeouts: 0,
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
                    if self.pending.get(&key).is_some_and(|p| p.deadline == at) {
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
                stats.state = if upstream.alive { "alive" } else { "dead" }.into();
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

    /// The answer of an external hook processor to [`Output::Hook`]. The exchange goes on where
    /// it stopped (upstream selection or local answering after `egress`, the reply to the NAS
    /// after `ingress`). A ticket that is unknown (already timed out) is ignored.
    pub fn resume_hook(
        &mut self,
        now: Instant,
        ticket: HookTicket,
        result: HookResult,
        out: &mut Vec<Output>,
    ) {
        let Some(parked) = self.parked.remove(&ticket.0) else {
            return;
        };
        let Parked { mut job, reply, .. } = parked;
        let packet = match result {
            HookResult::Continue(packet) => packet,
            HookResult::Drop => {
                self.client_stats[job.client].dropped_by_policy += 1;
                self.replies.forget(&job.dedup);
                return;
            }
        };
        match reply {
            None => {
                job.request.attributes = packet.attributes;
                self.dispatch(now, job, out);
            }
            Some(mut reply) => {
                reply.attributes = packet.attributes;
                self.answer_client(&job, reply, true, out);
            }
        }
    }

    /// The external hook set of `server` if it covers (`code`, `direction`).
    fn external_handler(&self, server: usize, code: Code, direction: Direction) -> Option<usize> {
        self.servers[server]
            .external_hooks
            .as_ref()
            .filter(|hooks| hooks.covers(code, direction))
            .map(|hooks| hooks.handler)
    }

    /// Parks `job` (with `reply` at ingress) and asks the shell to run the external hook.
    fn park(
        &mut self,
        now: Instant,
        handler: usize,
        direction: Direction,
        mut job: Box<ClientRequest>,
        mut reply: Option<Packet>,
        out: &mut Vec<Output>,
    ) {
        let ticket = self.next_ticket;
        self.next_ticket = self.next_ticket.wrapping_add(1);
        // The hooked packet's attributes travel to the processor and come back in
        // `resume_hook`; the parked copy keeps only its header meanwhile (at ingress the
        // request stays whole: answering needs it).
        let hooked = reply.as_mut().unwrap_or(&mut job.request);
        let packet = Packet {
            code: hooked.code,
            identifier: hooked.identifier,
            authenticator: hooked.authenticator,
            attributes: std::mem::take(&mut hooked.attributes),
        };
        out.push(Output::Hook(HookRequest {
            ticket: HookTicket(ticket),
            handler,
            direction,
            packet,
            client: self.clients.all()[job.client].name.clone(),
            server: self.servers[job.server].name.clone(),
        }));
        let deadline = now + self.external_hook_timeout;
        self.timers.push(Reverse((deadline, Timer::Hook(ticket))));
        self.hooks_deferred += 1;
        self.parked.insert(
            ticket,
            Parked {
                job,
                reply,
                deadline,
            },
        );
    }

    /// After the egress hooks: answer locally or proxy.
    fn dispatch(&mut self, now: Instant, job: Box<ClientRequest>, out: &mut Vec<Output>) {
        match self.servers[job.server].handler {
            Handler::Local(database) => self.answer_locally(now, database, *job, out),
            Handler::Proxy(pool) => {
                let accounting = job.request.code == Code::AccountingRequest;
                self.forward(now, pool, accounting, job, out);
            }
        }
    }

    /// A reply for the NAS is ready: the ingress hooks, then signing and sending.
    fn deliver_reply(
        &mut self,
        now: Instant,
        mut job: Box<ClientRequest>,
        mut reply: Packet,
        out: &mut Vec<Output>,
    ) {
        if self.run_hook(&mut job, Direction::Ingress, Some(&mut reply)) == Verdict::Drop {
            self.client_stats[job.client].dropped_by_policy += 1;
            self.replies.forget(&job.dedup);
            return;
        }
        if let Some(handler) = self.external_handler(job.server, reply.code, Direction::Ingress) {
            self.park(now, handler, Direction::Ingress, job, Some(reply), out);
            return;
        }
        self.answer_client(&job, reply, true, out);
    }

    // ----- requests from NASes -------------------------------------------------------------

    fn handle_nas_request(
        &mut self,
        now: Instant,
        listener: usize,
        kind: ListenerKind,
        from: SocketAddr,
        bytes: &[u8],
        out: &mut Vec<Output>,
    ) {
        let Some(client_index) = self.clients.lookup(from.ip()) else {
            self.unknown_client += 1;
            tracing::debug!(%from, "request from unknown client dropped");
            return;
        };
        let Some(client) = self.clients.get(client_index).cloned() else {
            return;
        };
        let stats = &mut self.client_stats[client_index];
        let request = match Packet::decode(bytes) {
            Ok(packet) => packet,
            Err(err) => {
                stats.malformed += 1;
                tracing::debug!(client = %client.name, %err, "malformed request dropped");
                return;
            }
        };
        let acceptable = match kind {
            ListenerKind::Auth => matches!(request.code, Code::AccessRequest | Code::StatusServer),
            ListenerKind::Acct => {
                matches!(request.code, Code::AccountingRequest | Code::StatusServer)
            }
            ListenerKind::Coa => false,
        };
        if !acceptable {
            stats.malformed += 1;
            tracing::debug!(client = %client.name, code = %request.code, "unexpected code on this port");
            return;
        }
        let ma = auth::check_message_authenticator(
            bytes,
            &auth::message_authenticator_context(request.code, &request.authenticator),
            &client.secret,
        );
        let authentic = match request.code {
            Code::AccountingRequest => {
                auth::verify_request(bytes, &client.secret)
                    && !matches!(
                        ma,
                        MessageAuthenticator::Invalid | MessageAuthenticator::Malformed
                    )
            }
            // RFC 5997 §3: Status-Server must carry a Message-Authenticator.
            Code::StatusServer => ma == MessageAuthenticator::Valid,
            _ => match ma {
                MessageAuthenticator::Valid => true,
                MessageAuthenticator::Absent => {
                    // RFC 3579 §3.2: EAP requires it; Blast-RADIUS: the client may require it.
                    !client.require_message_authenticator && request.get(EAP_MESSAGE).is_none()
                }
                MessageAuthenticator::Invalid | MessageAuthenticator::Malformed => false,
            },
        };
        if !authentic {
            stats.bad_authenticator += 1;
            tracing::debug!(client = %client.name, code = %request.code, "bad authenticator, dropped");
            return;
        }
        let Some(dedup) = self.admit(now, listener, from, &request, out) else {
            self.client_stats[client_index].retransmissions += 1;
            return;
        };
        self.client_stats[client_index].requests += 1;
        let server = self.listeners[listener].server;
        self.server_stats[server].requests += 1;
        let had_message_authenticator = ma == MessageAuthenticator::Valid;
        let mut job = ClientRequest {
            listener,
            from,
            client: client_index,
            server,
            request,
            had_message_authenticator,
            dedup,
            tried: Vec::new(),
        };
        if job.request.code == Code::StatusServer {
            let code = match kind {
                ListenerKind::Acct => Code::AccountingResponse,
                _ => Code::AccessAccept,
            };
            let reply = Packet::new(code, job.request.identifier);
            job.had_message_authenticator = true;
            self.answer_client(&job, reply, false, out);
            return;
        }
        if self.run_hook(&mut job, Direction::Egress, None) == Verdict::Drop {
            self.client_stats[client_index].dropped_by_policy += 1;
            self.replies.forget(&job.dedup);
            return;
        }
        let job = Box::new(job);
        if let Some(handler) = self.external_handler(server, job.request.code, Direction::Egress) {
            self.park(now, handler, Direction::Egress, job, None, out);
            return;
        }
        self.dispatch(now, job, out);
    }

    /// Duplicate detection for a request on `listener`: its key when it is new; `None` when it
    /// is a retransmission, which is absorbed (still in progress) or answered again from the
    /// reply cache.
    fn admit(
        &mut self,
        now: Instant,
        listener: usize,
        from: SocketAddr,
        request: &Packet,
        out: &mut Vec<Output>,
    ) -> Option<RequestKey> {
        let key = RequestKey {
            listener,
            from,
            code: request.code.into(),
            identifier: request.identifier,
            authenticator: request.authenticator,
        };
        match self.replies.check(now, &key) {
            Seen::New => Some(key),
            Seen::InProgress => None,
            Seen::Answered(reply) => {
                out.push(Output::Transmit(Transmit {
                    socket: SocketRef::Listener(ListenerId(listener)),
                    to: from,
                    bytes: reply.to_vec(),
                }));
                None
            }
        }
    }

    fn run_hook(
        &self,
        job: &mut ClientRequest,
        direction: Direction,
        reply: Option<&mut Packet>,
    ) -> Verdict {
        let Some(policy) = self.servers[job.server]
            .policy
            .and_then(|index| self.policies.get(index))
        else {
            return Verdict::Continue;
        };
        let client = &self.clients.all()[job.client];
        let (packet, request) = match reply {
            Some(reply) => (reply, Some(&job.request)),
            None => (&mut job.request, None),
        };
        let authenticator = match request {
            Some(request) => request.authenticator,
            None => packet.authenticator,
        };
        let mut context = HookContext {
            code: packet.code,
            direction,
            packet,
            request,
            dictionary: &self.dictionary,
            client: &client.name,
            server: &self.servers[job.server].name,
            secret: &client.secret,
            authenticator,
        };
        policy.apply(&mut context)
    }

    fn answer_locally(
        &mut self,
        now: Instant,
        database: usize,
        job: ClientRequest,
        out: &mut Vec<Output>,
    ) {
        let Some(db) = self.local_databases.get(database) else {
            return;
        };
        let client = &self.clients.all()[job.client];
        let mut reply = match job.request.code {
            Code::AccountingRequest => {
                let record = local::accounting_record(
                    &self.dictionary,
                    &job.request,
                    &client.name,
                    job.from,
                );
                out.push(Output::Accounting { database, record });
                Packet::new(Code::AccountingResponse, job.request.identifier)
            }
            _ => {
                let (outcome, user) =
                    local::authenticate(db, &self.dictionary, &job.request, &client.secret);
                match (outcome, user) {
                    (AuthOutcome::Accept, Some(user)) => {
                        let mut reply = Packet::new(Code::AccessAccept, job.request.identifier);
                        for pair in &user.reply {
                            if let Err(err) = self.dictionary.add_pair(
                                &mut reply,
                                pair,
                                &client.secret,
                                &job.request.authenticator,
                            ) {
                                tracing::warn!(%err, "reply attribute does not fit");
                            }
                        }
                        reply
                    }
                    (AuthOutcome::Accept, None) => {
                        Packet::new(Code::AccessAccept, job.request.identifier)
                    }
                    (AuthOutcome::Reject(reason), _) => {
                        tracing::info!(client = %client.name, reason, "Access-Reject");
                        Packet::new(Code::AccessReject, job.request.identifier)
                    }
                }
            }
        };
        // RFC 2865 §5.33: Proxy-State is copied unmodified, in order, into the reply.
        for state in job.request.get_all(PROXY_STATE) {
            reply.attributes.push(RawAttribute {
                typ: PROXY_STATE,
                value: state.to_vec(),
            });
        }
        self.deliver_reply(now, Box::new(job), reply, out);
    }

    /// Signs `reply` for the NAS, caches it against retransmissions and sends it.
    fn answer_client(
        &mut self,
        job: &ClientRequest,
        mut reply: Packet,
        learn_session: bool,
        out: &mut Vec<Output>,
    ) {
        let client = &self.clients.all()[job.client];
        reply.identifier = job.request.identifier;
        let Some(bytes) = finalize_response(
            &mut reply,
            &job.request,
            &client.secret,
            job.had_message_authenticator && job.request.code != Code::AccountingRequest,
        ) else {
            self.client_stats[job.client].malformed += 1;
            self.replies.forget(&job.dedup);
            return;
        };
        let stats = &mut self.client_stats[job.client];
        match reply.code {
            Code::AccessAccept => stats.accepts += 1,
            Code::AccessReject => stats.rejects += 1,
            Code::AccessChallenge => stats.challenges += 1,
            Code::AccountingResponse => stats.accounting_responses += 1,
            _ => {}
        }
        if learn_session && matches!(reply.code, Code::AccessAccept | Code::AccountingResponse) {
            self.sessions
                .learn(job.client, job.from.ip(), &job.request, Some(&reply));
        }
        self.replies.answer(&job.dedup, &bytes);
        out.push(Output::Transmit(Transmit {
            socket: SocketRef::Listener(ListenerId(job.listener)),
            to: job.from,
            bytes,
        }));
    }

    // ----- proxying --------------------------------------------------------------------------

    fn is_alive(&mut self, now: Instant, key: UpstreamKey) -> bool {
        let revive_after = self.pools[key.pool].config.revive_after;
        let probing = !self.pools[key.pool].config.status_check_interval.is_zero();
        let Some(upstream) = self.upstream_mut(key) else {
            return false;
        };
        if !upstream.alive && !probing {
            if let Some(since) = upstream.dead_since {
                if now.saturating_duration_since(since) >= revive_after {
                    upstream.alive = true;
                    upstream.consecutive_timeouts = 0;
                    upstream.dead_since = None;
                }
            }
        }
        upstream.alive
    }

    /// Picks a live server of the pool not yet tried for this request.
    fn select(
        &mut self,
        now: Instant,
        pool: usize,
        accounting: bool,
        job: &ClientRequest,
    ) -> Option<usize> {
        let count = self.pools[pool].list(accounting).len();
        let mut candidates = Vec::with_capacity(count);
        for server in 0..count {
            if !job.tried.contains(&server)
                && self.is_alive(
                    now,
                    UpstreamKey {
                        pool,
                        accounting,
                        server,
                    },
                )
            {
                candidates.push(server);
            }
        }
        if candidates.is_empty() {
            return None;
        }
        let pool_state = &mut self.pools[pool];
        let choice = match pool_state.config.load_balance {
            LoadBalance::Failover => candidates[0],
            LoadBalance::RoundRobin => {
                let cursor = &mut pool_state.cursor[usize::from(accounting)];
                let pick = candidates[*cursor % candidates.len()];
                *cursor = cursor.wrapping_add(1);
                pick
            }
            LoadBalance::ClientBalance => {
                let mut hash = fnv1a(&ip_bytes(job.from.ip()));
                if let Some(name) = job.request.get(USER_NAME) {
                    hash ^= fnv1a(name).rotate_left(17);
                }
                candidates[(hash % candidates.len() as u64) as usize]
            }
        };
        Some(choice)
    }

    fn forward(
        &mut self,
        now: Instant,
        pool: usize,
        accounting: bool,
        mut job: Box<ClientRequest>,
        out: &mut Vec<Output>,
    ) {
        loop {
            let Some(server) = self.select(now, pool, accounting, &job) else {
                tracing::debug!(pool = %self.pools[pool].config.name, "no live upstream server");
                self.client_stats[job.client].unanswered += 1;
                self.replies.forget(&job.dedup);
                return;
            };
            job.tried.push(server);
            let key = UpstreamKey {
                pool,
                accounting,
                server,
            };
            let Some((slot, id)) = self.upstream_mut(key).and_then(|u| u.ids.allocate()) else {
                continue; // this server is at its in-flight limit: try the next one
            };
            let client_secret = self.clients.all()[job.client].secret.clone();
            let Some(upstream) = self.upstream(key) else {
                return;
            };
            let secret = upstream.config.secret.clone();
            let destination = upstream.config.address;
            let mut packet = job.request.clone();
            packet.identifier = id;
            let proxy_state = self.next_proxy_state.to_be_bytes().to_vec();
            self.next_proxy_state = self.next_proxy_state.wrapping_add(1);
            packet.attributes.push(RawAttribute {
                typ: PROXY_STATE,
                value: proxy_state.clone(),
            });
            let bytes = match packet.code {
                Code::AccessRequest => {
                    let mut authenticator = [0u8; 16];
                    self.rng.fill(&mut authenticator);
                    if let Err(err) = self.dictionary.reencrypt(
                        &mut packet,
                        &client_secret,
                        &job.request.authenticator,
                        &secret,
                        &authenticator,
                    ) {
                        tracing::debug!(%err, "cannot re-hide encrypted attributes; dropped");
                        self.release(key, slot, id);
                        self.client_stats[job.client].malformed += 1;
                        self.replies.forget(&job.dedup);
                        return;
                    }
                    packet.authenticator = authenticator;
                    // Blast-RADIUS: every proxied Access-Request carries a Message-Authenticator,
                    // placed first.
                    packet.remove(MESSAGE_AUTHENTICATOR);
                    packet.attributes.insert(
                        0,
                        RawAttribute {
                            typ: MESSAGE_AUTHENTICATOR,
                            value: vec![0; 16],
                        },
                    );
                    packet.encode().map(|mut bytes| {
                        auth::fill_message_authenticator(&mut bytes, &authenticator, &secret);
                        bytes
                    })
                }
                _ => {
                    packet.remove(MESSAGE_AUTHENTICATOR);
                    packet.authenticator = [0; 16];
                    packet.encode().map(|mut bytes| {
                        auth::sign_request(&mut bytes, &secret);
                        bytes
                    })
                }
            };
            let bytes = match bytes {
                Ok(bytes) => bytes,
                Err(err) => {
                    tracing::debug!(%err, "request does not fit after proxying; dropped");
                    self.release(key, slot, id);
                    self.client_stats[job.client].malformed += 1;
                    self.replies.forget(&job.dedup);
                    return;
                }
            };
            let mut sent_authenticator = [0u8; 16];
            sent_authenticator.copy_from_slice(&bytes[4..20]);
            let timeout = self.pools[pool].config.timeout;
            let retry = job.tried.len() > 1;
            if let Some(upstream) = self.upstream_mut(key) {
                upstream.stats.requests += 1;
                if retry {
                    upstream.stats.retransmissions += 1;
                }
            }
            let pending_key = (PendingSocket::Upstream(pool, accounting, server, slot), id);
            out.push(Output::Transmit(Transmit {
                socket: SocketRef::Upstream { key, slot },
                to: destination,
                bytes: bytes.clone(),
            }));
            self.add_pending(
                pending_key,
                Pending {
                    origin: Origin::Client(job),
                    sent_authenticator,
                    proxy_state,
                    bytes,
                    destination,
                    sent_at: now,
                    deadline: now + timeout,
                    attempts: 1,
                },
            );
            return;
        }
    }

    fn add_pending(&mut self, key: PendingKey, pending: Pending) {
        self.timers
            .push(Reverse((pending.deadline, Timer::Pending(key))));
        self.pending.insert(key, pending);
    }

    fn release(&mut self, key: UpstreamKey, slot: u16, id: u8) {
        if let Some(upstream) = self.upstream_mut(key) {
            upstream.ids.release(slot, id);
        }
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

    fn expire_pending(&mut self, now: Instant, key: PendingKey, out: &mut Vec<Output>) {
        let (socket, id) = key;
        match socket {
            PendingSocket::NasCoa(slot) => {
                let Some(pending) = self.pending.get_mut(&key) else {
                    return;
                };
                if pending.attempts < COA_ATTEMPTS {
                    pending.attempts += 1;
                    pending.deadline = now + COA_TIMEOUT;
                    let deadline = pending.deadline;
                    out.push(Output::Transmit(Transmit {
                        socket: SocketRef::NasCoa { slot },
                        to: pending.destination,
                        bytes: pending.bytes.clone(),
                    }));
                    self.timers.push(Reverse((deadline, Timer::Pending(key))));
                    return;
                }
                if let Some(pending) = self.pending.remove(&key) {
                    self.coa_ids.release(slot, id);
                    if let Origin::Coa(coa) = pending.origin {
                        tracing::info!(nas = %pending.destination, "CoA/Disconnect request unanswered by the NAS");
                        self.replies.forget(&coa.dedup);
                    }
                }
            }
            PendingSocket::Upstream(pool, accounting, server, slot) => {
                let Some(pending) = self.pending.remove(&key) else {
                    return;
                };
                let upstream_key = UpstreamKey {
                    pool,
                    accounting,
                    server,
                };
                let dead_after = self.pools[pool].config.dead_after_timeouts.max(1);
                let probe_interval = self.pools[pool].config.status_check_interval;
                let mut schedule_probe = false;
                if let Some(upstream) = self.upstream_mut(upstream_key) {
                    upstream.ids.release(slot, id);
                    match pending.origin {
                        Origin::Probe => upstream.probe_outstanding = false,
                        _ => {
                            upstream.stats.timeouts += 1;
                            upstream.consecutive_timeouts += 1;
                        }
                    }
                    if upstream.alive && upstream.consecutive_timeouts >= dead_after {
                        upstream.alive = false;
                        upstream.dead_since = Some(now);
                        tracing::warn!(server = %upstream.config.name, address = %upstream.config.address, "upstream server marked dead");
                        schedule_probe = !probe_interval.is_zero();
                    } else if !upstream.alive && matches!(pending.origin, Origin::Probe) {
                        schedule_probe = true;
                    }
                }
                if schedule_probe {
                    self.timers.push(Reverse((
                        now + probe_interval,
                        Timer::Probe(pool, accounting, server),
                    )));
                }
                if let Origin::Client(job) = pending.origin {
                    let retries = self.pools[pool].config.retries;
                    if job.tried.len() as u32 <= retries {
                        self.forward(now, pool, accounting, job, out);
                    } else {
                        self.client_stats[job.client].unanswered += 1;
                        self.replies.forget(&job.dedup);
                    }
                }
            }
        }
    }

    fn send_probe(&mut self, now: Instant, key: UpstreamKey, out: &mut Vec<Output>) {
        let timeout = match self.pools.get(key.pool) {
            Some(pool) => pool.config.timeout,
            None => return,
        };
        let mut authenticator = [0u8; 16];
        self.rng.fill(&mut authenticator);
        let Some(upstream) = self.upstream_mut(key) else {
            return;
        };
        if upstream.alive || upstream.probe_outstanding {
            return;
        }
        let Some((slot, id)) = upstream.ids.allocate() else {
            return;
        };
        upstream.probe_outstanding = true;
        upstream.stats.status_probes += 1;
        let mut probe = Packet::new(Code::StatusServer, id);
        probe.authenticator = authenticator;
        probe.attributes.push(RawAttribute {
            typ: MESSAGE_AUTHENTICATOR,
            value: vec![0; 16],
        });
        let Ok(mut bytes) = probe.encode() else {
            return;
        };
        auth::fill_message_authenticator(&mut bytes, &authenticator, &upstream.config.secret);
        let destination = upstream.config.address;
        out.push(Output::Transmit(Transmit {
            socket: SocketRef::Upstream { key, slot },
            to: destination,
            bytes: bytes.clone(),
        }));
        self.add_pending(
            (
                PendingSocket::Upstream(key.pool, key.accounting, key.server, slot),
                id,
            ),
            Pending {
                origin: Origin::Probe,
                sent_authenticator: authenticator,
                proxy_state: Vec::new(),
                bytes,
                destination,
                sent_at: now,
                deadline: now + timeout,
                attempts: 1,
            },
        );
    }

    fn handle_reply(
        &mut self,
        now: Instant,
        socket: PendingSocket,
        from: SocketAddr,
        bytes: &[u8],
        out: &mut Vec<Output>,
    ) {
        let upstream_key = match socket {
            PendingSocket::Upstream(pool, accounting, server, _) => Some(UpstreamKey {
                pool,
                accounting,
                server,
            }),
            PendingSocket::NasCoa(_) => None,
        };
        let reply = match Packet::decode(bytes) {
            Ok(reply) => reply,
            Err(err) => {
                self.count_reply_error(upstream_key, false);
                tracing::debug!(%from, %err, "malformed reply dropped");
                return;
            }
        };
        let key = (socket, reply.identifier);
        let Some(pending) = self.pending.get(&key) else {
            self.count_reply_error(upstream_key, false);
            tracing::debug!(%from, id = reply.identifier, "reply matches no outstanding request");
            return;
        };
        if from != pending.destination {
            self.count_reply_error(upstream_key, false);
            return;
        }
        let secret = match (&pending.origin, upstream_key) {
            (Origin::Coa(coa), None) => self.clients.all()[coa.nas].secret.clone(),
            (_, Some(key)) => match self.upstream(key) {
                Some(upstream) => upstream.config.secret.clone(),
                None => return,
            },
            _ => return,
        };
        let ma_context = reply_ma_context(
            reply.code,
            matches!(pending.origin, Origin::Probe),
            &pending.sent_authenticator,
        );
        let authentic = auth::verify_response(bytes, &pending.sent_authenticator, &secret)
            && !matches!(
                auth::check_message_authenticator(bytes, &ma_context, &secret),
                MessageAuthenticator::Invalid | MessageAuthenticator::Malformed
            );
        if !authentic {
            self.count_reply_error(upstream_key, true);
            tracing::debug!(%from, "reply with a bad authenticator dropped");
            return;
        }
        let Some(pending) = self.pending.remove(&key) else {
            return;
        };
        match socket {
            PendingSocket::NasCoa(slot) => {
                self.coa_ids.release(slot, reply.identifier);
                if let Origin::Coa(coa) = pending.origin {
                    self.relay_coa_reply(*coa, reply, &pending.proxy_state, out);
                }
            }
            PendingSocket::Upstream(_, _, _, slot) => {
                let Some(key) = upstream_key else {
                    return;
                };
                if let Some(upstream) = self.upstream_mut(key) {
                    upstream.ids.release(slot, reply.identifier);
                    upstream.consecutive_timeouts = 0;
                    let sample = now.saturating_duration_since(pending.sent_at);
                    upstream.rtt = Some(match upstream.rtt {
                        Some(rtt) => (rtt * 7 + sample) / 8,
                        None => sample,
                    });
                    if !upstream.alive {
                        tracing::info!(server = %upstream.config.name, "upstream server alive again");
                    }
                    upstream.alive = true;
                    upstream.dead_since = None;
                    match reply.code {
                        Code::AccessAccept => upstream.stats.accepts += 1,
                        Code::AccessReject => upstream.stats.rejects += 1,
                        Code::AccessChallenge => upstream.stats.challenges += 1,
                        Code::AccountingResponse => upstream.stats.accounting_responses += 1,
                        _ => {}
                    }
                    if matches!(pending.origin, Origin::Probe) {
                        upstream.probe_outstanding = false;
                        // A probe answer is not a request answer: undo the reply counting.
                        match reply.code {
                            Code::AccessAccept => upstream.stats.accepts -= 1,
                            Code::AccountingResponse => upstream.stats.accounting_responses -= 1,
                            _ => {}
                        }
                    }
                }
                if let Origin::Client(job) = pending.origin {
                    self.relay_upstream_reply(
                        now,
                        job,
                        reply,
                        &secret,
                        &pending.sent_authenticator,
                        &pending.proxy_state,
                        out,
                    );
                }
            }
        }
    }

    fn count_reply_error(&mut self, key: Option<UpstreamKey>, bad_authenticator: bool) {
        if let Some(upstream) = key.and_then(|key| self.upstream_mut(key)) {
            if bad_authenticator {
                upstream.stats.bad_authenticator += 1;
            } else {
                upstream.stats.malformed += 1;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn relay_upstream_reply(
        &mut self,
        now: Instant,
        job: Box<ClientRequest>,
        mut reply: Packet,
        upstream_secret: &[u8],
        upstream_authenticator: &[u8; 16],
        proxy_state: &[u8],
        out: &mut Vec<Output>,
    ) {
        remove_proxy_state(&mut reply, proxy_state);
        let client_secret = self.clients.all()[job.client].secret.clone();
        if let Err(err) = self.dictionary.reencrypt(
            &mut reply,
            upstream_secret,
            upstream_authenticator,
            &client_secret,
            &job.request.authenticator,
        ) {
            tracing::debug!(%err, "cannot re-hide encrypted reply attributes; dropped");
            self.client_stats[job.client].malformed += 1;
            self.replies.forget(&job.dedup);
            return;
        }
        self.deliver_reply(now, job, reply, out);
    }

    // ----- CoA / Disconnect relay ------------------------------------------------------------

    fn handle_coa_request(
        &mut self,
        now: Instant,
        listener: usize,
        from: SocketAddr,
        bytes: &[u8],
        out: &mut Vec<Output>,
    ) {
        let source = crate::clients::canonical(from.ip());
        let Some(aaa) = self
            .pools
            .iter()
            .flat_map(|p| p.auth.iter().chain(&p.acct))
            .find(|u| crate::clients::canonical(u.config.address.ip()) == source)
            .map(|u| (u.config.name.clone(), u.config.secret.clone()))
        else {
            self.unknown_client += 1;
            tracing::debug!(%from, "CoA from an address that is no upstream server dropped");
            return;
        };
        let (aaa_name, secret) = aaa;
        let Ok(request) = Packet::decode(bytes) else {
            tracing::debug!(%from, "malformed CoA request dropped");
            return;
        };
        if !matches!(request.code, Code::CoaRequest | Code::DisconnectRequest) {
            return;
        }
        let ma = auth::check_message_authenticator(bytes, &[0; 16], &secret);
        if !auth::verify_request(bytes, &secret)
            || matches!(
                ma,
                MessageAuthenticator::Invalid | MessageAuthenticator::Malformed
            )
        {
            tracing::debug!(%from, server = %aaa_name, "CoA request with a bad authenticator dropped");
            return;
        }
        let Some(dedup) = self.admit(now, listener, from, &request, out) else {
            return;
        };
        let by_nas_ip = request
            .get(NAS_IP_ADDRESS)
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .map(IpAddr::from)
            .and_then(|ip| self.clients.lookup(ip).map(|client| (client, ip)));
        let coa = CoaRequest {
            listener,
            from,
            secret,
            had_message_authenticator: ma == MessageAuthenticator::Valid,
            nas: usize::MAX,
            dedup,
            request,
        };
        let Some((nas, nas_ip)) = by_nas_ip.or_else(|| self.sessions.owner(&coa.request)) else {
            self.coa_unroutable += 1;
            let code = match coa.request.code {
                Code::CoaRequest => Code::CoaNak,
                _ => Code::DisconnectNak,
            };
            let mut nak = Packet::new(code, coa.request.identifier);
            nak.add(ERROR_CAUSE, ErrorCause::SessionContextNotFound.to_value());
            self.answer_coa(&coa, nak, out);
            return;
        };
        let coa = CoaRequest { nas, ..coa };
        let Some((slot, id)) = self.coa_ids.allocate() else {
            self.replies.forget(&coa.dedup);
            return;
        };
        let nas_config = &self.clients.all()[nas];
        let destination = SocketAddr::new(nas_ip, nas_config.coa_port);
        let nas_secret = nas_config.secret.clone();
        let mut packet = coa.request.clone();
        packet.identifier = id;
        packet.authenticator = [0; 16];
        packet.remove(MESSAGE_AUTHENTICATOR);
        if coa.had_message_authenticator {
            packet.attributes.insert(
                0,
                RawAttribute {
                    typ: MESSAGE_AUTHENTICATOR,
                    value: vec![0; 16],
                },
            );
        }
        let proxy_state = self.next_proxy_state.to_be_bytes().to_vec();
        self.next_proxy_state = self.next_proxy_state.wrapping_add(1);
        packet.attributes.push(RawAttribute {
            typ: PROXY_STATE,
            value: proxy_state.clone(),
        });
        let Ok(mut bytes) = packet.encode() else {
            self.coa_ids.release(slot, id);
            self.replies.forget(&coa.dedup);
            return;
        };
        // RFC 5176 §3.5: the Message-Authenticator is computed over a zero Request
        // Authenticator, then the Request Authenticator over the whole packet.
        auth::fill_message_authenticator(&mut bytes, &[0; 16], &nas_secret);
        auth::sign_request(&mut bytes, &nas_secret);
        let mut sent_authenticator = [0u8; 16];
        sent_authenticator.copy_from_slice(&bytes[4..20]);
        self.client_stats[nas].coa_relayed += 1;
        out.push(Output::Transmit(Transmit {
            socket: SocketRef::NasCoa { slot },
            to: destination,
            bytes: bytes.clone(),
        }));
        self.add_pending(
            (PendingSocket::NasCoa(slot), id),
            Pending {
                origin: Origin::Coa(Box::new(coa)),
                sent_authenticator,
                proxy_state,
                bytes,
                destination,
                sent_at: now,
                deadline: now + COA_TIMEOUT,
                attempts: 1,
            },
        );
    }

    fn relay_coa_reply(
        &mut self,
        coa: CoaRequest,
        mut reply: Packet,
        proxy_state: &[u8],
        out: &mut Vec<Output>,
    ) {
        remove_proxy_state(&mut reply, proxy_state);
        self.answer_coa(&coa, reply, out);
    }

    fn answer_coa(&mut self, coa: &CoaRequest, mut reply: Packet, out: &mut Vec<Output>) {
        reply.identifier = coa.request.identifier;
        // Proxy-State of the AAA side goes back unmodified (RFC 5176 §3.3).
        if reply.get(PROXY_STATE).is_none() {
            for state in coa.request.get_all(PROXY_STATE) {
                reply.attributes.push(RawAttribute {
                    typ: PROXY_STATE,
                    value: state.to_vec(),
                });
            }
        }
        let Some(bytes) = finalize_response(
            &mut reply,
            &coa.request,
            &coa.secret,
            coa.had_message_authenticator,
        ) else {
            self.replies.forget(&coa.dedup);
            return;
        };
        self.replies.answer(&coa.dedup, &bytes);
        out.push(Output::Transmit(Transmit {
            socket: SocketRef::Listener(ListenerId(coa.listener)),
            to: coa.from,
            bytes,
        }));
    }
}

/// Removes the Proxy-State instance brasa added (and only that one).
fn remove_proxy_state(packet: &mut Packet, token: &[u8]) {
    if let Some(position) = packet
        .attributes
        .iter()
        .rposition(|a| a.typ == PROXY_STATE && a.value == token)
    {
        packet.attributes.remove(position);
    }
}

/// Encodes a response: Message-Authenticator (if wanted or already present) over the request's
/// authenticator, then the Response Authenticator (RFC 2865 §3, RFC 3579 §3.2).
fn finalize_response(
    reply: &mut Packet,
    request: &Packet,
    secret: &[u8],
    with_message_authenticator: bool,
) -> Option<Vec<u8>> {
    let request_authenticator = &request.authenticator;
    let had = reply.remove(MESSAGE_AUTHENTICATOR) > 0;
    if had || with_message_authenticator {
        reply.attributes.insert(
            0,
            RawAttribute {
                typ: MESSAGE_AUTHENTICATOR,
                value: vec![0; 16],
            },
        );
    }
    reply.authenticator = *request_authenticator;
    let mut bytes = reply.encode().ok()?;
    let context = reply_ma_context(
        reply.code,
        request.code == Code::StatusServer,
        request_authenticator,
    );
    auth::fill_message_authenticator(&mut bytes, &context, secret);
    auth::sign_response(&mut bytes, request_authenticator, secret);
    Some(bytes)
}

/// The header authenticator a reply's Message-Authenticator is computed over, as FreeRADIUS
/// does: zeros for an Accounting-Response (unless it answers a Status-Server), the request's
/// authenticator for every other reply.
fn reply_ma_context(
    code: Code,
    answers_status_server: bool,
    request_authenticator: &[u8; 16],
) -> [u8; 16] {
    if code == Code::AccountingResponse && !answers_status_server {
        [0; 16]
    } else {
        *request_authenticator
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match crate::clients::canonical(ip) {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
