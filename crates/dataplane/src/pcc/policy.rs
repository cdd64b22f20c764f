//! One subscriber's compiled PCC policy: its rules as classifier entries in precedence order
//! per direction and family with each rule's action and policer ([`CompiledRules`], immutable
//! and shared by every subscriber whose rules are equal), and the subscriber's own state:
//! policer buckets and counters, as atomics, beside a copy of each rule's action.
//!
//! Why share: operators give most subscribers the same few services (the SR OS script builds
//! the same service from the same parameters), so 100 000 subscribers usually hold a handful of
//! distinct rule lists. One compiled copy per distinct list stays in the cache for every
//! packet; each subscriber adds one line of state per rule and one of its own (the aggregate),
//! which is what a packet then misses on ([`PccCompiler`] does the sharing).
//!
//! Why atomics: the control side keeps the `Arc` of every policy it installs and reads the
//! counters from it whenever it wants (accounting interims, `show` commands), without taking
//! the stage's lock, so reading never holds up a worker. The stage is the only writer (one
//! instance, shared by the workers behind [`crate::pipeline::Shared`], so one batch at a time):
//! an update is a relaxed load and a relaxed store, which compile to plain moves, and a reader
//! sees each counter whole, at most one batch old.

use super::spec::{
    Direction, PccPolicer, PccRuleSpec, RoutingInstance, SubscriberPccSpec, VprnPrefix,
};
use super::PccError;
use crate::acl::{check_match, check_prefix, Disposition, IpFamily, Match, PacketKey, Prefix};
use crate::acl::{V4Entry, V6Entry};
use crate::arena::{arena_item, Block};
use crate::policer::{Colour, CompactTrTcm, PolicerState};
use serde::Serialize;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// Most rules one subscriber can have (rule indexes are 16-bit in the entries).
pub const MAX_RULES: usize = 1_024;

/// A counter written by one thread at a time and read by any.
#[derive(Debug, Default)]
struct Counter {
    packets: AtomicU64,
    octets: AtomicU64,
}

impl Counter {
    /// Adds one packet. Load and store, not `fetch_add`: the stage is the only writer.
    #[inline(always)]
    fn add(&self, octets: u64) {
        let packets = self.packets.load(Ordering::Relaxed);
        self.packets.store(packets + 1, Ordering::Relaxed);
        let total = self.octets.load(Ordering::Relaxed);
        self.octets.store(total + octets, Ordering::Relaxed);
    }

    fn read(&self) -> Volume {
        Volume {
            packets: self.packets.load(Ordering::Relaxed),
            octets: self.octets.load(Ordering::Relaxed),
        }
    }

    fn set(&self, volume: Volume) {
        self.packets.store(volume.packets, Ordering::Relaxed);
        self.octets.store(volume.octets, Ordering::Relaxed);
    }
}

/// Packets and octets (IP octets: from the IP header to the end of the IP payload).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Volume {
    /// Packets.
    pub packets: u64,
    /// Octets.
    pub octets: u64,
}

impl Volume {
    /// The sum of two volumes.
    pub fn sum(self, other: Volume) -> Volume {
        Volume {
            packets: self.packets + other.packets,
            octets: self.octets + other.octets,
        }
    }
}

/// A rule's line of a subscriber's state: everything a packet the rule matches reads and
/// writes, so that it reads one line per rule — its policer's buckets, its forwarded volume,
/// and a copy of the rule's action with the policer's parameters ([`CompactTrTcm`]). Until
/// round 10 the action was the compiled rules' (a [`crate::policer::PolicerParams`], 104
/// bytes), one or two more lines for a distinct rule list. The dropped volume, which a packet
/// touches only when it is dropped, is on a [`DroppedLine`] after the subscriber's line. A
/// policy's rule lines are indexed like its rules.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub(crate) struct RuleState {
    /// Policer buckets and clock ([`PolicerState::buckets`]); unused without a policer.
    buckets: [AtomicU64; 3],
    forwarded: Counter,
    /// Immutable: written when the policy is built.
    action: RuleAction,
}

/// Rules' dropped volumes in one [`DroppedLine`].
const DROPPED_PER_LINE: usize = 4;

/// The dropped volumes (drop action or policer red) of [`DROPPED_PER_LINE`] rules, in the rules'
/// order: the cold part of their state, kept off the rule's line to make room there for its
/// action.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub(crate) struct DroppedLine {
    counters: [Counter; DROPPED_PER_LINE],
}

/// Rule `rule`'s dropped volume among a policy's dropped lines.
#[inline(always)]
fn dropped_counter(lines: &[DroppedLine], rule: usize) -> Option<&Counter> {
    lines
        .get(rule / DROPPED_PER_LINE)?
        .counters
        .get(rule % DROPPED_PER_LINE)
}

/// One of the subscriber's own two lines, one per direction, after its rules' lines in its
/// state block (the stage's slot leads to the first): the aggregate forwarded volume in its
/// direction (the other input of the SR OS counter rule), where the compiled rules' IPv4
/// entries of that direction are (a copy of the [`HotRules`]' pointer), and a copy of their
/// [`FarSummary`]. A packet misses on this line anyway (it counts the aggregate), so with the
/// pointer and the summary here the compiled rules' lines leave an IPv4 packet's path: with a
/// rule list of its own a packet reads this line, the candidate entry and the rule's line.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct SubscriberLine {
    /// Volume forwarded in this line's direction.
    aggregate: Counter,
    /// The compiled rules' IPv4 entries of this line's direction, `v4_len` of them.
    v4: NonNull<V4Entry>,
    v4_len: u32,
    rule_count: u32,
    /// The far-end summary of the first of those entries.
    far: FarSummary,
}

