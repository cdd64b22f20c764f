//! Data trigger → dynamic SAP created, with local authentication and a seed-style `alc.dyn`
//! script (Nokia SR OS dynamic data services): setups per second and the latency of each,
//! p50 and p99. Each setup is the whole control-plane path of `brasa run` but its I/O: the
//! punted frame through the trigger machine (rate limit, Table 3 checks), the
//! local-auth-db, the script run (embedded CPython, `dyn.select_free_id` from the running
//! configuration, `dyn.add_cli`), the service text parsed and validated as one transaction
//! against the whole configuration and committed, then `service_created`. Not included: the
//! data plane's table compile and install, which `brasa run` adds per transaction.
//!
//! ```text
//! LD_LIBRARY_PATH=$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))') \
//!     cargo run --release -p brasa-dynsvc --example setups -- [TRIGGERS]
//! ```

use brasa_dynsvc::local::{LocalIndex, LocalUser};
use brasa_dynsvc::{
    AcctOverride, Authentication, CaptureSapConfig, DynServicesPolicy, FrameVerdict, LocalAuthDb,
    TriggerFrame, Triggers, TriggersConfig,
};
use brasa_script::{
    DynAction, DynResources, DynRun, IdKind, ReferenceKey, Referenced, ResourceError, RunOptions,
    Script, ScriptHost, ScriptParams,
};
use brasa_services::{
    cli, Encapsulation, Environment, MacAddr, PortMap, PortName, Ports, SapId, ServiceConfig,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const SCRIPT: &str = r#"
from alc import dyn

def setup_epipe(params):
    params['service_id'] = dyn.select_free_id('service-id')
    params['sap'] = dyn.get_sap()
    dyn.add_cli("""
configure service
    epipe %(service_id)s customer 1 create
        description "dynamic %(sap)s"
        sap %(sap)s create
        exit
        sap %(far)s create
        exit
        no shutdown
    exit
exit
""" % params)
    return params

def teardown_epipe(kept):
    pass

dyn.action({'epipe': (setup_epipe, None, None, teardown_epipe)})
"#;

/// `dyn.select_free_id('service-id')` from the running configuration, as `brasa run` does.
struct FromConfig<'a> {
    config: &'a ServiceConfig,
}

impl DynResources for FromConfig<'_> {
    fn select_free_id(
        &mut self,
        _policy: &str,
        kind: IdKind,
        taken: &[u32],
    ) -> Result<Option<u32>, ResourceError> {
        if kind != IdKind::ServiceId {
            return Ok(None);
        }
        Ok(brasa_services::alloc::free_service_id_except(
            self.config,
            10_000..=59_999,
            taken,
        ))
    }

    fn reference(&mut self, _key: &ReferenceKey) -> Result<Option<Referenced>, ResourceError> {
        Ok(None)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let count: u16 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(4000);
    let dir = std::env::temp_dir().join(format!("brasa-dynsvc-setups-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let script_path = dir.join("epipe.py");
    std::fs::write(&script_path, SCRIPT).expect("script");
    let host = ScriptHost::new(Instant::now).expect("python");
    let script = Script::load("epipe", &script_path).expect("script compiles");

    let eth1 = PortName::new("eth1").expect("port");
    let eth2 = PortName::new("eth2").expect("port");
    let env = Environment::new(Ports::from_iter([
        (eth1.clone(), Encapsulation::Qinq),
        (eth2.clone(), Encapsulation::Dot1q),
    ]));
    let ports = PortMap::default();
    let capture = SapId::parse("eth1:*.*").expect("capture SAP");
    let mut triggers = Triggers::new(TriggersConfig {
        rate_per_sec: 1_000_000,
        burst: 1_000_000,
        ..TriggersConfig::default()
    });
    triggers.set_policy(
        "dyn",
        DynServicesPolicy {
            authentication: Some(Authentication::Local { db: "db".into() }),
        },
    );
    triggers
        .add_capture_sap(
            capture.clone(),
            CaptureSapConfig {
                policy: Some("dyn".into()),
                host_lockout_policy: None,
            },
        )
        .expect("capture SAP");
    let vlan = |i: u16| (100 + i / 1000, 1 + i % 1000);
    let mut db = LocalAuthDb::new();
    for i in 0..count {
        let (outer, inner) = vlan(i);
        let mut indexes = BTreeMap::new();
        indexes.insert(
            1,
            LocalIndex {
                sap_id: "#:#.#".into(),
                policy: None,
                script_parameters: [
                    format!("epipe={{'far': 'eth2:{}'}}", 1 + i),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
                accounting: [AcctOverride::default(); 2],
            },
        );
        db.insert(
            &format!("eth1:{outer}.{inner}"),
            LocalUser {
                indexes,
                ..LocalUser::default()
            },
        )
        .expect("local-auth-db entry");
    }

    let mut config = ServiceConfig::new();
    let options = RunOptions::default();
    let mut latencies = Vec::with_capacity(usize::from(count));
    let started = Instant::now();
    for i in 0..count {
        let (outer, inner) = vlan(i);
        let t0 = Instant::now();
        let frame = TriggerFrame {
            capture_sap: capture.clone(),
            outer_vid: outer,
            inner_vid: inner,
            mac: MacAddr([2, 0, 0, 0, (i >> 8) as u8, i as u8]),
            ip: None,
            len: 64,
        };
        let FrameVerdict::Authenticate { trigger, .. } = triggers.handle_frame(&frame, t0) else {
            panic!("frame {i} made no trigger");
        };
        let services = db.authenticate(&trigger, &ports);
        let services = triggers
            .handle_authentication(&trigger, services, t0)
            .expect("pending trigger")
            .expect("authenticated");
        for service in services {
            let params = ScriptParams::parse(service.script_params.as_deref().unwrap_or(""))
                .expect("parameters");
            let run = DynRun {
                action: DynAction::Setup,
                params: Some(params),
                state: None,
                sap_id: service.sap.to_string(),
                control_sap: Some(trigger.to_string()),
                circuit_id: None,
                remote_id: None,
                policy: "dyn".into(),
            };
            let report = host
                .run_dyn(&script, &run, &mut FromConfig { config: &config }, &options)
                .expect("run");
            assert!(report.is_ok(), "{:?}", report.run.outcome);
            let changes = cli::parse(&report.cli, &ports).expect("CLI parses");
            let txn = config.prepare(&changes, &env).expect("valid service");
            config.commit(txn).expect("commit");
            triggers
                .service_created(&trigger, service.sap)
                .expect("service created");
        }
        latencies.push(t0.elapsed());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "{count} trigger→SAP setups (local auth, seed-style script, one transaction each): {:.0} setups/s, p50 {:?}, p99 {:?}, {} services in the configuration at the end",
        f64::from(count) / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        config.services().count()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
