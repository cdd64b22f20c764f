//! In-memory receive rate of the core: recorded UPDATE bytes of a VPN-IPv4 table (routes
//! grouped by attribute set, as a speaker sends them) fed through `Peer::handle_input`
//! (framing, decoding, RFC 7606 checks, Adj-RIB-In, one event per route), plus the memory the
//! table holds.
//!
//! `cargo run --release -p brasa-bgp-net --example receive_bench -- [ROUTES] [ATTRIBUTE_SETS]`

#[path = "../tests/common/mod.rs"]
mod common;

use brasa_bgp::wire::update::{Update, UpdateContext, VpnNlriIter};
use brasa_bgp::wire::Message;
use brasa_bgp::*;
use common::{open_and_keepalive, rss_bytes, table_bytes};
use std::net::Ipv4Addr;
use std::time::Instant;

fn established_peer(now: Instant) -> Peer {
    let local = LocalConfig {
        asn: 65000,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
    };
    let mut peer = Peer::new(
        local,
        PeerConfig::new("192.0.2.2".parse().unwrap(), 65000, ConnectMode::Passive),
    )
    .unwrap();
    peer.start(now);
    peer.connection_opened(now).unwrap();
    let bytes = open_and_keepalive(Ipv4Addr::new(192, 0, 2, 2));
    peer.handle_input(now, &bytes);
    assert_eq!(peer.state(), State::Established);
    while peer.poll_event().is_some() {}
    peer
}

fn main() {
    let mut args = std::env::args().skip(1);
    let routes: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let sets: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let bytes = table_bytes(routes, sets);
    println!(
        "table: {routes} VPN-IPv4 routes, {sets} attribute sets, {} UPDATE bytes ({:.1} B/route)",
        bytes.len(),
        bytes.len() as f64 / f64::from(routes)
    );

    // Decode only: framing, UPDATE checks, NLRI iteration.
    let ctx = UpdateContext {
        four_octet_as: true,
        multiple_labels: false,
        internal: true,
    };
    let t = Instant::now();
    let mut decoded = 0usize;
    let mut rest = &bytes[..];
    while let Ok(Some((_, len))) = Message::new_unchecked(rest).check() {
        let update = Update::parse(&rest[19..len], &ctx).unwrap();
        if let Some(reach) = &update.mp_reach {
            decoded += VpnNlriIter::reachable(reach, &ctx)
                .unwrap()
                .map(|r| std::hint::black_box(r).labels.len())
                .sum::<usize>();
        }
        rest = &rest[len..];
    }
    let decode = t.elapsed();
    assert_eq!(decoded, routes as usize);
    println!(
        "decode only:            {:>10.0} routes/s ({:.3} s)",
        f64::from(routes) / decode.as_secs_f64(),
        decode.as_secs_f64()
    );

    // Full receive path: Peer::handle_input in 64 KiB reads, events drained as the shell does.
    let now = Instant::now();
    let mut peer = established_peer(now);
    let rss_before = rss_bytes();
    let t = Instant::now();
    let (mut announced, mut eor) = (0usize, false);
    let mut pending: Vec<u8> = Vec::new();
    for chunk in bytes.chunks(64 * 1024) {
        pending.extend_from_slice(chunk);
        let used = peer.handle_input(now, &pending);
        pending.drain(..used);
        while let Some(event) = peer.poll_event() {
            match event {
                RouteEvent::Announce { .. } => announced += 1,
                RouteEvent::EndOfRib { .. } => eor = true,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let receive = t.elapsed();
    let rss_after = rss_bytes();
    assert!(eor && announced == routes as usize && peer.rib().len() == routes as usize);
    println!(
        "decode + RIB + events:  {:>10.0} routes/s ({:.3} s)",
        f64::from(routes) / receive.as_secs_f64(),
        receive.as_secs_f64()
    );
    println!(
        "memory: {:.1} B/route by RSS growth, {:.1} B/route by table capacity ({} attribute sets held)",
        (rss_after.saturating_sub(rss_before)) as f64 / f64::from(routes),
        peer.rib().heap_bytes() as f64 / f64::from(routes),
        peer.rib().attribute_sets()
    );
}
