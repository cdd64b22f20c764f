//! The service text parser: arbitrary bytes never panic; whatever parses and applies exports to
//! text that parses and applies to the same configuration, and exports identically.
#![no_main]

use brasa_services::{cli, Encapsulation, Environment, PortMap, PortName, Ports, ServiceConfig};
use libfuzzer_sys::fuzz_target;

fn env() -> Environment {
    let ports: Ports = [
        ("eth0", Encapsulation::Null),
        ("eth1", Encapsulation::Dot1q),
        ("eth2", Encapsulation::Qinq),
    ]
    .into_iter()
    .filter_map(|(name, encap)| Some((PortName::new(name).ok()?, encap)))
    .collect();
    Environment::new(ports)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut map = PortMap::new();
    if let Ok(eth2) = PortName::new("eth2") {
        map.insert("1/1/4", eth2);
    }
    let Ok(changes) = cli::parse(text, &map) else {
        return;
    };
    let env = env();
    let mut config = ServiceConfig::new();
    if config.apply_changes(&changes, &env).is_err() {
        return;
    }
    let exported = cli::export(&config);
    let again = cli::parse(&exported, &PortMap::new()).expect("an export parses");
    let mut rebuilt = ServiceConfig::new();
    rebuilt
        .apply_changes(&again, &env)
        .expect("an export applies to an empty configuration");
    assert_eq!(rebuilt, config, "{exported}");
    assert_eq!(cli::export(&rebuilt), exported);
});
