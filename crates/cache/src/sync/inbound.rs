//! The receiving half of a link: the stream the peer dials to this node. It answers the Hello
//! with this node's proof, checks the peer's, and applies its batches.

use serde::{Deserialize, Serialize};

use super::handshake::{self, HelloFields, Nonce, Role};
use super::{
    match_tags, ms, proto, tag_set, wire, Clock, LinkError, LinkState, ProtocolError, SyncKey,
    SyncLimits, SyncedCache, Verdict,
};
use crate::{ApplyOutcome, CacheSet, Millis};

use proto::sync_message::Body as In;
use proto::sync_reply::Body as Reply;

/// Identifies one inbound stream of a peer; a newer stream supersedes an older one.
pub type SessionId = u64;

/// Counters of an inbound link since the node started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundCounters {
    /// Streams opened by the peer.
    pub streams: u64,
    /// Streams refused at the Hello (protocol version, node id, malformed Hello).
    pub refused: u64,
    /// Handshakes completed.
    pub sessions: u64,
    /// Handshakes in which the peer failed the shared-key check.
    pub auth_failures: u64,
    /// Handshakes in which the sync tags differed.
    pub tag_mismatches: u64,
    /// Sessions ended by a protocol violation of the peer.
    pub protocol_errors: u64,
    /// Batches received and acknowledged.
    pub batches: u64,
    /// Events applied.
    pub applied: u64,
    /// Events older than the local state.
    pub stale: u64,
    /// Events refused by a local limit.
    pub refused_events: u64,
    /// Events that could not be used (unknown kind, tag outside the handshake's).
    pub malformed: u64,
    /// Cache snapshots received in full.
    pub snapshots: u64,
}

/// An inbound link as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundStatus {
    /// Where the link stands.
    pub state: LinkState,
    /// The peer's node id, from its last Hello.
    pub peer_node_id: Option<u32>,
    /// The sync tags the peer pairs with this node, from its last Hello.
    pub peer_sync_tags: Vec<String>,
    /// Counters.
    #[serde(flatten)]
    pub counters: InboundCounters,
    /// Why the last stream ended or was refused.
    pub last_error: Option<String>,
}

/// A stream whose dialler has not proved the key yet.
#[derive(Debug)]
struct Handshake {
    id: SessionId,
    peer: HelloFields,
    ours: HelloFields,
    deadline: Millis,
}

/// An authenticated stream.
#[derive(Debug)]
struct Receiving {
    id: SessionId,
    next_seq: u64,
    /// Tags whose snapshot has not been completed yet.
    pending_snapshots: Vec<String>,
}

/// The receiving half of the link from one peer. See the [module documentation](super).
///
/// The shell admits a stream by its source address ([`super::SyncNode::admit`]), passes its
/// first message to [`Inbound::open`] (and sends the reply), then every further message to
/// [`Inbound::handle_message`] (sending the `Ack` it may return); an error ends the stream.
/// [`Inbound::handle_timeout`] at [`Inbound::poll_timeout`] ends a handshake that stalls, and
/// [`Inbound::closed`] records the end of a stream.
///
/// A peer has at most one authenticated stream and one in its handshake. A new stream
/// replaces the authenticated one only once it has proved the key itself, so a stream that
/// cannot (another process at the peer's address, say) never interrupts replication.
#[derive(Debug)]
pub struct Inbound {
    node_id: u32,
    key: SyncKey,
    /// Sorted by tag.
    caches: Vec<SyncedCache>,
    tags: Vec<String>,
    limits: SyncLimits,
    handshake: Option<Handshake>,
    receiving: Option<Receiving>,
    next_id: SessionId,
    verdict: Option<Verdict>,
    clock: Clock,
    peer_node_id: Option<u32>,
    peer_tags: Vec<String>,
    counters: InboundCounters,
    last_error: Option<LinkError>,
}

impl Inbound {
    pub(super) fn new(
        node_id: u32,
        key: SyncKey,
        caches: Vec<SyncedCache>,
        limits: SyncLimits,
    ) -> Inbound {
        let tags = tag_set(&caches);
        Inbound {
            node_id,
            key,
            caches,
            tags,
            limits,
            handshake: None,
            receiving: None,
            next_id: 1,
            verdict: None,
            clock: Clock::default(),
            peer_node_id: None,
            peer_tags: Vec::new(),
            counters: InboundCounters::default(),
            last_error: None,
        }
    }

