//! The stateful CAFE (§6.3.2.4, §6.3.4): a content state table filled by Configure messages
//! from the local CRME, and the content forwarding engine that copies each chunk to the next
//! hops of its content ID.
//!
//! Sans-IO: [`Cafe::handle`] takes a received datagram and says where to forward it (the shell
//! copies the datagram, rewrites its sender field and sends it); control messages it produces
//! (Announce, Notify) wait in [`Cafe::poll_transmit`], log-worthy happenings in
//! [`Cafe::poll_event`].

use crate::wire::{self, ContentPacket, Message, Neighbour, NO_ENDPOINT};
use crate::Transmit;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// How a CAFE is started: `usr.curling.Cafe myport myCRMEaddr myCRMEport nInterDLink <…>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CafeConfig {
    /// This CAFE's address and port.
    pub me: SocketAddrV4,
    /// The local CRME.
    pub crme: SocketAddrV4,
    /// Inter-domain links: neighbour CAFE and its CRME.
    pub neighbours: Vec<Neighbour>,
    /// How often the Announce is repeated (the CRME may start after the CAFE).
    pub announce_interval: Duration,
}

/// Next hops kept inline for the usual one or two, spilled to the heap beyond that, so that a
/// state stays small (the table must hold a million of them).
#[derive(Debug, Clone)]
struct Hops {
    inline: [SocketAddrV4; 2],
    len: u8,
    // A thin pointer (8 bytes) rather than a Vec (24): spilled lists are rare, states are not.
    #[allow(clippy::box_collection)]
    spill: Option<Box<Vec<SocketAddrV4>>>,
}

impl Default for Hops {
    fn default() -> Self {
        Self {
            inline: [NO_ENDPOINT; 2],
            len: 0,
            spill: None,
        }
    }
}

impl Hops {
    fn as_slice(&self) -> &[SocketAddrV4] {
        match &self.spill {
            Some(spill) => spill,
            None => &self.inline[..usize::from(self.len)],
        }
    }

    fn contains(&self, hop: SocketAddrV4) -> bool {
        self.as_slice().contains(&hop)
    }

    /// Adds `hop` unless present; false when it was already there.
    fn insert(&mut self, hop: SocketAddrV4) -> bool {
        if self.contains(hop) {
            return false;
        }
        if let Some(spill) = &mut self.spill {
            spill.push(hop);
        } else if usize::from(self.len) < self.inline.len() {
            self.inline[usize::from(self.len)] = hop;
            self.len += 1;
        } else {
            let mut spill = self.inline.to_vec();
            spill.push(hop);
            self.spill = Some(Box::new(spill));
        }
        true
    }

    /// Removes `hop`; false when it was not there.
    fn remove(&mut self, hop: SocketAddrV4) -> bool {
        if let Some(spill) = &mut self.spill {
            let before = spill.len();
            spill.retain(|h| *h != hop);
            let removed = spill.len() != before;
            if spill.len() <= self.inline.len() {
                let hops = std::mem::take(&mut **spill);
                self.spill = None;
                self.len = 0;
                for h in hops {
                    self.inline[usize::from(self.len)] = h;
                    self.len += 1;
                }
            }
            return removed;
        }
        let len = usize::from(self.len);
        match self.inline[..len].iter().position(|h| *h == hop) {
            Some(at) => {
                self.inline.copy_within(at + 1..len, at);
                self.len -= 1;
                true
            }
            None => false,
        }
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
}

/// One row of the content state table (§6.3.4.2).
#[derive(Debug, Clone, Default)]
struct ContentState {
    /// Next hops (`numNextHops`, `<NextHopCAFEaddr, NextHopCAFEport>`).
    next_hops: Hops,
    /// Previous hops the content has arrived from; the notify flag of §6.3.4 is "this previous
    /// hop is in the list".
    seen_from: Hops,
    /// `PrevHopCAFEaddr`, from the Configure or the first chunk.
    prev_hop: Option<SocketAddrV4>,
}

/// A row of the content state table as shown to operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StateRow {
    /// The content ID.
    pub content_id: String,
    /// The previous-hop CAFE, when known.
    pub prev_hop: Option<SocketAddrV4>,
    /// The next hops.
    pub next_hops: Vec<SocketAddrV4>,
}

