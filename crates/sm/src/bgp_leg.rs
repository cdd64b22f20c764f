//! The BGP LEG, SM side, sans-IO: what the BGP speaker (`brasa-bgp`) reports becomes
//! [`LearnOp`]s for the subscriber index, which derives the MPLS/VPN labels and the `range@VPN`
//! mappings of `community@VPN` holders from them (`brasa_subscriber::index`).
//!
//! The speaker's events are an exact account of each peer's Adj-RIB-In (`Announce` upserts,
//! `Withdraw` deletes, graceful restart is handled inside the speaker), so most of them map one
//! to one. What is left to this module is the SM's own restart: the routes restored from the
//! store are *stale* until their peer announces them again; the peer's End-of-RIB sweeps the
//! ones it did not announce, and a timer per peer (`restart_time`, counted from start-up and
//! again from the session coming up) sweeps them if the End-of-RIB never comes. Routes of
//! peers that are no longer configured are swept at start-up.
//!
//! The shell feeds events with [`BgpLeg::handle_event`] and calls [`BgpLeg::handle_timeout`]
//! at [`BgpLeg::poll_timeout`]; nothing here reads a clock.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brasa_bgp::{DownReason, RouteAttrs, RouteEvent, RouteTarget, VpnFamily, VpnPrefix};
use brasa_subscriber::{
    Community, LearnOp, LearnedRoute, Prefix, RouteAttributes, RouteDistinguisher, RouteFamily,
    RouteKey, SubscriberIndex,
};

/// One configured peer of the BGP LEG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegPeerConfig {
    /// The peer's address (as the speaker reports it).
    pub address: IpAddr,
    /// How long the routes restored from the store wait for the peer's End-of-RIB, from
    /// start-up and again from the session coming up, before they are swept.
    pub restart_time: Duration,
}

/// The BGP LEG's configuration as the SM needs it (the speaker's own is `brasa-bgp-net`'s).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BgpLegConfig {
    /// The peers.
    pub peers: Vec<LegPeerConfig>,
}

/// What the LEG counted for one peer (since the SM started).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LegCounters {
    /// Sessions that reached Established.
    pub sessions_up: u64,
    /// Sessions that ended.
    pub sessions_down: u64,
    /// Route announcements received.
    pub announced: u64,
    /// Route withdrawals received.
    pub withdrawn: u64,
    /// End-of-RIB markers received.
    pub end_of_ribs: u64,
    /// Announcements the SM cannot use (a route distinguisher type without a text form).
    pub ignored: u64,
    /// Sweeps of restored routes by the restart timer (the End-of-RIB did not come in time).
    pub restart_timeouts: u64,
}

/// The SM's view of one peer of the LEG.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LegNeighbor {
    /// The peer's address.
    pub address: IpAddr,
    /// Whether its session is Established (as last reported by the speaker).
    pub up: bool,
    /// Why the last session ended.
    pub last_down: Option<String>,
    /// Whether restored routes still wait for its End-of-RIB.
    pub awaiting_end_of_rib: bool,
    /// Counters.
    pub counters: LegCounters,
}

struct PeerState {
    config: LegPeerConfig,
    up: bool,
    last_down: Option<String>,
    /// When the restored routes of the peer are swept if no End-of-RIB came.
    sweep_at: Option<Instant>,
    counters: LegCounters,
}

/// The SM side of the BGP LEG.
pub struct BgpLeg {
    peers: Vec<PeerState>,
    /// The last attribute set converted: routes come in groups sharing one, so most
    /// announcements reuse the conversion instead of allocating.
    converted: Option<(Arc<RouteAttrs>, Arc<RouteAttributes>)>,
}

impl BgpLeg {
    /// The LEG for `config`'s peers.
    pub fn new(config: &BgpLegConfig) -> Self {
        BgpLeg {
            peers: config
                .peers
                .iter()
                .map(|p| PeerState {
                    config: p.clone(),
                    up: false,
                    last_down: None,
                    sweep_at: None,
                    counters: LegCounters::default(),
                })
                .collect(),
            converted: None,
        }
    }

    /// At start-up, once the index holds the restored routes: sweeps the routes of peers that
    /// are no longer configured, and arms the restart timer of each configured peer that has
    /// restored routes.
    pub fn start(&mut self, now: Instant, index: &SubscriberIndex) -> Vec<LearnOp> {
        let mut ops = Vec::new();
        for (peer, routes) in index.learned_peers() {
            match self.peer_mut(peer) {
                Some(state) if routes.stale > 0 => {
                    state.sweep_at = Some(now + state.config.restart_time);
                }
                Some(_) => {}
                None => ops.push(LearnOp::SweepStale { peer, family: None }),
            }
        }
        ops
    }

