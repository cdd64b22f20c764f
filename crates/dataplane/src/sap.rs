//! Service access points on Ethernet ports: the port encapsulations (null, dot1q, QinQ), the
//! SAP identifiers written as in SR OS (`1/1/4:1214.101`, `x:1214.*`, `x:*.*`, `x:0`), the
//! ingress lookup with the SR OS precedence, and the egress tag rewrite.
//!
//! Precedence on a QinQ port, for a frame with outer tag `o` and inner tag `i` (see the SR OS
//! Services Overview Guide, "SAP lookup precedence order"): `o.i` > `o.*` > `*.i` > `*.*`; a
//! frame with only an outer tag, or inner tag 0, looks for `o.0` first; an untagged frame, or
//! one whose outer tag has VLAN id 0, matches `0.*`, then `*.*`. On a dot1q port: `q` > `*`,
//! and untagged or priority-tagged frames match `0`, then `*`. A null port has one SAP.
//!
//! The *service-delimiting* tags of a SAP are the tags its identifier names: `o.i` delimits
//! two, `o.*` and `o.0` the outer one (and an inner priority tag for `o.0`), `q` one, `0` a
//! priority tag if present. Wildcard-outer SAPs (`*`, `*.*`, `*.i`) and null SAPs delimit
//! nothing: the frame crosses the service with all its tags, and nothing is pushed on egress.
//! Ingress pops the delimiting tags; egress pushes the egress SAP's. Tag translation is the
//! two together, done as one rewrite of the bytes after the MAC addresses.

use crate::cow::CowVec;
use crate::packet::PacketBuf;
use crate::pipeline::PortId;
use crate::wire::{ethernet, vlan, EtherType};
use serde::Serialize;
use std::fmt;

/// How a port frames its SAPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortEncap {
    /// The whole port is one SAP.
    Null,
    /// SAPs are 802.1Q VLAN ids.
    Dot1q,
    /// SAPs are pairs of VLAN ids (outer S-tag, inner C-tag).
    Qinq,
}

/// One position of a SAP identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tag {
    /// `*`: any tag (or none).
    Any,
    /// `0`: no tag, or a priority tag (VLAN id 0).
    Untagged,
    /// A VLAN id, 1–4094.
    Id(u16),
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tag::Any => f.write_str("*"),
            Tag::Untagged => f.write_str("0"),
            Tag::Id(id) => write!(f, "{id}"),
        }
    }
}

/// The encapsulation part of a SAP identifier (after the port and the colon).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SapEncap {
    /// The null-encapsulated port itself.
    Null,
    /// `q`, `0` or `*` on a dot1q port.
    Dot1q {
        /// The tag.
        tag: Tag,
    },
    /// `o.i` on a QinQ port: `o.i`, `o.0`, `o.*`, `0.*`, `*.i` or `*.*`.
    Qinq {
        /// Outer tag.
        outer: Tag,
        /// Inner tag.
        inner: Tag,
    },
}

impl fmt::Display for SapEncap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SapEncap::Null => Ok(()),
            SapEncap::Dot1q { tag } => write!(f, ":{tag}"),
            SapEncap::Qinq { outer, inner } => write!(f, ":{outer}.{inner}"),
        }
    }
}

/// Why a SAP encapsulation text or value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SapEncapError {
    /// Not `q`, `0`, `*`, `o.i` with those parts.
    #[error("invalid SAP encapsulation {0:?}: expected q, 0, * (dot1q) or o.i with o and i each a VLAN id 1-4094, 0 or * (QinQ)")]
    Syntax(String),
    /// A VLAN id outside 1–4094.
    #[error("VLAN id {0} is out of range: expected 1 to 4094")]
    VlanId(u16),
    /// A combination SR OS does not define (e.g. `0.5`, `*.0`).
    #[error("SAP encapsulation {0} is not one of o.i, o.0, o.*, 0.*, *.i, *.*")]
    Combination(String),
    /// The SAP's encapsulation does not fit its port's.
    #[error("SAP encapsulation {sap:?} does not fit a {port:?} port")]
    PortMismatch {
        /// The SAP encapsulation.
        sap: SapEncap,
        /// The port encapsulation.
        port: PortEncap,
    },
}

fn parse_tag(text: &str) -> Result<Tag, SapEncapError> {
    match text {
        "*" => Ok(Tag::Any),
        "0" => Ok(Tag::Untagged),
        _ => {
            let id: u16 = text
                .parse()
                .map_err(|_| SapEncapError::Syntax(text.to_string()))?;
            if !(1..=4094).contains(&id) {
                return Err(SapEncapError::VlanId(id));
            }
            Ok(Tag::Id(id))
        }
    }
}

impl std::str::FromStr for SapEncap {
    type Err = SapEncapError;

    /// Parses the part after the colon: `1214`, `0`, `*`, `1214.101`, `1214.*`, `*.*`; the
    /// empty string is the null encapsulation.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Ok(SapEncap::Null);
        }
        let encap = match text.split_once('.') {
            None => SapEncap::Dot1q {
                tag: parse_tag(text)?,
            },
            Some((outer, inner)) => SapEncap::Qinq {
                outer: parse_tag(outer)?,
                inner: parse_tag(inner)?,
            },
        };
        encap.validate()?;
        Ok(encap)
    }
}

