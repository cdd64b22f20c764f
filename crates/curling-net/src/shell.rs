//! The tokio shell: runs one core as a real UDP endpoint (one task, one socket, batched I/O),
//! writes what clients complete to disk, turns events into the §6.4.2 log lines and takes
//! [`Snapshot`]s for `brasa curling show` and scenario reports.

use brasa_curling::cafe::{Action, Cafe, CafeCounters, CafeEvent, StateRow};
use brasa_curling::client::{ClientCounters, ClientEvent, ContentClient, DownloadRow};
use brasa_curling::crme::{ActiveSession, ContentRoute, Crme, CrmeCounters, CrmeEvent};
use brasa_curling::naming::Naming;
use brasa_curling::server::{ContentServer, ServerCounters, StreamRow};
use brasa_curling::wire::{self, Neighbour};
use brasa_curling::Transmit;
use brasa_udp::{BatchSocket, RecvBatch, SendBatch, MAX_BATCH};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A content file a client saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRow {
    /// The content.
    pub content_id: String,
    /// Where it was written.
    pub path: PathBuf,
    /// Its size.
    pub bytes: usize,
}

/// A local CAFE and its links, as shown to operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocCafeRow {
    /// The local CAFE.
    pub cafe: SocketAddrV4,
    /// Its inter-domain links: (neighbour CAFE, neighbour CRME).
    pub links: Vec<(SocketAddrV4, SocketAddrV4)>,
}

/// The state of one running entity, for `brasa curling show` and scenario reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "entity", rename_all = "lowercase")]
pub enum Snapshot {
    /// A CAFE.
    Cafe {
        /// Router name.
        name: String,
        /// Its endpoint.
        addr: SocketAddrV4,
        /// The content state table.
        table: Vec<StateRow>,
        /// Counters.
        counters: CafeCounters,
        /// Chunk copies dropped by emulated link loss ([`ShellOptions::drop_every`]).
        #[serde(default)]
        emulated_loss_drops: u64,
    },
    /// A CRME.
    Crme {
        /// Router name.
        name: String,
        /// Its endpoint.
        addr: SocketAddrV4,
        /// locCafe.
        loc_cafe: Vec<LocCafeRow>,
        /// The content table.
        content_table: BTreeMap<String, ContentRoute>,
        /// ActiveSessions.
        active_sessions: Vec<ActiveSession>,
        /// Counters.
        counters: CrmeCounters,
    },
    /// A content server.
    Server {
        /// Router name.
        name: String,
        /// Its endpoint.
        addr: SocketAddrV4,
        /// Published content IDs and sizes.
        published: Vec<(String, usize)>,
        /// Streams in progress.
        streams: Vec<StreamRow>,
        /// Counters.
        counters: ServerCounters,
    },
    /// A content client.
    Client {
        /// Router name.
        name: String,
        /// Its endpoint.
        addr: SocketAddrV4,
        /// Downloads.
        downloads: Vec<DownloadRow>,
        /// Files saved.
        saved: Vec<SavedRow>,
        /// Counters.
        counters: ClientCounters,
    },
}

impl Snapshot {
    /// The entity's endpoint.
    pub fn addr(&self) -> SocketAddrV4 {
        match self {
            Snapshot::Cafe { addr, .. }
            | Snapshot::Crme { addr, .. }
            | Snapshot::Server { addr, .. }
            | Snapshot::Client { addr, .. } => *addr,
        }
    }

    /// `displayContentStateTable()` for a CAFE (empty for other entities).
    pub fn display_content_state_table(&self, naming: &Naming) -> String {
        let Snapshot::Cafe { name, table, .. } = self else {
            return String::new();
        };
        let mut out = format!("CAFE ContentStateTable at {name}:\n");
        out.push_str("Content ID | Prev Hop Address | Next Hop Address | Next Hop Port\n");
        if table.is_empty() {
            out.push_str("(no content states)\n");
        }
        for row in table {
            let prev = row
                .prev_hop
                .map_or_else(|| "-".to_string(), |p| naming.endpoint(p));
            for hop in &row.next_hops {
                out.push_str(&format!(
                    "{} | {} | {} | {}\n",
                    row.content_id,
                    prev,
                    naming.name(*hop.ip()),
                    hop.port()
                ));
            }
        }
        out
    }

