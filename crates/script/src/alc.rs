//! The `alc` Python package: `alc.radius`, `alc.cache`, `alc.dyn` (in `alc_dyn.rs`),
//! `alc.sub_svc` (in `sub_svc.rs`),
//! `alc.TimeLimitExceeded`.
//!
//! Built from Rust and put in `sys.modules` (no files on disk). Every function works on the
//! run in progress on the calling thread (see [`crate::state`]).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, Ordering};

use brasa_cache::CacheError;
use brasa_radius::attr::VENDOR_SPECIFIC;
use brasa_radius::vsa::{vsa_build, vsa_split};
use brasa_radius::{Dictionary, Message, RawAttr, VendorFormat};
use pyo3::exceptions::{PyBaseException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyInt, PyList, PyString, PyTuple, PyType};
use pyo3::{ffi, intern, PyTypeInfo};

use crate::cache::ScriptCache;
use crate::report::TraceLine;
use crate::state::{try_with_run, with_run, RunState};

/// Largest RADIUS packet (RFC 2865 §3).
const MAX_PACKET: usize = 4096;
/// Largest attribute value: the Length octet counts the 2 header octets too.
const MAX_VALUE: usize = 253;

/// `alc.TimeLimitExceeded`: raised in a script that runs over its time limit.
///
/// A `BaseException`, so `except Exception:` lets it through. When Python instantiates it on
/// a thread whose run has timed out, it also installs a C trace hook on that thread that
/// raises it again at every line, so even a bare `except:` cannot keep the script going.
/// The host removes the hook when the run ends.
#[pyclass(extends = PyBaseException, module = "alc", name = "TimeLimitExceeded")]
pub(crate) struct TimeLimitExceeded;

#[pymethods]
impl TimeLimitExceeded {
    #[new]
    #[pyo3(signature = (*_args))]
    fn new(_args: &Bound<'_, PyTuple>) -> Self {
        if try_with_run(|state| state.timed_out()).unwrap_or(false) {
            // SAFETY: called by Python with the GIL held; sets this thread's trace function.
            unsafe { ffi::PyEval_SetTrace(Some(timeout_trace), std::ptr::null_mut()) };
        }
        TimeLimitExceeded
    }

    fn __str__(&self) -> &'static str {
        "the script ran over its time limit"
    }
}

static TIME_LIMIT_EXCEEDED: AtomicPtr<ffi::PyObject> = AtomicPtr::new(std::ptr::null_mut());

/// The `alc.TimeLimitExceeded` type object, null before [`install`].
pub(crate) fn time_limit_exceeded_ptr() -> *mut ffi::PyObject {
    TIME_LIMIT_EXCEEDED.load(Ordering::Acquire)
}

/// Trace hook of a timed-out run: every event raises `TimeLimitExceeded` again.
///
/// # Safety
/// Called by CPython as a `Py_tracefunc`, with the GIL held and valid (or null) object pointers;
/// it only reads a static and calls `PyErr_SetNone`.
unsafe extern "C" fn timeout_trace(
    _obj: *mut ffi::PyObject,
    _frame: *mut ffi::PyFrameObject,
    _what: c_int,
    _arg: *mut ffi::PyObject,
) -> c_int {
    let exception = time_limit_exceeded_ptr();
    if exception.is_null() {
        return 0;
    }
    // SAFETY: trace hooks run with the GIL held; the type object lives for the process.
    unsafe { ffi::PyErr_SetNone(exception) };
    -1
}

/// `sys.stdout` and `sys.stderr` of the embedded interpreter: text goes to the output of the
/// run in progress on the writing thread, and is discarded outside a run.
#[pyclass(module = "alc", name = "_Output", frozen)]
struct OutputSink;

#[pymethods]
impl OutputSink {
    fn write(&self, text: &Bound<'_, PyAny>) -> PyResult<usize> {
        let text = text.cast::<PyString>().map_err(|_| {
            PyTypeError::new_err(format!(
                "write() argument must be str, not {}",
                type_name(text)
            ))
        })?;
        let chars = text.len()?;
        let content = text.to_string_lossy();
        try_with_run(|state| state.write_output(&content));
        Ok(chars)
    }

