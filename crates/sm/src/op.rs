//! Operations on the subscriber database (what LEG calls, operator commands, RADIUS events and
//! EP state writes turn into), their errors, and how they apply to the index.

use brasa_subscriber::{
    ChangeSet, IndexError, Login, Mapping, MplsVpnId, Prefix, Subscriber, SubscriberIndex, Vpn,
};
use brasa_subsvc::{ServiceError, ServiceRequest};

/// One change request, validated syntactically (the index checks the rest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A login event; `auto_logout_after` is relative (seconds from now).
    Login {
        /// The login.
        login: Login,
        /// Seconds until the automatic logout.
        auto_logout_after: Option<u64>,
    },
    /// Logout by name (in a domain when given).
    Logout {
        /// Subscriber name.
        name: String,
        /// Required domain.
        domain: Option<String>,
    },
    /// Logout of whoever holds exactly this mapping.
    LogoutByMapping(Mapping),
    /// Create (or with `replace`, create or replace) a subscriber.
    Add {
        /// The record.
        subscriber: Subscriber,
        /// Replace an existing record of the same name.
        replace: bool,
    },
    /// Delete a subscriber.
    Remove(String),
    /// Set policy properties.
    SetProperties {
        /// Subscriber name.
        name: String,
        /// Properties, in order.
        properties: Vec<(String, String)>,
    },
    /// Replace the EP-owned state.
    SetState {
        /// Subscriber name.
        name: String,
        /// Opaque bytes.
        state: Vec<u8>,
    },
    /// Activate (and deactivate, for requests of operation `delete`) subscriber services of
    /// one message, in order, all or nothing.
    ActivateServices {
        /// Subscriber name.
        name: String,
        /// Create a missing subscriber, logged out, in this domain (an Access-Accept's
        /// services arrive before the accounting Start that logs the subscriber in); `None`:
        /// a missing subscriber is an error.
        create_in: Option<String>,
        /// The requests, in order.
        requests: Vec<ServiceRequest>,
    },
    /// Deactivate subscriber services by name, all or nothing.
    DeactivateServices {
        /// Subscriber name.
        name: String,
        /// The service instance names.
        services: Vec<String>,
    },
    /// Add a VPN.
    AddVpn(Vpn),
    /// Remove an unused VPN.
    RemoveVpn(String),
    /// Add `RT/RD@PE-IP` entries to an MPLS/VPN.
    AddMplsEntries {
        /// The VPN.
        vpn: String,
        /// The entries.
        entries: Vec<MplsVpnId>,
    },
    /// Remove `RT/RD@PE-IP` entries from an MPLS/VPN.
    RemoveMplsEntries {
        /// The VPN.
        vpn: String,
        /// The entries.
        entries: Vec<MplsVpnId>,
    },
    /// BGP LEG: ranges of a downstream label.
    SetMplsLabel {
        /// The `RT/RD@PE-IP`.
        id: MplsVpnId,
        /// The label.
        label: u32,
        /// Its ranges.
        ranges: Vec<Prefix>,
    },
    /// BGP LEG: withdraw a label.
    RemoveMplsLabel {
        /// The `RT/RD@PE-IP`.
        id: MplsVpnId,
        /// The label.
        label: u32,
    },
}

/// gRPC status classes of the SM's answers (the shell maps them onto its transport).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ErrorKind {
    /// The request is malformed or names something that cannot be.
    InvalidArgument,
    /// The named subscriber, mapping, VPN or EP does not exist.
    NotFound,
    /// The subscriber, VPN or exact mapping already exists or belongs to another.
    AlreadyExists,
    /// The state does not allow it (VPN in use, wrong domain, not quarantined).
    FailedPrecondition,
    /// The index is full.
    ResourceExhausted,
    /// The SM cannot make changes durable (store failure) or refuses the EP for now.
    Unavailable,
    /// A bug or an unexpected failure.
    Internal,
}