impl SapEncap {
    /// Checks the VLAN ids and that a QinQ pair is one SR OS defines.
    pub fn validate(&self) -> Result<(), SapEncapError> {
        let check = |tag: Tag| match tag {
            Tag::Id(id) if !(1..=4094).contains(&id) => Err(SapEncapError::VlanId(id)),
            _ => Ok(()),
        };
        match *self {
            SapEncap::Null => Ok(()),
            SapEncap::Dot1q { tag } => check(tag),
            SapEncap::Qinq { outer, inner } => {
                check(outer)?;
                check(inner)?;
                match (outer, inner) {
                    (Tag::Id(_), _)
                    | (Tag::Untagged, Tag::Any)
                    | (Tag::Any, Tag::Id(_))
                    | (Tag::Any, Tag::Any) => Ok(()),
                    _ => Err(SapEncapError::Combination(self.to_string())),
                }
            }
        }
    }

    /// Whether a SAP with this encapsulation can live on a port with `port`'s.
    pub fn fits(&self, port: PortEncap) -> bool {
        matches!(
            (self, port),
            (SapEncap::Null, PortEncap::Null)
                | (SapEncap::Dot1q { .. }, PortEncap::Dot1q)
                | (SapEncap::Qinq { .. }, PortEncap::Qinq)
        )
    }

    /// The tags pushed on egress (outermost first): VLAN ids only for explicit positions.
    pub fn egress_tags(&self) -> EgressTags {
        match *self {
            SapEncap::Dot1q { tag: Tag::Id(q) } => EgressTags {
                count: 1,
                vids: [q, 0],
            },
            SapEncap::Qinq {
                outer: Tag::Id(o),
                inner: Tag::Id(i),
            } => EgressTags {
                count: 2,
                vids: [o, i],
            },
            SapEncap::Qinq {
                outer: Tag::Id(o), ..
            } => EgressTags {
                count: 1,
                vids: [o, 0],
            },
            _ => EgressTags::NONE,
        }
    }

    /// The key of this SAP in a port's exact-match table, when it has one (a pattern with a
    /// VLAN id); the singletons (`0`, `*`, `0.*`, `*.*`, null) live in [`PortSaps`].
    pub fn exact_key(&self, port: PortId) -> Option<u64> {
        let (kind, outer, inner) = match *self {
            SapEncap::Dot1q { tag: Tag::Id(q) } => (KIND_DOT1Q, q, 0),
            SapEncap::Qinq {
                outer: Tag::Id(o),
                inner: Tag::Id(i),
            } => (KIND_QINQ_EXACT, o, i),
            SapEncap::Qinq {
                outer: Tag::Id(o),
                inner: Tag::Untagged,
            } => (KIND_QINQ_O0, o, 0),
            SapEncap::Qinq {
                outer: Tag::Id(o),
                inner: Tag::Any,
            } => (KIND_QINQ_OANY, o, 0),
            SapEncap::Qinq {
                outer: Tag::Any,
                inner: Tag::Id(i),
            } => (KIND_QINQ_ANYI, 0, i),
            _ => return None,
        };
        Some(lookup_key(port, kind, outer, inner))
    }
}

const KIND_DOT1Q: u64 = 1;
const KIND_QINQ_EXACT: u64 = 2;
const KIND_QINQ_O0: u64 = 3;
const KIND_QINQ_OANY: u64 = 4;
const KIND_QINQ_ANYI: u64 = 5;

#[inline]
fn lookup_key(port: PortId, kind: u64, outer: u16, inner: u16) -> u64 {
    (u64::from(port) << 32)
        | (kind << 24)
        | (u64::from(outer & 0xfff) << 12)
        | u64::from(inner & 0xfff)
}

/// A SAP identifier: a port and an encapsulation (`1/1/4:1214.101` once the port has a name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SapId {
    /// Port.
    pub port: PortId,
    /// Encapsulation.
    pub encap: SapEncap,
}

impl SapId {
    /// The identifier as SR OS writes it, with the port's name.
    pub fn display<'a>(&'a self, port_name: &'a str) -> impl fmt::Display + 'a {
        struct Show<'a>(&'a str, &'a SapEncap);
        impl fmt::Display for Show<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", self.0, self.1)
            }
        }
        Show(port_name, &self.encap)
    }
}

/// Tags a SAP pushes on egress: `count` of them, VLAN ids outermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EgressTags {
    /// 0, 1 or 2.
    pub count: u8,
    /// VLAN ids (outer, inner).
    pub vids: [u16; 2],
}

impl EgressTags {
    /// Nothing pushed.
    pub const NONE: EgressTags = EgressTags {
        count: 0,
        vids: [0, 0],
    };

    /// Bytes the tags take.
    pub fn len(&self) -> usize {
        usize::from(self.count) * vlan::HEADER_LEN
    }

