//! The kernel plan against a real kernel, in a network namespace of the test's own: IES and
//! VPRN interfaces appear as VLAN links (802.1Q, and 802.1ad + 802.1Q for QinQ) with their
//! addresses, VRF and routes; a plan whose step fails midway leaves the kernel exactly as
//! before; teardown and crash reconcile leave no brasa link or route behind.

use brasa_services::kernel::{self, KernelPlan};
use brasa_services::{cli, Encapsulation, Environment, PortMap, PortName, Ports, ServiceConfig};
use brasa_services_net::Kernel;
use brasa_testkit::netns::Netns;

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
            black-hole
            exit
        exit
        no shutdown
    exit
exit
"#;

/// The kernel's view that a plan may change: links (name, kind, master, state, alias),
/// addresses and routes of every table, as `ip -j` prints them, minus counters and timers.
fn kernel_state(ns: &Netns) -> String {
    let links = ns.sh("ip -d -j link show | python3 -c 'import json,sys; print(json.dumps(sorted([(l[\"ifname\"], l.get(\"master\"), l.get(\"ifalias\"), \"UP\" in l[\"flags\"], l.get(\"linkinfo\",{}).get(\"info_kind\")) for l in json.load(sys.stdin)])))'");
    let addresses = ns.sh("ip -j addr show | python3 -c 'import json,sys; print(json.dumps(sorted([(l[\"ifname\"], a[\"local\"], a[\"prefixlen\"]) for l in json.load(sys.stdin) for a in l[\"addr_info\"] if not a[\"local\"].startswith(\"fe80\")])))'");
    let routes = ns.sh("ip -j route show table all | python3 -c 'import json,sys; print(json.dumps(sorted([(r.get(\"table\",\"main\"), r[\"dst\"], r.get(\"gateway\"), r.get(\"type\"), r.get(\"dev\")) for r in json.load(sys.stdin) if r.get(\"table\") != \"local\"], key=str)))'");
    format!("{links}\n{addresses}\n{routes}")
}

fn plan_for(config: &ServiceConfig, text: &str) -> (ServiceConfig, KernelPlan) {
    let changes = cli::parse(text, &PortMap::new()).unwrap();
    let txn = config.prepare(&changes, &env()).unwrap();
    let plan = txn.kernel_plan().clone();
    let mut next = config.clone();
    next.commit(txn).unwrap();
    (next, plan)
}

fn in_ns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce(&Kernel, &tokio::runtime::Runtime) -> T + Send + 'static,
) -> T {
    ns.enter(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let kernel = runtime.block_on(async { Kernel::connect() }).unwrap();
        f(&kernel, &runtime)
    })
}

fn setup() -> Netns {
    let ns = Netns::new("svck");
    ns.sh("ip link add eth1 type dummy && ip link set eth1 up");
    ns.sh("ip link add eth2 type dummy && ip link set eth2 up");
    ns
}

