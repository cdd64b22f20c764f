//! `alc.dyn`: the SR OS dynamic data services API (`action`, `add_cli`, `get_circuit_id`,
//! `get_remote_id`, `get_sap`, `reference`, `select_free_id`).
//!
//! The functions of the action dictionary are operator Python: they are called with the run
//! state released, since they call back into `alc.dyn`.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyComplex, PyDict, PyFloat, PyInt, PyList, PySet, PyString, PyTuple, PyType,
};

use crate::dynamic::{
    expand_sap_wildcards, DynAction, DynResources, DynRun, IdKind, ReferenceChange, ReferenceKey,
    Referenced, ResourceError, ServiceState,
};
use crate::state::with_run;

/// Which function of the action dictionary is running: `dyn.reference` is only allowed in
/// the service's own setup function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Top-level script code, before or after `dyn.action`.
    Script,
    /// The service's setup function.
    Setup,
    /// A setup function run by `dyn.reference`, or any other function.
    Other,
}

/// The `alc.dyn` side of one dynamic-services run.
pub(crate) struct DynState {
    run: DynRun,
    // A raw pointer for the same reason as the cache's: the `&mut dyn DynResources` borrow
    // outlives the run (`ScriptHost::run_dyn` holds it) but cannot sit in a thread-local.
    resources: NonNull<dyn DynResources + 'static>,
    phase: Phase,
    action_called: bool,
    /// The dictionary given to `dyn.action`, while it runs (`dyn.reference` looks keys up).
    actions: Option<Py<PyDict>>,
    cli: String,
    selected: Vec<(IdKind, u32)>,
    /// The reference table as this run has changed it so far (`None`: removed).
    overlay: BTreeMap<ReferenceKey, Option<Referenced>>,
    changes: Vec<ReferenceChange>,
    /// The references the service holds, as its setup made them.
    held: Vec<ReferenceKey>,
    /// The dictionary to keep for the service after a setup or modify.
    kept: Option<String>,
    revert_defined: bool,
    resource_failure: Option<String>,
}

/// What a finished dynamic-services run produced, for [`crate::DynReport`].
pub(crate) struct DynFinished {
    pub(crate) action_called: bool,
    pub(crate) cli: String,
    pub(crate) state: Option<ServiceState>,
    pub(crate) references: Vec<ReferenceChange>,
    pub(crate) selected_ids: Vec<(IdKind, u32)>,
    pub(crate) revert_defined: bool,
    pub(crate) resource_failure: Option<String>,
}

impl DynState {
    /// The state of a run of `run` that reaches its host through `resources`.
    ///
    /// # Safety
    /// `resources` must stay borrowed, unused by anyone else, for as long as the state
    /// lives: the caller keeps the borrow for the whole run, and the state is dropped when
    /// the run ends.
    pub(crate) unsafe fn new(run: DynRun, resources: &mut (dyn DynResources + '_)) -> DynState {
        let resources: NonNull<dyn DynResources + '_> = NonNull::from(resources);
        // SAFETY: only the trait object's lifetime bound is erased (see the contract).
        let resources = unsafe {
            std::mem::transmute::<NonNull<dyn DynResources + '_>, NonNull<dyn DynResources>>(
                resources,
            )
        };
        let held = run
            .state
            .as_ref()
            .map(|s| s.references.clone())
            .unwrap_or_default();
        DynState {
            run,
            resources,
            phase: Phase::Script,
            action_called: false,
            actions: None,
            cli: String::new(),
            selected: Vec::new(),
            overlay: BTreeMap::new(),
            changes: Vec::new(),
            held,
            kept: None,
            revert_defined: false,
            resource_failure: None,
        }
    }

    /// What the run produced.
    pub(crate) fn finish(self) -> DynFinished {
        let state = match (self.run.action, self.kept) {
            (DynAction::Setup | DynAction::Modify, Some(dictionary)) => Some(ServiceState {
                function_key: self.run.function_key().to_string(),
                dictionary,
                references: self.held,
            }),
            _ => None,
        };
        DynFinished {
            action_called: self.action_called,
            cli: self.cli,
            state,
            references: self.changes,
            selected_ids: self.selected,
            revert_defined: self.revert_defined,
            resource_failure: self.resource_failure,
        }
    }

