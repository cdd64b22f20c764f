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

use crate::alc_dyn::DynState;
use crate::cache::ScriptCache;
use crate::report::TraceLine;
use crate::sub_svc::SubSvcState;

thread_local! {
    static RUN: RefCell<Option<RunState>> = const { RefCell::new(None) };
}

/// What one run may touch and what it has done so far.
pub(crate) struct RunState {
    // Raw pointers because the borrows (`&mut Message`, `&mut dyn ScriptCache`) cannot be
    // stored in a thread-local; `RunScope` ties their validity to its own lifetime.
    /// The packet and its dictionary; `None` in a dynamic-services run, which has no packet.
    packet: Option<(NonNull<Message>, NonNull<Dictionary>)>,
    cache: Option<NonNull<dyn ScriptCache + 'static>>,
    /// What `alc.dyn` works on; `None` in a packet run.
    dyn_state: Option<DynState>,
    /// The services `alc.sub_svc` committed; `None` outside a subscriber-services run.
    sub_svc: Option<SubSvcState>,
    /// The packet as it was before the first edit; `None` while unedited.
    backup: Option<Message>,
    dropped: bool,
    trace: Option<Vec<TraceLine>>,
    output: String,
    output_limit: usize,
    output_truncated: bool,
    timed_out: Arc<AtomicBool>,
    /// Why the cache backend failed during this run: the run then fails whatever the script
    /// does, and later cache calls fail at once.
    cache_failure: Option<String>,
}

impl RunState {
    fn packet_pointers(&self) -> PyResult<(NonNull<Message>, NonNull<Dictionary>)> {
        self.packet.ok_or_else(|| {
            PyRuntimeError::new_err(
                "alc.radius: a dynamic-services script run has no RADIUS packet",
            )
        })
    }

    /// The packet as the script currently sees it; `RuntimeError` in a run without one.
    pub(crate) fn packet(&self) -> PyResult<&Message> {
        let (message, _) = self.packet_pointers()?;
        // SAFETY: `RunScope` holds the `&mut Message` borrow for as long as this state is
        // installed, and nothing else reaches the packet meanwhile.
        Ok(unsafe { message.as_ref() })
    }

    /// The packet for an edit that is about to happen (validated already): the first one
    /// takes the copy that a failed run restores.
    pub(crate) fn packet_mut(&mut self) -> PyResult<&mut Message> {
        let (mut message, _) = self.packet_pointers()?;
        if self.backup.is_none() {
            self.backup = Some(self.packet()?.clone());
        }
        // SAFETY: as in `packet`; `&mut self` makes this the only reference handed out.
        Ok(unsafe { message.as_mut() })
    }

    /// Like [`RunState::packet_mut`], with the dictionary for edits that need it.
    pub(crate) fn packet_mut_with_dictionary(&mut self) -> PyResult<(&mut Message, &Dictionary)> {
        let (_, dictionary) = self.packet_pointers()?;
        let message = self.packet_mut()?;
        // SAFETY: the packet and the dictionary are distinct borrows held by `RunScope`.
        Ok((message, unsafe { dictionary.as_ref() }))
    }

    pub(crate) fn dictionary(&self) -> PyResult<&Dictionary> {
        let (_, dictionary) = self.packet_pointers()?;
        // SAFETY: borrowed for the scope's lifetime, like the packet.
        Ok(unsafe { dictionary.as_ref() })
    }

    /// The dynamic-services run's state; `RuntimeError` in a packet run.
    pub(crate) fn dyn_state(&mut self) -> PyResult<&mut DynState> {
        self.dyn_state.as_mut().ok_or_else(|| {
            PyRuntimeError::new_err(
                "alc.dyn: only a dynamic-services script run has dynamic-services data",
            )
        })
    }

