//! The tonic services: a thin translation between gRPC and [`SmService`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use brasa_subscriber::NameCase;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::StreamExt;
use tonic::service::interceptor::InterceptedService;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::pb;
use crate::pb::enforcement_point_server::{EnforcementPoint, EnforcementPointServer};
use crate::pb::subscriber_manager_server::{SubscriberManager, SubscriberManagerServer};
use crate::service::{SmService, StartError};
use brasa_sm::convert::{
    activate_services_from_proto, add_from_proto, address, change_reply,
    deactivate_services_from_proto, login_from_proto, mapping, mpls_ids, op_from_proto,
    subscriber_to_proto, vpn_from_proto, vpn_to_proto,
};
use brasa_sm::op::{Op, SmError};

/// How long a new EP stream may take to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Bulk batches of one stream applied but not yet answered (back-pressure towards the LEG).
const BULK_IN_FLIGHT: usize = 32;
/// HTTP/2 flow-control windows: large enough that a full sync is not paced by window updates.
const STREAM_WINDOW: u32 = 8 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;
/// Largest gRPC message accepted (a bulk batch or a sync batch).
pub const MAX_MESSAGE: usize = 64 << 20;

/// An SM error as a gRPC status: the code of its kind and its precise message.
pub fn status(e: SmError) -> Status {
    Status::new(Code::from_i32(e.kind.grpc_code()), e.message)
}

/// The running gRPC server.
pub struct SmServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    service: SmService,
}

