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
//! **Following.** A [`Follower`] keeps a [`Replica`]: a ready [`SubscriberIndex`] of the
//! records and its *position* (the last entry it reflects). [`Follower::catch_up`] reads the
//! head; when it moved, it reads, in one repeatable-read snapshot, the current rows of every
//! key the entries after its position name (a key without a row was deleted) and applies them
//! to the index ([`SubscriberIndex::apply_stored`]), so that the index then equals one built
//! from the database at the head. The log holds keys, not values: a commit writes each record
//! once, and a follower that is many entries behind reads each touched record once. When an
//! entry it needs was pruned, the head is behind its position (a database restored from a
//! backup), or the records read did not apply, it reloads in full with binary `COPY`, as a
//! restarting node does.
//!
//! **Promotion.** [`Follower::promote`] is called once this node holds the lease (the old
//! active can no longer commit): the last catch-up applies the tail of the log, and the index
//! is handed over ready to serve: a take-over costs the tail, not a rebuild.

use brasa_subscriber::store::{decode_route, decode_route_key, decode_subscriber, decode_vpn};
use brasa_subscriber::{
    IndexConfig, IndexError, LearnedRoute, StoreError, StoredRecords, Subscriber, SubscriberIndex,
    Vpn,
};
use postgres::types::FromSql;
use postgres::Transaction;

use crate::json::Json;
use crate::{pg_err, read_all, PgStore, RecordSink};

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

/// The records of the database as of one entry of the change log, as the index a node serves
/// from (at 1 M subscribers about the memory of the active's index; no copy of the records).
pub struct Replica {
    position: u64,
    index: SubscriberIndex,
}

impl Replica {
    /// The last entry of the change log the replica reflects.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Subscribers held.
    pub fn subscribers(&self) -> usize {
        self.index.len()
    }

    /// The index.
    pub fn index(&self) -> &SubscriberIndex {
        &self.index
    }
}

