//! The classifier: ordered rule lists over IPv4, IPv6 and Ethernet fields, compiled into a
//! compact form that the packet path scans without branching per field.
//!
//! One [`RuleSet`] belongs to one *owner*: a SAP's ingress or egress filter (SR OS `ip-filter`,
//! `ipv6-filter`, `mac-filter`), or — in the PCC issue — one subscriber's PCC rules. Owners
//! have a few dozen rules at most, so a compiled set is a linear scan over fixed-size entries
//! that hold pre-masked values: 32 bytes per IPv4 entry (two per cache line), 80 per IPv6
//! entry, 64 per MAC entry, split by family so a packet scans only the entries that can match
//! it. 100 000 owners × 8 rules is 25 MB of IPv4 entries, and a lookup touches only its
//! owner's few lines: a summary line per eight IPv4 entries (one field of each, value and
//! mask) rules out the entries a packet cannot match, so that it reads the summary, the
//! entries left (typically one line) and its action, all in one block per set.
//!
//! [`compile`] validates every rule (typed [`RuleError`]s naming the rule's order) before it
//! builds anything. [`Rule::matches`] is the naïve reference matcher the compiled form is
//! tested against. Hit counters are not here: the compiled set is immutable and shared by the
//! snapshot, the counters live in the caller's mutable state, indexed by [`Hit::rule`].

use crate::arena::{arena_item, packed_arrays, ArenaError};
use crate::wire::{ip_protocol, ipv4, Ipv4Packet, Ipv6Packet, MacAddr};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Most rules in one set (rule indexes are 16-bit).
pub const MAX_RULES: usize = 4_096;

/// Cache lines a packet's scan is prefetched for: eight IPv4 entries (256 bytes), which span
/// five lines when the array does not start on a line.
pub(crate) const PREFETCH_LINES: usize = 5;

/// An IP prefix: `addr/len`, with no bits set beyond `len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Prefix {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length (0–32 for IPv4, 0–128 for IPv6).
    pub len: u8,
}

impl Prefix {
    /// `addr/len`.
    pub fn new(addr: impl Into<IpAddr>, len: u8) -> Self {
        Self {
            addr: addr.into(),
            len,
        }
    }

    fn family(&self) -> IpFamily {
        match self.addr {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// An inclusive range of transport ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (≥ first).
    pub last: u16,
}

impl PortRange {
    /// Every port (what a range not given matches).
    const ANY: PortRange = PortRange {
        first: 0,
        last: u16::MAX,
    };

    /// One port.
    pub fn single(port: u16) -> Self {
        Self {
            first: port,
            last: port,
        }
    }
}

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// Match criteria on the IP header and the transport ports; every `None` field matches
/// anything, every given field must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize)]
pub struct IpMatch {
    /// Restricts the rule to one family when no address says which (`None` with no
    /// address: both families).
    pub family: Option<IpFamily>,
    /// Source prefix.
    pub src: Option<Prefix>,
    /// Destination prefix.
    pub dst: Option<Prefix>,
    /// IP protocol (IPv6: the upper-layer protocol after the extension headers).
    pub protocol: Option<u8>,
    /// Source port range (TCP, UDP and SCTP; a packet without ports never matches it).
    pub src_port: Option<PortRange>,
    /// Destination port range.
    pub dst_port: Option<PortRange>,
    /// DSCP (0–63).
    pub dscp: Option<u8>,
    /// ICMP / ICMPv6 type; needs `protocol` 1 (IPv4) or 58 (IPv6).
    pub icmp_type: Option<u8>,
}

/// A MAC address with a mask: a frame matches when its address AND the mask equals `mac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct MacMask {
    /// Address (no bits outside the mask).
    pub mac: MacAddr,
    /// Mask (ff:ff:ff:ff:ff:ff = exact).
    pub mask: MacAddr,
}

impl MacMask {
    /// An exact address.
    pub fn exact(mac: MacAddr) -> Self {
        Self {
            mac,
            mask: MacAddr([0xff; 6]),
        }
    }
}

/// A match on a VLAN id (12 bits): a value under a mask (SR OS `outer-tag 20 4095`) or a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum VidMatch {
    /// `(vid & mask) == value`.
    Masked {
        /// Value (no bits outside the mask).
        value: u16,
        /// Mask (4095 = exact).
        mask: u16,
    },
    /// `first ≤ vid ≤ last`.
    Range {
        /// First VLAN id.
        first: u16,
        /// Last VLAN id.
        last: u16,
    },
}

/// Match criteria on the Ethernet header (SR OS `mac-filter`, normal and `type vid`).
///
/// The VLAN ids are those the service carries transparently: the first and second tag after
/// the SAP's service-delimiting tags, 0 when there is none (SR OS `outer-tag` / `inner-tag`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize)]
pub struct MacMatch {
    /// Source address.
    pub src: Option<MacMask>,
    /// Destination address.
    pub dst: Option<MacMask>,
    /// EtherType after all VLAN tags.
    pub ethertype: Option<u16>,
    /// First transparent tag.
    pub outer_vid: Option<VidMatch>,
    /// Second transparent tag.
    pub inner_vid: Option<VidMatch>,
}

/// One flow a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Match {
    /// IP header fields.
    Ip(IpMatch),
    /// Ethernet header fields.
    Mac(MacMatch),
}

/// What happens to a packet a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Disposition {
    /// Forward it.
    #[default]
    Forward,
    /// Drop it.
    Drop,
}

/// A rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct RuleAction {
    /// Forward or drop.
    pub disposition: Disposition,
    /// Rate-limit forwarded packets with this policer (an index the owner resolves: a
    /// `PolicerId` for service filters, a PCC rule's dynamic policer later).
    pub policer: Option<u32>,
    /// The PCC "account" action: the rule's traffic counts towards the owner's volume
    /// accounting. Returned with every hit; service filters leave it false.
    pub account: bool,
}

impl RuleAction {
    /// Forward, no policer.
    pub const FORWARD: RuleAction = RuleAction {
        disposition: Disposition::Forward,
        policer: None,
        account: false,
    };
    /// Drop.
    pub const DROP: RuleAction = RuleAction {
        disposition: Disposition::Drop,
        policer: None,
        account: false,
    };
}

/// One rule: matches any of its flows, in precedence `order` (lowest first: SR OS filter entry
/// id, or PCC precedence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Precedence (unique in a set).
    pub order: u32,
    /// The flows (at least one); a packet matching any of them matches the rule.
    pub matches: Vec<Match>,
    /// Action.
    pub action: RuleAction,
}

/// What is wrong with a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleErrorKind {
    /// Two rules share an order.
    #[error("another rule has the same order")]
    DuplicateOrder,
    /// The rule has no flow.
    #[error("the rule has no match criteria list (at least one flow is needed)")]
    NoMatch,
    /// A prefix length is beyond its family's address length.
    #[error("prefix length {len} exceeds {max}")]
    PrefixLength {
        /// Given length.
        len: u8,
        /// Family maximum.
        max: u8,
    },
    /// A prefix has bits set beyond its length.
    #[error("prefix {0} has host bits set")]
    HostBits(Prefix),
    /// Source, destination and family disagree.
    #[error("source, destination and family must be of one address family")]
    MixedFamilies,
    /// A port range is empty.
    #[error("port range {first}-{last} is empty")]
    EmptyPortRange {
        /// First.
        first: u16,
        /// Last.
        last: u16,
    },
    /// Ports with a protocol that has none.
    #[error("ports need protocol TCP (6), UDP (17) or SCTP (132), not {0}")]
    PortsWithoutTransport(u8),
    /// ICMP type without the ICMP protocol of the family.
    #[error("an ICMP type needs protocol 1 (IPv4) or 58 (IPv6) and one address family")]
    IcmpTypeWithoutIcmp,
    /// DSCP above 63.
    #[error("DSCP {0} is out of range: expected 0 to 63")]
    Dscp(u8),
    /// A VLAN id match is out of range.
    #[error("VLAN id match {0} is out of range: values, masks and ranges are 0 to 4095, ranges non-empty")]
    Vid(String),
    /// A MAC address has bits outside its mask.
    #[error("MAC address {mac} has bits outside its mask {mask}")]
    MacOutsideMask {
        /// Address.
        mac: MacAddr,
        /// Mask.
        mask: MacAddr,
    },
}

/// A rule that could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The rule with this order is invalid.
    #[error("rule {order}: {kind}")]
    Rule {
        /// Its order.
        order: u32,
        /// What is wrong.
        kind: RuleErrorKind,
    },
    /// Too many rules in one set.
    #[error("{0} rules in one set: at most {MAX_RULES}")]
    TooMany(usize),
    /// More entries of one kind than an arena block holds (rules with thousands of flows).
    #[error("too many entries in one set: {0}")]
    TooManyEntries(#[from] ArenaError),
}

/// The fields of a packet the classifier looks at, extracted once per packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketKey {
    /// Source MAC (48 bits in the low bits).
    pub src_mac: u64,
    /// Destination MAC.
    pub dst_mac: u64,
    /// EtherType after every VLAN tag.
    pub ethertype: u16,
    /// First transparent VLAN id (0 = none).
    pub outer_vid: u16,
    /// Second transparent VLAN id (0 = none).
    pub inner_vid: u16,
    /// Which IP header was found (`None` when not IP or not parseable).
    pub family: Option<IpFamily>,
    /// IPv4 source (when `family` is V4).
    pub src4: u32,
    /// IPv4 destination.
    pub dst4: u32,
    /// IPv6 source (when `family` is V6).
    pub src6: u128,
    /// IPv6 destination.
    pub dst6: u128,
    /// IP protocol, DSCP, transport ports and ICMP type, in one word.
    pub transport: Transport,
}

/// A packet's IP protocol, DSCP, transport ports and ICMP / ICMPv6 type in one 64-bit word,
/// laid out as the compiled entries test it: the destination port in bits 0–15 and the
/// source port in 16–31 (the transport header's first four bytes as one big-endian word),
/// then the protocol, the DSCP, the ICMP type and the flags saying which of ports and type
/// were read, a byte each (bits 32–63). The DSCP, an IP header field, rides along so that an
/// entry compares the four bytes as one masked word.
///
/// One word so that the key reader stores it at once: as separate fields, LLVM packed them
/// into one register and wrote them back byte by byte (round 27). Ports and type are 0 when
/// not read, so equal packets give equal words.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Transport(u64);

impl Transport {
    /// In the flags byte: the ports were read (the bit an entry's `needs` has for them).
    const HAS_PORTS: u8 = NEED_PORTS;
    /// In the flags byte: the ICMP type was read.
    const HAS_ICMP: u8 = NEED_ICMP;

    /// The word of `protocol` and `dscp`, with the `(source, destination)` ports and the ICMP
    /// type when the packet has them.
    pub fn new(protocol: u8, dscp: u8, ports: Option<(u16, u16)>, icmp_type: Option<u8>) -> Self {
        let (src, dst) = ports.unwrap_or_default();
        let flags = if ports.is_some() { Self::HAS_PORTS } else { 0 }
            | if icmp_type.is_some() {
                Self::HAS_ICMP
            } else {
                0
            };
        Self::of(
            (u32::from(src) << 16) | u32::from(dst),
            [protocol, dscp, icmp_type.unwrap_or(0), flags],
        )
    }

    /// The word of the ports (source in the high half) and the four bytes.
    #[inline(always)]
    fn of(ports: u32, bytes: [u8; 4]) -> Self {
        Self(u64::from(ports) | (u64::from(u32::from_le_bytes(bytes)) << 32))
    }

    /// What a packet's first transport bytes give: the ports of TCP, UDP and SCTP, the type
    /// of ICMP and ICMPv6, when `transport` holds them (it is empty past a first fragment).
    #[inline(always)]
    fn read(protocol: u8, dscp: u8, transport: &[u8]) -> Self {
        let (ports, icmp_type, flags) = match protocol {
            ip_protocol::TCP | ip_protocol::UDP | 132 => match transport.first_chunk::<4>() {
                Some(b) => (u32::from_be_bytes(*b), 0, Self::HAS_PORTS),
                None => (0, 0, 0),
            },
            ip_protocol::ICMP | ip_protocol::ICMPV6 => match transport.first() {
                Some(&t) => (0, t, Self::HAS_ICMP),
                None => (0, 0, 0),
            },
            _ => (0, 0, 0),
        };
        Self::of(ports, [protocol, dscp, icmp_type, flags])
    }

    /// IP protocol (IPv6: the upper-layer protocol after the extension headers).
    pub fn protocol(self) -> u8 {
        self.bytes()[0]
    }

    /// DSCP.
    pub fn dscp(self) -> u8 {
        self.bytes()[1]
    }

    /// Replaces the DSCP (a remark a later rule list sees).
    pub fn set_dscp(&mut self, dscp: u8) {
        let mut bytes = self.bytes();
        bytes[1] = dscp;
        *self = Self::of(self.ports_word(), bytes);
    }

    /// `(source, destination)` ports, when read (TCP, UDP and SCTP, a first fragment).
    pub fn ports(self) -> Option<(u16, u16)> {
        let word = self.ports_word();
        (self.bytes()[3] & Self::HAS_PORTS != 0).then_some(((word >> 16) as u16, word as u16))
    }

    /// ICMP / ICMPv6 type, when read.
    pub fn icmp_type(self) -> Option<u8> {
        let bytes = self.bytes();
        (bytes[3] & Self::HAS_ICMP != 0).then_some(bytes[2])
    }

    /// The ports: destination in bits 0–15, source in 16–31 (0 when not read).
    #[inline(always)]
    fn ports_word(self) -> u32 {
        self.0 as u32
    }

