//! Durable storage of subscribers and VPNs.
//!
//! [`SubscriberStore`] is what the SM service calls: `load` once at start-up, then `apply` (or
//! `apply_batch` for group commit) with each [`ChangeSet`] *before* the change is acknowledged
//! to the LEG or pushed to enforcement points. [`RedbStore`] is the embedded default; the
//! PostgreSQL backend (crate `brasa-subscriber-pg`) implements the same trait. Both store the
//! same encoding ([`for_each_write`], [`decode_subscriber`], …), so that `brasa sm migrate`
//! moves records between them unchanged. This module is the only one in the crate that touches
//! files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::index::{IndexConfig, SubscriberIndex};
use crate::learned::{store_key, LearnedRoute, RouteChange, RouteKey};
use crate::mapping::Prefix;
use crate::record::{ChangeSet, IndexError, Subscriber, SubscriberChange, Vpn, VpnChange};
use crate::route_record::{self, RouteFormat};

const SUBSCRIBERS: TableDefinition<&str, &[u8]> = TableDefinition::new("subscribers");
const VPNS: TableDefinition<&str, &[u8]> = TableDefinition::new("vpns");
/// The BGP LEG's routes that match a configured VPN (what its learnt state is derived from).
const LEG_ROUTES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("leg_routes");
/// What the file's records look like ([`SCHEMA_KEY`]).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SCHEMA_KEY: &str = "schema";

