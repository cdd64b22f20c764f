//! `[python]` of the `brasa run` config: python-scripts, python-policies with their hook
//! bindings and caches (SR OS `config>python`), resolved into the worker's and the cache
//! service's configs with `file:line:col` errors.

use crate::common::config::{ByteSize, ConfigDuration, ConfigError, Source};
use brasa_aaa::{Direction, ExternalHooks};
use brasa_cache::sync::SyncKey;
use brasa_cache::{CacheConfig, McsPeer, MinimumLifetimes};
use brasa_cache_redis::{RedisPolicySpec, RedisSettings, RedisTarget};
use brasa_python::cache_service::{CacheServiceConfig, PolicyCacheSpec, SyncSettings};
use brasa_python::worker::{ActionOnFail, Binding, PolicySpec, PythonConfig, ScriptSpec};
use brasa_radius::Code;
use serde::Deserialize;
use serde_spanned::Spanned;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Port of the cache sync listener when `cache_sync_listen` or an `mcs_peer` gives none.
pub const DEFAULT_SYNC_PORT: u16 = 7791;

/// `[python]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonSection {
    /// This node's id in cache write versions (must differ from the multi-chassis peer's);
    /// default: derived from `cache_sync_listen`.
    pub node_id: Option<u32>,
    /// Bound on the memory of all caches together (SR OS: 256 MB).
    #[serde(default = "default_cache_memory")]
    pub cache_memory: ByteSize,
    /// Folder of the persistent caches' journals, relative to `data_dir` (SR OS
    /// `system persistence python-policy-cache location`).
    #[serde(default = "default_cache_location")]
    pub cache_location: PathBuf,
    /// Where this node accepts its multi-chassis peers' sync streams (its own leave from this
    /// address too: the peers admit it by it).
    pub cache_sync_listen: Option<Spanned<String>>,
    /// The key this node shares with its multi-chassis peers (SR OS multi-chassis peer
    /// `authentication-key`): each side of a sync stream proves it holds the key, which never
    /// crosses the wire. Required with `cache_sync_listen`.
    pub cache_sync_key: Option<Spanned<SecretText>>,
    /// How often cache journals are synced to disk.
    #[serde(default = "default_cache_sync_interval")]
    pub cache_fsync_interval: ConfigDuration,
    /// Packets that may wait for the Python worker; beyond, a packet gets its script's
    /// `action_on_fail` at once.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Scripts.
    #[serde(default, rename = "script")]
    pub scripts: Vec<ScriptSection>,
    /// Policies.
    #[serde(default, rename = "policy")]
    pub policies: Vec<PolicySection>,
    /// Where the caches with `backend = "redis"` live, shared by every node that names it.
    pub redis: Option<RedisSection>,
}

/// `[python.redis]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// `redis://host:port[/db]`, `redis+sentinel://host:port[,…]/MASTER[/db]` or
    /// `redis+cluster://host:port[,…]`, with `user:password@` before the hosts if needed.
    pub url: Spanned<SecretText>,
    /// Prefix of every key brasa writes (the policy's `{name}` hash tag follows).
    #[serde(default = "default_redis_prefix")]
    pub key_prefix: String,
    /// Longest a script's cache call waits for Redis (the script's time limit bounds it too);
    /// past it the run fails and the packet gets the script's `action_on_fail`.
    #[serde(default = "default_redis_timeout")]
    pub timeout: ConfigDuration,
    /// Longest an operator tool's call (dump, clear, set-lifetime, statistics) waits.
    #[serde(default = "default_redis_tool_timeout")]
    pub tool_timeout: ConfigDuration,
    /// Longest a connection attempt takes.
    #[serde(default = "default_redis_connect_timeout")]
    pub connect_timeout: ConfigDuration,
}

fn default_redis_prefix() -> String {
    brasa_cache_redis::RedisSettings::DEFAULT_PREFIX.to_owned()
}
fn default_redis_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_millis(50))
}
fn default_redis_tool_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(5))
}
fn default_redis_connect_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(1))
}

/// Configuration text that is a secret: never printed, not even by `Debug`.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct SecretText(String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

fn default_cache_memory() -> ByteSize {
    ByteSize(brasa_cache::DEFAULT_GLOBAL_MEMORY)
}
fn default_cache_location() -> PathBuf {
    PathBuf::from("python-policy-cache")
}
fn default_cache_sync_interval() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(1))
}
fn default_queue() -> usize {
    4096
}

