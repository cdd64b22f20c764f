//! The service stage: SAP lookup, ingress filters and policers, Epipe cross-connect and GRE,
//! VPLS learning and forwarding with flooding by replication, capture punting, egress
//! filters, policers and retagging; and the mutable state beside the snapshot.

use super::spec::{PolicerId, ServiceId};
use super::tables::{
    DirEntry, GreEntry, Peer, SapEntry, SapRole, ServiceKind, ServiceTables, TunnelKey,
    TRANSPARENT_ETHERNET,
};
use super::throttle::{
    Admission, ThrottleKey, TriggerThrottle, DEFAULT_THROTTLE_ENTRIES, DEFAULT_THROTTLE_HOLD_SECS,
};
use super::FilterKind;
use crate::acl::{macs_of, Disposition, InlineV4, IpFamily, PacketKey, RuleSet};
use crate::arena::{Block, HugeVec};
use crate::fdb::{self, prefetch_read, prefetch_slice, Entry, Fdb, Sighting, STATIC_EPOCH};
use crate::packet::PacketBuf;
use crate::pcc::PccStage;
use crate::pipeline::{
    pkt_type, Batch, Context, DropReason, PacketMeta, PortId, Shared, Stage, Verdict,
};
use crate::policer::{Colour, LinePolicer, PolicerStats, RateLimitState};
use crate::sap::{self, PortSaps, SapId, WireTags};
use crate::wire::{
    ethernet, ip_protocol, vlan, EtherType, GrePacket, Ipv4Packet, Ipv6Packet, MacAddr,
};
use serde::Serialize;
use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// MAC table size when the first VPLS is installed, unless configured.
pub const DEFAULT_FDB_ENTRIES: usize = 1 << 20;

/// Frames the punt queue holds until the control side drains it, unless configured.
pub const DEFAULT_PUNT_QUEUE: usize = 1_024;

/// Bytes of a punted frame kept (DHCP, PPPoE discovery, ARP and IP headers fit).
pub const PUNT_SNAPLEN: usize = 2_048;

/// One ageing sweep covers the whole MAC table in this time.
const SWEEP_PERIOD_NS: u64 = 5_000_000_000;

const NS_PER_SEC: u64 = 1_000_000_000;

const REASONS: usize = DropReason::ALL.len();

/// Settings of the stage itself (not of the services).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceStageConfig {
    /// Entries of the MAC table (allocated when the first VPLS is installed: 16-byte slots,
    /// the entries and a quarter more rounded up to a power of two).
    pub fdb_entries: usize,
    /// Seed mixed into the MAC table's hash (the shell passes a random one).
    pub fdb_seed: u64,
    /// Capacity of the punt queue.
    pub punt_queue: usize,
    /// Marks of the data trigger throttle (see [`TriggerThrottle`]).
    pub throttle_entries: usize,
    /// Seconds a throttle mark holds when the control side does not release it.
    pub throttle_hold_secs: u32,
}

impl Default for ServiceStageConfig {
    fn default() -> Self {
        Self {
            fdb_entries: DEFAULT_FDB_ENTRIES,
            fdb_seed: 0x5eed_f00d,
            punt_queue: DEFAULT_PUNT_QUEUE,
            throttle_entries: DEFAULT_THROTTLE_ENTRIES,
            throttle_hold_secs: DEFAULT_THROTTLE_HOLD_SECS,
        }
    }
}

/// The hot fields first (`repr(C)` keeps the order, the alignment puts them in one cache
/// line): a frame sent out of the SAP reads its egress record and the MAC table's validity
/// check its generation and epoch from the same line it counts in; the drop counters are
/// touched only on drops. Frames received while the SAP is a cross-connect are counted in
/// its [`IngressRecord`] instead.
#[derive(Debug, Clone, Default)]
#[repr(C, align(64))]
struct SapState {
    generation: u32,
    fdb_epoch: u8,
    mac_count: u32,
    egress: EgressRecord,
    rx_packets: u64,
    rx_octets: u64,
    tx_packets: u64,
    tx_octets: u64,
    punted: u64,
    punted_octets: u64,
    throttled: u64,
    throttled_octets: u64,
    bum: Option<RateLimitState>,
}

const _: () = assert!(std::mem::offset_of!(SapState, tx_octets) + 8 <= 64);

/// Slot numbers in an [`IngressRecord`]: none.
const NO_SLOT: u32 = u32::MAX;

/// What an ingress packet of a SAP reads and writes in the stage, one line per SAP slot in
/// the stage's huge pages, so that a plain Epipe SAP's packet reads this line and not the
/// snapshot's entry, its own state line and its peer's (three random lines, on three pages,
/// at 100 000 SAPs). `install` rebuilds the record of every SAP slot a snapshot changes,
/// and of their old and new peers.
///
/// A SAP the record calls a cross-connect (an
/// Epipe SAP, up, whose peer is a SAP, with no MAC or IPv6 ingress filter and no PCC
/// enforcement) is forwarded from the record alone: its packet is metered with the record's
/// IPv4 filter and policer slots, sent with the copy of its peer's egress record, and counted
/// in the peer's name here (`peer_tx_*`: summed into the peer's counters when they are read,
/// folded into the peer's state when the pair changes), and counted received here too. Any
/// other SAP's packet goes through the snapshot's entry and is counted in the SAP's state.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct IngressRecord {
    rx_packets: u64,
    rx_octets: u64,
    /// Frames this SAP's cross-connect sent out of the peer, and their octets.
    peer_tx_packets: u64,
    peer_tx_octets: u64,
    service: u32,
    /// The IPv4 ingress filter's slot, or [`NO_SLOT`].
    ipv4_filter: u32,
    /// The ingress policer's slot, or [`NO_SLOT`].
    policer: u32,
    service_mtu: u16,
    /// The peer's egress record, as the peer's state holds it.
    peer_egress: EgressRecord,
    cross_connect: bool,
}

const _: () = assert!(std::mem::size_of::<IngressRecord>() == 64);

impl Default for IngressRecord {
    fn default() -> Self {
        IngressRecord {
            rx_packets: 0,
            rx_octets: 0,
            peer_tx_packets: 0,
            peer_tx_octets: 0,
            service: 0,
            ipv4_filter: NO_SLOT,
            policer: NO_SLOT,
            service_mtu: 0,
            peer_egress: EgressRecord::default(),
            cross_connect: false,
        }
    }
}

/// The peer a SAP's record counts transmitted frames for: its slot and generation.
type CrossTarget = Option<(u32, u32)>;

impl IngressRecord {
    /// The packet fields of SAP `slot`'s record in `tables` (counters zero), and the peer its
    /// record counts for when it is a cross-connect.
    fn of(tables: &ServiceTables, slot: u32) -> (Self, CrossTarget) {
        let Some(sap) = tables.sap(slot) else {
            return (IngressRecord::default(), None);
        };
        let mut record = IngressRecord {
            service: sap.service,
            ipv4_filter: sap.ingress.filters[DirEntry::IPV4].unwrap_or(NO_SLOT),
            policer: sap.ingress.policer.unwrap_or(NO_SLOT),
            service_mtu: sap.service_mtu,
            ..IngressRecord::default()
        };
        let target = match sap.peer {
            Peer::Sap(peer)
                if sap.role == SapRole::Epipe
                    && !sap.down
                    && sap.ingress.filters[DirEntry::MAC].is_none()
                    && sap.ingress.filters[DirEntry::IPV6].is_none()
                    && sap.subscriber_side.is_none() =>
            {
                let generation = tables.sap(peer).map_or(0, |p| p.generation);
                record.peer_egress = EgressRecord::of(tables.sap(peer));
                record.cross_connect = true;
                Some((peer, generation))
            }
            _ => None,
        };
        (record, target)
    }

    /// The record's packet fields (not its counters).
    #[cfg(test)]
    fn fields(&self) -> (u32, u32, u32, u16, EgressRecord, bool) {
        (
            self.service,
            self.ipv4_filter,
            self.policer,
            self.service_mtu,
            self.peer_egress,
            self.cross_connect,
        )
    }

    /// The ingress filters and policer of a cross-connect.
    fn ingress(&self) -> DirEntry {
        let slot = |s: u32| (s != NO_SLOT).then_some(s);
        DirEntry {
            filters: [None, slot(self.ipv4_filter), None],
            policer: slot(self.policer),
        }
    }
}

/// What sending a frame out of a SAP takes, precomputed from its snapshot entry whenever the
/// snapshot changes the SAP, so that the egress path of a plain SAP reads one line of the
/// stage's own state instead of the entry through the snapshot's chunked vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EgressRecord {
    /// Its tags as they go on the wire.
    tags: WireTags,
    /// The port's MTU.
    mtu: u16,
    port: PortId,
    /// The SAP has egress work to check first (it is down or gone, or has egress filters or
    /// a policer), which the snapshot's entry says: also true for an empty slot.
    checked: bool,
}

/// An empty slot's: every frame towards it takes the checked path (and is dropped there).
impl Default for EgressRecord {
    fn default() -> Self {
        EgressRecord {
            tags: WireTags::NONE,
            mtu: 0,
            port: 0,
            checked: true,
        }
    }
}

impl EgressRecord {
    /// Puts the SAP's tags on `buf` (after the ingress's delimiting ones) and checks the
    /// port's MTU: the frame's length, or why it is dropped.
    #[inline(always)]
    fn send(&self, buf: &mut PacketBuf, ingress: &Ingress) -> Result<usize, DropReason> {
        if !self.tags.write(buf, ingress.strip, ingress.priority) {
            return Err(DropReason::NoRoom);
        }
        let len = buf.len();
        if len > usize::from(self.mtu) {
            return Err(DropReason::Mtu);
        }
        Ok(len)
    }

    fn of(sap: Option<&SapEntry>) -> Self {
        match sap {
            None => EgressRecord::default(),
            Some(sap) => EgressRecord {
                tags: WireTags::new(&sap.egress_tags, sap.outer_tpid),
                mtu: sap.port_mtu,
                port: sap.port,
                checked: sap.down || sap.egress.has_filters() || sap.egress.policer.is_some(),
            },
        }
    }
}

#[derive(Debug, Clone, Default)]
#[repr(C)]
struct ServiceState {
    generation: u32,
    mac_count: u32,
    /// Frames from and to the GRE tunnel (SAP traffic is counted on the SAPs).
    tunnel_rx_packets: u64,
    tunnel_rx_octets: u64,
    tunnel_tx_packets: u64,
    tunnel_tx_octets: u64,
    flooded: u64,
    learned: u64,
    aged: u64,
    moves: u64,
    fdb_full: u64,
    limit_not_learned: u64,
    static_move_refused: u64,
}

/// A filter's state, in the stage's huge pages: what a filtered packet reads, in eight lines
/// of one page (eight states a 4 KiB page). Line 0: the compiled rule set — the stage's own
/// copy of the snapshot's, so that its block is the stage's and the packet reaches it from
/// this line, not through an `Arc` in the heap — and the default action's counters; lines
/// 1–5: the set's IPv4 summary and entries when they fit ([`RuleSet::split_inline_v4`]), so
/// that an IPv4 packet of a small set scans them here instead of in the set's block, one
/// random page fewer (the stage's block then holds the rest alone: 2 lines of an 8-rule IPv4
/// set instead of 7); lines 6–7: the hit counters of the first [`INLINE_HITS`] entries. The
/// summary is line 0's neighbour in its 128-byte pair (the L2 adjacent-line prefetcher's
/// unit), the hit counters a pair of their own: 4–5 cycles a packet fewer at 100 000 SAPs
/// than the counters in lines 1–2 (round 22). What no packet of such a set reads is in its [`FilterSide`].
#[derive(Debug, Default)]
#[repr(C, align(64))]
struct FilterState {
    rules: Option<RuleSet>,
    default_hits: [u64; 2],
    /// The rule set's IPv4 entries are its rules in order: the candidate entry a packet's
    /// key gives (step E) names the hit counters it will most likely write.
    v4_in_rule_order: bool,
    /// `inline_v4` is the rule set's (else the set's block is scanned).
    has_inline_v4: bool,
    inline_v4: InlineV4,
    /// Entries `0..INLINE_HITS`, in rule-index order.
    first_hits: InlineHits,
}

const _: () = {
    assert!(std::mem::size_of::<FilterState>() == 512);
    assert!(std::mem::offset_of!(FilterState, has_inline_v4) < 64);
    assert!(std::mem::offset_of!(FilterState, v4_in_rule_order) < 64);
    assert!(std::mem::offset_of!(FilterState, first_hits) == 384);
};

/// The rest of a filter's state, beside it by slot: the hit counters of entries from
/// [`INLINE_HITS`] on (read only by packets that hit those entries, and prefetched only for
/// sets that have them), and what only `install` and the control plane read. Its block's
/// handle leads, so that it is within one line of any item of the array (48 bytes each).
#[derive(Debug, Default)]
#[repr(C)]
struct FilterSide {
    /// Entries from `INLINE_HITS` on.
    more_hits: Block<HitLine>,
    /// The snapshot's rule set the state copied (`install` compares it to tell a change).
    source: Option<Arc<RuleSet>>,
    entry_ids: Option<Arc<[u32]>>,
    generation: u32,
}

/// Packets and octets of four filter entries: a whole line (16-byte counters at any offset
/// would make eight entries span three lines instead of two).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct HitLine([[u64; 2]; HITS_PER_LINE]);

const HITS_PER_LINE: usize = 4;

/// Entries whose hit counters a filter's state holds inline.
const INLINE_HITS: usize = 8;

/// The hit counters of a filter's first [`INLINE_HITS`] entries: the same two lines as two
/// [`HitLine`]s, but one array, so that an entry's counters are its index times 16 bytes
/// in (as lines, a packet's hit took a line index, an index in the line and their sum:
/// five instructions more, round 26).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct InlineHits([[u64; 2]; INLINE_HITS]);

const _: () = assert!(std::mem::size_of::<InlineHits>() == 2 * 64);

crate::arena::arena_item!(HitLine);

impl FilterState {
    /// The rule set's inline IPv4 copy, when it has one.
    #[inline(always)]
    fn inline_v4(&self) -> Option<&InlineV4> {
        self.has_inline_v4.then_some(&self.inline_v4)
    }

    /// The counters of entry `index` (`side` is the filter's).
    fn hits_of(&self, side: &FilterSide, index: usize) -> [u64; 2] {
        match index.checked_sub(INLINE_HITS) {
            None => self.first_hits.0.get(index).copied(),
            Some(at) => side
                .more_hits
                .get(at / HITS_PER_LINE)
                .map(|line| line.0[at % HITS_PER_LINE]),
        }
        .unwrap_or_default()
    }

    /// The counters of the entry a packet hit (`None`: the default action). `side`, the
    /// filter's, is read only for an entry past the inline ones.
    #[inline(always)]
    fn hit_mut<'a>(
        &'a mut self,
        side: Option<&'a mut FilterSide>,
        rule: Option<u16>,
    ) -> Option<&'a mut [u64; 2]> {
        let Some(rule) = rule else {
            return Some(&mut self.default_hits);
        };
        let index = usize::from(rule);
        // Two branches, not a `#[cold]` call for the later entries: the call cost 1–9 cycles
        // a packet at 100 000 SAPs (round 22). The side is an `Option` the caller looked up,
        // so its line is not read for an inline entry (at the branch point, with the later
        // entries' handle in this state's fourth line, LLVM read that line for every hit).
        // An inline entry is indexed in its own branch, against a constant bound the index is
        // known to be under (no check; one slice for both kinds, chosen by a match, kept a
        // check and a length select, round 26).
        if index < INLINE_HITS {
            return self.first_hits.0.get_mut(index);
        }
        let at = index - INLINE_HITS;
        side?
            .more_hits
            .get_mut(at / HITS_PER_LINE)
            .map(|line| &mut line.0[at % HITS_PER_LINE])
    }

    /// Takes the snapshot's rule set `rules` (changed, or new to this state) with its entry
    /// ids: copies the set into the stage (its IPv4 summary and entries into the state
    /// instead of the stage's block when they fit) and carries each entry's counters over from the entry of the same id before the
    /// change (new entries start at zero). `side` is the filter's.
    fn take_rules(&mut self, side: &mut FilterSide, rules: &Arc<RuleSet>, entry_ids: &Arc<[u32]>) {
        let old_ids = side.entry_ids.as_deref().unwrap_or_default();
        let carried = |i: usize| -> [u64; 2] {
            entry_ids
                .get(i)
                .and_then(|id| old_ids.iter().position(|x| x == id))
                .map_or([0; 2], |j| self.hits_of(side, j))
        };
        let line_of = |first: usize| HitLine(std::array::from_fn(|k| carried(first + k)));
        let first_hits = InlineHits(std::array::from_fn(carried));
        let more = entry_ids
            .len()
            .saturating_sub(INLINE_HITS)
            .div_ceil(HITS_PER_LINE);
        // A rule set holds at most 65 536 entries of its family, 16 384 lines: the arena's
        // chunk takes 32 768, so this cannot be refused.
        let more_hits = Block::from_fn(more, |line| line_of(INLINE_HITS + line * HITS_PER_LINE))
            .unwrap_or_default();
        self.first_hits = first_hits;
        side.more_hits = more_hits;
        // A small set's IPv4 part moves into this state, and the stage's block keeps only
        // what packets still read there (every scan of it is given `inline_v4`).
        let (copy, inline_v4) = match rules.split_inline_v4() {
            Some((rest, inline_v4)) => (rest, Some(inline_v4)),
            None => (RuleSet::clone(rules), None),
        };
        self.has_inline_v4 = inline_v4.is_some();
        self.inline_v4 = inline_v4.unwrap_or_default();
        self.v4_in_rule_order = rules.v4_entries_in_rule_order();
        self.rules = Some(copy);
        side.source = Some(rules.clone());
        side.entry_ids = Some(entry_ids.clone());
    }
}

