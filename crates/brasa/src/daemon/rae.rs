//! `brasa rae`: the Routing Awareness Entity daemon (COMET D4.3 §4). Its configuration comes
//! as the Appendix A binary `ConfigurationMessage` or as the TOML equivalent (same field names);
//! this module reads both, validates them with `brasa_rae::config::RaeConfig` (TOML errors
//! located at `file:line:col`), starts the `brasa-rae-net` daemon and serves the management API
//! (`/api/v1/rae/…`, `/metrics`) until SIGTERM or Ctrl-C.

use crate::common::access::{Access, ApiConfig};
use crate::common::config::{ConfigError, Source};
use crate::common::mgmt::{self, ApiError};
use crate::common::prom::{Kind, PromWriter};
use crate::common::signal::ShutdownSignal;
use crate::console;
use anyhow::Context;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use brasa_rae::config::RaeConfig;
use brasa_rae::engine::RouteView;
use brasa_rae::proto;
use brasa_rae::rib::Prefix;
use brasa_rae_net::{DaemonError, MetricsView, PeerView, RaeHandle, SessionState};
use prost::Message as _;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Default management API address of `brasa rae`.
pub const DEFAULT_API: &str = "127.0.0.1:7782";

/// A configuration file and its format.
#[derive(Debug, Clone, Copy)]
pub enum ConfigFile<'a> {
    /// The binary `ConfigurationMessage` (Appendix A).
    Binary(&'a Path),
    /// Its TOML equivalent.
    Toml(&'a Path),
}

/// Reads and validates a configuration; also returns the message (what `convert` writes).
/// Errors in a TOML file are located at `file:line:col`; a binary file's name the file and the
/// field (`peer_table[1].remote_ip_address`).
pub fn load(file: ConfigFile<'_>) -> anyhow::Result<(proto::ConfigurationMessage, RaeConfig)> {
    match file {
        ConfigFile::Toml(path) => {
            let source = Source::read(path)?;
            let message = toml_message(&source)?;
            let config = RaeConfig::from_proto(&message)
                .map_err(|err| source.error_at_path(&err.field, err.to_string()))?;
            Ok((message, config))
        }
        ConfigFile::Binary(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let message =
                proto::ConfigurationMessage::decode(bytes.as_slice()).with_context(|| {
                    format!(
                        "{}: not a ConfigurationMessage (Appendix A binary file)",
                        path.display()
                    )
                })?;
            let config =
                RaeConfig::from_proto(&message).with_context(|| path.display().to_string())?;
            Ok((message, config))
        }
    }
}

/// Runs the daemon until SIGTERM or Ctrl-C, then closes every session and the CME link.
pub async fn run(file: ConfigFile<'_>, mgmt_listen: SocketAddr) -> anyhow::Result<()> {
    let mut shutdown = ShutdownSignal::install()?;
    let api = ApiConfig::loopback(mgmt_listen).map_err(anyhow::Error::msg)?;
    let (_, config) = load(file)?;
    let handle = brasa_rae_net::start(config).await?;
    let access = Arc::new(Access::new(api.access.clone()));
    let shell = Arc::new(console::rae::shell(access.clone(), false));
    let sampled = handle.clone();
    console::series::spawn_sampler(shell.series.clone(), move || {
        let handle = sampled.clone();
        async move { console::rae::counters(&handle).await }
    });
    let router = Router::new()
        .route("/api/v1/rae/peers", get(api_peers))
        .route("/api/v1/rae/rib", get(api_rib))
        .route("/api/v1/rae/preferred", get(api_preferred))
        .route("/metrics", get(api_metrics))
        .with_state(handle.clone())
        .merge(console::router(
            shell,
            console::rae::routes(),
            handle.clone(),
        ));
    mgmt::serve(&api, access, router).await?;
    let signal = shutdown.recv().await;
    tracing::info!(signal, "shutting down");
    handle.shutdown();
    handle.terminated().await;
    Ok(())
}

fn stopped(err: DaemonError) -> ApiError {
    ApiError::internal(err.to_string())
}

async fn api_peers(State(handle): State<RaeHandle>) -> Result<Json<Vec<PeerView>>, ApiError> {
    handle.peers().await.map(Json).map_err(stopped)
}

#[derive(Deserialize)]
struct RibQuery {
    prefix: Option<String>,
    cos: Option<u32>,
}

async fn api_rib(
    State(handle): State<RaeHandle>,
    Query(query): Query<RibQuery>,
) -> Result<Json<Vec<RouteView>>, ApiError> {
    let prefix = match query.prefix.as_deref() {
        None | Some("") => None,
        Some(text) => Some(text.parse::<Prefix>().map_err(ApiError::bad_request)?),
    };
    handle
        .routes(prefix, query.cos)
        .await
        .map(Json)
        .map_err(stopped)
}

async fn api_preferred(State(handle): State<RaeHandle>) -> Result<Json<Vec<RouteView>>, ApiError> {
    handle.preferred().await.map(Json).map_err(stopped)
}

async fn api_metrics(
    State(handle): State<RaeHandle>,
) -> Result<axum::response::Response, ApiError> {
    let metrics = handle.metrics().await.map_err(stopped)?;
    let peers = handle.peers().await.map_err(stopped)?;
    Ok(mgmt::metrics_response(prometheus_text(&metrics, &peers)))
}

fn prometheus_text(m: &MetricsView, peers: &[PeerView]) -> String {
    let mut w = PromWriter::default();
    let c = &m.counters;
    let gauges: [(&str, &str, f64); 6] = [
        (
            "brasa_rae_peers_configured",
            "Peering RAEs in the configuration.",
            m.peers_configured as f64,
        ),
        (
            "brasa_rae_sessions_established",
            "Established inter-RAE sessions.",
            m.sessions_established as f64,
        ),
        (
            "brasa_rae_routes",
            "RIB entries (prefix x class of service).",
            m.routes as f64,
        ),
        (
            "brasa_rae_paths",
            "Candidate paths in the RIB.",
            m.paths as f64,
        ),
        (
            "brasa_rae_preferred_paths",
            "Preferred paths in the RIB.",
            m.preferred_paths as f64,
        ),
        (
            "brasa_rae_cme_connected",
            "1 when the CME connection is up.",
            f64::from(u8::from(m.cme_connected)),
        ),
    ];
    for (name, help, value) in gauges {
        w.family(name, help, Kind::Gauge).sample(name, &[], value);
    }
    let counters: [(&str, &str, u64); 12] = [
        (
            "brasa_rae_updates_in_total",
            "Update messages received.",
            c.updates_in,
        ),
        (
            "brasa_rae_withdraws_in_total",
            "Withdraw messages received.",
            c.withdraws_in,
        ),
        (
            "brasa_rae_routes_in_total",
            "Routes received in updates.",
            c.routes_in,
        ),
        (
            "brasa_rae_updates_out_total",
            "Update messages sent.",
            c.updates_out,
        ),
        (
            "brasa_rae_withdraws_out_total",
            "Withdraw messages sent.",
            c.withdraws_out,
        ),
        (
            "brasa_rae_rejected_total",
            "Received routes or paths dropped as malformed or unsupported.",
            c.rejected,
        ),
        (
            "brasa_rae_loops_total",
            "Received paths dropped because they hold the local AS.",
            c.loops,
        ),
        (
            "brasa_rae_decision_runs_total",
            "Decision process runs.",
            c.decision_runs,
        ),
        (
            "brasa_rae_paths_ranked_total",
            "Candidate paths ranked by the decision process.",
            c.paths_ranked,
        ),
        (
            "brasa_rae_cme_requests_total",
            "GenericRequest messages produced for the CME.",
            c.cme_requests,
        ),
        (
            "brasa_rae_cme_replies_total",
            "Reply messages received from the CME.",
            m.cme_replies,
        ),
        (
            "brasa_rae_malformed_frames_total",
            "Connections closed on a malformed frame.",
            m.malformed_frames,
        ),
    ];
    for (name, help, value) in counters {
        w.family(name, help, Kind::Counter)
            .sample(name, &[], value as f64);
    }
    w.family(
        "brasa_rae_peer_up",
        "1 when the session with the peer is established.",
        Kind::Gauge,
    );
    for peer in peers {
        let as_number = peer.as_number.to_string();
        w.sample(
            "brasa_rae_peer_up",
            &[("peer_as", &as_number)],
            f64::from(u8::from(peer.state == SessionState::Established)),
        );
    }
    w.finish()
}

// ---- TOML equivalent of the ConfigurationMessage ------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlConfig {
    local_as_number: u32,
    local_ip_address: String,
    local_port_number: u32,
    limit_of_preferred_paths: u32,
    #[serde(default)]
    minimum_update_interval: u32,
    #[serde(default)]
    cme_ip_address: String,
    #[serde(default)]
    cme_port_number: u32,
    #[serde(default)]
    decision_with_flat_function: bool,
    #[serde(default)]
    hold_time: f64,
    #[serde(default)]
    decision_parameters: Vec<TomlDecision>,
    #[serde(default)]
    peer_table: Vec<TomlPeer>,
    #[serde(default)]
    prefix_table: Vec<TomlPrefix>,
    #[serde(default)]
    provisioning_table: Vec<TomlProvisioning>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlDecision {
    id: u32,
    delay_aspiration: f64,
    delay_reservation: f64,
    loss_aspiration: f64,
    loss_reservation: f64,
    bandwidth_aspiration: f64,
    bandwidth_reservation: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlPeer {
    remote_as_number: u32,
    remote_ip_address: String,
    remote_port_number: u32,
    ttl_value: u32,
    #[serde(default)]
    class_table: Vec<TomlClass>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlClass {
    cos_id: u32,
    #[serde(default)]
    metric: TomlMetric,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TomlMetric {
    loss_ratio: Option<f64>,
    maximum_delay: Option<f64>,
    supported_bandwidth: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlPrefix {
    ip_address: String,
    prefix_length: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlEndpoint {
    prefix: Option<TomlPrefix>,
    as_number: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlProvisioning {
    source: serde_spanned::Spanned<TomlEndpoint>,
    sink: serde_spanned::Spanned<TomlEndpoint>,
    #[serde(default)]
    class_table: Vec<TomlClass>,
}

fn classes(table: Vec<TomlClass>) -> Vec<proto::ClassOfService> {
    table
        .into_iter()
        .map(|c| proto::ClassOfService {
            cos_id: c.cos_id,
            metric: Some(proto::Metric {
                loss_ratio: c.metric.loss_ratio,
                maximum_delay: c.metric.maximum_delay,
                supported_bandwidth: c.metric.supported_bandwidth,
            }),
        })
        .collect()
}

fn prefix(p: TomlPrefix) -> proto::Prefix {
    proto::Prefix {
        ip_address: p.ip_address,
        prefix_length: p.prefix_length,
    }
}

/// Reads a TOML configuration into the protobuf message (validation is `RaeConfig`'s job).
fn toml_message(source: &Source) -> Result<proto::ConfigurationMessage, ConfigError> {
    let toml: TomlConfig = source.parse()?;
    let endpoint =
        |e: serde_spanned::Spanned<TomlEndpoint>| -> Result<proto::Endpoint, ConfigError> {
            let span = e.span();
            let e = e.into_inner();
            let kind = match (e.prefix, e.as_number) {
                (Some(p), None) => proto::endpoint::Kind::Prefix(prefix(p)),
                (None, Some(a)) => proto::endpoint::Kind::AsNumber(a),
                _ => {
                    return Err(source.error_at(
                        span,
                        "an endpoint is either `prefix = {...}` or `as_number = N`",
                    ))
                }
            };
            Ok(proto::Endpoint { kind: Some(kind) })
        };
    let mut provisioning_table = Vec::new();
    for p in toml.provisioning_table {
        provisioning_table.push(proto::ProvisioningEntry {
            source: Some(endpoint(p.source)?),
            sink: Some(endpoint(p.sink)?),
            class_table: classes(p.class_table),
        });
    }
    Ok(proto::ConfigurationMessage {
        local_as_number: toml.local_as_number,
        local_ip_address: toml.local_ip_address,
        local_port_number: toml.local_port_number,
        limit_of_preferred_paths: toml.limit_of_preferred_paths,
        minimum_update_interval: toml.minimum_update_interval,
        cme_ip_address: toml.cme_ip_address,
        cme_port_number: toml.cme_port_number,
        decision_with_flat_function: toml.decision_with_flat_function,
        hold_time: toml.hold_time,
        decision_parameters: toml
            .decision_parameters
            .into_iter()
            .map(|d| proto::DecisionParameters {
                id: d.id,
                delay_aspiration: d.delay_aspiration,
                delay_reservation: d.delay_reservation,
                loss_aspiration: d.loss_aspiration,
                loss_reservation: d.loss_reservation,
                bandwidth_aspiration: d.bandwidth_aspiration,
                bandwidth_reservation: d.bandwidth_reservation,
            })
            .collect(),
        peer_table: toml
            .peer_table
            .into_iter()
            .map(|p| proto::PeerEntry {
                remote_as_number: p.remote_as_number,
                remote_ip_address: p.remote_ip_address,
                remote_port_number: p.remote_port_number,
                ttl_value: p.ttl_value,
                class_table: classes(p.class_table),
            })
            .collect(),
        prefix_table: toml.prefix_table.into_iter().map(prefix).collect(),
        provisioning_table,
    })
}
