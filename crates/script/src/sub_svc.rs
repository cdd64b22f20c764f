//! `alc.sub_svc`: the SR OS subscriber services API (Nokia SR OS, "PCC rules in a subscriber
//! service"): `add_to_service`, `flow.add_to_flow`, `pccrule.add_to_pccrule`,
//! `pccrule.policer.add_to_policer`, `commit_service`, and the TLV and value constants.
//!
//! A script builds each service as Python lists of `(tlv, value)` pairs, as SR OS's does;
//! `commit_service` turns one into a [`brasa_subsvc::ServiceRequest`], validates it and
//! records it for the run's [`crate::SubSvcReport`]. Bad TLV values and invalid services
//! raise `sub_svc.InvalidService` (a `ValueError`) at the commit, naming the TLV, the rule
//! and the flow.
//!
//! `sub_svc.pccrule` is both the TLV that adds a rule to a service and the namespace of the
//! rule's own TLVs (an `int` with attributes), as the guide's example uses it; the same
//! holds for `sub_svc.pccrule.policer`.

use std::net::IpAddr;

use brasa_subsvc::{
    AcctStatsType, BurstSize, Direction, Dscp, Flow, Gate, PccRule, PolicerOverrides, PortRange,
    RateLimit, ServiceRequest, StatMode, SubscriberService, TypeConflictAction,
};
use ipnet::IpNet;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyInt, PyList, PyString, PyTuple, PyType};

use crate::report::RunReport;
use crate::state::with_run;

// The TLVs of each list, and the value constants of each namespace: one table each, from
// which the Python names are made and against which the lists are read. Each list has its
// own range of numbers, so that a TLV added to the wrong list is refused there.

const SERVICE_NAME: u32 = 1;
const SERVICE_OPERATION: u32 = 2;
const SERVICE_TYPE: u32 = 3;
const SERVICE_TYPE_CONFLICT_ACTION: u32 = 4;
const SERVICE_ACCT_STATS_TYPE: u32 = 5;
const SERVICE_ACCT_INTERVAL: u32 = 6;
const SERVICE_PCCRULE: u32 = 7;

const SERVICE_TLVS: [(&str, u32); 7] = [
    ("name", SERVICE_NAME),
    ("operation", SERVICE_OPERATION),
    ("type", SERVICE_TYPE),
    ("type_conflict_action", SERVICE_TYPE_CONFLICT_ACTION),
    ("acct_stats_type", SERVICE_ACCT_STATS_TYPE),
    ("acct_interval", SERVICE_ACCT_INTERVAL),
    ("pccrule", SERVICE_PCCRULE),
];

const OPERATION_ADD: i64 = 1;
const OPERATION_DELETE: i64 = 2;
const TYPE_CONFLICT_NONE: i64 = 0;
const TYPE_CONFLICT_KEEP_OLD: i64 = 1;
const TYPE_CONFLICT_KEEP_NEW: i64 = 2;

const SERVICE_CONSTANTS: [(&str, i64); 8] = [
    ("operation_add", OPERATION_ADD),
    ("operation_delete", OPERATION_DELETE),
    ("type_conflict_action_none", TYPE_CONFLICT_NONE),
    ("type_conflict_action_keep_old", TYPE_CONFLICT_KEEP_OLD),
    ("type_conflict_action_keep_new", TYPE_CONFLICT_KEEP_NEW),
    // Alc-Sub-Serv-Acct-Stats-Type values, which the guide's script passes as numbers.
    ("acct_stats_type_off", 1),
    ("acct_stats_type_volume_time", 2),
    ("acct_stats_type_time", 3),
];

const RULE_NAME: u32 = 101;
const RULE_PRECEDENCE: u32 = 102;
const RULE_DIRECTION: u32 = 103;
const RULE_FLOW: u32 = 104;
const RULE_RATE_LIMIT_PIR: u32 = 105;
const RULE_RATE_LIMIT_CIR: u32 = 106;
const RULE_ACCOUNT: u32 = 107;
const RULE_DROP: u32 = 108;
const RULE_FORWARD: u32 = 109;
const RULE_REMARK_DSCP: u32 = 110;
const RULE_POLICER: u32 = 111;

