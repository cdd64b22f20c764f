//! `/api/v1/dynsvc/…`: the data triggers, the capture SAPs' statistics (Tables 2 and 3), the
//! host-lockout contexts and the dynamic services, with their `clear` routes, and the metrics.

use super::DynServices;
use crate::common::mgmt::ApiError;
use crate::common::prom::{Kind, PromWriter};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use brasa_dynsvc::lockout::LockoutState;
use brasa_script::DynAction;
use brasa_services::SapId;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Routes under `/api/v1/dynsvc`.
pub fn routes() -> Router<crate::daemon::ApiState> {
    Router::new()
        .route("/data-triggers", get(data_triggers))
        .route("/data-triggers/clear", post(clear_trigger))
        .route("/capture-sap/statistics", get(statistics))
        .route("/capture-sap/clear-statistics", post(clear_statistics))
        .route("/host-lockout-policy/{name}", get(lockouts))
        .route("/host-lockout-policy/{name}/clear", post(clear_lockouts))
        .route("/command-list", get(command_list))
        .route("/evaluate-script", post(evaluate_script))
        .route("/debug", get(debug_filters).post(set_debug))
        .route("/debug/remove", post(remove_debug))
}

fn component(state: &crate::daemon::ApiState) -> Result<&Arc<DynServices>, ApiError> {
    state.dynsvc.as_ref().ok_or_else(|| {
        ApiError::not_found(
            "dynamic data services are not enabled in this daemon's config ([dynamic_services])",
        )
    })
}

/// `?sap=SAP`.
#[derive(Debug, Deserialize)]
pub struct SapQuery {
    /// A SAP id in the service text form.
    pub sap: Option<String>,
}

fn parse_sap(services: &DynServices, text: &str) -> Result<SapId, ApiError> {
    SapId::parse_mapped(text, services.services.manager.port_map())
        .map_err(|err| ApiError::bad_request(format!("SAP {text:?}: {err}")))
}

fn sap_of(services: &DynServices, query: &SapQuery) -> Result<Option<SapId>, ApiError> {
    query
        .sap
        .as_deref()
        .map(|text| parse_sap(services, text))
        .transpose()
}

fn required(sap: Option<SapId>) -> Result<SapId, ApiError> {
    sap.ok_or_else(|| ApiError::bad_request("the `sap` parameter is required"))
}

/// One line of `show service dynamic-services data-triggers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriggerView {
    /// The data trigger SAP.
    pub sap: String,
    /// The capture SAP it arrived on.
    pub capture_sap: String,
    /// Its Acct-Session-Id.
    pub acct_session_id: String,
    /// Source MAC of the trigger frame.
    pub mac: String,
    /// IP source of the trigger frame.
    pub ip: Option<String>,
    /// Pending, Accepted or sapCreated.
    pub state: String,
    /// The capture SAP's dynamic-services-policy.
    pub policy: String,
    /// The dynamic service SAPs it owns.
    pub services: Vec<String>,
}

async fn data_triggers(
    State(state): State<crate::daemon::ApiState>,
) -> Result<Json<Vec<TriggerView>>, ApiError> {
    let services = component(&state)?;
    Ok(Json(services.with_triggers(|triggers| {
        triggers
            .triggers()
            .into_iter()
            .map(|t| TriggerView {
                sap: t.sap.to_string(),
                capture_sap: t.capture_sap.to_string(),
                acct_session_id: t.acct_session_id.clone(),
                mac: t.mac.to_string(),
                ip: t.ip.map(|ip| ip.to_string()),
                state: t.state.as_str().to_string(),
                policy: t.policy.clone(),
                services: t.services.iter().map(ToString::to_string).collect(),
            })
            .collect()
    })))
}

