//! The CAFE pipeline on in-memory batches: intercept, transit, VLAN and device egress,
//! decapsulation, drops by reason.

use brasa_dataplane::build;
use brasa_dataplane::control::{self, FilterRequest, ForwardRule};
use brasa_dataplane::pipeline::{
    pkt_type, Batch, DropReason, IpHandoff, LinkKind, PacketMeta, Pipeline, Port, Verdict,
};
use brasa_dataplane::stages::cafe_stages;
use brasa_dataplane::wire::comet::CometPacket;
use brasa_dataplane::wire::{EtherType, EthernetFrame, MacAddr, VlanHeader};
use std::net::Ipv4Addr;

const MAC_IN: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const MAC_OUT: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
const PEER: MacAddr = MacAddr([0xaa, 0x11, 0xb0, 0, 0, 0x01]);
const HOST: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x99]);

fn pipeline() -> Pipeline {
    let ports = vec![
        Port {
            name: "in0".into(),
            link: LinkKind::Ethernet,
            mac: MAC_IN,
            ip_handoff: IpHandoff::Inject,
        },
        Port {
            name: "out0".into(),
            link: LinkKind::Ethernet,
            mac: MAC_OUT,
            ip_handoff: IpHandoff::Kernel,
        },
        Port {
            name: "gre1".into(),
            link: LinkKind::Ip,
            mac: MacAddr::default(),
            ip_handoff: IpHandoff::Kernel,
        },
    ];
    Pipeline::new(ports, cafe_stages())
}

fn udp(src_port: u16, dst_port: u16) -> Vec<u8> {
    build::ipv4_udp(
        Ipv4Addr::new(127, 1, 1, 2),
        Ipv4Addr::new(127, 2, 2, 1),
        src_port,
        dst_port,
        b"content",
    )
}

fn run_one(pipeline: &mut Pipeline, frame: &[u8], now_ns: u64) -> (Vec<u8>, PacketMeta) {
    let mut batch = Batch::new(4);
    assert!(batch.push(frame, PacketMeta::new(0, pkt_type::HOST, 0)));
    pipeline.run(&mut batch, now_ns);
    let (buf, meta) = batch.get(0).unwrap();
    (buf.as_slice().to_vec(), *meta)
}

#[test]
fn intercept_pushes_header_and_forwards_by_first_key() {
    let mut pipeline = pipeline();
    control::forward_add(
        &mut pipeline,
        &ForwardRule::Ethernet {
            key: 0x12,
            device: "out0".into(),
            mac: PEER.to_string(),
        },
    )
    .unwrap();
    control::intercept_add(
        &mut pipeline,
        &FilterRequest {
            id: 123,
            timeout: 60,
            src: Some("127.1.1.2".parse().unwrap()),
            dst: Some("127.2.2.1".parse().unwrap()),
            protocol: 17,
            src_port: 0,
            dst_port: 80,
            keys: "1234567890abcdef".into(),
            bandwidth: 0,
            cos: String::new(),
            as_path: vec![],
        },
        0,
    )
    .unwrap();
    let ip = udp(4000, 80);
    let (out, meta) = run_one(
        &mut pipeline,
        &build::ethernet(HOST, MAC_IN, EtherType::IPV4, &ip),
        5,
    );
    assert_eq!(meta.verdict, Verdict::Transmit(1));
    let frame = EthernetFrame::new_checked(&out[..]).unwrap();
    assert_eq!(
        (frame.dst(), frame.src(), frame.ethertype()),
        (PEER, MAC_OUT, EtherType::COMET)
    );
    let comet = CometPacket::new_checked(frame.payload()).unwrap();
    assert_eq!(
        comet.keys(),
        &[0x12, 0x34, 0x56, 0x78, 0x90, 0xab, 0xcd, 0xef]
    );
    assert_eq!(comet.index(), 1, "the ingress edge used key 0");
    assert_eq!(comet.inner_protocol(), EtherType::IPV4);
    assert_eq!(comet.payload(), &ip[..]);
    let filters = control::intercept_list(&mut pipeline).unwrap();
    assert_eq!((filters[0].packets, filters[0].bytes), (1, ip.len() as u64));
    assert_eq!(
        control::forward_get(&mut pipeline, Some(0x12)).unwrap()[0].packets,
        1
    );

    // A different destination port takes the IP handoff (this port injects into the kernel).
    let other = udp(4000, 81);
    let (out, meta) = run_one(
        &mut pipeline,
        &build::ethernet(HOST, MAC_IN, EtherType::IPV4, &other),
        6,
    );
    assert_eq!(meta.verdict, Verdict::ToKernel);
    assert_eq!(out, other);
}

