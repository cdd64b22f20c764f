//! The engine's own cost per RADIUS transaction, with no sockets: a proxied Access-Request
//! (NAS → engine → upstream → engine → NAS) and a locally answered one.
//!
//!     cargo bench -p brasa-aaa --bench engine

use brasa_aaa::*;
use brasa_radius::{auth, Code, Dictionary, Message};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn engine(handler: Handler) -> Engine {
    let dictionary = Arc::new(Dictionary::builtin());
    let mut users = std::collections::HashMap::new();
    users.insert(
        "DEFAULT".to_string(),
        LocalUser {
            password: Some(b"secret".to_vec()),
            check: vec![],
            reply: dictionary
                .parse_pairs("Class = \"c1\", Session-Timeout = 60")
                .unwrap(),
        },
    );
    let config = EngineConfig {
        clients: vec![ClientConfig {
            name: "nas".into(),
            network: "127.0.0.0/8".parse().unwrap(),
            secret: b"nas-secret".to_vec(),
            require_message_authenticator: false,
            coa_port: 3799,
        }],
        servers: vec![ServerConfig {
            name: "s".into(),
            auth_listen: Some("127.0.0.1:1812".parse().unwrap()),
            acct_listen: None,
            handler,
            policy: None,
            external_hooks: None,
        }],
        pools: vec![PoolConfig {
            name: "p".into(),
            auth_servers: vec![UpstreamConfig {
                name: "u".into(),
                address: "127.0.1.1:1812".parse().unwrap(),
                secret: b"up-secret".to_vec(),
            }],
            acct_servers: vec![],
            load_balance: LoadBalance::Failover,
            timeout: Duration::from_secs(30),
            retries: 0,
            dead_after_timeouts: 3,
            status_check_interval: Duration::from_secs(10),
            revive_after: Duration::from_secs(60),
        }],
        local_databases: vec![LocalDatabase {
            name: "db".into(),
            users,
            accounting_log: "/dev/null".into(),
        }],
        policies: vec![],
        coa_listen: None,
        duplicate_window: Duration::from_secs(5),
        external_hook_timeout: Duration::from_secs(5),
    };
    Engine::new(config, dictionary, [3; 32])
}

fn request(n: u32) -> Vec<u8> {
    let dictionary = Dictionary::builtin();
    let mut packet = Message::new(Code::AccessRequest, n as u8);
    packet.authenticator = [(n >> 8) as u8; 16];
    packet.authenticator[..4].copy_from_slice(&n.to_be_bytes());
    let text = format!(
        "User-Name = \"00:20:fc:{:02x}:{:02x}:{:02x}\", User-Password = secret, NAS-IP-Address = 127.0.0.1, NAS-Port = 7",
        (n >> 16) & 255,
        (n >> 8) & 255,
        n & 255
    );
    for pair in dictionary.parse_pairs(&text).unwrap() {
        let authenticator = packet.authenticator;
        dictionary
            .add_pair(&mut packet, &pair, b"nas-secret", &authenticator)
            .unwrap();
    }
    packet.encode().unwrap()
}

fn bench(c: &mut Criterion) {
    let requests: Vec<Vec<u8>> = (0..4096).map(request).collect();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));

    let mut proxy = engine(Handler::Proxy(0));
    let mut out = Vec::new();
    let mut n = 0usize;
    let start = Instant::now();
    group.bench_function("proxy Access-Request round trip", |b| {
        b.iter(|| {
            n += 1;
            // Distinct source ports keep the duplicate cache from answering.
            let from = SocketAddr::from(([127, 0, 0, 1], 1024 + (n % 60000) as u16));
            let now = start + Duration::from_micros(n as u64);
            proxy.handle_datagram(
                now,
                SocketRef::Listener(ListenerId(0)),
                from,
                &requests[n % 4096],
                &mut out,
            );
            let Some(Output::Transmit(upstream)) = out.pop() else {
                panic!("no upstream request")
            };
            let sent = Message::decode(&upstream.bytes).unwrap();
            let mut reply = Message::new(Code::AccessAccept, sent.identifier);
            reply.copy_all(33, &sent);
            reply.authenticator = sent.authenticator;
            let mut reply = reply.encode().unwrap();
            auth::sign_response(&mut reply, &sent.authenticator, b"up-secret");
            proxy.handle_datagram(now, upstream.socket, upstream.to, &reply, &mut out);
            let Some(Output::Transmit(answer)) = out.pop() else {
                panic!("no answer")
            };
            answer
        })
    });

    let mut local = engine(Handler::Local(0));
    group.bench_function("local Access-Request (PAP, 2 reply attributes)", |b| {
        b.iter(|| {
            n += 1;
            let from = SocketAddr::from(([127, 0, 0, 1], 1024 + (n % 60000) as u16));
            let now = start + Duration::from_micros(n as u64);
            local.handle_datagram(
                now,
                SocketRef::Listener(ListenerId(0)),
                from,
                &requests[n % 4096],
                &mut out,
            );
            out.pop()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
