//! The packet pipeline: batches of packets run through an ordered list of stages.
//!
//! A shell (AF_PACKET, pcap, a benchmark) fills a [`Batch`] with received frames, calls
//! [`Pipeline::run`] with the current time, then acts on each packet's [`Verdict`]. A stage
//! only looks at packets whose verdict is still [`Verdict::Pending`] and either decides
//! (transmit, hand to the kernel, drop, ignore) or annotates the packet and leaves it for the
//! next stage. Stages are trait objects called once per batch, so the per-packet work is plain
//! loops over reused buffers: nothing on the fast path allocates.
//!
//! The CAFE pipeline is `classify → cafe-intercept → cafe-forward → ip-handoff`. Subscriber
//! enforcement slots in after `classify` without changing the stages around it: the `pcc`
//! stage ([`crate::pcc`]: subscriber lookup, PCC classification, policers, counters) reads the
//! same [`PacketMeta`] and sets the same verdicts ([`crate::stages::subscriber_stages`]).

use crate::packet::PacketBuf;
use crate::wire::MacAddr;
use std::any::Any;

/// Index of a port (an interface the data plane receives from or transmits to).
pub type PortId = u16;

/// How a port frames packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkKind {
    /// Ethernet: frames start with an Ethernet II header.
    Ethernet,
    /// Layer-3 device (GRE tunnel, TUN): packets start at the network header and the protocol
    /// travels beside them.
    Ip,
}

/// What happens to IP packets that no data-plane function claimed, per port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IpHandoff {
    /// The kernel receives its own copy of every frame (AF_PACKET is a tap): leave them alone.
    Kernel,
    /// The kernel must not forward from this port (brasa disables it): the data plane injects
    /// unclaimed IP packets into the kernel through its TUN device.
    Inject,
    /// The kernel never saw the frame (an AF_XDP port redirected it before the kernel's
    /// stack): every unclaimed IPv4 and IPv6 packet is handed to the kernel through the TUN
    /// device. Set by the shell, never configured.
    #[serde(skip)]
    Redirected,
}

/// One port as the pipeline sees it.
#[derive(Debug, Clone)]
pub struct Port {
    /// Interface name.
    pub name: String,
    /// Framing.
    pub link: LinkKind,
    /// MAC address (source of frames sent from this port).
    pub mac: MacAddr,
    /// Fate of unclaimed IP packets received here.
    pub ip_handoff: IpHandoff,
}

impl Port {
    /// An Ethernet port whose unclaimed IP packets are left to the kernel's own copy.
    pub fn ethernet(name: impl Into<String>, mac: MacAddr) -> Self {
        Port {
            name: name.into(),
            link: LinkKind::Ethernet,
            mac,
            ip_handoff: IpHandoff::Kernel,
        }
    }
}

