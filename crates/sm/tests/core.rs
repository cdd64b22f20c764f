//! The SM state machine without sockets or sleeps: EP sessions driven with explicit `now`,
//! messages carried by hand into the reference replica.

use std::time::{Duration, Instant};

mod support;

use brasa_sm::convert::op_from_proto;
use brasa_sm::ep::{EpState, QuarantineState, SessionId, Transmit};
use brasa_sm::pb;
use brasa_sm::{
    EpReplica, ErrorKind, LinkOptions, Op, ProtocolError, ReplicaEvent, SmConfig, SmError,
};
use brasa_subscriber::{Login, NameCase, Subscriber, SubscriberIndex};
use brasa_subsvc::{ServiceRequest, TypeConflictAction};
use support::pcc_service;

use brasa_sm::core::SmCore;

fn config() -> SmConfig {
    SmConfig {
        keepalive_interval: Duration::from_secs(1),
        window: 8,
        max_backlog: 100,
        ack_timeout: Duration::from_secs(5),
        quarantine_timeout: Duration::from_secs(60),
        post_quarantine: Duration::from_secs(600),
        batch: 4,
        ..support::base_config()
    }
}

fn core() -> SmCore {
    let c = config();
    SmCore::new(&c, SubscriberIndex::new(c.index.clone()).unwrap()).unwrap()
}

fn hello(id: &str, role: pb::CascadeRole) -> pb::Hello {
    pb::Hello {
        ep_id: id.into(),
        role: role as i32,
        ..Default::default()
    }
}

struct Ep {
    sid: SessionId,
    replica: EpReplica,
}

/// The replica says Hello (its first transmit) and the core opens a session for it.
fn connect(core: &mut SmCore, now: Instant, id: &str, role: pb::CascadeRole) -> Ep {
    let mut replica = EpReplica::new();
    replica.connect(now, hello(id, role), LinkOptions::default());
    let Some(pb::EpMessage {
        body: Some(pb::ep_message::Body::Hello(h)),
    }) = replica.poll_transmit(now)
    else {
        panic!("the first transmit of a connection is the Hello");
    };
    let sid = core.ep_connect(now, &h).unwrap();
    Ep { sid, replica }
}

/// Carries messages both ways until the core has nothing more for `ep`; the replica's
/// acknowledgements reach the core only when `ack`.
fn drain(core: &mut SmCore, now: Instant, ep: &mut Ep, ack: bool) -> Vec<ReplicaEvent> {
    let mut events = Vec::new();
    loop {
        while let Some(m) = ep.replica.poll_transmit(now) {
            let is_ack = matches!(m.body, Some(pb::ep_message::Body::Ack(_)));
            if ack || !is_ack {
                core.ep_receive(now, ep.sid, m);
            }
        }
        match core.poll_transmit(now, ep.sid) {
            Transmit::Message(m) => events.extend(ep.replica.handle(now, m).unwrap()),
            Transmit::Idle | Transmit::Gone => return events,
            Transmit::Close(e) => panic!("closed: {e}"),
        }
    }
}

fn ack_msg(seq: u64) -> pb::EpMessage {
    pb::EpMessage {
        body: Some(pb::ep_message::Body::Ack(pb::Ack { seq })),
    }
}

fn login(core: &mut SmCore, now: Instant, name: &str, ips: &[&str], domain: &str) {
    let op = Op::Login {
        login: Login {
            name: name.into(),
            mappings: ips.iter().map(|m| m.parse().unwrap()).collect(),
            domain: Some(domain.into()),
            ..Login::default()
        },
        auto_logout_after: None,
    };
    let changes = core.apply(op, 0).unwrap();
    core.committed(now, &changes);
}

/// Logs in `s00`, `s01`, … with `10.0.0.i` in the default domain.
fn login_many(core: &mut SmCore, now: Instant, n: usize) {
    for i in 0..n {
        let name = format!("s{i:02}");
        login(core, now, &name, &[&format!("10.0.0.{i}")], "subscribers");
    }
}

/// The session's next transmit must be its end.
fn closed(core: &mut SmCore, now: Instant, sid: SessionId) -> SmError {
    match core.poll_transmit(now, sid) {
        Transmit::Close(e) => e,
        other => panic!("expected the session to close, got {other:?}"),
    }
}

