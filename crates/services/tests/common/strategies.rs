//! Random batches of changes for property tests: each a few edits that make sense together,
//! over a few services, SAPs, filters and QoS policies, so that most of them apply and many
//! collide. Shared with brasa-services-net's compile tests.

use std::net::IpAddr;

use brasa_services::change::*;
use brasa_services::model::*;
use brasa_services::{Change, MacAddr, SapId};
use ipnet::IpNet;
use proptest::prelude::*;
use proptest::sample::select;

pub fn text() -> impl Strategy<Value = String> {
    select(vec![
        "plain",
        "two words",
        "quotes \" and \\ backslash",
        "# not a comment",
        "exit",
        "no shutdown",
        "ünïcødé ✓",
        "",
    ])
    .prop_map(str::to_owned)
}

pub fn name() -> impl Strategy<Value = String> {
    select(vec!["a", "to cust", "exit", "x\"y", "if-1"]).prop_map(str::to_owned)
}

pub fn filter_ref() -> impl Strategy<Value = FilterRef> {
    (select(FilterKind::ALL.to_vec()), 1u32..4).prop_map(|(kind, id)| FilterRef { kind, id })
}

pub fn qos_ref() -> impl Strategy<Value = QosRef> {
    (
        select(vec![QosKind::SapIngress, QosKind::SapEgress]),
        1u32..3,
    )
        .prop_map(|(kind, id)| QosRef { kind, id })
}

pub fn sap_id() -> impl Strategy<Value = SapId> {
    let tag = prop_oneof![Just("*".to_owned()), (0u16..4).prop_map(|t| t.to_string())];
    (0usize..3, tag.clone(), tag).prop_map(|(port, outer, inner)| {
        let text = match port {
            0 => "eth0".to_owned(),
            1 => format!("eth1:{outer}"),
            _ => format!("eth2:{outer}.{inner}"),
        };
        SapId::parse(&text).unwrap()
    })
}

pub fn prefix() -> impl Strategy<Value = IpNet> {
    select(vec![
        "10.0.0.0/8",
        "192.0.2.0/24",
        "0.0.0.0/0",
        "2001:db8::/32",
        "10.1.2.3/32",
    ])
    .prop_map(|p| p.parse().unwrap())
}

pub fn rate() -> impl Strategy<Value = Rate> {
    prop_oneof![Just(Rate::Max), (0u32..200_000).prop_map(Rate::Kbps)]
}

pub fn policer_setting() -> impl Strategy<Value = PolicerSetting> {
    prop_oneof![
        text().prop_map(|t| PolicerSetting::Description(Some(t))),
        (rate(), rate())
            .prop_map(|(pir, cir)| PolicerSetting::Rate(Some(PolicerRate { pir, cir }))),
        proptest::option::of(0u32..1_000_000).prop_map(PolicerSetting::Mbs),
        proptest::option::of(0u32..1_000_000).prop_map(PolicerSetting::Cbs),
        proptest::option::of(select(MeterMode::ALL.to_vec())).prop_map(PolicerSetting::Mode),
        proptest::option::of(select(StatMode::ALL.to_vec())).prop_map(PolicerSetting::StatMode),
        proptest::option::of(-64i32..32).prop_map(PolicerSetting::PacketByteOffset),
    ]
}

pub fn criterion() -> impl Strategy<Value = MatchSetting> {
    let mac = (any::<[u8; 6]>(), any::<[u8; 6]>()).prop_map(|(a, m)| MacMask {
        addr: MacAddr(a),
        mask: MacAddr(m),
    });
    let tag = (0u16..4096, 0u16..4096).prop_map(|(value, mask)| TagMask { value, mask });
    let port = prop_oneof![
        any::<u16>().prop_map(PortMatch::Eq),
        any::<u16>().prop_map(PortMatch::Lt),
        any::<u16>().prop_map(PortMatch::Gt),
        (any::<u16>(), any::<u16>()).prop_map(|(a, b)| PortMatch::Range(a.min(b), a.max(b))),
    ];
    prop_oneof![
        any::<u8>().prop_map(|p| MatchSetting::Protocol(Some(p))),
        prefix().prop_map(|p| MatchSetting::SrcIp(Some(p))),
        prefix().prop_map(|p| MatchSetting::DstIp(Some(p))),
        port.clone().prop_map(|p| MatchSetting::SrcPort(Some(p))),
        port.prop_map(|p| MatchSetting::DstPort(Some(p))),
        (0u8..64).prop_map(|d| MatchSetting::Dscp(Some(d))),
        any::<u8>().prop_map(|v| MatchSetting::IcmpType(Some(v))),
        any::<u8>().prop_map(|v| MatchSetting::IcmpCode(Some(v))),
        select(FrameType::ALL.to_vec()).prop_map(|t| MatchSetting::FrameType(Some(t))),
        mac.clone().prop_map(|m| MatchSetting::SrcMac(Some(m))),
        mac.prop_map(|m| MatchSetting::DstMac(Some(m))),
        (0x0600u16..=0xffff).prop_map(|e| MatchSetting::Etype(Some(e))),
        tag.clone().prop_map(|t| MatchSetting::OuterTag(Some(t))),
        tag.prop_map(|t| MatchSetting::InnerTag(Some(t))),
    ]
}

