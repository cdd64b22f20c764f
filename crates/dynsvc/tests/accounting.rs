//! RADIUS accounting of dynamic services: Start, Interim-Update and Stop per destination, the
//! Accept's overrides of the policy, the attributes of each record.

use std::time::{Duration, Instant};

use brasa_dynsvc::acct::AcctError;
use brasa_dynsvc::{Accounting, AcctOverride, AcctRecord, AcctSettings, ServiceSession, StatsType};
use brasa_radius::acct::SessionCounters;
use brasa_radius::{attr, AcctStatusType, AcctTerminateCause, Code, Message};
use brasa_services::SapId;

fn sap(text: &str) -> SapId {
    SapId::parse(text).unwrap()
}

fn session(text: &str) -> ServiceSession {
    ServiceSession {
        sap: sap(text),
        acct_session_id: format!("svc-{text}"),
        multi_session_id: "trigger-session".into(),
    }
}

fn every(secs: u64, stats_type: StatsType) -> AcctSettings {
    AcctSettings {
        stats_type,
        interim: Some(Duration::from_secs(secs)),
    }
}

fn integer(message: &Message, typ: u8) -> Option<u32> {
    message.attributes.first(typ).and_then(attr::integer)
}

fn text(message: &Message, typ: u8) -> Option<&str> {
    message
        .attributes
        .first(typ)
        .and_then(|v| std::str::from_utf8(v).ok())
}

fn status(record: &AcctRecord) -> AcctStatusType {
    record.message.acct_status_type().unwrap()
}

const COUNTERS: SessionCounters = SessionCounters {
    input_octets: 5 * (1 << 32) + 7,
    output_octets: 1000,
    input_packets: 42,
    output_packets: (1 << 32) + 3,
};

#[test]
fn overrides_replace_the_policy_per_destination_and_field() {
    let policy = [every(600, StatsType::VolumeTime), AcctSettings::OFF];
    let overrides = [
        AcctOverride {
            stats_type: None,
            interim_secs: Some(0),
        },
        AcctOverride {
            stats_type: Some(StatsType::Time),
            interim_secs: Some(300),
        },
    ];
    assert_eq!(
        AcctSettings::resolve(policy, overrides),
        [
            AcctSettings {
                stats_type: StatsType::VolumeTime,
                interim: None,
            },
            every(300, StatsType::Time),
        ]
    );
    assert_eq!(AcctSettings::resolve(policy, Default::default()), policy);
}

#[test]
fn start_goes_to_each_enabled_destination_with_both_session_ids() {
    let now = Instant::now();
    let mut accounting = Accounting::new("pe-1");
    let records = accounting
        .start(
            session("eth1:1214.101"),
            [AcctSettings::OFF, every(60, StatsType::Time)],
            now,
        )
        .unwrap();
    assert_eq!(records.len(), 1);
    let start = &records[0];
    assert_eq!(start.destination, 1);
    assert_eq!(start.message.code, Code::AccountingRequest);
    assert_eq!(status(start), AcctStatusType::Start);
    assert_eq!(
        text(&start.message, attr::ACCT_SESSION_ID),
        Some("svc-eth1:1214.101")
    );
    assert_eq!(
        text(&start.message, attr::ACCT_MULTI_SESSION_ID),
        Some("trigger-session")
    );
    assert_eq!(
        text(&start.message, attr::NAS_PORT_ID),
        Some("eth1:1214.101")
    );
    assert_eq!(text(&start.message, attr::NAS_IDENTIFIER), Some("pe-1"));
    assert_eq!(integer(&start.message, attr::ACCT_SESSION_TIME), None);
    assert!(accounting.is_running(&sap("eth1:1214.101")));
}

#[test]
fn a_service_with_both_destinations_off_sends_nothing_and_has_no_deadline() {
    let now = Instant::now();
    let mut accounting = Accounting::new("pe-1");
    let off = AcctSettings {
        stats_type: StatsType::Off,
        interim: Some(Duration::from_secs(60)),
    };
    let records = accounting
        .start(session("eth1:1214.101"), [off, off], now)
        .unwrap();
    assert!(records.is_empty());
    assert_eq!(accounting.poll_timeout(), None);
    let stop = accounting
        .stop(
            &sap("eth1:1214.101"),
            COUNTERS,
            AcctTerminateCause::AdminReset,
            now,
        )
        .unwrap();
    assert!(stop.is_empty());
}

