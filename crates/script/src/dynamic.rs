//! What a dynamic-services script run is given ([`DynRun`]), what it asks of its host
//! ([`DynResources`]) and what it produced ([`DynReport`]), after SR OS dynamic data services.
//!
//! One run is one action (setup, modify, revert or teardown) of one dynamic data service, and
//! one transaction: the CLI the script collects with `dyn.add_cli`, the identifiers it
//! selected, the reference-count changes and the service's new [`ServiceState`] are all in the
//! report of a successful run, for the caller to apply together; a failed run carries none of
//! them, so nothing of it is applied.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::RangeInclusive;

use crate::report::RunReport;

/// The script action, from the Alc-Dyn-Serv-Script-Action VSA (always setup for local
/// authentication).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DynAction {
    /// Create the service: the setup function of the function key runs.
    Setup,
    /// Change the service: the modify function runs.
    Modify,
    /// Undo a failed modify: the revert function runs (see [`DynReport::needs_revert`]).
    Revert,
    /// Delete the service: the teardown function runs, then the references it held are
    /// released.
    Teardown,
}

impl fmt::Display for DynAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DynAction::Setup => "setup",
            DynAction::Modify => "modify",
            DynAction::Revert => "revert",
            DynAction::Teardown => "teardown",
        })
    }
}

/// Script parameters (Alc-Dyn-Serv-Script-Params, concatenated, or the local authentication
/// database's `script-parameters-1..4`): `function-key dictionary`, as in
/// `epipe_1={'t':('dynsvc-epipe-1',None,None,10,11)}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptParams {
    function_key: String,
    dictionary: String,
}

/// Script parameters that are not `function-key dictionary`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScriptParamsError {
    /// Nothing before the dictionary.
    #[error("script parameters {0:?} do not start with a function key")]
    NoFunctionKey(String),
    /// No `{` after the function key.
    #[error("script parameters {0:?} have no dictionary after the function key")]
    NoDictionary(String),
}

impl ScriptParams {
    /// Splits `text` into the function key and the dictionary literal (`key{...}`,
    /// `key {...}`, `key={...}` and `key = {...}` all work). The dictionary is parsed as a
    /// Python literal when the script calls `dyn.action`.
    pub fn parse(text: &str) -> Result<ScriptParams, ScriptParamsError> {
        let text = text.trim();
        let end = text
            .find(|c: char| c.is_whitespace() || c == '=' || c == '{')
            .unwrap_or(text.len());
        let (key, rest) = text.split_at(end);
        if key.is_empty() {
            return Err(ScriptParamsError::NoFunctionKey(text.into()));
        }
        let rest = rest.trim_start();
        let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
        if !rest.starts_with('{') {
            return Err(ScriptParamsError::NoDictionary(text.into()));
        }
        Ok(ScriptParams {
            function_key: key.into(),
            dictionary: rest.into(),
        })
    }

    /// The key of the script's action dictionary that selects the functions.
    pub fn function_key(&self) -> &str {
        &self.function_key
    }

    /// The parameters as a Python dictionary literal.
    pub fn dictionary(&self) -> &str {
        &self.dictionary
    }
}

/// One dynamic reference: a function key of the action dictionary and a reference id (for
/// example the VPLS every SAP of a customer joins).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReferenceKey {
    /// The function key whose setup and teardown functions the reference runs.
    pub function_key: String,
    /// The reference id string the scripts share.
    pub reference_id: String,
}

/// What the caller keeps for a dynamic data service between runs: set by setup, replaced by
/// a successful modify, handed back to modify, revert and teardown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceState {
    /// The function key the service was set up with.
    pub function_key: String,
    /// The dictionary the setup (or last modify) function returned, as a Python literal.
    pub dictionary: String,
    /// The references the service's setup made; its teardown releases them.
    pub references: Vec<ReferenceKey>,
}

