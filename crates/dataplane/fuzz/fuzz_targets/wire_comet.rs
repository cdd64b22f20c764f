//! COMET header view: never panics; parse/emit round-trips.
#![no_main]
use brasa_dataplane::wire::comet::{CometPacket, CometRepr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = CometPacket::new_checked(data) else {
        return;
    };
    let _ = (
        packet.current_key(),
        packet.is_path_complete(),
        packet.payload(),
        packet.flags(),
    );
    let repr = CometRepr::parse(&packet).expect("checked header parses");
    let mut out = vec![0u8; repr.header_len()];
    repr.emit(&mut CometPacket::new_unchecked(&mut out[..]));
    assert_eq!(
        CometRepr::parse(&CometPacket::new_unchecked(&out[..])).unwrap(),
        repr
    );
    // Emit writes back what parse read; flags and the reserved byte are sent as zero.
    assert_eq!(out[1..3], data[1..3]);
    assert_eq!(out[4..], data[4..repr.header_len()]);
});
