//! The SAPs of the dynamic services a run created, on disk (`<data_dir>/dynsvc/saps`).
//!
//! The trigger table lives in memory only, as on the router the guide describes, but the
//! services a script applied are in the service manager's journal and come back after a
//! restart. So that a restart after a crash (kill -9) never leaves half of a dynamic service,
//! each SAP is listed here, durably, before its setup is applied, and struck when it is
//! removed; the next start removes the services of every SAP still listed, then starts an
//! empty ledger.
//!
//! Only the listing must be durable before the apply: the setups the runner has queued are
//! listed together with one `fdatasync` ([`Ledger::created`]). A strike is written but not
//! synced: losing one only makes the next start look for a service that is gone already.

use brasa_services::SapId;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The ledger file: `+SAP` and `-SAP` lines.
pub struct Ledger {
    path: PathBuf,
    file: std::fs::File,
    /// The SAPs listed and not struck, with how many times (two setups may name one SAP; the
    /// one that fails must not strike the other's).
    live: BTreeMap<SapId, u32>,
    lines: usize,
}

/// Replays ledger text: the SAPs listed more often than struck.
fn left_in(text: &str) -> BTreeMap<&str, u32> {
    let mut left: BTreeMap<&str, u32> = BTreeMap::new();
    for line in text.lines() {
        if let Some(sap) = line.strip_prefix('+') {
            *left.entry(sap).or_default() += 1;
        } else if let Some(sap) = line.strip_prefix('-') {
            if let Some(count) = left.get_mut(sap) {
                *count -= 1;
                if *count == 0 {
                    left.remove(sap);
                }
            }
        }
    }
    left
}

impl Ledger {
    /// Opens the ledger in `dir`; returns it, empty, with the SAPs an earlier run left.
    pub fn open(dir: &Path) -> std::io::Result<(Ledger, Vec<String>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("saps");
        let left = match std::fs::read_to_string(&path) {
            Ok(text) => left_in(&text).into_keys().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        };
        let file = std::fs::File::create(&path)?;
        Ok((
            Ledger {
                path,
                file,
                live: BTreeMap::new(),
                lines: 0,
            },
            left,
        ))
    }

    /// Lists `saps` before their setups are applied: one write and one `fdatasync` for all.
    /// On `Err` none of them may be applied.
    pub fn created(&mut self, saps: &[SapId]) -> std::io::Result<()> {
        let text: String = saps.iter().map(|sap| format!("+{sap}\n")).collect();
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()?;
        for sap in saps {
            *self.live.entry(sap.clone()).or_default() += 1;
        }
        self.lines += saps.len();
        Ok(())
    }

    /// After `sap`'s service is removed, or when a setup listed by [`created`](Self::created)
    /// applied nothing. Rewrites the file from the live SAPs when it has grown to many times
    /// their number.
    pub fn removed(&mut self, sap: &SapId) {
        if let Some(count) = self.live.get_mut(sap) {
            *count -= 1;
            if *count == 0 {
                self.live.remove(sap);
            }
        }
        if let Err(error) = self.file.write_all(format!("-{sap}\n").as_bytes()) {
            tracing::error!(path = %self.path.display(), %error, "cannot write the dynamic services ledger");
        }
        self.lines += 1;
        if self.lines > 1024 && self.lines > 4 * self.live.len() {
            match self.compact() {
                Ok(()) => self.lines = self.live.values().sum::<u32>() as usize,
                Err(error) => {
                    tracing::error!(path = %self.path.display(), %error, "cannot compact the dynamic services ledger")
                }
            }
        }
    }

    /// Replaces the file with the live SAPs: written beside it, synced, then renamed over
    /// it, so that a crash leaves the old ledger or the new one, never a part of either.
    fn compact(&mut self) -> std::io::Result<()> {
        let text: String = self
            .live
            .iter()
            .flat_map(|(sap, count)| (0..*count).map(move |_| format!("+{sap}\n")))
            .collect();
        crate::common::durable::replace(&self.path, text.as_bytes())?;
        self.file = std::fs::OpenOptions::new().append(true).open(&self.path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sap(text: &str) -> SapId {
        SapId::parse(text).unwrap()
    }

    #[test]
    fn a_restart_finds_the_saps_listed_and_not_struck() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ledger, left) = Ledger::open(dir.path()).unwrap();
        assert!(left.is_empty());
        ledger
            .created(&[sap("eth1:1.1"), sap("eth1:1.2"), sap("eth1:1.3")])
            .unwrap();
        ledger.removed(&sap("eth1:1.2"));
        drop(ledger);
        let (_, left) = Ledger::open(dir.path()).unwrap();
        assert_eq!(left, vec!["eth1:1.1".to_string(), "eth1:1.3".to_string()]);
        // The open started an empty ledger.
        let (_, left) = Ledger::open(dir.path()).unwrap();
        assert!(left.is_empty());
    }

    #[test]
    fn a_sap_listed_twice_stays_until_struck_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ledger, _) = Ledger::open(dir.path()).unwrap();
        ledger.created(&[sap("eth1:1.1")]).unwrap();
        ledger.created(&[sap("eth1:1.1")]).unwrap();
        ledger.removed(&sap("eth1:1.1"));
        drop(ledger);
        let (mut ledger, left) = Ledger::open(dir.path()).unwrap();
        assert_eq!(left, vec!["eth1:1.1".to_string()]);
        ledger.created(&[sap("eth1:1.1")]).unwrap();
        ledger.created(&[sap("eth1:1.1")]).unwrap();
        ledger.removed(&sap("eth1:1.1"));
        ledger.removed(&sap("eth1:1.1"));
        drop(ledger);
        assert!(Ledger::open(dir.path()).unwrap().1.is_empty());
    }

    #[test]
    fn compaction_keeps_exactly_the_live_saps() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ledger, _) = Ledger::open(dir.path()).unwrap();
        ledger.created(&[sap("eth1:9.9")]).unwrap();
        for outer in 1..=700u16 {
            let s = sap(&format!("eth1:{outer}.1"));
            ledger.created(std::slice::from_ref(&s)).unwrap();
            ledger.removed(&s);
        }
        // 1 401 lines for one live SAP: compacted on the way.
        assert!(ledger.lines < 1024, "{} lines", ledger.lines);
        let text = std::fs::read_to_string(dir.path().join("saps")).unwrap();
        assert!(text.lines().count() < 1024);
        assert!(!dir.path().join("saps.new").exists());
        drop(ledger);
        assert_eq!(
            Ledger::open(dir.path()).unwrap().1,
            vec!["eth1:9.9".to_string()]
        );
    }
}
