//! The services of one subscriber: activation with the type-conflict actions, deactivation,
//! removal at logout, each returning the typed changes for the caller to enforce and account.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::model::{
    policers, Direction, ServiceRequest, SubscriberService, TypeConflictAction, ValidationError,
    MAX_POLICERS_PER_DIRECTION,
};

/// The active services of one subscriber, in activation order. Its JSON form (a list of
/// services) is what the Subscriber Manager stores with the subscriber.
///
/// A service never changes once active, so each is shared (`Arc`): the copies of a subscriber's
/// record that its manager makes per change (the all-or-nothing candidate, the change set for
/// the store and the enforcement points, the [`ServiceChange`]s) share the rules instead of
/// copying them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriberServices {
    active: Vec<Arc<SubscriberService>>,
}

impl Serialize for SubscriberServices {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for SubscriberServices {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<SubscriberService>::deserialize(d).map(Self::from_iter)
    }
}

/// One change to a subscriber's services, to enforce and to account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceChange {
    /// The service is now active: install its rules, start its accounting.
    Activated(Arc<SubscriberService>),
    /// The service is gone: remove its rules, stop its accounting.
    Deactivated {
        /// The service as it was.
        service: Arc<SubscriberService>,
        /// Why.
        cause: DeactivationCause,
    },
}

/// Why a service was deactivated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeactivationCause {
    /// A deactivation request (`operation = delete`, Alc-Sub-Serv-Deactivate, an operator).
    Requested,
    /// A service of the same type with type-conflict-action keep-new replaced it.
    ReplacedBy(String),
    /// The subscriber logged out (or was removed).
    Logout,
}

/// Why a request was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ServiceError {
    /// The service is invalid on its own.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A different service of that name is active.
    #[error("subscriber service {0:?} is active with other content: deactivate it first")]
    NameInUse(String),
    /// type-conflict-action keep-old, and a service of the type is active.
    #[error("subscriber service {new:?} of type {service_type:?} not activated: {active:?} of that type is active and the new service says keep-old")]
    TypeConflict {
        /// The refused service.
        new: String,
        /// The type.
        service_type: String,
        /// The active service kept.
        active: String,
    },
    /// A rule name that another active service of the subscriber uses.
    #[error("PCC rule {rule:?} of subscriber service {new:?} is already applied by {active:?}: a rule name is unique per subscriber")]
    RuleNameInUse {
        /// The rule name.
        rule: String,
        /// The new service.
        new: String,
        /// The active service with that rule.
        active: String,
    },
    /// The subscriber would have too many dynamic policers in a direction.
    #[error("subscriber service {new:?} would give the subscriber {count} {direction} dynamic policers, at most {MAX_POLICERS_PER_DIRECTION}")]
    TooManyPolicers {
        /// The new service.
        new: String,
        /// The direction.
        direction: Direction,
        /// How many there would be.
        count: usize,
    },
    /// No active service of that name.
    #[error("no active subscriber service {0:?}")]
    NotActive(String),
}

/// The services a record holds, in activation order, as they are: like the JSON form, unchecked
/// (whoever takes a whole record checks it, as the Subscriber Manager does).
impl FromIterator<SubscriberService> for SubscriberServices {
    fn from_iter<I: IntoIterator<Item = SubscriberService>>(services: I) -> Self {
        Self {
            active: services.into_iter().map(Arc::new).collect(),
        }
    }
}

impl SubscriberServices {
    /// No services.
    pub fn new() -> Self {
        Self::default()
    }

    /// The active services, in activation order.
    pub fn iter(&self) -> impl Iterator<Item = &SubscriberService> {
        self.active.iter().map(|s| &**s)
    }

    /// The active service `name`.
    pub fn get(&self, name: &str) -> Option<&SubscriberService> {
        self.iter().find(|s| s.name == name)
    }

