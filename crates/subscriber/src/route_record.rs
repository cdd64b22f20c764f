//! The stored record of a route the BGP LEG learnt: the value a store keeps under the route's
//! key ([`crate::store::StoredWrite::Route`]).
//!
//! Two forms exist, and [`decode`] reads both (the first byte tells them apart):
//!
//! - **binary** ([`RouteFormat::Binary`], what the embedded store writes): the route without its
//!   key, which the store's key already holds. A full table push stores every route, and a JSON
//!   record is seven times larger and costs a text conversion per field; the binary one is
//!   27 bytes for a route with one route target and one community.
//!
//!   ```text
//!   version            1 byte    BINARY_VERSION (1); a JSON record starts with `{`
//!   label              4 bytes   big-endian
//!   next-hop length    1 byte    4 or 16
//!   next hop           4 or 16 bytes
//!   route targets      2 bytes   count, big-endian, then per target 9 bytes:
//!                                kind (0 ASN:number, 1 IPv4:number), then the ASN or the
//!                                address and the number, 4 bytes each, big-endian
//!   communities        2 bytes   count, big-endian, then per community 4 bytes, big-endian
//!   ```
//!
//! - **JSON** ([`RouteFormat::Json`], flat text fields, key included): what every store wrote
//!   before the binary form, and what the PostgreSQL store keeps in its `json` column, readable
//!   in a dump of the database.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::learned::{LearnedRoute, RouteAttributes, RouteKey};
use crate::mapping::{Community, RouteDistinguisher};

/// The first byte of a binary record: its version.
pub const BINARY_VERSION: u8 = 1;

const TARGET_AS: u8 = 0;
const TARGET_IP: u8 = 1;

/// How a backend stores route records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteFormat {
    /// The compact binary record (the embedded store).
    Binary,
    /// Flat JSON text with the key's fields (PostgreSQL's `json` column).
    Json,
}

/// Why a route record does not encode or decode.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The record is empty.
    #[error("empty record")]
    Empty,
    /// The first byte is neither a known binary version nor the start of a JSON record.
    #[error("unknown record version {0}")]
    Version(u8),
    /// The record ends before a field it announces.
    #[error("the record ends inside its {0}")]
    Truncated(&'static str),
    /// Bytes follow the last field.
    #[error("{0} bytes after the last field")]
    Trailing(usize),
    /// The next hop is neither 4 nor 16 bytes long.
    #[error("a next hop of {0} bytes")]
    NextHop(u8),
    /// A route target of a kind this version does not have, or an `IPv4:number` whose number
    /// does not fit its 16 bits.
    #[error("a route target of kind {kind} with number {number}")]
    Target {
        /// The kind byte.
        kind: u8,
        /// The number.
        number: u32,
    },
    /// More route targets or communities than a count field holds (no BGP UPDATE carries so
    /// many).
    #[error("{0} {1}, more than a record holds")]
    TooMany(usize, &'static str),
    /// The JSON form does not parse.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The JSON form names another route than the key it is stored under.
    #[error("the record is of route {found}")]
    OtherKey {
        /// The route the record names.
        found: RouteKey,
    },
}

/// Appends the record of `route` in `format` to `out`.
pub fn encode(
    route: &LearnedRoute,
    format: RouteFormat,
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    match format {
        RouteFormat::Json => Ok(serde_json::to_writer(out, route)?),
        RouteFormat::Binary => encode_binary(route, out),
    }
}

fn encode_binary(route: &LearnedRoute, out: &mut Vec<u8>) -> Result<(), RecordError> {
    let attrs = &route.attrs;
    let count = |n: usize, what| u16::try_from(n).map_err(|_| RecordError::TooMany(n, what));
    let (targets, communities) = (
        count(attrs.targets.len(), "route targets")?,
        count(attrs.communities.len(), "communities")?,
    );
    out.reserve(1 + 4 + 17 + 2 + 9 * attrs.targets.len() + 2 + 4 * attrs.communities.len());
    out.push(BINARY_VERSION);
    out.extend_from_slice(&route.label.to_be_bytes());
    match attrs.next_hop {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(16);
            out.extend_from_slice(&a.octets());
        }
    }
    out.extend_from_slice(&targets.to_be_bytes());
    for t in attrs.targets.iter() {
        let (kind, admin, number) = match *t {
            RouteDistinguisher::As { asn, assigned } => (TARGET_AS, asn, assigned),
            RouteDistinguisher::Ip { addr, assigned } => {
                (TARGET_IP, u32::from(addr), u32::from(assigned))
            }
        };
        out.push(kind);
        out.extend_from_slice(&admin.to_be_bytes());
        out.extend_from_slice(&number.to_be_bytes());
    }
    out.extend_from_slice(&communities.to_be_bytes());
    for c in attrs.communities.iter() {
        out.extend_from_slice(&c.0.to_be_bytes());
    }
    Ok(())
}

