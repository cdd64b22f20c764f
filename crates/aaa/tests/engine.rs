//! The engine driven without a network: datagrams and time in, datagrams out.

use brasa_aaa::*;
use brasa_radius::auth::{self, MessageAuthenticator};
use brasa_radius::{Code, Dictionary, Message};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NAS_SECRET: &[u8] = b"nas-secret";
const UP_SECRET: &[u8] = b"upstream-secret";

fn nas() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn upstream(n: u8) -> SocketAddr {
    format!("127.0.1.{n}:1812").parse().unwrap()
}

fn client() -> ClientConfig {
    ClientConfig {
        name: "nas".into(),
        network: "127.0.0.1/32".parse().unwrap(),
        secret: NAS_SECRET.to_vec(),
        require_message_authenticator: false,
        coa_port: 3799,
    }
}

fn pool(servers: usize, retries: u32, dead_after: u32, probe: Duration) -> PoolConfig {
    let list = |port_base: u8| {
        (0..servers)
            .map(|i| UpstreamConfig {
                name: format!("s{i}"),
                address: if port_base == 0 {
                    upstream(i as u8 + 1)
                } else {
                    format!("127.0.1.{}:1813", i + 1).parse().unwrap()
                },
                secret: UP_SECRET.to_vec(),
            })
            .collect()
    };
    PoolConfig {
        name: "pool".into(),
        auth_servers: list(0),
        acct_servers: list(1),
        load_balance: LoadBalance::Failover,
        timeout: Duration::from_secs(2),
        retries,
        dead_after_timeouts: dead_after,
        status_check_interval: probe,
        revive_after: Duration::from_secs(30),
    }
}

fn dictionary() -> Arc<Dictionary> {
    Arc::new(Dictionary::builtin())
}

fn proxy_engine(
    servers: usize,
    retries: u32,
    dead_after: u32,
    policy: Option<Arc<dyn Policy>>,
) -> Engine {
    Engine::new(
        proxy_engine_config(servers, retries, dead_after, policy),
        dictionary(),
        [7; 32],
    )
}

fn proxy_engine_config(
    servers: usize,
    retries: u32,
    dead_after: u32,
    policy: Option<Arc<dyn Policy>>,
) -> EngineConfig {
    EngineConfig {
        clients: vec![client()],
        servers: vec![ServerConfig {
            name: "edge".into(),
            auth_listen: Some("127.0.0.1:1812".parse().unwrap()),
            acct_listen: Some("127.0.0.1:1813".parse().unwrap()),
            handler: Handler::Proxy(0),
            policy: policy.as_ref().map(|_| 0),
            external_hooks: None,
        }],
        pools: vec![pool(servers, retries, dead_after, Duration::from_secs(5))],
        local_databases: vec![],
        policies: policy.into_iter().collect(),
        coa_listen: Some("127.0.0.1:3799".parse().unwrap()),
        duplicate_window: Duration::from_secs(5),
        external_hook_timeout: Duration::from_secs(5),
    }
}

fn local_engine() -> Engine {
    let dict = dictionary();
    let mut users = std::collections::HashMap::new();
    users.insert(
        "alice".to_string(),
        LocalUser {
            password: Some(b"wonderland".to_vec()),
            check: vec![],
            reply: dict
                .parse_pairs("Class = \"c1\", Session-Timeout = 60")
                .unwrap(),
        },
    );
    let config = EngineConfig {
        clients: vec![client()],
        servers: vec![ServerConfig {
            name: "local".into(),
            auth_listen: Some("127.0.0.1:1812".parse().unwrap()),
            acct_listen: Some("127.0.0.1:1813".parse().unwrap()),
            handler: Handler::Local(0),
            policy: None,
            external_hooks: None,
        }],
        pools: vec![],
        local_databases: vec![LocalDatabase {
            name: "db".into(),
            users,
            accounting_log: "acct.jsonl".into(),
        }],
        policies: vec![],
        coa_listen: None,
        duplicate_window: Duration::from_secs(5),
        external_hook_timeout: Duration::from_secs(5),
    };
    Engine::new(config, dict, [1; 32])
}

