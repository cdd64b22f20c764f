//! `/api/v1/subsvc/…`: the operator's activation and deactivation (what a CoA-Request with
//! those attributes does), the counters, and the `brasa_subsvc_*` metrics.

use super::{operator_request, Refusal, Refused, SubscriberServices, ACTIVATE, DEACTIVATE};
use crate::common::mgmt::ApiError;
use crate::common::prom::{Kind, PromWriter};
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use brasa_subsvc::SubscriberServices as Services;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Routes under `/api/v1/subsvc`.
pub fn routes() -> Router<crate::daemon::ApiState> {
    Router::new()
        .route("/activate", post(activate))
        .route("/deactivate", post(deactivate))
        .route("/statistics", get(statistics))
}

fn component(state: &crate::daemon::ApiState) -> Result<&Arc<SubscriberServices>, ApiError> {
    state.subsvc.as_ref().ok_or_else(|| {
        ApiError::not_found(
            "subscriber services are not enabled in this daemon's config ([subscriber_services])",
        )
    })
}

/// `POST /activate`: runs the script on these parameters, as a CoA-Request with
/// Alc-Sub-Serv-Activate (and -Acct-Stats-Type, -Acct-Interim-Ivl) would.
#[derive(Debug, Serialize, Deserialize)]
pub struct ActivateBody {
    /// The subscriber (its SM name).
    pub subscriber: String,
    /// The Alc-Sub-Serv-Activate value the script reads.
    pub parameters: String,
    /// Alc-Sub-Serv-Acct-Stats-Type (1 off, 2 volume-time, 3 time).
    #[serde(default)]
    pub acct_stats_type: Option<u32>,
    /// Alc-Sub-Serv-Acct-Interim-Ivl, seconds.
    #[serde(default)]
    pub acct_interval: Option<u32>,
}

/// `POST /deactivate`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeactivateBody {
    /// The subscriber.
    pub subscriber: String,
    /// The service instance name.
    pub service: String,
}

/// The outcome of an operator's command.
#[derive(Debug, Serialize, Deserialize)]
pub struct Outcome {
    /// The subscriber, as the SM names it.
    pub subscriber: String,
    /// Its services now.
    pub services: Services,
}

async fn activate(
    State(state): State<crate::daemon::ApiState>,
    Json(body): Json<ActivateBody>,
) -> Result<Json<Outcome>, ApiError> {
    let component = component(&state)?;
    let request = operator_request(
        &component.dictionary,
        &body.subscriber,
        ACTIVATE,
        &body.parameters,
        body.acct_stats_type,
        body.acct_interval,
    )
    .map_err(|err| ApiError::bad_request(format!("parameters: {err}")))?;
    perform(component, &request).await
}

async fn deactivate(
    State(state): State<crate::daemon::ApiState>,
    Json(body): Json<DeactivateBody>,
) -> Result<Json<Outcome>, ApiError> {
    let component = component(&state)?;
    let request = operator_request(
        &component.dictionary,
        &body.subscriber,
        DEACTIVATE,
        &body.service,
        None,
        None,
    )
    .map_err(|err| ApiError::bad_request(format!("service: {err}")))?;
    perform(component, &request).await
}

async fn perform(
    component: &SubscriberServices,
    request: &brasa_radius::Message,
) -> Result<Json<Outcome>, ApiError> {
    let subscriber = component.handle_coa(request).await.map_err(api_error)?;
    let services = component
        .sm
        .core()
        .index()
        .get(&subscriber)
        .map(|s| s.services)
        .unwrap_or_default();
    Ok(Json(Outcome {
        subscriber,
        services,
    }))
}

fn api_error(refused: Refused) -> ApiError {
    let detail = refused.to_string();
    match refused.reason {
        Refusal::NotFound => ApiError::not_found(detail),
        Refusal::TypeConflict | Refusal::NameInUse | Refusal::TooManyPolicers => {
            ApiError::conflict(detail)
        }
        Refusal::Unavailable => ApiError::unavailable(detail),
        Refusal::Attributes | Refusal::Script | Refusal::Invalid | Refusal::Ambiguous => {
            ApiError::bad_request(detail)
        }
    }
}

async fn statistics(
    State(state): State<crate::daemon::ApiState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(component(&state)?.stats.snapshot()))
}

/// The `brasa_subsvc_*` metrics.
pub fn write_metrics(component: &SubscriberServices, w: &mut PromWriter) {
    let stats = &component.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed) as f64;
    for (name, help, value) in [
        (
            "brasa_subsvc_accepts_total",
            "Access-Accepts that carried Alc-Sub-Serv-Activate.",
            &stats.accepts,
        ),
        (
            "brasa_subsvc_accepts_dropped_total",
            "Of those, not run: a full Python worker or SM queue, or no User-Name.",
            &stats.accepts_dropped,
        ),
        (
            "brasa_subsvc_script_runs_total",
            "Runs of the alc.sub_svc script (Accepts, CoAs, operator commands).",
            &stats.script_runs,
        ),
        (
            "brasa_subsvc_script_failures_total",
            "Failed runs: an exception, an invalid service, the time limit.",
            &stats.script_failures,
        ),
        (
            "brasa_subsvc_activations_total",
            "SM operations that activated or deactivated subscriber services.",
            &stats.applied,
        ),
        (
            "brasa_subsvc_coa_dropped_total",
            "CoA requests dropped by the listener: unknown client, bad authenticator, malformed.",
            &stats.coa_dropped,
        ),
    ] {
        w.family(name, help, Kind::Counter);
        w.sample(name, &[], load(value));
    }
    w.family(
        "brasa_subsvc_refusals_total",
        "Refused activations and deactivations (nothing changed), by reason.",
        Kind::Counter,
    );
    for (reason, count) in Refusal::ALL.iter().zip(&stats.refusals) {
        w.sample(
            "brasa_subsvc_refusals_total",
            &[("reason", reason.as_str())],
            load(count),
        );
    }
    w.family(
        "brasa_subsvc_coa_answers_total",
        "CoA-Requests about subscriber services answered, by answer.",
        Kind::Counter,
    );
    for (answer, count) in [("ack", &stats.coa_acks), ("nak", &stats.coa_naks)] {
        w.sample(
            "brasa_subsvc_coa_answers_total",
            &[("answer", answer)],
            load(count),
        );
    }
}
