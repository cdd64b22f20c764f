//! The multi-criteria decision process ranking candidate paths of one class of service.
//!
//! It is the reference-point method (Wierzbicki 1980; in the form of Ogryczak's augmented
//! max-min aggregation) that Bęben, Mongay Batalla, Chai and Śliwiński use for path selection in
//! "Multi-criteria decision algorithms for efficient content delivery in content networks",
//! Annals of Telecommunications 68 (2013) 153–165. For each criterion `i` (delay, loss,
//! bandwidth) the operator gives an aspiration level `aᵢ` (what is hoped for) and a reservation
//! level `rᵢ` (what is barely acceptable). A path's criterion value `yᵢ` is normalised so that
//! `0` is the reservation level and `1` the aspiration level, mapped by a partial achievement
//! function `uᵢ`, and the paths are ranked by
//!
//! ```text
//! A(y) = minᵢ uᵢ(yᵢ) + ε · Σᵢ uᵢ(yᵢ)        (larger is better, ε = 0.01)
//! ```
//!
//! The two variants named by `decision_with_flat_function` differ in `uᵢ` (see `docs/rae.md`
//! for the derivation and a worked example):
//! - **flat** (`true`): the normalisation is linear in `yᵢ`; above the aspiration level the
//!   function is flat (no further reward), below the reservation level it falls with slope
//!   `γ = 10`.
//! - **multiplicative inverse** (`false`, the document's example): delay and loss are replaced
//!   by their multiplicative inverses before the same linear normalisation, so improvements
//!   keep being rewarded hyperbolically beyond the aspiration level; below reservation the
//!   slope is `γ` as well.

use crate::metric::Metric;

/// The regularisation weight of the sum term (makes the ranking Pareto-consistent).
pub const EPSILON: f64 = 0.01;
/// Slope of a partial achievement below the reservation level.
pub const GAMMA: f64 = 10.0;
/// Partial achievements are clamped into this range so that unconstrained criteria
/// (zero loss, unlimited bandwidth) stay finite and comparable.
pub const CLAMP: (f64, f64) = (-1.0e6, 100.0);
/// Values of minimised criteria are floored here before taking their inverse.
const INVERSE_FLOOR: f64 = 1e-12;

/// Which partial achievement function the decision uses (`decision_with_flat_function`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AchievementFunction {
    /// Linear between the levels, flat above the aspiration level.
    Flat,
    /// Linear in `1/y` for delay and loss, unbounded (clamped) above the aspiration level.
    MultiplicativeInverse,
}

/// Aspiration and reservation levels of one class (`decision_parameters`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DecisionLevels {
    /// Delay hoped for, seconds.
    pub delay_aspiration: f64,
    /// Largest acceptable delay, seconds.
    pub delay_reservation: f64,
    /// Loss ratio hoped for.
    pub loss_aspiration: f64,
    /// Largest acceptable loss ratio.
    pub loss_reservation: f64,
    /// Bandwidth hoped for, bit/s.
    pub bandwidth_aspiration: f64,
    /// Smallest acceptable bandwidth, bit/s.
    pub bandwidth_reservation: f64,
}

impl DecisionLevels {
    /// Checks that every aspiration level is strictly better than its reservation level (the
    /// normalisation divides by their difference) and that all are finite and non-negative.
    pub fn validate(&self) -> Result<(), String> {
        let all = [
            self.delay_aspiration,
            self.delay_reservation,
            self.loss_aspiration,
            self.loss_reservation,
            self.bandwidth_aspiration,
            self.bandwidth_reservation,
        ];
        if all.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err("levels must be finite and non-negative".into());
        }
        if self.delay_aspiration >= self.delay_reservation {
            return Err("delay_aspiration must be smaller than delay_reservation".into());
        }
        if self.loss_aspiration >= self.loss_reservation {
            return Err("loss_aspiration must be smaller than loss_reservation".into());
        }
        if self.bandwidth_aspiration <= self.bandwidth_reservation {
            return Err("bandwidth_aspiration must be larger than bandwidth_reservation".into());
        }
        Ok(())
    }
}

