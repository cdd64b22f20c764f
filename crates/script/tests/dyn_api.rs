//! `alc.dyn` (SR OS dynamic data services): the example scripts under
//! `examples/python/dyn/` through setup, modify, revert and teardown, reference counting,
//! identifier exhaustion, and each call's errors.

mod common;

use brasa_script::{
    DynAction, DynReport, DynResources, DynRun, DynRunError, FailureKind, IdKind, MemoryResources,
    ReferenceChange, ReferenceKey, Referenced, ResourceError, Script, ScriptHost, ScriptParams,
    ServiceState,
};

fn example(name: &str) -> Script {
    let path = format!(
        "{}/../../examples/python/dyn/{name}.py",
        env!("CARGO_MANIFEST_DIR")
    );
    Script::load(name, path).expect("example script loads")
}

fn host() -> ScriptHost {
    ScriptHost::new(std::time::Instant::now).expect("host")
}

fn setup(params: &str, sap: &str) -> DynRun {
    DynRun {
        action: DynAction::Setup,
        params: Some(ScriptParams::parse(params).expect("script parameters")),
        state: None,
        sap_id: sap.into(),
        control_sap: Some("1/1/4:1214.101".into()),
        circuit_id: None,
        remote_id: None,
        policy: "dyn-svc-1".into(),
    }
}

fn follow_up(action: DynAction, params: Option<&str>, state: &ServiceState) -> DynRun {
    DynRun {
        action,
        params: params.map(|p| ScriptParams::parse(p).expect("script parameters")),
        state: Some(state.clone()),
        ..setup("k={}", "1/1/4:1214.101")
    }
}

fn run(host: &ScriptHost, script: &Script, run: &DynRun, r: &mut dyn DynResources) -> DynReport {
    host.run_dyn(script, run, r, &common::options())
        .expect("valid run")
}

fn ok(report: &DynReport) {
    assert!(
        report.is_ok(),
        "run failed: {:?}\n{}",
        report.run.failure(),
        report.run.output
    );
}

fn failure(report: &DynReport) -> (FailureKind, String) {
    let f = report.run.failure().expect("the run fails");
    assert!(report.cli.is_empty() && report.state.is_none());
    assert!(report.references.is_empty() && report.selected_ids.is_empty());
    (f.kind, f.message.clone())
}

const EPIPE: &str = "epipe={'description': 'dynsvc-epipe-1', 'sdp': 10, 'vc_id': 11}";

const EPIPE_SETUP_CLI: &str = r#"
configure service
    epipe 1000 customer 1 create
        description "dynsvc-epipe-1"
        sap 1/1/4:1214.101 create
            no shutdown
        exit
        spoke-sdp 10:11 create
            no shutdown
        exit
        no shutdown
    exit
exit
"#;

#[test]
fn epipe_lifecycle_produces_the_service_cli() {
    let host = host();
    let script = example("epipe");
    let mut r = MemoryResources::new().with_range(IdKind::ServiceId, 1000..=1999);

    // The data trigger's own SAP, given with wildcards.
    let report = run(&host, &script, &setup(EPIPE, "#:#.#"), &mut r);
    ok(&report);
    assert_eq!(report.cli, EPIPE_SETUP_CLI);
    assert_eq!(report.selected_ids, vec![(IdKind::ServiceId, 1000)]);
    let state = report.state.clone().expect("setup keeps a state");
    assert_eq!(state.function_key, "epipe");
    assert!(state.dictionary.contains("'service_id': '1000'"));
    assert!(!report.needs_revert());
    r.commit(&report);

    let modify = follow_up(
        DynAction::Modify,
        Some("epipe={'description': 'gold'}"),
        &state,
    );
    let report = run(&host, &script, &modify, &mut r);
    ok(&report);
    assert_eq!(
        report.cli,
        "\nconfigure service\n    epipe 1000\n        description \"gold\"\n    exit\nexit\n"
    );
    let modified = report.state.clone().expect("modify keeps a state");
    assert!(modified.dictionary.contains("'description': 'gold'"));

    // A modify that fails (no 'description'): nothing to apply, and a revert to run.
    let broken = follow_up(
        DynAction::Modify,
        Some("epipe={'colour': 'red'}"),
        &modified,
    );
    let report = run(&host, &script, &broken, &mut r);
    let (kind, message) = failure(&report);
    assert_eq!(kind, FailureKind::Exception);
    assert!(message.starts_with("KeyError: 'description'"), "{message}");
    assert!(report.needs_revert());
    let revert = follow_up(
        DynAction::Revert,
        Some("epipe={'colour': 'red'}"),
        &modified,
    );
    let report = run(&host, &script, &revert, &mut r);
    ok(&report);
    assert!(report.cli.contains("description \"gold\""));
    assert_eq!(
        report.state, None,
        "a revert keeps the state before the modify"
    );

    let report = run(
        &host,
        &script,
        &follow_up(DynAction::Teardown, None, &modified),
        &mut r,
    );
    ok(&report);
    assert!(report.cli.contains("    no sap 1/1/4:1214.101\n"));
    assert!(report.cli.ends_with("    no epipe 1000\nexit\n"));
    assert_eq!(report.state, None);
}

