use super::policy::classify4_among;
use super::*;
use crate::acl::{v4, v6, Disposition, IpMatch, Match, PacketKey, PortRange, Rule};
use crate::build;
use crate::pipeline::{pkt_type, Batch, DropReason, PacketMeta, Pipeline, Shared, Stage, Verdict};
use crate::wire::{EtherType, Ipv4Packet, Ipv6Packet, MacAddr};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

const SEC: u64 = 1_000_000_000;
const SUB4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const SUB6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0x1200, 0, 0, 0, 0);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 5);
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
/// A second subscriber's delegated prefix.
const SHARED6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0x1300, 0, 0, 0, 0);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 5);

fn sub6_host() -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0x1200, 0, 0, 0, 0x42)
}

/// The harness pipeline with `stage` as its PCC stage.
fn pipeline(stage: impl Stage + 'static) -> Pipeline {
    super::testing::pipeline(Some(Box::new(stage)))
}

fn frame(ip: &[u8]) -> Vec<u8> {
    let ethertype = if ip[0] >> 4 == 6 {
        EtherType::IPV6
    } else {
        EtherType::IPV4
    };
    build::ethernet(
        MacAddr([2, 0, 0, 0, 0, 2]),
        super::testing::PORT_MAC,
        ethertype,
        ip,
    )
}

fn udp(src: IpAddr, dst: IpAddr, dst_port: u16, payload_len: usize) -> Vec<u8> {
    let payload = vec![0u8; payload_len];
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => build::ipv4_udp(s, d, 40_000, dst_port, &payload),
        (IpAddr::V6(s), IpAddr::V6(d)) => build::ipv6_udp(s, d, 40_000, dst_port, &payload),
        _ => unreachable!("one family per packet"),
    }
}

/// Runs one batch of IP packets at `now_ns`; returns their verdicts and final bytes.
fn run(pipeline: &mut Pipeline, packets: &[Vec<u8>], now_ns: u64) -> Vec<(Verdict, Vec<u8>)> {
    let mut batch = Batch::new(packets.len().max(1));
    for ip in packets {
        assert!(batch.push(&frame(ip), PacketMeta::new(0, pkt_type::HOST, 0)));
    }
    pipeline.run(&mut batch, now_ns);
    batch
        .iter()
        .map(|(buf, meta)| (meta.verdict, buf.as_slice()[14..].to_vec()))
        .collect()
}

fn verdicts(pipeline: &mut Pipeline, packets: &[Vec<u8>], now_ns: u64) -> Vec<Verdict> {
    run(pipeline, packets, now_ns)
        .into_iter()
        .map(|(v, _)| v)
        .collect()
}

fn flow(f: impl FnOnce(&mut IpMatch)) -> IpMatch {
    let mut m = IpMatch::default();
    f(&mut m);
    m
}

fn rule(name: &str, direction: Direction, precedence: u32, flows: Vec<IpMatch>) -> PccRuleSpec {
    PccRuleSpec {
        name: name.into(),
        direction,
        precedence,
        flows,
        action: PccAction::default(),
    }
}

fn pir(kbps: u64) -> PccAction {
    PccAction {
        rate_limit: Some(PccPolicer {
            pir_kbps: kbps,
            cir_kbps: 0,
            mbs: None,
            cbs: None,
            packet_byte_offset: 0,
        }),
        ..PccAction::default()
    }
}

/// The SR OS PCC-rules example service `subsvc-pccrule-1`: upstream to 10.1.1.0/24 at
/// 1 Mb/s, downstream from it at 5 Mb/s, and the example script's slip kept: both
/// `qos_action_account` lines name the ingress rule.
fn sr_os_example_service(name: &str) -> SubscriberPccSpec {
    SubscriberPccSpec {
        name: name.into(),
        addresses: vec![v4(192, 0, 2, 10, 32), v6(SUB6, 56)],
        vprn_addresses: Vec::new(),
        rules: vec![
            PccRuleSpec {
                action: PccAction {
                    account: true,
                    ..pir(1_000)
                },
                ..rule(
                    "pcc-rule-1-i",
                    Direction::Ingress,
                    10,
                    vec![flow(|f| f.dst = Some(v4(10, 1, 1, 0, 24)))],
                )
            },
            PccRuleSpec {
                action: pir(5_000),
                ..rule(
                    "pcc-rule-1-e",
                    Direction::Egress,
                    10,
                    vec![flow(|f| f.src = Some(v4(10, 1, 1, 0, 24)))],
                )
            },
        ],
    }
}

fn installed(specs: Vec<SubscriberPccSpec>, defaults: PccDefaults) -> PccStage {
    let mut stage = PccStage::new(defaults);
    for spec in specs {
        stage
            .install(Arc::new(SubscriberPolicy::compile(spec).unwrap()))
            .unwrap();
    }
    stage
}

fn counters(pipeline: &mut Pipeline, name: &str) -> SubscriberCounters {
    pipeline
        .stage_mut::<PccStage>()
        .and_then(|s| s.get(name))
        .map(|p| p.counters())
        .unwrap()
}

fn rule_counters<'a>(c: &'a SubscriberCounters, name: &str) -> &'a RuleCounters {
    c.rules.iter().find(|r| r.name == name).unwrap()
}

#[test]
fn sr_os_example_service_classifies_by_direction_and_counts() {
    let mut p = pipeline(installed(
        vec![sr_os_example_service("alice")],
        PccDefaults::default(),
    ));
    let up_limited = udp(SUB4.into(), SERVER.into(), 5001, 100);
    let up_free = udp(SUB4.into(), OTHER.into(), 5001, 200);
    let down_limited = udp(SERVER.into(), SUB4.into(), 5001, 300);
    let unknown = udp(OTHER.into(), SERVER.into(), 5001, 400);
    let v = verdicts(
        &mut p,
        &[
            up_limited.clone(),
            up_free.clone(),
            down_limited.clone(),
            unknown,
        ],
        0,
    );
    assert!(v.iter().all(|v| *v == Verdict::Ignore), "{v:?}");
    let c = counters(&mut p, "alice");
    let i = rule_counters(&c, "pcc-rule-1-i");
    let e = rule_counters(&c, "pcc-rule-1-e");
    assert_eq!(
        (i.forwarded.packets, i.forwarded.octets, i.account),
        (1, up_limited.len() as u64, true)
    );
    assert_eq!(
        (e.forwarded.packets, e.forwarded.octets, e.account),
        (1, down_limited.len() as u64, false)
    );
    assert_eq!(
        c.ingress,
        Volume {
            packets: 2,
            octets: (up_limited.len() + up_free.len()) as u64
        }
    );
    assert_eq!(c.egress.octets, down_limited.len() as u64);
    let stats = p.stage_mut::<PccStage>().unwrap().stats();
    assert_eq!(stats.unknown_forwarded, 1);
}

