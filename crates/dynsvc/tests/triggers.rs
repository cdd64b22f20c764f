//! The data trigger behaviours of the Nokia SR OS dynamic data services guide, end to end
//! through the sans-IO core: frames in, authentication, script outcomes, teardown.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use brasa_dynsvc::auth::{self, RequestSeal, TriggerIdentity};
use brasa_dynsvc::local::{LocalIndex, LocalUser};
use brasa_dynsvc::lockout::HostLockoutPolicy;
use brasa_dynsvc::{
    AuthFailure, Authentication, CaptureSapConfig, DropReason, DynServicesPolicy, FrameVerdict,
    LocalAuthDb, NasIdentity, ScriptAction, StatsType, TriggerFrame, TriggerState, Triggers,
    TriggersConfig,
};
use brasa_radius::{attr, Code, Dictionary, Message};
use brasa_services::{MacAddr, PortMap, SapId};

fn sap(text: &str) -> SapId {
    SapId::parse(text).unwrap()
}

fn frame(outer: u16, inner: u16) -> TriggerFrame {
    TriggerFrame {
        capture_sap: sap("eth1:1214.*"),
        outer_vid: outer,
        inner_vid: inner,
        mac: MacAddr([0x00, 0x51, 0x00, 0xdd, 0x01, 0x01]),
        ip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
        len: 64,
    }
}

fn engine(config: TriggersConfig) -> Triggers {
    let mut triggers = Triggers::new(config);
    triggers.set_policy(
        "dyn-svc-1",
        DynServicesPolicy {
            authentication: Some(Authentication::Local { db: "db".into() }),
        },
    );
    triggers.set_lockout_policy("host-lockout-1", HostLockoutPolicy::default());
    triggers
        .add_capture_sap(
            sap("eth1:1214.*"),
            CaptureSapConfig {
                policy: Some("dyn-svc-1".into()),
                host_lockout_policy: Some("host-lockout-1".into()),
            },
        )
        .unwrap();
    triggers
}

fn service(sap_text: &str) -> brasa_dynsvc::DynService {
    brasa_dynsvc::DynService {
        tag: 1,
        sap: sap(sap_text),
        script_params: Some("epipe={}".into()),
        action: None,
        policy: None,
        accounting: Default::default(),
    }
}

#[test]
fn frame_on_capture_sap_creates_a_pending_trigger_with_a_unique_session_id() {
    let now = Instant::now();
    let mut triggers = engine(TriggersConfig::default());
    let verdict = triggers.handle_frame(&frame(1214, 101), now);
    assert_eq!(
        verdict,
        FrameVerdict::Authenticate {
            trigger: sap("eth1:1214.101"),
            authentication: Authentication::Local { db: "db".into() },
        }
    );
    triggers.handle_frame(&frame(1214, 102), now);
    let all = triggers.triggers();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].state, TriggerState::Pending);
    assert_eq!(all[0].acct_session_id.len(), 22);
    assert_ne!(all[0].acct_session_id, all[1].acct_session_id);
    assert_eq!(
        triggers
            .trigger_by_session(&all[1].acct_session_id)
            .unwrap()
            .sap,
        sap("eth1:1214.102")
    );
}

fn settled(triggers: &mut Triggers) -> Vec<SapId> {
    triggers.take_settled().collect()
}