/// The embedded store's schema version: 2 stores the BGP LEG's routes as binary records
/// ([`RouteFormat::Binary`]). Version 1, a file without the `meta` table, stored them as JSON;
/// [`RedbStore::open`] rewrites such a file's routes once.
pub const REDB_SCHEMA: u64 = 2;

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
    /// Another backend (PostgreSQL) failed.
    #[error("{backend}: {source}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// What it reported.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// This node is not (or no longer) the active SM: its fencing token is not the current
    /// one, so the change was refused by the database and nothing was written.
    #[error("not the active subscriber manager: {0}")]
    Fenced(String),
    /// A stored record does not decode (corruption or an incompatible version).
    #[error("stored {what} {key:?} does not decode: {source}")]
    Decode {
        /// "subscriber", "VPN", "BGP LEG route" or "BGP LEG route key".
        what: &'static str,
        /// Its key.
        key: String,
        /// The decoder's complaint.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A record could not be encoded.
    #[error("cannot encode {key:?}: {source}")]
    Encode {
        /// Its key.
        key: String,
        /// The encoder's complaint.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The database was written by a newer version of brasa.
    #[error("the subscriber database has schema {found}; this version reads up to {supported}")]
    Schema {
        /// The file's schema version.
        found: u64,
        /// The newest this version knows.
        supported: u64,
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

impl Snapshot {
    /// Records in the snapshot.
    pub fn len(&self) -> usize {
        self.vpns.len() + self.subscribers.len() + self.routes.len()
    }

    /// Whether the snapshot holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The snapshot as change sets that store every record, at most `per_set` records each
    /// (VPNs first, so that a store which checks references could follow them): what copies
    /// one store into another.
    pub fn into_change_sets(self, per_set: usize) -> Vec<ChangeSet> {
        let per_set = per_set.max(1);
        let mut out: Vec<ChangeSet> = Vec::new();
        let mut current = ChangeSet::default();
        let mut count = 0;
        let next = |current: &mut ChangeSet, count: &mut usize, out: &mut Vec<ChangeSet>| {
            *count += 1;
            if *count == per_set {
                out.push(std::mem::take(current));
                *count = 0;
            }
        };
        for v in self.vpns {
            current.vpns.push(VpnChange {
                name: v.name.clone(),
                new: Some(v),
            });
            next(&mut current, &mut count, &mut out);
        }
        for s in self.subscribers {
            current.subscribers.push(SubscriberChange {
                name: s.name.clone(),
                old_domain: None,
                new: Some(s),
            });
            next(&mut current, &mut count, &mut out);
        }
        for r in self.routes {
            current.routes.push(RouteChange {
                key: r.key,
                new: Some(r),
            });
            next(&mut current, &mut count, &mut out);
        }
        if !current.is_empty() {
            out.push(current);
        }
        out
    }
}

impl Snapshot {
    /// The index over these records: what a node serves from after reading its store.
    pub fn into_index(self, config: IndexConfig) -> Result<SubscriberIndex, IndexError> {
        let mut index = SubscriberIndex::restore(config, self.vpns, self.subscribers)?;
        index.restore_learned(self.routes);
        Ok(index)
    }
}

/// The records a store holds now under some keys (`None`: no record, it was deleted), read
/// from one consistent state of the store: what a standby applies to its index with
/// [`SubscriberIndex::apply_stored`]. Subscribers are keyed by their stored (case-folded) name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoredRecords {
    /// VPNs by name.
    pub vpns: Vec<(String, Option<Vpn>)>,
    /// Subscribers by name.
    pub subscribers: Vec<(String, Option<Subscriber>)>,
    /// The BGP LEG's routes by key.
    pub routes: Vec<(RouteKey, Option<LearnedRoute>)>,
}

impl StoredRecords {
    /// Records held (VPNs, subscribers, routes, deleted ones included).
    pub fn len(&self) -> usize {
        self.vpns.len() + self.subscribers.len() + self.routes.len()
    }

    /// Whether it names no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Durable subscriber storage.
pub trait SubscriberStore {
    /// Reads every VPN and subscriber.
    fn load(&mut self) -> Result<Snapshot, StoreError>;

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
        // Create the tables so that a fresh store loads as empty, and bring an older file to
        // the current schema in the same transaction: a crash leaves it as it was.
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(SUBSCRIBERS).map_err(db_err)?;
        txn.open_table(VPNS).map_err(db_err)?;
        txn.open_table(LEG_ROUTES).map_err(db_err)?;
        let mut meta = txn.open_table(META).map_err(db_err)?;
        let schema = meta.get(SCHEMA_KEY).map_err(db_err)?.map(|v| v.value());
        match schema {
            Some(REDB_SCHEMA) => {}
            Some(found) => {
                return Err(StoreError::Schema {
                    found,
                    supported: REDB_SCHEMA,
                })
            }
            None => {
                migrate_routes_to_binary(&db, &txn)?;
                meta.insert(SCHEMA_KEY, REDB_SCHEMA).map_err(db_err)?;
            }
        }
        drop(meta);
        txn.commit().map_err(db_err)?;
        Ok(RedbStore { db })
    }
}

/// Schema 1 → 2: rewrites every route record of the last committed state (read beside `txn`)
/// in the binary form, within `txn`. A fresh file has none.
fn migrate_routes_to_binary(db: &Database, txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let old = db.begin_read().map_err(db_err)?;
    let old = match old.open_table(LEG_ROUTES) {
        Ok(table) => table,
        // A file created empty by this transaction.
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(db_err(e)),
    };
    let mut routes = txn.open_table(LEG_ROUTES).map_err(db_err)?;
    let mut buf = Vec::with_capacity(64);
    for item in old.iter().map_err(db_err)? {
        let (key, value) = item.map_err(db_err)?;
        let route = decode_route(key.value(), value.value())?;
        buf.clear();
        encode_route(&route, RouteFormat::Binary, &mut buf)?;
        routes.insert(key.value(), buf.as_slice()).map_err(db_err)?;
    }
    Ok(())
}

impl SubscriberStore for RedbStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let mut snapshot = Snapshot::default();
        let vpns = txn.open_table(VPNS).map_err(db_err)?;
        for item in vpns.iter().map_err(db_err)? {
            let (key, value) = item.map_err(db_err)?;
            snapshot.vpns.push(decode_vpn(key.value(), value.value())?);
        }
        let subs = txn.open_table(SUBSCRIBERS).map_err(db_err)?;
        for item in subs.iter().map_err(db_err)? {
            let (key, value) = item.map_err(db_err)?;
            snapshot
                .subscribers
                .push(decode_subscriber(key.value(), value.value())?);
        }
        let routes = txn.open_table(LEG_ROUTES).map_err(db_err)?;
        for item in routes.iter().map_err(db_err)? {
            let (key, value) = item.map_err(db_err)?;
            snapshot
                .routes
                .push(decode_route(key.value(), value.value())?);
        }
        Ok(snapshot)
    }

    fn apply_batch(&mut self, batch: &[ChangeSet]) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(db_err)?;
        // Each commit also records the allocator state, so that opening the file after a crash
        // (kill -9, power loss) does not walk the whole database to repair it: minutes at
        // 10 M subscribers. Group commit makes the extra write per commit cheap.
        txn.set_quick_repair(true);
        {
            let mut vpns = txn.open_table(VPNS).map_err(db_err)?;
            let mut subs = txn.open_table(SUBSCRIBERS).map_err(db_err)?;
            let mut routes = txn.open_table(LEG_ROUTES).map_err(db_err)?;
            for_each_write(batch, RouteFormat::Binary, |write| {
                match write {
                    StoredWrite::Vpn { name, value } => match value {
                        Some(v) => drop(vpns.insert(name, v).map_err(db_err)?),
                        None => drop(vpns.remove(name).map_err(db_err)?),
                    },
                    StoredWrite::Subscriber { name, value, .. } => match value {
                        Some(v) => drop(subs.insert(name, v).map_err(db_err)?),
                        None => drop(subs.remove(name).map_err(db_err)?),
                    },
                    StoredWrite::Route { key, value } => match value {
                        Some(v) => drop(routes.insert(key, v).map_err(db_err)?),
                        None => drop(routes.remove(key).map_err(db_err)?),
                    },
                }
                Ok(())
            })?;
        }
        txn.commit().map_err(db_err)?;
        Ok(())
    }
}