// SAFETY: the pointer leads to the compiled rules' entries, immutable and `Send + Sync`, in a
// block that the policy owning this line keeps alive (its `Arc<CompiledRules>`); the line
// hands out shared references only.
unsafe impl Send for SubscriberLine {}
// SAFETY: as above.
unsafe impl Sync for SubscriberLine {}

impl SubscriberLine {
    /// The IPv4 entries a packet in this line's direction is matched against.
    #[inline(always)]
    pub(crate) fn entries4(&self) -> &[V4Entry] {
        // SAFETY: `v4` and `v4_len` are a part of the compiled rules' IPv4 block, which the
        // policy owning this line keeps alive (its `Arc<CompiledRules>`) and nothing writes;
        // arena blocks never move (an empty one's pointer is dangling and aligned).
        unsafe { std::slice::from_raw_parts(self.v4.as_ptr(), self.v4_len as usize) }
    }

    /// Which of [`SubscriberLine::entries4`] the far-end summary leaves as candidates for an
    /// IPv4 packet with `key` in `direction` (this line's): bit `i` for entry `i`; entries
    /// beyond [`SUMMARISED`] are always candidates and not in the bits.
    #[inline(always)]
    pub(crate) fn candidates4(&self, key: &PacketKey, direction: Direction) -> u8 {
        let far = match direction {
            Direction::Ingress => key.dst4,
            Direction::Egress => key.src4,
        };
        self.far.candidates(far, self.v4_len as usize)
    }

    /// Rules of the subscriber.
    #[inline(always)]
    pub(crate) fn rule_count(&self) -> usize {
        self.rule_count as usize
    }
}

/// One line of a policy's state block: the rules' ([`RuleState`]) in the rules' order, then
/// the subscriber's two ([`SubscriberLine`], by [`Direction`]), then the rules' dropped
/// volumes ([`DroppedLine`]s).
/// One block, so that a rule's line is at a known distance from the subscriber's: the stage
/// prefetches it from its slot and the rule count (which a shared list's first line, in the
/// cache, gives) without waiting for the subscriber's line (with the rules' lines in a block of
/// their own, found through a pointer in the subscriber's line, that dependent step cost shared
/// services 20–30 %). The subscriber's line after the rules' lines, not first: beside the last
/// rules' lines, as before this layout; the dropped lines after it, at a distance that does not
/// depend on the rule count.
#[repr(C, align(64))]
pub(crate) union StateLine {
    subscriber: ManuallyDrop<SubscriberLine>,
    rule: ManuallyDrop<RuleState>,
    dropped: ManuallyDrop<DroppedLine>,
}

arena_item!(StateLine);

// Either kind of line is exactly one `StateLine`, at its start (`repr(C)`), so the lines after
// the first are an array of `RuleState`.
const _: () = assert!(std::mem::size_of::<StateLine>() == std::mem::size_of::<RuleState>());
const _: () = assert!(std::mem::size_of::<StateLine>() == std::mem::size_of::<SubscriberLine>());
const _: () = assert!(std::mem::size_of::<StateLine>() == std::mem::size_of::<DroppedLine>());
const _: () = assert!(std::mem::size_of::<StateLine>() == 64);

impl std::fmt::Debug for StateLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateLine")
    }
}

/// Where a policy's state block is, as the stage's slot keeps it ([`SubscriberPolicy::state_block`]).
#[derive(Clone, Copy)]
pub(crate) struct StateBlock(NonNull<StateLine>);

impl StateBlock {
    /// The subscriber's line of `direction`.
    ///
    /// # Safety
    ///
    /// The policy this block was taken from must be alive for `'a`.
    #[inline(always)]
    pub(crate) unsafe fn line<'a>(self, direction: Direction) -> &'a SubscriberLine {
        // SAFETY: the policy is alive (the caller's contract), and its block's two lines after
        // the rules' lines, from where `state_block` points, were written as the subscriber's
        // (`with_rules`); blocks never move, and nothing takes `&mut` to their lines (atomics
        // and immutable data).
        unsafe { &(*self.line_addr(direction)).subscriber }
    }

    /// The rules' dropped volumes, [`DROPPED_PER_LINE`] rules a line: for `count` rules.
    ///
    /// # Safety
    ///
    /// As for [`StateBlock::rules`].
    #[inline(always)]
    pub(crate) unsafe fn dropped<'a>(self, count: usize) -> &'a [DroppedLine] {
        // SAFETY: as for `rules`: `with_rules` wrote `count.div_ceil(DROPPED_PER_LINE)`
        // dropped lines after the subscriber's two, each exactly one `StateLine` (asserted
        // above), and the pointer has the whole block's provenance.
        unsafe {
            std::slice::from_raw_parts(
                self.0
                    .as_ptr()
                    .add(Direction::ALL.len())
                    .cast::<DroppedLine>(),
                count.div_ceil(DROPPED_PER_LINE),
            )
        }
    }