/// The data plane throttles a key until the control side releases it: the core says when, for
/// every way a trigger leaves progress and for every frame that makes no trigger.
#[test]
fn throttle_keys_are_settled_when_no_trigger_of_them_is_in_progress() {
    let now = Instant::now();
    let mut triggers = engine(TriggersConfig::default());
    let (a, b, c) = (
        sap("eth1:1214.101"),
        sap("eth1:1214.102"),
        sap("eth1:1214.103"),
    );
    // New triggers stay marked while Pending and Accepted.
    for inner in [101, 102, 103] {
        assert!(matches!(
            triggers.handle_frame(&frame(1214, inner), now),
            FrameVerdict::Authenticate { .. }
        ));
    }
    assert!(settled(&mut triggers).is_empty());
    assert!(triggers.in_progress(&a));
    triggers
        .handle_authentication(&a, Ok(vec![service("eth1:1214.101")]), now)
        .unwrap()
        .unwrap();
    assert!(
        settled(&mut triggers).is_empty(),
        "Accepted is still in progress"
    );
    // A frame of an Accepted trigger that got through (its mark had expired) is dropped but
    // keeps the mark: the trigger is still in progress.
    assert_eq!(
        triggers.handle_frame(&frame(1214, 101), now),
        FrameVerdict::Dropped(DropReason::TriggerExists)
    );
    assert!(settled(&mut triggers).is_empty());
    // sapCreated: settled.
    triggers.service_created(&a, a.clone()).unwrap();
    assert_eq!(settled(&mut triggers), vec![a.clone()]);
    assert!(!triggers.in_progress(&a));
    // A failed authentication: settled; the next frame is locked out and settled again.
    triggers
        .handle_authentication(&b, Err(AuthFailure::Rejected), now)
        .unwrap()
        .unwrap_err();
    assert_eq!(settled(&mut triggers), vec![b.clone()]);
    assert_eq!(
        triggers.handle_frame(&frame(1214, 102), now),
        FrameVerdict::Dropped(DropReason::LockoutActive)
    );
    assert_eq!(settled(&mut triggers), vec![b]);
    // A clear of a Pending trigger, and a frame on a created trigger's capture SAP.
    triggers.clear_trigger(&c, now).unwrap();
    assert_eq!(settled(&mut triggers), vec![c]);
    triggers.handle_frame(&frame(1214, 101), now);
    assert_eq!(settled(&mut triggers), vec![a]);
    // Frames the rate limit drops make no trigger either.
    let mut limited = engine(TriggersConfig {
        rate_per_sec: 1,
        burst: 1,
        ..TriggersConfig::default()
    });
    limited.handle_frame(&frame(1214, 1), now);
    assert_eq!(
        limited.handle_frame(&frame(1214, 2), now),
        FrameVerdict::RateLimited
    );
    assert_eq!(settled(&mut limited), vec![sap("eth1:1214.2")]);
}

#[test]
fn data_trigger_already_exists_once_accepted() {
    let now = Instant::now();
    let mut triggers = engine(TriggersConfig::default());
    let trigger = sap("eth1:1214.101");
    triggers.handle_frame(&frame(1214, 101), now);
    let services = triggers
        .handle_authentication(&trigger, Ok(vec![service("eth1:1214.101")]), now)
        .unwrap()
        .unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(
        triggers.trigger(&trigger).unwrap().state,
        TriggerState::Accepted
    );
    assert_eq!(
        triggers.handle_frame(&frame(1214, 101), now),
        FrameVerdict::Dropped(DropReason::TriggerExists)
    );
    let stats = triggers.stats(&sap("eth1:1214.*")).unwrap();
    assert_eq!(stats.dropped(DropReason::TriggerExists), 1);
}

#[test]
fn control_plane_rate_limit_drops_beyond_the_bucket() {
    let now = Instant::now();
    let mut triggers = engine(TriggersConfig {
        rate_per_sec: 1,
        burst: 5,
        ..TriggersConfig::default()
    });
    let verdicts: Vec<FrameVerdict> = (1..=8)
        .map(|vid| triggers.handle_frame(&frame(1214, vid), now))
        .collect();
    assert_eq!(
        verdicts
            .iter()
            .filter(|v| matches!(v, FrameVerdict::Authenticate { .. }))
            .count(),
        5
    );
    assert_eq!(triggers.rate_limited(), 3);
    assert_eq!(triggers.stats(&sap("eth1:1214.*")).unwrap().received, 5);
}