fn apply(core: &mut SmCore, now: Instant, op: Op) {
    let changes = core.apply(op, 0).unwrap();
    core.committed(now, &changes);
}

fn names(replica: &EpReplica) -> Vec<String> {
    replica
        .subscribers()
        .iter()
        .map(|s| s.name.as_str().to_owned())
        .collect()
}

fn domain_names(core: &SmCore, domain: &str) -> Vec<String> {
    let mut n: Vec<String> = core
        .index()
        .domain_members(domain)
        .map(|s| s.name.as_str().to_owned())
        .collect();
    n.sort();
    n
}

fn upserts(events: &[ReplicaEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ReplicaEvent::Upsert(s) => Some(s.name.as_str().to_owned()),
            _ => None,
        })
        .collect()
}

#[test]
fn push_eps_get_exactly_their_domain_then_every_change_with_roaming() {
    let now = Instant::now();
    let mut core = core();
    for i in 0..10 {
        login(
            &mut core,
            now,
            &format!("s{i}"),
            &[&format!("10.0.0.{i}")],
            "subscribers",
        );
    }
    for i in 0..5 {
        login(
            &mut core,
            now,
            &format!("n{i}"),
            &[&format!("10.1.0.{i}")],
            "north",
        );
    }
    let mut a = connect(&mut core, now, "a", pb::CascadeRole::RoleUnspecified);
    let mut b = connect(&mut core, now, "b", pb::CascadeRole::RoleUnspecified);
    drain(&mut core, now, &mut a, true);
    drain(&mut core, now, &mut b, true);
    assert_eq!(names(&a.replica), domain_names(&core, "subscribers"));
    assert_eq!(names(&b.replica), domain_names(&core, "north"));
    assert_eq!(a.replica.syncs(), 1);

    login(&mut core, now, "s10", &["10.0.0.10"], "subscribers");
    assert_eq!(upserts(&drain(&mut core, now, &mut a, true)), ["s10"]);
    assert!(drain(&mut core, now, &mut b, true).is_empty());
    assert_eq!(
        a.replica
            .lookup("10.0.0.10".parse().unwrap(), None)
            .map(|s| s.name.as_str().to_owned()),
        Some("s10".into())
    );

    // Roaming: s3 moves to north.
    login(&mut core, now, "s3", &["10.1.9.9"], "north");
    let ev_a = drain(&mut core, now, &mut a, true);
    let ev_b = drain(&mut core, now, &mut b, true);
    assert_eq!(ev_a, [ReplicaEvent::Remove("s3".into())]);
    assert_eq!(upserts(&ev_b), ["s3"]);
    assert_eq!(names(&a.replica), domain_names(&core, "subscribers"));
    assert_eq!(names(&b.replica), domain_names(&core, "north"));
}

#[test]
fn without_data_events_the_replica_reports_only_sync_boundaries_and_holds_the_same() {
    let now = Instant::now();
    let mut core = core();
    login_many(&mut core, now, 20);
    let mut quiet = connect(&mut core, now, "a", pb::CascadeRole::RoleUnspecified);
    quiet.replica.set_data_events(false);
    let events = drain(&mut core, now, &mut quiet, true);
    assert!(
        matches!(
            events.as_slice(),
            [
                ReplicaEvent::Welcome(_),
                ReplicaEvent::SyncBegin { subscribers: 20 },
                ReplicaEvent::SyncEnd { subscribers: 20 }
            ]
        ),
        "{events:?}"
    );
    assert_eq!(names(&quiet.replica), domain_names(&core, "subscribers"));
    // Changes after the sync: applied, not reported.
    login(&mut core, now, "s03", &["10.0.9.3"], "subscribers");
    apply(&mut core, now, Op::Remove("s04".into()));
    assert!(drain(&mut core, now, &mut quiet, true).is_empty());
    assert_eq!(names(&quiet.replica), domain_names(&core, "subscribers"));
    let s03 = quiet.replica.lookup("10.0.9.3".parse().unwrap(), None);
    assert_eq!(s03.map(|s| s.name.as_str().to_owned()), Some("s03".into()));
    assert!(quiet.replica.get("s04").is_none());
    let mut replica = EpReplica::new();
    replica.set_data_events(false);
    replica.connect(
        now,
        hello("b", pb::CascadeRole::RoleUnspecified),
        LinkOptions::default(),
    );
    replica
        .handle(now, welcome(1000, pb::FailureAction::Ignore))
        .unwrap();
    assert!(replica.handle(now, keepalive_from_sm()).unwrap().is_empty());
}

