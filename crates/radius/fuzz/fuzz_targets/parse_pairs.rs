//! Dictionary::parse_pairs on arbitrary text, then encoding what parsed: errors, never panics.
#![no_main]

use std::sync::OnceLock;

use brasa_radius::{Code, Dictionary, Message};
use libfuzzer_sys::fuzz_target;

fn dict() -> &'static Dictionary {
    static DICT: OnceLock<Dictionary> = OnceLock::new();
    DICT.get_or_init(Dictionary::builtin)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(pairs) = dict().parse_pairs(text) {
        let mut packet = Message::new(Code::AccessRequest, 0);
        for pair in &pairs {
            let _ = dict().add_pair(&mut packet, pair, b"secret", &[3; 16]);
            let _ = pair.to_text(dict());
        }
        let _ = packet.encode();
    }
});
