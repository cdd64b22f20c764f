//! Protocol errors as a typed enum, each mapped to the NOTIFICATION (code, subcode, data) that
//! RFC 4271 §6, RFC 5492, RFC 6608 and RFC 7606 prescribe for it.

use std::fmt;
use std::net::Ipv4Addr;

/// NOTIFICATION error codes (RFC 4271 §4.5, RFC 6608).
pub mod code {
    /// Message Header Error.
    pub const MESSAGE_HEADER: u8 = 1;
    /// OPEN Message Error.
    pub const OPEN_MESSAGE: u8 = 2;
    /// UPDATE Message Error.
    pub const UPDATE_MESSAGE: u8 = 3;
    /// Hold Timer Expired.
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    /// Finite State Machine Error.
    pub const FSM: u8 = 5;
    /// Cease.
    pub const CEASE: u8 = 6;
}

/// Cease subcodes (RFC 4486).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeaseReason {
    /// 2: the operator shut the peer down.
    AdministrativeShutdown,
    /// 4: the operator reset the session.
    AdministrativeReset,
    /// 5: the connection was refused.
    ConnectionRejected,
    /// 7: a connection collision was resolved against this connection.
    ConnectionCollision,
}

impl CeaseReason {
    fn subcode(self) -> u8 {
        match self {
            CeaseReason::AdministrativeShutdown => 2,
            CeaseReason::AdministrativeReset => 4,
            CeaseReason::ConnectionRejected => 5,
            CeaseReason::ConnectionCollision => 7,
        }
    }
}

