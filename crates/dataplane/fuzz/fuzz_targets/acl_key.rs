//! The packet path's classifier key reader over arbitrary frames, EtherTypes and network
//! header offsets: never panics, and reads exactly what the field-by-field reference reads
//! (`acl::reference_key`), whatever the bytes claim (IHL, total length, fragments, options).
#![no_main]
use brasa_dataplane::acl::{self, PacketKey};
use brasa_dataplane::wire::EtherType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first bytes choose the EtherType (mostly IPv4 and IPv6), the offset and the tags;
    // the rest is the frame.
    let [kind, l3, outer, inner, frame @ ..] = data else {
        return;
    };
    let ethertype = match kind % 4 {
        0 | 1 => EtherType::IPV4,
        2 => EtherType::IPV6,
        _ => u16::from_be_bytes([*kind, *l3]),
    };
    let l3 = usize::from(*l3 % 64);
    let (outer, inner) = (u16::from(*outer) << 4, u16::from(*inner));
    assert_eq!(
        PacketKey::from_frame(frame, ethertype, l3, outer, inner),
        acl::reference_key(frame, ethertype, l3, outer, inner)
    );
});