/// Why a packet was dropped; each reason has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Ethernet or VLAN header truncated.
    MalformedL2,
    /// IPv4/IPv6 header invalid (length, version, checksum, extension headers).
    MalformedIp,
    /// COMET header invalid (version, index, length).
    MalformedComet,
    /// The COMET packet's current key has no forwarding entry.
    UnknownKey,
    /// A decapsulated packet is not IPv4 or IPv6.
    UnsupportedInner,
    /// Adding a header would exceed the buffer (headroom or capacity).
    NoRoom,
    /// The egress port cannot carry the packet (e.g. unknown port).
    BadEgress,
    /// No stage claimed the packet.
    Unclaimed,
    /// The kernel refused to send the frame (the shell counts it).
    TxError,
    /// The packet could not be handed to the kernel's stack (no TUN device, or it refused).
    KernelError,
    /// The kernel dropped the frame before the data plane saw it: the receive ring was full
    /// (the shell counts it from the ring's statistics).
    RxRingFull,
    /// The frame arrived on a port with a service encapsulation but matches no SAP.
    NoSap,
    /// The SAP or its service is shut down, or an Epipe has no second endpoint.
    ServiceDown,
    /// A filter entry (or a filter's default action) dropped it.
    Filter,
    /// A policer coloured it red.
    Policer,
    /// Unknown source MAC on a SAP at its MAC limit with `discard-unknown-source`.
    MacLimit,
    /// Its destination is on the ingress SAP or in the ingress SAP's split-horizon group.
    SplitHorizon,
    /// Larger than the service MTU or the egress port's MTU.
    Mtu,
    /// Broadcast, unknown unicast or multicast above the ingress SAP's BUM limit.
    BumLimit,
    /// A flood copy that did not fit the batch's replica area.
    ReplicaLimit,
    /// A frame for the control plane (capture SAP) found the punt queue full.
    PuntQueueFull,
    /// A capture SAP's frame whose data trigger (same SAP, outer and inner tag) is already in
    /// progress in the control plane: the throttle of Nokia SR OS dynamic data services.
    TriggerInProgress,
    /// A PCC rule's drop action, or the PCC default action for unknown addresses or
    /// subscribers without services.
    Pcc,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 23] = [
        DropReason::MalformedL2,
        DropReason::MalformedIp,
        DropReason::MalformedComet,
        DropReason::UnknownKey,
        DropReason::UnsupportedInner,
        DropReason::NoRoom,
        DropReason::BadEgress,
        DropReason::Unclaimed,
        DropReason::TxError,
        DropReason::KernelError,
        DropReason::RxRingFull,
        DropReason::NoSap,
        DropReason::ServiceDown,
        DropReason::Filter,
        DropReason::Policer,
        DropReason::MacLimit,
        DropReason::SplitHorizon,
        DropReason::Mtu,
        DropReason::BumLimit,
        DropReason::ReplicaLimit,
        DropReason::PuntQueueFull,
        DropReason::TriggerInProgress,
        DropReason::Pcc,
    ];

    /// Stable name for metrics and JSON.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::MalformedL2 => "malformed_l2",
            DropReason::MalformedIp => "malformed_ip",
            DropReason::MalformedComet => "malformed_comet",
            DropReason::UnknownKey => "unknown_key",
            DropReason::UnsupportedInner => "unsupported_inner",
            DropReason::NoRoom => "no_room",
            DropReason::BadEgress => "bad_egress",
            DropReason::Unclaimed => "unclaimed",
            DropReason::TxError => "tx_error",
            DropReason::KernelError => "kernel_error",
            DropReason::RxRingFull => "rx_ring_full",
            DropReason::NoSap => "no_sap",
            DropReason::ServiceDown => "service_down",
            DropReason::Filter => "filter",
            DropReason::Policer => "policer",
            DropReason::MacLimit => "mac_limit",
            DropReason::SplitHorizon => "split_horizon",
            DropReason::Mtu => "mtu",
            DropReason::BumLimit => "bum_limit",
            DropReason::ReplicaLimit => "replica_limit",
            DropReason::PuntQueueFull => "punt_queue_full",
            DropReason::TriggerInProgress => "trigger_in_progress",
            DropReason::Pcc => "pcc",
        }
    }
}

/// How many packets from the first of `metas` on `same` holds for without a break, and their
/// bytes (at least the first's, which the caller has checked). Nothing else in the loop: the
/// sums stay in registers.
fn run_of(
    bufs: &[PacketBuf],
    metas: &[PacketMeta],
    same: impl Fn(&PacketMeta) -> bool,
) -> (usize, u64) {
    let mut bytes = 0;
    for (packets, (buf, meta)) in bufs.iter().zip(metas).enumerate() {
        if !same(meta) {
            return (packets.max(1), bytes);
        }
        bytes += buf.len() as u64;
    }
    (metas.len().min(bufs.len()).max(1), bytes)
}

