//! What the BGP LEG learns becomes labels of MPLS/VPN entries and `range@VPN` mappings of the
//! subscribers holding `community@VPN` (Cisco SCMS SM, "Information About Handling VPNs"),
//! only for configured VPNs, whatever order routes and configuration come in.

use std::net::IpAddr;
use std::sync::Arc;

use brasa_subscriber::*;

const PE: &str = "10.10.10.10";
const PEER: &str = "192.0.2.1";

fn index() -> SubscriberIndex {
    SubscriberIndex::new(IndexConfig {
        domains: vec!["subscribers".into(), "north".into()],
        name_case: NameCase::Sensitive,
    })
    .unwrap()
}

fn mpls_vpn(name: &str, entries: &[&str]) -> Vpn {
    Vpn {
        name: name.into(),
        domain: "subscribers".into(),
        kind: VpnKind::Mpls(
            entries
                .iter()
                .map(|e| MplsVpnEntry::new(e.parse().unwrap()))
                .collect(),
        ),
    }
}

fn ce(name: &str, communities: &[&str]) -> Subscriber {
    let mut s = Subscriber::new(SubscriberName::new(name, NameCase::Sensitive).unwrap());
    s.communities = communities.iter().map(|c| c.parse().unwrap()).collect();
    s
}

/// `rd` as BGP carries it (type 0, `ASN:n`).
fn rd(text: &str) -> u64 {
    let (asn, n) = text.split_once(':').unwrap();
    (asn.parse::<u64>().unwrap() << 32) | n.parse::<u64>().unwrap()
}

struct Route<'a> {
    peer: &'a str,
    rd: &'a str,
    prefix: &'a str,
    label: u32,
    next_hop: &'a str,
    targets: &'a [&'a str],
    communities: &'a [&'a str],
}

impl Default for Route<'_> {
    fn default() -> Self {
        Route {
            peer: PEER,
            rd: "1000:1",
            prefix: "1.1.1.0/24",
            label: 10,
            next_hop: PE,
            targets: &[],
            communities: &["100:100"],
        }
    }
}

impl Route<'_> {
    fn key(&self) -> RouteKey {
        RouteKey {
            peer: self.peer.parse().unwrap(),
            rd: rd(self.rd),
            prefix: self.prefix.parse().unwrap(),
        }
    }

    fn learned(&self) -> LearnedRoute {
        LearnedRoute {
            key: self.key(),
            label: self.label,
            attrs: Arc::new(RouteAttributes::new(
                self.next_hop.parse().unwrap(),
                self.targets.iter().map(|t| t.parse().unwrap()).collect(),
                self.communities
                    .iter()
                    .map(|c| c.parse().unwrap())
                    .collect(),
            )),
        }
    }

    fn announce(&self) -> LearnOp {
        LearnOp::Announce(self.learned())
    }

    fn withdraw(&self) -> LearnOp {
        LearnOp::Withdraw(self.key())
    }
}

