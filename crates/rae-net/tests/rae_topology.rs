//! The document's validation tests (seed 004 §4.4.1) automated on 127.0.0.0/8: a single
//! domain with its CME, the 7-domain tiered topology with advertisements, withdrawals and a
//! dead RAE, and the 10 000-prefix stress test; plus hold-timer expiry and malformed frames.

mod rae_support;

use brasa_rae::proto;
use brasa_rae::wire::InterRaeMessage;
use brasa_testkit::capture::Capture;
use rae_support::*;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_domain_reports_prefixes_and_provisioning_and_resends_after_cme_restart() {
    let cme = Cme::start().await;
    let (listener, port) = listener("127.0.6.11").await;
    let domain = Domain {
        as_number: 11,
        ip: "127.0.6.11".into(),
        port,
        peers: vec![(5, "127.0.6.5".into(), 1)],
        prefixes: vec!["127.203.1.0/24".into(), "127.203.2.0/24".into()],
        cme_port: Some(cme.port),
        hold_time: 0.0,
        minimum_update_interval: 0,
    };
    let expected_prov = domain.message().provisioning_table.len();
    let rae = brasa_rae_net::start_with_listener(domain.config(), listener).unwrap();
    assert!(
        wait_until(LIMIT, || {
            let s = cme.state.lock().unwrap();
            s.paths.len() == 4 && s.prov_inf.len() == expected_prov
        })
        .await,
        "{:?}",
        cme.state.lock().unwrap()
    );
    {
        let s = cme.state.lock().unwrap();
        for p in ["127.203.1.0/24", "127.203.2.0/24"] {
            for cos in [1, 2] {
                assert_eq!(s.best(p, cos), Some(vec![11]), "{p} cos {cos}");
            }
        }
        assert_eq!(s.full_states, 1);
    }
    // The CME restarts: the RAE reconnects and sends everything again.
    *cme.version.lock().unwrap() = 2;
    cme.drop_connections.notify_waiters();
    assert!(
        wait_until(LIMIT, || {
            let s = cme.state.lock().unwrap();
            s.full_states == 2 && s.paths.len() == 4 && s.prov_inf.len() == expected_prov
        })
        .await,
        "{:?}",
        cme.state.lock().unwrap()
    );
    let metrics = rae.metrics().await.unwrap();
    assert!(metrics.cme_connected);
    assert_eq!(metrics.routes, 4);
    rae.shutdown();
}

/// Accepts one inter-RAE connection as `as_number` and completes the open exchange.
fn route(prefix: &str, cos: u32, as_path: Vec<u32>) -> proto::Route {
    let p: brasa_rae::rib::Prefix = prefix.parse().unwrap();
    proto::Route {
        address: p.bits(),
        prefix_length: u32::from(p.length()),
        cos_id: cos,
        paths: vec![proto::PathAttributes {
            as_path,
            maximum_delay: 0.001,
            loss_ratio: 1e-6,
            supported_bandwidth: 10e6,
        }],
    }
}

