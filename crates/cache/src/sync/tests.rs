//! The link state machine without sockets: two nodes whose messages are moved by hand.

use std::net::IpAddr;

use super::*;
use crate::CacheEvent;
use crate::{CacheConfig, CacheSet};

const T0: Millis = 1_700_000_000_000;
const A: &str = "127.0.0.1";
const B: &str = "127.0.0.2";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// One node: its caches (policy `p`, replicated with the peer under `tag`) and its links.
struct Node {
    caches: CacheSet,
    sync: SyncNode,
    nonces: u8,
}

impl Node {
    fn new(node_id: u32, peer: &str, tag: &str, key: &[u8], limits: SyncLimits) -> Node {
        let mut caches = CacheSet::new(1 << 20, node_id);
        let config = CacheConfig {
            mcs_peer: Some(crate::McsPeer {
                address: ip(peer),
                sync_tag: tag.into(),
            }),
            ..CacheConfig::default()
        };
        caches.configure("p", config).unwrap().record_changes(true);
        let sync = SyncNode::new(SyncConfig {
            node_id,
            key: SyncKey::new(key).unwrap(),
            peers: vec![PeerSpec {
                address: ip(peer),
                caches: vec![SyncedCache {
                    tag: tag.into(),
                    policy: "p".into(),
                }],
            }],
            limits,
        })
        .unwrap();
        Node {
            caches,
            sync,
            nonces: node_id as u8,
        }
    }

    fn peer(&self) -> PeerId {
        self.sync.peers().next().unwrap().0
    }

    fn out(&mut self) -> &mut Outbound {
        let peer = self.peer();
        self.sync.outbound(peer)
    }

    fn inb(&mut self) -> &mut Inbound {
        let peer = self.peer();
        self.sync.inbound(peer)
    }

    fn reply(&mut self, now: Millis, reply: proto::SyncReply) -> Result<(), LinkError> {
        let peer = self.peer();
        self.sync
            .outbound(peer)
            .handle_reply(now, reply, &self.caches)
    }

    fn receive(
        &mut self,
        now: Millis,
        id: SessionId,
        message: proto::SyncMessage,
    ) -> Result<Option<proto::SyncReply>, LinkError> {
        let peer = self.peer();
        self.sync
            .inbound(peer)
            .handle_message(now, id, message, &mut self.caches)
    }

    /// Opens the outbound transport with `nonce`; returns the Hello it sends first.
    fn dial(&mut self, now: Millis, nonce: Nonce) -> proto::SyncMessage {
        self.out().connecting(now);
        self.out().connected(now, nonce);
        match self.out().poll_transmit(now) {
            Transmit::Message(hello) => hello,
            other => panic!("the Hello comes first, not {other:?}"),
        }
    }

    fn nonce(&mut self) -> Nonce {
        self.nonces = self.nonces.wrapping_add(16);
        [self.nonces; NONCE_LEN]
    }

    fn save(&mut self, key: &[u8], value: &[u8], now: Millis) {
        self.caches
            .get_mut("p")
            .unwrap()
            .save(key, value, now)
            .unwrap();
    }

    /// What the drain thread does: local changes to the link.
    fn drain(&mut self, now: Millis) {
        let cache = self.caches.get_mut("p").unwrap();
        let events: Vec<CacheEvent> = cache
            .drain_changes()
            .iter()
            .filter_map(|change| cache.peer_event(change, now))
            .collect();
        self.sync.queue(now, "p", events);
    }

    fn keys(&self, now: Millis) -> Vec<Vec<u8>> {
        self.caches
            .get("p")
            .unwrap()
            .entries(now)
            .into_iter()
            .map(|e| e.key.to_vec())
            .collect()
    }
}

/// What crossed from the dialler to the acceptor.
#[derive(Debug, Default)]
struct Wire {
    hellos: usize,
    proofs: usize,
    batches: Vec<u64>,
    events: usize,
    snapshots_done: usize,
    closed: bool,
    /// The acceptor ended the stream with this error.
    refused: Option<LinkError>,
}

