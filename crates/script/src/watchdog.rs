//! The thread that enforces [`crate::RunOptions::time_limit`].
//!
//! brasa's cores spawn no threads, and this is the one exception: a script stuck in
//! `while True: pass` holds the thread that runs it, so nothing on that thread can stop it,
//! and CPython's own mechanisms do not reach it either (`Py_AddPendingCall` callbacks only
//! run on the main thread in 3.11, and signals are only handled there). The limit can only
//! be enforced from another thread that takes the GIL — the interpreter hands it over at
//! least every switch interval (5 ms) — and raises an exception in the running thread with
//! `PyThreadState_SetAsyncExc`.
//!
//! The exception is `alc.TimeLimitExceeded`, a `BaseException` (so `except Exception:` does
//! not swallow it). When Python instantiates it on the script's thread, it also installs a
//! C trace hook there that raises it again on every line, so a bare `except:` cannot keep
//! the script alive either (see `alc::TimeLimitExceeded`). The watchdog repeats the
//! injection every [`REPEAT`] until the run ends.
//!
//! Lock order is GIL, then the mutex: a run arms and disarms while holding the GIL, and the
//! watchdog takes the GIL before the mutex when it acts, so an injection can only land while
//! the run is still armed. Disarming then clears whatever is still pending for the thread.

use std::os::raw::{c_long, c_ulong};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::{ffi, Python};

use crate::Clock;

/// How often a run that is over its limit is hit again until it ends.
pub(crate) const REPEAT: Duration = Duration::from_millis(10);

struct Armed {
    id: u64,
    /// `PyThread_get_thread_ident()` of the thread running the script.
    thread: c_ulong,
    /// When the watchdog acts next: the deadline, then every `REPEAT`.
    next_at: Instant,
    timed_out: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    runs: Vec<Armed>,
    next_id: u64,
    shutdown: bool,
    /// `Some(until)` while the watchdog waits on the condvar (`Some(None)`: with no run to
    /// watch); arming only wakes it when the new deadline is earlier.
    sleeping: Option<Option<Instant>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    clock: Clock,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the state is still
        // consistent (plain fields), so carry on rather than poison every later run.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A run the watchdog is watching; hand it back to [`Watchdog::disarm`].
#[must_use]
pub(crate) struct ArmToken {
    id: u64,
    thread: c_ulong,
}

/// Owner of the watchdog thread; stops it when dropped.
pub(crate) struct Watchdog {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    pub(crate) fn start(clock: Clock) -> std::io::Result<Watchdog> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            clock,
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("brasa-script-watchdog".into())
            .spawn(move || watch(&worker))?;
        Ok(Watchdog {
            shared,
            thread: Some(thread),
        })
    }

    /// Starts watching the current thread's run. Call with the GIL held.
    pub(crate) fn arm(
        &self,
        _py: Python<'_>,
        limit: Duration,
        timed_out: Arc<AtomicBool>,
    ) -> ArmToken {
        // SAFETY: plain query of the calling thread's identifier.
        let thread = unsafe { ffi::PyThread_get_thread_ident() };
        let now = (self.shared.clock)();
        let deadline = now
            .checked_add(limit)
            .unwrap_or(now + Duration::from_secs(86_400 * 365));
        let mut state = self.shared.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.runs.push(Armed {
            id,
            thread,
            next_at: deadline,
            timed_out,
        });
        if let Some(until) = state.sleeping {
            if until.is_none_or(|t| t > deadline) {
                self.shared.wake.notify_one();
            }
        }
        ArmToken { id, thread }
    }

    /// Stops watching the run; returns whether it went over its limit. Call with the GIL
    /// held, on the thread that armed it, before running any more Python code.
    pub(crate) fn disarm(&self, _py: Python<'_>, token: ArmToken) -> bool {
        let armed = {
            let mut state = self.shared.lock();
            let index = state.runs.iter().position(|r| r.id == token.id);
            index.map(|i| state.runs.swap_remove(i))
        };
        let timed_out = armed.is_some_and(|a| a.timed_out.load(Ordering::Acquire));
        if timed_out {
            // An injection may still be pending, and `alc.TimeLimitExceeded` may have set the
            // trace hook on this thread; with the run disarmed no new one can come.
            // SAFETY: GIL held, on the run's own thread; a null exception clears the pending
            // one, and a null trace function removes the hook.
            unsafe {
                ffi::PyThreadState_SetAsyncExc(token.thread as c_long, std::ptr::null_mut());
                ffi::PyEval_SetTrace(None, std::ptr::null_mut());
            }
        }
        timed_out
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // The watchdog may be waiting for the GIL: joining while holding it would never
            // return, so in that case let the thread finish on its own.
            // SAFETY: plain query about the calling thread.
            if unsafe { ffi::PyGILState_Check() } == 0 {
                let _ = thread.join();
            }
        }
    }
}

fn watch(shared: &Shared) {
    let mut state = shared.lock();
    loop {
        if state.shutdown {
            return;
        }
        let now = (shared.clock)();
        if !state.runs.iter().any(|r| r.next_at <= now) {
            let until = state.runs.iter().map(|r| r.next_at).min();
            state.sleeping = Some(until);
            state = match until {
                Some(t) => {
                    shared
                        .wake
                        .wait_timeout(state, t.saturating_duration_since(now))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
            };
            state.sleeping = None;
            continue;
        }
        drop(state);
        // `try_attach` rather than `attach`: during interpreter shutdown there is nothing
        // left to stop.
        let attached = Python::try_attach(|py| fire_due(py, shared));
        state = shared.lock();
        if attached.is_none() {
            return;
        }
    }
}

/// Hits every run whose time is up. Runs with the GIL held.
fn fire_due(_py: Python<'_>, shared: &Shared) {
    let exception = crate::alc::time_limit_exceeded_ptr();
    if exception.is_null() {
        return;
    }
    let mut state = shared.lock();
    let now = (shared.clock)();
    for run in state.runs.iter_mut().filter(|r| r.next_at <= now) {
        run.timed_out.store(true, Ordering::Release);
        // SAFETY: GIL held; the type object is immortal for the process (kept by the `alc`
        // module) and the thread id names a thread that is inside its armed run (it can only
        // disarm with the GIL, which we hold).
        unsafe { ffi::PyThreadState_SetAsyncExc(run.thread as c_long, exception) };
        run.next_at = now + REPEAT;
    }
}
