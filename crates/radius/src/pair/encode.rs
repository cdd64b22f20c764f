//! Pairs into packets: tags, encryption, Vendor-Specific / extended / TLV wrapping, `concat`
//! and long-extended fragmentation.

use super::{is_raw_name, Pair, Value};
use crate::attr::VENDOR_SPECIFIC;
use crate::auth;
use crate::dict::{AttrId, Dictionary, Encrypt};
use crate::error::PairError;
use crate::message::Message;
use crate::vsa::vsa_build;
use crate::wire::MAX_VALUE_LEN;

/// Top-level attributes (type, value) that one pair becomes on the wire.
type Wrapped = Vec<(u8, Vec<u8>)>;

fn encode_error(name: &str, reason: impl Into<String>) -> PairError {
    PairError::Encode {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Octets of a typed value as they go on the wire (before tag and encryption).
fn value_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::String(b) | Value::Octets(b) => b.clone(),
        Value::Integer(n) | Value::Date(n) => n.to_be_bytes().to_vec(),
        Value::Integer64(n) => n.to_be_bytes().to_vec(),
        Value::Signed(n) => n.to_be_bytes().to_vec(),
        Value::IpAddr(a) => a.octets().to_vec(),
        Value::Ipv6Addr(a) => a.octets().to_vec(),
        Value::Ipv6Prefix(len, a) => {
            let mut v = vec![0, *len];
            v.extend_from_slice(&a.octets()[..usize::from(*len).div_ceil(8)]);
            v
        }
        Value::Ipv4Prefix(len, a) => {
            let mut v = vec![0, *len];
            v.extend_from_slice(&a.octets());
            v
        }
        Value::Ifid(i) => i.to_vec(),
        Value::Byte(n) => vec![*n],
        Value::Short(n) => n.to_be_bytes().to_vec(),
        Value::Ether(m) => m.to_vec(),
    }
}

/// Salt for `encrypt=2` derived from the authenticator (random per request) plus the
/// attribute's position, so that the salts of one packet all differ (RFC 2868 §3.5) without a
/// random source in the codec.
fn tunnel_salt(authenticator: &[u8; 16], position: usize) -> u16 {
    let base = u16::from_be_bytes([authenticator[0], authenticator[1]]);
    0x8000 | (base.wrapping_add(position as u16) & 0x7fff)
}

impl Dictionary {
    /// Encodes `pair` into `packet`: tag, encryption with (`secret`, `authenticator`) when the
    /// dictionary says `encrypt=N`, then wrapping into Vendor-Specific / extended / TLV
    /// attributes, splitting `concat` and long-extended values. Pairs with `Attr-…` names are
    /// written verbatim.
    pub fn add_pair(
        &self,
        packet: &mut Message,
        pair: &Pair,
        secret: &[u8],
        authenticator: &[u8; 16],
    ) -> Result<(), PairError> {
        let def = if is_raw_name(&pair.name) {
            None
        } else {
            self.attribute(&pair.name).filter(|d| d.id == pair.attr)
        };
        let mut data = value_bytes(&pair.value);
        let (concat, name) = match def {
            Some(def) => {
                if def.is_virtual {
                    return Err(encode_error(&def.name, "virtual attribute, never sent"));
                }
                if let (Value::Integer(n), Some(tag)) = (&pair.value, pair.tag) {
                    if *n > 0x00ff_ffff {
                        return Err(encode_error(
                            &def.name,
                            "a tagged integer carries at most 24 bits (the tag is the top octet)",
                        ));
                    }
                    data[0] = tag;
                }
                match def.encrypt {
                    Encrypt::None => {}
                    Encrypt::UserPassword => {
                        if data.len() > auth::MAX_USER_PASSWORD_LEN {
                            return Err(encode_error(&def.name, "longer than 128 octets"));
                        }
                        data = auth::hide_user_password(&data, secret, authenticator);
                    }
                    Encrypt::TunnelPassword => {
                        if data.len() > auth::MAX_TUNNEL_PASSWORD_LEN {
                            return Err(encode_error(&def.name, "longer than 239 octets"));
                        }
                        let salt = tunnel_salt(authenticator, packet.attributes.len());
                        data = auth::hide_tunnel_password(&data, secret, authenticator, salt);
                    }
                    Encrypt::AscendSecret => {
                        if data.len() > 16 {
                            return Err(encode_error(&def.name, "longer than 16 octets"));
                        }
                        data = auth::hide_ascend_secret(&data, secret, authenticator);
                    }
                }
                if def.has_tag && !matches!(pair.value, Value::Integer(_)) {
                    // RFC 2868: Tunnel-Password always carries its tag octet; other strings only
                    // when a tag was given.
                    match pair.tag {
                        Some(tag) => data.insert(0, tag),
                        None if def.encrypt == Encrypt::TunnelPassword => data.insert(0, 0),
                        None => {}
                    }
                }
                (def.concat, def.name.as_str())
            }
            None => (false, pair.name.as_str()),
        };
        let encoded = self
            .wrap(&pair.attr, data, concat)
            .map_err(|r| encode_error(name, r))?;
        for (typ, value) in encoded {
            // `wrap` made every value fit one attribute.
            packet
                .attributes
                .push(typ, &value)
                .map_err(|err| encode_error(name, err.to_string()))?;
        }
        Ok(())
    }

