//! Identifiers: ports, SAP ids, the SR OS → Linux port map, MAC addresses and names.
//!
//! brasa's ports are Linux interface names. A SAP id is `<port>` (null encapsulation),
//! `<port>:<tag>` (dot1q) or `<port>:<outer>.<inner>` (QinQ), where a tag is `0..=4094` or the
//! wildcard `*`, and `0` means untagged. SR OS port names (`1/1/4`) are accepted wherever the
//! operator configured a [`PortMap`] entry for them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::limits;

/// Longest Linux interface name (IFNAMSIZ − 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// A Linux interface name: 1..=15 bytes, none of them `/`, `:` or whitespace, not `.` or `..`.
// Shared, so that the SAP ids in the configuration's indexes do not each own a copy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortName(Arc<str>);

/// Why a text is not a valid Linux interface name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PortNameError {
    /// The name is empty.
    #[error("an interface name cannot be empty")]
    Empty,
    /// The name is longer than [`MAX_IFNAME_LEN`] bytes.
    #[error("interface name {0:?} is longer than 15 bytes")]
    TooLong(String),
    /// The name holds a byte Linux rejects in interface names.
    #[error("interface name {0:?} contains '/', ':' or whitespace")]
    BadCharacter(String),
    /// `.` and `..` are reserved.
    #[error("interface name {0:?} is reserved")]
    Reserved(String),
}

impl PortName {
    /// Checks `text` against the Linux interface name rules.
    pub fn new(text: &str) -> Result<Self, PortNameError> {
        if text.is_empty() {
            return Err(PortNameError::Empty);
        }
        if text.len() > MAX_IFNAME_LEN {
            return Err(PortNameError::TooLong(text.to_owned()));
        }
        if text
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(PortNameError::BadCharacter(text.to_owned()));
        }
        if text == "." || text == ".." {
            return Err(PortNameError::Reserved(text.to_owned()));
        }
        Ok(Self(Arc::from(text)))
    }

    /// The least name in the total order (empty), only ever used as a range bound.
    pub(crate) fn least() -> Self {
        Self(Arc::from(""))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for PortName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PortName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PortName::new(&text).map_err(serde::de::Error::custom)
    }
}

/// One VLAN tag position of a SAP id: a VLAN id (`0` = untagged) or the wildcard `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tag {
    /// A VLAN id in `0..=4094`; `0` matches untagged (or priority-tagged) frames.
    Id(u16),
    /// `*`: any tag not matched by a more specific SAP on the port.
    Any,
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tag::Id(id) => write!(f, "{id}"),
            Tag::Any => f.write_str("*"),
        }
    }
}

/// The encapsulation of a port, as the data plane's interface list says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encapsulation {
    /// The whole port is one SAP (`eth1`).
    Null,
    /// One 802.1Q tag delimits SAPs (`eth1:100`).
    Dot1q,
    /// Two tags delimit SAPs (`eth1:100.200`); the outer one is 802.1ad.
    Qinq,
}

impl fmt::Display for Encapsulation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encapsulation::Null => "null",
            Encapsulation::Dot1q => "dot1q",
            Encapsulation::Qinq => "qinq",
        })
    }
}

/// A SAP id: a port and zero, one or two tags.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SapId {
    port: PortName,
    tags: SapTags,
}

/// The tags of a SAP id, by encapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SapTags {
    /// Null encapsulation: the whole port.
    Null,
    /// Dot1q: one tag.
    Dot1q(Tag),
    /// QinQ: outer and inner tag.
    Qinq(Tag, Tag),
}

/// Why a SAP id text does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SapIdError {
    /// The port part is not a valid Linux interface name.
    #[error(transparent)]
    Port(#[from] PortNameError),
    /// The port part is an SR OS port name (`1/1/4`) the port map does not translate.
    #[error("SR OS port {0} has no Linux interface in the port map")]
    UnmappedPort(String),
    /// A tag is neither `*` nor a number in `0..=4094`.
    #[error("VLAN tag {0:?} is neither '*' nor a number in 0..=4094")]
    BadTag(String),
    /// More than two tags.
    #[error("a SAP has at most two tags (outer.inner), found {0:?}")]
    TooManyTags(String),
}

/// Why a SAP does not fit its port.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SapPortError {
    /// The port is not in the data plane's interface list.
    #[error("port {0} is not a data-plane interface")]
    UnknownPort(PortName),
    /// The SAP's tags do not match the port's encapsulation.
    #[error("SAP {sap} does not fit port {port}, whose encapsulation is {encap}")]
    EncapsulationMismatch {
        /// The SAP.
        sap: SapId,
        /// Its port.
        port: PortName,
        /// The port's encapsulation.
        encap: Encapsulation,
    },
}

