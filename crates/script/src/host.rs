//! Compiled scripts and the host that runs them on packets.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use brasa_radius::{Dictionary, Message};
use pyo3::exceptions::{PySyntaxError, PySystemExit};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyCode, PyCodeMethods, PyDict, PyString};
use pyo3::{ffi, intern};

use crate::alc;
use crate::alc_dyn::{DynFinished, DynState};
use crate::cache::ScriptCache;
use crate::dynamic::{DynAction, DynReport, DynResources, DynRun, DynRunError};
use crate::error::{CompileError, ScriptError};
use crate::report::{FailureKind, Outcome, RunOptions, RunReport, ScriptFailure, Verdict};
use crate::state::{Finished, RunScope, Subject};
use crate::sub_svc::SubSvcReport;
use crate::watchdog::{ArmToken, Watchdog};
use crate::Clock;

/// A Python thread state kept for the life of a thread that runs scripts.
///
/// Without it every run on a thread other than the interpreter's first would create and
/// destroy a thread state (`PyGILState_Ensure`/`Release` around a zero count), which costs
/// about a sixth of a short run. Holding one gilstate reference, with the GIL released,
/// makes each later attach a plain GIL acquisition.
struct KeptThreadState {
    gstate: ffi::PyGILState_STATE,
    tstate: *mut ffi::PyThreadState,
}

impl KeptThreadState {
    /// Only for a thread that is not attached: releasing the GIL under an attached caller
    /// would pull it from under them.
    fn new() -> Option<KeptThreadState> {
        // SAFETY: the interpreter is initialised (`ensure_python` ran for the host), and
        // the thread is checked to hold no GIL before the Ensure/Save pair.
        unsafe {
            if ffi::PyGILState_Check() != 0 {
                return None;
            }
            let gstate = ffi::PyGILState_Ensure();
            let tstate = ffi::PyEval_SaveThread();
            Some(KeptThreadState { gstate, tstate })
        }
    }
}

impl Drop for KeptThreadState {
    fn drop(&mut self) {
        // SAFETY: undoes `new` in reverse order, on the same thread (thread-local).
        unsafe {
            ffi::PyEval_RestoreThread(self.tstate);
            ffi::PyGILState_Release(self.gstate);
        }
    }
}

thread_local! {
    static KEPT: std::cell::OnceCell<KeptThreadState> = const { std::cell::OnceCell::new() };
}

fn keep_thread_state() {
    KEPT.with(|kept| {
        if kept.get().is_none() {
            if let Some(state) = KeptThreadState::new() {
                let _ = kept.set(state);
            }
        }
    });
}

/// Starts the interpreter (once per process) and installs the `alc` package.
fn ensure_python() -> Result<(), ScriptError> {
    Python::initialize();
    Python::attach(|py| alc::install(py).map_err(|e| ScriptError::Init(e.to_string())))
}

/// An operator script, compiled once from its file.
///
/// Its top-level code runs once per packet, with fresh globals each time, so nothing a
/// script assigns survives to the next packet: state that must, goes through `alc.cache`
/// (as in SR OS).
#[derive(Debug)]
pub struct Script {
    name: Arc<str>,
    path: PathBuf,
    file: Py<PyString>,
    code: Py<PyCode>,
}

impl Script {
    /// Reads and compiles the script at `path`; `name` is its configured name (SR OS
    /// `python-script "name"`), used in reports.
    ///
    /// Starts the embedded interpreter on first use.
    pub fn load(name: impl Into<String>, path: impl Into<PathBuf>) -> Result<Script, ScriptError> {
        ensure_python()?;
        let path = path.into();
        Python::attach(|py| {
            let (file, code) = compile(py, &path)?;
            Ok(Script {
                name: Arc::from(name.into()),
                path,
                file,
                code,
            })
        })
    }

