//! Answers to Dynamic Authorization requests (RFC 5176): the ACK or NAK of a CoA-Request or
//! Disconnect-Request.

use crate::attr::{ERROR_CAUSE, PROXY_STATE};
use crate::{Code, ErrorCause, Message};

/// Which of the two RFC 5176 requests is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// CoA-Request (43), answered by CoA-ACK or CoA-NAK.
    Coa,
    /// Disconnect-Request (40), answered by Disconnect-ACK or Disconnect-NAK.
    Disconnect,
}

impl RequestKind {
    /// The kind of a request code; `None` for any other code.
    pub fn of(code: Code) -> Option<Self> {
        match code {
            Code::CoaRequest => Some(Self::Coa),
            Code::DisconnectRequest => Some(Self::Disconnect),
            _ => None,
        }
    }

    /// The answer to `request`, a request of this kind: an ACK when `cause` is `None`, else a
    /// NAK with that Error-Cause; same Identifier, Proxy-State copied (RFC 5176 §3). The shell
    /// computes the Response Authenticator (and Message-Authenticator) when it encodes it.
    pub fn answer(self, request: &Message, cause: Option<ErrorCause>) -> Message {
        let code = match (self, cause) {
            (Self::Coa, None) => Code::CoaAck,
            (Self::Coa, Some(_)) => Code::CoaNak,
            (Self::Disconnect, None) => Code::DisconnectAck,
            (Self::Disconnect, Some(_)) => Code::DisconnectNak,
        };
        let mut reply = Message::new(code, request.identifier);
        if let Some(cause) = cause {
            reply.add_fixed(ERROR_CAUSE, cause.to_value());
        }
        reply.copy_all(PROXY_STATE, request);
        reply
    }
}

/// The answer to `request` (see [`RequestKind::answer`]); `None` when `request` is neither a
/// CoA-Request nor a Disconnect-Request.
pub fn answer(request: &Message, cause: Option<ErrorCause>) -> Option<Message> {
    Some(RequestKind::of(request.code)?.answer(request, cause))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nak_carries_the_cause_and_the_proxy_states() {
        let mut request = Message::new(Code::CoaRequest, 9);
        request.add(PROXY_STATE, b"a").unwrap();
        request.add(PROXY_STATE, b"b").unwrap();
        let nak = answer(&request, Some(ErrorCause::InvalidRequest)).unwrap();
        assert_eq!((nak.code, nak.identifier), (Code::CoaNak, 9));
        assert_eq!(
            ErrorCause::from_value(nak.get(ERROR_CAUSE).unwrap()),
            Some(ErrorCause::InvalidRequest)
        );
        assert_eq!(nak.get_all(PROXY_STATE).collect::<Vec<_>>(), [b"a", b"b"]);
        let ack = answer(&request, None).unwrap();
        assert_eq!(ack.code, Code::CoaAck);
        assert!(ack.get(ERROR_CAUSE).is_none());
        request.code = Code::DisconnectRequest;
        assert_eq!(answer(&request, None).unwrap().code, Code::DisconnectAck);
        request.code = Code::AccessAccept;
        assert!(answer(&request, None).is_none());
        assert_eq!(RequestKind::of(Code::CoaRequest), Some(RequestKind::Coa));
        assert_eq!(RequestKind::of(Code::AccessRequest), None);
    }
}
