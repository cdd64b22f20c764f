//! The service pipeline on in-memory batches with built frames: SAP matching, Epipe tag
//! translation and GRE, VPLS learning/flooding/ageing/limits/static MACs/split horizon/moves,
//! filters, policers, capture punting, L3 SAPs, snapshot swaps, bad input.

use brasa_dataplane::acl::{Disposition, IpMatch, MacMatch, Match, PortRange, VidMatch};
use brasa_dataplane::build;
use brasa_dataplane::pipeline::{
    pkt_type, Batch, DropReason, IpHandoff, LinkKind, PacketMeta, Pipeline, Port, Verdict,
};
use brasa_dataplane::policer::{ColourMode, Meter, PolicerConfig, RateLimit, StatMode};
use brasa_dataplane::sap::{PortEncap, SapId};
use brasa_dataplane::service::*;
use brasa_dataplane::stages::service_stages;
use brasa_dataplane::wire::{ip_protocol, EtherType, MacAddr};
use std::net::{IpAddr, Ipv4Addr};

const Q: u16 = 0x8100;
const S: u16 = 0x88a8;
const SEC: u64 = 1_000_000_000;

fn mac(last: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, last])
}

/// Ports: 0 = QinQ (S-tag 0x88a8), 1 = dot1q, 2 = dot1q, 3 = null, 4 = network (GRE), 5 = dot1q.
fn pipeline() -> Pipeline {
    Pipeline::new(ports(), service_stages(ServiceStage::default()))
}

fn ports() -> Vec<Port> {
    (0..6)
        .map(|i| Port {
            name: format!("p{i}"),
            link: LinkKind::Ethernet,
            mac: MacAddr([0x02, 0xee, 0, 0, 0, i]),
            ip_handoff: IpHandoff::Kernel,
        })
        .collect()
}

fn builder() -> ServiceTablesBuilder {
    let mut b = ServiceTablesBuilder::new();
    b.set_port(PortSpec {
        outer_tpid: S,
        ..PortSpec::new(0, PortEncap::Qinq)
    })
    .unwrap();
    b.set_port(PortSpec::new(1, PortEncap::Dot1q)).unwrap();
    b.set_port(PortSpec::new(2, PortEncap::Dot1q)).unwrap();
    b.set_port(PortSpec::new(3, PortEncap::Null)).unwrap();
    b.set_port(PortSpec::new(5, PortEncap::Dot1q)).unwrap();
    b
}

fn sap(text: &str) -> SapId {
    let (port, encap) = text.split_once(':').unwrap_or((text, ""));
    SapId {
        port: port.parse().unwrap(),
        encap: encap.parse().unwrap(),
    }
}

fn install(p: &mut Pipeline, b: &mut ServiceTablesBuilder, now: u64) {
    p.stage_mut::<ServiceStage>()
        .unwrap()
        .install(b.build(), now);
}

fn stage(p: &mut Pipeline) -> &mut ServiceStage {
    p.stage_mut::<ServiceStage>().unwrap()
}

fn ip_payload() -> Vec<u8> {
    build::ipv4_udp(
        Ipv4Addr::new(192, 0, 2, 1),
        Ipv4Addr::new(198, 51, 100, 7),
        4000,
        80,
        &[0xab; 18],
    )
}

fn frame(src: MacAddr, dst: MacAddr, tags: &[(u16, u16)]) -> Vec<u8> {
    build::tagged(src, dst, tags, EtherType::IPV4, &ip_payload())
}

/// Runs frames `(port, bytes)` as one batch; returns every entry (received and copies).
fn run(p: &mut Pipeline, frames: &[(u16, Vec<u8>)], now: u64) -> Vec<(Vec<u8>, PacketMeta)> {
    let mut batch = Batch::new(frames.len().max(1));
    for (port, bytes) in frames {
        assert!(batch.push(bytes, PacketMeta::new(*port, pkt_type::OTHERHOST, 0)));
    }
    p.run(&mut batch, now);
    batch
        .iter()
        .map(|(buf, meta)| (buf.as_slice().to_vec(), *meta))
        .collect()
}

/// A broadcast from host `mac(host)` tagged `vid` on `port` at `now`: a VPLS learns the host
/// on that SAP.
fn announce(p: &mut Pipeline, port: u16, host: u8, vid: u16, now: u64) {
    run(
        p,
        &[(port, frame(mac(host), MacAddr::BROADCAST, &[(Q, vid)]))],
        now,
    );
}

fn run_one(p: &mut Pipeline, port: u16, bytes: Vec<u8>, now: u64) -> (Vec<u8>, Verdict) {
    let out = run(p, &[(port, bytes)], now);
    (out[0].0.clone(), out[0].1.verdict)
}

fn epipe(b: &mut ServiceTablesBuilder, id: u32, a: &str, z: &str) {
    b.set_service(ServiceSpec::Epipe(EpipeSpec::new(id)))
        .unwrap();
    b.set_sap(SapSpec::new(sap(a), id)).unwrap();
    b.set_sap(SapSpec::new(sap(z), id)).unwrap();
}

#[test]
fn epipe_translates_tags_both_directions() {
    let mut p = pipeline();
    let mut b = builder();
    epipe(&mut b, 100, "0:10.20", "1:30");
    install(&mut p, &mut b, 0);

    // QinQ 10.20 (PCP 5) → dot1q 30, PCP kept.
    let (out, verdict) = run_one(
        &mut p,
        0,
        frame(mac(1), mac(2), &[(S, 0xa000 | 10), (Q, 20)]),
        0,
    );
    assert_eq!(verdict, Verdict::Transmit(1));
    assert_eq!(out, frame(mac(1), mac(2), &[(Q, 0xa000 | 30)]));
    // dot1q 30 → QinQ 10.20 with the port's S-TPID.
    let (out, verdict) = run_one(&mut p, 1, frame(mac(2), mac(1), &[(Q, 30)]), 0);
    assert_eq!(verdict, Verdict::Transmit(0));
    assert_eq!(out, frame(mac(2), mac(1), &[(S, 10), (Q, 20)]));
    // A customer tag inside the service is carried transparently.
    let (out, _) = run_one(&mut p, 1, frame(mac(2), mac(1), &[(Q, 30), (Q, 777)]), 0);
    assert_eq!(out, frame(mac(2), mac(1), &[(S, 10), (Q, 20), (Q, 777)]));

    let s = stage(&mut p);
    let a = s.sap_counters(&sap("0:10.20")).unwrap();
    let z = s.sap_counters(&sap("1:30")).unwrap();
    assert_eq!(
        (a.rx_packets, a.tx_packets, z.rx_packets, z.tx_packets),
        (1, 2, 2, 1)
    );
    let svc = s.service_counters(100).unwrap();
    assert_eq!((svc.rx_packets, svc.tx_packets), (3, 3));
}

