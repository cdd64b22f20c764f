//! The routing logic of one RAE as a sans-IO state machine.
//!
//! The shell reports session events ([`Rae::peer_up`], [`Rae::peer_down`]), hands over received
//! updates and withdraws, calls [`Rae::handle_timeout`] at [`Rae::poll_timeout`], and sends
//! whatever [`Rae::poll_transmit`] returns. Time is always passed in.
//!
//! Path construction: a path learned from peer AS `X` for class `c` is stored with the metric
//! `link(X, c) ⊕ received`, where `link` is `peer_table[X].class_table` and `⊕` is
//! [`Metric::then`]. When it is advertised to peer `Y`, the intra-domain segment
//! `provisioning(border Y → border X, c)` is added and the local AS is prepended; the domain's own
//! prefix `P` is advertised with `provisioning(border Y → P, c)`. A class that the link or the
//! provisioning table does not cover is neither accepted nor advertised.

use crate::config::{Endpoint, RaeConfig};
use crate::decision::achievement;
use crate::metric::Metric;
use crate::proto;
use crate::rib::{AsPath, Candidate, Origin, Prefix, Rib, RouteEntry, RouteKey};
use crate::wire::InterRaeMessage;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::VecDeque;
use std::time::Instant;

/// Paths accepted per route in one update; more are ignored (bounds memory per peer).
pub const MAX_PATHS_PER_ROUTE: usize = 16;
/// Longest AS path accepted.
pub const MAX_AS_PATH_LEN: usize = 64;
/// Routes per Update (or Withdraw) message the engine emits.
pub const ROUTES_PER_MESSAGE: usize = 2048;
/// PathInf/ProvInf entries per GenericRequest the engine emits.
pub const ENTRIES_PER_CME_REQUEST: usize = 4096;

/// Something to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A message for the session with peer `peer` (index into `RaeConfig::peers`).
    Peer {
        /// Peer index.
        peer: usize,
        /// The message.
        message: InterRaeMessage,
    },
    /// A report for the CME.
    Cme(proto::GenericRequest),
}

/// Counters exported as metrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counters {
    /// Update messages received.
    pub updates_in: u64,
    /// Withdraw messages received.
    pub withdraws_in: u64,
    /// Routes (prefix × class) received in updates.
    pub routes_in: u64,
    /// Received routes or paths dropped as malformed or for an unsupported class.
    pub rejected: u64,
    /// Received paths dropped because their AS path holds the local AS.
    pub loops: u64,
    /// Update messages sent.
    pub updates_out: u64,
    /// Withdraw messages sent.
    pub withdraws_out: u64,
    /// Decision process runs (one per route whose candidates changed).
    pub decision_runs: u64,
    /// Candidate paths ranked by those runs.
    pub paths_ranked: u64,
    /// GenericRequests produced for the CME.
    pub cme_requests: u64,
    /// Update batches flushed.
    pub flushes: u64,
}

/// One path as shown to operators.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PathView {
    /// 1 for the best; preferred paths are those with `preferred` set.
    pub rank: usize,
    /// Whether it is among the preferred paths.
    pub preferred: bool,
    /// Next AS (`None` for the domain's own prefix).
    pub via_as: Option<u32>,
    /// AS path from the next AS to the destination.
    pub as_path: Vec<u32>,
    /// Aggregated metric from our border to the prefix.
    pub metric: Metric,
    /// Achievement function value.
    pub achievement: f64,
}

/// One RIB entry as shown to operators.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RouteView {
    /// Destination prefix.
    pub prefix: Prefix,
    /// Class of service.
    pub cos: u32,
    /// Candidates, best first.
    pub paths: Vec<PathView>,
}

/// The routing engine of one RAE.
pub struct Rae {
    config: RaeConfig,
    rib: Rib,
    peer_up: Vec<bool>,
    queue: Vec<RouteKey>,
    outputs: VecDeque<Output>,
    last_flush: Option<Instant>,
    started: Instant,
    cme_connected: bool,
    cme_sequence: u64,
    counters: Counters,
    scratch: Vec<PreferredMark>,
}

impl Rae {
    /// A RAE holding its own prefixes, with every peer down.
    pub fn new(config: RaeConfig, now: Instant) -> Self {
        let mut rae = Rae {
            peer_up: vec![false; config.peers.len()],
            rib: Rib::default(),
            queue: Vec::new(),
            outputs: VecDeque::new(),
            last_flush: None,
            started: now,
            cme_connected: false,
            cme_sequence: 0,
            counters: Counters::default(),
            scratch: Vec::new(),
            config,
        };
        let empty = rae.rib.intern(&[]);
        let prefixes = rae.config.prefixes.clone();
        for prefix in prefixes {
            for cos in rae.config.local_classes.clone() {
                let key = RouteKey { prefix, cos };
                let entry = rae.rib.entry(key);
                snapshot(&mut rae.scratch, entry);
                entry.candidates.push(Candidate {
                    origin: Origin::LOCAL,
                    as_path: empty.clone(),
                    metric: Metric::IDENTITY,
                    achievement: 0.0,
                });
                rank(&rae.config, &rae.scratch, &mut rae.counters, entry, cos);
                entry.queued = true;
                rae.rib.add_paths(1, 0);
                rae.queue.push(key);
            }
        }
        rae
    }

