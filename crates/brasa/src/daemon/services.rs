//! The service data plane in `brasa run`: `[dataplane]` (the same keys as `brasa dataplane`,
//! plus `encap` on access ports), the static services of `[service]`, `[filter]` and `[qos]`,
//! the running configuration ([`ServiceManager`]) and its management API
//! (`/api/v1/services/…`) and metrics.
//!
//! The workers (brasa-dataplane's `io::worker`) run one service stage, shared by all of them,
//! in front of the CAFE stages; the manager installs table snapshots on it as jobs of the
//! first worker, adds and removes the TAP ports of IES and VPRN interfaces at run time, and
//! executes kernel plans over rtnetlink.

use super::dataplane::{self as dp_daemon, DataplaneSection, PortEncapName};
use crate::common::config::{ConfigError, Source};
use crate::common::mgmt::ApiError;
use crate::common::prom::{Kind, PromWriter};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use brasa_dataplane::control;
use brasa_dataplane::io::worker::{self, Handle, StageFactory};
use brasa_dataplane::pcc::{PccDefaults, PccStage};
use brasa_dataplane::pipeline::{PortId, Shared, Stage};
use brasa_dataplane::service::{
    Punted, ServiceStage, ServiceStageConfig, ServiceTables, TriggerThrottle,
};
use brasa_services::model::{AdminState, FilterKind, ServiceBody};
use brasa_services::toml::{FilterSection, QosSection, ServiceSection, ServicesToml};
use brasa_services::{Change, Encapsulation, Environment, Origin, PortMap, PortName, Ports};
use brasa_services_net::{ApplyError, Kernel, ServiceManager, ServicePlane, TapHost};
use serde::{Deserialize, Serialize};
use serde_spanned::Spanned;
use std::collections::BTreeMap;
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A checked service data plane configuration.
pub struct ServicesResolved {
    /// `[dataplane]`.
    pub dataplane: DataplaneSection,
    /// The access ports and their encapsulations.
    pub env: Environment,
    /// Outer TPIDs of access ports that set one.
    pub tpids: BTreeMap<String, u16>,
    /// SR OS port names → Linux interfaces for the text form.
    pub port_map: PortMap,
    /// The static services, filters and QoS policies (one transaction at start).
    pub changes: Vec<Change>,
}

impl ServicesResolved {
    /// The kind of each service the static configuration names, by id.
    pub fn static_kinds(&self) -> BTreeMap<u32, brasa_services::model::ServiceKind> {
        self.changes
            .iter()
            .filter_map(|change| match &change.edit {
                brasa_services::Edit::Service { id, kind, .. } => Some((*id, *kind)),
                _ => None,
            })
            .collect()
    }
}

/// Checks `[dataplane]` and the static services against each other: every error names
/// `file:line:col`.
pub fn resolve(
    source: &Source,
    dataplane: Option<Spanned<DataplaneSection>>,
    service: Option<ServiceSection>,
    filter: Option<FilterSection>,
    qos: Option<QosSection>,
) -> Result<Option<ServicesResolved>, ConfigError> {
    let any_services = service.is_some() || filter.is_some() || qos.is_some();
    let Some(dataplane) = dataplane else {
        if any_services {
            return Err(source.error_at_path(
                "service",
                "services, filters and QoS policies need a [dataplane] section with the access ports",
            ));
        }
        return Ok(None);
    };
    dp_daemon::validate(source, &dataplane)?;
    let section = dataplane.into_inner();
    let mut ports = Vec::new();
    let mut tpids = BTreeMap::new();
    for interface in &section.interfaces {
        let Some(encap) = interface.encap else {
            continue;
        };
        let name = interface.name.get_ref();
        let port = PortName::new(name)
            .map_err(|err| source.error_at(interface.name.span(), err.to_string()))?;
        ports.push((
            port,
            match encap {
                PortEncapName::Null => Encapsulation::Null,
                PortEncapName::Dot1q => Encapsulation::Dot1q,
                PortEncapName::Qinq => Encapsulation::Qinq,
            },
        ));
        if let Some(tpid) = &interface.outer_tpid {
            if let Some(value) = dp_daemon::parse_tpid(tpid.get_ref()) {
                tpids.insert(name.clone(), value);
            }
        }
    }
    let env = Environment::new(ports.into_iter().collect::<Ports>());
    let services = ServicesToml {
        service: service.unwrap_or_default(),
        filter: filter.unwrap_or_default(),
        qos: qos.unwrap_or_default(),
    };
    let changes = services
        .changes()
        .map_err(|err| source.error_at(err.span.clone(), err.message))?;
    // The static services must make a valid configuration on their own.
    if let Err(err) = brasa_services::ServiceConfig::new().prepare(&changes, &env) {
        return Err(match &err.origin {
            Origin::Toml(span) => source.error_at(span.clone(), err.error.to_string()),
            _ => source.error_at_path("service", err.to_string()),
        });
    }
    Ok(Some(ServicesResolved {
        port_map: services.service.port_map.clone(),
        dataplane: section,
        env,
        tpids,
        changes,
    }))
}