#[test]
fn interim_updates_follow_each_destination_interval() {
    let t0 = Instant::now();
    let mut accounting = Accounting::new("pe-1");
    accounting
        .start(
            session("eth1:1214.101"),
            [every(60, StatsType::VolumeTime), every(90, StatsType::Time)],
            t0,
        )
        .unwrap();
    assert_eq!(
        accounting.poll_timeout(),
        Some(t0 + Duration::from_secs(60))
    );
    assert!(accounting
        .handle_timeout(t0 + Duration::from_secs(59), |_| COUNTERS)
        .unwrap()
        .is_empty());

    let due = accounting
        .handle_timeout(t0 + Duration::from_secs(60), |_| COUNTERS)
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].destination, status(&due[0])),
        (0, AcctStatusType::InterimUpdate)
    );
    assert_eq!(integer(&due[0].message, attr::ACCT_SESSION_TIME), Some(60));
    assert_eq!(
        accounting.poll_timeout(),
        Some(t0 + Duration::from_secs(90))
    );

    let due = accounting
        .handle_timeout(t0 + Duration::from_secs(120), |_| COUNTERS)
        .unwrap();
    let destinations: Vec<usize> = due.iter().map(|r| r.destination).collect();
    assert_eq!(destinations, vec![1, 0]);
    assert_eq!(
        accounting.poll_timeout(),
        Some(t0 + Duration::from_secs(180))
    );
}

#[test]
fn a_late_timeout_sends_one_interim_and_keeps_the_cadence() {
    let t0 = Instant::now();
    let mut accounting = Accounting::new("pe-1");
    accounting
        .start(
            session("eth1:1214.101"),
            [every(60, StatsType::Time), AcctSettings::OFF],
            t0,
        )
        .unwrap();
    let due = accounting
        .handle_timeout(t0 + Duration::from_secs(250), |_| COUNTERS)
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        accounting.poll_timeout(),
        Some(t0 + Duration::from_secs(300))
    );
}

#[test]
fn volume_time_reports_octets_with_gigawords_and_packets() {
    let t0 = Instant::now();
    let mut accounting = Accounting::new("pe-1");
    accounting
        .start(
            session("eth1:1214.101"),
            [every(60, StatsType::VolumeTime), every(60, StatsType::Time)],
            t0,
        )
        .unwrap();
    let due = accounting
        .handle_timeout(t0 + Duration::from_secs(60), |sap| {
            assert_eq!(sap, &SapId::parse("eth1:1214.101").unwrap());
            COUNTERS
        })
        .unwrap();
    let volume = &due.iter().find(|r| r.destination == 0).unwrap().message;
    assert_eq!(integer(volume, attr::ACCT_INPUT_OCTETS), Some(7));
    assert_eq!(integer(volume, attr::ACCT_INPUT_GIGAWORDS), Some(5));
    assert_eq!(integer(volume, attr::ACCT_OUTPUT_OCTETS), Some(1000));
    assert_eq!(integer(volume, attr::ACCT_OUTPUT_GIGAWORDS), Some(0));
    assert_eq!(integer(volume, attr::ACCT_INPUT_PACKETS), Some(42));
    assert_eq!(integer(volume, attr::ACCT_OUTPUT_PACKETS), Some(3));
    let time = &due.iter().find(|r| r.destination == 1).unwrap().message;
    assert_eq!(integer(time, attr::ACCT_SESSION_TIME), Some(60));
    for typ in [
        attr::ACCT_INPUT_OCTETS,
        attr::ACCT_OUTPUT_OCTETS,
        attr::ACCT_INPUT_PACKETS,
        attr::ACCT_OUTPUT_PACKETS,
        attr::ACCT_INPUT_GIGAWORDS,
        attr::ACCT_OUTPUT_GIGAWORDS,
    ] {
        assert_eq!(
            time.attributes.first(typ),
            None,
            "attribute {typ} in a time record"
        );
    }
}

#[test]
fn stop_carries_time_counters_and_terminate_cause_and_ends_the_interims() {
    let t0 = Instant::now();
    let mut accounting = Accounting::new("pe-1");
    accounting
        .start(
            session("eth1:1214.101"),
            [every(60, StatsType::VolumeTime), every(60, StatsType::Time)],
            t0,
        )
        .unwrap();
    let stops = accounting
        .stop(
            &sap("eth1:1214.101"),
            COUNTERS,
            AcctTerminateCause::AdminReset,
            t0 + Duration::from_secs(45),
        )
        .unwrap();
    assert_eq!(stops.len(), 2);
    for stop in &stops {
        assert_eq!(status(stop), AcctStatusType::Stop);
        assert_eq!(integer(&stop.message, attr::ACCT_SESSION_TIME), Some(45));
        assert_eq!(integer(&stop.message, attr::ACCT_TERMINATE_CAUSE), Some(6));
        assert_eq!(
            text(&stop.message, attr::ACCT_MULTI_SESSION_ID),
            Some("trigger-session")
        );
    }
    assert_eq!(integer(&stops[0].message, attr::ACCT_INPUT_OCTETS), Some(7));
    assert_eq!(accounting.poll_timeout(), None);
    assert!(!accounting.is_running(&sap("eth1:1214.101")));
    assert!(accounting
        .handle_timeout(t0 + Duration::from_secs(600), |_| COUNTERS)
        .unwrap()
        .is_empty());
}

