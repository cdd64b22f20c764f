//! Network-ID mappings and their text syntax.
//!
//! The forms are the ones the SCMS SM documentation writes:
//!
//! | text | meaning |
//! |---|---|
//! | `10.1.1.7`, `2001:db8::7` | one address |
//! | `10.1.1.0/24`, `2001:db8::/48` | a prefix |
//! | `10.1.1.10-10.1.1.20` | an inclusive address range |
//! | any of the above + `@vpn1` | the same inside VPN `vpn1` |
//! | any of the above + `@100` | inside the VLAN VPN of VLAN-id 100 (created on first use) |
//! | `100:100@vpn1` | a BGP community inside the MPLS/VPN `vpn1` (CE as subscriber: the BGP LEG gives the holder the routes carrying it) |
//! | `1000:1@10.10.10.10` | an MPLS/VPN: RT/RD `1000:1` of the PE whose loopback is `10.10.10.10` |
//!
//! A community and an IPv6 address cannot be confused: IPv6 text has eight groups or a `::`,
//! a community exactly two decimal numbers.
//!
//! Ranges that are not a single prefix are split into the minimal list of prefixes for the
//! longest-prefix-match tables (see [`IpSpec::prefixes`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::name::{validate_name, NameError};

/// Why a mapping text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingParseError {
    /// The text is empty.
    #[error("empty mapping")]
    Empty,
    /// The address part is not an IPv4 or IPv6 address.
    #[error("{0:?} is not an IP address")]
    BadAddress(String),
    /// The prefix length is not a number or too long for the address family.
    #[error("prefix length {0:?} is not valid for this address family")]
    BadPrefixLength(String),
    /// The prefix has bits set beyond its length (`10.1.1.1/24`).
    #[error("{0} has host bits set; write the network address")]
    HostBitsSet(String),
    /// A range mixes IPv4 and IPv6 or ends before it starts.
    #[error("range {0:?} is not an increasing range within one address family")]
    BadRange(String),
    /// The VPN part after `@` is not a valid name.
    #[error("VPN name {name:?}: {source}")]
    BadVpnName {
        /// The refused VPN name.
        name: String,
        /// The rule it breaks.
        source: NameError,
    },
    /// An RT/RD value is not `ASN:number` or `IPv4:number`.
    #[error("{0:?} is not a route target / route distinguisher (ASN:nn or IPv4:nn)")]
    BadRouteDistinguisher(String),
    /// An MPLS/VPN mapping lacks the `@PE-IP` part.
    #[error("{0:?} is not RT/RD@PE-IP")]
    BadMplsVpn(String),
    /// An MPLS label is not a 20-bit number.
    #[error("MPLS label {0:?} is not a number below 2^20")]
    BadLabel(String),
    /// A `community@VPN` network ID without the `@VPN` part.
    #[error("community {0:?} needs the MPLS/VPN it applies to: COMMUNITY@VPN")]
    CommunityWithoutVpn(String),
    /// A community is not two 16-bit decimal numbers.
    #[error("{0:?} is not a BGP community (ASN:VALUE, two numbers 0..=65535)")]
    BadCommunity(String),
}

/// An IP prefix in canonical form (no host bits set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prefix {
    /// IPv4 network address and length 0..=32.
    V4(Ipv4Addr, u8),
    /// IPv6 network address and length 0..=128.
    V6(Ipv6Addr, u8),
}

impl Prefix {
    /// Builds a prefix, refusing host bits and over-long lengths.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, MappingParseError> {
        match addr {
            IpAddr::V4(a) => {
                if len > 32 {
                    return Err(MappingParseError::BadPrefixLength(len.to_string()));
                }
                if u32::from(a) & !mask4(len) != 0 {
                    return Err(MappingParseError::HostBitsSet(format!("{a}/{len}")));
                }
                Ok(Prefix::V4(a, len))
            }
            IpAddr::V6(a) => {
                if len > 128 {
                    return Err(MappingParseError::BadPrefixLength(len.to_string()));
                }
                if u128::from(a) & !mask6(len) != 0 {
                    return Err(MappingParseError::HostBitsSet(format!("{a}/{len}")));
                }
                Ok(Prefix::V6(a, len))
            }
        }
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        match *self {
            Prefix::V4(_, l) | Prefix::V6(_, l) => l,
        }
    }

    /// Whether this prefix is a single address (/32 or /128).
    pub fn is_host(&self) -> bool {
        matches!(*self, Prefix::V4(_, 32) | Prefix::V6(_, 128))
    }

    /// Whether `addr` lies inside the prefix.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (*self, addr) {
            (Prefix::V4(n, l), IpAddr::V4(a)) => u32::from(a) & mask4(l) == u32::from(n),
            (Prefix::V6(n, l), IpAddr::V6(a)) => u128::from(a) & mask6(l) == u128::from(n),
            _ => false,
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Prefix::V4(a, l) => write!(f, "{a}/{l}"),
            Prefix::V6(a, l) => write!(f, "{a}/{l}"),
        }
    }
}

