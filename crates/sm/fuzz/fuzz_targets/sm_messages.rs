//! What an EP receives from the SM, as raw bytes (length-prefixed protobuf messages): the
//! reference replica never panics, whatever arrives, and its link keeps answering.
#![no_main]

use std::time::{Duration, Instant};

use brasa_sm::{pb, EpReplica, LinkOptions};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let mut replica = EpReplica::new();
    replica.connect(now, pb::Hello::default(), LinkOptions::default());
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (chunk, next) = tail.split_at(len);
        rest = next;
        if let Ok(msg) = pb::SmMessage::decode(chunk) {
            now += Duration::from_millis(len as u64 * 10);
            if replica.handle(now, msg).is_err() {
                replica.connection_lost();
                replica.connect(now, pb::Hello::default(), LinkOptions::default());
            }
            while replica.poll_transmit(now).is_some() {}
            let _ = replica.handle_timeout(now);
            let _ = replica.lookup("10.0.0.1".parse().expect("address"), None);
        }
    }
});
