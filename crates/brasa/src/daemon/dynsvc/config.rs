//! `[dynamic_services]` of the `brasa run` config (Nokia SR OS dynamic data services:
//! `dynamic-services-policy`, `local-auth-db`, `host-lockout-policy`, the capture SAPs'
//! lockout policy, `timers setup-timeout`), resolved with `file:line:col` errors.

use crate::common::config::{ConfigDuration, ConfigError, Source};
use brasa_aaa::PoolConfig;
use brasa_dynsvc::acct::AcctSettings;
use brasa_dynsvc::local::{LocalIndex, LocalUser};
use brasa_dynsvc::{
    AcctOverride, Authentication, HostLockoutPolicy, LocalAuthDb, StatsType, TriggersConfig,
};
use brasa_services::{PortMap, SapId};
use serde::Deserialize;
use serde_spanned::Spanned;
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Access-Requests of data triggers in flight at once unless `max_access_requests` says:
/// enough for a burst of a thousand new VLANs against a server that does not answer, few
/// enough that a trigger flood cannot take every file descriptor (each holds its own UDP
/// socket until answered or timed out).
pub const DEFAULT_MAX_ACCESS_REQUESTS: u32 = 1024;

/// The largest `max_access_requests`: each request in flight holds a socket.
const MAX_ACCESS_REQUESTS: u32 = 16_384;

/// `[dynamic_services]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicServicesSection {
    /// `timers setup-timeout access-accept`: how long an authenticated trigger may take to get
    /// its SAP created.
    #[serde(default = "default_setup_timeout")]
    pub setup_timeout: ConfigDuration,
    /// Control-plane rate limit: new data triggers a second, over all capture SAPs.
    #[serde(default = "default_rate_limit")]
    pub rate_limit: Spanned<u32>,
    /// Burst of the control-plane rate limit.
    #[serde(default = "default_rate_burst")]
    pub rate_burst: Spanned<u32>,
    /// Most data triggers at once ("Reached data-trigger system limit").
    #[serde(default = "default_max_triggers")]
    pub max_triggers: usize,
    /// Most Access-Requests of data triggers in flight at once; the others wait their turn.
    #[serde(default = "default_max_access_requests")]
    pub max_access_requests: Spanned<u32>,
    /// NAS-Identifier of the Access-Requests and Accounting-Requests.
    #[serde(default = "default_nas_identifier")]
    pub nas_identifier: String,
    /// NAS-IP-Address (sent to IPv4 servers).
    pub nas_ip_address: Option<Ipv4Addr>,
    /// NAS-IPv6-Address (sent to IPv6 servers).
    pub nas_ipv6_address: Option<Ipv6Addr>,
    /// Longest one script run may take.
    #[serde(default = "default_script_time_limit")]
    pub script_time_limit: ConfigDuration,
    /// Where CoA and Disconnect requests for the dynamic services arrive (brasa is the NAS).
    pub coa_listen: Option<SocketAddr>,
    /// The AAA servers allowed to send them.
    #[serde(default, rename = "coa_client")]
    pub coa_clients: Vec<CoaClientSection>,
    /// `dynamic-services-policy NAME`.
    #[serde(default, rename = "policy")]
    pub policies: Vec<PolicySection>,
    /// Capture SAPs' data-trigger settings the service text form does not carry.
    #[serde(default, rename = "capture_sap")]
    pub capture_saps: Vec<CaptureSapSection>,
    /// `host-lockout-policy NAME`.
    #[serde(default, rename = "host_lockout_policy")]
    pub host_lockout_policies: Vec<LockoutSection>,
    /// `local-auth-db NAME`.
    #[serde(default, rename = "local_auth_db")]
    pub local_auth_dbs: Vec<LocalAuthDbSection>,
}

