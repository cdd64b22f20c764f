//! Interop tests with real peers: radclient as the NAS, a real FreeRADIUS as the AAA server, and
//! the `brasa run` daemon in between (or answering alone, in local mode).

mod support;

use brasa_radius::{auth, Code, Dictionary, Message};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;
use support::*;

const NAS_SECRET: &str = "testing123";
const UPSTREAM_SECRET: &str = "upstream-secret";

fn stdout(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

const FREERADIUS_USERS: &str = r#"alice Cleartext-Password := "wonderland"
	Class = "Class-1",
	Class += "Class-22",
	Class += "Class-333",
	Alc-Subsc-ID-Str = "alice",
	Session-Timeout = 7200
DEFAULT Cleartext-Password := "secret"
"#;

/// Asserts that radclient received `code` (`Access-Accept`, `CoA-ACK`, …); otherwise fails with
/// its output and the log of `daemon`, if given.
#[track_caller]
fn assert_received(output: &std::process::Output, code: &str, daemon: Option<&Daemon>) {
    let text = stdout(output);
    assert!(
        text.contains(&format!("Received {code}")),
        "{text}\n{}",
        daemon.map(Daemon::log_text).unwrap_or_default()
    );
}

fn local_config(api: SocketAddr, auth: u16, acct: u16, require_ma: bool) -> String {
    format!(
        r#"data_dir = "data"
[api]
listen = "{api}"
[radius]
[[radius.client]]
name = "nas-1"
address = "127.0.0.1"
secret = "{NAS_SECRET}"
require_message_authenticator = {require_ma}
[[radius.server]]
name = "local"
auth_listen = "127.0.0.1:{auth}"
acct_listen = "127.0.0.1:{acct}"
local = "users"
[[radius.local]]
name = "users"
[[radius.local.user]]
name = "alice"
password = "wonderland"
reply = [
  'Class = "Class-1"',
  'Class = "Class-22"',
  'Class = "Class-333"',
  'Alc-Subsc-ID-Str = "alice"',
  'Tunnel-Type:1 = VLAN',
  'Tunnel-Private-Group-Id:1 = "100"',
]
"#
    )
}

/// brasa in local mode on free loopback ports.
struct LocalSetup {
    dir: tempfile::TempDir,
    brasa: Daemon,
    api: SocketAddr,
    auth: SocketAddr,
    acct: SocketAddr,
}

fn local_setup(require_ma: bool) -> LocalSetup {
    let dir = tempfile::tempdir().unwrap();
    let api: SocketAddr = format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"))
        .parse()
        .unwrap();
    let (auth_port, acct_port) = (free_udp_port("127.0.0.1"), free_udp_port("127.0.0.1"));
    let brasa = start_brasa(
        dir.path(),
        &local_config(api, auth_port, acct_port, require_ma),
        api,
    );
    LocalSetup {
        dir,
        brasa,
        api,
        auth: format!("127.0.0.1:{auth_port}").parse().unwrap(),
        acct: format!("127.0.0.1:{acct_port}").parse().unwrap(),
    }
}

#[test]
fn serial_radius_local_mode_answers_radclient() {
    let setup = local_setup(false);
    let (dir, brasa, api) = (&setup.dir, &setup.brasa, setup.api);
    let (auth_addr, acct_addr) = (setup.auth, setup.acct);

    let output = radclient(
        auth_addr,
        "auth",
        NAS_SECRET,
        "User-Name = alice, User-Password = wonderland",
        &[],
    );
    let text = stdout(&output);
    assert!(
        text.contains("Received Access-Accept"),
        "{text}\n{}",
        brasa.log_text()
    );
    let lines = reply_lines(&output);
    assert_eq!(
        lines,
        vec![
            "Class = 0x436c6173732d31",
            "Class = 0x436c6173732d3232",
            "Class = 0x436c6173732d333333",
            "Alc-Subsc-ID-Str = \"alice\"",
            "Tunnel-Type:1 = VLAN",
            "Tunnel-Private-Group-Id:1 = \"100\"",
        ],
        "{text}"
    );

    let output = radclient(
        auth_addr,
        "auth",
        NAS_SECRET,
        "User-Name = alice, User-Password = wrong",
        &[],
    );
    assert_received(&output, "Access-Reject", None);

    for status in ["Start", "Interim-Update", "Stop"] {
        // radclient computes a Message-Authenticator when the attribute is listed (over a zero
        // Request Authenticator for accounting, as FreeRADIUS does).
        let input = format!("User-Name = alice, Acct-Status-Type = {status}, Acct-Session-Id = \"s-1\", Class = 0x436c6173732d31, Class = 0x436c6173732d3232, Message-Authenticator = 0x00");
        let output = radclient(acct_addr, "acct", NAS_SECRET, &input, &[]);
        assert_received(&output, "Accounting-Response", None);
    }
    let log = std::fs::read_to_string(dir.path().join("data/radius/accounting.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3, "{log}");
    let statuses: Vec<&str> = records
        .iter()
        .map(|r| r["attributes"]["Acct-Status-Type"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["Start", "Interim-Update", "Stop"]);
    assert_eq!(records[0]["client"], "nas-1");
    assert_eq!(
        records[0]["attributes"]["Class"].as_array().unwrap().len(),
        2
    );
    assert!(records[0]["time"].as_f64().unwrap() > 1.0e9);

    let stats = show_json(api, "show radius statistics");
    let client = &stats["clients"][0];
    assert_eq!(client["accepts"], 1);
    assert_eq!(client["rejects"], 1);
    assert_eq!(client["accounting_responses"], 3);

    let metrics = http_get(api, "/metrics");
    assert!(
        metrics.contains("# TYPE brasa_radius_client_accepts_total counter"),
        "{metrics}"
    );
    assert!(
        metrics.contains("brasa_radius_client_accepts_total{client=\"nas-1\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("brasa_radius_client_rejects_total{client=\"nas-1\"} 1\n"),
        "{metrics}"
    );
}

/// The accounting log holds plain JSON values, not radclient's quoted text: strings unquoted,
/// integers as numbers, enumerated values by name, addresses as text, octets as `0x` hex, and
/// repeated attributes as arrays.
#[test]
fn serial_radius_accounting_log_holds_plain_json_values() {
    let setup = local_setup(false);
    let input = "User-Name = \"alice\", Acct-Status-Type = Start, Acct-Session-Id = \"sess-42\", \
                 Acct-Input-Octets = 1234, Acct-Session-Time = 0, Framed-IP-Address = 127.0.0.9, \
                 Class = 0x436c6173732d31, Class = 0x0102, Event-Timestamp = 1700000000, \
                 NAS-Port-Type = Ethernet";
    let output = radclient(setup.acct, "acct", NAS_SECRET, input, &[]);
    assert_received(&output, "Accounting-Response", Some(&setup.brasa));
    let log =
        std::fs::read_to_string(setup.dir.path().join("data/radius/accounting.jsonl")).unwrap();
    let record: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    let attributes = &record["attributes"];
    assert_eq!(attributes["User-Name"], "alice", "{log}");
    assert_eq!(attributes["Acct-Session-Id"], "sess-42", "{log}");
    assert_eq!(attributes["Acct-Status-Type"], "Start", "{log}");
    assert_eq!(attributes["Acct-Input-Octets"], 1234, "{log}");
    assert_eq!(attributes["Acct-Session-Time"], 0, "{log}");
    assert_eq!(attributes["Framed-IP-Address"], "127.0.0.9", "{log}");
    assert_eq!(
        attributes["Class"],
        serde_json::json!(["0x436c6173732d31", "0x0102"]),
        "{log}"
    );
    assert_eq!(attributes["Event-Timestamp"], 1_700_000_000, "{log}");
    assert_eq!(attributes["NAS-Port-Type"], "Ethernet", "{log}");
}

fn proxy_config(
    api: SocketAddr,
    auth: u16,
    acct: u16,
    coa: u16,
    nas_coa_port: u16,
    auth_servers: &[SocketAddr],
    acct_servers: &[SocketAddr],
) -> String {
    let mut text = format!(
        r#"data_dir = "data"
[api]
listen = "{api}"
[radius]
coa_listen = "127.0.0.1:{coa}"
[[radius.client]]
name = "nas-1"
address = "127.0.0.1"
secret = "{NAS_SECRET}"
coa_port = {nas_coa_port}
[[radius.server]]
name = "edge"
auth_listen = "127.0.0.1:{auth}"
acct_listen = "127.0.0.1:{acct}"
proxy = "aaa"
[[radius.pool]]
name = "aaa"
load_balance = "failover"
timeout = "1s"
retries = 1
dead_after_timeouts = 1
status_check_interval = "1s"
"#
    );
    for (index, server) in auth_servers.iter().enumerate() {
        text.push_str(&format!(
            "[[radius.pool.auth_server]]\nname = \"auth-{index}\"\naddress = \"{server}\"\nsecret = \"{UPSTREAM_SECRET}\"\n"
        ));
    }
    for (index, server) in acct_servers.iter().enumerate() {
        text.push_str(&format!(
            "[[radius.pool.acct_server]]\nname = \"acct-{index}\"\naddress = \"{server}\"\nsecret = \"{UPSTREAM_SECRET}\"\n"
        ));
    }
    text
}

struct ProxySetup {
    _dir: tempfile::TempDir,
    freeradius: FreeRadius,
    brasa: Daemon,
    api: SocketAddr,
    auth: SocketAddr,
    acct: SocketAddr,
    coa: SocketAddr,
    nas_coa: UdpSocket,
}

fn proxy_setup(dead_first_server: bool) -> ProxySetup {
    let dir = tempfile::tempdir().unwrap();
    let freeradius = start_freeradius(
        &dir.path().join("freeradius"),
        "127.0.0.1",
        &[("127.0.0.1", UPSTREAM_SECRET)],
        FREERADIUS_USERS,
        "",
        None,
        true,
    );
    let api: SocketAddr = format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"))
        .parse()
        .unwrap();
    let (auth, acct, coa) = (
        free_udp_port("127.0.0.1"),
        free_udp_port("127.0.0.1"),
        free_udp_port("127.0.0.1"),
    );
    let nas_coa = UdpSocket::bind("127.0.0.1:0").unwrap();
    let nas_coa_port = nas_coa.local_addr().unwrap().port();
    let mut auth_servers = Vec::new();
    if dead_first_server {
        // Nothing listens there: every request to it times out.
        auth_servers.push(
            format!("127.0.0.1:{}", free_udp_port("127.0.0.1"))
                .parse()
                .unwrap(),
        );
    }
    auth_servers.push(freeradius.auth);
    let config = proxy_config(
        api,
        auth,
        acct,
        coa,
        nas_coa_port,
        &auth_servers,
        &[freeradius.acct],
    );
    let brasa = start_brasa(&dir.path().join("brasa"), &config, api);
    ProxySetup {
        _dir: dir,
        freeradius,
        brasa,
        api,
        auth: format!("127.0.0.1:{auth}").parse().unwrap(),
        acct: format!("127.0.0.1:{acct}").parse().unwrap(),
        coa: format!("127.0.0.1:{coa}").parse().unwrap(),
        nas_coa,
    }
}

#[test]
fn serial_radius_proxy_returns_freeradius_reply_unchanged_and_proxies_accounting() {
    let setup = proxy_setup(false);
    let request = "User-Name = alice, User-Password = wonderland, NAS-Port = 7";
    let direct = radclient(setup.freeradius.auth, "auth", UPSTREAM_SECRET, request, &[]);
    let proxied = radclient(setup.auth, "auth", NAS_SECRET, request, &[]);
    assert_received(&direct, "Access-Accept", None);
    assert_received(&proxied, "Access-Accept", Some(&setup.brasa));
    let direct_lines = reply_lines(&direct);
    assert_eq!(direct_lines.len(), 5, "{}", stdout(&direct));
    assert_eq!(reply_lines(&proxied), direct_lines);

    let rejected = radclient(
        setup.auth,
        "auth",
        NAS_SECRET,
        "User-Name = alice, User-Password = nope",
        &[],
    );
    assert_received(&rejected, "Access-Reject", None);

    for status in ["Start", "Interim-Update", "Stop"] {
        let input = format!(
            "User-Name = alice, Acct-Status-Type = {status}, Acct-Session-Id = \"acct-77\", Class = 0x436c6173732d31"
        );
        let output = radclient(setup.acct, "acct", NAS_SECRET, &input, &[]);
        assert_received(&output, "Accounting-Response", None);
    }
    let detail = setup.freeradius.detail();
    for status in ["Start", "Interim-Update", "Stop"] {
        assert!(
            detail.contains(&format!("Acct-Status-Type = {status}")),
            "{detail}"
        );
    }
    assert_eq!(
        detail.matches("Acct-Session-Id = \"acct-77\"").count(),
        3,
        "{detail}"
    );
    assert_eq!(
        detail.matches("Class = 0x436c6173732d31").count(),
        3,
        "{detail}"
    );

    let stats = show_json(setup.api, "show radius statistics");
    let upstreams = stats["upstreams"].as_array().unwrap();
    let auth = upstreams.iter().find(|u| u["name"] == "auth-0").unwrap();
    assert_eq!(auth["accepts"], 1);
    assert_eq!(auth["rejects"], 1);
    let acct = upstreams.iter().find(|u| u["name"] == "acct-0").unwrap();
    assert_eq!(acct["accounting_responses"], 3);
    assert_eq!(stats["clients"][0]["accounting_responses"], 3);
}

#[test]
fn serial_radius_upstream_timeout_fails_over_to_the_second_server() {
    let setup = proxy_setup(true);
    let output = radclient(
        setup.auth,
        "auth",
        NAS_SECRET,
        "User-Name = alice, User-Password = wonderland",
        &[],
    );
    assert_received(&output, "Access-Accept", Some(&setup.brasa));
    let stats = show_json(setup.api, "show radius statistics");
    let upstreams = stats["upstreams"].as_array().unwrap();
    let first = upstreams.iter().find(|u| u["name"] == "auth-0").unwrap();
    let second = upstreams.iter().find(|u| u["name"] == "auth-1").unwrap();
    assert!(first["timeouts"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(first["state"], "dead", "{stats}");
    assert_eq!(second["accepts"], 1, "{stats}");
    assert_eq!(second["retransmissions"], 1, "{stats}");
    // While the first server is dead, requests go straight to the second one, and the first
    // is probed with Status-Server.
    let output = radclient(
        setup.auth,
        "auth",
        NAS_SECRET,
        "User-Name = bob, User-Password = secret",
        &[],
    );
    assert_received(&output, "Access-Accept", None);
    eventually(
        "a Status-Server probe to the dead server",
        Duration::from_secs(10),
        || {
            let stats = show_json(setup.api, "show radius statistics");
            stats["upstreams"][0]["status_probes"].as_u64().unwrap_or(0) >= 1
        },
    );
}

#[test]
fn serial_radius_coa_from_the_aaa_server_reaches_the_nas() {
    let setup = proxy_setup(false);
    // The session becomes known to brasa through accounting.
    let start = "User-Name = alice, Acct-Status-Type = Start, Acct-Session-Id = \"sess-42\", Framed-IP-Address = 127.0.0.99";
    let output = radclient(setup.acct, "acct", NAS_SECRET, start, &[]);
    assert_received(&output, "Accounting-Response", None);

    // The test plays the NAS: answer one CoA with CoA-ACK, checking what arrives.
    let nas = setup.nas_coa.try_clone().unwrap();
    nas.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let nas_thread = std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        let (length, from) = nas.recv_from(&mut buffer).unwrap();
        let bytes = &buffer[..length];
        assert!(
            auth::verify_request(bytes, NAS_SECRET.as_bytes()),
            "CoA not signed with the NAS secret"
        );
        let request = Message::decode(bytes).unwrap();
        assert_eq!(request.code, Code::CoaRequest);
        let mut ack = Message::new(Code::CoaAck, request.identifier);
        for state in request.get_all(33) {
            ack.add(33, state).unwrap();
        }
        ack.authenticator = request.authenticator;
        let mut reply = ack.encode().unwrap();
        auth::sign_response(&mut reply, &request.authenticator, NAS_SECRET.as_bytes());
        nas.send_to(&reply, from).unwrap();
        Dictionary::builtin()
            .decode_pairs(&request, None)
            .iter()
            .map(|p| p.to_text(&Dictionary::builtin()))
            .collect::<Vec<_>>()
    });
    let coa = radclient(
        setup.coa,
        "coa",
        UPSTREAM_SECRET,
        "Acct-Session-Id = \"sess-42\", Session-Timeout = 60",
        &[],
    );
    assert_received(&coa, "CoA-ACK", Some(&setup.brasa));
    let seen_by_nas = nas_thread.join().unwrap();
    assert!(
        seen_by_nas.contains(&"Session-Timeout = 60".to_string()),
        "{seen_by_nas:?}"
    );
    assert!(
        seen_by_nas.contains(&"Acct-Session-Id = \"sess-42\"".to_string()),
        "{seen_by_nas:?}"
    );

    // A session nobody reported gets a NAK with Error-Cause 503.
    let nak = radclient(
        setup.coa,
        "disconnect",
        UPSTREAM_SECRET,
        "Acct-Session-Id = \"unknown\"",
        &[],
    );
    let text = stdout(&nak);
    assert!(text.contains("Received Disconnect-NAK"), "{text}");
    assert!(
        text.contains("Error-Cause = Session-Context-Not-Found"),
        "{text}"
    );
    let stats = show_json(setup.api, "show radius statistics");
    assert_eq!(stats["clients"][0]["coa_relayed"], 1);
    assert_eq!(stats["coa_unroutable"], 1);
}

/// Builds an Access-Request for alice, optionally with a Message-Authenticator.
fn access_request(id: u8, secret: &str, with_ma: bool, corrupt_ma: bool) -> Vec<u8> {
    let dictionary = Dictionary::builtin();
    let mut packet = Message::new(Code::AccessRequest, id);
    packet.authenticator = [id; 16];
    if with_ma {
        packet.add(80, [0; 16]).unwrap();
    }
    for pair in dictionary
        .parse_pairs("User-Name = alice, User-Password = wonderland")
        .unwrap()
    {
        dictionary
            .add_pair(&mut packet, &pair, secret.as_bytes(), &[id; 16])
            .unwrap();
    }
    let mut bytes = packet.encode().unwrap();
    auth::fill_message_authenticator(&mut bytes, &[id; 16], secret.as_bytes());
    if corrupt_ma {
        // The Message-Authenticator is the first attribute: its value starts at byte 22.
        bytes[22] ^= 0x01;
    }
    bytes
}

#[test]
fn serial_radius_bad_input_is_dropped_and_counted_while_valid_traffic_is_answered() {
    let setup = local_setup(true);
    let (brasa, api) = (&setup.brasa, setup.api);
    let (auth_addr, acct_addr) = (setup.auth, setup.acct);
    let nas = UdpSocket::bind("127.0.0.1:0").unwrap();
    nas.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    // Malformed: random bytes, a truncated header, a Length that lies.
    nas.send_to(&[0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03], auth_addr)
        .unwrap();
    let valid = access_request(1, NAS_SECRET, true, false);
    nas.send_to(&valid[..12], auth_addr).unwrap();
    let mut lying = valid.clone();
    lying[2..4].copy_from_slice(&400u16.to_be_bytes());
    nas.send_to(&lying, auth_addr).unwrap();
    // Bad authenticators: no Message-Authenticator (required), a wrong one, and an
    // Accounting-Request signed with the wrong secret.
    nas.send_to(&access_request(2, NAS_SECRET, false, false), auth_addr)
        .unwrap();
    nas.send_to(&access_request(3, NAS_SECRET, true, true), auth_addr)
        .unwrap();
    let mut acct = Message::new(Code::AccountingRequest, 4);
    acct.add(40, 1u32.to_be_bytes()).unwrap();
    let mut acct_bytes = acct.encode().unwrap();
    auth::sign_request(&mut acct_bytes, b"not-the-secret");
    nas.send_to(&acct_bytes, acct_addr).unwrap();
    // An unknown client.
    let stranger = UdpSocket::bind("127.0.0.3:0").unwrap();
    stranger
        .send_to(&access_request(5, NAS_SECRET, true, false), auth_addr)
        .unwrap();

    // Valid traffic is still answered.
    nas.send_to(&access_request(6, NAS_SECRET, true, false), auth_addr)
        .unwrap();
    let mut buffer = [0u8; 4096];
    let (length, _) = nas
        .recv_from(&mut buffer)
        .expect("the valid request must be answered");
    let reply = Message::decode(&buffer[..length]).unwrap();
    assert_eq!(reply.code, Code::AccessAccept);
    assert_eq!(reply.identifier, 6);
    assert!(auth::verify_response(
        &buffer[..length],
        &[6; 16],
        NAS_SECRET.as_bytes()
    ));

    eventually("every bad packet counted", Duration::from_secs(10), || {
        let stats = show_json(api, "show radius statistics");
        let client = &stats["clients"][0];
        client["malformed"] == 3 && client["bad_authenticator"] == 3 && stats["unknown_client"] == 1
    });
    let stats = show_json(api, "show radius statistics");
    assert_eq!(
        stats["clients"][0]["accepts"],
        1,
        "{stats}\n{}",
        brasa.log_text()
    );
    assert_eq!(stats["clients"][0]["requests"], 1, "{stats}");
    // Nothing else came back: every bad packet was dropped silently.
    nas.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        nas.recv_from(&mut buffer).is_err(),
        "a bad packet was answered"
    );
}

#[test]
fn config_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[radius]\n[[radius.client]]\nname = \"x\"\naddress = \"not-an-ip\"\nsecret = \"s\"\n",
    )
    .unwrap();
    let output = std::process::Command::new(BRASA)
        .arg("check")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml:4:11: invalid client address \"not-an-ip\""),
        "{stderr}"
    );

    std::fs::write(&path, "[radius]\nbogus = 1\n").unwrap();
    let output = std::process::Command::new(BRASA)
        .arg("check")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml:2:1: unknown field `bogus`"),
        "{stderr}"
    );

    std::fs::write(
        &path,
        "[radius]\n[[radius.server]]\nname = \"s\"\nauth_listen = \"127.0.0.1:1812\"\nproxy = \"nowhere\"\n",
    )
    .unwrap();
    let output = std::process::Command::new(BRASA)
        .arg("check")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml:5:9: no [[radius.pool]] named \"nowhere\""),
        "{stderr}"
    );

    let output = std::process::Command::new(BRASA)
        .args(["check", "-c"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/proxy.toml"
        ))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn brasa_send(args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(BRASA)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn serial_brasa_radius_send_prints_replies_and_load_summaries() {
    let setup = local_setup(true);
    let api = setup.api;
    let server = setup.auth.to_string();

    let output = brasa_send(
        &["radius", "send", &server, "auth", NAS_SECRET],
        "User-Name = alice\nUser-Password = wonderland\n",
    );
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("Received Access-Accept"), "{text}");
    assert!(text.contains("\tClass = 0x436c6173732d333333"), "{text}");
    assert!(text.contains("\tTunnel-Type:1 = VLAN"), "{text}");

    // A reject exits non-zero; a wrong secret gets no answer (the server drops it).
    let output = brasa_send(
        &["radius", "send", &server, "auth", NAS_SECRET],
        "User-Name = alice, User-Password = bad",
    );
    assert!(!output.status.success());
    assert_received(&output, "Access-Reject", None);
    let output = brasa_send(
        &[
            "radius",
            "send",
            &server,
            "auth",
            "wrong-secret",
            "--timeout",
            "0.5",
        ],
        "User-Name = alice, User-Password = wonderland",
    );
    assert!(!output.status.success());
    assert!(stdout(&output).contains("no reply"), "{}", stdout(&output));

    let output = brasa_send(
        &[
            "--json",
            "radius",
            "send",
            &server,
            "auth",
            NAS_SECRET,
            "--count",
            "300",
            "--parallel",
            "8",
        ],
        "User-Name = alice, User-Password = wonderland",
    );
    assert!(output.status.success(), "{}", stdout(&output));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["sent"], 300);
    assert_eq!(summary["received"], 300);
    assert_eq!(summary["by_code"]["Access-Accept"], 300);
    assert!(
        summary["latency_ms_p99"].as_f64().unwrap() >= summary["latency_ms_p50"].as_f64().unwrap()
    );
    assert!(summary["rate_per_second"].as_f64().unwrap() > 0.0);

    let stats = show_json(api, "show radius statistics");
    assert_eq!(stats["clients"][0]["accepts"], 301, "{stats}");
    assert_eq!(stats["clients"][0]["bad_authenticator"], 1, "{stats}");
}

