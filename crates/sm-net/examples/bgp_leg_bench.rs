//! VPN routes applied per second through the SM's durable path by the BGP LEG, from a full
//! table push, and the memory the SM holds for them.
//!
//! `cargo run --release -p brasa-sm-net --example bgp_leg_bench -- [ROUTES] [gobgpd]`
//!
//! The table is the speaker benchmark's (`brasa-bgp-net`'s `receive_bench`): VPN-IPv4 routes
//! in RDs 1000:0…99, /24s from 10.0.0.0, grouped in 1 000 attribute sets (community 100:n,
//! route target 1000:n%100, next hop 10.10.n/256.n%256, label 16+n). The SM is configured so
//! that every route matters: 100 MPLS/VPNs `vpnR` with the entries `1000:R@PE` of their ten
//! PEs, and 1 000 CE subscribers `ceN` holding `100:N@vpnN%100` — each route gives a label to
//! its entry and a range to one subscriber, and is stored.
//!
//! 1. An injector (brasa's emitters over a raw BGP session on loopback, a sender that is not
//!    the bottleneck) pushes the table to the LEG's speaker. The time runs from the first byte
//!    sent to the commit that makes the End-of-RIB's batch durable (a barrier: commits are in
//!    order, so an operation submitted after the End-of-RIB was applied returns once every
//!    route before it is on disk).
//! 2. With `gobgpd`: a real gobgpd, loaded by the injector, sends the same table; the time runs
//!    from its session coming up to the same barrier.
//!
//! The store lives in a temporary directory under `BRASA_BENCH_DIR` (default: the system
//! temporary directory).

#[path = "../../bgp-net/tests/common/mod.rs"]
mod bgp;
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bgp::{rss_bytes, table_bytes, GoBgp, GoOptions, RawPeer, AS};
use brasa_bgp::{ConnectMode, LocalConfig, PeerConfig};
use brasa_bgp_net::{NetPeerConfig, SpeakerConfig};
use brasa_sm::bgp_leg::{BgpLegConfig, LegPeerConfig};
use brasa_sm::{Op, SmConfig};
use brasa_sm_net::{BgpLeg, SmService};
use brasa_subscriber::{
    MplsVpnEntry, NameCase, RedbStore, Subscriber, SubscriberName, Vpn, VpnKind,
};

const SETS: u32 = 1000;

fn addr(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 26, host))
}

/// The 100 VPNs and 1 000 CE subscribers the table's routes all matter to, in one commit (so
/// that a profile of the run is the push's).
async fn configure(service: &SmService) {
    let mut ops = Vec::new();
    for r in 0..100u32 {
        let entries = (0..SETS)
            .filter(|s| s % 100 == r)
            .map(|s| {
                MplsVpnEntry::new(
                    format!("1000:{r}@10.10.{}.{}", s / 256, s % 256)
                        .parse()
                        .unwrap(),
                )
            })
            .collect();
        ops.push(Ok(Op::AddVpn(Vpn {
            name: format!("vpn{r}"),
            domain: "subscribers".into(),
            kind: VpnKind::Mpls(entries),
        })));
    }
    for s in 0..SETS {
        let mut sub =
            Subscriber::new(SubscriberName::new(&format!("ce{s}"), NameCase::Sensitive).unwrap());
        sub.communities = vec![format!("100:{s}@vpn{}", s % 100).parse().unwrap()];
        ops.push(Ok(Op::Add {
            subscriber: sub,
            replace: true,
        }));
    }
    for result in service.submit(ops).wait().await {
        result.unwrap();
    }
}

