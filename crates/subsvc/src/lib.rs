//! Subscriber services made of PCC rules (Nokia SR OS subscriber services), sans-IO.
//!
//! * [`model`]: a [`SubscriberService`] and its [`PccRule`]s (flows, precedence, actions,
//!   policer overrides), validated, with a stable JSON form (serde);
//! * [`services`]: one subscriber's [`SubscriberServices`]: activation with the
//!   type-conflict actions (keep-old, keep-new, none), deactivation, logout, as typed
//!   [`ServiceChange`]s;
//! * [`counters`]: the counter rule (accounted rules' policers, else the subscriber's
//!   aggregate since the service started) over counters the caller reads;
//! * [`acct`]: Start / Interim-Update / Stop of each service instance;
//! * `fixtures` (feature `fixtures`): ready-made services for other crates' tests and benches;
//! * [`radius`]: the Alc-Sub-Serv-* parameters of an Access-Accept or CoA-Request, and the
//!   CoA-NAK with its Error-Cause.
//!
//! Nothing here opens sockets, reads clocks or spawns threads: `now` is an argument, and the
//! caller runs the `alc.sub_svc` script, enforces the rules in the data plane and sends the
//! RADIUS messages. The data plane's compiled tables are not this crate's business.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod acct;
pub mod counters;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod model;
pub mod radius;
pub mod services;

pub use acct::{Accounting, AcctError, AcctRecord, InstanceKey, Reported};
pub use counters::{service_volume, Counter, CounterRule, CounterSource, Volume};
pub use model::{
    AcctStatsType, Actions, BurstSize, Direction, Dscp, Family, Flow, FlowError, Gate, Operation,
    PccRule, PolicerOverrides, PortRange, RateLimit, RuleError, ServiceRequest, StatMode,
    SubscriberService, TypeConflictAction, ValidationError, MAX_ACCT_INTERVAL, MIN_ACCT_INTERVAL,
};
pub use radius::{sub_svc_params, CoaRefusal, ParamsError, SubSvcParams};
pub use services::{DeactivationCause, ServiceChange, ServiceError, SubscriberServices};
