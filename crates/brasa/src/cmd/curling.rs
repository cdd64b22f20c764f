//! `brasa curling`: stateful content-aware forwarding (CURLING, seed 004 §6).
//!
//! - `brasa curling run SCENARIO` executes a scenario file in the document's style, every
//!   entity a real UDP endpoint on 127.N.d.r, and prints the §6.4.2 log lines and each CAFE's
//!   content state table (`--json`: the whole report).
//! - `brasa curling cafe|crme|server|client ROUTER ARGS…` runs one entity as a daemon, with the
//!   same arguments as its scenario line, and a management API (default `127.0.0.1:7783`).
//! - `brasa curling show` prints a running entity's tables and counters (`--json`).

use crate::common::mgmt::{self, ApiError};
use crate::common::output::{print_json, table};
use crate::common::prom::{Kind, PromWriter};
use crate::common::{api, GlobalArgs};
use anyhow::Context;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use brasa_curling::cafe::Cafe;
use brasa_curling::client::ContentClient;
use brasa_curling::crme::Crme;
use brasa_curling::scenario::{self, Parser, RunOptions};
use brasa_curling::server::ContentServer;
use brasa_curling::shell::{Core, Entity, LogSink, Naming, ShellOptions, Snapshot};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Default management API address of a `brasa curling` entity daemon.
pub const DEFAULT_API: &str = "127.0.0.1:7783";

/// Subcommands of `brasa curling`.
#[derive(clap::Subcommand, Debug)]
pub enum CurlingCommand {
    /// Execute a scenario file (`+time ON_ROUTER router usr.curling.Cafe …`, publish, consume,
    /// DISPLAY, END) with every entity a real UDP endpoint on loopback.
    Run(RunArgs),
    /// Run a CAFE: `ROUTER myport myCRMEaddr myCRMEport nInterDLink <cafeAddr cafePort crmeAddr>…`.
    Cafe(EntityArgs),
    /// Run a CRME: `ROUTER myport nNeighbours <crmeAddr relation>… nRoutes <prefix crmeAddr>… [ro=off] [linger=30s]`.
    Crme(EntityArgs),
    /// Run a content server: `ROUTER myport myCRMEaddr myCRMEport myCAFEaddr myCAFEport [rate=N] [chunk=N]`.
    Server(ServerArgs),
    /// Run a content client: `ROUTER myport myCRMEaddr myCRMEport myCAFEaddr myCAFEport [idle=D] [attempts=N]`.
    Client(ClientArgs),
    /// Show a running entity's tables (content state table, ActiveSessions, …) and counters.
    Show,
}

impl CurlingCommand {
    /// True for the long-running entity daemons (`cafe`, `crme`, `server`, `client`).
    pub fn starts_daemon(&self) -> bool {
        matches!(
            self,
            CurlingCommand::Cafe(_)
                | CurlingCommand::Crme(_)
                | CurlingCommand::Server(_)
                | CurlingCommand::Client(_)
        )
    }
}

/// Arguments of `brasa curling run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The scenario file.
    scenario: PathBuf,
    /// Second octet of the loopback plan: router `d.r` runs on 127.NET.d.r.
    #[arg(long, default_value_t = 0)]
    net: u8,
    /// Directory of the files named by `publish` lines (default: the scenario's directory).
    #[arg(long)]
    file_dir: Option<PathBuf>,
    /// Directory under which clients save `Content/<router port>/<ContentID>`.
    #[arg(long, default_value = ".")]
    content_dir: PathBuf,
    /// Longest run when the scenario has no END line.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Arguments shared by the entity daemons.
#[derive(clap::Args, Debug)]
pub struct EntityArgs {
    /// Router name (`2.3` → 127.NET.2.3) or IPv4 address, then the scenario-line arguments.
    #[arg(required = true, num_args = 1.., value_name = "ROUTER ARGS")]
    args: Vec<String>,
    /// Second octet of the loopback plan for router names.
    #[arg(long, default_value_t = 0)]
    net: u8,
    /// Management API listen address (HTTP/JSON and /metrics).
    #[arg(long, default_value = DEFAULT_API)]
    mgmt_listen: SocketAddr,
}

/// Arguments of `brasa curling server`.
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    #[command(flatten)]
    entity: EntityArgs,
    /// Publish a file: `ContentID=PATH` (repeatable).
    #[arg(long, value_name = "ID=PATH")]
    publish: Vec<String>,
}

/// Arguments of `brasa curling client`.
#[derive(clap::Args, Debug)]
pub struct ClientArgs {
    #[command(flatten)]
    entity: EntityArgs,
    /// Consume this content ID at start (repeatable).
    #[arg(long, value_name = "ID")]
    consume: Vec<String>,
    /// Directory under which content is saved as `Content/<router port>/<ContentID>`.
    #[arg(long, default_value = ".")]
    content_dir: PathBuf,
}

