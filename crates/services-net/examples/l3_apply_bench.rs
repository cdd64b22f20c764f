//! L3 service changes through the kernel: how long the kernel plan of IES and VPRN transactions
//! takes over rtnetlink (TAPs created and configured, VPRN namespaces, addresses, routes), in a
//! network namespace of its own (run as root).
//!
//!     cargo run --release -p brasa-services-net --example l3_apply_bench -- [N]   # default 200
//!
//! Prints, for N IES interfaces and N VPRNs (one interface each): one interface (or one VPRN)
//! per transaction, and all of them in one transaction; then their removal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use brasa_dataplane::io::tap::Tap;
use brasa_services::{cli, Encapsulation, Environment, PortMap, PortName, Ports, ServiceConfig};
use brasa_services_net::{Kernel, TapHost};
use brasa_testkit::netns::Netns;

/// TAPs held by the bench, as the data plane would hold them.
#[derive(Default)]
struct Taps(Mutex<HashMap<String, Tap>>);

impl TapHost for Taps {
    fn create_tap(&self, name: &str) -> Result<(), String> {
        let tap = Tap::create(name).map_err(|err| err.to_string())?;
        self.0
            .lock()
            .map_err(|_| "poisoned".to_string())?
            .insert(name.to_string(), tap);
        Ok(())
    }

    fn delete_tap(&self, name: &str) -> Result<(), String> {
        self.0
            .lock()
            .map_err(|_| "poisoned".to_string())?
            .remove(name)
            .map(drop)
            .ok_or_else(|| format!("no TAP {name}"))
    }
}

fn env() -> Environment {
    let ports: Ports = [(
        PortName::new("eth1").expect("a port name"),
        Encapsulation::Dot1q,
    )]
    .into_iter()
    .collect();
    Environment::new(ports)
}

/// The IES interface `i` (VLAN i + 1, 10.(i / 256).(i % 256).1/24).
fn ies_interface(i: usize) -> String {
    format!(
        "interface \"if{i}\" create\naddress 10.{}.{}.1/24\nsap eth1:{} create exit\nexit\n",
        i / 256,
        i % 256,
        i + 1
    )
}

/// VPRN `1000 + i` with one interface on VLAN 2000 + i, the same address in every VPRN.
fn vprn(i: usize) -> String {
    format!(
        "vprn {} customer 1 create\ninterface \"cust\" create\naddress 192.0.2.1/24\n\
         sap eth1:{} create exit\nexit\nstatic-route-entry 198.51.100.0/24 next-hop 192.0.2.9 exit exit\n\
         no shutdown\nexit\n",
        1000 + i,
        2000 + i
    )
}

fn no_vprn(i: usize) -> String {
    format!(
        "vprn {id} shutdown no static-route-entry 198.51.100.0/24 interface \"cust\" no sap eth1:{vlan} exit no interface \"cust\" exit no vprn {id}\n",
        id = 1000 + i,
        vlan = 2000 + i
    )
}

/// Applies `text` to `config` and runs its kernel plan; returns the plan's steps.
fn apply(
    kernel: &Kernel,
    runtime: &tokio::runtime::Runtime,
    config: &mut ServiceConfig,
    text: &str,
) -> usize {
    let changes = cli::parse(text, &PortMap::new()).expect("bench text parses");
    let txn = config
        .prepare(&changes, &env())
        .expect("bench text applies");
    let plan = txn.kernel_plan().clone();
    runtime
        .block_on(kernel.apply(&plan))
        .expect("the kernel plan runs");
    config.commit(txn).expect("no other transaction");
    plan.steps.len()
}

fn report(what: &str, count: usize, steps: usize, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{what:<58} {count:>5} in {:>7.1} ms: {:>7.0}/s, {:>5.0} us per kernel step ({steps} steps)",
        seconds * 1e3,
        count as f64 / seconds,
        seconds * 1e6 / steps.max(1) as f64
    );
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let ns = Netns::new("l3b");
    ns.enter(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let taps = Arc::new(Taps::default());
        let kernel = runtime
            .block_on(async { Kernel::connect(taps) })
            .expect("rtnetlink in the bench namespace");
        let mut config = ServiceConfig::new();
        println!("L3 kernel plans over rtnetlink, N = {n}:");

        let started = Instant::now();
        let mut steps = apply(
            &kernel,
            &runtime,
            &mut config,
            "configure service ies 10 customer 1 create no shutdown exit all\n",
        );
        for i in 0..n {
            let text = format!("configure service ies 10\n{}exit all\n", ies_interface(i));
            steps += apply(&kernel, &runtime, &mut config, &text);
        }
        report("IES interfaces, one per transaction", n, steps, started);

        let started = Instant::now();
        let text: String = (0..n)
            .map(|i| format!("configure service ies 10 interface \"if{i}\" no sap eth1:{} exit no interface \"if{i}\" exit all\n", i + 1))
            .collect();
        let steps = apply(&kernel, &runtime, &mut config, &text);
        report("IES interfaces removed, all in one transaction", n, steps, started);

        let started = Instant::now();
        let text = format!(
            "configure service ies 10\n{}exit all\n",
            (0..n).map(ies_interface).collect::<String>()
        );
        let steps = apply(&kernel, &runtime, &mut config, &text);
        report("IES interfaces, all in one transaction", n, steps, started);

        let started = Instant::now();
        let mut steps = 0;
        for i in 0..n {
            let text = format!("configure service\n{}exit all\n", vprn(i));
            steps += apply(&kernel, &runtime, &mut config, &text);
        }
        report("VPRNs (namespace, TAP, address, route), one per transaction", n, steps, started);

        let started = Instant::now();
        let mut steps = 0;
        for i in 0..n {
            let text = format!("configure service {}exit all\n", no_vprn(i));
            steps += apply(&kernel, &runtime, &mut config, &text);
        }
        report("VPRNs removed, one per transaction", n, steps, started);
    });
}
