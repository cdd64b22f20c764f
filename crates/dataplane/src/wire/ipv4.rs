//! IPv4 headers (RFC 791) with header checksum.

use super::{be16, byte, checksum, put16, put8, Error, Result};
use std::net::Ipv4Addr;

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = 20;

/// A view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` after checking the version, the header length and that the total length
    /// fits in the buffer (trailing bytes beyond it, such as Ethernet padding, are allowed).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self { buffer };
        let len = packet.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if packet.version() != 4 {
            return Err(Error::Malformed);
        }
        let header_len = packet.header_len();
        let total_len = usize::from(packet.total_len());
        if header_len < MIN_HEADER_LEN || total_len < header_len {
            return Err(Error::Malformed);
        }
        if len < header_len || len < total_len {
            return Err(Error::Truncated);
        }
        Ok(packet)
    }

    /// Wraps `buffer` without checking.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// IP version (4 for a valid packet).
    pub fn version(&self) -> u8 {
        byte(self.bytes(), 0) >> 4
    }

    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(byte(self.bytes(), 0) & 0x0f) * 4
    }

    /// DSCP (6 bits).
    pub fn dscp(&self) -> u8 {
        byte(self.bytes(), 1) >> 2
    }

    /// ECN (2 bits).
    pub fn ecn(&self) -> u8 {
        byte(self.bytes(), 1) & 3
    }

    /// Total length (header + payload).
    pub fn total_len(&self) -> u16 {
        be16(self.bytes(), 2)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        be16(self.bytes(), 4)
    }

    /// Don't fragment flag.
    pub fn dont_frag(&self) -> bool {
        be16(self.bytes(), 6) & 0x4000 != 0
    }

    /// More fragments flag.
    pub fn more_frags(&self) -> bool {
        be16(self.bytes(), 6) & 0x2000 != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (be16(self.bytes(), 6) & 0x1fff) << 3
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        byte(self.bytes(), 8)
    }

    /// Protocol of the payload.
    pub fn protocol(&self) -> u8 {
        byte(self.bytes(), 9)
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.bytes(), 10)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(super::be32(self.bytes(), 12))
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(super::be32(self.bytes(), 16))
    }

    /// True when the header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        match self.bytes().get(..self.header_len()) {
            Some(header) => checksum::checksum(header) == 0,
            None => false,
        }
    }

    /// The payload (up to the total length, without link-layer padding).
    pub fn payload(&self) -> &[u8] {
        let end = usize::from(self.total_len()).min(self.bytes().len());
        self.bytes().get(self.header_len()..end).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the time to live (the checksum must be refilled afterwards).
    pub fn set_ttl(&mut self, ttl: u8) {
        put8(self.buffer.as_mut(), 8, ttl);
    }

    /// Rewrites the DSCP (the upper six bits of the type-of-service byte, ECN kept) and
    /// updates the header checksum incrementally (RFC 1624, eqn. 3), so the rest of the header
    /// is not read again.
    pub fn set_dscp(&mut self, dscp: u8) {
        let bytes = self.buffer.as_mut();
        let (Some(&version_ihl), Some(&tos), Some(c)) =
            (bytes.first(), bytes.get(1), bytes.get(10..12))
        else {
            return;
        };
        let old_word = u16::from_be_bytes([version_ihl, tos]);
        let new_word = u16::from_be_bytes([version_ihl, (dscp << 2) | (tos & 0x03)]);
        let sum = u32::from(!u16::from_be_bytes([c[0], c[1]]))
            + u32::from(!old_word)
            + u32::from(new_word);
        put8(bytes, 1, (dscp << 2) | (tos & 0x03));
        put16(bytes, 10, checksum::finish(sum));
    }

    /// Recomputes and stores the header checksum.
    pub fn fill_checksum(&mut self) {
        put16(self.buffer.as_mut(), 10, 0);
        let len = self.header_len();
        let sum = match self.buffer.as_ref().get(..len) {
            Some(header) => checksum::checksum(header),
            None => return,
        };
        put16(self.buffer.as_mut(), 10, sum);
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let end = usize::from(self.total_len()).min(self.buffer.as_ref().len());
        self.buffer.as_mut().get_mut(start..end).unwrap_or(&mut [])
    }
}

/// The fields of an IPv4 header this data plane acts on (options are not represented; `emit`
/// writes a 20-byte header with DF set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Payload protocol.
    pub protocol: u8,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP.
    pub dscp: u8,
}

impl Ipv4Repr {
    /// Validates the header (including its checksum) and lifts the fields.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Self> {
        let packet = Ipv4Packet::new_checked(packet.bytes())?;
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Self {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            ttl: packet.ttl(),
            dscp: packet.dscp(),
        })
    }

    /// Length of the header `emit` writes.
    pub const fn header_len(&self) -> usize {
        MIN_HEADER_LEN
    }

    /// Writes a 20-byte header with the checksum filled in. `payload_len` must fit in 16 bits
    /// together with the header; larger values are clamped.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        let bytes = packet.buffer.as_mut();
        let total = (self.payload_len + MIN_HEADER_LEN).min(usize::from(u16::MAX)) as u16;
        put8(bytes, 0, 0x45);
        put8(bytes, 1, self.dscp << 2);
        put16(bytes, 2, total);
        put16(bytes, 4, 0);
        put16(bytes, 6, 0x4000);
        put8(bytes, 8, self.ttl);
        put8(bytes, 9, self.protocol);
        if let Some(b) = bytes.get_mut(12..16) {
            b.copy_from_slice(&self.src_addr.octets());
        }
        if let Some(b) = bytes.get_mut(16..20) {
            b.copy_from_slice(&self.dst_addr.octets());
        }
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 127.0.0.1 -> 127.0.0.2, UDP, 8 bytes of payload, TTL 64, DF, ident 0.
    const PACKET: [u8; 28] = [
        0x45, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x3c, 0xce, 127, 0, 0, 1, 127,
        0, 0, 2, 0x04, 0xd2, 0x16, 0x2e, 0x00, 0x08, 0x00, 0x00,
    ];

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(127, 0, 0, 1),
            dst_addr: Ipv4Addr::new(127, 0, 0, 2),
            protocol: 17,
            payload_len: 8,
            ttl: 64,
            dscp: 0,
        }
    }

    #[test]
    fn parses_vector() {
        let packet = Ipv4Packet::new_checked(&PACKET[..]).unwrap();
        assert!(packet.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&packet).unwrap(), repr());
        assert_eq!(packet.payload().len(), 8);
        assert!(packet.dont_frag());
    }

    #[test]
    fn emits_vector() {
        let mut out = [0u8; 28];
        out[20..].copy_from_slice(&PACKET[20..]);
        repr().emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, PACKET);
    }

    #[test]
    fn rejects_bad_checksum_version_and_lengths() {
        let mut bad = PACKET;
        bad[11] ^= 1;
        let packet = Ipv4Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&packet).unwrap_err(), Error::Checksum);
        let mut v6 = PACKET;
        v6[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&v6[..]).unwrap_err(),
            Error::Malformed
        );
        let mut ihl = PACKET;
        ihl[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&ihl[..]).unwrap_err(),
            Error::Malformed
        );
        assert_eq!(
            Ipv4Packet::new_checked(&PACKET[..27]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn padding_after_total_length_is_ignored() {
        let mut padded = [0u8; 46];
        padded[..28].copy_from_slice(&PACKET);
        let packet = Ipv4Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(packet.payload().len(), 8);
    }
}