impl ErrorKind {
    /// The numeric gRPC code.
    pub fn grpc_code(self) -> i32 {
        match self {
            ErrorKind::InvalidArgument => 3,
            ErrorKind::NotFound => 5,
            ErrorKind::AlreadyExists => 6,
            ErrorKind::FailedPrecondition => 9,
            ErrorKind::ResourceExhausted => 8,
            ErrorKind::Unavailable => 14,
            ErrorKind::Internal => 13,
        }
    }
}

/// Why a request was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SmError {
    /// The status class.
    pub kind: ErrorKind,
    /// What is wrong, precisely.
    pub message: String,
}

impl SmError {
    /// A malformed request.
    pub fn invalid(message: impl Into<String>) -> Self {
        SmError {
            kind: ErrorKind::InvalidArgument,
            message: message.into(),
        }
    }

    /// Something named does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        SmError {
            kind: ErrorKind::NotFound,
            message: message.into(),
        }
    }

    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        SmError {
            kind,
            message: message.into(),
        }
    }
}

impl From<IndexError> for SmError {
    fn from(e: IndexError) -> Self {
        let kind = match &e {
            IndexError::UnknownSubscriber(_)
            | IndexError::NoSuchMapping(_)
            | IndexError::UnknownMplsVpn(_) => ErrorKind::NotFound,
            IndexError::SubscriberExists(_)
            | IndexError::VpnExists(_)
            | IndexError::MappingTaken { .. } => ErrorKind::AlreadyExists,
            IndexError::VpnInUse { .. } | IndexError::NotInDomain { .. } => {
                ErrorKind::FailedPrecondition
            }
            IndexError::Full => ErrorKind::ResourceExhausted,
            IndexError::ServiceRefused { source, .. } => match source {
                ServiceError::Invalid(_) => ErrorKind::InvalidArgument,
                ServiceError::NameInUse(_) | ServiceError::RuleNameInUse { .. } => {
                    ErrorKind::AlreadyExists
                }
                ServiceError::TypeConflict { .. } => ErrorKind::FailedPrecondition,
                ServiceError::TooManyPolicers { .. } => ErrorKind::ResourceExhausted,
                ServiceError::NotActive(_) => ErrorKind::NotFound,
            },
            _ => ErrorKind::InvalidArgument,
        };
        SmError::new(kind, e.to_string())
    }
}

impl Op {
    /// Applies the operation to `index`; `unix_now` turns a relative auto-logout into the
    /// absolute time the index keeps.
    pub fn apply(self, index: &mut SubscriberIndex, unix_now: u64) -> Result<ChangeSet, SmError> {
        let changes = match self {
            Op::Login {
                mut login,
                auto_logout_after,
            } => {
                login.auto_logout = auto_logout_after.map(|s| unix_now.saturating_add(s));
                index.login(login)?
            }
            Op::Logout { name, domain } => index.logout(&name, domain.as_deref())?,
            Op::LogoutByMapping(m) => index.logout_by_mapping(&m)?,
            Op::Add {
                subscriber,
                replace: false,
            } => index.add(subscriber)?,
            Op::Add {
                subscriber,
                replace: true,
            } => index.upsert(subscriber)?,
            Op::Remove(name) => index.remove(&name)?,
            Op::SetProperties { name, properties } => index.set_properties(&name, properties)?,
            Op::SetState { name, state } => index.set_state(&name, state)?,
            Op::ActivateServices {
                name,
                create_in,
                requests,
            } => index.apply_services(&name, create_in.as_deref(), requests)?,
            Op::DeactivateServices { name, services } => {
                let requests = services
                    .into_iter()
                    .map(|name| ServiceRequest::Delete { name })
                    .collect();
                index.apply_services(&name, None, requests)?
            }
            Op::AddVpn(vpn) => index.add_vpn(vpn)?,
            Op::RemoveVpn(name) => index.remove_vpn(&name)?,
            Op::AddMplsEntries { vpn, entries } => index.add_mpls_entries(&vpn, &entries)?,
            Op::RemoveMplsEntries { vpn, entries } => index.remove_mpls_entries(&vpn, &entries)?,
            Op::SetMplsLabel { id, label, ranges } => index.set_mpls_label(id, label, ranges)?,
            Op::RemoveMplsLabel { id, label } => index.remove_mpls_label(id, label)?,
        };
        Ok(changes)
    }
}
