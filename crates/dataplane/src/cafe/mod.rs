//! Stateless CAFE (seed 004 §5): intercept at the ingress edge, key-by-key forwarding in
//! transit, decapsulation at the egress edge.

pub mod forward;
pub mod intercept;

use crate::flow::FlowKey;
use crate::pipeline::{Batch, Context, DropReason, LinkKind, PacketKind, Stage, Verdict};
use crate::wire::comet::{CometPacket, CometRepr};
use crate::wire::{
    ethernet, vlan, EtherType, EthernetFrame, Ipv4Packet, Ipv6Packet, MacAddr, VlanHeader,
};
use forward::{EgressKind, ForwardTable};
use intercept::FilterTable;
use std::any::Any;

/// Matches IP packets against the intercept filters and pushes the COMET header on matches;
/// the forward stage then sends them by their first key.
#[derive(Default)]
pub struct InterceptStage {
    /// The filters.
    pub filters: FilterTable,
}

impl Stage for InterceptStage {
    fn name(&self) -> &'static str {
        "cafe-intercept"
    }

    fn process(&mut self, batch: &mut Batch, ctx: &Context<'_>) {
        if self.filters.is_empty() {
            return;
        }
        for (buf, meta) in batch.iter_mut() {
            if meta.verdict != Verdict::Pending {
                continue;
            }
            let l3 = usize::from(meta.l3);
            let parsed = match meta.kind {
                PacketKind::Ipv4 => FlowKey::from_ipv4(buf.as_slice().get(l3..).unwrap_or(&[])),
                PacketKind::Ipv6 => FlowKey::from_ipv6(buf.as_slice().get(l3..).unwrap_or(&[])),
                _ => continue,
            };
            let (key, ip_len) = match parsed {
                Ok(found) => found,
                Err(_) => {
                    meta.verdict = Verdict::Drop(DropReason::MalformedIp);
                    continue;
                }
            };
            let Some(keys) = self.filters.match_packet(&key, ip_len, ctx.now_ns) else {
                continue;
            };
            let repr = CometRepr {
                index: 0,
                inner_protocol: meta.protocol,
                keys,
            };
            if !buf.insert_gap(l3, repr.header_len()) {
                meta.verdict = Verdict::Drop(DropReason::NoRoom);
                continue;
            }
            let Some(header) = buf.as_mut_slice().get_mut(l3..) else {
                meta.verdict = Verdict::Drop(DropReason::NoRoom);
                continue;
            };
            repr.emit(&mut CometPacket::new_unchecked(header));
            meta.kind = PacketKind::Comet;
            meta.protocol = EtherType::COMET;
        }
    }

    fn tick(&mut self, now_ns: u64) {
        self.filters.expire(now_ns);
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Counters of the forward stage beyond the per-key ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ForwardCounters {
    /// COMET packets whose path was complete and were decapsulated.
    pub decapsulated: u64,
    /// Bytes of the IP packets handed on after decapsulation.
    pub decapsulated_bytes: u64,
}

/// Forwards COMET packets by their current key, or decapsulates them when the path is
/// complete (`index = length`) and hands the IP packet to the kernel.
#[derive(Default)]
pub struct ForwardStage {
    /// The forwarding table.
    pub table: ForwardTable,
    /// Decapsulation counters.
    pub counters: ForwardCounters,
}

/// Makes the link-layer header in front of `l3` exactly `want` bytes long.
fn resize_l2(buf: &mut crate::packet::PacketBuf, l3: usize, want: usize) -> bool {
    if l3 >= want {
        buf.pull_front(l3 - want)
    } else {
        buf.push_front(want - l3)
    }
}

impl Stage for ForwardStage {
    fn name(&self) -> &'static str {
        "cafe-forward"
    }

    fn process(&mut self, batch: &mut Batch, ctx: &Context<'_>) {
        for (buf, meta) in batch.iter_mut() {
            if meta.verdict != Verdict::Pending || meta.kind != PacketKind::Comet {
                continue;
            }
            let l3 = usize::from(meta.l3);
            let Some(bytes) = buf.as_mut_slice().get_mut(l3..) else {
                meta.verdict = Verdict::Drop(DropReason::MalformedComet);
                continue;
            };
            let mut comet = match CometPacket::new_checked(bytes) {
                Ok(comet) => comet,
                Err(_) => {
                    meta.verdict = Verdict::Drop(DropReason::MalformedComet);
                    continue;
                }
            };
            if comet.is_path_complete() {
                let inner = comet.inner_protocol();
                let header_len = comet.header_len();
                // The kernel gets only whole, well-formed IP packets: a truncated one (a lone
                // version byte, a total length beyond the data) is dropped here and counted.
                let kind = match inner {
                    EtherType::IPV4 => match Ipv4Packet::new_checked(comet.payload()) {
                        Ok(packet) if packet.verify_checksum() => Some(PacketKind::Ipv4),
                        _ => None,
                    },
                    EtherType::IPV6 => Ipv6Packet::new_checked(comet.payload())
                        .ok()
                        .map(|_| PacketKind::Ipv6),
                    _ => {
                        meta.verdict = Verdict::Drop(DropReason::UnsupportedInner);
                        continue;
                    }
                };
                let Some(kind) = kind else {
                    meta.verdict = Verdict::Drop(DropReason::MalformedIp);
                    continue;
                };
                if !buf.pull_front(l3 + header_len) {
                    meta.verdict = Verdict::Drop(DropReason::MalformedComet);
                    continue;
                }
                self.counters.decapsulated += 1;
                self.counters.decapsulated_bytes += buf.len() as u64;
                meta.l3 = 0;
                meta.kind = kind;
                meta.protocol = inner;
                meta.verdict = Verdict::ToKernel;
                continue;
            }
            let Some(key) = comet.current_key() else {
                meta.verdict = Verdict::Drop(DropReason::MalformedComet);
                continue;
            };
            let Some(entry) = self.table.get(key) else {
                meta.verdict = Verdict::Drop(DropReason::UnknownKey);
                continue;
            };
            let Some(port) = ctx.ports.get(usize::from(entry.port)) else {
                meta.verdict = Verdict::Drop(DropReason::BadEgress);
                continue;
            };
            comet.set_index(comet.index() + 1);
            let comet_len = bytes_len(buf.len(), l3);
            self.table.count(key, comet_len);
            let (l2_len, dst, vid) = match (entry.kind, port.link) {
                (EgressKind::Ethernet { dst }, LinkKind::Ethernet) => {
                    (ethernet::HEADER_LEN, dst, None)
                }
                (EgressKind::Vlan { dst, vid }, LinkKind::Ethernet) => {
                    (ethernet::HEADER_LEN + vlan::HEADER_LEN, dst, Some(vid))
                }
                (EgressKind::Device, LinkKind::Ip) => (0, MacAddr::default(), None),
                _ => {
                    meta.verdict = Verdict::Drop(DropReason::BadEgress);
                    continue;
                }
            };
            if !resize_l2(buf, l3, l2_len) {
                meta.verdict = Verdict::Drop(DropReason::NoRoom);
                continue;
            }
            if l2_len > 0 {
                let mut frame = EthernetFrame::new_unchecked(buf.as_mut_slice());
                frame.set_dst(dst);
                frame.set_src(port.mac);
                match vid {
                    Some(vid) => {
                        frame.set_ethertype(EtherType::VLAN);
                        let mut tag = VlanHeader::new_unchecked(frame.payload_mut());
                        tag.set_tci(0, false, vid);
                        tag.set_inner_ethertype(EtherType::COMET);
                    }
                    None => frame.set_ethertype(EtherType::COMET),
                }
            }
            meta.l3 = l2_len as u16;
            meta.protocol = EtherType::COMET;
            meta.verdict = Verdict::Transmit(entry.port);
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

fn bytes_len(total: usize, l3: usize) -> usize {
    total.saturating_sub(l3)
}