    /// True when nothing is pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The SAPs of one port that are not in the exact-match table, and how the port tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSaps {
    /// Encapsulation.
    pub encap: PortEncap,
    /// TPID of the outer (dot1q: the only) tag, as configured: 0x8100 or 0x88a8.
    pub outer_tpid: u16,
    /// Null SAP, `0` (dot1q) or `0.*` (QinQ).
    pub untagged: Option<u32>,
    /// `*` (dot1q) or `*.*` (QinQ).
    pub any: Option<u32>,
    /// Whether any `*.i` SAP exists (saves a probe when none does).
    pub has_any_inner: bool,
    /// Whether any `o.0` SAP exists.
    pub has_outer_zero: bool,
    /// Whether any `o.*` SAP exists.
    pub has_outer_any: bool,
}

impl PortSaps {
    /// A port with no SAP yet.
    pub fn new(encap: PortEncap, outer_tpid: u16) -> Self {
        Self {
            encap,
            outer_tpid,
            untagged: None,
            any: None,
            has_any_inner: false,
            has_outer_zero: false,
            has_outer_any: false,
        }
    }
}

/// The tags at the front of a frame, as far as SAP matching needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameTags {
    /// Outer tag (TCI) when its TPID is the port's.
    pub outer: Option<u16>,
    /// Inner tag (TCI) when an outer one exists and the next TPID is 0x8100 (QinQ only).
    pub inner: Option<u16>,
}

/// Why a frame's tags could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

/// Reads the tags of `frame` for a port tagging with `ports`' TPIDs. A TPID announcing a tag
/// with fewer than four bytes after it is [`Truncated`].
#[inline]
pub fn read_tags(frame: &[u8], ports: &PortSaps) -> Result<FrameTags, Truncated> {
    if frame.len() < ethernet::HEADER_LEN {
        return Err(Truncated);
    }
    let be16 = |at: usize| match frame.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(Truncated),
    };
    let mut tags = FrameTags::default();
    if ports.encap == PortEncap::Null {
        return Ok(tags);
    }
    if be16(12)? == ports.outer_tpid {
        tags.outer = Some(be16(14)?);
        be16(16)?;
        if ports.encap == PortEncap::Qinq && be16(16)? == EtherType::VLAN {
            tags.inner = Some(be16(18)?);
            be16(20)?;
        }
    }
    Ok(tags)
}

/// The SAP a frame belongs to, and how many tag bytes after the MAC addresses delimit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SapMatch {
    /// SAP slot.
    pub sap: u32,
    /// Bytes of service-delimiting tags at offset 12 (0, 4 or 8).
    pub strip: u8,
    /// PCP and DEI of the outer delimiting tag (the top 4 bits of its TCI), kept for the
    /// tags pushed on egress; 0 when it had none.
    pub priority: u8,
}

/// Finds the SAP of a frame with `tags` on a port, by the SR OS precedence. `exact` probes
/// the exact-match table with a key made by [`SapEncap::exact_key`]. Always inlined: the
/// service stage's pipeline is compiled twice (with and without filters' steps), and with
/// two callers LLVM called it out of line (~9 instructions a packet more).
#[inline(always)]
pub fn lookup(
    port: PortId,
    ports: &PortSaps,
    tags: FrameTags,
    exact: impl Fn(u64) -> Option<u32>,
) -> Option<SapMatch> {
    let prio = |tci: u16| (tci >> 12) as u8;
    match ports.encap {
        PortEncap::Null => ports.untagged.map(|sap| SapMatch {
            sap,
            strip: 0,
            priority: 0,
        }),
        PortEncap::Dot1q => match tags.outer {
            Some(tci) if tci & 0xfff != 0 => {
                exact(lookup_key(port, KIND_DOT1Q, tci, 0)).map(|sap| SapMatch {
                    sap,
                    strip: 4,
                    priority: prio(tci),
                })
            }
            Some(tci) => ports.untagged.map(|sap| SapMatch {
                sap,
                strip: 4,
                priority: prio(tci),
            }),
            None => ports.untagged.map(|sap| SapMatch {
                sap,
                strip: 0,
                priority: 0,
            }),
        }
        .or(ports.any.map(|sap| SapMatch {
            sap,
            strip: 0,
            priority: 0,
        })),
        PortEncap::Qinq => {
            let found = match (tags.outer, tags.inner) {
                (Some(o), inner) if o & 0xfff != 0 => {
                    let p = prio(o);
                    let inner_vid = inner.map(|i| i & 0xfff).unwrap_or(0);
                    let exact_hit = if inner_vid != 0 {
                        exact(lookup_key(port, KIND_QINQ_EXACT, o, inner_vid)).map(|sap| SapMatch {
                            sap,
                            strip: 8,
                            priority: p,
                        })
                    } else if ports.has_outer_zero {
                        exact(lookup_key(port, KIND_QINQ_O0, o, 0)).map(|sap| SapMatch {
                            sap,
                            strip: if inner.is_some() { 8 } else { 4 },
                            priority: p,
                        })
                    } else {
                        None
                    };
                    exact_hit
                        .or_else(|| {
                            if ports.has_outer_any {
                                exact(lookup_key(port, KIND_QINQ_OANY, o, 0)).map(|sap| SapMatch {
                                    sap,
                                    strip: 4,
                                    priority: p,
                                })
                            } else {
                                None
                            }
                        })
                        .or_else(|| {
                            if ports.has_any_inner && inner_vid != 0 {
                                exact(lookup_key(port, KIND_QINQ_ANYI, 0, inner_vid)).map(|sap| {
                                    SapMatch {
                                        sap,
                                        strip: 0,
                                        priority: 0,
                                    }
                                })
                            } else {
                                None
                            }
                        })
                }
                (Some(o), _) => ports.untagged.map(|sap| SapMatch {
                    sap,
                    strip: 4,
                    priority: prio(o),
                }),
                (None, _) => ports.untagged.map(|sap| SapMatch {
                    sap,
                    strip: 0,
                    priority: 0,
                }),
            };
            found.or(ports.any.map(|sap| SapMatch {
                sap,
                strip: 0,
                priority: 0,
            }))
        }
    }
}

