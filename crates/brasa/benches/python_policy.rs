//! Seed 000's class reflection as a load test: brasa proxying with the document's Python script
//! (`examples/python/python_cache.py`: Access-Accept → save the Class attributes under the
//! User-Name; Accounting Interim-Update → retrieve, insert the Class attributes, reset the
//! lifetime), beside FreeRADIUS 3.2 doing the same job in Python (`rlm_python3`, the anchor of
//! the Nokia SR OS Python cache job) and natively (`rlm_cache` + unlang, the fastest way
//! FreeRADIUS has), all proxying to the same kind of upstream, with the same load generator
//! (`shared/tools/radload.py`, 16 sockets × 8 in flight), in the same run.
//!
//!     cargo bench -p brasa --bench python_policy          # BENCH_REQUESTS=N (default 40000)
//!
//! `BENCH_ONLY=TEXT` measures only the targets whose name contains TEXT (to profile one).
//!
//! rlm_python3 has no cache of its own. Its script keeps the entries in a dict of its module
//! (User-Name → Class values and expiry time), which is what `alc.cache` is to a brasa script:
//! an in-process table the script reads and writes itself, with a lifetime per entry. rlm_cache
//! beside rlm_python3 would not be the same job: the script could not call it, so unlang would
//! do the caching and Python would have nothing left to do. The dict is the cheapest cache a
//! Python script can have (no size limits, no journal, no memory accounting), so the
//! comparison is, if anything, in FreeRADIUS's favour.
//!
//! The upstream is a minimal responder in this process (brasa-radius codec, one thread per
//! socket) that answers every Access-Request with Access-Accept + Class-1/Class-22/Class-333 +
//! the User-Name (as the document's server does) and every Accounting-Request with a response,
//! and counts the accounting requests that arrive carrying the three Class attributes: the
//! proof that each proxy really did the job. A FreeRADIUS upstream would be the bottleneck
//! (~28 k/s here), hiding the proxies' own capacity.

#[path = "../tests/support/mod.rs"]
mod support;

use brasa_radius::{auth, Code, Message};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use support::*;

const SECRET: &str = "bench-secret";

/// Accounting requests that carried Class-1, Class-22 and Class-333 (one counter per upstream).
type Reflected = Arc<AtomicU64>;

fn responder(socket: UdpSocket, reflected: Reflected) {
    let mut buffer = [0u8; 4096];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buffer) else {
            return;
        };
        let Ok(request) = Message::decode(&buffer[..len]) else {
            continue;
        };
        let mut reply = match request.code {
            Code::AccessRequest => {
                let mut reply = Message::new(Code::AccessAccept, request.identifier);
                for class in [&b"Class-1"[..], b"Class-22", b"Class-333"] {
                    reply.add(25, class).unwrap();
                }
                reply.copy_all(1, &request);
                reply
            }
            Code::AccountingRequest => {
                let classes: Vec<&[u8]> = request.get_all(25).collect();
                if classes == [&b"Class-1"[..], b"Class-22", b"Class-333"] {
                    reflected.fetch_add(1, Ordering::Relaxed);
                }
                Message::new(Code::AccountingResponse, request.identifier)
            }
            _ => continue,
        };
        for state in request.get_all(33) {
            reply.add(33, state).unwrap();
        }
        let Ok(mut bytes) = reply.encode() else {
            continue;
        };
        auth::sign_response(&mut bytes, &request.authenticator, SECRET.as_bytes());
        let _ = socket.send_to(&bytes, from);
    }
}

fn start_upstream(ip: &str, reflected: &Reflected) -> (SocketAddr, SocketAddr) {
    let mut addresses = Vec::new();
    for _ in 0..2 {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        // Bursts from the proxies must queue, not be dropped by the kernel.
        let _ = socket.set_recv_buffer_size(4 << 20);
        let _ = socket.set_send_buffer_size(4 << 20);
        let address: SocketAddr = format!("{ip}:0").parse().unwrap();
        socket.bind(&address.into()).unwrap();
        let socket: UdpSocket = socket.into();
        addresses.push(socket.local_addr().unwrap());
        let reflected = reflected.clone();
        std::thread::spawn(move || responder(socket, reflected));
    }
    (addresses[0], addresses[1])
}

