//! The data trigger state machine (Nokia SR OS dynamic data services, "Data trigger", "Control
//! plane protection"): frames from capture SAPs become triggers (Pending → Accepted →
//! sapCreated), each failure is counted under its Table 3 drop reason and locks the SAP out.
//!
//! The per-trigger throttle ("frames dropped at IOM") is the data plane's: it lets one frame of
//! a (capture SAP, outer, inner) key through and drops the others until the control side
//! releases the key. [`Triggers::take_settled`] says which keys to release: those whose trigger
//! left progress (sapCreated, failed, removed) and those whose frame made no trigger.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use brasa_services::{MacAddr, SapId};
use thiserror::Error;

use crate::auth::{AuthFailure, DynService};
use crate::frame::TriggerFrame;
use crate::lockout::{HostLockoutPolicy, Lockouts};
use crate::rate::TokenBucket;

/// Most dynamic services one data trigger may own (32 at authentication, up to 4000 via CoA).
pub const MAX_SERVICES_PER_TRIGGER: usize = 4000;

/// The drop-reason counters of a capture SAP (Table 3), in the guide's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// No dynamic services policy configured at the capture SAP.
    NoPolicy,
    /// The policy's authentication section is missing or incomplete.
    NoAuthentication,
    /// A frame for a trigger that is authenticated but whose SAP is not yet created.
    TriggerExists,
    /// The trigger's SAP is locked out after failures.
    LockoutActive,
    /// The system's data trigger limit is reached.
    SystemLimit,
    /// Memory for a new trigger could not be reserved.
    NoMemory,
    /// Authentication failed or timed out.
    UnsuccessfulAuthentication,
    /// The authentication did not provide the trigger's SAP id.
    NoTriggerSapInAuthentication,
    /// Authenticated, but the trigger's dynamic SAP was not created (script error, timeout).
    SapNotCreated,
}

impl DropReason {
    /// Every reason, in the order of the guide's show output.
    pub const ALL: [DropReason; 9] = [
        DropReason::NoPolicy,
        DropReason::NoAuthentication,
        DropReason::TriggerExists,
        DropReason::LockoutActive,
        DropReason::SystemLimit,
        DropReason::NoMemory,
        DropReason::UnsuccessfulAuthentication,
        DropReason::NoTriggerSapInAuthentication,
        DropReason::SapNotCreated,
    ];

    /// The counter's label in `show … dynamic-services capture-sap SAP statistics`.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::NoPolicy => "No policy configured at capture SAP level",
            DropReason::NoAuthentication => "No authentication configured in policy",
            DropReason::TriggerExists => "Data-trigger already exists",
            DropReason::LockoutActive => "Lockout is active",
            DropReason::SystemLimit => "Reached data-trigger system limit",
            DropReason::NoMemory => "No memory available",
            DropReason::UnsuccessfulAuthentication => "Unsuccessful authentication",
            DropReason::NoTriggerSapInAuthentication => "No data-trigger SAP-id in authentication",
            DropReason::SapNotCreated => "Corresponding dynamic SAP is not created",
        }
    }

    fn index(self) -> usize {
        DropReason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// A capture SAP's control-plane data trigger statistics (Table 3; Table 2's "CPM Ingress"
/// and "Forwarding Engine Stats Dropped" are the data plane's counters of the capture SAP).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureSapStats {
    /// "Data packets received by SAP": frames that reached trigger processing (after the
    /// control-plane rate limit).
    pub received: u64,
    drops: [u64; 9],
}

impl CaptureSapStats {
    /// The counter of `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Every drop counter with its label, in the guide's order.
    pub fn drop_counters(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.into_iter().map(|r| (r, self.dropped(r)))
    }

    fn count(&mut self, reason: DropReason) {
        self.drops[reason.index()] += 1;
    }
}

/// How a dynamic-services-policy authenticates triggers (RADIUS and local are exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// RADIUS through a server pool.
    Radius {
        /// The radius-server-policy (brasa-aaa upstream pool) name.
        server_policy: String,
        /// The password of every Access-Request.
        password: Vec<u8>,
    },
    /// A local-auth-db.
    Local {
        /// Its name.
        db: String,
    },
}

/// The parts of a dynamic-services-policy the trigger machine needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynServicesPolicy {
    /// `None` when the authentication section is missing or incomplete.
    pub authentication: Option<Authentication>,
}

