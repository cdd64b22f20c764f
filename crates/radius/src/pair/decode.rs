//! Packets into pairs: Vendor-Specific formats, extended and long-extended reassembly,
//! `concat`, tags, sub-TLVs, `array`s, and revealing encrypted values.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{mask_v4, mask_v6, raw_name, Op, Pair, Value};
use crate::attr::VENDOR_SPECIFIC;
use crate::auth;
use crate::dict::{AttrId, AttributeDef, Dictionary, Encrypt, ValueType};
use crate::message::Message;
use crate::vsa::vsa_split_body;
use crate::wire::AttributeIter;

fn decode_value(kind: ValueType, data: &[u8]) -> Option<Value> {
    Some(match kind {
        ValueType::String => Value::String(data.to_vec()),
        ValueType::Integer => Value::Integer(u32::from_be_bytes(data.try_into().ok()?)),
        ValueType::Integer64 => Value::Integer64(u64::from_be_bytes(data.try_into().ok()?)),
        ValueType::Signed => Value::Signed(i32::from_be_bytes(data.try_into().ok()?)),
        ValueType::Date => Value::Date(u32::from_be_bytes(data.try_into().ok()?)),
        ValueType::IpAddr => Value::IpAddr(Ipv4Addr::from(<[u8; 4]>::try_from(data).ok()?)),
        ValueType::Ipv6Addr => Value::Ipv6Addr(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?)),
        ValueType::ComboIp => match data.len() {
            4 => Value::IpAddr(Ipv4Addr::from(<[u8; 4]>::try_from(data).ok()?)),
            16 => Value::Ipv6Addr(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?)),
            _ => return None,
        },
        ValueType::Ipv6Prefix => {
            let (&len, rest) = data.get(1..)?.split_first()?;
            if len > 128 || rest.len() > 16 || rest.len() < usize::from(len).div_ceil(8) {
                return None;
            }
            let mut octets = [0u8; 16];
            octets[..rest.len()].copy_from_slice(rest);
            let addr = Ipv6Addr::from(octets);
            if mask_v6(addr, len) != addr {
                return None;
            }
            Value::Ipv6Prefix(len, addr)
        }
        ValueType::Ipv4Prefix => {
            if data.len() != 6 || data[1] > 32 {
                return None;
            }
            let addr = Ipv4Addr::new(data[2], data[3], data[4], data[5]);
            if mask_v4(addr, data[1]) != addr {
                return None;
            }
            Value::Ipv4Prefix(data[1], addr)
        }
        ValueType::Ifid => Value::Ifid(data.try_into().ok()?),
        ValueType::Byte => Value::Byte(*<&[u8; 1]>::try_from(data).ok()?.first()?),
        ValueType::Short => Value::Short(u16::from_be_bytes(data.try_into().ok()?)),
        ValueType::Ether => Value::Ether(data.try_into().ok()?),
        ValueType::Octets
        | ValueType::Abinary
        | ValueType::Tlv
        | ValueType::Vsa
        | ValueType::Extended
        | ValueType::LongExtended
        | ValueType::Evs => Value::Octets(data.to_vec()),
    })
}