pub fn sap_setting() -> impl Strategy<Value = SapSetting> {
    let dir = select(vec![Direction::Ingress, Direction::Egress]);
    prop_oneof![
        text().prop_map(|t| SapSetting::Description(Some(t))),
        Just(SapSetting::Admin(AdminState::Down)),
        (dir.clone(), select(FilterKind::ALL.to_vec()), 1u32..4)
            .prop_map(|(d, k, id)| SapSetting::Filter(d, k, Some(id))),
        (dir, 1u32..3).prop_map(|(d, id)| SapSetting::Qos(d, Some(id))),
        (1u32..1000).prop_map(|n| SapSetting::MaxMacAddresses(Some(n))),
        (0u8..4).prop_map(|n| SapSetting::StaticMac(MacAddr([2, 0, 0, 0, 0, n]), true)),
        any::<bool>().prop_map(SapSetting::DisableLearning),
        any::<bool>().prop_map(SapSetting::DisableAging),
        name().prop_map(|n| SapSetting::DynamicServicesPolicy(Some(n))),
        Just(SapSetting::DynamicServicesAdmin(AdminState::Up)),
    ]
}

pub fn service_setting() -> impl Strategy<Value = ServiceSetting> {
    let gre = (any::<bool>(), proptest::option::of(any::<u32>())).prop_map(|(v6, key)| {
        let (local, remote): (IpAddr, IpAddr) = if v6 {
            (
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
            )
        } else {
            (
                "192.0.2.1".parse().unwrap(),
                "198.51.100.1".parse().unwrap(),
            )
        };
        ServiceSetting::GreTunnel(Some(GreTunnel { local, remote, key }))
    });
    prop_oneof![
        text().prop_map(|t| ServiceSetting::Description(Some(t))),
        Just(ServiceSetting::Admin(AdminState::Up)),
        gre,
        (1u32..600_000).prop_map(|n| ServiceSetting::FdbTableSize(Some(n))),
        (60u32..90_000).prop_map(|n| ServiceSetting::LocalAge(Some(n))),
        select(vec!["65000:1", "192.0.2.1:7", "4200000000:5"])
            .prop_map(|rd| ServiceSetting::RouteDistinguisher(Some(rd.to_owned()))),
    ]
}

