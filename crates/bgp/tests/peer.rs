//! The session state machine and Adj-RIB-In of one peer, driven without sockets or clocks.

use brasa_bgp::wire::open::{Capabilities, GracefulRestart, OpenRepr};
use brasa_bgp::wire::update::{emit_vpn_update, VpnAttributes, VpnRoute, VpnUpdateKind};
use brasa_bgp::wire::{emit_end_of_rib, emit_keepalive, Message, MessageType};
use brasa_bgp::*;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

const LOCAL_AS: u32 = 65000;
const PEER: &str = "127.0.0.2";

struct Harness {
    peer: Peer,
    now: Instant,
}

fn local() -> LocalConfig {
    LocalConfig {
        asn: LOCAL_AS,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
    }
}

fn config() -> PeerConfig {
    let mut c = PeerConfig::new(PEER.parse().unwrap(), LOCAL_AS, ConnectMode::Passive);
    c.hold_time = 9;
    c
}

/// The OPEN a GoBGP-like peer sends: VPN families, 4-octet AS, route refresh, and graceful
/// restart (restart time 30 s, forwarding preserved) when `gr`.
fn remote_open(gr: bool, restarted: bool) -> Vec<u8> {
    let open = OpenRepr {
        asn: LOCAL_AS,
        hold_time: 90,
        bgp_id: Ipv4Addr::new(192, 0, 2, 2),
        capabilities: Capabilities {
            multiprotocol: vec![AfiSafi::VPN_IPV4, AfiSafi::VPN_IPV6],
            route_refresh: true,
            four_octet_as: Some(LOCAL_AS),
            graceful_restart: gr.then(|| GracefulRestart {
                restarting: restarted,
                notification: false,
                restart_time: 30,
                families: vec![(AfiSafi::VPN_IPV4, true), (AfiSafi::VPN_IPV6, true)],
            }),
            add_path: vec![(AfiSafi::VPN_IPV4, 3)],
            ..Capabilities::default()
        },
    };
    let mut out = Vec::new();
    open.emit(&mut out);
    out
}

fn keepalive() -> Vec<u8> {
    let mut out = Vec::new();
    emit_keepalive(&mut out);
    out
}

fn route(i: u32) -> VpnRoute {
    VpnRoute {
        rd: RouteDistinguisher::as2(1000, 1),
        prefix: VpnPrefix::new_v4(Ipv4Addr::from(0x0101_0000 + (i << 8)), 24).unwrap(),
        labels: LabelStack::single(Label::new(10 + i).unwrap()),
    }
}

fn seed_attrs(community: &str) -> VpnAttributes {
    VpnAttributes {
        local_pref: Some(100),
        communities: vec![community.parse().unwrap()],
        extended_communities: vec!["1000:1".parse::<RouteTarget>().unwrap().to_extended()],
        ..VpnAttributes::default()
    }
}

fn announce(routes: &[VpnRoute], community: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let attrs = seed_attrs(community);
    let mut rest = routes;
    while !rest.is_empty() {
        let kind = VpnUpdateKind::Announce(&attrs, IpAddr::V4(Ipv4Addr::new(10, 10, 10, 10)));
        rest = &rest[emit_vpn_update(&mut out, VpnFamily::Ipv4, kind, rest)..];
    }
    out
}

fn withdraw(routes: &[VpnRoute]) -> Vec<u8> {
    let mut out = Vec::new();
    emit_vpn_update(&mut out, VpnFamily::Ipv4, VpnUpdateKind::Withdraw, routes);
    out
}

fn eor() -> Vec<u8> {
    let mut out = Vec::new();
    emit_end_of_rib(&mut out, AfiSafi::VPN_IPV4);
    out
}

/// The messages in `bytes`, as (type, body).
fn messages(bytes: &[u8]) -> Vec<(MessageType, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Ok(Some((kind, len))) = Message::new_unchecked(rest).check() {
        out.push((kind, rest[19..len].to_vec()));
        rest = &rest[len..];
    }
    assert!(rest.is_empty(), "trailing bytes");
    out
}

impl Harness {
    fn new(config: PeerConfig) -> Self {
        let now = Instant::now();
        let mut peer = Peer::new(local(), config).unwrap();
        peer.start(now);
        Harness { peer, now }
    }