impl Dictionary {
    /// Decodes every attribute of `packet` into typed pairs in wire order: Vendor-Specific
    /// sub-attributes by the vendor's format, extended and long-extended (reassembled),
    /// `concat` attributes joined, tags split, sub-TLVs flattened, encrypted values revealed
    /// when `crypt` gives (secret, authenticator). Unknown or malformed attributes come out as
    /// `Attr-<oid>` octets. Never fails.
    pub fn decode_pairs(&self, packet: &Message, crypt: Option<(&[u8], &[u8; 16])>) -> Vec<Pair> {
        let mut out = Vec::new();
        let attrs = &packet.attributes;
        let mut i = 0;
        while let Some(attr) = attrs.get(i) {
            i += 1;
            match attr.typ {
                VENDOR_SPECIFIC => self.decode_vsa(attr.value, crypt, &mut out),
                241..=244 => match attr.value.split_first() {
                    Some((&26, rest)) if rest.len() >= 5 => {
                        let vendor = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                        let id = AttrId::ExtendedVendor {
                            base: attr.typ,
                            vendor,
                            typ: rest[4],
                        };
                        self.decode_one(id, &rest[5..], crypt, &mut out);
                    }
                    Some((&typ, rest)) if typ != 26 => self.decode_one(
                        AttrId::Extended {
                            base: attr.typ,
                            typ,
                        },
                        rest,
                        crypt,
                        &mut out,
                    ),
                    _ => out.push(raw_pair(AttrId::Standard(attr.typ), attr.value)),
                },
                245 | 246 => {
                    let (Some(&ext), Some(&flags)) = (attr.value.first(), attr.value.get(1)) else {
                        out.push(raw_pair(AttrId::Standard(attr.typ), attr.value));
                        continue;
                    };
                    let mut data = attr.value[2..].to_vec();
                    let mut more = flags & 0x80 != 0;
                    let start = i;
                    while more {
                        match attrs.get(i) {
                            Some(next)
                                if next.typ == attr.typ
                                    && next.value.first() == Some(&ext)
                                    && next.value.len() >= 2 =>
                            {
                                data.extend_from_slice(&next.value[2..]);
                                more = next.value[1] & 0x80 != 0;
                                i += 1;
                            }
                            _ => break,
                        }
                    }
                    if more {
                        // Fragment chain cut short: keep every fragment raw.
                        for a in attrs.iter().skip(start - 1).take(i + 1 - start) {
                            out.push(raw_pair(AttrId::Standard(a.typ), a.value));
                        }
                        continue;
                    }
                    if ext == 26 {
                        if data.len() >= 5 {
                            let vendor = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                            let id = AttrId::ExtendedVendor {
                                base: attr.typ,
                                vendor,
                                typ: data[4],
                            };
                            self.decode_one(id, &data[5..], crypt, &mut out);
                        } else {
                            out.push(raw_pair(AttrId::Standard(attr.typ), attr.value));
                        }
                    } else {
                        self.decode_one(
                            AttrId::Extended {
                                base: attr.typ,
                                typ: ext,
                            },
                            &data,
                            crypt,
                            &mut out,
                        );
                    }
                }
                typ => {
                    let id = AttrId::Standard(typ);
                    let concat = self.attribute_by_id(&id).is_some_and(|d| d.concat);
                    if concat {
                        let mut data = attr.value.to_vec();
                        while let Some(next) = attrs.get(i).filter(|n| n.typ == typ) {
                            data.extend_from_slice(next.value);
                            i += 1;
                        }
                        self.decode_one(id, &data, crypt, &mut out);
                    } else {
                        self.decode_one(id, attr.value, crypt, &mut out);
                    }
                }
            }
        }
        out
    }

    fn decode_vsa(&self, value: &[u8], crypt: Option<(&[u8], &[u8; 16])>, out: &mut Vec<Pair>) {
        let split = value.get(..4).and_then(|id| {
            let vendor = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
            let subs = vsa_split_body(&value[4..], self.vendor_format(vendor))?;
            Some((vendor, subs))
        });
        let Some((vendor, subs)) = split else {
            out.push(raw_pair(AttrId::Standard(VENDOR_SPECIFIC), value));
            return;
        };
        let mut pending: Option<(u32, Vec<u8>)> = None;
        for sub in subs {
            // WiMAX-style continuation: join fragments flagged "more".
            let data = match pending.take() {
                Some((typ, mut data)) if typ == sub.typ => {
                    data.extend_from_slice(sub.value);
                    data
                }
                Some((typ, data)) => {
                    self.decode_one(AttrId::Vendor { vendor, typ }, &data, crypt, out);
                    sub.value.to_vec()
                }
                None => sub.value.to_vec(),
            };
            if sub.more {
                pending = Some((sub.typ, data));
            } else {
                self.decode_one(
                    AttrId::Vendor {
                        vendor,
                        typ: sub.typ,
                    },
                    &data,
                    crypt,
                    out,
                );
            }
        }
        if let Some((typ, data)) = pending {
            self.decode_one(AttrId::Vendor { vendor, typ }, &data, crypt, out);
        }
    }

