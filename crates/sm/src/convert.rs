//! Protobuf messages ↔ core records and operations.
//!
//! Everything arriving from a LEG or an EP is untrusted: each field is parsed with an error that
//! names the field and the offending text, and nothing here panics (fuzzed by
//! `fuzz/fuzz_targets/leg_op.rs`).

use std::net::IpAddr;

use brasa_subscriber::{
    ChangeSet, CommunityMapping, DownstreamLabel, Login, Mapping, MplsVpnEntry, MplsVpnId,
    NameCase, NetworkId, Prefix, Subscriber, SubscriberName, Vpn, VpnKind, DEFAULT_DOMAIN,
};

use crate::op::{Op, SmError};
use crate::pb;

/// Converts one bulk-stream operation.
pub fn op_from_proto(op: pb::LegOp, case: NameCase) -> Result<Op, SmError> {
    use pb::leg_op::Op as P;
    match op.op {
        None => Err(SmError::invalid(
            "the operation is empty (no field of LegOp.op is set)",
        )),
        Some(P::Login(r)) => login_from_proto(r),
        Some(P::Logout(r)) => Ok(Op::Logout {
            name: r.name,
            domain: r.domain,
        }),
        Some(P::LogoutByMapping(r)) => Ok(Op::LogoutByMapping(mapping(&r.mapping, "mapping")?)),
        Some(P::Add(r)) => add_from_proto(r, case),
        Some(P::Remove(r)) => Ok(Op::Remove(r.name)),
        Some(P::SetProperties(r)) => Ok(Op::SetProperties {
            name: r.name,
            properties: properties(r.properties),
        }),
        Some(P::SetState(r)) => Ok(Op::SetState {
            name: r.name,
            state: r.state,
        }),
        Some(P::AddVpn(r)) => {
            let vpn = r
                .vpn
                .ok_or_else(|| SmError::invalid("AddVpn needs a vpn"))?;
            Ok(Op::AddVpn(vpn_from_proto(vpn)?))
        }
        Some(P::RemoveVpn(r)) => Ok(Op::RemoveVpn(r.name)),
        Some(P::SetMplsLabel(r)) => Ok(Op::SetMplsLabel {
            id: mpls_id(&r.mpls_vpn)?,
            label: r.label,
            ranges: prefixes(&r.ranges, "ranges")?,
        }),
        Some(P::RemoveMplsLabel(r)) => Ok(Op::RemoveMplsLabel {
            id: mpls_id(&r.mpls_vpn)?,
            label: r.label,
        }),
        Some(P::AddMplsEntries(r)) => Ok(Op::AddMplsEntries {
            entries: mpls_ids(&r.entries)?,
            vpn: r.vpn,
        }),
        Some(P::RemoveMplsEntries(r)) => Ok(Op::RemoveMplsEntries {
            entries: mpls_ids(&r.entries)?,
            vpn: r.vpn,
        }),
        Some(P::ActivateServices(r)) => activate_services_from_proto(r),
        Some(P::DeactivateServices(r)) => Ok(deactivate_services_from_proto(r)),
    }
}

/// Converts an ActivateServices call (a LEG never creates a subscriber this way).
pub fn activate_services_from_proto(r: pb::ActivateServicesRequest) -> Result<Op, SmError> {
    let requests = r
        .requests
        .into_iter()
        .map(crate::service_proto::request_from_proto)
        .collect::<Result<_, _>>()?;
    Ok(Op::ActivateServices {
        name: r.name,
        create_in: None,
        requests,
    })
}

/// Converts a DeactivateServices call.
pub fn deactivate_services_from_proto(r: pb::DeactivateServicesRequest) -> Op {
    Op::DeactivateServices {
        name: r.name,
        services: r.services,
    }
}

/// Converts an AddSubscriber request (what the BGP LEG learnt is not input).
pub fn add_from_proto(r: pb::AddSubscriberRequest, case: NameCase) -> Result<Op, SmError> {
    let sub = r
        .subscriber
        .ok_or_else(|| SmError::invalid("AddSubscriber needs a subscriber"))?;
    if !sub.learned_mappings.is_empty() {
        return Err(SmError::invalid(
            "learned_mappings are derived by the BGP LEG and cannot be set; give community@VPN network IDs in mappings",
        ));
    }
    Ok(Op::Add {
        subscriber: subscriber_from_proto(sub, case)?,
        replace: r.replace,
    })
}

