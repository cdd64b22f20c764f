//! Active/standby subscriber managers: two `brasa run` nodes over one throw-away PostgreSQL,
//! logins through the Bulk stream of a LEG that knows both nodes, two push EPs that know both;
//! the standby's replica following the active's commits through the change log; kill -9 of the
//! active (the standby takes over from its warm replica), then SIGSTOP of the new active past
//! its lease (fencing).

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use brasa_sm::EpReplica;
use brasa_sm_net::leg::{login_op, FailoverBulk, LegClient};
use brasa_sm_net::{pb, ClientEvent, EpClient, EpClientOptions};
use brasa_testkit::postgres::PgInstance;
use support::*;

const LEASE: Duration = Duration::from_secs(2);
const PER_BATCH: u64 = 100;

struct Node {
    dir: std::path::PathBuf,
    api: SocketAddr,
    grpc: SocketAddr,
    config: String,
}

impl Node {
    fn new(root: &std::path::Path, name: &'static str, url: &str) -> Node {
        let api: SocketAddr = format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"))
            .parse()
            .unwrap();
        let grpc: SocketAddr = format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"))
            .parse()
            .unwrap();
        let lease = format!("{}ms", LEASE.as_millis());
        let config = ha_sm_config(api, grpc, &["sce1", "sce2"], url, name, &lease);
        Node {
            dir: root.join(name),
            api,
            grpc,
            config,
        }
    }

    fn start(&self) -> Daemon {
        start_brasa(&self.dir, &self.config, self.api)
    }

    fn status(&self) -> serde_json::Value {
        show_json(self.api, "sm status")
    }

    fn role(&self) -> String {
        self.status()["role"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn wait_standby_under(&self, leader: &str) {
        eventually(
            &format!("{} is a standby under {leader}", self.dir.display()),
            Duration::from_secs(20),
            || {
                let s = self.status();
                s["role"] == "standby" && s["leader"]["node"] == leader
            },
        );
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }
}

fn ip(n: u64) -> String {
    format!("10.{}.{}.{}", n >> 16 & 255, n >> 8 & 255, n & 255)
}

/// The logged-in subscribers in the database, by name, with their mappings (the CSV export of
/// the active node).
fn stored(api: SocketAddr) -> HashMap<String, String> {
    let out = Command::new(BRASA)
        .args(["--api", &format!("http://{api}"), "sm", "export"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f.get(4) == Some(&"true")).then(|| (f[0].to_owned(), f[2].to_owned()))
        })
        .collect()
}

/// Asks an EP task whether its replica equals the given subscribers (name → address).
type EpCheck = tokio::sync::mpsc::Sender<(
    HashMap<String, String>,
    tokio::sync::oneshot::Sender<Result<(), String>>,
)>;

/// A push EP that knows both nodes: it reconnects to whichever accepts it after a failure and
/// answers `check` with whether its replica equals `expected` exactly.
fn ep(rt: &tokio::runtime::Runtime, id: &'static str, endpoints: Vec<String>) -> EpCheck {
    let (check_tx, mut check_rx) = tokio::sync::mpsc::channel::<(
        HashMap<String, String>,
        tokio::sync::oneshot::Sender<Result<(), String>>,
    )>(1);
    rt.spawn(async move {
        let options = EpClientOptions::new(endpoints[0].clone(), id);
        let mut replica = EpReplica::new();
        loop {
            let mut client = loop {
                match EpClient::connect_any(&endpoints, options.clone(), replica).await {
                    Ok(c) => break c,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        replica = EpReplica::new();
                    }
                }
            };
            loop {
                tokio::select! {
                    event = client.next_event() => match event {
                        Some(ClientEvent::Ended { .. }) | None => break,
                        Some(_) => {}
                    },
                    check = check_rx.recv() => {
                        let Some((expected, answer)) = check else { return };
                        let r = client.replica();
                        let verdict = if r.syncing() {
                            Err("syncing".to_owned())
                        } else if r.len() != expected.len() {
                            Err(format!("{id} holds {} subscribers, the database {}", r.len(), expected.len()))
                        } else {
                            expected
                                .iter()
                                .find(|(name, addr)| {
                                    r.lookup(addr.parse().unwrap(), None)
                                        .is_none_or(|s| s.name.as_str() != name.as_str())
                                })
                                .map_or(Ok(()), |(name, addr)| {
                                    Err(format!("{id}: {addr} is not {name}'s"))
                                })
                        };
                        let _ = answer.send(verdict);
                    }
                }
            }
            replica = client.close();
        }
    });
    check_tx
}

