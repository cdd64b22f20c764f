//! What every `SubscriberStore` backend must do, written once and run against each (the embedded
//! redb store here, PostgreSQL in `brasa-subscriber-pg`). Each function takes an opener that
//! returns a fresh handle on the same database: dropping a handle and opening another is a
//! restart.
#![allow(dead_code)]

use std::sync::Arc;

use brasa_subscriber::*;
use brasa_subsvc::fixtures::rate_limited_service;
use brasa_subsvc::{ServiceRequest, SubscriberService, TypeConflictAction};

/// Opens the store under test (the same database every call).
pub type Opener<'a> = &'a mut dyn FnMut() -> Box<dyn SubscriberStore>;

/// The index configuration the functions use.
pub fn config() -> IndexConfig {
    IndexConfig {
        domains: vec!["subscribers".into(), "north".into()],
        name_case: NameCase::Sensitive,
    }
}

fn m(s: &str) -> Mapping {
    s.parse().unwrap()
}

/// A service of type `pccrule`: one ingress rule rate-limiting and accounting traffic to
/// 10.1.1.0/24.
pub fn service(name: &str, conflict: TypeConflictAction) -> SubscriberService {
    let mut service = rate_limited_service(name, conflict);
    service.rules[0].actions.account = true;
    service
}

fn sorted(idx: &SubscriberIndex) -> Vec<Subscriber> {
    let mut v: Vec<Subscriber> = idx.iter().collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Every kind of change survives a reopen: logins with IP, VPN and VLAN mappings, MPLS labels,
/// state, subscriber services, a move, a logout (which clears services) and a removal,
/// applied singly and as one batch.
pub fn restores_every_subscriber_vpn_and_mapping(open: Opener<'_>) {
    let mut idx = SubscriberIndex::new(config()).unwrap();
    let mut store = open();
    let id: MplsVpnId = "1000:1@127.10.10.10".parse().unwrap();
    let mut ops = vec![idx
        .add_vpn(Vpn {
            name: "vpn1".into(),
            domain: "north".into(),
            kind: VpnKind::Mpls(vec![MplsVpnEntry::new(id)]),
        })
        .unwrap()];
    ops.push(
        idx.set_mpls_label(id, 17, vec!["127.1.0.0/16".parse().unwrap()])
            .unwrap(),
    );
    for i in 0..200u32 {
        ops.push(
            idx.login(Login {
                name: format!("sub{i}"),
                mappings: vec![m(&format!("127.0.{}.{}", i / 250, i % 250))],
                properties: vec![("n".into(), i.to_string())],
                auto_logout: Some(u64::from(i)),
                ..Login::default()
            })
            .unwrap(),
        );
    }
    ops.push(
        idx.login(Login {
            name: "vpnuser".into(),
            domain: Some("north".into()),
            mappings: vec![
                m("127.1.2.0/24@vpn1"),
                m("127.0.0.1@42"),
                m("2001:db8::/56"),
            ],
            ..Login::default()
        })
        .unwrap(),
    );
    ops.push(idx.set_state("vpnuser", b"\x00\xffstate".to_vec()).unwrap());
    for name in ["vpnuser", "sub7"] {
        ops.push(
            idx.apply_services(
                name,
                None,
                vec![ServiceRequest::Add(service(
                    "svc",
                    TypeConflictAction::None,
                ))],
            )
            .unwrap(),
        );
    }
    // A move, a logout and a removal must be durable too.
    ops.push(
        idx.login(Login {
            name: "taker".into(),
            mappings: vec![m("127.0.0.5")],
            ..Login::default()
        })
        .unwrap(),
    );
    ops.push(idx.logout("sub7", None).unwrap());
    ops.push(idx.remove("sub8").unwrap());
    let (first, rest) = ops.split_at(3);
    for c in first {
        store.apply(c).unwrap();
    }
    store.apply_batch(rest).unwrap();
    drop(store);

    let mut store = open();
    let snap = store.load().unwrap();
    let restored = SubscriberIndex::restore(config(), snap.vpns, snap.subscribers).unwrap();
    let mut want: Vec<Subscriber> = idx.iter().collect();
    let mut got: Vec<Subscriber> = restored.iter().collect();
    want.sort_by(|a, b| a.name.cmp(&b.name));
    got.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(got.len(), 201);
    assert_eq!(got, want);
    let mut vw: Vec<Vpn> = idx.vpns().cloned().collect();
    let mut vg: Vec<Vpn> = restored.vpns().cloned().collect();
    vw.sort_by(|a, b| a.name.cmp(&b.name));
    vg.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(vg, vw);
    assert_eq!(vg.len(), 2, "vpn1 and the auto-created VLAN VPN 42");
    let ip = |s: &str| s.parse().unwrap();
    assert_eq!(
        restored.lookup(ip("127.0.0.5"), None).unwrap(),
        Some("taker")
    );
    assert_eq!(restored.lookup(ip("127.0.0.7"), None).unwrap(), None);
    assert_eq!(
        restored.lookup(ip("127.1.2.9"), Some("vpn1")).unwrap(),
        Some("vpnuser")
    );
    assert_eq!(
        restored.lookup(ip("2001:db8::1"), None).unwrap(),
        Some("vpnuser")
    );
    assert_eq!(
        restored.vpn_for_label(ip("127.10.10.10"), 17).unwrap().name,
        "vpn1"
    );
    assert!(restored.get("sub8").is_none());
    let services = restored.get("vpnuser").unwrap().services;
    assert_eq!(
        services.get("svc"),
        Some(&service("svc", TypeConflictAction::None))
    );
    assert!(
        restored.get("sub7").unwrap().services.is_empty(),
        "cleared by the logout"
    );
}

/// One batch (a group commit) may touch a key many times: the last write wins, deletes
/// included; a batch larger than any bulk-path threshold behaves the same.
pub fn one_batch_keeps_the_last_write_of_each_key_whatever_its_size(open: Opener<'_>) {
    let mut idx = SubscriberIndex::new(config()).unwrap();
    let mut store = open();
    let mut batch = Vec::new();
    for i in 0..12_000u32 {
        batch.push(
            idx.login(Login {
                name: format!("s{i}"),
                mappings: vec![m(&format!(
                    "127.{}.{}.{}",
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255
                ))],
                ..Login::default()
            })
            .unwrap(),
        );
    }
    // Later in the same batch: a new property for every third, removal of every seventh.
    for i in (0..12_000u32).step_by(3) {
        batch.push(
            idx.login(Login {
                name: format!("s{i}"),
                properties: vec![("p".into(), "late".into())],
                ..Login::default()
            })
            .unwrap(),
        );
    }
    for i in (0..12_000u32).step_by(7) {
        batch.push(idx.remove(&format!("s{i}")).unwrap());
    }
    store.apply_batch(&batch).unwrap();
    // A small batch after the big one: a removal, a re-creation of a removed name.
    let small = vec![
        idx.remove("s1").unwrap(),
        idx.login(Login {
            name: "s7".into(),
            mappings: vec![m("127.200.0.7")],
            ..Login::default()
        })
        .unwrap(),
    ];
    store.apply_batch(&small).unwrap();
    drop(store);
    let snap = open().load().unwrap();
    let restored = SubscriberIndex::restore(config(), snap.vpns, snap.subscribers).unwrap();
    let want = sorted(&idx);
    assert_eq!(want.len(), 12_000 - 12_000 / 7 - 1 - 1 + 1);
    assert_eq!(sorted(&restored), want);
    assert_eq!(
        restored.get("s3").unwrap().properties,
        [("p".to_string(), "late".to_string())]
    );
}

fn route(prefix: &str, label: u32) -> LearnedRoute {
    LearnedRoute {
        key: RouteKey {
            peer: "192.0.2.1".parse().unwrap(),
            rd: (1000u64 << 32) | 1,
            prefix: prefix.parse().unwrap(),
        },
        label,
        attrs: Arc::new(RouteAttributes::new(
            "10.10.10.10".parse().unwrap(),
            vec!["1000:1".parse().unwrap()],
            vec!["100:100".parse().unwrap()],
        )),
    }
}

fn store_route(r: &LearnedRoute) -> ChangeSet {
    ChangeSet {
        routes: vec![RouteChange {
            key: r.key,
            new: Some(r.clone()),
        }],
        ..ChangeSet::default()
    }
}

/// The BGP LEG's routes: stored, replaced (same key, new label), deleted.
pub fn learnt_routes_are_stored_replaced_and_deleted(open: Opener<'_>) {
    let a = route("1.1.1.0/24", 17);
    let b = route("2001:db8::/48", 18);
    let c = route("9.9.9.0/24", 19);
    let mut store = open();
    store
        .apply_batch(&[store_route(&a), store_route(&b), store_route(&c)])
        .unwrap();
    let a2 = route("1.1.1.0/24", 99);
    let gone = ChangeSet {
        routes: vec![RouteChange {
            key: c.key,
            new: None,
        }],
        ..ChangeSet::default()
    };
    store.apply_batch(&[store_route(&a2), gone]).unwrap();
    drop(store);
    let mut routes = open().load().unwrap().routes;
    routes.sort_by_key(|r| r.key);
    let mut want = vec![a2, b];
    want.sort_by_key(|r| r.key);
    assert_eq!(routes, want);
}
