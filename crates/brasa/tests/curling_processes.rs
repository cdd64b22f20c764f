//! Every CURLING entity as its own `brasa curling …` process (as they would run on separate
//! hosts): one domain with a CRME, two CAFEs, a content server and a client; the client's file
//! must arrive intact, and the management APIs must report it.

use serde_json::Value;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemons(Vec<Child>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn show(api: &str) -> Option<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_brasa"))
        .args(["--json", "curling", "show", "--api", api])
        .output()
        .ok()?;
    serde_json::from_slice(&output.stdout).ok()
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn entities_as_separate_processes_deliver_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("published.bin");
    let published: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &published).unwrap();
    let net = "42";
    let entities: Vec<(&str, Vec<String>)> = vec![
        (
            "crme",
            vec!["1.1", "3000", "0", "0"]
                .into_iter()
                .map(String::from)
                .collect(),
        ),
        (
            "cafe",
            vec!["1.2", "2000", "1.1", "3000", "0"]
                .into_iter()
                .map(String::from)
                .collect(),
        ),
        (
            "cafe",
            vec!["1.3", "2000", "1.1", "3000", "0"]
                .into_iter()
                .map(String::from)
                .collect(),
        ),
        (
            "server",
            vec!["1.2", "1000", "1.1", "3000", "1.2", "2000", "rate=20000"]
                .into_iter()
                .map(String::from)
                .chain(["--publish".to_string(), format!("Movie={}", file.display())])
                .collect(),
        ),
        (
            "client",
            vec![
                "1.3",
                "1000",
                "1.1",
                "3000",
                "1.3",
                "2000",
                "idle=300ms",
                "attempts=50",
            ]
            .into_iter()
            .map(String::from)
            .chain(["--consume".to_string(), "Movie".to_string()])
            .chain([
                "--content-dir".to_string(),
                dir.path().display().to_string(),
            ])
            .collect(),
        ),
    ];
    let mut daemons = Daemons(Vec::new());
    let mut apis = Vec::new();
    for (kind, args) in &entities {
        let api = format!("127.0.0.1:{}", free_tcp_port());
        let child = Command::new(env!("CARGO_BIN_EXE_brasa"))
            .args(["curling", kind])
            .args(args)
            .args(["--net", net, "--mgmt-listen", &api, "--log", "warn"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        daemons.0.push(child);
        apis.push(api);
    }
    let client_api = &apis[4];
    let deadline = Instant::now() + Duration::from_secs(60);
    let snapshot = loop {
        if let Some(snapshot) = show(client_api) {
            if !snapshot["saved"].as_array().unwrap().is_empty() {
                break snapshot;
            }
        }
        assert!(Instant::now() < deadline, "no file saved in time");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(snapshot["entity"], "client");
    let saved = &snapshot["saved"][0];
    assert_eq!(saved["content_id"], "Movie");
    let path = dir.path().join("Content").join("1.3 1000").join("Movie");
    assert_eq!(saved["path"], path.display().to_string());
    assert!(
        std::fs::read(&path).unwrap() == published,
        "saved file differs"
    );

    // The CRME resolved to the local server; the CAFEs hold the path 1.2 → 1.3 → client.
    let crme = show(&apis[0]).unwrap();
    assert_eq!(crme["content_table"]["Movie"]["kind"], "local");
    let cafe = show(&apis[1]).unwrap();
    assert_eq!(
        cafe["table"][0]["next_hops"],
        serde_json::json!(["127.42.1.3:2000"])
    );
    let cafe = show(&apis[2]).unwrap();
    assert_eq!(
        cafe["table"][0]["next_hops"],
        serde_json::json!(["127.42.1.3:1000"])
    );

    let metrics = http_get(&apis[1], "/metrics");
    assert!(
        metrics.contains(
            "brasa_curling_cafe_chunks_forwarded_total{entity=\"cafe\",addr=\"127.42.1.2:2000\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("brasa_curling_content_states{entity=\"cafe\",addr=\"127.42.1.2:2000\"} 1"),
        "{metrics}"
    );
}
