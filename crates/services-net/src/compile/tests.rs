//! The compile of a transaction ([`Compiler::prepare_transaction`]) against the compile of the
//! whole configuration ([`Compiler::prepare`]), over random sequences of transactions.

use super::*;
use brasa_dataplane::wire::MacAddr as DpMac;
use brasa_services::change::{Edit, SapOp, SapSetting, ServiceOp, ServiceSetting};
use brasa_services::model::SapPath;
use brasa_services::{Change, ServiceConfig};
use common::env;
use common::strategies::{batch, kinds, preamble, removal, sap_removal};
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::BTreeMap;

#[path = "../../../services/tests/common/mod.rs"]
mod common;

/// Every tunnel leaves through port 0 to the same gateway.
struct OneGateway;

impl GreResolver for OneGateway {
    fn resolve(&self, _: IpAddr, _: IpAddr) -> Result<GreNextHop, String> {
        Ok(GreNextHop {
            port: 0,
            vlan: None,
            mac: DpMac([2, 0, 0, 0, 0, 1]),
            mtu: 1500,
        })
    }
}

/// A step of a test: a random batch, or one aimed at an object the configuration has (the
/// `index`-th SAP or service), which random batches seldom hit.
#[derive(Debug, Clone)]
enum Step {
    Batch(Vec<Edit>),
    /// Shut the SAP down or bring it up.
    ToggleSap(usize),
    /// Give the SAP another QoS policy in a direction, or none.
    SapQos(usize, Direction, Option<u32>),
    /// Remove the SAP (and its IP interface).
    RemoveSap(usize),
    /// Shut the service down or bring it up.
    ToggleService(usize),
}

fn step() -> impl Strategy<Value = Step> {
    let dir = prop_oneof![Just(Direction::Ingress), Just(Direction::Egress)];
    prop_oneof![
        4 => batch().prop_map(Step::Batch),
        2 => removal().prop_map(Step::Batch),
        2 => any::<usize>().prop_map(Step::ToggleSap),
        2 => (any::<usize>(), dir, proptest::option::of(1u32..3))
            .prop_map(|(i, dir, id)| Step::SapQos(i, dir, id)),
        1 => any::<usize>().prop_map(Step::RemoveSap),
        1 => any::<usize>().prop_map(Step::ToggleService),
    ]
}

/// The edits of `step` against `config`.
fn edits(step: Step, config: &ServiceConfig) -> Vec<Edit> {
    let sap = |index: usize| {
        let count = config.sap_count();
        let (id, sap) = config.saps().nth(index % count.max(1))?;
        Some((
            SapPath {
                service: sap.service,
                interface: sap.interface.clone(),
                sap: id.clone(),
            },
            sap.admin,
        ))
    };
    let set = |path: SapPath, setting| Edit::Sap {
        path,
        op: SapOp::Set(setting),
    };
    match step {
        Step::Batch(edits) => edits,
        Step::ToggleSap(index) => sap(index)
            .map(|(path, admin)| {
                let admin = match admin {
                    AdminState::Up => AdminState::Down,
                    AdminState::Down => AdminState::Up,
                };
                vec![set(path, SapSetting::Admin(admin))]
            })
            .unwrap_or_default(),
        Step::SapQos(index, dir, id) => sap(index)
            .map(|(path, _)| vec![set(path, SapSetting::Qos(dir, id))])
            .unwrap_or_default(),
        Step::RemoveSap(index) => sap(index)
            .map(|(path, _)| sap_removal(path))
            .unwrap_or_default(),
        Step::ToggleService(index) => {
            let count = config.services().count();
            config
                .services()
                .nth(index % count.max(1))
                .map(|(id, service)| {
                    let admin = match service.admin {
                        AdminState::Up => AdminState::Down,
                        AdminState::Down => AdminState::Up,
                    };
                    vec![Edit::Service {
                        id,
                        kind: service.kind(),
                        op: ServiceOp::Set(ServiceSetting::Admin(admin)),
                    }]
                })
                .unwrap_or_default()
        }
    }
}

