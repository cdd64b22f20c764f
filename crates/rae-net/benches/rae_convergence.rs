//! RAE convergence benchmark over real sessions (prints its figures; run with
//! `cargo bench -p brasa-rae-net --bench rae_convergence`): the 7-domain tiered topology of
//! `tests/rae_topology.rs` on 127.0.17.x, each RAE a daemon with its own CME; a scripted AS 8
//! behind AS 7 advertises and withdraws one prefix, and the time from its Update (Withdraw)
//! until all seven CMEs have the prefix (have dropped it) is measured, median of 5 rounds.
//!
//! The decision process in memory is `cargo bench -p brasa-rae --bench rae_decision`.

#[path = "../tests/rae_support/mod.rs"]
mod rae_support;

use brasa_rae::proto;
use brasa_rae::wire::InterRaeMessage;
use rae_support::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

async fn convergence() {
    let links = [
        (1, 2),
        (1, 3),
        (1, 4),
        (2, 4),
        (2, 5),
        (3, 6),
        (4, 6),
        (4, 7),
        (5, 7),
    ];
    let ip = |a: u32| format!("127.0.17.{a}");
    let mut listeners = BTreeMap::new();
    let mut ports = BTreeMap::new();
    for a in 1..=8u32 {
        let (l, p) = listener(&ip(a)).await;
        listeners.insert(a, l);
        ports.insert(a, p);
    }
    let mut cmes = BTreeMap::new();
    let mut raes = Vec::new();
    for a in 1..=7u32 {
        let cme = Cme::start().await;
        let mut peers: Vec<(u32, String, u16)> = links
            .iter()
            .filter_map(|&(x, y)| {
                if x == a {
                    Some(y)
                } else if y == a {
                    Some(x)
                } else {
                    None
                }
            })
            .map(|p| (p, ip(p), ports[&p]))
            .collect();
        if a == 7 {
            peers.push((8, ip(8), ports[&8]));
        }
        let domain = Domain {
            as_number: a,
            ip: ip(a),
            port: ports[&a],
            peers,
            prefixes: vec![format!("127.100.{a}.0/24")],
            cme_port: Some(cme.port),
            hold_time: 3.0,
            minimum_update_interval: 0,
        };
        raes.push(
            brasa_rae_net::start_with_listener(domain.config(), listeners.remove(&a).unwrap())
                .unwrap(),
        );
        cmes.insert(a, cme);
    }
    let injector = listeners.remove(&8).unwrap();
    let (mut as8, _) = injector.accept().await.unwrap();
    let _open = read_message(&mut as8).await;
    send(
        &mut as8,
        &InterRaeMessage::Open(proto::Open {
            as_number: 8,
            hold_time_ms: 0,
        }),
    )
    .await;
    let key = ("127.100.8.0/24".to_string(), 1u32);
    let address = u32::from(std::net::Ipv4Addr::new(127, 100, 8, 0));
    let mut withdraw_times = Vec::new();
    let mut advertise_times = Vec::new();
    for _round in 0..5 {
        let began = Instant::now();
        send(
            &mut as8,
            &InterRaeMessage::Update(proto::Update {
                routes: vec![proto::Route {
                    address,
                    prefix_length: 24,
                    cos_id: 1,
                    paths: vec![proto::PathAttributes {
                        as_path: vec![8],
                        maximum_delay: 0.001,
                        loss_ratio: 1e-6,
                        supported_bandwidth: 10e6,
                    }],
                }],
            }),
        )
        .await;
        while !cmes
            .values()
            .all(|c| c.state.lock().unwrap().paths.contains_key(&key))
        {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        advertise_times.push(began.elapsed());
        // Let path exploration settle before withdrawing.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let began = Instant::now();
        send(
            &mut as8,
            &InterRaeMessage::Withdraw(proto::Withdraw {
                routes: vec![proto::WithdrawnRoute {
                    address,
                    prefix_length: 24,
                    cos_id: 1,
                }],
            }),
        )
        .await;
        while cmes
            .values()
            .any(|c| c.state.lock().unwrap().paths.contains_key(&key))
        {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        withdraw_times.push(began.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    withdraw_times.sort();
    advertise_times.sort();
    println!(
        "7-domain convergence      : advertisement {:.2} ms, withdrawal {:.2} ms (median of 5; all 7 CMEs updated; minimum_update_interval = 0)",
        advertise_times[2].as_secs_f64() * 1e3,
        withdraw_times[2].as_secs_f64() * 1e3
    );
    for rae in raes {
        rae.shutdown();
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(convergence());
}
