//! The kernel plan against a fake kernel that checks what rtnetlink would: a plan runs step by
//! step, a failure injected at every step N is rolled back with `KernelPlan::rollback(N)`, and
//! the kernel must end exactly as it was.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use brasa_services::kernel::{
    self, ExistingLink, KernelStep, LinkKind, Route, RouteVia, MAIN_TABLE,
};
use brasa_services::{cli, KernelPlan, ServiceConfig};
use common::{env, port_map};
use ipnet::IpNet;

#[derive(Debug, Clone, PartialEq, Eq)]
struct FakeLink {
    kind: LinkKind,
    alias: Option<String>,
    master: Option<String>,
    up: bool,
}

/// A kernel model strict enough to catch a plan in the wrong order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FakeKernel {
    links: BTreeMap<String, FakeLink>,
    addresses: BTreeSet<(String, IpNet)>,
    routes: BTreeSet<Route>,
}

impl FakeKernel {
    fn with_ports() -> Self {
        let links = ["eth0", "eth1", "eth2", "eth3"]
            .into_iter()
            .map(|name| {
                let link = FakeLink {
                    kind: LinkKind::Port,
                    alias: None,
                    master: None,
                    up: true,
                };
                (name.to_owned(), link)
            })
            .collect();
        Self {
            links,
            addresses: BTreeSet::new(),
            routes: BTreeSet::new(),
        }
    }

    fn table_of(&self, link: &str) -> u32 {
        let master = self.links.get(link).and_then(|l| l.master.clone());
        match master.and_then(|m| self.links.get(&m).map(|l| l.kind.clone())) {
            Some(LinkKind::Vrf { table }) => table,
            _ => MAIN_TABLE,
        }
    }

    fn execute(&mut self, step: &KernelStep) -> Result<(), String> {
        match step {
            KernelStep::CreateLink { name, alias, kind } => {
                if self.links.contains_key(name) {
                    return Err(format!("{name} exists"));
                }
                if let LinkKind::Vlan { parent, .. } = kind {
                    if !self.links.contains_key(parent) {
                        return Err(format!("parent {parent} of {name} missing"));
                    }
                }
                self.links.insert(
                    name.clone(),
                    FakeLink {
                        kind: kind.clone(),
                        alias: Some(alias.clone()),
                        master: None,
                        up: false,
                    },
                );
            }
            KernelStep::DeleteLink { name, .. } => {
                let link = self.links.get(name).ok_or(format!("{name} missing"))?;
                if link.up || link.master.is_some() || link.kind == LinkKind::Port {
                    return Err(format!("{name} still up, enslaved or a port"));
                }
                let in_use = self.links.values().any(|l| {
                    l.master.as_deref() == Some(name)
                        || matches!(&l.kind, LinkKind::Vlan { parent, .. } if parent == name)
                });
                if in_use {
                    return Err(format!("{name} still has slaves or children"));
                }
                // As the kernel does; a plan that relied on it would fail the rollback checks,
                // since re-creating the link does not bring the addresses back.
                self.addresses.retain(|(l, _)| l != name);
                self.links.remove(name);
            }
            KernelStep::SetMaster {
                link,
                master,
                previous,
            } => {
                if let Some(master) = master {
                    match self.links.get(master) {
                        Some(FakeLink {
                            kind: LinkKind::Vrf { .. },
                            ..
                        }) => {}
                        _ => return Err(format!("master {master} is no VRF")),
                    }
                }
                let entry = self.links.get_mut(link).ok_or(format!("{link} missing"))?;
                if entry.master != *previous {
                    return Err(format!(
                        "{link} master is {:?}, not {previous:?}",
                        entry.master
                    ));
                }
                entry.master.clone_from(master);
            }
            KernelStep::SetUp { link, up } => {
                let parent_down = match &self.links.get(link).ok_or(format!("{link} missing"))?.kind
                {
                    LinkKind::Vlan { parent, .. } => self.links.get(parent).is_none_or(|p| !p.up),
                    _ => false,
                };
                if *up && parent_down {
                    return Err(format!("{link}: parent is down"));
                }
                if let Some(l) = self.links.get_mut(link) {
                    l.up = *up;
                }
            }
            KernelStep::AddAddress { link, addr } => {
                if !self.links.contains_key(link) || !self.addresses.insert((link.clone(), *addr)) {
                    return Err(format!("cannot add {addr} to {link}"));
                }
            }
            KernelStep::DelAddress { link, addr } => {
                if !self.addresses.remove(&(link.clone(), *addr)) {
                    return Err(format!("{addr} not on {link}"));
                }
            }
            KernelStep::AddRoute(route) => {
                if let RouteVia::Gateway(gateway) = route.via {
                    let reachable = self.addresses.iter().any(|(link, net)| {
                        net.contains(&gateway)
                            && self.links.get(link).is_some_and(|l| l.up)
                            && self.table_of(link) == route.table
                    });
                    if !reachable {
                        return Err(format!("gateway {gateway} unreachable in {}", route.table));
                    }
                }
                if !self.routes.insert(*route) {
                    return Err(format!("{route:?} exists"));
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

    /// The brasa links and routes, as an executor would list them at start.
    fn existing(&self) -> (Vec<ExistingLink>, Vec<Route>) {
        let links = self
            .links
            .iter()
            .map(|(name, l)| ExistingLink {
                name: name.clone(),
                alias: l.alias.clone(),
                master: l.master.clone(),
                up: l.up,
                addresses: self
                    .addresses
                    .iter()
                    .filter(|(link, _)| link == name)
                    .map(|(_, net)| *net)
                    .collect(),
            })
            .collect();
        (links, self.routes.iter().copied().collect())
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
    let empty = FakeKernel::with_ports();
    let plan = transaction(&mut config, L3);
    let built = check_rollbacks(&empty, &plan);

    // Two VRFs, one shared QinQ outer link, two inner links, one dot1q link.
    let count = |f: fn(&LinkKind) -> bool| built.links.values().filter(|l| f(&l.kind)).count();
    assert_eq!(count(|k| matches!(k, LinkKind::Vrf { .. })), 2);
    assert_eq!(count(|k| matches!(k, LinkKind::Vlan { .. })), 4);
    assert_eq!(built.links["eth0"].master.as_deref(), Some("brsv100"));
    assert_eq!(built.routes.len(), 3);
    let vrf100 = match built.links["brsv100"].kind {
        LinkKind::Vrf { table } => table,
        _ => unreachable!(),
    };
    assert_eq!(vrf100, 10_100);
    for link in built.links.keys() {
        assert!(link.len() <= 15, "{link}");
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
    assert!(!changed.links.contains_key("brsv200"));
    assert_eq!(changed.links["eth0"].master, None);
    assert!(changed
        .addresses
        .iter()
        .any(|(_, net)| net.to_string() == "192.0.2.9/24"));
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
    let mut crashed = FakeKernel::with_ports();
    crashed.run(&plan.steps);
    // After the crash the operator changed the config: VPRN 200 is gone.
    transaction(
        &mut config,
        r#"configure service vprn 200 shutdown interface "shared-outer" no sap eth2:10.21 exit no interface "shared-outer" exit no vprn 200"#,
    );
    let (links, routes) = crashed.existing();
    let reconcile = kernel::reconcile(&links, &routes, &config, &env());
    crashed.run(&reconcile.steps);
    let mut fresh = FakeKernel::with_ports();
    fresh.run(&kernel::plan(&Default::default(), &kernel::desired(&config, &env())).steps);
    assert_eq!(crashed, fresh);
}