    /// The configuration.
    pub fn config(&self) -> &RaeConfig {
        &self.config
    }

    /// The RIB.
    pub fn rib(&self) -> &Rib {
        &self.rib
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Whether the session with peer `peer` is up.
    pub fn is_peer_up(&self, peer: usize) -> bool {
        self.peer_up.get(peer).copied().unwrap_or(false)
    }

    /// The session with peer `peer` came up: it gets our whole table at once.
    pub fn peer_up(&mut self, peer: usize, _now: Instant) {
        let Some(up) = self.peer_up.get_mut(peer) else {
            return;
        };
        *up = true;
        let mut routes = Vec::new();
        let bit = peer_bit(peer);
        let config = &self.config;
        let counters = &mut self.counters;
        let outputs = &mut self.outputs;
        self.rib.for_each_mut(|key, entry| {
            let paths = export_paths(config, *key, entry, peer);
            if !paths.is_empty() {
                entry.advertised |= bit;
                routes.push(route(*key, paths));
                if routes.len() == ROUTES_PER_MESSAGE {
                    counters.updates_out += 1;
                    outputs.push_back(Output::Peer {
                        peer,
                        message: InterRaeMessage::Update(proto::Update {
                            routes: std::mem::take(&mut routes),
                        }),
                    });
                }
            }
        });
        if !routes.is_empty() {
            self.counters.updates_out += 1;
            self.outputs.push_back(Output::Peer {
                peer,
                message: InterRaeMessage::Update(proto::Update { routes }),
            });
        }
    }

    /// The session with peer `peer` went down (closed, dead, hold timer): every path through
    /// it is withdrawn and the affected routes are decided again.
    pub fn peer_down(&mut self, peer: usize, _now: Instant) {
        let Some(up) = self.peer_up.get_mut(peer) else {
            return;
        };
        *up = false;
        let origin = Origin::peer(peer);
        let bit = peer_bit(peer);
        let mut removed = 0;
        let config = &self.config;
        let scratch = &mut self.scratch;
        let counters = &mut self.counters;
        let queue = &mut self.queue;
        self.rib.for_each_mut(|key, entry| {
            entry.advertised &= !bit;
            if !entry.candidates.iter().any(|c| c.origin == origin) {
                return;
            }
            snapshot(scratch, entry);
            let before = entry.candidates.len();
            entry.candidates.retain(|c| c.origin != origin);
            removed += before - entry.candidates.len();
            if rank(config, scratch, counters, entry, key.cos) && !entry.queued {
                entry.queued = true;
                queue.push(*key);
            }
        });
        self.rib.add_paths(0, removed);
        self.rib.retain_nonempty();
    }

    /// Tells the engine whether a CME connection is up; on connecting, the CME gets the full
    /// state (also call it again when the CME's Reply version changes).
    pub fn set_cme_connected(&mut self, connected: bool) {
        self.cme_connected = connected;
        if connected {
            self.cme_full_state();
        }
    }

    /// Queues the full state for the CME: every prefix's preferred paths and the provisioning.
    pub fn cme_full_state(&mut self) {
        if !self.cme_connected {
            return;
        }
        let prov_inf: Vec<proto::ProvInf> = self
            .config
            .provisioning_table
            .iter()
            .map(|entry| proto::ProvInf {
                entry: Some(entry.clone()),
            })
            .collect();
        let mut request = self.cme_request(true);
        request.prov_inf = prov_inf;
        let mut keys: Vec<RouteKey> = self.rib.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        for key in keys {
            if let Some(entry) = self.rib.get(&key) {
                path_infs(&self.config, key, entry, &mut request.path_inf);
            }
            if request.path_inf.len() >= ENTRIES_PER_CME_REQUEST {
                let next = self.cme_request(false);
                self.push_cme(std::mem::replace(&mut request, next));
            }
        }
        self.push_cme(request);
    }

    fn cme_request(&mut self, full_state: bool) -> proto::GenericRequest {
        self.cme_sequence += 1;
        proto::GenericRequest {
            sequence: self.cme_sequence,
            full_state,
            local_as_number: self.config.local_as,
            path_inf: Vec::new(),
            prov_inf: Vec::new(),
        }
    }

    fn push_cme(&mut self, request: proto::GenericRequest) {
        self.counters.cme_requests += 1;
        self.outputs.push_back(Output::Cme(request));
    }

    /// Handles an update received from peer `peer` (an established session).
    pub fn handle_update(&mut self, peer: usize, update: proto::Update, _now: Instant) {
        self.counters.updates_in += 1;
        let Some(peer_config) = self.config.peers.get(peer) else {
            return;
        };
        let peer_as = peer_config.as_number;
        let local_as = self.config.local_as;
        let origin = Origin::peer(peer);
        for route in update.routes {
            self.counters.routes_in += 1;
            let Some(link) = self.config.peers[peer].link(route.cos_id) else {
                self.counters.rejected += 1;
                continue;
            };
            let Ok(length) = u8::try_from(route.prefix_length) else {
                self.counters.rejected += 1;
                continue;
            };
            if length > 32 {
                self.counters.rejected += 1;
                continue;
            }
            let key = RouteKey {
                prefix: Prefix::from_bits(route.address, length),
                cos: route.cos_id,
            };
            let mut fresh: Vec<Candidate> =
                Vec::with_capacity(route.paths.len().min(MAX_PATHS_PER_ROUTE));
            for path in route.paths.iter().take(MAX_PATHS_PER_ROUTE) {
                let metric = Metric {
                    delay: path.maximum_delay,
                    loss: path.loss_ratio,
                    bandwidth: path.supported_bandwidth,
                };
                if path.as_path.first() != Some(&peer_as)
                    || path.as_path.len() > MAX_AS_PATH_LEN
                    || !metric.is_valid()
                {
                    self.counters.rejected += 1;
                    continue;
                }
                if path.as_path.contains(&local_as) {
                    self.counters.loops += 1;
                    continue;
                }
                fresh.push(Candidate {
                    origin,
                    as_path: self.rib.intern(&path.as_path),
                    metric: link.then(metric),
                    achievement: 0.0,
                });
            }
            self.replace_candidates(key, origin, fresh);
        }
        self.rib.sweep_as_paths();
    }

    /// Handles a withdraw received from peer `peer`.
    pub fn handle_withdraw(&mut self, peer: usize, withdraw: proto::Withdraw, _now: Instant) {
        self.counters.withdraws_in += 1;
        if peer >= self.config.peers.len() {
            return;
        }
        let origin = Origin::peer(peer);
        for route in withdraw.routes {
            let Ok(length) = u8::try_from(route.prefix_length) else {
                self.counters.rejected += 1;
                continue;
            };
            if length > 32 {
                self.counters.rejected += 1;
                continue;
            }
            let key = RouteKey {
                prefix: Prefix::from_bits(route.address, length),
                cos: route.cos_id,
            };
            self.replace_candidates(key, origin, Vec::new());
        }
    }

    fn replace_candidates(&mut self, key: RouteKey, origin: Origin, fresh: Vec<Candidate>) {
        if fresh.is_empty() && self.rib.get(&key).is_none() {
            return;
        }
        let added = fresh.len();
        let entry = self.rib.entry(key);
        snapshot(&mut self.scratch, entry);
        let before = entry.candidates.len();
        entry.candidates.retain(|c| c.origin != origin);
        let removed = before - entry.candidates.len();
        if entry.candidates.is_empty() {
            // Reuse the exact-size vector: one path costs one candidate, not a growth step.
            entry.candidates = fresh;
        } else {
            entry.candidates.extend(fresh);
        }
        let changed = rank(
            &self.config,
            &self.scratch,
            &mut self.counters,
            entry,
            key.cos,
        );
        if changed && !entry.queued {
            entry.queued = true;
            self.queue.push(key);
        }
        let idle = entry.candidates.is_empty();
        self.rib.add_paths(added, removed);
        if idle {
            self.rib.remove_if_empty(&key);
        }
    }

    /// When [`Rae::handle_timeout`] must next be called (`None`: nothing is pending).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.queue.is_empty() {
            return None;
        }
        Some(match self.last_flush {
            Some(last) => last + self.config.minimum_update_interval,
            None => self.started,
        })
    }

    /// Sends the batch of changed routes when `minimum_update_interval` allows it.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.poll_timeout() {
            Some(due) if due <= now => self.flush(now),
            _ => {}
        }
    }

    fn flush(&mut self, now: Instant) {
        self.last_flush = Some(now);
        self.counters.flushes += 1;
        let mut queue = std::mem::take(&mut self.queue);
        queue.sort_unstable();
        let peers = self.peer_up.len();
        let mut updates: Vec<Vec<proto::Route>> = vec![Vec::new(); peers];
        let mut withdraws: Vec<Vec<proto::WithdrawnRoute>> = vec![Vec::new(); peers];
        let mut request = self.cme_connected.then(|| self.cme_request(false));
        for key in queue.iter().copied() {
            let Some(entry) = self.rib.get_mut(&key) else {
                continue;
            };
            entry.queued = false;
            for peer in 0..peers {
                if !self.peer_up[peer] {
                    continue;
                }
                let bit = peer_bit(peer);
                let paths = export_paths(&self.config, key, entry, peer);
                if !paths.is_empty() {
                    entry.advertised |= bit;
                    updates[peer].push(route(key, paths));
                    if updates[peer].len() == ROUTES_PER_MESSAGE {
                        self.counters.updates_out += 1;
                        self.outputs.push_back(Output::Peer {
                            peer,
                            message: InterRaeMessage::Update(proto::Update {
                                routes: std::mem::take(&mut updates[peer]),
                            }),
                        });
                    }
                } else if entry.advertised & bit != 0 || bit == 0 {
                    entry.advertised &= !bit;
                    withdraws[peer].push(proto::WithdrawnRoute {
                        address: key.prefix.bits(),
                        prefix_length: u32::from(key.prefix.length()),
                        cos_id: key.cos,
                    });
                }
            }
            if let Some(request) = request.as_mut() {
                path_infs(&self.config, key, entry, &mut request.path_inf);
            }
            self.rib.remove_if_empty(&key);
            if request
                .as_ref()
                .is_some_and(|r| r.path_inf.len() >= ENTRIES_PER_CME_REQUEST)
            {
                let next = self.cme_request(false);
                if let Some(full) = request.replace(next) {
                    self.push_cme(full);
                }
            }
        }
        for (peer, routes) in withdraws.into_iter().enumerate() {
            for chunk in routes.chunks(ROUTES_PER_MESSAGE) {
                self.counters.withdraws_out += 1;
                self.outputs.push_back(Output::Peer {
                    peer,
                    message: InterRaeMessage::Withdraw(proto::Withdraw {
                        routes: chunk.to_vec(),
                    }),
                });
            }
        }
        for (peer, routes) in updates.into_iter().enumerate() {
            if !routes.is_empty() {
                self.counters.updates_out += 1;
                self.outputs.push_back(Output::Peer {
                    peer,
                    message: InterRaeMessage::Update(proto::Update { routes }),
                });
            }
        }
        if let Some(request) = request {
            if !request.path_inf.is_empty() {
                self.push_cme(request);
            }
        }
        // Keep the queue's allocation for the next batch.
        queue.clear();
        self.queue = queue;
    }

    /// The next thing to send.
    pub fn poll_transmit(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Operator view of one route.
    pub fn route_view(&self, key: &RouteKey) -> Option<RouteView> {
        self.rib
            .get(key)
            .map(|entry| view(&self.config, *key, entry))
    }

    /// Operator view of every route (sorted by prefix then class), optionally filtered.
    pub fn routes(&self, prefix: Option<Prefix>, cos: Option<u32>) -> Vec<RouteView> {
        let mut keys: Vec<RouteKey> = self
            .rib
            .iter()
            .filter(|(k, e)| {
                !e.candidates.is_empty()
                    && prefix.is_none_or(|p| p == k.prefix)
                    && cos.is_none_or(|c| c == k.cos)
            })
            .map(|(k, _)| *k)
            .collect();
        keys.sort_unstable();
        keys.iter().filter_map(|k| self.route_view(k)).collect()
    }
}

