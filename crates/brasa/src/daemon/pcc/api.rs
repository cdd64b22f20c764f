//! `/api/v1/pcc/…`: the enforcement point's status, each subscriber's services as enforced
//! (rules, policers, counters, the service volume by the counter rule), one rule; and the
//! `brasa_pcc_*` metrics.

use super::enforcer::counter;
use super::PccComponent;
use crate::common::mgmt::ApiError;
use crate::common::prom::{Kind, PromWriter};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use brasa_dataplane::pcc::{PccPolicer, SubscriberCounters};
use brasa_subsvc::Counter;
use brasa_subsvc::{CounterRule, PccRule, SubscriberService};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Routes under `/api/v1/pcc`.
pub fn routes() -> Router<crate::daemon::ApiState> {
    Router::new()
        .route("/status", get(status))
        .route("/subscribers", get(list))
        .route("/subscribers/{name}", get(one))
        .route("/subscribers/{name}/rules/{*rule}", get(rule))
}

fn component(state: &crate::daemon::ApiState) -> Result<&Arc<PccComponent>, ApiError> {
    state.pcc.as_ref().ok_or_else(|| {
        ApiError::not_found(
            "subscriber enforcement is not enabled in this daemon's config ([dataplane.subscribers])",
        )
    })
}

/// The enforcement point's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    /// Connected to an SM.
    pub connected: bool,
    /// The SM nodes.
    pub sm: Vec<String>,
    /// This EP's id.
    pub ep_id: String,
    /// Subscribers enforced.
    pub subscribers: usize,
    /// PCC rules installed.
    pub rules: usize,
    /// Default-action and rule drops, by reason (`unknown`, `no_services`, `rule`, `policer`),
    /// and packets of no subscriber forwarded (`unknown_forwarded`).
    pub packets: std::collections::BTreeMap<String, u64>,
    /// Services the data plane refused.
    pub compile_refused: u64,
    /// Subscribers it could not install.
    pub install_refused: u64,
    /// Full syncs received.
    pub syncs: u64,
    /// Connections made to an SM (the first, then one per reconnection or fail-over).
    pub connects: u64,
    /// Accounting-Requests answered.
    pub acct_sent: u64,
    /// Accounting-Requests no server answered.
    pub acct_failed: u64,
    /// Accounting-Requests dropped unsent (the queue to the pool was full).
    pub acct_dropped: u64,
    /// Stops sent at start-up for the instances an earlier run left open (a crash).
    #[serde(default)]
    pub acct_recovered: u64,
    /// Batches of records the accounting journal could not write.
    #[serde(default)]
    pub acct_journal_errors: u64,
}

/// Forwarded traffic per direction.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct DirectionsView {
    /// From the subscriber.
    pub ingress: Counter,
    /// To the subscriber.
    pub egress: Counter,
}

/// One subscriber's services as enforced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriberView {
    /// The subscriber.
    pub subscriber: String,
    /// The session its accounting is linked to (Acct-Multi-Session-Id).
    pub session: String,
    /// Its addresses in the data plane: `prefix` in the global address space,
    /// `prefix@vpn` in the VPRN that holds the VPN.
    pub addresses: Vec<String>,
    /// The VPNs of its mappings that no VPRN holds (`[dataplane.subscribers.vpns]`): those
    /// addresses are not enforced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unplaced_vpns: Vec<String>,
    /// Everything forwarded from and to it since it was installed.
    pub forwarded: DirectionsView,
    /// Its services, in activation order.
    pub services: Vec<ServiceView>,
}

/// One service instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceView {
    /// The instance name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub service_type: Option<String>,
    /// `off`, `volume-time`, `time`.
    pub acct_stats_type: brasa_subsvc::AcctStatsType,
    /// Interim interval as given (seconds).
    pub acct_interval: Option<u32>,
    /// Its accounting session, while accounting runs.
    pub acct_session_id: Option<String>,
    /// Why the data plane refused it (then nothing of it is enforced).
    pub refused: Option<String>,
    /// Which counters its volume is: `accounted-rules` or `subscriber-aggregate`.
    pub counter_rule: String,
    /// Its volume by the counter rule (ingress = Acct-Input-*).
    pub volume: brasa_subsvc::Volume,
    /// Its rules.
    pub rules: Vec<RuleView>,
}

/// One PCC rule as enforced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleView {
    /// Its service.
    pub service: String,
    /// Its name in the data plane (`service/rule`).
    pub dataplane_name: String,
    /// The rule as activated (flows, precedence, actions, policer overrides — the parent
    /// arbiter, level and weight are recorded only: brasa has no hierarchical scheduler).
    pub rule: PccRule,
    /// The policer in force (defaults applied: bursts of 10 ms at the rate when not given),
    /// if the rule rate-limits.
    pub policer: Option<PolicerView>,
    /// The policer's buckets now, bytes (peak, committed).
    pub tokens: Option<(u64, u64)>,
    /// What it forwarded.
    pub forwarded: Counter,
    /// What it dropped (drop action or policer red).
    pub dropped: Counter,
}

