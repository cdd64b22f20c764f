//! Byte-vector tests: RFC 2865 §7 examples, and authenticator / Message-Authenticator /
//! Tunnel-Password / Ascend vectors computed independently with Python's `hashlib` and `hmac`.

use brasa_radius::auth::{self, MessageAuthenticator};
use brasa_radius::{AttrId, Code, Dictionary, Message, Value};

const SECRET: &[u8] = b"xyzzy5461";

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn auth16(bytes: &[u8]) -> [u8; 16] {
    bytes[4..20].try_into().unwrap()
}

fn texts(dict: &Dictionary, packet: &Message, crypt: Option<(&[u8], &[u8; 16])>) -> Vec<String> {
    dict.decode_pairs(packet, crypt)
        .iter()
        .map(|p| p.to_text(dict))
        .collect()
}

// RFC 2865 §7.1: PAP user "nemo" / "arctangent" telnetting to a host.
const RFC_7_1_REQUEST: &str = "01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb
    98 f4 22 7a 01 06 6e 65 6d 6f 02 12 0d be 70 8d 93 d4 13 ce 31 96 e4 3f 78 2a
    0a ee 04 06 c0 a8 01 10 05 06 00 00 00 03";
const RFC_7_1_ACCEPT: &str = "02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf
    9b 55 e0 b2 06 06 00 00 00 01 0f 06 00 00 00 00 0e 06 c0 a8 01 03";

#[test]
fn rfc2865_7_1_pap() {
    let dict = Dictionary::builtin();
    let request = unhex(RFC_7_1_REQUEST);
    let packet = Message::decode(&request).unwrap();
    assert_eq!(packet.code, Code::AccessRequest);
    assert_eq!(packet.encode().unwrap(), request);
    let ra = auth16(&request);
    let hidden = packet.get(2).unwrap();
    assert_eq!(
        auth::reveal_user_password(hidden, SECRET, &ra).unwrap(),
        b"arctangent"
    );
    assert_eq!(auth::hide_user_password(b"arctangent", SECRET, &ra), hidden);
    assert_eq!(
        texts(&dict, &packet, Some((SECRET, &ra))),
        [
            "User-Name = \"nemo\"",
            "User-Password = \"arctangent\"",
            "NAS-IP-Address = 192.168.1.16",
            "NAS-Port = 3"
        ]
    );
    // Without the secret the password stays hidden, as raw octets.
    assert_eq!(
        texts(&dict, &packet, None)[1],
        "Attr-2 = 0x0dbe708d93d413ce3196e43f782a0aee"
    );

    // Rebuild the request from text pairs: the same bytes come out.
    let mut rebuilt = Message::new(Code::AccessRequest, 0);
    rebuilt.authenticator = ra;
    let pairs = dict
        .parse_pairs("User-Name = nemo, User-Password = \"arctangent\"\nNAS-IP-Address = 192.168.1.16, NAS-Port = 3")
        .unwrap();
    for pair in &pairs {
        dict.add_pair(&mut rebuilt, pair, SECRET, &ra).unwrap();
    }
    assert_eq!(rebuilt.encode().unwrap(), request);

    let accept = unhex(RFC_7_1_ACCEPT);
    assert!(auth::verify_response(&accept, &ra, SECRET));
    assert!(!auth::verify_response(&accept, &ra, b"wrong"));
    let mut resigned = accept.clone();
    resigned[4..20].fill(0);
    auth::sign_response(&mut resigned, &ra, SECRET);
    assert_eq!(resigned, accept);
    let packet = Message::decode(&accept).unwrap();
    assert_eq!(
        texts(&dict, &packet, None),
        [
            "Service-Type = Login-User",
            "Login-Service = Telnet",
            "Login-IP-Host = 192.168.1.3"
        ]
    );
}

