//! `brasa rae`: the Routing Awareness Entity daemon (COMET, seed 004 §4) and its operator
//! commands.
//!
//! - `brasa rae CONFIG.pb2` starts the daemon from the binary `ConfigurationMessage` of the
//!   document's Appendix A; `brasa rae --config-from-toml FILE.toml` from its TOML equivalent.
//! - `brasa rae convert FILE.toml -o FILE.pb2` writes the binary form of a TOML config.
//! - `brasa rae show peers | rib [PREFIX] [--cos N] | preferred` query a running daemon's
//!   management API (default `127.0.0.1:7782`, `--api` to change).

use crate::common::config::Source;
use crate::common::mgmt::{self, ApiError};
use crate::common::output::{print_json, table};
use crate::common::prom::{Kind, PromWriter};
use crate::common::{api, GlobalArgs};
use anyhow::Context;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use brasa_comet::rae::config::RaeConfig;
use brasa_comet::rae::daemon::{self, MetricsView, PeerView, RaeHandle};
use brasa_comet::rae::engine::RouteView;
use brasa_comet::rae::proto;
use brasa_comet::rae::rib::Prefix;
use prost::Message as _;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Default management API address of `brasa rae`.
pub const DEFAULT_API: &str = "127.0.0.1:7782";

/// Arguments of `brasa rae`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RaeArgs {
    #[command(subcommand)]
    command: Option<RaeCommand>,
    /// Binary configuration file (protobuf `ConfigurationMessage`, Appendix A).
    #[arg(
        value_name = "CONFIG.pb2",
        required_unless_present = "config_from_toml"
    )]
    config: Option<PathBuf>,
    /// Start from a TOML configuration instead (same field names as the protobuf message).
    #[arg(long, value_name = "FILE.toml", conflicts_with = "config")]
    config_from_toml: Option<PathBuf>,
    /// Management API listen address (HTTP/JSON and /metrics).
    #[arg(long, default_value = DEFAULT_API)]
    mgmt_listen: SocketAddr,
}

impl RaeArgs {
    /// True when these arguments start the long-running RAE daemon (no subcommand).
    pub fn starts_daemon(&self) -> bool {
        self.command.is_none()
    }
}

#[derive(clap::Subcommand, Debug)]
enum RaeCommand {
    /// Show the state of a running RAE.
    #[command(subcommand)]
    Show(ShowCommand),
    /// Convert a TOML configuration into the binary `ConfigurationMessage` file.
    Convert {
        /// TOML configuration.
        input: PathBuf,
        /// Where to write the binary file.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Validate a configuration (binary, or TOML with --toml) without starting.
    Check {
        /// The configuration file.
        config: PathBuf,
        /// The file is TOML.
        #[arg(long)]
        toml: bool,
    },
}

#[derive(clap::Subcommand, Debug)]
enum ShowCommand {
    /// Peering RAEs and their sessions.
    Peers,
    /// The RIB: candidate paths per prefix and class, best first.
    Rib {
        /// Only this prefix (e.g. 127.0.11.0/24).
        prefix: Option<String>,
        /// Only this class of service.
        #[arg(long)]
        cos: Option<u32>,
    },
    /// Preferred paths only.
    Preferred,
}

pub async fn run(global: &GlobalArgs, args: RaeArgs) -> anyhow::Result<()> {
    match args.command {
        Some(RaeCommand::Show(show)) => {
            let global = global.clone();
            tokio::task::spawn_blocking(move || run_show(&global, show)).await?
        }
        Some(RaeCommand::Convert { input, output }) => {
            let message = load_toml(&input)?;
            RaeConfig::from_proto(&message).with_context(|| format!("{}", input.display()))?;
            std::fs::write(&output, message.encode_to_vec())
                .with_context(|| format!("cannot write {}", output.display()))?;
            println!("wrote {}", output.display());
            Ok(())
        }
        Some(RaeCommand::Check { config, toml }) => {
            let message = if toml {
                load_toml(&config)?
            } else {
                load_binary(&config)?
            };
            let parsed =
                RaeConfig::from_proto(&message).with_context(|| format!("{}", config.display()))?;
            println!(
                "{}: OK (AS {}, {} peers, {} prefixes, {} provisioning entries)",
                config.display(),
                parsed.local_as,
                parsed.peers.len(),
                parsed.prefixes.len(),
                parsed.provisioning_table.len()
            );
            Ok(())
        }
        None => {
            let (path, message) = match (&args.config, &args.config_from_toml) {
                (_, Some(toml)) => (toml.clone(), load_toml(toml)?),
                (Some(binary), None) => (binary.clone(), load_binary(binary)?),
                (None, None) => {
                    anyhow::bail!("give a configuration file (CONFIG.pb2 or --config-from-toml)")
                }
            };
            let config =
                RaeConfig::from_proto(&message).with_context(|| format!("{}", path.display()))?;
            serve(config, args.mgmt_listen).await
        }
    }
}

fn load_binary(path: &Path) -> anyhow::Result<proto::ConfigurationMessage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    proto::ConfigurationMessage::decode(bytes.as_slice())
        .with_context(|| format!("{}: not a ConfigurationMessage", path.display()))
}