#[test]
fn missing_policy_and_missing_authentication_are_counted() {
    let now = Instant::now();
    let mut triggers = engine(TriggersConfig::default());
    triggers
        .add_capture_sap(sap("eth1:*.*"), CaptureSapConfig::default())
        .unwrap();
    let mut other = frame(7, 8);
    other.capture_sap = sap("eth1:*.*");
    assert_eq!(
        triggers.handle_frame(&other, now),
        FrameVerdict::Dropped(DropReason::NoPolicy)
    );
    triggers.set_policy("empty", DynServicesPolicy::default());
    triggers
        .add_capture_sap(
            sap("eth1:*.*"),
            CaptureSapConfig {
                policy: Some("empty".into()),
                host_lockout_policy: None,
            },
        )
        .unwrap();
    assert_eq!(
        triggers.handle_frame(&other, now),
        FrameVerdict::Dropped(DropReason::NoAuthentication)
    );
    let stats = triggers.stats(&sap("eth1:*.*")).unwrap();
    assert_eq!(
        (
            stats.dropped(DropReason::NoPolicy),
            stats.dropped(DropReason::NoAuthentication)
        ),
        (1, 1)
    );
    triggers.clear_stats(&sap("eth1:*.*")).unwrap();
    assert!(triggers
        .stats(&sap("eth1:*.*"))
        .unwrap()
        .drop_counters()
        .all(|(_, n)| n == 0));
}

#[test]
fn system_limit_is_a_drop_reason() {
    let now = Instant::now();
    let mut triggers = engine(TriggersConfig {
        max_triggers: 2,
        ..TriggersConfig::default()
    });
    triggers.handle_frame(&frame(1214, 1), now);
    triggers.handle_frame(&frame(1214, 2), now);
    assert_eq!(
        triggers.handle_frame(&frame(1214, 3), now),
        FrameVerdict::Dropped(DropReason::SystemLimit)
    );
}

#[test]
fn access_reject_counts_unsuccessful_authentication_and_locks_out() {
    let now = Instant::now();
    let mut triggers = engine(TriggersConfig::default());
    let trigger = sap("eth1:1214.101");
    triggers.handle_frame(&frame(1214, 101), now);
    let outcome = triggers
        .handle_authentication(&trigger, Err(AuthFailure::Rejected), now)
        .unwrap();
    assert_eq!(outcome, Err(DropReason::UnsuccessfulAuthentication));
    assert!(triggers.trigger(&trigger).is_none());
    assert_eq!(
        triggers.handle_frame(&frame(1214, 101), now + Duration::from_secs(9)),
        FrameVerdict::Dropped(DropReason::LockoutActive)
    );
    assert!(matches!(
        triggers.handle_frame(&frame(1214, 101), now + Duration::from_secs(10)),
        FrameVerdict::Authenticate { .. }
    ));
    let stats = triggers.stats(&sap("eth1:1214.*")).unwrap();
    assert_eq!(stats.dropped(DropReason::UnsuccessfulAuthentication), 1);
    assert_eq!(stats.dropped(DropReason::LockoutActive), 1);
}

#[test]
fn accept_without_the_trigger_sap_counts_no_data_trigger_sap_id() {
    let now = Instant::now();
    let mut triggers = engine(TriggersConfig::default());
    let trigger = sap("eth1:1214.101");
    triggers.handle_frame(&frame(1214, 101), now);
    let failure = auth::authorized_services(Vec::new(), &trigger, &PortMap::new()).unwrap_err();
    assert_eq!(failure, AuthFailure::NoTriggerSap(trigger.clone()));
    assert_eq!(
        triggers
            .handle_authentication(&trigger, Err(failure), now)
            .unwrap(),
        Err(DropReason::NoTriggerSapInAuthentication)
    );
}

#[test]
fn setup_timeout_fails_the_trigger_and_tears_down_what_was_created() {
    let now = Instant::now();
    let mut triggers = engine(TriggersConfig::default());
    let trigger = sap("eth1:1214.101");
    triggers.handle_frame(&frame(1214, 101), now);
    triggers
        .handle_authentication(
            &trigger,
            Ok(vec![service("eth1:1214.101"), service("eth2:5")]),
            now,
        )
        .unwrap()
        .unwrap();
    triggers.service_created(&trigger, sap("eth2:5")).unwrap();
    assert_eq!(triggers.poll_timeout(), Some(now + Duration::from_secs(30)));
    assert!(triggers
        .handle_timeout(now + Duration::from_secs(29))
        .is_empty());
    let teardowns = triggers.handle_timeout(now + Duration::from_secs(30));
    assert_eq!(teardowns.len(), 1);
    assert_eq!(
        teardowns[0]
            .services
            .iter()
            .map(|(s, _)| s.clone())
            .collect::<Vec<_>>(),
        [sap("eth2:5")]
    );
    assert!(triggers.service(&sap("eth2:5")).is_none());
    let stats = triggers.stats(&sap("eth1:1214.*")).unwrap();
    assert_eq!(stats.dropped(DropReason::SapNotCreated), 1);
    assert!(triggers
        .lockouts("host-lockout-1")
        .unwrap()
        .is_locked(&trigger, now + Duration::from_secs(31)));
}

