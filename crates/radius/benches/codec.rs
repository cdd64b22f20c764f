//! Codec throughput: decode + encode of typical BNG packets, typed pair decoding, and
//! authenticator checks. `cargo bench -p brasa-radius --bench codec`.

use std::hint::black_box;

use brasa_radius::auth;
use brasa_radius::{wire, Code, Dictionary, Message};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SECRET: &[u8] = b"bench-secret";

fn build(dict: &Dictionary, code: Code, text: &str, authenticator: [u8; 16]) -> Vec<u8> {
    let mut packet = Message::new(code, 42);
    packet.authenticator = authenticator;
    for pair in dict.parse_pairs(text).unwrap() {
        dict.add_pair(&mut packet, &pair, SECRET, &authenticator)
            .unwrap();
    }
    packet.add(80, [0u8; 16]).unwrap();
    let mut bytes = packet.encode().unwrap();
    let context = auth::message_authenticator_context(code, &authenticator);
    auth::fill_message_authenticator(&mut bytes, &context, SECRET);
    if code.has_signed_request_authenticator() {
        auth::sign_request(&mut bytes, SECRET);
    }
    bytes
}

/// An IPoE/PPPoE Access-Request as a Nokia BNG sends it.
const ACCESS_REQUEST: &str = "User-Name = \"00:51:00:dd:01:01@isp.example\"
User-Password = \"subscriber-password\"
NAS-IP-Address = 127.0.0.1, NAS-Port = 1073741824, NAS-Port-Type = PPPoEoQinQ
NAS-Port-Id = \"1/1/4:100.10\", NAS-Identifier = \"bng-1\"
Service-Type = Framed-User, Framed-Protocol = PPP
Calling-Station-Id = \"00:51:00:dd:01:01\", Called-Station-Id = \"bng-1\"
ADSL-Agent-Circuit-Id = \"access-node-7 eth 1/1/4:100\", ADSL-Agent-Remote-Id = \"line-0042\"
Alc-Client-Hardware-Addr = \"00:51:00:dd:01:01\"";

/// An interim Accounting-Request with the common counters and Nokia VSAs.
const ACCOUNTING_REQUEST: &str = "User-Name = \"00:51:00:dd:01:01@isp.example\"
Acct-Status-Type = Interim-Update, Acct-Session-Id = \"D8A3B7000001F2564E5A1B3C\"
Acct-Multi-Session-Id = \"D8A3B7000001F2564E5A1B3B\"
NAS-IP-Address = 127.0.0.1, NAS-Port-Id = \"1/1/4:100.10\", NAS-Port-Type = PPPoEoQinQ
Framed-IP-Address = 127.0.0.77, Framed-IPv6-Prefix = 2001:db8:1234::/48
Delegated-IPv6-Prefix = 2001:db8:5678::/56
Class = 0x636c6173732d31, Class = 0x636c6173732d32
Acct-Session-Time = 3600, Acct-Input-Octets = 123456789, Acct-Output-Octets = 987654321
Acct-Input-Gigawords = 1, Acct-Output-Gigawords = 3
Acct-Input-Packets = 1234567, Acct-Output-Packets = 7654321
Event-Timestamp = 1700000000, Acct-Delay-Time = 0, Acct-Authentic = RADIUS
Alc-Subsc-ID-Str = \"sub-42\", Alc-Subsc-Prof-Str = \"residential\", Alc-SLA-Prof-Str = \"gold-100m\"
Alc-Acct-I-Inprof-Octets-64 = 0x00000000075bcd15, Alc-Acct-O-Inprof-Octets-64 = 0x000000003ade68b1
Alc-Sub-Serv-Activate = \"rate-limit;1000;8000\"";

fn codec(c: &mut Criterion) {
    let dict = Dictionary::builtin();
    let ra: [u8; 16] = core::array::from_fn(|i| (i * 7) as u8);
    let access = build(&dict, Code::AccessRequest, ACCESS_REQUEST, ra);
    let accounting = build(&dict, Code::AccountingRequest, ACCOUNTING_REQUEST, [0; 16]);

    let mut group = c.benchmark_group("radius");
    group.throughput(Throughput::Elements(1));
    for (name, bytes) in [
        ("access_request", &access),
        ("accounting_request", &accounting),
    ] {
        group.bench_function(format!("{name}_decode_encode_{}B", bytes.len()), |b| {
            b.iter(|| {
                let packet = Message::decode(black_box(bytes)).unwrap();
                black_box(packet.encode().unwrap())
            })
        });
        group.bench_function(format!("{name}_wire_walk"), |b| {
            b.iter(|| {
                let view = wire::Packet::new_checked(black_box(&bytes[..])).unwrap();
                black_box(view.attributes().map(|a| a.value.len()).sum::<usize>())
            })
        });
        group.bench_function(format!("{name}_decode_pairs"), |b| {
            let packet = Message::decode(bytes).unwrap();
            b.iter(|| black_box(dict.decode_pairs(black_box(&packet), Some((SECRET, &ra)))))
        });
    }
    // What the proxy does to every request it forwards: decode, drop the NAS's
    // Message-Authenticator and put a fresh one first, append its own Proxy-State, encode; and to
    // every reply: decode, strip its Proxy-State, encode.
    let with_state = {
        let mut packet = Message::decode(&access).unwrap();
        packet.add(33, [0u8, 0, 0, 7]).unwrap();
        packet.encode().unwrap()
    };
    group.bench_function("proxy_edit_request", |b| {
        b.iter(|| {
            let mut packet = Message::decode(black_box(&access)).unwrap();
            packet.remove(80);
            packet.attributes.insert(0, 80, &[0; 16]).unwrap();
            packet.add(33, [0u8, 0, 0, 7]).unwrap();
            black_box(packet.encode().unwrap())
        })
    });
    group.bench_function("proxy_edit_reply", |b| {
        b.iter(|| {
            let mut packet = Message::decode(black_box(&with_state)).unwrap();
            packet.remove(33);
            black_box(packet.encode().unwrap())
        })
    });
    group.bench_function("access_request_message_authenticator_verify", |b| {
        b.iter(|| {
            assert_eq!(
                auth::check_message_authenticator(black_box(&access), &ra, SECRET),
                auth::MessageAuthenticator::Valid
            )
        })
    });
    group.bench_function("accounting_request_authenticator_verify", |b| {
        b.iter(|| assert!(auth::verify_request(black_box(&accounting), SECRET)))
    });
    group.bench_function("user_password_reveal", |b| {
        let packet = Message::decode(&access).unwrap();
        let hidden = packet.get(2).unwrap().to_vec();
        b.iter(|| black_box(auth::reveal_user_password(black_box(&hidden), SECRET, &ra).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
