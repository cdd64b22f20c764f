//! Random operation sequences keep the index consistent: every mapping is owned by the
//! subscriber that lists it, lookups equal a linear longest-prefix scan over all records, and a
//! refused operation changes nothing.

use std::net::{IpAddr, Ipv4Addr};

use brasa_subscriber::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Login {
        who: u8,
        specs: Vec<(u8, u8)>,
        additive: bool,
    },
    Logout(u8),
    Remove(u8),
    LogoutByMapping(u8, u8),
}

fn spec_text(start: u8, kind: u8) -> String {
    let a = start % 16;
    match kind % 4 {
        0 => format!("127.0.0.{a}"),
        1 => format!("127.0.0.{}/30", a & !3),
        2 => format!("127.0.0.{a}-127.0.0.{}", (a + 5).min(15)),
        _ => "127.0.0.0/28".to_string(),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4, proptest::collection::vec((any::<u8>(), any::<u8>()), 0..3), any::<bool>())
            .prop_map(|(who, specs, additive)| Op::Login { who, specs, additive }),
        1 => (0u8..4).prop_map(Op::Logout),
        1 => (0u8..4).prop_map(Op::Remove),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(s, k)| Op::LogoutByMapping(s, k)),
    ]
}

fn check(idx: &SubscriberIndex) -> Result<(), TestCaseError> {
    let subs: Vec<Subscriber> = idx.iter().collect();
    for s in &subs {
        for m in &s.mappings {
            prop_assert_eq!(idx.owner_of(m).unwrap(), Some(s.name.as_str()), "{}", m);
        }
    }
    for host in 0..16u8 {
        let addr = Ipv4Addr::new(127, 0, 0, host);
        let expected = subs
            .iter()
            .flat_map(|s| {
                s.mappings
                    .iter()
                    .flat_map(|m| m.ip.prefixes())
                    .map(move |p| (p, s.name.as_str()))
            })
            .filter(|(p, _)| p.contains(IpAddr::V4(addr)))
            .max_by_key(|(p, _)| p.prefix_len())
            .map(|(_, n)| n);
        prop_assert_eq!(
            idx.lookup(IpAddr::V4(addr), None).unwrap(),
            expected,
            "{}",
            addr
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn random_operations_keep_the_index_consistent(ops in proptest::collection::vec(op(), 1..40)) {
        let mut idx = SubscriberIndex::new(IndexConfig::default()).unwrap();
        for op in ops {
            let before: Vec<Subscriber> = idx.iter().collect();
            let result = match &op {
                Op::Login { who, specs, additive } => idx.login(Login {
                    name: format!("s{who}"),
                    mappings: specs.iter().map(|(a, k)| spec_text(*a, *k).parse().unwrap()).collect(),
                    additive: *additive,
                    ..Login::default()
                }),
                Op::Logout(who) => idx.logout(&format!("s{who}"), None),
                Op::Remove(who) => idx.remove(&format!("s{who}")),
                Op::LogoutByMapping(a, k) => idx.logout_by_mapping(&spec_text(*a, *k).parse().unwrap()),
            };
            match result {
                Ok(changes) => {
                    // The change set carries the post-image of everything it names.
                    for c in &changes.subscribers {
                        prop_assert_eq!(c.new.clone(), idx.get(c.name.as_str()));
                    }
                    // Subscribers not named in the change set did not change.
                    for s in &before {
                        if !changes.subscribers.iter().any(|c| c.name == s.name) {
                            prop_assert_eq!(Some(s.clone()), idx.get(s.name.as_str()));
                        }
                    }
                }
                Err(_) => prop_assert_eq!(idx.iter().collect::<Vec<_>>(), before, "{:?}", op),
            }
            check(&idx)?;
        }
    }
}
