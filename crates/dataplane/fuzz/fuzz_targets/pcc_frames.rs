//! The PCC stage (`classify → pcc → ip-handoff`) over arbitrary IP packets from and to
//! subscribers with drop, rate-limit and remark rules in both directions and both families:
//! never panics, every packet ends with a decision, and an IPv4 header whose checksum was
//! valid is still valid after a DSCP remark.
#![no_main]
use brasa_dataplane::acl::{Disposition, IpMatch, PortRange, Prefix};
use brasa_dataplane::pcc::*;
use brasa_dataplane::pipeline::{Batch, PacketMeta, Pipeline, Verdict};
use brasa_dataplane::wire::{EtherType, Ipv4Packet};
use libfuzzer_sys::fuzz_target;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

const SUB4: [u8; 4] = [192, 0, 2, 10];
const SUB6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0x42];

fn pipeline() -> Pipeline {
    let rule = |name: &str, direction, precedence, flow: IpMatch, action| PccRuleSpec {
        name: name.into(),
        direction,
        precedence,
        flows: vec![flow],
        action,
    };
    let pir = PccAction {
        rate_limit: Some(PccPolicer {
            pir_kbps: 1_000,
            cir_kbps: 500,
            mbs: Some(3_000),
            cbs: None,
            packet_byte_offset: -4,
        }),
        account: true,
        ..PccAction::default()
    };
    let remark = PccAction {
        remark_dscp: Some(46),
        ..PccAction::default()
    };
    let drop = PccAction {
        disposition: Disposition::Drop,
        ..PccAction::default()
    };
    let spec = SubscriberPccSpec {
        name: "sub".into(),
        addresses: vec![
            Prefix::new(Ipv4Addr::from(SUB4), 32),
            Prefix::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0x1200, 0, 0, 0, 0), 64),
        ],
        vprn_addresses: Vec::new(),
        rules: vec![
            rule(
                "udp-dropped",
                Direction::Ingress,
                1,
                IpMatch {
                    protocol: Some(17),
                    dst_port: Some(PortRange { first: 9, last: 19 }),
                    ..IpMatch::default()
                },
                drop,
            ),
            rule("limited", Direction::Ingress, 5, IpMatch::default(), pir),
            rule(
                "remarked",
                Direction::Egress,
                5,
                IpMatch {
                    dscp: Some(0),
                    ..IpMatch::default()
                },
                remark,
            ),
        ],
    };
    let mut stage = PccStage::new(PccDefaults::default());
    stage
        .install(Arc::new(SubscriberPolicy::compile(spec).unwrap()))
        .unwrap();
    testing::pipeline(Some(Box::new(stage)))
}

fuzz_target!(|data: &[u8]| {
    let mut p = pipeline();
    let mut batch = Batch::new(16);
    let mut valid_v4 = Vec::new();
    // Packets are length-prefixed; the first byte of each says which family it claims and
    // which of its addresses to set to the subscriber's, so that rules get hit.
    let mut rest = data;
    let mut now = 0;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (packet, next) = tail.split_at(len);
        rest = next;
        let (&selector, ip) = packet.split_first().unwrap_or((&0, &[]));
        let mut ip = ip.to_vec();
        let v6 = selector & 1 == 1;
        let at = match (v6, selector & 2 == 2) {
            (false, false) => 12..16,
            (false, true) => 16..20,
            (true, false) => 8..24,
            (true, true) => 24..40,
        };
        if let Some(addr) = ip.get_mut(at) {
            addr.copy_from_slice(if v6 { &SUB6 } else { &SUB4 });
        }
        let ethertype = if v6 { EtherType::IPV6 } else { EtherType::IPV4 };
        let mut frame = testing::PORT_MAC.0.to_vec();
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 2]);
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(&ip);
        if batch.push(&frame, PacketMeta::new(0, 0, 0)) {
            valid_v4.push(
                !v6 && Ipv4Packet::new_checked(&ip[..])
                    .is_ok_and(|packet| packet.verify_checksum()),
            );
        }
        if batch.is_full() || rest.is_empty() {
            p.run(&mut batch, now);
            for ((buf, meta), valid) in batch.iter().zip(valid_v4.iter()) {
                assert_ne!(meta.verdict, Verdict::Pending);
                if *valid && meta.verdict == Verdict::Ignore {
                    let packet = Ipv4Packet::new_checked(&buf.as_slice()[14..]).unwrap();
                    assert!(packet.verify_checksum());
                }
            }
            batch.clear();
            valid_v4.clear();
            now += 1_000_000;
        }
    }
});
