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
use std::time::{Duration, Instant};

async fn convergence() {
    let Tiered {
        cmes,
        raes,
        mut as8,
        as8_listener: _as8_listener,
    } = start_tiered("127.0.17").await;
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
    for rae in raes.values() {
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
