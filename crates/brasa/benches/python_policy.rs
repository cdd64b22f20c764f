//! The SR OS Python cache guide's class reflection as a load test: brasa proxying with the document's Python script
//! (`examples/python/python_cache.py`: Access-Accept → save the Class attributes under the
//! User-Name; Accounting Interim-Update → retrieve, insert the Class attributes, reset the
//! lifetime), beside FreeRADIUS 3.2 doing the same job in Python (`rlm_python3`, the anchor of
//! the Nokia SR OS Python cache job) and natively (`rlm_cache` + unlang, the fastest way
//! FreeRADIUS has), all proxying to the same kind of upstream, with the same load generator
//! (`shared/tools/radload.py`, 16 sockets × 8 in flight), in the same run. Then the same with
//! the cache in a throw-away `redis-server`: brasa with `backend = "redis"` beside FreeRADIUS
//! with `rlm_redis` (Debian's `freeradius-redis`).
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

use brasa_cache_redis::testing::RedisServer;
use brasa_radius::{auth, Code, Message};
use brasa_testkit::cpu::pid_cpu_seconds;
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

/// FreeRADIUS's proxy.conf for the upstream: one auth and one acct home server.
fn proxy_realm(auth: SocketAddr, acct: SocketAddr) -> String {
    format!(
        r#"proxy_requests = yes
proxy server {{
  default_fallback = no
}}
home_server upstream_auth {{
  type = auth
  ipaddr = {}
  port = {}
  secret = {SECRET}
  response_window = 20
  zombie_period = 40
  revive_interval = 10
  status_check = none
  max_outstanding = 65536
}}
home_server upstream_acct {{
  type = acct
  ipaddr = {}
  port = {}
  secret = {SECRET}
  response_window = 20
  zombie_period = 40
  revive_interval = 10
  status_check = none
  max_outstanding = 65536
}}
home_server_pool auth_pool {{
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
        auth.ip(),
        auth.port(),
        acct.ip(),
        acct.port()
    )
}

/// A FreeRADIUS proxy of every request to the upstream realm with `modules`, whose class
/// reflection is `preacct` (after the realm is chosen) and `post_proxy`: the three FreeRADIUS
/// targets differ only there.
fn class_proxy(
    dir: &Path,
    ip: &str,
    (auth, acct): (SocketAddr, SocketAddr),
    modules: &str,
    preacct: &str,
    post_proxy: &str,
) -> FreeRadius {
    let body = format!(
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
    );
    start_freeradius_with_modules(
        dir,
        ip,
        &[("127.0.0.0/8", SECRET)],
        "",
        modules,
        &proxy_realm(auth, acct),
        Some(&body),
        "",
        false,
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
    class_proxy(
        dir,
        ip,
        (auth, acct),
        modules,
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
    )
}

/// FreeRADIUS as the same proxy with its Class cache in Redis through `rlm_redis` (Debian's
/// `freeradius-redis`; its 3.2 packages have no `rlm_cache_redis` driver): post-proxy stores
/// the Access-Accept's three Class values in a hash keyed on User-Name (HSET + EXPIRE 3600);
/// preacct reads them back (HGET each) into the Accounting-Request, rejects when there is no
/// entry, and an Interim-Update resets the TTL to 900 s — the document's job in unlang, for the
/// three Class values this load carries.
fn start_freeradius_redis_class_proxy(
    dir: &Path,
    ip: &str,
    upstream: (SocketAddr, SocketAddr),
    redis_port: u16,
) -> FreeRadius {
    let modules = format!(
        r#"  always reject {{
    rcode = reject
  }}
  redis {{
    server = 127.0.0.1
    port = {redis_port}
    database = 0
    pool {{
      start = 4
      min = 4
      max = 32
      spare = 8
      uses = 0
      lifetime = 0
      idle_timeout = 600
    }}
  }}
"#
    );
    class_proxy(
        dir,
        ip,
        upstream,
        &modules,
        r#"    update control {
      &Tmp-String-0 := "%{redis:HGET cls:%{User-Name} 0}"
    }
    if (!&control:Tmp-String-0 || &control:Tmp-String-0 == "") {
      reject
    }
    update request {
      &Class += "%{control:Tmp-String-0}"
      &Class += "%{redis:HGET cls:%{User-Name} 1}"
      &Class += "%{redis:HGET cls:%{User-Name} 2}"
    }
    if (&Acct-Status-Type == Interim-Update) {
      update control {
        &Tmp-String-1 := "%{redis:EXPIRE cls:%{User-Name} 900}"
      }
    }
"#,
        r#"    if (&proxy-reply:Class) {
      update control {
        &Tmp-String-0 := "%{redis:HSET cls:%{User-Name} 0 %{proxy-reply:Class[0]} 1 %{proxy-reply:Class[1]} 2 %{proxy-reply:Class[2]}}"
        &Tmp-String-1 := "%{redis:EXPIRE cls:%{User-Name} 3600}"
      }
    }
"#,
    )
}

