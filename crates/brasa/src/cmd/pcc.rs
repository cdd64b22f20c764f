//! `brasa show subscriber-services` and `brasa show pcc-rule`: the subscribers' services as
//! the data plane of `brasa run` enforces them (`[dataplane.subscribers]`).

use crate::common::api::Client;
use crate::common::output::{print_json, table};
use crate::common::GlobalArgs;
use crate::daemon::pcc::api::{RuleView, StatusView, SubscriberView};

/// `brasa show subscriber-services [SUBSCRIBER]`
#[derive(clap::Args, Debug)]
pub struct ShowSubscriberServicesArgs {
    /// One subscriber (its services, rules, policers and counters); without it, the
    /// enforcement point's state and every subscriber's services.
    pub subscriber: Option<String>,
}

/// `brasa show pcc-rule SUBSCRIBER RULE`
#[derive(clap::Args, Debug)]
pub struct ShowPccRuleArgs {
    /// The subscriber.
    pub subscriber: String,
    /// The rule: its name, or `SERVICE/RULE`.
    pub rule: String,
}

/// A path segment with everything but unreserved characters percent-encoded.
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `brasa show subscriber-services`.
pub fn show_subscriber_services(
    global: &GlobalArgs,
    client: &Client,
    args: ShowSubscriberServicesArgs,
) -> anyhow::Result<()> {
    match args.subscriber {
        Some(name) => {
            let view: SubscriberView =
                client.get(&format!("/api/v1/pcc/subscribers/{}", segment(&name)))?;
            if global.json {
                return print_json(&view);
            }
            print!("{}", render_subscriber(&view));
        }
        None => {
            let status: StatusView = client.get("/api/v1/pcc/status")?;
            let all: Vec<SubscriberView> = client.get("/api/v1/pcc/subscribers")?;
            if global.json {
                return print_json(&serde_json::json!({"status": status, "subscribers": all}));
            }
            print!("{}", render_status(&status));
            for view in &all {
                println!();
                print!("{}", render_subscriber(view));
            }
        }
    }
    Ok(())
}

/// `brasa show pcc-rule`.
pub fn show_pcc_rule(
    global: &GlobalArgs,
    client: &Client,
    args: ShowPccRuleArgs,
) -> anyhow::Result<()> {
    let view: RuleView = client.get(&format!(
        "/api/v1/pcc/subscribers/{}/rules/{}",
        segment(&args.subscriber),
        args.rule
            .split('/')
            .map(segment)
            .collect::<Vec<_>>()
            .join("/")
    ))?;
    if global.json {
        return print_json(&view);
    }
    print!("{}", render_rule(&view));
    Ok(())
}

fn render_status(s: &StatusView) -> String {
    let mut out = format!(
        "enforcement point {} — {} (SM {}; connections {})\nsubscribers {}, PCC rules {}, full syncs {}\n",
        s.ep_id,
        if s.connected {
            "connected"
        } else {
            "not connected"
        },
        s.sm.join(", "),
        s.connects,
        s.subscribers,
        s.rules,
        s.syncs
    );
    let packets: Vec<String> = s.packets.iter().map(|(k, v)| format!("{k} {v}")).collect();
    out.push_str(&format!("packets: {}\n", packets.join(", ")));
    out.push_str(&format!(
        "refused: services {}, subscribers {}; accounting requests sent {}, failed {}, dropped {}; \
         Stops after a crash {}, journal errors {}\n",
        s.compile_refused,
        s.install_refused,
        s.acct_sent,
        s.acct_failed,
        s.acct_dropped,
        s.acct_recovered,
        s.acct_journal_errors
    ));
    out
}

