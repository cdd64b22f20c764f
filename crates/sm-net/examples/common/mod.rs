//! What the SM examples share.

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