/// The inputs of one dynamic-services script run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynRun {
    /// What to do.
    pub action: DynAction,
    /// The script parameters: required for setup, modify and revert (the new parameters);
    /// a teardown uses the function key of [`DynRun::state`].
    pub params: Option<ScriptParams>,
    /// The service's state: required for modify, revert and teardown.
    pub state: Option<ServiceState>,
    /// The Alc-Dyn-Serv-SAP-Id value, possibly with `#` wildcards (see
    /// [`expand_sap_wildcards`]).
    pub sap_id: String,
    /// The SAP of the control channel or data trigger the wildcards are taken from.
    pub control_sap: Option<String>,
    /// The control channel's circuit-id (DHCP option 82 or PPP tags), if any.
    pub circuit_id: Option<String>,
    /// The control channel's remote-id (DHCP option 82 or PPP tags), if any.
    pub remote_id: Option<String>,
    /// The dynamic-services policy the run is for; passed to [`DynResources`].
    pub policy: String,
}

/// A [`DynRun`] that cannot run: a caller error, reported before any Python runs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DynRunError {
    /// Setup, modify and revert need script parameters.
    #[error("a dynamic-services {0} run needs script parameters")]
    MissingParams(DynAction),
    /// Modify, revert and teardown need the service's state.
    #[error("a dynamic-services {0} run needs the service's state from its setup")]
    MissingState(DynAction),
    /// The parameters name another function key than the service was set up with.
    #[error("the script parameters' function key {params:?} is not the service's {state:?}")]
    FunctionKeyMismatch {
        /// The service's function key.
        state: String,
        /// The parameters' function key.
        params: String,
    },
}

impl DynRun {
    /// Checks that the run has what its action needs.
    pub fn validate(&self) -> Result<(), DynRunError> {
        let needs_params = self.action != DynAction::Teardown;
        let needs_state = self.action != DynAction::Setup;
        if needs_params && self.params.is_none() {
            return Err(DynRunError::MissingParams(self.action));
        }
        if needs_state && self.state.is_none() {
            return Err(DynRunError::MissingState(self.action));
        }
        if let (Some(params), Some(state), true) = (&self.params, &self.state, needs_state) {
            if params.function_key != state.function_key {
                return Err(DynRunError::FunctionKeyMismatch {
                    state: state.function_key.clone(),
                    params: params.function_key.clone(),
                });
            }
        }
        Ok(())
    }

    /// The function key the run dispatches on.
    pub fn function_key(&self) -> &str {
        match (&self.state, &self.params) {
            (Some(state), _) => &state.function_key,
            (None, Some(params)) => &params.function_key,
            (None, None) => "",
        }
    }
}

/// An identifier type of `dyn.select_free_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdKind {
    /// `'service-id'`: from the dynamic-services service-range.
    ServiceId,
    /// `'ip-filter-id'`.
    IpFilterId,
    /// `'ipv6-filter-id'`.
    Ipv6FilterId,
    /// `'mac-filter-id'`.
    MacFilterId,
}

impl IdKind {
    /// Every kind, in the order the names are listed to the script.
    pub const ALL: [IdKind; 4] = [
        IdKind::ServiceId,
        IdKind::IpFilterId,
        IdKind::Ipv6FilterId,
        IdKind::MacFilterId,
    ];

    /// The name a script passes.
    pub fn name(self) -> &'static str {
        match self {
            IdKind::ServiceId => "service-id",
            IdKind::IpFilterId => "ip-filter-id",
            IdKind::Ipv6FilterId => "ipv6-filter-id",
            IdKind::MacFilterId => "mac-filter-id",
        }
    }

    /// The kind a script's name stands for.
    pub fn from_name(name: &str) -> Option<IdKind> {
        IdKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A reference as the caller's reference table holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referenced {
    /// How many services hold it (at least 1).
    pub count: u32,
    /// What the referenced setup function returned, as a Python literal: what
    /// `dyn.reference` returns and the referenced teardown function receives.
    pub dictionary: String,
}

/// The host side of `alc.dyn` failed (not a refusal: an unavailable table or allocator). The
/// run fails with [`crate::FailureKind::DynResources`], whatever the script catches.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ResourceError {
    /// What went wrong.
    pub reason: String,
}

/// What `dyn.select_free_id` and `dyn.reference` ask of the caller.
///
/// Both only look: nothing is taken or counted until the caller applies a successful
/// [`DynReport`] ([`DynReport::selected_ids`], [`DynReport::references`]).
pub trait DynResources {
    /// The lowest free identifier of `kind` in `policy`'s configured range that is not in
    /// `taken` (the identifiers of that kind this run already selected, ascending); `None`
    /// when the range is exhausted.
    fn select_free_id(
        &mut self,
        policy: &str,
        kind: IdKind,
        taken: &[u32],
    ) -> Result<Option<u32>, ResourceError>;

