//! Frame builders for tests, benchmarks, fuzz seeds and the traffic the namespace tests send.
//! They allocate and are not used on the packet path.

use crate::wire::comet::{CometPacket, CometRepr};
use crate::wire::{
    EtherType, EthernetFrame, EthernetRepr, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, MacAddr,
    UdpPacket, UdpRepr,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4/UDP packet (no link layer).
pub fn ipv4_udp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = vec![0u8; 20 + 8 + payload.len()];
    out[28..].copy_from_slice(payload);
    UdpRepr { src_port, dst_port }.emit(
        &mut UdpPacket::new_unchecked(&mut out[20..]),
        payload.len(),
        IpAddr::V4(src),
        IpAddr::V4(dst),
    );
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: 17,
        payload_len: 8 + payload.len(),
        ttl: 64,
        dscp: 0,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
    out
}

/// An IPv6/UDP packet (no link layer).
pub fn ipv6_udp(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = vec![0u8; 40 + 8 + payload.len()];
    out[48..].copy_from_slice(payload);
    UdpRepr { src_port, dst_port }.emit(
        &mut UdpPacket::new_unchecked(&mut out[40..]),
        payload.len(),
        IpAddr::V6(src),
        IpAddr::V6(dst),
    );
    Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: 17,
        payload_len: 8 + payload.len(),
        hop_limit: 64,
        traffic_class: 0,
    }
    .emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
    out
}

/// `payload` in an Ethernet II frame.
pub fn ethernet(src: MacAddr, dst: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 14 + payload.len()];
    out[14..].copy_from_slice(payload);
    EthernetRepr {
        src,
        dst,
        ethertype,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
    out
}

/// An IP packet behind a COMET header (no link layer).
pub fn comet(index: u8, keys: &[u8], ip_packet: &[u8]) -> Vec<u8> {
    let inner_protocol = match ip_packet.first().map(|b| b >> 4) {
        Some(6) => EtherType::IPV6,
        _ => EtherType::IPV4,
    };
    let repr = CometRepr {
        index,
        inner_protocol,
        keys,
    };
    let mut out = vec![0u8; repr.header_len() + ip_packet.len()];
    out[repr.header_len()..].copy_from_slice(ip_packet);
    repr.emit(&mut CometPacket::new_unchecked(&mut out[..]));
    out
}

/// A COMET frame: Ethernet, COMET header, IP packet.
pub fn comet_frame(
    src: MacAddr,
    dst: MacAddr,
    index: u8,
    keys: &[u8],
    ip_packet: &[u8],
) -> Vec<u8> {
    ethernet(src, dst, EtherType::COMET, &comet(index, keys, ip_packet))
}

/// `payload` in an Ethernet frame with VLAN tags (`(TPID, TCI)`, outermost first).
pub fn tagged(
    src: MacAddr,
    dst: MacAddr,
    tags: &[(u16, u16)],
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(14 + 4 * tags.len() + payload.len());
    out.extend_from_slice(&dst.0);
    out.extend_from_slice(&src.0);
    for (tpid, tci) in tags {
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&tci.to_be_bytes());
    }
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(payload);
    out
}
