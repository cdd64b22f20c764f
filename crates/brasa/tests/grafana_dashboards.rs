//! Every metric a Grafana dashboard in `contrib/grafana/` queries is exported by the daemon the
//! dashboard is for, and every label it groups by is on that metric's samples: the dashboards
//! are checked against the `/metrics` of real daemons (`brasa run` with RADIUS, Python and the
//! SM; `brasa rae`; a `brasa curling` CAFE and CRME; `brasa dataplane` in a network namespace).

mod dataplane_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BRASA: &str = env!("CARGO_BIN_EXE_brasa");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Kills the child on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> Child {
    Child(
        Command::new(BRASA)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A TCP port free on `ip` now.
fn free_tcp_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A UDP port free on 127.0.0.1 now.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn loopback_api() -> SocketAddr {
    format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"))
        .parse()
        .unwrap()
}

/// `/metrics` once the API answers.
fn metrics(api: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(api).is_err() {
        assert!(Instant::now() < deadline, "no API at {api}");
        std::thread::sleep(Duration::from_millis(50));
    }
    ureq::get(&format!("http://{api}/metrics"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap()
}

/// Families declared in an exposition, with the label names of their samples.
fn families(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut families: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap_or_default();
            families.entry(name.to_owned()).or_default();
        } else if !line.starts_with('#') && !line.is_empty() {
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let labels = families.entry(line[..name_end].to_owned()).or_default();
            if let Some(inner) = line[name_end..].strip_prefix('{') {
                for pair in inner.split("\",") {
                    if let Some((key, _)) = pair.split_once('=') {
                        labels.insert(key.trim_start_matches(',').to_owned());
                    }
                }
            }
        }
    }
    families
}

/// Every PromQL expression of a dashboard: panel targets and template variable queries.
fn expressions(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("expr" | "definition", serde_json::Value::String(text)) => {
                        out.push(text.clone())
                    }
                    ("query", serde_json::Value::String(text)) if text.contains("brasa_") => {
                        out.push(text.clone())
                    }
                    _ => expressions(inner, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| expressions(item, out)),
        _ => {}
    }
}

/// The metric names an expression reads.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("brasa_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// `(labels, metric)` of each `by (labels) (rate(metric…` or `by (labels) (metric…` grouping.
fn groupings(expr: &str) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("by (") {
        let tail = &rest[at + 4..];
        let Some(close) = tail.find(')') else { break };
        let labels = tail[..close]
            .split(',')
            .map(|l| l.trim().to_owned())
            .collect();
        let after = tail[close + 1..].trim_start().trim_start_matches('(');
        let after = after.strip_prefix("rate(").unwrap_or(after);
        if let Some(name) = metric_names(after)
            .into_iter()
            .next()
            .filter(|_| after.starts_with("brasa_"))
        {
            out.push((labels, name));
        }
        rest = &tail[close..];
    }
    out
}

