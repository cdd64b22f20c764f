//! Helpers shared by the service data-plane and dynamic-services netns tests: `brasa run` in a
//! router namespace driven through its CLI, and ping / TCP checks between host namespaces.
#![allow(dead_code)]

use crate::support::BRASA;
use brasa_testkit::netns::Netns;
use brasa_testkit::vlan_shim::{host_pair, Access, VlanShim, TPID_8021AD, TPID_8021Q};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A host behind a trunk: its namespace, address and the tags its frames carry.
pub struct HostSpec {
    pub name: &'static str,
    pub cidr: &'static str,
    pub tags: Vec<(u16, u16)>,
}

/// A host whose frames carry one 802.1Q tag `vid` on the trunk.
pub fn dot1q(name: &'static str, cidr: &'static str, vid: u16) -> HostSpec {
    HostSpec {
        name,
        cidr,
        tags: vec![(TPID_8021Q, vid)],
    }
}

/// A host whose frames carry the QinQ tags `outer`.`inner` (802.1ad, then 802.1Q).
pub fn qinq(name: &'static str, cidr: &'static str, outer: u16, inner: u16) -> HostSpec {
    HostSpec {
        name,
        cidr,
        tags: vec![(TPID_8021AD, outer), (TPID_8021Q, inner)],
    }
}

/// One trunk: brasa's port `port` in the router namespace, a switch namespace with a VLAN
/// shim, and the hosts behind it.
pub struct Trunk {
    _shim: VlanShim,
    pub switch: Netns,
    pub hosts: Vec<Netns>,
}

/// Which namespaces a trunk makes, and whether they speak IPv6.
pub struct TrunkNames<'a> {
    /// The switch namespace's tag is this prefix followed by the port.
    pub switch_prefix: &'a str,
    /// IPv6 off in the switch and the hosts: no router solicitations or DAD, so that every
    /// frame a host sends is one the test made.
    pub ipv4_only: bool,
}

pub fn trunk(router: &Netns, names: TrunkNames<'_>, port: &str, hosts: Vec<HostSpec>) -> Trunk {
    const NO_IPV6: &str =
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1";
    let switch = Netns::new(&format!("{}{port}", names.switch_prefix));
    if names.ipv4_only {
        switch.sh(NO_IPV6);
    }
    router.sh(&format!(
        "ip link add {port} mtu 1600 type veth peer name up{port} mtu 1600 netns {} && ip link set {port} up",
        switch.name
    ));
    switch.sh(&format!("ip link set up{port} up"));
    let mut accesses = Vec::new();
    let mut namespaces = Vec::new();
    for (index, host) in hosts.into_iter().enumerate() {
        let ns = Netns::new(host.name);
        if names.ipv4_only {
            ns.sh(NO_IPV6);
        }
        let access = format!("a{index}{port}");
        host_pair(&switch, &access, &ns, "eth0", host.cidr);
        accesses.push(Access {
            interface: access,
            tags: host.tags,
        });
        namespaces.push(ns);
    }
    let shim = VlanShim::start(&switch, &format!("up{port}"), accesses);
    Trunk {
        _shim: shim,
        switch,
        hosts: namespaces,
    }
}

/// `brasa run` inside the router namespace; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub router: String,
    api: String,
    log: std::path::PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    pub fn start(router: &Netns, dir: &Path, config: &str) -> Self {
        let path = dir.join("brasa.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.join("brasa.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &router.name,
                BRASA,
                "--log",
                // A benchmark may log more (`BRASA_TEST_LOG=info,brasa::dynsvc::timing=debug`).
                &std::env::var("BRASA_TEST_LOG").unwrap_or_else(|_| "info".into()),
                "run",
                "-c",
            ])
            .arg(&path)
            .current_dir(dir)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let mut daemon = Self {
            child,
            router: router.name.clone(),
            api: "http://127.0.0.1:7780".to_string(),
            log,
        };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("brasa exited with {status}:\n{}", daemon.log_text());
            }
            let up = router.enter(|| std::net::TcpStream::connect("127.0.0.1:7780").is_ok());
            if up {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "brasa did not come up:\n{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        daemon
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `brasa ARGS` against the daemon, inside its namespace.
    pub fn brasa(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.router, BRASA, "--api", &self.api])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let output = self.brasa(args, stdin);
        assert!(
            output.status.success(),
            "brasa {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log_text()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all, None)).unwrap()
    }

    pub fn apply(&self, text: &str) -> String {
        self.ok(&["service", "apply", "-"], Some(text))
    }
}