/// The README's quickstart: `brasa run` with no config answers radclient on 127.0.0.1:1812.
/// It runs in a private network namespace, so that the embedded default ports (1812, 1813,
/// 7780) never meet a FreeRADIUS service or another daemon running on this machine.
#[test]
fn serial_netns_quickstart_runs_on_the_embedded_defaults() {
    let ns = brasa_testkit::netns::Netns::new("quick");
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("brasa.log")).unwrap();
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, BRASA, "run"])
        .current_dir(dir.path())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let daemon = Daemon {
        child,
        log: dir.path().join("brasa.log"),
    };
    let api: SocketAddr = "127.0.0.1:7780".parse().unwrap();
    eventually("the quickstart API", Duration::from_secs(20), || {
        ns.enter(move || std::net::TcpStream::connect(api).is_ok())
    });
    let mut radclient = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "radclient",
            "-x",
            "-r",
            "2",
            "-t",
            "3",
        ])
        .args(["127.0.0.1:1812", "auth", "testing123"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    radclient
        .stdin
        .take()
        .unwrap()
        .write_all(b"User-Name = alice, User-Password = wonderland")
        .unwrap();
    let output = radclient.wait_with_output().unwrap();
    assert_received(&output, "Access-Accept", Some(&daemon));
    assert!(reply_lines(&output).contains(&"Alc-SLA-Prof-Str = \"sla-100M\"".to_string()));
    assert!(dir
        .path()
        .join("brasa-data/radius/accounting.jsonl")
        .exists());
    drop(daemon);
}
