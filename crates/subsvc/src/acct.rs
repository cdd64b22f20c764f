//! RADIUS accounting of subscriber service instances (Nokia SR OS subscriber services):
//! Start at activation, Interim-Update every acct-interval, Stop at deactivation or logout.
//!
//! Each record is an Accounting-Request without authenticator, for the shell to send to the
//! subscriber's accounting pool. Acct-Session-Id is the instance's own (22 hex digits, like
//! SR OS's), Acct-Multi-Session-Id the subscriber session's, and an untagged
//! Alc-Sub-Serv-Activate carries the instance name, as SR OS sends it. Volumes follow the
//! counter rule ([`crate::counters`]) over counters the caller reads; `now` is an argument.
//!
//! Every record carries what it [`Reported`] of its instance. A shell that keeps the last
//! one of each instance in a durable journal (and forgets it at the Stop) can still send the
//! Stops of the instances a crash ended: [`Reported::stop`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use brasa_radius::acct::{session_time, InterimSchedule, SessionCounters};
use brasa_radius::attr::{
    ACCT_MULTI_SESSION_ID, ACCT_SESSION_ID, ACCT_SESSION_TIME, ACCT_STATUS_TYPE,
    ACCT_TERMINATE_CAUSE, NAS_IDENTIFIER, USER_NAME, VENDOR_SPECIFIC,
};
use brasa_radius::vsa::vsa_build;
use brasa_radius::{AcctStatusType, AcctTerminateCause, Code, Message, PacketError, VendorFormat};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::counters::{service_volume, CounterSource, Volume};
use crate::model::{AcctStatsType, SubscriberService, MAX_ACCT_INTERVAL, MIN_ACCT_INTERVAL};
use crate::radius::{ALC_SUB_SERV_ACTIVATE, VENDOR_ALCATEL};

/// An accounted service instance: the subscriber and the instance name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceKey {
    /// The subscriber's name.
    pub subscriber: String,
    /// The service instance name.
    pub service: String,
}

/// One Accounting-Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcctRecord {
    /// Start, Interim-Update or Stop.
    pub status: AcctStatusType,
    /// The request, authenticator unset.
    pub message: Message,
    /// What the request reports of its instance.
    pub reported: Reported,
}

impl AcctRecord {
    /// The instance it reports on.
    pub fn instance(&self) -> &InstanceKey {
        &self.reported.instance
    }
}

/// What the last record of an instance reported: enough to build its Stop without the
/// process that ran it (see [`Reported::stop`]), so it is what a journal of the instances
/// whose Start was sent keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Reported {
    /// The subscriber and the instance name.
    pub instance: InstanceKey,
    /// The instance's Acct-Session-Id.
    pub acct_session_id: String,
    /// The subscriber session's Acct-Session-Id (Acct-Multi-Session-Id).
    pub multi_session_id: String,
    /// NAS-Identifier of the records.
    pub nas_identifier: String,
    /// Whether the volume is reported (volume-time) or only the time.
    pub stats_type: AcctStatsType,
    /// Acct-Session-Time of the record, seconds (0 for a Start).
    pub session_time: u32,
    /// The volume by the counter rule (zero for a Start).
    pub volume: Volume,
}

impl Reported {
    /// The Stop of an instance whose process ended without sending it (a crash): the last
    /// reported session time and volume, since nothing later is known, and `cause`
    /// (NAS-Reboot for a crash, RFC 2866 §5.10).
    pub fn stop(&self, cause: AcctTerminateCause) -> Result<AcctRecord, AcctError> {
        Ok(AcctRecord {
            status: AcctStatusType::Stop,
            message: self.message(AcctStatusType::Stop, Some(cause))?,
            reported: self.clone(),
        })
    }

    /// Its Accounting-Request. Start carries no time or counters; Interim-Update and Stop
    /// carry Acct-Session-Time, and with volume-time the volume.
    fn message(
        &self,
        status: AcctStatusType,
        cause: Option<AcctTerminateCause>,
    ) -> Result<Message, PacketError> {
        let mut message = Message::new(Code::AccountingRequest, 0);
        message.add_fixed(ACCT_STATUS_TYPE, status.to_value());
        message.add(USER_NAME, &self.instance.subscriber)?;
        message.add(ACCT_SESSION_ID, &self.acct_session_id)?;
        message.add(ACCT_MULTI_SESSION_ID, &self.multi_session_id)?;
        message.add(NAS_IDENTIFIER, &self.nas_identifier)?;
        add_service_name(&mut message, &self.instance.service)?;
        if status != AcctStatusType::Start {
            message.add_fixed(ACCT_SESSION_TIME, self.session_time.to_be_bytes());
            if self.stats_type == AcctStatsType::VolumeTime {
                SessionCounters::from(self.volume).add_to(&mut message);
            }
        }
        if let Some(cause) = cause {
            message.add_fixed(ACCT_TERMINATE_CAUSE, cause.to_value());
        }
        Ok(message)
    }
}

