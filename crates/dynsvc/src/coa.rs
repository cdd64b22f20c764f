//! CoA-Request and Disconnect-Request for data-triggered dynamic services, brasa being the NAS
//! (Nokia SR OS dynamic data services, Table 5 "Dynamic service script actions"; RFC 5176).
//!
//! The shell has verified the request (client, authenticator, Message-Authenticator); here the
//! request's keys and Alc-Dyn-Serv-* attributes become a [`CoaDecision`] for the caller to run
//! (scripts) and apply, or a [`CoaRefusal`] carrying the RFC 5176 Error-Cause of the NAK. The
//! answer of either is built by [`CoaDecision::answer`] or [`CoaRefusal::answer`].
//!
//! Keys, as the guide has them: NAS-Port-Id always targets the dynamic service SAP of that id
//! (the data trigger's own SAP included); an Acct-Session-Id targets the dynamic service SAP it
//! belongs to, or, when it is a data trigger's Acct-Session-Id, the data trigger, whose
//! service is then named by Alc-Dyn-Serv-SAP-Id. Tearing down a data trigger's own SAP tears
//! down every service of that trigger.

use brasa_radius::attr::{ACCT_SESSION_ID, NAS_PORT_ID};
pub use brasa_radius::coa::RequestKind;
use brasa_radius::{ErrorCause, Message};
use brasa_services::{PortMap, SapId};
use thiserror::Error;

use crate::auth::{
    dyn_services_of, resolve_sap, AuthFailure, DynService, RawDynService, ScriptAction,
};
use crate::trigger::{TriggerState, Triggers, MAX_SERVICES_PER_TRIGGER};

/// The dynamic-services-policy a CoA setup without Alc-Dyn-Serv-Policy uses.
pub const DEFAULT_POLICY: &str = "default";

/// What the caller must do for an accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoaAction {
    /// Run the setup script of `service` for the data trigger; on success
    /// [`Triggers::service_created`] associates the new SAP with it.
    Setup {
        /// The data trigger (keyed by its Acct-Session-Id).
        trigger: SapId,
        /// The new service, its parameters resolved like an Access-Accept's.
        service: DynService,
    },
    /// Run the modify script of `service` (and its revert on failure).
    Modify {
        /// The data trigger that owns the service.
        trigger: SapId,
        /// The service with its new parameters.
        service: DynService,
    },
    /// Run the teardown script of one service that is not its trigger's own SAP, then
    /// [`Triggers::service_removed`].
    TeardownService {
        /// The data trigger that owns the service.
        trigger: SapId,
        /// The service SAP.
        service: SapId,
        /// Its Acct-Session-Id.
        acct_session_id: String,
    },
    /// Tear the data trigger down with every service it owns: [`Triggers::clear_trigger`]
    /// returns them, the trigger's own SAP last.
    TeardownTrigger {
        /// The data trigger.
        trigger: SapId,
    },
}

/// An accepted request: what to do, and the kind of answer it will get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoaDecision {
    /// CoA or Disconnect.
    pub kind: RequestKind,
    /// What to run and apply.
    pub action: CoaAction,
}

/// How the caller's run and apply of a [`CoaDecision`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoaOutcome {
    /// Scripts ran and their result is applied.
    Done,
    /// A script failed (nothing of it is applied; a failed modify was reverted).
    ScriptFailed,
    /// The scripts succeeded but their result could not be applied.
    ApplyFailed,
}

