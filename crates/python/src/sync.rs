//! Multi-chassis synchronisation of python-policy caches over gRPC (`brasa.cache.CacheSync`,
//! `crates/proto/proto/cache/sync.proto`).
//!
//! Every node dials each peer named by an `mcs-peer` of its caches (one link per peer address,
//! carrying every cache that names it, told apart by `sync-tag`) and pushes: `Hello`, then a full
//! resync of those caches (live entries with at least the multi-chassis minimum lifetime left and
//! the remembered clears), then every local change as the drain thread hands it over. The peer
//! does the same towards this node over its own link, so a node that restarts is resynchronised
//! by the snapshot its peer sends when the link comes back. Receivers merge events with
//! last-writer-wins (`PolicyCache::apply`), so duplicates and reordering are harmless.
//!
//! A link whose queue overflows (a peer slower than the change rate) is closed and reconnected:
//! the resync that follows replaces what was lost.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brasa_aaa::clients::canonical;
use brasa_cache::{ApplyOutcome, CacheEvent, Version};
use brasa_proto::brasa::cache as proto;
use proto::cache_sync_client::CacheSyncClient;
use proto::cache_sync_server::{CacheSync, CacheSyncServer};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::cache_service::{lock, Shared};
use crate::wall_clock_ms;

/// Events per message of a resync.
const SNAPSHOT_BATCH: usize = 512;
/// Batches of live events a link may queue before it is declared overflowed.
const LINK_QUEUE: usize = 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// State and counters of the link to one peer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeerStats {
    /// The peer's sync address.
    pub address: String,
    /// `connecting`, `resyncing`, `synchronised` or `down`.
    pub state: String,
    /// Sync tags carried.
    pub sync_tags: Vec<String>,
    /// The peer's node id from its `Hello`.
    pub peer_node_id: Option<u32>,
    /// Sessions established.
    pub sessions: u64,
    /// Events sent in resyncs.
    pub resync_events: u64,
    /// Live events sent.
    pub events_sent: u64,
    /// Events the peer reported applied, stale, refused.
    pub peer_applied: u64,
    /// See `peer_applied`.
    pub peer_stale: u64,
    /// See `peer_applied`.
    pub peer_refused: u64,
    /// Times the queue overflowed and the link was reset for a resync.
    pub overflows: u64,
    /// Why the last session ended.
    pub last_error: Option<String>,
}

/// Sync streams accepted from peers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InboundStats {
    /// Streams accepted.
    pub sessions: u64,
    /// Streams open now.
    pub active: u64,
    /// Streams refused (unknown peer address, no shared tag, same node id, no Hello).
    pub refused: u64,
    /// Events received and applied.
    pub applied: u64,
    /// Events received that were older than the local state.
    pub stale: u64,
    /// Events refused by a local limit.
    pub refused_events: u64,
    /// Events with a tag no cache shares with that peer.
    pub unknown_tag: u64,
    /// Malformed events (unknown kind).
    pub malformed: u64,
}

/// The outgoing link to one peer address.
pub(crate) struct PeerLink {
    pub(crate) address: SocketAddr,
    /// (sync tag, policy) pairs carried.
    tags: Mutex<Vec<(String, String)>>,
    outbox: Mutex<Option<mpsc::Sender<Vec<proto::CacheEvent>>>>,
    stats: Mutex<PeerStats>,
}

impl PeerLink {
    pub(crate) fn new(address: SocketAddr) -> PeerLink {
        PeerLink {
            address,
            tags: Mutex::new(Vec::new()),
            outbox: Mutex::new(None),
            stats: Mutex::new(PeerStats {
                address: address.to_string(),
                state: "connecting".into(),
                ..PeerStats::default()
            }),
        }
    }

    pub(crate) fn add_tag(&self, tag: &str, policy: &str) {
        lock(&self.tags).push((tag.to_owned(), policy.to_owned()));
        lock(&self.stats).sync_tags.push(tag.to_owned());
    }

