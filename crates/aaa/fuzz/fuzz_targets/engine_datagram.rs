//! Arbitrary datagrams on every socket of a proxy engine (NAS listeners, CoA listener, upstream
//! and NAS-CoA sockets), interleaved with timer runs: the engine must never panic, and bytes that
//! are not a valid, authentic packet must never produce a datagram towards a NAS.
#![no_main]

use brasa_aaa::*;
use brasa_radius::Dictionary;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

fn config() -> EngineConfig {
    EngineConfig {
        clients: vec![ClientConfig {
            name: "nas".into(),
            network: "127.0.0.0/8".parse().unwrap(),
            secret: b"s".to_vec(),
            require_message_authenticator: false,
            coa_port: 3799,
        }],
        servers: vec![ServerConfig {
            name: "edge".into(),
            auth_listen: Some("127.0.0.1:1812".parse().unwrap()),
            acct_listen: Some("127.0.0.1:1813".parse().unwrap()),
            handler: Handler::Proxy(0),
            policy: None,
            external_hooks: None,
        }],
        pools: vec![PoolConfig {
            name: "p".into(),
            auth_servers: vec![UpstreamConfig {
                name: "u".into(),
                address: "127.0.1.1:1812".parse().unwrap(),
                secret: b"u".to_vec(),
            }],
            acct_servers: vec![],
            load_balance: LoadBalance::Failover,
            timeout: Duration::from_secs(1),
            retries: 1,
            dead_after_timeouts: 1,
            status_check_interval: Duration::from_secs(1),
            revive_after: Duration::from_secs(1),
        }],
        local_databases: vec![],
        policies: vec![],
        coa_listen: Some("127.0.0.1:3799".parse().unwrap()),
        duplicate_window: Duration::from_secs(5),
        external_hook_timeout: Duration::from_secs(5),
    }
}

fuzz_target!(|data: &[u8]| {
    static DICTIONARY: OnceLock<Arc<Dictionary>> = OnceLock::new();
    let dictionary = DICTIONARY
        .get_or_init(|| Arc::new(Dictionary::builtin()))
        .clone();
    let mut engine = Engine::new(config(), dictionary, [0; 32]);
    let start = Instant::now();
    let mut out = Vec::new();
    // Each chunk: selector byte, then up to 255 bytes of datagram (length byte first).
    let mut rest = data;
    let mut step = 0u64;
    while let [selector, length, tail @ ..] = rest {
        let length = usize::from(*length).min(tail.len());
        let (datagram, next) = tail.split_at(length);
        rest = next;
        step += 1;
        let now = start + Duration::from_millis(step * 300);
        let socket = match selector % 5 {
            0 => SocketRef::Listener(ListenerId(0)),
            1 => SocketRef::Listener(ListenerId(1)),
            2 => SocketRef::Listener(ListenerId(2)),
            3 => SocketRef::Upstream {
                key: UpstreamKey {
                    pool: 0,
                    accounting: false,
                    server: 0,
                },
                slot: u16::from(selector >> 4),
            },
            _ => SocketRef::NasCoa {
                slot: u16::from(selector >> 4),
            },
        };
        let from = if selector & 0x08 == 0 {
            "127.0.0.1:5000"
        } else {
            "127.0.1.1:1812"
        };
        engine.handle_datagram(now, socket, from.parse().unwrap(), datagram, &mut out);
        engine.handle_timeout(now, &mut out);
        for output in out.drain(..) {
            if let Output::Transmit(transmit) = output {
                // Forged bytes cannot carry a valid authenticator, so nothing reaches a NAS.
                assert!(
                    !matches!(transmit.socket, SocketRef::Listener(ListenerId(0 | 1))),
                    "unauthenticated input answered: {transmit:?}"
                );
            }
        }
    }
});