    fn flush(&self) {}

    fn isatty(&self) -> bool {
        false
    }

    fn writable(&self) -> bool {
        true
    }

    fn readable(&self) -> bool {
        false
    }

    fn seekable(&self) -> bool {
        false
    }

    #[getter]
    fn encoding(&self) -> &'static str {
        "utf-8"
    }

    #[getter]
    fn errors(&self) -> &'static str {
        "strict"
    }

    #[getter]
    fn closed(&self) -> bool {
        false
    }
}

/// The exception classes of `alc.cache`.
struct CacheExceptions {
    not_found: Py<PyType>,
    entry_too_large: Py<PyType>,
    too_many_entries: Py<PyType>,
    global_memory_exceeded: Py<PyType>,
    shutdown: Py<PyType>,
    unavailable: Py<PyType>,
    backend_failure: Py<PyType>,
}

/// Objects every run uses, made once by [`install`].
struct Alc {
    cache: CacheExceptions,
    sys: Py<PyModule>,
    sink: Py<PyAny>,
    format_exception: Py<PyAny>,
    format_exception_only: Py<PyAny>,
}

static ALC: PyOnceLock<Alc> = PyOnceLock::new();

const CACHE_EXCEPTIONS: &std::ffi::CStr = cr#"
class error(Exception):
    """Base class of every alc.cache error."""

class NotFound(error, KeyError):
    """No live entry has the key (retrieve, clear, get_lifetime, set_lifetime)."""
    __str__ = BaseException.__str__

class Refused(error):
    """The cache refused the operation; `reason` names why."""
    reason = None

class EntryTooLarge(Refused):
    """Key plus value exceed the policy's entry-size."""
    reason = "entry_too_large"

class TooManyEntries(Refused):
    """The cache already holds max-entries entries."""
    reason = "too_many_entries"

class GlobalMemoryExceeded(Refused):
    """All caches together would exceed the global memory bound."""
    reason = "global_memory_exceeded"

class Shutdown(Refused):
    """The policy's cache is shut down."""
    reason = "cache_shutdown"

class Unavailable(error):
    """The script's python-policy has no cache."""

class BackendFailure(BaseException):
    """The cache's store (Redis) failed or did not answer in time. A BaseException, as the
    run fails anyway: the packet gets the script's action-on-fail."""
"#;

const ALC_DOC: &str = "SR OS Python API of brasa: `radius` (the packet being processed), \
`cache` (the python-policy's key/value cache; values are bytes), `dyn` (dynamic data \
services) and `sub_svc` (subscriber services of PCC rules).";

const RADIUS_DOC: &str = "The RADIUS packet the script runs on: `header()`, `drop()` and \
`attributes` (get, getTuple, set, clear and the VSA variants getVSA, getVSATuple, setVSA, \
clearVSA).";

const CACHE_DOC: &str = "The python-policy cache: save(value, key), retrieve(key), clear(key), \
get_lifetime(key), set_lifetime(key, seconds). Errors: `error` is the base; `NotFound` (also a \
KeyError) is a miss; `Refused` (with `reason`) and its subclasses `EntryTooLarge`, \
`TooManyEntries`, `GlobalMemoryExceeded`, `Shutdown` are refusals; `Unavailable` means the \
policy has no cache; `BackendFailure` (a BaseException) means its store failed, which fails the \
run.";

/// Builds the `alc` package once per process, registers it in `sys.modules` and points
/// `sys.stdout`, `sys.stderr` at the run output (and `sys.stdin` at nothing: a daemon has no
/// terminal).
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    ALC.get_or_try_init(py, || build(py)).map(|_| ())
}