/// A policer's buckets, counters and a copy of the snapshot's parameters (`install` keeps it
/// the snapshot's): a packet meters in the slot's first line (a [`LinePolicer`]; red packets
/// count in the second), not the snapshot's entry as well. Two lines: the generation it was
/// made for is kept apart ([`ServiceStage::policer_generations`]), which would make it three.
#[derive(Debug, Clone, Default)]
#[repr(C, align(64))]
struct PolicerSlot {
    policer: Option<LinePolicer>,
}

const _: () = assert!(std::mem::size_of::<PolicerSlot>() == 128);

/// A frame punted from a capture SAP, for the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Punted {
    /// The capture SAP.
    pub sap: SapId,
    /// Its service.
    pub service: ServiceId,
    /// Outer VLAN id of the frame (0 = none): with `inner_vid`, the data trigger's SAP id.
    pub outer_vid: u16,
    /// Inner VLAN id (0 = none).
    pub inner_vid: u16,
    /// Arrival time (the pipeline's clock).
    pub now_ns: u64,
    /// Frame length on the wire.
    pub len: usize,
    /// The first [`PUNT_SNAPLEN`] bytes of the frame.
    pub frame: Vec<u8>,
    /// The throttle mark the frame set: the control side releases it (see
    /// [`ServiceStage::trigger_throttle`]) when no data trigger of it is in progress any more.
    /// `None` when the frame went through unmarked (the throttle's bucket was full).
    pub throttle: Option<ThrottleKey>,
}

/// Counters of one SAP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SapCounters {
    /// Frames received.
    pub rx_packets: u64,
    /// Octets received.
    pub rx_octets: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Octets sent.
    pub tx_octets: u64,
    /// Frames punted (capture SAPs): the "CPM Ingress" packets of Nokia SR OS dynamic data
    /// services.
    pub punted: u64,
    /// Their octets.
    pub punted_octets: u64,
    /// Frames of a capture SAP dropped because a data trigger of the same tags is in progress:
    /// the "Forwarding Engine Stats Dropped" packets.
    pub throttled: u64,
    /// Their octets.
    pub throttled_octets: u64,
    /// MACs learned on it now.
    pub macs: u32,
    /// Drops by reason (non-zero reasons only): ingress drops of its frames and egress drops
    /// of frames towards it.
    pub drops: BTreeMap<&'static str, u64>,
}

/// Counters of one service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServiceCounters {
    /// Frames entering the service (from SAPs and tunnels).
    pub rx_packets: u64,
    /// Their octets.
    pub rx_octets: u64,
    /// Frames (and copies) leaving it.
    pub tx_packets: u64,
    /// Their octets.
    pub tx_octets: u64,
    /// Flood copies made (VPLS).
    pub flooded: u64,
    /// MACs learned (VPLS).
    pub learned: u64,
    /// MACs aged out.
    pub aged: u64,
    /// MAC moves between SAPs.
    pub moves: u64,
    /// MACs not learned because the table or the VPLS's `fdb_size` was full.
    pub fdb_full: u64,
    /// MACs not learned because the SAP was at its limit (frames forwarded).
    pub limit_not_learned: u64,
    /// Frames whose source is a static MAC of another SAP (forwarded, not moved).
    pub static_move_refused: u64,
    /// MACs in the table now.
    pub macs: u32,
    /// Drops by reason (non-zero only).
    pub drops: BTreeMap<&'static str, u64>,
}

/// Packets and octets one filter entry matched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EntryHits {
    /// Entry id (`None` for the default action).
    pub entry: Option<u32>,
    /// Packets.
    pub packets: u64,
    /// Octets.
    pub octets: u64,
}

/// Hit counters of a filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FilterCounters {
    /// Per entry, in evaluation order, then the default action.
    pub entries: Vec<EntryHits>,
}

/// Per-port counters of frames that reached no SAP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AccessPortCounters {
    /// Frames matching no SAP.
    pub no_sap: u64,
    /// Frames whose Ethernet header or tags were truncated.
    pub malformed: u64,
}

/// One MAC of a VPLS, for `show service fdb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FdbEntryView {
    /// The MAC.
    pub mac: MacAddr,
    /// The SAP it is on.
    pub sap: SapId,
    /// Static entry.
    pub is_static: bool,
    /// Seconds since last seen (0 for static).
    pub age_secs: u32,
}

fn drops_map(drops: &[u64; REASONS]) -> BTreeMap<&'static str, u64> {
    DropReason::ALL
        .iter()
        .filter(|r| drops[**r as usize] > 0)
        .map(|r| (r.name(), drops[*r as usize]))
        .collect()
}

/// The service stage (see the module docs of [`crate::service`]).
pub struct ServiceStage {
    config: ServiceStageConfig,
    tables: Option<Arc<ServiceTables>>,
    // The state a packet reads at random by slot is in huge pages (see `HugeVec`): with
    // 100 000 SAPs, 4 KiB pages cost a page walk per read.
    saps: HugeVec<SapState>,
    /// Per SAP slot, what its received packets read and write.
    ingress: HugeVec<IngressRecord>,
    /// Per SAP slot, the peer whose transmitted frames its ingress record counts.
    cross: Vec<CrossTarget>,
    services: HugeVec<ServiceState>,
    /// Drops by reason, apart from the hot counters (touched only on drops).
    sap_drops: Vec<[u64; REASONS]>,
    service_drops: Vec<[u64; REASONS]>,
    filters: HugeVec<FilterState>,
    /// Per filter slot, beside `filters`.
    filter_sides: HugeVec<FilterSide>,
    policers: HugeVec<PolicerSlot>,
    /// The generation of the snapshot's policer each slot of `policers` was made for (cold:
    /// read by `install` only).
    policer_generations: Vec<u32>,
    ports: Vec<AccessPortCounters>,
    fdb: Option<Fdb>,
    punts: VecDeque<Punted>,
    spare_frames: Vec<Vec<u8>>,
    throttle: Arc<TriggerThrottle>,
    scratch: Vec<u32>,
    last_sweep_ns: u64,
    /// Subscriber enforcement on the IP interfaces (see [`ServiceStage::set_subscriber_pcc`]).
    pcc: Option<Shared<PccStage>>,
    /// So few SAPs and services that their entries and state stay in cache: the packet path
    /// then does not prefetch them (a prefetch of a line already in cache costs the
    /// instruction, its address and a load slot, and gains nothing).
    warm: bool,
    /// Some SAP has ingress filters: steps D and E of the packet path (which only prefetch
    /// for ingress filters) can have work, and the steps are closer together. Without any,
    /// the steps are not run at all.
    filters_in_use: bool,
    /// SAPs of the installed snapshot with ingress filters (kept by `install` over the
    /// changed slots).
    filtered_saps: usize,
}

/// What the first pass over a batch found about a received packet.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Not the service stage's (decided, or not on an access port).
    Skip,
    /// On a non-access port while Epipes have GRE tunnels: maybe a tunnel packet.
    Gre,
    /// Sent by this host.
    Outgoing,
    /// Truncated Ethernet header or tags.
    Malformed,
    /// No SAP matches.
    NoSap,
    /// Tags read, SAP not looked up yet (between steps A and B).
    Tagged(sap::FrameTags),
    /// The SAP and the frame's tags.
    Sap(sap::SapMatch, sap::FrameTags),
    /// The same, the SAP's entry prefetched at step C for step D to read (which makes the
    /// step `Sap` again): a SAP that is not a cross-connect, with the entries out of cache.
    EntryPending(sap::SapMatch, sap::FrameTags),
}

/// What the software pipeline in `process` knows about one received packet in flight, filled
/// in as the packet goes through the steps — its port's SAPs in step A, its SAP in B, the
/// SAP's entry and the MAC table keys in C — so that the later steps and the final one read
/// this record instead of going back to the batch and through the snapshot's chunked vectors
/// (a bounds check, a chunk pointer, an `Arc`) for the same facts.
#[derive(Debug, Clone, Copy)]
struct Work<'t> {
    step: Step,
    /// The access port and its SAPs (step A).
    port: Option<(PortId, &'t PortSaps)>,
    /// What step C read from the SAP's ingress record (step B only prefetches it), or, for a
    /// SAP that is not a cross-connect, from its entry (at step C when the entries are in
    /// cache, else at step D).
    sap: Option<SapWork<'t>>,
}

/// The part of a packet's [`Work`] that step C (or D) fills, as a whole (the ring's records
/// are reused, so nothing of an earlier packet may remain).
#[derive(Debug, Clone, Copy)]
struct SapWork<'t> {
    /// The snapshot's entry; `None` for a cross-connect, which its ingress record serves.
    entry: Option<&'t SapEntry>,
    /// The SAP has ingress filters: steps D and E have work.
    filtered: bool,
    /// A cross-connect's IPv4 ingress filter slot (its only filter), read from its ingress
    /// record at step C so that steps D and E need not read the record again; [`NO_SLOT`]
    /// for the others, whose entry names their filters.
    cross_filter: u32,
    /// A cross-connect's ingress policer slot, from the same read, for step E's second
    /// prefetch of its line; [`NO_SLOT`] for the others.
    cross_policer: u32,
    /// The entry was read at step D: step D did not prefetch the rule sets' heads, step E
    /// prefetches them (not the candidates, whose summary line is not in cache).
    late: bool,
    /// The MAC table keys of the destination and the source of a VPLS frame, hashed once for
    /// step C's prefetches and the final step's probes (`None` for other frames, and while
    /// there is no table).
    macs: Option<[fdb::Key; 2]>,
}

impl Work<'_> {
    const SKIP: Work<'static> = Work {
        step: Step::Skip,
        port: None,
        sap: None,
    };
}

/// `changed` when reconciling incrementally, else every slot below `len`.
fn new_or_all(incremental: bool, changed: &[u32], len: usize) -> Vec<usize> {
    if incremental {
        let mut slots: Vec<usize> = changed.iter().map(|s| *s as usize).collect();
        slots.sort_unstable();
        slots.dedup();
        slots
    } else {
        (0..len).collect()
    }
}

/// SAPs and services few enough that the packet path counts on their entries and state being
/// in cache (64 SAPs are ~16 KiB of entries and state, half the L1 data cache here) and does
/// not prefetch them.
const WARM_OBJECTS: usize = 64;

/// Packets between two steps of the software pipeline in `process`.
const PREFETCH_DISTANCE: usize = 8;

/// The same while some SAP has ingress filters: a filtered packet prefetches about nine
/// lines over the steps, and with eight packets between steps more misses were in flight
/// than the core holds, so that prefetches waited for a free slot. Round 13 measured `acl`
/// 2-6 % faster with 4 than with 8 (3 about the same as 4; 3 packets are ~150 ns, about one
/// memory latency, which leaves no margin); unfiltered Epipes were 5-9 % slower with 4,
/// hence the two distances.
const FILTERED_PREFETCH_DISTANCE: usize = 4;
const _: () = assert!(FILTERED_PREFETCH_DISTANCE <= PREFETCH_DISTANCE);

/// Packets whose MAC-table prefetches are issued back to back, every that many iterations
/// once their step C has hashed the keys: the prefetches then miss the TLB together, and
/// the page walks overlap instead of each one holding up the instructions behind it. Only
/// those: step C itself runs a packet at a time, since a group's other prefetches (peer,
/// filter, policer: six lines a filtered packet) issued in one burst overflowed the
/// outstanding misses the core can hold, and the prefetch instructions waited (round 12).
const MAC_GROUP: usize = 8;
const _: () = assert!(MAC_GROUP.is_power_of_two() && IN_FLIGHT.is_multiple_of(MAC_GROUP));

/// Lines of a filter's later entries' hit counters (past [`INLINE_HITS`]) that step E
/// prefetches: those of a 16-entry filter.
const HIT_LINES: usize = 2;

/// Steps after the first in the software pipeline (B to F).
const LATER_STEPS: usize = 5;

/// Records of the packets in flight: a ring on the stack, as the pipeline holds at most
/// `LATER_STEPS × PREFETCH_DISTANCE + 1` packets at once.
const IN_FLIGHT: usize = 64;
const _: () = assert!(IN_FLIGHT.is_power_of_two() && IN_FLIGHT > LATER_STEPS * PREFETCH_DISTANCE);

/// Prefetches the first two cache lines of `items[index]` (the hot fields of the entries
/// lead their structs).
fn prefetch_slot<T>(items: &[T], index: u32) {
    if let Some(item) = items.get(index as usize) {
        let ptr = (item as *const T).cast::<u8>();
        prefetch_read(ptr);
        if std::mem::size_of::<T>() > 64 {
            prefetch_read(ptr.wrapping_add(64));
        }
    }
}

/// Prefetches the first cache line of `items[index]`, for state whose hot fields fit in it.
fn prefetch_first_line<T>(items: &[T], index: u32) {
    if let Some(item) = items.get(index as usize) {
        prefetch_read(item as *const T);
    }
}

impl Default for ServiceStage {
    fn default() -> Self {
        Self::new(ServiceStageConfig::default())
    }
}

/// A frame's transparent tags and network header, after `strip` delimiting bytes.
#[derive(Debug, Clone, Copy)]
struct Inner {
    ethertype: u16,
    l3: usize,
    outer_vid: u16,
    inner_vid: u16,
}

