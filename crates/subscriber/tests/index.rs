//! Behaviour of the subscriber index: validation, moves, LPM, roaming, VPNs, atomicity.

use std::net::IpAddr;

use brasa_subscriber::*;

fn index() -> SubscriberIndex {
    SubscriberIndex::new(IndexConfig {
        domains: vec!["subscribers".into(), "north".into(), "south".into()],
        name_case: NameCase::Sensitive,
    })
    .unwrap()
}

fn m(s: &str) -> Mapping {
    s.parse().unwrap()
}

fn login(name: &str, mappings: &[&str]) -> Login {
    Login {
        name: name.into(),
        mappings: mappings.iter().map(|s| m(s)).collect(),
        ..Login::default()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn changed(c: &ChangeSet) -> Vec<&str> {
    c.subscribers.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn login_creates_a_subscriber_in_the_default_domain_and_lookups_find_it() {
    let mut idx = index();
    let c = idx
        .login(Login {
            properties: vec![("package".into(), "gold".into())],
            auto_logout: Some(100),
            ..login("alice", &["127.0.0.1", "2001:db8::/64"])
        })
        .unwrap();
    assert_eq!(changed(&c), ["alice"]);
    assert_eq!(c.subscribers[0].old_domain, None);
    let s = idx.get("alice").unwrap();
    assert_eq!(s.domain, "subscribers");
    assert!(s.logged_in);
    assert_eq!(s.auto_logout, Some(100));
    assert_eq!(s.properties, [("package".to_string(), "gold".to_string())]);
    assert_eq!(idx.lookup(ip("127.0.0.1"), None).unwrap(), Some("alice"));
    assert_eq!(idx.lookup(ip("127.0.0.2"), None).unwrap(), None);
    assert_eq!(idx.lookup(ip("2001:db8::99"), None).unwrap(), Some("alice"));
    assert_eq!(idx.owner_of(&m("2001:db8::/64")).unwrap(), Some("alice"));
    assert_eq!(
        idx.count_by_domain(),
        [("subscribers", 1), ("north", 0), ("south", 0)]
    );
}

#[test]
fn overlapping_ranges_resolve_by_longest_prefix() {
    let mut idx = index();
    idx.login(login("aggregate", &["127.0.0.0/8"])).unwrap();
    idx.login(login("office", &["127.1.0.0-127.1.255.255"]))
        .unwrap();
    idx.login(login("host", &["127.1.2.3"])).unwrap();
    assert_eq!(idx.lookup(ip("127.1.2.3"), None).unwrap(), Some("host"));
    assert_eq!(idx.lookup(ip("127.1.2.4"), None).unwrap(), Some("office"));
    assert_eq!(
        idx.lookup(ip("127.2.0.1"), None).unwrap(),
        Some("aggregate")
    );
    idx.logout("office", None).unwrap();
    assert_eq!(
        idx.lookup(ip("127.1.2.4"), None).unwrap(),
        Some("aggregate")
    );
    assert_eq!(idx.lookup(ip("127.1.2.3"), None).unwrap(), Some("host"));
}

#[test]
fn a_login_that_takes_an_exact_mapping_moves_it_and_reports_both() {
    let mut idx = index();
    idx.login(login("old", &["127.0.0.5", "127.0.0.6"]))
        .unwrap();
    let c = idx.login(login("new", &["127.0.0.5"])).unwrap();
    assert_eq!(changed(&c), ["old", "new"]);
    let old = c.subscribers[0].new.as_ref().unwrap();
    assert_eq!(old.mappings, [m("127.0.0.6")]);
    assert_eq!(idx.lookup(ip("127.0.0.5"), None).unwrap(), Some("new"));
    assert_eq!(idx.lookup(ip("127.0.0.6"), None).unwrap(), Some("old"));
}

#[test]
fn additive_login_keeps_mappings_and_replacing_login_drops_them() {
    let mut idx = index();
    idx.login(login("a", &["127.0.0.1"])).unwrap();
    idx.login(Login {
        additive: true,
        ..login("a", &["127.0.0.2", "127.0.0.1"])
    })
    .unwrap();
    assert_eq!(
        idx.get("a").unwrap().mappings,
        [m("127.0.0.1"), m("127.0.0.2")]
    );
    idx.login(login("a", &["127.0.0.3"])).unwrap();
    assert_eq!(idx.get("a").unwrap().mappings, [m("127.0.0.3")]);
    assert_eq!(idx.lookup(ip("127.0.0.1"), None).unwrap(), None);
}

#[test]
fn bad_input_is_refused_precisely_and_changes_nothing() {
    let mut idx = index();
    idx.login(login("keep", &["127.0.0.9"])).unwrap();
    let before: Vec<Subscriber> = idx.iter().collect();
    let e = |idx: &mut SubscriberIndex, l: Login| idx.login(l).unwrap_err().to_string();
    assert_eq!(
        e(&mut idx, login("bad\"name", &[])),
        "invalid subscriber name \"bad\\\"name\": character '\"' at position 4 is not allowed (printable ASCII except quotes)"
    );
    assert_eq!(
        e(
            &mut idx,
            login("x", &["127.0.0.0/30", "127.0.0.0-127.0.0.3"])
        ),
        "mapping 127.0.0.0/30 is given twice in one call (prefix 127.0.0.0/30 overlaps exactly)"
    );
    assert_eq!(
        e(&mut idx, login("x", &["127.0.0.1", "127.0.0.1"])),
        "mapping 127.0.0.1 is given twice in one call (prefix 127.0.0.1/32 overlaps exactly)"
    );
    assert_eq!(
        e(
            &mut idx,
            Login {
                domain: Some("west".into()),
                ..login("x", &[])
            }
        ),
        "domain \"west\" is not configured"
    );
    assert_eq!(
        e(&mut idx, login("x", &["127.0.0.1@nope"])),
        "VPN \"nope\" does not exist (only IP@VLAN-id creates a VPN automatically)"
    );
    assert_eq!(
        e(
            &mut idx,
            Login {
                properties: vec![("".into(), "v".into())],
                ..login("x", &["127.0.0.1"])
            }
        ),
        "property \"\": the key is empty"
    );
    // A failed call that would also have moved a mapping and created a VLAN VPN leaves no trace.
    assert!(idx
        .login(login(
            "x",
            &["127.0.0.9", "127.0.0.1@100", "127.0.0.2@nope"]
        ))
        .is_err());
    assert_eq!(idx.iter().collect::<Vec<_>>(), before);
    assert!(idx.vpn("100").is_none());
    assert_eq!(idx.lookup(ip("127.0.0.9"), None).unwrap(), Some("keep"));
    // Import semantics do not move mappings.
    let mut s = Subscriber::new(SubscriberName::new("y", NameCase::Sensitive).unwrap());
    s.mappings = vec![m("127.0.0.9")];
    assert_eq!(
        idx.upsert(s).unwrap_err().to_string(),
        "mapping 127.0.0.9 belongs to subscriber \"keep\""
    );
    assert_eq!(idx.len(), 1);
}

#[test]
fn case_insensitive_names_are_folded() {
    let mut idx = SubscriberIndex::new(IndexConfig {
        name_case: NameCase::Insensitive,
        ..IndexConfig::default()
    })
    .unwrap();
    idx.login(login("Alice", &["127.0.0.1"])).unwrap();
    idx.login(login("ALICE", &["127.0.0.2"])).unwrap();
    assert_eq!(idx.len(), 1);
    assert_eq!(idx.get("aLiCe").unwrap().name.as_str(), "alice");
    assert_eq!(idx.lookup(ip("127.0.0.2"), None).unwrap(), Some("alice"));
}

#[test]
fn domain_roaming_removes_from_the_old_domain_and_installs_in_the_new() {
    let mut idx = index();
    idx.login(Login {
        domain: Some("north".into()),
        ..login("r", &["127.0.0.1"])
    })
    .unwrap();
    let c = idx
        .login(Login {
            domain: Some("south".into()),
            ..login("r", &["127.0.0.1"])
        })
        .unwrap();
    assert_eq!(c.subscribers[0].old_domain.as_deref(), Some("north"));
    assert_eq!(c.domains(), ["north", "south"]);
    let north: Vec<_> = c.events_for("north").collect();
    assert!(matches!(north.as_slice(), [DomainEvent::Remove(n)] if n.as_str() == "r"));
    let south: Vec<_> = c.events_for("south").collect();
    assert!(matches!(south.as_slice(), [DomainEvent::Upsert(s)] if s.domain == "south"));
    assert_eq!(c.events_for("subscribers").count(), 0);
    assert_eq!(
        idx.count_by_domain(),
        [("subscribers", 0), ("north", 0), ("south", 1)]
    );
    assert_eq!(idx.domain_members("south").count(), 1);
    assert!(idx.get_in_domain("r", "south").is_some());
    assert!(idx.get_in_domain("r", "north").is_none());
    assert_eq!(idx.domain_members("north").count(), 0);
    let out = idx.logout("r", Some("north")).unwrap_err();
    assert_eq!(
        out.to_string(),
        "subscriber \"r\" is in domain \"south\", not \"north\""
    );
    let c = idx.logout("r", Some("south")).unwrap();
    assert!(matches!(
        c.events_for("south").next(),
        Some(DomainEvent::Remove(_))
    ));
}

#[test]
fn ip_at_vlan_creates_the_vlan_vpn_in_the_subscriber_domain() {
    let mut idx = index();
    let c = idx
        .login(Login {
            domain: Some("north".into()),
            ..login("v", &["127.0.0.1@100"])
        })
        .unwrap();
    assert_eq!(c.vpns.len(), 1);
    let vpn = idx.vpn("100").unwrap();
    assert_eq!(vpn.kind, VpnKind::Vlan(100));
    assert_eq!(vpn.domain, "north");
    // The same IP in another VPN or globally is a different mapping.
    idx.login(login("g", &["127.0.0.1"])).unwrap();
    assert_eq!(idx.lookup(ip("127.0.0.1"), Some("100")).unwrap(), Some("v"));
    assert_eq!(idx.lookup(ip("127.0.0.1"), None).unwrap(), Some("g"));
    // A subscriber of another domain cannot use that VPN.
    let e = idx.login(login("w", &["127.0.0.2@100"])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "mapping 127.0.0.2@100 is in VPN domain \"north\" but the subscriber is in domain \"subscribers\""
    );
    assert!(matches!(
        idx.remove_vpn("100"),
        Err(IndexError::VpnInUse { prefixes: 1, .. })
    ));
    idx.logout("v", None).unwrap();
    idx.remove_vpn("100").unwrap();
    assert!(idx.vpn_for_vlan(100).is_none());
}

#[test]
fn mpls_vpn_labels_come_only_for_configured_rt_rd_at_pe() {
    let mut idx = index();
    let id: MplsVpnId = "1000:1@127.10.10.10".parse().unwrap();
    idx.add_vpn(Vpn {
        name: "vpn1".into(),
        domain: "subscribers".into(),
        kind: VpnKind::Mpls(vec![MplsVpnEntry::new(id)]),
    })
    .unwrap();
    let c = idx
        .set_mpls_label(id, 10, vec!["127.1.1.0/24".parse().unwrap()])
        .unwrap();
    assert_eq!(c.vpns[0].name, "vpn1");
    assert_eq!(
        idx.vpn_for_label(ip("127.10.10.10"), 10).unwrap().name,
        "vpn1"
    );
    assert!(idx.vpn_for_label(ip("127.10.10.10"), 11).is_none());
    let other: MplsVpnId = "1000:2@127.10.10.10".parse().unwrap();
    assert_eq!(
        idx.set_mpls_label(other, 10, vec![])
            .unwrap_err()
            .to_string(),
        "no VPN is configured with MPLS/VPN 1000:2@127.10.10.10"
    );
    idx.login(login("ce", &["127.1.1.0/24@vpn1"])).unwrap();
    assert_eq!(
        idx.lookup(ip("127.1.1.77"), Some("vpn1")).unwrap(),
        Some("ce")
    );
    let dup = idx.add_vpn(Vpn {
        name: "vpn2".into(),
        domain: "subscribers".into(),
        kind: VpnKind::Mpls(vec![MplsVpnEntry::new(id)]),
    });
    assert_eq!(
        dup.unwrap_err().to_string(),
        "VPN with 1000:1@127.10.10.10 already exists"
    );
    idx.remove_mpls_label(id, 10).unwrap();
    assert!(idx.vpn_for_label(ip("127.10.10.10"), 10).is_none());
}

#[test]
fn logout_by_mapping_remove_properties_state_and_expiry() {
    let mut idx = index();
    idx.login(Login {
        auto_logout: Some(50),
        ..login("a", &["127.0.0.1", "127.0.0.2"])
    })
    .unwrap();
    idx.login(Login {
        auto_logout: Some(70),
        ..login("b", &["127.0.0.3"])
    })
    .unwrap();
    let c = idx.logout_by_mapping(&m("127.0.0.1")).unwrap();
    assert_eq!(changed(&c), ["a"]);
    assert!(idx.get("a").unwrap().logged_in);
    assert_eq!(
        idx.logout_by_mapping(&m("127.0.0.1")).unwrap_err(),
        IndexError::NoSuchMapping("127.0.0.1".into())
    );
    idx.set_properties(
        "a",
        vec![("tier".into(), "1".into()), ("x".into(), "y".into())],
    )
    .unwrap();
    idx.set_properties("a", vec![("tier".into(), "2".into())])
        .unwrap();
    idx.set_state("a", vec![1, 2, 3]).unwrap();
    let a = idx.get("a").unwrap();
    assert_eq!(a.properties[0], ("tier".to_string(), "2".to_string()));
    assert_eq!(a.properties[1].0, "x");
    assert_eq!(a.state, [1, 2, 3]);
    assert!(idx.expire(49).is_empty());
    let c = idx.expire(60);
    assert_eq!(changed(&c), ["a"]);
    assert!(!idx.get("a").unwrap().logged_in);
    assert_eq!(idx.lookup(ip("127.0.0.2"), None).unwrap(), None);
    assert_eq!(changed(&idx.expire(1000)), ["b"]);
    let c = idx.remove("a").unwrap();
    assert!(c.subscribers[0].new.is_none());
    assert!(idx.get("a").is_none());
    assert_eq!(
        idx.remove("a").unwrap_err(),
        IndexError::UnknownSubscriber("a".into())
    );
}

#[test]
fn name_queries_by_prefix_and_suffix() {
    let mut idx = index();
    for n in ["cust-1@east", "cust-2@west", "cust-3@east", "other@east"] {
        idx.login(login(n, &[])).unwrap();
    }
    assert_eq!(
        idx.names_with_prefix("cust-", 10),
        ["cust-1@east", "cust-2@west", "cust-3@east"]
    );
    assert_eq!(
        idx.names_with_suffix("@east", 2),
        ["cust-1@east", "cust-3@east"]
    );
    let mut s = Subscriber::new(SubscriberName::new("cust-1@east", NameCase::Sensitive).unwrap());
    s.domain = "north".into();
    assert!(matches!(idx.add(s), Err(IndexError::SubscriberExists(_))));
}

#[test]
fn domain_members_from_resumes_at_the_cursor() {
    let mut idx = index();
    for i in 0..10 {
        idx.login(login(&format!("s{i}"), &[&format!("10.9.0.{i}")]))
            .unwrap();
    }
    idx.login(login("idle", &[])).unwrap();
    assert_eq!(idx.domain_member_count("subscribers"), 10);
    let mut names = Vec::new();
    let mut cursor = Some(0);
    while let Some(start) = cursor {
        let (batch, next) = idx.domain_members_from("subscribers", start, 3);
        assert!(batch.len() <= 3);
        names.extend(batch.into_iter().map(|s| s.name.as_str().to_owned()));
        cursor = next;
    }
    let mut expected: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
    names.sort();
    expected.sort();
    assert_eq!(names, expected);
    let id = idx.id_of("s4").unwrap();
    let (after, _) = idx.domain_members_from("subscribers", id + 1, 100);
    assert!(after.iter().all(|s| s.name.as_str() != "s4"));
    assert!(idx.domain_members_from("nowhere", 0, 10).0.is_empty());
}

#[test]
fn vpn_names_may_hold_at_signs_and_labels_are_listed_once() {
    let mut idx = index();
    idx.add_vpn(Vpn {
        name: "corp@east".into(),
        domain: "subscribers".into(),
        kind: VpnKind::Vlan(7),
    })
    .unwrap();
    // The first '@' ends the address: the rest is the VPN name.
    let mapping = m("10.0.0.1@corp@east");
    assert_eq!(mapping.vpn.as_deref(), Some("corp@east"));
    idx.login(login("a", &["10.0.0.1@corp@east"])).unwrap();
    assert_eq!(
        idx.lookup(ip("10.0.0.1"), Some("corp@east")).unwrap(),
        Some("a")
    );

    let label = |label| DownstreamLabel {
        label,
        ranges: Vec::new(),
    };
    let err = idx
        .add_vpn(Vpn {
            name: "mpls".into(),
            domain: "subscribers".into(),
            kind: VpnKind::Mpls(vec![MplsVpnEntry {
                id: "65000:1@10.9.9.9".parse().unwrap(),
                labels: vec![label(16), label(16)],
                learned_labels: Vec::new(),
            }]),
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "VPN \"mpls\": 65000:1@10.9.9.9 lists label 16 twice"
    );
    assert!(idx.vpn("mpls").is_none());
}

fn with_session<'a>(idx: &'a SubscriberIndex, session: &'a str) -> Vec<&'a str> {
    let mut names: Vec<&str> = idx.with_session(session).collect();
    names.sort_unstable();
    names
}

#[test]
fn subscribers_are_found_by_their_session_property_through_every_change() {
    let mut idx = index();
    let session = |value: &str| vec![("acct-session-id".to_string(), value.to_string())];
    idx.login(Login {
        properties: session("s-1"),
        ..login("alice", &["10.0.0.1"])
    })
    .unwrap();
    assert_eq!(
        with_session(&idx, "s-1"),
        ["alice"],
        "the key's case is not the value's"
    );
    assert!(
        with_session(&idx, "S-1").is_empty(),
        "values are compared exactly"
    );
    // A new session (an Interim-Update after a reconnect), other properties beside it.
    idx.login(Login {
        additive: true,
        properties: vec![
            ("acct-session-id".into(), "s-2".into()),
            ("tier".into(), "gold".into()),
        ],
        ..login("alice", &[])
    })
    .unwrap();
    assert!(with_session(&idx, "s-1").is_empty());
    assert_eq!(with_session(&idx, "s-2"), ["alice"]);
    idx.set_properties("alice", vec![("tier".into(), "silver".into())])
        .unwrap();
    assert_eq!(with_session(&idx, "s-2"), ["alice"], "other keys leave it");
    // Properties are the operator's: two subscribers may claim one session.
    idx.upsert(Subscriber {
        properties: session("s-2"),
        ..Subscriber::new(SubscriberName::new("bob", NameCase::Sensitive).unwrap())
    })
    .unwrap();
    assert_eq!(with_session(&idx, "s-2"), ["alice", "bob"]);
    idx.logout("alice", None).unwrap();
    assert_eq!(
        with_session(&idx, "s-2"),
        ["alice", "bob"],
        "logout keeps the record"
    );
    idx.remove("alice").unwrap();
    assert_eq!(with_session(&idx, "s-2"), ["bob"]);
    // The freed slot's next holder does not inherit the session.
    idx.login(login("carol", &["10.0.0.3"])).unwrap();
    assert_eq!(with_session(&idx, "s-2"), ["bob"]);
    idx.upsert(Subscriber::new(
        SubscriberName::new("bob", NameCase::Sensitive).unwrap(),
    ))
    .unwrap();
    assert!(
        with_session(&idx, "s-2").is_empty(),
        "a whole record replaces the properties"
    );
}