pub async fn run(global: &GlobalArgs, command: CurlingCommand) -> anyhow::Result<()> {
    match command {
        CurlingCommand::Run(args) => run_scenario(global, args).await,
        CurlingCommand::Cafe(args) => {
            daemon(&args, PathBuf::from("."), |parser, router, rest| {
                Ok(Core::Cafe(Cafe::new(parser.cafe(router, rest)?)))
            })
            .await
        }
        CurlingCommand::Crme(args) => {
            daemon(&args, PathBuf::from("."), |parser, router, rest| {
                Ok(Core::Crme(Crme::new(parser.crme(router, rest)?)))
            })
            .await
        }
        CurlingCommand::Server(args) => {
            let mut contents = Vec::new();
            for item in &args.publish {
                let (id, path) = item
                    .split_once('=')
                    .with_context(|| format!("--publish {item:?}: expected ID=PATH"))?;
                let data = std::fs::read(path)
                    .with_context(|| format!("--publish: cannot read {path}"))?;
                contents.push((id.to_string(), data));
            }
            daemon(
                &args.entity,
                PathBuf::from("."),
                move |parser, router, rest| {
                    let mut server = ContentServer::new(parser.server(router, rest)?);
                    for (id, data) in contents.drain(..) {
                        server
                            .publish(&id, Arc::from(data))
                            .map_err(|err| format!("--publish {id:?}: {err}"))?;
                    }
                    Ok(Core::Server(server))
                },
            )
            .await
        }
        CurlingCommand::Client(args) => {
            let consume = args.consume.clone();
            daemon(
                &args.entity,
                args.content_dir.clone(),
                move |parser, router, rest| {
                    let mut client = ContentClient::new(parser.client(router, rest)?);
                    for id in &consume {
                        client
                            .consume(std::time::Instant::now(), id)
                            .map_err(|err| format!("--consume {id:?}: {err}"))?;
                    }
                    Ok(Core::Client(client))
                },
            )
            .await
        }
        CurlingCommand::Show => show(global).await,
    }
}

async fn run_scenario(global: &GlobalArgs, args: RunArgs) -> anyhow::Result<()> {
    let naming = Naming { net: args.net };
    let scenario = scenario::load(&args.scenario, naming)?;
    let file_dir = args.file_dir.clone().unwrap_or_else(|| {
        args.scenario
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
    });
    let options = RunOptions {
        naming,
        file_dir,
        content_dir: args.content_dir.clone(),
        timeout: args.timeout,
        echo: !global.json,
    };
    let report = scenario::run(&scenario, &options).await?;
    if global.json {
        return print_json(&report);
    }
    println!();
    for entity in &report.entities {
        let text = entity.display_content_state_table(&naming);
        if !text.is_empty() {
            println!("{text}");
        }
    }
    for entity in &report.entities {
        let text = entity.display_active_sessions(&naming);
        if !text.is_empty() {
            println!("{text}");
        }
    }
    println!("scenario ended: {}", report.ended_by);
    Ok(())
}

async fn daemon(
    args: &EntityArgs,
    content_dir: PathBuf,
    mut build: impl FnMut(&Parser, &str, &[&str]) -> Result<Core, String>,
) -> anyhow::Result<()> {
    let naming = Naming { net: args.net };
    let parser = Parser { naming };
    let router = &args.args[0];
    let rest: Vec<&str> = args.args[1..].iter().map(String::as_str).collect();
    let core =
        build(&parser, router, &rest).map_err(|err| anyhow::anyhow!("invalid arguments: {err}"))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let log: LogSink = Arc::new(|line: String| {
        println!("{line}");
        tracing::info!(target: "brasa_curling", "{line}");
    });
    let entity = Entity::spawn(
        core,
        ShellOptions {
            naming,
            content_dir,
            stop: stop_rx,
            drop_every: None,
        },
        log,
    )?;
    tracing::info!(addr = %entity.addr(), "curling entity running");
    let entity = Arc::new(entity);
    let router = Router::new()
        .route("/api/v1/curling", get(api_snapshot))
        .route("/metrics", get(api_metrics))
        .with_state(entity.clone());
    mgmt::serve(args.mgmt_listen, router).await?;
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    let _ = stop_tx.send(true);
    Ok(())
}

async fn api_snapshot(State(entity): State<Arc<Entity>>) -> Result<Json<Snapshot>, ApiError> {
    Ok(Json(entity.snapshot()))
}