    /// The rules' lines, indexed by rule: `count` of them.
    ///
    /// # Safety
    ///
    /// As for [`StateBlock::line`], and `count` is the policy's rule count (its line's, or its
    /// compiled rules').
    #[inline(always)]
    pub(crate) unsafe fn rules<'a>(self, count: usize) -> &'a [RuleState] {
        // SAFETY: as for `line`; the pointer has the whole block's provenance (taken from its
        // slice in `state_block`), whose `count` lines before the last were written as rules'
        // lines, each exactly one `StateLine` (asserted above).
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().sub(count).cast::<RuleState>(), count) }
    }

    /// The address of the subscriber's line of `direction`, for a prefetch.
    #[inline(always)]
    pub(crate) fn line_addr(self, direction: Direction) -> *const StateLine {
        self.0.as_ptr().wrapping_add(direction as usize)
    }

    /// The address of the line of rule `rule` of `rule_count`, for a prefetch (computed, not
    /// read: a prefetch of any address is harmless).
    #[inline(always)]
    fn rule_addr(self, rule: usize, rule_count: usize) -> *const StateLine {
        self.0.as_ptr().wrapping_sub(rule_count.wrapping_sub(rule))
    }
}

/// A rule's action in 24 bytes, copied into each of its subscribers' rule lines (see
/// [`RuleState`]): the policer's parameters (meaningful when `policed`: an `Option` would
/// take a tag word and the line has 24 bytes left), the drop and remark flags.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
struct RuleAction {
    meter: CompactTrTcm,
    policed: bool,
    drop: bool,
    /// `Some(dscp)`: remark forwarded packets.
    remark: Option<u8>,
}

/// The compiled form of one list of PCC rules: what the packet path reads (`HotRules`, in
/// the huge-page arena) and the list itself for display and carry-over. Immutable but for the
/// `HotRules::is_shared` flag, so any number of subscribers share one (see [`PccCompiler`]).
#[derive(Debug)]
pub struct CompiledRules {
    /// One item (see [`CompiledRules::hot`]).
    hot: Block<HotRules>,
    /// Each rule's action, indexed like the list: copied into every subscriber's rule lines,
    /// which is where the packet path reads them.
    actions: Vec<RuleAction>,
    /// Each direction's far-end summary, copied into every subscriber's lines likewise.
    far4: [FarSummary; 2],
    /// The list it was compiled from.
    rules: Vec<PccRuleSpec>,
}

/// What the packet path reads of a compiled rule list: classifier entries per family,
/// ingress ones in precedence order then egress ones, the rule count, the shared flag.
///
/// One line, in a huge page, where the stage's slot points (it was the head of the compiled
/// rules' heap object: 4 KiB pages, a page walk beside the misses). An IPv4 packet of a
/// subscriber with a rule list of its own does not read it (the pointers are copied into the
/// [`SubscriberLine`]s); shared rules' line is in the cache.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct HotRules {
    entries: Entries,
    /// Rules in the list (the entries' rule indexes are below it).
    rule_count: u32,
    /// Set once a second policy uses these rules ([`PccCompiler`]): every packet of their
    /// subscribers then reads the entries, which stay in the cache, and the stage does not
    /// prefetch them — a prefetch of a line already there still takes a slot in the
    /// queue the real misses wait in. It stays set when the other policies go: the one left
    /// then merely misses on lines it could have prefetched; the outcome is the same.
    shared: AtomicBool,
}

arena_item!(HotRules);

const _: () = assert!(std::mem::size_of::<HotRules>() == 64);

/// Entries a [`FarSummary`] covers: eight of 32 bits fill half a [`SubscriberLine`].
const SUMMARISED: usize = 8;

/// Far-end prefixes longer than this are summarised as their first `SUMMARY_BITS` bits, which
/// leaves the low byte of each summary word for the length.
const SUMMARY_BITS: u8 = 24;

/// The far-end prefixes (destination for ingress, source for egress) of the first
/// [`SUMMARISED`] IPv4 entries of one direction: half a line that rules entries out before
/// any entry is read. With a distinct rule list per subscriber a packet then reads the lines of
/// the entries it leaves as candidates (operators' rules mostly differ by far-end prefix, so
/// usually one), instead of every line of the scan (four for eight entries). It may only rule
/// entries out: a candidate is still matched whole, in precedence order, so the outcome is the
/// plain first-match scan's.
///
/// Each word is a prefix's first [`SUMMARY_BITS`] bits of network and its length (at most
/// `SUMMARY_BITS`: a longer prefix is summarised by the /24 that covers it, which only leaves
/// more candidates) in the low byte; 0 is no far-end prefix (every address a candidate).
/// Round 9 kept network and mask in 32 bits each, a line of its own per direction beside the
/// subscriber's line; in half a line the summary rides in the subscriber's line, which the
/// packet reads anyway.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
struct FarSummary([u32; SUMMARISED]);

impl FarSummary {
    /// The summary of `prefixes` (the far-end prefix of each of the direction's entries in
    /// order, as network and length; those beyond [`SUMMARISED`] are not summarised).
    fn new(prefixes: &[(u32, u8)]) -> Self {
        let mut summary = Self::default();
        for (word, &(net, len)) in summary.0.iter_mut().zip(prefixes) {
            let len = len.min(SUMMARY_BITS);
            *word = (net & crate::acl::mask32(len)) | u32::from(len);
        }
        summary
    }