async fn clear_trigger(
    State(state): State<crate::daemon::ApiState>,
    Query(query): Query<SapQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let services = component(&state)?;
    let sap = required(sap_of(services, &query)?)?;
    let teardown = services
        .with_triggers(|triggers| triggers.clear_trigger(&sap, Instant::now()))
        .map_err(|err| ApiError::not_found(err.to_string()))?;
    let removed = teardown.services.len();
    services.tear_down(teardown, brasa_radius::AcctTerminateCause::AdminReset);
    Ok(Json(
        serde_json::json!({"result": "ok", "services": removed}),
    ))
}

/// `show … dynamic-services capture-sap SAP statistics`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaptureStatsView {
    /// The capture SAP.
    pub sap: String,
    /// "CPM Ingress" packets and octets: frames the data plane punted to the control plane.
    pub cpm_ingress: [u64; 2],
    /// "Forwarding Engine Stats Dropped" packets and octets: frames the data plane's throttle
    /// dropped because a trigger of the same tags was in progress.
    pub forwarding_engine_dropped: [u64; 2],
    /// "Data packets received by SAP".
    pub received: u64,
    /// The Table 3 drop counters with their labels, in the guide's order.
    pub dropped: Vec<(String, u64)>,
}

async fn statistics(
    State(state): State<crate::daemon::ApiState>,
    Query(query): Query<SapQuery>,
) -> Result<Json<CaptureStatsView>, ApiError> {
    let services = component(&state)?;
    let sap = required(sap_of(services, &query)?)?;
    let table2 = services
        .dataplane_counters(std::slice::from_ref(&sap))
        .await
        .remove(&sap)
        .unwrap_or_default();
    services
        .with_triggers(|triggers| {
            triggers.stats(&sap).map(|s| CaptureStatsView {
                sap: sap.to_string(),
                cpm_ingress: [table2.punted, table2.punted_octets],
                forwarding_engine_dropped: [table2.throttled, table2.throttled_octets],
                received: s.received,
                dropped: s
                    .drop_counters()
                    .map(|(reason, count)| (reason.label().to_string(), count))
                    .collect(),
            })
        })
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "{sap} is not a capture SAP that has received frames"
            ))
        })
}

async fn clear_statistics(
    State(state): State<crate::daemon::ApiState>,
    Query(query): Query<SapQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let services = component(&state)?;
    let sap = required(sap_of(services, &query)?)?;
    services
        .with_triggers(|triggers| triggers.clear_stats(&sap))
        .map_err(|err| ApiError::not_found(err.to_string()))?;
    services.clear_dataplane_counters(&sap).await;
    Ok(Json(serde_json::json!({"result": "ok"})))
}

/// A debug filter of a capture SAP (`debug service dynamic-services capture-sap SAP
/// [encap-val Q[.Q]] [mode all|dropped-only]`); the body of `POST /debug`, and of
/// `POST /debug/remove` (the `no` form: `mode` ignored, no `encap_val` removes every filter of
/// the SAP).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DebugView {
    /// The capture SAP.
    pub capture_sap: String,
    /// Only the triggers of this encapsulation (`qtag` or `qtag.qtag`); all when absent.
    #[serde(default)]
    pub encap_val: Option<String>,
    /// `all` (the default) or `dropped-only`.
    #[serde(default)]
    pub mode: Option<String>,
}

fn debug_views(services: &DynServices) -> Vec<DebugView> {
    services
        .debug_filters()
        .into_iter()
        .map(|(sap, filter)| DebugView {
            capture_sap: sap.to_string(),
            mode: Some(filter.mode().to_owned()),
            encap_val: filter.encap_val,
        })
        .collect()
}

/// A debug command names a SAP that is no capture SAP, or a filter that does not exist.
fn debug_error(err: super::DebugError) -> ApiError {
    ApiError::not_found(err.to_string())
}

async fn debug_filters(
    State(state): State<crate::daemon::ApiState>,
) -> Result<Json<Vec<DebugView>>, ApiError> {
    Ok(Json(debug_views(component(&state)?)))
}

