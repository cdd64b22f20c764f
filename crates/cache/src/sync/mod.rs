//! Multi-chassis synchronisation of python-policy caches (SR OS `mcs-peer ADDRESS sync-tag TAG`)
//! as a sans-IO state machine: the protocol of `brasa.cache.CacheSync`
//! (`crates/proto/proto/cache/sync.proto`) without its transport.
//!
//! Every node dials each peer named by an `mcs-peer` of its caches, over one stream per peer
//! that carries every cache naming that peer (told apart by sync tag), and *sends* on it
//! ([`Outbound`]); it *receives* on the stream its peer dials to it ([`Inbound`]). A
//! [`SyncNode`] holds both halves for every configured peer and admits inbound streams by
//! source address.
//!
//! A session goes through:
//!
//! 1. **Handshake**: the dialler's `Hello` (node id, sync tags, nonce), the acceptor's `Hello`
//!    with an HMAC-SHA256 proof over both Hellos, the dialler's `Proof`. Each side checks the
//!    other's proof against the shared key ([`SyncKey`]; it never crosses the wire, and fresh
//!    nonces on both sides make a recorded proof useless), then that both carry the same set
//!    of sync tags. A failed proof ([`LinkState::AuthFailed`]) or differing tags
//!    ([`LinkState::TagMismatch`]) end the session before a single event is sent.
//! 2. **Resync**: the dialler sends the full snapshot of each shared cache
//!    ([`crate::PolicyCache::peer_resync`]: live entries with the multi-chassis minimum left,
//!    plus remembered clears), each closed by `SnapshotDone`.
//! 3. **Live events**: every local change handed to [`SyncNode::queue`], in numbered batches
//!    within a window of unacknowledged batches; the acceptor applies each batch with
//!    last-writer-wins ([`crate::PolicyCache::apply`]) and acknowledges it in order.
//!
//! Changes queued faster than the peer acknowledges overflow a bounded queue: the session is
//! reset, and the resync of the next one replaces whatever was dropped. A session that fails
//! is retried after a back-off that doubles up to a limit.
//!
//! Nothing here reads a clock, draws random numbers or touches a socket: `now` (wall-clock
//! milliseconds, the cache's time base) and the handshake nonces are arguments, messages to
//! send come out of [`Outbound::poll_transmit`] and the replies of [`Inbound`] are return
//! values. A wall-clock step backwards moves every pending deadline with it, so a link never
//! waits out the step.

mod handshake;
mod inbound;
mod node;
mod outbound;
mod wire;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;

pub use brasa_proto::brasa::cache as proto;
pub use handshake::{Nonce, NONCE_LEN, PROTOCOL_VERSION};
pub use inbound::{Inbound, InboundCounters, InboundStatus, SessionId};
pub use node::{PeerId, PeerStatus, SyncNode, SyncStatus};
pub use outbound::{Outbound, OutboundCounters, OutboundStatus, Transmit};
pub use wire::{event_from_proto, event_to_proto};

use crate::Millis;

/// The key both peers of a link share (SR OS multi-chassis peer `authentication-key`).
///
/// It only ever keys HMAC-SHA256 proofs; it is never sent, logged or printed (`Debug` shows
/// `SyncKey(..)`).
#[derive(Clone)]
pub struct SyncKey(Hmac<Sha256>);

impl SyncKey {
    /// A key from its bytes; empty keys are refused.
    pub fn new(bytes: &[u8]) -> Result<SyncKey, SyncConfigError> {
        if bytes.is_empty() {
            return Err(SyncConfigError::EmptyKey);
        }
        // HMAC takes keys of any length (longer ones are hashed first).
        <Hmac<Sha256> as Mac>::new_from_slice(bytes)
            .map(SyncKey)
            .map_err(|_| SyncConfigError::EmptyKey)
    }

    /// HMAC-SHA256 keyed with the shared key, ready for a message.
    fn mac(&self) -> &Hmac<Sha256> {
        &self.0
    }
}

impl fmt::Debug for SyncKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SyncKey(..)")
    }
}

/// One cache replicated with a peer: its `sync-tag` and the python-policy that owns it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SyncedCache {
    /// The tag both nodes give the cache (1 to [`crate::McsPeer::MAX_SYNC_TAG`] bytes).
    pub tag: String,
    /// The local python-policy.
    pub policy: String,
}

