//! The SR OS Python cache guide end to end: python-policies with `alc.radius` and `alc.cache` in `brasa run`, with
//! radclient as the NAS and a real FreeRADIUS as the AAA server; the operator tools; cache
//! limits; persistence across kill -9; multi-chassis peer sync between two daemons; script
//! failures, time limits and reloads.

mod support;

use brasa_cache_redis::testing::RedisServer;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::*;

const NAS_SECRET: &str = "testing123";
const UPSTREAM_SECRET: &str = "upstream-secret";
const MAC: &str = "00:20:fc:1e:cd:53";
/// `03 07 08 09` + "Class-1" "Class-22" "Class-333", as the SR OS dump shows it.
const CLASS_ENTRY_HEX: &str =
    "03 07 08 09 43 6c 61 73 73 2d 31 43 6c 61 73 73 2d 32 32 43 6c 61 73 73 2d 33 33 33";

fn seed_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python/python_cache.py")
}

fn api_address() -> SocketAddr {
    format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"))
        .parse()
        .unwrap()
}

fn dump(api: SocketAddr, policy: &str) -> Vec<serde_json::Value> {
    brasa_json(
        api,
        &["tools", "dump", "python", "python-policy", policy, "cache"],
    )["entries"]
        .as_array()
        .unwrap()
        .clone()
}

/// `brasa clear python python-policy POLICY cache KEY_OPTION KEY` against `api`; it must
/// succeed.
fn clear_entry(api: SocketAddr, policy: &str, key_option: &str, key: &str) -> Output {
    let cleared = brasa(
        api,
        &[
            "clear",
            "python",
            "python-policy",
            policy,
            "cache",
            key_option,
            key,
        ],
    );
    assert!(
        cleared.status.success(),
        "{}",
        String::from_utf8_lossy(&cleared.stderr)
    );
    cleared
}

fn python_statistics(api: SocketAddr) -> serde_json::Value {
    brasa_json(api, &["show", "python", "statistics"])
}