/// The home servers, pools and realm of a FreeRADIUS proxy towards `auth` and `acct`.
fn freeradius_proxy_top(auth: SocketAddr, acct: SocketAddr) -> String {
    let home_server = |name: &str, kind: &str, address: SocketAddr| {
        format!(
            r#"home_server {name} {{
  type = {kind}
  ipaddr = {}
  port = {}
  secret = {SECRET}
  response_window = 20
  zombie_period = 40
  revive_interval = 10
  status_check = none
  max_outstanding = 65536
}}
"#,
            address.ip(),
            address.port()
        )
    };
    format!(
        r#"proxy_requests = yes
proxy server {{
  default_fallback = no
}}
{}{}home_server_pool auth_pool {{
  type = fail-over
  home_server = upstream_auth
}}
home_server_pool acct_pool {{
  type = fail-over
  home_server = upstream_acct
}}
realm upstream {{
  auth_pool = auth_pool
  acct_pool = acct_pool
}}
"#,
        home_server("upstream_auth", "auth", auth),
        home_server("upstream_acct", "acct", acct)
    )
}

/// The `server default` body of a class-reflecting FreeRADIUS proxy: every request goes to the
/// upstream realm; `preacct` and `post_proxy` are the policy's sections.
fn proxy_server_body(preacct: &str, post_proxy: &str) -> String {
    format!(
        r#"  authorize {{
    update control {{
      &Proxy-To-Realm := "upstream"
    }}
  }}
  authenticate {{
  }}
  preacct {{
    update control {{
      &Proxy-To-Realm := "upstream"
    }}
{preacct}  }}
  accounting {{
  }}
  pre-proxy {{
  }}
  post-proxy {{
{post_proxy}  }}
  post-auth {{
  }}
"#
    )
}

/// FreeRADIUS as a proxy that stores the Class attributes of each Access-Accept in `rlm_cache`
/// (key User-Name, 3600 s, replacing an older entry) and merges them into every
/// Accounting-Request before proxying it; an Interim-Update resets the entry's TTL to 900 s and
/// a Stop expires it — the script's logic, in unlang.
fn start_freeradius_class_proxy(
    dir: &Path,
    ip: &str,
    auth: SocketAddr,
    acct: SocketAddr,
) -> FreeRadius {
    let modules = r#"  always reject {
    rcode = reject
  }
  cache class_cache {
    driver = "rlm_cache_rbtree"
    key = "%{User-Name}"
    ttl = 3600
    max_entries = 0
    add_stats = no
    update {
      &request:Class += &proxy-reply:Class[*]
    }
  }
"#;
    let body = proxy_server_body(
        r#"    if (&Acct-Status-Type == Interim-Update) {
      # Reset the lifetime to 900 s and merge the entry into the request.
      update control {
        &Cache-TTL := 900
      }
      class_cache
    }
    else {
      update control {
        &Cache-Read-Only := yes
      }
      class_cache
      if (&Acct-Status-Type == Stop) {
        update control {
          &Cache-Read-Only !* ANY
          &Cache-TTL := 0
        }
        class_cache
      }
    }
    if (notfound) {
      reject
    }
"#,
        r#"    if (&proxy-reply:Class) {
      # A new Access-Accept replaces the stored Class attributes.
      update control {
        &Cache-TTL := -3600
      }
      class_cache
    }
"#,
    );
    start_freeradius_with_modules(
        dir,
        ip,
        &[("127.0.0.0/8", SECRET)],
        "",
        modules,
        &freeradius_proxy_top(auth, acct),
        Some(&body),
        false,
    )
}

/// The document's script as an rlm_python3 module: `post_proxy` saves the Class attributes of
/// an Access-Accept under the User-Name (3600 s, the brasa cache's `max_entry_lifetime`),
/// `preacct` retrieves them into the Accounting-Request (a miss rejects it, as the script drops
/// it), resets the lifetime to 900 s on an Interim-Update and removes the entry on a Stop.
const RLM_PYTHON3_MODULE: &str = r#"import time
import radiusd

