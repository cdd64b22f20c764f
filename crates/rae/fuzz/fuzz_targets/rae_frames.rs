//! Arbitrary bytes through the inter-RAE and CME frame parsers and, when they decode, through
//! a session and the routing engine: nothing may panic.
#![no_main]

use brasa_rae::config::RaeConfig;
use brasa_rae::engine::Rae;
use brasa_rae::proto;
use brasa_rae::session::Session;
use brasa_rae::wire::{check_frame, CmeMessage, Frame, InterRaeMessage};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

fn config() -> RaeConfig {
    let class = |cos| proto::ClassOfService {
        cos_id: cos,
        metric: Some(proto::Metric {
            loss_ratio: Some(1e-6),
            maximum_delay: Some(0.001),
            supported_bandwidth: Some(1e7),
        }),
    };
    RaeConfig::from_proto(&proto::ConfigurationMessage {
        local_as_number: 1,
        local_ip_address: "127.0.0.1".into(),
        local_port_number: 1,
        limit_of_preferred_paths: 2,
        peer_table: vec![proto::PeerEntry {
            remote_as_number: 2,
            remote_ip_address: "127.0.0.2".into(),
            remote_port_number: 1,
            ttl_value: 1,
            class_table: vec![class(1), class(2)],
        }],
        ..Default::default()
    })
    .expect("valid fuzz config")
}

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut rae = Rae::new(config(), now);
    rae.peer_up(0, now);
    let mut session = Session::accept(1, Duration::from_secs(3), now);
    let mut rest = data;
    while let Ok(Some(len)) = check_frame(rest) {
        let frame = Frame::new_unchecked(&rest[..len]);
        let _ = CmeMessage::parse(&frame);
        if let Ok(message) = InterRaeMessage::parse(&frame) {
            match session.handle_message(message, now, |a| a == 2) {
                Ok((Some(brasa_rae::session::SessionEvent::Update(u)), _)) => {
                    rae.handle_update(0, u, now)
                }
                Ok((Some(brasa_rae::session::SessionEvent::Withdraw(w)), _)) => {
                    rae.handle_withdraw(0, w, now)
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        rest = &rest[len..];
    }
    rae.handle_timeout(now);
    while rae.poll_transmit().is_some() {}
    let _ = Frame::new_checked(data);
});
