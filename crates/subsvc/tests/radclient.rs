//! Interop with FreeRADIUS's `radclient`: a CoA-Request with tagged Alc-Sub-Serv-* attributes
//! as radclient encodes them, read by `sub_svc_params`; the service it asks for is invalid,
//! and radclient receives the CoA-NAK with its Error-Cause.

use std::net::UdpSocket;
use std::thread;
use std::time::Duration;

use brasa_radius::{auth, Message};
use brasa_subsvc::*;
use brasa_testkit::radclient;

const SECRET: &str = "subsvc-interop";

/// The service a request's parameters "rate;<pir>;<cir>" ask for (what an operator's
/// script would build).
fn service_of(params: &SubSvcParams) -> SubscriberService {
    let text = params.activate.as_deref().unwrap_or_default();
    let mut fields = text.split(';').skip(1).map(|f| f.parse::<u32>().unwrap());
    let mut rule = PccRule::new("rate-up", Direction::Ingress);
    rule.flows.push(Flow {
        dst_ip: Some("10.1.1.0/24".parse().unwrap()),
        ..Flow::default()
    });
    rule.actions.rate_limit = Some(RateLimit {
        pir_kbps: fields.next().unwrap(),
        cir_kbps: fields.next(),
    });
    let mut service = SubscriberService::new(text);
    service.acct_stats_type = params.acct_stats_type.unwrap_or_default();
    service.rules.push(rule);
    service
}

#[test]
fn serial_radclient_coa_with_an_invalid_rule_is_naked_with_invalid_request() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let responder = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let (len, from) = socket.recv_from(&mut buf).unwrap();
        let bytes = &buf[..len];
        assert!(auth::verify_request(bytes, SECRET.as_bytes()));
        let request = Message::decode(bytes).unwrap();
        let params = sub_svc_params(&request).unwrap();
        let mut services = SubscriberServices::new();
        let refusal = services
            .apply_all(params.iter().map(|p| ServiceRequest::Add(service_of(p))))
            .map_err(|(_, e)| CoaRefusal::from(e))
            .unwrap_err();
        assert!(services.is_empty());
        let mut out = refusal.answer(&request).unwrap().encode().unwrap();
        auth::sign_response(&mut out, &request.authenticator, SECRET.as_bytes());
        socket.send_to(&out, from).unwrap();
        params
    });
    // FreeRADIUS's dictionary lacks the Alc-Sub-Serv-* attributes: they go raw, as an AAA
    // server without brasa's dictionary sends them. Tag 1; "rate;1000;" and "2000" in two
    // attributes (a parameter list may cross an attribute boundary); stats type 2 with the
    // tag in the top octet.
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let input = format!(
        "Attr-26.6527.151 = 0x01{}, Attr-26.6527.151 = 0x01{}, Attr-26.6527.153 = 0x01000002\n",
        hex("rate;1000;"),
        hex("2000")
    );
    let server = format!("127.0.0.1:{port}").parse().unwrap();
    let text = radclient::text(&radclient::radclient(server, "coa", SECRET, &input, &[]));
    let params = responder.join().unwrap();
    assert_eq!(
        params,
        [SubSvcParams {
            tag: 1,
            activate: Some("rate;1000;2000".into()),
            acct_stats_type: Some(AcctStatsType::VolumeTime),
            ..SubSvcParams::default()
        }]
    );
    assert!(text.contains("Received CoA-NAK"), "{text}");
    assert!(text.contains("Error-Cause = Invalid-Request"), "{text}");
}
