//! Table 5 of the Nokia SR OS dynamic data services guide, row by row: CoA and Disconnect
//! requests decided against data triggers, and the RFC 5176 answers.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use brasa_dynsvc::auth;
use brasa_dynsvc::coa::{self, CoaAction, CoaOutcome, RequestKind};
use brasa_dynsvc::{
    Authentication, CaptureSapConfig, DynService, DynServicesPolicy, ScriptAction, StatsType,
    TriggerFrame, Triggers, TriggersConfig,
};
use brasa_radius::{attr, Code, Dictionary, ErrorCause, Message};
use brasa_services::{MacAddr, PortMap, SapId};

fn sap(text: &str) -> SapId {
    SapId::parse(text).unwrap()
}

const TRIGGER: &str = "eth1:1214.101";
const OTHER: &str = "eth1:1214.102";

/// A sapCreated trigger on eth1:1214.101 owning its own SAP and eth1:1214.102; returns the
/// trigger's, its own service's and the other service's Acct-Session-Ids.
fn established(policies: &[&str]) -> (Triggers, [String; 3]) {
    let now = Instant::now();
    let mut triggers = Triggers::new(TriggersConfig::default());
    for name in policies {
        triggers.set_policy(
            name,
            DynServicesPolicy {
                authentication: Some(Authentication::Local { db: "db".into() }),
            },
        );
    }
    triggers
        .add_capture_sap(
            sap("eth1:1214.*"),
            CaptureSapConfig {
                policy: Some(policies[0].into()),
                host_lockout_policy: None,
            },
        )
        .unwrap();
    let frame = TriggerFrame {
        capture_sap: sap("eth1:1214.*"),
        outer_vid: 1214,
        inner_vid: 101,
        mac: MacAddr([0, 0x51, 0, 0xdd, 1, 1]),
        ip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
        len: 64,
    };
    triggers.handle_frame(&frame, now);
    let trigger = sap(TRIGGER);
    let service = |text: &str| DynService {
        tag: 1,
        sap: sap(text),
        script_params: Some("epipe={}".into()),
        action: None,
        policy: None,
        accounting: Default::default(),
    };
    triggers
        .handle_authentication(&trigger, Ok(vec![service(TRIGGER), service(OTHER)]), now)
        .unwrap()
        .unwrap();
    let own = triggers.service_created(&trigger, sap(TRIGGER)).unwrap();
    let other = triggers.service_created(&trigger, sap(OTHER)).unwrap();
    let session = triggers.trigger(&trigger).unwrap().acct_session_id.clone();
    (triggers, [session, own, other])
}

fn tagged(tag: u8, text: &str) -> Vec<u8> {
    let mut value = vec![tag];
    value.extend_from_slice(text.as_bytes());
    value
}

fn integer(tag: u8, value: u32) -> Vec<u8> {
    let mut bytes = value.to_be_bytes();
    bytes[0] = tag;
    bytes.to_vec()
}

/// A request builder: keys first, then Alc-Dyn-Serv-* attributes (tag 1).
struct Request(Message);

impl Request {
    fn new(code: Code) -> Self {
        Request(Message::new(code, 77))
    }
    fn coa() -> Self {
        Self::new(Code::CoaRequest)
    }
    fn disconnect() -> Self {
        Self::new(Code::DisconnectRequest)
    }
    fn port(mut self, text: &str) -> Self {
        self.0.add(attr::NAS_PORT_ID, text).unwrap();
        self
    }
    fn session(mut self, id: &str) -> Self {
        self.0.add(attr::ACCT_SESSION_ID, id).unwrap();
        self
    }
    fn vsa(mut self, typ: u32, value: Vec<u8>) -> Self {
        self.0
            .add_vsa(&Dictionary::builtin(), 6527, typ, &value)
            .unwrap();
        self
    }
    fn service_sap(self, text: &str) -> Self {
        self.vsa(auth::ALC_DYN_SERV_SAP_ID, tagged(1, text))
    }
    fn params(self, text: &str) -> Self {
        self.vsa(auth::ALC_DYN_SERV_SCRIPT_PARAMS, tagged(1, text))
    }
    fn action(self, value: u32) -> Self {
        self.vsa(auth::ALC_DYN_SERV_SCRIPT_ACTION, integer(1, value))
    }
    fn policy(self, name: &str) -> Self {
        self.vsa(auth::ALC_DYN_SERV_POLICY, tagged(1, name))
    }
}

