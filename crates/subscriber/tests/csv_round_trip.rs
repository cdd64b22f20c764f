//! Export → import is faithful: whatever the index API accepts (names, domains, VPNs of both
//! kinds with their labels, mappings and `community@VPN` network IDs into them, properties whose
//! keys and values hold the CSV's own separators, EP state, login state, subscriber services
//! whose names hold the CSV's and JSON's special characters) comes back identical
//! from a fresh index; and once the fresh index has learnt the same BGP LEG routes, everything
//! derived from them (learnt labels and mappings) is identical too.

use std::io::Cursor;
use std::sync::Arc;

use brasa_subscriber::csv::{export, import, ImportMode};
use brasa_subscriber::*;
use brasa_subsvc::{
    Direction, Flow, PccRule, PolicerOverrides, RateLimit, SubscriberService, SubscriberServices,
};
use proptest::prelude::*;

fn config() -> IndexConfig {
    IndexConfig {
        domains: vec!["subscribers".into(), "north;east".into(), "a,b \\c".into()],
        name_case: NameCase::Sensitive,
    }
}

/// Names as the SM accepts them (printable ASCII without `"`, `'`, backquote; no trailing
/// space), weighted towards the characters the file format gives a meaning to.
fn entity_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ !#-&(-_a-~]{0,12}[!#-&(-_a-~]",
        "[;=,@\\\\ a-c]{0,6}[;=,@\\\\a-c]",
    ]
}

fn property() -> impl Strategy<Value = (String, String)> {
    let key = prop_oneof!["[!-<>-~]{1,10}", "[;,\\\\\"a-b]{1,4}"];
    let value = prop_oneof![
        "\\PC{0,16}",
        "[;=,\"\\\\ a-b]{0,8}",
        Just("http://p/;sid=7".to_owned())
    ];
    (key, value)
}

fn ip_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u8..4, 0u8..4).prop_map(|(a, b)| format!("10.0.{a}.{b}")),
        (0u8..4, 24u8..=30).prop_map(|(a, l)| format!("10.1.{a}.0/{l}")),
        (0u8..4, 1u8..200).prop_map(|(a, n)| format!("10.2.{a}.1-10.2.{a}.{}", 1 + n)),
        (0u16..4).prop_map(|a| format!("2001:db8::{a}")),
        (0u16..4).prop_map(|a| format!("2001:db8:{a}::/48")),
    ]
}

#[derive(Debug, Clone)]
struct VpnPlan {
    name: String,
    domain: usize,
    vlan: Option<u16>,
    labels: Vec<(u32, Vec<String>)>,
    pe: u8,
}

fn vpn_plan() -> impl Strategy<Value = VpnPlan> {
    (
        entity_name(),
        0usize..3,
        proptest::option::of(1u16..4095),
        proptest::collection::vec(
            (
                0u32..20,
                proptest::collection::vec((0u8..8).prop_map(|a| format!("192.0.{a}.0/24")), 0..3),
            ),
            0..3,
        ),
        0u8..4,
    )
        .prop_map(|(name, domain, vlan, labels, pe)| VpnPlan {
            name,
            domain,
            vlan,
            labels,
            pe,
        })
}

#[derive(Debug, Clone)]
struct SubPlan {
    name: String,
    domain: usize,
    /// (address, VPN: none, one of the planned VPNs, or a VLAN-id to create)
    mappings: Vec<(String, Option<Result<usize, u16>>)>,
    /// (community 100:n, one of the planned VPNs)
    communities: Vec<(u16, usize)>,
    properties: Vec<(String, String)>,
    state: Vec<u8>,
    logged_in: bool,
    auto_logout: Option<u64>,
    services: Vec<SubscriberService>,
}

/// Free text for service, type, rule and arbiter names, weighted towards what CSV (`,` `"`
/// `;` `\`) and JSON (`"` `\`, non-ASCII) escape.
fn service_text() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~]{1,8}", r#"[",;\\é ]{1,4}"#]
}