impl SmServer {
    /// Binds `listen` and serves both services of `service`.
    pub async fn start(service: SmService, listen: SocketAddr) -> Result<SmServer, StartError> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
        let incoming = TcpListenerStream::new(listener).map(|conn| {
            conn.inspect(|stream| {
                // Small EP acks and LEG replies must not wait for Nagle.
                let _ = stream.set_nodelay(true);
            })
        });
        let leg = SubscriberManagerServer::new(LegApi {
            service: service.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
        let ep = EnforcementPointServer::new(EpApi {
            service: service.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
        let leg = InterceptedService::new(leg, refuse_on_standby(service.clone()));
        let ep = InterceptedService::new(ep, refuse_on_standby(service.clone()));
        let stop = service.clone();
        let router = tonic::transport::Server::builder()
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .add_service(leg)
            .add_service(ep);
        let task = tokio::spawn(async move {
            let shutdown = async move { stop.stopped().await };
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
            {
                tracing::error!(error = %e, "subscriber manager gRPC server stopped");
            }
        });
        tracing::info!(%addr, "subscriber manager gRPC listening");
        Ok(SmServer {
            addr,
            task,
            service,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service.
    pub fn service(&self) -> &SmService {
        &self.service
    }

    /// Stops the service (store closed on return) and the server.
    pub async fn shutdown(self) {
        self.service.shutdown().await;
        // Connections that stay open (a LEG's idle stream) must not keep the test or the
        // daemon waiting: give graceful shutdown a moment, then stop accepting for good.
        if tokio::time::timeout(Duration::from_secs(2), self.task)
            .await
            .is_err()
        {
            tracing::debug!("gRPC server did not stop gracefully within 2 s");
        }
    }
}

/// A standby answers every LEG call and EP stream with `UNAVAILABLE` and why (the active
/// node, when known), so that a client with a list of SM addresses moves on.
fn refuse_on_standby(
    service: SmService,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |request| match service.standby() {
        Some(why) => Err(Status::unavailable(why)),
        None => Ok(request),
    }
}

struct LegApi {
    service: SmService,
}

impl LegApi {
    fn case(&self) -> NameCase {
        self.service.core().index().config().name_case
    }

    async fn change(&self, op: Result<Op, SmError>) -> Result<Response<pb::ChangeReply>, Status> {
        let changes = self
            .service
            .execute(op.map_err(status)?)
            .await
            .map_err(status)?;
        Ok(Response::new(change_reply(&changes)))
    }
}

#[tonic::async_trait]
impl SubscriberManager for LegApi {
    async fn login(
        &self,
        r: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        self.change(login_from_proto(r.into_inner())).await
    }

    async fn logout(
        &self,
        r: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        let r = r.into_inner();
        self.change(Ok(Op::Logout {
            name: r.name,
            domain: r.domain,
        }))
        .await
    }

    async fn logout_by_mapping(
        &self,
        r: Request<pb::LogoutByMappingRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        let r = r.into_inner();
        self.change(mapping(&r.mapping, "mapping").map(Op::LogoutByMapping))
            .await
    }

    async fn add_subscriber(
        &self,
        r: Request<pb::AddSubscriberRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        let case = self.case();
        self.change(add_from_proto(r.into_inner(), case)).await
    }

    async fn remove_subscriber(
        &self,
        r: Request<pb::RemoveSubscriberRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        self.change(Ok(Op::Remove(r.into_inner().name))).await
    }

    async fn set_properties(
        &self,
        r: Request<pb::SetPropertiesRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        let r = r.into_inner();
        self.change(Ok(Op::SetProperties {
            name: r.name,
            properties: r.properties.into_iter().map(|p| (p.key, p.value)).collect(),
        }))
        .await
    }

    async fn set_state(
        &self,
        r: Request<pb::SetStateRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        let r = r.into_inner();
        self.change(Ok(Op::SetState {
            name: r.name,
            state: r.state,
        }))
        .await
    }

    async fn activate_services(
        &self,
        r: Request<pb::ActivateServicesRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        self.change(activate_services_from_proto(r.into_inner()))
            .await
    }

    async fn deactivate_services(
        &self,
        r: Request<pb::DeactivateServicesRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        self.change(Ok(deactivate_services_from_proto(r.into_inner())))
            .await
    }

    async fn add_vpn(
        &self,
        r: Request<pb::AddVpnRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        let op = r
            .into_inner()
            .vpn
            .ok_or_else(|| SmError::invalid("AddVpn needs a vpn"))
            .and_then(vpn_from_proto)
            .map(Op::AddVpn);
        self.change(op).await
    }

    async fn remove_vpn(
        &self,
        r: Request<pb::RemoveVpnRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        self.change(Ok(Op::RemoveVpn(r.into_inner().name))).await
    }

    async fn add_mpls_entries(
        &self,
        r: Request<pb::AddMplsEntriesRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        let r = r.into_inner();
        let op = mpls_ids(&r.entries).map(|entries| Op::AddMplsEntries {
            vpn: r.vpn,
            entries,
        });
        self.change(op).await
    }

    async fn remove_mpls_entries(
        &self,
        r: Request<pb::RemoveMplsEntriesRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        let r = r.into_inner();
        let op = mpls_ids(&r.entries).map(|entries| Op::RemoveMplsEntries {
            vpn: r.vpn,
            entries,
        });
        self.change(op).await
    }

    async fn get_vpn(&self, r: Request<pb::GetVpnRequest>) -> Result<Response<pb::Vpn>, Status> {
        let name = r.into_inner().name;
        let core = self.service.core();
        match core.index().vpn(&name) {
            Some(v) => Ok(Response::new(vpn_to_proto(v))),
            None => Err(Status::not_found(format!("no VPN named {name:?}"))),
        }
    }

    async fn list_vpns(
        &self,
        r: Request<pb::ListVpnsRequest>,
    ) -> Result<Response<pb::ListVpnsReply>, Status> {
        let domain = r.into_inner().domain;
        let core = self.service.core();
        let mut vpns: Vec<pb::Vpn> = core
            .index()
            .vpns()
            .filter(|v| domain.as_ref().is_none_or(|d| *d == v.domain))
            .map(vpn_to_proto)
            .collect();
        vpns.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::new(pb::ListVpnsReply { vpns }))
    }

    async fn get_subscriber(
        &self,
        r: Request<pb::GetSubscriberRequest>,
    ) -> Result<Response<pb::Subscriber>, Status> {
        let r = r.into_inner();
        let core = self.service.core();
        let found = match &r.domain {
            Some(d) => core.index().get_in_domain(&r.name, d),
            None => core.index().get(&r.name),
        };
        match found {
            Some(s) => Ok(Response::new(subscriber_to_proto(&s))),
            None => Err(Status::not_found(match &r.domain {
                Some(d) => format!("no subscriber named {:?} in domain {d:?}", r.name),
                None => format!("no subscriber named {:?}", r.name),
            })),
        }
    }

    async fn lookup(
        &self,
        r: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::LookupReply>, Status> {
        let r = r.into_inner();
        let addr = address(&r.address).map_err(status)?;
        let core = self.service.core();
        let index = core.index();
        let name = index
            .lookup(addr, r.vpn.as_deref())
            .map_err(|e| status(SmError::from(e)))?;
        Ok(Response::new(pb::LookupReply {
            subscriber: name
                .and_then(|n| index.get(n))
                .map(|s| subscriber_to_proto(&s)),
        }))
    }

    async fn list_names(
        &self,
        r: Request<pb::ListNamesRequest>,
    ) -> Result<Response<pb::ListNamesReply>, Status> {
        let r = r.into_inner();
        let limit = if r.limit == 0 { 1000 } else { r.limit as usize };
        let core = self.service.core();
        let names = match &r.pattern {
            Some(pb::list_names_request::Pattern::Prefix(p)) => {
                core.index().names_with_prefix(p, limit)
            }
            Some(pb::list_names_request::Pattern::Suffix(s)) => {
                core.index().names_with_suffix(s, limit)
            }
            None => return Err(Status::invalid_argument("give a prefix or a suffix")),
        };
        Ok(Response::new(pb::ListNamesReply {
            names: names.into_iter().map(str::to_owned).collect(),
        }))
    }

    async fn counts(
        &self,
        _r: Request<pb::CountsRequest>,
    ) -> Result<Response<pb::CountsReply>, Status> {
        let core = self.service.core();
        let index = core.index();
        Ok(Response::new(pb::CountsReply {
            domains: index
                .count_by_domain()
                .into_iter()
                .map(|(d, n)| pb::DomainCount {
                    domain: d.to_owned(),
                    subscribers: n as u64,
                })
                .collect(),
            total: index.len() as u64,
        }))
    }

    type BulkStream = ReceiverStream<Result<pb::BulkReply, Status>>;

    async fn bulk(
        &self,
        r: Request<Streaming<pb::BulkRequest>>,
    ) -> Result<Response<Self::BulkStream>, Status> {
        let mut inbound = r.into_inner();
        let case = self.case();
        let (reply_tx, reply_rx) = mpsc::channel(BULK_IN_FLIGHT);
        let (pending_tx, mut pending_rx) = mpsc::channel(BULK_IN_FLIGHT);
        let service = self.service.clone();
        tokio::spawn(async move {
            while let Ok(Some(batch)) = inbound.message().await {
                let ops = batch
                    .ops
                    .into_iter()
                    .map(|op| op_from_proto(op, case))
                    .collect();
                let pending = service.submit(ops);
                if pending_tx.send((batch.tag, pending)).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Some((tag, pending)) = pending_rx.recv().await {
                let results = pending
                    .wait()
                    .await
                    .iter()
                    .map(|r| match r {
                        Ok(_) => pb::OpResult {
                            code: 0,
                            message: String::new(),
                        },
                        Err(e) => pb::OpResult {
                            code: e.kind.grpc_code(),
                            message: e.message.clone(),
                        },
                    })
                    .collect();
                if reply_tx
                    .send(Ok(pb::BulkReply { tag, results }))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(reply_rx)))
    }
}

struct EpApi {
    service: SmService,
}

#[tonic::async_trait]
impl EnforcementPoint for EpApi {
    type AttachStream = ReceiverStream<Result<pb::SmMessage, Status>>;

    async fn attach(
        &self,
        r: Request<Streaming<pb::EpMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let peer = r.remote_addr();
        let mut inbound = r.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Hello within 10 s"))??;
        let hello = match first {
            Some(pb::EpMessage {
                body: Some(pb::ep_message::Body::Hello(h)),
            }) => h,
            Some(_) => {
                return Err(Status::invalid_argument(
                    "the first message of an EP stream must be Hello",
                ))
            }
            None => return Err(Status::invalid_argument("the EP stream ended before Hello")),
        };
        let sid = self
            .service
            .with_core(|core| core.ep_connect(Instant::now(), &hello))
            .map_err(|e| {
                tracing::warn!(ep = %hello.ep_id, ?peer, error = %e, "EP refused");
                status(e)
            })?;
        let rx = self.service.start_session(sid, inbound);
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
