//! The SM over real gRPC on 127.0.0.1 (port 0): LEGs, push and pull EPs, resync, cascade,
//! quarantine, keep-alive failure, bad input, restart from the store.

#[path = "../../sm/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use brasa_sm::ep::EpState;
use brasa_sm::{ReplicaEvent, SmConfig};
use brasa_sm_net::leg::{login_op, logout_op};
use brasa_sm_net::pb;
use brasa_sm_net::{
    ClientError, ClientEvent, EpClient, EpClientOptions, LegClient, SmServer, SmService,
};
use brasa_subscriber::{RedbStore, SubscriberStore};
use brasa_subscriber_pg::PgStore;
use brasa_testkit::postgres::PgInstance;

const LIMIT: Duration = Duration::from_secs(20);

fn config() -> SmConfig {
    SmConfig {
        keepalive_interval: Duration::from_millis(200),
        ack_timeout: Duration::from_millis(600),
        window: 64,
        batch: 16,
        ..support::base_config()
    }
}

/// Which store a test's SM uses.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Redb,
    Postgres,
}

/// A test's store: reopening it after a stop is a restart on the same records.
enum TestStore {
    Redb(tempfile::TempDir),
    Postgres(PgInstance),
}

impl TestStore {
    fn new(backend: Backend) -> TestStore {
        match backend {
            Backend::Redb => TestStore::Redb(tempfile::tempdir().unwrap()),
            Backend::Postgres => TestStore::Postgres(PgInstance::start().unwrap()),
        }
    }

    async fn open(&self) -> Box<dyn SubscriberStore + Send> {
        match self {
            TestStore::Redb(dir) => Box::new(RedbStore::open(dir.path()).unwrap()),
            TestStore::Postgres(pg) => {
                // The synchronous client must not start inside the test's runtime.
                let url = pg.url();
                tokio::task::spawn_blocking(move || Box::new(PgStore::connect(&url).unwrap()))
                    .await
                    .unwrap()
            }
        }
    }
}

/// Runs each named test body (`async fn name(backend: Backend)`) once per backend.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod on_redb {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Backend::Redb).await
            })*
        }
        mod on_postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Backend::Postgres).await
            })*
        }
    };
}

on_both_stores!(
    two_push_eps_in_two_domains_get_exactly_their_subscribers_and_a_pull_ep_resolves,
    a_disconnected_ep_is_resynchronised_on_reconnect_with_nothing_lost_or_duplicated,
    a_cascade_pair_updates_only_the_active_ep_and_fails_over,
    an_ep_that_stops_acknowledging_is_quarantined_until_the_operator_releases_it,
    a_silent_ep_is_declared_failed_and_clears_its_mappings,
    bad_input_gets_precise_errors_and_changes_nothing,
    bulk_batches_apply_in_order_and_a_restart_restores_every_subscriber,
    ep_state_writes_auto_logout_and_operator_resync,
    every_unary_leg_call_applies_or_refuses_precisely,
    subscriber_services_set_by_a_leg_reach_the_ep_and_survive_a_restart,
);

async fn start(store: &TestStore, config: SmConfig) -> (SmServer, String) {
    let service = SmService::open(config, store.open().await).unwrap();
    let server = SmServer::start(service, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("http://{}", server.local_addr());
    (server, url)
}

async fn ep_client(url: &str, id: &str) -> EpClient {
    EpClient::connect(EpClientOptions::new(url, id))
        .await
        .unwrap()
}

async fn synced(client: &mut EpClient) -> usize {
    tokio::time::timeout(LIMIT, client.wait_synced())
        .await
        .expect("sync in time")
        .unwrap()
}

/// Waits until the EP has applied every update the SM sent so far and holds `expected`.
async fn holds(client: &mut EpClient, expected: &[String]) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let now: Vec<String> = names(client);
        if now == expected {
            return;
        }
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Ok(Some(ClientEvent::Ended { error, .. })) => panic!("EP ended: {error}"),
            Ok(Some(_)) => {}
            Ok(None) => panic!("EP stopped"),
            Err(_) => panic!("EP holds {now:?}, expected {expected:?}"),
        }
    }
}