/// What to do with a packet once the pipeline has run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No stage has decided yet.
    Pending,
    /// Send the buffer out of this port (framed for its [`LinkKind`]).
    Transmit(PortId),
    /// The buffer is an IP packet for the kernel's stack (written to the TUN device).
    ToKernel,
    /// Not for the data plane; the kernel has its own copy.
    Ignore,
    /// Discard, counted under the reason.
    Drop(DropReason),
    /// Consumed by the data plane for the control plane: a stage copied the frame into its
    /// bounded punt queue (a capture SAP's frame; the value is the SAP's slot). The shell
    /// sends nothing; the control side drains the queue through the stage.
    Punt(u32),
}

/// What a packet is, as far as the stages so far know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// Not classified yet.
    Unknown,
    /// IPv4 packet at `l3`.
    Ipv4,
    /// IPv6 packet at `l3`.
    Ipv6,
    /// COMET header at `l3`.
    Comet,
    /// Something else (ARP, LLDP, ...).
    Other,
}

/// Link-layer packet types (as `sockaddr_ll.sll_pkttype`).
pub mod pkt_type {
    /// Addressed to this host.
    pub const HOST: u8 = 0;
    /// Broadcast.
    pub const BROADCAST: u8 = 1;
    /// Multicast.
    pub const MULTICAST: u8 = 2;
    /// Addressed to another host (promiscuous mode).
    pub const OTHERHOST: u8 = 3;
    /// Sent by this host.
    pub const OUTGOING: u8 = 4;
}

/// Per-packet annotations the stages share.
#[derive(Debug, Clone, Copy)]
pub struct PacketMeta {
    /// Port the packet arrived on.
    pub port: PortId,
    /// Link-layer packet type ([`pkt_type`]).
    pub pkt_type: u8,
    /// Network protocol (EtherType) of the packet at `l3`; for [`LinkKind::Ip`] ports the shell
    /// fills it from the socket address, for Ethernet ports `classify` does.
    pub protocol: u16,
    /// Offset of the network header (IP or COMET) in the buffer.
    pub l3: u16,
    /// Classification so far.
    pub kind: PacketKind,
    /// Decision so far.
    pub verdict: Verdict,
    /// The transport checksum is not computed yet (a packet from a local sender or a veth
    /// with checksum offload): it must be filled in before the packet leaves this host.
    pub checksum_pending: bool,
    /// Slot of the SAP the frame arrived on ([`NO_SAP`] until the service stage finds one).
    pub sap: u32,
}

/// [`PacketMeta::sap`] of a frame that belongs to no SAP.
pub const NO_SAP: u32 = u32::MAX;

impl PacketMeta {
    /// Fresh annotations for a packet received on `port`.
    pub fn new(port: PortId, pkt_type: u8, protocol: u16) -> Self {
        Self {
            port,
            pkt_type,
            protocol,
            l3: 0,
            kind: PacketKind::Unknown,
            verdict: Verdict::Pending,
            checksum_pending: false,
            sap: NO_SAP,
        }
    }
}

/// Flood copies a batch holds by default, per received packet it can hold.
pub const DEFAULT_REPLICAS_PER_PACKET: usize = 4;

/// A batch of packets: buffers and their annotations, allocated once and reused.
///
/// Besides the received packets, a batch has a *replica area* after them: a stage that needs
/// copies of a packet with different egress encapsulations (VPLS flooding) appends them with
/// [`Batch::replicate`], each with its own verdict. The shell transmits them with the rest
/// (they are ordinary entries of [`Batch::iter`]), so replication needs nothing from it. Replica
/// buffers are allocated the first time a batch needs that many and reused after; the area is
/// bounded ([`Batch::set_replica_limit`]), and a copy beyond it is refused.
pub struct Batch {
    bufs: Vec<PacketBuf>,
    metas: Vec<PacketMeta>,
    len: usize,
    capacity: usize,
    replica_limit: usize,
}

