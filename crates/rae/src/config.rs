//! The RAE configuration: Appendix A's `ConfigurationMessage`, validated into [`RaeConfig`].

use crate::decision::{AchievementFunction, DecisionLevels};
use crate::metric::Metric;
use crate::proto;
use crate::rib::Prefix;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// Hold time used when the configuration leaves `hold_time` at 0.
pub const DEFAULT_HOLD_TIME: Duration = Duration::from_secs(30);

/// A configuration value that cannot be used; `field` is its path in the message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// Path of the offending field, e.g. `peer_table[1].remote_ip_address`.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// One end of an intra-domain segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Endpoint {
    /// An access prefix of the local domain.
    Prefix(Prefix),
    /// The border router leading to this AS.
    Border(u32),
}

/// A validated peering RAE.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// The peer's AS number.
    pub as_number: u32,
    /// Where the peer's RAE listens.
    pub address: SocketAddrV4,
    /// IP TTL of our packets towards it.
    pub ttl: u32,
    /// QoS of the inter-domain link, per class.
    pub links: Vec<(u32, Metric)>,
}

impl PeerConfig {
    /// The link metric for class `cos`, if the link supports that class.
    pub fn link(&self, cos: u32) -> Option<Metric> {
        self.links
            .iter()
            .find(|(id, _)| *id == cos)
            .map(|(_, m)| *m)
    }
}

/// A validated RAE configuration.
#[derive(Clone, Debug)]
pub struct RaeConfig {
    /// Our AS number.
    pub local_as: u32,
    /// Where our RAE listens for peers (and the source address of our connections).
    pub local_address: SocketAddrV4,
    /// Preferred paths kept per prefix and class (at least 1).
    pub limit_of_preferred_paths: usize,
    /// Minimum time between two batches of updates.
    pub minimum_update_interval: Duration,
    /// The CME to report to, if configured.
    pub cme_address: Option<SocketAddrV4>,
    /// Which achievement function ranks paths.
    pub function: AchievementFunction,
    /// Decision levels per class id.
    pub levels: Vec<(u32, DecisionLevels)>,
    /// Peering RAEs; their position is the peer index used everywhere else.
    pub peers: Vec<PeerConfig>,
    /// The domain's own prefixes.
    pub prefixes: Vec<Prefix>,
    /// Classes the domain provisions (every class of any provisioning entry), sorted.
    pub local_classes: Vec<u32>,
    /// Session hold time.
    pub hold_time: Duration,
    provisioning: HashMap<(Endpoint, Endpoint, u32), Metric>,
    /// The provisioning table as configured, reported to the CME as `ProvInf`.
    pub provisioning_table: Vec<proto::ProvisioningEntry>,
}

impl RaeConfig {
    /// Decision levels of class `cos`.
    pub fn levels(&self, cos: u32) -> Option<&DecisionLevels> {
        self.levels
            .iter()
            .find(|(id, _)| *id == cos)
            .map(|(_, l)| l)
    }

    /// Provisioned intra-domain metric from `source` to `sink` for class `cos`.
    pub fn provisioning(&self, source: Endpoint, sink: Endpoint, cos: u32) -> Option<Metric> {
        self.provisioning.get(&(source, sink, cos)).copied()
    }

    /// Index of the peer with AS number `as_number`.
    pub fn peer_index(&self, as_number: u32) -> Option<usize> {
        self.peers.iter().position(|p| p.as_number == as_number)
    }

    /// Decodes and validates a binary `ConfigurationMessage` file's contents.
    pub fn decode(bytes: &[u8]) -> Result<Self, ConfigError> {
        let message =
            <proto::ConfigurationMessage as prost::Message>::decode(bytes).map_err(|err| {
                invalid(
                    "ConfigurationMessage",
                    format!("not a valid protobuf message: {err}"),
                )
            })?;
        Self::from_proto(&message)
    }

