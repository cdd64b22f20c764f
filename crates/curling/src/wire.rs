//! The CURLING wire format: every message CAFEs, CRMEs, content servers and clients exchange
//! over UDP (seed 004 §6.2, Tables 3 and 4), specified in `docs/curling.md`.
//!
//! All integers are big-endian. Every datagram starts with the same 4-byte header:
//!
//! ```text
//!  0        1        2        3
//! +--------+--------+--------+--------+
//! | 0xCA   | ver=1  |  type  | flags  |
//! +--------+--------+--------+--------+
//! ```
//!
//! Endpoints are 6 bytes (IPv4 address, port). Content IDs are one length byte followed by
//! 1..=255 bytes of UTF-8 that must also be a safe file name (no `/`, no NUL, not `.`/`..`),
//! because content clients save content under `Content/<addr port>/<ContentID>`.
//!
//! The content chunk is the hot path, so it has a zero-copy view ([`ContentPacket`]) whose
//! fixed-offset `sender` field a CAFE rewrites in place before forwarding. Control messages are
//! parsed into [`Message`], which borrows the content ID from the datagram.

use std::net::{Ipv4Addr, SocketAddrV4};

/// First byte of every CURLING datagram.
pub const MAGIC: u8 = 0xCA;
/// The only wire version this implementation speaks.
pub const VERSION: u8 = 1;
/// Length of the common header.
pub const HEADER_LEN: usize = 4;
/// Length of an encoded endpoint (IPv4 address and port).
pub const ENDPOINT_LEN: usize = 6;
/// Longest content ID in bytes.
pub const MAX_CONTENT_ID_LEN: usize = 255;
/// Most neighbours one Announce or next hops one Notify may list.
pub const MAX_LIST_LEN: usize = 64;

/// Why a datagram was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than the header or than its own fields say.
    #[error("truncated message")]
    Truncated,
    /// The first byte is not [`MAGIC`].
    #[error("not a CURLING message (bad magic)")]
    BadMagic,
    /// A version other than [`VERSION`].
    #[error("unsupported version {0}")]
    BadVersion(u8),
    /// A message type this implementation does not know.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// The content ID is empty, not UTF-8 or not a safe file name.
    #[error("invalid content ID")]
    BadContentId,
    /// A list longer than [`MAX_LIST_LEN`].
    #[error("list too long")]
    ListTooLong,
    /// Bytes left over after a control message.
    #[error("trailing bytes after the message")]
    Trailing,
    /// Flag bits this version does not define.
    #[error("undefined flag bits {0:#04x}")]
    BadFlags(u8),
    /// The output buffer is too small for [`Message::emit`].
    #[error("buffer too small")]
    BufferTooSmall,
}

/// Message types (byte 2 of the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    /// CAFE → local CRME: presence and inter-domain links.
    Announce = 1,
    /// CRME → local CAFE: install or remove a content state.
    Configure = 2,
    /// Ingress CAFE → local CRME: a content flow started or ended.
    Notify = 3,
    /// Client → CRME, CRME → CRME, CRME → server: request (or leave) a content flow.
    Consume = 4,
    /// Server → CRME, CRME → provider CRME: content publication.
    Publish = 5,
    /// Server/CAFE → CAFE/client: a content chunk.
    Content = 6,
}

impl MessageType {
    fn from_u8(value: u8) -> Result<Self, WireError> {
        Ok(match value {
            1 => Self::Announce,
            2 => Self::Configure,
            3 => Self::Notify,
            4 => Self::Consume,
            5 => Self::Publish,
            6 => Self::Content,
            other => return Err(WireError::UnknownType(other)),
        })
    }
}