fn peer_bit(peer: usize) -> u64 {
    // Peers past the 64th are not tracked: their withdraws are always sent.
    if peer < 64 {
        1 << peer
    } else {
        0
    }
}

fn route(key: RouteKey, paths: Vec<proto::PathAttributes>) -> proto::Route {
    proto::Route {
        address: key.prefix.bits(),
        prefix_length: u32::from(key.prefix.length()),
        cos_id: key.cos,
        paths,
    }
}

/// What we advertise to `peer` for `key`: the preferred paths it can use, extended with the
/// intra-domain segment and our AS.
fn export_paths(
    config: &RaeConfig,
    key: RouteKey,
    entry: &RouteEntry,
    peer: usize,
) -> Vec<proto::PathAttributes> {
    let Some(peer_config) = config.peers.get(peer) else {
        return Vec::new();
    };
    let peer_as = peer_config.as_number;
    let mut out = Vec::new();
    for candidate in entry.preferred() {
        let sink = match candidate.origin.peer_index() {
            None => Endpoint::Prefix(key.prefix),
            Some(from) if from == peer => continue,
            Some(from) => Endpoint::Border(config.peers[from].as_number),
        };
        if candidate.as_path.contains(&peer_as) {
            continue;
        }
        let Some(segment) = config.provisioning(Endpoint::Border(peer_as), sink, key.cos) else {
            continue;
        };
        let metric = segment.then(candidate.metric);
        let mut as_path = Vec::with_capacity(candidate.as_path.len() + 1);
        as_path.push(config.local_as);
        as_path.extend_from_slice(&candidate.as_path);
        out.push(proto::PathAttributes {
            as_path,
            maximum_delay: metric.delay,
            loss_ratio: metric.loss,
            supported_bandwidth: metric.bandwidth,
        });
    }
    out
}