/// A rule's policer as the data plane runs it (RFC 2698 trTCM, colour-blind).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PolicerView {
    /// PIR, kb/s.
    pub pir_kbps: u64,
    /// CIR, kb/s (0: all within the PIR is yellow).
    pub cir_kbps: u64,
    /// MBS, bytes; `None`: 10 ms at the PIR.
    pub mbs: Option<u64>,
    /// CBS, bytes; `None`: 10 ms at the CIR.
    pub cbs: Option<u64>,
    /// Bytes added to each packet's length before metering.
    pub packet_byte_offset: i16,
}

impl From<PccPolicer> for PolicerView {
    fn from(p: PccPolicer) -> Self {
        Self {
            pir_kbps: p.pir_kbps,
            cir_kbps: p.cir_kbps,
            mbs: p.mbs,
            cbs: p.cbs,
            packet_byte_offset: p.packet_byte_offset,
        }
    }
}

fn rule_view(
    service: &SubscriberService,
    rule: &PccRule,
    counters: &SubscriberCounters,
) -> RuleView {
    let name = super::compile::rule_name(&service.name, &rule.name);
    let direction = super::compile::direction(rule.direction);
    let live = counters
        .rules
        .iter()
        .find(|r| r.name == name && r.direction == direction);
    let spec = super::compile::spec("", &super::compile::Addresses::default(), [service]);
    RuleView {
        service: service.name.clone(),
        policer: spec
            .rules
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.action.rate_limit)
            .map(PolicerView::from),
        dataplane_name: name,
        rule: rule.clone(),
        tokens: live.and_then(|r| r.tokens),
        forwarded: live.map(|r| counter(r.forwarded)).unwrap_or_default(),
        dropped: live.map(|r| counter(r.dropped)).unwrap_or_default(),
    }
}

fn subscriber_view(component: &PccComponent, name: &str) -> Option<SubscriberView> {
    let enforcer = component.enforcer();
    let enforced = enforcer.get(name)?;
    let counters = enforced.policy.counters();
    let services = enforced
        .services
        .iter()
        .map(|service| {
            let refused = enforced
                .refused
                .iter()
                .find(|r| r.service == service.name)
                .map(|r| r.reason.clone());
            ServiceView {
                name: service.name.clone(),
                service_type: service.service_type.clone(),
                acct_stats_type: service.acct_stats_type,
                acct_interval: service.acct_interval,
                acct_session_id: enforcer
                    .acct_session_id(name, &service.name)
                    .map(str::to_string),
                counter_rule: match CounterRule::of(service) {
                    CounterRule::AccountedRules => "accounted-rules",
                    CounterRule::SubscriberAggregate => "subscriber-aggregate",
                }
                .to_string(),
                volume: if refused.is_some() {
                    brasa_subsvc::Volume::default()
                } else {
                    enforced.service_volume(service, &counters)
                },
                refused,
                rules: service
                    .rules
                    .iter()
                    .map(|rule| rule_view(service, rule, &counters))
                    .collect(),
            }
        })
        .collect();
    Some(SubscriberView {
        subscriber: name.to_string(),
        session: enforced.session.clone(),
        addresses: enforced.addresses.display(),
        unplaced_vpns: enforced.addresses.unplaced_vpns.clone(),
        forwarded: DirectionsView {
            ingress: counter(counters.ingress),
            egress: counter(counters.egress),
        },
        services,
    })
}

async fn status(
    State(state): State<crate::daemon::ApiState>,
) -> Result<Json<StatusView>, ApiError> {
    let pcc = component(&state)?;
    Ok(Json(status_view(pcc).await))
}