/// Configure flag: remove the next hop instead of adding it.
pub const CONFIGURE_REMOVE: u8 = 0x01;
/// Notify flag: the flow ended (teardown) rather than started (create).
pub const NOTIFY_TEARDOWN: u8 = 0x01;
/// Consume flag: a route-optimisation Consume, resolved by routing towards `source`.
pub const CONSUME_ROUTE_OPT: u8 = 0x01;
/// Consume flag: stop delivering the content to `deliver_to` (prune).
pub const CONSUME_LEAVE: u8 = 0x02;
/// Content flag: this is the last chunk of the content.
pub const CONTENT_LAST: u8 = 0x01;

/// Checks that `bytes` is a valid content ID and returns it as text.
pub fn check_content_id(bytes: &[u8]) -> Result<&str, WireError> {
    if bytes.is_empty() || bytes.len() > MAX_CONTENT_ID_LEN {
        return Err(WireError::BadContentId);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| WireError::BadContentId)?;
    if text == "." || text == ".." || text.contains(['/', '\\', '\0']) {
        return Err(WireError::BadContentId);
    }
    Ok(text)
}

/// A bounds-checked reader over a message body; every accessor fails instead of panicking.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < len {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn endpoint(&mut self) -> Result<SocketAddrV4, WireError> {
        let raw = self.take(ENDPOINT_LEN)?;
        Ok(read_endpoint(raw))
    }

    fn content_id(&mut self) -> Result<&'a str, WireError> {
        let len = usize::from(self.u8()?);
        check_content_id(self.take(len)?)
    }

    fn count(&mut self) -> Result<usize, WireError> {
        let count = usize::from(self.u8()?);
        if count > MAX_LIST_LEN {
            return Err(WireError::ListTooLong);
        }
        Ok(count)
    }

    fn finish(self) -> Result<(), WireError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing)
        }
    }
}

fn read_endpoint(raw: &[u8]) -> SocketAddrV4 {
    let mut ip = [0u8; 4];
    ip.copy_from_slice(&raw[..4]);
    SocketAddrV4::new(Ipv4Addr::from(ip), u16::from_be_bytes([raw[4], raw[5]]))
}

fn write_endpoint(out: &mut [u8], endpoint: SocketAddrV4) {
    out[..4].copy_from_slice(&endpoint.ip().octets());
    out[4..6].copy_from_slice(&endpoint.port().to_be_bytes());
}

/// The unspecified endpoint `0.0.0.0:0`, used on the wire for "none".
pub const NO_ENDPOINT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);

fn optional(endpoint: SocketAddrV4) -> Option<SocketAddrV4> {
    (endpoint != NO_ENDPOINT).then_some(endpoint)
}

/// Checks the common header and returns the message type and flags.
pub fn parse_header(bytes: &[u8]) -> Result<(MessageType, u8), WireError> {
    if bytes.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    if bytes[0] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if bytes[1] != VERSION {
        return Err(WireError::BadVersion(bytes[1]));
    }
    Ok((MessageType::from_u8(bytes[2])?, bytes[3]))
}

fn check_flags(flags: u8, defined: u8) -> Result<u8, WireError> {
    if flags & !defined != 0 {
        Err(WireError::BadFlags(flags))
    } else {
        Ok(flags)
    }
}

/// One inter-domain link advertised in an Announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    /// The CAFE at the far end of the link.
    pub cafe: SocketAddrV4,
    /// The CRME controlling that CAFE.
    pub crme: SocketAddrV4,
}

/// A bounded list of endpoints or neighbours carried by value (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct List<'a, T> {
    raw: &'a [u8],
    count: usize,
    _item: std::marker::PhantomData<T>,
}

impl<'a, T> List<'a, T> {
    /// How many items the list holds.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the list holds nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl<'a> List<'a, SocketAddrV4> {
    /// The endpoints in order.
    pub fn iter(&self) -> impl Iterator<Item = SocketAddrV4> + 'a {
        self.raw.chunks_exact(ENDPOINT_LEN).map(read_endpoint)
    }
}

