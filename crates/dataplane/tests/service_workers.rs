//! The service stage shared by the pipelines of several workers (`pipeline::Shared`): one MAC
//! table (a MAC learned by one worker is known to all), one bucket per policer (a policer
//! offered twice its rate by two workers passes its rate, within 2 %, exactly as with one).

use brasa_dataplane::build;
use brasa_dataplane::pipeline::{
    pkt_type, Batch, IpHandoff, LinkKind, PacketMeta, Pipeline, Port, Shared, Verdict,
};
use brasa_dataplane::policer::{ColourMode, Meter, PolicerConfig, StatMode};
use brasa_dataplane::sap::{PortEncap, SapId};
use brasa_dataplane::service::*;
use brasa_dataplane::stages::service_stages;
use brasa_dataplane::wire::{EtherType, MacAddr};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

const Q: u16 = 0x8100;
const MS: u64 = 1_000_000;

fn mac(last: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, last])
}

fn sap(text: &str) -> SapId {
    let (port, encap) = text.split_once(':').unwrap_or((text, ""));
    SapId {
        port: port.parse().unwrap(),
        encap: encap.parse().unwrap(),
    }
}

/// A worker's pipeline around the shared service stage: ports 0–2, all dot1q.
fn worker_pipeline(service: &Shared<ServiceStage>) -> Pipeline {
    let ports = (0..3)
        .map(|i| Port {
            name: format!("p{i}"),
            link: LinkKind::Ethernet,
            mac: MacAddr([0x02, 0xee, 0, 0, 0, i]),
            ip_handoff: IpHandoff::Kernel,
        })
        .collect();
    Pipeline::new(ports, service_stages(service.clone()))
}

fn builder() -> ServiceTablesBuilder {
    let mut b = ServiceTablesBuilder::new();
    for port in 0..3 {
        b.set_port(PortSpec::new(port, PortEncap::Dot1q)).unwrap();
    }
    b
}

fn frame(src: MacAddr, dst: MacAddr, vid: u16) -> Vec<u8> {
    let ip = build::ipv4_udp(
        Ipv4Addr::new(192, 0, 2, 1),
        Ipv4Addr::new(198, 51, 100, 7),
        4000,
        80,
        &[0xab; 18],
    );
    build::tagged(src, dst, &[(Q, vid)], EtherType::IPV4, &ip)
}

fn run(p: &mut Pipeline, port: u16, frames: &[Vec<u8>], now: u64) -> Vec<Verdict> {
    let mut batch = Batch::new(frames.len());
    for bytes in frames {
        assert!(batch.push(bytes, PacketMeta::new(port, pkt_type::OTHERHOST, 0)));
    }
    p.run(&mut batch, now);
    batch.iter().map(|(_, meta)| meta.verdict).collect()
}

#[test]
fn a_mac_learned_by_one_worker_is_known_to_the_others() {
    let service = Shared::new(ServiceStage::default());
    let mut b = builder();
    b.set_service(ServiceSpec::Vpls(VplsSpec::new(10))).unwrap();
    for s in ["0:100", "1:100", "2:100"] {
        b.set_sap(SapSpec::new(sap(s), 10)).unwrap();
    }
    service.lock().install(b.build(), 0);
    let (mut first, mut second) = (worker_pipeline(&service), worker_pipeline(&service));
    // Worker 1 learns mac(1) on 0:100 (the frame floods: mac(2) is unknown).
    let flooded = std::thread::scope(|scope| {
        scope
            .spawn(|| run(&mut first, 0, &[frame(mac(1), mac(2), 100)], MS))
            .join()
            .unwrap()
    });
    assert_eq!(flooded.len(), 2, "flooded to the two other SAPs");
    // Worker 2 sends to mac(1): straight to 0:100, no flood.
    let answered = std::thread::scope(|scope| {
        scope
            .spawn(|| run(&mut second, 1, &[frame(mac(2), mac(1), 100)], 2 * MS))
            .join()
            .unwrap()
    });
    assert_eq!(answered, vec![Verdict::Transmit(0)]);
    let stage = service.lock();
    assert_eq!(stage.fdb(10, 2 * MS).len(), 2);
    let counters = stage.service_counters(10).unwrap();
    assert_eq!((counters.learned, counters.flooded), (2, 1));
}

/// Offers an Epipe SAP policed at 8 Mb/s (1 MB/s, MBS 2000 B) twice its rate for 2 s of
/// simulated time from `workers` threads, one clock between them; returns the bytes passed.
fn police_from(workers: usize) -> u64 {
    let service = Shared::new(ServiceStage::default());
    let mut b = builder();
    b.set_service(ServiceSpec::Epipe(EpipeSpec::new(1)))
        .unwrap();
    b.set_policer(PolicerSpec {
        id: 1,
        config: PolicerConfig {
            meter: Meter::TrTcm {
                pir_kbps: 8_000,
                mbs: Some(2_000),
                cir_kbps: 0,
                cbs: Some(0),
            },
            colour_mode: ColourMode::Blind,
            packet_byte_offset: 0,
            stat_mode: StatMode::OfferedTotalCir,
        },
    })
    .unwrap();
    let mut a = SapSpec::new(sap("0:10"), 1);
    a.ingress.policer = Some(1);
    b.set_sap(a).unwrap();
    b.set_sap(SapSpec::new(sap("1:20"), 1)).unwrap();
    service.lock().install(b.build(), 0);
    // 2000 batches of 32 × 64-byte frames, one per simulated millisecond: 2.048 MB/s.
    let batches = 2000 / workers;
    let clock = AtomicU64::new(0);
    let burst: Vec<Vec<u8>> = (0..32).map(|_| frame(mac(1), mac(2), 10)).collect();
    assert_eq!(burst[0].len(), 64);
    let passed: u64 = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..workers)
            .map(|_| {
                let (service, clock, burst) = (&service, &clock, &burst);
                scope.spawn(move || {
                    let mut pipeline = worker_pipeline(service);
                    let mut bytes = 0u64;
                    for _ in 0..batches {
                        let now = clock.fetch_add(MS, Ordering::SeqCst) + MS;
                        let verdicts = run(&mut pipeline, 0, burst, now);
                        bytes += 64
                            * verdicts
                                .iter()
                                .filter(|v| **v == Verdict::Transmit(1))
                                .count() as u64;
                    }
                    bytes
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    passed
}

#[test]
fn a_policer_shared_by_two_workers_passes_its_rate() {
    // 1 MB/s for 2 s plus the 2000-byte burst.
    let expected = 2_000_000 + 2_000;
    for workers in [1, 2] {
        let passed = police_from(workers);
        let error = (passed as f64 - expected as f64).abs() / expected as f64;
        assert!(
            error <= 0.02,
            "{workers} worker(s): {passed} bytes passed, {expected} expected ({:.2} % off)",
            error * 100.0
        );
    }
}