const RULE_TLVS: [(&str, u32); 11] = [
    ("name", RULE_NAME),
    ("precedence", RULE_PRECEDENCE),
    ("direction", RULE_DIRECTION),
    ("flow", RULE_FLOW),
    ("qos_action_rate_limit_pir", RULE_RATE_LIMIT_PIR),
    ("qos_action_rate_limit_cir", RULE_RATE_LIMIT_CIR),
    ("qos_action_account", RULE_ACCOUNT),
    ("filter_action_drop", RULE_DROP),
    ("filter_action_forward", RULE_FORWARD),
    ("qos_action_remark_dscp", RULE_REMARK_DSCP),
    ("policer", RULE_POLICER),
];

const DIRECTION_INGRESS: i64 = 1;
const DIRECTION_EGRESS: i64 = 2;

const RULE_CONSTANTS: [(&str, i64); 2] = [
    ("direction_ingress", DIRECTION_INGRESS),
    ("direction_egress", DIRECTION_EGRESS),
];

const FLOW_SRC_IP: u32 = 201;
const FLOW_DST_IP: u32 = 202;
const FLOW_PROTOCOL: u32 = 203;
const FLOW_SRC_PORT: u32 = 204;
const FLOW_DST_PORT: u32 = 205;
const FLOW_SRC_PORT_RANGE: u32 = 206;
const FLOW_DST_PORT_RANGE: u32 = 207;
const FLOW_DSCP: u32 = 208;

const FLOW_TLVS: [(&str, u32); 8] = [
    ("src_ip", FLOW_SRC_IP),
    ("dst_ip", FLOW_DST_IP),
    ("protocol", FLOW_PROTOCOL),
    ("src_port", FLOW_SRC_PORT),
    ("dst_port", FLOW_DST_PORT),
    ("src_port_range", FLOW_SRC_PORT_RANGE),
    ("dst_port_range", FLOW_DST_PORT_RANGE),
    ("dscp", FLOW_DSCP),
];

const POLICER_PARENT_ARBITER: u32 = 301;
const POLICER_PARENT_LEVEL: u32 = 302;
const POLICER_PARENT_WEIGHT: u32 = 303;
const POLICER_MBS: u32 = 304;
const POLICER_CBS: u32 = 305;
const POLICER_STAT_MODE: u32 = 306;
const POLICER_PACKET_BYTE_OFFSET: u32 = 307;

const POLICER_TLVS: [(&str, u32); 7] = [
    ("parent_arbiter", POLICER_PARENT_ARBITER),
    ("parent_level", POLICER_PARENT_LEVEL),
    ("parent_weight", POLICER_PARENT_WEIGHT),
    ("mbs", POLICER_MBS),
    ("cbs", POLICER_CBS),
    ("stat_mode", POLICER_STAT_MODE),
    ("packet_byte_offset", POLICER_PACKET_BYTE_OFFSET),
];

const SUB_SVC_PY: &std::ffi::CStr = cr#"
class InvalidService(ValueError):
    """sub_svc.commit_service: the service list does not describe a valid service."""

class _Tlvs(int):
    """A TLV number that is also the namespace of the TLVs of its own list."""

def _adder(function, kind, tlvs):
    allowed = frozenset(tlvs)
    def add(lst, tlv, value):
        if not isinstance(lst, list):
            raise TypeError(f"{function}: the {kind} must be a list, not {type(lst).__name__}")
        if isinstance(tlv, bool) or not isinstance(tlv, int) or int(tlv) not in allowed:
            raise ValueError(f"{function}: {tlv!r} is not a {kind} TLV")
        lst.append((int(tlv), value))
    add.__name__ = function
    add.__qualname__ = function
    add.__doc__ = f"Appends (tlv, value) to a {kind} list."
    return add
