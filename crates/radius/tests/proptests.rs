//! Property tests: codec and text round trips, crypto inverses, and decoding arbitrary bytes
//! never panics.

use std::net::{Ipv4Addr, Ipv6Addr};

use brasa_radius::auth;
use brasa_radius::{
    AttrId, AttributeDef, Code, Dictionary, Encrypt, Op, Packet, Pair, RawAttribute, Value,
    ValueType,
};
use proptest::prelude::*;

fn raw_attribute() -> impl Strategy<Value = RawAttribute> {
    (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..=253))
        .prop_map(|(typ, value)| RawAttribute { typ, value })
}

fn packet() -> impl Strategy<Value = Packet> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<[u8; 16]>(),
        proptest::collection::vec(raw_attribute(), 0..15),
    )
        .prop_map(|(code, identifier, authenticator, attributes)| Packet {
            code: Code::from(code),
            identifier,
            authenticator,
            attributes,
        })
        .prop_filter("fits 4096 octets", |p| p.encoded_len() <= 4096)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn packet_encode_decode_round_trip(p in packet()) {
        let bytes = p.encode().unwrap();
        prop_assert_eq!(Packet::decode(&bytes).unwrap(), p);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let dict = Dictionary::builtin();
        if let Ok(p) = Packet::decode(&bytes) {
            let _ = dict.decode_pairs(&p, Some((b"secret", &[0; 16])));
            let _ = auth::check_message_authenticator(&bytes, &[0; 16], b"s");
        }
    }

    #[test]
    fn decoding_well_framed_random_attributes_never_panics(
        attrs in proptest::collection::vec(raw_attribute(), 0..12),
        vendor_ids in proptest::collection::vec(prop_oneof![Just(6527u32), Just(3561), Just(429), any::<u32>()], 12),
    ) {
        // Random values under well-formed TLVs reach the typed decoders (VSA, extended, tags).
        let dict = Dictionary::builtin();
        let mut p = Packet::new(Code::AccessAccept, 0);
        for (mut a, v) in attrs.into_iter().zip(vendor_ids) {
            if a.typ == 26 && a.value.len() >= 4 {
                a.value[..4].copy_from_slice(&v.to_be_bytes());
            }
            p.attributes.push(a);
        }
        let pairs = dict.decode_pairs(&p, Some((b"secret", &[7; 16])));
        for pair in &pairs {
            let _ = pair.to_text(&dict);
        }
    }

    #[test]
    fn user_password_hiding_inverts(pw in proptest::collection::vec(1u8.., 0..=128), secret in proptest::collection::vec(any::<u8>(), 1..40), ra in any::<[u8; 16]>()) {
        let hidden = auth::hide_user_password(&pw, &secret, &ra);
        prop_assert_eq!(auth::reveal_user_password(&hidden, &secret, &ra).unwrap(), pw);
    }

    #[test]
    fn tunnel_password_hiding_inverts(pw in proptest::collection::vec(any::<u8>(), 0..=239), secret in proptest::collection::vec(any::<u8>(), 1..40), ra in any::<[u8; 16]>(), salt in any::<u16>()) {
        let hidden = auth::hide_tunnel_password(&pw, &secret, &ra, salt);
        prop_assert_eq!(auth::reveal_tunnel_password(&hidden, &secret, &ra).unwrap(), pw);
    }

    #[test]
    fn ascend_secret_hiding_inverts(v in proptest::collection::vec(1u8.., 0..=16), secret in proptest::collection::vec(any::<u8>(), 1..40), ra in any::<[u8; 16]>()) {
        let hidden = auth::hide_ascend_secret(&v, &secret, &ra);
        prop_assert_eq!(auth::reveal_ascend_secret(&hidden, &secret, &ra).unwrap(), v);
    }
}

/// Attributes of the built-in dictionary that carry a value on the wire.
fn wire_attributes() -> Vec<AttributeDef> {
    let dict = Dictionary::builtin();
    let mut defs: Vec<AttributeDef> = dict
        .attributes()
        .filter(|d| {
            !d.is_virtual
                && !matches!(d.id, AttrId::Internal(_))
                && !matches!(
                    d.kind,
                    ValueType::Tlv
                        | ValueType::Vsa
                        | ValueType::Extended
                        | ValueType::LongExtended
                        | ValueType::Evs
                )
        })
        .cloned()
        .collect();
    defs.sort_by(|a, b| a.name.cmp(&b.name));
    defs
}

