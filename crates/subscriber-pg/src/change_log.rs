//! The change log that keeps standby nodes warm (schema v4), and the [`Follower`] that reads it.
//!
//! **Writing.** Every commit of a [`PgStore`] takes the next number from `sm_change_head` and
//! records in `sm_changes` that number, the fencing token it committed with (0 unfenced), the
//! database's commit time and the keys of every VPN, subscriber and BGP LEG route it wrote or
//! deleted — in the same transaction as the records and after the same fencing check, so an
//! entry exists exactly when its change does. The writer holds the head row locked until its
//! commit ends, so numbers are handed out in commit order without gaps: a snapshot that sees
//! entry `n` sees every entry before it. The same statement deletes the entry that falls out
//! of the retention (the last `retention` entries are kept).
//!
//! **Following.** A [`Follower`] keeps a [`Replica`] of the records and its *position* (the
//! last entry it reflects). [`Follower::catch_up`] reads the head; when it moved, it reads, in
//! one repeatable-read snapshot, the current rows of every key the entries after its position
//! name (a key without a row was deleted), so that the replica then equals the database at the
//! head. The log holds keys, not values: a commit writes each record once, and a follower that
//! is many entries behind reads each touched record once. When an entry it needs was pruned,
//! or the head is behind its position (a database restored from a backup), it reloads in full
//! with binary `COPY`, as a restarting node does.
//!
//! **Promotion.** [`Follower::promote`] is called once this node holds the lease (the old
//! active can no longer commit): the last catch-up reads the tail of the log, and the replica
//! becomes the [`Snapshot`] the service is activated with.

use std::collections::BTreeMap;

use brasa_subscriber::store::{decode_route, decode_subscriber, decode_vpn};
use brasa_subscriber::{LearnedRoute, Snapshot, StoreError, Subscriber, Vpn};
use postgres::types::FromSql;
use postgres::Transaction;

use crate::json::Json;
use crate::{copy_out, pg_err, PgStore, TableSql};

/// Entries of the change log kept by default: a standby further behind reloads in full. At a
/// group commit every few milliseconds, minutes of changes.
pub const DEFAULT_RETENTION: u64 = 100_000;

/// `$1` token; `$2`/`$3` VPN names written/deleted, `$4`/`$5` subscriber names, `$6`/`$7`
/// route keys; `$8` retention. One round trip: number, prune, record.
pub(crate) const LOG_CHANGE: &str = "
    WITH head AS (UPDATE sm_change_head SET seq = seq + 1 WHERE id = 1 RETURNING seq),
    pruned AS (DELETE FROM sm_changes WHERE seq <= (SELECT seq FROM head) - $8::bigint)
    INSERT INTO sm_changes (seq, token, committed_at, vpns, subscribers, routes)
    SELECT seq, $1, clock_timestamp(), $2::text[] || $3::text[], $4::text[] || $5::text[],
           $6::bytea[] || $7::bytea[]
    FROM head";

const HEAD: &str = "SELECT seq FROM sm_change_head WHERE id = 1";

/// Entries after `$1`: their count and the first one (equal to `$1 + 1` unless pruned).
const TAIL_RANGE: &str = "SELECT count(*), coalesce(min(seq), 0) FROM sm_changes WHERE seq > $1";

/// The current row of every key the entries after `$1` name; `data` is NULL for a key whose
/// record was deleted. The keys are gathered into an array first, so that the join is planned
/// as one primary-key lookup per key rather than a scan of the table.
const TAIL_VPNS: &str = "
    SELECT c.key, t.data
    FROM unnest(ARRAY(SELECT DISTINCT unnest(vpns) FROM sm_changes WHERE seq > $1)) AS c(key)
    LEFT JOIN sm_vpns t ON t.name = c.key";
const TAIL_SUBSCRIBERS: &str = "
    SELECT c.key, t.data
    FROM unnest(ARRAY(SELECT DISTINCT unnest(subscribers) FROM sm_changes WHERE seq > $1)) AS c(key)
    LEFT JOIN sm_subscribers t ON t.name = c.key";
const TAIL_ROUTES: &str = "
    SELECT c.key, t.data
    FROM unnest(ARRAY(SELECT DISTINCT unnest(routes) FROM sm_changes WHERE seq > $1)) AS c(key)
    LEFT JOIN sm_leg_routes t ON t.key = c.key";

/// The records of the database as of one entry of the change log, keyed as stored. Ordered
/// maps, so that a snapshot comes out in key order, close to the order of a full read (an
/// index rebuilt from hash order was the slowest in `sm_takeover`, see docs/performance.md).
#[derive(Debug, Clone, Default)]
pub struct Replica {
    position: u64,
    vpns: BTreeMap<String, Vpn>,
    subscribers: BTreeMap<String, Subscriber>,
    routes: BTreeMap<Vec<u8>, LearnedRoute>,
}

impl Replica {
    /// The last entry of the change log the replica reflects.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Subscribers held.
    pub fn subscribers(&self) -> usize {
        self.subscribers.len()
    }

