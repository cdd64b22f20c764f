//! Validation of services, rules and flows, and the stable JSON form.

use brasa_subsvc::*;
use proptest::prelude::*;

fn flow_dst(prefix: &str) -> Flow {
    Flow {
        dst_ip: Some(prefix.parse().unwrap()),
        ..Flow::default()
    }
}

fn rule(name: &str, direction: Direction) -> PccRule {
    let mut rule = PccRule::new(name, direction);
    rule.flows.push(flow_dst("10.1.1.0/24"));
    rule
}

fn service_with(rules: Vec<PccRule>) -> SubscriberService {
    let mut service = SubscriberService::new("svc");
    service.rules = rules;
    service
}

fn rule_error(rule: PccRule) -> RuleError {
    match service_with(vec![rule]).validate() {
        Err(ValidationError::Rule { error, .. }) => error,
        other => panic!("expected a rule error, got {other:?}"),
    }
}

#[test]
fn the_guides_service_is_valid_and_its_json_is_stable() {
    let mut ingress = rule("pcc-rule-1-i", Direction::Ingress);
    ingress.precedence = Some(10);
    ingress.actions.rate_limit = Some(RateLimit {
        pir_kbps: 1000,
        cir_kbps: None,
    });
    ingress.actions.account = true;
    let mut egress = PccRule::new("pcc-rule-1-e", Direction::Egress);
    egress.precedence = Some(10);
    egress.flows.push(Flow {
        src_ip: Some("10.1.1.0/24".parse().unwrap()),
        ..Flow::default()
    });
    egress.actions.rate_limit = Some(RateLimit {
        pir_kbps: 5000,
        cir_kbps: None,
    });
    let mut service = SubscriberService::new("subsvc-pccrule-1");
    service.service_type = Some("pccrule".into());
    service.acct_stats_type = AcctStatsType::VolumeTime;
    service.acct_interval = Some(3600);
    service.rules = vec![ingress, egress];
    service.validate().unwrap();

    let json = serde_json::to_string(&service).unwrap();
    assert_eq!(
        json,
        r#"{"name":"subsvc-pccrule-1","type":"pccrule","type-conflict-action":"none","acct-stats-type":"volume-time","acct-interval":3600,"rules":[{"name":"pcc-rule-1-i","direction":"ingress","precedence":10,"flows":[{"dst-ip":"10.1.1.0/24"}],"actions":{"gate":"forward","rate-limit":{"pir-kbps":1000},"account":true}},{"name":"pcc-rule-1-e","direction":"egress","precedence":10,"flows":[{"src-ip":"10.1.1.0/24"}],"actions":{"gate":"forward","rate-limit":{"pir-kbps":5000},"account":false}}]}"#
    );
    let back: SubscriberService = serde_json::from_str(&json).unwrap();
    assert_eq!(back, service);
    let request = serde_json::to_string(&ServiceRequest::Delete { name: "x".into() }).unwrap();
    assert_eq!(request, r#"{"operation":"delete","name":"x"}"#);
}

#[test]
fn json_with_unknown_fields_or_bad_values_is_refused() {
    assert!(serde_json::from_str::<SubscriberService>(r#"{"name":"a","colour":1}"#).is_err());
    assert!(serde_json::from_str::<Flow>(r#"{"dscp":64}"#).is_err());
    assert!(serde_json::from_str::<Flow>(r#"{"dst-port":"2-x"}"#).is_err());
    let flow: Flow = serde_json::from_str(r#"{"dst-port":"1000-2000","dscp":46}"#).unwrap();
    assert_eq!(
        flow.dst_port,
        Some(PortRange {
            first: 1000,
            last: 2000
        })
    );
}

#[test]
fn flows_are_checked() {
    let check = |flow: Flow| {
        let mut rule = PccRule::new("r", Direction::Ingress);
        rule.flows.push(flow);
        match rule_error(rule) {
            RuleError::Flow { index: 1, error } => error,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(check(Flow::default()), FlowError::Empty);
    assert!(matches!(
        check(Flow {
            src_ip: Some("10.0.0.0/8".parse().unwrap()),
            dst_ip: Some("2001:db8::/32".parse().unwrap()),
            ..Flow::default()
        }),
        FlowError::MixedFamilies { .. }
    ));
    let host_bits = check(flow_dst("10.1.1.5/24"));
    assert_eq!(
        host_bits.to_string(),
        "prefix 10.1.1.5/24 has host bits set (did you mean 10.1.1.0/24?)"
    );
    assert_eq!(
        check(Flow {
            protocol: Some(1),
            dst_port: Some(PortRange::single(80)),
            ..Flow::default()
        }),
        FlowError::PortsWithoutPortProtocol(1)
    );
    assert!(matches!(
        check(Flow {
            src_port: Some(PortRange { first: 9, last: 1 }),
            ..Flow::default()
        }),
        FlowError::EmptyPortRange(_)
    ));
    // IPv4 and IPv6 flows mix within a rule; a flow without addresses matches both.
    let mut rule = rule("r", Direction::Egress);
    rule.flows.push(flow_dst("2001:db8::/32"));
    rule.flows.push(Flow {
        dscp: Dscp::from_name("ef"),
        ..Flow::default()
    });
    rule.validate().unwrap();
    assert_eq!(rule.flows[1].family(), Some(Family::Ipv6));
    assert_eq!(rule.flows[2].family(), None);
}

#[test]
fn actions_and_policers_are_checked() {
    let mut r = rule("r", Direction::Ingress);
    r.flows.clear();
    assert_eq!(rule_error(r), RuleError::NoFlow);

    let mut r = rule("r", Direction::Ingress);
    r.actions.gate = Gate::Drop;
    r.actions.account = true;
    assert_eq!(rule_error(r), RuleError::DropWithOtherActions);

    let mut r = rule("r", Direction::Ingress);
    r.actions.rate_limit = Some(RateLimit {
        pir_kbps: 1000,
        cir_kbps: Some(2000),
    });
    assert_eq!(
        rule_error(r).to_string(),
        "rate-limit CIR 2000 kb/s is above the PIR 1000 kb/s"
    );

    let mut r = rule("r", Direction::Ingress);
    r.policer = Some(PolicerOverrides {
        mbs: Some(BurstSize::Bytes(10_000)),
        ..PolicerOverrides::default()
    });
    assert_eq!(
        rule_error(r.clone()),
        RuleError::PolicerWithoutRateLimitOrAccount
    );
    r.actions.account = true;
    r.validate().unwrap();
    r.policer.as_mut().unwrap().parent_level = Some(3);
    assert_eq!(rule_error(r.clone()), RuleError::ParentWithoutArbiter);
    let policer = r.policer.as_mut().unwrap();
    policer.parent_arbiter = Some("root".into());
    policer.parent_weight = Some(0);
    assert_eq!(
        rule_error(r.clone()).to_string(),
        "policer parent-weight 0: expected 1..=100"
    );
    let policer = r.policer.as_mut().unwrap();
    policer.parent_weight = Some(50);
    policer.packet_byte_offset = Some(-40);
    assert!(matches!(
        rule_error(r.clone()),
        RuleError::OutOfRange {
            what: "packet-byte-offset",
            ..
        }
    ));
    r.policer.as_mut().unwrap().packet_byte_offset = Some(-4);
    r.validate().unwrap();
    r.policer.as_mut().unwrap().cbs = Some(BurstSize::Bytes((1 << 30) + 1));
    assert_eq!(
        rule_error(r).to_string(),
        "policer cbs 1073741825: expected 0..=1073741824"
    );
}

#[test]
fn services_are_checked() {
    assert_eq!(
        SubscriberService::new("").validate(),
        Err(ValidationError::NoName)
    );
    let service = service_with(vec![
        rule("a", Direction::Ingress),
        rule("a", Direction::Egress),
    ]);
    assert_eq!(
        service.validate(),
        Err(ValidationError::DuplicateRule("a".into()))
    );
    let rules = (0..64)
        .map(|i| {
            let mut r = rule(&format!("r{i}"), Direction::Egress);
            r.actions.account = true;
            r
        })
        .collect();
    assert_eq!(
        service_with(rules).validate(),
        Err(ValidationError::TooManyPolicers {
            direction: Direction::Egress,
            count: 64
        })
    );
    let error = service_with(vec![PccRule::new("", Direction::Ingress)])
        .validate()
        .unwrap_err();
    assert_eq!(error.to_string(), "PCC rule #1: the name is missing");
}

#[test]
fn interim_intervals_are_clamped_as_sr_os_does() {
    let mut service = SubscriberService::new("s");
    assert_eq!(service.interim_interval(None, MIN_ACCT_INTERVAL), None);
    assert_eq!(
        service.interim_interval(Some(600), MIN_ACCT_INTERVAL),
        Some(600)
    );
    service.acct_interval = Some(0);
    assert_eq!(service.interim_interval(Some(600), MIN_ACCT_INTERVAL), None);
    service.acct_interval = Some(10);
    assert_eq!(service.interim_interval(None, MIN_ACCT_INTERVAL), Some(300));
    service.acct_interval = Some(u32::MAX);
    assert_eq!(
        service.interim_interval(None, MIN_ACCT_INTERVAL),
        Some(15_552_000)
    );
}

#[test]
fn a_lower_minimum_lets_short_intervals_through_and_a_huge_one_stops_at_180_days() {
    let mut service = SubscriberService::new("s");
    service.acct_interval = Some(2);
    assert_eq!(service.interim_interval(None, 1), Some(2));
    assert_eq!(service.interim_interval(None, 5), Some(5));
    assert_eq!(service.interim_interval(None, u32::MAX), Some(15_552_000));
    service.acct_interval = Some(0);
    assert_eq!(service.interim_interval(None, 1), None, "0 stays none");
}

#[test]
fn dscp_names() {
    for (name, value) in [
        ("be", 0),
        ("ef", 46),
        ("af11", 10),
        ("AF43", 38),
        ("cs7", 56),
        ("nc1", 48),
    ] {
        assert_eq!(
            Dscp::from_name(name).map(Dscp::value),
            Some(value),
            "{name}"
        );
    }
    for name in ["af14", "af51", "cs8", "x", ""] {
        assert_eq!(Dscp::from_name(name), None, "{name}");
    }
    assert_eq!(Dscp::new(64), None);
}

fn arb_flow() -> impl Strategy<Value = Flow> {
    (
        proptest::option::of((any::<[u8; 4]>(), 0u8..=32)),
        proptest::option::of((any::<[u8; 16]>(), 0u8..=128)),
        proptest::option::of(prop_oneof![Just(6u8), Just(17u8)]),
        proptest::option::of((any::<u16>(), any::<u16>())),
        proptest::option::of(0u8..64),
    )
        .prop_map(|(v4, v6, protocol, ports, dscp)| Flow {
            src_ip: v4.map(|(a, len)| {
                ipnet::IpNet::V4(ipnet::Ipv4Net::new(a.into(), len).unwrap().trunc())
            }),
            dst_ip: v6.filter(|_| v4.is_none()).map(|(a, len)| {
                ipnet::IpNet::V6(ipnet::Ipv6Net::new(a.into(), len).unwrap().trunc())
            }),
            protocol,
            dst_port: ports.map(|(a, b)| PortRange {
                first: a.min(b),
                last: a.max(b),
            }),
            dscp: dscp.and_then(Dscp::new),
            ..Flow::default()
        })
        .prop_filter("a flow needs a criterion", |f| *f != Flow::default())
}

proptest! {
    #[test]
    fn valid_services_survive_json(
        flows in proptest::collection::vec(arb_flow(), 1..4),
        pir in proptest::option::of(1u32..1_000_000),
        account: bool,
        precedence in proptest::option::of(any::<u32>()),
        interval in proptest::option::of(any::<u32>()),
    ) {
        let mut rule = PccRule::new("r", Direction::Ingress);
        rule.flows = flows;
        rule.precedence = precedence;
        rule.actions.rate_limit = pir.map(|pir_kbps| RateLimit { pir_kbps, cir_kbps: Some(pir_kbps / 2) });
        rule.actions.account = account;
        let mut service = service_with(vec![rule]);
        service.acct_interval = interval;
        prop_assert_eq!(service.validate(), Ok(()));
        let json = serde_json::to_string(&service).unwrap();
        let back: SubscriberService = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, service);
    }
}
