//! The kernel plan against a fake kernel that checks what rtnetlink would: a plan runs step by
//! step, a failure injected at every step N is rolled back with `KernelPlan::rollback(N)`, and
//! the kernel must end exactly as it was.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use brasa_services::kernel::{self, Address, KernelStep, Namespace, Route, RouteVia, Tap};
use brasa_services::{cli, KernelPlan, ServiceConfig};
use common::{env, port_map};

/// A kernel model strict enough to catch a plan in the wrong order: nothing vanishes as a side
/// effect (a TAP is deleted only without addresses, a namespace only when empty), so a plan
/// must say everything it removes, and its inverse can put everything back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct FakeKernel {
    namespaces: BTreeSet<String>,
    /// TAPs by name: the TAP and whether it is up.
    taps: BTreeMap<String, (Tap, bool)>,
    addresses: BTreeSet<Address>,
    routes: BTreeSet<Route>,
}

impl FakeKernel {
    fn namespace_exists(&self, namespace: &Namespace) -> bool {
        namespace
            .as_ref()
            .is_none_or(|name| self.namespaces.contains(name))
    }

    fn tap_in(&self, namespace: &Namespace, link: &str) -> Option<&(Tap, bool)> {
        self.taps
            .get(link)
            .filter(|(tap, _)| tap.namespace == *namespace)
    }

    fn execute(&mut self, step: &KernelStep) -> Result<(), String> {
        match step {
            KernelStep::CreateNamespace { name } => {
                if !self.namespaces.insert(name.clone()) {
                    return Err(format!("namespace {name} exists"));
                }
            }
            KernelStep::DeleteNamespace { name } => {
                let inside = Some(name.clone());
                let busy = self.taps.values().any(|(tap, _)| tap.namespace == inside)
                    || self.routes.iter().any(|route| route.namespace == inside)
                    || self
                        .addresses
                        .iter()
                        .any(|address| address.namespace == inside);
                if busy {
                    return Err(format!("namespace {name} still holds objects"));
                }
                if !self.namespaces.remove(name) {
                    return Err(format!("namespace {name} missing"));
                }
            }
            KernelStep::CreateTap(tap) => {
                if self.taps.contains_key(&tap.name) || !self.namespace_exists(&tap.namespace) {
                    return Err(format!("cannot create {}", tap.name));
                }
                self.taps.insert(tap.name.clone(), (tap.clone(), false));
            }
            KernelStep::DeleteTap(tap) => {
                match self.taps.get(&tap.name) {
                    Some((existing, false)) if existing == tap => {}
                    other => return Err(format!("cannot delete {}: {other:?}", tap.name)),
                }
                if self
                    .addresses
                    .iter()
                    .any(|address| address.link == tap.name)
                {
                    return Err(format!("{} still has addresses", tap.name));
                }
                self.taps.remove(&tap.name);
            }
            KernelStep::SetUp {
                namespace,
                link,
                up,
            } => {
                if self.tap_in(namespace, link).is_none() {
                    return Err(format!("{link} missing in {namespace:?}"));
                }
                if let Some(entry) = self.taps.get_mut(link) {
                    entry.1 = *up;
                }
            }
            KernelStep::AddAddress(address) => {
                if self.tap_in(&address.namespace, &address.link).is_none()
                    || !self.addresses.insert(address.clone())
                {
                    return Err(format!("cannot add {address:?}"));
                }
            }
            KernelStep::DelAddress(address) => {
                if !self.addresses.remove(address) {
                    return Err(format!("{address:?} missing"));
                }
            }
            KernelStep::AddRoute(route) => {
                if let RouteVia::Gateway(gateway) = route.via {
                    let reachable = self.addresses.iter().any(|address| {
                        address.namespace == route.namespace
                            && address.addr.contains(&gateway)
                            && self
                                .tap_in(&address.namespace, &address.link)
                                .is_some_and(|(_, up)| *up)
                    });
                    if !reachable {
                        return Err(format!("gateway {gateway} unreachable"));
                    }
                }
                if !self.namespace_exists(&route.namespace) || !self.routes.insert(route.clone()) {
                    return Err(format!("cannot add {route:?}"));
                }
            }
            KernelStep::DelRoute(route) => {
                if !self.routes.remove(route) {
                    return Err(format!("{route:?} missing"));
                }
            }
        }
        Ok(())
    }

    fn run(&mut self, steps: &[KernelStep]) {
        for (n, step) in steps.iter().enumerate() {
            self.execute(step)
                .unwrap_or_else(|e| panic!("step {n} ({step}) failed: {e}\n{steps:#?}"));
        }
    }

    /// What survives a crash: the TAPs (with their addresses and the routes through them) and
    /// the VPRN namespaces (with everything in them) vanish with the process; blackhole routes
    /// of the daemon's own namespace stay.
    fn crash(&mut self) {
        self.taps.clear();
        self.addresses.clear();
        self.namespaces.clear();
        self.routes
            .retain(|route| route.namespace.is_none() && route.via == RouteVia::Blackhole);
    }
}

