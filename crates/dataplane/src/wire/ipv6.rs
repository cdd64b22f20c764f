//! IPv6 headers (RFC 8200) and the walk over extension headers to the transport header.

use super::{be16, be32, byte, ip_protocol, put16, put32, put8, Error, Result};
use std::net::Ipv6Addr;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;

/// Most extension headers walked before giving up (bounds the work per packet).
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// A view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// Where the walk over extension headers ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportLocation {
    /// Protocol of the upper-layer header (or of the header the walk stopped at).
    pub protocol: u8,
    /// Offset of that header from the start of the IPv6 packet.
    pub offset: usize,
    /// False when the packet is a non-first fragment: the transport header is elsewhere.
    pub has_transport_header: bool,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps `buffer` after checking the version and that the payload length fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self { buffer };
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if packet.version() != 6 {
            return Err(Error::Malformed);
        }
        if len < HEADER_LEN + usize::from(packet.payload_len()) {
            return Err(Error::Truncated);
        }
        Ok(packet)
    }

    /// Wraps `buffer` without checking.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// IP version (6 for a valid packet).
    pub fn version(&self) -> u8 {
        byte(self.bytes(), 0) >> 4
    }

    /// Traffic class.
    pub fn traffic_class(&self) -> u8 {
        ((be16(self.bytes(), 0) >> 4) & 0xff) as u8
    }

    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        be32(self.bytes(), 0) & 0x000f_ffff
    }

    /// Payload length (everything after the fixed header).
    pub fn payload_len(&self) -> u16 {
        be16(self.bytes(), 4)
    }

    /// Next header of the fixed header.
    pub fn next_header(&self) -> u8 {
        byte(self.bytes(), 6)
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        byte(self.bytes(), 7)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut octets = [0u8; 16];
        if let Some(b) = self.bytes().get(8..24) {
            octets.copy_from_slice(b);
        }
        Ipv6Addr::from(octets)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut octets = [0u8; 16];
        if let Some(b) = self.bytes().get(24..40) {
            octets.copy_from_slice(b);
        }
        Ipv6Addr::from(octets)
    }

    /// Everything after the fixed header, up to the payload length.
    pub fn payload(&self) -> &[u8] {
        let end = (HEADER_LEN + usize::from(self.payload_len())).min(self.bytes().len());
        self.bytes().get(HEADER_LEN..end).unwrap_or(&[])
    }

    /// Walks hop-by-hop, routing, fragment, destination options, AH and mobility headers to the
    /// upper-layer header. At most [`MAX_EXTENSION_HEADERS`] are walked.
    pub fn transport(&self) -> Result<TransportLocation> {
        let end = (HEADER_LEN + usize::from(self.payload_len())).min(self.bytes().len());
        let bytes = self.bytes().get(..end).unwrap_or(&[]);
        let mut protocol = self.next_header();
        let mut offset = HEADER_LEN;
        let mut has_transport_header = true;
        for _ in 0..=MAX_EXTENSION_HEADERS {
            let len = match protocol {
                ip_protocol::HOP_BY_HOP
                | ip_protocol::IPV6_ROUTING
                | ip_protocol::IPV6_DEST_OPTS
                | ip_protocol::MOBILITY => {
                    if bytes.len() < offset + 8 {
                        return Err(Error::Truncated);
                    }
                    (usize::from(byte(bytes, offset + 1)) + 1) * 8
                }
                ip_protocol::IPV6_FRAGMENT => {
                    if bytes.len() < offset + 8 {
                        return Err(Error::Truncated);
                    }
                    if be16(bytes, offset + 2) & 0xfff8 != 0 {
                        has_transport_header = false;
                    }
                    8
                }
                ip_protocol::AH => {
                    if bytes.len() < offset + 8 {
                        return Err(Error::Truncated);
                    }
                    (usize::from(byte(bytes, offset + 1)) + 2) * 4
                }
                _ => {
                    return Ok(TransportLocation {
                        protocol,
                        offset,
                        has_transport_header,
                    });
                }
            };
            protocol = byte(bytes, offset);
            offset += len;
            if offset > bytes.len() {
                return Err(Error::Truncated);
            }
        }
        Err(Error::Unsupported)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Rewrites the DSCP (the upper six bits of the traffic class, ECN kept).
    pub fn set_dscp(&mut self, dscp: u8) {
        let bytes = self.buffer.as_mut();
        let (Some(&b0), Some(&b1)) = (bytes.first(), bytes.get(1)) else {
            return;
        };
        // Version (4 bits), traffic class (8), flow label (20): the class straddles bytes 0 and 1.
        let class = ((b0 << 4) | (b1 >> 4)) & 0x03 | (dscp << 2);
        put8(bytes, 0, (b0 & 0xf0) | (class >> 4));
        put8(bytes, 1, (class << 4) | (b1 & 0x0f));
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, value: u8) {
        put8(self.buffer.as_mut(), 7, value);
    }
}

