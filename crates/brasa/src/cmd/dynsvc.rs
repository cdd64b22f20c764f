//! The dynamic data services' operator commands (Nokia SR OS dynamic data services):
//! `show service dynamic-services …`, `clear service dynamic-services …`,
//! `show|clear subscriber-mgmt host-lockout-policy …`, `tools dump service dynamic-services
//! command-list`, `tools perform service dynamic-services evaluate-script …`,
//! `debug service dynamic-services [no] capture-sap …` and `show debug`.

use crate::common::api::{encode_component, Client};
use crate::common::output::{print_json, table};
use crate::common::GlobalArgs;
use crate::daemon::dynsvc::api::{
    CaptureStatsView, CommandView, DebugView, EvaluateRequest, EvaluateView, LockoutView,
    TriggerView,
};

/// `… service dynamic-services …` of `brasa show`.
#[derive(clap::Subcommand, Debug)]
pub enum ShowDynamicServices {
    /// Every data trigger: SAP, capture SAP, MAC, IP, state, Acct-Session-Id, services.
    DataTriggers,
    /// A capture SAP's data trigger statistics (`capture-sap SAP statistics`).
    CaptureSap {
        /// The capture SAP (`eth1:*.*`).
        sap: String,
        #[command(subcommand)]
        what: CaptureSapWhat,
    },
}

/// What of a capture SAP.
#[derive(clap::Subcommand, Debug)]
pub enum CaptureSapWhat {
    /// CPM Ingress, Forwarding Engine Stats Dropped and the drop reasons.
    Statistics,
}

/// `… service dynamic-services …` of `brasa clear`.
#[derive(clap::Subcommand, Debug)]
pub enum ClearDynamicServices {
    /// Remove a data trigger with every dynamic service it owns (`data-trigger sap SAP`).
    DataTrigger {
        /// `sap`.
        #[arg(value_parser = ["sap"])]
        keyword: String,
        /// The data trigger SAP.
        sap: String,
    },
    /// Zero a capture SAP's data trigger statistics (`capture-sap SAP statistics`).
    CaptureSap {
        /// The capture SAP.
        sap: String,
        #[command(subcommand)]
        what: CaptureSapWhat,
    },
}

/// `brasa show|clear subscriber-mgmt …`
#[derive(clap::Subcommand, Debug)]
pub enum SubscriberMgmt {
    /// A host-lockout-policy's contexts (`host-lockout-policy NAME all [sap SAP]`).
    HostLockoutPolicy {
        /// The policy.
        name: String,
        /// `all`.
        #[arg(value_parser = ["all"])]
        all: String,
        /// `sap`, then the capture SAP, to show only its contexts.
        #[arg(num_args = 2, value_names = ["sap", "SAP"])]
        sap: Option<Vec<String>>,
    },
}

/// `brasa tools dump service dynamic-services command-list`.
#[derive(clap::Subcommand, Debug)]
pub enum DumpDynamicServices {
    /// Every dynamic service with its trigger, policy, function key, kept dictionary and the
    /// CLI its script applied.
    CommandList,
}