fn script_stats(api: SocketAddr, script: &str) -> serde_json::Value {
    let stats = python_statistics(api);
    stats["worker"]["scripts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == script)
        .unwrap()
        .clone()
}

fn accounting(status: &str) -> String {
    format!(
        "User-Name = \"{MAC}\", Acct-Status-Type = {status}, Acct-Session-Id = \"{MAC}|1/1/9\", NAS-IP-Address = 127.0.0.1, Event-Timestamp = 1403751738"
    )
}

fn remaining_ms(entry: &serde_json::Value) -> u64 {
    entry["remaining_ms"].as_u64().unwrap()
}

/// FreeRADIUS as the document's AAA server: it accepts the host and returns the User-Name
/// (the script's cache key) with the three Class attributes; accounting goes to its detail.
fn start_document_freeradius(dir: &Path) -> FreeRadius {
    let users = format!(
        "\"{MAC}\" Cleartext-Password := \"{MAC}\"\n\tClass = \"Class-1\",\n\tClass += \"Class-22\",\n\tClass += \"Class-333\",\n\tUser-Name = \"{MAC}\"\n"
    );
    start_freeradius(
        &dir.join("freeradius"),
        "127.0.0.1",
        &[("127.0.0.1", UPSTREAM_SECRET)],
        &users,
        "",
        None,
        true,
    )
}

/// A `brasa run` config of the document: the RADIUS server policy on `(auth, acct)` ports
/// proxying to `freeradius`, python-script-1 (the seed script, with `script_options`) on
/// access-accept (ingress) and accounting-request (egress), and `cache`: the body of
/// `[python.policy.cache]` and any `[python.*]` tables after it.
fn document_proxy_config(
    api: SocketAddr,
    (auth, acct): (u16, u16),
    freeradius: &FreeRadius,
    script_options: &str,
    cache: &str,
) -> String {
    let listen = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let head = radius_proxy_config(
        api,
        ("bng-1", NAS_SECRET),
        ("radius-svr-policy-1", listen(auth), listen(acct)),
        "python_policy = \"python-policy-1\"\n",
        freeradius,
        UPSTREAM_SECRET,
    );
    format!(
        r#"{head}[python]
[[python.script]]
name = "python-script-1"
file = "{}"
{script_options}[[python.policy]]
name = "python-policy-1"
radius = [
  {{ message = "access-accept", direction = "ingress", script = "python-script-1" }},
  {{ message = "accounting-request", direction = "egress", script = "python-script-1" }},
]
[python.policy.cache]
{cache}"#,
        seed_script().display()
    )
}

#[test]
fn serial_python_class_reflection_with_freeradius_as_the_aaa_server() {
    let dir = tempfile::tempdir().unwrap();
    let freeradius = start_document_freeradius(dir.path());
    let api = api_address();
    let (auth, acct) = (free_udp_port("127.0.0.1"), free_udp_port("127.0.0.1"));
    let config = document_proxy_config(
        api,
        (auth, acct),
        &freeradius,
        "debug = true\n",
        "max_entry_lifetime = \"0d 01:00:00\"\n",
    );
    let daemon = start_brasa(&dir.path().join("brasa"), &config, api);
    let auth: SocketAddr = format!("127.0.0.1:{auth}").parse().unwrap();
    let acct: SocketAddr = format!("127.0.0.1:{acct}").parse().unwrap();

    // Step 5: the host authenticates; the script stores the three Class attributes.
    let output = radclient(
        auth,
        "auth",
        NAS_SECRET,
        &format!("User-Name = \"{MAC}\", User-Password = \"{MAC}\""),
        &[],
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        text.contains("Access-Accept"),
        "{text}\n{}",
        daemon.log_text()
    );
    let reply = reply_lines(&output);
    assert_eq!(
        reply.iter().filter(|l| l.starts_with("Class = ")).count(),
        3,
        "FreeRADIUS's reply reaches the NAS unchanged: {reply:?}"
    );
    let entries = dump(api, "python-policy-1");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["key"], MAC);
    assert_eq!(entries[0]["value_hex"], CLASS_ENTRY_HEX);
    assert_eq!(entries[0]["ddp_key"], "N/A");

    // Accounting Start and Interim-Update get the Class attributes; Interim sets 900 s.
    for status in ["Start", "Interim-Update"] {
        let output = radclient(acct, "acct", NAS_SECRET, &accounting(status), &[]);
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Accounting-Response"),
            "{status}: {}",
            daemon.log_text()
        );
    }
    let entries = dump(api, "python-policy-1");
    assert_eq!(entries.len(), 1);
    let left = remaining_ms(&entries[0]);
    assert!(
        (800_000..=900_000).contains(&left),
        "about 900 s left after the Interim-Update: {left} ms"
    );
    assert!(entries[0]["time_left"]
        .as_str()
        .unwrap()
        .starts_with("0d 00:1"));
    // The human dump is the SR OS layout.
    let human = brasa(
        api,
        &[
            "tools",
            "dump",
            "python",
            "python-policy",
            "python-policy-1",
            "cache",
        ],
    );
    let human = String::from_utf8_lossy(&human.stdout).into_owned();
    assert!(
        human.contains("Python policy cache \"python-policy-1\" entries"),
        "{human}"
    );
    assert!(human.contains(&format!("Key       : {MAC}")), "{human}");
    assert!(
        human.contains("Value     : (hex) 03 07 08 09 43 6c 61 73 73 2d 31"),
        "{human}"
    );

    // Stop: Class attributes reflected once more, then the entry is gone.
    let output = radclient(acct, "acct", NAS_SECRET, &accounting("Stop"), &[]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("Accounting-Response"));
    assert!(dump(api, "python-policy-1").is_empty());

    // FreeRADIUS's detail file: every accounting request carries the three Class attributes.
    let detail = freeradius.detail();
    for status in ["Start", "Interim-Update", "Stop"] {
        assert!(
            detail.contains(&format!("Acct-Status-Type = {status}")),
            "{detail}"
        );
    }
    for class in [
        "0x436c6173732d31\n",
        "0x436c6173732d3232\n",
        "0x436c6173732d333333\n",
    ] {
        assert_eq!(
            detail.matches(&format!("Class = {class}")).count(),
            3,
            "Class {class} in each of the three accounting requests:\n{detail}"
        );
    }

    // Steps 7 and 8: set-lifetime and clear from the tools, on a fresh entry.
    let output = radclient(
        auth,
        "auth",
        NAS_SECRET,
        &format!("User-Name = \"{MAC}\", User-Password = \"{MAC}\""),
        &[],
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("Access-Accept"));
    let done = brasa_json(
        api,
        &[
            "tools",
            "perform",
            "python-policy",
            "python-policy-1",
            "cache",
            "--string-key",
            MAC,
            "set-lifetime",
            "1200",
        ],
    );
    assert_eq!(done["lifetime"], 1200);
    let left = remaining_ms(&dump(api, "python-policy-1")[0]);
    assert!((1_100_000..=1_200_000).contains(&left), "{left}");
    let missing = brasa(
        api,
        &[
            "tools",
            "perform",
            "python-policy",
            "python-policy-1",
            "cache",
            "--hex-key",
            "01 02",
            "set-lifetime",
            "5",
        ],
    );
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("has no entry with key (hex) 01 02"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let hex_key: String = MAC.bytes().map(|b| format!("{b:02x}")).collect();
    clear_entry(api, "python-policy-1", "--hex-key", &hex_key);
    assert!(dump(api, "python-policy-1").is_empty());
    // Without its entry the script drops the accounting request (the document's except path).
    let output = radclient(
        acct,
        "acct",
        NAS_SECRET,
        &accounting("Interim-Update"),
        &["-r", "1", "-t", "1"],
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("Accounting-Response"));

    let stats = script_stats(api, "python-script-1");
    assert_eq!(stats["runs"], 6, "{stats}");
    assert_eq!(stats["completed"], 6, "{stats}");
    assert_eq!(stats["dropped_by_script"], 1, "{stats}");
    // Debug on: the SR OS "Python Result" trace is in the log.
    let log = daemon.log_text();
    assert!(log.contains("Python Result: python-script-1"), "{log}");
    assert!(log.contains("RADIUS Attribute: Type 25, SET"), "{log}");
    let metrics = http_get(api, "/metrics");
    assert!(
        metrics.contains("brasa_python_script_runs_total{script=\"python-script-1\"} 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("brasa_python_cache_saves_total{policy=\"python-policy-1\"} 2"),
        "{metrics}"
    );
}

/// A `brasa run` config answering from a local database (the document's user, whose
/// Access-Accept carries the three Class attributes and the User-Name, and an accounting log),
/// with one server per `(auth port, acct port, python-policy)` and the `[python]` text.
fn local_node_config(
    api: SocketAddr,
    servers: &[(Option<u16>, Option<u16>, &str)],
    python: &str,
) -> String {
    let mut text = format!(
        r#"data_dir = "data"
[api]
listen = "{api}"
[radius]
[[radius.client]]
name = "nas"
address = "127.0.0.0/8"
secret = "{NAS_SECRET}"
[[radius.local]]
name = "db"
accounting_log = "accounting.jsonl"
[[radius.local.user]]
name = "{MAC}"
password = "{MAC}"
reply = ['Class = "Class-1"', 'Class = "Class-22"', 'Class = "Class-333"', 'User-Name = "{MAC}"']
"#
    );
    for (index, (auth, acct, policy)) in servers.iter().enumerate() {
        text.push_str(&format!("[[radius.server]]\nname = \"s{index}\"\nlocal = \"db\"\npython_policy = \"{policy}\"\n"));
        if let Some(port) = auth {
            text.push_str(&format!("auth_listen = \"127.0.0.1:{port}\"\n"));
        }
        if let Some(port) = acct {
            text.push_str(&format!("acct_listen = \"127.0.0.1:{port}\"\n"));
        }
    }
    text.push_str(python);
    text
}

/// Local-mode servers on `(acct port, python-policy)` whose accounting requests run the
/// policy's script; the script's edits are visible in the accounting log.
fn local_python_config(api: SocketAddr, servers: &[(u16, &str)], python: &str) -> String {
    let servers: Vec<_> = servers
        .iter()
        .map(|(port, policy)| (None, Some(*port), *policy))
        .collect();
    local_node_config(api, &servers, python)
}

fn accounting_log(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("data/radius/accounting.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The Reply-Message the script set in `user`'s accounting request (string values are logged
/// in radclient syntax, quoted).
fn reply_message_of(dir: &Path, user: &str) -> Option<String> {
    accounting_log(dir)
        .iter()
        .rev()
        .find(|r| r["attributes"]["User-Name"] == user)
        .and_then(|r| r["attributes"]["Reply-Message"].as_str())
        .map(str::to_string)
}

/// Sends one request to brasa on 127.0.0.1:`port` with radclient and asserts the reply code.
fn exchange(port: u16, kind: &str, input: &str, reply: &str) {
    let output = radclient(
        format!("127.0.0.1:{port}").parse().unwrap(),
        kind,
        NAS_SECRET,
        input,
        &[],
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(reply),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

fn send_accounting(port: u16, user: &str) {
    exchange(
        port,
        "acct",
        &format!("User-Name = \"{user}\", Acct-Status-Type = Start, Acct-Session-Id = \"{user}\""),
        "Accounting-Response",
    );
}

const LIMITS_SCRIPT: &str = r#"from alc import radius, cache
# User-Name "name-N": save N bytes under the name, report the outcome in Reply-Message.
name = radius.attributes.get(1)
size = int(name.split(b"-")[1])
try:
    cache.save(b"x" * size, name)
    applied = cache.set_lifetime(name, 86400)
    radius.attributes.set(18, b"saved, lifetime %d" % applied)
except cache.error as error:
    radius.attributes.set(18, ("refused: %s" % error).encode())
"#;

#[test]
fn serial_python_cache_limits_refuse_saves_and_the_except_path_runs() {
    let dir = tempfile::tempdir().unwrap();
    let brasa_dir = dir.path().join("brasa");
    std::fs::create_dir_all(&brasa_dir).unwrap();
    std::fs::write(brasa_dir.join("limits.py"), LIMITS_SCRIPT).unwrap();
    let api = api_address();
    let (small, large) = (free_udp_port("127.0.0.1"), free_udp_port("127.0.0.1"));
    let python = r#"[python]
cache_memory = "1KB"
[[python.script]]
name = "limits"
file = "limits.py"
[[python.policy]]
name = "small"
radius = [{ message = "accounting-request", direction = "egress", script = "limits" }]
[python.policy.cache]
entry_size = 64
max_entries = 2
max_entry_lifetime = "60s"
[[python.policy]]
name = "large"
radius = [{ message = "accounting-request", direction = "egress", script = "limits" }]
[python.policy.cache]
entry_size = 4096
max_entries = 1000
"#;
    let config = local_python_config(api, &[(small, "small"), (large, "large")], python);
    let _daemon = start_brasa(&brasa_dir, &config, api);

    send_accounting(small, "a-10");
    assert_eq!(
        reply_message_of(&brasa_dir, "a-10").as_deref(),
        Some("saved, lifetime 60"),
        "set_lifetime is capped by max-entry-lifetime"
    );
    send_accounting(small, "b-100");
    let refused = reply_message_of(&brasa_dir, "b-100").unwrap();
    assert!(refused.contains("exceeds entry-size 64"), "{refused}");
    send_accounting(small, "c-10");
    send_accounting(small, "d-10");
    let refused = reply_message_of(&brasa_dir, "d-10").unwrap();
    assert!(refused.contains("cache is full (2 entries)"), "{refused}");
    // The two small entries use about 180 of the 1 KB shared by all caches.
    send_accounting(large, "e-600");
    assert!(reply_message_of(&brasa_dir, "e-600")
        .unwrap()
        .starts_with("saved"));
    send_accounting(large, "f-600");
    let refused = reply_message_of(&brasa_dir, "f-600").unwrap();
    assert!(
        refused.contains("global cache memory bound exceeded"),
        "{refused}"
    );

    let stats = brasa_json(api, &["show", "python", "statistics"]);
    let caches = stats["caches"]["caches"].as_array().unwrap();
    let small_stats = caches.iter().find(|c| c["policy"] == "small").unwrap();
    assert_eq!(small_stats["entries"], 2);
    assert_eq!(small_stats["refused"]["entry_too_large"], 1);
    assert_eq!(small_stats["refused"]["too_many_entries"], 1);
    let large_stats = caches.iter().find(|c| c["policy"] == "large").unwrap();
    assert_eq!(large_stats["refused"]["global_memory_exceeded"], 1);
    assert!(stats["caches"]["global_memory_used"].as_u64().unwrap() <= 1024);
}

const FAILING_SCRIPT: &str = r#"from alc import radius
name = radius.attributes.get(1)
if name == b"loop":
    while True:
        pass
if name == b"boom":
    raise RuntimeError("boom")
radius.attributes.set(18, b"version 1")
"#;

#[test]
fn serial_python_failures_apply_action_on_fail_and_a_reload_takes_effect() {
    let dir = tempfile::tempdir().unwrap();
    let brasa_dir = dir.path().join("brasa");
    std::fs::create_dir_all(&brasa_dir).unwrap();
    let script = brasa_dir.join("failing.py");
    std::fs::write(&script, FAILING_SCRIPT).unwrap();
    let api = api_address();
    let (passing, dropping) = (free_udp_port("127.0.0.1"), free_udp_port("127.0.0.1"));
    let python = r#"[python]
[[python.script]]
name = "pass"
file = "failing.py"
action_on_fail = "passthrough"
time_limit = "200ms"
[[python.script]]
name = "drop"
file = "failing.py"
action_on_fail = "drop"
time_limit = "200ms"
[[python.policy]]
name = "passing"
radius = [{ message = "accounting-request", direction = "egress", script = "pass" }]
[[python.policy]]
name = "dropping"
radius = [{ message = "accounting-request", direction = "egress", script = "drop" }]
"#;
    let config = local_python_config(api, &[(passing, "passing"), (dropping, "dropping")], python);
    let daemon = start_brasa(&brasa_dir, &config, api);

    // A runaway script is stopped at its time limit; passthrough sends the packet unchanged.
    send_accounting(passing, "loop");
    send_accounting(passing, "boom");
    send_accounting(passing, "ok");
    assert_eq!(reply_message_of(&brasa_dir, "loop"), None);
    assert_eq!(reply_message_of(&brasa_dir, "boom"), None);
    assert_eq!(
        reply_message_of(&brasa_dir, "ok").as_deref(),
        Some("version 1")
    );
    let stats = script_stats(api, "pass");
    assert_eq!(stats["timeouts"], 1, "{stats}");
    assert_eq!(stats["exceptions"], 1, "{stats}");
    assert_eq!(stats["failed_passed"], 2, "{stats}");
    assert!(stats["last_error"]
        .as_str()
        .unwrap()
        .contains("RuntimeError: boom"));

    // With action-on-fail drop the NAS gets no answer; other packets are still answered.
    let output = radclient(
        format!("127.0.0.1:{dropping}").parse().unwrap(),
        "acct",
        NAS_SECRET,
        "User-Name = \"boom\", Acct-Status-Type = Start, Acct-Session-Id = \"x\"",
        &["-r", "1", "-t", "1"],
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("Accounting-Response"));
    send_accounting(dropping, "fine");
    assert_eq!(script_stats(api, "drop")["failed_dropped"], 1);

    // Reload: a syntax error keeps the old code; a good file replaces it.
    std::fs::write(&script, "from alc import radius\ndef broken(:\n").unwrap();
    let failed = brasa(
        api,
        &["tools", "perform", "python-script", "pass", "reload"],
    );
    assert!(!failed.status.success());
    let message = String::from_utf8_lossy(&failed.stderr).into_owned();
    assert!(
        message.contains("failing.py") && message.contains(":2"),
        "{message}"
    );
    send_accounting(passing, "ok-2");
    assert_eq!(
        reply_message_of(&brasa_dir, "ok-2").as_deref(),
        Some("version 1")
    );
    std::fs::write(
        &script,
        "from alc import radius\nradius.attributes.set(18, b\"version 2\")\n",
    )
    .unwrap();
    let reloaded = brasa(
        api,
        &["tools", "perform", "python-script", "pass", "reload"],
    );
    assert!(
        reloaded.status.success(),
        "{}",
        String::from_utf8_lossy(&reloaded.stderr)
    );
    send_accounting(passing, "ok-3");
    assert_eq!(
        reply_message_of(&brasa_dir, "ok-3").as_deref(),
        Some("version 2")
    );
    assert_eq!(script_stats(api, "pass")["reloads"], 1);
    drop(daemon);
}

fn seed_policy_python(extra_cache: &str, top: &str) -> String {
    format!(
        r#"[python]
{top}
[[python.script]]
name = "python-script-1"
file = "{}"
[[python.policy]]
name = "python-policy-1"
radius = [
  {{ message = "access-accept", direction = "ingress", script = "python-script-1" }},
  {{ message = "accounting-request", direction = "egress", script = "python-script-1" }},
]
[python.policy.cache]
{extra_cache}
"#,
        seed_script().display()
    )
}

fn authenticate(auth: u16) {
    exchange(
        auth,
        "auth",
        &format!("User-Name = \"{MAC}\", User-Password = \"{MAC}\""),
        "Access-Accept",
    );
}

/// A local-mode `brasa run` with the seed policy on fixed ports (restarts must find them again).
fn seed_node_config(api: SocketAddr, auth: u16, python: &str) -> String {
    local_node_config(api, &[(Some(auth), None, "python-policy-1")], python)
}

#[test]
fn serial_python_cache_persists_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_address();
    let auth = free_udp_port("127.0.0.1");
    let config = seed_node_config(
        api,
        auth,
        &seed_policy_python("persistence = true\nmax_entry_lifetime = \"15m\"", ""),
    );
    let brasa_dir = dir.path().join("brasa");
    let mut daemon = start_brasa(&brasa_dir, &config, api);
    authenticate(auth);
    let before = dump(api, "python-policy-1");
    assert_eq!(before.len(), 1);
    assert_eq!(before[0]["value_hex"], CLASS_ENTRY_HEX);
    // The journal is written to the OS within a drain tick; wait until it holds the entry.
    let journal = brasa_dir.join("data/python-policy-cache/python-policy-1.journal");
    eventually("the journal record", Duration::from_secs(10), || {
        std::fs::metadata(&journal).is_ok_and(|m| m.len() > 8 + 8 + 29)
    });
    daemon.child.kill().unwrap(); // SIGKILL: no shutdown path runs
    daemon.child.wait().unwrap();
    drop(daemon);

    let _daemon = start_brasa(&brasa_dir, &config, api);
    let after = dump(api, "python-policy-1");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["key"], MAC);
    assert_eq!(after[0]["value_hex"], CLASS_ENTRY_HEX);
    let (left_before, left_after) = (remaining_ms(&before[0]), remaining_ms(&after[0]));
    assert!(
        left_after <= left_before && left_after > 600_000,
        "the remaining lifetime survives: {left_before} -> {left_after}"
    );
}

/// Two nodes' configs (fixed ports, so that a restarted node finds its own again): the seed
/// policy on each, whose caches name each other as `mcs_peer` with the given tag and key.
struct SyncPair {
    api: [SocketAddr; 2],
    auth: [u16; 2],
    config: [String; 2],
}

/// A pair on `127.0.79.{a}` and `127.0.79.{b}` (sync ports taken free from the OS).
fn sync_pair(a: u8, b: u8, tags: [&str; 2], keys: [&str; 2]) -> SyncPair {
    let ips = [format!("127.0.79.{a}"), format!("127.0.79.{b}")];
    let sync = [
        format!("{}:{}", ips[0], free_tcp_port(&ips[0])),
        format!("{}:{}", ips[1], free_tcp_port(&ips[1])),
    ];
    let api = [api_address(), api_address()];
    let auth = [free_udp_port("127.0.0.1"), free_udp_port("127.0.0.1")];
    let config = [0, 1].map(|me| {
        let peer = 1 - me;
        seed_node_config(
            api[me],
            auth[me],
            &seed_policy_python(
                &format!("mcs_peer = \"{}\"\nsync_tag = \"{}\"", sync[peer], tags[me]),
                &format!(
                    "cache_sync_listen = \"{}\"\ncache_sync_key = \"{}\"",
                    sync[me], keys[me]
                ),
            ),
        )
    });
    SyncPair { api, auth, config }
}

/// The one multi-chassis peer of the daemon at `api`, as `show python statistics --json`
/// reports it.
fn sync_peer(api: SocketAddr) -> serde_json::Value {
    brasa_json(api, &["show", "python", "statistics"])["caches"]["sync"]["peers"][0].clone()
}

#[test]
fn serial_python_caches_sync_between_two_daemons_and_a_restarted_one_resyncs() {
    let dir = tempfile::tempdir().unwrap();
    let pair = sync_pair(1, 2, ["bng-pair", "bng-pair"], ["s3cret", "s3cret"]);
    let (api_a, api_b) = (pair.api[0], pair.api[1]);
    let auth_a = pair.auth[0];
    let (config_a, config_b) = (&pair.config[0], &pair.config[1]);
    let _a = start_brasa(&dir.path().join("a"), config_a, api_a);
    let mut b = start_brasa(&dir.path().join("b"), config_b, api_b);

    authenticate(auth_a);
    eventually("the entry on b", Duration::from_secs(20), || {
        dump(api_b, "python-policy-1")
            .first()
            .is_some_and(|e| e["value_hex"] == CLASS_ENTRY_HEX)
    });

    // b dies and comes back empty; a's link reconnects and resynchronises it.
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    drop(b);
    let _b = start_brasa(&dir.path().join("b"), config_b, api_b);
    eventually("the resync of b", Duration::from_secs(30), || {
        dump(api_b, "python-policy-1")
            .first()
            .is_some_and(|e| e["key"] == MAC)
    });
    // A clear on b reaches a.
    clear_entry(api_b, "python-policy-1", "--string-key", MAC);
    eventually("the clear on a", Duration::from_secs(20), || {
        dump(api_a, "python-policy-1").is_empty()
    });
    for api in [api_a, api_b] {
        let peer = sync_peer(api);
        assert_eq!(peer["outbound"]["state"], "synchronised", "{peer}");
        assert_eq!(peer["inbound"]["state"], "synchronised", "{peer}");
        assert_eq!(peer["outbound"]["auth_failures"], 0, "{peer}");
    }
}

/// Starts both nodes of `pair`, saves an entry on each, and waits until both directions of
/// both links show `state`; then checks that nothing crossed and that the key never reached
/// a log, the statistics or the metrics. Returns the running daemons.
fn refused_sync(
    dir: &Path,
    pair: &SyncPair,
    state: &str,
    counter: &str,
    secrets: [&str; 2],
) -> [Daemon; 2] {
    let a = start_brasa(&dir.join("a"), &pair.config[0], pair.api[0]);
    let b = start_brasa(&dir.join("b"), &pair.config[1], pair.api[1]);
    authenticate(pair.auth[0]);
    assert_eq!(dump(pair.api[0], "python-policy-1").len(), 1);
    for api in pair.api {
        eventually(
            &format!("{state} on both directions of {api}"),
            Duration::from_secs(20),
            || {
                let peer = sync_peer(api);
                peer["outbound"]["state"] == state && peer["inbound"]["state"] == state
            },
        );
    }
    // The refusal is counted, the dialling side sent no event, and nothing crossed.
    for api in pair.api {
        let peer = sync_peer(api);
        assert!(peer["outbound"][counter].as_u64().unwrap() >= 1, "{peer}");
        assert!(peer["inbound"][counter].as_u64().unwrap() >= 1, "{peer}");
        assert_eq!(peer["outbound"]["resync_events"], 0, "{peer}");
        assert_eq!(peer["outbound"]["events_sent"], 0, "{peer}");
        assert_eq!(peer["inbound"]["applied"], 0, "{peer}");
        let metrics = http_get(api, "/metrics");
        let series = format!("direction=\"outbound\",state=\"{state}\"}} 1");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("brasa_python_cache_peer_state{") && l.ends_with(&series)),
            "{metrics}"
        );
        let human = brasa(api, &["show", "python", "statistics"]);
        let human = String::from_utf8_lossy(&human.stdout).into_owned();
        assert!(human.contains(state), "{human}");
        for secret in secrets {
            assert!(!metrics.contains(secret) && !human.contains(secret));
        }
    }
    assert!(dump(pair.api[1], "python-policy-1").is_empty());
    for daemon in [&a, &b] {
        let log = daemon.log_text();
        for secret in secrets {
            assert!(!log.contains(secret), "the key is in the log:\n{log}");
        }
    }
    [a, b]
}

#[test]
fn serial_python_cache_sync_with_differing_tags_shows_tag_mismatch_and_replicates_nothing() {
    let pair = sync_pair(
        11,
        12,
        ["bng-pair", "bng-pear"],
        ["k3y-shared", "k3y-shared"],
    );
    let dir = tempfile::tempdir().unwrap();
    let _daemons = refused_sync(
        dir.path(),
        &pair,
        "tag-mismatch",
        "tag_mismatches",
        ["k3y-shared", "k3y-shared"],
    );
    let peer = sync_peer(pair.api[0]);
    let error = peer["outbound"]["last_error"].as_str().unwrap();
    assert!(
        error.contains("only here [\"bng-pair\"], only on the peer [\"bng-pear\"]"),
        "{error}"
    );
}

#[test]
fn serial_python_cache_sync_with_a_wrong_key_is_refused_and_replicates_nothing() {
    let pair = sync_pair(21, 22, ["bng-pair", "bng-pair"], ["right-k3y", "wrong-k3y"]);
    let dir = tempfile::tempdir().unwrap();
    refused_sync(
        dir.path(),
        &pair,
        "auth-failed",
        "auth_failures",
        ["right-k3y", "wrong-k3y"],
    );
}

const UTF8_USER: &str = "Zoë O'Brien+vlan/42@fibre.example";

const UTF8_SCRIPT: &str = r#"from alc import radius, cache
# Every accounting request stores its User-Name; two keys no dump can print as text come along.
cache.save(b"seen", radius.attributes.get(1))
cache.save(b"bell", b"ring\x07")
cache.save(b"binary", b"\xff\xfe")
"#;

#[test]
fn serial_python_utf8_cache_keys_are_shown_as_text_and_work_as_string_keys() {
    let dir = tempfile::tempdir().unwrap();
    let brasa_dir = dir.path().join("brasa");
    std::fs::create_dir_all(&brasa_dir).unwrap();
    std::fs::write(brasa_dir.join("names.py"), UTF8_SCRIPT).unwrap();
    let api = api_address();
    let acct = free_udp_port("127.0.0.1");
    let python = r#"[python]
[[python.script]]
name = "names"
file = "names.py"
[[python.policy]]
name = "names"
radius = [{ message = "accounting-request", direction = "egress", script = "names" }]
[python.policy.cache]
"#;
    let config = local_python_config(api, &[(acct, "names")], python);
    let _daemon = start_brasa(&brasa_dir, &config, api);
    send_accounting(acct, UTF8_USER);

    assert_eq!(entry(api, UTF8_USER.as_bytes())["key"], UTF8_USER);
    assert_eq!(
        entry(api, b"ring\x07")["key"],
        "ring\u{7}",
        "valid UTF-8 is text in JSON"
    );
    assert_eq!(entry(api, b"\xff\xfe")["key"], serde_json::Value::Null);

    let human = brasa(
        api,
        &["tools", "dump", "python", "python-policy", "names", "cache"],
    );
    let human = String::from_utf8_lossy(&human.stdout).into_owned();
    assert!(
        human.contains(&format!("Key       : {UTF8_USER}\n")),
        "{human}"
    );
    assert!(
        human.contains("Key       : (hex) 72 69 6e 67 07\n"),
        "{human}"
    );
    assert!(human.contains("Key       : (hex) ff fe\n"), "{human}");

    let done = brasa_json(
        api,
        &[
            "tools",
            "perform",
            "python-policy",
            "names",
            "cache",
            "--string-key",
            UTF8_USER,
            "set-lifetime",
            "120",
        ],
    );
    assert_eq!(done["lifetime"], 120);
    assert!(
        done["detail"].as_str().unwrap().contains(UTF8_USER),
        "{done}"
    );
    assert!(remaining_ms(&entry(api, UTF8_USER.as_bytes())) <= 120_000);
    let cleared = clear_entry(api, "names", "--string-key", UTF8_USER);
    assert!(String::from_utf8_lossy(&cleared.stdout).contains(UTF8_USER));
    assert_eq!(
        dump(api, "names").len(),
        2,
        "only the UTF-8 entry was cleared"
    );
}

/// The entry with key `key` in the dump of policy `names` now.
fn entry(api: SocketAddr, key: &[u8]) -> serde_json::Value {
    let key_hex = key
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    dump(api, "names")
        .into_iter()
        .find(|e| e["key_hex"] == key_hex.as_str())
        .unwrap_or_else(|| panic!("no entry with key {key_hex}"))
}

#[test]
fn the_python_example_config_is_valid() {
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python/python-cache.toml");
    let output = Command::new(BRASA)
        .args(["--json", "check", "-c"])
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["python"]["scripts"], 1);
    assert_eq!(summary["python"]["caches"], 1);
}