const VPLS_PARAMS: &str = "vpls_sap={'customer': 'cust-1'}";

#[test]
fn references_count_sap_setups_and_the_last_teardown_removes_the_vpls() {
    let host = host();
    let script = example("vpls");
    let mut r = MemoryResources::new().with_range(IdKind::ServiceId, 2000..=2999);
    let key = ReferenceKey {
        function_key: "vpls".into(),
        reference_id: "cust-1".into(),
    };

    let first = run(&host, &script, &setup(VPLS_PARAMS, "#:#.101"), &mut r);
    ok(&first);
    // The referenced setup ran in the same run: the VPLS comes before its first SAP.
    assert_eq!(
        first.cli,
        "\nconfigure service\n    vpls 2000 customer 1 create\n        description \"cust-1\"\n        \
         no shutdown\n    exit\nexit\n\nconfigure service\n    vpls 2000\n        sap \
         1/1/4:1214.101 create\n            no shutdown\n        exit\n    exit\nexit\n"
    );
    assert!(matches!(
        first.references.as_slice(),
        [ReferenceChange::Created { key: k, .. }] if *k == key
    ));
    let first_state = first.state.clone().expect("state");
    assert_eq!(first_state.references, vec![key.clone()]);
    r.commit(&first);
    assert_eq!(r.references()[&key].count, 1);

    let second = run(&host, &script, &setup(VPLS_PARAMS, "#:#.102"), &mut r);
    ok(&second);
    assert_eq!(
        second.references,
        vec![ReferenceChange::Referenced(key.clone())]
    );
    assert!(!second.cli.contains("create\n        description"));
    assert!(second
        .cli
        .contains("vpls 2000\n        sap 1/1/4:1214.102 create"));
    assert!(
        second.selected_ids.is_empty(),
        "the VPLS is not set up twice"
    );
    let second_state = second.state.clone().expect("state");
    r.commit(&second);
    assert_eq!(r.references()[&key].count, 2);

    let teardown = run(
        &host,
        &script,
        &follow_up(DynAction::Teardown, None, &first_state),
        &mut r,
    );
    ok(&teardown);
    assert_eq!(
        teardown.references,
        vec![ReferenceChange::Dereferenced(key.clone())]
    );
    assert!(teardown.cli.contains("no sap 1/1/4:1214.101"));
    assert!(!teardown.cli.contains("no vpls"));
    r.commit(&teardown);
    assert_eq!(r.references()[&key].count, 1);

    let last = run(
        &host,
        &script,
        &follow_up(DynAction::Teardown, None, &second_state),
        &mut r,
    );
    ok(&last);
    assert_eq!(last.references, vec![ReferenceChange::Removed(key.clone())]);
    let sap = last.cli.find("no sap 1/1/4:1214.102").expect("SAP removed");
    let vpls = last.cli.find("no vpls 2000").expect("VPLS removed");
    assert!(sap < vpls, "the SAP goes before its VPLS:\n{}", last.cli);
    r.commit(&last);
    assert!(r.references().is_empty());
}