    fn tags(&self) -> Vec<(String, String)> {
        lock(&self.tags).clone()
    }

    pub(crate) fn stats(&self) -> PeerStats {
        lock(&self.stats).clone()
    }

    /// Queues live events (from the drain thread; never blocks). Without a session they are
    /// dropped: the next session starts with a resync.
    pub(crate) fn send(&self, events: Vec<proto::CacheEvent>) {
        let mut outbox = lock(&self.outbox);
        let Some(sender) = outbox.as_ref() else {
            return;
        };
        let count = events.len() as u64;
        match sender.try_send(events) {
            Ok(()) => lock(&self.stats).events_sent += count,
            Err(mpsc::error::TrySendError::Full(_)) => {
                // Closing the queue ends the session; the reconnect resyncs.
                *outbox = None;
                lock(&self.stats).overflows += 1;
                tracing::warn!(peer = %self.address, "cache sync queue overflowed; resynchronising");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => *outbox = None,
        }
    }

    fn set_state(&self, state: &str) {
        lock(&self.stats).state = state.into();
    }
}

/// Converts a core event for the wire.
pub(crate) fn event_to_proto(tag: &str, event: &CacheEvent) -> proto::CacheEvent {
    let (kind, key, value, expires_at) = match event {
        CacheEvent::Save {
            key,
            value,
            expires_at,
            ..
        } => (proto::EventKind::Save, key, value.clone(), *expires_at),
        CacheEvent::SetLifetime {
            key,
            value,
            expires_at,
            ..
        } => (
            proto::EventKind::SetLifetime,
            key,
            value.clone(),
            *expires_at,
        ),
        CacheEvent::Clear { key, .. } => (proto::EventKind::Clear, key, Vec::new(), 0),
    };
    let version = event.version();
    proto::CacheEvent {
        sync_tag: tag.to_owned(),
        kind: kind as i32,
        key: key.clone(),
        value,
        expires_at_ms: expires_at,
        version_timestamp_ms: version.timestamp,
        version_node_id: version.node_id,
    }
}

/// Converts a wire event; `None` for an unknown kind.
pub(crate) fn event_from_proto(event: proto::CacheEvent) -> Option<CacheEvent> {
    let version = Version {
        timestamp: event.version_timestamp_ms,
        node_id: event.version_node_id,
    };
    match proto::EventKind::try_from(event.kind).ok()? {
        proto::EventKind::Save => Some(CacheEvent::Save {
            key: event.key,
            value: event.value,
            expires_at: event.expires_at_ms,
            version,
        }),
        proto::EventKind::SetLifetime => Some(CacheEvent::SetLifetime {
            key: event.key,
            value: event.value,
            expires_at: event.expires_at_ms,
            version,
        }),
        proto::EventKind::Clear => Some(CacheEvent::Clear {
            key: event.key,
            version,
        }),
        proto::EventKind::Unspecified => None,
    }
}

/// Keeps the link to `link.address` up for as long as the service runs.
pub(crate) async fn run_link(shared: Arc<Shared>, link: Arc<PeerLink>, local: Option<IpAddr>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        link.set_state("connecting");
        let started = Instant::now();
        let result = session(&shared, &link, local).await;
        *lock(&link.outbox) = None;
        let reason = match result {
            Ok(()) => "peer closed the stream".to_owned(),
            Err(reason) => reason,
        };
        tracing::debug!(peer = %link.address, %reason, "cache sync session ended");
        {
            let mut stats = lock(&link.stats);
            stats.state = "down".into();
            stats.last_error = Some(reason);
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = BACKOFF_MIN;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn session(shared: &Shared, link: &PeerLink, local: Option<IpAddr>) -> Result<(), String> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", link.address))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .local_address(local);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut client = CacheSyncClient::new(channel);
    let tags = link.tags();
    let (requests, request_stream) = mpsc::channel::<proto::SyncMessage>(16);
    let hello = proto::SyncMessage {
        body: Some(proto::sync_message::Body::Hello(proto::Hello {
            node_id: shared.node_id,
            sync_tags: tags.iter().map(|(tag, _)| tag.clone()).collect(),
        })),
    };
    requests.send(hello).await.map_err(|e| e.to_string())?;
    let mut replies = client
        .sync(ReceiverStream::new(request_stream))
        .await
        .map_err(|status| format!("peer refused the stream: {}", status.message()))?
        .into_inner();
    match replies.message().await {
        Ok(Some(proto::SyncReply {
            body: Some(proto::sync_reply::Body::Hello(hello)),
        })) => lock(&link.stats).peer_node_id = Some(hello.node_id),
        Ok(_) => return Err("peer did not answer with a Hello".into()),
        Err(status) => return Err(format!("peer: {}", status.message())),
    }
    // Live changes are queued from here on; the resync below is taken after, so a change made
    // in between is at worst sent twice (harmless with last-writer-wins).
    let (live, mut live_events) = mpsc::channel(LINK_QUEUE);
    *lock(&link.outbox) = Some(live);
    {
        let mut stats = lock(&link.stats);
        stats.sessions += 1;
        stats.state = "resyncing".into();
    }
    let now = wall_clock_ms();
    let resync: Vec<(String, Vec<proto::CacheEvent>)> = {
        let set = shared.caches();
        tags.iter()
            .filter_map(|(tag, policy)| {
                let cache = set.get(policy)?;
                let events = cache
                    .peer_resync(now)
                    .iter()
                    .map(|event| event_to_proto(tag, event))
                    .collect();
                Some((tag.clone(), events))
            })
            .collect()
    };
    for (tag, events) in resync {
        let entries = events.len() as u64;
        let mut events = events.into_iter().peekable();
        while events.peek().is_some() {
            let batch: Vec<_> = events.by_ref().take(SNAPSHOT_BATCH).collect();
            send_events(&requests, batch).await?;
        }
        let done = proto::SyncMessage {
            body: Some(proto::sync_message::Body::SnapshotDone(
                proto::SnapshotDone {
                    sync_tag: tag,
                    entries,
                },
            )),
        };
        requests.send(done).await.map_err(|e| e.to_string())?;
        lock(&link.stats).resync_events += entries;
    }
    link.set_state("synchronised");
    tracing::info!(peer = %link.address, "python-policy caches synchronised with the peer");
    loop {
        tokio::select! {
            batch = live_events.recv() => match batch {
                Some(batch) => send_events(&requests, batch).await?,
                None => return Err("queue overflowed; resynchronising".into()),
            },
            reply = replies.message() => match reply {
                Ok(Some(proto::SyncReply { body: Some(proto::sync_reply::Body::Ack(ack)) })) => {
                    let mut stats = lock(&link.stats);
                    stats.peer_applied += ack.applied;
                    stats.peer_stale += ack.stale;
                    stats.peer_refused += ack.refused;
                }
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                Err(status) => return Err(format!("peer: {}", status.message())),
            },
        }
    }
}

async fn send_events(
    requests: &mpsc::Sender<proto::SyncMessage>,
    events: Vec<proto::CacheEvent>,
) -> Result<(), String> {
    let message = proto::SyncMessage {
        body: Some(proto::sync_message::Body::Events(proto::EventBatch {
            events,
        })),
    };
    requests
        .send(message)
        .await
        .map_err(|_| "stream closed".to_owned())
}

/// Binds `address` and serves peers' sync streams; returns the bound address and the task.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    address: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let service = CacheSyncServer::new(SyncService { shared });
    let task = tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
        if let Err(err) = result {
            tracing::error!(%err, "python-policy cache sync server stopped");
        }
    });
    Ok((bound, task))
}