/// Why a follower could not catch up. It keeps its position (the next catch-up reads the same
/// entries again) unless the records did not apply, after which it reads everything again.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored records do not fit this node's index configuration (a domain it lacks, a
    /// record an index refuses): the node could not serve them either.
    #[error("the stored records do not fit the subscriber manager's configuration: {0}")]
    Restore(#[from] IndexError),
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
    /// The records of its last catch-up did not apply to its index ([`FollowError::Restore`]).
    Refused,
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
            Reload::Refused => f.write_str("the records last read did not apply to the index"),
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

/// The index a node that just took the lease serves from.
pub struct Promotion {
    /// Every record, as of `position`.
    pub index: SubscriberIndex,
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
    config: IndexConfig,
    store: Option<PgStore>,
    replica: Option<Replica>,
    /// Why the next catch-up reads everything, while there is no replica.
    reload: Reload,
    counters: FollowerCounters,
}

impl Follower {
    /// A follower of the database at `url` whose index has `config` (the SM's); it connects
    /// (and migrates the schema) at its first catch-up, and again after a failure.
    pub fn new(url: &str, config: IndexConfig) -> Follower {
        Follower {
            url: url.to_owned(),
            config,
            store: None,
            replica: None,
            reload: Reload::Initial,
            counters: FollowerCounters::default(),
        }
    }

    /// The replica, once loaded.
    pub fn replica(&self) -> Option<&Replica> {
        self.replica.as_ref()
    }

    /// What it did so far.
    pub fn counters(&self) -> FollowerCounters {
        self.counters
    }

    /// Brings the replica up to the head of the log (reading it in full the first time, or
    /// when the log no longer holds what it needs). A failure to read drops the connection
    /// (the next call reconnects) and keeps the position, so the next call reads the same
    /// entries again (applying an entry twice changes nothing: it reads current rows).
    pub fn catch_up(&mut self) -> Result<CatchUp, FollowError> {
        let (outcome, replica) = self.caught_up()?;
        self.replica = Some(replica);
        Ok(outcome)
    }

    /// Catches up one last time and hands the index over (the follower then holds none; its
    /// next catch-up reloads in full). Call it once this node holds the lease, so that no
    /// other node can commit after the tail was read.
    pub fn promote(&mut self) -> Result<Promotion, FollowError> {
        let (outcome, replica) = self.caught_up()?;
        let (reload, tail_batches) = match outcome {
            CatchUp::Unchanged => (None, 0),
            CatchUp::Applied { batches, .. } => (None, batches),
            CatchUp::Reloaded(why) => (Some(why), 0),
        };
        Ok(Promotion {
            position: replica.position,
            index: replica.index,
            reload,
            tail_batches,
        })
    }

    /// Catches up and takes the replica out.
    fn caught_up(&mut self) -> Result<(CatchUp, Replica), FollowError> {
        let store = match &mut self.store {
            Some(store) => store,
            empty => empty.insert(PgStore::connect(&self.url)?),
        };
        let read = match self.replica.take() {
            None => Ok(Err(self.reload)),
            Some(replica) => match read_tail(store, replica.position) {
                Ok(Tail::Unchanged) => return Ok((CatchUp::Unchanged, replica)),
                Ok(Tail::Records {
                    head,
                    batches,
                    records,
                }) => Ok(Ok((replica, head, batches, records))),
                // The old index goes before the new one is read: one in memory at a time.
                Ok(Tail::Gone(why)) => Ok(Err(why)),
                Err(e) => {
                    self.replica = Some(replica);
                    Err(e)
                }
            },
        };
        let outcome = match read {
            Ok(Ok((replica, head, batches, records))) => {
                let count = records.len();
                match replica.index.apply_stored(records) {
                    Ok(index) => {
                        self.counters.applied_batches += batches;
                        self.counters.applied_records += count as u64;
                        return Ok((
                            CatchUp::Applied {
                                batches,
                                records: count,
                            },
                            Replica {
                                position: head,
                                index,
                            },
                        ));
                    }
                    Err(e) => {
                        self.reload = Reload::Refused;
                        return Err(e.into());
                    }
                }
            }
            Ok(Err(why)) => load(store, &self.config).map(|replica| (why, replica)),
            Err(e) => Err(FollowError::Store(e)),
        };
        match outcome {
            Ok((why, replica)) => {
                self.counters.full_loads += 1;
                self.reload = Reload::Initial;
                Ok((CatchUp::Reloaded(why), replica))
            }
            Err(e) => {
                if matches!(e, FollowError::Store(_)) {
                    self.store = None;
                }
                Err(e)
            }
        }
    }
}

/// What the entries after a position hold.
enum Tail {
    /// The head is the position.
    Unchanged,
    /// The records the entries up to `head` name, as of `head`.
    Records {
        head: u64,
        batches: u64,
        records: StoredRecords,
    },
    /// The log cannot bring the position to the head.
    Gone(Reload),
}

/// Reads the records the entries after `position` name, as of the head, in one snapshot.
fn read_tail(store: &mut PgStore, position: u64) -> Result<Tail, StoreError> {
    let head = head(&mut store.client)?;
    if head == position {
        return Ok(Tail::Unchanged);
    }
    let mut txn = snapshot_txn(&mut store.client)?;
    // The head again, in the snapshot the rows are read in (it may have moved since).
    let head = seq(txn.query_one(HEAD, &[]).map_err(pg_err)?.try_get(0))?;
    if head < position {
        return Ok(Tail::Gone(Reload::HeadBehind { position, head }));
    }
    let p = i64::try_from(position).unwrap_or(i64::MAX);
    let range = txn.query_one(TAIL_RANGE, &[&p]).map_err(pg_err)?;
    let (count, oldest) = (seq(range.try_get(0))?, seq(range.try_get(1))?);
    if count != head - position || (count > 0 && oldest != position + 1) {
        return Ok(Tail::Gone(Reload::Truncated { position, oldest }));
    }
    let routes = read_rows(&mut txn, TAIL_ROUTES, p, |k: &Vec<u8>, d| {
        decode_route(k, d)
    })?;
    let records = StoredRecords {
        vpns: read_rows(&mut txn, TAIL_VPNS, p, |k: &String, d| decode_vpn(k, d))?,
        subscribers: read_rows(&mut txn, TAIL_SUBSCRIBERS, p, |k: &String, d| {
            decode_subscriber(k, d)
        })?,
        routes: routes
            .into_iter()
            .map(|(key, route)| Ok((decode_route_key(&key)?, route)))
            .collect::<Result<_, StoreError>>()?,
    };
    txn.commit().map_err(pg_err)?;
    Ok(Tail::Records {
        head,
        batches: head - position,
        records,
    })
}

/// Reads every record and the head of the log in one snapshot, indexing each record as it
/// arrives: the decoded records are never all in memory beside the index.
fn load(store: &mut PgStore, config: &IndexConfig) -> Result<Replica, FollowError> {
    let mut txn = snapshot_txn(&mut store.client)?;
    let position = seq(txn.query_one(HEAD, &[]).map_err(pg_err)?.try_get(0))?;
    let mut sink = IndexSink {
        index: SubscriberIndex::new(config.clone())?,
        routes: Vec::new(),
    };
    read_all(
        &mut txn,
        [&store.vpns, &store.subscribers, &store.routes],
        &mut sink,
    )?;
    txn.commit().map_err(pg_err)?;
    let IndexSink { mut index, routes } = sink;
    index.restore_learned(routes);
    Ok(Replica { position, index })
}

/// A full read into an index (as [`brasa_subscriber::Snapshot::into_index`] builds it). The
/// routes wait for the end: they are restored once every subscriber holds its network IDs.
struct IndexSink {
    index: SubscriberIndex,
    routes: Vec<LearnedRoute>,
}

impl RecordSink for IndexSink {
    type Error = FollowError;

    fn vpn(&mut self, vpn: Vpn) -> Result<(), FollowError> {
        self.index.add_vpn(vpn)?;
        Ok(())
    }

    fn subscriber(&mut self, subscriber: Subscriber) -> Result<(), FollowError> {
        Ok(self.index.put(subscriber)?)
    }

    fn route(&mut self, route: LearnedRoute) -> Result<(), FollowError> {
        self.routes.push(route);
        Ok(())
    }
}

/// The rows of `sql`: each key with its current record, `None` for a deleted one.
fn read_rows<K, V>(
    txn: &mut Transaction<'_>,
    sql: &str,
    position: i64,
    decode: impl Fn(&K, &[u8]) -> Result<V, StoreError>,
) -> Result<Vec<(K, Option<V>)>, StoreError>
where
    K: for<'a> FromSql<'a>,
{
    let rows = txn.query(sql, &[&position]).map_err(pg_err)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let key: K = row.try_get(0).map_err(pg_err)?;
        let value = match row.try_get::<_, Option<Json<'_>>>(1).map_err(pg_err)? {
            Some(Json(data)) => Some(decode(&key, data)?),
            None => None,
        };
        out.push((key, value));
    }
    Ok(out)
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