/// What the CAFE counted since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CafeCounters {
    /// Datagrams handled.
    pub datagrams: u64,
    /// Datagrams that failed to parse (dropped).
    pub malformed: u64,
    /// Content chunks received.
    pub chunks_received: u64,
    /// Chunk copies sent to next hops.
    pub chunks_forwarded: u64,
    /// Chunks dropped because no state exists for their content ID.
    pub unknown_content: u64,
    /// Configures applied.
    pub configures: u64,
    /// Configures dropped: not from the local CRME or addressed to another CAFE.
    pub configure_not_local: u64,
    /// Notify (create) messages sent.
    pub notifies: u64,
    /// Notify (teardown) messages sent.
    pub teardowns: u64,
    /// Well-formed messages a CAFE does not accept (Consume, Publish, …), dropped.
    pub unexpected: u64,
}

/// Log-worthy happenings, drained with [`Cafe::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CafeEvent {
    /// The first chunk of `content_id` from `from` arrived and goes to `next_hops` (§6.4.2:
    /// "CAFE 5.3: Content MyContent1 received and will be sent to 5.2:2000").
    ContentReceived {
        /// The content.
        content_id: String,
        /// The previous hop.
        from: SocketAddrV4,
        /// Where it is forwarded.
        next_hops: Vec<SocketAddrV4>,
    },
    /// A Configure changed the table.
    Configured {
        /// The content.
        content_id: String,
        /// The next hop added or removed.
        next_hop: SocketAddrV4,
        /// It was removed.
        removed: bool,
    },
}

/// The outcome of [`Cafe::handle`].
#[derive(Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// A content chunk: send a copy (with the sender rewritten to this CAFE) to each hop.
    Forward(&'a [SocketAddrV4]),
    /// A control message, handled; nothing to forward.
    Handled,
    /// Dropped (and counted).
    Dropped,
}

/// A stateful CAFE.
#[derive(Debug)]
pub struct Cafe {
    config: CafeConfig,
    table: HashMap<Box<[u8]>, ContentState, foldhash::fast::RandomState>,
    counters: CafeCounters,
    outbox: VecDeque<Transmit>,
    events: VecDeque<CafeEvent>,
    next_announce: Option<Instant>,
}

impl Cafe {
    /// A CAFE with an empty content state table.
    pub fn new(config: CafeConfig) -> Self {
        Self {
            config,
            table: HashMap::default(),
            counters: CafeCounters::default(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            next_announce: None,
        }
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &CafeConfig {
        &self.config
    }

    /// Makes room for `additional` more states without rehashing.
    pub fn reserve(&mut self, additional: usize) {
        self.table.reserve(additional);
    }

    /// `sendAnnounce()`: queues an Announce to the local CRME.
    pub fn send_announce(&mut self) {
        let message = Message::Announce(wire::Announce {
            cafe: self.config.me,
            neighbours: wire::Items::Slice(&self.config.neighbours),
        });
        if let Ok(payload) = message.to_vec() {
            self.outbox.push_back(Transmit {
                to: self.config.crme,
                payload,
            });
        }
    }

    /// Timer work: repeats the Announce every `announce_interval`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_announce.is_none_or(|at| now >= at) {
            self.send_announce();
            self.next_announce = Some(now + self.config.announce_interval);
        }
    }

