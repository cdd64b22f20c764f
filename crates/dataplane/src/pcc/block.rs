//! What the packet path reads of a compiled PCC policy, packed into one allocation of cache
//! lines of words, so that a packet of a subscriber reads a handful of lines that sit next to
//! each other instead of following pointers from object to object.
//!
//! A **rules block** holds, line by line:
//!
//! * line 0, the header: the layout (entry counts per family and direction, where the actions
//!   and the rules' state are) in words 0–3; words 4–7 are the subscriber's aggregate
//!   forwarded packets and octets per direction when the block also holds the state;
//! * the IPv4 **far-prefix summary**: per IPv4 entry, the prefix on the far side of the
//!   subscriber (destination for ingress entries, source for egress ones) as one word, eight
//!   to a line. Rules mostly differ by that prefix, so a scan of this one line rejects most
//!   entries and the packet then reads only the entries it did not reject;
//! * the IPv4 entries ([`V4Entry::to_words`], two to a line), then the IPv6 entries (one per
//!   two lines), each family's ingress entries in precedence order then its egress ones;
//! * per rule, an action line (drop and remark flags, the policer's [`Metering`]).
//!
//! A **state block** holds the aggregate counters in words 4–7 of its line 0 and one line per
//! rule: policer buckets, forwarded and dropped packets and octets.
//!
//! A subscriber with a rule list of its own has one block that is both: each rule's action
//! line is followed by its state line (the pair is one 128-byte span the stage prefetches at
//! once). Subscribers whose rule lists are equal share one rules block, which the cache keeps,
//! and each has a small state block of its own. The header says which by where the state
//! lines are (`state_at`, `stride`), so the packet path does not branch on it.
//!
//! Everything is an [`AtomicU64`]: the state is written by the stage and read by the control
//! side at any time (relaxed loads and stores, plain moves on the targets brasa runs on); the
//! rest is written once, before the block is shared, and only read after. Lines are indexed
//! with `get`, so a block that does not match its header (which the builder here never makes)
//! reads as zeros and writes nowhere instead of panicking.

use super::policy::Outcome;
use super::spec::Direction;
use crate::acl::{prefix_word_matches, IpFamily, PacketKey, V4Entry, V6Entry};
use crate::policer::{Colour, Metering, PolicerState};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One cache line of words.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub(crate) struct Line([AtomicU64; 8]);

const _: () = assert!(std::mem::size_of::<Line>() == 64);

/// The line of zeros a missing line reads as.
static ZEROS: Line = Line([const { AtomicU64::new(0) }; 8]);

impl Line {
    #[inline(always)]
    fn get(&self, word: usize) -> u64 {
        self.0[word % 8].load(Ordering::Relaxed)
    }

    #[inline(always)]
    fn set(&self, word: usize, value: u64) {
        self.0[word % 8].store(value, Ordering::Relaxed);
    }

    /// Adds one packet of `octets` to the counter in words `at` and `at + 1`. Load and store,
    /// not `fetch_add`: the stage is the only writer.
    #[inline(always)]
    fn count(&self, at: usize, octets: u64) {
        self.set(at, self.get(at) + 1);
        self.set(at + 1, self.get(at + 1) + octets);
    }
}

/// A block of lines.
pub(crate) type Block = Arc<[Line]>;

#[inline(always)]
fn line(block: &[Line], at: usize) -> &Line {
    block.get(at).unwrap_or(&ZEROS)
}

/// Words of the header's layout, then of the aggregate counters.
const AGGREGATE_AT: usize = 4;

/// A state line's words: buckets (three), forwarded packets and octets, dropped ones.
const BUCKETS_AT: usize = 0;
const FORWARDED_AT: usize = 3;
const DROPPED_AT: usize = 5;

/// An action line's words: the flags, then the policer's metering fields.
const DROP: u64 = 1;
const REMARK: u64 = 1 << 1;
const POLICED: u64 = 1 << 2;
const REMARK_DSCP_SHIFT: u32 = 8;
const METERING_AT: usize = 1;