/// Dials from `from` to `to` (the acceptor sees the stream from `from_address`) and moves
/// messages both ways until neither side has anything left to say.
fn session(from: &mut Node, to: &mut Node, from_address: &str, now: Millis) -> (Wire, SessionId) {
    assert!(from.out().wants_connection(now));
    let nonce = from.nonce();
    let hello = from.dial(now, nonce);
    let mut wire = Wire::default();
    wire.hellos += 1;
    let peer = to.sync.admit(ip(from_address)).unwrap();
    let nonce = to.nonce();
    let (id, reply) = to.sync.inbound(peer).open(now, nonce, hello).unwrap();
    let _ = from.reply(now, reply);
    pump(from, to, id, now, &mut wire);
    (wire, id)
}

/// Moves the dialler's messages to the acceptor and the acks back.
fn pump(from: &mut Node, to: &mut Node, id: SessionId, now: Millis, wire: &mut Wire) {
    loop {
        match from.out().poll_transmit(now) {
            Transmit::Message(message) => {
                match &message.body {
                    Some(proto::sync_message::Body::Hello(_)) => wire.hellos += 1,
                    Some(proto::sync_message::Body::Proof(_)) => wire.proofs += 1,
                    Some(proto::sync_message::Body::Events(batch)) => {
                        wire.batches.push(batch.sequence);
                        wire.events += batch.events.len();
                    }
                    Some(proto::sync_message::Body::SnapshotDone(_)) => wire.snapshots_done += 1,
                    None => {}
                }
                match to.receive(now, id, message) {
                    Ok(Some(ack)) => from.reply(now, ack).unwrap(),
                    Ok(None) => {}
                    Err(error) => {
                        wire.refused = Some(error);
                        from.out().closed(now, LinkError::PeerClosed);
                        return;
                    }
                }
            }
            Transmit::Close => {
                wire.closed = true;
                to.inb().closed(now, id, LinkError::PeerClosed);
                return;
            }
            Transmit::Idle => return,
        }
    }
}

fn pair(tag_a: &str, tag_b: &str, key_a: &[u8], key_b: &[u8]) -> (Node, Node) {
    (
        Node::new(1, B, tag_a, key_a, SyncLimits::default()),
        Node::new(2, A, tag_b, key_b, SyncLimits::default()),
    )
}

#[test]
fn hello_exchange_resync_live_events_and_acks() {
    let (mut a, mut b) = pair("bng-pair", "bng-pair", b"secret", b"secret");
    a.save(b"alice", b"1", T0);
    a.save(b"bob", b"2", T0);
    a.drain(T0);
    assert_eq!(a.out().state(), LinkState::Down);

    let (wire, id) = session(&mut a, &mut b, A, T0);
    assert_eq!((wire.hellos, wire.proofs), (1, 1));
    assert_eq!(
        wire.batches,
        vec![1],
        "the resync of two entries is one batch"
    );
    assert_eq!(wire.events, 2);
    assert_eq!(wire.snapshots_done, 1);
    assert_eq!(a.out().state(), LinkState::Synchronised);
    assert_eq!(b.inb().state(), LinkState::Synchronised);
    assert_eq!(b.keys(T0), vec![b"alice".to_vec(), b"bob".to_vec()]);
    let status = a.out().status();
    assert_eq!(status.peer_node_id, Some(2));
    assert_eq!(status.counters.resync_events, 2);
    assert_eq!(status.counters.peer_applied, 2);
    assert_eq!(status.counters.batches_acked, 1);

    // Live events: a save and a clear, one batch, acknowledged.
    a.save(b"carol", b"3", T0 + 1);
    a.caches.get_mut("p").unwrap().clear(b"alice", T0 + 1);
    a.drain(T0 + 1);
    assert_eq!(a.out().status().queued, 2);
    let mut wire = Wire::default();
    pump(&mut a, &mut b, id, T0 + 1, &mut wire);
    assert_eq!(wire.batches, vec![2]);
    assert_eq!(b.keys(T0 + 1), vec![b"bob".to_vec(), b"carol".to_vec()]);
    let status = a.out().status();
    assert_eq!((status.queued, status.in_flight), (0, 0));
    assert_eq!(status.counters.events_sent, 2);
    assert_eq!(status.counters.peer_applied, 4);
    assert_eq!(b.inb().status().counters.applied, 4);
    // Peer-applied changes are never echoed back.
    b.drain(T0 + 1);
    assert_eq!(b.out().status().queued, 0);
}

