//! Subscriber services (Nokia SR OS subscriber services made of PCC rules) on the control side:
//! the `alc.sub_svc` script on Access-Accepts and CoA-Requests, the services it commits stored
//! with the subscriber in the Subscriber Manager (which pushes them to its enforcement points).
//!
//! * Access-Accept: an observer wrapped around the policy of each configured server sees the
//!   Accept on the RADIUS path. When it carries Alc-Sub-Serv-Activate it queues a copy for
//!   the script on the Python worker (never blocking) and, by default, removes the
//!   Alc-Sub-Serv-* attributes before the Accept goes to the NAS. The Accept is not held for
//!   the script: a failed script or a refused activation leaves the login as the AAA server
//!   decided it (a service kept out by a script bug or a conflict must not lock the
//!   subscriber out), and is counted and logged. The committed services are activated as one
//!   SM operation for the
//!   subscriber the Access-Request's User-Name names (created logged out when the SM does not
//!   hold it yet: the accounting Start that logs it in comes after the Accept).
//! * CoA-Request: the daemon's CoA listener hands over the requests that carry Alc-Sub-Serv-*;
//!   the subscriber is the one its User-Name, Acct-Session-Id and addresses (with
//!   NAS-Port-Id) all name (`keys`, as SR OS identifies a host); the script runs for
//!   activations, each Alc-Sub-Serv-Deactivate names a service instance, and everything is
//!   applied as one SM operation: CoA-ACK, or CoA-NAK with the Error-Cause of the refusal and
//!   nothing changed.
//! * Operators (`brasa tools perform subscriber-service`) go the CoA way.

pub mod api;
pub mod config;
pub mod keys;

use crate::daemon::coa::{CoaAnswer, CoaHandler};
use brasa_aaa::{Direction, EngineConfig, HookContext};
use brasa_python::worker::{PythonPolicies, WorkerError};
use brasa_radius::attr::USER_NAME;
use brasa_radius::{Code, Dictionary, ErrorCause, Message};
use brasa_script::SubSvcReport;
use brasa_sm::{ErrorKind, Op, SmError};
use brasa_sm_net::SmService;
use brasa_subsvc::radius::{
    ALC_SUB_SERV_ACCT_INTERIM_IVL, ALC_SUB_SERV_ACTIVATE, ALC_SUB_SERV_DEACTIVATE, VENDOR_ALCATEL,
};
use brasa_subsvc::{sub_svc_params, ServiceRequest, SubSvcParams};
use config::SubscriberServicesResolved;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most Accept-side activations applied in one SM commit.
const BATCH: usize = 1024;

/// Why a request about subscriber services was refused; nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its Alc-Sub-Serv-* attributes cannot be read.
    Attributes,
    /// The script failed (an exception, an invalid service, the time limit).
    Script,
    /// No subscriber matches (or the SM holds no such service to deactivate).
    NotFound,
    /// A committed service is invalid.
    Invalid,
    /// type-conflict-action keep-old and a service of the type is active.
    TypeConflict,
    /// A service or PCC rule name is in use with other content.
    NameInUse,
    /// Past the subscriber's dynamic policers.
    TooManyPolicers,
    /// The SM cannot take changes now (standby, store failure), or the Python worker cannot
    /// take the run.
    Unavailable,
    /// The request's Acct-Session-Id is several subscribers', and nothing else in it says
    /// which one.
    Ambiguous,
}

impl Refusal {
    /// Every reason, in the order of the metrics.
    pub const ALL: [Refusal; 9] = [
        Refusal::Attributes,
        Refusal::Script,
        Refusal::NotFound,
        Refusal::Invalid,
        Refusal::TypeConflict,
        Refusal::NameInUse,
        Refusal::TooManyPolicers,
        Refusal::Unavailable,
        Refusal::Ambiguous,
    ];