const SETUP: u32 = 1;
const MODIFY: u32 = 2;
const TEARDOWN: u32 = 3;

fn decide(triggers: &Triggers, request: &Request) -> Result<CoaAction, (ErrorCause, RequestKind)> {
    let kind = RequestKind::of(request.0.code).unwrap();
    coa::decide(kind, &request.0, triggers, &PortMap::new())
        .map(|decision| {
            assert_eq!(decision.kind, kind);
            decision.action
        })
        .map_err(|refusal| (refusal.cause, refusal.kind))
}

fn cause(triggers: &Triggers, request: &Request) -> ErrorCause {
    decide(triggers, request).unwrap_err().0
}

// Row: CoA keyed by NAS-Port-Id or Acct-Session-Id of a service that is not the trigger.

#[test]
fn coa_setup_keyed_by_a_service_is_not_supported() {
    let (triggers, [_, _, other]) = established(&["default"]);
    for request in [Request::coa().port(OTHER), Request::coa().session(&other)] {
        let request = request
            .service_sap("eth1:1214.103")
            .params("p={}")
            .action(SETUP);
        assert_eq!(cause(&triggers, &request), ErrorCause::InvalidRequest);
    }
}

#[test]
fn coa_modify_keyed_by_a_service_modifies_it() {
    let (triggers, [_, _, other]) = established(&["default"]);
    for request in [Request::coa().port(OTHER), Request::coa().session(&other)] {
        let request = request.params("epipe={'x':1}").action(MODIFY);
        let CoaAction::Modify { trigger, service } = decide(&triggers, &request).unwrap() else {
            panic!("not a modify");
        };
        assert_eq!(trigger, sap(TRIGGER));
        assert_eq!(service.sap, sap(OTHER));
        assert_eq!(service.action, Some(ScriptAction::Modify));
        assert_eq!(service.script_params.as_deref(), Some("epipe={'x':1}"));
    }
}

#[test]
fn coa_modify_keeps_the_accounting_overrides() {
    let (triggers, _) = established(&["default"]);
    let request = Request::coa()
        .port(OTHER)
        .params("p={}")
        .action(MODIFY)
        .vsa(auth::ALC_DYN_SERV_ACCT_STATS_TYPE_2, integer(1, 3))
        .vsa(auth::ALC_DYN_SERV_ACCT_INTERIM_IVL_2, integer(1, 600));
    let CoaAction::Modify { service, .. } = decide(&triggers, &request).unwrap() else {
        panic!("not a modify");
    };
    assert_eq!(service.accounting[1].stats_type, Some(StatsType::Time));
    assert_eq!(service.accounting[1].interim_secs, Some(600));
    assert_eq!(service.accounting[0], Default::default());
}

#[test]
fn coa_teardown_keyed_by_a_service_tears_down_that_service_only() {
    let (triggers, [_, _, other]) = established(&["default"]);
    for request in [Request::coa().port(OTHER), Request::coa().session(&other)] {
        assert_eq!(
            decide(&triggers, &request.action(TEARDOWN)).unwrap(),
            CoaAction::TeardownService {
                trigger: sap(TRIGGER),
                service: sap(OTHER),
                acct_session_id: other.clone(),
            }
        );
    }
}

