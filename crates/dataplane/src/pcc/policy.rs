//! One subscriber's compiled PCC policy: its rules as classifier entries in precedence order
//! per direction and family, each rule's action and policer, and — in the same object — the
//! mutable state that must outlive a packet: policer buckets and counters, as atomics.
//!
//! Why atomics: the control side keeps the `Arc` of every policy it installs and reads the
//! counters from it whenever it wants (accounting interims, `show` commands), without taking
//! the stage's lock, so reading never holds up a worker. The stage is the only writer (one
//! instance, shared by the workers behind [`crate::pipeline::Shared`], so one batch at a time):
//! an update is a relaxed load and a relaxed store, which compile to plain moves, and a reader
//! sees each counter whole, at most one batch old.

use super::spec::{Direction, PccPolicer, SubscriberPccSpec};
use super::PccError;
use crate::acl::{check_match, check_prefix, Disposition, IpFamily, Match, PacketKey, Prefix};
use crate::acl::{V4Entry, V6Entry};
use crate::policer::{ColourMode, Meter, PolicerConfig, PolicerParams, PolicerState, StatMode};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// The part of a rule the packet path reads, in one cache line with the state it writes.
#[derive(Debug)]
#[repr(C, align(64))]
struct RuleState {
    /// Policer buckets and clock ([`PolicerState::buckets`]); unused without a policer.
    buckets: [AtomicU64; 3],
    forwarded: Counter,
    dropped: Counter,
    /// `Some(dscp)`: remark forwarded packets.
    remark: Option<u8>,
    drop: bool,
}

/// One compiled rule: its state line, then its policer, whose metering fields come first
/// ([`PolicerParams`] is `repr(C)`), so a policed packet reads two adjacent lines. (Aligning
/// the pair to 128 bytes, for the adjacent-line prefetcher, measured no faster and costs a
/// quarter more memory.)
#[derive(Debug)]
#[repr(C, align(64))]
struct CompiledRule {
    state: RuleState,
    policer: Option<PolicerParams>,
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
/// [`SubscriberPolicy::compile`] away from the packet path, installed with
/// [`super::PccStage::install`] as one pointer swap.
///
/// `repr(C)`, aligned to a cache line: what the packet path reads to find the entries and
/// rules is the first line; the aggregate counters it writes, the second.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct SubscriberPolicy {
    /// IPv4 entries: ingress ones in precedence order, then egress ones from `v4_egress`.
    v4: Box<[V4Entry]>,
    /// IPv6 entries, likewise.
    v6: Box<[V6Entry]>,
    /// Indexed by the entries' rule index: the spec's rule order.
    rules: Box<[CompiledRule]>,
    v4_egress: usize,
    v6_egress: usize,
    /// Forwarded volume per direction ([`Direction`] order).
    aggregate: [Counter; 2],
    spec: SubscriberPccSpec,
}