/// The stage keeps each SAP's egress (tags, port, MTU, whether it has checks) beside its
/// counters; every snapshot that changes the SAP or its port must reach it.
#[test]
fn a_sap_s_egress_follows_every_snapshot_that_changes_it() {
    let mut p = pipeline();
    let mut b = builder();
    epipe(&mut b, 1, "1:10", "0:30.40");
    install(&mut p, &mut b, 0);
    let send = |p: &mut Pipeline| run_one(p, 1, frame(mac(1), mac(2), &[(Q, 0x2000 | 10)]), 0);
    let (out, verdict) = send(&mut p);
    assert_eq!(verdict, Verdict::Transmit(0));
    assert_eq!(
        out,
        frame(mac(1), mac(2), &[(S, 0x2000 | 30), (Q, 0x2000 | 40)])
    );

    // Port 0 with 802.1Q outer tags, and `mtu`.
    let dot1q_outer = |mtu: Option<u16>| PortSpec {
        outer_tpid: Q,
        mtu,
        ..PortSpec::new(0, PortEncap::Qinq)
    };
    // The port's outer TPID changes: the SAP's tags with it.
    b.set_port(dot1q_outer(None)).unwrap();
    install(&mut p, &mut b, 0);
    let (out, verdict) = send(&mut p);
    assert_eq!(verdict, Verdict::Transmit(0));
    assert_eq!(
        out,
        frame(mac(1), mac(2), &[(Q, 0x2000 | 30), (Q, 0x2000 | 40)])
    );

    // Its MTU shrinks below the frame.
    b.set_port(dot1q_outer(Some(64))).unwrap();
    install(&mut p, &mut b, 0);
    assert_eq!(send(&mut p).1, Verdict::Drop(DropReason::Mtu));

    // Back to a large MTU; then the egress SAP is shut down, then up with an egress filter
    // that drops everything.
    b.set_port(dot1q_outer(None)).unwrap();
    let mut egress = SapSpec::new(sap("0:30.40"), 1);
    egress.shutdown = true;
    b.set_sap(egress.clone()).unwrap();
    install(&mut p, &mut b, 0);
    assert_eq!(send(&mut p).1, Verdict::Drop(DropReason::ServiceDown));
    b.set_filter(FilterSpec {
        id: 9,
        kind: FilterKind::Ip,
        default_action: Disposition::Drop,
        entries: Vec::new(),
    })
    .unwrap();
    egress.shutdown = false;
    egress.egress.ip_filter = Some(9);
    b.set_sap(egress.clone()).unwrap();
    install(&mut p, &mut b, 0);
    assert_eq!(send(&mut p).1, Verdict::Drop(DropReason::Filter));

    // Without the filter it forwards again; removed, its slot sends nothing.
    egress.egress.ip_filter = None;
    b.set_sap(egress).unwrap();
    install(&mut p, &mut b, 0);
    assert_eq!(send(&mut p).1, Verdict::Transmit(0));
    b.remove_sap(&sap("0:30.40")).unwrap();
    install(&mut p, &mut b, 0);
    assert_eq!(send(&mut p).1, Verdict::Drop(DropReason::ServiceDown));
    let drops = stage(&mut p).sap_counters(&sap("1:10")).unwrap().drops;
    assert_eq!(drops.get("service_down"), Some(&1));
}

#[test]
fn untagged_null_and_default_saps() {
    let mut p = pipeline();
    let mut b = builder();
    epipe(&mut b, 1, "1:0", "3");
    epipe(&mut b, 2, "2:*", "0:0.*");
    install(&mut p, &mut b, 0);
    // Untagged on dot1q port 1 → null port 3, as is.
    let (out, v) = run_one(&mut p, 1, frame(mac(1), mac(2), &[]), 0);
    assert_eq!((v, out), (Verdict::Transmit(3), frame(mac(1), mac(2), &[])));
    // Priority-tagged (VID 0) also matches :0, and the priority tag is popped.
    let (out, v) = run_one(&mut p, 1, frame(mac(1), mac(2), &[(Q, 0x2000)]), 0);
    assert_eq!((v, out), (Verdict::Transmit(3), frame(mac(1), mac(2), &[])));
    // A null port takes every frame, tags and all.
    let (out, v) = run_one(&mut p, 3, frame(mac(1), mac(2), &[(Q, 5), (Q, 6)]), 0);
    assert_eq!(
        (v, out),
        (
            Verdict::Transmit(1),
            frame(mac(1), mac(2), &[(Q, 5), (Q, 6)])
        )
    );
    // The default SAP :* delimits nothing: the tag crosses the service.
    let (out, v) = run_one(&mut p, 2, frame(mac(1), mac(2), &[(Q, 99)]), 0);
    assert_eq!(
        (v, out),
        (Verdict::Transmit(0), frame(mac(1), mac(2), &[(Q, 99)]))
    );
}

#[test]
fn frames_matching_no_sap_wrong_tpid_and_truncated_tags_are_counted() {
    let mut p = pipeline();
    let mut b = builder();
    epipe(&mut b, 1, "0:10.20", "1:30");
    install(&mut p, &mut b, 0);
    let (_, v) = run_one(&mut p, 0, frame(mac(1), mac(2), &[(S, 10), (Q, 21)]), 0);
    assert_eq!(v, Verdict::Drop(DropReason::NoSap));
    // 0x8100 outer tag on a port whose S-TPID is 0x88a8: not a tag here, so untagged.
    let (_, v) = run_one(&mut p, 0, frame(mac(1), mac(2), &[(Q, 10), (Q, 20)]), 0);
    assert_eq!(v, Verdict::Drop(DropReason::NoSap));
    let mut short = frame(mac(1), mac(2), &[(S, 10), (Q, 20)]);
    short.truncate(19);
    let (_, v) = run_one(&mut p, 0, short, 0);
    assert_eq!(v, Verdict::Drop(DropReason::MalformedL2));
    let (_, v) = run_one(&mut p, 1, vec![1, 2, 3], 0);
    assert_eq!(v, Verdict::Drop(DropReason::MalformedL2));
    let s = stage(&mut p);
    assert_eq!(s.access_port_counters(0).unwrap().no_sap, 2);
    assert_eq!(s.access_port_counters(0).unwrap().malformed, 1);
    assert_eq!(s.access_port_counters(1).unwrap().malformed, 1);
    let drops: Vec<_> = p.drops().filter(|(_, n)| *n > 0).collect();
    assert!(drops.contains(&(DropReason::NoSap, 2)));
    assert!(drops.contains(&(DropReason::MalformedL2, 2)));
}

#[test]
fn a_storm_of_garbage_and_random_tags_is_dropped_while_the_epipe_forwards() {
    let mut p = pipeline();
    let mut b = builder();
    epipe(&mut b, 1, "0:10.20", "1:30");
    install(&mut p, &mut b, 0);
    let good = frame(mac(1), mac(2), &[(S, 10), (Q, 20)]);
    let mut x: u64 = 0x9e37_79b9;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut forwarded = 0;
    let mut storm = 0;
    for round in 0..200u64 {
        let mut frames = Vec::new();
        for _ in 0..63 {
            let r = next();
            let bytes = match r % 3 {
                // Random bytes of random length.
                0 => (0..(r % 90) as usize).map(|_| next() as u8).collect(),
                // Random tags, random TPIDs.
                1 => {
                    let tpid = [S, Q, 0x9100, 0x0800][(r >> 8) as usize % 4];
                    let mut f = frame(
                        mac(3),
                        mac(4),
                        &[(tpid, (r >> 16) as u16), (Q, (r >> 32) as u16)],
                    );
                    f.truncate(12 + (r >> 40) as usize % 40);
                    f
                }
                // Random tags that are not 10.20.
                _ => frame(
                    mac(3),
                    mac(4),
                    &[(S, 11 + (r >> 8) as u16 % 4000), (Q, (r >> 24) as u16)],
                ),
            };
            frames.push((0u16, bytes));
        }
        frames.push((0, good.clone()));
        let out = run(&mut p, &frames, round);
        for (_, meta) in &out[..63] {
            assert!(
                matches!(meta.verdict, Verdict::Drop(_)),
                "{:?}",
                meta.verdict
            );
            storm += 1;
        }
        if out[63].1.verdict == Verdict::Transmit(1) {
            forwarded += 1;
        }
    }
    assert_eq!(forwarded, 200);
    let s = stage(&mut p);
    let c = s.access_port_counters(0).unwrap();
    assert_eq!(c.no_sap + c.malformed, storm);
    assert_eq!(s.sap_counters(&sap("0:10.20")).unwrap().rx_packets, 200);
}

fn vpls(b: &mut ServiceTablesBuilder, id: u32, saps: &[&str]) {
    let mut spec = VplsSpec::new(id);
    spec.split_horizon_groups = vec!["residential".into()];
    b.set_service(ServiceSpec::Vpls(spec)).unwrap();
    for s in saps {
        b.set_sap(SapSpec::new(sap(s), id)).unwrap();
    }
}

fn verdicts(out: &[(Vec<u8>, PacketMeta)]) -> Vec<Verdict> {
    let mut v: Vec<Verdict> = out.iter().map(|(_, m)| m.verdict).collect();
    v.sort_by_key(|v| format!("{v:?}"));
    v
}

