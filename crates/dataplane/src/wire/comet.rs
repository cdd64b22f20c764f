//! The COMET header (EtherType 0xCCCC): the path of 1-byte forwarding keys a stateless CAFE
//! follows (seed 004 §5). The exact bytes are specified in `docs/comet-header.md`:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  Flags|     Index     |    Length     |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |        Inner Protocol         |  Key 0  |  Key 1  |  ...      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! `Length` keys follow the fixed 6 bytes; the inner IP packet follows the last key. `Index` is
//! the position of the key the receiving CAFE uses; when `Index = Length` the path is complete
//! and the receiver removes the header.

use super::{be16, byte, put16, put8, Error, Result};

/// Length of the fixed part (before the keys).
pub const FIXED_LEN: usize = 6;
/// The only version defined.
pub const VERSION: u8 = 1;
/// Most keys a header can carry (the length field is one byte).
pub const MAX_KEYS: usize = 255;

/// A view of a COMET header and the packet it carries.
#[derive(Debug, Clone)]
pub struct CometPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> CometPacket<T> {
    /// Wraps `buffer` after checking the version, that at least one key is present, that the
    /// index does not exceed the length and that all keys fit.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self { buffer };
        let len = packet.buffer.as_ref().len();
        if len < FIXED_LEN {
            return Err(Error::Truncated);
        }
        if packet.version() != VERSION {
            return Err(Error::Unsupported);
        }
        if packet.length() == 0 || packet.index() > packet.length() {
            return Err(Error::Malformed);
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

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Header version (1).
    pub fn version(&self) -> u8 {
        byte(self.buffer.as_ref(), 0) >> 4
    }

    /// Flag bits (none defined; sent as 0, ignored on receipt).
    pub fn flags(&self) -> u8 {
        byte(self.buffer.as_ref(), 0) & 0x0f
    }

    /// Position of the key the receiving CAFE uses.
    pub fn index(&self) -> u8 {
        byte(self.buffer.as_ref(), 1)
    }

    /// Number of keys.
    pub fn length(&self) -> u8 {
        byte(self.buffer.as_ref(), 2)
    }

    /// EtherType of the carried packet (0x0800 IPv4, 0x86DD IPv6).
    pub fn inner_protocol(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }

    /// Header length: fixed part plus keys.
    pub fn header_len(&self) -> usize {
        FIXED_LEN + usize::from(self.length())
    }

    /// All keys of the path.
    pub fn keys(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(FIXED_LEN..self.header_len())
            .unwrap_or(&[])
    }

    /// The key at `index`, or `None` when the path is complete.
    pub fn current_key(&self) -> Option<u8> {
        self.keys().get(usize::from(self.index())).copied()
    }

    /// True when every key has been used (`index = length`): the receiver decapsulates.
    pub fn is_path_complete(&self) -> bool {
        self.index() >= self.length()
    }

    /// The carried packet.
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> CometPacket<T> {
    /// Sets the index.
    pub fn set_index(&mut self, index: u8) {
        put8(self.buffer.as_mut(), 1, index);
    }
}

/// The fields of a COMET header. `keys` borrows from the packet or from the filter that
/// creates the header, so parsing and emitting never allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CometRepr<'a> {
    /// Position of the key the receiver uses.
    pub index: u8,
    /// EtherType of the carried packet.
    pub inner_protocol: u16,
    /// The path, one key per CAFE.
    pub keys: &'a [u8],
}

impl<'a> CometRepr<'a> {
    /// Validates the header and lifts the fields.
    pub fn parse(packet: &CometPacket<&'a [u8]>) -> Result<Self> {
        let bytes: &'a [u8] = packet.buffer;
        let checked = CometPacket::new_checked(bytes)?;
        Ok(Self {
            index: checked.index(),
            inner_protocol: checked.inner_protocol(),
            keys: bytes.get(FIXED_LEN..checked.header_len()).unwrap_or(&[]),
        })
    }

    /// Header length `emit` writes.
    pub fn header_len(&self) -> usize {
        FIXED_LEN + self.keys.len().min(MAX_KEYS)
    }

    /// Writes the header (at most [`MAX_KEYS`] keys; the index is clamped to the length).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut CometPacket<T>) {
        let count = self.keys.len().min(MAX_KEYS);
        let bytes = packet.buffer.as_mut();
        put8(bytes, 0, VERSION << 4);
        put8(bytes, 1, self.index.min(count as u8));
        put8(bytes, 2, count as u8);
        put8(bytes, 3, 0);
        put16(bytes, 4, self.inner_protocol);
        if let (Some(dst), Some(src)) = (
            bytes.get_mut(FIXED_LEN..FIXED_LEN + count),
            self.keys.get(..count),
        ) {
            dst.copy_from_slice(src);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The §5.3.3 example path 12 34 56 78 90 ab cd ef, second hop (index 1), carrying IPv4.
    const HEADER: [u8; 16] = [
        0x10, 0x01, 0x08, 0x00, 0x08, 0x00, 0x12, 0x34, 0x56, 0x78, 0x90, 0xab, 0xcd, 0xef, 0x45,
        0x00,
    ];

    #[test]
    fn parses_vector() {
        let packet = CometPacket::new_checked(&HEADER[..]).unwrap();
        let repr = CometRepr::parse(&packet).unwrap();
        assert_eq!(repr.index, 1);
        assert_eq!(repr.inner_protocol, 0x0800);
        assert_eq!(repr.keys, &[0x12, 0x34, 0x56, 0x78, 0x90, 0xab, 0xcd, 0xef]);
        assert_eq!(packet.current_key(), Some(0x34));
        assert!(!packet.is_path_complete());
        assert_eq!(packet.payload(), &[0x45, 0x00]);
    }

    #[test]
    fn emits_vector() {
        let keys = [0x12, 0x34, 0x56, 0x78, 0x90, 0xab, 0xcd, 0xef];
        let mut out = [0u8; 16];
        out[14..].copy_from_slice(&[0x45, 0x00]);
        CometRepr {
            index: 1,
            inner_protocol: 0x0800,
            keys: &keys,
        }
        .emit(&mut CometPacket::new_unchecked(&mut out[..]));
        assert_eq!(out, HEADER);
    }

    #[test]
    fn complete_path_has_no_current_key() {
        let mut bytes = HEADER;
        CometPacket::new_unchecked(&mut bytes[..]).set_index(8);
        let packet = CometPacket::new_checked(&bytes[..]).unwrap();
        assert!(packet.is_path_complete());
        assert_eq!(packet.current_key(), None);
    }

    #[test]
    fn rejects_malformed_headers() {
        let mut bytes = HEADER;
        bytes[1] = 9; // index beyond length
        assert_eq!(
            CometPacket::new_checked(&bytes[..]).unwrap_err(),
            Error::Malformed
        );
        bytes = HEADER;
        bytes[2] = 0; // no keys
        assert_eq!(
            CometPacket::new_checked(&bytes[..]).unwrap_err(),
            Error::Malformed
        );
        bytes = HEADER;
        bytes[0] = 0x20; // version 2
        assert_eq!(
            CometPacket::new_checked(&bytes[..]).unwrap_err(),
            Error::Unsupported
        );
        assert_eq!(
            CometPacket::new_checked(&HEADER[..10]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            CometPacket::new_checked(&HEADER[..5]).unwrap_err(),
            Error::Truncated
        );
    }
}
