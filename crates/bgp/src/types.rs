//! The values a VPN route is made of: address families, route distinguishers, prefixes, MPLS
//! labels and the three kinds of communities. All are small `Copy` values with a text form that
//! matches what operators type (`1000:1`, `100:100`, `1.1.1.0/24`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Address Family Identifier for IPv4 (RFC 4760 / IANA).
pub const AFI_IPV4: u16 = 1;
/// Address Family Identifier for IPv6.
pub const AFI_IPV6: u16 = 2;
/// Subsequent AFI for unicast.
pub const SAFI_UNICAST: u8 = 1;
/// Subsequent AFI for MPLS-labeled VPN addresses (RFC 4364, RFC 4659, RFC 8277).
pub const SAFI_MPLS_VPN: u8 = 128;

/// An (AFI, SAFI) pair as it appears in capabilities and MP_REACH/MP_UNREACH attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AfiSafi {
    /// Address Family Identifier.
    pub afi: u16,
    /// Subsequent Address Family Identifier.
    pub safi: u8,
}

impl AfiSafi {
    /// IPv4 unicast, the family a BGP-4 session carries without multiprotocol extensions.
    pub const IPV4_UNICAST: AfiSafi = AfiSafi {
        afi: AFI_IPV4,
        safi: SAFI_UNICAST,
    };
    /// VPN-IPv4 (AFI 1, SAFI 128).
    pub const VPN_IPV4: AfiSafi = AfiSafi {
        afi: AFI_IPV4,
        safi: SAFI_MPLS_VPN,
    };
    /// VPN-IPv6 (AFI 2, SAFI 128).
    pub const VPN_IPV6: AfiSafi = AfiSafi {
        afi: AFI_IPV6,
        safi: SAFI_MPLS_VPN,
    };

    /// The VPN family this pair names, if it names one.
    pub fn vpn_family(self) -> Option<VpnFamily> {
        match self {
            AfiSafi::VPN_IPV4 => Some(VpnFamily::Ipv4),
            AfiSafi::VPN_IPV6 => Some(VpnFamily::Ipv6),
            _ => None,
        }
    }
}

impl fmt::Display for AfiSafi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.vpn_family() {
            Some(family) => family.fmt(f),
            None if *self == AfiSafi::IPV4_UNICAST => f.write_str("ipv4-unicast"),
            None => write!(f, "afi {} safi {}", self.afi, self.safi),
        }
    }
}

/// The two families the BGP LEG learns: labeled VPN routes over IPv4 and IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VpnFamily {
    /// VPN-IPv4 (RFC 4364).
    Ipv4,
    /// VPN-IPv6 (RFC 4659).
    Ipv6,
}

impl VpnFamily {
    /// Both families, in wire order.
    pub const ALL: [VpnFamily; 2] = [VpnFamily::Ipv4, VpnFamily::Ipv6];

    /// The (AFI, SAFI) pair of this family.
    pub fn afi_safi(self) -> AfiSafi {
        match self {
            VpnFamily::Ipv4 => AfiSafi::VPN_IPV4,
            VpnFamily::Ipv6 => AfiSafi::VPN_IPV6,
        }
    }

    /// A bit for sets of families.
    pub(crate) fn bit(self) -> u8 {
        match self {
            VpnFamily::Ipv4 => 1,
            VpnFamily::Ipv6 => 2,
        }
    }
}

impl fmt::Display for VpnFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VpnFamily::Ipv4 => "vpn-ipv4",
            VpnFamily::Ipv6 => "vpn-ipv6",
        })
    }
}

/// A set of [`VpnFamily`] values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct FamilySet(u8);

impl FamilySet {
    /// No family.
    pub const EMPTY: FamilySet = FamilySet(0);
    /// VPN-IPv4 and VPN-IPv6.
    pub const BOTH: FamilySet = FamilySet(3);

    /// Whether `family` is in the set.
    pub fn contains(self, family: VpnFamily) -> bool {
        self.0 & family.bit() != 0
    }

    /// Adds `family`.
    pub fn insert(&mut self, family: VpnFamily) {
        self.0 |= family.bit();
    }