/// Where things are in a rules block (its header's words 0–3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Layout {
    v4_ingress: u32,
    v4: u32,
    v6_ingress: u32,
    v6: u32,
    /// Line of rule 0's action in the rules block; rule `i`'s is `stride` lines further.
    actions_at: u32,
    /// Line of rule 0's state in the state block; rule `i`'s is `stride` lines further.
    state_at: u32,
    stride: u32,
    rules: u32,
}

impl Layout {
    #[inline(always)]
    fn read(rules: &[Line]) -> Layout {
        let header = line(rules, 0);
        let pair = |word: usize| {
            let w = header.get(word);
            (w as u32, (w >> 32) as u32)
        };
        let (v4_ingress, v4) = pair(0);
        let (v6_ingress, v6) = pair(1);
        let (actions_at, state_at) = pair(2);
        let (stride, rules) = pair(3);
        Layout {
            v4_ingress,
            v4,
            v6_ingress,
            v6,
            actions_at,
            state_at,
            stride,
            rules,
        }
    }

    fn write(&self, header: &Line) {
        let pair = |low: u32, high: u32| u64::from(low) | u64::from(high) << 32;
        header.set(0, pair(self.v4_ingress, self.v4));
        header.set(1, pair(self.v6_ingress, self.v6));
        header.set(2, pair(self.actions_at, self.state_at));
        header.set(3, pair(self.stride, self.rules));
    }

    const SUMMARY_AT: usize = 1;

    #[inline(always)]
    fn entries4_at(&self) -> usize {
        Self::SUMMARY_AT + (self.v4 as usize).div_ceil(8)
    }

    #[inline(always)]
    fn entries6_at(&self) -> usize {
        self.entries4_at() + (self.v4 as usize).div_ceil(2)
    }

    /// The IPv4 entries of `direction`, as a range of entry indexes.
    #[inline(always)]
    fn range4(&self, direction: Direction) -> Range<usize> {
        direction_range(self.v4_ingress, self.v4, direction)
    }

    /// The IPv6 entries of `direction`.
    #[inline(always)]
    fn range6(&self, direction: Direction) -> Range<usize> {
        direction_range(self.v6_ingress, self.v6, direction)
    }

    #[inline(always)]
    fn action_line(&self, rule: usize) -> usize {
        self.actions_at as usize + rule * self.stride as usize
    }

    #[inline(always)]
    fn state_line(&self, rule: usize) -> usize {
        self.state_at as usize + rule * self.stride as usize
    }
}

/// Of `total` entries, the first `ingress` ingress ones, the rest egress: those of `direction`.
#[inline(always)]
fn direction_range(ingress: u32, total: u32, direction: Direction) -> Range<usize> {
    let split = ingress.min(total) as usize;
    match direction {
        Direction::Ingress => 0..split,
        Direction::Egress => split..total as usize,
    }
}

/// One rule's action as the packet path reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ActionWords {
    /// The rule's drop action.
    pub drop: bool,
    /// `Some(dscp)`: remark forwarded packets.
    pub remark: Option<u8>,
    /// The policer's metering fields.
    pub metering: Option<Metering>,
}

/// What a rules block is built from: a list's entries in the order of [`Layout`] and its
/// actions by rule index.
pub(crate) struct Compiled<'a> {
    pub v4: &'a [V4Entry],
    pub v4_ingress: usize,
    pub v6: &'a [V6Entry],
    pub v6_ingress: usize,
    pub actions: &'a [ActionWords],
    /// Initial policer buckets per rule.
    pub buckets: &'a [[u64; 3]],
}

