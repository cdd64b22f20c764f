//! Subscriber services (`brasa_subsvc`) as the SM's protobuf messages and back.
//!
//! Model → protobuf cannot fail. Protobuf → model refuses, with the field and what was
//! expected, what the model cannot hold (an unknown enum value, a prefix that is not one, a
//! number past its type); it does not validate the service (the SM does that when it applies
//! it), so a stored service the rules have since tightened still reaches an enforcement
//! point, which decides.

use crate::op::SmError;
use crate::pb;
use brasa_subsvc::{
    AcctStatsType, Actions, BurstSize, Direction, Dscp, Flow, Gate, PccRule, PolicerOverrides,
    PortRange, RateLimit, ServiceRequest, StatMode, SubscriberService, SubscriberServices,
    TypeConflictAction,
};

/// A service as protobuf.
pub fn service_to_proto(service: &SubscriberService) -> pb::SubscriberService {
    pb::SubscriberService {
        name: service.name.clone(),
        r#type: service.service_type.clone(),
        type_conflict_action: match service.type_conflict_action {
            TypeConflictAction::None => pb::TypeConflictAction::None,
            TypeConflictAction::KeepOld => pb::TypeConflictAction::KeepOld,
            TypeConflictAction::KeepNew => pb::TypeConflictAction::KeepNew,
        } as i32,
        acct_stats_type: match service.acct_stats_type {
            AcctStatsType::Off => pb::AcctStatsType::Off,
            AcctStatsType::VolumeTime => pb::AcctStatsType::VolumeTime,
            AcctStatsType::Time => pb::AcctStatsType::Time,
        } as i32,
        acct_interval: service.acct_interval,
        rules: service.rules.iter().map(rule_to_proto).collect(),
    }
}

/// A subscriber's services as protobuf, in activation order.
pub fn services_to_proto(services: &SubscriberServices) -> Vec<pb::SubscriberService> {
    services.iter().map(service_to_proto).collect()
}

/// A service request as protobuf.
pub fn request_to_proto(request: &ServiceRequest) -> pb::ServiceRequest {
    use pb::service_request::Request;
    pb::ServiceRequest {
        request: Some(match request {
            ServiceRequest::Add(service) => Request::Add(service_to_proto(service)),
            ServiceRequest::Delete { name } => Request::Delete(name.clone()),
        }),
    }
}

fn rule_to_proto(rule: &PccRule) -> pb::PccRule {
    let actions = &rule.actions;
    pb::PccRule {
        name: rule.name.clone(),
        direction: direction_to_proto(rule.direction) as i32,
        precedence: rule.precedence,
        flows: rule.flows.iter().map(flow_to_proto).collect(),
        actions: Some(pb::PccActions {
            gate: match actions.gate {
                Gate::Forward => pb::Gate::Forward,
                Gate::Drop => pb::Gate::Drop,
            } as i32,
            rate_limit: actions.rate_limit.map(|limit| pb::RateLimit {
                pir_kbps: limit.pir_kbps,
                cir_kbps: limit.cir_kbps,
            }),
            account: actions.account,
            remark_dscp: actions.remark_dscp.map(|d| u32::from(d.value())),
        }),
        policer: rule.policer.as_ref().map(|p| pb::PolicerOverrides {
            parent_arbiter: p.parent_arbiter.clone(),
            parent_level: p.parent_level.map(u32::from),
            parent_weight: p.parent_weight.map(u32::from),
            mbs: p.mbs.map(burst_to_proto),
            cbs: p.cbs.map(burst_to_proto),
            stat_mode: p.stat_mode.map(|m| stat_mode_to_proto(m) as i32),
            packet_byte_offset: p.packet_byte_offset.map(i32::from),
        }),
    }
}

fn direction_to_proto(direction: Direction) -> pb::Direction {
    match direction {
        Direction::Ingress => pb::Direction::Ingress,
        Direction::Egress => pb::Direction::Egress,
    }
}

fn flow_to_proto(flow: &Flow) -> pb::Flow {
    let ports = |range: PortRange| pb::PortRange {
        first: u32::from(range.first),
        last: u32::from(range.last),
    };
    pb::Flow {
        src_ip: flow.src_ip.map(|net| net.to_string()),
        dst_ip: flow.dst_ip.map(|net| net.to_string()),
        protocol: flow.protocol.map(u32::from),
        src_port: flow.src_port.map(ports),
        dst_port: flow.dst_port.map(ports),
        dscp: flow.dscp.map(|d| u32::from(d.value())),
    }
}

fn burst_to_proto(burst: BurstSize) -> pb::BurstSize {
    pb::BurstSize {
        bytes: match burst {
            BurstSize::Default => None,
            BurstSize::Bytes(bytes) => Some(bytes),
        },
    }
}