const AUTH: SocketRef = SocketRef::Listener(ListenerId(0));
const ACCT: SocketRef = SocketRef::Listener(ListenerId(1));
const COA: SocketRef = SocketRef::Listener(ListenerId(2));

fn access_request(id: u8, user: &str, password: &str) -> Vec<u8> {
    let dict = Dictionary::builtin();
    let mut packet = Message::new(Code::AccessRequest, id);
    packet.authenticator = [id ^ 0x5a; 16];
    let text = format!("User-Name = \"{user}\", User-Password = \"{password}\"");
    for pair in dict.parse_pairs(&text).unwrap() {
        dict.add_pair(&mut packet, &pair, NAS_SECRET, &[id ^ 0x5a; 16])
            .unwrap();
    }
    packet.encode().unwrap()
}

fn accounting_request(id: u8, status: &str, session: &str) -> Vec<u8> {
    let dict = Dictionary::builtin();
    let mut packet = Message::new(Code::AccountingRequest, id);
    let text =
        format!("User-Name = alice, Acct-Status-Type = {status}, Acct-Session-Id = \"{session}\"");
    for pair in dict.parse_pairs(&text).unwrap() {
        dict.add_pair(&mut packet, &pair, NAS_SECRET, &[0; 16])
            .unwrap();
    }
    let mut bytes = packet.encode().unwrap();
    auth::sign_request(&mut bytes, NAS_SECRET);
    bytes
}

fn transmits(out: &mut Vec<Output>) -> Vec<Transmit> {
    out.drain(..)
        .filter_map(|o| match o {
            Output::Transmit(t) => Some(t),
            _ => None,
        })
        .collect()
}

/// Delivers `reply` from `from` on the upstream socket the engine sent `request` on, as the
/// shell would.
fn deliver(
    engine: &mut Engine,
    now: Instant,
    request: &Transmit,
    from: SocketAddr,
    reply: &[u8],
    out: &mut Vec<Output>,
) {
    assert!(
        matches!(request.socket, SocketRef::Upstream { .. }),
        "{:?} is not an upstream socket",
        request.socket
    );
    engine.handle_datagram(now, request.socket, from, reply, out);
}

/// Plays the upstream server: answers `request_bytes` with `code` and the given attributes.
fn upstream_reply(request_bytes: &[u8], code: Code, attributes: &[(u8, &[u8])]) -> Vec<u8> {
    let request = Message::decode(request_bytes).unwrap();
    let mut reply = Message::new(code, request.identifier);
    for (typ, value) in attributes {
        reply.add(*typ, value).unwrap();
    }
    for state in request.get_all(33) {
        reply.add(33, state).unwrap();
    }
    reply.authenticator = request.authenticator;
    let mut bytes = reply.encode().unwrap();
    auth::sign_response(&mut bytes, &request.authenticator, UP_SECRET);
    bytes
}