async fn set_debug(
    State(state): State<crate::daemon::ApiState>,
    Json(request): Json<DebugView>,
) -> Result<Json<Vec<DebugView>>, ApiError> {
    let services = component(&state)?;
    let sap = parse_sap(services, &request.capture_sap)?;
    let filter =
        super::config::CaptureDebug::new(request.encap_val.as_deref(), request.mode.as_deref())
            .map_err(|err| ApiError::bad_request(err.to_string()))?;
    services.set_debug(sap, filter).await.map_err(debug_error)?;
    Ok(Json(debug_views(services)))
}

async fn remove_debug(
    State(state): State<crate::daemon::ApiState>,
    Json(request): Json<DebugView>,
) -> Result<Json<Vec<DebugView>>, ApiError> {
    let services = component(&state)?;
    let sap = parse_sap(services, &request.capture_sap)?;
    services
        .remove_debug(&sap, request.encap_val.as_deref())
        .map_err(debug_error)?;
    Ok(Json(debug_views(services)))
}

/// One line of `show subscriber-mgmt host-lockout-policy NAME all`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockoutView {
    /// The data trigger SAP (the host key).
    pub trigger_sap: String,
    /// The capture SAP.
    pub capture_sap: String,
    /// Locked out now.
    pub active: bool,
    /// Lockouts so far.
    pub lockouts: u32,
    /// Seconds of the current lock.
    pub current_lock_time: u64,
    /// Seconds of it elapsed.
    pub elapsed_lock_time: u64,
    /// Seconds of the next lock.
    pub next_lock_time: u64,
    /// Seconds of the grace period elapsed.
    pub elapsed_reset_time: u64,
}

async fn lockouts(
    State(state): State<crate::daemon::ApiState>,
    Path(name): Path<String>,
    Query(query): Query<SapQuery>,
) -> Result<Json<Vec<LockoutView>>, ApiError> {
    let services = component(&state)?;
    let sap = sap_of(services, &query)?;
    services
        .with_triggers(|triggers| {
            triggers.lockouts(&name).map(|l| {
                l.rows(sap.as_ref(), Instant::now())
                    .into_iter()
                    .map(|row| LockoutView {
                        trigger_sap: row.trigger_sap.to_string(),
                        capture_sap: row.capture_sap.to_string(),
                        active: row.active,
                        lockouts: row.lockouts,
                        current_lock_time: row.current_lock_time,
                        elapsed_lock_time: row.elapsed_lock_time,
                        next_lock_time: row.next_lock_time,
                        elapsed_reset_time: row.elapsed_reset_time,
                    })
                    .collect()
            })
        })
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no host-lockout-policy {name:?}")))
}

async fn clear_lockouts(
    State(state): State<crate::daemon::ApiState>,
    Path(name): Path<String>,
    Query(query): Query<SapQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let services = component(&state)?;
    let sap = sap_of(services, &query)?;
    let cleared = services
        .with_triggers(|triggers| {
            triggers
                .lockouts_mut(&name)
                .map(|l| l.clear(sap.as_ref(), LockoutState::All, Instant::now()))
        })
        .ok_or_else(|| ApiError::not_found(format!("no host-lockout-policy {name:?}")))?;
    Ok(Json(
        serde_json::json!({"result": "ok", "cleared": cleared}),
    ))
}

/// A dynamic service in `tools dump service dynamic-services command-list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandView {
    /// The dynamic service SAP.
    pub sap: String,
    /// Its data trigger.
    pub trigger: String,
    /// Its dynamic-services-policy.
    pub policy: String,
    /// The function key of its script.
    pub function_key: String,
    /// The dictionary the script keeps for it.
    pub dictionary: String,
    /// The service CLI its setup (and each modify) applied.
    pub cli: String,
}

async fn command_list(
    State(state): State<crate::daemon::ApiState>,
) -> Result<Json<Vec<CommandView>>, ApiError> {
    let services = component(&state)?;
    Ok(Json(
        services
            .records()
            .into_iter()
            .map(|(sap, record)| CommandView {
                sap: sap.to_string(),
                trigger: record.trigger.to_string(),
                policy: record.policy,
                function_key: record.state.function_key,
                dictionary: record.state.dictionary,
                cli: record.cli,
            })
            .collect(),
    ))
}