fn default_setup_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(30))
}
fn default_rate_limit() -> Spanned<u32> {
    Spanned::new(0..0, TriggersConfig::default().rate_per_sec)
}
fn default_rate_burst() -> Spanned<u32> {
    Spanned::new(0..0, TriggersConfig::default().burst)
}
fn default_max_triggers() -> usize {
    TriggersConfig::default().max_triggers
}
fn default_max_access_requests() -> Spanned<u32> {
    Spanned::new(0..0, DEFAULT_MAX_ACCESS_REQUESTS)
}
fn default_nas_identifier() -> String {
    "brasa".to_owned()
}
fn default_script_time_limit() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(2))
}

/// `[[dynamic_services.coa_client]]`
pub use crate::daemon::coa::CoaClientSection;

/// `[[dynamic_services.policy]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// Its name (capture SAPs' `dynamic-services-policy`, Alc-Dyn-Serv-Policy).
    pub name: Spanned<String>,
    /// The Python script (`alc.dyn`), relative to this config file.
    pub script: Spanned<PathBuf>,
    /// `service-range START END`: the ids `dyn.select_free_id('service-id')` hands out.
    pub service_range: Option<Spanned<[u32; 2]>>,
    /// The ids `dyn.select_free_id('ip-filter-id' | 'ipv6-filter-id' | 'mac-filter-id')`
    /// hand out.
    pub filter_range: Option<Spanned<[u32; 2]>>,
    /// `authentication`: RADIUS or a local-auth-db.
    pub authentication: Option<Spanned<AuthenticationSection>>,
    /// `accounting 1` and `accounting 2`.
    #[serde(default)]
    pub accounting: Vec<Spanned<AccountingSection>>,
}

/// `authentication` of a dynamic-services-policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthenticationSection {
    /// The `[[radius.pool]]` the Access-Requests go to.
    pub radius_pool: Option<Spanned<String>>,
    /// The User-Password of every Access-Request.
    pub password: Option<String>,
    /// A `[[dynamic_services.local_auth_db]]` (exclusive with `radius_pool`).
    pub local_auth_db: Option<Spanned<String>>,
}

/// `accounting N` of a dynamic-services-policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountingSection {
    /// The `[[radius.pool]]` (its `acct_server`s) the records go to.
    pub radius_pool: Spanned<String>,
    /// `off`, `time` or `volume-time`.
    #[serde(default = "default_stats_type")]
    pub stats_type: Spanned<String>,
    /// Interim-Update interval; none when absent.
    pub update_interval: Option<ConfigDuration>,
}

fn default_stats_type() -> Spanned<String> {
    Spanned::new(0..0, "volume-time".to_owned())
}

/// `[[dynamic_services.capture_sap]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSapSection {
    /// The capture SAP (`eth1:*.*`), as in the service text form.
    pub sap: Spanned<String>,
    /// Its `host-lockout-policy`.
    pub host_lockout_policy: Option<Spanned<String>>,
    /// `debug service dynamic-services capture-sap SAP [encap-val Q[.Q]] [mode M]`: log its
    /// data trigger events.
    pub debug: Option<DebugSection>,
}

/// The debug filter of a capture SAP.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugSection {
    /// Only the triggers of this encapsulation (`qtag` for the outer tag, or `qtag.qtag`).
    pub encap_val: Option<Spanned<String>>,
    /// `all` (the default) or `dropped-only`.
    pub mode: Option<Spanned<String>>,
}

/// Which data trigger events of a capture SAP are logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureDebug {
    /// Only triggers whose SAP encapsulation is this (`200.300`), or whose outer tag is this
    /// (`200`); every trigger when `None`.
    pub encap_val: Option<String>,
    /// Only the dropped data triggers.
    pub dropped_only: bool,
}

/// Why a debug filter (`encap-val`, `mode`) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DebugFilterError {
    /// `encap-val` is not `qtag` or `qtag.qtag`.
    #[error("encap_val {0:?} is not qtag or qtag.qtag, each 0 to 4095")]
    EncapVal(String),
    /// `mode` is neither `all` nor `dropped-only`.
    #[error("mode {0:?} is not \"all\" or \"dropped-only\"")]
    Mode(String),
}