impl<'a> List<'a, Neighbour> {
    /// The neighbours in order.
    pub fn iter(&self) -> impl Iterator<Item = Neighbour> + 'a {
        self.raw
            .chunks_exact(2 * ENDPOINT_LEN)
            .map(|pair| Neighbour {
                cafe: read_endpoint(&pair[..ENDPOINT_LEN]),
                crme: read_endpoint(&pair[ENDPOINT_LEN..]),
            })
    }
}

/// The items of a list to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Items<'a, T> {
    /// Borrowed from a parsed datagram.
    Wire(List<'a, T>),
    /// Borrowed from memory.
    Slice(&'a [T]),
}

impl<'a> Items<'a, SocketAddrV4> {
    /// The endpoints in order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = SocketAddrV4> + 'a> {
        match *self {
            Items::Wire(list) => Box::new(list.iter()),
            Items::Slice(slice) => Box::new(slice.iter().copied()),
        }
    }
}

impl<'a> Items<'a, Neighbour> {
    /// The neighbours in order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = Neighbour> + 'a> {
        match *self {
            Items::Wire(list) => Box::new(list.iter()),
            Items::Slice(slice) => Box::new(slice.iter().copied()),
        }
    }
}

impl<T> Items<'_, T> {
    /// How many items there are.
    pub fn len(&self) -> usize {
        match self {
            Items::Wire(list) => list.len(),
            Items::Slice(slice) => slice.len(),
        }
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Announce (Table 3): a CAFE tells its local CRME it exists and which inter-domain links it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announce<'a> {
    /// The announcing CAFE.
    pub cafe: SocketAddrV4,
    /// Its inter-domain links (`neighbourCafeAddr`, `neighbourCafePort`, `neighbourCrmeAddr`).
    pub neighbours: Items<'a, Neighbour>,
}

/// Configure (Table 3): a CRME installs (or removes) one next hop of a content state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Configure<'a> {
    /// Remove `next_hop` instead of adding it.
    pub remove: bool,
    /// The CAFE the state is meant for (a CAFE drops Configures addressed to another CAFE).
    pub cafe: SocketAddrV4,
    /// The previous-hop CAFE (or server) content will arrive from, when known.
    pub prev_hop: Option<SocketAddrV4>,
    /// The next hop (CAFE or client) to forward the content to.
    pub next_hop: SocketAddrV4,
    /// The content.
    pub content_id: &'a str,
}

/// Notify (Table 3): an ingress CAFE reports a new (create) or finished (teardown) flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notify<'a> {
    /// The flow ended.
    pub teardown: bool,
    /// The notifying (ingress) CAFE.
    pub ingress: SocketAddrV4,
    /// The content server the flow comes from (`contentSrcAddr`).
    pub source: SocketAddrV4,
    /// The CAFE (or server) the content arrived from (`prevHopCafeAddr`).
    pub prev_hop: SocketAddrV4,
    /// Where the ingress CAFE forwards it (`nextHopCafeAddr`, `nextHopCafePort`).
    pub next_hops: Items<'a, SocketAddrV4>,
    /// The content.
    pub content_id: &'a str,
}

/// Consume: a content request travelling client → CRME → … → CRME → server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consume<'a> {
    /// Route-optimisation Consume: resolve towards `source` by the routing table.
    pub route_opt: bool,
    /// Leave (prune): stop delivering the content to `deliver_to`.
    pub leave: bool,
    /// Remaining CRME hops; a Consume arriving with 0 is dropped (loop guard).
    pub hop_limit: u8,
    /// The client that asked for the content.
    pub consumer: SocketAddrV4,
    /// Where the receiver must deliver the content (a CAFE of the sending domain, or the client).
    pub deliver_to: SocketAddrV4,
    /// The receiver's CAFE adjacent to `deliver_to`, when the sender knows it.
    pub egress_hint: Option<SocketAddrV4>,
    /// The content source, when known (required for route optimisation).
    pub source: Option<SocketAddrV4>,
    /// The content.
    pub content_id: &'a str,
}

