//! SM throughput over real gRPC on 127.0.0.1, with a durable store: redb, or PostgreSQL with
//! `BRASA_BENCH_STORE=postgres` (a throw-away local server started for the run, `fsync` and
//! `synchronous_commit` on).
//!
//! `cargo run --release -p brasa-sm-net --example sm_bench -- [LOGINS] [STREAMS] [BATCH]`
//! (defaults 1 000 000, 4, 1000) prints:
//! - logins/s through the Bulk stream, each answered only once durable (group commit, fsync);
//! - the CPU per login over that phase: this process (the SM and its LEG clients) and, on
//!   PostgreSQL, the server's processes, from `/proc`;
//! - the time to push the resulting 1 M-subscriber domain to a connecting EP (reference client
//!   building its own LPM index), from Hello to SyncEnd installed;
//! - the time to read every record back from the store (what a restarted SM loads).
//!
//! The store lives in a temporary directory under `BRASA_BENCH_DIR` (default: the system
//! temporary directory), so the fsyncs hit that file system.

mod common;

use std::time::{Duration, Instant};

use brasa_sm_net::leg::login_op;
use brasa_sm_net::pb;
use brasa_sm_net::{EpClient, EpClientOptions, LegClient, SmServer, SmService};
use brasa_subscriber::{RedbStore, StoreError, SubscriberStore};
use brasa_subscriber_pg::PgStore;
use brasa_testkit::postgres::{PgInstance, PgOptions};

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / 1048576.0
}