impl CaptureDebug {
    /// The filter of `encap-val` (every trigger when `None`) and `mode` (`all` when `None`).
    pub fn new(encap_val: Option<&str>, mode: Option<&str>) -> Result<Self, DebugFilterError> {
        if let Some(val) = encap_val {
            let qtags: Vec<&str> = val.split('.').collect();
            if qtags.len() > 2
                || qtags
                    .iter()
                    .any(|q| !matches!(q.parse::<u16>(), Ok(0..=4095)))
            {
                return Err(DebugFilterError::EncapVal(val.to_owned()));
            }
        }
        let dropped_only = match mode {
            None | Some("all") => false,
            Some("dropped-only") => true,
            Some(other) => return Err(DebugFilterError::Mode(other.to_owned())),
        };
        Ok(CaptureDebug {
            encap_val: encap_val.map(str::to_owned),
            dropped_only,
        })
    }

    /// `all` or `dropped-only`.
    pub fn mode(&self) -> &'static str {
        if self.dropped_only {
            "dropped-only"
        } else {
            "all"
        }
    }

    /// Whether an event of `trigger` (dropped or not) is logged.
    pub fn logs(&self, trigger: &SapId, dropped: bool) -> bool {
        if self.dropped_only && !dropped {
            return false;
        }
        let Some(val) = &self.encap_val else {
            return true;
        };
        let text = trigger.to_string();
        let encap = text.split_once(':').map_or("", |(_, encap)| encap);
        encap == val || encap.split('.').next() == Some(val.as_str())
    }
}

/// `[[dynamic_services.host_lockout_policy]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockoutSection {
    /// Its name.
    pub name: Spanned<String>,
    /// `lockout-time min`.
    pub lockout_time_min: Option<ConfigDuration>,
    /// `lockout-time max`.
    pub lockout_time_max: Option<ConfigDuration>,
    /// `lockout-reset-time`.
    pub lockout_reset_time: Option<ConfigDuration>,
    /// `max-lockout-hosts`.
    pub max_lockout_hosts: Option<usize>,
}

/// `[[dynamic_services.local_auth_db]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalAuthDbSection {
    /// Its name.
    pub name: Spanned<String>,
    /// `user-name NAME` entries.
    #[serde(default, rename = "user")]
    pub users: Vec<Spanned<LocalUserSection>>,
}

/// `user-name NAME` of a local-auth-db.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalUserSection {
    /// The user name: the data trigger's SAP id.
    pub name: Spanned<String>,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// A shut-down entry authenticates nothing.
    #[serde(default)]
    pub shutdown: bool,
    /// `dynamic-services-policy`, `sap-id`, `script-parameters-1..4` per index.
    #[serde(default, rename = "index")]
    pub indexes: Vec<Spanned<LocalIndexSection>>,
}

/// An index of a local-auth-db entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalIndexSection {
    /// Index number.
    pub index: u32,
    /// `sap-id` (`#` wildcards allowed).
    pub sap_id: String,
    /// Its dynamic-services-policy; the capture SAP's when absent.
    pub policy: Option<Spanned<String>>,
    /// `script-parameters-1` .. `-4`, concatenated for the script.
    #[serde(default)]
    pub script_parameters: Vec<String>,
    /// Accounting 1 and 2 overrides.
    #[serde(default)]
    pub accounting: Vec<LocalAccountingSection>,
}

/// An accounting override of a local-auth-db index.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalAccountingSection {
    /// `off`, `time` or `volume-time`.
    pub stats_type: Option<String>,
    /// Interim-Update interval (`0s`: none).
    pub update_interval: Option<ConfigDuration>,
}

/// A RADIUS destination of a policy: a pool with its servers.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The pool.
    pub pool: PoolConfig,
    /// Stats type and Interim-Update interval.
    pub settings: AcctSettings,
}