fn assert_loop_free(own_as: u32, state: &CmeState) {
    for ((prefix, cos), paths) in &state.paths {
        for path in paths {
            let mut seen = path.as_path.clone();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(
                seen.len(),
                path.as_path.len(),
                "AS {own_as}: {prefix} cos {cos}: {:?}",
                path.as_path
            );
            if path.as_path != [own_as] {
                assert!(
                    !path.as_path.contains(&own_as),
                    "AS {own_as}: {:?}",
                    path.as_path
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_domains_propagate_advertisements_withdrawals_and_a_dead_rae() {
    // Tier 1: 1, 2; tier 2: 3, 4, 5; tier 3: 6, 7. AS 8 is a scripted peer of AS 7.
    let Tiered {
        cmes,
        raes,
        mut as8,
        as8_listener: _as8_listener,
    } = start_tiered("127.0.7").await;
    // The scripted AS 8 advertises its prefix through AS 7.
    send(
        &mut as8,
        &InterRaeMessage::Update(proto::Update {
            routes: vec![
                route("127.100.8.0/24", 1, vec![8]),
                route("127.100.8.0/24", 2, vec![8]),
            ],
        }),
    )
    .await;
    let all_prefixes: Vec<u32> = (1..=8).collect();
    let converged = wait_until(LIMIT, || {
        cmes.values().all(|cme| {
            let s = cme.state.lock().unwrap();
            all_prefixes.iter().all(|p| {
                [1, 2]
                    .iter()
                    .all(|cos| s.paths.contains_key(&(domain_prefix(*p), *cos)))
            })
        })
    })
    .await;
    assert!(
        converged,
        "{:#?}",
        cmes[&6]
            .state
            .lock()
            .unwrap()
            .paths
            .keys()
            .collect::<Vec<_>>()
    );
    // Expected preferred paths (shortest and least lossy first).
    assert!(
        wait_until(LIMIT, || cmes[&6]
            .state
            .lock()
            .unwrap()
            .best(&domain_prefix(7), 1)
            == Some(vec![4, 7]))
        .await
    );
    assert!(
        wait_until(LIMIT, || cmes[&3]
            .state
            .lock()
            .unwrap()
            .best(&domain_prefix(5), 2)
            == Some(vec![1, 2, 5]))
        .await
    );
    assert!(
        wait_until(LIMIT, || cmes[&1]
            .state
            .lock()
            .unwrap()
            .best(&domain_prefix(8), 1)
            == Some(vec![4, 7, 8]))
        .await
    );
    for (a, cme) in &cmes {
        let s = cme.state.lock().unwrap();
        assert_loop_free(*a, &s);
        assert!(s.paths[&(domain_prefix(7), 1)].len() <= 3);
    }

    // Withdrawal: AS 8 withdraws its prefix; every CME loses it.
    send(
        &mut as8,
        &InterRaeMessage::Withdraw(proto::Withdraw {
            routes: [1, 2]
                .iter()
                .map(|&cos| proto::WithdrawnRoute {
                    address: u32::from(std::net::Ipv4Addr::new(127, 100, 8, 0)),
                    prefix_length: 24,
                    cos_id: cos,
                })
                .collect(),
        }),
    )
    .await;
    let withdrawn = wait_until(LIMIT, || {
        cmes.values().all(|cme| {
            let s = cme.state.lock().unwrap();
            !s.paths.contains_key(&(domain_prefix(8), 1))
                && !s.paths.contains_key(&(domain_prefix(8), 2))
        })
    })
    .await;
    assert!(withdrawn);

    // A dead RAE: AS 4 stops. Its prefix disappears everywhere and AS 6 reaches AS 7 the long way.
    raes[&4].shutdown();
    let rerouted = wait_until(LIMIT, || {
        cmes.iter().filter(|(a, _)| **a != 4).all(|(_, cme)| {
            let s = cme.state.lock().unwrap();
            !s.paths.contains_key(&(domain_prefix(4), 1))
                && s.paths
                    .values()
                    .all(|paths| paths.iter().all(|p| !p.as_path.contains(&4)))
        }) && cmes[&6].state.lock().unwrap().best(&domain_prefix(7), 1) == Some(vec![3, 1, 2, 5, 7])
    })
    .await;
    assert!(
        rerouted,
        "{:#?}",
        cmes[&6]
            .state
            .lock()
            .unwrap()
            .paths
            .get(&(domain_prefix(7), 1))
    );
    let peers = raes[&6].peers().await.unwrap();
    let to_4 = peers.iter().find(|p| p.as_number == 4).unwrap();
    assert_eq!(to_4.state, brasa_rae_net::SessionState::Idle);
    assert!(to_4.session_drops >= 1);
    for rae in raes.values() {
        rae.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_ten_thousand_prefixes_from_the_east_reach_the_west_cme() {
    const PREFIXES: u32 = 10_000;
    let cme = Cme::start().await;
    let (east_listener, east_port) = listener("127.0.8.2").await;
    let (west_listener, west_port) = listener("127.0.8.1").await;
    let west = Domain {
        as_number: 1,
        ip: "127.0.8.1".into(),
        port: west_port,
        peers: vec![(2, "127.0.8.2".into(), east_port)],
        prefixes: vec![],
        cme_port: Some(cme.port),
        hold_time: 0.0,
        minimum_update_interval: 0,
    };
    let east = Domain {
        as_number: 2,
        ip: "127.0.8.2".into(),
        port: east_port,
        peers: vec![(1, "127.0.8.1".into(), west_port)],
        prefixes: vec![],
        cme_port: None,
        hold_time: 0.0,
        minimum_update_interval: 0,
    };
    let mut east_message = east.message();
    for i in 0..PREFIXES {
        let p = proto::Prefix {
            ip_address: std::net::Ipv4Addr::from(
                u32::from(std::net::Ipv4Addr::new(127, 128, 0, 0)) + (i << 8),
            )
            .to_string(),
            prefix_length: 24,
        };
        east_message
            .provisioning_table
            .push(proto::ProvisioningEntry {
                source: Some(proto::Endpoint {
                    kind: Some(proto::endpoint::Kind::AsNumber(1)),
                }),
                sink: Some(proto::Endpoint {
                    kind: Some(proto::endpoint::Kind::Prefix(p.clone())),
                }),
                class_table: classes(0.0005),
            });
        east_message.prefix_table.push(p);
    }
    let east_config = brasa_rae::config::RaeConfig::from_proto(&east_message).unwrap();
    let east_rae = brasa_rae_net::start_with_listener(east_config, east_listener).unwrap();
    let west_rae = brasa_rae_net::start_with_listener(west.config(), west_listener).unwrap();
    let expected = (PREFIXES * 2) as usize;
    assert!(
        wait_until(Duration::from_secs(60), || cme
            .state
            .lock()
            .unwrap()
            .paths
            .len()
            == expected)
        .await,
        "CME holds {} of {expected}",
        cme.state.lock().unwrap().paths.len()
    );
    {
        let s = cme.state.lock().unwrap();
        assert!(s
            .paths
            .values()
            .all(|paths| paths.len() == 1 && paths[0].as_path == [2]));
    }
    let metrics = west_rae.metrics().await.unwrap();
    assert_eq!(metrics.routes, expected);
    assert_eq!(metrics.paths, expected);
    east_rae.shutdown();
    // East dies: the west withdraws everything.
    assert!(
        wait_until(Duration::from_secs(60), || cme
            .state
            .lock()
            .unwrap()
            .paths
            .is_empty())
        .await
    );
    assert_eq!(west_rae.metrics().await.unwrap().paths, 0);
    west_rae.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_timer_expiry_withdraws_the_paths_of_a_silent_peer() {
    let (listener_1, port_1) = listener("127.0.9.1").await;
    let (fake, fake_port) = listener("127.0.9.2").await;
    let domain = Domain {
        as_number: 1,
        ip: "127.0.9.1".into(),
        port: port_1,
        peers: vec![(2, "127.0.9.2".into(), fake_port)],
        prefixes: vec![],
        cme_port: None,
        hold_time: 0.6,
        minimum_update_interval: 0,
    };
    let rae = brasa_rae_net::start_with_listener(domain.config(), listener_1).unwrap();
    let mut stream = fake_peer_accept(&fake, 2).await;
    send(
        &mut stream,
        &InterRaeMessage::Update(proto::Update {
            routes: vec![route("127.100.2.0/24", 1, vec![2])],
        }),
    )
    .await;
    assert!(wait_until_async(LIMIT, || async { rae.metrics().await.unwrap().paths == 1 }).await);
    // Stay silent (but keep the socket open): the hold timer must fire.
    let expired = wait_until_async(LIMIT, || async {
        rae.peers().await.unwrap()[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("hold timer expired"))
    })
    .await;
    assert!(expired, "{:?}", rae.peers().await.unwrap());
    assert_eq!(rae.metrics().await.unwrap().paths, 0);
    drop(stream);
    rae.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_the_session_and_are_counted() {
    let (listener_1, port_1) = listener("127.0.10.1").await;
    let (fake, fake_port) = listener("127.0.10.2").await;
    let domain = Domain {
        as_number: 1,
        ip: "127.0.10.1".into(),
        port: port_1,
        peers: vec![(2, "127.0.10.2".into(), fake_port)],
        prefixes: vec![],
        cme_port: None,
        hold_time: 0.0,
        minimum_update_interval: 0,
    };
    let rae = brasa_rae_net::start_with_listener(domain.config(), listener_1).unwrap();
    let mut stream = fake_peer_accept(&fake, 2).await;
    // An update whose body is not protobuf.
    stream
        .write_all(&[3, 0, 0, 0, 3, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    let closed = wait_until_async(LIMIT, || async {
        rae.peers().await.unwrap()[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("malformed"))
    })
    .await;
    assert!(closed, "{:?}", rae.peers().await.unwrap());
    assert_eq!(rae.metrics().await.unwrap().malformed_frames, 1);
    // The RAE reconnects with backoff: a new connection arrives.
    let again = tokio::time::timeout(LIMIT, fake.accept()).await;
    assert!(again.is_ok(), "no reconnect");
    rae.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_cme_version_in_a_reply_triggers_a_full_resend() {
    let cme = Cme::start().await;
    let (listener_1, port_1) = listener("127.0.11.1").await;
    let (fake, fake_port) = listener("127.0.11.2").await;
    let domain = Domain {
        as_number: 1,
        ip: "127.0.11.1".into(),
        port: port_1,
        peers: vec![(2, "127.0.11.2".into(), fake_port)],
        prefixes: vec!["127.100.1.0/24".into()],
        cme_port: Some(cme.port),
        hold_time: 0.0,
        minimum_update_interval: 0,
    };
    let rae = brasa_rae_net::start_with_listener(domain.config(), listener_1).unwrap();
    let mut stream = fake_peer_accept(&fake, 2).await;
    assert!(wait_until(LIMIT, || cme.state.lock().unwrap().paths.len() == 2).await);
    // Every request answered so far carried version 1: wait until the RAE has read those
    // replies, so that it knows version 1 before the CME "restarts" in place.
    let answered = cme.state.lock().unwrap().requests as u64;
    assert!(
        wait_until_async(LIMIT, || async {
            rae.metrics().await.unwrap().cme_replies >= answered
        })
        .await,
        "the RAE never read the CME's replies"
    );
    assert_eq!(cme.state.lock().unwrap().full_states, 1);
    *cme.version.lock().unwrap() = 2;
    // A change makes the RAE send a request; the Reply carries version 2: full resend.
    send(
        &mut stream,
        &InterRaeMessage::Update(proto::Update {
            routes: vec![route("127.100.2.0/24", 1, vec![2])],
        }),
    )
    .await;
    assert!(
        wait_until(LIMIT, || {
            let s = cme.state.lock().unwrap();
            s.full_states == 2 && s.paths.len() == 3 && s.connections == 1
        })
        .await,
        "{:?}",
        cme.state.lock().unwrap()
    );
    rae.shutdown();
}

/// Starts tcpdump on `lo` with `filter` and returns it once it listens.
fn tcpdump(filter: &str, count: usize) -> Capture {
    Capture::start(
        None,
        &["-i", "lo", "-n", "-v", "-c", &count.to_string(), filter],
        Duration::from_secs(30),
    )
}

/// Waits for tcpdump to capture its packets and returns the TTL of each.
fn captured_ttls(capture: Capture) -> Vec<u32> {
    capture
        .output()
        .lines()
        .filter_map(|line| {
            let rest = line.split("ttl ").nth(1)?;
            rest.split(',').next()?.trim().parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_sockets_use_the_peer_ttl_value() {
    // Initiator side: AS 1 connects to a scripted AS 2 with ttl_value 7; every packet, SYN
    // included, carries TTL 7.
    let (listener_1, port_1) = listener("127.0.12.1").await;
    let (fake, fake_port) = listener("127.0.12.2").await;
    let capture = tcpdump(
        &format!("src host 127.0.12.1 and dst host 127.0.12.2 and dst port {fake_port}"),
        3,
    );
    let mut message = Domain {
        as_number: 1,
        ip: "127.0.12.1".into(),
        port: port_1,
        peers: vec![(2, "127.0.12.2".into(), fake_port)],
        prefixes: vec!["127.100.1.0/24".into()],
        cme_port: None,
        hold_time: 0.0,
        minimum_update_interval: 0,
    }
    .message();
    message.peer_table[0].ttl_value = 7;
    let config = brasa_rae::config::RaeConfig::from_proto(&message).unwrap();
    let rae = brasa_rae_net::start_with_listener(config, listener_1).unwrap();
    let _stream = fake_peer_accept(&fake, 2).await;
    let ttls = tokio::task::spawn_blocking(move || captured_ttls(capture))
        .await
        .unwrap();
    assert_eq!(ttls, vec![7, 7, 7]);
    rae.shutdown();

    // Acceptor side: AS 3 accepts AS 2 (ttl_value 9); its first data packet, the confirming
    // Open, already carries TTL 9.
    let (listener_3, port_3) = listener("127.0.12.3").await;
    let capture = tcpdump(
        &format!("src host 127.0.12.3 and src port {port_3} and (tcp[13] & 8 != 0)"),
        1,
    );
    let mut message = Domain {
        as_number: 3,
        ip: "127.0.12.3".into(),
        port: port_3,
        peers: vec![(2, "127.0.12.2".into(), 1)],
        prefixes: vec!["127.100.3.0/24".into()],
        cme_port: None,
        hold_time: 0.0,
        minimum_update_interval: 0,
    }
    .message();
    message.peer_table[0].ttl_value = 9;
    let config = brasa_rae::config::RaeConfig::from_proto(&message).unwrap();
    let rae = brasa_rae_net::start_with_listener(config, listener_3).unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.12.2:0".parse().unwrap()).unwrap();
    let mut stream = socket
        .connect(format!("127.0.12.3:{port_3}").parse().unwrap())
        .await
        .unwrap();
    send(
        &mut stream,
        &InterRaeMessage::Open(proto::Open {
            as_number: 2,
            hold_time_ms: 0,
        }),
    )
    .await;
    assert!(matches!(
        read_message(&mut stream).await,
        Some(InterRaeMessage::Open(_))
    ));
    assert!(matches!(
        read_message(&mut stream).await,
        Some(InterRaeMessage::Update(_))
    ));
    let ttls = tokio::task::spawn_blocking(move || captured_ttls(capture))
        .await
        .unwrap();
    assert_eq!(ttls, vec![9]);
    rae.shutdown();
}
