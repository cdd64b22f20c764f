//! The change log on a real PostgreSQL: a follower's replica tracks every commit (logins,
//! logouts, removals, VPNs, a COPY-sized batch) without reading the tables in full, a pruned
//! log makes it reload in full and still end identical, and a refused (fenced) commit leaves
//! no entry.

use std::time::Duration;

use brasa_subscriber::{
    ChangeSet, IndexConfig, Login, NameCase, Snapshot, StoreError, SubscriberIndex,
    SubscriberStore, Vpn, VpnKind,
};
use brasa_subscriber_pg::change_log::{self, CatchUp, Follower, Reload};
use brasa_subscriber_pg::lease::{Fence, LeaseAnswer, PgLease};
use brasa_subscriber_pg::{PgStore, COPY_ROWS};
use brasa_testkit::postgres::PgInstance;

fn index() -> SubscriberIndex {
    SubscriberIndex::new(IndexConfig {
        domains: vec!["subscribers".into()],
        name_case: NameCase::Sensitive,
    })
    .unwrap()
}

fn login(idx: &mut SubscriberIndex, n: u32) -> ChangeSet {
    idx.login(Login {
        name: format!("sub{n}"),
        mappings: vec![format!("10.{}.{}.{}", n >> 16 & 255, n >> 8 & 255, n & 255)
            .parse()
            .unwrap()],
        ..Login::default()
    })
    .unwrap()
}

/// A snapshot in a canonical order, to compare two of them.
fn sorted(mut s: Snapshot) -> Snapshot {
    s.vpns.sort_by(|a, b| a.name.cmp(&b.name));
    s.subscribers.sort_by(|a, b| a.name.cmp(&b.name));
    s.routes.sort_by_key(|r| format!("{:?}", r.key));
    s
}

fn replica_of(follower: &Follower) -> Snapshot {
    sorted(follower.replica().expect("loaded").clone().into_snapshot())
}

fn head(store: &mut PgStore) -> u64 {
    change_log::head(store.client()).unwrap()
}

#[test]
fn a_follower_applies_logins_logouts_and_removals_without_reading_the_tables_again() {
    let pg = PgInstance::start().unwrap();
    let url = pg.url();
    let mut writer = PgStore::connect(&url).unwrap();
    let mut idx = index();
    let vpn = idx
        .add_vpn(Vpn {
            name: "vpn1".into(),
            domain: "subscribers".into(),
            kind: VpnKind::Vlan(7),
        })
        .unwrap();
    writer.apply(&vpn).unwrap();
    let first: Vec<ChangeSet> = (0..100).map(|n| login(&mut idx, n)).collect();
    writer.apply_batch(&first).unwrap();

    let mut follower = Follower::new(&url);
    assert_eq!(
        follower.catch_up().unwrap(),
        CatchUp::Reloaded(Reload::Initial)
    );
    assert_eq!(follower.replica().unwrap().position(), head(&mut writer));
    assert_eq!(replica_of(&follower), sorted(writer.load().unwrap()));
    assert_eq!(follower.catch_up().unwrap(), CatchUp::Unchanged);

    // Every kind of change, one commit each, and one batch large enough for COPY.
    let before = head(&mut writer);
    writer.apply(&login(&mut idx, 100)).unwrap();
    writer.apply(&idx.logout("sub3", None).unwrap()).unwrap();
    writer.apply(&idx.remove("sub4").unwrap()).unwrap();
    writer.apply(&login(&mut idx, 5)).unwrap(); // replaces sub5's record
    let big: Vec<ChangeSet> = (1000..1000 + COPY_ROWS as u32 + 10)
        .map(|n| login(&mut idx, n))
        .collect();
    writer.apply_batch(&big).unwrap();
    let other = idx
        .add_vpn(Vpn {
            name: "vpn2".into(),
            domain: "subscribers".into(),
            kind: VpnKind::Vlan(8),
        })
        .unwrap();
    writer.apply(&other).unwrap();
    writer.apply(&idx.remove_vpn("vpn2").unwrap()).unwrap();
    let after = head(&mut writer);
    assert_eq!(after - before, 7, "one log entry per commit");

    let outcome = follower.catch_up().unwrap();
    let CatchUp::Applied { batches, records } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(batches, 7);
    // sub100, sub3, sub4, sub5, the big batch, vpn2 (twice, read once).
    assert_eq!(records, 4 + COPY_ROWS + 10 + 1);
    assert_eq!(follower.replica().unwrap().position(), after);
    assert_eq!(replica_of(&follower), sorted(writer.load().unwrap()));
    assert_eq!(follower.counters().full_loads, 1, "no second full read");
    assert_eq!(follower.counters().applied_batches, 7);

    // Promotion: the tail, then the replica is handed over.
    writer.apply(&login(&mut idx, 101)).unwrap();
    let promotion = follower.promote().unwrap();
    assert_eq!(promotion.reload, None);
    assert_eq!(promotion.tail_batches, 1);
    assert_eq!(promotion.position, head(&mut writer));
    assert_eq!(sorted(promotion.snapshot), sorted(writer.load().unwrap()));
    assert!(follower.replica().is_none());
    assert_eq!(follower.counters().full_loads, 1);
    // Back to following (a step-down): the replica is read again.
    assert_eq!(
        follower.catch_up().unwrap(),
        CatchUp::Reloaded(Reload::Initial)
    );
}