impl Batch {
    /// A batch holding up to `capacity` received packets, and up to
    /// [`DEFAULT_REPLICAS_PER_PACKET`] × `capacity` flood copies.
    pub fn new(capacity: usize) -> Self {
        Self {
            bufs: (0..capacity).map(|_| PacketBuf::new()).collect(),
            metas: vec![PacketMeta::new(0, 0, 0); capacity],
            len: 0,
            capacity,
            replica_limit: capacity.saturating_mul(DEFAULT_REPLICAS_PER_PACKET),
        }
    }

    /// Most received packets the batch holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sets the most flood copies one run may add.
    pub fn set_replica_limit(&mut self, limit: usize) {
        self.replica_limit = limit;
    }

    /// Appends a copy of packet `index` (bytes and annotations) to the replica area and
    /// returns the copy's index, or `None` when the area is full or `index` is not a packet.
    pub fn replicate(&mut self, index: usize) -> Option<usize> {
        if index >= self.len || self.len >= self.capacity + self.replica_limit {
            return None;
        }
        let at = self.len;
        if at == self.bufs.len() {
            self.bufs.push(PacketBuf::new());
            self.metas.push(PacketMeta::new(0, 0, 0));
        }
        let (head, tail) = self.bufs.split_at_mut(at);
        let (Some(src), Some(dst)) = (head.get(index), tail.first_mut()) else {
            return None;
        };
        if !dst.fill(src.as_slice()) {
            return None;
        }
        let meta = *self.metas.get(index)?;
        *self.metas.get_mut(at)? = meta;
        self.len += 1;
        Some(at)
    }

    /// Packet `index`: its buffer and annotations, writable.
    pub fn get_mut(&mut self, index: usize) -> Option<(&mut PacketBuf, &mut PacketMeta)> {
        if index >= self.len {
            return None;
        }
        Some((self.bufs.get_mut(index)?, self.metas.get_mut(index)?))
    }

    /// Packets in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when no more received packets fit.
    pub fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    /// Empties the batch (buffers are kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Copies a received frame in. Returns false when the batch is full or the frame does not
    /// fit in a buffer (the caller counts it).
    pub fn push(&mut self, bytes: &[u8], meta: PacketMeta) -> bool {
        if self.len >= self.capacity {
            return false;
        }
        let (Some(buf), Some(slot)) = (self.bufs.get_mut(self.len), self.metas.get_mut(self.len))
        else {
            return false;
        };
        if !buf.fill(bytes) {
            return false;
        }
        *slot = meta;
        self.len += 1;
        true
    }

    /// Copies in a frame whose VLAN tag the NIC or kernel removed (`tpid`, `tci`), putting the
    /// tag back after the MAC addresses so the stages see the frame as it was on the wire.
    pub fn push_with_vlan(&mut self, bytes: &[u8], tpid: u16, tci: u16, meta: PacketMeta) -> bool {
        if !self.push(bytes, meta) {
            return false;
        }
        let Some(buf) = self.bufs.get_mut(self.len - 1) else {
            return false;
        };
        if !buf.insert_gap(12, 4) {
            self.len -= 1;
            return false;
        }
        if let Some(tag) = buf.as_mut_slice().get_mut(12..16) {
            tag[..2].copy_from_slice(&tpid.to_be_bytes());
            tag[2..].copy_from_slice(&tci.to_be_bytes());
        }
        true
    }

    /// Packet `index`: its buffer and annotations.
    pub fn get(&self, index: usize) -> Option<(&PacketBuf, &PacketMeta)> {
        if index >= self.len {
            return None;
        }
        Some((self.bufs.get(index)?, self.metas.get(index)?))
    }

    /// True when some packet's verdict is still pending (stops at the first).
    pub fn has_pending(&self) -> bool {
        self.packet_metas()
            .iter()
            .any(|m| m.verdict == Verdict::Pending)
    }

    /// The packets' annotations. Sliced to the batch's length rather than iterated with
    /// `take`: a zip of two slices of known length compiles to one indexed loop without the
    /// `take` counter and its per-packet compare (the pipeline's counter passes run it for
    /// every packet).
    fn packet_metas(&self) -> &[PacketMeta] {
        self.metas.get(..self.len).unwrap_or_default()
    }

