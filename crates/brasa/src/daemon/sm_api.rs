//! The subscriber manager component of `brasa run`: start-up, management API routes under
//! `/api/v1/sm/…` and Prometheus metrics.

use super::sm_config::SmResolved;
use super::sm_radius::{self, LoginEventStats};
use super::ApiState;
use crate::common::mgmt::ApiError;
use crate::common::prom::{Kind, PromWriter};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use brasa_aaa::EngineConfig;
use brasa_radius::Dictionary;
use brasa_sm::ep::{EpView, QuarantineState};
use brasa_sm::{ErrorKind, Op, SmError};
use brasa_sm_net::{ServiceStats, SmServer, SmService};
use brasa_subscriber::csv::{CsvError, ImportMode};
use brasa_subscriber::{Login, RedbStore, Subscriber};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

/// The running component.
pub struct SmComponent {
    /// The service.
    pub service: SmService,
    /// Where the gRPC LEG API and EP protocol listen.
    pub grpc: SocketAddr,
    /// RADIUS login-event counters, when configured.
    pub radius_events: Option<Arc<LoginEventStats>>,
    _server: SmServer,
}

/// Opens `<data_dir>/subscriber`, restores the database, starts the gRPC server and, when
/// configured, wraps the observed RADIUS servers' policies with the login-event observer (so
/// this must run before the RADIUS engine is built).
pub async fn start(
    resolved: SmResolved,
    radius: Option<&mut (EngineConfig, Arc<Dictionary>)>,
) -> anyhow::Result<Arc<SmComponent>> {
    let store = RedbStore::open(&resolved.data_dir)?;
    let service = SmService::open(resolved.config, Box::new(store))?;
    let server = SmServer::start(service.clone(), resolved.listen).await?;
    let radius_events = match (&resolved.radius, radius) {
        (Some(logins), Some((engine, _))) => {
            Some(sm_radius::install(engine, logins, service.clone()))
        }
        _ => None,
    };
    Ok(Arc::new(SmComponent {
        service,
        grpc: server.local_addr(),
        radius_events,
        _server: server,
    }))
}

/// `/api/v1/sm/...`
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/statistics", get(statistics))
        .route("/subscribers/{name}", get(subscriber))
        .route("/lookup", get(lookup))
        .route("/names", get(names))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/eps", get(eps))
        .route("/eps/{id}/resync", post(resync))
        .route("/eps/{id}/release-quarantine", post(release_quarantine))
        .route("/import", post(import).layer(DefaultBodyLimit::disable()))
        .route("/export", get(export))
}

fn component(state: &ApiState) -> Result<&Arc<SmComponent>, ApiError> {
    state.sm.as_ref().ok_or_else(|| {
        ApiError::not_found(
            "the subscriber manager is not enabled in this daemon's config ([subscriber_manager])",
        )
    })
}

fn api_error(e: SmError) -> ApiError {
    let status = match e.kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists | ErrorKind::FailedPrecondition => StatusCode::CONFLICT,
        ErrorKind::ResourceExhausted => StatusCode::INSUFFICIENT_STORAGE,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError {
        status,
        detail: e.message,
    }
}

/// A subscriber as the API shows it (state as hex).
#[derive(Debug, Serialize, Deserialize)]
pub struct SubscriberView {
    /// Name.
    pub name: String,
    /// Domain.
    pub domain: String,
    /// Mappings.
    pub mappings: Vec<String>,
    /// Properties, in order.
    pub properties: Vec<(String, String)>,
    /// EP state, hex.
    pub state: String,
    /// Logged in.
    pub logged_in: bool,
    /// Automatic logout (Unix seconds).
    pub auto_logout: Option<u64>,
}

impl From<&Subscriber> for SubscriberView {
    fn from(s: &Subscriber) -> Self {
        SubscriberView {
            name: s.name.as_str().to_owned(),
            domain: s.domain.clone(),
            mappings: s.mappings.iter().map(ToString::to_string).collect(),
            properties: s.properties.clone(),
            state: s.state.iter().map(|b| format!("{b:02x}")).collect(),
            logged_in: s.logged_in,
            auto_logout: s.auto_logout,
        }
    }
}

/// `GET /statistics`
#[derive(Debug, Serialize, Deserialize)]
pub struct Statistics {
    /// gRPC address.
    pub grpc_listen: String,
    /// Service counters.
    pub service: ServiceStats,
    /// RADIUS login events, when configured.
    pub radius_events: Option<serde_json::Value>,
}

async fn statistics(State(state): State<ApiState>) -> Result<Json<Statistics>, ApiError> {
    let sm = component(&state)?;
    Ok(Json(Statistics {
        grpc_listen: sm.grpc.to_string(),
        service: sm.service.stats(),
        radius_events: sm.radius_events.as_ref().map(|r| r.snapshot()),
    }))
}

