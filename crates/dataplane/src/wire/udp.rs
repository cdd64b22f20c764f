//! UDP datagrams (RFC 768).

use super::{be16, checksum, put16, Error, Result};
use std::net::IpAddr;

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` after checking the header and that the length field fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self { buffer };
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let field = usize::from(packet.len());
        if field < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if field > len {
            return Err(Error::Truncated);
        }
        Ok(packet)
    }

    /// Wraps `buffer` without checking.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    /// Length field (header + payload).
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }

    /// True when the length field says there is no payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// Checksum field (0 = none, IPv4 only).
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        let end = usize::from(self.len()).min(self.buffer.as_ref().len());
        self.buffer.as_ref().get(HEADER_LEN..end).unwrap_or(&[])
    }

    /// True when the checksum is absent (IPv4) or right for the given addresses.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        if self.checksum() == 0 && src.is_ipv4() {
            return true;
        }
        let len = usize::from(self.len());
        let Some(segment) = self.buffer.as_ref().get(..len) else {
            return false;
        };
        checksum::finish(checksum::accumulate(pseudo(src, dst, len as u32), segment)) == 0
    }
}

fn pseudo(src: IpAddr, dst: IpAddr, len: u32) -> u32 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => checksum::pseudo_header_v4(s, d, 17, len),
        (IpAddr::V6(s), IpAddr::V6(d)) => checksum::pseudo_header_v6(s, d, 17, len),
        _ => 0,
    }
}

/// The fields of a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Validates the header (and the checksum against the addresses) and lifts the fields.
    pub fn parse<T: AsRef<[u8]>>(packet: &UdpPacket<T>, src: IpAddr, dst: IpAddr) -> Result<Self> {
        let packet = UdpPacket::new_checked(packet.buffer.as_ref())?;
        if !packet.verify_checksum(src, dst) {
            return Err(Error::Checksum);
        }
        Ok(Self {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
        })
    }

    /// Writes the header for `payload_len` bytes of payload already in place after it, and
    /// the checksum over them.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        payload_len: usize,
        src: IpAddr,
        dst: IpAddr,
    ) {
        let len = (HEADER_LEN + payload_len).min(usize::from(u16::MAX));
        let bytes = packet.buffer.as_mut();
        put16(bytes, 0, self.src_port);
        put16(bytes, 2, self.dst_port);
        put16(bytes, 4, len as u16);
        put16(bytes, 6, 0);
        let sum = match bytes.get(..len) {
            Some(segment) => {
                checksum::finish(checksum::accumulate(pseudo(src, dst, len as u32), segment))
            }
            None => return,
        };
        // An all-zero result is sent as all ones (zero means "no checksum").
        put16(bytes, 6, if sum == 0 { 0xffff } else { sum });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const DST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn emits_and_verifies() {
        let mut bytes = [0u8; 12];
        bytes[8..].copy_from_slice(b"ping");
        UdpRepr {
            src_port: 1234,
            dst_port: 5678,
        }
        .emit(&mut UdpPacket::new_unchecked(&mut bytes[..]), 4, SRC, DST);
        assert_eq!(&bytes[..6], &[0x04, 0xd2, 0x16, 0x2e, 0x00, 0x0c]);
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert!(packet.verify_checksum(SRC, DST));
        assert_eq!(packet.payload(), b"ping");
        assert_eq!(
            UdpRepr::parse(&packet, SRC, DST).unwrap(),
            UdpRepr {
                src_port: 1234,
                dst_port: 5678
            }
        );
        bytes[9] ^= 0xff;
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            UdpRepr::parse(&packet, SRC, DST).unwrap_err(),
            Error::Checksum
        );
    }

    #[test]
    fn rejects_bad_lengths() {
        let short = [0u8, 1, 0, 2, 0, 4, 0, 0];
        assert_eq!(
            UdpPacket::new_checked(&short[..]).unwrap_err(),
            Error::Malformed
        );
        let long = [0u8, 1, 0, 2, 0, 20, 0, 0];
        assert_eq!(
            UdpPacket::new_checked(&long[..]).unwrap_err(),
            Error::Truncated
        );
    }
}