#[test]
fn changes_during_a_sync_reach_the_ep_once_with_the_latest_state() {
    let now = Instant::now();
    let mut core = core();
    login_many(&mut core, now, 20);
    let mut a = connect(&mut core, now, "a", pb::CascadeRole::RoleUnspecified);
    // Welcome, then the first batch: SyncBegin + 3 members (batch 4).
    let mut events = Vec::new();
    for _ in 0..2 {
        match core.poll_transmit(now, a.sid) {
            Transmit::Message(m) => events.extend(a.replica.handle(now, m).unwrap()),
            other => panic!("{other:?}"),
        }
    }
    let walked = upserts(&events);
    assert_eq!(walked.len(), 3);
    // A walked subscriber changes (must be re-sent), an unwalked one changes (sent once, by the
    // walk, with its new state), one unwalked is removed, one is new.
    login(&mut core, now, &walked[0], &["10.0.5.1"], "subscribers");
    login(&mut core, now, "s15", &["10.0.5.15"], "subscribers");
    apply(&mut core, now, Op::Remove("s16".into()));
    login(&mut core, now, "new", &["10.0.5.99"], "subscribers");
    events.extend(drain(&mut core, now, &mut a, true));
    assert_eq!(names(&a.replica), domain_names(&core, "subscribers"));
    let sent = upserts(&events);
    for name in domain_names(&core, "subscribers") {
        let times = sent.iter().filter(|n| **n == name).count();
        let expected = if name == walked[0] { 2 } else { 1 };
        assert_eq!(times, expected, "{name} sent {times} times: {sent:?}");
    }
    let s15 = a.replica.get("s15").unwrap();
    assert_eq!(s15.mappings[0].to_string(), "10.0.5.15");
    assert!(a.replica.get("s16").is_none());
    assert!(a.replica.anomalies().is_empty());
}

#[test]
fn the_window_bounds_unacknowledged_updates_and_silence_quarantines_with_doubling() {
    let t0 = Instant::now();
    let mut core = core();
    login_many(&mut core, t0, 40);
    let mut a = connect(&mut core, t0, "a", pb::CascadeRole::RoleUnspecified);
    drain(&mut core, t0, &mut a, false);
    // Window 8: no more than 8 updates without an acknowledgement.
    assert_eq!(a.replica.last_seq(), 8);
    core.ep_receive(t0, a.sid, ack_msg(8));
    drain(&mut core, t0, &mut a, false);
    assert_eq!(a.replica.last_seq(), 16);

    // Keep-alives flow, but no acknowledgement for longer than ack_timeout: quarantine.
    let t1 = t0 + Duration::from_secs(6);
    core.ep_receive(t1 - Duration::from_secs(1), a.sid, keepalive());
    core.handle_timeout(t1);
    let e = closed(&mut core, t1, a.sid);
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.message.starts_with("quarantined for 60 s"), "{e}");
    let refused = core.ep_connect(t1, &hello("a", pb::CascadeRole::RoleUnspecified));
    let e = refused.unwrap_err();
    assert!(e.message.contains("quarantined for another 60 s"), "{e}");
    assert_eq!(core.ep_views(t1)[0].state, EpState::Quarantined);

    // After the timeout it may come back (post-quarantine); a new failure doubles the timeout.
    let t2 = t1 + Duration::from_secs(61);
    core.handle_timeout(t2);
    assert_eq!(
        core.ep_views(t2)[0].quarantine,
        QuarantineState::PostQuarantine
    );
    let mut a2 = connect(&mut core, t2, "a", pb::CascadeRole::RoleUnspecified);
    drain(&mut core, t2, &mut a2, false);
    let t3 = t2 + Duration::from_secs(6);
    core.ep_receive(t3, a2.sid, keepalive());
    core.handle_timeout(t3);
    let view = &core.ep_views(t3)[0];
    assert_eq!(view.quarantine, QuarantineState::Quarantined);
    assert_eq!(view.quarantine_timeout_s, 120);
    assert_eq!(view.counters.quarantines, 2);

    // The operator releases it: it reconnects at once, the timeout is back to one minute.
    core.release_quarantine("a").unwrap();
    assert_eq!(core.ep_views(t3)[0].quarantine_timeout_s, 60);
    let mut a3 = connect(&mut core, t3, "a", pb::CascadeRole::RoleUnspecified);
    drain(&mut core, t3, &mut a3, true);
    assert_eq!(names(&a3.replica), domain_names(&core, "subscribers"));
    let e = core.release_quarantine("a").unwrap_err();
    assert_eq!(e.kind, ErrorKind::FailedPrecondition);
}