/// `brasa tools perform service dynamic-services …`
#[derive(clap::Subcommand, Debug)]
pub enum PerformDynamicServices {
    /// Run a script action of a dynamic service of the data trigger whose Acct-Session-Id is
    /// the control session, and apply it
    /// (`evaluate-script sap SAP control-session ACCT-SESSION-ID action setup|modify|teardown`).
    ///
    /// teardown removes the service; on the data trigger's own SAP it removes the trigger and
    /// every service it owns (its next frame triggers again). setup adds a new service to the
    /// trigger with --params. modify runs only with --dry-run (a real one comes as a CoA).
    EvaluateScript {
        /// `sap`.
        #[arg(value_parser = ["sap"])]
        sap_keyword: String,
        /// The dynamic service SAP.
        sap: String,
        /// `control-session`.
        #[arg(value_parser = ["control-session"])]
        session_keyword: String,
        /// The Acct-Session-Id of the service's data trigger.
        control_session: String,
        /// `action`.
        #[arg(value_parser = ["action"])]
        action_keyword: String,
        /// The script function to run.
        #[arg(value_parser = ["setup", "modify", "teardown"])]
        action: String,
        /// Script parameters of a setup (Alc-Dyn-Serv-Script-Params).
        #[arg(long)]
        params: Option<String>,
        /// The dynamic-services-policy of a setup (default: the data trigger's).
        #[arg(long)]
        policy: Option<String>,
        /// Run the script of an existing service with its stored parameters and show the CLI
        /// it generates, applying nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `brasa debug …`: debug logging of a running daemon, changed without a restart.
#[derive(clap::Subcommand, Debug)]
pub enum DebugCommand {
    /// `debug service …`
    #[command(subcommand)]
    Service(DebugService),
}

/// `brasa debug service …`
#[derive(clap::Subcommand, Debug)]
pub enum DebugService {
    /// Data trigger events of capture SAPs (`tracing` target `brasa::dynsvc::debug`, info).
    #[command(subcommand)]
    DynamicServices(DebugDynamicServices),
}

/// `brasa debug service dynamic-services …`
#[derive(clap::Subcommand, Debug)]
pub enum DebugDynamicServices {
    /// Log the data trigger events of a capture SAP
    /// (`capture-sap SAP [encap-val QTAG[.QTAG]] [mode all|dropped-only]`).
    ///
    /// A SAP may have several, one per encap-val; the same encap-val again replaces its mode.
    CaptureSap {
        /// The capture SAP (`eth1:*.*`).
        sap: String,
        /// `encap-val QTAG[.QTAG]` (only the triggers of that encapsulation, or of that outer
        /// tag) and `mode all|dropped-only` (default all), in any order.
        #[arg(num_args = 0..=4, value_names = ["KEYWORD", "VALUE"])]
        options: Vec<String>,
    },
    /// Stop logging (`no capture-sap SAP [encap-val QTAG[.QTAG]]`; without encap-val, every
    /// filter of the SAP).
    #[command(subcommand)]
    No(NoDebugDynamicServices),
}

/// `brasa debug service dynamic-services no …`
#[derive(clap::Subcommand, Debug)]
pub enum NoDebugDynamicServices {
    /// `no capture-sap SAP [encap-val QTAG[.QTAG]]`.
    CaptureSap {
        /// The capture SAP.
        sap: String,
        /// `encap-val QTAG[.QTAG]`.
        #[arg(num_args = 0..=2, value_names = ["encap-val", "QTAG[.QTAG]"])]
        options: Vec<String>,
    },
}

/// Reads `KEYWORD VALUE` pairs of `allowed` keywords, each at most once.
fn keyword_values<'a>(
    options: &'a [String],
    allowed: &[&str],
) -> anyhow::Result<std::collections::BTreeMap<&'a str, &'a str>> {
    let mut found = std::collections::BTreeMap::new();
    let mut words = options.iter();
    while let Some(keyword) = words.next() {
        if !allowed.contains(&keyword.as_str()) {
            anyhow::bail!("unexpected {keyword:?}: expected {}", allowed.join(" or "));
        }
        let Some(value) = words.next() else {
            anyhow::bail!("{keyword} needs a value");
        };
        if found.insert(keyword.as_str(), value.as_str()).is_some() {
            anyhow::bail!("{keyword} given twice");
        }
    }
    Ok(found)
}

/// `brasa debug …`
pub fn debug(global: &GlobalArgs, command: DebugCommand) -> anyhow::Result<()> {
    let DebugCommand::Service(DebugService::DynamicServices(command)) = command;
    let (path, request) = match &command {
        DebugDynamicServices::CaptureSap { sap, options } => {
            let values = keyword_values(options, &["encap-val", "mode"])?;
            (
                "/api/v1/dynsvc/debug",
                DebugView {
                    capture_sap: sap.clone(),
                    encap_val: values.get("encap-val").map(|v| v.to_string()),
                    mode: values.get("mode").map(|v| v.to_string()),
                },
            )
        }
        DebugDynamicServices::No(NoDebugDynamicServices::CaptureSap { sap, options }) => {
            let values = keyword_values(options, &["encap-val"])?;
            (
                "/api/v1/dynsvc/debug/remove",
                DebugView {
                    capture_sap: sap.clone(),
                    encap_val: values.get("encap-val").map(|v| v.to_string()),
                    mode: None,
                },
            )
        }
    };
    let filters: Vec<DebugView> = client(global).post(path, &request)?;
    print_debug(global, &filters)
}

/// `brasa show debug`: the debug filters in force, in the SR OS `debug` configuration layout.
pub fn show_debug(global: &GlobalArgs) -> anyhow::Result<()> {
    let filters: Vec<DebugView> = client(global).get("/api/v1/dynsvc/debug")?;
    print_debug(global, &filters)
}

fn print_debug(global: &GlobalArgs, filters: &[DebugView]) -> anyhow::Result<()> {
    if global.json {
        return print_json(&filters);
    }
    println!("debug\n    service\n        dynamic-services");
    for filter in filters {
        let mut line = format!("            capture-sap {}", filter.capture_sap);
        if let Some(val) = &filter.encap_val {
            line.push_str(&format!(" encap-val {val}"));
        }
        line.push_str(&format!(
            " mode {}",
            filter.mode.as_deref().unwrap_or("all")
        ));
        println!("{line}");
    }
    println!("        exit\n    exit\nexit");
    Ok(())
}

fn client(global: &GlobalArgs) -> Client {
    Client::new(global.api_url(crate::cmd::show::DEFAULT_API))
}

fn sap_query(sap: &str) -> String {
    format!("?sap={}", encode_component(sap))
}

fn lockout_sap(sap: Option<Vec<String>>) -> anyhow::Result<String> {
    match sap.as_deref() {
        None => Ok(String::new()),
        Some([keyword, sap]) if keyword == "sap" => Ok(sap_query(sap)),
        Some(_) => anyhow::bail!("expected `sap SAP`"),
    }
}

/// `brasa show service dynamic-services …`
pub fn show(global: &GlobalArgs, command: ShowDynamicServices) -> anyhow::Result<()> {
    let client = client(global);
    match command {
        ShowDynamicServices::DataTriggers => {
            let triggers: Vec<TriggerView> = client.get("/api/v1/dynsvc/data-triggers")?;
            if global.json {
                return print_json(&triggers);
            }
            let rows: Vec<Vec<String>> = triggers
                .iter()
                .map(|t| {
                    vec![
                        t.sap.clone(),
                        t.capture_sap.clone(),
                        t.mac.clone(),
                        t.ip.clone().unwrap_or_else(|| "N/A".into()),
                        t.state.clone(),
                        t.acct_session_id.clone(),
                        t.services.len().to_string(),
                    ]
                })
                .collect();
            println!("Data triggers");
            print!(
                "{}",
                table(
                    &[
                        "Data Trigger SAP",
                        "Capture SAP",
                        "MAC",
                        "IP",
                        "State",
                        "Acct-Session-Id",
                        "Services"
                    ],
                    &rows
                )
            );
            println!("Number of data-triggers : {}", triggers.len());
            Ok(())
        }
        ShowDynamicServices::CaptureSap {
            sap,
            what: CaptureSapWhat::Statistics,
        } => {
            let stats: CaptureStatsView = client.get(&format!(
                "/api/v1/dynsvc/capture-sap/statistics{}",
                sap_query(&sap)
            ))?;
            if global.json {
                return print_json(&stats);
            }
            // The layouts of the guide's Table 2 (sap-stats) and Table 3.
            println!("Dynamic Services Capture SAP {} Statistics", stats.sap);
            println!("{:<24}{:<24}Octets", "", "Packets");
            let [packets, octets] = stats.cpm_ingress;
            println!("{:<22}: {packets:<24}{octets}", "CPM Ingress");
            println!("Forwarding Engine Stats");
            let [packets, octets] = stats.forwarding_engine_dropped;
            println!("{:<22}: {packets:<24}{octets}", "Dropped");
            println!("{:<59}: {}", "Data packets received by SAP", stats.received);
            println!("Drop Reason Counters");
            for (label, count) in &stats.dropped {
                println!("{label:<59}: {count}");
            }
            Ok(())
        }
    }
}

/// `brasa clear service dynamic-services …`
pub fn clear(global: &GlobalArgs, command: ClearDynamicServices) -> anyhow::Result<()> {
    let client = client(global);
    let (path, done) = match command {
        ClearDynamicServices::DataTrigger { sap, .. } => (
            format!("/api/v1/dynsvc/data-triggers/clear{}", sap_query(&sap)),
            format!("cleared data trigger {sap}"),
        ),
        ClearDynamicServices::CaptureSap {
            sap,
            what: CaptureSapWhat::Statistics,
        } => (
            format!(
                "/api/v1/dynsvc/capture-sap/clear-statistics{}",
                sap_query(&sap)
            ),
            format!("cleared the data trigger statistics of {sap}"),
        ),
    };
    let answer: serde_json::Value = client.post(&path, &serde_json::json!({}))?;
    if global.json {
        return print_json(&answer);
    }
    println!("{done}");
    Ok(())
}

/// `brasa show subscriber-mgmt …`
pub fn show_subscriber_mgmt(global: &GlobalArgs, command: SubscriberMgmt) -> anyhow::Result<()> {
    let SubscriberMgmt::HostLockoutPolicy { name, sap, .. } = command;
    let rows: Vec<LockoutView> = client(global).get(&format!(
        "/api/v1/dynsvc/host-lockout-policy/{}{}",
        encode_component(&name),
        lockout_sap(sap)?
    ))?;
    if global.json {
        return print_json(&rows);
    }
    println!("Host lockout policy {name}");
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.trigger_sap.clone(),
                r.capture_sap.clone(),
                if r.active { "yes" } else { "no" }.into(),
                r.lockouts.to_string(),
                format!("{}s", r.current_lock_time),
                format!("{}s", r.elapsed_lock_time),
                format!("{}s", r.next_lock_time),
                format!("{}s", r.elapsed_reset_time),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "Host key (SAP)",
                "Capture SAP",
                "Active",
                "Lockouts",
                "Lock time",
                "Elapsed",
                "Next lock",
                "Reset elapsed"
            ],
            &table_rows
        )
    );
    Ok(())
}

