//! The CRME (§6.3.2.1, §6.3.3): content publication and resolution, content state installation
//! in the local CAFEs, the ActiveSessions table and route optimisation.
//!
//! Resolution: a Publish registers content at the server's CRME and climbs the provider chain,
//! leaving in each CRME's content table the neighbour it came from. A Consume climbs from the
//! client's CRME through providers until a CRME knows the content, then follows the content
//! tables down to the server. Each CRME on the way configures its ingress CAFE (towards the
//! source) and egress CAFE (towards the requester), and passes the Consume on with "deliver to
//! my ingress CAFE". A Consume reaching a CRME whose domain already carries the content (an
//! ActiveSessions entry, or a resolution still waiting for its first chunk) is joined to that
//! path instead of travelling further.
//!
//! Route optimisation (Figure 27): on a create Notify, the CRME looks the content source up in
//! its routing table; if the next-hop CRME differs from the one the flow arrives from, it sends
//! a route-optimisation Consume along the better route, configures the CAFE bordering it, and
//! points its content table there. When the first chunk arrives over the new route (make before
//! break) it removes the old ingress state and sends a leave Consume up the old route, which
//! every CRME on it prunes until it meets the part of the tree still in use.

use crate::wire::{self, Message, Neighbour, NO_ENDPOINT};
use crate::Transmit;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// Business relation with a neighbour domain's CRME.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Relation {
    /// The neighbour is our provider: Publish goes there, unresolved Consume too.
    Provider,
    /// The neighbour is our customer.
    Customer,
    /// Settlement-free peer.
    Peer,
}

/// A routing-table entry: destinations in `prefix/len` are reached through the CRME `next_hop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Network address.
    pub prefix: Ipv4Addr,
    /// Prefix length (0..=32).
    pub len: u8,
    /// The neighbour CRME on the route.
    pub next_hop: SocketAddrV4,
}

impl Route {
    fn matches(&self, addr: Ipv4Addr) -> bool {
        let mask = prefix_mask(self.len);
        u32::from(addr) & mask == u32::from(self.prefix) & mask
    }
}

fn prefix_mask(len: u8) -> u32 {
    match len {
        0 => 0,
        len => u32::MAX << (32 - u32::from(len.min(32))),
    }
}

/// `getAddressPrefix(addr)`: the /24 an address belongs to (in the emulation a router `d.r`
/// lives at 127.N.d.r, so the /24 is domain `d`).
pub fn address_prefix(addr: Ipv4Addr) -> (Ipv4Addr, u8) {
    (Ipv4Addr::from(u32::from(addr) & prefix_mask(24)), 24)
}

/// How a CRME is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmeConfig {
    /// This CRME's address and port.
    pub me: SocketAddrV4,
    /// Neighbour CRMEs and our relation with each.
    pub neighbours: Vec<(SocketAddrV4, Relation)>,
    /// The (BGP) routing table used for route optimisation: longest prefix wins.
    pub routes: Vec<Route>,
    /// Whether create Notifies trigger route optimisation.
    pub route_optimisation: bool,
    /// How long a resolved path waits for its first chunk before a new Consume resolves again
    /// instead of joining it.
    pub pending_timeout: Duration,
    /// How long the CAFE states of a finished flow (every ingress sent its teardown) are kept
    /// before this CRME removes them; a new Consume in the meantime reuses them.
    pub linger: Duration,
    /// Hop limit put on Consume and Publish messages this CRME originates.
    pub hop_limit: u8,
}

/// Where the content table says a content ID is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ContentRoute {
    /// Published by a server in this domain.
    Local {
        /// The server.
        server: SocketAddrV4,
        /// The CAFE it is attached to.
        attach_cafe: SocketAddrV4,
    },
    /// Reached through a neighbour CRME.
    Via {
        /// The neighbour CRME.
        crme: SocketAddrV4,
        /// The content server, when known.
        source: SocketAddrV4,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "addr", rename_all = "lowercase")]
enum Upstream {
    Server(SocketAddrV4),
    Crme(SocketAddrV4),
}

/// The state this CRME installed for one content ID (it mirrors its CAFEs' tables).
#[derive(Debug, Clone)]
struct PathState {
    upstream: Upstream,
    /// The local CAFE receiving the content from upstream.
    ingress: SocketAddrV4,
    /// What feeds `ingress`: the upstream domain's CAFE or the server.
    ingress_prev: SocketAddrV4,
    /// Next hops configured per local CAFE.
    hops: BTreeMap<SocketAddrV4, Vec<SocketAddrV4>>,
    consumer: SocketAddrV4,
    source: Option<SocketAddrV4>,
    /// Resolved but no chunk seen yet: joinable until then.
    pending_until: Option<Instant>,
    /// The flow ended: the states go at this time unless the content flows again.
    linger_until: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct PendingMove {
    old_ingress: SocketAddrV4,
    old_prev: SocketAddrV4,
    old_upstream: SocketAddrV4,
    new_ingress: SocketAddrV4,
}

/// One ActiveSessions row (§6.3.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveSession {
    /// The content.
    pub content_id: String,
    /// The ingress CAFE receiving it.
    pub ingress: SocketAddrV4,
    /// The egress CAFEs it is forwarded to (`numEgressCAFEs` is their count).
    pub egress: Vec<SocketAddrV4>,
}