struct SyncService {
    shared: Arc<Shared>,
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<proto::SyncReply, Status>> + Send>>;

#[tonic::async_trait]
impl CacheSync for SyncService {
    type SyncStream = ReplyStream;

    async fn sync(
        &self,
        request: Request<Streaming<proto::SyncMessage>>,
    ) -> Result<Response<ReplyStream>, Status> {
        let shared = self.shared.clone();
        let refuse = |status: Status| {
            lock(&shared.inbound).refused += 1;
            Err(status)
        };
        let Some(remote) = request.remote_addr() else {
            return refuse(Status::internal("no peer address"));
        };
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await {
            Ok(Some(proto::SyncMessage {
                body: Some(proto::sync_message::Body::Hello(hello)),
            })) => hello,
            _ => {
                return refuse(Status::invalid_argument(
                    "the first message must be a Hello",
                ))
            }
        };
        if hello.node_id == shared.node_id {
            return refuse(Status::failed_precondition(format!(
                "peer uses this node's node id {}; node ids must differ",
                hello.node_id
            )));
        }
        // Only the caches whose mcs-peer is the connecting address take its events.
        let allowed: HashMap<String, String> = shared
            .peers
            .iter()
            .filter(|link| same_ip(link.address.ip(), remote.ip()))
            .flat_map(|link| link.tags())
            .collect();
        if allowed.is_empty() {
            return refuse(Status::permission_denied(format!(
                "no python-policy cache has mcs-peer {}",
                remote.ip()
            )));
        }
        {
            let mut stats = lock(&shared.inbound);
            stats.sessions += 1;
            stats.active += 1;
        }
        tracing::info!(peer = %remote, node_id = hello.node_id, "cache sync stream from peer");
        let (replies, reply_stream) = mpsc::channel(16);
        let answer = proto::SyncReply {
            body: Some(proto::sync_reply::Body::Hello(proto::Hello {
                node_id: shared.node_id,
                sync_tags: allowed.keys().cloned().collect(),
            })),
        };
        let _ = replies.send(Ok(answer)).await;
        let mut closing = shared.closing.subscribe();
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    received = inbound.message() => received,
                    _ = closing.wait_for(|closing| *closing) => break,
                };
                let message = match received {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(peer = %remote, %status, "cache sync stream failed");
                        break;
                    }
                };
                match message.body {
                    Some(proto::sync_message::Body::Events(batch)) => {
                        let ack = apply_batch(&shared, &allowed, batch.events);
                        shared.wake();
                        if replies
                            .send(Ok(proto::SyncReply {
                                body: Some(proto::sync_reply::Body::Ack(ack)),
                            }))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Some(proto::sync_message::Body::SnapshotDone(done)) => {
                        tracing::info!(peer = %remote, tag = %done.sync_tag, entries = done.entries,
                            "cache resync from peer received");
                    }
                    Some(proto::sync_message::Body::Hello(_)) | None => {}
                }
            }
            lock(&shared.inbound).active -= 1;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(reply_stream))))
    }
}

