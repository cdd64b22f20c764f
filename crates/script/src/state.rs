//! The state of the run in progress on this thread, which the `alc` functions reach.
//!
//! `alc.radius.attributes.get` and friends are module-level Python functions: they have no
//! `self` to carry the packet. `ScriptHost::run` therefore installs a [`RunState`] in a
//! thread-local for exactly the duration of the script and removes it before returning
//! (also when unwinding). A call from any other moment or thread (a Python thread the script
//! started, a function kept past its run) finds no state and raises `RuntimeError`.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use brasa_radius::{Dictionary, Message};
use pyo3::exceptions::PyRuntimeError;
use pyo3::PyResult;

use crate::cache::ScriptCache;
use crate::report::TraceLine;

thread_local! {
    static RUN: RefCell<Option<RunState>> = const { RefCell::new(None) };
}

/// What one run may touch and what it has done so far.
pub(crate) struct RunState {
    // Raw pointers because the borrows (`&mut Message`, `&mut dyn ScriptCache`) cannot be
    // stored in a thread-local; `RunScope` ties their validity to its own lifetime.
    message: NonNull<Message>,
    dictionary: NonNull<Dictionary>,
    cache: Option<NonNull<dyn ScriptCache + 'static>>,
    /// The packet as it was before the first edit; `None` while unedited.
    backup: Option<Message>,
    dropped: bool,
    trace: Option<Vec<TraceLine>>,
    output: String,
    output_limit: usize,
    output_truncated: bool,
    timed_out: Arc<AtomicBool>,
}

impl RunState {
    /// The packet as the script currently sees it.
    pub(crate) fn packet(&self) -> &Message {
        // SAFETY: `RunScope` holds the `&mut Message` borrow for as long as this state is
        // installed, and nothing else reaches the packet meanwhile.
        unsafe { self.message.as_ref() }
    }

    /// The packet for an edit that is about to happen (validated already): the first one
    /// takes the copy that a failed run restores.
    pub(crate) fn packet_mut(&mut self) -> &mut Message {
        if self.backup.is_none() {
            self.backup = Some(self.packet().clone());
        }
        // SAFETY: as in `packet`; `&mut self` makes this the only reference handed out.
        unsafe { self.message.as_mut() }
    }

    /// Like [`RunState::packet_mut`], with the dictionary for edits that need it.
    pub(crate) fn packet_mut_with_dictionary(&mut self) -> (&mut Message, &Dictionary) {
        self.packet_mut();
        // SAFETY: the packet and the dictionary are distinct borrows held by `RunScope`.
        unsafe { (self.message.as_mut(), self.dictionary.as_ref()) }
    }

    pub(crate) fn dictionary(&self) -> &Dictionary {
        // SAFETY: borrowed for the scope's lifetime, like the packet.
        unsafe { self.dictionary.as_ref() }
    }

    /// The policy's cache, if it has one.
    pub(crate) fn cache(&mut self) -> Option<&mut (dyn ScriptCache + 'static)> {
        // SAFETY: borrowed mutably for the scope's lifetime, like the packet.
        self.cache.map(|mut c| unsafe { c.as_mut() })
    }

    pub(crate) fn drop_packet(&mut self) {
        self.dropped = true;
    }

    /// Whether changes are being traced.
    pub(crate) fn tracing(&self) -> bool {
        self.trace.is_some()
    }

    pub(crate) fn record(&mut self, line: TraceLine) {
        if let Some(trace) = &mut self.trace {
            trace.push(line);
        }
    }

    pub(crate) fn write_output(&mut self, text: &str) {
        if self.output_truncated {
            return;
        }
        let room = self.output_limit.saturating_sub(self.output.len());
        if text.len() <= room {
            self.output.push_str(text);
            return;
        }
        let mut cut = room;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        self.output.push_str(&text[..cut]);
        self.output.push_str(&format!(
            "\n[output truncated at {} bytes]\n",
            self.output_limit
        ));
        self.output_truncated = true;
    }

    /// Whether the watchdog has declared this run over its time limit.
    pub(crate) fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Acquire)
    }
}