/// Up to three services of one rule each, names made unique by their position.
fn services() -> impl Strategy<Value = Vec<SubscriberService>> {
    let service = (
        service_text(),
        proptest::option::of(service_text()),
        1u32..100_000,
        0u8..4,
        any::<bool>(),
        proptest::option::of(service_text()),
    );
    proptest::collection::vec(service, 0..3).prop_map(|plans| {
        plans
            .into_iter()
            .enumerate()
            .map(|(i, (name, service_type, pir, net, account, arbiter))| {
                let mut service = SubscriberService::new(format!("{name}{i}"));
                service.service_type = service_type;
                service.acct_interval = Some(pir % 4000);
                let direction = if account {
                    Direction::Ingress
                } else {
                    Direction::Egress
                };
                let mut rule = PccRule::new(format!("{name}-rule{i}"), direction);
                rule.precedence = Some(pir % 7);
                rule.flows.push(Flow {
                    dst_ip: Some(format!("10.{net}.0.0/16").parse().unwrap()),
                    ..Flow::default()
                });
                rule.actions.rate_limit = Some(RateLimit {
                    pir_kbps: pir,
                    cir_kbps: None,
                });
                rule.actions.account = account;
                rule.policer = arbiter.map(|arbiter| PolicerOverrides {
                    parent_arbiter: Some(arbiter),
                    ..PolicerOverrides::default()
                });
                service.rules.push(rule);
                service
            })
            .collect()
    })
}

fn sub_plan() -> impl Strategy<Value = SubPlan> {
    let vpn_ref = proptest::option::of(prop_oneof![
        (0usize..6).prop_map(Ok),
        (1u16..4).prop_map(Err)
    ]);
    (
        entity_name(),
        0usize..3,
        proptest::collection::vec((ip_text(), vpn_ref), 0..4),
        proptest::collection::vec((0u16..4, 0usize..6), 0..3),
        proptest::collection::vec(property(), 0..4),
        proptest::collection::vec(any::<u8>(), 0..6),
        any::<bool>(),
        proptest::option::of(0u64..4_000_000_000),
        services(),
    )
        .prop_map(
            |(
                name,
                domain,
                mappings,
                communities,
                properties,
                state,
                logged_in,
                auto_logout,
                services,
            )| {
                SubPlan {
                    name,
                    domain,
                    mappings,
                    communities,
                    properties,
                    state,
                    logged_in,
                    auto_logout,
                    services,
                }
            },
        )
}

/// A BGP LEG route: for the MPLS entry `65000:DOMAIN@192.0.2.PE` of the planned VPNs when
/// (domain, pe) match one, 10.9.A.0/24 or 10.0.A.0/24 (where configured mappings live), a label,
/// communities 100:n.
#[derive(Debug, Clone)]
struct RoutePlan {
    domain: u32,
    pe: u8,
    prefix: String,
    label: u32,
    communities: Vec<u16>,
}

fn route_plan() -> impl Strategy<Value = RoutePlan> {
    (
        0u32..3,
        0u8..4,
        prop_oneof![
            (0u8..4).prop_map(|a| format!("10.9.{a}.0/24")),
            (0u8..4).prop_map(|a| format!("10.0.{a}.0/24"))
        ],
        16u32..20,
        proptest::collection::vec(0u16..4, 0..3),
    )
        .prop_map(|(domain, pe, prefix, label, communities)| RoutePlan {
            domain,
            pe,
            prefix,
            label,
            communities,
        })
}

fn learn_ops(routes: &[RoutePlan]) -> Vec<LearnOp> {
    routes
        .iter()
        .map(|r| {
            LearnOp::Announce(LearnedRoute {
                key: RouteKey {
                    peer: "192.0.2.100".parse().unwrap(),
                    rd: (65000u64 << 32) | u64::from(r.domain),
                    prefix: r.prefix.parse().unwrap(),
                },
                label: r.label,
                attrs: Arc::new(RouteAttributes::new(
                    format!("192.0.2.{}", r.pe).parse().unwrap(),
                    Vec::new(),
                    r.communities
                        .iter()
                        .map(|c| Community::new(100, *c))
                        .collect(),
                )),
            })
        })
        .collect()
}

