//! What the core and gRPC tests share: the EP table and domains they run with, a subscriber
//! service.
#![allow(dead_code)]

use brasa_sm::{EpConfig, EpMode, FailureAction, SmConfig};
use brasa_subscriber::{IndexConfig, NameCase};
use brasa_subsvc::fixtures::rate_limited_service;
use brasa_subsvc::{ServiceRequest, TypeConflictAction};

pub fn ep(id: &str, domain: &str, mode: EpMode, partner: Option<&str>) -> EpConfig {
    EpConfig {
        id: id.into(),
        domain: domain.into(),
        mode,
        failure_action: FailureAction::ClearMappings,
        cascade_partner: partner.map(str::to_owned),
    }
}

/// Domains `subscribers` and `north`; push EPs `a` (subscribers) and `b` (north), pull EP `p`
/// (subscribers), cascade pair `c1`/`c2` (north); every EP clears its mappings on failure.
pub fn base_config() -> SmConfig {
    SmConfig {
        index: IndexConfig {
            domains: vec!["subscribers".into(), "north".into()],
            name_case: NameCase::Sensitive,
        },
        eps: vec![
            ep("a", "subscribers", EpMode::Push, None),
            ep("b", "north", EpMode::Push, None),
            ep("p", "subscribers", EpMode::Pull, None),
            ep("c1", "north", EpMode::Push, Some("c2")),
            ep("c2", "north", EpMode::Push, Some("c1")),
        ],
        ..SmConfig::default()
    }
}

/// A request to activate `name` of type `pccrule`: one ingress rule rate-limiting traffic to
/// 10.1.1.0/24 to 1 Mb/s.
pub fn pcc_service(name: &str, conflict: TypeConflictAction) -> ServiceRequest {
    ServiceRequest::Add(rate_limited_service(name, conflict))
}
