//! Helpers shared by the RAE integration tests: configuration builders and a CME receiver.
#![allow(dead_code)]

#[path = "../../../rae/tests/support/domain.rs"]
mod domain;
pub use domain::*;

use brasa_rae::proto;
use brasa_rae::wire::{self, CmeMessage, Frame, InterRaeMessage};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What a CME has been told.
#[derive(Default, Debug)]
pub struct CmeState {
    pub paths: BTreeMap<(String, u32), Vec<proto::PathInf>>,
    pub prov_inf: Vec<proto::ProvInf>,
    pub requests: usize,
    pub full_states: usize,
    pub connections: usize,
}

impl CmeState {
    /// AS path of the rank-1 path towards `prefix` in `cos`.
    pub fn best(&self, prefix: &str, cos: u32) -> Option<Vec<u32>> {
        self.paths
            .get(&(prefix.to_string(), cos))
            .and_then(|paths| paths.iter().find(|p| p.rank == 1))
            .map(|p| p.as_path.clone())
    }
}

/// A CME receiver: answers each GenericRequest with a Reply carrying `version`.
pub struct Cme {
    pub port: u16,
    pub state: Arc<Mutex<CmeState>>,
    pub version: Arc<Mutex<u64>>,
    pub drop_connections: Arc<tokio::sync::Notify>,
}