/// The route stored under `key` as `value`, in either form. Never panics, whatever the bytes.
pub fn decode(key: RouteKey, value: &[u8]) -> Result<LearnedRoute, RecordError> {
    match value.first() {
        None => Err(RecordError::Empty),
        Some(b'{') => {
            let route: LearnedRoute = serde_json::from_slice(value)?;
            if route.key != key {
                return Err(RecordError::OtherKey { found: route.key });
            }
            Ok(route)
        }
        Some(&BINARY_VERSION) => decode_binary(key, &value[1..]),
        Some(&v) => Err(RecordError::Version(v)),
    }
}

fn decode_binary(key: RouteKey, bytes: &[u8]) -> Result<LearnedRoute, RecordError> {
    let mut r = Reader(bytes);
    let label = r.u32("label")?;
    let next_hop = match r.u8("next hop")? {
        4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>("next hop")?)),
        16 => IpAddr::V6(Ipv6Addr::from(r.array::<16>("next hop")?)),
        n => return Err(RecordError::NextHop(n)),
    };
    let n = r.u16("route targets")?;
    let mut targets = Vec::with_capacity(usize::from(n).min(r.0.len() / 9));
    for _ in 0..n {
        let kind = r.u8("route targets")?;
        let admin = r.u32("route targets")?;
        let number = r.u32("route targets")?;
        targets.push(match (kind, u16::try_from(number)) {
            (TARGET_AS, _) => RouteDistinguisher::As {
                asn: admin,
                assigned: number,
            },
            (TARGET_IP, Ok(assigned)) => RouteDistinguisher::Ip {
                addr: Ipv4Addr::from(admin),
                assigned,
            },
            _ => return Err(RecordError::Target { kind, number }),
        });
    }
    let n = r.u16("communities")?;
    let mut communities = Vec::with_capacity(usize::from(n).min(r.0.len() / 4));
    for _ in 0..n {
        communities.push(Community(r.u32("communities")?));
    }
    if !r.0.is_empty() {
        return Err(RecordError::Trailing(r.0.len()));
    }
    Ok(LearnedRoute {
        key,
        label,
        attrs: Arc::new(RouteAttributes::new(next_hop, targets, communities)),
    })
}

/// Takes fields off the front of a record.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], RecordError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(RecordError::Truncated(field))?;
        self.0 = rest;
        Ok(*head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, RecordError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, RecordError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, RecordError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
}

/// The JSON form: flat text fields, key included.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRoute {
    peer: IpAddr,
    rd: u64,
    prefix: String,
    label: u32,
    next_hop: IpAddr,
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    communities: Vec<String>,
}

impl Serialize for LearnedRoute {
    /// The fields of the JSON form, in its order, written straight from the route: no text
    /// field goes through a `String` of its own.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("StoredRoute", 7)?;
        st.serialize_field("peer", &self.key.peer)?;
        st.serialize_field("rd", &self.key.rd)?;
        st.serialize_field("prefix", &AsText(&self.key.prefix))?;
        st.serialize_field("label", &self.label)?;
        st.serialize_field("next_hop", &self.attrs.next_hop)?;
        st.serialize_field("targets", &TextList(&self.attrs.targets))?;
        st.serialize_field("communities", &TextList(&self.attrs.communities))?;
        st.end()
    }
}

/// Serialises a value as its `Display` text.
struct AsText<'a, T>(&'a T);

impl<T: fmt::Display> Serialize for AsText<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

/// Serialises a slice as the list of its elements' `Display` texts.
struct TextList<'a, T>(&'a [T]);

impl<T: fmt::Display> Serialize for TextList<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(AsText))
    }
}