    /// The label of the metrics and of `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Attributes => "unreadable-attributes",
            Refusal::Script => "script-failed",
            Refusal::NotFound => "not-found",
            Refusal::Invalid => "invalid-service",
            Refusal::TypeConflict => "type-conflict",
            Refusal::NameInUse => "name-in-use",
            Refusal::TooManyPolicers => "too-many-policers",
            Refusal::Unavailable => "unavailable",
            Refusal::Ambiguous => "ambiguous-session",
        }
    }

    /// The Error-Cause of the CoA-NAK (the causes of [`brasa_subsvc::CoaRefusal`]).
    pub fn error_cause(self) -> ErrorCause {
        match self {
            Refusal::Attributes => ErrorCause::InvalidAttributeValue,
            Refusal::NotFound => ErrorCause::SessionContextNotFound,
            Refusal::Ambiguous => ErrorCause::MultipleSessionSelectionUnsupported,
            Refusal::TooManyPolicers | Refusal::Unavailable => ErrorCause::ResourcesUnavailable,
            Refusal::Script | Refusal::Invalid | Refusal::TypeConflict | Refusal::NameInUse => {
                ErrorCause::InvalidRequest
            }
        }
    }

    /// The reason of an SM refusal, by its status class.
    fn of(error: &SmError) -> Refusal {
        match error.kind {
            ErrorKind::InvalidArgument => Refusal::Invalid,
            ErrorKind::NotFound => Refusal::NotFound,
            ErrorKind::AlreadyExists => Refusal::NameInUse,
            ErrorKind::FailedPrecondition => Refusal::TypeConflict,
            ErrorKind::ResourceExhausted => Refusal::TooManyPolicers,
            ErrorKind::Unavailable | ErrorKind::Internal => Refusal::Unavailable,
        }
    }
}

/// A refusal and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The reason class.
    pub reason: Refusal,
    /// What was wrong, precisely.
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.message)
    }
}

impl Refused {
    fn new(reason: Refusal, message: impl Into<String>) -> Self {
        Refused {
            reason,
            message: message.into(),
        }
    }
}

impl From<SmError> for Refused {
    fn from(error: SmError) -> Self {
        Refused::new(Refusal::of(&error), error.message)
    }
}

/// Counters (`/metrics` as `brasa_subsvc_*`, `brasa show`'s JSON).
#[derive(Debug, Default)]
pub struct SubSvcStats {
    /// Access-Accepts that carried Alc-Sub-Serv-Activate.
    pub accepts: AtomicU64,
    /// Of those, not run: the Python worker's queue or the SM queue was full, or the
    /// Access-Request had no User-Name.
    pub accepts_dropped: AtomicU64,
    /// Script runs (Accepts, CoAs, operator activations).
    pub script_runs: AtomicU64,
    /// Failed runs (exception, invalid service, time limit).
    pub script_failures: AtomicU64,
    /// SM operations that activated or deactivated services.
    pub applied: AtomicU64,
    /// Refusals, by [`Refusal::ALL`] order.
    pub refusals: [AtomicU64; 9],
    /// CoA-Requests answered with a CoA-ACK.
    pub coa_acks: AtomicU64,
    /// CoA-Requests answered with a CoA-NAK.
    pub coa_naks: AtomicU64,
    /// CoA and Disconnect requests dropped by the listener (unknown client, bad
    /// authenticator, malformed).
    pub coa_dropped: AtomicU64,
}