    fn established(gr: bool) -> Self {
        let mut h = Harness::new(config());
        h.connect(gr, false);
        h
    }

    fn connect(&mut self, gr: bool, restarted: bool) {
        self.peer.connection_opened(self.now).unwrap();
        let sent = messages(&self.peer.poll_transmit().unwrap());
        assert_eq!(sent[0].0, MessageType::Open);
        self.input(&remote_open(gr, restarted));
        assert_eq!(self.peer.state(), State::OpenConfirm);
        self.input(&keepalive());
        assert_eq!(self.peer.state(), State::Established);
        let sent = messages(&self.peer.poll_transmit().unwrap());
        // KEEPALIVE answering the OPEN, then an End-of-RIB per family.
        assert_eq!(
            sent.iter().map(|m| m.0).collect::<Vec<_>>(),
            [
                MessageType::Keepalive,
                MessageType::Update,
                MessageType::Update
            ]
        );
    }

    fn input(&mut self, bytes: &[u8]) {
        assert_eq!(self.peer.handle_input(self.now, bytes), bytes.len());
    }

    fn events(&mut self) -> Vec<RouteEvent> {
        std::iter::from_fn(|| self.peer.poll_event()).collect()
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        while let Some(t) = self.peer.poll_timeout().filter(|t| *t <= self.now) {
            self.peer.handle_timeout(t.max(self.now));
        }
    }

    fn notification_sent(&mut self) -> Notification {
        let sent = messages(&self.peer.poll_transmit().expect("a NOTIFICATION"));
        let (kind, body) = sent.last().unwrap();
        assert_eq!(*kind, MessageType::Notification);
        assert_eq!(self.peer.poll_action(), Some(Action::Disconnect));
        Notification::parse(body).unwrap()
    }
}

/// A consumer mirror: applies events exactly as the documentation says a consumer should.
#[derive(Default)]
struct Mirror {
    routes: BTreeMap<(RouteDistinguisher, VpnPrefix), Route>,
}

impl Mirror {
    fn apply(&mut self, events: &[RouteEvent]) {
        for e in events {
            match e {
                RouteEvent::Announce { route, .. } => {
                    self.routes.insert((route.rd, route.prefix), route.clone());
                }
                RouteEvent::Withdraw { rd, prefix, .. } => {
                    assert!(
                        self.routes.remove(&(*rd, *prefix)).is_some(),
                        "withdraw of a route never announced"
                    );
                }
                _ => {}
            }
        }
    }
}

#[test]
fn session_comes_up_with_the_negotiated_capabilities() {
    let mut h = Harness::established(true);
    let events = h.events();
    let [RouteEvent::PeerUp { peer, session }] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(peer.to_string(), PEER);
    assert_eq!(session.hold_time, 9);
    assert_eq!(session.families, FamilySet::BOTH);
    assert!(session.four_octet_as && session.route_refresh);
    assert_eq!(session.graceful_restart, Some((30, FamilySet::BOTH)));
    assert!(session.add_path_refused);
    // Our OPEN announces what it should.
    let mut h = Harness::new(config());
    h.peer.connection_opened(h.now).unwrap();
    let sent = messages(&h.peer.poll_transmit().unwrap());
    let open = OpenRepr::parse(&sent[0].1).unwrap();
    assert_eq!(
        open.capabilities.multiprotocol,
        vec![AfiSafi::VPN_IPV4, AfiSafi::VPN_IPV6]
    );
    assert_eq!(open.capabilities.four_octet_as, Some(LOCAL_AS));
    assert!(open.capabilities.route_refresh && open.capabilities.add_path.is_empty());
    assert!(open
        .capabilities
        .graceful_restart
        .is_some_and(|g| g.families.is_empty()));
}

