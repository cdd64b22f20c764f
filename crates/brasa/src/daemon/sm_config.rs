//! `[subscriber_manager]` of the `brasa run` config: its TOML model and its resolution into a
//! `brasa_sm::SmConfig`, with every error located at `file:line:col`.

use crate::common::config::{ConfigDuration, ConfigError, Source};
use brasa_aaa::EngineConfig;
use brasa_radius::{AttrId, Dictionary};
use brasa_sm::{EpConfig, EpMode, FailureAction, SmConfig};
use brasa_subscriber::{IndexConfig, NameCase, DEFAULT_DOMAIN};
use serde::Deserialize;
use serde_spanned::Spanned;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `[subscriber_manager]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmSection {
    /// gRPC address of the LEG API and the EP protocol.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Subscriber domains (the first EPs and subscribers default to `subscribers`).
    #[serde(default = "default_domains")]
    pub domains: Vec<Spanned<String>>,
    /// `sensitive` (default) or `insensitive` (names are lower-cased).
    #[serde(default = "default_name_case")]
    pub name_case: Spanned<String>,
    /// Each side sends something at least this often; three silent intervals are a failure.
    #[serde(default = "default_keepalive")]
    pub keepalive_interval: Spanned<ConfigDuration>,
    /// An EP that acknowledges nothing for this long while updates are outstanding is
    /// quarantined.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout: ConfigDuration,
    /// Most updates an EP may leave unacknowledged.
    #[serde(default = "default_window")]
    pub window: Spanned<usize>,
    /// Queued updates beyond which an EP is quarantined.
    #[serde(default = "default_backlog")]
    pub max_backlog: Spanned<usize>,
    /// First quarantine period (doubled for a failure within the post-quarantine period).
    #[serde(default = "default_quarantine")]
    pub quarantine_timeout: ConfigDuration,
    /// The post-quarantine period.
    #[serde(default = "default_post_quarantine")]
    pub post_quarantine: ConfigDuration,
    /// Enforcement points.
    #[serde(default, rename = "ep")]
    pub eps: Vec<EpSection>,
    /// Login events from the RADIUS component of this daemon.
    pub radius: Option<SmRadiusSection>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7790))
}
fn default_domains() -> Vec<Spanned<String>> {
    vec![Spanned::new(0..0, DEFAULT_DOMAIN.to_owned())]
}
fn default_name_case() -> Spanned<String> {
    Spanned::new(0..0, "sensitive".to_owned())
}
fn default_keepalive() -> Spanned<ConfigDuration> {
    Spanned::new(0..0, ConfigDuration(Duration::from_secs(5)))
}
fn default_ack_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(30))
}
fn default_window() -> Spanned<usize> {
    Spanned::new(0..0, SmConfig::default().window)
}
fn default_backlog() -> Spanned<usize> {
    Spanned::new(0..0, SmConfig::default().max_backlog)
}
fn default_quarantine() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}
fn default_post_quarantine() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(600))
}

/// `[[subscriber_manager.ep]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpSection {
    /// The id the EP says in its Hello.
    pub id: Spanned<String>,
    /// Its domain (default `subscribers`).
    pub domain: Option<Spanned<String>>,
    /// `push` (default) or `pull`.
    pub mode: Option<Spanned<String>>,
    /// `ignore` (default) or `clear-mappings`.
    pub failure_action: Option<Spanned<String>>,
    /// The other EP of its cascade pair.
    pub cascade_partner: Option<Spanned<String>>,
}

/// `[subscriber_manager.radius]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmRadiusSection {
    /// `[[radius.server]]` names whose accounting requests log subscribers in and out.
    pub servers: Spanned<Vec<Spanned<String>>>,
    /// Domain of subscribers logged in by RADIUS (default: keep theirs, or `subscribers`).
    pub domain: Option<Spanned<String>>,
    /// Attributes that become properties: `"Filter-Id"` (property `Filter-Id`) or
    /// `"Filter-Id=package"`.
    #[serde(default)]
    pub properties: Vec<Spanned<String>>,
    /// Events waiting for the SM beyond which new ones are dropped (and counted).
    #[serde(default = "default_queue")]
    pub queue: Spanned<usize>,
}

