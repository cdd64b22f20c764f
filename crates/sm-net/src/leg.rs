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