    /// Protocol, DSCP, ICMP type and flags, a byte each from the low end: what an entry's
    /// `fields` compares.
    #[inline(always)]
    fn fields(self) -> u32 {
        (self.0 >> 32) as u32
    }

    fn bytes(self) -> [u8; 4] {
        self.fields().to_le_bytes()
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("protocol", &self.protocol())
            .field("dscp", &self.dscp())
            .field("ports", &self.ports())
            .field("icmp_type", &self.icmp_type())
            .finish()
    }
}

/// A MAC address as the low 48 bits of a `u64`.
#[inline]
pub fn mac_bits(mac: MacAddr) -> u64 {
    let b = mac.0;
    u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// The frame's destination and source MACs as 48-bit numbers (as [`mac_bits`] makes them),
/// from two overlapping 8-byte loads; a MAC the frame is too short for is 0.
#[inline(always)]
pub fn macs_of(frame: &[u8]) -> (u64, u64) {
    let word = |at: usize| {
        frame
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
    };
    match (word(0), word(4)) {
        (Some(first), Some(second)) => (first >> 16, second & 0xffff_ffff_ffff),
        _ => {
            let mac_at = |at: usize| {
                frame
                    .get(at..at + 6)
                    .map_or(0, |b| mac_bits(MacAddr::from_bytes(b)))
            };
            (mac_at(0), mac_at(6))
        }
    }
}

/// The IPv4 fields of a key, as [`Ipv4Fields::read`] finds them.
#[derive(Debug, Clone, Copy, Default)]
struct Ipv4Fields {
    src4: u32,
    dst4: u32,
    transport: Transport,
}

impl Ipv4Fields {
    /// The fields of an IPv4 packet [`Ipv4Packet::new_checked`] accepts (no checksum check:
    /// classification only), from one 20-byte load of its header and one bounds check of its
    /// transport bytes, rather than a check per field; `None` for any other bytes.
    #[inline(always)]
    fn read(ip: &[u8]) -> Option<Self> {
        let header = ip.first_chunk::<{ ipv4::MIN_HEADER_LEN }>()?;
        let be16 = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
        let be32 = |at: usize| {
            u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let header_len = usize::from(header[0] & 0x0f) * 4;
        let total_len = usize::from(be16(2));
        // What `new_checked` refuses: another version, a header shorter than its fixed part,
        // a total length shorter than the header or longer than the bytes (which then hold
        // the whole header too).
        if header[0] >> 4 != 4
            || header_len < ipv4::MIN_HEADER_LEN
            || total_len < header_len
            || ip.len() < total_len
        {
            return None;
        }
        // Only a first fragment (offset 0) carries the transport header.
        let transport = if be16(6) & 0x1fff == 0 {
            ip.get(header_len..total_len).unwrap_or(&[])
        } else {
            &[]
        };
        Some(Ipv4Fields {
            src4: be32(12),
            dst4: be32(16),
            transport: Transport::read(header[9], header[1] >> 2, transport),
        })
    }
}

impl PacketKey {
    /// Reads the L2 fields of a frame (its MAC addresses) and, when `ethertype` is IPv4 or
    /// IPv6 and `l3` holds a valid header, the L3/L4 fields. Never fails: what cannot be read
    /// is left unset, so rules needing it do not match.
    ///
    /// Equal to [`reference_key`] for every input (a proptest and a fuzz target hold it to
    /// that): this is the packet path's, read in few bounds checks.
    #[inline]
    pub fn from_frame(
        frame: &[u8],
        ethertype: u16,
        l3: usize,
        outer_vid: u16,
        inner_vid: u16,
    ) -> Self {
        let mut key = PacketKey::default();
        key.read_frame(frame, ethertype, l3, outer_vid, inner_vid);
        key
    }

    /// [`PacketKey::from_frame`] written over `self` (every field), for a caller that keeps
    /// the key where its reader finds it.
    ///
    /// An IPv6 key is written by an out-of-line call, an IPv4 key and any other key each as
    /// one value on its own branch: when the three ends returned one value, LLVM merged them
    /// before a common store, holding each field in a register of its own (zeroed registers,
    /// spills and shifts: 25 of the stage's 166 instructions for the key, round 24).
    #[inline(always)]
    pub fn read_frame(
        &mut self,
        frame: &[u8],
        ethertype: u16,
        l3: usize,
        outer_vid: u16,
        inner_vid: u16,
    ) {
        let ip = frame.get(l3..).unwrap_or(&[]);
        if ethertype == crate::wire::EtherType::IPV6 {
            self.read_ipv6_frame(frame, ip, outer_vid, inner_vid);
            return;
        }
        let (dst_mac, src_mac) = macs_of(frame);
        let ipv4 = if ethertype == crate::wire::EtherType::IPV4 {
            Ipv4Fields::read(ip)
        } else {
            None
        };
        // One value written whole on each branch: built from a default and then patched,
        // the key went through the stack in pieces of different sizes, and its copy waited
        // for them; merged into one value before one store, each field took a register.
        let Some(Ipv4Fields {
            src4,
            dst4,
            transport,
        }) = ipv4
        else {
            *self = PacketKey {
                src_mac,
                dst_mac,
                ethertype,
                outer_vid,
                inner_vid,
                ..PacketKey::default()
            };
            return;
        };
        *self = PacketKey {
            src_mac,
            dst_mac,
            ethertype,
            outer_vid,
            inner_vid,
            family: Some(IpFamily::V4),
            src4,
            dst4,
            src6: 0,
            dst6: 0,
            transport,
        };
    }

    /// [`PacketKey::read_frame`]'s IPv6 end, out of line (see there why).
    #[inline(never)]
    fn read_ipv6_frame(&mut self, frame: &[u8], ip: &[u8], outer_vid: u16, inner_vid: u16) {
        let (dst_mac, src_mac) = macs_of(frame);
        *self = PacketKey {
            dst_mac,
            src_mac,
            ethertype: crate::wire::EtherType::IPV6,
            outer_vid,
            inner_vid,
            ..PacketKey::default()
        };
        self.read_ipv6(ip);
    }

    /// Reads the fields of an IPv4 packet (no checksum check: classification only); leaves
    /// the key as it is when `ip` is not one [`Ipv4Packet::new_checked`] accepts.
    #[inline]
    pub fn read_ipv4(&mut self, ip: &[u8]) {
        let Some(fields) = Ipv4Fields::read(ip) else {
            return;
        };
        self.family = Some(IpFamily::V4);
        self.src4 = fields.src4;
        self.dst4 = fields.dst4;
        self.transport = fields.transport;
    }

    /// Reads the fields of an IPv6 packet (extension headers walked).
    pub fn read_ipv6(&mut self, ip: &[u8]) {
        let Ok(packet) = Ipv6Packet::new_checked(ip) else {
            return;
        };
        let Ok(location) = packet.transport() else {
            return;
        };
        self.family = Some(IpFamily::V6);
        self.src6 = u128::from(packet.src_addr());
        self.dst6 = u128::from(packet.dst_addr());
        let transport = if location.has_transport_header {
            ip.get(location.offset..).unwrap_or(&[])
        } else {
            &[]
        };
        self.transport = Transport::read(location.protocol, packet.traffic_class() >> 2, transport);
    }
}

// ---------------------------------------------------------------------------------------
// The naïve reference matcher.

fn prefix_matches(prefix: &Prefix, key: &PacketKey, src: bool) -> bool {
    match (prefix.addr, key.family) {
        (IpAddr::V4(net), Some(IpFamily::V4)) => {
            let addr = if src { key.src4 } else { key.dst4 };
            let mask = mask32(prefix.len);
            addr & mask == u32::from(net)
        }
        (IpAddr::V6(net), Some(IpFamily::V6)) => {
            let addr = if src { key.src6 } else { key.dst6 };
            addr & mask128(prefix.len) == u128::from(net)
        }
        _ => false,
    }
}

fn vid_matches(m: &VidMatch, vid: u16) -> bool {
    match *m {
        VidMatch::Masked { value, mask } => vid & mask == value,
        VidMatch::Range { first, last } => (first..=last).contains(&vid),
    }
}

fn ip_family_of(m: &IpMatch) -> Option<IpFamily> {
    m.src
        .map(|p| p.family())
        .or(m.dst.map(|p| p.family()))
        .or(m.family)
}

impl Match {
    /// Whether `key` matches this flow (the reference semantics).
    pub fn matches(&self, key: &PacketKey) -> bool {
        match self {
            Match::Ip(m) => {
                let Some(family) = key.family else {
                    return false;
                };
                if ip_family_of(m).is_some_and(|f| f != family) {
                    return false;
                }
                m.src.is_none_or(|p| prefix_matches(&p, key, true))
                    && m.dst.is_none_or(|p| prefix_matches(&p, key, false))
                    && m.protocol.is_none_or(|p| p == key.transport.protocol())
                    && m.dscp.is_none_or(|d| d == key.transport.dscp())
                    && m.src_port.is_none_or(|r| {
                        key.transport
                            .ports()
                            .is_some_and(|(src, _)| (r.first..=r.last).contains(&src))
                    })
                    && m.dst_port.is_none_or(|r| {
                        key.transport
                            .ports()
                            .is_some_and(|(_, dst)| (r.first..=r.last).contains(&dst))
                    })
                    && m.icmp_type
                        .is_none_or(|t| key.transport.icmp_type() == Some(t))
            }
            Match::Mac(m) => {
                m.src
                    .is_none_or(|mm| key.src_mac & mac_bits(mm.mask) == mac_bits(mm.mac))
                    && m.dst
                        .is_none_or(|mm| key.dst_mac & mac_bits(mm.mask) == mac_bits(mm.mac))
                    && m.ethertype.is_none_or(|e| e == key.ethertype)
                    && m.outer_vid.is_none_or(|v| vid_matches(&v, key.outer_vid))
                    && m.inner_vid.is_none_or(|v| vid_matches(&v, key.inner_vid))
            }
        }
    }
}

impl Rule {
    /// Whether `key` matches any of the rule's flows (the reference semantics).
    pub fn matches(&self, key: &PacketKey) -> bool {
        self.matches.iter().any(|m| m.matches(key))
    }
}

/// The reference key reader [`PacketKey::from_frame`] is held equal to: the IPv4 header
/// read field by field through [`Ipv4Packet`] (the L2 and IPv6 fields are read as
/// `from_frame` reads them).
pub fn reference_key(
    frame: &[u8],
    ethertype: u16,
    l3: usize,
    outer_vid: u16,
    inner_vid: u16,
) -> PacketKey {
    let mut key = PacketKey {
        dst_mac: frame
            .get(0..6)
            .map(|b| mac_bits(MacAddr::from_bytes(b)))
            .unwrap_or(0),
        src_mac: frame
            .get(6..12)
            .map(|b| mac_bits(MacAddr::from_bytes(b)))
            .unwrap_or(0),
        ethertype,
        outer_vid,
        inner_vid,
        ..PacketKey::default()
    };
    let ip = frame.get(l3..).unwrap_or(&[]);
    match ethertype {
        crate::wire::EtherType::IPV4 => {
            let Ok(packet) = Ipv4Packet::new_checked(ip) else {
                return key;
            };
            key.family = Some(IpFamily::V4);
            key.src4 = u32::from(packet.src_addr());
            key.dst4 = u32::from(packet.dst_addr());
            let transport = if packet.frag_offset() == 0 {
                packet.payload()
            } else {
                &[]
            };
            key.transport = Transport::read(packet.protocol(), packet.dscp(), transport);
        }
        crate::wire::EtherType::IPV6 => key.read_ipv6(ip),
        _ => {}
    }
    key
}

/// The reference classification: the lowest-order rule of `rules` that matches `key`.
pub fn reference_classify<'a>(rules: &'a [Rule], key: &PacketKey) -> Option<&'a Rule> {
    rules
        .iter()
        .filter(|rule| rule.matches(key))
        .min_by_key(|rule| rule.order)
}

// ---------------------------------------------------------------------------------------
// Validation.

pub(crate) fn check_prefix(prefix: &Prefix) -> Result<(), RuleErrorKind> {
    match prefix.addr {
        IpAddr::V4(addr) => {
            if prefix.len > 32 {
                return Err(RuleErrorKind::PrefixLength {
                    len: prefix.len,
                    max: 32,
                });
            }
            if u32::from(addr) & !mask32(prefix.len) != 0 {
                return Err(RuleErrorKind::HostBits(*prefix));
            }
        }
        IpAddr::V6(addr) => {
            if prefix.len > 128 {
                return Err(RuleErrorKind::PrefixLength {
                    len: prefix.len,
                    max: 128,
                });
            }
            if u128::from(addr) & !mask128(prefix.len) != 0 {
                return Err(RuleErrorKind::HostBits(*prefix));
            }
        }
    }
    Ok(())
}

fn check_vid(m: &Option<VidMatch>) -> Result<(), RuleErrorKind> {
    let ok = match *m {
        None => true,
        Some(VidMatch::Masked { value, mask }) => {
            value <= 4095 && mask <= 4095 && value & !mask == 0
        }
        Some(VidMatch::Range { first, last }) => first <= last && last <= 4095,
    };
    if ok {
        Ok(())
    } else {
        Err(RuleErrorKind::Vid(format!("{m:?}")))
    }
}

fn check_mac(m: &Option<MacMask>) -> Result<(), RuleErrorKind> {
    if let Some(mm) = m {
        if mac_bits(mm.mac) & !mac_bits(mm.mask) != 0 {
            return Err(RuleErrorKind::MacOutsideMask {
                mac: mm.mac,
                mask: mm.mask,
            });
        }
    }
    Ok(())
}

