//! The owned, editable form of a RADIUS packet: what the AAA engine and operator scripts read
//! and rewrite between receiving a datagram and sending one.
//!
//! A [`Message`] keeps its attributes in one buffer ([`Attributes`]): the attribute area of the
//! datagram it was decoded from, copied once, plus the offset of each attribute in wire order.
//! Decoding therefore costs two allocations whatever the attribute count, and a message that
//! was only appended to encodes with one copy. Edits append the new TLVs to the buffer and
//! re-point the offsets; removed and replaced TLVs stay behind as dead bytes until they
//! outweigh the live ones, when the buffer is rebuilt once.

use std::fmt;
use std::hash::{Hash, Hasher};

use crate::attr::VENDOR_SPECIFIC;
use crate::code::Code;
use crate::dict::Dictionary;
use crate::error::PacketError;
use crate::vsa::{vsa_build, vsa_split};
use crate::wire::{self, RawAttr, HEADER_LEN, MAX_PACKET_LEN, MAX_VALUE_LEN};

/// An owned RADIUS packet: header fields plus the attribute list in wire order (Vendor-Specific
/// attributes kept whole, repeated instances kept).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Message {
    /// Packet code.
    pub code: Code,
    /// Identifier octet.
    pub identifier: u8,
    /// Authenticator, encoded as stored (sign with [`crate::auth`] after encoding).
    pub authenticator: [u8; 16],
    /// Attributes in wire order.
    pub attributes: Attributes,
}

impl Message {
    /// An empty message with a zero authenticator.
    pub fn new(code: Code, identifier: u8) -> Message {
        Message {
            code,
            identifier,
            authenticator: [0; 16],
            attributes: Attributes::new(),
        }
    }

    /// Decodes a datagram (validated by [`wire::Packet::new_checked`]; octets after Length are
    /// padding and ignored).
    pub fn decode(bytes: &[u8]) -> Result<Message, PacketError> {
        let view = wire::Packet::new_checked(bytes)?;
        Ok(Message {
            code: Code::from(view.code()),
            identifier: view.identifier(),
            authenticator: view.authenticator(),
            attributes: Attributes::from_checked_wire(view.attribute_bytes()),
        })
    }

