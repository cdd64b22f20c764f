//! RAE benchmark (prints its figures; run with
//! `cargo bench -p brasa-comet --bench rae_decision`):
//!
//! 1. paths per second through decision: one RAE receives N prefixes × 2 classes (default
//!    N = 1 000 000, `RAE_BENCH_PREFIXES` to change) from one peer in Update messages of 2048
//!    routes; only `Rae::handle_update` (path construction, loop check, decision, queueing) is
//!    timed, then the batch export to a second peer is timed separately;
//! 2. bytes per path: live heap growth of the RIB measured by a counting global allocator,
//!    divided by the number of paths;
//! 3. convergence of the 7-domain tiered topology after a withdrawal: from the Withdraw sent by
//!    a scripted AS 8 until all seven CMEs have dropped the prefix (median of 5 rounds).

#[path = "../tests/rae_support/mod.rs"]
mod rae_support;

use brasa_comet::rae::config::RaeConfig;
use brasa_comet::rae::daemon;
use brasa_comet::rae::engine::{Output, Rae};
use brasa_comet::rae::proto;
use brasa_comet::rae::wire::InterRaeMessage;
use rae_support::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn decision_config() -> RaeConfig {
    let domain = Domain {
        as_number: 10,
        ip: "127.0.0.10".into(),
        port: 10001,
        peers: vec![
            (20, "127.0.0.20".into(), 10001),
            (30, "127.0.0.30".into(), 10001),
        ],
        prefixes: vec![],
        cme_port: None,
        hold_time: 0.0,
        minimum_update_interval: 0,
    };
    domain.config()
}

fn batch(start: u32, count: u32) -> proto::Update {
    let base = u32::from(std::net::Ipv4Addr::new(11, 0, 0, 0));
    let mut routes = Vec::with_capacity(count as usize * 2);
    for i in start..start + count {
        for cos in [1, 2] {
            routes.push(proto::Route {
                address: base + (i << 8),
                prefix_length: 24,
                cos_id: cos,
                paths: vec![proto::PathAttributes {
                    // ~37 000 distinct AS paths, as in a mid-size table.
                    as_path: vec![20, 100 + (i % 1000), 50_000 + (i % 37)],
                    maximum_delay: 0.001 + f64::from(i % 100) * 1e-4,
                    loss_ratio: 1e-6,
                    supported_bandwidth: 10e6,
                }],
            });
        }
    }
    proto::Update { routes }
}

fn decision_and_memory(prefixes: u32) {
    let t0 = Instant::now();
    let before = LIVE.load(Ordering::Relaxed);
    let mut rae = Rae::new(decision_config(), t0);
    rae.peer_up(1, t0);
    let mut in_decision = Duration::ZERO;
    let per_message = 1024; // 2048 routes
    let mut start = 0;
    while start < prefixes {
        let count = per_message.min(prefixes - start);
        let update = batch(start, count);
        let began = Instant::now();
        rae.handle_update(0, update, t0);
        in_decision += began.elapsed();
        start += count;
    }
    let paths = rae.rib().path_count();
    let after = LIVE.load(Ordering::Relaxed);
    let began = Instant::now();
    rae.handle_timeout(t0);
    let mut exported = 0usize;
    while let Some(output) = rae.poll_transmit() {
        if let Output::Peer {
            message: InterRaeMessage::Update(update),
            ..
        } = output
        {
            exported += update.routes.len();
        }
    }
    let export = began.elapsed();
    println!("prefixes x classes        : {prefixes} x 2 = {paths} paths from one peer");
    println!(
        "decision (handle_update)  : {:.3} s, {:.2} M paths/s",
        in_decision.as_secs_f64(),
        paths as f64 / in_decision.as_secs_f64() / 1e6
    );
    println!(
        "export batch to a peer    : {:.3} s for {exported} routes, {:.2} M routes/s",
        export.as_secs_f64(),
        exported as f64 / export.as_secs_f64() / 1e6
    );
    println!(
        "RIB memory                : {:.1} MiB live, {:.1} bytes per path ({} distinct AS paths)",
        (after - before) as f64 / 1048576.0,
        (after - before) as f64 / paths as f64,
        rae.rib().as_path_count()
    );
}

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
            daemon::start_with_listener(domain.config(), listeners.remove(&a).unwrap()).unwrap(),
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
    let prefixes: u32 = std::env::var("RAE_BENCH_PREFIXES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    decision_and_memory(prefixes);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(convergence());
}
