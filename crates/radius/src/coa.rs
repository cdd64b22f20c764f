//! Answers to Dynamic Authorization requests (RFC 5176): the ACK or NAK of a CoA-Request or
//! Disconnect-Request.

use crate::attr::{ERROR_CAUSE, PROXY_STATE};
use crate::{Code, ErrorCause, Message};

/// The answer to `request`: an ACK when `cause` is `None`, else a NAK with that Error-Cause;
/// same Identifier, Proxy-State copied (RFC 5176 §3). `None` when `request` is neither a
/// CoA-Request nor a Disconnect-Request. The shell computes the Response Authenticator (and
/// Message-Authenticator) when it encodes it.
pub fn answer(request: &Message, cause: Option<ErrorCause>) -> Option<Message> {
    let (ack, nak) = match request.code {
        Code::CoaRequest => (Code::CoaAck, Code::CoaNak),
        Code::DisconnectRequest => (Code::DisconnectAck, Code::DisconnectNak),
        _ => return None,
    };
    let mut reply = Message::new(if cause.is_some() { nak } else { ack }, request.identifier);
    if let Some(cause) = cause {
        reply.add_fixed(ERROR_CAUSE, cause.to_value());
    }
    reply.copy_all(PROXY_STATE, request);
    Some(reply)
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
    }
}
