//! The transport of multi-chassis cache sync: gRPC `brasa.cache.CacheSync`
//! (`crates/proto/proto/cache/sync.proto`) around the sans-IO [`brasa_cache::sync::SyncNode`].
//!
//! The protocol — handshake with the shared key, tag agreement, resync, acknowledged batches,
//! overflow resets, back-off — is the core's. This module only dials, accepts, draws nonces,
//! keeps time and moves messages: per peer, one task dials the peer and feeds it what
//! [`Outbound::poll_transmit`](brasa_cache::sync::Outbound::poll_transmit) yields, and one
//! task per accepted stream hands what arrives to
//! [`Inbound::handle_message`](brasa_cache::sync::Inbound::handle_message) and sends back
//! its acks.
//!
//! Locks: the sync node first, then the caches, never the other way round (the drain thread
//! releases the caches before it queues changes here); neither is held across an await.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use brasa_cache::sync::{
    proto, LinkError, LinkState, Outbound, PeerId, SyncConfig, SyncConfigError, SyncKey,
    SyncLimits, SyncNode, SyncStatus, SyncedCache, Transmit,
};
use brasa_cache::{CacheEvent, CacheSet, Millis};
use proto::cache_sync_client::CacheSyncClient;
use proto::cache_sync_server::{CacheSync, CacheSyncServer};
use tokio::sync::{mpsc, watch, Notify};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::util::{lock, Wake};
use crate::wall_clock_ms;

/// Longest a dial may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 pings on idle streams, so that a peer that vanished without a FIN is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// How long an ending stream waits for the peer to close its side.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// One multi-chassis peer of this node.
#[derive(Debug, Clone)]
pub(crate) struct PeerAddress {
    /// Where the peer accepts sync streams (its address and its listener's port).
    pub(crate) dial: SocketAddr,
    /// The caches shared with it.
    pub(crate) caches: Vec<SyncedCache>,
}

/// The running sync links of a node.
pub(crate) struct Links {
    node: Mutex<SyncNode>,
    caches: Arc<Mutex<CacheSet>>,
    /// Per peer: where to dial, and the wake-up of its outbound task.
    peers: Vec<(PeerId, SocketAddr, Notify)>,
    /// The address outbound streams leave from (the peer admits this node by it).
    local: IpAddr,
    /// Tells the drain thread that peer events were applied (journal them promptly).
    applied: Wake,
    /// Set at shutdown: every stream ends.
    closing: watch::Sender<bool>,
}

impl Links {
    /// The links of a node whose caches are `caches`, all down until [`Links::start`].
    pub(crate) fn new(
        node_id: u32,
        key: SyncKey,
        local: IpAddr,
        peers: Vec<PeerAddress>,
        caches: Arc<Mutex<CacheSet>>,
        applied: Wake,
    ) -> Result<Links, SyncConfigError> {
        let dial: Vec<SocketAddr> = peers.iter().map(|p| p.dial).collect();
        let node = SyncNode::new(SyncConfig {
            node_id,
            key,
            peers: peers
                .into_iter()
                .map(|p| brasa_cache::sync::PeerSpec {
                    address: p.dial.ip(),
                    caches: p.caches,
                })
                .collect(),
            limits: SyncLimits::default(),
        })?;
        let peers = node
            .peers()
            .zip(dial)
            .map(|((id, _), dial)| (id, dial, Notify::new()))
            .collect();
        Ok(Links {
            node: Mutex::new(node),
            caches,
            peers,
            local,
            applied,
            closing: watch::Sender::new(false),
        })
    }

