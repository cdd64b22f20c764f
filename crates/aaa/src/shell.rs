//! The tokio shell around [`Engine`]: UDP sockets, the clock, timers and accounting files.
//!
//! One receive task per socket feeds datagrams to the engine (behind a mutex held only for the
//! engine call) and performs what it returns; a timer task sleeps until the engine's next
//! deadline. Upstream sockets are opened lazily, one per Identifier slot the engine hands out.

use crate::engine::{
    Engine, HookRequest, HookResult, HookTicket, ListenerKind, Output, SocketRef, Transmit,
};
use crate::stats::StatsSnapshot;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::udp::{self, RecvBatch};

/// Datagrams taken from a socket per system call.
const RECEIVE_BATCH: usize = 32;
/// Hook answers applied per engine lock.
const RESUME_BATCH: usize = 256;

/// Runs the hook points the engine defers ([`crate::ExternalHooks`]), e.g. the Python worker.
///
/// `submit` is called from the RADIUS tasks and must not block: queue the request and answer
/// later, from any thread, through the [`HookCompletion`]. Every submitted request must be
/// answered (a processor that is overloaded answers at once with its failure action); one that
/// is not is dropped by the engine after [`crate::EngineConfig::external_hook_timeout`].
pub trait HookProcessor: Send + Sync + 'static {
    /// Takes one packet to process.
    fn submit(&self, request: HookRequest, completion: &HookCompletion);
}

/// Hands processed packets back to the RADIUS service; cheap to clone, usable from any thread.
#[derive(Clone, Debug)]
pub struct HookCompletion {
    sender: mpsc::UnboundedSender<(HookTicket, HookResult)>,
}

impl HookCompletion {
    /// Gives the engine the processor's decision for `ticket`.
    pub fn complete(&self, ticket: HookTicket, result: HookResult) {
        // The service is gone when this fails: nothing is waiting for the answer any more.
        let _ = self.sender.send((ticket, result));
    }
}

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
    sockets: Mutex<HashMap<SocketRef, Arc<UdpSocket>>>,
    accounting_logs: Mutex<HashMap<usize, File>>,
    timer_changed: Notify,
    /// Sockets opened on demand go to a task that starts their receive loop (a receive loop
    /// cannot spawn another one directly: the future would contain itself).
    new_sockets: mpsc::UnboundedSender<(SocketRef, Arc<UdpSocket>)>,
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
        let mut logs = HashMap::new();
        let mut index = 0;
        while let Some(database) = engine.local_database(index) {
            let path = &database.accounting_log;
            if let Some(parent) = path.parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent).map_err(|source| {
                        ShellError::AccountingLog {
                            path: path.display().to_string(),
                            source,
                        }
                    })?;
                }
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| ShellError::AccountingLog {
                    path: path.display().to_string(),
                    source,
                })?;
            logs.insert(index, file);
            index += 1;
        }
        let mut sockets = HashMap::new();
        let mut bound = Vec::new();
        for (id, address, kind) in &listeners {
            let socket = bind_udp(*address).map_err(|source| ShellError::Bind {
                address: *address,
                source,
            })?;
            let local = socket.local_addr().map_err(|source| ShellError::Bind {
                address: *address,
                source,
            })?;
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
            completion: HookCompletion {
                sender: resume_sender,
            },
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

async fn receive_loop(shared: Arc<Shared>, socket_ref: SocketRef, socket: Arc<UdpSocket>) {
    let mut batch = RecvBatch::new(RECEIVE_BATCH);
    let mut outputs = Vec::new();
    loop {
        let count = match batch.receive(&socket).await {
            Ok(count) => count,
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
            for index in 0..count {
                if let Some((from, bytes)) = batch.datagram(index) {
                    engine.handle_datagram(now, socket_ref, from, bytes, &mut outputs);
                }
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
            Output::Accounting {
                database,
                mut record,
            } => {
                let time = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                record.insert("time".into(), time.into());
                let mut line = serde_json::Value::Object(record).to_string();
                line.push('\n');
                let mut logs = lock(&shared.accounting_logs);
                if let Some(file) = logs.get_mut(&database) {
                    if let Err(err) = file.write_all(line.as_bytes()) {
                        tracing::error!(%err, "cannot append to the accounting log");
                    }
                }
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
        let datagrams: Vec<(SocketAddr, &[u8])> =
            transmits.iter().map(|t| (t.to, &t.bytes[..])).collect();
        let failed = udp::send_all(&socket, &datagrams).await;
        if failed > 0 {
            tracing::debug!(socket = ?socket_ref, failed, "datagrams not sent");
        }
    }
}

/// The socket for `socket_ref`, opened (and its receive loop started) on first use.
async fn socket_for(
    shared: &Arc<Shared>,
    socket_ref: SocketRef,
    peer: SocketAddr,
) -> Option<Arc<UdpSocket>> {
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
fn open_client_socket(to: SocketAddr) -> std::io::Result<UdpSocket> {
    let local: IpAddr = match to.ip() {
        IpAddr::V4(v4) if v4.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(v6) if v6.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    bind_udp(SocketAddr::new(local, 0))
}

/// Socket buffer size asked for: bursts of thousands of requests from many NASes (a BNG
/// restart) must queue rather than be dropped by the kernel. Capped by net.core.rmem_max.
const SOCKET_BUFFER: usize = 4 << 20;

/// A non-blocking UDP socket bound to `address`, with large kernel buffers.
fn bind_udp(address: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    // Best effort: a smaller buffer than asked for still works.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    UdpSocket::from_std(socket.into())
}