fn apply_batch(
    shared: &Shared,
    allowed: &HashMap<String, String>,
    events: Vec<proto::CacheEvent>,
) -> proto::Ack {
    let now = wall_clock_ms();
    let mut ack = proto::Ack::default();
    let mut malformed = 0;
    {
        let mut set = shared.caches();
        for event in events {
            let Some(policy) = allowed.get(&event.sync_tag) else {
                ack.unknown_tag += 1;
                continue;
            };
            let Some(event) = event_from_proto(event) else {
                malformed += 1;
                continue;
            };
            let Some(cache) = set.get_mut(policy) else {
                ack.unknown_tag += 1;
                continue;
            };
            match cache.apply(&event, now) {
                ApplyOutcome::Applied => ack.applied += 1,
                ApplyOutcome::Stale => ack.stale += 1,
                ApplyOutcome::Refused(_) => ack.refused += 1,
            }
        }
    }
    let mut stats = lock(&shared.inbound);
    stats.applied += ack.applied;
    stats.stale += ack.stale;
    stats.refused_events += ack.refused;
    stats.unknown_tag += ack.unknown_tag;
    stats.malformed += malformed;
    ack
}

/// Address equality that treats `::ffff:a.b.c.d` as `a.b.c.d`.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    canonical(a) == canonical(b)
}
