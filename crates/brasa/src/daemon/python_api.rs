//! Management API routes of the Python policies and their caches, and their metrics.
//!
//! `/api/v1/python/statistics`, `/api/v1/python/policies/{name}/cache` (dump, `clear`,
//! `set-lifetime`), `/api/v1/python/scripts/{name}/reload` and `/debug`: the operator tools of
//! the SR OS Python cache guide (`tools dump python python-policy NAME cache`, `tools perform python-policy NAME
//! cache … set-lifetime N`, `clear python python-policy NAME cache …`).

use super::ApiState;
use crate::common::mgmt::ApiError;
use crate::common::prom::{Kind, PromWriter};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use brasa_cache::sync::{LinkState, PeerStatus, SyncStatus};
use brasa_cache::CacheError;
use brasa_cache_redis::{RedisCacheError, RedisCaches, RedisCachesStats};
use brasa_python::cache_service::{CacheServiceError, CacheServiceStats, EntryDump};
use brasa_python::worker::{PythonStats, WorkerError};
use serde::{Deserialize, Serialize};

/// `/api/v1/python/...`
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/statistics", get(statistics))
        .route("/policies/{name}/cache", get(dump))
        .route("/policies/{name}/cache/clear", post(clear))
        .route("/policies/{name}/cache/set-lifetime", post(set_lifetime))
        .route("/scripts/{name}/reload", post(reload))
        .route("/scripts/{name}/debug", post(debug))
}

/// Everything `brasa show python statistics` prints.
#[derive(Debug, Serialize, Deserialize)]
pub struct PythonStatistics {
    /// Scripts and the worker queue.
    pub worker: Option<PythonStats>,
    /// Caches and peer links.
    pub caches: Option<CacheServiceStats>,
    /// Caches kept in Redis.
    #[serde(default)]
    pub redis: Option<RedisCachesStats>,
}

/// One entry as `tools dump python python-policy NAME cache` shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The key as text when it is valid UTF-8, else `None` (the dump prints it as text only
    /// when it is also [`printable`]).
    pub key: Option<String>,
    /// The key in hex, always.
    pub key_hex: String,
    /// The value in hex.
    pub value_hex: String,
    /// Remaining lifetime as SR OS prints it (`0d 00:12:08`).
    pub time_left: String,
    /// Remaining lifetime in milliseconds.
    pub remaining_ms: u64,
    /// The DHCP-option-82-derived key of SR OS (`N/A`: brasa scripts key entries themselves).
    pub ddp_key: String,
}

/// The dump of one policy's cache.
#[derive(Debug, Serialize, Deserialize)]
pub struct CacheDump {
    /// The python-policy.
    pub policy: String,
    /// Entries by key.
    pub entries: Vec<CacheEntry>,
}

/// Names one entry by its key in hex (the CLI turns `--string-key` into hex).
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyRequest {
    /// The key, hex digits (spaces and colons allowed between bytes).
    pub key_hex: String,
}

/// `set-lifetime N` of one entry.
#[derive(Debug, Serialize, Deserialize)]
pub struct SetLifetimeRequest {
    /// The key, hex digits.
    pub key_hex: String,
    /// The new remaining lifetime in seconds.
    pub seconds: u64,
}

/// What a change did.
#[derive(Debug, Serialize, Deserialize)]
pub struct Done {
    /// A sentence for the operator.
    pub detail: String,
    /// For set-lifetime: the lifetime applied (capped by `max-entry-lifetime`).
    pub lifetime: Option<u64>,
}

/// Turn debug logging of a script on or off.
#[derive(Debug, Serialize, Deserialize)]
pub struct DebugRequest {
    /// On or off.
    pub on: bool,
}

fn caches(
    state: &ApiState,
) -> Result<&std::sync::Arc<brasa_python::cache_service::CacheService>, ApiError> {
    state
        .caches
        .as_ref()
        .ok_or_else(|| ApiError::not_found("no python-policy in this daemon's config has a cache"))
}

