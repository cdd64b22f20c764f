//! The `brasa run` config file: its TOML model and its resolution into engine configs, with
//! every error located at `file:line:col`.

use crate::common::access::{ApiConfig, ApiSection};
use crate::common::config::{ConfigDuration, ConfigError, Source};
use brasa_aaa::{
    ClientConfig, EngineConfig, Handler, LoadBalance, LocalDatabase, LocalUser, Policy, PoolConfig,
    RewritePolicy, RewriteRule, ServerConfig, UpstreamConfig,
};
use brasa_radius::{Code, Dictionary, Pair};
use serde::Deserialize;
use serde_spanned::Spanned;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The embedded defaults: a standalone RADIUS server on 127.0.0.1 answering from a local user.
pub const EMBEDDED_DEFAULTS: &str = include_str!("../../../../examples/quickstart.toml");

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonFile {
    /// Where components keep state (each in its own subfolder).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Management API, console and their access control.
    #[serde(default)]
    pub api: ApiSection,
    /// RADIUS server/proxy; absent means no RADIUS component.
    pub radius: Option<RadiusSection>,
    /// Subscriber manager; absent means no SM component.
    pub subscriber_manager: Option<super::sm_config::SmSection>,
    /// Python scripts and policies (with their caches) that RADIUS servers name.
    pub python: Option<super::python::PythonSection>,
    /// The data plane hosted by this daemon (its access ports carry the services).
    pub dataplane: Option<Spanned<super::dataplane::DataplaneSection>>,
    /// Static services and the SR OS port map (`[service.port_map]`, `[[service.epipe]]`, …).
    pub service: Option<brasa_services::toml::ServiceSection>,
    /// Filters (`[[filter.ip]]`, `[[filter.ipv6]]`, `[[filter.mac]]`).
    pub filter: Option<brasa_services::toml::FilterSection>,
    /// QoS policies (`[[qos.sap_ingress]]`, `[[qos.sap_egress]]`).
    pub qos: Option<brasa_services::toml::QosSection>,
    /// Dynamic data services: policies, local-auth-dbs, host-lockout-policies.
    pub dynamic_services: Option<super::dynsvc::config::DynamicServicesSection>,
    /// Subscriber services (PCC rules): the `alc.sub_svc` script, the servers whose
    /// Access-Accepts run it, the CoA listener.
    pub subscriber_services: Option<super::subsvc::config::SubscriberServicesSection>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./brasa-data")
}

/// The management API's default address in `brasa run`.
pub fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7780))
}

/// `[radius]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusSection {
    /// FreeRADIUS dictionary files merged over the built-in dictionaries, in order.
    #[serde(default)]
    pub dictionaries: Vec<Spanned<PathBuf>>,
    /// How long answered requests are remembered to answer retransmissions.
    #[serde(default = "default_duplicate_window")]
    pub duplicate_window: ConfigDuration,
    /// Where CoA/Disconnect requests from AAA servers arrive (relayed to the NAS).
    pub coa_listen: Option<SocketAddr>,
    /// NAS clients.
    #[serde(default, rename = "client")]
    pub clients: Vec<ClientSection>,
    /// Servers (listeners and their handler).
    #[serde(default, rename = "server")]
    pub servers: Vec<ServerSection>,
    /// Local user databases.
    #[serde(default, rename = "local")]
    pub locals: Vec<LocalSection>,
    /// Upstream pools.
    #[serde(default, rename = "pool")]
    pub pools: Vec<PoolSection>,
    /// Attribute rewrite policies.
    #[serde(default, rename = "policy")]
    pub policies: Vec<PolicySection>,
}

fn default_duplicate_window() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(5))
}

/// `[[radius.client]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    /// Name in statistics and logs.
    pub name: String,
    /// Address or prefix (`127.0.0.1`, `127.0.0.0/8`, `::1`).
    pub address: Spanned<String>,
    /// Shared secret.
    pub secret: String,
    /// Require a valid Message-Authenticator in every Access-Request.
    #[serde(default)]
    pub require_message_authenticator: bool,
    /// The NAS's CoA/Disconnect port.
    #[serde(default = "default_coa_port")]
    pub coa_port: u16,
}