/// Waits for the end of the connection: the error and whether the mappings were cleared.
async fn ended(client: &mut EpClient) -> (ClientError, bool) {
    loop {
        match tokio::time::timeout(LIMIT, client.next_event())
            .await
            .unwrap()
        {
            Some(ClientEvent::Ended { error, cleared }) => return (error, cleared),
            Some(_) => {}
            None => panic!("the client stopped without an end event"),
        }
    }
}

fn names(client: &EpClient) -> Vec<String> {
    client
        .replica()
        .subscribers()
        .iter()
        .map(|s| s.name.as_str().to_owned())
        .collect()
}

fn sorted(v: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = v.into_iter().collect();
    v.sort();
    v
}

async fn bulk(leg: &mut LegClient, ops: Vec<pb::LegOp>) -> Vec<pb::OpResult> {
    let request = pb::BulkRequest { ops, tag: 7 };
    let mut replies = leg
        .grpc()
        .bulk(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    assert_eq!(reply.tag, 7);
    reply.results
}

async fn two_push_eps_in_two_domains_get_exactly_their_subscribers_and_a_pull_ep_resolves(
    backend: Backend,
) {
    let store = TestStore::new(backend);
    let (server, url) = start(&store, config()).await;
    let mut leg = LegClient::connect(&url).await.unwrap();
    let mut ops = Vec::new();
    for i in 0..50 {
        ops.push(login_op(
            &format!("s{i:02}"),
            &[&format!("10.0.0.{i}")],
            None,
        ));
        ops.push(login_op(
            &format!("n{i:02}"),
            &[&format!("10.1.0.{i}")],
            Some("north"),
        ));
    }
    assert!(bulk(&mut leg, ops).await.iter().all(|r| r.code == 0));

    let mut a = ep_client(&url, "a").await;
    let mut b = ep_client(&url, "b").await;
    assert_eq!(synced(&mut a).await, 50);
    assert_eq!(synced(&mut b).await, 50);
    let s_names = sorted((0..50).map(|i| format!("s{i:02}")));
    let n_names = sorted((0..50).map(|i| format!("n{i:02}")));
    assert_eq!(names(&a), s_names);
    assert_eq!(names(&b), n_names);

    // Changes reach only the EPs of their domain; roaming moves a subscriber between them.
    leg.login("s50", &["10.0.0.50", "2001:db8::/56"], None)
        .await
        .unwrap();
    leg.login("n00", &["10.1.9.9"], Some("subscribers"))
        .await
        .unwrap();
    let mut s_now = s_names.clone();
    s_now.push("s50".into());
    s_now.push("n00".into());
    let s_now = sorted(s_now);
    let n_now: Vec<String> = n_names[1..].to_vec();
    holds(&mut a, &s_now).await;
    holds(&mut b, &n_now).await;
    let v6 = a.replica().lookup("2001:db8:0:1::5".parse().unwrap(), None);
    assert_eq!(v6.unwrap().name.as_str(), "s50");

    // Pull mode: nothing on connect, lookups on demand, logouts of pulled subscribers pushed.
    let mut p = ep_client(&url, "p").await;
    assert_eq!(synced(&mut p).await, 0);
    let found = p.pull("10.0.0.7", None).await.unwrap().unwrap();
    assert_eq!(found.unwrap().name.as_str(), "s07");
    assert_eq!(
        p.pull("10.1.0.7", None).await.unwrap(),
        Ok(None),
        "other domain"
    );
    assert_eq!(p.pull("10.200.0.1", None).await.unwrap(), Ok(None));
    let err = p.pull("10.0.0.7", Some("vpnx")).await.unwrap().unwrap_err();
    assert!(err.contains("VPN \"vpnx\" does not exist"), "{err}");
    assert_eq!(names(&p), ["s07"]);
    leg.logout("s07").await.unwrap();
    holds(&mut p, &[]).await;

    drop((a, b, p));
    server.shutdown().await;
}

async fn a_disconnected_ep_is_resynchronised_on_reconnect_with_nothing_lost_or_duplicated(
    backend: Backend,
) {
    let store = TestStore::new(backend);
    let (server, url) = start(&store, config()).await;
    let mut leg = LegClient::connect(&url).await.unwrap();
    let ops = (0..200)
        .map(|i| {
            login_op(
                &format!("s{i:03}"),
                &[&format!("10.0.{}.{}", i / 250, i % 250)],
                None,
            )
        })
        .collect();
    assert!(bulk(&mut leg, ops).await.iter().all(|r| r.code == 0));
    let mut a = ep_client(&url, "a").await;
    synced(&mut a).await;
    let before = a.close();
    assert_eq!(before.len(), 200);

    // While it is away: logouts, new logins, a mapping move, a removal.
    let mut ops = Vec::new();
    for i in 0..20 {
        ops.push(logout_op(&format!("s{i:03}")));
    }
    for i in 0..30 {
        ops.push(login_op(
            &format!("t{i:03}"),
            &[&format!("10.5.0.{i}")],
            None,
        ));
    }
    ops.push(login_op("t000", &["10.0.0.150"], None)); // takes s150's address
    ops.push(pb::LegOp {
        op: Some(pb::leg_op::Op::Remove(pb::RemoveSubscriberRequest {
            name: "s199".into(),
        })),
    });
    assert!(bulk(&mut leg, ops).await.iter().all(|r| r.code == 0));

    // Reconnect with the old table: it is kept until the new sync replaces it.
    let mut a = EpClient::connect_with(EpClientOptions::new(&url, "a"), before)
        .await
        .unwrap();
    assert_eq!(a.replica().len(), 200);
    let mut sent = Vec::new();
    loop {
        match tokio::time::timeout(LIMIT, a.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            ClientEvent::Replica(ReplicaEvent::Upsert(s)) => sent.push(s.name.as_str().to_owned()),
            ClientEvent::Replica(ReplicaEvent::SyncEnd { .. }) => break,
            ClientEvent::Ended { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
    let expected: Vec<String> = {
        let server_core = server.service().core();
        let mut v: Vec<String> = server_core
            .index()
            .domain_members("subscribers")
            .map(|s| s.name.as_str().to_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        expected.len(),
        200 - 20 - 1 + 30 - 1,
        "s150 lost its only mapping"
    );
    assert_eq!(names(&a), expected);
    assert_eq!(
        sorted(sent.clone()),
        expected,
        "each subscriber sent once: {sent:?}"
    );
    let t000 = a
        .replica()
        .lookup("10.0.0.150".parse().unwrap(), None)
        .unwrap();
    assert_eq!(t000.name.as_str(), "t000");
    assert!(a.replica().anomalies().is_empty());
    drop(a);
    server.shutdown().await;
}

async fn a_cascade_pair_updates_only_the_active_ep_and_fails_over(backend: Backend) {
    let store = TestStore::new(backend);
    let (server, url) = start(&store, config()).await;
    let mut leg = LegClient::connect(&url).await.unwrap();
    leg.login("n1", &["10.1.0.1"], Some("north")).await.unwrap();
    let mut c1 = EpClient::connect(EpClientOptions::new(&url, "c1").role(pb::CascadeRole::Active))
        .await
        .unwrap();
    let mut c2 = EpClient::connect(EpClientOptions::new(&url, "c2").role(pb::CascadeRole::Standby))
        .await
        .unwrap();
    synced(&mut c1).await;
    leg.login("n2", &["10.1.0.2"], Some("north")).await.unwrap();
    holds(&mut c1, &["n1".into(), "n2".into()]).await;
    assert!(c2.replica().is_empty(), "the standby is not updated");
    assert_eq!(c2.replica().syncs(), 0);

    // The active one dies; the standby takes over and is synchronised.
    drop(c1);
    leg.login("n3", &["10.1.0.3"], Some("north")).await.unwrap();
    c2.set_role(pb::CascadeRole::Active).unwrap();
    synced(&mut c2).await;
    assert_eq!(names(&c2), ["n1", "n2", "n3"]);
    leg.login("n4", &["10.1.0.4"], Some("north")).await.unwrap();
    holds(
        &mut c2,
        &["n1".into(), "n2".into(), "n3".into(), "n4".into()],
    )
    .await;
    let views = server.service().core().ep_views(std::time::Instant::now());
    let c2_view = views.iter().find(|v| v.id == "c2").unwrap();
    assert_eq!(c2_view.counters.failovers, 1);
    assert_eq!(c2_view.state, EpState::Synced);
    drop(c2);
    server.shutdown().await;
}

async fn an_ep_that_stops_acknowledging_is_quarantined_until_the_operator_releases_it(
    backend: Backend,
) {
    let store = TestStore::new(backend);
    let (server, url) = start(&store, config()).await;
    let mut leg = LegClient::connect(&url).await.unwrap();
    leg.login("s1", &["10.0.0.1"], None).await.unwrap();
    let mut options = EpClientOptions::new(&url, "a");
    options.link.ack = false;
    let mut a = EpClient::connect(options).await.unwrap();
    let ended = ended(&mut a).await;
    match ended {
        (ClientError::Status(s), true) => {
            assert_eq!(s.code(), tonic::Code::Unavailable);
            assert!(s.message().contains("quarantined for 60 s"), "{s:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(a.replica().is_empty(), "failure action clear-mappings");
    let refused = EpClient::connect(EpClientOptions::new(&url, "a")).await;
    match refused {
        Err(ClientError::Status(s)) => {
            assert_eq!(s.code(), tonic::Code::Unavailable);
            assert!(s.message().contains("release-quarantine a"), "{s:?}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a quarantined EP was accepted"),
    }
    server
        .service()
        .with_core(|c| c.release_quarantine("a"))
        .unwrap();
    let mut a = ep_client(&url, "a").await;
    assert_eq!(synced(&mut a).await, 1);
    drop(a);
    server.shutdown().await;
}

async fn a_silent_ep_is_declared_failed_and_clears_its_mappings(backend: Backend) {
    let store = TestStore::new(backend);
    let (server, url) = start(&store, config()).await;
    let mut leg = LegClient::connect(&url).await.unwrap();
    leg.login("s1", &["10.0.0.1"], None).await.unwrap();
    let mut options = EpClientOptions::new(&url, "a");
    options.link.keepalives = false;
    let mut a = EpClient::connect(options).await.unwrap();
    synced(&mut a).await;
    assert_eq!(a.replica().len(), 1);
    let (error, cleared) = ended(&mut a).await;
    assert!(error.to_string().contains("keep-alive"), "{error}");
    assert!(cleared);
    assert!(a.replica().is_empty());
    let views = server.service().core().ep_views(std::time::Instant::now());
    assert_eq!(views[0].state, EpState::Disconnected);
    server.shutdown().await;
}

async fn bad_input_gets_precise_errors_and_changes_nothing(backend: Backend) {
    let store = TestStore::new(backend);
    let (server, url) = start(&store, config()).await;
    let mut leg = LegClient::connect(&url).await.unwrap();
    leg.login("owner", &["10.0.0.1"], None).await.unwrap();
    let cases: Vec<(pb::LoginRequest, tonic::Code, &str)> = vec![
        (
            brasa_sm_net::leg::login_request("bad\"name", &["10.0.0.2"], None),
            tonic::Code::InvalidArgument,
            "invalid subscriber name \"bad\\\"name\"",
        ),
        (
            brasa_sm_net::leg::login_request("x", &["10.0.0.2", "10.0.0.3", "10.0.0.2"], None),
            tonic::Code::InvalidArgument,
            "mapping 10.0.0.2 is given twice in one call",
        ),
        (
            brasa_sm_net::leg::login_request("x", &["10.0.0.2"], Some("south")),
            tonic::Code::InvalidArgument,
            "domain \"south\" is not configured",
        ),
        (
            brasa_sm_net::leg::login_request("x", &["10.0.0.2@corp"], None),
            tonic::Code::InvalidArgument,
            "VPN \"corp\" does not exist",
        ),
        (
            brasa_sm_net::leg::login_request("x", &["10.0.0.1", "10.0.0.999"], None),
            tonic::Code::InvalidArgument,
            "mapping 2 \"10.0.0.999\"",
        ),
    ];
    for (request, code, text) in cases {
        let status = leg.grpc().login(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert!(
            status.message().contains(text),
            "{:?} lacks {text:?}",
            status.message()
        );
    }
    assert_eq!(leg.get("x").await.unwrap(), None);
    let owner = leg.get("owner").await.unwrap().unwrap();
    assert_eq!(
        owner.mappings,
        ["10.0.0.1"],
        "the refused move changed nothing"
    );

    // In a bulk batch, bad operations are answered one by one; the good ones apply in order.
    let results = bulk(
        &mut leg,
        vec![
            login_op("y", &["10.0.0.5"], None),
            login_op("y", &["10.0.0.6@7"], Some("nowhere")),
            pb::LegOp { op: None },
            logout_op("nobody"),
            login_op("y", &["10.0.0.7"], None),
        ],
    )
    .await;
    let codes: Vec<i32> = results.iter().map(|r| r.code).collect();
    assert_eq!(codes, [0, 3, 3, 5, 0]);
    assert!(results[3]
        .message
        .contains("no subscriber named \"nobody\""));
    let y = leg.get("y").await.unwrap().unwrap();
    assert_eq!(y.mappings, ["10.0.0.7"]);
    let vpns = server.service().core().index().vpns().count();
    assert_eq!(vpns, 0, "the refused IP@VLAN did not create VLAN VPN 7");
    server.shutdown().await;
}

async fn bulk_batches_apply_in_order_and_a_restart_restores_every_subscriber(backend: Backend) {
    let store = TestStore::new(backend);
    let (server, url) = start(&store, config()).await;
    let mut leg = LegClient::connect(&url).await.unwrap();
    // Ten batches on one stream: the last operation on each name wins.
    let batches: Vec<pb::BulkRequest> = (0..10u64)
        .map(|b| pb::BulkRequest {
            tag: b,
            ops: (0..100)
                .map(|i| {
                    if b % 2 == 0 {
                        login_op(&format!("s{i}"), &[&format!("10.0.{b}.{i}")], None)
                    } else {
                        logout_op(&format!("s{i}"))
                    }
                })
                .collect(),
        })
        .collect();
    let mut replies = leg
        .grpc()
        .bulk(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    let mut tags = Vec::new();
    while let Some(reply) = replies.message().await.unwrap() {
        assert!(reply.results.iter().all(|r| r.code == 0));
        tags.push(reply.tag);
    }
    assert_eq!(tags, (0..10).collect::<Vec<_>>());
    leg.login("s0", &["10.0.8.0", "10.9.0.0/16@100"], None)
        .await
        .unwrap();
    let s5 = leg.get("s5").await.unwrap().unwrap();
    assert!(
        !s5.logged_in && s5.mappings.is_empty(),
        "batch 9 logged everyone out"
    );
    drop(leg);
    server.shutdown().await;

    let (server, url) = start(&store, config()).await;
    let mut leg = LegClient::connect(&url).await.unwrap();
    let s0 = leg.get("s0").await.unwrap().unwrap();
    assert_eq!(s0.mappings, ["10.0.8.0", "10.9.0.0/16@100"]);
    assert!(s0.logged_in);
    let counts = leg
        .grpc()
        .counts(pb::CountsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counts.total, 100);
    let hit = leg
        .grpc()
        .lookup(pb::LookupRequest {
            address: "10.9.3.4".into(),
            vpn: Some("100".into()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        hit.subscriber.unwrap().name,
        "s0",
        "the auto-created VLAN VPN survived"
    );
    server.shutdown().await;
}

async fn ep_state_writes_auto_logout_and_operator_resync(backend: Backend) {
    let store = TestStore::new(backend);
    let (server, url) = start(&store, config()).await;
    let mut leg = LegClient::connect(&url).await.unwrap();
    leg.login("s1", &["10.0.0.1"], None).await.unwrap();
    let mut request = brasa_sm_net::leg::login_request("s2", &["10.0.0.2"], None);
    request.auto_logout_after_seconds = Some(1);
    leg.grpc().login(request).await.unwrap();
    let mut a = ep_client(&url, "a").await;
    assert_eq!(synced(&mut a).await, 2);

    // The EP writes state; the SM keeps it (and pushes the changed record back).
    a.set_state("s1", b"quota=17".to_vec()).unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while leg.get("s1").await.unwrap().unwrap().state != b"quota=17" {
        assert!(tokio::time::Instant::now() < deadline, "state not stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // s2 logs itself out after a second; the EP hears it.
    holds(&mut a, &["s1".into()]).await;
    let s2 = leg.get("s2").await.unwrap().unwrap();
    assert!(!s2.logged_in && s2.auto_logout.is_none());

    // The operator asks for a resync: a second full sync arrives.
    server.service().with_core(|c| c.resync("a")).unwrap();
    assert_eq!(synced(&mut a).await, 1);
    assert_eq!(a.replica().syncs(), 2);
    assert_eq!(a.replica().get("s1").unwrap().state, b"quota=17");
    drop(a);
    server.shutdown().await;
}

async fn every_unary_leg_call_applies_or_refuses_precisely(backend: Backend) {
    let store = TestStore::new(backend);
    let (server, url) = start(&store, config()).await;
    let mut leg = LegClient::connect(&url).await.unwrap();
    let g = leg.grpc();
    let sub = pb::Subscriber {
        name: "cpe-1".into(),
        domain: "north".into(),
        mappings: vec!["10.8.0.0/24@corp".into()],
        ..Default::default()
    };
    let vpn = pb::Vpn {
        name: "corp".into(),
        domain: "north".into(),
        kind: Some(pb::vpn::Kind::Vlan(300)),
    };
    g.add_vpn(pb::AddVpnRequest { vpn: Some(vpn) })
        .await
        .unwrap();
    let add = pb::AddSubscriberRequest {
        subscriber: Some(sub.clone()),
        replace: false,
    };
    g.add_subscriber(add.clone()).await.unwrap();
    let again = g.add_subscriber(add).await.unwrap_err();
    assert_eq!(again.code(), tonic::Code::AlreadyExists, "{again:?}");
    let props = pb::SetPropertiesRequest {
        name: "cpe-1".into(),
        properties: vec![pb::Property {
            key: "tier".into(),
            value: "gold".into(),
        }],
    };
    g.set_properties(props).await.unwrap();
    g.set_state(pb::SetStateRequest {
        name: "cpe-1".into(),
        state: vec![1, 2],
    })
    .await
    .unwrap();
    let in_domain = pb::GetSubscriberRequest {
        name: "cpe-1".into(),
        domain: Some("north".into()),
    };
    let got = g.get_subscriber(in_domain).await.unwrap().into_inner();
    assert_eq!(got.properties[0].value, "gold");
    assert_eq!(got.state, [1, 2]);
    let wrong_domain = pb::GetSubscriberRequest {
        name: "cpe-1".into(),
        domain: Some("subscribers".into()),
    };
    let e = g.get_subscriber(wrong_domain).await.unwrap_err();
    assert!(e.message().contains("in domain \"subscribers\""), "{e:?}");
    let names = g
        .list_names(pb::ListNamesRequest {
            pattern: Some(pb::list_names_request::Pattern::Prefix("cpe-".into())),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names.names, ["cpe-1"]);
    let in_use = g
        .remove_vpn(pb::RemoveVpnRequest {
            name: "corp".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(in_use.code(), tonic::Code::FailedPrecondition, "{in_use:?}");
    let by_mapping = pb::LogoutByMappingRequest {
        mapping: "10.8.0.0/24@corp".into(),
    };
    let reply = g.logout_by_mapping(by_mapping).await.unwrap().into_inner();
    assert_eq!(
        reply.changes[0].subscriber.as_ref().unwrap().mappings.len(),
        0
    );
    g.remove_vpn(pb::RemoveVpnRequest {
        name: "corp".into(),
    })
    .await
    .unwrap();
    g.remove_subscriber(pb::RemoveSubscriberRequest {
        name: "cpe-1".into(),
    })
    .await
    .unwrap();
    let gone = g
        .remove_subscriber(pb::RemoveSubscriberRequest {
            name: "cpe-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    let bad = g
        .lookup(pb::LookupRequest {
            address: "10.8.0.1x".into(),
            vpn: None,
        })
        .await
        .unwrap_err();
    assert!(
        bad.message().contains("not an IPv4 or IPv6 address"),
        "{bad:?}"
    );
    server.shutdown().await;
}

/// Waits until the EP's replica satisfies `done`.
async fn until(client: &mut EpClient, what: &str, done: impl Fn(&EpClient) -> bool) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !done(client) {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Ok(Some(ClientEvent::Ended { error, .. })) => panic!("EP ended: {error}"),
            Ok(Some(_)) => {}
            Ok(None) => panic!("EP stopped"),
            Err(_) => panic!("the EP never saw {what}"),
        }
    }
}

fn ep_services(client: &EpClient, name: &str) -> Vec<String> {
    client
        .replica()
        .get(name)
        .map(|s| s.services.iter().map(|s| s.name.clone()).collect())
        .unwrap_or_default()
}

async fn subscriber_services_set_by_a_leg_reach_the_ep_and_survive_a_restart(backend: Backend) {
    use brasa_subsvc::{ServiceRequest, TypeConflictAction};
    use support::pcc_service as service;
    let activate = |requests: &[ServiceRequest]| pb::ActivateServicesRequest {
        name: "s1".into(),
        requests: requests
            .iter()
            .map(brasa_sm::service_proto::request_to_proto)
            .collect(),
    };
    let store = TestStore::new(backend);
    let (server, url) = start(&store, config()).await;
    let mut leg = LegClient::connect(&url).await.unwrap();
    leg.login("s1", &["10.0.0.1"], None).await.unwrap();
    let mut a = ep_client(&url, "a").await;
    assert_eq!(synced(&mut a).await, 1);

    let gold = service("gold", TypeConflictAction::None);
    leg.grpc()
        .activate_services(activate(&[gold]))
        .await
        .unwrap();
    until(&mut a, "gold", |c| ep_services(c, "s1") == ["gold"]).await;
    let keep_old = service("silver", TypeConflictAction::KeepOld);
    let refused = leg
        .grpc()
        .activate_services(activate(&[keep_old]))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    let garbage = pb::ActivateServicesRequest {
        name: "s1".into(),
        requests: vec![pb::ServiceRequest { request: None }],
    };
    let garbage = leg.grpc().activate_services(garbage).await.unwrap_err();
    assert_eq!(garbage.code(), tonic::Code::InvalidArgument, "{garbage:?}");
    drop(a);
    drop(leg);
    server.shutdown().await;

    let (server, url) = start(&store, config()).await;
    let mut leg = LegClient::connect(&url).await.unwrap();
    let s1 = leg.get("s1").await.unwrap().unwrap();
    assert_eq!(s1.services.len(), 1, "{s1:?}");
    assert_eq!(s1.services[0].name, "gold");
    let mut a = ep_client(&url, "a").await;
    synced(&mut a).await;
    assert_eq!(ep_services(&a, "s1"), ["gold"]);
    let off = pb::DeactivateServicesRequest {
        name: "s1".into(),
        services: vec!["gold".into()],
    };
    leg.grpc().deactivate_services(off.clone()).await.unwrap();
    until(&mut a, "gold deactivated", |c| {
        ep_services(c, "s1").is_empty()
    })
    .await;
    let again = leg.grpc().deactivate_services(off).await.unwrap_err();
    assert_eq!(again.code(), tonic::Code::NotFound, "{again:?}");
    drop(a);
    server.shutdown().await;
}