#[test]
fn proxied_access_request_is_re_signed_and_the_reply_goes_back_under_the_nas_secret() {
    let mut engine = proxy_engine(1, 0, 3, None);
    let now = Instant::now();
    let mut out = Vec::new();
    let request = access_request(42, "alice", "wonderland");
    engine.handle_datagram(now, AUTH, nas(), &request, &mut out);
    let sent = transmits(&mut out);
    assert_eq!(sent.len(), 1);
    let upstream_request = &sent[0];
    assert_eq!(upstream_request.to, upstream(1));
    let proxied = Message::decode(&upstream_request.bytes).unwrap();
    // A fresh authenticator, the password re-hidden for the upstream secret, a Proxy-State,
    // and a valid Message-Authenticator.
    assert_ne!(proxied.authenticator, [42 ^ 0x5a; 16]);
    let password =
        auth::reveal_user_password(proxied.get(2).unwrap(), UP_SECRET, &proxied.authenticator)
            .unwrap();
    assert_eq!(password, b"wonderland");
    assert_eq!(proxied.get_all(33).count(), 1);
    assert_eq!(
        auth::check_message_authenticator(
            &upstream_request.bytes,
            &proxied.authenticator,
            UP_SECRET
        ),
        MessageAuthenticator::Valid
    );

    let reply = upstream_reply(
        &upstream_request.bytes,
        Code::AccessAccept,
        &[(25, b"class-A"), (25, b"class-B")],
    );
    deliver(
        &mut engine,
        now,
        upstream_request,
        upstream(1),
        &reply,
        &mut out,
    );
    let sent = transmits(&mut out);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, nas());
    assert_eq!(sent[0].socket, AUTH);
    let answer = Message::decode(&sent[0].bytes).unwrap();
    assert_eq!(answer.code, Code::AccessAccept);
    assert_eq!(answer.identifier, 42);
    assert!(auth::verify_response(
        &sent[0].bytes,
        &[42 ^ 0x5a; 16],
        NAS_SECRET
    ));
    assert_eq!(
        answer.get_all(25).collect::<Vec<_>>(),
        vec![&b"class-A"[..], b"class-B"]
    );
    assert_eq!(
        answer.get(33),
        None,
        "brasa's Proxy-State must not leak to the NAS"
    );

    let stats = engine.stats();
    assert_eq!(stats.clients[0].accepts, 1);
    assert_eq!(stats.upstreams[0].accepts, 1);
    assert_eq!(stats.upstreams[0].in_flight, 0);
}

#[test]
fn a_forged_upstream_reply_is_dropped_and_the_real_one_still_accepted() {
    let mut engine = proxy_engine(1, 0, 3, None);
    let now = Instant::now();
    let mut out = Vec::new();
    engine.handle_datagram(now, AUTH, nas(), &access_request(1, "alice", "x"), &mut out);
    let sent = transmits(&mut out);
    let mut forged = upstream_reply(&sent[0].bytes, Code::AccessAccept, &[]);
    forged[4] ^= 0xff;
    deliver(&mut engine, now, &sent[0], upstream(1), &forged, &mut out);
    assert!(transmits(&mut out).is_empty());
    // From the wrong address: ignored too.
    let genuine = upstream_reply(&sent[0].bytes, Code::AccessReject, &[]);
    deliver(&mut engine, now, &sent[0], upstream(9), &genuine, &mut out);
    assert!(transmits(&mut out).is_empty());
    deliver(&mut engine, now, &sent[0], upstream(1), &genuine, &mut out);
    let answer = transmits(&mut out);
    assert_eq!(
        Message::decode(&answer[0].bytes).unwrap().code,
        Code::AccessReject
    );
    let stats = engine.stats();
    assert_eq!(stats.upstreams[0].bad_authenticator, 1);
    assert_eq!(stats.upstreams[0].malformed, 1);
    assert_eq!(stats.clients[0].rejects, 1);
}