    /// Calls the host, turning an error or a panic into a run failure.
    fn resources<R>(
        &mut self,
        func: &str,
        op: impl FnOnce(&mut dyn DynResources) -> Result<R, ResourceError>,
    ) -> Result<R, String> {
        if let Some(failure) = &self.resource_failure {
            return Err(format!(
                "{func}: not attempted after an earlier failure ({failure})"
            ));
        }
        // SAFETY: see `DynState::new`; `&mut self` makes this the only use.
        let resources = unsafe { self.resources.as_mut() };
        let result = catch_unwind(AssertUnwindSafe(|| op(resources))).unwrap_or_else(|_| {
            Err(ResourceError {
                reason: "the dynamic-services host panicked".into(),
            })
        });
        result.map_err(|e| {
            let message = format!("{func}: {e}");
            self.resource_failure = Some(message.clone());
            message
        })
    }

    /// The reference as this run sees it: its own changes first, then the host's table.
    fn referenced(&mut self, key: &ReferenceKey, func: &str) -> Result<Option<Referenced>, String> {
        if let Some(seen) = self.overlay.get(key) {
            return Ok(seen.clone());
        }
        self.resources(func, |r| r.reference(key))
    }
}

/// The exception classes of `alc.dyn`.
struct DynExceptions {
    no_free_id: Py<PyType>,
    resource_failure: Py<PyType>,
}

static EXCEPTIONS: PyOnceLock<DynExceptions> = PyOnceLock::new();

const DYN_EXCEPTIONS: &std::ffi::CStr = cr#"
class error(Exception):
    """Base class of the alc.dyn errors a script can handle."""

class NoFreeId(error):
    """dyn.select_free_id: no free identifier of the type is left in the configured range."""

class ResourceFailure(BaseException):
    """The router's identifier allocator or reference table failed. A BaseException, as the
    run fails anyway."""
"#;

const DYN_DOC: &str = "SR OS dynamic data services: action(dictionary), add_cli(text), \
get_circuit_id(), get_remote_id(), get_sap(), reference(function_key, reference_id, \
dictionary), select_free_id(type). Errors: `error` is the base; `NoFreeId` means an identifier \
range is exhausted; `ResourceFailure` (a BaseException) means the host failed, which fails the \
run.";

/// Builds the `alc.dyn` module.
pub(crate) fn build(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let module = PyModule::new(py, "alc.dyn")?;
    module.setattr("__doc__", DYN_DOC)?;
    py.run(DYN_EXCEPTIONS, Some(&module.dict()), None)?;
    module.add_function(wrap_pyfunction!(action, &module)?)?;
    module.add_function(wrap_pyfunction!(add_cli, &module)?)?;
    module.add_function(wrap_pyfunction!(get_circuit_id, &module)?)?;
    module.add_function(wrap_pyfunction!(get_remote_id, &module)?)?;
    module.add_function(wrap_pyfunction!(get_sap, &module)?)?;
    module.add_function(wrap_pyfunction!(reference, &module)?)?;
    module.add_function(wrap_pyfunction!(select_free_id, &module)?)?;
    let class = |name: &str| -> PyResult<Py<PyType>> {
        Ok(module.getattr(name)?.cast_into::<PyType>()?.unbind())
    };
    let exceptions = DynExceptions {
        no_free_id: class("NoFreeId")?,
        resource_failure: class("ResourceFailure")?,
    };
    let _ = EXCEPTIONS.set(py, exceptions);
    Ok(module)
}

fn exceptions(py: Python<'_>) -> PyResult<&DynExceptions> {
    EXCEPTIONS
        .get(py)
        .ok_or_else(|| PyRuntimeError::new_err("the alc.dyn module is not installed"))
}

fn resource_failure(py: Python<'_>, message: String) -> PyErr {
    match exceptions(py) {
        Ok(e) => PyErr::from_type(e.resource_failure.bind(py).clone(), message),
        Err(e) => e,
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into())
}

