//! Host lockout for data triggers (Nokia SR OS dynamic data services, "Control plane
//! protection" item 4): a lockout context per data trigger SAP id, created whenever a trigger is
//! deleted; failures lock the SAP out for a time that doubles from `lockout time min` up to
//! `lockout time max`; a context with no failure for `lockout reset time` after its lock ended
//! (its grace period) disappears.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use brasa_services::SapId;

/// A host-lockout-policy (host key `all`, the only one data triggers support).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLockoutPolicy {
    /// First lock time.
    pub lockout_time_min: Duration,
    /// Longest lock time.
    pub lockout_time_max: Duration,
    /// Time without failure after a lock (or a teardown) before the context is forgotten.
    pub lockout_reset_time: Duration,
    /// Most lockout contexts held at once; failures beyond it are not locked out.
    pub max_lockout_hosts: usize,
}

impl Default for HostLockoutPolicy {
    /// SR OS defaults: 10 s, 3600 s, 60 s, 100 hosts.
    fn default() -> Self {
        Self {
            lockout_time_min: Duration::from_secs(10),
            lockout_time_max: Duration::from_secs(3600),
            lockout_reset_time: Duration::from_secs(60),
            max_lockout_hosts: 100,
        }
    }
}

#[derive(Debug, Clone)]
struct Context {
    capture_sap: SapId,
    /// When the current (or last) lock started; `None` for a context a teardown created.
    lock_start: Option<Instant>,
    current_lock: Duration,
    next_lock: Duration,
    lockouts: u32,
    /// When the lock ended (or the teardown context was made): the reset clock's origin.
    grace_start: Instant,
}

impl Context {
    fn locked(&self, now: Instant) -> bool {
        self.lock_start
            .is_some_and(|start| now < start + self.current_lock)
    }
}

/// What a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockoutOutcome {
    /// The SAP is locked out until this instant.
    Locked(Instant),
    /// The SAP was already locked out (a failure of a trigger that started before the lock).
    AlreadyLocked(Instant),
    /// `max lockout hosts` contexts exist: this SAP is not locked out.
    TableFull,
}

/// One line of `show subscriber-mgmt host-lockout-policy NAME all sap SAP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutRow {
    /// The data trigger SAP id (the context's key).
    pub trigger_sap: SapId,
    /// The capture SAP it came from.
    pub capture_sap: SapId,
    /// Seconds of the grace period elapsed (0 while locked).
    pub elapsed_reset_time: u64,
    /// Current (or last) lock time in seconds.
    pub current_lock_time: u64,
    /// Seconds of the current lock elapsed (0 when not locked).
    pub elapsed_lock_time: u64,
    /// Lock time of the next failure in seconds.
    pub next_lock_time: u64,
    /// Number of lockouts of this context.
    pub lockouts: u32,
    /// True while locked; false in the grace period.
    pub active: bool,
}

/// The lockout contexts of one host-lockout-policy.
#[derive(Debug, Clone)]
pub struct Lockouts {
    policy: HostLockoutPolicy,
    contexts: HashMap<SapId, Context>,
    /// Failures that found the table full.
    refused: u64,
}

/// Which contexts `clear` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockoutState {
    /// Locked contexts.
    Active,
    /// Contexts in their grace period.
    InGrace,
    /// Both.
    All,
}