#[test]
fn vpls_floods_unknown_then_forwards_learned_and_ages() {
    let mut p = pipeline();
    let mut b = builder();
    vpls(&mut b, 10, &["1:100", "2:200", "0:5.6"]);
    install(&mut p, &mut b, 0);
    // Unknown destination: flooded to the two other SAPs, each with its own tags.
    let out = run(&mut p, &[(1, frame(mac(1), mac(2), &[(Q, 100)]))], 0);
    assert_eq!(out.len(), 2, "one copy plus the original");
    let mut sent: Vec<(Verdict, Vec<u8>)> =
        out.iter().map(|(b, m)| (m.verdict, b.clone())).collect();
    sent.sort_by_key(|(v, _)| format!("{v:?}"));
    assert_eq!(
        sent[0],
        (
            Verdict::Transmit(0),
            frame(mac(1), mac(2), &[(S, 5), (Q, 6)])
        )
    );
    assert_eq!(
        sent[1],
        (Verdict::Transmit(2), frame(mac(1), mac(2), &[(Q, 200)]))
    );
    // mac(2) answers from 2:200: mac(1) is known, so it goes only to 1:100.
    let out = run(&mut p, &[(2, frame(mac(2), mac(1), &[(Q, 200)]))], SEC);
    assert_eq!(verdicts(&out), vec![Verdict::Transmit(1)]);
    assert_eq!(out[0].0, frame(mac(2), mac(1), &[(Q, 100)]));
    let s = stage(&mut p);
    let fdb = s.fdb(10, SEC);
    assert_eq!(fdb.len(), 2);
    assert_eq!(fdb[0].sap, sap("1:100"));
    let c = s.service_counters(10).unwrap();
    assert_eq!((c.learned, c.flooded, c.macs), (2, 1, 2));
    assert_eq!(
        p.port_counters()[0].tx_packets + p.port_counters()[2].tx_packets,
        2
    );

    // Broadcast always floods.
    let out = run(
        &mut p,
        &[(2, frame(mac(2), MacAddr::BROADCAST, &[(Q, 200)]))],
        SEC,
    );
    assert_eq!(
        verdicts(&out),
        vec![Verdict::Transmit(0), Verdict::Transmit(1)]
    );

    // Ageing: 300 s default; the sweep runs in ticks.
    for t in 0..=40 {
        p.tick(SEC + t * 10 * SEC);
    }
    let s = stage(&mut p);
    assert!(s.fdb(10, 400 * SEC).is_empty());
    assert_eq!(s.service_counters(10).unwrap().aged, 2);
    assert_eq!(s.sap_counters(&sap("1:100")).unwrap().macs, 0);
}

#[test]
fn vpls_split_horizon_same_sap_and_moves() {
    let mut p = pipeline();
    let mut b = builder();
    vpls(&mut b, 10, &["1:100", "1:101", "2:200"]);
    for s in ["1:100", "1:101"] {
        let mut spec = b.sap(&sap(s)).unwrap().clone();
        spec.split_horizon_group = Some("residential".into());
        b.set_sap(spec).unwrap();
    }
    install(&mut p, &mut b, 0);
    // A broadcast from a residential SAP reaches only the SAP outside the group.
    let out = run(
        &mut p,
        &[(1, frame(mac(1), MacAddr::BROADCAST, &[(Q, 100)]))],
        0,
    );
    assert_eq!(verdicts(&out), vec![Verdict::Transmit(2)]);
    // Learn mac(3) on 1:101, then send to it from 1:100: same group, dropped.
    announce(&mut p, 1, 3, 101, 0);
    let (_, v) = run_one(&mut p, 1, frame(mac(1), mac(3), &[(Q, 100)]), 0);
    assert_eq!(v, Verdict::Drop(DropReason::SplitHorizon));
    // From 2:200 it is delivered.
    let (out, v) = run_one(&mut p, 2, frame(mac(4), mac(3), &[(Q, 200)]), 0);
    assert_eq!(
        (v, out),
        (Verdict::Transmit(1), frame(mac(4), mac(3), &[(Q, 101)]))
    );
    // A destination on the ingress SAP itself is dropped.
    let (_, v) = run_one(&mut p, 2, frame(mac(9), mac(4), &[(Q, 200)]), 0);
    assert_eq!(v, Verdict::Drop(DropReason::SplitHorizon));
    // mac(3) moves to 2:200.
    announce(&mut p, 2, 3, 200, 0);
    let (_, v) = run_one(&mut p, 1, frame(mac(1), mac(3), &[(Q, 100)]), 0);
    assert_eq!(v, Verdict::Transmit(2));
    let s = stage(&mut p);
    assert_eq!(s.service_counters(10).unwrap().moves, 1);
    assert_eq!(s.sap_counters(&sap("1:101")).unwrap().macs, 0);
    assert_eq!(s.sap_counters(&sap("2:200")).unwrap().macs, 3);
}

#[test]
fn vpls_mac_limit_static_macs_and_discard_unknown_source() {
    let mut p = pipeline();
    let mut b = builder();
    vpls(&mut b, 10, &["1:100", "2:200"]);
    let mut limited = b.sap(&sap("1:100")).unwrap().clone();
    limited.max_mac = Some(2);
    limited.static_macs = vec![mac(0x50)];
    b.set_sap(limited.clone()).unwrap();
    install(&mut p, &mut b, 0);
    // One static + one learned = the limit of 2: a third source is forwarded, not learned.
    announce(&mut p, 1, 1, 100, 0);
    let (_, v) = run_one(&mut p, 1, frame(mac(2), MacAddr::BROADCAST, &[(Q, 100)]), 0);
    assert_eq!(v, Verdict::Transmit(2));
    let s = stage(&mut p);
    assert_eq!(s.sap_counters(&sap("1:100")).unwrap().macs, 1);
    assert_eq!(s.service_counters(10).unwrap().limit_not_learned, 1);
    // With discard-unknown-source the frame is dropped.
    limited.discard_unknown_source = true;
    b.set_sap(limited).unwrap();
    install(&mut p, &mut b, 0);
    let (_, v) = run_one(&mut p, 1, frame(mac(2), MacAddr::BROADCAST, &[(Q, 100)]), 0);
    assert_eq!(v, Verdict::Drop(DropReason::MacLimit));
    // The static MAC is known without learning, never moves, never ages.
    let (out, v) = run_one(&mut p, 2, frame(mac(7), mac(0x50), &[(Q, 200)]), 0);
    assert_eq!(
        (v, out),
        (Verdict::Transmit(1), frame(mac(7), mac(0x50), &[(Q, 100)]))
    );
    run(
        &mut p,
        &[(2, frame(mac(0x50), MacAddr::BROADCAST, &[(Q, 200)]))],
        0,
    );
    for t in 0..100 {
        p.tick(t * 10 * SEC);
    }
    let s = stage(&mut p);
    let fdb = s.fdb(10, 1000 * SEC);
    assert_eq!(fdb.len(), 1);
    assert!(fdb[0].is_static && fdb[0].sap == sap("1:100"));
    assert_eq!(s.service_counters(10).unwrap().static_move_refused, 1);
}

#[test]
fn a_broadcast_storm_is_capped_by_the_bum_limit_and_unicast_keeps_flowing() {
    let mut p = pipeline();
    let mut b = builder();
    vpls(&mut b, 10, &["1:100", "2:200", "5:300"]);
    let mut stormy = b.sap(&sap("1:100")).unwrap().clone();
    stormy.bum_limit = Some(RateLimit {
        pps: 1000,
        burst: 10,
    });
    b.set_sap(stormy).unwrap();
    install(&mut p, &mut b, 0);
    // mac(2) on 2:200 and mac(3) on 5:300 are known.
    announce(&mut p, 2, 2, 200, 0);
    announce(&mut p, 5, 3, 300, 0);
    let mut unicast_ok = 0;
    let mut flooded = 0;
    for round in 0..100u64 {
        let mut frames: Vec<(u16, Vec<u8>)> = (0..50)
            .map(|_| (1, frame(mac(1), MacAddr::BROADCAST, &[(Q, 100)])))
            .collect();
        frames.push((2, frame(mac(2), mac(3), &[(Q, 200)])));
        // 1 ms per round: 1000 pps admits about one broadcast per round after the burst.
        let out = run(&mut p, &frames, SEC + round * 1_000_000);
        if out[50].1.verdict == Verdict::Transmit(5) {
            unicast_ok += 1;
        }
        flooded += out[..50]
            .iter()
            .filter(|(_, m)| matches!(m.verdict, Verdict::Transmit(_)))
            .count();
    }
    assert_eq!(unicast_ok, 100);
    // Burst of 10 + ~1 per ms over 99 ms.
    assert!((100..=115).contains(&flooded), "{flooded}");
    let s = stage(&mut p);
    let drops = s.sap_counters(&sap("1:100")).unwrap().drops;
    assert_eq!(drops["bum_limit"] as usize, 5000 - flooded);
}

