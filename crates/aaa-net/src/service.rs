//! The RADIUS service: the engine behind a mutex, one receive task per socket, a timer task,
//! the hook resume task. Upstream sockets are opened lazily, one per Identifier slot the engine
//! hands out.

use crate::accounting::AccountingLogs;
use crate::hooks::{HookCompletion, HookProcessor};
use brasa_aaa::{
    Engine, HookResult, HookTicket, ListenerKind, Output, SocketRef, StatsSnapshot, Transmit,
};
use brasa_udp::{BatchSocket, Config, RecvBatch, SendBatch, MAX_BATCH};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

/// Largest RADIUS datagram (RFC 2865 §3). Longer ones arrive cut to it, which keeps the whole
/// packet: octets past its Length field are padding.
const DATAGRAM: usize = 4096;
/// Hook answers applied per engine lock.
const RESUME_BATCH: usize = 256;

/// Sockets of the service: large kernel buffers (bursts of thousands of requests from many NASes
/// after a BNG restart must queue, not be dropped), no GRO (RADIUS datagrams are never
/// coalesced by senders), GSO for runs of equal replies to one NAS.
const SOCKETS: Config = Config {
    socket_buffer: 4 << 20,
    gro: false,
    gso: true,
};

/// Failures to start the service.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// A listening socket could not be bound.
    #[error("cannot bind {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An accounting log could not be opened.
    #[error("cannot open accounting log {path}: {source}")]
    AccountingLog {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

struct Shared {
    engine: Mutex<Engine>,
    sockets: Mutex<HashMap<SocketRef, Arc<BatchSocket>>>,
    accounting_logs: Mutex<AccountingLogs>,
    timer_changed: Notify,
    /// Sockets opened on demand go to a task that starts their receive loop (a receive loop
    /// cannot spawn another one directly: the future would contain itself).
    new_sockets: mpsc::UnboundedSender<(SocketRef, Arc<BatchSocket>)>,
    hooks: Option<Arc<dyn HookProcessor>>,
    completion: HookCompletion,
}

/// A running RADIUS service.
pub struct RadiusService {
    shared: Arc<Shared>,
    bound: Vec<(ListenerKind, SocketAddr)>,
    tasks: Vec<JoinHandle<()>>,
}

impl RadiusService {
    /// Binds every listener of `engine`, opens the accounting logs and starts the tasks.
    pub async fn start(engine: Engine) -> Result<RadiusService, ShellError> {
        Self::start_with_hooks(engine, None).await
    }

    /// Like [`RadiusService::start`], with a processor for the engine's external hook points.
    pub async fn start_with_hooks(
        engine: Engine,
        hooks: Option<Arc<dyn HookProcessor>>,
    ) -> Result<RadiusService, ShellError> {
        let listeners = engine.listeners();
        let logs = AccountingLogs::open(&engine)
            .map_err(|(path, source)| ShellError::AccountingLog { path, source })?;
        let mut sockets = HashMap::new();
        let mut bound = Vec::new();
        for (id, address, kind) in &listeners {
            let socket =
                BatchSocket::bind_with(*address, SOCKETS).map_err(|source| ShellError::Bind {
                    address: *address,
                    source,
                })?;
            let local = socket.local_addr();
            tracing::info!(kind = ?kind, address = %local, "RADIUS listening");
            bound.push((*kind, local));
            sockets.insert(SocketRef::Listener(*id), Arc::new(socket));
        }
        let (new_sockets, mut opened) = mpsc::unbounded_channel();
        let (resume_sender, resumes) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            engine: Mutex::new(engine),
            sockets: Mutex::new(sockets.clone()),
            accounting_logs: Mutex::new(logs),
            timer_changed: Notify::new(),
            new_sockets,
            hooks,
            completion: HookCompletion::new(resume_sender),
        });
        let mut tasks = Vec::new();
        for (socket_ref, socket) in sockets {
            tasks.push(tokio::spawn(receive_loop(
                shared.clone(),
                socket_ref,
                socket,
            )));
        }
        tasks.push(tokio::spawn(timer_loop(shared.clone())));
        tasks.push(tokio::spawn(resume_loop(shared.clone(), resumes)));
        let spawner_shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut receivers = tokio::task::JoinSet::new();
            while let Some((socket_ref, socket)) = opened.recv().await {
                receivers.spawn(receive_loop(spawner_shared.clone(), socket_ref, socket));
            }
        }));
        Ok(RadiusService {
            shared,
            bound,
            tasks,
        })
    }

    /// The addresses actually bound (useful with port 0), in listener order.
    pub fn bound(&self) -> &[(ListenerKind, SocketAddr)] {
        &self.bound
    }

    /// The bound address of the first listener of `kind`.
    pub fn address(&self, kind: ListenerKind) -> Option<SocketAddr> {
        self.bound
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, address)| *address)
    }

    /// The engine's counters now.
    pub fn stats(&self) -> StatsSnapshot {
        lock(&self.shared.engine).stats()
    }

    /// Stops every task (sockets close when the last task ends).
    pub fn shutdown(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock would be a bug; the data stays usable for counters.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn receive_loop(shared: Arc<Shared>, socket_ref: SocketRef, socket: Arc<BatchSocket>) {
    let mut batch = RecvBatch::new(MAX_BATCH, DATAGRAM);
    let mut outputs = Vec::new();
    loop {
        match socket.recv(&mut batch).await {
            Ok(()) => {}
            Err(err) => {
                // ICMP port unreachable from an upstream shows up here on Linux; keep going.
                tracing::debug!(socket = ?socket_ref, %err, "receive error");
                tokio::task::yield_now().await;
                continue;
            }
        };
        let now = Instant::now();
        let earlier_timer = {
            let mut engine = lock(&shared.engine);
            let before = engine.next_timeout();
            for (from, bytes, _truncated) in batch.iter() {
                engine.handle_datagram(now, socket_ref, from, bytes, &mut outputs);
            }
            let after = engine.next_timeout();
            after.is_some() && (before.is_none() || after < before)
        };
        if earlier_timer {
            shared.timer_changed.notify_one();
        }
        perform(&shared, &mut outputs).await;
    }
}

/// Applies the answers of the hook processor, in batches (one engine lock for many).
async fn resume_loop(
    shared: Arc<Shared>,
    mut resumes: mpsc::UnboundedReceiver<(HookTicket, HookResult)>,
) {
    let mut outputs = Vec::new();
    let mut batch = Vec::with_capacity(RESUME_BATCH);
    while resumes.recv_many(&mut batch, RESUME_BATCH).await > 0 {
        let now = Instant::now();
        let earlier_timer = {
            let mut engine = lock(&shared.engine);
            let before = engine.next_timeout();
            for (ticket, result) in batch.drain(..) {
                engine.resume_hook(now, ticket, result, &mut outputs);
            }
            let after = engine.next_timeout();
            after.is_some() && (before.is_none() || after < before)
        };
        if earlier_timer {
            shared.timer_changed.notify_one();
        }
        perform(&shared, &mut outputs).await;
    }
}

async fn timer_loop(shared: Arc<Shared>) {
    let mut outputs = Vec::new();
    loop {
        let next = lock(&shared.engine).next_timeout();
        let sleep = match next {
            Some(at) => tokio::time::sleep_until(at.into()),
            None => tokio::time::sleep(std::time::Duration::from_secs(3600)),
        };
        tokio::select! {
            _ = sleep => {
                lock(&shared.engine).handle_timeout(Instant::now(), &mut outputs);
                perform(&shared, &mut outputs).await;
            }
            _ = shared.timer_changed.notified() => {}
        }
    }
}

async fn perform(shared: &Arc<Shared>, outputs: &mut Vec<Output>) {
    // Datagrams grouped by the socket they leave from, in order, so each group is one sendmmsg.
    let mut groups: Vec<(SocketRef, Vec<Transmit>)> = Vec::new();
    for output in outputs.drain(..) {
        match output {
            Output::Transmit(transmit) => {
                match groups.iter_mut().find(|(s, _)| *s == transmit.socket) {
                    Some((_, group)) => group.push(transmit),
                    None => groups.push((transmit.socket, vec![transmit])),
                }
            }
            Output::Accounting { database, record } => {
                lock(&shared.accounting_logs).append(database, record);
            }
            Output::Hook(request) => match &shared.hooks {
                Some(hooks) => hooks.submit(request, &shared.completion),
                None => {
                    // A config with external hooks but no processor is rejected before start;
                    // should it happen anyway, the packet passes unchanged rather than hang.
                    let ticket = request.ticket;
                    shared
                        .completion
                        .complete(ticket, HookResult::Continue(request.packet));
                }
            },
        }
    }
    for (socket_ref, transmits) in groups {
        let Some(socket) = socket_for(shared, socket_ref, transmits[0].to).await else {
            continue;
        };
        let mut batch = SendBatch::default();
        for transmit in transmits {
            batch.push_owned(transmit.to, transmit.bytes);
        }
        match socket.send(&batch).await {
            Ok(0) => {}
            Ok(failed) => tracing::debug!(socket = ?socket_ref, failed, "datagrams not sent"),
            Err(err) => tracing::debug!(socket = ?socket_ref, %err, "datagrams not sent"),
        }
    }
}

/// The socket for `socket_ref`, opened (and its receive loop started) on first use.
async fn socket_for(
    shared: &Arc<Shared>,
    socket_ref: SocketRef,
    peer: SocketAddr,
) -> Option<Arc<BatchSocket>> {
    if let Some(socket) = lock(&shared.sockets).get(&socket_ref).cloned() {
        return Some(socket);
    }
    match open_client_socket(peer) {
        Ok(socket) => {
            let socket = Arc::new(socket);
            lock(&shared.sockets).insert(socket_ref, socket.clone());
            let _ = shared.new_sockets.send((socket_ref, socket.clone()));
            Some(socket)
        }
        Err(err) => {
            tracing::error!(%err, to = %peer, "cannot open an upstream socket");
            None
        }
    }
}

/// A socket towards an upstream server or NAS: same family, loopback when the peer is on
/// loopback (so brasa never sends from an external address to a local peer).
fn open_client_socket(to: SocketAddr) -> std::io::Result<BatchSocket> {
    let local: IpAddr = match to.ip() {
        IpAddr::V4(v4) if v4.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(v6) if v6.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    BatchSocket::bind_with(SocketAddr::new(local, 0), SOCKETS)
}