    /// When [`Cafe::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_announce
    }

    /// Handles one received datagram from `from`.
    pub fn handle(&mut self, from: SocketAddrV4, bytes: &[u8]) -> Action<'_> {
        self.counters.datagrams += 1;
        if bytes.get(2) == Some(&(wire::MessageType::Content as u8)) {
            return match ContentPacket::new_checked(bytes) {
                Ok(packet) => self.process_content(from, &packet),
                Err(_) => {
                    self.counters.malformed += 1;
                    Action::Dropped
                }
            };
        }
        match Message::parse(bytes) {
            Ok(Message::Configure(configure)) => {
                self.process_configure(from, &configure);
                Action::Handled
            }
            Ok(_) => {
                self.counters.unexpected += 1;
                Action::Dropped
            }
            Err(_) => {
                self.counters.malformed += 1;
                Action::Dropped
            }
        }
    }

    /// `processConfigure(pkt)`: installs or removes one next hop, if the Configure comes from
    /// the local CRME and names this CAFE.
    pub fn process_configure(&mut self, from: SocketAddrV4, configure: &wire::Configure<'_>) {
        if from != self.config.crme || configure.cafe != self.config.me {
            self.counters.configure_not_local += 1;
            return;
        }
        self.counters.configures += 1;
        let key = configure.content_id.as_bytes();
        if configure.remove {
            let Some(state) = self.table.get_mut(key) else {
                return;
            };
            if state.next_hops.remove(configure.next_hop) {
                self.events.push_back(CafeEvent::Configured {
                    content_id: configure.content_id.to_string(),
                    next_hop: configure.next_hop,
                    removed: true,
                });
            }
            if state.next_hops.is_empty() {
                self.table.remove(key);
            }
            return;
        }
        let state = match self.table.get_mut(key) {
            Some(state) => state,
            None => self.table.entry(key.into()).or_default(),
        };
        if configure.prev_hop.is_some() {
            state.prev_hop = configure.prev_hop;
        }
        if state.next_hops.insert(configure.next_hop) {
            self.events.push_back(CafeEvent::Configured {
                content_id: configure.content_id.to_string(),
                next_hop: configure.next_hop,
                removed: false,
            });
        }
    }

    /// `processContent(pkt)`: looks the content ID up, notifies the CRME of a new flow through
    /// an ingress CAFE (once per content ID and previous hop), and returns the next hops.
    pub fn process_content(
        &mut self,
        from: SocketAddrV4,
        packet: &ContentPacket<&[u8]>,
    ) -> Action<'_> {
        self.counters.chunks_received += 1;
        let Some(state) = self.table.get_mut(packet.content_id_bytes()) else {
            self.counters.unknown_content += 1;
            return Action::Dropped;
        };
        let neighbours = &self.config.neighbours;
        // An ingress CAFE receives the flow from another domain (or directly from the server).
        let is_ingress = |source| from == source || neighbours.iter().any(|n| n.cafe == from);
        if !state.seen_from.contains(from) {
            let source = packet.source();
            state.seen_from.insert(from);
            if state.prev_hop.is_none() {
                state.prev_hop = Some(from);
            }
            let content_id = packet.content_id();
            self.events.push_back(CafeEvent::ContentReceived {
                content_id: content_id.to_string(),
                from,
                next_hops: state.next_hops.as_slice().to_vec(),
            });
            if is_ingress(source) {
                self.counters.notifies += 1;
                push_notify(
                    &mut self.outbox,
                    &self.config,
                    false,
                    content_id,
                    source,
                    from,
                    state.next_hops.as_slice(),
                );
            }
        }
        if packet.last() && is_ingress(packet.source()) {
            let source = packet.source();
            self.counters.teardowns += 1;
            push_notify(
                &mut self.outbox,
                &self.config,
                true,
                packet.content_id(),
                source,
                from,
                state.next_hops.as_slice(),
            );
        }
        let hops = state.next_hops.as_slice();
        self.counters.chunks_forwarded += hops.len() as u64;
        Action::Forward(hops)
    }

    /// The next hops of `content_id` without side effects (what a lookup decides).
    pub fn lookup(&self, content_id: &[u8]) -> Option<&[SocketAddrV4]> {
        self.table
            .get(content_id)
            .map(|state| state.next_hops.as_slice())
    }

    /// The next queued control message.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<CafeEvent> {
        self.events.pop_front()
    }

    /// Counters.
    pub fn counters(&self) -> &CafeCounters {
        &self.counters
    }

    /// Number of content states.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when the table is empty.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// `displayContentStateTable()`: the table sorted by content ID.
    pub fn content_state_table(&self) -> Vec<StateRow> {
        let mut rows: Vec<StateRow> = self
            .table
            .iter()
            .map(|(id, state)| StateRow {
                content_id: String::from_utf8_lossy(id).into_owned(),
                prev_hop: state.prev_hop,
                next_hops: state.next_hops.as_slice().to_vec(),
            })
            .collect();
        rows.sort_by(|a, b| a.content_id.cmp(&b.content_id));
        rows
    }
}

