//! Ready-made services for tests, benches and examples of the crates that store, push or
//! enforce subscriber services (feature `fixtures`; never in a release build of the daemon).

use crate::{Direction, Flow, PccRule, RateLimit, SubscriberService, TypeConflictAction};

/// The network the fixture's rule matches: the guide's example destination.
pub const RATE_LIMITED_NETWORK: &str = "10.1.1.0/24";

/// The fixture rule's peak rate, in kb/s (the guide's 1 Mb/s upstream limit).
pub const RATE_LIMITED_PIR_KBPS: u32 = 1000;

/// A service named `name` of type `pccrule` with one ingress rule, `<name>-i`, that
/// rate-limits traffic to [`RATE_LIMITED_NETWORK`] to [`RATE_LIMITED_PIR_KBPS`]. Callers that
/// need the account action or another conflict action change the returned value.
pub fn rate_limited_service(name: &str, conflict: TypeConflictAction) -> SubscriberService {
    let mut rule = PccRule::new(format!("{name}-i"), Direction::Ingress);
    rule.flows.push(Flow {
        dst_ip: RATE_LIMITED_NETWORK.parse().ok(),
        ..Flow::default()
    });
    rule.actions.rate_limit = Some(RateLimit {
        pir_kbps: RATE_LIMITED_PIR_KBPS,
        cir_kbps: None,
    });
    let mut service = SubscriberService::new(name);
    service.service_type = Some("pccrule".into());
    service.type_conflict_action = conflict;
    service.rules.push(rule);
    service
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_is_a_valid_service_with_its_one_limited_rule() {
        let service = rate_limited_service("gold", TypeConflictAction::None);
        assert_eq!(service.validate(), Ok(()));
        assert_eq!(service.rules.len(), 1);
        assert_eq!(service.rules[0].name, "gold-i");
        let flow = &service.rules[0].flows[0];
        assert_eq!(flow.dst_ip, Some(RATE_LIMITED_NETWORK.parse().unwrap()));
    }
}