/// One record write of a batch, in the stored encoding every backend shares: JSON values (a
/// subscriber without its learnt mappings, a VPN without its learnt labels) under the
/// subscriber's or VPN's name, and route records ([`crate::route_record`], in the backend's
/// [`RouteFormat`]) under a route's fixed-width key. `value: None` deletes the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredWrite<'a> {
    /// A subscriber, keyed by its name.
    Subscriber {
        /// The subscriber's name.
        name: &'a str,
        /// Its JSON record, `None` to delete it.
        value: Option<&'a [u8]>,
        /// The subscriber did not exist before the batch, as the index that made the change
        /// sets knew it. A backend may insert such a record without looking for an old one,
        /// but must still be correct when one is there.
        created: bool,
    },
    /// A VPN, keyed by its name.
    Vpn {
        /// The VPN's name.
        name: &'a str,
        /// Its JSON record, `None` to delete it.
        value: Option<&'a [u8]>,
    },
    /// A route the BGP LEG learnt, keyed by its 42-byte store key.
    Route {
        /// Peer, route distinguisher and prefix, fixed width (sorts by peer).
        key: &'a [u8],
        /// Its record, `None` to delete it.
        value: Option<&'a [u8]>,
    },
}

/// Encodes every change of `batch` in order, route records in `routes`, and hands each write to
/// `write` (one encoding buffer for the whole batch: group commits carry thousands of records).
/// Later writes of the same key override earlier ones, so a subscriber or VPN that several
/// change sets of the batch carry is encoded and written once, from the last of them. The
/// subscribers and VPNs of a set that only the BGP LEG's learning made
/// ([`ChangeSet::learned_only`]) are not written at all: their stored records did not change,
/// and each batch of the LEG touches the same `community@VPN` holders and VPNs again.
pub fn for_each_write(
    batch: &[ChangeSet],
    routes: RouteFormat,
    mut write: impl FnMut(StoredWrite<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let latest = LatestSets::of(batch);
    let mut buf = Vec::with_capacity(256);
    for (set, changes) in batch.iter().enumerate() {
        for c in &changes.routes {
            let key = store_key(&c.key);
            let value = match &c.new {
                Some(route) => {
                    buf.clear();
                    encode_route(route, routes, &mut buf)?;
                    Some(buf.as_slice())
                }
                None => None,
            };
            write(StoredWrite::Route { key: &key, value })?;
        }
        if changes.learned_only {
            continue;
        }
        for c in &changes.vpns {
            if !latest.is_vpn_latest(&c.name, set) {
                continue;
            }
            let value = match &c.new {
                Some(v) if v.has_learned() => Some(encode(&mut buf, &c.name, &v.configured())?),
                Some(v) => Some(encode(&mut buf, &c.name, v)?),
                None => None,
            };
            write(StoredWrite::Vpn {
                name: &c.name,
                value,
            })?;
        }
        for c in &changes.subscribers {
            let Some(created) = latest.subscriber_created(c, set) else {
                continue;
            };
            let value = match &c.new {
                Some(s) => Some(encode(&mut buf, &c.name.as_str(), &StoredSubscriber(s))?),
                None => None,
            };
            write(StoredWrite::Subscriber {
                name: c.name.as_str(),
                value,
                created,
            })?;
        }
    }
    Ok(())
}

/// Appends the record of `route` in `format` (what [`for_each_write`] hands a backend).
pub fn encode_route(
    route: &LearnedRoute,
    format: RouteFormat,
    out: &mut Vec<u8>,
) -> Result<(), StoreError> {
    route_record::encode(route, format, out).map_err(|source| StoreError::Encode {
        key: route.key.to_string(),
        source: source.into(),
    })
}

/// The index's hasher (seeded per map) rather than SipHash: a group commit looks up the name of
/// every subscriber of thousands of change sets.
type BatchHasher = foldhash::fast::RandomState;

/// For a batch of several change sets: the last set that writes each subscriber and VPN, and
/// whether each subscriber existed before the batch (its first change says). Empty for a single
/// set, where every record is written.
#[derive(Default)]
struct LatestSets<'a> {
    /// Last set, and created by the batch.
    subscribers: HashMap<&'a str, (usize, bool), BatchHasher>,
    vpns: HashMap<&'a str, usize, BatchHasher>,
}

