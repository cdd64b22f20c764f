//! A punted frame read as a data trigger: MAC, tags and IP source; errors, never panics.
#![no_main]

use brasa_dynsvc::TriggerFrame;
use brasa_services::SapId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(capture) = SapId::parse("eth1:*.*") else {
        return;
    };
    let (outer, inner) = match data {
        [a, b, c, d, ..] => (u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])),
        _ => (0, 0),
    };
    if let Ok(frame) = TriggerFrame::parse(capture, outer, inner, data, data.len()) {
        let _ = frame.trigger_sap();
    }
});