#[test]
fn coa_without_script_action_is_missing_an_attribute() {
    let (triggers, _) = established(&["default"]);
    let request = Request::coa().port(OTHER).params("p={}");
    assert_eq!(cause(&triggers, &request), ErrorCause::MissingAttribute);
    assert_eq!(
        cause(&triggers, &Request::coa().port(OTHER)),
        ErrorCause::MissingAttribute
    );
}

#[test]
fn coa_modify_without_script_params_is_missing_an_attribute() {
    let (triggers, _) = established(&["default"]);
    let request = Request::coa().port(OTHER).action(MODIFY);
    assert_eq!(cause(&triggers, &request), ErrorCause::MissingAttribute);
}

#[test]
fn coa_service_sap_contradicting_the_key_is_an_invalid_value() {
    let (triggers, _) = established(&["default"]);
    let request = Request::coa()
        .port(OTHER)
        .service_sap("eth1:1214.103")
        .params("p={}")
        .action(MODIFY);
    assert_eq!(
        cause(&triggers, &request),
        ErrorCause::InvalidAttributeValue
    );
    // Naming the same SAP (with a wildcard) is accepted.
    let request = Request::coa()
        .port(OTHER)
        .service_sap("#:#.102")
        .params("p={}")
        .action(MODIFY);
    assert!(decide(&triggers, &request).is_ok());
}

#[test]
fn coa_unknown_action_or_stats_type_is_an_invalid_value() {
    let (triggers, _) = established(&["default"]);
    let request = Request::coa().port(OTHER).params("p={}").action(4);
    assert_eq!(
        cause(&triggers, &request),
        ErrorCause::InvalidAttributeValue
    );
    let request = Request::coa()
        .port(OTHER)
        .params("p={}")
        .action(MODIFY)
        .vsa(auth::ALC_DYN_SERV_ACCT_STATS_TYPE_1, integer(1, 9));
    assert_eq!(
        cause(&triggers, &request),
        ErrorCause::InvalidAttributeValue
    );
    let request = Request::coa()
        .port(OTHER)
        .vsa(auth::ALC_DYN_SERV_SCRIPT_ACTION, vec![1, 0, 3]);
    assert_eq!(
        cause(&triggers, &request),
        ErrorCause::InvalidAttributeValue
    );
}

#[test]
fn coa_with_two_services_is_an_invalid_request() {
    let (triggers, [session, ..]) = established(&["default"]);
    let request = Request::coa()
        .session(&session)
        .service_sap(OTHER)
        .action(TEARDOWN)
        .vsa(auth::ALC_DYN_SERV_SAP_ID, tagged(2, "eth1:1214.103"))
        .vsa(auth::ALC_DYN_SERV_SCRIPT_ACTION, integer(2, TEARDOWN));
    assert_eq!(cause(&triggers, &request), ErrorCause::InvalidRequest);
}

// Row: CoA keyed by the NAS-Port-Id of a data trigger.

#[test]
fn coa_setup_keyed_by_the_trigger_port_is_not_supported() {
    let (triggers, _) = established(&["default"]);
    let request = Request::coa()
        .port(TRIGGER)
        .service_sap("eth1:1214.103")
        .params("p={}")
        .action(SETUP);
    assert_eq!(cause(&triggers, &request), ErrorCause::InvalidRequest);
    let request = Request::coa().port(TRIGGER).params("p={}").action(SETUP);
    assert_eq!(cause(&triggers, &request), ErrorCause::InvalidRequest);
    // Refused for the key, whatever else is missing.
    let request = Request::coa().port(TRIGGER).action(SETUP);
    assert_eq!(cause(&triggers, &request), ErrorCause::InvalidRequest);
}

#[test]
fn coa_modify_keyed_by_the_trigger_port_modifies_the_trigger_sap_service() {
    let (triggers, _) = established(&["default"]);
    let request = Request::coa().port(TRIGGER).params("p={}").action(MODIFY);
    let CoaAction::Modify { trigger, service } = decide(&triggers, &request).unwrap() else {
        panic!("not a modify");
    };
    assert_eq!((trigger, service.sap), (sap(TRIGGER), sap(TRIGGER)));
}