    /// Bit `i` set when entry `i` may match a packet whose far end is `far` (of the first
    /// `entries` entries). Eight independent compares into eight bytes with no branch, and one
    /// multiplication that gathers the bytes' low bits into one byte: the round that tried a
    /// summary before (round 6 in `docs/perf/dataplane.md`) lost its gain to decoding
    /// instructions.
    #[inline(always)]
    fn candidates(&self, far: u32, entries: usize) -> u8 {
        let mut hits = [0u8; SUMMARISED];
        for (hit, word) in hits.iter_mut().zip(&self.0) {
            // The length's top bits of the low 32 (`len` ≤ 24 < 64): the length byte itself
            // is below them.
            let mask = (0xffff_ffff_0000_0000_u64 >> (word & 0xff)) as u32;
            *hit = u8::from((far ^ word) & mask == 0);
        }
        // Byte `i` (0 or 1) times 2^(7 - k) at byte k lands on bit `i` of the top byte when
        // i + k = 7, and no lower byte's sum reaches 256, so nothing carries into it.
        let bits = (u64::from_le_bytes(hits).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8;
        let covered = entries.min(SUMMARISED) as u32;
        // `covered` ≤ 8, so the shift fits in a u16 and the mask in a u8.
        bits & ((1u16 << covered) - 1) as u8
    }
}

/// The IPv4 far-end prefix of `flow` in `direction` as network and length ((0, 0): none, or
/// not an IPv4 one, so every address is a candidate).
fn far_prefix4(flow: &crate::acl::IpMatch, direction: Direction) -> (u32, u8) {
    let far = match direction {
        Direction::Ingress => flow.dst,
        Direction::Egress => flow.src,
    };
    match far {
        Some(Prefix {
            addr: std::net::IpAddr::V4(addr),
            len,
        }) => (u32::from(addr), len),
        _ => (0, 0),
    }
}

/// A rule list's classifier entries (40 bytes, the first part of [`CompiledRules`]' line).
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Entries {
    /// IPv4 entries: ingress ones in precedence order, then egress ones from `v4_egress`.
    v4: Block<V4Entry>,
    /// IPv6 entries, likewise.
    v6: Block<V6Entry>,
    /// 32-bit so that the packet path's fields fit one line with [`HotRules::shared`]
    /// (four billion entries would not fit in memory anyway).
    v4_egress: u32,
    v6_egress: u32,
}

/// How one rule's packets fared, as the control side reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleCounters {
    /// The rule's name.
    pub name: String,
    /// Its direction.
    pub direction: Direction,
    /// Whether it has the account action.
    pub account: bool,
    /// Packets it forwarded (for a policed rule: the policer's green and yellow).
    pub forwarded: Volume,
    /// Packets it dropped (its drop action, or its policer's red).
    pub dropped: Volume,
    /// The policer's buckets now, in bytes (peak, committed); `None` without a policer.
    pub tokens: Option<(u64, u64)>,
}

/// A snapshot of one subscriber's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriberCounters {
    /// Everything forwarded from the subscriber (after its rules).
    pub ingress: Volume,
    /// Everything forwarded to the subscriber.
    pub egress: Volume,
    /// Per rule, in the order of the spec's rules.
    pub rules: Vec<RuleCounters>,
}

/// A subscriber's compiled PCC policy with its counters and policer state. Made with
/// [`SubscriberPolicy::compile`] or a [`PccCompiler`] away from the packet path, installed
/// with [`super::PccStage::install`] as one pointer swap.
///
/// The packet path does not read the policy itself: the stage's slot keeps where its
/// `SubscriberLine` and its compiled rules' `HotRules` are, and the line leads to the rest.
#[derive(Debug)]
pub struct SubscriberPolicy {
    rules: Arc<CompiledRules>,
    /// One line per rule indexed like the rules, then the subscriber's, then the rules'
    /// dropped volumes: see [`StateLine`].
    lines: Block<StateLine>,
    name: String,
    addresses: Vec<Prefix>,
    vprn_addresses: Vec<VprnPrefix>,
}

/// Compiles subscribers' policies, sharing one [`CompiledRules`] between all subscribers whose
/// rule lists are equal (same rules, same order). Keep one for the life of a PCC stage and
/// compile every policy for it through it; it holds only weak references, so a rule list no
/// installed policy uses any more is freed with its last policy.
#[derive(Debug, Default)]
pub struct PccCompiler {
    /// Compiled rule lists by the hash of the list (equal lists are then compared): keyed by
    /// hash rather than by a copy of the list, which would double the memory of subscribers
    /// whose lists are all distinct and push their hot data apart.
    shared: HashMap<u64, Vec<Weak<CompiledRules>>>,
    hasher: RandomState,
    /// Size of `shared` at which dead entries are swept next (amortised O(1) per compile).
    sweep_at: usize,
}

impl PccCompiler {
    /// A compiler sharing nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates `spec` and compiles it, reusing the compiled rules of an earlier policy with
    /// an equal rule list while one is alive. Every error names the subscriber, the rule and
    /// what is wrong; nothing is built unless everything is valid.
    pub fn compile(&mut self, spec: SubscriberPccSpec) -> Result<SubscriberPolicy, PccError> {
        check_addresses(&spec)?;
        let hash = self.hasher.hash_one(&spec.rules);
        let alive = self
            .shared
            .get(&hash)
            .into_iter()
            .flatten()
            .filter_map(Weak::upgrade)
            .find(|rules| rules.rules == spec.rules);
        if let Some(rules) = alive {
            rules.hot().shared.store(true, Ordering::Relaxed);
            return SubscriberPolicy::with_rules(
                spec.name,
                spec.addresses,
                spec.vprn_addresses,
                rules,
            );
        }
        let rules = Arc::new(CompiledRules::compile(&spec.name, spec.rules)?);
        if self.shared.len() >= self.sweep_at {
            self.shared.retain(|_, lists| {
                lists.retain(|rules| rules.strong_count() > 0);
                !lists.is_empty()
            });
            self.sweep_at = (2 * self.shared.len()).max(64);
        }
        let lists = self.shared.entry(hash).or_default();
        lists.retain(|rules| rules.strong_count() > 0);
        lists.push(Arc::downgrade(&rules));
        SubscriberPolicy::with_rules(spec.name, spec.addresses, spec.vprn_addresses, rules)
    }

