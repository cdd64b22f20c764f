//! The content server (§6.3.2.2): publishes content at its CRME and, for each Consume its CRME
//! passes it, `sendContent` streams the content as numbered chunks to the CAFE the Consume
//! names, paced by a token bucket so a fast server does not overrun the path's socket buffers.

use crate::wire::{self, Message};
use crate::Transmit;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a content server is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// This server's address and port.
    pub me: SocketAddrV4,
    /// Its CRME.
    pub crme: SocketAddrV4,
    /// The CAFE it is attached to (first hop of every stream).
    pub attach_cafe: SocketAddrV4,
    /// Payload bytes per chunk.
    pub chunk_size: usize,
    /// Chunks per second (pacing).
    pub rate: u32,
    /// How often publications are repeated (the CRME may start after the server).
    pub republish_interval: Duration,
    /// Hop limit of Publish messages.
    pub hop_limit: u8,
}

/// What the server counted since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCounters {
    /// Datagrams handled.
    pub datagrams: u64,
    /// Datagrams that failed to parse (dropped).
    pub malformed: u64,
    /// Consumes that started a stream.
    pub consumes: u64,
    /// Consumes for a stream already running (ignored).
    pub duplicate_consumes: u64,
    /// Leave Consumes that stopped a stream.
    pub leaves: u64,
    /// Consumes dropped: unknown content, or not from the server's CRME.
    pub dropped: u64,
    /// Chunks sent.
    pub chunks_sent: u64,
    /// Streams completed.
    pub streams_completed: u64,
    /// Well-formed messages a server does not accept, dropped.
    pub unexpected: u64,
}

#[derive(Debug)]
struct Stream {
    content_id: String,
    data: Arc<[u8]>,
    to: SocketAddrV4,
    next_seq: u32,
    total: u32,
}

/// One stream in progress, as shown to operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRow {
    /// The content.
    pub content_id: String,
    /// The first-hop CAFE.
    pub to: SocketAddrV4,
    /// Chunks sent so far.
    pub sent: u32,
    /// Chunks in the content.
    pub total: u32,
}

/// A content server.
#[derive(Debug)]
pub struct ContentServer {
    config: ServerConfig,
    contents: HashMap<String, Arc<[u8]>>,
    streams: VecDeque<Stream>,
    tokens: f64,
    last_refill: Option<Instant>,
    next_republish: Option<Instant>,
    counters: ServerCounters,
    outbox: VecDeque<Transmit>,
}