/// `builder` holds every spec of `plane`.
fn holds_its_plane(builder: &ServiceTablesBuilder, plane: &Plane) -> Result<(), TestCaseError> {
    for (id, spec) in plane.saps.iter() {
        prop_assert_eq!(builder.sap(id), Some(&**spec));
    }
    for (id, spec) in plane.services.iter() {
        prop_assert_eq!(builder.service(*id), Some(&**spec));
    }
    Ok(())
}

/// Two snapshots of `plane` hold the same SAPs per service.
fn same_tables(
    a: Arc<ServiceTables>,
    b: Arc<ServiceTables>,
    plane: &Plane,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.sap_ids(), b.sap_ids());
    prop_assert_eq!(a.service_count(), b.service_count());
    for id in plane.services.keys() {
        prop_assert_eq!(a.saps_of(*id), b.saps_of(*id));
    }
    Ok(())
}

/// Both compilers' builders hold the specs of their planes, and the snapshots hold the same
/// SAPs per service.
fn same_builders(full: &mut Compiled, incremental: &mut Compiled) -> Result<(), TestCaseError> {
    holds_its_plane(&full.builder, &full.plane)?;
    holds_its_plane(&incremental.builder, &incremental.plane)?;
    same_tables(full.tables(), incremental.tables(), &full.plane)
}

/// A compiler that staged transactions in place has `reference`'s plane and policer ids, its
/// builder holds the plane's specs, and its snapshot the SAPs per service `reference`'s does.
fn same_staged_builder(
    staged: &mut Compiler,
    reference: &mut Compiled,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(&staged.plane, &reference.plane);
    prop_assert_eq!(&staged.policer_ids, &reference.policer_ids);
    holds_its_plane(&staged.builder, &staged.plane)?;
    same_tables(staged.build(), reference.tables(), &reference.plane)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn a_transaction_compiles_to_what_the_whole_configuration_compiles_to(
        kinds in kinds(),
        steps in proptest::collection::vec(step(), 1..100),
    ) {
        let env = env();
        // eth0..eth3 are ports 0..3; each TAP gets the next port the first time it is named.
        let taps = RefCell::new(BTreeMap::<String, PortId>::new());
        let ports = |name: &str| -> Option<PortId> {
            if let Some(n) = name.strip_prefix("eth") {
                return n.parse().ok();
            }
            let mut taps = taps.borrow_mut();
            let next = 16 + taps.len() as PortId;
            Some(*taps.entry(name.to_string()).or_insert(next))
        };
        let mut config = ServiceConfig::new();
        let mut full = Compiler::new();
        let mut incremental = Compiler::new();
        // Transactions staged in place, "installed" (a new base) every few of them.
        let mut staged = Compiler::new();
        let mut base = staged.clone();
        let mut applied = 0;
        let steps = std::iter::once(None).chain(steps.into_iter().map(Some));
        for step in steps {
            let changes: Vec<Change> = match step {
                None => preamble(&kinds),
                Some(step) => edits(step, &config).into_iter().map(Change::api).collect(),
            };
            let Ok(txn) = config.prepare(&changes, &env) else {
                continue;
            };
            let a = full.prepare(txn.config(), &env, &ports, &OneGateway);
            let b = incremental.prepare_transaction(&config, &txn, &env, &ports, &OneGateway);
            let c = staged.stage_transaction(&config, &txn, &env, &ports, &OneGateway, &base);
            match (&b, c) {
                (Ok(_), Ok(())) => {}
                (Err(b), Err(StageError::Refused(c))) => {
                    prop_assert_eq!(b, &c);
                    prop_assert_eq!(&staged.plane, &incremental.plane);
                }
                (b, c) => prop_assert!(false, "incremental: {:?}, staged: {:?}", b.as_ref().err(), c.err()),
            }
            match (a, b) {
                (Ok(mut a), Ok(mut b)) => {
                    prop_assert_eq!(&a.plane, &b.plane);
                    prop_assert_eq!(&a.policer_ids, &b.policer_ids);
                    same_builders(&mut a, &mut b)?;
                    same_staged_builder(&mut staged, &mut b)?;
                    if applied % 3 == 0 {
                        base = staged.clone();
                    }
                    full.commit(a);
                    incremental.commit(b);
                    config.commit(txn).unwrap();
                    applied += 1;
                }
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                (a, b) => prop_assert!(
                    false,
                    "full: {:?}, incremental: {:?}",
                    a.err(),
                    b.err()
                ),
            }
        }
        // The preamble at least: the compilers were compared on something.
        prop_assert!(applied > 0);
    }
}