/// The data plane as the service manager sees it: ports by name (the configured ones and the
/// TAPs of IP interfaces), and table installation as a job on the first worker.
pub struct DataplanePlane {
    handle: Handle,
    stage: Shared<ServiceStage>,
    ports: Mutex<BTreeMap<String, PortId>>,
    tpids: BTreeMap<String, u16>,
}

impl DataplanePlane {
    fn ports(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PortId>> {
        self.ports
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl TapHost for DataplanePlane {
    fn create_tap(&self, name: &str) -> Result<(), String> {
        let id = self
            .handle
            .add_tap_port(name)
            .map_err(|err| format!("TAP {name}: {err}"))?;
        self.ports().insert(name.to_string(), id);
        Ok(())
    }

    fn delete_tap(&self, name: &str) -> Result<(), String> {
        self.handle
            .remove_port(name)
            .map_err(|err| format!("TAP {name}: {err}"))?;
        self.ports().remove(name);
        Ok(())
    }
}

impl ServicePlane for DataplanePlane {
    fn port_id(&self, name: &str) -> Option<PortId> {
        self.ports().get(name).copied()
    }

    fn outer_tpid(&self, name: &str) -> u16 {
        self.tpids
            .get(name)
            .copied()
            .unwrap_or(brasa_dataplane::wire::EtherType::VLAN)
    }

    fn install(&self, tables: Arc<ServiceTables>) -> Result<(), String> {
        let (tx, rx) = std::sync::mpsc::channel();
        let stage = self.stage.clone();
        self.handle
            .submit(Box::new(move |_, now| {
                stage.lock().install(tables, now);
                let _ = tx.send(());
            }))
            .map_err(|err| err.to_string())?;
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the data plane worker did not answer".to_string())
    }
}

/// The running service data plane.
pub struct ServicesComponent {
    /// The running configuration.
    pub manager: Arc<ServiceManager>,
    handle: Handle,
    stage: Shared<ServiceStage>,
    pcc: Option<Shared<PccStage>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    punted: Arc<AtomicU64>,
    /// Where capture-SAP frames go once the dynamic data services run.
    punt_sink: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Vec<Punted>>>,
    throttle: Arc<TriggerThrottle>,
}

impl ServicesComponent {
    /// Runs `f` on the service stage, between two batches of the first worker and with its
    /// clock, and awaits its result.
    pub async fn on_stage<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ServiceStage, u64) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        on_shared(&self.handle, &self.stage, f).await
    }

    /// The PCC stage the workers run (on the IP interfaces and the other ports), when
    /// `[dataplane.subscribers]` is configured.
    pub fn pcc(&self) -> Option<&Shared<PccStage>> {
        self.pcc.as_ref()
    }

    /// Hands every later capture-SAP frame to `sink` (the dynamic data services); set once.
    pub fn set_punt_sink(&self, sink: tokio::sync::mpsc::UnboundedSender<Vec<Punted>>) {
        let _ = self.punt_sink.set(sink);
    }

    /// The data trigger throttle of the capture SAPs: whoever takes the punted frames releases
    /// each frame's mark once no trigger of it is in progress.
    pub fn trigger_throttle(&self) -> &Arc<TriggerThrottle> {
        &self.throttle
    }

    /// The data plane's workers.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Takes the services' routes, namespaces and TAPs out of the kernel, then stops the
    /// worker (it puts back the sysctls it changed).
    pub async fn shutdown(&self) {
        if let Err(error) = self.manager.teardown().await {
            tracing::warn!(%error, "could not remove the services from the kernel; the next start does");
        }
        self.handle.stop();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Runs `f` on a stage every worker shares, between two batches of the first worker (the
/// one that runs shared stages' jobs) and with its clock, and awaits its result.
pub async fn on_shared<S: Stage + Send + 'static, R: Send + 'static>(
    handle: &Handle,
    stage: &Shared<S>,
    f: impl FnOnce(&mut S, u64) -> R + Send + 'static,
) -> Result<R, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let stage = stage.clone();
    handle
        .submit(Box::new(move |_, now| {
            let _ = tx.send(f(&mut stage.lock(), now));
        }))
        .map_err(|err| ApiError::internal(err.to_string()))?;
    rx.await
        .map_err(|_| ApiError::internal("the data plane worker stopped"))
}

/// Starts the data plane worker and the manager, removes what a crash left in the kernel,
/// applies the static services, then replays the journal of applied changes. With
/// `subscribers` (the PCC defaults of `[dataplane.subscribers]`) the workers also run a
/// PCC stage, on the IP interfaces' traffic (see `ServiceStage::set_subscriber_pcc`) and
/// after `classify` on the other ports.
pub async fn start(
    resolved: ServicesResolved,
    data_dir: &FsPath,
    subscribers: Option<PccDefaults>,
) -> anyhow::Result<Arc<ServicesComponent>> {
    let services_dir = data_dir.join("services");
    std::fs::create_dir_all(&services_dir)
        .map_err(|err| anyhow::anyhow!("cannot create {}: {err}", services_dir.display()))?;
    let stage = ServiceStageConfig {
        fdb_seed: {
            use rand::RngCore;
            rand::rng().next_u64()
        },
        ..ServiceStageConfig::default()
    };
    let pcc = subscribers.map(|defaults| Shared::new(PccStage::new(defaults)));
    let mut stage = ServiceStage::new(stage);
    stage.set_subscriber_pcc(pcc.clone());
    let throttle = stage.trigger_throttle();
    let stage = Shared::new(stage);
    let stages = {
        let stage = stage.clone();
        let pcc = pcc.clone();
        StageFactory::new(move || match &pcc {
            Some(pcc) => brasa_dataplane::stages::subscriber_stages(stage.clone(), pcc.clone()),
            None => brasa_dataplane::stages::service_stages(stage.clone()),
        })
    };
    let (worker_config, tuning) = dp_daemon::worker_setup(&resolved.dataplane, stages);
    let ports: BTreeMap<String, PortId> = worker_config
        .ports
        .iter()
        .enumerate()
        .filter_map(|(index, port)| Some((port.name.clone(), PortId::try_from(index).ok()?)))
        .collect();
    let (handle, thread) = worker::start_tuned(worker_config, tuning)
        .map_err(|err| anyhow::anyhow!("starting the data plane: {err}"))?;
    let plane = Arc::new(DataplanePlane {
        handle: handle.clone(),
        stage: stage.clone(),
        ports: Mutex::new(ports),
        tpids: resolved.tpids,
    });
    let started = async {
        let kernel = Kernel::connect(plane.clone() as Arc<dyn TapHost>)?;
        let manager = Arc::new(ServiceManager::new(
            resolved.env,
            resolved.port_map,
            kernel,
            plane.clone(),
            Some(services_dir.join("journal.jsonl")),
        ));
        let stale = manager.reconcile().await?;
        if stale > 0 {
            tracing::info!(routes = stale, "removed the routes an earlier run left");
        }
        manager.apply(&resolved.changes, false).await?;
        for (line, error) in manager.replay().await {
            tracing::warn!(line, %error, "skipped a journalled service change");
        }
        // Services that come and go (dynamic services) grow the journal without bound; it is
        // compacted at start when due and then checked every few seconds.
        let compacting = manager.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                if let Err(error) = compacting.compact_journal_if_due().await {
                    tracing::error!(%error, "could not compact the service journal");
                }
            }
        });
        anyhow::Ok(manager)
    };
    let manager = match started.await {
        Ok(manager) => manager,
        Err(err) => {
            handle.stop();
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            return Err(err.context("services"));
        }
    };
    let component = Arc::new(ServicesComponent {
        manager,
        handle,
        stage,
        pcc,
        thread: Mutex::new(Some(thread)),
        punted: Arc::default(),
        punt_sink: std::sync::OnceLock::new(),
        throttle,
    });
    // Capture-SAP frames go to the dynamic data services; without them they are counted and
    // released, throttle marks included, so the bounded queue never blocks new triggers.
    let drain = component.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            let keep = drain.punt_sink.get().is_some();
            let drained = drain
                .on_stage(move |stage, _| {
                    let mut frames = Vec::new();
                    let throttle = stage.trigger_throttle();
                    let count = stage.drain_punts(|punted| {
                        if keep {
                            frames.push(punted.clone());
                        } else if let Some(key) = punted.throttle {
                            throttle.release(key);
                        }
                    });
                    (count, frames)
                })
                .await;
            match drained {
                Ok((count, frames)) => {
                    drain.punted.fetch_add(count as u64, Ordering::Relaxed);
                    if let (Some(sink), false) = (drain.punt_sink.get(), frames.is_empty()) {
                        let _ = sink.send(frames);
                    }
                }
                Err(_) => return,
            }
        }
    });
    Ok(component)
}

