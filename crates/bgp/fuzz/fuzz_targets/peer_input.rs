//! The session state machine fed arbitrary bytes: first as the peer's OPEN exchange, then in
//! Established, in chunks the first byte chooses. It must never panic, and after an error it
//! must have asked to disconnect.
#![no_main]

use brasa_bgp::wire::open::{Capabilities, GracefulRestart, OpenRepr};
use brasa_bgp::wire::emit_keepalive;
use brasa_bgp::{Action, AfiSafi, ConnectMode, LocalConfig, Peer, PeerConfig, State};
use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else { return };
    let local = LocalConfig { asn: 65000, router_id: Ipv4Addr::new(192, 0, 2, 1) };
    let config = PeerConfig::new("127.0.0.2".parse().unwrap(), 65000, ConnectMode::Passive);
    let Ok(mut peer) = Peer::new(local, config) else { return };
    let mut now = Instant::now();
    peer.start(now);
    if peer.connection_opened(now).is_err() {
        return;
    }
    if selector & 1 != 0 {
        // Establish first, so that the input reaches the UPDATE path.
        let open = OpenRepr {
            asn: 65000,
            hold_time: 90,
            bgp_id: Ipv4Addr::new(192, 0, 2, 2),
            capabilities: Capabilities {
                multiprotocol: vec![AfiSafi::VPN_IPV4, AfiSafi::VPN_IPV6],
                four_octet_as: (selector & 2 != 0).then_some(65000),
                graceful_restart: Some(GracefulRestart {
                    restart_time: 30,
                    families: vec![(AfiSafi::VPN_IPV4, true)],
                    ..GracefulRestart::default()
                }),
                ..Capabilities::default()
            },
        };
        let mut bytes = Vec::new();
        open.emit(&mut bytes);
        emit_keepalive(&mut bytes);
        peer.handle_input(now, &bytes);
        assert_eq!(peer.state(), State::Established);
    }
    let chunk = usize::from(selector >> 2).max(1);
    let mut pending: Vec<u8> = Vec::new();
    for piece in input.chunks(chunk) {
        pending.extend_from_slice(piece);
        let used = peer.handle_input(now, &pending);
        assert!(used <= pending.len());
        pending.drain(..used);
        while peer.poll_event().is_some() {}
        peer.poll_transmit();
        while let Some(action) = peer.poll_action() {
            if action == Action::Disconnect {
                assert!(!matches!(peer.state(), State::Established | State::OpenConfirm | State::OpenSent));
                return;
            }
        }
        now += Duration::from_millis(10);
        peer.handle_timeout(now);
    }
    if selector & 4 != 0 {
        peer.connection_closed(now);
        peer.handle_timeout(now + Duration::from_secs(400));
        assert_eq!(peer.rib().stale(), 0);
    }
});
