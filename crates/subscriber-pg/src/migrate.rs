//! Versioned schema migrations.

use postgres::Client;

use crate::PgError;

/// One schema change, applied once per database.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number: migrations run in ascending order, each exactly once.
    pub version: i32,
    /// What it does (recorded in `brasa_sm_schema`).
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// Every migration, oldest first. Append only: a released migration is never edited.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "subscribers, VPNs and BGP LEG routes",
        sql: "
        CREATE TABLE sm_vpns (name text PRIMARY KEY, data jsonb NOT NULL);
        CREATE TABLE sm_subscribers (name text PRIMARY KEY, data jsonb NOT NULL);
        CREATE TABLE sm_leg_routes (key bytea PRIMARY KEY, data jsonb NOT NULL);
    ",
    },
    Migration {
        version: 2,
        name: "the lease of the active SM node and its fencing token",
        sql: "
        CREATE TABLE sm_lease (
            id smallint PRIMARY KEY CHECK (id = 1),
            holder text NOT NULL,
            token bigint NOT NULL,
            expires_at timestamptz NOT NULL
        );
        INSERT INTO sm_lease VALUES (1, '', 0, '-infinity');
    ",
    },
    Migration {
        version: 3,
        name: "the SM nodes' reports of their roles",
        sql: "
        CREATE TABLE sm_nodes (
            name text PRIMARY KEY,
            grpc text NOT NULL,
            role text NOT NULL,
            token bigint NOT NULL,
            seen_at timestamptz NOT NULL
        );
    ",
    },
    Migration {
        version: 4,
        name: "the change log that keeps standby nodes warm",
        sql: "
        CREATE TABLE sm_change_head (
            id smallint PRIMARY KEY CHECK (id = 1),
            seq bigint NOT NULL
        );
        INSERT INTO sm_change_head VALUES (1, 0);
        CREATE TABLE sm_changes (
            seq bigint PRIMARY KEY,
            token bigint NOT NULL,
            committed_at timestamptz NOT NULL,
            vpns text[] NOT NULL,
            subscribers text[] NOT NULL,
            routes bytea[] NOT NULL
        );
    ",
    },
    Migration {
        version: 5,
        // Records may carry a `services` list that nodes of schema 4 cannot decode: the new
        // version keeps them off this database (they refuse a newer schema).
        name: "subscriber services (PCC rules) in the subscriber records",
        sql: "
        ALTER TABLE sm_subscribers ADD CONSTRAINT sm_subscribers_services_are_a_list
            CHECK (jsonb_typeof(coalesce(data -> 'services', '[]'::jsonb)) = 'array');
    ",
    },
    Migration {
        version: 6,
        // `jsonb` converted every record the SM wrote into its binary form, a parse per row
        // that took a third of a group commit's server time; `json` keeps the text as
        // written (checked, not converted), and SQL's JSON operators work on it the same.
        name: "records kept as the JSON text the SM writes (json, not jsonb)",
        sql: "
        ALTER TABLE sm_subscribers DROP CONSTRAINT sm_subscribers_services_are_a_list;
        ALTER TABLE sm_vpns ALTER COLUMN data TYPE json USING data::json;
        ALTER TABLE sm_subscribers ALTER COLUMN data TYPE json USING data::json;
        ALTER TABLE sm_leg_routes ALTER COLUMN data TYPE json USING data::json;
        ALTER TABLE sm_subscribers ADD CONSTRAINT sm_subscribers_services_are_a_list
            CHECK (json_typeof(coalesce(data -> 'services', '[]'::json)) = 'array');
    ",
    },
];

/// Advisory lock key that serialises migrations of one database ("brasa_sm" in ASCII).
const MIGRATION_LOCK: i64 = 0x6272_6173_615f_736d;

/// Applies every migration the database has not recorded, in one transaction (all or none);
/// returns the schema version the database is at.
pub fn migrate(client: &mut Client) -> Result<i32, PgError> {
    let mut txn = client.transaction()?;
    // Nodes started together: the first migrates, the others wait here and find it done.
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS brasa_sm_schema (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )?;
    let found: i32 = txn
        .query_one("SELECT coalesce(max(version), 0) FROM brasa_sm_schema", &[])?
        .get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if found > known {
        return Err(PgError::SchemaTooNew { found, known });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        txn.batch_execute(m.sql)?;
        txn.execute(
            "INSERT INTO brasa_sm_schema (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )?;
    }
    txn.commit()?;
    Ok(known)
}

/// The schema version recorded in the database (0: never migrated).
pub fn schema_version(client: &mut Client) -> Result<i32, PgError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('brasa_sm_schema') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one("SELECT coalesce(max(version), 0) FROM brasa_sm_schema", &[])?
        .get(0))
}
