//! The 5-tuple of an IP packet and the hash used by the lookup tables.

use crate::wire::{ip_protocol, Error, Ipv4Packet, Ipv6Packet, Result};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A 5-tuple. IPv4 addresses are stored IPv4-mapped so one key type covers both families;
/// ports are 0 for protocols without ports and for non-first fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// Source address (IPv4-mapped for IPv4).
    pub src: [u8; 16],
    /// Destination address (IPv4-mapped for IPv4).
    pub dst: [u8; 16],
    /// IP protocol of the transport header.
    pub protocol: u8,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

/// The 16-byte form of an address used in [`FlowKey`].
pub fn addr_bytes(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The address a 16-byte key form stands for (IPv4 when mapped).
pub fn addr_from_bytes(bytes: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

fn ports(protocol: u8, transport: &[u8]) -> (u16, u16) {
    match protocol {
        ip_protocol::TCP | ip_protocol::UDP | 132 /* SCTP */ => match transport.get(..4) {
            Some(b) => (u16::from_be_bytes([b[0], b[1]]), u16::from_be_bytes([b[2], b[3]])),
            None => (0, 0),
        },
        _ => (0, 0),
    }
}

impl FlowKey {
    /// The 5-tuple of an IPv4 packet (header checksum verified). Returns the key and the total
    /// length of the IP packet.
    pub fn from_ipv4(bytes: &[u8]) -> Result<(Self, usize)> {
        let packet = Ipv4Packet::new_checked(bytes)?;
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        let protocol = packet.protocol();
        let (src_port, dst_port) = if packet.frag_offset() == 0 {
            ports(protocol, packet.payload())
        } else {
            (0, 0)
        };
        let key = FlowKey {
            src: packet.src_addr().to_ipv6_mapped().octets(),
            dst: packet.dst_addr().to_ipv6_mapped().octets(),
            protocol,
            src_port,
            dst_port,
        };
        Ok((key, usize::from(packet.total_len())))
    }

    /// The 5-tuple of an IPv6 packet (extension headers walked). Returns the key and the total
    /// length of the IP packet.
    pub fn from_ipv6(bytes: &[u8]) -> Result<(Self, usize)> {
        let packet = Ipv6Packet::new_checked(bytes)?;
        let location = packet.transport()?;
        let (src_port, dst_port) = if location.has_transport_header {
            ports(
                location.protocol,
                bytes.get(location.offset..).unwrap_or(&[]),
            )
        } else {
            (0, 0)
        };
        let key = FlowKey {
            src: packet.src_addr().octets(),
            dst: packet.dst_addr().octets(),
            protocol: location.protocol,
            src_port,
            dst_port,
        };
        Ok((
            key,
            crate::wire::ipv6::HEADER_LEN + usize::from(packet.payload_len()),
        ))
    }

    /// Source address.
    pub fn src_addr(&self) -> IpAddr {
        addr_from_bytes(self.src)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> IpAddr {
        addr_from_bytes(self.dst)
    }
}

/// The unspecified address in key form for "any".
pub const ANY_ADDR: [u8; 16] = [0; 16];

/// An IPv4 address in key form.
pub fn v4(addr: Ipv4Addr) -> [u8; 16] {
    addr.to_ipv6_mapped().octets()
}

/// A fast non-cryptographic hasher for table keys (the multiply-rotate scheme of rustc's
/// FxHasher). Keys come from packets, so a table keyed by attacker-chosen tuples can collide;
/// the filter tables it serves are keyed by operator-configured tuples, which bounds that.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    #[inline]
    fn write_u16(&mut self, value: u16) {
        self.add(u64::from(value));
    }

    #[inline]
    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// `BuildHasher` for [`FxHasher`].
pub type FxBuildHasher = BuildHasherDefault<FxHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Ipv4Repr, UdpPacket, UdpRepr};

    #[test]
    fn ipv4_udp_key() {
        let mut bytes = [0u8; 28];
        let src = Ipv4Addr::new(127, 0, 0, 1);
        let dst = Ipv4Addr::new(127, 0, 0, 2);
        Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            protocol: 17,
            payload_len: 8,
            ttl: 64,
            dscp: 0,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut bytes[..]));
        UdpRepr {
            src_port: 1000,
            dst_port: 80,
        }
        .emit(
            &mut UdpPacket::new_unchecked(&mut bytes[20..]),
            0,
            src.into(),
            dst.into(),
        );
        let (key, len) = FlowKey::from_ipv4(&bytes).unwrap();
        assert_eq!(len, 28);
        assert_eq!(key.src_addr(), IpAddr::V4(src));
        assert_eq!(key.dst_addr(), IpAddr::V4(dst));
        assert_eq!((key.protocol, key.src_port, key.dst_port), (17, 1000, 80));
        bytes[10] ^= 1;
        assert_eq!(FlowKey::from_ipv4(&bytes).unwrap_err(), Error::Checksum);
    }
}
