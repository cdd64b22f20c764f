//! Leadership of active/standby SM nodes over a shared database, sans-IO.
//!
//! Exactly one node is active: the holder of a lease row in the database, taken only once the
//! previous holder's lease has expired by the *database's* clock, and renewed well before it
//! runs out. Every take-over increments the row's **fencing token**; the store checks the
//! token in every commit transaction (and holds the row locked until the commit ends), so a
//! node that was paused or cut off past its lease cannot commit anything once another node has
//! taken over, whatever its own clock and bookkeeping say.
//!
//! [`Leadership`] decides *when* to ask the database for what and what the answers mean; the
//! shell executes the [`LeaseRequest`]s it polls and feeds back the [`LeaseReply`]s. Locally a
//! node counts its lease from when it *sent* the request that took or renewed it, so that it
//! steps down no later than the database lets another node take over.

use std::time::{Duration, Instant};

/// What the shell must ask the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseRequest {
    /// Take the lease if it has expired (a new, higher token).
    Acquire,
    /// Extend the lease held with this token, if it is still held.
    Renew {
        /// The token this node holds.
        token: u64,
    },
}

/// The database's answer to a [`LeaseRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseReply {
    /// The lease is this node's, with this token.
    Held {
        /// The fencing token.
        token: u64,
    },
    /// Another node holds an unexpired lease.
    HeldBy {
        /// Its node name.
        holder: String,
        /// Its token.
        token: u64,
    },
    /// The lease this node renewed is no longer its own (expired, or taken over).
    Lost,
}

/// What changed in the node's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// This node is now the active one; it commits with this token.
    BecameActive {
        /// The fencing token.
        token: u64,
    },
    /// This node must stop committing and acknowledging at once.
    SteppedDown {
        /// Why.
        reason: &'static str,
    },
}

/// The node's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not active; `leader` is the last holder the database named, if any.
    Standby {
        /// (node name, token) of the active node as last seen.
        leader: Option<(String, u64)>,
    },
    /// Active, committing with `token`.
    Active {
        /// The fencing token.
        token: u64,
    },
}

/// The lease timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long a taken or renewed lease lasts (the database adds it to its own clock).
    pub lease: Duration,
    /// How often the active node renews and a standby tries to take over (at most a third of
    /// `lease`, so that two renewals may fail before the lease runs out).
    pub interval: Duration,
}

impl LeaseConfig {
    /// A lease of `lease`, renewed every third of it.
    pub fn new(lease: Duration) -> LeaseConfig {
        LeaseConfig {
            lease,
            interval: lease / 3,
        }
    }
}

/// The leadership state machine of one node.
#[derive(Debug)]
pub struct Leadership {
    config: LeaseConfig,
    role: Role,
    /// The request sent and not answered yet, with when it was sent.
    in_flight: Option<(LeaseRequest, Instant)>,
    /// When the next request is due.
    next: Instant,
    /// While active: when the lease runs out by this node's clock.
    held_until: Option<Instant>,
}

impl Leadership {
    /// A node that starts as standby and tries to take the lease at once.
    pub fn new(config: LeaseConfig, now: Instant) -> Leadership {
        Leadership {
            config,
            role: Role::Standby { leader: None },
            in_flight: None,
            next: now,
            held_until: None,
        }
    }

    /// The current role.
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// The token to commit with, while active.
    pub fn token(&self) -> Option<u64> {
        match self.role {
            Role::Active { token } => Some(token),
            Role::Standby { .. } => None,
        }
    }

    /// The request to send now, if one is due and none is in flight.
    pub fn poll_request(&mut self, now: Instant) -> Option<LeaseRequest> {
        if self.in_flight.is_some() || now < self.next {
            return None;
        }
        let request = match self.role {
            Role::Active { token } => LeaseRequest::Renew { token },
            Role::Standby { .. } => LeaseRequest::Acquire,
        };
        self.in_flight = Some((request, now));
        self.next = now + self.config.interval;
        Some(request)
    }

    /// The database answered the request in flight (`Err`: it could not be asked, e.g. the
    /// connection failed).
    pub fn handle_reply(
        &mut self,
        now: Instant,
        reply: Result<LeaseReply, ()>,
    ) -> Option<Transition> {
        let (request, sent) = self.in_flight.take()?;
        match (request, reply) {
            (_, Err(())) => self.handle_timeout(now),
            (LeaseRequest::Acquire, Ok(LeaseReply::Held { token }))
            | (LeaseRequest::Renew { .. }, Ok(LeaseReply::Held { token })) => {
                self.held_until = Some(sent + self.config.lease);
                let was = self.token();
                self.role = Role::Active { token };
                // A renewal that comes back after the lease ran out locally is still a
                // renewal: the database extended the row this node held.
                (was != Some(token)).then_some(Transition::BecameActive { token })
            }
            (_, Ok(LeaseReply::HeldBy { holder, token })) => {
                let transition = self.step_down("another node holds the lease");
                self.role = Role::Standby {
                    leader: Some((holder, token)),
                };
                transition
            }
            (_, Ok(LeaseReply::Lost)) => self.step_down("the lease was lost"),
        }
    }