/// A capture SAP's data trigger settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureSapConfig {
    /// dynamic-services-policy name.
    pub policy: Option<String>,
    /// host-lockout-policy name.
    pub host_lockout_policy: Option<String>,
}

/// System-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggersConfig {
    /// `timers setup-timeout access-accept` (default 30 s).
    pub setup_timeout: Duration,
    /// Most data triggers at once ("Reached data-trigger system limit").
    pub max_triggers: usize,
    /// Control-plane rate limit: triggers a second and burst.
    pub rate_per_sec: u32,
    /// Burst of the control-plane rate limit.
    pub burst: u32,
    /// A prefix (e.g. boot time in seconds) making Acct-Session-Ids unique across restarts.
    pub session_id_prefix: u32,
}

impl Default for TriggersConfig {
    fn default() -> Self {
        Self {
            setup_timeout: Duration::from_secs(30),
            max_triggers: 100_000,
            rate_per_sec: 10_000,
            burst: 1_000,
            session_id_prefix: 0,
        }
    }
}

/// A trigger's state (Table 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerState {
    /// Received, authentication started.
    Pending,
    /// Authenticated; the script runs.
    Accepted,
    /// The trigger's dynamic SAP exists.
    SapCreated,
}

impl TriggerState {
    /// The guide's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerState::Pending => "Pending",
            TriggerState::Accepted => "Accepted",
            TriggerState::SapCreated => "sapCreated",
        }
    }
}

/// One data trigger (Table 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// Its SAP id (the key).
    pub sap: SapId,
    /// The capture SAP it arrived on.
    pub capture_sap: SapId,
    /// Its Acct-Session-Id (the Acct-Multi-Session-Id of its services).
    pub acct_session_id: String,
    /// The trigger frame's source MAC.
    pub mac: MacAddr,
    /// The trigger frame's IP source.
    pub ip: Option<IpAddr>,
    /// State.
    pub state: TriggerState,
    /// The dynamic-services-policy of the capture SAP.
    pub policy: String,
    /// Setup deadline while Accepted.
    pub setup_deadline: Option<Instant>,
    /// Dynamic service SAPs it owns.
    pub services: BTreeSet<SapId>,
}

/// A dynamic service SAP created for a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// Owning trigger.
    pub trigger: SapId,
    /// The service's own Acct-Session-Id.
    pub acct_session_id: String,
}

/// What became of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameVerdict {
    /// A new trigger: authenticate it.
    Authenticate {
        /// Trigger SAP.
        trigger: SapId,
        /// How.
        authentication: Authentication,
    },
    /// Dropped by the control-plane rate limit.
    RateLimited,
    /// Not a data trigger: unknown capture SAP, or tags contradicting it.
    NotCaptured,
    /// Dropped for a Table 3 reason.
    Dropped(DropReason),
}

/// The services a removed trigger leaves for the caller to tear down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Teardown {
    /// The trigger.
    pub trigger: SapId,
    /// Its Acct-Session-Id.
    pub acct_session_id: String,
    /// Its services with their Acct-Session-Ids, the trigger's own SAP last.
    pub services: Vec<(SapId, String)>,
}

/// An invalid call: refused, nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TriggerError {
    /// No such trigger.
    #[error("no data trigger {0}")]
    UnknownTrigger(SapId),
    /// The trigger is not in the state the call needs.
    #[error("data trigger {sap} is {state}, not {expected}")]
    WrongState {
        /// Trigger.
        sap: SapId,
        /// Its state.
        state: &'static str,
        /// The state the call needs.
        expected: &'static str,
    },
    /// The SAP is already a dynamic service.
    #[error("dynamic service SAP {0} already exists")]
    ServiceExists(SapId),
    /// No such dynamic service.
    #[error("no dynamic service SAP {0}")]
    UnknownService(SapId),
    /// 4000 services already.
    #[error("data trigger {0} owns 4000 dynamic services already")]
    TooManyServices(SapId),
    /// A capture SAP without wildcard tag, or unknown.
    #[error("{0} is not a dynamic services capture SAP")]
    NotCaptureSap(SapId),
}

#[derive(Debug)]
struct CaptureSap {
    config: CaptureSapConfig,
    stats: CaptureSapStats,
}