fn keepalive() -> pb::EpMessage {
    pb::EpMessage {
        body: Some(pb::ep_message::Body::KeepAlive(pb::KeepAlive {})),
    }
}

#[test]
fn a_growing_backlog_quarantines_and_an_import_sized_change_resyncs() {
    let t0 = Instant::now();
    let mut core = core();
    let mut a = connect(&mut core, t0, "a", pb::CascadeRole::RoleUnspecified);
    drain(&mut core, t0, &mut a, true);
    // One change set bigger than max_backlog / 2: a fresh sync instead of 60 queued updates.
    let mut big = brasa_subscriber::ChangeSet::default();
    for i in 0..60 {
        let c = core
            .apply(
                Op::Login {
                    login: Login {
                        name: format!("bulk{i}"),
                        mappings: vec![format!("10.2.0.{i}").parse().unwrap()],
                        ..Login::default()
                    },
                    auto_logout_after: None,
                },
                0,
            )
            .unwrap();
        big.merge(c);
    }
    core.committed(t0, &big);
    let events = drain(&mut core, t0, &mut a, true);
    assert!(matches!(
        events[0],
        ReplicaEvent::SyncBegin { subscribers: 60 }
    ));
    assert_eq!(a.replica.len(), 60);
    assert_eq!(a.replica.syncs(), 2);

    // Small changes while the EP takes nothing: the queue passes max_backlog (100).
    for i in 0..101 {
        login(
            &mut core,
            t0,
            &format!("bulk{}", i % 60),
            &[&format!("10.3.{}.1", i)],
            "subscribers",
        );
    }
    let e = closed(&mut core, t0, a.sid);
    assert!(e.message.contains("max_backlog"), "{e}");
}

#[test]
fn keepalives_are_sent_and_a_silent_ep_fails() {
    let t0 = Instant::now();
    let mut core = core();
    let mut a = connect(&mut core, t0, "a", pb::CascadeRole::RoleUnspecified);
    drain(&mut core, t0, &mut a, true);
    let t1 = t0 + Duration::from_millis(1500);
    core.ep_receive(t1, a.sid, keepalive());
    core.handle_timeout(t1);
    assert_eq!(
        drain(&mut core, t1, &mut a, true),
        [ReplicaEvent::KeepAlive]
    );
    let t2 = t1 + Duration::from_millis(3100);
    core.handle_timeout(t2);
    let e = closed(&mut core, t2, a.sid);
    assert!(e.message.contains("keep-alive"), "{e}");
    let view = &core.ep_views(t2)[0];
    assert_eq!(view.state, EpState::Disconnected);
    assert_eq!(view.counters.failures, 1);
    assert!(view
        .last_failure
        .as_deref()
        .unwrap_or("")
        .contains("no message"));
}

#[test]
fn only_the_active_ep_of_a_cascade_pair_is_updated_and_failover_syncs_the_new_one() {
    let now = Instant::now();
    let mut core = core();
    login(&mut core, now, "n0", &["10.1.0.1"], "north");
    let mut c1 = connect(&mut core, now, "c1", pb::CascadeRole::Active);
    let mut c2 = connect(&mut core, now, "c2", pb::CascadeRole::Standby);
    drain(&mut core, now, &mut c1, true);
    let standby = drain(&mut core, now, &mut c2, true);
    assert!(
        matches!(standby[..], [ReplicaEvent::Welcome(_)]),
        "{standby:?}"
    );
    login(&mut core, now, "n1", &["10.1.0.2"], "north");
    assert_eq!(upserts(&drain(&mut core, now, &mut c1, true)), ["n1"]);
    assert!(drain(&mut core, now, &mut c2, true).is_empty());
    assert_eq!(core.ep_views(now)[4].state, EpState::Standby);

    // c1 fails; c2 becomes active and gets a full sync.
    core.ep_disconnected(c1.sid);
    login(&mut core, now, "n2", &["10.1.0.3"], "north");
    assert!(drain(&mut core, now, &mut c2, true).is_empty());
    core.ep_receive(
        now,
        c2.sid,
        pb::EpMessage {
            body: Some(pb::ep_message::Body::Role(pb::RoleChange {
                role: pb::CascadeRole::Active as i32,
            })),
        },
    );
    drain(&mut core, now, &mut c2, true);
    assert_eq!(names(&c2.replica), ["n0", "n1", "n2"]);
    assert_eq!(core.ep_views(now)[4].counters.failovers, 1);

    // c1 comes back as active: c2 is demoted.
    let mut c1 = connect(&mut core, now, "c1", pb::CascadeRole::Active);
    drain(&mut core, now, &mut c1, true);
    login(&mut core, now, "n3", &["10.1.0.4"], "north");
    assert_eq!(upserts(&drain(&mut core, now, &mut c1, true)), ["n3"]);
    assert!(drain(&mut core, now, &mut c2, true).is_empty());
}