    fn decode_one(
        &self,
        id: AttrId,
        data: &[u8],
        crypt: Option<(&[u8], &[u8; 16])>,
        out: &mut Vec<Pair>,
    ) {
        let Some(def) = self.attribute_by_id(&id) else {
            out.push(raw_pair(id, data));
            return;
        };
        if def.kind == ValueType::Tlv {
            if crate::wire::check_attributes(data, 0).is_ok() && !data.is_empty() {
                for sub in AttributeIter::new(data) {
                    let child = AttrId::Tlv {
                        parent: Box::new(id.clone()),
                        typ: sub.typ,
                    };
                    self.decode_one(child, sub.value, crypt, out);
                }
                return;
            }
            out.push(raw_pair(id, data));
            return;
        }
        // `array` attributes pack several fixed-width values into one attribute: one pair each.
        if let Some(width) = fixed_width(def.kind).filter(|_| def.array && !def.has_tag) {
            if data.len() > width
                && data.len().is_multiple_of(width)
                && def.encrypt == Encrypt::None
            {
                for chunk in data.chunks(width) {
                    if let Some(value) = decode_value(def.kind, chunk) {
                        out.push(Pair {
                            attr: id.clone(),
                            name: def.name.clone(),
                            tag: None,
                            op: Op::Equal,
                            value,
                        });
                    }
                }
                return;
            }
        }
        match self.decode_typed(def, data, crypt) {
            Some((tag, value)) => out.push(Pair {
                attr: id,
                name: def.name.clone(),
                tag,
                op: Op::Equal,
                value,
            }),
            None => out.push(raw_pair(id, data)),
        }
    }

    fn decode_typed(
        &self,
        def: &AttributeDef,
        data: &[u8],
        crypt: Option<(&[u8], &[u8; 16])>,
    ) -> Option<(Option<u8>, Value)> {
        let mut tag = None;
        let mut data = data.to_vec();
        let is_int = def.kind == ValueType::Integer;
        // RFC 2868 §3: tags are 0x01..=0x1F; 0x00 means "no tag". A tagged integer carries the
        // tag in its top octet; Tunnel-Password always carries the tag octet; other strings
        // only when the first octet is a valid tag.
        let valid_tag = |b: u8| (1..=0x1f).contains(&b).then_some(b);
        if def.has_tag {
            if is_int {
                if data.len() == 4 && data[0] <= 0x1f {
                    tag = valid_tag(data[0]);
                    data[0] = 0;
                }
            } else if def.encrypt == Encrypt::TunnelPassword {
                tag = valid_tag(*data.first()?);
                data.remove(0);
            } else if let Some(t) = data.first().and_then(|&b| valid_tag(b)) {
                tag = Some(t);
                data.remove(0);
            }
        }
        if def.encrypt != Encrypt::None {
            let (secret, authenticator) = crypt?;
            data = match def.encrypt {
                Encrypt::UserPassword => {
                    auth::reveal_user_password(&data, secret, authenticator).ok()?
                }
                Encrypt::TunnelPassword => {
                    auth::reveal_tunnel_password(&data, secret, authenticator).ok()?
                }
                Encrypt::AscendSecret => {
                    auth::reveal_ascend_secret(&data, secret, authenticator).ok()?
                }
                Encrypt::None => data,
            };
        }
        if let Some(n) = def.fixed_len {
            if data.len() != n {
                return None;
            }
        }
        let value = decode_value(def.kind, &data)?;
        Some((tag, value))
    }
}

/// Wire width of fixed-size types (for `array` attributes).
fn fixed_width(kind: ValueType) -> Option<usize> {
    Some(match kind {
        ValueType::Byte => 1,
        ValueType::Short => 2,
        ValueType::Integer | ValueType::Signed | ValueType::Date | ValueType::IpAddr => 4,
        ValueType::Integer64 | ValueType::Ifid => 8,
        ValueType::Ether => 6,
        ValueType::Ipv6Addr => 16,
        _ => return None,
    })
}

fn raw_pair(id: AttrId, data: &[u8]) -> Pair {
    Pair {
        name: raw_name(&id),
        attr: id,
        tag: None,
        op: Op::Equal,
        value: Value::Octets(data.to_vec()),
    }
}
