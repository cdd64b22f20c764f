//! Property tests: codec and text round trips, crypto inverses, decoding arbitrary bytes never
//! panics, and [`Message`] edits agree with the plain `Vec` of attributes it replaced.

use std::net::{Ipv4Addr, Ipv6Addr};

use brasa_radius::auth;
use brasa_radius::vsa::vsa_split;
use brasa_radius::{
    AttrId, AttributeDef, Code, Dictionary, Encrypt, Message, Op, Pair, Value, ValueType,
};
use proptest::prelude::*;

fn raw_attribute() -> impl Strategy<Value = (u8, Vec<u8>)> {
    (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..=253))
}

/// A valid datagram: header and well-formed attributes within 4096 octets.
fn datagram() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<[u8; 16]>(),
        proptest::collection::vec(raw_attribute(), 0..15),
    )
        .prop_map(|(code, identifier, authenticator, attributes)| {
            let mut bytes = vec![code, identifier, 0, 0];
            bytes.extend_from_slice(&authenticator);
            for (typ, value) in attributes {
                bytes.push(typ);
                bytes.push(2 + value.len() as u8);
                bytes.extend_from_slice(&value);
            }
            let length = bytes.len() as u16;
            bytes[2..4].copy_from_slice(&length.to_be_bytes());
            bytes
        })
        .prop_filter("fits 4096 octets", |b| b.len() <= 4096)
}

/// The owned packet as it was before [`Message`]: a `Vec` of (type, value) with the same
/// editing rules, kept here as the reference the one-buffer form must agree with.
#[derive(Clone, Debug)]
struct Reference {
    attributes: Vec<(u8, Vec<u8>)>,
}

impl Reference {
    fn set(&mut self, typ: u8, value: &[u8]) {
        match self.attributes.iter().position(|a| a.0 == typ) {
            Some(first) => {
                self.attributes[first].1 = value.to_vec();
                let mut index = 0;
                self.attributes.retain(|a| {
                    let keep = a.0 != typ || index == first;
                    index += 1;
                    keep
                });
            }
            None => self.attributes.push((typ, value.to_vec())),
        }
    }

    fn remove(&mut self, typ: u8) -> usize {
        let before = self.attributes.len();
        self.attributes.retain(|a| a.0 != typ);
        before - self.attributes.len()
    }

    fn remove_vsa(&mut self, dict: &Dictionary, vendor: u32, typ: u32) -> usize {
        let format = dict.vendor_format(vendor);
        let mut removed = 0;
        self.attributes.retain_mut(|attr| {
            if attr.0 != 26 {
                return true;
            }
            let Some(subs) = vsa_split(&attr.1, vendor, format) else {
                return true;
            };
            let count = subs.iter().filter(|s| s.typ == typ).count();
            if count == 0 {
                return true;
            }
            removed += count;
            if count == subs.len() {
                return false;
            }
            let mut rebuilt = vendor.to_be_bytes().to_vec();
            for s in subs.iter().filter(|s| s.typ != typ) {
                rebuilt.extend_from_slice(s.raw);
            }
            attr.1 = rebuilt;
            true
        });
        removed
    }
}

/// One edit, applied to both forms.
#[derive(Clone, Debug)]
enum Edit {
    Add(u8, Vec<u8>),
    Set(u8, Vec<u8>),
    Remove(u8),
    Insert(usize, u8, Vec<u8>),
    Replace(usize, Vec<u8>),
    RemoveAt(usize),
    RemoveVsa(u32, u32),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Few distinct types, so that edits hit attributes that are there.
    let typ = prop_oneof![Just(1u8), Just(25), Just(26), Just(33), Just(80)];
    let value = proptest::collection::vec(any::<u8>(), 0..=40);
    prop_oneof![
        (typ.clone(), value.clone()).prop_map(|(t, v)| Edit::Add(t, v)),
        (typ.clone(), value.clone()).prop_map(|(t, v)| Edit::Set(t, v)),
        typ.clone().prop_map(Edit::Remove),
        (0usize..20, typ, value.clone()).prop_map(|(i, t, v)| Edit::Insert(i, t, v)),
        (0usize..20, value).prop_map(|(i, v)| Edit::Replace(i, v)),
        (0usize..20).prop_map(Edit::RemoveAt),
        (prop_oneof![Just(6527u32), Just(0)], 0u32..16).prop_map(|(v, t)| Edit::RemoveVsa(v, t)),
    ]
}

