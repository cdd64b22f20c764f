//! Start, Interim-Update and Stop of subscriber service instances.

use std::time::{Duration, Instant};

use brasa_radius::attr::{self, integer};
use brasa_radius::{AcctStatusType, AcctTerminateCause, Dictionary, Message};
use brasa_subsvc::*;

struct Readings {
    accounted: Counter,
    aggregate: Volume,
}

impl CounterSource for Readings {
    fn rule_forwarded(&self, _rule: &PccRule) -> Counter {
        self.accounted
    }
    fn subscriber_forwarded(&self) -> Volume {
        self.aggregate
    }
}

fn service(stats: AcctStatsType, interval: Option<u32>, account: bool) -> SubscriberService {
    let mut service = SubscriberService::new("subsvc-pccrule-1");
    service.acct_stats_type = stats;
    service.acct_interval = interval;
    let mut rule = PccRule::new("pcc-rule-1-i", Direction::Ingress);
    rule.flows.push(Flow {
        dst_ip: Some("10.1.1.0/24".parse().unwrap()),
        ..Flow::default()
    });
    rule.actions.account = account;
    service.rules.push(rule);
    service
}

fn int(message: &Message, typ: u8) -> Option<u32> {
    message.get(typ).and_then(integer)
}

fn pairs(message: &Message) -> Vec<String> {
    let dict = Dictionary::builtin();
    dict.decode_pairs(message, None)
        .iter()
        .map(|p| p.to_text(&dict))
        .collect()
}

#[test]
fn an_instance_reports_start_interims_and_stop_with_the_accounted_rules() {
    let t0 = Instant::now();
    let mut acct = Accounting::new("brasa-1", 0x144D_FF00, Some(600));
    let svc = service(AcctStatsType::VolumeTime, Some(3600), true);
    let aggregate_now = Volume {
        ingress: Counter {
            octets: 5_000,
            packets: 5,
        },
        egress: Counter::default(),
    };
    let start = acct
        .start("sub-1", "SESSION-1", &svc, aggregate_now, t0)
        .unwrap()
        .unwrap();
    let key = start.instance().clone();
    assert_eq!(
        pairs(&start.message),
        [
            "Acct-Status-Type = Start",
            "User-Name = \"sub-1\"",
            "Acct-Session-Id = \"144DFF0000000000000001\"",
            "Acct-Multi-Session-Id = \"SESSION-1\"",
            "NAS-Identifier = \"brasa-1\"",
            "Alc-Sub-Serv-Activate = \"subsvc-pccrule-1\"",
        ]
    );
    assert_eq!(acct.acct_session_id(&key), Some("144DFF0000000000000001"));
    assert_eq!(acct.poll_timeout(), Some(t0 + Duration::from_secs(3600)));
    assert!(acct
        .handle_timeout(t0 + Duration::from_secs(3599), |_| unreachable_readings())
        .unwrap()
        .is_empty());

    let readings = Readings {
        accounted: Counter {
            octets: (1 << 32) + 10,
            packets: 7,
        },
        aggregate: Volume::default(),
    };
    let interims = acct
        .handle_timeout(t0 + Duration::from_secs(3600), |k| {
            assert_eq!(k, &key);
            Readings { ..readings }
        })
        .unwrap();
    assert_eq!(interims.len(), 1);
    let interim = &interims[0].message;
    assert_eq!(
        int(interim, attr::ACCT_STATUS_TYPE),
        Some(u32::from(AcctStatusType::InterimUpdate))
    );
    assert_eq!(int(interim, attr::ACCT_SESSION_TIME), Some(3600));
    assert_eq!(int(interim, attr::ACCT_INPUT_OCTETS), Some(10));
    assert_eq!(int(interim, attr::ACCT_INPUT_GIGAWORDS), Some(1));
    assert_eq!(int(interim, attr::ACCT_INPUT_PACKETS), Some(7));
    assert_eq!(int(interim, attr::ACCT_OUTPUT_OCTETS), Some(0));
    assert_eq!(acct.poll_timeout(), Some(t0 + Duration::from_secs(7200)));

    let stop = acct
        .stop(
            &key,
            &readings,
            AcctTerminateCause::AdminReset,
            t0 + Duration::from_secs(4000),
        )
        .unwrap();
    assert_eq!(
        int(&stop.message, attr::ACCT_STATUS_TYPE),
        Some(u32::from(AcctStatusType::Stop))
    );
    assert_eq!(int(&stop.message, attr::ACCT_SESSION_TIME), Some(4000));
    assert_eq!(int(&stop.message, attr::ACCT_TERMINATE_CAUSE), Some(6));
    assert_eq!(acct.poll_timeout(), None);
    assert!(!acct.is_running(&key));
    assert_eq!(
        acct.stop(&key, &readings, AcctTerminateCause::AdminReset, t0),
        Err(AcctError::NotStarted(key))
    );
}