/// A resolved dynamic-services-policy.
#[derive(Debug, Clone)]
pub struct PolicyResolved {
    /// Its name.
    pub name: String,
    /// The script file.
    pub script: PathBuf,
    /// `dyn.select_free_id('service-id')` range.
    pub service_range: Option<RangeInclusive<u32>>,
    /// `dyn.select_free_id('*-filter-id')` range.
    pub filter_range: Option<RangeInclusive<u32>>,
    /// How triggers are authenticated.
    pub authentication: Option<Authentication>,
    /// The RADIUS pool when `authentication` is RADIUS.
    pub radius_pool: Option<PoolConfig>,
    /// Accounting destinations 1 and 2.
    pub accounting: [Option<Destination>; 2],
}

fn capture_debug_of(source: &Source, debug: &DebugSection) -> Result<CaptureDebug, ConfigError> {
    let encap_val = debug.encap_val.as_ref();
    let mode = debug.mode.as_ref();
    CaptureDebug::new(
        encap_val.map(|v| v.get_ref().as_str()),
        mode.map(|m| m.get_ref().as_str()),
    )
    .map_err(|err| {
        let span = match (&err, encap_val, mode) {
            (DebugFilterError::EncapVal(_), Some(val), _) => val.span(),
            (DebugFilterError::Mode(_), _, Some(mode)) => mode.span(),
            _ => 0..0,
        };
        source.error_at(span, err.to_string())
    })
}

/// A checked `[dynamic_services]`.
#[derive(Debug, Clone)]
pub struct DynamicServicesResolved {
    /// The trigger machine's settings.
    pub triggers: TriggersConfig,
    /// The policies by name.
    pub policies: BTreeMap<String, PolicyResolved>,
    /// The host-lockout-policies by name.
    pub lockout_policies: BTreeMap<String, HostLockoutPolicy>,
    /// The host-lockout-policy of each capture SAP that names one.
    pub capture_lockout: HashMap<SapId, String>,
    /// The debug filter of each capture SAP with `debug`.
    pub capture_debug: HashMap<SapId, CaptureDebug>,
    /// The local-auth-dbs by name.
    pub local_auth_dbs: BTreeMap<String, LocalAuthDb>,
    /// NAS-IP-Address, NAS-IPv6-Address, NAS-Identifier.
    pub nas: brasa_dynsvc::NasIdentity,
    /// Longest one script run may take.
    pub script_time_limit: Duration,
    /// Most Access-Requests of data triggers in flight at once.
    pub max_access_requests: usize,
    /// The CoA and Disconnect listener.
    pub coa_listen: Option<SocketAddr>,
    /// Who may send CoA and Disconnect requests.
    pub coa_clients: Vec<crate::daemon::coa::CoaClient>,
}

fn stats_type(text: &str) -> Option<StatsType> {
    match text {
        "off" => Some(StatsType::Off),
        "time" => Some(StatsType::Time),
        "volume-time" => Some(StatsType::VolumeTime),
        _ => None,
    }
}

fn range(
    source: &Source,
    value: &Option<Spanned<[u32; 2]>>,
) -> Result<Option<RangeInclusive<u32>>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let [start, end] = *value.get_ref();
    if start == 0 || start > end {
        return Err(source.error_at(
            value.span(),
            format!("expected [START, END] with 1 <= START <= END, not [{start}, {end}]"),
        ));
    }
    Ok(Some(start..=end))
}

fn duplicate<'a>(
    source: &Source,
    names: impl IntoIterator<Item = &'a Spanned<String>>,
    what: &str,
) -> Result<(), ConfigError> {
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        if !seen.insert(name.get_ref().as_str()) {
            return Err(source.error_at(
                name.span(),
                format!("a second {what} named {:?}", name.get_ref()),
            ));
        }
    }
    Ok(())
}

