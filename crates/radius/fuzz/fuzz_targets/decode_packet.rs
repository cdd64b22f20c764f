//! Message::decode + decode_pairs (with decryption) + re-encoding on arbitrary datagrams.
#![no_main]

use std::sync::OnceLock;

use brasa_radius::{auth, Dictionary, Message};
use libfuzzer_sys::fuzz_target;

fn dict() -> &'static Dictionary {
    static DICT: OnceLock<Dictionary> = OnceLock::new();
    DICT.get_or_init(Dictionary::builtin)
}

fuzz_target!(|data: &[u8]| {
    let _ = auth::check_message_authenticator(data, &[0; 16], b"secret");
    let _ = auth::verify_request(data, b"secret");
    if let Ok(packet) = Message::decode(data) {
        let pairs = dict().decode_pairs(&packet, Some((b"secret", &[1; 16])));
        for pair in &pairs {
            let _ = pair.to_text(dict());
        }
        // A decoded packet always re-encodes to the octets it came from.
        let encoded = packet.encode().expect("decoded packets re-encode");
        assert_eq!(&encoded[..], &data[..encoded.len()]);
        let mut copy = packet.clone();
        let _ = dict().reencrypt(&mut copy, b"secret", &[1; 16], b"other", &[2; 16]);
    }
});