/// Replaces the `strip` bytes of delimiting tags after the MAC addresses by `tags` (outer TPID
/// `outer_tpid`, inner 0x8100), with PCP/DEI `priority` (the top 4 bits of a TCI) on each.
/// False when the buffer has no room (the caller drops the packet).
#[inline]
pub fn retag(
    buf: &mut PacketBuf,
    strip: usize,
    tags: &EgressTags,
    outer_tpid: u16,
    priority: u8,
) -> bool {
    WireTags::new(tags, outer_tpid).write(buf, strip, priority)
}

/// A SAP's egress tags as they go on the wire (TPIDs and VLAN ids, PCP/DEI zero), built once
/// when the SAP is installed so that retagging a frame is one gap move and one store, not a
/// loop over the tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WireTags {
    /// The tags' bytes, outermost first; only the first `len` count.
    bytes: [u8; 2 * vlan::HEADER_LEN],
    /// 0, 4 or 8.
    len: u8,
}

impl WireTags {
    /// No tags.
    pub const NONE: WireTags = WireTags {
        bytes: [0; 2 * vlan::HEADER_LEN],
        len: 0,
    };

    /// `tags` with outer TPID `outer_tpid` and 0x8100 inside (at most two tags).
    pub fn new(tags: &EgressTags, outer_tpid: u16) -> Self {
        let count = usize::from(tags.count.min(2));
        let mut bytes = [0; 2 * vlan::HEADER_LEN];
        for (i, chunk) in bytes
            .chunks_exact_mut(vlan::HEADER_LEN)
            .take(count)
            .enumerate()
        {
            let tpid = if i == 0 { outer_tpid } else { EtherType::VLAN };
            chunk[..2].copy_from_slice(&tpid.to_be_bytes());
            chunk[2..].copy_from_slice(&(tags.vids[i] & 0xfff).to_be_bytes());
        }
        Self {
            bytes,
            len: (count * vlan::HEADER_LEN) as u8,
        }
    }

    /// Bytes the tags take.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True when there is no tag.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Replaces the `strip` bytes of delimiting tags after the MAC addresses by these tags,
    /// with PCP/DEI `priority` (the top 4 bits of a TCI) on each. False when the buffer has no
    /// room (the caller drops the packet).
    #[inline(always)]
    pub fn write(&self, buf: &mut PacketBuf, strip: usize, priority: u8) -> bool {
        let push = self.len();
        let ok = match push.cmp(&strip) {
            std::cmp::Ordering::Greater => buf.insert_gap(12, push - strip),
            std::cmp::Ordering::Less => buf.remove_gap(12, strip - push),
            std::cmp::Ordering::Equal => true,
        };
        if !ok {
            return false;
        }
        // The priority goes into the high nibble of each TCI's first byte (bytes 2 and 6),
        // set in one word: set byte by byte, LLVM stored the outer tag as three stores (2, 1
        // and 1 bytes) instead of one.
        let prio = u64::from((priority & 0xf) << 4);
        let bytes = (u64::from_le_bytes(self.bytes) | prio << 16 | prio << 48).to_le_bytes();
        let frame = buf.as_mut_slice();
        // Fixed-size stores, one per tag: a copy of `push` bytes would be a call to `memcpy`
        // (and with a 4-byte and an 8-byte copy in two arms, LLVM makes them that call).
        if push == 0 {
            return true;
        }
        let Some(outer) = frame.get_mut(12..16) else {
            return false;
        };
        outer.copy_from_slice(&bytes[..4]);
        push == 4
            || frame
                .get_mut(16..20)
                .map(|inner| inner.copy_from_slice(&bytes[4..]))
                .is_some()
    }
}

