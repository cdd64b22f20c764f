//! BGP-4 wire format (RFC 4271 §4) as checked views over byte buffers.
//!
//! [`Message`] frames one message out of a byte stream and validates its header (marker, length
//! range per type, type); [`open`] and [`update`] read the bodies that carry structure, and the
//! emitters here write KEEPALIVE, NOTIFICATION, ROUTE-REFRESH and End-of-RIB messages. Every
//! accessor is bounds-checked and no reader panics or allocates per route; errors are
//! [`ProtocolError`]s that name the NOTIFICATION to send.

pub mod open;
pub mod update;

use crate::error::{Notification, ProtocolError};
use crate::types::AfiSafi;

/// Length of the common header: marker, length, type.
pub const HEADER_LEN: usize = 19;
/// Largest message without the Extended Message capability (RFC 8654), which this speaker
/// does not announce.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// The five message types of BGP-4 with route refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// 1: OPEN.
    Open,
    /// 2: UPDATE.
    Update,
    /// 3: NOTIFICATION.
    Notification,
    /// 4: KEEPALIVE.
    Keepalive,
    /// 5: ROUTE-REFRESH (RFC 2918).
    RouteRefresh,
}

impl MessageType {
    /// The type for a wire value.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => MessageType::Open,
            2 => MessageType::Update,
            3 => MessageType::Notification,
            4 => MessageType::Keepalive,
            5 => MessageType::RouteRefresh,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            MessageType::Open => 1,
            MessageType::Update => 2,
            MessageType::Notification => 3,
            MessageType::Keepalive => 4,
            MessageType::RouteRefresh => 5,
        }
    }

    /// The name used in logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Open => "OPEN",
            MessageType::Update => "UPDATE",
            MessageType::Notification => "NOTIFICATION",
            MessageType::Keepalive => "KEEPALIVE",
            MessageType::RouteRefresh => "ROUTE-REFRESH",
        }
    }

    /// The length range RFC 4271 §6.1 (and RFC 2918 for ROUTE-REFRESH) allows for the type.
    fn length_range(self) -> (usize, usize) {
        match self {
            MessageType::Open => (29, MAX_MESSAGE_LEN),
            MessageType::Update => (23, MAX_MESSAGE_LEN),
            MessageType::Notification => (21, MAX_MESSAGE_LEN),
            MessageType::Keepalive => (HEADER_LEN, HEADER_LEN),
            MessageType::RouteRefresh => (23, 23),
        }
    }
}

/// A view of one message at the start of a byte buffer.
#[derive(Debug, Clone, Copy)]
pub struct Message<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Message<T> {
    /// Wraps `buffer` without checks; accessors return zero or empty slices where it is short.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Whether the first sixteen bytes are all ones.
    pub fn marker_is_valid(&self) -> bool {
        self.buffer
            .as_ref()
            .get(..16)
            .is_some_and(|m| m.iter().all(|b| *b == 0xff))
    }

    /// The length field (0 when the header is incomplete).
    pub fn length(&self) -> u16 {
        match self.buffer.as_ref().get(16..18) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => 0,
        }
    }

    /// The type field (0 when the header is incomplete).
    pub fn raw_type(&self) -> u8 {
        self.buffer.as_ref().get(18).copied().unwrap_or(0)
    }

    /// The body: the bytes after the header up to the length field, clamped to the buffer.
    pub fn body(&self) -> &[u8] {
        let bytes = self.buffer.as_ref();
        let end = usize::from(self.length()).min(bytes.len());
        bytes.get(HEADER_LEN..end).unwrap_or(&[])
    }

    /// Checks the header of the message at the start of the buffer.
    ///
    /// `Ok(None)` means more bytes are needed; `Ok(Some((type, len)))` means the first `len`
    /// bytes are a whole message whose header is valid. Errors are the Message Header Errors
    /// of RFC 4271 §6.1, detected as soon as the header is complete.
    pub fn check(&self) -> Result<Option<(MessageType, usize)>, ProtocolError> {
        let bytes = self.buffer.as_ref();
        if bytes.len() < HEADER_LEN {
            return Ok(None);
        }
        if !self.marker_is_valid() {
            return Err(ProtocolError::ConnectionNotSynchronized);
        }
        let len = self.length();
        let kind = MessageType::from_u8(self.raw_type());
        let (min, max) = kind.map_or((HEADER_LEN, MAX_MESSAGE_LEN), MessageType::length_range);
        if !(min..=max).contains(&usize::from(len)) {
            return Err(ProtocolError::BadMessageLength(len));
        }
        let kind = kind.ok_or(ProtocolError::BadMessageType(self.raw_type()))?;
        if bytes.len() < usize::from(len) {
            return Ok(None);
        }
        Ok(Some((kind, usize::from(len))))
    }
}

/// Appends a header for `kind` with a zero length; [`finish_message`] fills the length in.
pub fn begin_message(out: &mut Vec<u8>, kind: MessageType) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&[0, 0, kind.to_u8()]);
    start
}

