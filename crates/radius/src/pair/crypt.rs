//! Re-hiding encrypted attributes for another secret and authenticator (proxying).

use crate::attr::VENDOR_SPECIFIC;
use crate::auth;
use crate::dict::{AttrId, AttributeDef, Dictionary, Encrypt};
use crate::error::CryptoError;
use crate::message::Message;
use crate::vsa::{vsa_build, vsa_split_body};
use crate::wire::MAX_VALUE_LEN;

impl Dictionary {
    /// Re-encrypts every encrypted attribute (`encrypt=1/2/3`, standard, Vendor-Specific,
    /// extended and extended-vendor) of a packet being proxied: decrypt with
    /// (`old_secret`, `old_authenticator`), encrypt with (`new_secret`, `new_authenticator`).
    /// Tags and Tunnel-Password salts are kept. Long-extended (245/246) encrypted attributes are
    /// not supported and left untouched. On error the packet is unchanged.
    pub fn reencrypt(
        &self,
        packet: &mut Message,
        old_secret: &[u8],
        old_authenticator: &[u8; 16],
        new_secret: &[u8],
        new_authenticator: &[u8; 16],
    ) -> Result<(), CryptoError> {
        let recrypt = |def: &AttributeDef, data: &[u8]| -> Result<Vec<u8>, CryptoError> {
            let (prefix, body) = if def.has_tag && def.encrypt == Encrypt::TunnelPassword {
                data.split_at(usize::from(!data.is_empty()))
            } else {
                data.split_at(0)
            };
            let mut out = prefix.to_vec();
            match def.encrypt {
                Encrypt::None => out.extend_from_slice(body),
                Encrypt::UserPassword => {
                    let plain = auth::reveal_user_password(body, old_secret, old_authenticator)?;
                    out.extend(auth::hide_user_password(
                        &plain,
                        new_secret,
                        new_authenticator,
                    ));
                }
                Encrypt::TunnelPassword => {
                    let plain = auth::reveal_tunnel_password(body, old_secret, old_authenticator)?;
                    let salt = u16::from_be_bytes([body[0], body[1]]);
                    out.extend(auth::hide_tunnel_password(
                        &plain,
                        new_secret,
                        new_authenticator,
                        salt,
                    ));
                }
                Encrypt::AscendSecret => {
                    let plain = auth::reveal_ascend_secret(body, old_secret, old_authenticator)?;
                    out.extend(auth::hide_ascend_secret(
                        &plain,
                        new_secret,
                        new_authenticator,
                    ));
                }
            }
            Ok(out)
        };
        let encrypted = |id: &AttrId| {
            self.attribute_by_id(id)
                .filter(|d| d.encrypt != Encrypt::None)
        };
        // New values by attribute index, all computed before any is applied, so that an error
        // leaves the packet as it was.
        let mut rewritten: Vec<(usize, Vec<u8>)> = Vec::new();
        for (index, attr) in packet.attributes.iter().enumerate() {
            match attr.typ {
                VENDOR_SPECIFIC => {
                    let Some(id) = attr.value.get(..4) else {
                        continue;
                    };
                    let vendor = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
                    let format = self.vendor_format(vendor);
                    let Some(subs) = vsa_split_body(&attr.value[4..], format) else {
                        continue;
                    };
                    if !subs
                        .iter()
                        .any(|s| encrypted(&AttrId::Vendor { vendor, typ: s.typ }).is_some())
                    {
                        continue;
                    }
                    let mut value = vendor.to_be_bytes().to_vec();
                    for s in &subs {
                        match encrypted(&AttrId::Vendor { vendor, typ: s.typ }) {
                            Some(def) => {
                                let data = recrypt(def, s.value)?;
                                let built = vsa_build(vendor, s.typ, &data, format)?;
                                value.extend_from_slice(&built[4..]);
                            }
                            None => value.extend_from_slice(s.raw),
                        }
                    }
                    rewritten.push((index, value));
                }
                241..=244 => {
                    let (id, header) = match attr.value.first() {
                        Some(&26) if attr.value.len() >= 6 => {
                            let v = attr.value;
                            let vendor = u32::from_be_bytes([v[1], v[2], v[3], v[4]]);
                            (
                                AttrId::ExtendedVendor {
                                    base: attr.typ,
                                    vendor,
                                    typ: v[5],
                                },
                                6,
                            )
                        }
                        Some(&typ) => (
                            AttrId::Extended {
                                base: attr.typ,
                                typ,
                            },
                            1,
                        ),
                        None => continue,
                    };
                    if let Some(def) = encrypted(&id) {
                        let mut value = attr.value[..header].to_vec();
                        value.extend(recrypt(def, &attr.value[header..])?);
                        rewritten.push((index, value));
                    }
                }
                typ => {
                    if let Some(def) = encrypted(&AttrId::Standard(typ)) {
                        rewritten.push((index, recrypt(def, attr.value)?));
                    }
                }
            }
        }
        if let Some((index, value)) = rewritten.iter().find(|(_, v)| v.len() > MAX_VALUE_LEN) {
            let typ = packet.attributes.get(*index).map_or(0, |a| a.typ);
            return Err(CryptoError::Packet(
                crate::error::PacketError::ValueTooLong {
                    typ,
                    len: value.len(),
                },
            ));
        }
        for (index, value) in rewritten {
            packet.attributes.replace(index, &value)?;
        }
        Ok(())
    }
}