fn default_coa_port() -> u16 {
    3799
}

/// `[[radius.server]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Name in statistics and logs.
    pub name: Spanned<String>,
    /// Access-Request socket.
    pub auth_listen: Option<SocketAddr>,
    /// Accounting-Request socket.
    pub acct_listen: Option<SocketAddr>,
    /// Name of the local database answering (exclusive with `proxy`).
    pub local: Option<Spanned<String>>,
    /// Name of the upstream pool proxied to (exclusive with `local`).
    pub proxy: Option<Spanned<String>>,
    /// Name of the rewrite policy applied at every hook.
    pub policy: Option<Spanned<String>>,
    /// Name of the `[[python.policy]]` whose scripts run at its bound hooks.
    pub python_policy: Option<Spanned<String>>,
}

/// `[[radius.local]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSection {
    /// Name servers refer to.
    pub name: String,
    /// A separate TOML file of `[[user]]` tables (relative to this config file).
    pub users_file: Option<Spanned<PathBuf>>,
    /// The accounting log, relative to `<data_dir>/radius/`.
    #[serde(default = "default_accounting_log")]
    pub accounting_log: PathBuf,
    /// Users defined inline.
    #[serde(default, rename = "user")]
    pub users: Vec<UserSection>,
}

fn default_accounting_log() -> PathBuf {
    PathBuf::from("accounting.jsonl")
}

/// `[[radius.local.user]]`, or `[[user]]` in a users file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSection {
    /// User-Name.
    pub name: Spanned<String>,
    /// Cleartext password (PAP and CHAP); absent means no password check.
    pub password: Option<String>,
    /// `Name = value` pairs the request must carry.
    #[serde(default)]
    pub check: Vec<Spanned<String>>,
    /// `Name = value` pairs added to the Access-Accept.
    #[serde(default)]
    pub reply: Vec<Spanned<String>>,
}

/// A users file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default, rename = "user")]
    users: Vec<UserSection>,
}

/// `[[radius.pool]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    /// Name servers refer to.
    pub name: String,
    /// `failover`, `round-robin` or `client-balance`.
    #[serde(default = "default_load_balance")]
    pub load_balance: Spanned<String>,
    /// Time to wait for an answer.
    #[serde(default = "default_timeout")]
    pub timeout: ConfigDuration,
    /// Further attempts after the first, each on the next live server.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Consecutive timeouts that make a server dead.
    #[serde(default = "default_dead_after")]
    pub dead_after_timeouts: u32,
    /// Status-Server probe interval for dead servers; `"0s"` disables probing.
    #[serde(default = "default_status_check")]
    pub status_check_interval: ConfigDuration,
    /// Without probing, how long a dead server rests.
    #[serde(default = "default_revive")]
    pub revive_after: ConfigDuration,
    /// Authentication servers.
    #[serde(default, rename = "auth_server")]
    pub auth_servers: Vec<UpstreamSection>,
    /// Accounting servers.
    #[serde(default, rename = "acct_server")]
    pub acct_servers: Vec<UpstreamSection>,
}

fn default_load_balance() -> Spanned<String> {
    Spanned::new(0..0, "failover".to_string())
}
fn default_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(3))
}
fn default_retries() -> u32 {
    2
}
fn default_dead_after() -> u32 {
    3
}
fn default_status_check() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(10))
}
fn default_revive() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}

/// `[[radius.pool.auth_server]]` / `[[radius.pool.acct_server]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// Name in statistics and logs (defaults to the address).
    pub name: Option<String>,
    /// Address and port.
    pub address: SocketAddr,
    /// Shared secret.
    pub secret: String,
}

/// `[[radius.policy]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// Name servers refer to.
    pub name: String,
    /// Rules, applied in order.
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleSection>,
}

