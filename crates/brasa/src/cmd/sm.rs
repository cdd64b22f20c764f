//! `brasa sm …`: the subscriber manager's operator commands (the SCMS SM's CLU).
//!
//! Everything except `ep-watch` goes through the management API of `brasa run`
//! (`/api/v1/sm/…`, default `127.0.0.1:7780`, `--api`); `ep-watch` connects to the SM's gRPC
//! EP protocol (`--grpc`, default `http://127.0.0.1:7790`) as an enforcement point.

use crate::cmd::show::DEFAULT_API;
use crate::common::api::{encode_component, Client};
use crate::common::output::{print_json, table};
use crate::common::GlobalArgs;
use crate::daemon::sm_api::{
    ChangeView, ImportView, LoginBody, LogoutBody, LookupView, MplsEntriesBody, NeighborView,
    RoutesReply, Statistics, SubscriberView, VpnBody, VpnView, EXPORTED_SUBSCRIBERS, EXPORTED_VPNS,
};
use crate::daemon::sm_config::StoreLocation;
use crate::daemon::sm_ha::HaStatus;
use anyhow::{anyhow, Context};
use brasa_sm::ep::{EpView, QuarantineState};
use brasa_sm::{pb, EpReplica, ReplicaEvent};
use brasa_sm_net::{ClientError, ClientEvent, EpClient, EpClientOptions};
use brasa_subscriber::csv::ImportMode;
use brasa_subscriber::Snapshot;
use brasa_subsvc::SubscriberServices;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

/// Default gRPC address of the SM.
pub const DEFAULT_GRPC: &str = "http://127.0.0.1:7790";

/// `brasa sm …`
#[derive(clap::Subcommand, Debug)]
pub enum SmCommand {
    /// Import subscribers from a CSV file with a header row (columns: name, domain, mappings,
    /// properties, logged_in, auto_logout). Invalid rows refuse the whole file unless
    /// --skip-invalid.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// Import the valid rows and report the invalid ones instead of refusing the file.
        #[arg(long)]
        skip_invalid: bool,
    },
    /// Export every subscriber as CSV (to stdout, or -o FILE).
    Export {
        /// Write here instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Show a subscriber, names, or counts.
    #[command(subcommand)]
    Show(SmShow),
    /// Which subscriber owns an address: `IP` or `IP@VPN` (longest-prefix match).
    Lookup {
        /// `10.1.2.3`, `2001:db8::1`, `10.1.2.3@corp`.
        address: String,
    },
    /// Log a subscriber in (exact mappings held by others move to it).
    Login {
        /// Subscriber name.
        name: String,
        /// A mapping (`10.0.0.1`, `10.0.0.0/24`, `10.0.0.1-10.0.0.9`, `…@VPN`); repeatable.
        #[arg(short, long = "mapping")]
        mappings: Vec<String>,
        /// Add to the current mappings instead of replacing them.
        #[arg(long)]
        additive: bool,
        /// A property `KEY=VALUE`; repeatable.
        #[arg(short, long = "property")]
        properties: Vec<String>,
        /// Domain.
        #[arg(long)]
        domain: Option<String>,
        /// Log out automatically after this long (`90s`, `1h`).
        #[arg(long)]
        auto_logout: Option<String>,
    },
    /// Log a subscriber out, by name (optionally in a domain) or by mapping.
    Logout {
        /// Subscriber name.
        #[arg(required_unless_present = "mapping")]
        name: Option<String>,
        /// Only if the subscriber is in this domain.
        #[arg(long, requires = "name")]
        domain: Option<String>,
        /// Log out whoever holds exactly this mapping.
        #[arg(long, conflicts_with = "name")]
        mapping: Option<String>,
    },
    /// Active/standby: this node's role, the leader and its fencing token, and every SM node
    /// of the database with its role and gRPC address.
    Status,
    /// Enforcement points: connection, mode, domain, state, quarantine.
    Eps,
    /// Resynchronise a connected EP (a full sync of its domain).
    Resync {
        /// EP id.
        ep: String,
    },
    /// Lift an EP's quarantine so that it may reconnect at once.
    ReleaseQuarantine {
        /// EP id.
        ep: String,
    },
    /// Connect to the SM as an EP and print what it sends (`--json`: one object per line).
    EpWatch(EpWatchArgs),
    /// VPNs: the VLAN or MPLS/VPN (`RT/RD@PE-IP`) entities that mappings name after `@`.
    #[command(subcommand)]
    Vpn(SmVpn),
    /// The BGP LEG: its neighbors and the MPLS/VPN routes they announce.
    #[command(subcommand)]
    Bgp(SmBgp),
    /// Copy every subscriber, VPN and BGP LEG route from one store to another (redb to
    /// PostgreSQL or back), then read the destination back and compare. No SM may run on
    /// either store; the destination must be empty (a PostgreSQL destination is created or
    /// migrated to the current schema first).
    Migrate {
        /// `redb:PATH` (the SM's data directory, `<data_dir>/subscriber`) or `postgres:URL`.
        #[arg(long)]
        from: String,
        /// `redb:PATH` or `postgres:URL`.
        #[arg(long)]
        to: String,
    },
}