#[derive(Deserialize)]
pub(crate) struct DomainQuery {
    pub(crate) domain: Option<String>,
}

pub(crate) async fn subscriber(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<DomainQuery>,
) -> Result<Json<SubscriberView>, ApiError> {
    let sm = component(&state)?;
    let core = sm.service.core();
    let found = match &q.domain {
        Some(d) => core.index().get_in_domain(&name, d),
        None => core.index().get(&name),
    };
    match found {
        Some(s) => Ok(Json(SubscriberView::from(&s))),
        None => Err(ApiError::not_found(match &q.domain {
            Some(d) => format!("no subscriber named {name:?} in domain {d:?}"),
            None => format!("no subscriber named {name:?}"),
        })),
    }
}

#[derive(Deserialize)]
pub(crate) struct LookupQuery {
    pub(crate) address: String,
    pub(crate) vpn: Option<String>,
}

/// `GET /lookup`
#[derive(Debug, Serialize, Deserialize)]
pub struct LookupView {
    /// The address asked for.
    pub address: String,
    /// Its VPN.
    pub vpn: Option<String>,
    /// The subscriber with the longest matching prefix.
    pub subscriber: Option<SubscriberView>,
}

pub(crate) async fn lookup(
    State(state): State<ApiState>,
    Query(q): Query<LookupQuery>,
) -> Result<Json<LookupView>, ApiError> {
    let sm = component(&state)?;
    let addr = brasa_sm::convert::address(&q.address).map_err(api_error)?;
    let core = sm.service.core();
    let index = core.index();
    let name = index
        .lookup(addr, q.vpn.as_deref())
        .map_err(|e| api_error(e.into()))?;
    let subscriber = name.and_then(|n| index.get(n));
    Ok(Json(LookupView {
        address: q.address,
        vpn: q.vpn,
        subscriber: subscriber.as_ref().map(SubscriberView::from),
    }))
}

#[derive(Deserialize)]
pub(crate) struct NamesQuery {
    pub(crate) prefix: Option<String>,
    pub(crate) suffix: Option<String>,
    pub(crate) limit: Option<usize>,
}

pub(crate) async fn names(
    State(state): State<ApiState>,
    Query(q): Query<NamesQuery>,
) -> Result<Json<Vec<String>>, ApiError> {
    let sm = component(&state)?;
    let limit = q.limit.unwrap_or(1000);
    let core = sm.service.core();
    let names = match (&q.prefix, &q.suffix) {
        (Some(p), None) => core.index().names_with_prefix(p, limit),
        (None, Some(s)) => core.index().names_with_suffix(s, limit),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of prefix or suffix",
            ))
        }
    };
    Ok(Json(names.into_iter().map(str::to_owned).collect()))
}

/// `POST /login`
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginBody {
    /// Subscriber name.
    pub name: String,
    /// Mapping texts.
    #[serde(default)]
    pub mappings: Vec<String>,
    /// Add to the current mappings.
    #[serde(default)]
    pub additive: bool,
    /// Properties.
    #[serde(default)]
    pub properties: Vec<(String, String)>,
    /// Domain.
    pub domain: Option<String>,
    /// Automatic logout after this many seconds.
    pub auto_logout_seconds: Option<u64>,
}

/// What a change did (`POST /login`, `/logout`).
#[derive(Debug, Serialize, Deserialize)]
pub struct ChangeView {
    /// Each touched subscriber after the change (`None`: removed).
    pub changed: Vec<(String, Option<SubscriberView>)>,
    /// VPNs created or changed.
    pub vpns: Vec<String>,
}

async fn change(sm: &SmComponent, op: Result<Op, SmError>) -> Result<Json<ChangeView>, ApiError> {
    let changes = sm
        .service
        .execute(op.map_err(api_error)?)
        .await
        .map_err(api_error)?;
    Ok(Json(ChangeView {
        changed: changes
            .subscribers
            .iter()
            .map(|c| {
                (
                    c.name.as_str().to_owned(),
                    c.new.as_ref().map(SubscriberView::from),
                )
            })
            .collect(),
        vpns: changes.vpns.iter().map(|v| v.name.clone()).collect(),
    }))
}

pub(crate) async fn login(
    State(state): State<ApiState>,
    Json(body): Json<LoginBody>,
) -> Result<Json<ChangeView>, ApiError> {
    let sm = component(&state)?;
    let op = brasa_sm::convert::mappings(&body.mappings).map(|mappings| Op::Login {
        login: Login {
            name: body.name,
            domain: body.domain,
            mappings,
            additive: body.additive,
            properties: body.properties,
            auto_logout: None,
        },
        auto_logout_after: body.auto_logout_seconds,
    });
    change(sm, op).await
}

