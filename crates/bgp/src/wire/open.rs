//! OPEN (RFC 4271 §4.2) with capabilities (RFC 5492): multiprotocol (RFC 4760), route refresh
//! (RFC 2918), graceful restart (RFC 4724), 4-octet AS (RFC 6793), add-path (RFC 7911) and
//! enhanced route refresh (RFC 7313). The last two are recognised so that the session can
//! report them, and never negotiated because this speaker does not announce them.

use super::{begin_message, finish_message, MessageType};
use crate::error::ProtocolError;
use crate::types::AfiSafi;
use std::net::Ipv4Addr;

/// The AS number a 4-octet speaker puts in the 2-byte field when its AS does not fit (RFC 6793).
pub const AS_TRANS: u16 = 23456;

/// Capability codes (IANA "Capability Codes").
pub mod cap {
    /// Multiprotocol extensions (RFC 4760).
    pub const MULTIPROTOCOL: u8 = 1;
    /// Route refresh (RFC 2918).
    pub const ROUTE_REFRESH: u8 = 2;
    /// Multiple labels (RFC 8277).
    pub const MULTIPLE_LABELS: u8 = 8;
    /// Graceful restart (RFC 4724).
    pub const GRACEFUL_RESTART: u8 = 64;
    /// 4-octet AS numbers (RFC 6793).
    pub const FOUR_OCTET_AS: u8 = 65;
    /// Add-path (RFC 7911).
    pub const ADD_PATH: u8 = 69;
    /// Enhanced route refresh (RFC 7313).
    pub const ENHANCED_ROUTE_REFRESH: u8 = 70;
}

/// The graceful restart capability (RFC 4724 §3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GracefulRestart {
    /// Restart State bit: the sender has restarted.
    pub restarting: bool,
    /// Notification bit (RFC 8538), reported only.
    pub notification: bool,
    /// Seconds the sender asks its peers to keep its routes after a session loss.
    pub restart_time: u16,
    /// The families whose routes the sender preserves, each with its Forwarding State bit.
    pub families: Vec<(AfiSafi, bool)>,
}

/// The capabilities of one OPEN.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Families announced with the multiprotocol capability.
    pub multiprotocol: Vec<AfiSafi>,
    /// Route refresh (RFC 2918).
    pub route_refresh: bool,
    /// Enhanced route refresh (RFC 7313).
    pub enhanced_route_refresh: bool,
    /// The AS number of the 4-octet AS capability.
    pub four_octet_as: Option<u32>,
    /// Graceful restart.
    pub graceful_restart: Option<GracefulRestart>,
    /// Add-path: families with their send/receive mode (1 receive, 2 send, 3 both).
    pub add_path: Vec<(AfiSafi, u8)>,
    /// Multiple labels (RFC 8277): families with the label count.
    pub multiple_labels: Vec<(AfiSafi, u8)>,
    /// Codes of capabilities this speaker does not know, in order.
    pub unknown: Vec<u8>,
}

/// An OPEN message's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRepr {
    /// The sender's AS: the 4-octet capability's value when present, else the 2-byte field.
    pub asn: u32,
    /// Proposed hold time in seconds (0, or at least 3).
    pub hold_time: u16,
    /// BGP Identifier.
    pub bgp_id: Ipv4Addr,
    /// Capabilities announced.
    pub capabilities: Capabilities,
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.bytes.get(..n)?, self.bytes.get(n..)?);
        self.bytes = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

fn afi_safi(b: &[u8]) -> AfiSafi {
    AfiSafi {
        afi: u16::from_be_bytes([b[0], b[1]]),
        safi: b[2],
    }
}

impl OpenRepr {
    /// Reads an OPEN body. The version is checked first, so that a speaker of another version
    /// gets "unsupported version" rather than a parse error.
    pub fn parse(body: &[u8]) -> Result<Self, ProtocolError> {
        let malformed = ProtocolError::MalformedOpen;
        let mut r = Reader { bytes: body };
        let version = r.u8().ok_or(malformed("truncated"))?;
        if version != 4 {
            return Err(ProtocolError::UnsupportedVersion(version));
        }
        let my_as = r.u16().ok_or(malformed("truncated"))?;
        let hold_time = r.u16().ok_or(malformed("truncated"))?;
        let id = r.take(4).ok_or(malformed("truncated"))?;
        let bgp_id = Ipv4Addr::new(id[0], id[1], id[2], id[3]);
        let params_len = r.u8().ok_or(malformed("truncated"))?;
        if usize::from(params_len) != r.bytes.len() {
            return Err(malformed(
                "optional parameters length does not match the message",
            ));
        }
        let mut capabilities = Capabilities::default();
        while !r.bytes.is_empty() {
            let kind = r.u8().ok_or(malformed("truncated parameter"))?;
            let len = r.u8().ok_or(malformed("truncated parameter"))?;
            let value = r
                .take(usize::from(len))
                .ok_or(malformed("parameter overruns"))?;
            if kind != 2 {
                return Err(ProtocolError::UnsupportedOptionalParameter(kind));
            }
            parse_capabilities(value, &mut capabilities)?;
        }
        let asn = capabilities.four_octet_as.unwrap_or(u32::from(my_as));
        Ok(OpenRepr {
            asn,
            hold_time,
            bgp_id,
            capabilities,
        })
    }

