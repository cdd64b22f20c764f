//! Zero-copy view over a RADIUS datagram (smoltcp `wire` style).
//!
//! [`Packet::new_checked`] validates the header and walks every attribute once, so that every
//! accessor afterwards is infallible. [`Packet::new_unchecked`] skips that walk; its accessors
//! still never panic (they return zeros or stop iterating on short or malformed buffers).

use crate::error::PacketError;

/// Octets of the fixed header: Code, Identifier, Length, Authenticator.
pub const HEADER_LEN: usize = 20;
/// Largest packet RFC 2865 §3 allows.
pub const MAX_PACKET_LEN: usize = 4096;
/// Largest attribute value: 255 minus the Type and Length octets.
pub const MAX_VALUE_LEN: usize = 253;

mod field {
    pub const CODE: usize = 0;
    pub const IDENTIFIER: usize = 1;
    pub const LENGTH: std::ops::Range<usize> = 2..4;
    pub const AUTHENTICATOR: std::ops::Range<usize> = 4..20;
}

/// A read (and, for mutable buffers, header-write) view over a RADIUS datagram.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// One attribute as it appears on the wire, borrowed from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttr<'a> {
    /// Attribute type octet.
    pub typ: u8,
    /// Attribute value (without the Type and Length octets).
    pub value: &'a [u8],
}

/// Iterator over the attributes of a [`Packet`], in wire order.
///
/// Stops at the first malformed attribute; on a buffer accepted by [`Packet::new_checked`] there
/// is none.
#[derive(Debug, Clone)]
pub struct AttributeIter<'a> {
    data: &'a [u8],
    offset: usize,
}

impl<'a> AttributeIter<'a> {
    /// Iterates over a bare attribute list (the octets after the header).
    pub fn new(attributes: &'a [u8]) -> Self {
        AttributeIter {
            data: attributes,
            offset: 0,
        }
    }
}

impl<'a> Iterator for AttributeIter<'a> {
    type Item = RawAttr<'a>;

    fn next(&mut self) -> Option<RawAttr<'a>> {
        let rest = self.data.get(self.offset..)?;
        let (&typ, &len) = (rest.first()?, rest.get(1)?);
        let value = rest.get(2..usize::from(len))?;
        self.offset += usize::from(len);
        Some(RawAttr { typ, value })
    }
}

