//! What an EP receives from the SM, as raw bytes (length-prefixed protobuf messages): the
//! reference replica never panics, whatever arrives.
#![no_main]

use brasa_sm::{pb, EpReplica};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let mut replica = EpReplica::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (chunk, next) = tail.split_at(len);
        rest = next;
        if let Ok(msg) = pb::SmMessage::decode(chunk) {
            let _ = replica.handle(msg);
            let _ = replica.lookup("10.0.0.1".parse().expect("address"), None);
        }
    }
});