#[test]
fn batches_stay_within_the_window_until_acknowledged() {
    let limits = SyncLimits {
        batch: 2,
        window: 2,
        ..SyncLimits::default()
    };
    let mut a = Node::new(1, B, "t", b"k", limits.clone());
    let mut b = Node::new(2, A, "t", b"k", limits);
    for i in 0..9u8 {
        a.save(&[b'k', i], b"v", T0);
    }
    let hello = a.dial(T0, [7; NONCE_LEN]);
    let peer = b.sync.admit(ip(A)).unwrap();
    let (id, reply) = b
        .sync
        .inbound(peer)
        .open(T0, [9; NONCE_LEN], hello)
        .unwrap();
    a.reply(T0, reply).unwrap();
    let mut sent = Vec::new();
    loop {
        match a.out().poll_transmit(T0) {
            Transmit::Message(m) => sent.push(m),
            Transmit::Idle => break,
            Transmit::Close => panic!("closed"),
        }
    }
    // Proof, then two batches of two: the window is full.
    assert_eq!(sent.len(), 3);
    assert_eq!(a.out().status().in_flight, 2);
    let mut acks = Vec::new();
    for message in sent {
        if let Some(ack) = b.receive(T0, id, message).unwrap() {
            acks.push(ack);
        }
    }
    assert_eq!(acks.len(), 2);
    a.reply(T0, acks.remove(0)).unwrap();
    assert_eq!(a.out().status().in_flight, 1);
    // The window has room for one more batch now.
    assert!(matches!(a.out().poll_transmit(T0), Transmit::Message(_)));
    assert!(matches!(a.out().poll_transmit(T0), Transmit::Idle));
    // An acknowledgement of a batch that is not the oldest in flight (2 is) breaks the protocol.
    let error = a
        .reply(
            T0,
            proto::SyncReply {
                body: Some(proto::sync_reply::Body::Ack(proto::Ack {
                    sequence: 3,
                    ..proto::Ack::default()
                })),
            },
        )
        .unwrap_err();
    assert_eq!(error, LinkError::Protocol(ProtocolError::Ack(3)));
    assert_eq!(a.out().poll_transmit(T0), Transmit::Close);
    assert_eq!(a.out().status().counters.protocol_errors, 1);
}

