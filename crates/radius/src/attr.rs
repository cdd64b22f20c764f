//! The RADIUS vocabulary brasa's own code reads and writes: attribute type numbers (RFC 2865,
//! 2866, 2869, 3162, 3579, 4818, 5176, 6911) and the enumerated values of Acct-Status-Type and
//! Error-Cause.
//!
//! Everything else (vendor attributes, operator-chosen attributes) goes through the
//! [`crate::Dictionary`]; these are the numbers the engine, the subscriber manager and the tools
//! need without a dictionary lookup on every packet.

/// User-Name (RFC 2865 §5.1).
pub const USER_NAME: u8 = 1;
/// User-Password (RFC 2865 §5.2), hidden with the shared secret.
pub const USER_PASSWORD: u8 = 2;
/// CHAP-Password (RFC 2865 §5.3).
pub const CHAP_PASSWORD: u8 = 3;
/// NAS-IP-Address (RFC 2865 §5.4).
pub const NAS_IP_ADDRESS: u8 = 4;
/// NAS-Port (RFC 2865 §5.5).
pub const NAS_PORT: u8 = 5;
/// Service-Type (RFC 2865 §5.6).
pub const SERVICE_TYPE: u8 = 6;
/// Framed-IP-Address (RFC 2865 §5.8).
pub const FRAMED_IP_ADDRESS: u8 = 8;
/// Reply-Message (RFC 2865 §5.18).
pub const REPLY_MESSAGE: u8 = 18;
/// State (RFC 2865 §5.24).
pub const STATE: u8 = 24;
/// Class (RFC 2865 §5.25).
pub const CLASS: u8 = 25;
/// Vendor-Specific (RFC 2865 §5.26).
pub const VENDOR_SPECIFIC: u8 = 26;
/// Session-Timeout (RFC 2865 §5.27).
pub const SESSION_TIMEOUT: u8 = 27;
/// Called-Station-Id (RFC 2865 §5.30).
pub const CALLED_STATION_ID: u8 = 30;
/// Calling-Station-Id (RFC 2865 §5.31).
pub const CALLING_STATION_ID: u8 = 31;
/// NAS-Identifier (RFC 2865 §5.32).
pub const NAS_IDENTIFIER: u8 = 32;
/// Proxy-State (RFC 2865 §5.33): added by a proxy, echoed unmodified by the server.
pub const PROXY_STATE: u8 = 33;
/// Acct-Status-Type (RFC 2866 §5.1); values in [`AcctStatusType`].
pub const ACCT_STATUS_TYPE: u8 = 40;
/// Acct-Session-Id (RFC 2866 §5.5).
pub const ACCT_SESSION_ID: u8 = 44;
/// Acct-Input-Octets (RFC 2866 §5.3).
pub const ACCT_INPUT_OCTETS: u8 = 42;
/// Acct-Output-Octets (RFC 2866 §5.4).
pub const ACCT_OUTPUT_OCTETS: u8 = 43;
/// Acct-Session-Time (RFC 2866 §5.7).
pub const ACCT_SESSION_TIME: u8 = 46;
/// Acct-Input-Packets (RFC 2866 §5.8).
pub const ACCT_INPUT_PACKETS: u8 = 47;
/// Acct-Output-Packets (RFC 2866 §5.9).
pub const ACCT_OUTPUT_PACKETS: u8 = 48;
/// Acct-Terminate-Cause (RFC 2866 §5.10); values in [`AcctTerminateCause`].
pub const ACCT_TERMINATE_CAUSE: u8 = 49;
/// Acct-Multi-Session-Id (RFC 2866 §5.11).
pub const ACCT_MULTI_SESSION_ID: u8 = 50;
/// Acct-Input-Gigawords (RFC 2869 §5.1).
pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
/// Acct-Output-Gigawords (RFC 2869 §5.2).
pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
/// Event-Timestamp (RFC 2869 §5.3).
pub const EVENT_TIMESTAMP: u8 = 55;
/// CHAP-Challenge (RFC 2865 §5.40).
pub const CHAP_CHALLENGE: u8 = 60;
/// NAS-Port-Type (RFC 2865 §5.41).
pub const NAS_PORT_TYPE: u8 = 61;
/// EAP-Message (RFC 3579 §3.1): a request carrying it must carry a Message-Authenticator.
pub const EAP_MESSAGE: u8 = 79;
/// Message-Authenticator (RFC 3579 §3.2): HMAC-MD5 over the packet.
pub const MESSAGE_AUTHENTICATOR: u8 = 80;
/// NAS-Port-Id (RFC 2869 §5.17).
pub const NAS_PORT_ID: u8 = 87;
/// Framed-IPv6-Prefix (RFC 3162 §2.3).
pub const FRAMED_IPV6_PREFIX: u8 = 97;
/// Error-Cause (RFC 5176 §3.6); values in [`ErrorCause`].
pub const ERROR_CAUSE: u8 = 101;
/// Delegated-IPv6-Prefix (RFC 4818 §3).
pub const DELEGATED_IPV6_PREFIX: u8 = 123;
/// Framed-IPv6-Address (RFC 6911 §3.1).
pub const FRAMED_IPV6_ADDRESS: u8 = 168;