"#;

const SUB_SVC_DOC: &str = "SR OS subscriber services: build a service list with \
add_to_service(service, tlv, value), PCC rules with pccrule.add_to_pccrule(rule, tlv, value), \
flows with flow.add_to_flow(flow, tlv, value), policer overrides with \
pccrule.policer.add_to_policer(policer, tlv, value), then commit_service(service). \
InvalidService (a ValueError) says what is wrong with a committed service.";

static INVALID_SERVICE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// What a subscriber-services run ([`crate::ScriptHost::run_sub_svc`]) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubSvcReport {
    /// How the run went.
    pub run: RunReport,
    /// The services it committed, validated, in commit order; empty when the run failed.
    pub services: Vec<ServiceRequest>,
}

/// The services a subscriber-services run has committed so far.
#[derive(Debug, Default)]
pub(crate) struct SubSvcState {
    pub(crate) committed: Vec<ServiceRequest>,
}

/// Builds `alc.sub_svc` and its `alc.sub_svc.flow` module.
pub(crate) fn build(py: Python<'_>) -> PyResult<(Bound<'_, PyModule>, Bound<'_, PyModule>)> {
    let module = PyModule::new(py, "alc.sub_svc")?;
    module.setattr("__doc__", SUB_SVC_DOC)?;
    // A package, so that `from alc.sub_svc import flow` works as well as `sub_svc.flow`.
    module.setattr("__path__", PyList::empty(py))?;
    let helpers = PyDict::new(py);
    py.run(SUB_SVC_PY, Some(&helpers), None)?;
    let tlvs_class = helpers.get_item("_Tlvs")?.ok_or_else(missing)?;
    let adder = helpers.get_item("_adder")?.ok_or_else(missing)?;
    let invalid = helpers.get_item("InvalidService")?.ok_or_else(missing)?;
    invalid.setattr("__module__", "alc.sub_svc")?;
    module.add("InvalidService", &invalid)?;
    let _ = INVALID_SERVICE.set(py, invalid.cast_into::<PyType>()?.unbind());

    let numbers = |table: &[(&str, u32)]| table.iter().map(|(_, n)| *n).collect::<Vec<_>>();
    let fill = |target: &Bound<'_, PyAny>,
                function: &str,
                kind: &str,
                tlvs: &[(&str, u32)],
                constants: &[(&str, i64)]|
     -> PyResult<()> {
        for (name, number) in tlvs {
            // A TLV that is also a namespace (`pccrule`, `pccrule.policer`) is set already,
            // as the `_Tlvs` number of that value.
            if !target.hasattr(*name)? {
                target.setattr(*name, number)?;
            }
        }
        for (name, value) in constants {
            target.setattr(*name, value)?;
        }
        let qualified = format!("sub_svc.{function}");
        target.setattr(function, adder.call1((qualified, kind, numbers(tlvs)))?)?;
        Ok(())
    };

    let policer = tlvs_class.call1((RULE_POLICER,))?;
    fill(&policer, "add_to_policer", "policer", &POLICER_TLVS, &[])?;
    let pccrule = tlvs_class.call1((SERVICE_PCCRULE,))?;
    pccrule.setattr("policer", &policer)?;
    fill(
        &pccrule,
        "add_to_pccrule",
        "PCC rule",
        &RULE_TLVS,
        &RULE_CONSTANTS,
    )?;
    module.add("pccrule", &pccrule)?;

    let flow = PyModule::new(py, "alc.sub_svc.flow")?;
    flow.setattr(
        "__doc__",
        "The TLVs of a PCC rule flow and add_to_flow(flow, tlv, value).",
    )?;
    fill(flow.as_any(), "add_to_flow", "flow", &FLOW_TLVS, &[])?;
    module.add("flow", &flow)?;

    fill(
        module.as_any(),
        "add_to_service",
        "service",
        &SERVICE_TLVS,
        &SERVICE_CONSTANTS,
    )?;
    module.add_function(wrap_pyfunction!(commit_service, &module)?)?;
    Ok((module, flow))
}