#[test]
fn the_seed_route_is_announced_and_withdrawn() {
    let mut h = Harness::established(false);
    h.events();
    h.input(&announce(&[route(0)], "100:100"));
    let events = h.events();
    let [RouteEvent::Announce { route: r, .. }] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(
        (r.rd.to_string(), r.prefix.to_string()),
        ("1000:1".into(), "1.1.0.0/24".into())
    );
    assert_eq!(r.labels.first().unwrap().value(), 10);
    assert_eq!(r.attrs.route_targets[0].to_string(), "1000:1");
    assert_eq!(r.attrs.communities[0].to_string(), "100:100");
    assert_eq!(r.attrs.next_hop.to_string(), "10.10.10.10");

    // The same announcement again changes nothing and says nothing.
    h.input(&announce(&[route(0)], "100:100"));
    assert!(h.events().is_empty());
    // A new community replaces the route.
    h.input(&announce(&[route(0)], "100:200"));
    assert!(matches!(&h.events()[..], [RouteEvent::Announce { .. }]));

    h.input(&withdraw(&[route(0), route(1)]));
    let events = h.events();
    assert_eq!(
        events.len(),
        1,
        "only the route that was there is withdrawn: {events:?}"
    );
    assert!(h.peer.rib().is_empty());
}

#[test]
fn treat_as_withdraw_removes_routes_and_keeps_the_session() {
    let mut h = Harness::established(false);
    h.input(&announce(&[route(0)], "100:100"));
    h.events();
    let mut bad = announce(&[route(0)], "100:100");
    // Turn the ORIGIN value (first attribute, value at offset 19 + 4 + 3) into 7.
    assert_eq!(&bad[23..26], &[0x40, 1, 1]);
    bad[26] = 7;
    h.input(&bad);
    assert!(matches!(&h.events()[..], [RouteEvent::Withdraw { .. }]));
    assert_eq!(h.peer.state(), State::Established);
    assert_eq!(h.peer.stats().treat_as_withdraw, 1);
}

#[test]
fn malformed_messages_send_the_right_notification_and_reset() {
    type Corrupt = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Corrupt, (u8, u8))> = vec![
        ("bad marker", Box::new(|m| m[0] = 0), (1, 1)),
        (
            "bad length",
            Box::new(|m| m[16..18].copy_from_slice(&5000u16.to_be_bytes())),
            (1, 2),
        ),
        ("bad type", Box::new(|m| m[18] = 9), (1, 3)),
        // MP_REACH_NLRI flags: the attribute after ORIGIN, AS_PATH, LOCAL_PREF, COMMUNITIES, EXT.
        (
            "bad attribute flags",
            Box::new(|m| {
                let at = mp_reach_offset(m);
                m[at] = 0x40 | (m[at] & 0x10);
            }),
            (3, 4),
        ),
        (
            "truncated NLRI",
            Box::new(|m| {
                // Claim a longer prefix than the bytes present in the last NLRI.
                let at = mp_reach_offset(m);
                let nlri_len_at = m.len() - 15;
                assert!(at < nlri_len_at);
                m[nlri_len_at] = 112 + 8;
            }),
            (3, 9),
        ),
    ];
    for (name, corrupt, (code, subcode)) in cases {
        let mut h = Harness::established(false);
        h.input(&announce(&[route(5)], "1:1"));
        h.events();
        let mut msg = announce(&[route(0)], "100:100");
        corrupt(&mut msg);
        h.input(&msg);
        let n = h.notification_sent();
        assert_eq!((n.code, n.subcode), (code, subcode), "{name}: {n}");
        let events = h.events();
        // The session's routes are withdrawn (no graceful restart after a NOTIFICATION), then
        // the session is reported down; the corrupt message added nothing.
        assert!(
            matches!(
                &events[..],
                [RouteEvent::Withdraw { .. }, RouteEvent::PeerDown { .. }]
            ),
            "{name}: {events:?}"
        );
        assert_eq!(
            h.peer.state(),
            State::Active,
            "{name}: waits for the next connection"
        );
        assert!(h.peer.rib().is_empty());
    }
}

fn mp_reach_offset(m: &[u8]) -> usize {
    let mut pos = 23;
    loop {
        let flags = m[pos];
        if m[pos + 1] == 14 {
            return pos;
        }
        let (len, hdr) = if flags & 0x10 != 0 {
            (usize::from(u16::from_be_bytes([m[pos + 2], m[pos + 3]])), 4)
        } else {
            (usize::from(m[pos + 2]), 3)
        };
        pos += hdr + len;
    }
}