/// Routes under `/api/v1/services`.
pub fn routes() -> Router<super::ApiState> {
    Router::new()
        .route("/", get(list))
        .route("/config", get(config_text))
        .route("/apply", post(apply))
        .route("/filters/{kind}/{id}", get(filter))
        .route("/{id}", get(one).delete(remove))
        .route("/{id}/fdb", get(fdb))
        .route("/{id}/clear-statistics", post(clear))
}

fn component(state: &super::ApiState) -> Result<&Arc<ServicesComponent>, ApiError> {
    state.services.as_ref().ok_or_else(|| {
        ApiError::not_found("the service data plane is not enabled in this daemon's config ([dataplane] with access ports)")
    })
}

fn apply_error(error: ApplyError) -> ApiError {
    match error {
        ApplyError::Parse(_) | ApplyError::Invalid(_) | ApplyError::Compile(_) => {
            ApiError::bad_request(error.to_string())
        }
        ApplyError::Kernel(_) => ApiError::conflict(error.to_string()),
        ApplyError::Install(_) => ApiError::internal(error.to_string()),
    }
}

/// `POST /apply` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// Text-form commands.
    pub text: String,
    /// Check only.
    #[serde(default)]
    pub dry_run: bool,
}

async fn apply(
    State(state): State<super::ApiState>,
    Json(request): Json<ApplyRequest>,
) -> Result<Json<brasa_services_net::ApplySummary>, ApiError> {
    let services = component(&state)?;
    services
        .manager
        .apply_text(&request.text, request.dry_run)
        .await
        .map(Json)
        .map_err(apply_error)
}

