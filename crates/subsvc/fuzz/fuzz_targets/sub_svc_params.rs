//! A RADIUS datagram read as an Access-Accept or CoA-Request carrying subscriber services:
//! the Alc-Sub-Serv-* attributes grouped by tag, and a refusal's NAK built; errors, never
//! panics.
#![no_main]

use brasa_radius::Message;
use brasa_subsvc::{sub_svc_params, CoaRefusal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::decode(data) else {
        return;
    };
    if let Err(error) = sub_svc_params(&message) {
        let _ = CoaRefusal::from(error).answer(&message);
    }
});
