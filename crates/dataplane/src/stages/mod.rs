//! General-purpose stages: link-layer classification first, IP handoff last.

use crate::pipeline::{
    pkt_type, Batch, Context, DropReason, IpHandoff, LinkKind, PacketKind, Stage, Verdict,
};
use crate::wire::{ethernet, vlan, EtherType, EthernetFrame, VlanHeader};
use std::any::Any;

/// Most VLAN tags stripped while looking for the network header (QinQ = 2).
pub const MAX_VLAN_TAGS: usize = 2;

/// Finds the network header (through up to two VLAN tags) and what it is. Frames the data
/// plane does not handle (ARP, frames the host sent, IP not addressed to this host's MAC) are
/// left to the kernel.
#[derive(Default)]
pub struct ClassifyStage;

impl Stage for ClassifyStage {
    fn name(&self) -> &'static str {
        "classify"
    }

    fn process(&mut self, batch: &mut Batch, ctx: &Context<'_>) {
        for (buf, meta) in batch.iter_mut() {
            if meta.verdict != Verdict::Pending {
                continue;
            }
            if meta.pkt_type == pkt_type::OUTGOING {
                meta.verdict = Verdict::Ignore;
                continue;
            }
            let link = ctx
                .ports
                .get(usize::from(meta.port))
                .map(|p| p.link)
                .unwrap_or(LinkKind::Ethernet);
            if link == LinkKind::Ethernet {
                let Ok(frame) = EthernetFrame::new_checked(buf.as_slice()) else {
                    meta.verdict = Verdict::Drop(DropReason::MalformedL2);
                    continue;
                };
                let mut offset = ethernet::HEADER_LEN;
                let mut ethertype = frame.ethertype();
                let mut tags = 0;
                while (ethertype == EtherType::VLAN || ethertype == EtherType::QINQ)
                    && tags < MAX_VLAN_TAGS
                {
                    match VlanHeader::new_checked(buf.as_slice().get(offset..).unwrap_or(&[])) {
                        Ok(tag) => ethertype = tag.inner_ethertype(),
                        Err(_) => break,
                    }
                    offset += vlan::HEADER_LEN;
                    tags += 1;
                }
                if ethertype == EtherType::VLAN || ethertype == EtherType::QINQ {
                    meta.verdict = Verdict::Drop(DropReason::MalformedL2);
                    continue;
                }
                meta.protocol = ethertype;
                meta.l3 = offset as u16;
            } else {
                meta.l3 = 0;
            }
            meta.kind = match meta.protocol {
                EtherType::IPV4 => PacketKind::Ipv4,
                EtherType::IPV6 => PacketKind::Ipv6,
                EtherType::COMET => PacketKind::Comet,
                _ => PacketKind::Other,
            };
            if meta.checksum_pending && matches!(meta.kind, PacketKind::Ipv4 | PacketKind::Ipv6) {
                if let Some(ip) = buf.as_mut_slice().get_mut(usize::from(meta.l3)..) {
                    crate::wire::checksum::fill_transport_checksum(ip);
                }
                meta.checksum_pending = false;
            }
            let for_us = meta.pkt_type == pkt_type::HOST;
            match meta.kind {
                PacketKind::Other => meta.verdict = Verdict::Ignore,
                PacketKind::Ipv4 | PacketKind::Ipv6 | PacketKind::Comet if !for_us => {
                    meta.verdict = Verdict::Ignore
                }
                _ => {}
            }
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// IP packets no stage claimed: left to the kernel's own copy, or (IPv4 on ports with
/// [`IpHandoff::Inject`], IPv4 and IPv6 on AF_XDP ports, [`IpHandoff::Redirected`]) stripped
/// of the link layer and handed to the kernel. Linux can turn
/// IPv4 forwarding off per interface but not IPv6 forwarding, so on an inject port the kernel
/// still forwards its own copy of IPv6 packets and the data plane leaves those alone.
#[derive(Default)]
pub struct IpHandoffStage;

impl Stage for IpHandoffStage {
    fn name(&self) -> &'static str {
        "ip-handoff"
    }

    fn process(&mut self, batch: &mut Batch, ctx: &Context<'_>) {
        for (buf, meta) in batch.iter_mut() {
            if meta.verdict != Verdict::Pending
                || !matches!(meta.kind, PacketKind::Ipv4 | PacketKind::Ipv6)
            {
                continue;
            }
            let handoff = ctx
                .ports
                .get(usize::from(meta.port))
                .map(|p| p.ip_handoff)
                .unwrap_or(IpHandoff::Kernel);
            match handoff {
                IpHandoff::Kernel => meta.verdict = Verdict::Ignore,
                IpHandoff::Inject if meta.kind == PacketKind::Ipv6 => {
                    meta.verdict = Verdict::Ignore
                }
                IpHandoff::Inject | IpHandoff::Redirected => {
                    if buf.pull_front(usize::from(meta.l3)) {
                        meta.l3 = 0;
                        meta.verdict = Verdict::ToKernel;
                    } else {
                        meta.verdict = Verdict::Drop(DropReason::MalformedL2);
                    }
                }
            }
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The CAFE pipeline: classify, intercept, forward, IP handoff.
pub fn cafe_stages() -> Vec<Box<dyn Stage>> {
    cafe_stages_enforcing(None)
}

/// The CAFE pipeline with subscriber enforcement (the PCC stage) right after `classify`, so
/// that every IP packet the data plane handles meets its subscriber's rules before anything
/// forwards it.
fn cafe_stages_enforcing(pcc: Option<Box<dyn Stage>>) -> Vec<Box<dyn Stage>> {
    let mut stages: Vec<Box<dyn Stage>> = vec![Box::new(ClassifyStage)];
    stages.extend(pcc);
    stages.push(Box::new(crate::cafe::InterceptStage::default()));
    stages.push(Box::new(crate::cafe::ForwardStage::default()));
    stages.push(Box::new(IpHandoffStage));
    stages
}

/// The service pipeline: the service stage first (it owns the access ports: every frame on a
/// port with a service encapsulation belongs to a SAP, or is dropped or punted), then the CAFE
/// pipeline for the other ports. The service stage runs before `classify` because classify
/// leaves frames not addressed to the host to the kernel, and on an access port every frame
/// is the data plane's.
///
/// `service` is a [`crate::service::ServiceStage`], or, for a data plane with several workers,
/// a clone of one [`crate::pipeline::Shared`] service stage per worker: MAC learning, MAC
/// limits, policer buckets and the punt queue then stay single across workers.
pub fn service_stages(service: impl Stage + 'static) -> Vec<Box<dyn Stage>> {
    let mut stages: Vec<Box<dyn Stage>> = vec![Box::new(service)];
    stages.extend(cafe_stages());
    stages
}

/// The service pipeline with PCC enforcement: `service → classify → pcc → cafe-intercept →
/// cafe-forward → ip-handoff`.
///
/// `pcc` is a [`crate::pcc::PccStage`], or, for several workers, a clone of one
/// [`crate::pipeline::Shared`] PCC stage per worker (policer buckets stay single, and each
/// subscriber's counters have one writer at a time).
pub fn subscriber_stages(
    service: impl Stage + 'static,
    pcc: impl Stage + 'static,
) -> Vec<Box<dyn Stage>> {
    let mut stages: Vec<Box<dyn Stage>> = vec![Box::new(service)];
    stages.extend(cafe_stages_enforcing(Some(Box::new(pcc))));
    stages
}
