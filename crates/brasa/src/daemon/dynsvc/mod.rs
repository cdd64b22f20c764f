//! Dynamic data services in `brasa run` (Nokia SR OS dynamic data services): frames punted
//! from capture SAPs become data triggers (brasa-dynsvc's [`Triggers`]), authenticated from a
//! local-auth-db or by RADIUS through a `[[radius.pool]]`; each authorised service's `alc.dyn`
//! script runs on the scripts' own thread and its CLI is applied as one transaction of the
//! [`ServiceManager`]; a failure tears down what the trigger had created and locks it out.
//!
//! One runner task does every script run and apply, in order, so the identifiers and the
//! reference table a run sees cannot change under it. The trigger machine is behind a mutex
//! that the punt path, the authentications, the timer and the management API take briefly.
//!
//! Many triggers authenticate at once (at most `max_access_requests` Access-Requests in
//! flight); their setups queue for the runner, which takes every setup queued at that moment
//! as one group ([`DynServices::set_up_group`]): the ledger lists all their SAPs with one
//! disk sync while the scripts' thread runs the group's setups as one batch, ahead of the
//! runner, which applies each report as its own transaction, in order, staged in the service
//! manager; the staged transactions are installed in the data plane with one job and the
//! journal is synced once, and only then is each service reported (sapCreated, accounting
//! Start). A kill -9 at any point leaves every SAP whose service may be in the journal listed
//! in the ledger, so the next start removes all of it.
//!
//! The data plane throttles each capture SAP's frames per (SAP, outer, inner) key: the first
//! frame marks its key. Whoever holds the state releases, when letting go of the lock, the
//! keys of the triggers the trigger machine reports settled ([`Triggers::take_settled`]), so
//! no path that changes a trigger can forget to.

pub mod api;
pub mod coa;
pub mod config;
mod evaluate;
mod ledger;
pub(crate) mod radius;
mod scripts;

use super::services::ServicesComponent;
use brasa_dataplane::service::{Punted, ThrottleKey, TriggerThrottle};
use brasa_dynsvc::auth::{self, RequestSeal, TriggerIdentity};
use brasa_dynsvc::{
    Accounting, AcctOverride, AcctRecord, AcctSettings, AuthFailure, Authentication,
    CaptureSapConfig, DynService, FrameVerdict, ServiceSession, Teardown, TriggerFrame, Triggers,
};
use brasa_radius::acct::SessionCounters;
use brasa_radius::{AcctTerminateCause, Code, Dictionary};
use brasa_script::{
    apply_reference_changes, DynAction, DynReport, DynRun, ReferenceChange, ReferenceKey,
    Referenced, RunOptions, ScriptParams, ServiceState,
};
use brasa_services::SapId;
use brasa_services_net::{Durability, StageTicket};
use config::{CaptureDebug, DynamicServicesResolved, PolicyResolved};
pub use evaluate::{EvaluateError, Evaluated, Evaluation};
use scripts::{IdRanges, Reports, RunResources, ScriptThread};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify, Semaphore};

/// The most setups the runner takes as one group (one ledger sync).
const MAX_SETUP_GROUP: usize = 512;

/// How long the setups of a group are staged before those done so far are installed and
/// their journal sync started (they are reported at the next install, once it is done): the
/// first of a group waits for the scripts of the others, so a long chunk trades latency for
/// fewer installs and disk syncs, and a sync has this long to finish behind the staging.
const SETUP_GROUP_BUDGET: std::time::Duration = std::time::Duration::from_millis(20);

/// A dynamic data service brasa created: what its later runs (modify, teardown) need.
#[derive(Debug, Clone)]
pub struct ServiceRecord {
    /// The data trigger that owns it.
    pub trigger: SapId,
    /// Its dynamic-services-policy (script, ranges).
    pub policy: String,
    /// What the script keeps between runs.
    pub state: ServiceState,
    /// The script parameters of its setup or of its last successful modify.
    pub params: ScriptParams,
    /// The service CLI its setup applied.
    pub cli: String,
}

/// The mutable state: the trigger machine, the services and the reference table.
struct State {
    triggers: Triggers,
    accounting: Accounting,
    records: HashMap<SapId, ServiceRecord>,
    references: Arc<BTreeMap<ReferenceKey, Referenced>>,
    /// Capture SAPs by their data-plane key, refreshed from the running configuration.
    capture_keys: HashMap<brasa_dataplane::sap::SapId, SapId>,
    /// The data-plane throttle mark of each trigger SAP whose frame reached the trigger
    /// machine, until the machine reports it settled.
    marks: HashMap<SapId, ThrottleKey>,
}

/// The locked state; on unlock it releases the throttle marks of the settled triggers.
struct StateGuard<'a> {
    state: MutexGuard<'a, State>,
    throttle: &'a TriggerThrottle,
}

impl Deref for StateGuard<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        &self.state
    }
}

impl DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        let State {
            triggers, marks, ..
        } = &mut *self.state;
        for sap in triggers.take_settled() {
            if let Some(key) = marks.remove(&sap) {
                self.throttle.release(key);
            }
        }
    }
}

/// Counters of the daemon side (the trigger machine counts the rest).
#[derive(Debug, Default)]
pub struct ShellCounters {
    /// Frames punted from SAPs that are no capture SAP with dynamic services enabled.
    pub unknown_capture: AtomicU64,
    /// Punted frames too short for an Ethernet header.
    pub malformed: AtomicU64,
    /// Script runs that failed.
    pub script_failures: AtomicU64,
    /// Script CLI the service manager refused.
    pub apply_failures: AtomicU64,
    /// Dynamic services created.
    pub services_created: AtomicU64,
    /// Dynamic services removed.
    pub services_removed: AtomicU64,
    /// Services removed without their teardown script (it failed, or its CLI was refused).
    pub forced_removals: AtomicU64,
    /// CoA and Disconnect requests dropped (unknown client, bad authenticator, malformed).
    pub coa_dropped: AtomicU64,
}

/// Why a debug command was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DebugError {
    /// The SAP is no capture SAP of the running service configuration.
    #[error("{0} is not a capture SAP of the running service configuration")]
    UnknownCaptureSap(SapId),
    /// No debug filter of that capture SAP exists.
    #[error("capture SAP {0} has no debug")]
    NoFilter(SapId),
    /// The capture SAP has no debug filter of that encap-val.
    #[error("capture SAP {0} has no debug with encap-val {1}")]
    NoFilterForEncap(SapId, String),
}

/// Why a script run and its apply did not happen; nothing of the run is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunFailure {
    /// The script failed, or could not run with these inputs.
    Script(String),
    /// The script succeeded but the service manager refused its CLI, or the CLI did not create
    /// the service's SAP.
    Apply(String),
}

impl std::fmt::Display for RunFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunFailure::Script(reason) | RunFailure::Apply(reason) => f.write_str(reason),
        }
    }
}

/// A service whose script ran and whose CLI is applied, waiting for its journal sync before
/// it is reported.
struct Staged {
    service: DynService,
    record: ServiceRecord,
    /// Its transaction's place among the staged ones, when it was staged (not installed at
    /// once, and its CLI not empty): a failed install says whether it was taken back.
    ticket: Option<StageTicket>,
    /// The reference changes of its run, made again when a failed install takes back only
    /// the setups after it.
    references: Vec<ReferenceChange>,
}

/// When a run's transaction reaches the data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Install {
    /// With the transaction (and any staged before it).
    Now,
    /// With the rest of its setup group ([`ServiceManager::stage_text`]).
    ///
    /// [`ServiceManager::stage_text`]: brasa_services_net::ServiceManager::stage_text
    WithGroup,
}