async fn config_text(State(state): State<super::ApiState>) -> Result<String, ApiError> {
    Ok(component(&state)?.manager.export().await)
}

/// A SAP's counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SapCountersView {
    /// Frames received.
    pub rx_packets: u64,
    /// Octets received.
    pub rx_octets: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Octets sent.
    pub tx_octets: u64,
    /// Frames punted to the control plane (capture SAPs).
    pub punted: u64,
    /// MACs learned or static on it (VPLS).
    pub macs: u32,
    /// Drops by reason.
    pub drops: BTreeMap<String, u64>,
}

impl From<brasa_dataplane::service::SapCounters> for SapCountersView {
    fn from(c: brasa_dataplane::service::SapCounters) -> Self {
        Self {
            rx_packets: c.rx_packets,
            rx_octets: c.rx_octets,
            tx_packets: c.tx_packets,
            tx_octets: c.tx_octets,
            punted: c.punted,
            macs: c.macs,
            drops: c
                .drops
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }
}

/// A service's counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceCountersView {
    /// Frames received (its SAPs and tunnel).
    pub rx_packets: u64,
    /// Octets received.
    pub rx_octets: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Octets sent.
    pub tx_octets: u64,
    /// Frames flooded (VPLS).
    pub flooded: u64,
    /// MACs learned (VPLS).
    pub learned: u64,
    /// MACs aged out (VPLS).
    pub aged: u64,
    /// MAC moves (VPLS).
    pub moves: u64,
    /// MACs in its table (VPLS).
    pub macs: u32,
    /// Drops by reason.
    pub drops: BTreeMap<String, u64>,
}

