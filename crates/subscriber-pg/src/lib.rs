//! `brasa-subscriber-pg`: the Subscriber Manager's records on PostgreSQL.
//!
//! [`PgStore`] implements [`SubscriberStore`] over one connection, the way the SM uses a store:
//! one writer thread that group-commits (see `brasa-sm-net`'s service). The client is the
//! synchronous `postgres` crate (the tokio-postgres family driven by a private runtime): the
//! store trait is synchronous and is only ever called from that thread, so an async pool would
//! add a hand-off per commit and nothing else.
//!
//! * **Schema.** Created and upgraded by [`migrate`] on every connect: the numbered
//!   [`MIGRATIONS`] not yet recorded in `brasa_sm_schema` run in one transaction under an
//!   advisory lock, so that nodes starting together migrate once. A database newer than this
//!   binary is refused.
//! * **Records.** `sm_vpns`, `sm_subscribers` (keyed by name) and `sm_leg_routes` (keyed by the
//!   route's 42-byte key), each value the same JSON text as the embedded store keeps, as `json`
//!   (since schema 6; `jsonb` before): the server checks it but does not convert it, and
//!   operators query it with SQL's JSON operators.
//! * **Durability.** [`SubscriberStore::apply_batch`] is one transaction: it returns once
//!   PostgreSQL has committed it (`synchronous_commit` as the server is configured; `on`, its
//!   default, is what makes an acknowledged change survive a crash of the server).
//! * **Bulk.** A full load reads each table with `COPY … TO STDOUT (FORMAT binary)`. A batch
//!   of more than [`COPY_ROWS`] rows for one table is written with `COPY … FROM STDIN (FORMAT
//!   binary)`: records that the change sets say are new (`StoredWrite::Subscriber::created`,
//!   a group commit of first logins, an import) straight into the table, the others into a
//!   temporary table merged with one `INSERT … ON CONFLICT`; if a record said to be new was
//!   stored after all, the `COPY` fails with a unique violation and the commit is done again
//!   through the merge, so the hint is never trusted for correctness. Smaller batches are one
//!   `INSERT … SELECT FROM unnest(…)` per table: one round trip whatever their size. The
//!   binary `COPY` stream is built in one buffer from the encoded records (`rows`).
#![warn(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(test)]
mod tests {
    #[test]
    fn a_password_never_reaches_a_log_line() {
        use super::redact_url;
        assert_eq!(
            redact_url("postgres://sm:s3cret@127.0.0.1:5432/brasa"),
            "postgres://sm:***@127.0.0.1:5432/brasa"
        );
        assert_eq!(
            redact_url("postgres://sm@127.0.0.1/brasa"),
            "postgres://sm@127.0.0.1/brasa"
        );
        assert_eq!(
            redact_url("host=127.0.0.1 user=sm"),
            "host=127.0.0.1 user=sm"
        );
    }
}

pub mod change_log;
mod json;
pub mod lease;
mod migrate;
mod rows;

use std::borrow::Cow;

use brasa_subscriber::store::{decode_route, decode_subscriber, decode_vpn, for_each_write};
use brasa_subscriber::{
    ChangeSet, LearnedRoute, RouteFormat, Snapshot, StoreError, StoredWrite, Subscriber,
    SubscriberStore, Vpn,
};
use postgres::binary_copy::BinaryCopyOutIter;
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls, Statement, Transaction};

use json::Json;
use lease::Fence;
pub use migrate::{migrate, schema_version, Migration, MIGRATIONS};
use rows::{Plan, TableWrites};

/// The backend's name in [`StoreError::Backend`].
const BACKEND: &str = "PostgreSQL";

/// Rows of one table in one batch above which the batch goes through `COPY` (a busy group
/// commit, an import, a migration) rather than one `unnest` statement (one round trip, slower
/// per row on the server).
pub const COPY_ROWS: usize = 4096;