/// `POST /logout`: by name (in a domain) or by mapping.
#[derive(Debug, Serialize, Deserialize)]
pub struct LogoutBody {
    /// Subscriber name.
    pub name: Option<String>,
    /// Required domain.
    pub domain: Option<String>,
    /// Or: the mapping whose holder logs out.
    pub mapping: Option<String>,
}

pub(crate) async fn logout(
    State(state): State<ApiState>,
    Json(body): Json<LogoutBody>,
) -> Result<Json<ChangeView>, ApiError> {
    let sm = component(&state)?;
    let op = match (body.name, body.mapping) {
        (Some(name), None) => Ok(Op::Logout {
            name,
            domain: body.domain,
        }),
        (None, Some(m)) => brasa_sm::convert::mapping(&m, "mapping").map(Op::LogoutByMapping),
        _ => Err(SmError::invalid("give exactly one of name or mapping")),
    };
    change(sm, op).await
}

pub(crate) async fn eps(State(state): State<ApiState>) -> Result<Json<Vec<EpView>>, ApiError> {
    let sm = component(&state)?;
    let views = sm.service.core().ep_views(std::time::Instant::now());
    Ok(Json(views))
}

pub(crate) async fn resync(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let sm = component(&state)?;
    sm.service
        .with_core(|core| core.resync(&id))
        .map_err(api_error)?;
    Ok(Json(serde_json::json!({ "ep": id, "resync": "started" })))
}

pub(crate) async fn release_quarantine(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let sm = component(&state)?;
    sm.service
        .with_core(|core| core.release_quarantine(&id))
        .map_err(api_error)?;
    Ok(Json(
        serde_json::json!({ "ep": id, "quarantine": "released" }),
    ))
}

#[derive(Deserialize)]
struct ImportQuery {
    mode: Option<String>,
}

/// `POST /import`
#[derive(Debug, Serialize, Deserialize)]
pub struct ImportView {
    /// Subscriber rows imported.
    pub imported: usize,
    /// VPNs created.
    #[serde(default)]
    pub vpns: usize,
    /// Rows skipped: (line, why).
    pub skipped: Vec<(usize, String)>,
}

/// How many refused rows a refused import lists.
const LISTED_ERRORS: usize = 20;

async fn import(
    State(state): State<ApiState>,
    Query(q): Query<ImportQuery>,
    body: axum::body::Bytes,
) -> Result<Json<ImportView>, ApiError> {
    let sm = component(&state)?.clone();
    let mode = match q.mode.as_deref() {
        None => ImportMode::AllOrNothing,
        Some(text) => text.parse().map_err(ApiError::bad_request)?,
    };
    // Validating and applying a large file holds the core for seconds: not on a runtime worker.
    let service = sm.service.clone();
    let submitted = tokio::task::spawn_blocking(move || {
        service.submit_with(|core| {
            match core.import_csv(std::io::Cursor::new(&body[..]), mode, |_| {}) {
                Ok(mut report) => {
                    let changes = std::mem::take(&mut report.changes);
                    Ok((report, changes))
                }
                Err(CsvError::Refused(rows)) => {
                    let mut detail = format!("{} invalid rows, nothing imported:", rows.len());
                    for row in rows.iter().take(LISTED_ERRORS) {
                        detail.push_str(&format!("\n{row}"));
                    }
                    if rows.len() > LISTED_ERRORS {
                        detail.push_str(&format!("\n… and {} more", rows.len() - LISTED_ERRORS));
                    }
                    Err(SmError::invalid(detail))
                }
                Err(e) => Err(SmError::from(e)),
            }
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("import task: {e}")))?;
    let (report, pending) = submitted.map_err(api_error)?;
    for r in pending.wait().await {
        r.map_err(api_error)?;
    }
    Ok(Json(ImportView {
        imported: report.imported,
        vpns: report.vpns,
        skipped: report
            .skipped
            .into_iter()
            .map(|r| (r.line, r.message))
            .collect(),
    }))
}

/// Header of `GET /export` with the number of subscriber rows in the file.
pub const EXPORTED_SUBSCRIBERS: &str = "x-brasa-subscribers";
/// Header of `GET /export` with the number of VPN rows in the file.
pub const EXPORTED_VPNS: &str = "x-brasa-vpns";

async fn export(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let sm = component(&state)?.clone();
    let (text, counts) = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        brasa_subscriber::csv::export(sm.service.core().index(), &mut out).map(|c| (out, c))
    })
    .await
    .map_err(|e| ApiError::internal(format!("export task: {e}")))?
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::HeaderName::from_static(EXPORTED_SUBSCRIBERS),
                counts.subscribers.to_string(),
            ),
            (
                header::HeaderName::from_static(EXPORTED_VPNS),
                counts.vpns.to_string(),
            ),
        ],
        text,
    )
        .into_response())
}