/// `[[python.script]]` (SR OS `python-script NAME`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptSection {
    /// Name policies refer to.
    pub name: Spanned<String>,
    /// The Python file, relative to this config file (SR OS `primary-url`).
    pub file: Spanned<PathBuf>,
    /// `drop` or `passthrough`: what a failed run (exception, time limit) does to the packet.
    #[serde(default = "default_action_on_fail")]
    pub action_on_fail: Spanned<String>,
    /// Longest a run may take.
    #[serde(default = "default_time_limit")]
    pub time_limit: ConfigDuration,
    /// Log each run's output and result trace.
    #[serde(default)]
    pub debug: bool,
    /// Administratively down: packets pass without running it.
    #[serde(default)]
    pub shutdown: bool,
}

fn default_action_on_fail() -> Spanned<String> {
    Spanned::new(0..0, "drop".to_string())
}
fn default_time_limit() -> ConfigDuration {
    ConfigDuration(Duration::from_millis(100))
}

/// `[[python.policy]]` (SR OS `python-policy NAME`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// Name servers refer to (`python_policy` of `[[radius.server]]`).
    pub name: Spanned<String>,
    /// Hook bindings: `radius MESSAGE direction DIR script NAME`.
    #[serde(default)]
    pub radius: Vec<BindingSection>,
    /// `cache create`: present means the policy has a cache.
    pub cache: Option<Spanned<CacheSection>>,
}

/// One `radius` binding of a python-policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingSection {
    /// `access-request`, `access-accept`, `accounting-request`, …
    pub message: Spanned<String>,
    /// `egress` (towards the AAA server) or `ingress` (from it).
    pub direction: Spanned<String>,
    /// A `[[python.script]]` name.
    pub script: Spanned<String>,
}

/// `[python.policy.cache]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// `embedded` (in this process: persistence and mcs-peer sync) or `redis` (in the
    /// `[python.redis]` deployment, shared with every node using it).
    pub backend: Option<Spanned<String>>,
    /// Maximum bytes of key plus value of one entry.
    #[serde(default = "default_entry_size")]
    pub entry_size: ByteSize,
    /// Maximum number of entries.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
    /// Lifetime of a new entry, and the cap of `set_lifetime`.
    #[serde(default = "default_max_entry_lifetime")]
    pub max_entry_lifetime: ConfigDuration,
    /// Entries survive a restart.
    #[serde(default)]
    pub persistence: bool,
    /// Minimum remaining lifetimes for synchronisation and persistence.
    #[serde(default)]
    pub minimum_lifetimes: MinimumLifetimesSection,
    /// The multi-chassis peer: its address, optionally with the port of its sync listener.
    pub mcs_peer: Option<Spanned<String>>,
    /// Pairs this cache with the peer's cache of the same tag (1–32 characters).
    pub sync_tag: Option<Spanned<String>>,
    /// Administratively down: saves are refused and lookups miss.
    #[serde(default)]
    pub shutdown: bool,
}

fn default_entry_size() -> ByteSize {
    ByteSize(CacheConfig::default().entry_size)
}
fn default_max_entries() -> usize {
    CacheConfig::default().max_entries
}
fn default_max_entry_lifetime() -> ConfigDuration {
    ConfigDuration(CacheConfig::default().max_entry_lifetime)
}

/// `[python.policy.cache.minimum_lifetimes]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinimumLifetimesSection {
    /// Below this an entry is not synchronised to a standby control card. Accepted for SR OS
    /// compatibility; a brasa node has no standby card (its redundancy is the multi-chassis
    /// peer), so the value has no effect.
    #[serde(default)]
    pub high_availability: ConfigDuration,
    /// Below this an entry is not sent to the multi-chassis peer.
    #[serde(default)]
    pub multi_chassis_redundancy: ConfigDuration,
    /// Below this an entry is not persisted.
    #[serde(default)]
    pub persistence: ConfigDuration,
}

/// The resolved `[python]`: what the worker and the cache service start from.
pub struct ResolvedPython {
    /// Scripts and policies.
    pub worker: PythonConfig,
    /// Embedded caches, persistence and peer sync.
    pub caches: CacheServiceConfig,
    /// Caches in Redis, when a policy has `backend = "redis"`.
    pub redis: Option<(RedisSettings, Vec<RedisPolicySpec>)>,
}