/// Why the PostgreSQL store failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The server or the connection failed.
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
    /// A record did not fit the binary `COPY` format (over 2 GiB).
    #[error("a record of {bytes} bytes is too large to store")]
    RecordTooLarge {
        /// Its size.
        bytes: usize,
    },
    /// The rows of a `COPY` could not be handed to the connection.
    #[error("COPY: {0}")]
    Copy(std::io::Error),
    /// The database was migrated by a newer brasa.
    #[error(
        "the database's schema is version {found}, newer than this brasa knows ({known}): \
         run the newer brasa or restore an older database"
    )]
    SchemaTooNew {
        /// Version recorded in the database.
        found: i32,
        /// Newest version this binary knows.
        known: i32,
    },
}

impl From<PgError> for StoreError {
    fn from(e: PgError) -> StoreError {
        StoreError::Backend {
            backend: BACKEND,
            source: Box::new(e),
        }
    }
}

fn pg_err(e: postgres::Error) -> StoreError {
    PgError::Postgres(e).into()
}

/// Checks a connection URL (or key=value string) without connecting.
pub fn check_url(url: &str) -> Result<(), String> {
    url.parse::<postgres::Config>()
        .map(drop)
        .map_err(|e| e.to_string())
}

/// `url` with its password replaced by `***` (for logs and messages).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}{path}")
        }
        _ => url.to_owned(),
    }
}

/// The SQL of one record table, prepared once per connection.
struct TableSql {
    /// `$1` keys, `$2` values: insert or replace.
    upsert: Statement,
    /// `$1` keys: delete.
    delete: Statement,
    /// Moves the rows copied into the staging table into the table.
    merge_staged: Statement,
    /// `COPY <staging> FROM STDIN (FORMAT binary)`.
    copy_staged: String,
    /// `COPY <table> FROM STDIN (FORMAT binary)`: rows known to be new.
    copy_direct: String,
    /// `COPY (SELECT key, data FROM <table>) TO STDOUT (FORMAT binary)`.
    copy_out: String,
    key_type: Type,
}

impl TableSql {
    fn prepare(
        client: &mut Client,
        table: &str,
        key: &str,
        key_type: Type,
    ) -> Result<Self, StoreError> {
        let sql_type = if key_type == Type::BYTEA {
            "bytea"
        } else {
            "text"
        };
        let staging = format!("{table}_staging");
        // A temporary table lives as long as the session; ON COMMIT DELETE ROWS empties it at
        // the end of every transaction, so a failed batch leaves nothing behind.
        client
            .batch_execute(&format!(
                "CREATE TEMPORARY TABLE IF NOT EXISTS {staging} (LIKE {table}) ON COMMIT DELETE ROWS"
            ))
            .map_err(pg_err)?;
        let upsert = client
            .prepare(&format!(
                "INSERT INTO {table} ({key}, data) SELECT * FROM unnest($1::{sql_type}[], $2::json[]) \
                 ON CONFLICT ({key}) DO UPDATE SET data = EXCLUDED.data"
            ))
            .map_err(pg_err)?;
        let delete = client
            .prepare(&format!(
                "DELETE FROM {table} WHERE {key} = ANY($1::{sql_type}[])"
            ))
            .map_err(pg_err)?;
        let merge_staged = client
            .prepare(&format!(
                "INSERT INTO {table} ({key}, data) SELECT {key}, data FROM {staging} \
                 ON CONFLICT ({key}) DO UPDATE SET data = EXCLUDED.data"
            ))
            .map_err(pg_err)?;
        Ok(TableSql {
            upsert,
            delete,
            merge_staged,
            copy_staged: format!("COPY {staging} ({key}, data) FROM STDIN (FORMAT binary)"),
            copy_direct: format!("COPY {table} ({key}, data) FROM STDIN (FORMAT binary)"),
            copy_out: format!("COPY (SELECT {key}, data FROM {table}) TO STDOUT (FORMAT binary)"),
            key_type,
        })
    }