/// An error that ends a session: the speaker sends the matching NOTIFICATION and closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// (1, 1) The header marker is not sixteen 0xff bytes.
    #[error("connection not synchronized: the header marker is not all ones")]
    ConnectionNotSynchronized,
    /// (1, 2) The length field is out of range for the message type; data is the field.
    #[error("bad message length {0}")]
    BadMessageLength(u16),
    /// (1, 3) Unknown message type; data is the type.
    #[error("bad message type {0}")]
    BadMessageType(u8),
    /// (2, 1) The OPEN names a version other than 4; data is the highest supported version.
    #[error("unsupported BGP version {0}")]
    UnsupportedVersion(u8),
    /// (2, 2) The peer's AS is not the configured one.
    #[error("bad peer AS {received} (configured {expected})")]
    BadPeerAs {
        /// The AS this peer is configured with.
        expected: u32,
        /// The AS the OPEN names (4-octet capability applied).
        received: u32,
    },
    /// (2, 3) The BGP Identifier is zero or, on an iBGP session, our own.
    #[error("bad BGP identifier {0}")]
    BadBgpIdentifier(Ipv4Addr),
    /// (2, 4) An optional parameter other than capabilities.
    #[error("unsupported optional parameter {0}")]
    UnsupportedOptionalParameter(u8),
    /// (2, 6) A hold time of 1 or 2 seconds.
    #[error("unacceptable hold time {0}")]
    UnacceptableHoldTime(u16),
    /// (2, 7) The peer lacks a capability this speaker requires; data lists the required
    /// capabilities (RFC 5492 §3).
    #[error("the peer announced none of the VPN families this speaker requires")]
    UnsupportedCapability(Vec<u8>),
    /// (2, 0) An OPEN whose parameters or capabilities do not parse.
    #[error("malformed OPEN: {0}")]
    MalformedOpen(&'static str),
    /// (3, 1) The UPDATE's lengths do not add up, or MP_REACH/MP_UNREACH is repeated.
    #[error("malformed attribute list: {0}")]
    MalformedAttributeList(&'static str),
    /// (3, 2) A well-known attribute this speaker does not know; data is the attribute.
    #[error("unrecognized well-known attribute {}", attr_type(.0))]
    UnrecognizedWellKnownAttribute(Vec<u8>),
    /// (3, 4) Attribute flags conflict with the attribute's type; data is the attribute.
    ///
    /// There is no (3, 5) Attribute Length Error: RFC 7606 turns a length that does not fit
    /// the attribute into treat-as-withdraw or attribute discard (see `wire::update`), and
    /// MP_REACH/MP_UNREACH length errors into (3, 9).
    #[error("attribute flags error on attribute {}", attr_type(.0))]
    AttributeFlags(Vec<u8>),
    /// (3, 9) A recognised optional attribute (MP_REACH_NLRI, MP_UNREACH_NLRI) is malformed;
    /// data is the attribute.
    #[error("optional attribute error on attribute {}", attr_type(.0))]
    OptionalAttribute(Vec<u8>),
    /// (3, 10) The NLRI or withdrawn-routes field of the UPDATE does not parse.
    #[error("invalid network field")]
    InvalidNetworkField,
    /// (4, 0) No KEEPALIVE or UPDATE within the hold time.
    #[error("hold timer expired")]
    HoldTimerExpired,
    /// (5, 1..3) A message that the current state does not expect (RFC 6608): the subcode
    /// names the state.
    #[error("unexpected {message} message in state {state}")]
    UnexpectedMessage {
        /// RFC 6608 subcode: 1 OpenSent, 2 OpenConfirm, 3 Established.
        state: u8,
        /// The message type received.
        message: &'static str,
    },
    /// (6, n) Cease.
    #[error("cease: {0:?}")]
    Cease(CeaseReason),
}

fn attr_type(attr: &[u8]) -> String {
    attr.get(1)
        .map_or_else(|| "?".to_owned(), |t| t.to_string())
}

impl ProtocolError {
    /// The NOTIFICATION that reports this error.
    pub fn notification(&self) -> Notification {
        use ProtocolError::*;
        let (code, subcode, data) = match self {
            ConnectionNotSynchronized => (code::MESSAGE_HEADER, 1, Vec::new()),
            BadMessageLength(len) => (code::MESSAGE_HEADER, 2, len.to_be_bytes().to_vec()),
            BadMessageType(t) => (code::MESSAGE_HEADER, 3, vec![*t]),
            UnsupportedVersion(_) => (code::OPEN_MESSAGE, 1, 4u16.to_be_bytes().to_vec()),
            BadPeerAs { .. } => (code::OPEN_MESSAGE, 2, Vec::new()),
            BadBgpIdentifier(_) => (code::OPEN_MESSAGE, 3, Vec::new()),
            UnsupportedOptionalParameter(_) => (code::OPEN_MESSAGE, 4, Vec::new()),
            UnacceptableHoldTime(_) => (code::OPEN_MESSAGE, 6, Vec::new()),
            UnsupportedCapability(caps) => (code::OPEN_MESSAGE, 7, caps.clone()),
            MalformedOpen(_) => (code::OPEN_MESSAGE, 0, Vec::new()),
            MalformedAttributeList(_) => (code::UPDATE_MESSAGE, 1, Vec::new()),
            UnrecognizedWellKnownAttribute(a) => (code::UPDATE_MESSAGE, 2, a.clone()),
            AttributeFlags(a) => (code::UPDATE_MESSAGE, 4, a.clone()),
            OptionalAttribute(a) => (code::UPDATE_MESSAGE, 9, a.clone()),
            InvalidNetworkField => (code::UPDATE_MESSAGE, 10, Vec::new()),
            HoldTimerExpired => (code::HOLD_TIMER_EXPIRED, 0, Vec::new()),
            UnexpectedMessage { state, .. } => (code::FSM, *state, Vec::new()),
            Cease(reason) => (code::CEASE, reason.subcode(), Vec::new()),
        };
        Notification {
            code,
            subcode,
            data,
        }
    }
}

/// A NOTIFICATION message's content (RFC 4271 §4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Error code.
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
    /// Data whose meaning depends on code and subcode.
    pub data: Vec<u8>,
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.code {
            code::MESSAGE_HEADER => "message header error",
            code::OPEN_MESSAGE => "OPEN message error",
            code::UPDATE_MESSAGE => "UPDATE message error",
            code::HOLD_TIMER_EXPIRED => "hold timer expired",
            code::FSM => "finite state machine error",
            code::CEASE => "cease",
            _ => "unknown error",
        };
        write!(f, "{name} ({}/{})", self.code, self.subcode)?;
        if !self.data.is_empty() {
            write!(f, " data ")?;
            for b in &self.data {
                write!(f, "{b:02x}")?;
            }
        }
        Ok(())
    }
}