#[test]
fn a_failed_run_changes_no_reference() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = common::script(
        dir.path(),
        "fails_after_reference",
        "from alc import dyn\n\
         def vpls(p):\n    dyn.add_cli('vpls')\n    return p\n\
         def sap(p):\n    dyn.reference('vpls', 'c', {})\n    raise ValueError('later')\n\
         def down(k):\n    pass\n\
         dyn.action({'vpls': (vpls, None, None, down), 'sap': (sap, None, None, down)})\n",
    );
    let mut r = MemoryResources::new();
    let report = run(&host, &script, &setup("sap={}", "1/1/1:1"), &mut r);
    let (kind, message) = failure(&report);
    assert_eq!(
        (kind, message.as_str()),
        (FailureKind::Exception, "ValueError: later")
    );
    r.commit(&report);
    assert!(r.references().is_empty());
}

#[test]
fn select_free_id_exhaustion_raises_no_free_id() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = common::script(
        dir.path(),
        "two_ids",
        "from alc import dyn\n\
         def up(p):\n    \
             a = dyn.select_free_id('ip-filter-id')\n    \
             try:\n        b = dyn.select_free_id('ip-filter-id')\n    \
             except dyn.NoFreeId as e:\n        b = 'none: ' + str(e)\n    \
             dyn.add_cli(a + ' / ' + b)\n    \
             dyn.select_free_id('mac-filter-id')\n\
         dyn.action({'k': (up, None, None, up)})\n",
    );
    let mut r = MemoryResources::new()
        .with_range(IdKind::IpFilterId, 7..=7)
        .with_range(IdKind::MacFilterId, 1..=2);
    let report = run(&host, &script, &setup("k={}", "1/1/1:1"), &mut r);
    ok(&report);
    assert_eq!(
        report.cli,
        "7 / none: dyn.select_free_id: no free ip-filter-id is left in the configured range"
    );
    assert_eq!(
        report.selected_ids,
        vec![(IdKind::IpFilterId, 7), (IdKind::MacFilterId, 1)]
    );
    r.commit(&report);

    // Uncaught in the next run: the range is used up.
    let script = common::script(
        dir.path(),
        "one_id",
        "from alc import dyn\n\
         def up(p):\n    dyn.select_free_id('ip-filter-id')\n\
         dyn.action({'k': (up, None, None, up)})\n",
    );
    let report = run(&host, &script, &setup("k={}", "1/1/1:1"), &mut r);
    let (kind, message) = failure(&report);
    assert_eq!(kind, FailureKind::Exception);
    assert_eq!(
        message,
        "alc.dyn.NoFreeId: dyn.select_free_id: no free ip-filter-id is left in the configured range"
    );
}

/// Runs `body` as the setup function of key `k` and returns the failure message.
fn setup_error(host: &ScriptHost, body: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = format!(
        "from alc import dyn\n\
         def up(p):\n    {body}\n    return p\n\
         def down(k):\n    pass\n\
         dyn.action({{'k': (up, None, None, down), 'other': (up, None, None, down)}})\n"
    );
    let script = common::script(dir.path(), "edge", &source);
    let mut r = MemoryResources::new();
    let report = run(host, &script, &setup("k={}", "1/1/1:1"), &mut r);
    failure(&report).1
}