impl FromStr for Prefix {
    type Err = MappingParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match IpSpec::from_str(s)? {
            IpSpec::V4Prefix(a, l) => Ok(Prefix::V4(a, l)),
            IpSpec::V6Prefix(a, l) => Ok(Prefix::V6(a, l)),
            _ => Err(MappingParseError::BadPrefixLength(s.to_owned())),
        }
    }
}

/// Network mask of an IPv4 prefix length (0..=32).
pub(crate) fn mask4(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

/// Network mask of an IPv6 prefix length (0..=128).
pub(crate) fn mask6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

/// The IP part of a mapping: an address, a prefix or an inclusive range.
///
/// Addresses are stored as byte arrays (`Ipv4Addr`/`Ipv6Addr`), so the type has byte alignment
/// and a one-mapping subscriber costs 40 bytes of mapping storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpSpec {
    /// An IPv4 prefix; length 32 is a single address and is written without `/32`.
    V4Prefix(Ipv4Addr, u8),
    /// An IPv6 prefix; length 128 is a single address and is written without `/128`.
    V6Prefix(Ipv6Addr, u8),
    /// An inclusive IPv4 range that is not a single prefix.
    V4Range(Ipv4Addr, Ipv4Addr),
    /// An inclusive IPv6 range that is not a single prefix.
    V6Range(Ipv6Addr, Ipv6Addr),
}

impl IpSpec {
    /// One address.
    pub fn host(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(a) => IpSpec::V4Prefix(a, 32),
            IpAddr::V6(a) => IpSpec::V6Prefix(a, 128),
        }
    }

    /// The minimal list of prefixes covering exactly this spec, in address order.
    pub fn prefixes(&self) -> Vec<Prefix> {
        match *self {
            IpSpec::V4Prefix(a, l) => vec![Prefix::V4(a, l)],
            IpSpec::V6Prefix(a, l) => vec![Prefix::V6(a, l)],
            IpSpec::V4Range(first, last) => split_range(
                u128::from(u32::from(first)),
                u128::from(u32::from(last)),
                32,
            )
            .into_iter()
            .map(|(start, l)| Prefix::V4(Ipv4Addr::from(start as u32), l))
            .collect(),
            IpSpec::V6Range(first, last) => split_range(u128::from(first), u128::from(last), 128)
                .into_iter()
                .map(|(start, l)| Prefix::V6(Ipv6Addr::from(start), l))
                .collect(),
        }
    }

    fn from_range(first: IpAddr, last: IpAddr, text: &str) -> Result<Self, MappingParseError> {
        let bad = || MappingParseError::BadRange(text.to_owned());
        let spec = match (first, last) {
            (IpAddr::V4(f), IpAddr::V4(l)) if f <= l => IpSpec::V4Range(f, l),
            (IpAddr::V6(f), IpAddr::V6(l)) if f <= l => IpSpec::V6Range(f, l),
            _ => return Err(bad()),
        };
        // A range that is exactly one prefix is stored as that prefix: one canonical form.
        let prefixes = spec.prefixes();
        Ok(match prefixes.as_slice() {
            [Prefix::V4(a, l)] => IpSpec::V4Prefix(*a, *l),
            [Prefix::V6(a, l)] => IpSpec::V6Prefix(*a, *l),
            _ => spec,
        })
    }
}