    /// The subscriber-services run's state; `RuntimeError` in any other run.
    pub(crate) fn sub_svc_state(&mut self) -> PyResult<&mut SubSvcState> {
        self.sub_svc.as_mut().ok_or_else(|| {
            PyRuntimeError::new_err(
                "alc.sub_svc.commit_service: only a subscriber-services script run commits services",
            )
        })
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

    /// Why the cache backend failed during this run, if it did.
    pub(crate) fn cache_failure(&self) -> Option<&str> {
        self.cache_failure.as_deref()
    }

    /// Records that the cache backend failed: the run will fail with this message.
    pub(crate) fn set_cache_failure(&mut self, message: String) {
        self.cache_failure.get_or_insert(message);
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
#[derive(Default)]
pub(crate) struct Finished {
    pub(crate) backup: Option<Message>,
    pub(crate) dropped: bool,
    pub(crate) trace: Vec<TraceLine>,
    pub(crate) output: String,
    pub(crate) cache_failure: Option<String>,
    pub(crate) dyn_state: Option<DynState>,
    pub(crate) sub_svc: Option<SubSvcState>,
}

/// What a run works on.
pub(crate) enum Subject<'a, 'c> {
    /// A RADIUS packet, its dictionary and the python-policy's cache; `sub_svc` when the
    /// run may commit subscriber services.
    Packet {
        message: &'a mut Message,
        dictionary: &'a Dictionary,
        cache: Option<&'a mut (dyn ScriptCache + 'c)>,
        sub_svc: bool,
    },
    /// A dynamic-services action.
    Dyn(Box<DynState>),
}

/// Installs a [`RunState`] for the lifetime `'a` of the borrows it points into.
///
/// Dropping the scope without [`RunScope::exit`] (a panic unwinding through the run) also
/// removes the state and puts the packet back as it was.
pub(crate) struct RunScope<'a> {
    installed: bool,
    message: Option<NonNull<Message>>,
    _borrows: PhantomData<&'a mut Message>,
}

impl<'a> RunScope<'a> {
    /// Installs the state; `None` when a run is already in progress on this thread (a cache
    /// backend that tried to run a script from inside an `alc.cache` call).
    pub(crate) fn enter(
        subject: Subject<'a, '_>,
        trace: bool,
        output_limit: usize,
        timed_out: Arc<AtomicBool>,
    ) -> Option<RunScope<'a>> {
        let (packet, cache, dyn_state, sub_svc) = match subject {
            Subject::Packet {
                message,
                dictionary,
                cache,
                sub_svc,
            } => {
                let cache =
                    cache.map(|c| {
                        let c: NonNull<dyn ScriptCache + '_> = NonNull::from(c);
                        // SAFETY: only the trait object's lifetime bound is erased; the pointer
                        // is never used after the scope, which lives no longer than the borrow.
                        unsafe {
                            std::mem::transmute::<
                                NonNull<dyn ScriptCache + '_>,
                                NonNull<dyn ScriptCache>,
                            >(c)
                        }
                    });
                let packet = (NonNull::from(message), NonNull::from(dictionary));
                (
                    Some(packet),
                    cache,
                    None,
                    sub_svc.then(SubSvcState::default),
                )
            }
            Subject::Dyn(state) => (None, None, Some(*state), None),
        };
        let message = packet.map(|(message, _)| message);
        let state = RunState {
            packet,
            cache,
            dyn_state,
            sub_svc,
            backup: None,
            dropped: false,
            trace: trace.then(Vec::new),
            output: String::new(),
            output_limit,
            output_truncated: false,
            timed_out,
            cache_failure: None,
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
            cache_failure: s.cache_failure,
            dyn_state: s.dyn_state,
            sub_svc: s.sub_svc,
        },
        None => Finished::default(),
    }
}

impl Drop for RunScope<'_> {
    fn drop(&mut self) {
        let backup = self.uninstall().and_then(|s| s.backup);
        if let (Some(backup), Some(message)) = (backup, self.message) {
            // SAFETY: the `&'a mut Message` borrow is still held by this scope.
            unsafe { *message.as_ptr() = backup };
        }
    }
}