    /// Reads and compiles the file again. On error the previous code stays in use.
    pub fn reload(&mut self) -> Result<(), ScriptError> {
        Python::attach(|py| {
            let (file, code) = compile(py, &self.path)?;
            self.file = file;
            self.code = code;
            Ok(())
        })
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file the script is loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn compile(py: Python<'_>, path: &Path) -> Result<(Py<PyString>, Py<PyCode>), ScriptError> {
    let source = py
        .detach(|| std::fs::read(path))
        .map_err(|source| ScriptError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let file = path.display().to_string();
    let compiled = (|| -> PyResult<Py<PyCode>> {
        let builtins = py.import(intern!(py, "builtins"))?;
        // `compile` on the raw bytes honours a PEP 263 coding declaration; `dont_inherit`
        // keeps this crate's own future flags out.
        let code = builtins.getattr(intern!(py, "compile"))?.call1((
            PyBytes::new(py, &source),
            &file,
            "exec",
            0,
            true,
        ))?;
        Ok(code.cast_into::<PyCode>()?.unbind())
    })();
    match compiled {
        Ok(code) => Ok((PyString::new(py, &file).unbind(), code)),
        Err(e) => Err(ScriptError::Compile(compile_error(py, file, &e))),
    }
}

fn compile_error(py: Python<'_>, file: String, err: &PyErr) -> CompileError {
    let (message, _) = alc::describe(py, err);
    if !err.is_instance_of::<PySyntaxError>(py) {
        return CompileError {
            file,
            line: None,
            column: None,
            message,
        };
    }
    let value = err.value(py);
    let number = |name: &str| -> Option<usize> {
        value
            .getattr(name)
            .ok()?
            .extract::<Option<usize>>()
            .ok()
            .flatten()
            .filter(|&n| n > 0)
    };
    let text = value
        .getattr("msg")
        .and_then(|m| m.str().map(|s| s.to_string()))
        .unwrap_or(message);
    let kind = err
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "SyntaxError".into());
    CompileError {
        file,
        line: number("lineno"),
        column: number("offset"),
        message: format!("{kind}: {text}"),
    }
}

/// Runs scripts on packets: owns the time-limit watchdog.
///
/// Create it on any thread and run from any thread: the GIL is taken for each run and
/// released after it. Runs on different threads may overlap; they take turns on the GIL.
pub struct ScriptHost {
    watchdog: Watchdog,
}

impl std::fmt::Debug for ScriptHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptHost").finish_non_exhaustive()
    }
}

/// Disarms the watchdog even if the run unwinds.
struct ArmGuard<'w> {
    watchdog: &'w Watchdog,
    token: Option<ArmToken>,
}

impl ArmGuard<'_> {
    fn finish(mut self, py: Python<'_>) -> bool {
        self.token
            .take()
            .is_some_and(|token| self.watchdog.disarm(py, token))
    }
}

impl Drop for ArmGuard<'_> {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            Python::attach(|py| self.watchdog.disarm(py, token));
        }
    }
}

impl ScriptHost {
    /// Starts the interpreter (once per process), installs `alc` and starts the watchdog,
    /// which measures [`RunOptions::time_limit`] with `clock` (the system's monotonic clock
    /// outside tests).
    pub fn new(clock: Clock) -> Result<ScriptHost, ScriptError> {
        ensure_python()?;
        let watchdog = Watchdog::start(clock).map_err(ScriptError::Watchdog)?;
        Ok(ScriptHost { watchdog })
    }

    /// Runs `script` on `message`.
    ///
    /// The script reads and edits `message` through `alc.radius` (using `dictionary` for the
    /// vendors' `format=`) and reaches `cache` through `alc.cache`. When it completes, its
    /// edits stay in `message` and the verdict says whether to drop it. When it fails (an
    /// uncaught exception, `SystemExit`, the time limit), `message` is left exactly as it
    /// was, and the caller applies its `action-on-fail`. Cache operations take effect at once
    /// and are not undone.
    pub fn run(
        &self,
        script: &Script,
        message: &mut Message,
        dictionary: &Dictionary,
        cache: Option<&mut dyn ScriptCache>,
        options: &RunOptions,
    ) -> RunReport {
        self.run_packet(script, message, dictionary, cache, false, options)
            .0
    }