    /// The ActiveSessions table of a CRME (empty for other entities).
    pub fn display_active_sessions(&self, naming: &Naming) -> String {
        let Snapshot::Crme {
            name,
            active_sessions,
            ..
        } = self
        else {
            return String::new();
        };
        let mut out = format!("CRME ActiveSessions at {name}:\n");
        out.push_str("Content ID | Ingress CAFE | numEgressCAFEs | Egress CAFEs\n");
        if active_sessions.is_empty() {
            out.push_str("(no active sessions)\n");
        }
        for s in active_sessions {
            let egress: Vec<String> = s.egress.iter().map(|e| naming.endpoint(*e)).collect();
            out.push_str(&format!(
                "{} | {} | {} | {}\n",
                s.content_id,
                naming.endpoint(s.ingress),
                s.egress.len(),
                egress.join(", ")
            ));
        }
        out
    }
}

/// The core an entity runs.
#[derive(Debug)]
pub enum Core {
    /// A CAFE.
    Cafe(Cafe),
    /// A CRME.
    Crme(Crme),
    /// A content server.
    Server(ContentServer),
    /// A content client.
    Client(ContentClient),
}

/// Where an entity's log lines go (the §6.4.2 lines and the like).
pub type LogSink = Arc<dyn Fn(String) + Send + Sync>;

struct Shared {
    core: Core,
    saved: Vec<SavedRow>,
    emulated_loss_drops: u64,
}

/// A running entity: its task and a handle to its core.
pub struct Entity {
    addr: SocketAddrV4,
    naming: Naming,
    shared: Arc<Mutex<Shared>>,
    /// Taken by the first [`Entity::join`].
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panicking entity task must not take the operator's view down with it.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Settings of the shell around a core.
#[derive(Debug, Clone)]
pub struct ShellOptions {
    /// Naming used in log lines.
    pub naming: Naming,
    /// Where clients save content (`<dir>/Content/<router port>/<ContentID>`).
    pub content_dir: PathBuf,
    /// Stops the entity when it becomes true.
    pub stop: watch::Receiver<bool>,
    /// Emulated link loss (CAFEs only): drop every Nth chunk copy this CAFE forwards.
    pub drop_every: Option<u64>,
}

impl Entity {
    /// Binds the core's endpoint and starts its task. Must run inside a tokio runtime.
    pub fn spawn(core: Core, options: ShellOptions, log: LogSink) -> std::io::Result<Self> {
        let addr = match &core {
            Core::Cafe(c) => c.config().me,
            Core::Crme(c) => c.config().me,
            Core::Server(s) => s.config().me,
            Core::Client(c) => c.config().me,
        };
        let socket = BatchSocket::bind(addr)
            .map_err(|err| std::io::Error::new(err.kind(), format!("cannot bind {addr}: {err}")))?;
        let shared = Arc::new(Mutex::new(Shared {
            core,
            saved: Vec::new(),
            emulated_loss_drops: 0,
        }));
        let naming = options.naming;
        let task = tokio::spawn(run(socket, addr, shared.clone(), options, log));
        Ok(Self {
            addr,
            naming,
            shared,
            task: Mutex::new(Some(task)),
        })
    }

    /// The entity's endpoint.
    pub fn addr(&self) -> SocketAddrV4 {
        self.addr
    }

    /// Runs `f` on the core (e.g. to publish or consume), then wakes nothing: queued messages
    /// leave with the entity's next tick.
    pub fn with_core<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
        f(&mut lock(&self.shared).core)
    }

    /// True while the entity has work in progress (a stream or an incomplete download).
    pub fn is_busy(&self) -> bool {
        match &lock(&self.shared).core {
            Core::Server(s) => s.is_streaming(),
            Core::Client(c) => c.is_busy(),
            Core::Cafe(_) | Core::Crme(_) => false,
        }
    }