#[test]
fn pull_eps_resolve_on_demand_and_hear_about_what_they_pulled() {
    let now = Instant::now();
    let mut core = core();
    login(&mut core, now, "s0", &["10.0.0.1"], "subscribers");
    login(&mut core, now, "s1", &["10.0.0.2"], "subscribers");
    login(&mut core, now, "n0", &["10.1.0.1"], "north");
    let mut p = connect(&mut core, now, "p", pb::CascadeRole::RoleUnspecified);
    let events = drain(&mut core, now, &mut p, true);
    assert!(events.contains(&ReplicaEvent::SyncBegin { subscribers: 0 }));
    assert!(p.replica.is_empty());
    let pull = |id: u64, addr: &str| pb::EpMessage {
        body: Some(pb::ep_message::Body::Pull(pb::PullRequest {
            request_id: id,
            address: addr.into(),
            vpn: None,
        })),
    };
    for (id, addr) in [
        (1, "10.0.0.1"),
        (2, "10.1.0.1"),
        (3, "10.9.9.9"),
        (4, "bogus"),
    ] {
        core.ep_receive(now, p.sid, pull(id, addr));
    }
    let results: Vec<(u64, Result<Option<String>, String>)> = drain(&mut core, now, &mut p, true)
        .into_iter()
        .filter_map(|e| match e {
            ReplicaEvent::Pulled { request_id, result } => Some((
                request_id,
                result.map(|s| s.map(|s| s.name.as_str().to_owned())),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(results[0], (1, Ok(Some("s0".into()))));
    assert_eq!(
        results[1],
        (2, Ok(None)),
        "another domain's subscriber is not found"
    );
    assert_eq!(results[2], (3, Ok(None)));
    assert!(results[3].1.as_ref().unwrap_err().contains("bogus"));
    assert_eq!(names(&p.replica), ["s0"]);

    // A logout of what it pulled is pushed; one of what it did not pull is not.
    apply(
        &mut core,
        now,
        Op::Logout {
            name: "s1".into(),
            domain: None,
        },
    );
    assert!(drain(&mut core, now, &mut p, true).is_empty());
    apply(
        &mut core,
        now,
        Op::Logout {
            name: "s0".into(),
            domain: None,
        },
    );
    assert_eq!(
        drain(&mut core, now, &mut p, true),
        [ReplicaEvent::Remove("s0".into())]
    );
    assert!(p.replica.is_empty());
}

#[test]
fn bad_hellos_are_refused_precisely() {
    let now = Instant::now();
    let mut core = core();
    let err = |h: pb::Hello, core: &mut SmCore| core.ep_connect(now, &h).unwrap_err();
    let e = err(hello("zz", pb::CascadeRole::RoleUnspecified), &mut core);
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.message.contains("configured: a, b, c1, c2, p"), "{e}");
    let mut h = hello("a", pb::CascadeRole::RoleUnspecified);
    h.domain = "north".into();
    assert!(err(h, &mut core)
        .message
        .contains("configured for domain \"subscribers\""));
    let mut h = hello("a", pb::CascadeRole::RoleUnspecified);
    h.mode = pb::Mode::Pull as i32;
    assert!(err(h, &mut core).message.contains("push mode, not pull"));
    assert!(err(hello("a", pb::CascadeRole::Standby), &mut core)
        .message
        .contains("not in a cascade pair"));
    assert!(
        err(hello("c1", pb::CascadeRole::RoleUnspecified), &mut core)
            .message
            .contains("ACTIVE or STANDBY")
    );
    assert_eq!(core.ep_views(now)[0].counters.refused, 3);
}

fn welcome(keepalive_ms: u32, failure_action: pb::FailureAction) -> pb::SmMessage {
    pb::SmMessage {
        body: Some(pb::sm_message::Body::Welcome(pb::Welcome {
            domain: "subscribers".into(),
            keepalive_interval_ms: keepalive_ms,
            failure_action: failure_action as i32,
            ..Default::default()
        })),
    }
}

fn updates(first_seq: u64, names: &[&str]) -> pb::SmMessage {
    pb::SmMessage {
        body: Some(pb::sm_message::Body::Updates(pb::Updates {
            first_seq,
            updates: names
                .iter()
                .map(|n| pb::Update {
                    body: Some(pb::update::Body::Remove(pb::Remove { name: (*n).into() })),
                })
                .collect(),
        })),
    }
}

/// A replica connected at `t0` whose Hello is already sent.
fn replica(t0: Instant, options: LinkOptions) -> EpReplica {
    let mut r = EpReplica::new();
    r.connect(t0, hello("a", pb::CascadeRole::RoleUnspecified), options);
    assert!(r.poll_transmit(t0).is_some(), "the Hello");
    r
}

fn body(m: Option<pb::EpMessage>) -> Option<pb::ep_message::Body> {
    m.and_then(|m| m.body)
}

#[test]
fn the_replica_detects_sequence_gaps_and_a_second_welcome() {
    let t0 = Instant::now();
    let mut r = EpReplica::new();
    assert_eq!(
        r.handle(t0, updates(1, &["x"])).unwrap_err(),
        ProtocolError::NotConnected
    );
    let mut r = replica(t0, LinkOptions::default());
    assert_eq!(
        r.handle(t0, updates(1, &["x"])).unwrap_err(),
        ProtocolError::NoWelcome
    );
    r.handle(t0, welcome(1000, pb::FailureAction::Ignore))
        .unwrap();
    r.handle(t0, updates(1, &["x"])).unwrap();
    assert_eq!(
        r.handle(t0, updates(3, &["y"])).unwrap_err(),
        ProtocolError::Gap {
            expected: 2,
            got: 3
        }
    );
    assert_eq!(
        r.handle(t0, welcome(1000, pb::FailureAction::Ignore))
            .unwrap_err(),
        ProtocolError::WelcomeTwice
    );
}

#[test]
fn the_replica_acknowledges_cumulatively_and_keeps_the_link_alive() {
    use pb::ep_message::Body;
    let t0 = Instant::now();
    let second = Duration::from_secs(1);
    let mut r = replica(t0, LinkOptions::default());
    assert_eq!(r.poll_timeout(), None, "no timer before the Welcome");
    r.handle(t0, welcome(1000, pb::FailureAction::Ignore))
        .unwrap();
    assert_eq!(r.poll_transmit(t0), None, "nothing to acknowledge yet");
    // Two messages, one acknowledgement of both.
    r.handle(t0, updates(1, &["a", "b"])).unwrap();
    r.handle(t0, updates(3, &["c"])).unwrap();
    assert_eq!(
        body(r.poll_transmit(t0)),
        Some(Body::Ack(pb::Ack { seq: 3 }))
    );
    assert_eq!(r.poll_transmit(t0), None);
    // Requests go out in the order asked, before anything else.
    let id = r.pull("10.0.0.1", None).unwrap();
    r.set_role(pb::CascadeRole::Active).unwrap();
    let Some(Body::Pull(p)) = body(r.poll_transmit(t0)) else {
        panic!("the pull request")
    };
    assert_eq!((p.request_id, p.address.as_str()), (id, "10.0.0.1"));
    assert!(matches!(body(r.poll_transmit(t0)), Some(Body::Role(_))));
    // Nothing sent for an interval: a keep-alive, due exactly then.
    assert_eq!(r.poll_timeout(), Some(t0 + second));
    assert_eq!(r.poll_transmit(t0 + second / 2), None);
    let t1 = t0 + second;
    r.handle_timeout(t1).unwrap();
    assert!(matches!(
        body(r.poll_transmit(t1)),
        Some(Body::KeepAlive(_))
    ));
    assert_eq!(r.poll_transmit(t1), None);
    assert_eq!(r.poll_timeout(), Some(t1 + second));
}

#[test]
fn a_silent_sm_is_a_link_failure_and_the_failure_action_applies() {
    let t0 = Instant::now();
    let second = Duration::from_secs(1);
    let quiet = LinkOptions {
        ack: false,
        keepalives: false,
    };
    let mut r = replica(t0, quiet);
    r.handle(t0, welcome(1000, pb::FailureAction::ClearMappings))
        .unwrap();
    r.handle(t0, upsert_s1()).unwrap();
    assert_eq!(r.len(), 1);
    // Neither acknowledgements nor keep-alives when switched off.
    assert_eq!(r.poll_transmit(t0 + 10 * second), None);
    // Only the dead-SM timer runs: three intervals after the last message.
    let t1 = t0 + 2 * second;
    r.handle(t1, keepalive_from_sm()).unwrap();
    assert_eq!(r.poll_timeout(), Some(t1 + 3 * second));
    r.handle_timeout(t1 + 3 * second - Duration::from_millis(1))
        .unwrap();
    let e = r.handle_timeout(t1 + 3 * second).unwrap_err();
    assert_eq!(e.silent, 3 * second);
    assert!(r.connection_lost(), "clear-mappings erases the table");
    assert!(r.is_empty());
    assert_eq!(r.poll_timeout(), None);
    assert_eq!(
        r.pull("10.0.0.1", None).unwrap_err(),
        ProtocolError::NotConnected
    );

    // With `ignore`, the table survives the failure and the next connection's sync replaces it.
    let mut r = replica(t0, LinkOptions::default());
    r.handle(t0, welcome(1000, pb::FailureAction::Ignore))
        .unwrap();
    r.handle(t0, upsert_s1()).unwrap();
    assert!(!r.connection_lost());
    assert_eq!(r.len(), 1);
}

fn upsert_s1() -> pb::SmMessage {
    pb::SmMessage {
        body: Some(pb::sm_message::Body::Updates(pb::Updates {
            first_seq: 1,
            updates: vec![pb::Update {
                body: Some(pb::update::Body::Upsert(pb::Subscriber {
                    name: "s1".into(),
                    mappings: vec!["10.0.0.1".into()],
                    ..Default::default()
                })),
            }],
        })),
    }
}

fn keepalive_from_sm() -> pb::SmMessage {
    pb::SmMessage {
        body: Some(pb::sm_message::Body::KeepAlive(pb::KeepAlive {})),
    }
}

fn activate(name: &str, requests: &[ServiceRequest]) -> Op {
    Op::ActivateServices {
        name: name.into(),
        create_in: None,
        requests: requests.to_vec(),
    }
}

fn service_names(sub: Option<Subscriber>) -> Vec<String> {
    sub.map(|s| s.services.iter().map(|s| s.name.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn services_reach_push_eps_with_the_subscriber_and_a_logout_takes_them_away() {
    let now = Instant::now();
    let mut core = core();
    login(&mut core, now, "s0", &["10.0.0.1"], "subscribers");
    let mut a = connect(&mut core, now, "a", pb::CascadeRole::RoleUnspecified);
    drain(&mut core, now, &mut a, true);

    let none = TypeConflictAction::None;
    apply(&mut core, now, activate("s0", &[pcc_service("gold", none)]));
    let events = drain(&mut core, now, &mut a, true);
    assert_eq!(upserts(&events), ["s0"]);
    assert_eq!(service_names(a.replica.get("s0")), ["gold"]);
    let held = a.replica.get("s0").unwrap().services.get("gold").cloned();
    assert_eq!(
        held.map(ServiceRequest::Add),
        Some(pcc_service("gold", none))
    );

    // Refused (keep-old against gold): a precise error, nothing changed, nothing pushed.
    let keep_old = pcc_service("silver", TypeConflictAction::KeepOld);
    let refused = core.apply(activate("s0", &[keep_old]), 0).unwrap_err();
    assert_eq!(refused.kind, ErrorKind::FailedPrecondition);
    assert!(refused.message.contains("keep-old"), "{}", refused.message);
    assert!(drain(&mut core, now, &mut a, true).is_empty());
    let unknown = core.apply(activate("nobody", &[]), 0).unwrap_err();
    assert_eq!(unknown.kind, ErrorKind::NotFound);

    // Reconnected, the EP gets them in its full sync.
    core.ep_disconnected(a.sid);
    let mut a = connect(&mut core, now, "a", pb::CascadeRole::RoleUnspecified);
    let events = drain(&mut core, now, &mut a, true);
    assert!(events.contains(&ReplicaEvent::SyncEnd { subscribers: 1 }));
    assert_eq!(service_names(a.replica.get("s0")), ["gold"]);

    // keep-new replaces gold in one update.
    let keep_new = pcc_service("platinum", TypeConflictAction::KeepNew);
    apply(&mut core, now, activate("s0", &[keep_new]));
    assert_eq!(upserts(&drain(&mut core, now, &mut a, true)), ["s0"]);
    assert_eq!(service_names(a.replica.get("s0")), ["platinum"]);
    let deactivate = Op::DeactivateServices {
        name: "s0".into(),
        services: vec!["gold".into()],
    };
    assert_eq!(
        core.apply(deactivate, 0).unwrap_err().kind,
        ErrorKind::NotFound,
        "gold is no longer active"
    );

    // The logout removes the subscriber from the EP, and with it its services; the record
    // keeps none.
    apply(
        &mut core,
        now,
        Op::Logout {
            name: "s0".into(),
            domain: None,
        },
    );
    assert_eq!(
        drain(&mut core, now, &mut a, true),
        [ReplicaEvent::Remove("s0".into())]
    );
    assert!(core.index().get("s0").unwrap().services.is_empty());
}

#[test]
fn a_pull_answer_and_the_bulk_operation_carry_services() {
    let now = Instant::now();
    let mut core = core();
    login(&mut core, now, "s0", &["10.0.0.1"], "subscribers");
    let gold = pcc_service("gold", TypeConflictAction::None);
    let leg_op = |requests: Vec<pb::ServiceRequest>| pb::LegOp {
        op: Some(pb::leg_op::Op::ActivateServices(
            pb::ActivateServicesRequest {
                name: "s0".into(),
                requests,
            },
        )),
    };
    let case = NameCase::Sensitive;
    let empty = pb::ServiceRequest { request: None };
    let bad = op_from_proto(leg_op(vec![empty]), case).unwrap_err();
    assert_eq!(bad.kind, ErrorKind::InvalidArgument);
    assert!(bad.message.contains("add"), "{}", bad.message);
    let mut unknown = brasa_sm::service_proto::request_to_proto(&gold);
    if let Some(pb::service_request::Request::Add(service)) = &mut unknown.request {
        service.rules[0].direction = 7;
    }
    let bad = op_from_proto(leg_op(vec![unknown]), case).unwrap_err();
    assert_eq!(bad.kind, ErrorKind::InvalidArgument);
    assert!(bad.message.contains("direction = 7"), "{}", bad.message);
    let requests = vec![brasa_sm::service_proto::request_to_proto(&gold)];
    apply(
        &mut core,
        now,
        op_from_proto(leg_op(requests), case).unwrap(),
    );

    let mut p = connect(&mut core, now, "p", pb::CascadeRole::RoleUnspecified);
    drain(&mut core, now, &mut p, true);
    core.ep_receive(
        now,
        p.sid,
        pb::EpMessage {
            body: Some(pb::ep_message::Body::Pull(pb::PullRequest {
                request_id: 1,
                address: "10.0.0.1".into(),
                vpn: None,
            })),
        },
    );
    let pulled: Vec<Subscriber> = drain(&mut core, now, &mut p, true)
        .into_iter()
        .filter_map(|e| match e {
            ReplicaEvent::Pulled {
                result: Ok(Some(s)),
                ..
            } => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(pulled.len(), 1);
    assert_eq!(
        pulled[0]
            .services
            .get("gold")
            .cloned()
            .map(ServiceRequest::Add),
        Some(gold)
    );

    let off = pb::LegOp {
        op: Some(pb::leg_op::Op::DeactivateServices(
            pb::DeactivateServicesRequest {
                name: "s0".into(),
                services: vec!["gold".into()],
            },
        )),
    };
    apply(&mut core, now, op_from_proto(off, case).unwrap());
    assert!(core.index().get("s0").unwrap().services.is_empty());
}