    /// Removes `family`.
    pub fn remove(&mut self, family: VpnFamily) {
        self.0 &= !family.bit();
    }

    /// The families in both sets.
    pub fn intersection(self, other: FamilySet) -> FamilySet {
        FamilySet(self.0 & other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The families of the set, in wire order.
    pub fn iter(self) -> impl Iterator<Item = VpnFamily> {
        VpnFamily::ALL
            .into_iter()
            .filter(move |f| self.contains(*f))
    }
}

impl FromIterator<VpnFamily> for FamilySet {
    fn from_iter<I: IntoIterator<Item = VpnFamily>>(iter: I) -> Self {
        let mut set = FamilySet::EMPTY;
        for family in iter {
            set.insert(family);
        }
        set
    }
}

/// Why a route distinguisher, route target or community could not be read from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, found {found:?}")]
pub struct ParseValueError {
    expected: &'static str,
    found: String,
}

impl ParseValueError {
    fn new(expected: &'static str, found: &str) -> Self {
        Self {
            expected,
            found: found.to_owned(),
        }
    }
}

/// Splits `ADMIN:NUMBER` text into its administrator (an IPv4 address or an AS number) and the
/// assigned number.
fn split_admin(text: &str, expected: &'static str) -> Result<(Admin, u32), ParseValueError> {
    let err = || ParseValueError::new(expected, text);
    let (admin, number) = text.rsplit_once(':').ok_or_else(err)?;
    let number: u32 = number.parse().map_err(|_| err())?;
    let admin = if let Ok(addr) = admin.parse::<Ipv4Addr>() {
        Admin::Ipv4(addr)
    } else {
        Admin::As(admin.parse::<u32>().map_err(|_| err())?)
    };
    Ok((admin, number))
}

enum Admin {
    As(u32),
    Ipv4(Ipv4Addr),
}

/// An 8-byte Route Distinguisher (RFC 4364 §4.2), kept in wire order as a `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteDistinguisher(pub u64);

impl RouteDistinguisher {
    /// Type 0: a 2-byte AS number and a 4-byte assigned number (`1000:1`).
    pub fn as2(asn: u16, number: u32) -> Self {
        Self((u64::from(asn) << 32) | u64::from(number))
    }

    /// Type 1: an IPv4 address and a 2-byte assigned number (`10.0.0.1:7`).
    pub fn ipv4(addr: Ipv4Addr, number: u16) -> Self {
        Self((1 << 48) | (u64::from(u32::from(addr)) << 16) | u64::from(number))
    }

    /// Type 2: a 4-byte AS number and a 2-byte assigned number (`4200000000:7`).
    pub fn as4(asn: u32, number: u16) -> Self {
        Self((2 << 48) | (u64::from(asn) << 16) | u64::from(number))
    }

    /// The wire bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// The type field (0, 1 or 2 for the defined types).
    pub fn rd_type(self) -> u16 {
        (self.0 >> 48) as u16
    }
}

impl fmt::Display for RouteDistinguisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        match self.rd_type() {
            0 => write!(f, "{}:{}", (v >> 32) as u16, v as u32),
            1 => write!(f, "{}:{}", Ipv4Addr::from((v >> 16) as u32), v as u16),
            2 => write!(f, "{}:{}", (v >> 16) as u32, v as u16),
            t => write!(f, "type{}:{:012x}", t, v & 0xffff_ffff_ffff),
        }
    }
}

impl FromStr for RouteDistinguisher {
    type Err = ParseValueError;

    /// `ASN:NN` (type 0 when the AS fits 2 bytes, else type 2) or `IPv4:NN` (type 1).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str = "a route distinguisher ASN:NN or IPv4:NN";
        let err = || ParseValueError::new(EXPECTED, text);
        match split_admin(text, EXPECTED)? {
            (Admin::Ipv4(addr), n) => Ok(Self::ipv4(addr, u16::try_from(n).map_err(|_| err())?)),
            (Admin::As(asn), n) => match u16::try_from(asn) {
                Ok(asn) => Ok(Self::as2(asn, n)),
                Err(_) => Ok(Self::as4(asn, u16::try_from(n).map_err(|_| err())?)),
            },
        }
    }
}