impl ContentServer {
    /// A server with nothing published.
    pub fn new(config: ServerConfig) -> Self {
        Self {
            config,
            contents: HashMap::new(),
            streams: VecDeque::new(),
            tokens: 0.0,
            last_refill: None,
            next_republish: None,
            counters: ServerCounters::default(),
            outbox: VecDeque::new(),
        }
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Publishes `content_id` with `data` (an error if the ID is not a valid content ID).
    pub fn publish(&mut self, content_id: &str, data: Arc<[u8]>) -> Result<(), wire::WireError> {
        wire::check_content_id(content_id.as_bytes())?;
        self.contents.insert(content_id.to_string(), data);
        self.send_publish(content_id);
        Ok(())
    }

    fn send_publish(&mut self, content_id: &str) {
        let message = Message::Publish(wire::Publish {
            hop_limit: self.config.hop_limit,
            server: self.config.me,
            attach_cafe: self.config.attach_cafe,
            content_id,
        });
        if let Ok(payload) = message.to_vec() {
            self.outbox.push_back(Transmit {
                to: self.config.crme,
                payload,
            });
        }
    }

    /// Handles one received datagram.
    pub fn handle(&mut self, from: SocketAddrV4, bytes: &[u8]) {
        self.counters.datagrams += 1;
        match Message::parse(bytes) {
            Ok(Message::Consume(consume)) => self.process_consume(from, &consume),
            Ok(_) => self.counters.unexpected += 1,
            Err(_) => self.counters.malformed += 1,
        }
    }

    /// Starts (or, for a leave, stops) a stream of the requested content.
    pub fn process_consume(&mut self, from: SocketAddrV4, consume: &wire::Consume<'_>) {
        if from != self.config.crme {
            self.counters.dropped += 1;
            return;
        }
        let id = consume.content_id;
        let running = self
            .streams
            .iter()
            .position(|s| s.content_id == id && s.to == consume.deliver_to);
        if consume.leave {
            if let Some(at) = running {
                self.streams.remove(at);
                self.counters.leaves += 1;
            }
            return;
        }
        let Some(data) = self.contents.get(id).cloned() else {
            self.counters.dropped += 1;
            return;
        };
        if running.is_some() {
            self.counters.duplicate_consumes += 1;
            return;
        }
        let chunk = self.config.chunk_size.max(1);
        let total = data.len().div_ceil(chunk).max(1);
        let Ok(total) = u32::try_from(total) else {
            self.counters.dropped += 1;
            return;
        };
        self.counters.consumes += 1;
        self.streams.push_back(Stream {
            content_id: id.to_string(),
            data,
            to: consume.deliver_to,
            next_seq: 0,
            total,
        });
    }

    /// Timer work: repeats publications every `republish_interval`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_republish.is_some_and(|at| now < at) {
            return;
        }
        self.next_republish = Some(now + self.config.republish_interval);
        let ids: Vec<String> = self.contents.keys().cloned().collect();
        for id in ids {
            self.send_publish(&id);
        }
    }

    /// The next control message (Publish) to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// `sendContent`: up to `max` chunks allowed by the pacing at `now`, round-robin over the
    /// running streams.
    pub fn poll_chunks(&mut self, now: Instant, max: usize) -> Vec<Transmit> {
        let elapsed = self
            .last_refill
            .map_or(Duration::ZERO, |last| now.saturating_duration_since(last));
        self.last_refill = Some(now);
        let rate = f64::from(self.config.rate.max(1));
        // Bursts are bounded to 10 ms worth of chunks (at least one batch).
        let burst = (rate / 100.0).max(64.0);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * rate).min(burst);
        if self.streams.is_empty() {
            self.tokens = self.tokens.min(1.0);
        }
        let mut out = Vec::new();
        while out.len() < max && self.tokens >= 1.0 {
            let Some(mut stream) = self.streams.pop_front() else {
                break;
            };
            let chunk = self.config.chunk_size.max(1);
            let start = (stream.next_seq as usize).saturating_mul(chunk);
            let end = start.saturating_add(chunk).min(stream.data.len());
            let payload = stream.data.get(start..end).unwrap_or(&[]);
            let last = stream.next_seq + 1 >= stream.total;
            let message = Message::Content(
                wire::ChunkHeader {
                    last,
                    seq: stream.next_seq,
                    source: self.config.me,
                    sender: self.config.me,
                    content_id: &stream.content_id,
                },
                payload,
            );
            if let Ok(payload) = message.to_vec() {
                out.push(Transmit {
                    to: stream.to,
                    payload,
                });
                self.counters.chunks_sent += 1;
            }
            self.tokens -= 1.0;
            stream.next_seq += 1;
            if last {
                self.counters.streams_completed += 1;
            } else {
                self.streams.push_back(stream);
            }
        }
        out
    }

    /// True while a stream is running.
    pub fn is_streaming(&self) -> bool {
        !self.streams.is_empty()
    }

    /// The streams in progress.
    pub fn streams(&self) -> Vec<StreamRow> {
        self.streams
            .iter()
            .map(|s| StreamRow {
                content_id: s.content_id.clone(),
                to: s.to,
                sent: s.next_seq,
                total: s.total,
            })
            .collect()
    }

    /// The published content IDs and their sizes.
    pub fn published(&self) -> Vec<(String, usize)> {
        let mut out: Vec<_> = self
            .contents
            .iter()
            .map(|(id, data)| (id.clone(), data.len()))
            .collect();
        out.sort();
        out
    }

    /// Counters.
    pub fn counters(&self) -> &ServerCounters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::ep;

    fn server() -> ContentServer {
        ContentServer::new(ServerConfig {
            me: ep(5, 3, 1000),
            crme: ep(5, 1, 3000),
            attach_cafe: ep(5, 3, 2000),
            chunk_size: 4,
            rate: 1000,
            republish_interval: Duration::from_secs(1),
            hop_limit: 8,
        })
    }

    fn consume(leave: bool, id: &str) -> Vec<u8> {
        Message::Consume(wire::Consume {
            route_opt: false,
            leave,
            hop_limit: 3,
            consumer: ep(4, 3, 1000),
            deliver_to: ep(5, 3, 2000),
            egress_hint: None,
            source: None,
            content_id: id,
        })
        .to_vec()
        .unwrap()
    }

    #[test]
    fn streams_paced_numbered_chunks_with_a_last_flag() {
        let mut server = server();
        server.publish("C", Arc::from(&b"0123456789"[..])).unwrap();
        let publish = server.poll_transmit().unwrap();
        assert_eq!(publish.to, ep(5, 1, 3000));
        server.handle(ep(5, 1, 3000), &consume(false, "C"));
        let t0 = Instant::now();
        assert!(server.poll_chunks(t0, 100).is_empty(), "no tokens yet");
        // 1000 chunks/s: 2 ms is worth two chunks.
        let first = server.poll_chunks(t0 + Duration::from_millis(2), 100);
        assert_eq!(first.len(), 2);
        let rest = server.poll_chunks(t0 + Duration::from_millis(100), 100);
        let chunks: Vec<_> = first.iter().chain(&rest).collect();
        assert_eq!(chunks.len(), 3);
        let mut data = Vec::new();
        for (seq, chunk) in chunks.iter().enumerate() {
            assert_eq!(chunk.to, ep(5, 3, 2000));
            let packet = wire::ContentPacket::new_checked(&chunk.payload[..]).unwrap();
            assert_eq!(packet.seq() as usize, seq);
            assert_eq!(packet.last(), seq == 2);
            data.extend_from_slice(packet.payload());
        }
        assert_eq!(data, b"0123456789");
        assert!(!server.is_streaming());
    }

    #[test]
    fn unknown_content_duplicates_leave_and_strangers() {
        let mut server = server();
        server.publish("C", Arc::from(&b"0123456789"[..])).unwrap();
        server.handle(ep(5, 1, 3000), &consume(false, "Nope"));
        server.handle(ep(9, 9, 9), &consume(false, "C"));
        assert_eq!(server.counters().dropped, 2);
        server.handle(ep(5, 1, 3000), &consume(false, "C"));
        server.handle(ep(5, 1, 3000), &consume(false, "C"));
        assert_eq!(server.counters().duplicate_consumes, 1);
        server.handle(ep(5, 1, 3000), &consume(true, "C"));
        assert!(!server.is_streaming());
        server.handle(ep(5, 1, 3000), b"\xCA\x01\x04");
        assert_eq!(server.counters().malformed, 1);
        assert!(server.publish("a/b", Arc::from(&b""[..])).is_err());
    }
}
