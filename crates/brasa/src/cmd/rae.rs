//! `brasa rae`: the Routing Awareness Entity (COMET D4.3 §4): arguments, the daemon's start
//! (wired in `daemon::rae`) and the operator commands.
//!
//! - `brasa rae CONFIG.pb2` starts the daemon from the binary `ConfigurationMessage` of the
//!   document's Appendix A; `brasa rae --config-from-toml FILE.toml` from its TOML equivalent.
//! - `brasa rae convert FILE.toml -o FILE.pb2` writes the binary form of a TOML config.
//! - `brasa rae show peers | rib [PREFIX] [--cos N] | preferred` query a running daemon's
//!   management API (default `127.0.0.1:7782`, `--api` to change).

use crate::common::output::{print_json, table};
use crate::common::{api, GlobalArgs};
use crate::daemon::rae::{self as daemon, ConfigFile, DEFAULT_API};
use anyhow::Context;
use brasa_rae::engine::RouteView;
use brasa_rae::rib::Prefix;
use brasa_rae_net::PeerView;
use prost::Message as _;
use std::net::SocketAddr;
use std::path::PathBuf;

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
            let (message, _) = daemon::load(ConfigFile::Toml(&input))?;
            std::fs::write(&output, message.encode_to_vec())
                .with_context(|| format!("cannot write {}", output.display()))?;
            println!("wrote {}", output.display());
            Ok(())
        }
        Some(RaeCommand::Check { config, toml }) => {
            let file = if toml {
                ConfigFile::Toml(&config)
            } else {
                ConfigFile::Binary(&config)
            };
            let (_, parsed) = daemon::load(file)?;
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
            let file = match (&args.config, &args.config_from_toml) {
                (_, Some(toml)) => ConfigFile::Toml(toml),
                (Some(binary), None) => ConfigFile::Binary(binary),
                (None, None) => {
                    anyhow::bail!("give a configuration file (CONFIG.pb2 or --config-from-toml)")
                }
            };
            daemon::run(file, args.mgmt_listen).await
        }
    }
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
                        p.state.to_string(),
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
