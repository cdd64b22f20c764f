//! RADIUS accounting of dynamic services (Nokia SR OS dynamic data services): per service,
//! Start, Interim-Update and Stop for each of the two accounting destinations of its
//! dynamic-services-policy, with the service's stats type and interim interval.
//!
//! Each record is an Accounting-Request without authenticator, for the shell to send to the
//! destination's server pool: Acct-Multi-Session-Id is the data trigger's Acct-Session-Id,
//! Acct-Session-Id the service's own. Counters come from the caller (the SAP's), interim
//! deadlines from [`Accounting::poll_timeout`] and [`Accounting::handle_timeout`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use brasa_radius::acct::{add_session_time, InterimSchedule, SessionCounters};
use brasa_radius::attr::{
    ACCT_MULTI_SESSION_ID, ACCT_SESSION_ID, ACCT_STATUS_TYPE, ACCT_TERMINATE_CAUSE, NAS_IDENTIFIER,
    NAS_PORT_ID,
};
use brasa_radius::{AcctStatusType, AcctTerminateCause, Code, Message, PacketError};
use brasa_services::SapId;
use thiserror::Error;

use crate::auth::{AcctOverride, StatsType};

/// One accounting destination's settings: the policy's, or the service's once overridden.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AcctSettings {
    /// What is reported; [`StatsType::Off`] sends nothing to this destination.
    pub stats_type: StatsType,
    /// Time between Interim-Updates; `None` sends none.
    pub interim: Option<Duration>,
}

impl AcctSettings {
    /// Accounting off.
    pub const OFF: AcctSettings = AcctSettings {
        stats_type: StatsType::Off,
        interim: None,
    };

    /// The settings of a service: each of the Accept's (or CoA's, or local-auth-db's)
    /// Alc-Dyn-Serv-Acct-Stats-Type-N and Alc-Dyn-Serv-Acct-Interim-Ivl-N that is present
    /// replaces the policy's; an interval of 0 means no Interim-Update.
    pub fn resolve(policy: [AcctSettings; 2], overrides: [AcctOverride; 2]) -> [AcctSettings; 2] {
        let mut resolved = policy;
        for (slot, over) in resolved.iter_mut().zip(overrides) {
            if let Some(stats_type) = over.stats_type {
                slot.stats_type = stats_type;
            }
            if let Some(secs) = over.interim_secs {
                slot.interim = (secs > 0).then(|| Duration::from_secs(u64::from(secs)));
            }
        }
        resolved
    }
}

/// The accounting identity of one dynamic service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSession {
    /// The dynamic service SAP (NAS-Port-Id).
    pub sap: SapId,
    /// The service's own Acct-Session-Id.
    pub acct_session_id: String,
    /// Its data trigger's Acct-Session-Id (Acct-Multi-Session-Id).
    pub multi_session_id: String,
}

/// One Accounting-Request for destination 1 or 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcctRecord {
    /// The accounting destination: 0 for the first, 1 for the second.
    pub destination: usize,
    /// The service SAP it reports on.
    pub sap: SapId,
    /// The request, authenticator unset.
    pub message: Message,
}

/// An invalid call: refused, nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AcctError {
    /// Accounting already runs for the SAP.
    #[error("accounting of dynamic service SAP {0} is started already")]
    AlreadyStarted(SapId),
    /// No accounting runs for the SAP.
    #[error("no accounting for dynamic service SAP {0}")]
    NotStarted(SapId),
    /// An attribute could not be added (a value over 253 octets).
    #[error("accounting record: {0}")]
    Packet(#[from] PacketError),
}

#[derive(Debug)]
struct Running {
    session: ServiceSession,
    settings: [AcctSettings; 2],
    started: Instant,
    next_interim: [Option<Instant>; 2],
}

/// The accounting sessions of every dynamic service. Sans-IO: the caller gives `now` and the
/// counters, and sends the records.
#[derive(Debug)]
pub struct Accounting {
    nas_identifier: String,
    running: HashMap<SapId, Running>,
    /// Keyed by SAP and destination (0 or 1).
    schedule: InterimSchedule<(SapId, usize)>,
}

