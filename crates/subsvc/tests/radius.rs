//! Alc-Sub-Serv-* parameters of an Access-Accept or CoA-Request, and CoA-NAKs.

use brasa_radius::attr::{ERROR_CAUSE, PROXY_STATE};
use brasa_radius::{Code, Dictionary, ErrorCause, Message};
use brasa_subsvc::*;

fn message(code: Code, pairs: &str) -> Message {
    let dict = Dictionary::builtin();
    let mut message = Message::new(code, 7);
    for pair in dict.parse_pairs(pairs).unwrap() {
        dict.add_pair(&mut message, &pair, b"s", &[0; 16]).unwrap();
    }
    message
}

#[test]
fn tagged_attributes_are_grouped_and_concatenated_per_tag() {
    let accept = message(
        Code::AccessAccept,
        "Alc-Sub-Serv-Activate:1 = \"rate-limit;1000;\", \
         Alc-Sub-Serv-Activate:2 = \"video\", \
         Alc-Sub-Serv-Activate:1 = \"8000\", \
         Alc-Sub-Serv-Acct-Stats-Type:1 = volume-time, \
         Alc-Sub-Serv-Acct-Interim-Ivl:1 = 3600, \
         Alc-Sub-Serv-Deactivate:3 = \"old\", \
         Class = \"x\"",
    );
    let params = sub_svc_params(&accept).unwrap();
    assert_eq!(
        params,
        [
            SubSvcParams {
                tag: 1,
                activate: Some("rate-limit;1000;8000".into()),
                acct_stats_type: Some(AcctStatsType::VolumeTime),
                acct_interim_ivl: Some(3600),
                ..SubSvcParams::default()
            },
            SubSvcParams {
                tag: 2,
                activate: Some("video".into()),
                ..SubSvcParams::default()
            },
            SubSvcParams {
                tag: 3,
                deactivate: Some("old".into()),
                ..SubSvcParams::default()
            },
        ]
    );
    assert_eq!(
        sub_svc_params(&message(Code::AccessAccept, "Class = \"x\"")),
        Ok(vec![])
    );
}

#[test]
fn malformed_values_are_errors_with_invalid_attribute_value() {
    let unknown = message(Code::CoaRequest, "Alc-Sub-Serv-Acct-Stats-Type:2 = 9");
    let error = sub_svc_params(&unknown).unwrap_err();
    assert_eq!(error, ParamsError::UnknownStatsType { tag: 2, value: 9 });
    assert_eq!(error.error_cause(), ErrorCause::InvalidAttributeValue);
    let twice = message(
        Code::CoaRequest,
        "Alc-Sub-Serv-Acct-Interim-Ivl:1 = 300, Alc-Sub-Serv-Acct-Interim-Ivl:1 = 600",
    );
    assert_eq!(
        sub_svc_params(&twice),
        Err(ParamsError::Repeated { typ: 154, tag: 1 })
    );
    // A hand-made integer of the wrong length.
    let mut bad = Message::new(Code::CoaRequest, 1);
    bad.add(26, [0, 0, 0x19, 0x7f, 153, 5, 1, 0, 2]).unwrap();
    assert_eq!(
        sub_svc_params(&bad),
        Err(ParamsError::MalformedInteger { typ: 153 })
    );
    let mut not_utf8 = Message::new(Code::CoaRequest, 1);
    not_utf8
        .add(26, [0, 0, 0x19, 0x7f, 151, 5, 1, 0xff, 0xfe])
        .unwrap();
    assert_eq!(
        sub_svc_params(&not_utf8),
        Err(ParamsError::NotUtf8 { typ: 151, tag: 1 })
    );
}

#[test]
fn refusals_are_naked_with_their_error_cause() {
    let mut request = message(Code::CoaRequest, "Alc-Sub-Serv-Deactivate:1 = \"gone\"");
    request.add(PROXY_STATE, b"p1").unwrap();
    let cases = [
        (
            CoaRefusal::Service(ServiceError::NotActive("gone".into())),
            ErrorCause::SessionContextNotFound,
        ),
        (
            CoaRefusal::Service(ServiceError::Invalid(ValidationError::NoName)),
            ErrorCause::InvalidRequest,
        ),
        (
            CoaRefusal::Script("ValueError: x".into()),
            ErrorCause::InvalidRequest,
        ),
        (
            CoaRefusal::Service(ServiceError::TooManyPolicers {
                new: "s".into(),
                direction: Direction::Egress,
                count: 64,
            }),
            ErrorCause::ResourcesUnavailable,
        ),
    ];
    for (refusal, cause) in cases {
        let nak = refusal.answer(&request).unwrap();
        assert_eq!((nak.code, nak.identifier), (Code::CoaNak, 7));
        assert_eq!(
            ErrorCause::from_value(nak.get(ERROR_CAUSE).unwrap()),
            Some(cause),
            "{refusal}"
        );
        assert_eq!(nak.get(PROXY_STATE), Some(&b"p1"[..]));
    }
}
