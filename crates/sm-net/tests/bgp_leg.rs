//! The BGP LEG end to end: a real gobgpd (Debian's) announces MPLS/VPN routes to the SM's
//! speaker; the SM turns them into VPN labels and `range@VPN` mappings of `community@VPN`
//! subscribers, makes them durable and pushes them to a reference EP over gRPC. Every address
//! is in 127.0.24.0/24 (this suite's own), each test starts its own gobgpd in a temp dir and
//! kills only that process.

#[path = "../../bgp-net/tests/common/mod.rs"]
mod bgp;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use bgp::{wait_until, GoBgp, GoOptions, RawPeer, AS};
use brasa_bgp::{ConnectMode, LocalConfig, PeerConfig, State};
use brasa_bgp_net::{NetPeerConfig, SpeakerConfig};
use brasa_sm::bgp_leg::{BgpLegConfig, LegNeighbor, LegPeerConfig};
use brasa_sm::{EpConfig, EpMode, EpReplica, FailureAction, Op, SmConfig};
use brasa_sm_net::{BgpLeg, ClientEvent, EpClient, EpClientOptions, SmServer, SmService};
use brasa_subscriber::{
    IndexConfig, MplsVpnEntry, NameCase, RedbStore, Subscriber, SubscriberName, Vpn, VpnKind,
};

const LIMIT: Duration = Duration::from_secs(60);
const PE: &str = "10.10.10.10";
const SEED: &str =
    "label 10 rd 1000:1 rt 1000:1 community 100:100 nexthop 10.10.10.10 local-pref 100";

fn addr(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 24, host))
}

struct Sm {
    server: SmServer,
    leg: BgpLeg,
    url: String,
    listen: SocketAddr,
}

impl Sm {
    fn service(&self) -> &SmService {
        self.server.service()
    }

    async fn execute(&self, op: Op) {
        self.service().execute(op).await.unwrap();
    }

    async fn stop(self) {
        self.leg.shutdown().await;
        self.server.shutdown().await;
    }