    /// Entries in the sharing map, dead ones included (bounded by the sweep).
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.shared.len()
    }

    /// Distinct rule lists that live policies hold.
    pub fn shared_rule_lists(&self) -> usize {
        self.shared
            .values()
            .flatten()
            .filter(|r| r.strong_count() > 0)
            .count()
    }
}

/// An entry count or index as the 32-bit [`Entries`] keep it.
fn entry_count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A subscriber's prefixes with the routing instance of each: the base ones, then the VPRNs'.
fn with_instances<'a>(
    base: &'a [Prefix],
    vprn: &'a [VprnPrefix],
) -> impl Iterator<Item = (RoutingInstance, Prefix)> + 'a {
    base.iter()
        .map(|&prefix| (RoutingInstance::Base, prefix))
        .chain(
            vprn.iter()
                .map(|p| (RoutingInstance::Vprn(p.vprn), p.prefix)),
        )
}

fn check_addresses(spec: &SubscriberPccSpec) -> Result<(), PccError> {
    let subscriber = &spec.name;
    let all: Vec<_> = with_instances(&spec.addresses, &spec.vprn_addresses).collect();
    for (i, (instance, prefix)) in all.iter().enumerate() {
        check_prefix(prefix).map_err(|kind| PccError::Address {
            subscriber: subscriber.clone(),
            instance: *instance,
            prefix: *prefix,
            kind,
        })?;
        if all[..i].contains(&(*instance, *prefix)) {
            return Err(PccError::AddressTwice {
                subscriber: subscriber.clone(),
                instance: *instance,
                prefix: *prefix,
            });
        }
    }
    Ok(())
}

/// A PCC policer as a colour-blind RFC 2698 trTCM, counting nothing itself (the rule counts).
fn policer_meter(p: &PccPolicer) -> Result<CompactTrTcm, crate::policer::PolicerError> {
    CompactTrTcm::new(p.pir_kbps, p.mbs, p.cir_kbps, p.cbs, p.packet_byte_offset)
}

/// What the packet path did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Forwarded (rule or no rule), DSCP possibly to remark.
    Forward(Option<u8>),
    /// A rule's drop action.
    Drop,
    /// A policer's red.
    Policed,
}

impl CompiledRules {
    /// Validates `rules` (of subscriber `subscriber`, named in errors) and compiles them.
    fn compile(subscriber: &str, rules: Vec<PccRuleSpec>) -> Result<CompiledRules, PccError> {
        let rule_error = |rule: &str, kind| PccError::Rule {
            subscriber: subscriber.to_string(),
            rule: rule.to_string(),
            kind,
        };
        if rules.len() > MAX_RULES {
            return Err(PccError::TooManyRules {
                subscriber: subscriber.to_string(),
                count: rules.len(),
            });
        }
        let mut actions = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            use super::RuleProblem as P;
            if rules[..i]
                .iter()
                .any(|r| r.direction == rule.direction && r.name == rule.name)
            {
                return Err(rule_error(&rule.name, P::DuplicateName));
            }
            if rule.flows.is_empty() {
                return Err(rule_error(&rule.name, P::NoFlow));
            }
            for (index, flow) in rule.flows.iter().enumerate() {
                check_match(&Match::Ip(*flow))
                    .map_err(|kind| rule_error(&rule.name, P::Flow { index, kind }))?;
            }
            let action = &rule.action;
            if action.disposition == Disposition::Drop
                && (action.rate_limit.is_some() || action.remark_dscp.is_some())
            {
                return Err(rule_error(&rule.name, P::DropWithForwardActions));
            }
            if let Some(dscp) = action.remark_dscp.filter(|&d| d > 63) {
                return Err(rule_error(&rule.name, P::RemarkDscp(dscp)));
            }
            let meter = action
                .rate_limit
                .as_ref()
                .map(policer_meter)
                .transpose()
                .map_err(|source| rule_error(&rule.name, P::Policer(source)))?;
            actions.push(RuleAction {
                meter: meter.unwrap_or_default(),
                policed: meter.is_some(),
                remark: action.remark_dscp,
                drop: action.disposition == Disposition::Drop,
            });
        }

