//! A subscriber as the PCC stage enforces it: its addresses from its Subscriber Manager
//! record, the rules of its active services (brasa-subsvc's model) as brasa-dataplane's
//! plain [`SubscriberPccSpec`]. This is the one place the model meets the data plane's input.

use brasa_dataplane::acl::{Disposition, IpFamily, IpMatch, PortRange, Prefix};
use brasa_dataplane::pcc::{
    Direction, PccAction, PccCompiler, PccPolicer, PccRuleSpec, SubscriberPccSpec,
    SubscriberPolicy, VprnPrefix,
};
use brasa_dataplane::service::ServiceId;
use brasa_subscriber::Subscriber;
use brasa_subsvc::{BurstSize, Flow, Gate, PccRule, SubscriberService, SubscriberServices};
use ipnet::IpNet;
use std::collections::BTreeMap;

/// Where the data plane holds each Subscriber Manager VPN: the VPRN service whose routing
/// instance it is (`[dataplane.subscribers.vpns]`).
pub type VpnInstances = BTreeMap<String, ServiceId>;

/// The addresses of a subscriber the data plane can match, by routing instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    /// In the global address space (the base routing instance).
    pub base: Vec<Prefix>,
    /// In VPRNs: its mappings in the VPNs that `vpns` places, each with its VPN's name (two
    /// VPNs may share a VPRN, so the name is not derivable from the VPRN).
    pub vprn: Vec<(String, VprnPrefix)>,
    /// The VPNs of its mappings that no VPRN holds (not enforced), once each.
    pub unplaced_vpns: Vec<String>,
}

impl Addresses {
    /// Every prefix with where it is, as `show` prints it: `10.0.0.1/32`, `10.9.9.9/32@vpn1`.
    pub fn display(&self) -> Vec<String> {
        self.base
            .iter()
            .map(Prefix::to_string)
            .chain(
                self.vprn
                    .iter()
                    .map(|(vpn, p)| format!("{}@{vpn}", p.prefix)),
            )
            .collect()
    }
}

/// Appends `item` unless `list` holds it already.
fn push_once<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// The addresses of `subscriber` the data plane can match: its mappings in the global
/// address space, and those in a VPN that `vpns` maps to a VPRN (matched on that VPRN's IP
/// interfaces only); prefixes as they are and ranges as the prefixes covering them. Mappings
/// in other VPNs (and the ranges the BGP LEG learnt in them) are left out. A prefix is kept
/// once per routing instance (two VPNs in one VPRN are one address space).
pub fn addresses(subscriber: &Subscriber, vpns: &VpnInstances) -> Addresses {
    let mut out = Addresses::default();
    for mapping in &subscriber.mappings {
        let vprn = match mapping.vpn.as_deref() {
            None => None,
            Some(vpn) => match vpns.get(vpn) {
                Some(&vprn) => Some((vpn, vprn)),
                None => {
                    push_once(&mut out.unplaced_vpns, vpn.to_string());
                    continue;
                }
            },
        };
        for prefix in mapping.ip.prefixes() {
            let prefix = match prefix {
                brasa_subscriber::Prefix::V4(addr, len) => Prefix::new(addr, len),
                brasa_subscriber::Prefix::V6(addr, len) => Prefix::new(addr, len),
            };
            match vprn {
                None => push_once(&mut out.base, prefix),
                Some((vpn, vprn)) => {
                    let prefix = VprnPrefix { vprn, prefix };
                    if !out.vprn.iter().any(|(_, held)| *held == prefix) {
                        out.vprn.push((vpn.to_string(), prefix));
                    }
                }
            }
        }
    }
    out
}

/// The data plane's name of a service's rule: unique per subscriber, since service names
/// are, and the rule's counters and policer follow it across changes of the other services.
pub fn rule_name(service: &str, rule: &str) -> String {
    format!("{service}/{rule}")
}

