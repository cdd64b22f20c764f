//! RADIUS proxy throughput and latency: brasa beside FreeRADIUS 3.2 configured as a proxy, both
//! in front of the same FreeRADIUS upstream, driven by the same neutral load generator
//! (`shared/tools/radload.py`) in the same run.
//!
//!     cargo bench -p brasa --bench radius_proxy            # BENCH_REQUESTS=100000 to change
//!
//! Prints one line per target and the throughput ratio brasa / FreeRADIUS-proxy.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use support::*;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; this is a one-shot measurement
    }
    let requests: u64 = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    let dir = tempfile::tempdir().unwrap();
    let everyone = [("127.0.0.0/8", "bench-secret")];
    let upstream = start_freeradius(
        &dir.path().join("upstream"),
        "127.0.0.1",
        &everyone,
        "DEFAULT Cleartext-Password := \"secret\"\n",
        "",
        None,
        false,
    );
    let fr_proxy = start_freeradius_proxy(
        &dir.path().join("fr-proxy"),
        "127.0.0.2",
        &everyone,
        upstream.auth,
        "bench-secret",
    );

    let api: SocketAddr = format!("127.0.0.3:{}", free_tcp_port("127.0.0.3"))
        .parse()
        .unwrap();
    let brasa_port = free_udp_port("127.0.0.3");
    let config = format!(
        r#"data_dir = "data"
[api]
listen = "{api}"
[radius]
[[radius.client]]
name = "load"
address = "127.0.0.0/8"
secret = "bench-secret"
[[radius.server]]
name = "proxy"
auth_listen = "127.0.0.3:{brasa_port}"
proxy = "upstream"
[[radius.pool]]
name = "upstream"
timeout = "20s"
retries = 0
[[radius.pool.auth_server]]
address = "{}"
secret = "bench-secret"
"#,
        upstream.auth
    );
    let upstream_addr = upstream.auth.to_string();
    let brasa = start_brasa(&dir.path().join("brasa"), &config, api);
    let brasa_addr: SocketAddr = format!("127.0.0.3:{brasa_port}").parse().unwrap();

    // Warm up every path once, then measure.
    for target in [upstream.auth, fr_proxy.auth, brasa_addr] {
        radload(target, "bench-secret", "auth", 2000, 8, 16);
    }
    println!("Access-Request, {requests} requests, radload 16 sockets x 16 in flight, same run:");
    let mut rates = Vec::new();
    for (name, target) in [
        ("FreeRADIUS upstream (direct, the ceiling)", upstream.auth),
        ("FreeRADIUS 3.2 as proxy", fr_proxy.auth),
        ("brasa as proxy", brasa_addr),
    ] {
        let line = radload(target, "bench-secret", "auth", requests, 16, 16);
        println!("  {name:<42} {line}");
        rates.push(radload_field(&line, "rate"));
    }
    println!(
        "brasa / FreeRADIUS-proxy throughput ratio: {:.2}",
        rates[2] / rates[1]
    );
    drop(brasa);
    drop(fr_proxy);
    drop(upstream);

    // The same two proxies in front of an upstream that is not the bottleneck (brasa in local
    // mode), so the figure is the proxies' own capacity on this machine.
    let fast_api: SocketAddr = format!("127.0.0.4:{}", free_tcp_port("127.0.0.4"))
        .parse()
        .unwrap();
    let fast_port = free_udp_port("127.0.0.4");
    let fast_config = format!(
        r#"data_dir = "data"
[api]
listen = "{fast_api}"
[radius]
[[radius.client]]
name = "proxies"
address = "127.0.0.0/8"
secret = "bench-secret"
[[radius.server]]
name = "upstream"
auth_listen = "127.0.0.4:{fast_port}"
local = "users"
[[radius.local]]
name = "users"
[[radius.local.user]]
name = "DEFAULT"
password = "secret"
"#
    );
    let fast = start_brasa(&dir.path().join("fast-upstream"), &fast_config, fast_api);
    let fast_addr: SocketAddr = format!("127.0.0.4:{fast_port}").parse().unwrap();
    let fr_proxy = start_freeradius_proxy(
        &dir.path().join("fr-proxy-2"),
        "127.0.0.2",
        &everyone,
        fast_addr,
        "bench-secret",
    );
    let brasa = start_brasa(
        &dir.path().join("brasa-2"),
        &config.replace(&upstream_addr, &fast_addr.to_string()),
        api,
    );
    for target in [fast_addr, fr_proxy.auth, brasa_addr] {
        radload(target, "bench-secret", "auth", 2000, 8, 16);
    }
    println!("Same load, upstream = brasa local mode (not the bottleneck):");
    let mut rates = Vec::new();
    for (name, target) in [
        ("brasa local upstream (direct)", fast_addr),
        ("FreeRADIUS 3.2 as proxy", fr_proxy.auth),
        ("brasa as proxy", brasa_addr),
    ] {
        let line = radload(target, "bench-secret", "auth", requests, 16, 16);
        println!("  {name:<42} {line}");
        rates.push(radload_field(&line, "rate"));
    }
    println!(
        "brasa / FreeRADIUS-proxy throughput ratio: {:.2}",
        rates[2] / rates[1]
    );
    drop((brasa, fr_proxy, fast));
}
