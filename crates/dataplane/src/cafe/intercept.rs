//! CAFE intercept filters (seed 004 §5.3.2): 5-tuples with wildcards, the forwarding keys to
//! push on matching packets, per-filter counters and idle expiry into expired-stream records.
//!
//! Lookup is a tuple-space search: filters are grouped by which fields are wildcards (at most
//! 32 groups), each group is a hash map keyed by the tuple with those fields zeroed, and groups
//! are probed from the most specific to the least. With exact filters only, a lookup is one hash
//! probe whatever the number of filters. Several streams may share one tuple (the CME configures
//! a new path for the same traffic before the old stream expires): the most recently configured
//! one carries the packets, the older ones resume when it is removed or expires.

use crate::flow::{addr_bytes, addr_from_bytes, FlowKey, FxBuildHasher, ANY_ADDR};
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;

const ANY_SRC: u8 = 1;
const ANY_DST: u8 = 2;
const ANY_PROTOCOL: u8 = 4;
const ANY_SRC_PORT: u8 = 8;
const ANY_DST_PORT: u8 = 16;

/// Most expired-stream records kept until collected; older ones are discarded (and counted).
pub const MAX_EXPIRED_RECORDS: usize = 65_536;

/// A filter as configured (by `brasa cafe intercept add` or the CME agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilterSpec {
    /// Stream identifier.
    pub id: u32,
    /// Idle timeout in seconds (0 = never expires).
    pub timeout_secs: u32,
    /// Source address, `None` = any.
    pub src: Option<IpAddr>,
    /// Destination address, `None` = any.
    pub dst: Option<IpAddr>,
    /// IP protocol, 0 = any.
    pub protocol: u8,
    /// Source port, 0 = any.
    pub src_port: u16,
    /// Destination port, 0 = any.
    pub dst_port: u16,
    /// Forwarding keys pushed in the COMET header (1 to 255).
    pub keys: Vec<u8>,
    /// Reserved bandwidth (from the CME; reported back on expiry).
    pub bandwidth: u64,
    /// Class of service (from the CME; reported back on expiry).
    pub cos: String,
    /// AS path (from the CME; reported back on expiry).
    pub as_path: Vec<u32>,
}

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The id is already configured.
    #[error("filter {0} already exists")]
    DuplicateId(u32),
    /// Source and destination are of different families.
    #[error("source and destination addresses must be of the same family")]
    MixedFamilies,
    /// The key list is empty or longer than 255.
    #[error("the key list must hold 1 to 255 keys, not {0}")]
    KeyCount(usize),
    /// No filter has this id.
    #[error("no filter {0}")]
    NotFound(u32),
}

/// A filter with its counters.
#[derive(Debug, Clone, Serialize)]
pub struct FilterState {
    /// The configuration.
    #[serde(flatten)]
    pub spec: FilterSpec,
    /// Packets matched.
    pub packets: u64,
    /// IP bytes matched.
    pub bytes: u64,
    /// When it was configured (caller's clock, ns).
    #[serde(skip)]
    pub created_ns: u64,
    /// Last match, or creation when none yet (caller's clock, ns).
    #[serde(skip)]
    pub last_activity_ns: u64,
    #[serde(skip)]
    mask: u8,
    #[serde(skip)]
    tuple: FlowKey,
}

/// A stream whose filter expired (the §5.2.3 record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ExpiredStream {
    /// Stream identifier.
    pub id: u32,
    /// Source address (`None` = any).
    pub src: Option<IpAddr>,
    /// Destination address (`None` = any).
    pub dst: Option<IpAddr>,
    /// IP protocol (0 = any).
    pub protocol: u8,
    /// Source port (0 = any).
    pub src_port: u16,
    /// Destination port (0 = any).
    pub dst_port: u16,
    /// Bandwidth from the configuration.
    pub bandwidth: u64,
    /// Class of service from the configuration.
    pub cos: String,
    /// AS path from the configuration.
    pub as_path: Vec<u32>,
    /// IP bytes carried.
    pub transferred_bytes: u64,
    /// Packets carried.
    pub packets: u64,
    /// Milliseconds from configuration to the last packet.
    pub duration_ms: u64,
}