async fn api_metrics(
    State(entity): State<Arc<Entity>>,
) -> Result<axum::response::Response, ApiError> {
    let snapshot = entity.snapshot();
    let (kind, counters, gauge) = match &snapshot {
        Snapshot::Cafe {
            table, counters, ..
        } => (
            "cafe",
            serde_json::to_value(counters),
            (
                "brasa_curling_content_states",
                "Content states in the CAFE's table.",
                table.len(),
            ),
        ),
        Snapshot::Crme {
            active_sessions,
            counters,
            ..
        } => (
            "crme",
            serde_json::to_value(counters),
            (
                "brasa_curling_active_sessions",
                "Entries in the CRME's ActiveSessions table.",
                active_sessions.len(),
            ),
        ),
        Snapshot::Server {
            streams, counters, ..
        } => (
            "server",
            serde_json::to_value(counters),
            (
                "brasa_curling_streams",
                "Content streams in progress.",
                streams.len(),
            ),
        ),
        Snapshot::Client {
            downloads,
            counters,
            ..
        } => (
            "client",
            serde_json::to_value(counters),
            (
                "brasa_curling_downloads",
                "Downloads known to the client.",
                downloads.len(),
            ),
        ),
    };
    let counters = counters.map_err(|err| ApiError::internal(err.to_string()))?;
    let addr = snapshot.addr().to_string();
    let labels = [("entity", kind), ("addr", addr.as_str())];
    let mut writer = PromWriter::default();
    if let serde_json::Value::Object(fields) = counters {
        for (field, value) in fields {
            let name = format!("brasa_curling_{kind}_{field}_total");
            writer
                .family(
                    &name,
                    &format!("CURLING {kind} counter `{field}`."),
                    Kind::Counter,
                )
                .sample(&name, &labels, value.as_f64().unwrap_or(0.0));
        }
    }
    writer
        .family(gauge.0, gauge.1, Kind::Gauge)
        .sample(gauge.0, &labels, gauge.2 as f64);
    Ok(mgmt::metrics_response(writer.finish()))
}

async fn show(global: &GlobalArgs) -> anyhow::Result<()> {
    let url = global.api_url(DEFAULT_API);
    let snapshot: Snapshot =
        tokio::task::spawn_blocking(move || api::Client::new(url).get("/api/v1/curling"))
            .await
            .context("API client task failed")??;
    if global.json {
        return print_json(&snapshot);
    }
    let naming = Naming {
        net: snapshot.addr().ip().octets()[1],
    };
    let counters = match &snapshot {
        Snapshot::Cafe { counters, .. } => {
            print!("{}", snapshot.display_content_state_table(&naming));
            serde_json::to_value(counters)?
        }
        Snapshot::Crme {
            loc_cafe,
            content_table,
            counters,
            ..
        } => {
            print!("{}", snapshot.display_active_sessions(&naming));
            println!();
            let rows: Vec<Vec<String>> = loc_cafe
                .iter()
                .map(|row| {
                    let links: Vec<String> = row
                        .links
                        .iter()
                        .map(|(cafe, crme)| {
                            format!(
                                "{} (CRME {})",
                                naming.endpoint(*cafe),
                                naming.endpoint(*crme)
                            )
                        })
                        .collect();
                    vec![naming.endpoint(row.cafe), links.join(", ")]
                })
                .collect();
            print!("{}", table(&["Local CAFE", "Inter-domain links"], &rows));
            println!();
            let rows: Vec<Vec<String>> = content_table
                .iter()
                .map(|(id, route)| {
                    let place = match route {
                        brasa_curling::crme::ContentRoute::Local {
                            server,
                            attach_cafe,
                        } => format!(
                            "local server {} behind CAFE {}",
                            naming.endpoint(*server),
                            naming.endpoint(*attach_cafe)
                        ),
                        brasa_curling::crme::ContentRoute::Via { crme, source } => format!(
                            "via CRME {} (source {})",
                            naming.endpoint(*crme),
                            naming.endpoint(*source)
                        ),
                    };
                    vec![id.clone(), place]
                })
                .collect();
            print!("{}", table(&["Content ID", "Resolves to"], &rows));
            serde_json::to_value(counters)?
        }
        Snapshot::Server {
            published,
            streams,
            counters,
            ..
        } => {
            let rows: Vec<Vec<String>> = published
                .iter()
                .map(|(id, size)| vec![id.clone(), size.to_string()])
                .collect();
            print!("{}", table(&["Content ID", "Bytes"], &rows));
            println!();
            let rows: Vec<Vec<String>> = streams
                .iter()
                .map(|s| {
                    vec![
                        s.content_id.clone(),
                        naming.endpoint(s.to),
                        format!("{}/{}", s.sent, s.total),
                    ]
                })
                .collect();
            print!("{}", table(&["Streaming", "To", "Chunks sent"], &rows));
            serde_json::to_value(counters)?
        }
        Snapshot::Client {
            downloads,
            saved,
            counters,
            ..
        } => {
            let rows: Vec<Vec<String>> = downloads
                .iter()
                .map(|d| {
                    vec![
                        d.content_id.clone(),
                        format!(
                            "{}/{}",
                            d.chunks,
                            d.total.map_or("?".to_string(), |t| t.to_string())
                        ),
                        d.attempts.to_string(),
                        if d.done { "yes" } else { "no" }.to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["Content ID", "Chunks", "Consumes", "Done"], &rows)
            );
            for row in saved {
                println!(
                    "saved {} ({} bytes) to {}",
                    row.content_id,
                    row.bytes,
                    row.path.display()
                );
            }
            serde_json::to_value(counters)?
        }
    };
    println!();
    if let serde_json::Value::Object(fields) = counters {
        let rows: Vec<Vec<String>> = fields
            .into_iter()
            .map(|(name, value)| vec![name, value.to_string()])
            .collect();
        print!("{}", table(&["Counter", "Value"], &rows));
    }
    Ok(())
}