/// `ethN` is port N.
fn eth_port(name: &str) -> Option<PortId> {
    name.strip_prefix("eth")?.parse().ok()
}

/// `text` (the service text form) prepared as a transaction against `config`.
fn text_transaction(
    config: &ServiceConfig,
    text: &str,
    env: &brasa_services::Environment,
) -> brasa_services::config::Transaction {
    let changes = brasa_services::cli::parse(text, &common::port_map()).unwrap();
    config.prepare(&changes, env).unwrap()
}

/// Tunnels to 198.51.100.99 leave by a link whose MTU (100) the data plane refuses for a GRE
/// endpoint: the environment, not the configuration, is wrong, so only the builder can tell.
struct NarrowLinkTo99;

impl GreResolver for NarrowLinkTo99 {
    fn resolve(&self, local: IpAddr, remote: IpAddr) -> Result<GreNextHop, String> {
        let hop = OneGateway.resolve(local, remote)?;
        let narrow = remote == IpAddr::from([198, 51, 100, 99]);
        Ok(GreNextHop {
            mtu: if narrow { 100 } else { hop.mtu },
            ..hop
        })
    }
}

/// A transaction staged in place that the data plane's builder refuses halfway (a second
/// Epipe over a GRE tunnel whose link the builder refuses, after the transaction's SAP removal
/// was applied) leaves the compiler as the staged transaction before it left it.
#[test]
fn a_staged_transaction_the_builder_refuses_leaves_the_staged_ones_before_it() {
    let env = env();
    let ports = eth_port;
    let transaction = |config: &ServiceConfig, text: &str| text_transaction(config, text, &env);
    let mut config = ServiceConfig::new();
    let mut staged = Compiler::new();
    let base = staged.clone();
    let first = transaction(
        &config,
        "configure service epipe 1 customer 1 create
sap eth1:5 create
exit
\
         gre-tunnel local 198.51.100.1 remote 198.51.100.2 key 7
no shutdown
exit
\
         vpls 3 customer 1 create
sap eth1:8 create
exit
sap eth1:9 create
exit
\
         no shutdown
exit all
",
    );
    staged
        .stage_transaction(&config, &first, &env, &ports, &NarrowLinkTo99, &base)
        .unwrap();
    config.commit(first).unwrap();
    let before = staged.plane.clone();
    let narrow_link = transaction(
        &config,
        "configure service vpls 3
no sap eth1:9
exit
\
         epipe 2 customer 1 create
sap eth1:6 create
exit
\
         gre-tunnel local 198.51.100.1 remote 198.51.100.99 key 7
no shutdown
exit all
",
    );
    let refused =
        staged.stage_transaction(&config, &narrow_link, &env, &ports, &NarrowLinkTo99, &base);
    assert!(
        matches!(
            refused,
            Err(StageError::Refused(CompileError::Refused(
                ServiceError::Gre(_)
            )))
        ),
        "{refused:?}"
    );
    assert_eq!(staged.plane, before);
    for (id, spec) in staged.plane.saps.iter() {
        assert_eq!(staged.builder.sap(id), Some(&**spec));
    }
    let tables = staged.build();
    assert_eq!(tables.sap_ids().len(), 3);
}

/// The configuration `text` creates from nothing, and a compiler that compiled it.
fn committed(text: &str, gre: &dyn GreResolver) -> (ServiceConfig, Compiler) {
    let env = env();
    let mut config = ServiceConfig::new();
    let mut compiler = Compiler::new();
    let first = text_transaction(&config, text, &env);
    let compiled = compiler
        .prepare_transaction(&config, &first, &env, &eth_port, gre)
        .unwrap();
    compiler.commit(compiled);
    config.commit(first).unwrap();
    (config, compiler)
}