        // Entries per direction in precedence order; the sort is stable, so equal precedences
        // keep the list's order.
        let mut order: Vec<usize> = (0..rules.len()).collect();
        order.sort_by_key(|&i| (rules[i].direction, rules[i].precedence));
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let (mut v4_egress, mut v6_egress) = (None, None);
        let mut far4: [Vec<(u32, u8)>; 2] = Default::default();
        for &i in &order {
            let rule = &rules[i];
            if rule.direction == Direction::Egress {
                v4_egress.get_or_insert(v4.len());
                v6_egress.get_or_insert(v6.len());
            }
            // `i` < MAX_RULES fits the entries' 16-bit rule index.
            for flow in &rule.flows {
                if let Some(entry) = V4Entry::of(flow, i as u16) {
                    v4.push(entry);
                    far4[rule.direction as usize].push(far_prefix4(flow, rule.direction));
                }
                v6.extend(V6Entry::of(flow, i as u16));
            }
        }
        let too_many = |source| PccError::TooManyFlows {
            subscriber: subscriber.to_string(),
            source,
        };
        let hot = HotRules {
            entries: Entries {
                v4_egress: entry_count(v4_egress.unwrap_or(v4.len())),
                v6_egress: entry_count(v6_egress.unwrap_or(v6.len())),
                v4: Block::from_slice(&v4).map_err(too_many)?,
                v6: Block::from_slice(&v6).map_err(too_many)?,
            },
            // `MAX_RULES` bounds it.
            rule_count: actions.len() as u32,
            shared: AtomicBool::new(false),
        };
        Ok(CompiledRules {
            hot: Block::from_vec(vec![hot]).map_err(too_many)?,
            actions,
            far4: far4.each_ref().map(|prefixes| FarSummary::new(prefixes)),
            rules,
        })
    }

    /// What the packet path reads (the stage keeps where it is in its slot).
    #[inline(always)]
    pub(crate) fn hot(&self) -> &HotRules {
        // `compile` makes the block of exactly one item.
        &self.hot[0]
    }
}

impl HotRules {
    /// Hints the CPU to fetch this line, where an IPv6 packet of a subscriber with a rule
    /// list of its own finds its entries (shared rules' line is in the cache already).
    #[inline]
    pub(crate) fn prefetch(&self) {
        crate::fdb::prefetch_read(self);
    }

    /// Rules in the list (each has an action and, per subscriber, a state line).
    #[inline(always)]
    pub(crate) fn rule_count(&self) -> usize {
        self.rule_count as usize
    }

    /// The classifier entries.
    pub(crate) fn entries(&self) -> &Entries {
        &self.entries
    }

    /// True when several policies use these rules (so they are in the cache: see
    /// [`HotRules::shared`]).
    #[inline(always)]
    pub(crate) fn is_shared(&self) -> bool {
        self.shared.load(Ordering::Relaxed)
    }
}

/// The entries of `direction` among a family's `entries`, whose egress ones start at `egress`.
#[inline(always)]
fn of_direction<T>(entries: &[T], egress: u32, direction: Direction) -> &[T] {
    let (ingress, egress) = entries
        .split_at_checked(egress as usize)
        .unwrap_or_default();
    match direction {
        Direction::Ingress => ingress,
        Direction::Egress => egress,
    }
}

impl Entries {
    /// The entries a packet of `family` in `direction` is matched against.
    #[inline(always)]
    fn entries4(&self, direction: Direction) -> &[V4Entry] {
        of_direction(&self.v4, self.v4_egress, direction)
    }

    #[inline(always)]
    fn entries6(&self, direction: Direction) -> &[V6Entry] {
        of_direction(&self.v6, self.v6_egress, direction)
    }

    /// Hints the CPU to fetch the entries a packet of `family` in `direction` scans (up to
    /// [`crate::acl::PREFETCH_LINES`]: eight IPv4 entries wherever they start).
    #[inline]
    pub(crate) fn prefetch_entries(&self, family: IpFamily, direction: Direction) {
        let lines = crate::acl::PREFETCH_LINES;
        match family {
            IpFamily::V4 => crate::fdb::prefetch_slice(self.entries4(direction), lines),
            IpFamily::V6 => crate::fdb::prefetch_slice(self.entries6(direction), lines),
        }
    }

    /// The index of the rule of lowest precedence in `direction` that `key` matches.
    ///
    /// The scan tests addresses first and the rest only when they match: rules mostly differ
    /// by prefix, and subscribers mostly have the same services, so the branch is predictable.
    /// Always inlined: the stage calls it from several places now, and as a call it cost
    /// shared services ~80 instructions per packet (callgrind).
    #[inline(always)]
    pub(crate) fn classify(&self, key: &PacketKey, direction: Direction) -> Option<u16> {
        match key.family {
            Some(IpFamily::V4) => self
                .entries4(direction)
                .iter()
                .find(|e| e.addresses_match(key) && e.rest_matches(key))
                .map(V4Entry::rule),
            Some(IpFamily::V6) => self
                .entries6(direction)
                .iter()
                .find(|e| e.addresses_match(key) && e.rest_matches(key))
                .map(V6Entry::rule),
            None => None,
        }
    }
}

/// [`Entries::classify`] over a direction's IPv4 `entries` for a `key` whose candidates
/// among the summarised ones are `candidates` ([`HotRules::candidates4`]): the ruled-out
/// entries are skipped unread, the rest scanned in precedence order as the plain scan does.
#[inline(always)]
pub(crate) fn classify4_among(entries: &[V4Entry], key: &PacketKey, candidates: u8) -> Option<u16> {
    let (head, tail) = summarised(entries);
    let mut bits = candidates;
    while bits != 0 {
        if let Some(entry) = head.get(bits.trailing_zeros() as usize) {
            if entry.addresses_match(key) && entry.rest_matches(key) {
                return Some(entry.rule());
            }
        }
        bits &= bits - 1;
    }
    tail.iter()
        .find(|e| e.addresses_match(key) && e.rest_matches(key))
        .map(V4Entry::rule)
}