impl ResolvedPython {
    /// Index of the policy named `name` (a server's `ExternalHooks::handler`).
    pub fn policy_index(&self, name: &str) -> Option<usize> {
        self.worker.policies.iter().position(|p| p.name == name)
    }

    /// The external hook points of policy `index` for the RADIUS engine.
    pub fn hooks(&self, index: usize) -> Option<ExternalHooks> {
        let policy = self.worker.policies.get(index)?;
        Some(ExternalHooks {
            handler: index,
            points: policy
                .bindings
                .iter()
                .map(|b| (b.code, b.direction))
                .collect(),
        })
    }
}

/// Resolves `[python]`: `base` is the config file's folder (script paths are relative to it).
pub fn resolve(
    source: &Source,
    base: &Path,
    data_dir: &Path,
    section: PythonSection,
) -> Result<ResolvedPython, ConfigError> {
    let mut scripts: Vec<ScriptSpec> = Vec::new();
    for script in section.scripts {
        let name = script.name.get_ref().clone();
        if scripts.iter().any(|s| s.name == name) {
            return Err(source.error_at(
                script.name.span(),
                format!("python-script {name:?} is defined twice"),
            ));
        }
        let path = base.join(script.file.get_ref());
        if !path.is_file() {
            return Err(source.error_at(
                script.file.span(),
                format!("python-script file {} does not exist", path.display()),
            ));
        }
        let action_on_fail = match script.action_on_fail.get_ref().as_str() {
            "drop" => ActionOnFail::Drop,
            "passthrough" => ActionOnFail::Passthrough,
            other => {
                return Err(source.error_at(
                    script.action_on_fail.span(),
                    format!(
                        "invalid action_on_fail {other:?}; expected \"drop\" or \"passthrough\""
                    ),
                ))
            }
        };
        if script.time_limit.0.is_zero() {
            return Err(source.error_at(
                script.name.span(),
                "time_limit must be more than 0".to_string(),
            ));
        }
        scripts.push(ScriptSpec {
            name,
            path,
            action_on_fail,
            time_limit: script.time_limit.0,
            debug: script.debug,
            shutdown: script.shutdown,
        });
    }

    let sync_listen = match &section.cache_sync_listen {
        None => None,
        Some(text) => Some(parse_address(text.get_ref()).ok_or_else(|| {
            source.error_at(
                text.span(),
                format!(
                    "invalid cache_sync_listen {:?}; expected an address such as \"127.0.0.1:7791\" or \"127.0.0.1\"",
                    text.get_ref()
                ),
            )
        })?),
    };

    let sync = match (sync_listen, &section.cache_sync_key) {
        (None, None) => None,
        (Some(listen), Some(key)) => {
            let key = SyncKey::new(key.get_ref().0.as_bytes()).map_err(|err| {
                source.error_at(key.span(), format!("invalid cache_sync_key: {err}"))
            })?;
            Some(SyncSettings { listen, key })
        }
        (Some(_), None) => {
            let listen = section
                .cache_sync_listen
                .as_ref()
                .map_or(0..0, |l| l.span());
            return Err(source.error_at(
                listen,
                "cache_sync_listen needs cache_sync_key, the key shared with the mcs peers"
                    .to_string(),
            ));
        }
        (None, Some(key)) => {
            return Err(source.error_at(
                key.span(),
                "cache_sync_key needs cache_sync_listen (where the peers' streams arrive)"
                    .to_string(),
            ))
        }
    };

    let redis_settings = match &section.redis {
        None => None,
        Some(redis) => {
            let target = RedisTarget::parse(&redis.url.get_ref().0).map_err(|err| {
                source.error_at(
                    redis.url.span(),
                    format!("invalid [python.redis] url: {err}"),
                )
            })?;
            Some(RedisSettings {
                target,
                key_prefix: redis.key_prefix.clone(),
                call_timeout: redis.timeout.0,
                tool_timeout: redis.tool_timeout.0,
                connect_timeout: redis.connect_timeout.0,
            })
        }
    };

    let mut policies = Vec::new();
    let mut caches: Vec<PolicyCacheSpec> = Vec::new();
    let mut redis_caches: Vec<RedisPolicySpec> = Vec::new();
    for policy in section.policies {
        let name = policy.name.get_ref().clone();
        if policies.iter().any(|p: &PolicySpec| p.name == name) {
            return Err(source.error_at(
                policy.name.span(),
                format!("python-policy {name:?} is defined twice"),
            ));
        }
        let mut bindings: Vec<Binding> = Vec::new();
        for binding in &policy.radius {
            let code = Code::from_name(binding.message.get_ref()).ok_or_else(|| {
                source.error_at(
                    binding.message.span(),
                    format!(
                        "unknown RADIUS message {:?}; expected e.g. \"access-request\", \"access-accept\", \"accounting-request\"",
                        binding.message.get_ref()
                    ),
                )
            })?;
            let direction = match binding.direction.get_ref().as_str() {
                "egress" => Direction::Egress,
                "ingress" => Direction::Ingress,
                other => {
                    return Err(source.error_at(
                        binding.direction.span(),
                        format!("invalid direction {other:?}; expected \"egress\" (towards the AAA server) or \"ingress\" (from it)"),
                    ))
                }
            };
            let expected = expected_direction(code).ok_or_else(|| {
                source.error_at(
                    binding.message.span(),
                    format!(
                        "python-policies hook the messages of NAS exchanges: access-request, accounting-request (egress), access-accept, access-reject, access-challenge, accounting-response (ingress); not {:?}",
                        binding.message.get_ref()
                    ),
                )
            })?;
            if direction != expected {
                return Err(source.error_at(
                    binding.direction.span(),
                    format!(
                        "{} travels {} ({}); it never passes {}",
                        binding.message.get_ref(),
                        expected.as_str(),
                        match expected {
                            Direction::Egress => "towards the AAA server",
                            Direction::Ingress => "from the AAA server",
                        },
                        direction.as_str()
                    ),
                ));
            }
            let script = scripts
                .iter()
                .position(|s| s.name == *binding.script.get_ref())
                .ok_or_else(|| {
                    source.error_at(
                        binding.script.span(),
                        format!("no [[python.script]] named {:?}", binding.script.get_ref()),
                    )
                })?;
            if bindings
                .iter()
                .any(|b| b.code == code && b.direction == direction)
            {
                return Err(source.error_at(
                    binding.message.span(),
                    format!(
                        "{} {} is bound twice in python-policy {name:?}",
                        binding.message.get_ref(),
                        direction.as_str()
                    ),
                ));
            }
            bindings.push(Binding {
                code,
                direction,
                script,
            });
        }
        if let Some(cache) = policy.cache {
            let span = cache.span();
            let cache = cache.into_inner();
            let redis_backend = cache
                .backend
                .as_ref()
                .is_some_and(|b| b.get_ref() == "redis");
            if let Some(peer) = cache.mcs_peer.as_ref().or(cache.sync_tag.as_ref()) {
                if redis_backend {
                    return Err(source.error_at(
                        peer.span(),
                        "every node shares a Redis-backed cache: mcs_peer and sync_tag are for the embedded cache".to_string(),
                    ));
                }
            }
            let (mcs_peer, peer) = match (&cache.mcs_peer, &cache.sync_tag) {
                (None, None) => (None, None),
                (Some(peer), Some(tag)) => {
                    let address = parse_address(peer.get_ref()).ok_or_else(|| {
                        source.error_at(
                            peer.span(),
                            format!("invalid mcs_peer {:?}; expected an address such as \"127.0.0.2\" or \"127.0.0.2:7791\"", peer.get_ref()),
                        )
                    })?;
                    if sync_listen.is_none() {
                        return Err(source.error_at(
                            peer.span(),
                            "mcs_peer needs [python] cache_sync_listen (where the peer's stream arrives)".to_string(),
                        ));
                    }
                    if let Some(other) = caches
                        .iter()
                        .filter_map(|c| c.peer)
                        .find(|other| other.ip() == address.ip() && other.port() != address.port())
                    {
                        return Err(source.error_at(
                            peer.span(),
                            format!("mcs_peer {address} is {other} in another cache: one peer, one sync port"),
                        ));
                    }
                    let mcs = McsPeer {
                        address: address.ip(),
                        sync_tag: tag.get_ref().clone(),
                    };
                    if tag.get_ref().is_empty() || tag.get_ref().len() > McsPeer::MAX_SYNC_TAG {
                        return Err(source.error_at(
                            tag.span(),
                            format!("sync_tag must be 1 to {} characters", McsPeer::MAX_SYNC_TAG),
                        ));
                    }
                    (Some(mcs), Some(address))
                }
                (Some(peer), None) => {
                    return Err(
                        source.error_at(peer.span(), "mcs_peer needs a sync_tag".to_string())
                    )
                }
                (None, Some(tag)) => {
                    return Err(
                        source.error_at(tag.span(), "sync_tag needs an mcs_peer".to_string())
                    )
                }
            };
            let config = CacheConfig {
                entry_size: cache.entry_size.0,
                max_entries: cache.max_entries,
                max_entry_lifetime: cache.max_entry_lifetime.0,
                persistence: cache.persistence,
                minimum_lifetimes: MinimumLifetimes {
                    high_availability: cache.minimum_lifetimes.high_availability.0,
                    multi_chassis_redundancy: cache.minimum_lifetimes.multi_chassis_redundancy.0,
                    persistence: cache.minimum_lifetimes.persistence.0,
                },
                mcs_peer,
                shutdown: cache.shutdown,
            };
            config.validate().map_err(|err| {
                source.error_at(
                    span.clone(),
                    format!("cache of python-policy {name:?}: {err}"),
                )
            })?;
            match cache.backend.as_ref().map(|b| (b.get_ref().as_str(), b.span())) {
                None | Some(("embedded", _)) => caches.push(PolicyCacheSpec {
                    policy: name.clone(),
                    config,
                    peer,
                }),
                Some(("redis", backend)) => {
                    check_redis_cache(source, &config, span, backend.clone())?;
                    if redis_settings.is_none() {
                        return Err(source.error_at(
                            backend,
                            "backend = \"redis\" needs a [python.redis] section with the url of the Redis deployment".to_string(),
                        ));
                    }
                    redis_caches.push(RedisPolicySpec {
                        policy: name.clone(),
                        config,
                    });
                }
                Some((other, backend)) => {
                    return Err(source.error_at(
                        backend,
                        format!("invalid cache backend {other:?}; expected \"embedded\" (in this process) or \"redis\" (shared through [python.redis])"),
                    ))
                }
            }
        }
        policies.push(PolicySpec { name, bindings });
    }

    let node_id = section
        .node_id
        .unwrap_or_else(|| brasa_python::cache_service::default_node_id(sync_listen));
    Ok(ResolvedPython {
        worker: PythonConfig {
            scripts,
            policies,
            queue: section.queue.max(1),
            // Set by `[subscriber_services]`, which runs its script on this worker.
            sub_svc: None,
        },
        caches: CacheServiceConfig {
            node_id,
            global_memory: section.cache_memory.0,
            location: data_dir.join(section.cache_location),
            sync,
            sync_interval: section.cache_fsync_interval.0,
            caches,
        },
        redis: redis_settings
            .filter(|_| !redis_caches.is_empty())
            .map(|settings| (settings, redis_caches)),
    })
}