    /// What one event of the speaker means for the index.
    pub fn handle_event(&mut self, now: Instant, event: RouteEvent) -> Option<LearnOp> {
        match event {
            RouteEvent::PeerUp { peer, .. } => {
                let state = self.peer_mut(peer)?;
                state.up = true;
                state.counters.sessions_up += 1;
                if state.sweep_at.is_some() {
                    // The peer is back: give it the whole restart time to send its table.
                    state.sweep_at = Some(now + state.config.restart_time);
                }
                None
            }
            RouteEvent::PeerDown { peer, reason, .. } => {
                let state = self.peer_mut(peer)?;
                state.up = false;
                state.counters.sessions_down += 1;
                state.last_down = Some(down_reason(&reason));
                None
            }
            RouteEvent::Announce { peer, route } => {
                let state = self.peer_mut(peer)?;
                state.counters.announced += 1;
                let label = route.labels.first().map(|l| l.value());
                let (Some(label), Some(_)) = (label, RouteDistinguisher::from_wire(route.rd.0))
                else {
                    state.counters.ignored += 1;
                    // It may replace a usable route of the same key: that one is gone.
                    return Some(LearnOp::Withdraw(RouteKey {
                        peer,
                        rd: route.rd.0,
                        prefix: prefix(route.prefix),
                    }));
                };
                let attrs = self.convert(&route.attrs);
                Some(LearnOp::Announce(LearnedRoute {
                    key: RouteKey {
                        peer,
                        rd: route.rd.0,
                        prefix: prefix(route.prefix),
                    },
                    label,
                    attrs,
                }))
            }
            RouteEvent::Withdraw {
                peer,
                rd,
                prefix: p,
            } => {
                self.peer_mut(peer)?.counters.withdrawn += 1;
                Some(LearnOp::Withdraw(RouteKey {
                    peer,
                    rd: rd.0,
                    prefix: prefix(p),
                }))
            }
            RouteEvent::EndOfRib { peer, family } => {
                self.peer_mut(peer)?.counters.end_of_ribs += 1;
                Some(LearnOp::SweepStale {
                    peer,
                    family: Some(match family {
                        VpnFamily::Ipv4 => RouteFamily::Ipv4,
                        VpnFamily::Ipv6 => RouteFamily::Ipv6,
                    }),
                })
            }
        }
    }

    /// When [`Self::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers.iter().filter_map(|p| p.sweep_at).min()
    }

    /// Sweeps the restored routes of every peer whose restart time has passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<LearnOp> {
        let mut ops = Vec::new();
        for p in &mut self.peers {
            if p.sweep_at.is_some_and(|at| at <= now) {
                p.sweep_at = None;
                p.counters.restart_timeouts += 1;
                ops.push(LearnOp::SweepStale {
                    peer: p.config.address,
                    family: None,
                });
            }
        }
        ops
    }

    /// The peers as the SM sees them, in configuration order.
    pub fn neighbors(&self) -> Vec<LegNeighbor> {
        self.peers
            .iter()
            .map(|p| LegNeighbor {
                address: p.config.address,
                up: p.up,
                last_down: p.last_down.clone(),
                awaiting_end_of_rib: p.sweep_at.is_some(),
                counters: p.counters.clone(),
            })
            .collect()
    }

    fn peer_mut(&mut self, address: IpAddr) -> Option<&mut PeerState> {
        self.peers.iter_mut().find(|p| p.config.address == address)
    }

    fn convert(&mut self, attrs: &Arc<RouteAttrs>) -> Arc<RouteAttributes> {
        if let Some((from, to)) = &self.converted {
            if Arc::ptr_eq(from, attrs) {
                return to.clone();
            }
        }
        let converted = Arc::new(RouteAttributes::new(
            attrs.next_hop,
            attrs.route_targets.iter().map(|t| target(*t)).collect(),
            attrs.communities.iter().map(|c| Community(c.0)).collect(),
        ));
        self.converted = Some((attrs.clone(), converted.clone()));
        converted
    }
}

/// A route target in the SM's RT/RD terms (`ASN:n` or `IPv4:n`, whatever its encoding).
fn target(rt: RouteTarget) -> RouteDistinguisher {
    match rt {
        RouteTarget::As2 { asn, number } => RouteDistinguisher::As {
            asn: u32::from(asn),
            assigned: number,
        },
        RouteTarget::As4 { asn, number } => RouteDistinguisher::As {
            asn,
            assigned: u32::from(number),
        },
        RouteTarget::Ipv4 { addr, number } => RouteDistinguisher::Ip {
            addr,
            assigned: number,
        },
    }
}