    /// `keys` as the array parameter of this table's key type.
    fn key_array<'a>(&self, keys: &[&'a [u8]]) -> Box<dyn ToSql + Sync + 'a> {
        if self.key_type == Type::BYTEA {
            Box::new(keys.to_vec())
        } else {
            // Names came from `&str`: valid UTF-8, borrowed as they are.
            let names: Vec<Cow<'a, str>> =
                keys.iter().map(|k| String::from_utf8_lossy(k)).collect();
            Box::new(names)
        }
    }
}

/// The writes of one table in one commit, as statements.
impl Plan<'_> {
    /// Carries out the plan in `txn`. With `direct`, a large set of records new to the table
    /// is copied straight into it (no staging table, no conflict check); if one was there
    /// after all, the `COPY` fails with a unique violation and the caller starts again
    /// without `direct`.
    fn execute(
        &self,
        txn: &mut Transaction<'_>,
        sql: &TableSql,
        direct: bool,
    ) -> Result<(), CommitError> {
        if !self.deleted.is_empty() {
            txn.execute(&sql.delete, &[&*sql.key_array(&self.deleted)])?;
        }
        let direct = direct && self.created.len() > COPY_ROWS;
        if direct {
            copy_in(txn, &sql.copy_direct, &self.created)?;
        }
        let merged: Cow<'_, [(&[u8], &[u8])]> = if direct {
            Cow::Borrowed(&self.replaced)
        } else {
            self.created.iter().chain(&self.replaced).copied().collect()
        };
        if merged.len() > COPY_ROWS {
            copy_in(txn, &sql.copy_staged, &merged)?;
            txn.execute(&sql.merge_staged, &[])?;
        } else if !merged.is_empty() {
            let keys: Vec<&[u8]> = merged.iter().map(|(k, _)| *k).collect();
            let values: Vec<Json<'_>> = merged.iter().map(|(_, v)| Json(v)).collect();
            txn.execute(&sql.upsert, &[&*sql.key_array(&keys), &values])?;
        }
        Ok(())
    }

    /// Keys written (inserted or replaced).
    fn written(&self) -> Vec<&[u8]> {
        let created = self.created.iter().map(|(k, _)| *k);
        created
            .chain(self.replaced.iter().map(|(k, _)| *k))
            .collect()
    }
}

/// Streams `rows` into `COPY … FROM STDIN (FORMAT binary)`.
fn copy_in(
    txn: &mut Transaction<'_>,
    statement: &str,
    rows: &[(&[u8], &[u8])],
) -> Result<(), CommitError> {
    let payload = rows::copy_payload(rows).map_err(StoreError::from)?;
    let mut sink = txn.copy_in(statement)?;
    // The writer only buffers; a failure shows in `finish`, with the server's reason.
    std::io::Write::write_all(&mut sink, &payload)
        .map_err(|e| StoreError::from(PgError::Copy(e)))?;
    sink.finish()?;
    Ok(())
}

/// Why one attempt at a commit failed.
enum CommitError {
    /// A record the change sets said was new is in the table: the index and the database
    /// disagree (a commit whose outcome the SM never learnt). Nothing was written; the commit
    /// is done again without the direct `COPY`.
    AlreadyStored(postgres::Error),
    /// Anything else: the commit fails.
    Store(StoreError),
}

impl From<StoreError> for CommitError {
    fn from(e: StoreError) -> Self {
        CommitError::Store(e)
    }
}

impl From<postgres::Error> for CommitError {
    fn from(e: postgres::Error) -> Self {
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            CommitError::AlreadyStored(e)
        } else {
            CommitError::Store(pg_err(e))
        }
    }
}