async fn serve(config: RaeConfig, mgmt_listen: SocketAddr) -> anyhow::Result<()> {
    let handle = daemon::start(config).await?;
    let router = Router::new()
        .route("/api/v1/rae/peers", get(api_peers))
        .route("/api/v1/rae/rib", get(api_rib))
        .route("/api/v1/rae/preferred", get(api_preferred))
        .route("/metrics", get(api_metrics))
        .with_state(handle.clone());
    mgmt::serve(mgmt_listen, router).await?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
        () = handle.stopped() => {}
    }
    handle.shutdown();
    Ok(())
}

fn stopped(err: daemon::DaemonError) -> ApiError {
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
    let counters: [(&str, &str, u64); 11] = [
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
            f64::from(u8::from(peer.state == "established")),
        );
    }
    w.finish()
}

fn run_show(global: &GlobalArgs, show: ShowCommand) -> anyhow::Result<()> {
    let client = api::Client::new(global.api_url(DEFAULT_API));
    match show {
        ShowCommand::Peers => {
            let peers: Vec<PeerView> = client.get("/api/v1/rae/peers")?;
            if global.json {
                return print_json(&peers);
            }
            let rows: Vec<Vec<String>> = peers
                .iter()
                .map(|p| {
                    vec![
                        p.as_number.to_string(),
                        p.address.clone(),
                        p.ttl.to_string(),
                        p.state.clone(),
                        p.established_for_secs
                            .map(|s| format!("{s:.0}s"))
                            .unwrap_or_else(|| "-".into()),
                        p.updates_in.to_string(),
                        p.updates_out.to_string(),
                        p.withdraws_in.to_string(),
                        p.withdraws_out.to_string(),
                        p.last_error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "PEER AS",
                        "ADDRESS",
                        "TTL",
                        "STATE",
                        "UP",
                        "UPD IN",
                        "UPD OUT",
                        "WDR IN",
                        "WDR OUT",
                        "LAST ERROR"
                    ],
                    &rows
                )
            );
            Ok(())
        }
        ShowCommand::Rib { prefix, cos } => {
            let mut path = "/api/v1/rae/rib".to_string();
            let mut params = Vec::new();
            if let Some(prefix) = &prefix {
                let parsed: Prefix = prefix.parse().map_err(anyhow::Error::msg)?;
                params.push(format!("prefix={}", parsed.to_string().replace('/', "%2F")));
            }
            if let Some(cos) = cos {
                params.push(format!("cos={cos}"));
            }
            if !params.is_empty() {
                path = format!("{path}?{}", params.join("&"));
            }
            let routes: Vec<RouteView> = client.get(&path)?;
            print_routes(global, &routes)
        }
        ShowCommand::Preferred => {
            let routes: Vec<RouteView> = client.get("/api/v1/rae/preferred")?;
            print_routes(global, &routes)
        }
    }
}

fn print_routes(global: &GlobalArgs, routes: &[RouteView]) -> anyhow::Result<()> {
    if global.json {
        return print_json(&routes);
    }
    let mut rows = Vec::new();
    for route in routes {
        for path in &route.paths {
            rows.push(vec![
                route.prefix.to_string(),
                route.cos.to_string(),
                format!("{}{}", path.rank, if path.preferred { "*" } else { "" }),
                path.via_as
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "local".into()),
                path.as_path
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
                format!("{:.3}", path.metric.delay * 1e3),
                format!("{:.2e}", path.metric.loss),
                if path.metric.bandwidth.is_finite() {
                    format!("{:.1}", path.metric.bandwidth / 1e6)
                } else {
                    "-".into()
                },
                format!("{:.4}", path.achievement),
            ]);
        }
    }
    print!(
        "{}",
        table(
            &[
                "PREFIX",
                "COS",
                "RANK",
                "VIA",
                "AS PATH",
                "DELAY ms",
                "LOSS",
                "BW Mb/s",
                "ACHIEVEMENT"
            ],
            &rows
        )
    );
    Ok(())
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
fn load_toml(path: &Path) -> anyhow::Result<proto::ConfigurationMessage> {
    let source = Source::read(path)?;
    let toml: TomlConfig = source.parse()?;
    let endpoint = |e: serde_spanned::Spanned<TomlEndpoint>| -> anyhow::Result<proto::Endpoint> {
        let span = e.span();
        let e = e.into_inner();
        let kind = match (e.prefix, e.as_number) {
            (Some(p), None) => proto::endpoint::Kind::Prefix(prefix(p)),
            (None, Some(a)) => proto::endpoint::Kind::AsNumber(a),
            _ => {
                return Err(source
                    .error_at(
                        span,
                        "an endpoint is either `prefix = {...}` or `as_number = N`",
                    )
                    .into())
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