/// The fields of the fixed IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header of the fixed header.
    pub next_header: u8,
    /// Payload length.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
}

impl Ipv6Repr {
    /// Validates the header and lifts the fields.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Self> {
        let packet = Ipv6Packet::new_checked(packet.bytes())?;
        Ok(Self {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
        })
    }

    /// Length of the header `emit` writes.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the fixed header (flow label 0).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) {
        let bytes = packet.buffer.as_mut();
        put32(bytes, 0, (6 << 28) | (u32::from(self.traffic_class) << 20));
        put16(bytes, 4, self.payload_len.min(usize::from(u16::MAX)) as u16);
        put8(bytes, 6, self.next_header);
        put8(bytes, 7, self.hop_limit);
        if let Some(b) = bytes.get_mut(8..24) {
            b.copy_from_slice(&self.src_addr.octets());
        }
        if let Some(b) = bytes.get_mut(24..40) {
            b.copy_from_slice(&self.dst_addr.octets());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(next_header: u8, payload_len: u16) -> Vec<u8> {
        let mut out = vec![0u8; HEADER_LEN];
        Ipv6Repr {
            src_addr: "fd00::1".parse().unwrap(),
            dst_addr: "fd00::2".parse().unwrap(),
            next_header,
            payload_len: usize::from(payload_len),
            hop_limit: 64,
            traffic_class: 0,
        }
        .emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
        out
    }

    #[test]
    fn header_bytes() {
        let bytes = header(17, 8);
        assert_eq!(&bytes[..8], &[0x60, 0, 0, 0, 0x00, 0x08, 17, 64]);
        assert_eq!(bytes[8], 0xfd);
        assert_eq!(bytes[23], 1);
        assert_eq!(bytes[39], 2);
    }

    #[test]
    fn walks_hop_by_hop_dest_opts_to_udp() {
        let mut bytes = header(ip_protocol::HOP_BY_HOP, 8 + 16 + 8);
        // Hop-by-hop: next = dest opts, len 0 (8 bytes), PadN.
        bytes.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        // Destination options: next = UDP, len 1 (16 bytes).
        bytes.extend_from_slice(&[17, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, 8, 0, 0]);
        let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            packet.transport().unwrap(),
            TransportLocation {
                protocol: 17,
                offset: 64,
                has_transport_header: true
            }
        );
    }

    #[test]
    fn non_first_fragment_has_no_transport_header() {
        let mut bytes = header(ip_protocol::IPV6_FRAGMENT, 16);
        bytes.extend_from_slice(&[6, 0, 0x00, 0x08, 0, 0, 0, 1]); // offset 1 (×8)
        bytes.extend_from_slice(&[0; 8]);
        let location = Ipv6Packet::new_checked(&bytes[..])
            .unwrap()
            .transport()
            .unwrap();
        assert_eq!(location.protocol, 6);
        assert!(!location.has_transport_header);
    }

    #[test]
    fn truncated_extension_header_is_an_error() {
        let mut bytes = header(ip_protocol::IPV6_ROUTING, 8);
        bytes.extend_from_slice(&[17, 4, 0, 0, 0, 0, 0, 0]); // claims 40 bytes
        let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.transport().unwrap_err(), Error::Truncated);
    }

    #[test]
    fn endless_chain_is_bounded() {
        let count = MAX_EXTENSION_HEADERS + 2;
        let mut bytes = header(ip_protocol::IPV6_DEST_OPTS, (count * 8) as u16);
        for _ in 0..count {
            bytes.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        }
        let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.transport().unwrap_err(), Error::Unsupported);
    }

    #[test]
    fn rejects_wrong_version_and_short_payload() {
        let mut bytes = header(17, 8);
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::Truncated
        );
        bytes.extend_from_slice(&[0; 8]);
        bytes[0] = 0x40;
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::Malformed
        );
    }
}
