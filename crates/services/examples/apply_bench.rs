//! SAP creations per second through the library call, as a dynamic-services script makes them:
//! parse a snippet, validate it against the running configuration, commit the transaction.
//! The configuration already holds 10 k, then 100 k SAPs, so validation must not scan it.
//! Last, the services journal's compaction of the whole configuration (`cli::compact`).
//!
//! `cargo run --release -p brasa-services --example apply_bench`

use std::time::Instant;

use brasa_services::{
    cli, Change, Encapsulation, Environment, PortMap, PortName, Ports, ServiceConfig,
};

/// The n-th distinct QinQ tag pair.
fn tags(n: u32) -> (u32, u32) {
    (1 + n / 4094, 1 + n % 4094)
}

fn env() -> Environment {
    let ports: Ports = [
        (PortName::new("eth1").unwrap(), Encapsulation::Qinq),
        (PortName::new("eth2").unwrap(), Encapsulation::Qinq),
    ]
    .into_iter()
    .collect();
    Environment::new(ports)
}

/// A configuration with `saps` SAPs: half in one VPLS on eth1, half in two-SAP Epipes on eth1.
fn preload(saps: u32, env: &Environment) -> ServiceConfig {
    let map = PortMap::new();
    let mut text = String::from("configure service vpls 1 customer 1 create\n");
    for n in 0..saps / 2 {
        let (o, i) = tags(n);
        text.push_str(&format!("sap eth1:{o}.{i} create exit\n"));
    }
    text.push_str("no shutdown exit\n");
    for e in 0..saps / 4 {
        let (o1, i1) = tags(saps / 2 + 2 * e);
        let (o2, i2) = tags(saps / 2 + 2 * e + 1);
        text.push_str(&format!(
            "epipe {} customer 1 create sap eth1:{o1}.{i1} create exit sap eth1:{o2}.{i2} create exit no shutdown exit\n",
            1000 + e
        ));
    }
    let changes: Vec<Change> = cli::parse(&text, &map).unwrap();
    let mut config = ServiceConfig::new();
    config.apply_changes(&changes, env).unwrap();
    assert_eq!(config.sap_count() as u32, saps / 2 + 2 * (saps / 4));
    config
}

fn run(
    label: &str,
    config: &mut ServiceConfig,
    env: &Environment,
    snippets: &[String],
    saps_each: u32,
) {
    let map = PortMap::new();
    let start = Instant::now();
    for snippet in snippets {
        let changes = cli::parse(snippet, &map).unwrap();
        let txn = config.prepare(&changes, env).unwrap();
        config.commit(txn).unwrap();
    }
    let seconds = start.elapsed().as_secs_f64();
    let saps = f64::from(saps_each) * snippets.len() as f64;
    println!(
        "{label:<44} {:>9.0} SAP creations/s  ({:>6.1} µs per snippet, {} snippets)",
        saps / seconds,
        seconds * 1e6 / snippets.len() as f64,
        snippets.len()
    );
}

fn main() {
    let env = env();
    let rounds = 20_000u32;
    for preloaded in [10_000u32, 100_000] {
        let mut config = preload(preloaded, &env);
        println!("configuration holding {} SAPs:", config.sap_count());
        // VPLS: one SAP per snippet into the existing VPLS 1.
        let vpls: Vec<String> = (0..rounds)
            .map(|n| {
                let (o, i) = tags(n);
                format!("configure service vpls 1\n    sap eth2:{o}.{i} create\n        description \"dyn\"\n    exit\nexit all\n")
            })
            .collect();
        run("  VPLS: 1 SAP per snippet", &mut config, &env, &vpls, 1);
        // Epipe: a new service with two SAPs per snippet.
        let epipe: Vec<String> = (0..rounds)
            .map(|n| {
                let (o1, i1) = tags(rounds + 2 * n);
                let (o2, i2) = tags(rounds + 2 * n + 1);
                format!(
                    "configure service epipe {} customer 1 create\n    sap eth2:{o1}.{i1} create\n    exit\n    sap eth2:{o2}.{i2} create\n    exit\n    no shutdown\nexit all\n",
                    1_000_000 + n
                )
            })
            .collect();
        run(
            "  Epipe: new service + 2 SAPs per snippet",
            &mut config,
            &env,
            &epipe,
            2,
        );
        // The services journal's compaction over an empty static configuration: every Epipe
        // its own transaction, the VPLS one, all written, parsed and applied to check them.
        let start = Instant::now();
        let texts = cli::compact(&ServiceConfig::new(), &config, &env, &PortMap::new()).unwrap();
        println!(
            "  journal compaction of all of it: {} transactions, {} bytes, {:.2} s",
            texts.len(),
            texts.iter().map(String::len).sum::<usize>(),
            start.elapsed().as_secs_f64()
        );
    }
}
