//! RADIUS accounting of dynamic services (Nokia SR OS dynamic data services): per service,
//! Start, Interim-Update and Stop for each of the two accounting destinations of its
//! dynamic-services-policy, with the service's stats type and interim interval.
//!
//! Each record is an Accounting-Request without authenticator, for the shell to send to the
//! destination's server pool: Acct-Multi-Session-Id is the data trigger's Acct-Session-Id,
//! Acct-Session-Id the service's own. Counters come from the caller (the SAP's), interim
//! deadlines from [`Accounting::poll_timeout`] and [`Accounting::handle_timeout`].

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use brasa_radius::attr::{
    ACCT_MULTI_SESSION_ID, ACCT_SESSION_ID, ACCT_STATUS_TYPE, NAS_IDENTIFIER, NAS_PORT_ID,
};
use brasa_radius::{AcctStatusType, Code, Message, PacketError};
use brasa_services::SapId;
use thiserror::Error;

use crate::auth::{AcctOverride, StatsType};

/// Acct-Input-Octets (RFC 2866 §5.3).
pub const ACCT_INPUT_OCTETS: u8 = 42;
/// Acct-Output-Octets (RFC 2866 §5.4).
pub const ACCT_OUTPUT_OCTETS: u8 = 43;
/// Acct-Session-Time (RFC 2866 §5.7).
pub const ACCT_SESSION_TIME: u8 = 46;
/// Acct-Input-Packets (RFC 2866 §5.8).
pub const ACCT_INPUT_PACKETS: u8 = 47;
/// Acct-Output-Packets (RFC 2866 §5.9).
pub const ACCT_OUTPUT_PACKETS: u8 = 48;
/// Acct-Terminate-Cause (RFC 2866 §5.10).
pub const ACCT_TERMINATE_CAUSE: u8 = 49;
/// Acct-Input-Gigawords (RFC 2869 §5.1).
pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
/// Acct-Output-Gigawords (RFC 2869 §5.2).
pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;

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

/// A SAP's traffic counters since the service was set up (read by the caller).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SapCounters {
    /// Octets received from the SAP.
    pub input_octets: u64,
    /// Octets sent to the SAP.
    pub output_octets: u64,
    /// Packets received from the SAP.
    pub input_packets: u64,
    /// Packets sent to the SAP.
    pub output_packets: u64,
}

/// Why a service's accounting stops (Acct-Terminate-Cause, RFC 2866 §5.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TerminateCause {
    /// 6, Admin-Reset: a CoA or Disconnect teardown, or a clear command.
    AdminReset,
    /// 7, Admin-Reboot: the router restarts.
    AdminReboot,
    /// 9, NAS-Error: a script or apply failure removed the service.
    NasError,
    /// 10, NAS-Request: the router removed it (its data trigger went away).
    NasRequest,
    /// 3, Lost-Service: the service's SAP went away underneath it.
    LostService,
}

impl TerminateCause {
    fn to_wire(self) -> u32 {
        match self {
            Self::LostService => 3,
            Self::AdminReset => 6,
            Self::AdminReboot => 7,
            Self::NasError => 9,
            Self::NasRequest => 10,
        }
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
    deadlines: BTreeSet<(Instant, SapId, usize)>,
}

impl Accounting {
    /// No services accounted yet; records carry `nas_identifier` as NAS-Identifier.
    pub fn new(nas_identifier: impl Into<String>) -> Self {
        Self {
            nas_identifier: nas_identifier.into(),
            running: HashMap::new(),
            deadlines: BTreeSet::new(),
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
                self.deadlines.insert((*deadline, sap.clone(), destination));
            }
        }
        self.running.insert(sap, running);
        Ok(records)
    }

    /// The service is gone: the Stop of every destination with `counters` and `cause`; no
    /// more Interim-Updates.
    pub fn stop(
        &mut self,
        sap: &SapId,
        counters: SapCounters,
        cause: TerminateCause,
        now: Instant,
    ) -> Result<Vec<AcctRecord>, AcctError> {
        let running = self
            .running
            .get(sap)
            .ok_or_else(|| AcctError::NotStarted(sap.clone()))?;
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
                    self.deadlines
                        .remove(&(*deadline, sap.clone(), destination));
                }
            }
        }
        Ok(records)
    }

    /// The next Interim-Update deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _, _)| *deadline)
    }

    /// The Interim-Updates due at `now`, with each service's counters from `counters`; each
    /// destination's next one is due an interval after the one just due (a late call skips
    /// the updates it missed rather than sending them in a burst).
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        mut counters: impl FnMut(&SapId) -> SapCounters,
    ) -> Result<Vec<AcctRecord>, AcctError> {
        let mut records = Vec::new();
        while let Some((deadline, sap, destination)) = self.deadlines.first().cloned() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(running) = self.running.get_mut(&sap) else {
                continue;
            };
            let Some(interval) = running.settings[destination].interim else {
                continue;
            };
            let mut next = deadline + interval;
            while next <= now {
                next += interval;
            }
            running.next_interim[destination] = Some(next);
            self.deadlines.insert((next, sap.clone(), destination));
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
        counters: Option<SapCounters>,
        cause: Option<TerminateCause>,
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
    counters: Option<SapCounters>,
    cause: Option<TerminateCause>,
    now: Instant,
) -> Result<Message, PacketError> {
    let mut message = Message::new(Code::AccountingRequest, 0);
    message.add_fixed(ACCT_STATUS_TYPE, status.to_value());
    message.add(ACCT_SESSION_ID, &running.session.acct_session_id)?;
    message.add(ACCT_MULTI_SESSION_ID, &running.session.multi_session_id)?;
    message.add(NAS_PORT_ID, running.session.sap.to_string())?;
    message.add(NAS_IDENTIFIER, nas_identifier)?;
    if let Some(counters) = counters {
        let secs = now.saturating_duration_since(running.started).as_secs();
        message.add_fixed(
            ACCT_SESSION_TIME,
            u32::try_from(secs).unwrap_or(u32::MAX).to_be_bytes(),
        );
        if stats_type == StatsType::VolumeTime {
            add_octets(
                &mut message,
                ACCT_INPUT_OCTETS,
                ACCT_INPUT_GIGAWORDS,
                counters.input_octets,
            );
            add_octets(
                &mut message,
                ACCT_OUTPUT_OCTETS,
                ACCT_OUTPUT_GIGAWORDS,
                counters.output_octets,
            );
            // RFC 2866 packet counters are 32 bits and wrap.
            message.add_fixed(
                ACCT_INPUT_PACKETS,
                (counters.input_packets as u32).to_be_bytes(),
            );
            message.add_fixed(
                ACCT_OUTPUT_PACKETS,
                (counters.output_packets as u32).to_be_bytes(),
            );
        }
    }
    if let Some(cause) = cause {
        message.add_fixed(ACCT_TERMINATE_CAUSE, cause.to_wire().to_be_bytes());
    }
    Ok(message)
}

/// The low 32 bits of `octets` and its Gigawords (how many times the low 32 bits wrapped).
fn add_octets(message: &mut Message, octets_type: u8, gigawords_type: u8, octets: u64) {
    message.add_fixed(octets_type, (octets as u32).to_be_bytes());
    message.add_fixed(gigawords_type, ((octets >> 32) as u32).to_be_bytes());
}
