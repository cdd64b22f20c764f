//! What the SM examples share.

// Each example uses a part of it.
#![allow(dead_code)]

use brasa_sm::{EpConfig, EpMode, FailureAction, SmConfig};
use brasa_subscriber::DEFAULT_DOMAIN;

/// An SM with one push EP, `bench`, of the default domain: the EP the examples sync to.
pub fn one_push_ep() -> SmConfig {
    SmConfig {
        eps: vec![EpConfig {
            id: "bench".into(),
            domain: DEFAULT_DOMAIN.into(),
            mode: EpMode::Push,
            failure_action: FailureAction::Ignore,
            cascade_partner: None,
        }],
        ..SmConfig::default()
    }
}

/// CPU seconds (user + system, with exited children) in the text of a `/proc/.../stat` file,
/// of a process or of one of its threads.
pub fn stat_cpu_secs(stat: &str) -> f64 {
    // The fields after the command name, which may hold spaces, end with ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 = (11..15)
        .filter_map(|i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    // USER_HZ: 100 on every Linux this runs on.
    ticks / 100.0
}
