//! The content client (§6.3.2.3): sends Consume to its CRME, reassembles the chunks it
//! receives from its CAFE (`processContent`), and hands back the content only when every chunk
//! from 0 to the last one is present. A gap (lost chunks, or joining a flow in mid-stream) is
//! detected when the flow goes quiet and repaired by consuming the content again; the file is
//! never written incomplete.

use crate::wire::{self, ContentPacket, Message};
use crate::Transmit;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// How a content client is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// This client's address and port.
    pub me: SocketAddrV4,
    /// Its CRME.
    pub crme: SocketAddrV4,
    /// The CAFE it is attached to (content arrives from it only).
    pub cafe: SocketAddrV4,
    /// Quiet time after which an incomplete download is repaired by a new Consume.
    pub idle_timeout: Duration,
    /// Consumes per content before giving up.
    pub max_attempts: u32,
    /// Largest content accepted, in bytes (bounds memory spent on hostile input).
    pub max_content_bytes: usize,
    /// Hop limit of Consume messages.
    pub hop_limit: u8,
}

/// What the client counted since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCounters {
    /// Datagrams handled.
    pub datagrams: u64,
    /// Datagrams that failed to parse (dropped).
    pub malformed: u64,
    /// Consume messages sent (first requests and repairs).
    pub consumes: u64,
    /// Chunks stored.
    pub chunks: u64,
    /// Chunks already held (dropped).
    pub duplicates: u64,
    /// Chunks for content not requested, or already complete (dropped).
    pub unknown_content: u64,
    /// Chunks not from the client's CAFE, or beyond the size limit (dropped).
    pub rejected: u64,
    /// Downloads found to have gaps.
    pub gaps_detected: u64,
    /// Repair Consumes sent.
    pub repairs: u64,
    /// Downloads completed.
    pub completed: u64,
    /// Downloads given up.
    pub failed: u64,
}

/// Happenings, drained with [`ContentClient::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Every chunk arrived: the content is `data`.
    Completed {
        /// The content.
        content_id: String,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// A gap was found; a repair Consume was sent.
    GapDetected {
        /// The content.
        content_id: String,
        /// Chunks missing (when the last chunk is known) or `None`.
        missing: Option<u32>,
    },
    /// `max_attempts` Consumes did not deliver it.
    Failed {
        /// The content.
        content_id: String,
    },
}

#[derive(Debug)]
struct Download {
    chunks: BTreeMap<u32, Box<[u8]>>,
    bytes: usize,
    total: Option<u32>,
    attempts: u32,
    last_progress: Instant,
    done: bool,
}

/// One download as shown to operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadRow {
    /// The content.
    pub content_id: String,
    /// Chunks held.
    pub chunks: u32,
    /// Chunks in the content, once the last chunk was seen.
    pub total: Option<u32>,
    /// Consumes sent.
    pub attempts: u32,
    /// Complete and handed over.
    pub done: bool,
}

/// A content client.
#[derive(Debug)]
pub struct ContentClient {
    config: ClientConfig,
    downloads: HashMap<String, Download>,
    counters: ClientCounters,
    outbox: VecDeque<Transmit>,
    events: VecDeque<ClientEvent>,
}

