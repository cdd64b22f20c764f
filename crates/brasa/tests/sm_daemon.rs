//! The subscriber manager inside a real `brasa run`: kill -9 and restart, RADIUS accounting
//! login events, the `brasa sm` commands, config errors; every daemon test once on the embedded
//! store and once on a throw-away PostgreSQL.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use brasa_sm_net::leg::login_op;
use brasa_sm_net::{pb, LegClient};
use brasa_testkit::postgres::PgInstance;
use support::*;

/// Where the test daemons keep their records.
enum Backend {
    /// The embedded redb store in the data directory.
    Redb,
    /// A PostgreSQL instance of the test's own (each daemon a database of its own).
    Postgres(PgInstance),
}

impl Backend {
    fn postgres() -> Backend {
        Backend::Postgres(PgInstance::start().unwrap())
    }

    /// The `[subscriber_manager.store]` section of a daemon using database `db`.
    fn section(&self, db: &str) -> String {
        match self {
            Backend::Redb => String::new(),
            Backend::Postgres(pg) => {
                let exists = pg
                    .psql(
                        "postgres",
                        &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'"),
                    )
                    .unwrap();
                let url = if exists == "1" {
                    pg.url_for(db)
                } else {
                    pg.create_database(db).unwrap()
                };
                format!("\n[subscriber_manager.store]\nkind = \"postgres\"\nurl = \"{url}\"\n")
            }
        }
    }
}

/// Runs each named test body (`fn name(backend: &Backend)`) once per backend.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod on_redb {
            $(#[test]
            fn $name() {
                super::$name(&super::Backend::Redb)
            })*
        }
        mod on_postgres {
            $(#[test]
            fn $name() {
                super::$name(&super::Backend::postgres())
            })*
        }
    };
}

on_both_stores!(
    serial_sm_kill_9_and_restart_lose_no_acknowledged_change,
    serial_sm_radius_accounting_start_and_stop_log_subscribers_in_and_out,
    serial_sm_operator_commands_import_export_lookup_login_eps_and_ep_watch,
    serial_sm_export_imports_into_a_fresh_daemon_with_the_same_properties,
);

struct Ports {
    api: SocketAddr,
    grpc: SocketAddr,
    acct: u16,
    auth: u16,
}

fn ports() -> Ports {
    Ports {
        api: format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"))
            .parse()
            .unwrap(),
        grpc: format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"))
            .parse()
            .unwrap(),
        acct: free_udp_port("127.0.0.1"),
        auth: free_udp_port("127.0.0.1"),
    }
}

fn config(p: &Ports, radius: bool, store: &str) -> String {
    let mut text = format!(
        r#"data_dir = "data"

[api]
listen = "{api}"

[subscriber_manager]
listen = "{grpc}"
domains = ["subscribers", "north"]
keepalive_interval = "1s"

[[subscriber_manager.ep]]
id = "sce1"
failure_action = "clear-mappings"

[[subscriber_manager.ep]]
id = "pull1"
mode = "pull"
"#,
        api = p.api,
        grpc = p.grpc
    );
    if radius {
        text.push_str(&format!(
            r#"
[subscriber_manager.radius]
servers = ["aaa"]
properties = ["Filter-Id=package"]

[radius]

[[radius.client]]
name = "bng"
address = "127.0.0.1"
secret = "testing123"

[[radius.server]]
name = "aaa"
auth_listen = "127.0.0.1:{auth}"
acct_listen = "127.0.0.1:{acct}"
local = "users"

[[radius.local]]
name = "users"
"#,
            auth = p.auth,
            acct = p.acct
        ));
    }
    text.push_str(store);
    text
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn serial_sm_kill_9_and_restart_lose_no_acknowledged_change(backend: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let p = ports();
    let mut daemon = start_brasa(
        dir.path(),
        &config(&p, false, &backend.section("sm")),
        p.api,
    );
    let url = format!("http://{}", p.grpc);
    let rt = runtime();
    let acknowledged: Vec<String> = rt.block_on(async {
        let mut leg = LegClient::connect(&url).await.unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let mut replies = leg
            .grpc()
            .bulk(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        // Keep logins flowing while the daemon is killed.
        let producer = tokio::spawn(async move {
            for batch in 0u64.. {
                let ops = (0..200)
                    .map(|i| {
                        let n = batch * 200 + i;
                        let ip = format!("10.{}.{}.{}", n >> 16 & 255, n >> 8 & 255, n & 255);
                        login_op(&format!("sub{n}"), &[&ip], None)
                    })
                    .collect();
                if tx.send(pb::BulkRequest { ops, tag: batch }).await.is_err() {
                    return;
                }
            }
        });
        let mut acked = Vec::new();
        let mut replies_seen = 0;
        // Until the stream breaks: the daemon is killed after 20 replies.
        while let Ok(Some(reply)) = replies.message().await {
            for (i, r) in reply.results.iter().enumerate() {
                assert_eq!(r.code, 0, "{}", r.message);
                acked.push(format!("sub{}", reply.tag * 200 + i as u64));
            }
            replies_seen += 1;
            if replies_seen == 20 {
                daemon.child.kill().unwrap(); // SIGKILL
            }
        }
        producer.abort();
        acked
    });
    let _ = daemon.child.wait();
    assert!(acknowledged.len() >= 20 * 200);

    let daemon = start_brasa(
        dir.path(),
        &config(&p, false, &backend.section("sm")),
        p.api,
    );
    let export = ok(&brasa(p.api, &["sm", "export"]));
    let stored: std::collections::HashMap<&str, &str> = export
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[4] == "true").then(|| (f[0], f[2]))
        })
        .collect();
    let missing: Vec<String> = acknowledged
        .iter()
        .filter(|name| {
            let n: u64 = name[3..].parse().unwrap();
            let ip = format!("10.{}.{}.{}", n >> 16 & 255, n >> 8 & 255, n & 255);
            stored.get(name.as_str()) != Some(&ip.as_str())
        })
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged logins lost after kill -9: {:?}\n{}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(10)],
        daemon.log_text()
    );
}