fn cache_error(policy: &str, key: &[u8], err: CacheServiceError) -> ApiError {
    match err {
        CacheServiceError::NoCache(_) => no_cache(policy),
        CacheServiceError::Cache(err) => refused(policy, key, err),
        other => ApiError::conflict(other.to_string()),
    }
}

fn no_cache(policy: &str) -> ApiError {
    ApiError::not_found(format!(
        "python-policy {policy:?} does not exist or has no cache"
    ))
}

fn refused(policy: &str, key: &[u8], err: CacheError) -> ApiError {
    match err {
        CacheError::NotFound => ApiError::not_found(format!(
            "python-policy {policy:?} cache has no entry with key {}",
            describe_key(key)
        )),
        CacheError::Backend { reason } => ApiError::unavailable(reason),
        other => ApiError::conflict(other.to_string()),
    }
}

fn redis_error(policy: &str, key: &[u8], err: RedisCacheError) -> ApiError {
    match err {
        RedisCacheError::NoCache(_) => no_cache(policy),
        RedisCacheError::Cache(err) => refused(policy, key, err),
        other => ApiError::internal(other.to_string()),
    }
}

/// The Redis caches, when `policy`'s cache is one of them.
fn redis_cache<'s>(state: &'s ApiState, policy: &str) -> Option<&'s RedisCaches> {
    state.redis.as_deref().filter(|r| r.has_cache(policy))
}

fn describe_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if printable(text) => format!("{text:?}"),
        _ => format!("(hex) {}", hex(key)),
    }
}

/// Whether a key shows as text: not empty, and no character that would hide or disguise
/// what it is (controls, zero-width characters, bidirectional overrides). Anything else —
/// accents, `'`, `+`, `/`, `@`, other scripts — is printed as it is; the rest is shown in hex,
/// as SR OS shows keys.
pub fn printable(text: &str) -> bool {
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
    };
    !text.is_empty() && !text.chars().any(hidden)
}

/// Lower-case hex, bytes separated by spaces (the SR OS dump style).
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses hex digits, allowing spaces, colons and an `0x` prefix between bytes.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| !matches!(c, ' ' | ':'))
        .collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return Err(format!(
            "invalid hex key {text:?}: expected an even number of hex digits"
        ));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16).map_err(|_| {
                format!(
                    "invalid hex key {text:?}: {:?} is no hex byte",
                    &digits[i..i + 2]
                )
            })
        })
        .collect()
}

pub(crate) async fn statistics(
    State(state): State<ApiState>,
) -> Result<Json<PythonStatistics>, ApiError> {
    if state.python.is_none() && state.caches.is_none() {
        return Err(ApiError::not_found(
            "no [python] section in this daemon's config",
        ));
    }
    let redis = match &state.redis {
        Some(redis) => Some(redis.stats().await),
        None => None,
    };
    Ok(Json(PythonStatistics {
        worker: state.python.as_ref().map(|p| p.stats()),
        caches: state.caches.as_ref().map(|c| c.stats()),
        redis,
    }))
}

pub(crate) async fn dump(
    State(state): State<ApiState>,
    Path(policy): Path<String>,
) -> Result<Json<CacheDump>, ApiError> {
    let entries = dump_entries(&state, &policy)
        .await?
        .into_iter()
        .map(CacheEntry::from)
        .collect();
    Ok(Json(CacheDump { policy, entries }))
}

/// The raw entries of `policy`'s cache, from Redis or from the embedded cache (the console
/// formats only the page it shows). Copying tens of thousands of embedded entries runs off the
/// async workers.
pub(crate) async fn dump_entries(
    state: &ApiState,
    policy: &str,
) -> Result<Vec<EntryDump>, ApiError> {
    if let Some(redis) = redis_cache(state, policy) {
        let entries = redis
            .dump(policy)
            .await
            .map_err(|err| redis_error(policy, &[], err))?;
        return Ok(entries
            .into_iter()
            .map(|e| EntryDump {
                time_left: brasa_cache::time_left(e.remaining_ms),
                key: e.key,
                value: e.value,
                remaining_ms: e.remaining_ms,
            })
            .collect());
    }
    let caches = caches(state)?.clone();
    let name = policy.to_owned();
    tokio::task::spawn_blocking(move || caches.dump(&name))
        .await
        .map_err(|err| ApiError::internal(err.to_string()))?
        .map_err(|err| cache_error(policy, &[], err))
}