#[test]
fn script_failure_is_corresponding_dynamic_sap_not_created() {
    let now = Instant::now();
    let mut triggers = engine(TriggersConfig::default());
    let trigger = sap("eth1:1214.101");
    triggers.handle_frame(&frame(1214, 101), now);
    triggers
        .handle_authentication(&trigger, Ok(vec![service("eth1:1214.101")]), now)
        .unwrap()
        .unwrap();
    let teardown = triggers.setup_failed(&trigger, now).unwrap();
    assert!(teardown.services.is_empty());
    assert_eq!(
        triggers
            .stats(&sap("eth1:1214.*"))
            .unwrap()
            .dropped(DropReason::SapNotCreated),
        1
    );
    // A stale call changes nothing and says why.
    assert!(triggers.setup_failed(&trigger, now).is_err());
}

#[test]
fn removing_the_trigger_sap_tears_down_every_service_of_the_trigger_without_locking() {
    let now = Instant::now();
    let mut triggers = engine(TriggersConfig::default());
    let trigger = sap("eth1:1214.101");
    triggers.handle_frame(&frame(1214, 101), now);
    triggers
        .handle_authentication(&trigger, Ok(vec![service("eth1:1214.101")]), now)
        .unwrap()
        .unwrap();
    let own_session = triggers.service_created(&trigger, trigger.clone()).unwrap();
    assert_eq!(
        triggers.trigger(&trigger).unwrap().state,
        TriggerState::SapCreated
    );
    assert_eq!(triggers.poll_timeout(), None);
    for vid in 1..=3 {
        triggers
            .service_created(&trigger, sap(&format!("eth2:{vid}")))
            .unwrap();
    }
    assert_eq!(triggers.service_removed(&sap("eth2:2"), now).unwrap(), None);
    let teardown = triggers.service_removed(&trigger, now).unwrap().unwrap();
    let saps: Vec<String> = teardown
        .services
        .iter()
        .map(|(s, _)| s.to_string())
        .collect();
    assert_eq!(saps, ["eth2:1", "eth2:3", "eth1:1214.101"]);
    assert_eq!(teardown.services[2].1, own_session);
    assert!(triggers.triggers().is_empty());
    // Teardown creates a lockout context in grace only: the trigger may come back at once.
    assert!(matches!(
        triggers.handle_frame(&frame(1214, 101), now),
        FrameVerdict::Authenticate { .. }
    ));
    let rows = triggers
        .lockouts("host-lockout-1")
        .unwrap()
        .rows(Some(&sap("eth1:1214.*")), now);
    assert_eq!((rows.len(), rows[0].active), (1, false));
}

#[test]
fn at_most_4000_services_per_trigger() {
    let now = Instant::now();
    let mut triggers = engine(TriggersConfig::default());
    let trigger = sap("eth1:1214.101");
    triggers.handle_frame(&frame(1214, 101), now);
    triggers
        .handle_authentication(&trigger, Ok(vec![service("eth1:1214.101")]), now)
        .unwrap()
        .unwrap();
    for n in 0..4000u32 {
        triggers
            .service_created(
                &trigger,
                sap(&format!("eth2:{}.{}", n / 4000 + 1, n % 4000 + 1)),
            )
            .unwrap();
    }
    assert!(triggers.service_created(&trigger, sap("eth3:1")).is_err());
    assert!(triggers.service(&sap("eth3:1")).is_none());
}

