//! Text pair syntax, TLVs, arrays and error reporting.

use std::net::Ipv4Addr;

use brasa_radius::{AttrId, Code, Dictionary, Message, Op, PairError, Value};

fn dict() -> Dictionary {
    Dictionary::builtin()
}

#[test]
fn dictionary_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Dictionary>();
    check::<Message>();
}

#[test]
fn operators_tags_and_spacing() {
    let d = dict();
    let p = d.parse_pair("User-Name:=bob").unwrap();
    assert_eq!(
        (p.name.as_str(), p.op, p.value),
        ("User-Name", Op::Set, Value::String(b"bob".to_vec()))
    );
    let p = d.parse_pair("  user-name   +=   \"a b\"  ").unwrap();
    assert_eq!((p.name.as_str(), p.op), ("User-Name", Op::Add));
    assert_eq!(p.value, Value::String(b"a b".to_vec()));
    let p = d.parse_pair("Tunnel-Type:2 == VLAN").unwrap();
    assert_eq!(
        (p.tag, p.op, p.value),
        (Some(2), Op::CmpEq, Value::Integer(13))
    );
    let p = d.parse_pair("Framed-IP-Address != 127.0.0.1").unwrap();
    assert_eq!(
        (p.op, p.value),
        (Op::CmpNe, Value::IpAddr(Ipv4Addr::LOCALHOST))
    );
    let p = d.parse_pair("Alc-Subsc-ID-Str = 'single quoted'").unwrap();
    assert_eq!(
        p.attr,
        AttrId::Vendor {
            vendor: 6527,
            typ: 11
        }
    );
    assert_eq!(p.to_text(&d), "Alc-Subsc-ID-Str = \"single quoted\"");
    let p = d.parse_pair("Vendor-Specific.6527.200 = 0x01").unwrap();
    assert_eq!(p.name, "Attr-26.6527.200");
}

#[test]
fn every_value_type_parses_and_prints() {
    let d = dict();
    for (text, printed) in [
        (
            "Framed-IPv6-Prefix = 2001:db8:1::/48",
            "Framed-IPv6-Prefix = 2001:db8:1::/48",
        ),
        (
            "Framed-Interface-Id = 0011:2233:4455:6677",
            "Framed-Interface-Id = 0011:2233:4455:6677",
        ),
        ("NAS-IPv6-Address = ::1", "NAS-IPv6-Address = ::1"),
        (
            "Event-Timestamp = 0",
            "Event-Timestamp = \"Jan 01 1970 00:00:00 UTC\"",
        ),
        (
            "Event-Timestamp = \"Feb 29 2024 12:00:00 UTC\"",
            "Event-Timestamp = \"Feb 29 2024 12:00:00 UTC\"",
        ),
        ("Service-Type = 2", "Service-Type = Framed-User"),
        ("Service-Type = 0x63", "Service-Type = 99"),
        ("Class = \"abc\"", "Class = 0x616263"),
        (
            "Reply-Message = \"line\\nnext \\\"q\\\" \\\\ \\001\"",
            "Reply-Message = \"line\\nnext \\\"q\\\" \\\\ \\001\"",
        ),
        (
            "Alc-Ipv6-Address = 2001:db8::1",
            "Alc-Ipv6-Address = 2001:db8::1",
        ),
    ] {
        let pair = d.parse_pair(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(pair.to_text(&d), printed, "{text}");
    }
}

#[test]
fn errors_say_what_was_expected() {
    let d = dict();
    assert_eq!(
        d.parse_pair("No-Such-Attribute = 1"),
        Err(PairError::UnknownAttribute {
            name: "No-Such-Attribute".into()
        })
    );
    assert!(matches!(
        d.parse_pair("User-Name"),
        Err(PairError::Syntax { .. })
    ));
    let err = d
        .parse_pair("Framed-IP-Address = 300.1.1.1")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "attribute Framed-IP-Address: cannot parse \"300.1.1.1\" as ipaddr"
    );
    let err = d
        .parse_pair("Service-Type = Bogus")
        .unwrap_err()
        .to_string();
    assert!(err.contains("as integer"), "{err}");
    assert!(
        d.parse_pair("User-Name:1 = x").is_err(),
        "User-Name has no tag"
    );
    assert!(
        d.parse_pair("Tunnel-Type:0 = VLAN").is_err(),
        "tags are 1..=31"
    );
    assert!(d.parse_pair("Tunnel-Type:32 = VLAN").is_err());
    assert!(d.parse_pair("Class = 0xabc").is_err(), "odd hex");
    assert!(d.parse_pair("Class = \"unterminated").is_err());
    // Encoding errors are reported, not panics.
    let long = format!("Reply-Message = \"{}\"", "x".repeat(300));
    let pair = d.parse_pair(&long).unwrap();
    let mut packet = Message::new(Code::AccessAccept, 0);
    let err = d.add_pair(&mut packet, &pair, b"s", &[0; 16]).unwrap_err();
    assert!(matches!(err, PairError::Encode { .. }), "{err}");
    let tagged_big = d.parse_pair("Tunnel-Type:1 = 16777216").unwrap();
    assert!(d
        .add_pair(&mut packet, &tagged_big, b"s", &[0; 16])
        .is_err());
    assert!(packet.attributes.is_empty(), "nothing half-added");
}

