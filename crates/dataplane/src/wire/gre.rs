//! GRE headers (RFC 2784 with the RFC 2890 key and sequence number extensions).

use super::{be16, be32, put16, put32, Error, Result};

const FLAG_CHECKSUM: u16 = 0x8000;
const FLAG_KEY: u16 = 0x2000;
const FLAG_SEQUENCE: u16 = 0x1000;
const VERSION_MASK: u16 = 0x0007;
/// Bits that must be zero in version 0 (routing, strict source route, recursion, flags).
const RESERVED_MASK: u16 = 0x4ff8;

/// A view of a GRE header and its payload.
#[derive(Debug, Clone)]
pub struct GrePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GrePacket<T> {
    /// Wraps `buffer` after checking version 0, no reserved bits, and the optional fields fit.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self { buffer };
        let len = packet.buffer.as_ref().len();
        if len < 4 {
            return Err(Error::Truncated);
        }
        let word = be16(packet.buffer.as_ref(), 0);
        if word & VERSION_MASK != 0 || word & RESERVED_MASK != 0 {
            return Err(Error::Unsupported);
        }
        if len < packet.header_len() {
            return Err(Error::Truncated);
        }
        Ok(packet)
    }

    /// Wraps `buffer` without checking.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    fn flags(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }

    /// True when the checksum field is present.
    pub fn has_checksum(&self) -> bool {
        self.flags() & FLAG_CHECKSUM != 0
    }

    /// True when the key field is present.
    pub fn has_key(&self) -> bool {
        self.flags() & FLAG_KEY != 0
    }

    /// True when the sequence number field is present.
    pub fn has_sequence(&self) -> bool {
        self.flags() & FLAG_SEQUENCE != 0
    }

    /// The protocol type (an EtherType) of the payload.
    pub fn protocol(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    /// Header length including the optional fields.
    pub fn header_len(&self) -> usize {
        4 + 4
            * (usize::from(self.has_checksum())
                + usize::from(self.has_key())
                + usize::from(self.has_sequence()))
    }

    /// The key, when present.
    pub fn key(&self) -> Option<u32> {
        let at = 4 + 4 * usize::from(self.has_checksum());
        self.has_key().then(|| be32(self.buffer.as_ref(), at))
    }

    /// The sequence number, when present.
    pub fn sequence(&self) -> Option<u32> {
        let at = 4 + 4 * (usize::from(self.has_checksum()) + usize::from(self.has_key()));
        self.has_sequence().then(|| be32(self.buffer.as_ref(), at))
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }
}

/// The fields of a GRE header (the checksum, when requested, is computed by `emit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreRepr {
    /// Payload protocol (EtherType).
    pub protocol: u16,
    /// Whether a checksum is present.
    pub checksum: bool,
    /// Key.
    pub key: Option<u32>,
    /// Sequence number.
    pub sequence: Option<u32>,
}

impl GreRepr {
    /// Validates the header (and its checksum when present) and lifts the fields.
    pub fn parse<T: AsRef<[u8]>>(packet: &GrePacket<T>) -> Result<Self> {
        let packet = GrePacket::new_checked(packet.buffer.as_ref())?;
        if packet.has_checksum() && super::checksum::checksum(packet.buffer) != 0 {
            return Err(Error::Checksum);
        }
        Ok(Self {
            protocol: packet.protocol(),
            checksum: packet.has_checksum(),
            key: packet.key(),
            sequence: packet.sequence(),
        })
    }

    /// Header length `emit` writes.
    pub fn header_len(&self) -> usize {
        4 + 4
            * (usize::from(self.checksum)
                + usize::from(self.key.is_some())
                + usize::from(self.sequence.is_some()))
    }

    /// Writes the header before the payload already in place (the checksum covers the buffer).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut GrePacket<T>) {
        let bytes = packet.buffer.as_mut();
        let mut flags = 0;
        if self.checksum {
            flags |= FLAG_CHECKSUM;
        }
        if self.key.is_some() {
            flags |= FLAG_KEY;
        }
        if self.sequence.is_some() {
            flags |= FLAG_SEQUENCE;
        }
        put16(bytes, 0, flags);
        put16(bytes, 2, self.protocol);
        let mut at = 4;
        if self.checksum {
            put32(bytes, at, 0);
            at += 4;
        }
        if let Some(key) = self.key {
            put32(bytes, at, key);
            at += 4;
        }
        if let Some(sequence) = self.sequence {
            put32(bytes, at, sequence);
        }
        if self.checksum {
            let sum = super::checksum::checksum(bytes);
            put16(bytes, 4, sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_header_carrying_comet() {
        let bytes = [0x00, 0x00, 0xcc, 0xcc, 0x10, 0x00];
        let packet = GrePacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            GreRepr::parse(&packet).unwrap(),
            GreRepr {
                protocol: 0xcccc,
                checksum: false,
                key: None,
                sequence: None
            }
        );
        assert_eq!(packet.payload(), &[0x10, 0x00]);
    }

    #[test]
    fn key_and_sequence_round_trip() {
        let repr = GreRepr {
            protocol: 0x0800,
            checksum: true,
            key: Some(0xdeadbeef),
            sequence: Some(7),
        };
        let mut bytes = [0u8; 18];
        bytes[16..].copy_from_slice(&[0xab, 0xcd]);
        repr.emit(&mut GrePacket::new_unchecked(&mut bytes[..]));
        assert_eq!(&bytes[..4], &[0xb0, 0x00, 0x08, 0x00]);
        assert_eq!(&bytes[8..16], &[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 7]);
        let packet = GrePacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(GreRepr::parse(&packet).unwrap(), repr);
        bytes[17] ^= 1;
        assert_eq!(
            GreRepr::parse(&GrePacket::new_checked(&bytes[..]).unwrap()).unwrap_err(),
            Error::Checksum
        );
    }

    #[test]
    fn rejects_other_versions_and_short_options() {
        assert_eq!(
            GrePacket::new_checked(&[0x00, 0x01, 0x88, 0x0b][..]).unwrap_err(),
            Error::Unsupported
        );
        assert_eq!(
            GrePacket::new_checked(&[0x20, 0x00, 0x08, 0x00, 0, 0][..]).unwrap_err(),
            Error::Truncated
        );
    }
}