/// The body of `POST /evaluate-script`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvaluateRequest {
    /// The dynamic service SAP.
    pub sap: String,
    /// The Acct-Session-Id of its data trigger.
    pub control_session: String,
    /// `setup`, `modify` or `teardown`.
    pub action: String,
    /// Script parameters of a setup (a new dynamic service of the trigger).
    #[serde(default)]
    pub params: Option<String>,
    /// The dynamic-services-policy of a setup (default: the trigger's).
    #[serde(default)]
    pub policy: Option<String>,
    /// Run the script with the service's stored parameters and apply nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What `tools perform service dynamic-services evaluate-script` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvaluateView {
    /// The dynamic service SAP.
    pub sap: String,
    /// The action that ran.
    pub action: String,
    /// Whether the action was applied (false for a dry run).
    pub applied: bool,
    /// The dynamic service SAPs a setup created.
    pub created: Vec<String>,
    /// The dynamic service SAPs a teardown removed (the data trigger's own SAP last, when the
    /// trigger went with them).
    pub removed: Vec<String>,
    /// The dynamic service SAP a modify changed.
    #[serde(default)]
    pub modified: Vec<String>,
    /// Dry run: `None` when the script ran to its end, else why it failed.
    pub failure: Option<String>,
    /// Dry run: the service CLI the run generated (applied by nothing).
    pub cli: String,
    /// Dry run: the dictionary the script would keep after a setup or modify.
    pub dictionary: Option<String>,
    /// Dry run: what the script printed.
    pub output: String,
}

async fn evaluate_script(
    State(state): State<crate::daemon::ApiState>,
    Json(request): Json<EvaluateRequest>,
) -> Result<Json<EvaluateView>, ApiError> {
    use super::{EvaluateError, Evaluated, Evaluation};
    let services = component(&state)?;
    let sap = required(sap_of(
        services,
        &SapQuery {
            sap: Some(request.sap.clone()),
        },
    )?)?;
    let action = match request.action.as_str() {
        "setup" => DynAction::Setup,
        "modify" => DynAction::Modify,
        "teardown" => DynAction::Teardown,
        other => {
            return Err(ApiError::bad_request(format!(
                "action {other:?}: expected setup, modify or teardown"
            )))
        }
    };
    let evaluated = services
        .evaluate(Evaluation {
            sap: sap.clone(),
            control_session: request.control_session,
            action,
            params: request.params,
            policy: request.policy,
            dry_run: request.dry_run,
        })
        .await
        .map_err(|err| match err {
            EvaluateError::UnknownSession(_)
            | EvaluateError::UnknownService(_)
            | EvaluateError::OtherTrigger { .. } => ApiError::not_found(err.to_string()),
            EvaluateError::NotAllowed { .. } => ApiError::bad_request(err.to_string()),
            EvaluateError::Failed(_) => ApiError::conflict(err.to_string()),
            EvaluateError::Run(_) => ApiError::unavailable(err.to_string()),
        })?;
    let mut view = EvaluateView {
        sap: sap.to_string(),
        action: action.to_string(),
        applied: true,
        created: Vec::new(),
        removed: Vec::new(),
        modified: Vec::new(),
        failure: None,
        cli: String::new(),
        dictionary: None,
        output: String::new(),
    };
    match evaluated {
        Evaluated::DryRun(report) => {
            view.applied = false;
            if let brasa_script::Outcome::Failed(failure) = &report.run.outcome {
                view.failure = Some(failure.message.clone());
            }
            let report = *report;
            view.cli = report.cli;
            view.dictionary = report.state.map(|kept| kept.dictionary);
            view.output = report.run.output;
        }
        Evaluated::Created(sap) => view.created.push(sap.to_string()),
        Evaluated::Removed(saps) => view.removed = saps.iter().map(ToString::to_string).collect(),
        Evaluated::Modified(sap) => view.modified.push(sap.to_string()),
    }
    Ok(Json(view))
}

