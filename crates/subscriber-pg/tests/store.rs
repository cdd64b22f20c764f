//! The store conformance suite of `brasa-subscriber` against a throw-away PostgreSQL, plus what
//! only this backend has: versioned migrations and the schema-version guard.

#[path = "../../subscriber/tests/support/store_conformance.rs"]
mod store_conformance;

use brasa_subscriber::{
    ChangeSet, IndexConfig, Login, NameCase, SubscriberIndex, SubscriberStore, DEFAULT_DOMAIN,
};
use brasa_subscriber_pg::{schema_version, PgStore, COPY_ROWS, MIGRATIONS};
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

/// `n` logins of `sub{n}` from a fresh index (so every one is a creation to it), one batch,
/// each subscriber's address offset by `shift`.
fn new_logins(names: std::ops::Range<u32>, shift: u32) -> Vec<ChangeSet> {
    let mut index = SubscriberIndex::new(IndexConfig {
        domains: vec![DEFAULT_DOMAIN.into()],
        name_case: NameCase::Sensitive,
    })
    .unwrap();
    names
        .map(|n| {
            let a = n + shift;
            index
                .login(Login {
                    name: format!("sub{n}"),
                    mappings: vec![format!("10.{}.{}.{}", a >> 16 & 255, a >> 8 & 255, a & 255)
                        .parse()
                        .unwrap()],
                    ..Login::default()
                })
                .unwrap()
        })
        .collect()
}

/// Each stored subscriber's name and first mapping, by name.
fn stored(store: &mut PgStore) -> Vec<(String, String)> {
    let mut subs: Vec<(String, String)> = store
        .load()
        .unwrap()
        .subscribers
        .iter()
        .map(|s| (s.name.to_string(), s.mappings[0].to_string()))
        .collect();
    subs.sort();
    subs
}

#[test]
fn logins_new_to_the_index_but_already_stored_replace_the_stored_records() {
    let pg = PgInstance::start().unwrap();
    let mut store = PgStore::connect(&pg.url()).unwrap();
    let big = COPY_ROWS as u32 + 100;
    // A COPY-sized batch of new subscribers goes straight into the table.
    store.apply_batch(&new_logins(0..big, 0)).unwrap();
    let first = stored(&mut store);
    assert_eq!(first.len(), big as usize);
    assert_eq!(first[0], ("sub0".to_owned(), "10.0.0.0".to_owned()));
    // An index that did not know them (as after a commit whose outcome was lost) calls the
    // same names new again, with other addresses, among names that are new indeed: every
    // record ends as the second batch wrote it, and the change log names every key once more.
    let head = |store: &mut PgStore| -> i64 {
        store
            .client()
            .query_one("SELECT seq FROM sm_change_head", &[])
            .unwrap()
            .get(0)
    };
    let before = head(&mut store);
    store
        .apply_batch(&new_logins(100..big + 100, 1_000_000))
        .unwrap();
    assert_eq!(
        head(&mut store),
        before + 1,
        "one entry for the retried commit"
    );
    let logged: i32 = store
        .client()
        .query_one(
            "SELECT cardinality(subscribers) FROM sm_changes ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(logged, big as i32);
    let second = stored(&mut store);
    assert_eq!(second.len(), big as usize + 100);
    let sub = |n: u32| {
        second
            .iter()
            .find(|(name, _)| *name == format!("sub{n}"))
            .cloned()
    };
    assert_eq!(sub(99).unwrap().1, "10.0.0.99", "untouched");
    let a = 100 + 1_000_000u32;
    assert_eq!(
        sub(100).unwrap().1,
        format!("10.{}.{}.{}", a >> 16 & 255, a >> 8 & 255, a & 255),
        "replaced"
    );
}

#[test]
fn records_written_as_jsonb_by_schema_5_read_back_after_the_move_to_json() {
    let pg = PgInstance::start().unwrap();
    // A database as a brasa of schema 5 left it, with a subscriber, a VPN and its services.
    let mut sql = String::from(
        "CREATE TABLE brasa_sm_schema (version integer PRIMARY KEY, name text NOT NULL, \
         applied_at timestamptz NOT NULL DEFAULT now());",
    );
    for m in MIGRATIONS.iter().filter(|m| m.version <= 5) {
        sql.push_str(m.sql);
        sql.push_str(&format!(
            "INSERT INTO brasa_sm_schema (version, name) VALUES ({}, 'v{}');",
            m.version, m.version
        ));
    }
    let mut store = PgStore::connect(&pg.url()).unwrap();
    let mut written = new_logins(0..3, 0);
    store.apply_batch(&written).unwrap();
    let rows = pg
        .psql(
            "postgres",
            "SELECT string_agg(format('(%L, %L)', name, data), ',' ORDER BY name) FROM sm_subscribers",
        )
        .unwrap();
    drop(store);
    pg.psql(
        "postgres",
        &format!(
            "DROP TABLE sm_vpns, sm_subscribers, sm_leg_routes, sm_lease, sm_nodes, sm_change_head, \
             sm_changes, brasa_sm_schema; {sql} INSERT INTO sm_subscribers VALUES {rows};"
        ),
    )
    .unwrap();
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'sm_subscribers'::regclass AND attname = 'data'"
        )
        .unwrap(),
        "jsonb"
    );
    // The next connect moves the records to json and reads them back unchanged.
    let mut store = PgStore::connect(&pg.url()).unwrap();
    assert_eq!(
        schema_version(store.client()).unwrap(),
        MIGRATIONS.last().unwrap().version
    );
    let mut loaded = store.load().unwrap().subscribers;
    loaded.sort_by(|a, b| a.name.cmp(&b.name));
    let expected: Vec<_> = written
        .iter_mut()
        .flat_map(|c| c.subscribers.drain(..))
        .filter_map(|c| c.new)
        .collect();
    assert_eq!(loaded, expected);
}
