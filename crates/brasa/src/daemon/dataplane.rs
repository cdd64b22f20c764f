//! `brasa dataplane -c dp.toml`: the userspace data plane daemon (stateless CAFE, COMET D4.3
//! §5): its configuration file, the management API and the CME agent.
//!
//! Worker threads (brasa-dataplane's `io::worker`) each own a pipeline and their AF_PACKET
//! rings or AF_XDP sockets; this module adds the management API (`/api/v1/cafe/...`,
//! `/api/v1/dataplane/...`, `/metrics`) and the CME agent (TCP, 2-byte length + protobuf), both
//! of which reach the pipelines as jobs run on every worker, their answers merged.

use crate::common::access::{Access, ApiConfig, ApiSection};
use crate::common::config::{ConfigDuration, ConfigError, Source};
use crate::common::mgmt::{self, ApiError};
use crate::common::prom::{Kind, PromWriter};
use crate::common::signal::ShutdownSignal;
use crate::console;
use anyhow::Context;
use axum::extract::{Path, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use brasa_dataplane::agent;
use brasa_dataplane::cafe::intercept::ExpiredStream;
use brasa_dataplane::control::Merge;
use brasa_dataplane::control::{
    self, ControlError, FilterRequest, FilterView, ForwardRule, ForwardView, Stats,
};
use brasa_dataplane::io::afpacket::RingConfig;
use brasa_dataplane::io::worker::{
    self, Handle, PortConfig, PortInfo, PortIo, StageFactory, WorkerConfig, XdpPortConfig,
};
use brasa_dataplane::io::xdp::xsk::XskConfig;
use brasa_dataplane::io::xdp::XdpModeRequest;
use brasa_dataplane::pipeline::{IpHandoff, Pipeline};
use serde::Deserialize;
use serde_spanned::Spanned;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Default management API address of the data plane.
pub const DEFAULT_API: &str = "127.0.0.1:7781";

/// The data plane's configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    /// The packet path.
    pub dataplane: Spanned<DataplaneSection>,
    /// Management API, console and their access control.
    #[serde(default)]
    pub api: ApiSection,
    /// CME agent.
    #[serde(default)]
    pub agent: AgentSection,
}

/// `[dataplane]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneSection {
    /// Interfaces the data plane receives from and sends to.
    #[serde(default, rename = "interface")]
    pub interfaces: Vec<InterfaceSection>,
    /// TUN device created for packets handed to the kernel (decapsulated and injected).
    #[serde(default = "default_tun")]
    pub tun: Spanned<String>,
    /// Packets per batch.
    #[serde(default = "default_batch")]
    pub batch_size: Spanned<usize>,
    /// How often idle intercept filters are expired.
    #[serde(default = "default_tick")]
    pub expiry_interval: Spanned<ConfigDuration>,
    /// Receive ring blocks per interface and worker (256 KiB each).
    #[serde(default = "default_blocks")]
    pub ring_blocks: Spanned<u32>,
    /// Worker threads, each with a pipeline of its own: on AF_PACKET interfaces each has its
    /// own ring and gets the frames received by its share of the CPUs (`PACKET_FANOUT_CPU`);
    /// on AF_XDP interfaces receive queue `i` is served by worker `i % workers`.
    #[serde(default = "default_workers")]
    pub workers: Spanned<usize>,
    /// Pin worker `i` to CPU `cpus[i % len]`; empty: not pinned.
    #[serde(default)]
    pub cpus: Vec<usize>,
    /// `brasa run` only: enforce the Subscriber Manager's subscribers' services (PCC rules)
    /// on the IP interfaces of the services and account them.
    pub subscribers: Option<Spanned<super::pcc::config::SubscribersSection>>,
}

