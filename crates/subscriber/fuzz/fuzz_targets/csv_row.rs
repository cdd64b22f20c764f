//! CSV header and row parsers: never panic; a parsed row formats to a row that parses equal.
#![no_main]

use brasa_subscriber::csv::{format_row, parse_row, Header, COLUMNS};
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
    let full = Header::parse(&COLUMNS.join(",")).expect("the export header parses");
    if let Ok(sub) = parse_row(&full, row, NameCase::Insensitive) {
        let line = format_row(&sub);
        let again = parse_row(&full, &line, NameCase::Insensitive).expect("exported row parses");
        assert_eq!(again, sub);
    }
});