#[test]
fn rfc2865_7_2_chap() {
    let dict = Dictionary::builtin();
    let request = unhex(
        "01 01 00 47 2a ee 86 f0 8d 0d 55 96 9c a5 97 8e 0d 33 67 a2 01 08 66 6c 6f 70 73 79
         03 13 16 e9 75 57 c3 16 18 58 95 f2 93 ff 63 44 07 72 75 04 06 c0 a8 01 10 05 06 00
         00 00 14 06 06 00 00 00 02 07 06 00 00 00 01",
    );
    let accept = unhex(
        "02 01 00 38 15 ef bc 7d ab 26 cf a3 dc 34 d9 c0 3c 86 01 a4 06 06 00 00 00 02 07 06
         00 00 00 01 08 06 ff ff ff fe 0a 06 00 00 00 02 0d 06 00 00 00 01 0c 06 00 00 05 dc",
    );
    let packet = Message::decode(&request).unwrap();
    assert_eq!(
        texts(&dict, &packet, None),
        [
            "User-Name = \"flopsy\"",
            "CHAP-Password = 0x16e97557c316185895f293ff6344077275",
            "NAS-IP-Address = 192.168.1.16",
            "NAS-Port = 20",
            "Service-Type = Framed-User",
            "Framed-Protocol = PPP"
        ]
    );
    assert!(auth::verify_response(&accept, &auth16(&request), SECRET));
    let reply = Message::decode(&accept).unwrap();
    assert_eq!(
        texts(&dict, &reply, None),
        [
            "Service-Type = Framed-User",
            "Framed-Protocol = PPP",
            "Framed-IP-Address = 255.255.255.254",
            "Framed-Routing = Listen",
            "Framed-Compression = Van-Jacobson-TCP-IP",
            "Framed-MTU = 1500"
        ]
    );
}

#[test]
fn accounting_request_authenticator() {
    // Python: md5(code+id+len + 16 zero octets + attrs + secret).
    let expected =
        unhex("04050029fb864f96065615d146dfaa18376846ed01066e656d6f2806000000012c0930303030303031");
    let mut packet = Message::new(Code::AccountingRequest, 5);
    packet.add(1, "nemo").unwrap();
    packet.add(40, 1u32.to_be_bytes()).unwrap();
    packet.add(44, "0000001").unwrap();
    let mut bytes = packet.encode().unwrap();
    auth::sign_request(&mut bytes, SECRET);
    assert_eq!(bytes, expected);
    assert!(auth::verify_request(&bytes, SECRET));
    bytes[25] ^= 1;
    assert!(!auth::verify_request(&bytes, SECRET));
}

#[test]
fn coa_request_with_message_authenticator() {
    // RFC 5176 §3 + RFC 3579 §3.2: MA computed over the zero authenticator, then the
    // request authenticator over the packet including the MA.
    let expected = unhex(
        "2b09002a750bfaef7c9da69d8328cc02dc57d8852c0473315012805f84d49a2c96b195877077efb2f2c0",
    );
    let mut packet = Message::new(Code::CoaRequest, 9);
    packet.add(44, "s1").unwrap();
    packet.add(80, [0u8; 16]).unwrap();
    let mut bytes = packet.encode().unwrap();
    assert!(auth::fill_message_authenticator(
        &mut bytes, &[0; 16], SECRET
    ));
    auth::sign_request(&mut bytes, SECRET);
    assert_eq!(bytes, expected);
    assert!(auth::verify_request(&bytes, SECRET));
    assert_eq!(
        auth::check_message_authenticator(&bytes, &[0; 16], SECRET),
        MessageAuthenticator::Valid
    );
}

#[test]
fn access_request_and_accept_message_authenticator() {
    let ra: [u8; 16] = core::array::from_fn(|i| i as u8);
    let expected_request = unhex(
        "0107002b000102030405060708090a0b0c0d0e0f0105626f625012e53cea2431682544d909c4c32ae6d827",
    );
    let mut request = Message::new(Code::AccessRequest, 7);
    request.authenticator = ra;
    request.add(1, "bob").unwrap();
    request.add(80, [0u8; 16]).unwrap();
    let mut bytes = request.encode().unwrap();
    assert!(auth::fill_message_authenticator(&mut bytes, &ra, SECRET));
    assert_eq!(bytes, expected_request);
    assert_eq!(
        auth::check_message_authenticator(&bytes, &ra, SECRET),
        MessageAuthenticator::Valid
    );
    assert_eq!(
        auth::check_message_authenticator(&bytes, &ra, b"other"),
        MessageAuthenticator::Invalid
    );
    let mut tampered = bytes.clone();
    tampered[22] ^= 0x20;
    assert_eq!(
        auth::check_message_authenticator(&tampered, &ra, SECRET),
        MessageAuthenticator::Invalid
    );

    let expected_accept = unhex(
        "0207002a12d4ca88882671f0bdb15edfc3fe2c821204686950120c75d6f9b35b43903f210b090d326279",
    );
    let mut accept = Message::new(Code::AccessAccept, 7);
    accept.add(18, "hi").unwrap();
    accept.add(80, [0u8; 16]).unwrap();
    let mut bytes = accept.encode().unwrap();
    assert!(auth::fill_message_authenticator(&mut bytes, &ra, SECRET));
    auth::sign_response(&mut bytes, &ra, SECRET);
    assert_eq!(bytes, expected_accept);
    assert!(auth::verify_response(&bytes, &ra, SECRET));
    assert_eq!(
        auth::check_message_authenticator(&bytes, &ra, SECRET),
        MessageAuthenticator::Valid
    );

    // Absent and malformed.
    let plain = Message::new(Code::AccessRequest, 1).encode().unwrap();
    assert_eq!(
        auth::check_message_authenticator(&plain, &ra, SECRET),
        MessageAuthenticator::Absent
    );
    let mut short_ma = Message::new(Code::AccessRequest, 1);
    short_ma.add(80, [0u8; 4]).unwrap();
    let bytes = short_ma.encode().unwrap();
    assert_eq!(
        auth::check_message_authenticator(&bytes, &ra, SECRET),
        MessageAuthenticator::Malformed
    );
    let mut two = Message::new(Code::AccessRequest, 1);
    two.add(80, [0u8; 16]).unwrap();
    two.add(80, [0u8; 16]).unwrap();
    assert_eq!(
        auth::check_message_authenticator(&two.encode().unwrap(), &ra, SECRET),
        MessageAuthenticator::Malformed
    );
}