    /// Appends the OPEN message. The 4-octet AS capability is always announced, so the 2-byte
    /// field carries AS_TRANS when the AS does not fit.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = begin_message(out, MessageType::Open);
        out.push(4);
        out.extend_from_slice(&u16::try_from(self.asn).unwrap_or(AS_TRANS).to_be_bytes());
        out.extend_from_slice(&self.hold_time.to_be_bytes());
        out.extend_from_slice(&self.bgp_id.octets());
        let len_at = out.len();
        out.extend_from_slice(&[0, 2, 0]);
        let caps_at = out.len();
        let c = &self.capabilities;
        for family in &c.multiprotocol {
            push_cap(out, cap::MULTIPROTOCOL, |v| {
                v.extend_from_slice(&family.afi.to_be_bytes());
                v.extend_from_slice(&[0, family.safi]);
            });
        }
        if c.route_refresh {
            push_cap(out, cap::ROUTE_REFRESH, |_| {});
        }
        if c.enhanced_route_refresh {
            push_cap(out, cap::ENHANCED_ROUTE_REFRESH, |_| {});
        }
        if let Some(gr) = &c.graceful_restart {
            push_cap(out, cap::GRACEFUL_RESTART, |v| {
                let flags = (u16::from(gr.restarting) << 15) | (u16::from(gr.notification) << 14);
                v.extend_from_slice(&(flags | (gr.restart_time & 0x0fff)).to_be_bytes());
                for (family, forwarding) in &gr.families {
                    v.extend_from_slice(&family.afi.to_be_bytes());
                    v.extend_from_slice(&[family.safi, u8::from(*forwarding) << 7]);
                }
            });
        }
        if let Some(asn) = c.four_octet_as {
            push_cap(out, cap::FOUR_OCTET_AS, |v| {
                v.extend_from_slice(&asn.to_be_bytes())
            });
        }
        for (code, entries) in [
            (cap::ADD_PATH, &c.add_path),
            (cap::MULTIPLE_LABELS, &c.multiple_labels),
        ] {
            if !entries.is_empty() {
                push_cap(out, code, |v| {
                    for (family, value) in entries {
                        v.extend_from_slice(&family.afi.to_be_bytes());
                        v.extend_from_slice(&[family.safi, *value]);
                    }
                });
            }
        }
        let caps_len = out.len() - caps_at;
        out[len_at] = (caps_len + 2) as u8;
        out[len_at + 2] = caps_len as u8;
        finish_message(out, start);
    }
}

fn push_cap(out: &mut Vec<u8>, code: u8, value: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(&[code, 0]);
    let at = out.len();
    value(out);
    out[at - 1] = (out.len() - at) as u8;
}