    /// Where the link stands; a new stream after a refusal keeps showing the refusal until it
    /// gets past it.
    pub fn state(&self) -> LinkState {
        let refusal = self.verdict.map(LinkState::from);
        match (&self.receiving, &self.handshake) {
            (Some(stream), _) if stream.pending_snapshots.is_empty() => LinkState::Synchronised,
            (Some(_), _) => LinkState::Resyncing,
            (None, Some(_)) => refusal.unwrap_or(LinkState::Authenticating),
            (None, None) => refusal.unwrap_or(LinkState::Down),
        }
    }

    /// The operator's view.
    pub fn status(&self) -> InboundStatus {
        InboundStatus {
            state: self.state(),
            peer_node_id: self.peer_node_id,
            peer_sync_tags: self.peer_tags.clone(),
            counters: self.counters.clone(),
            last_error: self.last_error.as_ref().map(ToString::to_string),
        }
    }

    /// Why the last stream ended or was refused.
    pub fn last_error(&self) -> Option<&LinkError> {
        self.last_error.as_ref()
    }

    /// Whether stream `session` is still open here (one that is not must be ended).
    pub fn is_open(&self, session: SessionId) -> bool {
        self.handshake.as_ref().is_some_and(|h| h.id == session)
            || self.receiving.as_ref().is_some_and(|r| r.id == session)
    }