/// Waits until the SM applied `peer`'s End-of-RIB, then for every commit before it; returns
/// when the End-of-RIB was applied.
async fn applied_and_durable(service: &SmService, peer: IpAddr) -> Instant {
    loop {
        let eor = service
            .core()
            .bgp_neighbors()
            .unwrap_or_default()
            .iter()
            .any(|n| n.address == peer && n.counters.end_of_ribs > 0);
        if eor {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let applied = Instant::now();
    service
        .execute(Op::SetProperties {
            name: "ce0".into(),
            properties: vec![("barrier".into(), "1".into())],
        })
        .await
        .unwrap();
    applied
}

async fn start(dir: &std::path::Path, peer: IpAddr) -> (SmService, BgpLeg) {
    let config = SmConfig {
        bgp_leg: Some(BgpLegConfig {
            peers: vec![LegPeerConfig {
                address: peer,
                restart_time: Duration::from_secs(360),
            }],
        }),
        ..SmConfig::default()
    };
    let service = SmService::open(config, Box::new(RedbStore::open(dir).unwrap())).unwrap();
    configure(&service).await;
    let mut p = PeerConfig::new(peer, AS, ConnectMode::Passive);
    p.hold_time = 90;
    let speaker = SpeakerConfig {
        local: LocalConfig {
            asn: AS,
            router_id: Ipv4Addr::new(127, 0, 26, 1),
        },
        listen: vec![SocketAddr::new(addr(1), 0)],
        peers: vec![NetPeerConfig {
            peer: p,
            port: 179,
            local_address: None,
        }],
    };
    let leg = BgpLeg::start(service.clone(), speaker).await.unwrap();
    (service, leg)
}

/// CPU seconds (user + system) the threads whose name starts with `name` have used so far:
/// the costs of the commit path (`sm-store`) and of the speaker, the LEG task and the core
/// (the runtime's workers, `tokio-r`; the injector runs there too), which the machine's other
/// load inflates far less than wall-clock time.
fn threads_cpu(name: &str) -> f64 {
    brasa_testkit::cpu::threads_cpu_seconds(std::process::id())
        .into_iter()
        .filter(|(thread, _)| thread.starts_with(name))
        .map(|(_, seconds)| seconds)
        .sum()
}

const STORE_THREAD: &str = "sm-store";
const WORKERS: &str = "tokio-r";

/// What the run had done before the table came: the report counts from here.
struct Before {
    rss: usize,
    commits: u64,
    change_sets: u64,
    store_cpu: f64,
    workers_cpu: f64,
}

impl Before {
    fn now(service: &SmService, rss: usize) -> Before {
        let stats = service.stats();
        Before {
            rss,
            commits: stats.commits,
            change_sets: stats.committed_changes,
            store_cpu: threads_cpu(STORE_THREAD),
            workers_cpu: threads_cpu(WORKERS),
        }
    }
}

fn report(
    what: &str,
    routes: u32,
    (applied, took): (Duration, Duration),
    service: &SmService,
    before: &Before,
) {
    let stats = service.stats();
    let store_cpu = threads_cpu(STORE_THREAD) - before.store_cpu;
    let workers_cpu = threads_cpu(WORKERS) - before.workers_cpu;
    let (heap, sets) = service.core().index().learned_memory();
    println!(
        "{what}: {routes} routes applied in {:.2} s, durable in {:.2} s = {:.0} routes/s; {} commits ({} change sets) for the table; SM holds {} routes ({} attribute sets): route table {:.1} B/route, process RSS +{:.1} B/route; CPU-s for the table: store thread {:.2}, runtime workers {:.2}",
        applied.as_secs_f64(),
        took.as_secs_f64(),
        f64::from(routes) / took.as_secs_f64(),
        stats.commits - before.commits,
        stats.committed_changes - before.change_sets,
        stats.learned_routes,
        sets,
        heap as f64 / f64::from(routes),
        rss_bytes().saturating_sub(before.rss) as f64 / f64::from(routes),
        store_cpu,
        workers_cpu,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let routes: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let with_gobgpd = std::env::args().nth(2).is_some_and(|a| a == "gobgpd");
    let base = std::env::var_os("BRASA_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let table = table_bytes(routes, SETS);

    // 1. Injector → speaker → SM → store.
    let dir = tempfile::tempdir_in(&base).unwrap();
    let injector = addr(10);
    let rss_before = rss_bytes();
    let (service, leg) = start(dir.path(), injector).await;
    let listen = leg.speaker().listen_addrs()[0];
    let mut raw = RawPeer::establish(injector, listen).await;
    let before = Before::now(&service, rss_before);
    let t = Instant::now();
    raw.send(&table).await;
    let applied = applied_and_durable(&service, injector).await - t;
    let took = t.elapsed();
    report(
        "injector over loopback TCP",
        routes,
        (applied, took),
        &service,
        &before,
    );
    let ce = service.core().index().get("ce7").unwrap();
    assert_eq!(ce.learned.len() as u32, routes / SETS, "ce7's ranges");
    drop(raw);
    leg.shutdown().await;
    service.shutdown().await;

    if !with_gobgpd {
        return;
    }
    // 2. gobgpd (a route reflector loaded by the injector) → speaker → SM → store.
    let dir = tempfile::tempdir_in(&base).unwrap();
    let (go_addr, loader) = (addr(20), addr(21));
    let rss_before = rss_bytes();
    let (service, leg) = start(dir.path(), go_addr).await;
    let listen = leg.speaker().listen_addrs()[0];
    let go_port = bgp::free_port();
    let mut options = GoOptions::new(go_addr, listen);
    options.admin_down = true;
    options.rr_client = true;
    options.hold_time = 90;
    options.listen_port = i32::from(go_port);
    options.extra = format!(
        "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{loader}\"\n    peer-as = {AS}\n  [neighbors.transport.config]\n    passive-mode = true\n    local-address = \"{go_addr}\"\n{}  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"l3vpn-ipv4-unicast\"\n",
        bgp::rr_client(go_addr)
    );
    let go = GoBgp::start(options);
    let before = Before::now(&service, rss_before);
    let mut load = RawPeer::establish(loader, SocketAddr::new(go_addr, go_port)).await;
    load.send(&table).await;
    let (mut reader, _writer) = load.stream.into_split();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut sink = [0u8; 4096];
        while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    tokio::task::block_in_place(|| {
        bgp::wait_until(
            Duration::from_secs(900),
            || {
                go.try_cli(&["global", "rib", "-a", "vpnv4", "summary"])
                    .ok()
                    .and_then(|s| {
                        s.split("Destination: ")
                            .nth(1)
                            .and_then(|r| r.split(',').next())
                            .and_then(|n| n.trim().parse::<u32>().ok())
                    })
                    .is_some_and(|n| n >= routes)
            },
            "gobgpd to hold the table",
        )
    });
    go.cli(&["neighbor", &listen.ip().to_string(), "enable"]);
    let up = loop {
        let up = service
            .core()
            .bgp_neighbors()
            .unwrap_or_default()
            .iter()
            .any(|n| n.up);
        if up {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let applied = applied_and_durable(&service, go_addr).await - up;
    report(
        "gobgpd, from session up",
        routes,
        (applied, up.elapsed()),
        &service,
        &before,
    );
    leg.shutdown().await;
    service.shutdown().await;
}