/// `[[dataplane.interface]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceSection {
    /// Interface name (Ethernet, or a layer-3 device such as a GRE tunnel).
    pub name: Spanned<String>,
    /// Unclaimed IP packets: `kernel` (the kernel keeps its own copy) or `inject` (the kernel's
    /// forwarding from this interface is turned off and the data plane hands them over).
    #[serde(default = "default_handoff")]
    pub ip: IpHandoff,
    /// An access port of the service data plane (`brasa run`): its SAP encapsulation, `null`,
    /// `dot1q` or `qinq` (SR OS `encap-type`). Absent: not an access port.
    pub encap: Option<PortEncapName>,
    /// TPID of the outer tag on a dot1q or QinQ access port: `0x8100` (default, as SR OS) or
    /// `0x88a8`.
    pub outer_tpid: Option<Spanned<String>>,
    /// How frames are read and written: `af_packet` (default) or `af_xdp`.
    #[serde(default)]
    pub io: IoSetting,
    /// AF_XDP: receive queues to serve (default: all of the interface's).
    #[serde(default)]
    pub queues: Option<Spanned<Vec<u32>>>,
    /// AF_XDP: frames of each socket's memory (UMEM), half receive, half transmit.
    #[serde(default)]
    pub umem_frames: Option<Spanned<u32>>,
    /// AF_XDP: where the XDP program runs: `auto` (native, else generic), `native`, `generic`.
    #[serde(default)]
    pub xdp_mode: Option<Spanned<XdpModeRequest>>,
    /// AF_XDP: busy polling budget in microseconds (`SO_BUSY_POLL`); 0 = off.
    #[serde(default)]
    pub busy_poll_us: Option<Spanned<u32>>,
}

/// `io` of an interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum IoSetting {
    /// AF_PACKET rings.
    #[default]
    #[serde(rename = "af_packet")]
    AfPacket,
    /// AF_XDP sockets fed by brasa's XDP program (AF_PACKET when it cannot attach).
    #[serde(rename = "af_xdp")]
    AfXdp,
}

impl InterfaceSection {
    /// The worker's view of this interface.
    fn port_config(&self) -> PortConfig {
        let io = match self.io {
            IoSetting::AfPacket => PortIo::AfPacket,
            IoSetting::AfXdp => {
                let defaults = XskConfig::default();
                PortIo::AfXdp(XdpPortConfig {
                    queues: self
                        .queues
                        .as_ref()
                        .map(|q| q.get_ref().clone())
                        .unwrap_or_default(),
                    mode: self
                        .xdp_mode
                        .as_ref()
                        .map(|m| *m.get_ref())
                        .unwrap_or_default(),
                    umem: XskConfig {
                        frames: self
                            .umem_frames
                            .as_ref()
                            .map_or(defaults.frames, |f| *f.get_ref()),
                        busy_poll_us: self.busy_poll_us.as_ref().map_or(0, |b| *b.get_ref()),
                        ..defaults
                    },
                    redirect_all: false,
                })
            }
        };
        PortConfig {
            name: self.name.get_ref().clone(),
            ip_handoff: self.ip,
            io,
        }
    }
}

/// The SAP encapsulation of an access port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortEncapName {
    /// The whole port is one SAP.
    Null,
    /// One 802.1Q tag.
    Dot1q,
    /// Two tags (outer, inner).
    Qinq,
}

/// `[agent]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Whether to run the CME agent.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Listen address.
    #[serde(default = "default_agent")]
    pub listen: SocketAddr,
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: default_agent(),
        }
    }
}

/// A default, which has no place in the file (errors about it point at `[dataplane]`).
fn unplaced<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

fn default_tun() -> Spanned<String> {
    unplaced("brasa0".into())
}
fn default_batch() -> Spanned<usize> {
    unplaced(256)
}
fn default_tick() -> Spanned<ConfigDuration> {
    unplaced(ConfigDuration(Duration::from_secs(1)))
}
fn default_blocks() -> Spanned<u32> {
    unplaced(64)
}
fn default_workers() -> Spanned<usize> {
    unplaced(1)
}
fn default_handoff() -> IpHandoff {
    IpHandoff::Kernel
}
fn default_api() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7781))
}
fn default_agent() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9999))
}
fn default_true() -> bool {
    true
}