impl From<EntryDump> for CacheEntry {
    fn from(e: EntryDump) -> Self {
        CacheEntry {
            key: String::from_utf8(e.key.clone()).ok(),
            key_hex: hex(&e.key),
            value_hex: hex(&e.value),
            time_left: e.time_left,
            remaining_ms: e.remaining_ms,
            ddp_key: "N/A".into(),
        }
    }
}

pub(crate) async fn clear(
    State(state): State<ApiState>,
    Path(policy): Path<String>,
    Json(request): Json<KeyRequest>,
) -> Result<Json<Done>, ApiError> {
    let key = parse_hex(&request.key_hex).map_err(ApiError::bad_request)?;
    match redis_cache(&state, &policy) {
        Some(redis) => redis
            .clear_entry(&policy, &key)
            .await
            .map_err(|err| redis_error(&policy, &key, err))?,
        None => caches(&state)?
            .clear(&policy, &key)
            .map_err(|err| cache_error(&policy, &key, err))?,
    }
    Ok(Json(Done {
        detail: format!(
            "entry {} cleared from the cache of python-policy {policy:?}",
            describe_key(&key)
        ),
        lifetime: None,
    }))
}

pub(crate) async fn set_lifetime(
    State(state): State<ApiState>,
    Path(policy): Path<String>,
    Json(request): Json<SetLifetimeRequest>,
) -> Result<Json<Done>, ApiError> {
    let key = parse_hex(&request.key_hex).map_err(ApiError::bad_request)?;
    let applied = match redis_cache(&state, &policy) {
        Some(redis) => redis
            .set_entry_lifetime(&policy, &key, request.seconds)
            .await
            .map_err(|err| redis_error(&policy, &key, err))?,
        None => caches(&state)?
            .set_lifetime(&policy, &key, request.seconds)
            .map_err(|err| cache_error(&policy, &key, err))?,
    };
    Ok(Json(Done {
        detail: format!(
            "lifetime of entry {} in python-policy {policy:?} set to {applied} s",
            describe_key(&key)
        ),
        lifetime: Some(applied),
    }))
}

fn worker(
    state: &ApiState,
) -> Result<std::sync::Arc<brasa_python::worker::PythonPolicies>, ApiError> {
    state
        .python
        .clone()
        .ok_or_else(|| ApiError::not_found("no [python] section in this daemon's config"))
}