    /// The reference `key` as the table holds it now; `None` when no service holds it.
    fn reference(&mut self, key: &ReferenceKey) -> Result<Option<Referenced>, ResourceError>;
}

/// A change a successful run makes to the reference table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReferenceChange {
    /// A first reference: the referenced setup function ran and returned `dictionary`; the
    /// count is 1.
    Created {
        /// The reference.
        key: ReferenceKey,
        /// What the referenced setup function returned, as a Python literal.
        dictionary: String,
    },
    /// One more service holds the reference.
    Referenced(ReferenceKey),
    /// One service fewer holds it; others still do.
    Dereferenced(ReferenceKey),
    /// The last holder released it: the referenced teardown function ran; remove it.
    Removed(ReferenceKey),
}

/// Applies a successful run's reference `changes`, in order, to `table`: what a host does
/// when it applies the run (and what a host that runs scripts ahead of their applies does to
/// its own copy, so that the next run sees them).
pub fn apply_reference_changes(
    table: &mut BTreeMap<ReferenceKey, Referenced>,
    changes: &[ReferenceChange],
) {
    for change in changes {
        match change {
            ReferenceChange::Created { key, dictionary } => {
                table.insert(
                    key.clone(),
                    Referenced {
                        count: 1,
                        dictionary: dictionary.clone(),
                    },
                );
            }
            ReferenceChange::Referenced(key) => {
                if let Some(r) = table.get_mut(key) {
                    r.count += 1;
                }
            }
            ReferenceChange::Dereferenced(key) => {
                if let Some(r) = table.get_mut(key) {
                    r.count = r.count.saturating_sub(1);
                }
            }
            ReferenceChange::Removed(key) => {
                table.remove(key);
            }
        }
    }
}

/// What a dynamic-services run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynReport {
    /// Outcome and output of the run, as for a packet run (the verdict is always
    /// `Continue` and the trace empty).
    pub run: RunReport,
    /// The action that ran.
    pub action: DynAction,
    /// The service CLI collected by `dyn.add_cli`, to apply as one transaction; empty when
    /// the run failed.
    pub cli: String,
    /// The service's state after a successful setup or modify; `None` after a teardown (the
    /// service is gone), a revert (the state before the modify stays) or a failure.
    pub state: Option<ServiceState>,
    /// Reference table changes, in order; empty when the run failed.
    pub references: Vec<ReferenceChange>,
    /// The identifiers `dyn.select_free_id` returned, in order; empty when the run failed.
    pub selected_ids: Vec<(IdKind, u32)>,
    /// Whether the action dictionary gave the function key a revert function.
    pub revert_defined: bool,
}

impl DynReport {
    /// Whether the run completed.
    pub fn is_ok(&self) -> bool {
        self.run.is_ok()
    }

    /// Whether the caller should now run [`DynAction::Revert`] with the same inputs: a
    /// modify failed and the script has a revert function for its key. (A modify whose CLI
    /// the caller failed to apply needs it too: check [`DynReport::revert_defined`].)
    pub fn needs_revert(&self) -> bool {
        self.action == DynAction::Modify && !self.is_ok() && self.revert_defined
    }
}

/// A `#` wildcard that cannot be replaced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SapWildcardError {
    /// The SAP id has wildcards but the run has no control channel or data trigger SAP.
    #[error("SAP id {0:?} has a # wildcard but there is no control channel or data trigger SAP")]
    NoControlSap(String),
    /// A `#` that is not a whole port or VLAN field.
    #[error("SAP id {0:?}: a # wildcard must be a whole port or vlan-id field")]
    PartialField(String),
    /// The control SAP has no field where the SAP id has a wildcard.
    #[error("SAP id {sap:?}: control SAP {control:?} has no {field} to replace # with")]
    MissingField {
        /// The SAP id.
        sap: String,
        /// The control SAP.
        control: String,
        /// `port`, `outer vlan-id` or `inner vlan-id`.
        field: &'static str,
    },
}

