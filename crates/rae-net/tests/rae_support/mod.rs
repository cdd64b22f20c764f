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
