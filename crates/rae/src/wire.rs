//! The framing shared by the inter-RAE and RAE–CME links: a 5-byte header (one type byte and a
//! 4-byte big-endian body length) followed by a protobuf body.

use crate::proto;
use prost::Message as _;

/// Length of the header.
pub const HEADER_LEN: usize = 5;
/// Largest body accepted; a peer announcing more is closed (a full-table update is split into
/// many smaller messages by the sender).
pub const MAX_BODY_LEN: u32 = 16 * 1024 * 1024;

/// Why bytes could not be read as a message.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header or than the length the header announces.
    #[error("truncated frame")]
    Truncated,
    /// The length field exceeds [`MAX_BODY_LEN`].
    #[error("body length {0} exceeds the limit of {MAX_BODY_LEN} bytes")]
    TooLong(u32),
    /// The type byte names no message of this link.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A keepalive carried a body.
    #[error("keepalive with a {0}-byte body")]
    KeepaliveBody(u32),
    /// The body is not a valid protobuf encoding of the message its type names.
    #[error("malformed {kind} body: {source}")]
    Decode {
        /// The message type being decoded.
        kind: &'static str,
        /// The decoder's reason.
        #[source]
        source: prost::DecodeError,
    },
}

/// A read-only view of one frame over a byte buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without checking it; accessors may then return truncated slices.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after checking that it holds a whole frame within the size limit.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the buffer holds the header and the announced body.
    pub fn check_len(&self) -> Result<(), WireError> {
        let bytes = self.buffer.as_ref();
        if bytes.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = self.body_len();
        if len > MAX_BODY_LEN {
            return Err(WireError::TooLong(len));
        }
        if bytes.len() < HEADER_LEN + len as usize {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// The type byte (0 when the buffer is empty).
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref().first().copied().unwrap_or(0)
    }

    /// The announced body length (0 when the header is truncated).
    pub fn body_len(&self) -> u32 {
        match self.buffer.as_ref().get(1..HEADER_LEN) {
            Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            None => 0,
        }
    }

    /// Header plus body length.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.body_len() as usize
    }

    /// The body (shorter than announced if the buffer is truncated).
    pub fn body(&self) -> &[u8] {
        let bytes = self.buffer.as_ref();
        let end = self.total_len().min(bytes.len());
        bytes.get(HEADER_LEN..end).unwrap_or(&[])
    }
}

/// Looks for a complete frame at the start of `buffer`: `Ok(Some(len))` when one of `len` bytes
/// is there, `Ok(None)` when more bytes are needed, an error when the header is unacceptable.
pub fn check_frame(buffer: &[u8]) -> Result<Option<usize>, WireError> {
    if buffer.len() < HEADER_LEN {
        return Ok(None);
    }
    let frame = Frame::new_unchecked(buffer);
    if frame.body_len() > MAX_BODY_LEN {
        return Err(WireError::TooLong(frame.body_len()));
    }
    Ok((buffer.len() >= frame.total_len()).then(|| frame.total_len()))
}

/// Appends a frame with `msg_type` and `body` to `out`.
pub fn emit_frame(msg_type: u8, body: &impl prost::Message, out: &mut Vec<u8>) {
    let len = body.encoded_len();
    out.reserve(HEADER_LEN + len);
    out.push(msg_type);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    // Encoding into a Vec with reserved capacity cannot fail.
    let _ = body.encode(out);
}

/// A message of the inter-RAE protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum InterRaeMessage {
    /// Session initiation, or its confirmation when sent by the accepting side.
    Open(proto::Open),
    /// "Still alive".
    Keepalive,
    /// Preferred paths.
    Update(proto::Update),
    /// Routes no longer reachable.
    Withdraw(proto::Withdraw),
}

impl InterRaeMessage {
    /// Reads a message from a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Self, WireError> {
        frame.check_len()?;
        let body = frame.body();
        let decode_err = |kind| move |source| WireError::Decode { kind, source };
        match proto::InterRaeType::try_from(i32::from(frame.msg_type())) {
            Ok(proto::InterRaeType::Open) => proto::Open::decode(body)
                .map(Self::Open)
                .map_err(decode_err("open")),
            Ok(proto::InterRaeType::Keepalive) if body.is_empty() => Ok(Self::Keepalive),
            Ok(proto::InterRaeType::Keepalive) => Err(WireError::KeepaliveBody(frame.body_len())),
            Ok(proto::InterRaeType::Update) => proto::Update::decode(body)
                .map(Self::Update)
                .map_err(decode_err("update")),
            Ok(proto::InterRaeType::Withdraw) => proto::Withdraw::decode(body)
                .map(Self::Withdraw)
                .map_err(decode_err("withdraw")),
            _ => Err(WireError::UnknownType(frame.msg_type())),
        }
    }

    /// Appends the framed message to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Self::Open(open) => emit_frame(proto::InterRaeType::Open as u8, open, out),
            Self::Keepalive => emit_frame(proto::InterRaeType::Keepalive as u8, &(), out),
            Self::Update(update) => emit_frame(proto::InterRaeType::Update as u8, update, out),
            Self::Withdraw(withdraw) => {
                emit_frame(proto::InterRaeType::Withdraw as u8, withdraw, out)
            }
        }
    }

    /// Short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Open(_) => "open",
            Self::Keepalive => "keepalive",
            Self::Update(_) => "update",
            Self::Withdraw(_) => "withdraw",
        }
    }
}