fn unreachable_readings() -> Readings {
    panic!("no instance is due")
}

#[test]
fn without_accounted_rules_the_volume_is_the_aggregate_since_the_start() {
    let t0 = Instant::now();
    let mut acct = Accounting::new("brasa-1", 1, None);
    let svc = service(AcctStatsType::VolumeTime, None, false);
    let at_start = Volume {
        ingress: Counter {
            octets: 1_000,
            packets: 10,
        },
        egress: Counter {
            octets: 2_000,
            packets: 20,
        },
    };
    let key = acct
        .start("sub-1", "S", &svc, at_start, t0)
        .unwrap()
        .unwrap()
        .reported
        .instance;
    // No interval anywhere: no Interim-Update.
    assert_eq!(acct.poll_timeout(), None);
    let readings = Readings {
        accounted: Counter {
            octets: 999_999,
            packets: 999,
        },
        aggregate: Volume {
            ingress: Counter {
                octets: 1_500,
                packets: 15,
            },
            egress: Counter {
                octets: 2_100,
                packets: 21,
            },
        },
    };
    let stop = acct
        .stop(
            &key,
            &readings,
            AcctTerminateCause::UserRequest,
            t0 + Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(int(&stop.message, attr::ACCT_INPUT_OCTETS), Some(500));
    assert_eq!(int(&stop.message, attr::ACCT_OUTPUT_OCTETS), Some(100));
    assert_eq!(int(&stop.message, attr::ACCT_INPUT_PACKETS), Some(5));
    assert_eq!(int(&stop.message, attr::ACCT_OUTPUT_PACKETS), Some(1));
}

#[test]
fn off_sends_nothing_and_time_sends_no_volume() {
    let t0 = Instant::now();
    let mut acct = Accounting::new("n", 1, Some(300));
    let off = service(AcctStatsType::Off, None, true);
    assert_eq!(
        acct.start("sub", "S", &off, Volume::default(), t0),
        Ok(None)
    );
    let time = service(AcctStatsType::Time, Some(0), true);
    let key = acct
        .start("sub", "S", &time, Volume::default(), t0)
        .unwrap()
        .unwrap()
        .reported
        .instance;
    assert_eq!(
        acct.start("sub", "S", &time, Volume::default(), t0),
        Err(AcctError::AlreadyStarted(key.clone()))
    );
    // acct-interval 0 turns the configured default off.
    assert_eq!(acct.poll_timeout(), None);
    let readings = Readings {
        accounted: Counter {
            octets: 5,
            packets: 1,
        },
        aggregate: Volume::default(),
    };
    let stop = acct
        .stop(
            &key,
            &readings,
            AcctTerminateCause::NasRequest,
            t0 + Duration::from_secs(9),
        )
        .unwrap();
    assert_eq!(int(&stop.message, attr::ACCT_SESSION_TIME), Some(9));
    assert_eq!(stop.message.get(attr::ACCT_INPUT_OCTETS), None);
}

#[test]
fn a_late_timer_skips_missed_interims_and_long_names_span_attributes() {
    let t0 = Instant::now();
    let mut acct = Accounting::new("n", 1, None);
    let mut svc = service(AcctStatsType::Time, Some(300), false);
    svc.name = "x".repeat(300);
    let start = acct
        .start("sub", "S", &svc, Volume::default(), t0)
        .unwrap()
        .unwrap();
    let dict = Dictionary::builtin();
    let parts = start.message.get_vsa_all(&dict, 6527, 151);
    assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [247, 53]);
    let readings = || Readings {
        accounted: Counter::default(),
        aggregate: Volume::default(),
    };
    let interims = acct
        .handle_timeout(t0 + Duration::from_secs(1000), |_| readings())
        .unwrap();
    assert_eq!(interims.len(), 1);
    assert_eq!(acct.poll_timeout(), Some(t0 + Duration::from_secs(1200)));
}

