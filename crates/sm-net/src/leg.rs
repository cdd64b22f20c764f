//! A small LEG client: the generated stub plus helpers for the common calls (used by the
//! operator commands, the tests and the benchmark).

use tonic::transport::Channel;

use crate::client::ClientError;
use crate::pb;
use crate::pb::subscriber_manager_client::SubscriberManagerClient;

/// A connection to the SM's LEG API.
#[derive(Clone)]
pub struct LegClient {
    grpc: SubscriberManagerClient<Channel>,
}

impl LegClient {
    /// Connects to `endpoint` (`http://127.0.0.1:7790`).
    pub async fn connect(endpoint: &str) -> Result<LegClient, ClientError> {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
            .map_err(|source| ClientError::Connect {
                endpoint: endpoint.to_owned(),
                source,
            })?
            .tcp_nodelay(true)
            .initial_stream_window_size(8 << 20)
            .initial_connection_window_size(16 << 20)
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        Ok(LegClient {
            grpc: SubscriberManagerClient::new(channel)
                .max_decoding_message_size(crate::grpc::MAX_MESSAGE)
                .max_encoding_message_size(crate::grpc::MAX_MESSAGE),
        })
    }

    /// The generated client, for every other call.
    pub fn grpc(&mut self) -> &mut SubscriberManagerClient<Channel> {
        &mut self.grpc
    }