    /// Waits until the speaker's session with `peer` is Established.
    async fn session_up(&self, peer: IpAddr) {
        let deadline = tokio::time::Instant::now() + LIMIT;
        while self.leg.speaker().peer_status(peer).await.unwrap().state != State::Established {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no session with {peer}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `done` holds for the SM's index (called with the core locked).
    async fn until(&self, what: &str, done: impl Fn(&brasa_subscriber::SubscriberIndex) -> bool) {
        let deadline = tokio::time::Instant::now() + LIMIT;
        while !done(self.service().core().index()) {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An SM with EP `sce1` (push) and a BGP LEG whose passive peers are `peers`, listening on
/// `listen` (127.0.24.1, port 0 for any).
async fn start_sm(dir: &Path, listen: SocketAddr, peers: &[IpAddr], restart: Duration) -> Sm {
    start_sm_as(dir, listen, peers, restart, None).await
}

/// An SM with the BGP LEG, started active, or as the standby of a pair when `standby` says why.
async fn start_sm_as(
    dir: &Path,
    listen: SocketAddr,
    peers: &[IpAddr],
    restart: Duration,
    standby: Option<&str>,
) -> Sm {
    let config = SmConfig {
        index: IndexConfig {
            domains: vec!["subscribers".into()],
            name_case: NameCase::Sensitive,
        },
        eps: vec![EpConfig {
            id: "sce1".into(),
            domain: "subscribers".into(),
            mode: EpMode::Push,
            failure_action: FailureAction::Ignore,
            cascade_partner: None,
        }],
        keepalive_interval: Duration::from_secs(1),
        bgp_leg: Some(BgpLegConfig {
            peers: peers
                .iter()
                .map(|p| LegPeerConfig {
                    address: *p,
                    restart_time: restart,
                })
                .collect(),
        }),
        ..SmConfig::default()
    };
    let store = Box::new(RedbStore::open(dir).unwrap());
    let service = match standby {
        None => SmService::open(config, store).unwrap(),
        Some(why) => SmService::open_standby(config, store, why.into()).unwrap(),
    };
    let server = SmServer::start(service.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let speaker = SpeakerConfig {
        local: LocalConfig {
            asn: AS,
            router_id: Ipv4Addr::new(127, 0, 24, 1),
        },
        listen: vec![listen],
        peers: peers
            .iter()
            .map(|p| {
                let mut peer = PeerConfig::new(*p, AS, ConnectMode::Passive);
                peer.hold_time = 30;
                NetPeerConfig {
                    peer,
                    port: 179,
                    local_address: None,
                }
            })
            .collect(),
    };
    let leg = BgpLeg::start(service, speaker).await.unwrap();
    let listen = leg.speaker().listen_addrs()[0];
    let url = format!("http://{}", server.local_addr());
    Sm {
        server,
        leg,
        url,
        listen,
    }
}

fn mpls_vpn(name: &str, entries: &[&str]) -> Op {
    Op::AddVpn(Vpn {
        name: name.into(),
        domain: "subscribers".into(),
        kind: VpnKind::Mpls(
            entries
                .iter()
                .map(|e| MplsVpnEntry::new(e.parse().unwrap()))
                .collect(),
        ),
    })
}

fn ce(name: &str, communities: &[&str]) -> Op {
    let mut s = Subscriber::new(SubscriberName::new(name, NameCase::Sensitive).unwrap());
    s.communities = communities.iter().map(|c| c.parse().unwrap()).collect();
    Op::Add {
        subscriber: s,
        replace: true,
    }
}

async fn ep(url: &str) -> EpClient {
    let mut client = EpClient::connect(EpClientOptions::new(url, "sce1"))
        .await
        .unwrap();
    tokio::time::timeout(LIMIT, client.wait_synced())
        .await
        .expect("first sync")
        .unwrap();
    client
}

/// Reads the EP's updates until `done` holds for its table.
async fn ep_until(client: &mut EpClient, what: &str, done: impl Fn(&EpReplica) -> bool) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if done(&client.replica()) {
            return;
        }
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Ok(Some(ClientEvent::Ended { error, .. })) => panic!("EP ended: {error}"),
            Ok(Some(_)) => {}
            Ok(None) => panic!("EP stopped"),
            Err(_) => {
                let ep = client.replica();
                panic!(
                    "timed out waiting for the EP: {what}; it holds {:?} and VPNs {:?}",
                    ep.subscribers(),
                    ep.vpns()
                )
            }
        }
    }
}

fn ep_labels(ep: &EpReplica, vpn: &str) -> Vec<u32> {
    ep.vpns()
        .iter()
        .filter(|v| v.name == vpn)
        .flat_map(|v| match &v.kind {
            VpnKind::Mpls(entries) => entries
                .iter()
                .flat_map(|e| e.learned_labels.clone())
                .collect(),
            VpnKind::Vlan(_) => Vec::new(),
        })
        .collect()
}

fn ep_who(ep: &EpReplica, address: &str, vpn: &str) -> Option<String> {
    ep.lookup(address.parse().unwrap(), Some(vpn))
        .map(|s| s.name.as_str().to_owned())
}

fn learned(index: &brasa_subscriber::SubscriberIndex, name: &str) -> Vec<String> {
    index.get(name).map_or_else(Vec::new, |s| {
        s.learned.iter().map(ToString::to_string).collect()
    })
}

/// The SM's view of its LEG peer `peer`.
fn neighbor(sm: &Sm, peer: IpAddr) -> Option<LegNeighbor> {
    sm.service()
        .core()
        .bgp_neighbors()
        .unwrap_or_default()
        .into_iter()
        .find(|n| n.address == peer)
}

fn neighbor_up(sm: &Sm, peer: IpAddr) -> bool {
    neighbor(sm, peer).is_some_and(|n| n.up)
}

/// Two peers feed `vpn1` (entries `1000:1@10.10.10.10` and `1000:0@10.10.0.0`): gobgpd at
/// `go_addr` announces 1.1.1.0/24 (label 10) and 1.1.2.0/24 (label 12) with community 100:100
/// for `sub1`; a raw peer at `raw_addr` announces 10.0.0.0/24 (RD 1000:0, label 16, community
/// 100:0, next hop 10.10.0.0) for `raw`. Returns once the SM has learnt all three.
async fn feed_two_peers(sm: &Sm, go_addr: IpAddr, raw_addr: IpAddr) -> (GoBgp, RawPeer) {
    sm.execute(mpls_vpn(
        "vpn1",
        &["1000:1@10.10.10.10", "1000:0@10.10.0.0"],
    ))
    .await;
    sm.execute(ce("sub1", &["100:100@vpn1"])).await;
    sm.execute(ce("raw", &["100:0@vpn1"])).await;
    let go = GoBgp::start(GoOptions::new(go_addr, sm.listen));
    go.add("vpnv4", "1.1.1.0/24", SEED);
    go.add(
        "vpnv4",
        "1.1.2.0/24",
        "label 12 rd 1000:1 rt 1000:1 community 100:100 nexthop 10.10.10.10",
    );
    let mut raw = RawPeer::establish(raw_addr, sm.listen).await;
    raw.send(&bgp::table_bytes(1, 1)).await;
    sm.until("both peers' routes", |i| {
        learned(i, "sub1") == ["1.1.1.0/24@vpn1", "1.1.2.0/24@vpn1"]
            && learned(i, "raw") == ["10.0.0.0/24@vpn1"]
    })
    .await;
    (go, raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documents_example_against_gobgpd() {
    let dir = tempfile::tempdir().unwrap();
    let go_addr = addr(10);
    let sm = start_sm(
        dir.path(),
        SocketAddr::new(addr(1), 0),
        &[go_addr],
        Duration::from_secs(120),
    )
    .await;
    sm.execute(mpls_vpn("vpn1", &["1000:1@10.10.10.10"])).await;
    sm.execute(ce("sub1", &["100:100@vpn1"])).await;
    let mut ep = ep(&sm.url).await;
    let go = GoBgp::start(GoOptions::new(go_addr, sm.listen));
    sm.session_up(go_addr).await;

    // vpn1 `1000:1@PE`, sub1 `100:100@vpn1`; the route 1.1.1.0/24, label 10, RD/RT 1000:1,
    // community 100:100: label 10 for vpn1 and 1.1.1.0/24@vpn1 for sub1, at the EP.
    go.add("vpnv4", "1.1.1.0/24", SEED);
    ep_until(&mut ep, "label 10 and sub1's range", |ep| {
        ep_labels(ep, "vpn1") == [10] && ep_who(ep, "1.1.1.7", "vpn1").as_deref() == Some("sub1")
    })
    .await;
    {
        let core = sm.service().core();
        let index = core.index();
        assert_eq!(
            index.lookup("1.1.1.7".parse().unwrap(), Some("vpn1")),
            Ok(Some("sub1"))
        );
        assert_eq!(learned(index, "sub1"), ["1.1.1.0/24@vpn1"]);
    }

    // A route of an RD no VPN is configured with: held, but it changes nothing.
    go.add(
        "vpnv4",
        "2.2.2.0/24",
        "label 20 rd 2000:9 rt 2000:9 community 100:100 nexthop 10.10.10.11",
    );
    sm.until("the other RD's route", |i| i.learned_route_count() == 2)
        .await;
    {
        let core = sm.service().core();
        let index = core.index();
        let other = index
            .learned_routes(None)
            .unwrap()
            .find(|r| r.route.key.prefix.to_string() == "2.2.2.0/24")
            .unwrap();
        assert!(other.vpns.is_empty(), "ignored: {other:?}");
        assert_eq!(learned(index, "sub1"), ["1.1.1.0/24@vpn1"]);
    }
    // Configured later, it applies without a route refresh.
    sm.execute(mpls_vpn("vpn2", &["2000:9@10.10.10.11"])).await;
    ep_until(&mut ep, "vpn2's learnt label", |ep| {
        ep_labels(ep, "vpn2") == [20]
    })
    .await;

    // The withdrawal removes the label and the range.
    go.del("vpnv4", "1.1.1.0/24", "label 10 rd 1000:1");
    ep_until(&mut ep, "the withdrawal", |ep| {
        ep_labels(ep, "vpn1").is_empty() && ep_who(ep, "1.1.1.7", "vpn1").is_none()
    })
    .await;

    // gobgpd restarts: graceful restart keeps the mappings meanwhile, then its new
    // End-of-RIB reconciles them (1.1.2.0/24 is not announced again, 1.1.3.0/24 is new).
    go.add("vpnv4", "1.1.1.0/24", SEED);
    go.add(
        "vpnv4",
        "1.1.2.0/24",
        "label 12 rd 1000:1 rt 1000:1 community 100:100 nexthop 10.10.10.10",
    );
    ep_until(&mut ep, "two ranges", |ep| {
        ep_who(ep, "1.1.2.1", "vpn1").as_deref() == Some("sub1")
            && ep_who(ep, "1.1.1.1", "vpn1").as_deref() == Some("sub1")
    })
    .await;
    tokio::task::block_in_place(|| go.crash());
    let deadline = tokio::time::Instant::now() + LIMIT;
    while neighbor_up(&sm, go_addr) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session stays up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        learned(sm.service().core().index(), "sub1"),
        ["1.1.1.0/24@vpn1", "1.1.2.0/24@vpn1"],
        "kept while gobgpd restarts"
    );
    let mut options = GoOptions::new(go_addr, sm.listen);
    options.admin_down = true;
    options.restarting = true;
    let go = GoBgp::start(options);
    go.add("vpnv4", "1.1.1.0/24", SEED);
    go.add(
        "vpnv4",
        "1.1.3.0/24",
        "label 13 rd 1000:1 rt 1000:1 community 100:100 nexthop 10.10.10.10",
    );
    go.cli(&["neighbor", &sm.listen.ip().to_string(), "enable"]);
    ep_until(&mut ep, "the End-of-RIB to reconcile", |ep| {
        let mut labels = ep_labels(ep, "vpn1");
        labels.sort_unstable();
        labels == [10, 13]
            && ep_who(ep, "1.1.2.1", "vpn1").is_none()
            && ep_who(ep, "1.1.3.1", "vpn1").as_deref() == Some("sub1")
            && ep_who(ep, "1.1.1.1", "vpn1").as_deref() == Some("sub1")
    })
    .await;
    assert_eq!(
        learned(sm.service().core().index(), "sub1"),
        ["1.1.1.0/24@vpn1", "1.1.3.0/24@vpn1"]
    );
    drop(ep);
    sm.stop().await;
    drop(go);
}

/// The SM restarts: its mappings come back from the store before any peer is back, the
/// End-of-RIB of the peer that returns reconciles them, and the restart timer sweeps those of a
/// peer that does not return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sm_keeps_its_mappings_until_end_of_rib_or_the_restart_timer() {
    let dir = tempfile::tempdir().unwrap();
    let (go_addr, raw_addr) = (addr(20), addr(21));
    let listen = SocketAddr::new(addr(2), bgp::free_port());
    let peers = [go_addr, raw_addr];
    let sm = start_sm(dir.path(), listen, &peers, Duration::from_secs(3)).await;
    let (go, raw) = feed_two_peers(&sm, go_addr, raw_addr).await;
    sm.stop().await;
    drop(raw);

    // While the SM is down, gobgpd's table changes; it stays away until enabled again.
    tokio::task::block_in_place(|| {
        go.cli(&["neighbor", &listen.ip().to_string(), "disable"]);
        go.del("vpnv4", "1.1.2.0/24", "label 12 rd 1000:1");
        go.add(
            "vpnv4",
            "1.1.4.0/24",
            "label 14 rd 1000:1 rt 1000:1 community 100:100 nexthop 10.10.10.10",
        );
    });
    let sm = start_sm(dir.path(), listen, &peers, Duration::from_secs(3)).await;
    {
        let core = sm.service().core();
        let index = core.index();
        assert_eq!(
            learned(index, "sub1"),
            ["1.1.1.0/24@vpn1", "1.1.2.0/24@vpn1"]
        );
        assert_eq!(learned(index, "raw"), ["10.0.0.0/24@vpn1"]);
    }
    let mut ep = ep(&sm.url).await;
    assert_eq!(
        ep_who(&ep.replica(), "1.1.2.1", "vpn1").as_deref(),
        Some("sub1")
    );
    let mut labels = ep_labels(&ep.replica(), "vpn1");
    labels.sort_unstable();
    assert_eq!(labels, [10, 12, 16], "restored from the store");

    tokio::task::block_in_place(|| go.cli(&["neighbor", &listen.ip().to_string(), "enable"]));
    ep_until(
        &mut ep,
        "gobgpd's End-of-RIB and the raw peer's timer",
        |ep| {
            let mut labels = ep_labels(ep, "vpn1");
            labels.sort_unstable();
            labels == [10, 14]
                && ep_who(ep, "1.1.2.1", "vpn1").is_none()
                && ep_who(ep, "1.1.4.1", "vpn1").as_deref() == Some("sub1")
                && ep_who(ep, "10.0.0.1", "vpn1").is_none()
        },
    )
    .await;
    let raw_view = neighbor(&sm, raw_addr).unwrap();
    assert_eq!(raw_view.counters.restart_timeouts, 1);
    sm.stop().await;
    drop(go);
}

/// Sessions flap (resets, disable/enable, a crash) while gobgpd's table changes: afterwards
/// the SM holds exactly what gobgpd announces, once, at the SM and at the EP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_flap_storm_leaves_exactly_the_announced_mappings() {
    let dir = tempfile::tempdir().unwrap();
    let go_addr = addr(30);
    let sm = start_sm(
        dir.path(),
        SocketAddr::new(addr(3), 0),
        &[go_addr],
        Duration::from_secs(120),
    )
    .await;
    sm.execute(mpls_vpn("vpn1", &["1000:1@10.10.10.10"])).await;
    for c in 0..4 {
        sm.execute(ce(&format!("ce{c}"), &[&format!("100:{c}@vpn1")]))
            .await;
    }
    let mut ep = ep(&sm.url).await;
    let listen = sm.listen;
    let mut go = GoBgp::start(GoOptions::new(go_addr, listen));
    sm.session_up(go_addr).await;

    let route = |i: u32, c: u32| {
        (
            format!("1.2.{i}.0/24"),
            format!(
                "label {} rd 1000:1 rt 1000:1 community 100:{c} nexthop {PE}",
                100 + i
            ),
        )
    };
    let mut table = std::collections::BTreeMap::new();
    let mut seed = 0x2545_f491u32;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    tokio::task::block_in_place(|| {
        for round in 0..12u32 {
            for _ in 0..4 {
                let i = next() % 16;
                if next() % 3 == 0 {
                    if table.remove(&i).is_some() {
                        go.del(
                            "vpnv4",
                            &route(i, 0).0,
                            &format!("label {} rd 1000:1", 100 + i),
                        );
                    }
                } else {
                    let c = next() % 4;
                    table.insert(i, c);
                    let (prefix, spec) = route(i, c);
                    go.add("vpnv4", &prefix, &spec);
                }
            }
            match round % 4 {
                0 => {
                    go.cli(&["neighbor", &listen.ip().to_string(), "reset"]);
                }
                1 => {
                    go.cli(&["neighbor", &listen.ip().to_string(), "disable"]);
                    go.cli(&["neighbor", &listen.ip().to_string(), "enable"]);
                }
                2 => {
                    go.cli(&["neighbor", &listen.ip().to_string(), "softreset"]);
                }
                _ => {
                    // A crash, and the same table announced again by the restarted gobgpd.
                    let old = std::mem::replace(&mut go, {
                        let mut options = GoOptions::new(go_addr, listen);
                        options.admin_down = true;
                        options.restarting = true;
                        let fresh = GoBgp::start(options);
                        for (i, c) in &table {
                            let (prefix, spec) = route(*i, *c);
                            fresh.add("vpnv4", &prefix, &spec);
                        }
                        fresh
                    });
                    old.crash();
                    go.cli(&["neighbor", &listen.ip().to_string(), "enable"]);
                }
            }
        }
    });
    let expected = |c: u32| -> Vec<String> {
        table
            .iter()
            .filter(|(_, holder)| **holder == c)
            .map(|(i, _)| format!("1.2.{i}.0/24@vpn1"))
            .collect()
    };
    let mut expected_labels: Vec<u32> = table.keys().map(|i| 100 + i).collect();
    expected_labels.sort_unstable();
    sm.until("the SM to hold exactly gobgpd's table", |index| {
        (0..4).all(|c| learned(index, &format!("ce{c}")) == expected(c))
            && index.learned_route_count() == table.len()
    })
    .await;
    ep_until(&mut ep, "the EP to hold exactly gobgpd's table", |ep| {
        let mut labels = ep_labels(ep, "vpn1");
        labels.sort_unstable();
        labels == expected_labels
            && (0..4).all(|c| {
                ep.get(&format!("ce{c}")).map_or_else(Vec::new, |s| {
                    s.mappings.iter().map(ToString::to_string).collect()
                }) == expected(c)
            })
    })
    .await;
    // Stable: nothing stale left, one route per announced prefix.
    let peers = sm.service().core().index().learned_peers();
    assert_eq!(peers[0].1.stale, 0);
    assert_eq!(peers[0].1.matched, table.len());
    wait_until(Duration::from_secs(1), || true, "");
    drop(ep);
    sm.stop().await;
    drop(go);
}

/// On the standby of an active/standby pair the LEG holds what its peers send until the node
/// becomes active, then applies all of it. (It used to stop for good at the first refusal, so a
/// node that started as the standby never applied a route after taking over.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_holds_its_peers_routes_until_it_is_active_then_applies_them() {
    const ROUTES: u32 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let injector = addr(40);
    let sm = start_sm_as(
        dir.path(),
        SocketAddr::new(addr(1), 0),
        &[injector],
        Duration::from_secs(60),
        Some("the test's standby"),
    )
    .await;
    let mut raw = RawPeer::establish(injector, sm.listen).await;
    raw.send(&bgp::table_bytes(ROUTES, 10)).await;
    // The speaker holds the table, so the LEG task has been handed its first events and refused.
    let deadline = tokio::time::Instant::now() + LIMIT;
    while sm.leg.speaker().peer_status(injector).await.unwrap().routes < ROUTES as usize {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the speaker never held the table"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        sm.service().stats().learned_routes,
        0,
        "a standby applied routes"
    );

    let index = brasa_subscriber::SubscriberIndex::new(IndexConfig {
        domains: vec!["subscribers".into()],
        name_case: NameCase::Sensitive,
    })
    .unwrap();
    sm.service().activate(index).unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while sm.service().stats().learned_routes < ROUTES as usize {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the active node holds {} of {ROUTES} routes",
            sm.service().stats().learned_routes
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(neighbor_up(&sm, injector), "the session went down");
    drop(raw);
    sm.stop().await;
}

/// The first UPDATE of [`bgp::table_bytes`]`(1, 1)` with its first path attribute's length
/// overrunning the attribute list. The MP_REACH_NLRI behind it cannot be located, so RFC 7606
/// leaves no choice but a session reset with (3, 1) Malformed Attribute List (RFC 4271 §6.3).
fn update_with_overrunning_attribute() -> Vec<u8> {
    let table = bgp::table_bytes(1, 1);
    let len = usize::from(u16::from_be_bytes([table[16], table[17]]));
    let mut update = table[..len].to_vec();
    // Header (19 octets), withdrawn routes length (2, zero), total path attribute length (2),
    // then the first attribute: flags, type, and a one-octet length.
    assert_eq!(
        update[23] & 0x10,
        0,
        "the first attribute has a one-octet length"
    );
    update[25] = 0xff;
    update
}

/// A peer that sends a malformed UPDATE gets its NOTIFICATION, loses its session and its
/// mappings; the other peer's session, VPN labels and `range@VPN` mappings stay exactly as they
/// were, in the SM and at the EP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_update_resets_only_its_peer_and_leaves_the_others_mappings() {
    let dir = tempfile::tempdir().unwrap();
    let (go_addr, raw_addr) = (addr(50), addr(51));
    let sm = start_sm(
        dir.path(),
        SocketAddr::new(addr(5), 0),
        &[go_addr, raw_addr],
        Duration::from_secs(120),
    )
    .await;
    let mut ep = ep(&sm.url).await;
    let (go, mut raw) = feed_two_peers(&sm, go_addr, raw_addr).await;
    let go_view = |sm: &Sm| neighbor(sm, go_addr).unwrap();
    // Nothing more is due from gobgpd once it has sent the End-of-RIB of both its families.
    tokio::task::block_in_place(|| {
        wait_until(
            LIMIT,
            || go_view(&sm).counters.end_of_ribs == 2,
            "gobgpd's End-of-RIB for VPN-IPv4 and VPN-IPv6",
        )
    });
    ep_until(&mut ep, "both peers' labels and mappings", |ep| {
        let mut labels = ep_labels(ep, "vpn1");
        labels.sort_unstable();
        labels == [10, 12, 16] && ep_who(ep, "10.0.0.1", "vpn1").as_deref() == Some("raw")
    })
    .await;
    let go_before = go_view(&sm);
    let go_routes = |sm: &Sm| {
        let peers = sm.service().core().index().learned_peers();
        peers
            .into_iter()
            .find(|(p, _)| *p == go_addr)
            .map(|(_, r)| r)
    };
    let go_routes_before = go_routes(&sm);
    assert_eq!(go_routes_before.map(|r| r.matched), Some(2));

    raw.send(&update_with_overrunning_attribute()).await;
    let notification = raw.expect_notification().await;
    assert_eq!(
        (notification.code, notification.subcode),
        (3, 1),
        "{notification}"
    );
    sm.until("the raw peer's session and mappings to go", |i| {
        learned(i, "raw").is_empty()
            && i.learned_peers()
                .iter()
                .all(|(p, routes)| *p != raw_addr || routes.routes == 0)
    })
    .await;
    let raw_view = neighbor(&sm, raw_addr).unwrap();
    assert!(!raw_view.up);
    assert_eq!(raw_view.counters.sessions_down, 1);
    ep_until(&mut ep, "the raw peer's label and mapping to go", |ep| {
        let mut labels = ep_labels(ep, "vpn1");
        labels.sort_unstable();
        labels == [10, 12] && ep_who(ep, "10.0.0.1", "vpn1").is_none()
    })
    .await;

    // gobgpd's session never flapped and the SM holds exactly what it had learnt from it.
    let status = sm.leg.speaker().peer_status(go_addr).await.unwrap();
    assert_eq!(
        (status.state, status.stats.established),
        (State::Established, 1)
    );
    assert_eq!(go_view(&sm), go_before);
    assert_eq!(go_routes(&sm), go_routes_before);
    {
        let core = sm.service().core();
        let index = core.index();
        assert_eq!(
            learned(index, "sub1"),
            ["1.1.1.0/24@vpn1", "1.1.2.0/24@vpn1"]
        );
        for address in ["1.1.1.7", "1.1.2.7"] {
            assert_eq!(
                index.lookup(address.parse().unwrap(), Some("vpn1")),
                Ok(Some("sub1"))
            );
        }
    }
    {
        let replica = ep.replica();
        assert_eq!(ep_who(&replica, "1.1.1.7", "vpn1").as_deref(), Some("sub1"));
        assert_eq!(ep_who(&replica, "1.1.2.7", "vpn1").as_deref(), Some("sub1"));
    }
    drop(ep);
    sm.stop().await;
    drop(go);
}
