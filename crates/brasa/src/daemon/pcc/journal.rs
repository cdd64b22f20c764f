//! The service instances whose accounting Start was sent, on disk
//! (`<data_dir>/pcc/accounting`), so that the instances a crash ended still get their Stop.
//!
//! The sender journals each batch of records before it sends them, with one `fdatasync`: a
//! Start or Interim-Update line holds what the record [`Reported`] (the instance, its
//! Acct-Session-Id and Acct-Multi-Session-Id, its last session time and volume), a Stop line
//! strikes the instance. The next start replays the file: every instance left is one the
//! crash ended, and its Stop (NAS-Reboot, with the last reported time and volume) is queued
//! before anything else. A line cut short by the crash is the last one written, after every
//! line the sender relied on, so it is skipped.

use crate::common::durable;
use brasa_radius::AcctStatusType;
use brasa_subsvc::{AcctRecord, Reported};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One line of the journal (JSON).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Line {
    /// A Start or Interim-Update: the instance as it reported.
    Reported(Reported),
    /// A Stop: the instance of that Acct-Session-Id is over.
    Stopped(String),
}

/// The journal file and the instances it holds.
pub struct AcctJournal {
    path: PathBuf,
    file: std::fs::File,
    /// By Acct-Session-Id.
    live: HashMap<String, Reported>,
    lines: usize,
}

/// The instances `text` leaves open, by Acct-Session-Id, and how many lines were unreadable.
fn replay(text: &str) -> (HashMap<String, Reported>, usize) {
    let mut live = HashMap::new();
    let mut unreadable = 0;
    for line in text.lines().filter(|line| !line.is_empty()) {
        match serde_json::from_str::<Line>(line) {
            Ok(Line::Reported(reported)) => {
                live.insert(reported.acct_session_id.clone(), reported);
            }
            Ok(Line::Stopped(id)) => {
                live.remove(&id);
            }
            Err(_) => unreadable += 1,
        }
    }
    (live, unreadable)
}

impl AcctJournal {
    /// Opens the journal in `dir`: the instances an earlier run left open (ordered by
    /// Acct-Session-Id), which stay in the journal until their Stop is journaled.
    pub fn open(dir: &Path) -> std::io::Result<(AcctJournal, Vec<Reported>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("accounting");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(error),
        };
        let (live, unreadable) = replay(&text);
        if unreadable > 0 {
            tracing::warn!(path = %path.display(), unreadable, "accounting journal: unreadable lines skipped (a write the crash cut short)");
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let mut journal = AcctJournal {
            path,
            file,
            live,
            lines: 0,
        };
        journal.compact()?;
        let mut left: Vec<Reported> = journal.live.values().cloned().collect();
        left.sort_by(|a, b| a.acct_session_id.cmp(&b.acct_session_id));
        Ok((journal, left))
    }

    /// Journals `records` before they are sent: one write and one `fdatasync` for all. On
    /// `Err` the file may hold a part of them; the records may still be sent (their instances
    /// then get no Stop after a crash, as without a journal).
    pub fn record(&mut self, records: &[AcctRecord]) -> std::io::Result<()> {
        let mut text = String::new();
        for record in records {
            let line = if record.status == AcctStatusType::Stop {
                self.live.remove(&record.reported.acct_session_id);
                Line::Stopped(record.reported.acct_session_id.clone())
            } else {
                self.live.insert(
                    record.reported.acct_session_id.clone(),
                    record.reported.clone(),
                );
                Line::Reported(record.reported.clone())
            };
            text.push_str(&serde_json::to_string(&line).map_err(std::io::Error::other)?);
            text.push('\n');
        }
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()?;
        self.lines += records.len();
        if self.lines > 1024 && self.lines > 4 * self.live.len() {
            self.compact()?;
        }
        Ok(())
    }

