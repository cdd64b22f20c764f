//! The store conformance suite of `brasa-subscriber` against a throw-away PostgreSQL, plus what
//! only this backend has: versioned migrations and the schema-version guard.

#[path = "../../subscriber/tests/support/store_conformance.rs"]
mod store_conformance;

use brasa_subscriber::SubscriberStore;
use brasa_subscriber_pg::{schema_version, PgStore, MIGRATIONS};
use brasa_testkit::postgres::PgInstance;

fn opener(url: String) -> impl FnMut() -> Box<dyn SubscriberStore> {
    move || Box::new(PgStore::connect(&url).unwrap())
}

#[test]
fn conformance_on_postgres() {
    let pg = PgInstance::start().unwrap();
    // Each function on a database of its own, as a fresh store.
    store_conformance::restores_every_subscriber_vpn_and_mapping(&mut opener(
        pg.create_database("a").unwrap(),
    ));
    store_conformance::one_batch_keeps_the_last_write_of_each_key_whatever_its_size(&mut opener(
        pg.create_database("b").unwrap(),
    ));
    store_conformance::learnt_routes_are_stored_replaced_and_deleted(&mut opener(
        pg.create_database("c").unwrap(),
    ));
}

#[test]
fn migrations_run_once_and_a_newer_schema_is_refused() {
    let pg = PgInstance::start().unwrap();
    let url = pg.url();
    let newest = MIGRATIONS.last().unwrap().version;
    let mut store = PgStore::connect(&url).unwrap();
    assert_eq!(schema_version(store.client()).unwrap(), newest);
    drop(store);
    // A second connect finds every migration applied and applies none again.
    let mut store = PgStore::connect(&url).unwrap();
    let applied = pg
        .psql("postgres", "SELECT count(*) FROM brasa_sm_schema")
        .unwrap();
    assert_eq!(applied, MIGRATIONS.len().to_string());
    assert!(store.load().unwrap().is_empty());
    drop(store);
    // The records are plain SQL for operators.
    pg.psql(
        "postgres",
        &format!(
            "INSERT INTO brasa_sm_schema (version, name) VALUES ({}, 'from the future')",
            newest + 1
        ),
    )
    .unwrap();
    let err = PgStore::connect(&url)
        .err()
        .expect("a newer schema is refused");
    let text = err.to_string();
    assert!(
        text.contains(&format!("schema is version {}", newest + 1)),
        "{text}"
    );
}

#[test]
fn a_subscriber_record_holds_services_only_as_a_list() {
    let pg = PgInstance::start().unwrap();
    let store = PgStore::connect(&pg.url()).unwrap();
    drop(store);
    let insert = |services: &str| {
        pg.psql(
            "postgres",
            &format!(
                "INSERT INTO sm_subscribers VALUES ('s', '{{\"name\":\"s\",\"services\":{services}}}')"
            ),
        )
    };
    let refused = insert("{}").expect_err("an object is not a list of services");
    assert!(
        refused
            .to_string()
            .contains("sm_subscribers_services_are_a_list"),
        "{refused}"
    );
    insert("[]").unwrap();
}

#[test]
fn a_connect_to_a_server_that_is_not_there_fails_with_the_reason() {
    let pg = PgInstance::start().unwrap();
    let url = pg.url();
    drop(pg);
    let err = PgStore::connect(&url).err().expect("no server");
    assert!(err.to_string().starts_with("PostgreSQL: "), "{err}");
}