/// A multi-chassis peer and the caches this node shares with it.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    /// The peer's address: it dials from there, and is dialled there.
    pub address: IpAddr,
    /// The caches whose `mcs-peer` is this address.
    pub caches: Vec<SyncedCache>,
}

/// Sizes and timers of the links; [`SyncLimits::default`] suits a pair of BNGs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLimits {
    /// Events per batch.
    pub batch: usize,
    /// Batches sent and not yet acknowledged.
    pub window: usize,
    /// Live events waiting to be sent; one more resets the session (and so resyncs).
    pub queue: usize,
    /// How long a handshake may take.
    pub handshake_timeout: Duration,
    /// How long the oldest unacknowledged batch may wait for its `Ack`.
    pub ack_timeout: Duration,
    /// First wait before a failed session is retried; doubled per failure.
    pub backoff_min: Duration,
    /// Longest wait between retries.
    pub backoff_max: Duration,
}

impl Default for SyncLimits {
    fn default() -> Self {
        SyncLimits {
            batch: 512,
            window: 8,
            queue: 65_536,
            handshake_timeout: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// Everything a [`SyncNode`] needs.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// This node's id in cache versions; a peer with the same id is refused.
    pub node_id: u32,
    /// The key shared with the peers.
    pub key: SyncKey,
    /// The peers, one per address.
    pub peers: Vec<PeerSpec>,
    /// Sizes and timers.
    pub limits: SyncLimits,
}

/// A [`SyncConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SyncConfigError {
    /// The shared key is empty.
    #[error("the cache sync key must not be empty")]
    EmptyKey,
    /// Two peers have the same address.
    #[error("mcs-peer {0} is listed twice")]
    DuplicatePeer(IpAddr),
    /// A sync tag is empty or too long.
    #[error("sync-tag {0:?} must be 1 to 32 characters")]
    SyncTag(String),
    /// Two caches give the same peer the same tag.
    #[error("sync-tag {tag:?} names two caches for mcs-peer {peer}")]
    DuplicateTag {
        /// The peer.
        peer: IpAddr,
        /// The tag.
        tag: String,
    },
    /// A limit is zero.
    #[error("cache sync {0} must be at least 1")]
    ZeroLimit(&'static str),
}

/// Where a link stands, as `brasa show python statistics` prints it (kebab-case in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkState {
    /// No session; an outbound link retries after its back-off.
    Down,
    /// The transport is being opened.
    Connecting,
    /// Hellos exchanged, a proof awaited.
    Authenticating,
    /// The full snapshot is on its way.
    Resyncing,
    /// Snapshot delivered and acknowledged; live events flow.
    Synchronised,
    /// The peer pairs other sync tags with this node: nothing is sent or applied.
    TagMismatch,
    /// The peer failed the shared-key check: nothing is sent or applied.
    AuthFailed,
}

impl LinkState {
    /// Every state, for metrics that export one series per state.
    pub const ALL: [LinkState; 7] = [
        LinkState::Down,
        LinkState::Connecting,
        LinkState::Authenticating,
        LinkState::Resyncing,
        LinkState::Synchronised,
        LinkState::TagMismatch,
        LinkState::AuthFailed,
    ];

    /// The name shown by the CLI and in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Down => "down",
            LinkState::Connecting => "connecting",
            LinkState::Authenticating => "authenticating",
            LinkState::Resyncing => "resyncing",
            LinkState::Synchronised => "synchronised",
            LinkState::TagMismatch => "tag-mismatch",
            LinkState::AuthFailed => "auth-failed",
        }
    }
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal that outlives its session: shown as the link's state until an attempt succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    TagMismatch,
    AuthFailed,
}

impl From<Verdict> for LinkState {
    fn from(verdict: Verdict) -> LinkState {
        match verdict {
            Verdict::TagMismatch => LinkState::TagMismatch,
            Verdict::AuthFailed => LinkState::AuthFailed,
        }
    }
}