fn inner_of(frame: &[u8], strip: usize) -> Inner {
    let be16 = |at: usize| {
        frame
            .get(at..at + 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    let mut at = 12 + strip;
    let mut vids = [0u16; 2];
    let mut ethertype = be16(at);
    for vid in vids.iter_mut() {
        if ethertype != EtherType::VLAN && ethertype != EtherType::QINQ {
            break;
        }
        *vid = be16(at + 2) & 0xfff;
        at += vlan::HEADER_LEN;
        ethertype = be16(at);
    }
    Inner {
        ethertype,
        l3: at + 2,
        outer_vid: vids[0],
        inner_vid: vids[1],
    }
}

/// Fills the transport checksum of a frame whose sender left it to the NIC (before a filter
/// reads the frame or it leaves the host). The test is inlined, the work is not: a call per
/// packet, with the registers it saves, cost the Epipe path ~10 instructions.
#[inline(always)]
fn fill_pending_checksum(buf: &mut PacketBuf, meta: &mut PacketMeta, strip: usize) {
    if meta.checksum_pending {
        fill_checksum_now(buf, strip);
        meta.checksum_pending = false;
    }
}

#[cold]
#[inline(never)]
fn fill_checksum_now(buf: &mut PacketBuf, strip: usize) {
    let inner = inner_of(buf.as_slice(), strip);
    if matches!(inner.ethertype, EtherType::IPV4 | EtherType::IPV6) {
        if let Some(ip) = buf.as_mut_slice().get_mut(inner.l3..) {
            crate::wire::checksum::fill_transport_checksum(ip);
        }
    }
}

/// The classifier key of `frame` after `strip` delimiting bytes (an [`Ingress::strip`]: a
/// [`sap::SapMatch::strip`] widened, so it fits the `u8` that [`key_into`] takes).
fn key_of(frame: &[u8], strip: usize) -> PacketKey {
    let mut key = PacketKey::default();
    key_into(frame, u8::try_from(strip).unwrap_or(u8::MAX), &mut key);
    key
}

/// Writes the classifier key of `frame` into `key`, where its reader will find it. Returned
/// by value into step E's slot, the key was built in a temporary with stores of 1 to 8
/// bytes and copied with 16-byte loads that spanned them: a store-forwarding stall a
/// filtered packet (~13 % of `process`'s samples in cache). `strip` is the SAP match's
/// `u8`, widened here: bounded by 255, the tag walk's `at + 2` cannot overflow and its
/// checks fold (10 instructions fewer a key than a `usize` strip, round 26).
#[inline(never)]
fn key_into(frame: &[u8], strip: u8, key: &mut PacketKey) {
    let inner = inner_of(frame, usize::from(strip));
    key.read_frame(
        frame,
        inner.ethertype,
        inner.l3,
        inner.outer_vid,
        inner.inner_vid,
    );
}

/// What step E learned of a filtered packet, kept for its last step beside the packet's
/// [`Work`] record (in a ring of its own, so that the records of the unfiltered packets stay
/// small): the classifier key, and where its IPv4 filter's scan starts.
#[derive(Debug, Clone, Copy, Default)]
struct EarlyKey {
    key: PacketKey,
    /// The first IPv4 entry the summary did not rule out ([`RuleSet::classify_from`]),
    /// `None` when step E did not compare the summary.
    v4_candidate: Option<usize>,
}

/// The filters and policer a SAP's received frame is metered with, for
/// [`ServiceStage::ingress_checks`].
#[derive(Clone, Copy)]
enum Metering<'a> {
    /// None (no ingress filter or policer).
    None,
    /// Those of the SAP's entry.
    Direction(&'a DirEntry),
    /// Those of a cross-connect's ingress record.
    CrossConnect(&'a IngressRecord),
}

/// The per-packet facts the steps below share.
struct Ingress {
    /// Delimiting tag bytes at offset 12.
    strip: usize,
    /// PCP/DEI of the outer delimiting tag.
    priority: u8,
    /// The classifier key, computed the first time a filter needs it.
    key: Option<PacketKey>,
}

impl Ingress {
    /// The classifier key of `frame` (this packet's), computed the first time it is needed.
    #[inline(always)]
    fn key_of(&mut self, frame: &[u8]) -> PacketKey {
        let strip = self.strip;
        *self.key.get_or_insert_with(|| key_of(frame, strip))
    }

    fn colour(&self) -> Colour {
        if self.priority & 1 != 0 {
            Colour::Yellow
        } else {
            Colour::Green
        }
    }
}

/// A frame on its way out of a SAP and what sending it takes besides the SAP, in one value:
/// the send has two entry points (out of line, and inlined into `bridge`) and they share it.
struct Outgoing<'p> {
    tables: &'p ServiceTables,
    buf: &'p mut PacketBuf,
    ingress: &'p mut Ingress,
    /// The service the frame is forwarded in (its drops are counted there too).
    service: u32,
    now_ns: u64,
}

/// The batch's clock: the pipeline's context and its time in the MAC table's seconds, divided
/// once per batch rather than per learned frame.
#[derive(Clone, Copy)]
struct Clock<'c> {
    ctx: &'c Context<'c>,
    now_s: u32,
}

impl ServiceStage {
    /// A stage with no services installed.
    pub fn new(config: ServiceStageConfig) -> Self {
        Self {
            config,
            tables: None,
            saps: HugeVec::new(),
            ingress: HugeVec::new(),
            cross: Vec::new(),
            services: HugeVec::new(),
            sap_drops: Vec::new(),
            service_drops: Vec::new(),
            filters: HugeVec::new(),
            filter_sides: HugeVec::new(),
            policers: HugeVec::new(),
            policer_generations: Vec::new(),
            ports: Vec::new(),
            fdb: None,
            punts: VecDeque::new(),
            spare_frames: Vec::new(),
            throttle: Arc::new(TriggerThrottle::new(
                config.throttle_entries,
                config.throttle_hold_secs,
                // Its own hash key, not the MAC table's.
                config.fdb_seed.rotate_left(32) ^ 0x7468_726f_7474_6c65,
            )),
            scratch: Vec::new(),
            last_sweep_ns: 0,
            pcc: None,
            warm: false,
            filters_in_use: false,
            filtered_saps: 0,
        }
    }

    /// The data trigger throttle of the capture SAPs, shared with the control side, which
    /// releases each punted frame's mark once no trigger of it is in progress.
    pub fn trigger_throttle(&self) -> Arc<TriggerThrottle> {
        self.throttle.clone()
    }

    /// Enforces subscribers' PCC rules on the IP packets crossing an IES/VPRN interface,
    /// as on a BNG's subscriber interfaces: a packet its SAP received on the way to the
    /// kernel's TAP meets the sender's ingress rules, a packet from the TAP on the way out
    /// through the SAP the receiver's egress rules, after the ingress SAP's filters and
    /// policer and before the egress SAP's. `pcc` is the same shared stage the pipeline runs
    /// for its other ports (one set of policers and counters); it is locked once per batch,
    /// always after this stage's own lock. `None` stops the enforcement.
    pub fn set_subscriber_pcc(&mut self, pcc: Option<Shared<PccStage>>) {
        self.pcc = pcc;
    }

    /// The installed snapshot.
    pub fn tables(&self) -> Option<&Arc<ServiceTables>> {
        self.tables.as_ref()
    }

    // --- installing a snapshot ---------------------------------------------------------

    /// Installs `tables` (at `now_ns`, the pipeline's clock). State of objects that still
    /// exist (same slot and generation) is kept: counters, MACs, policer buckets (capped to
    /// changed burst sizes), filter entry hits (by entry id). State of removed or replaced
    /// objects is reset, and their MACs are flushed.
    pub fn install(&mut self, tables: Arc<ServiceTables>, now_ns: u64) {
        let old = self.tables.take();
        if self.saps.len() < tables.saps.len() {
            self.saps.grow_to(tables.saps.len());
            self.ingress.grow_to(tables.saps.len());
            self.cross.resize(tables.saps.len(), None);
            self.sap_drops.resize(tables.saps.len(), [0; REASONS]);
        }
        if self.services.len() < tables.services.len() {
            self.services.grow_to(tables.services.len());
            self.service_drops
                .resize(tables.services.len(), [0; REASONS]);
        }
        if self.filters.len() < tables.filters.len() {
            self.filters.grow_to(tables.filters.len());
            self.filter_sides.grow_to(tables.filters.len());
        }
        if self.policers.len() < tables.policers.len() {
            self.policers.grow_to(tables.policers.len());
            self.policer_generations.resize(tables.policers.len(), 0);
        }
        if self.ports.len() < tables.ports.len() {
            self.ports
                .resize(tables.ports.len(), AccessPortCounters::default());
        }
        if tables.has_vpls && self.fdb.is_none() {
            self.fdb = Some(Fdb::new(self.config.fdb_entries, self.config.fdb_seed));
        }
        // Over the snapshot this one was built from, only the changed slots need a look.
        let incremental = old
            .as_ref()
            .is_some_and(|o| o.epoch != 0 && o.epoch == tables.base);
        let slots = |changed: &[u32], len: usize| -> Vec<usize> {
            let mut slots = new_or_all(incremental, changed, len);
            slots.retain(|s| *s < len);
            slots
        };
        // SAPs.
        if !incremental {
            self.filtered_saps = 0;
        }
        for slot in slots(&tables.changed.saps, self.saps.len()) {
            let filtered = |t: Option<&ServiceTables>| {
                t.and_then(|t| t.sap(slot as u32))
                    .is_some_and(|s| s.ingress.has_filters())
            };
            if incremental && filtered(old.as_deref()) {
                self.filtered_saps = self.filtered_saps.saturating_sub(1);
            }
            if filtered(Some(&tables)) {
                self.filtered_saps += 1;
            }
            let generation = tables.sap(slot as u32).map_or(0, |s| s.generation);
            if self.saps[slot].generation != generation {
                // Its MACs leave its (old) service's count with it.
                let count = self.saps[slot].mac_count;
                if let Some(service) = old.as_ref().and_then(|o| o.sap(slot as u32)) {
                    if let Some(state) = self.services.get_mut(service.service as usize) {
                        state.mac_count = state.mac_count.saturating_sub(count);
                    }
                }
                self.flush_sap_slot(slot as u32);
                let capture = |t: Option<&ServiceTables>| {
                    t.and_then(|t| t.sap(slot as u32))
                        .is_some_and(|s| s.role == SapRole::Capture)
                };
                if capture(old.as_deref()) || capture(Some(&tables)) {
                    // Marks of the SAP that held the slot must not throttle the new one.
                    self.throttle.release_slot(slot as u32);
                }
                let epoch = self.saps[slot].fdb_epoch;
                self.saps[slot] = SapState {
                    generation,
                    fdb_epoch: epoch,
                    ..SapState::default()
                };
                self.sap_drops[slot] = [0; REASONS];
                let record = &mut self.ingress[slot];
                record.rx_packets = 0;
                record.rx_octets = 0;
            }
            self.saps[slot].egress = EgressRecord::of(tables.sap(slot as u32));
        }
        // Ingress records: of the changed SAPs, and of their peers before and after (a
        // record holds a copy of its peer's egress record, and counts for its peer).
        let mut records = Vec::new();
        for slot in slots(&tables.changed.saps, self.saps.len()) {
            records.push(slot);
            for t in [old.as_deref(), Some(&*tables)].into_iter().flatten() {
                if let Some(Peer::Sap(peer)) = t.sap(slot as u32).map(|s| s.peer) {
                    records.push(peer as usize);
                }
            }
        }
        records.sort_unstable();
        records.dedup();
        records.retain(|s| *s < self.saps.len());
        for slot in records {
            self.refresh_ingress_record(&tables, slot);
        }
        // Services.
        for slot in slots(&tables.changed.services, self.services.len()) {
            let generation = tables.service(slot as u32).map_or(0, |s| s.generation);
            if self.services[slot].generation != generation {
                self.services[slot] = ServiceState {
                    generation,
                    ..ServiceState::default()
                };
                self.service_drops[slot] = [0; REASONS];
            }
        }
        // Filters: hits follow entry ids when the rules changed.
        for slot in slots(&tables.changed.filters, self.filters.len()) {
            // Both grow together.
            let (Some(state), Some(side)) =
                (self.filters.get_mut(slot), self.filter_sides.get_mut(slot))
            else {
                continue;
            };
            match tables.filter(slot as u32) {
                None => (*state, *side) = Default::default(),
                Some(f) => {
                    if side.generation != f.generation {
                        *state = FilterState::default();
                        *side = FilterSide {
                            generation: f.generation,
                            ..FilterSide::default()
                        };
                    }
                    let same = side
                        .source
                        .as_ref()
                        .is_some_and(|r| Arc::ptr_eq(r, &f.rules));
                    if !same {
                        state.take_rules(side, &f.rules, &f.entry_ids);
                    }
                }
            }
        }
        // Policers: a changed policer keeps buckets and counters.
        for slot in slots(&tables.changed.policers, self.policers.len()) {
            let state = &mut self.policers[slot];
            // As long as `policers`: both grow together.
            let Some(generation) = self.policer_generations.get_mut(slot) else {
                continue;
            };
            match tables.policer(slot as u32) {
                None => {
                    *state = PolicerSlot::default();
                    *generation = 0;
                }
                Some(p) => {
                    if *generation != p.generation || state.policer.is_none() {
                        *state = PolicerSlot {
                            policer: Some(LinePolicer::new(&p.params, now_ns)),
                        };
                        *generation = p.generation;
                    } else if old
                        .as_ref()
                        .and_then(|o| o.policer(slot as u32))
                        .is_none_or(|before| before.params != p.params)
                    {
                        if let Some(policer) = state.policer.as_mut() {
                            policer.reconfigure(&p.params);
                        }
                    }
                }
            }
        }
        let service_slots = new_or_all(
            incremental,
            &tables.changed.services,
            tables
                .services
                .len()
                .max(old.as_ref().map_or(0, |o| o.services.len())),
        );
        self.sync_statics(old.as_deref(), &tables, &service_slots);
        if !incremental {
            // MAC counts of the services follow their SAPs.
            for state in self.services.iter_mut() {
                state.mac_count = 0;
            }
            for (slot, sap) in tables.saps.iter().enumerate() {
                if let (Some(sap), Some(state)) = (sap, self.saps.get(slot)) {
                    if let Some(service) = self.services.get_mut(sap.service as usize) {
                        service.mac_count += state.mac_count;
                    }
                }
            }
        }
        self.warm = tables.sap_count() <= WARM_OBJECTS && tables.service_count() <= WARM_OBJECTS;
        self.filters_in_use = self.filtered_saps > 0;
        self.tables = Some(tables);
    }

    /// Rebuilds SAP `slot`'s ingress record from `tables`, keeping its received-frame
    /// counters (reset with the SAP state when the SAP is replaced). Frames the record
    /// counted for a peer it no longer counts for are added to that peer's state, if the peer
    /// is still the same SAP.
    fn refresh_ingress_record(&mut self, tables: &ServiceTables, slot: usize) {
        let (fresh, target) = IngressRecord::of(tables, slot as u32);
        let record = &mut self.ingress[slot];
        if self.cross[slot] != target {
            if let Some((peer, generation)) = self.cross[slot] {
                if let Some(state) = self
                    .saps
                    .get_mut(peer as usize)
                    .filter(|s| s.generation == generation)
                {
                    state.tx_packets += record.peer_tx_packets;
                    state.tx_octets += record.peer_tx_octets;
                }
            }
            record.peer_tx_packets = 0;
            record.peer_tx_octets = 0;
            self.cross[slot] = target;
        }
        *record = IngressRecord {
            rx_packets: record.rx_packets,
            rx_octets: record.rx_octets,
            peer_tx_packets: record.peer_tx_packets,
            peer_tx_octets: record.peer_tx_octets,
            ..fresh
        };
    }

    /// Installs static MACs that are new and removes the ones that are gone.
    fn sync_statics(
        &mut self,
        old: Option<&ServiceTables>,
        new: &ServiceTables,
        service_slots: &[usize],
    ) {
        let Some(fdb) = self.fdb.as_mut() else {
            return;
        };
        let statics_of = |tables: &ServiceTables, slot: usize| -> Vec<(u64, u32)> {
            match tables.services.get(slot) {
                Some(Some(s)) => match &s.kind {
                    ServiceKind::Vpls(v) => v.statics.clone(),
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            }
        };
        for &slot in service_slots {
            let before = old.map(|o| statics_of(o, slot)).unwrap_or_default();
            let after = statics_of(new, slot);
            if before == after {
                continue;
            }
            let bridge = slot as u32;
            for (mac, _) in &before {
                if after.iter().all(|(m, _)| m != mac) {
                    if let Some((_, entry)) = fdb.lookup(bridge, *mac) {
                        if entry.is_static() {
                            fdb.remove(bridge, *mac);
                        }
                    }
                }
            }
            for (mac, sap) in &after {
                if let Some((_, entry)) = fdb.lookup(bridge, *mac) {
                    // A learned entry gives way to the static one.
                    if !entry.is_static() {
                        if let Some(state) = self.saps.get_mut(entry.sap as usize) {
                            if state.fdb_epoch == entry.epoch && state.mac_count > 0 {
                                state.mac_count -= 1;
                            }
                        }
                    }
                }
                // A full table cannot refuse a static MAC it already holds; a new one that
                // does not fit is reported by `fdb` dumps lacking it (the table is sized for
                // a million entries).
                let _ = fdb.insert(bridge, *mac, *sap, STATIC_EPOCH, 0);
            }
        }
    }

    /// Makes every learned MAC of SAP `slot` stale (its epoch moves on); when the epoch would
    /// wrap, the SAP's entries are removed in one pass instead.
    fn flush_sap_slot(&mut self, slot: u32) {
        let Some(state) = self.saps.get_mut(slot as usize) else {
            return;
        };
        state.mac_count = 0;
        let next = state.fdb_epoch.wrapping_add(1);
        if next == STATIC_EPOCH {
            state.fdb_epoch = 0;
            if let Some(fdb) = self.fdb.as_mut() {
                fdb.retain(|e| e.sap == slot && !e.is_static());
            }
        } else {
            state.fdb_epoch = next;
        }
    }

    // --- control-side reads and clears -------------------------------------------------

    fn sap_slot(&self, id: &SapId) -> Option<u32> {
        self.tables.as_ref()?.sap_ids.get(id).copied()
    }

    fn service_slot(&self, id: ServiceId) -> Option<u32> {
        self.tables.as_ref()?.service_ids.get(&id).copied()
    }

    /// The slot of the SAP whose ingress record counts frames sent out of SAP `slot` (its
    /// Epipe peer, when that is a cross-connect).
    fn counted_by(&self, slot: u32) -> Option<usize> {
        let Peer::Sap(peer) = self.tables.as_ref()?.sap(slot)?.peer else {
            return None;
        };
        let generation = self.saps.get(slot as usize)?.generation;
        (self.cross.get(peer as usize)? == &Some((slot, generation))).then_some(peer as usize)
    }

    /// Frames and octets received and sent by SAP `slot`: received ones are in its ingress
    /// record, sent ones in its state and, for an Epipe peer's cross-connect, in the peer's
    /// record.
    fn sap_traffic(&self, slot: u32) -> Option<[u64; 4]> {
        let state = self.saps.get(slot as usize)?;
        let record = self.ingress.get(slot as usize)?;
        let mut traffic = [
            state.rx_packets + record.rx_packets,
            state.rx_octets + record.rx_octets,
            state.tx_packets,
            state.tx_octets,
        ];
        if let Some(peer) = self.counted_by(slot).and_then(|p| self.ingress.get(p)) {
            traffic[2] += peer.peer_tx_packets;
            traffic[3] += peer.peer_tx_octets;
        }
        Some(traffic)
    }

    /// Counters of a SAP.
    pub fn sap_counters(&self, id: &SapId) -> Option<SapCounters> {
        let slot = self.sap_slot(id)?;
        let state = self.saps.get(slot as usize)?;
        let [rx_packets, rx_octets, tx_packets, tx_octets] = self.sap_traffic(slot)?;
        Some(SapCounters {
            rx_packets,
            rx_octets,
            tx_packets,
            tx_octets,
            punted: state.punted,
            punted_octets: state.punted_octets,
            throttled: state.throttled,
            throttled_octets: state.throttled_octets,
            macs: state.mac_count,
            drops: drops_map(self.sap_drops.get(self.sap_slot(id)? as usize)?),
        })
    }

    /// Counters of a service: its SAPs' traffic summed, plus its tunnel's.
    pub fn service_counters(&self, id: ServiceId) -> Option<ServiceCounters> {
        let tables = self.tables.as_ref()?;
        let slot = self.service_slot(id)?;
        let s = self.services.get(slot as usize)?;
        let (mut rx_packets, mut rx_octets) = (s.tunnel_rx_packets, s.tunnel_rx_octets);
        let (mut tx_packets, mut tx_octets) = (s.tunnel_tx_packets, s.tunnel_tx_octets);
        for sap in tables.saps_of(id) {
            let Some(traffic) = tables.sap_ids.get(&sap).and_then(|i| self.sap_traffic(*i)) else {
                continue;
            };
            rx_packets += traffic[0];
            rx_octets += traffic[1];
            tx_packets += traffic[2];
            tx_octets += traffic[3];
        }
        Some(ServiceCounters {
            rx_packets,
            rx_octets,
            tx_packets,
            tx_octets,
            flooded: s.flooded,
            learned: s.learned,
            aged: s.aged,
            moves: s.moves,
            fdb_full: s.fdb_full,
            limit_not_learned: s.limit_not_learned,
            static_move_refused: s.static_move_refused,
            macs: s.mac_count,
            drops: drops_map(self.service_drops.get(self.service_slot(id)? as usize)?),
        })
    }

    /// Entry hit counters of a filter.
    pub fn filter_counters(&self, kind: FilterKind, id: u32) -> Option<FilterCounters> {
        let slot = *self.tables.as_ref()?.filter_ids.get(&(kind, id))?;
        let state = self.filters.get(slot as usize)?;
        let side = self.filter_sides.get(slot as usize)?;
        let ids = side.entry_ids.as_ref()?;
        let mut entries: Vec<EntryHits> = ids
            .iter()
            .enumerate()
            .map(|(index, id)| {
                let [packets, octets] = state.hits_of(side, index);
                EntryHits {
                    entry: Some(*id),
                    packets,
                    octets,
                }
            })
            .collect();
        entries.push(EntryHits {
            entry: None,
            packets: state.default_hits[0],
            octets: state.default_hits[1],
        });
        Some(FilterCounters { entries })
    }

    /// Counters of a policer, as its stat mode reports them.
    pub fn policer_stats(&self, id: PolicerId) -> Option<PolicerStats> {
        let slot = *self.tables.as_ref()?.policer_ids.get(&id)?;
        Some(self.policers.get(slot as usize)?.policer.as_ref()?.stats())
    }

    /// Frames that matched no SAP, per access port.
    pub fn access_port_counters(&self, port: PortId) -> Option<AccessPortCounters> {
        self.ports.get(usize::from(port)).copied()
    }

    /// Zeroes a SAP's counters (its MACs stay).
    pub fn clear_sap(&mut self, id: &SapId) -> bool {
        let Some(slot) = self.sap_slot(id) else {
            return false;
        };
        if let Some(s) = self.saps.get_mut(slot as usize) {
            *s = SapState {
                generation: s.generation,
                fdb_epoch: s.fdb_epoch,
                mac_count: s.mac_count,
                egress: s.egress,
                bum: s.bum,
                ..SapState::default()
            };
        }
        if let Some(d) = self.sap_drops.get_mut(slot as usize) {
            *d = [0; REASONS];
        }
        if let Some(record) = self.ingress.get_mut(slot as usize) {
            record.rx_packets = 0;
            record.rx_octets = 0;
        }
        if let Some(peer) = self.counted_by(slot) {
            if let Some(record) = self.ingress.get_mut(peer) {
                record.peer_tx_packets = 0;
                record.peer_tx_octets = 0;
            }
        }
        true
    }

    /// Zeroes a service's counters and those of its SAPs.
    pub fn clear_service(&mut self, id: ServiceId) -> bool {
        let Some(slot) = self.service_slot(id) else {
            return false;
        };
        if let Some(s) = self.services.get_mut(slot as usize) {
            *s = ServiceState {
                generation: s.generation,
                mac_count: s.mac_count,
                ..ServiceState::default()
            };
        }
        if let Some(d) = self.service_drops.get_mut(slot as usize) {
            *d = [0; REASONS];
        }
        let saps = self
            .tables
            .as_ref()
            .map(|t| t.saps_of(id))
            .unwrap_or_default();
        for sap in saps {
            self.clear_sap(&sap);
        }
        true
    }

    /// Zeroes a policer's counters.
    pub fn clear_policer(&mut self, id: PolicerId) -> bool {
        let Some(slot) = self
            .tables
            .as_ref()
            .and_then(|t| t.policer_ids.get(&id).copied())
        else {
            return false;
        };
        match self
            .policers
            .get_mut(slot as usize)
            .and_then(|p| p.policer.as_mut())
        {
            Some(policer) => {
                policer.clear();
                true
            }
            None => false,
        }
    }

    /// Removes the learned MACs of a SAP.
    pub fn flush_sap_fdb(&mut self, id: &SapId) -> bool {
        let Some(slot) = self.sap_slot(id) else {
            return false;
        };
        let count = self.saps.get(slot as usize).map_or(0, |s| s.mac_count);
        if let Some(service) = self
            .tables
            .as_ref()
            .and_then(|t| t.sap(slot))
            .map(|s| s.service)
        {
            if let Some(state) = self.services.get_mut(service as usize) {
                state.mac_count = state.mac_count.saturating_sub(count);
            }
        }
        self.flush_sap_slot(slot);
        true
    }

    /// Removes the learned MACs of a VPLS (static ones stay).
    pub fn flush_service_fdb(&mut self, id: ServiceId) -> bool {
        let Some(tables) = self.tables.clone() else {
            return false;
        };
        if !tables.service_ids.contains_key(&id) {
            return false;
        }
        for sap in tables.saps_of(id) {
            self.flush_sap_fdb(&sap);
        }
        true
    }

    /// The MACs of a VPLS (`show service id N fdb`), valid entries only, at `now_ns`.
    pub fn fdb(&self, id: ServiceId, now_ns: u64) -> Vec<FdbEntryView> {
        let (Some(tables), Some(fdb), Some(bridge)) = (
            self.tables.as_ref(),
            self.fdb.as_ref(),
            self.service_slot(id),
        ) else {
            return Vec::new();
        };
        let now_s = (now_ns / NS_PER_SEC) as u32;
        let mut out: Vec<FdbEntryView> = fdb
            .iter()
            .filter(|e| e.bridge == bridge && self.entry_valid(e))
            .filter_map(|e| {
                let sap = tables.sap(e.sap)?;
                let m = e.mac.to_be_bytes();
                Some(FdbEntryView {
                    mac: MacAddr([m[2], m[3], m[4], m[5], m[6], m[7]]),
                    sap: sap.id,
                    is_static: e.is_static(),
                    age_secs: if e.is_static() {
                        0
                    } else {
                        now_s.wrapping_sub(e.seen)
                    },
                })
            })
            .collect();
        out.sort_by_key(|v| v.mac);
        out
    }

    /// Entries in the MAC table (all bridges, stale ones until swept).
    pub fn fdb_len(&self) -> usize {
        self.fdb.as_ref().map_or(0, Fdb::len)
    }

    /// Frames waiting in the punt queue.
    pub fn punt_queue_len(&self) -> usize {
        self.punts.len()
    }

    /// Hands every queued punted frame to `f`, oldest first, and empties the queue (the
    /// frames' buffers are reused).
    pub fn drain_punts(&mut self, mut f: impl FnMut(&Punted)) -> usize {
        let mut count = 0;
        while let Some(punted) = self.punts.pop_front() {
            f(&punted);
            count += 1;
            self.spare_frames.push(punted.frame);
        }
        count
    }

    #[inline]
    fn entry_valid(&self, e: &Entry) -> bool {
        e.is_static()
            || self
                .saps
                .get(e.sap as usize)
                .is_some_and(|s| s.generation != 0 && s.fdb_epoch == e.epoch)
    }

    // --- the packet path -------------------------------------------------------------

    fn count_drop(&mut self, sap: u32, service: u32, reason: DropReason) {
        if let Some(d) = self.sap_drops.get_mut(sap as usize) {
            d[reason as usize] += 1;
        }
        self.count_service_drop(service, reason);
    }

    fn count_service_drop(&mut self, service: u32, reason: DropReason) {
        if let Some(d) = self.service_drops.get_mut(service as usize) {
            d[reason as usize] += 1;
        }
    }

    /// Meters `len` bytes on policer `slot`; false when red.
    #[inline]
    fn police(&mut self, slot: u32, now_ns: u64, len: usize, arrival: Colour) -> bool {
        let Some(PolicerSlot {
            policer: Some(policer),
            ..
        }) = self.policers.get_mut(slot as usize)
        else {
            return true;
        };
        policer.police(now_ns, len, arrival) != Colour::Red
    }

    /// Runs the filters and policer of one direction. `Err` names why the packet is dropped.
    /// `v4_candidate` is the IPv4 filter's candidate entry for the packet, when known (see
    /// [`EarlyKey`]).
    fn apply_direction(
        &mut self,
        dir: &DirEntry,
        frame: &[u8],
        ingress: &mut Ingress,
        v4_candidate: Option<usize>,
        now_ns: u64,
    ) -> Result<(), DropReason> {
        let len = frame.len();
        if dir.has_filters() {
            let key = ingress.key_of(frame);
            for (which, slot) in dir.filters.iter().enumerate() {
                let Some(slot) = *slot else {
                    continue;
                };
                let (applies, candidate) = match which {
                    DirEntry::MAC => (true, None),
                    DirEntry::IPV4 => (key.family == Some(IpFamily::V4), v4_candidate),
                    _ => (key.family == Some(IpFamily::V6), None),
                };
                if applies {
                    self.run_filter(slot, &key, candidate, len, ingress.colour(), now_ns)?;
                }
            }
        }
        match dir.policer {
            Some(policer) => self.police_or_drop(policer, now_ns, len, ingress.colour()),
            None => Ok(()),
        }
    }

    /// Classifies `key` with the filter in `slot` (its IPv4 scan from `v4_candidate` when
    /// known), counts the hit, and applies its action: `Err` when the action drops the
    /// packet or its policer finds it red.
    #[inline(always)]
    fn run_filter(
        &mut self,
        slot: u32,
        key: &PacketKey,
        v4_candidate: Option<usize>,
        len: usize,
        colour: Colour,
        now_ns: u64,
    ) -> Result<(), DropReason> {
        // The rule set is read from the stage's own state (`install` keeps it the snapshot's),
        // beside the hit counters: the snapshot's filter entry would be one more random line
        // a packet reads.
        let Some(state) = self.filters.get_mut(slot as usize) else {
            return Ok(());
        };
        let Some(rules) = state.rules.as_ref() else {
            return Ok(());
        };
        let hit = rules.classify_with(state.inline_v4(), key, v4_candidate);
        // The side's slot, not its line: read only for an entry past the inline ones.
        let side = self.filter_sides.get_mut(slot as usize);
        if let Some(c) = state.hit_mut(side, hit.rule) {
            c[0] += 1;
            c[1] += len as u64;
        }
        if hit.action.disposition == Disposition::Drop {
            return Err(DropReason::Filter);
        }
        match hit.action.policer {
            Some(policer) => self.police_or_drop(policer, now_ns, len, colour),
            None => Ok(()),
        }
    }

    /// [`Self::police`] as a drop reason.
    #[inline(always)]
    fn police_or_drop(
        &mut self,
        slot: u32,
        now_ns: u64,
        len: usize,
        arrival: Colour,
    ) -> Result<(), DropReason> {
        if self.police(slot, now_ns, len, arrival) {
            Ok(())
        } else {
            Err(DropReason::Policer)
        }
    }

    /// The ingress checks of a SAP's frame, in the order both ingress paths (the entry's and
    /// a cross-connect's record) run them: the service MTU, the transport checksum a sender
    /// left to the NIC (the filters read the frame as it leaves), then, when `metering` has
    /// work, the filters and policer. A drop is counted in the SAP's and the service's names.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn ingress_checks(
        &mut self,
        slot: u32,
        service: u32,
        service_mtu: u16,
        metering: Metering<'_>,
        buf: &mut PacketBuf,
        meta: &mut PacketMeta,
        ingress: &mut Ingress,
        early: Option<&EarlyKey>,
        now_ns: u64,
    ) -> Result<(), DropReason> {
        let checked = if buf.len() - ingress.strip > usize::from(service_mtu) {
            Err(DropReason::Mtu)
        } else {
            fill_pending_checksum(buf, meta, ingress.strip);
            // The frame's slice is taken in the arms: its bounds check is a few instructions
            // the unmetered packet (most Epipe frames) has no use for.
            match metering {
                Metering::None => Ok(()),
                Metering::Direction(dir) => {
                    let v4_candidate = early.and_then(|e| e.v4_candidate);
                    self.apply_direction(dir, buf.as_slice(), ingress, v4_candidate, now_ns)
                }
                // The IPv4 filter and the policer of a cross-connect (either may be
                // `NO_SLOT`): `apply_direction`'s work for the one filter such a SAP can
                // have, without its loop over three filter slots. The frame's slice (its
                // bounds checks) is taken only for a key step E did not make.
                Metering::CrossConnect(record) => {
                    let len = buf.len();
                    let colour = ingress.colour();
                    let mut metered = Ok(());
                    if record.ipv4_filter != NO_SLOT {
                        // Step E's key where it left it (see `cross_connect`), and its
                        // candidate: step E compared this filter's summary (a cross-connect's
                        // step E is never late) exactly when the key is IPv4 and the filter
                        // has rules, so a candidate says the key is IPv4 (the family's test,
                        // an `Option` compare, took six instructions) and no candidate that
                        // the filter has nothing to run.
                        let computed;
                        let scan = match early {
                            Some(e) => e.v4_candidate.map(|c| (&e.key, Some(c))),
                            None => {
                                computed = ingress.key_of(buf.as_slice());
                                (computed.family == Some(IpFamily::V4)).then_some((&computed, None))
                            }
                        };
                        if let Some((key, v4_candidate)) = scan {
                            metered = self.run_filter(
                                record.ipv4_filter,
                                key,
                                v4_candidate,
                                len,
                                colour,
                                now_ns,
                            );
                        }
                    }
                    if metered.is_ok() && record.policer != NO_SLOT {
                        metered = self.police_or_drop(record.policer, now_ns, len, colour);
                    }
                    metered
                }
            }
        };
        if let Err(reason) = checked {
            self.count_drop(slot, service, reason);
        }
        checked
    }

    /// Sends a frame out of SAP `slot`: its egress filters and policer, its tags, the port
    /// MTU. Returns the verdict. A SAP with nothing to check on egress (most) is sent from its
    /// egress record alone. Out of line: the Epipe path, floods and GRE call it from code
    /// with many values live; [`Self::egress_sap_inline`] is the same for `bridge`.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn egress_sap(
        &mut self,
        tables: &ServiceTables,
        buf: &mut PacketBuf,
        ingress: &mut Ingress,
        slot: u32,
        service: u32,
        now_ns: u64,
    ) -> Verdict {
        let out = Outgoing {
            tables,
            buf,
            ingress,
            service,
            now_ns,
        };
        self.egress_sap_inline(out, slot)
    }

    /// [`Self::egress_sap`], inlined into the caller: `bridge`'s known unicast frames (most
    /// of a VPLS's) then pay no call, and no second save of the registers `bridge` saved.
    #[inline(always)]
    fn egress_sap_inline(&mut self, out: Outgoing<'_>, slot: u32) -> Verdict {
        let Outgoing {
            tables,
            buf,
            ingress,
            service,
            now_ns,
        } = out;
        let Some(egress) = self.saps.get(slot as usize).map(|s| s.egress) else {
            return Verdict::Drop(DropReason::ServiceDown);
        };
        if egress.checked {
            if let Err(verdict) = self.egress_checks(tables, buf, ingress, slot, service, now_ns) {
                return verdict;
            }
        }
        let len = match egress.send(buf, ingress) {
            Ok(len) => len,
            Err(reason) => {
                self.count_drop(slot, service, reason);
                return Verdict::Drop(reason);
            }
        };
        // The service's own counters are the sums of its SAPs' (see `service_counters`): one
        // cache line less per packet.
        if let Some(s) = self.saps.get_mut(slot as usize) {
            s.tx_packets += 1;
            s.tx_octets += len as u64;
        }
        Verdict::Transmit(egress.port)
    }

    /// The egress checks of a SAP whose record says it has some: the SAP exists and is up,
    /// then its egress filters and policer. `Err` is the verdict of a frame they drop.
    #[cold]
    fn egress_checks(
        &mut self,
        tables: &ServiceTables,
        buf: &PacketBuf,
        ingress: &mut Ingress,
        slot: u32,
        service: u32,
        now_ns: u64,
    ) -> Result<(), Verdict> {
        let Some(sap) = tables.sap(slot) else {
            return Err(Verdict::Drop(DropReason::ServiceDown));
        };
        if sap.down {
            self.count_drop(slot, service, DropReason::ServiceDown);
            return Err(Verdict::Drop(DropReason::ServiceDown));
        }
        if sap.egress.has_filters() || sap.egress.policer.is_some() {
            if let Err(reason) =
                self.apply_direction(&sap.egress, buf.as_slice(), ingress, None, now_ns)
            {
                self.count_drop(slot, service, reason);
                return Err(Verdict::Drop(reason));
            }
        }
        Ok(())
    }

    /// Ethernet over GRE towards an Epipe's remote end.
    fn egress_gre(
        &mut self,
        gre: &GreEntry,
        buf: &mut PacketBuf,
        ingress: &Ingress,
        service: u32,
        ctx: &Context<'_>,
    ) -> Verdict {
        let Some(port) = ctx.ports.get(usize::from(gre.spec.port)) else {
            return Verdict::Drop(DropReason::BadEgress);
        };
        if !WireTags::NONE.write(buf, ingress.strip, 0) {
            return Verdict::Drop(DropReason::NoRoom);
        }
        let inner_len = buf.len();
        let header = &gre.header;
        let ip_len = header.len() - gre.ip_offset + inner_len;
        if ip_len > usize::from(gre.spec.mtu) {
            self.count_service_drop(service, DropReason::Mtu);
            return Verdict::Drop(DropReason::Mtu);
        }
        if !buf.push_front(header.len()) {
            return Verdict::Drop(DropReason::NoRoom);
        }
        let bytes = buf.as_mut_slice();
        let Some(dst) = bytes.get_mut(..header.len()) else {
            return Verdict::Drop(DropReason::NoRoom);
        };
        dst.copy_from_slice(header);
        dst[6..12].copy_from_slice(&port.mac.0);
        let ip = &mut dst[gre.ip_offset..];
        if gre.spec.local.is_ipv4() {
            ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
            Ipv4Packet::new_unchecked(&mut ip[..20]).fill_checksum();
        } else {
            ip[4..6].copy_from_slice(&((ip_len - 40) as u16).to_be_bytes());
        }
        let len = buf.len() as u64;
        if let Some(s) = self.services.get_mut(service as usize) {
            s.tunnel_tx_packets += 1;
            s.tunnel_tx_octets += len;
        }
        Verdict::Transmit(gre.spec.port)
    }

    /// Learns the source MAC whose key is `src` on SAP `slot` of bridge `bridge`. `Err` when
    /// the frame must be dropped. Inlined: a source that stays where it was learned (nearly
    /// every frame) is settled by one compare in the table; the rest go to
    /// [`Self::learn_change`], out of line.
    #[inline(always)]
    fn learn(
        &mut self,
        sap: &SapEntry,
        slot: u32,
        src: fdb::Key,
        now_s: u32,
    ) -> Result<(), DropReason> {
        let Some(fdb) = self.fdb.as_mut() else {
            return Ok(());
        };
        let found = match self.saps.get(slot as usize) {
            Some(state) if state.generation != 0 => {
                match fdb.refresh(src, slot, state.fdb_epoch, now_s) {
                    Sighting::Known => return Ok(()),
                    Sighting::Other(at, entry) => Some((at, entry)),
                    Sighting::Absent => None,
                }
            }
            _ => fdb.lookup_key(src),
        };
        self.learn_change(sap, slot, src, found, now_s)
    }

    /// A source that is new, stale, static or moving: `found` is its entry, if any.
    #[inline(never)]
    fn learn_change(
        &mut self,
        sap: &SapEntry,
        slot: u32,
        src: fdb::Key,
        found: Option<(fdb::SlotRef, Entry)>,
        now_s: u32,
    ) -> Result<(), DropReason> {
        let bridge = sap.service;
        let Some(fdb) = self.fdb.as_mut() else {
            return Ok(());
        };
        let mut stale_at = None;
        if let Some((at, entry)) = found {
            if entry.is_static() {
                if entry.sap != slot {
                    if let Some(s) = self.services.get_mut(bridge as usize) {
                        s.static_move_refused += 1;
                    }
                }
                return Ok(());
            }
            let valid = self
                .saps
                .get(entry.sap as usize)
                .is_some_and(|s| s.generation != 0 && s.fdb_epoch == entry.epoch);
            if valid && entry.sap == slot {
                // `refresh` settles this case (an installed SAP's generation is never 0):
                // kept so that a MAC is never counted as moving to the SAP it is on.
                return Ok(());
            }
            if valid {
                // A move: the MAC now lives behind this SAP, if it has room.
                let state = &self.saps[slot as usize];
                if state.mac_count.saturating_add(sap.static_count) >= sap.max_mac {
                    return self.limit_reached(sap, bridge);
                }
                let epoch = state.fdb_epoch;
                fdb.update(at, slot, epoch, now_s);
                if let Some(old) = self.saps.get_mut(entry.sap as usize) {
                    old.mac_count = old.mac_count.saturating_sub(1);
                }
                self.saps[slot as usize].mac_count += 1;
                if let Some(s) = self.services.get_mut(bridge as usize) {
                    s.moves += 1;
                }
                return Ok(());
            }
            stale_at = Some(at);
        }
        let state = &self.saps[slot as usize];
        if state.mac_count.saturating_add(sap.static_count) >= sap.max_mac {
            return self.limit_reached(sap, bridge);
        }
        let epoch = state.fdb_epoch;
        let fdb_size = self
            .tables
            .as_ref()
            .and_then(|t| t.service(bridge))
            .and_then(|s| match &s.kind {
                ServiceKind::Vpls(v) => v.spec.fdb_size,
                _ => None,
            });
        let service = &mut self.services[bridge as usize];
        if fdb_size.is_some_and(|max| service.mac_count >= max) {
            service.fdb_full += 1;
            return Ok(());
        }
        let learned = match stale_at {
            Some(at) => {
                fdb.update(at, slot, epoch, now_s);
                true
            }
            None => fdb.insert(bridge, src.mac(), slot, epoch, now_s).is_ok(),
        };
        if learned {
            service.learned += 1;
            service.mac_count += 1;
            self.saps[slot as usize].mac_count += 1;
        } else {
            service.fdb_full += 1;
        }
        Ok(())
    }

    fn limit_reached(&mut self, sap: &SapEntry, bridge: u32) -> Result<(), DropReason> {
        if sap.discard_unknown_source {
            return Err(DropReason::MacLimit);
        }
        if let Some(s) = self.services.get_mut(bridge as usize) {
            s.limit_not_learned += 1;
        }
        Ok(())
    }

    /// Step A of a packet: reads its tags and prefetches the exact-match slot its SAP
    /// lookup starts at. Starts the packet's record afresh, field by field: the ring slot
    /// held an earlier packet, and the record's later fields are step C's to write.
    #[inline(always)]
    fn read_step<'t>(
        &self,
        tables: &'t ServiceTables,
        batch: &Batch,
        index: usize,
        work: &mut Work<'t>,
    ) {
        work.port = None;
        work.sap = None;
        work.step = Step::Skip;
        let Some((buf, meta)) = batch.get(index) else {
            return;
        };
        if meta.verdict != Verdict::Pending {
            return;
        }
        let Some(Some(port)) = tables.ports.get(usize::from(meta.port)) else {
            if !tables.tunnels.is_empty() {
                work.step = Step::Gre;
            }
            return;
        };
        if meta.pkt_type == pkt_type::OUTGOING {
            work.step = Step::Outgoing;
            return;
        }
        work.step = match sap::read_tags(buf.as_slice(), &port.saps) {
            Err(_) => Step::Malformed,
            Ok(tags) => {
                if !self.warm {
                    if let Some(key) = sap::first_key(meta.port, &port.saps, tags) {
                        tables.exact.prefetch(key);
                    }
                }
                work.port = Some((meta.port, &port.saps));
                Step::Tagged(tags)
            }
        };
    }

    /// Step B: the SAP lookup; prefetches the SAP's ingress record.
    #[inline(always)]
    fn lookup_step(&self, tables: &ServiceTables, work: &mut Work<'_>) {
        let Step::Tagged(tags) = work.step else {
            return;
        };
        let Some((port, saps)) = work.port else {
            return;
        };
        work.step = match sap::lookup(port, saps, tags, |key| tables.exact.get(key)) {
            Some(m) => {
                if !self.warm {
                    prefetch_first_line(&self.ingress, m.sap);
                }
                Step::Sap(m, tags)
            }
            None => Step::NoSap,
        };
    }

    /// Step C: reads the SAP's ingress record. A cross-connect's packet prefetches its
    /// filter and policer from it; another's reads its entry now when the entries are in
    /// cache, else prefetches the entry and its state for step D.
    #[inline(always)]
    fn dependents_step<'t>(
        &self,
        tables: &'t ServiceTables,
        batch: &Batch,
        index: usize,
        work: &mut Work<'t>,
    ) {
        let Step::Sap(m, tags) = work.step else {
            return;
        };
        if self.warm {
            // The entries are in cache, and only an Epipe SAP can be a cross-connect: the
            // others (a VPLS's, every packet of one) are not worth the record's line.
            let Some(sap) = tables.sap(m.sap) else {
                work.sap = None;
                return;
            };
            if sap.role != SapRole::Epipe {
                work.sap = Some(self.entry_work(batch, index, sap, false));
                return;
            }
        }
        let Some(record) = self.ingress.get(m.sap as usize) else {
            work.sap = None;
            return;
        };
        if record.cross_connect {
            self.prefetch_filters_and_policer(&record.ingress());
            work.sap = Some(SapWork {
                entry: None,
                filtered: record.ipv4_filter != NO_SLOT,
                cross_filter: record.ipv4_filter,
                cross_policer: record.policer,
                late: false,
                macs: None,
            });
        } else if self.warm {
            work.sap = tables
                .sap(m.sap)
                .map(|sap| self.entry_work(batch, index, sap, false));
        } else {
            tables.saps.prefetch(m.sap as usize);
            prefetch_first_line(&self.saps, m.sap);
            work.sap = None;
            work.step = Step::EntryPending(m, tags);
        }
    }

    /// Step D of a packet whose SAP is not a cross-connect, with the entries out of cache:
    /// reads the entry step C prefetched, and prefetches what it points to; the MAC-table
    /// lines of a VPLS frame directly (its group's were issued at step C).
    #[inline(always)]
    fn entry_step<'t>(
        &self,
        sap: Option<&'t SapEntry>,
        batch: &Batch,
        index: usize,
        work: &mut Work<'t>,
    ) {
        work.sap = sap.map(|sap| self.entry_work(batch, index, sap, true));
        if let (Some(fdb), Some([dst, src])) = (self.fdb.as_ref(), work.sap.and_then(|s| s.macs)) {
            fdb.prefetch(dst);
            fdb.prefetch(src);
        }
    }

    /// Reads a SAP's entry into a packet's record and prefetches what it points to —
    /// the MAC table keys of a VPLS frame (hashed here, prefetched by the caller), the peer
    /// of an Epipe frame, the service's counters, filters, policers. Inlined: out of line,
    /// the call cost the VPLS path (few SAPs, every packet here) ~10 %.
    #[inline(always)]
    fn entry_work<'t>(
        &self,
        batch: &Batch,
        index: usize,
        sap: &'t SapEntry,
        late: bool,
    ) -> SapWork<'t> {
        let mut macs = None;
        match (sap.role, sap.peer) {
            (SapRole::Vpls, _) => {
                if !self.warm {
                    prefetch_slot(&self.services, sap.service);
                }
                if let (Some(fdb), Some((buf, _))) = (self.fdb.as_ref(), batch.get(index)) {
                    let (dst, src) = macs_of(buf.as_slice());
                    macs = Some([fdb.key(sap.service, dst), fdb.key(sap.service, src)]);
                }
            }
            (SapRole::Epipe, Peer::Sap(peer)) => {
                // Its egress record; its snapshot entry only matters when the record says so.
                prefetch_first_line(&self.saps, peer);
            }
            _ => {}
        }
        self.prefetch_filters_and_policer(&sap.ingress);
        SapWork {
            entry: Some(sap),
            filtered: sap.ingress.has_filters(),
            cross_filter: NO_SLOT,
            cross_policer: NO_SLOT,
            late,
            macs,
        }
    }

    /// The state of a direction's filters (the line of the rule set's handle; the hit
    /// counters' lines come at step E) and policer.
    fn prefetch_filters_and_policer(&self, dir: &DirEntry) {
        for slot in dir.filters.iter().flatten() {
            prefetch_first_line(&self.filters, *slot);
        }
        if let Some(policer) = dir.policer {
            prefetch_first_line(&self.policers, policer);
        }
    }

    /// The MAC-table lines of a group of packets after their step C, back to back: the
    /// prefetches' TLB misses overlap.
    fn prefetch_macs<'w, 't: 'w>(&self, works: impl Iterator<Item = &'w Work<'t>>) {
        let Some(fdb) = self.fdb.as_ref() else {
            return;
        };
        for [dst, src] in works.filter_map(|w| w.sap.and_then(|s| s.macs)) {
            fdb.prefetch(dst);
            fdb.prefetch(src);
        }
    }

    /// Step D: the compiled rule sets of the SAP's ingress filters (their handles, which step
    /// E reads) and all their hit counters (the hit is not known before step F). A
    /// cross-connect's one filter comes from its [`SapWork`], not a three-slot list.
    fn rule_set_step(&self, work: &Work<'_>) {
        let Some(sap) = work.sap.filter(|s| s.filtered && !s.late) else {
            return;
        };
        match sap.entry {
            None => self.prefetch_rule_set(sap.cross_filter),
            Some(entry) => {
                for slot in entry.ingress.filters.iter().flatten() {
                    self.prefetch_rule_set(*slot);
                }
            }
        }
    }

    /// Step D's work for one filter slot.
    #[inline(always)]
    fn prefetch_rule_set(&self, slot: u32) {
        if let Some(state) = self.filters.get(slot as usize) {
            if let Some(rules) = &state.rules {
                rules.prefetch_head_with(state.inline_v4());
                // The later entries' counters are in a block whose handle is in the side:
                // its line now, the counters at step E.
                if rules.len() > INLINE_HITS {
                    prefetch_first_line(&self.filter_sides, slot);
                }
            }
        }
    }

    /// Step E: the first entries the packet will scan. Leaves the packet's classifier key, and
    /// its IPv4 filter's candidate entry, in `early` for its last step (`None` for a packet
    /// without filters: the slot may hold an earlier packet's). The key is built in its slot
    /// ([`key_into`]).
    fn entries_step(
        &self,
        batch: &Batch,
        index: usize,
        work: &Work<'_>,
        early: &mut Option<EarlyKey>,
    ) {
        let filtered = match (work.sap, work.step) {
            (Some(sap), Step::Sap(m, _)) if sap.filtered => {
                batch.get(index).map(|(buf, _)| (sap, m, buf))
            }
            _ => None,
        };
        let Some((sap, m, buf)) = filtered else {
            *early = None;
            return;
        };
        // The slot's earlier key, when it has one, is written over: `key_into` writes every
        // field. A default key written first cost 9 stores a packet (round 26); a slot is
        // new (`None`) only for its first filtered packet of a batch, or after an
        // unfiltered one.
        let early = early.get_or_insert_with(EarlyKey::default);
        early.v4_candidate = None;
        key_into(buf.as_slice(), m.strip, &mut early.key);
        match sap.entry {
            None => {
                // The lines of the cross-connect's ingress record and policer again, which
                // step C read and prefetched, a step before the last step reads them: at
                // 100 000 SAPs those first reads waited though the lines had come (the
                // packets between touch more pages than the first-level TLB holds), and this
                // prefetch brings the translations back. Here, not for every packet: without
                // filters the steps are eight packets apart and it lost.
                prefetch_first_line(&self.ingress, m.sap);
                if sap.cross_policer != NO_SLOT {
                    prefetch_first_line(&self.policers, sap.cross_policer);
                }
                self.scan_start(DirEntry::IPV4, sap.cross_filter, sap.late, early)
            }
            Some(entry) => {
                for (which, slot) in entry.ingress.filters.iter().enumerate() {
                    if let Some(slot) = slot {
                        self.scan_start(which, *slot, sap.late, early);
                    }
                }
            }
        }
    }

    /// Step E's work for the filter in `slot`, the `which`th of the direction (MAC, IPv4,
    /// IPv6): prefetches the entry lines the key can match first and their hit counters,
    /// and notes the IPv4 filter's candidate in `early`.
    #[inline(always)]
    fn scan_start(&self, which: usize, slot: u32, late: bool, early: &mut EarlyKey) {
        let Some(state) = self.filters.get(slot as usize) else {
            return;
        };
        let Some(rules) = state.rules.as_ref() else {
            return;
        };
        let candidate = if which == DirEntry::MAC || late {
            rules.prefetch(None);
            None
        } else {
            // Its summary and actions came with step D: the one entry line the key can
            // match instead of the whole head.
            let candidate = rules.prefetch_candidates_with(state.inline_v4(), &early.key);
            if which == DirEntry::IPV4 && early.key.family == Some(IpFamily::V4) {
                // None: no entry can match, the scan starts past them all.
                early.v4_candidate = Some(candidate.unwrap_or(usize::MAX));
            }
            candidate
        };
        // The hit counters' line: the candidate's when it names its rule (none for an entry
        // past the inline ones), else both inline lines (the default action's counters are
        // in the line step C fetched). The candidate's by its counters' address: through
        // `prefetch_slice` over the lines from it on, the span's arithmetic cost ~15
        // instructions for the same one prefetch (round 26).
        match candidate.filter(|_| state.v4_in_rule_order) {
            Some(rule) => {
                if let Some(hits) = state.first_hits.0.get(rule) {
                    prefetch_read(hits);
                }
            }
            None => prefetch_slice(&state.first_hits.0, INLINE_HITS / HITS_PER_LINE),
        }
        if rules.len() > INLINE_HITS {
            if let Some(side) = self.filter_sides.get(slot as usize) {
                prefetch_slice(&side.more_hits, HIT_LINES);
            }
        }
    }

    /// Step F: the packet's ingress SAP, filters and policer, then its service. `early` is
    /// what step E learned of a filtered packet.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn access_frame(
        &mut self,
        tables: &ServiceTables,
        batch: &mut Batch,
        index: usize,
        work: &Work<'_>,
        early: Option<&EarlyKey>,
        pcc: Option<&mut PccStage>,
        clock: Clock<'_>,
    ) {
        let ctx = clock.ctx;
        let Some((buf, meta)) = batch.get_mut(index) else {
            return;
        };
        let (m, tags) = match work.step {
            Step::Sap(m, tags) => (m, tags),
            // Steps B and D turn these into others before the last step.
            Step::Skip | Step::Gre | Step::Tagged(_) | Step::EntryPending(..) => return,
            step @ (Step::Outgoing | Step::Malformed | Step::NoSap) => {
                self.without_sap(step, meta);
                return;
            }
        };
        let Some(SapWork {
            entry,
            macs,
            filtered,
            ..
        }) = work.sap
        else {
            meta.verdict = Verdict::Drop(DropReason::NoSap);
            return;
        };
        meta.sap = m.sap;
        let Some(sap) = entry else {
            meta.verdict = self.cross_connect(tables, buf, meta, m, early, ctx.now_ns);
            return;
        };
        let len = buf.len();
        if let Some(s) = self.saps.get_mut(m.sap as usize) {
            s.rx_packets += 1;
            s.rx_octets += len as u64;
        }
        let service = sap.service;
        if sap.down {
            self.count_drop(m.sap, service, DropReason::ServiceDown);
            meta.verdict = Verdict::Drop(DropReason::ServiceDown);
            return;
        }
        let mut ingress = Ingress {
            strip: usize::from(m.strip),
            priority: m.priority,
            key: early.map(|e| e.key),
        };
        match sap.role {
            SapRole::L3 if sap.peer == Peer::None => {
                meta.verdict = Verdict::Ignore;
                return;
            }
            SapRole::Capture => {
                let verdict = self.capture(tables, sap, m.sap, tags, buf, &mut ingress, ctx.now_ns);
                meta.verdict = verdict;
                return;
            }
            SapRole::Epipe | SapRole::Vpls | SapRole::L3 => {}
        }
        let metering = if filtered || sap.ingress.policer.is_some() {
            Metering::Direction(&sap.ingress)
        } else {
            Metering::None
        };
        if let Err(reason) = self.ingress_checks(
            m.sap,
            service,
            sap.service_mtu,
            metering,
            buf,
            meta,
            &mut ingress,
            early,
            ctx.now_ns,
        ) {
            meta.verdict = Verdict::Drop(reason);
            return;
        }
        if let (Some(direction), Some(pcc)) = (sap.subscriber_side, pcc) {
            let inner = inner_of(buf.as_slice(), ingress.strip);
            if matches!(inner.ethertype, EtherType::IPV4 | EtherType::IPV6) {
                let ip = buf.as_mut_slice().get_mut(inner.l3..).unwrap_or(&mut []);
                let instance = match tables.service(service).map(|s| &s.kind) {
                    Some(ServiceKind::L3(instance)) => *instance,
                    _ => crate::pcc::RoutingInstance::Base,
                };
                if let Err(reason) = pcc.enforce(direction, instance, ip, ctx.now_ns) {
                    self.count_drop(m.sap, service, reason);
                    meta.verdict = Verdict::Drop(reason);
                    return;
                }
            }
        }
        // An Epipe, or an IP interface's SAP and its TAP: a cross-connect.
        if matches!(sap.role, SapRole::Epipe | SapRole::L3) {
            let verdict = match sap.peer {
                Peer::Sap(peer) => {
                    self.egress_sap(tables, buf, &mut ingress, peer, service, ctx.now_ns)
                }
                Peer::Gre => match tables.service(service).map(|s| &s.kind) {
                    Some(ServiceKind::Epipe { gre: Some(gre), .. }) => {
                        self.egress_gre(gre, buf, &ingress, service, ctx)
                    }
                    _ => Verdict::Drop(DropReason::ServiceDown),
                },
                Peer::None => {
                    self.count_drop(m.sap, service, DropReason::ServiceDown);
                    Verdict::Drop(DropReason::ServiceDown)
                }
            };
            meta.verdict = verdict;
            return;
        }
        if !self.bridge(tables, buf, meta, macs, sap, m.sap, &mut ingress, clock) {
            self.flood(tables, batch, index, sap, m.sap, &mut ingress, ctx);
        }
    }

    /// The verdict on a frame that has no SAP: sent by this host, malformed, or matching no
    /// SAP. Out of line and cold: the last step's code for the frames that have one, run for
    /// every packet, stays smaller.
    #[cold]
    #[inline(never)]
    fn without_sap(&mut self, step: Step, meta: &mut PacketMeta) {
        let counters = self.ports.get_mut(usize::from(meta.port));
        meta.verdict = match step {
            Step::Malformed => {
                if let Some(c) = counters {
                    c.malformed += 1;
                }
                Verdict::Drop(DropReason::MalformedL2)
            }
            Step::NoSap => {
                if let Some(c) = counters {
                    c.no_sap += 1;
                }
                Verdict::Drop(DropReason::NoSap)
            }
            // `Outgoing`, the only other step the last step passes here.
            _ => Verdict::Ignore,
        };
    }

    /// A frame of a cross-connect SAP (see [`IngressRecord`]), from its ingress record alone
    /// unless its peer has egress checks: the MTU, the IPv4 filter and policer, the send out
    /// of the peer, counted in the record. The verdict is the same as through the entry.
    #[inline(always)]
    fn cross_connect(
        &mut self,
        tables: &ServiceTables,
        buf: &mut PacketBuf,
        meta: &mut PacketMeta,
        m: sap::SapMatch,
        early: Option<&EarlyKey>,
        now_ns: u64,
    ) -> Verdict {
        let slot = m.sap;
        let Some(record) = self.ingress.get_mut(slot as usize) else {
            return Verdict::Drop(DropReason::NoSap);
        };
        // Copied before its counters are written, not after: the copy's wide loads would
        // span those two stores and wait for them (a store-forwarding stall). The copy's
        // counters are not read.
        let copy = *record;
        record.rx_packets += 1;
        record.rx_octets += buf.len() as u64;
        let record = copy;
        let service = record.service;
        // Not the early key: the filter reads it in place from `early`. Copied here it is
        // copied again in `ingress_checks`, and that second copy's load spans two stores of
        // the first (a store-forwarding stall: 5 % of the `acl` samples).
        let mut ingress = Ingress {
            strip: usize::from(m.strip),
            priority: m.priority,
            key: None,
        };
        let metering = if record.ipv4_filter != NO_SLOT || record.policer != NO_SLOT {
            Metering::CrossConnect(&record)
        } else {
            Metering::None
        };
        if let Err(reason) = self.ingress_checks(
            slot,
            service,
            record.service_mtu,
            metering,
            buf,
            meta,
            &mut ingress,
            early,
            now_ns,
        ) {
            return Verdict::Drop(reason);
        }
        // The peer's slot is read from the snapshot only on the cold paths (the record is
        // a cross-connect's only while the entry names a peer SAP).
        let peer = || match tables.sap(slot).map(|s| s.peer) {
            Some(Peer::Sap(peer)) => Some(peer),
            _ => None,
        };
        let egress = record.peer_egress;
        if egress.checked {
            let Some(peer) = peer() else {
                return Verdict::Drop(DropReason::ServiceDown);
            };
            // The peer's egress filters classify with the key step E made, when it did.
            if ingress.key.is_none() {
                ingress.key = early.map(|e| e.key);
            }
            if let Err(verdict) =
                self.egress_checks(tables, buf, &mut ingress, peer, service, now_ns)
            {
                return verdict;
            }
        }
        match egress.send(buf, &ingress) {
            Ok(len) => {
                if let Some(r) = self.ingress.get_mut(slot as usize) {
                    r.peer_tx_packets += 1;
                    r.peer_tx_octets += len as u64;
                }
                Verdict::Transmit(egress.port)
            }
            Err(reason) => {
                if let Some(peer) = peer() {
                    self.count_drop(peer, service, reason);
                }
                Verdict::Drop(reason)
            }
        }
    }

    /// A frame on a capture SAP: its ingress MAC filter, the data trigger throttle, then the
    /// punt queue.
    #[allow(clippy::too_many_arguments)]
    fn capture(
        &mut self,
        tables: &ServiceTables,
        sap: &SapEntry,
        slot: u32,
        tags: sap::FrameTags,
        buf: &PacketBuf,
        ingress: &mut Ingress,
        now_ns: u64,
    ) -> Verdict {
        if let Err(reason) =
            self.apply_direction(&sap.ingress, buf.as_slice(), ingress, None, now_ns)
        {
            self.count_drop(slot, sap.service, reason);
            return Verdict::Drop(reason);
        }
        let outer_vid = tags.outer.map_or(0, |t| t & 0xfff);
        let inner_vid = tags.inner.map_or(0, |t| t & 0xfff);
        let key = ThrottleKey::new(slot, outer_vid, inner_vid);
        let admission = key.map_or(Admission::Overflow, |key| self.throttle.admit(key, now_ns));
        if admission == Admission::Throttled {
            if let Some(s) = self.saps.get_mut(slot as usize) {
                s.throttled += 1;
                s.throttled_octets += buf.len() as u64;
            }
            self.count_drop(slot, sap.service, DropReason::TriggerInProgress);
            return Verdict::Drop(DropReason::TriggerInProgress);
        }
        let throttle = key.filter(|_| admission == Admission::First);
        if self.punts.len() >= self.config.punt_queue {
            // Not punted, so not in progress: the next frame of the key may try again.
            if let Some(key) = throttle {
                self.throttle.release(key);
            }
            self.count_drop(slot, sap.service, DropReason::PuntQueueFull);
            return Verdict::Drop(DropReason::PuntQueueFull);
        }
        let bytes = buf.as_slice();
        let mut frame = self.spare_frames.pop().unwrap_or_default();
        frame.clear();
        frame.extend_from_slice(bytes.get(..PUNT_SNAPLEN).unwrap_or(bytes));
        let service = tables.service(sap.service).map_or(0, |s| s.id);
        self.punts.push_back(Punted {
            sap: sap.id,
            service,
            outer_vid,
            inner_vid,
            now_ns,
            len: bytes.len(),
            frame,
            throttle,
        });
        if let Some(s) = self.saps.get_mut(slot as usize) {
            s.punted += 1;
            s.punted_octets += bytes.len() as u64;
        }
        Verdict::Punt(slot)
    }

    /// VPLS: learns the source and forwards to the known destination. `macs` are the MAC
    /// table keys of the frame's destination and source. False when the frame is to be
    /// flooded (broadcast, multicast, unknown unicast, or no table yet).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn bridge(
        &mut self,
        tables: &ServiceTables,
        buf: &mut PacketBuf,
        meta: &mut PacketMeta,
        macs: Option<[fdb::Key; 2]>,
        sap: &SapEntry,
        slot: u32,
        ingress: &mut Ingress,
        clock: Clock<'_>,
    ) -> bool {
        let service = sap.service;
        let Some([dst, src]) = macs else {
            return false;
        };
        let src_unicast = src.mac() != 0 && src.mac() & (1 << 40) == 0;
        if sap.learn && src_unicast {
            if let Err(reason) = self.learn(sap, slot, src, clock.now_s) {
                self.count_drop(slot, service, reason);
                meta.verdict = Verdict::Drop(reason);
                return true;
            }
        }
        if dst.mac() & (1 << 40) != 0 {
            return false;
        }
        let known = self
            .fdb
            .as_ref()
            .and_then(|fdb| fdb.lookup_key(dst))
            .map(|(_, e)| e)
            .filter(|e| self.entry_valid(e));
        let Some(entry) = known else {
            return false;
        };
        // The target's entry is read only when split-horizon groups are in use.
        let same_group = sap.shg != 0
            && tables
                .sap(entry.sap)
                .is_some_and(|target| target.shg == sap.shg);
        meta.verdict = if entry.sap == slot || same_group {
            self.count_drop(slot, service, DropReason::SplitHorizon);
            Verdict::Drop(DropReason::SplitHorizon)
        } else {
            let out = Outgoing {
                tables,
                buf,
                ingress,
                service,
                now_ns: clock.ctx.now_ns,
            };
            self.egress_sap_inline(out, entry.sap)
        };
        true
    }

    /// VPLS: floods a frame to the other members, by replication.
    #[allow(clippy::too_many_arguments)]
    fn flood(
        &mut self,
        tables: &ServiceTables,
        batch: &mut Batch,
        index: usize,
        sap: &SapEntry,
        slot: u32,
        ingress: &mut Ingress,
        ctx: &Context<'_>,
    ) {
        let service = sap.service;
        let Some((_, meta)) = batch.get_mut(index) else {
            return;
        };
        let Some(ServiceKind::Vpls(vpls)) = tables.service(service).map(|s| &s.kind) else {
            return;
        };
        if let Some(limit) = &sap.bum_limit {
            let state = &mut self.saps[slot as usize];
            let bucket = state
                .bum
                .get_or_insert_with(|| RateLimitState::full(limit, ctx.now_ns));
            if !bucket.admit(limit, ctx.now_ns) {
                self.count_drop(slot, service, DropReason::BumLimit);
                meta.verdict = Verdict::Drop(DropReason::BumLimit);
                return;
            }
        }
        let mut targets = std::mem::take(&mut self.scratch);
        targets.clear();
        targets.extend(vpls.members.iter().copied().filter(|&member| {
            member != slot
                && tables
                    .sap(member)
                    .is_some_and(|m| !m.down && (sap.shg == 0 || m.shg != sap.shg))
        }));
        let Some((&last, copies)) = targets.split_last() else {
            self.scratch = targets;
            self.count_drop(slot, service, DropReason::SplitHorizon);
            meta.verdict = Verdict::Drop(DropReason::SplitHorizon);
            return;
        };
        for &member in copies {
            let Some(copy) = batch.replicate(index) else {
                self.count_drop(member, service, DropReason::ReplicaLimit);
                continue;
            };
            if let Some(s) = self.services.get_mut(service as usize) {
                s.flooded += 1;
            }
            let mut copy_ingress = Ingress {
                strip: ingress.strip,
                priority: ingress.priority,
                key: ingress.key,
            };
            if let Some((copy_buf, copy_meta)) = batch.get_mut(copy) {
                copy_meta.verdict = self.egress_sap(
                    tables,
                    copy_buf,
                    &mut copy_ingress,
                    member,
                    service,
                    ctx.now_ns,
                );
                ingress.key = copy_ingress.key;
            }
        }
        if let Some((buf, meta)) = batch.get_mut(index) {
            meta.verdict = self.egress_sap(tables, buf, ingress, last, service, ctx.now_ns);
        }
        self.scratch = targets;
    }

    /// A frame on a non-access port: Ethernet over GRE for one of the Epipes' tunnels is
    /// decapsulated and sent out of the Epipe's SAP; anything else is left alone.
    #[inline(always)]
    fn gre_frame(
        &mut self,
        tables: &ServiceTables,
        batch: &mut Batch,
        index: usize,
        ctx: &Context<'_>,
    ) {
        let Some((buf, meta)) = batch.get_mut(index) else {
            return;
        };
        let frame = buf.as_slice();
        let be16 = |at: usize| {
            frame
                .get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        let mut l3 = ethernet::HEADER_LEN;
        let mut ethertype = be16(12);
        if ethertype == Some(EtherType::VLAN) {
            ethertype = be16(16);
            l3 += vlan::HEADER_LEN;
        }
        let ip = frame.get(l3..).unwrap_or(&[]);
        let (local, remote, gre_at) = match ethertype {
            Some(EtherType::IPV4) => {
                let Ok(packet) = Ipv4Packet::new_checked(ip) else {
                    return;
                };
                if packet.protocol() != ip_protocol::GRE
                    || packet.frag_offset() != 0
                    || packet.more_frags()
                {
                    return;
                }
                (
                    std::net::IpAddr::V4(packet.dst_addr()),
                    std::net::IpAddr::V4(packet.src_addr()),
                    packet.header_len(),
                )
            }
            Some(EtherType::IPV6) => {
                let Ok(packet) = Ipv6Packet::new_checked(ip) else {
                    return;
                };
                match packet.transport() {
                    Ok(t) if t.protocol == ip_protocol::GRE && t.has_transport_header => (
                        std::net::IpAddr::V6(packet.dst_addr()),
                        std::net::IpAddr::V6(packet.src_addr()),
                        t.offset,
                    ),
                    _ => return,
                }
            }
            _ => return,
        };
        let Ok(gre) = GrePacket::new_checked(ip.get(gre_at..).unwrap_or(&[])) else {
            return;
        };
        if gre.protocol() != TRANSPARENT_ETHERNET {
            return;
        }
        let Some(&service) = tables
            .tunnels
            .get(&TunnelKey::new(local, remote, gre.key()))
        else {
            return;
        };
        let Some(entry) = tables.service(service) else {
            return;
        };
        let ServiceKind::Epipe { saps, .. } = &entry.kind else {
            return;
        };
        let outer = l3 + gre_at + gre.header_len();
        if let Some(s) = self.services.get_mut(service as usize) {
            s.tunnel_rx_packets += 1;
            s.tunnel_rx_octets += buf.len().saturating_sub(outer) as u64;
        }
        if ethertype == Some(EtherType::IPV4)
            && !Ipv4Packet::new_checked(ip).is_ok_and(|p| p.verify_checksum())
        {
            meta.verdict = Verdict::Drop(DropReason::MalformedIp);
            return;
        }
        if entry.down {
            meta.verdict = Verdict::Drop(DropReason::ServiceDown);
            return;
        }
        let Some(sap) = saps.iter().flatten().next().copied() else {
            meta.verdict = Verdict::Drop(DropReason::ServiceDown);
            return;
        };
        if !buf.pull_front(outer) || buf.len() < ethernet::HEADER_LEN {
            meta.verdict = Verdict::Drop(DropReason::MalformedL2);
            return;
        }
        let mut ingress = Ingress {
            strip: 0,
            priority: 0,
            key: None,
        };
        meta.verdict = self.egress_sap(tables, buf, &mut ingress, sap, service, ctx.now_ns);
    }

    /// Ages learned MACs and removes stale ones, a slice of the table per call.
    fn sweep(&mut self, now_ns: u64) {
        let elapsed = now_ns.saturating_sub(self.last_sweep_ns);
        if elapsed == 0 {
            return;
        }
        self.last_sweep_ns = now_ns;
        let (Some(fdb), Some(tables)) = (self.fdb.as_mut(), self.tables.as_ref()) else {
            return;
        };
        let slots = fdb.slot_count();
        let budget = (u128::from(elapsed) * slots as u128 / u128::from(SWEEP_PERIOD_NS))
            .clamp(1, slots as u128) as usize;
        let now_s = (now_ns / NS_PER_SEC) as u32;
        let saps = &mut self.saps;
        let services = &mut self.services;
        fdb.sweep(budget, |e| {
            if e.is_static() {
                return false;
            }
            let Some(state) = saps.get_mut(e.sap as usize) else {
                return true;
            };
            if state.generation == 0 || state.fdb_epoch != e.epoch {
                return true;
            }
            let Some(ServiceKind::Vpls(vpls)) = tables.service(e.bridge).map(|s| &s.kind) else {
                return true;
            };
            let ages = tables.sap(e.sap).is_some_and(|sap| sap.age);
            if !ages || now_s.wrapping_sub(e.seen) < vpls.spec.age_secs {
                return false;
            }
            state.mac_count = state.mac_count.saturating_sub(1);
            if let Some(s) = services.get_mut(e.bridge as usize) {
                s.mac_count = s.mac_count.saturating_sub(1);
                s.aged += 1;
            }
            true
        });
    }
}