impl SapId {
    /// A SAP id from its parts.
    pub fn new(port: PortName, tags: SapTags) -> Self {
        Self { port, tags }
    }

    /// Parses `port[:outer[.inner]]` where `port` is a Linux interface name.
    pub fn parse(text: &str) -> Result<Self, SapIdError> {
        Self::parse_mapped(text, &PortMap::default())
    }

    /// Parses a SAP id whose port may be an SR OS name that `map` translates.
    pub fn parse_mapped(text: &str, map: &PortMap) -> Result<Self, SapIdError> {
        // SR OS names contain '/', so the tag part starts at the last ':'.
        let (port_text, tag_text) = match text.rsplit_once(':') {
            Some((port, tags)) => (port, Some(tags)),
            None => (text, None),
        };
        let port = map.resolve(port_text)?;
        let tags = match tag_text {
            None => SapTags::Null,
            Some(tags) => {
                let mut parts = tags.split('.');
                let outer = parse_tag(parts.next().unwrap_or_default())?;
                match (parts.next(), parts.next()) {
                    (None, _) => SapTags::Dot1q(outer),
                    (Some(inner), None) => SapTags::Qinq(outer, parse_tag(inner)?),
                    (Some(_), Some(_)) => return Err(SapIdError::TooManyTags(tags.to_owned())),
                }
            }
        };
        Ok(Self { port, tags })
    }

    /// The port.
    pub fn port(&self) -> &PortName {
        &self.port
    }

    /// The tags.
    pub fn tags(&self) -> SapTags {
        self.tags
    }

    /// True when a tag is the wildcard `*` (a default or capture SAP).
    pub fn has_wildcard(&self) -> bool {
        match self.tags {
            SapTags::Null => false,
            SapTags::Dot1q(tag) => tag == Tag::Any,
            SapTags::Qinq(outer, inner) => outer == Tag::Any || inner == Tag::Any,
        }
    }

    /// The encapsulation this SAP id is written for.
    pub fn encapsulation(&self) -> Encapsulation {
        match self.tags {
            SapTags::Null => Encapsulation::Null,
            SapTags::Dot1q(_) => Encapsulation::Dot1q,
            SapTags::Qinq(..) => Encapsulation::Qinq,
        }
    }

    /// Checks that the SAP's port exists in `ports` and that the SAP fits its encapsulation.
    pub fn check_port(&self, ports: &Ports) -> Result<(), SapPortError> {
        let encap = ports
            .encapsulation(&self.port)
            .ok_or_else(|| SapPortError::UnknownPort(self.port.clone()))?;
        if encap != self.encapsulation() {
            return Err(SapPortError::EncapsulationMismatch {
                sap: self.clone(),
                port: self.port.clone(),
                encap,
            });
        }
        Ok(())
    }
}

fn parse_tag(text: &str) -> Result<Tag, SapIdError> {
    if text == "*" {
        return Ok(Tag::Any);
    }
    // Only plain decimal digits: "+5" or " 5" are not tags.
    if text.is_empty() || text.len() > 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SapIdError::BadTag(text.to_owned()));
    }
    match text.parse::<u16>() {
        Ok(id) if limits::VLAN_TAG.contains(&id) => Ok(Tag::Id(id)),
        _ => Err(SapIdError::BadTag(text.to_owned())),
    }
}

impl fmt::Display for SapId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tags {
            SapTags::Null => write!(f, "{}", self.port),
            SapTags::Dot1q(tag) => write!(f, "{}:{tag}", self.port),
            SapTags::Qinq(outer, inner) => write!(f, "{}:{outer}.{inner}", self.port),
        }
    }
}

impl FromStr for SapId {
    type Err = SapIdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for SapId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SapId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        SapId::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The operator's translation of SR OS port names (`1/1/4`, `lag-1`) into Linux interface
/// names, so that snippets written for SR OS work unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PortMap {
    map: BTreeMap<String, PortName>,
}

impl PortMap {
    /// An empty map: only Linux names are accepted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps the SR OS port `sros` to the Linux interface `linux`.
    pub fn insert(&mut self, sros: impl Into<String>, linux: PortName) {
        self.map.insert(sros.into(), linux);
    }

    /// The Linux name for `port`: its mapping when there is one, else `port` itself when it is a
    /// valid Linux name. A name with `/` (an SR OS `slot/mda/port`) must be mapped.
    pub fn resolve(&self, port: &str) -> Result<PortName, SapIdError> {
        if let Some(linux) = self.map.get(port) {
            return Ok(linux.clone());
        }
        if port.contains('/') {
            return Err(SapIdError::UnmappedPort(port.to_owned()));
        }
        Ok(PortName::new(port)?)
    }
}

/// The data plane's ports and their encapsulations: what SAPs are checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ports {
    ports: BTreeMap<PortName, Encapsulation>,
}

