//! The data-plane compile of one dynamic-services setup (a new Epipe with two SAPs), against a
//! configuration that already holds N such Epipes: the compile of the whole configuration
//! (`Compiler::prepare`, what every transaction paid before) beside the compile of what the
//! transaction changed (`Compiler::prepare_transaction`), in the same run. Each setup is
//! validated, compiled and committed; the figure is the compile's time alone.
//!
//! `cargo run --release -p brasa-services-net --example compile_bench -- [SETUPS]`

use std::time::{Duration, Instant};

use brasa_dataplane::pipeline::PortId;
use brasa_services::{cli, Encapsulation, Environment, PortMap, PortName, Ports, ServiceConfig};
use brasa_services_net::compile::{Compiler, NoGre};

fn env() -> Environment {
    let ports: Ports = [
        (PortName::new("eth1").unwrap(), Encapsulation::Qinq),
        (PortName::new("eth2").unwrap(), Encapsulation::Dot1q),
    ]
    .into_iter()
    .collect();
    Environment::new(ports)
}

fn port(name: &str) -> Option<PortId> {
    match name {
        "eth1" => Some(0),
        "eth2" => Some(1),
        _ => None,
    }
}

/// The n-th setup: Epipe 5000+n from `eth1:3000.n'` to `eth2:n'`, as the seed-style script
/// of the setup benchmark writes it.
fn setup(n: u32) -> String {
    let (outer, inner) = (3000 + n / 4000, 1 + n % 4000);
    format!(
        "configure service epipe {} customer 1 create description \"dynamic\" \
         sap eth1:{outer}.{inner} create exit sap eth2:{inner} create exit no shutdown exit all\n",
        5000 + n
    )
}

/// Runs `setups` setups on a fresh configuration; returns the compile time of each.
fn run(setups: u32, incremental: bool) -> Vec<Duration> {
    let env = env();
    let map = PortMap::new();
    let mut config = ServiceConfig::new();
    let mut compiler = Compiler::new();
    let mut times = Vec::with_capacity(setups as usize);
    for n in 0..setups {
        let changes = cli::parse(&setup(n), &map).unwrap();
        let txn = config.prepare(&changes, &env).unwrap();
        let start = Instant::now();
        let mut compiled = if incremental {
            compiler.prepare_transaction(&config, &txn, &env, &port, &NoGre)
        } else {
            compiler.prepare(txn.config(), &env, &port, &NoGre)
        }
        .unwrap();
        // The snapshot an install of this transaction alone takes.
        compiled.tables();
        times.push(start.elapsed());
        compiler.commit(compiled);
        config.commit(txn).unwrap();
    }
    times
}

fn main() {
    let setups: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(4000);
    for (label, incremental) in [
        ("whole configuration (prepare)", false),
        ("what changed (prepare_transaction)", true),
    ] {
        let times = run(setups, incremental);
        let last: Vec<Duration> = times[times.len() - times.len().div_ceil(10)..].to_vec();
        let mean = |t: &[Duration]| t.iter().sum::<Duration>() / t.len() as u32;
        let total: Duration = times.iter().sum();
        println!(
            "{label:<36} {setups} setups: {:>8.0} compiles/s overall, mean {:>9.1} us, \
             last tenth (>= {} Epipes) mean {:>9.1} us",
            f64::from(setups) / total.as_secs_f64(),
            mean(&times).as_secs_f64() * 1e6,
            setups - last.len() as u32,
            mean(&last).as_secs_f64() * 1e6,
        );
    }
}
