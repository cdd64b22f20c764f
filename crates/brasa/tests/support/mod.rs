//! Helpers shared by the binary-level tests: free ports, a real FreeRADIUS started from a
//! minimal generated config, the `brasa` daemon, and `radclient`.
#![allow(dead_code)]

use brasa_testkit::netns::Netns;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

pub const BRASA: &str = env!("CARGO_BIN_EXE_brasa");

/// A UDP port free on `ip` right now.
pub fn free_udp_port(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP port free on `ip` right now.
pub fn free_tcp_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child when dropped, so a failing test leaves no daemon behind.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// The daemon's output so far (for assertion messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A FreeRADIUS server with its own config directory.
pub struct FreeRadius {
    pub daemon: Daemon,
    pub auth: SocketAddr,
    pub acct: SocketAddr,
    pub dir: PathBuf,
}

impl FreeRadius {
    /// The detail file where accounting requests are written.
    pub fn detail(&self) -> String {
        std::fs::read_to_string(self.dir.join("detail")).unwrap_or_default()
    }

    /// brasa's `[[radius.pool]]` named `name` with this server as its auth and its acct server
    /// (both with `secret`); `settings` are the pool's own lines (`timeout = "2s"\n`, …).
    pub fn radius_pool(&self, name: &str, secret: &str, settings: &str) -> String {
        format!(
            "[[radius.pool]]\nname = \"{name}\"\n{settings}\
             [[radius.pool.auth_server]]\naddress = \"{}\"\nsecret = \"{secret}\"\n\
             [[radius.pool.acct_server]]\naddress = \"{}\"\nsecret = \"{secret}\"\n",
            self.auth, self.acct
        )
    }
}

/// The head of a `brasa run` config that proxies RADIUS to `upstream`: `data_dir = "data"`, the
/// API on `api`, the NAS `client` (name, secret) at 127.0.0.1, and the RADIUS server `server`
/// (name, auth and acct listen addresses) proxying to the pool "aaa", which is `upstream` with
/// `upstream_secret` and a 2 s timeout. `server_settings` are the server's further lines (e.g.
/// `python_policy = "p1"\n`); the caller appends the other sections.
pub fn radius_proxy_config(
    api: SocketAddr,
    (client, nas_secret): (&str, &str),
    (server, auth, acct): (&str, SocketAddr, SocketAddr),
    server_settings: &str,
    upstream: &FreeRadius,
    upstream_secret: &str,
) -> String {
    format!(
        r#"data_dir = "data"
[api]
listen = "{api}"
[radius]
[[radius.client]]
name = "{client}"
address = "127.0.0.1"
secret = "{nas_secret}"
[[radius.server]]
name = "{server}"
auth_listen = "{auth}"
acct_listen = "{acct}"
proxy = "aaa"
{server_settings}{}"#,
        upstream.radius_pool("aaa", upstream_secret, "timeout = \"2s\"\n")
    )
}

/// [`start_freeradius`] with the default server sections (users file, PAP, detail) inside
/// `netns`, on its loopback: the AAA server of a brasa that runs in that namespace;
/// `listen_settings` go into each `listen` section (e.g. a larger `recv_buff` for bursts).
pub fn start_freeradius_in(
    netns: &Netns,
    dir: &Path,
    clients: &[(&str, &str)],
    users: &str,
    listen_settings: &str,
) -> FreeRadius {
    let dir = dir.to_path_buf();
    let listen_settings = listen_settings.to_string();
    let clients: Vec<(String, String)> = clients
        .iter()
        .map(|(address, secret)| (address.to_string(), secret.to_string()))
        .collect();
    let users = users.to_string();
    netns.enter(move || {
        let clients: Vec<(&str, &str)> = clients
            .iter()
            .map(|(address, secret)| (address.as_str(), secret.as_str()))
            .collect();
        start_freeradius_with_modules(
            &dir,
            "127.0.0.1",
            &clients,
            &users,
            "",
            "",
            None,
            &listen_settings,
            false,
        )
    })
}

/// Starts `freeradius -X` on `ip` with `clients` (address, secret) and a `users` file; the
/// `server_body` replaces the default authorize/authenticate/accounting sections when given
/// (e.g. a proxy configuration).
pub fn start_freeradius(
    dir: &Path,
    ip: &str,
    clients: &[(&str, &str)],
    users: &str,
    extra_top_level: &str,
    server_body: Option<&str>,
    debug: bool,
) -> FreeRadius {
    start_freeradius_with_modules(
        dir,
        ip,
        clients,
        users,
        "",
        extra_top_level,
        server_body,
        "",
        debug,
    )
}

/// [`start_freeradius`] with `extra_modules` (module instances such as a `cache { }`) added to
/// the `modules` section and `listen_settings` to each `listen` section.
#[allow(clippy::too_many_arguments)]
pub fn start_freeradius_with_modules(
    dir: &Path,
    ip: &str,
    clients: &[(&str, &str)],
    users: &str,
    extra_modules: &str,
    extra_top_level: &str,
    server_body: Option<&str>,
    listen_settings: &str,
    debug: bool,
) -> FreeRadius {
    std::fs::create_dir_all(dir).unwrap();
    let auth_port = free_udp_port(ip);
    let acct_port = free_udp_port(ip);
    let d = dir.display();
    let mut clients_text = String::new();
    for (index, (address, secret)) in clients.iter().enumerate() {
        clients_text.push_str(&format!(
            "client c{index} {{\n  ipaddr = {address}\n  secret = {secret}\n  require_message_authenticator = no\n}}\n"
        ));
    }
    let body = server_body.unwrap_or(
        "  authorize {\n    files\n    pap\n  }\n  authenticate {\n    pap\n  }\n  preacct {\n  }\n  accounting {\n    detail\n  }\n  post-auth {\n  }\n",
    );
    let conf = format!(
        r#"prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {d}
raddbdir = {d}
radacctdir = {d}
name = freeradius
confdir = {d}
modconfdir = {d}
run_dir = {d}
db_dir = {d}
libdir = /usr/lib/freeradius
dictdir = /usr/share/freeradius
pidfile = {d}/freeradius.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 65536
hostname_lookups = no
log {{
  destination = stdout
  auth = no
}}
security {{
  allow_core_dumps = no
  max_attributes = 200
  reject_delay = 0
  status_server = yes
}}
thread pool {{
  start_servers = 4
  max_servers = 16
  min_spare_servers = 2
  max_spare_servers = 8
  max_requests_per_server = 0
}}
{clients_text}
modules {{
  pap {{
    normalise = yes
  }}
  files {{
    filename = {d}/users
  }}
  detail {{
    filename = {d}/detail
    permissions = 0600
    header = "%t"
  }}
  always ok {{
    rcode = ok
  }}
{extra_modules}
}}
{extra_top_level}
server default {{
  listen {{
    type = auth
    ipaddr = {ip}
    port = {auth_port}
{listen_settings}  }}
  listen {{
    type = acct
    ipaddr = {ip}
    port = {acct_port}
{listen_settings}  }}
{body}}}
"#
    );
    std::fs::write(dir.join("radiusd.conf"), conf).unwrap();
    std::fs::write(dir.join("users"), users).unwrap();
    let log = dir.join("freeradius.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut command = Command::new("freeradius");
    command
        .arg(if debug { "-X" } else { "-f" })
        .arg("-d")
        .arg(dir);
    if !debug {
        command.arg("-l").arg("stdout");
    }
    let child = command
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .expect("freeradius must be installed (scripts/setup-test-env)");
    let daemon = Daemon { child, log };
    wait_for(
        &daemon,
        "Ready to process requests",
        Duration::from_secs(20),
    );
    FreeRadius {
        daemon,
        auth: format!("{ip}:{auth_port}").parse().unwrap(),
        acct: format!("{ip}:{acct_port}").parse().unwrap(),
        dir: dir.to_path_buf(),
    }
}

fn wait_for(daemon: &Daemon, needle: &str, limit: Duration) {
    let started = Instant::now();
    loop {
        if daemon.log_text().contains(needle) {
            return;
        }
        if started.elapsed() > limit {
            panic!(
                "daemon did not say {needle:?} in {limit:?}:\n{}",
                daemon.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `brasa run -c <dir>/brasa.toml` with `config` and waits for its management API.
pub fn start_brasa(dir: &Path, config: &str, api: SocketAddr) -> Daemon {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("brasa.toml");
    std::fs::write(&path, config).unwrap();
    let log = dir.join("brasa.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let child = Command::new(BRASA)
        .args(["--log", "debug", "run", "-c"])
        .arg(&path)
        .current_dir(dir)
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let mut daemon = Daemon { child, log };
    let started = Instant::now();
    while std::net::TcpStream::connect(api).is_err() {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            panic!("brasa exited with {status}:\n{}", daemon.log_text());
        }
        if started.elapsed() > Duration::from_secs(20) {
            panic!("brasa API did not come up:\n{}", daemon.log_text());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon
}

// Not every test binary that includes this module sends RADIUS.
#[allow(unused_imports)]
pub use brasa_testkit::radclient::radclient;

/// The attribute lines radclient printed for the reply (lines after "Received ...").
pub fn reply_lines(output: &Output) -> Vec<String> {
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = Vec::new();
    let mut in_reply = false;
    for line in BufReader::new(text.as_bytes()).lines() {
        let line = line.unwrap();
        if line.starts_with("Received ") {
            in_reply = true;
            lines.clear();
            continue;
        }
        if line.starts_with("Sent ") || line.starts_with('(') {
            in_reply = false;
            continue;
        }
        if in_reply && line.starts_with('\t') {
            lines.push(line.trim().to_string());
        }
    }
    lines
}

/// The code radclient printed for the answer (`Access-Accept`, `CoA-NAK`, …), if any.
pub fn received(output: &Output) -> Option<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("Received "))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
}

/// Writes `dir/dictionary` with the attributes of brasa's Alcatel-Lucent dictionary whose
/// names start with `prefix`, for FreeRADIUS and radclient run with `-d dir`: Debian's
/// dictionary has the vendor without them (and the rest of brasa's would redefine Debian's
/// values).
pub fn alcatel_dictionary(dir: &Path, prefix: &str) {
    let brasa_dictionary = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../radius/dictionaries/dictionary.alcatel-lucent-sr"
    ))
    .unwrap();
    let wanted: Vec<&str> = brasa_dictionary
        .lines()
        .filter(|line| line.contains(prefix))
        .collect();
    std::fs::write(
        dir.join("dictionary"),
        format!(
            "BEGIN-VENDOR Alcatel-Lucent-Service-Router\n{}\nEND-VENDOR Alcatel-Lucent-Service-Router\n",
            wanted.join("\n")
        ),
    )
    .unwrap();
}

/// Runs `brasa --api http://API ARGS…` (a CLI command against a running daemon).
pub fn brasa(api: SocketAddr, args: &[&str]) -> Output {
    Command::new(BRASA)
        .args(["--api", &format!("http://{api}")])
        .args(args)
        .output()
        .unwrap()
}

/// The standard output of a command that must have succeeded (else the test fails with what
/// it printed).
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `brasa --api … --json ARGS…`, which must succeed, parsed.
pub fn brasa_json(api: SocketAddr, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(&brasa(api, &all))).unwrap()
}

/// [`brasa_json`] of a command written as one string (words separated by single spaces).
pub fn show_json(api: SocketAddr, command: &str) -> serde_json::Value {
    brasa_json(api, &command.split(' ').collect::<Vec<_>>())
}

/// Polls `condition` until it holds (tests never assert on timing, only on eventual outcomes).
pub fn eventually(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        if started.elapsed() > limit {
            panic!("timed out waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts FreeRADIUS as a plain proxy: every Access-Request from `clients` goes to `upstream`
/// (an auth port) with `upstream_secret`, as an operator would configure it in proxy.conf.
pub fn start_freeradius_proxy(
    dir: &Path,
    ip: &str,
    clients: &[(&str, &str)],
    upstream: SocketAddr,
    upstream_secret: &str,
) -> FreeRadius {
    let top = format!(
        r#"proxy_requests = yes
proxy server {{
  default_fallback = no
}}
home_server upstream {{
  type = auth
  ipaddr = {}
  port = {}
  secret = {upstream_secret}
  response_window = 20
  zombie_period = 40
  revive_interval = 10
  status_check = none
  max_outstanding = 65536
}}
home_server_pool upstream_pool {{
  type = fail-over
  home_server = upstream
}}
realm upstream {{
  auth_pool = upstream_pool
}}
"#,
        upstream.ip(),
        upstream.port()
    );
    let body = "  authorize {\n    update control {\n      &Proxy-To-Realm := \"upstream\"\n    }\n  }\n  authenticate {\n  }\n  preacct {\n  }\n  accounting {\n  }\n  pre-proxy {\n  }\n  post-proxy {\n  }\n  post-auth {\n  }\n";
    start_freeradius(dir, ip, clients, "", &top, Some(body), false)
}

/// Runs the neutral load generator `shared/tools/radload.py` and returns its summary line.
pub fn radload(
    server: SocketAddr,
    secret: &str,
    kind: &str,
    count: u64,
    sockets: u32,
    window: u32,
) -> String {
    radload_with_timeout(server, secret, kind, count, sockets, window, 2.0)
}

/// [`radload`] with the time after which an unanswered request counts as lost (the run ends at
/// most this long after the last answer, so a short timeout keeps a few losses from dominating
/// the measured rate).
pub fn radload_with_timeout(
    server: SocketAddr,
    secret: &str,
    kind: &str,
    count: u64,
    sockets: u32,
    window: u32,
    timeout_seconds: f64,
) -> String {
    let script = std::env::var("RADLOAD").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/tools/radload.py"
        )
        .to_string()
    });
    let output = Command::new("python3")
        .arg(script)
        .arg(server.to_string())
        .arg(secret)
        .arg(kind)
        .arg(count.to_string())
        .arg(sockets.to_string())
        .arg(window.to_string())
        .arg(timeout_seconds.to_string())
        .output()
        .expect("python3 and shared/tools/radload.py (or RADLOAD=path)");
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(
        output.status.success(),
        "radload failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

/// A `key=value` field of a radload summary line, as a number.
pub fn radload_field(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(&format!("{key}=")))
        .map(|value| value.trim_end_matches("ms").trim_end_matches("/s"))
        .and_then(|value| value.parse().ok())
        .unwrap_or(f64::NAN)
}

/// GET `path` over plain HTTP/1.1 and return the body (enough for `/metrics`).
pub fn http_get(api: SocketAddr, path: &str) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(api).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    body.to_string()
}

/// Runs `brasa check -c bad.toml` on each `(config, "line:col", message)` case and asserts that
/// it is refused with `bad.toml:line:col: ` and the message.
pub fn assert_config_errors(cases: &[(String, &str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    for (text, at, message) in cases {
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BRASA)
            .args(["check", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("bad.toml:{at}: ")), "{text}: {err}");
        assert!(err.contains(message), "{text}: {err}");
    }
}

/// The code of radclient's answer to a CoA or Disconnect request and its Error-Cause, if any
/// (the test fails when nothing answered).
pub fn coa_answer(output: &Output) -> (String, Option<String>) {
    let code = received(output)
        .unwrap_or_else(|| panic!("no answer: {}", brasa_testkit::radclient::text(output)));
    let cause = reply_lines(output)
        .iter()
        .find_map(|l| l.strip_prefix("Error-Cause = ").map(str::to_owned));
    (code, cause)
}

/// The config of one node of an active/standby Subscriber Manager pair over PostgreSQL at
/// `url`: its API and gRPC addresses, push EPs `eps`, HA node name and lease.
pub fn ha_sm_config(
    api: SocketAddr,
    grpc: SocketAddr,
    eps: &[&str],
    url: &str,
    node: &str,
    lease: &str,
) -> String {
    let eps: String = eps
        .iter()
        .map(|id| format!("\n[[subscriber_manager.ep]]\nid = \"{id}\"\n"))
        .collect();
    format!(
        r#"data_dir = "data"

[api]
listen = "{api}"

[subscriber_manager]
listen = "{grpc}"
keepalive_interval = "1s"
{eps}
[subscriber_manager.store]
kind = "postgres"
url = "{url}"

[subscriber_manager.ha]
node = "{node}"
lease = "{lease}"
"#
    )
}