/// `[[radius.policy.rule]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    /// Message types (`access-request`, `access-accept`, …); empty means all.
    #[serde(default)]
    pub message: Vec<Spanned<String>>,
    /// `egress` (towards the AAA server) or `ingress` (from it); absent means both.
    pub direction: Option<Spanned<String>>,
    /// Client names; empty means all.
    #[serde(default)]
    pub client: Vec<String>,
    /// Attribute names to remove.
    #[serde(default)]
    pub remove: Vec<Spanned<String>>,
    /// `Name = value` pairs replacing existing instances.
    #[serde(default)]
    pub set: Vec<Spanned<String>>,
    /// `Name = value` pairs appended.
    #[serde(default)]
    pub add: Vec<Spanned<String>>,
    /// Drop matching packets.
    #[serde(default)]
    pub drop: bool,
}

/// A validated daemon config.
pub struct Resolved {
    /// Management API: address, TLS, users and tokens.
    pub api: ApiConfig,
    /// State folder.
    pub data_dir: PathBuf,
    /// The RADIUS component, if configured.
    pub radius: Option<(EngineConfig, Arc<Dictionary>)>,
    /// The subscriber manager, if configured.
    pub subscriber_manager: Option<super::sm_config::SmResolved>,
    /// Python policies and their caches, if configured.
    pub python: Option<super::python::ResolvedPython>,
    /// The service data plane, if `[dataplane]` is configured.
    pub services: Option<super::services::ServicesResolved>,
    /// The dynamic data services, if `[dynamic_services]` is configured.
    pub dynamic_services: Option<super::dynsvc::config::DynamicServicesResolved>,
    /// The data plane as the SM's enforcement point, if `[dataplane.subscribers]` enables it.
    pub subscribers: Option<super::pcc::config::SubscribersResolved>,
    /// The subscriber services, if `[subscriber_services]` is configured.
    pub subscriber_services: Option<super::subsvc::config::SubscriberServicesResolved>,
}

/// Reads and validates a config file (or the embedded defaults when `path` is `None`).
pub fn load(path: Option<&Path>) -> Result<Resolved, ConfigError> {
    let source = match path {
        Some(path) => Source::read(path)?,
        None => Source::from_text("<embedded defaults>", EMBEDDED_DEFAULTS),
    };
    let file: DaemonFile = source.parse()?;
    let base = path
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let api = file.api.resolve(&source, &base, default_api_listen())?;
    let python = match file.python {
        Some(section) => Some(super::python::resolve(
            &source,
            &base,
            &file.data_dir,
            section,
        )?),
        None => None,
    };
    let radius = match file.radius {
        Some(section) => Some(resolve_radius(
            &source,
            &base,
            &file.data_dir,
            section,
            python.as_ref(),
        )?),
        None => None,
    };
    let subscriber_manager = match file.subscriber_manager {
        Some(section) => Some(super::sm_config::resolve(
            &source,
            &file.data_dir,
            section,
            radius.as_ref(),
        )?),
        None => None,
    };
    let mut services =
        super::services::resolve(&source, file.dataplane, file.service, file.filter, file.qos)?;
    let pools = radius
        .as_ref()
        .map(|(engine, _)| engine.pools.as_slice())
        .unwrap_or_default();
    let subscribers = match services
        .as_mut()
        .and_then(|s| s.dataplane.subscribers.take())
    {
        Some(section) => {
            let static_kinds = services
                .as_ref()
                .map(|services| services.static_kinds())
                .unwrap_or_default();
            super::pcc::config::resolve(&source, section.into_inner(), pools, &static_kinds)?
        }
        None => None,
    };
    let dynamic_services = match (file.dynamic_services, &services) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(source.error_at_path(
                "dynamic_services",
                "dynamic data services need the service data plane: a [dataplane] section with access ports",
            ))
        }
        (Some(section), Some(services)) => {
            Some(super::dynsvc::config::resolve(
                &source,
                &base,
                section,
                pools,
                &services.port_map,
            )?)
        }
    };
    let subscriber_services = match file.subscriber_services {
        Some(section) => Some(super::subsvc::config::resolve(
            &source,
            &base,
            section,
            radius.as_ref().map(|(engine, _)| engine),
            subscriber_manager.as_ref(),
        )?),
        None => None,
    };
    Ok(Resolved {
        api,
        data_dir: file.data_dir,
        radius,
        subscriber_manager,
        python,
        services,
        dynamic_services,
        subscribers,
        subscriber_services,
    })
}