/// Shortest expiry tick (the worker's idle poll wakes at least this often for it).
const MIN_EXPIRY_INTERVAL: Duration = Duration::from_millis(10);

/// What the kernel takes as an interface name (its `dev_valid_name`).
fn valid_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
}

/// Loads and checks a data plane configuration: every error names `file:line:col` and what
/// was expected, before anything is opened.
/// Reads and validates the file at `path`; its `[api]` comes back resolved beside it.
pub fn load(path: &std::path::Path) -> Result<(DataplaneConfig, ApiConfig), ConfigError> {
    let source = Source::read(path)?;
    let mut config: DataplaneConfig = source.parse()?;
    let base = path.parent().unwrap_or(std::path::Path::new(""));
    let api = std::mem::take(&mut config.api).resolve(&source, base, default_api())?;
    validate(&source, &config.dataplane)?;
    if let Some(interface) = config
        .dataplane
        .get_ref()
        .interfaces
        .iter()
        .find(|i| i.encap.is_some())
    {
        return Err(source.error_at(
            interface.name.span(),
            "encap makes an access port of the service data plane, which `brasa run` hosts \
             ([dataplane] in its config); `brasa dataplane` runs CAFE only",
        ));
    }
    if let Some(subscribers) = &config.dataplane.get_ref().subscribers {
        return Err(source.error_at(
            subscribers.span(),
            "[dataplane.subscribers] enforces subscriber services on the IP interfaces of the \
             service data plane, which `brasa run` hosts; `brasa dataplane` runs CAFE only",
        ));
    }
    Ok((config, api))
}

/// Checks a `[dataplane]` section (of `brasa dataplane` or `brasa run`): every error names
/// `file:line:col` and what was expected, before anything is opened.
pub fn validate(source: &Source, dataplane: &Spanned<DataplaneSection>) -> Result<(), ConfigError> {
    let section = dataplane.get_ref();
    let error = |value_span: Range<usize>, message: String| {
        // A default has no span of its own: point at `[dataplane]`.
        let span = if value_span.is_empty() {
            dataplane.span()
        } else {
            value_span
        };
        Err(source.error_at(span, message))
    };
    const NAME_RULE: &str = "expected 1 to 15 characters, no '/', ':' or white space";
    if section.interfaces.is_empty() {
        return error(
            dataplane.span(),
            "[dataplane] needs at least one [[dataplane.interface]] with a name".into(),
        );
    }
    for (index, interface) in section.interfaces.iter().enumerate() {
        let name = interface.name.get_ref();
        if interface.io == IoSetting::AfPacket {
            let xdp_only = [
                ("queues", interface.queues.as_ref().map(Spanned::span)),
                (
                    "umem_frames",
                    interface.umem_frames.as_ref().map(Spanned::span),
                ),
                ("xdp_mode", interface.xdp_mode.as_ref().map(Spanned::span)),
                (
                    "busy_poll_us",
                    interface.busy_poll_us.as_ref().map(Spanned::span),
                ),
            ];
            if let Some((key, span)) = xdp_only
                .into_iter()
                .find_map(|(key, span)| span.map(|s| (key, s)))
            {
                return error(
                    span,
                    format!("{key} applies to AF_XDP interfaces only: expected io = \"af_xdp\" on interface {name:?}"),
                );
            }
        }
        if let Some(frames) = &interface.umem_frames {
            let check = XskConfig {
                frames: *frames.get_ref(),
                ..XskConfig::default()
            }
            .validate();
            if let Err(message) = check {
                return error(frames.span(), format!("umem_frames: {message}"));
            }
        }
        if let Some(queues) = &interface.queues {
            let list = queues.get_ref();
            let repeated = list.iter().enumerate().any(|(i, q)| list[..i].contains(q));
            if list.is_empty() || repeated {
                return error(
                    queues.span(),
                    "queues: expected a list of distinct receive queue numbers, e.g. [0, 1]".into(),
                );
            }
        }
        if !valid_interface_name(name) {
            return error(
                interface.name.span(),
                format!("invalid interface name {name:?}: {NAME_RULE}"),
            );
        }
        if section.interfaces[..index]
            .iter()
            .any(|earlier| earlier.name.get_ref() == name)
        {
            return error(
                interface.name.span(),
                format!("interface {name:?} is listed twice"),
            );
        }
    }
    let tun = section.tun.get_ref();
    if !valid_interface_name(tun) {
        return error(
            section.tun.span(),
            format!("invalid TUN device name {tun:?}: {NAME_RULE}"),
        );
    }
    let batch_size = *section.batch_size.get_ref();
    if !(1..=4096).contains(&batch_size) {
        return error(
            section.batch_size.span(),
            format!("batch_size = {batch_size}: expected 1 to 4096 packets"),
        );
    }
    let expiry = section.expiry_interval.get_ref();
    if expiry.0 < MIN_EXPIRY_INTERVAL {
        return error(
            section.expiry_interval.span(),
            format!("expiry_interval = \"{expiry}\": expected at least \"10ms\""),
        );
    }
    let ring_blocks = *section.ring_blocks.get_ref();
    if ring_blocks < 2 {
        return error(
            section.ring_blocks.span(),
            format!("ring_blocks = {ring_blocks}: expected at least 2 (the kernel fills one while the data plane reads another)"),
        );
    }
    if *section.workers.get_ref() == 0 {
        return error(
            section.workers.span(),
            "workers = 0: expected at least 1 worker thread".into(),
        );
    }
    for interface in &section.interfaces {
        if let Some(tpid) = &interface.outer_tpid {
            if parse_tpid(tpid.get_ref()).is_none() {
                return error(
                    tpid.span(),
                    format!(
                        "outer_tpid = {:?}: expected \"0x8100\" or \"0x88a8\"",
                        tpid.get_ref()
                    ),
                );
            }
            if interface.encap.is_none() || interface.encap == Some(PortEncapName::Null) {
                return error(
                    tpid.span(),
                    "outer_tpid needs encap = \"dot1q\" or \"qinq\"".into(),
                );
            }
        }
    }
    Ok(())
}