pub(crate) fn check_match(m: &Match) -> Result<(), RuleErrorKind> {
    match m {
        Match::Ip(ip) => {
            for prefix in [ip.src, ip.dst].into_iter().flatten() {
                check_prefix(&prefix)?;
            }
            let families = [
                ip.src.map(|p| p.family()),
                ip.dst.map(|p| p.family()),
                ip.family,
            ];
            let first = families.iter().flatten().next();
            if families.iter().flatten().any(|f| Some(f) != first) {
                return Err(RuleErrorKind::MixedFamilies);
            }
            for range in [ip.src_port, ip.dst_port].into_iter().flatten() {
                if range.first > range.last {
                    return Err(RuleErrorKind::EmptyPortRange {
                        first: range.first,
                        last: range.last,
                    });
                }
            }
            if ip.src_port.is_some() || ip.dst_port.is_some() {
                if let Some(protocol) = ip.protocol {
                    if !matches!(protocol, ip_protocol::TCP | ip_protocol::UDP | 132) {
                        return Err(RuleErrorKind::PortsWithoutTransport(protocol));
                    }
                }
            }
            if ip.icmp_type.is_some() {
                let icmp_ok = matches!(
                    (first, ip.protocol),
                    (Some(IpFamily::V4), Some(ip_protocol::ICMP))
                        | (Some(IpFamily::V6), Some(ip_protocol::ICMPV6))
                );
                if !icmp_ok || ip.src_port.is_some() || ip.dst_port.is_some() {
                    return Err(RuleErrorKind::IcmpTypeWithoutIcmp);
                }
            }
            if let Some(dscp) = ip.dscp {
                if dscp > 63 {
                    return Err(RuleErrorKind::Dscp(dscp));
                }
            }
        }
        Match::Mac(mac) => {
            check_mac(&mac.src)?;
            check_mac(&mac.dst)?;
            check_vid(&mac.outer_vid)?;
            check_vid(&mac.inner_vid)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The compiled form.

const NEED_PROTOCOL: u8 = 1;
const NEED_DSCP: u8 = 2;
const NEED_PORTS: u8 = 4;
const NEED_ICMP: u8 = 8;
const NEED_ETHERTYPE: u8 = 16;
/// In an IP entry's `needs`, beside what it tests: its rule's action is plain (forward or
/// drop, no policer, no accounting), so a packet that hits it needs no line of the actions.
const PLAIN_ACTION: u8 = 32;
/// With [`PLAIN_ACTION`]: the plain action drops.
const PLAIN_DROP: u8 = 64;

/// The [`PLAIN_ACTION`] bits of `action` (none when it is not plain).
fn plain_bits(action: RuleAction) -> u8 {
    match action {
        RuleAction {
            disposition,
            policer: None,
            account: false,
        } => {
            PLAIN_ACTION
                | if disposition == Disposition::Drop {
                    PLAIN_DROP
                } else {
                    0
                }
        }
        _ => 0,
    }
}

/// The action `bits` ([`plain_bits`]) say, when they say it.
#[inline(always)]
fn plain_action(bits: u8) -> Option<RuleAction> {
    if bits & PLAIN_ACTION == 0 {
        return None;
    }
    Some(if bits & PLAIN_DROP != 0 {
        RuleAction::DROP
    } else {
        RuleAction::FORWARD
    })
}

#[inline]
pub(crate) fn mask32(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

#[inline]
pub(crate) fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

/// What an entry's `needs` says of the byte fields [`L4::matches`] compares, by its four low
/// bits: the mask of the fields it tests in [`Transport`]'s bytes (protocol, DSCP and ICMP
/// type whole, and the flag of the ports or the type, which an entry that needs them
/// requires). A table, so that the mask costs one load rather than a byte per field.
const FIELD_MASKS: [u32; 16] = {
    let mut masks = [0; 16];
    let mut needs = 0;
    while needs < masks.len() {
        let bits = needs as u8;
        let mut mask = ((bits & (NEED_PORTS | NEED_ICMP)) as u32) << 24;
        if bits & NEED_PROTOCOL != 0 {
            mask |= 0xff;
        }
        if bits & NEED_DSCP != 0 {
            mask |= 0xff << 8;
        }
        if bits & NEED_ICMP != 0 {
            mask |= 0xff << 16;
        }
        masks[needs] = mask;
        needs += 1;
    }
    masks
};

/// The transport part shared by IPv4 and IPv6 entries.
///
/// Laid out for a test without a branch or a shuffle: the port ranges as four 16-bit bounds
/// the packet's ports and their complements must not exceed (one saturating subtract, see
/// [`ports_excess`]), and the byte fields as [`Transport`] holds them, compared under the
/// mask their `needs` picks from [`FIELD_MASKS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct L4 {
    /// Four 16-bit lanes from the low end: the destination range's last port, the source
    /// range's last port, the complement of the destination range's first port and that of
    /// the source range's first port (a range not given: 0–65535).
    port_bounds: u64,
    /// A byte each from the low end: protocol, DSCP, ICMP type (0 where not needed) and
    /// `needs` (whose [`NEED_PORTS`] and [`NEED_ICMP`] bits are the key's flags for them).
    fields: u32,
    rule: u16,
}

impl Default for L4 {
    /// No test: every packet matches.
    fn default() -> Self {
        L4::of(PortRange::ANY, PortRange::ANY, [0, 0, 0, 0], 0)
    }
}

impl L4 {
    /// The part testing the `src` and `dst` port ranges and the `fields` bytes (protocol,
    /// DSCP, ICMP type, `needs`), for rule index `rule`.
    fn of(src: PortRange, dst: PortRange, fields: [u8; 4], rule: u16) -> Self {
        let lanes = [dst.last, src.last, !dst.first, !src.first];
        L4 {
            port_bounds: lanes
                .iter()
                .rev()
                .fold(0, |bounds, &lane| (bounds << 16) | u64::from(lane)),
            fields: u32::from_le_bytes(fields),
            rule,
        }
    }

    fn new(m: &IpMatch, rule: u16) -> Self {
        let mut needs = 0;
        if m.protocol.is_some() {
            needs |= NEED_PROTOCOL;
        }
        if m.dscp.is_some() {
            needs |= NEED_DSCP;
        }
        if m.src_port.is_some() || m.dst_port.is_some() {
            needs |= NEED_PORTS;
        }
        if m.icmp_type.is_some() {
            needs |= NEED_ICMP;
        }
        L4::of(
            m.src_port.unwrap_or(PortRange::ANY),
            m.dst_port.unwrap_or(PortRange::ANY),
            [
                m.protocol.unwrap_or(0),
                m.dscp.unwrap_or(0),
                m.icmp_type.unwrap_or(0),
                needs,
            ],
            rule,
        )
    }

    /// The entry's `needs` bits (the tests it makes, and [`PLAIN_ACTION`]'s bits).
    #[inline(always)]
    fn needs(&self) -> u8 {
        (self.fields >> 24) as u8
    }

    /// Adds `bits` to `needs`.
    fn add_needs(&mut self, bits: u8) {
        self.fields |= u32::from(bits) << 24;
    }

    /// The protocol the entry needs (when `needs` says so).
    fn protocol(&self) -> u8 {
        self.fields as u8
    }

    /// The destination range's first and last port.
    fn dst_range(&self) -> (u16, u16) {
        (!((self.port_bounds >> 32) as u16), self.port_bounds as u16)
    }

    /// The byte fields under their mask and the ports within their bounds, both as words
    /// that are zero when they pass, tested at once: no data-dependent branch until the
    /// result.
    #[inline(always)]
    fn matches(&self, key: &PacketKey) -> bool {
        let mask = FIELD_MASKS[usize::from(self.needs() & 0x0f)];
        let fields_off = (key.transport.fields() ^ self.fields) & mask;
        (ports_excess(key.transport.ports_word(), self.port_bounds) | u64::from(fields_off)) == 0
    }
}

/// The packet's `ports` (destination in bits 0–15, source in 16–31) beyond an entry's
/// `bounds` ([`L4::port_bounds`]): the lanes of `[dst, src, !dst, !src] ⊖ bounds`, a
/// saturating subtract, so zero exactly when each port is at most its range's last and its
/// complement at most its first's complement (the port at least the first). On x86_64 one
/// `psubusw` (SSE2, the architecture's baseline) on the ports and their complements.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn ports_excess(ports: u32, bounds: u64) -> u64 {
    use std::arch::x86_64::{
        _mm_cvtsi128_si64, _mm_cvtsi32_si128, _mm_cvtsi64_si128, _mm_subs_epu16, _mm_unpacklo_epi32,
    };
    // SAFETY: the intrinsics need SSE2, which the `cfg` above proves this build enables for
    // every function; they read and write registers only.
    unsafe {
        // `as` keeps the bits: the lanes are bit patterns.
        let probe = _mm_unpacklo_epi32(
            _mm_cvtsi32_si128(ports as i32),
            _mm_cvtsi32_si128(!ports as i32),
        );
        _mm_cvtsi128_si64(_mm_subs_epu16(probe, _mm_cvtsi64_si128(bounds as i64))) as u64
    }
}

/// [`ports_excess`] on other architectures (and its reference in the tests): lane by lane.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
#[inline(always)]
fn ports_excess_portable(ports: u32, bounds: u64) -> u64 {
    let probe = u64::from(ports) | (u64::from(!ports) << 32);
    (0..4).fold(0, |excess, lane| {
        let at = 16 * lane;
        let over = ((probe >> at) as u16).saturating_sub((bounds >> at) as u16);
        excess | (u64::from(over) << at)
    })
}

/// The portable form where there is no vector form.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn ports_excess(ports: u32, bounds: u64) -> u64 {
    ports_excess_portable(ports, bounds)
}

/// An IPv4 entry: 32 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(32))]
pub(crate) struct V4Entry {
    // Both addresses, then both masks: each pair one 64-bit word ([`V4Entry::addresses_match`]).
    src: u32,
    dst: u32,
    src_mask: u32,
    dst_mask: u32,
    l4: L4,
}

/// An IPv6 entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(16))]
pub(crate) struct V6Entry {
    src: u128,
    src_mask: u128,
    dst: u128,
    dst_mask: u128,
    l4: L4,
}

/// The constructor and matcher of an IP entry type; IPv4 and IPv6 entries differ only in
/// their address type, field names and family.
macro_rules! ip_entry {
    ($entry:ident, $family:literal, $variant:ident, $other:ident, $addr:ty, $mask:ident, $src:ident, $dst:ident) => {
        impl $entry {
            #[doc = concat!("The ", $family, " entry of flow `m` for rule index `rule`; `None` when `m` is")]
            /// of the other family only. `m` must have passed [`check_match`].
            pub(crate) fn of(m: &IpMatch, rule: u16) -> Option<Self> {
                if ip_family_of(m) == Some(IpFamily::$other) {
                    return None;
                }
                let part = |prefix: Option<Prefix>| match prefix {
                    Some(Prefix {
                        addr: IpAddr::$variant(a),
                        len,
                    }) => (<$addr>::from(a), $mask(len)),
                    _ => (0, 0),
                };
                let (src, src_mask) = part(m.src);
                let (dst, dst_mask) = part(m.dst);
                Some($entry {
                    src,
                    src_mask,
                    dst,
                    dst_mask,
                    l4: L4::new(m, rule),
                })
            }

            #[doc = concat!("Whether an ", $family, " packet's `key` matches the entry.")]
            #[inline(always)]
            pub(crate) fn matches(&self, key: &PacketKey) -> bool {
                self.addresses_match(key) & self.l4.matches(key)
            }

            /// Whether the packet's protocol, ports, DSCP and ICMP type match.
            #[inline(always)]
            pub(crate) fn rest_matches(&self, key: &PacketKey) -> bool {
                self.l4.matches(key)
            }

            /// The index of the entry's rule.
            #[inline(always)]
            pub(crate) fn rule(&self) -> u16 {
                self.l4.rule
            }

            /// The entry, telling a packet that hits it its rule's `action` when that is
            /// plain ([`plain_bits`]). The bits are not among those `matches` tests.
            fn with_action(mut self, action: RuleAction) -> Self {
                self.l4.add_needs(plain_bits(action));
                self
            }

            /// Its rule's action's [`plain_bits`] when the entry says it
            /// ([`Self::with_action`]), among other bits of `needs`.
            #[inline(always)]
            fn plain_bits(&self) -> u8 {
                self.l4.needs()
            }
        }
    };
}

impl V4Entry {
    /// Whether the packet's addresses match (the rest of the entry not looked at): a scan
    /// over entries that mostly differ by prefix rejects most of them here. The two
    /// addresses as one word, under one word of masks: with the entry's fields in that
    /// order, and the key's two addresses side by side, one load, `and` and compare each
    /// (a compare per address went through vector shuffles).
    #[inline(always)]
    pub(crate) fn addresses_match(&self, key: &PacketKey) -> bool {
        let pair = |low: u32, high: u32| u64::from(low) | (u64::from(high) << 32);
        pair(key.src4, key.dst4) & pair(self.src_mask, self.dst_mask) == pair(self.src, self.dst)
    }
}

impl V6Entry {
    /// Whether the packet's addresses match (the rest of the entry not looked at).
    #[inline(always)]
    pub(crate) fn addresses_match(&self, key: &PacketKey) -> bool {
        ((key.src6 & self.src_mask) == self.src) & ((key.dst6 & self.dst_mask) == self.dst)
    }
}

ip_entry!(V4Entry, "IPv4", V4, V6, u32, mask32, src4, dst4);
ip_entry!(V6Entry, "IPv6", V6, V4, u128, mask128, src6, dst6);

arena_item!(V4Entry);
arena_item!(V6Entry);

/// A MAC entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(64))]
struct MacEntry {
    src: u64,
    src_mask: u64,
    dst: u64,
    dst_mask: u64,
    ethertype: u16,
    /// Outer VLAN id: value, mask, first, last.
    outer: [u16; 4],
    inner: [u16; 4],
    needs: u8,
    rule: u16,
}

#[inline(always)]
fn vid_ok(spec: &[u16; 4], vid: u16) -> bool {
    ((vid & spec[1]) == spec[0]) & (vid.wrapping_sub(spec[2]) <= spec[3].wrapping_sub(spec[2]))
}

fn vid_spec(m: &Option<VidMatch>) -> [u16; 4] {
    match *m {
        None => [0, 0, 0, 4095],
        Some(VidMatch::Masked { value, mask }) => [value, mask, 0, 4095],
        Some(VidMatch::Range { first, last }) => [0, 0, first, last],
    }
}

/// The result of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Index of the matching rule in precedence order (for the caller's counters); `None`
    /// when no rule matched and the default action applies.
    pub rule: Option<u16>,
    /// The action to apply.
    pub action: RuleAction,
}