fn build(py: Python<'_>) -> PyResult<Alc> {
    let alc = PyModule::new(py, "alc")?;
    alc.setattr("__doc__", ALC_DOC)?;
    alc.setattr("__path__", PyList::empty(py))?;

    let attributes = PyModule::new(py, "alc.radius.attributes")?;
    attributes.add_function(wrap_pyfunction!(get, &attributes)?)?;
    attributes.add_function(wrap_pyfunction!(get_tuple, &attributes)?)?;
    attributes.add_function(wrap_pyfunction!(set, &attributes)?)?;
    attributes.add_function(wrap_pyfunction!(clear, &attributes)?)?;
    attributes.add_function(wrap_pyfunction!(get_vsa, &attributes)?)?;
    attributes.add_function(wrap_pyfunction!(get_vsa_tuple, &attributes)?)?;
    attributes.add_function(wrap_pyfunction!(set_vsa, &attributes)?)?;
    attributes.add_function(wrap_pyfunction!(clear_vsa, &attributes)?)?;

    let radius = PyModule::new(py, "alc.radius")?;
    radius.setattr("__doc__", RADIUS_DOC)?;
    radius.add_function(wrap_pyfunction!(header, &radius)?)?;
    radius.add_function(wrap_pyfunction!(drop_packet, &radius)?)?;
    radius.add("attributes", &attributes)?;

    let cache = PyModule::new(py, "alc.cache")?;
    cache.setattr("__doc__", CACHE_DOC)?;
    py.run(CACHE_EXCEPTIONS, Some(&cache.dict()), None)?;
    cache.add_function(wrap_pyfunction!(cache_save, &cache)?)?;
    cache.add_function(wrap_pyfunction!(cache_retrieve, &cache)?)?;
    cache.add_function(wrap_pyfunction!(cache_clear, &cache)?)?;
    cache.add_function(wrap_pyfunction!(cache_get_lifetime, &cache)?)?;
    cache.add_function(wrap_pyfunction!(cache_set_lifetime, &cache)?)?;

    let dyn_module = crate::alc_dyn::build(py)?;
    let (sub_svc, sub_svc_flow) = crate::sub_svc::build(py)?;

    alc.add("radius", &radius)?;
    alc.add("cache", &cache)?;
    alc.add("dyn", &dyn_module)?;
    alc.add("sub_svc", &sub_svc)?;
    alc.add_class::<TimeLimitExceeded>()?;

    // Every `import` statement that finds its module in `sys.modules` reads the module's
    // `__spec__._initializing` (to wait for a module still initialising on another thread).
    // A module made from Rust has no spec, and the misses cost two formatted AttributeErrors
    // on each of a script's `from alc import …` lines, every run. A spec without a loader, as
    // built-in modules have, with `_initializing` false, as importlib leaves it on every
    // module it has loaded, makes the check two dictionary lookups.
    let module_spec = py.import("importlib.machinery")?.getattr("ModuleSpec")?;
    for (module, package) in [
        (&alc, true),
        (&radius, false),
        (&attributes, false),
        (&cache, false),
        (&dyn_module, false),
        (&sub_svc, true),
        (&sub_svc_flow, false),
    ] {
        let options = PyDict::new(py);
        options.set_item("is_package", package)?;
        let spec = module_spec.call((module.name()?, py.None()), Some(&options))?;
        spec.setattr("_initializing", false)?;
        module.setattr("__spec__", spec)?;
    }

    let sys = py.import("sys")?;
    let modules = sys.getattr("modules")?;
    modules.set_item("alc", &alc)?;
    modules.set_item("alc.radius", &radius)?;
    modules.set_item("alc.radius.attributes", &attributes)?;
    modules.set_item("alc.cache", &cache)?;
    modules.set_item("alc.dyn", &dyn_module)?;
    modules.set_item("alc.sub_svc", &sub_svc)?;
    modules.set_item("alc.sub_svc.flow", &sub_svc_flow)?;

    let sink = Bound::new(py, OutputSink)?.into_any();
    sys.setattr("stdout", &sink)?;
    sys.setattr("stderr", &sink)?;
    sys.setattr("stdin", py.None())?;

    let class = |name: &str| -> PyResult<Py<PyType>> {
        Ok(cache.getattr(name)?.cast_into::<PyType>()?.unbind())
    };
    let traceback = py.import("traceback")?;
    let state = Alc {
        cache: CacheExceptions {
            not_found: class("NotFound")?,
            entry_too_large: class("EntryTooLarge")?,
            too_many_entries: class("TooManyEntries")?,
            global_memory_exceeded: class("GlobalMemoryExceeded")?,
            shutdown: class("Shutdown")?,
            unavailable: class("Unavailable")?,
            backend_failure: class("BackendFailure")?,
        },
        sys: sys.unbind(),
        sink: sink.unbind(),
        format_exception: traceback.getattr("format_exception")?.unbind(),
        format_exception_only: traceback.getattr("format_exception_only")?.unbind(),
    };
    // The type object is static in PyO3 and also held by the `alc` module: never freed.
    TIME_LIMIT_EXCEEDED.store(
        TimeLimitExceeded::type_object(py).as_ptr(),
        Ordering::Release,
    );
    Ok(state)
}