fn reference_of(message: &Message) -> Reference {
    Reference {
        attributes: message
            .attributes
            .iter()
            .map(|a| (a.typ, a.value.to_vec()))
            .collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_then_encode_gives_the_same_bytes(bytes in datagram()) {
        let message = Message::decode(&bytes).unwrap();
        prop_assert_eq!(message.encode().unwrap(), bytes);
    }

    #[test]
    fn edits_agree_with_the_reference(bytes in datagram(), edits in proptest::collection::vec(edit(), 0..24)) {
        let dict = Dictionary::builtin();
        let mut message = Message::decode(&bytes).unwrap();
        let mut reference = reference_of(&message);
        for edit in edits {
            match edit {
                Edit::Add(t, v) => {
                    message.add(t, &v).unwrap();
                    reference.attributes.push((t, v));
                }
                Edit::Set(t, v) => {
                    message.set(t, &v).unwrap();
                    reference.set(t, &v);
                }
                Edit::Remove(t) => prop_assert_eq!(message.remove(t), reference.remove(t)),
                Edit::Insert(i, t, v) => {
                    let done = message.attributes.insert(i, t, &v).is_ok();
                    prop_assert_eq!(done, i <= reference.attributes.len());
                    if done {
                        reference.attributes.insert(i, (t, v));
                    }
                }
                Edit::Replace(i, v) => {
                    let done = message.attributes.replace(i, &v).is_ok();
                    prop_assert_eq!(done, i < reference.attributes.len());
                    if done {
                        reference.attributes[i].1 = v;
                    }
                }
                Edit::RemoveAt(i) => {
                    let done = message.attributes.remove_at(i);
                    prop_assert_eq!(done, i < reference.attributes.len());
                    if done {
                        reference.attributes.remove(i);
                    }
                }
                Edit::RemoveVsa(vendor, t) => prop_assert_eq!(
                    message.remove_vsa(&dict, vendor, t),
                    reference.remove_vsa(&dict, vendor, t)
                ),
            }
            prop_assert_eq!(&reference_of(&message).attributes, &reference.attributes);
        }
        let mut expected = bytes[..20].to_vec();
        for (typ, value) in &reference.attributes {
            expected.push(*typ);
            expected.push(2 + value.len() as u8);
            expected.extend_from_slice(value);
        }
        let length = expected.len() as u16;
        expected[2..4].copy_from_slice(&length.to_be_bytes());
        match message.encode() {
            Ok(encoded) => prop_assert_eq!(encoded, expected),
            Err(_) => prop_assert!(expected.len() > 4096),
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let dict = Dictionary::builtin();
        if let Ok(p) = Message::decode(&bytes) {
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
        let mut p = Message::new(Code::AccessAccept, 0);
        for ((typ, mut value), v) in attrs.into_iter().zip(vendor_ids) {
            if typ == 26 && value.len() >= 4 {
                value[..4].copy_from_slice(&v.to_be_bytes());
            }
            p.add(typ, value).unwrap();
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
        let mut packet = Message::new(Code::AccessAccept, 1);
        dict.add_pair(&mut packet, &p, &secret, &ra).unwrap();
        let bytes = packet.encode().unwrap();
        let decoded = dict.decode_pairs(&Message::decode(&bytes).unwrap(), Some((&secret, &ra)));
        prop_assert_eq!(decoded, vec![p]);
    }
}
