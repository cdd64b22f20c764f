//! The journal reader on arbitrary bytes: never panics, and the good prefix it reports
//! re-encodes byte for byte from the events it returned.
#![no_main]

use brasa_cache::journal::{encode_record, scan, MAGIC};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = scan(data);
    assert!(s.good_len <= data.len());
    if s.foreign_header || s.good_len == 0 {
        assert!(s.events.is_empty());
        return;
    }
    let mut again = MAGIC.to_vec();
    for e in &s.events {
        encode_record(e, &mut again);
    }
    assert_eq!(&again[..], &data[..s.good_len]);
});