/// The filters sharing one tuple, oldest first. Nearly always one, kept inline so a lookup
/// does not follow a pointer to find it.
#[derive(Debug, Clone)]
enum TupleSlots {
    One(usize),
    Many(Vec<usize>),
}

impl TupleSlots {
    #[inline]
    fn newest(&self) -> Option<usize> {
        match self {
            TupleSlots::One(slot) => Some(*slot),
            TupleSlots::Many(slots) => slots.last().copied(),
        }
    }

    fn push(&mut self, slot: usize) {
        match self {
            TupleSlots::One(first) => *self = TupleSlots::Many(vec![*first, slot]),
            TupleSlots::Many(slots) => slots.push(slot),
        }
    }

    /// Removes `slot`; returns true when none is left.
    fn remove(&mut self, slot: usize) -> bool {
        match self {
            TupleSlots::One(only) => *only == slot,
            TupleSlots::Many(slots) => {
                slots.retain(|&s| s != slot);
                if let [only] = slots[..] {
                    *self = TupleSlots::One(only);
                }
                slots_is_empty(self)
            }
        }
    }
}

fn slots_is_empty(slots: &TupleSlots) -> bool {
    matches!(slots, TupleSlots::Many(list) if list.is_empty())
}

struct Group {
    mask: u8,
    map: HashMap<FlowKey, TupleSlots, FxBuildHasher>,
}

/// The intercept filters.
#[derive(Default)]
pub struct FilterTable {
    slots: Vec<Option<FilterState>>,
    free: Vec<usize>,
    by_id: HashMap<u32, usize, FxBuildHasher>,
    groups: Vec<Group>,
    expired: std::collections::VecDeque<ExpiredStream>,
    expired_discarded: u64,
    expired_total: u64,
    /// One of several copies (one per worker): idle expiry is decided across the copies by
    /// their owner ([`FilterTable::activity`], [`FilterTable::take`],
    /// [`FilterTable::record_expired`]), never by one copy alone.
    replicated: bool,
}

fn masked(key: &FlowKey, mask: u8) -> FlowKey {
    FlowKey {
        src: if mask & ANY_SRC != 0 {
            ANY_ADDR
        } else {
            key.src
        },
        dst: if mask & ANY_DST != 0 {
            ANY_ADDR
        } else {
            key.dst
        },
        protocol: if mask & ANY_PROTOCOL != 0 {
            0
        } else {
            key.protocol
        },
        src_port: if mask & ANY_SRC_PORT != 0 {
            0
        } else {
            key.src_port
        },
        dst_port: if mask & ANY_DST_PORT != 0 {
            0
        } else {
            key.dst_port
        },
    }
}

