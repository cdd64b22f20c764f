//! The lease row of active/standby SM nodes and the fencing of commits
//! (`brasa_sm::lease` decides when to ask; this executes).
//!
//! * Take-over: `UPDATE sm_lease … WHERE expires_at < clock_timestamp()` increments the token;
//!   expiry is judged by the database's clock only.
//! * Renewal: extends the row only while it still carries this node's token and has not
//!   expired.
//! * Fencing: every commit of a fenced [`crate::PgStore`] first locks the row `FOR SHARE` with
//!   its token and an unexpired lease, and keeps the lock until the commit ends. A take-over
//!   waits for that lock, so no commit of the old holder lands after the new token exists; a
//!   holder paused inside a transaction is cut off by the server after
//!   `idle_in_transaction_session_timeout` (the lease), which releases the lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use brasa_subscriber::StoreError;
use postgres::{Client, NoTls};

use crate::{migrate, pg_err, PgError};

/// What the database says about the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAnswer {
    /// This node holds it with this token.
    Held(u64),
    /// Another node holds an unexpired lease.
    HeldBy {
        /// Its name.
        holder: String,
        /// Its token.
        token: u64,
    },
    /// The renewed lease is no longer this node's.
    Lost,
}

/// The lease row as stored (`brasa sm status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// The last node that took it ("" before the first take-over).
    pub holder: String,
    /// Its fencing token (0 before the first take-over).
    pub token: u64,
    /// Milliseconds until it expires by the database's clock (negative: expired).
    pub expires_in_ms: i64,
}

/// One node's report of itself (`sm_nodes`), refreshed every lease interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// Its name.
    pub name: String,
    /// Its gRPC address (LEG API and EP protocol).
    pub grpc: String,
    /// `active` or `standby`, as it last reported.
    pub role: String,
    /// The token it holds (0 as a standby).
    pub token: u64,
    /// Milliseconds since its last report, by the database's clock.
    pub seen_ms_ago: i64,
}

/// The change log's head, and how far a replica is behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    /// The newest entry (0: none yet).
    pub head: u64,
    /// Age, by the database's clock, of the first entry after the replica's position (`None`:
    /// no replica, none after it, or already pruned).
    pub unapplied_age_ms: Option<i64>,
}

/// The token a fenced store commits with, shared between the leadership task (which sets it)
/// and the store thread (which checks it in every commit). No token: every commit is refused.
#[derive(Debug, Clone, Default)]
pub struct Fence(Arc<AtomicU64>);

impl Fence {
    /// Sets (or, with `None`, clears) the token.
    pub fn set(&self, token: Option<u64>) {
        self.0.store(token.unwrap_or(0), Ordering::SeqCst);
    }

    /// The current token.
    pub fn get(&self) -> Option<u64> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            t => Some(t),
        }
    }
}