/// The TPID of `text` (`0x8100` or `0x88a8`).
pub fn parse_tpid(text: &str) -> Option<u16> {
    match text.to_ascii_lowercase().as_str() {
        "0x8100" => Some(0x8100),
        "0x88a8" => Some(0x88a8),
        _ => None,
    }
}

/// The worker settings of a checked `[dataplane]` section; `services` hosts the service data
/// plane in front of the CAFE stages.
pub fn worker_setup(
    section: &DataplaneSection,
    stages: StageFactory,
) -> (WorkerConfig, worker::Tuning) {
    let worker_config = WorkerConfig {
        ports: section
            .interfaces
            .iter()
            .map(InterfaceSection::port_config)
            .collect(),
        tun: Some(section.tun.get_ref().clone()),
        ring: RingConfig {
            block_count: *section.ring_blocks.get_ref(),
            ..RingConfig::default()
        },
        batch_size: *section.batch_size.get_ref(),
        tick_interval: section.expiry_interval.get_ref().0,
    };
    let tuning = worker::Tuning {
        workers: *section.workers.get_ref(),
        cpus: section.cpus.clone(),
        stages,
        ..worker::Tuning::default()
    };
    (worker_config, tuning)
}

/// Runs jobs on the worker and awaits their result.
#[derive(Clone)]
pub(crate) struct Ctl {
    access: Arc<Access>,
    handle: Handle,
    agent_requests: Arc<AtomicU64>,
    agent_malformed: Arc<AtomicU64>,
    agent_oversized: Arc<AtomicU64>,
}

impl Ctl {
    /// Runs `f` on every worker's pipeline and merges the answers (counters summed).
    async fn call<R: Merge + Send + 'static>(
        &self,
        f: impl Fn(&mut Pipeline, u64) -> R + Send + Sync + 'static,
    ) -> Result<R, ApiError> {
        let handle = self.handle.clone();
        let answers = tokio::task::spawn_blocking(move || handle.call(f))
            .await
            .map_err(|err| ApiError::internal(err.to_string()))?
            .map_err(|err| ApiError::internal(err.to_string()))?;
        brasa_dataplane::control::merged(answers)
            .ok_or_else(|| ApiError::internal("the data plane has no worker"))
    }
}