#[test]
fn coa_teardown_keyed_by_the_trigger_port_tears_the_trigger_down() {
    let (triggers, [_, own, _]) = established(&["default"]);
    for request in [Request::coa().port(TRIGGER), Request::coa().session(&own)] {
        assert_eq!(
            decide(&triggers, &request.action(TEARDOWN)).unwrap(),
            CoaAction::TeardownTrigger {
                trigger: sap(TRIGGER)
            }
        );
    }
}

// Row: CoA keyed by the Acct-Session-Id of a data trigger.

#[test]
fn coa_setup_keyed_by_the_trigger_session_adds_a_service() {
    let (triggers, [session, ..]) = established(&["dyn-svc-1"]);
    let request = Request::coa()
        .session(&session)
        .service_sap("#:#.103")
        .params("epipe={}")
        .policy("dyn-svc-1")
        .action(SETUP)
        .vsa(auth::ALC_DYN_SERV_ACCT_STATS_TYPE_1, integer(1, 2))
        .vsa(auth::ALC_DYN_SERV_ACCT_INTERIM_IVL_1, integer(1, 300));
    let CoaAction::Setup { trigger, service } = decide(&triggers, &request).unwrap() else {
        panic!("not a setup");
    };
    assert_eq!(trigger, sap(TRIGGER));
    assert_eq!(service.sap, sap("eth1:1214.103"));
    assert_eq!(service.policy.as_deref(), Some("dyn-svc-1"));
    assert_eq!(
        service.accounting[0].stats_type,
        Some(StatsType::VolumeTime)
    );
    assert_eq!(service.accounting[0].interim_secs, Some(300));
}

#[test]
fn coa_setup_needs_a_policy_unless_a_default_one_exists() {
    let setup = |session: &str| {
        Request::coa()
            .session(session)
            .service_sap("eth1:1214.103")
            .params("p={}")
            .action(SETUP)
    };
    let (triggers, [session, ..]) = established(&["dyn-svc-1"]);
    assert_eq!(
        cause(&triggers, &setup(&session)),
        ErrorCause::MissingAttribute
    );
    assert_eq!(
        cause(&triggers, &setup(&session).policy("nope")),
        ErrorCause::InvalidAttributeValue
    );
    let (triggers, [session, ..]) = established(&["dyn-svc-1", "default"]);
    assert!(matches!(
        decide(&triggers, &setup(&session)),
        Ok(CoaAction::Setup { .. })
    ));
}

#[test]
fn coa_setup_without_sap_or_params_is_missing_an_attribute() {
    let (triggers, [session, ..]) = established(&["default"]);
    let request = Request::coa()
        .session(&session)
        .params("p={}")
        .action(SETUP);
    assert_eq!(cause(&triggers, &request), ErrorCause::MissingAttribute);
    let request = Request::coa()
        .session(&session)
        .service_sap("eth1:1214.103")
        .action(SETUP);
    assert_eq!(cause(&triggers, &request), ErrorCause::MissingAttribute);
}

#[test]
fn coa_setup_of_an_existing_sap_is_an_invalid_value() {
    let (triggers, [session, ..]) = established(&["default"]);
    let request = Request::coa()
        .session(&session)
        .service_sap(OTHER)
        .params("p={}")
        .action(SETUP);
    assert_eq!(
        cause(&triggers, &request),
        ErrorCause::InvalidAttributeValue
    );
}

