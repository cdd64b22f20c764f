//! One subscriber's compiled PCC policy: its rules as classifier entries in precedence order
//! per direction and family with each rule's action and policer ([`CompiledRules`], immutable
//! and shared by every subscriber whose rules are equal), and the subscriber's own mutable
//! state: policer buckets and counters, as atomics.
//!
//! What the packet path reads is packed into blocks of cache lines (`block`): a subscriber
//! whose rule list is its own has one block holding header, entries, actions and state, which
//! the stage fetches as a few adjacent lines; subscribers with equal lists share one rules
//! block, which stays in the cache, and each adds a state block of its own.
//!
//! Why share: operators give most subscribers the same few services (the SR OS script builds
//! the same service from the same parameters), so 100 000 subscribers usually hold a handful of
//! distinct rule lists ([`PccCompiler`] does the sharing).
//!
//! Why atomics: the control side keeps the `Arc` of every policy it installs and reads the
//! counters from it whenever it wants (accounting interims, `show` commands), without taking
//! the stage's lock, so reading never holds up a worker. The stage is the only writer (one
//! instance, shared by the workers behind [`crate::pipeline::Shared`], so one batch at a time):
//! an update is a relaxed load and a relaxed store, which compile to plain moves, and a reader
//! sees each counter whole, at most one batch old.

use super::block::{ActionWords, Block, Compiled, RuleState, View};
use super::spec::{Direction, PccPolicer, PccRuleSpec, SubscriberPccSpec};
use super::PccError;
use crate::acl::{check_match, check_prefix, Disposition, Match, Prefix};
use crate::acl::{V4Entry, V6Entry};
use crate::policer::{ColourMode, Meter, PolicerConfig, PolicerParams, PolicerState, StatMode};
use serde::Serialize;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, OnceLock, Weak};

/// Most rules one subscriber can have (rule indexes are 16-bit in the entries).
pub const MAX_RULES: usize = 1_024;

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

    fn of((packets, octets): (u64, u64)) -> Volume {
        Volume { packets, octets }
    }
}

/// A rule's action: the drop and remark flags and its policer.
#[derive(Debug)]
struct RuleAction {
    drop: bool,
    /// `Some(dscp)`: remark forwarded packets.
    remark: Option<u8>,
    policer: Option<PolicerParams>,
}

impl RuleAction {
    fn words(&self) -> ActionWords {
        ActionWords {
            drop: self.drop,
            remark: self.remark,
            metering: self.policer.as_ref().map(|p| *p.metering()),
        }
    }
}

