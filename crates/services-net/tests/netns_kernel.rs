//! The kernel plan against a real kernel, in a network namespace of the test's own: each IES or
//! VPRN interface becomes a TAP with its alias, MAC and addresses, a VPRN gets a namespace of
//! its own (the same address in an IES and a VPRN), routes go where they belong; a plan whose
//! step fails midway leaves the kernel exactly as before; teardown leaves nothing; after a
//! crash, reconcile removes what outlived the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use brasa_dataplane::io::tap::Tap;
use brasa_services::kernel::{self, KernelPlan, KernelStep};
use brasa_services::{cli, Encapsulation, Environment, PortMap, PortName, Ports, ServiceConfig};
use brasa_services_net::{Kernel, TapHost};
use brasa_testkit::netns::Netns;

/// TAPs held open by the test, as the data plane would hold them.
#[derive(Default)]
struct TestTaps(Mutex<HashMap<String, Tap>>);

impl TapHost for TestTaps {
    fn create_tap(&self, name: &str) -> Result<(), String> {
        let tap = Tap::create(name).map_err(|err| err.to_string())?;
        self.0.lock().unwrap().insert(name.to_string(), tap);
        Ok(())
    }

    fn delete_tap(&self, name: &str) -> Result<(), String> {
        self.0
            .lock()
            .unwrap()
            .remove(name)
            .map(drop)
            .ok_or_else(|| format!("no TAP {name}"))
    }
}

fn env() -> Environment {
    let ports: Ports = [
        ("eth1", Encapsulation::Dot1q),
        ("eth2", Encapsulation::Qinq),
    ]
    .into_iter()
    .map(|(name, encap)| (PortName::new(name).unwrap(), encap))
    .collect();
    Environment::new(ports)
}

const SERVICES: &str = r#"
configure service
    ies 10 customer 1 create
        interface "to-a" create
            address 192.0.2.1/24
            sap eth1:100 create
            exit
        exit
        static-route-entry 203.0.113.0/24
            next-hop 192.0.2.9
            exit
        exit
        static-route-entry 198.18.0.0/15
            black-hole
            exit
        exit
        no shutdown
    exit
    vprn 20 customer 2 create
        interface "cust" create
            address 192.0.2.1/24
            ipv6
                address 2001:db8:20::1/64
            exit
            sap eth2:200.300 create
            exit
        exit
        static-route-entry 198.51.100.0/24
            next-hop 192.0.2.7
            exit
        exit
        no shutdown
    exit
exit
"#;

const TEARDOWN: &str = r#"
configure service
    ies 10
        shutdown
        no static-route-entry 203.0.113.0/24
        no static-route-entry 198.18.0.0/15
        interface "to-a" no sap eth1:100 exit
        no interface "to-a"
    exit
    no ies 10
    vprn 20
        shutdown
        no static-route-entry 198.51.100.0/24
        interface "cust" no sap eth2:200.300 exit
        no interface "cust"
    exit
    no vprn 20
exit
"#;

/// What a plan may change in the test's namespace, as `ip -j` prints it minus counters.
fn kernel_state(ns: &Netns) -> String {
    ns.sh(r#"python3 - <<'PY'
import json, subprocess
def j(*a): return json.loads(subprocess.run(["ip", "-j", *a], capture_output=True, text=True, check=True).stdout or "[]")
links = sorted((l["ifname"], l.get("ifalias"), l.get("address"), "UP" in l["flags"]) for l in j("link", "show"))
addrs = sorted((l["ifname"], a["local"], a["prefixlen"]) for l in j("addr", "show") for a in l["addr_info"] if not a["local"].startswith("fe80"))
routes = sorted(str(r) for r in j("route", "show", "table", "all") if r.get("table") != "local")
print(json.dumps([links, addrs, routes]))
PY"#)
}

fn plan_for(config: &ServiceConfig, text: &str) -> (ServiceConfig, KernelPlan) {
    let changes = cli::parse(text, &PortMap::new()).unwrap();
    let txn = config.prepare(&changes, &env()).unwrap();
    let plan = txn.kernel_plan().clone();
    let mut next = config.clone();
    next.commit(txn).unwrap();
    (next, plan)
}

/// Runs `f` with an executor (and its TAPs) inside the test's namespace.
fn with_kernel<T: Send + 'static>(
    ns: &Netns,
    taps: Arc<TestTaps>,
    f: impl FnOnce(&Kernel, &tokio::runtime::Runtime) -> T + Send + 'static,
) -> T {
    ns.enter(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let kernel = runtime.block_on(async { Kernel::connect(taps) }).unwrap();
        f(&kernel, &runtime)
    })
}

