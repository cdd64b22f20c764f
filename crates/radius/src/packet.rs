//! Owned packet representation: what the AAA engine reads and rewrites.

use std::fmt;

use crate::attr::VENDOR_SPECIFIC;
use crate::dict::{Dictionary, VendorFormat};
use crate::error::PacketError;
use crate::wire::{self, HEADER_LEN, MAX_PACKET_LEN, MAX_VALUE_LEN};

/// RADIUS packet codes (RFC 2865, 2866, 5176, 5997).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// 1
    AccessRequest,
    /// 2
    AccessAccept,
    /// 3
    AccessReject,
    /// 4
    AccountingRequest,
    /// 5
    AccountingResponse,
    /// 11
    AccessChallenge,
    /// 12
    StatusServer,
    /// 13
    StatusClient,
    /// 40
    DisconnectRequest,
    /// 41
    DisconnectAck,
    /// 42
    DisconnectNak,
    /// 43
    CoaRequest,
    /// 44
    CoaAck,
    /// 45
    CoaNak,
    /// Any other code, kept as received.
    Other(u8),
}

impl From<u8> for Code {
    fn from(code: u8) -> Code {
        match code {
            1 => Code::AccessRequest,
            2 => Code::AccessAccept,
            3 => Code::AccessReject,
            4 => Code::AccountingRequest,
            5 => Code::AccountingResponse,
            11 => Code::AccessChallenge,
            12 => Code::StatusServer,
            13 => Code::StatusClient,
            40 => Code::DisconnectRequest,
            41 => Code::DisconnectAck,
            42 => Code::DisconnectNak,
            43 => Code::CoaRequest,
            44 => Code::CoaAck,
            45 => Code::CoaNak,
            other => Code::Other(other),
        }
    }
}

impl From<Code> for u8 {
    fn from(code: Code) -> u8 {
        match code {
            Code::AccessRequest => 1,
            Code::AccessAccept => 2,
            Code::AccessReject => 3,
            Code::AccountingRequest => 4,
            Code::AccountingResponse => 5,
            Code::AccessChallenge => 11,
            Code::StatusServer => 12,
            Code::StatusClient => 13,
            Code::DisconnectRequest => 40,
            Code::DisconnectAck => 41,
            Code::DisconnectNak => 42,
            Code::CoaRequest => 43,
            Code::CoaAck => 44,
            Code::CoaNak => 45,
            Code::Other(other) => other,
        }
    }
}

impl Code {
    /// The name FreeRADIUS and the RFCs use (`Access-Request`, `CoA-ACK`, ...), if standard.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Code::AccessRequest => "Access-Request",
            Code::AccessAccept => "Access-Accept",
            Code::AccessReject => "Access-Reject",
            Code::AccountingRequest => "Accounting-Request",
            Code::AccountingResponse => "Accounting-Response",
            Code::AccessChallenge => "Access-Challenge",
            Code::StatusServer => "Status-Server",
            Code::StatusClient => "Status-Client",
            Code::DisconnectRequest => "Disconnect-Request",
            Code::DisconnectAck => "Disconnect-ACK",
            Code::DisconnectNak => "Disconnect-NAK",
            Code::CoaRequest => "CoA-Request",
            Code::CoaAck => "CoA-ACK",
            Code::CoaNak => "CoA-NAK",
            Code::Other(_) => return None,
        })
    }

    /// Parses a code name (case-insensitive, as [`Code::name`] or radclient's short forms
    /// `auth`, `acct`, `status`, `coa`, `disconnect`) or a decimal number.
    pub fn from_name(name: &str) -> Option<Code> {
        let number = name.strip_prefix("Code-").unwrap_or(name);
        if let Ok(n) = number.parse::<u8>() {
            return Some(Code::from(n));
        }
        let lower = name.to_ascii_lowercase();
        let short = match lower.as_str() {
            "auth" => Some(Code::AccessRequest),
            "acct" => Some(Code::AccountingRequest),
            "status" => Some(Code::StatusServer),
            "coa" => Some(Code::CoaRequest),
            "disconnect" => Some(Code::DisconnectRequest),
            _ => None,
        };
        short.or_else(|| {
            (1..=255u8)
                .map(Code::from)
                .find(|c| c.name().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        })
    }

    /// Whether the packet is a request whose authenticator is an MD5 over the packet (RFC 2866
    /// §3, RFC 5176 §2.3) rather than a random Request Authenticator.
    pub fn has_signed_request_authenticator(self) -> bool {
        matches!(
            self,
            Code::AccountingRequest | Code::DisconnectRequest | Code::CoaRequest
        )
    }

    /// Whether this code is a request (as opposed to a response to one).
    pub fn is_request(self) -> bool {
        matches!(
            self,
            Code::AccessRequest
                | Code::AccountingRequest
                | Code::StatusServer
                | Code::StatusClient
                | Code::DisconnectRequest
                | Code::CoaRequest
        )
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "Code-{}", u8::from(*self)),
        }
    }
}