fn alc(py: Python<'_>) -> PyResult<&Alc> {
    ALC.get(py).ok_or_else(|| {
        pyo3::exceptions::PyRuntimeError::new_err("the alc package is not installed")
    })
}

/// Puts the run output back in place should an earlier script have rebound `sys.stdout` or
/// `sys.stderr`, so that no script's print reaches the process's own stdout.
pub(crate) fn restore_output(py: Python<'_>) -> PyResult<()> {
    let alc = alc(py)?;
    let sys = alc.sys.bind(py);
    for name in [intern!(py, "stdout"), intern!(py, "stderr")] {
        if !sys.getattr(name)?.is(alc.sink.bind(py)) {
            sys.setattr(name, alc.sink.bind(py))?;
        }
    }
    Ok(())
}

/// The traceback Python would print for `err`, and its last line (`Type: message`).
pub(crate) fn describe(py: Python<'_>, err: &PyErr) -> (String, String) {
    let value = err.value(py);
    // The traceback is passed explicitly: on 3.11 a fetched exception does not carry it in
    // `__traceback__`.
    let traceback = err.traceback(py);
    let text = |f: &Py<PyAny>, with_traceback: bool| -> Option<String> {
        let lines = if with_traceback {
            f.bind(py)
                .call1((err.get_type(py), value, traceback.as_ref()))
                .ok()?
        } else {
            f.bind(py).call1((value,)).ok()?
        };
        let mut out = String::new();
        for line in lines.try_iter().ok()? {
            out.push_str(&line.ok()?.str().ok()?.to_string_lossy());
        }
        Some(out)
    };
    let Ok(alc) = alc(py) else {
        return (err.to_string(), String::new());
    };
    let message = text(&alc.format_exception_only, false)
        .and_then(|m| m.lines().next().map(str::to_string))
        .unwrap_or_else(|| err.to_string());
    let traceback = text(&alc.format_exception, true).unwrap_or_default();
    (message, traceback)
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into())
}

/// An integer argument within `min..=max`: `TypeError` if not an int, `ValueError` if out of
/// range.
fn int_arg(obj: &Bound<'_, PyAny>, func: &str, what: &str, min: u64, max: u64) -> PyResult<u64> {
    if !obj.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{func}: {what} must be an int, not {}",
            type_name(obj)
        )));
    }
    let out_of_range = || {
        let shown = obj
            .str()
            .map(|s| s.to_string())
            .unwrap_or_else(|_| "?".into());
        PyValueError::new_err(format!(
            "{func}: {what} {shown} is out of range {min}..{max}"
        ))
    };
    let value: i128 = obj.extract().map_err(|_| out_of_range())?;
    u64::try_from(value)
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(out_of_range)
}

fn attr_type(obj: &Bound<'_, PyAny>, func: &str) -> PyResult<u8> {
    // The range check makes the narrowing exact.
    int_arg(obj, func, "attribute type", 1, 255).map(|t| t as u8)
}

fn vendor_arg(obj: &Bound<'_, PyAny>, func: &str) -> PyResult<u32> {
    int_arg(obj, func, "vendor", 0, u64::from(u32::MAX)).map(|v| v as u32)
}

fn vendor_type_arg(obj: &Bound<'_, PyAny>, func: &str, format: VendorFormat) -> PyResult<u32> {
    let max = match format.type_size {
        1 => 0xff,
        2 => 0xffff,
        _ => u64::from(u32::MAX),
    };
    int_arg(obj, func, "vendor attribute type", 0, max).map(|t| t as u32)
}