fn control_error(err: ControlError) -> ApiError {
    match err {
        ControlError::UnknownDevice(_) | ControlError::NoSuchKey(_) => {
            ApiError::not_found(err.to_string())
        }
        ControlError::Filter(brasa_dataplane::cafe::intercept::FilterError::NotFound(_)) => {
            ApiError::not_found(err.to_string())
        }
        ControlError::Filter(brasa_dataplane::cafe::intercept::FilterError::DuplicateId(_)) => {
            ApiError::conflict(err.to_string())
        }
        _ => ApiError::bad_request(err.to_string()),
    }
}

fn parse_key(text: &str) -> Result<u8, ApiError> {
    u8::from_str_radix(text.trim_start_matches("0x"), 16).map_err(|_| {
        ApiError::bad_request(format!(
            "invalid key {text:?}: expected one byte in hex (00 to ff)"
        ))
    })
}

pub(crate) async fn forward_list(
    State(ctl): State<Ctl>,
) -> Result<Json<Vec<ForwardView>>, ApiError> {
    ctl.call(|p, _| control::forward_get(p, None))
        .await?
        .map(Json)
        .map_err(control_error)
}

async fn forward_get(
    State(ctl): State<Ctl>,
    Path(key): Path<String>,
) -> Result<Json<Vec<ForwardView>>, ApiError> {
    let key = parse_key(&key)?;
    ctl.call(move |p, _| control::forward_get(p, Some(key)))
        .await?
        .map(Json)
        .map_err(control_error)
}

async fn forward_add(
    State(ctl): State<Ctl>,
    Json(rule): Json<ForwardRule>,
) -> Result<Json<serde_json::Value>, ApiError> {
    ctl.call(move |p, _| control::forward_add(p, &rule))
        .await?
        .map_err(control_error)?;
    Ok(Json(serde_json::json!({"result": "ok"})))
}

async fn forward_remove(
    State(ctl): State<Ctl>,
    Path(key): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = parse_key(&key)?;
    ctl.call(move |p, _| control::forward_remove(p, key))
        .await?
        .map_err(control_error)?;
    Ok(Json(serde_json::json!({"result": "ok"})))
}

pub(crate) async fn intercept_list(
    State(ctl): State<Ctl>,
) -> Result<Json<Vec<FilterView>>, ApiError> {
    ctl.call(|p, _| control::intercept_list(p))
        .await?
        .map(Json)
        .map_err(control_error)
}

async fn intercept_add(
    State(ctl): State<Ctl>,
    Json(request): Json<FilterRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    ctl.call(move |p, now| control::intercept_add(p, &request, now))
        .await?
        .map_err(control_error)?;
    Ok(Json(serde_json::json!({"result": "ok"})))
}

async fn intercept_remove(
    State(ctl): State<Ctl>,
    Path(id): Path<u32>,
) -> Result<Json<serde_json::Value>, ApiError> {
    ctl.call(move |p, _| control::intercept_remove(p, id))
        .await?
        .map_err(control_error)?;
    Ok(Json(serde_json::json!({"result": "ok"})))
}

async fn intercept_collect(State(ctl): State<Ctl>) -> Result<Json<Vec<ExpiredStream>>, ApiError> {
    ctl.call(control::intercept_collect)
        .await?
        .map(Json)
        .map_err(control_error)
}

pub(crate) async fn stats(State(ctl): State<Ctl>) -> Result<Json<Stats>, ApiError> {
    Ok(Json(ctl.call(|p, _| control::stats(p)).await?))
}