    /// Validates a `ConfigurationMessage`.
    pub fn from_proto(message: &proto::ConfigurationMessage) -> Result<Self, ConfigError> {
        if message.local_as_number == 0 {
            return Err(invalid("local_as_number", "must be set (non-zero)"));
        }
        let local_ip = parse_ip("local_ip_address", &message.local_ip_address)?;
        let local_port = parse_port("local_port_number", message.local_port_number)?;
        if message.limit_of_preferred_paths == 0 {
            return Err(invalid("limit_of_preferred_paths", "must be at least 1"));
        }
        if message.limit_of_preferred_paths > 64 {
            return Err(invalid(
                "limit_of_preferred_paths",
                "at most 64 paths per prefix are kept",
            ));
        }
        let cme_address = if message.cme_ip_address.is_empty() {
            None
        } else {
            Some(SocketAddrV4::new(
                parse_ip("cme_ip_address", &message.cme_ip_address)?,
                parse_port("cme_port_number", message.cme_port_number)?,
            ))
        };
        let mut levels: Vec<(u32, DecisionLevels)> = Vec::new();
        for (index, dp) in message.decision_parameters.iter().enumerate() {
            let field = format!("decision_parameters[{index}]");
            if levels.iter().any(|(id, _)| *id == dp.id) {
                return Err(invalid(
                    format!("{field}.id"),
                    format!("class {} is defined twice", dp.id),
                ));
            }
            let l = DecisionLevels {
                delay_aspiration: dp.delay_aspiration,
                delay_reservation: dp.delay_reservation,
                loss_aspiration: dp.loss_aspiration,
                loss_reservation: dp.loss_reservation,
                bandwidth_aspiration: dp.bandwidth_aspiration,
                bandwidth_reservation: dp.bandwidth_reservation,
            };
            l.validate().map_err(|m| invalid(field, m))?;
            levels.push((dp.id, l));
        }
        let mut peers: Vec<PeerConfig> = Vec::new();
        for (index, peer) in message.peer_table.iter().enumerate() {
            let field = format!("peer_table[{index}]");
            if peer.remote_as_number == 0 {
                return Err(invalid(
                    format!("{field}.remote_as_number"),
                    "must be set (non-zero)",
                ));
            }
            if peer.remote_as_number == message.local_as_number {
                return Err(invalid(
                    format!("{field}.remote_as_number"),
                    "a peer cannot have the local AS number",
                ));
            }
            if peers.iter().any(|p| p.as_number == peer.remote_as_number) {
                return Err(invalid(
                    format!("{field}.remote_as_number"),
                    format!(
                        "AS {} is already a peer (one session per peering AS)",
                        peer.remote_as_number
                    ),
                ));
            }
            let ip = parse_ip(
                &format!("{field}.remote_ip_address"),
                &peer.remote_ip_address,
            )?;
            let port = parse_port(
                &format!("{field}.remote_port_number"),
                peer.remote_port_number,
            )?;
            if !(1..=255).contains(&peer.ttl_value) {
                return Err(invalid(
                    format!("{field}.ttl_value"),
                    "must be between 1 and 255",
                ));
            }
            let links = classes(&format!("{field}.class_table"), &peer.class_table)?;
            peers.push(PeerConfig {
                as_number: peer.remote_as_number,
                address: SocketAddrV4::new(ip, port),
                ttl: peer.ttl_value,
                links,
            });
        }
        let mut prefixes = Vec::new();
        for (index, prefix) in message.prefix_table.iter().enumerate() {
            let prefix = parse_prefix(&format!("prefix_table[{index}]"), prefix)?;
            if !prefixes.contains(&prefix) {
                prefixes.push(prefix);
            }
        }
        let mut provisioning = HashMap::new();
        let mut local_classes = Vec::new();
        for (index, entry) in message.provisioning_table.iter().enumerate() {
            let field = format!("provisioning_table[{index}]");
            let source = parse_endpoint(
                &format!("{field}.source"),
                entry.source.as_ref(),
                &prefixes,
                &peers,
            )?;
            let sink = parse_endpoint(
                &format!("{field}.sink"),
                entry.sink.as_ref(),
                &prefixes,
                &peers,
            )?;
            for (cos, metric) in classes(&format!("{field}.class_table"), &entry.class_table)? {
                provisioning.insert((source, sink, cos), metric);
                if !local_classes.contains(&cos) {
                    local_classes.push(cos);
                }
            }
        }
        local_classes.sort_unstable();
        let hold_time = if message.hold_time == 0.0 {
            DEFAULT_HOLD_TIME
        } else if message.hold_time.is_finite() && (0.05..=3600.0).contains(&message.hold_time) {
            Duration::from_secs_f64(message.hold_time)
        } else {
            return Err(invalid(
                "hold_time",
                "must be between 0.05 and 3600 seconds (0 = 30 s)",
            ));
        };
        Ok(RaeConfig {
            local_as: message.local_as_number,
            local_address: SocketAddrV4::new(local_ip, local_port),
            limit_of_preferred_paths: message.limit_of_preferred_paths as usize,
            minimum_update_interval: Duration::from_secs(u64::from(
                message.minimum_update_interval,
            )),
            cme_address,
            function: if message.decision_with_flat_function {
                AchievementFunction::Flat
            } else {
                AchievementFunction::MultiplicativeInverse
            },
            levels,
            peers,
            prefixes,
            local_classes,
            hold_time,
            provisioning,
            provisioning_table: message.provisioning_table.clone(),
        })
    }
}

