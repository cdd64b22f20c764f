//! The sending half of a link: this node dials its peer, proves the shared key, and pushes the
//! resync and then its live changes.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::handshake::{self, HelloFields, Nonce, Role};
use super::{
    match_tags, ms, proto, tag_set, wire, Clock, LinkError, LinkState, ProtocolError, SyncKey,
    SyncLimits, SyncedCache, Verdict,
};
use crate::{CacheEvent, CacheSet, Millis};

use proto::sync_message::Body as Out;
use proto::sync_reply::Body as Reply;

/// What the shell does next for an outbound link.
#[derive(Debug, Clone, PartialEq)]
pub enum Transmit {
    /// Send this message on the stream.
    Message(proto::SyncMessage),
    /// End the stream (the session is over; [`Outbound::poll_timeout`] says when to retry).
    Close,
    /// Nothing to send now.
    Idle,
}

/// Counters of an outbound link since the node started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundCounters {
    /// Transports opened or attempted.
    pub attempts: u64,
    /// Handshakes completed (each followed by a resync).
    pub sessions: u64,
    /// Events sent in resyncs.
    pub resync_events: u64,
    /// Live events sent.
    pub events_sent: u64,
    /// Batches the peer acknowledged.
    pub batches_acked: u64,
    /// Events the peer reported applied.
    pub peer_applied: u64,
    /// Events the peer reported older than its state.
    pub peer_stale: u64,
    /// Events the peer refused by a local limit.
    pub peer_refused: u64,
    /// Events the peer could not use.
    pub peer_malformed: u64,
    /// Sessions reset because the queue overflowed.
    pub overflows: u64,
    /// Handshakes in which the peer failed the shared-key check.
    pub auth_failures: u64,
    /// Handshakes in which the sync tags differed.
    pub tag_mismatches: u64,
    /// Sessions ended by a protocol violation of the peer.
    pub protocol_errors: u64,
}

/// An outbound link as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundStatus {
    /// Where the link stands.
    pub state: LinkState,
    /// The peer's node id, from its last Hello.
    pub peer_node_id: Option<u32>,
    /// The sync tags the peer pairs with this node, from its last Hello.
    pub peer_sync_tags: Vec<String>,
    /// Live events waiting to be sent.
    pub queued: usize,
    /// Batches sent and not yet acknowledged.
    pub in_flight: usize,
    /// Counters.
    #[serde(flatten)]
    pub counters: OutboundCounters,
    /// Why the last session ended or was refused.
    pub last_error: Option<String>,
}

#[derive(Debug)]
enum Phase {
    /// No transport; the shell dials at `retry_at`.
    Idle { retry_at: Millis },
    /// The shell is opening the transport.
    Connecting,
    /// Our Hello is out; the peer's is due by `deadline`.
    Hello { ours: HelloFields, deadline: Millis },
    /// Authenticated: resync, then live events.
    Streaming(Stream),
    /// The session is over; the shell ends the stream once the queued handshake is out.
    Closing { retry_at: Millis },
}

#[derive(Debug)]
struct Stream {
    /// Snapshots still to send, one per shared cache.
    resync: VecDeque<Snapshot>,
    /// Sequence number of the last resync batch, known once every snapshot is sent.
    last_resync_seq: Option<u64>,
    synchronised: bool,
}

#[derive(Debug)]
struct Snapshot {
    tag: String,
    events: VecDeque<CacheEvent>,
    total: u64,
}

#[derive(Debug)]
struct InFlight {
    seq: u64,
    sent_at: Millis,
}

/// The sending half of the link to one peer. See the [module documentation](super).
///
/// The shell drives it: [`Outbound::connecting`] when it starts to open the transport (at
/// [`Outbound::poll_timeout`] while idle), [`Outbound::connected`] with a fresh nonce once it
/// is open, [`Outbound::handle_reply`] for every reply, [`Outbound::handle_timeout`] at
/// [`Outbound::poll_timeout`], [`Outbound::closed`] when the transport ends, and after each of
/// them [`Outbound::poll_transmit`] until it returns [`Transmit::Idle`] (or `Close`).
#[derive(Debug)]
pub struct Outbound {
    node_id: u32,
    key: SyncKey,
    /// Sorted by tag.
    caches: Vec<SyncedCache>,
    tags: Vec<String>,
    limits: SyncLimits,
    phase: Phase,
    verdict: Option<Verdict>,
    backoff: Millis,
    clock: Clock,
    /// Handshake messages, sent before anything else.
    handshake: VecDeque<proto::SyncMessage>,
    live: VecDeque<proto::CacheEvent>,
    in_flight: VecDeque<InFlight>,
    next_seq: u64,
    acked: u64,
    peer_node_id: Option<u32>,
    peer_tags: Vec<String>,
    counters: OutboundCounters,
    last_error: Option<LinkError>,
}

