//! `brasa service …` (change the running services) and the service parts of `brasa show` and
//! `brasa clear`.

use crate::common::api::Client;
use crate::common::output::{print_json, table};
use crate::common::GlobalArgs;
use crate::daemon::services::{ApplyRequest, FdbView, FilterView, ServiceView};
use anyhow::Context;
use brasa_services_net::ApplySummary;
use std::io::Read;
use std::path::PathBuf;

/// `brasa service …`
#[derive(clap::Subcommand, Debug)]
pub enum ServiceCommand {
    /// Apply service commands in the SR OS-like text form (`configure service epipe 1000
    /// customer 1 create / sap eth1:1214.101 create / …`), from FILE or `-` (stdin), as one
    /// transaction: validated completely, then applied to the kernel and the data plane as a
    /// whole, or not at all. Errors say line:col and what was expected.
    Apply {
        /// The commands (`-` for stdin).
        file: PathBuf,
        /// Check and show what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove a service with its SAPs, interfaces and static routes.
    Remove {
        /// Service id.
        id: u32,
    },
    /// Print the running services, filters and QoS policies in the text form (it applies back
    /// to the same configuration).
    Export,
}

/// `brasa show service [ID]`, `brasa show service fdb ID`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ShowServiceArgs {
    #[command(subcommand)]
    what: Option<ShowServiceWhat>,
    /// One service (all when absent): SAPs with their state and counters.
    id: Option<u32>,
}

#[derive(clap::Subcommand, Debug)]
enum ShowServiceWhat {
    /// The MAC table of a VPLS: MAC, SAP, static or learned, age.
    Fdb {
        /// The VPLS's service id.
        id: u32,
    },
    /// Data triggers and capture SAP statistics of the dynamic data services.
    #[command(subcommand)]
    DynamicServices(crate::cmd::dynsvc::ShowDynamicServices),
}

/// `brasa show filter KIND ID`.
#[derive(clap::Args, Debug)]
pub struct ShowFilterArgs {
    /// `ip`, `ipv6` or `mac`.
    kind: String,
    /// Filter id.
    id: u32,
}

/// `brasa clear service ID statistics`, `brasa clear service dynamic-services …`.
#[derive(clap::Args, Debug)]
pub struct ClearServiceArgs {
    /// Service id (with `statistics`).
    id: Option<u32>,
    #[command(subcommand)]
    what: ClearServiceWhat,
}

#[derive(clap::Subcommand, Debug)]
enum ClearServiceWhat {
    /// Zero the service's and its SAPs' counters.
    Statistics,
    /// Data triggers and capture SAP statistics of the dynamic data services.
    #[command(subcommand)]
    DynamicServices(crate::cmd::dynsvc::ClearDynamicServices),
}

fn client(global: &GlobalArgs) -> Client {
    Client::new(global.api_url(crate::cmd::show::DEFAULT_API))
}

pub async fn run(global: &GlobalArgs, command: ServiceCommand) -> anyhow::Result<()> {
    let client = client(global);
    tokio::task::block_in_place(|| match command {
        ServiceCommand::Apply { file, dry_run } => {
            let text = if file.as_os_str() == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading the commands from stdin")?;
                text
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?
            };
            let summary: ApplySummary = client
                .post("/api/v1/services/apply", &ApplyRequest { text, dry_run })
                .map_err(|err| match file.to_str() {
                    Some(name) if name != "-" => err.context(name.to_string()),
                    _ => err,
                })?;
            print_summary(global, &summary)
        }
        ServiceCommand::Remove { id } => {
            let summary: ApplySummary = client.delete(&format!("/api/v1/services/{id}"))?;
            print_summary(global, &summary)
        }
        ServiceCommand::Export => {
            let mut out = std::io::stdout().lock();
            client.get_to_writer("/api/v1/services/config", &mut out)?;
            Ok(())
        }
    })
}

fn print_summary(global: &GlobalArgs, summary: &ApplySummary) -> anyhow::Result<()> {
    if global.json {
        return print_json(summary);
    }
    let lines: Vec<&String> = summary
        .services
        .iter()
        .chain(&summary.saps)
        .chain(&summary.filters)
        .chain(&summary.qos_policies)
        .collect();
    if lines.is_empty() {
        println!("nothing changed");
    }
    for line in lines {
        println!("{line}");
    }
    for step in &summary.kernel_steps {
        println!("kernel: {step}");
    }
    if summary.dry_run {
        println!("(dry run: nothing was applied)");
    }
    Ok(())
}