impl CoaDecision {
    /// The Error-Cause of a NAK for `outcome`, `None` for an ACK. A teardown that failed
    /// leaves the session in place: Session-Context-Not-Removable (504). A setup or modify
    /// whose script failed on the request's parameters: Invalid-Request (404); one whose
    /// result could not be applied: Resources-Unavailable (506).
    pub fn error_cause(&self, outcome: CoaOutcome) -> Option<ErrorCause> {
        let teardown = matches!(
            self.action,
            CoaAction::TeardownService { .. } | CoaAction::TeardownTrigger { .. }
        );
        match outcome {
            CoaOutcome::Done => None,
            _ if teardown => Some(ErrorCause::SessionContextNotRemovable),
            CoaOutcome::ScriptFailed => Some(ErrorCause::InvalidRequest),
            CoaOutcome::ApplyFailed => Some(ErrorCause::ResourcesUnavailable),
        }
    }

    /// The ACK, or the NAK with [`CoaDecision::error_cause`], answering `request` (see
    /// [`RequestKind::answer`]).
    pub fn answer(&self, request: &Message, outcome: CoaOutcome) -> Message {
        self.kind.answer(request, self.error_cause(outcome))
    }
}

/// A refused request: nothing is run, the NAK carries `cause`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{kind:?}-Request refused ({cause}): {reason}")]
pub struct CoaRefusal {
    /// CoA or Disconnect.
    pub kind: RequestKind,
    /// The Error-Cause of the NAK.
    pub cause: ErrorCause,
    /// Why, for the log.
    pub reason: String,
}

impl CoaRefusal {
    /// The NAK answering `request` (see [`RequestKind::answer`]).
    pub fn answer(&self, request: &Message) -> Message {
        self.kind.answer(request, Some(self.cause))
    }
}

/// What the request's keys name.
enum Target<'a> {
    /// A dynamic service SAP, and the trigger that owns it.
    Service { sap: SapId, trigger: &'a SapId },
    /// A data trigger, by its Acct-Session-Id.
    Trigger(&'a crate::Trigger),
}

/// Decides `request` (already verified by the shell) against the data triggers, per Table 5.
/// Refusals and their Error-Cause:
///
/// * no NAS-Port-Id nor Acct-Session-Id, no Alc-Dyn-Serv-Script-Action in a CoA, no
///   Alc-Dyn-Serv-SAP-Id when keyed by a trigger's Acct-Session-Id, no
///   Alc-Dyn-Serv-Script-Params for a setup or modify, no Alc-Dyn-Serv-Policy for a setup
///   when no "default" policy exists: Missing-Attribute (402);
/// * a key that names no service or trigger, keys that disagree, an Alc-Dyn-Serv-SAP-Id
///   that is not a service of the keyed trigger (modify, teardown), a setup on a trigger still
///   authenticating: Session-Context-Not-Found (503);
/// * more than one dynamic service in a CoA, a setup keyed by a service SAP (NAS-Port-Id,
///   or a service's Acct-Session-Id): Invalid-Request (404);
/// * a malformed or unknown value (SAP id, action, stats type, unknown policy, a setup
///   of a SAP that exists, an Alc-Dyn-Serv-SAP-Id contradicting the keyed service):
///   Invalid-Attribute-Value (407);
/// * a setup on a trigger that owns 4000 services: Resources-Unavailable (506).
pub fn decide(
    kind: RequestKind,
    request: &Message,
    triggers: &Triggers,
    ports: &PortMap,
) -> Result<CoaDecision, CoaRefusal> {
    let refuse = |cause: ErrorCause, reason: String| CoaRefusal {
        kind,
        cause,
        reason,
    };
    let target = target(request, triggers, ports).map_err(|(c, r)| refuse(c, r))?;
    let action = match kind {
        RequestKind::Disconnect => Ok(teardown(target, triggers)),
        RequestKind::Coa => coa_action(request, target, triggers, ports),
    }
    .map_err(|(c, r)| refuse(c, r))?;
    Ok(CoaDecision { kind, action })
}

type Refused = (ErrorCause, String);

fn text_attribute<'a>(
    request: &'a Message,
    typ: u8,
    name: &str,
) -> Result<Option<&'a str>, Refused> {
    request
        .attributes
        .first(typ)
        .map(|value| {
            std::str::from_utf8(value).map_err(|_| {
                (
                    ErrorCause::InvalidAttributeValue,
                    format!("{name} is not UTF-8"),
                )
            })
        })
        .transpose()
}