impl SubSvcStats {
    fn refused(&self, reason: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == reason) {
            self.refusals[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// As JSON numbers.
    pub fn snapshot(&self) -> serde_json::Value {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let refusals: serde_json::Map<String, serde_json::Value> = Refusal::ALL
            .iter()
            .zip(&self.refusals)
            .map(|(r, c)| (r.as_str().to_owned(), load(c).into()))
            .collect();
        serde_json::json!({
            "accepts": load(&self.accepts),
            "accepts_dropped": load(&self.accepts_dropped),
            "script_runs": load(&self.script_runs),
            "script_failures": load(&self.script_failures),
            "applied": load(&self.applied),
            "refusals": refusals,
            "coa_acks": load(&self.coa_acks),
            "coa_naks": load(&self.coa_naks),
            "coa_dropped": load(&self.coa_dropped),
        })
    }
}

/// The subscriber services component of `brasa run`.
pub struct SubscriberServices {
    config: SubscriberServicesResolved,
    python: Arc<PythonPolicies>,
    sm: SmService,
    dictionary: Arc<Dictionary>,
    /// Counters.
    pub stats: Arc<SubSvcStats>,
}

/// What the Accept observer hands to the task that feeds the SM: the subscriber, the
/// Accept's Alc-Sub-Serv-* attributes, the run.
type AcceptRun = (String, Vec<SubSvcParams>, Result<SubSvcReport, WorkerError>);

impl SubscriberServices {
    /// Starts the component: wraps the policy of each configured server with the Accept
    /// observer (before the RADIUS engine is built) and registers its CoA handler.
    pub fn start(
        config: SubscriberServicesResolved,
        python: Arc<PythonPolicies>,
        sm: SmService,
        dictionary: Arc<Dictionary>,
        engine: Option<&mut EngineConfig>,
        coa: &mut crate::daemon::coa::CoaListeners,
    ) -> anyhow::Result<Arc<SubscriberServices>> {
        let component = Arc::new(SubscriberServices {
            config,
            python,
            sm,
            dictionary,
            stats: Arc::default(),
        });
        let (runs, queue) = mpsc::channel(component.config.queue);
        if let Some(engine) = engine {
            let observer: Arc<dyn super::RadiusObserver> = Arc::new(AcceptObserver {
                component: component.clone(),
                runs,
            });
            for &i in &component.config.servers {
                super::observe_server(engine, i, "subscriber-services", observer.clone());
            }
        }
        tokio::spawn(feed(component.clone(), queue));
        if let Some(listen) = component.config.coa_listen {
            coa.register(listen, &component.config.coa_clients, component.clone())?;
        }
        Ok(component)
    }

    /// Runs the script on `message` on the Python worker and returns what it committed.
    async fn run_script(&self, message: Message) -> Result<Vec<ServiceRequest>, Refused> {
        let (done, report) = oneshot::channel();
        let queued = self.python.run_sub_svc(
            message,
            Box::new(move |report| {
                let _ = done.send(report);
            }),
        );
        let report = match queued {
            Ok(()) => report.await.unwrap_or(Err(WorkerError::Stopped)),
            Err(err) => Err(err),
        };
        self.services_of(report)
    }

    /// The committed services of a run, counting it.
    fn services_of(
        &self,
        report: Result<SubSvcReport, WorkerError>,
    ) -> Result<Vec<ServiceRequest>, Refused> {
        // The worker could not take the run (its queue is full, or it stopped).
        let report = report.map_err(|err| {
            self.stats.refused(Refusal::Unavailable);
            Refused::new(Refusal::Unavailable, err.to_string())
        })?;
        self.stats.script_runs.fetch_add(1, Ordering::Relaxed);
        if let brasa_script::Outcome::Failed(failure) = &report.run.outcome {
            self.stats.script_failures.fetch_add(1, Ordering::Relaxed);
            self.stats.refused(Refusal::Script);
            return Err(Refused::new(Refusal::Script, failure.to_string()));
        }
        Ok(report.services)
    }

    /// Applies `requests` to subscriber `name` as one SM operation, counting the outcome.
    async fn apply(&self, name: &str, requests: Vec<ServiceRequest>) -> Result<(), Refused> {
        let op = Op::ActivateServices {
            name: name.to_owned(),
            create_in: None,
            requests,
        };
        match self.sm.execute(op).await {
            Ok(_) => {
                self.stats.applied.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                let refused = Refused::from(error);
                self.stats.refused(refused.reason);
                Err(refused)
            }
        }
    }

    /// Does what a CoA-Request (or an operator's equivalent) asks: nothing changed on `Err`.
    pub async fn handle_coa(&self, request: &Message) -> Result<String, Refused> {
        let params = sub_svc_params(request).map_err(|err| {
            self.stats.refused(Refusal::Attributes);
            Refused::new(Refusal::Attributes, err.to_string())
        })?;
        let name = keys::SessionKeys::of(request)
            .and_then(|keys| keys.resolve(self.sm.core().index()))
            .inspect_err(|refused| self.stats.refused(refused.reason))?;
        let mut requests = Vec::new();
        if params.iter().any(|p| p.activate.is_some()) {
            requests = self.run_script(request.clone()).await?;
            apply_tag_accounting(&params, &mut requests);
        }
        for params in &params {
            if let Some(service) = &params.deactivate {
                requests.push(ServiceRequest::Delete {
                    name: service.trim().to_owned(),
                });
            }
        }
        self.apply(&name, requests).await?;
        Ok(name)
    }

    /// The answer to a verified CoA-Request that carries Alc-Sub-Serv-*.
    async fn answer(&self, request: &Message) -> Option<Message> {
        let result = self.handle_coa(request).await;
        let cause = match &result {
            Ok(name) => {
                self.stats.coa_acks.fetch_add(1, Ordering::Relaxed);
                tracing::info!(subscriber = %name, "subscriber services CoA applied");
                None
            }
            Err(refused) => {
                self.stats.coa_naks.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%refused, "subscriber services CoA refused");
                Some(refused.reason.error_cause())
            }
        };
        brasa_radius::coa::answer(request, cause)
    }
}

/// Alc-Sub-Serv-Acct-Stats-Type and -Acct-Interim-Ivl of a tag apply to the service its
/// Alc-Sub-Serv-Activate made (the script's values give way to the attributes, as the
/// attributes are SR OS's own for them): the i-th activating tag to the i-th committed add,
/// when the script committed one add per activating tag.
fn apply_tag_accounting(params: &[SubSvcParams], requests: &mut [ServiceRequest]) {
    let activating: Vec<&SubSvcParams> = params.iter().filter(|p| p.activate.is_some()).collect();
    let mut adds: Vec<_> = requests
        .iter_mut()
        .filter_map(|r| match r {
            ServiceRequest::Add(service) => Some(service),
            ServiceRequest::Delete { .. } => None,
        })
        .collect();
    if adds.len() != activating.len() {
        return;
    }
    for (service, params) in adds.iter_mut().zip(activating) {
        if let Some(stats) = params.acct_stats_type {
            service.acct_stats_type = stats;
        }
        if let Some(interval) = params.acct_interim_ivl {
            service.acct_interval = Some(interval);
        }
    }
}

/// Whether `message` carries any Alc-Sub-Serv-* attribute.
fn has_sub_svc(message: &Message, activate_only: bool) -> bool {
    let last = if activate_only {
        ALC_SUB_SERV_ACTIVATE
    } else {
        ALC_SUB_SERV_ACCT_INTERIM_IVL
    };
    message
        .attributes
        .all(brasa_radius::attr::VENDOR_SPECIFIC)
        .filter_map(|v| {
            brasa_radius::vsa::vsa_split(v, VENDOR_ALCATEL, brasa_radius::VendorFormat::default())
        })
        .flatten()
        .any(|sub| (ALC_SUB_SERV_ACTIVATE..=last).contains(&sub.typ))
}

impl CoaHandler for SubscriberServices {
    fn claims(&self, request: &Message) -> bool {
        request.code == Code::CoaRequest && has_sub_svc(request, false)
    }