impl ContentClient {
    /// A client with no downloads.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config,
            downloads: HashMap::new(),
            counters: ClientCounters::default(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Requests `content_id` (an error if it is not a valid content ID). Requesting content
    /// already downloaded downloads it again.
    pub fn consume(&mut self, now: Instant, content_id: &str) -> Result<(), wire::WireError> {
        wire::check_content_id(content_id.as_bytes())?;
        self.downloads.insert(
            content_id.to_string(),
            Download {
                chunks: BTreeMap::new(),
                bytes: 0,
                total: None,
                attempts: 1,
                last_progress: now,
                done: false,
            },
        );
        self.send_consume(content_id);
        Ok(())
    }

    fn send_consume(&mut self, content_id: &str) {
        self.counters.consumes += 1;
        let message = Message::Consume(wire::Consume {
            route_opt: false,
            leave: false,
            hop_limit: self.config.hop_limit,
            consumer: self.config.me,
            deliver_to: self.config.me,
            egress_hint: Some(self.config.cafe),
            source: None,
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
    pub fn handle(&mut self, now: Instant, from: SocketAddrV4, bytes: &[u8]) {
        self.counters.datagrams += 1;
        match ContentPacket::new_checked(bytes) {
            Ok(packet) => self.process_content(now, from, &packet),
            Err(_) => match Message::parse(bytes) {
                Ok(_) => self.counters.rejected += 1,
                Err(_) => self.counters.malformed += 1,
            },
        }
    }

    /// `processContent(pkt)`: stores a chunk; completes the download when nothing is missing.
    pub fn process_content(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        packet: &ContentPacket<&[u8]>,
    ) {
        if from != self.config.cafe {
            self.counters.rejected += 1;
            return;
        }
        let Some(download) = self.downloads.get_mut(packet.content_id()) else {
            self.counters.unknown_content += 1;
            return;
        };
        if download.done {
            self.counters.unknown_content += 1;
            return;
        }
        let seq = packet.seq();
        if download.total.is_some_and(|total| seq >= total)
            || download.bytes + packet.payload().len() > self.config.max_content_bytes
        {
            self.counters.rejected += 1;
            return;
        }
        if download.chunks.contains_key(&seq) {
            self.counters.duplicates += 1;
            return;
        }
        if packet.last() {
            download.total = Some(seq + 1);
            download.chunks.retain(|s, _| *s <= seq);
        }
        download.bytes += packet.payload().len();
        download.chunks.insert(seq, packet.payload().into());
        download.last_progress = now;
        self.counters.chunks += 1;
        if download.total == Some(download.chunks.len() as u32) {
            download.done = true;
            let mut data = Vec::with_capacity(download.bytes);
            for chunk in std::mem::take(&mut download.chunks).into_values() {
                data.extend_from_slice(&chunk);
            }
            self.counters.completed += 1;
            self.events.push_back(ClientEvent::Completed {
                content_id: packet.content_id().to_string(),
                data,
            });
        }
    }

    /// Timer work: downloads quiet for `idle_timeout` are repaired or given up.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut repairs = Vec::new();
        for (id, download) in self.downloads.iter_mut() {
            if download.done
                || now.saturating_duration_since(download.last_progress) < self.config.idle_timeout
            {
                continue;
            }
            download.last_progress = now;
            let missing = download
                .total
                .map(|total| total - download.chunks.len() as u32);
            self.counters.gaps_detected += 1;
            if download.attempts >= self.config.max_attempts {
                download.done = true;
                download.chunks.clear();
                self.counters.failed += 1;
                self.events.push_back(ClientEvent::Failed {
                    content_id: id.clone(),
                });
                continue;
            }
            download.attempts += 1;
            self.events.push_back(ClientEvent::GapDetected {
                content_id: id.clone(),
                missing,
            });
            repairs.push(id.clone());
        }
        for id in repairs {
            self.counters.repairs += 1;
            self.send_consume(&id);
        }
    }

    /// When [`ContentClient::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.downloads
            .values()
            .filter(|d| !d.done)
            .map(|d| d.last_progress + self.config.idle_timeout)
            .min()
    }

    /// True while a download is incomplete.
    pub fn is_busy(&self) -> bool {
        self.downloads.values().any(|d| !d.done)
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Counters.
    pub fn counters(&self) -> &ClientCounters {
        &self.counters
    }

    /// The downloads.
    pub fn downloads(&self) -> Vec<DownloadRow> {
        let mut rows: Vec<_> = self
            .downloads
            .iter()
            .map(|(id, d)| DownloadRow {
                content_id: id.clone(),
                chunks: d.chunks.len() as u32,
                total: d.total,
                attempts: d.attempts,
                done: d.done,
            })
            .collect();
        rows.sort_by(|a, b| a.content_id.cmp(&b.content_id));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::ep;

    fn client() -> ContentClient {
        ContentClient::new(ClientConfig {
            me: ep(4, 3, 1000),
            crme: ep(4, 1, 3000),
            cafe: ep(4, 3, 2000),
            idle_timeout: Duration::from_millis(500),
            max_attempts: 2,
            max_content_bytes: 1 << 20,
            hop_limit: 8,
        })
    }

    fn chunk(id: &str, seq: u32, last: bool, payload: &[u8]) -> Vec<u8> {
        Message::Content(
            wire::ChunkHeader {
                last,
                seq,
                source: ep(5, 3, 1000),
                sender: ep(4, 3, 2000),
                content_id: id,
            },
            payload,
        )
        .to_vec()
        .unwrap()
    }

    #[test]
    fn reassembles_out_of_order_and_ignores_duplicates() {
        let mut client = client();
        let t0 = Instant::now();
        client.consume(t0, "C").unwrap();
        let consume = client.poll_transmit().unwrap();
        assert_eq!(consume.to, ep(4, 1, 3000));
        let cafe = ep(4, 3, 2000);
        client.handle(t0, cafe, &chunk("C", 2, true, b"ef"));
        client.handle(t0, cafe, &chunk("C", 0, false, b"ab"));
        client.handle(t0, cafe, &chunk("C", 0, false, b"ab"));
        assert!(client.poll_event().is_none());
        client.handle(t0, cafe, &chunk("C", 1, false, b"cd"));
        assert_eq!(
            client.poll_event(),
            Some(ClientEvent::Completed {
                content_id: "C".into(),
                data: b"abcdef".to_vec()
            })
        );
        assert_eq!(client.counters().duplicates, 1);
        client.handle(t0, cafe, &chunk("C", 1, false, b"cd"));
        assert_eq!(client.counters().unknown_content, 1);
    }

    #[test]
    fn gaps_are_detected_and_repaired_then_given_up() {
        let mut client = client();
        let t0 = Instant::now();
        client.consume(t0, "C").unwrap();
        client.poll_transmit();
        let cafe = ep(4, 3, 2000);
        client.handle(t0, cafe, &chunk("C", 0, false, b"ab"));
        client.handle(t0, cafe, &chunk("C", 2, true, b"ef"));
        client.handle_timeout(t0 + Duration::from_millis(100));
        assert!(client.poll_transmit().is_none(), "not idle long enough");
        client.handle_timeout(t0 + Duration::from_millis(600));
        assert_eq!(
            client.poll_event(),
            Some(ClientEvent::GapDetected {
                content_id: "C".into(),
                missing: Some(1)
            })
        );
        assert!(client.poll_transmit().is_some(), "repair Consume");
        client.handle_timeout(t0 + Duration::from_millis(1200));
        assert_eq!(
            client.poll_event(),
            Some(ClientEvent::Failed {
                content_id: "C".into()
            })
        );
        assert!(!client.is_busy());
    }

    #[test]
    fn bad_input_is_counted_and_dropped() {
        let mut client = client();
        let t0 = Instant::now();
        client.consume(t0, "C").unwrap();
        client.handle(t0, ep(4, 3, 2000), &chunk("Other", 0, true, b"x"));
        client.handle(t0, ep(9, 9, 9), &chunk("C", 0, true, b"x"));
        client.handle(t0, ep(4, 3, 2000), &chunk("C", 0, true, b"x")[..10]);
        assert_eq!(client.counters().unknown_content, 1);
        assert_eq!(client.counters().rejected, 1);
        assert_eq!(client.counters().malformed, 1);
        let huge = vec![0u8; (1 << 20) + 1];
        client.handle(t0, ep(4, 3, 2000), &chunk("C", 0, false, &huge));
        assert_eq!(client.counters().rejected, 2);
        assert!(client.consume(t0, "..").is_err());
    }
}