/// A byte string argument: bytes, bytearray, or str (encoded as UTF-8).
fn bytes_arg<'a>(obj: &'a Bound<'_, PyAny>, func: &str, what: &str) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Cow::Owned(b.to_vec()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Cow::Borrowed(s.to_str()?.as_bytes()));
    }
    Err(PyTypeError::new_err(format!(
        "{func}: {what} must be bytes, bytearray or str, not {}",
        type_name(obj)
    )))
}

/// One value, or a tuple or list of them.
fn values_arg(obj: &Bound<'_, PyAny>, func: &str) -> PyResult<Vec<Vec<u8>>> {
    let items: Vec<Bound<'_, PyAny>> = if let Ok(t) = obj.cast::<PyTuple>() {
        t.iter().collect()
    } else if let Ok(l) = obj.cast::<PyList>() {
        l.iter().collect()
    } else {
        return Ok(vec![bytes_arg(obj, func, "value")?.into_owned()]);
    };
    items
        .iter()
        .map(|item| bytes_arg(item, func, "each value").map(Cow::into_owned))
        .collect()
}

fn check_value_lengths(values: &[Vec<u8>], func: &str, max: usize, what: &str) -> PyResult<()> {
    for (i, v) in values.iter().enumerate() {
        if v.len() > max {
            let which = if values.len() == 1 {
                "the value".to_string()
            } else {
                format!("value {i}")
            };
            return Err(PyValueError::new_err(format!(
                "{func}: {which} of {what} is {} bytes, at most {max} fit",
                v.len()
            )));
        }
    }
    Ok(())
}

fn check_packet_length(length: usize, func: &str) -> PyResult<()> {
    if length > MAX_PACKET {
        return Err(PyValueError::new_err(format!(
            "{func}: the packet would be {length} bytes, more than the RADIUS maximum of {MAX_PACKET}"
        )));
    }
    Ok(())
}

fn bytes_tuple<'py, I>(py: Python<'py>, values: I) -> PyResult<Bound<'py, PyTuple>>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let items: Vec<Bound<'py, PyBytes>> = values
        .into_iter()
        .map(|v| PyBytes::new(py, v.as_ref()))
        .collect();
    PyTuple::new(py, items)
}

/// `radius.header()`: `{'code', 'identifier', 'length', 'authenticator'}`, the length being
/// that of the packet as it would be encoded now.
#[pyfunction]
fn header(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let (code, identifier, length, authenticator) = with_run(|s| {
        let p = s.packet()?;
        Ok((
            u8::from(p.code),
            p.identifier,
            p.encoded_len(),
            p.authenticator,
        ))
    })?;
    let dict = PyDict::new(py);
    dict.set_item(intern!(py, "code"), code)?;
    dict.set_item(intern!(py, "identifier"), identifier)?;
    dict.set_item(intern!(py, "length"), length)?;
    dict.set_item(
        intern!(py, "authenticator"),
        PyBytes::new(py, &authenticator),
    )?;
    Ok(dict)
}

/// `radius.drop()`: the packet is to be dropped; the script goes on running.
#[pyfunction]
#[pyo3(name = "drop")]
fn drop_packet() -> PyResult<()> {
    with_run(|s| {
        s.packet()?;
        s.drop_packet();
        s.record(TraceLine::Drop);
        Ok(())
    })
}

/// `radius.attributes.get(type)`: the first instance's value, `b""` when absent.
#[pyfunction]
fn get<'py>(py: Python<'py>, typ: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let typ = attr_type(typ, "radius.attributes.get")?;
    with_run(|s| Ok(PyBytes::new(py, s.packet()?.get(typ).unwrap_or_default())))
}

/// `radius.attributes.getTuple(type)`: every instance's value, in packet order.
#[pyfunction]
#[pyo3(name = "getTuple")]
fn get_tuple<'py>(py: Python<'py>, typ: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyTuple>> {
    let typ = attr_type(typ, "radius.attributes.getTuple")?;
    with_run(|s| bytes_tuple(py, s.packet()?.get_all(typ)))
}

