//! The persistence journal: an append-only file of checksummed [`CacheEvent`] records.
//!
//! Layout: the 8-byte magic `BRASACJ1`, then records of
//! `payload_len: u32 LE | crc32(payload): u32 LE | payload` where the payload is
//! [`CacheEvent::encode`]. Expiry times inside are absolute wall-clock milliseconds, so a replay
//! after any downtime knows what is left of each lifetime.
//!
//! Recovery never refuses to start: reading stops at the first record that is short, fails its
//! checksum or does not decode, and the file is cut there (a crash mid-append leaves exactly such
//! a torn tail). A file with a foreign header is moved aside to `<path>.corrupt` and a fresh
//! journal started.
//!
//! Compaction writes the live entries to `<path>.tmp`, syncs it, renames it over the journal
//! and syncs the directory, so a crash at any point leaves either the old or the new journal.
//!
//! This is the only module of the crate doing I/O (blocking `std::fs`; call it from a blocking
//! thread in an async shell).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::event::FIXED_LEN;
use crate::{CacheConfig, CacheEvent};

/// First bytes of every journal file (format version 1).
pub const MAGIC: &[u8; 8] = b"BRASACJ1";
/// Bytes before each record's payload.
pub const RECORD_HEADER: usize = 8;
/// Largest payload accepted: an entry of the largest `entry-size` plus the fixed fields.
pub const MAX_PAYLOAD: usize = CacheConfig::MAX_ENTRY_SIZE + FIXED_LEN;

/// A journal file could not be read or written.
#[derive(Debug, Error)]
#[error("cache journal {path}: {source}")]
pub struct JournalError {
    /// The file concerned.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

/// The outcome of scanning journal bytes: the events of the good prefix and its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Events of every good record, in file order.
    pub events: Vec<CacheEvent>,
    /// Bytes of the header and the good records; anything after is a torn or corrupt tail.
    pub good_len: usize,
    /// Whether the header was missing or foreign (only a torn header is treated as empty).
    pub foreign_header: bool,
}

/// Scans journal bytes without I/O; never panics on any input.
pub fn scan(bytes: &[u8]) -> Scan {
    if bytes.len() < MAGIC.len() {
        // An empty file, or a header torn by a crash while creating the journal.
        return Scan {
            events: Vec::new(),
            good_len: 0,
            foreign_header: !MAGIC.starts_with(bytes),
        };
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Scan {
            events: Vec::new(),
            good_len: 0,
            foreign_header: true,
        };
    }
    let mut events = Vec::new();
    let mut at = MAGIC.len();
    while let Some((event, next)) = read_record(bytes, at) {
        events.push(event);
        at = next;
    }
    Scan {
        events,
        good_len: at,
        foreign_header: false,
    }
}

/// The record at `at` and the offset after it, or `None` if it is torn or corrupt.
fn read_record(bytes: &[u8], at: usize) -> Option<(CacheEvent, usize)> {
    let header = bytes.get(at..at.checked_add(RECORD_HEADER)?)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_PAYLOAD {
        return None;
    }
    let start = at + RECORD_HEADER;
    let payload = bytes.get(start..start + len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let event = CacheEvent::decode(payload).ok()?;
    Some((event, start + len))
}

/// Appends one record (header and payload) for `event` to `out`.
pub fn encode_record(event: &CacheEvent, out: &mut Vec<u8>) {
    let header_at = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER]);
    event.encode(out);
    let payload = &out[header_at + RECORD_HEADER..];
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32fast::hash(payload).to_le_bytes();
    out[header_at..header_at + 4].copy_from_slice(&len);
    out[header_at + 4..header_at + 8].copy_from_slice(&crc);
}

/// What [`Journal::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Events of the good records, oldest first: feed them to [`crate::PolicyCache::restore`].
    pub events: Vec<CacheEvent>,
    /// Bytes cut from a torn or corrupt tail (0 after a clean shutdown).
    pub cut_bytes: u64,
    /// Where an unreadable file was moved, if one was.
    pub set_aside: Option<PathBuf>,
}