    /// Length the encoded message will have.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.attributes.wire_len()
    }

    /// Encodes the message with the authenticator as stored.
    pub fn encode(&self) -> Result<Vec<u8>, PacketError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Encodes the message, appending to `out` (which is left unchanged on error).
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), PacketError> {
        let length = self.encoded_len();
        if length > MAX_PACKET_LEN {
            return Err(PacketError::TooLong { length });
        }
        out.reserve(length);
        out.push(self.code.into());
        out.push(self.identifier);
        out.extend_from_slice(&(length as u16).to_be_bytes());
        out.extend_from_slice(&self.authenticator);
        self.attributes.write_wire(out);
        Ok(())
    }

    /// Value of the first instance of `typ`.
    pub fn get(&self, typ: u8) -> Option<&[u8]> {
        self.attributes.first(typ)
    }

    /// Values of every instance of `typ`, in order.
    pub fn get_all(&self, typ: u8) -> impl Iterator<Item = &[u8]> {
        self.attributes.all(typ)
    }

    /// Appends an attribute; a value longer than 253 octets is refused and changes nothing.
    pub fn add(&mut self, typ: u8, value: impl AsRef<[u8]>) -> Result<(), PacketError> {
        self.attributes.push(typ, value.as_ref())
    }

    /// Appends an attribute whose value has a size known to fit (an integer, an address, a
    /// token): unlike [`Message::add`] this cannot be refused.
    pub fn add_fixed<const N: usize>(&mut self, typ: u8, value: [u8; N]) {
        const {
            assert!(
                N <= MAX_VALUE_LEN,
                "an attribute value holds at most 253 octets"
            )
        };
        let offset = self.attributes.bytes.len();
        self.attributes.bytes.push(typ);
        self.attributes.bytes.push((2 + N) as u8);
        self.attributes.bytes.extend_from_slice(&value);
        self.attributes.offsets.push(offset);
    }

    /// Appends a copy of every instance of `typ` in `from`, in order (Proxy-State from a request
    /// into its reply, RFC 2865 §5.33). Cannot be refused: `from` holds only valid attributes.
    pub fn copy_all(&mut self, typ: u8, from: &Message) {
        for &offset in &from.attributes.offsets {
            let len = from
                .attributes
                .bytes
                .get(offset + 1)
                .map_or(0, |&l| usize::from(l));
            match from.attributes.bytes.get(offset..offset + len) {
                Some(tlv) if tlv.first() == Some(&typ) => {
                    self.attributes.offsets.push(self.attributes.bytes.len());
                    self.attributes.bytes.extend_from_slice(tlv);
                }
                _ => {}
            }
        }
    }

    /// Replaces every instance of `typ` by one with `value`, at the position of the first
    /// instance (appended if there was none).
    pub fn set(&mut self, typ: u8, value: impl AsRef<[u8]>) -> Result<(), PacketError> {
        self.attributes.set_all(typ, [value])
    }

    /// Removes every instance of `typ`; returns how many were removed.
    pub fn remove(&mut self, typ: u8) -> usize {
        self.attributes.retain(|a| a.typ != typ)
    }

    /// The Acct-Status-Type, if the message carries a well-formed one.
    pub fn acct_status_type(&self) -> Option<crate::AcctStatusType> {
        self.get(crate::attr::ACCT_STATUS_TYPE)
            .and_then(crate::AcctStatusType::from_value)
    }

    /// Value of the first vendor sub-attribute `(vendor, typ)` found in the Vendor-Specific
    /// attributes, using the vendor's `format=` from `dict` (1,1 when unknown).
    pub fn get_vsa(&self, dict: &Dictionary, vendor: u32, typ: u32) -> Option<Vec<u8>> {
        self.get_vsa_all(dict, vendor, typ).into_iter().next()
    }

    /// Values of every vendor sub-attribute `(vendor, typ)`, in wire order. Malformed
    /// Vendor-Specific attributes are skipped.
    pub fn get_vsa_all(&self, dict: &Dictionary, vendor: u32, typ: u32) -> Vec<Vec<u8>> {
        let format = dict.vendor_format(vendor);
        let mut out = Vec::new();
        for value in self.get_all(VENDOR_SPECIFIC) {
            if let Some(subs) = vsa_split(value, vendor, format) {
                out.extend(
                    subs.into_iter()
                        .filter(|s| s.typ == typ)
                        .map(|s| s.value.to_vec()),
                );
            }
        }
        out
    }

    /// Appends a Vendor-Specific attribute holding one sub-attribute.
    pub fn add_vsa(
        &mut self,
        dict: &Dictionary,
        vendor: u32,
        typ: u32,
        value: &[u8],
    ) -> Result<(), PacketError> {
        let vsa = vsa_build(vendor, typ, value, dict.vendor_format(vendor))?;
        self.add(VENDOR_SPECIFIC, vsa)
    }

    /// Removes every sub-attribute `(vendor, typ)`; Vendor-Specific attributes left empty are
    /// dropped, others are re-encoded with their remaining sub-attributes. Returns how many
    /// sub-attributes were removed.
    pub fn remove_vsa(&mut self, dict: &Dictionary, vendor: u32, typ: u32) -> usize {
        let format = dict.vendor_format(vendor);
        let mut removed = 0;
        let mut index = 0;
        while let Some(attr) = self.attributes.get(index) {
            let subs = (attr.typ == VENDOR_SPECIFIC)
                .then(|| vsa_split(attr.value, vendor, format))
                .flatten()
                .unwrap_or_default();
            let count = subs.iter().filter(|s| s.typ == typ).count();
            if count == 0 {
                index += 1;
                continue;
            }
            removed += count;
            if count == subs.len() {
                self.attributes.remove_at(index);
                continue;
            }
            let mut rebuilt = vendor.to_be_bytes().to_vec();
            for s in subs.iter().filter(|s| s.typ != typ) {
                rebuilt.extend_from_slice(s.raw);
            }
            // Shorter than the attribute it came from, so it fits.
            let _ = self.attributes.replace(index, &rebuilt);
            index += 1;
        }
        removed
    }
}

/// The attribute list of a [`Message`]: the TLVs in one buffer, with the offset of each live
/// one in wire order.
///
/// Every TLV in the buffer is well formed (Length = 2 + value, value at most 253 octets): edits
/// that would break that are refused with a [`PacketError`] and change nothing.
#[derive(Clone)]
pub struct Attributes {
    /// TLVs exactly as on the wire; those no offset points to are dead.
    bytes: Vec<u8>,
    /// Offset in `bytes` of each attribute's Type octet, in wire order.
    offsets: Vec<usize>,
    /// Octets of `bytes` in dead TLVs.
    dead: usize,
    /// Whether `offsets` walks `bytes` from start to end with no dead TLV, so that `bytes` is
    /// the wire encoding as it stands.
    packed: bool,
}