/// Builds an index through its API; what the API refuses is left out, as it would be.
fn build(vpns: &[VpnPlan], subs: &[SubPlan]) -> SubscriberIndex {
    let cfg = config();
    let mut index = SubscriberIndex::new(cfg.clone()).unwrap();
    for v in vpns {
        let kind = match v.vlan {
            Some(id) => VpnKind::Vlan(id),
            None => VpnKind::Mpls(vec![MplsVpnEntry {
                id: format!("65000:{}@192.0.2.{}", v.domain, v.pe)
                    .parse()
                    .unwrap(),
                labels: Vec::new(),
                learned_labels: Vec::new(),
            }]),
        };
        let vpn = Vpn {
            name: v.name.clone(),
            domain: cfg.domains[v.domain].clone(),
            kind,
        };
        let id = match &vpn.kind {
            VpnKind::Mpls(e) => Some(e[0].id),
            VpnKind::Vlan(_) => None,
        };
        if index.add_vpn(vpn).is_ok() {
            for (label, ranges) in &v.labels {
                if let Some(id) = id {
                    let ranges = ranges.iter().map(|r| r.parse().unwrap()).collect();
                    index.set_mpls_label(id, *label, ranges).unwrap();
                }
            }
        }
    }
    for s in subs {
        let Ok(name) = SubscriberName::new(&s.name, cfg.name_case) else {
            continue;
        };
        let mappings = s
            .mappings
            .iter()
            .map(|(ip, vpn)| {
                let text = match vpn {
                    None => ip.clone(),
                    Some(Ok(i)) => match vpns.get(*i) {
                        Some(v) => format!("{ip}@{}", v.name),
                        None => ip.clone(),
                    },
                    Some(Err(vlan)) => format!("{ip}@{vlan}"),
                };
                text.parse::<Mapping>()
            })
            .collect::<Result<Vec<_>, _>>();
        let Ok(mappings) = mappings else {
            continue;
        };
        let communities = s
            .communities
            .iter()
            .filter_map(|(c, vpn)| {
                format!("100:{c}@{}", vpns.get(*vpn)?.name)
                    .parse::<CommunityMapping>()
                    .ok()
            })
            .collect();
        let mut services = SubscriberServices::new();
        for service in &s.services {
            services.activate(service.clone()).unwrap();
        }
        let _ = index.upsert(Subscriber {
            name,
            domain: cfg.domains[s.domain].clone(),
            mappings,
            communities,
            learned: Vec::new(),
            properties: s.properties.clone(),
            state: s.state.clone(),
            logged_in: s.logged_in,
            auto_logout: s.auto_logout,
            services,
        });
    }
    index
}

fn contents(index: &SubscriberIndex) -> (Vec<Subscriber>, Vec<Vpn>) {
    let mut subs: Vec<Subscriber> = index.iter().collect();
    subs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut vpns: Vec<Vpn> = index.vpns().cloned().collect();
    vpns.sort_by(|a, b| a.name.cmp(&b.name));
    (subs, vpns)
}

/// The contents without what the BGP LEG learnt: what an export carries.
fn configured(index: &SubscriberIndex) -> (Vec<Subscriber>, Vec<Vpn>) {
    let (mut subs, vpns) = contents(index);
    for s in &mut subs {
        s.learned.clear();
    }
    (subs, vpns.iter().map(Vpn::configured).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn export_then_import_gives_the_same_database(
        vpns in proptest::collection::vec(vpn_plan(), 0..6),
        subs in proptest::collection::vec(sub_plan(), 0..12),
        routes in proptest::collection::vec(route_plan(), 0..8),
    ) {
        let mut original = build(&vpns, &subs);
        original.learn(learn_ops(&routes));
        let mut file = Vec::new();
        export(&original, &mut file).unwrap();
        let text = String::from_utf8(file).unwrap();

        let mut fresh = SubscriberIndex::new(config()).unwrap();
        let report = import(&mut fresh, Cursor::new(text.as_bytes()), ImportMode::AllOrNothing, |_| {})
            .unwrap_or_else(|e| panic!("the export does not import: {e}\n{text}"));
        prop_assert_eq!(report.imported, original.len());
        prop_assert_eq!(configured(&fresh), configured(&original), "file:\n{}", text);

        // Exporting the copy writes the same file.
        let mut again = Vec::new();
        export(&fresh, &mut again).unwrap();
        prop_assert_eq!(String::from_utf8(again).unwrap(), text.clone());

        // The same routes give the copy the same learnt labels and mappings.
        fresh.learn(learn_ops(&routes));
        prop_assert_eq!(contents(&fresh), contents(&original), "file:\n{}", text);
    }
}
