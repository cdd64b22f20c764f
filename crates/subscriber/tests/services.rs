//! Subscriber services in the record: activation and deactivation as one all-or-nothing call,
//! creation of a logged-out subscriber for an Access-Accept, and what a login, a logout and a
//! replacement do to them.

#[path = "support/store_conformance.rs"]
mod store_conformance;

use brasa_subscriber::*;
use brasa_subsvc::{ServiceError, ServiceRequest, TypeConflictAction};
use store_conformance::service;

fn index() -> SubscriberIndex {
    SubscriberIndex::new(IndexConfig {
        domains: vec!["subscribers".into(), "north".into()],
        name_case: NameCase::Insensitive,
    })
    .unwrap()
}

fn add(name: &str, conflict: TypeConflictAction) -> ServiceRequest {
    ServiceRequest::Add(service(name, conflict))
}

fn names(index: &SubscriberIndex, subscriber: &str) -> Vec<String> {
    let sub = index.get(subscriber).unwrap();
    sub.services.iter().map(|s| s.name.clone()).collect()
}

fn logged_in(index: &mut SubscriberIndex, name: &str, ip: &str) {
    index
        .login(Login {
            name: name.into(),
            mappings: vec![ip.parse().unwrap()],
            ..Login::default()
        })
        .unwrap();
}

#[test]
fn an_unknown_subscriber_is_refused_unless_the_call_may_create_it() {
    let mut idx = index();
    let none = TypeConflictAction::None;
    assert_eq!(
        idx.apply_services("alice", None, vec![add("a", none)]),
        Err(IndexError::UnknownSubscriber("alice".into()))
    );
    assert!(idx.is_empty());
    assert!(matches!(
        idx.apply_services("alice", Some("west"), vec![add("a", none)]),
        Err(IndexError::UnknownDomain(_))
    ));
    assert!(matches!(
        idx.apply_services("bad\"name", Some("north"), vec![add("a", none)]),
        Err(IndexError::InvalidName { .. })
    ));
    // The Access-Accept path: the accounting Start that logs alice in comes later.
    let changes = idx
        .apply_services("Alice", Some("north"), vec![add("a", none)])
        .unwrap();
    let sub = changes.subscribers[0].new.clone().unwrap();
    assert_eq!(sub.name.as_str(), "alice", "the name rules apply");
    assert_eq!(sub.domain, "north");
    assert!(!sub.logged_in);
    assert_eq!(names(&idx, "alice"), ["a"]);
    // The login keeps them; the EP sees the subscriber with its services.
    logged_in(&mut idx, "alice", "127.0.0.9");
    let sub = idx.get("alice").unwrap();
    assert!(sub.logged_in);
    assert_eq!(names(&idx, "alice"), ["a"]);
    assert_eq!(sub.domain, "north");
}

#[test]
fn one_call_applies_all_of_its_requests_or_none() {
    let mut idx = index();
    logged_in(&mut idx, "bob", "127.0.0.2");
    idx.apply_services("bob", None, vec![add("old", TypeConflictAction::None)])
        .unwrap();
    let before = idx.get("bob").unwrap();
    // The second request conflicts with "old" (same type, keep-old): the first is not
    // applied either.
    let refused = idx.apply_services(
        "bob",
        None,
        vec![
            add("extra", TypeConflictAction::None),
            add("new", TypeConflictAction::KeepOld),
        ],
    );
    assert_eq!(
        refused,
        Err(IndexError::ServiceRefused {
            subscriber: "bob".into(),
            request: 1,
            source: ServiceError::TypeConflict {
                new: "new".into(),
                service_type: "pccrule".into(),
                active: "old".into(),
            },
        })
    );
    assert_eq!(idx.get("bob").unwrap(), before);
    // keep-new replaces every service of the type, in one change of the record.
    let changes = idx
        .apply_services(
            "bob",
            None,
            vec![
                add("extra", TypeConflictAction::None),
                add("new", TypeConflictAction::KeepNew),
            ],
        )
        .unwrap();
    assert_eq!(changes.subscribers.len(), 1);
    assert_eq!(names(&idx, "bob"), ["new"]);
    // Deactivating one that is not active changes nothing.
    let missing = ServiceRequest::Delete { name: "old".into() };
    assert!(matches!(
        idx.apply_services("bob", None, vec![missing]),
        Err(IndexError::ServiceRefused {
            source: ServiceError::NotActive(_),
            ..
        })
    ));
    let delete = ServiceRequest::Delete { name: "new".into() };
    idx.apply_services("bob", None, vec![delete]).unwrap();
    assert!(idx.get("bob").unwrap().services.is_empty());
}

#[test]
fn a_logout_clears_the_services_and_the_record_stays() {
    let mut idx = index();
    for (name, ip) in [
        ("carol", "127.0.0.3"),
        ("dave", "127.0.0.4"),
        ("erin", "127.0.0.5"),
    ] {
        logged_in(&mut idx, name, ip);
        idx.apply_services(name, None, vec![add("s", TypeConflictAction::None)])
            .unwrap();
    }
    idx.logout("carol", None).unwrap();
    idx.logout_by_mapping(&"127.0.0.4".parse().unwrap())
        .unwrap();
    for name in ["carol", "dave"] {
        let sub = idx.get(name).unwrap();
        assert!(!sub.logged_in, "{name}");
        assert!(sub.services.is_empty(), "{name}");
    }
    // A re-login (an Interim-Update) keeps them.
    logged_in(&mut idx, "erin", "127.0.0.5");
    assert_eq!(names(&idx, "erin"), ["s"]);
    let changes = idx.remove("erin").unwrap();
    assert_eq!(changes.subscribers[0].new, None);
}

#[test]
fn a_record_given_whole_is_checked_like_activations() {
    let mut idx = index();
    let mut sub = Subscriber::new(SubscriberName::new("frank", NameCase::Insensitive).unwrap());
    // Two services holding one rule name (a record can be given whole, e.g. as JSON): the
    // upsert is refused and creates nothing.
    let mut twin = service("twin", TypeConflictAction::None);
    twin.rules[0].name = "a-i".into();
    let a = service("a", TypeConflictAction::None);
    sub.services = serde_json::from_value(serde_json::json!([a, twin])).unwrap();
    assert!(matches!(
        idx.upsert(sub.clone()),
        Err(IndexError::ServiceRefused {
            request: 1,
            source: ServiceError::RuleNameInUse { .. },
            ..
        })
    ));
    assert!(idx.is_empty());
    // A keep-new service with one of its type activated after it is a state activations
    // reach: accepted as given.
    sub.services = serde_json::from_value(serde_json::json!([
        service("new", TypeConflictAction::KeepNew),
        service("b", TypeConflictAction::None),
    ]))
    .unwrap();
    idx.upsert(sub.clone()).unwrap();
    assert_eq!(idx.get("frank").unwrap().services, sub.services);
}