impl Default for Attributes {
    fn default() -> Self {
        Self::new()
    }
}

/// Dead octets tolerated before an edit rebuilds the buffer (beyond as many as are live).
const DEAD_SLACK: usize = 512;

impl Attributes {
    /// An empty list.
    pub fn new() -> Self {
        Attributes {
            bytes: Vec::new(),
            offsets: Vec::new(),
            dead: 0,
            packed: true,
        }
    }

    /// Copies an attribute area that [`wire::check_attributes`] accepted.
    fn from_checked_wire(area: &[u8]) -> Self {
        let mut offsets = Vec::with_capacity(area.len() / 8 + 1);
        let mut at = 0;
        while let Some(&len) = area.get(at + 1) {
            offsets.push(at);
            // A checked area has no Length below 2; `max` only keeps a bad one from looping.
            at += usize::from(len).max(2);
        }
        Attributes {
            bytes: area.to_vec(),
            offsets,
            dead: 0,
            packed: true,
        }
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether there is no attribute.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    fn at(&self, offset: usize) -> RawAttr<'_> {
        let typ = self.bytes.get(offset).copied().unwrap_or(0);
        let len = self.bytes.get(offset + 1).map_or(2, |&l| usize::from(l));
        let value = self.bytes.get(offset + 2..offset + len).unwrap_or(&[]);
        RawAttr { typ, value }
    }

