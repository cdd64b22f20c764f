//! Configuration builders shared by the RAE benches and integration tests (the core's bench
//! and `brasa-rae-net`'s tests include this file with `#[path]`).
#![allow(dead_code)]

use brasa_rae::config::RaeConfig;
use brasa_rae::proto;

/// Appendix A decision parameters for classes 1 (BTBE) and 2 (PR).
pub fn decision_parameters() -> Vec<proto::DecisionParameters> {
    vec![
        proto::DecisionParameters {
            id: 1,
            delay_aspiration: 0.5,
            delay_reservation: 1.0,
            loss_aspiration: 1e-5,
            loss_reservation: 1e-3,
            bandwidth_aspiration: 4e6,
            bandwidth_reservation: 1e6,
        },
        proto::DecisionParameters {
            id: 2,
            delay_aspiration: 0.15,
            delay_reservation: 0.4,
            loss_aspiration: 1e-6,
            loss_reservation: 1e-4,
            bandwidth_aspiration: 10e6,
            bandwidth_reservation: 4e6,
        },
    ]
}

pub fn classes(delay: f64) -> Vec<proto::ClassOfService> {
    [1u32, 2]
        .iter()
        .map(|&cos| proto::ClassOfService {
            cos_id: cos,
            metric: Some(proto::Metric {
                loss_ratio: Some(1e-6),
                maximum_delay: Some(delay * f64::from(cos)),
                supported_bandwidth: Some(10e6),
            }),
        })
        .collect()
}

pub fn prefix(text: &str) -> proto::Prefix {
    let (ip, len) = text.split_once('/').unwrap();
    proto::Prefix {
        ip_address: ip.to_string(),
        prefix_length: len.parse().unwrap(),
    }
}

fn endpoint_prefix(p: &proto::Prefix) -> proto::Endpoint {
    proto::Endpoint {
        kind: Some(proto::endpoint::Kind::Prefix(p.clone())),
    }
}

fn endpoint_as(a: u32) -> proto::Endpoint {
    proto::Endpoint {
        kind: Some(proto::endpoint::Kind::AsNumber(a)),
    }
}

/// A domain with full provisioning between every pair of its endpoints (borders and prefixes).
pub struct Domain {
    pub as_number: u32,
    pub ip: String,
    pub port: u16,
    pub peers: Vec<(u32, String, u16)>,
    pub prefixes: Vec<String>,
    pub cme_port: Option<u16>,
    pub hold_time: f64,
    pub minimum_update_interval: u32,
}

impl Domain {
    pub fn message(&self) -> proto::ConfigurationMessage {
        let prefixes: Vec<proto::Prefix> = self.prefixes.iter().map(|p| prefix(p)).collect();
        let mut endpoints: Vec<proto::Endpoint> = prefixes.iter().map(endpoint_prefix).collect();
        endpoints.extend(self.peers.iter().map(|(a, _, _)| endpoint_as(*a)));
        let mut provisioning_table = Vec::new();
        for source in &endpoints {
            for sink in &endpoints {
                if source == sink {
                    continue;
                }
                provisioning_table.push(proto::ProvisioningEntry {
                    source: Some(source.clone()),
                    sink: Some(sink.clone()),
                    class_table: classes(0.0005),
                });
            }
        }
        proto::ConfigurationMessage {
            local_as_number: self.as_number,
            local_ip_address: self.ip.clone(),
            local_port_number: u32::from(self.port),
            limit_of_preferred_paths: 3,
            minimum_update_interval: self.minimum_update_interval,
            cme_ip_address: if self.cme_port.is_some() {
                "127.0.0.1".into()
            } else {
                String::new()
            },
            cme_port_number: u32::from(self.cme_port.unwrap_or(0)),
            decision_with_flat_function: false,
            decision_parameters: decision_parameters(),
            peer_table: self
                .peers
                .iter()
                .map(|(a, ip, port)| proto::PeerEntry {
                    remote_as_number: *a,
                    remote_ip_address: ip.clone(),
                    remote_port_number: u32::from(*port),
                    ttl_value: 1,
                    class_table: classes(0.001),
                })
                .collect(),
            prefix_table: prefixes,
            provisioning_table,
            hold_time: self.hold_time,
        }
    }

    pub fn config(&self) -> RaeConfig {
        RaeConfig::from_proto(&self.message()).unwrap()
    }
}
