//! One inter-RAE session as a sans-IO state machine: open and its confirmation, keepalives,
//! and the hold timer. The shell feeds it decoded messages and the current time, sends what it
//! returns, and closes the connection when it returns an error.

use crate::proto;
use crate::wire::InterRaeMessage;
use std::time::{Duration, Instant};

/// Which side opened the TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We connected and sent the first Open; the peer's Open confirms it.
    Initiator,
    /// The peer connected; we answer its Open with ours once we accept it.
    Acceptor,
}

/// Why a session ends.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    /// Nothing was received for a whole hold time.
    #[error("hold timer expired ({0:?} without a message)")]
    HoldTimerExpired(Duration),
    /// The peer sent something other than Open before the session was up.
    #[error("{0} received before the session was open")]
    NotOpen(&'static str),
    /// A second Open on an established session.
    #[error("open received on an established session")]
    DuplicateOpen,
    /// The peer's AS is not the one expected on this connection.
    #[error("peer announced AS {got}, expected AS {expected}")]
    UnexpectedAs {
        /// AS configured for this connection.
        expected: u32,
        /// AS the peer announced.
        got: u32,
    },
    /// The peer's AS is not in our peer table.
    #[error("AS {0} is not a configured peer")]
    UnknownPeer(u32),
}

/// Something the session tells its owner.
#[derive(Debug, PartialEq)]
pub enum SessionEvent {
    /// The session is up with this peer AS.
    Established {
        /// The peer's AS number.
        peer_as: u32,
    },
    /// An update to hand to the routing engine.
    Update(proto::Update),
    /// A withdraw to hand to the routing engine.
    Withdraw(proto::Withdraw),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    OpenWait,
    Established,
}

/// One session's state.
#[derive(Debug)]
pub struct Session {
    role: Role,
    local_as: u32,
    expected_as: Option<u32>,
    peer_as: Option<u32>,
    state: State,
    hold_time: Duration,
    last_received: Instant,
    last_sent: Instant,
}

impl Session {
    /// A session on a connection we opened towards `peer_as`; send the returned Open first.
    pub fn initiate(
        local_as: u32,
        peer_as: u32,
        hold_time: Duration,
        now: Instant,
    ) -> (Self, InterRaeMessage) {
        let session = Self {
            role: Role::Initiator,
            local_as,
            expected_as: Some(peer_as),
            peer_as: None,
            state: State::OpenWait,
            hold_time,
            last_received: now,
            last_sent: now,
        };
        let open = session.open_message();
        (session, open)
    }

    /// A session on a connection the peer opened; it must start with an Open.
    pub fn accept(local_as: u32, hold_time: Duration, now: Instant) -> Self {
        Self {
            role: Role::Acceptor,
            local_as,
            expected_as: None,
            peer_as: None,
            state: State::OpenWait,
            hold_time,
            last_received: now,
            last_sent: now,
        }
    }

    fn open_message(&self) -> InterRaeMessage {
        InterRaeMessage::Open(proto::Open {
            as_number: self.local_as,
            hold_time_ms: u32::try_from(self.hold_time.as_millis()).unwrap_or(u32::MAX),
        })
    }

    /// Whether the session is established.
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    /// The peer's AS once it sent its Open.
    pub fn peer_as(&self) -> Option<u32> {
        self.peer_as
    }

    /// The negotiated hold time.
    pub fn hold_time(&self) -> Duration {
        self.hold_time
    }

    fn keepalive_interval(&self) -> Duration {
        self.hold_time / 3
    }

    /// Handles a received message. `is_known_peer` tells an acceptor whether an AS may peer.
    /// Returns the event for the owner and a message to send back, or why to close.
    pub fn handle_message(
        &mut self,
        message: InterRaeMessage,
        now: Instant,
        is_known_peer: impl Fn(u32) -> bool,
    ) -> Result<(Option<SessionEvent>, Option<InterRaeMessage>), SessionError> {
        self.last_received = now;
        match (self.state, message) {
            (State::OpenWait, InterRaeMessage::Open(open)) => {
                if let Some(expected) = self.expected_as {
                    if open.as_number != expected {
                        return Err(SessionError::UnexpectedAs {
                            expected,
                            got: open.as_number,
                        });
                    }
                } else if !is_known_peer(open.as_number) {
                    return Err(SessionError::UnknownPeer(open.as_number));
                }
                if open.hold_time_ms > 0 {
                    self.hold_time = self
                        .hold_time
                        .min(Duration::from_millis(u64::from(open.hold_time_ms)));
                }
                self.peer_as = Some(open.as_number);
                self.state = State::Established;
                let reply = match self.role {
                    Role::Acceptor => {
                        self.last_sent = now;
                        Some(self.open_message())
                    }
                    Role::Initiator => None,
                };
                Ok((
                    Some(SessionEvent::Established {
                        peer_as: open.as_number,
                    }),
                    reply,
                ))
            }
            (State::OpenWait, other) => Err(SessionError::NotOpen(other.kind())),
            (State::Established, InterRaeMessage::Open(_)) => Err(SessionError::DuplicateOpen),
            (State::Established, InterRaeMessage::Keepalive) => Ok((None, None)),
            (State::Established, InterRaeMessage::Update(update)) => {
                Ok((Some(SessionEvent::Update(update)), None))
            }
            (State::Established, InterRaeMessage::Withdraw(withdraw)) => {
                Ok((Some(SessionEvent::Withdraw(withdraw)), None))
            }
        }
    }

