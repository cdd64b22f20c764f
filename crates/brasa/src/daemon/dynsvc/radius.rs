//! RADIUS requests the dynamic data services originate (brasa is the NAS): each goes to the
//! live servers of a `[[radius.pool]]` in order, with the pool's timeout and retries per server,
//! signed and verified by brasa-aaa's [`Exchange`] (the proxy's client side). A server that
//! times out `dead_after_timeouts` requests in a row is dead (brasa-aaa's [`ServerHealth`]) and
//! skipped until it has rested `revive_after`.

pub use brasa_aaa::client::MessageAuthenticator;
use brasa_aaa::client::{Exchange, Retry, ServerHealth, Timeout};
use brasa_aaa::{PoolConfig, UpstreamConfig};
use brasa_radius::Message;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::UdpSocket;

/// Builds the request for one server: its secret, Request Authenticator and Identifier.
pub type BuildRequest<'a> =
    dyn Fn(&UpstreamConfig, [u8; 16], u8) -> Option<Message> + Send + Sync + 'a;

/// The liveness of every server the dynamic data services send to, by address.
#[derive(Debug, Default)]
pub struct ServerHealths(Mutex<HashMap<SocketAddr, ServerHealth>>);

impl ServerHealths {
    fn with<T>(&self, server: SocketAddr, f: impl FnOnce(&mut ServerHealth) -> T) -> T {
        let mut all = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(all.entry(server).or_default())
    }

    /// Whether `server` is alive now (a dead one revives after the pool's `revive_after`:
    /// nothing here probes it with Status-Server).
    pub fn is_alive(&self, pool: &PoolConfig, server: SocketAddr) -> bool {
        self.with(server, |health| {
            health.is_alive(Instant::now(), pool.revive_after, false)
        })
    }
}

/// Why one server gave no reply.
#[derive(Debug)]
enum Failure {
    /// No verified reply after every attempt: counts towards the server's death.
    TimedOut(u32),
    /// The request could not be made or sent here; says nothing about the server.
    Local(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::TimedOut(attempts) => write!(f, "no answer after {attempts} attempts"),
            Failure::Local(reason) => f.write_str(reason),
        }
    }
}

/// Sends the request `build` makes to each live server of `servers` in turn until one answers
/// with a verified reply; `None` when none did (every live server timed out after its retries,
/// or none is alive).
pub async fn exchange(
    healths: &ServerHealths,
    pool: &PoolConfig,
    servers: &[UpstreamConfig],
    message_authenticator: MessageAuthenticator,
    build: &BuildRequest<'_>,
) -> Option<Message> {
    for server in servers {
        if !healths.is_alive(pool, server.address) {
            continue;
        }
        match exchange_one(pool, server, message_authenticator, build).await {
            Ok(reply) => {
                if healths.with(server.address, ServerHealth::answered) {
                    tracing::info!(server = %server.address, pool = %pool.name, "RADIUS server alive again");
                }
                return Some(reply);
            }
            Err(failure) => {
                if matches!(failure, Failure::TimedOut(_))
                    && healths.with(server.address, |health| {
                        health.timed_out(Instant::now(), pool.dead_after_timeouts)
                    })
                {
                    tracing::warn!(server = %server.address, pool = %pool.name, "RADIUS server marked dead");
                }
                tracing::warn!(server = %server.address, pool = %pool.name, reason = %failure, "no answer; next server");
            }
        }
    }
    None
}