/// The leadership connection of one node (separate from the store's, so that a long commit
/// never delays a renewal).
pub struct PgLease {
    client: Client,
    node: String,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn token(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

impl PgLease {
    /// Connects as node `node` (its name in the lease row) and migrates the schema.
    pub fn connect(url: &str, node: &str) -> Result<PgLease, StoreError> {
        let config: postgres::Config = url.parse().map_err(pg_err)?;
        let mut client = config.connect(NoTls).map_err(pg_err)?;
        migrate(&mut client)?;
        // A take-over waits for the old holder's commit in progress; never for long.
        client
            .batch_execute("SET lock_timeout = '2s'")
            .map_err(pg_err)?;
        Ok(PgLease {
            client,
            node: node.to_owned(),
        })
    }

    /// Takes the lease if it has expired.
    pub fn acquire(&mut self, lease: Duration) -> Result<LeaseAnswer, StoreError> {
        let taken = self
            .client
            .query_opt(
                "UPDATE sm_lease SET holder = $1, token = token + 1, \
                 expires_at = clock_timestamp() + $2::float8 * interval '1 millisecond' \
                 WHERE id = 1 AND expires_at < clock_timestamp() RETURNING token",
                &[&self.node, &(millis(lease) as f64)],
            )
            .map_err(pg_err)?;
        match taken {
            Some(row) => Ok(LeaseAnswer::Held(token(row.get(0)))),
            None => {
                let row = self.status()?;
                Ok(LeaseAnswer::HeldBy {
                    holder: row.holder,
                    token: row.token,
                })
            }
        }
    }

    /// Extends the lease held with `held`.
    pub fn renew(&mut self, held: u64, lease: Duration) -> Result<LeaseAnswer, StoreError> {
        let held = i64::try_from(held).map_err(|_| fenced(held))?;
        let renewed = self
            .client
            .query_opt(
                "UPDATE sm_lease SET expires_at = clock_timestamp() + $2::float8 * interval '1 millisecond' \
                 WHERE id = 1 AND token = $1 AND expires_at >= clock_timestamp() RETURNING token",
                &[&held, &(millis(lease) as f64)],
            )
            .map_err(pg_err)?;
        Ok(match renewed {
            Some(row) => LeaseAnswer::Held(token(row.get(0))),
            None => LeaseAnswer::Lost,
        })
    }

    /// Gives up the lease held with `held` (a clean shutdown), so that a standby takes over at
    /// its next attempt instead of after the lease time.
    pub fn release(&mut self, held: u64) -> Result<(), StoreError> {
        let held = i64::try_from(held).map_err(|_| fenced(held))?;
        self.client
            .execute(
                "UPDATE sm_lease SET expires_at = '-infinity' WHERE id = 1 AND token = $1",
                &[&held],
            )
            .map_err(pg_err)?;
        Ok(())
    }

    /// Records this node's role (and the token it holds as active) and gRPC address.
    pub fn report(&mut self, grpc: &str, role: &str, held: Option<u64>) -> Result<(), StoreError> {
        let token = held.and_then(|t| i64::try_from(t).ok()).unwrap_or(0);
        self.client
            .execute(
                "INSERT INTO sm_nodes (name, grpc, role, token, seen_at)                  VALUES ($1, $2, $3, $4, clock_timestamp())                  ON CONFLICT (name) DO UPDATE SET grpc = EXCLUDED.grpc, role = EXCLUDED.role,                  token = EXCLUDED.token, seen_at = EXCLUDED.seen_at",
                &[&self.node, &grpc, &role, &token],
            )
            .map_err(pg_err)?;
        Ok(())
    }

    /// Every node's last report, by name.
    pub fn nodes(&mut self) -> Result<Vec<NodeRow>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT name, grpc, role, token,                  (extract(epoch FROM clock_timestamp() - seen_at) * 1000)::bigint                  FROM sm_nodes ORDER BY name",
                &[],
            )
            .map_err(pg_err)?;
        Ok(rows
            .iter()
            .map(|r| NodeRow {
                name: r.get(0),
                grpc: r.get(1),
                role: r.get(2),
                token: token(r.get(3)),
                seen_ms_ago: r.get::<_, Option<i64>>(4).unwrap_or(i64::MAX),
            })
            .collect())
    }

    /// The change log's head and, for a replica at `position`, the age of the first entry it
    /// has not applied.
    pub fn change_log(&mut self, position: Option<u64>) -> Result<LogPosition, StoreError> {
        // NULL without a replica: no entry then matches.
        let after: Option<i64> = position.and_then(|p| i64::try_from(p).ok());
        let row = self
            .client
            .query_one(
                "SELECT h.seq, (SELECT (extract(epoch FROM clock_timestamp() - c.committed_at) \
                 * 1000)::bigint FROM sm_changes c WHERE c.seq = $1::bigint + 1 AND h.seq > $1::bigint) \
                 FROM sm_change_head h WHERE h.id = 1",
                &[&after],
            )
            .map_err(pg_err)?;
        Ok(LogPosition {
            head: token(row.get(0)),
            unapplied_age_ms: row.get(1),
        })
    }

    /// The lease row.
    pub fn status(&mut self) -> Result<LeaseRow, StoreError> {
        let row = self
            .client
            .query_one(
                "SELECT holder, token, \
                 (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint \
                 FROM sm_lease WHERE id = 1",
                &[],
            )
            .map_err(pg_err)?;
        Ok(LeaseRow {
            holder: row.get(0),
            token: token(row.get(1)),
            expires_in_ms: row.get::<_, Option<i64>>(2).unwrap_or(i64::MIN),
        })
    }
}

pub(crate) fn fenced(token: u64) -> StoreError {
    StoreError::Fenced(format!(
        "fencing token {token} is not the lease's current token, or the lease has expired"
    ))
}

/// Locks the lease row for the rest of `txn` if `fence` holds the current token of an
/// unexpired lease, and returns that token; refuses the commit otherwise.
pub(crate) fn check(txn: &mut postgres::Transaction<'_>, fence: &Fence) -> Result<i64, StoreError> {
    let Some(held) = fence.get() else {
        return Err(StoreError::Fenced(
            "this node holds no lease (standby)".into(),
        ));
    };
    let t = i64::try_from(held).map_err(|_| fenced(held))?;
    let row = txn
        .query_opt(
            "SELECT 1 FROM sm_lease WHERE id = 1 AND token = $1 \
             AND expires_at > clock_timestamp() FOR SHARE",
            &[&t],
        )
        .map_err(|e| StoreError::from(PgError::Postgres(e)))?;
    match row {
        Some(_) => Ok(t),
        None => Err(fenced(held)),
    }
}