fn parse_ip(field: &str, text: &str) -> Result<Ipv4Addr, ConfigError> {
    text.parse().map_err(|_| {
        invalid(
            field,
            format!("{text:?} is not an IPv4 address (dotted quad expected)"),
        )
    })
}

fn parse_port(field: &str, port: u32) -> Result<u16, ConfigError> {
    match u16::try_from(port) {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(invalid(
            field,
            format!("{port} is not a TCP port (1..=65535)"),
        )),
    }
}

fn parse_prefix(field: &str, prefix: &proto::Prefix) -> Result<Prefix, ConfigError> {
    let ip = parse_ip(&format!("{field}.ip_address"), &prefix.ip_address)?;
    if prefix.prefix_length > 32 {
        return Err(invalid(format!("{field}.prefix_length"), "must be 0..=32"));
    }
    let parsed = Prefix::new(ip, prefix.prefix_length as u8);
    if parsed.address() != ip {
        return Err(invalid(
            format!("{field}.ip_address"),
            format!(
                "{ip} has host bits set for /{}; the network is {}",
                prefix.prefix_length, parsed
            ),
        ));
    }
    Ok(parsed)
}

fn parse_endpoint(
    field: &str,
    endpoint: Option<&proto::Endpoint>,
    prefixes: &[Prefix],
    peers: &[PeerConfig],
) -> Result<Endpoint, ConfigError> {
    match endpoint.and_then(|e| e.kind.as_ref()) {
        None => Err(invalid(field, "must name a prefix or an as_number")),
        Some(proto::endpoint::Kind::Prefix(prefix)) => {
            let prefix = parse_prefix(&format!("{field}.prefix"), prefix)?;
            if !prefixes.contains(&prefix) {
                return Err(invalid(
                    format!("{field}.prefix"),
                    format!("{prefix} is not in prefix_table"),
                ));
            }
            Ok(Endpoint::Prefix(prefix))
        }
        Some(proto::endpoint::Kind::AsNumber(as_number)) => {
            if !peers.iter().any(|p| p.as_number == *as_number) {
                return Err(invalid(
                    format!("{field}.as_number"),
                    format!("AS {as_number} is not in peer_table"),
                ));
            }
            Ok(Endpoint::Border(*as_number))
        }
    }
}

fn classes(
    field: &str,
    table: &[proto::ClassOfService],
) -> Result<Vec<(u32, Metric)>, ConfigError> {
    let mut out: Vec<(u32, Metric)> = Vec::new();
    for (index, class) in table.iter().enumerate() {
        if out.iter().any(|(id, _)| *id == class.cos_id) {
            return Err(invalid(
                format!("{field}[{index}].cos_id"),
                format!("class {} is listed twice", class.cos_id),
            ));
        }
        let metric = Metric::from_proto(class.metric.as_ref());
        if !metric.is_valid() {
            return Err(invalid(
                format!("{field}[{index}].metric"),
                "delay must be ≥ 0, loss_ratio within 0..1, supported_bandwidth ≥ 0",
            ));
        }
        out.push((class.cos_id, metric));
    }
    Ok(out)
}
