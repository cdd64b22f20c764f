//! The counter rule of subscriber service accounting (Nokia SR OS, "PCC rules in a
//! subscriber service"): if at least one PCC rule of the service has the account action, the
//! service's volume is the sum of the forwarded octets and packets of those rules' dynamic
//! policers; if none has, it is the aggregate forwarded traffic of the subscriber's session
//! since the service started.

use brasa_radius::acct::SessionCounters;
use serde::{Deserialize, Serialize};

use crate::model::{Direction, PccRule, SubscriberService};

/// Forwarded octets and packets in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Counter {
    /// Octets.
    pub octets: u64,
    /// Packets.
    pub packets: u64,
}

impl Counter {
    fn saturating_sub(self, earlier: Counter) -> Counter {
        Counter {
            octets: self.octets.saturating_sub(earlier.octets),
            packets: self.packets.saturating_sub(earlier.packets),
        }
    }

    fn wrapping_add(self, more: Counter) -> Counter {
        Counter {
            octets: self.octets.wrapping_add(more.octets),
            packets: self.packets.wrapping_add(more.packets),
        }
    }
}

/// Forwarded traffic in both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Volume {
    /// From the subscriber.
    pub ingress: Counter,
    /// To the subscriber.
    pub egress: Counter,
}

impl Volume {
    /// `self − earlier` per counter, 0 where a counter went backwards (a reset).
    pub fn since(self, earlier: Volume) -> Volume {
        Volume {
            ingress: self.ingress.saturating_sub(earlier.ingress),
            egress: self.egress.saturating_sub(earlier.egress),
        }
    }

    fn add(&mut self, direction: Direction, counter: Counter) {
        let slot = match direction {
            Direction::Ingress => &mut self.ingress,
            Direction::Egress => &mut self.egress,
        };
        *slot = slot.wrapping_add(counter);
    }
}

impl From<Volume> for SessionCounters {
    /// Ingress is the user's input (Acct-Input-*), egress its output.
    fn from(volume: Volume) -> Self {
        SessionCounters {
            input_octets: volume.ingress.octets,
            output_octets: volume.egress.octets,
            input_packets: volume.ingress.packets,
            output_packets: volume.egress.packets,
        }
    }
}

/// Which counters a service reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CounterRule {
    /// The sum of the policers of the rules with the account action.
    AccountedRules,
    /// The subscriber's aggregate forwarded traffic since the service started.
    SubscriberAggregate,
}

impl CounterRule {
    /// The rule that applies to `service`.
    pub fn of(service: &SubscriberService) -> Self {
        if service.has_accounted_rules() {
            Self::AccountedRules
        } else {
            Self::SubscriberAggregate
        }
    }
}

/// The counters the caller reads from the data plane.
pub trait CounterSource {
    /// What the dynamic policer of `rule` (of the service being reported) has forwarded
    /// since the rule was installed.
    fn rule_forwarded(&self, rule: &PccRule) -> Counter;
    /// What the subscriber's session has forwarded so far, in both directions.
    fn subscriber_forwarded(&self) -> Volume;
}

/// The volume of `service` by the counter rule. `aggregate_at_start` is
/// [`CounterSource::subscriber_forwarded`] as read when the service started; it is what the
/// aggregate branch counts from.
pub fn service_volume(
    service: &SubscriberService,
    counters: &impl CounterSource,
    aggregate_at_start: Volume,
) -> Volume {
    match CounterRule::of(service) {
        CounterRule::AccountedRules => {
            let mut volume = Volume::default();
            for rule in service.rules.iter().filter(|r| r.actions.account) {
                volume.add(rule.direction, counters.rule_forwarded(rule));
            }
            volume
        }
        CounterRule::SubscriberAggregate => {
            counters.subscriber_forwarded().since(aggregate_at_start)
        }
    }
}