fn parse_capabilities(mut bytes: &[u8], caps: &mut Capabilities) -> Result<(), ProtocolError> {
    let malformed = ProtocolError::MalformedOpen;
    while let [code, len, rest @ ..] = bytes {
        let value = rest
            .get(..usize::from(*len))
            .ok_or(malformed("capability overruns"))?;
        bytes = &rest[usize::from(*len)..];
        match *code {
            cap::MULTIPROTOCOL => match value {
                [a0, a1, _, safi] => caps.multiprotocol.push(AfiSafi {
                    afi: u16::from_be_bytes([*a0, *a1]),
                    safi: *safi,
                }),
                _ => return Err(malformed("multiprotocol capability length")),
            },
            cap::ROUTE_REFRESH if value.is_empty() => caps.route_refresh = true,
            cap::ENHANCED_ROUTE_REFRESH if value.is_empty() => caps.enhanced_route_refresh = true,
            cap::ROUTE_REFRESH | cap::ENHANCED_ROUTE_REFRESH => {
                return Err(malformed("route refresh capability with a value"))
            }
            cap::FOUR_OCTET_AS => match value {
                [a, b, c, d] => caps.four_octet_as = Some(u32::from_be_bytes([*a, *b, *c, *d])),
                _ => return Err(malformed("4-octet AS capability length")),
            },
            cap::GRACEFUL_RESTART => {
                let (head, tuples) = value
                    .split_at_checked(2)
                    .ok_or(malformed("graceful restart length"))?;
                if !tuples.len().is_multiple_of(4) {
                    return Err(malformed("graceful restart length"));
                }
                let word = u16::from_be_bytes([head[0], head[1]]);
                caps.graceful_restart = Some(GracefulRestart {
                    restarting: word & 0x8000 != 0,
                    notification: word & 0x4000 != 0,
                    restart_time: word & 0x0fff,
                    families: tuples
                        .chunks_exact(4)
                        .map(|t| (afi_safi(t), t[3] & 0x80 != 0))
                        .collect(),
                });
            }
            cap::ADD_PATH | cap::MULTIPLE_LABELS => {
                if !value.len().is_multiple_of(4) {
                    return Err(malformed("add-path or multiple labels capability length"));
                }
                let list = if *code == cap::ADD_PATH {
                    &mut caps.add_path
                } else {
                    &mut caps.multiple_labels
                };
                list.extend(value.chunks_exact(4).map(|t| (afi_safi(t), t[3])));
            }
            other => caps.unknown.push(other),
        }
    }
    if !bytes.is_empty() {
        return Err(malformed("truncated capability"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Message, MessageType};

    fn sample() -> OpenRepr {
        OpenRepr {
            asn: 4_200_000_000,
            hold_time: 90,
            bgp_id: Ipv4Addr::new(10, 0, 0, 1),
            capabilities: Capabilities {
                multiprotocol: vec![AfiSafi::VPN_IPV4, AfiSafi::VPN_IPV6],
                route_refresh: true,
                enhanced_route_refresh: true,
                four_octet_as: Some(4_200_000_000),
                graceful_restart: Some(GracefulRestart {
                    restarting: true,
                    notification: false,
                    restart_time: 120,
                    families: vec![(AfiSafi::VPN_IPV4, true)],
                }),
                add_path: vec![(AfiSafi::VPN_IPV4, 3)],
                multiple_labels: vec![],
                unknown: vec![],
            },
        }
    }

    #[test]
    fn open_with_every_capability_round_trips() {
        let open = sample();
        let mut out = Vec::new();
        open.emit(&mut out);
        let msg = Message::new_unchecked(&out);
        assert_eq!(
            msg.check().unwrap().map(|(k, _)| k),
            Some(MessageType::Open)
        );
        // The 2-byte AS field carries AS_TRANS for a 4-byte AS.
        assert_eq!(&out[20..22], &AS_TRANS.to_be_bytes());
        assert_eq!(OpenRepr::parse(msg.body()), Ok(open));
    }

    #[test]
    fn open_errors_name_their_subcodes() {
        let mut out = Vec::new();
        sample().emit(&mut out);
        let body = out[19..].to_vec();

        let mut v3 = body.clone();
        v3[0] = 3;
        let n = OpenRepr::parse(&v3).unwrap_err().notification();
        assert_eq!((n.code, n.subcode, n.data), (2, 1, vec![0, 4]));

        let mut auth_param = body[..9].to_vec();
        auth_param.extend_from_slice(&[2, 1, 0]);
        assert_eq!(
            OpenRepr::parse(&auth_param),
            Err(ProtocolError::UnsupportedOptionalParameter(1))
        );

        let mut overrun = body.clone();
        overrun[9] += 1;
        assert!(matches!(
            OpenRepr::parse(&overrun),
            Err(ProtocolError::MalformedOpen(_))
        ));
        assert!(matches!(
            OpenRepr::parse(&body[..7]),
            Err(ProtocolError::MalformedOpen(_))
        ));
    }

    #[test]
    fn unknown_capabilities_are_kept_by_code() {
        let mut body = vec![4, 0xfd, 0xe8, 0, 90, 1, 2, 3, 4];
        body.extend_from_slice(&[8, 2, 6, 73, 4, b'h', b'o', b's', b't']);
        let open = OpenRepr::parse(&body).unwrap();
        assert_eq!(open.asn, 65000);
        assert_eq!(open.capabilities.unknown, vec![73]);
    }
}
