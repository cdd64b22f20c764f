//! A standby Subscriber Manager taking over a large domain on PostgreSQL: what a fail-over
//! costs beyond the lease, with a ready index and without one, and the full sync of the domain
//! from the new active to an EP.
//!
//! `cargo run --release -p brasa-sm-net --example sm_takeover -- [SUBSCRIBERS] [TAIL_COMMITS] [TAIL_BATCH]`
//! (defaults 1 000 000, 100, 1000) starts a throw-away PostgreSQL (`fsync` and
//! `synchronous_commit` on, `shared_buffers = 1GB`), imports SUBSCRIBERS logins, and prints:
//! - the standby's start: its follower reads every record and indexes them (once, long before
//!   any fail-over), and the memory its index takes (the process's resident set before and
//!   after);
//! - the take-over: TAIL_COMMITS commits of TAIL_BATCH logins each are made after the
//!   follower's last catch-up (what the active committed just before it died); the promotion
//!   reads that tail of the change log and applies it to the index, which the service then
//!   serves from;
//! - for comparison, the cold take-over: every record read (`PgStore::load`) and indexed, which
//!   is also what the take-over cost before the standby kept its index (records kept, indexed
//!   at the promotion);
//! - the full sync of the domain from the new active to a connecting reference EP (Hello to
//!   `SyncEnd` installed in its own index).

mod common;

use std::time::{Duration, Instant};

use brasa_sm_net::{EpClient, EpClientOptions, SmServer, SmService};
use brasa_subscriber::{
    ChangeSet, IndexConfig, Login, NameCase, SubscriberIndex, SubscriberStore, DEFAULT_DOMAIN,
};
use brasa_subscriber_pg::change_log::Follower;
use brasa_subscriber_pg::PgStore;
use brasa_testkit::postgres::{PgInstance, PgOptions};

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn login(index: &mut SubscriberIndex, n: usize, generation: u32) -> ChangeSet {
    let ip = std::net::Ipv4Addr::from(0x0a00_0000u32.wrapping_add(n as u32));
    index
        .login(Login {
            name: format!("sub{n:08}"),
            mappings: vec![ip.to_string().parse().expect("an address")],
            properties: vec![("generation".into(), generation.to_string())],
            ..Login::default()
        })
        .expect("a valid login")
}

fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

/// The process's resident set (`VmRSS`), in bytes; 0 where `/proc` does not say.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total = arg(1, 1_000_000);
    let tail_commits = arg(2, 100);
    let tail_batch = arg(3, 1000).max(1);
    let pg = PgInstance::start_with(&PgOptions {
        durable: true,
        settings: vec![("shared_buffers".into(), "1GB".into())],
    })?;
    let url = pg.url();
    println!(
        "PostgreSQL on 127.0.0.1:{} (fsync, synchronous_commit on); {total} subscribers, \
         tail of {tail_commits} commits x {tail_batch} logins",
        pg.port()
    );

    // The active's index and store.
    let mut index = SubscriberIndex::new(IndexConfig {
        domains: vec![DEFAULT_DOMAIN.into()],
        name_case: NameCase::Sensitive,
    })?;
    let mut writer = PgStore::connect(&url)?;
    let started = Instant::now();
    for chunk in (0..total).collect::<Vec<_>>().chunks(100_000) {
        let sets: Vec<ChangeSet> = chunk.iter().map(|&n| login(&mut index, n, 0)).collect();
        writer.apply_batch(&sets)?;
    }
    println!("import: {total} logins committed in {:.2} s", secs(started));

    let config = IndexConfig {
        domains: vec![DEFAULT_DOMAIN.into()],
        name_case: NameCase::Sensitive,
    };
    let mut follower = Follower::new(&url, config.clone());
    let rss_before = resident_bytes();
    let started = Instant::now();
    follower.catch_up()?;
    let rss_after = resident_bytes();
    println!(
        "standby start: every record read and indexed in {:.2} s; resident set {:.0} MB -> \
         {:.0} MB ({:.0} B per subscriber)",
        secs(started),
        rss_before as f64 / 1e6,
        rss_after as f64 / 1e6,
        rss_after.saturating_sub(rss_before) as f64 / total.max(1) as f64
    );

    // What the active commits after the replica's last catch-up, then it dies.
    for c in 0..tail_commits {
        let sets: Vec<ChangeSet> = (0..tail_batch)
            .map(|i| login(&mut index, (c * tail_batch + i) % total.max(1), 1))
            .collect();
        writer.apply_batch(&sets)?;
    }
    drop(index);

    let started = Instant::now();
    let promotion = follower.promote()?;
    let tail_read = secs(started);
    assert!(promotion.reload.is_none(), "the standby was warm");
    let records = promotion.index.len();

    let started = Instant::now();
    let cold = PgStore::connect(&url)?.load()?;
    let cold_read = secs(started);
    let started = Instant::now();
    let cold_index = cold.into_index(config)?;
    let cold_rebuild = secs(started);
    drop(cold_index);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let config = common::one_push_ep();
        let store = tokio::task::spawn_blocking(move || PgStore::connect(&url)).await??;
        let service = SmService::open_standby(config, Box::new(store), "standby".into())?;
        let started = Instant::now();
        service.activate(promotion.index)?;
        let serve = secs(started);
        println!(
            "take-over (warm): tail of {} entries read and applied to the index of {records} \
             subscribers in {:.3} s + serving from it in {:.3} s = {:.3} s",
            promotion.tail_batches,
            tail_read,
            serve,
            tail_read + serve
        );
        println!(
            "take-over (cold, for comparison): every record read in {cold_read:.2} s + index \
             built (records in table order) in {cold_rebuild:.2} s = {:.2} s",
            cold_read + cold_rebuild
        );

        let server = SmServer::start(service, "127.0.0.1:0".parse()?).await?;
        let started = Instant::now();
        let mut options = EpClientOptions::new(format!("http://{}", server.local_addr()), "bench");
        options.data_events = false;
        let mut ep = EpClient::connect(options).await?;
        let held = tokio::time::timeout(Duration::from_secs(600), ep.wait_synced()).await??;
        let elapsed = secs(started);
        println!(
            "full sync from the new active: {held} subscribers to a connecting EP in {elapsed:.2} s \
             = {:.0} subscribers/s",
            held as f64 / elapsed
        );
        drop(ep);
        server.shutdown().await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}