impl Compiled<'_> {
    /// The block of a subscriber with this rule list to itself: rules, actions and state.
    pub(crate) fn own_block(&self) -> Block {
        self.block(true)
    }

    /// The rules block subscribers with this list share (no state: see [`Compiled::state_block`]).
    pub(crate) fn shared_block(&self) -> Block {
        self.block(false)
    }

    /// A subscriber's state block beside a shared rules block.
    pub(crate) fn state_block(&self) -> Block {
        let lines: Vec<Line> = (0..1 + self.actions.len())
            .map(|_| Line::default())
            .collect();
        for (state, buckets) in lines.iter().skip(1).zip(self.buckets) {
            write_buckets(state, *buckets);
        }
        Block::from(lines)
    }

    fn block(&self, with_state: bool) -> Block {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let mut layout = Layout {
            v4_ingress: count(self.v4_ingress),
            v4: count(self.v4.len()),
            v6_ingress: count(self.v6_ingress),
            v6: count(self.v6.len()),
            rules: count(self.actions.len()),
            ..Layout::default()
        };
        let actions_at = layout.entries6_at() + 2 * self.v6.len();
        layout.actions_at = count(actions_at);
        if with_state {
            layout.state_at = count(actions_at + 1);
            layout.stride = 2;
        } else {
            layout.state_at = 1;
            layout.stride = 1;
        }
        let lines = actions_at + layout.stride as usize * self.actions.len();
        let block: Vec<Line> = (0..lines).map(|_| Line::default()).collect();
        // Every index below is within `lines` by the layout's arithmetic; `set` skips any
        // that were not rather than panic.
        let set = |at: usize, word: usize, value: u64| {
            if let Some(line) = block.get(at) {
                line.set(word, value);
            }
        };
        if let Some(header) = block.first() {
            layout.write(header);
        }
        for (j, entry) in self.v4.iter().enumerate() {
            let words = entry.to_words();
            let far = if j < self.v4_ingress {
                words[1]
            } else {
                words[0]
            };
            set(Layout::SUMMARY_AT + j / 8, j % 8, far);
            let at = layout.entries4_at() + j / 2;
            for (k, word) in words.into_iter().enumerate() {
                set(at, (j % 2) * V4Entry::WORDS + k, word);
            }
        }
        for (j, entry) in self.v6.iter().enumerate() {
            let at = layout.entries6_at() + 2 * j;
            for (k, word) in entry.to_words().into_iter().enumerate() {
                set(at + k / 8, k % 8, word);
            }
        }
        for (i, action) in self.actions.iter().enumerate() {
            let at = layout.action_line(i);
            let mut flags = 0;
            if action.drop {
                flags |= DROP;
            }
            if let Some(dscp) = action.remark {
                flags |= REMARK | u64::from(dscp) << REMARK_DSCP_SHIFT;
            }
            if let Some(metering) = &action.metering {
                flags |= POLICED;
                for (k, word) in metering.to_words().into_iter().enumerate() {
                    set(at, METERING_AT + k, word);
                }
            }
            set(at, 0, flags);
            if let (true, Some(buckets), Some(state)) = (
                with_state,
                self.buckets.get(i),
                block.get(layout.state_line(i)),
            ) {
                write_buckets(state, *buckets);
            }
        }
        Block::from(block)
    }
}

fn write_buckets(state: &Line, buckets: [u64; 3]) {
    for (k, value) in buckets.into_iter().enumerate() {
        state.set(BUCKETS_AT + k, value);
    }
}

/// Hints the CPU to fetch what every packet of a subscriber reads first: the header and
/// summary line of its own block (adjacent), or, when it shares a rules block, its state
/// block's line 0 alone (a rules block read by every packet of its subscribers stays in the
/// cache, and prefetching lines already there measured slower: each takes a slot in the
/// queue the misses wait in).
#[inline(always)]
pub(crate) fn prefetch_head(rules: &[Line], state: &[Line]) {
    if std::ptr::eq(rules, state) {
        crate::fdb::prefetch_span(rules.as_ptr().cast::<u8>(), 128.min(64 * rules.len()), 2);
    } else {
        crate::fdb::prefetch_read(state.as_ptr());
    }
}

/// A subscriber's blocks as the packet path reads them.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    rules: &'a [Line],
    state: &'a [Line],
    layout: Layout,
}

impl<'a> View<'a> {
    /// Reads the header of `rules`; `state` is the subscriber's state block (`rules` itself
    /// when the list is the subscriber's own).
    #[inline(always)]
    pub(crate) fn new(rules: &'a [Line], state: &'a [Line]) -> Self {
        View {
            rules,
            state,
            layout: Layout::read(rules),
        }
    }

