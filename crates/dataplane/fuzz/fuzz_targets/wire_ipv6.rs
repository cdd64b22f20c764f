//! IPv6 view and the extension-header walk: never panic, never read past the payload.
#![no_main]
use brasa_dataplane::wire::{Ipv6Packet, Ipv6Repr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Ipv6Packet::new_checked(data) else {
        return;
    };
    let repr = Ipv6Repr::parse(&packet).expect("checked packet parses");
    if let Ok(location) = packet.transport() {
        assert!(location.offset <= 40 + repr.payload_len);
    }
    let _ = (
        packet.flow_label(),
        packet.traffic_class(),
        packet.payload(),
    );
});