/// `txn` staged in place onto `incremental`, prepared at once from it, and the whole
/// configuration it leads to compiled afresh: the three must agree. Returns the staged one.
fn compiled_three_ways(
    incremental: &Compiler,
    running: &ServiceConfig,
    txn: &Transaction,
    gre: &dyn GreResolver,
) -> Compiler {
    let env = env();
    let ports = eth_port;
    let mut staged = incremental.clone();
    let base = staged.clone();
    staged
        .stage_transaction(running, txn, &env, &ports, gre, &base)
        .unwrap();
    let mut at_once = incremental
        .prepare_transaction(running, txn, &env, &ports, gre)
        .unwrap();
    let mut whole = Compiler::new()
        .prepare(txn.config(), &env, &ports, gre)
        .unwrap();
    assert_eq!(at_once.plane, whole.plane);
    same_builders(&mut whole, &mut at_once).unwrap();
    same_staged_builder(&mut staged, &mut at_once).unwrap();
    staged
}

/// A GRE tunnel handed from one Epipe to another in one transaction (released by the higher
/// service id, taken by the lower, so key order alone would set the taker first) compiles,
/// staged or installed at once, to what the whole configuration compiles to.
#[test]
fn a_gre_tunnel_moves_to_another_epipe_in_one_transaction() {
    let env = env();
    let transaction = |config: &ServiceConfig, text: &str| text_transaction(config, text, &env);
    let (config, incremental) = committed(
        "configure service epipe 1 customer 1 create
sap eth1:5 create
exit
no shutdown
exit
\
         epipe 2 customer 1 create
sap eth1:6 create
exit
\
         gre-tunnel local 198.51.100.1 remote 198.51.100.2 key 7
no shutdown
exit all
",
        &OneGateway,
    );
    for (released_by, takes_another) in [
        ("no gre-tunnel", false),
        ("gre-tunnel local 198.51.100.1 remote 198.51.100.3", true),
    ] {
        let handed_over = transaction(
            &config,
            &format!(
                "configure service epipe 2
{released_by}
exit
\
                 epipe 1 gre-tunnel local 198.51.100.1 remote 198.51.100.2 key 7
exit all
"
            ),
        );
        let staged = compiled_three_ways(&incremental, &config, &handed_over, &OneGateway);
        let gre_of = |id| match staged.builder.service(id) {
            Some(ServiceSpec::Epipe(epipe)) => epipe.gre.map(|g| (g.remote, g.key)),
            other => panic!("{other:?}"),
        };
        let to = |last| IpAddr::from([198, 51, 100, last]);
        assert_eq!(gre_of(1), Some((to(2), Some(7))));
        assert_eq!(gre_of(2), takes_another.then_some((to(3), None)));
    }
}

/// A SAP moved to another service in one transaction (`no sap` in one, `sap … create` in the
/// other, the old service removed or not) compiles, staged or installed at once, to what the
/// whole configuration compiles to.
#[test]
fn a_sap_moves_to_another_service_in_one_transaction() {
    let env = env();
    let transaction = |config: &ServiceConfig, text: &str| text_transaction(config, text, &env);
    for also_remove_the_old_service in [false, true] {
        let (config, incremental) = committed(
            "configure service epipe 1 customer 1 create
\
             sap eth1:5 create
exit
sap eth1:6 create
exit
no shutdown
exit all
",
            &NoGre,
        );
        let removal = if also_remove_the_old_service {
            "configure service epipe 1
no sap eth1:5
no sap eth1:6
shutdown
exit
no epipe 1
"
        } else {
            "configure service epipe 1
no sap eth1:6
exit
"
        };
        let moved = transaction(
            &config,
            &format!(
                "{removal}epipe 2 customer 1 create
sap eth1:6 create
exit
\
                 sap eth1:7 create
exit
no shutdown
exit all
"
            ),
        );
        let mut staged = compiled_three_ways(&incremental, &config, &moved, &NoGre);
        let tables = staged.build();
        let expected = if also_remove_the_old_service { 2 } else { 3 };
        assert_eq!(tables.sap_ids().len(), expected);
    }
}
