//! The stored key of a BGP LEG route, as a standby reads it from the store's change log: never
//! panics, and what decodes is a prefix without host bits.
#![no_main]

use brasa_subscriber::store::decode_route_key;
use brasa_subscriber::Prefix;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = decode_route_key(data) {
        let (addr, len) = match key.prefix {
            Prefix::V4(a, l) => (a.into(), l),
            Prefix::V6(a, l) => (a.into(), l),
        };
        assert_eq!(Prefix::new(addr, len).ok(), Some(key.prefix));
    }
});