#[test]
fn timeout_fails_over_then_the_dead_server_is_probed_and_revived() {
    let mut engine = proxy_engine(2, 1, 1, None);
    let start = Instant::now();
    let mut out = Vec::new();
    engine.handle_datagram(
        start,
        AUTH,
        nas(),
        &access_request(9, "alice", "x"),
        &mut out,
    );
    let first = transmits(&mut out);
    assert_eq!(first[0].to, upstream(1));
    assert_eq!(engine.next_timeout(), Some(start + Duration::from_secs(2)));

    // Nothing before the deadline...
    engine.handle_timeout(start + Duration::from_millis(1999), &mut out);
    assert!(transmits(&mut out).is_empty());
    // ...then the retry goes to the second server.
    let t1 = start + Duration::from_secs(2);
    engine.handle_timeout(t1, &mut out);
    let retry = transmits(&mut out);
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].to, upstream(2));
    let stats = engine.stats();
    assert_eq!(stats.upstreams[0].timeouts, 1);
    assert_eq!(stats.upstreams[0].state, "dead");
    assert_eq!(stats.upstreams[1].retransmissions, 1);

    let reply = upstream_reply(&retry[0].bytes, Code::AccessAccept, &[]);
    deliver(&mut engine, t1, &retry[0], upstream(2), &reply, &mut out);
    assert_eq!(transmits(&mut out)[0].to, nas());

    // The dead server gets a Status-Server probe after the probe interval.
    let t2 = t1 + Duration::from_secs(5);
    engine.handle_timeout(t2, &mut out);
    let probe = transmits(&mut out);
    assert_eq!(probe.len(), 1);
    assert_eq!(probe[0].to, upstream(1));
    let probe_packet = Message::decode(&probe[0].bytes).unwrap();
    assert_eq!(probe_packet.code, Code::StatusServer);
    assert_eq!(
        auth::check_message_authenticator(&probe[0].bytes, &probe_packet.authenticator, UP_SECRET),
        MessageAuthenticator::Valid
    );
    let pong = upstream_reply(&probe[0].bytes, Code::AccessAccept, &[]);
    deliver(&mut engine, t2, &probe[0], upstream(1), &pong, &mut out);
    assert!(
        transmits(&mut out).is_empty(),
        "a probe answer goes nowhere"
    );
    let stats = engine.stats();
    assert_eq!(stats.upstreams[0].state, "alive");
    assert_eq!(
        stats.upstreams[0].accepts, 0,
        "probe answers are not counted as accepts"
    );

    // Failover order again prefers the first server.
    engine.handle_datagram(t2, AUTH, nas(), &access_request(10, "alice", "x"), &mut out);
    assert_eq!(transmits(&mut out)[0].to, upstream(1));
}

#[test]
fn all_attempts_timing_out_leaves_the_request_unanswered_and_retryable() {
    let mut engine = proxy_engine(1, 0, 5, None);
    let start = Instant::now();
    let mut out = Vec::new();
    let request = access_request(3, "alice", "x");
    engine.handle_datagram(start, AUTH, nas(), &request, &mut out);
    assert_eq!(transmits(&mut out).len(), 1);
    engine.handle_timeout(start + Duration::from_secs(2), &mut out);
    assert!(transmits(&mut out).is_empty());
    assert_eq!(engine.stats().clients[0].unanswered, 1);
    // The NAS retransmits: it is a new attempt, not a cached duplicate.
    engine.handle_datagram(
        start + Duration::from_secs(3),
        AUTH,
        nas(),
        &request,
        &mut out,
    );
    assert_eq!(transmits(&mut out).len(), 1);
}

#[test]
fn retransmissions_are_absorbed_then_answered_from_the_reply_cache() {
    let mut engine = local_engine();
    let now = Instant::now();
    let mut out = Vec::new();
    let request = accounting_request(5, "Start", "s1");
    engine.handle_datagram(now, ACCT, nas(), &request, &mut out);
    let first: Vec<Output> = std::mem::take(&mut out);
    assert_eq!(first.len(), 2, "an accounting record and the response");
    assert!(matches!(first[0], Output::Accounting { database: 0, .. }));
    let Output::Transmit(first_reply) = &first[1] else {
        panic!()
    };
    engine.handle_datagram(
        now + Duration::from_secs(1),
        ACCT,
        nas(),
        &request,
        &mut out,
    );
    let again = transmits(&mut out);
    assert_eq!(again.len(), 1, "no second accounting record");
    assert_eq!(again[0].bytes, first_reply.bytes);
    let stats = engine.stats();
    assert_eq!(stats.clients[0].requests, 1);
    assert_eq!(stats.clients[0].retransmissions, 1);
    // After the duplicate window the same bytes are a new request.
    engine.handle_datagram(
        now + Duration::from_secs(6),
        ACCT,
        nas(),
        &request,
        &mut out,
    );
    assert_eq!(out.len(), 2);
}