/// A message of the RAE–CME link.
#[derive(Debug, Clone, PartialEq)]
pub enum CmeMessage {
    /// RAE → CME report.
    GenericRequest(proto::GenericRequest),
    /// CME → RAE answer.
    Reply(proto::Reply),
}

impl CmeMessage {
    /// Reads a message from a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Self, WireError> {
        frame.check_len()?;
        let body = frame.body();
        match proto::CmeMessageType::try_from(i32::from(frame.msg_type())) {
            Ok(proto::CmeMessageType::CmeGenericRequest) => proto::GenericRequest::decode(body)
                .map(Self::GenericRequest)
                .map_err(|source| WireError::Decode {
                    kind: "GenericRequest",
                    source,
                }),
            Ok(proto::CmeMessageType::CmeReply) => proto::Reply::decode(body)
                .map(Self::Reply)
                .map_err(|source| WireError::Decode {
                    kind: "Reply",
                    source,
                }),
            _ => Err(WireError::UnknownType(frame.msg_type())),
        }
    }

    /// Appends the framed message to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Self::GenericRequest(r) => {
                emit_frame(proto::CmeMessageType::CmeGenericRequest as u8, r, out)
            }
            Self::Reply(r) => emit_frame(proto::CmeMessageType::CmeReply as u8, r, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_is_five_bytes() {
        let mut out = Vec::new();
        InterRaeMessage::Keepalive.emit(&mut out);
        assert_eq!(out, [2, 0, 0, 0, 0]);
        let frame = Frame::new_checked(&out[..]).unwrap();
        assert_eq!(
            InterRaeMessage::parse(&frame).unwrap(),
            InterRaeMessage::Keepalive
        );
    }

    #[test]
    fn open_round_trips_with_exact_bytes() {
        let open = InterRaeMessage::Open(proto::Open {
            as_number: 11,
            hold_time_ms: 3000,
        });
        let mut out = Vec::new();
        open.emit(&mut out);
        // type 1, length 5, field 1 varint 11, field 2 varint 3000 (0xb8 0x17).
        assert_eq!(out, [1, 0, 0, 0, 5, 0x08, 11, 0x10, 0xb8, 0x17]);
        assert_eq!(
            InterRaeMessage::parse(&Frame::new_checked(&out[..]).unwrap()).unwrap(),
            open
        );
    }

    #[test]
    fn check_frame_waits_for_whole_frames_and_rejects_huge_ones() {
        assert_eq!(check_frame(&[3, 0, 0]).unwrap(), None);
        assert_eq!(check_frame(&[3, 0, 0, 0, 2, 0]).unwrap(), None);
        assert_eq!(check_frame(&[3, 0, 0, 0, 2, 0, 0, 9]).unwrap(), Some(7));
        assert!(matches!(
            check_frame(&[3, 0xff, 0, 0, 0]),
            Err(WireError::TooLong(_))
        ));
    }

    #[test]
    fn malformed_frames_are_errors() {
        let unknown = [9u8, 0, 0, 0, 0];
        assert!(matches!(
            InterRaeMessage::parse(&Frame::new_unchecked(&unknown[..])),
            Err(WireError::UnknownType(9))
        ));
        let keepalive_with_body = [2u8, 0, 0, 0, 1, 0];
        assert!(matches!(
            InterRaeMessage::parse(&Frame::new_unchecked(&keepalive_with_body[..])),
            Err(WireError::KeepaliveBody(1))
        ));
        let bad_update = [3u8, 0, 0, 0, 2, 0x0a, 0x05];
        assert!(matches!(
            InterRaeMessage::parse(&Frame::new_unchecked(&bad_update[..])),
            Err(WireError::Decode { .. })
        ));
        let truncated = [3u8, 0, 0, 0, 9, 1];
        assert!(matches!(
            InterRaeMessage::parse(&Frame::new_unchecked(&truncated[..])),
            Err(WireError::Truncated)
        ));
    }
}
