//! Control-plane operations on a running CAFE pipeline (what `cf_tool`, `ci_tool` and the CME
//! agent do), with serializable requests and answers shared by the management API and the CLI.

use crate::cafe::forward::{EgressKind, ForwardEntry, KeyCounters};
use crate::cafe::intercept::{ExpiredStream, FilterError, FilterSpec, FilterState};
use crate::cafe::{ForwardStage, InterceptStage};
use crate::pipeline::{LinkKind, Pipeline, PortCounters};
use crate::wire::MacAddr;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Why a control operation was refused (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The device is not one of the data plane's interfaces.
    #[error("unknown device {0:?}: it is not an interface of this data plane")]
    UnknownDevice(String),
    /// The device's framing does not suit the requested egress.
    #[error("device {device:?} is {actual}, but {wanted} needs {needed}")]
    WrongLink {
        /// The device.
        device: String,
        /// What it is.
        actual: &'static str,
        /// What was asked.
        wanted: &'static str,
        /// What that needs.
        needed: &'static str,
    },
    /// The MAC address argument is not one.
    #[error("invalid MAC address {0:?}: expected six hex bytes such as aa:11:b0:00:00:01")]
    BadMac(String),
    /// The key list is not 1 to 255 bytes of hex.
    #[error("{0}")]
    BadKeys(String),
    /// No forwarding entry for this key.
    #[error("no forwarding entry for key {0:02x}")]
    NoSuchKey(u8),
    /// VLAN id outside 1..=4094.
    #[error("invalid VLAN id {0}: expected 1 to 4094")]
    BadVlan(u16),
    /// The pipeline has no CAFE stages.
    #[error("this pipeline has no CAFE stages")]
    NoCafe,
    /// A filter was refused.
    #[error(transparent)]
    Filter(#[from] FilterError),
}

/// A forwarding rule to add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ForwardRule {
    /// `add-ethernet KEY DEVICE MAC`.
    Ethernet {
        /// Key.
        key: u8,
        /// Interface.
        device: String,
        /// Destination MAC.
        mac: String,
    },
    /// `add-vlan KEY DEVICE MAC VID`.
    Vlan {
        /// Key.
        key: u8,
        /// Interface.
        device: String,
        /// Destination MAC.
        mac: String,
        /// VLAN id.
        vid: u16,
    },
    /// `add-device KEY DEVICE`.
    Device {
        /// Key.
        key: u8,
        /// Layer-3 interface (GRE tunnel).
        device: String,
    },
}

/// How a forwarding entry's packets leave (the framing of [`EgressKind`], without its fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardKind {
    /// An Ethernet frame to the next CAFE's MAC.
    Ethernet,
    /// An 802.1Q-tagged Ethernet frame.
    Vlan,
    /// A layer-3 device.
    Device,
}

impl std::fmt::Display for ForwardKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ForwardKind::Ethernet => "ethernet",
            ForwardKind::Vlan => "vlan",
            ForwardKind::Device => "device",
        })
    }
}

/// A forwarding entry as shown by `get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardView {
    /// Key.
    pub key: u8,
    /// Interface.
    pub device: String,
    /// How packets leave.
    pub kind: ForwardKind,
    /// Destination MAC (Ethernet and VLAN).
    pub mac: Option<String>,
    /// VLAN id.
    pub vid: Option<u16>,
    /// Packets forwarded with this key.
    pub packets: u64,
    /// Bytes forwarded with this key.
    pub bytes: u64,
}

/// A filter to add (`ci_tool add` arguments, plus what the CME agent sends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterRequest {
    /// Stream id.
    pub id: u32,
    /// Idle timeout in seconds (0 = never).
    pub timeout: u32,
    /// Source address, `None` = any.
    pub src: Option<IpAddr>,
    /// Destination address, `None` = any.
    pub dst: Option<IpAddr>,
    /// Protocol, 0 = any.
    pub protocol: u8,
    /// Source port, 0 = any.
    pub src_port: u16,
    /// Destination port, 0 = any.
    pub dst_port: u16,
    /// Keys in hex, e.g. `1234567890abcdef`.
    pub keys: String,
    /// Bandwidth (agent only).
    #[serde(default)]
    pub bandwidth: u64,
    /// Class of service (agent only).
    #[serde(default)]
    pub cos: String,
    /// AS path (agent only).
    #[serde(default)]
    pub as_path: Vec<u32>,
}

