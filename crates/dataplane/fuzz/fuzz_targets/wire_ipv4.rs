//! IPv4 view: never panics; a valid header's repr re-emits a header that parses to the same repr.
#![no_main]
use brasa_dataplane::wire::{Ipv4Packet, Ipv4Repr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Ipv4Packet::new_checked(data) else {
        return;
    };
    let _ = (
        packet.payload(),
        packet.frag_offset(),
        packet.dscp(),
        packet.ecn(),
        packet.ident(),
    );
    let Ok(repr) = Ipv4Repr::parse(&packet) else {
        return;
    };
    let mut out = vec![0u8; repr.header_len() + repr.payload_len];
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
    let again = Ipv4Packet::new_checked(&out[..]).expect("emitted header is valid");
    assert_eq!(
        Ipv4Repr::parse(&again).expect("emitted header parses"),
        repr
    );
});
