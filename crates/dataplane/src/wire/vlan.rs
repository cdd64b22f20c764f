//! IEEE 802.1Q / 802.1ad VLAN tags: the 4 bytes after a TPID of 0x8100 or 0x88a8.
//!
//! A view covers the Tag Control Information and the EtherType that follows the tag, so a
//! QinQ frame is an Ethernet header whose EtherType is 0x88a8, then a tag whose inner EtherType is
//! 0x8100, then a second tag whose inner EtherType names the payload.

use super::{be16, put16, Error, Result};

/// Bytes of one tag (TCI + EtherType) after the TPID.
pub const HEADER_LEN: usize = 4;

/// A view of one VLAN tag.
#[derive(Debug, Clone)]
pub struct VlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanHeader<T> {
    /// Wraps `buffer` after checking it holds a whole tag.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self { buffer })
    }

    /// Wraps `buffer` without checking.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Priority code point (3 bits).
    pub fn pcp(&self) -> u8 {
        (be16(self.buffer.as_ref(), 0) >> 13) as u8
    }

    /// Drop eligible indicator.
    pub fn dei(&self) -> bool {
        be16(self.buffer.as_ref(), 0) & 0x1000 != 0
    }

    /// VLAN identifier (12 bits).
    pub fn vid(&self) -> u16 {
        be16(self.buffer.as_ref(), 0) & 0x0fff
    }

    /// The EtherType after the tag.
    pub fn inner_ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    /// The bytes after the tag.
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanHeader<T> {
    /// Sets PCP, DEI and VID at once.
    pub fn set_tci(&mut self, pcp: u8, dei: bool, vid: u16) {
        let tci = (u16::from(pcp & 7) << 13) | (u16::from(dei) << 12) | (vid & 0x0fff);
        put16(self.buffer.as_mut(), 0, tci);
    }

    /// Sets the EtherType after the tag.
    pub fn set_inner_ethertype(&mut self, value: u16) {
        put16(self.buffer.as_mut(), 2, value);
    }
}

/// The fields of a VLAN tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanRepr {
    /// Priority code point (0-7).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier (0-4095).
    pub vid: u16,
    /// The EtherType after the tag.
    pub inner_ethertype: u16,
}

impl VlanRepr {
    /// Lifts the tag fields.
    pub fn parse<T: AsRef<[u8]>>(tag: &VlanHeader<T>) -> Result<Self> {
        if tag.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self {
            pcp: tag.pcp(),
            dei: tag.dei(),
            vid: tag.vid(),
            inner_ethertype: tag.inner_ethertype(),
        })
    }

    /// Writes the tag.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, tag: &mut VlanHeader<T>) {
        tag.set_tci(self.pcp, self.dei, self.vid);
        tag.set_inner_ethertype(self.inner_ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::{EtherType, EthernetFrame};

    // QinQ: outer S-tag VID 100 PCP 5, inner C-tag VID 200, then IPv6.
    const QINQ: [u8; 24] = [
        0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x88, 0xa8, // Ethernet, TPID 802.1ad
        0xa0, 0x64, 0x81, 0x00, // PCP 5, VID 100, next TPID 802.1Q
        0x00, 0xc8, 0x86, 0xdd, // VID 200, IPv6
        0x60, 0x00,
    ];

    #[test]
    fn parses_qinq_stack() {
        let eth = EthernetFrame::new_checked(&QINQ[..]).unwrap();
        assert_eq!(eth.ethertype(), EtherType::QINQ);
        let outer = VlanHeader::new_checked(eth.payload()).unwrap();
        let outer_repr = VlanRepr::parse(&outer).unwrap();
        assert_eq!(
            outer_repr,
            VlanRepr {
                pcp: 5,
                dei: false,
                vid: 100,
                inner_ethertype: EtherType::VLAN
            }
        );
        let inner = VlanHeader::new_checked(outer.payload()).unwrap();
        assert_eq!(inner.vid(), 200);
        assert_eq!(inner.inner_ethertype(), EtherType::IPV6);
        assert_eq!(inner.payload(), &[0x60, 0x00]);
    }

    #[test]
    fn emits_tag_bytes() {
        let mut out = [0u8; 4];
        VlanRepr {
            pcp: 5,
            dei: true,
            vid: 0xabc,
            inner_ethertype: EtherType::COMET,
        }
        .emit(&mut VlanHeader::new_unchecked(&mut out[..]));
        assert_eq!(out, [0xba, 0xbc, 0xcc, 0xcc]);
    }

    #[test]
    fn short_tag_is_truncated() {
        assert_eq!(
            VlanHeader::new_checked(&[0u8; 3][..]).unwrap_err(),
            Error::Truncated
        );
    }
}