impl FilterTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of filters.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when there are no filters.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Adds a filter; nothing changes when it is refused.
    pub fn insert(&mut self, spec: FilterSpec, now_ns: u64) -> Result<(), FilterError> {
        if spec.keys.is_empty() || spec.keys.len() > crate::wire::comet::MAX_KEYS {
            return Err(FilterError::KeyCount(spec.keys.len()));
        }
        if let (Some(src), Some(dst)) = (spec.src, spec.dst) {
            if src.is_ipv4() != dst.is_ipv4() {
                return Err(FilterError::MixedFamilies);
            }
        }
        if self.by_id.contains_key(&spec.id) {
            return Err(FilterError::DuplicateId(spec.id));
        }
        let mut mask = 0;
        if spec.src.is_none() {
            mask |= ANY_SRC;
        }
        if spec.dst.is_none() {
            mask |= ANY_DST;
        }
        if spec.protocol == 0 {
            mask |= ANY_PROTOCOL;
        }
        if spec.src_port == 0 {
            mask |= ANY_SRC_PORT;
        }
        if spec.dst_port == 0 {
            mask |= ANY_DST_PORT;
        }
        let tuple = FlowKey {
            src: spec.src.map(addr_bytes).unwrap_or(ANY_ADDR),
            dst: spec.dst.map(addr_bytes).unwrap_or(ANY_ADDR),
            protocol: spec.protocol,
            src_port: spec.src_port,
            dst_port: spec.dst_port,
        };
        let group_index = match self.groups.iter().position(|g| g.mask == mask) {
            Some(index) => index,
            None => {
                self.groups.push(Group {
                    mask,
                    map: HashMap::default(),
                });
                // Most specific (fewest wildcards) first; ties in mask order, deterministic.
                self.groups.sort_by_key(|g| (g.mask.count_ones(), g.mask));
                self.groups.iter().position(|g| g.mask == mask).unwrap_or(0)
            }
        };
        let Some(group) = self.groups.get_mut(group_index) else {
            return Err(FilterError::NotFound(spec.id));
        };
        let id = spec.id;
        let state = FilterState {
            spec,
            packets: 0,
            bytes: 0,
            created_ns: now_ns,
            last_activity_ns: now_ns,
            mask,
            tuple,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(entry) = self.slots.get_mut(slot) {
                    *entry = Some(state);
                }
                slot
            }
            None => {
                self.slots.push(Some(state));
                self.slots.len() - 1
            }
        };
        match group.map.get_mut(&tuple) {
            Some(slots) => slots.push(slot),
            None => {
                group.map.insert(tuple, TupleSlots::One(slot));
            }
        }
        self.by_id.insert(id, slot);
        Ok(())
    }

    /// Puts back a filter taken out by [`FilterTable::remove`], counters and times included.
    /// Returns false (and drops it) if its id or key list has become invalid meanwhile.
    pub fn restore(&mut self, state: FilterState) -> bool {
        let (packets, bytes, created, last) = (
            state.packets,
            state.bytes,
            state.created_ns,
            state.last_activity_ns,
        );
        let id = state.spec.id;
        if self.insert(state.spec, created).is_err() {
            return false;
        }
        if let Some(slot) = self.by_id.get(&id).copied() {
            if let Some(Some(restored)) = self.slots.get_mut(slot) {
                restored.packets = packets;
                restored.bytes = bytes;
                restored.last_activity_ns = last;
            }
        }
        true
    }

    /// Removes a filter and returns it with its counters (no expired record is made).
    pub fn remove(&mut self, id: u32) -> Result<FilterState, FilterError> {
        let slot = self.by_id.remove(&id).ok_or(FilterError::NotFound(id))?;
        let state = self
            .slots
            .get_mut(slot)
            .and_then(Option::take)
            .ok_or(FilterError::NotFound(id))?;
        if let Some(group) = self.groups.iter_mut().find(|g| g.mask == state.mask) {
            if let Some(slots) = group.map.get_mut(&state.tuple) {
                if slots.remove(slot) {
                    group.map.remove(&state.tuple);
                }
            }
        }
        self.groups.retain(|g| !g.map.is_empty());
        self.free.push(slot);
        Ok(state)
    }

    /// The filter with this id.
    pub fn get(&self, id: u32) -> Option<&FilterState> {
        self.by_id
            .get(&id)
            .and_then(|&slot| self.slots.get(slot)?.as_ref())
    }

    /// All filters, in id order.
    pub fn filters(&self) -> Vec<&FilterState> {
        let mut out: Vec<&FilterState> = self.slots.iter().flatten().collect();
        out.sort_by_key(|f| f.spec.id);
        out
    }

    /// Finds the most specific filter matching `key`, counts the packet on it and returns its
    /// keys.
    #[inline]
    pub fn match_packet(&mut self, key: &FlowKey, ip_len: usize, now_ns: u64) -> Option<&[u8]> {
        let mut found = None;
        for group in &self.groups {
            let probe = if group.mask == 0 {
                *key
            } else {
                masked(key, group.mask)
            };
            if let Some(slot) = group.map.get(&probe).and_then(TupleSlots::newest) {
                found = Some(slot);
                break;
            }
        }
        let state = self.slots.get_mut(found?)?.as_mut()?;
        state.packets += 1;
        state.bytes += ip_len as u64;
        state.last_activity_ns = now_ns;
        Some(&state.spec.keys)
    }

    /// Makes this table one of several copies whose expiry is decided across them: `expire`
    /// then does nothing.
    pub fn set_replicated(&mut self, replicated: bool) {
        self.replicated = replicated;
    }

    /// The id, last activity and idle timeout (ns) of every filter that can expire.
    pub fn activity(&self) -> Vec<(u32, u64, u64)> {
        self.slots
            .iter()
            .flatten()
            .filter(|f| f.spec.timeout_secs > 0)
            .map(|f| {
                (
                    f.spec.id,
                    f.last_activity_ns,
                    u64::from(f.spec.timeout_secs) * 1_000_000_000,
                )
            })
            .collect()
    }

    /// Removes the filters `ids` and returns them (ids not present are skipped).
    pub fn take(&mut self, ids: &[u32]) -> Vec<FilterState> {
        ids.iter().filter_map(|id| self.remove(*id).ok()).collect()
    }

    /// Records a filter expired across copies (its counters the sum of theirs).
    pub fn record_expired(&mut self, state: FilterState) {
        self.push_expired(state);
    }

    /// Expires filters idle for their timeout into expired-stream records. Returns how many.
    pub fn expire(&mut self, now_ns: u64) -> usize {
        if self.replicated {
            return 0;
        }
        let due: Vec<u32> = self
            .slots
            .iter()
            .flatten()
            .filter(|f| {
                f.spec.timeout_secs > 0
                    && now_ns.saturating_sub(f.last_activity_ns)
                        >= u64::from(f.spec.timeout_secs) * 1_000_000_000
            })
            .map(|f| f.spec.id)
            .collect();
        for id in &due {
            if let Ok(state) = self.remove(*id) {
                self.push_expired(state);
            }
        }
        due.len()
    }

    fn push_expired(&mut self, state: FilterState) {
        if self.expired.len() >= MAX_EXPIRED_RECORDS {
            self.expired.pop_front();
            self.expired_discarded += 1;
        }
        self.expired_total += 1;
        let spec = state.spec;
        self.expired.push_back(ExpiredStream {
            id: spec.id,
            src: spec.src,
            dst: spec.dst,
            protocol: spec.protocol,
            src_port: spec.src_port,
            dst_port: spec.dst_port,
            bandwidth: spec.bandwidth,
            cos: spec.cos,
            as_path: spec.as_path,
            transferred_bytes: state.bytes,
            packets: state.packets,
            duration_ms: state.last_activity_ns.saturating_sub(state.created_ns) / 1_000_000,
        });
    }

    /// Takes every expired-stream record collected so far.
    pub fn collect_expired(&mut self) -> Vec<ExpiredStream> {
        self.expired.drain(..).collect()
    }

    /// Puts records taken by [`FilterTable::collect_expired`] back at the front, in order (for
    /// a collector that could not send them all).
    pub fn requeue_expired(&mut self, records: Vec<ExpiredStream>) {
        for record in records.into_iter().rev() {
            self.expired.push_front(record);
        }
    }

    /// Expired records waiting to be collected.
    pub fn expired_pending(&self) -> usize {
        self.expired.len()
    }

    /// Streams expired since start, and records discarded because nobody collected them.
    pub fn expired_totals(&self) -> (u64, u64) {
        (self.expired_total, self.expired_discarded)
    }
}