#[test]
fn radclient_files_with_several_packets() {
    let d = dict();
    let packets = d
        .parse_packets(
            "# first\nUser-Name = \"a,b\", NAS-Port = 1\n\n\n\
             User-Name = c\nAcct-Status-Type = Start # trailing comment\n",
        )
        .unwrap();
    assert_eq!(packets.len(), 2);
    assert_eq!(packets[0][0].value, Value::String(b"a,b".to_vec()));
    assert_eq!(packets[0].len(), 2);
    assert_eq!(packets[1][1].value, Value::Integer(1));
}

#[test]
fn tlv_and_array_attributes() {
    let d = Dictionary::parse_str(
        "t",
        "VENDOR V 99\nBEGIN-VENDOR V\n\
         ATTRIBUTE V-Container 1 tlv\n\
         ATTRIBUTE V-Dns 2 ipaddr array\n\
         END-VENDOR V\n\
         BEGIN-TLV V-Container\nATTRIBUTE V-Inner-Int 1 integer\nATTRIBUTE V-Inner-Str 2 string\nEND-TLV V-Container\n",
    )
    .unwrap();
    let mut packet = Message::new(Code::AccessAccept, 0);
    for text in ["V-Inner-Int = 7", "V-Inner-Str = \"hi\""] {
        d.add_pair(&mut packet, &d.parse_pair(text).unwrap(), b"s", &[0; 16])
            .unwrap();
    }
    assert_eq!(
        packet.attributes.get(0).unwrap().value,
        [0, 0, 0, 99, 1, 8, 1, 6, 0, 0, 0, 7],
        "vendor 99, type 1 len 8 holding sub-TLV 1 len 6"
    );
    let texts: Vec<String> = d
        .decode_pairs(&packet, None)
        .iter()
        .map(|p| p.to_text(&d))
        .collect();
    assert_eq!(texts, ["V-Inner-Int = 7", "V-Inner-Str = \"hi\""]);

    let mut packet = Message::new(Code::AccessAccept, 0);
    packet
        .add_vsa(&d, 99, 2, &[127, 0, 0, 1, 127, 0, 0, 2])
        .unwrap();
    let texts: Vec<String> = d
        .decode_pairs(&packet, None)
        .iter()
        .map(|p| p.to_text(&d))
        .collect();
    assert_eq!(texts, ["V-Dns = 127.0.0.1", "V-Dns = 127.0.0.2"]);
}

#[test]
fn malformed_typed_values_come_out_raw() {
    let d = dict();
    let mut packet = Message::new(Code::AccessRequest, 0);
    packet.add(4, [1, 2, 3]).unwrap(); // NAS-IP-Address must be 4 octets.
    packet.add(26, [0, 0, 0x19]).unwrap(); // Vendor-Specific too short for a Vendor-Id.
    packet.add(241, []).unwrap(); // Extended with no Extended-Type.
    let texts: Vec<String> = d
        .decode_pairs(&packet, None)
        .iter()
        .map(|p| p.to_text(&d))
        .collect();
    assert_eq!(
        texts,
        ["Attr-4 = 0x010203", "Attr-26 = 0x000019", "Attr-241 = 0x"]
    );
}
