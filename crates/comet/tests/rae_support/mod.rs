//! Helpers shared by the RAE integration tests: configuration builders and a CME receiver.
#![allow(dead_code)]

use brasa_comet::rae::config::RaeConfig;
use brasa_comet::rae::proto;
use brasa_comet::rae::wire::{self, CmeMessage, Frame, InterRaeMessage};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Appendix A decision parameters for classes 1 (BTBE) and 2 (PR).
pub fn decision_parameters() -> Vec<proto::DecisionParameters> {
    vec![
        proto::DecisionParameters {
            id: 1,
            delay_aspiration: 0.5,
            delay_reservation: 1.0,
            loss_aspiration: 1e-5,
            loss_reservation: 1e-3,
            bandwidth_aspiration: 4e6,
            bandwidth_reservation: 1e6,
        },
        proto::DecisionParameters {
            id: 2,
            delay_aspiration: 0.15,
            delay_reservation: 0.4,
            loss_aspiration: 1e-6,
            loss_reservation: 1e-4,
            bandwidth_aspiration: 10e6,
            bandwidth_reservation: 4e6,
        },
    ]
}

pub fn classes(delay: f64) -> Vec<proto::ClassOfService> {
    [1u32, 2]
        .iter()
        .map(|&cos| proto::ClassOfService {
            cos_id: cos,
            metric: Some(proto::Metric {
                loss_ratio: Some(1e-6),
                maximum_delay: Some(delay * f64::from(cos)),
                supported_bandwidth: Some(10e6),
            }),
        })
        .collect()
}

pub fn prefix(text: &str) -> proto::Prefix {
    let (ip, len) = text.split_once('/').unwrap();
    proto::Prefix {
        ip_address: ip.to_string(),
        prefix_length: len.parse().unwrap(),
    }
}

fn endpoint_prefix(p: &proto::Prefix) -> proto::Endpoint {
    proto::Endpoint {
        kind: Some(proto::endpoint::Kind::Prefix(p.clone())),
    }
}

fn endpoint_as(a: u32) -> proto::Endpoint {
    proto::Endpoint {
        kind: Some(proto::endpoint::Kind::AsNumber(a)),
    }
}

/// A domain with full provisioning between every pair of its endpoints (borders and prefixes).
pub struct Domain {
    pub as_number: u32,
    pub ip: String,
    pub port: u16,
    pub peers: Vec<(u32, String, u16)>,
    pub prefixes: Vec<String>,
    pub cme_port: Option<u16>,
    pub hold_time: f64,
    pub minimum_update_interval: u32,
}

impl Domain {
    pub fn message(&self) -> proto::ConfigurationMessage {
        let prefixes: Vec<proto::Prefix> = self.prefixes.iter().map(|p| prefix(p)).collect();
        let mut endpoints: Vec<proto::Endpoint> = prefixes.iter().map(endpoint_prefix).collect();
        endpoints.extend(self.peers.iter().map(|(a, _, _)| endpoint_as(*a)));
        let mut provisioning_table = Vec::new();
        for source in &endpoints {
            for sink in &endpoints {
                if source == sink {
                    continue;
                }
                provisioning_table.push(proto::ProvisioningEntry {
                    source: Some(source.clone()),
                    sink: Some(sink.clone()),
                    class_table: classes(0.0005),
                });
            }
        }
        proto::ConfigurationMessage {
            local_as_number: self.as_number,
            local_ip_address: self.ip.clone(),
            local_port_number: u32::from(self.port),
            limit_of_preferred_paths: 3,
            minimum_update_interval: self.minimum_update_interval,
            cme_ip_address: if self.cme_port.is_some() {
                "127.0.0.1".into()
            } else {
                String::new()
            },
            cme_port_number: u32::from(self.cme_port.unwrap_or(0)),
            decision_with_flat_function: false,
            decision_parameters: decision_parameters(),
            peer_table: self
                .peers
                .iter()
                .map(|(a, ip, port)| proto::PeerEntry {
                    remote_as_number: *a,
                    remote_ip_address: ip.clone(),
                    remote_port_number: u32::from(*port),
                    ttl_value: 1,
                    class_table: classes(0.001),
                })
                .collect(),
            prefix_table: prefixes,
            provisioning_table,
            hold_time: self.hold_time,
        }
    }

    pub fn config(&self) -> RaeConfig {
        RaeConfig::from_proto(&self.message()).unwrap()
    }
}

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
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    condition()
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
