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
    /// Services: type, customer, state and counters, with their SAPs (`brasa show service
    /// [ID]`), or the MAC table of a VPLS (`brasa show service fdb ID`).
    Service(crate::cmd::service::ShowServiceArgs),
    /// A filter's entries with their hit counters (`brasa show filter ip|ipv6|mac ID`).
    Filter(crate::cmd::service::ShowFilterArgs),
    /// Host lockout contexts of the dynamic data services.
    #[command(subcommand)]
    SubscriberMgmt(crate::cmd::dynsvc::SubscriberMgmt),
    /// The debug logging in force (`brasa debug …`).
    Debug,
    /// Subscriber services as the data plane enforces them: services, PCC rules, policers
    /// and their state, per-rule counters, each service's volume by the counter rule.
    SubscriberServices(crate::cmd::pcc::ShowSubscriberServicesArgs),
    /// One PCC rule of a subscriber: flows, actions, policer parameters and state, counters.
    PccRule(crate::cmd::pcc::ShowPccRuleArgs),
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
    /// Per port: I/O mode (AF_PACKET, AF_XDP, TAP), receive queues and the worker serving
    /// each, XDP mode (native or generic), zero-copy or copy, and the frames lost on receipt
    /// (ring full, fill ring empty); why AF_XDP fell back to AF_PACKET, where it did.
    Ports,
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
        ShowCommand::Service(args) => crate::cmd::service::show(global, args).await,
        ShowCommand::Filter(args) => crate::cmd::service::show_filter(global, args).await,
        ShowCommand::SubscriberServices(args) => tokio::task::block_in_place(|| {
            crate::cmd::pcc::show_subscriber_services(global, &client, args)
        }),
        ShowCommand::PccRule(args) => {
            tokio::task::block_in_place(|| crate::cmd::pcc::show_pcc_rule(global, &client, args))
        }
        ShowCommand::Debug => {
            tokio::task::block_in_place(|| crate::cmd::dynsvc::show_debug(global))
        }
        ShowCommand::SubscriberMgmt(command) => tokio::task::block_in_place(|| {
            crate::cmd::dynsvc::show_subscriber_mgmt(global, command)
        }),
        ShowCommand::Dataplane(ShowDataplane::Statistics) => {
            crate::cmd::cafe::run(global, crate::cmd::cafe::CafeCommand::Stats).await
        }
        ShowCommand::Dataplane(ShowDataplane::Ports) => {
            let client = Client::new(global.api_url(crate::daemon::dataplane::DEFAULT_API));
            let ports: Vec<crate::daemon::dataplane::PortView> =
                tokio::task::block_in_place(|| client.get("/api/v1/dataplane/ports"))?;
            if global.json {
                return print_json(&ports);
            }
            print!("{}", render_ports(&ports));
            Ok(())
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

fn render_ports(ports: &[crate::daemon::dataplane::PortView]) -> String {
    use brasa_dataplane::io::worker::IoKind;
    use brasa_dataplane::io::xdp::XdpMode;
    let rows: Vec<Vec<String>> = ports
        .iter()
        .map(|p| {
            let io = match p.info.io {
                IoKind::AfPacket => "af_packet",
                IoKind::AfXdp => "af_xdp",
                IoKind::Tap => "tap",
            };
            let queues = if p.info.queues.is_empty() {
                "-".to_string()
            } else {
                p.info
                    .queues
                    .iter()
                    .map(|(queue, worker)| format!("{queue}:w{worker}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let xdp = match p.info.xdp_mode {
                Some(XdpMode::Native) => "native",
                Some(XdpMode::Generic) => "generic",
                None => "-",
            };
            let copy = match p.info.zero_copy {
                Some(true) => "zero-copy",
                Some(false) => "copy",
                None => "-",
            };
            vec![
                p.info.id.to_string(),
                p.info.name.clone(),
                io.to_string(),
                queues,
                xdp.to_string(),
                copy.to_string(),
                p.rx_packets.to_string(),
                p.rx_dropped.to_string(),
                p.rx_fill_empty.to_string(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "Id",
            "Port",
            "I/O",
            "Queues (queue:worker)",
            "XDP",
            "Mode",
            "RX",
            "RX dropped",
            "Fill empty",
        ],
        &rows,
    );
    for port in ports {
        if let Some(reason) = &port.info.fallback {
            out.push_str(&format!(
                "{}: AF_XDP unavailable, using AF_PACKET: {reason}\n",
                port.info.name
            ));
        }
    }
    out
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
                    s.cache_failures.to_string(),
                    s.failed_dropped.to_string(),
                    s.failed_passed.to_string(),
                    s.overload.to_string(),
                    format!("{mean}"),
                    s.max_run_time_us.to_string(),
                    s.action_on_fail.as_str().into(),
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
                "cache-fail",
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
                    c.mcs_peer
                        .map_or_else(|| "-".into(), |peer| peer.to_string()),
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
                .map(|(reason, n)| format!("{}={n}", reason.as_str()))
                .collect();
            if !reasons.is_empty() {
                out.push_str(&format!(
                    "refused saves of {}: {}\n",
                    cache.policy,
                    reasons.join(", ")
                ));
            }
        }
        if let Some(sync) = &caches.sync {
            out.push_str(&render_sync(sync));
        }
    }
    if let Some(redis) = &stats.redis {
        out.push_str(&render_redis(redis));
    }
    out
}

/// The caches kept in Redis: the shared entry count, and this node's traffic and failures.
fn render_redis(redis: &brasa_cache_redis::RedisCachesStats) -> String {
    let state = match &redis.last_error {
        _ if redis.connected => "connected".to_string(),
        Some(error) => format!("not connected: {error}"),
        None => "not connected".to_string(),
    };
    let mut out = format!(
        "
Python policy caches in Redis ({}, {state})
",
        redis.target
    );
    let rows: Vec<Vec<String>> = redis
        .caches
        .iter()
        .map(|c| {
            vec![
                c.policy.clone(),
                c.entries.map_or_else(|| "?".into(), |n| n.to_string()),
                c.saves.to_string(),
                c.hits.to_string(),
                c.misses.to_string(),
                c.clears.to_string(),
                c.refused.values().sum::<u64>().to_string(),
                c.backend_failures.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "policy", "entries", "saves", "hits", "misses", "cleared", "refused", "failures",
        ],
        &rows,
    ));
    out
}

/// Both directions of every multi-chassis link: what this node sends (outbound) and applies
/// (inbound), and why a link is not synchronised.
fn render_sync(sync: &brasa_cache::sync::SyncStatus) -> String {
    let mut out = format!("\nMulti-chassis peers (node {})\n", sync.node_id);
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for peer in &sync.peers {
        let (o, i) = (&peer.outbound, &peer.inbound);
        let node = |id: Option<u32>| id.map_or("-".to_string(), |id| id.to_string());
        rows.push(vec![
            peer.address.to_string(),
            "outbound".into(),
            o.state.to_string(),
            node(o.peer_node_id),
            peer.sync_tags.join(","),
            o.peer_sync_tags.join(","),
            o.counters.sessions.to_string(),
            (o.counters.resync_events + o.counters.events_sent).to_string(),
            o.counters.peer_applied.to_string(),
            o.counters.overflows.to_string(),
            o.counters.auth_failures.to_string(),
            o.counters.tag_mismatches.to_string(),
        ]);
        rows.push(vec![
            peer.address.to_string(),
            "inbound".into(),
            i.state.to_string(),
            node(i.peer_node_id),
            peer.sync_tags.join(","),
            i.peer_sync_tags.join(","),
            i.counters.sessions.to_string(),
            (i.counters.applied + i.counters.stale + i.counters.refused_events).to_string(),
            i.counters.applied.to_string(),
            "-".into(),
            i.counters.auth_failures.to_string(),
            i.counters.tag_mismatches.to_string(),
        ]);
        for (direction, error) in [("outbound", &o.last_error), ("inbound", &i.last_error)] {
            if let Some(error) = error {
                errors.push(format!(
                    "last error of {} {direction}: {error}\n",
                    peer.address
                ));
            }
        }
    }
    out.push_str(&table(
        &[
            "peer",
            "direction",
            "state",
            "peer-node",
            "tags",
            "peer-tags",
            "sessions",
            "events",
            "applied",
            "overflows",
            "auth-failed",
            "tag-mismatch",
        ],
        &rows,
    ));
    out.extend(errors);
    if sync.unknown_peer_streams > 0 {
        out.push_str(&format!(
            "streams refused from addresses that are no mcs-peer: {} (last from {})\n",
            sync.unknown_peer_streams,
            sync.last_unknown_peer
                .map_or("-".to_string(), |address| address.to_string())
        ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use brasa_cache::sync::{
        InboundStatus, LinkState, OutboundCounters, OutboundStatus, PeerStatus, SyncStatus,
    };

    #[test]
    fn a_refused_peer_link_says_why_in_both_directions() {
        let mismatch =
            "sync tags differ: only here [\"bng-pair\"], only on the peer [\"bng-pear\"]";
        let sync = SyncStatus {
            node_id: 1,
            unknown_peer_streams: 2,
            last_unknown_peer: Some("127.0.0.9".parse().unwrap()),
            peers: vec![PeerStatus {
                address: "127.0.0.2".parse().unwrap(),
                sync_tags: vec!["bng-pair".into()],
                outbound: OutboundStatus {
                    state: LinkState::TagMismatch,
                    peer_node_id: Some(2),
                    peer_sync_tags: vec!["bng-pear".into()],
                    queued: 0,
                    in_flight: 0,
                    counters: OutboundCounters {
                        tag_mismatches: 3,
                        ..OutboundCounters::default()
                    },
                    last_error: Some(mismatch.into()),
                },
                inbound: InboundStatus {
                    state: LinkState::TagMismatch,
                    peer_node_id: Some(2),
                    peer_sync_tags: vec!["bng-pear".into()],
                    counters: Default::default(),
                    last_error: Some(mismatch.into()),
                },
            }],
        };
        let text = render_sync(&sync);
        let outbound = text
            .lines()
            .find(|l| l.contains("outbound") && l.starts_with("127.0.0.2"))
            .unwrap();
        let columns: Vec<&str> = outbound.split_whitespace().collect();
        assert_eq!(
            &columns[..6],
            [
                "127.0.0.2",
                "outbound",
                "tag-mismatch",
                "2",
                "bng-pair",
                "bng-pear"
            ]
        );
        assert_eq!(columns.last(), Some(&"3"));
        assert!(text.contains(&format!("last error of 127.0.0.2 inbound: {mismatch}")));
        assert!(text.contains("addresses that are no mcs-peer: 2 (last from 127.0.0.9)"));
    }
}