fn check_dashboard(file: &str, exposition: &str) -> Vec<String> {
    let path = repo().join("contrib/grafana").join(file);
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let exported = families(exposition);
    let mut exprs = Vec::new();
    expressions(&dashboard, &mut exprs);
    assert!(exprs.len() > 3, "{file}: no queries found");
    let mut problems = Vec::new();
    for expr in &exprs {
        for name in metric_names(expr) {
            if !exported.contains_key(&name) {
                problems.push(format!("{file}: {name} is not in /metrics (in `{expr}`)"));
            }
        }
        for (labels, name) in groupings(expr) {
            if let Some(have) = exported.get(&name).filter(|have| !have.is_empty()) {
                for label in labels.iter().filter(|l| !have.contains(*l)) {
                    problems.push(format!(
                        "{file}: {name} has no label {label:?} (has {have:?})"
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn every_metric_a_dashboard_uses_is_exported() {
    let mut problems = Vec::new();
    let mut checked = BTreeSet::new();

    // brasa run: RADIUS proxying to an upstream (rows for the upstream families), Python with
    // a cache, the subscriber manager with an EP, and the API's own counters.
    let dir = tempfile::tempdir().unwrap();
    let api = loopback_api();
    let udp = free_udp_port;
    let script = repo().join("examples/python/python_cache.py");
    let config = format!(
        r#"data_dir = "{}"
[api]
listen = "{api}"
[radius]
[[radius.client]]
name = "nas"
address = "127.0.0.1"
secret = "s"
[[radius.server]]
name = "aaa"
auth_listen = "127.0.0.1:{}"
acct_listen = "127.0.0.1:{}"
proxy = "up"
python_policy = "p1"
[[radius.pool]]
name = "up"
[[radius.pool.auth_server]]
address = "127.0.0.1:{}"
secret = "u"
[python]
[[python.script]]
name = "s1"
file = "{}"
[[python.policy]]
name = "p1"
radius = [{{ message = "access-accept", direction = "ingress", script = "s1" }}]
[python.policy.cache]
max_entry_lifetime = "1h"
[subscriber_manager]
listen = "127.0.0.1:{}"
domains = ["subscribers"]
[subscriber_manager.radius]
servers = ["aaa"]
[[subscriber_manager.ep]]
id = "sce1"
"#,
        dir.path().join("data").display(),
        udp(),
        udp(),
        udp(),
        script.display(),
        free_tcp_port("127.0.0.1"),
    );
    let config_path = dir.path().join("brasa.toml");
    std::fs::write(&config_path, config).unwrap();
    let _run = spawn(&["run", "-c", config_path.to_str().unwrap()]);
    let run = metrics(api);
    for file in [
        "brasa-radius.json",
        "brasa-python.json",
        "brasa-subscriber-manager.json",
        "brasa-api.json",
    ] {
        problems.extend(check_dashboard(file, &run));
        checked.insert(file);
    }

    // brasa rae, from the example TOML on ports of its own.
    let rae_toml = dir.path().join("rae.toml");
    let text = std::fs::read_to_string(repo().join("examples/rae/rae11.toml"))
        .unwrap()
        .replace(
            "local_ip_address = \"127.0.3.1\"",
            "local_ip_address = \"127.0.3.7\"",
        )
        .replace(
            "local_port_number = 10001",
            &format!("local_port_number = {}", free_tcp_port("127.0.3.7")),
        )
        .replace(
            "cme_port_number = 9090",
            &format!("cme_port_number = {}", free_tcp_port("127.0.0.1")),
        );
    std::fs::write(&rae_toml, text).unwrap();
    let rae_api = loopback_api();
    let _rae = spawn(&[
        "rae",
        "--config-from-toml",
        rae_toml.to_str().unwrap(),
        "--mgmt-listen",
        &rae_api.to_string(),
    ]);
    problems.extend(check_dashboard("brasa-rae.json", &metrics(rae_api)));
    checked.insert("brasa-rae.json");

    // brasa curling: a CAFE and a CRME (their dashboard has a row for each).
    let (cafe_api, crme_api) = (loopback_api(), loopback_api());
    let _cafe = spawn(&[
        "curling",
        "cafe",
        "2.2",
        "2000",
        "2.1",
        "3000",
        "1",
        "1.2",
        "2000",
        "1.1",
        "--net",
        "48",
        "--mgmt-listen",
        &cafe_api.to_string(),
    ]);
    let _crme = spawn(&[
        "curling",
        "crme",
        "2.1",
        "3000",
        "2",
        "1.1",
        "provider",
        "4.1",
        "customer",
        "0",
        "--net",
        "48",
        "--mgmt-listen",
        &crme_api.to_string(),
    ]);
    let curling = metrics(cafe_api) + &metrics(crme_api);
    problems.extend(check_dashboard("brasa-curling.json", &curling));
    checked.insert("brasa-curling.json");

    // brasa dataplane in a namespace, with a forwarding key and an intercept filter so that
    // the per-key and per-filter families have samples.
    let (outer, inner) = (
        dataplane_support::Netns::new("ga"),
        dataplane_support::Netns::new("gc"),
    );
    dataplane_support::veth(&outer, "ga0", &inner, "gc0");
    let dataplane = dataplane_support::Daemon::start(&inner, &[("gc0", "kernel")]);
    dataplane.cafe_ok(&["forward", "add-ethernet", "a7", "gc0", "aa:11:b0:00:00:01"]);
    dataplane.cafe_ok(&[
        "intercept",
        "add",
        "123",
        "60",
        "1.1.1.2",
        "2.2.2.1",
        "17",
        "0",
        "80",
        "a7",
    ]);
    problems.extend(check_dashboard(
        "brasa-dataplane.json",
        &dataplane.http_get("/metrics"),
    ));
    checked.insert("brasa-dataplane.json");

    // No dashboard escapes the check.
    for entry in std::fs::read_dir(repo().join("contrib/grafana")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            assert!(
                checked.contains(name.as_str()),
                "{name} is checked against no daemon"
            );
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checks_catch_unknown_metrics_and_labels() {
    let exposition = "# TYPE brasa_x_total counter\nbrasa_x_total{client=\"a\"} 1\n";
    let exported = families(exposition);
    assert!(exported["brasa_x_total"].contains("client"));
    assert_eq!(
        metric_names("sum(rate(brasa_x_total[5m])) / brasa_y"),
        ["brasa_x_total", "brasa_y"]
    );
    assert_eq!(
        groupings("sum by (pool, server) (rate(brasa_x_total{instance=~\"$instance\"}[5m]))"),
        [(
            vec!["pool".to_owned(), "server".to_owned()],
            "brasa_x_total".to_owned()
        )]
    );
}