#[test]
fn transit_advances_index_and_rewrites_macs() {
    let mut pipeline = pipeline();
    control::forward_add(
        &mut pipeline,
        &ForwardRule::Ethernet {
            key: 0xa7,
            device: "out0".into(),
            mac: PEER.to_string(),
        },
    )
    .unwrap();
    let ip = udp(1, 2);
    let frame = build::comet_frame(HOST, MAC_IN, 1, &[0x05, 0xa7, 0x09], &ip);
    let (out, meta) = run_one(&mut pipeline, &frame, 0);
    assert_eq!(meta.verdict, Verdict::Transmit(1));
    assert_eq!(out.len(), frame.len());
    assert_eq!(&out[..6], &PEER.0);
    assert_eq!(&out[6..12], &MAC_OUT.0);
    let mut expected = frame.clone();
    expected[..12].copy_from_slice(&out[..12]);
    expected[15] = 2; // index 1 -> 2
    assert_eq!(out, expected);
}

#[test]
fn vlan_egress_adds_tag() {
    let mut pipeline = pipeline();
    control::forward_add(
        &mut pipeline,
        &ForwardRule::Vlan {
            key: 3,
            device: "out0".into(),
            mac: PEER.to_string(),
            vid: 100,
        },
    )
    .unwrap();
    let ip = udp(1, 2);
    let (out, meta) = run_one(
        &mut pipeline,
        &build::comet_frame(HOST, MAC_IN, 0, &[3, 4], &ip),
        0,
    );
    assert_eq!(meta.verdict, Verdict::Transmit(1));
    let frame = EthernetFrame::new_checked(&out[..]).unwrap();
    assert_eq!(frame.ethertype(), EtherType::VLAN);
    let tag = VlanHeader::new_checked(frame.payload()).unwrap();
    assert_eq!((tag.vid(), tag.inner_ethertype()), (100, EtherType::COMET));
    let comet = CometPacket::new_checked(tag.payload()).unwrap();
    assert_eq!((comet.index(), comet.payload()), (1, &ip[..]));
}

#[test]
fn device_egress_strips_link_layer() {
    let mut pipeline = pipeline();
    control::forward_add(
        &mut pipeline,
        &ForwardRule::Device {
            key: 5,
            device: "gre1".into(),
        },
    )
    .unwrap();
    let ip = udp(1, 2);
    let (out, meta) = run_one(
        &mut pipeline,
        &build::comet_frame(HOST, MAC_IN, 0, &[5, 6], &ip),
        0,
    );
    assert_eq!(meta.verdict, Verdict::Transmit(2));
    assert_eq!(meta.protocol, EtherType::COMET);
    assert_eq!(out, build::comet(1, &[5, 6], &ip));
}

#[test]
fn complete_path_decapsulates_ipv4_and_ipv6() {
    let mut pipeline = pipeline();
    let ip = udp(1, 2);
    let (out, meta) = run_one(
        &mut pipeline,
        &build::comet_frame(HOST, MAC_IN, 2, &[1, 2], &ip),
        0,
    );
    assert_eq!(
        (meta.verdict, meta.protocol),
        (Verdict::ToKernel, EtherType::IPV4)
    );
    assert_eq!(out, ip);
    let ip6 = build::ipv6_udp(
        "fd00::1".parse().unwrap(),
        "fd00::2".parse().unwrap(),
        1,
        2,
        b"six",
    );
    let (out, meta) = run_one(
        &mut pipeline,
        &build::comet_frame(HOST, MAC_IN, 1, &[1], &ip6),
        0,
    );
    assert_eq!(
        (meta.verdict, meta.protocol),
        (Verdict::ToKernel, EtherType::IPV6)
    );
    assert_eq!(out, ip6);
    assert_eq!(control::stats(&mut pipeline).decapsulated, 2);
}