fn str_arg(obj: &Bound<'_, PyAny>, func: &str, what: &str) -> PyResult<String> {
    let s = obj.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{func}: {what} must be a str, not {}",
            type_name(obj)
        ))
    })?;
    Ok(s.to_str()?.to_string())
}

fn dict_arg<'py>(obj: &Bound<'py, PyAny>, func: &str, what: &str) -> PyResult<Bound<'py, PyDict>> {
    obj.cast::<PyDict>().cloned().map_err(|_| {
        PyTypeError::new_err(format!(
            "{func}: {what} must be a dict, not {}",
            type_name(obj)
        ))
    })
}

/// A dictionary literal parsed with `ast.literal_eval` (never evaluated as code).
fn parse_dictionary<'py>(py: Python<'py>, text: &str, what: &str) -> PyResult<Bound<'py, PyDict>> {
    let literal_eval = py
        .import(intern!(py, "ast"))?
        .getattr(intern!(py, "literal_eval"))?;
    let value = literal_eval.call1((text,)).map_err(|e| {
        PyValueError::new_err(format!(
            "dyn.action: {what} {text:?} is not a Python dictionary literal ({})",
            e.value(py)
        ))
    })?;
    dict_arg(&value, "dyn.action", what)
}

/// The literal text a function's returned dictionary is kept as between runs; `None` from
/// the function keeps `given`.
fn keep_dictionary(
    returned: &Bound<'_, PyAny>,
    given: &Bound<'_, PyDict>,
    func: &str,
    which: &str,
) -> PyResult<String> {
    let dict = if returned.is_none() {
        given.clone()
    } else {
        dict_arg(
            returned,
            func,
            &format!("the result of the {which} function"),
        )?
    };
    let text = dict.repr()?.to_string();
    if !is_literal(dict.as_any(), 0) {
        return Err(PyValueError::new_err(format!(
            "{func}: the {which} function's dictionary must hold only Python literals \
             (str, bytes, numbers, tuples, lists, dicts, sets, booleans, None) to be kept \
             between runs: {text}"
        )));
    }
    Ok(text)
}

/// How deep a kept value may nest: CPython's parser reads no more nested brackets back.
const LITERAL_DEPTH: usize = 200;

/// Whether `value` is made of Python literals only — None, booleans, int, finite float and
/// complex, str and bytes, and tuples, lists, sets and dicts of them, each of exactly that type
/// (a subclass may print itself otherwise) — so that its `repr` is a literal that
/// `ast.literal_eval` reads back equal to it. Checked on the objects rather than by parsing
/// the text back: the parse was most of a setup run's time.
fn is_literal(value: &Bound<'_, PyAny>, depth: usize) -> bool {
    if depth > LITERAL_DEPTH {
        return false;
    }
    if value.is_none()
        || value.is_exact_instance_of::<PyBool>()
        || value.is_exact_instance_of::<PyInt>()
        || value.is_exact_instance_of::<PyString>()
        || value.is_exact_instance_of::<PyBytes>()
    {
        true
    } else if let Ok(float) = value.cast_exact::<PyFloat>() {
        float.value().is_finite()
    } else if let Ok(complex) = value.cast_exact::<PyComplex>() {
        complex.real().is_finite() && complex.imag().is_finite()
    } else if let Ok(tuple) = value.cast_exact::<PyTuple>() {
        all_literal(tuple.iter(), depth)
    } else if let Ok(list) = value.cast_exact::<PyList>() {
        all_literal(list.iter(), depth)
    } else if let Ok(set) = value.cast_exact::<PySet>() {
        all_literal(set.iter(), depth)
    } else if let Ok(dict) = value.cast_exact::<PyDict>() {
        dict.iter()
            .all(|(key, item)| is_literal(&key, depth + 1) && is_literal(&item, depth + 1))
    } else {
        false
    }
}

/// Whether every item of a container at `depth` is a literal.
fn all_literal<'py>(mut items: impl Iterator<Item = Bound<'py, PyAny>>, depth: usize) -> bool {
    items.all(|item| is_literal(&item, depth + 1))
}