pub fn ping(from: &Netns, to: &str) -> bool {
    from.output("ping", &["-c", "2", "-i", "0.2", "-W", "1", to])
        .status
        .success()
}

/// Waits for `ping` to succeed (ARP and learning settle), failing after `limit`.
pub fn ping_eventually(from: &Netns, to: &str, limit: Duration) {
    let started = Instant::now();
    while !ping(from, to) {
        assert!(started.elapsed() < limit, "{} cannot ping {to}", from.name);
    }
}

/// A TCP exchange: a listener in `server` on `addr:port`, a client in `client` that sends
/// `bytes` bytes and reads them back.
pub fn tcp_echo(server: &Netns, client: &Netns, addr: &str, port: u16, bytes: usize) -> bool {
    tcp_echo_within(server, client, addr, port, bytes, 20)
}

/// [`tcp_echo`] giving up after `secs` seconds.
pub fn tcp_echo_within(
    server: &Netns,
    client: &Netns,
    addr: &str,
    port: u16,
    bytes: usize,
    secs: u32,
) -> bool {
    let listener = Command::new("ip")
        .args(["netns", "exec", &server.name, "python3", "-c"])
        .arg(format!(
            "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('{addr}', {port})); s.listen(1); s.settimeout({secs})\nc,_=s.accept(); c.settimeout({secs})\n\
             n=0\nwhile n < {bytes}:\n    d=c.recv(65536)\n    if not d: break\n    c.sendall(d); n+=len(d)\nc.close()"
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The client retries while the listener starts (refused), not after it is up.
    let output = client.output(
        "python3",
        &[
            "-c",
            &format!(
                "import socket,sys,time\nend=time.time()+{secs}\n\
                 while True:\n    try:\n        s=socket.create_connection(('{addr}', {port}), timeout={secs}); break\n    \
                 except ConnectionRefusedError:\n        \
                 if time.time() > end: raise\n        time.sleep(0.1)\n\
                 data=bytes(range(256))*({bytes}//256)\ns.sendall(data)\ngot=b''\n\
                 while len(got) < len(data):\n    d=s.recv(65536)\n    if not d: break\n    got+=d\n\
                 sys.exit(0 if got == data else 1)"
            ),
        ],
    );
    let mut listener = listener;
    let _ = listener.kill();
    let _ = listener.wait();
    output.status.success()
}

impl Daemon {
    /// Waits until `condition` holds; fails with `what` and the daemon's log after 30 s.
    pub fn eventually(&self, what: &str, mut condition: impl FnMut() -> bool) {
        let started = Instant::now();
        while !condition() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "timed out waiting for: {what}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs `iperf3 ARGS --json` from `client` against a one-off server on `addr:port` in
/// `server`, and returns the client's report.
pub fn iperf3(
    server: &Netns,
    client: &Netns,
    addr: &str,
    port: u16,
    args: &[&str],
) -> serde_json::Value {
    let port = port.to_string();
    let mut listener = Command::new("ip")
        .args([
            "netns",
            "exec",
            &server.name,
            "iperf3",
            "-s",
            "-1",
            "-B",
            addr,
            "-p",
            &port,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let report = loop {
        let mut all = vec!["-c", addr, "-p", &port, "--json"];
        all.extend_from_slice(args);
        let output = client.output("iperf3", &all);
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
        // The server may not listen yet: its refusal is an error report without results.
        if report["end"]["sum_received"].is_object() {
            break report;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "iperf3 {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = listener.kill();
    let _ = listener.wait();
    report
}
