//! Interop with FreeRADIUS's `radclient` (package freeradius-utils): a tiny responder built on
//! this crate answers radclient on 127.0.0.1, checking radclient's authenticators,
//! Message-Authenticator and hidden password with our code, and radclient checks ours.

use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::Duration;

use brasa_radius::auth::{self, MessageAuthenticator};
use brasa_radius::{Code, Dictionary, Message};
use brasa_testkit::radclient as testkit;

const SECRET: &[u8] = b"interop-secret";

/// What the responder saw, for the test to assert on.
struct Seen {
    request_pairs: Vec<String>,
    message_authenticator: MessageAuthenticator,
    request_authenticator_ok: bool,
}

/// Answers one request with `reply` attributes (text pairs), signed with Message-Authenticator.
fn respond_once(socket: UdpSocket, reply_text: &'static str) -> thread::JoinHandle<Seen> {
    respond_once_signed(socket, reply_text, SECRET)
}

/// Like [`respond_once`], signing the reply with `reply_secret`.
fn respond_once_signed(
    socket: UdpSocket,
    reply_text: &'static str,
    reply_secret: &'static [u8],
) -> thread::JoinHandle<Seen> {
    thread::spawn(move || {
        let dict = Dictionary::builtin();
        let mut buf = [0u8; 4096];
        let (len, from) = socket.recv_from(&mut buf).unwrap();
        let bytes = &buf[..len];
        let request = Message::decode(bytes).unwrap();
        let ra = request.authenticator;
        let request_authenticator_ok = if request.code.has_signed_request_authenticator() {
            auth::verify_request(bytes, SECRET)
        } else {
            true
        };
        let context = auth::message_authenticator_context(request.code, &ra);
        let message_authenticator = auth::check_message_authenticator(bytes, &context, SECRET);
        let request_pairs = dict
            .decode_pairs(&request, Some((SECRET, &ra)))
            .iter()
            .map(|p| p.to_text(&dict))
            .collect();
        let code = match request.code {
            Code::AccessRequest => Code::AccessAccept,
            Code::AccountingRequest => Code::AccountingResponse,
            Code::CoaRequest => Code::CoaAck,
            Code::DisconnectRequest => Code::DisconnectAck,
            other => panic!("unexpected {other}"),
        };
        let mut reply = Message::new(code, request.identifier);
        for pair in dict.parse_pairs(reply_text).unwrap() {
            dict.add_pair(&mut reply, &pair, SECRET, &ra).unwrap();
        }
        reply.add(80, [0u8; 16]).unwrap();
        let mut out = reply.encode().unwrap();
        let context = auth::message_authenticator_context(code, &ra);
        assert!(auth::fill_message_authenticator(
            &mut out,
            &context,
            reply_secret
        ));
        auth::sign_response(&mut out, &ra, reply_secret);
        socket.send_to(&out, from).unwrap();
        Seen {
            request_pairs,
            message_authenticator,
            request_authenticator_ok,
        }
    })
}

fn radclient(port: u16, kind: &str, input: &str) -> String {
    let (ok, text) = run_radclient(port, kind, input);
    assert!(ok, "radclient failed:\n{text}");
    text
}

/// One try (`-r 1`): each responder answers once.
fn run_radclient(port: u16, kind: &str, input: &str) -> (bool, String) {
    let secret = std::str::from_utf8(SECRET).expect("the test secret is text");
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    let out = testkit::radclient(server, kind, secret, input, &["-r", "1"]);
    (out.status.success(), testkit::text(&out))
}

