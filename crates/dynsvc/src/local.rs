//! The local authentication database (`local-auth-db`): user-name entries (the data trigger's
//! SAP id) with indexes, each one dynamic service (Nokia SR OS dynamic data services, "Local
//! authentication").

use std::collections::BTreeMap;

use brasa_services::{PortMap, SapId};
use thiserror::Error;

use crate::auth::{authorized_services, AcctOverride, AuthFailure, DynService, RawDynService};

/// Longest script-parameters-N string.
pub const MAX_SCRIPT_PARAMETER_LEN: usize = 250;

/// One index of a user-name entry: one dynamic service SAP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalIndex {
    /// sap-id (mandatory; may hold `#` wildcards).
    pub sap_id: String,
    /// dynamic-services-policy; the capture SAP's when `None`.
    pub policy: Option<String>,
    /// script-parameters-1..4, passed to the script concatenated.
    pub script_parameters: [String; 4],
    /// accounting 1 and 2 overrides (stats-type, update-interval).
    pub accounting: [AcctOverride; 2],
}

/// A user-name entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalUser {
    /// Free text.
    pub description: String,
    /// Indexes by number.
    pub indexes: BTreeMap<u32, LocalIndex>,
    /// `shutdown` entries do not authenticate.
    pub shutdown: bool,
}

/// Why an entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LocalDbError {
    /// An index has no sap-id.
    #[error("user-name {user:?} index {index}: sap-id is mandatory")]
    MissingSapId {
        /// User name.
        user: String,
        /// Index.
        index: u32,
    },
    /// A script-parameters string is too long.
    #[error(
        "user-name {user:?} index {index}: script-parameters-{n} is longer than 250 characters"
    )]
    ParameterTooLong {
        /// User name.
        user: String,
        /// Index.
        index: u32,
        /// Which of the four (1..=4).
        n: usize,
    },
    /// No script parameters at all.
    #[error("user-name {user:?} index {index}: script-parameters are mandatory")]
    MissingScriptParameters {
        /// User name.
        user: String,
        /// Index.
        index: u32,
    },
}

/// A named local authentication database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalAuthDb {
    users: BTreeMap<String, LocalUser>,
}

impl LocalAuthDb {
    /// An empty database.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the entry `user`, after checking every index; a refused entry changes
    /// nothing.
    pub fn insert(&mut self, user: &str, entry: LocalUser) -> Result<(), LocalDbError> {
        for (&index, item) in &entry.indexes {
            if item.sap_id.is_empty() {
                return Err(LocalDbError::MissingSapId {
                    user: user.to_owned(),
                    index,
                });
            }
            if let Some(n) = item
                .script_parameters
                .iter()
                .position(|p| p.chars().count() > MAX_SCRIPT_PARAMETER_LEN)
            {
                return Err(LocalDbError::ParameterTooLong {
                    user: user.to_owned(),
                    index,
                    n: n + 1,
                });
            }
            if item.script_parameters.iter().all(String::is_empty) {
                return Err(LocalDbError::MissingScriptParameters {
                    user: user.to_owned(),
                    index,
                });
            }
        }
        self.users.insert(user.to_owned(), entry);
        Ok(())
    }

    /// Removes an entry; true when it existed.
    pub fn remove(&mut self, user: &str) -> bool {
        self.users.remove(user).is_some()
    }

    /// The entry for `user`.
    pub fn get(&self, user: &str) -> Option<&LocalUser> {
        self.users.get(user)
    }

    /// Authenticates the data trigger `trigger`: the user name is its SAP id; the result is the
    /// same as for an Access-Accept (script action always setup; one index must be the
    /// trigger's SAP, at most 32 indexes).
    pub fn authenticate(
        &self,
        trigger: &SapId,
        ports: &PortMap,
    ) -> Result<Vec<DynService>, AuthFailure> {
        let user = trigger.to_string();
        let entry = self
            .users
            .get(&user)
            .filter(|entry| !entry.shutdown)
            .ok_or_else(|| AuthFailure::LocalLookupFailed(user.clone()))?;
        let raw = entry
            .indexes
            .values()
            .map(|index| RawDynService {
                tag: 0,
                sap: Some(index.sap_id.clone()),
                script_params: Some(index.script_parameters.concat()),
                action: None,
                policy: index.policy.clone(),
                interim: [None; 2],
                stats_type: [None; 2],
            })
            .collect();
        let mut services = authorized_services(raw, trigger, ports)?;
        for (service, index) in services.iter_mut().zip(entry.indexes.values()) {
            service.accounting = index.accounting;
            service.action = Some(crate::ScriptAction::Setup);
        }
        Ok(services)
    }
}