    /// The deadline of the handshake in progress.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.handshake.as_ref().map(|h| h.deadline)
    }

    /// Ends a handshake that ran past its deadline.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.rebase(now);
        if let Some(id) = self
            .handshake
            .as_ref()
            .filter(|h| now >= h.deadline)
            .map(|h| h.id)
        {
            self.end(
                id,
                LinkError::HandshakeTimeout(self.limits.handshake_timeout),
            );
        }
    }

    /// A new stream's first message, which must be the peer's Hello; `nonce` is fresh random
    /// bytes. Returns the stream's id and this node's Hello (with its proof) to send back. It
    /// replaces a handshake still in progress, and the authenticated stream once it has
    /// proved the key.
    pub fn open(
        &mut self,
        now: Millis,
        nonce: Nonce,
        first: proto::SyncMessage,
    ) -> Result<(SessionId, proto::SyncReply), LinkError> {
        self.rebase(now);
        self.counters.streams += 1;
        let hello = match first.body {
            Some(In::Hello(hello)) => hello,
            Some(other) => return Err(self.refuse(ProtocolError::Unexpected(name(&other)).into())),
            None => return Err(self.refuse(ProtocolError::Empty.into())),
        };
        let peer = match HelloFields::from_peer(&hello, self.node_id) {
            Ok(peer) => peer,
            Err(error) => return Err(self.refuse(error)),
        };
        self.peer_node_id = Some(peer.node_id);
        self.peer_tags = peer.tags.clone();
        let ours = HelloFields {
            node_id: self.node_id,
            tags: self.tags.clone(),
            nonce,
        };
        let proof = handshake::proof(&self.key, Role::Acceptor, &peer, &ours);
        let reply = proto::SyncReply {
            body: Some(Reply::Hello(ours.to_proto(proof))),
        };
        let id = self.next_id;
        self.next_id += 1;
        self.handshake = Some(Handshake {
            id,
            peer,
            ours,
            deadline: now.saturating_add(ms(self.limits.handshake_timeout)),
        });
        Ok((id, reply))
    }

    /// A further message of stream `session`. Returns the `Ack` to send for a batch; an error
    /// ends the stream.
    pub fn handle_message(
        &mut self,
        now: Millis,
        session: SessionId,
        message: proto::SyncMessage,
        caches: &mut CacheSet,
    ) -> Result<Option<proto::SyncReply>, LinkError> {
        self.rebase(now);
        let result = if self.handshake.as_ref().is_some_and(|h| h.id == session) {
            self.authenticate(message)
        } else if self.receiving.as_ref().is_some_and(|r| r.id == session) {
            self.receive(now, message, caches)
        } else {
            return Err(LinkError::Superseded);
        };
        if let Err(error) = &result {
            self.end(session, error.clone());
        }
        result
    }

    /// The message after the Hello: the dialler's proof; then the tags must agree.
    fn authenticate(
        &mut self,
        message: proto::SyncMessage,
    ) -> Result<Option<proto::SyncReply>, LinkError> {
        let Some(handshake) = self.handshake.as_ref() else {
            return Err(LinkError::Superseded);
        };
        let proof = match message.body {
            Some(In::Proof(proof)) => proof,
            Some(other) => return Err(ProtocolError::Unexpected(name(&other)).into()),
            None => return Err(ProtocolError::Empty.into()),
        };
        let proved = handshake::verify(
            &self.key,
            Role::Dialler,
            &handshake.peer,
            &handshake.ours,
            &proof.proof,
        );
        if !proved {
            return Err(LinkError::AuthFailed);
        }
        match_tags(&self.tags, &handshake.peer.tags)?;
        // The proven stream replaces the one before it, whose next message gets `Superseded`.
        self.receiving = Some(Receiving {
            id: handshake.id,
            next_seq: 1,
            pending_snapshots: self.tags.clone(),
        });
        self.handshake = None;
        self.counters.sessions += 1;
        self.verdict = None;
        Ok(None)
    }

    /// A message of the authenticated stream.
    fn receive(
        &mut self,
        now: Millis,
        message: proto::SyncMessage,
        caches: &mut CacheSet,
    ) -> Result<Option<proto::SyncReply>, LinkError> {
        let Some(stream) = self.receiving.as_mut() else {
            return Err(LinkError::Superseded);
        };
        match message.body {
            Some(In::Events(batch)) => {
                if batch.sequence != stream.next_seq {
                    return Err(ProtocolError::Sequence {
                        expected: stream.next_seq,
                        got: batch.sequence,
                    }
                    .into());
                }
                stream.next_seq += 1;
                let ack = self.apply(now, batch, caches);
                Ok(Some(proto::SyncReply {
                    body: Some(Reply::Ack(ack)),
                }))
            }
            Some(In::SnapshotDone(done)) => {
                if self.tags.binary_search(&done.sync_tag).is_err() {
                    return Err(ProtocolError::SnapshotTag(done.sync_tag).into());
                }
                stream.pending_snapshots.retain(|tag| *tag != done.sync_tag);
                self.counters.snapshots += 1;
                Ok(None)
            }
            Some(other) => Err(ProtocolError::Unexpected(name(&other)).into()),
            None => Err(ProtocolError::Empty.into()),
        }
    }

    /// Applies a batch with last-writer-wins, each event to the cache its tag names.
    fn apply(
        &mut self,
        now: Millis,
        batch: proto::EventBatch,
        caches: &mut CacheSet,
    ) -> proto::Ack {
        let mut ack = proto::Ack {
            sequence: batch.sequence,
            ..proto::Ack::default()
        };
        for event in batch.events {
            let policy = self
                .caches
                .binary_search_by(|c| c.tag.as_str().cmp(&event.sync_tag))
                .ok()
                .map(|i| self.caches[i].policy.as_str());
            let cache = policy.and_then(|policy| caches.get_mut(policy));
            let (Some(cache), Some(event)) = (cache, wire::event_from_proto(event)) else {
                ack.malformed += 1;
                continue;
            };
            match cache.apply(&event, now) {
                ApplyOutcome::Applied => ack.applied += 1,
                ApplyOutcome::Stale => ack.stale += 1,
                ApplyOutcome::Refused(_) => ack.refused += 1,
            }
        }
        let counters = &mut self.counters;
        counters.batches += 1;
        counters.applied += ack.applied;
        counters.stale += ack.stale;
        counters.refused_events += ack.refused;
        counters.malformed += ack.malformed;
        ack
    }

    /// Stream `session` ended (the peer closed it, or the transport failed).
    pub fn closed(&mut self, now: Millis, session: SessionId, reason: LinkError) {
        self.rebase(now);
        self.end(session, reason);
    }

    fn refuse(&mut self, error: LinkError) -> LinkError {
        self.counters.refused += 1;
        self.last_error = Some(error.clone());
        error
    }

    /// Ends stream `session` (if it is still open) for `error`.
    fn end(&mut self, session: SessionId, error: LinkError) {
        if self.handshake.as_ref().is_some_and(|h| h.id == session) {
            self.handshake = None;
        } else if self.receiving.as_ref().is_some_and(|r| r.id == session) {
            self.receiving = None;
        } else {
            return;
        }
        self.verdict = match &error {
            LinkError::AuthFailed => {
                self.counters.auth_failures += 1;
                Some(Verdict::AuthFailed)
            }
            LinkError::TagMismatch { .. } => {
                self.counters.tag_mismatches += 1;
                Some(Verdict::TagMismatch)
            }
            LinkError::Protocol(_) => {
                self.counters.protocol_errors += 1;
                None
            }
            _ => None,
        };
        self.last_error = Some(error);
    }

    fn rebase(&mut self, now: Millis) {
        let back = self.clock.observe(now);
        if let Some(handshake) = self.handshake.as_mut() {
            handshake.deadline = handshake.deadline.saturating_sub(back);
        }
    }
}

/// The name of a message kind, for protocol errors.
fn name(body: &In) -> &'static str {
    match body {
        In::Hello(_) => "Hello",
        In::Events(_) => "EventBatch",
        In::SnapshotDone(_) => "SnapshotDone",
        In::Proof(_) => "Proof",
    }
}