/// The CME's view of `key`: its preferred paths, or one withdrawn entry.
fn path_infs(config: &RaeConfig, key: RouteKey, entry: &RouteEntry, out: &mut Vec<proto::PathInf>) {
    let prefix = proto::Prefix {
        ip_address: key.prefix.address().to_string(),
        prefix_length: u32::from(key.prefix.length()),
    };
    let preferred = entry.preferred();
    if preferred.is_empty() {
        out.push(proto::PathInf {
            prefix: Some(prefix),
            cos_id: key.cos,
            withdrawn: true,
            ..Default::default()
        });
        return;
    }
    for (index, candidate) in preferred.iter().enumerate() {
        let as_path = if candidate.origin == Origin::LOCAL {
            vec![config.local_as]
        } else {
            candidate.as_path.to_vec()
        };
        out.push(proto::PathInf {
            prefix: Some(prefix.clone()),
            cos_id: key.cos,
            as_path,
            metric: Some(candidate.metric.to_proto()),
            rank: index as u32 + 1,
            achievement: candidate.achievement,
            withdrawn: false,
        });
    }
}

fn view(config: &RaeConfig, key: RouteKey, entry: &RouteEntry) -> RouteView {
    RouteView {
        prefix: key.prefix,
        cos: key.cos,
        paths: entry
            .candidates
            .iter()
            .enumerate()
            .map(|(index, c)| PathView {
                rank: index + 1,
                preferred: index < usize::from(entry.preferred),
                via_as: c.origin.peer_index().map(|p| config.peers[p].as_number),
                as_path: c.as_path.to_vec(),
                metric: c.metric,
                achievement: c.achievement,
            })
            .collect(),
    }
}

