//! A stored BGP LEG route, key and record (binary or JSON), as a store reads it at start-up or
//! a standby from the change log: never panics, and what decodes encodes again, in the binary
//! form, to a record that reads back as the same route.
#![no_main]

use brasa_subscriber::store::{decode_route, encode_route};
use brasa_subscriber::RouteFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (key, value) = data.split_at(data.len().min(42));
    if let Ok(route) = decode_route(key, value) {
        let mut binary = Vec::new();
        encode_route(&route, RouteFormat::Binary, &mut binary).expect("a decoded route encodes");
        assert_eq!(decode_route(key, &binary).ok(), Some(route));
    }
});
