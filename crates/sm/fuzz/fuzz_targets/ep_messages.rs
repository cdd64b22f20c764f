//! What the SM receives from an EP, as raw bytes (length-prefixed protobuf messages): the EP
//! session state machine never panics, and everything it emits is well-formed.
#![no_main]

use std::time::{Duration, Instant};

use brasa_sm::core::SmCore;
use brasa_sm::ep::Transmit;
use brasa_sm::{pb, EpConfig, EpMode, FailureAction, SmConfig};
use brasa_subscriber::{SubscriberIndex, Login};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let config = SmConfig {
        eps: vec![
            EpConfig {
                id: "a".into(),
                domain: "subscribers".into(),
                mode: EpMode::Push,
                failure_action: FailureAction::Ignore,
                cascade_partner: Some("b".into()),
            },
            EpConfig {
                id: "b".into(),
                domain: "subscribers".into(),
                mode: EpMode::Push,
                failure_action: FailureAction::Ignore,
                cascade_partner: Some("a".into()),
            },
        ],
        window: 4,
        batch: 2,
        ..SmConfig::default()
    };
    let mut index = SubscriberIndex::new(config.index.clone()).expect("valid config");
    for i in 0..5u8 {
        let _ = index.login(Login {
            name: format!("s{i}"),
            mappings: vec![format!("10.0.0.{i}").parse().expect("mapping")],
            ..Login::default()
        });
    }
    let mut core = SmCore::new(&config, index).expect("valid config");
    let mut now = Instant::now();
    let hello = pb::Hello {
        ep_id: "a".into(),
        role: pb::CascadeRole::Active as i32,
        ..pb::Hello::default()
    };
    let Ok(sid) = core.ep_connect(now, &hello) else {
        return;
    };
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (chunk, next) = tail.split_at(len);
        rest = next;
        now += Duration::from_millis(len as u64 * 100);
        if let Ok(msg) = pb::EpMessage::decode(chunk) {
            let _ = core.ep_receive(now, sid, msg);
        }
        core.handle_timeout(now);
        for _ in 0..8 {
            match core.poll_transmit(now, sid) {
                Transmit::Message(m) => assert!(m.body.is_some()),
                _ => break,
            }
        }
    }
});