# User-Name -> (Class values as FreeRADIUS prints them, expiry in monotonic seconds).
cache = {}

def first(pairs, name):
    for pair in pairs:
        if pair[0] == name:
            return pair[1]
    return None

def post_proxy(p):
    reply = p["proxy-reply"]
    if not reply:
        return radiusd.RLM_MODULE_NOOP
    user = first(p["request"], "User-Name")
    classes = tuple(value for name, value in reply if name == "Class")
    if not user or not classes:
        return radiusd.RLM_MODULE_NOOP
    cache[user] = (classes, time.monotonic() + 3600)
    return radiusd.RLM_MODULE_OK

def preacct(p):
    request = p["request"]
    user = first(request, "User-Name")
    entry = cache.get(user)
    now = time.monotonic()
    if entry is None or entry[1] <= now:
        return radiusd.RLM_MODULE_REJECT
    status = first(request, "Acct-Status-Type")
    if status == "Stop":
        del cache[user]
    elif status == "Interim-Update":
        cache[user] = (entry[0], now + 900)
    return radiusd.RLM_MODULE_UPDATED, {"request": tuple(("Class", "+=", value) for value in entry[0])}
"#;

/// FreeRADIUS as a proxy whose class reflection is the document's script in `rlm_python3`
/// (see [`RLM_PYTHON3_MODULE`]): the anchor the Python policy is measured against.
fn start_freeradius_python_proxy(
    dir: &Path,
    ip: &str,
    auth: SocketAddr,
    acct: SocketAddr,
) -> FreeRadius {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("class_reflection.py"), RLM_PYTHON3_MODULE).unwrap();
    let modules = format!(
        r#"  python3 class_python {{
    python_path = "{}"
    module = class_reflection
    pass_all_vps_dict = yes
    mod_post_proxy = ${{.module}}
    func_post_proxy = post_proxy
    mod_preacct = ${{.module}}
    func_preacct = preacct
  }}
"#,
        dir.display()
    );
    let body = proxy_server_body("    class_python\n", "    class_python\n");
    start_freeradius_with_modules(
        dir,
        ip,
        &[("127.0.0.0/8", SECRET)],
        "",
        &modules,
        &freeradius_proxy_top(auth, acct),
        Some(&body),
        false,
    )
}

fn brasa_config(
    api: SocketAddr,
    ip: &str,
    auth: u16,
    acct: u16,
    upstream: (SocketAddr, SocketAddr),
    python: bool,
) -> String {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python/python_cache.py");
    let mut text = format!(
        r#"data_dir = "data"
[api]
listen = "{api}"
[radius]
[[radius.client]]
name = "load"
address = "127.0.0.0/8"
secret = "{SECRET}"
[[radius.server]]
name = "proxy"
auth_listen = "{ip}:{auth}"
acct_listen = "{ip}:{acct}"
proxy = "upstream"
{}
[[radius.pool]]
name = "upstream"
timeout = "20s"
retries = 0
[[radius.pool.auth_server]]
address = "{}"
secret = "{SECRET}"
[[radius.pool.acct_server]]
address = "{}"
secret = "{SECRET}"
"#,
        if python {
            "python_policy = \"python-policy-1\""
        } else {
            ""
        },
        upstream.0,
        upstream.1
    );
    if python {
        text.push_str(&format!(
            r#"[python]
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
max_entries = 1000000
max_entry_lifetime = "1h"
"#,
            script.display()
        ));
    }
    text
}

struct Target {
    name: &'static str,
    auth: SocketAddr,
    acct: SocketAddr,
    pid: u32,
    reflected: Reflected,
}

