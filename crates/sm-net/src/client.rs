//! The reference enforcement point's tokio shell: one gRPC `Attach` stream driven by the sans-IO
//! [`EpReplica`], which decides what to send and when the SM counts as dead; this task only moves
//! messages, sleeps until [`EpReplica::poll_timeout`] and reports events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use brasa_sm::pb;
use brasa_sm::pb::enforcement_point_client::EnforcementPointClient;
use brasa_sm::replica::{LinkOptions, LinkTimeout, ProtocolError};
use brasa_sm::{EpReplica, ReplicaEvent};
use brasa_subscriber::Subscriber;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_stream::wrappers::ReceiverStream;

/// Why the client stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The SM could not be reached.
    #[error("cannot connect to the SM at {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// The SM refused or ended the stream.
    #[error("the SM ended the stream: {} ({:?})", .0.message(), .0.code())]
    Status(tonic::Status),
    /// The SM broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// Nothing from the SM for three keep-alive intervals.
    #[error(transparent)]
    LinkTimeout(#[from] LinkTimeout),
    /// The SM closed the stream normally.
    #[error("the SM closed the stream")]
    Closed,
    /// The client was stopped.
    #[error("the client is stopped")]
    Stopped,
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct EpClientOptions {
    /// `http://127.0.0.1:7790`.
    pub endpoint: String,
    /// The Hello to send.
    pub hello: pb::Hello,
    /// Acknowledgements and keep-alives (both on unless a test exercises the SM).
    pub link: LinkOptions,
    /// Report every upsert and remove as an event; without it only Welcome, sync boundaries,
    /// pull results and the end are reported (a data plane reads the replica instead).
    pub data_events: bool,
}

impl EpClientOptions {
    /// Options for EP `id` at `endpoint`, acknowledging and sending keep-alives.
    pub fn new(endpoint: impl Into<String>, id: impl Into<String>) -> Self {
        EpClientOptions {
            endpoint: endpoint.into(),
            hello: pb::Hello {
                ep_id: id.into(),
                ..pb::Hello::default()
            },
            link: LinkOptions::default(),
            data_events: true,
        }
    }

    /// With this cascade role.
    pub fn role(mut self, role: pb::CascadeRole) -> Self {
        self.hello.role = role as i32;
        self
    }
}

/// What the client reports.
#[derive(Debug)]
pub enum ClientEvent {
    /// A message changed the replica.
    Replica(ReplicaEvent),
    /// The connection ended; `cleared` says whether the failure action erased the mappings.
    Ended {
        /// Why.
        error: ClientError,
        /// The replica was cleared (failure action `clear-mappings`).
        cleared: bool,
    },
}

/// Events waiting for the consumer before the client stops reading the SM.
const EVENT_QUEUE: usize = 4096;
/// Messages to the SM waiting for the gRPC stream.
const OUT_QUEUE: usize = 64;

type PullResult = Result<Option<Subscriber>, String>;

/// What the connection task and the handle share.
struct Shared {
    replica: Mutex<EpReplica>,
    /// Pull requests waiting for their answer, by request id.
    pulls: Mutex<HashMap<u64, oneshot::Sender<PullResult>>>,
    /// The replica has something new to send (a request of the handle).
    outbound: Notify,
}

/// One connection of an EP to the SM.
pub struct EpClient {
    shared: Arc<Shared>,
    events: mpsc::Receiver<ClientEvent>,
    task: tokio::task::JoinHandle<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends everything the replica has to send.
async fn flush(
    replica: &Mutex<EpReplica>,
    out: &mpsc::Sender<pb::EpMessage>,
) -> Result<(), ClientError> {
    loop {
        let next = lock(replica).poll_transmit(Instant::now());
        let Some(msg) = next else {
            return Ok(());
        };
        out.send(msg).await.map_err(|_| ClientError::Stopped)?;
    }
}

impl EpClient {
    /// Connects, says Hello and waits for the Welcome (a refusal is an error here).
    pub async fn connect(options: EpClientOptions) -> Result<EpClient, ClientError> {
        Self::connect_with(options, EpReplica::new()).await
    }

    /// As [`Self::connect`], keeping the subscribers of an earlier connection until the new
    /// sync replaces them (what an EP does across a reconnect).
    pub async fn connect_with(
        options: EpClientOptions,
        replica: EpReplica,
    ) -> Result<EpClient, ClientError> {
        Self::attach(options, replica).await.map_err(|(e, _)| e)
    }

    /// As [`Self::connect_with`]; a failure hands the replica back.
    async fn attach(
        options: EpClientOptions,
        mut replica: EpReplica,
    ) -> Result<EpClient, (ClientError, EpReplica)> {
        let channel = match tonic::transport::Endpoint::from_shared(options.endpoint.clone()) {
            Ok(endpoint) => endpoint
                .initial_stream_window_size(8 << 20)
                .initial_connection_window_size(16 << 20)
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|source| ClientError::Connect {
                    endpoint: options.endpoint.clone(),
                    source,
                }),
            Err(source) => Err(ClientError::Connect {
                endpoint: options.endpoint.clone(),
                source,
            }),
        };
        let channel = match channel {
            Ok(c) => c,
            Err(e) => return Err((e, replica)),
        };
        let mut grpc = EnforcementPointClient::new(channel)
            .max_decoding_message_size(crate::grpc::MAX_MESSAGE)
            .max_encoding_message_size(crate::grpc::MAX_MESSAGE);
        replica.connect(Instant::now(), options.hello.clone(), options.link);
        replica.set_data_events(options.data_events);
        let replica = Mutex::new(replica);
        let (out, out_rx) = mpsc::channel(OUT_QUEUE);
        let back = |e: ClientError, replica: Mutex<EpReplica>| {
            (e, replica.into_inner().unwrap_or_else(|p| p.into_inner()))
        };
        if let Err(e) = flush(&replica, &out).await {
            return Err(back(e, replica));
        }
        let mut inbound = match grpc.attach(ReceiverStream::new(out_rx)).await {
            Ok(r) => r.into_inner(),
            Err(status) => return Err(back(ClientError::Status(status), replica)),
        };
        // Bounded: a consumer that falls behind slows the reading of the stream (and so the SM,
        // through the window) instead of queueing without limit.
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        // The Welcome comes first; reading it here makes `connect` fail for a refused EP.
        let first = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return Err(back(ClientError::Closed, replica)),
            Err(status) => return Err(back(ClientError::Status(status), replica)),
        };
        let handled = lock(&replica).handle(Instant::now(), first);
        let welcome = match handled {
            Ok(w) => w,
            Err(e) => return Err(back(e.into(), replica)),
        };
        if lock(&replica).welcome().is_none() {
            return Err(back(ProtocolError::NoWelcome.into(), replica));
        }
        for e in welcome {
            let _ = events_tx.send(ClientEvent::Replica(e)).await;
        }
        let shared = Arc::new(Shared {
            replica,
            pulls: Mutex::default(),
            outbound: Notify::new(),
        });
        let task = tokio::spawn(run(inbound, out, shared.clone(), events_tx));
        Ok(EpClient {
            shared,
            events,
            task,
        })
    }

    /// Connects to the first of `endpoints` (the SM nodes of an active/standby pair, in any
    /// order) that accepts the EP: a standby refuses it with `UNAVAILABLE` and the next one
    /// is tried. The replica is kept until the new active's full sync replaces it (an EP
    /// resynchronises in full after a fail-over: the new active's update sequence is not the
    /// old one's). The error of the last endpoint tried if none accepts.
    pub async fn connect_any(
        endpoints: &[String],
        options: EpClientOptions,
        replica: EpReplica,
    ) -> Result<EpClient, ClientError> {
        let mut last = ClientError::Closed;
        let mut replica = replica;
        for endpoint in endpoints {
            let options = EpClientOptions {
                endpoint: endpoint.clone(),
                ..options.clone()
            };
            match Self::attach(options, replica).await {
                Ok(client) => return Ok(client),
                Err((e, r)) => {
                    tracing::debug!(%endpoint, error = %e, "SM node did not accept the EP");
                    last = e;
                    replica = r;
                }
            }
        }
        Err(last)
    }

    /// The next event (`None` once the connection ended and every event was read).
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// The next event if one is waiting, without waiting: a consumer takes a burst of pushes
    /// at once this way and handles them together.
    pub fn try_next_event(&mut self) -> Option<ClientEvent> {
        self.events.try_recv().ok()
    }

    /// Waits for the end of the next full sync; returns the subscribers then held.
    pub async fn wait_synced(&mut self) -> Result<usize, ClientError> {
        loop {
            match self.next_event().await {
                Some(ClientEvent::Replica(ReplicaEvent::SyncEnd { subscribers })) => {
                    return Ok(subscribers)
                }
                Some(ClientEvent::Ended { error, .. }) => return Err(error),
                Some(_) => {}
                None => return Err(ClientError::Stopped),
            }
        }
    }

    /// Pull mode: asks the SM who `addr` (in `vpn`) is.
    pub async fn pull(&self, addr: &str, vpn: Option<&str>) -> Result<PullResult, ClientError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut replica = lock(&self.shared.replica);
            let id = replica.pull(addr, vpn)?;
            // Registered before the request can leave, so the answer always finds it.
            lock(&self.shared.pulls).insert(id, tx);
        }
        self.shared.outbound.notify_one();
        rx.await.map_err(|_| ClientError::Stopped)
    }

    /// Tells the SM this EP's cascade role changed (fail-over).
    pub fn set_role(&self, role: pb::CascadeRole) -> Result<(), ClientError> {
        lock(&self.shared.replica).set_role(role)?;
        self.shared.outbound.notify_one();
        Ok(())
    }

    /// Writes a subscriber's opaque state in the SM.
    pub fn set_state(&self, name: &str, state: Vec<u8>) -> Result<(), ClientError> {
        lock(&self.shared.replica).set_state(name, state)?;
        self.shared.outbound.notify_one();
        Ok(())
    }

    /// The replica (do not hold the guard across an await).
    pub fn replica(&self) -> MutexGuard<'_, EpReplica> {
        lock(&self.shared.replica)
    }

    /// Ends the connection and returns the replica (to reconnect with it).
    pub fn close(self) -> EpReplica {
        self.task.abort();
        let replica = std::mem::take(&mut *lock(&self.shared.replica));
        replica
    }
}