/// Converts a login event.
pub fn login_from_proto(r: pb::LoginRequest) -> Result<Op, SmError> {
    let (mappings, communities) = network_ids(&r.mappings)?;
    Ok(Op::Login {
        login: Login {
            mappings,
            communities,
            name: r.name,
            domain: r.domain,
            additive: r.additive,
            properties: properties(r.properties),
            auto_logout: None,
        },
        auto_logout_after: r.auto_logout_after_seconds,
    })
}

/// Parses a mapping text (an IP mapping), naming `field` in the error.
pub fn mapping(text: &str, field: &str) -> Result<Mapping, SmError> {
    text.parse()
        .map_err(|e| SmError::invalid(format!("{field} {text:?}: {e}")))
}

/// Parses a list of network IDs into the IP mappings and the `community@VPN` ones, each in
/// order; the error names the position (from 1).
pub fn network_ids(texts: &[String]) -> Result<(Vec<Mapping>, Vec<CommunityMapping>), SmError> {
    let ids = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.parse::<NetworkId>()
                .map_err(|e| SmError::invalid(format!("mapping {} {t:?}: {e}", i + 1)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(brasa_subscriber::mapping::split_network_ids(ids))
}

/// Parses a list of IP mappings (no `community@VPN`); the error names the position (from 1).
pub fn mappings(texts: &[String]) -> Result<Vec<Mapping>, SmError> {
    ip_mappings(texts, "mapping")
}

/// Parses a list of IP mappings, naming `field` and the position in errors.
fn ip_mappings(texts: &[String], field: &str) -> Result<Vec<Mapping>, SmError> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| mapping(t, &format!("{field} {}", i + 1)))
        .collect()
}

fn prefixes(texts: &[String], field: &str) -> Result<Vec<Prefix>, SmError> {
    texts
        .iter()
        .map(|t| {
            t.parse()
                .map_err(|e| SmError::invalid(format!("{field}: {t:?}: {e}")))
        })
        .collect()
}

/// Parses an `RT/RD@PE-IP`.
pub fn mpls_id(text: &str) -> Result<MplsVpnId, SmError> {
    text.parse()
        .map_err(|e| SmError::invalid(format!("MPLS/VPN {text:?}: {e}")))
}

/// Parses a list of `RT/RD@PE-IP`.
pub fn mpls_ids(texts: &[String]) -> Result<Vec<MplsVpnId>, SmError> {
    texts.iter().map(|t| mpls_id(t)).collect()
}

/// Parses an address, naming the field.
pub fn address(text: &str) -> Result<IpAddr, SmError> {
    text.trim()
        .parse()
        .map_err(|_| SmError::invalid(format!("address {text:?} is not an IPv4 or IPv6 address")))
}

fn properties(props: Vec<pb::Property>) -> Vec<(String, String)> {
    props.into_iter().map(|p| (p.key, p.value)).collect()
}

/// A protobuf subscriber as a core record (name validated with `case`; an empty domain is the
/// default domain).
pub fn subscriber_from_proto(s: pb::Subscriber, case: NameCase) -> Result<Subscriber, SmError> {
    let name = SubscriberName::new(&s.name, case)
        .map_err(|e| SmError::invalid(format!("invalid subscriber name {:?}: {e}", s.name)))?;
    let (mappings, communities) = network_ids(&s.mappings)?;
    Ok(Subscriber {
        name,
        domain: if s.domain.is_empty() {
            DEFAULT_DOMAIN.to_owned()
        } else {
            s.domain
        },
        mappings,
        communities,
        learned: ip_mappings(&s.learned_mappings, "learned mapping")?,
        properties: properties(s.properties),
        state: s.state,
        logged_in: s.logged_in,
        auto_logout: s.auto_logout,
        services: crate::service_proto::services_from_proto(s.services)?,
    })
}

