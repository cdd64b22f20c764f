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
