//! The change log on a real PostgreSQL: a follower's index tracks every commit (logins,
//! mappings moving between subscribers, logouts, removals, VPNs, a COPY-sized batch) without
//! reading the tables in full and equals an index built from a full read, a pruned log makes
//! it reload in full and still end identical, and a refused (fenced) commit leaves no entry.

use std::net::IpAddr;
use std::time::Duration;

use brasa_subscriber::{
    ChangeSet, IndexConfig, Login, NameCase, Prefix, StoreError, Subscriber, SubscriberIndex,
    SubscriberStore, Vpn, VpnKind,
};
use brasa_subscriber_pg::change_log::{self, CatchUp, Follower, Reload};
use brasa_subscriber_pg::lease::{Fence, LeaseAnswer, PgLease};
use brasa_subscriber_pg::{PgStore, COPY_ROWS};
use brasa_testkit::postgres::PgInstance;

fn config() -> IndexConfig {
    IndexConfig {
        domains: vec!["subscribers".into()],
        name_case: NameCase::Sensitive,
    }
}

fn index() -> SubscriberIndex {
    SubscriberIndex::new(config()).unwrap()
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

/// What an index answers, in a canonical order: every subscriber and VPN, and the owner of
/// every mapping's address.
fn contents(index: &SubscriberIndex) -> (Vec<Subscriber>, Vec<Vpn>, Vec<Option<String>>) {
    let mut subscribers: Vec<Subscriber> = index.iter().collect();
    subscribers.sort_by(|a, b| a.name.cmp(&b.name));
    let mut vpns: Vec<Vpn> = index.vpns().cloned().collect();
    vpns.sort_by(|a, b| a.name.cmp(&b.name));
    let owners = subscribers
        .iter()
        .flat_map(|s| &s.mappings)
        .map(|m| {
            let addr = match m.ip.prefixes()[0] {
                Prefix::V4(a, _) => IpAddr::V4(a),
                Prefix::V6(a, _) => IpAddr::V6(a),
            };
            let owner = index.lookup(addr, m.vpn.as_deref()).unwrap();
            owner.map(str::to_owned)
        })
        .collect();
    (subscribers, vpns, owners)
}

/// The follower's index against one built from a full read of the database.
fn assert_follows(follower: &Follower, writer: &mut PgStore) {
    let cold = writer.load().unwrap().into_index(config()).unwrap();
    let warm = follower.replica().expect("loaded").index();
    assert_eq!(contents(warm), contents(&cold));
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

    let mut follower = Follower::new(&url, config());
    assert_eq!(
        follower.catch_up().unwrap(),
        CatchUp::Reloaded(Reload::Initial)
    );
    assert_eq!(follower.replica().unwrap().position(), head(&mut writer));
    assert_follows(&follower, &mut writer);
    assert_eq!(follower.catch_up().unwrap(), CatchUp::Unchanged);

    // Every kind of change, one commit each, and one batch large enough for COPY.
    let before = head(&mut writer);
    writer.apply(&login(&mut idx, 100)).unwrap();
    writer.apply(&idx.logout("sub3", None).unwrap()).unwrap();
    writer.apply(&idx.remove("sub4").unwrap()).unwrap();
    // sub5 takes sub6's address (and a VLAN mapping): sub6 loses it, in the same commit.
    let moved = idx
        .login(Login {
            name: "sub5".into(),
            mappings: vec![
                "10.0.0.6".parse().unwrap(),
                "10.9.0.5@vpn1".parse().unwrap(),
            ],
            ..Login::default()
        })
        .unwrap();
    assert_eq!(moved.subscribers.len(), 2, "{moved:?}");
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
    writer.apply(&moved).unwrap();
    let after = head(&mut writer);
    assert_eq!(after - before, 7, "one log entry per commit");

    let outcome = follower.catch_up().unwrap();
    let CatchUp::Applied { batches, records } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(batches, 7);
    // sub100, sub3, sub4, sub5, sub6, the big batch, vpn2 (twice, read once).
    assert_eq!(records, 5 + COPY_ROWS + 10 + 1);
    assert_eq!(follower.replica().unwrap().position(), after);
    assert_follows(&follower, &mut writer);
    let warm = follower.replica().unwrap().index();
    assert!(warm.get("sub4").is_none());
    assert_eq!(
        warm.lookup("10.0.0.6".parse().unwrap(), None).unwrap(),
        Some("sub5")
    );
    assert!(warm.get("sub6").unwrap().mappings.is_empty());
    assert_eq!(follower.counters().full_loads, 1, "no second full read");
    assert_eq!(follower.counters().applied_batches, 7);

    // Promotion: the tail, then the replica is handed over.
    writer.apply(&login(&mut idx, 101)).unwrap();
    let promotion = follower.promote().unwrap();
    assert_eq!(promotion.reload, None);
    assert_eq!(promotion.tail_batches, 1);
    assert_eq!(promotion.position, head(&mut writer));
    let cold = writer.load().unwrap().into_index(config()).unwrap();
    assert_eq!(contents(&promotion.index), contents(&cold));
    assert!(promotion.index.get("sub101").is_some());
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
    let mut follower = Follower::new(&url, config());
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
    assert_follows(&follower, &mut writer);
    assert_eq!(follower.replica().unwrap().position(), head(&mut writer));

    // An operator empties the log: the same.
    writer.apply(&login(&mut idx, 21)).unwrap();
    pg.psql("postgres", "DELETE FROM sm_changes").unwrap();
    let outcome = follower.catch_up().unwrap();
    assert!(
        matches!(outcome, CatchUp::Reloaded(Reload::Truncated { .. })),
        "{outcome:?}"
    );
    assert_follows(&follower, &mut writer);
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