/// Data trigger counters for `/metrics`.
pub async fn write_metrics(services: &DynServices, w: &mut PromWriter) {
    let (triggers, captures) = services.with_triggers(|triggers| {
        let mut by_state = std::collections::BTreeMap::<&'static str, u64>::new();
        for t in triggers.triggers() {
            *by_state.entry(t.state.as_str()).or_default() += 1;
        }
        let captures: Vec<_> = triggers
            .capture_saps()
            .map(|(sap, stats)| (sap.clone(), stats.clone()))
            .collect();
        (by_state, captures)
    });
    let saps: Vec<SapId> = captures.iter().map(|(sap, _)| sap.clone()).collect();
    let table2 = services.dataplane_counters(&saps).await;
    let captures: Vec<(String, _, _)> = captures
        .into_iter()
        .map(|(sap, stats)| {
            let dataplane = table2.get(&sap).cloned().unwrap_or_default();
            (sap.to_string(), stats, dataplane)
        })
        .collect();
    w.family(
        "brasa_dynsvc_data_triggers",
        "Data triggers, by state.",
        Kind::Gauge,
    );
    for state in ["Pending", "Accepted", "sapCreated"] {
        w.sample(
            "brasa_dynsvc_data_triggers",
            &[("state", state)],
            triggers.get(state).copied().unwrap_or(0) as f64,
        );
    }
    w.family(
        "brasa_dynsvc_capture_frames_total",
        "Frames of a capture SAP: cpm-ingress (to the control plane), throttled (a trigger of the same tags in progress), received (past the rate limit).",
        Kind::Counter,
    );
    for (sap, stats, dataplane) in &captures {
        for (kind, value) in [
            ("cpm-ingress", dataplane.punted),
            ("throttled", dataplane.throttled),
            ("received", stats.received),
        ] {
            w.sample(
                "brasa_dynsvc_capture_frames_total",
                &[("sap", sap), ("kind", kind)],
                value as f64,
            );
        }
    }
    w.family(
        "brasa_dynsvc_trigger_drops_total",
        "Data triggers dropped, by capture SAP and reason (Nokia SR OS dynamic data services, Table 3).",
        Kind::Counter,
    );
    for (sap, stats, _) in &captures {
        for (reason, count) in stats.drop_counters() {
            w.sample(
                "brasa_dynsvc_trigger_drops_total",
                &[("sap", sap), ("reason", reason.label())],
                count as f64,
            );
        }
    }
    let counters = &services.counters;
    for (name, help, value) in [
        (
            "brasa_dynsvc_services_created_total",
            "Dynamic services created.",
            &counters.services_created,
        ),
        (
            "brasa_dynsvc_services_removed_total",
            "Dynamic services removed.",
            &counters.services_removed,
        ),
        (
            "brasa_dynsvc_script_failures_total",
            "Dynamic-services script runs that failed.",
            &counters.script_failures,
        ),
        (
            "brasa_dynsvc_apply_failures_total",
            "Dynamic-services script CLI the service manager refused.",
            &counters.apply_failures,
        ),
        (
            "brasa_dynsvc_forced_removals_total",
            "Dynamic services removed without their teardown script (it failed).",
            &counters.forced_removals,
        ),
        (
            "brasa_dynsvc_coa_dropped_total",
            "CoA and Disconnect requests dropped (unknown client, bad authenticator, malformed).",
            &counters.coa_dropped,
        ),
        (
            "brasa_dynsvc_unknown_capture_total",
            "Punted frames of no enabled capture SAP.",
            &counters.unknown_capture,
        ),
        (
            "brasa_dynsvc_malformed_frames_total",
            "Punted frames too short for an Ethernet header.",
            &counters.malformed,
        ),
    ] {
        w.family(name, help, Kind::Counter)
            .sample(name, &[], value.load(Ordering::Relaxed) as f64);
    }
}
