//! `brasa rae` end to end: the Appendix A script (ported to Python 3, addresses on 127.0.0.x)
//! run with `config_pb2` generated from the repo's config.proto produces a file the daemon
//! starts from; the CME receives the domain's prefixes and provisioning; the show commands and
//! /metrics answer. Also `brasa rae convert` for the TOML equivalent.

mod process;

use brasa_rae::proto;
use brasa_rae::wire::{self, CmeMessage, Frame};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A CME that forwards every GenericRequest to the test and answers with a Reply.
fn start_cme() -> (u16, mpsc::Receiver<proto::GenericRequest>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                let n = stream.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buffer.extend_from_slice(&chunk[..n]);
                while let Ok(Some(len)) = wire::check_frame(&buffer) {
                    let frame = Frame::new_checked(&buffer[..len]).unwrap();
                    if let Ok(CmeMessage::GenericRequest(request)) = CmeMessage::parse(&frame) {
                        let mut out = Vec::new();
                        CmeMessage::Reply(proto::Reply {
                            version: 1,
                            sequence: request.sequence,
                        })
                        .emit(&mut out);
                        let _ = stream.write_all(&out);
                        let _ = tx.send(request);
                    }
                    buffer.drain(..len);
                }
            }
        }
    });
    (port, rx)
}

fn brasa(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_brasa"))
        .args(args)
        .output()
        .unwrap()
}

fn wait_for_api(api: &str) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if brasa(&["--api", api, "rae", "show", "peers"])
            .status
            .success()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn appendix_a_script_config_starts_the_daemon_and_reports_to_the_cme() {
    let dir = tempfile::tempdir().unwrap();
    let protoc = Command::new("python3")
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(repo_root().join("crates/proto/proto"))
        .arg("--python_out")
        .arg(dir.path())
        .arg("rae/config.proto")
        .output()
        .unwrap();
    assert!(
        protoc.status.success(),
        "{}",
        String::from_utf8_lossy(&protoc.stderr)
    );
    let (cme_port, requests) = start_cme();
    let rae_port = free_port("127.0.3.1");
    let config = dir.path().join("rae11.conf.pb2");
    let script = Command::new("python3")
        .arg(repo_root().join("examples/rae/make_config.py"))
        .arg(&config)
        .env("RAE_PB2_PATH", dir.path().join("rae"))
        .env("RAE_LOCAL_IP", "127.0.3.1")
        .env("RAE_PORT", rae_port.to_string())
        .env("RAE_CME_PORT", cme_port.to_string())
        .output()
        .unwrap();
    assert!(
        script.status.success(),
        "{}",
        String::from_utf8_lossy(&script.stderr)
    );

    let api_port = free_port("127.0.0.1");
    let api = format!("127.0.0.1:{api_port}");
    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_brasa"))
            .args(["rae", config.to_str().unwrap(), "--mgmt-listen", &api])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_for_api(&api), "management API never answered");

    // The CME gets the 2 prefixes × 2 classes and the 12 provisioning entries.
    let mut path_inf = Vec::new();
    let mut prov_inf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (path_inf.len() < 4 || prov_inf.len() < 12) && Instant::now() < deadline {
        if let Ok(request) = requests.recv_timeout(Duration::from_millis(200)) {
            assert_eq!(request.local_as_number, 11);
            path_inf.extend(request.path_inf);
            prov_inf.extend(request.prov_inf);
        }
    }
    assert_eq!(prov_inf.len(), 12);
    assert_eq!(path_inf.len(), 4);
    for p in &path_inf {
        assert_eq!(p.as_path, vec![11]);
        assert_eq!(p.rank, 1);
    }

    let peers = brasa(&["--api", &api, "--json", "rae", "show", "peers"]);
    assert!(peers.status.success());
    let peers: serde_json::Value = serde_json::from_slice(&peers.stdout).unwrap();
    let peer_as: Vec<u64> = peers
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["as_number"].as_u64().unwrap())
        .collect();
    assert_eq!(peer_as, vec![5, 9]);
    assert_eq!(peers[0]["ttl"], 3);

    let rib = brasa(&[
        "--api",
        &api,
        "--json",
        "rae",
        "show",
        "rib",
        "127.203.1.0/24",
        "--cos",
        "2",
    ]);
    assert!(
        rib.status.success(),
        "{}",
        String::from_utf8_lossy(&rib.stderr)
    );
    let rib: serde_json::Value = serde_json::from_slice(&rib.stdout).unwrap();
    assert_eq!(rib.as_array().unwrap().len(), 1);
    assert_eq!(rib[0]["prefix"], "127.203.1.0/24");
    assert_eq!(rib[0]["cos"], 2);

    let table = brasa(&["--api", &api, "rae", "show", "preferred"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("127.203.2.0/24") && text.contains("local"),
        "{text}"
    );

    let bad = brasa(&["--api", &api, "rae", "show", "rib", "not-a-prefix"]);
    assert!(!bad.status.success());

    let metrics = ureq_get(&format!("http://{api}/metrics"));
    assert!(metrics.contains("brasa_rae_routes 4"), "{metrics}");
    assert!(
        metrics.contains("brasa_rae_cme_replies_total "),
        "{metrics}"
    );
    assert!(
        metrics.contains("brasa_rae_peer_up{peer_as=\"5\"} 0"),
        "{metrics}"
    );
}

