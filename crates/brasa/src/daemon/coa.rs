//! The CoA and Disconnect listener of `brasa run` (RFC 5176; brasa is the NAS), shared by the
//! components that take such requests: the dynamic data services and the subscriber services.
//!
//! It owns what is common to them: the socket, the clients and their secrets, the Request
//! Authenticator and Message-Authenticator checks, retransmissions (answered from the first
//! answer, never run twice) and the signing of the answer. Which component answers a request
//! is decided by its attributes: the first [`CoaHandler`] that claims it, a fallback handler
//! (one that takes whatever the others leave) last. A request no handler claims gets a NAK
//! with Error-Cause Unsupported-Service (405). Components that name the same address share
//! one listener ([`CoaListeners`]).
//!
//! This listener is not the RADIUS proxy's CoA relay (AAA → NAS), which forwards requests
//! meant for the NASes behind brasa; the two listen on different addresses.

use brasa_radius::auth::{self, MessageAuthenticator};
use brasa_radius::coa::RequestKind;
use brasa_radius::{ErrorCause, Message};
use serde::Deserialize;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// How long an answer is kept to answer a retransmission of its request unchanged.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(5);

/// A client allowed to send CoA and Disconnect requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoaClient {
    /// Its address.
    pub address: IpAddr,
    /// The shared secret.
    pub secret: Vec<u8>,
    /// Drop its requests that have no Message-Authenticator.
    pub require_message_authenticator: bool,
}

/// `[[…coa_client]]`: a client of the CoA listener in a component's section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoaClientSection {
    /// Its address.
    pub address: IpAddr,
    /// The shared secret.
    pub secret: String,
    /// Drop its requests that carry no Message-Authenticator.
    #[serde(default)]
    pub require_message_authenticator: bool,
}

impl CoaClientSection {
    /// The client as the listener takes it.
    pub fn resolve(&self) -> CoaClient {
        CoaClient {
            address: self.address,
            secret: self.secret.as_bytes().to_vec(),
            require_message_authenticator: self.require_message_authenticator,
        }
    }
}

/// The answer of a handler, unsigned (the listener signs it); `None` sends none (the
/// component is stopping).
pub type CoaAnswer = Pin<Box<dyn Future<Output = Option<Message>> + Send>>;

/// A component that answers some CoA or Disconnect requests.
pub trait CoaHandler: Send + Sync + 'static {
    /// Whether `request` (verified) is for this component, by its attributes.
    fn claims(&self, request: &Message) -> bool;
    /// Runs what `request` asks and answers it (ACK or NAK, with the request's Proxy-States).
    fn answer(self: Arc<Self>, request: Message) -> CoaAnswer;
    /// Whether it takes every request the others do not claim (asked last).
    fn is_fallback(&self) -> bool {
        false
    }
    /// Called for every request dropped before any handler saw it (unknown client,
    /// malformed, bad authenticator): each component counts them as it did on its own.
    fn dropped(&self) {}
}

/// The listeners of the daemon, one per address, as the components register.
#[derive(Default)]
pub struct CoaListeners {
    listeners: Vec<CoaListener>,
}

impl CoaListeners {
    /// Registers `handler` with its `clients` on `listen`, sharing the listener of another
    /// component on that address.
    pub fn register(
        &mut self,
        listen: SocketAddr,
        clients: &[CoaClient],
        handler: Arc<dyn CoaHandler>,
    ) -> anyhow::Result<()> {
        let index = match self.listeners.iter().position(|l| l.listen == listen) {
            Some(index) => index,
            None => {
                self.listeners.push(CoaListener::new(listen));
                self.listeners.len() - 1
            }
        };
        let listener = &mut self.listeners[index];
        listener.add_clients(clients).map_err(anyhow::Error::msg)?;
        listener.handlers.push(handler);
        listener.handlers.sort_by_key(|h| h.is_fallback());
        Ok(())
    }

    /// Starts every listener; their bound addresses, in registration order.
    pub async fn start(self) -> anyhow::Result<Vec<SocketAddr>> {
        let mut bound = Vec::with_capacity(self.listeners.len());
        for listener in self.listeners {
            bound.push(start(listener).await?);
        }
        Ok(bound)
    }
}