/// Runs `f` on this thread's run state; `RuntimeError` outside a run.
pub(crate) fn with_run<R>(f: impl FnOnce(&mut RunState) -> PyResult<R>) -> PyResult<R> {
    RUN.with(|cell| {
        let mut slot = cell.try_borrow_mut().map_err(|_| {
            PyRuntimeError::new_err("alc: re-entrant call into the alc API from a cache backend")
        })?;
        let state = slot.as_mut().ok_or_else(|| {
            PyRuntimeError::new_err("alc: no script run is in progress on this thread")
        })?;
        f(state)
    })
}

/// Like [`with_run`], for callers that have nothing to do outside a run.
pub(crate) fn try_with_run<R>(f: impl FnOnce(&mut RunState) -> R) -> Option<R> {
    RUN.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        slot.as_mut().map(f)
    })
}

/// What a run did, taken out of the thread-local when it ends.
pub(crate) struct Finished {
    pub(crate) backup: Option<Message>,
    pub(crate) dropped: bool,
    pub(crate) trace: Vec<TraceLine>,
    pub(crate) output: String,
}

/// Installs a [`RunState`] for the lifetime `'a` of the borrows it points into.
///
/// Dropping the scope without [`RunScope::exit`] (a panic unwinding through the run) also
/// removes the state and puts the packet back as it was.
pub(crate) struct RunScope<'a> {
    installed: bool,
    message: NonNull<Message>,
    _borrows: PhantomData<&'a mut Message>,
}

impl<'a> RunScope<'a> {
    /// Installs the state; `None` when a run is already in progress on this thread (a cache
    /// backend that tried to run a script from inside an `alc.cache` call).
    pub(crate) fn enter(
        message: &'a mut Message,
        dictionary: &'a Dictionary,
        cache: Option<&'a mut (dyn ScriptCache + '_)>,
        trace: bool,
        output_limit: usize,
        timed_out: Arc<AtomicBool>,
    ) -> Option<RunScope<'a>> {
        let message = NonNull::from(message);
        let cache = cache.map(|c| {
            let c: NonNull<dyn ScriptCache + '_> = NonNull::from(c);
            // SAFETY: only the trait object's lifetime bound is erased; the pointer is never
            // used after the scope, which lives no longer than the borrow.
            unsafe {
                std::mem::transmute::<NonNull<dyn ScriptCache + '_>, NonNull<dyn ScriptCache>>(c)
            }
        });
        let state = RunState {
            message,
            dictionary: NonNull::from(dictionary),
            cache,
            backup: None,
            dropped: false,
            trace: trace.then(Vec::new),
            output: String::new(),
            output_limit,
            output_truncated: false,
            timed_out,
        };
        let installed = RUN.with(|cell| match cell.try_borrow_mut() {
            Ok(mut slot) if slot.is_none() => {
                *slot = Some(state);
                true
            }
            _ => false,
        });
        installed.then_some(RunScope {
            installed,
            message,
            _borrows: PhantomData,
        })
    }

    /// Removes the state, releasing the borrows, and returns what the run did.
    pub(crate) fn exit(mut self) -> Finished {
        let state = self.uninstall();
        finished(state)
    }

    fn uninstall(&mut self) -> Option<RunState> {
        if !std::mem::take(&mut self.installed) {
            return None;
        }
        // The cell is never borrowed here: `alc` functions release it before returning.
        RUN.with(|cell| cell.try_borrow_mut().ok().and_then(|mut slot| slot.take()))
    }
}

fn finished(state: Option<RunState>) -> Finished {
    match state {
        Some(s) => Finished {
            backup: s.backup,
            dropped: s.dropped,
            trace: s.trace.unwrap_or_default(),
            output: s.output,
        },
        None => Finished {
            backup: None,
            dropped: false,
            trace: Vec::new(),
            output: String::new(),
        },
    }
}

impl Drop for RunScope<'_> {
    fn drop(&mut self) {
        if let Some(backup) = self.uninstall().and_then(|s| s.backup) {
            // SAFETY: the `&'a mut Message` borrow is still held by this scope.
            unsafe { *self.message.as_ptr() = backup };
        }
    }
}