/// The (setup, modify, revert, teardown) entry of `key`.
fn entry<'py>(
    actions: &Bound<'py, PyDict>,
    key: &str,
    func: &str,
) -> PyResult<[Option<Bound<'py, PyAny>>; 4]> {
    let Some(value) = actions.get_item(key)? else {
        let mut keys = Vec::new();
        for k in actions.keys() {
            keys.push(k.repr()?.to_string());
        }
        return Err(PyKeyError::new_err(format!(
            "{func}: function key {key:?} is not in the action dictionary (its keys: {})",
            keys.join(", ")
        )));
    };
    let bad = || {
        PyTypeError::new_err(format!(
            "{func}: the entry of {key:?} must be a tuple (setup, modify or None, revert or \
             None, teardown) of functions, not {}",
            value.repr().map(|r| r.to_string()).unwrap_or_default()
        ))
    };
    let tuple = value.cast::<PyTuple>().map_err(|_| bad())?;
    if tuple.len() != 4 {
        return Err(bad());
    }
    let mut out: [Option<Bound<'py, PyAny>>; 4] = [None, None, None, None];
    for (i, item) in tuple.iter().enumerate() {
        let optional = i == 1 || i == 2;
        if item.is_none() && optional {
            continue;
        }
        if !item.is_callable() {
            return Err(bad());
        }
        out[i] = Some(item);
    }
    Ok(out)
}

/// Runs `f` on the dynamic-services state of the run in progress.
fn with_dyn<R>(f: impl FnOnce(&mut DynState) -> PyResult<R>) -> PyResult<R> {
    with_run(|s| f(s.dyn_state()?))
}

fn set_phase(phase: Phase) -> PyResult<Phase> {
    with_dyn(|d| Ok(std::mem::replace(&mut d.phase, phase)))
}

/// Calls `function(*args)` in `phase`, restoring the previous phase after.
fn call_in<'py>(
    phase: Phase,
    function: &Bound<'py, PyAny>,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let before = set_phase(phase)?;
    let result = function.call1(args);
    set_phase(before)?;
    result
}

/// `dyn.action(dictionary)`: runs the function of the script parameters' function key for the
/// run's action.
#[pyfunction]
fn action(py: Python<'_>, dictionary: &Bound<'_, PyAny>) -> PyResult<()> {
    const F: &str = "dyn.action";
    let actions = dict_arg(dictionary, F, "the action dictionary")?;
    let run = with_dyn(|d| {
        if d.action_called {
            return Err(PyRuntimeError::new_err(format!(
                "{F}: called a second time in one run"
            )));
        }
        d.action_called = true;
        d.actions = Some(actions.clone().unbind());
        Ok(d.run.clone())
    })?;
    let result = dispatch(py, &actions, &run);
    with_dyn(|d| {
        d.actions = None;
        Ok(())
    })?;
    result
}

fn dispatch(py: Python<'_>, actions: &Bound<'_, PyDict>, run: &DynRun) -> PyResult<()> {
    const F: &str = "dyn.action";
    let key = run.function_key();
    let [setup, modify, revert, teardown] = entry(actions, key, F)?;
    let revert_defined = revert.is_some();
    with_dyn(|d| {
        d.revert_defined = revert_defined;
        Ok(())
    })?;
    let params = match &run.params {
        Some(p) => Some(parse_dictionary(
            py,
            p.dictionary(),
            "the script parameters",
        )?),
        None => None,
    };
    let kept = match &run.state {
        Some(s) => Some(parse_dictionary(
            py,
            &s.dictionary,
            "the service's kept dictionary",
        )?),
        None => None,
    };
    let missing =
        |what: &str| PyRuntimeError::new_err(format!("{F}: a {} run has no {what}", run.action));
    match run.action {
        DynAction::Setup => {
            let params = params.ok_or_else(|| missing("script parameters"))?;
            let setup = setup.ok_or_else(|| missing("setup function"))?;
            let returned = call_in(Phase::Setup, &setup, (&params,))?;
            let text = keep_dictionary(&returned, &params, F, "setup")?;
            with_dyn(|d| {
                d.kept = Some(text);
                Ok(())
            })
        }
        DynAction::Modify => {
            let (params, kept) = (
                params.ok_or_else(|| missing("script parameters"))?,
                kept.ok_or_else(|| missing("service state"))?,
            );
            let Some(modify) = modify else {
                return Err(PyValueError::new_err(format!(
                    "{F}: function key {key:?} has no modify function (None in the action \
                     dictionary)"
                )));
            };
            let returned = call_in(Phase::Other, &modify, (&kept, &params))?;
            let text = keep_dictionary(&returned, &params, F, "modify")?;
            with_dyn(|d| {
                d.kept = Some(text);
                Ok(())
            })
        }
        DynAction::Revert => {
            let (params, kept) = (
                params.ok_or_else(|| missing("script parameters"))?,
                kept.ok_or_else(|| missing("service state"))?,
            );
            // No revert function: there is nothing to undo, the run succeeds with no CLI.
            if let Some(revert) = revert {
                call_in(Phase::Other, &revert, (&kept, &params))?;
            }
            Ok(())
        }
        DynAction::Teardown => {
            let kept = kept.ok_or_else(|| missing("service state"))?;
            let teardown = teardown.ok_or_else(|| missing("teardown function"))?;
            call_in(Phase::Other, &teardown, (&kept,))?;
            dereference_held(py, actions)
        }
    }
}