    fn answer(self: Arc<Self>, request: Message) -> CoaAnswer {
        Box::pin(async move { SubscriberServices::answer(&self, &request).await })
    }

    fn dropped(&self) {
        self.stats.coa_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sees the Access-Accepts of the configured servers on the RADIUS path: queues those that carry
/// Alc-Sub-Serv-Activate for the script and strips the attributes (see the module docs).
struct AcceptObserver {
    component: Arc<SubscriberServices>,
    runs: mpsc::Sender<AcceptRun>,
}

impl super::RadiusObserver for AcceptObserver {
    fn observe(&self, context: &mut HookContext<'_>) {
        if context.code != Code::AccessAccept
            || context.direction != Direction::Ingress
            || !has_sub_svc(context.packet, true)
        {
            return;
        }
        let component = &self.component;
        component.stats.accepts.fetch_add(1, Ordering::Relaxed);
        let user = context
            .request
            .and_then(|r| r.get(USER_NAME))
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned);
        let params = match sub_svc_params(context.packet) {
            Ok(params) => params,
            Err(err) => {
                component.stats.refused(Refusal::Attributes);
                tracing::info!(server = %context.server, %err, "Access-Accept's subscriber services not run");
                return;
            }
        };
        let copy = context.packet.clone();
        if component.config.strip_attributes {
            for typ in ALC_SUB_SERV_ACTIVATE..=ALC_SUB_SERV_ACCT_INTERIM_IVL {
                context
                    .packet
                    .remove_vsa(context.dictionary, VENDOR_ALCATEL, typ);
            }
        }
        let Some(user) = user else {
            component
                .stats
                .accepts_dropped
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(server = %context.server, "Access-Accept with Alc-Sub-Serv-Activate for an Access-Request without User-Name: no subscriber to give the services to");
            return;
        };
        let runs = self.runs.clone();
        let stats = component.stats.clone();
        let queued = component.python.run_sub_svc(
            copy,
            Box::new(move |report| {
                if runs.try_send((user, params, report)).is_err() {
                    stats.accepts_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }),
        );
        if let Err(err) = queued {
            component
                .stats
                .accepts_dropped
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%err, "subscriber services script not run for an Access-Accept");
        }
    }
}

/// Applies the services committed on Access-Accepts, in batches (one durable commit each).
async fn feed(component: Arc<SubscriberServices>, mut queue: mpsc::Receiver<AcceptRun>) {
    while let Some(first) = queue.recv().await {
        let mut runs = vec![first];
        while runs.len() < BATCH {
            match queue.try_recv() {
                Ok(run) => runs.push(run),
                Err(_) => break,
            }
        }
        let mut names = Vec::with_capacity(runs.len());
        let mut ops = Vec::with_capacity(runs.len());
        for (name, params, report) in runs {
            match component.services_of(report) {
                Ok(requests) if requests.is_empty() => {}
                Ok(mut requests) => {
                    apply_tag_accounting(&params, &mut requests);
                    ops.push(Ok(Op::ActivateServices {
                        name: name.clone(),
                        create_in: Some(component.config.domain.clone()),
                        requests,
                    }));
                    names.push(name);
                }
                Err(refused) => {
                    tracing::warn!(subscriber = %name, %refused, "subscriber services of an Access-Accept not activated")
                }
            }
        }
        if ops.is_empty() {
            continue;
        }
        for (name, result) in names.iter().zip(component.sm.submit(ops).wait().await) {
            match result {
                Ok(_) => {
                    component.stats.applied.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    let refused = Refused::from(error);
                    component.stats.refused(refused.reason);
                    tracing::info!(subscriber = %name, %refused, "subscriber services of an Access-Accept refused");
                }
            }
        }
    }
}

/// Builds the CoA-Request an operator's command stands for: User-Name, then the tagged
/// Alc-Sub-Serv-* attributes (a long value split over attributes, as the tag concatenates
/// them).
pub fn operator_request(
    dictionary: &Dictionary,
    subscriber: &str,
    attribute: u32,
    value: &str,
    acct_stats_type: Option<u32>,
    acct_interval: Option<u32>,
) -> Result<Message, brasa_radius::PacketError> {
    const TAG: u8 = 1;
    const CHUNK: usize = 240;
    let mut message = Message::new(Code::CoaRequest, 0);
    message.add(USER_NAME, subscriber.as_bytes())?;
    let bytes = value.as_bytes();
    let mut start = 0;
    while start < bytes.len() || start == 0 {
        let mut end = (start + CHUNK).min(bytes.len());
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        let mut tagged = vec![TAG];
        tagged.extend_from_slice(&bytes[start..end]);
        message.add_vsa(dictionary, VENDOR_ALCATEL, attribute, &tagged)?;
        if end == bytes.len() {
            break;
        }
        start = end;
    }
    let mut integer = |typ: u32, value: u32| {
        let mut tagged = value.to_be_bytes();
        tagged[0] = TAG;
        message.add_vsa(dictionary, VENDOR_ALCATEL, typ, &tagged)
    };
    if let Some(stats) = acct_stats_type {
        integer(brasa_subsvc::radius::ALC_SUB_SERV_ACCT_STATS_TYPE, stats)?;
    }
    if let Some(interval) = acct_interval {
        integer(ALC_SUB_SERV_ACCT_INTERIM_IVL, interval)?;
    }
    Ok(message)
}

/// The attribute of an operator's deactivation.
pub const DEACTIVATE: u32 = ALC_SUB_SERV_DEACTIVATE;
/// The attribute of an operator's activation.
pub const ACTIVATE: u32 = ALC_SUB_SERV_ACTIVATE;
