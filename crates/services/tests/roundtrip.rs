//! parse(export(config)) == config, for configurations built from random batches of changes
//! (each batch either applies or is refused as a whole).

mod common;

use brasa_services::{cli, Change, ServiceConfig};
use common::env;
use common::strategies::{batch, kinds, preamble};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn export_parses_back_to_the_same_configuration(
        kinds in kinds(),
        batches in proptest::collection::vec(batch(), 1..120),
    ) {
        let env = env();
        let mut config = ServiceConfig::new();
        config.apply_changes(&preamble(&kinds), &env).unwrap();
        let mut applied = 0;
        for edits in batches {
            let changes: Vec<Change> = edits.into_iter().map(Change::api).collect();
            if config.apply_changes(&changes, &env).is_ok() {
                applied += 1;
            }
        }
        let text = cli::export(&config);
        let changes = cli::parse(&text, &Default::default())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let mut again = ServiceConfig::new();
        again
            .apply_changes(&changes, &env)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&again, &config, "{} batches applied\n{}", applied, text);
        prop_assert_eq!(cli::export(&again), text);
    }
}