#[test]
fn open_errors() {
    type Edit = Box<dyn Fn(&mut OpenRepr)>;
    let cases: Vec<(Edit, (u8, u8))> = vec![
        (
            Box::new(|o| o.capabilities.four_octet_as = Some(65001)),
            (2, 2),
        ),
        (Box::new(|o| o.bgp_id = Ipv4Addr::new(192, 0, 2, 1)), (2, 3)),
        (Box::new(|o| o.hold_time = 2), (2, 6)),
        (
            Box::new(|o| o.capabilities.multiprotocol = vec![AfiSafi::IPV4_UNICAST]),
            (2, 7),
        ),
    ];
    for (edit, expected) in cases {
        let mut h = Harness::new(config());
        h.peer.connection_opened(h.now).unwrap();
        h.peer.poll_transmit();
        let mut open = OpenRepr::parse(&remote_open(false, false)[19..]).unwrap();
        edit(&mut open);
        let mut bytes = Vec::new();
        open.emit(&mut bytes);
        h.input(&bytes);
        let n = h.notification_sent();
        assert_eq!((n.code, n.subcode), expected);
        assert!(
            h.events().is_empty(),
            "no PeerUp, no PeerDown for a session that never came up"
        );
    }
}

#[test]
fn unexpected_messages_are_fsm_errors_with_the_state_subcode() {
    let mut h = Harness::new(config());
    h.peer.connection_opened(h.now).unwrap();
    h.peer.poll_transmit();
    h.input(&keepalive());
    assert_eq!(h.notification_sent().subcode, 1);

    let mut h = Harness::new(config());
    h.peer.connection_opened(h.now).unwrap();
    h.input(&remote_open(false, false));
    h.peer.poll_transmit();
    h.input(&announce(&[route(0)], "1:1"));
    let n = h.notification_sent();
    assert_eq!((n.code, n.subcode), (5, 2));
}

#[test]
fn hold_timer_expiry_sends_notification_and_withdraws() {
    let mut h = Harness::established(true);
    h.input(&announce(&[route(0), route(1)], "1:1"));
    h.events();
    h.advance(Duration::from_secs(3));
    assert_eq!(
        messages(&h.peer.poll_transmit().unwrap())[0].0,
        MessageType::Keepalive
    );
    h.advance(Duration::from_secs(7));
    let n = h.notification_sent();
    assert_eq!((n.code, n.subcode), (4, 0));
    let events = h.events();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, RouteEvent::Withdraw { .. }))
            .count(),
        2
    );
    assert!(matches!(
        events.last(),
        Some(RouteEvent::PeerDown { stale: 0, .. })
    ));
}

#[test]
fn graceful_restart_keeps_routes_stale_and_end_of_rib_reconciles() {
    let mut h = Harness::established(true);
    let mut mirror = Mirror::default();
    h.input(&announce(&[route(0), route(1), route(2)], "100:100"));
    mirror.apply(&h.events());
    assert_eq!(mirror.routes.len(), 3);

    h.peer.connection_closed(h.now);
    let events = h.events();
    assert!(
        matches!(
            &events[..],
            [RouteEvent::PeerDown {
                stale: 3,
                reason: DownReason::ConnectionLost,
                ..
            }]
        ),
        "{events:?}"
    );
    assert_eq!(h.peer.rib().stale(), 3);
    h.advance(Duration::from_secs(20));
    assert_eq!(h.peer.rib().len(), 3, "kept within the restart time");

    h.connect(true, true);
    // Route 0 unchanged, route 1 with a new label, route 2 not re-announced.
    let mut moved = route(1);
    moved.labels = LabelStack::single(Label::new(99).unwrap());
    h.input(&announce(&[route(0), moved], "100:100"));
    let events = h.events();
    assert!(matches!(&events[0], RouteEvent::PeerUp { session, .. } if session.peer_restarted));
    assert_eq!(
        events.len(),
        2,
        "only the changed route is announced: {events:?}"
    );
    mirror.apply(&events);
    assert_eq!(h.peer.rib().stale(), 1);
    h.input(&eor());
    let events = h.events();
    mirror.apply(&events);
    assert!(matches!(
        &events[..],
        [
            RouteEvent::Withdraw { .. },
            RouteEvent::EndOfRib {
                family: VpnFamily::Ipv4,
                ..
            }
        ]
    ));
    let held: Vec<_> = mirror
        .routes
        .values()
        .map(|r| (r.prefix, r.labels))
        .collect();
    assert_eq!(
        held,
        vec![
            (route(0).prefix, route(0).labels),
            (moved.prefix, moved.labels)
        ]
    );
    assert_eq!(h.peer.rib().len(), 2);
    assert_eq!(h.peer.rib().stale(), 0);
}