fn stat_mode_to_proto(mode: StatMode) -> pb::StatMode {
    match mode {
        StatMode::NoStats => pb::StatMode::NoStats,
        StatMode::Minimal => pb::StatMode::Minimal,
        StatMode::OfferedProfileNoCir => pb::StatMode::OfferedProfileNoCir,
        StatMode::OfferedPriorityNoCir => pb::StatMode::OfferedPriorityNoCir,
        StatMode::OfferedProfileCir => pb::StatMode::OfferedProfileCir,
        StatMode::OfferedPriorityCir => pb::StatMode::OfferedPriorityCir,
        StatMode::OfferedTotalCir => pb::StatMode::OfferedTotalCir,
        StatMode::OfferedLimitedProfileCir => pb::StatMode::OfferedLimitedProfileCir,
        StatMode::OfferedProfileCappedCir => pb::StatMode::OfferedProfileCappedCir,
        StatMode::OfferedLimitedCappedCir => pb::StatMode::OfferedLimitedCappedCir,
    }
}

/// Where a conversion error is: `service "s" rule "r": …`.
fn at(service: &str, rule: Option<&str>, what: impl std::fmt::Display) -> SmError {
    match rule {
        Some(rule) => SmError::invalid(format!("service {service:?} rule {rule:?}: {what}")),
        None => SmError::invalid(format!("service {service:?}: {what}")),
    }
}

fn enum_value<T: TryFrom<i32>>(value: i32, field: &str) -> Result<T, String> {
    T::try_from(value).map_err(|_| format!("{field} = {value}: not a known value"))
}

fn narrow<T: TryFrom<u32>>(value: u32, field: &str, range: &str) -> Result<T, String> {
    T::try_from(value).map_err(|_| format!("{field} = {value}: expected {range}"))
}

/// A service from protobuf.
pub fn service_from_proto(service: pb::SubscriberService) -> Result<SubscriberService, SmError> {
    let name = service.name;
    let type_conflict_action =
        match enum_value(service.type_conflict_action, "type_conflict_action")
            .map_err(|e| at(&name, None, e))?
        {
            pb::TypeConflictAction::None => TypeConflictAction::None,
            pb::TypeConflictAction::KeepOld => TypeConflictAction::KeepOld,
            pb::TypeConflictAction::KeepNew => TypeConflictAction::KeepNew,
        };
    let acct_stats_type = match enum_value(service.acct_stats_type, "acct_stats_type")
        .map_err(|e| at(&name, None, e))?
    {
        pb::AcctStatsType::Off => AcctStatsType::Off,
        pb::AcctStatsType::VolumeTime => AcctStatsType::VolumeTime,
        pb::AcctStatsType::Time => AcctStatsType::Time,
    };
    let rules = service
        .rules
        .into_iter()
        .map(|rule| rule_from_proto(rule).map_err(|(rule, e)| at(&name, Some(&rule), e)))
        .collect::<Result<_, _>>()?;
    Ok(SubscriberService {
        name,
        service_type: service.r#type,
        type_conflict_action,
        acct_stats_type,
        acct_interval: service.acct_interval,
        rules,
    })
}

/// A subscriber's services from protobuf.
pub fn services_from_proto(
    services: Vec<pb::SubscriberService>,
) -> Result<SubscriberServices, SmError> {
    services
        .into_iter()
        .map(service_from_proto)
        .collect::<Result<Vec<_>, _>>()
        .map(SubscriberServices::from_iter)
}

/// A service request from protobuf; a request without its `add` or `delete` is refused.
pub fn request_from_proto(request: pb::ServiceRequest) -> Result<ServiceRequest, SmError> {
    use pb::service_request::Request;
    match request.request {
        Some(Request::Add(service)) => service_from_proto(service).map(ServiceRequest::Add),
        Some(Request::Delete(name)) => Ok(ServiceRequest::Delete { name }),
        None => Err(SmError::invalid(
            "a service request needs add (a service) or delete (a service name)",
        )),
    }
}

/// A rule from protobuf; a refusal comes with the rule's name, to say where it is (the name is
/// not copied for the case that succeeds).
fn rule_from_proto(mut rule: pb::PccRule) -> Result<PccRule, (String, String)> {
    match rule_parts(&mut rule) {
        Ok((direction, flows, actions, policer)) => Ok(PccRule {
            name: rule.name,
            direction,
            precedence: rule.precedence,
            flows,
            actions,
            policer,
        }),
        Err(e) => Err((rule.name, e)),
    }
}