/// CPU seconds (user + system) of process `pid`, with its children that have exited.
fn cpu_secs(pid: &str) -> f64 {
    common::stat_cpu_secs(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// CPU seconds of the PostgreSQL instance in `dir`: its postmaster (with its exited backends)
/// and every live child, by pid, so that a backend alive at both readings counts by its
/// difference.
fn pg_cpu(dir: &std::path::Path) -> std::collections::HashMap<String, f64> {
    let pid_file = std::fs::read_to_string(dir.join("data/postmaster.pid")).unwrap_or_default();
    let Some(postmaster) = pid_file.lines().next().map(str::to_owned) else {
        return Default::default();
    };
    let mut cpu = std::collections::HashMap::new();
    cpu.insert(postmaster.clone(), cpu_secs(&postmaster));
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if parent == Some(postmaster.as_str()) {
            cpu.insert(pid.clone(), cpu_secs(&pid));
        }
    }
    cpu
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total = arg(1, 1_000_000);
    let streams = arg(2, 4).max(1);
    let batch = arg(3, 1000).max(1);
    let base = std::env::var_os("BRASA_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base)?;
    let config = common::one_push_ep();
    let postgres = std::env::var("BRASA_BENCH_STORE").is_ok_and(|s| s == "postgres");
    let pg = if postgres {
        Some(PgInstance::start_with(&PgOptions {
            durable: true,
            settings: vec![("shared_buffers".into(), "1GB".into())],
        })?)
    } else {
        None
    };
    let pg_url = pg.as_ref().map(PgInstance::url);
    let open = {
        let dir = dir.path().to_owned();
        move || -> Result<Box<dyn SubscriberStore + Send>, StoreError> {
            Ok(match &pg_url {
                Some(url) => Box::new(PgStore::connect(url)?),
                None => Box::new(RedbStore::open(&dir)?),
            })
        }
    };
    let store = tokio::task::spawn_blocking({
        let open = open.clone();
        move || open()
    })
    .await??;
    let service = SmService::open(config, store)?;
    let server = SmServer::start(service, "127.0.0.1:0".parse()?).await?;
    let url = format!("http://{}", server.local_addr());
    let what = match &pg {
        Some(pg) => format!(
            "PostgreSQL on 127.0.0.1:{} (fsync, synchronous_commit on)",
            pg.port()
        ),
        None => format!("{} (redb, fsync per commit)", dir.path().display()),
    };
    println!("store: {what}; {total} logins, {streams} Bulk streams, {batch} logins per batch");

    let started = Instant::now();
    let cpu_before = (cpu_secs("self"), pg.as_ref().map(|pg| pg_cpu(pg.path())));
    let per_stream = total.div_ceil(streams);
    let mut tasks = Vec::new();
    for s in 0..streams {
        let url = url.clone();
        let from = s * per_stream;
        let to = ((s + 1) * per_stream).min(total);
        tasks.push(tokio::spawn(async move {
            let mut leg = LegClient::connect(&url).await.expect("LEG connects");
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            let mut replies = leg
                .grpc()
                .bulk(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .expect("bulk stream")
                .into_inner();
            let producer = tokio::spawn(async move {
                let mut i = from;
                let mut tag = 0;
                while i < to {
                    let end = (i + batch).min(to);
                    let ops = (i..end)
                        .map(|n| {
                            let ip = std::net::Ipv4Addr::from(0x0a00_0000u32 + n as u32);
                            login_op(&format!("sub{n:08}"), &[&ip.to_string()], None)
                        })
                        .collect();
                    if tx.send(pb::BulkRequest { ops, tag }).await.is_err() {
                        break;
                    }
                    tag += 1;
                    i = end;
                }
            });
            let mut ok = 0usize;
            let mut failed = 0usize;
            while let Some(reply) = replies.message().await.expect("bulk reply") {
                for r in reply.results {
                    if r.code == 0 {
                        ok += 1;
                    } else {
                        failed += 1;
                    }
                }
                if ok + failed >= to - from {
                    break;
                }
            }
            let _ = producer.await;
            (ok, failed)
        }));
    }
    let mut ok = 0;
    let mut failed = 0;
    for t in tasks {
        let (o, f) = t.await?;
        ok += o;
        failed += f;
    }
    let elapsed = started.elapsed();
    let stats = server.service().stats();
    println!(
        "logins: {ok} durable ({failed} refused) in {:.2} s = {:.0} logins/s; {} commits, {:.0} logins/commit, {:.2} ms/commit",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        stats.commits,
        stats.committed_changes as f64 / stats.commits.max(1) as f64,
        stats.commit_micros as f64 / 1000.0 / stats.commits.max(1) as f64,
    );
    let bench_cpu = cpu_secs("self") - cpu_before.0;
    let db_cpu = match (&pg, &cpu_before.1) {
        (Some(pg), Some(before)) => pg_cpu(pg.path())
            .iter()
            .map(|(pid, now)| now - before.get(pid).copied().unwrap_or(0.0))
            .sum(),
        _ => 0.0,
    };
    let per_login = |secs: f64| secs * 1e6 / ok.max(1) as f64;
    println!(
        "CPU per durable login: {:.1} us in this process (the SM and its LEG clients), {:.1} us in PostgreSQL",
        per_login(bench_cpu),
        per_login(db_cpu),
    );
    println!("process RSS after logins: {:.0} MiB", rss_mib());

    let started = Instant::now();
    let mut options = EpClientOptions::new(&url, "bench");
    options.data_events = false;
    let mut ep = EpClient::connect(options).await?;
    let held = tokio::time::timeout(Duration::from_secs(600), ep.wait_synced()).await??;
    let elapsed = started.elapsed();
    println!(
        "push: {held} subscribers synced to a connecting EP in {:.2} s = {:.0} subscribers/s",
        elapsed.as_secs_f64(),
        held as f64 / elapsed.as_secs_f64()
    );
    drop(ep);
    server.shutdown().await;

    let (records, elapsed) = tokio::task::spawn_blocking(move || {
        let mut store = open()?;
        let started = Instant::now();
        let snapshot = store.load()?;
        Ok::<_, StoreError>((snapshot.subscribers.len(), started.elapsed()))
    })
    .await??;
    println!(
        "load: {records} subscribers read back from the store in {:.2} s",
        elapsed.as_secs_f64()
    );
    Ok(())
}
