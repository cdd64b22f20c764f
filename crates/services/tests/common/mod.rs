//! Shared test fixtures: the data-plane ports and port map the tests run against.
#![allow(dead_code)]

pub mod strategies;

use brasa_services::{cli, Encapsulation, Environment, PortMap, PortName, Ports, ServiceConfig};

/// eth0 null, eth1 dot1q, eth2 and eth3 QinQ; SR OS 1/1/1..1/1/4 map onto them.
pub fn env() -> Environment {
    let ports: Ports = [
        ("eth0", Encapsulation::Null),
        ("eth1", Encapsulation::Dot1q),
        ("eth2", Encapsulation::Qinq),
        ("eth3", Encapsulation::Qinq),
    ]
    .into_iter()
    .map(|(name, encap)| (PortName::new(name).unwrap(), encap))
    .collect();
    Environment::new(ports)
}

pub fn port_map() -> PortMap {
    let mut map = PortMap::new();
    for (sros, linux) in [
        ("1/1/1", "eth0"),
        ("1/1/2", "eth1"),
        ("1/1/3", "eth2"),
        ("1/1/4", "eth3"),
    ] {
        map.insert(sros, PortName::new(linux).unwrap());
    }
    map
}

/// Parses and commits `text`, panicking with the error on failure.
pub fn apply(config: &mut ServiceConfig, text: &str) {
    let changes = cli::parse(text, &port_map()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    config
        .apply_changes(&changes, &env())
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
}

/// Parses `text` and returns the transaction error it must cause.
pub fn refuse(config: &ServiceConfig, text: &str) -> brasa_services::TxnError {
    let changes = cli::parse(text, &port_map()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    match config.prepare(&changes, &env()) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(error) => error,
    }
}
