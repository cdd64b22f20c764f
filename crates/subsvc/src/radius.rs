//! The Alc-Sub-Serv-* attributes of an Access-Accept or CoA-Request (the script's
//! parameters) and the answer to a CoA-Request that activates or deactivates services.
//!
//! Each tag is one service instance to activate or deactivate: the Alc-Sub-Serv-Activate
//! (or -Deactivate) values of one tag are concatenated in order (a parameter list may cross
//! an attribute boundary), Alc-Sub-Serv-Acct-Stats-Type and -Acct-Interim-Ivl are one per
//! tag.

use brasa_radius::attr::{tagged_integer, tagged_string, VENDOR_SPECIFIC};
use brasa_radius::vsa::vsa_split;
use brasa_radius::{ErrorCause, Message, VendorFormat};
use thiserror::Error;

use crate::model::AcctStatsType;
use crate::services::ServiceError;

/// Alcatel-Lucent-Service-Router (Nokia) vendor id.
pub const VENDOR_ALCATEL: u32 = 6527;
/// Alc-Sub-Serv-Activate (26-6527-151, tagged string).
pub const ALC_SUB_SERV_ACTIVATE: u32 = 151;
/// Alc-Sub-Serv-Deactivate (26-6527-152, tagged string).
pub const ALC_SUB_SERV_DEACTIVATE: u32 = 152;
/// Alc-Sub-Serv-Acct-Stats-Type (26-6527-153, tagged integer: 1 off, 2 volume-time, 3 time).
pub const ALC_SUB_SERV_ACCT_STATS_TYPE: u32 = 153;
/// Alc-Sub-Serv-Acct-Interim-Ivl (26-6527-154, tagged integer, seconds).
pub const ALC_SUB_SERV_ACCT_INTERIM_IVL: u32 = 154;

/// The Alc-Sub-Serv-* attributes of one tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubSvcParams {
    /// The RADIUS tag (0 = untagged).
    pub tag: u8,
    /// The Alc-Sub-Serv-Activate values of the tag, concatenated.
    pub activate: Option<String>,
    /// The Alc-Sub-Serv-Deactivate values of the tag, concatenated.
    pub deactivate: Option<String>,
    /// Alc-Sub-Serv-Acct-Stats-Type.
    pub acct_stats_type: Option<AcctStatsType>,
    /// Alc-Sub-Serv-Acct-Interim-Ivl, seconds.
    pub acct_interim_ivl: Option<u32>,
}

/// Why the Alc-Sub-Serv-* attributes cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParamsError {
    /// A tagged integer that is not 4 octets with a tag first.
    #[error("vendor attribute 26-6527-{typ}: malformed tagged integer")]
    MalformedInteger {
        /// The vendor type.
        typ: u32,
    },
    /// A string that is not UTF-8.
    #[error("vendor attribute 26-6527-{typ} (tag {tag}): not UTF-8")]
    NotUtf8 {
        /// The vendor type.
        typ: u32,
        /// The tag.
        tag: u8,
    },
    /// An Alc-Sub-Serv-Acct-Stats-Type value other than 1, 2, 3.
    #[error("Alc-Sub-Serv-Acct-Stats-Type:{tag} = {value}: expected 1 (off), 2 (volume-time) or 3 (time)")]
    UnknownStatsType {
        /// The tag.
        tag: u8,
        /// The value.
        value: u32,
    },
    /// A one-per-tag attribute given twice for a tag.
    #[error("vendor attribute 26-6527-{typ} given twice for tag {tag}")]
    Repeated {
        /// The vendor type.
        typ: u32,
        /// The tag.
        tag: u8,
    },
}

impl ParamsError {
    /// The Error-Cause of the CoA-NAK: Invalid-Attribute-Value (407).
    pub fn error_cause(&self) -> ErrorCause {
        ErrorCause::InvalidAttributeValue
    }
}