#[test]
fn a_lower_minimum_interval_gives_interims_every_few_seconds() {
    let t0 = Instant::now();
    let mut sr_os = Accounting::new("n", 1, None);
    let mut lab = Accounting::new("n", 2, None).with_min_interval(2);
    let svc = service(AcctStatsType::VolumeTime, Some(2), true);
    sr_os
        .start("sub", "S", &svc, Volume::default(), t0)
        .unwrap();
    lab.start("sub", "S", &svc, Volume::default(), t0).unwrap();
    assert_eq!(sr_os.poll_timeout(), Some(t0 + Duration::from_secs(300)));
    assert_eq!(lab.poll_timeout(), Some(t0 + Duration::from_secs(2)));
    let mut zero = Accounting::new("n", 3, None).with_min_interval(0);
    let mut every_second = service(AcctStatsType::Time, Some(1), true);
    every_second.name = "one".into();
    zero.start("sub", "S", &every_second, Volume::default(), t0)
        .unwrap();
    assert_eq!(
        zero.poll_timeout(),
        Some(t0 + Duration::from_secs(1)),
        "a minimum of 0 counts as 1 s"
    );
}

/// The Stop built from what an instance last reported (as a journal keeps it) is the Stop its
/// running accounting would have sent at that time, but for the cause.
#[test]
fn the_stop_of_what_was_reported_matches_the_last_interim() {
    let t0 = Instant::now();
    let mut acct = Accounting::new("brasa-1", 7, None).with_min_interval(1);
    let svc = service(AcctStatsType::VolumeTime, Some(10), true);
    let start = acct
        .start("sub-1", "SESSION-1", &svc, Volume::default(), t0)
        .unwrap()
        .unwrap();
    assert_eq!(start.status, AcctStatusType::Start);
    assert_eq!(start.reported.session_time, 0);
    assert_eq!(start.reported.volume, Volume::default());
    let readings = Readings {
        accounted: Counter {
            octets: 12_345,
            packets: 11,
        },
        aggregate: Volume::default(),
    };
    let interim = acct
        .handle_timeout(t0 + Duration::from_secs(10), |_| Readings { ..readings })
        .unwrap()
        .remove(0);
    assert_eq!(interim.status, AcctStatusType::InterimUpdate);
    assert_eq!(interim.reported.session_time, 10);
    assert_eq!(interim.reported.volume.ingress.octets, 12_345);

    let json = serde_json::to_string(&interim.reported).unwrap();
    let journaled: Reported = serde_json::from_str(&json).unwrap();
    let crash_stop = journaled.stop(AcctTerminateCause::NasReboot).unwrap();
    let clean_stop = acct
        .stop(
            interim.instance(),
            &readings,
            AcctTerminateCause::NasReboot,
            t0 + Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(crash_stop, clean_stop);
    assert_eq!(
        pairs(&crash_stop.message),
        [
            "Acct-Status-Type = Stop",
            "User-Name = \"sub-1\"",
            "Acct-Session-Id = \"0000000700000000000001\"",
            "Acct-Multi-Session-Id = \"SESSION-1\"",
            "NAS-Identifier = \"brasa-1\"",
            "Alc-Sub-Serv-Activate = \"subsvc-pccrule-1\"",
            "Acct-Session-Time = 10",
            "Acct-Input-Octets = 12345",
            "Acct-Input-Gigawords = 0",
            "Acct-Output-Octets = 0",
            "Acct-Output-Gigawords = 0",
            "Acct-Input-Packets = 11",
            "Acct-Output-Packets = 0",
            "Acct-Terminate-Cause = NAS-Reboot",
        ]
    );
}
