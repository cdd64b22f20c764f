//! The CoA and Disconnect listener of the dynamic data services (RFC 5176; brasa is the NAS):
//! requests from the configured clients, with their secret and Message-Authenticator
//! checked, are decided by brasa-dynsvc's [`coa::decide`] (Table 5 of the dynamic data
//! services guide), run and applied by the runner like any other script run, and answered.

use super::{DynServices, RunFailure, Work};
use brasa_dynsvc::coa::{self, CoaAction, CoaOutcome, RequestKind};
use brasa_radius::auth::{self, MessageAuthenticator};
use brasa_radius::AcctTerminateCause;
use brasa_radius::Message;
use brasa_script::{DynAction, DynRun};
use brasa_services::SapId;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

/// How long an answer is kept to answer a retransmission of its request unchanged.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(5);

/// A client allowed to send CoA and Disconnect requests.
#[derive(Debug, Clone)]
pub struct CoaClient {
    /// Its address.
    pub address: IpAddr,
    /// The shared secret.
    pub secret: Vec<u8>,
    /// Drop its requests that have no Message-Authenticator.
    pub require_message_authenticator: bool,
}

/// A request and the answer it got, by (client, Identifier, Request Authenticator).
type Answered = HashMap<(SocketAddr, u8, [u8; 16]), (Instant, Option<Vec<u8>>)>;

/// Binds `listen` and answers the CoA and Disconnect requests of `clients` until the daemon
/// stops.
pub async fn start(
    dyn_services: Arc<DynServices>,
    listen: SocketAddr,
    clients: Vec<CoaClient>,
) -> anyhow::Result<SocketAddr> {
    let socket = UdpSocket::bind(listen)
        .await
        .map_err(|err| anyhow::anyhow!("dynamic services CoA listener {listen}: {err}"))?;
    let bound = socket.local_addr()?;
    tracing::info!(address = %bound, "dynamic services CoA listening");
    let socket = Arc::new(socket);
    let answered: Arc<Mutex<Answered>> = Arc::default();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        loop {
            let Ok((len, from)) = socket.recv_from(&mut buffer).await else {
                continue;
            };
            let bytes = buffer[..len].to_vec();
            let Some(client) = clients
                .iter()
                .find(|c| canonical(c.address) == canonical(from.ip()))
            else {
                dyn_services
                    .counters
                    .coa_dropped
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%from, "CoA from an unknown client dropped");
                continue;
            };
            let Some((kind, request, had_ma)) = admit(client, &bytes) else {
                dyn_services
                    .counters
                    .coa_dropped
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%from, "malformed or unauthenticated CoA dropped");
                continue;
            };
            let key = (from, request.identifier, request.authenticator);
            let earlier = {
                let mut answered = answered.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                answered.retain(|_, (at, _)| now.duration_since(*at) < DUPLICATE_WINDOW);
                let earlier = answered.get(&key).map(|(_, reply)| reply.clone());
                if earlier.is_none() {
                    answered.insert(key, (now, None));
                }
                earlier
            };
            match earlier {
                // In progress: its answer goes to the first copy.
                Some(None) => continue,
                Some(Some(reply)) => {
                    let _ = socket.send_to(&reply, from).await;
                    continue;
                }
                None => {}
            }
            let (reply, answer) = oneshot::channel();
            if dyn_services
                .work
                .send(Work::Coa {
                    kind,
                    request: request.clone(),
                    reply,
                })
                .is_err()
            {
                return;
            }
            let (socket, answered, secret) =
                (socket.clone(), answered.clone(), client.secret.clone());
            tokio::spawn(async move {
                let Ok(mut reply) = answer.await else {
                    return;
                };
                let Some(bytes) =
                    brasa_aaa::engine::finalize_response(&mut reply, &request, &secret, had_ma)
                else {
                    return;
                };
                answered
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, (Instant::now(), Some(bytes.clone())));
                let _ = socket.send_to(&bytes, from).await;
            });
        }
    });
    Ok(bound)
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The request when it is a CoA or Disconnect-Request with a valid Request Authenticator and,
/// when present (or required), a valid Message-Authenticator.
fn admit(client: &CoaClient, bytes: &[u8]) -> Option<(RequestKind, Message, bool)> {
    let request = Message::decode(bytes).ok()?;
    let kind = RequestKind::of(request.code)?;
    if !auth::verify_request(bytes, &client.secret) {
        return None;
    }
    let had_ma = match auth::check_message_authenticator(bytes, &[0; 16], &client.secret) {
        MessageAuthenticator::Valid => true,
        MessageAuthenticator::Absent if !client.require_message_authenticator => false,
        _ => return None,
    };
    Some((kind, request, had_ma))
}