#[test]
fn differing_sync_tags_send_nothing_and_show_tag_mismatch_on_both_sides() {
    let (mut a, mut b) = pair("bng-pair", "bng-pear", b"secret", b"secret");
    a.save(b"alice", b"the value must not cross", T0);
    a.drain(T0);
    let (wire, _) = session(&mut a, &mut b, A, T0);
    assert_eq!((wire.hellos, wire.proofs), (1, 1));
    assert!(wire.batches.is_empty(), "no event crosses: {wire:?}");
    assert_eq!(wire.snapshots_done, 0);
    assert!(b.keys(T0).is_empty());
    assert_eq!(a.out().state(), LinkState::TagMismatch);
    assert_eq!(b.inb().state(), LinkState::TagMismatch);
    let expected = LinkError::TagMismatch {
        local_only: vec!["bng-pair".into()],
        peer_only: vec!["bng-pear".into()],
    };
    assert_eq!(a.out().last_error(), Some(&expected));
    assert!(matches!(wire.refused, Some(LinkError::TagMismatch { .. })));
    assert_eq!(a.out().status().counters.tag_mismatches, 1);
    assert_eq!(b.inb().status().counters.tag_mismatches, 1);
    assert_eq!(
        a.out().status().peer_sync_tags,
        vec!["bng-pear".to_string()]
    );
    // Changes made meanwhile are not queued for a link without a session.
    a.save(b"bob", b"x", T0 + 1);
    a.drain(T0 + 1);
    assert_eq!(a.out().status().queued, 0);

    // The retry comes after the back-off, and shows the refusal while it runs.
    assert!(!a.out().wants_connection(T0 + 1));
    let retry = a.out().poll_timeout().unwrap();
    a.out().connecting(retry);
    assert_eq!(a.out().state(), LinkState::TagMismatch);
    a.out()
        .closed(retry, LinkError::Connect("connection refused".into()));
    assert_eq!(
        a.out().state(),
        LinkState::Down,
        "a peer that is down is down"
    );
}

#[test]
fn a_wrong_key_is_refused_on_both_sides_and_nothing_crosses() {
    let (mut a, mut b) = pair("bng-pair", "bng-pair", b"right key", b"wrong key");
    a.save(b"alice", b"secret value", T0);
    let (wire, _) = session(&mut a, &mut b, A, T0);
    assert!(wire.batches.is_empty(), "{wire:?}");
    assert!(b.keys(T0).is_empty());
    assert_eq!(a.out().state(), LinkState::AuthFailed);
    assert_eq!(b.inb().state(), LinkState::AuthFailed);
    assert_eq!(a.out().last_error(), Some(&LinkError::AuthFailed));
    assert_eq!(wire.refused, Some(LinkError::AuthFailed));
    assert_eq!(a.out().status().counters.auth_failures, 1);
    assert_eq!(b.inb().status().counters.auth_failures, 1);
    assert_eq!(a.out().status().counters.sessions, 0);
}

#[test]
fn a_proof_is_bound_to_its_session() {
    let (mut a, mut b) = pair("t", "t", b"k", b"k");
    // A genuine handshake, recorded.
    let hello = a.dial(T0, [1; NONCE_LEN]);
    let peer = b.sync.admit(ip(A)).unwrap();
    let (_, reply) = b
        .sync
        .inbound(peer)
        .open(T0, [2; NONCE_LEN], hello.clone())
        .unwrap();
    a.reply(T0, reply).unwrap();
    let Transmit::Message(recorded_proof) = a.out().poll_transmit(T0) else {
        panic!()
    };
    // Replayed against a new stream (the acceptor draws a new nonce), it fails.
    let (replay, _) = b
        .sync
        .inbound(peer)
        .open(T0, [3; NONCE_LEN], hello)
        .unwrap();
    let error = b.receive(T0, replay, recorded_proof).unwrap_err();
    assert_eq!(error, LinkError::AuthFailed);
}

#[test]
fn an_altered_tag_list_fails_the_proof() {
    let (mut a, mut b) = pair("t", "t", b"k", b"k");
    let hello = a.dial(T0, [1; NONCE_LEN]);
    let peer = b.sync.admit(ip(A)).unwrap();
    let (_, mut reply) = b
        .sync
        .inbound(peer)
        .open(T0, [2; NONCE_LEN], hello)
        .unwrap();
    if let Some(proto::sync_reply::Body::Hello(hello)) = &mut reply.body {
        hello.sync_tags = vec!["other".into()];
    }
    assert_eq!(a.reply(T0, reply), Err(LinkError::AuthFailed));
}