/// Refuses the settings of the embedded cache that mean nothing for one in Redis, which
/// persists and replicates as its deployment does (RDB/AOF, replicas, Sentinel, Cluster).
/// (`mcs_peer` and `sync_tag` are refused before they are parsed.)
fn check_redis_cache(
    source: &Source,
    config: &CacheConfig,
    span: std::ops::Range<usize>,
    backend: std::ops::Range<usize>,
) -> Result<(), ConfigError> {
    if config.persistence {
        return Err(source.error_at(
            backend,
            "a Redis-backed cache persists as Redis does (RDB or AOF in redis.conf): remove persistence".to_string(),
        ));
    }
    let minimums = &config.minimum_lifetimes;
    if !minimums.persistence.is_zero() || !minimums.multi_chassis_redundancy.is_zero() {
        return Err(source.error_at(
            span,
            "minimum_lifetimes persistence and multi_chassis_redundancy are for the embedded cache; Redis keeps every entry until its lifetime ends".to_string(),
        ));
    }
    Ok(())
}

/// The direction a message of a NAS exchange passes brasa in, if it is one.
fn expected_direction(code: Code) -> Option<Direction> {
    match code {
        Code::AccessRequest | Code::AccountingRequest => Some(Direction::Egress),
        Code::AccessAccept
        | Code::AccessReject
        | Code::AccessChallenge
        | Code::AccountingResponse => Some(Direction::Ingress),
        _ => None,
    }
}

/// `ip:port`, or a bare IP with [`DEFAULT_SYNC_PORT`].
fn parse_address(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>().ok().or_else(|| {
        text.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, DEFAULT_SYNC_PORT))
    })
}