    fn node(&self) -> MutexGuard<'_, SyncNode> {
        lock(&self.node)
    }

    /// Binds `address`, serves the peers' streams and starts one dialling task per peer.
    pub(crate) async fn start(
        self: &Arc<Links>,
        address: SocketAddr,
    ) -> std::io::Result<(SocketAddr, Vec<tokio::task::JoinHandle<()>>)> {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let bound = listener.local_addr()?;
        let service = CacheSyncServer::new(Acceptor {
            links: self.clone(),
        });
        // The service stops by `abort` (`CacheService::shutdown`), which closes the listener.
        let mut tasks = vec![tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .http2_keepalive_interval(Some(KEEP_ALIVE))
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
            if let Err(err) = result {
                tracing::error!(%err, "python-policy cache sync server stopped");
            }
        })];
        for index in 0..self.peers.len() {
            tasks.push(tokio::spawn(run_outbound(self.clone(), index)));
        }
        Ok((bound, tasks))
    }

    /// Queues local changes of `policy`'s cache for its peer (from the drain thread).
    pub(crate) fn queue(&self, now: Millis, policy: &str, events: Vec<CacheEvent>) {
        let woken = self.node().queue(now, policy, events);
        if let Some(peer) = woken {
            if let Some((_, _, notify)) = self.peers.iter().find(|(id, _, _)| *id == peer) {
                notify.notify_one();
            }
        }
    }

    /// Every link as the operator sees it.
    pub(crate) fn status(&self) -> SyncStatus {
        self.node().status()
    }

    /// Ends every stream and task.
    pub(crate) fn shutdown(&self) {
        self.closing.send_replace(true);
    }
}

/// Keeps the link to peer `index` up for as long as the service runs.
async fn run_outbound(links: Arc<Links>, index: usize) {
    let (peer, address, _) = &links.peers[index];
    let (peer, address) = (*peer, *address);
    let mut closing = links.closing.subscribe();
    let mut logged = LinkState::Down;
    loop {
        // Wait until the core wants a connection (at once, or after its back-off).
        loop {
            let now = wall_clock_ms();
            let retry_at = {
                let mut node = links.node();
                let outbound = node.outbound(peer);
                if outbound.wants_connection(now) {
                    outbound.connecting(now);
                    break;
                }
                outbound.poll_timeout()
            };
            let wait = retry_at.map_or(Duration::from_secs(1), |at| {
                Duration::from_millis(at.saturating_sub(now))
            });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopped(&mut closing) => return,
            }
        }
        let ended = tokio::select! {
            ended = session(&links, index, &mut logged) => ended,
            _ = stopped(&mut closing) => return,
        };
        let mut node = links.node();
        let outbound = node.outbound(peer);
        if let Some(reason) = ended {
            outbound.closed(wall_clock_ms(), reason);
        }
        log_outbound(address, outbound, &mut logged);
    }
}

/// Logs the link's state when it changed since `logged` (a refused retry changes nothing).
fn log_outbound(peer: SocketAddr, outbound: &Outbound, logged: &mut LinkState) {
    let state = outbound.state();
    if state == *logged {
        return;
    }
    *logged = state;
    let reason = outbound
        .last_error()
        .map(ToString::to_string)
        .unwrap_or_default();
    match state {
        LinkState::TagMismatch | LinkState::AuthFailed => tracing::warn!(%peer, %state, %reason,
            "python-policy cache sync refused; nothing is replicated to this peer"),
        LinkState::Synchronised => {
            tracing::info!(%peer, "python-policy caches synchronised with the peer")
        }
        _ => tracing::info!(%peer, %state, %reason, "python-policy cache sync link"),
    }
}