fn ureq_get(url: &str) -> String {
    let address = url.trim_start_matches("http://");
    let (host, path) = address.split_once('/').unwrap();
    let mut stream = TcpStream::connect(host).unwrap();
    write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn toml_config_converts_to_the_binary_message() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("rae11.conf.pb2");
    let converted = brasa(&[
        "rae",
        "convert",
        repo_root()
            .join("examples/rae/rae11.toml")
            .to_str()
            .unwrap(),
        "-o",
        output.to_str().unwrap(),
    ]);
    assert!(
        converted.status.success(),
        "{}",
        String::from_utf8_lossy(&converted.stderr)
    );
    let bytes = std::fs::read(&output).unwrap();
    let message =
        <proto::ConfigurationMessage as prost::Message>::decode(bytes.as_slice()).unwrap();
    assert_eq!(message.local_as_number, 11);
    assert_eq!(message.peer_table.len(), 2);
    assert_eq!(message.peer_table[1].remote_as_number, 9);
    assert_eq!(message.provisioning_table.len(), 2);

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "local_as_number = 1\nlocal_ip_adress = \"127.0.0.1\"\n",
    )
    .unwrap();
    let out = brasa(&["rae", "check", "--toml", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:2:1") && stderr.contains("local_ip_adress"),
        "{stderr}"
    );
}

/// examples/rae/rae11.toml with the RAE on `ip:rae_port` and its CME on 127.0.0.1:`cme_port`.
fn example_toml(ip: &str, rae_port: u16, cme_port: u16) -> String {
    std::fs::read_to_string(repo_root().join("examples/rae/rae11.toml"))
        .unwrap()
        .replace(
            "local_ip_address = \"127.0.3.1\"",
            &format!("local_ip_address = \"{ip}\""),
        )
        .replace(
            "local_port_number = 10001",
            &format!("local_port_number = {rae_port}"),
        )
        .replace(
            "cme_port_number = 9090",
            &format!("cme_port_number = {cme_port}"),
        )
}

fn start_from_toml(path: &Path, api: &str, stderr: Stdio) -> Daemon {
    Daemon(
        Command::new(env!("CARGO_BIN_EXE_brasa"))
            .args(["rae", "--config-from-toml", path.to_str().unwrap()])
            .args(["--mgmt-listen", api])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    )
}

#[test]
fn config_from_toml_starts_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let rae_port = free_port("127.0.3.2");
    let (cme_port, requests) = start_cme();
    let path = dir.path().join("rae.toml");
    std::fs::write(&path, example_toml("127.0.3.2", rae_port, cme_port)).unwrap();
    let api = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let _daemon = start_from_toml(&path, &api, Stdio::null());
    assert!(wait_for_api(&api), "management API never answered");
    let request = requests.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(request.full_state);
    assert_eq!(request.local_as_number, 11);
    assert_eq!(request.prov_inf.len(), 2);
    // Only the classes the provisioning table covers are the domain's own: 2 prefixes × 2.
    assert_eq!(request.path_inf.len(), 4);
}

