//! Leadership and fencing on a real PostgreSQL: two nodes over one database, the lease taken
//! only once expired, and an old holder's commits refused once another node took over (also
//! when it was paused inside a commit transaction).

use std::time::{Duration, Instant};

use brasa_subscriber::{
    ChangeSet, IndexConfig, Login, NameCase, StoreError, SubscriberIndex, SubscriberStore,
};
use brasa_subscriber_pg::lease::{Fence, LeaseAnswer, PgLease};
use brasa_subscriber_pg::PgStore;
use brasa_testkit::postgres::PgInstance;

const LEASE: Duration = Duration::from_millis(800);
const LIMIT: Duration = Duration::from_secs(20);

fn login(idx: &mut SubscriberIndex, name: &str) -> ChangeSet {
    idx.login(Login {
        name: name.into(),
        ..Login::default()
    })
    .unwrap()
}

fn index() -> SubscriberIndex {
    SubscriberIndex::new(IndexConfig {
        domains: vec!["subscribers".into()],
        name_case: NameCase::Sensitive,
    })
    .unwrap()
}

/// Tries to take the lease until it is free (the previous one expired by the database's clock).
fn take_over(lease: &mut PgLease) -> u64 {
    let deadline = Instant::now() + LIMIT;
    loop {
        match lease.acquire(LEASE).unwrap() {
            LeaseAnswer::Held(token) => return token,
            other => assert!(Instant::now() < deadline, "never free: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn names(store: &mut PgStore) -> Vec<String> {
    let mut v: Vec<String> = store
        .load()
        .unwrap()
        .subscribers
        .into_iter()
        .map(|s| s.name.as_str().to_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn only_the_current_token_commits_and_an_old_holder_is_fenced() {
    let pg = PgInstance::start().unwrap();
    let url = pg.url();
    let mut idx = index();

    let mut lease_a = PgLease::connect(&url, "sm-a").unwrap();
    let mut lease_b = PgLease::connect(&url, "sm-b").unwrap();
    let fence_a = Fence::default();
    let fence_b = Fence::default();
    let mut store_a = PgStore::connect(&url)
        .unwrap()
        .with_fence(fence_a.clone(), LEASE)
        .unwrap();
    let mut store_b = PgStore::connect(&url)
        .unwrap()
        .with_fence(fence_b.clone(), LEASE)
        .unwrap();

    // No token: a standby commits nothing.
    let err = store_a.apply(&login(&mut idx, "early")).unwrap_err();
    assert!(matches!(err, StoreError::Fenced(_)), "{err}");

    let LeaseAnswer::Held(t1) = lease_a.acquire(LEASE).unwrap() else {
        panic!("the first node takes a free lease");
    };
    fence_a.set(Some(t1));
    assert_eq!(
        lease_b.acquire(LEASE).unwrap(),
        LeaseAnswer::HeldBy {
            holder: "sm-a".into(),
            token: t1
        }
    );
    store_a.apply(&login(&mut idx, "a1")).unwrap();
    assert_eq!(lease_a.renew(t1, LEASE).unwrap(), LeaseAnswer::Held(t1));

    // sm-a stops renewing (paused): sm-b takes over once the lease expires.
    let t2 = take_over(&mut lease_b);
    assert!(t2 > t1, "every take-over raises the token");
    fence_b.set(Some(t2));
    let status = lease_b.status().unwrap();
    assert_eq!((status.holder.as_str(), status.token), ("sm-b", t2));

    // sm-a wakes up believing it is active: its commit and its renewal are refused.
    let err = store_a
        .apply(&login(&mut idx, "a2-after-losing"))
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced(_)), "{err}");
    assert_eq!(lease_a.renew(t1, LEASE).unwrap(), LeaseAnswer::Lost);
    store_b.apply(&login(&mut idx, "b1")).unwrap();
    assert_eq!(names(&mut store_b), ["a1", "b1"]);
}

#[test]
fn a_holder_paused_inside_a_commit_cannot_hold_up_or_outlive_a_take_over() {
    let pg = PgInstance::start().unwrap();
    let url = pg.url();
    let mut lease_a = PgLease::connect(&url, "sm-a").unwrap();
    let mut lease_b = PgLease::connect(&url, "sm-b").unwrap();
    let LeaseAnswer::Held(t1) = lease_a.acquire(LEASE).unwrap() else {
        panic!("free lease");
    };
    // What sm-a's store does in a commit, stopped between the fencing check and COMMIT.
    let mut paused = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    paused
        .batch_execute(&format!(
            "SET idle_in_transaction_session_timeout = {}",
            LEASE.as_millis()
        ))
        .unwrap();
    let mut txn = paused.transaction().unwrap();
    let locked = txn
        .query_opt(
            "SELECT 1 FROM sm_lease WHERE id = 1 AND token = $1 AND expires_at > clock_timestamp() FOR SHARE",
            &[&(t1 as i64)],
        )
        .unwrap();
    assert!(locked.is_some());
    txn.execute(
        "INSERT INTO sm_subscribers (name, data) VALUES ('zombie', '{}')",
        &[],
    )
    .unwrap();
    // sm-b takes over: it waits for the lock until the server ends the idle transaction.
    let t2 = take_over(&mut lease_b);
    assert!(t2 > t1);
    // The paused commit resumes: the server has ended its session, nothing was written.
    assert!(
        txn.commit().is_err(),
        "the fenced transaction must not commit"
    );
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT count(*) FROM sm_subscribers WHERE name = 'zombie'"
        )
        .unwrap(),
        "0"
    );
}