/// One session over a new stream. Returns why it ended, or `None` when the core ended it.
async fn session(links: &Links, index: usize, logged: &mut LinkState) -> Option<LinkError> {
    let (peer, address, notify) = &links.peers[index];
    let peer = *peer;
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{address}")) {
        Ok(endpoint) => endpoint,
        Err(err) => return Some(LinkError::Connect(err.to_string())),
    }
    .connect_timeout(CONNECT_TIMEOUT)
    .tcp_nodelay(true)
    .http2_keep_alive_interval(KEEP_ALIVE)
    .keep_alive_timeout(KEEP_ALIVE)
    .local_address(Some(links.local));
    let channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(err) => return Some(LinkError::Connect(transport_error(&err))),
    };
    links
        .node()
        .outbound(peer)
        .connected(wall_clock_ms(), rand::random());
    let (requests, request_stream) = mpsc::channel::<proto::SyncMessage>(16);
    // The Hello must be on its way before the call: the peer answers the call after it.
    if let Err(ended) = pump(links, peer, &requests).await {
        return ended;
    }
    let mut replies = match CacheSyncClient::new(channel)
        .sync(ReceiverStream::new(request_stream))
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) => return Some(LinkError::PeerRefused(status.message().to_owned())),
    };
    loop {
        let deadline = links.node().outbound(peer).poll_timeout();
        tokio::select! {
            _ = notify.notified() => {}
            _ = sleep_until(deadline) => links.node().outbound(peer).handle_timeout(wall_clock_ms()),
            reply = replies.message() => match reply {
                Ok(Some(reply)) => {
                    let mut node = links.node();
                    let caches = lock(&links.caches);
                    let outbound = node.outbound(peer);
                    // An error ends the session; `pump` below ends the stream.
                    let _ = outbound.handle_reply(wall_clock_ms(), reply, &caches);
                    log_outbound(*address, outbound, logged);
                }
                Ok(None) => return Some(LinkError::PeerClosed),
                Err(status) => return Some(LinkError::PeerRefused(status.message().to_owned())),
            },
        }
        if let Err(ended) = pump(links, peer, &requests).await {
            if ended.is_none() {
                // The core ended the session, maybe right after its last handshake message:
                // half-close and let the peer read it and answer, rather than reset the stream
                // under it.
                drop(requests);
                let drained = async { while let Ok(Some(_)) = replies.message().await {} };
                let _ = tokio::time::timeout(CLOSE_GRACE, drained).await;
            }
            return ended;
        }
    }
}

/// Sends what the core has for the stream. `Err` when the session is over: `Err(None)` if the
/// core ended it, `Err(Some(why))` if the stream broke.
async fn pump(
    links: &Links,
    peer: PeerId,
    requests: &mpsc::Sender<proto::SyncMessage>,
) -> Result<(), Option<LinkError>> {
    loop {
        let next = links.node().outbound(peer).poll_transmit(wall_clock_ms());
        match next {
            Transmit::Message(message) => requests
                .send(message)
                .await
                .map_err(|_| Some(LinkError::Transport("the stream to the peer closed".into())))?,
            Transmit::Idle => return Ok(()),
            Transmit::Close => return Err(None),
        }
    }
}