/// The compiled form of one list of PCC rules: classifier entries per family, ingress ones in
/// precedence order then egress ones, and each rule's action, indexed by the rule's position
/// in the list. Immutable, so any number of subscribers share one (see [`PccCompiler`]).
#[derive(Debug)]
pub struct CompiledRules {
    /// IPv4 entries: ingress ones in precedence order, then egress ones from `v4_egress`.
    v4: Box<[V4Entry]>,
    /// IPv6 entries, likewise.
    v6: Box<[V6Entry]>,
    v4_egress: usize,
    v6_egress: usize,
    /// Indexed by the entries' rule index: the list's order.
    actions: Box<[RuleAction]>,
    /// The list it was compiled from.
    rules: Vec<PccRuleSpec>,
    /// The rules block of the subscribers that share the list, made when a second subscriber
    /// takes it (the first has them in its own block).
    shared: OnceLock<Block>,
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
/// The packet path reads only the two blocks (the stage keeps them in its slot); the name,
/// addresses and rule list here are the control side's.
#[derive(Debug)]
pub struct SubscriberPolicy {
    rules: Arc<CompiledRules>,
    /// The rules block: the subscriber's own (which is also `state`) or the shared one.
    block: Block,
    /// Aggregate counters and per-rule state.
    state: Block,
    name: String,
    addresses: Vec<Prefix>,
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
            return Ok(SubscriberPolicy::sharing(spec.name, spec.addresses, rules));
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
        Ok(SubscriberPolicy::owning(spec.name, spec.addresses, rules))
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

fn check_addresses(spec: &SubscriberPccSpec) -> Result<(), PccError> {
    let subscriber = &spec.name;
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
    Ok(())
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
            let policer = action
                .rate_limit
                .as_ref()
                .map(policer_params)
                .transpose()
                .map_err(|source| rule_error(&rule.name, P::Policer(source)))?;
            actions.push(RuleAction {
                policer,
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
        for &i in &order {
            let rule = &rules[i];
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
        Ok(CompiledRules {
            v4_egress: v4_egress.unwrap_or(v4.len()),
            v6_egress: v6_egress.unwrap_or(v6.len()),
            v4: v4.into_boxed_slice(),
            v6: v6.into_boxed_slice(),
            actions: actions.into_boxed_slice(),
            rules,
            shared: OnceLock::new(),
        })
    }

    /// Calls `f` with what the blocks are built from.
    fn with_compiled<T>(&self, f: impl FnOnce(&Compiled<'_>) -> T) -> T {
        let actions: Vec<ActionWords> = self.actions.iter().map(RuleAction::words).collect();
        let buckets: Vec<[u64; 3]> = self
            .actions
            .iter()
            .map(|action| {
                action
                    .policer
                    .map(|p| p.initial_state(0).buckets())
                    .unwrap_or_default()
            })
            .collect();
        f(&Compiled {
            v4: &self.v4,
            v4_ingress: self.v4_egress,
            v6: &self.v6,
            v6_ingress: self.v6_egress,
            actions: &actions,
            buckets: &buckets,
        })
    }
}

impl SubscriberPolicy {
    /// Validates `spec` and compiles it, sharing nothing with other policies (use a
    /// [`PccCompiler`] for that). Every error names the subscriber, the rule and what is
    /// wrong; nothing is built unless everything is valid.
    pub fn compile(spec: SubscriberPccSpec) -> Result<SubscriberPolicy, PccError> {
        PccCompiler::new().compile(spec)
    }

    /// A policy with `rules` in a block of its own, with its state.
    fn owning(name: String, addresses: Vec<Prefix>, rules: Arc<CompiledRules>) -> Self {
        let block = rules.with_compiled(|c| c.own_block());
        SubscriberPolicy {
            rules,
            state: block.clone(),
            block,
            name,
            addresses,
        }
    }

    /// A policy reading the shared block of `rules`, with a state block of its own.
    fn sharing(name: String, addresses: Vec<Prefix>, rules: Arc<CompiledRules>) -> Self {
        let block = rules
            .shared
            .get_or_init(|| rules.with_compiled(|c| c.shared_block()))
            .clone();
        let state = rules.with_compiled(|c| c.state_block());
        SubscriberPolicy {
            rules,
            block,
            state,
            name,
            addresses,
        }
    }

    /// The blocks the packet path reads: rules, then state (the same block when the rule list
    /// is the subscriber's own).
    pub(crate) fn blocks(&self) -> (&Block, &Block) {
        (&self.block, &self.state)
    }

    fn view(&self) -> View<'_> {
        View::new(&self.block, &self.state)
    }

    /// The spec this policy was compiled from (a copy: the rules are shared).
    pub fn spec(&self) -> SubscriberPccSpec {
        SubscriberPccSpec {
            name: self.name.clone(),
            addresses: self.addresses.clone(),
            rules: self.rules.rules.clone(),
        }
    }

    /// The subscriber's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The addresses it owns.
    pub fn addresses(&self) -> &[Prefix] {
        &self.addresses
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

    /// The counters now (safe to call while the stage runs).
    pub fn counters(&self) -> SubscriberCounters {
        let view = self.view();
        SubscriberCounters {
            ingress: Volume::of(view.aggregate(Direction::Ingress)),
            egress: Volume::of(view.aggregate(Direction::Egress)),
            rules: self
                .rules
                .rules
                .iter()
                .zip(self.rules.actions.iter())
                .enumerate()
                .map(|(i, (spec, action))| {
                    let state = view.rule_state(i);
                    RuleCounters {
                        name: spec.name.clone(),
                        direction: spec.direction,
                        account: spec.action.account,
                        forwarded: Volume::of(state.forwarded),
                        dropped: Volume::of(state.dropped),
                        tokens: action
                            .policer
                            .map(|_| PolicerState::from_buckets(state.buckets).tokens()),
                    }
                })
                .collect(),
        }
    }

    /// Takes over `old`'s aggregate counters, and for every rule `old` has under the same
    /// direction and name, its counters and policer buckets (capped to the new bucket sizes,
    /// so a lowered rate grants no burst). Called by the stage, the only writer, just before
    /// this policy replaces `old`.
    pub(crate) fn carry_over(&self, old: &SubscriberPolicy) {
        let (new_view, old_view) = (self.view(), old.view());
        for direction in [Direction::Ingress, Direction::Egress] {
            new_view.set_aggregate(direction, old_view.aggregate(direction));
        }
        let old_rules = &old.rules;
        for (i, (spec, action)) in self
            .rules
            .rules
            .iter()
            .zip(self.rules.actions.iter())
            .enumerate()
        {
            let Some(j) = old_rules
                .rules
                .iter()
                .position(|r| r.direction == spec.direction && r.name == spec.name)
            else {
                continue;
            };
            let Some(previous_action) = old_rules.actions.get(j) else {
                continue;
            };
            let previous = old_view.rule_state(j);
            let mut state = RuleState {
                buckets: new_view.rule_state(i).buckets,
                ..previous
            };
            if let (Some(params), Some(_)) = (&action.policer, &previous_action.policer) {
                let mut policer = PolicerState::from_buckets(previous.buckets);
                policer.reconfigure(params);
                state.buckets = policer.buckets();
            }
            new_view.set_rule_state(i, state);
        }
    }
}