/// The data trigger state machine of one router. Sans-IO: the caller feeds frames,
/// authentication results, script outcomes and `now`, and acts on what it returns.
#[derive(Debug)]
pub struct Triggers {
    config: TriggersConfig,
    policies: HashMap<String, DynServicesPolicy>,
    lockouts: HashMap<String, Lockouts>,
    capture_saps: HashMap<SapId, CaptureSap>,
    triggers: HashMap<SapId, Trigger>,
    by_session: HashMap<String, SapId>,
    services: HashMap<SapId, ServiceEntry>,
    service_sessions: HashMap<String, SapId>,
    bucket: TokenBucket,
    rate_limited: u64,
    not_captured: u64,
    next_session: u64,
    /// Trigger SAPs whose throttle key the data plane may release (see [`Triggers::take_settled`]).
    settled: Vec<SapId>,
}

impl Triggers {
    /// No capture SAPs, policies or triggers yet.
    pub fn new(config: TriggersConfig) -> Self {
        Self {
            bucket: TokenBucket::new(config.rate_per_sec, config.burst),
            config,
            policies: HashMap::new(),
            lockouts: HashMap::new(),
            capture_saps: HashMap::new(),
            triggers: HashMap::new(),
            by_session: HashMap::new(),
            services: HashMap::new(),
            service_sessions: HashMap::new(),
            rate_limited: 0,
            not_captured: 0,
            next_session: 0,
            settled: Vec::new(),
        }
    }

    /// Adds or replaces a dynamic-services-policy.
    pub fn set_policy(&mut self, name: &str, policy: DynServicesPolicy) {
        self.policies.insert(name.to_owned(), policy);
    }

    /// Adds or replaces a host-lockout-policy (its contexts start empty when new).
    pub fn set_lockout_policy(&mut self, name: &str, policy: HostLockoutPolicy) {
        self.lockouts.insert(name.to_owned(), Lockouts::new(policy));
    }

    /// A dynamic-services-policy.
    pub fn policy(&self, name: &str) -> Option<&DynServicesPolicy> {
        self.policies.get(name)
    }

    /// A host-lockout-policy's contexts.
    pub fn lockouts(&self, name: &str) -> Option<&Lockouts> {
        self.lockouts.get(name)
    }

    /// A host-lockout-policy's contexts, for `clear`.
    pub fn lockouts_mut(&mut self, name: &str) -> Option<&mut Lockouts> {
        self.lockouts.get_mut(name)
    }

    /// Makes `sap` a data trigger capture SAP (it must have a `*` tag).
    pub fn add_capture_sap(
        &mut self,
        sap: SapId,
        config: CaptureSapConfig,
    ) -> Result<(), TriggerError> {
        if !sap.has_wildcard() {
            return Err(TriggerError::NotCaptureSap(sap));
        }
        match self.capture_saps.get_mut(&sap) {
            Some(existing) => existing.config = config,
            None => {
                self.capture_saps.insert(
                    sap,
                    CaptureSap {
                        config,
                        stats: CaptureSapStats::default(),
                    },
                );
            }
        }
        Ok(())
    }

    /// A capture SAP's statistics.
    pub fn stats(&self, capture_sap: &SapId) -> Option<&CaptureSapStats> {
        self.capture_saps.get(capture_sap).map(|c| &c.stats)
    }

    /// Every capture SAP with its statistics, in SAP order.
    pub fn capture_saps(&self) -> impl Iterator<Item = (&SapId, &CaptureSapStats)> {
        let mut all: Vec<_> = self
            .capture_saps
            .iter()
            .map(|(sap, capture)| (sap, &capture.stats))
            .collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all.into_iter()
    }

    /// `clear … capture-sap SAP statistics`.
    pub fn clear_stats(&mut self, capture_sap: &SapId) -> Result<(), TriggerError> {
        let capture = self
            .capture_saps
            .get_mut(capture_sap)
            .ok_or_else(|| TriggerError::NotCaptureSap(capture_sap.clone()))?;
        capture.stats = CaptureSapStats::default();
        Ok(())
    }