impl<'a> LatestSets<'a> {
    fn of(batch: &'a [ChangeSet]) -> Self {
        let mut latest = LatestSets::default();
        if batch.len() < 2 {
            return latest;
        }
        latest
            .subscribers
            .reserve(batch.iter().map(|c| c.subscribers.len()).sum());
        for (set, changes) in batch.iter().enumerate() {
            if changes.learned_only {
                continue;
            }
            for c in &changes.subscribers {
                latest
                    .subscribers
                    .entry(c.name.as_str())
                    .and_modify(|(last, _)| *last = set)
                    .or_insert((set, c.old_domain.is_none()));
            }
            for c in &changes.vpns {
                latest.vpns.insert(&c.name, set);
            }
        }
        latest
    }

    /// `None` when a later set of the batch carries the subscriber again; else whether the
    /// batch created it.
    fn subscriber_created(&self, c: &SubscriberChange, set: usize) -> Option<bool> {
        match self.subscribers.get(c.name.as_str()) {
            None => Some(c.old_domain.is_none()),
            Some(&(last, created)) => (last == set).then_some(created),
        }
    }

    fn is_vpn_latest(&self, name: &str, set: usize) -> bool {
        self.vpns.get(name).is_none_or(|last| *last == set)
    }
}

/// Decodes a stored subscriber record (`key` names it in the error).
pub fn decode_subscriber(key: &str, value: &[u8]) -> Result<Subscriber, StoreError> {
    serde_json::from_slice(value).map_err(|source| StoreError::Decode {
        what: "subscriber",
        key: key.to_owned(),
        source: source.into(),
    })
}

/// Decodes a stored VPN record (`key` names it in the error).
pub fn decode_vpn(key: &str, value: &[u8]) -> Result<Vpn, StoreError> {
    serde_json::from_slice(value).map_err(|source| StoreError::Decode {
        what: "VPN",
        key: key.to_owned(),
        source: source.into(),
    })
}

/// Decodes the BGP LEG route stored under `key` (its [`StoredWrite::Route`] key) as `value`,
/// a record in either [`RouteFormat`].
pub fn decode_route(key: &[u8], value: &[u8]) -> Result<LearnedRoute, StoreError> {
    let route_key = decode_route_key(key)?;
    route_record::decode(route_key, value).map_err(|source| StoreError::Decode {
        what: "BGP LEG route",
        key: route_key.to_string(),
        source: source.into(),
    })
}

/// The route key a store keeps a route under ([`StoredWrite::Route`]): 16 bytes of peer
/// (IPv4 mapped into IPv6), the 8-byte route distinguisher, the family (4 or 6), 16 bytes of
/// prefix address (IPv4 mapped) and its length.
pub fn decode_route_key(key: &[u8]) -> Result<RouteKey, StoreError> {
    let bad = |why: &str| StoreError::Decode {
        what: "BGP LEG route key",
        key: key.iter().map(|b| format!("{b:02x}")).collect(),
        source: why.into(),
    };
    let key: &[u8; 42] = key.try_into().map_err(|_| bad("not 42 bytes long"))?;
    let octets = |at: usize| -> [u8; 16] {
        let mut out = [0; 16];
        out.copy_from_slice(&key[at..at + 16]);
        out
    };
    let peer = std::net::Ipv6Addr::from(octets(0));
    let peer = peer
        .to_ipv4_mapped()
        .map_or(std::net::IpAddr::V6(peer), std::net::IpAddr::V4);
    let mut rd = [0; 8];
    rd.copy_from_slice(&key[16..24]);
    let addr = std::net::Ipv6Addr::from(octets(25));
    let len = key[41];
    let prefix = match (key[24], addr.to_ipv4_mapped()) {
        (4, Some(v4)) => Prefix::new(v4.into(), len),
        (6, _) => Prefix::new(addr.into(), len),
        _ => return Err(bad("neither an IPv4 nor an IPv6 prefix")),
    }
    .map_err(|e| bad(&e.to_string()))?;
    Ok(RouteKey {
        peer,
        rd: u64::from_be_bytes(rd),
        prefix,
    })
}