    /// Replaces the file with one line per open instance, crash-safe
    /// ([`durable::replace`]).
    fn compact(&mut self) -> std::io::Result<()> {
        let mut text = String::new();
        for reported in self.live.values() {
            let line = serde_json::to_string(&Line::Reported(reported.clone()))
                .map_err(std::io::Error::other)?;
            text.push_str(&line);
            text.push('\n');
        }
        durable::replace(&self.path, text.as_bytes())?;
        self.file = std::fs::OpenOptions::new().append(true).open(&self.path)?;
        self.lines = self.live.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brasa_radius::AcctTerminateCause;
    use brasa_subsvc::{AcctStatsType, Counter, CounterSource, PccRule, SubscriberService, Volume};
    use std::time::{Duration, Instant};

    struct Fixed(u64);

    impl CounterSource for Fixed {
        fn rule_forwarded(&self, _: &PccRule) -> Counter {
            Counter::default()
        }
        fn subscriber_forwarded(&self) -> Volume {
            Volume {
                ingress: Counter {
                    octets: self.0,
                    packets: 1,
                },
                egress: Counter::default(),
            }
        }
    }

    fn service(name: &str) -> SubscriberService {
        let mut service = SubscriberService::new(name);
        service.acct_stats_type = AcctStatsType::VolumeTime;
        service.acct_interval = Some(1);
        service
    }

    /// Starts `a`, `b` and `c`, one Interim-Update each, then stops `b`: a reopened
    /// journal holds `a` and `c` as last reported.
    #[test]
    fn a_reopened_journal_holds_the_instances_not_stopped_as_last_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, left) = AcctJournal::open(dir.path()).unwrap();
        assert!(left.is_empty());
        let t0 = Instant::now();
        let mut acct = brasa_subsvc::Accounting::new("n", 1, None).with_min_interval(1);
        let mut starts = Vec::new();
        for name in ["a", "b", "c"] {
            starts.extend(
                acct.start("sub", "S", &service(name), Volume::default(), t0)
                    .unwrap(),
            );
        }
        journal.record(&starts).unwrap();
        let interims = acct
            .handle_timeout(t0 + Duration::from_secs(1), |_| Fixed(500))
            .unwrap();
        assert_eq!(interims.len(), 3);
        journal.record(&interims).unwrap();
        let b = starts[1].instance().clone();
        let stop = acct
            .stop(
                &b,
                &Fixed(600),
                AcctTerminateCause::AdminReset,
                t0 + Duration::from_secs(2),
            )
            .unwrap();
        journal.record(&[stop]).unwrap();
        assert_eq!(journal.live.len(), 2);
        // A crash cut the last write short.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("accounting"))
            .unwrap()
            .write_all(b"{\"reported\":{\"instance\"")
            .unwrap();
        drop(journal);

        let (journal, left) = AcctJournal::open(dir.path()).unwrap();
        let names: Vec<&str> = left.iter().map(|r| r.instance.service.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        assert!(left
            .iter()
            .all(|r| r.session_time == 1 && r.volume.ingress.octets == 500));
        // The journal keeps them until their Stops are journaled.
        let stops: Vec<AcctRecord> = left
            .iter()
            .map(|r| r.stop(AcctTerminateCause::NasReboot).unwrap())
            .collect();
        let mut journal = journal;
        journal.record(&stops).unwrap();
        drop(journal);
        assert!(AcctJournal::open(dir.path()).unwrap().1.is_empty());
    }

    #[test]
    fn compaction_keeps_exactly_the_open_instances() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = AcctJournal::open(dir.path()).unwrap();
        let t0 = Instant::now();
        let mut acct = brasa_subsvc::Accounting::new("n", 1, None).with_min_interval(1);
        let kept = acct
            .start("sub", "S", &service("kept"), Volume::default(), t0)
            .unwrap()
            .unwrap();
        journal.record(&[kept]).unwrap();
        for i in 1..=1500u64 {
            let records = acct
                .handle_timeout(t0 + Duration::from_secs(i), |_| Fixed(i))
                .unwrap();
            journal.record(&records).unwrap();
        }
        assert!(journal.lines < 1024, "{} lines", journal.lines);
        let text = std::fs::read_to_string(dir.path().join("accounting")).unwrap();
        assert!(text.lines().count() < 1024);
        assert!(!dir.path().join("accounting.new").exists());
        drop(journal);
        let (_, left) = AcctJournal::open(dir.path()).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].volume.ingress.octets, 1500);
    }
}