impl Accounting {
    /// No services accounted yet; records carry `nas_identifier` as NAS-Identifier.
    pub fn new(nas_identifier: impl Into<String>) -> Self {
        Self {
            nas_identifier: nas_identifier.into(),
            running: HashMap::new(),
            schedule: InterimSchedule::new(),
        }
    }

    /// Whether accounting runs for `sap`.
    pub fn is_running(&self, sap: &SapId) -> bool {
        self.running.contains_key(sap)
    }

    /// The service was set up: the Start of every destination whose stats type is not off;
    /// the first Interim-Update of each is due one interval later.
    pub fn start(
        &mut self,
        session: ServiceSession,
        settings: [AcctSettings; 2],
        now: Instant,
    ) -> Result<Vec<AcctRecord>, AcctError> {
        if self.running.contains_key(&session.sap) {
            return Err(AcctError::AlreadyStarted(session.sap));
        }
        let running = Running {
            next_interim: settings.map(|s| {
                s.interim
                    .filter(|_| s.stats_type != StatsType::Off)
                    .map(|ivl| now + ivl)
            }),
            session,
            settings,
            started: now,
        };
        let records = self.records(&running, AcctStatusType::Start, None, None, now)?;
        let sap = running.session.sap.clone();
        for (destination, deadline) in running.next_interim.iter().enumerate() {
            if let Some(deadline) = deadline {
                self.schedule.insert(*deadline, (sap.clone(), destination));
            }
        }
        self.running.insert(sap, running);
        Ok(records)
    }

    /// The service is gone: the Stop of every destination with `counters` (the SAP's, input
    /// being what it received) and `cause`; no more Interim-Updates. Dynamic services stop with
    /// Admin-Reset (a CoA or Disconnect teardown, a clear command), Admin-Reboot (the router
    /// restarts), NAS-Error (a script or apply failure removed the service), NAS-Request (its
    /// data trigger went away) or Lost-Service (the SAP went away underneath it).
    pub fn stop(
        &mut self,
        sap: &SapId,
        counters: SessionCounters,
        cause: AcctTerminateCause,
        now: Instant,
    ) -> Result<Vec<AcctRecord>, AcctError> {
        let running = self.running(sap)?;
        let records = self.records(
            running,
            AcctStatusType::Stop,
            Some(counters),
            Some(cause),
            now,
        )?;
        if let Some(running) = self.running.remove(sap) {
            for (destination, deadline) in running.next_interim.iter().enumerate() {
                if let Some(deadline) = deadline {
                    self.schedule.remove(*deadline, &(sap.clone(), destination));
                }
            }
        }
        Ok(records)
    }

    /// A modify carried accounting overrides: each Alc-Dyn-Serv-Acct-Stats-Type-N and
    /// -Acct-Interim-Ivl-N present replaces the service's value. A destination the modify turns
    /// on gets its Start now, one it turns off its Stop (with `counters`, Admin-Reset); a new
    /// interval counts from `now`, so the next Interim-Update of that destination is due one
    /// new interval later. Refused when no accounting runs for `sap`.
    pub fn modify(
        &mut self,
        sap: &SapId,
        overrides: [AcctOverride; 2],
        counters: SessionCounters,
        now: Instant,
    ) -> Result<Vec<AcctRecord>, AcctError> {
        let running = self.running(sap)?;
        let settings = AcctSettings::resolve(running.settings, overrides);
        let mut records = Vec::new();
        for (destination, (old, new)) in running.settings.iter().zip(&settings).enumerate() {
            let (stats_type, status, counters, cause) = match (
                old.stats_type == StatsType::Off,
                new.stats_type == StatsType::Off,
            ) {
                (true, false) => (new.stats_type, AcctStatusType::Start, None, None),
                (false, true) => (
                    old.stats_type,
                    AcctStatusType::Stop,
                    Some(counters),
                    Some(AcctTerminateCause::AdminReset),
                ),
                _ => continue,
            };
            let message = record(
                &self.nas_identifier,
                running,
                stats_type,
                status,
                counters,
                cause,
                now,
            )?;
            records.push(AcctRecord {
                destination,
                sap: sap.clone(),
                message,
            });
        }
        let Some(running) = self.running.get_mut(sap) else {
            return Err(AcctError::NotStarted(sap.clone()));
        };
        for (destination, new) in settings.iter().enumerate() {
            if *new == running.settings[destination] {
                continue;
            }
            if let Some(deadline) = running.next_interim[destination] {
                self.schedule.remove(deadline, &(sap.clone(), destination));
            }
            let next = new
                .interim
                .filter(|_| new.stats_type != StatsType::Off)
                .map(|ivl| now + ivl);
            if let Some(next) = next {
                self.schedule.insert(next, (sap.clone(), destination));
            }
            running.next_interim[destination] = next;
        }
        running.settings = settings;
        Ok(records)
    }

