//! The client side of one RADIUS exchange, sans-IO: sign a request, (re)send it on a timer,
//! verify the answer. The proxy's upstream requests, its Status-Server probes, its CoA relay to
//! the NAS and `brasa radius send` all go through [`Exchange`], so the signing, verification and
//! retry rules exist once.
//!
//! A shell makes an [`Exchange`] from a request, sends [`Exchange::datagram`], and until
//! [`Exchange::deadline`] hands every datagram from the server to [`Exchange::verify`]; at the
//! deadline [`Exchange::handle_timeout`] says whether to send the same datagram again or give
//! up.

mod health;
mod ids;

pub use health::ServerHealth;
pub use ids::IdSpace;

use brasa_radius::attr::MESSAGE_AUTHENTICATOR as MESSAGE_AUTHENTICATOR_TYPE;
use brasa_radius::auth::{self, MessageAuthenticator as MaCheck};
use brasa_radius::{wire, Code, Message, PacketError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often and how long a request is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Time to wait for an answer after each transmission.
    pub timeout: Duration,
    /// Transmissions in all (at least one is made).
    pub attempts: u32,
}

/// What a request carries as Message-Authenticator (RFC 3579 §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageAuthenticator {
    /// A fresh one, placed first (Blast-RADIUS mitigation; RFC 5997 for Status-Server).
    First,
    /// Whatever the request holds: a 16-octet one is computed, none is added.
    Keep,
    /// None: any the request holds is removed.
    Remove,
}

/// Why a datagram is not the answer to an [`Exchange`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// Not a RADIUS packet.
    #[error("{0}")]
    Malformed(#[from] PacketError),
    /// A packet with another Identifier (a late answer to an earlier request).
    #[error("answer with Identifier {0}, not the one asked")]
    OtherIdentifier(u8),
    /// The Response Authenticator does not match the request and secret.
    #[error("bad Response Authenticator")]
    BadAuthenticator,
    /// A Message-Authenticator that is wrong, repeated or not 16 octets.
    #[error("bad Message-Authenticator")]
    BadMessageAuthenticator,
}

/// What a deadline of an [`Exchange`] means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout<'a> {
    /// The deadline is still ahead: nothing to do.
    NotDue,
    /// Send this datagram again (the same request, for the server's duplicate detection).
    Resend(&'a [u8]),
    /// Every attempt is spent: the exchange is over without an answer.
    GaveUp,
}

/// One request on its way to a server: the signed datagram, its retransmission timer, and what
/// an answer must satisfy.
#[derive(Clone, Debug)]
pub struct Exchange {
    code: Code,
    identifier: u8,
    /// The Request Authenticator as sent (what the answer is signed over).
    authenticator: [u8; 16],
    datagram: Vec<u8>,
    secret: Arc<[u8]>,
    retry: Retry,
    attempts: u32,
    sent_at: Instant,
    deadline: Instant,
}

impl Exchange {
    /// Signs `request` for `secret` and starts the exchange with its first transmission at
    /// `now` (send [`Exchange::datagram`]).
    ///
    /// Access-Request and Status-Server take `random_authenticator` as Request Authenticator
    /// (attributes hidden with the secret, such as User-Password, must already be hidden over
    /// it); Accounting, CoA and Disconnect requests get theirs computed over the packet (RFC 2866
    /// §3, RFC 5176 §2.3). A Status-Server always carries a Message-Authenticator (RFC 5997 §3),
    /// whatever `message_authenticator` says.
    pub fn new(
        now: Instant,
        mut request: Message,
        secret: Arc<[u8]>,
        random_authenticator: [u8; 16],
        message_authenticator: MessageAuthenticator,
        retry: Retry,
    ) -> Result<Exchange, PacketError> {
        let signed = request.code.has_signed_request_authenticator();
        let message_authenticator = if request.code == Code::StatusServer {
            MessageAuthenticator::First
        } else {
            message_authenticator
        };
        match message_authenticator {
            MessageAuthenticator::First => {
                request.remove(MESSAGE_AUTHENTICATOR_TYPE);
                request
                    .attributes
                    .insert(0, MESSAGE_AUTHENTICATOR_TYPE, &[0; 16])?;
            }
            MessageAuthenticator::Keep => {}
            MessageAuthenticator::Remove => {
                request.remove(MESSAGE_AUTHENTICATOR_TYPE);
            }
        }
        request.authenticator = if signed {
            [0; 16]
        } else {
            random_authenticator
        };
        let mut datagram = request.encode()?;
        // RFC 5176 §3.5 (and FreeRADIUS for accounting): the Message-Authenticator of a signed
        // request is computed over a zero Request Authenticator, which is then computed over
        // the whole packet.
        auth::fill_message_authenticator(&mut datagram, &request.authenticator, &secret);
        let authenticator = if signed {
            auth::sign_request(&mut datagram, &secret);
            wire::Packet::new_unchecked(&datagram[..]).authenticator()
        } else {
            random_authenticator
        };
        Ok(Exchange {
            code: request.code,
            identifier: request.identifier,
            authenticator,
            datagram,
            secret,
            retry,
            attempts: 1,
            sent_at: now,
            deadline: now + retry.timeout,
        })
    }

