//! In-memory throughput of PCC enforcement on one core: 100 000 subscribers with 8 PCC rules
//! each, every rule with its own trTCM policer; per packet the subscriber is looked up by
//! address, its rules of the packet's direction scanned, the matching rule's policer run and
//! its counters and the subscriber's aggregate counted. Prints Mpps, ns and TSC cycles per
//! packet.
//!
//!     cargo run --release -p brasa-dataplane --example pcc_bench [-- SECONDS [SUBSCRIBERS]]
//!     BENCH_SCENARIO=distinct …     # only the scenarios whose name contains this
//!
//! Scenarios (64-byte frames, a random subscriber per packet, batches of 256 refilled from a
//! pool of 1 M template frames before each run, as in `service_bench`):
//! * `classify only`: the pipeline without the PCC stage — the refill and Ethernet parsing
//!   every scenario pays, to subtract.
//! * `8 ingress rules, the 8th matches`: upstream packets; 7 rules that do not match (/24
//!   destinations, protocol, port ranges), then `udp dst-port 80`. The worst case of 8 rules.
//! * `4 + 4 rules, both directions`: half the packets upstream, half downstream, each
//!   matching the 4th rule of its direction.
//! * `8 rules, no rule matches`: upstream packets that scan all 8 entries and are forwarded
//!   by the subscriber's aggregate.
//! * `8 ingress rules, the 8th matches, a distinct rule list per subscriber`: the first
//!   scenario with the 1st rule's far prefix made different for every subscriber, so no two
//!   subscribers share compiled rules (the worst case for memory; every other scenario has
//!   all subscribers with the same services, compiled once by a `PccCompiler`, which is how
//!   operators deploy services and how `brasa run` compiles them).

mod common;

use brasa_dataplane::acl::{IpMatch, PortRange, Prefix};
use brasa_dataplane::build;
use brasa_dataplane::pcc::{
    testing, Direction, PccAction, PccCompiler, PccDefaults, PccPolicer, PccRuleSpec, PccStage,
    SubscriberPccSpec,
};
use brasa_dataplane::pipeline::{pkt_type, Batch, PacketMeta, Pipeline, Stage, Verdict};
use brasa_dataplane::wire::{EtherType, MacAddr};
use common::measure;
use std::net::Ipv4Addr;
use std::sync::Arc;

const BATCH: usize = 256;
const FRAME: usize = 64;
const POOL: usize = 1 << 20;
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

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

/// Subscriber `i`'s address: 100.64.0.0/10 and up.
fn subscriber_addr(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x6440_0000 + i)
}

fn policer() -> PccAction {
    PccAction {
        rate_limit: Some(PccPolicer {
            pir_kbps: 1_000_000,
            cir_kbps: 500_000,
            mbs: None,
            cbs: None,
            packet_byte_offset: 0,
        }),
        account: true,
        ..PccAction::default()
    }
}

/// `count` rules in `direction` that UDP packets to (ingress) or from (egress) port 80 of
/// SERVER do not match, except the last when `last_matches`.
fn rules(direction: Direction, count: u32, last_matches: bool) -> Vec<PccRuleSpec> {
    (0..count)
        .map(|i| {
            let far = Prefix::new(Ipv4Addr::new(203, 0, i as u8, 0), 24);
            let mut flow = IpMatch {
                protocol: Some(if i % 2 == 0 { 6 } else { 17 }),
                dst_port: Some(PortRange {
                    first: 1_000 + i as u16 * 10,
                    last: 1_005 + i as u16 * 10,
                }),
                ..IpMatch::default()
            };
            let far_side = if i + 1 == count && last_matches {
                flow.protocol = Some(17);
                flow.dst_port = Some(PortRange::single(80));
                None
            } else {
                Some(far)
            };
            // Egress rules see the far side as the source.
            match direction {
                Direction::Ingress => flow.dst = far_side,
                Direction::Egress => {
                    flow.src = far_side;
                    flow.src_port = flow.dst_port.take();
                }
            }
            PccRuleSpec {
                name: format!("{}-{i}", direction.name()),
                direction,
                precedence: 10 * (i + 1),
                flows: vec![flow],
                action: policer(),
            }
        })
        .collect()
}

fn stage(subscribers: u32, rules: &[PccRuleSpec], distinct: bool) -> PccStage {
    let mut stage = PccStage::new(PccDefaults::default());
    let mut compiler = PccCompiler::new();
    for i in 0..subscribers {
        let mut rules = rules.to_vec();
        if distinct {
            // 203.0.0.0/24 becomes 10.x.y.0/24, x.y from the subscriber's index: the first
            // rule still never matches, and no two subscribers have equal lists.
            if let Some(flow) = rules.first_mut().and_then(|r| r.flows.first_mut()) {
                flow.dst = Some(Prefix::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24));
            }
        }
        let spec = SubscriberPccSpec {
            name: format!("sub{i}"),
            addresses: vec![Prefix::new(subscriber_addr(i), 32)],
            vprn_addresses: Vec::new(),
            rules,
        };
        let policy = compiler.compile(spec).expect("valid rules");
        stage.install(Arc::new(policy)).expect("distinct addresses");
    }
    println!(
        "  ({} compiled rule list(s) for {subscribers} subscribers)",
        compiler.shared_rule_lists()
    );
    stage
}

