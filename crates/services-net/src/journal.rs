//! The service manager's journal file: the text transactions applied at run time, one JSON
//! line each, in commit order, replayed over the static configuration at start.
//!
//! A journal only grows while services come and go (every dynamic service's setup and
//! teardown is a line), so it is compacted when it has grown to twice what the last
//! compaction wrote (and at least [`COMPACT_AFTER`] entries): its entries are replaced by the
//! transactions that take the base (the static configuration) to the running configuration
//! ([`brasa_services::cli::compact`]), written to a temporary file that is synced and then
//! renamed over the journal, so a crash at any point leaves either the old file or the new
//! one. The cost of a compaction follows the size of the configuration, and compactions come
//! only after as many new entries as the last one wrote: each entry pays a bounded share.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The fewest entries a journal holds before it is compacted.
pub const COMPACT_AFTER: usize = 4096;

/// One line of the journal.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct JournalEntry {
    pub(crate) text: String,
}

/// The journal file and the entries committed but not yet written to it.
pub(crate) struct Journal {
    path: PathBuf,
    /// JSON lines, each ending in a newline, in commit order.
    queued: Vec<String>,
    /// Complete entries in the file, as far as this process has read or written it.
    entries: usize,
    /// Entries the last compaction wrote.
    compacted: usize,
}

impl Journal {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            queued: Vec::new(),
            entries: 0,
            compacted: 0,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Complete entries in the file.
    pub(crate) fn entries(&self) -> usize {
        self.entries
    }

    /// Queues `text`'s entry; written by the next [`flush`](Self::flush).
    pub(crate) fn queue(&mut self, text: &str) {
        let entry = JournalEntry {
            text: text.to_owned(),
        };
        if let Ok(mut line) = serde_json::to_string(&entry) {
            line.push('\n');
            self.queued.push(line);
        }
    }

    /// Appends the queued entries and syncs the file: one `fdatasync` however many there are.
    pub(crate) fn flush(&mut self) -> std::io::Result<()> {
        if self.queued.is_empty() {
            return Ok(());
        }
        let text = self.queued.concat();
        let count = self.queued.len();
        // Dropped even when the write fails: written again, a partly written batch would
        // journal its first transactions twice.
        self.queued.clear();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(text.as_bytes())?;
        file.sync_data()?;
        self.entries += count;
        Ok(())
    }

    /// The entries in the file with their line numbers (from 1). A last line without its
    /// newline is a write a crash interrupted — never acknowledged, since a transaction is
    /// reported only once its entry is synced — and is cut off the file, so that the next
    /// entry does not run into it. Lines that are not entries are skipped.
    pub(crate) fn read(&mut self) -> std::io::Result<Vec<(usize, String)>> {
        let mut file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
        {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let complete = bytes
            .iter()
            .rposition(|byte| *byte == b'\n')
            .map_or(0, |at| at + 1);
        if complete < bytes.len() {
            tracing::warn!(path = %self.path.display(), bytes = bytes.len() - complete,
                "cut an incomplete last entry off the service journal");
            file.set_len(complete as u64)?;
            file.sync_data()?;
            bytes.truncate(complete);
        }
        let text = String::from_utf8_lossy(&bytes);
        let entries: Vec<(usize, String)> = text
            .lines()
            .enumerate()
            .filter_map(|(index, line)| {
                serde_json::from_str::<JournalEntry>(line)
                    .ok()
                    .map(|entry| (index + 1, entry.text))
            })
            .collect();
        self.entries = entries.len();
        Ok(entries)
    }

    /// Whether the journal has grown enough since the last compaction to compact it.
    pub(crate) fn due(&self) -> bool {
        self.entries >= COMPACT_AFTER.max(2 * self.compacted)
    }

    /// After a failed compaction: the next one waits until the journal has doubled, so that a
    /// configuration the compaction cannot reproduce costs a retry per doubling, not per check.
    pub(crate) fn postpone(&mut self) {
        self.compacted = self.compacted.max(self.entries);
    }

    /// The file's length: what a compaction that starts now replaces.
    pub(crate) fn len(&self) -> std::io::Result<u64> {
        match std::fs::metadata(&self.path) {
            Ok(metadata) => Ok(metadata.len()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(error) => Err(error),
        }
    }

    /// Replaces the file's first `cut` bytes (whole entries) with `texts`' entries, keeping
    /// what was appended after them; atomic: a temporary file, synced, renamed over the
    /// journal, then the directory synced.
    pub(crate) fn rewrite(&mut self, cut: u64, texts: &[String]) -> std::io::Result<()> {
        let mut tail = Vec::new();
        match std::fs::File::open(&self.path) {
            Ok(mut file) => {
                file.seek(SeekFrom::Start(cut))?;
                file.read_to_end(&mut tail)?;
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        let mut head = String::new();
        for text in texts {
            let entry = JournalEntry { text: text.clone() };
            head.push_str(&serde_json::to_string(&entry).map_err(std::io::Error::other)?);
            head.push('\n');
        }
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(".compacting");
        let temporary = PathBuf::from(temporary);
        {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(head.as_bytes())?;
            file.write_all(&tail)?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        let kept = tail.iter().filter(|byte| **byte == b'\n').count();
        self.entries = texts.len() + kept;
        self.compacted = texts.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(journal: &mut Journal) -> Vec<String> {
        journal
            .read()
            .unwrap()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    #[test]
    fn a_torn_last_line_is_cut_off_so_the_next_entry_stands_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut journal = Journal::new(path.clone());
        journal.queue("one");
        journal.flush().unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"{\"text\":\"tw").unwrap();
        assert_eq!(lines(&mut journal), ["one"]);
        journal.queue("two");
        journal.flush().unwrap();
        assert_eq!(lines(&mut journal), ["one", "two"]);
        assert_eq!(journal.entries(), 2);
    }

    #[test]
    fn a_rewrite_replaces_the_head_and_keeps_what_came_after_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut journal = Journal::new(path.clone());
        for text in ["a", "b", "c"] {
            journal.queue(text);
        }
        journal.flush().unwrap();
        let cut = journal.len().unwrap();
        journal.queue("d");
        journal.flush().unwrap();
        journal.rewrite(cut, &["abc".to_owned()]).unwrap();
        assert_eq!(journal.entries(), 2);
        assert_eq!(lines(&mut journal), ["abc", "d"]);
        assert!(!dir.path().join("journal.jsonl.compacting").exists());
        // Due again only after twice what the compaction wrote, and never below the floor.
        assert!(!journal.due());
        journal.entries = COMPACT_AFTER;
        assert!(journal.due());
        // A failed compaction waits for the journal to double.
        journal.postpone();
        assert!(!journal.due());
        journal.entries = 2 * COMPACT_AFTER - 1;
        assert!(!journal.due());
        journal.entries = 2 * COMPACT_AFTER;
        assert!(journal.due());
    }
}