    /// Iterates over the packets.
    pub fn iter(&self) -> impl Iterator<Item = (&PacketBuf, &PacketMeta)> {
        self.bufs
            .get(..self.len)
            .unwrap_or_default()
            .iter()
            .zip(self.packet_metas())
    }

    /// Iterates over the packets, writable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&mut PacketBuf, &mut PacketMeta)> {
        let len = self.len;
        self.bufs
            .get_mut(..len)
            .unwrap_or_default()
            .iter_mut()
            .zip(self.metas.get_mut(..len).unwrap_or_default())
    }
}

/// Counters of one port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortCounters {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Packets received here and handed to the kernel's stack.
    pub to_kernel: u64,
    /// Packets received here and left to the kernel's own copy.
    pub ignored: u64,
    /// Packets received here and dropped.
    pub dropped: u64,
    /// Packets received here and punted to the control plane.
    pub punted: u64,
    /// Frames the kernel dropped on this port before the data plane read them: its receive
    /// ring (AF_PACKET) or RX ring (AF_XDP) was full.
    pub rx_dropped: u64,
    /// Times a frame found an AF_XDP socket's fill ring empty (no memory to receive into).
    pub rx_fill_empty: u64,
}

impl PortCounters {
    /// Adds `other` to these counters (per-worker counters summed on read).
    pub fn add(&mut self, other: &PortCounters) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.tx_packets += other.tx_packets;
        self.tx_bytes += other.tx_bytes;
        self.to_kernel += other.to_kernel;
        self.ignored += other.ignored;
        self.dropped += other.dropped;
        self.punted += other.punted;
        self.rx_dropped += other.rx_dropped;
        self.rx_fill_empty += other.rx_fill_empty;
    }
}

/// Shared context of one pipeline run.
pub struct Context<'a> {
    /// Monotonic time in nanoseconds (the caller's clock).
    pub now_ns: u64,
    /// The ports, indexed by [`PortId`].
    pub ports: &'a [Port],
}

/// One step of the pipeline.
pub trait Stage: Send {
    /// Short name for logs and metrics.
    fn name(&self) -> &'static str;
    /// Processes every packet of the batch whose verdict is still pending.
    fn process(&mut self, batch: &mut Batch, ctx: &Context<'_>);
    /// Periodic work outside the packet path (expiry, token refill); `now_ns` as in [`Context`].
    fn tick(&mut self, _now_ns: u64) {}
    /// For control-plane access to a stage's tables by type.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// The ordered stages, the ports and the per-port and per-reason counters.
///
/// Ports can be added and removed while the pipeline runs (TAP devices of L3 services): a
/// removed port's id stays reserved with an empty name until a new port takes it, so ids the
/// stages hold never point at another port by surprise, and a packet still sent to it is
/// dropped as `bad_egress`.
pub struct Pipeline {
    ports: Vec<Port>,
    live: Vec<bool>,
    stages: Vec<Box<dyn Stage>>,
    port_counters: Vec<PortCounters>,
    drops: [u64; DropReason::ALL.len()],
}

/// Why a port could not be added or removed (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// A port of that name exists.
    #[error("port {0:?} exists")]
    Exists(String),
    /// No port of that name.
    #[error("no port {0:?}")]
    NotFound(String),
    /// Every port id is taken.
    #[error("too many ports (at most 65535)")]
    TooMany,
}

impl Pipeline {
    /// A pipeline over `ports` running `stages` in order.
    pub fn new(ports: Vec<Port>, stages: Vec<Box<dyn Stage>>) -> Self {
        let port_counters = vec![PortCounters::default(); ports.len()];
        Self {
            live: vec![true; ports.len()],
            ports,
            stages,
            port_counters,
            drops: [0; DropReason::ALL.len()],
        }
    }

