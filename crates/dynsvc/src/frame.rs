//! What a punted data trigger frame tells the control plane: its VLAN tags, source MAC and, for
//! IP frames, source address (Nokia SR OS dynamic data services, Table 1).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use brasa_services::{MacAddr, SapId, SapTags, Tag};
use thiserror::Error;

/// 802.1Q customer tag.
const TPID_DOT1Q: u16 = 0x8100;
/// 802.1ad service tag.
const TPID_QINQ: u16 = 0x88a8;
/// Pre-standard QinQ tag some switches still send.
const TPID_QINQ_LEGACY: u16 = 0x9100;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Destination + source MAC + EtherType.
const ETHERNET_HEADER_LEN: usize = 14;

/// One frame that reached the control plane from a capture SAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerFrame {
    /// The capture SAP the frame arrived on (`eth1:*.*`, `eth1:1214.*`, …).
    pub capture_sap: SapId,
    /// Outer VLAN id (0 when untagged).
    pub outer_vid: u16,
    /// Inner VLAN id (0 when there is none).
    pub inner_vid: u16,
    /// Source MAC address.
    pub mac: MacAddr,
    /// IPv4 or IPv6 source address when the frame is an IP packet.
    pub ip: Option<IpAddr>,
    /// Frame length on the wire, for the octet counters.
    pub len: usize,
}

/// Why a punted frame cannot be a data trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameError {
    /// Shorter than an Ethernet header (after its VLAN tags).
    #[error("frame shorter than an Ethernet header")]
    Truncated,
}

impl TriggerFrame {
    /// Reads the source MAC and the IP source address of `frame` (an Ethernet frame as punted,
    /// possibly cut short after the headers). `outer_vid`/`inner_vid` are the tags the data
    /// plane classified the frame with. Never panics; a truncated IP header only leaves the
    /// address out, as for a non-IP frame.
    pub fn parse(
        capture_sap: SapId,
        outer_vid: u16,
        inner_vid: u16,
        frame: &[u8],
        len: usize,
    ) -> Result<TriggerFrame, FrameError> {
        if frame.len() < ETHERNET_HEADER_LEN {
            return Err(FrameError::Truncated);
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&frame[6..12]);
        let mut offset = 12;
        let mut ethertype = read_u16(frame, offset).ok_or(FrameError::Truncated)?;
        // At most two tags: a third one is payload to us, as it is to the data plane.
        for _ in 0..2 {
            if !matches!(ethertype, TPID_DOT1Q | TPID_QINQ | TPID_QINQ_LEGACY) {
                break;
            }
            offset += 4;
            ethertype = read_u16(frame, offset).ok_or(FrameError::Truncated)?;
        }
        let payload = &frame[offset + 2..];
        let ip = match ethertype {
            ETHERTYPE_IPV4 => ipv4_source(payload).map(IpAddr::V4),
            ETHERTYPE_IPV6 => ipv6_source(payload).map(IpAddr::V6),
            _ => None,
        };
        Ok(TriggerFrame {
            capture_sap,
            outer_vid,
            inner_vid,
            mac: MacAddr(mac),
            ip,
            len,
        })
    }

    /// The data trigger's SAP id: the capture SAP's port with the frame's tags in the capture
    /// SAP's encapsulation (`eth1:*.*` + 1214/101 → `eth1:1214.101`; `eth1:*` + 20 → `eth1:20`).
    /// `None` when the frame's tags contradict a fixed tag of the capture SAP, or the capture
    /// SAP has no tags at all.
    pub fn trigger_sap(&self) -> Option<SapId> {
        let fits = |tag: Tag, vid: u16| tag == Tag::Any || tag == Tag::Id(vid);
        let tags = match self.capture_sap.tags() {
            SapTags::Null => return None,
            SapTags::Dot1q(tag) => {
                if !fits(tag, self.outer_vid) {
                    return None;
                }
                SapTags::Dot1q(Tag::Id(self.outer_vid))
            }
            SapTags::Qinq(outer, inner) => {
                if !fits(outer, self.outer_vid) || !fits(inner, self.inner_vid) {
                    return None;
                }
                SapTags::Qinq(Tag::Id(self.outer_vid), Tag::Id(self.inner_vid))
            }
        };
        Some(SapId::new(self.capture_sap.port().clone(), tags))
    }
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let pair = bytes.get(at..at + 2)?;
    Some(u16::from_be_bytes([pair[0], pair[1]]))
}