#[test]
fn each_call_rejects_wrong_arguments_with_a_named_exception() {
    let host = host();
    let cases = [
        (
            "dyn.add_cli(5)",
            "TypeError: dyn.add_cli: the CLI must be a str, not int",
        ),
        (
            "dyn.select_free_id('filter-id')",
            "ValueError: dyn.select_free_id: unknown identifier type \"filter-id\"; expected \
             one of 'service-id', 'ip-filter-id', 'ipv6-filter-id', 'mac-filter-id'",
        ),
        (
            "dyn.select_free_id(1)",
            "TypeError: dyn.select_free_id: the identifier type must be a str, not int",
        ),
        (
            "dyn.reference('nope', 'r', {})",
            "KeyError: 'dyn.reference: function key \"nope\" is not in the action dictionary \
             (its keys: \\'k\\', \\'other\\')'",
        ),
        (
            "dyn.reference('other', 1, {})",
            "TypeError: dyn.reference: the reference id must be a str, not int",
        ),
        (
            "dyn.reference('other', 'r', [])",
            "TypeError: dyn.reference: the dictionary must be a dict, not list",
        ),
        (
            "dyn.action({})",
            "RuntimeError: dyn.action: called a second time in one run",
        ),
        (
            "p['f'] = len",
            "ValueError: dyn.action: the setup function's dictionary must hold only Python \
             literals (str, bytes, numbers, tuples, lists, dicts, sets, booleans, None) to be \
             kept between runs: {'f': <built-in function len>}",
        ),
        (
            "import alc.radius; alc.radius.attributes.get(1)",
            "RuntimeError: alc.radius: a dynamic-services script run has no RADIUS packet",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(setup_error(&host, body), expected, "{body}");
    }
}

/// The kept dictionary of a setup whose function returns `returned` (Python), or the
/// failure's message.
fn kept(host: &ScriptHost, prelude: &str, returned: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = format!(
        "from alc import dyn\n{prelude}\n\
         def up(p):\n    return {returned}\n\
         def down(k):\n    pass\n\
         dyn.action({{'k': (up, None, None, down)}})\n"
    );
    let script = common::script(dir.path(), "kept", &source);
    let mut r = MemoryResources::new();
    let report = run(host, &script, &setup("k={}", "1/1/1:1"), &mut r);
    match &report.state {
        Some(state) => Ok(state.dictionary.clone()),
        None => Err(failure(&report).1),
    }
}

#[test]
fn a_kept_dictionary_holds_literals_only_and_reads_back_equal() {
    let host = host();
    let literals = "{'s': 'x', 'b': b'\\x00', 'i': -3, 'big': 10**30, 'f': -0.5, 'c': 1-2j, \
         't': (1, (None, True)), 'l': [[], {}], 'set': {1}, 'empty': set(), 2: {(1, 'a'): 0}}";
    let text = kept(&host, "", literals).expect("literals are kept");
    // The text is what Python reads back equal.
    let check = kept(
        &host,
        "",
        &format!("{text} if {text} == {literals} else None"),
    );
    assert_eq!(check.as_deref(), Ok(text.as_str()));
    let refused = [
        ("", "{'f': float('nan')}"),
        ("", "{'f': float('inf')}"),
        ("", "{'c': complex(0, float('inf'))}"),
        ("", "{'fs': frozenset({1})}"),
        (
            "class S(str):\n    def __repr__(self):\n        return 'len'",
            "{'s': S('x')}",
        ),
        ("import collections", "collections.OrderedDict(a=1)"),
        ("loop = []\nloop.append(loop)", "{'l': loop}"),
        (
            "deep = []\nfor _ in range(300):\n    deep = [deep]",
            "{'deep': deep}",
        ),
        ("", "{'r': range(3)}"),
    ];
    for (prelude, returned) in refused {
        let message = kept(&host, prelude, returned).expect_err(returned);
        assert!(
            message.starts_with(
                "ValueError: dyn.action: the setup function's dictionary must hold only Python \
                 literals"
            ),
            "{returned}: {message}"
        );
    }
}

#[test]
fn dyn_action_rejects_bad_dictionaries_and_unknown_keys() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = MemoryResources::new();
    let cases = [
        (
            "dyn.action([])",
            "TypeError: dyn.action: the action dictionary must be a dict, not list",
        ),
        (
            "dyn.action({'x': (f, None, None, f)})",
            "KeyError: 'dyn.action: function key \"k\" is not in the action dictionary (its \
             keys: \\'x\\')'",
        ),
        (
            "dyn.action({'k': (f, None, f)})",
            "TypeError: dyn.action: the entry of \"k\" must be a tuple (setup, modify or None, \
             revert or None, teardown) of functions, not (<function f at",
        ),
        (
            "dyn.action({'k': (None, None, None, f)})",
            "TypeError: dyn.action: the entry of \"k\" must be a tuple",
        ),
        (
            "dyn.reference('k', 'r', {})",
            "RuntimeError: dyn.reference: only allowed in the setup function of the service's \
             function key",
        ),
    ];
    for (line, expected) in cases {
        let source = format!("from alc import dyn\ndef f(p):\n    return p\n{line}\n");
        let script = common::script(dir.path(), "bad_action", &source);
        let report = run(&host, &script, &setup("k={}", "1/1/1:1"), &mut r);
        let message = failure(&report).1;
        assert!(message.starts_with(expected), "{line}: {message}");
    }

    let script = common::script(dir.path(), "no_action", "from alc import dyn\n");
    let report = run(&host, &script, &setup("k={}", "1/1/1:1"), &mut r);
    assert_eq!(failure(&report).0, FailureKind::NoDynAction);

    // Malformed script parameters reach the script as a ValueError from dyn.action.
    let script = common::script(
        dir.path(),
        "params",
        "from alc import dyn\ndef f(p):\n    return p\ndyn.action({'k': (f, None, None, f)})\n",
    );
    let report = run(
        &host,
        &script,
        &setup("k={'a': open('x')}", "1/1/1:1"),
        &mut r,
    );
    let message = failure(&report).1;
    assert!(
        message.starts_with(
            "ValueError: dyn.action: the script parameters \"{'a': open('x')}\" is not a Python \
             dictionary literal"
        ),
        "{message}"
    );

    // No modify function for a modify action.
    let state = ServiceState {
        function_key: "k".into(),
        dictionary: "{}".into(),
        references: Vec::new(),
    };
    let report = run(
        &host,
        &script,
        &follow_up(DynAction::Modify, Some("k={}"), &state),
        &mut r,
    );
    let message = failure(&report).1;
    assert_eq!(
        message,
        "ValueError: dyn.action: function key \"k\" has no modify function (None in the action \
         dictionary)"
    );
    assert!(!report.needs_revert());
}

