//! Whether an upstream server is worth a request: dead after a run of consecutive timeouts,
//! alive again on any answer, or (when nobody probes it with Status-Server) after resting.

use std::time::{Duration, Instant};

/// One server's liveness, as the proxy's engine and every other RADIUS client of brasa track it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHealth {
    alive: bool,
    consecutive_timeouts: u32,
    dead_since: Option<Instant>,
}

impl Default for ServerHealth {
    fn default() -> Self {
        Self {
            alive: true,
            consecutive_timeouts: 0,
            dead_since: None,
        }
    }
}

impl ServerHealth {
    /// Whether the server is alive, as last decided (no revival considered).
    pub fn alive(&self) -> bool {
        self.alive
    }

    /// Whether the server may take a request at `now`: a dead server that nobody probes comes
    /// back after `revive_after`; a probed one only when a probe is answered.
    pub fn is_alive(&mut self, now: Instant, revive_after: Duration, probing: bool) -> bool {
        if !self.alive && !probing {
            if let Some(since) = self.dead_since {
                if now.saturating_duration_since(since) >= revive_after {
                    *self = Self::default();
                }
            }
        }
        self.alive
    }

    /// A request to the server gave up waiting; true when this timeout made it dead
    /// (`dead_after` consecutive ones, at least one).
    pub fn timed_out(&mut self, now: Instant, dead_after: u32) -> bool {
        self.consecutive_timeouts = self.consecutive_timeouts.saturating_add(1);
        if self.alive && self.consecutive_timeouts >= dead_after.max(1) {
            self.alive = false;
            self.dead_since = Some(now);
            return true;
        }
        false
    }

    /// The server answered; true when it was dead until now.
    pub fn answered(&mut self) -> bool {
        let was_dead = !self.alive;
        *self = Self::default();
        was_dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_after_the_timeouts_in_a_row_and_alive_on_an_answer() {
        let now = Instant::now();
        let mut health = ServerHealth::default();
        assert!(!health.timed_out(now, 2));
        assert!(!health.answered(), "an answer resets the run");
        assert!(!health.timed_out(now, 2));
        assert!(health.timed_out(now, 2));
        assert!(!health.is_alive(now, Duration::from_secs(60), false));
        assert!(health.answered());
        assert!(health.alive());
    }

    #[test]
    fn an_unprobed_dead_server_is_tried_again_after_resting_a_probed_one_is_not() {
        let now = Instant::now();
        let rest = Duration::from_secs(60);
        let mut health = ServerHealth::default();
        assert!(health.timed_out(now, 1));
        assert!(!health.is_alive(now + rest / 2, rest, false));
        assert!(!health.is_alive(now + rest, rest, true));
        assert!(health.is_alive(now + rest, rest, false));
        assert!(!health.timed_out(now + rest, 2), "the count started over");
    }
}