impl Lockouts {
    /// No contexts yet.
    pub fn new(policy: HostLockoutPolicy) -> Self {
        Self {
            policy,
            contexts: HashMap::new(),
            refused: 0,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &HostLockoutPolicy {
        &self.policy
    }

    /// Failures not locked out because `max lockout hosts` contexts existed.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    fn forget_expired(&mut self, now: Instant) {
        let reset = self.policy.lockout_reset_time;
        self.contexts
            .retain(|_, c| c.locked(now) || now < grace_origin(c, now) + reset);
    }

    /// A trigger on `trigger_sap` failed (authentication failure, setup timeout, script
    /// failure): lock it for `lockout time min` the first time, and twice the previous lock
    /// (at most `max`) when it fails again within the grace period.
    pub fn fail(
        &mut self,
        trigger_sap: &SapId,
        capture_sap: &SapId,
        now: Instant,
    ) -> LockoutOutcome {
        self.forget_expired(now);
        let policy = &self.policy;
        if let Some(context) = self.contexts.get_mut(trigger_sap) {
            if context.locked(now) {
                let start = context.lock_start.unwrap_or(now);
                return LockoutOutcome::AlreadyLocked(start + context.current_lock);
            }
            context.lock_start = Some(now);
            context.current_lock = context.next_lock;
            context.next_lock = (context.next_lock * 2).min(policy.lockout_time_max);
            context.lockouts += 1;
            return LockoutOutcome::Locked(now + context.current_lock);
        }
        if self.contexts.len() >= policy.max_lockout_hosts {
            self.refused += 1;
            return LockoutOutcome::TableFull;
        }
        let first = policy.lockout_time_min.min(policy.lockout_time_max);
        self.contexts.insert(
            trigger_sap.clone(),
            Context {
                capture_sap: capture_sap.clone(),
                lock_start: Some(now),
                current_lock: first,
                next_lock: (first * 2).min(policy.lockout_time_max),
                lockouts: 1,
                grace_start: now,
            },
        );
        LockoutOutcome::Locked(now + first)
    }

    /// A trigger was torn down on purpose (clear command, CoA or Disconnect): only a context in
    /// its grace period is created, so that the SAP is not locked but a failure soon after
    /// finds it; it disappears after `lockout reset time`.
    pub fn teardown(&mut self, trigger_sap: &SapId, capture_sap: &SapId, now: Instant) {
        self.forget_expired(now);
        if self.contexts.contains_key(trigger_sap) {
            return;
        }
        if self.contexts.len() >= self.policy.max_lockout_hosts {
            self.refused += 1;
            return;
        }
        let first = self
            .policy
            .lockout_time_min
            .min(self.policy.lockout_time_max);
        self.contexts.insert(
            trigger_sap.clone(),
            Context {
                capture_sap: capture_sap.clone(),
                lock_start: None,
                current_lock: Duration::ZERO,
                next_lock: first,
                lockouts: 0,
                grace_start: now,
            },
        );
    }

    /// True while `trigger_sap` is locked out at `now`.
    pub fn is_locked(&self, trigger_sap: &SapId, now: Instant) -> bool {
        self.contexts
            .get(trigger_sap)
            .is_some_and(|c| c.locked(now))
    }

    /// The next instant a lock ends or a context is forgotten.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.contexts
            .values()
            .map(|c| match c.lock_start {
                Some(start) if start + c.current_lock > c.grace_start => {
                    start + c.current_lock + self.policy.lockout_reset_time
                }
                _ => c.grace_start + self.policy.lockout_reset_time,
            })
            .min()
    }

    /// Forgets contexts whose grace period ended.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.forget_expired(now);
    }

    /// The contexts of `capture_sap` (all when `None`), sorted by trigger SAP.
    pub fn rows(&self, capture_sap: Option<&SapId>, now: Instant) -> Vec<LockoutRow> {
        let secs = |d: Duration| d.as_secs();
        let reset = self.policy.lockout_reset_time;
        let mut rows: Vec<LockoutRow> = self
            .contexts
            .iter()
            .filter(|(_, c)| capture_sap.is_none_or(|sap| &c.capture_sap == sap))
            .filter(|(_, c)| c.locked(now) || now < grace_origin(c, now) + reset)
            .map(|(sap, c)| {
                let active = c.locked(now);
                LockoutRow {
                    trigger_sap: sap.clone(),
                    capture_sap: c.capture_sap.clone(),
                    elapsed_reset_time: if active {
                        0
                    } else {
                        secs(now.saturating_duration_since(grace_origin(c, now)))
                    },
                    current_lock_time: secs(c.current_lock),
                    elapsed_lock_time: match (active, c.lock_start) {
                        (true, Some(start)) => secs(now.saturating_duration_since(start)),
                        _ => 0,
                    },
                    next_lock_time: secs(c.next_lock),
                    lockouts: c.lockouts,
                    active,
                }
            })
            .collect();
        rows.sort_by(|a, b| a.trigger_sap.cmp(&b.trigger_sap));
        rows
    }

    /// Removes the contexts of `capture_sap` (all when `None`) in `state`; returns how many.
    pub fn clear(
        &mut self,
        capture_sap: Option<&SapId>,
        state: LockoutState,
        now: Instant,
    ) -> usize {
        let before = self.contexts.len();
        self.contexts.retain(|_, c| {
            let selected = capture_sap.is_none_or(|sap| &c.capture_sap == sap)
                && match state {
                    LockoutState::All => true,
                    LockoutState::Active => c.locked(now),
                    LockoutState::InGrace => !c.locked(now),
                };
            !selected
        });
        before - self.contexts.len()
    }
}