#[test]
fn coa_setup_on_a_pending_trigger_finds_no_session() {
    let mut triggers = Triggers::new(TriggersConfig::default());
    triggers.set_policy(
        "default",
        DynServicesPolicy {
            authentication: Some(Authentication::Local { db: "db".into() }),
        },
    );
    triggers
        .add_capture_sap(
            sap("eth1:1214.*"),
            CaptureSapConfig {
                policy: Some("default".into()),
                host_lockout_policy: None,
            },
        )
        .unwrap();
    let frame = TriggerFrame {
        capture_sap: sap("eth1:1214.*"),
        outer_vid: 1214,
        inner_vid: 101,
        mac: MacAddr([0, 0x51, 0, 0xdd, 1, 1]),
        ip: None,
        len: 64,
    };
    triggers.handle_frame(&frame, Instant::now());
    let session = triggers
        .trigger(&sap(TRIGGER))
        .unwrap()
        .acct_session_id
        .clone();
    let request = Request::coa()
        .session(&session)
        .service_sap("eth1:1214.103")
        .params("p={}")
        .action(SETUP);
    assert_eq!(
        cause(&triggers, &request),
        ErrorCause::SessionContextNotFound
    );
}

#[test]
fn coa_modify_keyed_by_the_trigger_session_names_the_service_by_sap_id() {
    let (triggers, [session, ..]) = established(&["default"]);
    let request = Request::coa()
        .session(&session)
        .service_sap(OTHER)
        .params("p={}")
        .action(MODIFY);
    let CoaAction::Modify { trigger, service } = decide(&triggers, &request).unwrap() else {
        panic!("not a modify");
    };
    assert_eq!((trigger, service.sap), (sap(TRIGGER), sap(OTHER)));
    // A SAP that is not one of the trigger's services.
    let request = Request::coa()
        .session(&session)
        .service_sap("eth1:1214.103")
        .params("p={}")
        .action(MODIFY);
    assert_eq!(
        cause(&triggers, &request),
        ErrorCause::SessionContextNotFound
    );
}

#[test]
fn coa_teardown_keyed_by_the_trigger_session_tears_down_the_named_sap() {
    let (triggers, [session, _, other]) = established(&["default"]);
    let request = Request::coa()
        .session(&session)
        .service_sap(OTHER)
        .action(TEARDOWN);
    assert_eq!(
        decide(&triggers, &request).unwrap(),
        CoaAction::TeardownService {
            trigger: sap(TRIGGER),
            service: sap(OTHER),
            acct_session_id: other,
        }
    );
    let request = Request::coa()
        .session(&session)
        .service_sap(TRIGGER)
        .action(TEARDOWN);
    assert_eq!(
        decide(&triggers, &request).unwrap(),
        CoaAction::TeardownTrigger {
            trigger: sap(TRIGGER)
        }
    );
    let request = Request::coa()
        .session(&session)
        .service_sap("eth1:1214.103")
        .action(TEARDOWN);
    assert_eq!(
        cause(&triggers, &request),
        ErrorCause::SessionContextNotFound
    );
    let request = Request::coa().session(&session).action(TEARDOWN);
    assert_eq!(cause(&triggers, &request), ErrorCause::MissingAttribute);
}

// Rows: Disconnect-Request.

#[test]
fn disconnect_of_a_service_tears_down_that_service() {
    let (triggers, [_, _, other]) = established(&["default"]);
    for request in [
        Request::disconnect().port(OTHER),
        Request::disconnect().session(&other),
    ] {
        assert_eq!(
            decide(&triggers, &request).unwrap(),
            CoaAction::TeardownService {
                trigger: sap(TRIGGER),
                service: sap(OTHER),
                acct_session_id: other.clone(),
            }
        );
    }
}

#[test]
fn disconnect_of_a_trigger_tears_the_trigger_down() {
    let (triggers, [session, own, _]) = established(&["default"]);
    for request in [
        Request::disconnect().port(TRIGGER),
        Request::disconnect().session(&session),
        Request::disconnect().session(&own),
        Request::disconnect().port(TRIGGER).session(&session),
    ] {
        assert_eq!(
            decide(&triggers, &request).unwrap(),
            CoaAction::TeardownTrigger {
                trigger: sap(TRIGGER)
            }
        );
    }
}

// Keys.