/// Reads a 4-octet `integer` attribute value; `None` for any other length.
pub fn integer(value: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(value).ok().map(u32::from_be_bytes)
}

/// Splits a tagged `string` value (RFC 2868 §3.1): a first octet up to 0x1F is the tag
/// (0 = untagged), anything greater is already data (tag 0).
pub fn tagged_string(value: &[u8]) -> (u8, &[u8]) {
    match value.split_first() {
        Some((&tag @ 0x00..=0x1f, data)) => (tag, data),
        _ => (0, value),
    }
}

/// Splits a tagged `integer` value (RFC 2868 §3.1): the tag in the first octet, the value in
/// the other three; `None` for another length or a first octet that is no tag.
pub fn tagged_integer(value: &[u8]) -> Option<(u8, u32)> {
    let [tag, a, b, c] = <[u8; 4]>::try_from(value).ok()?;
    (tag <= 0x1f).then(|| (tag, u32::from_be_bytes([0, a, b, c])))
}

/// Defines an enumeration of `integer` attribute values with their dictionary names, keeping
/// values it does not know in `Other`.
macro_rules! integer_values {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:literal, $text:literal;)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A value without a name here, kept as received.
            Other(u32),
        }

        impl From<u32> for $name {
            fn from(value: u32) -> Self {
                match value {
                    $($value => Self::$variant,)*
                    other => Self::Other(other),
                }
            }
        }

        impl From<$name> for u32 {
            fn from(value: $name) -> u32 {
                match value {
                    $($name::$variant => $value,)*
                    $name::Other(other) => other,
                }
            }
        }

        impl $name {
            /// The name the RFC dictionaries give the value (`None` for [`Self::Other`]).
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $(Self::$variant => Some($text),)*
                    Self::Other(_) => None,
                }
            }

            /// Decodes the attribute's 4-octet value; `None` for any other length.
            pub fn from_value(value: &[u8]) -> Option<Self> {
                integer(value).map(Self::from)
            }

            /// The attribute value as it goes on the wire.
            pub fn to_value(self) -> [u8; 4] {
                u32::from(self).to_be_bytes()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self.name() {
                    Some(name) => f.write_str(name),
                    None => write!(f, "{}", u32::from(*self)),
                }
            }
        }
    };
}

integer_values! {
    /// Acct-Status-Type values (RFC 2866 §5.1).
    AcctStatusType {
        /// The session starts.
        Start = 1, "Start";
        /// The session ended.
        Stop = 2, "Stop";
        /// The session goes on (RFC 2869 §2.1).
        InterimUpdate = 3, "Interim-Update";
        /// The NAS starts accounting (all its sessions are new).
        AccountingOn = 7, "Accounting-On";
        /// The NAS stops accounting (all its sessions ended).
        AccountingOff = 8, "Accounting-Off";
    }
}

integer_values! {
    /// Acct-Terminate-Cause values (RFC 2866 §5.10).
    AcctTerminateCause {
        /// 1: the user asked.
        UserRequest = 1, "User-Request";
        /// 2: the carrier was lost.
        LostCarrier = 2, "Lost-Carrier";
        /// 3: the service can no longer be provided.
        LostService = 3, "Lost-Service";
        /// 4: the idle timeout expired.
        IdleTimeout = 4, "Idle-Timeout";
        /// 5: the session timeout expired.
        SessionTimeout = 5, "Session-Timeout";
        /// 6: an administrator ended the session (a CoA or Disconnect, a clear command).
        AdminReset = 6, "Admin-Reset";
        /// 7: the NAS restarts.
        AdminReboot = 7, "Admin-Reboot";
        /// 8: a port error.
        PortError = 8, "Port-Error";
        /// 9: the NAS ended the session on an error.
        NasError = 9, "NAS-Error";
        /// 10: the NAS ended the session for a non-error reason.
        NasRequest = 10, "NAS-Request";
        /// 11: the NAS rebooted on a crash.
        NasReboot = 11, "NAS-Reboot";
        /// 15: the service is no longer available.
        ServiceUnavailable = 15, "Service-Unavailable";
    }
}