/// After a teardown: releases every reference the service held, running the referenced
/// teardown function for each one it held last.
fn dereference_held(py: Python<'_>, actions: &Bound<'_, PyDict>) -> PyResult<()> {
    const F: &str = "dyn.action";
    let held = with_dyn(|d| Ok(std::mem::take(&mut d.held)))?;
    for key in held {
        let seen = with_dyn(|d| {
            d.referenced(&key, F)
                .map_err(|message| resource_failure(py, message))
        })?;
        let Some(seen) = seen else {
            // The table lost it (a caller that never applied the setup's changes): there is
            // nothing to count down, and the service must still go.
            with_run(|s| {
                s.write_output(&format!(
                    "alc.dyn: reference ({:?}, {:?}) is not in the reference table; skipped\n",
                    key.function_key, key.reference_id
                ));
                Ok(())
            })?;
            continue;
        };
        if seen.count > 1 {
            with_dyn(|d| {
                let count = seen.count - 1;
                let dictionary = seen.dictionary.clone();
                d.overlay
                    .insert(key.clone(), Some(Referenced { count, dictionary }));
                d.changes.push(ReferenceChange::Dereferenced(key.clone()));
                Ok(())
            })?;
            continue;
        }
        let [_, _, _, teardown] = entry(actions, &key.function_key, "dyn.reference")?;
        let teardown = teardown.ok_or_else(|| {
            PyRuntimeError::new_err("dyn.reference: the referenced entry has no teardown")
        })?;
        let kept = parse_dictionary(py, &seen.dictionary, "the reference's kept dictionary")?;
        call_in(Phase::Other, &teardown, (&kept,))?;
        with_dyn(|d| {
            d.overlay.insert(key.clone(), None);
            d.changes.push(ReferenceChange::Removed(key.clone()));
            Ok(())
        })?;
    }
    Ok(())
}

/// `dyn.add_cli(text)`: adds service CLI to the run's transaction.
#[pyfunction]
fn add_cli(text: &Bound<'_, PyAny>) -> PyResult<()> {
    let text = str_arg(text, "dyn.add_cli", "the CLI")?;
    with_dyn(|d| {
        if !d.cli.is_empty() && !d.cli.ends_with('\n') {
            d.cli.push('\n');
        }
        d.cli.push_str(&text);
        Ok(())
    })
}

/// `dyn.get_circuit_id()`: the control channel's circuit-id, `''` without one.
#[pyfunction]
fn get_circuit_id() -> PyResult<String> {
    with_dyn(|d| Ok(d.run.circuit_id.clone().unwrap_or_default()))
}

/// `dyn.get_remote_id()`: the control channel's remote-id, `''` without one.
#[pyfunction]
fn get_remote_id() -> PyResult<String> {
    with_dyn(|d| Ok(d.run.remote_id.clone().unwrap_or_default()))
}