#[test]
fn unknown_or_disagreeing_keys_find_no_session() {
    let (triggers, [_, _, other]) = established(&["default"]);
    for request in [
        Request::disconnect().port("eth1:1214.999"),
        Request::disconnect().session("0000000000000000000999"),
        Request::disconnect().port(TRIGGER).session(&other),
        Request::coa().port("eth1:1214.999").action(TEARDOWN),
    ] {
        assert_eq!(
            decide(&triggers, &request).unwrap_err().0,
            ErrorCause::SessionContextNotFound
        );
    }
}

#[test]
fn no_key_is_missing_an_attribute_and_a_bad_key_an_invalid_value() {
    let (triggers, _) = established(&["default"]);
    assert_eq!(
        cause(&triggers, &Request::disconnect()),
        ErrorCause::MissingAttribute
    );
    assert_eq!(
        cause(&triggers, &Request::disconnect().port("not a sap")),
        ErrorCause::InvalidAttributeValue
    );
    let mut request = Request::disconnect();
    request.0.add(attr::ACCT_SESSION_ID, [0xff, 0xfe]).unwrap();
    assert_eq!(
        cause(&triggers, &request),
        ErrorCause::InvalidAttributeValue
    );
}

// Answers.

fn error_cause(message: &Message) -> Option<ErrorCause> {
    message
        .attributes
        .first(attr::ERROR_CAUSE)
        .and_then(ErrorCause::from_value)
}

#[test]
fn answers_carry_the_outcome_and_proxy_state() {
    let (triggers, [_, _, other]) = established(&["default"]);
    let mut request = Request::coa().port(OTHER).params("p={}").action(MODIFY);
    request.0.add(attr::PROXY_STATE, b"ps-1").unwrap();
    let decision = coa::decide(RequestKind::Coa, &request.0, &triggers, &PortMap::new()).unwrap();
    let ack = decision.answer(&request.0, CoaOutcome::Done);
    assert_eq!((ack.code, ack.identifier), (Code::CoaAck, 77));
    assert_eq!(error_cause(&ack), None);
    assert_eq!(ack.attributes.first(attr::PROXY_STATE), Some(&b"ps-1"[..]));
    let nak = decision.answer(&request.0, CoaOutcome::ScriptFailed);
    assert_eq!(nak.code, Code::CoaNak);
    assert_eq!(error_cause(&nak), Some(ErrorCause::InvalidRequest));
    let nak = decision.answer(&request.0, CoaOutcome::ApplyFailed);
    assert_eq!(error_cause(&nak), Some(ErrorCause::ResourcesUnavailable));

    let request = Request::disconnect().session(&other);
    let decision = coa::decide(
        RequestKind::Disconnect,
        &request.0,
        &triggers,
        &PortMap::new(),
    )
    .unwrap();
    assert_eq!(
        decision.answer(&request.0, CoaOutcome::Done).code,
        Code::DisconnectAck
    );
    let nak = decision.answer(&request.0, CoaOutcome::ScriptFailed);
    assert_eq!(nak.code, Code::DisconnectNak);
    assert_eq!(
        error_cause(&nak),
        Some(ErrorCause::SessionContextNotRemovable)
    );

    let request = Request::disconnect().port("eth1:1214.999");
    let refusal = coa::decide(
        RequestKind::Disconnect,
        &request.0,
        &triggers,
        &PortMap::new(),
    )
    .unwrap_err();
    let nak = refusal.answer(&request.0);
    assert_eq!(nak.code, Code::DisconnectNak);
    assert_eq!(error_cause(&nak), Some(ErrorCause::SessionContextNotFound));
}

#[test]
fn request_kind_follows_the_code() {
    assert_eq!(RequestKind::of(Code::CoaRequest), Some(RequestKind::Coa));
    assert_eq!(
        RequestKind::of(Code::DisconnectRequest),
        Some(RequestKind::Disconnect)
    );
    assert_eq!(RequestKind::of(Code::AccessRequest), None);
}