integer_values! {
    /// Error-Cause values of CoA and Disconnect answers (RFC 5176 §3.6).
    ErrorCause {
        /// 201: the session context was removed.
        ResidualContextRemoved = 201, "Residual-Context-Removed";
        /// 202: an EAP packet was ignored.
        InvalidEapPacket = 202, "Invalid-EAP-Packet";
        /// 401
        UnsupportedAttribute = 401, "Unsupported-Attribute";
        /// 402
        MissingAttribute = 402, "Missing-Attribute";
        /// 403
        NasIdentificationMismatch = 403, "NAS-Identification-Mismatch";
        /// 404
        InvalidRequest = 404, "Invalid-Request";
        /// 405
        UnsupportedService = 405, "Unsupported-Service";
        /// 406
        UnsupportedExtension = 406, "Unsupported-Extension";
        /// 407
        InvalidAttributeValue = 407, "Invalid-Attribute-Value";
        /// 501
        AdministrativelyProhibited = 501, "Administratively-Prohibited";
        /// 502: a proxy could not route the request.
        RequestNotRoutable = 502, "Request-Not-Routable";
        /// 503: no session matches the request.
        SessionContextNotFound = 503, "Session-Context-Not-Found";
        /// 504
        SessionContextNotRemovable = 504, "Session-Context-Not-Removable";
        /// 505
        OtherProxyProcessingError = 505, "Other-Proxy-Processing-Error";
        /// 506
        ResourcesUnavailable = 506, "Resources-Unavailable";
        /// 507
        RequestInitiated = 507, "Request-Initiated";
        /// 508
        MultipleSessionSelectionUnsupported = 508, "Multiple-Session-Selection-Unsupported";
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dictionary;

    #[test]
    fn names_and_numbers_agree_with_the_builtin_dictionary() {
        let dict = Dictionary::builtin();
        for (attribute, number) in [
            ("User-Name", USER_NAME),
            ("NAS-IP-Address", NAS_IP_ADDRESS),
            ("Framed-IP-Address", FRAMED_IP_ADDRESS),
            ("Proxy-State", PROXY_STATE),
            ("Acct-Status-Type", ACCT_STATUS_TYPE),
            ("Acct-Session-Id", ACCT_SESSION_ID),
            ("Acct-Input-Octets", ACCT_INPUT_OCTETS),
            ("Acct-Output-Octets", ACCT_OUTPUT_OCTETS),
            ("Acct-Session-Time", ACCT_SESSION_TIME),
            ("Acct-Input-Packets", ACCT_INPUT_PACKETS),
            ("Acct-Output-Packets", ACCT_OUTPUT_PACKETS),
            ("Acct-Terminate-Cause", ACCT_TERMINATE_CAUSE),
            ("Acct-Multi-Session-Id", ACCT_MULTI_SESSION_ID),
            ("Acct-Input-Gigawords", ACCT_INPUT_GIGAWORDS),
            ("Acct-Output-Gigawords", ACCT_OUTPUT_GIGAWORDS),
            ("EAP-Message", EAP_MESSAGE),
            ("Message-Authenticator", MESSAGE_AUTHENTICATOR),
            ("Error-Cause", ERROR_CAUSE),
            ("Framed-IPv6-Address", FRAMED_IPV6_ADDRESS),
            ("Delegated-IPv6-Prefix", DELEGATED_IPV6_PREFIX),
        ] {
            let def = dict.attribute(attribute).unwrap();
            assert_eq!(def.id, crate::AttrId::Standard(number), "{attribute}");
        }
        let status = dict.attribute("Acct-Status-Type").unwrap();
        for value in [1, 2, 3, 7, 8] {
            let typed = AcctStatusType::from(value);
            assert_eq!(typed.name(), dict.value_name(status, u64::from(value)));
        }
        let cause = dict.attribute("Error-Cause").unwrap();
        for value in [
            201, 202, 401, 402, 403, 404, 405, 406, 407, 501, 502, 503, 504, 505, 506,
        ] {
            let typed = ErrorCause::from(value);
            assert_eq!(typed.name(), dict.value_name(cause, u64::from(value)));
            assert_eq!(u32::from(typed), value);
        }
        let terminate = dict.attribute("Acct-Terminate-Cause").unwrap();
        for value in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 15] {
            let typed = AcctTerminateCause::from(value);
            assert_eq!(typed.name(), dict.value_name(terminate, u64::from(value)));
        }
    }

    #[test]
    fn tags_are_split_as_rfc_2868_has_them() {
        assert_eq!(tagged_string(b"\x01gold"), (1, &b"gold"[..]));
        assert_eq!(tagged_string(b"gold"), (0, &b"gold"[..]));
        assert_eq!(tagged_string(b""), (0, &b""[..]));
        assert_eq!(tagged_integer(&[2, 0, 1, 0]), Some((2, 256)));
        assert_eq!(tagged_integer(&[0x20, 0, 1, 0]), None);
        assert_eq!(tagged_integer(&[1, 0, 1]), None);
    }

    #[test]
    fn unknown_values_are_kept() {
        assert_eq!(AcctStatusType::from(15), AcctStatusType::Other(15));
        assert_eq!(u32::from(AcctStatusType::Other(15)), 15);
        assert_eq!(AcctStatusType::Other(15).to_string(), "15");
        assert_eq!(
            AcctStatusType::from_value(&[0, 0, 0, 3]),
            Some(AcctStatusType::InterimUpdate)
        );
        assert_eq!(AcctStatusType::from_value(&[0, 0, 3]), None);
        assert_eq!(
            ErrorCause::SessionContextNotFound.to_value(),
            [0, 0, 1, 247]
        );
    }
}