    /// The ports, indexed by id (a removed port's slot has an empty name).
    pub fn ports(&self) -> &[Port] {
        &self.ports
    }

    /// The port named `name`.
    pub fn port_id(&self, name: &str) -> Option<PortId> {
        if name.is_empty() {
            return None;
        }
        self.ports
            .iter()
            .position(|port| port.name == name)
            .and_then(|i| PortId::try_from(i).ok())
    }

    /// Adds a port and returns its id: the lowest free one, so every worker's pipeline, given
    /// the same changes in the same order, gives a port the same id.
    pub fn add_port(&mut self, port: Port) -> Result<PortId, PortError> {
        if self.port_id(&port.name).is_some() {
            return Err(PortError::Exists(port.name));
        }
        let index = match self.live.iter().position(|live| !live) {
            Some(free) => free,
            None => self.ports.len(),
        };
        let id = PortId::try_from(index).map_err(|_| PortError::TooMany)?;
        if index == self.ports.len() {
            self.ports.push(port);
            self.live.push(true);
            self.port_counters.push(PortCounters::default());
        } else {
            self.ports[index] = port;
            self.live[index] = true;
            self.port_counters[index] = PortCounters::default();
        }
        Ok(id)
    }

    /// Removes the port named `name` and returns the id it had.
    pub fn remove_port(&mut self, name: &str) -> Result<PortId, PortError> {
        let id = self
            .port_id(name)
            .ok_or_else(|| PortError::NotFound(name.to_string()))?;
        let index = usize::from(id);
        self.ports[index].name.clear();
        self.live[index] = false;
        Ok(id)
    }

    /// The first stage of type `S`.
    pub fn stage_mut<S: Stage + 'static>(&mut self) -> Option<&mut S> {
        self.stages
            .iter_mut()
            .find_map(|stage| stage.as_any_mut().downcast_mut::<S>())
    }

