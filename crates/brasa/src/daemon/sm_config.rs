//! `[subscriber_manager]` of the `brasa run` config: its TOML model and its resolution into a
//! `brasa_sm::SmConfig`, with every error located at `file:line:col`.

use crate::common::config::{ConfigDuration, ConfigError, Source};
use brasa_aaa::EngineConfig;
use brasa_bgp::{ConnectMode, LocalConfig, PeerConfig};
use brasa_bgp_net::{NetPeerConfig, SpeakerConfig};
use brasa_radius::{AttrId, Dictionary};
use brasa_sm::bgp_leg::{BgpLegConfig, LegPeerConfig};
use brasa_sm::{EpConfig, EpMode, FailureAction, SmConfig};
use brasa_subscriber::{
    IndexConfig, NameCase, RedbStore, StoreError, SubscriberStore, DEFAULT_DOMAIN,
};
use brasa_subscriber_pg::PgStore;
use serde::Deserialize;
use serde_spanned::Spanned;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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
    /// The BGP LEG: MPLS/VPN labels and `community@VPN` ranges learnt from BGP.
    pub bgp_leg: Option<BgpLegSection>,
    /// Where the records are kept (default: the embedded store in the data directory).
    pub store: Option<StoreSection>,
    /// Active/standby with the other nodes of the same PostgreSQL database.
    pub ha: Option<HaSection>,
}

/// `[subscriber_manager.ha]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaSection {
    /// This node's name in the lease row and in `brasa sm status` (unique among the nodes).
    pub node: Spanned<String>,
    /// How long a lease lasts: a standby takes over at most this long after the active node
    /// stopped renewing (it renews every third of it).
    #[serde(default = "default_lease")]
    pub lease: Spanned<ConfigDuration>,
    /// Entries of the change log the active node keeps for the standbys (one per commit); a
    /// standby further behind reads every record again.
    pub change_log_retention: Option<Spanned<u64>>,
}

fn default_lease() -> Spanned<ConfigDuration> {
    Spanned::new(0..0, ConfigDuration(Duration::from_secs(3)))
}

/// Shortest lease accepted: a renewal is a round trip to the database every third of it.
const MIN_LEASE: Duration = Duration::from_millis(300);

/// `[subscriber_manager.ha]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaResolved {
    /// This node's name.
    pub node: String,
    /// The lease time.
    pub lease: Duration,
    /// Change-log entries kept.
    pub change_log_retention: u64,
}

/// `[subscriber_manager.store]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `redb` (default: one file in `<data_dir>/subscriber`) or `postgres`.
    pub kind: Spanned<String>,
    /// The PostgreSQL connection URL (`postgres://user:password@host:port/database`), required
    /// with `kind = "postgres"`.
    pub url: Option<Spanned<String>>,
}

/// Where the SM keeps its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// The embedded redb file in this directory.
    Redb(PathBuf),
    /// A PostgreSQL database.
    Postgres(String),
}

impl StoreLocation {
    /// Parses `redb:PATH` (a data directory) or `postgres:URL` (`brasa sm migrate`).
    pub fn parse(text: &str) -> Result<StoreLocation, String> {
        if let Some(path) = text.strip_prefix("redb:") {
            if path.is_empty() {
                return Err("redb: needs the directory of the store (redb:PATH)".into());
            }
            return Ok(StoreLocation::Redb(PathBuf::from(path)));
        }
        // `postgres://…` is a URL already; `postgres:` before it is optional.
        let url = text
            .strip_prefix("postgres:")
            .filter(|u| !u.starts_with("//"));
        let url = url.unwrap_or(text);
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            brasa_subscriber_pg::check_url(url)?;
            return Ok(StoreLocation::Postgres(url.to_owned()));
        }
        Err(format!(
            "{text:?} is not a store: expected redb:PATH or postgres:URL (postgres://user@host/db)"
        ))
    }

    /// Opens the store (creating or migrating it). Blocks: call it off the async workers.
    pub fn open(&self) -> Result<Box<dyn SubscriberStore + Send>, StoreError> {
        Ok(match self {
            StoreLocation::Redb(dir) => Box::new(RedbStore::open(dir)?),
            StoreLocation::Postgres(url) => Box::new(PgStore::connect(url)?),
        })
    }
}

impl std::fmt::Display for StoreLocation {
    /// The location without secrets (for logs and progress lines).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Redb(dir) => write!(f, "redb:{}", dir.display()),
            StoreLocation::Postgres(url) => {
                write!(f, "postgres:{}", brasa_subscriber_pg::redact_url(url))
            }
        }
    }
}