    /// Records held (VPNs, subscribers, BGP LEG routes).
    pub fn len(&self) -> usize {
        self.vpns.len() + self.subscribers.len() + self.routes.len()
    }

    /// Whether the replica holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records, as a store's `load` returns them (in no particular order).
    pub fn into_snapshot(self) -> Snapshot {
        Snapshot {
            vpns: self.vpns.into_values().collect(),
            subscribers: self.subscribers.into_values().collect(),
            routes: self.routes.into_values().collect(),
        }
    }
}

/// What a [`Follower::catch_up`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatchUp {
    /// The head had not moved.
    Unchanged,
    /// Entries after the position were applied.
    Applied {
        /// How many entries.
        batches: u64,
        /// Records read (written or deleted since the previous position).
        records: usize,
    },
    /// The replica was read in full.
    Reloaded(Reload),
}

/// Why a follower read the records in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// It held no replica yet (start, or after it handed its replica over at a promotion).
    Initial,
    /// Entries after its position were pruned from the log (it was too far behind).
    Truncated {
        /// Its position.
        position: u64,
        /// The oldest entry after it still in the log (0: none).
        oldest: u64,
    },
    /// The log's head is behind its position (the database was replaced).
    HeadBehind {
        /// Its position.
        position: u64,
        /// The head.
        head: u64,
    },
}

impl std::fmt::Display for Reload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reload::Initial => f.write_str("no replica yet"),
            Reload::Truncated { position, oldest } => write!(
                f,
                "the change log no longer holds the entries after {position} (oldest kept {oldest})"
            ),
            Reload::HeadBehind { position, head } => write!(
                f,
                "the change log's head {head} is behind the replica's position {position}"
            ),
        }
    }
}

/// What a follower did since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FollowerCounters {
    /// Reads of every record.
    pub full_loads: u64,
    /// Change-log entries applied to the replica.
    pub applied_batches: u64,
    /// Records read for them.
    pub applied_records: u64,
}

/// The records a node that just took the lease serves from.
#[derive(Debug)]
pub struct Promotion {
    /// Every record, as of `position`.
    pub snapshot: Snapshot,
    /// The change-log entry it reflects.
    pub position: u64,
    /// `None`: the warm replica was brought up to date with this many entries; `Some`: the
    /// records were read in full, and why.
    pub reload: Option<Reload>,
    /// Entries of the tail applied at the promotion (0 after a full read).
    pub tail_batches: u64,
}

/// Keeps a [`Replica`] up to date from the change log over its own connection (blocking: run
/// it on a thread of its own).
pub struct Follower {
    url: String,
    store: Option<PgStore>,
    /// Meaningful only while `loaded`.
    replica: Replica,
    loaded: bool,
    counters: FollowerCounters,
}

impl Follower {
    /// A follower of the database at `url`; it connects (and migrates the schema) at its first
    /// catch-up, and again after a failure.
    pub fn new(url: &str) -> Follower {
        Follower {
            url: url.to_owned(),
            store: None,
            replica: Replica::default(),
            loaded: false,
            counters: FollowerCounters::default(),
        }
    }

    /// The replica, once loaded.
    pub fn replica(&self) -> Option<&Replica> {
        self.loaded.then_some(&self.replica)
    }

    /// What it did so far.
    pub fn counters(&self) -> FollowerCounters {
        self.counters
    }

    /// Brings the replica up to the head of the log (reading it in full the first time, or
    /// when the log no longer holds what it needs). A failure drops the connection (the next
    /// call reconnects) and keeps the position, so the next call reads the same entries again
    /// (applying an entry twice changes nothing: it reads current rows).
    pub fn catch_up(&mut self) -> Result<CatchUp, StoreError> {
        let store = match &mut self.store {
            Some(store) => store,
            empty => empty.insert(PgStore::connect(&self.url)?),
        };
        let tail = if self.loaded {
            apply_tail(store, &mut self.replica)
        } else {
            Ok(Err(Reload::Initial))
        };
        let outcome = match tail {
            Ok(Ok(applied)) => Ok(applied),
            Ok(Err(why)) => load(store).map(|replica| {
                self.replica = replica;
                self.loaded = true;
                CatchUp::Reloaded(why)
            }),
            Err(e) => Err(e),
        };
        match &outcome {
            Ok(CatchUp::Applied { batches, records }) => {
                self.counters.applied_batches += batches;
                self.counters.applied_records += *records as u64;
            }
            Ok(CatchUp::Reloaded(_)) => self.counters.full_loads += 1,
            Ok(CatchUp::Unchanged) => {}
            Err(_) => self.store = None,
        }
        outcome
    }

    /// Catches up one last time and hands the replica over (the follower then holds none; its
    /// next catch-up reloads in full). Call it once this node holds the lease, so that no
    /// other node can commit after the tail was read.
    pub fn promote(&mut self) -> Result<Promotion, StoreError> {
        let outcome = self.catch_up()?;
        let replica = std::mem::take(&mut self.replica);
        self.loaded = false;
        let (reload, tail_batches) = match outcome {
            CatchUp::Unchanged => (None, 0),
            CatchUp::Applied { batches, .. } => (None, batches),
            CatchUp::Reloaded(why) => (Some(why), 0),
        };
        Ok(Promotion {
            position: replica.position,
            snapshot: replica.into_snapshot(),
            reload,
            tail_batches,
        })
    }
}