/// Errors found by validation (not by the TOML parser) still name `file:line:col`, for
/// `check`, `convert` and the daemon itself.
#[test]
fn toml_config_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(repo_root().join("examples/rae/rae11.toml")).unwrap();
    let cases = [
        (
            ("remote_ip_address = \"127.0.9.1\"", "remote_ip_address = \"127.0.9\""),
            "bad.toml:43:21: peer_table[1].remote_ip_address: \"127.0.9\" is not an IPv4 address",
        ),
        (
            ("ttl_value = 4", "ttl_value = 0"),
            "bad.toml:45:13: peer_table[1].ttl_value: must be between 1 and 255",
        ),
        (
            ("{ cos_id = 2, metric = { loss_ratio = 4e-6", "{ cos_id = 2, metric = { loss_ratio = 4.0"),
            "bad.toml:48:26: peer_table[1].class_table[1].metric: delay must be ≥ 0, loss_ratio within 0..1",
        ),
    ];
    let bad = dir.path().join("bad.toml");
    for ((from, to), expected) in cases {
        assert!(example.contains(from), "{from}");
        std::fs::write(&bad, example.replacen(from, to, 1)).unwrap();
        let bad = bad.to_str().unwrap();
        let output = dir.path().join("out.pb2");
        for args in [
            vec!["rae", "check", "--toml", bad],
            vec!["rae", "convert", bad, "-o", output.to_str().unwrap()],
            vec![
                "rae",
                "--config-from-toml",
                bad,
                "--mgmt-listen",
                "127.0.0.1:0",
            ],
        ] {
            let out = brasa(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} accepted a bad config");
            assert!(stderr.contains(expected), "{args:?}: {stderr}");
        }
        assert!(!output.exists(), "convert wrote a file from a bad config");
    }
}

/// SIGTERM ends the daemon in order: exit status 0, its peer and CME sessions closed and its
/// listening socket released.
#[test]
fn rae_daemon_exits_0_and_closes_its_sessions_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let rae_port = free_port("127.0.3.3");
    let cme = TcpListener::bind("127.0.0.1:0").unwrap();
    let cme_port = cme.local_addr().unwrap().port();
    let path = dir.path().join("rae.toml");
    std::fs::write(&path, example_toml("127.0.3.3", rae_port, cme_port)).unwrap();
    let api = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let mut daemon = start_from_toml(&path, &api, Stdio::piped());
    assert!(wait_for_api(&api), "management API never answered");
    cme.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut cme_link = loop {
        match cme.accept() {
            Ok((stream, _)) => break stream,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the RAE never dialled its CME");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(err) => panic!("accept: {err}"),
        }
    };
    cme_link.set_nonblocking(false).unwrap();
    cme_link
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();

    let status = process::terminate(&mut daemon.0);
    assert_eq!(status.code(), Some(0), "{status:?}");
    let mut stderr = String::new();
    daemon
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("shutting down"), "{stderr}");
    // The CME link was closed by the RAE (end of stream after whatever it had sent).
    let mut rest = Vec::new();
    cme_link.read_to_end(&mut rest).unwrap();
    // Its peer port and management API are free again.
    TcpListener::bind(("127.0.3.3", rae_port)).unwrap();
    TcpListener::bind(&api).unwrap();
}

/// The RAE's console: peers, the RIB per class, preferred paths and the graph of domains.
#[test]
fn rae_console_shows_peers_rib_and_the_graph_of_domains() {
    let dir = tempfile::tempdir().unwrap();
    let rae_port = free_port("127.0.3.4");
    let (cme_port, _requests) = start_cme();
    let path = dir.path().join("rae.toml");
    std::fs::write(&path, example_toml("127.0.3.4", rae_port, cme_port)).unwrap();
    let api = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let _daemon = start_from_toml(&path, &api, Stdio::null());
    assert!(wait_for_api(&api), "management API never answered");
    let page = ureq_get(&format!("http://{api}/ui/rae"));
    assert!(page.starts_with("HTTP/1.0 200"), "{page}");
    assert!(page.contains("<h1>RAE of AS 11</h1>"), "{page}");
    assert!(page.contains("<svg class=\"graph\""), "{page}");
    assert!(
        page.contains(">AS 11</text>") && page.contains(">AS 5</text>"),
        "{page}"
    );
    assert!(
        page.contains("class=\"peering down\""),
        "the peer is not up: {page}"
    );
    assert!(
        page.contains("?cos=1"),
        "a tab per class of service: {page}"
    );
    let overview = ureq_get(&format!("http://{api}/ui/overview"));
    assert!(overview.contains("Routing Awareness Entity"), "{overview}");
    assert!(overview.contains("AS 11: 0 of"), "{overview}");
}