#[test]
fn stale_routes_go_when_the_restart_time_passes_or_forwarding_was_not_kept() {
    let mut h = Harness::established(true);
    h.input(&announce(&[route(0)], "1:1"));
    h.events();
    h.peer.connection_closed(h.now);
    h.events();
    h.advance(Duration::from_secs(31));
    assert!(matches!(&h.events()[..], [RouteEvent::Withdraw { .. }]));
    assert!(h.peer.rib().is_empty());

    // The new OPEN lacks graceful restart: stale routes are removed at once.
    let mut h = Harness::established(true);
    h.input(&announce(&[route(0)], "1:1"));
    h.peer.connection_closed(h.now);
    h.events();
    h.connect(false, false);
    let events = h.events();
    assert!(
        matches!(
            &events[..],
            [RouteEvent::Withdraw { .. }, RouteEvent::PeerUp { .. }]
        ),
        "{events:?}"
    );
}

#[test]
fn without_graceful_restart_a_lost_session_withdraws_everything() {
    let mut h = Harness::established(false);
    h.input(&announce(&[route(0), route(1)], "1:1"));
    h.events();
    h.peer.connection_closed(h.now);
    let events = h.events();
    assert_eq!(events.len(), 3);
    assert!(matches!(events[2], RouteEvent::PeerDown { stale: 0, .. }));
}

#[test]
fn stop_sends_cease_and_refuses_connections() {
    let mut h = Harness::established(true);
    h.input(&announce(&[route(0)], "1:1"));
    h.events();
    h.peer.stop(h.now);
    let n = h.notification_sent();
    assert_eq!((n.code, n.subcode), (6, 2));
    assert!(matches!(
        &h.events()[..],
        [
            RouteEvent::Withdraw { .. },
            RouteEvent::PeerDown {
                reason: DownReason::Stopped,
                ..
            }
        ]
    ));
    assert!(h.peer.connection_opened(h.now).is_err());
    assert_eq!(h.peer.state(), State::Idle);
}

#[test]
fn active_peer_redials_with_doubling_back_off() {
    let mut c = config();
    c.mode = ConnectMode::Active;
    c.connect_retry = Duration::from_secs(1);
    c.connect_retry_max = Duration::from_secs(4);
    let mut h = Harness::new(c);
    let mut gaps = Vec::new();
    for _ in 0..4 {
        assert_eq!(h.peer.poll_action(), Some(Action::Connect));
        h.peer.connection_failed(h.now);
        let next = h.peer.poll_timeout().unwrap();
        gaps.push((next - h.now).as_secs());
        h.now = next;
        h.peer.handle_timeout(next);
    }
    assert_eq!(gaps, [1, 2, 4, 4]);
}

#[test]
fn route_refresh_is_requested_only_when_it_can_be() {
    let mut h = Harness::new(config());
    assert_eq!(
        h.peer.request_route_refresh(VpnFamily::Ipv4),
        Err(RequestError::NotEstablished)
    );
    h.connect(false, false);
    h.peer.request_route_refresh(VpnFamily::Ipv6).unwrap();
    let sent = messages(&h.peer.poll_transmit().unwrap());
    assert_eq!(sent[0].0, MessageType::RouteRefresh);
}

