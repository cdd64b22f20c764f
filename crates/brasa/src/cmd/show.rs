//! `brasa show …`: state and statistics of a running daemon.

use crate::common::api::Client;
use crate::common::output::{print_json, table};
use crate::common::GlobalArgs;
use brasa_aaa::StatsSnapshot;

/// Default management API of `brasa run`.
pub const DEFAULT_API: &str = "http://127.0.0.1:7780";

/// What to show.
#[derive(clap::Subcommand, Debug)]
pub enum ShowCommand {
    /// RADIUS component.
    #[command(subcommand)]
    Radius(ShowRadius),
    /// Data plane (`brasa dataplane`, default API 127.0.0.1:7781).
    #[command(subcommand)]
    Dataplane(ShowDataplane),
    /// Python scripts and python-policy caches.
    #[command(subcommand)]
    Python(ShowPython),
}

/// `brasa show python …`
#[derive(clap::Subcommand, Debug)]
pub enum ShowPython {
    /// Per script: runs, failures by kind, action-on-fail outcomes, overload, run time; per
    /// cache: entries, bytes, saves, hits, misses, expirations, refusals by reason, journal and
    /// multi-chassis peer state.
    Statistics,
}

/// `brasa show dataplane …`
#[derive(clap::Subcommand, Debug)]
pub enum ShowDataplane {
    /// Per-interface counters, drops by reason, filters, decapsulated and expired streams
    /// (the same as `brasa cafe stats`).
    Statistics,
}

/// `brasa show radius …`
#[derive(clap::Subcommand, Debug)]
pub enum ShowRadius {
    /// Per-client and per-upstream-server counters (requests, accepts, rejects, timeouts,
    /// retransmissions, malformed, unknown client, bad authenticator).
    Statistics,
}

pub async fn run(global: &GlobalArgs, command: ShowCommand) -> anyhow::Result<()> {
    let client = Client::new(global.api_url(DEFAULT_API));
    match command {
        ShowCommand::Dataplane(ShowDataplane::Statistics) => {
            crate::cmd::cafe::run(global, crate::cmd::cafe::CafeCommand::Stats).await
        }
        ShowCommand::Python(ShowPython::Statistics) => {
            let stats: crate::daemon::python_api::PythonStatistics =
                tokio::task::block_in_place(|| client.get("/api/v1/python/statistics"))?;
            if global.json {
                return print_json(&stats);
            }
            print!("{}", render_python(&stats));
            Ok(())
        }
        ShowCommand::Radius(ShowRadius::Statistics) => {
            let stats: StatsSnapshot =
                tokio::task::block_in_place(|| client.get("/api/v1/radius/statistics"))?;
            if global.json {
                return print_json(&stats);
            }
            print!("{}", render_statistics(&stats));
            Ok(())
        }
    }
}