/// A filter as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterView {
    /// Stream id.
    pub id: u32,
    /// Idle timeout in seconds.
    pub timeout: u32,
    /// Source (`None` = any).
    pub src: Option<IpAddr>,
    /// Destination (`None` = any).
    pub dst: Option<IpAddr>,
    /// Protocol.
    pub protocol: u8,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Keys in hex.
    pub keys: String,
    /// Packets matched.
    pub packets: u64,
    /// Bytes matched.
    pub bytes: u64,
}

/// Counters of the whole data plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Per interface.
    pub interfaces: Vec<InterfaceStats>,
    /// Drops by reason.
    pub drops: Vec<(String, u64)>,
    /// Decapsulated packets and bytes.
    pub decapsulated: u64,
    /// Bytes of decapsulated packets.
    pub decapsulated_bytes: u64,
    /// Configured filters.
    pub filters: usize,
    /// Streams expired since start.
    pub expired_total: u64,
    /// Expired records waiting for `collect`.
    pub expired_pending: usize,
}

/// Counters of one interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceStats {
    /// Name.
    pub name: String,
    /// Counters.
    #[serde(flatten)]
    pub counters: PortCountersView,
}

/// Serializable copy of [`PortCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PortCountersView {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Handed to the kernel.
    pub to_kernel: u64,
    /// Left to the kernel's own copy.
    pub ignored: u64,
    /// Dropped.
    pub dropped: u64,
    /// Punted to the control plane (capture SAPs).
    #[serde(default)]
    pub punted: u64,
    /// Dropped by the kernel before the data plane read them (receive ring full).
    #[serde(default)]
    pub rx_dropped: u64,
    /// Times an AF_XDP socket's fill ring was empty.
    #[serde(default)]
    pub rx_fill_empty: u64,
}

impl From<PortCounters> for PortCountersView {
    fn from(c: PortCounters) -> Self {
        Self {
            rx_packets: c.rx_packets,
            rx_bytes: c.rx_bytes,
            tx_packets: c.tx_packets,
            tx_bytes: c.tx_bytes,
            to_kernel: c.to_kernel,
            ignored: c.ignored,
            dropped: c.dropped,
            punted: c.punted,
            rx_dropped: c.rx_dropped,
            rx_fill_empty: c.rx_fill_empty,
        }
    }
}

impl PortCountersView {
    fn add(&mut self, o: &PortCountersView) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.to_kernel += o.to_kernel;
        self.ignored += o.ignored;
        self.dropped += o.dropped;
        self.punted += o.punted;
        self.rx_dropped += o.rx_dropped;
        self.rx_fill_empty += o.rx_fill_empty;
    }
}

/// The answer of one control operation run on every worker's copy of the tables
/// (`io::worker::Handle::call`), folded into the one answer the operator sees: counters add
/// up, lists are joined by key, and a change that one copy refused is refused (every copy
/// gets the same changes in the same order, so they agree).
pub trait Merge: Sized {
    /// Folds `other` (a later worker's answer) into `self`.
    fn merge(self, other: Self) -> Self;
}

/// Folds the answers of every worker; `None` when there are none.
pub fn merged<T: Merge>(answers: Vec<T>) -> Option<T> {
    answers.into_iter().reduce(T::merge)
}

impl Merge for () {
    fn merge(self, _: Self) -> Self {}
}

impl<A: Merge, B: Merge, C: Merge> Merge for (A, B, C) {
    fn merge(self, other: Self) -> Self {
        (
            self.0.merge(other.0),
            self.1.merge(other.1),
            self.2.merge(other.2),
        )
    }
}

impl<T: Merge, E> Merge for Result<T, E> {
    fn merge(self, other: Self) -> Self {
        Ok(self?.merge(other?))
    }
}

impl Merge for Stats {
    fn merge(mut self, other: Self) -> Self {
        for (mine, theirs) in self.interfaces.iter_mut().zip(&other.interfaces) {
            mine.counters.add(&theirs.counters);
        }
        for (mine, theirs) in self.drops.iter_mut().zip(&other.drops) {
            mine.1 += theirs.1;
        }
        self.decapsulated += other.decapsulated;
        self.decapsulated_bytes += other.decapsulated_bytes;
        // Every worker has every filter; expired records are kept by one of them.
        self.filters = self.filters.max(other.filters);
        self.expired_total += other.expired_total;
        self.expired_pending += other.expired_pending;
        self
    }
}