/// Sends one accounting request with `brasa radius send` (the radclient-style text on stdin).
fn acct(p: &Ports, dir: &Path, body: &str) {
    let input = dir.join("acct.txt");
    std::fs::write(&input, body).unwrap();
    let out = Command::new(BRASA)
        .args([
            "radius",
            "send",
            &format!("127.0.0.1:{}", p.acct),
            "acct",
            "testing123",
        ])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Accounting-Response"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn subscriber(api: SocketAddr, name: &str) -> Option<serde_json::Value> {
    let out = brasa(api, &["--json", "sm", "show", "subscriber", name]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn serial_sm_radius_accounting_start_and_stop_log_subscribers_in_and_out(backend: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let p = ports();
    let daemon = start_brasa(dir.path(), &config(&p, true, &backend.section("sm")), p.api);
    acct(
        &p,
        dir.path(),
        "User-Name = bob, Acct-Status-Type = Start, Acct-Session-Id = \"s1\", \
         Framed-IP-Address = 10.7.0.8, Delegated-IPv6-Prefix = 2001:db8:7::/48, Filter-Id = \"gold\"\n",
    );
    eventually("bob logged in", Duration::from_secs(10), || {
        subscriber(p.api, "bob").is_some_and(|s| s["logged_in"] == true)
    });
    let bob = subscriber(p.api, "bob").unwrap();
    assert_eq!(
        bob["mappings"],
        serde_json::json!(["10.7.0.8", "2001:db8:7::/48"])
    );
    assert_eq!(bob["properties"], serde_json::json!([["package", "gold"]]));
    let found = ok(&brasa(
        p.api,
        &["--json", "sm", "lookup", "2001:db8:7:1::1"],
    ));
    let found: serde_json::Value = serde_json::from_str(&found).unwrap();
    assert_eq!(found["subscriber"]["name"], "bob");

    // An Interim-Update with a new address replaces the mapping; Stop logs out.
    acct(
        &p,
        dir.path(),
        "User-Name = bob, Acct-Status-Type = Interim-Update, Acct-Session-Id = \"s1\", Framed-IP-Address = 10.7.0.9\n",
    );
    eventually("bob moved", Duration::from_secs(10), || {
        subscriber(p.api, "bob").is_some_and(|s| s["mappings"] == serde_json::json!(["10.7.0.9"]))
    });
    acct(
        &p,
        dir.path(),
        "User-Name = bob, Acct-Status-Type = Stop, Acct-Session-Id = \"s1\"\n",
    );
    eventually("bob logged out", Duration::from_secs(10), || {
        subscriber(p.api, "bob").is_some_and(|s| s["logged_in"] == false)
    });
    assert_eq!(
        subscriber(p.api, "bob").unwrap()["mappings"],
        serde_json::json!([])
    );
    // The observer counts an event once its change is committed, which may be just after the
    // change shows.
    let counts = || -> serde_json::Value {
        serde_json::from_str(&ok(&brasa(p.api, &["--json", "sm", "show", "counts"]))).unwrap()
    };
    eventually(
        "three RADIUS events applied",
        Duration::from_secs(10),
        || counts()["radius_events"]["applied"] == 3,
    );
    let counts = counts();
    assert_eq!(counts["radius_events"]["applied"], 3, "{counts}");
    assert_eq!(counts["radius_events"]["dropped"], 0);
    let metrics = http_get(p.api, "/metrics");
    assert!(
        metrics.contains("brasa_sm_radius_events_total{outcome=\"applied\"} 3"),
        "{metrics}"
    );
    drop(daemon);
}

fn serial_sm_operator_commands_import_export_lookup_login_eps_and_ep_watch(backend: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let p = ports();
    let _daemon = start_brasa(
        dir.path(),
        &config(&p, false, &backend.section("sm")),
        p.api,
    );
    let csv = dir.path().join("subs.csv");
    std::fs::write(
        &csv,
        "name,domain,mappings,properties\n\
         alice,subscribers,10.0.0.1;10.1.0.0/16,package=gold\n\
         carol,north,10.2.0.1,\n\
         dave,nowhere,10.0.0.10,\n\
         erin,subscribers,10.0.0.1,\n\
         \"fr,ank\",subscribers,10.0.0.300,\n",
    )
    .unwrap();
    let csv_arg = csv.to_str().unwrap();
    // All or nothing: refused with every bad line named, nothing imported.
    let refused = brasa(p.api, &["sm", "import", csv_arg]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("3 invalid rows, nothing imported"), "{err}");
    assert!(
        err.contains("line 4: domain \"nowhere\" is not configured"),
        "{err}"
    );
    assert!(
        err.contains("line 5: mapping 10.0.0.1 is also given on line 2"),
        "{err}"
    );
    assert!(err.contains("line 6: mapping \"10.0.0.300\""), "{err}");
    assert!(subscriber(p.api, "alice").is_none());
    // Skip invalid rows.
    let out = ok(&brasa(
        p.api,
        &["--json", "sm", "import", csv_arg, "--skip-invalid"],
    ));
    let view: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(view["imported"], 2);
    assert_eq!(view["skipped"].as_array().unwrap().len(), 3);

    let text = ok(&brasa(p.api, &["sm", "lookup", "10.1.200.7"]));
    assert!(text.contains("Name:        alice"), "{text}");
    let text = ok(&brasa(
        p.api,
        &["sm", "login", "frank", "-m", "10.0.0.1", "-p", "tier=x"],
    ));
    assert!(
        text.contains("alice: logged out"),
        "the mapping moved: {text}"
    );
    assert!(text.contains("frank: logged in"), "{text}");
    let bad = brasa(p.api, &["sm", "login", "bad'name", "-m", "10.0.0.5"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid subscriber name"));
    let export = ok(&brasa(p.api, &["sm", "export"]));
    assert_eq!(
        export,
        "name,domain,mappings,properties,logged_in,auto_logout,state,services\n\
         alice,subscribers,10.1.0.0/16,package=gold,false,,,\n\
         carol,north,10.2.0.1,,false,,,\n\
         frank,subscribers,10.0.0.1,tier=x,true,,,\n"
    );

    // An EP watcher sees the domain, then later changes.
    let grpc = format!("http://{}", p.grpc);
    let watch = ok(&brasa(
        p.api,
        &[
            "sm",
            "ep-watch",
            "--grpc",
            &grpc,
            "--id",
            "sce1",
            "--until-synced",
        ],
    ));
    assert!(watch.contains("sync-begin subscribers=2"), "{watch}");
    assert!(
        watch.contains("upsert alice domain=subscribers mappings=10.1.0.0/16"),
        "{watch}"
    );
    assert!(watch.contains("held 2 subscribers"), "{watch}");
    let pulled = ok(&brasa(
        p.api,
        &[
            "--json",
            "sm",
            "ep-watch",
            "--grpc",
            &grpc,
            "--id",
            "pull1",
            "--until-synced",
            "--pull",
            "10.0.0.1",
            "--pull",
            "10.2.0.1",
        ],
    ));
    let lines: Vec<serde_json::Value> = pulled
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let pulls: Vec<&serde_json::Value> = lines.iter().filter(|l| l["event"] == "pulled").collect();
    assert_eq!(pulls[0]["subscriber"]["name"], "frank");
    assert_eq!(
        pulls[1]["subscriber"],
        serde_json::Value::Null,
        "carol is in north"
    );

    let eps: serde_json::Value =
        serde_json::from_str(&ok(&brasa(p.api, &["--json", "sm", "eps"]))).unwrap();
    assert_eq!(eps[0]["id"], "sce1");
    assert_eq!(eps[0]["counters"]["syncs"], 1);
    assert_eq!(eps[1]["mode"], "pull");
    let table = ok(&brasa(p.api, &["sm", "eps"]));
    assert!(
        table.contains("sce1") && table.contains("disconnected"),
        "{table}"
    );
    let e = brasa(p.api, &["sm", "resync", "sce1"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("EP \"sce1\" is not connected"));
    let e = brasa(p.api, &["sm", "release-quarantine", "sce9"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("EP \"sce9\" is not configured"));
    let e = brasa(p.api, &["sm", "release-quarantine", "sce1"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("is not quarantined (HTTP 409)"));
    let text = ok(&brasa(p.api, &["sm", "logout", "--mapping", "10.0.0.1"]));
    assert!(text.contains("frank: logged out"), "{text}");
    let text = ok(&brasa(p.api, &["sm", "show", "counts"]));
    assert!(text.contains("Subscribers: 3"), "{text}");
}

/// A property value with the CSV's separators survives export → fresh daemon → import.
fn serial_sm_export_imports_into_a_fresh_daemon_with_the_same_properties(backend: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let p = ports();
    let first = start_brasa(
        &dir.path().join("first"),
        &config(&p, false, &backend.section("first")),
        p.api,
    );
    ok(&brasa(
        p.api,
        &[
            "sm",
            "login",
            "alice",
            "-m",
            "10.0.0.7",
            "-p",
            "redirect=http://p/;sid=7",
        ],
    ));
    let shown = |api| {
        let text = ok(&brasa(
            api,
            &["--json", "sm", "show", "subscriber", "alice"],
        ));
        let view: serde_json::Value = serde_json::from_str(&text).unwrap();
        view["properties"].clone()
    };
    let expected = serde_json::json!([["redirect", "http://p/;sid=7"]]);
    assert_eq!(shown(p.api), expected);
    let file = dir.path().join("export.csv");
    let report = brasa(p.api, &["sm", "export", "-o", file.to_str().unwrap()]);
    ok(&report);
    assert!(
        String::from_utf8_lossy(&report.stderr).contains("exported 1 subscribers and 0 VPNs"),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    drop(first);

    let p2 = ports();
    let _fresh = start_brasa(
        &dir.path().join("fresh"),
        &config(&p2, false, &backend.section("fresh")),
        p2.api,
    );
    assert!(subscriber(p2.api, "alice").is_none(), "a fresh daemon");
    let text = ok(&brasa(p2.api, &["sm", "import", file.to_str().unwrap()]));
    assert!(text.contains("imported 1 subscribers"), "{text}");
    assert_eq!(shown(p2.api), expected);
    let text = ok(&brasa(p2.api, &["sm", "lookup", "10.0.0.7"]));
    assert!(text.contains("Name:        alice"), "{text}");
}

#[test]
fn serial_sm_migrate_copies_every_record_from_redb_to_postgres_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Backend::postgres();
    let Backend::Postgres(instance) = &pg else {
        unreachable!()
    };
    // The export in a canonical order (the index iterates in its own).
    let export = |api| {
        let mut lines: Vec<String> = ok(&brasa(api, &["sm", "export"]))
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    let p = ports();
    let original = {
        let _daemon = start_brasa(&dir.path().join("a"), &config(&p, false, ""), p.api);
        ok(&brasa(
            p.api,
            &[
                "sm",
                "login",
                "alice",
                "-m",
                "10.0.0.7",
                "-p",
                "package=gold",
            ],
        ));
        ok(&brasa(
            p.api,
            &[
                "sm",
                "login",
                "bob",
                "-m",
                "10.9.0.0/24@42",
                "--domain",
                "north",
            ],
        ));
        export(p.api)
    };
    let migrate = |from: String, to: String| {
        Command::new(BRASA)
            .args(["sm", "migrate", "--from", &from, "--to", &to])
            .output()
            .unwrap()
    };
    let redb_a = format!("redb:{}", dir.path().join("a/data/subscriber").display());
    let postgres = format!("postgres:{}", instance.create_database("moved").unwrap());
    let text = ok(&migrate(redb_a.clone(), postgres.clone()));
    assert!(
        text.contains("copied 2 subscribers, 1 VPNs and 0 BGP LEG routes"),
        "{text}"
    );
    // Never over records that are there.
    let again = migrate(redb_a, postgres.clone());
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already holds 2 subscribers"), "{err}");
    // And back into a fresh embedded store.
    let redb_b = format!("redb:{}", dir.path().join("b/data/subscriber").display());
    let text = ok(&migrate(postgres, redb_b));
    assert!(text.contains("copied 2 subscribers"), "{text}");

    let on_postgres = {
        let p = ports();
        let _daemon = start_brasa(
            &dir.path().join("pg"),
            &config(&p, false, &pg.section("moved")),
            p.api,
        );
        export(p.api)
    };
    assert_eq!(on_postgres, original);
    let back = {
        let p = ports();
        let _daemon = start_brasa(&dir.path().join("b"), &config(&p, false, ""), p.api);
        export(p.api)
    };
    assert_eq!(back, original);
}

#[test]
fn sm_config_errors_name_file_line_and_column() {
    let sm = "[subscriber_manager]\n";
    let ep = "[subscriber_manager]\n[[subscriber_manager.ep]]\nid = \"a\"\n";
    let cases = [
        (
            format!("{sm}listen = \"127.0.0.1:1\"\nbogus = 1\n"),
            "3:1",
            "unknown field `bogus`",
        ),
        (
            format!("{ep}domain = \"west\"\n"),
            "4:10",
            "domain \"west\" is not in",
        ),
        (
            format!("{ep}mode = \"pish\"\n"),
            "4:8",
            "expected \"push\" or \"pull\"",
        ),
        (
            format!("{ep}cascade_partner = \"b\"\n"),
            "4:19",
            "cascade partner \"b\" is not configured",
        ),
        (
            format!("{sm}[subscriber_manager.radius]\nservers = [\"aaa\"]\n"),
            "3:11",
            "need the [radius] component",
        ),
        (
            format!("{sm}window = 0\n"),
            "2:10",
            "window must be at least 1",
        ),
        (
            format!("{sm}[subscriber_manager.store]\nkind = \"postgres\"\n"),
            "3:8",
            "kind = \"postgres\" needs url",
        ),
        (
            format!("{sm}[subscriber_manager.store]\nkind = \"mysql\"\n"),
            "3:8",
            "expected \"redb\" or \"postgres\"",
        ),
        (
            format!("{sm}[subscriber_manager.store]\nkind = \"postgres\"\nurl = \"postgres://a@b:notaport/c\"\n"),
            "4:7",
            "invalid PostgreSQL url",
        ),
        (
            format!("{sm}[subscriber_manager.ha]\nnode = \"sm-a\"\n"),
            "3:8",
            "active/standby needs the records in PostgreSQL",
        ),
        (
            format!("{sm}[subscriber_manager.store]\nkind = \"postgres\"\nurl = \"postgres://a@b/c\"\n[subscriber_manager.ha]\nnode = \"sm-a\"\nlease = \"100ms\"\n"),
            "7:9",
            "lease must be at least 300 ms",
        ),
        (
            format!("{sm}[subscriber_manager.store]\nkind = \"postgres\"\nurl = \"postgres://a@b/c\"\n[subscriber_manager.ha]\nnode = \"sm-a\"\nchange_log_retention = 0\n"),
            "7:24",
            "change_log_retention must be at least 1",
        ),
        (
            format!("{sm}[subscriber_manager.store]\nkind = \"postgres\"\nurl = \"postgres://a@b/c\"\n[subscriber_manager.ha]\nnode = \"\"\n"),
            "6:8",
            "node must be a name",
        ),
    ];
    assert_config_errors(&cases);
}