fn worker_error(err: WorkerError) -> ApiError {
    match err {
        WorkerError::UnknownScript(_) => ApiError::not_found(err.to_string()),
        WorkerError::Script(_) => ApiError::bad_request(err.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}

pub(crate) async fn reload(
    State(state): State<ApiState>,
    Path(script): Path<String>,
) -> Result<Json<Done>, ApiError> {
    let python = worker(&state)?;
    let name = script.clone();
    // The reload waits for the worker thread to finish its current run.
    tokio::task::spawn_blocking(move || python.reload(&name))
        .await
        .map_err(|err| ApiError::internal(err.to_string()))?
        .map_err(worker_error)?;
    Ok(Json(Done {
        detail: format!("python-script {script:?} reloaded"),
        lifetime: None,
    }))
}

pub(crate) async fn debug(
    State(state): State<ApiState>,
    Path(script): Path<String>,
    Json(request): Json<DebugRequest>,
) -> Result<Json<Done>, ApiError> {
    worker(&state)?
        .set_debug(&script, request.on)
        .map_err(worker_error)?;
    Ok(Json(Done {
        detail: format!(
            "debug of python-script {script:?} {}",
            if request.on { "on" } else { "off" }
        ),
        lifetime: None,
    }))
}

/// Writes the script and cache counters as Prometheus families.
pub fn write_metrics(
    worker: Option<&PythonStats>,
    caches: Option<&CacheServiceStats>,
    writer: &mut PromWriter,
) {
    if let Some(worker) = worker {
        writer
            .family(
                "brasa_python_queued",
                "Packets waiting for the Python worker.",
                Kind::Gauge,
            )
            .sample("brasa_python_queued", &[], worker.queued as f64);
        type ScriptField = fn(&brasa_python::worker::ScriptStats) -> u64;
        let counters: [(&str, &str, ScriptField); 12] = [
            ("runs", "Script runs started.", |s| s.runs),
            ("completed", "Script runs that completed.", |s| s.completed),
            (
                "dropped_by_script",
                "Completed runs that called radius.drop().",
                |s| s.dropped_by_script,
            ),
            ("exceptions", "Runs ended by an uncaught exception.", |s| {
                s.exceptions
            }),
            ("timeouts", "Runs stopped at the time limit.", |s| {
                s.timeouts
            }),
            ("system_exits", "Runs ended by SystemExit.", |s| {
                s.system_exits
            }),
            (
                "cache_failures",
                "Runs failed because the policy's cache backend failed or did not answer in time.",
                |s| s.cache_failures,
            ),
            (
                "failed_dropped",
                "Failed runs whose packet was dropped (action-on-fail drop).",
                |s| s.failed_dropped,
            ),
            (
                "failed_passed",
                "Failed runs whose packet passed (action-on-fail passthrough).",
                |s| s.failed_passed,
            ),
            (
                "overload",
                "Packets that found the worker queue full.",
                |s| s.overload,
            ),
            ("reloads", "Successful reloads.", |s| s.reloads),
            ("run_time_us", "Total run time in microseconds.", |s| {
                s.run_time_us
            }),
        ];
        for (field, help, value) in counters {
            let name = format!("brasa_python_script_{field}_total");
            writer.family(&name, help, Kind::Counter);
            for script in &worker.scripts {
                writer.sample(&name, &[("script", &script.name)], value(script) as f64);
            }
        }
    }
    if let Some(caches) = caches {
        writer
            .family(
                "brasa_python_cache_memory_bytes",
                "Bytes charged by all python-policy caches.",
                Kind::Gauge,
            )
            .sample(
                "brasa_python_cache_memory_bytes",
                &[],
                caches.global_memory_used as f64,
            );
        writer
            .family(
                "brasa_python_cache_memory_limit_bytes",
                "The global bound on python-policy cache memory.",
                Kind::Gauge,
            )
            .sample(
                "brasa_python_cache_memory_limit_bytes",
                &[],
                caches.global_memory_limit as f64,
            );
        type CacheField = fn(&brasa_python::cache_service::CacheStats) -> u64;
        let gauges: [(&str, &str, CacheField); 2] = [
            ("entries", "Entries held.", |c| c.entries as u64),
            ("bytes", "Bytes charged to the global bound.", |c| {
                c.bytes as u64
            }),
        ];
        for (field, help, value) in gauges {
            let name = format!("brasa_python_cache_{field}");
            writer.family(&name, help, Kind::Gauge);
            for cache in &caches.caches {
                writer.sample(&name, &[("policy", &cache.policy)], value(cache) as f64);
            }
        }
        let counters: [(&str, &str, CacheField); 9] = [
            ("saves", "Successful saves.", |c| c.saves),
            ("hits", "Retrieves that found an entry.", |c| c.hits),
            ("misses", "Retrieves that found none.", |c| c.misses),
            (
                "expirations",
                "Entries reclaimed at the end of their lifetime.",
                |c| c.expirations,
            ),
            ("clears", "Entries cleared.", |c| c.clears),
            ("lifetime_changes", "Successful lifetime changes.", |c| {
                c.lifetime_changes
            }),
            (
                "peer_applied",
                "Events from the multi-chassis peer applied.",
                |c| c.peer_applied,
            ),
            (
                "peer_stale",
                "Events from the peer older than the local state.",
                |c| c.peer_stale,
            ),
            (
                "peer_refused",
                "Events from the peer refused by a local limit.",
                |c| c.peer_refused,
            ),
        ];
        for (field, help, value) in counters {
            let name = format!("brasa_python_cache_{field}_total");
            writer.family(&name, help, Kind::Counter);
            for cache in &caches.caches {
                writer.sample(&name, &[("policy", &cache.policy)], value(cache) as f64);
            }
        }
        writer.family(
            "brasa_python_cache_refused_total",
            "Refused saves by reason.",
            Kind::Counter,
        );
        for cache in &caches.caches {
            for (reason, count) in &cache.refused {
                writer.sample(
                    "brasa_python_cache_refused_total",
                    &[("policy", &cache.policy), ("reason", reason.as_str())],
                    *count as f64,
                );
            }
        }
        if let Some(sync) = &caches.sync {
            write_sync_metrics(sync, writer);
        }
    }
}

/// The caches kept in Redis: connection state, shared entry counts, this node's traffic.
pub fn write_redis_metrics(redis: &RedisCachesStats, writer: &mut PromWriter) {
    writer
        .family(
            "brasa_python_redis_connected",
            "1 when this node is connected to the Redis of the shared python-policy caches.",
            Kind::Gauge,
        )
        .sample(
            "brasa_python_redis_connected",
            &[],
            f64::from(u8::from(redis.connected)),
        );
    writer.family(
        "brasa_python_redis_cache_entries",
        "Live entries of a Redis-backed cache (all nodes').",
        Kind::Gauge,
    );
    for cache in &redis.caches {
        if let Some(entries) = cache.entries {
            writer.sample(
                "brasa_python_redis_cache_entries",
                &[("policy", &cache.policy)],
                entries as f64,
            );
        }
    }
    type Field = fn(&brasa_cache_redis::RedisCacheStats) -> u64;
    let counters: [(&str, &str, Field); 6] = [
        ("saves", "Successful saves by this node.", |c| c.saves),
        ("hits", "Retrieves that found an entry.", |c| c.hits),
        ("misses", "Retrieves that found none.", |c| c.misses),
        ("clears", "Entries cleared.", |c| c.clears),
        (
            "refused",
            "Refused saves (entry-size, max-entries, Redis maxmemory, shutdown).",
            |c| c.refused.values().sum(),
        ),
        (
            "backend_failures",
            "Calls that failed because Redis failed or did not answer in time.",
            |c| c.backend_failures,
        ),
    ];
    for (field, help, value) in counters {
        let name = format!("brasa_python_redis_cache_{field}_total");
        writer.family(&name, help, Kind::Counter);
        for cache in &redis.caches {
            writer.sample(&name, &[("policy", &cache.policy)], value(cache) as f64);
        }
    }
}

/// The multi-chassis links: state per direction (one series per state, 1 for the current
/// one), refusals and traffic.
fn write_sync_metrics(sync: &SyncStatus, writer: &mut PromWriter) {
    writer.family(
        "brasa_python_cache_peer_up",
        "1 when this node's link to the multi-chassis peer is synchronised.",
        Kind::Gauge,
    );
    for peer in &sync.peers {
        writer.sample(
            "brasa_python_cache_peer_up",
            &[("peer", &peer.address.to_string())],
            f64::from(u8::from(peer.outbound.state == LinkState::Synchronised)),
        );
    }
    writer.family(
        "brasa_python_cache_peer_state",
        "State of each direction of a multi-chassis link (1 for the current state).",
        Kind::Gauge,
    );
    for peer in &sync.peers {
        let address = peer.address.to_string();
        for (direction, current) in [
            ("outbound", peer.outbound.state),
            ("inbound", peer.inbound.state),
        ] {
            for state in LinkState::ALL {
                writer.sample(
                    "brasa_python_cache_peer_state",
                    &[
                        ("peer", &address),
                        ("direction", direction),
                        ("state", state.as_str()),
                    ],
                    f64::from(u8::from(state == current)),
                );
            }
        }
    }
    type Field = fn(&PeerStatus) -> (u64, u64);
    let counters: [(&str, &str, Field); 4] = [
        ("sessions", "Sync sessions past the handshake.", |p| {
            (p.outbound.counters.sessions, p.inbound.counters.sessions)
        }),
        (
            "auth_failures",
            "Sync handshakes whose peer failed the shared-key check.",
            |p| {
                (
                    p.outbound.counters.auth_failures,
                    p.inbound.counters.auth_failures,
                )
            },
        ),
        (
            "tag_mismatches",
            "Sync handshakes in which the peers paired different sync tags.",
            |p| {
                (
                    p.outbound.counters.tag_mismatches,
                    p.inbound.counters.tag_mismatches,
                )
            },
        ),
        (
            "events",
            "Cache events sent to (outbound) or applied from (inbound) the peer.",
            |p| {
                (
                    p.outbound.counters.resync_events + p.outbound.counters.events_sent,
                    p.inbound.counters.applied,
                )
            },
        ),
    ];
    for (field, help, value) in counters {
        let name = format!("brasa_python_cache_peer_{field}_total");
        writer.family(&name, help, Kind::Counter);
        for peer in &sync.peers {
            let address = peer.address.to_string();
            let (outbound, inbound) = value(peer);
            writer.sample(
                &name,
                &[("peer", &address), ("direction", "outbound")],
                outbound as f64,
            );
            writer.sample(
                &name,
                &[("peer", &address), ("direction", "inbound")],
                inbound as f64,
            );
        }
    }
    writer.family(
        "brasa_python_cache_peer_overflows_total",
        "Sync sessions reset (and resynchronised) because the queue to the peer overflowed.",
        Kind::Counter,
    );
    for peer in &sync.peers {
        writer.sample(
            "brasa_python_cache_peer_overflows_total",
            &[("peer", &peer.address.to_string())],
            peer.outbound.counters.overflows as f64,
        );
    }
    writer
        .family(
            "brasa_python_cache_sync_unknown_peer_streams_total",
            "Sync streams refused because their source is no mcs-peer.",
            Kind::Counter,
        )
        .sample(
            "brasa_python_cache_sync_unknown_peer_streams_total",
            &[],
            sync.unknown_peer_streams as f64,
        );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_keys_round_trip_in_the_forms_operators_type() {
        assert_eq!(parse_hex("0a0B ff").unwrap(), vec![0x0a, 0x0b, 0xff]);
        assert_eq!(parse_hex("00:20:fc").unwrap(), vec![0, 0x20, 0xfc]);
        assert_eq!(parse_hex("0x0102").unwrap(), vec![1, 2]);
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
        assert!(parse_hex("").is_err());
        assert_eq!(hex(b"Cl"), "43 6c");
        assert_eq!(describe_key(b"00:20:fc:1e:cd:53"), "\"00:20:fc:1e:cd:53\"");
        assert_eq!(describe_key(&[1, 2]), "(hex) 01 02");
        assert_eq!(
            describe_key("Zoë O'Brien+vlan/42@fibre.example".as_bytes()),
            "\"Zoë O'Brien+vlan/42@fibre.example\""
        );
        assert_eq!(describe_key(b"\xff\xfe"), "(hex) ff fe");
    }

    #[test]
    fn keys_with_hidden_characters_are_not_printable() {
        assert!(printable("Zoë O'Brien+vlan/42@fibre.example"));
        assert!(printable("用户@宽带"));
        assert!(!printable(""));
        assert!(!printable("tab\there"));
        assert!(!printable("admin\u{202e}nimda"));
        assert!(!printable("zero\u{200b}width"));
    }
}
