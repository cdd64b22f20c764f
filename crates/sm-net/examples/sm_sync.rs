//! The full sync of a large push domain from an SM that just became active to a connecting
//! EP, without a database in the way: the part of a fail-over that comes after the take-over.
//!
//! `cargo run --release -p brasa-sm-net --example sm_sync -- [SUBSCRIBERS] [ROUNDS]`
//! (defaults 1 000 000, 1) builds an index of SUBSCRIBERS logins (one IPv4 address and one
//! property each, as `sm_bench` and `sm_takeover` log them in), activates a standby service
//! over it (`SmService::activate`, as a node that took the lease), then ROUNDS times connects
//! a reference EP over gRPC on 127.0.0.1 and prints the time from its Hello to `SyncEnd`
//! installed in its own index. The store (redb in a temporary directory) is never read and
//! writes nothing during the sync.

mod common;

use std::time::{Duration, Instant};

use brasa_sm_net::{EpClient, EpClientOptions, SmServer, SmService};
use brasa_subscriber::{IndexConfig, Login, RedbStore, SubscriberIndex};

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total = arg(1, 1_000_000);
    let rounds = arg(2, 1).max(1);
    let config = common::one_push_ep();
    let started = Instant::now();
    let mut index = SubscriberIndex::new(IndexConfig::default())?;
    index.reserve(total);
    for n in 0..total {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000u32.wrapping_add(n as u32));
        index.login(Login {
            name: format!("sub{n:08}"),
            mappings: vec![ip.to_string().parse()?],
            properties: vec![("generation".into(), "0".into())],
            ..Login::default()
        })?;
    }
    println!(
        "index of {total} subscribers built in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir()?;
    let store = RedbStore::open(dir.path())?;
    let service = SmService::open_standby(config, Box::new(store), "starting".into())?;
    service.activate(index)?;
    let server = SmServer::start(service, "127.0.0.1:0".parse()?).await?;
    for round in 1..=rounds {
        let started = Instant::now();
        let mut options = EpClientOptions::new(format!("http://{}", server.local_addr()), "bench");
        options.data_events = false;
        let mut ep = EpClient::connect(options).await?;
        let held = tokio::time::timeout(Duration::from_secs(600), ep.wait_synced()).await??;
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "round {round}: full sync of {held} subscribers to a connecting EP in {elapsed:.2} s \
             = {:.0} subscribers/s",
            held as f64 / elapsed
        );
        drop(ep);
    }
    server.shutdown().await;
    Ok(())
}