/// The order of candidates: higher achievement first, then shorter AS path, then lower origin,
/// then the AS path itself, so that the ranking is total and deterministic.
fn compare(a: &Candidate, b: &Candidate) -> Ordering {
    b.achievement
        .total_cmp(&a.achievement)
        .then_with(|| a.as_path.len().cmp(&b.as_path.len()))
        .then_with(|| a.origin.cmp(&b.origin))
        .then_with(|| a.as_path.cmp(&b.as_path))
}

/// Remembers the preferred paths of `entry` before its candidates change, for [`rank`].
fn snapshot(scratch: &mut Vec<PreferredMark>, entry: &RouteEntry) {
    scratch.clear();
    scratch.extend(entry.preferred().iter().map(mark));
}

/// What identifies a preferred path for change detection. AS paths are compared by address:
/// they are interned, and the interner keeps every path alive until its sweep, which never
/// runs between a [`snapshot`] and the [`rank`] that compares against it; so equal addresses
/// mean equal paths, without reference-count traffic on the hot path.
type PreferredMark = (Origin, usize, Metric);

fn mark(candidate: &Candidate) -> PreferredMark {
    (
        candidate.origin,
        AsPath::as_ptr(&candidate.as_path).cast::<u32>() as usize,
        candidate.metric,
    )
}

