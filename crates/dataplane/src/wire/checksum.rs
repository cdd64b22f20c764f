//! The Internet checksum (RFC 1071) and the IPv4/IPv6 pseudo-headers.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Adds `data` to a running one's-complement sum (not yet folded).
pub fn accumulate(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([pair[0], pair[1]])));
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
    }
    sum
}

/// Folds a running sum to 16 bits and complements it.
pub fn finish(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The checksum of `data` alone.
pub fn checksum(data: &[u8]) -> u16 {
    finish(accumulate(0, data))
}

/// The running sum of the IPv4 pseudo-header for a transport segment of `length` bytes.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u32) -> u32 {
    let mut sum = accumulate(0, &src.octets());
    sum = accumulate(sum, &dst.octets());
    sum.wrapping_add(u32::from(protocol)).wrapping_add(length)
}

/// The running sum of the IPv6 pseudo-header for a transport segment of `length` bytes.
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u32 {
    let mut sum = accumulate(0, &src.octets());
    sum = accumulate(sum, &dst.octets());
    sum.wrapping_add(length >> 16)
        .wrapping_add(length & 0xffff)
        .wrapping_add(u32::from(next_header))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of these bytes is 0xddf2, so the checksum is !0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(checksum(&[0x12]), !0x1200);
    }
}

/// Computes and stores the TCP or UDP checksum of an IPv4 or IPv6 packet (first fragment,
/// extension headers walked). Packets of other protocols, later fragments and malformed packets
/// are left unchanged.
pub fn fill_transport_checksum(ip: &mut [u8]) {
    use super::{ip_protocol, Ipv4Packet, Ipv6Packet};
    let (protocol, offset, end, pseudo) = match ip.first().map(|b| b >> 4) {
        Some(4) => {
            let Ok(packet) = Ipv4Packet::new_checked(&ip[..]) else {
                return;
            };
            if packet.frag_offset() != 0 || packet.more_frags() {
                return;
            }
            let (start, end) = (packet.header_len(), usize::from(packet.total_len()));
            let protocol = packet.protocol();
            let len = (end - start) as u32;
            (
                protocol,
                start,
                end,
                pseudo_header_v4(packet.src_addr(), packet.dst_addr(), protocol, len),
            )
        }
        Some(6) => {
            let Ok(packet) = Ipv6Packet::new_checked(&ip[..]) else {
                return;
            };
            let Ok(location) = packet.transport() else {
                return;
            };
            if !location.has_transport_header {
                return;
            }
            let end = super::ipv6::HEADER_LEN + usize::from(packet.payload_len());
            let len = end.saturating_sub(location.offset) as u32;
            let sum =
                pseudo_header_v6(packet.src_addr(), packet.dst_addr(), location.protocol, len);
            (location.protocol, location.offset, end, sum)
        }
        _ => return,
    };
    let field = match protocol {
        ip_protocol::TCP => 16,
        ip_protocol::UDP => 6,
        _ => return,
    };
    let Some(segment) = ip.get_mut(offset..end) else {
        return;
    };
    if segment.len() < field + 2 {
        return;
    }
    segment[field] = 0;
    segment[field + 1] = 0;
    let mut sum = finish(accumulate(pseudo, segment));
    if protocol == ip_protocol::UDP && sum == 0 {
        sum = 0xffff;
    }
    segment[field..field + 2].copy_from_slice(&sum.to_be_bytes());
}

#[cfg(test)]
mod fill_tests {
    use super::*;
    use crate::wire::UdpPacket;

    #[test]
    fn fills_udp_checksum_over_ipv4_and_ipv6() {
        let mut v4 =
            crate::build::ipv4_udp([127, 0, 0, 1].into(), [127, 0, 0, 2].into(), 1, 2, b"data");
        let good = v4.clone();
        v4[26] = 0x12;
        v4[27] = 0x34;
        fill_transport_checksum(&mut v4);
        assert_eq!(v4, good);
        let mut v6 = crate::build::ipv6_udp(
            "fd00::1".parse().unwrap(),
            "fd00::2".parse().unwrap(),
            1,
            2,
            b"data",
        );
        let good = v6.clone();
        v6[46] ^= 0xff;
        fill_transport_checksum(&mut v6);
        assert_eq!(v6, good);
        assert!(UdpPacket::new_checked(&v6[40..])
            .unwrap()
            .verify_checksum("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap()));
    }
}