/// One batch: a few edits that make sense together.
pub fn batch() -> impl Strategy<Value = Vec<Edit>> {
    let kind = select(vec![
        ServiceKind::Epipe,
        ServiceKind::Vpls,
        ServiceKind::Ies,
        ServiceKind::Vprn,
    ]);
    let service = (4u32..6, kind);
    prop_oneof![
        1 => (filter_ref(), text(), any::<bool>(), any::<bool>()).prop_map(|(filter, t, fwd, vid)| {
            let mut edits = vec![
                Edit::Filter { filter, op: NodeOp::Create },
                Edit::Filter { filter, op: NodeOp::Set(FilterSetting::Description(Some(t))) },
            ];
            if fwd {
                edits.push(Edit::Filter {
                    filter,
                    op: NodeOp::Set(FilterSetting::DefaultAction(Some(Action::Forward))),
                });
            }
            if vid {
                edits.push(Edit::Filter {
                    filter,
                    op: NodeOp::Set(FilterSetting::MacType(MacFilterType::Vid)),
                });
            }
            edits
        }),
        2 => (filter_ref(), 1u32..4, proptest::collection::vec(criterion(), 0..4), any::<bool>())
            .prop_map(|(filter, entry, criteria, drop)| {
                let mut edits = vec![Edit::FilterEntry { filter, entry, op: NodeOp::Create }];
                for c in criteria {
                    edits.push(Edit::FilterEntry {
                        filter,
                        entry,
                        op: NodeOp::Set(EntrySetting::Match(c)),
                    });
                }
                let action = if drop { Action::Drop } else { Action::Forward };
                edits.push(Edit::FilterEntry {
                    filter,
                    entry,
                    op: NodeOp::Set(EntrySetting::Action(Some(action))),
                });
                edits
            }),
        2 => (qos_ref(), 1u32..4, proptest::collection::vec(policer_setting(), 0..4)).prop_map(
            |(policy, policer, settings)| {
                let mut edits = vec![
                    Edit::QosPolicy { policy, op: NodeOp::Enter },
                    Edit::Policer { policy, policer, op: NodeOp::Create },
                ];
                edits.extend(settings.into_iter().map(|s| Edit::Policer {
                    policy,
                    policer,
                    op: NodeOp::Set(s),
                }));
                edits
            }
        ),
        2 => (service.clone(), 1u32..3, proptest::collection::vec(service_setting(), 0..3)).prop_map(
            |((id, kind), customer, settings)| {
                let mut edits = vec![Edit::Service { id, kind, op: ServiceOp::Create { customer } }];
                edits.extend(settings.into_iter().map(|s| Edit::Service {
                    id,
                    kind,
                    op: ServiceOp::Set(s),
                }));
                edits
            }
        ),
        1 => (1u32..4, name()).prop_map(|(service, name)| vec![Edit::SplitHorizonGroup {
            service,
            name,
            op: NodeOp::Create
        }]),
        5 => (
            1u32..4,
            sap_id(),
            proptest::bool::weighted(0.2),
            proptest::option::weighted(0.2, name()),
            proptest::collection::vec(sap_setting(), 0..3)
        )
            .prop_map(|(service, sap, capture, group, settings)| {
                let path = SapPath { service, interface: None, sap };
                let mut edits = vec![Edit::Sap {
                    path: path.clone(),
                    op: SapOp::Create { capture, split_horizon_group: group },
                }];
                edits.extend(settings.into_iter().map(|s| Edit::Sap {
                    path: path.clone(),
                    op: SapOp::Set(s),
                }));
                edits
            }),
        4 => (
            1u32..4,
            name(),
            sap_id(),
            select(vec!["192.0.2.1/24", "10.0.0.1/8", "198.51.100.7/31"]),
            proptest::option::of(select(vec!["2001:db8::1/64", "2001:db8:1::5/48"])),
            proptest::collection::vec(sap_setting(), 0..2),
            any::<bool>(),
        )
            .prop_map(|(service, name, sap, v4, v6, settings, down)| {
                let interface = |op| Edit::Interface { service, name: name.clone(), op };
                let mut edits = vec![
                    interface(NodeOp::Create),
                    interface(NodeOp::Set(InterfaceSetting::Ipv4(Some(v4.parse().unwrap())))),
                ];
                if let Some(v6) = v6 {
                    edits.push(interface(NodeOp::Set(InterfaceSetting::Ipv6(v6.parse().unwrap(), true))));
                }
                if down {
                    edits.push(interface(NodeOp::Set(InterfaceSetting::Admin(AdminState::Down))));
                }
                let path = SapPath { service, interface: Some(name.clone()), sap };
                edits.push(Edit::Sap {
                    path: path.clone(),
                    op: SapOp::Create { capture: false, split_horizon_group: None },
                });
                edits.extend(settings.into_iter().map(|s| Edit::Sap {
                    path: path.clone(),
                    op: SapOp::Set(s),
                }));
                edits
            }),
        2 => (1u32..4, prefix(), select(vec!["192.0.2.9", "10.9.9.9", "2001:db8::9", ""]), any::<bool>())
            .prop_map(|(service, prefix, hop, down)| {
                let route = |op| Edit::StaticRoute { service, prefix, op };
                let mut edits = vec![route(NodeOp::Enter)];
                if hop.is_empty() {
                    edits.push(route(NodeOp::Set(RouteSetting::BlackHole)));
                } else {
                    edits.push(route(NodeOp::Set(RouteSetting::NextHop(hop.parse().unwrap()))));
                }
                if down {
                    edits.push(route(NodeOp::Set(RouteSetting::Admin(AdminState::Down))));
                }
                edits
            }),
        2 => (sap_id(), 1u32..4, select(vec![Direction::Ingress, Direction::Egress]), 1u32..4,
            proptest::collection::vec(policer_setting(), 0..3))
            .prop_map(|(sap, service, dir, policer, settings)| {
                let path = SapPath { service, interface: None, sap };
                let edit = |op| Edit::PolicerOverride { path: path.clone(), dir, policer, op };
                let mut edits = vec![edit(NodeOp::Create)];
                edits.extend(settings.into_iter().map(|s| edit(NodeOp::Set(s))));
                edits
            }),
    ]
}