fn learned(index: &SubscriberIndex, name: &str) -> Vec<String> {
    index
        .get(name)
        .unwrap()
        .learned
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn labels(index: &SubscriberIndex, vpn: &str) -> Vec<(String, Vec<u32>)> {
    match &index.vpn(vpn).unwrap().kind {
        VpnKind::Mpls(entries) => entries
            .iter()
            .map(|e| (e.id.to_string(), e.learned_labels.clone()))
            .collect(),
        VpnKind::Vlan(_) => Vec::new(),
    }
}

fn who(index: &SubscriberIndex, addr: &str, vpn: &str) -> Option<String> {
    index
        .lookup(addr.parse().unwrap(), Some(vpn))
        .unwrap()
        .map(str::to_owned)
}

fn touched(changes: &ChangeSet) -> (Vec<String>, Vec<String>, usize) {
    (
        changes
            .subscribers
            .iter()
            .map(|c| c.name.as_str().to_owned())
            .collect(),
        changes.vpns.iter().map(|v| v.name.clone()).collect(),
        changes.routes.len(),
    )
}

#[test]
fn the_documents_example_end_to_end() {
    let mut idx = index();
    idx.add_vpn(mpls_vpn("vpn1", &["1000:1@10.10.10.10"]))
        .unwrap();
    idx.upsert(ce("sub1", &["100:100@vpn1"])).unwrap();

    let changes = idx.learn([Route::default().announce()]);
    assert_eq!(
        touched(&changes),
        (vec!["sub1".into()], vec!["vpn1".into()], 1)
    );
    assert_eq!(
        labels(&idx, "vpn1"),
        [("1000:1@10.10.10.10".into(), vec![10])]
    );
    assert_eq!(learned(&idx, "sub1"), ["1.1.1.0/24@vpn1"]);
    assert_eq!(who(&idx, "1.1.1.7", "vpn1").as_deref(), Some("sub1"));
    assert_eq!(
        idx.vpn_for_label(PE.parse().unwrap(), 10).unwrap().name,
        "vpn1"
    );
    // The change set carries the post-images the EPs get, and the route for the store.
    let sub1 = changes.subscribers[0].new.as_ref().unwrap();
    assert_eq!(sub1.learned.len(), 1);
    assert!(changes.routes[0].new.is_some());

    let changes = idx.learn([Route::default().withdraw()]);
    assert_eq!(
        touched(&changes),
        (vec!["sub1".into()], vec!["vpn1".into()], 1)
    );
    assert!(changes.routes[0].new.is_none(), "deleted from the store");
    assert_eq!(
        labels(&idx, "vpn1"),
        [("1000:1@10.10.10.10".into(), vec![])]
    );
    assert!(learned(&idx, "sub1").is_empty());
    assert_eq!(who(&idx, "1.1.1.7", "vpn1"), None);
    assert_eq!(idx.learned_route_count(), 0);
}

#[test]
fn routes_of_unconfigured_vpns_change_nothing_until_the_vpn_and_community_come() {
    let mut idx = index();
    let changes = idx.learn([Route::default().announce()]);
    assert!(changes.is_empty(), "ignored and not stored: {changes:?}");
    assert_eq!(idx.learned_route_count(), 1, "kept for late configuration");
    let peer: IpAddr = PEER.parse().unwrap();
    assert_eq!(
        idx.learned_peers(),
        [(
            peer,
            PeerRoutes {
                routes: 1,
                matched: 0,
                stale: 0
            }
        )]
    );

    // The VPN comes: its label applies at once and the route is now stored.
    let changes = idx
        .add_vpn(mpls_vpn("vpn1", &["1000:1@10.10.10.10"]))
        .unwrap();
    assert_eq!(changes.routes.len(), 1);
    assert_eq!(labels(&idx, "vpn1")[0].1, [10]);
    assert_eq!(idx.learned_peers()[0].1.matched, 1);

    // Then the CE subscriber: it gets the route's range.
    let changes = idx.upsert(ce("sub1", &["100:100@vpn1"])).unwrap();
    assert_eq!(learned(&idx, "sub1"), ["1.1.1.0/24@vpn1"]);
    assert_eq!(
        changes.subscribers[0].new.as_ref().unwrap().learned.len(),
        1
    );

    // A route whose RD matches but next hop is another PE is not this VPN's.
    let changes = idx.learn([Route {
        prefix: "2.2.2.0/24",
        next_hop: "10.10.10.11",
        ..Route::default()
    }
    .announce()]);
    assert!(changes.is_empty());
}

#[test]
fn a_route_target_matches_like_the_distinguisher_and_a_route_may_match_two_vpns() {
    let mut idx = index();
    idx.add_vpn(mpls_vpn("vpn1", &["1000:1@10.10.10.10"]))
        .unwrap();
    idx.add_vpn(mpls_vpn("vpn2", &["2000:2@10.10.10.10"]))
        .unwrap();
    idx.upsert(ce("a", &["100:100@vpn1"])).unwrap();
    idx.upsert(ce("b", &["100:100@vpn2"])).unwrap();
    idx.learn([Route {
        rd: "1000:1",
        targets: &["2000:2", "3000:3"],
        ..Route::default()
    }
    .announce()]);
    assert_eq!(labels(&idx, "vpn1")[0].1, [10]);
    assert_eq!(labels(&idx, "vpn2")[0].1, [10]);
    assert_eq!(learned(&idx, "a"), ["1.1.1.0/24@vpn1"]);
    assert_eq!(learned(&idx, "b"), ["1.1.1.0/24@vpn2"]);
    let views: Vec<_> = idx.learned_routes(Some("vpn2")).unwrap().collect();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].vpns, ["vpn1", "vpn2"]);
    assert_eq!(views[0].holders, [("vpn1", "a"), ("vpn2", "b")]);
}