#[test]
fn a_pruned_log_makes_the_follower_reload_in_full_and_end_identical() {
    let pg = PgInstance::start().unwrap();
    let url = pg.url();
    let mut writer = PgStore::connect(&url).unwrap().with_change_log_retention(5);
    let mut idx = index();
    writer.apply(&login(&mut idx, 0)).unwrap();
    let mut follower = Follower::new(&url);
    follower.catch_up().unwrap();
    let position = follower.replica().unwrap().position();

    for n in 1..=20 {
        writer.apply(&login(&mut idx, n)).unwrap();
        if n % 3 == 0 {
            writer
                .apply(&idx.logout(&format!("sub{}", n - 1), None).unwrap())
                .unwrap();
        }
    }
    let kept = pg
        .psql("postgres", "SELECT count(*) FROM sm_changes")
        .unwrap();
    assert_eq!(kept, "5", "the log keeps the last 5 entries");

    let outcome = follower.catch_up().unwrap();
    assert!(
        matches!(outcome, CatchUp::Reloaded(Reload::Truncated { position: p, oldest }) if p == position && oldest > position + 1),
        "{outcome:?}"
    );
    assert_eq!(follower.counters().full_loads, 2);
    assert_eq!(replica_of(&follower), sorted(writer.load().unwrap()));
    assert_eq!(follower.replica().unwrap().position(), head(&mut writer));

    // An operator empties the log: the same.
    writer.apply(&login(&mut idx, 21)).unwrap();
    pg.psql("postgres", "DELETE FROM sm_changes").unwrap();
    let outcome = follower.catch_up().unwrap();
    assert!(
        matches!(outcome, CatchUp::Reloaded(Reload::Truncated { .. })),
        "{outcome:?}"
    );
    assert_eq!(replica_of(&follower), sorted(writer.load().unwrap()));
}

#[test]
fn an_entry_carries_its_fencing_token_and_a_refused_commit_leaves_none() {
    const LEASE: Duration = Duration::from_secs(5);
    let pg = PgInstance::start().unwrap();
    let url = pg.url();
    let fence = Fence::default();
    let mut store = PgStore::connect(&url)
        .unwrap()
        .with_fence(fence.clone(), LEASE)
        .unwrap();
    let mut idx = index();
    let err = store.apply(&login(&mut idx, 1)).unwrap_err();
    assert!(matches!(err, StoreError::Fenced(_)), "{err}");
    assert_eq!(head(&mut store), 0, "a refused commit takes no number");

    let mut lease = PgLease::connect(&url, "sm-a").unwrap();
    let LeaseAnswer::Held(token) = lease.acquire(LEASE).unwrap() else {
        panic!("free lease");
    };
    fence.set(Some(token));
    store.apply(&login(&mut idx, 2)).unwrap();
    assert_eq!(head(&mut store), 1);
    let row = pg
        .psql("postgres", "SELECT seq, token, subscribers FROM sm_changes")
        .unwrap();
    assert_eq!(row, format!("1|{token}|{{sub2}}"));
}