    /// True when the subscriber has no rule (no services).
    #[inline(always)]
    pub(crate) fn has_no_rules(&self) -> bool {
        self.layout.rules == 0
    }

    #[inline(always)]
    fn entry4(&self, j: usize) -> V4Entry {
        let at = line(self.rules, self.layout.entries4_at() + j / 2);
        let base = (j % 2) * V4Entry::WORDS;
        V4Entry::from_words(std::array::from_fn(|k| at.get(base + k)))
    }

    #[inline(always)]
    fn entry6(&self, j: usize) -> V6Entry {
        let at = self.layout.entries6_at() + 2 * j;
        V6Entry::from_words(std::array::from_fn(|k| {
            line(self.rules, at + k / 8).get(k % 8)
        }))
    }

    /// The IPv4 entries of `direction` from entry `from` on whose far prefix `key` matches,
    /// in order.
    #[inline(always)]
    fn candidates4(
        &self,
        key: &PacketKey,
        direction: Direction,
        from: usize,
    ) -> impl Iterator<Item = usize> + 'a {
        let far = match direction {
            Direction::Ingress => key.dst4,
            Direction::Egress => key.src4,
        };
        let rules = self.rules;
        let range = self.layout.range4(direction);
        (range.start.max(from)..range.end).filter(move |&j| {
            prefix_word_matches(line(rules, Layout::SUMMARY_AT + j / 8).get(j % 8), far)
        })
    }

    /// True when the rules block is shared, hence in the cache (see [`prefetch_head`]).
    #[inline(always)]
    fn shared(&self) -> bool {
        !std::ptr::eq(self.rules, self.state)
    }

    /// Hints the CPU to fetch the entries a packet will be matched against, unless the rules
    /// block is shared: the IPv4 entry the summary does not reject first, or the first IPv6
    /// entries of the direction. Returns the entry [`View::classify_from`] can start at (no
    /// entry before it can match).
    #[inline(always)]
    pub(crate) fn prefetch_entries(&self, key: &PacketKey, direction: Direction) -> usize {
        let prefetch = !self.shared();
        match key.family {
            Some(IpFamily::V4) => {
                let Some(j) = self.candidates4(key, direction, 0).next() else {
                    return self.layout.v4 as usize;
                };
                match self.rules.get(self.layout.entries4_at() + j / 2) {
                    Some(entry) if prefetch => crate::fdb::prefetch_read(entry),
                    _ => {}
                }
                j
            }
            Some(IpFamily::V6) => {
                let range = self.layout.range6(direction);
                let from = self.layout.entries6_at() + 2 * range.start;
                match self.rules.get(from..from + 2 * range.len()) {
                    Some(lines) if prefetch => {
                        crate::fdb::prefetch_slice(lines, crate::acl::PREFETCH_LINES)
                    }
                    _ => {}
                }
                range.start
            }
            None => 0,
        }
    }

    /// The index of the rule of lowest precedence in `direction` that `key` matches.
    #[inline(always)]
    pub(crate) fn classify(&self, key: &PacketKey, direction: Direction) -> Option<u16> {
        self.classify_from(key, direction, 0)
    }

    /// [`View::classify`] with the entries before `from` (of the packet's family) skipped.
    #[inline(always)]
    pub(crate) fn classify_from(
        &self,
        key: &PacketKey,
        direction: Direction,
        from: usize,
    ) -> Option<u16> {
        match key.family {
            Some(IpFamily::V4) => self
                .candidates4(key, direction, from)
                .map(|j| self.entry4(j))
                .find(|e| e.addresses_match(key) && e.rest_matches(key))
                .map(|e| e.rule()),
            Some(IpFamily::V6) => {
                let range = self.layout.range6(direction);
                (range.start.max(from)..range.end)
                    .map(|j| self.entry6(j))
                    .find(|e| e.addresses_match(key) && e.rest_matches(key))
                    .map(|e| e.rule())
            }
            None => None,
        }
    }

    /// Hints the CPU to fetch rule `rule`'s state line, and its action line (the line before
    /// it) when the rules block is the subscriber's own.
    #[inline(always)]
    pub(crate) fn prefetch_rule(&self, rule: u16) {
        let rule = usize::from(rule);
        if !self.shared() {
            if let Some(action) = self.rules.get(self.layout.action_line(rule)) {
                crate::fdb::prefetch_read(action);
            }
        }
        if let Some(state) = self.state.get(self.layout.state_line(rule)) {
            crate::fdb::prefetch_read(state);
        }
    }

    /// Runs the action and policer of `rule` (none: forward) on a packet of `octets` IP bytes
    /// at `now_ns`, and counts it.
    #[inline(always)]
    pub(crate) fn apply(
        &self,
        rule: Option<u16>,
        direction: Direction,
        octets: u64,
        now_ns: u64,
    ) -> Outcome {
        let outcome = match rule.map(usize::from) {
            Some(i) if i < self.layout.rules as usize => {
                let (Some(action), Some(state)) = (
                    self.rules.get(self.layout.action_line(i)),
                    self.state.get(self.layout.state_line(i)),
                ) else {
                    return Outcome::Forward(None);
                };
                apply_rule(action, state, octets, now_ns)
            }
            _ => Outcome::Forward(None),
        };
        if let (Outcome::Forward(_), Some(state)) = (outcome, self.state.first()) {
            state.count(AGGREGATE_AT + 2 * direction as usize, octets);
        }
        outcome
    }
}