/// A PCC policer as an RFC 2698 trTCM, counting nothing itself (the rule counts).
fn policer_params(p: &PccPolicer) -> Result<PolicerParams, crate::policer::PolicerError> {
    PolicerParams::new(PolicerConfig {
        meter: Meter::TrTcm {
            pir_kbps: p.pir_kbps,
            mbs: p.mbs,
            cir_kbps: p.cir_kbps,
            cbs: p.cbs,
        },
        colour_mode: ColourMode::Blind,
        packet_byte_offset: p.packet_byte_offset,
        stat_mode: StatMode::NoStats,
    })
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

impl SubscriberPolicy {
    /// Validates `spec` and compiles it. Every error names the subscriber, the rule and what
    /// is wrong; nothing is built unless everything is valid.
    pub fn compile(spec: SubscriberPccSpec) -> Result<SubscriberPolicy, PccError> {
        let subscriber = &spec.name;
        let rule_error = |rule: &str, kind| PccError::Rule {
            subscriber: subscriber.clone(),
            rule: rule.to_string(),
            kind,
        };
        if spec.rules.len() > MAX_RULES {
            return Err(PccError::TooManyRules {
                subscriber: subscriber.clone(),
                count: spec.rules.len(),
            });
        }
        for (i, prefix) in spec.addresses.iter().enumerate() {
            check_prefix(prefix).map_err(|kind| PccError::Address {
                subscriber: subscriber.clone(),
                prefix: *prefix,
                kind,
            })?;
            if spec.addresses[..i].contains(prefix) {
                return Err(PccError::AddressTwice {
                    subscriber: subscriber.clone(),
                    prefix: *prefix,
                });
            }
        }
        let mut policers = Vec::with_capacity(spec.rules.len());
        for (i, rule) in spec.rules.iter().enumerate() {
            use super::RuleProblem as P;
            if spec.rules[..i]
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
            let policer = action
                .rate_limit
                .as_ref()
                .map(policer_params)
                .transpose()
                .map_err(|source| rule_error(&rule.name, P::Policer(source)))?;
            policers.push(policer);
        }

        // Entries per direction in precedence order; the sort is stable, so equal precedences
        // keep the spec's order.
        let mut order: Vec<usize> = (0..spec.rules.len()).collect();
        order.sort_by_key(|&i| (spec.rules[i].direction, spec.rules[i].precedence));
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let (mut v4_egress, mut v6_egress) = (None, None);
        for &i in &order {
            let rule = &spec.rules[i];
            if rule.direction == Direction::Egress {
                v4_egress.get_or_insert(v4.len());
                v6_egress.get_or_insert(v6.len());
            }
            // `i` < MAX_RULES fits the entries' 16-bit rule index.
            for flow in &rule.flows {
                v4.extend(V4Entry::of(flow, i as u16));
                v6.extend(V6Entry::of(flow, i as u16));
            }
        }
        let rules = spec
            .rules
            .iter()
            .zip(policers)
            .map(|(rule, policer)| CompiledRule {
                state: RuleState {
                    buckets: policer
                        .map(|p| p.initial_state(0).buckets())
                        .unwrap_or_default()
                        .map(AtomicU64::new),
                    forwarded: Counter::default(),
                    dropped: Counter::default(),
                    remark: rule.action.remark_dscp,
                    drop: rule.action.disposition == Disposition::Drop,
                },
                policer,
            })
            .collect();
        Ok(SubscriberPolicy {
            aggregate: Default::default(),
            v4_egress: v4_egress.unwrap_or(v4.len()),
            v6_egress: v6_egress.unwrap_or(v6.len()),
            v4: v4.into_boxed_slice(),
            v6: v6.into_boxed_slice(),
            rules,
            spec,
        })
    }

    /// The spec this policy was compiled from.
    pub fn spec(&self) -> &SubscriberPccSpec {
        &self.spec
    }

    /// The subscriber's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The addresses it owns.
    pub fn addresses(&self) -> &[Prefix] {
        &self.spec.addresses
    }

    /// True when the subscriber has no rule (no services).
    pub fn has_no_rules(&self) -> bool {
        self.rules.is_empty()
    }

    /// The counters now (safe to call while the stage runs).
    pub fn counters(&self) -> SubscriberCounters {
        SubscriberCounters {
            ingress: self.aggregate[0].read(),
            egress: self.aggregate[1].read(),
            rules: self
                .spec
                .rules
                .iter()
                .zip(self.rules.iter())
                .map(|(spec, rule)| RuleCounters {
                    name: spec.name.clone(),
                    direction: spec.direction,
                    account: spec.action.account,
                    forwarded: rule.state.forwarded.read(),
                    dropped: rule.state.dropped.read(),
                    tokens: rule
                        .policer
                        .map(|_| PolicerState::from_buckets(rule.buckets()).tokens()),
                })
                .collect(),
        }
    }

    /// Takes over `old`'s aggregate counters, and for every rule `old` has under the same
    /// direction and name, its counters and policer buckets (capped to the new bucket sizes,
    /// so a lowered rate grants no burst). Called by the stage, the only writer, just before
    /// this policy replaces `old`.
    pub(crate) fn carry_over(&self, old: &SubscriberPolicy) {
        for (new, old) in self.aggregate.iter().zip(old.aggregate.iter()) {
            new.set(old.read());
        }
        for (spec, rule) in self.spec.rules.iter().zip(self.rules.iter()) {
            let Some(previous) = old
                .spec
                .rules
                .iter()
                .position(|r| r.direction == spec.direction && r.name == spec.name)
                .and_then(|i| old.rules.get(i))
            else {
                continue;
            };
            rule.state.forwarded.set(previous.state.forwarded.read());
            rule.state.dropped.set(previous.state.dropped.read());
            if let (Some(params), Some(_)) = (&rule.policer, &previous.policer) {
                let mut state = PolicerState::from_buckets(previous.buckets());
                state.reconfigure(params);
                rule.set_buckets(state.buckets());
            }
        }
    }

    /// The entries a packet of `family` in `direction` is matched against.
    #[inline(always)]
    fn entries4(&self, direction: Direction) -> &[V4Entry] {
        let (ingress, egress) = self.v4.split_at_checked(self.v4_egress).unwrap_or_default();
        match direction {
            Direction::Ingress => ingress,
            Direction::Egress => egress,
        }
    }

    #[inline(always)]
    fn entries6(&self, direction: Direction) -> &[V6Entry] {
        let (ingress, egress) = self.v6.split_at_checked(self.v6_egress).unwrap_or_default();
        match direction {
            Direction::Ingress => ingress,
            Direction::Egress => egress,
        }
    }

    /// Hints the CPU to fetch the policy's first two lines (table pointers, aggregate
    /// counters).
    #[inline]
    pub(crate) fn prefetch_header(&self) {
        let at = (self as *const Self).cast::<u8>();
        crate::fdb::prefetch_read(at);
        crate::fdb::prefetch_read(at.wrapping_add(64));
    }

    /// Hints the CPU to fetch the entries a packet of `family` in `direction` scans (up to
    /// four lines: eight IPv4 entries).
    #[inline]
    pub(crate) fn prefetch_entries(&self, family: IpFamily, direction: Direction) {
        let (at, bytes) = match family {
            IpFamily::V4 => {
                let entries = self.entries4(direction);
                (
                    entries.as_ptr().cast::<u8>(),
                    std::mem::size_of_val(entries),
                )
            }
            IpFamily::V6 => {
                let entries = self.entries6(direction);
                (
                    entries.as_ptr().cast::<u8>(),
                    std::mem::size_of_val(entries),
                )
            }
        };
        for offset in (0..bytes.min(256)).step_by(64) {
            crate::fdb::prefetch_read(at.wrapping_add(offset));
        }
    }

    /// Hints the CPU to fetch rule `rule`'s state and policer.
    #[inline]
    pub(crate) fn prefetch_rule(&self, rule: u16) {
        if let Some(rule) = self.rules.get(usize::from(rule)) {
            let at = (rule as *const CompiledRule).cast::<u8>();
            crate::fdb::prefetch_read(at);
            crate::fdb::prefetch_read(at.wrapping_add(64));
        }
    }

    /// The index of the rule of lowest precedence in `direction` that `key` matches.
    ///
    /// The scan tests addresses first and the rest only when they match: rules mostly differ
    /// by prefix, and subscribers mostly have the same services, so the branch is predictable.
    #[inline]
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

    /// Runs the action and policer of `rule` (none: forward) on a packet of `octets` IP bytes
    /// at `now_ns`, and counts it.
    #[inline]
    pub(crate) fn apply(
        &self,
        rule: Option<u16>,
        direction: Direction,
        octets: u64,
        now_ns: u64,
    ) -> Outcome {
        let outcome = match rule.and_then(|i| self.rules.get(usize::from(i))) {
            None => Outcome::Forward(None),
            Some(rule) => rule.apply(octets, now_ns),
        };
        if let Outcome::Forward(_) = outcome {
            self.aggregate[direction as usize].add(octets);
        }
        outcome
    }
}

impl CompiledRule {
    #[inline(always)]
    fn buckets(&self) -> [u64; 3] {
        self.state
            .buckets
            .each_ref()
            .map(|b| b.load(Ordering::Relaxed))
    }

    #[inline(always)]
    fn set_buckets(&self, buckets: [u64; 3]) {
        for (cell, value) in self.state.buckets.iter().zip(buckets) {
            cell.store(value, Ordering::Relaxed);
        }
    }

    #[inline(always)]
    fn apply(&self, octets: u64, now_ns: u64) -> Outcome {
        let state = &self.state;
        if state.drop {
            state.dropped.add(octets);
            return Outcome::Drop;
        }
        if let Some(params) = &self.policer {
            let mut policer = PolicerState::from_buckets(self.buckets());
            let colour = policer.police(
                params,
                now_ns,
                octets as usize,
                crate::policer::Colour::Green,
            );
            self.set_buckets(policer.buckets());
            if colour == crate::policer::Colour::Red {
                state.dropped.add(octets);
                return Outcome::Policed;
            }
        }
        state.forwarded.add(octets);
        Outcome::Forward(state.remark)
    }
}