async fn exchange_one(
    pool: &PoolConfig,
    server: &UpstreamConfig,
    message_authenticator: MessageAuthenticator,
    build: &BuildRequest<'_>,
) -> Result<Message, Failure> {
    use rand::RngCore;
    let mut authenticator = [0u8; 16];
    rand::rng().fill_bytes(&mut authenticator);
    let identifier = (rand::rng().next_u32() & 0xff) as u8;
    let request = build(server, authenticator, identifier)
        .ok_or_else(|| Failure::Local("the request cannot be encoded".into()))?;
    let mut exchange = Exchange::new(
        Instant::now(),
        request,
        Arc::from(server.secret.as_slice()),
        authenticator,
        message_authenticator,
        Retry {
            timeout: pool.timeout,
            attempts: pool.retries.saturating_add(1),
        },
    )
    .map_err(|err| Failure::Local(err.to_string()))?;
    let local: SocketAddr = if server.address.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|err| Failure::Local(err.to_string()))?;
    socket
        .connect(server.address)
        .await
        .map_err(|err| Failure::Local(err.to_string()))?;
    socket
        .send(exchange.datagram())
        .await
        .map_err(|err| Failure::Local(err.to_string()))?;
    let mut buffer = vec![0u8; 4096];
    loop {
        let deadline = tokio::time::Instant::from_std(exchange.deadline());
        match tokio::time::timeout_at(deadline, socket.recv(&mut buffer)).await {
            Ok(Ok(len)) => match exchange.verify(&buffer[..len]) {
                Ok(reply) => return Ok(reply),
                Err(err) => tracing::debug!(server = %server.address, %err, "ignored a datagram"),
            },
            // ICMP unreachable: the server is down; wait for the timer like a lost reply.
            Ok(Err(_)) => tokio::time::sleep_until(deadline).await,
            Err(_) => {}
        }
        match exchange.handle_timeout(Instant::now()) {
            Timeout::NotDue => {}
            Timeout::Resend(datagram) => {
                let _ = socket.send(datagram).await;
            }
            Timeout::GaveUp => return Err(Failure::TimedOut(exchange.attempts())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brasa_aaa::LoadBalance;
    use brasa_radius::Code;
    use std::time::Duration;

    fn pool(servers: Vec<UpstreamConfig>) -> PoolConfig {
        PoolConfig {
            name: "aaa".into(),
            auth_servers: servers,
            acct_servers: Vec::new(),
            load_balance: LoadBalance::Failover,
            timeout: Duration::from_millis(100),
            retries: 1,
            dead_after_timeouts: 3,
            status_check_interval: Duration::from_secs(10),
            revive_after: Duration::from_secs(60),
        }
    }

    fn server(address: SocketAddr) -> UpstreamConfig {
        UpstreamConfig {
            name: address.to_string(),
            address,
            secret: b"secret".to_vec(),
        }
    }

    /// A server that counts what it receives and answers every request with an Access-Accept
    /// signed with `secret`, or never answers.
    async fn server_socket(answer: bool) -> (SocketAddr, tokio::task::JoinHandle<usize>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut received = 0;
            let mut buffer = [0u8; 4096];
            while let Ok(Ok((len, from))) =
                tokio::time::timeout(Duration::from_millis(600), socket.recv_from(&mut buffer))
                    .await
            {
                received += 1;
                if answer {
                    let request = Message::decode(&buffer[..len]).unwrap();
                    let mut reply = Message::new(Code::AccessAccept, request.identifier);
                    let bytes =
                        brasa_aaa::engine::finalize_response(&mut reply, &request, b"secret", true)
                            .unwrap();
                    socket.send_to(&bytes, from).await.unwrap();
                }
            }
            received
        });
        (address, task)
    }

    fn request(_: &UpstreamConfig, authenticator: [u8; 16], id: u8) -> Option<Message> {
        let mut message = Message::new(Code::AccessRequest, id);
        message.authenticator = authenticator;
        message.add(1, "eth1:1.2").ok()?;
        Some(message)
    }

    #[tokio::test]
    async fn a_silent_server_is_retried_then_the_next_one_answers() {
        let (silent, silent_task) = server_socket(false).await;
        let (live, live_task) = server_socket(true).await;
        let pool = pool(vec![server(silent), server(live)]);
        let reply = exchange(
            &ServerHealths::default(),
            &pool,
            &pool.auth_servers,
            MessageAuthenticator::First,
            &request,
        )
        .await
        .expect("the second server answers");
        assert_eq!(reply.code, Code::AccessAccept);
        assert_eq!(silent_task.await.unwrap(), 2, "one try and one retry");
        assert_eq!(live_task.await.unwrap(), 1);
    }

    #[tokio::test]
    async fn no_answer_from_any_server_is_none() {
        let (silent, task) = server_socket(false).await;
        let pool = pool(vec![server(silent)]);
        let reply = exchange(
            &ServerHealths::default(),
            &pool,
            &pool.auth_servers,
            MessageAuthenticator::First,
            &request,
        )
        .await;
        assert!(reply.is_none());
        assert_eq!(task.await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_server_dead_after_its_timeouts_is_skipped_until_it_has_rested() {
        let (silent, silent_task) = server_socket(false).await;
        let (live, live_task) = server_socket(true).await;
        let mut pool = pool(vec![server(silent), server(live)]);
        pool.dead_after_timeouts = 1;
        let healths = ServerHealths::default();
        for _ in 0..3 {
            let reply = exchange(
                &healths,
                &pool,
                &pool.auth_servers,
                MessageAuthenticator::First,
                &request,
            )
            .await
            .expect("the live server answers");
            assert_eq!(reply.code, Code::AccessAccept);
        }
        assert!(!healths.is_alive(&pool, silent));
        assert_eq!(
            silent_task.await.unwrap(),
            2,
            "only the first request tried the dead server (one try and one retry)"
        );
        assert_eq!(live_task.await.unwrap(), 3);
        pool.revive_after = Duration::ZERO;
        assert!(healths.is_alive(&pool, silent), "rested, it is tried again");
    }
}
