//! A full VPN-IPv4 table from a real gobgpd, received by brasa and, as the anchor, by a second
//! gobgpd, in the same run.
//!
//! A route reflector gobgpd (A) learns the table from an injector (brasa's own emitters over a
//! raw BGP session: the fastest way to make gobgpd hold 100 000s of routes), then its sessions
//! to brasa and to gobgpd B are enabled one after the other. Each figure is the time from
//! enabling the session until the receiver holds the whole table: for brasa, its End-of-RIB
//! event (every route decoded, in the Adj-RIB-In, and delivered as an event); for gobgpd B,
//! its `global rib summary` showing every route (polled every 100 ms).
//!
//! `cargo run --release -p brasa-bgp-net --example gobgp_bench -- [ROUTES]`

#[path = "../tests/common/mod.rs"]
mod common;

use brasa_bgp::RouteEvent;
use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn rib_count(go: &GoBgp) -> usize {
    go.try_cli(&["global", "rib", "-a", "vpnv4", "summary"])
        .ok()
        .and_then(|s| {
            s.split("Destination: ")
                .nth(1)
                .and_then(|r| r.split(',').next())
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let routes: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let (a_addr, injector_addr, b_addr, direct_addr) = (addr(40), addr(41), addr(42), addr(43));
    let (speaker, mut events) = speaker(&[(a_addr, 90), (direct_addr, 90)], 1024).await;
    let brasa = speaker.listen_addrs()[0];
    let a_port = free_port();

    // gobgpd A: route reflector; brasa and B are clients, enabled later; the injector dials in.
    let mut options = GoOptions::new(a_addr, brasa);
    options.admin_down = true;
    options.rr_client = true;
    options.listen_port = i32::from(a_port);
    options.hold_time = 90;
    let neighbor = |ip, admin_down: bool| {
        format!(
            "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{ip}\"\n    peer-as = {AS}\n    admin-down = {admin_down}\n  [neighbors.transport.config]\n    passive-mode = true\n    local-address = \"{a_addr}\"\n{}  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"l3vpn-ipv4-unicast\"\n",
            rr_client(a_addr)
        )
    };
    options.extra = format!(
        "{}\n{}",
        neighbor(injector_addr, false),
        neighbor(b_addr, true)
    );
    let a = GoBgp::start(options);
    let mut b_options = GoOptions::new(b_addr, SocketAddr::new(a_addr, a_port));
    b_options.admin_down = false;
    b_options.hold_time = 90;
    let b = GoBgp::start(b_options);

    // Load A.
    let table = table_bytes(routes, 1000);
    let t = Instant::now();
    let mut injector = RawPeer::establish(injector_addr, SocketAddr::new(a_addr, a_port)).await;
    injector.send(&table).await;
    let (mut reader, _writer) = injector.stream.into_split();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut sink = [0u8; 4096];
        while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    tokio::task::block_in_place(|| {
        wait_until(
            Duration::from_secs(600),
            || rib_count(&a) >= routes as usize,
            "gobgpd A to hold the table",
        )
    });
    let load = t.elapsed();
    println!(
        "gobgpd A loaded {routes} VPN-IPv4 routes from the injector in {:.2} s ({:.0} routes/s)",
        load.as_secs_f64(),
        f64::from(routes) / load.as_secs_f64()
    );

    // brasa.
    let rss_before = rss_bytes();
    let t = Instant::now();
    a.cli(&["neighbor", &brasa.ip().to_string(), "enable"]);
    let mut announced = 0usize;
    let mut up_at = None;
    loop {
        match events.rx.recv().await.expect("events") {
            RouteEvent::PeerUp { .. } => up_at = Some(t.elapsed()),
            RouteEvent::Announce { .. } => announced += 1,
            RouteEvent::EndOfRib { .. } if announced >= routes as usize => break,
            _ => {}
        }
    }
    let brasa_time = t.elapsed();
    let status = speaker.peer_status(a_addr).await.unwrap();
    let from_up = brasa_time - up_at.unwrap_or_default();
    println!(
        "brasa:    {announced} routes in {:.2} s from enable ({:.0} routes/s), {:.2} s from session up ({:.0} routes/s); RIB {:.1} B/route, process RSS +{:.1} B/route",
        brasa_time.as_secs_f64(),
        f64::from(routes) / brasa_time.as_secs_f64(),
        from_up.as_secs_f64(),
        f64::from(routes) / from_up.as_secs_f64(),
        status.rib_bytes as f64 / f64::from(routes),
        rss_bytes().saturating_sub(rss_before) as f64 / f64::from(routes),
    );
    assert_eq!(status.routes, routes as usize);

    // gobgpd B, the anchor.
    let t = Instant::now();
    a.cli(&["neighbor", &b_addr.to_string(), "enable"]);
    let mut first_route_at = None;
    tokio::task::block_in_place(|| {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let count = rib_count(&b);
            if count > 0 && first_route_at.is_none() {
                first_route_at = Some(t.elapsed());
            }
            if count >= routes as usize {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "gobgpd B did not receive the table"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let b_time = t.elapsed();
    let from_first = b_time - first_route_at.unwrap_or_default();
    println!(
        "gobgpd B: {routes} routes in {:.2} s from enable ({:.0} routes/s), {:.2} s from its first route ({:.0} routes/s)",
        b_time.as_secs_f64(),
        f64::from(routes) / b_time.as_secs_f64(),
        from_first.as_secs_f64(),
        f64::from(routes) / from_first.as_secs_f64()
    );

    // brasa fed over TCP by the injector directly (no gobgpd sending rate in the way).
    let mut direct = RawPeer::establish(direct_addr, brasa).await;
    loop {
        if let RouteEvent::PeerUp { peer, .. } = events.rx.recv().await.expect("events") {
            if peer == direct_addr {
                break;
            }
        }
    }
    let t = Instant::now();
    let sender = tokio::spawn(async move {
        direct.send(&table).await;
        direct
    });
    let mut announced = 0usize;
    loop {
        match events.rx.recv().await.expect("events") {
            RouteEvent::Announce { peer, .. } if peer == direct_addr => announced += 1,
            RouteEvent::EndOfRib { peer, .. } if peer == direct_addr => break,
            _ => {}
        }
    }
    let direct_time = t.elapsed();
    let _direct = sender.await;
    println!(
        "brasa, table sent over loopback TCP by the injector: {announced} routes in {:.2} s ({:.0} routes/s)",
        direct_time.as_secs_f64(),
        f64::from(routes) / direct_time.as_secs_f64()
    );
    speaker.shutdown().await;
}