/// `brasa clear subscriber-mgmt …`
pub fn clear_subscriber_mgmt(global: &GlobalArgs, command: SubscriberMgmt) -> anyhow::Result<()> {
    let SubscriberMgmt::HostLockoutPolicy { name, sap, .. } = command;
    let answer: serde_json::Value = client(global).post(
        &format!(
            "/api/v1/dynsvc/host-lockout-policy/{}/clear{}",
            encode_component(&name),
            lockout_sap(sap)?
        ),
        &serde_json::json!({}),
    )?;
    if global.json {
        return print_json(&answer);
    }
    println!(
        "cleared {} lockout context(s) of {name}",
        answer["cleared"].as_u64().unwrap_or(0)
    );
    Ok(())
}

/// `brasa tools dump service dynamic-services …`
pub fn dump(global: &GlobalArgs, command: DumpDynamicServices) -> anyhow::Result<()> {
    let DumpDynamicServices::CommandList = command;
    let list: Vec<CommandView> = client(global).get("/api/v1/dynsvc/command-list")?;
    if global.json {
        return print_json(&list);
    }
    for c in &list {
        println!(
            "SAP {}  (data trigger {}, policy {}, function key {})",
            c.sap, c.trigger, c.policy, c.function_key
        );
        println!("  kept: {}", c.dictionary);
        for line in c.cli.lines().filter(|line| !line.trim().is_empty()) {
            println!("  {line}");
        }
    }
    println!("Number of dynamic services : {}", list.len());
    Ok(())
}