/// The fields of a SAP id: `port:outer[.inner]`.
fn sap_fields(sap: &str) -> [Option<&str>; 3] {
    let (port, encap) = match sap.split_once(':') {
        Some((port, encap)) => (port, Some(encap)),
        None => (sap, None),
    };
    let (outer, inner) = match encap.map(|e| e.split_once('.')) {
        Some(Some((outer, inner))) => (Some(outer), Some(inner)),
        Some(None) => (encap, None),
        None => (None, None),
    };
    [Some(port), outer, inner]
}

/// The Alc-Dyn-Serv-SAP-Id `sap` with each `#` field (the port, the outer or the inner
/// vlan-id) replaced by that field of `control`, the control channel or data trigger SAP:
/// `#:#.100` under `1/1/4:1214.101` is `1/1/4:1214.100`.
pub fn expand_sap_wildcards(sap: &str, control: Option<&str>) -> Result<String, SapWildcardError> {
    if !sap.contains('#') {
        return Ok(sap.into());
    }
    let control = control.ok_or_else(|| SapWildcardError::NoControlSap(sap.into()))?;
    let fields = sap_fields(sap);
    let control_fields = sap_fields(control);
    const NAMES: [&str; 3] = ["port", "outer vlan-id", "inner vlan-id"];
    let mut out = [None; 3];
    for (i, field) in fields.into_iter().enumerate() {
        out[i] = match field {
            Some("#") => Some(
                control_fields[i].ok_or_else(|| SapWildcardError::MissingField {
                    sap: sap.into(),
                    control: control.into(),
                    field: NAMES[i],
                })?,
            ),
            Some(f) if f.contains('#') => return Err(SapWildcardError::PartialField(sap.into())),
            other => other,
        };
    }
    let mut expanded = out[0].unwrap_or_default().to_string();
    if let Some(outer) = out[1] {
        expanded.push(':');
        expanded.push_str(outer);
        if let Some(inner) = out[2] {
            expanded.push('.');
            expanded.push_str(inner);
        }
    }
    Ok(expanded)
}

/// [`DynResources`] in memory: identifier ranges per kind and a reference table, for tests
/// and tools.
#[derive(Clone, Debug, Default)]
pub struct MemoryResources {
    ranges: BTreeMap<IdKind, RangeInclusive<u32>>,
    used: BTreeSet<(IdKind, u32)>,
    references: BTreeMap<ReferenceKey, Referenced>,
}

impl MemoryResources {
    /// No ranges (every kind exhausted) and no references.
    pub fn new() -> MemoryResources {
        MemoryResources::default()
    }

    /// Sets the range identifiers of `kind` are selected from (for every policy).
    pub fn with_range(mut self, kind: IdKind, range: RangeInclusive<u32>) -> MemoryResources {
        self.ranges.insert(kind, range);
        self
    }

    /// Applies a successful run: marks its identifiers used and changes the reference table.
    /// A failed run's report changes nothing.
    pub fn commit(&mut self, report: &DynReport) {
        if !report.is_ok() {
            return;
        }
        self.used.extend(report.selected_ids.iter().copied());
        apply_reference_changes(&mut self.references, &report.references);
    }

    /// Frees an identifier (its service was torn down).
    pub fn release(&mut self, kind: IdKind, id: u32) -> bool {
        self.used.remove(&(kind, id))
    }

    /// The reference table.
    pub fn references(&self) -> &BTreeMap<ReferenceKey, Referenced> {
        &self.references
    }
}

impl DynResources for MemoryResources {
    fn select_free_id(
        &mut self,
        _policy: &str,
        kind: IdKind,
        taken: &[u32],
    ) -> Result<Option<u32>, ResourceError> {
        let Some(range) = self.ranges.get(&kind) else {
            return Ok(None);
        };
        Ok(range
            .clone()
            .find(|id| !self.used.contains(&(kind, *id)) && taken.binary_search(id).is_err()))
    }