/// Applies the entries after the replica's position, or says why it must be read in full.
fn apply_tail(
    store: &mut PgStore,
    replica: &mut Replica,
) -> Result<Result<CatchUp, Reload>, StoreError> {
    let position = replica.position;
    let head = head(&mut store.client)?;
    if head == position {
        return Ok(Ok(CatchUp::Unchanged));
    }
    let mut txn = snapshot_txn(&mut store.client)?;
    // The head again, in the snapshot the rows are read in (it may have moved since).
    let head = seq(txn.query_one(HEAD, &[]).map_err(pg_err)?.try_get(0))?;
    if head < position {
        return Ok(Err(Reload::HeadBehind { position, head }));
    }
    let p = i64::try_from(position).unwrap_or(i64::MAX);
    let range = txn.query_one(TAIL_RANGE, &[&p]).map_err(pg_err)?;
    let (count, oldest) = (seq(range.try_get(0))?, seq(range.try_get(1))?);
    if count != head - position || (count > 0 && oldest != position + 1) {
        return Ok(Err(Reload::Truncated { position, oldest }));
    }
    let records = apply_rows(&mut txn, TAIL_VPNS, p, &mut replica.vpns, |k, d| {
        decode_vpn(k, d)
    })? + apply_rows(
        &mut txn,
        TAIL_SUBSCRIBERS,
        p,
        &mut replica.subscribers,
        |k, d| decode_subscriber(k, d),
    )? + apply_rows(&mut txn, TAIL_ROUTES, p, &mut replica.routes, |_, d| {
        decode_route(d)
    })?;
    txn.commit().map_err(pg_err)?;
    replica.position = head;
    Ok(Ok(CatchUp::Applied {
        batches: head - position,
        records,
    }))
}

/// Reads every record and the head of the log in one snapshot.
fn load(store: &mut PgStore) -> Result<Replica, StoreError> {
    let mut txn = snapshot_txn(&mut store.client)?;
    let mut replica = Replica {
        position: seq(txn.query_one(HEAD, &[]).map_err(pg_err)?.try_get(0))?,
        ..Replica::default()
    };
    copy_into(&mut txn, &store.vpns, &mut replica.vpns, |k, d| {
        decode_vpn(k, d)
    })?;
    copy_into(
        &mut txn,
        &store.subscribers,
        &mut replica.subscribers,
        |k, d| decode_subscriber(k, d),
    )?;
    copy_into(&mut txn, &store.routes, &mut replica.routes, |_, d| {
        decode_route(d)
    })?;
    txn.commit().map_err(pg_err)?;
    Ok(replica)
}

/// Puts each row of `sql` (key, current record or NULL for a deleted one) into `map`; returns
/// the number of rows.
fn apply_rows<K, V>(
    txn: &mut Transaction<'_>,
    sql: &str,
    position: i64,
    map: &mut BTreeMap<K, V>,
    decode: impl Fn(&K, &[u8]) -> Result<V, StoreError>,
) -> Result<usize, StoreError>
where
    K: Ord + for<'a> FromSql<'a>,
{
    let rows = txn.query(sql, &[&position]).map_err(pg_err)?;
    for row in &rows {
        let key: K = row.try_get(0).map_err(pg_err)?;
        match row.try_get::<_, Option<Json<'_>>>(1).map_err(pg_err)? {
            Some(Json(data)) => {
                let value = decode(&key, data)?;
                map.insert(key, value);
            }
            None => drop(map.remove(&key)),
        }
    }
    Ok(rows.len())
}

/// Reads every row of `sql`'s table into `map`.
fn copy_into<K, V>(
    txn: &mut Transaction<'_>,
    sql: &TableSql,
    map: &mut BTreeMap<K, V>,
    decode: impl Fn(&K, &[u8]) -> Result<V, StoreError>,
) -> Result<(), StoreError>
where
    K: Ord + for<'a> FromSql<'a>,
{
    copy_out(txn, sql, |row| {
        let key: K = row.try_get(0).map_err(pg_err)?;
        let Json(data) = row.try_get(1).map_err(pg_err)?;
        let value = decode(&key, data)?;
        map.insert(key, value);
        Ok(())
    })
}

/// The newest entry of the change log (0: none yet).
pub fn head(client: &mut postgres::Client) -> Result<u64, StoreError> {
    seq(client.query_one(HEAD, &[]).map_err(pg_err)?.try_get(0))
}

fn snapshot_txn(client: &mut postgres::Client) -> Result<Transaction<'_>, StoreError> {
    client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(pg_err)
}

/// A sequence number or count as read (never negative).
fn seq(value: Result<i64, postgres::Error>) -> Result<u64, StoreError> {
    Ok(value.map_err(pg_err)?.try_into().unwrap_or(0))
}