/// The Alc-Sub-Serv-* attributes of `message` grouped by tag, in order of first
/// appearance. Vendor-Specific attributes of other vendors, or malformed ones, are skipped;
/// a malformed Alc-Sub-Serv-* value is an error, never a panic.
pub fn sub_svc_params(message: &Message) -> Result<Vec<SubSvcParams>, ParamsError> {
    let mut groups: Vec<SubSvcParams> = Vec::new();
    for value in message.attributes.all(VENDOR_SPECIFIC) {
        let Some(subs) = vsa_split(value, VENDOR_ALCATEL, VendorFormat::default()) else {
            continue;
        };
        for sub in subs {
            let typ = sub.typ;
            if !(ALC_SUB_SERV_ACTIVATE..=ALC_SUB_SERV_ACCT_INTERIM_IVL).contains(&typ) {
                continue;
            }
            let group = |groups: &mut Vec<SubSvcParams>, tag: u8| -> usize {
                groups.iter().position(|g| g.tag == tag).unwrap_or_else(|| {
                    groups.push(SubSvcParams {
                        tag,
                        ..SubSvcParams::default()
                    });
                    groups.len() - 1
                })
            };
            match typ {
                ALC_SUB_SERV_ACTIVATE | ALC_SUB_SERV_DEACTIVATE => {
                    let (tag, data) = tagged_string(sub.value);
                    let text =
                        std::str::from_utf8(data).map_err(|_| ParamsError::NotUtf8 { typ, tag })?;
                    let index = group(&mut groups, tag);
                    let slot = if typ == ALC_SUB_SERV_ACTIVATE {
                        &mut groups[index].activate
                    } else {
                        &mut groups[index].deactivate
                    };
                    slot.get_or_insert_with(String::new).push_str(text);
                }
                _ => {
                    let (tag, value) =
                        tagged_integer(sub.value).ok_or(ParamsError::MalformedInteger { typ })?;
                    let index = group(&mut groups, tag);
                    let params = &mut groups[index];
                    let repeated = if typ == ALC_SUB_SERV_ACCT_STATS_TYPE {
                        let stats = AcctStatsType::from_wire(value)
                            .ok_or(ParamsError::UnknownStatsType { tag, value })?;
                        params.acct_stats_type.replace(stats).is_some()
                    } else {
                        params.acct_interim_ivl.replace(value).is_some()
                    };
                    if repeated {
                        return Err(ParamsError::Repeated { typ, tag });
                    }
                }
            }
        }
    }
    Ok(groups)
}

/// Why a CoA-Request about subscriber services is refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoaRefusal {
    /// Its Alc-Sub-Serv-* attributes cannot be read.
    #[error("CoA-Request: {0}")]
    Params(#[from] ParamsError),
    /// The subscriber services script failed (its message says why); what it committed is
    /// not applied.
    #[error("CoA-Request: the subscriber services script failed: {0}")]
    Script(String),
    /// A committed service was refused.
    #[error("CoA-Request: {0}")]
    Service(#[from] ServiceError),
}

impl CoaRefusal {
    /// The Error-Cause of the NAK: Invalid-Attribute-Value (407) for unreadable attributes;
    /// Invalid-Request (404) for a failed script, an invalid service or a conflict;
    /// Session-Context-Not-Found (503) for the deactivation of a service that is not
    /// active; Resources-Unavailable (506) past the subscriber's dynamic policers.
    pub fn error_cause(&self) -> ErrorCause {
        match self {
            Self::Params(e) => e.error_cause(),
            Self::Script(_) => ErrorCause::InvalidRequest,
            Self::Service(ServiceError::NotActive(_)) => ErrorCause::SessionContextNotFound,
            Self::Service(ServiceError::TooManyPolicers { .. }) => ErrorCause::ResourcesUnavailable,
            Self::Service(_) => ErrorCause::InvalidRequest,
        }
    }

    /// The CoA-NAK (or Disconnect-NAK) answering `request`, with [`Self::error_cause`] and
    /// its Proxy-States; `None` when `request` is neither kind of request.
    pub fn answer(&self, request: &Message) -> Option<Message> {
        brasa_radius::coa::answer(request, Some(self.error_cause()))
    }
}
