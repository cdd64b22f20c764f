//! A slow consumer loses nothing: the speaker stops reading the peer instead, keeps its own
//! keepalives going, and does not take the unread input for a dead peer.

mod common;

use brasa_bgp::wire::emit_keepalive;
use brasa_bgp::{RouteEvent, State};
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_gets_every_route_and_the_session_survives() {
    const ROUTES: u32 = 20_000;
    let raw_addr = addr(30);
    // Hold time 3 s; the consumer stalls for longer than that.
    let (speaker, mut events) = speaker(&[(raw_addr, 3)], 1).await;
    let brasa = speaker.listen_addrs()[0];
    let raw = RawPeer::establish(raw_addr, brasa).await;
    events
        .wait_for("session up", |e| matches!(e, RouteEvent::PeerUp { .. }))
        .await;

    let bytes = table_bytes(ROUTES, 100);
    // The peer writes its table and a keepalive every second (its writes block while the
    // speaker does not read: TCP flow control).
    let (mut reader, mut writer) = raw.stream.into_split();
    let sender = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        writer.write_all(&bytes).await.unwrap();
        let mut keepalive = Vec::new();
        emit_keepalive(&mut keepalive);
        for _ in 0..20 {
            if writer.write_all(&keepalive).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    // Swallow the speaker's keepalives so its writes never block.
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut sink = [0u8; 4096];
        while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
    });

    // The consumer stalls for two hold times, then drains.
    tokio::time::sleep(Duration::from_secs(6)).await;
    events
        .wait_for("End-of-RIB", |e| matches!(e, RouteEvent::EndOfRib { .. }))
        .await;
    let announced = events
        .log
        .iter()
        .filter(|e| matches!(e, RouteEvent::Announce { .. }))
        .count();
    assert_eq!(announced, ROUTES as usize);
    assert_eq!(events.routes_of(raw_addr).len(), ROUTES as usize);
    let status = speaker.peer_status(raw_addr).await.unwrap();
    assert_eq!(
        (status.state, status.stats.established, status.routes),
        (State::Established, 1, ROUTES as usize)
    );
    assert!(!events
        .log
        .iter()
        .any(|e| matches!(e, RouteEvent::PeerDown { .. })));
    sender.abort();
    speaker.shutdown().await;
}
