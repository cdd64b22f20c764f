//! What a cache sync link receives from its peer, as raw bytes (length-prefixed protobuf
//! messages): after a genuine handshake, the accepting side gets arbitrary `SyncMessage`s and
//! the dialling side arbitrary `SyncReply`s. Neither panics, and a link that refused a message
//! has ended its session.
#![no_main]

use std::net::IpAddr;

use brasa_cache::sync::{
    proto, LinkState, PeerSpec, SyncConfig, SyncKey, SyncLimits, SyncNode, SyncedCache,
    Transmit, NONCE_LEN,
};
use brasa_cache::{CacheConfig, CacheSet, McsPeer};
use libfuzzer_sys::fuzz_target;
use prost::Message;

const NOW: u64 = 1_700_000_000_000;

fn node(node_id: u32, peer: IpAddr) -> (CacheSet, SyncNode) {
    let mut caches = CacheSet::new(1 << 20, node_id);
    let config = CacheConfig {
        mcs_peer: Some(McsPeer {
            address: peer,
            sync_tag: "t".into(),
        }),
        ..CacheConfig::default()
    };
    caches.configure("p", config).expect("valid cache config");
    let sync = SyncNode::new(SyncConfig {
        node_id,
        key: SyncKey::new(b"key").expect("a key"),
        peers: vec![PeerSpec {
            address: peer,
            caches: vec![SyncedCache {
                tag: "t".into(),
                policy: "p".into(),
            }],
        }],
        limits: SyncLimits::default(),
    })
    .expect("valid sync config");
    (caches, sync)
}

fuzz_target!(|data: &[u8]| {
    let (a_ip, b_ip): (IpAddr, IpAddr) = ([127, 0, 0, 1].into(), [127, 0, 0, 2].into());
    let (a_caches, mut a) = node(1, b_ip);
    let (mut b_caches, mut b) = node(2, a_ip);
    let (a_peer, b_peer) = (a.peers().next().expect("peer").0, b.admit(a_ip).expect("peer"));
    a.outbound(a_peer).connecting(NOW);
    a.outbound(a_peer).connected(NOW, [1; NONCE_LEN]);
    let Transmit::Message(hello) = a.outbound(a_peer).poll_transmit(NOW) else {
        return;
    };
    let (session, reply) = b
        .inbound(b_peer)
        .open(NOW, [2; NONCE_LEN], hello)
        .expect("a genuine Hello");
    a.outbound(a_peer)
        .handle_reply(NOW, reply, &a_caches)
        .expect("a genuine Hello");
    while let Transmit::Message(message) = a.outbound(a_peer).poll_transmit(NOW) {
        b.inbound(b_peer)
            .handle_message(NOW, session, message, &mut b_caches)
            .expect("a genuine session");
    }
    assert_eq!(b.inbound(b_peer).state(), LinkState::Synchronised);

    let mut rest = data;
    let mut to_acceptor = true;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (chunk, next) = tail.split_at(len);
        rest = next;
        to_acceptor = !to_acceptor;
        if to_acceptor {
            if let Ok(message) = proto::SyncMessage::decode(chunk) {
                let inbound = b.inbound(b_peer);
                if inbound
                    .handle_message(NOW, session, message, &mut b_caches)
                    .is_err()
                {
                    assert!(!inbound.is_open(session));
                }
            }
        } else if let Ok(reply) = proto::SyncReply::decode(chunk) {
            let outbound = a.outbound(a_peer);
            if outbound.handle_reply(NOW, reply, &a_caches).is_err() {
                assert_eq!(outbound.poll_transmit(NOW), Transmit::Close);
            }
        }
    }
    let _ = b.status();
});
