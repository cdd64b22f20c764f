//! Subscriber services as the SM's protobuf messages: model → protobuf → model is the
//! identity over every field (valid or not: the conversion carries, the SM validates), the
//! wire bytes included; what the model cannot hold is refused with the field.

use brasa_sm::pb;
use brasa_sm::service_proto::{
    request_from_proto, request_to_proto, service_from_proto, service_to_proto,
    services_from_proto, services_to_proto,
};
use brasa_subsvc::*;
use proptest::prelude::*;
use prost::Message;

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9-]{0,8}", "[ -~é\"\\\\]{0,6}"]
}

fn arb_net() -> impl Strategy<Value = ipnet::IpNet> {
    // Host bits are kept: the conversion carries what it is given.
    prop_oneof![
        (any::<[u8; 4]>(), 0u8..=32)
            .prop_map(|(a, len)| ipnet::Ipv4Net::new(a.into(), len).unwrap().into()),
        (any::<[u8; 16]>(), 0u8..=128)
            .prop_map(|(a, len)| ipnet::Ipv6Net::new(a.into(), len).unwrap().into()),
    ]
}

fn arb_ports() -> impl Strategy<Value = PortRange> {
    (any::<u16>(), any::<u16>()).prop_map(|(first, last)| PortRange { first, last })
}

fn arb_dscp() -> impl Strategy<Value = Dscp> {
    (0u8..64).prop_map(|d| Dscp::new(d).unwrap())
}

fn arb_flow() -> impl Strategy<Value = Flow> {
    (
        proptest::option::of(arb_net()),
        proptest::option::of(arb_net()),
        proptest::option::of(any::<u8>()),
        proptest::option::of(arb_ports()),
        proptest::option::of(arb_ports()),
        proptest::option::of(arb_dscp()),
    )
        .prop_map(
            |(src_ip, dst_ip, protocol, src_port, dst_port, dscp)| Flow {
                src_ip,
                dst_ip,
                protocol,
                src_port,
                dst_port,
                dscp,
            },
        )
}

fn arb_burst() -> impl Strategy<Value = BurstSize> {
    prop_oneof![
        Just(BurstSize::Default),
        any::<u32>().prop_map(BurstSize::Bytes)
    ]
}

const STAT_MODES: [&str; 10] = [
    "no-stats",
    "minimal",
    "offered-profile-no-cir",
    "offered-priority-no-cir",
    "offered-profile-cir",
    "offered-priority-cir",
    "offered-total-cir",
    "offered-limited-profile-cir",
    "offered-profile-capped-cir",
    "offered-limited-capped-cir",
];

fn arb_policer() -> impl Strategy<Value = PolicerOverrides> {
    (
        proptest::option::of(arb_text()),
        proptest::option::of(any::<u8>()),
        proptest::option::of(any::<u8>()),
        proptest::option::of(arb_burst()),
        proptest::option::of(arb_burst()),
        proptest::option::of(proptest::sample::select(&STAT_MODES[..])),
        proptest::option::of(any::<i8>()),
    )
        .prop_map(
            |(parent_arbiter, parent_level, parent_weight, mbs, cbs, stat_mode, offset)| {
                PolicerOverrides {
                    parent_arbiter,
                    parent_level,
                    parent_weight,
                    mbs,
                    cbs,
                    stat_mode: stat_mode.map(|name| StatMode::from_name(name).unwrap()),
                    packet_byte_offset: offset,
                }
            },
        )
}

fn arb_actions() -> impl Strategy<Value = Actions> {
    (
        any::<bool>(),
        proptest::option::of((any::<u32>(), proptest::option::of(any::<u32>()))),
        any::<bool>(),
        proptest::option::of(arb_dscp()),
    )
        .prop_map(|(drop, limit, account, remark_dscp)| Actions {
            gate: if drop { Gate::Drop } else { Gate::Forward },
            rate_limit: limit.map(|(pir_kbps, cir_kbps)| RateLimit { pir_kbps, cir_kbps }),
            account,
            remark_dscp,
        })
}