#[test]
fn tunnel_password_rfc2868() {
    let ra: [u8; 16] = core::array::from_fn(|i| i as u8);
    let expected = unhex("81237cb596ca3686ad6320dccb4733cdf67e");
    let hidden = auth::hide_tunnel_password(b"tunnelpw", SECRET, &ra, 0x0123);
    assert_eq!(hidden, expected, "salt high bit is forced on");
    assert_eq!(
        auth::reveal_tunnel_password(&hidden, SECRET, &ra).unwrap(),
        b"tunnelpw"
    );

    // Through the dictionary: tag octet first, then salt + cipher; decoded back with its tag.
    let dict = Dictionary::builtin();
    let pair = dict.parse_pair("Tunnel-Password:3 = \"tunnelpw\"").unwrap();
    let mut packet = Message::new(Code::AccessAccept, 1);
    dict.add_pair(&mut packet, &pair, SECRET, &ra).unwrap();
    let value = packet.get(69).unwrap();
    assert_eq!(value[0], 3);
    assert_eq!(value.len(), 1 + 2 + 16);
    assert_eq!(
        auth::reveal_tunnel_password(&value[1..], SECRET, &ra).unwrap(),
        b"tunnelpw"
    );
    let decoded = dict.decode_pairs(&packet, Some((SECRET, &ra)));
    assert_eq!(decoded, vec![pair.clone()]);
    assert_eq!(
        decoded[0].to_text(&dict),
        "Tunnel-Password:3 = \"tunnelpw\""
    );
}

#[test]
fn ascend_secret() {
    let ra: [u8; 16] = core::array::from_fn(|i| i as u8);
    let expected = unhex("c0d8792a51fc1cca9868f8baf0c3d433");
    assert_eq!(auth::hide_ascend_secret(b"ascend", SECRET, &ra), expected);
    assert_eq!(
        auth::reveal_ascend_secret(&expected, SECRET, &ra).unwrap(),
        b"ascend"
    );
}

#[test]
fn tagged_integer_replaces_top_octet() {
    let dict = Dictionary::builtin();
    let mut packet = Message::new(Code::AccessAccept, 1);
    for text in [
        "Tunnel-Type:1 = VLAN",
        "Tunnel-Medium-Type:1 = IEEE-802",
        "Tunnel-Private-Group-Id:1 = \"100\"",
    ] {
        let pair = dict.parse_pair(text).unwrap();
        dict.add_pair(&mut packet, &pair, SECRET, &[0; 16]).unwrap();
    }
    assert_eq!(
        packet.encode().unwrap()[20..],
        unhex("40 06 01 00 00 0d 41 06 01 00 00 06 51 06 01 31 30 30")[..]
    );
    assert_eq!(
        texts(&dict, &packet, None),
        [
            "Tunnel-Type:1 = VLAN",
            "Tunnel-Medium-Type:1 = IEEE-802",
            "Tunnel-Private-Group-Id:1 = \"100\""
        ]
    );
}

