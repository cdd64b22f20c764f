//! The subscriber manager component of `brasa run`: start-up, management API routes under
//! `/api/v1/sm/…` and Prometheus metrics.

use super::sm_config::{SmResolved, StoreLocation};
use super::sm_ha::{self, SmHa};
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
use brasa_sm_net::{BgpLeg, ServiceStats, SmServer, SmService};
use brasa_subscriber::csv::{CsvError, ImportMode};
use brasa_subscriber::{Login, MplsVpnEntry, Subscriber, Vpn, VpnKind};
use brasa_subscriber_pg::lease::Fence;
use brasa_subscriber_pg::PgStore;
use brasa_subsvc::SubscriberServices;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::sync::RwLock;

/// The running component.
pub struct SmComponent {
    /// The service.
    pub service: SmService,
    /// Where the gRPC LEG API and EP protocol listen.
    pub grpc: SocketAddr,
    /// RADIUS login-event counters, when configured.
    pub radius_events: Option<Arc<LoginEventStats>>,
    /// The BGP LEG, when configured (taken at shutdown).
    pub bgp: RwLock<Option<BgpLeg>>,
    /// Active/standby, when configured.
    pub ha: Option<Arc<SmHa>>,
    _server: SmServer,
}

impl SmComponent {
    /// Stops the BGP LEG (its events stop being applied before its sessions close, so the
    /// learnt routes stay stored), then the service (commits finished, store closed).
    pub async fn shutdown(&self) {
        if let Some(leg) = self.bgp.write().await.take() {
            leg.shutdown().await;
        }
        self.service.shutdown().await;
    }
}

/// Opens the store (`<data_dir>/subscriber` or PostgreSQL), restores the database, starts the gRPC server and, when
/// configured, wraps the observed RADIUS servers' policies with the login-event observer (so
/// this must run before the RADIUS engine is built).
pub async fn start(
    resolved: SmResolved,
    radius: Option<&mut (EngineConfig, Arc<Dictionary>)>,
) -> anyhow::Result<Arc<SmComponent>> {
    let (service, fence) = match (&resolved.ha, &resolved.store) {
        (Some(ha), StoreLocation::Postgres(url)) => {
            // A standby first: the records are read once this node holds the lease.
            let fence = Fence::default();
            let (url, lease, f) = (url.clone(), ha.lease, fence.clone());
            let retention = ha.change_log_retention;
            let store = tokio::task::spawn_blocking(move || {
                PgStore::connect(&url)?
                    .with_change_log_retention(retention)
                    .with_fence(f, lease)
            })
            .await?
            .map_err(|e| anyhow::anyhow!("subscriber store {}: {e}", resolved.store))?;
            let why = format!(
                "this subscriber manager ({}) is a standby and has not yet seen the active one",
                ha.node
            );
            let service = SmService::open_standby(resolved.config, Box::new(store), why)?;
            (service, Some(fence))
        }
        _ => {
            let location = resolved.store.clone();
            let store = tokio::task::spawn_blocking(move || location.open())
                .await?
                .map_err(|e| anyhow::anyhow!("subscriber store {}: {e}", resolved.store))?;
            (SmService::open(resolved.config, store)?, None)
        }
    };
    let server = SmServer::start(service.clone(), resolved.listen).await?;
    let ha = match (resolved.ha, &resolved.store, fence) {
        (Some(ha), StoreLocation::Postgres(url), Some(fence)) => Some(sm_ha::start(
            service.clone(),
            ha,
            url.clone(),
            fence,
            server.local_addr(),
        )?),
        _ => None,
    };
    let bgp = match resolved.bgp_leg {
        Some(speaker) => Some(
            BgpLeg::start(service.clone(), speaker)
                .await
                .map_err(|e| anyhow::anyhow!("subscriber_manager.bgp_leg: {e}"))?,
        ),
        None => None,
    };
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
        bgp: RwLock::new(bgp),
        ha,
        _server: server,
    }))
}

/// `/api/v1/sm/...`
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/statistics", get(statistics))
        .route("/ha", get(ha_status))
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
        .route("/vpns", get(vpns).post(add_vpn))
        .route("/vpns/{name}", get(vpn).delete(remove_vpn))
        .route(
            "/vpns/{name}/mpls",
            post(add_mpls_entries).delete(remove_mpls_entries),
        )
        .route("/bgp/neighbors", get(bgp_neighbors))
        .route("/bgp/routes", get(bgp_routes))
}