/// Lanes of a [`V4Summary`]: the entries one summary line rules in or out.
const LANES: usize = 8;

/// One field of the IPv4 entries, as the 32-bit word a summary compares: whichever rules out
/// the most entries of a set (see [`SummaryField::choose`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
enum SummaryField {
    /// The destination address (an entry's destination prefix as value and mask).
    #[default]
    Dst,
    /// The source address.
    Src,
    /// The protocol in bits 16–23 and the destination port in bits 0–15 (an entry's protocol
    /// when it needs one, its destination port when its range is a single port).
    ProtocolDstPort,
}

impl SummaryField {
    const ALL: [SummaryField; 3] = [
        SummaryField::Dst,
        SummaryField::Src,
        SummaryField::ProtocolDstPort,
    ];

    /// The packet's word of this field.
    #[inline(always)]
    fn word(self, key: &PacketKey) -> u32 {
        match self {
            SummaryField::Dst => key.dst4,
            SummaryField::Src => key.src4,
            SummaryField::ProtocolDstPort => {
                let transport = key.transport;
                (u32::from(transport.protocol()) << 16) | (transport.ports_word() & 0xffff)
            }
        }
    }

    /// The entry's (value, mask) of this field: every packet the entry matches has
    /// `word & mask == value`, so a packet without it cannot match the entry (the summary
    /// only ever rules entries out).
    fn value_and_mask(self, e: &V4Entry) -> (u32, u32) {
        match self {
            SummaryField::Dst => (e.dst, e.dst_mask),
            SummaryField::Src => (e.src, e.src_mask),
            SummaryField::ProtocolDstPort => {
                let mut value = 0;
                let mut mask = 0;
                if e.l4.needs() & NEED_PROTOCOL != 0 {
                    value |= u32::from(e.l4.protocol()) << 16;
                    mask |= 0xff << 16;
                }
                // A single port: the entry's range test is then an equality (and a packet
                // without ports fails the entry anyway).
                let (dst_first, dst_last) = e.l4.dst_range();
                if e.l4.needs() & NEED_PORTS != 0 && dst_first == dst_last {
                    value |= u32::from(dst_first);
                    mask |= 0xffff;
                }
                (value, mask)
            }
        }
    }

    /// The field that leaves a packet the fewest candidates in the worst case: the entries it
    /// cannot rule out (mask 0) plus the largest group of entries sharing one (value, mask).
    /// Ties go to the earlier field of [`SummaryField::ALL`].
    fn choose(entries: &[V4Entry]) -> Self {
        let worst = |field: SummaryField| {
            let mut classes: Vec<(u32, u32)> = entries
                .iter()
                .map(|e| field.value_and_mask(e))
                .filter(|&(_, mask)| mask != 0)
                .collect();
            let open = entries.len() - classes.len();
            classes.sort_unstable();
            let largest = classes
                .chunk_by(|a, b| a == b)
                .map(<[_]>::len)
                .max()
                .unwrap_or(0);
            open + largest
        };
        Self::ALL
            .into_iter()
            .min_by_key(|&field| worst(field))
            .unwrap_or_default()
    }
}

/// One summary field of eight consecutive IPv4 entries, in one line, read before them: a
/// packet compares its word with the eight values under their masks (a few vector
/// instructions) and then reads only the entries that can still match, typically one line
/// instead of four. Lanes past the last entry never match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
struct V4Summary {
    values: [u32; LANES],
    masks: [u32; LANES],
}

impl V4Summary {
    /// A lane no word matches (`word & 0` is never 1).
    const CLOSED: (u32, u32) = (1, 0);

    fn of(field: SummaryField, entries: &[V4Entry]) -> Self {
        let mut summary = V4Summary {
            values: [Self::CLOSED.0; LANES],
            masks: [Self::CLOSED.1; LANES],
        };
        for (lane, e) in entries.iter().take(LANES).enumerate() {
            (summary.values[lane], summary.masks[lane]) = field.value_and_mask(e);
        }
        summary
    }

    /// The lanes whose entry `word` may match, as bits (lane `i` = bit `i`): on x86_64 one
    /// `and` and one `cmpeq` per 128-bit half, two packs and one `movemask` (SSE2, the
    /// architecture's baseline). LLVM vectorizes [`V4Summary::candidates_portable`] only in
    /// part (four lanes in a vector, four as scalar compares).
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline(always)]
    fn candidates(&self, word: u32) -> u32 {
        use std::arch::x86_64::{
            __m128i, _mm_and_si128, _mm_cmpeq_epi32, _mm_load_si128, _mm_movemask_epi8,
            _mm_packs_epi16, _mm_packs_epi32, _mm_set1_epi32, _mm_setzero_si128,
        };
        // SAFETY: the intrinsics need SSE2, which the `cfg` above proves this build enables
        // for every function. Each load reads `lanes[at..at + 4]` with `at` 0 or 4: inside
        // the 8-lane array; the struct is `align(64)` and each array starts 0 or 32 bytes
        // into it, so `lanes[at]` is 16-byte aligned as `_mm_load_si128` requires; any bits
        // are a valid `__m128i`.
        unsafe {
            let half = |lanes: &[u32; LANES], at: usize| {
                _mm_load_si128(lanes.as_ptr().add(at).cast::<__m128i>())
            };
            // `word as i32` keeps the bits: the lanes compare bit patterns.
            let word = _mm_set1_epi32(word as i32);
            let low = _mm_cmpeq_epi32(
                _mm_and_si128(word, half(&self.masks, 0)),
                half(&self.values, 0),
            );
            let high = _mm_cmpeq_epi32(
                _mm_and_si128(word, half(&self.masks, 4)),
                half(&self.values, 4),
            );
            // Each lane is all ones or all zeros; the saturating packs keep that, one byte a
            // lane, and the 8 bytes past them are zero.
            let bytes = _mm_packs_epi16(_mm_packs_epi32(low, high), _mm_setzero_si128());
            _mm_movemask_epi8(bytes) as u32
        }
    }

    /// [`V4Summary::candidates`] on other architectures (and its reference in the tests):
    /// a loop over fixed arrays without branches, which compiles to compares on vectors.
    #[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
    #[inline(always)]
    fn candidates_portable(&self, word: u32) -> u32 {
        let mut lanes = 0;
        for lane in 0..LANES {
            lanes |= u32::from(word & self.masks[lane] == self.values[lane]) << lane;
        }
        lanes
    }

    /// The portable form where there is no vector form.
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    #[inline(always)]
    fn candidates(&self, word: u32) -> u32 {
        self.candidates_portable(word)
    }
}

impl V4Entry {
    /// An entry no packet matches (`src & 0` is never 1): the inline copy's slots past the
    /// set's entries, so that a scan may read all [`LANES`] of them.
    fn closed() -> Self {
        V4Entry {
            src: V4Summary::CLOSED.0,
            src_mask: V4Summary::CLOSED.1,
            ..V4Entry::default()
        }
    }
}

/// A small rule set's IPv4 summary line and entries (up to eight), made by
/// [`RuleSet::inline_v4`] for a caller that keeps them beside its own per-set state: a packet
/// then reads its summary and candidate entry in the caller's page instead of the set's block
/// (one random page fewer). Everything else (the summary field, the other families, the
/// actions of non-plain hits) stays in the set; the copy is read only through the set that
/// made it ([`RuleSet::classify_with`] and its prefetches). Five lines, line-aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct InlineV4 {
    summary: V4Summary,
    /// The set's IPv4 entries in precedence order, then closed ones.
    entries: [V4Entry; LANES],
}

const _: () = assert!(std::mem::size_of::<InlineV4>() == 5 * 64);

impl Default for InlineV4 {
    /// A copy of no entries: every lane closed.
    fn default() -> Self {
        InlineV4 {
            summary: V4Summary::of(SummaryField::default(), &[]),
            entries: [V4Entry::closed(); LANES],
        }
    }
}

/// The IPv4 part of a set as a packet scans it: the set's block, or its [`InlineV4`] copy.
/// One scan serves both, so the two cannot disagree.
#[derive(Clone, Copy)]
struct V4Scan<'a> {
    field: SummaryField,
    /// One summary per [`LANES`] entries.
    summaries: &'a [V4Summary],
    entries: &'a [V4Entry],
}

impl<'a> V4Scan<'a> {
    /// The index of the first entry `key` can match according to the summaries, with its
    /// line prefetched (`None`: no entry can match).
    #[inline(always)]
    fn prefetch_candidate(&self, key: &PacketKey) -> Option<usize> {
        let word = self.field.word(key);
        for (group, summary) in self.summaries.iter().enumerate() {
            let lanes = summary.candidates(word);
            if lanes != 0 {
                let first = group * LANES + lanes.trailing_zeros() as usize;
                crate::fdb::prefetch_slice(self.entries.get(first..first + 1).unwrap_or(&[]), 1);
                return Some(first);
            }
        }
        None
    }

    /// The first entry (in precedence order) `key` matches: the summaries rule out entries
    /// whose field differs, and the rest are tested whole, in order. With a `candidate` (see
    /// [`RuleSet::classify_from`]) no entry before it matches: it is tested first, without
    /// the summary that named it, and the scan goes on after it.
    #[inline(always)]
    fn first_match(&self, key: &PacketKey, candidate: Option<usize>) -> Option<&'a V4Entry> {
        let entries = self.entries;
        let mut after = 0;
        if let Some(candidate) = candidate {
            if let Some(e) = entries.get(candidate).filter(|e| e.matches(key)) {
                return Some(e);
            }
            after = candidate.saturating_add(1);
        }
        // From `after`: from its lane on in its group, every lane of the later groups.
        let first_group = after / LANES;
        let word = self.field.word(key);
        let summaries = self.summaries.iter().enumerate().skip(first_group);
        for (group, summary) in summaries {
            let mut lanes = summary.candidates(word);
            if group == first_group {
                lanes &= u32::MAX << (after % LANES);
            }
            while lanes != 0 {
                let index = group * LANES + lanes.trailing_zeros() as usize;
                if let Some(e) = entries.get(index).filter(|e| e.matches(key)) {
                    return Some(e);
                }
                lanes &= lanes - 1;
            }
        }
        None
    }
}

/// A [`RuleAction`] in 8 bytes (an 8-rule set's actions are one line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C, align(8))]
struct CompiledAction {
    policer: u32,
    flags: u32,
}

impl CompiledAction {
    const DROP: u32 = 1;
    const ACCOUNT: u32 = 2;
    const POLICED: u32 = 4;

    fn new(action: RuleAction) -> Self {
        let mut flags = 0;
        if action.disposition == Disposition::Drop {
            flags |= Self::DROP;
        }
        if action.account {
            flags |= Self::ACCOUNT;
        }
        if action.policer.is_some() {
            flags |= Self::POLICED;
        }
        Self {
            policer: action.policer.unwrap_or(0),
            flags,
        }
    }

    #[inline(always)]
    fn action(self) -> RuleAction {
        RuleAction {
            disposition: if self.flags & Self::DROP != 0 {
                Disposition::Drop
            } else {
                Disposition::Forward
            },
            policer: (self.flags & Self::POLICED != 0).then_some(self.policer),
            account: self.flags & Self::ACCOUNT != 0,
        }
    }
}

packed_arrays! {
    /// Everything a compiled set holds, in one block of lines: an IPv4 packet reads the
    /// summary (line 0), its candidate entry and its action; for an 8-rule set those are
    /// lines 0, 1–4 and 5, in one page. The orders follow the actions: each array starts at
    /// its items' alignment even after an empty one, so behind the (64-byte aligned) IPv6
    /// and MAC arrays they took a line of their own (an 8-rule IPv4 set: 7 lines, was 8 and
    /// the arena's gap line).
    struct Compiled {
        /// One summary per eight IPv4 entries.
        0 summaries: V4Summary,
        /// IPv4 entries, in precedence order.
        1 v4: V4Entry,
        /// The actions in precedence order, then the default action.
        2 actions: CompiledAction,
        /// The rules' orders in precedence order (the control side's, never read per packet).
        3 orders: u32,
        /// IPv6 entries, in precedence order.
        4 v6: V6Entry,
        /// Ethernet entries, in precedence order.
        5 mac: MacEntry,
    }
}