async fn sleep_until(deadline: Option<Millis>) {
    match deadline {
        Some(at) => {
            let wait = at.saturating_sub(wall_clock_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await
        }
        None => std::future::pending().await,
    }
}

fn transport_error(err: &tonic::transport::Error) -> String {
    use std::error::Error;
    // tonic's own message is "transport error"; the cause says what happened.
    match err.source() {
        Some(source) => format!("{err}: {source}"),
        None => err.to_string(),
    }
}

/// The gRPC status a refusal or the end of a stream is reported with.
fn status(error: &LinkError) -> Status {
    let message = error.to_string();
    match error {
        LinkError::UnknownPeer(_) => Status::permission_denied(message),
        LinkError::AuthFailed => Status::unauthenticated(message),
        LinkError::TagMismatch { .. } | LinkError::Version { .. } | LinkError::SameNodeId(_) => {
            Status::failed_precondition(message)
        }
        LinkError::HandshakeTimeout(_) | LinkError::AckTimeout(_) => {
            Status::deadline_exceeded(message)
        }
        LinkError::Superseded => Status::aborted(message),
        LinkError::Protocol(_) => Status::invalid_argument(message),
        LinkError::Connect(_)
        | LinkError::Transport(_)
        | LinkError::PeerClosed
        | LinkError::PeerRefused(_)
        | LinkError::QueueOverflow(_) => Status::unavailable(message),
    }
}

/// The `CacheSync` service: streams dialled by peers.
struct Acceptor {
    links: Arc<Links>,
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<proto::SyncReply, Status>> + Send>>;

#[tonic::async_trait]
impl CacheSync for Acceptor {
    type SyncStream = ReplyStream;

    async fn sync(
        &self,
        request: Request<Streaming<proto::SyncMessage>>,
    ) -> Result<Response<ReplyStream>, Status> {
        let links = self.links.clone();
        let remote = request
            .remote_addr()
            .ok_or_else(|| Status::internal("the stream has no peer address"))?;
        let peer = links.node().admit(remote.ip()).map_err(|error| {
            tracing::warn!(source = %remote, "cache sync stream from an address that is no mcs-peer refused");
            status(&error)
        })?;
        let mut inbound = request.into_inner();
        let first = match inbound.message().await {
            Ok(Some(first)) => first,
            Ok(None) => {
                return Err(Status::invalid_argument(
                    "the stream ended before its Hello",
                ))
            }
            Err(status) => return Err(status),
        };
        let (session, hello) = links
            .node()
            .inbound(peer)
            .open(wall_clock_ms(), rand::random(), first)
            .map_err(|error| {
                tracing::warn!(peer = %remote, %error, "cache sync stream refused");
                status(&error)
            })?;
        let (replies, reply_stream) = mpsc::channel(16);
        let _ = replies.send(Ok(hello)).await;
        tokio::spawn(receive(links, peer, session, remote, inbound, replies));
        Ok(Response::new(Box::pin(ReceiverStream::new(reply_stream))))
    }
}

/// Hands one accepted stream's messages to the core and sends back its acks.
async fn receive(
    links: Arc<Links>,
    peer: PeerId,
    session: brasa_cache::sync::SessionId,
    remote: SocketAddr,
    mut inbound: Streaming<proto::SyncMessage>,
    replies: mpsc::Sender<Result<proto::SyncReply, Status>>,
) {
    let mut closing = links.closing.subscribe();
    let mut logged = LinkState::Down;
    loop {
        let deadline = links.node().inbound(peer).poll_timeout();
        let received = tokio::select! {
            received = inbound.message() => received,
            _ = sleep_until(deadline) => {
                match handshake_expired(&links, peer, session) {
                    None => continue,
                    Some(error) => {
                        let _ = replies.send(Err(status(&error))).await;
                        return;
                    }
                }
            }
            _ = stopped(&mut closing) => return,
        };
        let message = match received {
            Ok(Some(message)) => message,
            Ok(None) => {
                links
                    .node()
                    .inbound(peer)
                    .closed(wall_clock_ms(), session, LinkError::PeerClosed);
                return;
            }
            Err(status) => {
                links.node().inbound(peer).closed(
                    wall_clock_ms(),
                    session,
                    LinkError::Transport(status.message().to_owned()),
                );
                return;
            }
        };
        let (result, state) = {
            let mut node = links.node();
            let mut caches = lock(&links.caches);
            let link = node.inbound(peer);
            let result = link.handle_message(wall_clock_ms(), session, message, &mut caches);
            (result, link.state())
        };
        if state != logged {
            match state {
                LinkState::TagMismatch | LinkState::AuthFailed => {
                    tracing::warn!(peer = %remote, %state,
                    reason = result.as_ref().err().map(ToString::to_string).unwrap_or_default(),
                    "python-policy cache sync stream refused; nothing from this peer is applied")
                }
                _ => {
                    tracing::info!(peer = %remote, %state, "python-policy cache sync from the peer")
                }
            }
            logged = state;
        }
        match result {
            Ok(Some(ack)) => {
                links.applied.wake();
                if replies.send(Ok(ack)).await.is_err() {
                    links.node().inbound(peer).closed(
                        wall_clock_ms(),
                        session,
                        LinkError::Transport("the reply stream closed".into()),
                    );
                    return;
                }
            }
            Ok(None) => {}
            Err(error) => {
                let _ = replies.send(Err(status(&error))).await;
                return;
            }
        }
    }
}

/// Runs the inbound handshake timer; returns why the stream must end, if it must.
fn handshake_expired(
    links: &Links,
    peer: PeerId,
    session: brasa_cache::sync::SessionId,
) -> Option<LinkError> {
    let mut node = links.node();
    let link = node.inbound(peer);
    link.handle_timeout(wall_clock_ms());
    if link.is_open(session) {
        return None;
    }
    Some(link.last_error().cloned().unwrap_or(LinkError::Superseded))
}

/// Resolves once the service is shutting down.
async fn stopped(closing: &mut watch::Receiver<bool>) {
    // `wait_for` hands back a borrow of the value, which must not live across an await.
    let _ = closing.wait_for(|closing| *closing).await;
}