fn component(state: &ApiState) -> Result<&Arc<SmComponent>, ApiError> {
    state.sm.as_ref().ok_or_else(|| {
        ApiError::not_found(
            "the subscriber manager is not enabled in this daemon's config ([subscriber_manager])",
        )
    })
}

/// `GET /api/v1/sm/ha`: this node's role, the leader and its fencing token, every node.
async fn ha_status(State(state): State<ApiState>) -> Result<Json<sm_ha::HaStatus>, ApiError> {
    let c = component(&state)?;
    let ha = c.ha.as_ref().ok_or_else(|| {
        ApiError::not_found(
            "this subscriber manager runs alone ([subscriber_manager.ha] is not configured)",
        )
    })?;
    Ok(Json(ha.status()))
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
    /// Network IDs: IP mappings, then `community@VPN`.
    pub mappings: Vec<String>,
    /// `range@VPN` mappings the BGP LEG learnt for the subscriber's communities.
    #[serde(default)]
    pub learned: Vec<String>,
    /// Properties, in order.
    pub properties: Vec<(String, String)>,
    /// EP state, hex.
    pub state: String,
    /// Logged in.
    pub logged_in: bool,
    /// Automatic logout (Unix seconds).
    pub auto_logout: Option<u64>,
    /// Active subscriber services (PCC rules).
    #[serde(default, skip_serializing_if = "SubscriberServices::is_empty")]
    pub services: SubscriberServices,
}

