//! Activation, type-conflict actions, deactivation, logout, the counter rule.

use brasa_subsvc::*;

fn rule(name: &str, direction: Direction, account: bool) -> PccRule {
    let mut rule = PccRule::new(name, direction);
    rule.flows.push(Flow {
        dst_ip: Some("10.1.1.0/24".parse().unwrap()),
        ..Flow::default()
    });
    rule.actions.account = account;
    rule
}

fn service(
    name: &str,
    service_type: Option<&str>,
    action: TypeConflictAction,
) -> SubscriberService {
    let mut service = SubscriberService::new(name);
    service.service_type = service_type.map(String::from);
    service.type_conflict_action = action;
    service
        .rules
        .push(rule(&format!("{name}-rule"), Direction::Ingress, false));
    service
}

fn names(services: &SubscriberServices) -> Vec<&str> {
    services.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn keep_old_refuses_the_new_service_and_changes_nothing() {
    let mut services = SubscriberServices::new();
    services
        .activate(service("old", Some("rate"), TypeConflictAction::None))
        .unwrap();
    let before = services.clone();
    let error = services
        .activate(service("new", Some("rate"), TypeConflictAction::KeepOld))
        .unwrap_err();
    assert_eq!(
        error,
        ServiceError::TypeConflict {
            new: "new".into(),
            service_type: "rate".into(),
            active: "old".into()
        }
    );
    assert_eq!(services, before);
    // Another type does not conflict.
    services
        .activate(service("other", Some("video"), TypeConflictAction::KeepOld))
        .unwrap();
    assert_eq!(names(&services), ["old", "other"]);
}

#[test]
fn keep_new_replaces_every_active_service_of_the_type() {
    let mut services = SubscriberServices::new();
    for name in ["a", "b"] {
        services
            .activate(service(name, Some("rate"), TypeConflictAction::None))
            .unwrap();
    }
    services
        .activate(service("c", Some("video"), TypeConflictAction::None))
        .unwrap();
    let new = service("d", Some("rate"), TypeConflictAction::KeepNew);
    let changes = services.activate(new.clone()).unwrap();
    let deactivated: Vec<_> = changes
        .iter()
        .filter_map(|c| match c {
            ServiceChange::Deactivated { service, cause } => Some((service.name.as_str(), cause)),
            _ => None,
        })
        .collect();
    let by_d = DeactivationCause::ReplacedBy("d".into());
    assert_eq!(deactivated, [("a", &by_d), ("b", &by_d)]);
    assert_eq!(
        changes.last(),
        Some(&ServiceChange::Activated(std::sync::Arc::new(new)))
    );
    assert_eq!(names(&services), ["c", "d"]);
}

#[test]
fn none_and_untyped_services_live_side_by_side() {
    let mut services = SubscriberServices::new();
    services
        .activate(service("a", Some("rate"), TypeConflictAction::None))
        .unwrap();
    services
        .activate(service("b", Some("rate"), TypeConflictAction::None))
        .unwrap();
    services
        .activate(service("c", None, TypeConflictAction::KeepNew))
        .unwrap();
    services
        .activate(service("d", None, TypeConflictAction::KeepOld))
        .unwrap();
    assert_eq!(names(&services), ["a", "b", "c", "d"]);
}

#[test]
fn names_are_keys_and_rule_names_unique_per_subscriber() {
    let mut services = SubscriberServices::new();
    let a = service("a", None, TypeConflictAction::None);
    services.activate(a.clone()).unwrap();
    // The same service again (a retransmission) changes nothing.
    assert_eq!(services.activate(a.clone()), Ok(Vec::new()));
    let mut other = a.clone();
    other.acct_interval = Some(600);
    assert_eq!(
        services.activate(other),
        Err(ServiceError::NameInUse("a".into()))
    );
    let mut clash = service("b", None, TypeConflictAction::None);
    clash.rules[0].name = "a-rule".into();
    assert_eq!(
        services.activate(clash).unwrap_err().to_string(),
        "PCC rule \"a-rule\" of subscriber service \"b\" is already applied by \"a\": a rule name is unique per subscriber"
    );
    // Replacing the service that holds the name frees it.
    let mut replacement = service("b", Some("t"), TypeConflictAction::KeepNew);
    replacement.rules[0].name = "a-rule".into();
    services
        .activate(service("x", Some("t"), TypeConflictAction::None))
        .unwrap();
    assert!(services.activate(replacement.clone()).is_err());
    let mut holder = SubscriberServices::new();
    let mut a_typed = a;
    a_typed.service_type = Some("t".into());
    holder.activate(a_typed).unwrap();
    holder.activate(replacement).unwrap();
    assert_eq!(names(&holder), ["b"]);
}

#[test]
fn dynamic_policers_are_limited_per_subscriber_and_direction() {
    let mut services = SubscriberServices::new();
    for s in 0..7 {
        let mut svc = SubscriberService::new(format!("s{s}"));
        svc.rules = (0..9)
            .map(|r| rule(&format!("s{s}r{r}"), Direction::Egress, true))
            .collect();
        services.activate(svc).unwrap();
    }
    let mut last = SubscriberService::new("last");
    last.rules.push(rule("last-rule", Direction::Egress, true));
    assert!(matches!(
        services.activate(last.clone()),
        Err(ServiceError::TooManyPolicers { count: 64, .. })
    ));
    last.rules[0].direction = Direction::Ingress;
    services.activate(last).unwrap();
}

#[test]
fn deactivation_and_logout() {
    let mut services = SubscriberServices::new();
    services
        .activate(service("a", None, TypeConflictAction::None))
        .unwrap();
    services
        .activate(service("b", None, TypeConflictAction::None))
        .unwrap();
    assert_eq!(
        services.deactivate("zz"),
        Err(ServiceError::NotActive("zz".into()))
    );
    let change = services.deactivate("a").unwrap();
    assert!(matches!(
        change,
        ServiceChange::Deactivated { ref service, cause: DeactivationCause::Requested } if service.name == "a"
    ));
    let changes = services.clear();
    assert_eq!(changes.len(), 1);
    assert!(services.is_empty());
}

#[test]
fn a_message_applies_all_of_its_requests_or_none() {
    let mut services = SubscriberServices::new();
    services
        .activate(service("a", None, TypeConflictAction::None))
        .unwrap();
    let before = services.clone();
    let refused = services.apply_all([
        ServiceRequest::Add(service("b", None, TypeConflictAction::None)),
        ServiceRequest::Delete {
            name: "nope".into(),
        },
    ]);
    assert_eq!(refused, Err((1, ServiceError::NotActive("nope".into()))));
    assert_eq!(services, before);
    let changes = services
        .apply_all([
            ServiceRequest::Delete { name: "a".into() },
            ServiceRequest::Add(service("b", None, TypeConflictAction::None)),
        ])
        .unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(names(&services), ["b"]);
    // The stored form round-trips.
    let json = serde_json::to_string(&services).unwrap();
    assert_eq!(
        serde_json::from_str::<SubscriberServices>(&json).unwrap(),
        services
    );
}

struct Readings {
    rules: Vec<(&'static str, Counter)>,
    aggregate: Volume,
}

impl CounterSource for Readings {
    fn rule_forwarded(&self, rule: &PccRule) -> Counter {
        self.rules
            .iter()
            .find(|(name, _)| *name == rule.name)
            .map(|(_, c)| *c)
            .unwrap_or_default()
    }
    fn subscriber_forwarded(&self) -> Volume {
        self.aggregate
    }
}

fn counter(octets: u64, packets: u64) -> Counter {
    Counter { octets, packets }
}

#[test]
fn the_counter_rule_sums_the_accounted_rules_policers() {
    let mut svc = SubscriberService::new("s");
    svc.rules = vec![
        rule("i", Direction::Ingress, true),
        rule("e", Direction::Egress, false),
        rule("e2", Direction::Egress, true),
        rule("i2", Direction::Ingress, true),
    ];
    let readings = Readings {
        rules: vec![
            ("i", counter(100, 1)),
            ("e", counter(1_000_000, 1000)),
            ("e2", counter(300, 3)),
            ("i2", counter(50, 5)),
        ],
        aggregate: Volume {
            ingress: counter(9_999, 99),
            egress: counter(9_999, 99),
        },
    };
    assert_eq!(CounterRule::of(&svc), CounterRule::AccountedRules);
    let volume = service_volume(&svc, &readings, Volume::default());
    assert_eq!(
        volume,
        Volume {
            ingress: counter(150, 6),
            egress: counter(300, 3)
        }
    );
}

#[test]
fn without_accounted_rules_the_counter_rule_takes_the_aggregate_since_the_start() {
    let mut svc = SubscriberService::new("s");
    svc.rules = vec![rule("i", Direction::Ingress, false)];
    let at_start = Volume {
        ingress: counter(1000, 10),
        egress: counter(5000, 50),
    };
    let readings = Readings {
        rules: vec![("i", counter(77, 7))],
        aggregate: Volume {
            ingress: counter(1500, 15),
            egress: counter(9000, 90),
        },
    };
    assert_eq!(CounterRule::of(&svc), CounterRule::SubscriberAggregate);
    assert_eq!(
        service_volume(&svc, &readings, at_start),
        Volume {
            ingress: counter(500, 5),
            egress: counter(4000, 40)
        }
    );
}

mod invariants {
    use super::*;
    use proptest::prelude::*;

    /// A request over a small space of names, types, rule names and policer counts, so that
    /// conflicts of every kind occur.
    fn request() -> impl Strategy<Value = ServiceRequest> {
        let add = (
            0u8..6,
            proptest::option::of(0u8..2),
            prop_oneof![
                Just(TypeConflictAction::None),
                Just(TypeConflictAction::KeepOld),
                Just(TypeConflictAction::KeepNew)
            ],
            proptest::collection::vec((0u8..8, any::<bool>(), 0usize..40), 1..3),
        )
            .prop_map(|(name, service_type, action, rules)| {
                let mut service = SubscriberService::new(format!("s{name}"));
                service.service_type = service_type.map(|t| format!("t{t}"));
                service.type_conflict_action = action;
                for (rule_name, egress, policed) in rules {
                    let direction = if egress {
                        Direction::Egress
                    } else {
                        Direction::Ingress
                    };
                    let name = format!("r{rule_name}");
                    if service.rules.iter().any(|r| r.name == name) {
                        continue;
                    }
                    // A rule stands for `policed` policed rules (names r<n>.<k>) in bulk.
                    for k in 0..policed.max(1) {
                        service
                            .rules
                            .push(rule(&format!("{name}.{k}"), direction, policed > 0));
                    }
                }
                ServiceRequest::Add(service)
            });
        let delete = (0u8..6).prop_map(|n| ServiceRequest::Delete {
            name: format!("s{n}"),
        });
        prop_oneof![3 => add, 1 => delete]
    }

    proptest! {
        #[test]
        fn refusals_change_nothing_and_the_limits_always_hold(
            requests in proptest::collection::vec(request(), 1..30)
        ) {
            let mut services = SubscriberServices::new();
            for request in requests {
                let before = services.clone();
                let mut activated_now = false;
                match services.apply(request.clone()) {
                    Err(_) => prop_assert_eq!(&services, &before),
                    Ok(changes) => {
                        activated_now = changes.iter().any(|c| matches!(c, ServiceChange::Activated(_)));
                        for change in &changes {
                            match change {
                                ServiceChange::Activated(s) => prop_assert!(services.get(&s.name).is_some()),
                                ServiceChange::Deactivated { service, .. } => {
                                    prop_assert!(before.get(&service.name).is_some());
                                    prop_assert!(services.get(&service.name).is_none());
                                }
                            }
                        }
                    }
                }
                let mut rule_names: Vec<&str> = services
                    .iter()
                    .flat_map(|s| s.rules.iter().map(|r| r.name.as_str()))
                    .collect();
                let count = rule_names.len();
                rule_names.sort_unstable();
                rule_names.dedup();
                prop_assert_eq!(rule_names.len(), count, "rule names unique per subscriber");
                for direction in [Direction::Ingress, Direction::Egress] {
                    let policers = services
                        .iter()
                        .flat_map(|s| &s.rules)
                        .filter(|r| r.direction == direction && r.has_policer())
                        .count();
                    prop_assert!(policers <= model::MAX_POLICERS_PER_DIRECTION);
                }
                // A keep-new activation leaves it the only active service of its type.
                if let ServiceRequest::Add(new) = &request {
                    if new.type_conflict_action == TypeConflictAction::KeepNew && activated_now {
                        let same_type = services
                            .iter()
                            .filter(|s| new.service_type.is_some() && s.service_type == new.service_type)
                            .count();
                        prop_assert!(same_type <= 1);
                    }
                }
            }
        }
    }
}