impl Merge for Vec<ForwardView> {
    fn merge(mut self, other: Self) -> Self {
        for theirs in other {
            match self.iter_mut().find(|mine| mine.key == theirs.key) {
                Some(mine) => {
                    mine.packets += theirs.packets;
                    mine.bytes += theirs.bytes;
                }
                None => self.push(theirs),
            }
        }
        self
    }
}

impl Merge for Vec<FilterView> {
    fn merge(mut self, other: Self) -> Self {
        for theirs in other {
            match self.iter_mut().find(|mine| mine.id == theirs.id) {
                Some(mine) => {
                    mine.packets += theirs.packets;
                    mine.bytes += theirs.bytes;
                }
                None => self.push(theirs),
            }
        }
        self.sort_by_key(|view| view.id);
        self
    }
}

impl Merge for Vec<ExpiredStream> {
    fn merge(mut self, other: Self) -> Self {
        self.extend(other);
        self
    }
}

fn link_name(link: LinkKind) -> &'static str {
    match link {
        LinkKind::Ethernet => "an Ethernet interface",
        LinkKind::Ip => "a layer-3 device",
    }
}

fn forward_stage(pipeline: &mut Pipeline) -> Result<&mut ForwardStage, ControlError> {
    pipeline
        .stage_mut::<ForwardStage>()
        .ok_or(ControlError::NoCafe)
}

fn intercept_stage(pipeline: &mut Pipeline) -> Result<&mut InterceptStage, ControlError> {
    pipeline
        .stage_mut::<InterceptStage>()
        .ok_or(ControlError::NoCafe)
}

/// Adds (or replaces) a forwarding rule.
pub fn forward_add(pipeline: &mut Pipeline, rule: &ForwardRule) -> Result<(), ControlError> {
    let (key, device, kind, wanted, needed) = match rule {
        ForwardRule::Ethernet { key, device, mac } => {
            let dst: MacAddr = mac.parse().map_err(|_| ControlError::BadMac(mac.clone()))?;
            (
                *key,
                device,
                EgressKind::Ethernet { dst },
                "add-ethernet",
                LinkKind::Ethernet,
            )
        }
        ForwardRule::Vlan {
            key,
            device,
            mac,
            vid,
        } => {
            let dst: MacAddr = mac.parse().map_err(|_| ControlError::BadMac(mac.clone()))?;
            if *vid == 0 || *vid > 4094 {
                return Err(ControlError::BadVlan(*vid));
            }
            (
                *key,
                device,
                EgressKind::Vlan { dst, vid: *vid },
                "add-vlan",
                LinkKind::Ethernet,
            )
        }
        ForwardRule::Device { key, device } => {
            (*key, device, EgressKind::Device, "add-device", LinkKind::Ip)
        }
    };
    let port = pipeline
        .port_id(device)
        .ok_or_else(|| ControlError::UnknownDevice(device.clone()))?;
    let actual = pipeline
        .ports()
        .get(usize::from(port))
        .map(|p| p.link)
        .unwrap_or(LinkKind::Ethernet);
    if actual != needed {
        return Err(ControlError::WrongLink {
            device: device.clone(),
            actual: link_name(actual),
            wanted,
            needed: link_name(needed),
        });
    }
    forward_stage(pipeline)?
        .table
        .insert(key, ForwardEntry { port, kind });
    Ok(())
}

/// Removes the rule for `key`.
pub fn forward_remove(pipeline: &mut Pipeline, key: u8) -> Result<(), ControlError> {
    forward_stage(pipeline)?
        .table
        .remove(key)
        .map(|_| ())
        .ok_or(ControlError::NoSuchKey(key))
}