#[test]
fn ipv6_and_mixed_family_flows() {
    let spec = SubscriberPccSpec {
        name: "bob".into(),
        addresses: vec![v4(192, 0, 2, 10, 32), v6(SUB6, 56)],
        vprn_addresses: Vec::new(),
        rules: vec![PccRuleSpec {
            action: PccAction {
                disposition: Disposition::Drop,
                ..PccAction::default()
            },
            ..rule(
                "mixed",
                Direction::Ingress,
                1,
                vec![
                    flow(|f| {
                        f.dst = Some(v6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0), 48));
                        f.protocol = Some(17);
                        f.dst_port = Some(PortRange {
                            first: 5000,
                            last: 5010,
                        });
                    }),
                    flow(|f| f.dst = Some(v4(10, 1, 1, 0, 24))),
                ],
            )
        }],
    };
    let mut p = pipeline(installed(vec![spec], PccDefaults::default()));
    let packets = [
        udp(sub6_host().into(), SERVER6.into(), 5005, 10),
        udp(sub6_host().into(), SERVER6.into(), 5011, 10),
        udp(SUB4.into(), SERVER.into(), 80, 10),
        udp(SUB4.into(), OTHER.into(), 80, 10),
        // Downstream: the rule is an ingress rule.
        udp(SERVER6.into(), sub6_host().into(), 5005, 10),
    ];
    let drop = Verdict::Drop(DropReason::Pcc);
    assert_eq!(
        verdicts(&mut p, &packets, 0),
        vec![
            drop,
            Verdict::Ignore,
            drop,
            Verdict::Ignore,
            Verdict::Ignore
        ]
    );
    let c = counters(&mut p, "bob");
    assert_eq!(rule_counters(&c, "mixed").dropped.packets, 2);
    assert_eq!(c.ingress.packets, 2);
    assert_eq!(c.egress.packets, 1);
}

#[test]
fn lowest_precedence_wins_and_ties_keep_the_listed_order() {
    let to_server = || flow(|f| f.dst = Some(v4(10, 1, 1, 5, 32)));
    let to_net = || flow(|f| f.dst = Some(v4(10, 0, 0, 0, 8)));
    let drop = PccAction {
        disposition: Disposition::Drop,
        ..PccAction::default()
    };
    let spec = SubscriberPccSpec {
        name: "carol".into(),
        addresses: vec![v4(192, 0, 2, 10, 32)],
        vprn_addresses: Vec::new(),
        rules: vec![
            PccRuleSpec {
                action: drop,
                ..rule("net-drop", Direction::Ingress, 20, vec![to_net()])
            },
            rule("server-first", Direction::Ingress, 5, vec![to_server()]),
            rule("tie-a", Direction::Ingress, 20, vec![to_net()]),
        ],
    };
    let mut p = pipeline(installed(vec![spec], PccDefaults::default()));
    let v = verdicts(
        &mut p,
        &[
            udp(SUB4.into(), SERVER.into(), 1, 1),
            udp(SUB4.into(), OTHER.into(), 1, 1),
        ],
        0,
    );
    assert_eq!(v, vec![Verdict::Ignore, Verdict::Drop(DropReason::Pcc)]);
    let c = counters(&mut p, "carol");
    assert_eq!(rule_counters(&c, "server-first").forwarded.packets, 1);
    assert_eq!(rule_counters(&c, "net-drop").dropped.packets, 1);
    assert_eq!(rule_counters(&c, "tie-a").forwarded.packets, 0);
}

#[test]
fn dscp_remark_keeps_ecn_and_a_valid_ipv4_checksum() {
    let remark = PccAction {
        remark_dscp: Some(46),
        ..PccAction::default()
    };
    let any = || flow(|_| {});
    let spec = SubscriberPccSpec {
        name: "dave".into(),
        addresses: vec![v4(192, 0, 2, 10, 32), v6(SUB6, 56)],
        vprn_addresses: Vec::new(),
        rules: vec![PccRuleSpec {
            action: remark,
            ..rule("ef", Direction::Ingress, 1, vec![any()])
        }],
    };
    let mut p = pipeline(installed(vec![spec], PccDefaults::default()));
    let mut ip4 = udp(SUB4.into(), SERVER.into(), 1, 20);
    ip4[1] = (10 << 2) | 0b01; // DSCP 10, ECN 01
    Ipv4Packet::new_unchecked(&mut ip4[..]).fill_checksum();
    let mut ip6 = udp(sub6_host().into(), SERVER6.into(), 1, 20);
    // Traffic class DSCP 10, ECN 10; flow label 0xabcde.
    ip6[0..4]
        .copy_from_slice(&(0x6000_0000u32 | (((10 << 2) | 0b10) << 20) | 0xabcde).to_be_bytes());
    let out = run(&mut p, &[ip4, ip6], 0);
    let v4_out = Ipv4Packet::new_checked(&out[0].1[..]).unwrap();
    assert_eq!((v4_out.dscp(), v4_out.ecn()), (46, 0b01));
    assert!(v4_out.verify_checksum());
    let v6_out = Ipv6Packet::new_checked(&out[1].1[..]).unwrap();
    assert_eq!(v6_out.traffic_class(), (46 << 2) | 0b10);
    assert_eq!((v6_out.version(), v6_out.flow_label()), (6, 0xabcde));
}

/// Offers `packet_bytes`-byte packets at `rate_kbps` through the SR OS example's 1 Mb/s ingress rule
/// for `seconds` of simulated time; returns (offered, dropped by the policer). A worker polls
/// its ring every millisecond: each batch holds the packets that arrived in the last poll
/// interval, stamped with the poll's time.
fn offer(rate_kbps: u64, packet_bytes: usize, seconds: u64) -> (u64, u64) {
    const POLL_NS: u64 = 1_000_000;
    let mut p = pipeline(installed(
        vec![sr_os_example_service("erin")],
        PccDefaults::default(),
    ));
    let ip = udp(SUB4.into(), SERVER.into(), 5001, packet_bytes - 28);
    let interval_ns = packet_bytes as u64 * 8 * 1_000_000 / rate_kbps;
    let total = seconds * SEC / interval_ns;
    let mut dropped = 0;
    let mut sent = 0;
    let mut poll = 0;
    while sent < total {
        poll += POLL_NS;
        let arrived = (poll / interval_ns + 1).min(total) - sent;
        if arrived == 0 {
            continue;
        }
        let batch = vec![ip.clone(); arrived as usize];
        dropped += verdicts(&mut p, &batch, poll)
            .iter()
            .filter(|v| **v == Verdict::Drop(DropReason::Policer))
            .count() as u64;
        sent += arrived;
    }
    let c = counters(&mut p, "erin");
    let r = rule_counters(&c, "pcc-rule-1-i");
    assert_eq!(r.dropped.packets, dropped);
    assert_eq!(r.forwarded.packets + r.dropped.packets, total);
    (total, dropped)
}

/// Packet sizes offered: full-size frames one per poll, small ones several per batch.
const SIZES: [usize; 2] = [1_000, 100];

#[test]
fn policer_passes_everything_at_95_percent_of_pir() {
    for size in SIZES {
        let (offered, dropped) = offer(950, size, 30);
        assert!(offered > 3_000);
        assert_eq!(
            dropped, 0,
            "{size}-byte packets: {dropped} of {offered} dropped"
        );
    }
}

#[test]
fn policer_drops_the_excess_at_twice_the_pir() {
    for size in SIZES {
        let (offered, dropped) = offer(2_000, size, 30);
        let loss = dropped as f64 / offered as f64;
        let expected = 1.0 - 1_000.0 / 2_000.0;
        assert!(
            (loss - expected).abs() <= 0.02,
            "{size}-byte packets: loss {loss:.4}, expected {expected} ± 0.02 ({dropped} of {offered})"
        );
    }
}