/// One listener: its address, clients and handlers (in the order they are asked).
pub struct CoaListener {
    /// Where requests arrive.
    pub listen: SocketAddr,
    /// Who may send them.
    pub clients: Vec<CoaClient>,
    /// Who answers them.
    pub handlers: Vec<Arc<dyn CoaHandler>>,
}

impl CoaListener {
    /// A listener on `listen` without clients or handlers.
    pub fn new(listen: SocketAddr) -> Self {
        CoaListener {
            listen,
            clients: Vec::new(),
            handlers: Vec::new(),
        }
    }

    /// Adds a component's clients; one address with two secrets is refused.
    pub fn add_clients(&mut self, clients: &[CoaClient]) -> Result<(), String> {
        for client in clients {
            match self
                .clients
                .iter()
                .find(|c| canonical(c.address) == canonical(client.address))
            {
                Some(known) if known == client => {}
                Some(_) => {
                    return Err(format!(
                        "CoA client {} is configured twice for {} with different settings",
                        client.address, self.listen
                    ))
                }
                None => self.clients.push(client.clone()),
            }
        }
        Ok(())
    }
}

/// A request and the answer it got, by (client, Identifier, Request Authenticator).
type Answered = HashMap<(SocketAddr, u8, [u8; 16]), (Instant, Option<Vec<u8>>)>;