impl Outbound {
    pub(super) fn new(
        node_id: u32,
        key: SyncKey,
        caches: Vec<SyncedCache>,
        limits: SyncLimits,
    ) -> Outbound {
        let tags = tag_set(&caches);
        Outbound {
            node_id,
            key,
            caches,
            tags,
            backoff: ms(limits.backoff_min),
            limits,
            phase: Phase::Idle { retry_at: 0 },
            verdict: None,
            clock: Clock::default(),
            handshake: VecDeque::new(),
            live: VecDeque::new(),
            in_flight: VecDeque::new(),
            next_seq: 1,
            acked: 0,
            peer_node_id: None,
            peer_tags: Vec::new(),
            counters: OutboundCounters::default(),
            last_error: None,
        }
    }

    /// Where the link stands. A retry after a refusal keeps showing the refusal until the new
    /// attempt gets past it.
    pub fn state(&self) -> LinkState {
        let refusal = self.verdict.map(LinkState::from);
        match &self.phase {
            Phase::Streaming(stream) if stream.synchronised => LinkState::Synchronised,
            Phase::Streaming(_) => LinkState::Resyncing,
            Phase::Idle { .. } | Phase::Closing { .. } => refusal.unwrap_or(LinkState::Down),
            Phase::Connecting => refusal.unwrap_or(LinkState::Connecting),
            Phase::Hello { .. } => refusal.unwrap_or(LinkState::Authenticating),
        }
    }

    /// The operator's view.
    pub fn status(&self) -> OutboundStatus {
        OutboundStatus {
            state: self.state(),
            peer_node_id: self.peer_node_id,
            peer_sync_tags: self.peer_tags.clone(),
            queued: self.live.len(),
            in_flight: self.in_flight.len(),
            counters: self.counters.clone(),
            last_error: self.last_error.as_ref().map(ToString::to_string),
        }
    }

    /// Why the last session ended or was refused.
    pub fn last_error(&self) -> Option<&LinkError> {
        self.last_error.as_ref()
    }