/// One port for `brasa show dataplane ports`: how it is read, and its receive losses.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PortView {
    /// How the port is read and written.
    #[serde(flatten)]
    pub info: PortInfo,
    /// Frames received, summed over the workers.
    pub rx_packets: u64,
    /// Frames the kernel dropped before the data plane read them (ring full).
    pub rx_dropped: u64,
    /// Times an AF_XDP socket's fill ring was empty.
    pub rx_fill_empty: u64,
}

async fn ports(State(ctl): State<Ctl>) -> Result<Json<Vec<PortView>>, ApiError> {
    let stats = ctl.call(|p, _| control::stats(p)).await?;
    let views = ctl
        .handle
        .ports()
        .into_iter()
        .map(|info| {
            let counters = stats
                .interfaces
                .iter()
                .find(|i| i.name == info.name)
                .map(|i| i.counters)
                .unwrap_or_default();
            PortView {
                info,
                rx_packets: counters.rx_packets,
                rx_dropped: counters.rx_dropped,
                rx_fill_empty: counters.rx_fill_empty,
            }
        })
        .collect();
    Ok(Json(views))
}

/// A per-interface metric: name, help, and the counter it reads.
type InterfaceFamily = (
    &'static str,
    &'static str,
    fn(&control::PortCountersView) -> u64,
);

/// The data plane's per-interface counters and its drops by reason, for every daemon that
/// hosts a data plane.
pub(crate) fn write_port_metrics(w: &mut PromWriter, stats: &Stats) {
    let interface_families: [InterfaceFamily; 9] = [
        (
            "brasa_dataplane_rx_packets_total",
            "Frames received per interface.",
            |c| c.rx_packets,
        ),
        (
            "brasa_dataplane_rx_bytes_total",
            "Bytes received per interface.",
            |c| c.rx_bytes,
        ),
        (
            "brasa_dataplane_tx_packets_total",
            "Frames transmitted per interface.",
            |c| c.tx_packets,
        ),
        (
            "brasa_dataplane_tx_bytes_total",
            "Bytes transmitted per interface.",
            |c| c.tx_bytes,
        ),
        (
            "brasa_dataplane_to_kernel_total",
            "Packets received per interface and handed to the kernel's stack.",
            |c| c.to_kernel,
        ),
        (
            "brasa_dataplane_ignored_total",
            "Packets received per interface and left to the kernel's own copy.",
            |c| c.ignored,
        ),
        (
            "brasa_dataplane_dropped_total",
            "Packets received per interface and dropped.",
            |c| c.dropped,
        ),
        (
            "brasa_dataplane_rx_ring_dropped_total",
            "Frames the kernel dropped per interface before the data plane read them (receive ring full).",
            |c| c.rx_dropped,
        ),
        (
            "brasa_dataplane_rx_fill_empty_total",
            "Times an AF_XDP socket found its fill ring empty, per interface.",
            |c| c.rx_fill_empty,
        ),
    ];
    for (name, help, value) in interface_families {
        w.family(name, help, Kind::Counter);
        for interface in &stats.interfaces {
            w.sample(
                name,
                &[("interface", &interface.name)],
                value(&interface.counters) as f64,
            );
        }
    }
    w.family(
        "brasa_dataplane_drops_total",
        "Packets dropped, by reason.",
        Kind::Counter,
    );
    for (reason, count) in &stats.drops {
        w.sample(
            "brasa_dataplane_drops_total",
            &[("reason", reason)],
            *count as f64,
        );
    }
}