fn ep_equals(
    rt: &tokio::runtime::Runtime,
    ep: &EpCheck,
    expected: &HashMap<String, String>,
) -> Result<(), String> {
    rt.block_on(async {
        let (tx, rx) = tokio::sync::oneshot::channel();
        ep.send((expected.clone(), tx))
            .await
            .map_err(|e| e.to_string())?;
        rx.await.map_err(|e| e.to_string())?
    })
}

#[test]
fn serial_sm_failover_kill_9_then_sigstop_of_the_new_active_loses_and_commits_nothing() {
    let pg = PgInstance::start().unwrap();
    let url = pg.create_database("sm").unwrap();
    let root = tempfile::tempdir().unwrap();
    let a = Node::new(root.path(), "sm-a", &url);
    let b = Node::new(root.path(), "sm-b", &url);
    let mut daemon_a = a.start();
    eventually("sm-a becomes active", Duration::from_secs(20), || {
        a.role() == "active"
    });
    let daemon_b = b.start();
    b.wait_standby_under("sm-a");
    let status = a.status();
    let first_token = status["token"].as_u64().unwrap();
    assert_eq!(status["leader"]["token"].as_u64(), Some(first_token));
    let text = ok_text(&["--api", &format!("http://{}", b.api), "sm", "status"]);
    assert!(text.contains("sm-a") && text.contains("sm-b"), "{text}");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // A standby serves nothing and names the active node.
    let refusal = rt.block_on(async {
        let mut leg = LegClient::connect(&b.endpoint()).await.unwrap();
        leg.login("nobody", &["192.0.2.1"], None).await.unwrap_err()
    });
    assert_eq!(refusal.code() as i32, 14, "UNAVAILABLE");
    assert!(
        refusal.message().contains("sm-a") && refusal.message().contains(&a.grpc.to_string()),
        "{}",
        refusal.message()
    );

    // The standby follows logins and logouts through the change log, without reading the
    // records again.
    eventually("sm-b has read its replica", Duration::from_secs(20), || {
        b.status()["replica"]["position"].is_u64()
    });
    let loaded_at = b.status()["replica"]["position"].as_u64().unwrap();
    rt.block_on(async {
        let mut leg = LegClient::connect(&a.endpoint()).await.unwrap();
        for i in 0..20 {
            let ip = format!("192.0.2.{}", i + 1);
            leg.login(&format!("gone{i}"), &[&ip], None).await.unwrap();
        }
        for i in 0..20 {
            leg.logout(&format!("gone{i}")).await.unwrap();
        }
    });
    let head: u64 = pg
        .psql("sm", "SELECT seq FROM sm_change_head")
        .unwrap()
        .parse()
        .unwrap();
    assert!(head >= loaded_at + 40, "one change-log entry per commit");
    eventually(
        "sm-b's replica reaches the change log's head",
        Duration::from_secs(20),
        || b.status()["replica"]["position"].as_u64() >= Some(head),
    );
    let status = b.status();
    assert_eq!(status["follower"]["full_loads"], 1, "{status}");
    assert!(
        status["follower"]["applied_batches"].as_u64() >= Some(head - loaded_at),
        "{status}"
    );
    let text = ok_text(&["--api", &format!("http://{}", b.api), "sm", "status"]);
    assert!(
        text.contains("replica: position") && text.contains("follower: 1 full reads"),
        "{text}"
    );

    let endpoints = vec![a.endpoint(), b.endpoint()];
    let ep1 = ep(&rt, "sce1", endpoints.clone());
    let ep2 = ep(&rt, "sce2", endpoints.clone());

    // Logins through the Bulk stream; sm-a is killed after 10 acknowledged batches.
    let b_endpoint = b.endpoint();
    let mut leg = FailoverBulk::new(endpoints.clone(), LEASE * 2, Duration::from_secs(60));
    let mut acknowledged: Vec<u64> = Vec::new();
    let mut killed_at = None;
    let mut failover = None;
    rt.block_on(async {
        let mut batch = 0u64;
        let mut acked_batches = 0;
        loop {
            while leg.in_flight() < 4 {
                let ops = (0..PER_BATCH)
                    .map(|i| {
                        let n = batch * PER_BATCH + i;
                        login_op(&format!("sub{n}"), &[&ip(n)], None)
                    })
                    .collect();
                leg.send(ops).await.unwrap();
                batch += 1;
            }
            let (tag, results) = leg.next().await.unwrap();
            for (i, r) in results.iter().enumerate() {
                assert_eq!(r.code, 0, "{}", r.message);
                acknowledged.push(tag * PER_BATCH + i as u64);
            }
            acked_batches += 1;
            if acked_batches == 10 {
                daemon_a.child.kill().unwrap(); // SIGKILL
                killed_at = Some(Instant::now());
            } else if let (Some(at), None) = (killed_at, failover) {
                if leg.endpoint() == Some(b_endpoint.as_str()) {
                    failover = Some(at.elapsed());
                }
            }
            if acked_batches == 30 {
                break;
            }
        }
        while leg.in_flight() > 0 {
            let (tag, results) = leg.next().await.unwrap();
            for (i, r) in results.iter().enumerate() {
                assert_eq!(r.code, 0, "{}", r.message);
                acknowledged.push(tag * PER_BATCH + i as u64);
            }
        }
    });
    let _ = daemon_a.child.wait();
    eprintln!(
        "fail-over: {} ms from kill -9 to the first acknowledged login on the new active",
        failover.unwrap().as_millis()
    );
    assert_eq!(b.role(), "active", "{}", daemon_b.log_text());
    let status = b.status();
    let second_token = status["token"].as_u64().unwrap();
    assert!(second_token > first_token);
    // From the warm replica and the tail of the log: no record read in full since start-up.
    assert_eq!(status["activation"]["from"], "warm", "{status}");
    assert_eq!(status["activations"]["full"], 0, "{status}");
    assert_eq!(status["follower"]["full_loads"], 1, "{status}");

    let db = stored(b.api);
    let missing: Vec<&u64> = acknowledged
        .iter()
        .filter(|n| db.get(&format!("sub{n}")) != Some(&ip(**n)))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged logins missing after the fail-over: {:?}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(10)]
    );
    let relogged: Vec<&String> = db.keys().filter(|n| n.starts_with("gone")).collect();
    assert!(relogged.is_empty(), "logouts lost: {relogged:?}");
    for (name, e) in [("sce1", &ep1), ("sce2", &ep2)] {
        eventually(
            &format!("{name} equals the database"),
            Duration::from_secs(30),
            || ep_equals(&rt, e, &db).is_ok(),
        );
    }

    // sm-a comes back as a standby; sm-b is paused past its lease with a batch on its way.
    let _daemon_a = a.start();
    a.wait_standby_under("sm-b");
    eventually("sm-a has read its replica", Duration::from_secs(20), || {
        a.status()["replica"]["position"].is_u64()
    });
    let (paused_tx, mut paused_replies) = rt.block_on(async {
        let mut leg = LegClient::connect(&b.endpoint()).await.unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let replies = leg
            .grpc()
            .bulk(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        (tx, replies)
    });
    let pid = daemon_b.child.id().to_string();
    let signal = |sig: &str| {
        let s = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(s.success());
    };
    signal("-STOP");
    let fenced_names: Vec<String> = (0..PER_BATCH).map(|i| format!("late{i}")).collect();
    rt.block_on(async {
        let ops = fenced_names
            .iter()
            .enumerate()
            .map(|(i, n)| login_op(n, &[&format!("172.16.0.{}", i + 1)], None))
            .collect();
        paused_tx
            .send(pb::BulkRequest { ops, tag: 7 })
            .await
            .unwrap();
    });
    eventually(
        "sm-a takes over from the paused sm-b",
        Duration::from_secs(30),
        || a.role() == "active",
    );
    let status = a.status();
    let third_token = status["token"].as_u64().unwrap();
    assert!(third_token > second_token);
    assert_eq!(status["activation"]["from"], "warm", "{status}");
    assert_eq!(status["follower"]["full_loads"], 1, "{status}");
    signal("-CONT");
    // Whatever sm-b does with the batch it read before the pause, nothing is acknowledged.
    let reply = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), paused_replies.message()).await
    });
    if let Ok(Ok(Some(reply))) = reply {
        assert!(
            reply.results.iter().all(|r| r.code != 0),
            "the paused node acknowledged a change after losing its lease"
        );
    }
    eventually("sm-b steps down", Duration::from_secs(20), || {
        b.role() == "standby"
    });
    let db = stored(a.api);
    let committed: Vec<&String> = fenced_names
        .iter()
        .filter(|n| db.contains_key(*n))
        .collect();
    assert!(
        committed.is_empty(),
        "the fenced node committed {committed:?}\n{}",
        daemon_b.log_text()
    );
    let missing = acknowledged
        .iter()
        .filter(|n| db.get(&format!("sub{n}")) != Some(&ip(**n)))
        .count();
    assert_eq!(
        missing, 0,
        "acknowledged logins missing after the second take-over"
    );
}

fn ok_text(args: &[&str]) -> String {
    let out = Command::new(BRASA).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