/// A path-complete packet whose inner IP packet is cut short is dropped as malformed and not
/// counted as decapsulated: the kernel only ever gets whole packets.
#[test]
fn truncated_inner_packets_are_not_decapsulated() {
    let mut pipeline = pipeline();
    let ip = udp(1, 2);
    let mut beyond = ip.clone();
    let claimed = (ip.len() + 10) as u16;
    beyond[2..4].copy_from_slice(&claimed.to_be_bytes());
    let mut bad_checksum = ip.clone();
    bad_checksum[10] ^= 0xff;
    let ip6 = build::ipv6_udp(
        "fd00::1".parse().unwrap(),
        "fd00::2".parse().unwrap(),
        1,
        2,
        b"six",
    );
    let cases: [(&str, u16, &[u8]); 5] = [
        ("a lone version byte", EtherType::IPV4, &[0x45]),
        ("total length beyond the data", EtherType::IPV4, &beyond),
        ("header checksum wrong", EtherType::IPV4, &bad_checksum),
        (
            "IPv6 cut in its payload",
            EtherType::IPV6,
            &ip6[..ip6.len() - 1],
        ),
        ("IPv6 header cut", EtherType::IPV6, &ip6[..20]),
    ];
    for (what, protocol, inner) in cases {
        let mut frame = build::comet_frame(HOST, MAC_IN, 1, &[1], inner);
        frame[18..20].copy_from_slice(&protocol.to_be_bytes());
        let (_, meta) = run_one(&mut pipeline, &frame, 0);
        assert_eq!(
            meta.verdict,
            Verdict::Drop(DropReason::MalformedIp),
            "{what}"
        );
    }
    let stats = control::stats(&mut pipeline);
    assert_eq!(stats.decapsulated, 0);
    assert!(
        stats.drops.contains(&("malformed_ip".to_string(), 5)),
        "{:?}",
        stats.drops
    );
    // The same packets whole go to the kernel.
    for (protocol, inner) in [(EtherType::IPV4, &ip), (EtherType::IPV6, &ip6)] {
        let mut frame = build::comet_frame(HOST, MAC_IN, 1, &[1], inner);
        frame[18..20].copy_from_slice(&protocol.to_be_bytes());
        let (out, meta) = run_one(&mut pipeline, &frame, 0);
        assert_eq!((meta.verdict, &out), (Verdict::ToKernel, inner));
    }
    assert_eq!(control::stats(&mut pipeline).decapsulated, 2);
}

#[test]
fn bad_packets_are_dropped_by_reason() {
    let mut pipeline = pipeline();
    let ip = udp(1, 2);
    // Unknown key.
    let (_, meta) = run_one(
        &mut pipeline,
        &build::comet_frame(HOST, MAC_IN, 0, &[9], &ip),
        0,
    );
    assert_eq!(meta.verdict, Verdict::Drop(DropReason::UnknownKey));
    // Index beyond length.
    let mut bad = build::comet_frame(HOST, MAC_IN, 0, &[9], &ip);
    bad[15] = 7;
    let (_, meta) = run_one(&mut pipeline, &bad, 0);
    assert_eq!(meta.verdict, Verdict::Drop(DropReason::MalformedComet));
    // Decapsulated payload that is not what the header says.
    let mut mismatched = build::comet_frame(HOST, MAC_IN, 1, &[9], &[0x60; 40]);
    mismatched[18..20].copy_from_slice(&EtherType::IPV4.to_be_bytes());
    let (_, meta) = run_one(&mut pipeline, &mismatched, 0);
    assert_eq!(meta.verdict, Verdict::Drop(DropReason::MalformedIp));
    // Runt frame.
    let (_, meta) = run_one(&mut pipeline, &[0u8; 10], 0);
    assert_eq!(meta.verdict, Verdict::Drop(DropReason::MalformedL2));
    // ARP is the kernel's.
    let (_, meta) = run_one(
        &mut pipeline,
        &build::ethernet(HOST, MAC_IN, EtherType::ARP, &[0; 28]),
        0,
    );
    assert_eq!(meta.verdict, Verdict::Ignore);
    let stats = control::stats(&mut pipeline);
    let drop = |name: &str| stats.drops.iter().find(|(n, _)| n == name).unwrap().1;
    assert_eq!(
        (
            drop("unknown_key"),
            drop("malformed_comet"),
            drop("malformed_ip"),
            drop("malformed_l2")
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(stats.interfaces[0].counters.rx_packets, 5);
    assert_eq!(stats.interfaces[0].counters.dropped, 4);
}

#[test]
fn control_refuses_wrong_devices() {
    let mut pipeline = pipeline();
    assert!(control::forward_add(
        &mut pipeline,
        &ForwardRule::Device {
            key: 1,
            device: "out0".into()
        }
    )
    .is_err());
    assert!(control::forward_add(
        &mut pipeline,
        &ForwardRule::Ethernet {
            key: 1,
            device: "gre1".into(),
            mac: PEER.to_string()
        }
    )
    .is_err());
    assert!(control::forward_add(
        &mut pipeline,
        &ForwardRule::Ethernet {
            key: 1,
            device: "nope".into(),
            mac: PEER.to_string()
        }
    )
    .is_err());
    assert!(control::forward_add(
        &mut pipeline,
        &ForwardRule::Ethernet {
            key: 1,
            device: "out0".into(),
            mac: "x".into()
        }
    )
    .is_err());
    assert!(control::forward_get(&mut pipeline, None)
        .unwrap()
        .is_empty());
    assert!(control::forward_remove(&mut pipeline, 1).is_err());
}

#[test]
fn pcap_replay_through_the_pipeline() {
    use brasa_dataplane::pcap::{PcapReader, PcapWriter, LINKTYPE_ETHERNET};
    let mut pipeline = pipeline();
    control::forward_add(
        &mut pipeline,
        &ForwardRule::Ethernet {
            key: 0x21,
            device: "out0".into(),
            mac: PEER.to_string(),
        },
    )
    .unwrap();
    let ip = udp(1, 2);
    let mut input = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET).unwrap();
    for (i, index) in [0u8, 1, 0].iter().enumerate() {
        let frame = build::comet_frame(HOST, MAC_IN, *index, &[0x21, 0x21], &ip);
        input.write_packet(i as u64 * 1000, &frame).unwrap();
    }
    let input = input.into_inner().unwrap();

    let mut reader = PcapReader::new(&input[..]).unwrap();
    let mut batch = Batch::new(8);
    while let Some(record) = reader.next_record().unwrap() {
        assert!(batch.push(&record.data, PacketMeta::new(0, pkt_type::HOST, 0)));
    }
    pipeline.run(&mut batch, 0);
    let mut output = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET).unwrap();
    for (buf, meta) in batch.iter() {
        assert_eq!(meta.verdict, Verdict::Transmit(1));
        output.write_packet(0, buf.as_slice()).unwrap();
    }
    let output = output.into_inner().unwrap();
    let mut reader = PcapReader::new(&output[..]).unwrap();
    let mut indexes = Vec::new();
    while let Some(record) = reader.next_record().unwrap() {
        let frame = EthernetFrame::new_checked(&record.data[..]).unwrap();
        assert_eq!(frame.dst(), PEER);
        indexes.push(CometPacket::new_checked(frame.payload()).unwrap().index());
    }
    assert_eq!(indexes, vec![1, 2, 1]);
}

