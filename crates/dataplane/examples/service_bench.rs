//! In-memory throughput of the service stage on one core: Epipe, VPLS with a million learned
//! MACs, the classifier + trTCM policer with 100 000 SAPs × 8 filter entries, the data trigger
//! throttle of a capture SAP under a flood, and the rate at which SAPs are created through the
//! builder and installed. Prints Mpps, ns and TSC cycles per packet.
//!
//!     cargo run --release -p brasa-dataplane --example service_bench [-- SECONDS [SCENARIO]]
//!
//! SCENARIO is one of `epipe` (also with the stage shared as several workers share it), `vpls`,
//! `fdb-bound` (the MAC table's random lookups alone: this machine's ceiling for `vpls`), `acl`, `acl-core`, `throttle`, `apply` (default: all). As in `pipeline_bench`,
//! each batch is refilled from template frames before it runs (the copy a receive ring costs
//! is included). `vpls` keeps its templates few enough to stay in cache and writes each
//! frame's destination, drawn at random from the million learned MACs, after the copy: a
//! pool with a frame per destination would stream 64 bytes per packet from memory, which is
//! the benchmark's cost, not the data plane's. `BENCH_DSTS=N` draws them from the first N
//! learned MACs only (to see what the random line costs).

mod common;

use brasa_dataplane::acl::{Disposition, IpMatch, Match, PortRange, Prefix};
use brasa_dataplane::build;
use brasa_dataplane::pipeline::{pkt_type, Batch, PacketMeta, Pipeline, Port, Shared, Verdict};
use brasa_dataplane::policer::{ColourMode, Meter, PolicerConfig, StatMode};
use brasa_dataplane::sap::{PortEncap, SapEncap, SapId, Tag};
use brasa_dataplane::service::*;
use brasa_dataplane::stages::service_stages;
use brasa_dataplane::wire::{EtherType, MacAddr};
use common::{cycles, measure, thread_cpu_seconds};
use std::net::Ipv4Addr;
use std::time::Instant;

const BATCH: usize = 256;

/// With `BENCH_HUGEPAGES=1`, allocations of 2 MiB and more are aligned to 2 MiB and advised
/// `MADV_HUGEPAGE` before they are touched (this machine's transparent huge pages are
/// `madvise`-only): the tables of 100 000 SAPs then cost cache misses without page walks.
/// This is what a daemon's global allocator can do; the MAC table does it by itself.
struct HugeAlloc;

const HUGE: usize = 2 << 20;

fn huge_pages_wanted() -> bool {
    static WANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WANTED.get_or_init(|| std::env::var("BENCH_HUGEPAGES").is_ok_and(|v| v == "1"))
}

