//! The SM state machine: the subscriber index and the EP table behind one sans-IO API.
//!
//! The shell owns the clock, the store and the sockets. It calls [`SmCore::apply`] for each
//! request, makes the returned change sets durable, then calls [`SmCore::committed`] so that EPs
//! hear only about durable changes; it drives EP sessions with `ep_*`, [`SmCore::poll_transmit`]
//! and [`SmCore::handle_timeout`].

use std::io::BufRead;
use std::time::Instant;

use brasa_bgp::RouteEvent;
use brasa_subscriber::csv::{self, CsvError, ImportMode, ImportReport};
use brasa_subscriber::{ChangeSet, SubscriberIndex};

use crate::bgp_leg::{BgpLeg, LegNeighbor};
use crate::config::SmConfig;
use crate::ep::{EpTable, EpView, SessionId, Transmit};
use crate::op::{ErrorKind, Op, SmError};
use crate::pb;

/// Operation counters (since start).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SmCounters {
    /// Operations applied (not yet necessarily durable).
    pub applied: u64,
    /// Operations refused by validation.
    pub refused: u64,
    /// Automatic logouts.
    pub auto_logouts: u64,
    /// Rows imported from CSV.
    pub imported: u64,
    /// BGP LEG events applied.
    pub bgp_events: u64,
}

/// The index and the EP sessions.
pub struct SmCore {
    index: SubscriberIndex,
    eps: EpTable,
    counters: SmCounters,
    leg: Option<BgpLeg>,
}

impl SmCore {
    /// A core over `index` (empty, or restored from the store) with the EPs of `config`.
    pub fn new(config: &SmConfig, index: SubscriberIndex) -> Result<Self, SmError> {
        config
            .validate()
            .map_err(|e| SmError::invalid(e.to_string()))?;
        Ok(SmCore {
            index,
            eps: EpTable::new(config),
            counters: SmCounters::default(),
            leg: config.bgp_leg.as_ref().map(BgpLeg::new),
        })
    }

    /// Starts the BGP LEG side once the index holds the restored routes: the routes of peers
    /// no longer configured go (the change set must be made durable like any other), the
    /// others wait for their peer's End-of-RIB.
    pub fn start_bgp_leg(&mut self, now: Instant) -> ChangeSet {
        let Some(leg) = self.leg.as_mut() else {
            return ChangeSet::default();
        };
        let ops = leg.start(now, &self.index);
        self.index.learn(ops)
    }

    /// Applies a batch of the BGP speaker's events, in order, as one change set.
    pub fn apply_bgp(&mut self, now: Instant, events: Vec<RouteEvent>) -> ChangeSet {
        let Some(leg) = self.leg.as_mut() else {
            return ChangeSet::default();
        };
        self.counters.bgp_events += events.len() as u64;
        let ops: Vec<_> = events
            .into_iter()
            .filter_map(|e| leg.handle_event(now, e))
            .collect();
        self.index.learn(ops)
    }

    /// When [`Self::bgp_timeout`] must run next.
    pub fn poll_bgp_timeout(&self) -> Option<Instant> {
        self.leg.as_ref()?.poll_timeout()
    }

    /// Sweeps the restored routes whose peer did not send its End-of-RIB in time.
    pub fn bgp_timeout(&mut self, now: Instant) -> ChangeSet {
        let Some(leg) = self.leg.as_mut() else {
            return ChangeSet::default();
        };
        let ops = leg.handle_timeout(now);
        if ops.is_empty() {
            return ChangeSet::default();
        }
        self.index.learn(ops)
    }

    /// The BGP LEG's peers as the SM sees them (`None` without a BGP LEG).
    pub fn bgp_neighbors(&self) -> Option<Vec<LegNeighbor>> {
        self.leg.as_ref().map(BgpLeg::neighbors)
    }

    /// The subscriber database (for queries).
    pub fn index(&self) -> &SubscriberIndex {
        &self.index
    }

    /// Counters.
    pub fn counters(&self) -> &SmCounters {
        &self.counters
    }

    /// Applies one operation to the index. The change set must be made durable, then given to
    /// [`Self::committed`].
    pub fn apply(&mut self, op: Op, unix_now: u64) -> Result<ChangeSet, SmError> {
        match op.apply(&mut self.index, unix_now) {
            Ok(c) => {
                self.counters.applied += 1;
                Ok(c)
            }
            Err(e) => {
                self.counters.refused += 1;
                Err(e)
            }
        }
    }

    /// Logs out every subscriber whose auto-logout time has come.
    pub fn expire(&mut self, unix_now: u64) -> ChangeSet {
        let changes = self.index.expire(unix_now);
        self.counters.auto_logouts += changes.subscribers.len() as u64;
        changes
    }

    /// CSV import into the index (all rows validated before any is applied).
    pub fn import_csv<R: BufRead>(
        &mut self,
        reader: R,
        mode: ImportMode,
        progress: impl FnMut(usize),
    ) -> Result<ImportReport, CsvError> {
        let report = csv::import(&mut self.index, reader, mode, progress)?;
        self.counters.imported += report.imported as u64;
        Ok(report)
    }

    /// A durable change: queue it for the EPs.
    pub fn committed(&mut self, now: Instant, changes: &ChangeSet) {
        self.eps.committed(now, changes, &self.index);
    }

    /// An EP's Hello.
    pub fn ep_connect(&mut self, now: Instant, hello: &pb::Hello) -> Result<SessionId, SmError> {
        self.eps.connect(now, hello)
    }

    /// A later message of an EP; an EP state write comes back as an operation to apply.
    pub fn ep_receive(&mut self, now: Instant, sid: SessionId, msg: pb::EpMessage) -> Option<Op> {
        self.eps.receive(now, sid, msg, &self.index)
    }

    /// The EP's stream ended.
    pub fn ep_disconnected(&mut self, sid: SessionId) {
        self.eps.disconnected(sid);
    }

    /// The next message for an EP.
    pub fn poll_transmit(&mut self, now: Instant, sid: SessionId) -> Transmit {
        self.eps.poll_transmit(now, sid, &self.index)
    }

    /// Timers: keep-alives, failure detection, quarantine.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.eps.handle_timeout(now);
    }

    /// Sessions that have something to send.
    pub fn take_wakeups(&mut self) -> Vec<SessionId> {
        self.eps.take_wakeups()
    }

    /// Operator: full resync of a connected EP.
    pub fn resync(&mut self, ep: &str) -> Result<(), SmError> {
        self.eps.resync(ep)
    }

    /// Operator: lift a quarantine.
    pub fn release_quarantine(&mut self, ep: &str) -> Result<(), SmError> {
        self.eps.release_quarantine(ep)
    }

    /// Operator view of the EPs.
    pub fn ep_views(&self, now: Instant) -> Vec<EpView> {
        self.eps.views(now)
    }

    /// Ends every EP session with `why`.
    pub fn close_all(&mut self, why: &str) {
        self.eps.close_all(why);
    }

    /// Connected EPs.
    pub fn connected_eps(&self) -> usize {
        self.eps.connected()
    }
}

impl From<CsvError> for SmError {
    fn from(e: CsvError) -> Self {
        match e {
            CsvError::Io(e) => SmError::new(ErrorKind::Internal, format!("CSV: {e}")),
            other => SmError::invalid(other.to_string()),
        }
    }
}