    /// Names of the stages in order.
    pub fn stage_names(&self) -> Vec<&'static str> {
        self.stages.iter().map(|stage| stage.name()).collect()
    }

    /// Runs every stage over the batch, then settles undecided packets as dropped and counts.
    pub fn run(&mut self, batch: &mut Batch, now_ns: u64) {
        // Frames are counted per run of one port (a batch is read from one port, and most of
        // it goes out of one): a run's count and bytes are summed in registers, in a loop with
        // nothing else in it, then added to the port's counters once. Adding per packet would
        // chain each packet's add to the previous one's store.
        let mut at = 0;
        while let Some(first) = batch.packet_metas().get(at) {
            let port = first.port;
            let (packets, bytes) = run_of(
                batch.bufs.get(at..).unwrap_or_default(),
                batch.packet_metas().get(at..).unwrap_or_default(),
                |m| m.port == port,
            );
            if let Some(counters) = self.port_counters.get_mut(usize::from(port)) {
                counters.rx_packets += packets as u64;
                counters.rx_bytes += bytes;
            }
            at += packets;
        }
        let ctx = Context {
            now_ns,
            ports: &self.ports,
        };
        for stage in &mut self.stages {
            // A stage only handles pending packets: once none is left (a service pipeline
            // whose first stage decided them all), the rest of the stages have nothing to do.
            if !batch.has_pending() {
                break;
            }
            stage.process(batch, &ctx);
        }
        let len = batch.len;
        let bufs = batch.bufs.get(..len).unwrap_or_default();
        let metas = batch.metas.get_mut(..len).unwrap_or_default();
        let mut at = 0;
        while let Some(meta) = metas.get_mut(at) {
            if let Verdict::Transmit(port) = meta.verdict {
                let live = self.live.get(usize::from(port)).copied() == Some(true);
                if let Some(counters) = self
                    .port_counters
                    .get_mut(usize::from(port))
                    .filter(|_| live)
                {
                    let sent = Verdict::Transmit(port);
                    let (packets, bytes) = run_of(
                        bufs.get(at..).unwrap_or_default(),
                        metas.get(at..).unwrap_or_default(),
                        |m| m.verdict == sent,
                    );
                    counters.tx_packets += packets as u64;
                    counters.tx_bytes += bytes;
                    at += packets;
                    continue;
                }
                meta.verdict = Verdict::Drop(DropReason::BadEgress);
            }
            self.settle_untransmitted(meta);
            at += 1;
        }
    }

    /// Counts a packet that is not transmitted, under its receive port; an undecided one is
    /// dropped. Out of line: the transmit loop keeps its run in registers.
    #[inline(never)]
    fn settle_untransmitted(&mut self, meta: &mut PacketMeta) {
        if meta.verdict == Verdict::Pending {
            meta.verdict = Verdict::Drop(DropReason::Unclaimed);
        }
        let counters = self.port_counters.get_mut(usize::from(meta.port));
        match meta.verdict {
            Verdict::ToKernel => {
                if let Some(counters) = counters {
                    counters.to_kernel += 1;
                }
            }
            Verdict::Ignore => {
                if let Some(counters) = counters {
                    counters.ignored += 1;
                }
            }
            Verdict::Drop(reason) => {
                self.drops[reason as usize] += 1;
                if let Some(counters) = counters {
                    counters.dropped += 1;
                }
            }
            Verdict::Punt(_) => {
                if let Some(counters) = counters {
                    counters.punted += 1;
                }
            }
            Verdict::Transmit(_) | Verdict::Pending => {}
        }
    }

    /// Periodic work of every stage.
    pub fn tick(&mut self, now_ns: u64) {
        for stage in &mut self.stages {
            stage.tick(now_ns);
        }
    }

    /// Counts a drop that happened outside the stages (e.g. a frame too large for a buffer).
    pub fn count_drop(&mut self, reason: DropReason) {
        self.count_drops(reason, 1);
    }

    /// Counts `count` drops that happened outside the stages.
    pub fn count_drops(&mut self, reason: DropReason, count: u64) {
        self.drops[reason as usize] += count;
    }

    /// Counts frames the kernel dropped on `port` before the data plane read them (`lost`),
    /// and times its receive memory ran out (`fill_empty`); the lost ones also as
    /// `rx_ring_full`.
    pub fn count_rx_losses(&mut self, port: PortId, lost: u64, fill_empty: u64) {
        self.drops[DropReason::RxRingFull as usize] += lost;
        if let Some(counters) = self.port_counters.get_mut(usize::from(port)) {
            counters.rx_dropped += lost;
            counters.rx_fill_empty += fill_empty;
        }
    }

    /// Counters of every port, in port order.
    pub fn port_counters(&self) -> &[PortCounters] {
        &self.port_counters
    }

    /// Drops by reason.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|reason| (*reason, self.drops[*reason as usize]))
    }
}

/// One stage instance shared by the pipelines of every worker: its state is one, behind a lock
/// taken once per batch. For stages whose state must not diverge between workers (the service
/// stage: MAC learning, MAC limits, policer buckets, the punt queue); stages with tables that
/// can be replicated give each worker its own instance instead.
pub struct Shared<S> {
    inner: std::sync::Arc<std::sync::Mutex<S>>,
    name: &'static str,
}

impl<S: Stage> Shared<S> {
    /// Shares `stage`; clone the result into each worker's pipeline.
    pub fn new(stage: S) -> Self {
        let name = stage.name();
        Self {
            inner: std::sync::Arc::new(std::sync::Mutex::new(stage)),
            name,
        }
    }

    /// The stage, locked (a worker that panicked while holding it leaves it as it was).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, S> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            name: self.name,
        }
    }
}