fn render_python(stats: &crate::daemon::python_api::PythonStatistics) -> String {
    let mut out = String::new();
    if let Some(worker) = &stats.worker {
        out.push_str(&format!(
            "Python scripts (queued {} of {})\n",
            worker.queued, worker.queue_capacity
        ));
        let rows: Vec<Vec<String>> = worker
            .scripts
            .iter()
            .map(|s| {
                let mean = s.run_time_us.checked_div(s.runs).unwrap_or(0);
                vec![
                    s.name.clone(),
                    s.runs.to_string(),
                    s.completed.to_string(),
                    s.dropped_by_script.to_string(),
                    s.exceptions.to_string(),
                    s.timeouts.to_string(),
                    s.failed_dropped.to_string(),
                    s.failed_passed.to_string(),
                    s.overload.to_string(),
                    format!("{mean}"),
                    s.max_run_time_us.to_string(),
                    s.action_on_fail.clone(),
                    if s.debug { "on".into() } else { "off".into() },
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "script",
                "runs",
                "ok",
                "dropped",
                "exceptions",
                "timeouts",
                "fail-drop",
                "fail-pass",
                "overload",
                "mean-us",
                "max-us",
                "on-fail",
                "debug",
            ],
            &rows,
        ));
        for script in worker.scripts.iter().filter(|s| s.last_error.is_some()) {
            out.push_str(&format!(
                "last error of {}: {}\n",
                script.name,
                script.last_error.as_deref().unwrap_or_default()
            ));
        }
    }
    if let Some(caches) = &stats.caches {
        out.push_str(&format!(
            "\nPython policy caches (node {}, memory {} of {} bytes)\n",
            caches.node_id, caches.global_memory_used, caches.global_memory_limit
        ));
        let rows: Vec<Vec<String>> = caches
            .caches
            .iter()
            .map(|c| {
                let refused: u64 = c.refused.values().sum();
                vec![
                    c.policy.clone(),
                    c.entries.to_string(),
                    c.bytes.to_string(),
                    c.saves.to_string(),
                    c.hits.to_string(),
                    c.misses.to_string(),
                    c.expirations.to_string(),
                    c.clears.to_string(),
                    refused.to_string(),
                    if c.persistence {
                        format!("{} B", c.journal_bytes)
                    } else {
                        "off".into()
                    },
                    c.mcs_peer.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "policy", "entries", "bytes", "saves", "hits", "misses", "expired", "cleared",
                "refused", "journal", "mcs-peer",
            ],
            &rows,
        ));
        for cache in &caches.caches {
            let reasons: Vec<String> = cache
                .refused
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(reason, n)| format!("{reason}={n}"))
                .collect();
            if !reasons.is_empty() {
                out.push_str(&format!(
                    "refused saves of {}: {}\n",
                    cache.policy,
                    reasons.join(", ")
                ));
            }
        }
        if !caches.peers.is_empty() {
            out.push_str("\nMulti-chassis peers\n");
            let rows: Vec<Vec<String>> = caches
                .peers
                .iter()
                .map(|p| {
                    vec![
                        p.address.clone(),
                        p.state.clone(),
                        p.sync_tags.join(","),
                        p.sessions.to_string(),
                        p.resync_events.to_string(),
                        p.events_sent.to_string(),
                        p.overflows.to_string(),
                        p.last_error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            out.push_str(&table(
                &[
                    "peer",
                    "state",
                    "tags",
                    "sessions",
                    "resync-events",
                    "sent",
                    "overflows",
                    "last-error",
                ],
                &rows,
            ));
            out.push_str(&format!(
                "inbound: {} streams active, {} applied, {} stale, {} refused streams\n",
                caches.inbound.active,
                caches.inbound.applied,
                caches.inbound.stale,
                caches.inbound.refused
            ));
        }
    }
    out
}

fn render_statistics(stats: &StatsSnapshot) -> String {
    let mut out = String::new();
    out.push_str("RADIUS clients\n");
    let rows: Vec<Vec<String>> = stats
        .clients
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.requests.to_string(),
                c.accepts.to_string(),
                c.rejects.to_string(),
                c.challenges.to_string(),
                c.accounting_responses.to_string(),
                c.retransmissions.to_string(),
                c.malformed.to_string(),
                c.bad_authenticator.to_string(),
                c.dropped_by_policy.to_string(),
                c.unanswered.to_string(),
                c.coa_relayed.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "Client",
            "Requests",
            "Accepts",
            "Rejects",
            "Challenges",
            "Acct-Resp",
            "Retrans",
            "Malformed",
            "Bad-Auth",
            "Policy-Drop",
            "Unanswered",
            "CoA",
        ],
        &rows,
    ));
    if !stats.upstreams.is_empty() {
        out.push_str("\nUpstream servers\n");
        let rows: Vec<Vec<String>> = stats
            .upstreams
            .iter()
            .map(|u| {
                vec![
                    u.pool.clone(),
                    u.name.clone(),
                    u.address.clone(),
                    u.state.clone(),
                    u.requests.to_string(),
                    u.accepts.to_string(),
                    u.rejects.to_string(),
                    u.accounting_responses.to_string(),
                    u.timeouts.to_string(),
                    u.retransmissions.to_string(),
                    u.malformed.to_string(),
                    u.bad_authenticator.to_string(),
                    u.in_flight.to_string(),
                    format!("{:.2}", u.rtt_us as f64 / 1000.0),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "Pool",
                "Server",
                "Address",
                "State",
                "Requests",
                "Accepts",
                "Rejects",
                "Acct-Resp",
                "Timeouts",
                "Retrans",
                "Malformed",
                "Bad-Auth",
                "In-Flight",
                "RTT-ms",
            ],
            &rows,
        ));
    }
    out.push_str(&format!(
        "\nUnknown client: {}   CoA unroutable: {}   Sessions: {}   Duplicate cache: {}\n",
        stats.unknown_client, stats.coa_unroutable, stats.sessions, stats.duplicate_cache_entries
    ));
    out
}