    fn reference(&mut self, key: &ReferenceKey) -> Result<Option<Referenced>, ResourceError> {
        Ok(self.references.get(key).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_params_split_key_and_dictionary() {
        let p = ScriptParams::parse("epipe_1={'t':('dynsvc-epipe-1',None,None,10,11)}").unwrap();
        assert_eq!(p.function_key(), "epipe_1");
        assert_eq!(p.dictionary(), "{'t':('dynsvc-epipe-1',None,None,10,11)}");
        let p = ScriptParams::parse("  vpls_sap = {'a': 1} ").unwrap();
        assert_eq!((p.function_key(), p.dictionary()), ("vpls_sap", "{'a': 1}"));
        let p = ScriptParams::parse("k {}").unwrap();
        assert_eq!((p.function_key(), p.dictionary()), ("k", "{}"));
        assert!(matches!(
            ScriptParams::parse("{'a': 1}"),
            Err(ScriptParamsError::NoFunctionKey(_))
        ));
        assert!(matches!(
            ScriptParams::parse("key"),
            Err(ScriptParamsError::NoDictionary(_))
        ));
        assert!(matches!(
            ScriptParams::parse("key=[1]"),
            Err(ScriptParamsError::NoDictionary(_))
        ));
    }

    #[test]
    fn sap_wildcards_take_the_control_sap_fields() {
        let control = Some("1/1/4:1214.101");
        assert_eq!(
            expand_sap_wildcards("#:#.100", control).unwrap(),
            "1/1/4:1214.100"
        );
        assert_eq!(
            expand_sap_wildcards("#:#.#", control).unwrap(),
            "1/1/4:1214.101"
        );
        assert_eq!(
            expand_sap_wildcards("2/1/1:#.#", control).unwrap(),
            "2/1/1:1214.101"
        );
        assert_eq!(expand_sap_wildcards("lag-1:10", None).unwrap(), "lag-1:10");
        assert_eq!(
            expand_sap_wildcards("#:200", Some("pxc-1.a:100")).unwrap(),
            "pxc-1.a:200"
        );
        assert!(matches!(
            expand_sap_wildcards("#:1", None),
            Err(SapWildcardError::NoControlSap(_))
        ));
        assert!(matches!(
            expand_sap_wildcards("1/1/#:1", control),
            Err(SapWildcardError::PartialField(_))
        ));
        assert!(matches!(
            expand_sap_wildcards("1/1/1:5.#", Some("1/1/4:1214")),
            Err(SapWildcardError::MissingField {
                field: "inner vlan-id",
                ..
            })
        ));
    }

    #[test]
    fn run_validation_names_what_is_missing() {
        let params = ScriptParams::parse("k={}").unwrap();
        let state = ServiceState {
            function_key: "other".into(),
            dictionary: "{}".into(),
            references: Vec::new(),
        };
        let mut run = DynRun {
            action: DynAction::Setup,
            params: None,
            state: None,
            sap_id: "1/1/1:1".into(),
            control_sap: None,
            circuit_id: None,
            remote_id: None,
            policy: "p".into(),
        };
        assert_eq!(
            run.validate(),
            Err(DynRunError::MissingParams(DynAction::Setup))
        );
        run.action = DynAction::Teardown;
        assert_eq!(
            run.validate(),
            Err(DynRunError::MissingState(DynAction::Teardown))
        );
        run.state = Some(state);
        assert_eq!(run.validate(), Ok(()));
        assert_eq!(run.function_key(), "other");
        run.action = DynAction::Modify;
        run.params = Some(params);
        assert!(matches!(
            run.validate(),
            Err(DynRunError::FunctionKeyMismatch { .. })
        ));
    }

    #[test]
    fn memory_resources_skip_used_and_taken_ids() {
        let mut r = MemoryResources::new().with_range(IdKind::ServiceId, 10..=12);
        assert_eq!(r.select_free_id("p", IdKind::ServiceId, &[]), Ok(Some(10)));
        assert_eq!(
            r.select_free_id("p", IdKind::ServiceId, &[10, 11]),
            Ok(Some(12))
        );
        assert_eq!(
            r.select_free_id("p", IdKind::ServiceId, &[10, 11, 12]),
            Ok(None)
        );
        assert_eq!(r.select_free_id("p", IdKind::MacFilterId, &[]), Ok(None));
        r.used.insert((IdKind::ServiceId, 10));
        assert_eq!(r.select_free_id("p", IdKind::ServiceId, &[]), Ok(Some(11)));
        assert!(r.release(IdKind::ServiceId, 10));
        assert_eq!(r.select_free_id("p", IdKind::ServiceId, &[]), Ok(Some(10)));
    }

    #[test]
    fn id_kind_names_round_trip() {
        for kind in IdKind::ALL {
            assert_eq!(IdKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(IdKind::from_name("filter-id"), None);
    }
}
