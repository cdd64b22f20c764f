//! A `brasa run` with access control for the console tests: users `ana` (operator) and `rita`
//! (read-only), tokens for both roles, RADIUS with a local user database, the seed 000
//! python-policy on Access-Accept and Accounting-Request, and the subscriber manager with
//! RADIUS login events and one EP.
#![allow(dead_code)]

use super::support::*;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

pub const OPERATOR: (&str, &str) = ("ana", "ana's long passphrase");
pub const READ_ONLY: (&str, &str) = ("rita", "rita's long passphrase");
pub const NAS_SECRET: &str = "testing123";

/// A running console daemon and how to reach it.
pub struct Console {
    pub daemon: Daemon,
    pub api: SocketAddr,
    pub auth: SocketAddr,
    pub acct: SocketAddr,
    pub grpc: SocketAddr,
    pub operator_token: String,
    pub read_only_token: String,
}

impl Console {
    pub fn base(&self) -> String {
        format!("http://{}", self.api)
    }
}

/// `brasa passwd`'s hash of `password` (read from standard input).
pub fn password_hash(password: &str) -> String {
    let mut child = Command::new(BRASA)
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// `brasa passwd --new-token --name NAME --role ROLE`: (token, the `[[api.token]]` table).
pub fn new_token(name: &str, role: &str) -> (String, String) {
    let output = Command::new(BRASA)
        .args(["passwd", "--new-token", "--name", name, "--role", role])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .to_owned();
    let table = text[text.find("[[api.token]]").unwrap()..].to_owned();
    (token, table)
}

/// Starts the daemon in `dir`; `extra_api` goes into `[api]` (e.g. TLS keys).
pub fn start_console(dir: &Path, extra_api: &str) -> Console {
    let api: SocketAddr = format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"))
        .parse()
        .unwrap();
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"))
        .parse()
        .unwrap();
    let auth: SocketAddr = format!("127.0.0.1:{}", free_udp_port("127.0.0.1"))
        .parse()
        .unwrap();
    let acct: SocketAddr = format!("127.0.0.1:{}", free_udp_port("127.0.0.1"))
        .parse()
        .unwrap();
    let (operator_token, operator_table) = new_token("cli-operator", "operator");
    let (read_only_token, read_only_table) = new_token("prometheus", "read-only");
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python/python_cache.py");
    let config = format!(
        r#"data_dir = "data"
[api]
listen = "{api}"
{extra_api}
[[api.user]]
name = "{}"
role = "operator"
password_hash = "{}"
[[api.user]]
name = "{}"
role = "read-only"
password_hash = "{}"
{operator_table}
{read_only_table}
[radius]
[[radius.client]]
name = "bng-1"
address = "127.0.0.1"
secret = "{NAS_SECRET}"
[[radius.server]]
name = "aaa"
auth_listen = "{auth}"
acct_listen = "{acct}"
local = "users"
python_policy = "python-policy-1"
[[radius.local]]
name = "users"
[[radius.local.user]]
name = "00:20:fc:1e:cd:53"
password = "00:20:fc:1e:cd:53"
reply = ['Class = "Class-1"', 'Class += "Class-22"', 'User-Name = "00:20:fc:1e:cd:53"']
[python]
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
max_entry_lifetime = "0d 01:00:00"
[subscriber_manager]
listen = "{grpc}"
domains = ["subscribers"]
ack_timeout = "1s"
quarantine_timeout = "10m"
[subscriber_manager.radius]
servers = ["aaa"]
[[subscriber_manager.ep]]
id = "sce1"
"#,
        OPERATOR.0,
        password_hash(OPERATOR.1),
        READ_ONLY.0,
        password_hash(READ_ONLY.1),
        script.display(),
    );
    let daemon = start_brasa(dir, &config, api);
    Console {
        daemon,
        api,
        auth,
        acct,
        grpc,
        operator_token,
        read_only_token,
    }
}

/// An HTTP answer.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request, redirects not followed, any status returned.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, Vec<u8>)>,
) -> Answer {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .new_agent();
    let request = ureq::http::Request::builder().method(method).uri(url);
    let request = headers.iter().fold(request, |r, (k, v)| r.header(*k, *v));
    let response = match body {
        Some((content_type, bytes)) => agent.run(
            request
                .header("content-type", content_type)
                .body(bytes)
                .unwrap(),
        ),
        None => agent.run(request.body(()).unwrap()),
    }
    .unwrap();
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = response.into_body().read_to_string().unwrap_or_default();
    Answer {
        status,
        headers,
        body,
    }
}

/// The content type of the console's forms.
pub const FORM: &str = "application/x-www-form-urlencoded";

/// The status with which the server refuses a body of `len` bytes it must not accept: the head
/// (with `Content-Length`) goes first and the answer is read before the body is sent, because
/// a server that refuses by the length answers at once and closes, and a client still writing
/// the body would get a broken pipe instead of the answer. A server that waits for the body
/// gets it (write errors ignored) and is read after.
pub fn refused_upload_status(
    url: &str,
    headers: &[(&str, &str)],
    content_type: &str,
    len: usize,
) -> u16 {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: {content_type}\r\ncontent-length: {len}\r\nconnection: close\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut answer = [0u8; 64];
    let read = match stream.read(&mut answer) {
        Ok(n) if n > 0 => n,
        _ => {
            let _ = stream.write_all(&vec![b'a'; len]);
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            stream.read(&mut answer).unwrap()
        }
    };
    let line = String::from_utf8_lossy(&answer[..read]);
    line.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {line:?}"))
}

/// GET `url` in the session of `cookie`.
pub fn get_as(cookie: &str, url: &str) -> Answer {
    request("GET", url, &[("cookie", cookie)], None)
}

/// POST the URL-encoded `form` to `url` in the session of `cookie`.
pub fn post_form_as(cookie: &str, url: &str, form: impl Into<Vec<u8>>) -> Answer {
    request(
        "POST",
        url,
        &[("cookie", cookie)],
        Some((FORM, form.into())),
    )
}

/// Logs in through the form; returns the session cookie (`brasa_session=…`).
pub fn login(base: &str, user: &str, password: &str) -> Result<String, Answer> {
    let form = format!(
        "user={}&password={}&next=%2Fui%2Foverview",
        urlencode(user),
        urlencode(password)
    );
    let answer = request(
        "POST",
        &format!("{base}/ui/login"),
        &[],
        Some((FORM, form.into_bytes())),
    );
    match answer.header("set-cookie") {
        Some(cookie) if answer.status == 303 => Ok(cookie.split(';').next().unwrap().to_owned()),
        _ => Err(answer),
    }
}

/// The CSRF token a page's forms carry.
pub fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF field")
        + 19;
    page[at..at + 64].to_owned()
}

pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs a `brasa` operator command against the console daemon.
pub fn brasa_cli(console: &Console, extra: &[&str], args: &[&str]) -> std::process::Output {
    Command::new(BRASA)
        .args(["--api", &console.base()])
        .args(extra)
        .args(args)
        .output()
        .unwrap()
}