fn render_subscriber(v: &SubscriberView) -> String {
    let mut out = format!(
        "subscriber {} (session {}) addresses {}\nforwarded: ingress {} packets {} octets, egress {} packets {} octets\n",
        v.subscriber,
        v.session,
        if v.addresses.is_empty() { "-".to_string() } else { v.addresses.join(", ") },
        v.forwarded.ingress.packets,
        v.forwarded.ingress.octets,
        v.forwarded.egress.packets,
        v.forwarded.egress.octets,
    );
    if !v.unplaced_vpns.is_empty() {
        out.push_str(&format!(
            "not enforced: its mappings in VPN {} (no VPRN holds them: [dataplane.subscribers.vpns])\n",
            v.unplaced_vpns.join(", ")
        ));
    }
    for s in &v.services {
        out.push_str(&format!(
            "service {} type {} acct {} interval {} session {} counters {}: in {} octets, out {} octets{}\n",
            s.name,
            s.service_type.as_deref().unwrap_or("-"),
            serde_json::to_value(s.acct_stats_type)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            s.acct_interval.map_or("-".to_string(), |i| format!("{i}s")),
            s.acct_session_id.as_deref().unwrap_or("-"),
            s.counter_rule,
            s.volume.ingress.octets,
            s.volume.egress.octets,
            s.refused
                .as_ref()
                .map_or(String::new(), |r| format!(" — REFUSED by the data plane: {r}")),
        ));
        let rows: Vec<Vec<String>> = s.rules.iter().map(rule_row).collect();
        out.push_str(&table(
            &[
                "Rule",
                "Dir",
                "Prec",
                "Flows",
                "Actions",
                "PIR/CIR kbps",
                "Fwd pkts",
                "Fwd octets",
                "Drop pkts",
            ],
            &rows,
        ));
    }
    out
}

fn rule_row(r: &RuleView) -> Vec<String> {
    let flows = serde_json::to_string(&r.rule.flows).unwrap_or_default();
    let actions = serde_json::to_string(&r.rule.actions).unwrap_or_default();
    vec![
        r.rule.name.clone(),
        r.rule.direction.to_string(),
        r.rule.precedence.map_or("-".to_string(), |p| p.to_string()),
        flows,
        actions,
        r.policer.map_or("-".to_string(), |p| {
            format!("{}/{}", p.pir_kbps, p.cir_kbps)
        }),
        r.forwarded.packets.to_string(),
        r.forwarded.octets.to_string(),
        r.dropped.packets.to_string(),
    ]
}

fn render_rule(r: &RuleView) -> String {
    let mut out = format!(
        "PCC rule {} of service {} (data plane {})\ndirection {}, precedence {}\n",
        r.rule.name,
        r.service,
        r.dataplane_name,
        r.rule.direction,
        r.rule
            .precedence
            .map_or("none (after every rule with one)".to_string(), |p| p
                .to_string()),
    );
    for (index, flow) in r.rule.flows.iter().enumerate() {
        out.push_str(&format!(
            "flow {}: {}\n",
            index + 1,
            serde_json::to_string(flow).unwrap_or_default()
        ));
    }
    out.push_str(&format!(
        "actions: {}\n",
        serde_json::to_string(&r.rule.actions).unwrap_or_default()
    ));
    if let Some(p) = r.policer {
        out.push_str(&format!(
            "policer (trTCM): PIR {} kbps, CIR {} kbps, MBS {}, CBS {}, packet-byte-offset {}\n",
            p.pir_kbps,
            p.cir_kbps,
            p.mbs
                .map_or("default (10 ms at PIR)".to_string(), |b| format!("{b} B")),
            p.cbs
                .map_or("default (10 ms at CIR)".to_string(), |b| format!("{b} B")),
            p.packet_byte_offset
        ));
    }
    if let Some(overrides) = &r.rule.policer {
        out.push_str(&format!(
            "policer overrides: {} (parent arbiter, level and weight are recorded only: no hierarchical scheduler)\n",
            serde_json::to_string(overrides).unwrap_or_default()
        ));
    }
    if let Some((peak, committed)) = r.tokens {
        out.push_str(&format!(
            "policer state: peak bucket {peak} B, committed bucket {committed} B\n"
        ));
    }
    out.push_str(&format!(
        "forwarded {} packets {} octets, dropped {} packets {} octets\n",
        r.forwarded.packets, r.forwarded.octets, r.dropped.packets, r.dropped.octets
    ));
    out
}