    fn running(&self, sap: &SapId) -> Result<&Running, AcctError> {
        self.running
            .get(sap)
            .ok_or_else(|| AcctError::NotStarted(sap.clone()))
    }

    /// The next Interim-Update deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.schedule.next_deadline()
    }

    /// The Interim-Updates due at `now`, with each service's counters from `counters`; each
    /// destination's next one is due an interval after the one just due (a late call skips
    /// the updates it missed rather than sending them in a burst).
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        mut counters: impl FnMut(&SapId) -> SessionCounters,
    ) -> Result<Vec<AcctRecord>, AcctError> {
        let mut records = Vec::new();
        loop {
            let running = &self.running;
            let interval_of = |(sap, destination): &(SapId, usize)| {
                running
                    .get(sap)
                    .and_then(|r| r.settings[*destination].interim)
                    .unwrap_or(Duration::MAX)
            };
            let Some(due) = self.schedule.pop_due(now, interval_of) else {
                break;
            };
            let (sap, destination) = due.key;
            let Some(running) = self.running.get_mut(&sap) else {
                continue;
            };
            if running.settings[destination].interim.is_none() {
                continue;
            }
            running.next_interim[destination] = due.next;
            if let Some(next) = due.next {
                self.schedule.insert(next, (sap.clone(), destination));
            }
            let running = &self.running[&sap];
            let message = record(
                &self.nas_identifier,
                running,
                running.settings[destination].stats_type,
                AcctStatusType::InterimUpdate,
                Some(counters(&sap)),
                None,
                now,
            )?;
            records.push(AcctRecord {
                destination,
                sap,
                message,
            });
        }
        Ok(records)
    }

    fn records(
        &self,
        running: &Running,
        status: AcctStatusType,
        counters: Option<SessionCounters>,
        cause: Option<AcctTerminateCause>,
        now: Instant,
    ) -> Result<Vec<AcctRecord>, AcctError> {
        let mut records = Vec::new();
        for (destination, settings) in running.settings.iter().enumerate() {
            if settings.stats_type == StatsType::Off {
                continue;
            }
            records.push(AcctRecord {
                destination,
                sap: running.session.sap.clone(),
                message: record(
                    &self.nas_identifier,
                    running,
                    settings.stats_type,
                    status,
                    counters,
                    cause,
                    now,
                )?,
            });
        }
        Ok(records)
    }
}

/// One Accounting-Request. Start carries no time or counters; Interim-Update and Stop carry
/// Acct-Session-Time, and with volume-time the octets (low 32 bits and Gigawords) and packets.
fn record(
    nas_identifier: &str,
    running: &Running,
    stats_type: StatsType,
    status: AcctStatusType,
    counters: Option<SessionCounters>,
    cause: Option<AcctTerminateCause>,
    now: Instant,
) -> Result<Message, PacketError> {
    let mut message = Message::new(Code::AccountingRequest, 0);
    message.add_fixed(ACCT_STATUS_TYPE, status.to_value());
    message.add(ACCT_SESSION_ID, &running.session.acct_session_id)?;
    message.add(ACCT_MULTI_SESSION_ID, &running.session.multi_session_id)?;
    message.add(NAS_PORT_ID, running.session.sap.to_string())?;
    message.add(NAS_IDENTIFIER, nas_identifier)?;
    if let Some(counters) = counters {
        add_session_time(&mut message, running.started, now);
        if stats_type == StatsType::VolumeTime {
            counters.add_to(&mut message);
        }
    }
    if let Some(cause) = cause {
        message.add_fixed(ACCT_TERMINATE_CAUSE, cause.to_value());
    }
    Ok(message)
}