/// The setups of a group staged since its last commit, with what takes them back.
struct Chunk {
    /// Each trigger's staged services, in order.
    staged: Vec<(SapId, Vec<Staged>)>,
    /// The reference table before the first of them: theirs are taken back with them.
    references: Arc<BTreeMap<ReferenceKey, Referenced>>,
    since: Instant,
}

impl Chunk {
    fn new(references: Arc<BTreeMap<ReferenceKey, Referenced>>) -> Self {
        Self {
            staged: Vec::new(),
            references,
            since: Instant::now(),
        }
    }
}

/// Where a setup group's time went, logged at debug level (target `brasa::dynsvc::timing`)
/// when the group is done: the runner's waits (the ledger's sync, the scripts' thread, the
/// data plane, the journal's sync) beside its own work.
#[derive(Debug, Default)]
struct GroupTimes {
    /// Waiting for the ledger's listing of the group's SAPs to reach the disk.
    ledger_wait: Duration,
    /// Waiting for the scripts' thread's reports.
    script_wait: Duration,
    /// Applying the reports (parse, validate, compile, stage).
    stage: Duration,
    /// The data-plane installs of the staged transactions.
    install: Duration,
    /// The journal syncs before the reports.
    journal_sync: Duration,
    /// Reporting the setups (trigger machine, records, accounting Start).
    report: Duration,
    /// How many installs (chunks) the group had.
    commits: u32,
}

impl GroupTimes {
    /// Awaits `work`, adding the time it took to `slot`.
    async fn time<T>(slot: &mut Duration, work: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let output = work.await;
        *slot += started.elapsed();
        output
    }
}

/// A chunk after its install: the setups that are live, reported once their journal entries
/// are synced, and those a failed install took back, which fail with `reason`.
struct Installed {
    live: ByTrigger<Staged>,
    taken_back: ByTrigger<Staged>,
    reason: Option<RunFailure>,
}

/// An installed chunk whose journal sync runs while the runner stages the next one.
struct Syncing {
    installed: Installed,
    sync: tokio::task::JoinHandle<()>,
}

/// The setup runs of a group's services, on the scripts' thread.
struct Batch<'a> {
    /// Each service's policy and parameters, in order, or why it has no run.
    prepared: VecDeque<Result<(&'a PolicyResolved, ScriptParams), RunFailure>>,
    /// The reports of the runs, in order.
    reports: Reports,
}

impl<'a> Batch<'a> {
    /// The next service's policy, parameters and setup report; `Err` when it had no run.
    async fn next(
        &mut self,
    ) -> Result<
        (
            (&'a PolicyResolved, ScriptParams),
            Result<DynReport, String>,
        ),
        RunFailure,
    > {
        let prepared = self.prepared.pop_front().unwrap_or_else(|| {
            Err(RunFailure::Script(
                "the setup batch has no run for this service".into(),
            ))
        })?;
        Ok((prepared, self.reports.next().await))
    }
}

enum Work {
    /// Run the setup of each authorised service of an Accepted trigger.
    Setup {
        trigger: SapId,
        services: Vec<DynService>,
    },
    /// Tear down the services a removed trigger owned.
    Teardown(Teardown, AcctTerminateCause),
    /// Decide, run and answer a verified CoA or Disconnect-Request.
    Coa {
        kind: brasa_dynsvc::RequestKind,
        request: brasa_radius::Message,
        reply: tokio::sync::oneshot::Sender<brasa_radius::Message>,
    },
    /// `tools perform service dynamic-services evaluate-script`.
    Evaluate {
        evaluation: Evaluation,
        reply: tokio::sync::oneshot::Sender<Result<Evaluated, EvaluateError>>,
    },
}

/// The running dynamic data services.
pub struct DynServices {
    config: DynamicServicesResolved,
    state: Mutex<State>,
    /// The SAPs whose services a restart must remove; its own lock, as its disk syncs must
    /// not hold up the trigger machine.
    ledger: Arc<Mutex<ledger::Ledger>>,
    /// Permits for `max_access_requests` Access-Requests.
    authentications: Arc<Semaphore>,
    /// The debug filters of each capture SAP (`debug service dynamic-services capture-sap`):
    /// the config's at start, changed at run time through the management API.
    debug: std::sync::RwLock<BTreeMap<SapId, Vec<CaptureDebug>>>,
    services: Arc<ServicesComponent>,
    dictionary: Arc<Dictionary>,
    scripts: ScriptThread,
    /// The identifier ranges of each policy, for the scripts' runs.
    id_ranges: Arc<BTreeMap<String, IdRanges>>,
    work: mpsc::UnboundedSender<Work>,
    timer_changed: Notify,
    /// Which RADIUS servers (authentication and accounting) are dead.
    radius_servers: Arc<radius::ServerHealths>,
    /// Daemon-side counters.
    pub counters: ShellCounters,
}

impl DynServices {
    fn state(&self) -> StateGuard<'_> {
        StateGuard {
            state: self
                .state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            throttle: self.services.trigger_throttle(),
        }
    }

    /// Reads the trigger machine.
    pub fn with_triggers<T>(&self, f: impl FnOnce(&mut Triggers) -> T) -> T {
        let mut state = self.state();
        let result = f(&mut state.triggers);
        drop(state);
        self.timer_changed.notify_one();
        result
    }