#[test]
fn counter_rule_inputs_account_flags_rule_and_aggregate_volumes() {
    // Accounted rule to 10.1.1.0/24, unaccounted rule to 10.2.0.0/16, and unmatched traffic.
    let mut spec = sr_os_example_service("frank");
    spec.rules.push(rule(
        "other",
        Direction::Ingress,
        20,
        vec![flow(|f| f.dst = Some(v4(10, 2, 0, 0, 16)))],
    ));
    let mut p = pipeline(installed(vec![spec], PccDefaults::default()));
    let a = udp(SUB4.into(), SERVER.into(), 1, 100);
    let b = udp(SUB4.into(), OTHER.into(), 1, 50);
    let c_ = udp(SUB4.into(), Ipv4Addr::new(198, 51, 100, 1).into(), 1, 10);
    verdicts(&mut p, &[a.clone(), a.clone(), b.clone(), c_.clone()], 0);
    let c = counters(&mut p, "frank");
    let accounted: Volume = c
        .rules
        .iter()
        .filter(|r| r.account)
        .fold(Volume::default(), |sum, r| sum.sum(r.forwarded));
    assert_eq!(
        accounted,
        Volume {
            packets: 2,
            octets: 2 * a.len() as u64
        }
    );
    assert_eq!(
        c.ingress,
        Volume {
            packets: 4,
            octets: (2 * a.len() + b.len() + c_.len()) as u64
        }
    );
}

#[test]
fn a_new_policy_keeps_the_state_of_the_rules_it_keeps() {
    let mut p = pipeline(installed(
        vec![sr_os_example_service("gina")],
        PccDefaults::default(),
    ));
    // Drain the 1 Mb/s bucket (default MBS 1 536 bytes): the second 1 000-byte packet is red.
    let big = udp(SUB4.into(), SERVER.into(), 1, 972);
    let v = verdicts(&mut p, &[big.clone(), big.clone()], 0);
    assert_eq!(v[1], Verdict::Drop(DropReason::Policer));

    // New policy: the ingress rule kept (same name, higher PIR), the egress one renamed.
    let mut next = sr_os_example_service("gina");
    next.rules[0].action.rate_limit = Some(PccPolicer {
        pir_kbps: 2_000,
        ..next.rules[0].action.rate_limit.unwrap()
    });
    next.rules[1].name = "renamed".into();
    let stage = p.stage_mut::<PccStage>().unwrap();
    let before = stage.get("gina").unwrap().counters();
    let old = stage
        .install(Arc::new(SubscriberPolicy::compile(next).unwrap()))
        .unwrap()
        .unwrap();
    assert_eq!(
        old.counters(),
        before,
        "the replaced policy keeps its final counts"
    );
    let after = stage.get("gina").unwrap().counters();
    assert_eq!(after.ingress, before.ingress);
    let kept = rule_counters(&after, "pcc-rule-1-i");
    assert_eq!(
        (kept.forwarded.packets, kept.dropped.packets),
        (1, 1),
        "counters carried over"
    );
    // Buckets carried over too: still (nearly) empty at the same instant, so red again.
    assert_eq!(
        verdicts(&mut p, std::slice::from_ref(&big), 0),
        vec![Verdict::Drop(DropReason::Policer)]
    );
    let renamed = rule_counters(&counters(&mut p, "gina"), "renamed").clone();
    assert_eq!(renamed.forwarded, Volume::default());
}

#[test]
fn install_swaps_rules_and_addresses_at_once_or_changes_nothing() {
    let mut stage = installed(vec![sr_os_example_service("hal")], PccDefaults::default());
    // Ivan claims hal's address: refused, nothing changed.
    let mut ivan = sr_os_example_service("ivan");
    ivan.addresses = vec![v4(198, 51, 100, 7, 32), v4(192, 0, 2, 10, 32)];
    let err = stage
        .install(Arc::new(SubscriberPolicy::compile(ivan).unwrap()))
        .unwrap_err();
    assert_eq!(
        err,
        PccError::AddressOwned {
            subscriber: "ivan".into(),
            instance: RoutingInstance::Base,
            prefix: v4(192, 0, 2, 10, 32),
            owner: "hal".into()
        }
    );
    assert_eq!(stage.len(), 1);
    assert!(stage.get("ivan").is_none());

    // Hal moves to a new address with no rules: the old address is unknown at once.
    let moved = SubscriberPccSpec {
        name: "hal".into(),
        addresses: vec![v4(198, 51, 100, 8, 32)],
        vprn_addresses: Vec::new(),
        rules: vec![],
    };
    stage
        .install(Arc::new(SubscriberPolicy::compile(moved).unwrap()))
        .unwrap();
    let mut p = pipeline(stage);
    let v = verdicts(
        &mut p,
        &[
            udp(SUB4.into(), SERVER.into(), 1, 1),
            udp(Ipv4Addr::new(198, 51, 100, 8).into(), SERVER.into(), 1, 1),
        ],
        0,
    );
    assert_eq!(v, vec![Verdict::Ignore; 2]);
    let stage = p.stage_mut::<PccStage>().unwrap();
    assert_eq!(stage.stats().unknown_forwarded, 1);
    assert_eq!(stage.get("hal").unwrap().counters().ingress.packets, 1);
    assert!(stage.remove("hal").is_some());
    assert!(stage.is_empty());
}

#[test]
fn defaults_drop_unknown_addresses_and_subscribers_without_services() {
    let idle = SubscriberPccSpec {
        name: "jo".into(),
        addresses: vec![v4(192, 0, 2, 11, 32)],
        vprn_addresses: Vec::new(),
        rules: vec![],
    };
    let defaults = PccDefaults {
        unknown: Disposition::Drop,
        no_services: Disposition::Drop,
    };
    let mut p = pipeline(installed(
        vec![idle, sr_os_example_service("kim")],
        defaults,
    ));
    let v = verdicts(
        &mut p,
        &[
            udp(OTHER.into(), SERVER.into(), 1, 1),
            udp(Ipv4Addr::new(192, 0, 2, 11).into(), SERVER.into(), 1, 1),
            udp(SUB4.into(), OTHER.into(), 1, 1),
        ],
        0,
    );
    let drop = Verdict::Drop(DropReason::Pcc);
    assert_eq!(v, vec![drop, drop, Verdict::Ignore]);
    let stats = p.stage_mut::<PccStage>().unwrap().stats();
    assert_eq!((stats.unknown_dropped, stats.no_services_dropped), (1, 1));
}

#[test]
fn traffic_between_subscribers_meets_both_sides_rules() {
    let drop_from_lee = SubscriberPccSpec {
        name: "mo".into(),
        addresses: vec![v4(192, 0, 2, 20, 32)],
        vprn_addresses: Vec::new(),
        rules: vec![PccRuleSpec {
            action: PccAction {
                disposition: Disposition::Drop,
                ..PccAction::default()
            },
            ..rule(
                "no-lee",
                Direction::Egress,
                1,
                vec![flow(|f| f.src = Some(v4(192, 0, 2, 10, 32)))],
            )
        }],
    };
    let mut lee = sr_os_example_service("lee");
    lee.rules.push(rule(
        "to-mo",
        Direction::Ingress,
        1,
        vec![flow(|f| f.dst = Some(v4(192, 0, 2, 20, 32)))],
    ));
    let mut p = pipeline(installed(vec![lee, drop_from_lee], PccDefaults::default()));
    let v = verdicts(
        &mut p,
        &[udp(SUB4.into(), Ipv4Addr::new(192, 0, 2, 20).into(), 1, 1)],
        0,
    );
    assert_eq!(v, vec![Verdict::Drop(DropReason::Pcc)]);
    let lee = counters(&mut p, "lee");
    assert_eq!(rule_counters(&lee, "to-mo").forwarded.packets, 1);
    let mo = counters(&mut p, "mo");
    assert_eq!(rule_counters(&mo, "no-lee").dropped.packets, 1);
    assert_eq!(mo.egress.packets, 0);
}