#[test]
fn a_queue_overflow_resets_the_session_and_the_next_resync_carries_everything() {
    let limits = SyncLimits {
        queue: 3,
        ..SyncLimits::default()
    };
    let mut a = Node::new(1, B, "t", b"k", limits.clone());
    let mut b = Node::new(2, A, "t", b"k", limits);
    let (_, _) = session(&mut a, &mut b, A, T0);
    assert_eq!(a.out().state(), LinkState::Synchronised);
    for i in 0..4u8 {
        a.save(&[b'k', i], b"v", T0 + 1);
    }
    a.drain(T0 + 1);
    assert_eq!(a.out().poll_transmit(T0 + 1), Transmit::Close);
    assert_eq!(a.out().state(), LinkState::Down);
    assert_eq!(a.out().last_error(), Some(&LinkError::QueueOverflow(3)));
    assert_eq!(a.out().status().counters.overflows, 1);
    assert!(b.keys(T0 + 1).is_empty());

    let retry = a.out().poll_timeout().unwrap();
    assert!(retry > T0 + 1);
    let (wire, _) = session(&mut a, &mut b, A, retry);
    assert_eq!(wire.events, 4);
    assert_eq!(b.keys(retry).len(), 4);
    assert_eq!(a.out().state(), LinkState::Synchronised);
    assert_eq!(a.out().status().counters.sessions, 2);
}

#[test]
fn streams_from_unknown_addresses_are_refused_and_counted() {
    let (_, mut b) = pair("t", "t", b"k", b"k");
    assert_eq!(
        b.sync.admit(ip("127.0.0.3")),
        Err(LinkError::UnknownPeer(ip("127.0.0.3")))
    );
    // A v4-mapped IPv6 source is the IPv4 peer.
    assert!(b.sync.admit(ip("::ffff:127.0.0.1")).is_ok());
    let status = b.sync.status();
    assert_eq!(status.unknown_peer_streams, 1);
    assert_eq!(status.last_unknown_peer, Some(ip("127.0.0.3")));
}

#[test]
fn hellos_with_another_version_the_same_node_id_or_a_bad_nonce_are_refused() {
    let (_, mut b) = pair("t", "t", b"k", b"k");
    let hello = |node_id, nonce: Vec<u8>, version| proto::SyncMessage {
        body: Some(proto::sync_message::Body::Hello(proto::Hello {
            node_id,
            sync_tags: vec!["t".into()],
            nonce,
            proof: Vec::new(),
            protocol_version: version,
        })),
    };
    let nonce = vec![5; NONCE_LEN];
    let cases = [
        (
            hello(1, nonce.clone(), 0),
            LinkError::Version { peer: 0, ours: 1 },
        ),
        (hello(2, nonce.clone(), 1), LinkError::SameNodeId(2)),
        (
            hello(1, vec![5; 8], 1),
            LinkError::Protocol(ProtocolError::Nonce(8)),
        ),
        (
            proto::SyncMessage { body: None },
            LinkError::Protocol(ProtocolError::Empty),
        ),
    ];
    for (message, expected) in cases {
        assert_eq!(
            b.inb().open(T0, [0; NONCE_LEN], message).unwrap_err(),
            expected
        );
    }
    assert_eq!(b.inb().status().counters.refused, 4);
    assert_eq!(b.inb().state(), LinkState::Down);
}

#[test]
fn events_before_the_proof_are_a_protocol_violation() {
    let (mut a, mut b) = pair("t", "t", b"k", b"k");
    let hello = a.dial(T0, [1; NONCE_LEN]);
    let (id, _) = b.inb().open(T0, [2; NONCE_LEN], hello).unwrap();
    let batch = proto::SyncMessage {
        body: Some(proto::sync_message::Body::Events(proto::EventBatch {
            events: vec![wire::event_to_proto(
                "t",
                &CacheEvent::Clear {
                    key: b"k".to_vec(),
                    version: crate::Version::default(),
                },
            )],
            sequence: 1,
        })),
    };
    assert_eq!(
        b.receive(T0, id, batch),
        Err(LinkError::Protocol(ProtocolError::Unexpected("EventBatch")))
    );
    assert_eq!(b.inb().status().counters.protocol_errors, 1);
    assert!(!b.inb().is_open(id));
}