/// Writes the length of the message begun at `start`.
///
/// The emitters in this crate never build messages over [`MAX_MESSAGE_LEN`]; a longer one is
/// a bug in the caller and is written with its length saturated.
pub fn finish_message(out: &mut [u8], start: usize) {
    let len = u16::try_from(out.len() - start).unwrap_or(u16::MAX);
    out[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
}

/// Appends a KEEPALIVE.
pub fn emit_keepalive(out: &mut Vec<u8>) {
    let start = begin_message(out, MessageType::Keepalive);
    finish_message(out, start);
}

/// Appends a ROUTE-REFRESH for `family` (RFC 2918, subtype 0).
pub fn emit_route_refresh(out: &mut Vec<u8>, family: AfiSafi) {
    let start = begin_message(out, MessageType::RouteRefresh);
    out.extend_from_slice(&family.afi.to_be_bytes());
    out.extend_from_slice(&[0, family.safi]);
    finish_message(out, start);
}

/// Appends the End-of-RIB marker for `family` (RFC 4724 §2): an empty UPDATE for IPv4
/// unicast, an UPDATE with an empty MP_UNREACH_NLRI otherwise.
pub fn emit_end_of_rib(out: &mut Vec<u8>, family: AfiSafi) {
    let start = begin_message(out, MessageType::Update);
    if family == AfiSafi::IPV4_UNICAST {
        out.extend_from_slice(&[0, 0, 0, 0]);
    } else {
        out.extend_from_slice(&[0, 0, 0, 6]);
        out.extend_from_slice(&[update::flags::OPTIONAL, update::attr::MP_UNREACH_NLRI, 3]);
        out.extend_from_slice(&family.afi.to_be_bytes());
        out.push(family.safi);
    }
    finish_message(out, start);
}

impl Notification {
    /// Reads a NOTIFICATION body.
    pub fn parse(body: &[u8]) -> Result<Self, ProtocolError> {
        match body {
            [code, subcode, data @ ..] => Ok(Notification {
                code: *code,
                subcode: *subcode,
                data: data.to_vec(),
            }),
            _ => Err(ProtocolError::BadMessageLength(
                (HEADER_LEN + body.len()) as u16,
            )),
        }
    }

    /// Appends the NOTIFICATION, with its data cut to fit one message.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = begin_message(out, MessageType::Notification);
        out.extend_from_slice(&[self.code, self.subcode]);
        let room = MAX_MESSAGE_LEN - HEADER_LEN - 2;
        out.extend_from_slice(&self.data[..self.data.len().min(room)]);
        finish_message(out, start);
    }
}

/// Reads a ROUTE-REFRESH body: the family and the subtype (0 for RFC 2918, 1 and 2 for the
/// enhanced route refresh markers of RFC 7313).
pub fn parse_route_refresh(body: &[u8]) -> Option<(AfiSafi, u8)> {
    match body {
        [a0, a1, subtype, safi] => Some((
            AfiSafi {
                afi: u16::from_be_bytes([*a0, *a1]),
                safi: *safi,
            },
            *subtype,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u16, kind: u8) -> Vec<u8> {
        let mut m = vec![0xff; 16];
        m.extend_from_slice(&len.to_be_bytes());
        m.push(kind);
        m
    }

    #[test]
    fn keepalive_frames_and_partial_input_asks_for_more() {
        let mut out = Vec::new();
        emit_keepalive(&mut out);
        assert_eq!(out, header(19, 4));
        assert_eq!(
            Message::new_unchecked(&out).check(),
            Ok(Some((MessageType::Keepalive, 19)))
        );
        assert_eq!(Message::new_unchecked(&out[..18]).check(), Ok(None));
        let mut open = header(29, 1);
        open.extend_from_slice(&[4, 0]);
        assert_eq!(Message::new_unchecked(&open).check(), Ok(None));
    }

    #[test]
    fn header_errors_map_to_rfc_4271_codes() {
        let mut bad_marker = header(19, 4);
        bad_marker[3] = 0;
        let err = Message::new_unchecked(&bad_marker).check().unwrap_err();
        assert_eq!(
            (err.notification().code, err.notification().subcode),
            (1, 1)
        );

        for (len, kind) in [
            (18u16, 4u8),
            (20, 4),
            (4097, 2),
            (22, 2),
            (28, 1),
            (24, 5),
            (20, 3),
        ] {
            let err = Message::new_unchecked(header(len, kind))
                .check()
                .unwrap_err();
            let n = err.notification();
            assert_eq!(
                (n.code, n.subcode, n.data.clone()),
                (1, 2, len.to_be_bytes().to_vec()),
                "{len} {kind}"
            );
        }
        let n = Message::new_unchecked(header(19, 9))
            .check()
            .unwrap_err()
            .notification();
        assert_eq!((n.code, n.subcode, n.data), (1, 3, vec![9]));
    }

    #[test]
    fn notification_and_route_refresh_round_trip() {
        let n = Notification {
            code: 6,
            subcode: 2,
            data: b"bye".to_vec(),
        };
        let mut out = Vec::new();
        n.emit(&mut out);
        let msg = Message::new_unchecked(&out);
        assert_eq!(msg.check(), Ok(Some((MessageType::Notification, 24))));
        assert_eq!(Notification::parse(msg.body()), Ok(n));

        out.clear();
        emit_route_refresh(&mut out, AfiSafi::VPN_IPV6);
        let msg = Message::new_unchecked(&out);
        assert_eq!(msg.check(), Ok(Some((MessageType::RouteRefresh, 23))));
        assert_eq!(
            parse_route_refresh(msg.body()),
            Some((AfiSafi::VPN_IPV6, 0))
        );
    }
}
