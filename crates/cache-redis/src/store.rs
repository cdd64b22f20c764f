//! The connection to Redis: one multiplexed connection per node, shared by the operator tools
//! and the sweep (their commands are pipelined on it), re-established in the background after
//! a failure. Its state also tells the Python workers, which make connections of their own
//! ([`Store::connect_own`]), whether Redis is reachable.
//!
//! A caller never waits for a connection: while there is none, a call fails at once with the
//! last connection error, and the connector task retries with a back-off (100 ms doubling to
//! 1 s), re-resolving the master through the Sentinels each time.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, Pipeline, RedisConnectionInfo, RedisError, RedisFuture, Value,
};
use tokio::sync::Notify;

use crate::target::RedisTarget;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A connection to the target: to one node, or to the cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Node(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Node(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// How to (re)connect.
enum Connector {
    Standalone(redis::Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    Cluster(ClusterClient),
}

impl Connector {
    fn new(target: &RedisTarget, connect_timeout: Duration) -> Result<Connector, RedisError> {
        Ok(match target {
            RedisTarget::Standalone { url } => {
                Connector::Standalone(redis::Client::open(url.as_str())?)
            }
            RedisTarget::Sentinel {
                sentinels,
                master,
                db,
                credentials,
            } => {
                let mut info = RedisConnectionInfo::default().set_db(*db);
                if let Some(user) = &credentials.username {
                    info = info.set_username(user);
                }
                if let Some(password) = &credentials.password {
                    info = info.set_password(password);
                }
                let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
                Connector::Sentinel(tokio::sync::Mutex::new(SentinelClient::build(
                    sentinels.clone(),
                    master.clone(),
                    Some(node),
                    SentinelServerType::Master,
                )?))
            }
            RedisTarget::Cluster { seeds } => Connector::Cluster(
                ClusterClient::builder(seeds.clone())
                    .connection_timeout(connect_timeout)
                    // The caller's deadline bounds every call; the cluster client must not
                    // retry past it on its own.
                    .retries(1)
                    .build()?,
            ),
        })
    }

    async fn connect(&self, connect_timeout: Duration) -> Result<Conn, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            // Deadlines are the caller's (`tokio::time::timeout` around each call).
            .set_response_timeout(None);
        match self {
            Connector::Standalone(client) => Ok(Conn::Node(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            )),
            Connector::Sentinel(client) => Ok(Conn::Node(
                client
                    .lock()
                    .await
                    .get_async_connection_with_config(&config)
                    .await?,
            )),
            Connector::Cluster(client) => Ok(Conn::Cluster(client.get_async_connection().await?)),
        }
    }
}

#[derive(Default)]
struct Slot {
    conn: Option<Conn>,
    /// Why there is no connection, while there is none.
    error: Option<String>,
}

/// The shared connection and its connector task.
pub(crate) struct Store {
    slot: Mutex<Slot>,
    lost: Notify,
    connector: Connector,
    connect_timeout: Duration,
    target: String,
}

impl Store {
    /// Prepares the connector and spawns the task that connects (inside a tokio runtime).
    /// Fails only on a client the `redis` crate refuses to build; an unreachable Redis is
    /// not an error here.
    pub(crate) fn start(
        target: &RedisTarget,
        connect_timeout: Duration,
    ) -> Result<(Arc<Store>, tokio::task::JoinHandle<()>), RedisError> {
        let store = Arc::new(Store {
            slot: Mutex::new(Slot {
                conn: None,
                error: Some("not connected yet".into()),
            }),
            lost: Notify::new(),
            connector: Connector::new(target, connect_timeout)?,
            connect_timeout,
            target: target.to_string(),
        });
        let task = tokio::spawn(connect_loop(Arc::clone(&store)));
        Ok((store, task))
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection, or why there is none.
    pub(crate) fn conn(&self) -> Result<Conn, String> {
        let slot = self.slot();
        slot.conn.clone().ok_or_else(|| {
            format!(
                "no connection to Redis at {}: {}",
                self.target,
                slot.error.as_deref().unwrap_or("connecting")
            )
        })
    }

    /// A new connection of the caller's own to the same target (the Python workers drive
    /// theirs on their own threads), bounded by the connect timeout and `limit`.
    pub(crate) async fn connect_own(&self, limit: Duration) -> Result<Conn, String> {
        let limit = limit.min(self.connect_timeout);
        match tokio::time::timeout(limit, self.connector.connect(limit)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(err)) => Err(format!("connecting to Redis at {}: {err}", self.target)),
            Err(_) => Err(format!(
                "no connection to Redis at {} within {limit:?}",
                self.target
            )),
        }
    }

    /// Whether a connection is up now.
    pub(crate) fn connected(&self) -> bool {
        self.slot().conn.is_some()
    }

    /// The last connection error, while disconnected.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.slot().error.clone()
    }

    /// Called with the error of a failed call: a broken connection is dropped and the
    /// connector told to make a new one.
    pub(crate) fn failed(&self, err: &RedisError) {
        if err.is_io_error() || err.is_connection_dropped() || err.is_unrecoverable_error() {
            let mut slot = self.slot();
            if slot.conn.take().is_some() {
                tracing::warn!(target = %self.target, %err, "connection to Redis lost; reconnecting");
            }
            slot.error = Some(err.to_string());
            drop(slot);
            self.lost.notify_one();
        }
    }
}

async fn connect_loop(store: Arc<Store>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let lost = store.lost.notified();
        if store.connected() {
            lost.await;
            continue;
        }
        let attempt = tokio::time::timeout(
            store.connect_timeout,
            store.connector.connect(store.connect_timeout),
        )
        .await;
        match attempt {
            Ok(Ok(conn)) => {
                tracing::info!(target = %store.target, "connected to Redis");
                let mut slot = store.slot();
                slot.conn = Some(conn);
                slot.error = None;
                backoff = BACKOFF_MIN;
            }
            Ok(Err(err)) => {
                store.slot().error = Some(err.to_string());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(_) => {
                store.slot().error =
                    Some(format!("no connection within {:?}", store.connect_timeout));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}
