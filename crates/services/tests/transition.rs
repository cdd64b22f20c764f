//! `cli::transition`: the compacted journal's text, applied to the base configuration, gives
//! the running one — for random pairs of configurations where one grew from the other by
//! additions and removals, in both directions.

mod common;

use brasa_services::{cli, Change, ServiceConfig};
use common::strategies::{batch, kinds, preamble, removal};
use common::{apply, env, port_map};
use proptest::prelude::*;

fn grown(mut config: ServiceConfig, batches: Vec<Vec<brasa_services::Edit>>) -> ServiceConfig {
    let env = env();
    for edits in batches {
        let changes: Vec<Change> = edits.into_iter().map(Change::api).collect();
        let _ = config.apply_changes(&changes, &env);
    }
    config
}

fn replayed(base: &ServiceConfig, texts: &[String]) -> ServiceConfig {
    let mut config = base.clone();
    for text in texts {
        apply(&mut config, text);
    }
    config
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_transition_applied_to_the_base_gives_the_target(
        kinds in kinds(),
        before in proptest::collection::vec(batch(), 0..60),
        after in proptest::collection::vec(prop_oneof![batch(), removal()], 1..60),
    ) {
        let env = env();
        let mut base = ServiceConfig::new();
        base.apply_changes(&preamble(&kinds), &env).unwrap();
        let base = grown(base, before);
        let target = grown(base.clone(), after);
        for (from, to) in [(&base, &target), (&target, &base)] {
            let texts = cli::compact(from, to, &env, &port_map())
                .map_err(|e| TestCaseError::fail(format!("{e}\n{}", cli::transition(from, to).join("\n"))))?;
            prop_assert_eq!(&replayed(from, &texts), to);
            prop_assert_eq!(texts.is_empty(), from == to);
        }
    }
}

#[test]
fn unchanged_objects_are_not_mentioned_and_changed_ones_are_recreated_whole() {
    let mut base = ServiceConfig::new();
    apply(
        &mut base,
        "configure service
            epipe 1 customer 1 create
                sap eth1:10 create
                exit
                sap eth2:10.20 create
                exit
                no shutdown
            exit
            vpls 2 customer 1 create
                sap eth1:20 create
                exit
                no shutdown
            exit
        exit",
    );
    let mut running = base.clone();
    apply(
        &mut running,
        "configure
            filter
            ip-filter 7 create
                entry 1 create
                    match protocol tcp
                        dst-port eq 23
                    exit
                    action drop
                exit
            exit
            exit
            service
                vpls 2
                    sap eth1:21 create
                        ingress
                            filter ip 7
                        exit
                    exit
                exit
                epipe 3 customer 1 create
                    sap eth1:30 create
                    exit
                exit
            exit
        exit",
    );
    let texts = cli::compact(&base, &running, &env(), &port_map()).unwrap();
    // The filter and the VPLS whose SAP uses it are one group; the new Epipe another.
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert!(
        texts.iter().all(|text| !text.contains("epipe 1")),
        "{texts:#?}"
    );
    assert!(texts[0].contains("no vpls 2") && texts[0].contains("ip-filter 7 create"));
    assert!(texts[1].contains("epipe 3 customer 1 create"));
    assert_eq!(replayed(&base, &texts), running);
    assert!(cli::transition(&running, &running).is_empty());
}
