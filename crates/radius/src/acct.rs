//! What every RADIUS accounting record of a session carries (RFC 2866, RFC 2869): its time
//! and its counters, and the schedule of its Interim-Updates.
//!
//! Shared by the accounting of every kind of session brasa reports on (dynamic services,
//! subscriber services), so that Gigawords, 32-bit wrap and missed interims are done one way.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::attr::{
    ACCT_INPUT_GIGAWORDS, ACCT_INPUT_OCTETS, ACCT_INPUT_PACKETS, ACCT_OUTPUT_GIGAWORDS,
    ACCT_OUTPUT_OCTETS, ACCT_OUTPUT_PACKETS, ACCT_SESSION_TIME,
};
use crate::Message;

/// A session's traffic counters, from the user's side: input is what the user sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SessionCounters {
    /// Octets received from the user.
    pub input_octets: u64,
    /// Octets sent to the user.
    pub output_octets: u64,
    /// Packets received from the user.
    pub input_packets: u64,
    /// Packets sent to the user.
    pub output_packets: u64,
}

impl SessionCounters {
    /// Adds the four counters: octets as their low 32 bits with Acct-*-Gigawords (how many
    /// times the low 32 bits wrapped), packets as 32 bits that wrap (RFC 2866 has no
    /// Gigawords for packets).
    pub fn add_to(&self, message: &mut Message) {
        message.add_fixed(ACCT_INPUT_OCTETS, (self.input_octets as u32).to_be_bytes());
        message.add_fixed(
            ACCT_INPUT_GIGAWORDS,
            ((self.input_octets >> 32) as u32).to_be_bytes(),
        );
        message.add_fixed(
            ACCT_OUTPUT_OCTETS,
            (self.output_octets as u32).to_be_bytes(),
        );
        message.add_fixed(
            ACCT_OUTPUT_GIGAWORDS,
            ((self.output_octets >> 32) as u32).to_be_bytes(),
        );
        message.add_fixed(
            ACCT_INPUT_PACKETS,
            (self.input_packets as u32).to_be_bytes(),
        );
        message.add_fixed(
            ACCT_OUTPUT_PACKETS,
            (self.output_packets as u32).to_be_bytes(),
        );
    }
}

/// Acct-Session-Time's value: whole seconds from `started` to `now`, saturating at
/// `u32::MAX` (0 when `now` is earlier).
pub fn session_time(started: Instant, now: Instant) -> u32 {
    let secs = now.saturating_duration_since(started).as_secs();
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// Adds Acct-Session-Time: [`session_time`] from `started` to `now`.
pub fn add_session_time(message: &mut Message, started: Instant, now: Instant) {
    message.add_fixed(ACCT_SESSION_TIME, session_time(started, now).to_be_bytes());
}

/// The Interim-Update deadlines of many sessions, earliest first.
///
/// A deadline that is handled late is followed by the next one after `now` on the session's
/// grid (deadline + k × interval): the updates missed meanwhile are skipped, not sent in a
/// burst.
#[derive(Debug, Clone)]
pub struct InterimSchedule<K> {
    deadlines: BTreeSet<(Instant, K)>,
}

impl<K> Default for InterimSchedule<K> {
    fn default() -> Self {
        Self {
            deadlines: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Clone> InterimSchedule<K> {
    /// No deadlines.
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedules `key` at `deadline`.
    pub fn insert(&mut self, deadline: Instant, key: K) {
        self.deadlines.insert((deadline, key));
    }

    /// Unschedules `key` from `deadline`; whether it was there.
    pub fn remove(&mut self, deadline: Instant, key: &K) -> bool {
        self.deadlines.remove(&(deadline, key.clone()))
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// The earliest deadline that is due at `now`, removed, with its key and the deadline
    /// that follows it on a grid of `interval` (the first one after `now`).
    pub fn pop_due(
        &mut self,
        now: Instant,
        interval: impl FnOnce(&K) -> Duration,
    ) -> Option<Due<K>> {
        let (deadline, _) = self.deadlines.first()?;
        if *deadline > now {
            return None;
        }
        let (deadline, key) = self.deadlines.pop_first()?;
        let interval = interval(&key);
        Some(Due {
            next: next_after(deadline, interval, now),
            deadline,
            key,
        })
    }
}

/// A deadline taken from an [`InterimSchedule`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due<K> {
    /// Whose it was.
    pub key: K,
    /// When it was due.
    pub deadline: Instant,
    /// The first deadline after `now` on its grid, for the caller to schedule; `None` past
    /// what an `Instant` can hold.
    pub next: Option<Instant>,
}

/// The first `deadline + k × interval` (k ≥ 1) later than `now`; with an interval of zero,
/// `now` + 1 ns.
fn next_after(deadline: Instant, interval: Duration, now: Instant) -> Option<Instant> {
    if interval.is_zero() {
        return now.checked_add(Duration::from_nanos(1));
    }
    let late = now.saturating_duration_since(deadline);
    let steps = late.as_nanos() / interval.as_nanos() + 1;
    let steps = u32::try_from(steps).ok()?;
    deadline.checked_add(interval.checked_mul(steps)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;

    #[test]
    fn octets_past_four_gigabytes_carry_gigawords_and_packets_wrap() {
        let mut message = Message::new(Code::AccountingRequest, 0);
        SessionCounters {
            input_octets: (3 << 32) + 5,
            output_octets: 7,
            input_packets: (1 << 32) + 9,
            output_packets: 1,
        }
        .add_to(&mut message);
        let int = |typ| crate::attr::integer(message.get(typ).unwrap()).unwrap();
        assert_eq!(int(ACCT_INPUT_OCTETS), 5);
        assert_eq!(int(ACCT_INPUT_GIGAWORDS), 3);
        assert_eq!(int(ACCT_OUTPUT_OCTETS), 7);
        assert_eq!(int(ACCT_OUTPUT_GIGAWORDS), 0);
        assert_eq!(int(ACCT_INPUT_PACKETS), 9);
        assert_eq!(int(ACCT_OUTPUT_PACKETS), 1);
    }

    #[test]
    fn a_late_deadline_skips_the_missed_ones() {
        let t0 = Instant::now();
        let ivl = Duration::from_secs(10);
        let mut schedule = InterimSchedule::new();
        schedule.insert(t0 + ivl, "a");
        schedule.insert(t0 + ivl * 2, "b");
        assert_eq!(schedule.next_deadline(), Some(t0 + ivl));
        assert!(schedule.pop_due(t0, |_| ivl).is_none());
        let late = t0 + Duration::from_secs(35);
        let due = schedule.pop_due(late, |_| ivl).unwrap();
        assert_eq!(
            (due.key, due.deadline, due.next),
            ("a", t0 + ivl, Some(t0 + ivl * 4))
        );
        // A grid past what an Instant holds has no next deadline rather than a panic.
        let due = schedule.pop_due(late, |_| Duration::MAX).unwrap();
        assert_eq!((due.key, due.next), ("b", None));
        assert!(schedule.pop_due(late, |_| ivl).is_none());
        schedule.insert(t0, "b");
        assert!(schedule.remove(t0, &"b"));
        assert_eq!(schedule.next_deadline(), None);
    }
}