/// The exact-match SAP table of every port: [`SapEncap::exact_key`] → SAP slot. Open
/// addressing with linear probing and backward-shift deletion, at most half full, in 8-byte
/// slots (eight to a cache line): a lookup reads one line, which [`SapIndex::prefetch`] can
/// fetch ahead, and the table is half the size 16-byte slots made it (4 MB instead of 8 at
/// 200 000 SAPs), so more of it stays in the last-level cache beside the SAP records.
///
/// A key (43 significant bits: port, kind, two VLAN ids) is hashed by a bijection of the
/// 43-bit space; the top bits of the hash are the key's home slot, and a slot keeps the rest
/// of the hash (its *remainder*) with its distance from home, so home and remainder give the
/// whole hash back and the key is matched exactly, with no second read to confirm it. The
/// slots are kept in copy-on-write chunks: a clone (each service snapshot holds one) copies
/// only the chunk pointers, and a change then copies only the chunks it writes.
#[derive(Debug, Clone, Default)]
pub struct SapIndex {
    slots: CowVec<IndexSlot, INDEX_CHUNK>,
    len: usize,
}

/// Slots per shared chunk of a [`SapIndex`] (64 KiB; see `service::tables::CHUNK`).
const INDEX_CHUNK: usize = 8192;

/// Bits of a packed key: port (16), kind (3), outer and inner VLAN ids (12 each).
const KEY_BITS: u32 = 43;
const KEY_MASK: u64 = (1 << KEY_BITS) - 1;
/// Odd, so that multiplying by it modulo 2^43 is a bijection (the golden ratio's bits).
const KEY_MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15 & KEY_MASK;

/// One slot: `value` (the SAP slot, 24 bits), distance from home + 1 (9 bits; 0 = empty)
/// and the hash's remainder (31 bits: 43 bits of hash less the at least 13 of the home).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(transparent)]
struct IndexSlot(u64);

const VALUE_BITS: u32 = 24;
const DISTANCE_BITS: u32 = 9;
/// Farthest a key may sit from its home; a longer run grows the table (at half load a run
/// this long does not happen with a mixing hash, but growing keeps the encoding exact).
const MAX_DISTANCE: usize = (1 << DISTANCE_BITS) - 2;

impl IndexSlot {
    fn new(value: u32, distance: usize, remainder: u64) -> Self {
        Self(
            u64::from(value)
                | ((distance as u64 + 1) << VALUE_BITS)
                | (remainder << (VALUE_BITS + DISTANCE_BITS)),
        )
    }

    #[inline]
    fn is_empty(self) -> bool {
        self.0 == 0
    }

    #[inline]
    fn value(self) -> u32 {
        (self.0 & ((1 << VALUE_BITS) - 1)) as u32
    }

    /// Distance from home; only for a full slot.
    #[inline]
    fn distance(self) -> usize {
        (((self.0 >> VALUE_BITS) & ((1 << DISTANCE_BITS) - 1)) as usize).wrapping_sub(1)
    }

    #[inline]
    fn remainder(self) -> u64 {
        self.0 >> (VALUE_BITS + DISTANCE_BITS)
    }

    /// The slot with the same key and value `distance` from home.
    fn moved(self, distance: usize) -> Self {
        Self::new(self.value(), distance, self.remainder())
    }
}

/// The 43-bit hash of a key [`lookup_key`] makes, or `None` for a key it cannot make (key 0
/// hashes to 0 here, the hash of no stored key: `insert` refuses it).
#[inline]
fn key_hash(key: u64) -> Option<u64> {
    // `lookup_key`'s layout: port in bits 32..48, kind (1..=5) in 24..27, VLAN ids below.
    if key & 0xffff_0000_f800_0000 != 0 {
        return None;
    }
    let packed = ((key >> 32) << 27) | (key & 0x07ff_ffff);
    Some(packed.wrapping_mul(KEY_MULTIPLIER) & KEY_MASK)
}

impl SapIndex {
    /// Entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bits of the home slot in a hash (the table's size is a power of two, at least
    /// `INDEX_CHUNK`).
    #[inline]
    fn home_bits(&self) -> u32 {
        self.slots.len().trailing_zeros()
    }

    /// Home slot and remainder of `hash`.
    #[inline]
    fn split(&self, hash: u64) -> (usize, u64) {
        let rest = KEY_BITS - self.home_bits();
        ((hash >> rest) as usize, hash & ((1 << rest) - 1))
    }

    /// Home slot of the key in slot `i`, a full slot.
    #[inline]
    fn home_of(&self, i: usize, slot: IndexSlot) -> usize {
        i.wrapping_sub(slot.distance()) & (self.slots.len() - 1)
    }