/// `[subscriber_manager.bgp_leg]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpLegSection {
    /// This speaker's AS (iBGP with the route reflectors or PEs: theirs too).
    pub local_as: Spanned<u32>,
    /// This speaker's BGP identifier.
    pub router_id: Spanned<Ipv4Addr>,
    /// Addresses passive peers connect to (`"192.0.2.1:179"`).
    #[serde(default)]
    pub listen: Vec<Spanned<SocketAddr>>,
    /// The peers.
    #[serde(default, rename = "peer")]
    pub peers: Vec<BgpPeerSection>,
}

/// `[[subscriber_manager.bgp_leg.peer]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpPeerSection {
    /// The peer's address.
    pub address: Spanned<IpAddr>,
    /// The peer's AS (default: `local_as`, iBGP).
    pub remote_as: Option<Spanned<u32>>,
    /// Hold time proposed (`"90s"`; `"0s"` for none, otherwise at least 3 s).
    pub hold_time: Option<Spanned<ConfigDuration>>,
    /// `passive` (default: the peer connects to a `listen` address) or `active` (dialled).
    pub mode: Option<Spanned<String>>,
    /// The port an active peer is dialled on (default 179).
    pub port: Option<u16>,
    /// The source address for dialling an active peer.
    pub local_address: Option<IpAddr>,
    /// Graceful restart (receiver): how long the routes of a lost session, and those restored
    /// from the store after an SM restart, wait for the peer's End-of-RIB (`"0s"`: graceful
    /// restart off). Default `"6m"`.
    pub graceful_restart_time: Option<Spanned<ConfigDuration>>,
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
    /// Where the records are kept.
    pub store: StoreLocation,
    /// RADIUS login events.
    pub radius: Option<RadiusLogins>,
    /// The BGP LEG's speaker (its SM side is in `config.bgp_leg`).
    pub bgp_leg: Option<SpeakerConfig>,
    /// Active/standby, when configured (the store is then PostgreSQL).
    pub ha: Option<HaResolved>,
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
    let (speaker, leg) = match &section.bgp_leg {
        Some(b) => {
            let (speaker, leg) = resolve_bgp_leg(source, b)?;
            (Some(speaker), Some(leg))
        }
        None => (None, None),
    };
    let config = SmConfig {
        index: IndexConfig { domains, name_case },
        eps,
        keepalive_interval: section.keepalive_interval.get_ref().0,
        window: *section.window.get_ref(),
        max_backlog: *section.max_backlog.get_ref(),
        ack_timeout: section.ack_timeout.0,
        quarantine_timeout: section.quarantine_timeout.0,
        post_quarantine: section.post_quarantine.0,
        bgp_leg: leg,
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

    let store = resolve_store(source, data_dir, section.store.as_ref())?;
    let ha = section
        .ha
        .as_ref()
        .map(|ha| resolve_ha(source, ha, &store, section.bgp_leg.is_some()))
        .transpose()?;
    let radius_logins = match section.radius {
        None => None,
        Some(r) => Some(resolve_radius(source, &config, r, radius)?),
    };
    Ok(SmResolved {
        config,
        listen: section.listen,
        store,
        radius: radius_logins,
        bgp_leg: speaker,
        ha,
    })
}

fn resolve_ha(
    source: &Source,
    section: &HaSection,
    store: &StoreLocation,
    bgp_leg: bool,
) -> Result<HaResolved, ConfigError> {
    let node = section.node.get_ref();
    if node.is_empty() || node.len() > 64 || node.chars().any(char::is_control) {
        return Err(source.error_at(
            section.node.span(),
            "node must be a name of 1 to 64 printable characters, unique among the SM nodes",
        ));
    }
    if !matches!(store, StoreLocation::Postgres(_)) {
        return Err(source.error_at(
            section.node.span(),
            "active/standby needs the records in PostgreSQL, shared by the nodes: \
             [subscriber_manager.store] kind = \"postgres\"",
        ));
    }
    if bgp_leg {
        return Err(source.error_at(
            section.node.span(),
            "the BGP LEG does not run on active/standby nodes yet: remove \
             [subscriber_manager.bgp_leg] or [subscriber_manager.ha]",
        ));
    }
    let lease = section.lease.get_ref().0;
    if lease < MIN_LEASE {
        return Err(source.error_at(
            section.lease.span(),
            format!("lease must be at least {} ms", MIN_LEASE.as_millis()),
        ));
    }
    let change_log_retention = match &section.change_log_retention {
        Some(n) if *n.get_ref() == 0 => {
            return Err(source.error_at(
                n.span(),
                "change_log_retention must be at least 1 (entries of the change log)",
            ))
        }
        Some(n) => *n.get_ref(),
        None => brasa_subscriber_pg::change_log::DEFAULT_RETENTION,
    };
    Ok(HaResolved {
        node: node.clone(),
        lease,
        change_log_retention,
    })
}