fn value_for(def: &AttributeDef) -> BoxedStrategy<Value> {
    let no_nul = || proptest::collection::vec(1u8.., 1..=16);
    match (def.kind, def.encrypt) {
        (ValueType::String, Encrypt::UserPassword) => no_nul().prop_map(Value::String).boxed(),
        (ValueType::String, Encrypt::AscendSecret) => no_nul().prop_map(Value::String).boxed(),
        (ValueType::String, _) => proptest::collection::vec(any::<u8>(), 0..120)
            .prop_filter("a leading tag-like octet would read as a tag", |v| {
                v.first().is_none_or(|b| !(1..=0x1f).contains(b))
            })
            .prop_map(Value::String)
            .boxed(),
        (ValueType::Octets | ValueType::Abinary, _) => {
            let len = def.fixed_len.map_or(0..120, |n| n..n + 1);
            proptest::collection::vec(any::<u8>(), len)
                .prop_map(Value::Octets)
                .boxed()
        }
        (ValueType::Integer, _) if def.has_tag => {
            (0u32..0x0100_0000).prop_map(Value::Integer).boxed()
        }
        (ValueType::Integer, _) => any::<u32>().prop_map(Value::Integer).boxed(),
        (ValueType::Integer64, _) => any::<u64>().prop_map(Value::Integer64).boxed(),
        (ValueType::Signed, _) => any::<i32>().prop_map(Value::Signed).boxed(),
        (ValueType::Date, _) => any::<u32>().prop_map(Value::Date).boxed(),
        (ValueType::IpAddr | ValueType::ComboIp, _) => any::<[u8; 4]>()
            .prop_map(|a| Value::IpAddr(Ipv4Addr::from(a)))
            .boxed(),
        (ValueType::Ipv6Addr, _) => any::<[u8; 16]>()
            .prop_map(|a| Value::Ipv6Addr(Ipv6Addr::from(a)))
            .boxed(),
        (ValueType::Ipv6Prefix, _) => (0u8..=128, any::<u128>())
            .prop_map(|(len, bits)| {
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(len))
                };
                Value::Ipv6Prefix(len, Ipv6Addr::from(bits & mask))
            })
            .boxed(),
        (ValueType::Ipv4Prefix, _) => (0u8..=32, any::<u32>())
            .prop_map(|(len, bits)| {
                let mask = if len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(len))
                };
                Value::Ipv4Prefix(len, Ipv4Addr::from(bits & mask))
            })
            .boxed(),
        (ValueType::Ifid, _) => any::<[u8; 8]>().prop_map(Value::Ifid).boxed(),
        (ValueType::Byte, _) => any::<u8>().prop_map(Value::Byte).boxed(),
        (ValueType::Short, _) => any::<u16>().prop_map(Value::Short).boxed(),
        (ValueType::Ether, _) => any::<[u8; 6]>().prop_map(Value::Ether).boxed(),
        (other, _) => panic!("no generator for {other:?}"),
    }
}

fn pair() -> impl Strategy<Value = Pair> {
    let defs = wire_attributes();
    (0..defs.len()).prop_flat_map(move |i| {
        let def = defs[i].clone();
        let tag = if def.has_tag {
            proptest::option::of(1u8..=31).boxed()
        } else {
            Just(None).boxed()
        };
        (value_for(&def), tag).prop_map(move |(value, tag)| Pair {
            attr: def.id.clone(),
            name: def.name.clone(),
            tag,
            op: Op::Equal,
            value,
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn text_round_trip(p in pair(), op in prop_oneof![Just(Op::Equal), Just(Op::Set), Just(Op::Add)]) {
        let dict = Dictionary::builtin();
        let p = Pair { op, ..p };
        let text = p.to_text(&dict);
        prop_assert_eq!(dict.parse_pair(&text).unwrap(), p, "{}", text);
    }

    #[test]
    fn wire_round_trip(p in pair(), secret in proptest::collection::vec(any::<u8>(), 1..20), ra in any::<[u8; 16]>()) {
        let dict = Dictionary::builtin();
        // Includes integers hidden with encrypt=2 (Alc-LI-*) and tagged Tunnel-Password.
        let mut packet = Packet::new(Code::AccessAccept, 1);
        dict.add_pair(&mut packet, &p, &secret, &ra).unwrap();
        let bytes = packet.encode().unwrap();
        let decoded = dict.decode_pairs(&Packet::decode(&bytes).unwrap(), Some((&secret, &ra)));
        prop_assert_eq!(decoded, vec![p]);
    }
}