#[test]
fn python_config_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.py");
    std::fs::write(&script, "pass\n").unwrap();
    let check = |python: &str| -> String {
        let path = dir.path().join("bad.toml");
        std::fs::write(
            &path,
            format!("[radius]\n[[radius.server]]\nname = \"s\"\nlocal = \"db\"\npython_policy = \"p\"\n[[radius.local]]\nname = \"db\"\n{python}"),
        )
        .unwrap();
        let output = Command::new(BRASA)
            .args(["check", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let base = "[python]\n[[python.script]]\nname = \"s\"\nfile = \"s.py\"\n[[python.policy]]\nname = \"p\"\n";
    let err = check(&format!(
        "{base}radius = [{{ message = \"access-accept\", direction = \"egress\", script = \"s\" }}]\n"
    ));
    assert!(err.contains("bad.toml:14:"), "{err}");
    assert!(err.contains("access-accept travels ingress"), "{err}");
    let err = check(&format!(
        "{base}radius = [{{ message = \"accounting-request\", direction = \"egress\", script = \"nope\" }}]\n"
    ));
    assert!(err.contains("no [[python.script]] named \"nope\""), "{err}");
    let err = check(&format!(
        "{base}[python.policy.cache]\nmcs_peer = \"127.0.0.2\"\nsync_tag = \"t\"\n"
    ));
    assert!(err.contains("bad.toml:15:12"), "{err}");
    assert!(err.contains("needs [python] cache_sync_listen"), "{err}");
    let err = check(&format!(
        "{base}[python.policy.cache]\nentry_size = \"lots\"\n"
    ));
    assert!(err.contains("bad.toml:15:14"), "{err}");
    assert!(err.contains("invalid size \"lots\""), "{err}");
    let err = check(&format!(
        "[python]\ncache_sync_listen = \"127.0.0.1:7791\"\n{}",
        &base["[python]\n".len()..]
    ));
    assert!(err.contains("bad.toml:9:21"), "{err}");
    assert!(
        err.contains("cache_sync_listen needs cache_sync_key"),
        "{err}"
    );
    let err = check(&format!(
        "[python]\ncache_sync_key = \"\"\ncache_sync_listen = \"127.0.0.1:7791\"\n{}",
        &base["[python]\n".len()..]
    ));
    assert!(err.contains("bad.toml:9:18"), "{err}");
    assert!(err.contains("must not be empty"), "{err}");
    let err = check("[python]\n[[python.script]]\nname = \"s\"\nfile = \"missing.py\"\n[[python.policy]]\nname = \"p\"\n");
    assert!(err.contains("bad.toml:11:8"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
}

// Caches shared through Redis (`backend = "redis"`): the document's class reflection across two
// nodes, the Access-Accept through node A and the accounting through node B, with a throw-away
// redis-server; Redis killed mid-run (scripts take their action-on-fail, nothing hangs) and back.

/// `tools dump python python-policy python-policy-1 cache`.
const DUMP_COMMAND: &[&str] = &[
    "tools",
    "dump",
    "python",
    "python-policy",
    "python-policy-1",
    "cache",
];

/// One node: the document's RADIUS server policy proxying to FreeRADIUS, the seed script on
/// access-accept (ingress) and accounting-request (egress), its cache in Redis at `redis`.
struct Node {
    daemon: Daemon,
    api: SocketAddr,
    auth: SocketAddr,
    acct: SocketAddr,
}

fn start_node(dir: &Path, freeradius: &FreeRadius, redis: &str) -> Node {
    let api = api_address();
    let (auth, acct) = (free_udp_port("127.0.0.1"), free_udp_port("127.0.0.1"));
    let cache = format!(
        "backend = \"redis\"\nmax_entry_lifetime = \"0d 01:00:00\"\n[python.redis]\nurl = \"{redis}\"\ntimeout = \"100ms\"\nconnect_timeout = \"200ms\"\n"
    );
    let config = document_proxy_config(
        api,
        (auth, acct),
        freeradius,
        "time_limit = \"500ms\"\ndebug = true\n",
        &cache,
    );
    let daemon = start_brasa(dir, &config, api);
    Node {
        daemon,
        api,
        auth: format!("127.0.0.1:{auth}").parse().unwrap(),
        acct: format!("127.0.0.1:{acct}").parse().unwrap(),
    }
}

impl Node {
    fn authenticate(&self) -> bool {
        let output = radclient(
            self.auth,
            "auth",
            NAS_SECRET,
            &format!("User-Name = \"{MAC}\", User-Password = \"{MAC}\""),
            &["-r", "1", "-t", "2"],
        );
        String::from_utf8_lossy(&output.stdout).contains("Access-Accept")
    }

    fn account(&self, status: &str) -> bool {
        let output = radclient(
            self.acct,
            "acct",
            NAS_SECRET,
            &format!(
                "User-Name = \"{MAC}\", Acct-Status-Type = {status}, Acct-Session-Id = \"{MAC}|1/1/9\", NAS-IP-Address = 127.0.0.1"
            ),
            &["-r", "1", "-t", "2"],
        );
        String::from_utf8_lossy(&output.stdout).contains("Accounting-Response")
    }

    fn redis_connected(&self) -> bool {
        python_statistics(self.api)["redis"]["connected"] == true
    }
}

/// How many accounting requests of `status` reached FreeRADIUS with the three Class values.
fn reflected(freeradius: &FreeRadius, status: &str) -> usize {
    freeradius
        .detail()
        .split("\n\n")
        .filter(|record| {
            record.contains(&format!("Acct-Status-Type = {status}"))
                && ["Class-1", "Class-22", "Class-333"]
                    .iter()
                    .all(|class| record.contains(&format!("Class = 0x{}", hex(class))))
        })
        .count()
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn serial_redis_class_reflection_across_two_nodes_survives_a_redis_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path(), "");
    let freeradius = start_document_freeradius(dir.path());
    let a = start_node(&dir.path().join("a"), &freeradius, &redis.url());
    let b = start_node(&dir.path().join("b"), &freeradius, &redis.url());
    for node in [&a, &b] {
        eventually(
            "both nodes connected to Redis",
            Duration::from_secs(20),
            || node.redis_connected(),
        );
    }

    // The Access-Accept passes node A, whose script saves the Class attributes in Redis.
    assert!(a.authenticate(), "{}", a.daemon.log_text());
    // Node B sees the entry, in the document's dump layout.
    let entries = dump(b.api, "python-policy-1");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["key"], MAC);
    assert_eq!(entries[0]["value_hex"], CLASS_ENTRY_HEX);
    assert_eq!(entries[0]["ddp_key"], "N/A");
    // Accounting through node B: its script reflects the Class attributes node A stored.
    for status in ["Start", "Interim-Update"] {
        assert!(b.account(status), "{status}: {}", b.daemon.log_text());
    }
    assert_eq!(
        reflected(&freeradius, "Start"),
        1,
        "{}",
        freeradius.detail()
    );
    assert_eq!(reflected(&freeradius, "Interim-Update"), 1);
    // B's Interim-Update set 900 s; node A's dump shows it.
    let left = remaining_ms(&dump(a.api, "python-policy-1")[0]);
    assert!((800_000..=900_000).contains(&left), "{left} ms");
    // The tools of either node act on the shared entry.
    let set = brasa(
        a.api,
        &[
            "tools",
            "perform",
            "python-policy",
            "python-policy-1",
            "cache",
            "--string-key",
            MAC,
            "set-lifetime",
            "1200",
        ],
    );
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let left = remaining_ms(&dump(b.api, "python-policy-1")[0]);
    assert!((1_100_000..=1_200_000).contains(&left), "{left} ms");
    let human = brasa(b.api, DUMP_COMMAND);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains(&format!("Key       : {MAC}")), "{text}");
    assert!(text.contains("Time Left : 0d 00:"), "{text}");
    // `clear` on node B removes the entry node A saved, for both.
    clear_entry(b.api, "python-policy-1", "--string-key", MAC);
    assert!(dump(a.api, "python-policy-1").is_empty());
    assert!(a.authenticate(), "{}", a.daemon.log_text());

    // Redis freezes (SIGSTOP): the cache call gives up after the Redis timeout (100 ms), well
    // inside the script's time limit (500 ms), and the script takes action-on-fail (drop).
    redis.signal("STOP");
    assert!(
        !b.account("Interim-Update"),
        "dropped: Redis did not answer"
    );
    let stats = script_stats(b.api, "python-script-1");
    assert_eq!(stats["cache_failures"], 1, "{stats}");
    assert_eq!(stats["failed_dropped"], 1, "{stats}");
    assert_eq!(stats["timeouts"], 0, "{stats}");
    assert_eq!(python_statistics(b.api)["worker"]["queued"], 0);
    redis.signal("CONT");
    assert!(b.account("Interim-Update"), "{}", b.daemon.log_text());
    assert_eq!(reflected(&freeradius, "Interim-Update"), 2);

    // Redis dies mid-run: both nodes' scripts fail at once and take action-on-fail (drop);
    // nothing waits for Redis.
    redis.kill();
    assert!(!b.account("Interim-Update"), "dropped without its cache");
    assert!(!a.authenticate(), "dropped: the save failed");
    for node in [&a, &b] {
        let stats = script_stats(node.api, "python-script-1");
        assert!(stats["cache_failures"].as_u64().unwrap() >= 1, "{stats}");
        assert_eq!(stats["cache_failures"], stats["failed_dropped"], "{stats}");
        assert_eq!(stats["timeouts"], 0, "{stats}");
        let all = python_statistics(node.api);
        assert_eq!(all["worker"]["queued"], 0, "nothing stuck: {all}");
        assert!(all["redis"]["caches"][0]["entries"].is_null(), "{all}");
    }
    let failed = brasa(a.api, DUMP_COMMAND);
    assert!(!failed.status.success());
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("Redis"),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    let metrics = http_get(a.api, "/metrics");
    assert!(
        metrics.contains("brasa_python_redis_connected 0"),
        "{metrics}"
    );

    // Redis is back (empty: it had no persistence): the nodes reconnect by themselves and the
    // document's flow works again.
    redis.restart();
    for node in [&a, &b] {
        eventually("the nodes reconnect", Duration::from_secs(20), || {
            node.redis_connected()
        });
    }
    assert!(a.authenticate(), "{}", a.daemon.log_text());
    assert!(b.account("Start"), "{}", b.daemon.log_text());
    assert_eq!(reflected(&freeradius, "Start"), 2);
    // Accounting-Stop through node B clears the entry for everyone.
    assert!(b.account("Stop"));
    assert!(dump(a.api, "python-policy-1").is_empty());
    let metrics = http_get(b.api, "/metrics");
    assert!(
        metrics.contains("brasa_python_redis_connected 1"),
        "{metrics}"
    );
    // B's clears: the tool's, and the script's on Accounting-Stop.
    assert!(
        metrics.contains("brasa_python_redis_cache_clears_total{policy=\"python-policy-1\"} 2"),
        "{metrics}"
    );
}

#[test]
fn redis_cache_config_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.py"), "pass\n").unwrap();
    let check = |python: &str| -> (bool, String, String) {
        let path = dir.path().join("bad.toml");
        std::fs::write(
            &path,
            format!("[radius]\n[[radius.server]]\nname = \"s\"\nlocal = \"db\"\npython_policy = \"p\"\nacct_listen = \"127.0.0.1:0\"\n[[radius.local]]\nname = \"db\"\n[python]\n[[python.script]]\nname = \"s\"\nfile = \"s.py\"\n[[python.policy]]\nname = \"p\"\n{python}"),
        )
        .unwrap();
        let output = Command::new(BRASA)
            .args(["--json", "check", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let redis = "[python.redis]\nurl = \"redis://127.0.0.1:1\"\n";
    let (ok, _, err) = check("[python.policy.cache]\nbackend = \"redis\"\n");
    assert!(!ok);
    assert!(err.contains("bad.toml:16:11"), "{err}");
    assert!(err.contains("needs a [python.redis] section"), "{err}");
    let (_, _, err) = check("[python.policy.cache]\nbackend = \"memcached\"\n");
    assert!(err.contains("invalid cache backend \"memcached\""), "{err}");
    let (_, _, err) = check(&format!(
        "[python.policy.cache]\nbackend = \"redis\"\npersistence = true\n{redis}"
    ));
    assert!(err.contains("bad.toml:16:11"), "{err}");
    assert!(err.contains("persists as Redis does"), "{err}");
    let (_, _, err) = check(&format!(
        "[python.policy.cache]\nbackend = \"redis\"\nmcs_peer = \"127.0.0.2\"\nsync_tag = \"t\"\n{redis}"
    ));
    assert!(
        err.contains("every node shares a Redis-backed cache"),
        "{err}"
    );
    let (_, _, err) = check(
        "[python.policy.cache]\nbackend = \"redis\"\n[python.redis]\nurl = \"redis+sentinel://:secret@h:1\"\n",
    );
    assert!(err.contains("bad.toml:18:7"), "{err}");
    assert!(err.contains("names no master"), "{err}");
    assert!(
        !err.contains("secret"),
        "passwords are never printed: {err}"
    );
    // Valid: Redis need not be reachable to check (or to start).
    let (ok, out, err) = check(&format!(
        "[python.policy.cache]\nbackend = \"redis\"\n{redis}"
    ));
    assert!(ok, "{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["python"]["redis_caches"], 1);
    assert_eq!(summary["python"]["caches"], 0);
}
