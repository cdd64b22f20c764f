//! RADIUS packet codes (RFC 2865, 2866, 5176, 5997).

use std::fmt;

/// RADIUS packet codes (RFC 2865, 2866, 5176, 5997).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// 1
    AccessRequest,
    /// 2
    AccessAccept,
    /// 3
    AccessReject,
    /// 4
    AccountingRequest,
    /// 5
    AccountingResponse,
    /// 11
    AccessChallenge,
    /// 12
    StatusServer,
    /// 13
    StatusClient,
    /// 40
    DisconnectRequest,
    /// 41
    DisconnectAck,
    /// 42
    DisconnectNak,
    /// 43
    CoaRequest,
    /// 44
    CoaAck,
    /// 45
    CoaNak,
    /// Any other code, kept as received.
    Other(u8),
}

impl From<u8> for Code {
    fn from(code: u8) -> Code {
        match code {
            1 => Code::AccessRequest,
            2 => Code::AccessAccept,
            3 => Code::AccessReject,
            4 => Code::AccountingRequest,
            5 => Code::AccountingResponse,
            11 => Code::AccessChallenge,
            12 => Code::StatusServer,
            13 => Code::StatusClient,
            40 => Code::DisconnectRequest,
            41 => Code::DisconnectAck,
            42 => Code::DisconnectNak,
            43 => Code::CoaRequest,
            44 => Code::CoaAck,
            45 => Code::CoaNak,
            other => Code::Other(other),
        }
    }
}

impl From<Code> for u8 {
    fn from(code: Code) -> u8 {
        match code {
            Code::AccessRequest => 1,
            Code::AccessAccept => 2,
            Code::AccessReject => 3,
            Code::AccountingRequest => 4,
            Code::AccountingResponse => 5,
            Code::AccessChallenge => 11,
            Code::StatusServer => 12,
            Code::StatusClient => 13,
            Code::DisconnectRequest => 40,
            Code::DisconnectAck => 41,
            Code::DisconnectNak => 42,
            Code::CoaRequest => 43,
            Code::CoaAck => 44,
            Code::CoaNak => 45,
            Code::Other(other) => other,
        }
    }
}

impl Code {
    /// The name FreeRADIUS and the RFCs use (`Access-Request`, `CoA-ACK`, ...), if standard.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Code::AccessRequest => "Access-Request",
            Code::AccessAccept => "Access-Accept",
            Code::AccessReject => "Access-Reject",
            Code::AccountingRequest => "Accounting-Request",
            Code::AccountingResponse => "Accounting-Response",
            Code::AccessChallenge => "Access-Challenge",
            Code::StatusServer => "Status-Server",
            Code::StatusClient => "Status-Client",
            Code::DisconnectRequest => "Disconnect-Request",
            Code::DisconnectAck => "Disconnect-ACK",
            Code::DisconnectNak => "Disconnect-NAK",
            Code::CoaRequest => "CoA-Request",
            Code::CoaAck => "CoA-ACK",
            Code::CoaNak => "CoA-NAK",
            Code::Other(_) => return None,
        })
    }

    /// Parses a code name (case-insensitive, as [`Code::name`] or radclient's short forms
    /// `auth`, `acct`, `status`, `coa`, `disconnect`) or a decimal number.
    pub fn from_name(name: &str) -> Option<Code> {
        let number = name.strip_prefix("Code-").unwrap_or(name);
        if let Ok(n) = number.parse::<u8>() {
            return Some(Code::from(n));
        }
        let lower = name.to_ascii_lowercase();
        let short = match lower.as_str() {
            "auth" => Some(Code::AccessRequest),
            "acct" => Some(Code::AccountingRequest),
            "status" => Some(Code::StatusServer),
            "coa" => Some(Code::CoaRequest),
            "disconnect" => Some(Code::DisconnectRequest),
            _ => None,
        };
        short.or_else(|| {
            (1..=255u8)
                .map(Code::from)
                .find(|c| c.name().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        })
    }

    /// Whether the packet is a request whose authenticator is an MD5 over the packet (RFC 2866
    /// §3, RFC 5176 §2.3) rather than a random Request Authenticator.
    pub fn has_signed_request_authenticator(self) -> bool {
        matches!(
            self,
            Code::AccountingRequest | Code::DisconnectRequest | Code::CoaRequest
        )
    }

    /// Whether this code is a request (as opposed to a response to one).
    pub fn is_request(self) -> bool {
        matches!(
            self,
            Code::AccessRequest
                | Code::AccountingRequest
                | Code::StatusServer
                | Code::StatusClient
                | Code::DisconnectRequest
                | Code::CoaRequest
        )
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "Code-{}", u8::from(*self)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_and_numbers_round_trip() {
        for n in 0..=255u8 {
            let code = Code::from(n);
            assert_eq!(u8::from(code), n);
            assert_eq!(Code::from_name(&code.to_string()), Some(code));
        }
        assert_eq!(Code::CoaAck.to_string(), "CoA-ACK");
        assert_eq!(Code::from_name("auth"), Some(Code::AccessRequest));
    }
}