/// The instant the context's grace period started (the end of its lock, when it had one).
fn grace_origin(c: &Context, now: Instant) -> Instant {
    match c.lock_start {
        Some(start) if now >= start + c.current_lock => (start + c.current_lock).max(c.grace_start),
        _ => c.grace_start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sap(text: &str) -> SapId {
        SapId::parse(text).unwrap()
    }

    fn policy() -> HostLockoutPolicy {
        HostLockoutPolicy {
            lockout_time_min: Duration::from_secs(10),
            lockout_time_max: Duration::from_secs(35),
            lockout_reset_time: Duration::from_secs(60),
            max_lockout_hosts: 2,
        }
    }

    #[test]
    fn lock_time_starts_at_min_doubles_in_grace_and_stops_at_max() {
        let t0 = Instant::now();
        let (trigger, capture) = (sap("eth1:1214.101"), sap("eth1:1214.*"));
        let mut lockouts = Lockouts::new(policy());
        let mut now = t0;
        let mut locks = Vec::new();
        for _ in 0..4 {
            let LockoutOutcome::Locked(until) = lockouts.fail(&trigger, &capture, now) else {
                panic!("not locked");
            };
            locks.push((until - now).as_secs());
            assert!(lockouts.is_locked(&trigger, until - Duration::from_millis(1)));
            assert!(!lockouts.is_locked(&trigger, until));
            // Fail again inside the grace period.
            now = until + Duration::from_secs(1);
        }
        assert_eq!(locks, [10, 20, 35, 35]);
    }

    #[test]
    fn context_is_forgotten_after_the_reset_time_and_starts_again_at_min() {
        let t0 = Instant::now();
        let (trigger, capture) = (sap("eth1:1214.101"), sap("eth1:1214.*"));
        let mut lockouts = Lockouts::new(policy());
        lockouts.fail(&trigger, &capture, t0);
        // Lock ends at 10 s; reset runs from there: gone at 70 s.
        lockouts.handle_timeout(t0 + Duration::from_secs(69));
        assert_eq!(lockouts.rows(None, t0 + Duration::from_secs(69)).len(), 1);
        let later = t0 + Duration::from_secs(70);
        lockouts.handle_timeout(later);
        assert!(lockouts.rows(None, later).is_empty());
        assert_eq!(
            lockouts.fail(&trigger, &capture, later),
            LockoutOutcome::Locked(later + Duration::from_secs(10))
        );
    }

    #[test]
    fn teardown_creates_a_context_in_grace_without_locking() {
        let t0 = Instant::now();
        let (trigger, capture) = (sap("eth1:1214.101"), sap("eth1:1214.*"));
        let mut lockouts = Lockouts::new(policy());
        lockouts.teardown(&trigger, &capture, t0);
        assert!(!lockouts.is_locked(&trigger, t0));
        let row = &lockouts.rows(Some(&capture), t0 + Duration::from_secs(5))[0];
        assert_eq!(
            (row.active, row.lockouts, row.elapsed_reset_time),
            (false, 0, 5)
        );
        assert_eq!(lockouts.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        lockouts.handle_timeout(t0 + Duration::from_secs(60));
        assert!(lockouts.rows(None, t0 + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn show_row_matches_the_guide_example() {
        // ":1214.101  0  10  1  20  1" one second into the first lock.
        let t0 = Instant::now();
        let (trigger, capture) = (sap("eth1:1214.101"), sap("eth1:1214.*"));
        let mut lockouts = Lockouts::new(HostLockoutPolicy::default());
        lockouts.fail(&trigger, &capture, t0);
        let row = &lockouts.rows(Some(&capture), t0 + Duration::from_secs(1))[0];
        assert_eq!(
            (
                row.elapsed_reset_time,
                row.current_lock_time,
                row.elapsed_lock_time,
                row.next_lock_time,
                row.lockouts,
                row.active
            ),
            (0, 10, 1, 20, 1, true)
        );
    }

    #[test]
    fn max_lockout_hosts_bounds_the_contexts() {
        let t0 = Instant::now();
        let capture = sap("eth1:*.*");
        let mut lockouts = Lockouts::new(policy());
        for sap_text in ["eth1:1.1", "eth1:1.2"] {
            assert!(matches!(
                lockouts.fail(&sap(sap_text), &capture, t0),
                LockoutOutcome::Locked(_)
            ));
        }
        assert_eq!(
            lockouts.fail(&sap("eth1:1.3"), &capture, t0),
            LockoutOutcome::TableFull
        );
        assert!(!lockouts.is_locked(&sap("eth1:1.3"), t0));
        assert_eq!(lockouts.refused(), 1);
    }

    #[test]
    fn clear_by_state_and_capture_sap() {
        let t0 = Instant::now();
        let mut lockouts = Lockouts::new(policy());
        lockouts.fail(&sap("eth1:1.1"), &sap("eth1:1.*"), t0);
        lockouts.teardown(&sap("eth1:2.1"), &sap("eth1:2.*"), t0);
        assert_eq!(lockouts.clear(None, LockoutState::InGrace, t0), 1);
        assert_eq!(
            lockouts.clear(Some(&sap("eth1:2.*")), LockoutState::All, t0),
            0
        );
        assert_eq!(
            lockouts.clear(Some(&sap("eth1:1.*")), LockoutState::Active, t0),
            1
        );
        assert!(lockouts.rows(None, t0).is_empty());
    }
}