#[test]
fn malformed_ip_is_left_to_the_later_stages() {
    let mut p = pipeline(installed(
        vec![sr_os_example_service("ned")],
        PccDefaults {
            unknown: Disposition::Drop,
            no_services: Disposition::Drop,
        },
    ));
    let mut bad = udp(SUB4.into(), SERVER.into(), 1, 1);
    bad[0] = 0x4f; // IHL beyond the packet
    assert_eq!(verdicts(&mut p, &[bad], 0), vec![Verdict::Ignore]);
    assert_eq!(counters(&mut p, "ned").ingress.packets, 0);
}

#[test]
fn invalid_policies_are_refused_with_the_rule_and_the_reason() {
    let refused = |edit: fn(&mut SubscriberPccSpec)| {
        let mut spec = sr_os_example_service("olga");
        edit(&mut spec);
        SubscriberPolicy::compile(spec).unwrap_err()
    };
    let rule_problem = |err: PccError| match err {
        PccError::Rule { rule, kind, .. } => (rule, kind),
        other => panic!("{other}"),
    };
    assert_eq!(
        rule_problem(refused(|s| {
            s.rules[1].name = "pcc-rule-1-i".into();
            s.rules[1].direction = Direction::Ingress;
        })),
        ("pcc-rule-1-i".into(), RuleProblem::DuplicateName)
    );
    // The same name in the other direction is allowed.
    let mut both = sr_os_example_service("olga");
    both.rules[1].name = both.rules[0].name.clone();
    assert!(SubscriberPolicy::compile(both).is_ok());
    assert_eq!(
        rule_problem(refused(|s| s.rules[0].flows.clear())),
        ("pcc-rule-1-i".into(), RuleProblem::NoFlow)
    );
    assert_eq!(
        rule_problem(refused(
            |s| s.rules[0].flows[0].dst = Some(v4(10, 1, 1, 1, 24))
        ))
        .1,
        RuleProblem::Flow {
            index: 0,
            kind: crate::acl::RuleErrorKind::HostBits(v4(10, 1, 1, 1, 24))
        }
    );
    assert_eq!(
        rule_problem(refused(
            |s| s.rules[1].action.disposition = Disposition::Drop
        )),
        ("pcc-rule-1-e".into(), RuleProblem::DropWithForwardActions)
    );
    assert_eq!(
        rule_problem(refused(|s| s.rules[0].action.remark_dscp = Some(64))).1,
        RuleProblem::RemarkDscp(64)
    );
    assert!(matches!(
        rule_problem(refused(|s| s.rules[0]
            .action
            .rate_limit
            .as_mut()
            .unwrap()
            .cir_kbps = 2_000))
        .1,
        RuleProblem::Policer(crate::policer::PolicerError::CirAbovePir { .. })
    ));
    assert_eq!(
        refused(|s| s.addresses.push(v4(192, 0, 2, 10, 32))),
        PccError::AddressTwice {
            subscriber: "olga".into(),
            instance: RoutingInstance::Base,
            prefix: v4(192, 0, 2, 10, 32)
        }
    );
    assert!(matches!(
        refused(|s| s.addresses.push(v4(192, 0, 2, 1, 8))),
        PccError::Address { .. }
    ));
}

#[test]
fn counters_are_read_while_a_worker_runs() {
    let stage = Shared::new(installed(
        vec![sr_os_example_service("pat")],
        PccDefaults::default(),
    ));
    let policy = stage.lock().get("pat").unwrap().clone();
    let worker = {
        let stage = stage.clone();
        std::thread::spawn(move || {
            let mut p = pipeline(stage);
            let packets = vec![udp(SUB4.into(), OTHER.into(), 1, 10); 64];
            for round in 0..2_000u64 {
                verdicts(&mut p, &packets, round);
            }
        })
    };
    // Reads need no lock and never go backwards.
    let mut last = 0;
    while !worker.is_finished() {
        let now = policy.counters().ingress.packets;
        assert!(now >= last);
        last = now;
    }
    worker.join().unwrap();
    assert_eq!(policy.counters().ingress.packets, 2_000 * 64);
}

/// The reference: per direction, the matching rule of lowest precedence (first listed on a
/// tie), as the plain [`Rule::matches`] semantics decide.
fn reference(spec: &SubscriberPccSpec, key: &PacketKey, direction: Direction) -> Option<String> {
    spec.rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.direction == direction)
        .filter(|(_, r)| {
            Rule {
                order: 0,
                matches: r.flows.iter().copied().map(Match::Ip).collect(),
                action: crate::acl::RuleAction::FORWARD,
            }
            .matches(key)
        })
        .min_by_key(|(i, r)| (r.precedence, *i))
        .map(|(_, r)| r.name.clone())
}

fn arb_flow() -> impl Strategy<Value = IpMatch> {
    (
        proptest::option::of((0u8..4, 0u8..=32)),
        proptest::option::of(prop_oneof![Just(6u8), Just(17u8)]),
        proptest::option::of((0u16..8, 0u16..8)),
        proptest::option::of(0u8..4),
        any::<bool>(),
        0u8..4,
    )
        .prop_map(|(dst, protocol, ports, dscp, v6_flow, host)| {
            let mut m = IpMatch::default();
            if v6_flow {
                m.dst = dst.map(|(net, len)| {
                    let len = len * 4;
                    let addr = (u128::from(net) << 124) & crate::acl::mask128(len);
                    v6(Ipv6Addr::from(addr), len)
                });
            } else {
                // Host bits below the top two, so that prefixes longer than 24 bits (which the
                // far-end summary keeps as their /24) match some packets and miss others.
                m.dst = dst.map(|(net, len)| {
                    let host = (u32::from(host) << 8) | 5;
                    let addr = ((u32::from(net) << 30) | host) & crate::acl::mask32(len);
                    v4(
                        (addr >> 24) as u8,
                        (addr >> 16) as u8,
                        (addr >> 8) as u8,
                        addr as u8,
                        len,
                    )
                });
            }
            m.protocol = protocol;
            m.dst_port = ports.map(|(a, b)| PortRange {
                first: 5000 + a.min(b),
                last: 5000 + a.max(b),
            });
            m.dscp = dscp;
            m
        })
}

/// Fewer than `rules` generated (flows, precedence, egress) triples of fewer than `flows`
/// flows each, for [`arb_rules_spec`].
fn arb_rules(flows: usize, rules: usize) -> impl Strategy<Value = Vec<(Vec<IpMatch>, u32, bool)>> {
    proptest::collection::vec(
        (
            proptest::collection::vec(arb_flow(), 1..flows),
            0u32..4,
            any::<bool>(),
        ),
        1..rules,
    )
}