/// A route target extended community (RFC 4360 §4, RFC 5668): one of its three types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteTarget {
    /// Two-octet AS specific (type 0x00): `1000:1`.
    As2 {
        /// Global administrator.
        asn: u16,
        /// Local administrator.
        number: u32,
    },
    /// IPv4 address specific (type 0x01): `10.0.0.1:7`.
    Ipv4 {
        /// Global administrator.
        addr: Ipv4Addr,
        /// Local administrator.
        number: u16,
    },
    /// Four-octet AS specific (type 0x02, RFC 5668): `4200000000:7`.
    As4 {
        /// Global administrator.
        asn: u32,
        /// Local administrator.
        number: u16,
    },
}

impl RouteTarget {
    /// The extended community carrying this route target.
    pub fn to_extended(self) -> ExtendedCommunity {
        let mut b = [0u8; 8];
        b[1] = 0x02;
        match self {
            RouteTarget::As2 { asn, number } => {
                b[0] = 0x00;
                b[2..4].copy_from_slice(&asn.to_be_bytes());
                b[4..8].copy_from_slice(&number.to_be_bytes());
            }
            RouteTarget::Ipv4 { addr, number } => {
                b[0] = 0x01;
                b[2..6].copy_from_slice(&addr.octets());
                b[6..8].copy_from_slice(&number.to_be_bytes());
            }
            RouteTarget::As4 { asn, number } => {
                b[0] = 0x02;
                b[2..6].copy_from_slice(&asn.to_be_bytes());
                b[6..8].copy_from_slice(&number.to_be_bytes());
            }
        }
        ExtendedCommunity(b)
    }
}

impl fmt::Display for RouteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteTarget::As2 { asn, number } => write!(f, "{asn}:{number}"),
            RouteTarget::Ipv4 { addr, number } => write!(f, "{addr}:{number}"),
            RouteTarget::As4 { asn, number } => write!(f, "{asn}:{number}"),
        }
    }
}

impl FromStr for RouteTarget {
    type Err = ParseValueError;

    /// `ASN:NN` (two-octet AS type when the AS fits, else four-octet) or `IPv4:NN`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str = "a route target ASN:NN or IPv4:NN";
        let err = || ParseValueError::new(EXPECTED, text);
        match split_admin(text, EXPECTED)? {
            (Admin::Ipv4(addr), n) => Ok(RouteTarget::Ipv4 {
                addr,
                number: u16::try_from(n).map_err(|_| err())?,
            }),
            (Admin::As(asn), number) => match u16::try_from(asn) {
                Ok(asn) => Ok(RouteTarget::As2 { asn, number }),
                Err(_) => Ok(RouteTarget::As4 {
                    asn,
                    number: u16::try_from(number).map_err(|_| err())?,
                }),
            },
        }
    }
}

/// An 8-byte extended community (RFC 4360), kept as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtendedCommunity(pub [u8; 8]);

impl ExtendedCommunity {
    /// The route target this community carries, when it is one (transitive types 0x00, 0x01,
    /// 0x02 with sub-type 0x02).
    pub fn route_target(self) -> Option<RouteTarget> {
        let b = self.0;
        if b[1] != 0x02 {
            return None;
        }
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        match b[0] {
            0x00 => Some(RouteTarget::As2 {
                asn: u16_at(2),
                number: u32_at(4),
            }),
            0x01 => Some(RouteTarget::Ipv4 {
                addr: Ipv4Addr::from(u32_at(2)),
                number: u16_at(6),
            }),
            0x02 => Some(RouteTarget::As4 {
                asn: u32_at(2),
                number: u16_at(6),
            }),
            _ => None,
        }
    }
}

/// A standard community (RFC 1997), `ASN:VALUE` in text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u32);

impl Community {
    /// The community `high:low`.
    pub fn new(high: u16, low: u16) -> Self {
        Self((u32::from(high) << 16) | u32::from(low))
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0 >> 16, self.0 & 0xffff)
    }
}