/// What a rule holds besides its name and precedence, taken out of `rule`.
fn rule_parts(
    rule: &mut pb::PccRule,
) -> Result<(Direction, Vec<Flow>, Actions, Option<PolicerOverrides>), String> {
    let direction = match enum_value(rule.direction, "direction")? {
        pb::Direction::Ingress => Direction::Ingress,
        pb::Direction::Egress => Direction::Egress,
    };
    let flows = std::mem::take(&mut rule.flows)
        .into_iter()
        .enumerate()
        .map(|(index, flow)| flow_from_proto(flow).map_err(|e| format!("flow {}: {e}", index + 1)))
        .collect::<Result<_, _>>()?;
    let actions = match rule.actions.take() {
        None => Actions::default(),
        Some(actions) => Actions {
            gate: match enum_value(actions.gate, "gate")? {
                pb::Gate::Forward => Gate::Forward,
                pb::Gate::Drop => Gate::Drop,
            },
            rate_limit: actions.rate_limit.map(|limit| RateLimit {
                pir_kbps: limit.pir_kbps,
                cir_kbps: limit.cir_kbps,
            }),
            account: actions.account,
            remark_dscp: actions
                .remark_dscp
                .map(|d| dscp(d, "remark_dscp"))
                .transpose()?,
        },
    };
    let policer = rule.policer.take().map(policer_from_proto).transpose()?;
    Ok((direction, flows, actions, policer))
}

fn dscp(value: u32, field: &str) -> Result<Dscp, String> {
    u8::try_from(value)
        .ok()
        .and_then(Dscp::new)
        .ok_or_else(|| format!("{field} = {value}: expected 0..=63"))
}

fn flow_from_proto(flow: pb::Flow) -> Result<Flow, String> {
    let prefix = |text: Option<String>, field: &str| {
        text.map(|t| {
            t.parse()
                .map_err(|_| format!("{field} = {t:?}: expected a prefix such as 10.1.1.0/24"))
        })
        .transpose()
    };
    let ports = |range: Option<pb::PortRange>, field: &str| {
        range
            .map(|r| {
                Ok::<_, String>(PortRange {
                    first: narrow(r.first, field, "ports 0..=65535")?,
                    last: narrow(r.last, field, "ports 0..=65535")?,
                })
            })
            .transpose()
    };
    Ok(Flow {
        src_ip: prefix(flow.src_ip, "src_ip")?,
        dst_ip: prefix(flow.dst_ip, "dst_ip")?,
        protocol: flow
            .protocol
            .map(|p| narrow(p, "protocol", "0..=255"))
            .transpose()?,
        src_port: ports(flow.src_port, "src_port")?,
        dst_port: ports(flow.dst_port, "dst_port")?,
        dscp: flow.dscp.map(|d| dscp(d, "dscp")).transpose()?,
    })
}

fn policer_from_proto(policer: pb::PolicerOverrides) -> Result<PolicerOverrides, String> {
    let burst = |b: pb::BurstSize| b.bytes.map_or(BurstSize::Default, BurstSize::Bytes);
    let stat_mode = policer
        .stat_mode
        .map(|m| enum_value::<pb::StatMode>(m, "stat_mode").map(stat_mode_from_proto))
        .transpose()?;
    Ok(PolicerOverrides {
        parent_arbiter: policer.parent_arbiter,
        parent_level: policer
            .parent_level
            .map(|l| narrow(l, "parent_level", "0..=255"))
            .transpose()?,
        parent_weight: policer
            .parent_weight
            .map(|w| narrow(w, "parent_weight", "0..=255"))
            .transpose()?,
        mbs: policer.mbs.map(burst),
        cbs: policer.cbs.map(burst),
        stat_mode,
        packet_byte_offset: policer
            .packet_byte_offset
            .map(|o| {
                i8::try_from(o)
                    .map_err(|_| format!("packet_byte_offset = {o}: expected -128..=127"))
            })
            .transpose()?,
    })
}

fn stat_mode_from_proto(mode: pb::StatMode) -> StatMode {
    match mode {
        pb::StatMode::NoStats => StatMode::NoStats,
        pb::StatMode::Minimal => StatMode::Minimal,
        pb::StatMode::OfferedProfileNoCir => StatMode::OfferedProfileNoCir,
        pb::StatMode::OfferedPriorityNoCir => StatMode::OfferedPriorityNoCir,
        pb::StatMode::OfferedProfileCir => StatMode::OfferedProfileCir,
        pb::StatMode::OfferedPriorityCir => StatMode::OfferedPriorityCir,
        pb::StatMode::OfferedTotalCir => StatMode::OfferedTotalCir,
        pb::StatMode::OfferedLimitedProfileCir => StatMode::OfferedLimitedProfileCir,
        pb::StatMode::OfferedProfileCappedCir => StatMode::OfferedProfileCappedCir,
        pb::StatMode::OfferedLimitedCappedCir => StatMode::OfferedLimitedCappedCir,
    }
}