#[test]
fn a_newer_stream_supersedes_the_older_one() {
    let (mut a, mut b) = pair("t", "t", b"k", b"k");
    let (_, old) = session(&mut a, &mut b, A, T0);
    a.out().closed(T0, LinkError::Transport("reset".into()));
    let retry = a.out().poll_timeout().unwrap();
    let (_, new) = session(&mut a, &mut b, A, retry);
    assert_ne!(old, new);
    assert!(!b.inb().is_open(old));
    assert_eq!(
        b.receive(retry, old, proto::SyncMessage { body: None }),
        Err(LinkError::Superseded)
    );
    assert_eq!(b.inb().state(), LinkState::Synchronised);
}

#[test]
fn a_stream_that_cannot_prove_the_key_does_not_interrupt_the_authenticated_one() {
    let (mut a, mut b) = pair("t", "t", b"k", b"k");
    let (_, id) = session(&mut a, &mut b, A, T0);
    // Something else at a's address, without the key, opens a stream to b.
    let mut intruder = Node::new(1, B, "t", b"guess", SyncLimits::default());
    let (wire, intruding) = session(&mut intruder, &mut b, A, T0);
    assert_eq!(wire.batches, Vec::<u64>::new());
    assert!(!b.inb().is_open(intruding));
    assert_eq!(b.inb().status().counters.auth_failures, 1);
    // The genuine stream goes on.
    assert!(b.inb().is_open(id));
    assert_eq!(b.inb().state(), LinkState::Synchronised);
    a.save(b"alice", b"1", T0 + 1);
    a.drain(T0 + 1);
    let mut wire = Wire::default();
    pump(&mut a, &mut b, id, T0 + 1, &mut wire);
    assert_eq!(wire.batches, vec![1]);
    assert_eq!(b.keys(T0 + 1), vec![b"alice".to_vec()]);
}

#[test]
fn handshake_and_ack_timeouts_end_the_session() {
    let (mut a, mut b) = pair("t", "t", b"k", b"k");
    let limits = SyncLimits::default();
    a.out().connecting(T0);
    a.out().connected(T0, [1; NONCE_LEN]);
    let deadline = a.out().poll_timeout().unwrap();
    assert_eq!(deadline, T0 + ms(limits.handshake_timeout));
    a.out().handle_timeout(deadline - 1);
    assert_eq!(a.out().state(), LinkState::Authenticating);
    a.out().handle_timeout(deadline);
    assert_eq!(
        a.out().last_error(),
        Some(&LinkError::HandshakeTimeout(limits.handshake_timeout))
    );

    // An acceptor whose dialler never proves itself drops the stream at its deadline.
    let (_, _) = b
        .inb()
        .open(
            T0,
            [2; NONCE_LEN],
            proto::SyncMessage {
                body: Some(proto::sync_message::Body::Hello(proto::Hello {
                    node_id: 1,
                    sync_tags: vec!["t".into()],
                    nonce: vec![1; NONCE_LEN],
                    proof: Vec::new(),
                    protocol_version: PROTOCOL_VERSION,
                })),
            },
        )
        .unwrap();
    let deadline = b.inb().poll_timeout().unwrap();
    b.inb().handle_timeout(deadline);
    assert_eq!(b.inb().state(), LinkState::Down);

    // A batch that is never acknowledged.
    let (mut a, mut b) = pair("t", "t", b"k", b"k");
    session(&mut a, &mut b, A, T0);
    a.save(b"x", b"y", T0);
    a.drain(T0);
    assert!(matches!(a.out().poll_transmit(T0), Transmit::Message(_)));
    let deadline = a.out().poll_timeout().unwrap();
    assert_eq!(deadline, T0 + ms(limits.ack_timeout));
    a.out().handle_timeout(deadline);
    assert_eq!(a.out().poll_transmit(deadline), Transmit::Close);
    assert_eq!(
        a.out().last_error(),
        Some(&LinkError::AckTimeout(limits.ack_timeout))
    );
}