impl From<brasa_dataplane::service::ServiceCounters> for ServiceCountersView {
    fn from(c: brasa_dataplane::service::ServiceCounters) -> Self {
        Self {
            rx_packets: c.rx_packets,
            rx_octets: c.rx_octets,
            tx_packets: c.tx_packets,
            tx_octets: c.tx_octets,
            flooded: c.flooded,
            learned: c.learned,
            aged: c.aged,
            moves: c.moves,
            macs: c.macs,
            drops: c
                .drops
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }
}

/// Hits of one filter entry (`entry` absent: the default action).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HitView {
    /// The entry id.
    pub entry: Option<u32>,
    /// Packets that hit it.
    pub packets: u64,
    /// Octets that hit it.
    pub octets: u64,
}

/// A SAP as `show service` reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SapView {
    /// `eth1:100.20`.
    pub sap: String,
    /// IES/VPRN interface it sits under.
    pub interface: Option<String>,
    /// `up` or `down` (administrative).
    pub admin: String,
    /// A VPLS capture SAP.
    pub capture: bool,
    /// Counters (absent when the data plane does not carry the SAP).
    pub counters: Option<SapCountersView>,
}

/// A service as `show service` reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceView {
    /// Service id.
    pub id: u32,
    /// `epipe`, `vpls`, `ies`, `vprn`.
    pub kind: String,
    /// Customer id.
    pub customer: u32,
    /// Description.
    pub description: Option<String>,
    /// `up` or `down` (administrative).
    pub admin: String,
    /// `up` when the service can forward (admin up and complete).
    pub oper: String,
    /// Its SAPs.
    pub saps: Vec<SapView>,
    /// Service counters.
    pub counters: Option<ServiceCountersView>,
}

fn admin(state: AdminState) -> String {
    if state == AdminState::Up {
        "up"
    } else {
        "down"
    }
    .to_string()
}