/// One top-level attribute exactly as on the wire (a Vendor-Specific 26 is kept whole).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RawAttribute {
    /// Type octet.
    pub typ: u8,
    /// Value octets (at most 253 to be encodable).
    pub value: Vec<u8>,
}

/// An owned RADIUS packet: header fields plus the attribute list in wire order, repeated
/// instances kept.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Packet {
    /// Packet code.
    pub code: Code,
    /// Identifier octet.
    pub identifier: u8,
    /// Authenticator, encoded as stored (sign with [`crate::auth`] after encoding).
    pub authenticator: [u8; 16],
    /// Attributes in wire order.
    pub attributes: Vec<RawAttribute>,
}

impl Packet {
    /// An empty packet with a zero authenticator.
    pub fn new(code: Code, identifier: u8) -> Packet {
        Packet {
            code,
            identifier,
            authenticator: [0; 16],
            attributes: Vec::new(),
        }
    }

    /// Decodes a datagram (validated by [`wire::Packet::new_checked`]).
    pub fn decode(bytes: &[u8]) -> Result<Packet, PacketError> {
        let view = wire::Packet::new_checked(bytes)?;
        Ok(Packet {
            code: Code::from(view.code()),
            identifier: view.identifier(),
            authenticator: view.authenticator(),
            attributes: view
                .attributes()
                .map(|a| RawAttribute {
                    typ: a.typ,
                    value: a.value.to_vec(),
                })
                .collect(),
        })
    }

