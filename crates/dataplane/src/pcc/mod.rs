//! Enforcement of PCC rules (Nokia SR OS subscriber services made of PCC rules): per
//! subscriber, rules by precedence per direction, each matching IPv4/IPv6 flows and forwarding,
//! dropping, rate-limiting (RFC 2698 trTCM), remarking DSCP and counting what it matches.
//!
//! * [`spec`]: the plain input — one [`SubscriberPccSpec`] per subscriber: the addresses it
//!   owns and the rules of all its active services. The control side compiles its model into it.
//! * [`SubscriberPolicy::compile`] validates a spec and builds the subscriber's compiled
//!   policy: classifier entries in precedence order per direction and family, actions,
//!   policers, and the rule and aggregate counters, in one object.
//! * [`PccStage`] is the pipeline stage (after `classify`): it finds the subscriber owning a
//!   packet's source (ingress rules) and the one owning its destination (egress rules) by
//!   longest-prefix match, classifies, polices, counts, and drops or remarks.
//! * [`testing`]: the one-port pipeline the stage's tests, fuzz target and benchmark share.
//!
//! State and counters of a rule are keyed by the subscriber, the rule's direction and its
//! name: installing a new policy for a subscriber carries them over for every rule that keeps
//! its name, and the subscriber's aggregate counters always. Counters are atomics inside the
//! policy, so the control side reads them from the `Arc` it installed while the workers run.

mod index;
mod policy;
pub mod spec;
mod stage;
pub mod testing;

pub use policy::{
    CompiledRules, PccCompiler, RuleCounters, SubscriberCounters, SubscriberPolicy, Volume,
    MAX_RULES,
};
pub use spec::*;
pub use stage::{PccStage, PccStats};

use crate::acl::{Prefix, RuleErrorKind};
use crate::policer::PolicerError;

/// What is wrong with one rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleProblem {
    /// Another rule of the subscriber has the same direction and name.
    #[error("another rule of the same direction has this name")]
    DuplicateName,
    /// The rule has no flow.
    #[error("the rule has no flow (at least one is needed)")]
    NoFlow,
    /// A flow is invalid.
    #[error("flow {index}: {kind}")]
    Flow {
        /// Position of the flow in the rule (from 0).
        index: usize,
        /// What is wrong.
        kind: RuleErrorKind,
    },
    /// The drop action with a rate limit or a DSCP remark.
    #[error("a dropping rule takes no rate limit and no DSCP remark")]
    DropWithForwardActions,
    /// A remark DSCP above 63.
    #[error("remark DSCP {0} is out of range: expected 0 to 63")]
    RemarkDscp(u8),
    /// The policer is invalid.
    #[error("policer: {0}")]
    Policer(PolicerError),
}

/// Why a policy was refused (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PccError {
    /// A rule is invalid.
    #[error("subscriber {subscriber:?}, PCC rule {rule:?}: {kind}")]
    Rule {
        /// The subscriber.
        subscriber: String,
        /// The rule's name.
        rule: String,
        /// What is wrong.
        kind: RuleProblem,
    },
    /// More than [`MAX_RULES`] rules.
    #[error("subscriber {subscriber:?} has {count} PCC rules: at most {MAX_RULES}")]
    TooManyRules {
        /// The subscriber.
        subscriber: String,
        /// Its rule count.
        count: usize,
    },
    /// An address prefix is invalid.
    #[error("subscriber {subscriber:?}, address {prefix} ({instance}): {kind}")]
    Address {
        /// The subscriber.
        subscriber: String,
        /// The routing instance of the prefix.
        instance: RoutingInstance,
        /// The prefix.
        prefix: Prefix,
        /// What is wrong.
        kind: RuleErrorKind,
    },
    /// An address prefix listed twice in one routing instance.
    #[error("subscriber {subscriber:?} lists address {prefix} ({instance}) twice")]
    AddressTwice {
        /// The subscriber.
        subscriber: String,
        /// The routing instance of the prefix.
        instance: RoutingInstance,
        /// The prefix.
        prefix: Prefix,
    },
    /// Another subscriber owns the prefix in the same routing instance.
    #[error(
        "subscriber {subscriber:?}: address {prefix} ({instance}) belongs to subscriber {owner:?}"
    )]
    AddressOwned {
        /// The subscriber.
        subscriber: String,
        /// The routing instance of the prefix.
        instance: RoutingInstance,
        /// The prefix.
        prefix: Prefix,
        /// Its owner.
        owner: String,
    },
    /// Every subscriber slot is taken.
    #[error("too many subscribers")]
    TooManySubscribers,
    /// More flows of one family than an arena block of entries holds.
    #[error("subscriber {subscriber:?}: too many flows: {source}")]
    TooManyFlows {
        /// The subscriber.
        subscriber: String,
        /// The arena's refusal.
        source: crate::arena::ArenaError,
    },
}

#[cfg(test)]
mod tests;