/// Normalised achievement of a minimised criterion: 0 at reservation, 1 at aspiration.
fn normalise_min(
    function: AchievementFunction,
    value: f64,
    aspiration: f64,
    reservation: f64,
) -> f64 {
    match function {
        AchievementFunction::Flat => (reservation - value) / (reservation - aspiration),
        AchievementFunction::MultiplicativeInverse => {
            let inverse = |x: f64| 1.0 / x.max(INVERSE_FLOOR);
            (inverse(value) - inverse(reservation)) / (inverse(aspiration) - inverse(reservation))
        }
    }
}

/// Normalised achievement of a maximised criterion: 0 at reservation, 1 at aspiration.
fn normalise_max(value: f64, aspiration: f64, reservation: f64) -> f64 {
    (value - reservation) / (aspiration - reservation)
}

/// The partial achievement `uᵢ` of a normalised value `v`.
fn partial(function: AchievementFunction, v: f64) -> f64 {
    let u = if v < 0.0 {
        GAMMA * v
    } else if function == AchievementFunction::Flat {
        v.min(1.0)
    } else {
        v
    };
    if u.is_nan() {
        CLAMP.0
    } else {
        u.clamp(CLAMP.0, CLAMP.1)
    }
}

/// The three partial achievements (delay, loss, bandwidth) of a path metric.
pub fn partial_achievements(
    function: AchievementFunction,
    levels: &DecisionLevels,
    metric: &Metric,
) -> [f64; 3] {
    let delay = normalise_min(
        function,
        metric.delay,
        levels.delay_aspiration,
        levels.delay_reservation,
    );
    let loss = normalise_min(
        function,
        metric.loss,
        levels.loss_aspiration,
        levels.loss_reservation,
    );
    // Bandwidth is maximised; both variants use it linearly (its inverse would reward a
    // smaller bandwidth).
    let bandwidth = normalise_max(
        metric.bandwidth,
        levels.bandwidth_aspiration,
        levels.bandwidth_reservation,
    );
    [
        partial(function, delay),
        partial(function, loss),
        partial(function, bandwidth),
    ]
}