    /// Length the encoded packet will have.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + self
                .attributes
                .iter()
                .map(|a| 2 + a.value.len())
                .sum::<usize>()
    }

    /// Encodes the packet with the authenticator as stored.
    pub fn encode(&self) -> Result<Vec<u8>, PacketError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Encodes the packet, appending to `out` (which is left unchanged on error).
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), PacketError> {
        for a in &self.attributes {
            if a.value.len() > MAX_VALUE_LEN {
                return Err(PacketError::ValueTooLong {
                    typ: a.typ,
                    len: a.value.len(),
                });
            }
        }
        let length = self.encoded_len();
        if length > MAX_PACKET_LEN {
            return Err(PacketError::TooLong { length });
        }
        out.reserve(length);
        out.push(self.code.into());
        out.push(self.identifier);
        out.extend_from_slice(&(length as u16).to_be_bytes());
        out.extend_from_slice(&self.authenticator);
        for a in &self.attributes {
            out.push(a.typ);
            out.push((a.value.len() + 2) as u8);
            out.extend_from_slice(&a.value);
        }
        Ok(())
    }

    /// Value of the first instance of `typ`.
    pub fn get(&self, typ: u8) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|a| a.typ == typ)
            .map(|a| a.value.as_slice())
    }

    /// Values of every instance of `typ`, in order.
    pub fn get_all(&self, typ: u8) -> impl Iterator<Item = &[u8]> {
        self.attributes
            .iter()
            .filter(move |a| a.typ == typ)
            .map(|a| a.value.as_slice())
    }

    /// Appends an attribute.
    pub fn add(&mut self, typ: u8, value: impl Into<Vec<u8>>) {
        self.attributes.push(RawAttribute {
            typ,
            value: value.into(),
        });
    }

    /// Replaces every instance of `typ` by one with `value`, at the position of the first
    /// instance (appended if there was none).
    pub fn set(&mut self, typ: u8, value: impl Into<Vec<u8>>) {
        let value = value.into();
        match self.attributes.iter().position(|a| a.typ == typ) {
            Some(first) => {
                self.attributes[first].value = value;
                let mut index = 0;
                self.attributes.retain(|a| {
                    let keep = a.typ != typ || index == first;
                    index += 1;
                    keep
                });
            }
            None => self.add(typ, value),
        }
    }

    /// Removes every instance of `typ`; returns how many were removed.
    pub fn remove(&mut self, typ: u8) -> usize {
        let before = self.attributes.len();
        self.attributes.retain(|a| a.typ != typ);
        before - self.attributes.len()
    }

    /// The Acct-Status-Type, if the packet carries a well-formed one.
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
        self.add(VENDOR_SPECIFIC, vsa);
        Ok(())
    }

    /// Removes every sub-attribute `(vendor, typ)`; Vendor-Specific attributes left empty are
    /// dropped, others are re-encoded with their remaining sub-attributes. Returns how many
    /// sub-attributes were removed.
    pub fn remove_vsa(&mut self, dict: &Dictionary, vendor: u32, typ: u32) -> usize {
        let format = dict.vendor_format(vendor);
        let mut removed = 0;
        self.attributes.retain_mut(|attr| {
            if attr.typ != VENDOR_SPECIFIC {
                return true;
            }
            let Some(subs) = vsa_split(&attr.value, vendor, format) else {
                return true;
            };
            let count = subs.iter().filter(|s| s.typ == typ).count();
            if count == 0 {
                return true;
            }
            removed += count;
            if count == subs.len() {
                return false;
            }
            let mut rebuilt = vendor.to_be_bytes().to_vec();
            for s in subs.iter().filter(|s| s.typ != typ) {
                rebuilt.extend_from_slice(s.raw);
            }
            attr.value = rebuilt;
            true
        });
        removed
    }
}

/// One sub-attribute inside a Vendor-Specific value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VendorSubAttr<'a> {
    /// Vendor attribute type.
    pub typ: u32,
    /// Value octets.
    pub value: &'a [u8],
    /// The whole sub-attribute including its header (for re-encoding).
    pub raw: &'a [u8],
    /// WiMAX-style continuation flag (formats with `,c`).
    pub more: bool,
}

/// Splits a Vendor-Specific value into sub-attributes if it belongs to `vendor` and is well
/// formed under `format`; `None` otherwise.
pub fn vsa_split(
    value: &[u8],
    vendor: u32,
    format: VendorFormat,
) -> Option<Vec<VendorSubAttr<'_>>> {
    let id = value.get(..4)?;
    if u32::from_be_bytes([id[0], id[1], id[2], id[3]]) != vendor {
        return None;
    }
    vsa_split_body(value.get(4..)?, format)
}

/// Splits the part of a Vendor-Specific value after the Vendor-Id.
pub fn vsa_split_body(mut body: &[u8], format: VendorFormat) -> Option<Vec<VendorSubAttr<'_>>> {
    let t = usize::from(format.type_size);
    let l = usize::from(format.length_size);
    let c = usize::from(format.continuation);
    let header = t + l + c;
    let mut out = Vec::new();
    if body.is_empty() {
        return None;
    }
    while !body.is_empty() {
        let typ_bytes = body.get(..t)?;
        let typ = typ_bytes
            .iter()
            .fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        let len = if l == 0 {
            body.len()
        } else {
            let len_bytes = body.get(t..t + l)?;
            len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if len < header || len > body.len() {
            return None;
        }
        let more = c == 1 && body.get(t + l).is_some_and(|f| f & 0x80 != 0);
        out.push(VendorSubAttr {
            typ,
            value: &body[header..len],
            raw: &body[..len],
            more,
        });
        body = &body[len..];
    }
    Some(out)
}

