//! Dynamic data services core (Nokia SR OS dynamic data services), sans-IO.
//!
//! * [`frame`]: what a frame punted from a capture SAP tells (tags, MAC, IP source);
//! * [`trigger`]: the data trigger state machine ([`Triggers`]): control-plane rate limit,
//!   Table 3 drop reasons, Pending → Accepted → sapCreated, setup timeout, teardown, and which
//!   triggers left progress (the data plane's throttle releases their keys);
//! * [`auth`]: the Access-Request of Table 4, the Alc-Dyn-Serv-* services of an Access-Accept;
//! * [`acct`]: Start / Interim-Update / Stop of each dynamic service to two destinations;
//! * [`coa`]: CoA and Disconnect requests decided per Table 5, and their ACK or NAK;
//! * [`local`]: the local-auth-db;
//! * [`lockout`]: host-lockout-policy contexts keyed by the trigger SAP id;
//!
//! Nothing here opens sockets, reads clocks or spawns threads: `now` is an argument, and the
//! caller sends the RADIUS messages, runs the scripts and applies the services.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod acct;
pub mod auth;
pub mod coa;
pub mod frame;
pub mod local;
pub mod lockout;
pub mod rate;
pub mod trigger;

pub use acct::{Accounting, AcctRecord, AcctSettings, ServiceSession};
pub use auth::{AcctOverride, AuthFailure, DynService, NasIdentity, ScriptAction, StatsType};
pub use coa::{CoaAction, CoaDecision, CoaOutcome, CoaRefusal, RequestKind};
pub use frame::TriggerFrame;
pub use local::LocalAuthDb;
pub use lockout::{HostLockoutPolicy, Lockouts};
pub use trigger::{
    Authentication, CaptureSapConfig, DropReason, DynServicesPolicy, FrameVerdict, Teardown,
    Trigger, TriggerState, Triggers, TriggersConfig,
};