/// Walks a bare attribute list and checks that the TLVs end exactly at its end.
///
/// `base` is added to offsets in errors (20 for a packet's attribute area).
pub fn check_attributes(attributes: &[u8], base: usize) -> Result<(), PacketError> {
    let mut offset = 0;
    while offset < attributes.len() {
        let Some(&len) = attributes.get(offset + 1) else {
            return Err(PacketError::AttributeOverrun {
                offset: base + offset,
            });
        };
        let len = usize::from(len);
        if len < 2 {
            return Err(PacketError::ZeroLengthAttribute {
                offset: base + offset,
            });
        }
        if offset + len > attributes.len() {
            return Err(PacketError::AttributeOverrun {
                offset: base + offset,
            });
        }
        offset += len;
    }
    Ok(())
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without any check.
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer after checking the header and the attribute list (see [`Packet::check`]).
    pub fn new_checked(buffer: T) -> Result<Self, PacketError> {
        let packet = Packet { buffer };
        packet.check()?;
        Ok(packet)
    }

    /// Checks `20 <= Length <= 4096`, `Length <= buffer length`, and that the attribute TLVs,
    /// each at least 2 octets long, end exactly at Length. Octets after Length are padding and
    /// ignored (RFC 2865 §3).
    pub fn check(&self) -> Result<(), PacketError> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(PacketError::Truncated { len: data.len() });
        }
        let length = self.length();
        if usize::from(length) < HEADER_LEN || usize::from(length) > MAX_PACKET_LEN {
            return Err(PacketError::BadLength { length });
        }
        if usize::from(length) > data.len() {
            return Err(PacketError::LengthExceedsBuffer {
                length,
                available: data.len(),
            });
        }
        check_attributes(&data[HEADER_LEN..usize::from(length)], HEADER_LEN)
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The Code octet (0 on a buffer too short to hold it).
    pub fn code(&self) -> u8 {
        self.buffer.as_ref().get(field::CODE).copied().unwrap_or(0)
    }

    /// The Identifier octet.
    pub fn identifier(&self) -> u8 {
        self.buffer
            .as_ref()
            .get(field::IDENTIFIER)
            .copied()
            .unwrap_or(0)
    }

    /// The Length field.
    pub fn length(&self) -> u16 {
        match self.buffer.as_ref().get(field::LENGTH) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => 0,
        }
    }

    /// The 16-octet Authenticator.
    pub fn authenticator(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        if let Some(b) = self.buffer.as_ref().get(field::AUTHENTICATOR) {
            out.copy_from_slice(b);
        }
        out
    }

    /// The packet octets up to Length (or the whole buffer if Length lies).
    pub fn as_bytes(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        let end = usize::from(self.length()).min(data.len());
        if end < HEADER_LEN {
            data
        } else {
            &data[..end]
        }
    }

    /// The attribute area (octets 20..Length).
    pub fn attribute_bytes(&self) -> &[u8] {
        self.as_bytes().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// The attributes in wire order.
    pub fn attributes(&self) -> AttributeIter<'_> {
        AttributeIter::new(self.attribute_bytes())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the Identifier octet (no effect on a buffer too short).
    pub fn set_identifier(&mut self, id: u8) {
        if let Some(b) = self.buffer.as_mut().get_mut(field::IDENTIFIER) {
            *b = id;
        }
    }

    /// Overwrites the Authenticator (no effect on a buffer too short).
    pub fn set_authenticator(&mut self, authenticator: &[u8; 16]) {
        if let Some(b) = self.buffer.as_mut().get_mut(field::AUTHENTICATOR) {
            b.copy_from_slice(authenticator);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(attrs: &[u8]) -> Vec<u8> {
        let len = (20 + attrs.len()) as u16;
        let mut p = vec![1, 7];
        p.extend_from_slice(&len.to_be_bytes());
        p.extend_from_slice(&[0xAA; 16]);
        p.extend_from_slice(attrs);
        p
    }

    #[test]
    fn header_and_attributes() {
        let p = packet(&[1, 5, b'b', b'o', b'b', 4, 6, 127, 0, 0, 1]);
        let view = Packet::new_checked(&p[..]).unwrap();
        assert_eq!(view.code(), 1);
        assert_eq!(view.identifier(), 7);
        assert_eq!(view.length(), 31);
        assert_eq!(view.authenticator(), [0xAA; 16]);
        let attrs: Vec<_> = view.attributes().collect();
        assert_eq!(
            attrs,
            vec![
                RawAttr {
                    typ: 1,
                    value: b"bob"
                },
                RawAttr {
                    typ: 4,
                    value: &[127, 0, 0, 1]
                }
            ]
        );
    }

    #[test]
    fn errors_are_precise() {
        assert_eq!(
            Packet::new_checked(&[1u8, 2, 0][..]).unwrap_err(),
            PacketError::Truncated { len: 3 }
        );
        let mut p = packet(&[]);
        p[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&p[..]).unwrap_err(),
            PacketError::BadLength { length: 19 }
        );
        p[2..4].copy_from_slice(&4097u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&p[..]).unwrap_err(),
            PacketError::BadLength { length: 4097 }
        );
        p[2..4].copy_from_slice(&21u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&p[..]).unwrap_err(),
            PacketError::LengthExceedsBuffer {
                length: 21,
                available: 20
            }
        );
        let p = packet(&[1, 1, 0]);
        assert_eq!(
            Packet::new_checked(&p[..]).unwrap_err(),
            PacketError::ZeroLengthAttribute { offset: 20 }
        );
        let p = packet(&[1, 3, b'a', 2, 9, 0]);
        assert_eq!(
            Packet::new_checked(&p[..]).unwrap_err(),
            PacketError::AttributeOverrun { offset: 23 }
        );
        let p = packet(&[1, 3, b'a', 2]);
        assert_eq!(
            Packet::new_checked(&p[..]).unwrap_err(),
            PacketError::AttributeOverrun { offset: 23 }
        );
    }

    #[test]
    fn padding_after_length_is_ignored() {
        let mut p = packet(&[1, 3, b'a']);
        p.extend_from_slice(&[0xFF, 0xFF]);
        let view = Packet::new_checked(&p[..]).unwrap();
        assert_eq!(view.attributes().count(), 1);
        assert_eq!(view.as_bytes().len(), 23);
    }

    #[test]
    fn setters_write_header() {
        let mut p = packet(&[]);
        let mut view = Packet::new_unchecked(&mut p[..]);
        view.set_identifier(9);
        view.set_authenticator(&[1; 16]);
        assert_eq!(view.identifier(), 9);
        assert_eq!(view.authenticator(), [1; 16]);
    }

    #[test]
    fn unchecked_accessors_never_panic_on_short_buffers() {
        let view = Packet::new_unchecked(&[5u8][..]);
        assert_eq!(view.code(), 5);
        assert_eq!(view.identifier(), 0);
        assert_eq!(view.length(), 0);
        assert_eq!(view.attributes().count(), 0);
    }
}
