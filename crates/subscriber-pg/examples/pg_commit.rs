//! Where a group commit of logins spends its time on PostgreSQL.
//!
//! `cargo run --release -p brasa-subscriber-pg --example pg_commit -- [LOGINS] [PER_COMMIT]`
//! (defaults 1 000 000, 50 000) starts a throw-away PostgreSQL (`fsync` and
//! `synchronous_commit` on, `shared_buffers = 1GB`, every statement over 50 ms logged), commits
//! LOGINS new logins in group commits of PER_COMMIT, and prints the rate, the share of the
//! client-side encoding (`for_each_write`, what every backend does) and the server's own time
//! per statement kind (from its log).

use std::time::{Duration, Instant};

use brasa_subscriber::store::for_each_write;
use brasa_subscriber::{
    ChangeSet, IndexConfig, Login, NameCase, RouteFormat, SubscriberIndex, SubscriberStore,
    DEFAULT_DOMAIN,
};
use brasa_subscriber_pg::PgStore;
use brasa_testkit::postgres::{PgInstance, PgOptions};

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total = arg(1, 1_000_000);
    let per_commit = arg(2, 50_000).max(1);
    let pg = PgInstance::start_with(&PgOptions {
        durable: true,
        settings: vec![
            ("shared_buffers".into(), "1GB".into()),
            ("log_min_duration_statement".into(), "50".into()),
        ],
    })?;
    let mut store = PgStore::connect(&pg.url())?;
    let mut index = SubscriberIndex::new(IndexConfig {
        domains: vec![DEFAULT_DOMAIN.into()],
        name_case: NameCase::Sensitive,
    })?;
    let (mut encoding, mut committing) = (Duration::ZERO, Duration::ZERO);
    let mut done = 0;
    while done < total {
        let sets: Vec<ChangeSet> = (done..(done + per_commit).min(total))
            .map(|n| {
                let ip = std::net::Ipv4Addr::from(0x0a00_0000u32.wrapping_add(n as u32));
                index
                    .login(Login {
                        name: format!("sub{n:08}"),
                        mappings: vec![ip.to_string().parse().expect("an address")],
                        ..Login::default()
                    })
                    .expect("a valid login")
            })
            .collect();
        let started = Instant::now();
        let mut bytes = 0;
        for_each_write(&sets, RouteFormat::Json, |w| {
            if let brasa_subscriber::StoredWrite::Subscriber { value, .. } = w {
                bytes += value.map_or(0, <[u8]>::len);
            }
            Ok(())
        })?;
        std::hint::black_box(bytes);
        encoding += started.elapsed();
        let started = Instant::now();
        store.apply_batch(&sets)?;
        committing += started.elapsed();
        done += sets.len();
    }
    println!(
        "{total} logins in commits of {per_commit}: {:.0} logins/s ({:.1} ms/commit); \
         encoding alone {:.2} s of {:.2} s",
        total as f64 / committing.as_secs_f64(),
        committing.as_secs_f64() * 1e3 / total.div_ceil(per_commit) as f64,
        encoding.as_secs_f64(),
        committing.as_secs_f64()
    );
    let log = std::fs::read_to_string(pg.path().join("server.log"))?;
    let mut by_kind: Vec<(String, f64, usize)> = Vec::new();
    for line in log.lines() {
        let Some(rest) = line.split("duration: ").nth(1) else {
            continue;
        };
        let Some((ms, statement)) = rest.split_once(" ms") else {
            continue;
        };
        let Ok(ms) = ms.trim().parse::<f64>() else {
            continue;
        };
        let kind: String = statement
            .split_once(": ")
            .map_or(statement, |(_, s)| s)
            .split_whitespace()
            .take(4)
            .collect::<Vec<_>>()
            .join(" ");
        match by_kind.iter_mut().find(|(k, _, _)| *k == kind) {
            Some(entry) => {
                entry.1 += ms;
                entry.2 += 1;
            }
            None => by_kind.push((kind, ms, 1)),
        }
    }
    for (kind, ms, n) in by_kind {
        println!("server: {n:>4} x {kind:<40} {:>8.2} s", ms / 1e3);
    }
    Ok(())
}