#[inline(always)]
fn apply_rule(action: &Line, state: &Line, octets: u64, now_ns: u64) -> Outcome {
    let flags = action.get(0);
    if flags & DROP != 0 {
        state.count(DROPPED_AT, octets);
        return Outcome::Drop;
    }
    if flags & POLICED != 0 {
        let metering = Metering::from_words(std::array::from_fn(|k| action.get(METERING_AT + k)));
        let mut policer = PolicerState::from_buckets(read_buckets(state));
        let colour = policer.meter(&metering, now_ns, octets as usize, Colour::Green);
        write_buckets(state, policer.buckets());
        if colour == Colour::Red {
            state.count(DROPPED_AT, octets);
            return Outcome::Policed;
        }
    }
    state.count(FORWARDED_AT, octets);
    let remark = (flags & REMARK != 0).then_some((flags >> REMARK_DSCP_SHIFT) as u8);
    Outcome::Forward(remark)
}

fn read_buckets(state: &Line) -> [u64; 3] {
    std::array::from_fn(|k| state.get(BUCKETS_AT + k))
}

/// One rule's state as the control side reads and carries it over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RuleState {
    /// Forwarded packets and octets.
    pub forwarded: (u64, u64),
    /// Dropped packets and octets.
    pub dropped: (u64, u64),
    /// Policer buckets ([`PolicerState::buckets`]).
    pub buckets: [u64; 3],
}