    /// Runs the subscriber-services `script` (`alc.sub_svc`) on the Access-Accept or
    /// CoA-Request `message`, as SR OS does: the script reads the Alc-Sub-Serv-* parameters
    /// through `alc.radius` and commits services with `sub_svc.commit_service`.
    ///
    /// A successful report lists the committed services, each validated, in commit order,
    /// for the caller to apply together ([`brasa_subsvc::SubscriberServices::apply_all`]);
    /// a failed one (an exception, an invalid service the script did not catch, the time
    /// limit) lists none and leaves `message` as it was.
    pub fn run_sub_svc(
        &self,
        script: &Script,
        message: &mut Message,
        dictionary: &Dictionary,
        cache: Option<&mut dyn ScriptCache>,
        options: &RunOptions,
    ) -> SubSvcReport {
        let (run, finished) = self.run_packet(script, message, dictionary, cache, true, options);
        let services = match (run.is_ok(), finished.sub_svc) {
            (true, Some(state)) => state.committed,
            _ => Vec::new(),
        };
        SubSvcReport { run, services }
    }

    /// Runs `script` on `message`, restoring it when the run fails.
    fn run_packet(
        &self,
        script: &Script,
        message: &mut Message,
        dictionary: &Dictionary,
        cache: Option<&mut dyn ScriptCache>,
        sub_svc: bool,
        options: &RunOptions,
    ) -> (RunReport, Finished) {
        keep_thread_state();
        let subject = Subject::Packet {
            message: &mut *message,
            dictionary,
            cache,
            sub_svc,
        };
        let (report, mut finished) =
            Python::attach(|py| self.run_attached(py, script, subject, options));
        if !report.is_ok() {
            if let Some(backup) = finished.backup.take() {
                *message = backup;
            }
        }
        (report, finished)
    }

    /// Runs the dynamic-services `script` for one action of one service (`alc.dyn`).
    ///
    /// `resources` answers `dyn.select_free_id` and `dyn.reference` without changing
    /// anything: a successful report lists what to apply (the CLI, the identifiers, the
    /// reference changes, the service's new state) as one transaction; a failed one lists
    /// nothing. `alc.radius` is unavailable (there is no packet); `alc.cache` raises
    /// `Unavailable`. An invalid `run` is refused before any Python runs.
    pub fn run_dyn(
        &self,
        script: &Script,
        run: &DynRun,
        resources: &mut dyn DynResources,
        options: &RunOptions,
    ) -> Result<DynReport, DynRunError> {
        run.validate()?;
        keep_thread_state();
        // SAFETY: `resources` stays borrowed for this whole call, and the state is dropped
        // (with the run's `Finished`) before it returns.
        let state = unsafe { DynState::new(run.clone(), resources) };
        let (mut report, finished) = Python::attach(|py| {
            self.run_attached(py, script, Subject::Dyn(Box::new(state)), options)
        });
        let dyn_finished = finished.dyn_state.map(DynState::finish);
        let Some(done) = dyn_finished else {
            return Ok(dyn_report(report, run.action, None));
        };
        let failure = match (&report.outcome, &done.resource_failure) {
            (Outcome::Failed(f), _) if f.kind == FailureKind::Timeout => None,
            (Outcome::Failed(f), Some(message)) => Some(ScriptFailure {
                kind: FailureKind::DynResources,
                message: message.clone(),
                traceback: f.traceback.clone(),
            }),
            (Outcome::Ok, Some(message)) => Some(ScriptFailure {
                kind: FailureKind::DynResources,
                message: message.clone(),
                traceback: String::new(),
            }),
            (Outcome::Ok, None) if !done.action_called => Some(ScriptFailure {
                kind: FailureKind::NoDynAction,
                message: "the script completed without calling dyn.action".into(),
                traceback: String::new(),
            }),
            _ => None,
        };
        if let Some(failure) = failure {
            report.outcome = Outcome::Failed(failure);
        }
        Ok(dyn_report(report, run.action, Some(done)))
    }