fn resolve_store(
    source: &Source,
    data_dir: &Path,
    section: Option<&StoreSection>,
) -> Result<StoreLocation, ConfigError> {
    let redb = StoreLocation::Redb(data_dir.join("subscriber"));
    let Some(section) = section else {
        return Ok(redb);
    };
    let postgres = one_of(
        source,
        Some(&section.kind),
        false,
        "store kind",
        &[("redb", false), ("postgres", true)],
    )?;
    match (postgres, &section.url) {
        (false, None) => Ok(redb),
        (false, Some(url)) => Err(source.error_at(
            url.span(),
            "url is for kind = \"postgres\"; the redb store lives in the data directory",
        )),
        (true, None) => Err(source.error_at(
            section.kind.span(),
            "kind = \"postgres\" needs url = \"postgres://user@host:port/database\"",
        )),
        (true, Some(url)) => {
            brasa_subscriber_pg::check_url(url.get_ref())
                .map_err(|e| source.error_at(url.span(), format!("invalid PostgreSQL url: {e}")))?;
            Ok(StoreLocation::Postgres(url.get_ref().clone()))
        }
    }
}

/// Default graceful-restart time of a BGP LEG peer (RFC 4724 leaves it to the receiver; the
/// speaker's own default).
const DEFAULT_GRACEFUL_RESTART: Duration = Duration::from_secs(360);

fn resolve_bgp_leg(
    source: &Source,
    section: &BgpLegSection,
) -> Result<(SpeakerConfig, BgpLegConfig), ConfigError> {
    let local = LocalConfig {
        asn: *section.local_as.get_ref(),
        router_id: *section.router_id.get_ref(),
    };
    if local.asn == 0 {
        return Err(source.error_at(section.local_as.span(), "local_as must not be 0"));
    }
    if local.router_id.is_unspecified() {
        return Err(source.error_at(section.router_id.span(), "router_id must not be 0.0.0.0"));
    }
    let mut peers: Vec<NetPeerConfig> = Vec::new();
    let mut leg = BgpLegConfig::default();
    for p in &section.peers {
        let address = *p.address.get_ref();
        if peers.iter().any(|q| q.peer.address == address) {
            return Err(source.error_at(
                p.address.span(),
                format!("peer {address} is configured twice"),
            ));
        }
        let mode = one_of(
            source,
            p.mode.as_ref(),
            ConnectMode::Passive,
            "mode",
            &[
                ("passive", ConnectMode::Passive),
                ("active", ConnectMode::Active),
            ],
        )?;
        if mode == ConnectMode::Passive && section.listen.is_empty() {
            return Err(source.error_at(
                p.address.span(),
                format!("peer {address} is passive but bgp_leg.listen is empty"),
            ));
        }
        let remote_as = p.remote_as.as_ref().map_or(local.asn, |a| *a.get_ref());
        let mut peer = PeerConfig::new(address, remote_as, mode);
        if let Some(hold) = &p.hold_time {
            peer.hold_time = u16::try_from(hold.get_ref().0.as_secs())
                .ok()
                .filter(|h| *h == 0 || *h >= 3)
                .ok_or_else(|| {
                    source.error_at(
                        hold.span(),
                        "hold_time must be 0 s or between 3 s and 65535 s",
                    )
                })?;
        }
        let restart = p
            .graceful_restart_time
            .as_ref()
            .map_or(DEFAULT_GRACEFUL_RESTART, |g| g.get_ref().0);
        peer.graceful_restart = !restart.is_zero();
        if peer.graceful_restart {
            peer.stale_routes_time = restart;
        }
        // What the core refuses is named at the peer's address.
        brasa_bgp::Peer::new(local, peer.clone())
            .map_err(|e| source.error_at(p.address.span(), format!("peer {address}: {e}")))?;
        leg.peers.push(LegPeerConfig {
            address,
            restart_time: restart,
        });
        peers.push(NetPeerConfig {
            peer,
            port: p.port.unwrap_or(179),
            local_address: p.local_address,
        });
    }
    let mut listen = Vec::new();
    for l in &section.listen {
        if listen.contains(l.get_ref()) {
            return Err(source.error_at(l.span(), format!("{} is listed twice", l.get_ref())));
        }
        listen.push(*l.get_ref());
    }
    Ok((
        SpeakerConfig {
            local,
            listen,
            peers,
        },
        leg,
    ))
}

/// The index in `engine.servers` of the `[[radius.server]]` `name`; the error lists those
/// defined.
pub fn server_index(
    source: &Source,
    engine: &EngineConfig,
    name: &Spanned<String>,
) -> Result<usize, ConfigError> {
    engine
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
        let i = server_index(source, engine, name)?;
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