/// radload's load: sockets, and requests in flight on each.
const SOCKETS: u32 = 16;
const IN_FLIGHT: u32 = 8;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; this is a one-shot measurement
    }
    let requests: u64 = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40_000);
    let dir = tempfile::tempdir().unwrap();
    let mut freeradius = Vec::new();
    let mut daemons = Vec::new();
    let mut targets = Vec::new();
    // Each proxy gets its own upstream responder, so each count says what that proxy sent.
    for (name, ip, python) in [
        ("FreeRADIUS 3.2 proxy + rlm_python3", "127.0.0.2", true),
        (
            "FreeRADIUS 3.2 proxy + rlm_cache/unlang",
            "127.0.0.6",
            false,
        ),
    ] {
        let reflected: Reflected = Arc::default();
        let (auth, acct) = start_upstream("127.0.0.5", &reflected);
        let fr_dir = dir.path().join(ip);
        let server = if python {
            start_freeradius_python_proxy(&fr_dir, ip, auth, acct)
        } else {
            start_freeradius_class_proxy(&fr_dir, ip, auth, acct)
        };
        targets.push(Target {
            name,
            auth: server.auth,
            acct: server.acct,
            pid: server.daemon.child.id(),
            reflected,
        });
        freeradius.push(server);
    }
    for (name, ip, python) in [
        ("brasa proxy + Python script", "127.0.0.3", true),
        ("brasa proxy, no policy (reference)", "127.0.0.4", false),
    ] {
        let api: SocketAddr = format!("{ip}:{}", free_tcp_port(ip)).parse().unwrap();
        let (auth, acct) = (free_udp_port(ip), free_udp_port(ip));
        let reflected: Reflected = Arc::default();
        let upstream = start_upstream("127.0.0.5", &reflected);
        let config = brasa_config(api, ip, auth, acct, upstream, python);
        let daemon = start_brasa(&dir.path().join(ip), &config, api);
        targets.push(Target {
            name,
            auth: format!("{ip}:{auth}").parse().unwrap(),
            acct: format!("{ip}:{acct}").parse().unwrap(),
            pid: daemon.child.id(),
            reflected,
        });
        daemons.push(daemon);
    }

    for target in &targets {
        radload(target.auth, SECRET, "auth", 2000, SOCKETS, IN_FLIGHT);
        radload(target.acct, SECRET, "acct", 2000, SOCKETS, IN_FLIGHT);
    }
    for target in &targets {
        target.reflected.store(0, Ordering::Relaxed);
    }
    println!(
        "Class reflection (seed 000), {requests} Access-Requests then {requests} Interim-Updates per target, radload {SOCKETS} sockets x {IN_FLIGHT} in flight, same run:"
    );
    // To profile one target, measure only the ones whose name contains BENCH_ONLY.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    // Per target: (rate, CPU µs per request) for auth, then acct.
    let mut measured = Vec::new();
    for target in &targets {
        if !target.name.contains(only.as_str()) {
            measured.push(None);
            continue;
        }
        let mut row = Vec::new();
        for (kind, address) in [("auth", target.auth), ("acct", target.acct)] {
            let before = cpu_seconds(target.pid);
            // A lost request ends the run 0.3 s after the last answer, not 2 s.
            let line =
                radload_with_timeout(address, SECRET, kind, requests, SOCKETS, IN_FLIGHT, 0.3);
            let cpu = cpu_seconds(target.pid) - before;
            let answered = radload_field(&line, "answered");
            let cpu_us = cpu * 1e6 / answered.max(1.0);
            println!("  {:<40} {line} cpu={cpu_us:.1}us/req", target.name);
            row.push((radload_field(&line, "rate"), cpu_us));
        }
        let reflected = target.reflected.load(Ordering::Relaxed);
        println!(
            "  {:<40} accounting requests reaching the upstream with Class-1, Class-22, Class-333: {reflected}",
            ""
        );
        measured.push(Some(row));
    }
    for (anchor, label) in [
        (&measured[0], "FreeRADIUS+rlm_python3"),
        (&measured[1], "FreeRADIUS+rlm_cache"),
    ] {
        let (Some(anchor), Some(brasa)) = (anchor, &measured[2]) else {
            continue;
        };
        for (index, kind) in [
            "Access-Request (save)",
            "Interim-Update (retrieve, set, set_lifetime)",
        ]
        .iter()
        .enumerate()
        {
            println!(
                "brasa+Python / {label}, {kind}: throughput {:.2}x; CPU per request {:.2}x lower",
                brasa[index].0 / anchor[index].0,
                anchor[index].1 / brasa[index].1
            );
        }
    }
    drop(daemons);
    drop(freeradius);
}