fn missing() -> PyErr {
    PyRuntimeError::new_err("alc.sub_svc: its helper code did not define what it should")
}

/// `sub_svc.commit_service(service)`: the service list becomes a service request of this
/// run, or `InvalidService` says why it cannot.
#[pyfunction]
fn commit_service(py: Python<'_>, service: &Bound<'_, PyAny>) -> PyResult<()> {
    let request = read_service(service).map_err(|message| invalid(py, message))?;
    request
        .validate()
        .map_err(|e| invalid(py, format!("sub_svc.commit_service: {e}")))?;
    with_run(|run| {
        run.sub_svc_state()?.committed.push(request);
        Ok(())
    })
}

fn invalid(py: Python<'_>, message: String) -> PyErr {
    match INVALID_SERVICE.get(py) {
        Some(class) => PyErr::from_type(class.bind(py).clone(), message),
        None => PyRuntimeError::new_err(message),
    }
}

/// One list of `(tlv, value)` pairs, each single-valued TLV given at most once (or again
/// with an equal value, which the guide's own example does).
struct Tlvs<'py> {
    what: String,
    table: &'static [(&'static str, u32)],
    pairs: Vec<(u32, Bound<'py, PyAny>)>,
}

impl<'py> Tlvs<'py> {
    fn read(
        list: &Bound<'py, PyAny>,
        what: String,
        table: &'static [(&'static str, u32)],
        repeatable: &[u32],
    ) -> Result<Self, String> {
        let list = list
            .cast::<PyList>()
            .map_err(|_| format!("{what}: expected a list, not {}", type_name(list)))?;
        let mut pairs: Vec<(u32, Bound<'py, PyAny>)> = Vec::new();
        for item in list.iter() {
            let pair = item
                .cast::<PyTuple>()
                .ok()
                .filter(|t| t.len() == 2)
                .ok_or_else(|| format!("{what}: {} is not a (tlv, value) pair", repr(&item)))?;
            let tlv = pair
                .get_item(0)
                .ok()
                .and_then(|t| t.extract::<u32>().ok())
                .filter(|t| table.iter().any(|(_, n)| n == t))
                .ok_or_else(|| format!("{what}: {} is not one of its TLVs", repr(&item)))?;
            let value = pair.get_item(1).map_err(|e| e.to_string())?;
            if !repeatable.contains(&tlv) {
                if let Some((_, earlier)) = pairs.iter().find(|(t, _)| *t == tlv) {
                    if !earlier.eq(&value).unwrap_or(false) {
                        return Err(format!(
                            "{what}: {} is given twice, as {} and as {}",
                            name_of(table, tlv),
                            repr(earlier),
                            repr(&value)
                        ));
                    }
                    continue;
                }
            }
            pairs.push((tlv, value));
        }
        Ok(Self { what, table, pairs })
    }

    fn get(&self, tlv: u32) -> Option<&Bound<'py, PyAny>> {
        self.pairs.iter().find(|(t, _)| *t == tlv).map(|(_, v)| v)
    }

    fn all(&self, tlv: u32) -> impl Iterator<Item = &Bound<'py, PyAny>> {
        self.pairs
            .iter()
            .filter(move |(t, _)| *t == tlv)
            .map(|(_, v)| v)
    }

    /// The value of `tlv` read by `read`, which says what it expected when it cannot.
    fn value<T>(
        &self,
        tlv: u32,
        read: impl FnOnce(&Bound<'py, PyAny>) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        self.get(tlv)
            .map(|value| {
                read(value).map_err(|expected| {
                    format!(
                        "{}: {} = {}: expected {expected}",
                        self.what,
                        name_of(self.table, tlv),
                        repr(value)
                    )
                })
            })
            .transpose()
    }

    fn missing(&self, tlv: u32) -> String {
        format!("{}: {} is missing", self.what, name_of(self.table, tlv))
    }
}