fn ip_in(kernel: &Kernel, namespace: &str, args: &'static [&'static str]) -> String {
    let output = kernel
        .run_in(namespace, move || {
            std::process::Command::new("ip").args(args).output()
        })
        .expect("namespace held")
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn netns_kernel_plan_builds_l3_services_and_teardown_leaves_nothing() {
    let ns = Netns::new("svck");
    let before = kernel_state(&ns);
    let (config, plan) = plan_for(&ServiceConfig::default(), SERVICES);
    let (_, teardown) = plan_for(&config, TEARDOWN);
    let taps = Arc::new(TestTaps::default());
    let ies = kernel::tap("ies", 10, "to-a", None);
    let vprn = kernel::tap("vprn", 20, "cust", Some("vprn-20".into()));
    let (root_links, root_routes, vprn_addrs, vprn_routes, vprn_forwarding, held) =
        with_kernel(&ns, taps.clone(), move |kernel, rt| {
            rt.block_on(kernel.apply(&plan)).unwrap();
            let root_links = String::from_utf8_lossy(
                &std::process::Command::new("ip")
                    .args(["-d", "link", "show"])
                    .output()
                    .unwrap()
                    .stdout,
            )
            .into_owned();
            let root_routes = String::from_utf8_lossy(
                &std::process::Command::new("ip")
                    .args(["route", "show", "proto", "196"])
                    .output()
                    .unwrap()
                    .stdout,
            )
            .into_owned();
            let vprn_addrs = ip_in(kernel, "vprn-20", &["addr", "show"]);
            let vprn_routes = ip_in(kernel, "vprn-20", &["route", "show", "proto", "196"]);
            let vprn_forwarding = kernel
                .run_in("vprn-20", || {
                    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                })
                .unwrap()
                .unwrap();
            let held = kernel.namespaces();
            rt.block_on(kernel.apply(&teardown)).unwrap();
            (
                root_links,
                root_routes,
                vprn_addrs,
                vprn_routes,
                vprn_forwarding,
                held,
            )
        });
    // The IES TAP in the daemon's namespace, the VPRN's TAP only in the VPRN's.
    assert!(
        root_links.contains(&format!("{}:", ies.name)),
        "{root_links}"
    );
    assert!(
        root_links.contains(&format!("alias {}", ies.alias)),
        "{root_links}"
    );
    let mac = ies
        .mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    assert!(root_links.contains(&mac), "{root_links}");
    assert!(!root_links.contains(&vprn.name), "{root_links}");
    assert!(
        root_routes.contains("203.0.113.0/24 via 192.0.2.9"),
        "{root_routes}"
    );
    assert!(
        root_routes.contains("blackhole 198.18.0.0/15"),
        "{root_routes}"
    );
    // The same address in the VPRN, kept apart.
    assert!(vprn_addrs.contains(&vprn.name), "{vprn_addrs}");
    assert!(vprn_addrs.contains("192.0.2.1/24"), "{vprn_addrs}");
    assert!(vprn_addrs.contains("2001:db8:20::1/64"), "{vprn_addrs}");
    assert!(
        vprn_routes.contains("198.51.100.0/24 via 192.0.2.7"),
        "{vprn_routes}"
    );
    assert_eq!(vprn_forwarding.trim(), "1");
    assert_eq!(held, vec!["vprn-20".to_string()]);
    // Torn down: the kernel is as it was, and no TAP is held.
    assert_eq!(kernel_state(&ns), before);
    assert!(taps.0.lock().unwrap().is_empty());
}

#[test]
fn netns_kernel_plan_failing_midway_leaves_the_kernel_as_it_was() {
    let ns = Netns::new("svcf");
    let (_, plan) = plan_for(&ServiceConfig::default(), SERVICES);
    // Something that is not brasa's holds the name of the TAP created last: the data plane
    // refuses that creation, several steps into the plan.
    let failing = plan
        .steps
        .iter()
        .rposition(|step| matches!(step, KernelStep::CreateTap(_)))
        .unwrap();
    let KernelStep::CreateTap(tap) = &plan.steps[failing] else {
        unreachable!()
    };
    assert!(
        failing >= 2,
        "the failure must come after other steps: {failing}"
    );
    ns.sh(&format!(
        "ip link add {} type veth peer name brsx-peer",
        tap.name
    ));
    let before = kernel_state(&ns);
    let taps = Arc::new(TestTaps::default());
    let (error, held) = with_kernel(&ns, taps.clone(), move |kernel, rt| {
        let error = rt.block_on(kernel.apply(&plan)).unwrap_err();
        (error, kernel.namespaces())
    });
    assert_eq!(error.failed_at, failing, "{error}");
    assert!(error.rollback.is_ok(), "{error}");
    assert!(held.is_empty(), "the VPRN namespace was rolled back too");
    assert_eq!(kernel_state(&ns), before);
    assert!(taps.0.lock().unwrap().is_empty());
}

#[test]
fn netns_kernel_reconcile_after_a_crash_removes_what_outlived_the_process() {
    let ns = Netns::new("svcr");
    let before = kernel_state(&ns);
    let (config, plan) = plan_for(&ServiceConfig::default(), SERVICES);
    // A daemon that built the services and died without tearing them down: its TAPs close
    // and its VPRN namespace goes with its descriptor.
    let taps = Arc::new(TestTaps::default());
    with_kernel(&ns, taps.clone(), move |kernel, rt| {
        rt.block_on(kernel.apply(&plan)).unwrap()
    });
    taps.0.lock().unwrap().clear();
    let after_crash = kernel_state(&ns);
    assert_ne!(
        after_crash, before,
        "the blackhole route outlives the process"
    );
    assert!(after_crash.contains("198.18.0.0/15"), "{after_crash}");
    // The next start finds the route; with the services still configured it rebuilds them,
    // with none it leaves the kernel as it was.
    let taps = Arc::new(TestTaps::default());
    let rebuilt = with_kernel(&ns, taps.clone(), move |kernel, rt| {
        rt.block_on(async {
            let routes = kernel.brasa_routes().await.unwrap();
            assert_eq!(routes.len(), 1, "{routes:?}");
            kernel
                .apply(&kernel::reconcile(&routes, &config))
                .await
                .unwrap();
            kernel.namespaces()
        })
    });
    assert_eq!(rebuilt, vec!["vprn-20".to_string()]);
    taps.0.lock().unwrap().clear();
    let taps = Arc::new(TestTaps::default());
    with_kernel(&ns, taps, move |kernel, rt| {
        rt.block_on(async {
            let routes = kernel.brasa_routes().await.unwrap();
            kernel
                .apply(&kernel::reconcile(&routes, &ServiceConfig::default()))
                .await
                .unwrap();
        })
    });
    assert_eq!(kernel_state(&ns), before);
}
