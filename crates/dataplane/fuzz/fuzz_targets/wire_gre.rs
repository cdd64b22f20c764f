//! GRE view: never panics; a parsed header re-emits to a header that parses the same.
#![no_main]
use brasa_dataplane::wire::{GrePacket, GreRepr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = GrePacket::new_checked(data) else {
        return;
    };
    let _ = (packet.key(), packet.sequence(), packet.payload());
    let Ok(repr) = GreRepr::parse(&packet) else {
        return;
    };
    let mut out = data.to_vec();
    repr.emit(&mut GrePacket::new_unchecked(&mut out[..]));
    let again = GrePacket::new_checked(&out[..]).expect("emitted header is valid");
    assert_eq!(GreRepr::parse(&again).expect("emitted header parses"), repr);
});