fn resolve_radius(
    source: &Source,
    base: &Path,
    data_dir: &Path,
    section: RadiusSection,
    python: Option<&super::python::ResolvedPython>,
) -> Result<(EngineConfig, Arc<Dictionary>), ConfigError> {
    let mut dictionary = Dictionary::builtin();
    for path in &section.dictionaries {
        let full = base.join(path.get_ref());
        dictionary
            .merge_file(&full)
            .map_err(|err| source.error_at(path.span(), format!("dictionary: {err}")))?;
    }
    let dictionary = Arc::new(dictionary);

    let mut clients = Vec::new();
    for client in section.clients {
        let text = client.address.get_ref();
        let network = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| {
                source.error_at(
                    client.address.span(),
                    format!("invalid client address {text:?}; expected an IP address or prefix such as \"127.0.0.1\" or \"127.0.0.0/8\""),
                )
            })?;
        clients.push(ClientConfig {
            name: client.name,
            network,
            secret: client.secret.into_bytes(),
            require_message_authenticator: client.require_message_authenticator,
            coa_port: client.coa_port,
        });
    }

    let mut local_databases = Vec::new();
    for local in section.locals {
        let mut users = HashMap::new();
        let mut add_users = |source: &Source, list: Vec<UserSection>| -> Result<(), ConfigError> {
            for user in list {
                let name = user.name.get_ref().clone();
                let parsed = LocalUser {
                    password: user.password.map(String::into_bytes),
                    check: parse_pairs(source, &dictionary, &user.check)?,
                    reply: parse_pairs(source, &dictionary, &user.reply)?,
                };
                if users.insert(name.clone(), parsed).is_some() {
                    return Err(source
                        .error_at(user.name.span(), format!("user {name:?} is defined twice")));
                }
            }
            Ok(())
        };
        add_users(source, local.users)?;
        if let Some(file) = &local.users_file {
            let users_source = Source::read(&base.join(file.get_ref()))?;
            let parsed: UsersFile = users_source.parse()?;
            add_users(&users_source, parsed.users)?;
        }
        local_databases.push(LocalDatabase {
            name: local.name,
            users,
            accounting_log: data_dir.join("radius").join(local.accounting_log),
        });
    }

    let mut pools = Vec::new();
    for pool in section.pools {
        let load_balance = match pool.load_balance.get_ref().as_str() {
            "failover" => LoadBalance::Failover,
            "round-robin" => LoadBalance::RoundRobin,
            "client-balance" => LoadBalance::ClientBalance,
            other => {
                return Err(source.error_at(
                    pool.load_balance.span(),
                    format!("invalid load_balance {other:?}; expected \"failover\", \"round-robin\" or \"client-balance\""),
                ))
            }
        };
        let upstreams = |list: Vec<UpstreamSection>| -> Vec<UpstreamConfig> {
            list.into_iter()
                .map(|u| UpstreamConfig {
                    name: u.name.unwrap_or_else(|| u.address.to_string()),
                    address: u.address,
                    secret: u.secret.into_bytes(),
                })
                .collect()
        };
        pools.push(PoolConfig {
            name: pool.name,
            auth_servers: upstreams(pool.auth_servers),
            acct_servers: upstreams(pool.acct_servers),
            load_balance,
            timeout: pool.timeout.0,
            retries: pool.retries,
            dead_after_timeouts: pool.dead_after_timeouts,
            status_check_interval: pool.status_check_interval.0,
            revive_after: pool.revive_after.0,
        });
    }

    let mut policies: Vec<Arc<dyn Policy>> = Vec::new();
    let mut policy_names = Vec::new();
    for policy in section.policies {
        let mut rules = Vec::new();
        for rule in policy.rules {
            let mut codes = Vec::new();
            for message in &rule.message {
                let code = Code::from_name(message.get_ref()).ok_or_else(|| {
                    source.error_at(
                        message.span(),
                        format!("unknown message type {:?}; expected e.g. \"access-request\", \"access-accept\", \"accounting-request\"", message.get_ref()),
                    )
                })?;
                codes.push(code);
            }
            let direction = match &rule.direction {
                None => None,
                Some(d) => Some(match d.get_ref().as_str() {
                    "egress" => brasa_aaa::Direction::Egress,
                    "ingress" => brasa_aaa::Direction::Ingress,
                    other => {
                        return Err(source.error_at(
                            d.span(),
                            format!("invalid direction {other:?}; expected \"egress\" (towards the AAA server) or \"ingress\" (from it)"),
                        ))
                    }
                }),
            };
            let mut remove = Vec::new();
            for name in &rule.remove {
                let def = dictionary.attribute(name.get_ref()).ok_or_else(|| {
                    source.error_at(
                        name.span(),
                        format!("unknown attribute {:?}", name.get_ref()),
                    )
                })?;
                remove.push(def.id.clone());
            }
            rules.push(RewriteRule {
                codes,
                direction,
                clients: rule.client,
                remove,
                set: parse_pairs(source, &dictionary, &rule.set)?,
                add: parse_pairs(source, &dictionary, &rule.add)?,
                drop: rule.drop,
            });
        }
        policy_names.push(policy.name.clone());
        policies.push(Arc::new(RewritePolicy::new(policy.name, rules)));
    }

    let local_names: Vec<&str> = local_databases.iter().map(|l| l.name.as_str()).collect();
    let pool_names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
    let find = |names: &[&str], reference: &Spanned<String>, what: &str| {
        names
            .iter()
            .position(|n| *n == reference.get_ref())
            .ok_or_else(|| {
                source.error_at(
                    reference.span(),
                    format!(
                        "no {what} named {:?} (defined: {})",
                        reference.get_ref(),
                        list(names)
                    ),
                )
            })
    };
    let mut servers = Vec::new();
    for server in section.servers {
        let handler = match (&server.local, &server.proxy) {
            (Some(local), None) => Handler::Local(find(&local_names, local, "[[radius.local]]")?),
            (None, Some(pool)) => Handler::Proxy(find(&pool_names, pool, "[[radius.pool]]")?),
            _ => return Err(source.error_at(
                server.name.span(),
                "a server needs exactly one of `local = \"<database>\"` or `proxy = \"<pool>\"`",
            )),
        };
        if server.auth_listen.is_none() && server.acct_listen.is_none() {
            return Err(source.error_at(
                server.name.span(),
                "a server needs `auth_listen` and/or `acct_listen`",
            ));
        }
        let policy_refs: Vec<&str> = policy_names.iter().map(String::as_str).collect();
        let policy = match &server.policy {
            Some(name) => Some(find(&policy_refs, name, "[[radius.policy]]")?),
            None => None,
        };
        let external_hooks = match &server.python_policy {
            None => None,
            Some(name) => {
                let python = python.ok_or_else(|| {
                    source.error_at(
                        name.span(),
                        "python_policy needs a [python] section with that [[python.policy]]",
                    )
                })?;
                let index = python.policy_index(name.get_ref()).ok_or_else(|| {
                    source.error_at(
                        name.span(),
                        format!("no [[python.policy]] named {:?}", name.get_ref()),
                    )
                })?;
                python.hooks(index)
            }
        };
        servers.push(ServerConfig {
            name: server.name.into_inner(),
            auth_listen: server.auth_listen,
            acct_listen: server.acct_listen,
            handler,
            policy,
            external_hooks,
        });
    }

    Ok((
        EngineConfig {
            clients,
            servers,
            pools,
            local_databases,
            policies,
            coa_listen: section.coa_listen,
            duplicate_window: section.duplicate_window.0,
            external_hook_timeout: brasa_aaa::DEFAULT_EXTERNAL_HOOK_TIMEOUT,
        },
        dictionary,
    ))
}

fn parse_pairs(
    source: &Source,
    dictionary: &Dictionary,
    texts: &[Spanned<String>],
) -> Result<Vec<Pair>, ConfigError> {
    texts
        .iter()
        .map(|text| {
            dictionary
                .parse_pair(text.get_ref())
                .map_err(|err| source.error_at(text.span(), format!("{err}")))
        })
        .collect()
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
