//! A dynamic-services script that makes one `dyn.add_cli` call per object, each starting with
//! `configure` (`examples/python/dyn/per_object.py`), run through `ScriptHost::run_dyn` and its
//! joined CLI applied with the services text form as one transaction, as `brasa run` does.

use brasa_script::{
    DynAction, DynReport, DynRun, IdKind, MemoryResources, RunOptions, Script, ScriptHost,
    ScriptParams,
};
use brasa_services::model::AdminState;
use brasa_services::{
    cli, Encapsulation, Environment, Origin, PortMap, PortName, Ports, SapId, ServiceConfig,
    ValidationError,
};

fn ports() -> (PortMap, Environment) {
    let mut map = PortMap::new();
    let mut ports = Ports::new();
    for (sros, linux) in [("1/1/2", "eth1"), ("1/1/4", "eth3")] {
        let name = PortName::new(linux).unwrap();
        map.insert(sros, name.clone());
        ports.insert(name, Encapsulation::Qinq);
    }
    (map, Environment::new(ports))
}

fn per_object_script() -> Script {
    let path = format!(
        "{}/../../examples/python/dyn/per_object.py",
        env!("CARGO_MANIFEST_DIR")
    );
    Script::load("per_object", path).expect("example script loads")
}

fn run(host: &ScriptHost, run: &DynRun, resources: &mut MemoryResources) -> DynReport {
    let report = host
        .run_dyn(&per_object_script(), run, resources, &RunOptions::default())
        .expect("valid run");
    assert!(
        report.is_ok(),
        "{:?}\n{}",
        report.run.failure(),
        report.run.output
    );
    report
}

fn setup(sap: &str, far: &str) -> DynRun {
    DynRun {
        action: DynAction::Setup,
        params: Some(ScriptParams::parse(&format!("epipe={{'far': '{far}'}}")).unwrap()),
        state: None,
        sap_id: sap.into(),
        control_sap: Some("1/1/4:1214.101".into()),
        circuit_id: None,
        remote_id: None,
        policy: "dyn-svc-1".into(),
    }
}

#[test]
fn one_add_cli_per_object_applies_as_one_transaction() {
    let host = ScriptHost::new(std::time::Instant::now).expect("python");
    let (map, env) = ports();
    let mut resources = MemoryResources::new().with_range(IdKind::ServiceId, 1000..=1999);
    let mut config = ServiceConfig::new();

    let first = setup("1/1/4:1214.101", "1/1/2:300.1");
    let report = run(&host, &first, &mut resources);
    assert_eq!(
        report.cli.matches("configure service").count(),
        4,
        "{}",
        report.cli
    );
    let changes = cli::parse(&report.cli, &map).unwrap_or_else(|e| panic!("{e}\n{}", report.cli));
    config.apply_changes(&changes, &env).expect("valid setup");
    resources.commit(&report);
    let id = report.selected_ids[0].1;
    let service = config.service(id).expect("the epipe exists");
    assert_eq!(config.sap_count(), 2);
    assert_eq!(service.admin, AdminState::Up);
    let state = report.state.clone().expect("setup keeps a state");

    // A second service whose far SAP the first one holds: its first snippets are valid, its
    // third is refused, and the configuration keeps nothing of the run.
    let report = run(
        &host,
        &setup("1/1/4:1214.102", "1/1/2:300.1"),
        &mut resources,
    );
    let changes = cli::parse(&report.cli, &map).unwrap();
    let before = config.clone();
    let error = config.apply_changes(&changes, &env).unwrap_err();
    assert_eq!(
        error.error,
        ValidationError::SapExists {
            sap: SapId::parse("eth1:300.1").unwrap(),
            service: id
        }
    );
    let far_snippet_line = report
        .cli
        .lines()
        .position(|line| line.contains("sap 1/1/2:300.1 create"))
        .unwrap();
    assert!(
        matches!(error.origin, Origin::Text { line, .. } if line as usize == far_snippet_line + 1),
        "{error}\n{}",
        report.cli
    );
    assert_eq!(config, before);

    // Teardown, again one snippet per object, removes everything setup created.
    let teardown = DynRun {
        action: DynAction::Teardown,
        params: None,
        state: Some(state),
        ..first
    };
    let report = run(&host, &teardown, &mut resources);
    let changes = cli::parse(&report.cli, &map).unwrap_or_else(|e| panic!("{e}\n{}", report.cli));
    config
        .apply_changes(&changes, &env)
        .expect("valid teardown");
    assert_eq!(config, ServiceConfig::new());
}