    /// When the shell must act without being asked: while idle, the time to dial; during the
    /// handshake or with batches in flight, the deadline of [`Outbound::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Millis> {
        match &self.phase {
            Phase::Idle { retry_at } => Some(*retry_at),
            Phase::Hello { deadline, .. } => Some(*deadline),
            Phase::Streaming(_) => self
                .in_flight
                .front()
                .map(|f| f.sent_at.saturating_add(ms(self.limits.ack_timeout))),
            Phase::Connecting | Phase::Closing { .. } => None,
        }
    }

    /// Whether the shell should open the transport now.
    pub fn wants_connection(&mut self, now: Millis) -> bool {
        self.rebase(now);
        matches!(self.phase, Phase::Idle { retry_at } if now >= retry_at)
    }

    /// The shell starts opening the transport.
    pub fn connecting(&mut self, now: Millis) {
        self.rebase(now);
        if let Phase::Idle { .. } = self.phase {
            self.phase = Phase::Connecting;
            self.counters.attempts += 1;
        }
    }

    /// The transport is open: the Hello goes out with `nonce`, fresh random bytes.
    pub fn connected(&mut self, now: Millis, nonce: Nonce) {
        self.rebase(now);
        let ours = HelloFields {
            node_id: self.node_id,
            tags: self.tags.clone(),
            nonce,
        };
        self.handshake.clear();
        self.handshake
            .push_back(message(Out::Hello(ours.to_proto(Vec::new()))));
        self.live.clear();
        self.in_flight.clear();
        self.phase = Phase::Hello {
            ours,
            deadline: now.saturating_add(ms(self.limits.handshake_timeout)),
        };
    }

    /// The transport ended or could not be opened; the link retries after its back-off.
    pub fn closed(&mut self, now: Millis, reason: LinkError) {
        self.rebase(now);
        match self.phase {
            Phase::Idle { .. } => {}
            // The session had already ended for a reason of its own.
            Phase::Closing { retry_at } => self.phase = Phase::Idle { retry_at },
            _ => {
                self.end_session(now, reason);
                if let Phase::Closing { retry_at } = self.phase {
                    self.phase = Phase::Idle { retry_at };
                }
            }
        }
        self.handshake.clear();
    }

    /// A reply from the peer. `caches` provides the resync snapshot once the handshake
    /// succeeds. An error ends the session (the shell learns it from
    /// [`Outbound::poll_transmit`]: the messages still due, then [`Transmit::Close`]).
    pub fn handle_reply(
        &mut self,
        now: Millis,
        reply: proto::SyncReply,
        caches: &CacheSet,
    ) -> Result<(), LinkError> {
        self.rebase(now);
        let result = match (&self.phase, reply.body) {
            (Phase::Idle { .. } | Phase::Closing { .. }, _) => return Ok(()),
            (_, None) => Err(ProtocolError::Empty.into()),
            (Phase::Hello { ours, .. }, Some(Reply::Hello(hello))) => {
                let ours = ours.clone();
                self.on_hello(now, &ours, &hello, caches)
            }
            (Phase::Streaming(_), Some(Reply::Ack(ack))) => self.on_ack(&ack),
            (_, Some(Reply::Hello(_))) => Err(ProtocolError::Unexpected("Hello").into()),
            (_, Some(Reply::Ack(_))) => Err(ProtocolError::Unexpected("Ack").into()),
        };
        if let Err(error) = &result {
            self.end_session(now, error.clone());
        }
        result
    }

    fn on_hello(
        &mut self,
        now: Millis,
        ours: &HelloFields,
        hello: &proto::Hello,
        caches: &CacheSet,
    ) -> Result<(), LinkError> {
        let peer = HelloFields::from_peer(hello, self.node_id)?;
        self.peer_node_id = Some(peer.node_id);
        self.peer_tags = peer.tags.clone();
        let peer_proved = handshake::verify(&self.key, Role::Acceptor, ours, &peer, &hello.proof);
        // Our proof goes out whatever the outcome, so that the peer learns of a key mismatch
        // from its own check rather than from a vanished stream. It is useless to anyone
        // else: it covers our fresh nonce.
        let proof = handshake::proof(&self.key, Role::Dialler, ours, &peer);
        self.handshake
            .push_back(message(Out::Proof(proto::Proof { proof })));
        if !peer_proved {
            return Err(LinkError::AuthFailed);
        }
        match_tags(&self.tags, &peer.tags)?;
        // Changes queued from here on follow the snapshot; one made in between may be sent
        // twice, which last-writer-wins makes harmless.
        let resync = self
            .caches
            .iter()
            .map(|cache| {
                let events: VecDeque<CacheEvent> = caches
                    .get(&cache.policy)
                    .map(|c| c.peer_resync(now))
                    .unwrap_or_default()
                    .into();
                Snapshot {
                    tag: cache.tag.clone(),
                    total: events.len() as u64,
                    events,
                }
            })
            .collect();
        self.counters.sessions += 1;
        self.next_seq = 1;
        self.acked = 0;
        self.verdict = None;
        self.phase = Phase::Streaming(Stream {
            resync,
            last_resync_seq: None,
            synchronised: false,
        });
        Ok(())
    }

    fn on_ack(&mut self, ack: &proto::Ack) -> Result<(), LinkError> {
        match self.in_flight.front() {
            Some(oldest) if oldest.seq == ack.sequence => {}
            _ => return Err(ProtocolError::Ack(ack.sequence).into()),
        }
        self.in_flight.pop_front();
        self.acked = ack.sequence;
        let counters = &mut self.counters;
        counters.batches_acked += 1;
        counters.peer_applied += ack.applied;
        counters.peer_stale += ack.stale;
        counters.peer_refused += ack.refused;
        counters.peer_malformed += ack.malformed;
        self.check_synchronised();
        Ok(())
    }

    fn check_synchronised(&mut self) {
        let Phase::Streaming(stream) = &mut self.phase else {
            return;
        };
        if !stream.synchronised
            && stream
                .last_resync_seq
                .is_some_and(|last| self.acked >= last)
        {
            stream.synchronised = true;
            self.backoff = ms(self.limits.backoff_min);
        }
    }

    /// Ends a handshake or an acknowledgement wait that ran past its deadline.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.rebase(now);
        let expired = match &self.phase {
            Phase::Hello { deadline, .. } if now >= *deadline => {
                Some(LinkError::HandshakeTimeout(self.limits.handshake_timeout))
            }
            Phase::Streaming(_)
                if self.in_flight.front().is_some_and(|f| {
                    now >= f.sent_at.saturating_add(ms(self.limits.ack_timeout))
                }) =>
            {
                Some(LinkError::AckTimeout(self.limits.ack_timeout))
            }
            _ => None,
        };
        if let Some(error) = expired {
            self.end_session(now, error);
        }
    }

    /// Queues live events of the cache tagged `tag` (the drain of local changes). Without an
    /// authenticated session they are dropped: the next session starts with a resync. Returns
    /// whether the shell has something new to poll (events, or a reset after an overflow).
    pub(super) fn queue(&mut self, now: Millis, tag: &str, events: Vec<CacheEvent>) -> bool {
        self.rebase(now);
        if !matches!(self.phase, Phase::Streaming(_)) || events.is_empty() {
            return false;
        }
        if self.live.len() + events.len() > self.limits.queue {
            self.end_session(now, LinkError::QueueOverflow(self.limits.queue));
            return true;
        }
        self.live
            .extend(events.iter().map(|event| wire::event_to_proto(tag, event)));
        true
    }

    /// The next thing to do for the stream.
    pub fn poll_transmit(&mut self, now: Millis) -> Transmit {
        self.rebase(now);
        if let Some(message) = self.handshake.pop_front() {
            return Transmit::Message(message);
        }
        let stream = match &mut self.phase {
            Phase::Closing { retry_at } => {
                self.phase = Phase::Idle {
                    retry_at: *retry_at,
                };
                return Transmit::Close;
            }
            Phase::Streaming(stream) => stream,
            _ => return Transmit::Idle,
        };
        if self.in_flight.len() >= self.limits.window {
            return Transmit::Idle;
        }
        if let Some(snapshot) = stream.resync.front_mut() {
            if snapshot.events.is_empty() {
                let done = proto::SnapshotDone {
                    sync_tag: snapshot.tag.clone(),
                    entries: snapshot.total,
                };
                stream.resync.pop_front();
                if stream.resync.is_empty() {
                    stream.last_resync_seq = Some(self.next_seq - 1);
                    self.check_synchronised();
                }
                return Transmit::Message(message(Out::SnapshotDone(done)));
            }
            let count = snapshot.events.len().min(self.limits.batch);
            let tag = &snapshot.tag;
            let events = snapshot
                .events
                .drain(..count)
                .map(|event| wire::event_to_proto(tag, &event))
                .collect();
            self.counters.resync_events += count as u64;
            return self.batch(now, events);
        }
        if self.live.is_empty() {
            return Transmit::Idle;
        }
        let count = self.live.len().min(self.limits.batch);
        let events = self.live.drain(..count).collect();
        self.counters.events_sent += count as u64;
        self.batch(now, events)
    }

    fn batch(&mut self, now: Millis, events: Vec<proto::CacheEvent>) -> Transmit {
        let sequence = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push_back(InFlight {
            seq: sequence,
            sent_at: now,
        });
        Transmit::Message(message(Out::Events(proto::EventBatch { events, sequence })))
    }

    /// Ends the session: records why, and schedules the retry after the back-off.
    fn end_session(&mut self, now: Millis, error: LinkError) {
        self.verdict = match &error {
            LinkError::AuthFailed => {
                self.counters.auth_failures += 1;
                Some(Verdict::AuthFailed)
            }
            LinkError::TagMismatch { .. } => {
                self.counters.tag_mismatches += 1;
                Some(Verdict::TagMismatch)
            }
            LinkError::QueueOverflow(_) => {
                self.counters.overflows += 1;
                None
            }
            LinkError::Protocol(_) => {
                self.counters.protocol_errors += 1;
                None
            }
            _ => None,
        };
        self.last_error = Some(error);
        self.live.clear();
        self.in_flight.clear();
        let retry_at = now.saturating_add(self.backoff);
        self.backoff = self
            .backoff
            .saturating_mul(2)
            .min(ms(self.limits.backoff_max));
        self.phase = Phase::Closing { retry_at };
    }

    fn rebase(&mut self, now: Millis) {
        let back = self.clock.observe(now);
        if back == 0 {
            return;
        }
        match &mut self.phase {
            Phase::Idle { retry_at } | Phase::Closing { retry_at } => {
                *retry_at = retry_at.saturating_sub(back)
            }
            Phase::Hello { deadline, .. } => *deadline = deadline.saturating_sub(back),
            Phase::Streaming(_) | Phase::Connecting => {}
        }
        for batch in &mut self.in_flight {
            batch.sent_at = batch.sent_at.saturating_sub(back);
        }
    }
}

fn message(body: Out) -> proto::SyncMessage {
    proto::SyncMessage { body: Some(body) }
}
