//! Every CURLING decoder and every core's datagram handler on arbitrary bytes: no panic, and
//! whatever parses re-encodes to exactly the same bytes (the format is canonical).
#![no_main]

use brasa_curling::cafe::{Cafe, CafeConfig};
use brasa_curling::client::{ClientConfig, ContentClient};
use brasa_curling::crme::{Crme, CrmeConfig, Relation};
use brasa_curling::server::{ContentServer, ServerConfig};
use brasa_curling::wire::{ContentPacket, Message, Neighbour};
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

fn ep(text: &str) -> SocketAddrV4 {
    text.parse().unwrap()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::parse(data) {
        assert_eq!(message.to_vec().unwrap(), data);
    }
    if let Ok(packet) = ContentPacket::new_checked(data) {
        let _ = (
            packet.seq(),
            packet.last(),
            packet.sender(),
            packet.payload(),
        );
    }
    // The first byte picks who the datagram claims to come from, so the "from the right
    // peer" paths are reached too.
    let (selector, body) = data.split_first().unwrap_or((&0, &[]));
    let from = match selector % 4 {
        0 => ep("127.0.2.1:3000"),
        1 => ep("127.0.1.2:2000"),
        2 => ep("127.0.2.2:2000"),
        _ => ep("127.0.9.9:9"),
    };
    let now = Instant::now();
    let mut cafe = Cafe::new(CafeConfig {
        me: ep("127.0.2.2:2000"),
        crme: ep("127.0.2.1:3000"),
        neighbours: vec![Neighbour {
            cafe: ep("127.0.1.2:2000"),
            crme: ep("127.0.1.1:3000"),
        }],
        announce_interval: Duration::from_secs(1),
    });
    let _ = cafe.handle(from, body);
    let _ = cafe.handle(from, body);
    let mut crme = Crme::new(CrmeConfig {
        me: ep("127.0.2.1:3000"),
        neighbours: vec![(ep("127.0.1.1:3000"), Relation::Provider)],
        routes: Vec::new(),
        route_optimisation: true,
        pending_timeout: Duration::from_secs(5),
        linger: Duration::from_secs(30),
        hop_limit: 8,
    });
    crme.handle(now, from, body);
    crme.handle(now, from, body);
    crme.handle_timeout(now + Duration::from_secs(60));
    let mut server = ContentServer::new(ServerConfig {
        me: ep("127.0.2.2:1000"),
        crme: ep("127.0.2.1:3000"),
        attach_cafe: ep("127.0.2.2:2000"),
        chunk_size: 64,
        rate: 1000,
        republish_interval: Duration::from_secs(1),
        hop_limit: 8,
    });
    server.handle(from, body);
    let _ = server.poll_chunks(now + Duration::from_secs(1), 8);
    let mut client = ContentClient::new(ClientConfig {
        me: ep("127.0.2.2:1000"),
        crme: ep("127.0.2.1:3000"),
        cafe: ep("127.0.2.2:2000"),
        idle_timeout: Duration::from_millis(10),
        max_attempts: 2,
        max_content_bytes: 1 << 16,
        hop_limit: 8,
    });
    let _ = client.consume(now, "MyContent1");
    client.handle(now, ep("127.0.2.2:2000"), body);
    client.handle_timeout(now + Duration::from_secs(1));
});