#[test]
fn vendor_specific_formats() {
    let dict = Dictionary::parse_str(
        "t",
        "VENDOR Alc 6527\nVENDOR USR 429 format=4,0\nVENDOR Starent 8164 format=2,2\n\
         BEGIN-VENDOR Alc\nATTRIBUTE Alc-Subsc-ID-Str 11 string\nATTRIBUTE Alc-Dyn-Serv-Script-Action 166 integer has_tag\nEND-VENDOR Alc\n\
         BEGIN-VENDOR USR\nATTRIBUTE USR-Thing 0x1234 integer\nEND-VENDOR USR\n\
         BEGIN-VENDOR Starent\nATTRIBUTE SN-Thing 300 string\nEND-VENDOR Starent\n",
    )
    .unwrap();
    let mut packet = Message::new(Code::AccessAccept, 1);
    for text in [
        "Alc-Subsc-ID-Str = \"sub-1\"",
        "Alc-Dyn-Serv-Script-Action:2 = 3",
        "USR-Thing = 7",
        "SN-Thing = \"ab\"",
    ] {
        let pair = dict.parse_pair(text).unwrap();
        dict.add_pair(&mut packet, &pair, SECRET, &[0; 16]).unwrap();
    }
    let expected = unhex(
        "1a 0d 00 00 19 7f 0b 07 73 75 62 2d 31
         1a 0c 00 00 19 7f a6 06 02 00 00 03
         1a 0e 00 00 01 ad 00 00 12 34 00 00 00 07
         1a 0c 00 00 1f e4 01 2c 00 06 61 62",
    );
    assert_eq!(packet.encode().unwrap()[20..], expected[..]);
    assert_eq!(
        packet.get_vsa(&dict, 6527, 11).as_deref(),
        Some(&b"sub-1"[..])
    );
    assert_eq!(
        packet.get_vsa(&dict, 8164, 300).as_deref(),
        Some(&b"ab"[..])
    );
    assert_eq!(
        texts(&dict, &packet, None),
        [
            "Alc-Subsc-ID-Str = \"sub-1\"",
            "Alc-Dyn-Serv-Script-Action:2 = 3",
            "USR-Thing = 7",
            "SN-Thing = \"ab\""
        ]
    );
    // Unknown vendor attribute decodes raw and re-encodes to the same bytes.
    let mut unknown = Message::new(Code::AccessAccept, 1);
    unknown.add_vsa(&dict, 6527, 200, b"\x01\x02").unwrap();
    let pairs = dict.decode_pairs(&unknown, None);
    assert_eq!(pairs[0].to_text(&dict), "Attr-26.6527.200 = 0x0102");
    let mut again = Message::new(Code::AccessAccept, 1);
    let reparsed = dict.parse_pair(&pairs[0].to_text(&dict)).unwrap();
    dict.add_pair(&mut again, &reparsed, SECRET, &[0; 16])
        .unwrap();
    assert_eq!(again, unknown);
    // remove_vsa drops emptied VSAs and keeps others.
    assert_eq!(packet.remove_vsa(&dict, 6527, 11), 1);
    assert_eq!(packet.attributes.len(), 3);
    assert_eq!(packet.remove_vsa(&dict, 6527, 11), 0);
}

#[test]
fn remove_vsa_rewrites_shared_vsa() {
    let dict = Dictionary::builtin();
    let mut packet = Message::new(Code::AccessAccept, 1);
    // One Vendor-Specific carrying two Alcatel sub-attributes (11 and 13).
    packet
        .add(26, unhex("00 00 19 7f 0b 03 61 0d 03 62"))
        .unwrap();
    assert_eq!(packet.get_vsa_all(&dict, 6527, 13), vec![b"b".to_vec()]);
    assert_eq!(packet.remove_vsa(&dict, 6527, 11), 1);
    assert_eq!(
        packet.attributes.get(0).unwrap().value,
        unhex("00 00 19 7f 0d 03 62")
    );
    let pairs = texts(&dict, &packet, None);
    assert_eq!(pairs, ["Alc-SLA-Prof-Str = \"b\""]);
}

