//! `[subscriber_services]`: the `alc.sub_svc` script, the RADIUS servers whose Access-Accepts
//! it handles, and the CoA listener that takes Alc-Sub-Serv-* CoA-Requests.

use crate::common::config::{ConfigDuration, ConfigError, Source};
use crate::daemon::coa::{CoaClient, CoaClientSection};
use brasa_aaa::EngineConfig;
use serde::Deserialize;
use serde_spanned::Spanned;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[subscriber_services]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriberServicesSection {
    /// The `alc.sub_svc` script, relative to this config file.
    pub script: Spanned<PathBuf>,
    /// Longest one run may take.
    #[serde(default = "default_time_limit")]
    pub time_limit: Spanned<ConfigDuration>,
    /// `[[radius.server]]` names whose Access-Accepts carrying Alc-Sub-Serv-Activate run it.
    #[serde(default)]
    pub servers: Vec<Spanned<String>>,
    /// Remove the Alc-Sub-Serv-* attributes from the Access-Accept before it reaches the NAS
    /// (default): brasa enforces the services, and a NAS that knows them must not enforce
    /// them a second time.
    #[serde(default = "default_true")]
    pub strip_attributes: bool,
    /// Accept-side runs waiting for the Python worker or the SM beyond which new ones are
    /// dropped (and counted).
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Where CoA-Requests for the subscriber services arrive (brasa is the NAS); the same
    /// address as `[dynamic_services] coa_listen` shares its listener.
    pub coa_listen: Option<SocketAddr>,
    /// The AAA servers allowed to send them.
    #[serde(default, rename = "coa_client")]
    pub coa_clients: Vec<CoaClientSection>,
}

fn default_time_limit() -> Spanned<ConfigDuration> {
    Spanned::new(0..0, ConfigDuration(Duration::from_secs(2)))
}
fn default_true() -> bool {
    true
}
fn default_queue() -> usize {
    65_536
}

/// A validated `[subscriber_services]`.
#[derive(Debug, Clone)]
pub struct SubscriberServicesResolved {
    /// The script file.
    pub script: PathBuf,
    /// Longest one run may take.
    pub time_limit: Duration,
    /// Indexes of the servers in `EngineConfig::servers`.
    pub servers: Vec<usize>,
    /// Remove Alc-Sub-Serv-* from Access-Accepts.
    pub strip_attributes: bool,
    /// Accept-side queue size.
    pub queue: usize,
    /// The domain subscribers named by an Access-Accept are created in when the SM does not
    /// hold them yet (the RADIUS login events' domain, or the default one).
    pub domain: String,
    /// CoA listener.
    pub coa_listen: Option<SocketAddr>,
    /// Its clients.
    pub coa_clients: Vec<CoaClient>,
}

/// Resolves the section: the script must exist, the servers must be `[[radius.server]]`s, the
/// SM must be configured (the services live in its records).
pub fn resolve(
    source: &Source,
    base: &Path,
    section: SubscriberServicesSection,
    radius: Option<&EngineConfig>,
    sm: Option<&super::super::sm_config::SmResolved>,
) -> Result<SubscriberServicesResolved, ConfigError> {
    let Some(sm) = sm else {
        return Err(source.error_at_path(
            "subscriber_services",
            "subscriber services live in the subscriber records: configure [subscriber_manager] too",
        ));
    };
    let script = base.join(section.script.get_ref());
    if !script.is_file() {
        return Err(source.error_at(
            section.script.span(),
            format!(
                "subscriber services script {} does not exist",
                script.display()
            ),
        ));
    }
    if section.time_limit.get_ref().0.is_zero() {
        return Err(source.error_at(section.time_limit.span(), "time_limit must be more than 0"));
    }
    let mut servers = Vec::new();
    for name in &section.servers {
        let Some(engine) = radius else {
            return Err(source.error_at(
                name.span(),
                "Access-Accepts come through the [radius] component: configure it in the same file",
            ));
        };
        servers.push(super::super::sm_config::server_index(source, engine, name)?);
    }
    if !section.coa_clients.is_empty() && section.coa_listen.is_none() {
        return Err(source.error_at_path(
            "subscriber_services.coa_client",
            "coa_client needs coa_listen: the address the CoA-Requests arrive at",
        ));
    }
    let domain = sm
        .radius
        .as_ref()
        .and_then(|logins| logins.domain.clone())
        .unwrap_or_else(|| brasa_subscriber::DEFAULT_DOMAIN.to_owned());
    Ok(SubscriberServicesResolved {
        script,
        time_limit: section.time_limit.get_ref().0,
        servers,
        strip_attributes: section.strip_attributes,
        queue: section.queue.max(1),
        domain,
        coa_listen: section.coa_listen,
        coa_clients: section
            .coa_clients
            .iter()
            .map(CoaClientSection::resolve)
            .collect(),
    })
}
