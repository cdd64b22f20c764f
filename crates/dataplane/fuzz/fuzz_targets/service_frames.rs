//! The service stage over arbitrary frames on access ports (null, dot1q, QinQ), an Epipe, a
//! VPLS with flooding, a capture SAP, filters, policers and a GRE tunnel: never panics, every
//! packet ends with a decision, and the punt queue stays bounded.
#![no_main]
use brasa_dataplane::acl::{Disposition, IpMatch, Match, PortRange};
use brasa_dataplane::pipeline::{Batch, IpHandoff, LinkKind, PacketMeta, Pipeline, Port, Verdict};
use brasa_dataplane::policer::{ColourMode, Meter, PolicerConfig, RateLimit, StatMode};
use brasa_dataplane::sap::{PortEncap, SapId};
use brasa_dataplane::service::*;
use brasa_dataplane::wire::MacAddr;
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};

fn sap(port: u16, encap: &str) -> SapId {
    SapId {
        port,
        encap: encap.parse().unwrap(),
    }
}

fn pipeline() -> Pipeline {
    let ports = (0..5u8)
        .map(|i| Port {
            name: format!("p{i}"),
            link: LinkKind::Ethernet,
            mac: MacAddr([2, 0, 0, 0, 0, i]),
            ip_handoff: IpHandoff::Kernel,
        })
        .collect();
    let config = ServiceStageConfig {
        fdb_entries: 64,
        punt_queue: 8,
        ..ServiceStageConfig::default()
    };
    let mut p = Pipeline::new(
        ports,
        brasa_dataplane::stages::service_stages(ServiceStage::new(config)),
    );
    let mut b = ServiceTablesBuilder::new();
    b.set_port(PortSpec {
        outer_tpid: 0x88a8,
        ..PortSpec::new(0, PortEncap::Qinq)
    })
    .unwrap();
    b.set_port(PortSpec::new(1, PortEncap::Dot1q)).unwrap();
    b.set_port(PortSpec::new(2, PortEncap::Null)).unwrap();
    b.set_policer(PolicerSpec {
        id: 1,
        config: PolicerConfig {
            meter: Meter::TrTcm {
                pir_kbps: 1_000,
                mbs: None,
                cir_kbps: 100,
                cbs: None,
            },
            colour_mode: ColourMode::Aware,
            packet_byte_offset: -4,
            stat_mode: StatMode::OfferedTotalCir,
        },
    })
    .unwrap();
    b.set_filter(FilterSpec {
        id: 1,
        kind: FilterKind::Ip,
        default_action: Disposition::Forward,
        entries: vec![FilterEntrySpec {
            id: 10,
            matcher: Match::Ip(IpMatch {
                protocol: Some(17),
                dst_port: Some(PortRange {
                    first: 0,
                    last: 1000,
                }),
                ..IpMatch::default()
            }),
            action: FilterAction::RateLimit { policer: 1 },
        }],
    })
    .unwrap();
    b.set_service(ServiceSpec::Epipe(EpipeSpec::new(1)))
        .unwrap();
    let mut a = SapSpec::new(sap(0, "10.20"), 1);
    a.ingress.ip_filter = Some(1);
    b.set_sap(a).unwrap();
    b.set_sap(SapSpec::new(sap(1, "30"), 1)).unwrap();
    let mut vpls = VplsSpec::new(2);
    vpls.split_horizon_groups = vec!["g".into()];
    b.set_service(ServiceSpec::Vpls(vpls)).unwrap();
    let mut member = SapSpec::new(sap(0, "11.*"), 2);
    member.max_mac = Some(4);
    member.bum_limit = Some(RateLimit { pps: 100, burst: 5 });
    member.split_horizon_group = Some("g".into());
    b.set_sap(member).unwrap();
    b.set_sap(SapSpec::new(sap(1, "*"), 2)).unwrap();
    b.set_sap(SapSpec::new(sap(2, ""), 2)).unwrap();
    let mut capture = SapSpec::new(sap(0, "*.*"), 2);
    capture.capture = true;
    b.set_sap(capture).unwrap();
    b.set_service(ServiceSpec::Epipe(EpipeSpec {
        gre: Some(GreSpec {
            port: 3,
            vlan: Some(7),
            local: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            remote: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            next_hop: MacAddr([2, 0, 0, 0, 0, 9]),
            key: None,
            ttl: 64,
            mtu: 1500,
        }),
        ..EpipeSpec::new(3)
    }))
    .unwrap();
    b.set_sap(SapSpec::new(sap(0, "12.0"), 3)).unwrap();
    p.stage_mut::<ServiceStage>().unwrap().install(b.build(), 0);
    p
}

fuzz_target!(|data: &[u8]| {
    let mut p = pipeline();
    let mut batch = Batch::new(16);
    batch.set_replica_limit(8);
    // Frames are length-prefixed; the first byte of each picks the port.
    let mut rest = data;
    let mut now = 0;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (frame, next) = tail.split_at(len);
        rest = next;
        let port = u16::from(frame.first().copied().unwrap_or(0) % 5);
        batch.push(frame.get(1..).unwrap_or(&[]), PacketMeta::new(port, 3, 0));
        if batch.is_full() || rest.is_empty() {
            p.run(&mut batch, now);
            for (_, meta) in batch.iter() {
                assert_ne!(meta.verdict, Verdict::Pending);
            }
            batch.clear();
            now += 1_000_000;
            p.tick(now);
        }
    }
    let stage = p.stage_mut::<ServiceStage>().unwrap();
    assert!(stage.punt_queue_len() <= 8);
    stage.drain_punts(|_| {});
    let _ = stage.fdb(2, now);
});