impl Drop for EpClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    mut inbound: tonic::Streaming<pb::SmMessage>,
    out: mpsc::Sender<pb::EpMessage>,
    shared: Arc<Shared>,
    events: mpsc::Sender<ClientEvent>,
) {
    let error = loop {
        if let Err(e) = flush(&shared.replica, &out).await {
            break e;
        }
        let deadline = lock(&shared.replica).poll_timeout();
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = inbound.message() => {
                let msg = match msg {
                    Ok(Some(m)) => m,
                    Ok(None) => break ClientError::Closed,
                    Err(status) => break ClientError::Status(status),
                };
                let handled = lock(&shared.replica).handle(Instant::now(), msg);
                let evs = match handled {
                    Ok(evs) => evs,
                    Err(e) => break ClientError::Protocol(e),
                };
                for e in evs {
                    if let ReplicaEvent::Pulled { request_id, result } = &e {
                        if let Some(waiter) = lock(&shared.pulls).remove(request_id) {
                            let _ = waiter.send(result.clone());
                        }
                    }
                    // A dropped receiver only means nobody listens.
                    let _ = events.send(ClientEvent::Replica(e)).await;
                }
            }
            _ = timer => {
                if let Err(e) = lock(&shared.replica).handle_timeout(Instant::now()) {
                    break ClientError::LinkTimeout(e);
                }
            }
            _ = shared.outbound.notified() => {}
        }
    };
    let cleared = lock(&shared.replica).connection_lost();
    // Pulls still waiting get `Stopped`.
    lock(&shared.pulls).clear();
    tracing::debug!(%error, cleared, "EP connection ended");
    let _ = events.send(ClientEvent::Ended { error, cleared }).await;
}