/// The status and counters.
pub async fn status_view(pcc: &PccComponent) -> StatusView {
    let (subscribers, rules) = {
        let enforcer = pcc.enforcer();
        let rules = enforcer.iter().map(|(_, e)| e.policy.rules().len()).sum();
        (enforcer.len(), rules)
    };
    let stage = pcc.stage_stats().await.unwrap_or_default();
    let rule_drops: u64 = stage.rule_dropped;
    let packets = [
        ("unknown", stage.unknown_dropped),
        ("no_services", stage.no_services_dropped),
        ("rule", rule_drops),
        ("policer", stage.policed),
        ("unknown_forwarded", stage.unknown_forwarded),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let stats = &pcc.stats;
    StatusView {
        connected: pcc.connected(),
        sm: pcc.config().endpoints.clone(),
        ep_id: pcc.config().ep_id.clone(),
        subscribers,
        rules,
        packets,
        compile_refused: stats.compile_refused.load(Ordering::Relaxed),
        install_refused: stats.install_refused.load(Ordering::Relaxed),
        syncs: stats.syncs.load(Ordering::Relaxed),
        connects: stats.connects.load(Ordering::Relaxed),
        acct_sent: stats.acct_sent.load(Ordering::Relaxed),
        acct_failed: stats.acct_failed.load(Ordering::Relaxed),
        acct_dropped: stats.acct_dropped.load(Ordering::Relaxed),
        acct_recovered: stats.acct_recovered.load(Ordering::Relaxed),
        acct_journal_errors: stats.acct_journal_errors.load(Ordering::Relaxed),
    }
}

async fn list(
    State(state): State<crate::daemon::ApiState>,
) -> Result<Json<Vec<SubscriberView>>, ApiError> {
    let pcc = component(&state)?;
    let mut names: Vec<String> = pcc.enforcer().iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    Ok(Json(
        names
            .iter()
            .filter_map(|name| subscriber_view(pcc, name))
            .collect(),
    ))
}

async fn one(
    State(state): State<crate::daemon::ApiState>,
    Path(name): Path<String>,
) -> Result<Json<SubscriberView>, ApiError> {
    let pcc = component(&state)?;
    subscriber_view(pcc, &name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no enforced subscriber {name:?}")))
}

/// `rule` is the rule's name (unique per subscriber) or its data plane name `service/rule`.
async fn rule(
    State(state): State<crate::daemon::ApiState>,
    Path((name, rule)): Path<(String, String)>,
) -> Result<Json<RuleView>, ApiError> {
    let pcc = component(&state)?;
    let view = subscriber_view(pcc, &name)
        .ok_or_else(|| ApiError::not_found(format!("no enforced subscriber {name:?}")))?;
    view.services
        .into_iter()
        .flat_map(|s| s.rules)
        .find(|r| r.rule.name == rule || r.dataplane_name == rule)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("subscriber {name:?} has no PCC rule {rule:?}")))
}

/// The `brasa_pcc_*` families.
pub async fn write_metrics(pcc: &PccComponent, w: &mut PromWriter) {
    let status = status_view(pcc).await;
    let singles = [
        (
            "brasa_pcc_subscribers",
            "Subscribers the data plane enforces.",
            Kind::Gauge,
            status.subscribers as u64,
        ),
        (
            "brasa_pcc_rules",
            "PCC rules installed in the data plane.",
            Kind::Gauge,
            status.rules as u64,
        ),
        (
            "brasa_pcc_ep_connected",
            "1 while the data plane is connected to a Subscriber Manager as an enforcement point.",
            Kind::Gauge,
            u64::from(status.connected),
        ),
        (
            "brasa_pcc_compile_refusals_total",
            "Subscriber services the SM pushed that the data plane refused (not enforced).",
            Kind::Counter,
            status.compile_refused,
        ),
        (
            "brasa_pcc_install_refusals_total",
            "Subscribers the data plane could not install (an invalid or taken address).",
            Kind::Counter,
            status.install_refused,
        ),
        (
            "brasa_pcc_syncs_total",
            "Full syncs received from the Subscriber Manager.",
            Kind::Counter,
            status.syncs,
        ),
        (
            "brasa_pcc_ep_connects_total",
            "Connections the data plane made to a Subscriber Manager (reconnections and fail-overs included).",
            Kind::Counter,
            status.connects,
        ),
        (
            "brasa_pcc_accounting_recovered_stops_total",
            "Stops sent at start-up for the subscriber service instances the last run left open (a crash), from the accounting journal.",
            Kind::Counter,
            status.acct_recovered,
        ),
        (
            "brasa_pcc_accounting_journal_errors_total",
            "Batches of accounting records the journal could not write (those instances get no Stop after a crash).",
            Kind::Counter,
            status.acct_journal_errors,
        ),
    ];
    for (name, help, kind, value) in singles {
        w.family(name, help, kind);
        w.sample(name, &[], value as f64);
    }
    w.family(
        "brasa_pcc_dropped_packets_total",
        "Packets the PCC stage dropped: unknown (no subscriber, default drop), no_services (default drop), rule (a rule's drop action), policer (a rule's policer).",
        Kind::Counter,
    );
    for reason in ["unknown", "no_services", "rule", "policer"] {
        w.sample(
            "brasa_pcc_dropped_packets_total",
            &[("reason", reason)],
            status.packets.get(reason).copied().unwrap_or(0) as f64,
        );
    }
    w.family(
        "brasa_pcc_accounting_requests_total",
        "Accounting-Requests of subscriber service instances: sent (answered), failed (no server answered) or dropped (the queue to the pool was full).",
        Kind::Counter,
    );
    w.sample(
        "brasa_pcc_accounting_requests_total",
        &[("result", "sent")],
        status.acct_sent as f64,
    );
    w.sample(
        "brasa_pcc_accounting_requests_total",
        &[("result", "failed")],
        status.acct_failed as f64,
    );
    w.sample(
        "brasa_pcc_accounting_requests_total",
        &[("result", "dropped")],
        status.acct_dropped as f64,
    );
}