impl DynServices {
    /// Decides a verified request against the triggers, runs what it asks and builds the
    /// answer (unsigned).
    pub(super) async fn answer_coa(&self, kind: RequestKind, request: &Message) -> Message {
        let decision = {
            let state = self.state();
            coa::decide(
                kind,
                request,
                &state.triggers,
                self.services.manager.port_map(),
            )
        };
        match decision {
            Err(refusal) => {
                tracing::info!(%refusal, "CoA refused");
                refusal.answer(request)
            }
            Ok(decision) => {
                let outcome = self.run_coa(&decision.action).await;
                decision.answer(request, outcome)
            }
        }
    }

    async fn run_coa(&self, action: &CoaAction) -> CoaOutcome {
        let outcome = |result: Result<(), RunFailure>| match result {
            Ok(()) => CoaOutcome::Done,
            Err(RunFailure::Script(_)) => CoaOutcome::ScriptFailed,
            Err(RunFailure::Apply(_)) => CoaOutcome::ApplyFailed,
        };
        match action {
            CoaAction::Setup { trigger, service } => {
                let result = self.set_up(trigger, service).await;
                if let Err(reason) = &result {
                    tracing::info!(%trigger, sap = %service.sap, %reason, "CoA setup failed");
                    // A service the script created without its SAP goes again.
                    let record = self.state().records.remove(&service.sap);
                    if let Some(record) = record {
                        let _ = self
                            .remove_service(
                                &service.sap,
                                record,
                                AcctTerminateCause::NasError,
                                true,
                            )
                            .await;
                        let _ =
                            self.with_triggers(|t| t.service_removed(&service.sap, Instant::now()));
                    }
                }
                outcome(result)
            }
            CoaAction::Modify { service, .. } => outcome(self.modify(service).await),
            CoaAction::TeardownService { service, .. } => {
                outcome(self.tear_down_one(service).await)
            }
            CoaAction::TeardownTrigger { trigger } => {
                let teardown = self.with_triggers(|t| t.clear_trigger(trigger, Instant::now()));
                if let Ok(teardown) = teardown {
                    self.tear_down_services(teardown, AcctTerminateCause::AdminReset)
                        .await;
                }
                CoaOutcome::Done
            }
        }
    }

    /// The teardown of one service (not its trigger's own SAP) asked by a CoA or Disconnect;
    /// a failed teardown leaves the service as it was.
    async fn tear_down_one(&self, sap: &SapId) -> Result<(), RunFailure> {
        let record = self.state().records.remove(sap);
        let Some(record) = record else {
            return Err(RunFailure::Script(format!("no dynamic service {sap}")));
        };
        self.remove_service(sap, record, AcctTerminateCause::AdminReset, false)
            .await?;
        let _ = self.with_triggers(|t| t.service_removed(sap, Instant::now()));
        Ok(())
    }

    /// A modify: the script's modify function with the new parameters; when it fails, or its
    /// CLI is refused, its revert function runs with the same inputs and the service keeps
    /// what it had.
    async fn modify(&self, service: &brasa_dynsvc::DynService) -> Result<(), RunFailure> {
        let record = self.state().records.get(&service.sap).cloned();
        let Some(record) = record else {
            return Err(RunFailure::Script(format!(
                "no dynamic service {}",
                service.sap
            )));
        };
        let policy_name = service.policy.clone().unwrap_or(record.policy.clone());
        let policy = self.config.policies.get(&policy_name).ok_or_else(|| {
            RunFailure::Script(format!("no dynamic-services policy {policy_name:?}"))
        })?;
        let params = super::script_params(service)?;
        let run = |action| DynRun {
            action,
            params: Some(params.clone()),
            state: Some(record.state.clone()),
            sap_id: service.sap.to_string(),
            control_sap: Some(record.trigger.to_string()),
            circuit_id: None,
            remote_id: None,
            policy: policy.name.clone(),
        };
        match self.run_and_apply(policy, run(DynAction::Modify)).await {
            Ok(report) => {
                if let Some(record) = self.state().records.get_mut(&service.sap) {
                    if let Some(state) = report.state {
                        record.state = state;
                    }
                    record.params = params.clone();
                    record.cli.push_str(&report.cli);
                }
                self.modify_accounting(&service.sap, &record.policy, service.accounting)
                    .await;
                Ok(())
            }
            Err((failure, report)) => {
                let revert = match (&failure, &report) {
                    (RunFailure::Script(_), Some(report)) => report.needs_revert(),
                    (RunFailure::Apply(_), Some(report)) => report.revert_defined,
                    (_, None) => false,
                };
                tracing::info!(sap = %service.sap, reason = %failure, revert, "CoA modify failed");
                if revert {
                    if let Err((reason, _)) =
                        self.run_and_apply(policy, run(DynAction::Revert)).await
                    {
                        tracing::warn!(sap = %service.sap, %reason, "the revert failed too");
                    }
                }
                Err(failure)
            }
        }
    }
}