#[test]
fn local_mode_accepts_with_reply_attributes_and_rejects_bad_passwords() {
    let mut engine = local_engine();
    let now = Instant::now();
    let mut out = Vec::new();
    engine.handle_datagram(
        now,
        AUTH,
        nas(),
        &access_request(1, "alice", "wonderland"),
        &mut out,
    );
    let accept = transmits(&mut out);
    let packet = Message::decode(&accept[0].bytes).unwrap();
    assert_eq!(packet.code, Code::AccessAccept);
    assert_eq!(packet.get(25), Some(&b"c1"[..]));
    assert_eq!(packet.get(27), Some(&60u32.to_be_bytes()[..]));
    for (id, user, password) in [(2, "alice", "wrong"), (3, "mallory", "wonderland")] {
        engine.handle_datagram(
            now,
            AUTH,
            nas(),
            &access_request(id, user, password),
            &mut out,
        );
        let reject = transmits(&mut out);
        assert_eq!(
            Message::decode(&reject[0].bytes).unwrap().code,
            Code::AccessReject
        );
    }
    let stats = engine.stats();
    assert_eq!((stats.clients[0].accepts, stats.clients[0].rejects), (1, 2));
}

#[test]
fn rewrite_policy_edits_replies_and_drops_requests() {
    let dict = Dictionary::builtin();
    let rules = vec![
        RewriteRule {
            codes: vec![Code::AccessAccept],
            direction: Some(Direction::Ingress),
            remove: vec![dict.attribute("Reply-Message").unwrap().id.clone()],
            set: dict.parse_pairs("Session-Timeout = 300").unwrap(),
            add: dict
                .parse_pairs("Alc-Subsc-ID-Str = \"rewritten\"")
                .unwrap(),
            ..RewriteRule::default()
        },
        RewriteRule {
            codes: vec![Code::AccessRequest],
            direction: Some(Direction::Egress),
            clients: vec!["nas".into()],
            drop: true,
            ..RewriteRule::default()
        },
    ];
    let policy: Arc<dyn Policy> = Arc::new(RewritePolicy::new("p", rules.clone()));
    let mut engine = proxy_engine(1, 0, 3, Some(policy));
    let now = Instant::now();
    let mut out = Vec::new();
    engine.handle_datagram(now, AUTH, nas(), &access_request(1, "alice", "x"), &mut out);
    assert!(transmits(&mut out).is_empty());
    assert_eq!(engine.stats().clients[0].dropped_by_policy, 1);

    // Without the drop rule the reply is rewritten.
    let policy: Arc<dyn Policy> = Arc::new(RewritePolicy::new("p", rules[..1].to_vec()));
    let mut engine = proxy_engine(1, 0, 3, Some(policy));
    engine.handle_datagram(now, AUTH, nas(), &access_request(1, "alice", "x"), &mut out);
    let sent = transmits(&mut out);
    let reply = upstream_reply(
        &sent[0].bytes,
        Code::AccessAccept,
        &[(18, b"hello"), (27, &7200u32.to_be_bytes())],
    );
    deliver(&mut engine, now, &sent[0], upstream(1), &reply, &mut out);
    let answer = Message::decode(&transmits(&mut out)[0].bytes).unwrap();
    assert_eq!(answer.get(18), None);
    assert_eq!(
        answer.get_all(27).collect::<Vec<_>>(),
        vec![&300u32.to_be_bytes()[..]]
    );
    assert_eq!(answer.get_vsa(&dict, 6527, 11), Some(b"rewritten".to_vec()));
}