/// Splits `[first, last]` of a `bits`-wide family into aligned blocks `(start, prefix length)`.
fn split_range(first: u128, last: u128, bits: u32) -> Vec<(u128, u8)> {
    let mut out = Vec::new();
    let mut start = first;
    loop {
        // Largest aligned block starting at `start` that does not pass `last`.
        let align = if start == 0 {
            bits
        } else {
            start.trailing_zeros().min(bits)
        };
        let mut size_log = align;
        while size_log > 0 {
            let span = if size_log >= 128 {
                u128::MAX
            } else {
                (1u128 << size_log) - 1
            };
            if start.checked_add(span).is_some_and(|end| end <= last) {
                break;
            }
            size_log -= 1;
        }
        out.push((start, (bits - size_log) as u8));
        let span = if size_log >= 128 {
            u128::MAX
        } else {
            (1u128 << size_log) - 1
        };
        match start.checked_add(span) {
            Some(end) if end < last => start = end + 1,
            _ => break,
        }
    }
    out
}

impl fmt::Display for IpSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IpSpec::V4Prefix(a, 32) => write!(f, "{a}"),
            IpSpec::V6Prefix(a, 128) => write!(f, "{a}"),
            IpSpec::V4Prefix(a, l) => write!(f, "{a}/{l}"),
            IpSpec::V6Prefix(a, l) => write!(f, "{a}/{l}"),
            IpSpec::V4Range(x, y) => write!(f, "{x}-{y}"),
            IpSpec::V6Range(x, y) => write!(f, "{x}-{y}"),
        }
    }
}

fn parse_addr(s: &str) -> Result<IpAddr, MappingParseError> {
    IpAddr::from_str(s).map_err(|_| MappingParseError::BadAddress(s.to_owned()))
}

impl FromStr for IpSpec {
    type Err = MappingParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(MappingParseError::Empty);
        }
        if let Some((first, last)) = s.split_once('-') {
            return IpSpec::from_range(parse_addr(first)?, parse_addr(last)?, s);
        }
        if let Some((addr, len)) = s.split_once('/') {
            let addr = parse_addr(addr)?;
            let len_ok =
                !len.is_empty() && len.len() <= 3 && len.bytes().all(|b| b.is_ascii_digit());
            let len: u8 = len
                .parse()
                .ok()
                .filter(|_| len_ok)
                .ok_or_else(|| MappingParseError::BadPrefixLength(len.to_owned()))?;
            return Ok(match Prefix::new(addr, len)? {
                Prefix::V4(a, l) => IpSpec::V4Prefix(a, l),
                Prefix::V6(a, l) => IpSpec::V6Prefix(a, l),
            });
        }
        Ok(IpSpec::host(parse_addr(s)?))
    }
}

/// A subscriber's network-ID mapping: an IP spec, optionally inside a named VPN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mapping {
    /// The address, prefix or range.
    pub ip: IpSpec,
    /// The VPN name, or `None` for the global (non-VPN) address space.
    pub vpn: Option<Box<str>>,
}

impl Mapping {
    /// A mapping in the global address space.
    pub fn global(ip: IpSpec) -> Self {
        Mapping { ip, vpn: None }
    }

    /// The VLAN-id this mapping's VPN names, if the VPN part is a VLAN-id (1..=4094).
    pub fn vlan_id(&self) -> Option<u16> {
        self.vpn.as_deref().and_then(parse_vlan_id)
    }
}

/// A VPN name that is all digits in 1..=4094 names a VLAN VPN.
pub fn parse_vlan_id(name: &str) -> Option<u16> {
    if name.is_empty() || name.len() > 4 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse::<u16>().ok().filter(|v| (1..=4094).contains(v))
}

impl fmt::Display for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.vpn {
            None => write!(f, "{}", self.ip),
            Some(v) => write!(f, "{}@{v}", self.ip),
        }
    }
}

impl FromStr for Mapping {
    type Err = MappingParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        // An address never holds '@', a VPN name may: the first '@' ends the address.
        let (ip, vpn) = match s.split_once('@') {
            Some((ip, vpn)) => {
                validate_name(vpn).map_err(|source| MappingParseError::BadVpnName {
                    name: vpn.to_owned(),
                    source,
                })?;
                (ip, Some(vpn.into()))
            }
            None => (s, None),
        };
        Ok(Mapping {
            ip: ip.parse()?,
            vpn,
        })
    }
}