/// Writes the SM families.
pub fn write_metrics(sm: &SmComponent, w: &mut PromWriter) {
    let stats = sm.service.stats();
    w.family(
        "brasa_sm_subscribers",
        "Subscribers per domain.",
        Kind::Gauge,
    );
    for (domain, n) in &stats.domains {
        w.sample("brasa_sm_subscribers", &[("domain", domain)], *n as f64);
    }
    let gauges = [
        ("brasa_sm_vpns", "VPNs.", stats.vpns as f64),
        (
            "brasa_sm_eps_connected",
            "Connected enforcement points.",
            stats.connected_eps as f64,
        ),
        (
            "brasa_sm_store_failed",
            "1 if the store failed and changes are refused.",
            if stats.failed.is_some() { 1.0 } else { 0.0 },
        ),
    ];
    for (name, help, value) in gauges {
        w.family(name, help, Kind::Gauge).sample(name, &[], value);
    }
    let counters = [
        (
            "brasa_sm_ops_applied_total",
            "Operations applied.",
            stats.ops.applied,
        ),
        (
            "brasa_sm_ops_refused_total",
            "Operations refused by validation.",
            stats.ops.refused,
        ),
        (
            "brasa_sm_auto_logouts_total",
            "Automatic logouts.",
            stats.ops.auto_logouts,
        ),
        (
            "brasa_sm_imported_total",
            "Subscribers imported from CSV.",
            stats.ops.imported,
        ),
        (
            "brasa_sm_store_commits_total",
            "Store commits (one fsync each).",
            stats.commits,
        ),
        (
            "brasa_sm_store_committed_changes_total",
            "Change sets made durable.",
            stats.committed_changes,
        ),
        (
            "brasa_sm_store_failures_total",
            "Failed store commits.",
            stats.store_failures,
        ),
    ];
    for (name, help, value) in counters {
        w.family(name, help, Kind::Counter)
            .sample(name, &[], value as f64);
    }
    w.family(
        "brasa_sm_store_commit_seconds_total",
        "Time spent in store commits.",
        Kind::Counter,
    )
    .sample(
        "brasa_sm_store_commit_seconds_total",
        &[],
        stats.commit_micros as f64 / 1e6,
    );

    let views = sm.service.core().ep_views(std::time::Instant::now());
    type EpField = fn(&EpView) -> f64;
    let ep_families: [(&str, &str, Kind, EpField); 9] = [
        (
            "brasa_sm_ep_connected",
            "1 if the EP is connected.",
            Kind::Gauge,
            |v| f64::from(u8::from(v.session.is_some())),
        ),
        (
            "brasa_sm_ep_quarantined",
            "1 if the EP is quarantined.",
            Kind::Gauge,
            |v| f64::from(u8::from(v.quarantine == QuarantineState::Quarantined)),
        ),
        (
            "brasa_sm_ep_backlog",
            "Updates queued for the EP.",
            Kind::Gauge,
            |v| v.backlog as f64,
        ),
        (
            "brasa_sm_ep_updates_sent_total",
            "Updates sent to the EP.",
            Kind::Counter,
            |v| v.counters.updates_sent as f64,
        ),
        (
            "brasa_sm_ep_syncs_total",
            "Full syncs of the EP.",
            Kind::Counter,
            |v| v.counters.syncs as f64,
        ),
        (
            "brasa_sm_ep_failures_total",
            "Link failures of the EP.",
            Kind::Counter,
            |v| v.counters.failures as f64,
        ),
        (
            "brasa_sm_ep_quarantines_total",
            "Quarantines of the EP.",
            Kind::Counter,
            |v| v.counters.quarantines as f64,
        ),
        (
            "brasa_sm_ep_pulls_total",
            "Pull requests of the EP.",
            Kind::Counter,
            |v| v.counters.pulls as f64,
        ),
        (
            "brasa_sm_ep_pull_hits_total",
            "Pull requests that found a subscriber.",
            Kind::Counter,
            |v| v.counters.pull_hits as f64,
        ),
    ];
    for (name, help, kind, field) in ep_families {
        w.family(name, help, kind);
        for v in &views {
            w.sample(name, &[("ep", &v.id), ("domain", &v.domain)], field(v));
        }
    }
    if let Some(r) = &sm.radius_events {
        use std::sync::atomic::Ordering::Relaxed;
        let name = "brasa_sm_radius_events_total";
        w.family(
            name,
            "RADIUS accounting login/logout events by outcome.",
            Kind::Counter,
        );
        for (outcome, value) in [
            ("received", r.received.load(Relaxed)),
            ("dropped", r.dropped.load(Relaxed)),
            ("applied", r.applied.load(Relaxed)),
            ("refused", r.refused.load(Relaxed)),
        ] {
            w.sample(name, &[("outcome", outcome)], value as f64);
        }
    }
}