async fn views(
    services: &ServicesComponent,
    only: Option<u32>,
) -> Result<Vec<ServiceView>, ApiError> {
    type Lookup = (u32, Vec<(String, Option<brasa_dataplane::sap::SapId>)>);
    let (mut views, lookups) = services
        .manager
        .read(|config, compiler| {
            let ports = |name: &str| services.manager_port(name);
            let mut views = Vec::new();
            let mut lookups: Vec<Lookup> = Vec::new();
            for (id, service) in config.services() {
                if only.is_some_and(|wanted| wanted != id) {
                    continue;
                }
                let mut saps = Vec::new();
                let mut keys = Vec::new();
                for (sap_id, sap) in config.service_saps(id) {
                    saps.push(SapView {
                        sap: sap_id.to_string(),
                        interface: sap.interface.clone(),
                        admin: admin(sap.admin),
                        capture: sap.capture,
                        counters: None,
                    });
                    keys.push((sap_id.to_string(), compiler.dataplane_sap(sap_id, &ports)));
                }
                views.push(ServiceView {
                    id,
                    kind: service.kind().to_string(),
                    customer: service.customer,
                    description: service.description.clone(),
                    admin: admin(service.admin),
                    oper: if config.is_operational(id) {
                        "up"
                    } else {
                        "down"
                    }
                    .to_string(),
                    saps,
                    counters: None,
                });
                lookups.push((id, keys));
            }
            (views, lookups)
        })
        .await;
    let counters = services
        .on_stage(move |stage, _| {
            lookups
                .into_iter()
                .map(|(id, saps)| {
                    let sap_counters: Vec<_> = saps
                        .into_iter()
                        .map(|(_, key)| {
                            key.and_then(|key| stage.sap_counters(&key))
                                .map(SapCountersView::from)
                        })
                        .collect();
                    (
                        stage.service_counters(id).map(ServiceCountersView::from),
                        sap_counters,
                    )
                })
                .collect::<Vec<_>>()
        })
        .await?;
    for (view, (service, saps)) in views.iter_mut().zip(counters) {
        view.counters = service;
        for (sap, counters) in view.saps.iter_mut().zip(saps) {
            sap.counters = counters;
        }
    }
    Ok(views)
}

impl ServicesComponent {
    fn manager_port(&self, name: &str) -> Option<PortId> {
        // The plane's port table, through the worker's configured interfaces.
        self.manager.plane_port(name)
    }
}

async fn list(State(state): State<super::ApiState>) -> Result<Json<Vec<ServiceView>>, ApiError> {
    Ok(Json(views(component(&state)?, None).await?))
}

async fn one(
    State(state): State<super::ApiState>,
    Path(id): Path<u32>,
) -> Result<Json<ServiceView>, ApiError> {
    views(component(&state)?, Some(id))
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no service {id}")))
}

/// The text that removes service `id` and everything under it.
pub(super) fn removal_text(config: &brasa_services::ServiceConfig, id: u32) -> Option<String> {
    let service = config.service(id)?;
    let kind = service.kind();
    let mut text = format!("configure service\n{kind} {id}\nshutdown\n");
    if let ServiceBody::Ies(routed) | ServiceBody::Vprn(routed) = &service.body {
        for prefix in routed.static_routes.keys() {
            text.push_str(&format!("no static-route-entry {prefix}\n"));
        }
        for (name, interface) in &routed.interfaces {
            text.push_str(&format!("interface {name:?}\n"));
            if let Some(sap) = &interface.sap {
                text.push_str(&format!("no sap {sap}\n"));
            }
            text.push_str(&format!("exit\nno interface {name:?}\n"));
        }
    } else {
        for (sap, _) in config.service_saps(id) {
            text.push_str(&format!("no sap {sap}\n"));
        }
    }
    text.push_str(&format!("exit\nno {kind} {id}\nexit\n"));
    Some(text)
}

async fn remove(
    State(state): State<super::ApiState>,
    Path(id): Path<u32>,
) -> Result<Json<brasa_services_net::ApplySummary>, ApiError> {
    let services = component(&state)?;
    let text = services
        .manager
        .read(|config, _| removal_text(config, id))
        .await
        .ok_or_else(|| ApiError::not_found(format!("no service {id}")))?;
    services
        .manager
        .apply_text(&text, false)
        .await
        .map(Json)
        .map_err(apply_error)
}

/// A MAC of a VPLS, as `show service fdb` reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FdbView {
    /// The MAC address.
    pub mac: String,
    /// The SAP it was learned on (or is static on).
    pub sap: String,
    /// A static MAC.
    pub is_static: bool,
    /// Seconds since it was last seen.
    pub age_secs: u32,
}