impl FromStr for Community {
    type Err = ParseValueError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || ParseValueError::new("a community ASN:VALUE (two 16-bit numbers)", text);
        let (high, low) = text.split_once(':').ok_or_else(err)?;
        Ok(Community::new(
            high.parse().map_err(|_| err())?,
            low.parse().map_err(|_| err())?,
        ))
    }
}

/// A large community (RFC 8092): `GLOBAL:LOCAL1:LOCAL2` in text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    /// Global administrator (an AS number).
    pub global: u32,
    /// First local data part.
    pub local1: u32,
    /// Second local data part.
    pub local2: u32,
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.global, self.local1, self.local2)
    }
}

/// A VPN prefix without its route distinguisher: an IPv4 or IPv6 network.
///
/// The host bits beyond `len` are always zero (the wire form carries only the prefix bits, and
/// [`VpnPrefix::new_v4`]/[`VpnPrefix::new_v6`] clear them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VpnPrefix {
    /// An IPv4 network.
    V4 {
        /// Network address.
        addr: Ipv4Addr,
        /// Prefix length, 0..=32.
        len: u8,
    },
    /// An IPv6 network.
    V6 {
        /// Network address.
        addr: Ipv6Addr,
        /// Prefix length, 0..=128.
        len: u8,
    },
}

impl VpnPrefix {
    /// An IPv4 prefix with host bits cleared; `None` when `len > 32`.
    pub fn new_v4(addr: Ipv4Addr, len: u8) -> Option<Self> {
        let mask = u32::MAX
            .checked_shl(32u32.checked_sub(u32::from(len))?)
            .unwrap_or(0);
        Some(VpnPrefix::V4 {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            len,
        })
    }

    /// An IPv6 prefix with host bits cleared; `None` when `len > 128`.
    pub fn new_v6(addr: Ipv6Addr, len: u8) -> Option<Self> {
        let mask = u128::MAX
            .checked_shl(128u32.checked_sub(u32::from(len))?)
            .unwrap_or(0);
        Some(VpnPrefix::V6 {
            addr: Ipv6Addr::from(u128::from(addr) & mask),
            len,
        })
    }

    /// The family of the prefix.
    pub fn family(self) -> VpnFamily {
        match self {
            VpnPrefix::V4 { .. } => VpnFamily::Ipv4,
            VpnPrefix::V6 { .. } => VpnFamily::Ipv6,
        }
    }

    /// The network address.
    pub fn addr(self) -> IpAddr {
        match self {
            VpnPrefix::V4 { addr, .. } => IpAddr::V4(addr),
            VpnPrefix::V6 { addr, .. } => IpAddr::V6(addr),
        }
    }

    /// The prefix length.
    pub fn len(self) -> u8 {
        match self {
            VpnPrefix::V4 { len, .. } | VpnPrefix::V6 { len, .. } => len,
        }
    }

    /// Whether this is the zero-length default prefix.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for VpnPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len())
    }
}

impl FromStr for VpnPrefix {
    type Err = ParseValueError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || ParseValueError::new("a prefix ADDRESS/LENGTH", text);
        let (addr, len) = text.split_once('/').ok_or_else(err)?;
        let len: u8 = len.parse().map_err(|_| err())?;
        match addr.parse::<IpAddr>().map_err(|_| err())? {
            IpAddr::V4(a) => VpnPrefix::new_v4(a, len),
            IpAddr::V6(a) => VpnPrefix::new_v6(a, len),
        }
        .ok_or_else(err)
    }
}

/// A 20-bit MPLS label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label(u32);

impl Label {
    /// The largest label value.
    pub const MAX: u32 = 0xF_FFFF;

    /// A label; `None` above [`Label::MAX`].
    pub fn new(value: u32) -> Option<Self> {
        (value <= Self::MAX).then_some(Self(value))
    }