fn push_notify(
    outbox: &mut VecDeque<Transmit>,
    config: &CafeConfig,
    teardown: bool,
    content_id: &str,
    source: SocketAddrV4,
    prev_hop: SocketAddrV4,
    next_hops: &[SocketAddrV4],
) {
    let hops = &next_hops[..next_hops.len().min(wire::MAX_LIST_LEN)];
    let message = Message::Notify(wire::Notify {
        teardown,
        ingress: config.me,
        source,
        prev_hop,
        next_hops: wire::Items::Slice(hops),
        content_id,
    });
    if let Ok(payload) = message.to_vec() {
        outbox.push_back(Transmit {
            to: config.crme,
            payload,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::ep;

    fn cafe() -> Cafe {
        Cafe::new(CafeConfig {
            me: ep(2, 2, 2000),
            crme: ep(2, 1, 3000),
            neighbours: vec![Neighbour {
                cafe: ep(1, 2, 2000),
                crme: ep(1, 1, 3000),
            }],
            announce_interval: Duration::from_secs(1),
        })
    }

    fn configure(remove: bool, cafe: SocketAddrV4, next: SocketAddrV4) -> Vec<u8> {
        Message::Configure(wire::Configure {
            remove,
            cafe,
            prev_hop: Some(ep(1, 2, 2000)),
            next_hop: next,
            content_id: "MyContent1",
        })
        .to_vec()
        .unwrap()
    }

    fn chunk(seq: u32, last: bool, sender: SocketAddrV4) -> Vec<u8> {
        Message::Content(
            wire::ChunkHeader {
                last,
                seq,
                source: ep(5, 3, 1000),
                sender,
                content_id: "MyContent1",
            },
            b"data",
        )
        .to_vec()
        .unwrap()
    }

    fn notifies(cafe: &mut Cafe) -> Vec<(bool, Vec<SocketAddrV4>)> {
        let mut out = Vec::new();
        while let Some(t) = cafe.poll_transmit() {
            if let Ok(Message::Notify(n)) = Message::parse(&t.payload) {
                assert_eq!(t.to, ep(2, 1, 3000));
                out.push((n.teardown, n.next_hops.iter().collect()));
            }
        }
        out
    }

    #[test]
    fn configure_installs_and_content_follows_it() {
        let mut cafe = cafe();
        let crme = ep(2, 1, 3000);
        assert_eq!(
            cafe.handle(crme, &configure(false, ep(2, 2, 2000), ep(2, 3, 2000))),
            Action::Handled
        );
        let from = ep(1, 2, 2000);
        assert_eq!(
            cafe.handle(from, &chunk(0, false, from)),
            Action::Forward(&[ep(2, 3, 2000)])
        );
        assert_eq!(
            cafe.handle(from, &chunk(1, false, from)),
            Action::Forward(&[ep(2, 3, 2000)])
        );
        // One Notify (create) for the first chunk from this previous hop only.
        assert_eq!(notifies(&mut cafe), vec![(false, vec![ep(2, 3, 2000)])]);
        assert_eq!(
            cafe.handle(from, &chunk(2, true, from)),
            Action::Forward(&[ep(2, 3, 2000)])
        );
        assert_eq!(notifies(&mut cafe), vec![(true, vec![ep(2, 3, 2000)])]);
        assert_eq!(cafe.counters().chunks_forwarded, 3);
        let rows = cafe.content_state_table();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].prev_hop, Some(ep(1, 2, 2000)));
    }

    #[test]
    fn fan_out_to_several_next_hops_and_removal() {
        let mut cafe = cafe();
        let crme = ep(2, 1, 3000);
        for port in [2000, 2001, 2002, 2003] {
            cafe.handle(crme, &configure(false, ep(2, 2, 2000), ep(2, 3, port)));
        }
        // Re-adding is idempotent.
        cafe.handle(crme, &configure(false, ep(2, 2, 2000), ep(2, 3, 2000)));
        let from = ep(1, 2, 2000);
        match cafe.handle(from, &chunk(0, false, from)) {
            Action::Forward(hops) => assert_eq!(hops.len(), 4),
            other => panic!("{other:?}"),
        }
        for port in [2000, 2001, 2002] {
            cafe.handle(crme, &configure(true, ep(2, 2, 2000), ep(2, 3, port)));
        }
        assert_eq!(cafe.lookup(b"MyContent1"), Some(&[ep(2, 3, 2003)][..]));
        cafe.handle(crme, &configure(true, ep(2, 2, 2000), ep(2, 3, 2003)));
        assert!(cafe.is_empty(), "a state without next hops is removed");
        assert_eq!(cafe.handle(from, &chunk(1, false, from)), Action::Dropped);
        assert_eq!(cafe.counters().unknown_content, 1);
    }

    #[test]
    fn bad_input_is_counted_and_dropped() {
        let mut cafe = cafe();
        let crme = ep(2, 1, 3000);
        // Configure for another CAFE, and a Configure from something that is not the CRME.
        assert_eq!(
            cafe.handle(crme, &configure(false, ep(2, 9, 2000), ep(2, 3, 2000))),
            Action::Handled
        );
        cafe.handle(
            ep(9, 9, 9),
            &configure(false, ep(2, 2, 2000), ep(2, 3, 2000)),
        );
        assert_eq!(cafe.counters().configure_not_local, 2);
        assert!(cafe.is_empty());
        // Chunks for unknown content, truncated chunks, garbage.
        let from = ep(1, 2, 2000);
        assert_eq!(cafe.handle(from, &chunk(0, false, from)), Action::Dropped);
        let whole = chunk(0, false, from);
        for cut in 0..22 {
            assert_eq!(cafe.handle(from, &whole[..cut]), Action::Dropped);
        }
        assert_eq!(cafe.counters().unknown_content, 1);
        assert_eq!(cafe.counters().malformed, 22);
        assert!(cafe.poll_transmit().is_none());
    }

    #[test]
    fn intra_domain_hop_does_not_notify() {
        let mut cafe = cafe();
        cafe.handle(
            ep(2, 1, 3000),
            &configure(false, ep(2, 2, 2000), ep(2, 3, 2000)),
        );
        let inside = ep(2, 4, 2000);
        assert!(matches!(
            cafe.handle(inside, &chunk(0, true, inside)),
            Action::Forward(_)
        ));
        assert!(notifies(&mut cafe).is_empty());
        let event = cafe.poll_event();
        assert!(
            matches!(event, Some(CafeEvent::Configured { .. })),
            "{event:?}"
        );
        let event = cafe.poll_event();
        assert!(
            matches!(event, Some(CafeEvent::ContentReceived { ref next_hops, .. }) if next_hops == &[ep(2, 3, 2000)]),
            "{event:?}"
        );
    }

    #[test]
    fn announces_its_links_periodically() {
        let mut cafe = cafe();
        let t0 = Instant::now();
        cafe.handle_timeout(t0);
        let t = cafe.poll_transmit().unwrap();
        match Message::parse(&t.payload).unwrap() {
            Message::Announce(a) => {
                assert_eq!(a.cafe, ep(2, 2, 2000));
                assert_eq!(a.neighbours.iter().next().unwrap().crme, ep(1, 1, 3000));
            }
            other => panic!("{other:?}"),
        }
        cafe.handle_timeout(t0 + Duration::from_millis(10));
        assert!(cafe.poll_transmit().is_none());
        cafe.handle_timeout(t0 + Duration::from_secs(1));
        assert!(cafe.poll_transmit().is_some());
    }
}