impl From<&Subscriber> for SubscriberView {
    fn from(s: &Subscriber) -> Self {
        SubscriberView {
            name: s.name.as_str().to_owned(),
            domain: s.domain.clone(),
            mappings: brasa_sm::convert::network_id_texts(s),
            learned: s.learned.iter().map(ToString::to_string).collect(),
            properties: s.properties.clone(),
            state: s.state.iter().map(|b| format!("{b:02x}")).collect(),
            logged_in: s.logged_in,
            auto_logout: s.auto_logout,
            services: s.services.clone(),
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
    let op =
        brasa_sm::convert::network_ids(&body.mappings).map(|(mappings, communities)| Op::Login {
            login: Login {
                name: body.name,
                domain: body.domain,
                mappings,
                communities,
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

/// One `RT/RD@PE-IP` of an MPLS/VPN as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct MplsEntryView {
    /// `RT/RD@PE-IP`.
    pub id: String,
    /// Labels set through the SM API, with their ranges.
    pub labels: Vec<(u32, Vec<String>)>,
    /// Labels the BGP LEG learnt, each with the prefixes of the routes carrying it (those are
    /// only in `GET /vpns/{name}`; the list leaves them empty).
    pub learned_labels: Vec<(u32, Vec<String>)>,
}

/// A VPN as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct VpnView {
    /// Name.
    pub name: String,
    /// Domain.
    pub domain: String,
    /// The VLAN-id of a VLAN VPN.
    pub vlan: Option<u16>,
    /// The entries of an MPLS/VPN.
    pub mpls: Vec<MplsEntryView>,
}

impl From<&Vpn> for VpnView {
    fn from(v: &Vpn) -> Self {
        let (vlan, mpls) = match &v.kind {
            VpnKind::Vlan(id) => (Some(*id), Vec::new()),
            VpnKind::Mpls(entries) => (
                None,
                entries
                    .iter()
                    .map(|e: &MplsVpnEntry| MplsEntryView {
                        id: e.id.to_string(),
                        labels: e
                            .labels
                            .iter()
                            .map(|l| (l.label, l.ranges.iter().map(ToString::to_string).collect()))
                            .collect(),
                        learned_labels: e.learned_labels.iter().map(|l| (*l, Vec::new())).collect(),
                    })
                    .collect(),
            ),
        };
        VpnView {
            name: v.name.clone(),
            domain: v.domain.clone(),
            vlan,
            mpls,
        }
    }
}

async fn vpns(State(state): State<ApiState>) -> Result<Json<Vec<VpnView>>, ApiError> {
    let sm = component(&state)?;
    let core = sm.service.core();
    let mut out: Vec<VpnView> = core.index().vpns().map(VpnView::from).collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(out))
}

async fn vpn(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<VpnView>, ApiError> {
    let sm = component(&state)?;
    let core = sm.service.core();
    let index = core.index();
    let vpn = index
        .vpn(&name)
        .ok_or_else(|| ApiError::not_found(format!("no VPN named {name:?}")))?;
    let mut view = VpnView::from(vpn);
    if let VpnKind::Mpls(entries) = &vpn.kind {
        // The ranges behind each learnt label: the prefixes of the routes matching the entry.
        let routes = index
            .learned_routes(Some(&name))
            .map_err(|e| api_error(e.into()))?;
        for r in routes {
            for (entry, e) in view.mpls.iter_mut().zip(entries) {
                let rd = brasa_subscriber::RouteDistinguisher::from_wire(r.route.key.rd);
                let attrs = &r.route.attrs;
                let matches = attrs.next_hop == e.id.pe
                    && (rd == Some(e.id.rd) || attrs.targets.contains(&e.id.rd));
                if let Some(slot) = entry
                    .learned_labels
                    .iter_mut()
                    .find(|(l, _)| matches && *l == r.route.label)
                {
                    slot.1.push(r.route.key.prefix.to_string());
                }
            }
        }
        for entry in &mut view.mpls {
            for (_, ranges) in &mut entry.learned_labels {
                ranges.sort();
                ranges.dedup();
            }
        }
    }
    Ok(Json(view))
}

/// `POST /vpns`: a VLAN VPN (`vlan`) or an MPLS/VPN (`mpls`).
#[derive(Debug, Serialize, Deserialize)]
pub struct VpnBody {
    /// Name.
    pub name: String,
    /// Domain (default `subscribers`).
    pub domain: Option<String>,
    /// VLAN-id.
    pub vlan: Option<u16>,
    /// `RT/RD@PE-IP` entries.
    #[serde(default)]
    pub mpls: Vec<String>,
}

/// `POST /vpns/{name}/mpls`: `RT/RD@PE-IP` entries to add (`DELETE` takes them as the query
/// `entries=A,B`).
#[derive(Debug, Serialize, Deserialize)]
pub struct MplsEntriesBody {
    /// The entries.
    pub entries: Vec<String>,
}

async fn add_vpn(
    State(state): State<ApiState>,
    Json(body): Json<VpnBody>,
) -> Result<Json<ChangeView>, ApiError> {
    let sm = component(&state)?;
    let kind = match (body.vlan, body.mpls.is_empty()) {
        (Some(id), true) => Ok(VpnKind::Vlan(id)),
        (None, false) => brasa_sm::convert::mpls_ids(&body.mpls)
            .map(|ids| VpnKind::Mpls(ids.into_iter().map(MplsVpnEntry::new).collect())),
        _ => Err(SmError::invalid(
            "a VPN has either a VLAN-id or MPLS/VPN entries (RT/RD@PE-IP), not both or neither",
        )),
    };
    let op = kind.map(|kind| {
        Op::AddVpn(Vpn {
            name: body.name,
            domain: body
                .domain
                .unwrap_or_else(|| brasa_subscriber::DEFAULT_DOMAIN.to_owned()),
            kind,
        })
    });
    change(sm, op).await
}

async fn remove_vpn(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<ChangeView>, ApiError> {
    let sm = component(&state)?;
    change(sm, Ok(Op::RemoveVpn(name))).await
}

async fn add_mpls_entries(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Json(body): Json<MplsEntriesBody>,
) -> Result<Json<ChangeView>, ApiError> {
    let sm = component(&state)?;
    let op = brasa_sm::convert::mpls_ids(&body.entries)
        .map(|entries| Op::AddMplsEntries { vpn: name, entries });
    change(sm, op).await
}

#[derive(Deserialize)]
struct EntriesQuery {
    /// `RT/RD@PE-IP` entries, comma-separated.
    entries: String,
}

async fn remove_mpls_entries(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<EntriesQuery>,
) -> Result<Json<ChangeView>, ApiError> {
    let sm = component(&state)?;
    let texts: Vec<String> = q.entries.split(',').map(str::to_owned).collect();
    let op = brasa_sm::convert::mpls_ids(&texts)
        .map(|entries| Op::RemoveMplsEntries { vpn: name, entries });
    change(sm, op).await
}

/// One BGP LEG peer: the speaker's session and counters, and what the SM holds of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NeighborView {
    /// The peer's address.
    pub address: IpAddr,
    /// Session state (`idle`, `connect`, `active`, `open-sent`, `open-confirm`, `established`).
    pub state: String,
    /// The peer's AS and BGP identifier, once a session was established.
    pub remote_as: Option<u32>,
    /// The peer's BGP identifier.
    pub remote_id: Option<String>,
    /// Negotiated hold time, seconds.
    pub hold_time: Option<u16>,
    /// Families negotiated.
    pub families: Vec<String>,
    /// The peer's graceful-restart time, seconds, when graceful restart applies.
    pub graceful_restart: Option<u16>,
    /// Sessions established since start.
    pub sessions: u64,
    /// UPDATE messages received.
    pub updates: u64,
    /// Routes announced.
    pub announced: u64,
    /// Routes withdrawn.
    pub withdrawn: u64,
    /// UPDATEs treated as withdrawals (RFC 7606).
    pub treat_as_withdraw: u64,
    /// The last protocol error.
    pub last_error: Option<String>,
    /// Routes in the speaker's Adj-RIB-In.
    pub routes: usize,
    /// Of which stale (graceful restart).
    pub stale: usize,
    /// Routes the SM holds from this peer.
    pub sm_routes: usize,
    /// Of which match a configured VPN (stored).
    pub sm_matched: usize,
    /// Of which were restored after an SM restart and wait for the End-of-RIB.
    pub sm_restored: usize,
    /// The SM's counters of the peer's events.
    pub leg: brasa_sm::bgp_leg::LegCounters,
    /// Why the last session ended.
    pub last_down: Option<String>,
}

/// Every configured peer, in configuration order (`None` without a BGP LEG).
pub async fn neighbor_views(sm: &SmComponent) -> Option<Vec<NeighborView>> {
    let bgp = sm.bgp.read().await;
    let leg = bgp.as_ref()?;
    let (neighbors, counts) = {
        let core = sm.service.core();
        (
            core.bgp_neighbors().unwrap_or_default(),
            core.index().learned_peers(),
        )
    };
    let mut out = Vec::with_capacity(neighbors.len());
    for n in neighbors {
        let Ok(status) = leg.speaker().peer_status(n.address).await else {
            continue;
        };
        let session = status.session.as_ref();
        let sm_counts = counts
            .iter()
            .find(|(p, _)| *p == n.address)
            .map(|(_, c)| *c)
            .unwrap_or_default();
        out.push(NeighborView {
            address: n.address,
            state: state_name(status.state).into(),
            remote_as: session.map(|s| s.remote_as),
            remote_id: session.map(|s| s.remote_id.to_string()),
            hold_time: session.map(|s| s.hold_time),
            families: session
                .map(|s| s.families.iter().map(|f| f.to_string()).collect())
                .unwrap_or_default(),
            graceful_restart: session.and_then(|s| s.graceful_restart.map(|(t, _)| t)),
            sessions: status.stats.established,
            updates: status.stats.updates,
            announced: status.stats.announced,
            withdrawn: status.stats.withdrawn,
            treat_as_withdraw: status.stats.treat_as_withdraw,
            last_error: status.stats.last_error.as_ref().map(ToString::to_string),
            routes: status.routes,
            stale: status.stale,
            sm_routes: sm_counts.routes,
            sm_matched: sm_counts.matched,
            sm_restored: sm_counts.stale,
            leg: n.counters,
            last_down: n.last_down,
        });
    }
    Some(out)
}

fn state_name(state: brasa_bgp::State) -> &'static str {
    match state {
        brasa_bgp::State::Idle => "idle",
        brasa_bgp::State::Connect => "connect",
        brasa_bgp::State::Active => "active",
        brasa_bgp::State::OpenSent => "open-sent",
        brasa_bgp::State::OpenConfirm => "open-confirm",
        brasa_bgp::State::Established => "established",
    }
}

fn no_bgp_leg() -> ApiError {
    ApiError::not_found(
        "the BGP LEG is not enabled in this daemon's config ([subscriber_manager.bgp_leg])",
    )
}

async fn bgp_neighbors(State(state): State<ApiState>) -> Result<Json<Vec<NeighborView>>, ApiError> {
    let sm = component(&state)?;
    neighbor_views(sm).await.map(Json).ok_or_else(no_bgp_leg)
}

#[derive(Deserialize)]
struct RoutesQuery {
    vpn: Option<String>,
    peer: Option<IpAddr>,
    limit: Option<usize>,
}

/// One route of the BGP LEG as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct RouteView {
    /// The peer.
    pub peer: IpAddr,
    /// Route distinguisher.
    pub rd: String,
    /// Prefix.
    pub prefix: String,
    /// Downstream label.
    pub label: u32,
    /// Next hop (the PE).
    pub next_hop: IpAddr,
    /// Route targets.
    pub route_targets: Vec<String>,
    /// Communities.
    pub communities: Vec<String>,
    /// VPNs the route matches (empty: ignored).
    pub vpns: Vec<String>,
    /// `subscriber@VPN` holding the prefix as a learnt mapping.
    pub subscribers: Vec<String>,
    /// Restored after an SM restart and not announced since.
    pub stale: bool,
}

/// `GET /bgp/routes`: the routes, sorted by peer, prefix and RD, at most `limit`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RoutesReply {
    /// Routes matching the query.
    pub total: usize,
    /// The first `limit` of them.
    pub routes: Vec<RouteView>,
}

async fn bgp_routes(
    State(state): State<ApiState>,
    Query(q): Query<RoutesQuery>,
) -> Result<Json<RoutesReply>, ApiError> {
    let sm = component(&state)?;
    if sm.bgp.read().await.is_none() {
        return Err(no_bgp_leg());
    }
    let limit = q.limit.unwrap_or(10_000);
    let core = sm.service.core();
    let routes = core
        .index()
        .learned_routes(q.vpn.as_deref())
        .map_err(|e| api_error(e.into()))?;
    let mut all: Vec<_> = routes
        .filter(|r| q.peer.is_none_or(|p| r.route.key.peer == p))
        .collect();
    all.sort_by_key(|r| (r.route.key.peer, r.route.key.prefix, r.route.key.rd));
    let total = all.len();
    let routes = all
        .into_iter()
        .take(limit)
        .map(|r| RouteView {
            peer: r.route.key.peer,
            rd: r.route.key.rd_text(),
            prefix: r.route.key.prefix.to_string(),
            label: r.route.label,
            next_hop: r.route.attrs.next_hop,
            route_targets: r
                .route
                .attrs
                .targets
                .iter()
                .map(ToString::to_string)
                .collect(),
            communities: r
                .route
                .attrs
                .communities
                .iter()
                .map(ToString::to_string)
                .collect(),
            vpns: r.vpns.iter().map(|v| (*v).to_owned()).collect(),
            subscribers: r.holders.iter().map(|(v, s)| format!("{s}@{v}")).collect(),
            stale: r.stale,
        })
        .collect();
    Ok(Json(RoutesReply { total, routes }))
}

/// Active/standby: how activations got their records, the follower's work, the replica's lag.
fn write_ha_metrics(status: &sm_ha::HaStatus, w: &mut PromWriter) {
    w.family(
        "brasa_sm_ha_activations_total",
        "Times this node became active, by where its records came from (warm replica or full read).",
        Kind::Counter,
    );
    for (from, n) in [
        ("warm", status.activations.warm),
        ("full", status.activations.full),
    ] {
        w.sample("brasa_sm_ha_activations_total", &[("from", from)], n as f64);
    }
    let f = &status.follower;
    let mut families = vec![
        (
            "brasa_sm_ha_replica_full_loads_total",
            "Reads of every record by the standby's follower.",
            Kind::Counter,
            f.full_loads as f64,
        ),
        (
            "brasa_sm_ha_replica_applied_entries_total",
            "Change-log entries applied to the standby's replica.",
            Kind::Counter,
            f.applied_batches as f64,
        ),
        (
            "brasa_sm_ha_change_log_head",
            "Newest entry of the change log, as last read.",
            Kind::Gauge,
            status.change_log_head as f64,
        ),
    ];
    if let Some(r) = &status.replica {
        families.extend([
            (
                "brasa_sm_ha_replica_position",
                "Last change-log entry the standby's replica reflects.",
                Kind::Gauge,
                r.position as f64,
            ),
            (
                "brasa_sm_ha_replica_behind",
                "Change-log entries the standby's replica has not applied.",
                Kind::Gauge,
                r.behind as f64,
            ),
            (
                "brasa_sm_ha_replica_lag_seconds",
                "Age of the oldest change-log entry the standby's replica has not applied.",
                Kind::Gauge,
                r.lag_ms as f64 / 1e3,
            ),
        ]);
    }
    for (name, help, kind, value) in families {
        w.family(name, help, kind).sample(name, &[], value);
    }
}

/// Writes the SM families (`neighbors`: the BGP LEG's peers, when it runs).
pub fn write_metrics(sm: &SmComponent, neighbors: Option<&[NeighborView]>, w: &mut PromWriter) {
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

    if let Some(ha) = &sm.ha {
        write_ha_metrics(&ha.status(), w);
    }

    if let Some(ha) = &sm.ha {
        write_ha_metrics(&ha.status(), w);
    }

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
    if let Some(neighbors) = neighbors {
        write_bgp_metrics(neighbors, stats.learned_routes, w);
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

/// The BGP LEG's families, per neighbor (`neighbor` label).
fn write_bgp_metrics(neighbors: &[NeighborView], learned_routes: usize, w: &mut PromWriter) {
    w.family(
        "brasa_sm_bgp_learned_routes",
        "Routes the BGP LEG holds in the SM (all peers).",
        Kind::Gauge,
    )
    .sample("brasa_sm_bgp_learned_routes", &[], learned_routes as f64);
    type Field = fn(&NeighborView) -> f64;
    let families: [(&str, &str, Kind, Field); 13] = [
        (
            "brasa_sm_bgp_neighbor_up",
            "1 if the session with the neighbor is Established.",
            Kind::Gauge,
            |n| f64::from(u8::from(n.state == "established")),
        ),
        (
            "brasa_sm_bgp_routes",
            "Routes in the speaker's Adj-RIB-In of the neighbor.",
            Kind::Gauge,
            |n| n.routes as f64,
        ),
        (
            "brasa_sm_bgp_routes_stale",
            "Of those, kept stale by graceful restart.",
            Kind::Gauge,
            |n| n.stale as f64,
        ),
        (
            "brasa_sm_bgp_sm_routes",
            "Routes of the neighbor the SM holds.",
            Kind::Gauge,
            |n| n.sm_routes as f64,
        ),
        (
            "brasa_sm_bgp_sm_routes_matched",
            "Of those, matching a configured VPN (stored).",
            Kind::Gauge,
            |n| n.sm_matched as f64,
        ),
        (
            "brasa_sm_bgp_sm_routes_restored",
            "Of those, restored after an SM restart and waiting for the End-of-RIB.",
            Kind::Gauge,
            |n| n.sm_restored as f64,
        ),
        (
            "brasa_sm_bgp_sessions_total",
            "Sessions established.",
            Kind::Counter,
            |n| n.sessions as f64,
        ),
        (
            "brasa_sm_bgp_updates_total",
            "UPDATE messages received.",
            Kind::Counter,
            |n| n.updates as f64,
        ),
        (
            "brasa_sm_bgp_announced_total",
            "Routes announced.",
            Kind::Counter,
            |n| n.announced as f64,
        ),
        (
            "brasa_sm_bgp_withdrawn_total",
            "Routes withdrawn.",
            Kind::Counter,
            |n| n.withdrawn as f64,
        ),
        (
            "brasa_sm_bgp_treat_as_withdraw_total",
            "UPDATEs treated as withdrawals (RFC 7606).",
            Kind::Counter,
            |n| n.treat_as_withdraw as f64,
        ),
        (
            "brasa_sm_bgp_end_of_rib_total",
            "End-of-RIB markers received.",
            Kind::Counter,
            |n| n.leg.end_of_ribs as f64,
        ),
        (
            "brasa_sm_bgp_restart_timeouts_total",
            "Sweeps of restored routes because the End-of-RIB did not come in time.",
            Kind::Counter,
            |n| n.leg.restart_timeouts as f64,
        ),
    ];
    for (name, help, kind, field) in families {
        w.family(name, help, kind);
        for n in neighbors {
            w.sample(name, &[("neighbor", &n.address.to_string())], field(n));
        }
    }
}
