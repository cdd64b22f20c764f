//! Durable storage of subscribers and VPNs.
//!
//! [`SubscriberStore`] is what the SM service calls: `load` once at start-up, then `apply` (or
//! `apply_batch` for group commit) with each [`ChangeSet`] *before* the change is acknowledged
//! to the LEG or pushed to enforcement points. [`RedbStore`] is the embedded default; a
//! PostgreSQL backend implements the same trait later. This module is the only one in the crate
//! that touches files.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::learned::{store_key, LearnedRoute};
use crate::record::{ChangeSet, Subscriber, Vpn};

const SUBSCRIBERS: TableDefinition<&str, &[u8]> = TableDefinition::new("subscribers");
const VPNS: TableDefinition<&str, &[u8]> = TableDefinition::new("vpns");
/// The BGP LEG's routes that match a configured VPN (what its learnt state is derived from).
const LEG_ROUTES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("leg_routes");

/// File name of the redb database inside the component's data directory.
pub const DB_FILE: &str = "subscribers.redb";

/// Why the store failed. The change it was applying is not durable and must not be acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The embedded database failed.
    #[error("subscriber database: {0}")]
    Db(#[from] redb::Error),
    /// A stored record does not decode (corruption or an incompatible version).
    #[error("stored {what} {key:?} does not decode: {source}")]
    Decode {
        /// "subscriber", "VPN" or "BGP LEG route".
        what: &'static str,
        /// Its key.
        key: String,
        /// The decoder's complaint.
        source: serde_json::Error,
    },
    /// A record could not be encoded.
    #[error("cannot encode {key:?}: {source}")]
    Encode {
        /// Its key.
        key: String,
        /// The encoder's complaint.
        source: serde_json::Error,
    },
}

/// Everything a store holds, as loaded at start-up.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Every VPN.
    pub vpns: Vec<Vpn>,
    /// Every subscriber.
    pub subscribers: Vec<Subscriber>,
    /// The BGP LEG's routes that matched a configured VPN
    /// ([`crate::SubscriberIndex::restore_learned`]).
    pub routes: Vec<LearnedRoute>,
}

/// Durable subscriber storage.
pub trait SubscriberStore {
    /// Reads every VPN and subscriber.
    fn load(&self) -> Result<Snapshot, StoreError>;

    /// Makes one change set durable; returns only once it would survive a crash.
    fn apply(&mut self, changes: &ChangeSet) -> Result<(), StoreError> {
        self.apply_batch(std::slice::from_ref(changes))
    }

    /// Makes several change sets durable in one commit (group commit for high login rates);
    /// later sets override earlier ones for the same key.
    ///
    /// What the BGP LEG learnt is not part of the records: a subscriber is stored without its
    /// `learned` mappings and a VPN without its `learned_labels` (both are derived again from
    /// the stored `routes` at start-up).
    fn apply_batch(&mut self, batch: &[ChangeSet]) -> Result<(), StoreError>;
}

/// The embedded redb store.
pub struct RedbStore {
    db: Database,
}

fn db_err<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(e.into())
}

impl RedbStore {
    /// Opens (creating if needed) `DB_FILE` inside `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let db = Database::create(data_dir.join(DB_FILE)).map_err(db_err)?;
        // Create the tables so that a fresh store loads as empty.
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(SUBSCRIBERS).map_err(db_err)?;
        txn.open_table(VPNS).map_err(db_err)?;
        txn.open_table(LEG_ROUTES).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        Ok(RedbStore { db })
    }
}