/// A compiled rule set (immutable; shared through `Arc` by snapshots).
///
/// 40 bytes: a handle on one block of the classifier's huge-page arena of lines (summaries,
/// entries of every family, actions, the default action, orders) and the field the summaries
/// compare. With one set per SAP or subscriber, a packet's set is a random one of thousands:
/// in `malloc`'s 4 KiB pages each would cost a page walk beside its cache misses, and in
/// separate blocks each array its own page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    compiled: Compiled,
    field: SummaryField,
    /// The default action's [`plain_bits`]: a packet no rule matches reads no action line
    /// when it is plain.
    default_plain: u8,
    /// Every action, the default's too, is plain: an IPv4 packet never reads the actions, and
    /// [`RuleSet::prefetch_head`] does not fetch them.
    all_plain: bool,
    /// Some rule matches Ethernet fields: only then does a packet look at the MAC entries.
    mac_rules: bool,
    /// `Some(n)`: a set from [`RuleSet::split_inline_v4`], whose block left out its IPv4
    /// summary and its `n` IPv4 entries: every IPv4 scan of it must be given the
    /// [`InlineV4`] copy that holds them.
    inlined_v4: Option<u8>,
}

/// Validates `rules` and compiles them, with `default` for packets no rule matches.
pub fn compile(rules: &[Rule], default: RuleAction) -> Result<RuleSet, RuleError> {
    compile_summarised(rules, default, SummaryField::choose)
}

/// [`compile`] with the summary field `choose` picks from the IPv4 entries.
fn compile_summarised(
    rules: &[Rule],
    default: RuleAction,
    choose: impl FnOnce(&[V4Entry]) -> SummaryField,
) -> Result<RuleSet, RuleError> {
    if rules.len() > MAX_RULES {
        return Err(RuleError::TooMany(rules.len()));
    }
    let mut sorted: Vec<&Rule> = rules.iter().collect();
    sorted.sort_by_key(|rule| rule.order);
    for pair in sorted.windows(2) {
        if pair[0].order == pair[1].order {
            return Err(RuleError::Rule {
                order: pair[1].order,
                kind: RuleErrorKind::DuplicateOrder,
            });
        }
    }
    for rule in &sorted {
        if rule.matches.is_empty() {
            return Err(RuleError::Rule {
                order: rule.order,
                kind: RuleErrorKind::NoMatch,
            });
        }
        for m in &rule.matches {
            check_match(m).map_err(|kind| RuleError::Rule {
                order: rule.order,
                kind,
            })?;
        }
    }
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    let mut mac = Vec::new();
    for (index, rule) in sorted.iter().enumerate() {
        let index = index as u16;
        for m in &rule.matches {
            match m {
                Match::Ip(ip) => {
                    v4.extend(V4Entry::of(ip, index).map(|e| e.with_action(rule.action)));
                    v6.extend(V6Entry::of(ip, index).map(|e| e.with_action(rule.action)));
                }
                Match::Mac(m) => {
                    let (src, src_mask) = m
                        .src
                        .map(|mm| (mac_bits(mm.mac), mac_bits(mm.mask)))
                        .unwrap_or((0, 0));
                    let (dst, dst_mask) = m
                        .dst
                        .map(|mm| (mac_bits(mm.mac), mac_bits(mm.mask)))
                        .unwrap_or((0, 0));
                    mac.push(MacEntry {
                        src,
                        src_mask,
                        dst,
                        dst_mask,
                        ethertype: m.ethertype.unwrap_or(0),
                        outer: vid_spec(&m.outer_vid),
                        inner: vid_spec(&m.inner_vid),
                        needs: if m.ethertype.is_some() {
                            NEED_ETHERTYPE
                        } else {
                            0
                        },
                        rule: index,
                    });
                }
            }
        }
    }
    let field = choose(&v4);
    let summaries: Vec<V4Summary> = v4
        .chunks(LANES)
        .map(|group| V4Summary::of(field, group))
        .collect();
    let actions: Vec<CompiledAction> = sorted
        .iter()
        .map(|rule| rule.action)
        .chain([default])
        .map(CompiledAction::new)
        .collect();
    let orders: Vec<u32> = sorted.iter().map(|rule| rule.order).collect();
    let all_plain = sorted
        .iter()
        .map(|rule| rule.action)
        .chain([default])
        .all(|action| plain_bits(action) != 0);
    Ok(RuleSet {
        compiled: Compiled::new(&summaries, &v4, &actions, &orders, &v6, &mac)?,
        field,
        default_plain: plain_bits(default),
        all_plain,
        mac_rules: !mac.is_empty(),
        inlined_v4: None,
    })
}

impl RuleSet {
    /// A set with no rules: every packet gets `default`.
    pub fn empty(default: RuleAction) -> Self {
        Self {
            // One action fits any block.
            compiled: Compiled::new(&[], &[], &[CompiledAction::new(default)], &[], &[], &[])
                .unwrap_or_else(|_| Compiled::empty()),
            field: SummaryField::default(),
            default_plain: plain_bits(default),
            all_plain: plain_bits(default) != 0,
            mac_rules: false,
            inlined_v4: None,
        }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.compiled.orders().len()
    }

    /// Hints the CPU to fetch the first entries a packet of `family` scans (up to
    /// [`PREFETCH_LINES`] cache lines) and the actions, so that a batch can overlap its
    /// packets' cache misses. A caller that has the packet's key a step later fetches fewer
    /// lines with [`RuleSet::prefetch_head`] then [`RuleSet::prefetch_candidates`].
    #[inline]
    pub fn prefetch(&self, family: Option<IpFamily>) {
        let c = &self.compiled;
        match family {
            Some(IpFamily::V4) => {
                // The summary, the entries and the actions after them: for eight rules seven
                // lines from a line's start (the block is line-aligned).
                let (start, bytes) = c.bytes();
                crate::fdb::prefetch_span(start, bytes, PREFETCH_LINES + 2);
                return;
            }
            Some(IpFamily::V6) => crate::fdb::prefetch_slice(c.v6(), PREFETCH_LINES),
            None => crate::fdb::prefetch_slice(c.mac(), PREFETCH_LINES),
        }
        // Eight actions and the default span two lines.
        crate::fdb::prefetch_slice(c.actions(), 2);
    }

    /// First of two prefetch steps for an IPv4 packet: the first summary line and, unless
    /// every action is plain (then the entries and the set say them), the line of the first
    /// eight actions (which hold the action of any of the first eight rules). Once they are
    /// in cache, [`RuleSet::prefetch_candidates`] reads the summary.
    #[inline]
    pub fn prefetch_head(&self) {
        self.prefetch_head_with(None);
    }

    /// [`RuleSet::prefetch_head`] for a caller that keeps this set's `inline` copy
    /// ([`RuleSet::inline_v4`]): its summary line instead of the block's.
    #[inline]
    pub fn prefetch_head_with(&self, inline: Option<&InlineV4>) {
        crate::fdb::prefetch_slice(self.v4_scan(inline).summaries, 1);
        if !self.all_plain {
            crate::fdb::prefetch_slice(self.compiled.actions(), 1);
        }
    }

    /// Second prefetch step: the line of the first entry `key` can match according to the
    /// summaries (which [`RuleSet::prefetch_head`] fetched), whose index among the IPv4
    /// entries it returns (`None`: no IPv4 entry can match). Other families prefetch as
    /// [`RuleSet::prefetch`] does.
    #[inline]
    pub fn prefetch_candidates(&self, key: &PacketKey) -> Option<usize> {
        self.prefetch_candidates_with(None, key)
    }

    /// [`RuleSet::prefetch_candidates`] in this set's `inline` copy when given (the index is
    /// the same).
    #[inline]
    pub fn prefetch_candidates_with(
        &self,
        inline: Option<&InlineV4>,
        key: &PacketKey,
    ) -> Option<usize> {
        if key.family != Some(IpFamily::V4) {
            self.prefetch(key.family);
            return None;
        }
        // As in `first_hit`: the inline copy's scan with its lengths constant.
        match inline {
            Some(inline) => self.v4_scan(Some(inline)).prefetch_candidate(key),
            None => self.v4_scan(None).prefetch_candidate(key),
        }
    }

    /// This set's IPv4 summary and entries in one [`InlineV4`], when they fit (at most
    /// eight entries): for a caller that keeps its per-set state in a page of its own and
    /// would rather a packet read them there. `None` for a larger set, and for a set from
    /// [`RuleSet::split_inline_v4`] (its block no longer holds them).
    pub fn inline_v4(&self) -> Option<InlineV4> {
        if self.inlined_v4.is_some() {
            return None;
        }
        let v4 = self.compiled.v4();
        let mut inline = InlineV4::default();
        inline.entries.get_mut(..v4.len())?.copy_from_slice(v4);
        if let Some(summary) = self.compiled.summaries().first() {
            inline.summary = *summary;
        }
        Some(inline)
    }

    /// This set as two parts for a caller that keeps the [`InlineV4`] ([`RuleSet::inline_v4`])
    /// beside its own per-set state: that copy, and a set whose block holds everything else
    /// (the actions and the default's, the IPv6 and MAC entries, the orders) but not the
    /// IPv4 summary and entries no packet reads there any more — for an 8-rule IPv4 set, 2
    /// lines instead of 7. The set answers as this one does when
    /// every IPv4 scan of it is given the copy (the `_with` forms; a scan without it is a
    /// bug, caught by a debug assertion). `None` where [`RuleSet::inline_v4`] is, and should
    /// the smaller block be refused (the caller then keeps the whole set).
    pub fn split_inline_v4(&self) -> Option<(RuleSet, InlineV4)> {
        let inline = self.inline_v4()?;
        let c = &self.compiled;
        // Fewer lines than the block they come from, which fitted a chunk, so this is not
        // refused; if it were, the caller keeps the whole set (an empty block would lose the
        // actions).
        let compiled = Compiled::new(&[], &[], c.actions(), c.orders(), c.v6(), c.mac()).ok()?;
        let rest = RuleSet {
            compiled,
            // The copy's summary compares this field, which stays in the handle.
            field: self.field,
            default_plain: self.default_plain,
            all_plain: self.all_plain,
            mac_rules: self.mac_rules,
            // At most `LANES` entries, or `inline_v4` was `None`.
            inlined_v4: Some(c.v4().len() as u8),
        };
        Some((rest, inline))
    }

    /// The block's IPv4 summaries and entries: never those of a set whose IPv4 part was
    /// split off (it has none left; its caller's copy must be scanned).
    #[inline(always)]
    fn block_v4(&self) -> (&[V4Summary], &[V4Entry]) {
        debug_assert!(
            self.inlined_v4.is_none(),
            "an IPv4 scan of a split set without its inline copy"
        );
        (self.compiled.summaries(), self.compiled.v4())
    }

    /// The IPv4 arrays a packet scans: `inline`'s when given, else the block's.
    #[inline(always)]
    fn v4_scan<'a>(&'a self, inline: Option<&'a InlineV4>) -> V4Scan<'a> {
        let (summaries, entries) = match inline {
            Some(inline) => (std::slice::from_ref(&inline.summary), &inline.entries[..]),
            None => self.block_v4(),
        };
        V4Scan {
            field: self.field,
            summaries,
            entries,
        }
    }