#[test]
fn a_new_next_hop_moves_the_label_to_the_entry_of_that_pe() {
    let mut idx = index();
    idx.add_vpn(mpls_vpn(
        "vpn1",
        &["1000:1@10.10.10.10", "1000:1@10.10.10.11"],
    ))
    .unwrap();
    idx.upsert(ce("sub1", &["100:100@vpn1"])).unwrap();
    idx.learn([Route::default().announce()]);
    let changes = idx.learn([Route {
        next_hop: "10.10.10.11",
        label: 11,
        ..Route::default()
    }
    .announce()]);
    assert_eq!(
        labels(&idx, "vpn1"),
        [
            ("1000:1@10.10.10.10".into(), vec![]),
            ("1000:1@10.10.10.11".into(), vec![11])
        ]
    );
    // Same VPN, same prefix, same community: the subscriber keeps its range.
    assert_eq!(learned(&idx, "sub1"), ["1.1.1.0/24@vpn1"]);
    assert_eq!(touched(&changes).1, ["vpn1"]);
    assert_eq!(
        changes.routes.len(),
        1,
        "the replaced route is stored again"
    );
}

#[test]
fn a_label_stays_while_any_route_carries_it() {
    let mut idx = index();
    idx.add_vpn(mpls_vpn("vpn1", &["1000:1@10.10.10.10"]))
        .unwrap();
    let first = Route::default();
    let second = Route {
        prefix: "1.1.2.0/24",
        ..Route::default()
    };
    idx.learn([first.announce(), second.announce()]);
    let changes = idx.learn([first.withdraw()]);
    assert!(changes.vpns.is_empty(), "label 10 is still carried");
    assert_eq!(labels(&idx, "vpn1")[0].1, [10]);
    idx.learn([second.withdraw()]);
    assert!(labels(&idx, "vpn1")[0].1.is_empty());
}

#[test]
fn the_lowest_community_wins_a_prefix_whatever_the_order() {
    let a = Route {
        rd: "1000:1",
        communities: &["100:200"],
        ..Route::default()
    };
    let b = Route {
        rd: "1000:2",
        communities: &["100:100"],
        ..Route::default()
    };
    for order in [[&a, &b], [&b, &a]] {
        let mut idx = index();
        idx.add_vpn(mpls_vpn(
            "vpn1",
            &["1000:1@10.10.10.10", "1000:2@10.10.10.10"],
        ))
        .unwrap();
        idx.upsert(ce("high", &["100:200@vpn1"])).unwrap();
        idx.upsert(ce("low", &["100:100@vpn1"])).unwrap();
        idx.learn(order.iter().map(|r| r.announce()).collect::<Vec<_>>());
        assert_eq!(learned(&idx, "low"), ["1.1.1.0/24@vpn1"]);
        assert!(learned(&idx, "high").is_empty());
        // The winner's route goes: the other claim takes over.
        let changes = idx.learn([b.withdraw()]);
        assert_eq!(learned(&idx, "high"), ["1.1.1.0/24@vpn1"]);
        let mut names = touched(&changes).0;
        names.sort();
        assert_eq!(names, ["high", "low"]);
    }
    // One route carrying both communities: the same rule.
    let mut idx = index();
    idx.add_vpn(mpls_vpn("vpn1", &["1000:1@10.10.10.10"]))
        .unwrap();
    idx.upsert(ce("high", &["100:200@vpn1"])).unwrap();
    idx.upsert(ce("low", &["100:100@vpn1"])).unwrap();
    idx.learn([Route {
        communities: &["100:200", "100:100"],
        ..Route::default()
    }
    .announce()]);
    assert_eq!(learned(&idx, "low"), ["1.1.1.0/24@vpn1"]);
    assert_eq!(who(&idx, "1.1.1.1", "vpn1").as_deref(), Some("low"));
}

