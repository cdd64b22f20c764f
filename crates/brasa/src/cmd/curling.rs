//! `brasa curling`: stateful content-aware forwarding (CURLING, COMET D4.3 §6).
//!
//! - `brasa curling run SCENARIO` executes a scenario file in the document's style, every
//!   entity a real UDP endpoint on 127.N.d.r, and prints the §6.4.2 log lines and each CAFE's
//!   content state table (`--json`: the whole report).
//! - `brasa curling cafe|crme|server|client ROUTER ARGS…` runs one entity as a daemon (wired in
//!   `daemon::curling`), with the same arguments as its scenario line, and a management API
//!   (default `127.0.0.1:7783`).
//! - `brasa curling show` prints a running entity's tables and counters (`--json`).

use crate::common::output::{print_json, table};
use crate::common::{api, GlobalArgs};
use crate::daemon::curling::{EntityDaemon, EntityKind, DEFAULT_API};
use anyhow::Context;
use brasa_curling::crme::ContentRoute;
use brasa_curling::naming::Naming;
use brasa_curling_net::runner::{self, RunOptions};
use brasa_curling_net::shell::Snapshot;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    let entity = |kind, args: EntityArgs, content_dir| EntityDaemon {
        kind,
        args: args.args,
        net: args.net,
        content_dir,
        mgmt_listen: args.mgmt_listen,
    };
    let here = PathBuf::from(".");
    let daemon = match command {
        CurlingCommand::Run(args) => return run_scenario(global, args).await,
        CurlingCommand::Show => return show(global).await,
        CurlingCommand::Cafe(args) => entity(EntityKind::Cafe, args, here),
        CurlingCommand::Crme(args) => entity(EntityKind::Crme, args, here),
        CurlingCommand::Server(args) => {
            let publish = args
                .publish
                .iter()
                .map(|item| {
                    item.split_once('=')
                        .map(|(id, path)| (id.to_string(), PathBuf::from(path)))
                        .with_context(|| format!("--publish {item:?}: expected ID=PATH"))
                })
                .collect::<anyhow::Result<_>>()?;
            entity(EntityKind::Server { publish }, args.entity, here)
        }
        CurlingCommand::Client(args) => entity(
            EntityKind::Client {
                consume: args.consume,
            },
            args.entity,
            args.content_dir,
        ),
    };
    crate::daemon::curling::run(daemon).await
}

async fn run_scenario(global: &GlobalArgs, args: RunArgs) -> anyhow::Result<()> {
    let naming = Naming { net: args.net };
    let scenario = runner::load(&args.scenario, naming)?;
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
    let report = runner::run(&scenario, &options).await?;
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
                        ContentRoute::Local {
                            server,
                            attach_cafe,
                        } => format!(
                            "local server {} behind CAFE {}",
                            naming.endpoint(*server),
                            naming.endpoint(*attach_cafe)
                        ),
                        ContentRoute::Via { crme, source } => format!(
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