fn read_service(list: &Bound<'_, PyAny>) -> Result<ServiceRequest, String> {
    let tlvs = Tlvs::read(
        list,
        "sub_svc.commit_service".into(),
        &SERVICE_TLVS,
        &[SERVICE_PCCRULE],
    )?;
    let name = tlvs
        .value(SERVICE_NAME, text)?
        .ok_or_else(|| tlvs.missing(SERVICE_NAME))?;
    let operation = tlvs
        .value(SERVICE_OPERATION, |v| match int(v)? {
            OPERATION_ADD => Ok(OPERATION_ADD),
            OPERATION_DELETE => Ok(OPERATION_DELETE),
            _ => Err("sub_svc.operation_add or sub_svc.operation_delete".into()),
        })?
        .ok_or_else(|| tlvs.missing(SERVICE_OPERATION))?;
    if operation == OPERATION_DELETE {
        // The other TLVs do not apply to a deactivation (SR OS ignores them).
        return Ok(ServiceRequest::Delete { name });
    }
    let mut service = SubscriberService::new(name);
    service.service_type = tlvs.value(SERVICE_TYPE, text)?;
    if let Some(action) = tlvs.value(SERVICE_TYPE_CONFLICT_ACTION, |v| match int(v)? {
        TYPE_CONFLICT_NONE => Ok(TypeConflictAction::None),
        TYPE_CONFLICT_KEEP_OLD => Ok(TypeConflictAction::KeepOld),
        TYPE_CONFLICT_KEEP_NEW => Ok(TypeConflictAction::KeepNew),
        _ => Err("a sub_svc.type_conflict_action_* constant".into()),
    })? {
        service.type_conflict_action = action;
    }
    if let Some(stats) = tlvs.value(SERVICE_ACCT_STATS_TYPE, |v| {
        u32::try_from(int(v)?)
            .ok()
            .and_then(AcctStatsType::from_wire)
            .ok_or_else(|| "1 (off), 2 (volume-time) or 3 (time)".into())
    })? {
        service.acct_stats_type = stats;
    }
    service.acct_interval = tlvs.value(SERVICE_ACCT_INTERVAL, |v| {
        int_in(v, "seconds, an integer 0..=4294967295")
    })?;
    for (index, rule) in tlvs.all(SERVICE_PCCRULE).enumerate() {
        service.rules.push(read_rule(rule, index + 1)?);
    }
    Ok(ServiceRequest::Add(service))
}

fn read_rule(list: &Bound<'_, PyAny>, index: usize) -> Result<PccRule, String> {
    let what = format!("sub_svc.commit_service: PCC rule {index}");
    let tlvs = Tlvs::read(list, what, &RULE_TLVS, &[RULE_FLOW])?;
    let name = tlvs
        .value(RULE_NAME, text)?
        .ok_or_else(|| tlvs.missing(RULE_NAME))?;
    let direction = tlvs
        .value(RULE_DIRECTION, |v| match int(v)? {
            DIRECTION_INGRESS => Ok(Direction::Ingress),
            DIRECTION_EGRESS => Ok(Direction::Egress),
            _ => Err("pccrule.direction_ingress or pccrule.direction_egress".into()),
        })?
        .ok_or_else(|| tlvs.missing(RULE_DIRECTION))?;
    let mut rule = PccRule::new(name, direction);
    let what = format!("sub_svc.commit_service: PCC rule {:?}", rule.name);
    let tlvs = Tlvs { what, ..tlvs };
    rule.precedence = tlvs.value(RULE_PRECEDENCE, |v| int_in(v, "an integer 0..=4294967295"))?;
    for (index, flow) in tlvs.all(RULE_FLOW).enumerate() {
        rule.flows.push(read_flow(flow, &tlvs.what, index + 1)?);
    }
    let kbps = |v: &Bound<'_, PyAny>| int_in(v, "kb/s, an integer 0..=4294967295");
    let pir = tlvs.value(RULE_RATE_LIMIT_PIR, kbps)?;
    let cir = tlvs.value(RULE_RATE_LIMIT_CIR, kbps)?;
    rule.actions.rate_limit = match (pir, cir) {
        (Some(pir_kbps), cir_kbps) => Some(RateLimit { pir_kbps, cir_kbps }),
        (None, Some(_)) => {
            return Err(format!(
                "{}: qos_action_rate_limit_cir needs qos_action_rate_limit_pir",
                tlvs.what
            ))
        }
        (None, None) => None,
    };
    rule.actions.account = tlvs.value(RULE_ACCOUNT, boolean)?.unwrap_or(false);
    let drop = tlvs.value(RULE_DROP, boolean)?.unwrap_or(false);
    let forward = tlvs.value(RULE_FORWARD, boolean)?.unwrap_or(false);
    if drop && forward {
        return Err(format!(
            "{}: filter_action_drop and filter_action_forward are both set",
            tlvs.what
        ));
    }
    rule.actions.gate = if drop { Gate::Drop } else { Gate::Forward };
    rule.actions.remark_dscp = tlvs.value(RULE_REMARK_DSCP, dscp)?;
    rule.policer = tlvs
        .get(RULE_POLICER)
        .map(|list| read_policer(list, &tlvs.what))
        .transpose()?;
    Ok(rule)
}