impl<S: Stage + 'static> Stage for Shared<S> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn process(&mut self, batch: &mut Batch, ctx: &Context<'_>) {
        self.lock().process(batch, ctx);
    }

    fn tick(&mut self, now_ns: u64) {
        self.lock().tick(now_ns);
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decides each packet as its script says, in order.
    struct Scripted(Vec<Verdict>);

    impl Stage for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }

        fn process(&mut self, batch: &mut Batch, _ctx: &Context<'_>) {
            for ((_, meta), verdict) in batch.iter_mut().zip(&self.0) {
                meta.verdict = *verdict;
            }
        }

        fn as_any_mut(&mut self) -> &mut dyn Any {
            self
        }
    }

    const PORTS: u16 = 3;

    fn verdict() -> impl Strategy<Value = Verdict> {
        prop_oneof![
            4 => (0..PORTS + 1).prop_map(Verdict::Transmit),
            1 => Just(Verdict::Pending),
            1 => Just(Verdict::ToKernel),
            1 => Just(Verdict::Ignore),
            1 => Just(Verdict::Drop(DropReason::NoSap)),
            1 => Just(Verdict::Punt(7)),
        ]
    }

    proptest! {
        /// The counters of runs of ports agree with counting packet by packet, for batches
        /// whose packets come from and go to several ports in any order, to a removed port
        /// and to one that does not exist.
        #[test]
        fn counters_per_run_agree_with_counting_each_packet(
            packets in proptest::collection::vec((0..PORTS + 1, 1..200usize, verdict()), 0..40),
        ) {
            let ports = (0..PORTS)
                .map(|i| Port::ethernet(format!("p{i}"), MacAddr([2, 0, 0, 0, 0, i as u8])))
                .collect();
            let script = packets.iter().map(|(_, _, v)| *v).collect();
            let mut pipeline = Pipeline::new(ports, vec![Box::new(Scripted(script))]);
            pipeline.remove_port("p2").unwrap();
            let mut batch = Batch::new(64);
            for (port, len, _) in &packets {
                batch.push(&vec![0; *len], PacketMeta::new(*port, pkt_type::OTHERHOST, 0));
            }
            pipeline.run(&mut batch, 0);

            let mut counters = vec![PortCounters::default(); usize::from(PORTS)];
            let mut drops = [0u64; DropReason::ALL.len()];
            let mut verdicts = Vec::new();
            for (port, len, verdict) in &packets {
                let rx = counters.get_mut(usize::from(*port));
                if let Some(c) = rx {
                    c.rx_packets += 1;
                    c.rx_bytes += *len as u64;
                }
                let verdict = match *verdict {
                    Verdict::Pending => Verdict::Drop(DropReason::Unclaimed),
                    Verdict::Transmit(out) if out >= 2 => Verdict::Drop(DropReason::BadEgress),
                    v => v,
                };
                let rx = counters.get_mut(usize::from(*port));
                match (verdict, rx) {
                    (Verdict::Transmit(out), _) => {
                        counters[usize::from(out)].tx_packets += 1;
                        counters[usize::from(out)].tx_bytes += *len as u64;
                    }
                    (Verdict::Drop(reason), rx) => {
                        drops[reason as usize] += 1;
                        if let Some(c) = rx {
                            c.dropped += 1;
                        }
                    }
                    (Verdict::ToKernel, Some(c)) => c.to_kernel += 1,
                    (Verdict::Ignore, Some(c)) => c.ignored += 1,
                    (Verdict::Punt(_), Some(c)) => c.punted += 1,
                    _ => {}
                }
                verdicts.push(verdict);
            }
            prop_assert_eq!(pipeline.port_counters(), &counters[..]);
            let counted: Vec<(DropReason, u64)> = pipeline.drops().collect();
            let expected: Vec<(DropReason, u64)> = DropReason::ALL
                .iter()
                .map(|r| (*r, drops[*r as usize]))
                .filter(|(_, n)| *n > 0)
                .collect();
            prop_assert_eq!(
                counted.into_iter().filter(|(_, n)| *n > 0).collect::<Vec<_>>(),
                expected
            );
            let decided: Vec<Verdict> = batch.iter().map(|(_, m)| m.verdict).collect();
            prop_assert_eq!(decided, verdicts);
        }
    }
}