/// The `[[radius.pool]]` a setting names, or an error at the name.
pub(crate) fn pool_named(
    source: &Source,
    pools: &[PoolConfig],
    name: &Spanned<String>,
) -> Result<PoolConfig, ConfigError> {
    pools
        .iter()
        .find(|p| p.name == *name.get_ref())
        .cloned()
        .ok_or_else(|| {
            source.error_at(
                name.span(),
                if pools.is_empty() {
                    format!(
                        "no [[radius.pool]] named {:?}: this config has no [[radius.pool]]",
                        name.get_ref()
                    )
                } else {
                    format!(
                        "no [[radius.pool]] named {:?}; expected one of: {}",
                        name.get_ref(),
                        pools
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
            )
        })
}

/// Checks `[dynamic_services]` against the RADIUS pools and the services' port map.
pub fn resolve(
    source: &Source,
    base: &Path,
    section: DynamicServicesSection,
    pools: &[PoolConfig],
    port_map: &PortMap,
) -> Result<DynamicServicesResolved, ConfigError> {
    duplicate(
        source,
        section.policies.iter().map(|p| &p.name),
        "dynamic-services policy",
    )?;
    duplicate(
        source,
        section.host_lockout_policies.iter().map(|p| &p.name),
        "host-lockout-policy",
    )?;
    duplicate(
        source,
        section.local_auth_dbs.iter().map(|p| &p.name),
        "local-auth-db",
    )?;
    let pool = |name: &Spanned<String>| pool_named(source, pools, name);
    for rate in [&section.rate_limit, &section.rate_burst] {
        if *rate.get_ref() == 0 {
            return Err(source.error_at(rate.span(), "expected a number above 0"));
        }
    }
    let in_flight = &section.max_access_requests;
    if !(1..=MAX_ACCESS_REQUESTS).contains(in_flight.get_ref()) {
        return Err(source.error_at(
            in_flight.span(),
            format!("expected a number of Access-Requests from 1 to {MAX_ACCESS_REQUESTS}"),
        ));
    }
    let db_names: Vec<&str> = section
        .local_auth_dbs
        .iter()
        .map(|d| d.name.get_ref().as_str())
        .collect();
    let mut policies = BTreeMap::new();
    for policy in &section.policies {
        let mut radius_pool = None;
        let authentication = match &policy.authentication {
            None => None,
            Some(auth) => {
                let span = auth.span();
                let auth = auth.get_ref();
                match (&auth.radius_pool, &auth.local_auth_db) {
                    (Some(name), None) => {
                        let found = pool(name)?;
                        if found.auth_servers.is_empty() {
                            return Err(source.error_at(
                                name.span(),
                                format!("[[radius.pool]] {:?} has no auth_server", name.get_ref()),
                            ));
                        }
                        radius_pool = Some(found);
                        Some(Authentication::Radius {
                            server_policy: name.get_ref().clone(),
                            password: auth.password.clone().unwrap_or_default().into_bytes(),
                        })
                    }
                    (None, Some(db)) => {
                        if !db_names.contains(&db.get_ref().as_str()) {
                            return Err(source.error_at(
                                db.span(),
                                format!("no local_auth_db named {:?}", db.get_ref()),
                            ));
                        }
                        Some(Authentication::Local {
                            db: db.get_ref().clone(),
                        })
                    }
                    _ => {
                        return Err(source.error_at(
                            span,
                            "expected exactly one of `radius_pool` or `local_auth_db`",
                        ))
                    }
                }
            }
        };
        if policy.accounting.len() > 2 {
            return Err(source.error_at(
                policy.accounting[2].span(),
                "at most two accounting destinations",
            ));
        }
        let mut accounting: [Option<Destination>; 2] = [None, None];
        for (slot, destination) in accounting.iter_mut().zip(&policy.accounting) {
            let d = destination.get_ref();
            let found = pool(&d.radius_pool)?;
            if found.acct_servers.is_empty() {
                return Err(source.error_at(
                    d.radius_pool.span(),
                    format!(
                        "[[radius.pool]] {:?} has no acct_server",
                        d.radius_pool.get_ref()
                    ),
                ));
            }
            let stats = stats_type(d.stats_type.get_ref()).ok_or_else(|| {
                source.error_at(
                    d.stats_type.span(),
                    "expected \"off\", \"time\" or \"volume-time\"",
                )
            })?;
            *slot = Some(Destination {
                pool: found,
                settings: AcctSettings {
                    stats_type: stats,
                    interim: d.update_interval.map(|i| i.0).filter(|i| !i.is_zero()),
                },
            });
        }
        let script = base.join(policy.script.get_ref());
        if !script.is_file() {
            return Err(source.error_at(
                policy.script.span(),
                format!("no script file {}", script.display()),
            ));
        }
        policies.insert(
            policy.name.get_ref().clone(),
            PolicyResolved {
                name: policy.name.get_ref().clone(),
                script,
                service_range: range(source, &policy.service_range)?,
                filter_range: range(source, &policy.filter_range)?,
                authentication,
                radius_pool,
                accounting,
            },
        );
    }
    let mut lockout_policies = BTreeMap::new();
    for lockout in &section.host_lockout_policies {
        let defaults = HostLockoutPolicy::default();
        let policy = HostLockoutPolicy {
            lockout_time_min: lockout
                .lockout_time_min
                .map_or(defaults.lockout_time_min, |d| d.0),
            lockout_time_max: lockout
                .lockout_time_max
                .map_or(defaults.lockout_time_max, |d| d.0),
            lockout_reset_time: lockout
                .lockout_reset_time
                .map_or(defaults.lockout_reset_time, |d| d.0),
            max_lockout_hosts: lockout
                .max_lockout_hosts
                .unwrap_or(defaults.max_lockout_hosts),
        };
        if policy.lockout_time_min > policy.lockout_time_max {
            return Err(source.error_at(
                lockout.name.span(),
                "lockout_time_min is longer than lockout_time_max",
            ));
        }
        lockout_policies.insert(lockout.name.get_ref().clone(), policy);
    }
    let mut capture_lockout = HashMap::new();
    let mut capture_debug = HashMap::new();
    for capture in &section.capture_saps {
        let sap = SapId::parse_mapped(capture.sap.get_ref(), port_map)
            .map_err(|err| source.error_at(capture.sap.span(), err.to_string()))?;
        if !sap.has_wildcard() {
            return Err(source.error_at(
                capture.sap.span(),
                "a capture SAP has a wildcard tag (port:*, port:*.*, port:N.*)",
            ));
        }
        if let Some(name) = &capture.host_lockout_policy {
            if !lockout_policies.contains_key(name.get_ref()) {
                return Err(source.error_at(
                    name.span(),
                    format!("no host_lockout_policy named {:?}", name.get_ref()),
                ));
            }
            capture_lockout.insert(sap.clone(), name.get_ref().clone());
        }
        if let Some(debug) = &capture.debug {
            capture_debug.insert(sap, capture_debug_of(source, debug)?);
        }
    }
    let mut local_auth_dbs = BTreeMap::new();
    for db in &section.local_auth_dbs {
        let mut local = LocalAuthDb::new();
        for user in &db.users {
            let span = user.span();
            let user = user.get_ref();
            let mut indexes = BTreeMap::new();
            for index in &user.indexes {
                let ispan = index.span();
                let index = index.get_ref();
                if let Some(policy) = &index.policy {
                    if !policies.contains_key(policy.get_ref()) {
                        return Err(source.error_at(
                            policy.span(),
                            format!("no dynamic_services.policy named {:?}", policy.get_ref()),
                        ));
                    }
                }
                if index.script_parameters.len() > 4 || index.accounting.len() > 2 {
                    return Err(source.error_at(
                        ispan,
                        "at most four script_parameters and two accounting overrides",
                    ));
                }
                let mut script_parameters: [String; 4] = Default::default();
                for (slot, text) in script_parameters.iter_mut().zip(&index.script_parameters) {
                    slot.clone_from(text);
                }
                let mut accounting = [AcctOverride::default(); 2];
                for (slot, over) in accounting.iter_mut().zip(&index.accounting) {
                    slot.stats_type = match &over.stats_type {
                        Some(text) => Some(stats_type(text).ok_or_else(|| {
                            source.error_at(
                                ispan.clone(),
                                format!("stats_type {text:?}: expected \"off\", \"time\" or \"volume-time\""),
                            )
                        })?),
                        None => None,
                    };
                    slot.interim_secs = over
                        .update_interval
                        .map(|d| u32::try_from(d.0.as_secs()).unwrap_or(u32::MAX));
                }
                if indexes.contains_key(&index.index) {
                    return Err(source.error_at(ispan, format!("a second index {}", index.index)));
                }
                indexes.insert(
                    index.index,
                    LocalIndex {
                        sap_id: index.sap_id.clone(),
                        policy: index.policy.as_ref().map(|p| p.get_ref().clone()),
                        script_parameters,
                        accounting,
                    },
                );
            }
            local
                .insert(
                    user.name.get_ref(),
                    LocalUser {
                        description: user.description.clone(),
                        indexes,
                        shutdown: user.shutdown,
                    },
                )
                .map_err(|err| source.error_at(span, err.to_string()))?;
        }
        local_auth_dbs.insert(db.name.get_ref().clone(), local);
    }
    let session_id_prefix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    Ok(DynamicServicesResolved {
        triggers: TriggersConfig {
            setup_timeout: section.setup_timeout.0,
            max_triggers: section.max_triggers,
            rate_per_sec: *section.rate_limit.get_ref(),
            burst: *section.rate_burst.get_ref(),
            session_id_prefix,
        },
        policies,
        lockout_policies,
        capture_lockout,
        capture_debug,
        local_auth_dbs,
        nas: brasa_dynsvc::NasIdentity {
            ipv4: section.nas_ip_address,
            ipv6: section.nas_ipv6_address,
            identifier: section.nas_identifier,
        },
        script_time_limit: section.script_time_limit.0,
        max_access_requests: *section.max_access_requests.get_ref() as usize,
        coa_listen: section.coa_listen,
        coa_clients: section
            .coa_clients
            .iter()
            .map(CoaClientSection::resolve)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        dynamic_services: DynamicServicesSection,
    }

    /// Resolves `text` with a script file next to it and no RADIUS pools; the error as shown.
    fn resolve_text(text: &str) -> Result<DynamicServicesResolved, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("epipe.py"), "from alc import dyn\n").unwrap();
        let source = Source::from_text("brasa.toml", text);
        let file: File = source.parse().map_err(|err| err.to_string())?;
        resolve(
            &source,
            dir.path(),
            file.dynamic_services,
            &[],
            &PortMap::default(),
        )
        .map_err(|err| err.to_string())
    }

    #[test]
    fn a_policy_with_a_local_auth_db_and_a_lockout_resolves() {
        let resolved = resolve_text(
            r##"[dynamic_services]
setup_timeout = "5s"
[[dynamic_services.policy]]
name = "p"
script = "epipe.py"
service_range = [10, 20]
authentication = { local_auth_db = "db" }
[[dynamic_services.capture_sap]]
sap = "eth1:*.*"
host_lockout_policy = "lock"
[[dynamic_services.host_lockout_policy]]
name = "lock"
lockout_time_min = "1s"
[[dynamic_services.local_auth_db]]
name = "db"
[[dynamic_services.local_auth_db.user]]
name = "eth1:1.2"
[[dynamic_services.local_auth_db.user.index]]
index = 1
sap_id = "#:#.#"
script_parameters = ["k={", "}"]
"##,
        )
        .unwrap();
        assert_eq!(resolved.triggers.setup_timeout, Duration::from_secs(5));
        let policy = &resolved.policies["p"];
        assert_eq!(policy.service_range, Some(10..=20));
        assert_eq!(
            policy.authentication,
            Some(Authentication::Local { db: "db".into() })
        );
        assert_eq!(
            resolved.lockout_policies["lock"].lockout_time_min,
            Duration::from_secs(1)
        );
        let capture = SapId::parse("eth1:*.*").unwrap();
        assert_eq!(resolved.capture_lockout[&capture], "lock");
        let entry = resolved.local_auth_dbs["db"].get("eth1:1.2").unwrap();
        assert_eq!(entry.indexes[&1].script_parameters[1], "}");
    }

    #[test]
    fn the_debug_filter_matches_the_encapsulation_or_its_outer_tag_and_the_mode() {
        let sap = |text: &str| SapId::parse(text).unwrap();
        let filter = |encap_val: Option<&str>, dropped_only| CaptureDebug {
            encap_val: encap_val.map(str::to_owned),
            dropped_only,
        };
        assert!(filter(None, false).logs(&sap("eth1:7.8"), false));
        assert!(filter(Some("7"), false).logs(&sap("eth1:7.8"), false));
        assert!(filter(Some("7.8"), false).logs(&sap("eth1:7.8"), false));
        assert!(!filter(Some("7.9"), false).logs(&sap("eth1:7.8"), true));
        assert!(!filter(Some("8"), false).logs(&sap("eth1:7.8"), true));
        assert!(!filter(Some("7"), true).logs(&sap("eth1:7.8"), false));
        assert!(filter(Some("7"), true).logs(&sap("eth1:7.8"), true));
    }

    #[test]
    fn errors_name_the_line_and_column_and_what_was_expected() {
        let policy = |extra: &str| {
            format!(
                "[dynamic_services]\n[[dynamic_services.policy]]\nname = \"p\"\nscript = \"epipe.py\"\n{extra}\n"
            )
        };
        let cases = [
            (
                policy("authentication = { radius_pool = \"aaa\" }"),
                "brasa.toml:5:34: no [[radius.pool]] named \"aaa\": this config has no",
            ),
            (
                policy("authentication = { radius_pool = \"aaa\", local_auth_db = \"db\" }"),
                "brasa.toml:5:18: expected exactly one of `radius_pool` or `local_auth_db`",
            ),
            (
                policy("service_range = [20, 10]"),
                "brasa.toml:5:17: expected [START, END] with 1 <= START <= END",
            ),
            (
                policy("authentication = { local_auth_db = \"nope\" }"),
                "brasa.toml:5:36: no local_auth_db named \"nope\"",
            ),
            (
                "[dynamic_services]\n[[dynamic_services.policy]]\nname = \"p\"\nscript = \"missing.py\"\n"
                    .to_string(),
                "brasa.toml:4:10: no script file",
            ),
            (
                "[dynamic_services]\n[[dynamic_services.capture_sap]]\nsap = \"eth1:5\"\n"
                    .to_string(),
                "brasa.toml:3:7: a capture SAP has a wildcard tag",
            ),
            (
                "[dynamic_services]\n[[dynamic_services.capture_sap]]\nsap = \"eth1:*.*\"\ndebug = { encap_val = \"200.5000\" }\n"
                    .to_string(),
                "brasa.toml:4:23: encap_val \"200.5000\" is not qtag or qtag.qtag, each 0 to 4095",
            ),
            (
                "[dynamic_services]\n[[dynamic_services.capture_sap]]\nsap = \"eth1:*.*\"\ndebug = { mode = \"some\" }\n"
                    .to_string(),
                "brasa.toml:4:18: mode \"some\" is not \"all\" or \"dropped-only\"",
            ),
            (
                "[dynamic_services]\nrate_limit = 0\n".to_string(),
                "brasa.toml:2:14: expected a number above 0",
            ),
            (
                "[dynamic_services]\nmax_access_requests = 0\n".to_string(),
                "brasa.toml:2:23: expected a number of Access-Requests from 1 to 16384",
            ),
            (
                "[dynamic_services]\nmax_access_requests = 20000\n".to_string(),
                "brasa.toml:2:23: expected a number of Access-Requests from 1 to 16384",
            ),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .map(|(text, expected)| (resolve_text(text).unwrap_err(), expected))
            .filter(|(error, expected)| !error.starts_with(*expected))
            .map(|(error, expected)| format!("{error}\n  expected {expected}"))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