fn read_flow(list: &Bound<'_, PyAny>, rule: &str, index: usize) -> Result<Flow, String> {
    let tlvs = Tlvs::read(list, format!("{rule}: flow {index}"), &FLOW_TLVS, &[])?;
    let port_range = |v: &Bound<'_, PyAny>| -> Result<PortRange, String> {
        let expected = || "a (first, last) pair of ports or \"first-last\"".to_string();
        if let Ok(text) = v.cast::<PyString>() {
            return text
                .to_str()
                .map_err(|_| expected())?
                .parse()
                .map_err(|_| expected());
        }
        let (first, last): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
            v.extract().map_err(|_| expected())?;
        Ok(PortRange {
            first: port(&first).map_err(|_| expected())?,
            last: port(&last).map_err(|_| expected())?,
        })
    };
    let either = |single: u32, range: u32| -> Result<Option<PortRange>, String> {
        match (
            tlvs.value(single, |v| port(v).map(PortRange::single))?,
            tlvs.value(range, port_range)?,
        ) {
            (Some(_), Some(_)) => Err(format!(
                "{}: {} and {} are both given",
                tlvs.what,
                name_of(&FLOW_TLVS, single),
                name_of(&FLOW_TLVS, range)
            )),
            (one, other) => Ok(one.or(other)),
        }
    };
    Ok(Flow {
        src_ip: tlvs.value(FLOW_SRC_IP, prefix)?,
        dst_ip: tlvs.value(FLOW_DST_IP, prefix)?,
        protocol: tlvs.value(FLOW_PROTOCOL, protocol)?,
        src_port: either(FLOW_SRC_PORT, FLOW_SRC_PORT_RANGE)?,
        dst_port: either(FLOW_DST_PORT, FLOW_DST_PORT_RANGE)?,
        dscp: tlvs.value(FLOW_DSCP, dscp)?,
    })
}