/// Why a session ended or was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LinkError {
    /// The transport could not be opened (the shell's words).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The transport failed (the shell's words).
    #[error("transport: {0}")]
    Transport(String),
    /// The peer ended the stream.
    #[error("the peer closed the stream")]
    PeerClosed,
    /// The peer refused the stream before its Hello (its own words).
    #[error("the peer refused the stream: {0}")]
    PeerRefused(String),
    /// The stream came from an address that is no configured peer.
    #[error("no python-policy cache has mcs-peer {0}")]
    UnknownPeer(IpAddr),
    /// The peer speaks another protocol version.
    #[error("the peer speaks cache sync protocol version {peer}, this node {ours}")]
    Version {
        /// The peer's version.
        peer: u32,
        /// This node's.
        ours: u32,
    },
    /// The peer's proof did not match the shared key (or it refused this node's proof).
    #[error("the peer failed the shared-key check (cache sync keys differ)")]
    AuthFailed,
    /// The two nodes pair different sync tags.
    #[error("sync tags differ: only here {local_only:?}, only on the peer {peer_only:?}")]
    TagMismatch {
        /// Tags this node pairs with the peer and the peer does not.
        local_only: Vec<String>,
        /// Tags the peer pairs with this node and this node does not.
        peer_only: Vec<String>,
    },
    /// The peer uses this node's node id.
    #[error("the peer uses this node's node id {0}; node ids must differ")]
    SameNodeId(u32),
    /// The handshake did not finish in time.
    #[error("no handshake within {0:?}")]
    HandshakeTimeout(Duration),
    /// A batch was not acknowledged in time.
    #[error("no acknowledgement within {0:?}")]
    AckTimeout(Duration),
    /// More changes were queued than the peer acknowledged.
    #[error("the queue of {0} events overflowed; resynchronising")]
    QueueOverflow(usize),
    /// The peer broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolError),
    /// A newer stream from the same peer replaced this one.
    #[error("replaced by a newer stream from the same peer")]
    Superseded,
}

/// How a peer broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// A message without a body.
    #[error("empty message")]
    Empty,
    /// A message that does not belong at this point of the session.
    #[error("unexpected {0} message")]
    Unexpected(&'static str),
    /// A Hello whose nonce is not [`NONCE_LEN`] bytes.
    #[error("Hello nonce of {0} bytes")]
    Nonce(usize),
    /// A Hello with an invalid sync tag or too many.
    #[error("invalid sync tags in the Hello")]
    Tags,
    /// A batch out of sequence.
    #[error("batch {got} where {expected} was due")]
    Sequence {
        /// The sequence number due.
        expected: u64,
        /// The one received.
        got: u64,
    },
    /// An acknowledgement of no batch in flight, or out of order.
    #[error("acknowledgement of batch {0}, which is not the oldest in flight")]
    Ack(u64),
    /// `SnapshotDone` for a tag the handshake did not agree on.
    #[error("snapshot of unknown sync tag {0:?}")]
    SnapshotTag(String),
}

/// Moves every deadline by a wall-clock step backwards, so that timers keep their length.
#[derive(Debug, Clone, Copy, Default)]
struct Clock {
    last: Millis,
}

impl Clock {
    /// Records `now`; returns by how much the clock went back since the last call (0 if not).
    fn observe(&mut self, now: Millis) -> Millis {
        let back = self.last.saturating_sub(now);
        self.last = now;
        back
    }
}

fn ms(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// The sorted, de-duplicated tags of `caches`.
fn tag_set(caches: &[SyncedCache]) -> Vec<String> {
    let mut tags: Vec<String> = caches.iter().map(|c| c.tag.clone()).collect();
    tags.sort();
    tags.dedup();
    tags
}

/// Compares the tags this node pairs with a peer with the peer's.
fn match_tags(local: &[String], peer: &[String]) -> Result<(), LinkError> {
    let mut peer: Vec<String> = peer.to_vec();
    peer.sort();
    peer.dedup();
    if local == peer.as_slice() {
        return Ok(());
    }
    Err(LinkError::TagMismatch {
        local_only: local
            .iter()
            .filter(|t| !peer.contains(t))
            .cloned()
            .collect(),
        peer_only: peer
            .iter()
            .filter(|t| !local.contains(t))
            .cloned()
            .collect(),
    })
}

#[cfg(test)]
mod tests;