/// Rules from generated (flows, precedence, egress) triples, named `r0`, `r1`…: egress rules
/// match on the source, so their generated destination is mirrored there.
fn arb_rules_spec(rules: Vec<(Vec<IpMatch>, u32, bool)>) -> Vec<PccRuleSpec> {
    rules
        .into_iter()
        .enumerate()
        .map(|(i, (flows, precedence, egress))| {
            let flows = if egress {
                flows
                    .into_iter()
                    .map(|f| IpMatch {
                        src: f.dst,
                        dst: None,
                        ..f
                    })
                    .collect()
            } else {
                flows
            };
            let direction = if egress {
                Direction::Egress
            } else {
                Direction::Ingress
            };
            rule(&format!("r{i}"), direction, precedence, flows)
        })
        .collect()
}

/// A policy of subscriber `q` (192.0.2.10) with `rules`, for the far-end summary's tests.
fn summary_policy(rules: Vec<PccRuleSpec>) -> SubscriberPolicy {
    SubscriberPolicy::compile(SubscriberPccSpec {
        name: "q".into(),
        addresses: vec![v4(192, 0, 2, 10, 32)],
        vprn_addresses: Vec::new(),
        rules,
    })
    .unwrap()
}

/// The key of a UDP packet from [`SUB4`] to `dst` port 80.
fn upstream_key(dst: Ipv4Addr) -> PacketKey {
    let mut key = PacketKey::default();
    key.read_ipv4(&udp(SUB4.into(), dst.into(), 80, 8));
    key
}

#[test]
fn far_summary_leaves_only_the_entries_whose_far_prefix_covers_the_packet() {
    // Seven rules towards 203.0.i.0/24, then one towards anywhere, then one more than the
    // summary covers (always a candidate, so not in its bits).
    let mut rules: Vec<PccRuleSpec> = (0..9u8)
        .map(|i| {
            let flow = IpMatch {
                dst: (i != 7).then(|| v4(203, 0, i, 0, 24)),
                ..IpMatch::default()
            };
            rule(
                &format!("r{i}"),
                Direction::Ingress,
                u32::from(i),
                vec![flow],
            )
        })
        .collect();
    rules.push(rule("e", Direction::Egress, 0, vec![IpMatch::default()]));
    let policy = summary_policy(rules);
    let key = upstream_key;
    let (ingress, egress) = (
        policy.line(Direction::Ingress),
        policy.line(Direction::Egress),
    );
    let elsewhere = key(Ipv4Addr::new(198, 18, 0, 1));
    assert_eq!(ingress.candidates4(&elsewhere, Direction::Ingress), 1 << 7);
    let third = key(Ipv4Addr::new(203, 0, 3, 9));
    let candidates = ingress.candidates4(&third, Direction::Ingress);
    assert_eq!(candidates, 1 << 3 | 1 << 7);
    let entries = ingress.entries4();
    assert_eq!(entries.len(), 9);
    assert_eq!(classify4_among(entries, &third, candidates), Some(3));
    // The one egress entry, any address.
    assert_eq!(egress.entries4().len(), 1);
    assert_eq!(egress.candidates4(&third, Direction::Egress), 1);
}

#[test]
fn far_summary_keeps_a_prefix_longer_than_24_bits_as_its_24() {
    // 203.0.3.16/28 and 203.0.4.0/26: summarised as 203.0.3.0/24 and 203.0.4.0/24.
    let rules = [v4(203, 0, 3, 16, 28), v4(203, 0, 4, 0, 26)]
        .into_iter()
        .enumerate()
        .map(|(i, dst)| {
            let flow = IpMatch {
                dst: Some(dst),
                ..IpMatch::default()
            };
            rule(&format!("r{i}"), Direction::Ingress, i as u32, vec![flow])
        })
        .collect();
    let policy = summary_policy(rules);
    let line = policy.line(Direction::Ingress);
    let candidates = |dst: Ipv4Addr| {
        let key = upstream_key(dst);
        (line.candidates4(&key, Direction::Ingress), key)
    };
    // Outside the /28 but inside its /24: a candidate that the whole match then refuses.
    let (bits, key) = candidates(Ipv4Addr::new(203, 0, 3, 1));
    assert_eq!(bits, 0b01);
    assert_eq!(classify4_among(line.entries4(), &key, bits), None);
    let (bits, key) = candidates(Ipv4Addr::new(203, 0, 3, 17));
    assert_eq!(bits, 0b01);
    assert_eq!(classify4_among(line.entries4(), &key, bits), Some(0));
    assert_eq!(candidates(Ipv4Addr::new(203, 0, 4, 200)).0, 0b10);
    assert_eq!(candidates(Ipv4Addr::new(203, 0, 5, 1)).0, 0);
}

proptest! {
    /// The far-end summary only rules entries out: the scan among the candidates it leaves
    /// finds the rule the plain first-match scan finds, for any rule set (including more
    /// entries than the summary covers, flows without a far-end prefix and IPv6-only flows).
    #[test]
    fn far_summary_scan_agrees_with_the_plain_scan(
        rules in arb_rules(4, 12),
        packets in proptest::collection::vec(
            (0u8..4, 0u8..8, 0u16..8, any::<bool>(), 0u8..4), 1..32),
    ) {
        let policy = SubscriberPolicy::compile(SubscriberPccSpec {
            name: "q".into(),
            addresses: vec![v4(192, 0, 2, 10, 32)],
            vprn_addresses: Vec::new(),
            rules: arb_rules_spec(rules),
        })
        .unwrap();
        let compiled = policy.compiled().hot();
        for (net, host, port, tcp, dscp) in packets {
            let far = Ipv4Addr::from((u32::from(net) << 30) | (u32::from(host) << 8) | 5);
            for direction in Direction::ALL {
                let (src, dst) = match direction {
                    Direction::Ingress => (SUB4, far),
                    Direction::Egress => (far, SUB4),
                };
                let mut ip = udp(src.into(), dst.into(), 5000 + port, 8);
                if tcp {
                    ip[9] = 6;
                }
                ip[1] = dscp << 2;
                let mut key = PacketKey::default();
                key.read_ipv4(&ip);
                let line = policy.line(direction);
                let entries = line.entries4();
                let candidates = line.candidates4(&key, direction);
                prop_assert_eq!(
                    classify4_among(entries, &key, candidates),
                    compiled.entries().classify(&key, direction)
                );
            }
        }
    }

    #[test]
    fn compiled_classification_agrees_with_the_reference(
        rules in proptest::collection::vec(
            (proptest::collection::vec(arb_flow(), 1..3), 0u32..4, any::<bool>()), 1..8),
        packets in proptest::collection::vec((0u8..4, 0u16..8, any::<bool>(), 0u8..4, any::<bool>()), 1..16),
    ) {
        let spec = SubscriberPccSpec {
            name: "q".into(),
            addresses: vec![v4(192, 0, 2, 10, 32), v6(SUB6, 56)],
            vprn_addresses: Vec::new(),
            rules: arb_rules_spec(rules),
        };
        // "q" gets the list in a block of its own; "s", with an equal list compiled by the
        // same compiler, the shared rules block beside a state block of its own.
        let shared = SubscriberPccSpec {
            name: "s".into(),
            addresses: vec![v4(192, 0, 2, 11, 32), v6(SHARED6, 56)],
            vprn_addresses: Vec::new(),
            rules: spec.rules.clone(),
        };
        let mut compiler = PccCompiler::new();
        let mut stage = PccStage::new(PccDefaults::default());
        for spec in [spec.clone(), shared] {
            stage.install(Arc::new(compiler.compile(spec).unwrap())).unwrap();
        }
        let mut p = pipeline(stage);
        let subscribers: [(&str, IpAddr, IpAddr); 2] = [
            ("q", SUB4.into(), sub6_host().into()),
            ("s", Ipv4Addr::new(192, 0, 2, 11).into(), Ipv6Addr::from(u128::from(SHARED6) | 0x42).into()),
        ];
        for ((net, port, tcp, dscp, v6_packet), (name, near4, near6)) in packets
            .into_iter()
            .flat_map(|packet| subscribers.map(|subscriber| (packet, subscriber)))
        {
            for direction in Direction::ALL {
                let far: IpAddr = if v6_packet {
                    Ipv6Addr::from((u128::from(net) << 124) | 5).into()
                } else {
                    Ipv4Addr::from((u32::from(net) << 30) | 5).into()
                };
                let near = if v6_packet { near6 } else { near4 };
                let (src, dst) = match direction {
                    Direction::Ingress => (near, far),
                    Direction::Egress => (far, near),
                };
                let mut ip = udp(src, dst, 5000 + port, 8);
                if tcp {
                    let at = if v6_packet { 6 } else { 9 };
                    ip[at] = 6;
                }
                if v6_packet {
                    ip[0] = 0x60 | (dscp >> 2);
                    ip[1] = (dscp & 3) << 6;
                } else {
                    ip[1] = dscp << 2;
                }
                let mut key = PacketKey::default();
                if v6_packet { key.read_ipv6(&ip) } else { key.read_ipv4(&ip) }
                let expected = reference(&spec, &key, direction);
                let before = counters(&mut p, name);
                verdicts(&mut p, &[ip], 0);
                let after = counters(&mut p, name);
                let hit: Vec<&str> = after
                    .rules
                    .iter()
                    .zip(before.rules.iter())
                    .filter(|(a, b)| a.forwarded != b.forwarded)
                    .map(|(a, _)| a.name.as_str())
                    .collect();
                prop_assert_eq!(hit, expected.iter().map(String::as_str).collect::<Vec<_>>());
            }
        }
    }
}