#[test]
fn a_clock_step_backwards_moves_the_deadlines_with_it() {
    let (mut a, _) = pair("t", "t", b"k", b"k");
    a.out().connecting(T0);
    a.out().closed(T0, LinkError::Connect("refused".into()));
    let retry = a.out().poll_timeout().unwrap();
    let wait = retry - T0;
    // The wall clock goes back an hour: the retry is still `wait` away, not an hour more.
    let stepped = T0 - 3_600_000;
    assert!(!a.out().wants_connection(stepped));
    assert_eq!(a.out().poll_timeout(), Some(stepped + wait));
    assert!(a.out().wants_connection(stepped + wait));
}

#[test]
fn the_back_off_doubles_up_to_its_limit_and_resets_once_synchronised() {
    let (mut a, mut b) = pair("t", "t", b"k", b"k");
    let limits = SyncLimits::default();
    let mut now = T0;
    let mut waits = Vec::new();
    for _ in 0..7 {
        a.out().connecting(now);
        a.out().closed(now, LinkError::Connect("refused".into()));
        let retry = a.out().poll_timeout().unwrap();
        waits.push(retry - now);
        now = retry;
    }
    assert_eq!(waits, vec![200, 400, 800, 1600, 3200, 5000, 5000]);
    session(&mut a, &mut b, A, now);
    a.out().closed(now, LinkError::PeerClosed);
    assert_eq!(a.out().poll_timeout(), Some(now + ms(limits.backoff_min)));
}

#[test]
fn configs_that_cannot_work_are_refused() {
    let key = SyncKey::new(b"k").unwrap();
    let peer = |address: &str, tags: &[&str]| PeerSpec {
        address: ip(address),
        caches: tags
            .iter()
            .enumerate()
            .map(|(i, tag)| SyncedCache {
                tag: (*tag).into(),
                policy: format!("p{i}"),
            })
            .collect(),
    };
    let build = |peers, limits| {
        SyncNode::new(SyncConfig {
            node_id: 1,
            key: key.clone(),
            peers,
            limits,
        })
        .map(|_| ())
    };
    let limits = SyncLimits::default();
    assert_eq!(SyncKey::new(b"").unwrap_err(), SyncConfigError::EmptyKey);
    assert_eq!(
        build(
            vec![peer(B, &["t"]), peer("::ffff:127.0.0.2", &["u"])],
            limits.clone()
        ),
        Err(SyncConfigError::DuplicatePeer(ip(B)))
    );
    assert_eq!(
        build(vec![peer(B, &["t", "t"])], limits.clone()),
        Err(SyncConfigError::DuplicateTag {
            peer: ip(B),
            tag: "t".into()
        })
    );
    assert_eq!(
        build(vec![peer(B, &[&"x".repeat(33)])], limits.clone()),
        Err(SyncConfigError::SyncTag("x".repeat(33)))
    );
    assert_eq!(
        build(
            vec![peer(B, &["t"])],
            SyncLimits {
                window: 0,
                ..limits
            }
        ),
        Err(SyncConfigError::ZeroLimit("window"))
    );
    assert_eq!(format!("{key:?}"), "SyncKey(..)");
}

#[test]
fn states_have_the_names_operators_see() {
    let names: Vec<&str> = LinkState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "down",
            "connecting",
            "authenticating",
            "resyncing",
            "synchronised",
            "tag-mismatch",
            "auth-failed"
        ]
    );
    for state in LinkState::ALL {
        assert_eq!(
            serde_json::to_string(&state).unwrap(),
            format!("\"{state}\"")
        );
    }
}