fn target<'a>(
    request: &Message,
    triggers: &'a Triggers,
    ports: &PortMap,
) -> Result<Target<'a>, Refused> {
    let port_id = text_attribute(request, NAS_PORT_ID, "NAS-Port-Id")?;
    let session_id = text_attribute(request, ACCT_SESSION_ID, "Acct-Session-Id")?;
    let not_found = |what: String| (ErrorCause::SessionContextNotFound, what);
    match (port_id, session_id) {
        (None, None) => Err((
            ErrorCause::MissingAttribute,
            "neither NAS-Port-Id nor Acct-Session-Id".into(),
        )),
        (Some(port_id), session_id) => {
            let sap = SapId::parse_mapped(port_id, ports).map_err(|e| {
                (
                    ErrorCause::InvalidAttributeValue,
                    format!("NAS-Port-Id {port_id:?}: {e}"),
                )
            })?;
            let (sap, entry) = triggers
                .service(&sap)
                .map(|entry| (sap.clone(), entry))
                .ok_or_else(|| not_found(format!("no dynamic service SAP {sap}")))?;
            if let Some(id) = session_id {
                let owner_session = triggers
                    .trigger(&entry.trigger)
                    .map(|t| t.acct_session_id.as_str());
                if id != entry.acct_session_id && Some(id) != owner_session {
                    return Err(not_found(format!(
                        "Acct-Session-Id {id:?} is neither dynamic service SAP {sap}'s nor its data trigger's"
                    )));
                }
            }
            Ok(Target::Service {
                sap,
                trigger: &entry.trigger,
            })
        }
        (None, Some(id)) => {
            if let Some((sap, entry)) = triggers.service_by_session(id) {
                return Ok(Target::Service {
                    sap: sap.clone(),
                    trigger: &entry.trigger,
                });
            }
            triggers
                .trigger_by_session(id)
                .map(Target::Trigger)
                .ok_or_else(|| not_found(format!("no session with Acct-Session-Id {id:?}")))
        }
    }
}

fn teardown(target: Target<'_>, triggers: &Triggers) -> CoaAction {
    match target {
        Target::Trigger(trigger) => CoaAction::TeardownTrigger {
            trigger: trigger.sap.clone(),
        },
        Target::Service { sap, trigger } => service_teardown(sap, trigger, triggers),
    }
}

/// Teardown of a service; the trigger's own SAP takes the trigger with it.
fn service_teardown(sap: SapId, trigger: &SapId, triggers: &Triggers) -> CoaAction {
    if &sap == trigger {
        return CoaAction::TeardownTrigger { trigger: sap };
    }
    CoaAction::TeardownService {
        trigger: trigger.clone(),
        acct_session_id: triggers
            .service(&sap)
            .map(|entry| entry.acct_session_id.clone())
            .unwrap_or_default(),
        service: sap,
    }
}

fn bad_service(failure: AuthFailure) -> Refused {
    (ErrorCause::InvalidAttributeValue, failure.to_string())
}