    /// True when IPv4 entry `i` is rule `i` for every IPv4 entry (a filter of IPv4 rules
    /// alone): the index [`RuleSet::prefetch_candidates`] returns is then a rule index.
    /// Asked of the whole set, before [`RuleSet::split_inline_v4`].
    pub fn v4_entries_in_rule_order(&self) -> bool {
        self.block_v4()
            .1
            .iter()
            .enumerate()
            .all(|(i, e)| usize::from(e.rule()) == i)
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when some rule matches Ethernet fields (the caller then needs the L2 key).
    pub fn has_mac_rules(&self) -> bool {
        !self.compiled.mac().is_empty()
    }

    /// True when some rule matches IP fields.
    pub fn has_ip_rules(&self) -> bool {
        self.inlined_v4.is_some_and(|entries| entries > 0)
            || !self.compiled.v4().is_empty()
            || !self.compiled.v6().is_empty()
    }

    /// The order of rule `index`.
    pub fn order(&self, index: u16) -> Option<u32> {
        self.compiled.orders().get(usize::from(index)).copied()
    }

    /// The default action.
    pub fn default_action(&self) -> RuleAction {
        self.compiled
            .actions()
            .last()
            .copied()
            .unwrap_or_default()
            .action()
    }

    /// The lowest-order rule matching `key`, or the default action.
    #[inline]
    pub fn classify(&self, key: &PacketKey) -> Hit {
        self.classify_from(key, None)
    }

    /// [`RuleSet::classify`] for a caller that may know `v4_candidate`: an IPv4 entry no
    /// entry before which matches `key` — the index [`RuleSet::prefetch_candidates`] returned
    /// for it (past the last entry when it returned `None` for an IPv4 key). The candidate is
    /// tested first, so the summary that named it is not compared again (and entry 0 is not
    /// read when the candidate is elsewhere). The hit is the same as `classify`'s whenever
    /// the premise holds; `None` is `classify`.
    #[inline]
    pub fn classify_from(&self, key: &PacketKey, v4_candidate: Option<usize>) -> Hit {
        self.classify_with(None, key, v4_candidate)
    }

    /// [`RuleSet::classify_from`] scanning this set's `inline` copy ([`RuleSet::inline_v4`])
    /// of its IPv4 entries when given: the same hit, read from the caller's lines.
    ///
    /// The scan is out of line and answers in one register ([`RuleSet::first_hit`]); the
    /// [`Hit`] is built here, in the caller, which reads its fields without a round trip
    /// through memory (a 16-byte `Hit` returned from the call was stored and reloaded).
    #[inline(always)]
    pub fn classify_with(
        &self,
        inline: Option<&InlineV4>,
        key: &PacketKey,
        v4_candidate: Option<usize>,
    ) -> Hit {
        let found = match self.candidate_hit(inline, key, v4_candidate) {
            CANDIDATE_MISSED => self.first_hit(inline, key, v4_candidate),
            found => found,
        };
        let rule = found as u16;
        // A rule index past the rules is the default, whose action is the last.
        let rules = self.len();
        let index = usize::from(rule).min(rules);
        Hit {
            rule: (index < rules).then_some(rule),
            action: plain_action((found >> 16) as u8).unwrap_or_else(|| {
                let actions = self.compiled.actions();
                actions.get(index).copied().unwrap_or_default().action()
            }),
        }
    }

    /// [`RuleSet::first_hit`]'s answer for the common case, [`CANDIDATE_MISSED`] for any
    /// other: an IPv4 packet whose candidate matches, in a set without MAC rules (which would
    /// compete). Apart from the scan, and out of line apart from its caller's scan call, so
    /// that it needs no register a call must save: as one function with the scan, whose
    /// loops hold many values, every packet saved and restored six registers (round 27).
    #[inline(never)]
    fn candidate_hit(
        &self,
        inline: Option<&InlineV4>,
        key: &PacketKey,
        v4_candidate: Option<usize>,
    ) -> u32 {
        if let (Some(IpFamily::V4), false, Some(candidate)) =
            (key.family, self.mac_rules, v4_candidate)
        {
            let entry = match inline {
                Some(inline) => inline.entries.get(candidate),
                None => self.block_v4().1.get(candidate),
            };
            if let Some(e) = entry.filter(|e| e.matches(key)) {
                return hit_word(e.rule(), e.plain_bits());
            }
        }
        CANDIDATE_MISSED
    }

    /// The first rule `key` matches (in the low 16 bits; `u16::MAX` for none) and its plain
    /// action's bits when it has one (bits 16–23; 0: read the rule's action): a word, so
    /// that the answer comes back in a register. Every case, [`RuleSet::candidate_hit`]'s
    /// included (a candidate that did not match is tested again: one entry, in a line
    /// already read).
    #[inline(never)]
    fn first_hit(
        &self,
        inline: Option<&InlineV4>,
        key: &PacketKey,
        v4_candidate: Option<usize>,
    ) -> u32 {
        // Entries are in precedence order within each family, so the first hit of a scan is
        // its best; an IP and a MAC hit compete by index.
        // The hit's plain action, when its entry (or, for no hit, the set) says it: the
        // actions' line is then not read.
        let mut best = u16::MAX;
        let mut plain = self.default_plain;
        match key.family {
            Some(IpFamily::V4) => {
                // One scan, compiled twice: for an inline copy its arrays' lengths are
                // constants (no bounds to load and check), for the block they are not.
                let found = match inline {
                    Some(inline) => self.v4_scan(Some(inline)).first_match(key, v4_candidate),
                    None => self.v4_scan(None).first_match(key, v4_candidate),
                };
                if let Some(e) = found {
                    best = e.rule();
                    plain = e.plain_bits();
                }
            }
            Some(IpFamily::V6) => {
                if let Some(e) = self.compiled.v6().iter().find(|e| e.matches(key)) {
                    best = e.rule();
                    plain = e.plain_bits();
                }
            }
            None => {}
        }
        // The MAC array's place is not computed for a set without MAC rules.
        if self.mac_rules {
            for e in self.compiled.mac() {
                if e.rule >= best {
                    break;
                }
                if ((key.src_mac & e.src_mask) == e.src)
                    & ((key.dst_mac & e.dst_mask) == e.dst)
                    & ((e.needs & NEED_ETHERTYPE == 0) | (key.ethertype == e.ethertype))
                    & vid_ok(&e.outer, key.outer_vid)
                    & vid_ok(&e.inner, key.inner_vid)
                {
                    best = e.rule;
                    plain = 0;
                    break;
                }
            }
        }
        hit_word(best, plain)
    }
}

/// [`RuleSet::candidate_hit`]'s answer when the candidate did not answer (no hit word has
/// bits past 23).
const CANDIDATE_MISSED: u32 = u32::MAX;

/// [`RuleSet::first_hit`]'s answer: the rule index in bits 0–15, the plain action's bits
/// ([`plain_bits`], found among an entry's other `needs` bits) in 16–23.
#[inline(always)]
fn hit_word(rule: u16, plain: u8) -> u32 {
    u32::from(rule) | (u32::from(plain & (PLAIN_ACTION | PLAIN_DROP)) << 16)
}

/// An IPv4 prefix (for tests and tools).
pub fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Prefix {
    Prefix::new(Ipv4Addr::new(a, b, c, d), len)
}

/// An IPv6 prefix (for tests and tools).
pub fn v6(addr: Ipv6Addr, len: u8) -> Prefix {
    Prefix::new(addr, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build;
    use proptest::prelude::*;

    fn rule(order: u32, m: Match, disposition: Disposition) -> Rule {
        Rule {
            order,
            matches: vec![m],
            action: RuleAction {
                disposition,
                ..RuleAction::default()
            },
        }
    }

    fn udp4_key(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> PacketKey {
        let ip = build::ipv4_udp(src, dst, sport, dport, &[0; 8]);
        let frame = build::ethernet(
            MacAddr([2, 0, 0, 0, 0, 1]),
            MacAddr([2, 0, 0, 0, 0, 2]),
            crate::wire::EtherType::IPV4,
            &ip,
        );
        PacketKey::from_frame(&frame, crate::wire::EtherType::IPV4, 14, 0, 0)
    }

    #[test]
    fn entry_sizes_stay_compact() {
        assert_eq!(std::mem::size_of::<V4Entry>(), 32);
        assert!(std::mem::size_of::<V6Entry>() <= 80);
        assert_eq!(std::mem::size_of::<MacEntry>(), 64);
        // A stage's owner record holds the handle beside its policer and hit counters.
        assert!(std::mem::size_of::<RuleSet>() <= 40);
        assert_eq!(std::mem::size_of::<V4Summary>(), 64);
        assert_eq!(std::mem::size_of::<CompiledAction>(), 8);
    }

    /// `n` rules, rule `e` (order `e`) matching destinations in 10.0.`e`.0/24.
    fn to_slash_24s(n: u8, disposition: Disposition) -> Vec<Rule> {
        (0..n)
            .map(|e| {
                let dst = Some(v4(10, 0, e, 0, 24));
                let flow = IpMatch {
                    dst,
                    ..IpMatch::default()
                };
                rule(u32::from(e), Match::Ip(flow), disposition)
            })
            .collect()
    }

    #[test]
    fn an_eight_rule_set_is_a_summary_line_four_entry_lines_and_its_actions() {
        let set = compile(&to_slash_24s(8, Disposition::Forward), RuleAction::DROP).unwrap();
        assert_eq!(set.field, SummaryField::Dst);
        let c = &set.compiled;
        let base = c.summaries().as_ptr() as usize;
        assert_eq!(base % 64, 0);
        assert_eq!(c.v4().as_ptr() as usize - base, 64);
        assert_eq!(c.actions().as_ptr() as usize - base, 5 * 64);
        let hit = set.classify(&udp4_key(
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::new(10, 0, 7, 9),
            1,
            2,
        ));
        assert_eq!(hit.rule, Some(7));
        assert_eq!(set.default_action(), RuleAction::DROP);
        assert_eq!(set.len(), 8);
        // Prefetching is only a hint, but must not read out of bounds either; the candidate
        // it names is the 8th entry, which is the 8th rule.
        set.prefetch_head();
        let candidate = set.prefetch_candidates(&udp4_key(
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::new(10, 0, 7, 9),
            1,
            2,
        ));
        assert_eq!(candidate, Some(7));
        assert!(set.v4_entries_in_rule_order());
        let empty = RuleSet::empty(RuleAction::FORWARD);
        assert_eq!(
            (empty.len(), empty.default_action()),
            (0, RuleAction::FORWARD)
        );
        empty.prefetch_head();
        empty.prefetch_candidates(&PacketKey::default());
    }

    #[test]
    fn only_a_set_of_at_most_eight_ipv4_entries_has_an_inline_copy() {
        let key = udp4_key(Ipv4Addr::LOCALHOST, Ipv4Addr::new(10, 0, 7, 9), 1, 2);
        let eight = compile(&to_slash_24s(8, Disposition::Forward), RuleAction::DROP).unwrap();
        let inline = eight.inline_v4().expect("eight entries fit");
        eight.prefetch_head_with(Some(&inline));
        assert_eq!(eight.prefetch_candidates_with(Some(&inline), &key), Some(7));
        assert_eq!(
            eight.classify_with(Some(&inline), &key, Some(7)),
            eight.classify(&key)
        );
        let nine = compile(&to_slash_24s(9, Disposition::Forward), RuleAction::DROP).unwrap();
        assert_eq!(nine.inline_v4(), None);
        // No IPv4 entry at all: a copy of closed lanes, which no packet matches.
        let empty = RuleSet::empty(RuleAction::FORWARD).inline_v4().unwrap();
        assert_eq!(empty.summary.candidates(key.dst4), 0);
        assert!(!empty.entries.iter().any(|e| e.matches(&key)));
    }

    #[test]
    fn a_split_eight_rule_set_keeps_two_of_its_seven_lines() {
        let key = udp4_key(Ipv4Addr::LOCALHOST, Ipv4Addr::new(10, 0, 7, 9), 1, 2);
        let eight = compile(&to_slash_24s(8, Disposition::Forward), RuleAction::DROP).unwrap();
        let (rest, inline) = eight.split_inline_v4().expect("eight entries fit");
        let lines = |set: &RuleSet| set.compiled.bytes().1.div_ceil(64);
        assert_eq!((lines(&eight), lines(&rest)), (7, 2));
        assert_eq!(
            rest.classify_with(Some(&inline), &key, None),
            eight.classify(&key)
        );
        assert!(rest.has_ip_rules());
        assert_eq!(rest.split_inline_v4(), None);
        let nine = compile(&to_slash_24s(9, Disposition::Forward), RuleAction::DROP).unwrap();
        assert_eq!(nine.split_inline_v4(), None);
    }

    /// The split set's IPv4 part is only in the copy: a scan without it is caught.
    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "without its inline copy")]
    fn an_ipv4_scan_of_a_split_set_without_its_copy_panics() {
        let key = udp4_key(Ipv4Addr::LOCALHOST, Ipv4Addr::new(10, 0, 7, 9), 1, 2);
        let eight = compile(&to_slash_24s(8, Disposition::Forward), RuleAction::DROP).unwrap();
        let (rest, _) = eight.split_inline_v4().expect("eight entries fit");
        rest.classify(&key);
    }

    #[test]
    fn sets_of_more_than_eight_entries_have_a_summary_per_eight() {
        // Nineteen /24s, then a catch-all: three summaries, the last with four closed lanes.
        let mut rules = to_slash_24s(19, Disposition::Drop);
        rules.push(rule(
            19,
            Match::Ip(IpMatch::default()),
            Disposition::Forward,
        ));
        let set = compile(&rules, RuleAction::DROP).unwrap();
        assert_eq!(set.compiled.summaries().len(), 3);
        let to = |c: u8| udp4_key(Ipv4Addr::LOCALHOST, Ipv4Addr::new(10, 0, c, 1), 1, 2);
        for c in 0..19 {
            assert_eq!(set.classify(&to(c)).rule, Some(u16::from(c)));
        }
        assert_eq!(set.classify(&to(200)).rule, Some(19));
        assert_eq!(set.classify(&to(200)).action, RuleAction::FORWARD);
    }

    #[test]
    fn the_summary_field_is_the_one_leaving_the_fewest_candidates() {
        // The field chosen for eight rules, rule `e` matching `flow(e)`.
        let field_of = |flow: fn(u8) -> IpMatch| {
            let rules: Vec<Rule> = (0..8u8)
                .map(|e| rule(u32::from(e), Match::Ip(flow(e)), Disposition::Drop))
                .collect();
            compile(&rules, RuleAction::FORWARD).unwrap().field
        };
        // Eight sources, one destination: the source rules out seven of eight.
        let by_src = |e: u8| IpMatch {
            src: Some(v4(10, e, 0, 0, 16)),
            dst: Some(v4(192, 0, 2, 0, 24)),
            ..IpMatch::default()
        };
        assert_eq!(field_of(by_src), SummaryField::Src);
        // Services by protocol and port only.
        let by_port = |e: u8| IpMatch {
            protocol: Some(if e.is_multiple_of(2) { 6 } else { 17 }),
            dst_port: Some(PortRange::single(80 + u16::from(e))),
            ..IpMatch::default()
        };
        assert_eq!(field_of(by_port), SummaryField::ProtocolDstPort);
    }

    #[test]
    fn first_matching_order_wins_and_default_applies() {
        let rules = vec![
            rule(
                20,
                Match::Ip(IpMatch {
                    dst: Some(v4(10, 1, 0, 0, 16)),
                    ..IpMatch::default()
                }),
                Disposition::Forward,
            ),
            rule(
                10,
                Match::Ip(IpMatch {
                    protocol: Some(17),
                    dst_port: Some(PortRange {
                        first: 50,
                        last: 60,
                    }),
                    ..IpMatch::default()
                }),
                Disposition::Drop,
            ),
        ];
        let set = compile(&rules, RuleAction::DROP).unwrap();
        let a = Ipv4Addr::new(192, 0, 2, 1);
        let hit = set.classify(&udp4_key(a, Ipv4Addr::new(10, 1, 2, 3), 1000, 55));
        assert_eq!(
            (hit.rule, hit.action.disposition),
            (Some(0), Disposition::Drop)
        );
        assert_eq!(set.order(0), Some(10));
        let hit = set.classify(&udp4_key(a, Ipv4Addr::new(10, 1, 2, 3), 1000, 61));
        assert_eq!(
            (hit.rule, hit.action.disposition),
            (Some(1), Disposition::Forward)
        );
        let hit = set.classify(&udp4_key(a, Ipv4Addr::new(10, 2, 2, 3), 1000, 61));
        assert_eq!((hit.rule, hit.action), (None, RuleAction::DROP));
    }

    #[test]
    fn ipv6_rules_and_family_wildcards() {
        let net: Ipv6Addr = "2001:db8::".parse().unwrap();
        let rules = vec![
            rule(
                1,
                Match::Ip(IpMatch {
                    src: Some(v6(net, 32)),
                    protocol: Some(17),
                    src_port: Some(PortRange::single(4000)),
                    ..IpMatch::default()
                }),
                Disposition::Drop,
            ),
            // No address, no family: both families.
            rule(
                2,
                Match::Ip(IpMatch {
                    dscp: Some(0),
                    ..IpMatch::default()
                }),
                Disposition::Forward,
            ),
        ];
        let set = compile(&rules, RuleAction::DROP).unwrap();
        let ip = build::ipv6_udp(
            "2001:db8::5".parse().unwrap(),
            "2001:db9::1".parse().unwrap(),
            4000,
            80,
            &[],
        );
        let mut key = PacketKey::default();
        key.read_ipv6(&ip);
        assert_eq!(set.classify(&key).rule, Some(0));
        key.transport = Transport::new(ip_protocol::UDP, 0, Some((4001, 80)), None);
        assert_eq!(set.classify(&key).rule, Some(1));
        let v4key = udp4_key(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 1, 2);
        assert_eq!(set.classify(&v4key).rule, Some(1));
    }

    #[test]
    fn mac_vid_filter_as_in_the_dynamic_services_document() {
        // mac-filter 10: default-action forward, type vid, entry 10 outer-tag 20 4095 → drop.
        let rules = vec![rule(
            10,
            Match::Mac(MacMatch {
                outer_vid: Some(VidMatch::Masked {
                    value: 20,
                    mask: 4095,
                }),
                ..MacMatch::default()
            }),
            Disposition::Drop,
        )];
        let set = compile(&rules, RuleAction::FORWARD).unwrap();
        let key = |outer| PacketKey {
            outer_vid: outer,
            ..PacketKey::default()
        };
        assert_eq!(set.classify(&key(20)).action, RuleAction::DROP);
        assert_eq!(set.classify(&key(21)).action, RuleAction::FORWARD);
    }

    #[test]
    fn ip_rule_beats_a_later_mac_rule_and_loses_to_an_earlier_one() {
        let mac = Match::Mac(MacMatch {
            ethertype: Some(crate::wire::EtherType::IPV4),
            ..MacMatch::default()
        });
        let ip = Match::Ip(IpMatch::default());
        let set = compile(
            &[
                rule(5, ip, Disposition::Forward),
                rule(7, mac, Disposition::Drop),
            ],
            RuleAction::DROP,
        )
        .unwrap();
        let key = udp4_key(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 1, 2);
        assert_eq!(set.classify(&key).rule, Some(0));
        assert!(set.v4_entries_in_rule_order());
        let set = compile(
            &[
                rule(9, ip, Disposition::Forward),
                rule(7, mac, Disposition::Drop),
            ],
            RuleAction::FORWARD,
        )
        .unwrap();
        assert_eq!(set.classify(&key).action, RuleAction::DROP);
        // The IPv4 entry is rule 1: a candidate's index is not its rule's.
        assert!(!set.v4_entries_in_rule_order());
    }

    #[test]
    fn invalid_rules_are_refused_with_their_order() {
        let ip = |m: IpMatch| vec![rule(3, Match::Ip(m), Disposition::Drop)];
        let err = |rules: Vec<Rule>| match compile(&rules, RuleAction::FORWARD) {
            Err(RuleError::Rule { order, kind }) => (order, kind),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            err(ip(IpMatch {
                src: Some(v4(10, 0, 0, 1, 8)),
                ..IpMatch::default()
            })),
            (3, RuleErrorKind::HostBits(v4(10, 0, 0, 1, 8)))
        );
        assert_eq!(
            err(ip(IpMatch {
                src: Some(v4(10, 0, 0, 0, 33)),
                ..IpMatch::default()
            }))
            .1,
            RuleErrorKind::PrefixLength { len: 33, max: 32 }
        );
        assert_eq!(
            err(ip(IpMatch {
                src: Some(v4(10, 0, 0, 0, 8)),
                dst: Some(v6(Ipv6Addr::UNSPECIFIED, 0)),
                ..IpMatch::default()
            }))
            .1,
            RuleErrorKind::MixedFamilies
        );
        assert_eq!(
            err(ip(IpMatch {
                protocol: Some(1),
                dst_port: Some(PortRange::single(80)),
                ..IpMatch::default()
            }))
            .1,
            RuleErrorKind::PortsWithoutTransport(1)
        );
        assert_eq!(
            err(ip(IpMatch {
                icmp_type: Some(8),
                protocol: Some(1),
                ..IpMatch::default()
            }))
            .1,
            RuleErrorKind::IcmpTypeWithoutIcmp
        );
        assert_eq!(
            err(ip(IpMatch {
                dscp: Some(64),
                ..IpMatch::default()
            }))
            .1,
            RuleErrorKind::Dscp(64)
        );
        assert_eq!(
            err(ip(IpMatch {
                src_port: Some(PortRange { first: 9, last: 8 }),
                ..IpMatch::default()
            }))
            .1,
            RuleErrorKind::EmptyPortRange { first: 9, last: 8 }
        );
        let mac = |m: MacMatch| vec![rule(4, Match::Mac(m), Disposition::Drop)];
        assert!(matches!(
            err(mac(MacMatch {
                outer_vid: Some(VidMatch::Range {
                    first: 10,
                    last: 4096
                }),
                ..MacMatch::default()
            })),
            (4, RuleErrorKind::Vid(_))
        ));
        assert!(matches!(
            err(mac(MacMatch {
                src: Some(MacMask {
                    mac: MacAddr([1, 2, 3, 4, 5, 6]),
                    mask: MacAddr([0xff, 0xff, 0xff, 0, 0, 0]),
                }),
                ..MacMatch::default()
            })),
            (4, RuleErrorKind::MacOutsideMask { .. })
        ));
        let dup = vec![
            rule(1, Match::Ip(IpMatch::default()), Disposition::Drop),
            rule(1, Match::Ip(IpMatch::default()), Disposition::Drop),
        ];
        assert_eq!(err(dup), (1, RuleErrorKind::DuplicateOrder));
        let empty = vec![Rule {
            order: 2,
            matches: vec![],
            action: RuleAction::DROP,
        }];
        assert_eq!(err(empty), (2, RuleErrorKind::NoMatch));
    }

    // --- compiled form == reference matcher -------------------------------------------

    fn arb_v4_prefix() -> impl Strategy<Value = Prefix> {
        // Addresses from a small pool so that rules and packets meet often.
        (0u32..4, 0u8..=32).prop_map(|(a, len)| {
            let addr = 0x0a00_0000u32 | (a << 8) | a;
            Prefix::new(Ipv4Addr::from(addr & mask32(len)), len)
        })
    }

    fn arb_v6_prefix() -> impl Strategy<Value = Prefix> {
        (0u128..4, 0u8..=128).prop_map(|(a, len)| {
            let addr = (0x2001_0db8u128 << 96) | (a << 64) | a;
            Prefix::new(Ipv6Addr::from(addr & mask128(len)), len)
        })
    }

    fn arb_range() -> impl Strategy<Value = PortRange> {
        (0u16..8, 0u16..8).prop_map(|(a, b)| PortRange {
            first: a.min(b),
            last: a.max(b),
        })
    }

    fn arb_ip_match() -> impl Strategy<Value = IpMatch> {
        let v4 = (
            prop::option::of(arb_v4_prefix()),
            prop::option::of(arb_v4_prefix()),
        )
            .prop_map(|(src, dst)| (src, dst, Some(IpFamily::V4)));
        let v6 = (
            prop::option::of(arb_v6_prefix()),
            prop::option::of(arb_v6_prefix()),
        )
            .prop_map(|(src, dst)| (src, dst, Some(IpFamily::V6)));
        let any = Just((None, None, None));
        (
            prop_oneof![v4, v6, any],
            prop::option::of(prop_oneof![Just(6u8), Just(17u8), Just(1u8), Just(58u8)]),
            prop::option::of(arb_range()),
            prop::option::of(arb_range()),
            prop::option::of(0u8..4),
            prop::option::of(0u8..3),
        )
            .prop_map(|((src, dst, family), protocol, sp, dp, dscp, icmp)| {
                let family = if src.is_some() || dst.is_some() {
                    None
                } else {
                    family
                };
                let mut m = IpMatch {
                    family,
                    src,
                    dst,
                    protocol,
                    src_port: sp,
                    dst_port: dp,
                    dscp,
                    icmp_type: None,
                };
                // Keep the generated rule valid: ports only with a transport protocol, ICMP
                // types only with the family's ICMP.
                if matches!(protocol, Some(1) | Some(58)) {
                    m.src_port = None;
                    m.dst_port = None;
                    let fam = ip_family_of(&m);
                    if (fam == Some(IpFamily::V4) && protocol == Some(1))
                        || (fam == Some(IpFamily::V6) && protocol == Some(58))
                    {
                        m.icmp_type = icmp;
                    }
                }
                m
            })
    }

    fn arb_vid() -> impl Strategy<Value = VidMatch> {
        prop_oneof![
            (0u16..8, 0u16..8).prop_map(|(v, m)| VidMatch::Masked {
                value: v & m,
                mask: m
            }),
            (0u16..8, 0u16..8).prop_map(|(a, b)| VidMatch::Range {
                first: a.min(b),
                last: a.max(b)
            }),
        ]
    }

    fn arb_mac_match() -> impl Strategy<Value = MacMatch> {
        (
            prop::option::of((0u8..4, any::<bool>())),
            prop::option::of(prop_oneof![
                Just(0x0800u16),
                Just(0x86ddu16),
                Just(0x0806u16)
            ]),
            prop::option::of(arb_vid()),
            prop::option::of(arb_vid()),
        )
            .prop_map(|(src, ethertype, outer_vid, inner_vid)| MacMatch {
                src: src.map(|(last, exact)| {
                    let mask = if exact {
                        MacAddr([0xff; 6])
                    } else {
                        MacAddr([0xff, 0xff, 0xff, 0xff, 0xff, 0xfe])
                    };
                    MacMask {
                        mac: MacAddr([2, 0, 0, 0, 0, last & mask.0[5]]),
                        mask,
                    }
                }),
                dst: None,
                ethertype,
                outer_vid,
                inner_vid,
            })
    }

    fn arb_rules() -> impl Strategy<Value = Vec<Rule>> {
        arb_rules_up_to(12)
    }

    /// Up to `most` rules, IPv4, IPv6, dual and MAC matches mixed, in shuffled orders.
    fn arb_rules_up_to(most: usize) -> impl Strategy<Value = Vec<Rule>> {
        prop::collection::vec(
            (
                prop::collection::vec(
                    prop_oneof![
                        3 => arb_ip_match().prop_map(Match::Ip),
                        1 => arb_mac_match().prop_map(Match::Mac),
                    ],
                    1..3,
                ),
                arb_action(),
            ),
            0..most,
        )
        .prop_flat_map(|rules| {
            let n = rules.len();
            (
                Just(rules),
                Just((0..n as u32).map(|i| i * 10).collect::<Vec<_>>()).prop_shuffle(),
            )
        })
        .prop_map(|(rules, orders)| {
            rules
                .into_iter()
                .zip(orders)
                .map(|((matches, action), order)| Rule {
                    order,
                    matches,
                    action,
                })
                .collect()
        })
    }

    /// Plain forwards and drops (which the entries say), and actions with a policer or
    /// accounting (which only the actions' line says).
    fn arb_action() -> impl Strategy<Value = RuleAction> {
        (
            any::<bool>(),
            prop::option::weighted(0.3, 0u32..4),
            prop::bool::weighted(0.2),
        )
            .prop_map(|(drop, policer, account)| RuleAction {
                disposition: if drop {
                    Disposition::Drop
                } else {
                    Disposition::Forward
                },
                policer,
                account,
            })
    }

    fn arb_key() -> impl Strategy<Value = PacketKey> {
        (
            prop_oneof![
                Just(None),
                Just(Some(IpFamily::V4)),
                Just(Some(IpFamily::V6))
            ],
            (0u32..4, 0u32..4),
            prop_oneof![Just(6u8), Just(17u8), Just(1u8), Just(58u8), Just(50u8)],
            (0u16..9, 0u16..9, any::<bool>()),
            (0u8..4, 0u8..3, prop::bool::weighted(0.8)),
            (0u8..4, 0u16..9, 0u16..9),
            prop_oneof![Just(0x0800u16), Just(0x86ddu16), Just(0x0806u16)],
        )
            .prop_map(
                |(
                    family,
                    (s, d),
                    protocol,
                    (sp, dp, ports),
                    (dscp, icmp, typed),
                    (mac, ov, iv),
                    et,
                )| {
                    let s4 = 0x0a00_0000u32 | (s << 8) | s;
                    let d4 = 0x0a00_0000u32 | (d << 8) | d;
                    let s6 = (0x2001_0db8u128 << 96) | (u128::from(s) << 64) | u128::from(s);
                    let d6 = (0x2001_0db8u128 << 96) | (u128::from(d) << 64) | u128::from(d);
                    PacketKey {
                        src_mac: mac_bits(MacAddr([2, 0, 0, 0, 0, mac])),
                        dst_mac: mac_bits(MacAddr([2, 0, 0, 0, 0, 9])),
                        ethertype: et,
                        outer_vid: ov,
                        inner_vid: iv,
                        family,
                        src4: s4,
                        dst4: d4,
                        src6: s6,
                        dst6: d6,
                        transport: Transport::new(
                            protocol,
                            dscp,
                            (ports && matches!(protocol, 6 | 17)).then_some((sp, dp)),
                            // An ICMP packet without its type: a later fragment.
                            (typed && matches!(protocol, 1 | 58)).then_some(icmp),
                        ),
                    }
                },
            )
    }

    /// A frame whose bytes at `l3` are mostly an IPv4 header's edge cases (any IHL, a total
    /// length around the bytes there, fragments, options), some IPv6 or random bytes, under
    /// an EtherType that is mostly IPv4 or IPv6; and the offset of its network header,
    /// sometimes past its end.
    fn arb_frame() -> impl Strategy<Value = (Vec<u8>, u16, usize)> {
        (
            proptest::collection::vec(any::<u8>(), 0..120),
            prop_oneof![
                4 => Just(crate::wire::EtherType::IPV4),
                1 => Just(crate::wire::EtherType::IPV6),
                1 => any::<u16>(),
            ],
            0usize..40,
            prop_oneof![3 => Just(4u8), 1 => Just(6u8), 1 => 0u8..16],
            0u8..16,
            // The total length: relative to the bytes there (0: exactly them), or any.
            prop_oneof![
                2 => Just(Ok(0i32)),
                2 => (-8i32..8).prop_map(Ok),
                1 => any::<u16>().prop_map(Err),
            ],
            // Flags and fragment offset: none, DF, MF, each offset bit alone, any.
            prop_oneof![
                2 => Just(0u16),
                1 => Just(0x4000u16),
                1 => Just(0x2000u16),
                2 => (0u32..13).prop_map(|bit| 1u16 << bit),
                1 => any::<u16>(),
            ],
            prop_oneof![
                Just(ip_protocol::TCP),
                Just(ip_protocol::UDP),
                Just(132u8),
                Just(ip_protocol::ICMP),
                Just(ip_protocol::ICMPV6),
                any::<u8>(),
            ],
        )
            .prop_map(
                |(mut frame, ethertype, l3, version, ihl, total, flags_frag, protocol)| {
                    if let Some(ip) = frame.get_mut(l3..) {
                        let room = ip.len();
                        if let Some(b) = ip.get_mut(0) {
                            *b = (version << 4) | ihl;
                        }
                        let total_len = total.map_or_else(
                            |any| any,
                            |relative| (room as i32 + relative).clamp(0, 0xffff) as u16,
                        );
                        for (at, byte) in [
                            (2, total_len.to_be_bytes()[0]),
                            (3, total_len.to_be_bytes()[1]),
                            (6, flags_frag.to_be_bytes()[0]),
                            (7, flags_frag.to_be_bytes()[1]),
                            (9, protocol),
                        ] {
                            if let Some(b) = ip.get_mut(at) {
                                *b = byte;
                            }
                        }
                    }
                    (frame, ethertype, l3)
                },
            )
    }

    fn arb_field() -> impl Strategy<Value = SummaryField> {
        prop::sample::select(SummaryField::ALL.to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// Whatever field the summaries compare, the summarised scan finds the entry the
        /// plain first-match scan over the same entries finds, and the set classifies as the
        /// reference: summaries only ever rule entries out.
        #[test]
        fn summarised_scan_matches_the_plain_first_match_scan(
            rules in arb_rules(),
            keys in prop::collection::vec(arb_key(), 1..24),
            field in arb_field(),
            default in arb_action(),
        ) {
            let set = compile_summarised(&rules, default, |_| field).unwrap();
            for key in &keys {
                if key.family == Some(IpFamily::V4) {
                    let plain = set.compiled.v4().iter().find(|e| e.matches(key));
                    prop_assert_eq!(set.v4_scan(None).first_match(key, None), plain);
                }
                let hit = set.classify(key);
                let expected = reference_classify(&rules, key);
                prop_assert_eq!(
                    hit.rule.and_then(|i| set.order(i)),
                    expected.map(|rule| rule.order)
                );
                prop_assert_eq!(hit.action, expected.map_or(default, |rule| rule.action));
                // The scan started where the prefetch found the first candidate (past the
                // last entry when it found none) hits the same.
                let candidate = set.prefetch_candidates(key).unwrap_or(usize::MAX);
                prop_assert_eq!(set.classify_from(key, Some(candidate)), hit);
            }
        }

        /// The summary's compare (SSE2 on x86_64) names the lanes the portable loop names,
        /// for lanes that match the word, lanes one bit off it, closed lanes and any others.
        #[test]
        fn the_summary_compare_names_the_portable_form_s_lanes(
            word in any::<u32>(),
            lanes in prop::array::uniform8((any::<u32>(), any::<u32>(), 0..4u8, 0..32u32)),
        ) {
            let mut summary = V4Summary::of(SummaryField::default(), &[]);
            for (lane, (value, mask, kind, bit)) in lanes.into_iter().enumerate() {
                (summary.values[lane], summary.masks[lane]) = match kind {
                    0 => (word & mask, mask),
                    1 => ((word ^ (1 << bit)) & mask, mask),
                    2 => V4Summary::CLOSED,
                    _ => (value, mask),
                };
            }
            prop_assert_eq!(summary.candidates(word), summary.candidates_portable(word));
        }

        /// The ports' compare (SSE2 on x86_64) gives the portable form's excess, and either is
        /// zero exactly when both ports are inside their ranges: for ranges around the ports
        /// (the port at either end, one past it, an empty range) and any others.
        #[test]
        fn the_ports_compare_is_the_portable_form_and_a_range_test(
            ports in (any::<u16>(), any::<u16>()),
            ranges in prop::array::uniform2((any::<u16>(), any::<u16>(), -2i32..3, 0i32..3, any::<bool>())),
        ) {
            let (src, dst) = ports;
            let range = |port: u16, (a, b, below, width, near): (u16, u16, i32, i32, bool)| {
                if near {
                    let first = (i32::from(port) + below).clamp(0, 0xffff);
                    let last = (first + width).clamp(0, 0xffff);
                    (first as u16, last as u16)
                } else {
                    (a, b)
                }
            };
            let (src_first, src_last) = range(src, ranges[0]);
            let (dst_first, dst_last) = range(dst, ranges[1]);
            let l4 = L4::of(
                PortRange { first: src_first, last: src_last },
                PortRange { first: dst_first, last: dst_last },
                [0; 4],
                0,
            );
            prop_assert_eq!(l4.dst_range(), (dst_first, dst_last));
            let word = Transport::new(0, 0, Some(ports), None).ports_word();
            let excess = ports_excess(word, l4.port_bounds);
            prop_assert_eq!(excess, ports_excess_portable(word, l4.port_bounds));
            prop_assert_eq!(
                excess == 0,
                (src_first..=src_last).contains(&src) && (dst_first..=dst_last).contains(&dst)
            );
        }

        /// A set's inline copy of its IPv4 entries, whatever their field, classifies every key
        /// as the set's block does (and the reference), with the candidate its prefetch names
        /// or without one, and so does the set split from it ([`RuleSet::split_inline_v4`]),
        /// whose block keeps everything else; a set has the copy exactly when its IPv4
        /// entries fit in one summary's lanes.
        #[test]
        fn the_inline_copy_classifies_as_the_block(
            rules in arb_rules_up_to(10),
            keys in prop::collection::vec(arb_key(), 1..24),
            field in arb_field(),
            default in arb_action(),
        ) {
            let set = compile_summarised(&rules, default, |_| field).unwrap();
            let inline = set.inline_v4();
            prop_assert_eq!(inline.is_some(), set.compiled.v4().len() <= LANES);
            let Some(inline) = inline else {
                return Ok(());
            };
            // The split set's block: everything but the IPv4 summary and entries.
            let (rest, copy) = set.split_inline_v4().expect("the set has an inline copy");
            prop_assert_eq!(copy, inline);
            let (c, r) = (&set.compiled, &rest.compiled);
            prop_assert!(r.summaries().is_empty() && r.v4().is_empty());
            prop_assert_eq!(
                (r.actions(), r.v6(), r.mac(), r.orders()),
                (c.actions(), c.v6(), c.mac(), c.orders())
            );
            prop_assert_eq!(
                (rest.len(), rest.default_action(), rest.has_mac_rules(), rest.has_ip_rules()),
                (set.len(), set.default_action(), set.has_mac_rules(), set.has_ip_rules())
            );
            prop_assert_eq!(rest.inline_v4(), None);
            let inline = Some(&inline);
            for key in &keys {
                let hit = set.classify(key);
                prop_assert_eq!(hit.rule.and_then(|i| set.order(i)), reference_classify(&rules, key).map(|r| r.order));
                prop_assert_eq!(set.classify_with(inline, key, None), hit);
                prop_assert_eq!(rest.classify_with(inline, key, None), hit);
                let candidate = set.prefetch_candidates_with(inline, key);
                prop_assert_eq!(candidate, set.prefetch_candidates(key));
                prop_assert_eq!(rest.prefetch_candidates_with(inline, key), candidate);
                let from = Some(candidate.unwrap_or(usize::MAX));
                prop_assert_eq!(set.classify_with(inline, key, from), hit);
                prop_assert_eq!(rest.classify_with(inline, key, from), hit);
            }
        }

        /// [`RuleSet::candidate_hit`] answers only what the full scan ([`RuleSet::first_hit`],
        /// started at no candidate) answers, and answers whenever its case holds (an IPv4
        /// key, no MAC rules, a prefetched candidate that matches): from the block, from an
        /// inline copy, and from the set split from it.
        #[test]
        fn the_candidate_s_hit_is_the_scan_s_hit(
            rules in arb_rules_up_to(12),
            keys in prop::collection::vec(arb_key(), 1..24),
            field in arb_field(),
            default in arb_action(),
        ) {
            let set = compile_summarised(&rules, default, |_| field).unwrap();
            let inline = set.inline_v4();
            let split = set.split_inline_v4();
            let mut views = vec![(&set, None)];
            if let (Some(inline), Some((rest, _))) = (inline.as_ref(), split.as_ref()) {
                views.extend([(&set, Some(inline)), (rest, Some(inline))]);
            }
            for key in &keys {
                for &(view, inline) in &views {
                    let candidate = view.prefetch_candidates_with(inline, key);
                    let answer = view.candidate_hit(inline, key, candidate);
                    let entries = inline.map_or_else(|| view.block_v4().1, |copy| &copy.entries[..]);
                    let case_holds = key.family == Some(IpFamily::V4)
                        && !view.has_mac_rules()
                        && candidate.and_then(|c| entries.get(c)).is_some_and(|e| e.matches(key));
                    prop_assert_eq!(answer != CANDIDATE_MISSED, case_holds);
                    if case_holds {
                        prop_assert_eq!(answer, view.first_hit(inline, key, None));
                    }
                }
            }
        }

        /// The packet path's key reader reads what the field-by-field reference reads, for
        /// any bytes at any offset.
        #[test]
        fn from_frame_reads_what_the_reference_reads(
            (frame, ethertype, l3) in arb_frame(),
            outer_vid in any::<u16>(),
            inner_vid in any::<u16>(),
        ) {
            prop_assert_eq!(
                PacketKey::from_frame(&frame, ethertype, l3, outer_vid, inner_vid),
                reference_key(&frame, ethertype, l3, outer_vid, inner_vid)
            );
        }

        /// Step E writes a packet's key over its ring slot's earlier key: whatever that key
        /// held (another family, other ports, another DSCP), the result is the frame's key.
        #[test]
        fn read_frame_over_an_earlier_key_reads_what_the_reference_reads(
            (earlier, earlier_type, earlier_l3) in arb_frame(),
            (frame, ethertype, l3) in arb_frame(),
            outer_vid in any::<u16>(),
            inner_vid in any::<u16>(),
        ) {
            let mut key =
                PacketKey::from_frame(&earlier, earlier_type, earlier_l3, inner_vid, outer_vid);
            key.read_frame(&frame, ethertype, l3, outer_vid, inner_vid);
            prop_assert_eq!(key, reference_key(&frame, ethertype, l3, outer_vid, inner_vid));
        }

        #[test]
        fn compiled_matches_like_the_reference(
            rules in arb_rules(),
            keys in prop::collection::vec(arb_key(), 1..24),
            default in arb_action(),
        ) {
            let set = compile(&rules, default).unwrap();
            for key in &keys {
                let hit = set.classify(key);
                match reference_classify(&rules, key) {
                    Some(rule) => {
                        prop_assert_eq!(hit.rule.and_then(|i| set.order(i)), Some(rule.order));
                        prop_assert_eq!(hit.action, rule.action);
                    }
                    None => {
                        prop_assert_eq!(hit.rule, None);
                        prop_assert_eq!(hit.action, default);
                    }
                }
            }
        }
    }
}