    /// The entity's state now.
    pub fn snapshot(&self) -> Snapshot {
        let shared = lock(&self.shared);
        let name = self.naming.name(*self.addr.ip());
        let addr = self.addr;
        match &shared.core {
            Core::Cafe(c) => Snapshot::Cafe {
                name,
                addr,
                table: c.content_state_table(),
                counters: c.counters().clone(),
                emulated_loss_drops: shared.emulated_loss_drops,
            },
            Core::Crme(c) => Snapshot::Crme {
                name,
                addr,
                loc_cafe: c
                    .loc_cafe()
                    .iter()
                    .map(|(cafe, links)| LocCafeRow {
                        cafe: *cafe,
                        links: links.iter().map(|n: &Neighbour| (n.cafe, n.crme)).collect(),
                    })
                    .collect(),
                content_table: c.content_table().clone(),
                active_sessions: c.active_sessions(),
                counters: c.counters().clone(),
            },
            Core::Server(s) => Snapshot::Server {
                name,
                addr,
                published: s.published(),
                streams: s.streams(),
                counters: s.counters().clone(),
            },
            Core::Client(c) => Snapshot::Client {
                name,
                addr,
                downloads: c.downloads(),
                saved: shared.saved.clone(),
                counters: c.counters().clone(),
            },
        }
    }