    /// Position of the slot holding `hash`, or of the empty slot its probe run ends at.
    #[inline]
    fn find(&self, hash: u64) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let (home, remainder) = self.split(hash);
        // The slot's bits above its value if it holds `hash` at home (plus the distance
        // further on): one comparison a probe.
        let at_home = (remainder << DISTANCE_BITS) | 1;
        for distance in 0..=MAX_DISTANCE {
            let i = (home + distance) & mask;
            let Some(&slot) = self.slots.get(i) else {
                return Err(i);
            };
            if slot.0 >> VALUE_BITS == at_home + distance as u64 {
                return Ok(i);
            }
            if slot.is_empty() {
                return Err(i);
            }
        }
        // Not there (no key sits farther from home); `insert` grows the table rather than
        // place one past this slot.
        Err((home + MAX_DISTANCE + 1) & mask)
    }

    /// The SAP slot of `key`.
    #[inline]
    pub fn get(&self, key: u64) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let i = self.find(key_hash(key)?).ok()?;
        self.slots.get(i).map(|slot| slot.value())
    }

    /// Hints the CPU to fetch the slot a lookup of `key` starts at.
    #[inline]
    pub fn prefetch(&self, key: u64) {
        if let (false, Some(hash)) = (self.slots.is_empty(), key_hash(key)) {
            self.slots.prefetch(self.split(hash).0);
        }
    }

    /// Adds or replaces `key` (a key [`SapEncap::exact_key`] makes, with a SAP slot up to
    /// `fdb::MAX_SAP_SLOT`; the tables make no other, and any other is not stored).
    pub fn insert(&mut self, key: u64, value: u32) {
        let Some(hash) = key_hash(key).filter(|_| key != 0) else {
            debug_assert!(false, "{key:#x} is not a SAP lookup key");
            return;
        };
        if value > crate::fdb::MAX_SAP_SLOT {
            debug_assert!(false, "SAP slot {value} out of range");
            return;
        }
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        self.insert_hash(hash, value);
    }

    fn insert_hash(&mut self, hash: u64, value: u32) {
        loop {
            let (home, remainder) = self.split(hash);
            let (i, fresh) = match self.find(hash) {
                Ok(i) => (i, false),
                Err(i) => (i, true),
            };
            let distance = i.wrapping_sub(home) & (self.slots.len() - 1);
            if distance > MAX_DISTANCE {
                self.grow();
                continue;
            }
            if fresh {
                self.len += 1;
            }
            if let Some(slot) = self.slots.get_mut(i) {
                *slot = IndexSlot::new(value, distance, remainder);
            }
            return;
        }
    }

    fn grow(&mut self) {
        let len = (self.slots.len() * 2).max(INDEX_CHUNK);
        let old = std::mem::replace(&mut self.slots, CowVec::with_len(len));
        // Only read when `old` has slots (its length then a power of two ≥ `INDEX_CHUNK`).
        let old_rest = KEY_BITS.wrapping_sub(old.len().trailing_zeros());
        let old_mask = old.len().wrapping_sub(1);
        self.len = 0;
        for (i, slot) in old.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
            let home = (i.wrapping_sub(slot.distance()) & old_mask) as u64;
            self.insert_hash((home << old_rest) | slot.remainder(), slot.value());
        }
    }

    /// Chunks of slots.
    #[cfg(test)]
    pub(crate) fn chunk_count(&self) -> usize {
        self.slots.len() / INDEX_CHUNK
    }

    /// Chunks of slots `self` shares with `other`.
    #[cfg(test)]
    pub(crate) fn shared_chunks(&self, other: &Self) -> usize {
        (0..self.slots.len())
            .step_by(INDEX_CHUNK)
            .filter(|i| self.slots.shares_chunk(&other.slots, *i))
            .count()
    }

    /// Removes `key`, shifting back the rest of its probe run.
    pub fn remove(&mut self, key: u64) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mut i = self.find(key_hash(key)?).ok()?;
        let value = self.slots.get(i)?.value();
        let mask = self.slots.len() - 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let Some(&next) = self.slots.get(j) else {
                break;
            };
            if next.is_empty() {
                break;
            }
            let home = self.home_of(j, next);
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.slots.set(i, next.moved(i.wrapping_sub(home) & mask));
                i = j;
            }
        }
        self.slots.set(i, IndexSlot::default());
        self.len -= 1;
        Some(value)
    }
}