impl Stage for ServiceStage {
    fn name(&self) -> &'static str {
        "service"
    }

    fn process(&mut self, batch: &mut Batch, ctx: &Context<'_>) {
        let Some(tables) = self.tables.clone() else {
            return;
        };
        // A software pipeline: while packet i is handled, the packets after it are at earlier
        // steps, each step prefetching what the next one reads (tags → SAP lookup → SAP entry →
        // MAC slots, peer, policer, filter state → rule set handles, hit counters → entries).
        // The cache misses of a batch overlap instead of following one another, and only a few
        // dozen packets' lines are in flight at once. Only the received packets go through it: flood copies appended
        // meanwhile are finished.
        let pcc = self.pcc.clone();
        let mut pcc = pcc.as_ref().map(Shared::lock);
        let tables: &ServiceTables = &tables;
        let clock = Clock {
            ctx,
            now_s: (ctx.now_ns / NS_PER_SEC) as u32,
        };
        // The pipeline is compiled twice, with and without filters' steps, and chosen once a
        // batch: its loop then tests nothing per packet for them (the tests, the distance
        // loaded, `early`'s `Option` for a batch without filters: ~10 instructions a packet,
        // round 26).
        if self.filters_in_use {
            self.pipeline::<true>(tables, batch, pcc.as_deref_mut(), clock);
        } else {
            self.pipeline::<false>(tables, batch, pcc.as_deref_mut(), clock);
        }
    }

    fn tick(&mut self, now_ns: u64) {
        self.sweep(now_ns);
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl ServiceStage {
    /// [`Stage::process`]'s software pipeline over the received packets of `batch`;
    /// `FILTERED`: some SAP has ingress filters (`filters_in_use`), and steps D and E run.
    /// Its steps are `#[inline(always)]`: with two callers each, LLVM left them out of line,
    /// which cost the Epipe path ~50 instructions a packet (round 26).
    #[inline(always)]
    fn pipeline<const FILTERED: bool>(
        &mut self,
        tables: &ServiceTables,
        batch: &mut Batch,
        mut pcc: Option<&mut PccStage>,
        clock: Clock<'_>,
    ) {
        let ctx = clock.ctx;
        let received = batch.len();
        // Packet `p` has the record `ring[p % IN_FLIGHT]`. Iteration `i` moves packet
        // `i - k·d` to step k; in the first and last iterations some of those are not packets
        // of the batch (below 0 they wrap round), and their records say `Skip`: the records
        // start so, and step A writes so past the last packet. Every step but A then runs
        // without a check, and none reads the batch for a `Skip` record (past `received` it
        // holds the flood copies). Every `MAC_GROUP` iterations, the MAC-table prefetches of
        // the packets whose step C ran in them are issued together.
        let mut ring = [Work::SKIP; IN_FLIGHT];
        // Beside it, what step E learned of a filtered packet. Step E writes the slot of every
        // packet while some SAP has filters (`None` for the others), and none is written
        // otherwise: no packet finds an earlier one's.
        let mut early: [Option<EarlyKey>; IN_FLIGHT] = [None; IN_FLIGHT];
        let d = if FILTERED {
            FILTERED_PREFETCH_DISTANCE
        } else {
            PREFETCH_DISTANCE
        };
        let slot = |i: usize, k: usize| i.wrapping_sub(k * d);
        for i in 0..received + LATER_STEPS * d {
            if i < received {
                self.read_step(tables, batch, i, &mut ring[i % IN_FLIGHT]);
            } else {
                ring[i % IN_FLIGHT] = Work::SKIP;
            }
            let p = slot(i, 1);
            self.lookup_step(tables, &mut ring[p % IN_FLIGHT]);
            let p = slot(i, 2);
            self.dependents_step(tables, batch, p, &mut ring[p % IN_FLIGHT]);
            let next = p.wrapping_add(1);
            if next.is_multiple_of(MAC_GROUP) {
                let group = (0..MAC_GROUP).map(|k| next.wrapping_sub(MAC_GROUP - k));
                self.prefetch_macs(group.map(|q| &ring[q % IN_FLIGHT]));
            }
            // Step D: the entries step C left to it (only when they are out of cache), or
            // the filters' rule sets.
            if !self.warm || FILTERED {
                let p = slot(i, 3);
                let work = &mut ring[p % IN_FLIGHT];
                if let Step::EntryPending(m, tags) = work.step {
                    work.step = Step::Sap(m, tags);
                    self.entry_step(tables.sap(m.sap), batch, p, work);
                } else if FILTERED {
                    self.rule_set_step(work);
                }
            }
            if FILTERED {
                let p = slot(i, 4);
                self.entries_step(batch, p, &ring[p % IN_FLIGHT], &mut early[p % IN_FLIGHT]);
            }
            let p = slot(i, 5);
            let work = &ring[p % IN_FLIGHT];
            let early = if FILTERED {
                early[p % IN_FLIGHT].as_ref()
            } else {
                None
            };
            match work.step {
                Step::Skip => {}
                Step::Gre => self.gre_frame(tables, batch, p, ctx),
                _ => self.access_frame(tables, batch, p, work, early, pcc.as_deref_mut(), clock),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A service pipeline on three ports, and a builder with ports 1 and 2 dot1q.
    fn dot1q_pipeline() -> (
        crate::pipeline::Pipeline,
        crate::service::ServiceTablesBuilder,
    ) {
        use crate::pipeline::{IpHandoff, LinkKind, Pipeline, Port};
        let ports = (0..3)
            .map(|i| Port {
                name: format!("p{i}"),
                link: LinkKind::Ethernet,
                mac: MacAddr([0x02, 0xee, 0, 0, 0, i]),
                ip_handoff: IpHandoff::Kernel,
            })
            .collect();
        let p = Pipeline::new(
            ports,
            crate::stages::service_stages(ServiceStage::default()),
        );
        let mut b = crate::service::ServiceTablesBuilder::new();
        for port in [1, 2] {
            b.set_port(crate::service::spec::PortSpec::new(
                port,
                crate::sap::PortEncap::Dot1q,
            ))
            .unwrap();
        }
        (p, b)
    }

    /// A filter entry's match: the /24 of 10.0.`net`.0 and, when `with_port`, UDP to port
    /// 1000 + `port` (the proptests' packets go to 10.0.0–4.7, ports 1000–1006).
    fn v4_net_matcher(net: u8, port: u16, with_port: bool) -> crate::acl::Match {
        use crate::acl::{v4, IpMatch, Match, PortRange};
        Match::Ip(IpMatch {
            dst: Some(v4(10, 0, net, 0, 24)),
            protocol: with_port.then_some(17),
            dst_port: with_port.then_some(PortRange::single(1000 + port)),
            ..IpMatch::default()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// A batch of packets through two Epipes with the same 12-entry IPv4 filter (two
        /// summary groups) — a cross-connect, metered from its ingress record, and one with a
        /// MAC filter too, metered through its entry — gets the verdicts and hit counts the
        /// reference matcher gives each packet: the key step E keeps and the candidate it
        /// starts the scan at classify as `classify` would, whatever entry the packet hits.
        #[test]
        fn filtered_packets_in_flight_classify_as_the_reference(
            entries in proptest::collection::vec((0u8..4, 0u16..6, any::<bool>(), any::<bool>()), 12),
            default_drop in any::<bool>(),
            // Up to past twice the ring's 64 records: later packets reuse earlier ones' slots
            // (and step E writes a key over the slot's earlier key).
            packets in proptest::collection::vec((0u8..5, 0u16..7, any::<bool>()), 1..160),
        ) {
            use crate::acl::Match;
            use crate::pipeline::{Batch, PacketMeta};
            use crate::service::spec::*;
            use std::net::Ipv4Addr;

            const Q: u16 = 0x8100;
            let (mut p, mut b) = dot1q_pipeline();
            let matchers: Vec<Match> = entries
                .iter()
                .map(|&(net, port, with_port, _)| v4_net_matcher(net, port, with_port))
                .collect();
            let spec = |id: u32| FilterSpec {
                id,
                kind: FilterKind::Ip,
                default_action: if default_drop { Disposition::Drop } else { Disposition::Forward },
                entries: matchers
                    .iter()
                    .zip(&entries)
                    .enumerate()
                    .map(|(i, (m, &(_, _, _, drop)))| FilterEntrySpec {
                        id: 10 * (i as u32 + 1),
                        matcher: *m,
                        action: if drop { FilterAction::Drop } else { FilterAction::Forward },
                    })
                    .collect(),
            };
            b.set_filter(spec(1)).unwrap();
            b.set_filter(spec(2)).unwrap();
            b.set_filter(FilterSpec {
                id: 1,
                kind: FilterKind::Mac,
                default_action: Disposition::Forward,
                entries: Vec::new(),
            })
            .unwrap();
            for (service, vid, mac_filter) in [(1u32, 10u16, false), (2, 11, true)] {
                b.set_service(ServiceSpec::Epipe(EpipeSpec::new(service))).unwrap();
                let a = SapId { port: 1, encap: vid.to_string().parse().unwrap() };
                let z = SapId { port: 2, encap: (vid + 10).to_string().parse().unwrap() };
                let mut spec_a = SapSpec::new(a, service);
                spec_a.ingress.ip_filter = Some(service);
                spec_a.ingress.mac_filter = mac_filter.then_some(1);
                b.set_sap(spec_a).unwrap();
                b.set_sap(SapSpec::new(z, service)).unwrap();
            }
            p.stage_mut::<ServiceStage>().unwrap().install(b.build(), 0);
            let frames: Vec<Vec<u8>> = packets
                .iter()
                .map(|&(net, port, second)| {
                    crate::build::tagged(
                        MacAddr([2, 0, 0, 0, 0, 1]),
                        MacAddr([2, 0, 0, 0, 0, 2]),
                        &[(Q, if second { 11 } else { 10 })],
                        EtherType::IPV4,
                        &crate::build::ipv4_udp(
                            Ipv4Addr::new(192, 0, 2, 1),
                            Ipv4Addr::new(10, 0, net, 7),
                            4000,
                            1000 + port,
                            &[0xab; 18],
                        ),
                    )
                })
                .collect();
            let mut batch = Batch::new(frames.len());
            for bytes in &frames {
                prop_assert!(batch.push(bytes, PacketMeta::new(1, crate::pipeline::pkt_type::OTHERHOST, 0)));
            }
            p.run(&mut batch, 0);
            // The reference: the first entry whose match the packet's key meets.
            let mut hits = [[0u64; 13]; 2];
            for (((_, meta), bytes), &(_, _, second)) in batch.iter().zip(&frames).zip(&packets) {
                let key = crate::acl::reference_key(bytes, EtherType::IPV4, 18, 0, 0);
                let hit = matchers.iter().position(|m| m.matches(&key));
                let drop = hit.map_or(default_drop, |i| entries[i].3);
                hits[usize::from(second)][hit.unwrap_or(12)] += 1;
                let expected = if drop { Verdict::Drop(DropReason::Filter) } else { Verdict::Transmit(2) };
                prop_assert_eq!(meta.verdict, expected);
            }
            let stage = p.stage_mut::<ServiceStage>().unwrap();
            for (filter, counted) in [(1u32, hits[0]), (2, hits[1])] {
                let mut seen = [0u64; 13];
                for entry in stage.filter_counters(FilterKind::Ip, filter).unwrap().entries {
                    let index = entry.entry.map_or(12, |id| id as usize / 10 - 1);
                    seen[index] = entry.packets;
                }
                prop_assert_eq!(seen, counted, "filter {}", filter);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// A SAP with a MAC, an IPv4 and an IPv6 filter: the stage's copies of their sets —
        /// an IPv4 set of at most eight entries split (its IPv4 part in the filter's state,
        /// the rest in the stage's block), a larger one whole, the IPv6 and MAC sets split
        /// with no IPv4 entry — with rate-limit actions beside forward and drop, give every
        /// packet the verdict and every entry the hit count the reference matcher gives.
        #[test]
        fn split_and_whole_filter_sets_classify_as_the_reference(
            v4_entries in proptest::collection::vec((0u8..4, 0u16..4, any::<bool>(), 0u8..3), 0..12),
            v6_entries in proptest::collection::vec((0u8..4, 0u8..3), 0..12),
            mac_entries in proptest::collection::vec((0u8..3, 0u8..3), 0..4),
            default_drop in any::<bool>(),
            packets in proptest::collection::vec((any::<bool>(), 0u8..5, 0u16..5), 1..100),
        ) {
            use crate::acl::{reference_key, v6, IpMatch, MacMask, MacMatch, Match};
            use crate::pipeline::{Batch, PacketMeta};
            use crate::policer::{ColourMode, Meter, PolicerConfig, StatMode};
            use crate::service::spec::*;
            use std::net::{Ipv4Addr, Ipv6Addr};

            const Q: u16 = 0x8100;
            const DST: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
            // A /48 of 2001:db8::, and a host in it.
            let v6_net = |net: u8, host: u16| Ipv6Addr::new(0x2001, 0xdb8, u16::from(net), 0, 0, 0, 0, host);
            let (mut p, mut b) = dot1q_pipeline();
            // Far more than the packets' bytes in either bucket: a rate-limited packet is green.
            b.set_policer(PolicerSpec {
                id: 1,
                config: PolicerConfig {
                    meter: Meter::TrTcm {
                        pir_kbps: 1_000_000,
                        mbs: Some(1 << 20),
                        cir_kbps: 1_000_000,
                        cbs: Some(1 << 20),
                    },
                    colour_mode: ColourMode::Blind,
                    packet_byte_offset: 0,
                    stat_mode: StatMode::OfferedTotalCir,
                },
            })
            .unwrap();
            let action = |kind: u8| match kind {
                0 => FilterAction::Forward,
                1 => FilterAction::Drop,
                _ => FilterAction::RateLimit { policer: 1 },
            };
            // IPv4 entries as `v4_net_matcher`'s; IPv6: a /48; MAC: the frames' destination,
            // another one, or the IPv6 EtherType.
            let v4_matchers: Vec<Match> = v4_entries
                .iter()
                .map(|&(net, port, with_port, _)| v4_net_matcher(net, port, with_port))
                .collect();
            let v6_matchers: Vec<Match> = v6_entries
                .iter()
                .map(|&(net, _)| {
                    Match::Ip(IpMatch { dst: Some(v6(v6_net(net, 0), 48)), ..IpMatch::default() })
                })
                .collect();
            let mac_matchers: Vec<Match> = mac_entries
                .iter()
                .map(|&(what, _)| {
                    Match::Mac(match what {
                        0 => MacMatch { dst: Some(MacMask::exact(DST)), ..MacMatch::default() },
                        1 => MacMatch {
                            dst: Some(MacMask::exact(MacAddr([2, 0, 0, 0, 0, 9]))),
                            ..MacMatch::default()
                        },
                        _ => MacMatch { ethertype: Some(0x86dd), ..MacMatch::default() },
                    })
                })
                .collect();
            let v4_actions: Vec<u8> = v4_entries.iter().map(|e| e.3).collect();
            let v6_actions: Vec<u8> = v6_entries.iter().map(|e| e.1).collect();
            let mac_actions: Vec<u8> = mac_entries.iter().map(|e| e.1).collect();
            let filters = [
                (FilterKind::Mac, &mac_matchers, &mac_actions),
                (FilterKind::Ip, &v4_matchers, &v4_actions),
                (FilterKind::Ipv6, &v6_matchers, &v6_actions),
            ];
            for (kind, matchers, actions) in filters {
                b.set_filter(FilterSpec {
                    id: 1,
                    kind,
                    default_action: if default_drop { Disposition::Drop } else { Disposition::Forward },
                    entries: matchers
                        .iter()
                        .zip(actions.iter())
                        .enumerate()
                        .map(|(i, (m, &kind))| FilterEntrySpec {
                            id: 10 * (i as u32 + 1),
                            matcher: *m,
                            action: action(kind),
                        })
                        .collect(),
                })
                .unwrap();
            }
            b.set_service(ServiceSpec::Epipe(EpipeSpec::new(1))).unwrap();
            let a = SapId { port: 1, encap: "10".parse().unwrap() };
            let z = SapId { port: 2, encap: "20".parse().unwrap() };
            let mut spec_a = SapSpec::new(a, 1);
            spec_a.ingress.mac_filter = Some(1);
            spec_a.ingress.ip_filter = Some(1);
            spec_a.ingress.ipv6_filter = Some(1);
            b.set_sap(spec_a).unwrap();
            b.set_sap(SapSpec::new(z, 1)).unwrap();
            p.stage_mut::<ServiceStage>().unwrap().install(b.build(), 0);
            let frames: Vec<(Vec<u8>, u16)> = packets
                .iter()
                .map(|&(ipv6, net, port)| {
                    let (ethertype, payload) = if ipv6 {
                        (EtherType::IPV6, crate::build::ipv6_udp(
                            Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1),
                            v6_net(net, 7),
                            4000,
                            1000 + port,
                            &[0xab; 18],
                        ))
                    } else {
                        (EtherType::IPV4, crate::build::ipv4_udp(
                            Ipv4Addr::new(192, 0, 2, 1),
                            Ipv4Addr::new(10, 0, net, 7),
                            4000,
                            1000 + port,
                            &[0xab; 18],
                        ))
                    };
                    let frame = crate::build::tagged(
                        MacAddr([2, 0, 0, 0, 0, 1]),
                        DST,
                        &[(Q, 10)],
                        ethertype,
                        &payload,
                    );
                    (frame, ethertype)
                })
                .collect();
            let mut batch = Batch::new(frames.len());
            for (bytes, _) in &frames {
                prop_assert!(batch.push(bytes, PacketMeta::new(1, crate::pipeline::pkt_type::OTHERHOST, 0)));
            }
            p.run(&mut batch, 0);
            // The reference: the MAC filter, then the packet's family's; the first entry
            // whose match the key meets, else the default (index 12); rate-limit forwards.
            let mut hits = [[0u64; 13]; 3];
            for ((_, meta), (bytes, ethertype)) in batch.iter().zip(&frames) {
                let key = reference_key(bytes, *ethertype, 18, 10, 0);
                let mut dropped = false;
                let ip = if *ethertype == EtherType::IPV6 { 2 } else { 1 };
                for (which, (_, matchers, actions)) in filters.iter().enumerate() {
                    if dropped || (which != 0 && which != ip) {
                        continue;
                    }
                    let hit = matchers.iter().position(|m| m.matches(&key));
                    hits[which][hit.unwrap_or(12)] += 1;
                    dropped = hit.map_or(default_drop, |i| actions[i] == 1);
                }
                let expected = if dropped { Verdict::Drop(DropReason::Filter) } else { Verdict::Transmit(2) };
                prop_assert_eq!(meta.verdict, expected);
            }
            let stage = p.stage_mut::<ServiceStage>().unwrap();
            for (which, (kind, _, _)) in filters.iter().enumerate() {
                let mut seen = [0u64; 13];
                for entry in stage.filter_counters(*kind, 1).unwrap().entries {
                    let index = entry.entry.map_or(12, |id| id as usize / 10 - 1);
                    seen[index] = entry.packets;
                }
                prop_assert_eq!(seen, hits[which], "{:?} filter", kind);
            }
        }
    }

    proptest! {
        /// A filter's hit counters, inline for the first entries and in a block for the rest,
        /// count each entry's hits and follow entry ids across rule changes, as a map from
        /// entry id to counters does (new entries start at zero, removed ones are dropped).
        #[test]
        fn filter_hits_follow_entry_ids(
            ops in proptest::collection::vec(
                (any::<bool>(), proptest::collection::vec(0u32..24, 0..20), any::<u16>()),
                1..60,
            ),
        ) {
            use crate::acl::RuleAction;
            use std::collections::HashMap;
            let mut state = FilterState::default();
            let mut side = FilterSide::default();
            let mut ids: Vec<u32> = Vec::new();
            let mut reference: HashMap<u32, [u64; 2]> = HashMap::new();
            let mut default_hits = [0u64; 2];
            for (change, new_ids, pick) in ops {
                if change {
                    let mut new_ids = new_ids;
                    let mut seen = std::collections::HashSet::new();
                    new_ids.retain(|id| seen.insert(*id));
                    let entry_ids: Arc<[u32]> = new_ids.clone().into();
                    state.take_rules(
                        &mut side,
                        &Arc::new(RuleSet::empty(RuleAction::DROP)),
                        &entry_ids,
                    );
                    reference = new_ids
                        .iter()
                        .map(|id| (*id, reference.get(id).copied().unwrap_or_default()))
                        .collect();
                    ids = new_ids;
                } else {
                    let len = u64::from(pick % 1500);
                    let rule = (!ids.is_empty() && pick % 5 != 0)
                        .then(|| usize::from(pick) % ids.len());
                    let counter = state.hit_mut(Some(&mut side), rule.map(|r| r as u16));
                    prop_assert!(counter.is_some());
                    if let Some(c) = counter {
                        c[0] += 1;
                        c[1] += len;
                    }
                    let expected = match rule {
                        Some(r) => reference.entry(ids[r]).or_default(),
                        None => &mut default_hits,
                    };
                    expected[0] += 1;
                    expected[1] += len;
                }
                for (index, id) in ids.iter().enumerate() {
                    prop_assert_eq!(state.hits_of(&side, index), reference[id], "entry {}", id);
                }
                prop_assert_eq!(state.default_hits, default_hits);
            }
        }

        /// Over random transactions on Epipes (SAPs added, removed, moved to other tags,
        /// shut down; IPv4 and MAC filters and policers set, shared or solo, and changed;
        /// counters cleared) and frames in both directions: every ingress record equals the
        /// one a fresh stage builds from the same snapshot, and the counters read through the
        /// public API equal those of a reference that counts each frame on its SAPs by its
        /// verdict.
        #[test]
        fn ingress_records_follow_transactions_and_counters_stay_per_sap(
            ops in proptest::collection::vec((0u8..11, 0u32..4, any::<bool>(), any::<u8>()), 1..40),
        ) {
            use crate::acl::{IpMatch, Match, PortRange};
            use crate::pipeline::{Batch, PacketMeta, Pipeline};
            use crate::policer::{ColourMode, Meter, PolicerConfig, StatMode};
            use crate::service::spec::*;
            use crate::service::ServiceTablesBuilder;
            use std::collections::HashMap;
            use std::net::Ipv4Addr;

            const Q: u16 = 0x8100;
            let (mut p, mut b) = dot1q_pipeline();
            let filter = |id: u32, kind: FilterKind, drop_port_80: bool, default: Disposition| {
                let port = PortRange { first: 80, last: 80 };
                let entries = match kind {
                    FilterKind::Ip => vec![FilterEntrySpec {
                        id: 10,
                        matcher: Match::Ip(IpMatch {
                            protocol: Some(17),
                            dst_port: Some(port),
                            ..IpMatch::default()
                        }),
                        action: if drop_port_80 { FilterAction::Drop } else { FilterAction::Forward },
                    }],
                    _ => Vec::new(),
                };
                FilterSpec { id, kind, default_action: default, entries }
            };
            for id in 1..=3 {
                b.set_filter(filter(id, FilterKind::Ip, false, Disposition::Forward)).unwrap();
            }
            b.set_filter(filter(1, FilterKind::Mac, false, Disposition::Forward)).unwrap();
            for id in 1..=2u32 {
                b.set_policer(PolicerSpec {
                    id,
                    config: PolicerConfig {
                        meter: Meter::TrTcm {
                            pir_kbps: 8 * u64::from(id),
                            mbs: Some(300),
                            cir_kbps: 0,
                            cbs: Some(0),
                        },
                        colour_mode: ColourMode::Blind,
                        packet_byte_offset: 0,
                        stat_mode: StatMode::OfferedTotalCir,
                    },
                })
                .unwrap();
            }
            // SAPs removed since the last install: their counters go at the next one.
            let mut removed: Vec<SapId> = Vec::new();
            let mut reference: HashMap<SapId, [u64; 4]> = HashMap::new();
            let install = |p: &mut Pipeline,
                           b: &mut ServiceTablesBuilder,
                           removed: &mut Vec<SapId>,
                           reference: &mut HashMap<SapId, [u64; 4]>| {
                for id in removed.drain(..) {
                    reference.remove(&id);
                }
                let tables = b.build();
                let stage = p.stage_mut::<ServiceStage>().unwrap();
                stage.install(tables.clone(), 0);
                // The records against a fresh stage's, built from the whole snapshot.
                let mut fresh = ServiceStage::default();
                fresh.install(tables.clone(), 0);
                assert_eq!(stage.filtered_saps, fresh.filtered_saps);
                for slot in 0..tables.saps.len() {
                    assert_eq!(stage.ingress[slot].fields(), fresh.ingress[slot].fields(), "slot {slot}");
                    assert_eq!(stage.cross[slot], fresh.cross[slot], "slot {slot}");
                }
            };
            let vid_of = |k: u32, side: bool, moved: bool| if side && moved { k + 21 } else { k + 1 };
            let id_of = |k: u32, side: bool, moved: bool| SapId {
                port: if side { 2 } else { 1 },
                encap: vid_of(k, side, moved).to_string().parse().unwrap(),
            };
            // Which Z-side SAP each Epipe uses, and the reference counters by SAP id:
            // received frames and octets, sent frames and octets.
            let mut moved = [false; 4];
            let frame = |vid: u16| crate::build::tagged(
                MacAddr([2, 0, 0, 0, 0, 1]),
                MacAddr([2, 0, 0, 0, 0, 2]),
                &[(Q, vid)],
                EtherType::IPV4,
                &crate::build::ipv4_udp(
                    Ipv4Addr::new(192, 0, 2, 1),
                    Ipv4Addr::new(198, 51, 100, 7),
                    4000,
                    80,
                    &[0xab; 18],
                ),
            );
            let mut now = 0u64;
            for (op, k, side, arg) in ops {
                let a = id_of(k, false, false);
                let z = id_of(k, true, moved[k as usize]);
                let this = if side { z } else { a };
                let service = k + 1;
                let respec = |b: &mut ServiceTablesBuilder, f: &dyn Fn(&mut SapSpec)| {
                    if let Some(spec) = b.sap(&this) {
                        let mut spec = spec.clone();
                        f(&mut spec);
                        b.set_sap(spec).unwrap();
                    }
                };
                match op {
                    0 => {
                        if b.sap(&a).is_none() && b.sap(&z).is_none() {
                            b.set_service(ServiceSpec::Epipe(EpipeSpec::new(service))).unwrap();
                            b.set_sap(SapSpec::new(a, service)).unwrap();
                            b.set_sap(SapSpec::new(z, service)).unwrap();
                        }
                    }
                    1 => {
                        if b.remove_sap(&this).is_ok() {
                            removed.push(this);
                        }
                    }
                    2 => {
                        // The Z side moves to other tags (a new SAP, maybe in the slot the
                        // old one left), or comes back.
                        if b.remove_sap(&z).is_ok() {
                            removed.push(z);
                            moved[k as usize] ^= true;
                            let z = id_of(k, true, moved[k as usize]);
                            if b.set_sap(SapSpec::new(z, service)).is_err() {
                                moved[k as usize] ^= true;
                            }
                        }
                    }
                    3 => respec(&mut b, &|s| s.ingress.ip_filter = (arg % 4 != 0).then_some(u32::from(arg % 4))),
                    4 => respec(&mut b, &|s| s.ingress.policer = (arg % 3 != 0).then_some(u32::from(arg % 3))),
                    5 => respec(&mut b, &|s| s.shutdown = !s.shutdown),
                    6 => respec(&mut b, &|s| s.ingress.mac_filter = s.ingress.mac_filter.xor(Some(1))),
                    7 => {
                        let default = if arg & 1 == 0 { Disposition::Forward } else { Disposition::Drop };
                        let id = u32::from(arg % 3) + 1;
                        b.set_filter(filter(id, FilterKind::Ip, arg & 2 != 0, default)).unwrap();
                    }
                    8 | 9 => {
                        install(&mut p, &mut b, &mut removed, &mut reference);
                        let stage = p.stage_mut::<ServiceStage>().unwrap();
                        let cleared = if op == 8 {
                            stage.clear_sap(&this)
                        } else {
                            stage.clear_service(service)
                        };
                        let installed = stage.tables().unwrap().clone();
                        if cleared {
                            let ids = if op == 8 { vec![this] } else { installed.saps_of(service) };
                            for id in ids {
                                reference.insert(id, [0; 4]);
                            }
                        }
                    }
                    _ => {
                        install(&mut p, &mut b, &mut removed, &mut reference);
                        let installed = p.stage_mut::<ServiceStage>().unwrap().tables().unwrap().clone();
                        let peer = installed.saps_of(service).into_iter().find(|id| *id != this);
                        let vid = vid_of(k, side, moved[k as usize]) as u16;
                        for _ in 0..=arg % 4 {
                            let bytes = frame(vid);
                            let mut batch = Batch::new(1);
                            prop_assert!(batch.push(&bytes, PacketMeta::new(this.port, pkt_type::OTHERHOST, 0)));
                            now += 10_000_000;
                            p.run(&mut batch, now);
                            let (out, meta) = batch.get(0).unwrap();
                            if installed.sap_ids.contains_key(&this) {
                                let r = reference.entry(this).or_default();
                                r[0] += 1;
                                r[1] += bytes.len() as u64;
                            }
                            if let Verdict::Transmit(port) = meta.verdict {
                                let peer = peer.unwrap();
                                prop_assert_eq!(port, peer.port);
                                let r = reference.entry(peer).or_default();
                                r[2] += 1;
                                r[3] += out.len() as u64;
                            }
                        }
                    }
                }
                if arg & 0x80 != 0 {
                    install(&mut p, &mut b, &mut removed, &mut reference);
                }
                let stage = p.stage_mut::<ServiceStage>().unwrap();
                let Some(installed) = stage.tables().cloned() else {
                    continue;
                };
                for id in installed.sap_ids() {
                    let c = stage.sap_counters(&id).unwrap();
                    let expected = reference.get(&id).copied().unwrap_or_default();
                    prop_assert_eq!(
                        [c.rx_packets, c.rx_octets, c.tx_packets, c.tx_octets],
                        expected,
                        "{:?}", id
                    );
                }
            }
        }

    }
}