    /// Frames dropped by the control-plane rate limit, over all capture SAPs.
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited
    }

    /// Frames that were no data trigger (unknown capture SAP, contradicting tags).
    pub fn not_captured(&self) -> u64 {
        self.not_captured
    }

    /// Every trigger, in SAP order (`show service dynamic-services data-triggers`).
    pub fn triggers(&self) -> Vec<&Trigger> {
        let mut all: Vec<&Trigger> = self.triggers.values().collect();
        all.sort_by(|a, b| a.sap.cmp(&b.sap));
        all
    }

    /// The trigger with SAP id `sap`.
    pub fn trigger(&self, sap: &SapId) -> Option<&Trigger> {
        self.triggers.get(sap)
    }

    /// The trigger with Acct-Session-Id `id`.
    pub fn trigger_by_session(&self, id: &str) -> Option<&Trigger> {
        self.by_session
            .get(id)
            .and_then(|sap| self.triggers.get(sap))
    }

    /// The dynamic service on `sap`.
    pub fn service(&self, sap: &SapId) -> Option<&ServiceEntry> {
        self.services.get(sap)
    }

    /// The dynamic service SAP with Acct-Session-Id `id`.
    pub fn service_by_session(&self, id: &str) -> Option<(&SapId, &ServiceEntry)> {
        let sap = self.service_sessions.get(id)?;
        self.services.get_key_value(sap)
    }

    fn new_session_id(&mut self) -> String {
        self.next_session += 1;
        format!(
            "{:08X}{:014X}",
            self.config.session_id_prefix, self.next_session
        )
    }

    /// Whether the trigger with SAP id `sap` is in progress (Pending or Accepted): while it is,
    /// the data plane keeps throttling its frames.
    pub fn in_progress(&self, sap: &SapId) -> bool {
        self.triggers
            .get(sap)
            .is_some_and(|t| t.state != TriggerState::SapCreated)
    }

    /// The trigger SAPs that are not in progress since the last call, each at most once per
    /// event: a trigger that left progress (sapCreated, failed, cleared, torn down) or a frame
    /// that made no trigger. The caller releases their throttle keys in the data plane, so that
    /// their next frame reaches [`Triggers::handle_frame`] (a re-trigger, or a Table 3 drop
    /// such as "Lockout is active").
    pub fn take_settled(&mut self) -> std::vec::Drain<'_, SapId> {
        self.settled.drain(..)
    }

    fn settle(&mut self, sap: &SapId) {
        if !self.in_progress(sap) {
            self.settled.push(sap.clone());
        }
    }

    /// A frame from a capture SAP that passed the data plane's throttle, in the guide's
    /// order: the control-plane rate limit, then the Table 3 checks; a frame that passes them
    /// all creates a Pending trigger.
    pub fn handle_frame(&mut self, frame: &TriggerFrame, now: Instant) -> FrameVerdict {
        let Some(sap) = frame.trigger_sap() else {
            self.not_captured += 1;
            return FrameVerdict::NotCaptured;
        };
        let verdict = self.admit_frame(frame, sap.clone(), now);
        self.settle(&sap);
        verdict
    }

    fn admit_frame(&mut self, frame: &TriggerFrame, sap: SapId, now: Instant) -> FrameVerdict {
        let Some(capture) = self.capture_saps.get_mut(&frame.capture_sap) else {
            self.not_captured += 1;
            return FrameVerdict::NotCaptured;
        };
        if !self.bucket.take(now) {
            self.rate_limited += 1;
            return FrameVerdict::RateLimited;
        }
        capture.stats.received += 1;
        let verdict = Self::admit(
            &self.config,
            &self.policies,
            &self.lockouts,
            &mut self.triggers,
            &capture.config,
            &sap,
            now,
        );
        let authentication = match verdict {
            Ok(authentication) => authentication,
            Err(reason) => {
                capture.stats.count(reason);
                return FrameVerdict::Dropped(reason);
            }
        };
        let policy = capture.config.policy.clone().unwrap_or_default();
        let acct_session_id = self.new_session_id();
        self.by_session.insert(acct_session_id.clone(), sap.clone());
        self.triggers.insert(
            sap.clone(),
            Trigger {
                sap: sap.clone(),
                capture_sap: frame.capture_sap.clone(),
                acct_session_id,
                mac: frame.mac,
                ip: frame.ip,
                state: TriggerState::Pending,
                policy,
                setup_deadline: None,
                services: BTreeSet::new(),
            },
        );
        FrameVerdict::Authenticate {
            trigger: sap,
            authentication,
        }
    }

    fn admit(
        config: &TriggersConfig,
        policies: &HashMap<String, DynServicesPolicy>,
        lockouts: &HashMap<String, Lockouts>,
        triggers: &mut HashMap<SapId, Trigger>,
        capture: &CaptureSapConfig,
        sap: &SapId,
        now: Instant,
    ) -> Result<Authentication, DropReason> {
        let policy = capture
            .policy
            .as_ref()
            .and_then(|name| policies.get(name))
            .ok_or(DropReason::NoPolicy)?;
        let authentication = policy
            .authentication
            .clone()
            .ok_or(DropReason::NoAuthentication)?;
        if triggers.contains_key(sap) {
            return Err(DropReason::TriggerExists);
        }
        let locked = capture
            .host_lockout_policy
            .as_ref()
            .and_then(|name| lockouts.get(name))
            .is_some_and(|l| l.is_locked(sap, now));
        if locked {
            return Err(DropReason::LockoutActive);
        }
        if triggers.len() >= config.max_triggers {
            return Err(DropReason::SystemLimit);
        }
        triggers.try_reserve(1).map_err(|_| DropReason::NoMemory)?;
        Ok(authentication)
    }

    fn pending(&self, sap: &SapId, expected: TriggerState) -> Result<&Trigger, TriggerError> {
        let trigger = self
            .triggers
            .get(sap)
            .ok_or_else(|| TriggerError::UnknownTrigger(sap.clone()))?;
        if trigger.state != expected {
            return Err(TriggerError::WrongState {
                sap: sap.clone(),
                state: trigger.state.as_str(),
                expected: expected.as_str(),
            });
        }
        Ok(trigger)
    }

    /// The authentication of a Pending trigger ended. On success the trigger is Accepted and
    /// its setup timer runs: the caller runs the script for every service returned. On failure
    /// the trigger is deleted, counted under the failure's reason and locked out.
    pub fn handle_authentication(
        &mut self,
        sap: &SapId,
        result: Result<Vec<DynService>, AuthFailure>,
        now: Instant,
    ) -> Result<Result<Vec<DynService>, DropReason>, TriggerError> {
        self.pending(sap, TriggerState::Pending)?;
        match result {
            Ok(services) => {
                let deadline = now + self.config.setup_timeout;
                if let Some(trigger) = self.triggers.get_mut(sap) {
                    trigger.state = TriggerState::Accepted;
                    trigger.setup_deadline = Some(deadline);
                }
                Ok(Ok(services))
            }
            Err(failure) => {
                let reason = failure.drop_reason();
                self.fail(sap, reason, now);
                Ok(Err(reason))
            }
        }
    }

    /// The script created dynamic service SAP `service` for trigger `sap`; returns the
    /// service's Acct-Session-Id. When it is the trigger's own SAP the trigger is sapCreated.
    pub fn service_created(&mut self, sap: &SapId, service: SapId) -> Result<String, TriggerError> {
        let trigger = self
            .triggers
            .get(sap)
            .ok_or_else(|| TriggerError::UnknownTrigger(sap.clone()))?;
        if self.services.contains_key(&service) {
            return Err(TriggerError::ServiceExists(service));
        }
        if trigger.services.len() >= MAX_SERVICES_PER_TRIGGER {
            return Err(TriggerError::TooManyServices(sap.clone()));
        }
        let acct_session_id = self.new_session_id();
        let trigger = self
            .triggers
            .get_mut(sap)
            .ok_or_else(|| TriggerError::UnknownTrigger(sap.clone()))?;
        if &service == sap {
            trigger.state = TriggerState::SapCreated;
            trigger.setup_deadline = None;
            self.settled.push(sap.clone());
        }
        trigger.services.insert(service.clone());
        self.service_sessions
            .insert(acct_session_id.clone(), service.clone());
        self.services.insert(
            service,
            ServiceEntry {
                trigger: sap.clone(),
                acct_session_id: acct_session_id.clone(),
            },
        );
        Ok(acct_session_id)
    }

    /// The script of an Accepted trigger failed: "Corresponding dynamic SAP is not created";
    /// the trigger is deleted and locked out, and what it had created is returned for teardown.
    pub fn setup_failed(&mut self, sap: &SapId, now: Instant) -> Result<Teardown, TriggerError> {
        self.pending(sap, TriggerState::Accepted)?;
        Ok(self.fail(sap, DropReason::SapNotCreated, now))
    }

    /// A dynamic service SAP was removed (teardown script done). Removing the trigger's own
    /// SAP removes the trigger: the other services it owns are returned for teardown and a
    /// lockout context in its grace period is created.
    pub fn service_removed(
        &mut self,
        service: &SapId,
        now: Instant,
    ) -> Result<Option<Teardown>, TriggerError> {
        let entry = self
            .services
            .get(service)
            .ok_or_else(|| TriggerError::UnknownService(service.clone()))?;
        let owner = entry.trigger.clone();
        if &owner == service {
            return self.clear_trigger(&owner, now).map(Some);
        }
        if let Some(entry) = self.services.remove(service) {
            self.service_sessions.remove(&entry.acct_session_id);
        }
        if let Some(trigger) = self.triggers.get_mut(&owner) {
            trigger.services.remove(service);
        }
        Ok(None)
    }

    /// Removes a trigger on purpose (`clear service dynamic-services data-trigger`, a CoA or a
    /// Disconnect): returns every service it owns; the lockout context is created in its grace
    /// period, never locked.
    pub fn clear_trigger(&mut self, sap: &SapId, now: Instant) -> Result<Teardown, TriggerError> {
        let capture_sap = self
            .triggers
            .get(sap)
            .map(|trigger| trigger.capture_sap.clone())
            .ok_or_else(|| TriggerError::UnknownTrigger(sap.clone()))?;
        if let Some(lockouts) = self.lockout_of(&capture_sap) {
            lockouts.teardown(sap, &capture_sap, now);
        }
        Ok(self.remove(sap))
    }

    fn lockout_of(&mut self, capture_sap: &SapId) -> Option<&mut Lockouts> {
        let name = self
            .capture_saps
            .get(capture_sap)?
            .config
            .host_lockout_policy
            .clone()?;
        self.lockouts.get_mut(&name)
    }

    fn fail(&mut self, sap: &SapId, reason: DropReason, now: Instant) -> Teardown {
        if let Some(capture_sap) = self.triggers.get(sap).map(|t| t.capture_sap.clone()) {
            if let Some(capture) = self.capture_saps.get_mut(&capture_sap) {
                capture.stats.count(reason);
            }
            if let Some(lockouts) = self.lockout_of(&capture_sap) {
                lockouts.fail(sap, &capture_sap, now);
            }
        }
        self.remove(sap)
    }

    fn remove(&mut self, sap: &SapId) -> Teardown {
        self.settled.push(sap.clone());
        let Some(trigger) = self.triggers.remove(sap) else {
            return Teardown {
                trigger: sap.clone(),
                acct_session_id: String::new(),
                services: Vec::new(),
            };
        };
        self.by_session.remove(&trigger.acct_session_id);
        let mut services: Vec<(SapId, String)> = Vec::with_capacity(trigger.services.len());
        let mut own = None;
        for service in &trigger.services {
            if let Some(entry) = self.services.remove(service) {
                self.service_sessions.remove(&entry.acct_session_id);
                if service == sap {
                    own = Some((service.clone(), entry.acct_session_id));
                } else {
                    services.push((service.clone(), entry.acct_session_id));
                }
            }
        }
        services.extend(own);
        Teardown {
            trigger: trigger.sap,
            acct_session_id: trigger.acct_session_id,
            services,
        }
    }

    /// The next instant [`Triggers::handle_timeout`] has work: a setup deadline or a lockout
    /// context to forget.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let setup = self
            .triggers
            .values()
            .filter_map(|t| t.setup_deadline)
            .min();
        let lockout = self
            .lockouts
            .values()
            .filter_map(Lockouts::poll_timeout)
            .min();
        setup.into_iter().chain(lockout).min()
    }

    /// Fails every Accepted trigger whose setup timeout passed ("Corresponding dynamic SAP is
    /// not created", lockout) and forgets expired lockout contexts; returns what to tear down.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Teardown> {
        let expired: Vec<SapId> = self
            .triggers
            .values()
            .filter(|t| t.setup_deadline.is_some_and(|d| d <= now))
            .map(|t| t.sap.clone())
            .collect();
        let teardowns = expired
            .iter()
            .map(|sap| self.fail(sap, DropReason::SapNotCreated, now))
            .collect();
        for lockouts in self.lockouts.values_mut() {
            lockouts.handle_timeout(now);
        }
        teardowns
    }
}