    /// The signed request, to send (again after [`Exchange::handle_timeout`]).
    pub fn datagram(&self) -> &[u8] {
        &self.datagram
    }

    /// The request's code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The request's Identifier.
    pub fn identifier(&self) -> u8 {
        self.identifier
    }

    /// The Request Authenticator as sent (encrypted attributes of the answer are hidden over
    /// it).
    pub fn authenticator(&self) -> &[u8; 16] {
        &self.authenticator
    }

    /// The secret the request was signed with (its answer's encrypted attributes are hidden
    /// with it).
    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// When the latest transmission was made.
    pub fn sent_at(&self) -> Instant {
        self.sent_at
    }

    /// When [`Exchange::handle_timeout`] is due if no answer came.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Transmissions made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Runs the retransmission timer at `now`: an early call changes nothing; a due one asks
    /// for the request again or, when every attempt is spent, ends the exchange.
    pub fn handle_timeout(&mut self, now: Instant) -> Timeout<'_> {
        if now < self.deadline {
            return Timeout::NotDue;
        }
        if self.attempts >= self.retry.attempts {
            return Timeout::GaveUp;
        }
        self.attempts += 1;
        self.sent_at = now;
        self.deadline = now + self.retry.timeout;
        Timeout::Resend(&self.datagram)
    }

    /// Checks that `bytes` answers this request (Identifier, Response Authenticator,
    /// Message-Authenticator when present) and decodes it.
    pub fn verify(&self, bytes: &[u8]) -> Result<Message, ReplyError> {
        let reply = Message::decode(bytes)?;
        if reply.identifier != self.identifier {
            return Err(ReplyError::OtherIdentifier(reply.identifier));
        }
        if !auth::verify_response(bytes, &self.authenticator, &self.secret) {
            return Err(ReplyError::BadAuthenticator);
        }
        let context = reply_ma_context(
            reply.code,
            self.code == Code::StatusServer,
            &self.authenticator,
        );
        match auth::check_message_authenticator(bytes, &context, &self.secret) {
            MaCheck::Absent | MaCheck::Valid => Ok(reply),
            MaCheck::Invalid | MaCheck::Malformed => Err(ReplyError::BadMessageAuthenticator),
        }
    }
}