    fn run_attached(
        &self,
        py: Python<'_>,
        script: &Script,
        subject: Subject<'_, '_>,
        options: &RunOptions,
    ) -> (RunReport, Finished) {
        let report = |outcome, verdict, output, trace| RunReport {
            script: Arc::clone(&script.name),
            verdict,
            outcome,
            output,
            trace,
        };
        let timed_out = Arc::new(AtomicBool::new(false));
        let Some(scope) = RunScope::enter(
            subject,
            options.trace,
            options.output_limit,
            Arc::clone(&timed_out),
        ) else {
            let failure = ScriptFailure {
                kind: FailureKind::Exception,
                message: "RuntimeError: a script run is already in progress on this thread".into(),
                traceback: String::new(),
            };
            let report = report(
                Outcome::Failed(failure),
                Verdict::Continue,
                String::new(),
                Vec::new(),
            );
            return (report, Finished::default());
        };
        let globals = run_globals(py, script);
        let guard = ArmGuard {
            watchdog: &self.watchdog,
            token: options
                .time_limit
                .map(|limit| self.watchdog.arm(py, limit, Arc::clone(&timed_out))),
        };
        let result = match &globals {
            Ok(globals) => script.code.bind(py).run(Some(globals), None).map(drop),
            Err(e) => Err(e.clone_ref(py)),
        };
        let over_time = guard.finish(py);
        let mut finished = scope.exit();
        // `sys` is process-wide: undo a rebinding now rather than let the next run on
        // another thread print into it. Failing here leaves it to the next run's check.
        let _ = alc::restore_output(py);
        if let Ok(globals) = &globals {
            // Functions defined by the script hold its globals: clearing breaks the cycle so
            // each run's objects are freed now rather than by the cyclic GC.
            globals.clear();
        }
        let outcome = match result {
            Ok(()) if !over_time => Outcome::Ok,
            Ok(()) => Outcome::Failed(timeout_failure(options.time_limit, String::new())),
            Err(e) => Outcome::Failed(failure(py, &e, over_time.then_some(options.time_limit))),
        };
        // A failed cache backend fails the run even when the script caught the exception:
        // what it did without its cache is not what the operator wrote it to do.
        let outcome = match (outcome, finished.cache_failure.take()) {
            (Outcome::Ok, Some(message)) => Outcome::Failed(ScriptFailure {
                kind: FailureKind::CacheBackend,
                message,
                traceback: String::new(),
            }),
            (Outcome::Failed(f), Some(message)) if f.kind != FailureKind::Timeout => {
                Outcome::Failed(ScriptFailure {
                    kind: FailureKind::CacheBackend,
                    message,
                    traceback: f.traceback,
                })
            }
            (outcome, _) => outcome,
        };
        let verdict = if finished.dropped && outcome == Outcome::Ok {
            Verdict::Drop
        } else {
            Verdict::Continue
        };
        let output = std::mem::take(&mut finished.output);
        let trace = std::mem::take(&mut finished.trace);
        (report(outcome, verdict, output, trace), finished)
    }
}

/// The report of a dynamic-services run: a failed run keeps none of what it collected.
fn dyn_report(run: RunReport, action: DynAction, done: Option<DynFinished>) -> DynReport {
    let revert_defined = done.as_ref().is_some_and(|d| d.revert_defined);
    let done = done.filter(|_| run.is_ok());
    let mut report = DynReport {
        run,
        action,
        cli: String::new(),
        state: None,
        references: Vec::new(),
        selected_ids: Vec::new(),
        revert_defined,
    };
    if let Some(done) = done {
        report.cli = done.cli;
        report.state = done.state;
        report.references = done.references;
        report.selected_ids = done.selected_ids;
    }
    report
}

/// Fresh globals for one run of `script`.
fn run_globals<'py>(py: Python<'py>, script: &Script) -> PyResult<Bound<'py, PyDict>> {
    alc::restore_output(py)?;
    let globals = PyDict::new(py);
    globals.set_item(intern!(py, "__name__"), intern!(py, "__main__"))?;
    globals.set_item(intern!(py, "__file__"), script.file.bind(py))?;
    Ok(globals)
}

fn timeout_failure(limit: Option<Duration>, traceback: String) -> ScriptFailure {
    let message = match limit {
        Some(limit) => format!("the script ran over its time limit of {limit:?}"),
        None => "the script ran over its time limit".into(),
    };
    ScriptFailure {
        kind: FailureKind::Timeout,
        message,
        traceback,
    }
}

fn failure(py: Python<'_>, err: &PyErr, timed_out: Option<Option<Duration>>) -> ScriptFailure {
    let (message, traceback) = alc::describe(py, err);
    if let Some(limit) = timed_out {
        return timeout_failure(limit, traceback);
    }
    let kind = if err.is_instance_of::<PySystemExit>(py) {
        FailureKind::SystemExit
    } else {
        FailureKind::Exception
    };
    ScriptFailure {
        kind,
        message,
        traceback,
    }
}