/// An open journal, positioned for appending.
pub struct Journal {
    path: PathBuf,
    file: File,
    pending: Vec<u8>,
    file_len: u64,
    records: u64,
}

impl Journal {
    /// Opens (or creates) the journal at `path`, recovering its good prefix.
    pub fn open(path: impl Into<PathBuf>) -> Result<(Journal, Recovery), JournalError> {
        let path = path.into();
        let err = |source| JournalError {
            path: path.clone(),
            source,
        };
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(err(e)),
        };
        let scanned = scan(&bytes);
        let mut set_aside = None;
        let (good_len, cut_bytes) = if scanned.foreign_header {
            let aside = sibling(&path, "corrupt");
            fs::rename(&path, &aside).map_err(err)?;
            set_aside = Some(aside);
            (0, 0)
        } else {
            (scanned.good_len, (bytes.len() - scanned.good_len) as u64)
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(err)?;
        let mut file_len = good_len as u64;
        if good_len == 0 {
            file.set_len(0).map_err(err)?;
            file.write_all(MAGIC).map_err(err)?;
            file.sync_data().map_err(err)?;
            file_len = MAGIC.len() as u64;
        } else if cut_bytes > 0 {
            file.set_len(file_len).map_err(err)?;
            file.sync_data().map_err(err)?;
        }
        file.seek(SeekFrom::Start(file_len)).map_err(err)?;
        let records = scanned.events.len() as u64;
        Ok((
            Journal {
                path,
                file,
                pending: Vec::new(),
                file_len,
                records,
            },
            Recovery {
                events: scanned.events,
                cut_bytes,
                set_aside,
            },
        ))
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the file plus bytes buffered.
    pub fn len_bytes(&self) -> u64 {
        self.file_len + self.pending.len() as u64
    }

    /// Records in the file plus records buffered.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Buffers one record; [`Journal::flush`] writes it.
    pub fn append(&mut self, event: &CacheEvent) {
        encode_record(event, &mut self.pending);
        self.records += 1;
    }

    /// Writes buffered records to the file (to the OS; see [`Journal::sync`] for the disk).
    pub fn flush(&mut self) -> Result<(), JournalError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(&self.pending)
            .map_err(|source| JournalError {
                path: self.path.clone(),
                source,
            })?;
        self.file_len += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Writes buffered records and waits until they are on disk.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.flush()?;
        self.file.sync_data().map_err(|source| JournalError {
            path: self.path.clone(),
            source,
        })
    }

    /// Whether the file has grown past twice the size a compaction would give (plus 1 MiB of
    /// slack so that small caches are not rewritten constantly).
    pub fn should_compact(&self, live_events: &[CacheEvent]) -> bool {
        let live: u64 = live_events
            .iter()
            .map(|e| (RECORD_HEADER + e.encoded_len()) as u64)
            .sum();
        self.len_bytes() > 2 * live + (1 << 20)
    }

    /// Replaces the journal with one record per live entry (typically
    /// [`crate::PolicyCache::persistence_snapshot`]), atomically.
    pub fn compact(&mut self, live_events: &[CacheEvent]) -> Result<(), JournalError> {
        let tmp = sibling(&self.path, "tmp");
        let err = |source| JournalError {
            path: tmp.clone(),
            source,
        };
        let mut bytes = Vec::with_capacity(MAGIC.len());
        bytes.extend_from_slice(MAGIC);
        for event in live_events {
            encode_record(event, &mut bytes);
        }
        let mut file = File::create(&tmp).map_err(err)?;
        file.write_all(&bytes).map_err(err)?;
        file.sync_all().map_err(err)?;
        fs::rename(&tmp, &self.path).map_err(err)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        }
        file.seek(SeekFrom::End(0)).map_err(err)?;
        self.file = file;
        self.file_len = bytes.len() as u64;
        self.records = live_events.len() as u64;
        self.pending.clear();
        Ok(())
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}