/// A flap storm: sessions lost (with and without graceful restart) while routes come and go;
/// after the last session's End-of-RIB the consumer's mirror equals the peer's table exactly.
#[test]
fn flap_storm_leaves_exactly_the_announced_routes() {
    let mut h = Harness::established(true);
    let mut mirror = Mirror::default();
    let mut seed = 0x2545_f491_u32;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    // What the remote speaker currently has in its table.
    let mut table: BTreeMap<u32, u32> = BTreeMap::new();
    for round in 0..300 {
        let i = next() % 40;
        match next() % 6 {
            0 | 1 => {
                let label = next() % 3;
                table.insert(i, label);
                let mut r = route(i);
                r.labels = LabelStack::single(Label::new(label).unwrap());
                if h.peer.state() == State::Established {
                    h.input(&announce(&[r], "1:1"));
                }
            }
            2 => {
                table.remove(&i);
                if h.peer.state() == State::Established {
                    h.input(&withdraw(&[route(i)]));
                }
            }
            3 => h.peer.connection_closed(h.now),
            4 => {
                if h.peer.state() == State::Established {
                    h.input(&[0u8; 19]); // bad marker: NOTIFICATION, no graceful restart
                    h.peer.poll_transmit();
                    h.peer.poll_action();
                }
            }
            _ => {
                if h.peer.state() == State::Active {
                    // Reconnect; the peer re-sends its whole table, sometimes without End-of-RIB.
                    h.connect(true, true);
                    let all: Vec<VpnRoute> = table
                        .iter()
                        .map(|(i, l)| VpnRoute {
                            labels: LabelStack::single(Label::new(*l).unwrap()),
                            ..route(*i)
                        })
                        .collect();
                    if !all.is_empty() {
                        h.input(&announce(&all, "1:1"));
                    }
                    if round % 3 != 0 {
                        h.input(&eor());
                    }
                }
            }
        }
        h.now += Duration::from_millis(100);
        mirror.apply(&h.events());
    }
    if h.peer.state() != State::Established {
        h.connect(true, true);
    }
    let all: Vec<VpnRoute> = table
        .iter()
        .map(|(i, l)| VpnRoute {
            labels: LabelStack::single(Label::new(*l).unwrap()),
            ..route(*i)
        })
        .collect();
    if !all.is_empty() {
        h.input(&announce(&all, "1:1"));
    }
    h.input(&eor());
    mirror.apply(&h.events());
    let expected: Vec<_> = all.iter().map(|r| (r.rd, r.prefix, r.labels)).collect();
    let held: Vec<_> = mirror
        .routes
        .values()
        .map(|r| (r.rd, r.prefix, r.labels))
        .collect();
    assert_eq!(held, expected);
    assert_eq!(h.peer.rib().len(), expected.len());
    assert_eq!(h.peer.rib().stale(), 0);
}

proptest::proptest! {
    /// Arbitrary bytes after a valid header never panic the parser or the session, and either
    /// leave it established or end it with a NOTIFICATION.
    #[test]
    fn arbitrary_messages_never_panic(kind in 1u8..=6, body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
        let mut h = Harness::established(true);
        h.events();
        let mut msg = vec![0xff; 16];
        msg.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        msg.push(kind);
        msg.extend_from_slice(&body);
        h.input(&msg);
        h.events();
        if h.peer.state() != State::Established {
            if kind == 3 && body.len() >= 2 {
                // A NOTIFICATION received: closed without an answer.
                proptest::prop_assert_eq!(h.peer.poll_action(), Some(Action::Disconnect));
            } else {
                h.notification_sent();
            }
        }
        let _ = brasa_bgp::wire::update::Update::parse(&body, &brasa_bgp::wire::update::UpdateContext {
            four_octet_as: kind % 2 == 0, multiple_labels: kind % 3 == 0, internal: true,
        });
    }
}

#[test]
fn a_new_connection_replaces_an_established_session_gracefully() {
    let mut h = Harness::established(true);
    h.input(&announce(&[route(0)], "1:1"));
    h.events();
    assert_eq!(h.peer.connection_opened(h.now), Ok(Opened::Replaced));
    assert!(matches!(
        &h.events()[..],
        [RouteEvent::PeerDown {
            stale: 1,
            reason: DownReason::ConnectionLost,
            ..
        }]
    ));
    assert_eq!(h.peer.state(), State::OpenSent);
    // A third connection while OPENs are exchanged is refused.
    assert_eq!(
        h.peer.connection_opened(h.now),
        Err(RequestError::ConnectionRefused(State::OpenSent))
    );
    let sent = messages(&h.peer.poll_transmit().unwrap());
    assert_eq!(
        sent.iter().map(|m| m.0).collect::<Vec<_>>(),
        [MessageType::Open]
    );
    h.input(&remote_open(true, true));
    h.input(&keepalive());
    h.input(&eor());
    assert!(matches!(
        &h.events()[..],
        [
            RouteEvent::PeerUp { .. },
            RouteEvent::Withdraw { .. },
            RouteEvent::EndOfRib { .. }
        ]
    ));
}