impl Cme {
    pub async fn start() -> Cme {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(CmeState::default()));
        let version = Arc::new(Mutex::new(1u64));
        let drop_connections = Arc::new(tokio::sync::Notify::new());
        let (s, v, d) = (state.clone(), version.clone(), drop_connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                s.lock().unwrap().connections += 1;
                let mut buffer = Vec::new();
                loop {
                    let mut chunk = [0u8; 65536];
                    let n = tokio::select! {
                        n = stream.read(&mut chunk) => n.unwrap_or(0),
                        () = d.notified() => 0,
                    };
                    if n == 0 {
                        break;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    while let Some(len) = wire::check_frame(&buffer).unwrap() {
                        let frame = Frame::new_checked(&buffer[..len]).unwrap();
                        let CmeMessage::GenericRequest(request) =
                            CmeMessage::parse(&frame).unwrap()
                        else {
                            panic!("RAE sent a Reply");
                        };
                        buffer.drain(..len);
                        {
                            let mut state = s.lock().unwrap();
                            state.requests += 1;
                            if request.full_state {
                                state.full_states += 1;
                                state.paths.clear();
                                state.prov_inf.clear();
                            }
                            state.prov_inf.extend(request.prov_inf.iter().cloned());
                            let mut grouped: BTreeMap<(String, u32), Vec<proto::PathInf>> =
                                BTreeMap::new();
                            for p in &request.path_inf {
                                let prefix = p.prefix.as_ref().unwrap();
                                let key = (
                                    format!("{}/{}", prefix.ip_address, prefix.prefix_length),
                                    p.cos_id,
                                );
                                grouped.entry(key).or_default().push(p.clone());
                            }
                            for (key, paths) in grouped {
                                if paths.iter().any(|p| p.withdrawn) {
                                    state.paths.remove(&key);
                                } else {
                                    state.paths.insert(key, paths);
                                }
                            }
                        }
                        let reply = CmeMessage::Reply(proto::Reply {
                            version: *v.lock().unwrap(),
                            sequence: request.sequence,
                        });
                        let mut out = Vec::new();
                        reply.emit(&mut out);
                        if stream.write_all(&out).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Cme {
            port,
            state,
            version,
            drop_connections,
        }
    }
}

/// Polls `condition` until it holds or `limit` passes; returns whether it held.
pub async fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    wait_until_async(limit, || std::future::ready(condition())).await
}

/// [`wait_until`] for a condition that must await (a query to the daemon).
pub async fn wait_until_async<F: std::future::Future<Output = bool>>(
    limit: Duration,
    mut condition: impl FnMut() -> F,
) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    condition().await
}

/// A listener on a fresh port of `ip` (the RAE is then started on it).
pub async fn listener(ip: &str) -> (TcpListener, u16) {
    let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// Reads one inter-RAE frame; `None` when the connection closed. A malformed frame from brasa is
/// a bug, so it panics.
pub async fn read_message(stream: &mut tokio::net::TcpStream) -> Option<InterRaeMessage> {
    let mut header = [0u8; wire::HEADER_LEN];
    stream.read_exact(&mut header).await.ok()?;
    let len = Frame::new_unchecked(&header[..]).body_len() as usize;
    let mut frame = header.to_vec();
    frame.resize(wire::HEADER_LEN + len, 0);
    stream
        .read_exact(&mut frame[wire::HEADER_LEN..])
        .await
        .ok()?;
    let frame = Frame::new_checked(&frame[..]).expect("a well-formed frame");
    Some(InterRaeMessage::parse(&frame).expect("a well-formed message"))
}

/// Writes one inter-RAE message.
pub async fn send(stream: &mut tokio::net::TcpStream, message: &InterRaeMessage) {
    let mut out = Vec::new();
    message.emit(&mut out);
    stream.write_all(&out).await.unwrap();
}

/// The prefix domain `as_number` originates in the multi-domain topologies.
pub fn domain_prefix(as_number: u32) -> String {
    format!("127.100.{as_number}.0/24")
}

/// Plays a peer RAE of AS `as_number`: accepts the RAE's connection on `listener` and answers
/// its Open.
pub async fn fake_peer_accept(listener: &TcpListener, as_number: u32) -> tokio::net::TcpStream {
    let (mut stream, _) = listener.accept().await.unwrap();
    let message = read_message(&mut stream).await.unwrap();
    assert!(matches!(message, InterRaeMessage::Open(_)), "{message:?}");
    send(
        &mut stream,
        &InterRaeMessage::Open(proto::Open {
            as_number,
            hold_time_ms: 0,
        }),
    )
    .await;
    stream
}

/// The seven-domain tiered topology of the RAE test and benchmark, running.
pub struct Tiered {
    /// Each domain's CME, by AS number (1 to 7).
    pub cmes: BTreeMap<u32, Cme>,
    /// Each domain's RAE daemon, by AS number.
    pub raes: BTreeMap<u32, brasa_rae_net::RaeHandle>,
    /// The scripted AS 8, a peer of AS 7, its Open exchanged.
    pub as8: tokio::net::TcpStream,
    /// AS 8's listening socket, open as long as the topology (AS 7 finds it there if it
    /// reconnects).
    pub as8_listener: TcpListener,
}

/// Starts the seven-domain tiered topology on `{net}.{as}` (e.g. `127.0.7`): tier 1 is AS 1 and
/// 2, tier 2 AS 3, 4 and 5, tier 3 AS 6 and 7; every RAE has its own CME, originates
/// [`domain_prefix`], and holds its sessions for 3 s with no minimum update interval. AS 8 is
/// played by the caller through [`Tiered::as8`].
pub async fn start_tiered(net: &str) -> Tiered {
    let links = [
        (1, 2),
        (1, 3),
        (1, 4),
        (2, 4),
        (2, 5),
        (3, 6),
        (4, 6),
        (4, 7),
        (5, 7),
    ];
    let ip = |a: u32| format!("{net}.{a}");
    let mut listeners = BTreeMap::new();
    let mut ports = BTreeMap::new();
    for a in 1..=8u32 {
        let (l, p) = listener(&ip(a)).await;
        listeners.insert(a, l);
        ports.insert(a, p);
    }
    let mut cmes = BTreeMap::new();
    let mut raes = BTreeMap::new();
    for a in 1..=7u32 {
        let cme = Cme::start().await;
        let mut peers: Vec<(u32, String, u16)> = links
            .iter()
            .filter_map(|&(x, y)| match (x == a, y == a) {
                (true, _) => Some(y),
                (_, true) => Some(x),
                _ => None,
            })
            .map(|p| (p, ip(p), ports[&p]))
            .collect();
        if a == 7 {
            peers.push((8, ip(8), ports[&8]));
        }
        let domain = Domain {
            as_number: a,
            ip: ip(a),
            port: ports[&a],
            peers,
            prefixes: vec![domain_prefix(a)],
            cme_port: Some(cme.port),
            hold_time: 3.0,
            minimum_update_interval: 0,
        };
        let rae =
            brasa_rae_net::start_with_listener(domain.config(), listeners.remove(&a).unwrap())
                .unwrap();
        raes.insert(a, rae);
        cmes.insert(a, cme);
    }
    let as8_listener = listeners.remove(&8).unwrap();
    let as8 = fake_peer_accept(&as8_listener, 8).await;
    Tiered {
        cmes,
        raes,
        as8,
        as8_listener,
    }
}