    /// The label value.
    pub fn value(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The labels of one VPN route, outermost first, stored inline (no allocation per route).
///
/// Without the Multiple Labels capability (RFC 8277 §2.1) a route has exactly one label; with it
/// a route may carry up to [`LabelStack::MAX`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LabelStack {
    len: u8,
    labels: [[u8; 3]; LabelStack::MAX],
}

impl LabelStack {
    /// The most labels a stored route keeps; an NLRI with more is malformed for this speaker.
    pub const MAX: usize = 4;

    /// A stack of one label.
    pub fn single(label: Label) -> Self {
        let mut stack = Self::default();
        stack.push(label);
        stack
    }

    /// Appends a label below the others; returns `false` (and changes nothing) when full.
    pub fn push(&mut self, label: Label) -> bool {
        let Some(slot) = self.labels.get_mut(usize::from(self.len)) else {
            return false;
        };
        let v = label.value();
        *slot = [(v >> 12) as u8, (v >> 4) as u8, (v << 4) as u8];
        self.len += 1;
        true
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether the stack is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The outermost label (the downstream label of the seed's VPN mapping).
    pub fn first(&self) -> Option<Label> {
        self.iter().next()
    }

    /// The labels, outermost first.
    pub fn iter(&self) -> impl Iterator<Item = Label> + '_ {
        self.labels[..self.len()].iter().map(|b| {
            Label((u32::from(b[0]) << 12) | (u32::from(b[1]) << 4) | (u32::from(b[2]) >> 4))
        })
    }
}

impl fmt::Debug for LabelStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter().map(|l| l.0)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_distinguisher_text_round_trips_for_each_type() {
        for text in ["1000:1", "10.10.10.10:7", "4200000000:9"] {
            let rd: RouteDistinguisher = text.parse().unwrap();
            assert_eq!(rd.to_string(), text);
        }
        assert_eq!(
            "1000:1".parse::<RouteDistinguisher>().unwrap().to_bytes(),
            [0, 0, 3, 232, 0, 0, 0, 1]
        );
        assert!("1000".parse::<RouteDistinguisher>().is_err());
        assert!("4200000000:70000".parse::<RouteDistinguisher>().is_err());
    }

    #[test]
    fn route_targets_of_the_three_types_come_back_from_their_extended_communities() {
        for text in ["1000:1", "10.0.0.1:7", "4200000000:9"] {
            let rt: RouteTarget = text.parse().unwrap();
            assert_eq!(rt.to_extended().route_target(), Some(rt));
            assert_eq!(rt.to_string(), text);
        }
        // Route origin (sub-type 3) is not a route target.
        assert_eq!(
            ExtendedCommunity([0, 3, 0, 1, 0, 0, 0, 1]).route_target(),
            None
        );
    }

    #[test]
    fn prefixes_clear_host_bits_and_reject_long_lengths() {
        let p = VpnPrefix::new_v4(Ipv4Addr::new(1, 1, 1, 77), 24).unwrap();
        assert_eq!(p.to_string(), "1.1.1.0/24");
        assert_eq!(
            VpnPrefix::new_v4(Ipv4Addr::new(9, 9, 9, 9), 0)
                .unwrap()
                .to_string(),
            "0.0.0.0/0"
        );
        assert!(VpnPrefix::new_v4(Ipv4Addr::LOCALHOST, 33).is_none());
        assert_eq!(
            "2001:db8::1/32".parse::<VpnPrefix>().unwrap().to_string(),
            "2001:db8::/32"
        );
    }

    #[test]
    fn label_stack_keeps_twenty_bit_values_in_order() {
        let mut stack = LabelStack::single(Label::new(10).unwrap());
        assert!(stack.push(Label::new(Label::MAX).unwrap()));
        assert_eq!(
            stack.iter().map(Label::value).collect::<Vec<_>>(),
            [10, Label::MAX]
        );
        assert!(stack.push(Label::new(1).unwrap()) && stack.push(Label::new(2).unwrap()));
        assert!(!stack.push(Label::new(3).unwrap()));
        assert_eq!(stack.len(), LabelStack::MAX);
        assert!(Label::new(Label::MAX + 1).is_none());
    }
}