/// Publish: a server registers content at its CRME, which propagates it to its providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish<'a> {
    /// Remaining CRME hops.
    pub hop_limit: u8,
    /// The content server.
    pub server: SocketAddrV4,
    /// The CAFE the server is attached to.
    pub attach_cafe: SocketAddrV4,
    /// The content.
    pub content_id: &'a str,
}

/// Header of a content chunk (Table 4); the payload follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader<'a> {
    /// This is the last chunk of the content.
    pub last: bool,
    /// Chunk sequence number, from 0.
    pub seq: u32,
    /// The content server that sent the content.
    pub source: SocketAddrV4,
    /// The CAFE (or server) that sent this copy of the chunk.
    pub sender: SocketAddrV4,
    /// The content.
    pub content_id: &'a str,
}

/// Any CURLING message, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// See [`Announce`].
    Announce(Announce<'a>),
    /// See [`Configure`].
    Configure(Configure<'a>),
    /// See [`Notify`].
    Notify(Notify<'a>),
    /// See [`Consume`].
    Consume(Consume<'a>),
    /// See [`Publish`].
    Publish(Publish<'a>),
    /// A content chunk and its payload.
    Content(ChunkHeader<'a>, &'a [u8]),
}

impl<'a> Message<'a> {
    /// Parses a whole datagram. Never panics; any inconsistency is an error.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, WireError> {
        let (kind, flags) = parse_header(bytes)?;
        let mut r = Reader {
            bytes: &bytes[HEADER_LEN..],
        };
        let message = match kind {
            MessageType::Announce => {
                check_flags(flags, 0)?;
                let cafe = r.endpoint()?;
                let count = r.count()?;
                let raw = r.take(count * 2 * ENDPOINT_LEN)?;
                Message::Announce(Announce {
                    cafe,
                    neighbours: Items::Wire(List {
                        raw,
                        count,
                        _item: std::marker::PhantomData,
                    }),
                })
            }
            MessageType::Configure => {
                let flags = check_flags(flags, CONFIGURE_REMOVE)?;
                Message::Configure(Configure {
                    remove: flags & CONFIGURE_REMOVE != 0,
                    cafe: r.endpoint()?,
                    prev_hop: optional(r.endpoint()?),
                    next_hop: r.endpoint()?,
                    content_id: r.content_id()?,
                })
            }
            MessageType::Notify => {
                let flags = check_flags(flags, NOTIFY_TEARDOWN)?;
                let ingress = r.endpoint()?;
                let source = r.endpoint()?;
                let prev_hop = r.endpoint()?;
                let count = r.count()?;
                let raw = r.take(count * ENDPOINT_LEN)?;
                Message::Notify(Notify {
                    teardown: flags & NOTIFY_TEARDOWN != 0,
                    ingress,
                    source,
                    prev_hop,
                    next_hops: Items::Wire(List {
                        raw,
                        count,
                        _item: std::marker::PhantomData,
                    }),
                    content_id: r.content_id()?,
                })
            }
            MessageType::Consume => {
                let flags = check_flags(flags, CONSUME_ROUTE_OPT | CONSUME_LEAVE)?;
                Message::Consume(Consume {
                    route_opt: flags & CONSUME_ROUTE_OPT != 0,
                    leave: flags & CONSUME_LEAVE != 0,
                    hop_limit: r.u8()?,
                    consumer: r.endpoint()?,
                    deliver_to: r.endpoint()?,
                    egress_hint: optional(r.endpoint()?),
                    source: optional(r.endpoint()?),
                    content_id: r.content_id()?,
                })
            }
            MessageType::Publish => {
                check_flags(flags, 0)?;
                Message::Publish(Publish {
                    hop_limit: r.u8()?,
                    server: r.endpoint()?,
                    attach_cafe: r.endpoint()?,
                    content_id: r.content_id()?,
                })
            }
            MessageType::Content => {
                let packet = ContentPacket::new_checked(bytes)?;
                let (header, payload) = packet.split()?;
                return Ok(Message::Content(header, payload));
            }
        };
        r.finish()?;
        Ok(message)
    }

    /// The encoded length of this message.
    pub fn buffer_len(&self) -> usize {
        let id = |id: &str| 1 + id.len();
        HEADER_LEN
            + match self {
                Message::Announce(m) => ENDPOINT_LEN + 1 + m.neighbours.len() * 2 * ENDPOINT_LEN,
                Message::Configure(m) => 3 * ENDPOINT_LEN + id(m.content_id),
                Message::Notify(m) => {
                    3 * ENDPOINT_LEN + 1 + m.next_hops.len() * ENDPOINT_LEN + id(m.content_id)
                }
                Message::Consume(m) => 1 + 4 * ENDPOINT_LEN + id(m.content_id),
                Message::Publish(m) => 1 + 2 * ENDPOINT_LEN + id(m.content_id),
                Message::Content(h, payload) => {
                    CONTENT_FIXED_LEN - HEADER_LEN + 1 + h.content_id.len() + payload.len()
                }
            }
    }

    /// Encodes into `out` and returns the encoded length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let len = self.buffer_len();
        if out.len() < len {
            return Err(WireError::BufferTooSmall);
        }
        let mut w = Writer { out, at: 0 };
        let (kind, flags) = match self {
            Message::Announce(_) => (MessageType::Announce, 0),
            Message::Configure(m) => (
                MessageType::Configure,
                if m.remove { CONFIGURE_REMOVE } else { 0 },
            ),
            Message::Notify(m) => (
                MessageType::Notify,
                if m.teardown { NOTIFY_TEARDOWN } else { 0 },
            ),
            Message::Consume(m) => (
                MessageType::Consume,
                (if m.route_opt { CONSUME_ROUTE_OPT } else { 0 })
                    | (if m.leave { CONSUME_LEAVE } else { 0 }),
            ),
            Message::Publish(_) => (MessageType::Publish, 0),
            Message::Content(h, _) => (MessageType::Content, if h.last { CONTENT_LAST } else { 0 }),
        };
        w.bytes(&[MAGIC, VERSION, kind as u8, flags]);
        match self {
            Message::Announce(m) => {
                w.endpoint(m.cafe);
                list_len(m.neighbours.len())?;
                w.bytes(&[m.neighbours.len() as u8]);
                for n in m.neighbours.iter() {
                    w.endpoint(n.cafe);
                    w.endpoint(n.crme);
                }
            }
            Message::Configure(m) => {
                w.endpoint(m.cafe);
                w.endpoint(m.prev_hop.unwrap_or(NO_ENDPOINT));
                w.endpoint(m.next_hop);
                w.content_id(m.content_id)?;
            }
            Message::Notify(m) => {
                w.endpoint(m.ingress);
                w.endpoint(m.source);
                w.endpoint(m.prev_hop);
                list_len(m.next_hops.len())?;
                w.bytes(&[m.next_hops.len() as u8]);
                for hop in m.next_hops.iter() {
                    w.endpoint(hop);
                }
                w.content_id(m.content_id)?;
            }
            Message::Consume(m) => {
                w.bytes(&[m.hop_limit]);
                w.endpoint(m.consumer);
                w.endpoint(m.deliver_to);
                w.endpoint(m.egress_hint.unwrap_or(NO_ENDPOINT));
                w.endpoint(m.source.unwrap_or(NO_ENDPOINT));
                w.content_id(m.content_id)?;
            }
            Message::Publish(m) => {
                w.bytes(&[m.hop_limit]);
                w.endpoint(m.server);
                w.endpoint(m.attach_cafe);
                w.content_id(m.content_id)?;
            }
            Message::Content(h, payload) => {
                w.bytes(&h.seq.to_be_bytes());
                w.endpoint(h.source);
                w.endpoint(h.sender);
                w.content_id(h.content_id)?;
                w.bytes(payload);
            }
        }
        Ok(w.at)
    }

    /// Encodes into a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>, WireError> {
        let mut out = vec![0; self.buffer_len()];
        let len = self.emit(&mut out)?;
        out.truncate(len);
        Ok(out)
    }
}

fn list_len(len: usize) -> Result<(), WireError> {
    if len > MAX_LIST_LEN {
        Err(WireError::ListTooLong)
    } else {
        Ok(())
    }
}

struct Writer<'o> {
    out: &'o mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, bytes: &[u8]) {
        self.out[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }

    fn endpoint(&mut self, endpoint: SocketAddrV4) {
        write_endpoint(&mut self.out[self.at..], endpoint);
        self.at += ENDPOINT_LEN;
    }

    fn content_id(&mut self, id: &str) -> Result<(), WireError> {
        check_content_id(id.as_bytes())?;
        self.bytes(&[id.len() as u8]);
        self.bytes(id.as_bytes());
        Ok(())
    }
}