/// The control side's access to a subscriber's state block.
impl View<'_> {
    /// Forwarded packets and octets in `direction`.
    pub(crate) fn aggregate(&self, direction: Direction) -> (u64, u64) {
        let at = AGGREGATE_AT + 2 * direction as usize;
        let state = line(self.state, 0);
        (state.get(at), state.get(at + 1))
    }

    pub(crate) fn set_aggregate(&self, direction: Direction, (packets, octets): (u64, u64)) {
        let at = AGGREGATE_AT + 2 * direction as usize;
        if let Some(state) = self.state.first() {
            state.set(at, packets);
            state.set(at + 1, octets);
        }
    }

    /// Rule `rule`'s state.
    pub(crate) fn rule_state(&self, rule: usize) -> RuleState {
        let state = line(self.state, self.layout.state_line(rule));
        RuleState {
            forwarded: (state.get(FORWARDED_AT), state.get(FORWARDED_AT + 1)),
            dropped: (state.get(DROPPED_AT), state.get(DROPPED_AT + 1)),
            buckets: read_buckets(state),
        }
    }

    pub(crate) fn set_rule_state(&self, rule: usize, value: RuleState) {
        let Some(state) = self.state.get(self.layout.state_line(rule)) else {
            return;
        };
        state.set(FORWARDED_AT, value.forwarded.0);
        state.set(FORWARDED_AT + 1, value.forwarded.1);
        state.set(DROPPED_AT, value.dropped.0);
        state.set(DROPPED_AT + 1, value.dropped.1);
        write_buckets(state, value.buckets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{IpMatch, PortRange, Prefix};
    use std::net::Ipv4Addr;

    fn compiled_with(actions: &[ActionWords], f: impl FnOnce(&Compiled<'_>)) {
        let flow = |i: u8| IpMatch {
            dst: Some(Prefix::new(Ipv4Addr::new(203, 0, i, 0), 24)),
            protocol: Some(17),
            dst_port: Some(PortRange::single(80)),
            ..IpMatch::default()
        };
        let v4: Vec<V4Entry> = (0..9u8)
            .filter_map(|i| V4Entry::of(&flow(i), u16::from(i) % 3))
            .collect();
        let buckets = vec![[7, 8, 9]; actions.len()];
        f(&Compiled {
            v4: &v4,
            v4_ingress: 5,
            v6: &[],
            v6_ingress: 0,
            actions,
            buckets: &buckets,
        });
    }

    const ACTIONS: [ActionWords; 3] = [
        ActionWords {
            drop: true,
            remark: None,
            metering: None,
        },
        ActionWords {
            drop: false,
            remark: Some(46),
            metering: None,
        },
        ActionWords {
            drop: false,
            remark: None,
            metering: None,
        },
    ];

    /// The own and the shared form lay the same entries and actions out, and each rule's
    /// state is where the header says, apart from every other rule's and the aggregate.
    #[test]
    fn own_and_shared_blocks_agree() {
        compiled_with(&ACTIONS, |compiled| {
            let own = compiled.own_block();
            let shared = compiled.shared_block();
            let state = compiled.state_block();
            for view in [View::new(&own, &own), View::new(&shared, &state)] {
                for j in 0..9 {
                    assert_eq!(view.entry4(j), compiled.v4[j]);
                }
                let mut key = PacketKey {
                    family: Some(IpFamily::V4),
                    dst4: u32::from(Ipv4Addr::new(203, 0, 7, 1)),
                    protocol: 17,
                    has_ports: true,
                    dst_port: 80,
                    ..PacketKey::default()
                };
                // 203.0.7.0/24 is the 8th entry: egress, since 5 are ingress.
                assert_eq!(view.classify(&key, Direction::Ingress), None);
                key.src4 = key.dst4;
                assert_eq!(view.classify(&key, Direction::Egress), Some(7 % 3));
                for i in 0..3 {
                    assert_eq!(view.rule_state(i).buckets, [7, 8, 9]);
                }
                assert_eq!(
                    view.apply(Some(0), Direction::Ingress, 100, 0),
                    Outcome::Drop
                );
                assert_eq!(
                    view.apply(Some(1), Direction::Egress, 50, 0),
                    Outcome::Forward(Some(46))
                );
                assert_eq!(
                    view.apply(Some(9), Direction::Egress, 20, 0),
                    Outcome::Forward(None)
                );
                assert_eq!(view.rule_state(0).dropped, (1, 100));
                assert_eq!(view.rule_state(1).forwarded, (1, 50));
                assert_eq!(
                    view.rule_state(2),
                    RuleState {
                        buckets: [7, 8, 9],
                        ..RuleState::default()
                    }
                );
                assert_eq!(view.aggregate(Direction::Ingress), (0, 0));
                assert_eq!(view.aggregate(Direction::Egress), (2, 70));
                assert!(!view.has_no_rules());
            }
        });
    }

    #[test]
    fn a_block_without_rules_or_lines_reads_as_empty() {
        compiled_with(&[], |compiled| {
            let own = compiled.own_block();
            assert!(View::new(&own, &own).has_no_rules());
        });
        let empty: Block = Block::from(Vec::new());
        let view = View::new(&empty, &empty);
        assert!(view.has_no_rules());
        let key = PacketKey {
            family: Some(IpFamily::V4),
            ..PacketKey::default()
        };
        assert_eq!(view.classify(&key, Direction::Ingress), None);
        assert_eq!(
            view.apply(Some(0), Direction::Ingress, 1, 0),
            Outcome::Forward(None)
        );
    }
}