    /// The store refused a commit because the token is not the current one.
    pub fn fenced(&mut self) -> Option<Transition> {
        self.step_down("a commit was fenced: another node took over")
    }

    /// Steps down once the lease has run out by this node's clock without a renewal.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Transition> {
        match self.held_until {
            Some(until) if now >= until => {
                self.step_down("the lease ran out before it was renewed")
            }
            _ => None,
        }
    }

    /// When [`Self::handle_timeout`] or [`Self::poll_request`] next has something to do.
    pub fn poll_timeout(&self) -> Instant {
        match (self.held_until, self.in_flight) {
            (Some(until), Some(_)) => until,
            (Some(until), None) => until.min(self.next),
            (None, _) => self.next,
        }
    }

    fn step_down(&mut self, reason: &'static str) -> Option<Transition> {
        self.held_until = None;
        match self.role {
            Role::Active { .. } => {
                self.role = Role::Standby { leader: None };
                Some(Transition::SteppedDown { reason })
            }
            Role::Standby { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(3);

    fn node(t0: Instant) -> Leadership {
        Leadership::new(LeaseConfig::new(LEASE), t0)
    }

    #[test]
    fn a_standby_takes_the_lease_and_renews_it_every_third() {
        let t0 = Instant::now();
        let mut n = node(t0);
        assert_eq!(n.poll_request(t0), Some(LeaseRequest::Acquire));
        assert_eq!(n.poll_request(t0), None, "one request in flight");
        assert_eq!(
            n.handle_reply(t0, Ok(LeaseReply::Held { token: 7 })),
            Some(Transition::BecameActive { token: 7 })
        );
        assert_eq!(n.token(), Some(7));
        assert_eq!(n.poll_request(t0 + Duration::from_millis(999)), None);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(n.poll_request(t1), Some(LeaseRequest::Renew { token: 7 }));
        assert_eq!(n.handle_reply(t1, Ok(LeaseReply::Held { token: 7 })), None);
        // Counted from when the renewal was sent.
        assert_eq!(
            n.handle_timeout(t1 + LEASE - Duration::from_millis(1)),
            None
        );
        assert_eq!(n.token(), Some(7));
    }

    #[test]
    fn a_standby_that_finds_the_lease_held_stays_standby_and_names_the_leader() {
        let t0 = Instant::now();
        let mut n = node(t0);
        n.poll_request(t0);
        let reply = LeaseReply::HeldBy {
            holder: "sm-a".into(),
            token: 3,
        };
        assert_eq!(n.handle_reply(t0, Ok(reply)), None);
        assert_eq!(
            n.role(),
            &Role::Standby {
                leader: Some(("sm-a".into(), 3))
            }
        );
        assert_eq!(n.token(), None);
        assert_eq!(n.poll_timeout(), t0 + LEASE / 3);
    }

    #[test]
    fn the_active_steps_down_when_renewals_fail_past_its_lease() {
        let t0 = Instant::now();
        let mut n = node(t0);
        n.poll_request(t0);
        n.handle_reply(t0, Ok(LeaseReply::Held { token: 1 }));
        let t1 = t0 + Duration::from_secs(1);
        n.poll_request(t1);
        assert_eq!(n.handle_reply(t1, Err(())), None, "still within the lease");
        let t2 = t0 + Duration::from_secs(2);
        n.poll_request(t2);
        // The renewal hangs (a partition): the lease runs out by the node's own clock.
        assert_eq!(n.poll_timeout(), t0 + LEASE);
        assert_eq!(
            n.handle_timeout(t0 + LEASE - Duration::from_millis(1)),
            None
        );
        assert!(matches!(
            n.handle_timeout(t0 + LEASE),
            Some(Transition::SteppedDown { .. })
        ));
        assert_eq!(n.token(), None);
        // The late answer changes nothing more.
        assert_eq!(n.handle_reply(t0 + LEASE, Ok(LeaseReply::Lost)), None);
        assert_eq!(n.token(), None);
    }

    #[test]
    fn a_lost_lease_or_a_fenced_commit_steps_down_at_once() {
        let t0 = Instant::now();
        let mut n = node(t0);
        n.poll_request(t0);
        n.handle_reply(t0, Ok(LeaseReply::Held { token: 4 }));
        let t1 = t0 + Duration::from_secs(1);
        n.poll_request(t1);
        assert!(matches!(
            n.handle_reply(t1, Ok(LeaseReply::Lost)),
            Some(Transition::SteppedDown { .. })
        ));
        assert_eq!(n.poll_request(t1), None, "next attempt at the interval");
        let t2 = t1 + LEASE / 3;
        assert_eq!(n.poll_request(t2), Some(LeaseRequest::Acquire));
        assert_eq!(
            n.handle_reply(t2, Ok(LeaseReply::Held { token: 6 })),
            Some(Transition::BecameActive { token: 6 })
        );
        assert!(matches!(n.fenced(), Some(Transition::SteppedDown { .. })));
        assert_eq!(n.fenced(), None, "a standby has nothing to step down from");
    }
}