/// Binds the listener's address and answers its clients' requests until the daemon stops.
pub async fn start(listener: CoaListener) -> anyhow::Result<SocketAddr> {
    let CoaListener {
        listen,
        clients,
        handlers,
    } = listener;
    let socket = UdpSocket::bind(listen)
        .await
        .map_err(|err| anyhow::anyhow!("CoA listener {listen}: {err}"))?;
    let bound = socket.local_addr()?;
    tracing::info!(address = %bound, "CoA listening");
    let socket = Arc::new(socket);
    let answered: Arc<Mutex<Answered>> = Arc::default();
    let dropped = {
        let handlers = handlers.clone();
        move || handlers.iter().for_each(|h| h.dropped())
    };
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        loop {
            let Ok((len, from)) = socket.recv_from(&mut buffer).await else {
                continue;
            };
            let bytes = &buffer[..len];
            let Some(client) = clients
                .iter()
                .find(|c| canonical(c.address) == canonical(from.ip()))
            else {
                dropped();
                tracing::debug!(%from, "CoA from an unknown client dropped");
                continue;
            };
            let Some((request, had_ma)) = admit(client, bytes) else {
                dropped();
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
            let handler = handlers.iter().find(|h| h.claims(&request)).cloned();
            let (socket, answered, secret) =
                (socket.clone(), answered.clone(), client.secret.clone());
            tokio::spawn(async move {
                let answer = match handler {
                    Some(handler) => handler.answer(request.clone()).await,
                    None => Some(unclaimed(&request)),
                };
                let Some(mut reply) = answer else {
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

/// The NAK of a request no component takes.
fn unclaimed(request: &Message) -> Message {
    let kind = RequestKind::of(request.code).unwrap_or(RequestKind::Coa);
    tracing::info!(code = ?request.code, "CoA that no component takes refused");
    kind.answer(request, Some(ErrorCause::UnsupportedService))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The request when it is a CoA or Disconnect-Request with a valid Request Authenticator and,
/// when present (or required), a valid Message-Authenticator.
fn admit(client: &CoaClient, bytes: &[u8]) -> Option<(Message, bool)> {
    let request = Message::decode(bytes).ok()?;
    RequestKind::of(request.code)?;
    if !auth::verify_request(bytes, &client.secret) {
        return None;
    }
    let had_ma = match auth::check_message_authenticator(bytes, &[0; 16], &client.secret) {
        MessageAuthenticator::Valid => true,
        MessageAuthenticator::Absent if !client.require_message_authenticator => false,
        _ => return None,
    };
    Some((request, had_ma))
}

#[cfg(test)]
mod tests {
    use super::*;
    use brasa_radius::attr::{ERROR_CAUSE, USER_NAME};
    use brasa_radius::Code;
    use std::sync::atomic::{AtomicU64, Ordering};

    const SECRET: &[u8] = b"sc-coa-unit";

    /// Answers ACK to what it claims (requests whose User-Name is its name), counting runs.
    struct Named {
        name: &'static str,
        fallback: bool,
        runs: AtomicU64,
        dropped: AtomicU64,
    }

    impl Named {
        fn new(name: &'static str, fallback: bool) -> Arc<Named> {
            Arc::new(Named {
                name,
                fallback,
                runs: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            })
        }
    }

    impl CoaHandler for Named {
        fn claims(&self, request: &Message) -> bool {
            self.fallback || request.get(USER_NAME) == Some(self.name.as_bytes())
        }
        fn is_fallback(&self) -> bool {
            self.fallback
        }
        fn answer(self: Arc<Self>, request: Message) -> CoaAnswer {
            Box::pin(async move {
                self.runs.fetch_add(1, Ordering::Relaxed);
                let cause = self.fallback.then_some(ErrorCause::UnsupportedAttribute);
                brasa_radius::coa::answer(&request, cause)
            })
        }
        fn dropped(&self) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn request(identifier: u8, user: &str, secret: &[u8]) -> Vec<u8> {
        let mut message = Message::new(Code::CoaRequest, identifier);
        message.add(USER_NAME, user.as_bytes()).unwrap();
        let mut bytes = message.encode().unwrap();
        auth::sign_request(&mut bytes, secret);
        bytes
    }

    async fn exchange(socket: &UdpSocket, to: SocketAddr, bytes: &[u8]) -> Option<Message> {
        socket.send_to(bytes, to).await.unwrap();
        let mut buffer = [0u8; 4096];
        let wait = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buffer));
        let (len, _) = wait.await.ok()?.unwrap();
        let request = Message::decode(bytes).unwrap();
        assert!(auth::verify_response(
            &buffer[..len],
            &request.authenticator,
            SECRET
        ));
        Some(Message::decode(&buffer[..len]).unwrap())
    }

    #[tokio::test]
    async fn components_on_one_address_share_a_listener_and_get_what_they_claim() {
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let client = CoaClient {
            address: "127.0.0.1".parse().unwrap(),
            secret: SECRET.to_vec(),
            require_message_authenticator: false,
        };
        let (subsvc, dynsvc) = (Named::new("sub", false), Named::new("dyn", true));
        let mut listeners = CoaListeners::default();
        // The fallback registers first, as the dynamic services do, and is still asked last.
        listeners
            .register(listen, std::slice::from_ref(&client), dynsvc.clone())
            .unwrap();
        listeners
            .register(listen, std::slice::from_ref(&client), subsvc.clone())
            .unwrap();
        let other_secret = CoaClient {
            secret: b"other".to_vec(),
            ..client.clone()
        };
        assert!(listeners
            .register(listen, &[other_secret], subsvc.clone())
            .is_err());
        let bound = listeners.start().await.unwrap();
        assert_eq!(bound.len(), 1, "one listener for one address");
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();

        let first = request(1, "sub", SECRET);
        let ack = exchange(&socket, bound[0], &first).await.unwrap();
        assert_eq!(ack.code, Code::CoaAck);
        let nak = exchange(&socket, bound[0], &request(2, "anyone", SECRET))
            .await
            .unwrap();
        assert_eq!(nak.code, Code::CoaNak);
        assert!(nak.get(ERROR_CAUSE).is_some());
        // A retransmission gets the first answer again without a second run.
        let again = exchange(&socket, bound[0], &first).await.unwrap();
        assert_eq!(again, ack);
        assert_eq!(subsvc.runs.load(Ordering::Relaxed), 1);
        assert_eq!(dynsvc.runs.load(Ordering::Relaxed), 1);
        // A wrong secret is dropped unanswered, and every component counts it.
        assert!(exchange(&socket, bound[0], &request(3, "sub", b"wrong"))
            .await
            .is_none());
        assert_eq!(subsvc.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(dynsvc.dropped.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_request_no_component_claims_is_naked_unsupported_service() {
        let client = CoaClient {
            address: "127.0.0.1".parse().unwrap(),
            secret: SECRET.to_vec(),
            require_message_authenticator: false,
        };
        let mut listeners = CoaListeners::default();
        listeners
            .register(
                "127.0.0.1:0".parse().unwrap(),
                &[client],
                Named::new("sub", false),
            )
            .unwrap();
        let bound = listeners.start().await.unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let nak = exchange(&socket, bound[0], &request(1, "dyn", SECRET))
            .await
            .unwrap();
        assert_eq!(nak.code, Code::CoaNak);
        assert_eq!(
            nak.get(ERROR_CAUSE),
            Some(&ErrorCause::UnsupportedService.to_value()[..])
        );
    }
}