fn read_policer(list: &Bound<'_, PyAny>, rule: &str) -> Result<PolicerOverrides, String> {
    let tlvs = Tlvs::read(list, format!("{rule}: policer"), &POLICER_TLVS, &[])?;
    let small = |v: &Bound<'_, PyAny>| int_in::<u8>(v, "an integer 0..=255");
    let burst = |v: &Bound<'_, PyAny>| -> Result<BurstSize, String> {
        let expected = || "bytes (0..=4294967295) or 'default'".to_string();
        if text(v).is_ok_and(|t| t == "default") {
            return Ok(BurstSize::Default);
        }
        int_in(v, &expected()).map(BurstSize::Bytes)
    };
    Ok(PolicerOverrides {
        parent_arbiter: tlvs.value(POLICER_PARENT_ARBITER, text)?,
        parent_level: tlvs.value(POLICER_PARENT_LEVEL, small)?,
        parent_weight: tlvs.value(POLICER_PARENT_WEIGHT, small)?,
        mbs: tlvs.value(POLICER_MBS, burst)?,
        cbs: tlvs.value(POLICER_CBS, burst)?,
        stat_mode: tlvs.value(POLICER_STAT_MODE, |v| {
            StatMode::from_name(&text(v)?).ok_or_else(|| {
                "an SR OS stat mode (no-stats, minimal, offered-profile-no-cir, …)".into()
            })
        })?,
        packet_byte_offset: tlvs.value(POLICER_PACKET_BYTE_OFFSET, |v| {
            int_in(v, "bytes, an integer -32..=31")
        })?,
    })
}

/// A `str`, or `bytes` in UTF-8 (what `alc.radius` returns).
fn text(v: &Bound<'_, PyAny>) -> Result<String, String> {
    if let Ok(s) = v.cast::<PyString>() {
        return s.to_str().map(str::to_string).map_err(|_| "a str".into());
    }
    if let Ok(b) = v.cast::<PyBytes>() {
        return std::str::from_utf8(b.as_bytes())
            .map(str::to_string)
            .map_err(|_| "UTF-8 text".into());
    }
    Err("a str".into())
}

/// An `int` that is not a `bool` and fits `T`; else `expected`.
fn int_in<T: TryFrom<i64>>(v: &Bound<'_, PyAny>, expected: &str) -> Result<T, String> {
    int(v)
        .ok()
        .and_then(|i| T::try_from(i).ok())
        .ok_or_else(|| expected.to_string())
}

/// An `int` that is not a `bool`.
fn int(v: &Bound<'_, PyAny>) -> Result<i64, String> {
    if v.is_instance_of::<PyBool>() || !v.is_instance_of::<PyInt>() {
        return Err("an integer".into());
    }
    v.extract::<i64>().map_err(|_| "an integer".into())
}

fn boolean(v: &Bound<'_, PyAny>) -> Result<bool, String> {
    v.cast::<PyBool>()
        .map(|b| b.is_true())
        .map_err(|_| "True or False".into())
}

fn port(v: &Bound<'_, PyAny>) -> Result<u16, String> {
    int_in(v, "a port, an integer 0..=65535")
}

/// A prefix (`10.1.1.0/24`, `2001:db8::/32`) or an address (a /32 or /128).
fn prefix(v: &Bound<'_, PyAny>) -> Result<IpNet, String> {
    let expected = || "an IPv4 or IPv6 prefix or address".to_string();
    let text = text(v).map_err(|_| expected())?;
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| expected())
}

fn protocol(v: &Bound<'_, PyAny>) -> Result<u8, String> {
    let expected = || {
        "a protocol number 0..=255 or a name (tcp, udp, icmp, ipv6-icmp, sctp, gre, …)".to_string()
    };
    if let Ok(name) = text(v) {
        return brasa_subsvc::model::protocol_number(&name).ok_or_else(expected);
    }
    int_in(v, &expected())
}

fn dscp(v: &Bound<'_, PyAny>) -> Result<Dscp, String> {
    let expected =
        || "a DSCP 0..=63 or a name (be, ef, af11..af43, cs1..cs7, nc1, nc2, cp<n>)".to_string();
    if let Ok(name) = text(v) {
        return Dscp::from_name(&name).ok_or_else(expected);
    }
    int_in(v, &expected())
        .ok()
        .and_then(Dscp::new)
        .ok_or_else(expected)
}

/// The name of `tlv` in `table` (every TLV of a list read against it is there).
fn name_of(table: &[(&'static str, u32)], tlv: u32) -> &'static str {
    table
        .iter()
        .find(|(_, n)| *n == tlv)
        .map_or("?", |(name, _)| name)
}

fn repr(v: &Bound<'_, PyAny>) -> String {
    v.repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into())
}