#[test]
fn a_configured_mapping_shadows_a_learnt_one_until_it_goes() {
    let mut idx = index();
    idx.add_vpn(mpls_vpn("vpn1", &["1000:1@10.10.10.10"]))
        .unwrap();
    idx.upsert(ce("ce", &["100:100@vpn1"])).unwrap();
    idx.learn([Route::default().announce()]);
    assert_eq!(who(&idx, "1.1.1.1", "vpn1").as_deref(), Some("ce"));

    // An operator gives the same prefix to another subscriber: it wins, both are reported.
    let changes = idx
        .login(Login {
            name: "static".into(),
            mappings: vec!["1.1.1.0/24@vpn1".parse().unwrap()],
            ..Login::default()
        })
        .unwrap();
    let mut names = touched(&changes).0;
    names.sort();
    assert_eq!(names, ["ce", "static"]);
    assert_eq!(who(&idx, "1.1.1.1", "vpn1").as_deref(), Some("static"));
    assert!(learned(&idx, "ce").is_empty());
    // Routes keep coming and going without moving the configured mapping.
    idx.learn([Route {
        label: 12,
        ..Route::default()
    }
    .announce()]);
    assert_eq!(who(&idx, "1.1.1.1", "vpn1").as_deref(), Some("static"));

    // The configured mapping goes: the learnt one is back.
    let changes = idx.logout("static", None).unwrap();
    let mut names = touched(&changes).0;
    names.sort();
    assert_eq!(names, ["ce", "static"]);
    assert_eq!(who(&idx, "1.1.1.1", "vpn1").as_deref(), Some("ce"));
    assert_eq!(learned(&idx, "ce"), ["1.1.1.0/24@vpn1"]);

    // A learnt prefix never makes a configured one "taken".
    idx.upsert({
        let mut s = ce("other", &[]);
        s.mappings = vec!["1.1.1.0/24@vpn1".parse().unwrap()];
        s
    })
    .unwrap();
    assert_eq!(who(&idx, "1.1.1.1", "vpn1").as_deref(), Some("other"));
}

#[test]
fn a_community_has_one_holder_a_login_moves_it_and_an_upsert_refuses() {
    let mut idx = index();
    idx.add_vpn(mpls_vpn("vpn1", &["1000:1@10.10.10.10"]))
        .unwrap();
    idx.upsert(ce("sub1", &["100:100@vpn1"])).unwrap();
    idx.learn([Route::default().announce()]);

    let err = idx.upsert(ce("sub2", &["100:100@vpn1"])).unwrap_err();
    assert_eq!(
        err,
        IndexError::MappingTaken {
            mapping: "100:100@vpn1".into(),
            owner: "sub1".into()
        }
    );
    assert!(idx.get("sub2").is_none(), "nothing changed");

    let changes = idx
        .login(Login {
            name: "sub2".into(),
            communities: vec!["100:100@vpn1".parse().unwrap()],
            ..Login::default()
        })
        .unwrap();
    let mut names = touched(&changes).0;
    names.sort();
    assert_eq!(names, ["sub1", "sub2"]);
    assert!(idx.get("sub1").unwrap().communities.is_empty());
    assert!(learned(&idx, "sub1").is_empty());
    assert_eq!(learned(&idx, "sub2"), ["1.1.1.0/24@vpn1"]);

    // Logout drops every network ID, and the routes' ranges with them.
    idx.logout("sub2", None).unwrap();
    assert!(learned(&idx, "sub2").is_empty());
    assert_eq!(who(&idx, "1.1.1.1", "vpn1"), None);
    // Removing the subscriber frees the community too.
    idx.upsert(ce("sub3", &["100:100@vpn1"])).unwrap();
    idx.remove("sub3").unwrap();
    idx.upsert(ce("sub4", &["100:100@vpn1"])).unwrap();
    assert_eq!(learned(&idx, "sub4"), ["1.1.1.0/24@vpn1"]);
}