/// `brasa sm vpn …`
#[derive(clap::Subcommand, Debug)]
pub enum SmVpn {
    /// Create a VPN (`--vlan ID` or `--mpls RT/RD@PE-IP`…), or add `--mpls` entries to an
    /// existing MPLS/VPN (a new PE).
    Add {
        /// VPN name (what mappings write after `@`).
        name: String,
        /// The VLAN-id of a VLAN VPN.
        #[arg(long, conflicts_with = "mpls")]
        vlan: Option<u16>,
        /// An MPLS/VPN entry `RT/RD@PE-IP` (`1000:1@10.10.10.10`); repeatable.
        #[arg(long = "mpls", value_name = "RT/RD@PE-IP")]
        mpls: Vec<String>,
        /// Domain of a new VPN (default `subscribers`).
        #[arg(long)]
        domain: Option<String>,
    },
    /// Remove a VPN (refused while subscribers use it), or only the given `--mpls` entries.
    Remove {
        /// VPN name.
        name: String,
        /// Remove only this `RT/RD@PE-IP` entry; repeatable.
        #[arg(long = "mpls", value_name = "RT/RD@PE-IP")]
        mpls: Vec<String>,
    },
    /// One VPN: its entries, the labels set through the API and those the BGP LEG learnt,
    /// with the prefixes behind each.
    Show {
        /// VPN name.
        name: String,
    },
    /// Every VPN.
    List,
}

/// `brasa sm bgp …`
#[derive(clap::Subcommand, Debug)]
pub enum SmBgp {
    /// Neighbors or routes.
    #[command(subcommand)]
    Show(SmBgpShow),
}

/// `brasa sm bgp show …`
#[derive(clap::Subcommand, Debug)]
pub enum SmBgpShow {
    /// Every configured neighbor: session, counters, routes in the speaker and in the SM.
    Neighbors,
    /// The routes the BGP LEG holds, with the VPNs they match and the subscribers they give a
    /// range to.
    Routes {
        /// Only the routes matching this VPN.
        #[arg(long)]
        vpn: Option<String>,
        /// Only the routes of this neighbor.
        #[arg(long)]
        peer: Option<String>,
        /// At most this many (sorted by neighbor, prefix, RD).
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
    },
}