#[test]
fn coa_for_an_unknown_session_is_nakked_and_a_known_one_is_relayed() {
    let mut engine = proxy_engine(1, 0, 3, None);
    let now = Instant::now();
    let mut out = Vec::new();
    let coa = |id: u8, session: &str| {
        let mut packet = Message::new(Code::CoaRequest, id);
        packet.add(44, session.as_bytes()).unwrap();
        let mut bytes = packet.encode().unwrap();
        auth::sign_request(&mut bytes, UP_SECRET);
        bytes
    };
    let aaa: SocketAddr = "127.0.1.1:5555".parse().unwrap();
    engine.handle_datagram(now, COA, aaa, &coa(1, "nobody"), &mut out);
    let nak = transmits(&mut out);
    let nak_packet = Message::decode(&nak[0].bytes).unwrap();
    assert_eq!(nak_packet.code, Code::CoaNak);
    assert_eq!(nak_packet.get(101), Some(&503u32.to_be_bytes()[..]));

    // Learn the session through proxied accounting.
    engine.handle_datagram(
        now,
        ACCT,
        nas(),
        &accounting_request(2, "Start", "sess-9"),
        &mut out,
    );
    let sent = transmits(&mut out);
    let response = upstream_reply(&sent[0].bytes, Code::AccountingResponse, &[]);
    deliver(
        &mut engine,
        now,
        &sent[0],
        "127.0.1.1:1813".parse().unwrap(),
        &response,
        &mut out,
    );
    assert_eq!(transmits(&mut out)[0].to, nas());

    engine.handle_datagram(now, COA, aaa, &coa(3, "sess-9"), &mut out);
    let relayed = transmits(&mut out);
    assert_eq!(relayed[0].to, "127.0.0.1:3799".parse().unwrap());
    assert!(auth::verify_request(&relayed[0].bytes, NAS_SECRET));
    // A CoA from an address that is no upstream server is not relayed.
    engine.handle_datagram(
        now,
        COA,
        "127.0.0.50:1".parse().unwrap(),
        &coa(4, "sess-9"),
        &mut out,
    );
    assert!(transmits(&mut out).is_empty());
    assert_eq!(engine.stats().unknown_client, 1);

    // The NAS answers; the AAA server gets a CoA-ACK signed with its secret.
    let request = Message::decode(&relayed[0].bytes).unwrap();
    let mut ack = Message::new(Code::CoaAck, request.identifier);
    for state in request.get_all(33) {
        ack.add(33, state).unwrap();
    }
    ack.authenticator = request.authenticator;
    let mut ack_bytes = ack.encode().unwrap();
    auth::sign_response(&mut ack_bytes, &request.authenticator, NAS_SECRET);
    let SocketRef::NasCoa { slot } = relayed[0].socket else {
        panic!()
    };
    engine.handle_datagram(
        now,
        SocketRef::NasCoa { slot },
        relayed[0].to,
        &ack_bytes,
        &mut out,
    );
    let back = transmits(&mut out);
    assert_eq!(back[0].to, aaa);
    let original = Message::decode(&coa(3, "sess-9")).unwrap();
    assert!(auth::verify_response(
        &back[0].bytes,
        &original.authenticator,
        UP_SECRET
    ));
    let back_packet = Message::decode(&back[0].bytes).unwrap();
    assert_eq!(back_packet.code, Code::CoaAck);
    assert_eq!(back_packet.identifier, 3);
    assert_eq!(back_packet.get(33), None);
}

#[test]
fn identifiers_spill_into_new_socket_slots_beyond_256_in_flight() {
    let mut engine = proxy_engine(1, 0, 1000, None);
    let now = Instant::now();
    let mut out = Vec::new();
    let mut slots = std::collections::HashSet::new();
    let mut seen = std::collections::HashSet::new();
    for n in 0..300u32 {
        // Distinct NAS source ports make each request distinct.
        let from: SocketAddr = format!("127.0.0.1:{}", 20000 + n).parse().unwrap();
        engine.handle_datagram(
            now,
            AUTH,
            from,
            &access_request((n % 256) as u8, "alice", "x"),
            &mut out,
        );
        for t in transmits(&mut out) {
            let SocketRef::Upstream { slot, .. } = t.socket else {
                panic!()
            };
            let id = t.bytes[1];
            assert!(
                seen.insert((slot, id)),
                "({slot}, {id}) reused while in flight"
            );
            slots.insert(slot);
        }
    }
    assert_eq!(seen.len(), 300);
    assert_eq!(slots.len(), 2);
    assert_eq!(engine.stats().upstreams[0].in_flight, 300);
}

// ----- external (deferred) hooks ---------------------------------------------------------------

fn hooks(engine_points: &[(Code, Direction)]) -> Option<ExternalHooks> {
    Some(ExternalHooks {
        handler: 3,
        points: engine_points.to_vec(),
    })
}

fn with_external_hooks(mut engine_config: EngineConfig, hooks: Option<ExternalHooks>) -> Engine {
    for server in &mut engine_config.servers {
        server.external_hooks = hooks.clone();
    }
    Engine::new(engine_config, dictionary(), [3; 32])
}