async fn fdb(
    State(state): State<super::ApiState>,
    Path(id): Path<u32>,
) -> Result<Json<Vec<FdbView>>, ApiError> {
    let services = component(&state)?;
    let saps = services
        .manager
        .read(|config, compiler| {
            config.service(id).map(|_| {
                let ports = |name: &str| services.manager_port(name);
                config
                    .service_saps(id)
                    .filter_map(|(sap, _)| {
                        Some((compiler.dataplane_sap(sap, &ports)?, sap.to_string()))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .await
        .ok_or_else(|| ApiError::not_found(format!("no service {id}")))?;
    let entries = services
        .on_stage(move |stage, now| stage.fdb(id, now))
        .await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|entry| FdbView {
                mac: entry.mac.to_string(),
                sap: saps
                    .iter()
                    .find(|(key, _)| *key == entry.sap)
                    .map_or_else(|| format!("{:?}", entry.sap), |(_, name)| name.clone()),
                is_static: entry.is_static,
                age_secs: entry.age_secs,
            })
            .collect(),
    ))
}

async fn clear(
    State(state): State<super::ApiState>,
    Path(id): Path<u32>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let services = component(&state)?;
    let saps = services
        .manager
        .read(|config, compiler| {
            config.service(id).map(|_| {
                let ports = |name: &str| services.manager_port(name);
                config
                    .service_saps(id)
                    .filter_map(|(sap, _)| compiler.dataplane_sap(sap, &ports))
                    .collect::<Vec<_>>()
            })
        })
        .await
        .ok_or_else(|| ApiError::not_found(format!("no service {id}")))?;
    services
        .on_stage(move |stage, _| {
            stage.clear_service(id);
            for sap in &saps {
                stage.clear_sap(sap);
            }
        })
        .await?;
    Ok(Json(serde_json::json!({"result": "ok"})))
}

/// A filter with its entries' hits, as `show filter` reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilterView {
    /// `ip-filter 10`.
    pub filter: String,
    /// Description.
    pub description: Option<String>,
    /// The default action.
    pub default_action: String,
    /// Hits per entry id (`null` entry: the default action).
    pub hits: Vec<HitView>,
}

async fn filter(
    State(state): State<super::ApiState>,
    Path((kind, id)): Path<(String, u32)>,
) -> Result<Json<FilterView>, ApiError> {
    let services = component(&state)?;
    let (config_kind, dp_kind) = match kind.as_str() {
        "ip" => (FilterKind::Ip, brasa_dataplane::service::FilterKind::Ip),
        "ipv6" => (FilterKind::Ipv6, brasa_dataplane::service::FilterKind::Ipv6),
        "mac" => (FilterKind::Mac, brasa_dataplane::service::FilterKind::Mac),
        other => {
            return Err(ApiError::bad_request(format!(
                "filter kind {other:?}: expected ip, ipv6 or mac"
            )))
        }
    };
    let reference = brasa_services::model::FilterRef {
        kind: config_kind,
        id,
    };
    let (description, default_action) = services
        .manager
        .read(|config, _| {
            config.filter(reference).map(|f| {
                (
                    f.description.clone(),
                    format!("{:?}", f.default_action).to_lowercase(),
                )
            })
        })
        .await
        .ok_or_else(|| ApiError::not_found(format!("no {reference}")))?;
    let hits = services
        .on_stage(move |stage, _| {
            stage
                .filter_counters(dp_kind, id)
                .map(|c| {
                    c.entries
                        .into_iter()
                        .map(|hit| HitView {
                            entry: hit.entry,
                            packets: hit.packets,
                            octets: hit.octets,
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .await?;
    Ok(Json(FilterView {
        filter: reference.to_string(),
        description,
        default_action,
        hits,
    }))
}

/// A counter metric: name, help, and the counter it reads.
type CounterFamily<T> = (&'static str, &'static str, fn(&T) -> u64);

/// Service and SAP counters for `/metrics`.
pub async fn write_metrics(services: &ServicesComponent, w: &mut PromWriter) {
    let handle = services.handle.clone();
    let stats = tokio::task::spawn_blocking(move || handle.call(|p, _| control::stats(p))).await;
    if let Some(stats) = stats.ok().and_then(Result::ok).and_then(control::merged) {
        dp_daemon::write_port_metrics(w, &stats);
    }
    let Ok(views) = views(services, None).await else {
        return;
    };
    let counter = |w: &mut PromWriter, name: &str, help: &str| {
        w.family(name, help, Kind::Counter);
    };
    let families: [CounterFamily<SapCountersView>; 4] = [
        (
            "brasa_sap_rx_packets_total",
            "Frames received on a SAP.",
            |c| c.rx_packets,
        ),
        (
            "brasa_sap_rx_octets_total",
            "Octets received on a SAP.",
            |c| c.rx_octets,
        ),
        ("brasa_sap_tx_packets_total", "Frames sent on a SAP.", |c| {
            c.tx_packets
        }),
        ("brasa_sap_tx_octets_total", "Octets sent on a SAP.", |c| {
            c.tx_octets
        }),
    ];
    for (name, help, value) in families {
        counter(w, name, help);
        for view in &views {
            for sap in &view.saps {
                if let Some(counters) = &sap.counters {
                    w.sample(
                        name,
                        &[("service", &view.id.to_string()), ("sap", &sap.sap)],
                        value(counters) as f64,
                    );
                }
            }
        }
    }
    counter(
        w,
        "brasa_sap_drops_total",
        "Frames of a SAP dropped, by reason.",
    );
    for view in &views {
        for sap in &view.saps {
            for (reason, count) in sap.counters.iter().flat_map(|c| c.drops.iter()) {
                w.sample(
                    "brasa_sap_drops_total",
                    &[
                        ("service", &view.id.to_string()),
                        ("sap", &sap.sap),
                        ("reason", reason),
                    ],
                    *count as f64,
                );
            }
        }
    }
    let service_families: [CounterFamily<ServiceCountersView>; 4] = [
        (
            "brasa_service_rx_packets_total",
            "Frames received by a service.",
            |c| c.rx_packets,
        ),
        (
            "brasa_service_tx_packets_total",
            "Frames sent by a service.",
            |c| c.tx_packets,
        ),
        (
            "brasa_service_flooded_total",
            "Frames a VPLS flooded.",
            |c| c.flooded,
        ),
        ("brasa_service_learned_total", "MACs a VPLS learned.", |c| {
            c.learned
        }),
    ];
    for (name, help, value) in service_families {
        counter(w, name, help);
        for view in &views {
            if let Some(counters) = &view.counters {
                w.sample(
                    name,
                    &[("service", &view.id.to_string())],
                    value(counters) as f64,
                );
            }
        }
    }
    w.family("brasa_service_macs", "MACs in a VPLS's table.", Kind::Gauge);
    for view in &views {
        if let Some(counters) = &view.counters {
            w.sample(
                "brasa_service_macs",
                &[("service", &view.id.to_string())],
                f64::from(counters.macs),
            );
        }
    }
    w.family(
        "brasa_service_oper_up",
        "1 when a service can forward (admin up and complete).",
        Kind::Gauge,
    );
    for view in &views {
        w.sample(
            "brasa_service_oper_up",
            &[("service", &view.id.to_string()), ("kind", &view.kind)],
            if view.oper == "up" { 1.0 } else { 0.0 },
        );
    }
    w.family(
        "brasa_capture_punted_total",
        "Capture-SAP frames taken from the data plane (to the dynamic data services when they run).",
        Kind::Counter,
    )
    .sample(
        "brasa_capture_punted_total",
        &[],
        services.punted.load(Ordering::Relaxed) as f64,
    );
}
