//! A LEG's bulk batch as raw protobuf bytes: decoding, conversion and application to the index
//! never panic, and a refused operation leaves the subscriber count unchanged.
#![no_main]

use brasa_sm::convert::op_from_proto;
use brasa_sm::pb;
use brasa_subscriber::{IndexConfig, NameCase, SubscriberIndex};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = pb::BulkRequest::decode(data) else {
        return;
    };
    let mut index = SubscriberIndex::new(IndexConfig {
        domains: vec!["subscribers".into(), "north".into()],
        name_case: NameCase::Insensitive,
    })
    .expect("valid config");
    for op in batch.ops {
        let Ok(op) = op_from_proto(op, NameCase::Insensitive) else {
            continue;
        };
        let before = index.len();
        if op.apply(&mut index, 1_000).is_err() {
            assert_eq!(index.len(), before, "a refused operation changed the index");
        }
    }
});
