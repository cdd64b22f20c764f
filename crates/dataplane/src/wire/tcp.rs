//! TCP segment headers (RFC 9293): the fields a classifier reads; options are skipped.

use super::{be16, be32, byte, checksum, put16, put32, put8, Error, Result};
use std::net::IpAddr;

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = 20;

/// TCP flag bits.
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// A view of a TCP segment.
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buffer` after checking the data offset fits in it.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self { buffer };
        let len = packet.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = packet.header_len();
        if header_len < MIN_HEADER_LEN {
            return Err(Error::Malformed);
        }
        if header_len > len {
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

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }

    /// Acknowledgement number.
    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), 8)
    }

    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(byte(self.buffer.as_ref(), 12) >> 4) * 4
    }

    /// The flag bits (FIN..CWR).
    pub fn flags(&self) -> u8 {
        byte(self.buffer.as_ref(), 13)
    }

    /// Window size.
    pub fn window(&self) -> u16 {
        be16(self.buffer.as_ref(), 14)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 16)
    }

    /// The payload after the header and options.
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }

    /// True when the checksum is right for the given addresses (the whole buffer is the segment).
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        let bytes = self.buffer.as_ref();
        checksum::finish(checksum::accumulate(
            pseudo(src, dst, bytes.len() as u32),
            bytes,
        )) == 0
    }
}

fn pseudo(src: IpAddr, dst: IpAddr, len: u32) -> u32 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => checksum::pseudo_header_v4(s, d, 6, len),
        (IpAddr::V6(s), IpAddr::V6(d)) => checksum::pseudo_header_v6(s, d, 6, len),
        _ => 0,
    }
}

/// The fields of a TCP header (without options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgement number.
    pub ack_number: u32,
    /// Flag bits.
    pub flags: u8,
    /// Window size.
    pub window: u16,
}

impl TcpRepr {
    /// Validates the header (and the checksum over the whole buffer) and lifts the fields.
    pub fn parse<T: AsRef<[u8]>>(packet: &TcpPacket<T>, src: IpAddr, dst: IpAddr) -> Result<Self> {
        let packet = TcpPacket::new_checked(packet.buffer.as_ref())?;
        if !packet.verify_checksum(src, dst) {
            return Err(Error::Checksum);
        }
        Ok(Self {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window: packet.window(),
        })
    }

    /// Writes a 20-byte header before the payload already in place, and the checksum over the
    /// whole buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut TcpPacket<T>,
        src: IpAddr,
        dst: IpAddr,
    ) {
        let bytes = packet.buffer.as_mut();
        put16(bytes, 0, self.src_port);
        put16(bytes, 2, self.dst_port);
        put32(bytes, 4, self.seq_number);
        put32(bytes, 8, self.ack_number);
        put8(bytes, 12, 5 << 4);
        put8(bytes, 13, self.flags);
        put16(bytes, 14, self.window);
        put16(bytes, 16, 0);
        put16(bytes, 18, 0);
        let sum = checksum::finish(checksum::accumulate(
            pseudo(src, dst, bytes.len() as u32),
            bytes,
        ));
        put16(bytes, 16, sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const DST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn emits_parses_and_checks() {
        let repr = TcpRepr {
            src_port: 80,
            dst_port: 40000,
            seq_number: 0x01020304,
            ack_number: 0x0a0b0c0d,
            flags: flags::SYN | flags::ACK,
            window: 65535,
        };
        let mut bytes = [0u8; 23];
        bytes[20..].copy_from_slice(b"abc");
        repr.emit(&mut TcpPacket::new_unchecked(&mut bytes[..]), SRC, DST);
        assert_eq!(
            &bytes[..16],
            &[0, 80, 0x9c, 0x40, 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, 0x50, 0x12, 0xff, 0xff]
        );
        let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(TcpRepr::parse(&packet, SRC, DST).unwrap(), repr);
        assert_eq!(packet.payload(), b"abc");
        bytes[21] ^= 1;
        let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            TcpRepr::parse(&packet, SRC, DST).unwrap_err(),
            Error::Checksum
        );
    }

    #[test]
    fn data_offset_must_fit() {
        let mut bytes = [0u8; 20];
        bytes[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&bytes[..]).unwrap_err(),
            Error::Malformed
        );
        bytes[12] = 0x60;
        assert_eq!(
            TcpPacket::new_checked(&bytes[..]).unwrap_err(),
            Error::Truncated
        );
    }
}