impl FilterState {
    /// Folds another copy's state of the same filter into this one: counters add up, the last
    /// activity is the latest.
    pub fn merge(&mut self, other: &FilterState) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.last_activity_ns = self.last_activity_ns.max(other.last_activity_ns);
        self.created_ns = self.created_ns.min(other.created_ns);
    }
}

/// Reads an address argument where `0`, `*`, `any`, `0.0.0.0` and `::` mean any.
pub fn parse_any_addr(text: &str) -> Result<Option<IpAddr>, String> {
    match text {
        "0" | "*" | "any" => Ok(None),
        _ => {
            let addr: IpAddr = text
                .parse()
                .map_err(|_| format!("invalid IP address {text:?}"))?;
            Ok((!addr.is_unspecified()).then_some(addr))
        }
    }
}

/// Reads the `KEYS_HEX` argument (`1234567890abcdef` = keys 12 34 56 78 90 ab cd ef).
pub fn parse_keys_hex(text: &str) -> Result<Vec<u8>, String> {
    let text = text.strip_prefix("0x").unwrap_or(text);
    if text.is_empty()
        || !text.len().is_multiple_of(2)
        || text.len() > 2 * crate::wire::comet::MAX_KEYS
    {
        return Err(format!(
            "invalid key list {text:?}: expected 1 to 255 keys as an even number of hex digits"
        ));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("invalid key list {text:?}: not hexadecimal"))
        })
        .collect()
}