/// What the CRME counted since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmeCounters {
    /// Datagrams handled.
    pub datagrams: u64,
    /// Datagrams that failed to parse (dropped).
    pub malformed: u64,
    /// Announces accepted.
    pub announces: u64,
    /// Publishes accepted.
    pub publishes: u64,
    /// Consumes received (any kind).
    pub consumes: u64,
    /// Consumes resolved further (to a neighbour CRME or the server).
    pub consumes_forwarded: u64,
    /// Consumes joined to a path already carrying the content.
    pub consumes_joined: u64,
    /// Leave Consumes processed.
    pub leaves: u64,
    /// Consumes dropped: unknown content, no CAFE towards the requester or the source, hop
    /// limit exhausted, or a leave for a path this CRME does not have.
    pub consumes_dropped: u64,
    /// Configure messages sent.
    pub configures_sent: u64,
    /// Notify (create) accepted.
    pub notifies: u64,
    /// Notify (teardown) accepted.
    pub teardowns: u64,
    /// Notifies dropped: not from a local CAFE.
    pub notify_not_local: u64,
    /// Route optimisations started.
    pub route_optimisations: u64,
    /// Route optimisations completed (old route pruned).
    pub route_optimisations_completed: u64,
    /// Finished flows whose CAFE states were removed after `linger`.
    pub paths_expired: u64,
    /// Well-formed messages a CRME does not accept, dropped.
    pub unexpected: u64,
}

/// Log-worthy happenings, drained with [`Crme::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrmeEvent {
    /// A Consume was resolved towards `upstream`, states configured in the local CAFEs.
    Resolved {
        /// The content.
        content_id: String,
        /// The neighbour CRME or server it was passed to.
        upstream: SocketAddrV4,
    },
    /// A Consume was joined to an existing path at `ingress`.
    Joined {
        /// The content.
        content_id: String,
        /// The ingress CAFE of the existing path.
        ingress: SocketAddrV4,
    },
    /// Route optimisation: the flow moves from `from` to `to`.
    RouteOptimised {
        /// The content.
        content_id: String,
        /// The upstream CRME of the old route.
        from: SocketAddrV4,
        /// The upstream CRME of the new route.
        to: SocketAddrV4,
    },
    /// A Consume or Notify was dropped.
    Dropped {
        /// The content.
        content_id: String,
        /// Why.
        reason: DropReason,
    },
}

/// Why a CRME dropped a Consume or a Notify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The Consume's hop limit ran out.
    HopLimit,
    /// No local CAFE leads towards the requester.
    NoCafeTowardsRequester,
    /// No route leads towards the content source.
    NoRoute,
    /// The content ID is not known here.
    UnknownContent,
    /// The server's CAFE has not announced itself.
    ServerCafeUnknown,
    /// Resolving it would send it back to where it came from.
    Loop,
    /// No local CAFE leads towards the content source.
    NoCafeTowardsSource,
    /// A leave for a path this CRME does not have.
    UnknownPath,
    /// A Notify from a CAFE that is not one of this CRME's.
    NotifyNotLocal,
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DropReason::HopLimit => "hop limit exhausted",
            DropReason::NoCafeTowardsRequester => "no local CAFE towards the requester",
            DropReason::NoRoute => "no route towards the content source",
            DropReason::UnknownContent => "unknown content ID",
            DropReason::ServerCafeUnknown => "the server's CAFE has not announced itself",
            DropReason::Loop => "resolution would loop back to the sender",
            DropReason::NoCafeTowardsSource => "no local CAFE towards the content source",
            DropReason::UnknownPath => "leave for a path this CRME does not have",
            DropReason::NotifyNotLocal => "Notify from a CAFE that is not local",
        })
    }
}

/// A CRME.
#[derive(Debug)]
pub struct Crme {
    config: CrmeConfig,
    /// locCafe: local CAFE → its inter-domain links (from Announce).
    loc_cafe: BTreeMap<SocketAddrV4, Vec<Neighbour>>,
    content_table: BTreeMap<String, ContentRoute>,
    paths: HashMap<String, PathState>,
    active_sessions: BTreeMap<(String, SocketAddrV4), Vec<SocketAddrV4>>,
    pending_moves: HashMap<String, PendingMove>,
    counters: CrmeCounters,
    outbox: VecDeque<Transmit>,
    events: VecDeque<CrmeEvent>,
}