/// `radius.attributes.set(type, value_or_values)`: replaces every instance.
#[pyfunction]
fn set(typ: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
    const F: &str = "radius.attributes.set";
    let typ = attr_type(typ, F)?;
    let values = values_arg(value, F)?;
    check_value_lengths(&values, F, MAX_VALUE, &format!("attribute {typ}"))?;
    with_run(|s| {
        let p = s.packet()?;
        let old: usize = p.get_all(typ).map(|v| 2 + v.len()).sum();
        let new: usize = values.iter().map(|v| 2 + v.len()).sum();
        check_packet_length(p.encoded_len() - old + new, F)?;
        if s.tracing() {
            s.record(TraceLine::Set {
                typ,
                values: values.clone(),
            });
        }
        // Every value was checked against the 253-octet limit above.
        s.packet_mut()?
            .attributes
            .set_all(typ, values)
            .map_err(|e| PyValueError::new_err(format!("{F}: {e}")))
    })
}

/// `radius.attributes.clear(type)`: removes every instance.
#[pyfunction]
fn clear(typ: &Bound<'_, PyAny>) -> PyResult<()> {
    let typ = attr_type(typ, "radius.attributes.clear")?;
    with_run(|s| {
        let present = s.packet()?.get(typ).is_some();
        s.record(TraceLine::Clear { typ });
        if present {
            s.packet_mut()?.remove(typ);
        }
        Ok(())
    })
}

fn vendor_name(dict: &Dictionary, vendor: u32) -> Option<String> {
    dict.vendor_by_id(vendor).map(|v| v.name.clone())
}

/// `radius.attributes.getVSA(vendor, type)`: the first instance's value, `b""` when absent.
#[pyfunction]
#[pyo3(name = "getVSA")]
fn get_vsa<'py>(
    py: Python<'py>,
    vendor: &Bound<'py, PyAny>,
    typ: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    const F: &str = "radius.attributes.getVSA";
    let vendor = vendor_arg(vendor, F)?;
    with_run(|s| {
        let dict = s.dictionary()?;
        let typ = vendor_type_arg(typ, F, dict.vendor_format(vendor))?;
        let value = s.packet()?.get_vsa(dict, vendor, typ).unwrap_or_default();
        Ok(PyBytes::new(py, &value))
    })
}

/// `radius.attributes.getVSATuple(vendor, type)`: every instance's value, in packet order.
#[pyfunction]
#[pyo3(name = "getVSATuple")]
fn get_vsa_tuple<'py>(
    py: Python<'py>,
    vendor: &Bound<'py, PyAny>,
    typ: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyTuple>> {
    const F: &str = "radius.attributes.getVSATuple";
    let vendor = vendor_arg(vendor, F)?;
    with_run(|s| {
        let dict = s.dictionary()?;
        let typ = vendor_type_arg(typ, F, dict.vendor_format(vendor))?;
        bytes_tuple(py, s.packet()?.get_vsa_all(dict, vendor, typ))
    })
}

/// Whether `attr` is a Vendor-Specific of `vendor` holding sub-attribute `typ`, and whether
/// it also holds others.
fn vsa_holds(attr: RawAttr<'_>, vendor: u32, typ: u32, format: VendorFormat) -> (bool, bool) {
    if attr.typ != VENDOR_SPECIFIC {
        return (false, false);
    }
    match vsa_split(attr.value, vendor, format) {
        Some(subs) => (
            subs.iter().any(|s| s.typ == typ),
            subs.iter().any(|s| s.typ != typ),
        ),
        None => (false, false),
    }
}