impl Ports {
    /// No ports.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a port.
    pub fn insert(&mut self, port: PortName, encap: Encapsulation) {
        self.ports.insert(port, encap);
    }

    /// The encapsulation of `port`, if it is a data-plane port.
    pub fn encapsulation(&self, port: &PortName) -> Option<Encapsulation> {
        self.ports.get(port).copied()
    }

    /// Every port with its encapsulation, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&PortName, Encapsulation)> {
        self.ports.iter().map(|(name, encap)| (name, *encap))
    }
}

impl FromIterator<(PortName, Encapsulation)> for Ports {
    fn from_iter<I: IntoIterator<Item = (PortName, Encapsulation)>>(iter: I) -> Self {
        Self {
            ports: iter.into_iter().collect(),
        }
    }
}

/// An IEEE 802 MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

/// A text that is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not a MAC address (xx:xx:xx:xx:xx:xx or xx-xx-xx-xx-xx-xx)")]
pub struct MacAddrError(pub String);

impl FromStr for MacAddr {
    type Err = MacAddrError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || MacAddrError(text.to_owned());
        let sep = if text.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = text.split(sep);
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sap_ids_round_trip_through_text() {
        for text in [
            "eth1",
            "eth1:0",
            "eth1:100",
            "eth1:*",
            "eth1:1214.101",
            "eth1:1214.*",
            "eth1:*.*",
            "eth1:*.7",
            "eth1:0.4094",
        ] {
            let sap = SapId::parse(text).unwrap();
            assert_eq!(sap.to_string(), text);
        }
        assert_eq!(
            SapId::parse("eth1:1214.101").unwrap().tags(),
            SapTags::Qinq(Tag::Id(1214), Tag::Id(101))
        );
    }

    #[test]
    fn bad_sap_ids_are_precise_errors() {
        assert_eq!(
            SapId::parse("eth1:4095"),
            Err(SapIdError::BadTag("4095".into()))
        );
        assert_eq!(
            SapId::parse("eth1:+5"),
            Err(SapIdError::BadTag("+5".into()))
        );
        assert_eq!(
            SapId::parse("eth1:1.2.3"),
            Err(SapIdError::TooManyTags("1.2.3".into()))
        );
        assert_eq!(
            SapId::parse("averyveryverylongname:1"),
            Err(SapIdError::Port(PortNameError::TooLong(
                "averyveryverylongname".into()
            )))
        );
        assert_eq!(
            SapId::parse(":1"),
            Err(SapIdError::Port(PortNameError::Empty))
        );
        assert_eq!(
            SapId::parse("1/1/4:1214.101"),
            Err(SapIdError::UnmappedPort("1/1/4".into()))
        );
    }

    #[test]
    fn the_port_map_translates_sros_names() {
        let mut map = PortMap::new();
        map.insert("1/1/4", PortName::new("eth1").unwrap());
        let sap = SapId::parse_mapped("1/1/4:1214.101", &map).unwrap();
        assert_eq!(sap.to_string(), "eth1:1214.101");
        assert_eq!(
            SapId::parse_mapped("1/1/5:1", &map),
            Err(SapIdError::UnmappedPort("1/1/5".into()))
        );
    }

    #[test]
    fn saps_must_fit_their_port() {
        let ports: Ports = [
            (PortName::new("eth0").unwrap(), Encapsulation::Null),
            (PortName::new("eth1").unwrap(), Encapsulation::Dot1q),
            (PortName::new("eth2").unwrap(), Encapsulation::Qinq),
        ]
        .into_iter()
        .collect();
        for ok in [
            "eth0", "eth1:0", "eth1:*", "eth2:1.2", "eth2:1.*", "eth2:*.*",
        ] {
            SapId::parse(ok).unwrap().check_port(&ports).unwrap();
        }
        for bad in ["eth0:1", "eth1", "eth1:1.2", "eth2:1", "eth2"] {
            assert!(matches!(
                SapId::parse(bad).unwrap().check_port(&ports),
                Err(SapPortError::EncapsulationMismatch { .. })
            ));
        }
        assert!(matches!(
            SapId::parse("eth9:1").unwrap().check_port(&ports),
            Err(SapPortError::UnknownPort(_))
        ));
    }

    #[test]
    fn mac_addresses_parse_both_separators() {
        let mac: MacAddr = "00-51-00-DD-01-01".parse().unwrap();
        assert_eq!(mac.to_string(), "00:51:00:dd:01:01");
        assert!("00:51:00:dd:01".parse::<MacAddr>().is_err());
        assert!("00:51:00:dd:01:01:02".parse::<MacAddr>().is_err());
        assert!("0:51:00:dd:01:01".parse::<MacAddr>().is_err());
    }
}
