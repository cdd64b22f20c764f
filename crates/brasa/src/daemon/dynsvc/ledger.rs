//! The SAPs of the dynamic services a run created, on disk (`<data_dir>/dynsvc/saps`).
//!
//! The trigger table lives in memory only, as on the router the guide describes, but the
//! services a script applied are in the service manager's journal and come back after a
//! restart. So that a restart after a crash (kill -9) never leaves half of a dynamic service,
//! each SAP is written here before its setup is applied and struck when it is removed; the
//! next start removes the services of every SAP still listed, then starts an empty ledger.

use brasa_services::SapId;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The ledger file: `+SAP` and `-SAP` lines.
pub struct Ledger {
    path: PathBuf,
    file: std::fs::File,
    lines: usize,
}

impl Ledger {
    /// Opens the ledger in `dir`; returns it, empty, with the SAPs an earlier run left.
    pub fn open(dir: &Path) -> std::io::Result<(Ledger, BTreeSet<String>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("saps");
        let mut left = BTreeSet::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                if let Some(sap) = line.strip_prefix('+') {
                    left.insert(sap.to_owned());
                } else if let Some(sap) = line.strip_prefix('-') {
                    left.remove(sap);
                }
            }
        }
        let file = std::fs::File::create(&path)?;
        Ok((
            Ledger {
                path,
                file,
                lines: 0,
            },
            left,
        ))
    }

    fn append(&mut self, sign: char, sap: &SapId) {
        let line = format!("{sign}{sap}\n");
        let written = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            tracing::error!(path = %self.path.display(), %error, "cannot write the dynamic services ledger");
        }
        self.lines += 1;
    }

    /// Before a setup of `sap` is applied.
    pub fn created(&mut self, sap: &SapId) {
        self.append('+', sap);
    }

    /// After `sap`'s service is removed. Rewrites the file from `live` when it has grown
    /// to many times their number.
    pub fn removed<'a>(&mut self, sap: &SapId, live: impl ExactSizeIterator<Item = &'a SapId>) {
        self.append('-', sap);
        if self.lines > 1024 && self.lines > 4 * live.len() {
            let text: String = live.map(|sap| format!("+{sap}\n")).collect();
            let rewritten = std::fs::write(&self.path, text).and_then(|()| {
                self.file = std::fs::OpenOptions::new().append(true).open(&self.path)?;
                Ok(())
            });
            match rewritten {
                Ok(()) => self.lines = 0,
                Err(error) => {
                    tracing::error!(path = %self.path.display(), %error, "cannot compact the dynamic services ledger")
                }
            }
        }
    }
}
