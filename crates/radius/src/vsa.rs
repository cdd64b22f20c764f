//! Vendor-Specific attribute values (RFC 2865 §5.26): Vendor-Id followed by sub-attributes in
//! the vendor's `format=` (type and length field widths, WiMAX-style continuation).

use crate::dict::VendorFormat;
use crate::error::PacketError;
use crate::wire::MAX_VALUE_LEN;

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