/// The spec of subscriber `name` owning `addresses` with `services` active.
pub fn spec<'a>(
    name: &str,
    addresses: &Addresses,
    services: impl IntoIterator<Item = &'a SubscriberService>,
) -> SubscriberPccSpec {
    SubscriberPccSpec {
        name: name.to_string(),
        addresses: addresses.base.clone(),
        vprn_addresses: addresses.vprn.iter().map(|(_, prefix)| *prefix).collect(),
        rules: services
            .into_iter()
            .flat_map(|service| {
                service
                    .rules
                    .iter()
                    .map(|rule| rule_spec(&service.name, rule))
            })
            .collect(),
    }
}

/// One PCC rule. A rule without precedence comes after every rule that has one (SR OS), so
/// it gets the largest.
fn rule_spec(service: &str, rule: &PccRule) -> PccRuleSpec {
    let actions = &rule.actions;
    let overrides = rule.policer.clone().unwrap_or_default();
    let bytes = |burst: Option<BurstSize>| match burst {
        Some(BurstSize::Bytes(bytes)) => Some(u64::from(bytes)),
        Some(BurstSize::Default) | None => None,
    };
    PccRuleSpec {
        name: rule_name(service, &rule.name),
        direction: direction(rule.direction),
        precedence: rule.precedence.unwrap_or(u32::MAX),
        flows: rule.flows.iter().map(flow).collect(),
        action: PccAction {
            disposition: match actions.gate {
                Gate::Forward => Disposition::Forward,
                Gate::Drop => Disposition::Drop,
            },
            rate_limit: actions.rate_limit.map(|limit| PccPolicer {
                pir_kbps: u64::from(limit.pir_kbps),
                cir_kbps: u64::from(limit.cir_kbps.unwrap_or(0)),
                mbs: bytes(overrides.mbs),
                cbs: bytes(overrides.cbs),
                packet_byte_offset: i16::from(overrides.packet_byte_offset.unwrap_or(0)),
            }),
            account: actions.account,
            remark_dscp: actions.remark_dscp.map(|dscp| dscp.value()),
        },
    }
}

/// The data plane's direction of a rule's (they mean the same: ingress is from the
/// subscriber).
pub fn direction(direction: brasa_subsvc::Direction) -> Direction {
    match direction {
        brasa_subsvc::Direction::Ingress => Direction::Ingress,
        brasa_subsvc::Direction::Egress => Direction::Egress,
    }
}

fn prefix(net: IpNet) -> Prefix {
    Prefix::new(net.addr(), net.prefix_len())
}

/// One flow. A flow without addresses matches both families, as in the model.
fn flow(flow: &Flow) -> IpMatch {
    let port = |range: brasa_subsvc::PortRange| PortRange {
        first: range.first,
        last: range.last,
    };
    IpMatch {
        family: flow.src_ip.or(flow.dst_ip).map(|net| match net {
            IpNet::V4(_) => IpFamily::V4,
            IpNet::V6(_) => IpFamily::V6,
        }),
        src: flow.src_ip.map(prefix),
        dst: flow.dst_ip.map(prefix),
        protocol: flow.protocol,
        src_port: flow.src_port.map(port),
        dst_port: flow.dst_port.map(port),
        dscp: flow.dscp.map(|dscp| dscp.value()),
        icmp_type: None,
    }
}

/// A service the data plane refused although the SM accepted it: left out, never half
/// installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The service instance.
    pub service: String,
    /// Why.
    pub reason: String,
}