fn accept_with(services: &[(u8, &str, &str)], dict: &Dictionary) -> Message {
    let mut accept = Message::new(Code::AccessAccept, 1);
    for &(tag, sap_text, params) in services {
        let mut value = vec![tag];
        value.extend_from_slice(sap_text.as_bytes());
        accept
            .add_vsa(dict, 6527, auth::ALC_DYN_SERV_SAP_ID, &value)
            .unwrap();
        let mut value = vec![tag];
        value.extend_from_slice(params.as_bytes());
        accept
            .add_vsa(dict, 6527, auth::ALC_DYN_SERV_SCRIPT_PARAMS, &value)
            .unwrap();
        accept
            .add_vsa(
                dict,
                6527,
                auth::ALC_DYN_SERV_ACCT_STATS_TYPE_1,
                &[tag, 0, 0, 2],
            )
            .unwrap();
        accept
            .add_vsa(
                dict,
                6527,
                auth::ALC_DYN_SERV_ACCT_INTERIM_IVL_1,
                &[tag, 0, 0, 30],
            )
            .unwrap();
    }
    accept
}

#[test]
fn access_accept_gives_tagged_dynamic_services_with_hash_wildcards_resolved() {
    let dict = Dictionary::builtin();
    let mut ports = PortMap::new();
    ports.insert("1/1/4", brasa_services::PortName::new("eth1").unwrap());
    let trigger = sap("eth1:1214.101");
    let accept = accept_with(
        &[
            (1, "1/1/4:#.#", "epipe_1={'t':1}"),
            (2, "#:1214.200", "vpls={}"),
        ],
        &dict,
    );
    let services = auth::parse_access_accept(&accept, &trigger, &ports).unwrap();
    assert_eq!(services.len(), 2);
    assert_eq!(services[0].sap, trigger);
    assert_eq!(
        services[0].script_params.as_deref(),
        Some("epipe_1={'t':1}")
    );
    assert_eq!(services[1].sap, sap("eth1:1214.200"));
    assert_eq!(
        services[1].accounting[0].stats_type,
        Some(StatsType::VolumeTime)
    );
    assert_eq!(services[1].accounting[0].interim_secs, Some(30));
    assert_eq!(services[1].action, None);

    let without = accept_with(&[(1, "eth1:1214.200", "x")], &dict);
    assert_eq!(
        auth::parse_access_accept(&without, &trigger, &ports),
        Err(AuthFailure::NoTriggerSap(trigger.clone()))
    );
}

#[test]
fn access_accept_with_more_than_32_services_or_a_modify_is_refused() {
    let dict = Dictionary::builtin();
    let trigger = sap("eth1:1214.101");
    let mut many: Vec<(u8, String)> = (1..=31).map(|t| (t, format!("eth2:{t}"))).collect();
    many.push((0, "eth1:1214.101".into()));
    let texts: Vec<(u8, &str, &str)> = many.iter().map(|(t, s)| (*t, s.as_str(), "p")).collect();
    assert!(
        auth::parse_access_accept(&accept_with(&texts, &dict), &trigger, &PortMap::new()).is_ok()
    );

    let mut modify = accept_with(&[(1, "eth1:1214.101", "p")], &dict);
    modify
        .add_vsa(&dict, 6527, auth::ALC_DYN_SERV_SCRIPT_ACTION, &[1, 0, 0, 2])
        .unwrap();
    assert!(matches!(
        auth::parse_access_accept(&modify, &trigger, &PortMap::new()),
        Err(AuthFailure::BadService { tag: 1, .. })
    ));
}