fn arb_rule() -> impl Strategy<Value = PccRule> {
    (
        arb_text(),
        any::<bool>(),
        proptest::option::of(any::<u32>()),
        proptest::collection::vec(arb_flow(), 0..3),
        arb_actions(),
        proptest::option::of(arb_policer()),
    )
        .prop_map(
            |(name, egress, precedence, flows, actions, policer)| PccRule {
                name,
                direction: if egress {
                    Direction::Egress
                } else {
                    Direction::Ingress
                },
                precedence,
                flows,
                actions,
                policer,
            },
        )
}

fn arb_service() -> impl Strategy<Value = SubscriberService> {
    (
        arb_text(),
        proptest::option::of(arb_text()),
        0u8..3,
        0u8..3,
        proptest::option::of(any::<u32>()),
        proptest::collection::vec(arb_rule(), 0..3),
    )
        .prop_map(
            |(name, service_type, conflict, stats, acct_interval, rules)| SubscriberService {
                name,
                service_type,
                type_conflict_action: [
                    TypeConflictAction::None,
                    TypeConflictAction::KeepOld,
                    TypeConflictAction::KeepNew,
                ][usize::from(conflict)],
                acct_stats_type: [
                    AcctStatsType::Off,
                    AcctStatsType::VolumeTime,
                    AcctStatsType::Time,
                ][usize::from(stats)],
                acct_interval,
                rules,
            },
        )
}

proptest! {
    #[test]
    fn a_service_survives_protobuf_and_its_wire_form(service in arb_service()) {
        let proto = service_to_proto(&service);
        let wire = pb::SubscriberService::decode(&*proto.encode_to_vec()).unwrap();
        prop_assert_eq!(&wire, &proto);
        prop_assert_eq!(service_from_proto(wire).unwrap(), service);
    }

    #[test]
    fn services_and_requests_survive_protobuf(
        services in proptest::collection::vec(arb_service(), 0..3),
        deleted in arb_text(),
    ) {
        let services: SubscriberServices = services.into_iter().collect();
        prop_assert_eq!(&services_from_proto(services_to_proto(&services)).unwrap(), &services);
        for request in services
            .iter()
            .cloned()
            .map(ServiceRequest::Add)
            .chain([ServiceRequest::Delete { name: deleted.clone() }])
        {
            prop_assert_eq!(request_from_proto(request_to_proto(&request)).unwrap(), request);
        }
    }
}

/// A change to a valid service's message.
type Edit = dyn Fn(&mut pb::SubscriberService);

#[test]
fn what_the_model_cannot_hold_is_refused_with_the_field() {
    let mut rule = PccRule::new("r", Direction::Ingress);
    rule.flows.push(Flow {
        dst_ip: Some("10.1.1.0/24".parse().unwrap()),
        ..Flow::default()
    });
    let mut service = SubscriberService::new("s");
    service.rules.push(rule);
    let good = service_to_proto(&service);
    let refused = |edit: &Edit| {
        let mut proto = good.clone();
        edit(&mut proto);
        service_from_proto(proto).unwrap_err().message
    };
    let cases: [(&Edit, &str); 7] = [
        (
            &|p| p.acct_stats_type = 3,
            "service \"s\": acct_stats_type = 3",
        ),
        (&|p| p.rules[0].direction = 2, "rule \"r\": direction = 2"),
        (
            &|p| p.rules[0].flows[0].dst_ip = Some("10.1.1.0".into()),
            "flow 1: dst_ip",
        ),
        (
            &|p| p.rules[0].flows[0].protocol = Some(256),
            "protocol = 256",
        ),
        (&|p| p.rules[0].flows[0].dscp = Some(64), "dscp = 64"),
        (
            &|p| {
                p.rules[0].flows[0].src_port = Some(pb::PortRange {
                    first: 1,
                    last: 65_536,
                })
            },
            "src_port = 65536",
        ),
        (
            &|p| {
                p.rules[0].policer = Some(pb::PolicerOverrides {
                    packet_byte_offset: Some(200),
                    ..pb::PolicerOverrides::default()
                })
            },
            "packet_byte_offset = 200",
        ),
    ];
    for (edit, expected) in cases {
        let message = refused(edit);
        assert!(message.contains(expected), "{expected:?} in {message:?}");
    }
    // A request says what it is.
    let empty = request_from_proto(pb::ServiceRequest { request: None }).unwrap_err();
    assert!(empty.message.contains("add"), "{}", empty.message);
}
