//! QoS metrics of a path segment and their composition along a path.

use serde::{Deserialize, Serialize};

/// QoS of a path or segment for one class of service.
///
/// Composition along a path ([`Metric::then`]): delays add up, losses compose as
/// `1 − Π(1 − lᵢ)`, bandwidth is the minimum. [`Metric::IDENTITY`] is the neutral element.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Maximum IP packet transfer delay, seconds.
    pub delay: f64,
    /// IP packet loss ratio, `0..=1`.
    pub loss: f64,
    /// Supported bandwidth, bits per second (`+inf` when unconstrained).
    #[serde(with = "infinite_as_null")]
    pub bandwidth: f64,
}

impl Metric {
    /// No delay, no loss, unlimited bandwidth: the metric of an empty segment.
    pub const IDENTITY: Metric = Metric {
        delay: 0.0,
        loss: 0.0,
        bandwidth: f64::INFINITY,
    };

    /// The metric of `self` followed by `next`.
    #[must_use]
    pub fn then(self, next: Metric) -> Metric {
        Metric {
            delay: self.delay + next.delay,
            // l1 + l2 − l1·l2 equals 1 − (1 − l1)(1 − l2) without cancelling small ratios.
            loss: self.loss + next.loss - self.loss * next.loss,
            bandwidth: self.bandwidth.min(next.bandwidth),
        }
    }

    /// Whether the values are physically meaningful (what a received metric must satisfy).
    pub fn is_valid(&self) -> bool {
        self.delay.is_finite()
            && self.delay >= 0.0
            && (0.0..=1.0).contains(&self.loss)
            && !self.bandwidth.is_nan()
            && self.bandwidth >= 0.0
    }

    /// Builds a metric from the configuration/CME message form, where absent means neutral.
    pub fn from_proto(metric: Option<&crate::proto::Metric>) -> Metric {
        match metric {
            None => Metric::IDENTITY,
            Some(m) => Metric {
                delay: m.maximum_delay.unwrap_or(0.0),
                loss: m.loss_ratio.unwrap_or(0.0),
                bandwidth: m.supported_bandwidth.unwrap_or(f64::INFINITY),
            },
        }
    }

    /// The configuration/CME message form; unlimited bandwidth is left absent.
    pub fn to_proto(self) -> crate::proto::Metric {
        crate::proto::Metric {
            loss_ratio: Some(self.loss),
            maximum_delay: Some(self.delay),
            supported_bandwidth: self.bandwidth.is_finite().then_some(self.bandwidth),
        }
    }
}

/// JSON has no infinity: unconstrained bandwidth is written as `null`.
mod infinite_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            serializer.serialize_f64(*value)
        } else {
            serializer.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::INFINITY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composition_adds_delay_composes_loss_and_takes_min_bandwidth() {
        let a = Metric {
            delay: 0.001,
            loss: 1e-3,
            bandwidth: 10e6,
        };
        let b = Metric {
            delay: 0.004,
            loss: 2e-3,
            bandwidth: 4e6,
        };
        let ab = a.then(b);
        assert!((ab.delay - 0.005).abs() < 1e-15);
        assert!((ab.loss - (1.0 - (1.0 - 1e-3) * (1.0 - 2e-3))).abs() < 1e-15);
        assert_eq!(ab.bandwidth, 4e6);
        assert_eq!(Metric::IDENTITY.then(a), a);
        assert_eq!(a.then(Metric::IDENTITY), a);
    }

    #[test]
    fn validity_rejects_impossible_values() {
        assert!(Metric::IDENTITY.is_valid());
        for bad in [
            Metric {
                delay: -1.0,
                ..Metric::IDENTITY
            },
            Metric {
                delay: f64::NAN,
                ..Metric::IDENTITY
            },
            Metric {
                loss: 1.5,
                ..Metric::IDENTITY
            },
            Metric {
                bandwidth: -3.0,
                ..Metric::IDENTITY
            },
        ] {
            assert!(!bad.is_valid(), "{bad:?}");
        }
    }
}