fn proxy_config() -> EngineConfig {
    EngineConfig {
        coa_listen: None,
        external_hook_timeout: Duration::from_secs(1),
        ..proxy_engine_config(1, 0, 3, None)
    }
}

fn hook_requests(out: &mut Vec<Output>) -> Vec<HookRequest> {
    let mut hooks = Vec::new();
    out.retain(|o| match o {
        Output::Hook(h) => {
            hooks.push(h.clone());
            false
        }
        _ => true,
    });
    hooks
}

#[test]
fn an_egress_hook_parks_the_request_until_the_processor_answers() {
    let mut engine = with_external_hooks(
        proxy_config(),
        hooks(&[(Code::AccountingRequest, Direction::Egress)]),
    );
    let now = Instant::now();
    let mut out = Vec::new();
    let request = accounting_request(5, "Start", "s1");
    engine.handle_datagram(now, ACCT, nas(), &request, &mut out);
    let parked = hook_requests(&mut out);
    assert!(
        transmits(&mut out).is_empty(),
        "nothing leaves before the hook answers"
    );
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].handler, 3);
    assert_eq!(parked[0].direction, Direction::Egress);
    assert_eq!(&*parked[0].client, "nas");
    assert_eq!(engine.stats().hooks_pending, 1);

    // A retransmission meanwhile is absorbed, not deferred twice.
    engine.handle_datagram(now, ACCT, nas(), &request, &mut out);
    assert!(out.is_empty());

    // Access-Requests are not covered: they go straight upstream.
    engine.handle_datagram(now, AUTH, nas(), &access_request(6, "alice", "x"), &mut out);
    assert!(hook_requests(&mut out).is_empty());
    assert_eq!(transmits(&mut out).len(), 1);

    let mut edited = parked[0].packet.clone();
    edited.add(25, b"Class-1").unwrap();
    engine.resume_hook(
        now,
        parked[0].ticket,
        HookResult::Continue(edited),
        &mut out,
    );
    let sent = transmits(&mut out);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to.ip(), upstream(1).ip());
    let proxied = Message::decode(&sent[0].bytes).unwrap();
    assert_eq!(proxied.code, Code::AccountingRequest);
    assert_eq!(proxied.get(25), Some(&b"Class-1"[..]));
    assert!(auth::verify_request(&sent[0].bytes, UP_SECRET));
    let stats = engine.stats();
    assert_eq!(stats.hooks_pending, 0);
    assert_eq!(stats.hooks_deferred, 1);

    // A second answer for the same ticket is ignored.
    engine.resume_hook(now, parked[0].ticket, HookResult::Drop, &mut out);
    assert!(out.is_empty());
    assert_eq!(engine.stats().clients[0].dropped_by_policy, 0);
}

#[test]
fn an_ingress_hook_sees_the_upstream_reply_and_its_edits_reach_the_nas_signed() {
    let mut engine = with_external_hooks(
        proxy_config(),
        hooks(&[(Code::AccessAccept, Direction::Ingress)]),
    );
    let now = Instant::now();
    let mut out = Vec::new();
    engine.handle_datagram(
        now,
        AUTH,
        nas(),
        &access_request(8, "alice", "pw"),
        &mut out,
    );
    let sent = transmits(&mut out);
    let reply = upstream_reply(&sent[0].bytes, Code::AccessAccept, &[(25, b"Class-22")]);
    deliver(&mut engine, now, &sent[0], upstream(1), &reply, &mut out);
    let parked = hook_requests(&mut out);
    assert!(transmits(&mut out).is_empty());
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].direction, Direction::Ingress);
    assert_eq!(parked[0].packet.code, Code::AccessAccept);
    assert_eq!(parked[0].packet.get(25), Some(&b"Class-22"[..]));
    assert_eq!(
        parked[0].packet.get(33),
        None,
        "Proxy-State is removed before the hook"
    );

    let mut edited = parked[0].packet.clone();
    edited.set(18, b"hello").unwrap();
    engine.resume_hook(
        now,
        parked[0].ticket,
        HookResult::Continue(edited),
        &mut out,
    );
    let answer = transmits(&mut out);
    assert_eq!(answer.len(), 1);
    assert_eq!(answer[0].to, nas());
    assert!(auth::verify_response(
        &answer[0].bytes,
        &[8 ^ 0x5a; 16],
        NAS_SECRET
    ));
    let packet = Message::decode(&answer[0].bytes).unwrap();
    assert_eq!(packet.get(18), Some(&b"hello"[..]));
    assert_eq!(packet.identifier, 8);
    assert_eq!(engine.stats().clients[0].accepts, 1);
}