/// The key form of a spec's tuple (for tests and tools).
pub fn spec_tuple(spec: &FilterSpec) -> (IpAddr, IpAddr) {
    (
        addr_from_bytes(spec.src.map(addr_bytes).unwrap_or(ANY_ADDR)),
        addr_from_bytes(spec.dst.map(addr_bytes).unwrap_or(ANY_ADDR)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        id: u32,
        src: &str,
        dst: &str,
        protocol: u8,
        sport: u16,
        dport: u16,
        keys: &[u8],
    ) -> FilterSpec {
        FilterSpec {
            id,
            timeout_secs: 60,
            src: parse_any_addr(src).unwrap(),
            dst: parse_any_addr(dst).unwrap(),
            protocol,
            src_port: sport,
            dst_port: dport,
            keys: keys.to_vec(),
            bandwidth: 1000,
            cos: "PR".into(),
            as_path: vec![1, 2, 3],
        }
    }

    fn key(src: &str, dst: &str, protocol: u8, sport: u16, dport: u16) -> FlowKey {
        FlowKey {
            src: addr_bytes(src.parse().unwrap()),
            dst: addr_bytes(dst.parse().unwrap()),
            protocol,
            src_port: sport,
            dst_port: dport,
        }
    }

    #[test]
    fn wildcards_match_and_most_specific_wins() {
        let mut table = FilterTable::new();
        // The §5.3.3 example: UDP 1.1.1.2 -> 2.2.2.1 to port 80, any source port.
        table
            .insert(spec(123, "1.1.1.2", "2.2.2.1", 17, 0, 80, &[0x12, 0x34]), 0)
            .unwrap();
        table
            .insert(spec(7, "0", "2.2.2.1", 0, 0, 0, &[0x99]), 0)
            .unwrap();
        assert_eq!(
            table.match_packet(&key("1.1.1.2", "2.2.2.1", 17, 5555, 80), 100, 1),
            Some(&[0x12, 0x34][..])
        );
        assert_eq!(
            table.match_packet(&key("1.1.1.3", "2.2.2.1", 6, 1, 2), 50, 1),
            Some(&[0x99][..])
        );
        assert_eq!(
            table.match_packet(&key("1.1.1.2", "2.2.2.9", 17, 5555, 80), 50, 1),
            None
        );
        assert_eq!(table.get(123).unwrap().packets, 1);
        assert_eq!(table.get(123).unwrap().bytes, 100);
        assert_eq!(table.get(7).unwrap().bytes, 50);
    }

    #[test]
    fn refusals_change_nothing() {
        let mut table = FilterTable::new();
        table
            .insert(spec(1, "1.1.1.2", "2.2.2.1", 17, 0, 80, &[1]), 0)
            .unwrap();
        assert_eq!(
            table.insert(spec(1, "1.1.1.9", "2.2.2.1", 17, 0, 80, &[1]), 0),
            Err(FilterError::DuplicateId(1))
        );
        assert_eq!(
            table.insert(spec(3, "1.1.1.2", "fd00::1", 17, 0, 80, &[1]), 0),
            Err(FilterError::MixedFamilies)
        );
        assert_eq!(
            table.insert(spec(4, "1.1.1.2", "2.2.2.2", 17, 0, 80, &[]), 0),
            Err(FilterError::KeyCount(0))
        );
        assert_eq!(table.len(), 1);
        assert!(table.remove(1).is_ok());
        assert_eq!(table.remove(1).unwrap_err(), FilterError::NotFound(1));
        assert!(table.is_empty());
        assert_eq!(
            table.match_packet(&key("1.1.1.2", "2.2.2.1", 17, 5555, 80), 1, 0),
            None
        );
    }

    #[test]
    fn newest_stream_on_a_shared_tuple_wins_until_removed() {
        let mut table = FilterTable::new();
        table
            .insert(spec(1, "1.1.1.2", "2.2.2.1", 17, 0, 80, &[1]), 0)
            .unwrap();
        table
            .insert(spec(2, "1.1.1.2", "2.2.2.1", 17, 0, 80, &[2]), 0)
            .unwrap();
        let packet = key("1.1.1.2", "2.2.2.1", 17, 9, 80);
        assert_eq!(table.match_packet(&packet, 1, 0), Some(&[2][..]));
        table.remove(2).unwrap();
        assert_eq!(table.match_packet(&packet, 1, 0), Some(&[1][..]));
        table.remove(1).unwrap();
        assert_eq!(table.match_packet(&packet, 1, 0), None);
    }

    #[test]
    fn idle_filters_expire_into_records() {
        let mut table = FilterTable::new();
        table
            .insert(spec(1, "1.1.1.2", "2.2.2.1", 17, 0, 80, &[1]), 0)
            .unwrap();
        let mut never = spec(2, "1.1.1.3", "2.2.2.1", 17, 0, 80, &[1]);
        never.timeout_secs = 0;
        table.insert(never, 0).unwrap();
        let second = 1_000_000_000;
        table.match_packet(&key("1.1.1.2", "2.2.2.1", 17, 9, 80), 1000, 30 * second);
        assert_eq!(table.expire(89 * second), 0);
        assert_eq!(table.expire(90 * second), 1);
        let records = table.collect_expired();
        assert_eq!(records.len(), 1);
        let record = &records[0];
        assert_eq!(
            (
                record.id,
                record.transferred_bytes,
                record.packets,
                record.duration_ms
            ),
            (1, 1000, 1, 30_000)
        );
        assert_eq!(record.as_path, vec![1, 2, 3]);
        assert!(table.collect_expired().is_empty());
        assert!(table.get(2).is_some());
        assert_eq!(table.expire(1_000_000 * second), 0);
    }

    #[test]
    fn ipv6_filters_do_not_match_ipv4() {
        let mut table = FilterTable::new();
        table
            .insert(spec(1, "0", "fd00::2", 0, 0, 0, &[5]), 0)
            .unwrap();
        assert_eq!(
            table.match_packet(&key("fd00::1", "fd00::2", 17, 1, 2), 1, 0),
            Some(&[5][..])
        );
        assert_eq!(
            table.match_packet(&key("1.1.1.1", "2.2.2.2", 17, 1, 2), 1, 0),
            None
        );
    }

    #[test]
    fn argument_parsers() {
        assert_eq!(
            parse_keys_hex("1234567890abcdef").unwrap(),
            vec![0x12, 0x34, 0x56, 0x78, 0x90, 0xab, 0xcd, 0xef]
        );
        assert!(parse_keys_hex("123").is_err());
        assert!(parse_keys_hex("zz").is_err());
        assert!(parse_keys_hex("").is_err());
        assert_eq!(parse_any_addr("0").unwrap(), None);
        assert_eq!(parse_any_addr("0.0.0.0").unwrap(), None);
        assert!(parse_any_addr("1.1.1").is_err());
    }
}