impl Crme {
    /// A CRME with empty tables.
    pub fn new(config: CrmeConfig) -> Self {
        Self {
            config,
            loc_cafe: BTreeMap::new(),
            content_table: BTreeMap::new(),
            paths: HashMap::new(),
            active_sessions: BTreeMap::new(),
            pending_moves: HashMap::new(),
            counters: CrmeCounters::default(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &CrmeConfig {
        &self.config
    }

    /// Handles one received datagram from `from`.
    pub fn handle(&mut self, now: Instant, from: SocketAddrV4, bytes: &[u8]) {
        self.counters.datagrams += 1;
        match Message::parse(bytes) {
            Ok(Message::Announce(announce)) => self.process_announce(from, &announce),
            Ok(Message::Consume(consume)) => self.process_consume(now, from, &consume),
            Ok(Message::Notify(notify)) => self.process_notify(now, from, &notify),
            Ok(Message::Publish(publish)) => self.process_publish(from, &publish),
            Ok(_) => self.counters.unexpected += 1,
            Err(_) => self.counters.malformed += 1,
        }
    }

    /// `processAnnounce(pkt)`: records a local CAFE and its inter-domain links (locCafe; the
    /// nextHopCrmes view is derived from it by [`Crme::next_hop_crmes`]).
    pub fn process_announce(&mut self, from: SocketAddrV4, announce: &wire::Announce<'_>) {
        if from != announce.cafe {
            self.counters.unexpected += 1;
            return;
        }
        self.counters.announces += 1;
        self.loc_cafe
            .insert(announce.cafe, announce.neighbours.iter().collect());
    }

    /// Content publication: a local server (or a customer CRME passing it up) registers
    /// content; the registration goes on to every provider.
    pub fn process_publish(&mut self, from: SocketAddrV4, publish: &wire::Publish<'_>) {
        let route = if from == publish.server {
            ContentRoute::Local {
                server: publish.server,
                attach_cafe: publish.attach_cafe,
            }
        } else if self.neighbour(from).is_some() {
            ContentRoute::Via {
                crme: from,
                source: publish.server,
            }
        } else {
            self.counters.unexpected += 1;
            return;
        };
        self.counters.publishes += 1;
        let changed = self.content_table.get(publish.content_id) != Some(&route);
        self.content_table
            .insert(publish.content_id.to_string(), route);
        if !changed || publish.hop_limit == 0 {
            return;
        }
        let providers: Vec<SocketAddrV4> = self
            .config
            .neighbours
            .iter()
            .filter(|(_, relation)| *relation == Relation::Provider)
            .map(|(crme, _)| *crme)
            .collect();
        for provider in providers {
            self.send(
                provider,
                Message::Publish(wire::Publish {
                    hop_limit: publish.hop_limit - 1,
                    ..*publish
                }),
            );
        }
    }

    fn neighbour(&self, crme: SocketAddrV4) -> Option<Relation> {
        self.config
            .neighbours
            .iter()
            .find(|(addr, _)| *addr == crme)
            .map(|(_, relation)| *relation)
    }

    /// nextHopCrmes: for a neighbour CRME, the local CAFE linked to its domain and the CAFE at
    /// the other end of the link.
    pub fn next_hop_crmes(&self, crme: SocketAddrV4) -> Option<(SocketAddrV4, SocketAddrV4)> {
        self.loc_cafe.iter().find_map(|(local, links)| {
            links
                .iter()
                .find(|link| link.crme == crme)
                .map(|link| (*local, link.cafe))
        })
    }

    /// The routing-table lookup of route optimisation: the next-hop CRME for `addr`'s prefix.
    pub fn route_lookup(&self, addr: Ipv4Addr) -> Option<SocketAddrV4> {
        self.config
            .routes
            .iter()
            .filter(|route| route.matches(addr))
            .max_by_key(|route| route.len)
            .map(|route| route.next_hop)
    }

    fn drop_consume(&mut self, content_id: &str, reason: DropReason) {
        self.counters.consumes_dropped += 1;
        self.events.push_back(CrmeEvent::Dropped {
            content_id: content_id.to_string(),
            reason,
        });
    }

    fn is_active(&self, content_id: &str, now: Instant) -> bool {
        let flowing = self
            .active_sessions
            .range((content_id.to_string(), NO_ENDPOINT)..)
            .next()
            .is_some_and(|((id, _), _)| id == content_id);
        flowing
            || self
                .paths
                .get(content_id)
                .and_then(|path| path.pending_until)
                .is_some_and(|until| now < until)
    }

    /// `processConsume(pkt)`: joins the request to a path already carrying the content, or
    /// resolves it one domain further, configuring the ingress and egress CAFEs.
    pub fn process_consume(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        consume: &wire::Consume<'_>,
    ) {
        self.counters.consumes += 1;
        let id = consume.content_id;
        if consume.leave {
            self.process_leave(id, consume.deliver_to);
            return;
        }
        if consume.hop_limit == 0 {
            self.drop_consume(id, DropReason::HopLimit);
            return;
        }
        let egress = match consume
            .egress_hint
            .filter(|hint| self.loc_cafe.contains_key(hint))
        {
            Some(hint) => hint,
            None => match self.loc_cafe.iter().find_map(|(local, links)| {
                links
                    .iter()
                    .any(|link| link.cafe == consume.deliver_to)
                    .then_some(*local)
            }) {
                Some(local) => local,
                None => {
                    self.drop_consume(id, DropReason::NoCafeTowardsRequester);
                    return;
                }
            },
        };

        if self.is_active(id, now) {
            if let Some(path) = self.paths.get(id) {
                let ingress = path.ingress;
                let feeds_egress = egress == ingress || path.hops.contains_key(&egress);
                if !feeds_egress {
                    self.add_hop(id, ingress, None, egress);
                }
                self.add_hop(id, egress, Some(ingress), consume.deliver_to);
                self.counters.consumes_joined += 1;
                self.events.push_back(CrmeEvent::Joined {
                    content_id: id.to_string(),
                    ingress,
                });
                return;
            }
        }

        let known = self.content_table.get(id).copied();
        let source = consume.source.or(match known {
            Some(ContentRoute::Local { server, .. }) => Some(server),
            Some(ContentRoute::Via { source, .. }) => Some(source),
            None => None,
        });
        let upstream = match (known, consume.route_opt, source) {
            (Some(ContentRoute::Local { server, .. }), _, _) => Upstream::Server(server),
            (_, true, Some(source)) => match self.route_lookup(*source.ip()) {
                Some(crme) => Upstream::Crme(crme),
                None => match known {
                    Some(ContentRoute::Via { crme, .. }) => Upstream::Crme(crme),
                    _ => {
                        self.drop_consume(id, DropReason::NoRoute);
                        return;
                    }
                },
            },
            (Some(ContentRoute::Via { crme, .. }), _, _) => Upstream::Crme(crme),
            (None, _, _) => match self
                .config
                .neighbours
                .iter()
                .find(|(crme, relation)| *relation == Relation::Provider && *crme != from)
            {
                Some((provider, _)) => Upstream::Crme(*provider),
                None => {
                    self.drop_consume(id, DropReason::UnknownContent);
                    return;
                }
            },
        };
        let (ingress, ingress_prev) = match upstream {
            Upstream::Server(server) => match known {
                Some(ContentRoute::Local { attach_cafe, .. })
                    if self.loc_cafe.contains_key(&attach_cafe) =>
                {
                    (attach_cafe, server)
                }
                _ => {
                    self.drop_consume(id, DropReason::ServerCafeUnknown);
                    return;
                }
            },
            Upstream::Crme(crme) if crme == from => {
                self.drop_consume(id, DropReason::Loop);
                return;
            }
            Upstream::Crme(crme) => match self.next_hop_crmes(crme) {
                Some(link) => link,
                None => {
                    self.drop_consume(id, DropReason::NoCafeTowardsSource);
                    return;
                }
            },
        };

        self.paths.insert(
            id.to_string(),
            PathState {
                upstream,
                ingress,
                ingress_prev,
                hops: BTreeMap::new(),
                consumer: consume.consumer,
                source,
                pending_until: Some(now + self.config.pending_timeout),
                linger_until: None,
            },
        );
        if ingress != egress {
            self.add_hop(id, ingress, Some(ingress_prev), egress);
            self.add_hop(id, egress, Some(ingress), consume.deliver_to);
        } else {
            self.add_hop(id, ingress, Some(ingress_prev), consume.deliver_to);
        }
        let (to, deliver_to, egress_hint) = match upstream {
            Upstream::Server(server) => (server, ingress, None),
            Upstream::Crme(crme) => (crme, ingress, Some(ingress_prev)),
        };
        self.counters.consumes_forwarded += 1;
        self.events.push_back(CrmeEvent::Resolved {
            content_id: id.to_string(),
            upstream: to,
        });
        self.send(
            to,
            Message::Consume(wire::Consume {
                route_opt: consume.route_opt,
                leave: false,
                hop_limit: consume.hop_limit - 1,
                consumer: consume.consumer,
                deliver_to,
                egress_hint,
                source,
                content_id: id,
            }),
        );
    }

    /// Adds `next` to `cafe`'s next hops for `id`, sending the Configure if it is new.
    fn add_hop(
        &mut self,
        id: &str,
        cafe: SocketAddrV4,
        prev: Option<SocketAddrV4>,
        next: SocketAddrV4,
    ) {
        let Some(path) = self.paths.get_mut(id) else {
            return;
        };
        let hops = path.hops.entry(cafe).or_default();
        if hops.contains(&next) {
            return;
        }
        hops.push(next);
        self.configure(false, cafe, prev, next, id);
    }

    fn configure(
        &mut self,
        remove: bool,
        cafe: SocketAddrV4,
        prev_hop: Option<SocketAddrV4>,
        next_hop: SocketAddrV4,
        content_id: &str,
    ) {
        self.counters.configures_sent += 1;
        self.send(
            cafe,
            Message::Configure(wire::Configure {
                remove,
                cafe,
                prev_hop,
                next_hop,
                content_id,
            }),
        );
    }

    /// A leave Consume: stop delivering `id` to `deliver_to`; prune CAFEs left without next
    /// hops and, if the whole local path is gone, pass the leave upstream.
    fn process_leave(&mut self, id: &str, deliver_to: SocketAddrV4) {
        let Some(mut path) = self.paths.remove(id) else {
            self.drop_consume(id, DropReason::UnknownPath);
            return;
        };
        self.counters.leaves += 1;
        let mut removals = Vec::new();
        for (cafe, hops) in path.hops.iter_mut() {
            if let Some(at) = hops.iter().position(|hop| *hop == deliver_to) {
                hops.remove(at);
                removals.push((*cafe, deliver_to));
            }
        }
        // Cascade: a CAFE without next hops no longer needs to be fed.
        loop {
            let emptied: Vec<SocketAddrV4> = path
                .hops
                .iter()
                .filter(|(_, hops)| hops.is_empty())
                .map(|(cafe, _)| *cafe)
                .collect();
            if emptied.is_empty() {
                break;
            }
            for cafe in emptied {
                path.hops.remove(&cafe);
                for (feeder, hops) in path.hops.iter_mut() {
                    if let Some(at) = hops.iter().position(|hop| *hop == cafe) {
                        hops.remove(at);
                        removals.push((*feeder, cafe));
                    }
                }
            }
        }
        for (cafe, hop) in removals {
            self.configure(true, cafe, None, hop, id);
        }
        if !path.hops.contains_key(&path.ingress) {
            let sessions: Vec<(String, SocketAddrV4)> = self
                .active_sessions
                .keys()
                .filter(|(content, _)| content == id)
                .cloned()
                .collect();
            for key in sessions {
                self.active_sessions.remove(&key);
            }
            let (to, egress_hint) = match path.upstream {
                Upstream::Server(server) => (server, None),
                Upstream::Crme(crme) => (crme, Some(path.ingress_prev)),
            };
            self.send(
                to,
                Message::Consume(wire::Consume {
                    route_opt: false,
                    leave: true,
                    hop_limit: self.config.hop_limit,
                    consumer: path.consumer,
                    deliver_to: path.ingress,
                    egress_hint,
                    source: path.source,
                    content_id: id,
                }),
            );
        } else {
            self.paths.insert(id.to_string(), path);
        }
    }

    /// `processNotify(pkt)`: create adds an ActiveSessions entry (and may start route
    /// optimisation, or complete one); teardown removes the entry.
    pub fn process_notify(&mut self, now: Instant, from: SocketAddrV4, notify: &wire::Notify<'_>) {
        let id = notify.content_id;
        if from != notify.ingress || !self.loc_cafe.contains_key(&notify.ingress) {
            self.counters.notify_not_local += 1;
            self.events.push_back(CrmeEvent::Dropped {
                content_id: id.to_string(),
                reason: DropReason::NotifyNotLocal,
            });
            return;
        }
        let key = (id.to_string(), notify.ingress);
        if notify.teardown {
            self.counters.teardowns += 1;
            self.active_sessions.remove(&key);
            let flowing = self.is_active(id, now);
            if let Some(path) = self.paths.get_mut(id) {
                path.pending_until = None;
                if !flowing {
                    path.linger_until = Some(now + self.config.linger);
                }
            }
            return;
        }
        self.counters.notifies += 1;
        self.active_sessions
            .insert(key, notify.next_hops.iter().collect());
        if let Some(path) = self.paths.get_mut(id) {
            path.pending_until = None;
            path.linger_until = None;
        }

        if let Some(pending) = self.pending_moves.get(id).copied() {
            if pending.new_ingress == notify.ingress {
                self.pending_moves.remove(id);
                self.complete_move(id, pending);
            }
            return;
        }
        if self.config.route_optimisation {
            self.try_route_optimisation(notify);
        }
    }

    fn try_route_optimisation(&mut self, notify: &wire::Notify<'_>) {
        let id = notify.content_id;
        let Some(current) = self
            .loc_cafe
            .get(&notify.ingress)
            .and_then(|links| links.iter().find(|link| link.cafe == notify.prev_hop))
            .map(|link| link.crme)
        else {
            // The flow does not come from another domain (the server is local).
            return;
        };
        let (prefix, _) = address_prefix(*notify.source.ip());
        let Some(better) = self.route_lookup(prefix) else {
            return;
        };
        if better == current || self.neighbour(better).is_none() {
            return;
        }
        let Some((new_ingress, new_prev)) = self.next_hop_crmes(better) else {
            return;
        };
        if new_ingress == notify.ingress {
            return;
        }
        let Some(path) = self.paths.get(id) else {
            return;
        };
        let carried: Vec<SocketAddrV4> = path
            .hops
            .get(&notify.ingress)
            .cloned()
            .unwrap_or_else(|| notify.next_hops.iter().collect());
        let consumer = path.consumer;
        for hop in carried.into_iter().filter(|hop| *hop != new_ingress) {
            self.add_hop(id, new_ingress, Some(new_prev), hop);
        }
        if let Some(path) = self.paths.get_mut(id) {
            path.upstream = Upstream::Crme(better);
            path.ingress = new_ingress;
            path.ingress_prev = new_prev;
            path.source = Some(notify.source);
        }
        self.content_table.insert(
            id.to_string(),
            ContentRoute::Via {
                crme: better,
                source: notify.source,
            },
        );
        self.pending_moves.insert(
            id.to_string(),
            PendingMove {
                old_ingress: notify.ingress,
                old_prev: notify.prev_hop,
                old_upstream: current,
                new_ingress,
            },
        );
        self.counters.route_optimisations += 1;
        self.events.push_back(CrmeEvent::RouteOptimised {
            content_id: id.to_string(),
            from: current,
            to: better,
        });
        self.send(
            better,
            Message::Consume(wire::Consume {
                route_opt: true,
                leave: false,
                hop_limit: self.config.hop_limit,
                consumer,
                deliver_to: new_ingress,
                egress_hint: Some(new_prev),
                source: Some(notify.source),
                content_id: id,
            }),
        );
    }

    /// Make-before-break: content now arrives over the optimised route, so the old ingress
    /// state goes and the old route is told to stop.
    fn complete_move(&mut self, id: &str, pending: PendingMove) {
        let old_hops = self
            .paths
            .get_mut(id)
            .and_then(|path| path.hops.remove(&pending.old_ingress))
            .unwrap_or_default();
        for hop in old_hops {
            self.configure(true, pending.old_ingress, None, hop, id);
        }
        self.active_sessions
            .remove(&(id.to_string(), pending.old_ingress));
        let consumer = self.paths.get(id).map_or(NO_ENDPOINT, |path| path.consumer);
        self.counters.route_optimisations_completed += 1;
        self.send(
            pending.old_upstream,
            Message::Consume(wire::Consume {
                route_opt: false,
                leave: true,
                hop_limit: self.config.hop_limit,
                consumer,
                deliver_to: pending.old_ingress,
                egress_hint: Some(pending.old_prev),
                source: None,
                content_id: id,
            }),
        );
    }

    /// Timer work: removes the CAFE states of flows that ended more than `linger` ago.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .paths
            .iter()
            .filter(|(_, path)| path.linger_until.is_some_and(|until| now >= until))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if self.is_active(&id, now) {
                if let Some(path) = self.paths.get_mut(&id) {
                    path.linger_until = None;
                }
                continue;
            }
            let Some(path) = self.paths.remove(&id) else {
                continue;
            };
            self.pending_moves.remove(&id);
            for (cafe, hops) in path.hops {
                for hop in hops {
                    self.configure(true, cafe, None, hop, &id);
                }
            }
            self.counters.paths_expired += 1;
        }
    }

    fn send(&mut self, to: SocketAddrV4, message: Message<'_>) {
        if let Ok(payload) = message.to_vec() {
            self.outbox.push_back(Transmit { to, payload });
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<CrmeEvent> {
        self.events.pop_front()
    }

    /// Counters.
    pub fn counters(&self) -> &CrmeCounters {
        &self.counters
    }

    /// The ActiveSessions table.
    pub fn active_sessions(&self) -> Vec<ActiveSession> {
        self.active_sessions
            .iter()
            .map(|((content_id, ingress), egress)| ActiveSession {
                content_id: content_id.clone(),
                ingress: *ingress,
                egress: egress.clone(),
            })
            .collect()
    }

    /// The content table (content ID → where it is).
    pub fn content_table(&self) -> &BTreeMap<String, ContentRoute> {
        &self.content_table
    }

    /// locCafe: local CAFEs and their inter-domain links.
    pub fn loc_cafe(&self) -> &BTreeMap<SocketAddrV4, Vec<Neighbour>> {
        &self.loc_cafe
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::ep;

    /// Domain 2 of topology 1: CRME 2.1, ingress CAFE 2.2 (link to 1.2 / CRME 1.1, provider),
    /// egress CAFE 2.3 (link to 4.2 / CRME 4.1, customer), CAFE 2.4 (link to 3.4 / CRME 3.1,
    /// peer; the routing table reaches domain 3 and 5 through it).
    fn domain2(route_optimisation: bool) -> Crme {
        let mut crme = Crme::new(CrmeConfig {
            me: ep(2, 1, 3000),
            neighbours: vec![
                (ep(1, 1, 3000), Relation::Provider),
                (ep(4, 1, 3000), Relation::Customer),
                (ep(3, 1, 3000), Relation::Peer),
            ],
            routes: vec![Route {
                prefix: Ipv4Addr::new(127, 0, 5, 0),
                len: 24,
                next_hop: ep(3, 1, 3000),
            }],
            route_optimisation,
            pending_timeout: Duration::from_secs(5),
            linger: Duration::from_secs(30),
            hop_limit: 32,
        });
        for (cafe, link, link_crme) in [
            (ep(2, 2, 2000), ep(1, 2, 2000), ep(1, 1, 3000)),
            (ep(2, 3, 2000), ep(4, 2, 2000), ep(4, 1, 3000)),
            (ep(2, 4, 2000), ep(3, 4, 2000), ep(3, 1, 3000)),
        ] {
            let links = [Neighbour {
                cafe: link,
                crme: link_crme,
            }];
            let bytes = Message::Announce(wire::Announce {
                cafe,
                neighbours: wire::Items::Slice(&links),
            })
            .to_vec()
            .unwrap();
            crme.handle(Instant::now(), cafe, &bytes);
        }
        crme
    }

    fn consume(deliver_to: SocketAddrV4, hint: Option<SocketAddrV4>, leave: bool) -> Vec<u8> {
        Message::Consume(wire::Consume {
            route_opt: false,
            leave,
            hop_limit: 8,
            consumer: ep(4, 3, 1000),
            deliver_to,
            egress_hint: hint,
            source: None,
            content_id: "MyContent1",
        })
        .to_vec()
        .unwrap()
    }

    fn notify(teardown: bool, ingress: SocketAddrV4, prev: SocketAddrV4) -> Vec<u8> {
        Message::Notify(wire::Notify {
            teardown,
            ingress,
            source: ep(5, 3, 1000),
            prev_hop: prev,
            next_hops: wire::Items::Slice(&[ep(2, 3, 2000)]),
            content_id: "MyContent1",
        })
        .to_vec()
        .unwrap()
    }

    #[derive(Debug, PartialEq)]
    enum Sent {
        Configure(bool, SocketAddrV4, SocketAddrV4),
        Consume(SocketAddrV4, bool, bool, SocketAddrV4, Option<SocketAddrV4>),
        Publish(SocketAddrV4),
    }

    fn sent(crme: &mut Crme) -> Vec<Sent> {
        let mut out = Vec::new();
        while let Some(t) = crme.poll_transmit() {
            out.push(match Message::parse(&t.payload).unwrap() {
                Message::Configure(c) => {
                    assert_eq!(t.to, c.cafe);
                    Sent::Configure(c.remove, c.cafe, c.next_hop)
                }
                Message::Consume(c) => {
                    Sent::Consume(t.to, c.route_opt, c.leave, c.deliver_to, c.egress_hint)
                }
                Message::Publish(_) => Sent::Publish(t.to),
                other => panic!("unexpected {other:?}"),
            });
        }
        out
    }

    #[test]
    fn consume_is_resolved_up_the_provider_and_configures_ingress_and_egress() {
        let mut crme = domain2(false);
        let now = Instant::now();
        crme.handle(
            now,
            ep(4, 1, 3000),
            &consume(ep(4, 2, 2000), Some(ep(2, 3, 2000)), false),
        );
        assert_eq!(
            sent(&mut crme),
            vec![
                Sent::Configure(false, ep(2, 2, 2000), ep(2, 3, 2000)),
                Sent::Configure(false, ep(2, 3, 2000), ep(4, 2, 2000)),
                Sent::Consume(
                    ep(1, 1, 3000),
                    false,
                    false,
                    ep(2, 2, 2000),
                    Some(ep(1, 2, 2000))
                ),
            ]
        );
        assert_eq!(crme.counters().consumes_forwarded, 1);
    }

    #[test]
    fn second_consumer_joins_the_active_path() {
        let mut crme = domain2(false);
        let now = Instant::now();
        crme.handle(now, ep(4, 1, 3000), &consume(ep(4, 2, 2000), None, false));
        sent(&mut crme);
        crme.handle(
            now,
            ep(2, 2, 2000),
            &notify(false, ep(2, 2, 2000), ep(1, 2, 2000)),
        );
        assert_eq!(crme.active_sessions().len(), 1);
        // A second consumer behind CAFE 2.4 (peer link): joined at ingress 2.2, not forwarded.
        let later = now + Duration::from_secs(60);
        crme.handle(later, ep(3, 1, 3000), &consume(ep(3, 4, 2000), None, false));
        assert_eq!(
            sent(&mut crme),
            vec![
                Sent::Configure(false, ep(2, 2, 2000), ep(2, 4, 2000)),
                Sent::Configure(false, ep(2, 4, 2000), ep(3, 4, 2000)),
            ]
        );
        assert_eq!(crme.counters().consumes_joined, 1);
        // Teardown removes the ActiveSessions entry; a later Consume resolves again.
        crme.handle(
            later,
            ep(2, 2, 2000),
            &notify(true, ep(2, 2, 2000), ep(1, 2, 2000)),
        );
        assert!(crme.active_sessions().is_empty());
        crme.handle(later, ep(4, 1, 3000), &consume(ep(4, 2, 2000), None, false));
        assert!(sent(&mut crme)
            .iter()
            .any(|s| matches!(s, Sent::Consume(to, ..) if *to == ep(1, 1, 3000))));
    }

    #[test]
    fn states_of_a_finished_flow_are_removed_after_the_linger_time() {
        let mut crme = domain2(false);
        let now = Instant::now();
        crme.handle(now, ep(4, 1, 3000), &consume(ep(4, 2, 2000), None, false));
        crme.handle(
            now,
            ep(2, 2, 2000),
            &notify(false, ep(2, 2, 2000), ep(1, 2, 2000)),
        );
        crme.handle(
            now,
            ep(2, 2, 2000),
            &notify(true, ep(2, 2, 2000), ep(1, 2, 2000)),
        );
        sent(&mut crme);
        crme.handle_timeout(now + Duration::from_secs(29));
        assert!(sent(&mut crme).is_empty(), "still lingering");
        crme.handle_timeout(now + Duration::from_secs(31));
        assert_eq!(
            sent(&mut crme),
            vec![
                Sent::Configure(true, ep(2, 2, 2000), ep(2, 3, 2000)),
                Sent::Configure(true, ep(2, 3, 2000), ep(4, 2, 2000)),
            ]
        );
        assert_eq!(crme.counters().paths_expired, 1);
        // A flow that starts again before the linger time keeps its states.
        let later = now + Duration::from_secs(100);
        crme.handle(later, ep(4, 1, 3000), &consume(ep(4, 2, 2000), None, false));
        crme.handle(
            later,
            ep(2, 2, 2000),
            &notify(true, ep(2, 2, 2000), ep(1, 2, 2000)),
        );
        crme.handle(
            later,
            ep(2, 2, 2000),
            &notify(false, ep(2, 2, 2000), ep(1, 2, 2000)),
        );
        sent(&mut crme);
        crme.handle_timeout(later + Duration::from_secs(60));
        assert!(sent(&mut crme).is_empty());
    }

    #[test]
    fn route_optimisation_moves_the_flow_make_before_break() {
        let mut crme = domain2(true);
        let now = Instant::now();
        crme.handle(now, ep(4, 1, 3000), &consume(ep(4, 2, 2000), None, false));
        sent(&mut crme);
        // Content arrives from the provider (1.2) but domain 5 is reached better through 3.1.
        crme.handle(
            now,
            ep(2, 2, 2000),
            &notify(false, ep(2, 2, 2000), ep(1, 2, 2000)),
        );
        assert_eq!(
            sent(&mut crme),
            vec![
                Sent::Configure(false, ep(2, 4, 2000), ep(2, 3, 2000)),
                Sent::Consume(
                    ep(3, 1, 3000),
                    true,
                    false,
                    ep(2, 4, 2000),
                    Some(ep(3, 4, 2000))
                ),
            ]
        );
        assert_eq!(
            crme.content_table().get("MyContent1"),
            Some(&ContentRoute::Via {
                crme: ep(3, 1, 3000),
                source: ep(5, 3, 1000)
            })
        );
        // The first chunk over the new route: the old ingress is cleared and the old route left.
        crme.handle(
            now,
            ep(2, 4, 2000),
            &notify(false, ep(2, 4, 2000), ep(3, 4, 2000)),
        );
        assert_eq!(
            sent(&mut crme),
            vec![
                Sent::Configure(true, ep(2, 2, 2000), ep(2, 3, 2000)),
                Sent::Consume(
                    ep(1, 1, 3000),
                    false,
                    true,
                    ep(2, 2, 2000),
                    Some(ep(1, 2, 2000))
                ),
            ]
        );
        let sessions = crme.active_sessions();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].ingress, ep(2, 4, 2000));
        assert_eq!(crme.counters().route_optimisations_completed, 1);
    }

    #[test]
    fn leave_prunes_and_propagates_when_the_path_is_empty() {
        let mut crme = domain2(false);
        let now = Instant::now();
        crme.handle(now, ep(4, 1, 3000), &consume(ep(4, 2, 2000), None, false));
        crme.handle(
            now,
            ep(2, 2, 2000),
            &notify(false, ep(2, 2, 2000), ep(1, 2, 2000)),
        );
        crme.handle(now, ep(3, 1, 3000), &consume(ep(3, 4, 2000), None, false));
        sent(&mut crme);
        crme.handle(now, ep(3, 1, 3000), &consume(ep(3, 4, 2000), None, true));
        assert_eq!(
            sent(&mut crme),
            vec![
                Sent::Configure(true, ep(2, 4, 2000), ep(3, 4, 2000)),
                Sent::Configure(true, ep(2, 2, 2000), ep(2, 4, 2000)),
            ]
        );
        crme.handle(now, ep(4, 1, 3000), &consume(ep(4, 2, 2000), None, true));
        assert_eq!(
            sent(&mut crme),
            vec![
                Sent::Configure(true, ep(2, 3, 2000), ep(4, 2, 2000)),
                Sent::Configure(true, ep(2, 2, 2000), ep(2, 3, 2000)),
                Sent::Consume(
                    ep(1, 1, 3000),
                    false,
                    true,
                    ep(2, 2, 2000),
                    Some(ep(1, 2, 2000))
                ),
            ]
        );
        assert!(crme.active_sessions().is_empty());
    }

    #[test]
    fn publish_goes_up_to_providers_only() {
        let mut crme = domain2(false);
        let publish = |server| {
            Message::Publish(wire::Publish {
                hop_limit: 4,
                server,
                attach_cafe: ep(2, 3, 2000),
                content_id: "Local1",
            })
            .to_vec()
            .unwrap()
        };
        let server = ep(2, 3, 1000);
        crme.handle(Instant::now(), server, &publish(server));
        assert_eq!(sent(&mut crme), vec![Sent::Publish(ep(1, 1, 3000))]);
        // Republishing the same thing does not flood again.
        crme.handle(Instant::now(), server, &publish(server));
        assert!(sent(&mut crme).is_empty());
        // A publish from a stranger is dropped.
        crme.handle(Instant::now(), ep(9, 9, 9), &publish(ep(9, 9, 1)));
        assert_eq!(crme.counters().unexpected, 1);
        // A Consume for it from the customer resolves to the local server.
        crme.handle(Instant::now(), ep(4, 1, 3000), &{
            Message::Consume(wire::Consume {
                route_opt: false,
                leave: false,
                hop_limit: 3,
                consumer: ep(4, 3, 1000),
                deliver_to: ep(4, 2, 2000),
                egress_hint: None,
                source: None,
                content_id: "Local1",
            })
            .to_vec()
            .unwrap()
        });
        assert_eq!(
            sent(&mut crme),
            vec![
                Sent::Configure(false, ep(2, 3, 2000), ep(4, 2, 2000)),
                Sent::Consume(server, false, false, ep(2, 3, 2000), None),
            ]
        );
    }

    #[test]
    fn unknown_content_at_the_top_of_the_hierarchy_is_dropped() {
        // Domain 1 (tier-1): no provider to ask, and nobody published the content.
        let mut crme = Crme::new(CrmeConfig {
            me: ep(1, 1, 3000),
            neighbours: vec![(ep(2, 1, 3000), Relation::Customer)],
            routes: Vec::new(),
            route_optimisation: true,
            pending_timeout: Duration::from_secs(5),
            linger: Duration::from_secs(30),
            hop_limit: 32,
        });
        let links = [Neighbour {
            cafe: ep(2, 2, 2000),
            crme: ep(2, 1, 3000),
        }];
        let announce = Message::Announce(wire::Announce {
            cafe: ep(1, 2, 2000),
            neighbours: wire::Items::Slice(&links),
        })
        .to_vec()
        .unwrap();
        crme.handle(Instant::now(), ep(1, 2, 2000), &announce);
        crme.handle(
            Instant::now(),
            ep(2, 1, 3000),
            &consume(ep(2, 2, 2000), None, false),
        );
        assert_eq!(crme.counters().consumes_dropped, 1);
        assert!(matches!(
            crme.poll_event(),
            Some(CrmeEvent::Dropped {
                reason: DropReason::UnknownContent,
                ..
            })
        ));
        assert!(sent(&mut crme).is_empty());
    }

    #[test]
    fn bad_input_is_counted_and_dropped() {
        let mut crme = domain2(false);
        let now = Instant::now();
        crme.handle(now, ep(4, 1, 3000), &[0xCA, 1, 4]);
        crme.handle(now, ep(4, 1, 3000), b"garbage");
        assert_eq!(crme.counters().malformed, 2);
        // Notify from a CAFE that is not local.
        crme.handle(
            now,
            ep(9, 9, 2000),
            &notify(false, ep(9, 9, 2000), ep(1, 2, 2000)),
        );
        assert_eq!(crme.counters().notify_not_local, 1);
        // Requester not adjacent to any local CAFE.
        crme.handle(now, ep(4, 1, 3000), &consume(ep(8, 8, 2000), None, false));
        // Leave for a path that does not exist.
        crme.handle(now, ep(4, 1, 3000), &consume(ep(4, 2, 2000), None, true));
        assert_eq!(crme.counters().consumes_dropped, 2);
        assert!(sent(&mut crme).is_empty());
    }
}