/// The packet with every `(vendor, typ)` sub-attribute replaced by one Vendor-Specific per
/// value, placed where the first instance was (else appended).
fn with_vsa_replaced(
    packet: &Message,
    dict: &Dictionary,
    vendor: u32,
    typ: u32,
    encoded: Vec<Vec<u8>>,
) -> Result<Message, brasa_radius::PacketError> {
    let format = dict.vendor_format(vendor);
    let first = packet.attributes.iter().enumerate().find_map(|(i, a)| {
        let (holds, others) = vsa_holds(a, vendor, typ, format);
        // A Vendor-Specific that keeps other sub-attributes stays; the new ones follow it.
        holds.then_some(if others { i + 1 } else { i })
    });
    let mut out = packet.clone();
    out.remove_vsa(dict, vendor, typ);
    let at = first.unwrap_or(out.attributes.len());
    for (offset, value) in encoded.iter().enumerate() {
        out.attributes.insert(at + offset, VENDOR_SPECIFIC, value)?;
    }
    Ok(out)
}

/// `radius.attributes.setVSA(vendor, type, value_or_values)`: replaces every instance, one
/// Vendor-Specific attribute per value, in the vendor's `format=`.
#[pyfunction]
#[pyo3(name = "setVSA")]
fn set_vsa(
    vendor: &Bound<'_, PyAny>,
    typ: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
) -> PyResult<()> {
    const F: &str = "radius.attributes.setVSA";
    let vendor = vendor_arg(vendor, F)?;
    let values = values_arg(value, F)?;
    with_run(|s| {
        let dict = s.dictionary()?;
        let format = dict.vendor_format(vendor);
        let typ = vendor_type_arg(typ, F, format)?;
        let header = 4
            + usize::from(format.type_size)
            + usize::from(format.length_size)
            + usize::from(format.continuation);
        check_value_lengths(
            &values,
            F,
            MAX_VALUE - header,
            &format!("vendor {vendor} attribute {typ}"),
        )?;
        let encoded = values
            .iter()
            .map(|v| vsa_build(vendor, typ, v, format))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PyValueError::new_err(format!("{F}: {e}")))?;
        let edited = with_vsa_replaced(s.packet()?, dict, vendor, typ, encoded)
            .map_err(|e| PyValueError::new_err(format!("{F}: {e}")))?;
        check_packet_length(edited.encoded_len(), F)?;
        if s.tracing() {
            let vendor_name = vendor_name(dict, vendor);
            s.record(TraceLine::SetVsa {
                vendor,
                vendor_name,
                typ,
                values,
            });
        }
        *s.packet_mut()? = edited;
        Ok(())
    })
}

/// `radius.attributes.clearVSA(vendor, type)`: removes every instance (a Vendor-Specific
/// left with other sub-attributes is kept with those).
#[pyfunction]
#[pyo3(name = "clearVSA")]
fn clear_vsa(vendor: &Bound<'_, PyAny>, typ: &Bound<'_, PyAny>) -> PyResult<()> {
    const F: &str = "radius.attributes.clearVSA";
    let vendor = vendor_arg(vendor, F)?;
    with_run(|s| {
        let dict = s.dictionary()?;
        let format = dict.vendor_format(vendor);
        let typ = vendor_type_arg(typ, F, format)?;
        if s.tracing() {
            let vendor_name = vendor_name(dict, vendor);
            s.record(TraceLine::ClearVsa {
                vendor,
                vendor_name,
                typ,
            });
        }
        let present = s
            .packet()?
            .attributes
            .iter()
            .any(|a| vsa_holds(a, vendor, typ, format).0);
        if present {
            let (packet, dict) = s.packet_mut_with_dictionary()?;
            packet.remove_vsa(dict, vendor, typ);
        }
        Ok(())
    })
}