#[test]
fn a_hook_drop_ends_the_exchange_and_a_retransmission_is_processed_afresh() {
    let mut config = proxy_config();
    config.servers[0].handler = Handler::Local(0);
    config.local_databases = vec![LocalDatabase {
        name: "db".into(),
        users: Default::default(),
        accounting_log: "acct.jsonl".into(),
    }];
    let mut engine = with_external_hooks(
        config,
        hooks(&[
            (Code::AccountingRequest, Direction::Egress),
            (Code::AccountingResponse, Direction::Ingress),
        ]),
    );
    let now = Instant::now();
    let mut out = Vec::new();
    let request = accounting_request(11, "Stop", "s9");
    engine.handle_datagram(now, ACCT, nas(), &request, &mut out);
    let parked = hook_requests(&mut out);
    engine.resume_hook(now, parked[0].ticket, HookResult::Drop, &mut out);
    assert!(out.is_empty());
    assert_eq!(engine.stats().clients[0].dropped_by_policy, 1);

    // The NAS retries: a new exchange, through both hooks this time, answered locally.
    engine.handle_datagram(now, ACCT, nas(), &request, &mut out);
    let egress = hook_requests(&mut out);
    assert_eq!(egress.len(), 1);
    let packet = egress[0].packet.clone();
    engine.resume_hook(
        now,
        egress[0].ticket,
        HookResult::Continue(packet),
        &mut out,
    );
    let accounted = out
        .iter()
        .filter(|o| matches!(o, Output::Accounting { .. }))
        .count();
    assert_eq!(accounted, 1);
    let ingress = hook_requests(&mut out);
    assert_eq!(ingress.len(), 1);
    assert_eq!(ingress[0].packet.code, Code::AccountingResponse);
    let packet = ingress[0].packet.clone();
    engine.resume_hook(
        now,
        ingress[0].ticket,
        HookResult::Continue(packet),
        &mut out,
    );
    let answer = transmits(&mut out);
    assert_eq!(answer.len(), 1);
    assert_eq!(
        Message::decode(&answer[0].bytes).unwrap().code,
        Code::AccountingResponse
    );
}

#[test]
fn a_hook_that_never_answers_is_given_up_after_the_timeout() {
    let mut engine = with_external_hooks(
        proxy_config(),
        hooks(&[(Code::AccessRequest, Direction::Egress)]),
    );
    let start = Instant::now();
    let mut out = Vec::new();
    let request = access_request(21, "alice", "x");
    engine.handle_datagram(start, AUTH, nas(), &request, &mut out);
    let parked = hook_requests(&mut out);
    assert_eq!(engine.next_timeout(), Some(start + Duration::from_secs(1)));
    engine.handle_timeout(start + Duration::from_millis(999), &mut out);
    assert_eq!(engine.stats().hooks_pending, 1);
    engine.handle_timeout(start + Duration::from_secs(1), &mut out);
    let stats = engine.stats();
    assert_eq!(stats.hooks_pending, 0);
    assert_eq!(stats.hook_timeouts, 1);
    assert_eq!(stats.clients[0].dropped_by_policy, 1);
    // The late answer changes nothing.
    let packet = parked[0].packet.clone();
    engine.resume_hook(
        start + Duration::from_secs(2),
        parked[0].ticket,
        HookResult::Continue(packet),
        &mut out,
    );
    assert!(out.is_empty());
}