/// Runs `plan` with a failure injected at each step in turn and checks the rollback restores
/// `before` exactly; then runs it whole and returns the result.
fn check_rollbacks(before: &FakeKernel, plan: &KernelPlan) -> FakeKernel {
    assert!(!plan.is_empty());
    for fail_at in 0..plan.steps.len() {
        let mut kernel = before.clone();
        kernel.run(&plan.steps[..fail_at]);
        // Step `fail_at` fails: nothing of it happened; undo the rest.
        kernel.run(&plan.rollback(fail_at));
        assert_eq!(
            &kernel, before,
            "rollback after a failure at step {fail_at}"
        );
    }
    let mut kernel = before.clone();
    kernel.run(&plan.steps);
    let mut undone = kernel.clone();
    undone.run(&plan.inverse());
    assert_eq!(&undone, before, "the inverse of the whole plan");
    kernel
}

fn transaction(config: &mut ServiceConfig, text: &str) -> KernelPlan {
    let changes = cli::parse(text, &port_map()).unwrap();
    let (_, plan) = config.apply_changes(&changes, &env()).unwrap();
    plan
}

const L3: &str = r#"
configure service
    vprn 100 customer 1 create
        interface "qinq" create
            address 192.0.2.1/24
            ipv6
                address 2001:db8::1/64
            exit
            sap eth2:10.20 create exit
        exit
        interface "untagged" create
            address 198.51.100.1/24
            sap eth0 create exit
        exit
        static-route-entry 10.0.0.0/8 next-hop 192.0.2.2 exit exit
        static-route-entry 172.16.0.0/12 black-hole exit exit
        no shutdown
    exit
    vprn 200 customer 1 create
        interface "shared-outer" create
            address 192.0.2.1/24
            sap eth2:10.21 create exit
        exit
        no shutdown
    exit
    ies 300 customer 1 create
        interface "dot1q" create
            address 203.0.113.1/24
            sap eth1:300 create exit
        exit
        static-route-entry 0.0.0.0/0 next-hop 203.0.113.254 exit exit
        no shutdown
    exit
exit all
"#;

#[test]
fn every_failure_point_rolls_back_to_the_prior_kernel() {
    let mut config = ServiceConfig::new();
    let empty = FakeKernel::default();
    let plan = transaction(&mut config, L3);
    let built = check_rollbacks(&empty, &plan);

    // Two VPRN namespaces, a TAP per interface, three routes.
    assert_eq!(built.namespaces.len(), 2);
    assert_eq!(built.taps.len(), 4);
    assert!(built.taps.values().all(|(_, up)| *up));
    assert_eq!(built.routes.len(), 3);
    assert!(built.namespaces.contains("vprn-100"));
    let dot1q = kernel::tap("ies", 300, "dot1q", None);
    assert_eq!(built.taps[&dot1q.name].0, dot1q);
    for tap in built.taps.keys() {
        assert!(tap.len() <= 15, "{tap}");
    }

    // A second transaction: move an address, drop a VPRN, shut an interface down.
    let plan = transaction(
        &mut config,
        r#"configure service
            vprn 100
                interface "qinq" address 192.0.2.9/24 exit
                interface "untagged" shutdown exit
            exit
            vprn 200
                shutdown
                interface "shared-outer" no sap eth2:10.21 exit
                no interface "shared-outer"
            exit
            no vprn 200
        exit all"#,
    );
    let changed = check_rollbacks(&built, &plan);
    assert!(!changed.namespaces.contains("vprn-200"));
    assert_eq!(changed.taps.len(), 2, "qinq and dot1q remain");
    assert!(changed
        .addresses
        .iter()
        .any(|address| address.addr.to_string() == "192.0.2.9/24"));
    assert_eq!(
        changed.routes.len(),
        3,
        "the next hop is still on 192.0.2.0/24"
    );

    // Tearing everything down leaves the ports as they were.
    let plan = transaction(
        &mut config,
        r#"configure service
            vprn 100 shutdown exit
            ies 300 shutdown exit
        exit all"#,
    );
    let down = check_rollbacks(&changed, &plan);
    assert_eq!(down, empty);
}

#[test]
fn reconcile_after_a_crash_rebuilds_the_desired_state() {
    let mut config = ServiceConfig::new();
    let plan = transaction(&mut config, L3);
    let mut crashed = FakeKernel::default();
    crashed.run(&plan.steps);
    crashed.crash();
    assert!(crashed.taps.is_empty() && crashed.namespaces.is_empty());
    assert_eq!(
        crashed.routes.len(),
        0,
        "the IES has no blackhole route yet"
    );
    // A blackhole route of the daemon's own namespace outlives the process.
    transaction(
        &mut config,
        r#"configure service ies 300 static-route-entry 192.0.2.0/24 black-hole exit exit exit"#,
    );
    let mut crashed = FakeKernel::default();
    crashed.run(&kernel::plan(&Default::default(), &kernel::desired(&config)).steps);
    crashed.crash();
    assert_eq!(crashed.routes.len(), 1);
    // After the crash the operator changed the config: VPRN 200 is gone.
    transaction(
        &mut config,
        r#"configure service vprn 200 shutdown interface "shared-outer" no sap eth2:10.21 exit no interface "shared-outer" exit no vprn 200"#,
    );
    let routes: Vec<Route> = crashed.routes.iter().cloned().collect();
    crashed.run(&kernel::reconcile(&routes, &config).steps);
    let mut fresh = FakeKernel::default();
    fresh.run(&kernel::plan(&Default::default(), &kernel::desired(&config)).steps);
    assert_eq!(crashed, fresh);
}