fn responder() -> (UdpSocket, u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

#[test]
fn serial_radclient_access_accept_with_vsa_tag_and_message_authenticator() {
    let (socket, port) = responder();
    let seen = respond_once(
        socket,
        "Class = \"class-1\", Class = \"class-2\", Class = \"class-3\"\n\
         Alc-Subsc-ID-Str = \"sub-42\"\n\
         Alc-SLA-Prof-Str = \"sla-gold\"\n\
         Tunnel-Type:1 = VLAN, Tunnel-Medium-Type:1 = IEEE-802, Tunnel-Private-Group-Id:1 = \"100\"\n\
         Framed-IP-Address = 127.0.0.9\n\
         Session-Timeout = 3600",
    );
    let out = radclient(
        port,
        "auth",
        "User-Name = \"bob\", User-Password = \"s3cr3t-password\", NAS-IP-Address = 127.0.0.1, Message-Authenticator = 0x00\n",
    );
    let seen = seen.join().unwrap();
    assert_eq!(seen.message_authenticator, MessageAuthenticator::Valid);
    assert!(
        seen.request_pairs
            .contains(&"User-Password = \"s3cr3t-password\"".to_string()),
        "{:?}",
        seen.request_pairs
    );
    assert!(seen
        .request_pairs
        .contains(&"User-Name = \"bob\"".to_string()));
    assert!(out.contains("Received Access-Accept"), "{out}");
    for expected in [
        "Class = 0x636c6173732d31",
        "Class = 0x636c6173732d32",
        "Class = 0x636c6173732d33",
        "Alc-Subsc-ID-Str = \"sub-42\"",
        "Alc-SLA-Prof-Str = \"sla-gold\"",
        "Tunnel-Type:1 = VLAN",
        "Tunnel-Medium-Type:1 = IEEE-802",
        "Tunnel-Private-Group-Id:1 = \"100\"",
        "Framed-IP-Address = 127.0.0.9",
        "Session-Timeout = 3600",
    ] {
        assert!(
            out.contains(expected),
            "radclient output lacks {expected:?}:\n{out}"
        );
    }
}

#[test]
fn serial_radclient_accounting_and_coa_authenticators() {
    let (socket, port) = responder();
    let seen = respond_once(socket, "");
    let out = radclient(
        port,
        "acct",
        "User-Name = \"bob\", Acct-Status-Type = Start, Acct-Session-Id = \"0001\", Event-Timestamp = 1700000000\n",
    );
    let seen = seen.join().unwrap();
    assert!(
        seen.request_authenticator_ok,
        "radclient's Accounting-Request authenticator"
    );
    assert!(out.contains("Received Accounting-Response"), "{out}");
    assert!(
        seen.request_pairs
            .contains(&"Event-Timestamp = \"Nov 14 2023 22:13:20 UTC\"".to_string()),
        "{:?}",
        seen.request_pairs
    );

    let (socket, port) = responder();
    let seen = respond_once(socket, "");
    let out = radclient(
        port,
        "coa",
        // FreeRADIUS's dictionary lacks Alc-Dyn-Serv-Script-Action (26.6527.166): send it raw,
        // tag 1 in the top octet, action 3; ours names it.
        "Acct-Session-Id = \"0001\", Attr-26.6527.166 = 0x01000003, Message-Authenticator = 0x00\n",
    );
    let seen = seen.join().unwrap();
    assert!(
        seen.request_pairs
            .contains(&"Alc-Dyn-Serv-Script-Action:1 = teardown".to_string()),
        "{:?}",
        seen.request_pairs
    );
    assert!(
        seen.request_authenticator_ok,
        "radclient's CoA-Request authenticator"
    );
    assert_eq!(seen.message_authenticator, MessageAuthenticator::Valid);
    assert!(out.contains("Received CoA-ACK"), "{out}");
}

#[test]
fn serial_radclient_rejects_a_reply_signed_with_another_secret() {
    // The counter-test of the ones above: the same reply signed with the wrong secret must be
    // refused by radclient, so their success really is radclient checking our signatures.
    let (socket, port) = responder();
    let seen = respond_once_signed(socket, "Reply-Message = \"x\"", b"not-the-secret");
    let (ok, out) = run_radclient(
        port,
        "auth",
        "User-Name = \"bob\", User-Password = \"pw\", Message-Authenticator = 0x00\n",
    );
    seen.join().unwrap();
    assert!(!ok, "radclient accepted a badly signed reply:\n{out}");
    assert!(!out.contains("Received Access-Accept"), "{out}");
}