impl SubscriberStore for RedbStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let mut snapshot = Snapshot::default();
        let vpns = txn.open_table(VPNS).map_err(db_err)?;
        for item in vpns.iter().map_err(db_err)? {
            let (key, value) = item.map_err(db_err)?;
            let vpn =
                serde_json::from_slice(value.value()).map_err(|source| StoreError::Decode {
                    what: "VPN",
                    key: key.value().to_owned(),
                    source,
                })?;
            snapshot.vpns.push(vpn);
        }
        let subs = txn.open_table(SUBSCRIBERS).map_err(db_err)?;
        for item in subs.iter().map_err(db_err)? {
            let (key, value) = item.map_err(db_err)?;
            let sub =
                serde_json::from_slice(value.value()).map_err(|source| StoreError::Decode {
                    what: "subscriber",
                    key: key.value().to_owned(),
                    source,
                })?;
            snapshot.subscribers.push(sub);
        }
        let routes = txn.open_table(LEG_ROUTES).map_err(db_err)?;
        for item in routes.iter().map_err(db_err)? {
            let (_, value) = item.map_err(db_err)?;
            let route =
                serde_json::from_slice(value.value()).map_err(|source| StoreError::Decode {
                    what: "BGP LEG route",
                    key: String::from_utf8_lossy(value.value()).into_owned(),
                    source,
                })?;
            snapshot.routes.push(route);
        }
        Ok(snapshot)
    }

    fn apply_batch(&mut self, batch: &[ChangeSet]) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(db_err)?;
        // Each commit also records the allocator state, so that opening the file after a crash
        // (kill -9, power loss) does not walk the whole database to repair it: minutes at
        // 10 M subscribers. Group commit makes the extra write per commit cheap.
        txn.set_quick_repair(true);
        // One encoding buffer for the whole batch: group commits carry thousands of records.
        let mut buf = Vec::with_capacity(256);
        {
            let mut vpns = txn.open_table(VPNS).map_err(db_err)?;
            let mut subs = txn.open_table(SUBSCRIBERS).map_err(db_err)?;
            let mut routes = txn.open_table(LEG_ROUTES).map_err(db_err)?;
            for changes in batch {
                for c in &changes.vpns {
                    match &c.new {
                        Some(v) if v.has_learned() => {
                            encode(&mut buf, &c.name, &v.configured())?;
                            vpns.insert(c.name.as_str(), buf.as_slice())
                                .map_err(db_err)?;
                        }
                        Some(v) => {
                            encode(&mut buf, &c.name, v)?;
                            vpns.insert(c.name.as_str(), buf.as_slice())
                                .map_err(db_err)?;
                        }
                        None => {
                            vpns.remove(c.name.as_str()).map_err(db_err)?;
                        }
                    }
                }
                for c in &changes.subscribers {
                    let key = c.name.as_str();
                    match &c.new {
                        Some(s) => {
                            encode(&mut buf, key, &StoredSubscriber(s))?;
                            subs.insert(key, buf.as_slice()).map_err(db_err)?;
                        }
                        None => {
                            subs.remove(key).map_err(db_err)?;
                        }
                    }
                }
                for c in &changes.routes {
                    let key = store_key(&c.key);
                    match &c.new {
                        Some(route) => {
                            encode(&mut buf, &c.key.to_string(), route)?;
                            routes
                                .insert(key.as_slice(), buf.as_slice())
                                .map_err(db_err)?;
                        }
                        None => {
                            routes.remove(key.as_slice()).map_err(db_err)?;
                        }
                    }
                }
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(())
    }
}

/// A subscriber as stored: without its learnt mappings (serialised without copying the rest).
struct StoredSubscriber<'a>(&'a Subscriber);

impl serde::Serialize for StoredSubscriber<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let sub = self.0;
        let mut st = s.serialize_struct("Subscriber", 8)?;
        st.serialize_field("name", &sub.name)?;
        st.serialize_field("domain", &sub.domain)?;
        st.serialize_field("mappings", &sub.mappings)?;
        if !sub.communities.is_empty() {
            st.serialize_field("communities", &sub.communities)?;
        }
        st.serialize_field("properties", &sub.properties)?;
        st.serialize_field("state", &sub.state)?;
        st.serialize_field("logged_in", &sub.logged_in)?;
        st.serialize_field("auto_logout", &sub.auto_logout)?;
        st.end()
    }
}

fn encode<T: serde::Serialize>(buf: &mut Vec<u8>, key: &str, value: &T) -> Result<(), StoreError> {
    buf.clear();
    serde_json::to_writer(&mut *buf, value).map_err(|source| StoreError::Encode {
        key: key.to_owned(),
        source,
    })
}
