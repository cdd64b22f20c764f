//! Ethernet II frames.

use super::{be16, put16, Error, Result};
use std::fmt;

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// Reads the first six bytes of `bytes` (zero-filled when shorter).
    pub fn from_bytes(bytes: &[u8]) -> MacAddr {
        let mut out = [0u8; 6];
        for (dst, src) in out.iter_mut().zip(bytes) {
            *dst = *src;
        }
        MacAddr(out)
    }

    /// True for group (multicast and broadcast) addresses.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A MAC address string that is not six `:`- or `-`-separated hex bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex bytes such as aa:11:b0:00:00:01")]
pub struct MacParseError(pub String);

impl std::str::FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(text: &str) -> core::result::Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut count = 0;
        for part in text.split([':', '-']) {
            let slot = out
                .get_mut(count)
                .ok_or_else(|| MacParseError(text.to_string()))?;
            if part.is_empty() || part.len() > 2 {
                return Err(MacParseError(text.to_string()));
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| MacParseError(text.to_string()))?;
            count += 1;
        }
        if count != 6 {
            return Err(MacParseError(text.to_string()));
        }
        Ok(MacAddr(out))
    }
}

/// EtherType values the data plane knows.
pub struct EtherType;

impl EtherType {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IEEE 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// IEEE 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// The COMET header (seed 004 §5.2.1).
    pub const COMET: u16 = 0xcccc;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = 14;

/// A view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` after checking it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self { buffer })
    }

    /// Wraps `buffer` without checking; accessors then read zeros past its end.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC address.
    pub fn dst(&self) -> MacAddr {
        MacAddr::from_bytes(self.buffer.as_ref().get(0..6).unwrap_or(&[]))
    }

    /// Source MAC address.
    pub fn src(&self) -> MacAddr {
        MacAddr::from_bytes(self.buffer.as_ref().get(6..12).unwrap_or(&[]))
    }

    /// The EtherType (or the first VLAN TPID).
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), 12)
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC address.
    pub fn set_dst(&mut self, mac: MacAddr) {
        if let Some(b) = self.buffer.as_mut().get_mut(0..6) {
            b.copy_from_slice(&mac.0);
        }
    }

    /// Sets the source MAC address.
    pub fn set_src(&mut self, mac: MacAddr) {
        if let Some(b) = self.buffer.as_mut().get_mut(6..12) {
            b.copy_from_slice(&mac.0);
        }
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, value: u16) {
        put16(self.buffer.as_mut(), 12, value);
    }

    /// The bytes after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..)
            .unwrap_or(&mut [])
    }
}

/// The fields of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Source MAC address.
    pub src: MacAddr,
    /// Destination MAC address.
    pub dst: MacAddr,
    /// EtherType.
    pub ethertype: u16,
}

impl EthernetRepr {
    /// Lifts the header fields.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Self> {
        if frame.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self {
            src: frame.src(),
            dst: frame.dst(),
            ethertype: frame.ethertype(),
        })
    }

    /// Header length in bytes.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `frame`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_dst(self.dst);
        frame.set_src(self.src);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: [u8; 18] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x08, 0x00, // IPv4
        0xde, 0xad, 0xbe, 0xef,
    ];

    #[test]
    fn parses_and_reemits() {
        let frame = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        let repr = EthernetRepr::parse(&frame).unwrap();
        assert_eq!(repr.dst, MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(repr.src, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(repr.ethertype, EtherType::IPV4);
        assert_eq!(frame.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        let mut out = FRAME;
        out[..14].fill(0);
        repr.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
        assert_eq!(out, FRAME);
    }

    #[test]
    fn short_buffer_is_truncated() {
        assert_eq!(
            EthernetFrame::new_checked(&FRAME[..13]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn mac_parse_and_display() {
        let mac: MacAddr = "aa:11:b0:00:00:01".parse().unwrap();
        assert_eq!(mac.0, [0xaa, 0x11, 0xb0, 0, 0, 1]);
        assert_eq!(mac.to_string(), "aa:11:b0:00:00:01");
        assert!("aa:11:b0:00:00".parse::<MacAddr>().is_err());
        assert!("aa:11:b0:00:00:01:02".parse::<MacAddr>().is_err());
        assert!("zz:11:b0:00:00:01".parse::<MacAddr>().is_err());
    }
}