mod content_field {
    use std::ops::Range;
    pub const SEQ: Range<usize> = 4..8;
    pub const SOURCE: Range<usize> = 8..14;
    pub const SENDER: Range<usize> = 14..20;
    pub const ID_LEN: usize = 20;
}

/// Bytes of a content chunk before the content ID's length byte.
pub const CONTENT_FIXED_LEN: usize = content_field::ID_LEN;

/// A zero-copy view of a content chunk (the CAFE-CAFE interface, Table 4).
///
/// ```text
/// 0..4   header (type 6, flags bit 0 = last chunk)
/// 4..8   sequence number
/// 8..14  source: the content server
/// 14..20 sender: the CAFE (or server) that sent this copy
/// 20     content ID length n, then n bytes of content ID
/// ..     payload
/// ```
#[derive(Debug, Clone)]
pub struct ContentPacket<T: AsRef<[u8]>> {
    buffer: T,
    payload_at: usize,
}

impl<T: AsRef<[u8]>> ContentPacket<T> {
    /// Wraps `buffer` after checking the header, the type and that every field is present.
    ///
    /// The content ID's text rules are checked by [`ContentPacket::header`] (and
    /// [`Message::parse`]), not here: the forwarding path only looks the raw ID up, and an
    /// invalid ID can never be in a content state table (Configure validates it).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let bytes = buffer.as_ref();
        let (kind, flags) = parse_header(bytes)?;
        if kind != MessageType::Content {
            return Err(WireError::UnknownType(kind as u8));
        }
        check_flags(flags, CONTENT_LAST)?;
        if bytes.len() <= content_field::ID_LEN {
            return Err(WireError::Truncated);
        }
        let payload_at = content_field::ID_LEN + 1 + usize::from(bytes[content_field::ID_LEN]);
        if bytes.len() < payload_at {
            return Err(WireError::Truncated);
        }
        if payload_at == content_field::ID_LEN + 1 {
            return Err(WireError::BadContentId);
        }
        Ok(Self { buffer, payload_at })
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// True on the content's last chunk.
    pub fn last(&self) -> bool {
        self.bytes()[3] & CONTENT_LAST != 0
    }

