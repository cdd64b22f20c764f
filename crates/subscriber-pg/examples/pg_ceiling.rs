//! PostgreSQL's own rate for a group commit's rows, without brasa: the measured ceiling that
//! `pg_commit` and `sm_bench` on PostgreSQL are read against.
//!
//! `cargo run --release -p brasa-subscriber-pg --example pg_ceiling -- [ROWS] [PER_COMMIT]`
//! (defaults 1 000 000, 50 000) starts a throw-away PostgreSQL (`fsync` and
//! `synchronous_commit` on, `shared_buffers = 1GB`, as `pg_commit`), has the server write
//! ROWS subscriber records as brasa encodes a login into files of PER_COMMIT rows, then for each
//! way of storing them loads every file with a server-side `COPY` in a transaction of its own
//! and prints rows/s. No client encodes or sends anything: what is left is the server's work.

use std::time::Instant;

use brasa_testkit::postgres::{PgInstance, PgOptions};
use postgres::{Client, NoTls};

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// A record as brasa stores a login (`name`, `domain`, one mapping, no properties).
const RECORD: &str = "'{\"name\":\"sub'||lpad(n::text,8,'0')||'\",\"domain\":\"default\",\
     \"mappings\":[\"'||host('10.0.0.0'::inet + n)||'\"],\"properties\":[],\"state\":[],\
     \"logged_in\":true,\"auto_logout\":null}'";

struct Case {
    what: &'static str,
    /// Creates table `t` (and fills it, for replacing logins).
    setup: &'static str,
    /// One commit's statements; `FILE` is the file of its rows.
    commit: &'static str,
}

const CASES: &[Case] = &[
    Case {
        what: "COPY into the table, jsonb",
        setup: "CREATE TABLE t (name text PRIMARY KEY, data jsonb NOT NULL)",
        commit: "COPY t FROM 'FILE'",
    },
    Case {
        what: "COPY into the table, json",
        setup: "CREATE TABLE t (name text PRIMARY KEY, data json NOT NULL)",
        commit: "COPY t FROM 'FILE'",
    },
    Case {
        what: "COPY into the table, text",
        setup: "CREATE TABLE t (name text PRIMARY KEY, data text NOT NULL)",
        commit: "COPY t FROM 'FILE'",
    },
    Case {
        what: "COPY into a temporary table + INSERT ON CONFLICT, jsonb",
        setup: "CREATE TABLE t (name text PRIMARY KEY, data jsonb NOT NULL)",
        commit: "CREATE TEMPORARY TABLE s (LIKE t) ON COMMIT DROP; COPY s FROM 'FILE'; \
                 INSERT INTO t SELECT * FROM s ON CONFLICT (name) DO UPDATE SET data = EXCLUDED.data",
    },
    Case {
        what: "COPY into a temporary table + INSERT ON CONFLICT, json",
        setup: "CREATE TABLE t (name text PRIMARY KEY, data json NOT NULL)",
        commit: "CREATE TEMPORARY TABLE s (LIKE t) ON COMMIT DROP; COPY s FROM 'FILE'; \
                 INSERT INTO t SELECT * FROM s ON CONFLICT (name) DO UPDATE SET data = EXCLUDED.data",
    },
    Case {
        what: "the same, every name stored already (known subscribers), json",
        setup: "CREATE TABLE t (name text PRIMARY KEY, data json NOT NULL); COPY t FROM 'ALL'",
        commit: "CREATE TEMPORARY TABLE s (LIKE t) ON COMMIT DROP; COPY s FROM 'FILE'; \
                 INSERT INTO t SELECT * FROM s ON CONFLICT (name) DO UPDATE SET data = EXCLUDED.data",
    },
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows = arg(1, 1_000_000).max(1);
    let per_commit = arg(2, 50_000).max(1);
    let pg = PgInstance::start_with(&PgOptions {
        durable: true,
        settings: vec![("shared_buffers".into(), "1GB".into())],
    })?;
    let mut client: Client = pg.url().parse::<postgres::Config>()?.connect(NoTls)?;
    // The server writes the files into its own directory (it reads them back as itself).
    let dir = pg.path().display().to_string();
    let all = format!("{dir}/rows.all");
    client.batch_execute(&format!(
        "COPY (SELECT 'sub'||lpad(n::text,8,'0'), {RECORD} FROM generate_series(0, {}) n) TO '{all}'",
        rows - 1
    ))?;
    let mut files = Vec::new();
    for (i, from) in (0..rows).step_by(per_commit).enumerate() {
        let file = format!("{dir}/rows.{i}");
        let to = (from + per_commit).min(rows) - 1;
        client.batch_execute(&format!(
            "COPY (SELECT 'sub'||lpad(n::text,8,'0'), {RECORD} FROM generate_series({from}, {to}) n) \
             TO '{file}'"
        ))?;
        files.push(file);
    }
    println!(
        "PostgreSQL alone: {rows} login records, {per_commit} per transaction, server-side COPY \
         (fsync, synchronous_commit on)"
    );
    for case in CASES {
        client.batch_execute("DROP TABLE IF EXISTS t")?;
        client.batch_execute(&case.setup.replace("ALL", &all))?;
        client.batch_execute("CHECKPOINT")?;
        let started = Instant::now();
        for file in &files {
            client.batch_execute(&format!(
                "BEGIN; {}; COMMIT",
                case.commit.replace("FILE", file)
            ))?;
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!("  {:<64} {:>8.0} rows/s", case.what, rows as f64 / elapsed);
    }
    Ok(())
}