impl<'de> Deserialize<'de> for LearnedRoute {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let r = JsonRoute::deserialize(d)?;
        let targets = r
            .targets
            .iter()
            .map(|t| t.parse().map_err(D::Error::custom))
            .collect::<Result<_, _>>()?;
        let communities = r
            .communities
            .iter()
            .map(|c| c.parse().map_err(D::Error::custom))
            .collect::<Result<_, _>>()?;
        Ok(LearnedRoute {
            key: RouteKey {
                peer: r.peer,
                rd: r.rd,
                prefix: r.prefix.parse().map_err(D::Error::custom)?,
            },
            label: r.label,
            attrs: Arc::new(RouteAttributes::new(r.next_hop, targets, communities)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> [LearnedRoute; 3] {
        [
            LearnedRoute {
                key: RouteKey {
                    peer: "192.0.2.1".parse().unwrap(),
                    rd: (1000u64 << 32) | 7,
                    prefix: "10.1.2.0/24".parse().unwrap(),
                },
                label: 16,
                attrs: Arc::new(RouteAttributes::new(
                    "10.10.0.1".parse().unwrap(),
                    vec!["192.0.2.9:3".parse().unwrap(), "1000:1".parse().unwrap()],
                    vec!["100:1".parse().unwrap(), "65535:65281".parse().unwrap()],
                )),
            },
            LearnedRoute {
                key: RouteKey {
                    peer: "2001:db8::1".parse().unwrap(),
                    rd: 0,
                    prefix: "2001:db8:7::/48".parse().unwrap(),
                },
                label: 1_048_575,
                attrs: Arc::new(RouteAttributes::new(
                    "2001:db8::2".parse().unwrap(),
                    Vec::new(),
                    Vec::new(),
                )),
            },
            LearnedRoute {
                key: RouteKey {
                    peer: "192.0.2.1".parse().unwrap(),
                    rd: 2 << 48 | 4_200_000_000 << 16 | 9,
                    prefix: "0.0.0.0/0".parse().unwrap(),
                },
                label: 3,
                attrs: Arc::new(RouteAttributes::new(
                    "10.10.0.1".parse().unwrap(),
                    vec!["4200000000:9".parse().unwrap()],
                    vec!["100:1".parse().unwrap()],
                )),
            },
        ]
    }

    fn encoded(route: &LearnedRoute, format: RouteFormat) -> Vec<u8> {
        let mut out = Vec::new();
        encode(route, format, &mut out).unwrap();
        out
    }

    #[test]
    fn both_forms_read_back_as_the_route() {
        for route in &routes() {
            for format in [RouteFormat::Binary, RouteFormat::Json] {
                let back = decode(route.key, &encoded(route, format)).unwrap();
                assert_eq!(&back, route, "{format:?}");
            }
        }
    }

    #[test]
    fn the_binary_record_is_the_documented_layout() {
        let route = &routes()[2];
        let mut expected = vec![BINARY_VERSION, 0, 0, 0, 3, 4, 10, 10, 0, 1, 0, 1, TARGET_AS];
        expected.extend_from_slice(&4_200_000_000u32.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 9, 0, 1, 0, 100, 0, 1]);
        assert_eq!(encoded(route, RouteFormat::Binary), expected);
        assert_eq!(expected.len(), 27);
    }

    #[test]
    fn the_json_form_is_what_earlier_versions_wrote() {
        // A record as the store wrote it before the binary form (and as PostgreSQL keeps it).
        let old = br#"{"peer":"192.0.2.1","rd":4294967296007,"prefix":"10.1.2.0/24","label":16,"next_hop":"10.10.0.1","targets":["1000:1","192.0.2.9:3"],"communities":["100:1","65535:65281"]}"#;
        let route = &routes()[0];
        assert_eq!(
            String::from_utf8_lossy(&encoded(route, RouteFormat::Json)),
            String::from_utf8_lossy(old)
        );
        assert_eq!(&decode(route.key, old).unwrap(), route);
    }

    #[test]
    fn damaged_records_are_refused_with_what_is_wrong() {
        let [route, ..] = routes();
        let good = encoded(&route, RouteFormat::Binary);
        let err = |bytes: &[u8]| decode(route.key, bytes).unwrap_err().to_string();
        assert_eq!(err(&[]), "empty record");
        assert_eq!(err(&[2]), "unknown record version 2");
        for cut in 1..good.len() {
            assert!(
                err(&good[..cut]).starts_with("the record ends inside its"),
                "{cut}"
            );
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(err(&long), "1 bytes after the last field");
        let mut hop = good.clone();
        hop[5] = 5;
        assert_eq!(err(&hop), "a next hop of 5 bytes");
        // The first target (canonical order: ASN:number first) of another kind, then an
        // IPv4:number whose number is wider than 16 bits.
        let mut kind = good.clone();
        kind[12] = 7;
        assert_eq!(err(&kind), "a route target of kind 7 with number 1");
        let mut wide = good.clone();
        wide[12] = TARGET_IP;
        wide[17..21].copy_from_slice(&70_000u32.to_be_bytes());
        assert_eq!(err(&wide), "a route target of kind 1 with number 70000");
        let other = RouteKey { rd: 1, ..route.key };
        let json = encoded(&route, RouteFormat::Json);
        assert!(decode(other, &json).is_err());
        assert!(err(b"{\"peer\":1}").contains("invalid type"));
    }
}
