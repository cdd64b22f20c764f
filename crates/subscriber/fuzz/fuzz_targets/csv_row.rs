//! CSV header and row parsers of both tables: never panic; a parsed row formats to a row that
//! parses equal.
#![no_main]

use brasa_subscriber::csv::{
    format_row, format_vpn_row, parse_row, parse_vpn_row, Header, COLUMNS, VPN_COLUMNS,
};
use brasa_subscriber::NameCase;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (head, row) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(header) = Header::parse(head) {
        let _ = parse_row(&header, row, NameCase::Sensitive);
    }
    if let Ok(header) = Header::parse_vpn(head) {
        let _ = parse_vpn_row(&header, row);
    }
    let full = Header::parse(&COLUMNS.join(",")).expect("the export header parses");
    if let Ok(sub) = parse_row(&full, row, NameCase::Insensitive) {
        let line = format_row(&sub);
        let again = parse_row(&full, &line, NameCase::Insensitive).expect("exported row parses");
        assert_eq!(again, sub);
    }
    let vpn_full = Header::parse_vpn(&VPN_COLUMNS.join(",")).expect("the VPN header parses");
    if let Ok(vpn) = parse_vpn_row(&vpn_full, row) {
        let line = format_vpn_row(&vpn);
        let again = parse_vpn_row(&vpn_full, &line).expect("exported VPN row parses");
        assert_eq!(again, vpn);
    }
});