/// `dyn.get_sap()`: the dynamic service's SAP id, `#` wildcards replaced.
#[pyfunction]
fn get_sap() -> PyResult<String> {
    with_dyn(|d| {
        expand_sap_wildcards(&d.run.sap_id, d.run.control_sap.as_deref())
            .map_err(|e| PyValueError::new_err(format!("dyn.get_sap: {e}")))
    })
}

/// `dyn.reference(function_key, reference_id, dictionary)`: holds the reference; the first
/// holder runs the setup function of `function_key` with `dictionary`. Returns what that
/// setup function returned.
#[pyfunction]
fn reference<'py>(
    py: Python<'py>,
    function_key: &Bound<'py, PyAny>,
    reference_id: &Bound<'py, PyAny>,
    dictionary: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    const F: &str = "dyn.reference";
    let function_key = str_arg(function_key, F, "the function key")?;
    let reference_id = str_arg(reference_id, F, "the reference id")?;
    let dictionary = dict_arg(dictionary, F, "the dictionary")?;
    let key = ReferenceKey {
        function_key,
        reference_id,
    };
    let (actions, seen) = with_dyn(|d| {
        if d.phase != Phase::Setup {
            return Err(PyRuntimeError::new_err(format!(
                "{F}: only allowed in the setup function of the service's function key"
            )));
        }
        let actions =
            d.actions.as_ref().map(|a| a.clone_ref(py)).ok_or_else(|| {
                PyRuntimeError::new_err(format!("{F}: only allowed in dyn.action"))
            })?;
        let seen = d
            .referenced(&key, F)
            .map_err(|message| resource_failure(py, message))?;
        Ok((actions, seen))
    })?;
    let actions = actions.bind(py);
    let [setup, _, _, _] = entry(actions, &key.function_key, F)?;
    let (kept, change) = match seen {
        Some(seen) => {
            let count = seen.count.saturating_add(1);
            let kept = Referenced {
                count,
                dictionary: seen.dictionary,
            };
            (kept, ReferenceChange::Referenced(key.clone()))
        }
        None => {
            let setup = setup.ok_or_else(|| PyRuntimeError::new_err(format!("{F}: no setup")))?;
            let returned = call_in(Phase::Other, &setup, (&dictionary,))?;
            let text = keep_dictionary(&returned, &dictionary, F, "referenced setup")?;
            let change = ReferenceChange::Created {
                key: key.clone(),
                dictionary: text.clone(),
            };
            (
                Referenced {
                    count: 1,
                    dictionary: text,
                },
                change,
            )
        }
    };
    let result = parse_dictionary(py, &kept.dictionary, "the reference's kept dictionary")?;
    with_dyn(|d| {
        d.overlay.insert(key.clone(), Some(kept));
        d.changes.push(change);
        d.held.push(key);
        Ok(())
    })?;
    Ok(result)
}

/// `dyn.select_free_id(type)`: a free identifier of `type` from the policy's configured
/// range, as a string.
#[pyfunction]
fn select_free_id(py: Python<'_>, kind: &Bound<'_, PyAny>) -> PyResult<String> {
    const F: &str = "dyn.select_free_id";
    let name = str_arg(kind, F, "the identifier type")?;
    let kind = IdKind::from_name(&name).ok_or_else(|| {
        let names: Vec<String> = IdKind::ALL.iter().map(|k| format!("'{k}'")).collect();
        PyValueError::new_err(format!(
            "{F}: unknown identifier type {name:?}; expected one of {}",
            names.join(", ")
        ))
    })?;
    let selected = with_dyn(|d| {
        let mut taken: Vec<u32> = d
            .selected
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, id)| *id)
            .collect();
        taken.sort_unstable();
        let policy = d.run.policy.clone();
        let id = d
            .resources(F, |r| r.select_free_id(&policy, kind, &taken))
            .map_err(|message| resource_failure(py, message))?;
        if let Some(id) = id {
            d.selected.push((kind, id));
        }
        Ok(id)
    })?;
    match selected {
        Some(id) => Ok(id.to_string()),
        None => Err(PyErr::from_type(
            exceptions(py)?.no_free_id.bind(py).clone(),
            format!("{F}: no free {kind} is left in the configured range"),
        )),
    }
}