/// Runs the decision process on one entry; returns whether its preferred paths changed since
/// the last [`snapshot`].
fn rank(
    config: &RaeConfig,
    scratch: &[PreferredMark],
    counters: &mut Counters,
    entry: &mut RouteEntry,
    cos: u32,
) -> bool {
    counters.decision_runs += 1;
    counters.paths_ranked += entry.candidates.len() as u64;
    match config.levels(cos) {
        Some(levels) => {
            for candidate in &mut entry.candidates {
                candidate.achievement = achievement(config.function, levels, &candidate.metric);
            }
        }
        // A class without decision parameters ranks on AS path length alone.
        None => entry
            .candidates
            .iter_mut()
            .for_each(|c| c.achievement = 0.0),
    }
    if entry.candidates.len() > 1 {
        entry.candidates.sort_unstable_by(compare);
    }
    entry.preferred = entry.candidates.len().min(config.limit_of_preferred_paths) as u8;
    let now = entry.preferred();
    now.len() != scratch.len() || now.iter().zip(scratch).any(|(c, old)| mark(c) != *old)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    const LOCAL: u32 = 10;
    const PEERS: [u32; 3] = [20, 30, 40];
    const LOCAL_PREFIX: &str = "127.10.0.0";

    fn class(cos: u32, delay: f64, loss: f64, bandwidth: f64) -> proto::ClassOfService {
        proto::ClassOfService {
            cos_id: cos,
            metric: Some(proto::Metric {
                loss_ratio: Some(loss),
                maximum_delay: Some(delay),
                supported_bandwidth: Some(bandwidth),
            }),
        }
    }

    fn endpoint(kind: proto::endpoint::Kind) -> Option<proto::Endpoint> {
        Some(proto::Endpoint { kind: Some(kind) })
    }

    /// AS 10 with peers 20 (fast link), 30 (slow link), 40; one prefix; every border pair and
    /// border→prefix provisioned with 1 ms, 1e-6, 100 Mb/s.
    fn config(limit: u32, interval: u32) -> RaeConfig {
        let prefix = proto::Prefix {
            ip_address: LOCAL_PREFIX.into(),
            prefix_length: 16,
        };
        let mut provisioning_table = Vec::new();
        let mut ends: Vec<proto::endpoint::Kind> = PEERS
            .iter()
            .map(|a| proto::endpoint::Kind::AsNumber(*a))
            .collect();
        ends.push(proto::endpoint::Kind::Prefix(prefix.clone()));
        for source in &ends {
            for sink in &ends {
                if source != sink && matches!(source, proto::endpoint::Kind::AsNumber(_)) {
                    provisioning_table.push(proto::ProvisioningEntry {
                        source: endpoint(source.clone()),
                        sink: endpoint(sink.clone()),
                        class_table: vec![
                            class(1, 0.001, 1e-6, 100e6),
                            class(2, 0.001, 1e-6, 100e6),
                        ],
                    });
                }
            }
        }
        let message = proto::ConfigurationMessage {
            local_as_number: LOCAL,
            local_ip_address: "127.0.0.10".into(),
            local_port_number: 10001,
            limit_of_preferred_paths: limit,
            minimum_update_interval: interval,
            decision_with_flat_function: true,
            decision_parameters: vec![proto::DecisionParameters {
                id: 1,
                delay_aspiration: 0.5,
                delay_reservation: 1.0,
                loss_aspiration: 1e-5,
                loss_reservation: 1e-3,
                bandwidth_aspiration: 4e6,
                bandwidth_reservation: 1e6,
            }],
            peer_table: PEERS
                .iter()
                .map(|&a| proto::PeerEntry {
                    remote_as_number: a,
                    remote_ip_address: format!("127.0.0.{a}"),
                    remote_port_number: 10001,
                    ttl_value: 1,
                    class_table: vec![
                        class(1, if a == 30 { 0.4 } else { 0.1 }, 1e-6, 10e6),
                        class(2, 0.01, 1e-6, 10e6),
                    ],
                })
                .collect(),
            prefix_table: vec![prefix],
            provisioning_table,
            ..Default::default()
        };
        RaeConfig::from_proto(&message).unwrap()
    }

    fn path(as_path: Vec<u32>, delay: f64, loss: f64, bandwidth: f64) -> proto::PathAttributes {
        proto::PathAttributes {
            as_path,
            maximum_delay: delay,
            loss_ratio: loss,
            supported_bandwidth: bandwidth,
        }
    }

    fn update(address: [u8; 4], cos: u32, paths: Vec<proto::PathAttributes>) -> proto::Update {
        proto::Update {
            routes: vec![proto::Route {
                address: u32::from(std::net::Ipv4Addr::from(address)),
                prefix_length: 24,
                cos_id: cos,
                paths,
            }],
        }
    }

    fn key(address: [u8; 4], cos: u32) -> RouteKey {
        RouteKey {
            prefix: Prefix::new(address.into(), 24),
            cos,
        }
    }

    fn drain(rae: &mut Rae) -> Vec<Output> {
        std::iter::from_fn(|| rae.poll_transmit()).collect()
    }

    #[test]
    fn received_paths_are_extended_with_the_link_and_ranked_by_hand_computed_achievement() {
        let t0 = Instant::now();
        let mut rae = Rae::new(config(2, 0), t0);
        // Same remote path via 20 (link 0.1 s) and via 30 (link 0.4 s), class 1, flat function:
        // via 20: delay 0.1 + 0.5 = 0.6 → u = 0.8; loss 1e-6 + 1e-4 − 1e-10 → u ≈ 0.9091;
        //         bandwidth min(10e6, 8e6) = 8e6 → u = 1 (flat); A = 0.8 + 0.01·2.7091
        // via 30: delay 0.9 → u = 0.2; A = 0.2 + 0.01·2.1091
        rae.handle_update(
            0,
            update([127, 50, 0, 0], 1, vec![path(vec![20, 50], 0.5, 1e-4, 8e6)]),
            t0,
        );
        rae.handle_update(
            1,
            update([127, 50, 0, 0], 1, vec![path(vec![30, 50], 0.5, 1e-4, 8e6)]),
            t0,
        );
        let view = rae.route_view(&key([127, 50, 0, 0], 1)).unwrap();
        assert_eq!(view.paths.len(), 2);
        assert_eq!(view.paths[0].via_as, Some(20));
        assert_eq!(view.paths[1].via_as, Some(30));
        let loss = 1e-6 + 1e-4 - 1e-10;
        let u_loss = (1e-3 - loss) / (1e-3 - 1e-5);
        let expected_20 = 0.8 + 0.01 * (0.8 + u_loss + 1.0);
        let expected_30 = 0.2 + 0.01 * (0.2 + u_loss + 1.0);
        assert!(
            (view.paths[0].achievement - expected_20).abs() < 1e-9,
            "{view:?}"
        );
        assert!(
            (view.paths[1].achievement - expected_30).abs() < 1e-9,
            "{view:?}"
        );
        assert!((view.paths[0].metric.delay - 0.6).abs() < 1e-12);
        assert_eq!(view.paths[0].metric.bandwidth, 8e6);
    }

    #[test]
    fn exports_add_provisioning_prepend_the_local_as_and_skip_the_peer_itself() {
        let t0 = Instant::now();
        let mut rae = Rae::new(config(3, 0), t0);
        rae.peer_up(0, t0);
        rae.peer_up(2, t0);
        rae.handle_timeout(t0); // the first batch (the local prefix)
        drain(&mut rae);
        rae.handle_update(
            0,
            update([127, 50, 0, 0], 1, vec![path(vec![20, 50], 0.5, 1e-4, 8e6)]),
            t0,
        );
        rae.handle_timeout(t0);
        let outputs = drain(&mut rae);
        // Only peer 40 (index 2) gets it: never back to 20.
        assert_eq!(outputs.len(), 1, "{outputs:?}");
        let Output::Peer {
            peer: 2,
            message: InterRaeMessage::Update(update),
        } = &outputs[0]
        else {
            panic!("{outputs:?}")
        };
        let sent = &update.routes[0].paths[0];
        assert_eq!(sent.as_path, vec![LOCAL, 20, 50]);
        // provisioning 40→20 (1 ms) + link 20 (0.1 s) + received 0.5 s
        assert!((sent.maximum_delay - 0.601).abs() < 1e-12, "{sent:?}");
        assert_eq!(sent.supported_bandwidth, 8e6);
    }

    #[test]
    fn paths_through_the_local_as_or_not_starting_with_the_sender_are_dropped() {
        let t0 = Instant::now();
        let mut rae = Rae::new(config(3, 0), t0);
        rae.handle_update(
            0,
            update(
                [127, 50, 0, 0],
                1,
                vec![path(vec![20, LOCAL, 50], 0.1, 0.0, 1e7)],
            ),
            t0,
        );
        rae.handle_update(
            0,
            update([127, 51, 0, 0], 1, vec![path(vec![30, 51], 0.1, 0.0, 1e7)]),
            t0,
        );
        rae.handle_update(
            0,
            update([127, 52, 0, 0], 1, vec![path(vec![20, 52], -1.0, 0.0, 1e7)]),
            t0,
        );
        rae.handle_update(
            0,
            update([127, 53, 0, 0], 9, vec![path(vec![20, 53], 0.1, 0.0, 1e7)]),
            t0,
        );
        assert_eq!(rae.counters().loops, 1);
        assert_eq!(rae.counters().rejected, 3);
        assert_eq!(
            rae.rib().path_count(),
            2,
            "only the local prefix's two classes"
        );
    }

    #[test]
    fn limit_of_preferred_paths_is_kept() {
        let t0 = Instant::now();
        let mut rae = Rae::new(config(2, 0), t0);
        for (peer, peer_as) in PEERS.iter().enumerate() {
            let paths = (0..3)
                .map(|i| path(vec![*peer_as, 60 + i], 0.1, 0.0, 1e7))
                .collect();
            rae.handle_update(peer, update([127, 60, 0, 0], 1, paths), t0);
        }
        let entry = rae.rib().get(&key([127, 60, 0, 0], 1)).unwrap();
        assert_eq!(entry.candidates.len(), 9);
        assert_eq!(entry.preferred().len(), 2);
        // The two best come through 20 (shorter link delay than 30, same as 40 but lower origin).
        assert!(entry
            .preferred()
            .iter()
            .all(|c| c.origin == Origin::peer(0)));
    }

    #[test]
    fn minimum_update_interval_batches_changes() {
        let t0 = Instant::now();
        let mut rae = Rae::new(config(3, 15), t0);
        rae.peer_up(2, t0);
        drain(&mut rae);
        rae.handle_timeout(t0); // first batch: the local prefixes
        drain(&mut rae);
        rae.handle_update(
            0,
            update([127, 50, 0, 0], 1, vec![path(vec![20, 50], 0.1, 0.0, 1e7)]),
            t0,
        );
        rae.handle_update(
            0,
            update([127, 51, 0, 0], 1, vec![path(vec![20, 51], 0.1, 0.0, 1e7)]),
            t0,
        );
        assert_eq!(rae.poll_timeout(), Some(t0 + Duration::from_secs(15)));
        rae.handle_timeout(t0 + Duration::from_secs(14));
        assert!(drain(&mut rae).is_empty());
        rae.handle_timeout(t0 + Duration::from_secs(15));
        let outputs = drain(&mut rae);
        assert_eq!(outputs.len(), 1, "both routes in one update");
        let Output::Peer {
            message: InterRaeMessage::Update(update),
            ..
        } = &outputs[0]
        else {
            panic!()
        };
        assert_eq!(update.routes.len(), 2);
    }

    #[test]
    fn peer_down_withdraws_its_paths_and_reselects() {
        let t0 = Instant::now();
        let mut rae = Rae::new(config(1, 0), t0);
        rae.peer_up(2, t0);
        rae.handle_update(
            0,
            update([127, 50, 0, 0], 1, vec![path(vec![20, 50], 0.1, 0.0, 1e7)]),
            t0,
        );
        rae.handle_update(
            1,
            update([127, 50, 0, 0], 1, vec![path(vec![30, 50], 0.1, 0.0, 1e7)]),
            t0,
        );
        assert_eq!(
            rae.rib().get(&key([127, 50, 0, 0], 1)).unwrap().preferred()[0].origin,
            Origin::peer(0)
        );
        rae.handle_timeout(t0);
        drain(&mut rae);
        rae.peer_down(0, t0);
        let entry = rae.rib().get(&key([127, 50, 0, 0], 1)).unwrap();
        assert_eq!(entry.candidates.len(), 1);
        assert_eq!(entry.preferred()[0].origin, Origin::peer(1));
        rae.handle_timeout(t0);
        let outputs = drain(&mut rae);
        let Output::Peer {
            message: InterRaeMessage::Update(update),
            ..
        } = &outputs[0]
        else {
            panic!("{outputs:?}")
        };
        assert_eq!(update.routes[0].paths[0].as_path, vec![LOCAL, 30, 50]);
        rae.peer_down(1, t0);
        rae.handle_timeout(t0);
        let outputs = drain(&mut rae);
        assert!(
            matches!(&outputs[..], [Output::Peer { peer: 2, message: InterRaeMessage::Withdraw(w) }] if w.routes.len() == 1),
            "{outputs:?}"
        );
        assert!(rae.rib().get(&key([127, 50, 0, 0], 1)).is_none());
    }

    fn arb_update() -> impl Strategy<Value = (usize, u8, u32, Vec<Vec<u32>>)> {
        (
            0usize..3,
            0u8..16,
            1u32..3,
            prop::collection::vec(
                prop::collection::vec(
                    prop::sample::select(vec![10u32, 20, 30, 40, 50, 60, 70]),
                    0..6,
                ),
                0..4,
            ),
        )
    }

    proptest! {
        #[test]
        fn no_path_ever_holds_the_local_as_and_withdrawing_everything_empties_the_rib(
            updates in prop::collection::vec(arb_update(), 1..60),
            by_session_drop in any::<bool>(),
        ) {
            let t0 = Instant::now();
            let mut rae = Rae::new(config(3, 0), t0);
            for peer in 0..3 { rae.peer_up(peer, t0); }
            let mut sent = Vec::new();
            for (peer, third, cos, paths) in &updates {
                let paths = paths
                    .iter()
                    .map(|tail| {
                        let mut p = vec![PEERS[*peer]];
                        p.extend(tail);
                        path(p, 0.01, 1e-6, 1e7)
                    })
                    .collect();
                rae.handle_update(*peer, update([127, 99, *third, 0], *cos, paths), t0);
                sent.push((*peer, *third, *cos));
                rae.handle_timeout(t0);
                for output in drain(&mut rae) {
                    if let Output::Peer { message: InterRaeMessage::Update(u), .. } = output {
                        for r in &u.routes {
                            for p in &r.paths {
                                prop_assert_eq!(p.as_path.iter().filter(|a| **a == LOCAL).count(), 1);
                                prop_assert_eq!(p.as_path[0], LOCAL);
                            }
                        }
                    }
                }
            }
            for (_, entry) in rae.rib().iter() {
                for c in &entry.candidates {
                    prop_assert!(!c.as_path.contains(&LOCAL));
                }
            }
            if by_session_drop {
                for peer in 0..3 { rae.peer_down(peer, t0); }
            } else {
                for (peer, third, cos) in sent {
                    rae.handle_withdraw(peer, proto::Withdraw { routes: vec![proto::WithdrawnRoute {
                        address: u32::from(std::net::Ipv4Addr::new(127, 99, third, 0)),
                        prefix_length: 24,
                        cos_id: cos,
                    }]}, t0);
                }
            }
            rae.handle_timeout(t0);
            drain(&mut rae);
            // Only the local prefix (two classes) remains.
            prop_assert_eq!(rae.rib().path_count(), 2);
            prop_assert_eq!(rae.rib().route_count(), 2);
        }
    }
}