    /// A replacing login with `mappings` in `domain` (or the current/default domain).
    pub async fn login(
        &mut self,
        name: &str,
        mappings: &[&str],
        domain: Option<&str>,
    ) -> Result<pb::ChangeReply, tonic::Status> {
        self.grpc
            .login(login_request(name, mappings, domain))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Logout by name.
    pub async fn logout(&mut self, name: &str) -> Result<pb::ChangeReply, tonic::Status> {
        self.grpc
            .logout(pb::LogoutRequest {
                name: name.to_owned(),
                domain: None,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// The subscriber called `name`, `None` if there is none.
    pub async fn get(&mut self, name: &str) -> Result<Option<pb::Subscriber>, tonic::Status> {
        let request = pb::GetSubscriberRequest {
            name: name.to_owned(),
            domain: None,
        };
        match self.grpc.get_subscriber(request).await {
            Ok(r) => Ok(Some(r.into_inner())),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(s),
        }
    }
}

/// A replacing login request.
pub fn login_request(name: &str, mappings: &[&str], domain: Option<&str>) -> pb::LoginRequest {
    pb::LoginRequest {
        name: name.to_owned(),
        mappings: mappings.iter().map(|m| (*m).to_owned()).collect(),
        domain: domain.map(str::to_owned),
        ..pb::LoginRequest::default()
    }
}

/// A login as a bulk-stream operation.
pub fn login_op(name: &str, mappings: &[&str], domain: Option<&str>) -> pb::LegOp {
    pb::LegOp {
        op: Some(pb::leg_op::Op::Login(login_request(name, mappings, domain))),
    }
}

/// A logout as a bulk-stream operation.
pub fn logout_op(name: &str) -> pb::LegOp {
    pb::LegOp {
        op: Some(pb::leg_op::Op::Logout(pb::LogoutRequest {
            name: name.to_owned(),
            domain: None,
        })),
    }
}

/// The gRPC code of an operation the SM did not apply because it is not (or no longer) the
/// active node: the operation is not acknowledged and goes to the next node.
const UNAVAILABLE: i32 = tonic::Code::Unavailable as i32;

/// A batch sent and not yet answered in full.
struct InFlight {
    tag: u64,
    ops: Vec<pb::LegOp>,
    /// The final result of each op, once known.
    results: Vec<Option<pb::OpResult>>,
    /// Which ops the current stream's copy of the batch carries, by position.
    sent: Vec<usize>,
}

type BulkStream = (
    tokio::sync::mpsc::Sender<pb::BulkRequest>,
    tonic::Streaming<pb::BulkReply>,
);

/// A LEG's bulk stream to an active/standby pair (or more) of SM nodes: batches go to the
/// active node; when it fails (the stream breaks, no answer for `patience`, or operations
/// come back `UNAVAILABLE` because it stepped down) every operation not acknowledged is sent
/// again, in order, to the node that accepts the stream next (a standby refuses it). An
/// operation is acknowledged only by a result other than `UNAVAILABLE`, which the SM gives once
/// the change is committed; a resent operation may have been applied by a node that then
/// failed before answering, which is why LEG operations are idempotent (a replacing login, a
/// logout) when resent to the same database.
pub struct FailoverBulk {
    endpoints: Vec<String>,
    next_endpoint: usize,
    stream: Option<BulkStream>,
    in_flight: std::collections::VecDeque<InFlight>,
    next_tag: u64,
    patience: std::time::Duration,
    give_up: std::time::Duration,
}

impl FailoverBulk {
    /// A stream over `endpoints` (`http://…`, any order). A node that answers nothing for
    /// `patience` while batches wait is given up on (a paused or partitioned node: use a little
    /// more than the lease time); `give_up` bounds the search for an active node.
    pub fn new(
        endpoints: Vec<String>,
        patience: std::time::Duration,
        give_up: std::time::Duration,
    ) -> FailoverBulk {
        FailoverBulk {
            endpoints,
            next_endpoint: 0,
            stream: None,
            in_flight: std::collections::VecDeque::new(),
            next_tag: 0,
            patience,
            give_up,
        }
    }

    /// The node the stream is open to, if one is.
    pub fn endpoint(&self) -> Option<&str> {
        let connected = self.stream.is_some();
        let current = self.endpoints.get(self.next_endpoint)?;
        connected.then_some(current.as_str())
    }

    /// Batches sent and not yet answered in full.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Sends a batch; returns its tag (batches are answered by [`Self::next`] in this order).
    pub async fn send(&mut self, ops: Vec<pb::LegOp>) -> Result<u64, ClientError> {
        let tag = self.next_tag;
        self.next_tag += 1;
        let n = ops.len();
        self.in_flight.push_back(InFlight {
            tag,
            ops,
            results: vec![None; n],
            sent: Vec::new(),
        });
        if self.stream.is_none() {
            // Connecting sends everything in flight, this batch included.
            self.reconnect().await?;
            return Ok(tag);
        }
        let last = self.in_flight.len() - 1;
        if !self.send_one(last).await {
            self.reconnect().await?;
        }
        Ok(tag)
    }

    /// The next batch (in sending order) whose every operation has a final result.
    pub async fn next(&mut self) -> Result<(u64, Vec<pb::OpResult>), ClientError> {
        loop {
            if let Some(front) = self.in_flight.front() {
                if front.results.iter().all(Option::is_some) {
                    let done = self.in_flight.pop_front().ok_or(ClientError::Closed)?;
                    let results = done.results.into_iter().flatten().collect();
                    return Ok((done.tag, results));
                }
            } else {
                return Err(ClientError::Closed);
            }
            let Some((_, replies)) = self.stream.as_mut() else {
                self.reconnect().await?;
                continue;
            };
            let reply = match tokio::time::timeout(self.patience, replies.message()).await {
                Ok(Ok(Some(reply))) => reply,
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                    self.reconnect().await?;
                    continue;
                }
            };
            if !self.record(reply) {
                // The node stepped down: what it refused goes to the next one.
                self.reconnect().await?;
            }
        }
    }

    /// Records a reply; false if some operation came back `UNAVAILABLE`.
    fn record(&mut self, reply: pb::BulkReply) -> bool {
        let Some(batch) = self.in_flight.iter_mut().find(|b| b.tag == reply.tag) else {
            return true;
        };
        let mut refused = false;
        for (position, result) in batch.sent.iter().zip(reply.results) {
            if result.code == UNAVAILABLE {
                refused = true;
            } else if let Some(slot) = batch.results.get_mut(*position) {
                *slot = Some(result);
            }
        }
        batch.sent.clear();
        !refused
    }

    /// Sends the unanswered operations of batch `i` on the current stream.
    async fn send_one(&mut self, i: usize) -> bool {
        let Some((tx, _)) = self.stream.as_ref() else {
            return false;
        };
        let Some(batch) = self.in_flight.get_mut(i) else {
            return true;
        };
        batch.sent = (0..batch.ops.len())
            .filter(|p| batch.results[*p].is_none())
            .collect();
        if batch.sent.is_empty() {
            return true;
        }
        let ops = batch.sent.iter().map(|p| batch.ops[*p].clone()).collect();
        tx.send(pb::BulkRequest {
            ops,
            tag: batch.tag,
        })
        .await
        .is_ok()
    }

    /// Drops the current stream, opens one to the first node that accepts it (trying each in
    /// turn until `give_up`) and sends every unanswered operation again, in order.
    async fn reconnect(&mut self) -> Result<(), ClientError> {
        self.stream = None;
        let started = std::time::Instant::now();
        let mut last = ClientError::Closed;
        'search: loop {
            for _ in 0..self.endpoints.len() {
                let endpoint = self.endpoints[self.next_endpoint].clone();
                match open_bulk(&endpoint).await {
                    Ok(stream) => {
                        self.stream = Some(stream);
                        break 'search;
                    }
                    Err(e) => {
                        tracing::debug!(%endpoint, error = %e, "SM node refused the bulk stream");
                        last = e;
                        self.next_endpoint = (self.next_endpoint + 1) % self.endpoints.len();
                    }
                }
            }
            if started.elapsed() >= self.give_up {
                return Err(last);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        for i in 0..self.in_flight.len() {
            if !self.send_one(i).await {
                // Broke again at once: the next call finds no stream and searches anew.
                self.stream = None;
                break;
            }
        }
        Ok(())
    }
}

async fn open_bulk(endpoint: &str) -> Result<BulkStream, ClientError> {
    let mut client = LegClient::connect(endpoint).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let replies = client
        .grpc()
        .bulk(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(ClientError::Status)?
        .into_inner();
    Ok((tx, replies))
}