    /// The sequence number.
    pub fn seq(&self) -> u32 {
        let b = &self.bytes()[content_field::SEQ];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The content server.
    pub fn source(&self) -> SocketAddrV4 {
        read_endpoint(&self.bytes()[content_field::SOURCE])
    }

    /// The CAFE or server that sent this copy.
    pub fn sender(&self) -> SocketAddrV4 {
        read_endpoint(&self.bytes()[content_field::SENDER])
    }

    /// The raw content ID bytes (not yet checked against the content ID rules).
    pub fn content_id_bytes(&self) -> &[u8] {
        &self.bytes()[content_field::ID_LEN + 1..self.payload_at]
    }

    /// The content ID as text, or `""` (which no table holds) if it breaks the content ID rules.
    pub fn content_id(&self) -> &str {
        check_content_id(self.content_id_bytes()).unwrap_or("")
    }

    /// The chunk's payload.
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[self.payload_at..]
    }

    /// The parsed header.
    pub fn header(&self) -> Result<ChunkHeader<'_>, WireError> {
        Ok(ChunkHeader {
            last: self.last(),
            seq: self.seq(),
            source: self.source(),
            sender: self.sender(),
            content_id: check_content_id(self.content_id_bytes())?,
        })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<'a> ContentPacket<&'a [u8]> {
    /// The header and payload, borrowing the datagram rather than the view.
    pub fn split(&self) -> Result<(ChunkHeader<'a>, &'a [u8]), WireError> {
        let bytes: &'a [u8] = self.buffer;
        let header = ChunkHeader {
            last: self.last(),
            seq: self.seq(),
            source: self.source(),
            sender: self.sender(),
            content_id: check_content_id(&bytes[content_field::ID_LEN + 1..self.payload_at])?,
        };
        Ok((header, &bytes[self.payload_at..]))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ContentPacket<T> {
    /// Rewrites the sender field, as a CAFE does before forwarding a chunk.
    pub fn set_sender(&mut self, sender: SocketAddrV4) {
        write_endpoint(&mut self.buffer.as_mut()[content_field::SENDER], sender);
    }
}

/// Rewrites the sender field of an encoded chunk in place (`bytes` must have passed
/// [`ContentPacket::new_checked`]); returns false and changes nothing if it is too short.
pub fn rewrite_sender(bytes: &mut [u8], sender: SocketAddrV4) -> bool {
    match bytes.get_mut(content_field::SENDER) {
        Some(field) => {
            write_endpoint(field, sender);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(a: u8, b: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(127, 0, a, b), port)
    }

    fn round_trip(message: Message<'_>) {
        let bytes = message.to_vec().unwrap();
        assert_eq!(bytes.len(), message.buffer_len());
        let parsed = Message::parse(&bytes).unwrap();
        // Lists parse as wire views; compare their re-encoding instead of the enum variant.
        assert_eq!(parsed.to_vec().unwrap(), bytes);
        // Every strict prefix is rejected, never accepted and never a panic.
        for cut in 0..bytes.len() {
            assert!(
                Message::parse(&bytes[..cut]).is_err(),
                "prefix {cut} accepted"
            );
        }
    }

    #[test]
    fn configure_bytes_are_as_documented() {
        let message = Message::Configure(Configure {
            remove: false,
            cafe: ep(2, 2, 2000),
            prev_hop: None,
            next_hop: ep(2, 3, 2000),
            content_id: "MyContent1",
        });
        let bytes = message.to_vec().unwrap();
        let mut expected = vec![0xCA, 1, 2, 0, 127, 0, 2, 2, 0x07, 0xD0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(&[127, 0, 2, 3, 0x07, 0xD0, 10]);
        expected.extend_from_slice(b"MyContent1");
        assert_eq!(bytes, expected);
    }

    #[test]
    fn chunk_bytes_are_as_documented_and_sender_rewrites_in_place() {
        let message = Message::Content(
            ChunkHeader {
                last: true,
                seq: 0x0102_0304,
                source: ep(5, 3, 1000),
                sender: ep(5, 3, 1000),
                content_id: "C",
            },
            b"xyz",
        );
        let mut bytes = message.to_vec().unwrap();
        assert_eq!(
            bytes,
            [
                0xCA, 1, 6, 1, 1, 2, 3, 4, 127, 0, 5, 3, 0x03, 0xE8, 127, 0, 5, 3, 0x03, 0xE8, 1,
                b'C', b'x', b'y', b'z'
            ]
        );
        assert!(rewrite_sender(&mut bytes, ep(5, 2, 2000)));
        let packet = ContentPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.sender(), ep(5, 2, 2000));
        assert_eq!(packet.source(), ep(5, 3, 1000));
        assert_eq!(packet.seq(), 0x0102_0304);
        assert!(packet.last());
        assert_eq!(packet.content_id(), "C");
        assert_eq!(packet.payload(), b"xyz");
    }

    #[test]
    fn every_message_round_trips_and_rejects_truncation() {
        let hops = [ep(2, 3, 2000), ep(2, 4, 2000)];
        let neighbours = [Neighbour {
            cafe: ep(3, 3, 2000),
            crme: ep(3, 1, 3000),
        }];
        round_trip(Message::Announce(Announce {
            cafe: ep(5, 2, 2000),
            neighbours: Items::Slice(&neighbours),
        }));
        round_trip(Message::Configure(Configure {
            remove: true,
            cafe: ep(2, 2, 2000),
            prev_hop: Some(ep(1, 2, 2000)),
            next_hop: ep(2, 3, 2000),
            content_id: "MyContent1",
        }));
        round_trip(Message::Notify(Notify {
            teardown: true,
            ingress: ep(2, 2, 2000),
            source: ep(5, 3, 1000),
            prev_hop: ep(1, 2, 2000),
            next_hops: Items::Slice(&hops),
            content_id: "MyContent1",
        }));
        round_trip(Message::Consume(Consume {
            route_opt: true,
            leave: false,
            hop_limit: 9,
            consumer: ep(4, 3, 1000),
            deliver_to: ep(4, 4, 2000),
            egress_hint: Some(ep(5, 4, 2000)),
            source: Some(ep(5, 3, 1000)),
            content_id: "MyContent1",
        }));
        round_trip(Message::Publish(Publish {
            hop_limit: 9,
            server: ep(5, 3, 1000),
            attach_cafe: ep(5, 3, 2000),
            content_id: "MyContent1",
        }));
        round_trip(Message::Content(
            ChunkHeader {
                last: false,
                seq: 7,
                source: ep(5, 3, 1000),
                sender: ep(5, 2, 2000),
                content_id: "MyContent1",
            },
            &[],
        ));
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        assert_eq!(Message::parse(&[]), Err(WireError::Truncated));
        assert_eq!(Message::parse(&[0, 1, 2, 0]), Err(WireError::BadMagic));
        assert_eq!(
            Message::parse(&[0xCA, 2, 2, 0]),
            Err(WireError::BadVersion(2))
        );
        assert_eq!(
            Message::parse(&[0xCA, 1, 99, 0]),
            Err(WireError::UnknownType(99))
        );
        assert_eq!(
            Message::parse(&[0xCA, 1, 1, 0x80]),
            Err(WireError::BadFlags(0x80))
        );
        let publish = Message::Publish(Publish {
            hop_limit: 1,
            server: ep(1, 1, 1),
            attach_cafe: ep(1, 1, 2),
            content_id: "ok",
        });
        let mut bytes = publish.to_vec().unwrap();
        bytes.push(0);
        assert_eq!(Message::parse(&bytes), Err(WireError::Trailing));
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            let mut bytes = publish.to_vec().unwrap();
            bytes.truncate(bytes.len() - 3);
            bytes.push(bad.len() as u8);
            bytes.extend_from_slice(bad.as_bytes());
            assert_eq!(
                Message::parse(&bytes),
                Err(WireError::BadContentId),
                "{bad:?}"
            );
        }
        let mut bytes = publish.to_vec().unwrap();
        let at = bytes.len() - 2;
        bytes[at] = 0xFF;
        assert_eq!(Message::parse(&bytes), Err(WireError::BadContentId));
        // An Announce claiming more neighbours than the limit.
        let mut announce = vec![0xCA, 1, 1, 0, 127, 0, 0, 1, 0, 1, 200];
        announce.extend(std::iter::repeat_n(0, 200 * 12));
        assert_eq!(Message::parse(&announce), Err(WireError::ListTooLong));
    }
}