    /// Waits for the entity's task to end (after the stop signal): what it was writing (a
    /// completed download) is on disk when this returns.
    pub async fn join(&self) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

fn push_transmits(out: &mut SendBatch, transmits: impl Iterator<Item = Transmit>) {
    for t in transmits {
        out.push(t.to, &t.payload);
    }
}

/// Drains the core's queued messages and events; returns completed downloads to save.
fn drain(
    core: &mut Core,
    out: &mut SendBatch,
    lines: &mut Vec<String>,
    naming: &Naming,
) -> Vec<(String, Vec<u8>)> {
    let mut completed = Vec::new();
    match core {
        Core::Cafe(cafe) => {
            push_transmits(out, std::iter::from_fn(|| cafe.poll_transmit()));
            let me = naming.name(*cafe.config().me.ip());
            while let Some(event) = cafe.poll_event() {
                if let CafeEvent::ContentReceived {
                    content_id,
                    next_hops,
                    ..
                } = event
                {
                    let hops: Vec<String> = next_hops.iter().map(|h| naming.endpoint(*h)).collect();
                    lines.push(format!(
                        "CAFE {me}: Content {content_id} received and will be sent to {}",
                        hops.join(", ")
                    ));
                }
            }
        }
        Core::Crme(crme) => {
            push_transmits(out, std::iter::from_fn(|| crme.poll_transmit()));
            let me = naming.name(*crme.config().me.ip());
            while let Some(event) = crme.poll_event() {
                match event {
                    CrmeEvent::RouteOptimised {
                        content_id,
                        from,
                        to,
                    } => lines.push(format!(
                        "CRME {me}: route optimisation of {content_id}: {} -> {}",
                        naming.endpoint(from),
                        naming.endpoint(to)
                    )),
                    CrmeEvent::Joined {
                        content_id,
                        ingress,
                    } => lines.push(format!(
                        "CRME {me}: Consume for {content_id} joined the existing path at CAFE {}",
                        naming.endpoint(ingress)
                    )),
                    CrmeEvent::Dropped { content_id, reason } => {
                        tracing::debug!(crme = %me, %content_id, %reason, "dropped");
                    }
                    CrmeEvent::Resolved {
                        content_id,
                        upstream,
                    } => {
                        tracing::debug!(crme = %me, %content_id, upstream = %upstream, "resolved");
                    }
                }
            }
        }
        Core::Server(server) => {
            push_transmits(out, std::iter::from_fn(|| server.poll_transmit()));
        }
        Core::Client(client) => {
            push_transmits(out, std::iter::from_fn(|| client.poll_transmit()));
            let me = naming.endpoint(client.config().me);
            while let Some(event) = client.poll_event() {
                match event {
                    ClientEvent::Completed { content_id, data } => {
                        completed.push((content_id, data));
                    }
                    ClientEvent::GapDetected {
                        content_id,
                        missing,
                    } => lines.push(format!(
                        "CC {me}: Content {content_id} has gaps ({}); consuming it again",
                        missing.map_or_else(|| "last chunk not seen".to_string(), |m| format!("{m} chunks missing"))
                    )),
                    ClientEvent::Failed { content_id } => {
                        lines.push(format!("CC {me}: Content {content_id} could not be delivered completely; nothing saved"))
                    }
                }
            }
        }
    }
    completed
}

/// `Content/<router port>/<ContentID>` under `dir`, as the document's client saves it.
pub fn content_path(
    dir: &Path,
    naming: &Naming,
    client: SocketAddrV4,
    content_id: &str,
) -> PathBuf {
    dir.join("Content")
        .join(format!("{} {}", naming.name(*client.ip()), client.port()))
        .join(content_id)
}

async fn run(
    socket: BatchSocket,
    me: SocketAddrV4,
    shared: Arc<Mutex<Shared>>,
    mut options: ShellOptions,
    log: LogSink,
) {
    let naming = options.naming;
    let tick_period = match &lock(&shared).core {
        Core::Server(_) => Duration::from_millis(1),
        _ => Duration::from_millis(20),
    };
    let mut tick = tokio::time::interval(tick_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut batch = RecvBatch::default();
    let mut out = SendBatch::default();
    let mut lines = Vec::new();
    let mut copies_since_drop: u64 = 0;
    loop {
        out.clear();
        let completed;
        tokio::select! {
            _ = options.stop.changed() => break,
            received = socket.recv(&mut batch) => {
                if let Err(err) = received {
                    tracing::warn!(%err, entity = %me, "receive failed");
                    continue;
                }
                let now = Instant::now();
                let mut guard = lock(&shared);
                let mut dropped = 0;
                for (from, bytes, truncated) in batch.iter() {
                    // The socket is bound to an IPv4 address: nothing else can arrive.
                    let SocketAddr::V4(from) = from else {
                        continue;
                    };
                    // A truncated datagram is handed over empty so the core counts it as
                    // malformed instead of acting on a cut message.
                    let bytes = if truncated { &[][..] } else { bytes };
                    match &mut guard.core {
                        Core::Cafe(cafe) => {
                            if let Action::Forward(hops) = cafe.handle(from, bytes) {
                                for hop in hops {
                                    if let Some(every) = options.drop_every {
                                        copies_since_drop += 1;
                                        if copies_since_drop >= every {
                                            copies_since_drop = 0;
                                            dropped += 1;
                                            continue;
                                        }
                                    }
                                    let copy = out.push(*hop, bytes);
                                    wire::rewrite_sender(copy, me);
                                }
                            }
                        }
                        Core::Crme(crme) => crme.handle(now, from, bytes),
                        Core::Server(server) => server.handle(from, bytes),
                        Core::Client(client) => client.handle(now, from, bytes),
                    }
                }
                guard.emulated_loss_drops += dropped;
                completed = drain(&mut guard.core, &mut out, &mut lines, &naming);
            }
            _ = tick.tick() => {
                let now = Instant::now();
                let mut guard = lock(&shared);
                match &mut guard.core {
                    Core::Cafe(cafe) => cafe.handle_timeout(now),
                    Core::Crme(crme) => crme.handle_timeout(now),
                    Core::Server(server) => {
                        server.handle_timeout(now);
                        let chunks = server.poll_chunks(now, 16 * MAX_BATCH);
                        push_transmits(&mut out, chunks.into_iter());
                    }
                    Core::Client(client) => client.handle_timeout(now),
                }
                completed = drain(&mut guard.core, &mut out, &mut lines, &naming);
            }
        }
        if !out.is_empty() {
            if let Err(err) = socket.send(&out).await {
                tracing::warn!(%err, entity = %me, "send failed");
            }
        }
        for (content_id, data) in completed {
            let path = content_path(&options.content_dir, &naming, me, &content_id);
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&path, &data));
            match written {
                Ok(()) => {
                    lines.push(format!(
                        "CC: Content {content_id} received and saved to: {}",
                        path.display()
                    ));
                    lock(&shared).saved.push(SavedRow {
                        content_id,
                        path,
                        bytes: data.len(),
                    });
                }
                Err(err) => lines.push(format!(
                    "CC: Content {content_id} received but not saved to {}: {err}",
                    path.display()
                )),
            }
        }
        for line in lines.drain(..) {
            log(line);
        }
    }
}