#[test]
fn netns_kernel_plan_builds_l3_services_and_teardown_leaves_nothing() {
    let ns = setup();
    let before = kernel_state(&ns);
    let (config, plan) = plan_for(&ServiceConfig::default(), SERVICES);
    in_ns(&ns, move |kernel, rt| {
        rt.block_on(kernel.apply(&plan)).unwrap()
    });

    let links = ns.sh("ip -d link show");
    let (dot1q, _) = kernel::vlan_link(
        &PortName::new("eth1").unwrap(),
        kernel::VlanRole::Dot1q(100),
    );
    let (outer, _) = kernel::vlan_link(
        &PortName::new("eth2").unwrap(),
        kernel::VlanRole::Outer(200),
    );
    let (inner, _) = kernel::vlan_link(
        &PortName::new("eth2").unwrap(),
        kernel::VlanRole::Inner(200, 300),
    );
    assert!(links.contains(&format!("{dot1q}@eth1")), "{links}");
    assert!(links.contains("vlan protocol 802.1Q id 100"), "{links}");
    assert!(links.contains(&format!("{outer}@eth2")), "{links}");
    assert!(links.contains("vlan protocol 802.1ad id 200"), "{links}");
    assert!(links.contains(&format!("{inner}@{outer}")), "{links}");
    assert!(links.contains("vrf table 10020"), "{links}");
    assert!(links.contains("alias brasa vlan eth1:100"), "{links}");

    // The same address in the base instance and in the VPRN: kept apart by the VRF.
    let vrf = kernel::vrf_name(20);
    let base = ns.sh(&format!("ip -4 addr show dev {dot1q}"));
    assert!(base.contains("192.0.2.1/24"), "{base}");
    let in_vrf = ns.sh(&format!("ip addr show vrf {vrf}"));
    assert!(
        in_vrf.contains("192.0.2.1/24") && in_vrf.contains("2001:db8:20::1/64"),
        "{in_vrf}"
    );
    let main = ns.sh("ip route show proto 196");
    assert!(main.contains("203.0.113.0/24 via 192.0.2.9"), "{main}");
    let vrf_routes = ns.sh("ip route show table 10020 proto 196");
    assert!(
        vrf_routes.contains("blackhole 198.51.100.0/24"),
        "{vrf_routes}"
    );

    // Everything down again: the kernel is as it was before the services.
    let (_, teardown) = plan_for(&config, "configure service\nies 10\nshutdown\nexit\nno ies 10\nvprn 20\nshutdown\nexit\nno vprn 20\nexit\n");
    in_ns(&ns, move |kernel, rt| {
        rt.block_on(kernel.apply(&teardown)).unwrap()
    });
    assert_eq!(kernel_state(&ns), before);
}

#[test]
fn netns_kernel_plan_failing_midway_leaves_the_kernel_as_it_was() {
    let ns = setup();
    // Something that is not brasa's holds the name of the QinQ inner link: the kernel refuses
    // that creation, several steps into the plan.
    let (inner, _) = kernel::vlan_link(
        &PortName::new("eth2").unwrap(),
        kernel::VlanRole::Inner(200, 300),
    );
    ns.sh(&format!("ip link add {inner} type dummy"));
    let before = kernel_state(&ns);
    let (_, plan) = plan_for(&ServiceConfig::default(), SERVICES);
    let failing = plan
        .steps
        .iter()
        .position(
            |step| matches!(step, kernel::KernelStep::CreateLink { name, .. } if *name == inner),
        )
        .unwrap();
    assert!(
        failing >= 2,
        "the failure must come after other steps: {failing}"
    );
    let error = in_ns(&ns, move |kernel, rt| {
        rt.block_on(kernel.apply(&plan)).unwrap_err()
    });
    assert_eq!(error.failed_at, failing);
    assert!(error.rollback.is_ok(), "{error}");
    assert_eq!(error.error.errno(), Some(17), "EEXIST expected: {error}");
    assert_eq!(kernel_state(&ns), before);
}

#[test]
fn netns_kernel_reconcile_after_a_crash_removes_what_brasa_left() {
    let ns = setup();
    let before = kernel_state(&ns);
    let (_, plan) = plan_for(&ServiceConfig::default(), SERVICES);
    // A daemon that built the services and died without tearing them down.
    in_ns(&ns, move |kernel, rt| {
        rt.block_on(kernel.apply(&plan)).unwrap()
    });
    assert_ne!(kernel_state(&ns), before);
    // The next start, with no services configured, finds and removes them all.
    in_ns(&ns, move |kernel, rt| {
        rt.block_on(async {
            let (links, routes) = kernel.snapshot().await.unwrap();
            assert_eq!(routes.len(), 2, "{routes:?}");
            let cleanup = kernel::reconcile(&links, &routes, &ServiceConfig::default(), &env());
            kernel.apply(&cleanup).await.unwrap();
        })
    });
    assert_eq!(kernel_state(&ns), before);
}