/// How a key is shown in messages: like Python's bytes repr.
fn show_key(key: &[u8]) -> String {
    let mut out = String::from("b'");
    for &b in key {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('\'');
    out
}

fn cache_exception(py: Python<'_>, class: &Py<PyType>, message: String) -> PyErr {
    PyErr::from_type(class.bind(py).clone(), message)
}

/// Runs one operation on the policy's cache, turning misses and refusals into `alc.cache`
/// exceptions. A failing backend (an error, a panic, no answer in time) fails the whole run:
/// the script sees `BackendFailure` and every later cache call of the run fails at once.
fn with_cache<R>(
    py: Python<'_>,
    func: &str,
    key: &[u8],
    op: impl FnOnce(&mut dyn ScriptCache) -> Result<R, CacheError>,
) -> PyResult<R> {
    let alc = alc(py)?;
    let classes = &alc.cache;
    let result = with_run(|s: &mut RunState| {
        if let Some(failure) = s.cache_failure() {
            return Err(cache_exception(
                py,
                &classes.backend_failure,
                format!("{func}: not attempted after an earlier failure ({failure})"),
            ));
        }
        let Some(cache) = s.cache() else {
            return Err(cache_exception(
                py,
                &classes.unavailable,
                format!("{func}: this script's python-policy has no cache"),
            ));
        };
        // A panicking backend must not unwind into the interpreter.
        let result = catch_unwind(AssertUnwindSafe(|| op(cache))).unwrap_or_else(|_| {
            Err(CacheError::Backend {
                reason: "the cache backend panicked".into(),
            })
        });
        if let Err(CacheError::Backend { reason }) = &result {
            s.set_cache_failure(format!("{func}: {reason}"));
        }
        Ok(result)
    })?;
    result.map_err(|e| {
        let class = match &e {
            CacheError::NotFound => {
                return cache_exception(
                    py,
                    &classes.not_found,
                    format!("{func}: no entry for key {}", show_key(key)),
                )
            }
            CacheError::Backend { reason } => {
                return cache_exception(py, &classes.backend_failure, format!("{func}: {reason}"))
            }
            CacheError::EntryTooLarge { .. } => &classes.entry_too_large,
            CacheError::TooManyEntries { .. } => &classes.too_many_entries,
            CacheError::GlobalMemoryExceeded { .. } => &classes.global_memory_exceeded,
            CacheError::CacheShutdown => &classes.shutdown,
        };
        cache_exception(py, class, format!("{func} refused: {e}"))
    })
}

/// `cache.save(value, key)` (SR OS order: value first).
#[pyfunction]
#[pyo3(name = "save")]
fn cache_save(py: Python<'_>, value: &Bound<'_, PyAny>, key: &Bound<'_, PyAny>) -> PyResult<()> {
    const F: &str = "cache.save";
    let value = bytes_arg(value, F, "value")?;
    let key = bytes_arg(key, F, "key")?;
    with_cache(py, F, &key, |c| c.save(&key, &value))
}

/// `cache.retrieve(key)`: the stored value.
#[pyfunction]
#[pyo3(name = "retrieve")]
fn cache_retrieve<'py>(py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    const F: &str = "cache.retrieve";
    let key = bytes_arg(key, F, "key")?;
    let value = with_cache(py, F, &key, |c| c.retrieve(&key))?;
    Ok(PyBytes::new(py, &value))
}

/// `cache.clear(key)`: removes the entry.
#[pyfunction]
#[pyo3(name = "clear")]
fn cache_clear(py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
    const F: &str = "cache.clear";
    let key = bytes_arg(key, F, "key")?;
    with_cache(py, F, &key, |c| c.clear(&key))
}

/// `cache.get_lifetime(key)`: remaining lifetime in seconds.
#[pyfunction]
#[pyo3(name = "get_lifetime")]
fn cache_get_lifetime(py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<u64> {
    const F: &str = "cache.get_lifetime";
    let key = bytes_arg(key, F, "key")?;
    with_cache(py, F, &key, |c| c.get_lifetime(&key))
}

/// `cache.set_lifetime(key, seconds)`: sets the remaining lifetime; returns the lifetime
/// applied (capped by `max-entry-lifetime`).
#[pyfunction]
#[pyo3(name = "set_lifetime")]
fn cache_set_lifetime(
    py: Python<'_>,
    key: &Bound<'_, PyAny>,
    seconds: &Bound<'_, PyAny>,
) -> PyResult<u64> {
    const F: &str = "cache.set_lifetime";
    let key = bytes_arg(key, F, "key")?;
    let seconds = int_arg(seconds, F, "lifetime", 0, u64::MAX)?;
    with_cache(py, F, &key, |c| c.set_lifetime(&key, seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_show_like_python() {
        assert_eq!(show_key(b"00:20"), "b'00:20'");
        assert_eq!(show_key(b"a'\\\x01"), "b'a\\'\\\\\\x01'");
    }
}
