//! Mapping, network ID (community@VPN), prefix and RT/RD@PE text parsers: never panic, and what parses formats back to text
//! that parses to the same value.
#![no_main]

use brasa_subscriber::mapping::{parse_label, MplsVpnId};
use brasa_subscriber::{Mapping, NetworkId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = text.parse::<Mapping>() {
        let again: Mapping = m.to_string().parse().expect("formatted mapping parses");
        assert_eq!(again, m);
        // Range splitting must cover the spec with at most 2 * width prefixes.
        assert!(m.ip.prefixes().len() <= 256);
    }
    if let Ok(id) = text.parse::<NetworkId>() {
        let again: NetworkId = id.to_string().parse().expect("formatted network ID parses");
        assert_eq!(again, id);
    }
    if let Ok(id) = text.parse::<MplsVpnId>() {
        let again: MplsVpnId = id.to_string().parse().expect("formatted RT/RD@PE parses");
        assert_eq!(again, id);
    }
    let _ = parse_label(text);
});