fn ipv4_source(packet: &[u8]) -> Option<Ipv4Addr> {
    let version = packet.first()? >> 4;
    let source: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
    (version == 4).then_some(Ipv4Addr::from(source))
}

fn ipv6_source(packet: &[u8]) -> Option<Ipv6Addr> {
    let version = packet.first()? >> 4;
    let source: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
    (version == 6).then_some(Ipv6Addr::from(source))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(text: &str) -> SapId {
        SapId::parse(text).unwrap()
    }

    fn ethernet(tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&[0x00, 0x51, 0x00, 0xdd, 0x01, 0x01]);
        for &(tpid, vid) in tags {
            frame.extend_from_slice(&tpid.to_be_bytes());
            frame.extend_from_slice(&vid.to_be_bytes());
        }
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    fn ipv4_header(source: [u8; 4]) -> Vec<u8> {
        let mut header = vec![0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0];
        header.extend_from_slice(&source);
        header.extend_from_slice(&[10, 0, 0, 1]);
        header
    }

    #[test]
    fn qinq_ipv4_frame_gives_mac_ip_and_trigger_sap() {
        let bytes = ethernet(
            &[(TPID_QINQ, 1214), (TPID_DOT1Q, 101)],
            ETHERTYPE_IPV4,
            &ipv4_header([192, 0, 2, 7]),
        );
        let frame = TriggerFrame::parse(capture("eth1:1214.*"), 1214, 101, &bytes, 64).unwrap();
        assert_eq!(frame.mac.to_string(), "00:51:00:dd:01:01");
        assert_eq!(frame.ip, Some(IpAddr::from([192, 0, 2, 7])));
        assert_eq!(frame.trigger_sap().unwrap().to_string(), "eth1:1214.101");
    }

    #[test]
    fn ipv6_source_is_read_after_one_tag() {
        let mut header = vec![0x60, 0, 0, 0, 0, 0, 58, 64];
        let source = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9);
        header.extend_from_slice(&source.octets());
        header.extend_from_slice(&[0; 16]);
        let bytes = ethernet(&[(TPID_DOT1Q, 20)], ETHERTYPE_IPV6, &header);
        let frame = TriggerFrame::parse(capture("eth1:*"), 20, 0, &bytes, 80).unwrap();
        assert_eq!(frame.ip, Some(IpAddr::V6(source)));
        assert_eq!(frame.trigger_sap().unwrap().to_string(), "eth1:20");
    }

    #[test]
    fn non_ip_frame_is_a_trigger_without_ip() {
        let bytes = ethernet(&[(TPID_QINQ, 5), (TPID_DOT1Q, 6)], 0x0806, &[0; 28]);
        let frame = TriggerFrame::parse(capture("eth1:*.*"), 5, 6, &bytes, 64).unwrap();
        assert_eq!(frame.ip, None);
        assert_eq!(frame.trigger_sap().unwrap().to_string(), "eth1:5.6");
    }

    #[test]
    fn truncated_ip_header_leaves_the_address_out() {
        let bytes = ethernet(&[(TPID_DOT1Q, 7)], ETHERTYPE_IPV4, &[0x45, 0, 0]);
        let frame = TriggerFrame::parse(capture("eth1:*"), 7, 0, &bytes, 64).unwrap();
        assert_eq!(frame.ip, None);
        assert_eq!(
            TriggerFrame::parse(capture("eth1:*"), 7, 0, &bytes[..15], 15),
            Err(FrameError::Truncated)
        );
    }

    #[test]
    fn tags_contradicting_the_capture_sap_give_no_trigger_sap() {
        let bytes = ethernet(&[(TPID_QINQ, 9), (TPID_DOT1Q, 6)], 0x0806, &[0; 28]);
        let frame = TriggerFrame::parse(capture("eth1:1214.*"), 9, 6, &bytes, 64).unwrap();
        assert_eq!(frame.trigger_sap(), None);
        let null = TriggerFrame::parse(capture("eth1"), 9, 6, &bytes, 64).unwrap();
        assert_eq!(null.trigger_sap(), None);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let _ = TriggerFrame::parse(capture("eth1:*.*"), 1, 2, &bytes, bytes.len());
        }
    }
}