/// The rule for `key`, or all rules.
pub fn forward_get(
    pipeline: &mut Pipeline,
    key: Option<u8>,
) -> Result<Vec<ForwardView>, ControlError> {
    let names: Vec<String> = pipeline.ports().iter().map(|p| p.name.clone()).collect();
    let stage = forward_stage(pipeline)?;
    let view = |key: u8, entry: ForwardEntry, counters: KeyCounters| {
        let (kind, mac, vid) = match entry.kind {
            EgressKind::Ethernet { dst } => (ForwardKind::Ethernet, Some(dst.to_string()), None),
            EgressKind::Vlan { dst, vid } => (ForwardKind::Vlan, Some(dst.to_string()), Some(vid)),
            EgressKind::Device => (ForwardKind::Device, None, None),
        };
        ForwardView {
            key,
            device: names
                .get(usize::from(entry.port))
                .cloned()
                .unwrap_or_default(),
            kind,
            mac,
            vid,
            packets: counters.packets,
            bytes: counters.bytes,
        }
    };
    match key {
        Some(key) => {
            let entry = stage.table.get(key).ok_or(ControlError::NoSuchKey(key))?;
            Ok(vec![view(key, entry, stage.table.counters(key))])
        }
        None => Ok(stage.table.iter().map(|(k, e, c)| view(k, e, c)).collect()),
    }
}

/// Adds a filter.
pub fn intercept_add(
    pipeline: &mut Pipeline,
    request: &FilterRequest,
    now_ns: u64,
) -> Result<(), ControlError> {
    let keys =
        crate::cafe::intercept::parse_keys_hex(&request.keys).map_err(ControlError::BadKeys)?;
    let spec = FilterSpec {
        id: request.id,
        timeout_secs: request.timeout,
        src: request.src.filter(|a| !a.is_unspecified()),
        dst: request.dst.filter(|a| !a.is_unspecified()),
        protocol: request.protocol,
        src_port: request.src_port,
        dst_port: request.dst_port,
        keys,
        bandwidth: request.bandwidth,
        cos: request.cos.clone(),
        as_path: request.as_path.clone(),
    };
    intercept_stage(pipeline)?.filters.insert(spec, now_ns)?;
    Ok(())
}

/// Removes a filter.
pub fn intercept_remove(pipeline: &mut Pipeline, id: u32) -> Result<(), ControlError> {
    intercept_stage(pipeline)?.filters.remove(id)?;
    Ok(())
}

fn filter_view(state: &FilterState) -> FilterView {
    let spec = &state.spec;
    FilterView {
        id: spec.id,
        timeout: spec.timeout_secs,
        src: spec.src,
        dst: spec.dst,
        protocol: spec.protocol,
        src_port: spec.src_port,
        dst_port: spec.dst_port,
        keys: spec.keys.iter().map(|k| format!("{k:02x}")).collect(),
        packets: state.packets,
        bytes: state.bytes,
    }
}

/// All filters with their counters.
pub fn intercept_list(pipeline: &mut Pipeline) -> Result<Vec<FilterView>, ControlError> {
    Ok(intercept_stage(pipeline)?
        .filters
        .filters()
        .into_iter()
        .map(filter_view)
        .collect())
}

/// Expires idle filters as of `now_ns`, then takes every expired-stream record.
pub fn intercept_collect(
    pipeline: &mut Pipeline,
    now_ns: u64,
) -> Result<Vec<ExpiredStream>, ControlError> {
    let stage = intercept_stage(pipeline)?;
    stage.filters.expire(now_ns);
    Ok(stage.filters.collect_expired())
}

/// Every counter.
pub fn stats(pipeline: &mut Pipeline) -> Stats {
    let interfaces = pipeline
        .ports()
        .iter()
        .zip(pipeline.port_counters())
        .filter(|(port, _)| !port.name.is_empty())
        .map(|(port, counters)| InterfaceStats {
            name: port.name.clone(),
            counters: (*counters).into(),
        })
        .collect();
    let drops = pipeline
        .drops()
        .map(|(reason, count)| (reason.name().to_string(), count))
        .collect();
    let forward = pipeline
        .stage_mut::<ForwardStage>()
        .map(|s| s.counters)
        .unwrap_or_default();
    let (filters, expired_total, expired_pending) = match pipeline.stage_mut::<InterceptStage>() {
        Some(stage) => (
            stage.filters.len(),
            stage.filters.expired_totals().0,
            stage.filters.expired_pending(),
        ),
        None => (0, 0, 0),
    };
    Stats {
        interfaces,
        drops,
        decapsulated: forward.decapsulated,
        decapsulated_bytes: forward.decapsulated_bytes,
        filters,
        expired_total,
        expired_pending,
    }
}