/// Hints the CPU to fetch the lines of the IPv4 `entries` of a direction that `candidates`
/// ([`HotRules::candidates4`]) leaves, and of the entries the summary does not cover.
#[inline]
pub(crate) fn prefetch_candidates4(entries: &[V4Entry], candidates: u8) {
    let (head, tail) = summarised(entries);
    let mut bits = candidates;
    while bits != 0 {
        if let Some(entry) = head.get(bits.trailing_zeros() as usize) {
            crate::fdb::prefetch_read(entry);
        }
        bits &= bits - 1;
    }
    crate::fdb::prefetch_slice(tail, crate::acl::PREFETCH_LINES);
}

/// A direction's IPv4 entries split into those a [`FarSummary`] covers and the rest.
#[inline(always)]
fn summarised(entries: &[V4Entry]) -> (&[V4Entry], &[V4Entry]) {
    entries.split_at(entries.len().min(SUMMARISED))
}

impl SubscriberPolicy {
    /// Validates `spec` and compiles it, sharing nothing with other policies (use a
    /// [`PccCompiler`] for that). Every error names the subscriber, the rule and what is
    /// wrong; nothing is built unless everything is valid.
    pub fn compile(spec: SubscriberPccSpec) -> Result<SubscriberPolicy, PccError> {
        PccCompiler::new().compile(spec)
    }

    fn with_rules(
        name: String,
        addresses: Vec<Prefix>,
        vprn_addresses: Vec<VprnPrefix>,
        rules: Arc<CompiledRules>,
    ) -> Result<Self, PccError> {
        let hot = rules.hot();
        let actions = &rules.actions;
        let too_many = |source| PccError::TooManyFlows {
            subscriber: name.clone(),
            source,
        };
        let subscriber = |direction: Direction| {
            let v4 = hot.entries.entries4(direction);
            StateLine {
                subscriber: ManuallyDrop::new(SubscriberLine {
                    aggregate: Counter::default(),
                    v4: NonNull::from(v4).cast(),
                    // `compile` bounds the count (an arena block of entries).
                    v4_len: v4.len() as u32,
                    rule_count: hot.rule_count,
                    far: rules.far4[direction as usize],
                }),
            }
        };
        let mut lines: Vec<StateLine> = actions
            .iter()
            .map(|&action| StateLine {
                rule: ManuallyDrop::new(RuleState {
                    buckets: if action.policed {
                        action.meter.full(0)
                    } else {
                        [0; 3]
                    }
                    .map(AtomicU64::new),
                    forwarded: Counter::default(),
                    action,
                }),
            })
            .collect();
        lines.extend(Direction::ALL.map(subscriber));
        lines.extend(
            (0..actions.len().div_ceil(DROPPED_PER_LINE)).map(|_| StateLine {
                dropped: ManuallyDrop::new(DroppedLine::default()),
            }),
        );
        // `MAX_RULES` + 1 lines fit a chunk many times over, but the error is mapped all the
        // same rather than assumed away.
        let lines = Block::from_vec(lines).map_err(too_many)?;
        Ok(SubscriberPolicy {
            rules,
            lines,
            name,
            addresses,
            vprn_addresses,
        })
    }

    /// The spec this policy was compiled from (a copy: the rules are shared).
    pub fn spec(&self) -> SubscriberPccSpec {
        SubscriberPccSpec {
            name: self.name.clone(),
            addresses: self.addresses.clone(),
            vprn_addresses: self.vprn_addresses.clone(),
            rules: self.rules.rules.clone(),
        }
    }

    /// The subscriber's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The addresses it owns in the base routing instance.
    pub fn addresses(&self) -> &[Prefix] {
        &self.addresses
    }

    /// The addresses it owns inside VPRNs.
    pub fn vprn_addresses(&self) -> &[VprnPrefix] {
        &self.vprn_addresses
    }