proptest! {
    /// A batch of up to 200 packets, of a subscriber with a rule list of its own, of one whose
    /// list is shared, and of no subscriber, in any order and both directions, runs through
    /// the stage's staggered passes as if each packet were alone: every verdict and every
    /// rule's forwarded and dropped count is the reference's.
    #[test]
    fn a_batch_is_decided_packet_by_packet(
        rules in arb_rules(3, 10),
        packets in proptest::collection::vec(
            (0usize..3, 0u8..4, 0u16..8, any::<bool>(), any::<bool>(), any::<bool>()), 1..200),
    ) {
        let mut rules = arb_rules_spec(rules);
        for rule in rules.iter_mut().skip(1).step_by(3) {
            rule.action.disposition = Disposition::Drop;
        }
        let subscribers: [(&str, Ipv4Addr, Ipv6Addr); 3] = [
            ("q", SUB4, sub6_host()),
            ("s", Ipv4Addr::new(192, 0, 2, 11), Ipv6Addr::from(u128::from(SHARED6) | 0x42)),
            ("nobody", Ipv4Addr::new(192, 0, 2, 99), SERVER6),
        ];
        // "q" compiled first keeps the shared bit clear (the distinct path), "s" shares its list.
        let mut compiler = PccCompiler::new();
        let mut stage = PccStage::new(PccDefaults::default());
        for (name, near4, near6) in &subscribers[..2] {
            let spec = SubscriberPccSpec {
                name: (*name).into(),
                addresses: vec![(*near4).into(), (*near6).into()]
                    .into_iter()
                    .map(|addr: IpAddr| crate::acl::Prefix::new(addr, if addr.is_ipv4() { 32 } else { 128 }))
                    .collect(),
                vprn_addresses: Vec::new(),
                rules: rules.clone(),
            };
            stage.install(Arc::new(compiler.compile(spec).unwrap())).unwrap();
        }
        let spec = stage.get("q").unwrap().spec();
        let mut p = pipeline(stage);
        let mut ips = Vec::new();
        let mut expected = Vec::new();
        let mut model: [std::collections::BTreeMap<String, (u64, u64)>; 2] = Default::default();
        for (subscriber, net, port, tcp, egress, v6_packet) in packets {
            let (_, near4, near6) = subscribers[subscriber];
            let (near, far): (IpAddr, IpAddr) = if v6_packet {
                (near6.into(), Ipv6Addr::from((u128::from(net) << 124) | 5).into())
            } else {
                (near4.into(), Ipv4Addr::from((u32::from(net) << 30) | 5).into())
            };
            let direction = if egress { Direction::Egress } else { Direction::Ingress };
            let (src, dst) = if egress { (far, near) } else { (near, far) };
            let mut ip = udp(src, dst, 5000 + port, 8);
            if tcp {
                ip[if v6_packet { 6 } else { 9 }] = 6;
            }
            let mut key = PacketKey::default();
            if v6_packet { key.read_ipv6(&ip) } else { key.read_ipv4(&ip) }
            let hit = model
                .get_mut(subscriber)
                .and_then(|counts| Some((counts, reference(&spec, &key, direction)?)));
            let mut verdict = Verdict::Ignore;
            if let Some((counts, name)) = hit {
                let drops = spec.rules.iter().any(|r| {
                    r.name == name && r.direction == direction && r.action.disposition == Disposition::Drop
                });
                let (forwarded, dropped) = counts.entry(name).or_default();
                *(if drops { dropped } else { forwarded }) += 1;
                if drops {
                    verdict = Verdict::Drop(DropReason::Pcc);
                }
            }
            ips.push(ip);
            expected.push(verdict);
        }
        prop_assert_eq!(verdicts(&mut p, &ips, 0), expected);
        for ((name, _, _), model) in subscribers.iter().zip(&model) {
            let observed: std::collections::BTreeMap<String, (u64, u64)> = counters(&mut p, name)
                .rules
                .into_iter()
                .filter(|r| r.forwarded.packets + r.dropped.packets > 0)
                .map(|r| (r.name, (r.forwarded.packets, r.dropped.packets)))
                .collect();
            prop_assert_eq!(&observed, model);
        }
    }
}

#[test]
fn the_subscriber_pipeline_runs_pcc_right_after_classify() {
    let service = crate::service::ServiceStage::new(Default::default());
    let pcc = Shared::new(PccStage::new(PccDefaults::default()));
    let p = Pipeline::new(vec![], crate::stages::subscriber_stages(service, pcc));
    assert_eq!(
        p.stage_names(),
        vec![
            "service",
            "classify",
            "pcc",
            "cafe-intercept",
            "cafe-forward",
            "ip-handoff"
        ]
    );
}