#[test]
fn extended_and_long_extended() {
    let dict = Dictionary::parse_str(
        "t",
        "ATTRIBUTE E1 241 extended\nATTRIBUTE E5 245 long-extended\n\
         ATTRIBUTE EVS1 241.26 evs\nATTRIBUTE EVS5 245.26 evs\n\
         ATTRIBUTE Frag-Status 241.1 integer\nATTRIBUTE Big 245.4 octets\n\
         VENDOR Alc 6527\n\
         BEGIN-VENDOR Alc format=EVS1\nATTRIBUTE Alc-Ext 9 string\nEND-VENDOR Alc\n\
         BEGIN-VENDOR Alc format=EVS5\nATTRIBUTE Alc-Long 10 octets\nEND-VENDOR Alc\n",
    )
    .unwrap();
    let mut packet = Message::new(Code::AccessAccept, 1);
    for text in ["Frag-Status = 1", "Alc-Ext = \"x\""] {
        dict.add_pair(
            &mut packet,
            &dict.parse_pair(text).unwrap(),
            SECRET,
            &[0; 16],
        )
        .unwrap();
    }
    assert_eq!(
        packet.encode().unwrap()[20..],
        unhex("f1 07 01 00 00 00 01  f1 09 1a 00 00 19 7f 09 78")[..]
    );
    // A 300-octet long-extended value: fragments of 251 + 49, M flag on the first.
    let big = format!("Big = 0x{}", "ab".repeat(300));
    dict.add_pair(
        &mut packet,
        &dict.parse_pair(&big).unwrap(),
        SECRET,
        &[0; 16],
    )
    .unwrap();
    assert_eq!(packet.attributes.get(2).unwrap().typ, 245);
    assert_eq!(packet.attributes.get(2).unwrap().value[..2], [4, 0x80]);
    assert_eq!(packet.attributes.get(2).unwrap().value.len(), 253);
    assert_eq!(packet.attributes.get(3).unwrap().value[..2], [4, 0x00]);
    assert_eq!(packet.attributes.get(3).unwrap().value.len(), 2 + 49);
    // Long EVS: vendor header only in the first fragment.
    let long = format!("Alc-Long = 0x{}", "cd".repeat(260));
    dict.add_pair(
        &mut packet,
        &dict.parse_pair(&long).unwrap(),
        SECRET,
        &[0; 16],
    )
    .unwrap();
    assert_eq!(
        packet.attributes.get(4).unwrap().value[..8],
        unhex("1a 80 00 00 19 7f 0a cd")[..]
    );
    let decoded = dict.decode_pairs(&Message::decode(&packet.encode().unwrap()).unwrap(), None);
    assert_eq!(decoded.len(), 4);
    assert_eq!(decoded[0].value, Value::Integer(1));
    assert_eq!(
        decoded[1].attr,
        AttrId::ExtendedVendor {
            base: 241,
            vendor: 6527,
            typ: 9
        }
    );
    assert_eq!(decoded[2].value, Value::Octets(vec![0xab; 300]));
    assert_eq!(decoded[3].value, Value::Octets(vec![0xcd; 260]));
    assert_eq!(decoded[3].name, "Alc-Long");
}

#[test]
fn concat_attributes_split_and_join() {
    let dict = Dictionary::builtin();
    let eap: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
    let text = format!(
        "EAP-Message = 0x{}",
        eap.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let mut packet = Message::new(Code::AccessChallenge, 1);
    dict.add_pair(
        &mut packet,
        &dict.parse_pair(&text).unwrap(),
        SECRET,
        &[0; 16],
    )
    .unwrap();
    let lens: Vec<usize> = packet.get_all(79).map(<[u8]>::len).collect();
    assert_eq!(lens, [253, 253, 94]);
    let pairs = dict.decode_pairs(&packet, None);
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].value, Value::Octets(eap));
}

#[test]
fn reencrypt_for_proxying() {
    let dict = Dictionary::builtin();
    let (old_auth, new_auth) = ([1u8; 16], [2u8; 16]);
    let mut packet = Message::new(Code::AccessRequest, 1);
    for text in [
        "User-Name = \"bob\"",
        "User-Password = \"hello\"",
        "Alc-APN-Password = \"apn\"",
    ] {
        dict.add_pair(
            &mut packet,
            &dict.parse_pair(text).unwrap(),
            b"client",
            &old_auth,
        )
        .unwrap();
    }
    dict.reencrypt(&mut packet, b"client", &old_auth, b"upstream", &new_auth)
        .unwrap();
    assert_eq!(
        auth::reveal_user_password(packet.get(2).unwrap(), b"upstream", &new_auth).unwrap(),
        b"hello"
    );
    let pairs = texts(&dict, &packet, Some((b"upstream", &new_auth)));
    assert_eq!(
        pairs,
        [
            "User-Name = \"bob\"",
            "User-Password = \"hello\"",
            "Alc-APN-Password = \"apn\""
        ]
    );
    // A password that does not decrypt (wrong length) is an error and changes nothing.
    let mut broken = Message::new(Code::AccessRequest, 1);
    broken.add(2, [0u8; 5]).unwrap();
    let before = broken.clone();
    assert!(dict
        .reencrypt(&mut broken, b"a", &old_auth, b"b", &new_auth)
        .is_err());
    assert_eq!(broken, before);
}

#[test]
fn truncated_and_lying_packets_are_rejected() {
    let request = unhex(RFC_7_1_REQUEST);
    for cut in 0..request.len() {
        assert!(Message::decode(&request[..cut]).is_err(), "cut at {cut}");
    }
    let mut lying = request.clone();
    lying[3] = 0x37; // Length one short: the last attribute overruns.
    assert!(Message::decode(&lying).is_err());
}
