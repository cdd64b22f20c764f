//! Dictionary::parse_str on arbitrary text: errors, never panics.
#![no_main]

use brasa_radius::Dictionary;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Dictionary::parse_str("fuzz", text);
    }
});