/// Compiles subscriber `name` through `compiler` (which shares the compiled rules of equal
/// service sets): all its services together, and when that fails, every service that
/// compiles on its own. A service refused on its own is left out; when the survivors still
/// fail together (more rules than a subscriber can have), the subscriber is installed without
/// rules and every service is refused. Either way the subscriber's addresses are enforced.
pub fn compile(
    compiler: &mut PccCompiler,
    name: &str,
    addresses: &Addresses,
    services: &SubscriberServices,
) -> Result<(SubscriberPolicy, Vec<Refused>), brasa_dataplane::pcc::PccError> {
    if let Ok(policy) = compiler.compile(spec(name, addresses, services.iter())) {
        return Ok((policy, Vec::new()));
    }
    let mut refused = Vec::new();
    let mut kept = Vec::with_capacity(services.len());
    for service in services.iter() {
        match SubscriberPolicy::compile(spec(name, &Addresses::default(), [service])) {
            Ok(_) => kept.push(service),
            Err(error) => refused.push(Refused {
                service: service.name.clone(),
                reason: error.to_string(),
            }),
        }
    }
    match compiler.compile(spec(name, addresses, kept.iter().copied())) {
        Ok(policy) => Ok((policy, refused)),
        Err(error) => {
            // The addresses alone are checked here; only the rule count can fail above.
            let policy = compiler.compile(spec(name, addresses, []))?;
            refused.extend(kept.iter().map(|service| Refused {
                service: service.name.clone(),
                reason: error.to_string(),
            }));
            Ok((policy, refused))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brasa_subsvc::{Actions, Dscp, PolicerOverrides, RateLimit, StatMode, SubscriberService};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    /// The seed's `subsvc-pccrule-1`: 1 Mb/s up to 10.1.1.0/24 (accounted), 5 Mb/s down
    /// from it.
    fn seed_service() -> SubscriberService {
        let mut up = PccRule::new("pcc-rule-1-i", brasa_subsvc::Direction::Ingress);
        up.precedence = Some(10);
        up.flows = vec![Flow {
            dst_ip: Some(net("10.1.1.0/24")),
            ..Flow::default()
        }];
        up.actions = Actions {
            rate_limit: Some(RateLimit {
                pir_kbps: 1000,
                cir_kbps: None,
            }),
            account: true,
            ..Actions::default()
        };
        let mut down = PccRule::new("pcc-rule-1-e", brasa_subsvc::Direction::Egress);
        down.precedence = Some(10);
        down.flows = vec![Flow {
            src_ip: Some(net("10.1.1.0/24")),
            ..Flow::default()
        }];
        down.actions.rate_limit = Some(RateLimit {
            pir_kbps: 5000,
            cir_kbps: None,
        });
        let mut service = SubscriberService::new("subsvc-pccrule-1");
        service.rules = vec![up, down];
        service
    }

    #[test]
    fn the_seed_service_maps_to_two_rate_limited_rules_named_by_service() {
        let spec = spec(
            "alice",
            &base(vec![Prefix::new(Ipv4Addr::new(192, 0, 2, 1), 32)]),
            [&seed_service()],
        );
        assert_eq!(spec.rules.len(), 2);
        let up = &spec.rules[0];
        assert_eq!(up.name, "subsvc-pccrule-1/pcc-rule-1-i");
        assert_eq!(up.direction, Direction::Ingress);
        assert_eq!(up.precedence, 10);
        assert_eq!(
            up.flows,
            [IpMatch {
                family: Some(IpFamily::V4),
                dst: Some(Prefix::new(Ipv4Addr::new(10, 1, 1, 0), 24)),
                ..IpMatch::default()
            }]
        );
        assert_eq!(
            up.action,
            PccAction {
                disposition: Disposition::Forward,
                rate_limit: Some(PccPolicer {
                    pir_kbps: 1000,
                    cir_kbps: 0,
                    mbs: None,
                    cbs: None,
                    packet_byte_offset: 0,
                }),
                account: true,
                remark_dscp: None,
            }
        );
        let down = &spec.rules[1];
        assert_eq!(down.name, "subsvc-pccrule-1/pcc-rule-1-e");
        assert_eq!(down.direction, Direction::Egress);
        assert_eq!(down.action.rate_limit.map(|p| p.pir_kbps), Some(5000));
        assert!(!down.action.account);
        SubscriberPolicy::compile(spec).expect("the data plane takes it");
    }

    #[test]
    fn flows_ports_dscp_overrides_remark_drop_and_missing_precedence() {
        let mut rule = PccRule::new("web6", brasa_subsvc::Direction::Egress);
        rule.flows = vec![
            Flow {
                src_ip: Some(net("2001:db8::/32")),
                protocol: Some(6),
                src_port: Some("80".parse().unwrap()),
                dst_port: Some("1024-65535".parse().unwrap()),
                ..Flow::default()
            },
            Flow {
                dscp: Some(Dscp::new(46).unwrap()),
                ..Flow::default()
            },
        ];
        rule.actions = Actions {
            rate_limit: Some(RateLimit {
                pir_kbps: 2000,
                cir_kbps: Some(500),
            }),
            remark_dscp: Some(Dscp::new(10).unwrap()),
            ..Actions::default()
        };
        rule.policer = Some(PolicerOverrides {
            parent_arbiter: Some("root".into()),
            parent_level: Some(2),
            parent_weight: Some(50),
            mbs: Some(BurstSize::Bytes(30_000)),
            cbs: Some(BurstSize::Default),
            stat_mode: Some(StatMode::Minimal),
            packet_byte_offset: Some(-4),
        });
        let mut blocked = PccRule::new("block", brasa_subsvc::Direction::Ingress);
        blocked.precedence = Some(1);
        blocked.flows = vec![Flow {
            dst_ip: Some(net("203.0.113.0/24")),
            ..Flow::default()
        }];
        blocked.actions.gate = Gate::Drop;
        let mut service = SubscriberService::new("mixed");
        service.rules = vec![rule, blocked];
        let spec = spec(
            "bob",
            &base(vec![Prefix::new(Ipv6Addr::LOCALHOST, 128)]),
            [&service],
        );
        let web = &spec.rules[0];
        assert_eq!(web.precedence, u32::MAX, "no precedence: after every other");
        assert_eq!(
            web.flows[0],
            IpMatch {
                family: Some(IpFamily::V6),
                src: Some(Prefix::new("2001:db8::".parse::<Ipv6Addr>().unwrap(), 32)),
                protocol: Some(6),
                src_port: Some(PortRange::single(80)),
                dst_port: Some(PortRange {
                    first: 1024,
                    last: 65535
                }),
                ..IpMatch::default()
            }
        );
        assert_eq!(
            web.flows[1],
            IpMatch {
                dscp: Some(46),
                ..IpMatch::default()
            },
            "no address: both families"
        );
        assert_eq!(
            web.action.rate_limit,
            Some(PccPolicer {
                pir_kbps: 2000,
                cir_kbps: 500,
                mbs: Some(30_000),
                cbs: None,
                packet_byte_offset: -4,
            })
        );
        assert_eq!(web.action.remark_dscp, Some(10));
        let block = &spec.rules[1];
        assert_eq!(block.precedence, 1);
        assert_eq!(block.action.disposition, Disposition::Drop);
        assert_eq!(block.action.rate_limit, None);
        SubscriberPolicy::compile(spec).expect("the data plane takes it");
    }

    fn base(prefixes: Vec<Prefix>) -> Addresses {
        Addresses {
            base: prefixes,
            ..Addresses::default()
        }
    }

    #[test]
    fn addresses_are_the_mappings_by_routing_instance_with_ranges_as_prefixes() {
        let mut subscriber = Subscriber::new(
            brasa_subscriber::SubscriberName::new("carol", brasa_subscriber::NameCase::Sensitive)
                .unwrap(),
        );
        subscriber.mappings = [
            "192.0.2.1",
            "10.0.0.0-10.0.0.2",
            "2001:db8::/64",
            "10.9.9.9@vpn1",
            "10.9.9.0/30@vpn2",
            "10.9.9.8@vpn3",
            "10.9.9.9@vpn3",
        ]
        .iter()
        .map(|text| text.parse().unwrap())
        .collect();
        let global = [
            Prefix::new(Ipv4Addr::new(192, 0, 2, 1), 32),
            Prefix::new(Ipv4Addr::new(10, 0, 0, 0), 31),
            Prefix::new(Ipv4Addr::new(10, 0, 0, 2), 32),
            Prefix::new("2001:db8::".parse::<Ipv6Addr>().unwrap(), 64),
        ];
        // No VPN placed: only the global mappings, and the VPNs named once each.
        let unplaced = addresses(&subscriber, &VpnInstances::new());
        assert_eq!(unplaced.base, global);
        assert!(unplaced.vprn.is_empty());
        assert_eq!(unplaced.unplaced_vpns, ["vpn1", "vpn2", "vpn3"]);
        // vpn1 and vpn2 are VPRNs 100 and 200; vpn3 stays out.
        let vpns: VpnInstances = [("vpn1".to_string(), 100), ("vpn2".to_string(), 200)]
            .into_iter()
            .collect();
        let placed = addresses(&subscriber, &vpns);
        assert_eq!(placed.base, global);
        let in_vprn = |vprn, a, b, c, d, len| VprnPrefix {
            vprn,
            prefix: Prefix::new(Ipv4Addr::new(a, b, c, d), len),
        };
        assert_eq!(
            placed.vprn,
            [
                ("vpn1".to_string(), in_vprn(100, 10, 9, 9, 9, 32)),
                ("vpn2".to_string(), in_vprn(200, 10, 9, 9, 0, 30)),
            ]
        );
        assert_eq!(placed.unplaced_vpns, ["vpn3"]);
        assert_eq!(
            placed.display()[4..],
            ["10.9.9.9/32@vpn1", "10.9.9.0/30@vpn2"]
        );
        let spec = spec("carol", &placed, []);
        assert_eq!(spec.addresses, global);
        assert_eq!(
            spec.vprn_addresses,
            [in_vprn(100, 10, 9, 9, 9, 32), in_vprn(200, 10, 9, 9, 0, 30)]
        );
        // vpn3 shares VPRN 100 with vpn1: its own address shows under its name, and the
        // address both map in that VPRN is held once (one address space).
        let shared: VpnInstances = [("vpn1".to_string(), 100), ("vpn3".to_string(), 100)]
            .into_iter()
            .collect();
        let placed = addresses(&subscriber, &shared);
        assert_eq!(
            placed.display()[4..],
            ["10.9.9.9/32@vpn1", "10.9.9.8/32@vpn3"]
        );
        assert_eq!(placed.unplaced_vpns, ["vpn2"]);
    }

    #[test]
    fn subscribers_with_the_same_services_share_their_compiled_rules() {
        let mut services = SubscriberServices::new();
        services.activate(seed_service()).unwrap();
        let mut compiler = PccCompiler::new();
        let mut policy = |name: &str, last: u8| {
            let address = Prefix::new(Ipv4Addr::new(192, 0, 2, last), 32);
            let (policy, refused) =
                compile(&mut compiler, name, &base(vec![address]), &services).unwrap();
            assert!(refused.is_empty(), "{refused:?}");
            policy
        };
        let erin = policy("erin", 1);
        let frank = policy("frank", 2);
        assert!(erin.shares_rules_with(&frank));
        assert_eq!(
            erin.addresses(),
            [Prefix::new(Ipv4Addr::new(192, 0, 2, 1), 32)]
        );
    }

    #[test]
    fn a_service_the_data_plane_refuses_is_left_out_whole() {
        let good = seed_service();
        // A PIR the model takes (32 bits) and the data plane's policer does not (4 Tb/s).
        let mut bad = SubscriberService::new("huge");
        let mut rule = PccRule::new("r", brasa_subsvc::Direction::Ingress);
        rule.flows = vec![Flow {
            protocol: Some(17),
            ..Flow::default()
        }];
        rule.actions.rate_limit = Some(RateLimit {
            pir_kbps: 4_000_000_000,
            cir_kbps: None,
        });
        bad.rules = vec![rule];
        bad.validate().expect("the model takes it");
        let mut services = SubscriberServices::new();
        services.activate(good).unwrap();
        services.activate(bad).unwrap();
        let (policy, refused) = compile(
            &mut PccCompiler::new(),
            "dave",
            &base(vec![Prefix::new(Ipv4Addr::new(192, 0, 2, 9), 32)]),
            &services,
        )
        .unwrap();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].service, "huge");
        let names: Vec<_> = policy.rules().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "subsvc-pccrule-1/pcc-rule-1-i",
                "subsvc-pccrule-1/pcc-rule-1-e"
            ]
        );
    }
}