#[test]
fn the_guide_s_local_authentication_parameters_reach_the_setup_function() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = common::script(
        dir.path(),
        "guide_params",
        "from alc import dyn\n\
         def up(p):\n    dyn.add_cli(repr(p['t']) + ' ' + dyn.get_sap() + ' ' + \
         dyn.get_circuit_id() + '|' + dyn.get_remote_id())\n\
         def down(k):\n    pass\n\
         dyn.action({'epipe_1': (up, None, None, down)})\n",
    );
    let mut run_ = setup(
        "epipe_1={'t':('dynsvc-epipe-1',None,None,10,11)}",
        "1/1/4:1214.101",
    );
    run_.circuit_id = Some("circuit-1".into());
    let report = run(&host, &script, &run_, &mut MemoryResources::new());
    ok(&report);
    assert_eq!(
        report.cli,
        "('dynsvc-epipe-1', None, None, 10, 11) 1/1/4:1214.101 circuit-1|"
    );
    assert_eq!(
        report.state.expect("state").dictionary,
        "{'t': ('dynsvc-epipe-1', None, None, 10, 11)}"
    );
}

#[test]
fn a_sap_wildcard_without_a_control_sap_is_a_named_error() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = common::script(
        dir.path(),
        "sap",
        "from alc import dyn\ndef up(p):\n    dyn.get_sap()\n\
         dyn.action({'k': (up, None, None, up)})\n",
    );
    let mut run_ = setup("k={}", "#:#.5");
    run_.control_sap = None;
    let report = run(&host, &script, &run_, &mut MemoryResources::new());
    assert_eq!(
        failure(&report).1,
        "ValueError: dyn.get_sap: SAP id \"#:#.5\" has a # wildcard but there is no control \
         channel or data trigger SAP"
    );
}

