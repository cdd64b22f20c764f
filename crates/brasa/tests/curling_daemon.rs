//! `brasa curling cafe` as a standalone daemon: real UDP in and out, bad input counted and
//! dropped, and `brasa curling show` against its management API.

mod process;

use brasa_curling::wire::{self, ChunkHeader, Configure, Message};
use serde_json::Value;
use std::net::{SocketAddrV4, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ep(text: &str) -> SocketAddrV4 {
    text.parse().unwrap()
}

fn show(api: &str, json: bool) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_brasa"));
    if json {
        command.arg("--json");
    }
    let output = command
        .args(["curling", "show", "--api", api])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn counters(api: &str) -> Value {
    let snapshot: Value = serde_json::from_str(&show(api, true)).unwrap();
    assert_eq!(snapshot["entity"], "cafe");
    snapshot["counters"].clone()
}

fn wait_for(api: &str, what: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = counters(api);
        if what(&c) || Instant::now() > deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cafe_daemon_forwards_counts_bad_input_and_shows_its_table() {
    // The test plays the CRME (127.41.2.1:3000), the previous hop (127.41.1.2:2000) and the next
    // hop (127.41.2.3:2000) around a CAFE daemon on 127.41.2.2:2000.
    let crme = UdpSocket::bind("127.41.2.1:3000").unwrap();
    let prev = UdpSocket::bind("127.41.1.2:2000").unwrap();
    let next = UdpSocket::bind("127.41.2.3:2000").unwrap();
    for s in [&crme, &prev, &next] {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    let api_port = free_tcp_port();
    let api = format!("127.0.0.1:{api_port}");
    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_brasa"))
            .args([
                "curling", "cafe", "2.2", "2000", "2.1", "3000", "1", "1.2", "2000", "1.1",
            ])
            .args(["--net", "41", "--mgmt-listen", &api])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let cafe = ep("127.41.2.2:2000");
    // The Announce arrives first (the daemon is up once it does).
    let mut buf = [0u8; 2048];
    let (len, from) = crme.recv_from(&mut buf).unwrap();
    assert_eq!(from.to_string(), cafe.to_string());
    match Message::parse(&buf[..len]).unwrap() {
        Message::Announce(a) => {
            let links: Vec<_> = a.neighbours.iter().collect();
            assert_eq!(links[0].cafe, ep("127.41.1.2:2000"));
            assert_eq!(links[0].crme, ep("127.41.1.1:3000"));
        }
        other => panic!("{other:?}"),
    }
    let configure = |target: SocketAddrV4| {
        Message::Configure(Configure {
            remove: false,
            cafe: target,
            prev_hop: Some(ep("127.41.1.2:2000")),
            next_hop: ep("127.41.2.3:2000"),
            content_id: "MyContent1",
        })
        .to_vec()
        .unwrap()
    };
    let chunk = |id: &str, seq: u32| {
        Message::Content(
            ChunkHeader {
                last: false,
                seq,
                source: ep("127.41.5.3:1000"),
                sender: ep("127.41.1.2:2000"),
                content_id: id,
            },
            b"payload",
        )
        .to_vec()
        .unwrap()
    };
    // Bad input first: Configure for a CAFE that is not this one, Configure not from its CRME,
    // chunks for unknown content, truncated and malformed datagrams.
    crme.send_to(&configure(ep("127.41.9.9:2000")), cafe)
        .unwrap();
    prev.send_to(&configure(cafe), cafe).unwrap();
    prev.send_to(&chunk("Unknown", 0), cafe).unwrap();
    let whole = chunk("MyContent1", 0);
    prev.send_to(&whole[..12], cafe).unwrap();
    prev.send_to(b"not curling at all", cafe).unwrap();
    prev.send_to(&[0xCA, 1, 2, 0x80], cafe).unwrap();
    let c = wait_for(&api, |c| c["datagrams"] == 6);
    assert_eq!(c["configure_not_local"], 2, "{c}");
    assert_eq!(c["unknown_content"], 1, "{c}");
    assert_eq!(c["malformed"], 3, "{c}");
    assert_eq!(c["chunks_forwarded"], 0, "{c}");

    // A proper Configure, then a chunk: forwarded with the sender rewritten, and one Notify.
    crme.send_to(&configure(cafe), cafe).unwrap();
    wait_for(&api, |c| c["configures"] == 1);
    prev.send_to(&whole, cafe).unwrap();
    let (len, from) = next.recv_from(&mut buf).unwrap();
    assert_eq!(from.to_string(), cafe.to_string());
    let packet = wire::ContentPacket::new_checked(&buf[..len]).unwrap();
    assert_eq!(packet.sender(), cafe);
    assert_eq!(packet.source(), ep("127.41.5.3:1000"));
    assert_eq!(packet.payload(), b"payload");
    loop {
        let (len, _) = crme.recv_from(&mut buf).unwrap();
        if let Message::Notify(n) = Message::parse(&buf[..len]).unwrap() {
            assert!(!n.teardown);
            assert_eq!(n.prev_hop, ep("127.41.1.2:2000"));
            assert_eq!(
                n.next_hops.iter().collect::<Vec<_>>(),
                vec![ep("127.41.2.3:2000")]
            );
            break;
        }
    }
    let c = wait_for(&api, |c| c["chunks_forwarded"] == 1);
    assert_eq!(c["notifies"], 1, "{c}");

    let text = show(&api, false);
    assert!(text.contains("CAFE ContentStateTable at 2.2:"), "{text}");
    assert!(
        text.contains("MyContent1 | 1.2:2000 | 2.3 | 2000"),
        "{text}"
    );
    assert!(text.contains("configure_not_local"), "{text}");
}

/// SIGTERM stops an entity daemon in order: exit status 0, and its UDP endpoint and management
/// API are free again.
#[test]
fn entity_daemon_exits_0_and_releases_its_sockets_on_sigterm() {
    let crme = UdpSocket::bind("127.44.2.1:3000").unwrap();
    crme.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let api = format!("127.0.0.1:{}", free_tcp_port());
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_brasa"))
            .args(["curling", "cafe", "2.2", "2000", "2.1", "3000", "0"])
            .args(["--net", "44", "--mgmt-listen", &api])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Up once its Announce arrives and its API answers.
    let mut buf = [0u8; 2048];
    let (len, _) = crme.recv_from(&mut buf).unwrap();
    assert!(matches!(
        Message::parse(&buf[..len]).unwrap(),
        Message::Announce(_)
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !Command::new(env!("CARGO_BIN_EXE_brasa"))
        .args(["curling", "show", "--api", &api])
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the management API never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let status = process::terminate(&mut daemon.0);
    assert_eq!(status.code(), Some(0), "{status:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut daemon.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("shutting down"), "{stderr}");
    UdpSocket::bind("127.44.2.2:2000").unwrap();
    std::net::TcpListener::bind(&api).unwrap();
}

/// Bad entity arguments name the argument; a bad scenario line names file:line:col.
#[test]
fn bad_arguments_and_scenario_lines_are_located() {
    let out = Command::new(env!("CARGO_BIN_EXE_brasa"))
        .args(["curling", "cafe", "2.2", "2000", "2.1", "port", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "invalid argument \"port\": myCRMEaddr port: expected a number, found \"port\""
        ),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("bad.scn");
    std::fs::write(
        &scenario,
        "# a CRME and a mistyped CAFE\n+0 ON_ROUTER 2.1 usr.curling.Crme 3000 0 0\n+0 ON_ROUTER 2.2 usr.curling.Cafee 2000 2.1 3000 0\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_brasa"))
        .args(["curling", "run"])
        .arg(&scenario)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("bad.scn:3:18: unknown class or command \"usr.curling.Cafee\""),
        "{stderr}"
    );
}

/// The entity's console: its state table and counters, as a page.
#[test]
fn cafe_console_shows_the_content_state_table_and_counters() {
    let api = format!("127.0.0.1:{}", free_tcp_port());
    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_brasa"))
            .args([
                "curling", "cafe", "2.2", "2000", "2.1", "3000", "1", "1.2", "2000", "1.1",
            ])
            .args(["--net", "46", "--mgmt-listen", &api])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&api).is_err() {
        assert!(
            Instant::now() < deadline,
            "the management API never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let get = |path: &str| {
        let output = Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://{api}{path}').read().decode())"
            ))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let page = get("/ui/curling");
    assert!(page.contains("<h1>CURLING CAFE</h1>"), "{page}");
    assert!(
        page.contains("<h2>table</h2>") && page.contains("<h2>counters</h2>"),
        "{page}"
    );
    assert!(page.contains("configure not local"), "{page}");
    let overview = get("/ui/overview");
    assert!(
        overview.contains("CAFE 2.2 at 127.46.2.2:2000"),
        "{overview}"
    );
    let series: Value = serde_json::from_str(&get("/ui/series.json")).unwrap();
    assert!(!series["series"].as_array().unwrap().is_empty(), "{series}");
}
