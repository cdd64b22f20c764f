//! The resolved SM configuration (the binary turns `[subscriber_manager]` TOML into this).

use std::collections::HashSet;
use std::time::Duration;

use brasa_subscriber::IndexConfig;

use crate::bgp_leg::BgpLegConfig;

/// How an enforcement point learns its subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EpMode {
    /// The SM sends the whole domain on connect, then every change.
    Push,
    /// The EP asks for addresses it does not know; changes of what it pulled are pushed.
    Pull,
}

impl EpMode {
    /// The name in the configuration, operator output and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EpMode::Push => "push",
            EpMode::Pull => "pull",
        }
    }
}

/// What an EP does with its subscribers when the link to the SM fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureAction {
    /// Keep them.
    Ignore,
    /// Erase every mapping and run without subscriber awareness until resynchronised.
    ClearMappings,
}

impl FailureAction {
    /// The name in the configuration, operator output and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureAction::Ignore => "ignore",
            FailureAction::ClearMappings => "clear-mappings",
        }
    }
}

/// One configured enforcement point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpConfig {
    /// The id the EP says in its Hello.
    pub id: String,
    /// The subscriber domain it serves.
    pub domain: String,
    /// Push or pull.
    pub mode: EpMode,
    /// Its action on link failure.
    pub failure_action: FailureAction,
    /// The other EP of its cascade pair.
    pub cascade_partner: Option<String>,
}

/// Everything the SM service needs.
#[derive(Debug, Clone)]
pub struct SmConfig {
    /// Domains and the name case rule.
    pub index: IndexConfig,
    /// Configured enforcement points.
    pub eps: Vec<EpConfig>,
    /// How often each side must send something; three silent intervals are a failure.
    pub keepalive_interval: Duration,
    /// Most updates an EP may leave unacknowledged before the SM waits.
    pub window: usize,
    /// Updates queued for an EP beyond which it is quarantined (back-pressure). A single change
    /// larger than half of this (an import) resynchronises the EP instead.
    pub max_backlog: usize,
    /// An EP that acknowledges nothing for this long while updates are outstanding is
    /// quarantined.
    pub ack_timeout: Duration,
    /// First quarantine period; doubled for a failure within the post-quarantine period.
    pub quarantine_timeout: Duration,
    /// How long after a quarantine a new failure doubles the timeout.
    pub post_quarantine: Duration,
    /// Most updates in one message.
    pub batch: usize,
    /// The BGP LEG's peers, when this SM runs one.
    pub bgp_leg: Option<BgpLegConfig>,
}

impl Default for SmConfig {
    fn default() -> Self {
        SmConfig {
            index: IndexConfig::default(),
            eps: Vec::new(),
            keepalive_interval: Duration::from_secs(5),
            window: 65_536,
            max_backlog: 1_000_000,
            ack_timeout: Duration::from_secs(30),
            quarantine_timeout: Duration::from_secs(60),
            post_quarantine: Duration::from_secs(600),
            batch: 1024,
            bgp_leg: None,
        }
    }
}

/// A configuration the SM refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Two EPs share an id.
    #[error("EP {0:?} is configured twice")]
    DuplicateEp(String),
    /// An EP names a domain that is not configured.
    #[error("EP {ep:?}: domain {domain:?} is not configured")]
    UnknownDomain {
        /// The EP.
        ep: String,
        /// The domain.
        domain: String,
    },
    /// A cascade pair is inconsistent.
    #[error("EP {ep:?}: {reason}")]
    Cascade {
        /// The EP.
        ep: String,
        /// What is wrong.
        reason: String,
    },
    /// A numeric setting is out of range.
    #[error("{0}")]
    Invalid(String),
}

impl SmConfig {
    /// Checks the EP list against the domains and the cascade pairs against each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = HashSet::new();
        for ep in &self.eps {
            if !seen.insert(ep.id.as_str()) {
                return Err(ConfigError::DuplicateEp(ep.id.clone()));
            }
            if !self.index.domains.contains(&ep.domain) {
                return Err(ConfigError::UnknownDomain {
                    ep: ep.id.clone(),
                    domain: ep.domain.clone(),
                });
            }
        }
        for ep in &self.eps {
            let Some(partner) = &ep.cascade_partner else {
                continue;
            };
            let cascade = |reason: String| ConfigError::Cascade {
                ep: ep.id.clone(),
                reason,
            };
            if partner == &ep.id {
                return Err(cascade("an EP cannot be its own cascade partner".into()));
            }
            let other =
                self.eps.iter().find(|o| &o.id == partner).ok_or_else(|| {
                    cascade(format!("cascade partner {partner:?} is not configured"))
                })?;
            if other.cascade_partner.as_deref() != Some(ep.id.as_str()) {
                return Err(cascade(format!(
                    "cascade partner {partner:?} must name {:?} as its partner",
                    ep.id
                )));
            }
            if other.domain != ep.domain || other.mode != ep.mode {
                return Err(cascade(format!(
                    "cascade partner {partner:?} must have the same domain and mode"
                )));
            }
        }
        if self.window == 0 || self.batch == 0 || self.max_backlog == 0 {
            return Err(ConfigError::Invalid(
                "window, batch and max_backlog must be at least 1".into(),
            ));
        }
        if self.keepalive_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "keepalive_interval must be longer than 0".into(),
            ));
        }
        Ok(())
    }
}