    /// The dynamic services created, by SAP.
    pub fn records(&self) -> Vec<(SapId, ServiceRecord)> {
        let mut all: Vec<_> = self
            .state()
            .records
            .iter()
            .map(|(sap, record)| (sap.clone(), record.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The debug filters, by capture SAP.
    pub fn debug_filters(&self) -> Vec<(SapId, CaptureDebug)> {
        self.debug
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .flat_map(|(sap, filters)| filters.iter().map(move |f| (sap.clone(), f.clone())))
            .collect()
    }

    /// `debug service dynamic-services capture-sap SAP [encap-val …] [mode …]`: logs the
    /// data trigger events of capture SAP `sap` that `filter` keeps, beside its other
    /// filters; one with the same encap-val is replaced (its mode changes). `sap` must be a
    /// capture SAP of the running configuration.
    pub async fn set_debug(&self, sap: SapId, filter: CaptureDebug) -> Result<(), DebugError> {
        let captured = self
            .services
            .manager
            .read(|config, _| config.sap(&sap).is_some_and(|s| s.capture))
            .await;
        if !captured {
            return Err(DebugError::UnknownCaptureSap(sap));
        }
        let mut debug = self
            .debug
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let filters = debug.entry(sap).or_default();
        filters.retain(|f| f.encap_val != filter.encap_val);
        filters.push(filter);
        Ok(())
    }

    /// `debug service dynamic-services no capture-sap SAP [encap-val …]`: removes the filter
    /// of that encap-val, or without one every filter of `sap`; returns how many went.
    pub fn remove_debug(&self, sap: &SapId, encap_val: Option<&str>) -> Result<usize, DebugError> {
        let mut debug = self
            .debug
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(filters) = debug.get_mut(sap) else {
            return Err(DebugError::NoFilter(sap.clone()));
        };
        let before = filters.len();
        if let Some(val) = encap_val {
            filters.retain(|f| f.encap_val.as_deref() != Some(val));
        } else {
            filters.clear();
        }
        let removed = before - filters.len();
        if filters.is_empty() {
            debug.remove(sap);
        }
        if removed == 0 {
            return Err(match encap_val {
                Some(val) => DebugError::NoFilterForEncap(sap.clone(), val.to_owned()),
                None => DebugError::NoFilter(sap.clone()),
            });
        }
        Ok(removed)
    }

    /// Queues the teardown of what a removed trigger owned.
    pub fn tear_down(&self, teardown: Teardown, cause: AcctTerminateCause) {
        let _ = self.work.send(Work::Teardown(teardown, cause));
    }
}

/// The script parameters of a service.
fn script_params(service: &DynService) -> Result<ScriptParams, RunFailure> {
    ScriptParams::parse(service.script_params.as_deref().unwrap_or_default())
        .map_err(|err| RunFailure::Script(err.to_string()))
}

/// Starts the scripts' thread, the runner and the timer, and takes the punted frames of the
/// service data plane.
pub async fn start(
    config: DynamicServicesResolved,
    services: Arc<ServicesComponent>,
    dictionary: Arc<Dictionary>,
    data_dir: &std::path::Path,
    coa: &mut crate::daemon::coa::CoaListeners,
) -> anyhow::Result<Arc<DynServices>> {
    let dir = data_dir.join("dynsvc");
    let (ledger, left) = ledger::Ledger::open(&dir)
        .map_err(|err| anyhow::anyhow!("cannot open {}: {err}", dir.display()))?;
    remove_left_services(&services, left).await;
    let scripts = config
        .policies
        .values()
        .map(|policy| (policy.name.clone(), policy.script.clone()))
        .collect();
    let options = RunOptions {
        time_limit: Some(config.script_time_limit),
        ..RunOptions::default()
    };
    let scripts = tokio::task::block_in_place(|| ScriptThread::start(scripts, options))?;
    let mut triggers = Triggers::new(config.triggers.clone());
    for (name, policy) in &config.policies {
        triggers.set_policy(
            name,
            brasa_dynsvc::DynServicesPolicy {
                authentication: policy.authentication.clone(),
            },
        );
    }
    for (name, policy) in &config.lockout_policies {
        triggers.set_lockout_policy(name, policy.clone());
    }
    let (work, queue) = mpsc::unbounded_channel();
    let accounting = Accounting::new(config.nas.identifier.clone());
    let debug = config.capture_debug.clone();
    let id_ranges = config
        .policies
        .iter()
        .map(|(name, policy)| {
            let ranges = IdRanges {
                service: policy.service_range.clone(),
                filter: policy.filter_range.clone(),
            };
            (name.clone(), ranges)
        })
        .collect();
    let authentications = Arc::new(Semaphore::new(config.max_access_requests));
    let component = Arc::new(DynServices {
        config,
        state: Mutex::new(State {
            triggers,
            accounting,
            records: HashMap::new(),
            references: Arc::default(),
            capture_keys: HashMap::new(),
            marks: HashMap::new(),
        }),
        ledger: Arc::new(Mutex::new(ledger)),
        authentications,
        debug: std::sync::RwLock::new(
            debug
                .iter()
                .map(|(sap, filter)| (sap.clone(), vec![filter.clone()]))
                .collect(),
        ),
        services: services.clone(),
        dictionary,
        scripts,
        id_ranges: Arc::new(id_ranges),
        work,
        timer_changed: Notify::new(),
        radius_servers: Arc::default(),
        counters: ShellCounters::default(),
    });
    let (punts, punted) = mpsc::unbounded_channel();
    services.set_punt_sink(punts);
    if let Some(listen) = component.config.coa_listen {
        coa.register(listen, &component.config.coa_clients, component.clone())?;
    }
    tokio::spawn(punt_loop(component.clone(), punted));
    tokio::spawn(runner(component.clone(), queue));
    tokio::spawn(timer(component.clone()));
    Ok(component)
}

/// Removes the services of the dynamic SAPs an earlier run left (it was killed): their
/// triggers are gone with it, so they would have nobody to tear them down.
async fn remove_left_services(services: &ServicesComponent, left: Vec<String>) {
    if left.is_empty() {
        return;
    }
    let port_map = services.manager.port_map();
    let saps: Vec<SapId> = left
        .iter()
        .filter_map(|text| SapId::parse_mapped(text, port_map).ok())
        .collect();
    let texts: Vec<(u32, String)> = services
        .manager
        .read(|config, _| {
            let ids: std::collections::BTreeSet<u32> = config
                .services()
                .filter(|(id, _)| config.service_saps(*id).any(|(sap, _)| saps.contains(sap)))
                .map(|(id, _)| id)
                .collect();
            ids.into_iter()
                .filter_map(|id| Some((id, super::services::removal_text(config, id)?)))
                .collect()
        })
        .await;
    for (id, text) in texts {
        match services
            .manager
            .apply_text_as(&text, false, Durability::Deferred)
            .await
        {
            Ok(_) => tracing::info!(
                service = id,
                "removed a dynamic service an earlier run left"
            ),
            Err(error) => {
                tracing::error!(service = id, %error, "cannot remove a dynamic service an earlier run left")
            }
        }
    }
    services.manager.sync_journal().await;
}

/// Refreshes the capture SAPs from the running service configuration: their data-plane keys
/// and, in the trigger machine, their policy and host-lockout-policy. A capture SAP whose
/// `dynamic-services` context is shut down makes no triggers.
async fn refresh_capture_saps(dyn_services: &DynServices) {
    let services = &dyn_services.services;
    let found = services
        .manager
        .read(|config, compiler| {
            let ports = |name: &str| services.manager.plane_port(name);
            config
                .saps()
                .filter(|(_, sap)| {
                    sap.capture
                        && sap.dynamic_services.admin == brasa_services::model::AdminState::Up
                })
                .filter_map(|(id, sap)| {
                    Some((
                        compiler.dataplane_sap(id, &ports)?,
                        id.clone(),
                        sap.dynamic_services.policy.clone(),
                    ))
                })
                .collect::<Vec<_>>()
        })
        .await;
    let mut state = dyn_services.state();
    state.capture_keys.clear();
    for (key, sap, policy) in found {
        let lockout = dyn_services.config.capture_lockout.get(&sap).cloned();
        let added = state.triggers.add_capture_sap(
            sap.clone(),
            CaptureSapConfig {
                policy,
                host_lockout_policy: lockout,
            },
        );
        if added.is_ok() {
            state.capture_keys.insert(key, sap);
        }
    }
}

async fn punt_loop(
    dyn_services: Arc<DynServices>,
    mut punted: mpsc::UnboundedReceiver<Vec<Punted>>,
) {
    while let Some(frames) = punted.recv().await {
        let unknown = {
            let state = dyn_services.state();
            frames
                .iter()
                .any(|frame| !state.capture_keys.contains_key(&frame.sap))
        };
        if unknown {
            refresh_capture_saps(&dyn_services).await;
        }
        let now = Instant::now();
        let mut authenticate = Vec::new();
        {
            let throttle = dyn_services.services.trigger_throttle();
            // A frame that does not reach the trigger machine makes no trigger: its key goes.
            let release = |frame: &Punted| {
                if let Some(key) = frame.throttle {
                    throttle.release(key);
                }
            };
            let mut state = dyn_services.state();
            for frame in &frames {
                let Some(capture) = state.capture_keys.get(&frame.sap).cloned() else {
                    release(frame);
                    dyn_services
                        .counters
                        .unknown_capture
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let Ok(trigger_frame) = TriggerFrame::parse(
                    capture,
                    frame.outer_vid,
                    frame.inner_vid,
                    &frame.frame,
                    frame.len,
                ) else {
                    release(frame);
                    dyn_services
                        .counters
                        .malformed
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let trigger = trigger_frame.trigger_sap();
                match (&trigger, frame.throttle) {
                    (Some(trigger), Some(key)) => {
                        state.marks.insert(trigger.clone(), key);
                    }
                    _ => release(frame),
                }
                let verdict = state.triggers.handle_frame(&trigger_frame, now);
                if let Some(trigger) = trigger {
                    let drop = match &verdict {
                        FrameVerdict::Authenticate { .. } => Some(None),
                        FrameVerdict::RateLimited => Some(Some("control-plane rate limit")),
                        FrameVerdict::Dropped(reason) => Some(Some(reason.label())),
                        FrameVerdict::NotCaptured => None,
                    };
                    if let Some(drop) = drop {
                        let event = if drop.is_some() {
                            "data trigger dropped"
                        } else {
                            "data trigger received"
                        };
                        dyn_services.debug_event(&trigger_frame.capture_sap, &trigger, event, drop);
                    }
                }
                if let FrameVerdict::Authenticate {
                    trigger,
                    authentication,
                } = verdict
                {
                    authenticate.push((trigger, authentication));
                }
            }
        }
        for (trigger, authentication) in authenticate {
            match authentication {
                Authentication::Local { db } => {
                    let result = match dyn_services.config.local_auth_dbs.get(&db) {
                        Some(local) => {
                            local.authenticate(&trigger, dyn_services.services.manager.port_map())
                        }
                        None => Err(AuthFailure::LocalLookupFailed(trigger.to_string())),
                    };
                    dyn_services.authenticated(&trigger, result);
                }
                Authentication::Radius { password, .. } => {
                    let dyn_services = dyn_services.clone();
                    tokio::spawn(async move {
                        let Ok(_permit) =
                            dyn_services.authentications.clone().acquire_owned().await
                        else {
                            return;
                        };
                        let result = dyn_services.radius_authenticate(&trigger, &password).await;
                        dyn_services.authenticated(&trigger, result);
                    });
                }
            }
        }
    }
}

impl DynServices {
    /// Logs a data trigger event when a debug filter of `capture` asks for it; `drop` is the
    /// reason of a drop.
    fn debug_event(&self, capture: &SapId, trigger: &SapId, event: &str, drop: Option<&str>) {
        let logs = self
            .debug
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(capture)
            .is_some_and(|filters| filters.iter().any(|f| f.logs(trigger, drop.is_some())));
        if logs {
            tracing::info!(
                target: "brasa::dynsvc::debug",
                capture_sap = %capture,
                %trigger,
                drop_reason = drop,
                "{event}"
            );
        }
    }

    /// [`Self::debug_event`] for an existing trigger, on its capture SAP.
    fn debug_trigger(&self, trigger: &SapId, event: &str, drop: Option<&str>) {
        let capture = self
            .state()
            .triggers
            .trigger(trigger)
            .map(|t| t.capture_sap.clone());
        if let Some(capture) = capture {
            self.debug_event(&capture, trigger, event, drop);
        }
    }

    fn policy_of(&self, trigger: &SapId) -> Option<&PolicyResolved> {
        let name = self.state().triggers.trigger(trigger)?.policy.clone();
        self.config.policies.get(&name)
    }

    /// The Access-Request of Table 4 to the trigger policy's RADIUS pool, and its answer.
    async fn radius_authenticate(
        &self,
        trigger: &SapId,
        password: &[u8],
    ) -> Result<Vec<DynService>, AuthFailure> {
        let Some(pool) = self.policy_of(trigger).and_then(|p| p.radius_pool.clone()) else {
            return Err(AuthFailure::Timeout);
        };
        let identity = {
            let state = self.state();
            let t = state
                .triggers
                .trigger(trigger)
                .ok_or(AuthFailure::Timeout)?;
            (t.acct_session_id.clone(), t.mac, t.ip)
        };
        let build = |server: &brasa_aaa::UpstreamConfig, authenticator: [u8; 16], id: u8| {
            auth::access_request(
                TriggerIdentity {
                    sap: trigger,
                    acct_session_id: &identity.0,
                    mac: identity.1,
                    ip: identity.2,
                },
                password,
                RequestSeal {
                    secret: &server.secret,
                    request_authenticator: authenticator,
                    identifier: id,
                },
                &self.config.nas,
                server.address.ip(),
                &self.dictionary,
            )
            .ok()
        };
        let reply = radius::exchange(
            &self.radius_servers,
            &pool,
            &pool.auth_servers,
            radius::MessageAuthenticator::First,
            &build,
        )
        .await
        .ok_or(AuthFailure::Timeout)?;
        match reply.code {
            Code::AccessAccept => {
                auth::parse_access_accept(&reply, trigger, self.services.manager.port_map())
            }
            _ => Err(AuthFailure::Rejected),
        }
    }

    /// An authentication ended: an accepted trigger's setups are queued.
    fn authenticated(&self, trigger: &SapId, result: Result<Vec<DynService>, AuthFailure>) {
        match &result {
            Ok(services) => self.debug_trigger(
                trigger,
                &format!(
                    "data trigger authenticated with {} service(s)",
                    services.len()
                ),
                None,
            ),
            Err(failure) => {
                tracing::info!(%trigger, %failure, "data trigger not authenticated");
                self.debug_trigger(
                    trigger,
                    "data trigger dropped",
                    Some(&format!("authentication failed: {failure}")),
                );
            }
        }
        let outcome = self
            .state()
            .triggers
            .handle_authentication(trigger, result, Instant::now());
        self.timer_changed.notify_one();
        if let Ok(Ok(services)) = outcome {
            let _ = self.work.send(Work::Setup {
                trigger: trigger.clone(),
                services,
            });
        }
    }

    /// The identifiers and references runs may take now.
    async fn resources(&self) -> RunResources {
        let config = self.services.manager.read(|config, _| config.clone()).await;
        RunResources::new(
            self.id_ranges.clone(),
            config,
            self.state().references.clone(),
        )
    }

    /// Runs one action of a service's script and applies its CLI as one transaction, whose
    /// journal entry waits for the runner's next sync ([`Durability::Deferred`]).
    async fn run_and_apply(
        &self,
        policy: &PolicyResolved,
        run: DynRun,
    ) -> Result<DynReport, (RunFailure, Option<DynReport>)> {
        let resources = self.resources().await;
        let report = self
            .scripts
            .run(&policy.name, run, resources)
            .await
            .map_err(|reason| (RunFailure::Script(reason), None))?;
        let (report, _) = self
            .apply_report(&policy.name, report, Install::Now)
            .await?;
        Ok(report)
    }

    /// Applies a run's CLI as one transaction, installed as `install` says, and its reference
    /// changes; a failed run is counted and applies nothing. With the report, the
    /// transaction's ticket when it was staged.
    async fn apply_report(
        &self,
        policy: &str,
        report: DynReport,
        install: Install,
    ) -> Result<(DynReport, Option<StageTicket>), (RunFailure, Option<DynReport>)> {
        if let brasa_script::Outcome::Failed(failure) = &report.run.outcome {
            self.counters
                .script_failures
                .fetch_add(1, Ordering::Relaxed);
            let reason = format!("script {policy}: {}", failure.message);
            return Err((RunFailure::Script(reason), Some(report)));
        }
        let mut ticket = None;
        if !report.cli.trim().is_empty() {
            let manager = &self.services.manager;
            let applied = match install {
                Install::Now => manager
                    .apply_text_as(&report.cli, false, Durability::Deferred)
                    .await
                    .map(drop),
                Install::WithGroup => manager
                    .stage_text(&report.cli)
                    .await
                    .map(|(staged, _)| ticket = Some(staged)),
            };
            if let Err(err) = applied {
                self.counters.apply_failures.fetch_add(1, Ordering::Relaxed);
                let reason = format!("the script's CLI was refused: {err}");
                return Err((RunFailure::Apply(reason), Some(report)));
            }
        }
        self.commit_references(&report.references);
        Ok((report, ticket))
    }

    fn commit_references(&self, changes: &[ReferenceChange]) {
        if changes.is_empty() {
            return;
        }
        let mut state = self.state();
        apply_reference_changes(Arc::make_mut(&mut state.references), changes);
    }

    fn ledger(&self) -> MutexGuard<'_, ledger::Ledger> {
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts listing `saps` in the ledger with one disk sync; [`Self::ledger_written`] says
    /// whether it did. Their setups may run meanwhile, but none may be applied before.
    fn ledger_create(&self, saps: Vec<SapId>) -> tokio::task::JoinHandle<std::io::Result<()>> {
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || {
            let mut ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
            ledger.created(&saps)
        })
    }

    /// Whether the listing [`Self::ledger_create`] started is on disk; `Err` when it could
    /// not be written, and then none of its SAPs may be applied.
    async fn ledger_written(
        written: tokio::task::JoinHandle<std::io::Result<()>>,
    ) -> Result<(), RunFailure> {
        let reason = match written.await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        tracing::error!(%reason, "cannot write the dynamic services ledger");
        Err(RunFailure::Apply(format!(
            "cannot write the dynamic services ledger: {reason}"
        )))
    }

    /// Sets up one service of a trigger now (a CoA's, or evaluate-script's): listed, run,
    /// applied, synced, then reported.
    async fn set_up(&self, trigger: &SapId, service: &DynService) -> Result<(), RunFailure> {
        Self::ledger_written(self.ledger_create(vec![service.sap.clone()])).await?;
        let (policy, params, run) = match self.prepare_setup(trigger, service) {
            Ok(prepared) => prepared,
            Err(failure) => {
                self.ledger().removed(&service.sap);
                return Err(failure);
            }
        };
        let resources = self.resources().await;
        let report = self.scripts.run(&policy.name, run, resources).await;
        let staged = self
            .stage_setup(trigger, service, (policy, params), report, Install::Now)
            .await?;
        self.services.manager.sync_journal().await;
        self.acknowledge(trigger, staged).await
    }

    /// The policy, the script parameters and the setup run of a service of `trigger`; `Err`
    /// when it cannot run (no such policy, malformed parameters).
    fn prepare_setup(
        &self,
        trigger: &SapId,
        service: &DynService,
    ) -> Result<(&PolicyResolved, ScriptParams, DynRun), RunFailure> {
        let policy_name = match &service.policy {
            Some(name) => name.clone(),
            None => self
                .state()
                .triggers
                .trigger(trigger)
                .map(|t| t.policy.clone())
                .ok_or_else(|| RunFailure::Script(format!("data trigger {trigger} is gone")))?,
        };
        let policy = self.config.policies.get(&policy_name).ok_or_else(|| {
            RunFailure::Script(format!("no dynamic-services policy {policy_name:?}"))
        })?;
        let params = script_params(service)?;
        let run = DynRun {
            action: DynAction::Setup,
            params: Some(params.clone()),
            state: None,
            sap_id: service.sap.to_string(),
            control_sap: Some(trigger.to_string()),
            circuit_id: None,
            remote_id: None,
            policy: policy.name.clone(),
        };
        Ok((policy, params, run))
    }

    /// Sets up the services of a group of Accepted triggers, in order. The ledger lists every
    /// SAP of the group with one disk sync while the scripts' thread runs their setups as
    /// one batch, ahead of the applies; each service's CLI is then applied as its own
    /// transaction (all or nothing) and staged for one data-plane install. Every
    /// [`SETUP_GROUP_BUDGET`] the staged setups are installed with one job and their journal
    /// entries synced with one `fdatasync` while the next ones are staged; they are reported
    /// at the next install, once that sync is done ([`Self::install_behind_sync`]). At the
    /// end, the last ones are installed, synced and reported ([`Self::commit_setups`]). A
    /// failed service fails its trigger, whose applied services are removed; the batch's
    /// later runs, made for a state that now will not be, run again in a new batch.
    async fn set_up_group(&self, group: Vec<(SapId, Vec<DynService>)>) -> GroupTimes {
        let mut times = GroupTimes::default();
        let saps: Vec<SapId> = group
            .iter()
            .flat_map(|(_, services)| services.iter().map(|s| s.sap.clone()))
            .collect();
        let listing = self.ledger_create(saps);
        let mut pending: VecDeque<_> = group.into();
        let mut batch = self.start_batch(&pending).await;
        let written = GroupTimes::time(&mut times.ledger_wait, Self::ledger_written(listing)).await;
        if let Err(reason) = written {
            drop(batch);
            for (trigger, services) in &pending {
                if let Some(first) = services.first() {
                    self.fail_setup(trigger, &first.sap, &reason).await;
                }
            }
            return times;
        }
        let mut chunk = Chunk::new(self.state().references.clone());
        let mut syncing = None;
        while let Some((trigger, services)) = pending.pop_front() {
            if chunk.since.elapsed() >= SETUP_GROUP_BUDGET {
                let done = std::mem::replace(&mut chunk, Chunk::new(Arc::default()));
                self.install_behind_sync(done, &mut syncing, &mut times)
                    .await;
                chunk = Chunk::new(self.state().references.clone());
            }
            let mut done = Vec::with_capacity(services.len());
            let mut failed = None;
            for (index, service) in services.iter().enumerate() {
                let next = GroupTimes::time(&mut times.script_wait, batch.next()).await;
                let staged = match next {
                    Ok((prepared, report)) => {
                        let staged = self.stage_setup(
                            &trigger,
                            service,
                            prepared,
                            report,
                            Install::WithGroup,
                        );
                        GroupTimes::time(&mut times.stage, staged).await
                    }
                    Err(failure) => {
                        self.ledger().removed(&service.sap);
                        Err(failure)
                    }
                };
                match staged {
                    Ok(staged) => done.push(staged),
                    Err(reason) => {
                        failed = Some((index, reason));
                        break;
                    }
                }
            }
            let Some((index, reason)) = failed else {
                chunk.staged.push((trigger, done));
                continue;
            };
            // What is done so far is installed and reported first: the removals below
            // install, and must find the reference table as those setups left it.
            drop(batch);
            let finished = std::mem::replace(&mut chunk, Chunk::new(Arc::default()));
            self.commit_setups(finished, &mut syncing, &mut times).await;
            for service in done {
                self.discard(service).await;
            }
            // Listed above, never run.
            for later in &services[index + 1..] {
                self.ledger().removed(&later.sap);
            }
            self.fail_setup(&trigger, &services[index].sap, &reason)
                .await;
            batch = self.start_batch(&pending).await;
            chunk = Chunk::new(self.state().references.clone());
        }
        self.commit_setups(chunk, &mut syncing, &mut times).await;
        times
    }

    /// Starts the setup runs of every service of `pending` as one batch on the scripts'
    /// thread, with the running configuration and reference table as they are now.
    async fn start_batch(&self, pending: &VecDeque<(SapId, Vec<DynService>)>) -> Batch<'_> {
        let mut prepared = VecDeque::new();
        let mut runs = Vec::new();
        for (trigger, services) in pending {
            for service in services {
                prepared.push_back(self.prepare_setup(trigger, service).map(
                    |(policy, params, run)| {
                        runs.push((policy.name.clone(), run));
                        (policy, params)
                    },
                ));
            }
        }
        let resources = self.resources().await;
        Batch {
            prepared,
            reports: self.scripts.run_batch(runs, resources),
        }
    }

    /// Installs a chunk's staged setups and reports them with the chunk before it, whose sync
    /// `syncing` holds: `chunk` is installed, the previous sync awaited and that chunk
    /// reported, then one journal sync and this chunk's reports. Nothing is staged meanwhile:
    /// what follows (removals, a new batch) finds every setup so far installed and reported.
    async fn commit_setups(
        &self,
        chunk: Chunk,
        syncing: &mut Option<Syncing>,
        times: &mut GroupTimes,
    ) {
        self.install_behind_sync(chunk, syncing, times).await;
        if let Some(last) = syncing.take() {
            self.report_synced(last, times).await;
        }
    }

    /// Installs a chunk's staged setups and starts the journal sync of their entries, to run
    /// while the runner stages the next chunk; the chunk before, whose sync `syncing` holds,
    /// is reported first. A sync is awaited only after a chunk's worth of staging, so the
    /// disk's latency is off the runner's path; a setup is still reported only once its
    /// journal entry is on disk.
    async fn install_behind_sync(
        &self,
        chunk: Chunk,
        syncing: &mut Option<Syncing>,
        times: &mut GroupTimes,
    ) {
        let installed = self.install_chunk(chunk, times).await;
        // Reported now that nothing is staged: a removal among the reports installs nothing
        // of the chunk to come, whose reference table starts after them.
        if let Some(previous) = syncing.take() {
            self.report_synced(previous, times).await;
        }
        let Some(installed) = installed else {
            return;
        };
        let manager = self.services.manager.clone();
        *syncing = Some(Syncing {
            installed,
            sync: tokio::spawn(async move { manager.sync_journal().await }),
        });
    }

    /// Awaits a chunk's journal sync, then reports it.
    async fn report_synced(&self, syncing: Syncing, times: &mut GroupTimes) {
        let Syncing { installed, sync } = syncing;
        if let Err(error) = GroupTimes::time(&mut times.journal_sync, sync).await {
            // The sync task panicked: the entries may not be on disk, so sync again.
            tracing::error!(%error, "the journal sync of a setup chunk stopped");
            self.services.manager.sync_journal().await;
        }
        self.report_installed(installed, times).await;
    }

    /// Installs a chunk's staged setups with one data-plane job (their journal entries are
    /// queued, to be synced before they are reported); `None` when it is empty. When the data
    /// plane does not take them, the service manager takes back the staged transactions not
    /// yet installed, and this the reference changes of their runs: their triggers fail. The
    /// ones an installing transaction (an operator's apply, a CoA's) installed in between
    /// are live and journalled, and are reported as the rest would have been.
    async fn install_chunk(&self, chunk: Chunk, times: &mut GroupTimes) -> Option<Installed> {
        let Chunk {
            staged, references, ..
        } = chunk;
        if staged.is_empty() {
            return None;
        }
        times.commits += 1;
        let installed =
            GroupTimes::time(&mut times.install, self.services.manager.install_staged()).await;
        let failed = match installed {
            Ok(_) => {
                return Some(Installed {
                    live: staged,
                    taken_back: Vec::new(),
                    reason: None,
                })
            }
            Err(failed) => failed,
        };
        self.counters.apply_failures.fetch_add(1, Ordering::Relaxed);
        let (live, taken_back) = split_at_first_not(staged, |service: &Staged| {
            service
                .ticket
                .is_none_or(|ticket| failed.was_installed(ticket))
        });
        let mut table = references;
        for service in live.iter().flat_map(|(_, done)| done) {
            apply_reference_changes(Arc::make_mut(&mut table), &service.references);
        }
        self.state().references = table;
        let reason = RunFailure::Apply(format!(
            "the data plane did not take the setups: {}",
            failed.error
        ));
        Some(Installed {
            live,
            taken_back,
            reason: Some(reason),
        })
    }

    /// Reports an installed chunk whose journal entries are on disk: each live trigger's
    /// services in order, then the failure of those taken back.
    async fn report_installed(&self, installed: Installed, times: &mut GroupTimes) {
        let Installed {
            live,
            taken_back,
            reason,
        } = installed;
        let reporting = Instant::now();
        // The trigger whose services the failed install split: its live ones are not reported.
        let split = taken_back.first().map(|(trigger, _)| trigger.clone());
        for (trigger, done) in live {
            if split.as_ref() == Some(&trigger) {
                for service in done {
                    self.discard(service).await;
                }
                continue;
            }
            let mut done = done.into_iter();
            while let Some(service) = done.next() {
                let sap = service.service.sap.clone();
                if let Err(reason) = self.acknowledge(&trigger, service).await {
                    for later in done {
                        self.discard(later).await;
                    }
                    self.fail_setup(&trigger, &sap, &reason).await;
                    break;
                }
            }
        }
        times.report += reporting.elapsed();
        let Some(reason) = reason else {
            return;
        };
        for (trigger, done) in taken_back {
            let Some(first) = done.first().map(|s| s.service.sap.clone()) else {
                continue;
            };
            for service in &done {
                self.ledger().removed(&service.service.sap);
            }
            self.fail_setup(&trigger, &first, &reason).await;
        }
    }

    /// A setup of `trigger` failed at `sap`: counted and locked out ("Corresponding dynamic
    /// SAP is not created"), and whatever the trigger had created is torn down.
    async fn fail_setup(&self, trigger: &SapId, sap: &SapId, reason: &RunFailure) {
        tracing::info!(%trigger, %sap, %reason, "dynamic service setup failed");
        self.debug_trigger(
            trigger,
            "data trigger dropped",
            Some(&format!("dynamic service SAP {sap} not created: {reason}")),
        );
        let now = Instant::now();
        let failed = {
            let mut state = self.state();
            // A failure after the trigger's own SAP exists (a later service of the same
            // Accept) is no setup failure to count: the trigger goes.
            state
                .triggers
                .setup_failed(trigger, now)
                .or_else(|_| state.triggers.clear_trigger(trigger, now))
        };
        self.timer_changed.notify_one();
        if let Ok(teardown) = failed {
            self.tear_down_services(teardown, AcctTerminateCause::NasError)
                .await;
        }
    }

    /// Applies the report of a service's setup run, installed as `install` says and
    /// journalled but not synced; the ledger lists its SAP already. Nothing is reported: see
    /// [`acknowledge`](Self::acknowledge). `Err` leaves nothing of it applied nor listed.
    async fn stage_setup(
        &self,
        trigger: &SapId,
        service: &DynService,
        (policy, params): (&PolicyResolved, ScriptParams),
        report: Result<DynReport, String>,
        install: Install,
    ) -> Result<Staged, RunFailure> {
        let applied = match report {
            Err(reason) => Err(RunFailure::Script(reason)),
            Ok(report) => self
                .apply_report(&policy.name, report, install)
                .await
                .map_err(|(failure, _)| failure),
        };
        let (mut report, ticket) = match applied {
            Ok(applied) => applied,
            Err(failure) => {
                // Nothing of the run was applied.
                self.ledger().removed(&service.sap);
                return Err(failure);
            }
        };
        let record = ServiceRecord {
            trigger: trigger.clone(),
            policy: policy.name.clone(),
            // Without a state the teardown script cannot run: the forced removal below
            // takes the service holding the SAP.
            state: report.state.clone().unwrap_or_else(|| ServiceState {
                function_key: String::new(),
                dictionary: String::new(),
                references: Vec::new(),
            }),
            params,
            cli: report.cli,
        };
        let exists = self
            .services
            .manager
            .read(|config, _| config.sap(&service.sap).is_some())
            .await;
        let failure = match (report.state.is_some(), exists) {
            (true, true) => None,
            (false, _) => Some(RunFailure::Script("the setup run kept no state".into())),
            (true, false) => Some(RunFailure::Apply(format!(
                "the script of policy {} did not create SAP {}",
                policy.name, service.sap
            ))),
        };
        if let Some(failure) = failure {
            let _ = self
                .remove_service(&service.sap, record, AcctTerminateCause::NasError, true)
                .await;
            return Err(failure);
        }
        Ok(Staged {
            service: service.clone(),
            record,
            ticket,
            references: std::mem::take(&mut report.references),
        })
    }

    /// Reports a staged service once its transaction is durable: the trigger machine learns
    /// it (sapCreated when it is the trigger's own SAP), then its record and its accounting
    /// Start. `Err` (the trigger timed out or was cleared meanwhile) removes it.
    async fn acknowledge(&self, trigger: &SapId, staged: Staged) -> Result<(), RunFailure> {
        let Staged {
            service, record, ..
        } = staged;
        let created = self
            .state()
            .triggers
            .service_created(trigger, service.sap.clone());
        self.timer_changed.notify_one();
        let acct_session_id = match created {
            Ok(id) => id,
            Err(err) => {
                tracing::info!(%trigger, sap = %service.sap, "the script's service came after its trigger failed; removing it");
                let _ = self
                    .remove_service(&service.sap, record, AcctTerminateCause::NasError, true)
                    .await;
                return Err(RunFailure::Apply(err.to_string()));
            }
        };
        let Some(policy) = self.config.policies.get(&record.policy) else {
            return Err(RunFailure::Script(format!(
                "no dynamic-services policy {:?}",
                record.policy
            )));
        };
        self.state().records.insert(service.sap.clone(), record);
        let event = if &service.sap == trigger {
            "data trigger SAP created"
        } else {
            "dynamic service SAP created"
        };
        self.debug_trigger(trigger, &format!("{event}: {}", service.sap), None);
        self.counters
            .services_created
            .fetch_add(1, Ordering::Relaxed);
        self.start_accounting(policy, trigger, &service, acct_session_id);
        Ok(())
    }

    /// Removes a staged service that will not be reported (an earlier or later service of
    /// its trigger failed).
    async fn discard(&self, staged: Staged) {
        let _ = self
            .remove_service(
                &staged.service.sap,
                staged.record,
                AcctTerminateCause::NasError,
                true,
            )
            .await;
    }

    /// Runs the teardown of a service and applies it, then stops its accounting. When the
    /// script or its CLI fails: with `force` the service holding the SAP is removed whole, so
    /// that nothing of it stays behind; without, the service stays as it was (a refused CoA).
    async fn remove_service(
        &self,
        sap: &SapId,
        record: ServiceRecord,
        cause: AcctTerminateCause,
        force: bool,
    ) -> Result<(), RunFailure> {
        let counters = self
            .sap_counters(std::slice::from_ref(sap))
            .await
            .remove(sap)
            .unwrap_or_default();
        let torn_down = match self.config.policies.get(&record.policy) {
            Some(policy) => {
                let run = DynRun {
                    action: DynAction::Teardown,
                    params: None,
                    state: Some(record.state.clone()),
                    sap_id: sap.to_string(),
                    control_sap: Some(record.trigger.to_string()),
                    circuit_id: None,
                    remote_id: None,
                    policy: policy.name.clone(),
                };
                self.run_and_apply(policy, run)
                    .await
                    .map(|_| ())
                    .map_err(|(f, _)| f)
            }
            None => Err(RunFailure::Script(format!(
                "no dynamic-services policy {:?}",
                record.policy
            ))),
        };
        if let Err(reason) = &torn_down {
            tracing::warn!(%sap, %reason, "dynamic service teardown failed");
            if !force {
                self.state().records.insert(sap.clone(), record);
                return torn_down;
            }
        }
        let still_there = self
            .services
            .manager
            .read(|config, _| {
                config
                    .services()
                    .find(|(id, _)| config.service_saps(*id).any(|(s, _)| s == sap))
                    .and_then(|(id, _)| super::services::removal_text(config, id))
            })
            .await;
        if let Some(text) = still_there {
            if torn_down.is_ok() {
                tracing::warn!(%sap, "the teardown script left the SAP; removing its service");
            }
            self.counters
                .forced_removals
                .fetch_add(1, Ordering::Relaxed);
            let removed = self
                .services
                .manager
                .apply_text_as(&text, false, Durability::Deferred)
                .await;
            if let Err(error) = removed {
                tracing::error!(%sap, %error, "could not remove a dynamic service");
            }
        }
        self.stop_accounting(sap, &record.policy, counters, cause);
        self.ledger().removed(sap);
        self.counters
            .services_removed
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn tear_down_services(&self, teardown: Teardown, cause: AcctTerminateCause) {
        for (sap, _) in &teardown.services {
            let record = self.state().records.remove(sap);
            if let Some(record) = record {
                let _ = self.remove_service(sap, record, cause, true).await;
            }
        }
    }

    /// Starts the accounting of a new service to its policy's destinations.
    fn start_accounting(
        &self,
        policy: &PolicyResolved,
        trigger: &SapId,
        service: &DynService,
        acct_session_id: String,
    ) {
        let settings = AcctSettings::resolve(
            policy
                .accounting
                .each_ref()
                .map(|d| d.as_ref().map_or(AcctSettings::OFF, |d| d.settings)),
            service.accounting,
        );
        let records = {
            let mut state = self.state();
            let Some(multi_session_id) = state
                .triggers
                .trigger(trigger)
                .map(|t| t.acct_session_id.clone())
            else {
                return;
            };
            state.accounting.start(
                ServiceSession {
                    sap: service.sap.clone(),
                    acct_session_id,
                    multi_session_id,
                },
                settings,
                Instant::now(),
            )
        };
        self.timer_changed.notify_one();
        self.send_accounting(&policy.name, records);
    }

    /// Sends the Stop of a service that went away, with its SAP's last counters.
    fn stop_accounting(
        &self,
        sap: &SapId,
        policy: &str,
        counters: SessionCounters,
        cause: AcctTerminateCause,
    ) {
        let records = {
            let mut state = self.state();
            if !state.accounting.is_running(sap) {
                return;
            }
            state.accounting.stop(sap, counters, cause, Instant::now())
        };
        self.send_accounting(policy, records);
    }

    /// A successful modify's accounting overrides replace the service's (see
    /// [`Accounting::modify`]); nothing to do when it carried none.
    async fn modify_accounting(&self, sap: &SapId, policy: &str, overrides: [AcctOverride; 2]) {
        if overrides == [AcctOverride::default(); 2] {
            return;
        }
        let counters = self
            .sap_counters(std::slice::from_ref(sap))
            .await
            .remove(sap)
            .unwrap_or_default();
        let records = {
            let mut state = self.state();
            if !state.accounting.is_running(sap) {
                return;
            }
            state
                .accounting
                .modify(sap, overrides, counters, Instant::now())
        };
        self.timer_changed.notify_one();
        self.send_accounting(policy, records);
    }

    /// The data-plane keys of `saps` (those the data plane has).
    async fn dataplane_keys(&self, saps: &[SapId]) -> Vec<(SapId, brasa_dataplane::sap::SapId)> {
        let manager = &self.services.manager;
        manager
            .read(|_, compiler| {
                let ports = |name: &str| manager.plane_port(name);
                saps.iter()
                    .filter_map(|sap| Some((sap.clone(), compiler.dataplane_sap(sap, &ports)?)))
                    .collect()
            })
            .await
    }

    /// The data plane's counters of `saps`.
    async fn dataplane_counters(
        &self,
        saps: &[SapId],
    ) -> HashMap<SapId, brasa_dataplane::service::SapCounters> {
        let keys = self.dataplane_keys(saps).await;
        self.services
            .on_stage(move |stage, _| {
                keys.into_iter()
                    .filter_map(|(sap, key)| Some((sap, stage.sap_counters(&key)?)))
                    .collect()
            })
            .await
            .unwrap_or_default()
    }

    /// Zeroes the data plane's counters of capture SAP `sap` (Table 2's).
    async fn clear_dataplane_counters(&self, sap: &SapId) {
        let keys = self.dataplane_keys(std::slice::from_ref(sap)).await;
        let _ = self
            .services
            .on_stage(move |stage, _| {
                for (_, key) in &keys {
                    stage.clear_sap(key);
                }
            })
            .await;
    }

    /// The data plane's counters of `saps`, as accounting reads them (input: from the
    /// customer, received on the SAP).
    async fn sap_counters(&self, saps: &[SapId]) -> HashMap<SapId, SessionCounters> {
        self.dataplane_counters(saps)
            .await
            .into_iter()
            .map(|(sap, c)| {
                (
                    sap,
                    SessionCounters {
                        input_octets: c.rx_octets,
                        output_octets: c.tx_octets,
                        input_packets: c.rx_packets,
                        output_packets: c.tx_packets,
                    },
                )
            })
            .collect()
    }

    /// Sends each record to its destination's accounting servers, in the background.
    fn send_accounting(
        &self,
        policy: &str,
        records: Result<Vec<AcctRecord>, brasa_dynsvc::acct::AcctError>,
    ) {
        let records = match records {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(%error, "no accounting record");
                return;
            }
        };
        let Some(policy) = self.config.policies.get(policy) else {
            return;
        };
        for record in records {
            let Some(destination) = policy.accounting.get(record.destination).cloned().flatten()
            else {
                continue;
            };
            let healths = self.radius_servers.clone();
            tokio::spawn(async move {
                let build = |_: &brasa_aaa::UpstreamConfig, _: [u8; 16], id: u8| {
                    let mut message = record.message.clone();
                    message.identifier = id;
                    Some(message)
                };
                let pool = &destination.pool;
                let answered = radius::exchange(
                    &healths,
                    pool,
                    &pool.acct_servers,
                    radius::MessageAuthenticator::Keep,
                    &build,
                )
                .await;
                if answered.is_none() {
                    tracing::warn!(sap = %record.sap, pool = %pool.name, "no accounting server answered");
                }
            });
        }
    }
}

/// Items of each trigger, triggers in order.
type ByTrigger<T> = Vec<(SapId, Vec<T>)>;

/// Splits a chunk's services, in order, before the first for which `live` is false: the
/// live ones and the rest, each by trigger. A trigger with services on both sides is in both.
fn split_at_first_not<T>(
    chunk: ByTrigger<T>,
    live: impl Fn(&T) -> bool,
) -> (ByTrigger<T>, ByTrigger<T>) {
    let mut before = Vec::new();
    let mut after = Vec::new();
    for (trigger, mut services) in chunk {
        if !after.is_empty() {
            after.push((trigger, services));
            continue;
        }
        match services.iter().position(|service| !live(service)) {
            None => before.push((trigger, services)),
            Some(at) => {
                let rest = services.split_off(at);
                if !services.is_empty() {
                    before.push((trigger.clone(), services));
                }
                after.push((trigger, rest));
            }
        }
    }
    (before, after)
}

/// Does the queued work in order. The setups queued together are one group (one ledger sync,
/// one journal sync; see [`DynServices::set_up_group`]); any other work is done alone, and
/// its journal synced before it is answered.
async fn runner(dyn_services: Arc<DynServices>, mut queue: mpsc::UnboundedReceiver<Work>) {
    let mut next = None;
    loop {
        let idle = Instant::now();
        let work = match next.take() {
            Some(work) => work,
            None => match queue.recv().await {
                Some(work) => work,
                None => return,
            },
        };
        let idle = idle.elapsed();
        match work {
            Work::Setup { trigger, services } => {
                let mut group = vec![(trigger, services)];
                while group.len() < MAX_SETUP_GROUP {
                    match queue.try_recv() {
                        Ok(Work::Setup { trigger, services }) => group.push((trigger, services)),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let setups = group.len();
                let started = Instant::now();
                let times = dyn_services.set_up_group(group).await;
                tracing::debug!(
                    target: "brasa::dynsvc::timing",
                    setups,
                    idle_before_us = idle.as_micros() as u64,
                    total_us = started.elapsed().as_micros() as u64,
                    ledger_wait_us = times.ledger_wait.as_micros() as u64,
                    script_wait_us = times.script_wait.as_micros() as u64,
                    stage_us = times.stage.as_micros() as u64,
                    install_us = times.install.as_micros() as u64,
                    journal_sync_us = times.journal_sync.as_micros() as u64,
                    report_us = times.report.as_micros() as u64,
                    commits = times.commits,
                    "setup group done"
                );
            }
            Work::Teardown(teardown, cause) => {
                dyn_services.tear_down_services(teardown, cause).await;
                dyn_services.services.manager.sync_journal().await;
            }
            Work::Coa {
                kind,
                request,
                reply,
            } => {
                let answer = dyn_services.answer_coa(kind, &request).await;
                dyn_services.services.manager.sync_journal().await;
                let _ = reply.send(answer);
            }
            Work::Evaluate { evaluation, reply } => {
                let evaluated = dyn_services.run_evaluation(evaluation).await;
                dyn_services.services.manager.sync_journal().await;
                let _ = reply.send(evaluated);
            }
        }
    }
}

/// Fails the triggers whose setup timeout passed, forgets expired lockouts and sends the
/// Interim-Updates that are due.
async fn timer(dyn_services: Arc<DynServices>) {
    loop {
        let next = {
            let state = dyn_services.state();
            [
                state.triggers.poll_timeout(),
                state.accounting.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min()
        };
        let notified = dyn_services.timer_changed.notified();
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                    _ = notified => continue,
                }
            }
            None => {
                notified.await;
                continue;
            }
        }
        let now = Instant::now();
        let teardowns = dyn_services.state().triggers.handle_timeout(now);
        for teardown in teardowns {
            tracing::info!(trigger = %teardown.trigger, "data trigger setup timed out");
            dyn_services.tear_down(teardown, AcctTerminateCause::NasError);
        }
        let interim_due = dyn_services
            .state()
            .accounting
            .poll_timeout()
            .is_some_and(|at| at <= now);
        if interim_due {
            dyn_services.send_interims(now).await;
        }
    }
}

impl DynServices {
    async fn send_interims(&self, now: Instant) {
        let accounted: Vec<(SapId, String)> = self
            .state()
            .records
            .iter()
            .map(|(sap, record)| (sap.clone(), record.policy.clone()))
            .collect();
        let saps: Vec<SapId> = accounted.iter().map(|(sap, _)| sap.clone()).collect();
        let counters = self.sap_counters(&saps).await;
        let records = self
            .state()
            .accounting
            .handle_timeout(now, |sap| counters.get(sap).copied().unwrap_or_default());
        let records = match records {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(%error, "no Interim-Update");
                return;
            }
        };
        let policies: HashMap<SapId, String> = accounted.into_iter().collect();
        let mut by_policy: HashMap<String, Vec<AcctRecord>> = HashMap::new();
        for record in records {
            if let Some(policy) = policies.get(&record.sap) {
                by_policy.entry(policy.clone()).or_default().push(record);
            }
        }
        for (policy, records) in by_policy {
            self.send_accounting(&policy, Ok(records));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_install_splits_the_chunk_before_its_first_taken_back_setup() {
        let sap = |text: &str| SapId::parse(text).unwrap();
        // Tickets below 3 were installed by another apply; 3 and later were taken back.
        let installed = |ticket: &u64| *ticket < 3;
        let chunk = vec![
            (sap("eth1:1.1"), vec![0, 1]),
            (sap("eth1:1.2"), vec![2, 3]),
            (sap("eth1:1.3"), vec![4]),
        ];
        let (live, taken_back) = split_at_first_not(chunk, installed);
        assert_eq!(
            live,
            [(sap("eth1:1.1"), vec![0, 1]), (sap("eth1:1.2"), vec![2])]
        );
        assert_eq!(
            taken_back,
            [(sap("eth1:1.2"), vec![3]), (sap("eth1:1.3"), vec![4])]
        );

        // None installed: the whole chunk is taken back, no trigger on both sides.
        let chunk = vec![(sap("eth1:1.4"), vec![5]), (sap("eth1:1.5"), vec![6])];
        let (live, taken_back) = split_at_first_not(chunk.clone(), installed);
        assert!(live.is_empty());
        assert_eq!(taken_back, chunk);

        // All installed: nothing taken back.
        let chunk = vec![(sap("eth1:1.6"), vec![0]), (sap("eth1:1.7"), vec![1, 2])];
        let (live, taken_back) = split_at_first_not(chunk.clone(), installed);
        assert_eq!(live, chunk);
        assert!(taken_back.is_empty());
    }
}