    /// Every prefix it owns with its routing instance: the base ones, then the VPRNs'.
    pub fn owned_prefixes(&self) -> impl Iterator<Item = (RoutingInstance, Prefix)> + '_ {
        with_instances(&self.addresses, &self.vprn_addresses)
    }

    /// Its rules, in the spec's order.
    pub fn rules(&self) -> &[PccRuleSpec] {
        &self.rules.rules
    }

    /// True when this policy and `other` share one compiled copy of their rules (see
    /// [`PccCompiler`]).
    pub fn shares_rules_with(&self, other: &SubscriberPolicy) -> bool {
        Arc::ptr_eq(&self.rules, &other.rules)
    }

    /// True when the subscriber has no rule (no services).
    pub fn has_no_rules(&self) -> bool {
        self.rules.actions.is_empty()
    }

    /// The subscriber's line of `direction` (see [`SubscriberLine`]).
    pub(crate) fn line(&self, direction: Direction) -> &SubscriberLine {
        // SAFETY: the policy is alive while `self` is borrowed.
        unsafe { self.state_block().line(direction) }
    }

    /// The rules' lines, indexed like the rules.
    fn rule_lines(&self) -> &[RuleState] {
        // SAFETY: as for `line`, with the compiled rules' count.
        unsafe { self.state_block().rules(self.rules.actions.len()) }
    }

    /// The rules' dropped volumes (see [`dropped_counter`]).
    fn dropped_lines(&self) -> &[DroppedLine] {
        // SAFETY: as for `rule_lines`.
        unsafe { self.state_block().dropped(self.rules.actions.len()) }
    }

    /// Where the state block is, for the stage's slot: valid as long as the policy lives.
    pub(crate) fn state_block(&self) -> StateBlock {
        let lines = NonNull::from(&*self.lines);
        // The subscriber's first line, after one line per rule (`with_rules`), with the whole
        // block's provenance.
        let subscriber = lines
            .cast::<StateLine>()
            .as_ptr()
            .wrapping_add(self.rules.actions.len());
        StateBlock(NonNull::new(subscriber).unwrap_or(lines.cast()))
    }

    /// The subscriber's volume forwarded in `direction`.
    fn aggregate(&self, direction: Direction) -> Volume {
        self.line(direction).aggregate.read()
    }

    /// The counters now (safe to call while the stage runs).
    pub fn counters(&self) -> SubscriberCounters {
        SubscriberCounters {
            ingress: self.aggregate(Direction::Ingress),
            egress: self.aggregate(Direction::Egress),
            rules: self
                .rules
                .rules
                .iter()
                .zip(self.rule_lines().iter())
                .enumerate()
                .map(|(i, (spec, state))| RuleCounters {
                    name: spec.name.clone(),
                    direction: spec.direction,
                    account: spec.action.account,
                    forwarded: state.forwarded.read(),
                    dropped: dropped_counter(self.dropped_lines(), i)
                        .map_or_else(Volume::default, Counter::read),
                    tokens: state
                        .action
                        .policed
                        .then(|| PolicerState::from_buckets(state.buckets()).tokens()),
                })
                .collect(),
        }
    }

    /// Takes over `old`'s aggregate counters, and for every rule `old` has under the same
    /// direction and name, its counters and policer buckets (capped to the new bucket sizes,
    /// so a lowered rate grants no burst). Called by the stage, the only writer, just before
    /// this policy replaces `old`.
    pub(crate) fn carry_over(&self, old: &SubscriberPolicy) {
        for direction in Direction::ALL {
            let aggregate = &self.line(direction).aggregate;
            aggregate.set(old.line(direction).aggregate.read());
        }
        for (rule, (spec, state)) in self.rules.rules.iter().zip(self.rule_lines()).enumerate() {
            let Some(i) = old
                .rules
                .rules
                .iter()
                .position(|r| r.direction == spec.direction && r.name == spec.name)
            else {
                continue;
            };
            let Some(previous) = old.rule_lines().get(i) else {
                continue;
            };
            state.forwarded.set(previous.forwarded.read());
            if let (Some(new), Some(old)) = (
                dropped_counter(self.dropped_lines(), rule),
                dropped_counter(old.dropped_lines(), i),
            ) {
                new.set(old.read());
            }
            if state.action.policed && previous.action.policed {
                state.set_buckets(state.action.meter.reconfigure(previous.buckets()));
            }
        }
    }

    /// The compiled rules, which the stage keeps in its slot.
    pub(crate) fn compiled(&self) -> &Arc<CompiledRules> {
        &self.rules
    }
}

/// Hints the CPU to fetch what [`apply`] will touch for a packet of the subscriber of state
/// block `block` (of `rule_count` rules) that `rule` matched (if any), besides the subscriber's
/// line (fetched first): the rule's line, which holds its action too. (The dropped volume's
/// line is left to the packets that are dropped.)
#[inline]
pub(crate) fn prefetch_rule(block: StateBlock, rule_count: usize, rule: Option<u16>) {
    if let Some(rule) = rule {
        crate::fdb::prefetch_read(block.rule_addr(usize::from(rule), rule_count));
    }
}

/// Runs the action and policer of `rule` (none: forward) of the subscriber of `line` (of the
/// packet's direction), whose rules' lines are `states` and dropped volumes `dropped`, on a
/// packet of `octets` IP bytes at `now_ns`, and counts it.
#[inline(always)]
pub(crate) fn apply(
    line: &SubscriberLine,
    states: &[RuleState],
    dropped: &[DroppedLine],
    rule: Option<u16>,
    octets: u64,
    now_ns: u64,
) -> Outcome {
    let rule = rule.map(usize::from);
    let outcome = match rule.and_then(|i| Some((states.get(i)?, dropped_counter(dropped, i)?))) {
        None => Outcome::Forward(None),
        Some((state, dropped)) => state.apply(dropped, octets, now_ns),
    };
    if let Outcome::Forward(_) = outcome {
        line.aggregate.add(octets);
    }
    outcome
}

impl RuleState {
    #[inline(always)]
    fn buckets(&self) -> [u64; 3] {
        self.buckets.each_ref().map(|b| b.load(Ordering::Relaxed))
    }

    #[inline(always)]
    fn set_buckets(&self, buckets: [u64; 3]) {
        for (cell, value) in self.buckets.iter().zip(buckets) {
            cell.store(value, Ordering::Relaxed);
        }
    }

    /// Runs this rule's action on a packet of `octets` at `now_ns`: everything but a dropped
    /// packet's volume (`dropped`) on this line.
    #[inline(always)]
    fn apply(&self, dropped: &Counter, octets: u64, now_ns: u64) -> Outcome {
        let action = &self.action;
        if action.drop {
            dropped.add(octets);
            return Outcome::Drop;
        }
        if action.policed {
            let mut buckets = self.buckets();
            let colour = action.meter.police(&mut buckets, now_ns, octets as usize);
            self.set_buckets(buckets);
            if colour == Colour::Red {
                dropped.add(octets);
                return Outcome::Policed;
            }
        }
        self.forwarded.add(octets);
        Outcome::Forward(action.remark)
    }
}