impl Serialize for Mapping {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mapping {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A BGP standard community (RFC 1997): `ASN:VALUE`, the high and low 16 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u32);

impl Community {
    /// The community `high:low`.
    pub fn new(high: u16, low: u16) -> Self {
        Community((u32::from(high) << 16) | u32::from(low))
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0 >> 16, self.0 & 0xffff)
    }
}

/// Whether `s` has the shape of a community (two runs of 1..=5 digits around one `:`), which
/// no IP address has.
fn looks_like_community(s: &str) -> bool {
    let digits = |t: &str| (1..=5).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit());
    s.split_once(':')
        .is_some_and(|(a, b)| digits(a) && digits(b))
}

impl FromStr for Community {
    type Err = MappingParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MappingParseError::BadCommunity(s.to_owned());
        let (high, low) = s.split_once(':').ok_or_else(bad)?;
        if !looks_like_community(s) {
            return Err(bad());
        }
        Ok(Community::new(
            high.parse().map_err(|_| bad())?,
            low.parse().map_err(|_| bad())?,
        ))
    }
}

/// A `community@VPN` network ID (CE as subscriber): the BGP LEG gives its holder, as
/// `range@VPN` mappings, the routes of the MPLS/VPN `vpn` that carry `community`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommunityMapping {
    /// The BGP community the CE's routes carry.
    pub community: Community,
    /// The MPLS/VPN name.
    pub vpn: Box<str>,
}

impl fmt::Display for CommunityMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.community, self.vpn)
    }
}

impl FromStr for CommunityMapping {
    type Err = MappingParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<NetworkId>()? {
            NetworkId::Community(c) => Ok(c),
            NetworkId::Ip(_) => Err(MappingParseError::BadCommunity(s.trim().to_owned())),
        }
    }
}

impl Serialize for CommunityMapping {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CommunityMapping {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Any network ID a subscriber holds: an IP mapping or a `community@VPN`. This is what the
/// mapping lists of the API, the CLI and CSV files contain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NetworkId {
    /// `IP`, `IP/len`, `first-last`, optionally `@VPN`.
    Ip(Mapping),
    /// `community@VPN`.
    Community(CommunityMapping),
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkId::Ip(m) => m.fmt(f),
            NetworkId::Community(c) => c.fmt(f),
        }
    }
}

impl FromStr for NetworkId {
    type Err = MappingParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let head = s.split_once('@').map_or(s, |(head, _)| head);
        if !looks_like_community(head) {
            return s.parse().map(NetworkId::Ip);
        }
        let Some((community, vpn)) = s.split_once('@') else {
            return Err(MappingParseError::CommunityWithoutVpn(s.to_owned()));
        };
        validate_name(vpn).map_err(|source| MappingParseError::BadVpnName {
            name: vpn.to_owned(),
            source,
        })?;
        Ok(NetworkId::Community(CommunityMapping {
            community: community.parse()?,
            vpn: vpn.into(),
        }))
    }
}

/// Splits network IDs into the IP mappings and the community mappings, each in order.
pub fn split_network_ids(
    ids: impl IntoIterator<Item = NetworkId>,
) -> (Vec<Mapping>, Vec<CommunityMapping>) {
    let mut ips = Vec::new();
    let mut communities = Vec::new();
    for id in ids {
        match id {
            NetworkId::Ip(m) => ips.push(m),
            NetworkId::Community(c) => communities.push(c),
        }
    }
    (ips, communities)
}

/// A BGP route target / route distinguisher: `ASN:number` or `IPv4:number`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteDistinguisher {
    /// `ASN:assigned` (types 0 and 2; the ASN may be 4 bytes).
    As {
        /// Administrator AS number.
        asn: u32,
        /// Assigned number.
        assigned: u32,
    },
    /// `IPv4:assigned` (type 1).
    Ip {
        /// Administrator IPv4 address.
        addr: Ipv4Addr,
        /// Assigned number.
        assigned: u16,
    },
}

impl RouteDistinguisher {
    /// The value of an 8-byte route distinguisher as carried in BGP (RFC 4364 §4.2, kept as a
    /// big-endian `u64`): types 0 and 2 are `ASN:number`, type 1 `IPv4:number`; other types
    /// have no text form here and match no VPN.
    pub fn from_wire(rd: u64) -> Option<Self> {
        match rd >> 48 {
            0 => Some(RouteDistinguisher::As {
                asn: (rd >> 32) as u16 as u32,
                assigned: rd as u32,
            }),
            1 => Some(RouteDistinguisher::Ip {
                addr: Ipv4Addr::from((rd >> 16) as u32),
                assigned: rd as u16,
            }),
            2 => Some(RouteDistinguisher::As {
                asn: (rd >> 16) as u32,
                assigned: u32::from(rd as u16),
            }),
            _ => None,
        }
    }
}

