//! RADIUS proxy throughput and latency: brasa beside FreeRADIUS 3.2 configured as a proxy, both
//! in front of the same FreeRADIUS upstream, driven by the same neutral load generator
//! (`shared/tools/radload.py`) in the same run.
//!
//!     cargo bench -p brasa --bench radius_proxy            # BENCH_REQUESTS=100000 to change
//!
//! Prints one line per target and the throughput ratio brasa / FreeRADIUS-proxy.

#[path = "../tests/support/mod.rs"]
mod support;

use brasa_testkit::cpu::pid_cpu_seconds;
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
    let results = measure(
        requests,
        &[
            (
                "FreeRADIUS upstream (direct, the ceiling)",
                upstream.auth,
                upstream.daemon.child.id(),
            ),
            (
                "FreeRADIUS 3.2 as proxy",
                fr_proxy.auth,
                fr_proxy.daemon.child.id(),
            ),
            ("brasa as proxy", brasa_addr, brasa.child.id()),
        ],
    );
    report(&results);
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
    let results = measure(
        requests,
        &[
            ("brasa local upstream (direct)", fast_addr, fast.child.id()),
            (
                "FreeRADIUS 3.2 as proxy",
                fr_proxy.auth,
                fr_proxy.daemon.child.id(),
            ),
            ("brasa as proxy", brasa_addr, brasa.child.id()),
        ],
    );
    report(&results);
    drop((brasa, fr_proxy, fast));
}

/// Runs the same load against each target; returns (answered per second, CPU µs per request
/// spent by the target process itself).
fn measure(requests: u64, targets: &[(&str, SocketAddr, u32)]) -> Vec<(f64, f64)> {
    let mut results = Vec::new();
    for (name, target, pid) in targets {
        let before = pid_cpu_seconds(*pid);
        // A lost request ends the run 0.3 s after the last answer instead of 2 s, so a few
        // losses do not dominate the measured rate.
        let line = radload_with_timeout(*target, "bench-secret", "auth", requests, 16, 16, 0.3);
        let cpu = pid_cpu_seconds(*pid) - before;
        let cpu_us = cpu * 1e6 / radload_field(&line, "answered").max(1.0);
        println!("  {name:<42} {line} cpu={cpu_us:.1}us/req");
        results.push((radload_field(&line, "rate"), cpu_us));
    }
    results
}

/// Prints brasa (last) against FreeRADIUS (second) by throughput and by CPU per request, the
/// figure that does not depend on what else the two shared cores are doing.
fn report(results: &[(f64, f64)]) {
    let (freeradius, brasa) = (results[1], results[2]);
    println!(
        "brasa / FreeRADIUS-proxy: throughput {:.2}x; CPU per request {:.2}x lower",
        brasa.0 / freeradius.0,
        freeradius.1 / brasa.1
    );
}