/// `brasa sm show …`
#[derive(clap::Subcommand, Debug)]
pub enum SmShow {
    /// One subscriber.
    Subscriber {
        /// Name.
        name: String,
        /// Only if it is in this domain.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Names starting or ending with a pattern.
    Names {
        /// Prefix.
        #[arg(long, required_unless_present = "suffix", conflicts_with = "suffix")]
        prefix: Option<String>,
        /// Suffix.
        #[arg(long)]
        suffix: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Subscribers per domain, VPNs, EPs, operations, store commits, RADIUS events.
    Counts,
}

/// `--role` of `brasa sm ep-watch`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum CascadeRoleArg {
    /// The pair member the SM updates.
    Active,
    /// The pair member that learns from the active one.
    Standby,
}

/// `brasa sm ep-watch`
#[derive(clap::Args, Debug)]
pub struct EpWatchArgs {
    /// The EP id (a configured `[[subscriber_manager.ep]]`).
    #[arg(long)]
    id: String,
    /// The SM's gRPC address.
    #[arg(long, env = "BRASA_SM_GRPC", default_value = DEFAULT_GRPC)]
    grpc: String,
    /// Cascade role for an EP of a cascade pair.
    #[arg(long, value_enum)]
    role: Option<CascadeRoleArg>,
    /// Pull these addresses (`IP` or `IP@VPN`) once connected; repeatable.
    #[arg(long)]
    pull: Vec<String>,
    /// Exit once the first full sync (and the pulls) are done, printing what the EP holds.
    #[arg(long)]
    until_synced: bool,
    /// Reconnect this long after the connection ends (`2s`); without it, exit.
    #[arg(long)]
    reconnect: Option<String>,
    /// Do not acknowledge updates (shows the SM's back-pressure handling; it quarantines).
    #[arg(long)]
    no_ack: bool,
}

pub async fn run(global: &GlobalArgs, command: SmCommand) -> anyhow::Result<()> {
    if let SmCommand::EpWatch(args) = command {
        return ep_watch(global, args).await;
    }
    let global = global.clone();
    tokio::task::spawn_blocking(move || run_blocking(&global, command)).await?
}

fn run_blocking(global: &GlobalArgs, command: SmCommand) -> anyhow::Result<()> {
    let base = global.api_url(DEFAULT_API);
    let client = Client::new(base.clone());
    match command {
        SmCommand::Import { file, skip_invalid } => import(global, &base, &file, skip_invalid),
        SmCommand::Export { output } => export(&base, output),
        SmCommand::Migrate { from, to } => migrate(global, &from, &to),
        SmCommand::Show(SmShow::Subscriber { name, domain }) => {
            let mut path = format!("/api/v1/sm/subscribers/{}", encode_component(&name));
            if let Some(d) = domain {
                path.push_str(&format!("?domain={}", encode_component(&d)));
            }
            let sub: SubscriberView = client.get(&path)?;
            if global.json {
                return print_json(&sub);
            }
            print!("{}", render_subscriber(&sub));
            Ok(())
        }
        SmCommand::Show(SmShow::Names {
            prefix,
            suffix,
            limit,
        }) => {
            let query = match (prefix, suffix) {
                (Some(p), _) => format!("prefix={}", encode_component(&p)),
                (None, Some(s)) => format!("suffix={}", encode_component(&s)),
                (None, None) => unreachable!("clap requires one"),
            };
            let names: Vec<String> =
                client.get(&format!("/api/v1/sm/names?{query}&limit={limit}"))?;
            if global.json {
                return print_json(&names);
            }
            for n in names {
                println!("{n}");
            }
            Ok(())
        }
        SmCommand::Show(SmShow::Counts) => {
            let stats: Statistics = client.get("/api/v1/sm/statistics")?;
            if global.json {
                return print_json(&stats);
            }
            print!("{}", render_counts(&stats));
            Ok(())
        }
        SmCommand::Lookup { address } => {
            let (ip, vpn) = match address.rsplit_once('@') {
                Some((ip, vpn)) => (ip, Some(vpn)),
                None => (address.as_str(), None),
            };
            let mut path = format!("/api/v1/sm/lookup?address={}", encode_component(ip));
            if let Some(v) = vpn {
                path.push_str(&format!("&vpn={}", encode_component(v)));
            }
            let found: LookupView = client.get(&path)?;
            if global.json {
                return print_json(&found);
            }
            match &found.subscriber {
                Some(s) => print!("{}", render_subscriber(s)),
                None => println!("{address}: no subscriber"),
            }
            Ok(())
        }
        SmCommand::Login {
            name,
            mappings,
            additive,
            properties,
            domain,
            auto_logout,
        } => {
            let properties = properties
                .iter()
                .map(|p| {
                    p.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .ok_or_else(|| anyhow!("property {p:?} is not KEY=VALUE"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let auto_logout_seconds = auto_logout
                .map(|d| {
                    crate::common::config::ConfigDuration::parse(&d)
                        .map(|d| d.0.as_secs())
                        .map_err(|e| anyhow!("--auto-logout: {e}"))
                })
                .transpose()?;
            let body = LoginBody {
                name,
                mappings,
                additive,
                properties,
                domain,
                auto_logout_seconds,
            };
            let change: ChangeView = client.post("/api/v1/sm/login", &body)?;
            print_change(global, &change)
        }
        SmCommand::Logout {
            name,
            domain,
            mapping,
        } => {
            let body = LogoutBody {
                name,
                domain,
                mapping,
            };
            let change: ChangeView = client.post("/api/v1/sm/logout", &body)?;
            print_change(global, &change)
        }
        SmCommand::Status => {
            let status: HaStatus = client.get("/api/v1/sm/ha")?;
            if global.json {
                return print_json(&status);
            }
            print!("{}", render_ha_status(&status));
            Ok(())
        }
        SmCommand::Eps => {
            let eps: Vec<EpView> = client.get("/api/v1/sm/eps")?;
            if global.json {
                return print_json(&eps);
            }
            print!("{}", render_eps(&eps));
            Ok(())
        }
        SmCommand::Resync { ep } => ep_action(
            global,
            &client,
            &ep,
            "resync",
            "full resynchronisation started",
        ),
        SmCommand::ReleaseQuarantine { ep } => ep_action(
            global,
            &client,
            &ep,
            "release-quarantine",
            "quarantine released; it may reconnect now",
        ),
        SmCommand::EpWatch(_) => unreachable!("handled above"),
        SmCommand::Vpn(command) => vpn_command(global, &client, command),
        SmCommand::Bgp(SmBgp::Show(SmBgpShow::Neighbors)) => {
            let neighbors: Vec<NeighborView> = client.get("/api/v1/sm/bgp/neighbors")?;
            if global.json {
                return print_json(&neighbors);
            }
            print!("{}", render_neighbors(&neighbors));
            Ok(())
        }
        SmCommand::Bgp(SmBgp::Show(SmBgpShow::Routes { vpn, peer, limit })) => {
            let mut path = format!("/api/v1/sm/bgp/routes?limit={limit}");
            if let Some(v) = vpn {
                path.push_str(&format!("&vpn={}", encode_component(&v)));
            }
            if let Some(p) = peer {
                path.push_str(&format!("&peer={}", encode_component(&p)));
            }
            let reply: RoutesReply = client.get(&path)?;
            if global.json {
                return print_json(&reply);
            }
            print!("{}", render_routes(&reply));
            Ok(())
        }
    }
}

fn vpn_command(global: &GlobalArgs, client: &Client, command: SmVpn) -> anyhow::Result<()> {
    let path = |name: &str| format!("/api/v1/sm/vpns/{}", encode_component(name));
    match command {
        SmVpn::Add {
            name,
            vlan,
            mpls,
            domain,
        } => {
            let existing: anyhow::Result<VpnView> = client.get(&path(&name));
            let change: ChangeView = match existing {
                Ok(vpn) if !mpls.is_empty() && vpn.vlan.is_none() => {
                    if domain.as_ref().is_some_and(|d| *d != vpn.domain) {
                        return Err(anyhow!(
                            "VPN {name} exists in domain {}; its domain does not change",
                            vpn.domain
                        ));
                    }
                    client.post(
                        &format!("{}/mpls", path(&name)),
                        &MplsEntriesBody { entries: mpls },
                    )?
                }
                Ok(_) => return Err(anyhow!("VPN {name} already exists")),
                Err(_) => client.post(
                    "/api/v1/sm/vpns",
                    &VpnBody {
                        name,
                        domain,
                        vlan,
                        mpls,
                    },
                )?,
            };
            print_change(global, &change)
        }
        SmVpn::Remove { name, mpls } => {
            let change: ChangeView = if mpls.is_empty() {
                client.delete(&path(&name))?
            } else {
                client.delete(&format!(
                    "{}/mpls?entries={}",
                    path(&name),
                    encode_component(&mpls.join(","))
                ))?
            };
            if global.json {
                return print_json(&change);
            }
            if mpls.is_empty() {
                println!("VPN {name} removed");
            } else {
                println!("VPN {name}: removed {}", mpls.join(", "));
            }
            Ok(())
        }
        SmVpn::Show { name } => {
            let vpn: VpnView = client.get(&path(&name))?;
            if global.json {
                return print_json(&vpn);
            }
            print!("{}", render_vpn(&vpn));
            Ok(())
        }
        SmVpn::List => {
            let vpns: Vec<VpnView> = client.get("/api/v1/sm/vpns")?;
            if global.json {
                return print_json(&vpns);
            }
            let rows: Vec<Vec<String>> = vpns
                .iter()
                .map(|v| {
                    let (kind, ids, labels) = match v.vlan {
                        Some(id) => ("vlan", id.to_string(), String::new()),
                        None => (
                            "mpls",
                            v.mpls
                                .iter()
                                .map(|e| e.id.clone())
                                .collect::<Vec<_>>()
                                .join(" "),
                            v.mpls
                                .iter()
                                .flat_map(|e| {
                                    e.labels
                                        .iter()
                                        .map(|(l, _)| *l)
                                        .chain(e.learned_labels.iter().map(|(l, _)| *l))
                                })
                                .map(|l| l.to_string())
                                .collect::<Vec<_>>()
                                .join(" "),
                        ),
                    };
                    vec![v.name.clone(), v.domain.clone(), kind.into(), ids, labels]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["VPN", "Domain", "Kind", "VLAN / RT/RD@PE-IP", "Labels"],
                    &rows
                )
            );
            Ok(())
        }
    }
}

fn render_vpn(v: &VpnView) -> String {
    let mut out = format!("VPN:     {}\nDomain:  {}\n", v.name, v.domain);
    if let Some(id) = v.vlan {
        out.push_str(&format!("VLAN-id: {id}\n"));
        return out;
    }
    for e in &v.mpls {
        out.push_str(&format!("MPLS/VPN {}\n", e.id));
        for (label, ranges) in &e.labels {
            out.push_str(&format!("  label {label} (set): {}\n", ranges.join(", ")));
        }
        for (label, ranges) in &e.learned_labels {
            out.push_str(&format!(
                "  label {label} (learnt by the BGP LEG): {}\n",
                ranges.join(", ")
            ));
        }
        if e.labels.is_empty() && e.learned_labels.is_empty() {
            out.push_str("  no label yet\n");
        }
    }
    out
}

fn render_neighbors(neighbors: &[NeighborView]) -> String {
    let rows: Vec<Vec<String>> = neighbors
        .iter()
        .map(|n| {
            vec![
                n.address.to_string(),
                n.remote_as
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "-".into()),
                n.state.clone(),
                n.families.join(","),
                n.sessions.to_string(),
                format!("{}/{}", n.announced, n.withdrawn),
                format!("{} ({} stale)", n.routes, n.stale),
                format!(
                    "{} ({} in VPNs, {} restored)",
                    n.sm_routes, n.sm_matched, n.sm_restored
                ),
                n.last_down.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "Neighbor",
            "AS",
            "State",
            "Families",
            "Sessions",
            "Announced/Withdrawn",
            "Adj-RIB-In",
            "In the SM",
            "Last down",
        ],
        &rows,
    )
}

fn render_routes(reply: &RoutesReply) -> String {
    let rows: Vec<Vec<String>> = reply
        .routes
        .iter()
        .map(|r| {
            vec![
                r.peer.to_string(),
                r.rd.clone(),
                r.prefix.clone(),
                r.label.to_string(),
                r.next_hop.to_string(),
                r.route_targets.join(" "),
                r.communities.join(" "),
                if r.vpns.is_empty() {
                    "- (no VPN: ignored)".into()
                } else {
                    r.vpns.join(" ")
                },
                r.subscribers.join(" "),
                if r.stale { "stale" } else { "" }.into(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "Neighbor",
            "RD",
            "Prefix",
            "Label",
            "Next hop",
            "RT",
            "Communities",
            "VPNs",
            "Subscribers",
            "",
        ],
        &rows,
    );
    if reply.total > reply.routes.len() {
        out.push_str(&format!(
            "… {} more (raise --limit)\n",
            reply.total - reply.routes.len()
        ));
    }
    out
}

/// `POST /api/v1/sm/eps/{ep}/{action}` and a one-line report.
fn ep_action(
    global: &GlobalArgs,
    client: &Client,
    ep: &str,
    action: &str,
    done: &str,
) -> anyhow::Result<()> {
    let answer: serde_json::Value = client.post(
        &format!("/api/v1/sm/eps/{}/{action}", encode_component(ep)),
        &serde_json::json!({}),
    )?;
    if global.json {
        return print_json(&answer);
    }
    println!("EP {ep}: {done}");
    Ok(())
}

/// Counts the bytes read for the progress bar.
struct Counting<R> {
    inner: R,
    bar: indicatif::ProgressBar,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        if n == 0 {
            self.bar.set_message("validating and committing…");
        }
        Ok(n)
    }
}

/// Imports and exports of millions of rows take longer than an ordinary request.
const BULK_TIMEOUT: Duration = Duration::from_secs(3600);

fn import(
    global: &GlobalArgs,
    base: &str,
    file: &std::path::Path,
    skip_invalid: bool,
) -> anyhow::Result<()> {
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = if global.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(len)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message("uploading");
    bar.enable_steady_tick(Duration::from_millis(200));
    let mode = if skip_invalid {
        ImportMode::SkipInvalid
    } else {
        ImportMode::AllOrNothing
    };
    let reader = Counting {
        inner: std::io::BufReader::new(f),
        bar: bar.clone(),
    };
    let view: anyhow::Result<ImportView> = Client::with_timeout(base.to_owned(), BULK_TIMEOUT)
        .post_reader(
            &format!("/api/v1/sm/import?mode={}", mode.as_str()),
            "text/csv",
            reader,
        );
    bar.finish_and_clear();
    let view = view?;
    if global.json {
        return print_json(&view);
    }
    println!(
        "imported {} subscribers and {} VPNs from {}",
        view.imported,
        view.vpns,
        file.display()
    );
    if !view.skipped.is_empty() {
        println!("skipped {} invalid rows:", view.skipped.len());
        for (line, why) in &view.skipped {
            println!("  line {line}: {why}");
        }
    }
    Ok(())
}

/// Records per commit of `brasa sm migrate`: large enough for the bulk path of PostgreSQL
/// (COPY), small enough to show progress.
const MIGRATE_PER_COMMIT: usize = 50_000;

fn migrate(global: &GlobalArgs, from: &str, to: &str) -> anyhow::Result<()> {
    let from = StoreLocation::parse(from).map_err(|e| anyhow!("--from: {e}"))?;
    let to = StoreLocation::parse(to).map_err(|e| anyhow!("--to: {e}"))?;
    if from == to {
        return Err(anyhow!("--from and --to are the same store ({from})"));
    }
    let mut source = from.open().with_context(|| format!("cannot open {from}"))?;
    let mut dest = to.open().with_context(|| format!("cannot open {to}"))?;
    let existing = dest.load().with_context(|| format!("cannot read {to}"))?;
    if !existing.is_empty() {
        return Err(anyhow!(
            "{to} already holds {} subscribers, {} VPNs and {} BGP LEG routes: migrate only \
             into an empty store",
            existing.subscribers.len(),
            existing.vpns.len(),
            existing.routes.len()
        ));
    }
    let bar = if global.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    bar.set_message(format!("reading {from}"));
    let snapshot = source
        .load()
        .with_context(|| format!("cannot read {from}"))?;
    drop(source);
    let total = snapshot.len() as u64;
    let want = sorted_snapshot(snapshot.clone());
    bar.set_length(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} records {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("writing {to}"));
    for set in snapshot.into_change_sets(MIGRATE_PER_COMMIT) {
        let n = set.subscribers.len() + set.vpns.len() + set.routes.len();
        dest.apply(&set)
            .with_context(|| format!("cannot write {to}"))?;
        bar.inc(n as u64);
    }
    bar.set_message(format!("verifying {to}"));
    let got = sorted_snapshot(
        dest.load()
            .with_context(|| format!("cannot read back {to}"))?,
    );
    bar.finish_and_clear();
    if got != want {
        return Err(anyhow!(
            "{to} does not read back as {from} wrote it ({} against {} records): the copy is \
             incomplete, do not start an SM on it",
            got.len(),
            want.len()
        ));
    }
    let summary = MigrateView {
        from: from.to_string(),
        to: to.to_string(),
        subscribers: got.subscribers.len(),
        vpns: got.vpns.len(),
        routes: got.routes.len(),
    };
    if global.json {
        return print_json(&summary);
    }
    println!(
        "copied {} subscribers, {} VPNs and {} BGP LEG routes from {} to {} (read back and verified)",
        summary.subscribers, summary.vpns, summary.routes, summary.from, summary.to
    );
    Ok(())
}

/// What `brasa sm migrate --json` prints.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct MigrateView {
    /// The source store.
    pub from: String,
    /// The destination store.
    pub to: String,
    /// Subscribers copied.
    pub subscribers: usize,
    /// VPNs copied.
    pub vpns: usize,
    /// BGP LEG routes copied.
    pub routes: usize,
}

/// A snapshot in a canonical order, for comparing two stores.
fn sorted_snapshot(mut s: Snapshot) -> Snapshot {
    s.vpns.sort_by(|a, b| a.name.cmp(&b.name));
    s.subscribers.sort_by(|a, b| a.name.cmp(&b.name));
    s.routes.sort_by_key(|r| r.key);
    s
}

fn export(base: &str, output: Option<PathBuf>) -> anyhow::Result<()> {
    let client = Client::with_timeout(base.to_owned(), BULK_TIMEOUT);
    let Some(path) = output else {
        client.get_to_writer(EXPORT_PATH, &mut std::io::stdout().lock())?;
        return Ok(());
    };
    let file =
        std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    let headers = client
        .get_to_writer(EXPORT_PATH, &mut std::io::BufWriter::new(file))
        .with_context(|| format!("exporting to {}", path.display()))?;
    let count = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned()
    };
    eprintln!(
        "exported {} subscribers and {} VPNs to {}",
        count(EXPORTED_SUBSCRIBERS),
        count(EXPORTED_VPNS),
        path.display()
    );
    Ok(())
}

const EXPORT_PATH: &str = "/api/v1/sm/export";

fn render_subscriber(s: &SubscriberView) -> String {
    let props: Vec<String> = s
        .properties
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut out = String::new();
    out.push_str(&format!("Name:        {}\n", s.name));
    out.push_str(&format!("Domain:      {}\n", s.domain));
    out.push_str(&format!(
        "Logged in:   {}\n",
        if s.logged_in { "yes" } else { "no" }
    ));
    out.push_str(&format!("Mappings:    {}\n", s.mappings.join(", ")));
    if !s.learned.is_empty() {
        out.push_str(&format!("Learnt (BGP): {}\n", s.learned.join(", ")));
    }
    out.push_str(&format!("Properties:  {}\n", props.join(", ")));
    if !s.state.is_empty() {
        out.push_str(&format!("State:       {}\n", s.state));
    }
    if let Some(t) = s.auto_logout {
        out.push_str(&format!("Auto-logout: {t} (Unix time)\n"));
    }
    if !s.services.is_empty() {
        out.push_str("Services:\n");
        out.push_str(&render_services(&s.services));
    }
    out
}

/// One line per service, then one per PCC rule (indented), as the record holds them.
pub(crate) fn render_services(services: &SubscriberServices) -> String {
    let mut out = String::new();
    for service in services.iter() {
        let mut about = vec![format!(
            "type-conflict-action {}",
            kebab(&service.type_conflict_action)
        )];
        if let Some(t) = &service.service_type {
            about.insert(0, format!("type {t}"));
        }
        about.push(format!(
            "acct-stats-type {}",
            kebab(&service.acct_stats_type)
        ));
        if let Some(secs) = service.acct_interval {
            about.push(format!("acct-interval {secs} s"));
        }
        out.push_str(&format!("  {} ({})\n", service.name, about.join(", ")));
        for rule in &service.rules {
            let precedence = rule
                .precedence
                .map_or_else(|| "-".to_owned(), |p| p.to_string());
            out.push_str(&format!(
                "    {} {} precedence {}: {} => {}\n",
                rule.name,
                rule.direction,
                precedence,
                rule.flows
                    .iter()
                    .map(flow_text)
                    .collect::<Vec<_>>()
                    .join(" | "),
                actions_text(rule),
            ));
        }
    }
    out
}

/// A serde enum's kebab-case name (its JSON form without quotes).
fn kebab<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn flow_text(flow: &brasa_subsvc::Flow) -> String {
    let mut parts = Vec::new();
    if let Some(p) = flow.src_ip {
        parts.push(format!("src {p}"));
    }
    if let Some(p) = flow.dst_ip {
        parts.push(format!("dst {p}"));
    }
    if let Some(p) = flow.protocol {
        parts.push(format!("protocol {p}"));
    }
    if let Some(p) = flow.src_port {
        parts.push(format!("src-port {p}"));
    }
    if let Some(p) = flow.dst_port {
        parts.push(format!("dst-port {p}"));
    }
    if let Some(d) = flow.dscp {
        parts.push(format!("dscp {d}"));
    }
    parts.join(" ")
}

fn actions_text(rule: &brasa_subsvc::PccRule) -> String {
    let actions = &rule.actions;
    let mut parts = Vec::new();
    if actions.gate == brasa_subsvc::Gate::Drop {
        parts.push("drop".to_owned());
    }
    if let Some(limit) = actions.rate_limit {
        match limit.cir_kbps {
            Some(cir) => parts.push(format!(
                "rate-limit pir {} kb/s cir {cir} kb/s",
                limit.pir_kbps
            )),
            None => parts.push(format!("rate-limit pir {} kb/s", limit.pir_kbps)),
        }
    }
    if actions.account {
        parts.push("account".to_owned());
    }
    if let Some(dscp) = actions.remark_dscp {
        parts.push(format!("remark dscp {dscp}"));
    }
    if parts.is_empty() {
        parts.push("forward".to_owned());
    }
    if let Some(policer) = &rule.policer {
        // The overrides as JSON: every field of them, parent-arbiter included (recorded and
        // shown; brasa has no hierarchical scheduler to enforce it).
        if let Ok(text) = serde_json::to_string(policer) {
            parts.push(format!("policer {text}"));
        }
    }
    parts.join(", ")
}

fn print_change(global: &GlobalArgs, change: &ChangeView) -> anyhow::Result<()> {
    if global.json {
        return print_json(change);
    }
    for (name, new) in &change.changed {
        match new {
            Some(s) => println!(
                "{name}: {} (domain {}), mappings [{}]",
                if s.logged_in {
                    "logged in"
                } else {
                    "logged out"
                },
                s.domain,
                s.mappings.join(", ")
            ),
            None => println!("{name}: removed"),
        }
    }
    for v in &change.vpns {
        println!("VPN {v} created or changed");
    }
    Ok(())
}

fn render_counts(stats: &Statistics) -> String {
    let s = &stats.service;
    let mut out = format!(
        "Subscribers: {}   VPNs: {}   Connected EPs: {}   gRPC: {}\n",
        s.subscribers, s.vpns, s.connected_eps, stats.grpc_listen
    );
    let rows: Vec<Vec<String>> = s
        .domains
        .iter()
        .map(|(domain, n)| vec![domain.clone(), n.to_string()])
        .collect();
    out.push_str(&table(&["Domain", "Subscribers"], &rows));
    out.push_str(&format!(
        "Operations applied: {}   refused: {}   auto-logouts: {}   imported: {}\n",
        s.ops.applied, s.ops.refused, s.ops.auto_logouts, s.ops.imported,
    ));
    out.push_str(&format!(
        "Store commits: {}   change sets: {}   failures: {}\n",
        s.commits, s.committed_changes, s.store_failures,
    ));
    if let Some(why) = &s.failed {
        out.push_str(&format!("REFUSING CHANGES: {why}\n"));
    }
    if let Some(r) = &stats.radius_events {
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        out.push_str(&format!(
            "RADIUS login events: received {}   applied {}   refused {}   dropped {}\n",
            n(&r["received"]),
            n(&r["applied"]),
            n(&r["refused"]),
            n(&r["dropped"]),
        ));
    }
    out
}

fn render_eps(eps: &[EpView]) -> String {
    let rows: Vec<Vec<String>> = eps
        .iter()
        .map(|e| {
            let quarantine = match (e.quarantine, e.quarantine_left_s) {
                (QuarantineState::None, _) => "-".to_owned(),
                (q, Some(left)) => format!(
                    "{} ({left}s left, timeout {}s)",
                    q.as_str(),
                    e.quarantine_timeout_s
                ),
                (q, None) => q.as_str().to_owned(),
            };
            vec![
                e.id.clone(),
                e.mode.as_str().to_owned(),
                e.domain.clone(),
                e.state.as_str().to_owned(),
                e.role.map_or("-", |r| r.as_str()).to_owned(),
                e.cascade_partner.clone().unwrap_or_else(|| "-".into()),
                format!("{}/{}", e.seq_acked, e.seq_sent),
                e.backlog.to_string(),
                e.counters.syncs.to_string(),
                quarantine,
                e.last_failure.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "EP",
            "Mode",
            "Domain",
            "State",
            "Role",
            "Partner",
            "Acked/Sent",
            "Backlog",
            "Syncs",
            "Quarantine",
            "Last failure",
        ],
        &rows,
    )
}

fn print_event(global: &GlobalArgs, event: &ReplicaEvent) {
    if global.json {
        let value = match event {
            ReplicaEvent::Welcome(w) => serde_json::json!({
                "event": "welcome", "session": w.session, "domain": w.domain,
                "mode": pb::Mode::try_from(w.mode).map(|m| m.as_str_name()).unwrap_or("?"),
                "failure_action": pb::FailureAction::try_from(w.failure_action).map(|m| m.as_str_name()).unwrap_or("?"),
                "keepalive_interval_ms": w.keepalive_interval_ms,
            }),
            ReplicaEvent::SyncBegin { subscribers } => {
                serde_json::json!({"event": "sync-begin", "subscribers": subscribers})
            }
            ReplicaEvent::SyncEnd { subscribers } => {
                serde_json::json!({"event": "sync-end", "subscribers": subscribers})
            }
            ReplicaEvent::Upsert(s) => {
                serde_json::json!({"event": "upsert", "subscriber": SubscriberView::from(s)})
            }
            ReplicaEvent::Remove(n) => serde_json::json!({"event": "remove", "name": n}),
            ReplicaEvent::VpnUpsert(v) => {
                serde_json::json!({"event": "vpn-upsert", "vpn": v})
            }
            ReplicaEvent::VpnRemove(n) => serde_json::json!({"event": "vpn-remove", "name": n}),
            ReplicaEvent::Pulled { request_id, result } => match result {
                Ok(s) => serde_json::json!({"event": "pulled", "request": request_id,
                    "subscriber": s.as_ref().map(SubscriberView::from)}),
                Err(e) => serde_json::json!({"event": "pulled", "request": request_id, "error": e}),
            },
            ReplicaEvent::KeepAlive => return,
        };
        println!("{value}");
        return;
    }
    match event {
        ReplicaEvent::Welcome(w) => println!(
            "welcome session={} domain={} mode={} failure-action={} keepalive={}ms",
            w.session,
            w.domain,
            pb::Mode::try_from(w.mode).map_or("?", |m| m.as_str_name()),
            pb::FailureAction::try_from(w.failure_action).map_or("?", |m| m.as_str_name()),
            w.keepalive_interval_ms
        ),
        ReplicaEvent::SyncBegin { subscribers } => println!("sync-begin subscribers={subscribers}"),
        ReplicaEvent::SyncEnd { subscribers } => println!("sync-end subscribers={subscribers}"),
        ReplicaEvent::Upsert(s) => println!(
            "upsert {} domain={} mappings={}",
            s.name.as_str(),
            s.domain,
            s.mappings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(";")
        ),
        ReplicaEvent::Remove(n) => println!("remove {n}"),
        ReplicaEvent::VpnUpsert(v) => println!("vpn-upsert {} domain={}", v.name, v.domain),
        ReplicaEvent::VpnRemove(n) => println!("vpn-remove {n}"),
        ReplicaEvent::Pulled { request_id, result } => match result {
            Ok(Some(s)) => println!("pulled #{request_id} -> {}", s.name.as_str()),
            Ok(None) => println!("pulled #{request_id} -> not found"),
            Err(e) => println!("pulled #{request_id} -> error: {e}"),
        },
        ReplicaEvent::KeepAlive => {}
    }
}

async fn ep_watch(global: &GlobalArgs, args: EpWatchArgs) -> anyhow::Result<()> {
    let role = match args.role {
        Some(CascadeRoleArg::Active) => pb::CascadeRole::Active,
        Some(CascadeRoleArg::Standby) => pb::CascadeRole::Standby,
        None => pb::CascadeRole::RoleUnspecified,
    };
    let reconnect = args
        .reconnect
        .as_deref()
        .map(|d| {
            crate::common::config::ConfigDuration::parse(d)
                .map(|d| d.0)
                .map_err(|e| anyhow!("--reconnect: {e}"))
        })
        .transpose()?;
    let mut options = EpClientOptions::new(args.grpc.clone(), args.id.clone()).role(role);
    options.link.ack = !args.no_ack;
    let mut replica = EpReplica::new();
    loop {
        let mut client = match EpClient::connect_with(options.clone(), replica).await {
            Ok(c) => c,
            Err(e) => match reconnect {
                Some(wait) => {
                    eprintln!("connect failed: {e}; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    replica = EpReplica::new();
                    continue;
                }
                None => return Err(e.into()),
            },
        };
        let mut pulls_sent = args.pull.is_empty();
        let mut pulls_waiting = 0usize;
        let mut synced = false;
        let ended = loop {
            let Some(event) = client.next_event().await else {
                break None;
            };
            match event {
                ClientEvent::Replica(e) => {
                    print_event(global, &e);
                    if let ReplicaEvent::Pulled { .. } = e {
                        pulls_waiting = pulls_waiting.saturating_sub(1);
                    }
                    if let ReplicaEvent::SyncEnd { .. } = e {
                        synced = true;
                        if !pulls_sent {
                            pulls_sent = true;
                            for address in &args.pull {
                                let (ip, vpn) = match address.rsplit_once('@') {
                                    Some((ip, vpn)) => (ip, Some(vpn)),
                                    None => (address.as_str(), None),
                                };
                                // The answer comes back as a `pulled` event, printed when read.
                                client.pull(ip, vpn).await?.ok();
                                pulls_waiting += 1;
                            }
                        }
                    }
                    if args.until_synced && synced && pulls_sent && pulls_waiting == 0 {
                        let held = client.replica().len();
                        if global.json {
                            println!(
                                "{}",
                                serde_json::json!({"event": "held", "subscribers": held})
                            );
                        } else {
                            println!("held {held} subscribers");
                        }
                        return Ok(());
                    }
                }
                ClientEvent::Ended { error, cleared } => break Some((error, cleared)),
            }
        };
        let (error, cleared) = ended.unwrap_or((ClientError::Stopped, false));
        if global.json {
            println!(
                "{}",
                serde_json::json!({"event": "ended", "error": error.to_string(), "cleared": cleared})
            );
        } else {
            println!(
                "ended: {error}{}",
                if cleared {
                    " (failure action: mappings cleared)"
                } else {
                    ""
                }
            );
        }
        replica = client.close();
        match reconnect {
            Some(wait) => tokio::time::sleep(wait).await,
            None => return Err(anyhow!("the EP connection ended: {error}")),
        }
    }
}

fn render_ha_status(s: &HaStatus) -> String {
    let mut out = match s.token {
        Some(token) => format!(
            "this node: {} ({}, fencing token {token})\n",
            s.node, s.role
        ),
        None => format!("this node: {} ({})\n", s.node, s.role),
    };
    match &s.leader {
        Some(l) if l.expires_in_ms > 0 => out.push_str(&format!(
            "leader: {} with fencing token {} (lease expires in {} ms)\n",
            l.node, l.token, l.expires_in_ms
        )),
        Some(l) => out.push_str(&format!(
            "leader: none (the lease of {} with fencing token {} expired {} ms ago)\n",
            l.node,
            l.token,
            l.expires_in_ms.saturating_neg()
        )),
        None => out.push_str("leader: none (the lease was never taken)\n"),
    }
    out.push_str(&format!("change log: head {}\n", s.change_log_head));
    if let Some(r) = &s.replica {
        out.push_str(&format!(
            "replica: position {} ({} entries behind, lag {} ms), {} subscribers\n",
            r.position, r.behind, r.lag_ms, r.subscribers
        ));
    }
    let f = &s.follower;
    out.push_str(&format!(
        "follower: {} full reads{}, {} entries applied ({} records)\n",
        f.full_loads,
        f.last_full_load
            .as_ref()
            .map(|why| format!(" (last: {why})"))
            .unwrap_or_default(),
        f.applied_batches,
        f.applied_records
    ));
    if let Some(a) = &s.activation {
        out.push_str(&format!(
            "last activation: token {} from the {} records at entry {} (tail {} entries, \
             {} subscribers; read {} ms, index {} ms); {} warm, {} full\n",
            a.token,
            if a.from == "warm" {
                "warm"
            } else {
                "fully read"
            },
            a.position,
            a.tail_batches,
            a.subscribers,
            a.read_ms,
            a.rebuild_ms,
            s.activations.warm,
            s.activations.full
        ));
    }
    out.push_str(&format!(
        "{:<20} {:<10} {:>6} {:<24} {:>10}\n",
        "NODE", "ROLE", "TOKEN", "GRPC", "SEEN"
    ));
    for n in &s.nodes {
        out.push_str(&format!(
            "{:<20} {:<10} {:>6} {:<24} {:>8}ms\n",
            n.node,
            n.role,
            if n.token == 0 {
                "-".to_owned()
            } else {
                n.token.to_string()
            },
            n.grpc,
            n.seen_ms_ago
        ));
    }
    out
}
