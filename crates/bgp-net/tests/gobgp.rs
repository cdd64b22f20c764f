//! Interop with a real BGP speaker (Debian's gobgpd) on 127.0.23.0/24, and with a raw peer for
//! the malformed messages no real speaker sends. Each test starts its own gobgpd in a temp
//! dir and kills only that process.

mod common;

use brasa_bgp::wire::update::{emit_vpn_update, VpnAttributes, VpnRoute, VpnUpdateKind};
use brasa_bgp::{
    DownReason, FamilySet, Label, LabelStack, ProtocolError, RouteEvent, State, VpnFamily,
};
use common::*;
use std::net::IpAddr;

const SEED: &str = "label 10 rd 1000:1 rt 1000:1 community 100:100 large-community 65000:1:2 nexthop 10.10.10.10 local-pref 100";

fn is_up(peer: IpAddr) -> impl FnMut(&RouteEvent) -> bool {
    move |e| matches!(e, RouteEvent::PeerUp { peer: p, .. } if *p == peer)
}

fn is_announce(prefix: &'static str) -> impl FnMut(&RouteEvent) -> bool {
    move |e| matches!(e, RouteEvent::Announce { route, .. } if route.prefix.to_string() == prefix)
}

fn is_withdraw(prefix: &'static str) -> impl FnMut(&RouteEvent) -> bool {
    move |e| matches!(e, RouteEvent::Withdraw { prefix: p, .. } if p.to_string() == prefix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_route_withdrawal_other_rd_and_vpn_ipv6_from_gobgpd() {
    let go_addr = addr(10);
    let (speaker, mut events) = speaker(&[(go_addr, 30)], 64).await;
    let go = GoBgp::start(GoOptions::new(go_addr, speaker.listen_addrs()[0]));

    let RouteEvent::PeerUp { session, .. } = events.wait_for("session up", is_up(go_addr)).await
    else {
        unreachable!()
    };
    assert_eq!(session.families, FamilySet::BOTH);
    assert_eq!(session.hold_time, 30);
    assert!(session.four_octet_as && session.route_refresh);
    assert_eq!(session.graceful_restart, Some((30, FamilySet::BOTH)));

    // The seed's example: VPN 1000:1, label 10, 1.1.1.0/24, community 100:100.
    go.add("vpnv4", "1.1.1.0/24", SEED);
    let RouteEvent::Announce { peer, route } = events
        .wait_for("the seed route", is_announce("1.1.1.0/24"))
        .await
    else {
        unreachable!()
    };
    assert_eq!(peer, go_addr);
    assert_eq!(route.rd.to_string(), "1000:1");
    assert_eq!(
        route.labels.iter().map(Label::value).collect::<Vec<_>>(),
        [10]
    );
    assert_eq!(
        route
            .attrs
            .route_targets
            .iter()
            .map(|rt| rt.to_string())
            .collect::<Vec<_>>(),
        ["1000:1"]
    );
    assert_eq!(
        route
            .attrs
            .communities
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>(),
        ["100:100"]
    );
    assert_eq!(
        route
            .attrs
            .large_communities
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>(),
        ["65000:1:2"]
    );
    assert_eq!(route.attrs.next_hop.to_string(), "10.10.10.10");
    assert_eq!(route.attrs.local_pref, Some(100));

    // A route of an RD the SM has no VPN for is still reported: filtering is the SM's job.
    go.add(
        "vpnv4",
        "2.2.2.0/24",
        "label 20 rd 2000:9 rt 2000:9 nexthop 10.10.10.11",
    );
    let RouteEvent::Announce { route, .. } =
        events.wait_for("other RD", is_announce("2.2.2.0/24")).await
    else {
        unreachable!()
    };
    assert_eq!(route.rd.to_string(), "2000:9");

    go.add(
        "vpnv6",
        "2001:db8:1::/48",
        "label 30 rd 1000:1 rt 1000:1 community 100:100 nexthop 2001:db8::10",
    );
    let RouteEvent::Announce { route, .. } = events
        .wait_for("VPN-IPv6", is_announce("2001:db8:1::/48"))
        .await
    else {
        unreachable!()
    };
    assert_eq!(route.prefix.family(), VpnFamily::Ipv6);
    assert_eq!(route.labels.first().map(Label::value), Some(30));
    assert_eq!(route.attrs.next_hop.to_string(), "2001:db8::10");

    go.del("vpnv4", "1.1.1.0/24", "label 10 rd 1000:1");
    events
        .wait_for("withdrawal", is_withdraw("1.1.1.0/24"))
        .await;
    assert_eq!(events.routes_of(go_addr).len(), 2);
    let status = speaker.peer_status(go_addr).await.unwrap();
    assert_eq!(
        (status.state, status.routes, status.stale),
        (State::Established, 2, 0)
    );

    // Route refresh reaches gobgpd (which answers by re-sending unchanged routes: no events).
    speaker
        .route_refresh(go_addr, VpnFamily::Ipv4)
        .await
        .unwrap();
    let neighbor = speaker.listen_addrs()[0].ip().to_string();
    tokio::task::block_in_place(|| {
        wait_until(
            std::time::Duration::from_secs(20),
            || {
                let json = go.cli(&["neighbor", &neighbor, "-j"]);
                json.split("\"received\":{")
                    .nth(1)
                    .and_then(|r| r.split('}').next())
                    .is_some_and(|r| r.contains("refresh"))
            },
            "gobgpd to count our ROUTE-REFRESH",
        )
    });
    speaker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_keeps_routes_stale_and_end_of_rib_reconciles() {
    let go_addr = addr(11);
    let (speaker, mut events) = speaker(&[(go_addr, 30)], 64).await;
    let brasa = speaker.listen_addrs()[0];
    let go = GoBgp::start(GoOptions::new(go_addr, brasa));
    events.wait_for("session up", is_up(go_addr)).await;
    go.add("vpnv4", "1.1.1.0/24", SEED);
    go.add(
        "vpnv4",
        "1.1.2.0/24",
        "label 11 rd 1000:1 rt 1000:1 community 100:100 nexthop 10.10.10.10",
    );
    events
        .wait_for("first route", is_announce("1.1.1.0/24"))
        .await;
    events
        .wait_for("second route", is_announce("1.1.2.0/24"))
        .await;

    go.crash();
    let down = events
        .wait_for("session down", |e| matches!(e, RouteEvent::PeerDown { .. }))
        .await;
    assert!(
        matches!(
            down,
            RouteEvent::PeerDown {
                stale: 2,
                reason: DownReason::ConnectionLost,
                ..
            }
        ),
        "{down:?}"
    );
    let status = speaker.peer_status(go_addr).await.unwrap();
    assert_eq!((status.routes, status.stale), (2, 2), "kept, stale");
    assert_eq!(
        events.routes_of(go_addr).len(),
        2,
        "no withdrawal reached the consumer"
    );

    // gobgpd comes back as a restarting speaker with only the first route.
    let mut options = GoOptions::new(go_addr, brasa);
    options.admin_down = true;
    options.restarting = true;
    let go = GoBgp::start(options);
    go.add("vpnv4", "1.1.1.0/24", SEED);
    go.cli(&["neighbor", &brasa.ip().to_string(), "enable"]);
    let RouteEvent::PeerUp { session, .. } =
        events.wait_for("session up again", is_up(go_addr)).await
    else {
        unreachable!()
    };
    assert!(session.peer_restarted);
    events
        .wait_for("End-of-RIB", |e| {
            matches!(
                e,
                RouteEvent::EndOfRib {
                    family: VpnFamily::Ipv4,
                    ..
                }
            )
        })
        .await;
    let held: Vec<String> = events
        .routes_of(go_addr)
        .iter()
        .map(|r| r.prefix.to_string())
        .collect();
    assert_eq!(
        held,
        ["1.1.1.0/24"],
        "the route not re-announced was removed at End-of-RIB"
    );
    assert!(
        !events.log.iter().any(|e| matches!(e, RouteEvent::Withdraw { prefix, .. } if prefix.to_string() == "1.1.1.0/24")),
        "the re-announced route was never withdrawn"
    );
    let status = speaker.peer_status(go_addr).await.unwrap();
    assert_eq!((status.routes, status.stale), (1, 0));
    speaker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_timer_expiry_resets_the_session() {
    let go_addr = addr(12);
    let (speaker, mut events) = speaker(&[(go_addr, 3)], 64).await;
    let mut options = GoOptions::new(go_addr, speaker.listen_addrs()[0]);
    options.hold_time = 3;
    let go = GoBgp::start(options);
    events.wait_for("session up", is_up(go_addr)).await;
    go.add("vpnv4", "1.1.1.0/24", SEED);
    events.wait_for("route", is_announce("1.1.1.0/24")).await;

    go.signal("STOP");
    let down = events
        .wait_for("hold timer expiry", |e| {
            matches!(e, RouteEvent::PeerDown { .. })
        })
        .await;
    go.signal("CONT");
    assert!(
        matches!(
            down,
            RouteEvent::PeerDown {
                reason: DownReason::ProtocolError(ProtocolError::HoldTimerExpired),
                stale: 0,
                ..
            }
        ),
        "{down:?}"
    );
    assert!(
        events.routes_of(go_addr).is_empty(),
        "withdrawn: hold timer expiry sends a NOTIFICATION"
    );
    // gobgpd comes back by itself and re-announces.
    events.wait_for("session up again", is_up(go_addr)).await;
    events
        .wait_for("route again", is_announce("1.1.1.0/24"))
        .await;
    speaker.shutdown().await;
}

fn seed_update(prefix: &str) -> Vec<u8> {
    let attrs = VpnAttributes {
        local_pref: Some(100),
        communities: vec!["100:100".parse().unwrap()],
        extended_communities: vec!["1000:1"
            .parse::<brasa_bgp::RouteTarget>()
            .unwrap()
            .to_extended()],
        ..VpnAttributes::default()
    };
    let route = VpnRoute {
        rd: "1000:1".parse().unwrap(),
        prefix: prefix.parse().unwrap(),
        labels: LabelStack::single(Label::new(10).unwrap()),
    };
    let mut out = Vec::new();
    emit_vpn_update(
        &mut out,
        VpnFamily::Ipv4,
        VpnUpdateKind::Announce(&attrs, "10.10.10.10".parse().unwrap()),
        &[route],
    );
    out
}

/// Offset of the MP_REACH_NLRI attribute in an UPDATE built by `seed_update`.
fn mp_reach_at(m: &[u8]) -> usize {
    let mut pos = 23;
    while m[pos + 1] != 14 {
        let extended = m[pos] & 0x10 != 0;
        let len = if extended {
            usize::from(u16::from_be_bytes([m[pos + 2], m[pos + 3]]))
        } else {
            usize::from(m[pos + 2])
        };
        pos += if extended { 4 } else { 3 } + len;
    }
    pos
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_reset_only_their_session() {
    let go_addr = addr(13);
    let raw_addr = addr(14);
    let (speaker, mut events) = speaker(&[(go_addr, 30), (raw_addr, 30)], 64).await;
    let brasa = speaker.listen_addrs()[0];
    let go = GoBgp::start(GoOptions::new(go_addr, brasa));
    events.wait_for("gobgpd up", is_up(go_addr)).await;
    go.add("vpnv4", "1.1.1.0/24", SEED);
    events
        .wait_for("gobgpd route", is_announce("1.1.1.0/24"))
        .await;

    type Corrupt = fn(&mut Vec<u8>);
    let cases: [(&str, Corrupt, (u8, u8)); 5] = [
        ("bad marker", |m| m[5] = 0, (1, 1)),
        (
            "bad length",
            |m| m[16..18].copy_from_slice(&5000u16.to_be_bytes()),
            (1, 2),
        ),
        (
            "bad attribute flags",
            |m| {
                let at = mp_reach_at(m);
                m[at] = 0x40 | (m[at] & 0x10)
            },
            (3, 4),
        ),
        (
            "truncated NLRI",
            |m| {
                let last = m.len() - 15;
                m[last] = 112 + 8
            },
            (3, 9),
        ),
        ("OPEN when established", |m| m[18] = 1, (5, 3)),
    ];
    for (name, corrupt, expected) in cases {
        let mut raw = RawPeer::establish(raw_addr, brasa).await;
        events.wait_for("raw peer up", is_up(raw_addr)).await;
        raw.send(&seed_update("9.9.9.0/24")).await;
        events
            .wait_for("raw route", is_announce("9.9.9.0/24"))
            .await;
        let mut bad = seed_update("8.8.8.0/24");
        corrupt(&mut bad);
        raw.send(&bad).await;
        let n = raw.expect_notification().await;
        assert_eq!((n.code, n.subcode), expected, "{name}: {n}");
        let down = events
            .wait_for(
                "raw peer down",
                |e| matches!(e, RouteEvent::PeerDown { peer, .. } if *peer == raw_addr),
            )
            .await;
        assert!(
            matches!(
                down,
                RouteEvent::PeerDown {
                    reason: DownReason::ProtocolError(_),
                    stale: 0,
                    ..
                }
            ),
            "{name}: {down:?}"
        );
        assert!(
            events.routes_of(raw_addr).is_empty(),
            "{name}: the raw peer's routes are gone, the corrupt one never came"
        );
    }
    // gobgpd's session never flapped and its route is intact.
    let status = speaker.peer_status(go_addr).await.unwrap();
    assert_eq!(
        (status.state, status.stats.established, status.routes),
        (State::Established, 1, 1)
    );
    assert_eq!(events.routes_of(go_addr).len(), 1);
    assert!(!events
        .log
        .iter()
        .any(|e| matches!(e, RouteEvent::PeerDown { peer, .. } if *peer == go_addr)));
    speaker.shutdown().await;
}

fn vpn_routes(set: &std::collections::BTreeMap<u32, u32>) -> Vec<VpnRoute> {
    set.iter()
        .map(|(i, label)| VpnRoute {
            rd: "1000:1".parse().unwrap(),
            prefix: brasa_bgp::VpnPrefix::new_v4(
                std::net::Ipv4Addr::from(0x0a00_0000 + (i << 16)),
                16,
            )
            .unwrap(),
            labels: LabelStack::single(Label::new(*label).unwrap()),
        })
        .collect()
}

fn announce_all(routes: &[VpnRoute]) -> Vec<u8> {
    let attrs = VpnAttributes {
        local_pref: Some(100),
        ..VpnAttributes::default()
    };
    let mut out = Vec::new();
    let mut rest = routes;
    while !rest.is_empty() {
        let kind = VpnUpdateKind::Announce(&attrs, "10.10.10.10".parse().unwrap());
        rest = &rest[emit_vpn_update(&mut out, VpnFamily::Ipv4, kind, rest)..];
    }
    out
}

/// A storm of sessions from one peer: each announces a different table and ends abruptly
/// (TCP close: graceful restart keeps the routes stale) or with a CEASE (routes withdrawn),
/// the next connection often arriving before the previous close is read. Meanwhile gobgpd
/// crashes and comes back with a changed table. Once the last sessions have sent their
/// End-of-RIB, the consumer's mirror and the speaker's tables are exactly the last tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flap_storm_leaves_exactly_the_announced_routes() {
    let raw_addr = addr(15);
    let go_addr = addr(17);
    let (speaker, mut events) = speaker(&[(raw_addr, 30), (go_addr, 30)], 16).await;
    let brasa = speaker.listen_addrs()[0];
    let go = GoBgp::start(GoOptions::new(go_addr, brasa));
    go.add("vpnv4", "1.1.1.0/24", SEED);
    go.add("vpnv4", "1.1.2.0/24", SEED);

    // The storm runs beside a consumer that drains events as they come (it must: the
    // speaker stops reading a peer whose events are not taken).
    let storm = tokio::spawn(async move {
        let mut go = go;
        let mut seed = 0x9e37_79b9u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let mut table = std::collections::BTreeMap::new();
        for round in 0..60u32 {
            for _ in 0..5 {
                let i = next() % 50;
                if next() % 3 == 0 {
                    table.remove(&i);
                } else {
                    table.insert(i, 100 + next() % 4);
                }
            }
            let mut raw = RawPeer::establish(raw_addr, brasa).await;
            raw.send(&announce_all(&vpn_routes(&table))).await;
            if round % 2 == 0 {
                let mut cease = Vec::new();
                ProtocolError::Cease(brasa_bgp::CeaseReason::AdministrativeReset)
                    .notification()
                    .emit(&mut cease);
                raw.send(&cease).await;
            }
            drop(raw);
            if round % 20 == 10 {
                // gobgpd crashes and returns as a restarting speaker, 1.1.2.0/24 gone.
                go = tokio::task::block_in_place(|| {
                    go.crash();
                    let mut options = GoOptions::new(go_addr, brasa);
                    options.admin_down = true;
                    options.restarting = true;
                    let go = GoBgp::start(options);
                    go.add("vpnv4", "1.1.1.0/24", SEED);
                    go.add("vpnv4", &format!("1.2.{round}.0/24"), SEED);
                    go.cli(&["neighbor", &brasa.ip().to_string(), "enable"]);
                    go
                });
            }
        }
        let mut raw = RawPeer::establish(raw_addr, brasa).await;
        raw.send(&announce_all(&vpn_routes(&table))).await;
        let mut eor = Vec::new();
        brasa_bgp::wire::emit_end_of_rib(&mut eor, brasa_bgp::AfiSafi::VPN_IPV4);
        raw.send(&eor).await;
        (table, go, raw)
    });
    while !storm.is_finished() {
        events.poll_once().await;
    }
    let (table, _go, _raw) = storm.await.unwrap();
    let expected_raw: std::collections::BTreeSet<String> = vpn_routes(&table)
        .iter()
        .map(|r| r.prefix.to_string())
        .collect();
    let expected_go: std::collections::BTreeSet<String> =
        ["1.1.1.0/24".to_string(), "1.2.50.0/24".to_string()].into();
    let held = |ev: &Events, peer| -> std::collections::BTreeSet<String> {
        ev.routes_of(peer)
            .iter()
            .map(|r| r.prefix.to_string())
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let raw_status = speaker.peer_status(raw_addr).await.unwrap();
        let go_status = speaker.peer_status(go_addr).await.unwrap();
        if held(&events, raw_addr) == expected_raw
            && held(&events, go_addr) == expected_go
            && (raw_status.routes, raw_status.stale) == (expected_raw.len(), 0)
            && (go_status.routes, go_status.stale) == (expected_go.len(), 0)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not converge: raw {:?} vs {expected_raw:?} ({} stale), gobgpd {:?} ({} stale)",
            held(&events, raw_addr),
            raw_status.stale,
            held(&events, go_addr),
            go_status.stale
        );
        events.poll_once().await;
    }
    // Every route in the mirror has the label of the last announcement: nothing older
    // survived.
    for route in events.routes_of(raw_addr) {
        let i = (u32::from(match route.prefix.addr() {
            IpAddr::V4(a) => a,
            _ => unreachable!(),
        }) - 0x0a00_0000)
            >> 16;
        assert_eq!(
            route.labels.first().map(Label::value),
            table.get(&i).copied()
        );
    }
    speaker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_cease_to_the_peer() {
    let go_addr = addr(16);
    let (speaker, mut events) = speaker(&[(go_addr, 30)], 64).await;
    let go = GoBgp::start(GoOptions::new(go_addr, speaker.listen_addrs()[0]));
    events.wait_for("session up", is_up(go_addr)).await;
    speaker.shutdown().await;
    let logged = || {
        go.log().contains("Administrative Shutdown")
            || go.log().to_lowercase().contains("notification")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !logged() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(logged(), "gobgpd did not log our CEASE:\n{}", go.log());
}