/// A core record as protobuf.
pub fn subscriber_to_proto(s: &Subscriber) -> pb::Subscriber {
    pb::Subscriber {
        name: s.name.as_str().to_owned(),
        domain: s.domain.clone(),
        mappings: network_id_texts(s),
        learned_mappings: s.learned.iter().map(Mapping::to_string).collect(),
        properties: s
            .properties
            .iter()
            .map(|(k, v)| pb::Property {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        state: s.state.clone(),
        logged_in: s.logged_in,
        auto_logout: s.auto_logout,
        services: crate::service_proto::services_to_proto(&s.services),
    }
}

/// A core record as protobuf, moving its strings instead of copying them (the full-sync path).
pub fn subscriber_into_proto(s: Subscriber) -> pb::Subscriber {
    pb::Subscriber {
        mappings: network_id_texts(&s),
        learned_mappings: s.learned.iter().map(Mapping::to_string).collect(),
        name: s.name.into_string(),
        domain: s.domain,
        properties: s
            .properties
            .into_iter()
            .map(|(key, value)| pb::Property { key, value })
            .collect(),
        state: s.state,
        logged_in: s.logged_in,
        auto_logout: s.auto_logout,
        services: crate::service_proto::services_to_proto(&s.services),
    }
}

/// The network IDs of a subscriber in text: IP mappings, then `community@VPN`.
pub fn network_id_texts(s: &Subscriber) -> Vec<String> {
    s.mappings
        .iter()
        .map(Mapping::to_string)
        .chain(s.communities.iter().map(CommunityMapping::to_string))
        .collect()
}

/// A protobuf VPN as a core VPN.
pub fn vpn_from_proto(v: pb::Vpn) -> Result<Vpn, SmError> {
    let kind = match v.kind {
        Some(pb::vpn::Kind::Vlan(id)) => {
            let vlan = u16::try_from(id)
                .map_err(|_| SmError::invalid(format!("VLAN-id {id} is outside 1..=4094")))?;
            VpnKind::Vlan(vlan)
        }
        Some(pb::vpn::Kind::Mpls(m)) => {
            let mut entries = Vec::with_capacity(m.entries.len());
            for e in m.entries {
                let mut labels = Vec::with_capacity(e.labels.len());
                for l in e.labels {
                    labels.push(DownstreamLabel {
                        label: l.label,
                        ranges: prefixes(&l.ranges, "label ranges")?,
                    });
                }
                entries.push(MplsVpnEntry {
                    id: mpls_id(&e.id)?,
                    labels,
                    learned_labels: e.learned_labels,
                });
            }
            VpnKind::Mpls(entries)
        }
        None => {
            return Err(SmError::invalid(format!(
                "VPN {:?} needs a vlan or mpls kind",
                v.name
            )))
        }
    };
    Ok(Vpn {
        name: v.name,
        domain: if v.domain.is_empty() {
            DEFAULT_DOMAIN.to_owned()
        } else {
            v.domain
        },
        kind,
    })
}

/// A core VPN as protobuf.
pub fn vpn_to_proto(v: &Vpn) -> pb::Vpn {
    let kind = match &v.kind {
        VpnKind::Vlan(id) => pb::vpn::Kind::Vlan(u32::from(*id)),
        VpnKind::Mpls(entries) => pb::vpn::Kind::Mpls(pb::MplsVpn {
            entries: entries
                .iter()
                .map(|e| pb::MplsEntry {
                    id: e.id.to_string(),
                    labels: e
                        .labels
                        .iter()
                        .map(|l| pb::DownstreamLabel {
                            label: l.label,
                            ranges: l.ranges.iter().map(Prefix::to_string).collect(),
                        })
                        .collect(),
                    learned_labels: e.learned_labels.clone(),
                })
                .collect(),
        }),
    };
    pb::Vpn {
        name: v.name.clone(),
        domain: v.domain.clone(),
        kind: Some(kind),
    }
}

/// A change set as the unary-call reply.
pub fn change_reply(c: &ChangeSet) -> pb::ChangeReply {
    pb::ChangeReply {
        changes: c
            .subscribers
            .iter()
            .map(|s| pb::SubscriberChange {
                name: s.name.as_str().to_owned(),
                old_domain: s.old_domain.clone(),
                subscriber: s.new.as_ref().map(subscriber_to_proto),
            })
            .collect(),
        vpns: c.vpns.iter().map(|v| v.name.clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_fields_are_named() {
        let err = login_from_proto(pb::LoginRequest {
            name: "a".into(),
            mappings: vec!["10.0.0.1".into(), "10.0.0.300".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.message.starts_with("mapping 2 \"10.0.0.300\""), "{err}");
        let err = op_from_proto(pb::LegOp { op: None }, NameCase::Sensitive).unwrap_err();
        assert!(err.message.contains("empty"), "{err}");
        let err = vpn_from_proto(pb::Vpn {
            name: "v".into(),
            domain: String::new(),
            kind: Some(pb::vpn::Kind::Vlan(70000)),
        })
        .unwrap_err();
        assert!(err.message.contains("70000"), "{err}");
    }

    #[test]
    fn records_round_trip() {
        let mut s = Subscriber::new(SubscriberName::new("x", NameCase::Sensitive).unwrap());
        s.mappings = vec!["10.1.0.0/16@7".parse().unwrap()];
        s.properties = vec![("tier".into(), "gold".into())];
        s.auto_logout = Some(9);
        let back = subscriber_from_proto(subscriber_to_proto(&s), NameCase::Sensitive).unwrap();
        assert_eq!(back, s);
    }
}