/// Services 1..=3 of `kinds` and QoS policies 1..=2 of each kind, so that most batches land.
pub fn preamble(kinds: &[ServiceKind]) -> Vec<Change> {
    let mut preamble: Vec<Change> = kinds
        .iter()
        .zip(1u32..)
        .map(|(kind, id)| {
            Change::api(Edit::Service {
                id,
                kind: *kind,
                op: ServiceOp::Create { customer: 1 },
            })
        })
        .collect();
    for kind in [QosKind::SapIngress, QosKind::SapEgress] {
        for id in 1..=2 {
            preamble.push(Change::api(Edit::QosPolicy {
                policy: QosRef { kind, id },
                op: NodeOp::Create,
            }));
        }
    }
    preamble
}

/// The kinds of the preamble's services.
pub fn kinds() -> impl Strategy<Value = Vec<ServiceKind>> {
    proptest::collection::vec(
        select(vec![
            ServiceKind::Epipe,
            ServiceKind::Vpls,
            ServiceKind::Ies,
            ServiceKind::Vprn,
        ]),
        3,
    )
}

/// One batch that takes something away or turns it on or off: deletions, shutdowns, a SAP's
/// filter or QoS policy changed or removed.
pub fn removal() -> impl Strategy<Value = Vec<Edit>> {
    let dir = select(vec![Direction::Ingress, Direction::Egress]);
    let kind = select(vec![
        ServiceKind::Epipe,
        ServiceKind::Vpls,
        ServiceKind::Ies,
        ServiceKind::Vprn,
    ]);
    let admin = select(vec![AdminState::Up, AdminState::Down]);
    let path = || {
        (1u32..4, proptest::option::of(name()), sap_id()).prop_map(|(service, interface, sap)| {
            SapPath {
                service,
                interface,
                sap,
            }
        })
    };
    let sap_set = |path: SapPath, setting| {
        vec![Edit::Sap {
            path,
            op: SapOp::Set(setting),
        }]
    };
    prop_oneof![
        (1u32..6, kind.clone()).prop_map(|(id, kind)| vec![
            Edit::Service {
                id,
                kind,
                op: ServiceOp::Set(ServiceSetting::Admin(AdminState::Down)),
            },
            Edit::Service {
                id,
                kind,
                op: ServiceOp::Delete,
            },
        ]),
        (1u32..6, kind, admin.clone()).prop_map(|(id, kind, admin)| vec![Edit::Service {
            id,
            kind,
            op: ServiceOp::Set(ServiceSetting::Admin(admin)),
        }]),
        path().prop_map(sap_removal),
        (path(), admin).prop_map(move |(path, admin)| sap_set(path, SapSetting::Admin(admin))),
        (path(), dir.clone(), proptest::option::of(1u32..3))
            .prop_map(move |(path, dir, id)| sap_set(path, SapSetting::Qos(dir, id))),
        (
            path(),
            dir,
            select(FilterKind::ALL.to_vec()),
            proptest::option::of(1u32..4)
        )
            .prop_map(move |(path, dir, kind, id)| sap_set(
                path,
                SapSetting::Filter(dir, kind, id)
            )),
        filter_ref().prop_map(|filter| vec![Edit::Filter {
            filter,
            op: NodeOp::Delete,
        }]),
        (filter_ref(), 1u32..4).prop_map(|(filter, entry)| vec![Edit::FilterEntry {
            filter,
            entry,
            op: NodeOp::Delete,
        }]),
        (qos_ref(), 1u32..4).prop_map(|(policy, policer)| vec![Edit::Policer {
            policy,
            policer,
            op: NodeOp::Delete,
        }]),
    ]
}

/// `no sap`, and `no interface` for the SAP of an IP interface.
pub fn sap_removal(path: SapPath) -> Vec<Edit> {
    let mut edits = vec![Edit::Sap {
        path: path.clone(),
        op: SapOp::Delete,
    }];
    if let Some(name) = path.interface {
        edits.push(Edit::Interface {
            service: path.service,
            name,
            op: NodeOp::Delete,
        });
    }
    edits
}