/// `brasa tools perform service dynamic-services …`
pub fn perform(global: &GlobalArgs, command: PerformDynamicServices) -> anyhow::Result<()> {
    let PerformDynamicServices::EvaluateScript {
        sap,
        control_session,
        action,
        params,
        policy,
        dry_run,
        ..
    } = command;
    let view: EvaluateView = client(global).post(
        "/api/v1/dynsvc/evaluate-script",
        &EvaluateRequest {
            sap,
            control_session,
            action,
            params,
            policy,
            dry_run,
        },
    )?;
    if global.json {
        return print_json(&view);
    }
    if view.applied {
        println!(
            "Performed the {} script action of {}",
            view.action, view.sap
        );
        for sap in &view.created {
            println!("  created dynamic service SAP {sap}");
        }
        for sap in &view.modified {
            println!("  modified dynamic service SAP {sap}");
        }
        for sap in &view.removed {
            println!("  removed dynamic service SAP {sap}");
        }
        return Ok(());
    }
    println!(
        "Evaluation of the {} script action of dynamic service SAP {} (not applied)",
        view.action, view.sap
    );
    if let Some(failure) = &view.failure {
        println!("Script failed: {failure}");
    }
    for line in view.output.lines() {
        println!("  output: {line}");
    }
    println!("Generated CLI:");
    for line in view.cli.lines().filter(|line| !line.trim().is_empty()) {
        println!("  {line}");
    }
    if let Some(dictionary) = &view.dictionary {
        println!("Kept: {dictionary}");
    }
    Ok(())
}