    /// How many services are active.
    pub fn len(&self) -> usize {
        self.active.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// Activates `service`, applying its type-conflict-action against the active services
    /// of the same type: `none` activates it beside them, `keep-old` refuses it, `keep-new`
    /// deactivates them first. Activating a service that is active with the same content
    /// changes nothing (a retransmitted Access-Accept or CoA); with other content it is
    /// refused. Rule names stay unique per subscriber and dynamic policers within
    /// [`MAX_POLICERS_PER_DIRECTION`] per direction. On `Err` nothing changed.
    pub fn activate(
        &mut self,
        service: SubscriberService,
    ) -> Result<Vec<ServiceChange>, ServiceError> {
        service.validate()?;
        if let Some(active) = self.get(&service.name) {
            return if active == &service {
                Ok(Vec::new())
            } else {
                Err(ServiceError::NameInUse(service.name))
            };
        }
        let same_type = |s: &SubscriberService| {
            service.service_type.is_some() && s.service_type == service.service_type
        };
        let replaced: Vec<usize> = match service.type_conflict_action {
            TypeConflictAction::None => Vec::new(),
            TypeConflictAction::KeepOld => {
                if let Some(active) = self.active.iter().find(|s| same_type(s)) {
                    return Err(ServiceError::TypeConflict {
                        new: service.name,
                        service_type: service.service_type.unwrap_or_default(),
                        active: active.name.clone(),
                    });
                }
                Vec::new()
            }
            TypeConflictAction::KeepNew => (0..self.active.len())
                .filter(|&i| same_type(&self.active[i]))
                .collect(),
        };
        let staying = || {
            self.active
                .iter()
                .enumerate()
                .filter(|(i, _)| !replaced.contains(i))
                .map(|(_, s)| s)
        };
        for rule in &service.rules {
            if let Some(active) = staying().find(|s| s.rules.iter().any(|r| r.name == rule.name)) {
                return Err(ServiceError::RuleNameInUse {
                    rule: rule.name.clone(),
                    new: service.name,
                    active: active.name.clone(),
                });
            }
        }
        for direction in [Direction::Ingress, Direction::Egress] {
            let count = policers(
                staying().flat_map(|s| &s.rules).chain(&service.rules),
                direction,
            );
            if count > MAX_POLICERS_PER_DIRECTION {
                return Err(ServiceError::TooManyPolicers {
                    new: service.name,
                    direction,
                    count,
                });
            }
        }
        let mut changes = Vec::with_capacity(replaced.len() + 1);
        for index in replaced.into_iter().rev() {
            changes.push(ServiceChange::Deactivated {
                service: self.active.remove(index),
                cause: DeactivationCause::ReplacedBy(service.name.clone()),
            });
        }
        changes.reverse();
        let service = Arc::new(service);
        self.active.push(service.clone());
        changes.push(ServiceChange::Activated(service));
        Ok(changes)
    }

    /// Deactivates the service `name`.
    pub fn deactivate(&mut self, name: &str) -> Result<ServiceChange, ServiceError> {
        let index = self
            .active
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| ServiceError::NotActive(name.to_string()))?;
        Ok(ServiceChange::Deactivated {
            service: self.active.remove(index),
            cause: DeactivationCause::Requested,
        })
    }

    /// Applies one committed request.
    pub fn apply(&mut self, request: ServiceRequest) -> Result<Vec<ServiceChange>, ServiceError> {
        match request {
            ServiceRequest::Add(service) => self.activate(service),
            ServiceRequest::Delete { name } => self.deactivate(&name).map(|c| vec![c]),
        }
    }

    /// Applies every request of one message (an Access-Accept or CoA-Request) in order, all
    /// or nothing: on the first refusal nothing has changed, and the error says which
    /// request (0-based) was refused.
    pub fn apply_all(
        &mut self,
        requests: impl IntoIterator<Item = ServiceRequest>,
    ) -> Result<Vec<ServiceChange>, (usize, ServiceError)> {
        let mut candidate = self.clone();
        let mut changes = Vec::new();
        for (index, request) in requests.into_iter().enumerate() {
            changes.extend(candidate.apply(request).map_err(|e| (index, e))?);
        }
        *self = candidate;
        Ok(changes)
    }

    /// Removes every service (the subscriber logged out).
    pub fn clear(&mut self) -> Vec<ServiceChange> {
        self.active
            .drain(..)
            .map(|service| ServiceChange::Deactivated {
                service,
                cause: DeactivationCause::Logout,
            })
            .collect()
    }
}