/// The speaker's prefixes are canonical (no host bits), so this never fails in practice; a
/// prefix that would not convert is the whole address range of its family, which matches no
/// real route.
fn prefix(p: VpnPrefix) -> Prefix {
    match p {
        VpnPrefix::V4 { addr, len } => {
            Prefix::new(addr.into(), len).unwrap_or(Prefix::V4(addr, len.min(32)))
        }
        VpnPrefix::V6 { addr, len } => {
            Prefix::new(addr.into(), len).unwrap_or(Prefix::V6(addr, len.min(128)))
        }
    }
}

fn down_reason(reason: &DownReason) -> String {
    match reason {
        DownReason::ConnectionLost => "connection lost".into(),
        DownReason::NotificationReceived(n) => format!("NOTIFICATION received: {n}"),
        DownReason::ProtocolError(e) => format!("NOTIFICATION sent: {e}"),
        DownReason::Stopped => "stopped".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brasa_bgp::{
        Community as BgpCommunity, FamilySet, Label, LabelStack, Route, RouteDistinguisher as Rd,
        SessionInfo,
    };
    use brasa_subscriber::{IndexConfig, MplsVpnEntry, NameCase, Subscriber, SubscriberName};
    use brasa_subscriber::{Vpn, VpnKind};

    const PEER: &str = "192.0.2.1";

    fn peer() -> IpAddr {
        PEER.parse().unwrap()
    }

    fn leg() -> BgpLeg {
        BgpLeg::new(&BgpLegConfig {
            peers: vec![LegPeerConfig {
                address: peer(),
                restart_time: Duration::from_secs(120),
            }],
        })
    }

    fn attrs(next_hop: &str, communities: &[(u16, u16)]) -> Arc<RouteAttrs> {
        Arc::new(RouteAttrs {
            next_hop: next_hop.parse().unwrap(),
            origin: brasa_bgp::wire::update::Origin::Igp,
            as_path: Box::new([]),
            med: None,
            local_pref: Some(100),
            route_targets: Box::new([RouteTarget::As2 {
                asn: 1000,
                number: 1,
            }]),
            extended_communities: Box::new([]),
            communities: communities
                .iter()
                .map(|(h, l)| BgpCommunity::new(*h, *l))
                .collect(),
            large_communities: Box::new([]),
        })
    }

    fn announce(prefix: &str, label: u32, attrs: &Arc<RouteAttrs>) -> RouteEvent {
        RouteEvent::Announce {
            peer: peer(),
            route: Route {
                rd: Rd::as2(1000, 1),
                prefix: prefix.parse().unwrap(),
                labels: LabelStack::single(Label::new(label).unwrap()),
                attrs: attrs.clone(),
            },
        }
    }

    fn up() -> RouteEvent {
        RouteEvent::PeerUp {
            peer: peer(),
            session: SessionInfo {
                remote_as: 65000,
                remote_id: "192.0.2.1".parse().unwrap(),
                hold_time: 90,
                families: FamilySet::BOTH,
                four_octet_as: true,
                route_refresh: true,
                graceful_restart: Some((120, FamilySet::BOTH)),
                peer_restarted: false,
                add_path_refused: false,
                enhanced_route_refresh_refused: false,
            },
        }
    }

    fn seed_index() -> SubscriberIndex {
        let mut index = SubscriberIndex::new(IndexConfig {
            domains: vec!["subscribers".into()],
            name_case: NameCase::Sensitive,
        })
        .unwrap();
        index
            .add_vpn(Vpn {
                name: "vpn1".into(),
                domain: "subscribers".into(),
                kind: VpnKind::Mpls(vec![MplsVpnEntry::new(
                    "1000:1@10.10.10.10".parse().unwrap(),
                )]),
            })
            .unwrap();
        let mut sub1 = Subscriber::new(SubscriberName::new("sub1", NameCase::Sensitive).unwrap());
        sub1.communities = vec!["100:100@vpn1".parse().unwrap()];
        index.upsert(sub1).unwrap();
        index
    }

    #[test]
    fn announcements_become_learnt_routes_sharing_their_attributes() {
        let mut leg = leg();
        let now = Instant::now();
        let a = attrs("::ffff:10.10.10.10", &[(100, 100), (100, 100)]);
        let Some(LearnOp::Announce(first)) = leg.handle_event(now, announce("1.1.1.0/24", 10, &a))
        else {
            panic!("an announcement");
        };
        assert_eq!(first.key.rd, Rd::as2(1000, 1).0);
        assert_eq!(first.key.prefix.to_string(), "1.1.1.0/24");
        assert_eq!(first.label, 10);
        assert_eq!(first.attrs.next_hop.to_string(), "10.10.10.10", "unmapped");
        assert_eq!(first.attrs.communities.len(), 1, "deduplicated");
        assert_eq!(first.attrs.targets[0].to_string(), "1000:1");
        let Some(LearnOp::Announce(second)) = leg.handle_event(now, announce("1.1.2.0/24", 11, &a))
        else {
            panic!("an announcement");
        };
        assert!(Arc::ptr_eq(&first.attrs, &second.attrs), "converted once");
        assert_eq!(leg.neighbors()[0].counters.announced, 2);
        // Events of unconfigured peers are not the SM's business.
        let stranger = RouteEvent::Withdraw {
            peer: "192.0.2.99".parse().unwrap(),
            rd: Rd::as2(1, 1),
            prefix: "1.0.0.0/8".parse().unwrap(),
        };
        assert_eq!(leg.handle_event(now, stranger), None);
    }

    #[test]
    fn the_seed_route_through_the_leg_into_the_index() {
        let mut leg = leg();
        let mut index = seed_index();
        let now = Instant::now();
        let a = attrs("10.10.10.10", &[(100, 100)]);
        let ops: Vec<LearnOp> = [up(), announce("1.1.1.0/24", 10, &a)]
            .into_iter()
            .filter_map(|e| leg.handle_event(now, e))
            .collect();
        index.learn(ops);
        assert_eq!(
            index.lookup("1.1.1.7".parse().unwrap(), Some("vpn1")),
            Ok(Some("sub1"))
        );
        let withdraw = RouteEvent::Withdraw {
            peer: peer(),
            rd: Rd::as2(1000, 1),
            prefix: "1.1.1.0/24".parse().unwrap(),
        };
        index.learn(leg.handle_event(now, withdraw));
        assert_eq!(
            index.lookup("1.1.1.7".parse().unwrap(), Some("vpn1")),
            Ok(None)
        );
        let n = &leg.neighbors()[0];
        assert!(n.up);
        assert_eq!((n.counters.sessions_up, n.counters.withdrawn), (1, 1));
    }

    #[test]
    fn restored_routes_wait_for_end_of_rib_or_the_restart_time() {
        let now = Instant::now();
        let a = attrs("10.10.10.10", &[(100, 100)]);
        let restored = |leg: &mut BgpLeg| {
            let mut index = seed_index();
            let mut routes = Vec::new();
            for (p, l) in [("1.1.1.0/24", 10), ("1.1.2.0/24", 11)] {
                if let Some(LearnOp::Announce(r)) = leg.handle_event(now, announce(p, l, &a)) {
                    routes.push(r);
                }
            }
            index.restore_learned(routes);
            index
        };

        // End-of-RIB: what was not announced again goes.
        let mut leg = leg();
        let mut index = restored(&mut leg);
        assert!(leg.start(now, &index).is_empty());
        assert_eq!(leg.poll_timeout(), Some(now + Duration::from_secs(120)));
        let later = now + Duration::from_secs(100);
        assert_eq!(leg.handle_event(later, up()), None);
        assert_eq!(
            leg.poll_timeout(),
            Some(later + Duration::from_secs(120)),
            "the session coming up restarts the wait"
        );
        let ops: Vec<LearnOp> = [
            announce("1.1.1.0/24", 10, &a),
            RouteEvent::EndOfRib {
                peer: peer(),
                family: VpnFamily::Ipv4,
            },
        ]
        .into_iter()
        .filter_map(|e| leg.handle_event(later, e))
        .collect();
        index.learn(ops);
        assert_eq!(
            index.get("sub1").unwrap().learned[0].to_string(),
            "1.1.1.0/24@vpn1"
        );
        assert_eq!(index.get("sub1").unwrap().learned.len(), 1);

        // No End-of-RIB: the timer sweeps everything restored.
        let mut leg = self::leg();
        let mut index = restored(&mut leg);
        leg.start(now, &index);
        assert!(leg
            .handle_timeout(now + Duration::from_secs(119))
            .is_empty());
        let ops = leg.handle_timeout(now + Duration::from_secs(120));
        assert_eq!(
            ops,
            [LearnOp::SweepStale {
                peer: peer(),
                family: None
            }]
        );
        index.learn(ops);
        assert!(index.get("sub1").unwrap().learned.is_empty());
        assert_eq!(leg.poll_timeout(), None);
        assert_eq!(leg.neighbors()[0].counters.restart_timeouts, 1);

        // A peer no longer configured: its routes go at start-up.
        let mut leg = self::leg();
        let index = restored(&mut leg);
        let mut other = BgpLeg::new(&BgpLegConfig::default());
        assert_eq!(
            other.start(now, &index),
            [LearnOp::SweepStale {
                peer: peer(),
                family: None
            }]
        );
    }
}