/// The SM's records in a PostgreSQL database.
pub struct PgStore {
    client: Client,
    fence: Option<Fence>,
    vpns: TableSql,
    subscribers: TableSql,
    routes: TableSql,
    /// Numbers the batch, records the keys it writes and drops the entry that falls out of
    /// the retention (see [`change_log`]).
    log_change: Statement,
    log_retention: i64,
}

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/database`, or the key=value
    /// form), creates or upgrades the schema and prepares the statements.
    ///
    /// Blocks: call it from a thread that is not running async tasks (the client drives a
    /// private runtime).
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        let config: postgres::Config = url.parse().map_err(pg_err)?;
        let mut client = config.connect(NoTls).map_err(pg_err)?;
        migrate(&mut client)?;
        let vpns = TableSql::prepare(&mut client, "sm_vpns", "name", Type::TEXT)?;
        let subscribers = TableSql::prepare(&mut client, "sm_subscribers", "name", Type::TEXT)?;
        let routes = TableSql::prepare(&mut client, "sm_leg_routes", "key", Type::BYTEA)?;
        let log_change = client.prepare(change_log::LOG_CHANGE).map_err(pg_err)?;
        Ok(PgStore {
            client,
            fence: None,
            vpns,
            subscribers,
            routes,
            log_change,
            log_retention: i64::try_from(change_log::DEFAULT_RETENTION).unwrap_or(i64::MAX),
        })
    }

    /// Keeps the last `batches` entries of the change log (at least 1; default
    /// [`change_log::DEFAULT_RETENTION`]). A standby further behind than that reloads in full.
    pub fn with_change_log_retention(mut self, batches: u64) -> Self {
        self.log_retention = i64::try_from(batches.max(1)).unwrap_or(i64::MAX);
        self
    }

    /// Makes every later commit check `fence`'s token against the lease row (active/standby
    /// nodes; see [`lease`]): without the current token of an unexpired lease a commit is
    /// refused with [`StoreError::Fenced`] and writes nothing. A transaction left open longer
    /// than `lease` (a paused process) is ended by the server, so that it cannot hold up a
    /// take-over.
    pub fn with_fence(
        mut self,
        fence: Fence,
        lease: std::time::Duration,
    ) -> Result<Self, StoreError> {
        self.client
            .batch_execute(&format!(
                "SET idle_in_transaction_session_timeout = {}",
                lease.as_millis().max(1)
            ))
            .map_err(pg_err)?;
        self.fence = Some(fence);
        Ok(self)
    }

    /// The connection (for the schema version, operator queries, tests).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// Streams every row of `sql`'s table to `row` (key, JSON value).
fn copy_out<E: From<StoreError>>(
    txn: &mut Transaction<'_>,
    sql: &TableSql,
    mut row: impl FnMut(&postgres::binary_copy::BinaryCopyOutRow) -> Result<(), E>,
) -> Result<(), E> {
    let reader = txn.copy_out(sql.copy_out.as_str()).map_err(pg_err)?;
    let mut rows = BinaryCopyOutIter::new(reader, &[sql.key_type.clone(), Type::JSON]);
    while let Some(r) = rows.next().map_err(pg_err)? {
        row(&r)?;
    }
    Ok(())
}

/// Where a full read puts the records, in the order it reads them: every VPN, then every
/// subscriber (whose mappings may name the VPNs), then every BGP LEG route.
trait RecordSink {
    type Error: From<StoreError>;
    fn vpn(&mut self, vpn: Vpn) -> Result<(), Self::Error>;
    fn subscriber(&mut self, subscriber: Subscriber) -> Result<(), Self::Error>;
    fn route(&mut self, route: LearnedRoute) -> Result<(), Self::Error>;
}

impl RecordSink for Snapshot {
    type Error = StoreError;

    fn vpn(&mut self, vpn: Vpn) -> Result<(), StoreError> {
        self.vpns.push(vpn);
        Ok(())
    }

    fn subscriber(&mut self, subscriber: Subscriber) -> Result<(), StoreError> {
        self.subscribers.push(subscriber);
        Ok(())
    }

    fn route(&mut self, route: LearnedRoute) -> Result<(), StoreError> {
        self.routes.push(route);
        Ok(())
    }
}

/// Streams every record of the three tables within `txn` into `sink`.
fn read_all<S: RecordSink>(
    txn: &mut Transaction<'_>,
    tables: [&TableSql; 3],
    sink: &mut S,
) -> Result<(), S::Error> {
    let [vpns, subscribers, routes] = tables;
    copy_out(txn, vpns, |row| {
        let name: &str = row.try_get(0).map_err(pg_err)?;
        let Json(data) = row.try_get(1).map_err(pg_err)?;
        sink.vpn(decode_vpn(name, data)?)
    })?;
    copy_out(txn, subscribers, |row| {
        let name: &str = row.try_get(0).map_err(pg_err)?;
        let Json(data) = row.try_get(1).map_err(pg_err)?;
        sink.subscriber(decode_subscriber(name, data)?)
    })?;
    copy_out(txn, routes, |row| {
        let key: &[u8] = row.try_get(0).map_err(pg_err)?;
        let Json(data) = row.try_get(1).map_err(pg_err)?;
        sink.route(decode_route(key, data)?)
    })
}

impl SubscriberStore for PgStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        // One snapshot of the three tables: a standby that loads while the active commits
        // must not see a subscriber without its VPN.
        let mut txn = self
            .client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(pg_err)?;
        let mut snapshot = Snapshot::default();
        read_all(
            &mut txn,
            [&self.vpns, &self.subscribers, &self.routes],
            &mut snapshot,
        )?;
        txn.commit().map_err(pg_err)?;
        Ok(snapshot)
    }

    fn apply_batch(&mut self, batch: &[ChangeSet]) -> Result<(), StoreError> {
        let mut vpns = TableWrites::default();
        let mut subscribers = TableWrites::default();
        let mut routes = TableWrites::default();
        // The routes stay JSON in the `json` column, readable in the database.
        for_each_write(batch, RouteFormat::Json, |write| {
            match write {
                StoredWrite::Vpn { name, value } => vpns.push(name.as_bytes(), value, false),
                StoredWrite::Subscriber {
                    name,
                    value,
                    created,
                } => subscribers.push(name.as_bytes(), value, created),
                StoredWrite::Route { key, value } => routes.push(key, value, false),
            }
            Ok(())
        })?;
        let plans = [vpns.plan(), subscribers.plan(), routes.plan()];
        match self.commit(&plans, true) {
            Err(CommitError::AlreadyStored(_)) => match self.commit(&plans, false) {
                Ok(()) => Ok(()),
                Err(CommitError::AlreadyStored(e)) => Err(pg_err(e)),
                Err(CommitError::Store(e)) => Err(e),
            },
            Err(CommitError::Store(e)) => Err(e),
            Ok(()) => Ok(()),
        }
    }
}

impl PgStore {
    /// One transaction: the fencing check, the change log's entry, then each table's plan.
    fn commit(&mut self, plans: &[Plan<'_>; 3], direct: bool) -> Result<(), CommitError> {
        let [vpns, subscribers, routes] = plans;
        let mut txn = self.client.transaction()?;
        let token = match &self.fence {
            Some(fence) => lease::check(&mut txn, fence)?,
            None => 0,
        };
        // The log entry first: its head row serialises writers before they touch any record.
        txn.execute(
            &self.log_change,
            &[
                &token,
                &*self.vpns.key_array(&vpns.written()),
                &*self.vpns.key_array(&vpns.deleted),
                &*self.subscribers.key_array(&subscribers.written()),
                &*self.subscribers.key_array(&subscribers.deleted),
                &*self.routes.key_array(&routes.written()),
                &*self.routes.key_array(&routes.deleted),
                &self.log_retention,
            ],
        )?;
        vpns.execute(&mut txn, &self.vpns, direct)?;
        subscribers.execute(&mut txn, &self.subscribers, direct)?;
        routes.execute(&mut txn, &self.routes, direct)?;
        txn.commit()?;
        Ok(())
    }
}