#[test]
fn terminate_causes_have_their_rfc_2866_values() {
    let now = Instant::now();
    let mut accounting = Accounting::new("pe-1");
    for (cause, value) in [
        (AcctTerminateCause::LostService, 3),
        (AcctTerminateCause::AdminReset, 6),
        (AcctTerminateCause::AdminReboot, 7),
        (AcctTerminateCause::NasError, 9),
        (AcctTerminateCause::NasRequest, 10),
    ] {
        accounting
            .start(
                session("eth1:7"),
                [every(60, StatsType::Time), AcctSettings::OFF],
                now,
            )
            .unwrap();
        let stop = accounting
            .stop(&sap("eth1:7"), COUNTERS, cause, now)
            .unwrap();
        assert_eq!(
            integer(&stop[0].message, attr::ACCT_TERMINATE_CAUSE),
            Some(value)
        );
    }
}

#[test]
fn invalid_calls_are_refused_and_change_nothing() {
    let now = Instant::now();
    let mut accounting = Accounting::new("pe-1");
    let settings = [every(60, StatsType::Time), AcctSettings::OFF];
    accounting
        .start(session("eth1:1214.101"), settings, now)
        .unwrap();
    assert_eq!(
        accounting.start(
            session("eth1:1214.101"),
            [every(5, StatsType::Time); 2],
            now
        ),
        Err(AcctError::AlreadyStarted(sap("eth1:1214.101")))
    );
    assert_eq!(
        accounting.poll_timeout(),
        Some(now + Duration::from_secs(60))
    );
    assert_eq!(
        accounting.stop(
            &sap("eth1:9"),
            COUNTERS,
            AcctTerminateCause::AdminReset,
            now
        ),
        Err(AcctError::NotStarted(sap("eth1:9")))
    );
    let long = ServiceSession {
        acct_session_id: "x".repeat(300),
        ..session("eth1:8")
    };
    assert!(matches!(
        accounting.start(long, settings, now),
        Err(AcctError::Packet(_))
    ));
    assert!(!accounting.is_running(&sap("eth1:8")));
    assert_eq!(
        accounting.poll_timeout(),
        Some(now + Duration::from_secs(60))
    );
}

#[test]
fn a_modify_replaces_interval_and_stats_type_and_starts_or_stops_destinations() {
    let t0 = Instant::now();
    let mut accounting = Accounting::new("pe-1");
    accounting
        .start(
            session("eth1:1214.101"),
            [every(600, StatsType::Time), AcctSettings::OFF],
            t0,
        )
        .unwrap();
    let at = |secs| t0 + Duration::from_secs(secs);
    // At 100 s: destination 1 goes to volume-time every 30 s, destination 2 is turned on.
    let records = accounting
        .modify(
            &sap("eth1:1214.101"),
            [
                AcctOverride {
                    stats_type: Some(StatsType::VolumeTime),
                    interim_secs: Some(30),
                },
                AcctOverride {
                    stats_type: Some(StatsType::Time),
                    interim_secs: None,
                },
            ],
            COUNTERS,
            at(100),
        )
        .unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (records[0].destination, status(&records[0])),
        (1, AcctStatusType::Start)
    );
    assert_eq!(accounting.poll_timeout(), Some(at(130)));
    let due = accounting.handle_timeout(at(130), |_| COUNTERS).unwrap();
    assert_eq!(due.len(), 1, "destination 2 has no interval: {due:?}");
    assert_eq!(due[0].destination, 0);
    assert_eq!(
        integer(&due[0].message, attr::ACCT_INPUT_PACKETS),
        Some(42),
        "volume-time now"
    );
    assert_eq!(accounting.poll_timeout(), Some(at(160)));

    // Turning destination 1 off sends its Stop and ends its Interim-Updates.
    let records = accounting
        .modify(
            &sap("eth1:1214.101"),
            [
                AcctOverride {
                    stats_type: Some(StatsType::Off),
                    interim_secs: None,
                },
                AcctOverride::default(),
            ],
            COUNTERS,
            at(140),
        )
        .unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (records[0].destination, status(&records[0])),
        (0, AcctStatusType::Stop)
    );
    assert_eq!(
        integer(&records[0].message, attr::ACCT_SESSION_TIME),
        Some(140)
    );
    assert_eq!(accounting.poll_timeout(), None);
    // A modify without overrides changes nothing.
    assert!(accounting
        .modify(&sap("eth1:1214.101"), Default::default(), COUNTERS, at(150))
        .unwrap()
        .is_empty());
    assert_eq!(
        accounting.modify(&sap("eth1:9"), Default::default(), COUNTERS, at(150)),
        Err(AcctError::NotStarted(sap("eth1:9")))
    );
}