/// Builds a Vendor-Specific value (Vendor-Id + one sub-attribute) under `format`.
pub fn vsa_build(
    vendor: u32,
    typ: u32,
    value: &[u8],
    format: VendorFormat,
) -> Result<Vec<u8>, PacketError> {
    let t = usize::from(format.type_size);
    let l = usize::from(format.length_size);
    let c = usize::from(format.continuation);
    let header = t + l + c;
    let total = 4 + header + value.len();
    if total > MAX_VALUE_LEN {
        return Err(PacketError::VendorAttribute {
            vendor,
            typ,
            reason: "value too long for one Vendor-Specific attribute",
        });
    }
    if t < 4 && typ >> (8 * t) != 0 {
        return Err(PacketError::VendorAttribute {
            vendor,
            typ,
            reason: "type number does not fit the vendor's type field",
        });
    }
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&vendor.to_be_bytes());
    out.extend_from_slice(&typ.to_be_bytes()[4 - t..]);
    let sub_len = header + value.len();
    match l {
        0 => {}
        1 => out.push(sub_len as u8),
        _ => {
            out.extend(std::iter::repeat_n(0, l - 2));
            out.extend_from_slice(&(sub_len as u16).to_be_bytes());
        }
    }
    if c == 1 {
        out.push(0);
    }
    out.extend_from_slice(value);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_and_numbers_round_trip() {
        for n in 0..=255u8 {
            let code = Code::from(n);
            assert_eq!(u8::from(code), n);
            assert_eq!(Code::from_name(&code.to_string()), Some(code));
        }
        assert_eq!(Code::CoaAck.to_string(), "CoA-ACK");
        assert_eq!(Code::from_name("auth"), Some(Code::AccessRequest));
    }

    #[test]
    fn set_keeps_first_position_and_removes_others() {
        let mut p = Packet::new(Code::AccessAccept, 1);
        p.add(25, b"a".to_vec());
        p.add(1, b"u".to_vec());
        p.add(25, b"b".to_vec());
        p.set(25, b"c".to_vec());
        assert_eq!(
            p.attributes,
            vec![
                RawAttribute {
                    typ: 25,
                    value: b"c".to_vec()
                },
                RawAttribute {
                    typ: 1,
                    value: b"u".to_vec()
                }
            ]
        );
        assert_eq!(p.remove(25), 1);
        assert_eq!(p.remove(25), 0);
        p.set(18, "hi");
        assert_eq!(p.get(18), Some(&b"hi"[..]));
    }

    #[test]
    fn encode_limits() {
        let mut p = Packet::new(Code::AccessRequest, 1);
        p.add(1, vec![0; 254]);
        assert_eq!(
            p.encode(),
            Err(PacketError::ValueTooLong { typ: 1, len: 254 })
        );
        let mut p = Packet::new(Code::AccessRequest, 1);
        for _ in 0..17 {
            p.add(1, vec![0; 253]);
        }
        assert_eq!(
            p.encode(),
            Err(PacketError::TooLong {
                length: 20 + 17 * 255
            })
        );
    }

    #[test]
    fn vsa_formats() {
        let f11 = VendorFormat::default();
        let v = vsa_build(6527, 11, b"sub", f11).unwrap();
        assert_eq!(v, [0, 0, 0x19, 0x7f, 11, 5, b's', b'u', b'b']);
        let f40 = VendorFormat {
            type_size: 4,
            length_size: 0,
            continuation: false,
        };
        let v = vsa_build(429, 0x1234, b"x", f40).unwrap();
        assert_eq!(v, [0, 0, 1, 0xad, 0, 0, 0x12, 0x34, b'x']);
        let subs = vsa_split(&v, 429, f40).unwrap();
        assert_eq!((subs[0].typ, subs[0].value), (0x1234, &b"x"[..]));
        let f22 = VendorFormat {
            type_size: 2,
            length_size: 2,
            continuation: false,
        };
        let v = vsa_build(8164, 300, b"ab", f22).unwrap();
        assert_eq!(v, [0, 0, 0x1f, 0xe4, 1, 44, 0, 6, b'a', b'b']);
        assert!(vsa_build(1, 256, b"", f11).is_err());
        // Wrong vendor or broken sub-attribute: not split.
        assert!(vsa_split(&v, 8165, f22).is_none());
        assert!(vsa_split(&[0, 0, 0x19, 0x7f, 11, 9, 1], 6527, f11).is_none());
    }
}