/// An invalid call: refused, nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AcctError {
    /// Accounting of the instance runs already.
    #[error("accounting of subscriber service {0:?} is started already")]
    AlreadyStarted(InstanceKey),
    /// No accounting runs for the instance.
    #[error("no accounting for subscriber service {0:?}")]
    NotStarted(InstanceKey),
    /// An attribute could not be added (a value over 253 octets).
    #[error("accounting record: {0}")]
    Packet(#[from] PacketError),
}

#[derive(Debug)]
struct Running {
    service: SubscriberService,
    acct_session_id: String,
    multi_session_id: String,
    interval: Option<Duration>,
    started: Instant,
    next_interim: Option<Instant>,
    aggregate_at_start: Volume,
}

/// The accounting sessions of every subscriber service instance with accounting on.
#[derive(Debug)]
pub struct Accounting {
    nas_identifier: String,
    session_id_prefix: u32,
    next_session: u64,
    default_interval: Option<u32>,
    min_interval: u32,
    running: HashMap<InstanceKey, Running>,
    schedule: InterimSchedule<InstanceKey>,
}

impl Accounting {
    /// No instances yet. Records carry `nas_identifier`; Acct-Session-Ids start with
    /// `session_id_prefix` (8 hex digits, unique per node and start-up); a service without
    /// acct-interval gets `default_interval` seconds (the accounting policy's
    /// update-interval; `None` or 0: no Interim-Update). Intervals shorter than SR OS's
    /// [`MIN_ACCT_INTERVAL`] are raised to it (see [`Accounting::with_min_interval`]).
    pub fn new(
        nas_identifier: impl Into<String>,
        session_id_prefix: u32,
        default_interval: Option<u32>,
    ) -> Self {
        Self {
            nas_identifier: nas_identifier.into(),
            session_id_prefix,
            next_session: 0,
            default_interval,
            min_interval: MIN_ACCT_INTERVAL,
            running: HashMap::new(),
            schedule: InterimSchedule::new(),
        }
    }

    /// Raises intervals shorter than `secs` (at least 1 s, at most 180 days: a value out of
    /// that range is brought into it) to `secs` instead of SR OS's 300 s: for a lab that
    /// wants Interim-Updates within a test's minutes. It applies to the instances started
    /// afterwards.
    pub fn with_min_interval(mut self, secs: u32) -> Self {
        self.min_interval = secs.clamp(1, MAX_ACCT_INTERVAL);
        self
    }

    /// Whether accounting runs for the instance.
    pub fn is_running(&self, instance: &InstanceKey) -> bool {
        self.running.contains_key(instance)
    }

    /// The instance's Acct-Session-Id while its accounting runs.
    pub fn acct_session_id(&self, instance: &InstanceKey) -> Option<&str> {
        self.running
            .get(instance)
            .map(|r| r.acct_session_id.as_str())
    }

    /// `service` was activated for `subscriber`, whose session's Acct-Session-Id is
    /// `multi_session_id` and whose aggregate forwarded traffic now is `aggregate_now`:
    /// the Start, or `None` when the service's acct-stats-type is off. The first
    /// Interim-Update is due one interval later.
    pub fn start(
        &mut self,
        subscriber: &str,
        multi_session_id: &str,
        service: &SubscriberService,
        aggregate_now: Volume,
        now: Instant,
    ) -> Result<Option<AcctRecord>, AcctError> {
        if service.acct_stats_type == AcctStatsType::Off {
            return Ok(None);
        }
        let instance = InstanceKey {
            subscriber: subscriber.to_string(),
            service: service.name.clone(),
        };
        if self.running.contains_key(&instance) {
            return Err(AcctError::AlreadyStarted(instance));
        }
        let interval = service
            .interim_interval(self.default_interval, self.min_interval)
            .map(|secs| Duration::from_secs(u64::from(secs)));
        let running = Running {
            service: service.clone(),
            acct_session_id: format!(
                "{:08X}{:014X}",
                self.session_id_prefix,
                self.next_session + 1
            ),
            multi_session_id: multi_session_id.to_string(),
            interval,
            started: now,
            next_interim: interval.map(|ivl| now + ivl),
            aggregate_at_start: aggregate_now,
        };
        let record = self.record(&instance, &running, AcctStatusType::Start, None, None, now)?;
        self.next_session += 1;
        if let Some(deadline) = running.next_interim {
            self.schedule.insert(deadline, instance.clone());
        }
        self.running.insert(instance, running);
        Ok(Some(record))
    }