#[test]
fn community_network_ids_are_checked() {
    let mut idx = index();
    idx.add_vpn(mpls_vpn("vpn1", &["1000:1@10.10.10.10"]))
        .unwrap();
    idx.add_vpn(Vpn {
        name: "v100".into(),
        domain: "subscribers".into(),
        kind: VpnKind::Vlan(100),
    })
    .unwrap();
    let mut north = mpls_vpn("nvpn", &["1000:9@10.10.10.10"]);
    north.domain = "north".into();
    idx.add_vpn(north).unwrap();

    let err = |idx: &mut SubscriberIndex, c: &[&str]| idx.upsert(ce("x", c)).unwrap_err();
    assert!(matches!(err(&mut idx, &["1:1@nope"]), IndexError::UnknownVpn(v) if v == "nope"));
    assert!(
        matches!(err(&mut idx, &["1:1@v100"]), IndexError::InvalidVpn { reason, .. } if reason.contains("MPLS/VPN"))
    );
    assert!(matches!(
        err(&mut idx, &["1:1@nvpn"]),
        IndexError::VpnDomainMismatch { .. }
    ));
    assert_eq!(
        err(&mut idx, &["1:1@vpn1", "1:1@vpn1"]),
        IndexError::DuplicateCommunity("1:1@vpn1".into())
    );
    assert!(idx.get("x").is_none());

    // A VPN used by a community cannot be removed; its entries can change.
    idx.upsert(ce("x", &["1:1@vpn1"])).unwrap();
    assert!(matches!(
        idx.remove_vpn("vpn1").unwrap_err(),
        IndexError::VpnInUse { communities: 1, .. }
    ));
}

#[test]
fn mpls_entries_come_and_go_with_their_routes() {
    let mut idx = index();
    idx.add_vpn(mpls_vpn("vpn1", &["1000:1@10.10.10.10"]))
        .unwrap();
    idx.upsert(ce("sub1", &["100:100@vpn1"])).unwrap();
    let other_pe = Route {
        prefix: "1.1.9.0/24",
        next_hop: "10.10.10.11",
        label: 20,
        ..Route::default()
    };
    idx.learn([Route::default().announce(), other_pe.announce()]);
    assert_eq!(learned(&idx, "sub1"), ["1.1.1.0/24@vpn1"]);

    let id: MplsVpnId = "1000:1@10.10.10.11".parse().unwrap();
    let changes = idx.add_mpls_entries("vpn1", &[id]).unwrap();
    assert_eq!(
        changes.routes.len(),
        1,
        "the other PE's route is now stored"
    );
    assert_eq!(
        learned(&idx, "sub1"),
        ["1.1.1.0/24@vpn1", "1.1.9.0/24@vpn1"]
    );
    assert_eq!(
        labels(&idx, "vpn1")[1],
        ("1000:1@10.10.10.11".into(), vec![20])
    );
    assert!(matches!(
        idx.add_mpls_entries("vpn1", &[id]).unwrap_err(),
        IndexError::VpnExists(_)
    ));

    let changes = idx.remove_mpls_entries("vpn1", &[id]).unwrap();
    assert_eq!(changes.routes.len(), 1);
    assert!(changes.routes[0].new.is_none(), "no longer stored");
    assert_eq!(learned(&idx, "sub1"), ["1.1.1.0/24@vpn1"]);
    let first: MplsVpnId = "1000:1@10.10.10.10".parse().unwrap();
    assert!(matches!(
        idx.remove_mpls_entries("vpn1", &[first]).unwrap_err(),
        IndexError::InvalidVpn { .. }
    ));
}