async fn metrics(State(ctl): State<Ctl>) -> Result<axum::response::Response, ApiError> {
    let (stats, keys, filters) = ctl
        .call(|p, _| {
            let keys = control::forward_get(p, None).unwrap_or_default();
            let filters = control::intercept_list(p).unwrap_or_default();
            (control::stats(p), keys, filters)
        })
        .await?;
    let mut w = PromWriter::default();
    write_port_metrics(&mut w, &stats);
    w.family(
        "brasa_cafe_key_packets_total",
        "COMET packets forwarded, by forwarding key.",
        Kind::Counter,
    );
    for entry in &keys {
        w.sample(
            "brasa_cafe_key_packets_total",
            &[
                ("key", &format!("{:02x}", entry.key)),
                ("device", &entry.device),
            ],
            entry.packets as f64,
        );
    }
    w.family(
        "brasa_cafe_key_bytes_total",
        "COMET bytes forwarded, by forwarding key.",
        Kind::Counter,
    );
    for entry in &keys {
        w.sample(
            "brasa_cafe_key_bytes_total",
            &[
                ("key", &format!("{:02x}", entry.key)),
                ("device", &entry.device),
            ],
            entry.bytes as f64,
        );
    }
    w.family(
        "brasa_cafe_filter_packets_total",
        "IP packets intercepted, by filter id.",
        Kind::Counter,
    );
    for filter in &filters {
        w.sample(
            "brasa_cafe_filter_packets_total",
            &[("id", &filter.id.to_string())],
            filter.packets as f64,
        );
    }
    w.family(
        "brasa_cafe_filter_bytes_total",
        "IP bytes intercepted, by filter id.",
        Kind::Counter,
    );
    for filter in &filters {
        w.sample(
            "brasa_cafe_filter_bytes_total",
            &[("id", &filter.id.to_string())],
            filter.bytes as f64,
        );
    }
    w.family(
        "brasa_cafe_filters",
        "Configured intercept filters.",
        Kind::Gauge,
    )
    .sample("brasa_cafe_filters", &[], stats.filters as f64);
    w.family(
        "brasa_cafe_decapsulated_total",
        "COMET packets decapsulated at the end of their path.",
        Kind::Counter,
    )
    .sample(
        "brasa_cafe_decapsulated_total",
        &[],
        stats.decapsulated as f64,
    );
    w.family(
        "brasa_cafe_expired_streams_total",
        "Intercept filters expired after their idle timeout.",
        Kind::Counter,
    )
    .sample(
        "brasa_cafe_expired_streams_total",
        &[],
        stats.expired_total as f64,
    );
    w.family(
        "brasa_cafe_agent_requests_total",
        "CME agent requests served.",
        Kind::Counter,
    )
    .sample(
        "brasa_cafe_agent_requests_total",
        &[],
        ctl.agent_requests.load(Ordering::Relaxed) as f64,
    );
    w.family(
        "brasa_cafe_agent_malformed_total",
        "CME agent frames that could not be decoded (answered with CAFE_FAILURE).",
        Kind::Counter,
    )
    .sample(
        "brasa_cafe_agent_malformed_total",
        &[],
        ctl.agent_malformed.load(Ordering::Relaxed) as f64,
    );
    w.family(
        "brasa_cafe_agent_oversized_total",
        "CME agent responses too large for one frame (answered with CAFE_FAILURE).",
        Kind::Counter,
    )
    .sample(
        "brasa_cafe_agent_oversized_total",
        &[],
        ctl.agent_oversized.load(Ordering::Relaxed) as f64,
    );
    ctl.access.write_metrics(&mut w);
    Ok(mgmt::metrics_response(w.finish()))
}

/// `/api/v1/dataplane/stats` and `/ports` for a data plane hosted by `brasa run` (the CAFE
/// routes and the agent belong to `brasa dataplane`).
pub(crate) fn port_routes(handle: Handle, access: Arc<Access>) -> Router {
    Router::new()
        .route("/api/v1/dataplane/stats", get(stats))
        .route("/api/v1/dataplane/ports", get(ports))
        .with_state(Ctl {
            access,
            handle,
            agent_requests: Arc::default(),
            agent_malformed: Arc::default(),
            agent_oversized: Arc::default(),
        })
}

fn router(ctl: Ctl) -> Router {
    Router::new()
        .route("/api/v1/cafe/forward", get(forward_list).post(forward_add))
        .route(
            "/api/v1/cafe/forward/{key}",
            get(forward_get).delete(forward_remove),
        )
        .route(
            "/api/v1/cafe/intercept",
            get(intercept_list).post(intercept_add),
        )
        .route("/api/v1/cafe/intercept/{id}", delete(intercept_remove))
        .route("/api/v1/cafe/intercept/collect", post(intercept_collect))
        .route("/api/v1/dataplane/stats", get(stats))
        .route("/api/v1/dataplane/ports", get(ports))
        .route("/metrics", get(metrics))
        .with_state(ctl)
}