/// Subscribers with equal rule lists share one compiled copy of them, yet each polices and
/// counts on its own; a different list gets its own copy; the copies go with their policies.
#[test]
fn equal_rule_lists_are_compiled_once_and_police_apart() {
    const BOB: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
    let mut compiler = PccCompiler::new();
    let alice = sr_os_example_service("alice");
    let bob = SubscriberPccSpec {
        addresses: vec![v4(192, 0, 2, 20, 32)],
        vprn_addresses: Vec::new(),
        ..sr_os_example_service("bob")
    };
    let mut carol = SubscriberPccSpec {
        addresses: vec![v4(192, 0, 2, 30, 32)],
        vprn_addresses: Vec::new(),
        ..sr_os_example_service("carol")
    };
    carol.rules[0].action = pir(2_000);
    let alice = Arc::new(compiler.compile(alice).unwrap());
    let bob = Arc::new(compiler.compile(bob).unwrap());
    let carol = Arc::new(compiler.compile(carol).unwrap());
    assert!(alice.shares_rules_with(&bob));
    assert!(!alice.shares_rules_with(&carol));
    // The stage leaves shared rules' lines to the cache, and prefetches a list of one's own.
    assert!(alice.compiled().hot().is_shared());
    assert!(!carol.compiled().hot().is_shared());
    assert_eq!(compiler.shared_rule_lists(), 2);

    let mut stage = PccStage::new(PccDefaults::default());
    for policy in [&alice, &bob, &carol] {
        stage.install(policy.clone()).unwrap();
    }
    let mut p = pipeline(stage);
    // 20 × 1 000 bytes at one instant: far beyond alice's 1 Mb/s bucket (10 ms = 1 250 B).
    let burst: Vec<_> = (0..20)
        .map(|_| udp(SUB4.into(), SERVER.into(), 5001, 972))
        .collect();
    let v = verdicts(&mut p, &burst, SEC);
    assert!(v.contains(&Verdict::Drop(DropReason::Policer)), "{v:?}");
    // Bob's bucket, at the same instant, is untouched by alice's burst.
    let v = verdicts(&mut p, &[udp(BOB.into(), SERVER.into(), 5001, 972)], SEC);
    assert_eq!(v, [Verdict::Ignore]);
    let a = counters(&mut p, "alice");
    let b = counters(&mut p, "bob");
    assert!(rule_counters(&a, "pcc-rule-1-i").dropped.packets > 0);
    assert_eq!(rule_counters(&b, "pcc-rule-1-i").forwarded.packets, 1);
    assert_eq!(rule_counters(&b, "pcc-rule-1-i").dropped.packets, 0);
    assert_eq!(b.ingress.packets, 1);

    // The compiler holds no policy alive: the copies go with the last policy using them.
    drop(p);
    drop((alice, bob, carol));
    assert_eq!(compiler.shared_rule_lists(), 0);
    // A thousand short-lived distinct lists leave a bounded map behind.
    for kbps in 1_000..2_000 {
        let mut spec = sr_os_example_service("dave");
        spec.rules[0].action = pir(kbps);
        drop(compiler.compile(spec).unwrap());
    }
    assert_eq!(compiler.shared_rule_lists(), 0);
    assert!(compiler.held() <= 64, "{}", compiler.held());
}

/// What [`lifecycle_keeps_every_subscribers_state`] does to the stage.
#[derive(Debug, Clone, Copy)]
enum LifeOp {
    /// Install (or replace) a subscriber's policy with one of the test's rule lists.
    Install { subscriber: usize, list: u8 },
    /// Remove a subscriber (its policy is kept by the test for a while).
    Remove { subscriber: usize },
    /// A packet from a subscriber to the server's UDP port 5000 + `port`.
    Send { subscriber: usize, port: u16 },
    /// The test lets go of the removed policies it kept, freeing their arena blocks.
    Forget,
}

fn arb_life_op() -> impl Strategy<Value = LifeOp> {
    prop_oneof![
        (0usize..5, 0u8..4).prop_map(|(subscriber, list)| LifeOp::Install { subscriber, list }),
        (0usize..5).prop_map(|subscriber| LifeOp::Remove { subscriber }),
        (0usize..5, 0u16..10).prop_map(|(subscriber, port)| LifeOp::Send { subscriber, port }),
        (0usize..5, 0u16..10).prop_map(|(subscriber, port)| LifeOp::Send { subscriber, port }),
        Just(LifeOp::Forget),
    ]
}

/// Rule list `list` of subscriber `subscriber`: lists 0 and 1 are the same for every
/// subscriber (one compiled copy, shared), lists 2 and 3 differ per subscriber (a first rule
/// with a prefix of its own that the test's packets never match), so shared and distinct
/// lists are installed side by side. Rules are named `r0`, `r1`, … in every list (3 to 6 of
/// them, so that the rules' dropped volumes take one or two lines), with port ranges,
/// precedences and actions (forward, drop, a policer that passes everything) that differ
/// between lists, so a replacement carries some rules' state over to rules that now match
/// other packets or act otherwise.
fn life_rules(list: u8, subscriber: usize) -> Vec<PccRuleSpec> {
    let count = 3 + u16::from(list);
    let mut rules: Vec<PccRuleSpec> = (0..count)
        .map(|r| {
            let first = 5000 + r + u16::from(list);
            let precedence = if list.is_multiple_of(2) {
                10 * u32::from(r)
            } else {
                100 - 10 * u32::from(r)
            };
            let mut rule = rule(
                &format!("r{r}"),
                Direction::Ingress,
                precedence,
                vec![flow(|f| {
                    f.protocol = Some(17);
                    f.dst_port = Some(PortRange {
                        first,
                        last: first + 2,
                    });
                })],
            );
            match (r + u16::from(list)) % 3 {
                0 => rule.action = pir(1_000_000),
                1 => rule.action.disposition = Disposition::Drop,
                _ => {}
            }
            rule
        })
        .collect();
    if list >= 2 {
        rules[0]
            .flows
            .push(flow(|f| f.dst = Some(v4(10, 200, subscriber as u8, 0, 24))));
    }
    rules
}

fn life_address(subscriber: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 100 + subscriber as u8)
}

/// The model's view of one subscriber: its spec, its rules' forwarded and dropped packets,
/// and its aggregate forwarded packets.
#[derive(Debug, Clone)]
struct LifeModel {
    spec: SubscriberPccSpec,
    rules: std::collections::BTreeMap<String, (u64, u64)>,
    ingress: u64,
}

/// A policy's forwarded and dropped packets per rule name, and its ingress aggregate.
type Observed = (std::collections::BTreeMap<String, (u64, u64)>, u64);

fn observed(policy: &SubscriberPolicy) -> Observed {
    let c = policy.counters();
    (
        c.rules
            .iter()
            .map(|r| (r.name.clone(), (r.forwarded.packets, r.dropped.packets)))
            .collect(),
        c.ingress.packets,
    )
}