fn default_queue() -> Spanned<usize> {
    Spanned::new(0..0, 65_536)
}

/// RADIUS login events, resolved.
#[derive(Debug, Clone)]
pub struct RadiusLogins {
    /// Indexes of the observed servers in `EngineConfig::servers`.
    pub servers: Vec<usize>,
    /// Domain for logins.
    pub domain: Option<String>,
    /// (attribute, dictionary name, property key).
    pub properties: Vec<(AttrId, String, String)>,
    /// Queue size.
    pub queue: usize,
}

/// A validated `[subscriber_manager]`.
pub struct SmResolved {
    /// The service config.
    pub config: SmConfig,
    /// gRPC address.
    pub listen: SocketAddr,
    /// `<data_dir>/subscriber`.
    pub data_dir: PathBuf,
    /// RADIUS login events.
    pub radius: Option<RadiusLogins>,
}

fn one_of<T: Copy>(
    source: &Source,
    value: Option<&Spanned<String>>,
    default: T,
    what: &str,
    choices: &[(&str, T)],
) -> Result<T, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    choices
        .iter()
        .find(|(name, _)| *name == value.get_ref())
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
            source.error_at(
                value.span(),
                format!(
                    "invalid {what} {:?}; expected {}",
                    value.get_ref(),
                    names.join(" or ")
                ),
            )
        })
}

/// Resolves the section; `radius` is the RADIUS component of the same file, if any.
pub fn resolve(
    source: &Source,
    data_dir: &Path,
    section: SmSection,
    radius: Option<&(EngineConfig, Arc<Dictionary>)>,
) -> Result<SmResolved, ConfigError> {
    let mut domains: Vec<String> = Vec::new();
    for d in &section.domains {
        brasa_subscriber::name::validate_name(d.get_ref())
            .map_err(|e| source.error_at(d.span(), format!("invalid domain name: {e}")))?;
        if domains.contains(d.get_ref()) {
            return Err(source.error_at(
                d.span(),
                format!("domain {:?} is listed twice", d.get_ref()),
            ));
        }
        domains.push(d.get_ref().clone());
    }
    let name_case = one_of(
        source,
        Some(&section.name_case),
        NameCase::Sensitive,
        "name_case",
        &[
            ("sensitive", NameCase::Sensitive),
            ("insensitive", NameCase::Insensitive),
        ],
    )?;
    let domain_ref = |d: Option<&Spanned<String>>| -> Result<String, ConfigError> {
        match d {
            None if domains.iter().any(|x| x == DEFAULT_DOMAIN) => Ok(DEFAULT_DOMAIN.to_owned()),
            None => Ok(domains.first().cloned().unwrap_or_default()),
            Some(d) if domains.contains(d.get_ref()) => Ok(d.get_ref().clone()),
            Some(d) => Err(source.error_at(
                d.span(),
                format!(
                    "domain {:?} is not in subscriber_manager.domains ({})",
                    d.get_ref(),
                    domains.join(", ")
                ),
            )),
        }
    };

    let mut eps: Vec<EpConfig> = Vec::new();
    for ep in &section.eps {
        if eps.iter().any(|e| &e.id == ep.id.get_ref()) {
            return Err(source.error_at(
                ep.id.span(),
                format!("EP {:?} is defined twice", ep.id.get_ref()),
            ));
        }
        eps.push(EpConfig {
            id: ep.id.get_ref().clone(),
            domain: domain_ref(ep.domain.as_ref())?,
            mode: one_of(
                source,
                ep.mode.as_ref(),
                EpMode::Push,
                "mode",
                &[("push", EpMode::Push), ("pull", EpMode::Pull)],
            )?,
            failure_action: one_of(
                source,
                ep.failure_action.as_ref(),
                FailureAction::Ignore,
                "failure_action",
                &[
                    ("ignore", FailureAction::Ignore),
                    ("clear-mappings", FailureAction::ClearMappings),
                ],
            )?,
            cascade_partner: ep.cascade_partner.as_ref().map(|p| p.get_ref().clone()),
        });
    }
    for (value, what) in [
        (&section.window, "window"),
        (&section.max_backlog, "max_backlog"),
    ] {
        if *value.get_ref() == 0 {
            return Err(source.error_at(value.span(), format!("{what} must be at least 1")));
        }
    }
    if section.keepalive_interval.get_ref().0.is_zero() {
        return Err(source.error_at(
            section.keepalive_interval.span(),
            "keepalive_interval must be longer than 0",
        ));
    }
    let config = SmConfig {
        index: IndexConfig { domains, name_case },
        eps,
        keepalive_interval: section.keepalive_interval.get_ref().0,
        window: *section.window.get_ref(),
        max_backlog: *section.max_backlog.get_ref(),
        ack_timeout: section.ack_timeout.0,
        quarantine_timeout: section.quarantine_timeout.0,
        post_quarantine: section.post_quarantine.0,
        ..SmConfig::default()
    };
    if let Err(e) = config.validate() {
        // Every remaining complaint is about an EP: point at it (its partner when given).
        let text = e.to_string();
        let span = section
            .eps
            .iter()
            .find(|ep| text.starts_with(&format!("EP {:?}", ep.id.get_ref())))
            .map(|ep| {
                ep.cascade_partner
                    .as_ref()
                    .map_or_else(|| ep.id.span(), |p| p.span())
            })
            .unwrap_or(0..0);
        return Err(source.error_at(span, text));
    }

    let radius_logins = match section.radius {
        None => None,
        Some(r) => Some(resolve_radius(source, &config, r, radius)?),
    };
    Ok(SmResolved {
        config,
        listen: section.listen,
        data_dir: data_dir.join("subscriber"),
        radius: radius_logins,
    })
}

