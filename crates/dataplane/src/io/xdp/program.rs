//! The XDP program brasa attaches to an AF_XDP port: it decides, before the kernel builds an
//! skb, whether a frame is the data plane's (redirected into the AF_XDP socket of the queue it
//! arrived on) or the kernel's (`XDP_PASS`).
//!
//! The decision reads three maps the control side keeps:
//! - `policy` (one entry): the port's MAC address and whether the port is an access port,
//!   where every frame belongs to a SAP and is redirected;
//! - `local4` / `local6`: the host's own addresses; IP packets for them stay with the kernel.
//!
//! On other ports a frame is redirected when it is addressed to the port's MAC and carries
//! COMET, or IPv4/IPv6 for an address that is not the host's (transit: intercepted, forwarded
//! or handed back to the kernel by the pipeline); up to two VLAN tags are looked through.
//! Everything else passes: ARP and neighbour discovery, broadcast and multicast, frames for
//! other MACs, traffic to the host's own addresses, and frames too short to classify. A queue
//! without a socket passes its frames too (the redirect's fallback action).

use super::asm::{reg::*, Asm, AsmError, Cond, Insn, Size};
use crate::wire::EtherType;

/// `XDP_PASS`.
pub const XDP_PASS: i32 = 2;
/// `bpf_map_lookup_elem`.
const HELPER_MAP_LOOKUP: i32 = 1;
/// `bpf_redirect_map`.
const HELPER_REDIRECT_MAP: i32 = 51;

// Offsets in `struct xdp_md`.
const MD_DATA: i16 = 0;
const MD_DATA_END: i16 = 4;
const MD_RX_QUEUE: i16 = 16;

/// [`PortPolicy::flags`]: redirect every frame (an access port).
pub const REDIRECT_ALL: u32 = 1;

/// The `policy` map's value: what the program needs to know about its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct PortPolicy {
    /// [`REDIRECT_ALL`] or 0.
    pub flags: u32,
    /// The port's MAC address.
    pub mac: [u8; 6],
    /// Padding (zero).
    pub pad: [u8; 2],
}

impl PortPolicy {
    /// The bytes the map stores.
    pub fn to_bytes(self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..4].copy_from_slice(&self.flags.to_ne_bytes());
        out[4..10].copy_from_slice(&self.mac);
        out
    }
}

/// The file descriptors of the maps the program refers to.
#[derive(Debug, Clone, Copy)]
pub struct ProgramMaps {
    /// `BPF_MAP_TYPE_ARRAY`, one [`PortPolicy`].
    pub policy: i32,
    /// `BPF_MAP_TYPE_XSKMAP` indexed by receive queue.
    pub xsks: i32,
    /// `BPF_MAP_TYPE_HASH`: IPv4 address (network order) → u8.
    pub local4: i32,
    /// `BPF_MAP_TYPE_HASH`: IPv6 address → u8.
    pub local6: i32,
}

/// An EtherType as a 16-bit load from the frame reads it (the frame holds it big-endian; the
/// program runs in the host's byte order).
fn wire16(ethertype: u16) -> i32 {
    i32::from(u16::from_ne_bytes(ethertype.to_be_bytes()))
}