#[test]
fn ipv6_packets_are_intercepted_through_extension_headers() {
    let mut pipeline = pipeline();
    control::forward_add(
        &mut pipeline,
        &ForwardRule::Ethernet {
            key: 0x12,
            device: "out0".into(),
            mac: PEER.to_string(),
        },
    )
    .unwrap();
    control::intercept_add(
        &mut pipeline,
        &FilterRequest {
            id: 6,
            timeout: 0,
            src: None,
            dst: Some("fd00::2".parse().unwrap()),
            protocol: 17,
            src_port: 0,
            dst_port: 443,
            keys: "12".into(),
            bandwidth: 0,
            cos: String::new(),
            as_path: vec![],
        },
        0,
    )
    .unwrap();
    let plain = build::ipv6_udp(
        "fd00::1".parse().unwrap(),
        "fd00::2".parse().unwrap(),
        5,
        443,
        b"v6",
    );
    // Insert an 8-byte destination-options header between the fixed header and UDP.
    let mut ip = plain[..40].to_vec();
    ip[6] = 60;
    ip[5] += 8;
    ip.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
    ip.extend_from_slice(&plain[40..]);
    let (out, meta) = run_one(
        &mut pipeline,
        &build::ethernet(HOST, MAC_IN, EtherType::IPV6, &ip),
        0,
    );
    assert_eq!(meta.verdict, Verdict::Transmit(1));
    let frame = EthernetFrame::new_checked(&out[..]).unwrap();
    let comet = CometPacket::new_checked(frame.payload()).unwrap();
    assert_eq!(
        (comet.inner_protocol(), comet.index(), comet.payload()),
        (EtherType::IPV6, 1, &ip[..])
    );
}

#[test]
fn qinq_tagged_comet_frames_are_forwarded_untagged() {
    let mut pipeline = pipeline();
    control::forward_add(
        &mut pipeline,
        &ForwardRule::Ethernet {
            key: 0x07,
            device: "out0".into(),
            mac: PEER.to_string(),
        },
    )
    .unwrap();
    let ip = udp(1, 2);
    let comet = build::comet(0, &[0x07, 0x08], &ip);
    let mut tagged = build::ethernet(HOST, MAC_IN, EtherType::QINQ, &[]);
    tagged.extend_from_slice(&[0x00, 0x64, 0x81, 0x00, 0x00, 0xc8, 0xcc, 0xcc]);
    tagged.extend_from_slice(&comet);
    let (out, meta) = run_one(&mut pipeline, &tagged, 0);
    assert_eq!(meta.verdict, Verdict::Transmit(1));
    let frame = EthernetFrame::new_checked(&out[..]).unwrap();
    assert_eq!(frame.ethertype(), EtherType::COMET);
    assert_eq!(
        CometPacket::new_checked(frame.payload()).unwrap().index(),
        1
    );
    // Three stacked tags are more than the data plane walks: dropped as malformed.
    let mut triple = build::ethernet(HOST, MAC_IN, EtherType::QINQ, &[]);
    triple.extend_from_slice(&[
        0x00, 0x64, 0x81, 0x00, 0x00, 0xc8, 0x81, 0x00, 0x00, 0x01, 0xcc, 0xcc,
    ]);
    triple.extend_from_slice(&comet);
    let (_, meta) = run_one(&mut pipeline, &triple, 0);
    assert_eq!(meta.verdict, Verdict::Drop(DropReason::MalformedL2));
}