fn resolve_radius(
    source: &Source,
    config: &SmConfig,
    section: SmRadiusSection,
    radius: Option<&(EngineConfig, Arc<Dictionary>)>,
) -> Result<RadiusLogins, ConfigError> {
    let Some((engine, dictionary)) = radius else {
        return Err(source.error_at(
            section.servers.span(),
            "RADIUS login events need the [radius] component in the same config",
        ));
    };
    if section.servers.get_ref().is_empty() {
        return Err(source.error_at(
            section.servers.span(),
            "`servers` must name at least one [[radius.server]]",
        ));
    }
    let mut servers = Vec::new();
    for name in section.servers.get_ref() {
        let i = engine
            .servers
            .iter()
            .position(|s| &s.name == name.get_ref())
            .ok_or_else(|| {
                let known: Vec<String> = engine
                    .servers
                    .iter()
                    .map(|s| format!("{:?}", s.name))
                    .collect();
                source.error_at(
                    name.span(),
                    format!(
                        "no [[radius.server]] named {:?} (defined: {})",
                        name.get_ref(),
                        known.join(", ")
                    ),
                )
            })?;
        if engine.servers[i].acct_listen.is_none() {
            return Err(source.error_at(
                name.span(),
                format!(
                    "[[radius.server]] {:?} has no acct_listen, so it sees no accounting",
                    name.get_ref()
                ),
            ));
        }
        servers.push(i);
    }
    let domain = match &section.domain {
        None => None,
        Some(d) if config.index.domains.contains(d.get_ref()) => Some(d.get_ref().clone()),
        Some(d) => {
            return Err(source.error_at(
                d.span(),
                format!(
                    "domain {:?} is not in subscriber_manager.domains",
                    d.get_ref()
                ),
            ))
        }
    };
    let mut properties = Vec::new();
    for p in &section.properties {
        let (attr, key) = match p.get_ref().split_once('=') {
            Some((a, k)) => (a.trim(), k.trim()),
            None => (p.get_ref().trim(), p.get_ref().trim()),
        };
        let def = dictionary.attribute(attr).ok_or_else(|| {
            source.error_at(p.span(), format!("unknown RADIUS attribute {attr:?}"))
        })?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(source.error_at(
                p.span(),
                format!("property key {key:?} must be printable ASCII without spaces"),
            ));
        }
        properties.push((def.id.clone(), def.name.clone(), key.to_owned()));
    }
    if *section.queue.get_ref() == 0 {
        return Err(source.error_at(section.queue.span(), "queue must be at least 1"));
    }
    Ok(RadiusLogins {
        servers,
        domain,
        properties,
        queue: *section.queue.get_ref(),
    })
}