pub async fn show(global: &GlobalArgs, args: ShowServiceArgs) -> anyhow::Result<()> {
    let client = client(global);
    tokio::task::block_in_place(|| match args.what {
        Some(ShowServiceWhat::DynamicServices(command)) => {
            crate::cmd::dynsvc::show(global, command)
        }
        Some(ShowServiceWhat::Fdb { id }) => {
            let entries: Vec<FdbView> = client.get(&format!("/api/v1/services/{id}/fdb"))?;
            if global.json {
                return print_json(&entries);
            }
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    vec![
                        e.mac.clone(),
                        e.sap.clone(),
                        if e.is_static { "static" } else { "learned" }.to_string(),
                        if e.is_static {
                            "-".to_string()
                        } else {
                            format!("{}s", e.age_secs)
                        },
                    ]
                })
                .collect();
            println!("Forwarding Database, Service {id}");
            print!("{}", table(&["MAC", "SAP", "Type", "Age"], &rows));
            println!("No. of MAC Entries: {}", entries.len());
            Ok(())
        }
        None => {
            let services: Vec<ServiceView> = match args.id {
                Some(id) => {
                    let service: ServiceView = client.get(&format!("/api/v1/services/{id}"))?;
                    if global.json {
                        return print_json(&service);
                    }
                    vec![service]
                }
                None => client.get("/api/v1/services")?,
            };
            if global.json {
                return print_json(&services);
            }
            print!("{}", render_services(&services));
            Ok(())
        }
    })
}

fn render_services(services: &[ServiceView]) -> String {
    let mut out = String::new();
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| {
            let c = s.counters.clone().unwrap_or_default();
            vec![
                s.id.to_string(),
                s.kind.clone(),
                s.customer.to_string(),
                s.admin.clone(),
                s.oper.clone(),
                s.saps.len().to_string(),
                c.rx_packets.to_string(),
                c.tx_packets.to_string(),
                s.description.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "Service",
            "Type",
            "Customer",
            "Admin",
            "Oper",
            "SAPs",
            "Rx pkts",
            "Tx pkts",
            "Description",
        ],
        &rows,
    ));
    for service in services {
        if service.saps.is_empty() {
            continue;
        }
        out.push_str(&format!("\nService {} SAPs\n", service.id));
        let rows: Vec<Vec<String>> = service
            .saps
            .iter()
            .map(|sap| {
                let c = sap.counters.clone().unwrap_or_default();
                let drops: u64 = c.drops.values().sum();
                vec![
                    sap.sap.clone(),
                    sap.interface.clone().unwrap_or_default(),
                    sap.admin.clone(),
                    if sap.capture { "capture" } else { "" }.to_string(),
                    c.rx_packets.to_string(),
                    c.rx_octets.to_string(),
                    c.tx_packets.to_string(),
                    c.tx_octets.to_string(),
                    drops.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "SAP",
                "Interface",
                "Admin",
                "",
                "Rx pkts",
                "Rx octets",
                "Tx pkts",
                "Tx octets",
                "Drops",
            ],
            &rows,
        ));
    }
    out
}

pub async fn show_filter(global: &GlobalArgs, args: ShowFilterArgs) -> anyhow::Result<()> {
    let client = client(global);
    let view: FilterView = tokio::task::block_in_place(|| {
        client.get(&format!(
            "/api/v1/services/filters/{}/{}",
            crate::common::api::encode_component(&args.kind),
            args.id
        ))
    })?;
    if global.json {
        return print_json(&view);
    }
    println!("{}", view.filter);
    if let Some(description) = &view.description {
        println!("Description    : {description}");
    }
    println!("Default action : {}", view.default_action);
    let rows: Vec<Vec<String>> = view
        .hits
        .iter()
        .map(|h| {
            vec![
                h.entry.map_or("default".to_string(), |e| e.to_string()),
                h.packets.to_string(),
                h.octets.to_string(),
            ]
        })
        .collect();
    print!("{}", table(&["Entry", "Hit packets", "Hit octets"], &rows));
    Ok(())
}

pub async fn clear(global: &GlobalArgs, args: ClearServiceArgs) -> anyhow::Result<()> {
    let client = client(global);
    let id = match (args.what, args.id) {
        (ClearServiceWhat::DynamicServices(command), None) => {
            return tokio::task::block_in_place(|| crate::cmd::dynsvc::clear(global, command))
        }
        (ClearServiceWhat::DynamicServices(_), Some(id)) => {
            anyhow::bail!(
                "`clear service {id} dynamic-services`: dynamic-services takes no service id"
            )
        }
        (ClearServiceWhat::Statistics, None) => {
            anyhow::bail!(
                "`clear service statistics` needs the service id: clear service ID statistics"
            )
        }
        (ClearServiceWhat::Statistics, Some(id)) => id,
    };
    let _: serde_json::Value = tokio::task::block_in_place(|| {
        client.post(
            &format!("/api/v1/services/{id}/clear-statistics"),
            &serde_json::json!({}),
        )
    })?;
    if !global.json {
        println!("cleared the statistics of service {id}");
    }
    Ok(())
}