proptest! {
    /// Subscribers installed, replaced and removed in any order, with shared and distinct rule
    /// lists side by side (their entries, actions and state in arena blocks that are freed
    /// and reused as they go): every packet is counted on the rule the reference picks, every
    /// other subscriber's counters stay as they were, a replacement carries over the state of
    /// the rules it keeps by name, and a removed policy's final counters do not change while
    /// its holder keeps it — whatever takes the blocks freed meanwhile.
    #[test]
    fn lifecycle_keeps_every_subscribers_state(ops in proptest::collection::vec(arb_life_op(), 1..60)) {
        let mut compiler = PccCompiler::new();
        let mut p = pipeline(PccStage::new(PccDefaults::default()));
        let mut model: Vec<Option<LifeModel>> = vec![None; 5];
        let mut removed: Vec<(Arc<SubscriberPolicy>, Observed)> = Vec::new();
        for op in ops {
            match op {
                LifeOp::Install { subscriber, list } => {
                    let spec = SubscriberPccSpec {
                        name: format!("sub{subscriber}"),
                        addresses: vec![v4(192, 0, 2, 100 + subscriber as u8, 32)],
                        vprn_addresses: Vec::new(),
                        rules: life_rules(list, subscriber),
                    };
                    let policy = Arc::new(compiler.compile(spec.clone()).unwrap());
                    let stage = p.stage_mut::<PccStage>().unwrap();
                    stage.install(policy).unwrap();
                    let old = model[subscriber].take();
                    let rules = spec
                        .rules
                        .iter()
                        .map(|r| {
                            let kept = old.as_ref().and_then(|o| o.rules.get(&r.name)).copied();
                            (r.name.clone(), kept.unwrap_or_default())
                        })
                        .collect();
                    let ingress = old.map_or(0, |o| o.ingress);
                    model[subscriber] = Some(LifeModel { spec, rules, ingress });
                }
                LifeOp::Remove { subscriber } => {
                    let stage = p.stage_mut::<PccStage>().unwrap();
                    let gone = stage.remove(&format!("sub{subscriber}"));
                    prop_assert_eq!(gone.is_some(), model[subscriber].is_some());
                    if let (Some(policy), Some(m)) = (gone, model[subscriber].take()) {
                        let last = observed(&policy);
                        prop_assert_eq!(&last, &(m.rules, m.ingress));
                        removed.push((policy, last));
                    }
                }
                LifeOp::Send { subscriber, port } => {
                    let ip = udp(life_address(subscriber).into(), SERVER.into(), 5000 + port, 8);
                    let verdict = verdicts(&mut p, std::slice::from_ref(&ip), 0);
                    let mut expected = Verdict::Ignore;
                    if let Some(m) = model[subscriber].as_mut() {
                        let mut key = PacketKey::default();
                        key.read_ipv4(&ip);
                        let rule = reference(&m.spec, &key, Direction::Ingress);
                        let drops = rule.as_ref().is_some_and(|name| {
                            m.spec.rules.iter().any(|r| {
                                &r.name == name && r.action.disposition == Disposition::Drop
                            })
                        });
                        if let Some(name) = rule {
                            let (forwarded, dropped) = m.rules.get_mut(&name).unwrap();
                            *(if drops { dropped } else { forwarded }) += 1;
                        }
                        if drops {
                            expected = Verdict::Drop(DropReason::Pcc);
                        } else {
                            m.ingress += 1;
                        }
                    }
                    prop_assert_eq!(verdict, [expected]);
                }
                LifeOp::Forget => removed.clear(),
            }
            let stage = p.stage_mut::<PccStage>().unwrap();
            for (subscriber, m) in model.iter().enumerate() {
                let name = format!("sub{subscriber}");
                match m {
                    Some(m) => {
                        let policy = stage.get(&name).unwrap();
                        prop_assert_eq!(observed(policy), (m.rules.clone(), m.ingress));
                    }
                    None => prop_assert!(stage.get(&name).is_none()),
                }
            }
            for (policy, last) in &removed {
                prop_assert_eq!(&observed(policy), last);
            }
        }
    }
}

/// One IPv4 UDP packet from `src` to `dst`, 100 IP octets, as `enforce` takes it.
fn ip_packet(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    build::ipv4_udp(src, dst, 1000, 2000, &[0; 72])
}

/// Addresses in VPRNs are unique per VPRN: the same prefix is one subscriber's in VPRN 100,
/// another's in VPRN 200 and a third's in the base instance, each packet meets the rules of
/// the owner in its interface's instance, and a policy that moves or drops its VPRN
/// addresses takes them out of the old instance.
#[test]
fn vprn_addresses_are_owned_and_matched_per_routing_instance() {
    let host = v4(10, 72, 0, 2, 32);
    let in_vprn =
        |name: &str, vprn: crate::service::ServiceId, action: PccAction| SubscriberPccSpec {
            name: name.into(),
            addresses: Vec::new(),
            vprn_addresses: vec![VprnPrefix { vprn, prefix: host }],
            rules: vec![PccRuleSpec {
                action,
                ..rule(
                    "all",
                    Direction::Ingress,
                    1,
                    vec![flow(|f| f.protocol = Some(17))],
                )
            }],
        };
    let drop = PccAction {
        disposition: Disposition::Drop,
        ..PccAction::default()
    };
    let mut stage = PccStage::new(PccDefaults::default());
    let policy = |spec| Arc::new(SubscriberPolicy::compile(spec).unwrap());
    stage.install(policy(in_vprn("ann", 100, drop))).unwrap();
    stage
        .install(policy(in_vprn("ben", 200, PccAction::default())))
        .unwrap();
    let mut base = in_vprn("cy", 0, drop);
    base.vprn_addresses.clear();
    base.addresses = vec![host];
    stage.install(policy(base)).unwrap();
    // A second owner of the prefix in VPRN 100 is refused, naming the instance.
    assert_eq!(
        stage
            .install(policy(in_vprn("dee", 100, PccAction::default())))
            .unwrap_err(),
        PccError::AddressOwned {
            subscriber: "dee".into(),
            instance: RoutingInstance::Vprn(100),
            prefix: host,
            owner: "ann".into(),
        }
    );

    let src = Ipv4Addr::new(10, 72, 0, 2);
    let dst = Ipv4Addr::new(10, 72, 0, 1);
    let send = |stage: &mut PccStage, instance| {
        stage.enforce(Direction::Ingress, instance, &mut ip_packet(src, dst), 1)
    };
    assert_eq!(
        send(&mut stage, RoutingInstance::Vprn(100)),
        Err(DropReason::Pcc)
    );
    assert_eq!(send(&mut stage, RoutingInstance::Vprn(200)), Ok(()));
    assert_eq!(
        send(&mut stage, RoutingInstance::Base),
        Err(DropReason::Pcc)
    );
    assert_eq!(send(&mut stage, RoutingInstance::Vprn(300)), Ok(()));
    let counted = |stage: &PccStage, name: &str| {
        let counters = stage.get(name).unwrap().counters();
        (counters.rules[0].dropped.packets, counters.ingress.packets)
    };
    assert_eq!(counted(&stage, "ann"), (1, 0));
    assert_eq!(counted(&stage, "ben"), (0, 1));
    assert_eq!(counted(&stage, "cy"), (1, 0));
    assert_eq!(stage.stats().unknown_forwarded, 1);

    // Ann moves to VPRN 300: VPRN 100's address is nobody's, VPRN 300's is hers.
    stage.install(policy(in_vprn("ann", 300, drop))).unwrap();
    assert_eq!(send(&mut stage, RoutingInstance::Vprn(100)), Ok(()));
    assert_eq!(
        send(&mut stage, RoutingInstance::Vprn(300)),
        Err(DropReason::Pcc)
    );
    assert_eq!(stage.stats().unknown_forwarded, 2);
    // Removed, her VPRN's index goes with her last address.
    stage.remove("ann");
    assert_eq!(send(&mut stage, RoutingInstance::Vprn(300)), Ok(()));
    assert_eq!(stage.stats().unknown_forwarded, 3);
    assert_eq!(stage.vprn_instances(), [200]);
}