    /// The attribute at `index` in wire order.
    pub fn get(&self, index: usize) -> Option<RawAttr<'_>> {
        self.offsets.get(index).map(|&offset| self.at(offset))
    }

    /// The attributes in wire order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            attributes: self,
            offsets: self.offsets.iter(),
        }
    }

    /// Value of the first instance of `typ`.
    pub fn first(&self, typ: u8) -> Option<&[u8]> {
        self.iter().find(|a| a.typ == typ).map(|a| a.value)
    }

    /// Values of every instance of `typ`, in order.
    pub fn all(&self, typ: u8) -> impl Iterator<Item = &[u8]> {
        self.iter().filter(move |a| a.typ == typ).map(|a| a.value)
    }

    /// Index of the first instance of `typ`.
    pub fn position(&self, typ: u8) -> Option<usize> {
        self.iter().position(|a| a.typ == typ)
    }

    /// Octets the attributes take on the wire.
    pub fn wire_len(&self) -> usize {
        self.bytes.len() - self.dead
    }

    /// Appends the wire encoding of the attributes to `out`.
    pub fn write_wire(&self, out: &mut Vec<u8>) {
        if self.packed {
            out.extend_from_slice(&self.bytes);
            return;
        }
        for &offset in &self.offsets {
            let len = self.bytes.get(offset + 1).map_or(0, |&l| usize::from(l));
            out.extend_from_slice(self.bytes.get(offset..offset + len).unwrap_or(&[]));
        }
    }

    /// Writes one TLV at the end of the buffer and returns its offset.
    fn append_tlv(&mut self, typ: u8, value: &[u8]) -> Result<usize, PacketError> {
        if value.len() > MAX_VALUE_LEN {
            return Err(PacketError::ValueTooLong {
                typ,
                len: value.len(),
            });
        }
        let offset = self.bytes.len();
        self.bytes.reserve(2 + value.len());
        self.bytes.push(typ);
        self.bytes.push((2 + value.len()) as u8);
        self.bytes.extend_from_slice(value);
        Ok(offset)
    }

    fn index_error(&self, index: usize) -> PacketError {
        PacketError::NoAttributeAt {
            index,
            len: self.len(),
        }
    }

    /// Appends an attribute (a value longer than 253 octets is refused).
    pub fn push(&mut self, typ: u8, value: &[u8]) -> Result<(), PacketError> {
        let offset = self.append_tlv(typ, value)?;
        self.offsets.push(offset);
        Ok(())
    }

    /// Inserts an attribute before the one at `index` (`index == len()` appends).
    pub fn insert(&mut self, index: usize, typ: u8, value: &[u8]) -> Result<(), PacketError> {
        if index > self.len() {
            return Err(self.index_error(index));
        }
        let offset = self.append_tlv(typ, value)?;
        if index < self.len() {
            self.packed = false;
        }
        self.offsets.insert(index, offset);
        Ok(())
    }

    /// Replaces the value of the attribute at `index`, keeping its type and position.
    pub fn replace(&mut self, index: usize, value: &[u8]) -> Result<(), PacketError> {
        let Some(&offset) = self.offsets.get(index) else {
            return Err(self.index_error(index));
        };
        let old = self.at(offset);
        let (typ, old_len) = (old.typ, old.value.len());
        if value.len() == old_len {
            let start = offset + 2;
            if let Some(slot) = self.bytes.get_mut(start..start + old_len) {
                slot.copy_from_slice(value);
            }
            return Ok(());
        }
        let new = self.append_tlv(typ, value)?;
        self.offsets[index] = new;
        self.dead += 2 + old_len;
        self.packed = false;
        self.compact_if_worthwhile();
        Ok(())
    }

    /// Removes the attribute at `index`; false (and no change) when there is none.
    pub fn remove_at(&mut self, index: usize) -> bool {
        if index >= self.len() {
            return false;
        }
        let offset = self.offsets.remove(index);
        let len = self.at(offset).value.len();
        if self.packed && index == self.offsets.len() {
            // The last TLV of a packed buffer: cut it off, the buffer stays packed.
            self.bytes.truncate(offset);
        } else {
            self.dead += 2 + len;
            self.packed = false;
            self.compact_if_worthwhile();
        }
        true
    }

    /// Keeps the attributes for which `keep` is true, in order; returns how many were removed.
    pub fn retain(&mut self, mut keep: impl FnMut(RawAttr<'_>) -> bool) -> usize {
        let before = self.len();
        let mut index = 0;
        while let Some(attr) = self.get(index) {
            if keep(attr) {
                index += 1;
            } else {
                self.remove_at(index);
            }
        }
        before - self.len()
    }

    /// Replaces every instance of `typ` by `values`, placed where the first instance was
    /// (appended when there was none). A value longer than 253 octets is refused and changes
    /// nothing.
    pub fn set_all<V: AsRef<[u8]>>(
        &mut self,
        typ: u8,
        values: impl IntoIterator<Item = V>,
    ) -> Result<(), PacketError> {
        let values: Vec<V> = values.into_iter().collect();
        if let Some(long) = values.iter().find(|v| v.as_ref().len() > MAX_VALUE_LEN) {
            return Err(PacketError::ValueTooLong {
                typ,
                len: long.as_ref().len(),
            });
        }
        let first = self.position(typ);
        if let (Some(first), Some(value)) = (first, values.first()) {
            self.replace(first, value.as_ref())?;
            // Drop the other instances, keeping the first one (now holding the new value).
            let mut index = first + 1;
            while let Some(attr) = self.get(index) {
                if attr.typ == typ {
                    self.remove_at(index);
                } else {
                    index += 1;
                }
            }
            for (at, value) in (first + 1..).zip(&values[1..]) {
                self.insert(at, typ, value.as_ref())?;
            }
            return Ok(());
        }
        // No value (clear) or no instance yet (append).
        let at = first.unwrap_or(self.len());
        self.retain(|a| a.typ != typ);
        for (offset, value) in values.iter().enumerate() {
            self.insert(at + offset, typ, value.as_ref())?;
        }
        Ok(())
    }

    /// Removes every attribute.
    pub fn clear(&mut self) {
        *self = Attributes::new();
    }

    /// Rebuilds the buffer when dead TLVs outweigh the live ones (and some slack), so that a
    /// long run of edits keeps the buffer bounded.
    fn compact_if_worthwhile(&mut self) {
        if self.dead > self.wire_len() + DEAD_SLACK {
            let mut bytes = Vec::with_capacity(self.wire_len());
            self.write_wire(&mut bytes);
            *self = Attributes::from_checked_wire(&bytes);
        }
    }
}