impl fmt::Display for RouteDistinguisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RouteDistinguisher::As { asn, assigned } => write!(f, "{asn}:{assigned}"),
            RouteDistinguisher::Ip { addr, assigned } => write!(f, "{addr}:{assigned}"),
        }
    }
}

impl FromStr for RouteDistinguisher {
    type Err = MappingParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MappingParseError::BadRouteDistinguisher(s.to_owned());
        let (admin, assigned) = s.rsplit_once(':').ok_or_else(bad)?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(assigned) {
            return Err(bad());
        }
        if digits(admin) {
            Ok(RouteDistinguisher::As {
                asn: admin.parse().map_err(|_| bad())?,
                assigned: assigned.parse().map_err(|_| bad())?,
            })
        } else {
            Ok(RouteDistinguisher::Ip {
                addr: admin.parse().map_err(|_| bad())?,
                assigned: assigned.parse().map_err(|_| bad())?,
            })
        }
    }
}

/// The static part of an MPLS/VPN mapping: `RT/RD@PE-IP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MplsVpnId {
    /// Route target / distinguisher used by the BGP LEG to correlate updates with the VPN.
    pub rd: RouteDistinguisher,
    /// Loopback address of the provider-edge router.
    pub pe: IpAddr,
}

impl fmt::Display for MplsVpnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.rd, self.pe)
    }
}

impl FromStr for MplsVpnId {
    type Err = MappingParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (rd, pe) = s
            .trim()
            .rsplit_once('@')
            .ok_or_else(|| MappingParseError::BadMplsVpn(s.to_owned()))?;
        Ok(MplsVpnId {
            rd: rd.parse()?,
            pe: parse_addr(pe)?,
        })
    }
}

/// Largest MPLS label value (20 bits).
pub const MAX_LABEL: u32 = (1 << 20) - 1;