    /// Records that the owner sent a message (any message resets the keepalive timer).
    pub fn on_sent(&mut self, now: Instant) {
        self.last_sent = now;
    }

    /// When [`Session::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Instant {
        let hold = self.last_received + self.hold_time;
        if self.is_established() {
            hold.min(self.last_sent + self.keepalive_interval())
        } else {
            hold
        }
    }

    /// Runs the timers: a keepalive to send, or the hold-timer expiry.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
    ) -> Result<Option<InterRaeMessage>, SessionError> {
        if now >= self.last_received + self.hold_time {
            return Err(SessionError::HoldTimerExpired(self.hold_time));
        }
        if self.is_established() && now >= self.last_sent + self.keepalive_interval() {
            self.last_sent = now;
            return Ok(Some(InterRaeMessage::Keepalive));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(9);

    fn open(as_number: u32, hold_ms: u32) -> InterRaeMessage {
        InterRaeMessage::Open(proto::Open {
            as_number,
            hold_time_ms: hold_ms,
        })
    }

    #[test]
    fn initiator_is_up_after_the_confirming_open_and_sends_keepalives() {
        let t0 = Instant::now();
        let (mut s, first) = Session::initiate(11, 5, HOLD, t0);
        assert_eq!(first, open(11, 9000));
        assert!(!s.is_established());
        let (event, reply) = s.handle_message(open(5, 6000), t0, |_| false).unwrap();
        assert_eq!(event, Some(SessionEvent::Established { peer_as: 5 }));
        assert_eq!(reply, None);
        assert_eq!(s.hold_time(), Duration::from_secs(6));
        // Keepalive every hold/3 = 2 s.
        assert_eq!(s.poll_timeout(), t0 + Duration::from_secs(2));
        assert_eq!(s.handle_timeout(t0 + Duration::from_secs(1)).unwrap(), None);
        assert_eq!(
            s.handle_timeout(t0 + Duration::from_secs(2)).unwrap(),
            Some(InterRaeMessage::Keepalive)
        );
    }

    #[test]
    fn acceptor_confirms_known_peers_and_refuses_others() {
        let t0 = Instant::now();
        let mut s = Session::accept(11, HOLD, t0);
        let (event, reply) = s.handle_message(open(5, 0), t0, |a| a == 5).unwrap();
        assert_eq!(event, Some(SessionEvent::Established { peer_as: 5 }));
        assert_eq!(reply, Some(open(11, 9000)));
        let mut s = Session::accept(11, HOLD, t0);
        assert_eq!(
            s.handle_message(open(77, 0), t0, |a| a == 5).unwrap_err(),
            SessionError::UnknownPeer(77)
        );
    }

    #[test]
    fn messages_before_open_and_wrong_as_close_the_session() {
        let t0 = Instant::now();
        let mut s = Session::accept(11, HOLD, t0);
        assert_eq!(
            s.handle_message(InterRaeMessage::Keepalive, t0, |_| true)
                .unwrap_err(),
            SessionError::NotOpen("keepalive")
        );
        let (mut s, _) = Session::initiate(11, 5, HOLD, t0);
        assert_eq!(
            s.handle_message(open(9, 0), t0, |_| true).unwrap_err(),
            SessionError::UnexpectedAs {
                expected: 5,
                got: 9
            }
        );
    }

    #[test]
    fn hold_timer_expires_without_traffic_and_is_reset_by_any_message() {
        let t0 = Instant::now();
        let (mut s, _) = Session::initiate(11, 5, HOLD, t0);
        s.handle_message(open(5, 0), t0, |_| false).unwrap();
        let t8 = t0 + Duration::from_secs(8);
        s.handle_message(InterRaeMessage::Keepalive, t8, |_| false)
            .unwrap();
        assert!(s.handle_timeout(t0 + Duration::from_secs(10)).is_ok());
        assert_eq!(
            s.handle_timeout(t8 + HOLD).unwrap_err(),
            SessionError::HoldTimerExpired(HOLD)
        );
    }
}