#[test]
fn restored_routes_hold_until_the_peer_sweeps_what_it_did_not_announce_again() {
    let mut idx = index();
    idx.add_vpn(mpls_vpn("vpn1", &["1000:1@10.10.10.10"]))
        .unwrap();
    idx.upsert(ce("sub1", &["100:100@vpn1"])).unwrap();
    let kept = Route::default();
    let gone = Route {
        prefix: "1.1.2.0/24",
        ..Route::default()
    };
    let v6 = Route {
        prefix: "2001:db8::/48",
        ..Route::default()
    };
    idx.restore_learned(vec![kept.learned(), gone.learned(), v6.learned()]);
    assert_eq!(
        learned(&idx, "sub1"),
        ["1.1.1.0/24@vpn1", "1.1.2.0/24@vpn1", "2001:db8::/48@vpn1"]
    );
    assert_eq!(idx.learned_peers()[0].1.stale, 3);

    // The peer announces one route again, unchanged: nothing to store or push.
    let changes = idx.learn([kept.announce()]);
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(idx.learned_peers()[0].1.stale, 2);

    // End-of-RIB for IPv4: the IPv4 route not announced again goes.
    let changes = idx.learn([LearnOp::SweepStale {
        peer: PEER.parse().unwrap(),
        family: Some(RouteFamily::Ipv4),
    }]);
    assert_eq!(touched(&changes), (vec!["sub1".into()], vec![], 1));
    assert_eq!(
        learned(&idx, "sub1"),
        ["1.1.1.0/24@vpn1", "2001:db8::/48@vpn1"]
    );
    // The restart timer: everything stale of the peer goes.
    idx.learn([LearnOp::SweepStale {
        peer: PEER.parse().unwrap(),
        family: None,
    }]);
    assert_eq!(learned(&idx, "sub1"), ["1.1.1.0/24@vpn1"]);
    assert_eq!(idx.learned_peers()[0].1.stale, 0);
}

#[test]
fn a_store_restores_routes_and_records_without_what_was_learnt() {
    let dir = tempfile::tempdir().unwrap();
    let mut idx = index();
    let mut changes = idx
        .add_vpn(mpls_vpn("vpn1", &["1000:1@10.10.10.10"]))
        .unwrap();
    changes.merge(idx.upsert(ce("sub1", &["100:100@vpn1"])).unwrap());
    changes.merge(
        idx.learn([
            Route::default().announce(),
            Route {
                rd: "9:9",
                prefix: "9.9.9.0/24",
                ..Route::default()
            }
            .announce(),
        ]),
    );
    {
        let mut store = RedbStore::open(dir.path()).unwrap();
        store.apply(&changes).unwrap();
    }
    let store = RedbStore::open(dir.path()).unwrap();
    let snapshot = store.load().unwrap();
    assert_eq!(
        snapshot.routes.len(),
        1,
        "only the matching route is stored"
    );
    assert_eq!(snapshot.routes[0], Route::default().learned());
    assert!(snapshot.subscribers[0].learned.is_empty());
    assert!(!snapshot.vpns[0].has_learned());
    assert_eq!(snapshot.subscribers[0].communities.len(), 1);

    let mut back =
        SubscriberIndex::restore(idx.config().clone(), snapshot.vpns, snapshot.subscribers)
            .unwrap();
    back.restore_learned(snapshot.routes);
    assert_eq!(back.get("sub1"), idx.get("sub1"));
    assert_eq!(back.vpn("vpn1"), idx.vpn("vpn1"));
}