    /// The instance is gone (deactivated, replaced, logged out): its Stop with the volume
    /// by the counter rule over `counters` and `cause`; no more Interim-Updates.
    pub fn stop(
        &mut self,
        instance: &InstanceKey,
        counters: &impl CounterSource,
        cause: AcctTerminateCause,
        now: Instant,
    ) -> Result<AcctRecord, AcctError> {
        let running = self
            .running
            .get(instance)
            .ok_or_else(|| AcctError::NotStarted(instance.clone()))?;
        let record = self.record(
            instance,
            running,
            AcctStatusType::Stop,
            Some(counters),
            Some(cause),
            now,
        )?;
        if let Some(running) = self.running.remove(instance) {
            if let Some(deadline) = running.next_interim {
                self.schedule.remove(deadline, instance);
            }
        }
        Ok(record)
    }

    /// The next Interim-Update deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.schedule.next_deadline()
    }

    /// The Interim-Updates due at `now`, each with its instance's counters from `counters`;
    /// the next one of each is due an interval after the one just due (a late call skips
    /// the updates it missed rather than sending them in a burst).
    pub fn handle_timeout<C: CounterSource>(
        &mut self,
        now: Instant,
        mut counters: impl FnMut(&InstanceKey) -> C,
    ) -> Result<Vec<AcctRecord>, AcctError> {
        let mut records = Vec::new();
        loop {
            let running = &self.running;
            let interval_of = |key: &InstanceKey| {
                running
                    .get(key)
                    .and_then(|r| r.interval)
                    .unwrap_or(Duration::MAX)
            };
            let Some(due) = self.schedule.pop_due(now, interval_of) else {
                break;
            };
            let Some(running) = self.running.get_mut(&due.key) else {
                continue;
            };
            running.next_interim = due.next;
            if let Some(next) = due.next {
                self.schedule.insert(next, due.key.clone());
            }
            let running = &self.running[&due.key];
            let source = counters(&due.key);
            records.push(self.record(
                &due.key,
                running,
                AcctStatusType::InterimUpdate,
                Some(&source),
                None,
                now,
            )?);
        }
        Ok(records)
    }

    /// One Accounting-Request of a running instance; Interim-Update and Stop report the
    /// time since its start and the volume by the counter rule over `counters`.
    fn record(
        &self,
        instance: &InstanceKey,
        running: &Running,
        status: AcctStatusType,
        counters: Option<&dyn CounterSourceDyn>,
        cause: Option<AcctTerminateCause>,
        now: Instant,
    ) -> Result<AcctRecord, AcctError> {
        let reported = Reported {
            instance: instance.clone(),
            acct_session_id: running.acct_session_id.clone(),
            multi_session_id: running.multi_session_id.clone(),
            nas_identifier: self.nas_identifier.clone(),
            stats_type: running.service.acct_stats_type,
            session_time: counters.map_or(0, |_| session_time(running.started, now)),
            volume: counters.map_or_else(Volume::default, |counters| {
                counters.volume(&running.service, running.aggregate_at_start)
            }),
        };
        Ok(AcctRecord {
            status,
            message: reported.message(status, cause)?,
            reported,
        })
    }
}

/// [`CounterSource`] behind a `dyn`, so one record builder serves every caller's type.
trait CounterSourceDyn {
    fn volume(&self, service: &SubscriberService, aggregate_at_start: Volume) -> Volume;
}

impl<C: CounterSource> CounterSourceDyn for C {
    fn volume(&self, service: &SubscriberService, aggregate_at_start: Volume) -> Volume {
        service_volume(service, self, aggregate_at_start)
    }
}

/// Largest Alc-Sub-Serv-Activate value in one Vendor-Specific attribute: 253 − Vendor-Id (4)
/// − vendor type and length (2).
const MAX_NAME_CHUNK: usize = 247;

/// The untagged Alc-Sub-Serv-Activate with the instance name, split over several attributes
/// when it does not fit one (as SR OS does).
fn add_service_name(message: &mut Message, name: &str) -> Result<(), PacketError> {
    for chunk in name.as_bytes().chunks(MAX_NAME_CHUNK) {
        let vsa = vsa_build(
            VENDOR_ALCATEL,
            ALC_SUB_SERV_ACTIVATE,
            chunk,
            VendorFormat::default(),
        )?;
        message.add(VENDOR_SPECIFIC, vsa)?;
    }
    Ok(())
}