/// `cache`: the body of `[python.policy.cache]` (and any `[python.*]` table after it) of a
/// proxy running the document's script; `None` for a proxy without a policy.
fn brasa_config(
    api: SocketAddr,
    ip: &str,
    auth: u16,
    acct: u16,
    upstream: (SocketAddr, SocketAddr),
    cache: Option<&str>,
) -> String {
    let python = cache.is_some();
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
    if let Some(cache) = cache {
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
{cache}"#,
            script.display()
        ));
    }
    text
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
    class_proxy(
        dir,
        ip,
        (auth, acct),
        &modules,
        "    class_python\n",
        "    class_python\n",
    )
}

struct Target {
    name: &'static str,
    auth: SocketAddr,
    acct: SocketAddr,
    pid: u32,
    /// The `redis-server` holding this target's cache, when it is in Redis: its CPU is part
    /// of the cost of a request.
    redis_pid: Option<u32>,
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
    // Each proxy gets its own upstream responder, so each count says what that proxy sent.
    let reflected: Reflected = Arc::default();
    let upstream = start_upstream("127.0.0.5", &reflected);
    let freeradius =
        start_freeradius_class_proxy(&dir.path().join("fr"), "127.0.0.2", upstream.0, upstream.1);
    let mut daemons = Vec::new();
    let python_reflected: Reflected = Arc::default();
    let python_upstream = start_upstream("127.0.0.5", &python_reflected);
    let fr_python = start_freeradius_python_proxy(
        &dir.path().join("fr-python"),
        "127.0.0.8",
        python_upstream.0,
        python_upstream.1,
    );
    let mut targets = vec![
        Target {
            name: "FreeRADIUS 3.2 proxy + rlm_cache/unlang",
            auth: freeradius.auth,
            acct: freeradius.acct,
            pid: freeradius.daemon.child.id(),
            redis_pid: None,
            reflected,
        },
        Target {
            name: "FreeRADIUS 3.2 proxy + rlm_python3",
            auth: fr_python.auth,
            acct: fr_python.acct,
            pid: fr_python.daemon.child.id(),
            redis_pid: None,
            reflected: python_reflected,
        },
    ];
    let redis = RedisServer::start(dir.path(), "");
    let redis_pid = redis
        .cli(&["INFO", "server"])
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.trim().strip_prefix("process_id:")?.parse().ok())
        })
        .expect("redis-server's process_id");
    let redis_reflected: Reflected = Arc::default();
    let fr_redis = start_freeradius_redis_class_proxy(
        &dir.path().join("fr-redis"),
        "127.0.0.6",
        start_upstream("127.0.0.5", &redis_reflected),
        redis.port,
    );
    let embedded = "max_entries = 1000000\nmax_entry_lifetime = \"1h\"\n".to_string();
    let in_redis = format!(
        "backend = \"redis\"\n{embedded}[python.redis]\nurl = \"{}\"\nkey_prefix = \"bench:\"\n",
        redis.url()
    );
    for (name, ip, cache) in [
        ("brasa proxy + Python script", "127.0.0.3", Some(&embedded)),
        ("brasa proxy, no policy (reference)", "127.0.0.4", None),
        (
            "brasa proxy + Python script, Redis cache",
            "127.0.0.7",
            Some(&in_redis),
        ),
    ] {
        if name.contains("Redis") {
            targets.push(Target {
                name: "FreeRADIUS 3.2 proxy + rlm_redis/unlang",
                auth: fr_redis.auth,
                acct: fr_redis.acct,
                pid: fr_redis.daemon.child.id(),
                redis_pid: Some(redis_pid),
                reflected: redis_reflected.clone(),
            });
        }
        let api: SocketAddr = format!("{ip}:{}", free_tcp_port(ip)).parse().unwrap();
        let (auth, acct) = (free_udp_port(ip), free_udp_port(ip));
        let reflected: Reflected = Arc::default();
        let upstream = start_upstream("127.0.0.5", &reflected);
        let config = brasa_config(api, ip, auth, acct, upstream, cache.map(String::as_str));
        let daemon = start_brasa(&dir.path().join(ip), &config, api);
        targets.push(Target {
            name,
            auth: format!("{ip}:{auth}").parse().unwrap(),
            acct: format!("{ip}:{acct}").parse().unwrap(),
            pid: daemon.child.id(),
            redis_pid: name.contains("Redis").then_some(redis_pid),
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
        "Class reflection (SR OS Python cache support), {requests} Access-Requests then {requests} Interim-Updates per target, radload {SOCKETS} sockets x {IN_FLIGHT} in flight, same run (the ratios count redis-server's CPU with the proxy's):"
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
            let redis_cpu = || target.redis_pid.map_or(0.0, pid_cpu_seconds);
            let before = (pid_cpu_seconds(target.pid), redis_cpu());
            // A lost request ends the run 0.3 s after the last answer, not 2 s.
            let line =
                radload_with_timeout(address, SECRET, kind, requests, SOCKETS, IN_FLIGHT, 0.3);
            let cpu = pid_cpu_seconds(target.pid) - before.0;
            let answered = radload_field(&line, "answered").max(1.0);
            let cpu_us = cpu * 1e6 / answered;
            let redis_us = (redis_cpu() - before.1) * 1e6 / answered;
            let redis_column = match target.redis_pid {
                Some(_) => format!(" redis-server={redis_us:.1}us/req"),
                None => String::new(),
            };
            println!(
                "  {:<40} {line} cpu={cpu_us:.1}us/req{redis_column}",
                target.name
            );
            // The comparison counts the Redis server's CPU with the proxy's.
            row.push((radload_field(&line, "rate"), cpu_us + redis_us));
        }
        let reflected = target.reflected.load(Ordering::Relaxed);
        println!(
            "  {:<40} accounting requests reaching the upstream with Class-1, Class-22, Class-333: {reflected}",
            ""
        );
        measured.push(Some(row));
    }
    // Targets in order: rlm_cache, rlm_python3, brasa + Python, brasa reference,
    // rlm_redis, brasa + Python with the cache in Redis.
    for (label, ours, theirs) in [
        ("brasa+Python / FreeRADIUS+rlm_python3", 2, 1),
        ("brasa+Python / FreeRADIUS+rlm_cache", 2, 0),
        ("brasa+Python, Redis cache / FreeRADIUS+rlm_redis", 5, 4),
        ("brasa+Python, Redis cache / embedded cache", 5, 2),
    ] {
        let (Some(Some(ours)), Some(Some(theirs))) = (measured.get(ours), measured.get(theirs))
        else {
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
                "{label}, {kind}: throughput {:.2}x; CPU per request {:.2}x lower",
                ours[index].0 / theirs[index].0,
                theirs[index].1 / ours[index].1
            );
        }
    }
    drop(daemons);
    drop(freeradius);
    drop(fr_python);
    drop(fr_redis);
    drop(redis);
}