// SAFETY: delegates to the system allocator, with a stricter alignment for large blocks (the
// same layout is used to free them).
unsafe impl std::alloc::GlobalAlloc for HugeAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.size() < HUGE || !huge_pages_wanted() {
            return std::alloc::System.alloc(layout);
        }
        let Ok(big) = std::alloc::Layout::from_size_align(layout.size(), HUGE.max(layout.align()))
        else {
            return std::ptr::null_mut();
        };
        let ptr = std::alloc::System.alloc(big);
        if !ptr.is_null() {
            libc::madvise(ptr.cast(), big.size(), libc::MADV_HUGEPAGE);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        let ptr = self.alloc(layout);
        if !ptr.is_null() {
            std::ptr::write_bytes(ptr, 0, layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        if layout.size() < HUGE || !huge_pages_wanted() {
            return std::alloc::System.dealloc(ptr, layout);
        }
        if let Ok(big) =
            std::alloc::Layout::from_size_align(layout.size(), HUGE.max(layout.align()))
        {
            std::alloc::System.dealloc(ptr, big);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = std::alloc::Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        let new = self.alloc(new_layout);
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: HugeAlloc = HugeAlloc;
const S: u16 = 0x88a8;
const Q: u16 = 0x8100;

/// A small xorshift generator: reproducible traffic without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Template frames of one size, back to back.
struct Pool {
    bytes: Vec<u8>,
    size: usize,
    ports: Vec<u16>,
}

impl Pool {
    fn new(size: usize) -> Self {
        Self {
            bytes: Vec::new(),
            size,
            ports: Vec::new(),
        }
    }

    fn push(&mut self, port: u16, mut frame: Vec<u8>) {
        frame.resize(self.size, 0);
        self.bytes.extend_from_slice(&frame);
        self.ports.push(port);
    }

    fn len(&self) -> usize {
        self.ports.len()
    }

    fn frame(&self, i: usize) -> (u16, &[u8]) {
        (
            self.ports[i],
            &self.bytes[i * self.size..(i + 1) * self.size],
        )
    }
}

fn pipeline(ports: usize, config: ServiceStageConfig) -> Pipeline {
    let ports = (0..ports)
        .map(|i| Port::ethernet(format!("p{i}"), MacAddr([2, 0xee, 0, 0, 0, i as u8])))
        .collect();
    Pipeline::new(ports, service_stages(ServiceStage::new(config)))
}

/// Refills `batch` with the pool's next frames, each then changed by `rewrite`.
fn fill(batch: &mut Batch, pool: &Pool, next: &mut usize, rewrite: &mut impl FnMut(&mut [u8])) {
    batch.clear();
    for _ in 0..BATCH {
        let (port, frame) = pool.frame(*next % pool.len());
        batch.push(frame, PacketMeta::new(port, pkt_type::OTHERHOST, 0));
        *next += 1;
    }
    for (buf, _) in batch.iter_mut() {
        rewrite(buf.as_mut_slice());
    }
}

fn run(name: &str, p: &mut Pipeline, pool: &Pool, seconds: f64, expect: Verdict, start_ns: u64) {
    let mut next = 0usize;
    run_refilling(name, p, pool.size, seconds, expect, start_ns, |batch| {
        fill(batch, pool, &mut next, &mut |_| {})
    });
}

/// Checks 16 batches' verdicts against `expect`, then measures: each batch is refilled by
/// `refill` and run through `p`.
fn run_refilling(
    name: &str,
    p: &mut Pipeline,
    frame_size: usize,
    seconds: f64,
    expect: Verdict,
    start_ns: u64,
    mut refill: impl FnMut(&mut Batch),
) {
    let mut batch = Batch::new(BATCH);
    for _ in 0..16 {
        refill(&mut batch);
        p.run(&mut batch, start_ns);
        let wrong = batch.iter().filter(|(_, m)| m.verdict != expect).count();
        assert_eq!(
            wrong,
            0,
            "{name}: unexpected verdicts, e.g. {:?}",
            batch
                .iter()
                .find(|(_, m)| m.verdict != expect)
                .map(|(_, m)| m.verdict)
        );
    }
    let detail = format!(", {frame_size}-byte frames");
    measure(name, seconds, &detail, |packets| {
        refill(&mut batch);
        // 1 µs per batch of simulated time: policers refill, MACs stay fresh.
        p.run(&mut batch, start_ns + packets * 4);
        BATCH as u64
    });
}

/// The VPLS scenario's receive side: 2^n template frames of 64 bytes, all received on one port.
///
/// Its refill is what a receive ring costs and no more: the next template is a mask of the
/// running index (a ring advances to its next slot; [`fill`]'s modulo is a division per packet
/// that only the bench pays), and the frame's size is known when it is compiled, so its copy
/// is four 16-byte moves rather than a `memcpy` call.
struct VplsRing {
    templates: Vec<[u8; 64]>,
    meta: PacketMeta,
    next: usize,
}

impl VplsRing {
    fn new(port: u16, frames: impl IntoIterator<Item = Vec<u8>>) -> Self {
        let templates: Vec<[u8; 64]> = frames
            .into_iter()
            .map(|mut frame| {
                frame.resize(64, 0);
                let mut template = [0; 64];
                template.copy_from_slice(&frame);
                template
            })
            .collect();
        assert!(templates.len().is_power_of_two(), "2^n templates");
        Self {
            templates,
            meta: PacketMeta::new(port, pkt_type::OTHERHOST, 0),
            next: 0,
        }
    }

    /// Refills `batch` with the next `BATCH` frames, each with the destination MAC that
    /// `destination` draws written over the copy.
    fn refill(&mut self, batch: &mut Batch, destination: &mut impl FnMut() -> [u8; 6]) {
        let mask = self.templates.len() - 1;
        batch.clear();
        for index in 0..BATCH {
            batch.push(&self.templates[self.next & mask], self.meta);
            // Written in the batch's buffer, not in a copy of the template: six bytes stored
            // just before the frame's 16-byte loads would stall their store forwarding.
            if let Some(dst) = batch
                .get_mut(index)
                .and_then(|(buf, _)| buf.as_mut_slice().get_mut(..6))
            {
                dst.copy_from_slice(&destination());
            }
            self.next += 1;
        }
    }
}

/// A builder with ports 0 and 1 as QinQ ports (802.1ad outer tags).
fn two_qinq_ports() -> ServiceTablesBuilder {
    let mut b = ServiceTablesBuilder::new();
    for port in 0..2 {
        b.set_port(PortSpec {
            outer_tpid: S,
            ..PortSpec::new(port, PortEncap::Qinq)
        })
        .unwrap();
    }
    b
}

/// A UDP datagram whose QinQ frame is exactly the pools' 64 bytes (14 + 8 + 20 + 8 + 14): a
/// longer one is cut to 64, its IPv4 total length then exceeds its bytes, and the classifier
/// reads no IPv4 key from it (an IPv4 filter then does not apply).
fn ipv4_udp(dst: Ipv4Addr, dst_port: u16) -> Vec<u8> {
    build::ipv4_udp(Ipv4Addr::new(192, 0, 2, 1), dst, 4000, dst_port, &[0; 14])
}

fn qinq(o: u16, i: u16) -> SapEncap {
    SapEncap::Qinq {
        outer: Tag::Id(o),
        inner: Tag::Id(i),
    }
}

/// The Epipe scenario; with `shared`, the service stage is a [`Shared`] one (as with several
/// workers), which costs one uncontended lock per batch.
fn epipe(seconds: f64, shared: bool) {
    let mut p = if shared {
        let ports = pipeline(2, ServiceStageConfig::default()).ports().to_vec();
        Pipeline::new(
            ports,
            service_stages(Shared::new(
                ServiceStage::new(ServiceStageConfig::default()),
            )),
        )
    } else {
        pipeline(2, ServiceStageConfig::default())
    };
    let mut b = ServiceTablesBuilder::new();
    b.set_port(PortSpec {
        outer_tpid: S,
        ..PortSpec::new(0, PortEncap::Qinq)
    })
    .unwrap();
    b.set_port(PortSpec::new(1, PortEncap::Dot1q)).unwrap();
    b.set_service(ServiceSpec::Epipe(EpipeSpec::new(1)))
        .unwrap();
    b.set_sap(SapSpec::new(
        SapId {
            port: 0,
            encap: qinq(10, 20),
        },
        1,
    ))
    .unwrap();
    b.set_sap(SapSpec::new(
        SapId {
            port: 1,
            encap: SapEncap::Dot1q { tag: Tag::Id(30) },
        },
        1,
    ))
    .unwrap();
    match p.stage_mut::<Shared<ServiceStage>>() {
        Some(stage) => stage.lock().install(b.build(), 0),
        None => p.stage_mut::<ServiceStage>().unwrap().install(b.build(), 0),
    }
    let mut pool = Pool::new(64);
    let frame = build::tagged(
        MacAddr([2, 0, 0, 0, 0, 1]),
        MacAddr([2, 0, 0, 0, 0, 2]),
        &[(S, 10), (Q, 20)],
        EtherType::IPV4,
        &ipv4_udp(Ipv4Addr::new(198, 51, 100, 7), 80),
    );
    pool.push(0, frame);
    run(
        if shared {
            "Epipe QinQ 10.20 -> dot1q 30, shared stage"
        } else {
            "Epipe QinQ 10.20 -> dot1q 30 (tag translation)"
        },
        &mut p,
        &pool,
        seconds,
        Verdict::Transmit(1),
        0,
    );
}

/// A trigger flood on the capture SAP `0:*.*`: 4 096 VLAN pairs whose triggers are all in
/// progress (their first frames were punted and nobody released them), so every frame is
/// dropped by the throttle: the rate the data plane sheds a flood at.
fn throttle(seconds: f64) {
    let mut p = pipeline(2, ServiceStageConfig::default());
    let mut b = two_qinq_ports();
    b.set_service(ServiceSpec::Vpls(VplsSpec::new(900)))
        .unwrap();
    let mut capture = SapSpec::new(
        SapId {
            port: 0,
            encap: SapEncap::Qinq {
                outer: Tag::Any,
                inner: Tag::Any,
            },
        },
        900,
    );
    capture.capture = true;
    b.set_sap(capture).unwrap();
    let stage = p.stage_mut::<ServiceStage>().unwrap();
    stage.install(b.build(), 0);
    let mut pool = Pool::new(64);
    for key in 0..4096u16 {
        let frame = build::tagged(
            MacAddr([2, 0, 0, 0, 0x10, key as u8]),
            MacAddr::BROADCAST,
            &[(S, 100 + key / 64), (Q, 1 + key % 64)],
            0x88b5,
            &[0; 46],
        );
        pool.push(0, frame);
    }
    // The first round punts one frame of each pair and marks it.
    let mut batch = Batch::new(BATCH);
    let mut next = 0usize;
    for _ in 0..pool.len().div_ceil(BATCH) {
        fill(&mut batch, &pool, &mut next, &mut |_| {});
        p.run(&mut batch, 0);
        let stage = p.stage_mut::<ServiceStage>().unwrap();
        stage.drain_punts(|_| {});
    }
    run(
        "capture SAP *.*, 4 096 triggers in progress: every frame dropped by the throttle",
        &mut p,
        &pool,
        seconds,
        Verdict::Drop(brasa_dataplane::pipeline::DropReason::TriggerInProgress),
        0,
    );
}

fn vpls(seconds: f64) {
    const MACS: usize = 1 << 20;
    let config = ServiceStageConfig {
        fdb_entries: MACS + MACS / 4,
        ..ServiceStageConfig::default()
    };
    let mut p = pipeline(2, config);
    let mut b = ServiceTablesBuilder::new();
    b.set_port(PortSpec::new(0, PortEncap::Dot1q)).unwrap();
    b.set_port(PortSpec::new(1, PortEncap::Dot1q)).unwrap();
    b.set_service(ServiceSpec::Vpls(VplsSpec::new(1))).unwrap();
    let dot1q = |port, q| SapId {
        port,
        encap: SapEncap::Dot1q { tag: Tag::Id(q) },
    };
    b.set_sap(SapSpec::new(dot1q(0, 100), 1)).unwrap();
    for q in [200, 201, 202, 203] {
        b.set_sap(SapSpec::new(dot1q(1, q), 1)).unwrap();
    }
    p.stage_mut::<ServiceStage>().unwrap().install(b.build(), 0);
    let far = |i: usize| {
        MacAddr([
            0x02,
            0x10,
            (i >> 24) as u8,
            (i >> 16) as u8,
            (i >> 8) as u8,
            i as u8,
        ])
    };
    let near = |i: usize| MacAddr([0x02, 0x20, 0, 0, (i >> 8) as u8, i as u8]);
    let payload = ipv4_udp(Ipv4Addr::new(198, 51, 100, 7), 80);
    // Learning: one frame from each of the 1 M far MACs (broadcast, so each is also flooded).
    let mut learn = Pool::new(64);
    for i in 0..MACS {
        let q = 200 + (i % 4) as u16;
        learn.push(
            1,
            build::tagged(
                far(i),
                MacAddr::BROADCAST,
                &[(Q, q)],
                EtherType::IPV4,
                &payload,
            ),
        );
    }
    for i in 0..1024 {
        learn.push(
            0,
            build::tagged(
                near(i),
                MacAddr::BROADCAST,
                &[(Q, 100)],
                EtherType::IPV4,
                &payload,
            ),
        );
    }
    let mut batch = Batch::new(BATCH);
    let start = Instant::now();
    let mut next = 0;
    while next < learn.len() {
        batch.clear();
        for _ in 0..BATCH.min(learn.len() - next) {
            let (port, frame) = learn.frame(next);
            batch.push(frame, PacketMeta::new(port, pkt_type::OTHERHOST, 0));
            next += 1;
        }
        p.run(&mut batch, 1_000_000_000);
    }
    let learned = p
        .stage_mut::<ServiceStage>()
        .unwrap()
        .service_counters(1)
        .unwrap();
    println!(
        "VPLS learning + flooding of {} new sources: {:.2} Mpps ({} MACs in the table)",
        learn.len(),
        learn.len() as f64 / start.elapsed().as_secs_f64() / 1e6,
        learned.macs
    );
    assert_eq!(learned.macs as usize, MACS + 1024);
    drop(learn);
    // Traffic: known near sources to random far destinations over the million. One template
    // per near source (64 KiB, in cache); each copy gets its destination after the copy.
    let mut ring = VplsRing::new(
        0,
        (0..1024).map(|i| build::tagged(near(i), far(0), &[(Q, 100)], EtherType::IPV4, &payload)),
    );
    let mut rng = Rng(0x1234_5678_9abc_def1);
    // BENCH_DSTS=N draws the destinations from the first N learned MACs only (all by
    // default; N rounded up to a power of two): with few, their lines stay in cache, which shows what the random line costs.
    let dsts = std::env::var("BENCH_DSTS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(MACS, |n| n.clamp(1, MACS).next_power_of_two());
    let mut destination = || far(rng.next() as usize & (dsts - 1)).0;
    run_refilling(
        "VPLS, 1 M MACs learned, random destinations",
        &mut p,
        64,
        seconds,
        Verdict::Transmit(1),
        1_000_000_000,
        |batch| ring.refill(batch, &mut destination),
    );
}

fn acl(seconds: f64) {
    // BENCH_SAPS changes the number of SAPs (to see what the cache misses cost).
    let saps: usize = std::env::var("BENCH_SAPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    // BENCH_ACL=filter|policer|none applies only part of it (to see what each part costs).
    let parts = std::env::var("BENCH_ACL").unwrap_or_default();
    let mut p = pipeline(2, ServiceStageConfig::default());
    let mut b = two_qinq_ports();
    let started = Instant::now();
    let tag = |k: usize| ((1 + k / 1000) as u16, (1 + k % 1000) as u16);
    for k in 0..saps {
        let id = k as u32 + 1;
        b.set_policer(PolicerSpec {
            id,
            config: PolicerConfig {
                meter: Meter::TrTcm {
                    pir_kbps: 1_000_000,
                    mbs: None,
                    cir_kbps: 500_000,
                    cbs: None,
                },
                colour_mode: ColourMode::Blind,
                packet_byte_offset: 0,
                stat_mode: StatMode::OfferedTotalCir,
            },
        })
        .unwrap();
        // Seven entries the traffic does not match, then the one it does.
        let mut entries: Vec<FilterEntrySpec> = (0..7u32)
            .map(|e| FilterEntrySpec {
                id: 10 * (e + 1),
                matcher: Match::Ip(IpMatch {
                    dst: Some(Prefix::new(
                        Ipv4Addr::new(10, (k % 250) as u8, e as u8, 0),
                        24,
                    )),
                    protocol: Some(if e % 2 == 0 { 6 } else { 17 }),
                    dst_port: Some(PortRange {
                        first: 1000 + e as u16,
                        last: 2000 + e as u16,
                    }),
                    ..IpMatch::default()
                }),
                action: FilterAction::Drop,
            })
            .collect();
        entries.push(FilterEntrySpec {
            id: 80,
            matcher: Match::Ip(IpMatch {
                protocol: Some(17),
                dst_port: Some(PortRange {
                    first: 80,
                    last: 80,
                }),
                ..IpMatch::default()
            }),
            action: FilterAction::Forward,
        });
        b.set_filter(FilterSpec {
            id,
            kind: FilterKind::Ip,
            default_action: Disposition::Drop,
            entries,
        })
        .unwrap();
        b.set_service(ServiceSpec::Epipe(EpipeSpec::new(id)))
            .unwrap();
        let (o, i) = tag(k);
        let mut ingress = SapSpec::new(
            SapId {
                port: 0,
                encap: qinq(o, i),
            },
            id,
        );
        if parts != "policer" && parts != "none" {
            ingress.ingress.ip_filter = Some(id);
        }
        if parts != "filter" && parts != "none" {
            ingress.ingress.policer = Some(id);
        }
        b.set_sap(ingress).unwrap();
        b.set_sap(SapSpec::new(
            SapId {
                port: 1,
                encap: qinq(o, i),
            },
            id,
        ))
        .unwrap();
    }
    let tables = b.build();
    p.stage_mut::<ServiceStage>().unwrap().install(tables, 0);
    // The rule sets' blocks (the snapshot's and the stage's copies) are the line arena's
    // (whole huge pages, never freed).
    let block_mib = {
        use brasa_dataplane::arena::{ArenaItem, Line, CHUNK_BYTES};
        (Line::arena().chunks() * CHUNK_BYTES) >> 20
    };
    println!(
        "built and installed {saps} Epipes, {} SAPs, {saps} filters × 8 entries, {saps} policers in {:.2} s; rule set blocks {block_mib} MiB",
        2 * saps,
        started.elapsed().as_secs_f64()
    );
    let mut rng = Rng(0xfeed_beef_1234_5678);
    let mut pool = Pool::new(64);
    let payload = ipv4_udp(Ipv4Addr::new(198, 51, 100, 7), 80);
    for _ in 0..(1 << 20) {
        let (o, i) = tag(rng.next() as usize % saps);
        pool.push(
            0,
            build::tagged(
                MacAddr([2, 0, 0, 0, 0, 1]),
                MacAddr([2, 0, 0, 0, 0, 2]),
                &[(S, o), (Q, i)],
                EtherType::IPV4,
                &payload,
            ),
        );
    }
    run(
        &match parts.as_str() {
            "filter" => format!("ip-filter (8 entries, 8th matches), {}k SAPs", saps / 1000),
            "policer" => format!("trTCM, {}k SAPs", saps / 1000),
            "none" => format!("Epipe only, {}k SAPs", saps / 1000),
            _ => format!(
                "ip-filter (8 entries, 8th matches) + trTCM, {}k SAPs",
                saps / 1000
            ),
        },
        &mut p,
        &pool,
        seconds,
        Verdict::Transmit(1),
        0,
    );
    if parts != "policer" && parts != "none" {
        // Every filtered packet was classified and hit the 8th entry (id 80), none another.
        let stage = p.stage_mut::<ServiceStage>().unwrap();
        let (mut eighth, mut others) = (0, 0);
        for id in 1..=saps as u32 {
            for hits in stage.filter_counters(FilterKind::Ip, id).unwrap().entries {
                match hits.entry {
                    Some(80) => eighth += hits.packets,
                    _ => others += hits.packets,
                }
            }
        }
        assert!(
            eighth > 0 && others == 0,
            "hits: 8th entry {eighth}, others {others}"
        );
    }
}

/// The classifier and the policer alone, as the PCC issue will use them: 100 000 owners with 8
/// rules and a trTCM each, the owner of a packet given (by SAP today, by subscriber later); per
/// packet the key is read from the frame, the owner's rules scanned, its policer run and its
/// hit counted. Owners' rule sets and policers are prefetched a few packets ahead.
fn acl_core(seconds: f64) {
    use brasa_dataplane::acl::{self, PacketKey, Rule, RuleAction, RuleSet};
    use brasa_dataplane::policer::{Colour, PolicerParams, PolicerState};
    const OWNERS: usize = 100_000;
    let params = PolicerParams::new(PolicerConfig {
        meter: Meter::TrTcm {
            pir_kbps: 1_000_000,
            mbs: None,
            cir_kbps: 500_000,
            cbs: None,
        },
        colour_mode: ColourMode::Blind,
        packet_byte_offset: 0,
        stat_mode: StatMode::OfferedTotalCir,
    })
    .unwrap();
    /// An owner's record: what a packet reads besides its rule set's block (the summary, the
    /// entries and the actions, in the classifier's arena), in three whole lines: the rule
    /// set's handle (40 bytes), the hit counters, the policer state — what a stage with a rule
    /// set per owner holds per owner (round 10 in `docs/perf/dataplane.md`). The rule orders
    /// and the default action are in the block, not here.
    #[repr(C, align(64))]
    struct Owner {
        rules: RuleSet,
        hits: [u64; 9],
        policer: PolicerState,
    }
    const _: () = assert!(std::mem::size_of::<Owner>() == 3 * 64);
    // The records are in huge pages, as the entries are: a random owner per packet.
    let mut owners = brasa_dataplane::arena::HugeSlice::from_fn(OWNERS, |k| {
        let mut rules: Vec<Rule> = (0..7u32)
            .map(|e| Rule {
                order: 10 * (e + 1),
                matches: vec![Match::Ip(IpMatch {
                    dst: Some(Prefix::new(
                        Ipv4Addr::new(10, (k % 250) as u8, e as u8, 0),
                        24,
                    )),
                    protocol: Some(if e % 2 == 0 { 6 } else { 17 }),
                    dst_port: Some(PortRange {
                        first: 1000 + e as u16,
                        last: 2000 + e as u16,
                    }),
                    ..IpMatch::default()
                })],
                action: RuleAction::DROP,
            })
            .collect();
        rules.push(Rule {
            order: 80,
            matches: vec![Match::Ip(IpMatch {
                protocol: Some(17),
                dst_port: Some(PortRange {
                    first: 80,
                    last: 80,
                }),
                ..IpMatch::default()
            })],
            action: RuleAction::FORWARD,
        });
        Owner {
            rules: acl::compile(&rules, RuleAction::DROP).unwrap(),
            policer: params.initial_state(0),
            hits: [0; 9],
        }
    });
    let frame = build::tagged(
        MacAddr([2, 0, 0, 0, 0, 1]),
        MacAddr([2, 0, 0, 0, 0, 2]),
        &[(S, 10), (Q, 20)],
        EtherType::IPV4,
        &ipv4_udp(Ipv4Addr::new(198, 51, 100, 7), 80),
    );
    let mut rng = Rng(0xabcdef);
    let picks: Vec<usize> = (0..(1 << 20))
        .map(|_| rng.next() as usize % OWNERS)
        .collect();
    // BENCH_AHEAD: packets between prefetch steps (the owner record is fetched three steps
    // ahead, its summary and actions two, its candidate entry one).
    let ahead: usize = std::env::var("BENCH_AHEAD")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    // The keys of the packets between the candidate step and their turn, as a stage keeps
    // them in its per-packet work records.
    let ring = (ahead + 1).next_power_of_two();
    let mut keys = vec![PacketKey::from_frame(&frame, EtherType::IPV4, 22, 0, 0); ring];
    let mut packets = 0u64;
    let mut forwarded = 0u64;
    let start = Instant::now();
    let start_cpu = thread_cpu_seconds();
    let start_cycles = cycles();
    let mut i = 0usize;
    while start.elapsed().as_secs_f64() < seconds {
        for _ in 0..BATCH * 64 {
            // Three steps: the owner's record; once it is in cache, its summary and actions;
            // once those are, the entry the packet's key can match.
            let far = &owners[picks[(i + 3 * ahead) % picks.len()]] as *const _ as *const u8;
            for line in 0..3 {
                brasa_dataplane::fdb::prefetch_read(far.wrapping_add(64 * line));
            }
            owners[picks[(i + 2 * ahead) % picks.len()]]
                .rules
                .prefetch_head();
            let near = PacketKey::from_frame(&frame, EtherType::IPV4, 22, 0, 0);
            owners[picks[(i + ahead) % picks.len()]]
                .rules
                .prefetch_candidates(&near);
            keys[(i + ahead) % ring] = near;
            let owner = &mut owners[picks[i % picks.len()]];
            let key = keys[i % ring];
            let hit = owner.rules.classify(&key);
            owner.hits[usize::from(hit.rule.unwrap_or(8))] += 1;
            if hit.action == RuleAction::FORWARD
                && owner
                    .policer
                    .police(&params, packets * 4, frame.len(), Colour::Green)
                    != Colour::Red
            {
                forwarded += 1;
            }
            packets += 1;
            i += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds() - start_cpu;
    let spent = (cycles() - start_cycles) as f64 * (cpu / elapsed);
    assert_eq!(
        forwarded, packets,
        "every packet matches entry 80 and is within its policer"
    );
    println!(
        "{:<52} {:>6.2} Mpps per CPU-second ({:>5.1} ns, {:>5.0} cycles/packet); wall clock {:>6.2} Mpps",
        "classifier (8 rules) + trTCM alone, 100k owners",
        packets as f64 / cpu / 1e6,
        cpu * 1e9 / packets as f64,
        spent / packets as f64,
        packets as f64 / elapsed / 1e6,
    );
}

/// The ceiling the VPLS scenario runs into on this machine: the same table (1 M MACs, huge
/// pages) and the same random destinations, but nothing per packet except the destination
/// lookup, prefetched `AHEAD` lookups in advance — how many independent DRAM accesses one core
/// completes per second. No frame is read or written.
fn fdb_bound(seconds: f64) {
    use brasa_dataplane::fdb::Fdb;
    const MACS: usize = 1 << 20;
    let mut fdb = Fdb::new(MACS + MACS / 4, 0x5eed);
    for i in 0..MACS {
        fdb.insert(1, 0x0210_0000_0000 | i as u64, (i % 4) as u32, 0, 1)
            .unwrap();
    }
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let dsts: Vec<u64> = (0..MACS)
        .map(|_| 0x0210_0000_0000 | (rng.next() as usize % MACS) as u64)
        .collect();
    for ahead in [8usize, 16, 32] {
        let mut found = 0u64;
        let mut lookups = 0u64;
        let mut i = 0usize;
        let start = Instant::now();
        let start_cpu = thread_cpu_seconds();
        let start_cycles = cycles();
        while start.elapsed().as_secs_f64() < seconds {
            for _ in 0..BATCH * 64 {
                fdb.prefetch(fdb.key(1, dsts[(i + ahead) % MACS]));
                if let Some((_, entry)) = fdb.lookup(1, dsts[i % MACS]) {
                    found += u64::from(entry.sap < 4);
                }
                i += 1;
                lookups += 1;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = thread_cpu_seconds() - start_cpu;
        let spent = (cycles() - start_cycles) as f64 * (cpu / elapsed);
        assert_eq!(found, lookups, "every destination is in the table");
        println!(
            "MAC table alone, 1 M MACs, random lookups {ahead:>2} ahead      {:>6.2} M/s per CPU-second ({:>5.1} ns, {:>5.0} cycles/lookup)",
            lookups as f64 / cpu / 1e6,
            cpu * 1e9 / lookups as f64,
            spent / lookups as f64,
        );
    }
}

/// One scenario of `apply`: `base` SAPs installed by `setup`, then transactions of `add` until
/// the time is up, each as the control side runs one (`Compiler` in `brasa-services-net`):
/// clone the builder, apply the changes to the clone, build the snapshot, install it, keep the
/// clone.
fn apply_case(
    label: &str,
    seconds: f64,
    base: usize,
    per_transaction: usize,
    sap_per_add: usize,
    setup: impl Fn(&mut ServiceTablesBuilder),
    add: impl Fn(&mut ServiceTablesBuilder, usize),
) {
    let mut p = pipeline(2, ServiceStageConfig::default());
    let mut b = two_qinq_ports();
    setup(&mut b);
    let first = base / sap_per_add;
    for k in 0..first {
        add(&mut b, k);
    }
    p.stage_mut::<ServiceStage>().unwrap().install(b.build(), 0);
    let start = Instant::now();
    let mut k = first;
    let mut transactions = 0;
    while start.elapsed().as_secs_f64() < seconds.min(3.0) {
        let mut candidate = b.clone();
        for _ in 0..per_transaction {
            add(&mut candidate, k);
            k += 1;
        }
        let tables = candidate.build();
        p.stage_mut::<ServiceStage>().unwrap().install(tables, 0);
        b = candidate;
        transactions += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let created = sap_per_add * (k - first);
    assert_eq!(b.tables().sap_count(), sap_per_add * k);
    println!(
        "apply: {base:>6} SAPs installed, {per_transaction:>3} {label} per transaction: {:>8.0} SAP creations/s ({transactions} transactions, {:.1} µs each)",
        created as f64 / elapsed,
        elapsed * 1e6 / transactions as f64
    );
}

fn apply(seconds: f64) {
    let sap = |port, k: usize| SapId {
        port,
        encap: qinq(1 + (k / 4000) as u16, 1 + (k % 4000) as u16),
    };
    // A new Epipe and its two SAPs.
    let epipe = |b: &mut ServiceTablesBuilder, k: usize| {
        let id = k as u32 + 2;
        b.set_service(ServiceSpec::Epipe(EpipeSpec::new(id)))
            .unwrap();
        b.set_sap(SapSpec::new(sap(0, k), id)).unwrap();
        b.set_sap(SapSpec::new(sap(1, k), id)).unwrap();
    };
    for (base, per_transaction) in [(1_000, 1), (10_000, 1), (100_000, 1), (100_000, 100)] {
        apply_case("Epipe(s)", seconds, base, per_transaction, 2, |_| {}, epipe);
    }
    // A SAP added to VPLS 1, which holds all the others.
    let vpls_setup = |b: &mut ServiceTablesBuilder| {
        b.set_service(ServiceSpec::Vpls(VplsSpec::new(1))).unwrap();
    };
    let vpls_sap = |b: &mut ServiceTablesBuilder, k: usize| {
        b.set_sap(SapSpec::new(sap(0, k), 1)).unwrap();
    };
    for base in [10_000, 100_000] {
        apply_case("VPLS SAP", seconds, base, 1, 1, vpls_setup, vpls_sap);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let which = args.next().unwrap_or_else(|| "all".into());
    if which == "all" || which == "epipe" {
        epipe(seconds, false);
        epipe(seconds, true);
    }
    if which == "all" || which == "vpls" {
        vpls(seconds);
    }
    if which == "all" || which == "fdb-bound" {
        fdb_bound(seconds);
    }
    if which == "all" || which == "acl" {
        acl(seconds);
    }
    if which == "all" || which == "acl-core" {
        acl_core(seconds);
    }
    if which == "all" || which == "throttle" {
        throttle(seconds);
    }
    if which == "all" || which == "apply" {
        apply(seconds);
    }
}