/// Parses an MPLS label (0..=2^20-1).
pub fn parse_label(s: &str) -> Result<u32, MappingParseError> {
    let bad = || MappingParseError::BadLabel(s.to_owned());
    if s.is_empty() || s.len() > 7 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    s.parse::<u32>()
        .ok()
        .filter(|l| *l <= MAX_LABEL)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(s: &str) {
        let m: Mapping = s.parse().unwrap();
        assert_eq!(m.to_string(), s, "{m:?}");
    }

    #[test]
    fn document_forms_round_trip() {
        for s in [
            "10.1.1.7",
            "10.1.1.0/24",
            "0.0.0.0/0",
            "10.1.1.10-10.1.1.20",
            "2001:db8::7",
            "2001:db8::/48",
            "2001:db8::1-2001:db8::5",
            "1.1.1.0/24@vpn1",
            "10.0.0.1@100",
            "10.0.0.1-10.0.0.2@my vpn",
        ] {
            round_trip(s);
        }
        let id: MplsVpnId = "1000:1@10.10.10.10".parse().unwrap();
        assert_eq!(id.to_string(), "1000:1@10.10.10.10");
        assert_eq!(
            id.rd,
            RouteDistinguisher::As {
                asn: 1000,
                assigned: 1
            }
        );
        let id: MplsVpnId = "192.0.2.1:7@2001:db8::1".parse().unwrap();
        assert_eq!(id.to_string(), "192.0.2.1:7@2001:db8::1");
    }

    #[test]
    fn a_range_that_is_one_prefix_is_stored_as_the_prefix() {
        let m: Mapping = "10.0.0.0-10.0.0.255".parse().unwrap();
        assert_eq!(m.ip, IpSpec::V4Prefix(Ipv4Addr::new(10, 0, 0, 0), 24));
        assert_eq!(m.to_string(), "10.0.0.0/24");
        let m: Mapping = "10.0.0.9-10.0.0.9".parse().unwrap();
        assert_eq!(m.to_string(), "10.0.0.9");
    }

    #[test]
    fn ranges_split_into_minimal_prefixes() {
        let spec: IpSpec = "10.0.0.1-10.0.0.9".parse().unwrap();
        let got: Vec<String> = spec.prefixes().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            got,
            ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/30", "10.0.0.8/31"]
        );
        let spec: IpSpec = "0.0.0.1-255.255.255.255".parse().unwrap();
        assert_eq!(spec.prefixes().len(), 32);
        let spec: IpSpec = "::1-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
            .parse()
            .unwrap();
        assert_eq!(spec.prefixes().len(), 128);
        let spec: IpSpec = "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
            .parse()
            .unwrap();
        assert_eq!(spec, IpSpec::V6Prefix(Ipv6Addr::UNSPECIFIED, 0));
    }

    #[test]
    fn malformed_text_gets_a_precise_error() {
        let e = |s: &str| s.parse::<Mapping>().unwrap_err();
        assert_eq!(e(""), MappingParseError::Empty);
        assert_eq!(
            e("10.0.0.256"),
            MappingParseError::BadAddress("10.0.0.256".into())
        );
        assert_eq!(
            e("10.0.0.0/33"),
            MappingParseError::BadPrefixLength("33".into())
        );
        assert_eq!(
            e("10.0.0.0/+8"),
            MappingParseError::BadPrefixLength("+8".into())
        );
        assert_eq!(
            e("10.0.0.1/24"),
            MappingParseError::HostBitsSet("10.0.0.1/24".into())
        );
        assert_eq!(
            e("10.0.0.9-10.0.0.1"),
            MappingParseError::BadRange("10.0.0.9-10.0.0.1".into())
        );
        assert_eq!(
            e("10.0.0.1-::1"),
            MappingParseError::BadRange("10.0.0.1-::1".into())
        );
        assert!(matches!(
            e("10.0.0.1@"),
            MappingParseError::BadVpnName { .. }
        ));
        assert!(matches!(
            e("10.0.0.1@v'pn"),
            MappingParseError::BadVpnName { .. }
        ));
        assert!(matches!(
            "1000@10.0.0.1".parse::<MplsVpnId>(),
            Err(MappingParseError::BadRouteDistinguisher(_))
        ));
        assert!(matches!(
            "1000:1".parse::<MplsVpnId>(),
            Err(MappingParseError::BadMplsVpn(_))
        ));
        assert_eq!(parse_label("1048575"), Ok(MAX_LABEL));
        assert!(parse_label("1048576").is_err());
    }

    #[test]
    fn communities_at_vpns_are_told_apart_from_addresses() {
        let id: NetworkId = "100:100@vpn1".parse().unwrap();
        assert_eq!(
            id,
            NetworkId::Community(CommunityMapping {
                community: Community::new(100, 100),
                vpn: "vpn1".into()
            })
        );
        assert_eq!(id.to_string(), "100:100@vpn1");
        for ip in ["1::1@vpn1", "2001:db8::/48@vpn1", "10.0.0.1@vpn1", "::@x"] {
            assert!(
                matches!(ip.parse::<NetworkId>(), Ok(NetworkId::Ip(_))),
                "{ip}"
            );
        }
        assert_eq!(
            "100:100".parse::<NetworkId>(),
            Err(MappingParseError::CommunityWithoutVpn("100:100".into()))
        );
        assert_eq!(
            "100:65536@v".parse::<NetworkId>(),
            Err(MappingParseError::BadCommunity("100:65536".into()))
        );
        assert_eq!(
            RouteDistinguisher::from_wire((2 << 48) | (70000 << 16) | 7),
            Some(RouteDistinguisher::As {
                asn: 70000,
                assigned: 7
            })
        );
        assert_eq!(
            RouteDistinguisher::from_wire((1000 << 32) | 1),
            "1000:1".parse().ok()
        );
        assert_eq!(RouteDistinguisher::from_wire(3 << 48), None);
    }

    #[test]
    fn vlan_vpn_names_are_numbers_in_vlan_range() {
        let m: Mapping = "10.0.0.1@100".parse().unwrap();
        assert_eq!(m.vlan_id(), Some(100));
        assert_eq!(parse_vlan_id("4095"), None);
        assert_eq!(parse_vlan_id("0"), None);
        assert_eq!(parse_vlan_id("vpn1"), None);
    }
}