    /// Wraps attribute data into top-level attributes according to its position.
    fn wrap(&self, id: &AttrId, data: Vec<u8>, concat: bool) -> Result<Wrapped, String> {
        let one = |typ: u8, value: Vec<u8>| -> Result<Wrapped, String> {
            if value.len() > MAX_VALUE_LEN {
                return Err(format!(
                    "{} octets do not fit one attribute (253 maximum)",
                    value.len()
                ));
            }
            Ok(vec![(typ, value)])
        };
        match id {
            AttrId::Standard(t) => {
                if concat && data.len() > MAX_VALUE_LEN {
                    Ok(data
                        .chunks(MAX_VALUE_LEN)
                        .map(|c| (*t, c.to_vec()))
                        .collect())
                } else {
                    one(*t, data)
                }
            }
            AttrId::Vendor { vendor, typ } => {
                let value = vsa_build(*vendor, *typ, &data, self.vendor_format(*vendor))
                    .map_err(|e| e.to_string())?;
                one(VENDOR_SPECIFIC, value)
            }
            AttrId::Extended { base, typ } => extended(*base, &[*typ], data),
            AttrId::ExtendedVendor { base, vendor, typ } => {
                let mut header = vec![26];
                header.extend_from_slice(&vendor.to_be_bytes());
                header.push(*typ);
                extended(*base, &header, data)
            }
            AttrId::Tlv { parent, typ } => {
                if data.len() > MAX_VALUE_LEN {
                    return Err("sub-TLV longer than 253 octets".into());
                }
                let mut tlv = vec![*typ, (data.len() + 2) as u8];
                tlv.extend_from_slice(&data);
                self.wrap(parent, tlv, false)
            }
            AttrId::Internal(_) => Err("server-internal attribute, not encodable".into()),
        }
    }
}

fn extended(base: u8, header: &[u8], data: Vec<u8>) -> Result<Wrapped, String> {
    if matches!(base, 245 | 246) {
        // Long extended: Extended-Type, flags (M = more), then the fragment. Vendor header
        // (for EVS) belongs to the data and is only in the first fragment (RFC 6929 §2.2).
        let (ext, rest_header) = header.split_first().ok_or("empty extended header")?;
        let mut payload = rest_header.to_vec();
        payload.extend_from_slice(&data);
        let chunk = MAX_VALUE_LEN - 2;
        let chunks: Vec<&[u8]> = if payload.is_empty() {
            vec![&[][..]]
        } else {
            payload.chunks(chunk).collect()
        };
        let last = chunks.len() - 1;
        Ok(chunks
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let mut value = vec![*ext, if i < last { 0x80 } else { 0 }];
                value.extend_from_slice(c);
                (base, value)
            })
            .collect())
    } else {
        let mut value = header.to_vec();
        value.extend_from_slice(&data);
        if value.len() > MAX_VALUE_LEN {
            return Err(format!(
                "{} octets do not fit one extended attribute",
                data.len()
            ));
        }
        Ok(vec![(base, value)])
    }
}