/// The achievement `A(y) = minᵢ uᵢ + ε Σᵢ uᵢ` of a path metric; larger is better.
pub fn achievement(function: AchievementFunction, levels: &DecisionLevels, metric: &Metric) -> f64 {
    let u = partial_achievements(function, levels, metric);
    let min = u[0].min(u[1]).min(u[2]);
    min + EPSILON * (u[0] + u[1] + u[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Class 1 (BTBE) of Appendix A.
    fn btbe() -> DecisionLevels {
        DecisionLevels {
            delay_aspiration: 0.5,
            delay_reservation: 1.0,
            loss_aspiration: 1e-5,
            loss_reservation: 1e-3,
            bandwidth_aspiration: 4e6,
            bandwidth_reservation: 1e6,
        }
    }

    fn metric(delay: f64, loss: f64, bandwidth: f64) -> Metric {
        Metric {
            delay,
            loss,
            bandwidth,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn flat_function_matches_hand_computation() {
        // delay 0.75 → v = (1 − 0.75)/(1 − 0.5) = 0.5
        // loss 5.05e-4 → v = (1e-3 − 5.05e-4)/(1e-3 − 1e-5) = 0.5
        // bandwidth 2.5e6 → v = (2.5e6 − 1e6)/(4e6 − 1e6) = 0.5
        // A = 0.5 + 0.01 · 1.5 = 0.515
        let a = achievement(
            AchievementFunction::Flat,
            &btbe(),
            &metric(0.75, 5.05e-4, 2.5e6),
        );
        assert!(close(a, 0.515), "{a}");
        // Beyond aspiration everything is flat at 1: A = 1 + 0.03.
        let a = achievement(AchievementFunction::Flat, &btbe(), &metric(0.01, 0.0, 1e9));
        assert!(close(a, 1.03), "{a}");
        // Delay 1.1 is 0.2 below reservation: u = 10 · (−0.2) = −2; others at 1 (flat).
        // A = −2 + 0.01 · (−2 + 1 + 1) = −2.
        let a = achievement(AchievementFunction::Flat, &btbe(), &metric(1.1, 1e-6, 5e6));
        assert!(close(a, -2.0), "{a}");
    }

    #[test]
    fn multiplicative_inverse_matches_hand_computation() {
        // delay 2/3 s: 1/y = 1.5; (1.5 − 1)/(2 − 1) = 0.5
        // loss 1/50500: 1/y = 50500; (50500 − 1000)/(100000 − 1000) = 0.5
        // bandwidth 2.5e6: 0.5 (linear)
        let a = achievement(
            AchievementFunction::MultiplicativeInverse,
            &btbe(),
            &metric(2.0 / 3.0, 1.0 / 50500.0, 2.5e6),
        );
        assert!(close(a, 0.515), "{a}");
        // Better than aspiration keeps counting: delay 0.25 → (4 − 1)/(2 − 1) = 3;
        // loss 1e-5 → 1; bandwidth 4e6 → 1. A = 1 + 0.01 · 5 = 1.05.
        let a = achievement(
            AchievementFunction::MultiplicativeInverse,
            &btbe(),
            &metric(0.25, 1e-5, 4e6),
        );
        assert!(close(a, 1.05), "{a}");
    }

    #[test]
    fn ranking_of_three_paths_is_the_hand_computed_one() {
        // P1: fast but lossy; P2: balanced; P3: slow.
        let p1 = metric(0.2, 9e-4, 8e6); // flat: u = (1, 0.1010.., 1) → A = 0.10101 + 0.0210101
        let p2 = metric(0.6, 1e-4, 3e6); // flat: u = (0.8, 0.90909.., 0.6667) → A = 0.6667 + 0.023758
        let p3 = metric(0.9, 1e-6, 1e7); // flat: u = (0.2, 1, 1) → A = 0.2 + 0.022
        let levels = btbe();
        let a: Vec<f64> = [p1, p2, p3]
            .iter()
            .map(|m| achievement(AchievementFunction::Flat, &levels, m))
            .collect();
        assert!(
            close(a[0], (1e-3 - 9e-4) / (1e-3 - 1e-5) * 1.01 + 0.02),
            "{a:?}"
        );
        assert!(
            close(a[1], 2.0 / 3.0 + 0.01 * (0.8 + 0.9 / 0.99 + 2.0 / 3.0)),
            "{a:?}"
        );
        assert!(close(a[2], 0.2 + 0.022), "{a:?}");
        assert!(a[1] > a[2] && a[2] > a[0], "{a:?}");
    }

    #[test]
    fn worked_example_of_docs_rae_md() {
        let paths = [
            metric(0.3, 5e-6, 3e6),
            metric(0.7, 2e-5, 8e6),
            metric(0.45, 1e-4, 10e6),
        ];
        let flat: Vec<f64> = paths
            .iter()
            .map(|m| achievement(AchievementFunction::Flat, &btbe(), m))
            .collect();
        let inverse: Vec<f64> = paths
            .iter()
            .map(|m| achievement(AchievementFunction::MultiplicativeInverse, &btbe(), m))
            .collect();
        let round = |v: &[f64]| {
            v.iter()
                .map(|a| (a * 1000.0).round() / 1000.0)
                .collect::<Vec<_>>()
        };
        assert_eq!(round(&flat), vec![0.693, 0.626, 0.938]);
        assert_eq!(round(&inverse), vec![0.717, 0.461, 0.134]);
    }

    #[test]
    fn invalid_levels_are_rejected() {
        let mut levels = btbe();
        levels.delay_aspiration = 2.0;
        assert!(levels.validate().is_err());
        let mut levels = btbe();
        levels.bandwidth_aspiration = 1e5;
        assert!(levels.validate().is_err());
        assert!(btbe().validate().is_ok());
    }
}