async fn serve_agent_connection(ctl: Ctl, mut stream: tokio::net::TcpStream) -> anyhow::Result<()> {
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        while let Some((used, request)) = agent::decode_frame(&buffer) {
            buffer.drain(..used);
            let response = match request {
                Ok(request) => {
                    ctl.agent_requests.fetch_add(1, Ordering::Relaxed);
                    let request = Arc::new(request);
                    ctl.call(move |p, now| agent::handle(p, &request, now))
                        .await
                        .map_err(|err| anyhow::anyhow!(err.detail))?
                }
                Err(malformed) => {
                    ctl.agent_malformed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%malformed, "CME agent: dropped a malformed request");
                    agent::malformed_response(&malformed)
                }
            };
            let frame = match agent::encode_frame(&response) {
                Ok(frame) => frame,
                Err(too_large) => {
                    ctl.agent_oversized.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%too_large, "CME agent: answered CAFE_FAILURE instead");
                    agent::encode_frame(&agent::oversized_response(response.r#type, &too_large))?
                }
            };
            stream.write_all(&frame).await?;
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// Runs the daemon from the configuration file at `path` until SIGTERM or Ctrl-C; then stops
/// the workers, which put back the sysctls they changed.
pub async fn run(path: &std::path::Path) -> anyhow::Result<()> {
    let mut shutdown = ShutdownSignal::install()?;
    let (config, api) = load(path)?;
    let (worker_config, tuning) = worker_setup(config.dataplane.get_ref(), StageFactory::default());
    let (handle, thread) =
        worker::start_tuned(worker_config, tuning).context("starting the data plane")?;
    let ctl = Ctl {
        access: Arc::new(Access::new(api.access.clone())),
        handle: handle.clone(),
        agent_requests: Arc::default(),
        agent_malformed: Arc::default(),
        agent_oversized: Arc::default(),
    };
    // A refused address must not leave a half-started data plane behind (with the sysctls it
    // changed): the workers stop before the error is returned.
    let served = serve_control(&config, &api, ctl).await;
    if let Ok(api) = &served {
        tracing::info!(api = %api, "brasa dataplane running");
        let signal = shutdown.recv().await;
        tracing::info!(signal, "shutting down");
    }
    handle.stop();
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    served.map(|_| ())
}

/// Opens the management API and the CME agent; returns the API's address.
async fn serve_control(
    config: &DataplaneConfig,
    api: &ApiConfig,
    ctl: Ctl,
) -> anyhow::Result<SocketAddr> {
    let shell = Arc::new(console::dataplane::shell(
        ctl.access.clone(),
        api.tls.is_some(),
    ));
    let sampled = ctl.clone();
    console::series::spawn_sampler(shell.series.clone(), move || {
        let ctl = sampled.clone();
        async move { console::dataplane::counters(&ctl).await }
    });
    let router = router(ctl.clone()).merge(console::router(
        shell,
        console::dataplane::routes(),
        ctl.clone(),
    ));
    let api = mgmt::serve(api, ctl.access.clone(), router).await?;
    if config.agent.enabled {
        let listener = tokio::net::TcpListener::bind(config.agent.listen)
            .await
            .with_context(|| format!("CME agent: cannot bind {}", config.agent.listen))?;
        tracing::info!(addr = %listener.local_addr()?, "CME agent listening");
        tokio::spawn(serve_agent(ctl, listener));
    }
    Ok(api)
}

async fn serve_agent(ctl: Ctl, listener: tokio::net::TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let ctl = ctl.clone();
                tokio::spawn(async move {
                    if let Err(err) = serve_agent_connection(ctl, stream).await {
                        tracing::warn!(%peer, %err, "CME agent connection ended");
                    }
                });
            }
            Err(err) => tracing::warn!(%err, "CME agent: accept failed"),
        }
    }
}
