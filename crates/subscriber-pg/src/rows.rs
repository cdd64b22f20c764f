//! One group commit's writes to one table, gathered without an allocation per record, and
//! their binary `COPY` payload.
//!
//! Keys and JSON values are appended back to back to one buffer as `for_each_write` hands
//! them over (it reuses its encoding buffer, so they must be copied once); [`TableWrites::plan`]
//! then splits them by what each statement takes, keeping the last write of each key.

use std::collections::HashSet;
use std::ops::Range;

use crate::PgError;

/// Signature, flags and header-extension length of PostgreSQL's binary `COPY` format.
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The field count that ends a binary `COPY` stream.
const COPY_TRAILER: &[u8] = &(-1i16).to_be_bytes();

/// What the batch did to one key.
struct Write {
    key: Range<usize>,
    value: Option<Range<usize>>,
    /// The record did not exist before the batch (as the SM's index knew it).
    created: bool,
}

/// The writes of one batch to one table, in order.
#[derive(Default)]
pub(crate) struct TableWrites {
    bytes: Vec<u8>,
    writes: Vec<Write>,
}

/// The last write of each key, by the statement that carries it out.
#[derive(Default)]
pub(crate) struct Plan<'a> {
    /// Records new to the table: a plain `COPY` can insert them.
    pub created: Vec<(&'a [u8], &'a [u8])>,
    /// Records that may already be there: inserted or replaced.
    pub replaced: Vec<(&'a [u8], &'a [u8])>,
    /// Keys to delete.
    pub deleted: Vec<&'a [u8]>,
}

impl TableWrites {
    /// Records a write of `key` (`None`: delete it).
    pub fn push(&mut self, key: &[u8], value: Option<&[u8]>, created: bool) {
        let key = self.append(key);
        let value = value.map(|v| self.append(v));
        self.writes.push(Write {
            key,
            value,
            created,
        });
    }

    fn append(&mut self, data: &[u8]) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        start..self.bytes.len()
    }

    /// The writes that count: for a key written several times (a BGP LEG route a batch
    /// replaces), the last one.
    pub fn plan(&self) -> Plan<'_> {
        let mut plan = Plan::default();
        let mut seen = HashSet::with_capacity(self.writes.len());
        for w in self.writes.iter().rev() {
            let key = &self.bytes[w.key.clone()];
            if !seen.insert(key) {
                continue;
            }
            match &w.value {
                Some(v) if w.created => plan.created.push((key, &self.bytes[v.clone()])),
                Some(v) => plan.replaced.push((key, &self.bytes[v.clone()])),
                None => plan.deleted.push(key),
            }
        }
        // Back to the batch's order (index pages fill in key order for sequential names).
        plan.created.reverse();
        plan.replaced.reverse();
        plan.deleted.reverse();
        plan
    }
}

/// The binary `COPY` stream of `rows` (key as `text` or `bytea`, value as `json`: its text).
pub(crate) fn copy_payload(rows: &[(&[u8], &[u8])]) -> Result<Vec<u8>, PgError> {
    let size: usize = rows
        .iter()
        .map(|(k, v)| 2 + 4 + k.len() + 4 + 1 + v.len())
        .sum();
    let mut out = Vec::with_capacity(COPY_HEADER.len() + size + COPY_TRAILER.len());
    out.extend_from_slice(COPY_HEADER);
    for (key, value) in rows {
        out.extend_from_slice(&2i16.to_be_bytes());
        out.extend_from_slice(&field_len(key.len())?.to_be_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&field_len(value.len())?.to_be_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(COPY_TRAILER);
    Ok(out)
}

fn field_len(bytes: usize) -> Result<i32, PgError> {
    i32::try_from(bytes).map_err(|_| PgError::RecordTooLarge { bytes })
}