/// The exact-match key a frame with `tags` looks up first on a port (the most specific
/// pattern it can match), for prefetching.
#[inline]
pub fn first_key(port: PortId, ports: &PortSaps, tags: FrameTags) -> Option<u64> {
    match (ports.encap, tags.outer, tags.inner) {
        (PortEncap::Dot1q, Some(tci), _) if tci & 0xfff != 0 => {
            Some(lookup_key(port, KIND_DOT1Q, tci, 0))
        }
        (PortEncap::Qinq, Some(o), Some(i)) if o & 0xfff != 0 && i & 0xfff != 0 => {
            Some(lookup_key(port, KIND_QINQ_EXACT, o, i & 0xfff))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn frame(tags: &[(u16, u16)]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        for (tpid, tci) in tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&EtherType::IPV4.to_be_bytes());
        f.extend_from_slice(&[0x45; 20]);
        f
    }

    struct Port {
        saps: PortSaps,
        exact: HashMap<u64, u32>,
    }

    impl Port {
        fn new(encap: PortEncap, tpid: u16, saps: &[(&str, u32)]) -> Self {
            let mut port = Port {
                saps: PortSaps::new(encap, tpid),
                exact: HashMap::new(),
            };
            for (text, slot) in saps {
                let encap: SapEncap = text.parse().unwrap();
                match encap.exact_key(7) {
                    Some(key) => {
                        port.exact.insert(key, *slot);
                    }
                    None => match encap {
                        SapEncap::Dot1q { tag: Tag::Any }
                        | SapEncap::Qinq {
                            outer: Tag::Any,
                            inner: Tag::Any,
                        } => port.saps.any = Some(*slot),
                        _ => port.saps.untagged = Some(*slot),
                    },
                }
                match encap {
                    SapEncap::Qinq {
                        outer: Tag::Any,
                        inner: Tag::Id(_),
                    } => port.saps.has_any_inner = true,
                    SapEncap::Qinq {
                        outer: Tag::Id(_),
                        inner: Tag::Untagged,
                    } => port.saps.has_outer_zero = true,
                    SapEncap::Qinq {
                        outer: Tag::Id(_),
                        inner: Tag::Any,
                    } => port.saps.has_outer_any = true,
                    _ => {}
                }
            }
            port
        }

        fn find(&self, tags: &[(u16, u16)]) -> Option<(u32, u8)> {
            let f = frame(tags);
            let t = read_tags(&f, &self.saps).ok()?;
            lookup(7, &self.saps, t, |k| self.exact.get(&k).copied()).map(|m| (m.sap, m.strip))
        }
    }

    const Q: u16 = 0x8100;
    const S: u16 = 0x88a8;

    #[test]
    fn parses_and_prints_sr_os_identifiers() {
        for text in [
            "1214.101", "1214.*", "*.*", "0.*", "*.7", "5.0", "100", "0", "*",
        ] {
            let encap: SapEncap = text.parse().unwrap();
            assert_eq!(encap.to_string(), format!(":{text}"));
        }
        let id = SapId {
            port: 3,
            encap: "1214.101".parse().unwrap(),
        };
        assert_eq!(id.display("1/1/4").to_string(), "1/1/4:1214.101");
        assert_eq!("4095".parse::<SapEncap>(), Err(SapEncapError::VlanId(4095)));
        assert!(matches!(
            "0.5".parse::<SapEncap>(),
            Err(SapEncapError::Combination(_))
        ));
        assert!(matches!(
            "*.0".parse::<SapEncap>(),
            Err(SapEncapError::Combination(_))
        ));
        assert!(matches!(
            "x".parse::<SapEncap>(),
            Err(SapEncapError::Syntax(_))
        ));
        assert_eq!("".parse::<SapEncap>(), Ok(SapEncap::Null));
    }

    #[test]
    fn qinq_precedence() {
        let port = Port::new(
            PortEncap::Qinq,
            S,
            &[
                ("10.20", 1),
                ("10.*", 2),
                ("*.20", 3),
                ("0.*", 4),
                ("*.*", 5),
                ("11.0", 6),
            ],
        );
        assert_eq!(port.find(&[(S, 10), (Q, 20)]), Some((1, 8)));
        assert_eq!(port.find(&[(S, 10), (Q, 21)]), Some((2, 4)));
        assert_eq!(port.find(&[(S, 12), (Q, 20)]), Some((3, 0)));
        assert_eq!(port.find(&[(S, 12), (Q, 21)]), Some((5, 0)));
        assert_eq!(port.find(&[(S, 10)]), Some((2, 4)));
        assert_eq!(port.find(&[(S, 11)]), Some((6, 4)));
        assert_eq!(port.find(&[(S, 11), (Q, 0)]), Some((6, 8)));
        assert_eq!(port.find(&[(S, 11), (Q, 5)]), Some((5, 0)));
        assert_eq!(port.find(&[]), Some((4, 0)));
        assert_eq!(port.find(&[(S, 0), (Q, 9)]), Some((4, 4)));
        // Wrong TPID: an 802.1Q outer tag on an 802.1ad port is not a tag here.
        assert_eq!(port.find(&[(Q, 10), (Q, 20)]), Some((4, 0)));
        let bare = Port::new(PortEncap::Qinq, S, &[("10.20", 1)]);
        assert_eq!(bare.find(&[(S, 10), (Q, 21)]), None);
        assert_eq!(bare.find(&[]), None);
    }

    #[test]
    fn dot1q_and_null_precedence() {
        let port = Port::new(PortEncap::Dot1q, Q, &[("100", 1), ("0", 2), ("*", 3)]);
        assert_eq!(port.find(&[(Q, 100)]), Some((1, 4)));
        assert_eq!(port.find(&[(Q, 0x5000 | 100)]), Some((1, 4))); // PCP set
        assert_eq!(port.find(&[(Q, 101)]), Some((3, 0)));
        assert_eq!(port.find(&[]), Some((2, 0)));
        assert_eq!(port.find(&[(Q, 0)]), Some((2, 4)));
        let null = Port::new(PortEncap::Null, Q, &[("", 9)]);
        assert_eq!(null.find(&[(Q, 100), (Q, 5)]), Some((9, 0)));
    }

    #[test]
    fn truncated_tags_are_reported() {
        let saps = PortSaps::new(PortEncap::Qinq, S);
        let mut f = frame(&[(S, 10), (Q, 20)]);
        f.truncate(19);
        assert_eq!(read_tags(&f, &saps), Err(Truncated));
        assert_eq!(read_tags(&f[..13], &saps), Err(Truncated));
    }

    #[test]
    fn retag_translates_pushes_and_pops() {
        let original = frame(&[(S, 0xa000 | 10), (Q, 20)]);
        let mut buf = PacketBuf::new();
        // Translate 10.20 → 30.40 keeping PCP 5.
        assert!(buf.fill(&original));
        let tags = EgressTags {
            count: 2,
            vids: [30, 40],
        };
        assert!(retag(&mut buf, 8, &tags, S, 0xa));
        assert_eq!(buf.as_slice(), frame(&[(S, 0xa000 | 30), (Q, 0xa000 | 40)]));
        // Pop both.
        assert!(retag(&mut buf, 8, &EgressTags::NONE, S, 0));
        assert_eq!(buf.as_slice(), frame(&[]));
        // Push one dot1q tag.
        let one = EgressTags {
            count: 1,
            vids: [7, 0],
        };
        assert!(retag(&mut buf, 0, &one, Q, 0));
        assert_eq!(buf.as_slice(), frame(&[(Q, 7)]));
        // Pop one of two (o.* egress of a frame that came with two delimiting tags).
        assert!(buf.fill(&original));
        assert!(retag(&mut buf, 8, &one, Q, 0));
        assert_eq!(buf.as_slice(), frame(&[(Q, 7)]));
    }

    proptest::proptest! {
        /// Whatever tags a frame came with and whatever a SAP pushes, the frame leaves with
        /// exactly the SAP's tags (TPIDs, VLAN ids, the arriving priority on each) and its
        /// addresses and payload untouched.
        #[test]
        fn wire_tags_replace_any_delimiting_tags(
            arriving in proptest::collection::vec((proptest::prop_oneof![proptest::strategy::Just(S), proptest::strategy::Just(Q)], 0u16..=0xffff), 0..=2),
            count in 0u8..=2,
            vids in proptest::array::uniform2(0u16..=0xffff),
            outer_tpid in proptest::prop_oneof![proptest::strategy::Just(S), proptest::strategy::Just(Q)],
            priority in 0u8..=0xff,
        ) {
            let mut buf = PacketBuf::new();
            assert!(buf.fill(&frame(&arriving)));
            let tags = EgressTags { count, vids };
            let wire = WireTags::new(&tags, outer_tpid);
            proptest::prop_assert_eq!(wire.len(), tags.len());
            proptest::prop_assert!(wire.write(&mut buf, arriving.len() * 4, priority));
            let prio = u16::from(priority & 0xf) << 12;
            let expected: Vec<(u16, u16)> = (0..usize::from(count))
                .map(|i| {
                    let tpid = if i == 0 { outer_tpid } else { Q };
                    (tpid, prio | (vids[i] & 0xfff))
                })
                .collect();
            proptest::prop_assert_eq!(buf.as_slice(), &frame(&expected)[..]);
        }
    }

    proptest::proptest! {
        /// The packed 8-byte slots against a map, over any key `lookup_key` can make (every
        /// port, kind and VLAN id), with growth, backward-shift deletion across the table's
        /// end and a snapshot (clone) that must keep answering as it was when taken.
        #[test]
        fn packed_sap_index_agrees_with_a_hash_map(
            ops in proptest::collection::vec(
                (0u16..=0xffff, 1u64..=5, 0u16..=0xfff, 0u16..=0xfff, 0u32..=crate::fdb::MAX_SAP_SLOT, 0u8..4),
                1..3_000,
            ),
            few_ports in proptest::bool::ANY,
        ) {
            let mut index = SapIndex::default();
            let mut model = HashMap::new();
            let mut snapshot = None;
            for (n, &(port, kind, outer, inner, value, op)) in ops.iter().enumerate() {
                // Few ports and VLAN ids make long probe runs and many removals of present keys.
                let (port, outer, inner) = if few_ports { (port % 3, outer % 40, inner % 2) } else { (port, outer, inner) };
                let key = lookup_key(port, kind, outer, inner);
                if op == 0 {
                    proptest::prop_assert_eq!(index.remove(key), model.remove(&key));
                } else {
                    index.insert(key, value);
                    model.insert(key, value);
                }
                proptest::prop_assert_eq!(index.len(), model.len());
                proptest::prop_assert_eq!(index.get(key), model.get(&key).copied());
                if n == ops.len() / 2 {
                    snapshot = Some((index.clone(), model.clone()));
                }
            }
            for (key, value) in &model {
                proptest::prop_assert_eq!(index.get(*key), Some(*value));
            }
            if let Some((index, model)) = snapshot {
                for (key, value) in &model {
                    proptest::prop_assert_eq!(index.get(*key), Some(*value));
                }
            }
        }
    }

    #[test]
    fn sap_index_agrees_with_a_hash_map() {
        let mut index = SapIndex::default();
        let mut model = HashMap::new();
        let mut x: u64 = 77;
        for step in 0..50_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = lookup_key(1, 1 + x % 5, (x >> 8) as u16 % 64, 0);
            if x.is_multiple_of(3) {
                assert_eq!(index.remove(key), model.remove(&key));
            } else {
                index.insert(key, step);
                model.insert(key, step);
            }
            assert_eq!(index.len(), model.len());
        }
        for (key, value) in &model {
            assert_eq!(index.get(*key), Some(*value));
        }
        assert_eq!(index.get(lookup_key(2, 1, 1, 0)), None);
    }
}