/// A subscriber as stored: without its learnt mappings (serialised without copying the rest).
struct StoredSubscriber<'a>(&'a Subscriber);

impl serde::Serialize for StoredSubscriber<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let sub = self.0;
        let mut st = s.serialize_struct("Subscriber", 9)?;
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
        if !sub.services.is_empty() {
            st.serialize_field("services", &sub.services)?;
        }
        st.end()
    }
}

/// `key` names the record in the error only: it is not formatted on success.
fn encode<'b, T: serde::Serialize>(
    buf: &'b mut Vec<u8>,
    key: &dyn std::fmt::Display,
    value: &T,
) -> Result<&'b [u8], StoreError> {
    buf.clear();
    serde_json::to_writer(&mut *buf, value).map_err(|source| StoreError::Encode {
        key: key.to_string(),
        source: source.into(),
    })?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NameCase, SubscriberName};

    fn change(name: &str, property: &str) -> SubscriberChange {
        let mut sub = Subscriber::new(SubscriberName::new(name, NameCase::Sensitive).unwrap());
        sub.properties = vec![("p".into(), property.into())];
        SubscriberChange {
            name: sub.name.clone(),
            old_domain: None,
            new: Some(sub),
        }
    }

    fn writes(batch: &[ChangeSet]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for_each_write(batch, RouteFormat::Binary, |w| {
            if let StoredWrite::Subscriber { name, value, .. } = w {
                let value = value.map(|v| String::from_utf8_lossy(v).into_owned());
                out.push((name.to_owned(), value.unwrap_or_default()));
            }
            Ok(())
        })
        .unwrap();
        out
    }

    fn learned_route(prefix: &str) -> LearnedRoute {
        LearnedRoute {
            key: RouteKey {
                peer: "192.0.2.1".parse().unwrap(),
                rd: (1000u64 << 32) | 7,
                prefix: prefix.parse().unwrap(),
            },
            label: 16,
            attrs: std::sync::Arc::new(crate::RouteAttributes::new(
                "10.10.0.1".parse().unwrap(),
                vec!["1000:7".parse().unwrap()],
                vec!["100:1".parse().unwrap()],
            )),
        }
    }

    #[test]
    fn a_schema_1_file_gets_binary_route_records_and_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let route = learned_route("10.1.2.0/24");
        // A file as brasa wrote it before schema 2: no `meta` table, routes as JSON text.
        {
            let db = Database::create(dir.path().join(DB_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(SUBSCRIBERS).unwrap();
            txn.open_table(VPNS).unwrap();
            txn.open_table(LEG_ROUTES)
                .unwrap()
                .insert(
                    store_key(&route.key).as_slice(),
                    br#"{"peer":"192.0.2.1","rd":4294967296007,"prefix":"10.1.2.0/24","label":16,"next_hop":"10.10.0.1","targets":["1000:7"],"communities":["100:1"]}"#.as_slice(),
                )
                .unwrap();
            txn.commit().unwrap();
        }
        let raw = |dir: &Path| {
            let db = Database::open(dir.join(DB_FILE)).unwrap();
            let txn = db.begin_read().unwrap();
            let schema = txn
                .open_table(META)
                .unwrap()
                .get(SCHEMA_KEY)
                .unwrap()
                .map(|v| v.value());
            let routes = txn.open_table(LEG_ROUTES).unwrap();
            let values: Vec<Vec<u8>> = routes
                .iter()
                .unwrap()
                .map(|item| item.unwrap().1.value().to_vec())
                .collect();
            (schema, values)
        };
        for _ in 0..2 {
            let mut store = RedbStore::open(dir.path()).unwrap();
            assert_eq!(store.load().unwrap().routes, std::slice::from_ref(&route));
            drop(store);
            let (schema, values) = raw(dir.path());
            assert_eq!(schema, Some(REDB_SCHEMA));
            let mut binary = Vec::new();
            encode_route(&route, RouteFormat::Binary, &mut binary).unwrap();
            assert_eq!(values, [binary]);
        }
    }

    #[test]
    fn a_file_of_a_newer_schema_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        drop(RedbStore::open(dir.path()).unwrap());
        {
            let db = Database::open(dir.path().join(DB_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(SCHEMA_KEY, REDB_SCHEMA + 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let err = RedbStore::open(dir.path()).err().unwrap();
        assert!(
            matches!(err, StoreError::Schema { found, supported: REDB_SCHEMA } if found == REDB_SCHEMA + 1),
            "{err}"
        );
    }

    #[test]
    fn a_set_of_learning_writes_its_routes_and_no_subscriber_or_vpn() {
        let route = learned_route("10.1.2.0/24");
        let learnt = ChangeSet {
            subscribers: vec![SubscriberChange {
                old_domain: Some("default".into()),
                ..change("a", "2")
            }],
            vpns: vec![VpnChange {
                name: "vpn1".into(),
                new: None,
            }],
            routes: vec![RouteChange {
                key: route.key,
                new: Some(route.clone()),
            }],
            learned_only: true,
        };
        let written = |batch: &[ChangeSet]| {
            let mut out = Vec::new();
            for_each_write(batch, RouteFormat::Binary, |w| {
                out.push(match w {
                    StoredWrite::Subscriber {
                        name,
                        value,
                        created,
                    } => format!(
                        "{name} {created} {}",
                        String::from_utf8_lossy(value.unwrap())
                    ),
                    StoredWrite::Vpn { name, .. } => name.to_owned(),
                    StoredWrite::Route { key, value } => {
                        let back = decode_route(key, value.unwrap()).unwrap();
                        assert_eq!(back, route);
                        "route".to_owned()
                    }
                });
                Ok(())
            })
            .unwrap();
            out
        };
        assert_eq!(written(std::slice::from_ref(&learnt)), ["route"]);
        // The subscriber a login created earlier in the batch is written once, from that
        // login, and still says the batch created it.
        let login = ChangeSet {
            subscribers: vec![change("a", "1")],
            ..ChangeSet::default()
        };
        let out = written(&[login, learnt]);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(
            out[0].starts_with("a true ") && out[0].contains(r#"["p","1"]"#),
            "{out:?}"
        );
        assert_eq!(out[1], "route");
    }

    #[test]
    fn a_record_several_sets_of_a_batch_carry_is_written_once_from_the_last() {
        let set = |subs: Vec<SubscriberChange>| ChangeSet {
            subscribers: subs,
            ..ChangeSet::default()
        };
        let batch = [
            set(vec![change("a", "1"), change("b", "1")]),
            set(vec![change("a", "2")]),
            set(vec![change("c", "1"), change("a", "3")]),
        ];
        let written = writes(&batch);
        let names: Vec<&str> = written.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["b", "c", "a"]);
        assert!(written[2].1.contains(r#"["p","3"]"#), "{:?}", written[2]);
        // A single set is written as it is.
        assert_eq!(writes(&batch[..1]).len(), 2);
    }

    #[test]
    fn a_write_says_whether_the_batch_created_the_subscriber() {
        let set = |subs: Vec<SubscriberChange>| ChangeSet {
            subscribers: subs,
            ..ChangeSet::default()
        };
        let existing = |name: &str, property: &str| SubscriberChange {
            old_domain: Some("default".into()),
            ..change(name, property)
        };
        let created = |batch: &[ChangeSet]| {
            let mut out = Vec::new();
            for_each_write(batch, RouteFormat::Binary, |w| {
                if let StoredWrite::Subscriber { name, created, .. } = w {
                    out.push((name.to_owned(), created));
                }
                Ok(())
            })
            .unwrap();
            out
        };
        let own = |v: &[(&str, bool)]| -> Vec<(String, bool)> {
            v.iter().map(|(n, c)| (n.to_string(), *c)).collect()
        };
        // One set: each change says it.
        assert_eq!(
            created(&[set(vec![change("a", "1"), existing("b", "1")])]),
            own(&[("a", true), ("b", false)])
        );
        // Several sets: the first change of a name says whether it existed before the batch;
        // "a" created then replaced is still new to the store, "b" that existed stays old.
        let batch = [
            set(vec![change("a", "1"), existing("b", "1")]),
            set(vec![existing("a", "2"), change("b", "2")]),
        ];
        assert_eq!(created(&batch), own(&[("a", true), ("b", false)]));
    }
}