fn coa_action(
    request: &Message,
    target: Target<'_>,
    triggers: &Triggers,
    ports: &PortMap,
) -> Result<CoaAction, Refused> {
    let mut raw = dyn_services_of(request).map_err(bad_service)?;
    if raw.len() > 1 {
        return Err((
            ErrorCause::InvalidRequest,
            format!("{} dynamic services, one per CoA", raw.len()),
        ));
    }
    let missing = |what: &str| (ErrorCause::MissingAttribute, format!("{what} is missing"));
    let raw = raw.pop().unwrap_or_default();
    let action = match raw.action {
        None => return Err(missing("Alc-Dyn-Serv-Script-Action")),
        Some(value) => ScriptAction::from_wire(value).ok_or_else(|| {
            (
                ErrorCause::InvalidAttributeValue,
                format!("Alc-Dyn-Serv-Script-Action {value}"),
            )
        })?,
    };
    if action == ScriptAction::Setup && matches!(target, Target::Service { .. }) {
        return Err((
            ErrorCause::InvalidRequest,
            "a setup is keyed by a data trigger's Acct-Session-Id, not a dynamic service SAP"
                .into(),
        ));
    }
    if action != ScriptAction::Teardown && raw.script_params.is_none() {
        return Err(missing("Alc-Dyn-Serv-Script-Params"));
    }
    match target {
        Target::Service { sap, trigger } => {
            // An Alc-Dyn-Serv-SAP-Id next to a service key must name that service.
            if let Some(text) = &raw.sap {
                let named = resolve_sap(text, trigger, ports)
                    .map_err(|e| (ErrorCause::InvalidAttributeValue, e.to_string()))?;
                if named != sap {
                    return Err((
                        ErrorCause::InvalidAttributeValue,
                        format!("Alc-Dyn-Serv-SAP-Id {named} contradicts the keyed SAP {sap}"),
                    ));
                }
            }
            match action {
                ScriptAction::Teardown => Ok(service_teardown(sap, trigger, triggers)),
                _ => Ok(CoaAction::Modify {
                    trigger: trigger.clone(),
                    service: raw.with_sap(sap).map_err(bad_service)?,
                }),
            }
        }
        Target::Trigger(owner) => {
            if raw.sap.is_none() {
                return Err(missing("Alc-Dyn-Serv-SAP-Id"));
            }
            let service = service_of(raw, &owner.sap, ports)?;
            let owned = owner.services.contains(&service.sap);
            match action {
                ScriptAction::Setup => {
                    setup_allowed(owner, &service, triggers)?;
                    Ok(CoaAction::Setup {
                        trigger: owner.sap.clone(),
                        service,
                    })
                }
                _ if !owned => Err((
                    ErrorCause::SessionContextNotFound,
                    format!(
                        "{} is not a dynamic service of data trigger {}",
                        service.sap, owner.sap
                    ),
                )),
                ScriptAction::Modify => Ok(CoaAction::Modify {
                    trigger: owner.sap.clone(),
                    service,
                }),
                ScriptAction::Teardown => Ok(service_teardown(service.sap, &owner.sap, triggers)),
            }
        }
    }
}

fn service_of(raw: RawDynService, trigger: &SapId, ports: &PortMap) -> Result<DynService, Refused> {
    raw.into_service(trigger, ports).map_err(bad_service)
}

fn setup_allowed(
    owner: &crate::Trigger,
    service: &DynService,
    triggers: &Triggers,
) -> Result<(), Refused> {
    if owner.state == TriggerState::Pending {
        return Err((
            ErrorCause::SessionContextNotFound,
            format!("data trigger {} is still authenticating", owner.sap),
        ));
    }
    match &service.policy {
        None if triggers.policy(DEFAULT_POLICY).is_none() => {
            return Err((
                ErrorCause::MissingAttribute,
                "Alc-Dyn-Serv-Policy is missing and no \"default\" policy is configured".into(),
            ))
        }
        Some(name) if triggers.policy(name).is_none() => {
            return Err((
                ErrorCause::InvalidAttributeValue,
                format!("no dynamic-services-policy {name:?}"),
            ))
        }
        _ => {}
    }
    if triggers.service(&service.sap).is_some() {
        return Err((
            ErrorCause::InvalidAttributeValue,
            format!("dynamic service SAP {} exists already", service.sap),
        ));
    }
    if owner.services.len() >= MAX_SERVICES_PER_TRIGGER {
        return Err((
            ErrorCause::ResourcesUnavailable,
            format!("data trigger {} owns 4000 dynamic services", owner.sap),
        ));
    }
    Ok(())
}