#[test]
fn flood_copies_beyond_the_replica_area_are_counted() {
    let mut p = pipeline();
    let mut b = builder();
    let saps: Vec<String> = (1..=9).map(|i| format!("1:{i}")).collect();
    let refs: Vec<&str> = saps.iter().map(String::as_str).collect();
    vpls(&mut b, 10, &refs);
    install(&mut p, &mut b, 0);
    let mut batch = Batch::new(2);
    batch.set_replica_limit(10);
    for _ in 0..2 {
        batch.push(
            &frame(mac(1), MacAddr::BROADCAST, &[(Q, 1)]),
            PacketMeta::new(1, 0, 0),
        );
    }
    p.run(&mut batch, 0);
    // 2 frames × 8 targets = 16 transmissions wanted, 2 originals + 10 copies possible.
    let sent = batch
        .iter()
        .filter(|(_, m)| matches!(m.verdict, Verdict::Transmit(_)))
        .count();
    assert_eq!(sent, 12);
    let total: u64 = refs[1..]
        .iter()
        .map(|s| {
            stage(&mut p)
                .sap_counters(&sap(s))
                .unwrap()
                .drops
                .get("replica_limit")
                .copied()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(total, 4);
}

fn policer(b: &mut ServiceTablesBuilder, id: u32, pir_kbps: u64, cir_kbps: u64) {
    b.set_policer(PolicerSpec {
        id,
        config: PolicerConfig {
            meter: Meter::TrTcm {
                pir_kbps,
                mbs: Some(2_000),
                cir_kbps,
                cbs: Some(if cir_kbps == 0 { 0 } else { 1_000 }),
            },
            colour_mode: ColourMode::Blind,
            packet_byte_offset: 0,
            stat_mode: StatMode::OfferedTotalCir,
        },
    })
    .unwrap();
}

/// The filter match of the test frames' UDP to port 80.
fn udp_to_port_80() -> Match {
    let port = PortRange {
        first: 80,
        last: 80,
    };
    Match::Ip(IpMatch {
        protocol: Some(17),
        dst_port: Some(port),
        ..IpMatch::default()
    })
}

#[test]
fn ingress_filter_entries_count_hits_and_rate_limit() {
    let mut p = pipeline();
    let mut b = builder();
    epipe(&mut b, 1, "1:10", "2:20");
    policer(&mut b, 7, 8, 0); // 1000 bytes/s, 2000-byte burst
    b.set_filter(FilterSpec {
        id: 5,
        kind: FilterKind::Ip,
        default_action: Disposition::Drop,
        entries: vec![
            FilterEntrySpec {
                id: 10,
                matcher: udp_to_port_80(),
                action: FilterAction::RateLimit { policer: 7 },
            },
            FilterEntrySpec {
                id: 20,
                matcher: Match::Ip(IpMatch {
                    dst: Some(brasa_dataplane::acl::v4(198, 51, 100, 0, 24)),
                    ..IpMatch::default()
                }),
                action: FilterAction::Forward,
            },
        ],
    })
    .unwrap();
    let mut a = b.sap(&sap("1:10")).unwrap().clone();
    a.ingress.ip_filter = Some(5);
    b.set_sap(a).unwrap();
    install(&mut p, &mut b, 0);
    // Port 80 hits entry 10 and its policer: 2000-byte burst of 60-byte packets, then red.
    let mut verdicts = Vec::new();
    for _ in 0..40 {
        verdicts.push(run_one(&mut p, 1, frame(mac(1), mac(2), &[(Q, 10)]), 0).1);
    }
    let passed = verdicts
        .iter()
        .filter(|v| **v == Verdict::Transmit(2))
        .count();
    let ip_len = 14 + ip_payload().len() + 4;
    assert_eq!(passed, 2_000 / ip_len);
    assert!(verdicts.contains(&Verdict::Drop(DropReason::Policer)));
    // Another port to 198.51.100.7 hits entry 20; another destination hits the default drop.
    let other = build::tagged(
        mac(1),
        mac(2),
        &[(Q, 10)],
        EtherType::IPV4,
        &build::ipv4_udp(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(198, 51, 100, 7),
            1,
            81,
            &[],
        ),
    );
    assert_eq!(run_one(&mut p, 1, other, 0).1, Verdict::Transmit(2));
    let elsewhere = build::tagged(
        mac(1),
        mac(2),
        &[(Q, 10)],
        EtherType::IPV4,
        &build::ipv4_udp(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(203, 0, 113, 1),
            1,
            81,
            &[],
        ),
    );
    assert_eq!(
        run_one(&mut p, 1, elsewhere, 0).1,
        Verdict::Drop(DropReason::Filter)
    );
    let s = stage(&mut p);
    let hits = s.filter_counters(FilterKind::Ip, 5).unwrap().entries;
    assert_eq!(
        hits.iter()
            .map(|h| (h.entry, h.packets))
            .collect::<Vec<_>>(),
        vec![(Some(10), 40), (Some(20), 1), (None, 1)]
    );
    let stats = s.policer_stats(7).unwrap();
    let colours = stats.per_colour.unwrap();
    assert_eq!(
        (colours[0].packets, colours[1].packets, colours[2].packets),
        (0, passed as u64, 40 - passed as u64)
    );
    let drops = s.sap_counters(&sap("1:10")).unwrap().drops;
    assert_eq!((drops["policer"], drops["filter"]), (40 - passed as u64, 1));
}

#[test]
fn a_changed_filter_applies_its_new_entries_from_the_next_install_and_keeps_their_hits() {
    let mut p = pipeline();
    let mut b = builder();
    epipe(&mut b, 1, "1:10", "2:20");
    let port_80 = |action| FilterSpec {
        id: 5,
        kind: FilterKind::Ip,
        default_action: Disposition::Forward,
        entries: vec![FilterEntrySpec {
            id: 10,
            matcher: udp_to_port_80(),
            action,
        }],
    };
    b.set_filter(port_80(FilterAction::Forward)).unwrap();
    let mut a = b.sap(&sap("1:10")).unwrap().clone();
    a.ingress.ip_filter = Some(5);
    b.set_sap(a).unwrap();
    install(&mut p, &mut b, 0);
    let send = |p: &mut Pipeline| run_one(p, 1, frame(mac(1), mac(2), &[(Q, 10)]), 0).1;
    assert_eq!(send(&mut p), Verdict::Transmit(2));
    // The packet path reads the rule set the stage keeps: it must follow the new snapshot.
    b.set_filter(port_80(FilterAction::Drop)).unwrap();
    install(&mut p, &mut b, 0);
    assert_eq!(send(&mut p), Verdict::Drop(DropReason::Filter));
    let hits = stage(&mut p)
        .filter_counters(FilterKind::Ip, 5)
        .unwrap()
        .entries;
    assert_eq!(
        hits.iter()
            .map(|h| (h.entry, h.packets))
            .collect::<Vec<_>>(),
        vec![(Some(10), 2), (None, 0)]
    );
}

#[test]
fn sap_policers_colour_and_a_changed_rate_keeps_counters() {
    let mut p = pipeline();
    let mut b = builder();
    epipe(&mut b, 1, "1:10", "2:20");
    policer(&mut b, 1, 80, 8);
    let mut a = b.sap(&sap("1:10")).unwrap().clone();
    a.ingress.policer = Some(1);
    b.set_sap(a).unwrap();
    install(&mut p, &mut b, 0);
    let sent: Vec<Verdict> = (0..100)
        .map(|_| run_one(&mut p, 1, frame(mac(1), mac(2), &[(Q, 10)]), 0).1)
        .collect();
    let forwarded = sent
        .iter()
        .filter(|v| matches!(v, Verdict::Transmit(_)))
        .count() as u64;
    let before = stage(&mut p).policer_stats(1).unwrap();
    let colours = before.per_colour.unwrap();
    // CBS 1000: green first; MBS 2000: then yellow; then red.
    assert!(colours[0].packets > 0 && colours[1].packets > 0 && colours[2].packets > 0);
    assert_eq!(colours[0].packets + colours[1].packets, forwarded);
    policer(&mut b, 1, 800, 8);
    install(&mut p, &mut b, 0);
    assert_eq!(stage(&mut p).policer_stats(1).unwrap(), before);
    // The new rate applies from now on: one second at 100 kB/s refills the 2000-byte bucket.
    let (_, v) = run_one(&mut p, 1, frame(mac(1), mac(2), &[(Q, 10)]), SEC);
    assert!(matches!(v, Verdict::Transmit(_)));
}

#[test]
fn capture_sap_punts_after_its_vid_filter_and_the_queue_is_bounded() {
    let mut p = pipeline();
    let mut b = builder();
    vpls(&mut b, 10, &[]);
    // mac-filter 10 type vid: outer-tag 20 4095 → drop (the dynamic services document's example).
    b.set_filter(FilterSpec {
        id: 10,
        kind: FilterKind::Mac,
        default_action: Disposition::Forward,
        entries: vec![FilterEntrySpec {
            id: 10,
            matcher: Match::Mac(MacMatch {
                outer_vid: Some(VidMatch::Masked {
                    value: 20,
                    mask: 4095,
                }),
                ..MacMatch::default()
            }),
            action: FilterAction::Drop,
        }],
    })
    .unwrap();
    let mut capture = SapSpec::new(sap("0:1214.*"), 10);
    capture.capture = true;
    capture.ingress.mac_filter = Some(10);
    b.set_sap(capture).unwrap();
    install(&mut p, &mut b, 0);
    let (_, v) = run_one(
        &mut p,
        0,
        frame(mac(1), MacAddr::BROADCAST, &[(S, 1214), (Q, 101)]),
        7,
    );
    assert!(matches!(v, Verdict::Punt(_)));
    let (_, v) = run_one(
        &mut p,
        0,
        frame(mac(1), MacAddr::BROADCAST, &[(S, 1214), (Q, 20)]),
        8,
    );
    assert_eq!(v, Verdict::Drop(DropReason::Filter));
    let mut punted = Vec::new();
    assert_eq!(stage(&mut p).drain_punts(|f| punted.push(f.clone())), 1);
    assert_eq!(punted[0].sap, sap("0:1214.*"));
    assert_eq!(
        (punted[0].outer_vid, punted[0].inner_vid, punted[0].now_ns),
        (1214, 101, 7)
    );
    assert_eq!(
        punted[0].frame,
        frame(mac(1), MacAddr::BROADCAST, &[(S, 1214), (Q, 101)])
    );
    assert_eq!(p.port_counters()[0].punted, 1);
    // Nothing is learned on a capture SAP.
    assert!(stage(&mut p).fdb(10, 0).is_empty());
    // The queue holds DEFAULT_PUNT_QUEUE frames; more are dropped and counted.
    let frames: Vec<(u16, Vec<u8>)> = (0..DEFAULT_PUNT_QUEUE + 5)
        .map(|i| {
            (
                0,
                frame(
                    mac(1),
                    MacAddr::BROADCAST,
                    // Tags other than the 101 punted above: its trigger is still in progress.
                    &[(S, 1214), (Q, (i % 3000) as u16 + 200)],
                ),
            )
        })
        .collect();
    let out = run(&mut p, &frames, 9);
    let full = out
        .iter()
        .filter(|(_, m)| m.verdict == Verdict::Drop(DropReason::PuntQueueFull))
        .count();
    assert_eq!(full, 5);
    assert_eq!(stage(&mut p).punt_queue_len(), DEFAULT_PUNT_QUEUE);
}

/// A capture SAP `0:*.*` in VPLS 10, installed.
fn capture_pipeline() -> Pipeline {
    let mut p = pipeline();
    let mut b = builder();
    vpls(&mut b, 10, &[]);
    let mut capture = SapSpec::new(sap("0:*.*"), 10);
    capture.capture = true;
    b.set_sap(capture).unwrap();
    install(&mut p, &mut b, 0);
    p
}

fn trigger_frame(outer: u16, inner: u16) -> (u16, Vec<u8>) {
    (
        0,
        frame(mac(1), MacAddr::BROADCAST, &[(S, outer), (Q, inner)]),
    )
}

#[test]
fn capture_sap_throttle_punts_one_frame_per_tags_until_the_control_side_releases_it() {
    let mut p = capture_pipeline();
    let throttle = stage(&mut p).trigger_throttle();
    let len = trigger_frame(1214, 101).1.len() as u64;
    // 1 + 9 frames of one trigger, 1 of another: two punted, nine dropped in the data plane.
    let mut frames = vec![trigger_frame(1214, 101); 10];
    frames.push(trigger_frame(1214, 102));
    let out = run(&mut p, &frames, SEC);
    let verdicts: Vec<Verdict> = out.iter().map(|(_, m)| m.verdict).collect();
    assert!(matches!(verdicts[0], Verdict::Punt(_)));
    assert!(verdicts[1..10]
        .iter()
        .all(|v| *v == Verdict::Drop(DropReason::TriggerInProgress)));
    assert!(matches!(verdicts[10], Verdict::Punt(_)));
    let counters = stage(&mut p).sap_counters(&sap("0:*.*")).unwrap();
    assert_eq!((counters.punted, counters.punted_octets), (2, 2 * len));
    assert_eq!(
        (counters.throttled, counters.throttled_octets),
        (9, 9 * len)
    );
    assert_eq!(counters.drops.get("trigger_in_progress"), Some(&9));
    let mut punted = Vec::new();
    stage(&mut p).drain_punts(|f| punted.push(f.clone()));
    let key = punted[0].throttle.expect("the first frame set a mark");
    assert_eq!(key, ThrottleKey::new(key.slot(), 1214, 101).unwrap());
    // Released (the trigger left progress): the next frame goes to the control plane again.
    throttle.release(key);
    let (_, v) = run_one(&mut p, 0, trigger_frame(1214, 101).1, 2 * SEC);
    assert!(matches!(v, Verdict::Punt(_)));
    let (_, v) = run_one(&mut p, 0, trigger_frame(1214, 101).1, 2 * SEC);
    assert_eq!(v, Verdict::Drop(DropReason::TriggerInProgress));
}

#[test]
fn capture_sap_frame_dropped_for_a_full_punt_queue_leaves_no_mark() {
    let mut p = capture_pipeline();
    let fill: Vec<(u16, Vec<u8>)> = (0..DEFAULT_PUNT_QUEUE as u16)
        .map(|i| trigger_frame(1 + i / 1000, 1 + i % 1000))
        .collect();
    run(&mut p, &fill, SEC);
    assert_eq!(stage(&mut p).punt_queue_len(), DEFAULT_PUNT_QUEUE);
    let (_, v) = run_one(&mut p, 0, trigger_frame(4000, 7).1, SEC);
    assert_eq!(v, Verdict::Drop(DropReason::PuntQueueFull));
    stage(&mut p).drain_punts(|_| {});
    // It never reached the control plane, so nothing would release it: it is not marked.
    let (_, v) = run_one(&mut p, 0, trigger_frame(4000, 7).1, SEC);
    assert!(matches!(v, Verdict::Punt(_)));
}

/// The flood that starved the late VLANs when the control plane did the throttling: the same
/// 3 000 VLANs in the same order, round after round, with one drain of the punt queue
/// (1 024 frames) between rounds and nothing released (the triggers stay in progress). Every
/// VLAN reaches the control plane, once. Without the data-plane throttle the first 1 024 VLANs
/// filled the queue every round and the others never got through.
#[test]
fn a_fixed_order_flood_reaches_every_vlan_once() {
    let mut p = capture_pipeline();
    let flood: Vec<(u16, Vec<u8>)> = (0..3000u16)
        .map(|i| trigger_frame(100 + i / 100, 1 + i % 100))
        .collect();
    let mut seen = std::collections::HashMap::<(u16, u16), u32>::new();
    for round in 0..4 {
        for chunk in flood.chunks(256) {
            run(&mut p, chunk, SEC + round);
        }
        stage(&mut p).drain_punts(|f| *seen.entry((f.outer_vid, f.inner_vid)).or_default() += 1);
    }
    assert_eq!(seen.len(), 3000, "every VLAN was punted");
    assert!(seen.values().all(|n| *n == 1), "each exactly once");
    let counters = stage(&mut p).sap_counters(&sap("0:*.*")).unwrap();
    assert_eq!(counters.punted, 3000);
    assert_eq!(
        counters.throttled,
        4 * 3000 - 3000 - counters.drops["punt_queue_full"]
    );
}

#[test]
fn l3_sap_frames_are_left_to_the_kernel_and_counted() {
    let mut p = pipeline();
    let mut b = builder();
    b.set_service(ServiceSpec::L3(L3Spec {
        id: 50,
        vprn: true,
        interfaces: Vec::new(),
    }))
    .unwrap();
    b.set_sap(SapSpec::new(sap("1:500"), 50)).unwrap();
    install(&mut p, &mut b, 0);
    let (_, v) = run_one(&mut p, 1, frame(mac(1), mac(2), &[(Q, 500)]), 0);
    assert_eq!(v, Verdict::Ignore);
    assert_eq!(
        stage(&mut p)
            .sap_counters(&sap("1:500"))
            .unwrap()
            .rx_packets,
        1
    );
    assert_eq!(p.port_counters()[1].ignored, 1);
    // Filters cannot be put on it.
    let mut with_filter = SapSpec::new(sap("1:500"), 50);
    with_filter.ingress.policer = Some(1);
    policer(&mut b, 1, 8, 8);
    assert!(matches!(
        b.set_sap(with_filter),
        Err(ServiceError::L3Qos(_))
    ));
}

#[test]
fn an_ip_interface_cross_connects_its_sap_with_its_tap_and_filters_apply() {
    let mut p = pipeline();
    let mut b = builder();
    // Port 3 is null-encapsulated: the TAP of the interface on SAP 1:500.
    let pair = L3Interface {
        sap: sap("1:500"),
        tap: sap("3"),
    };
    b.set_service(ServiceSpec::L3(L3Spec {
        id: 50,
        vprn: false,
        interfaces: vec![pair],
    }))
    .unwrap();
    policer(&mut b, 1, 1_000_000, 1_000_000);
    b.set_filter(FilterSpec {
        id: 9,
        kind: FilterKind::Ip,
        default_action: Disposition::Forward,
        entries: vec![FilterEntrySpec {
            id: 10,
            matcher: Match::Ip(IpMatch {
                protocol: Some(ip_protocol::UDP),
                dst_port: Some(PortRange::single(80)),
                ..IpMatch::default()
            }),
            action: FilterAction::Drop,
        }],
    })
    .unwrap();
    let mut customer = SapSpec::new(sap("1:500"), 50);
    customer.egress.policer = Some(1);
    b.set_sap(customer.clone()).unwrap();
    b.set_sap(SapSpec::new(sap("3"), 50)).unwrap();
    install(&mut p, &mut b, 0);

    // Customer → kernel: the tag is popped, the frame leaves by the TAP port.
    let (out, v) = run_one(&mut p, 1, frame(mac(1), mac(2), &[(Q, 500)]), 0);
    assert_eq!(v, Verdict::Transmit(3));
    assert_eq!(out, frame(mac(1), mac(2), &[]));
    // Kernel → customer: the tag is pushed, the frame leaves by the SAP's port.
    let (out, v) = run_one(&mut p, 3, frame(mac(2), mac(1), &[]), 0);
    assert_eq!(v, Verdict::Transmit(1));
    assert_eq!(out, frame(mac(2), mac(1), &[(Q, 500)]));
    let counters = stage(&mut p).sap_counters(&sap("1:500")).unwrap();
    assert_eq!((counters.rx_packets, counters.tx_packets), (1, 1));

    // The SAP's ingress filter applies to what goes to the kernel.
    customer.ingress.ip_filter = Some(9);
    b.set_sap(customer).unwrap();
    install(&mut p, &mut b, 0);
    let (_, v) = run_one(&mut p, 1, frame(mac(1), mac(2), &[(Q, 500)]), 0);
    assert_eq!(v, Verdict::Drop(DropReason::Filter));

    // Without its TAP the interface is down.
    b.remove_sap(&sap("3")).unwrap();
    b.set_sap(SapSpec::new(sap("1:500"), 50)).unwrap();
    install(&mut p, &mut b, 0);
    let (_, v) = run_one(&mut p, 1, frame(mac(1), mac(2), &[(Q, 500)]), 0);
    assert_eq!(v, Verdict::Drop(DropReason::ServiceDown));

    // A SAP in two pairs is refused.
    let twice = L3Spec {
        id: 51,
        vprn: false,
        interfaces: vec![
            pair,
            L3Interface {
                sap: sap("1:500"),
                tap: sap("2:9"),
            },
        ],
    };
    assert!(matches!(
        b.set_service(ServiceSpec::L3(twice)),
        Err(ServiceError::L3Pair(51))
    ));
}

#[test]
fn epipe_over_gre_encapsulates_and_decapsulates() {
    let mut p = pipeline();
    let mut b = builder();
    let gre = GreSpec {
        port: 4,
        vlan: None,
        local: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        remote: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        next_hop: mac(0x77),
        key: Some(42),
        ttl: 64,
        mtu: 1500,
    };
    b.set_service(ServiceSpec::Epipe(EpipeSpec {
        gre: Some(gre),
        ..EpipeSpec::new(7)
    }))
    .unwrap();
    b.set_sap(SapSpec::new(sap("1:70"), 7)).unwrap();
    // The Epipe has its two endpoints: a second SAP is refused.
    assert!(matches!(
        b.set_sap(SapSpec::new(sap("2:70"), 7)),
        Err(ServiceError::EpipeFull(7))
    ));
    install(&mut p, &mut b, 0);
    let inner = frame(mac(1), mac(2), &[]);
    let (out, v) = run_one(&mut p, 1, frame(mac(1), mac(2), &[(Q, 70)]), 0);
    assert_eq!(v, Verdict::Transmit(4));
    // Ethernet to the next hop from port 4's MAC, IPv4 10.0.0.1 → 10.0.0.2 proto 47, GRE 0x6558 key 42.
    assert_eq!(&out[0..6], &mac(0x77).0);
    assert_eq!(&out[6..12], &[0x02, 0xee, 0, 0, 0, 4]);
    let ip = brasa_dataplane::wire::Ipv4Packet::new_checked(&out[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(
        (ip.protocol(), usize::from(ip.total_len())),
        (47, out.len() - 14)
    );
    let gre_hdr = brasa_dataplane::wire::GrePacket::new_checked(&out[34..]).unwrap();
    assert_eq!((gre_hdr.protocol(), gre_hdr.key()), (0x6558, Some(42)));
    assert_eq!(gre_hdr.payload(), &inner[..]);
    // The return direction: swap the addresses and send it in on port 4.
    let mut back = out.clone();
    back[26..30].copy_from_slice(&[10, 0, 0, 2]);
    back[30..34].copy_from_slice(&[10, 0, 0, 1]);
    brasa_dataplane::wire::Ipv4Packet::new_unchecked(&mut back[14..34]).fill_checksum();
    let (out, v) = run_one(&mut p, 4, back.clone(), 0);
    assert_eq!(
        (v, out),
        (Verdict::Transmit(1), frame(mac(1), mac(2), &[(Q, 70)]))
    );
    // A wrong key is not ours: left for the kernel and the other stages.
    let mut wrong = back;
    wrong[41] = 43;
    let (_, v) = run_one(&mut p, 4, wrong, 0);
    assert_ne!(v, Verdict::Transmit(1));
    let c = stage(&mut p).service_counters(7).unwrap();
    assert_eq!((c.rx_packets, c.tx_packets), (2, 2));
}

#[test]
fn swapping_tables_keeps_state_of_surviving_objects_and_flushes_removed_saps() {
    let mut p = pipeline();
    let mut b = builder();
    vpls(&mut b, 10, &["1:100", "2:200"]);
    install(&mut p, &mut b, 0);
    announce(&mut p, 1, 1, 100, 0);
    announce(&mut p, 2, 2, 200, 0);
    assert_eq!(stage(&mut p).fdb(10, 0).len(), 2);
    // Add a SAP: counters and MACs of the others survive.
    b.set_sap(SapSpec::new(sap("5:300"), 10)).unwrap();
    install(&mut p, &mut b, 0);
    assert_eq!(
        stage(&mut p)
            .sap_counters(&sap("1:100"))
            .unwrap()
            .rx_packets,
        1
    );
    assert_eq!(stage(&mut p).fdb(10, 0).len(), 2);
    // Remove 2:200: its MAC goes, and a new SAP reusing its slot starts clean.
    b.remove_sap(&sap("2:200")).unwrap();
    b.set_sap(SapSpec::new(sap("2:201"), 10)).unwrap();
    install(&mut p, &mut b, 0);
    let s = stage(&mut p);
    assert_eq!(
        s.fdb(10, 0).iter().map(|e| e.sap).collect::<Vec<_>>(),
        vec![sap("1:100")]
    );
    assert_eq!(s.sap_counters(&sap("2:201")).unwrap().rx_packets, 0);
    assert_eq!(s.service_counters(10).unwrap().macs, 1);
    // Frames to mac(2) flood again.
    let out = run(&mut p, &[(1, frame(mac(1), mac(2), &[(Q, 100)]))], 0);
    assert_eq!(out.len(), 2);
    // clear and flush.
    assert!(stage(&mut p).clear_service(10));
    assert_eq!(
        stage(&mut p)
            .sap_counters(&sap("1:100"))
            .unwrap()
            .rx_packets,
        0
    );
    assert!(stage(&mut p).flush_service_fdb(10));
    assert!(stage(&mut p).fdb(10, 0).is_empty());
}

#[test]
fn invalid_specs_are_refused_and_change_nothing() {
    let mut b = builder();
    b.set_service(ServiceSpec::Epipe(EpipeSpec::new(1)))
        .unwrap();
    let before = format!("{:?}", b.tables().sap_ids());
    assert!(matches!(
        b.set_sap(SapSpec::new(sap("4:10"), 1)),
        Err(ServiceError::NoPort(4))
    ));
    assert!(matches!(
        b.set_sap(SapSpec::new(sap("0:10"), 1)),
        Err(ServiceError::Encap(_))
    ));
    assert!(matches!(
        b.set_sap(SapSpec::new(sap("1:10"), 9)),
        Err(ServiceError::NoService(9))
    ));
    let mut bad = SapSpec::new(sap("1:10"), 1);
    bad.ingress.ip_filter = Some(3);
    assert!(matches!(b.set_sap(bad), Err(ServiceError::NoFilter { .. })));
    let mut vpls_only = SapSpec::new(sap("1:10"), 1);
    vpls_only.max_mac = Some(5);
    assert!(matches!(
        b.set_sap(vpls_only),
        Err(ServiceError::VplsOnly(_))
    ));
    assert!(matches!(
        b.set_filter(FilterSpec {
            id: 1,
            kind: FilterKind::Mac,
            default_action: Disposition::Drop,
            entries: vec![FilterEntrySpec {
                id: 1,
                matcher: Match::Ip(IpMatch::default()),
                action: FilterAction::Drop
            }],
        }),
        Err(ServiceError::FilterEntryKind { .. })
    ));
    assert!(matches!(
        b.set_policer(PolicerSpec {
            id: 1,
            config: PolicerConfig {
                meter: Meter::TrTcm {
                    pir_kbps: 1,
                    mbs: None,
                    cir_kbps: 2,
                    cbs: None
                },
                colour_mode: ColourMode::Blind,
                packet_byte_offset: 0,
                stat_mode: StatMode::Minimal,
            },
        }),
        Err(ServiceError::Policer { id: 1, .. })
    ));
    assert!(matches!(
        b.set_port(PortSpec {
            outer_tpid: 0x9100,
            ..PortSpec::new(1, PortEncap::Dot1q)
        }),
        Err(ServiceError::Tpid(0x9100))
    ));
    assert_eq!(format!("{:?}", b.tables().sap_ids()), before);
    b.set_sap(SapSpec::new(sap("1:10"), 1)).unwrap();
    assert!(matches!(
        b.remove_service(1),
        Err(ServiceError::ServiceInUse(1))
    ));
    assert!(matches!(
        b.set_port(PortSpec::new(1, PortEncap::Qinq)),
        Err(ServiceError::PortInUse(1))
    ));
}

#[test]
fn a_snapshot_that_skips_one_or_comes_from_another_builder_is_reconciled_whole() {
    let mut p = pipeline();
    let mut b = builder();
    vpls(&mut b, 10, &["1:100", "2:200"]);
    install(&mut p, &mut b, 0);
    announce(&mut p, 1, 1, 100, 0);
    announce(&mut p, 2, 2, 200, 0);
    // Snapshot B removes 2:200 and is never installed; C adds 5:300 on top of it.
    b.remove_sap(&sap("2:200")).unwrap();
    let _skipped = b.build();
    b.set_sap(SapSpec::new(sap("5:300"), 10)).unwrap();
    install(&mut p, &mut b, 0);
    let s = stage(&mut p);
    assert!(s.sap_counters(&sap("2:200")).is_none());
    assert_eq!(
        s.fdb(10, 0).iter().map(|e| e.sap).collect::<Vec<_>>(),
        vec![sap("1:100")]
    );
    assert_eq!(s.service_counters(10).unwrap().macs, 1);
    let out = run(
        &mut p,
        &[(1, frame(mac(1), MacAddr::BROADCAST, &[(Q, 100)]))],
        0,
    );
    assert_eq!(verdicts(&out), vec![Verdict::Transmit(5)]);
    // A snapshot from another builder with the same configuration: the SAPs there are other
    // objects (other generations), so their state starts again.
    let mut other = builder();
    vpls(&mut other, 10, &["1:100", "5:300"]);
    install(&mut p, &mut other, 0);
    let s = stage(&mut p);
    assert_eq!(s.sap_counters(&sap("1:100")).unwrap().rx_packets, 0);
    assert!(s.fdb(10, 0).is_empty());
    let out = run(&mut p, &[(5, frame(mac(3), mac(1), &[(Q, 300)]))], 0);
    assert_eq!(verdicts(&out), vec![Verdict::Transmit(1)]);
}

#[test]
fn snapshots_are_send_and_sync_and_the_stage_is_send() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<ServiceTables>();
    send_sync::<std::sync::Arc<ServiceTables>>();
    send::<ServiceStage>();
}

#[test]
fn epipe_over_gre_with_ipv6_outer_headers_and_a_vlan() {
    let mut p = pipeline();
    let mut b = builder();
    let local: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
    let remote: std::net::Ipv6Addr = "2001:db8::2".parse().unwrap();
    b.set_service(ServiceSpec::Epipe(EpipeSpec {
        gre: Some(GreSpec {
            port: 4,
            vlan: Some(99),
            local: IpAddr::V6(local),
            remote: IpAddr::V6(remote),
            next_hop: mac(0x77),
            key: None,
            ttl: 9,
            mtu: 1500,
        }),
        ..EpipeSpec::new(7)
    }))
    .unwrap();
    b.set_sap(SapSpec::new(sap("0:5.6"), 7)).unwrap();
    install(&mut p, &mut b, 0);
    let (out, v) = run_one(&mut p, 0, frame(mac(1), mac(2), &[(S, 5), (Q, 6)]), 0);
    assert_eq!(v, Verdict::Transmit(4));
    // Ethernet, 802.1Q 99, IPv6 (payload length = GRE + inner frame), GRE 0x6558, inner frame.
    assert_eq!(&out[12..16], &[0x81, 0x00, 0x00, 99]);
    assert_eq!(&out[16..18], &[0x86, 0xdd]);
    let ip = brasa_dataplane::wire::Ipv6Packet::new_checked(&out[18..]).unwrap();
    assert_eq!(
        (
            ip.next_header(),
            ip.hop_limit(),
            ip.src_addr(),
            ip.dst_addr()
        ),
        (47, 9, local, remote)
    );
    assert_eq!(usize::from(ip.payload_len()), out.len() - 18 - 40);
    let gre = brasa_dataplane::wire::GrePacket::new_checked(&out[58..]).unwrap();
    assert_eq!(gre.payload(), &frame(mac(1), mac(2), &[])[..]);
    // Back: addresses swapped, in on port 4 → out of 0:5.6 with its two tags.
    let mut back = out;
    back[26..42].copy_from_slice(&remote.octets());
    back[42..58].copy_from_slice(&local.octets());
    let (out, v) = run_one(&mut p, 4, back, 0);
    assert_eq!(
        (v, out),
        (
            Verdict::Transmit(0),
            frame(mac(1), mac(2), &[(S, 5), (Q, 6)])
        )
    );
    // An inner frame that would make the outer packet exceed the tunnel MTU is dropped.
    let big = build::tagged(
        mac(1),
        mac(2),
        &[(S, 5), (Q, 6)],
        EtherType::IPV4,
        &[0u8; 1480],
    );
    let (_, v) = run_one(&mut p, 0, big, 0);
    assert_eq!(v, Verdict::Drop(DropReason::Mtu));
}

#[test]
fn vpls_table_size_limit_disabled_learning_and_disabled_ageing() {
    let mut p = pipeline();
    let mut b = builder();
    let mut spec = VplsSpec::new(10);
    spec.fdb_size = Some(2);
    spec.ageing = false;
    b.set_service(ServiceSpec::Vpls(spec.clone())).unwrap();
    b.set_sap(SapSpec::new(sap("1:100"), 10)).unwrap();
    b.set_sap(SapSpec::new(sap("2:200"), 10)).unwrap();
    install(&mut p, &mut b, 0);
    for i in 1..=3 {
        run(
            &mut p,
            &[(1, frame(mac(i), MacAddr::BROADCAST, &[(Q, 100)]))],
            0,
        );
    }
    let s = stage(&mut p);
    let c = s.service_counters(10).unwrap();
    assert_eq!((c.macs, c.learned, c.fdb_full), (2, 2, 1));
    // No ageing: a day later the MACs are still there.
    for t in 0..200 {
        p.tick(t * 500 * SEC);
    }
    assert_eq!(stage(&mut p).fdb(10, 100_000 * SEC).len(), 2);
    // Learning off: nothing new is learned, unknown destinations keep flooding.
    spec.learning = false;
    b.set_service(ServiceSpec::Vpls(spec)).unwrap();
    install(&mut p, &mut b, 0);
    announce(&mut p, 2, 9, 200, 0);
    assert_eq!(stage(&mut p).service_counters(10).unwrap().learned, 2);
    let out = run(&mut p, &[(1, frame(mac(1), mac(9), &[(Q, 100)]))], 0);
    assert_eq!(verdicts(&out), vec![Verdict::Transmit(2)]);
    assert_eq!(stage(&mut p).service_counters(10).unwrap().flooded, 0);
}

/// A subscriber behind an IP interface: what its SAP receives meets its ingress rules on the
/// way to the kernel, what the kernel sends it through the TAP its egress rules; the path
/// decides the direction, so a packet the kernel sends from the subscriber's own address is
/// not taken for its ingress, and traffic of no subscriber gets the default.
#[test]
fn an_ip_interface_enforces_its_subscribers_pcc_rules_by_the_path() {
    use brasa_dataplane::acl::Prefix;
    use brasa_dataplane::pcc::{
        Direction, PccAction, PccDefaults, PccRuleSpec, PccStage, SubscriberPccSpec,
        SubscriberPolicy,
    };
    use brasa_dataplane::pipeline::Shared;
    use std::sync::Arc;

    let pcc = Shared::new(PccStage::new(PccDefaults {
        unknown: Disposition::Drop,
        no_services: Disposition::Forward,
    }));
    let mut service = ServiceStage::default();
    service.set_subscriber_pcc(Some(pcc.clone()));
    let mut p = Pipeline::new(
        ports(),
        brasa_dataplane::stages::subscriber_stages(service, pcc.clone()),
    );
    let mut b = builder();
    b.set_service(ServiceSpec::L3(L3Spec {
        id: 50,
        vprn: false,
        interfaces: vec![L3Interface {
            sap: sap("1:500"),
            tap: sap("3"),
        }],
    }))
    .unwrap();
    b.set_sap(SapSpec::new(sap("1:500"), 50)).unwrap();
    b.set_sap(SapSpec::new(sap("3"), 50)).unwrap();
    install(&mut p, &mut b, 0);

    let subscriber = Ipv4Addr::new(192, 0, 2, 1);
    let server = Ipv4Addr::new(198, 51, 100, 7);
    let udp_80 = IpMatch {
        protocol: Some(ip_protocol::UDP),
        dst_port: Some(PortRange::single(80)),
        ..IpMatch::default()
    };
    let rule = |name: &str, direction| PccRuleSpec {
        name: name.into(),
        direction,
        precedence: 10,
        flows: vec![udp_80],
        action: PccAction {
            disposition: Disposition::Drop,
            ..PccAction::default()
        },
    };
    let policy = SubscriberPolicy::compile(SubscriberPccSpec {
        name: "alice".into(),
        addresses: vec![Prefix::new(subscriber, 32)],
        vprn_addresses: Vec::new(),
        rules: vec![
            rule("svc/up", Direction::Ingress),
            rule("svc/down", Direction::Egress),
        ],
    })
    .unwrap();
    let policy = Arc::new(policy);
    pcc.lock().install(policy.clone()).unwrap();

    let packet = |src, dst, port| {
        build::tagged(
            mac(1),
            mac(2),
            &[],
            EtherType::IPV4,
            &build::ipv4_udp(src, dst, 4000, port, &[0xab; 18]),
        )
    };
    let tagged = |bytes: Vec<u8>| {
        let mut out = bytes[..12].to_vec();
        out.extend_from_slice(&[0x81, 0x00, 0x01, 0xf4]);
        out.extend_from_slice(&bytes[12..]);
        out
    };
    // From the subscriber: UDP 80 dropped, the rest to the TAP.
    let (_, v) = run_one(&mut p, 1, tagged(packet(subscriber, server, 80)), 0);
    assert_eq!(v, Verdict::Drop(DropReason::Pcc));
    let (_, v) = run_one(&mut p, 1, tagged(packet(subscriber, server, 81)), 0);
    assert_eq!(v, Verdict::Transmit(3));
    // To the subscriber: UDP 80 dropped, the rest out through its SAP.
    let (_, v) = run_one(&mut p, 3, packet(server, subscriber, 80), 0);
    assert_eq!(v, Verdict::Drop(DropReason::Pcc));
    let (_, v) = run_one(&mut p, 3, packet(server, subscriber, 81), 0);
    assert_eq!(v, Verdict::Transmit(1));
    // The kernel sending from the subscriber's address is no ingress of it: the
    // destination, which belongs to nobody, decides (the default drops it).
    let (_, v) = run_one(&mut p, 3, packet(subscriber, server, 80), 0);
    assert_eq!(v, Verdict::Drop(DropReason::Pcc));
    // Unknown addresses on the SAP: the default.
    let (_, v) = run_one(&mut p, 1, tagged(packet(server, subscriber, 81)), 0);
    assert_eq!(v, Verdict::Drop(DropReason::Pcc));

    let counters = policy.counters();
    let dropped: Vec<u64> = counters.rules.iter().map(|r| r.dropped.packets).collect();
    assert_eq!(dropped, [1, 1]);
    assert_eq!(counters.ingress.packets, 1);
    assert_eq!(counters.egress.packets, 1);
    let stats = pcc.lock().stats();
    assert_eq!((stats.rule_dropped, stats.unknown_dropped), (2, 2));
    let sap_counters = stage(&mut p).sap_counters(&sap("1:500")).unwrap();
    assert_eq!(sap_counters.drops.get("pcc").copied(), Some(2));
}