fn pipeline(pcc: Option<PccStage>) -> Pipeline {
    testing::pipeline(pcc.map(|stage| Box::new(stage) as Box<dyn Stage>))
}

/// Template frames: a random subscriber each, upstream or downstream (`downstream_share` of
/// 256), UDP to or from port 80 of SERVER.
fn pool(subscribers: u32, downstream_share: u64) -> Vec<u8> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut bytes = Vec::with_capacity(POOL * FRAME);
    for _ in 0..POOL {
        let sub = subscriber_addr((rng.next() % u64::from(subscribers)) as u32);
        let downstream = rng.next() % 256 < downstream_share;
        let ip = if downstream {
            build::ipv4_udp(SERVER, sub, 80, 40_000, &[0; 18])
        } else {
            build::ipv4_udp(sub, SERVER, 40_000, 80, &[0; 18])
        };
        let mut frame = build::ethernet(
            MacAddr([2, 0, 0, 0, 0, 2]),
            testing::PORT_MAC,
            EtherType::IPV4,
            &ip,
        );
        frame.resize(FRAME, 0);
        bytes.extend_from_slice(&frame);
    }
    bytes
}

fn fill(batch: &mut Batch, pool: &[u8], next: &mut usize) {
    batch.clear();
    for _ in 0..BATCH {
        let at = (*next % POOL) * FRAME;
        batch.push(&pool[at..at + FRAME], PacketMeta::new(0, pkt_type::HOST, 0));
        *next += 1;
    }
}

fn run(name: &str, p: &mut Pipeline, pool: &[u8], seconds: f64) {
    let mut batch = Batch::new(BATCH);
    let mut next = 0usize;
    for _ in 0..16 {
        fill(&mut batch, pool, &mut next);
        p.run(&mut batch, 0);
        let wrong = batch
            .iter()
            .find(|(_, m)| m.verdict != Verdict::Ignore)
            .map(|(_, m)| m.verdict);
        assert_eq!(wrong, None, "{name}: every packet is forwarded");
    }
    measure(name, seconds, "", |packets| {
        fill(&mut batch, pool, &mut next);
        // 4 ns of simulated time per packet: the policers refill as at 250 Mpps.
        p.run(&mut batch, packets * 4);
        BATCH as u64
    });
}

fn counted(p: &mut Pipeline, subscribers: u32) -> u64 {
    let stage = p.stage_mut::<PccStage>().expect("the PCC stage");
    (0..subscribers)
        .filter_map(|i| stage.get(&format!("sub{i}")))
        .map(|policy| {
            let c = policy.counters();
            c.ingress.packets + c.egress.packets
        })
        .sum()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let subscribers: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    println!("{subscribers} subscribers × 8 PCC rules, trTCM on every rule, {FRAME}-byte frames");

    let upstream = pool(subscribers, 0);
    run("classify only", &mut pipeline(None), &upstream, seconds);

    // One scenario's subscribers at a time: each pipeline is dropped before the next is built.
    let scenarios: [(&str, Vec<PccRuleSpec>, u64, bool); 4] = [
        (
            "8 ingress rules, the 8th matches",
            rules(Direction::Ingress, 8, true),
            0,
            false,
        ),
        (
            "4 + 4 rules, both directions",
            rules(Direction::Ingress, 4, true)
                .into_iter()
                .chain(rules(Direction::Egress, 4, true))
                .collect(),
            128,
            false,
        ),
        (
            "8 rules, no rule matches",
            rules(Direction::Ingress, 8, false),
            0,
            false,
        ),
        (
            "8 ingress rules, the 8th matches, a distinct rule list per subscriber",
            rules(Direction::Ingress, 8, true),
            0,
            true,
        ),
    ];
    // `BENCH_SCENARIO=distinct` (any part of a name) runs only the matching scenarios, for a
    // profile of one of them.
    let only = std::env::var("BENCH_SCENARIO").unwrap_or_default();
    for (name, rules, downstream_share, distinct) in scenarios {
        if !name.contains(only.as_str()) {
            continue;
        }
        let traffic = if downstream_share == 0 {
            None
        } else {
            Some(pool(subscribers, downstream_share))
        };
        let mut p = pipeline(Some(stage(subscribers, &rules, distinct)));
        run(
            name,
            &mut p,
            traffic.as_deref().unwrap_or(&upstream),
            seconds,
        );
        assert!(
            counted(&mut p, subscribers) > 0,
            "{name}: the PCC stage counted"
        );
    }
}