#[test]
fn access_request_has_exactly_the_table_4_attributes() {
    let dict = Dictionary::builtin();
    let trigger = sap("eth1:1214.101");
    let nas = NasIdentity {
        ipv4: Some(Ipv4Addr::new(127, 0, 0, 1)),
        ipv6: Some("::1".parse().unwrap()),
        identifier: "brasa-1".into(),
    };
    let identity = TriggerIdentity {
        sap: &trigger,
        acct_session_id: "144DFF0000009156A24138",
        mac: MacAddr([0x00, 0x51, 0x00, 0xdd, 0x01, 0x01]),
        ip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
    };
    let request = auth::access_request(
        identity,
        b"pw",
        RequestSeal {
            secret: b"secret",
            request_authenticator: [9; 16],
            identifier: 3,
        },
        &nas,
        "127.0.0.2".parse().unwrap(),
        &dict,
    )
    .unwrap();
    let types: Vec<u8> = request.attributes.iter().map(|a| a.typ).collect();
    assert_eq!(
        types,
        [
            attr::USER_NAME,
            attr::USER_PASSWORD,
            attr::NAS_IP_ADDRESS,
            attr::ACCT_SESSION_ID,
            attr::NAS_PORT_ID,
            attr::NAS_IDENTIFIER,
            attr::VENDOR_SPECIFIC,
            attr::FRAMED_IP_ADDRESS
        ]
    );
    assert_eq!(request.get(attr::USER_NAME), Some(&b"eth1:1214.101"[..]));
    assert_eq!(request.get(attr::NAS_PORT_ID), Some(&b"eth1:1214.101"[..]));
    assert_eq!(
        request.get(attr::FRAMED_IP_ADDRESS),
        Some(&[192, 0, 2, 7][..])
    );
    assert_eq!(
        request
            .get_vsa(&dict, 6527, auth::ALC_CLIENT_HARDWARE_ADDR)
            .as_deref(),
        Some(&b"00:51:00:dd:01:01"[..])
    );
    let hidden = request.get(attr::USER_PASSWORD).unwrap();
    assert_eq!(
        brasa_radius::auth::reveal_user_password(hidden, b"secret", &[9; 16]).unwrap(),
        b"pw"
    );

    // Over IPv6: NAS-IPv6-Address instead; an IPv6 trigger gives Alc-Ipv6-Address.
    let v6 = TriggerIdentity {
        ip: Some("2001:db8::7".parse().unwrap()),
        ..identity
    };
    let request = auth::access_request(
        v6,
        b"pw",
        RequestSeal {
            secret: b"s",
            request_authenticator: [1; 16],
            identifier: 4,
        },
        &nas,
        "::1".parse().unwrap(),
        &dict,
    )
    .unwrap();
    assert!(request.get(attr::NAS_IP_ADDRESS).is_none());
    assert_eq!(
        request.get(auth::NAS_IPV6_ADDRESS).map(<[u8]>::len),
        Some(16)
    );
    assert!(request.get(attr::FRAMED_IP_ADDRESS).is_none());
    assert!(request
        .get_vsa(&dict, 6527, auth::ALC_IPV6_ADDRESS)
        .is_some());
}

#[test]
fn local_auth_db_answers_like_an_access_accept() {
    let trigger = sap("eth1:1214.101");
    let mut db = LocalAuthDb::new();
    let mut entry = LocalUser::default();
    entry.indexes.insert(
        1,
        LocalIndex {
            sap_id: "eth1:1214.101".into(),
            policy: Some("dyn-svc-2".into()),
            script_parameters: [
                "epipe_1={'t':".into(),
                "('dynsvc-epipe-1',None,None,10,11)}".into(),
                String::new(),
                String::new(),
            ],
            accounting: [
                brasa_dynsvc::AcctOverride {
                    stats_type: Some(StatsType::VolumeTime),
                    interim_secs: Some(1800),
                },
                Default::default(),
            ],
        },
    );
    db.insert("eth1:1214.101", entry.clone()).unwrap();
    let services = db.authenticate(&trigger, &PortMap::new()).unwrap();
    assert_eq!(
        services[0].script_params.as_deref(),
        Some("epipe_1={'t':('dynsvc-epipe-1',None,None,10,11)}")
    );
    assert_eq!(services[0].action, Some(ScriptAction::Setup));
    assert_eq!(services[0].policy.as_deref(), Some("dyn-svc-2"));
    assert_eq!(services[0].accounting[0].interim_secs, Some(1800));
    assert_eq!(
        db.authenticate(&sap("eth1:1214.102"), &PortMap::new()),
        Err(AuthFailure::LocalLookupFailed("eth1:1214.102".into()))
    );
    // An index without the trigger's SAP: the lookup "returns a wrong data-trigger sap-id".
    entry.indexes.get_mut(&1).unwrap().sap_id = "eth1:1214.999".into();
    db.insert("eth1:1214.101", entry.clone()).unwrap();
    assert_eq!(
        db.authenticate(&trigger, &PortMap::new()),
        Err(AuthFailure::NoTriggerSap(trigger.clone()))
    );
    entry.indexes.get_mut(&1).unwrap().script_parameters[3] = "x".repeat(251);
    assert!(db.insert("eth1:1214.101", entry).is_err());
}
