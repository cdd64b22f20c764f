//! `brasa-script`: embedded CPython 3.11 (PyO3) running operator scripts on RADIUS packets
//! with the SR OS `alc` API (seed 000), ported to Python 3: values are `bytes`.
//!
//! * [`Script`] is a script file compiled once ([`Script::reload`] recompiles it in place,
//!   keeping the old code when the new one does not compile).
//! * [`ScriptHost::run`] runs a script on one [`brasa_radius::Message`] and returns a
//!   [`RunReport`]: the [`Verdict`], whether it completed ([`Outcome`]), what it printed and,
//!   when asked, the SR OS "Python Result" [`TraceLine`]s. A failed run (uncaught exception,
//!   `SystemExit`, time limit) leaves the packet exactly as it was and never harms the
//!   process.
//! * [`ScriptCache`] is how `alc.cache` reaches a python-policy's cache; [`PolicyCacheAt`]
//!   implements it over a [`brasa_cache::PolicyCache`].
//! * [`ScriptHost::run_dyn`] runs a dynamic-services script (`alc.dyn`) for one
//!   [`DynRun`] and returns a [`DynReport`]: the CLI, identifiers, reference changes and
//!   service state to apply as one transaction, or nothing when the run failed.
//!   [`DynResources`] is the host side of `dyn.select_free_id` and `dyn.reference`.
//!   `docs/dynamic-services.md` describes the API as scripts see it.
//! * [`ScriptHost::run_sub_svc`] runs a subscriber-services script (`alc.sub_svc`) on an
//!   Access-Accept or CoA-Request and returns a [`SubSvcReport`]: the services it committed,
//!   as validated [`brasa_subsvc::ServiceRequest`]s, or none when the run failed.
//!   `docs/subscriber-services.md` describes the API as scripts see it.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use brasa_cache::{CacheConfig, MemoryBudget, PolicyCache};
//! use brasa_radius::{Code, Dictionary, Message};
//! use brasa_script::{Outcome, PolicyCacheAt, RunOptions, Script, ScriptHost, Verdict};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let host = ScriptHost::new(std::time::Instant::now)?;
//! let script = Script::load("python-script-1", "examples/python/python_cache.py")?;
//! let dict = Dictionary::builtin();
//! let budget = Arc::new(MemoryBudget::new(256 << 20));
//! let mut cache = PolicyCache::new(CacheConfig::default(), 1, budget);
//!
//! let mut accept = Message::new(Code::AccessAccept, 7);
//! accept.add(1, b"00:20:fc:1e:cd:53");
//! accept.add(25, b"Class-1");
//! let now_ms = 1_403_751_738_000;
//! let mut at = PolicyCacheAt::new(&mut cache, now_ms);
//! let options = RunOptions { trace: true, ..RunOptions::default() };
//! let report = host.run(&script, &mut accept, &dict, Some(&mut at), &options);
//! match (&report.outcome, report.verdict) {
//!     (Outcome::Ok, Verdict::Continue) => { /* send `accept` on */ }
//!     (Outcome::Ok, Verdict::Drop) => { /* discard it */ }
//!     (Outcome::Failed(failure), _) => eprintln!("{failure}"), // action-on-fail
//! }
//! print!("{report}"); // Python Result: python-script-1 ...
//! # Ok(())
//! # }
//! ```
//!
//! # The `alc` package
//!
//! Importable as `from alc import radius, cache, dyn`, `from alc import cache`, or `import alc`
//! (then `alc.radius...`). Byte-string arguments accept `bytes`, `bytearray` or `str`
//! (encoded as UTF-8); results are `bytes`.
//!
//! | function | does |
//! |---|---|
//! | `radius.header()` | `{'code', 'identifier', 'length', 'authenticator'}`; `length` as the packet would now be encoded |
//! | `radius.attributes.get(t)` | first instance's value, `b""` if absent |
//! | `radius.attributes.getTuple(t)` | every instance's value (`()` if none) |
//! | `radius.attributes.set(t, v)` | `v` a value or a tuple/list of them: replaces every instance, where the first one was (else appended) |
//! | `radius.attributes.clear(t)` | removes every instance |
//! | `getVSA(vendor, t)`, `getVSATuple`, `setVSA(vendor, t, v)`, `clearVSA` | the same for vendor sub-attributes, in the vendor's dictionary `format=` |
//! | `radius.drop()` | the packet is to be dropped (the script goes on) |
//! | `cache.save(value, key)` | value first, as in SR OS |
//! | `cache.retrieve(key)` | the value |
//! | `cache.clear(key)` | removes the entry |
//! | `cache.get_lifetime(key)` | remaining seconds |
//! | `cache.set_lifetime(key, secs)` | sets them; returns the lifetime applied (capped by `max-entry-lifetime`) |
//!
//! An attribute type outside 1..255 (or a vendor type wider than the vendor's type field), a
//! value over 253 bytes (less the VSA headers), or an edit that would make the packet exceed
//! 4096 bytes raises `ValueError` naming the function and the limit, and changes nothing; a
//! wrong argument type raises `TypeError`.
//!
//! `alc.cache` exceptions, all catchable by the script's own `try/except`:
//!
//! ```text
//! cache.error                     base class (Exception)
//! ├── cache.NotFound              no live entry: retrieve, clear, get_lifetime, set_lifetime
//! │                               (also a KeyError)
//! ├── cache.Refused               a refusal; .reason is a snake_case name
//! │   ├── cache.EntryTooLarge         key + value over entry-size
//! │   ├── cache.TooManyEntries        max-entries reached
//! │   ├── cache.GlobalMemoryExceeded  the global cache memory bound
//! │   └── cache.Shutdown              the policy's cache is shut down
//! └── cache.Unavailable           the python-policy has no cache
//! cache.BackendFailure            (a BaseException) the cache's store failed or did not answer
//!                                 in time: the run fails (FailureKind::CacheBackend) even if
//!                                 the script catches it, and later cache calls fail at once
//! ```
//!
//! `alc.dyn`: `action(dictionary)`, `add_cli(text)`, `get_circuit_id()`, `get_remote_id()`,
//! `get_sap()`, `reference(function_key, reference_id, dictionary)`,
//! `select_free_id(type)`; exceptions `dyn.error`, `dyn.NoFreeId` (an exhausted range) and
//! `dyn.ResourceFailure` (a `BaseException`: the host failed, the run fails with
//! [`FailureKind::DynResources`]). Only in a [`ScriptHost::run_dyn`] run.
//!
//! `alc.sub_svc`: `add_to_service(service, tlv, value)`, `flow.add_to_flow`,
//! `pccrule.add_to_pccrule`, `pccrule.policer.add_to_policer`, `commit_service(service)`,
//! the TLV and value constants; exception `sub_svc.InvalidService` (a `ValueError`).
//! `commit_service` only in a [`ScriptHost::run_sub_svc`] run.
//!
//! `alc.TimeLimitExceeded` (a `BaseException`) is what a script over its time limit sees.
//!
//! # Threads and the time limit
//!
//! [`ScriptHost`] owns one watchdog thread, which measures time with the [`Clock`] it is
//! given: the one departure from "cores spawn no threads".
//! A script looping in Python holds the only thread that could notice, and CPython offers
//! no in-thread timer for non-main threads, so the limit is enforced from outside: the
//! watchdog takes the GIL at the deadline and raises `alc.TimeLimitExceeded` in the running
//! thread (`PyThreadState_SetAsyncExc`); see `watchdog.rs` for why a bare `except:` cannot
//! survive it. Python code is interrupted within a few milliseconds; a single long call into
//! C (`time.sleep(60)`, a huge regex) is interrupted when it returns to Python.
//!
//! `sys.stdout` and `sys.stderr` of the embedded interpreter write into the run's
//! [`RunReport::output`] (nothing reaches the process's stdout), and `sys.stdin` is `None`.
//!
//! # Linking
//!
//! Binaries using this crate load `libpython3.11.so.1.0` at run time. This crate's build
//! script gives its own tests and benches an rpath to the library directory, and publishes
//! the directory to dependents' build scripts as `DEP_BRASA_PYTHON_LIB_DIR`.
#![warn(missing_docs)]

mod alc;
mod alc_dyn;
mod cache;
mod dynamic;
mod error;
mod host;
mod report;
mod state;
mod sub_svc;
mod watchdog;

pub use cache::{PolicyCacheAt, ScriptCache};
pub use dynamic::{
    apply_reference_changes, expand_sap_wildcards, DynAction, DynReport, DynResources, DynRun,
    DynRunError, IdKind, MemoryResources, ReferenceChange, ReferenceKey, Referenced, ResourceError,
    SapWildcardError, ScriptParams, ScriptParamsError, ServiceState,
};
pub use error::{CompileError, ScriptError};
pub use host::{Script, ScriptHost};
pub use report::{FailureKind, Outcome, RunOptions, RunReport, ScriptFailure, TraceLine, Verdict};
pub use sub_svc::SubSvcReport;

/// The monotonic clock the time limit is measured with, supplied by the host application
/// (normally the system's): like every brasa core, this crate reads no clock of its own, so a
/// test can run the watchdog on a clock it controls.
pub type Clock = fn() -> std::time::Instant;