/// The program's instructions, referring to `maps`.
pub fn instructions(maps: ProgramMaps) -> Result<Vec<Insn>, AsmError> {
    let mut a = Asm::new();
    // r6 = ctx, r7 = data, r8 = data_end, r9 = policy; r5 = offset of the network header.
    a.mov(R6, R1)
        .load(Size::W, R7, R6, MD_DATA)
        .load(Size::W, R8, R6, MD_DATA_END)
        .store_imm(Size::W, R10, -4, 0)
        .mov(R2, R10)
        .add_imm(R2, -4)
        .load_map(R1, maps.policy)
        .call(HELPER_MAP_LOOKUP)
        .jump_imm(Cond::Eq, R0, 0, "pass")
        .mov(R9, R0)
        // An Ethernet header, or the kernel's.
        .mov(R2, R7)
        .add_imm(R2, 14)
        .jump_reg(Cond::Gt, R2, R8, "pass")
        .load(Size::W, R3, R9, 0)
        .jump_imm(Cond::Set, R3, REDIRECT_ALL as i32, "redirect")
        // Broadcast and multicast are the kernel's; so are frames for other MACs.
        .load(Size::B, R3, R7, 0)
        .jump_imm(Cond::Set, R3, 1, "pass")
        .load(Size::W, R3, R7, 0)
        .load(Size::W, R4, R9, 4)
        .jump_reg(Cond::Ne, R3, R4, "pass")
        .load(Size::H, R3, R7, 4)
        .load(Size::H, R4, R9, 8)
        .jump_reg(Cond::Ne, R3, R4, "pass")
        // The EtherType, through up to two VLAN tags.
        .load(Size::H, R3, R7, 12)
        .mov_imm(R5, 14);
    for (depth, next) in [(18, "tag2"), (22, "l3")] {
        let tag = if depth == 18 { "tag1" } else { "tag2" };
        a.jump_imm(Cond::Eq, R3, wire16(EtherType::VLAN), tag)
            .jump_imm(Cond::Eq, R3, wire16(EtherType::QINQ), tag)
            .jump("l3")
            .label(tag)
            .mov(R2, R7)
            .add_imm(R2, depth)
            .jump_reg(Cond::Gt, R2, R8, "pass")
            .load(Size::H, R3, R7, (depth - 2) as i16)
            .mov_imm(R5, depth);
        if next == "l3" {
            a.jump("l3");
        }
    }
    a.label("l3")
        .jump_imm(Cond::Eq, R3, wire16(EtherType::COMET), "redirect")
        .jump_imm(Cond::Eq, R3, wire16(EtherType::IPV4), "ipv4")
        .jump_imm(Cond::Eq, R3, wire16(EtherType::IPV6), "ipv6")
        .jump("pass")
        // IPv4: redirect unless the destination is one of the host's addresses.
        .label("ipv4")
        .mov(R2, R7)
        .add(R2, R5)
        .mov(R4, R2)
        .add_imm(R4, 20)
        .jump_reg(Cond::Gt, R4, R8, "pass")
        .load(Size::W, R3, R2, 16)
        .store(Size::W, R10, -8, R3)
        .mov(R2, R10)
        .add_imm(R2, -8)
        .load_map(R1, maps.local4)
        .call(HELPER_MAP_LOOKUP)
        .jump_imm(Cond::Ne, R0, 0, "pass")
        .jump("redirect")
        // IPv6: the same with the 16-byte destination.
        .label("ipv6")
        .mov(R2, R7)
        .add(R2, R5)
        .mov(R4, R2)
        .add_imm(R4, 40);
    a.jump_reg(Cond::Gt, R4, R8, "pass");
    for word in 0..4i16 {
        a.load(Size::W, R3, R2, 24 + 4 * word)
            .store(Size::W, R10, -24 + 4 * word, R3);
    }
    a.mov(R2, R10)
        .add_imm(R2, -24)
        .load_map(R1, maps.local6)
        .call(HELPER_MAP_LOOKUP)
        .jump_imm(Cond::Ne, R0, 0, "pass")
        // Into the socket of the frame's receive queue; without one, to the kernel.
        .label("redirect")
        .load(Size::W, R2, R6, MD_RX_QUEUE)
        .load_map(R1, maps.xsks)
        .mov_imm(R3, XDP_PASS)
        .call(HELPER_REDIRECT_MAP)
        .exit()
        .label("pass")
        .mov_imm(R0, XDP_PASS)
        .exit();
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembles_with_every_map_referenced() {
        let maps = ProgramMaps {
            policy: 11,
            xsks: 12,
            local4: 13,
            local6: 14,
        };
        let insns = instructions(maps).unwrap();
        let map_fds: Vec<i32> = insns
            .iter()
            .filter(|i| i.code == 0x18)
            .map(|i| i.imm)
            .collect();
        assert_eq!(map_fds, vec![11, 13, 14, 12]);
        // Both exits return: the last instruction is an exit.
        assert_eq!(insns.last().map(|i| i.code), Some(0x95));
    }

    #[test]
    fn policy_bytes_are_flags_then_mac() {
        let policy = PortPolicy {
            flags: REDIRECT_ALL,
            mac: [2, 0, 0, 0, 0, 9],
            pad: [0; 2],
        };
        let bytes = policy.to_bytes();
        assert_eq!(&bytes[..4], &1u32.to_ne_bytes());
        assert_eq!(&bytes[4..10], &[2, 0, 0, 0, 0, 9]);
    }
}