/// A host whose allocator is down.
struct Broken;

impl DynResources for Broken {
    fn select_free_id(
        &mut self,
        _: &str,
        _: IdKind,
        _: &[u32],
    ) -> Result<Option<u32>, ResourceError> {
        Err(ResourceError {
            reason: "allocator unavailable".into(),
        })
    }

    fn reference(&mut self, _: &ReferenceKey) -> Result<Option<Referenced>, ResourceError> {
        panic!("reference table exploded")
    }
}

#[test]
fn a_host_failure_fails_the_run_even_when_caught() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = common::script(
        dir.path(),
        "host_failure",
        "from alc import dyn\n\
         def up(p):\n    \
             try:\n        dyn.select_free_id('service-id')\n    \
             except BaseException:\n        pass\n    \
             dyn.add_cli('x')\n\
         dyn.action({'k': (up, None, None, up)})\n",
    );
    let report = run(&host, &script, &setup("k={}", "1/1/1:1"), &mut Broken);
    assert_eq!(
        failure(&report),
        (
            FailureKind::DynResources,
            "dyn.select_free_id: allocator unavailable".into()
        )
    );
    let script = common::script(
        dir.path(),
        "host_panic",
        "from alc import dyn\n\
         def up(p):\n    dyn.reference('k', 'r', {})\n\
         dyn.action({'k': (up, None, None, up)})\n",
    );
    let report = run(&host, &script, &setup("k={}", "1/1/1:1"), &mut Broken);
    assert_eq!(
        failure(&report),
        (
            FailureKind::DynResources,
            "dyn.reference: the dynamic-services host panicked".into()
        )
    );
}

#[test]
fn system_exit_and_the_time_limit_fail_a_dyn_run_with_nothing_to_apply() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = MemoryResources::new();
    let script = common::script(
        dir.path(),
        "exit",
        "from alc import dyn\nimport sys\n\
         def up(p):\n    dyn.add_cli('x')\n    sys.exit(1)\n\
         dyn.action({'k': (up, None, None, up)})\n",
    );
    let report = run(&host, &script, &setup("k={}", "1/1/1:1"), &mut r);
    assert_eq!(failure(&report).0, FailureKind::SystemExit);

    let script = common::script(
        dir.path(),
        "spin",
        "from alc import dyn\n\
         def up(p):\n    dyn.add_cli('x')\n    while True:\n        pass\n\
         dyn.action({'k': (up, None, None, up)})\n",
    );
    let options = brasa_script::RunOptions {
        time_limit: Some(std::time::Duration::from_millis(50)),
        ..brasa_script::RunOptions::default()
    };
    let report = host
        .run_dyn(&script, &setup("k={}", "1/1/1:1"), &mut r, &options)
        .expect("valid run");
    assert_eq!(failure(&report).0, FailureKind::Timeout);
}

#[test]
fn an_invalid_run_is_refused_before_python_runs() {
    let host = host();
    let script = example("epipe");
    let mut teardown = setup(EPIPE, "1/1/1:1");
    teardown.action = DynAction::Teardown;
    assert_eq!(
        host.run_dyn(
            &script,
            &teardown,
            &mut MemoryResources::new(),
            &common::options()
        ),
        Err(DynRunError::MissingState(DynAction::Teardown))
    );
}

#[test]
fn alc_dyn_is_unavailable_in_a_packet_run() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = common::script(
        dir.path(),
        "dyn_in_radius",
        "from alc import dyn\ndyn.add_cli('x')\n",
    );
    let mut message = brasa_radius::Message::new(brasa_radius::Code::AccessAccept, 1);
    let dict = brasa_radius::Dictionary::builtin();
    let report = host.run(&script, &mut message, &dict, None, &common::options());
    assert_eq!(
        report.failure().expect("fails").message,
        "RuntimeError: alc.dyn: only a dynamic-services script run has dynamic-services data"
    );
}