/// Iterator over [`Attributes`] in wire order.
#[derive(Clone, Debug)]
pub struct Iter<'a> {
    attributes: &'a Attributes,
    offsets: std::slice::Iter<'a, usize>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = RawAttr<'a>;

    fn next(&mut self) -> Option<RawAttr<'a>> {
        let offset = *self.offsets.next()?;
        Some(self.attributes.at(offset))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.offsets.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let offset = *self.offsets.next_back()?;
        Some(self.attributes.at(offset))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Attributes {
    type Item = RawAttr<'a>;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl PartialEq for Attributes {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Attributes {}

impl Hash for Attributes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.len().hash(state);
        for attr in self {
            attr.typ.hash(state);
            attr.value.hash(state);
        }
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(message: &Message) -> Vec<(u8, Vec<u8>)> {
        message
            .attributes
            .iter()
            .map(|a| (a.typ, a.value.to_vec()))
            .collect()
    }

    #[test]
    fn set_keeps_first_position_and_removes_others() {
        let mut p = Message::new(Code::AccessAccept, 1);
        p.add(25, b"a").unwrap();
        p.add(1, b"u").unwrap();
        p.add(25, b"b").unwrap();
        p.set(25, b"c").unwrap();
        assert_eq!(pairs(&p), vec![(25, b"c".to_vec()), (1, b"u".to_vec())]);
        assert_eq!(p.remove(25), 1);
        assert_eq!(p.remove(25), 0);
        p.set(18, "hi").unwrap();
        assert_eq!(p.get(18), Some(&b"hi"[..]));
    }

    #[test]
    fn edits_encode_in_list_order_and_decode_back() {
        let mut p = Message::new(Code::AccessRequest, 9);
        p.add(1, b"bob").unwrap();
        p.add(33, [0, 0, 0, 1]).unwrap();
        p.attributes.insert(0, 80, &[0; 16]).unwrap();
        p.attributes.replace(1, b"robert").unwrap();
        assert!(p.attributes.remove_at(2));
        let bytes = p.encode().unwrap();
        assert_eq!(bytes.len(), p.encoded_len());
        let back = Message::decode(&bytes).unwrap();
        assert_eq!(back, p);
        assert_eq!(
            pairs(&back),
            vec![(80, vec![0; 16]), (1, b"robert".to_vec())]
        );
    }

    #[test]
    fn refused_edits_change_nothing() {
        let mut p = Message::new(Code::AccessRequest, 1);
        p.add(1, b"u").unwrap();
        let before = p.clone();
        assert_eq!(
            p.add(1, [0; 254]),
            Err(PacketError::ValueTooLong { typ: 1, len: 254 })
        );
        assert_eq!(
            p.attributes.set_all(1, [&b"ok"[..], &[0; 300][..]]),
            Err(PacketError::ValueTooLong { typ: 1, len: 300 })
        );
        assert_eq!(
            p.attributes.insert(5, 1, b""),
            Err(PacketError::NoAttributeAt { index: 5, len: 1 })
        );
        assert_eq!(
            p.attributes.replace(1, b""),
            Err(PacketError::NoAttributeAt { index: 1, len: 1 })
        );
        assert!(!p.attributes.remove_at(1));
        assert_eq!(p, before);
    }

    #[test]
    fn encode_limits() {
        let mut p = Message::new(Code::AccessRequest, 1);
        for _ in 0..17 {
            p.add(1, [0; 253]).unwrap();
        }
        assert_eq!(
            p.encode(),
            Err(PacketError::TooLong {
                length: 20 + 17 * 255
            })
        );
    }

    #[test]
    fn many_edits_keep_the_buffer_bounded() {
        let mut p = Message::new(Code::AccessRequest, 1);
        p.add(1, b"user").unwrap();
        for round in 0..10_000u32 {
            p.set(33, round.to_be_bytes()).unwrap();
            p.set(25, vec![0; (round % 200) as usize]).unwrap();
        }
        assert!(p.attributes.bytes.len() < 2 * p.attributes.wire_len() + 2 * DEAD_SLACK);
        assert_eq!(p.get(33), Some(&9_999u32.to_be_bytes()[..]));
        assert_eq!(Message::decode(&p.encode().unwrap()).unwrap(), p);
    }

    #[test]
    fn set_all_places_values_where_the_first_instance_was() {
        let mut p = Message::new(Code::AccessAccept, 1);
        p.add(1, b"u").unwrap();
        p.add(25, b"a").unwrap();
        p.add(18, b"m").unwrap();
        p.add(25, b"b").unwrap();
        p.attributes.set_all(25, [b"x", b"y", b"z"]).unwrap();
        let expected = [(1, "u"), (25, "x"), (25, "y"), (25, "z"), (18, "m")];
        let expected: Vec<(u8, Vec<u8>)> = expected
            .iter()
            .map(|(t, v)| (*t, v.as_bytes().to_vec()))
            .collect();
        assert_eq!(pairs(&p), expected);
        p.attributes.set_all(25, Vec::<&[u8]>::new()).unwrap();
        assert_eq!(p.get(25), None);
        p.attributes.set_all(26, [b"v"]).unwrap();
        assert_eq!(p.attributes.get(p.attributes.len() - 1).unwrap().typ, 26);
    }
}