/// The header authenticator a reply's Message-Authenticator is computed over, as FreeRADIUS
/// does: zeros for an Accounting-Response (unless it answers a Status-Server), the request's
/// authenticator for every other reply.
pub fn reply_ma_context(
    code: Code,
    answers_status_server: bool,
    request_authenticator: &[u8; 16],
) -> [u8; 16] {
    if code == Code::AccountingResponse && !answers_status_server {
        [0; 16]
    } else {
        *request_authenticator
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brasa_radius::attr::{ACCT_STATUS_TYPE, USER_NAME};

    const SECRET: &[u8] = b"s3cret";

    fn retry(attempts: u32) -> Retry {
        Retry {
            timeout: Duration::from_secs(1),
            attempts,
        }
    }

    fn answer(exchange: &Exchange, code: Code, with_ma: bool) -> Vec<u8> {
        let mut reply = Message::new(code, exchange.identifier());
        if with_ma {
            reply.add(MESSAGE_AUTHENTICATOR_TYPE, [0; 16]).unwrap();
        }
        reply.authenticator = *exchange.authenticator();
        let mut bytes = reply.encode().unwrap();
        let context = reply_ma_context(
            code,
            exchange.code() == Code::StatusServer,
            exchange.authenticator(),
        );
        auth::fill_message_authenticator(&mut bytes, &context, SECRET);
        auth::sign_response(&mut bytes, exchange.authenticator(), SECRET);
        bytes
    }

    #[test]
    fn access_request_gets_a_first_message_authenticator_and_the_random_authenticator() {
        let now = Instant::now();
        let mut request = Message::new(Code::AccessRequest, 3);
        request.add(USER_NAME, "bob").unwrap();
        request.add(MESSAGE_AUTHENTICATOR_TYPE, [1; 16]).unwrap();
        let exchange = Exchange::new(
            now,
            request,
            SECRET.into(),
            [5; 16],
            MessageAuthenticator::First,
            retry(1),
        )
        .unwrap();
        let sent = Message::decode(exchange.datagram()).unwrap();
        assert_eq!(sent.authenticator, [5; 16]);
        assert_eq!(
            sent.attributes.get(0).unwrap().typ,
            MESSAGE_AUTHENTICATOR_TYPE
        );
        assert_eq!(sent.get_all(MESSAGE_AUTHENTICATOR_TYPE).count(), 1);
        assert_eq!(
            auth::check_message_authenticator(exchange.datagram(), &[5; 16], SECRET),
            MaCheck::Valid
        );
        assert!(exchange
            .verify(&answer(&exchange, Code::AccessAccept, true))
            .is_ok());
    }

    #[test]
    fn accounting_request_is_signed_and_its_answer_checked_over_zeros() {
        let now = Instant::now();
        let mut request = Message::new(Code::AccountingRequest, 9);
        request.add(ACCT_STATUS_TYPE, [0, 0, 0, 1]).unwrap();
        request.add(MESSAGE_AUTHENTICATOR_TYPE, [0; 16]).unwrap();
        let exchange = Exchange::new(
            now,
            request,
            SECRET.into(),
            [5; 16],
            MessageAuthenticator::Keep,
            retry(1),
        )
        .unwrap();
        assert!(auth::verify_request(exchange.datagram(), SECRET));
        assert_eq!(
            auth::check_message_authenticator(exchange.datagram(), &[0; 16], SECRET),
            MaCheck::Valid
        );
        assert_ne!(exchange.authenticator(), &[5; 16]);
        assert!(exchange
            .verify(&answer(&exchange, Code::AccountingResponse, true))
            .is_ok());
    }

    #[test]
    fn answers_that_do_not_match_are_refused() {
        let now = Instant::now();
        let exchange = Exchange::new(
            now,
            Message::new(Code::StatusServer, 1),
            SECRET.into(),
            [7; 16],
            MessageAuthenticator::Remove,
            retry(1),
        )
        .unwrap();
        // RFC 5997: a Status-Server carries one whatever was asked.
        assert_eq!(
            auth::check_message_authenticator(exchange.datagram(), &[7; 16], SECRET),
            MaCheck::Valid
        );
        let good = answer(&exchange, Code::AccessAccept, true);
        assert!(exchange.verify(&good).is_ok());
        assert!(matches!(
            exchange.verify(&good[..10]),
            Err(ReplyError::Malformed(_))
        ));
        let mut other_id = good.clone();
        other_id[1] = 2;
        assert_eq!(
            exchange.verify(&other_id),
            Err(ReplyError::OtherIdentifier(2))
        );
        let mut forged = good.clone();
        forged[4] ^= 1;
        assert_eq!(exchange.verify(&forged), Err(ReplyError::BadAuthenticator));
        // A wrong Message-Authenticator under a valid Response Authenticator.
        let mut bad_ma = Message::decode(&good).unwrap();
        bad_ma.set(MESSAGE_AUTHENTICATOR_TYPE, [3; 16]).unwrap();
        bad_ma.authenticator = [7; 16];
        let mut bad_ma = bad_ma.encode().unwrap();
        auth::sign_response(&mut bad_ma, &[7; 16], SECRET);
        assert_eq!(
            exchange.verify(&bad_ma),
            Err(ReplyError::BadMessageAuthenticator)
        );
    }

    #[test]
    fn retransmits_the_same_datagram_until_the_attempts_are_spent() {
        let now = Instant::now();
        let mut exchange = Exchange::new(
            now,
            Message::new(Code::AccessRequest, 1),
            SECRET.into(),
            [1; 16],
            MessageAuthenticator::First,
            retry(3),
        )
        .unwrap();
        let first = exchange.datagram().to_vec();
        assert_eq!(exchange.handle_timeout(now), Timeout::NotDue);
        assert_eq!(exchange.attempts(), 1);
        let second = now + Duration::from_secs(1);
        assert_eq!(exchange.handle_timeout(second), Timeout::Resend(&first[..]));
        assert_eq!(exchange.sent_at(), second);
        assert_eq!(exchange.deadline(), second + Duration::from_secs(1));
        assert_eq!(
            exchange.handle_timeout(second + Duration::from_secs(1)),
            Timeout::Resend(&first[..])
        );
        assert_eq!(
            exchange.handle_timeout(now + Duration::from_secs(9)),
            Timeout::GaveUp
        );
        assert_eq!(exchange.attempts(), 3);
    }
}
