//! CSV import and export of subscribers (the library side of `brasa sm import` / `export`).
//!
//! Format: a header row naming the columns, then one subscriber per line. Columns:
//! `name` (required), `domain`, `mappings` (mapping texts separated by `;`), `properties`
//! (`key=value` pairs separated by `;`), `logged_in` (`true`/`false`), `auto_logout` (seconds).
//! Fields follow RFC 4180 quoting (`"a,b"`, `""` for a quote); a record is one line.

use std::collections::HashMap;
use std::io::{BufRead, Write};

use crate::index::SubscriberIndex;
use crate::mapping::{parse_vlan_id, Mapping};
use crate::name::{NameCase, SubscriberName};
use crate::record::{ChangeSet, Subscriber, DEFAULT_DOMAIN};

/// Column order written by [`export`].
pub const COLUMNS: [&str; 6] = [
    "name",
    "domain",
    "mappings",
    "properties",
    "logged_in",
    "auto_logout",
];

/// What to do with invalid rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// Any invalid row refuses the whole file; nothing is imported.
    AllOrNothing,
    /// Invalid rows are reported and skipped; the others are imported.
    SkipInvalid,
}

/// One refused row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line number in the file.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Why an import or export failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// Reading or writing failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The header row is missing or wrong.
    #[error("line 1: {0}")]
    Header(String),
    /// All-or-nothing import with invalid rows: nothing was imported.
    #[error("{} invalid rows, nothing imported; first: {}", .0.len(), .0.first().map(|e| e.to_string()).unwrap_or_default())]
    Refused(Vec<RowError>),
}

/// The outcome of an import.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Rows imported.
    pub imported: usize,
    /// Rows skipped (only in [`ImportMode::SkipInvalid`]).
    pub skipped: Vec<RowError>,
    /// What changed, for the store and the push sender.
    pub changes: ChangeSet,
}

/// Column positions of a parsed header.
#[derive(Debug, Clone)]
pub struct Header {
    columns: Vec<usize>,
}

impl Header {
    /// Parses the header row.
    pub fn parse(line: &str) -> Result<Self, String> {
        let fields = split_record(line)?;
        let mut columns = Vec::with_capacity(fields.len());
        for f in &fields {
            let name = f.trim().to_ascii_lowercase();
            let col = COLUMNS
                .iter()
                .position(|c| *c == name)
                .ok_or_else(|| format!("unknown column {f:?} (known: {})", COLUMNS.join(", ")))?;
            if columns.contains(&col) {
                return Err(format!("column {f:?} appears twice"));
            }
            columns.push(col);
        }
        if !columns.contains(&0) {
            return Err("the header has no \"name\" column".into());
        }
        Ok(Header { columns })
    }
}

/// Splits one CSV record into fields (RFC 4180 quoting).
pub fn split_record(line: &str) -> Result<Vec<String>, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("unterminated quoted field".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => return Err(format!("unexpected {c:?} after a closing quote")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("quote inside an unquoted field".into()),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// Parses one data row into a subscriber (syntax only; the index checks the rest).
pub fn parse_row(header: &Header, line: &str, case: NameCase) -> Result<Subscriber, String> {
    let fields = split_record(line)?;
    if fields.len() != header.columns.len() {
        return Err(format!(
            "{} fields, the header has {}",
            fields.len(),
            header.columns.len()
        ));
    }
    let mut name = None;
    let mut sub_domain = DEFAULT_DOMAIN.to_owned();
    let mut mappings = Vec::new();
    let mut properties = Vec::new();
    let mut logged_in = false;
    let mut auto_logout = None;
    for (field, col) in fields.iter().zip(&header.columns) {
        match *col {
            0 => {
                name = Some(
                    SubscriberName::new(field, case).map_err(|e| format!("name {field:?}: {e}"))?,
                )
            }
            1 if !field.is_empty() => sub_domain = field.clone(),
            2 => {
                for text in field.split(';').map(str::trim).filter(|t| !t.is_empty()) {
                    let m: Mapping = text.parse().map_err(|e| format!("mapping {text:?}: {e}"))?;
                    mappings.push(m);
                }
            }
            3 => {
                for pair in field.split(';').filter(|t| !t.trim().is_empty()) {
                    let (k, v) = pair
                        .split_once('=')
                        .ok_or_else(|| format!("property {pair:?} is not key=value"))?;
                    properties.push((k.trim().to_owned(), v.to_owned()));
                }
            }
            4 => {
                logged_in = match field.trim() {
                    "" | "false" | "0" => false,
                    "true" | "1" => true,
                    other => return Err(format!("logged_in {other:?} is not true or false")),
                }
            }
            5 if !field.trim().is_empty() => {
                auto_logout = Some(
                    field
                        .trim()
                        .parse()
                        .map_err(|_| format!("auto_logout {field:?} is not a number of seconds"))?,
                )
            }
            _ => {}
        }
    }
    let name = name.ok_or("the name is missing")?;
    Ok(Subscriber {
        name,
        domain: sub_domain,
        mappings,
        properties,
        state: Vec::new(),
        logged_in,
        auto_logout,
    })
}

/// Imports subscribers from CSV into `index` (create or replace per row).
///
/// Every row is checked against the index and against earlier rows (an exact mapping in two
/// rows, a VLAN VPN created by rows of two domains) before anything is applied, so that
/// [`ImportMode::AllOrNothing`] really imports nothing when one row is bad.
pub fn import<R: BufRead>(
    index: &mut SubscriberIndex,
    reader: R,
    mode: ImportMode,
    mut progress: impl FnMut(usize),
) -> Result<ImportReport, CsvError> {
    let case = index.config().name_case;
    let mut lines = reader.lines();
    let header = loop {
        match lines.next() {
            None => return Err(CsvError::Header("the file is empty".into())),
            Some(line) => {
                let line = line?;
                if !line.trim().is_empty() {
                    break Header::parse(&line).map_err(CsvError::Header)?;
                }
            }
        }
    };
    let mut rows: Vec<Subscriber> = Vec::new();
    let mut errors = Vec::new();
    let mut claimed: HashMap<(Option<Box<str>>, String), usize> = HashMap::new();
    let mut vlan_domains: HashMap<Box<str>, String> = HashMap::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, line) in lines.enumerate() {
        let line_no = i + 2;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let checked = parse_row(&header, &line, case).and_then(|sub| {
            if let Some(first) = names.get(sub.name.as_str()) {
                return Err(format!("subscriber {:?} already appears on line {first}", sub.name.as_str()));
            }
            index.validate_upsert(&sub).map_err(|e| e.to_string())?;
            for m in &sub.mappings {
                if let Some(vpn) = m.vpn.as_deref().filter(|v| parse_vlan_id(v).is_some()) {
                    if index.vpn(vpn).is_none() {
                        if let Some(d) = vlan_domains.get(vpn).filter(|d| **d != sub.domain) {
                            return Err(format!(
                                "mapping {m}: VLAN VPN {vpn} is created in domain {d:?} by an earlier row"
                            ));
                        }
                    }
                }
                for p in m.ip.prefixes() {
                    if let Some(first) = claimed.get(&(m.vpn.clone(), p.to_string())) {
                        return Err(format!("mapping {m} is also given on line {first}"));
                    }
                }
            }
            Ok(sub)
        });
        match checked {
            Ok(sub) => {
                for m in &sub.mappings {
                    if let Some(vpn) = m.vpn.as_deref().filter(|v| parse_vlan_id(v).is_some()) {
                        vlan_domains
                            .entry(vpn.into())
                            .or_insert_with(|| sub.domain.clone());
                    }
                    for p in m.ip.prefixes() {
                        claimed.insert((m.vpn.clone(), p.to_string()), line_no);
                    }
                }
                names.insert(sub.name.as_str().to_owned(), line_no);
                rows.push(sub);
            }
            Err(message) => errors.push(RowError {
                line: line_no,
                message,
            }),
        }
    }
    if mode == ImportMode::AllOrNothing && !errors.is_empty() {
        return Err(CsvError::Refused(errors));
    }
    let mut report = ImportReport {
        skipped: errors,
        ..ImportReport::default()
    };
    index.reserve(rows.len());
    for sub in rows {
        // Validated above against the index and every earlier row; a failure here would mean
        // the checks above missed a rule, so report it rather than hide it.
        let changes = index.upsert(sub).map_err(|e| {
            CsvError::Refused(vec![RowError {
                line: 0,
                message: format!("internal: row passed validation but failed: {e}"),
            }])
        })?;
        report.changes.subscribers.extend(changes.subscribers);
        report.changes.vpns.extend(changes.vpns);
        report.imported += 1;
        progress(report.imported);
    }
    Ok(report)
}

fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) || field.starts_with(' ') {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// Formats one subscriber as a CSV row in [`COLUMNS`] order (no line end).
pub fn format_row(sub: &Subscriber) -> String {
    let mappings: Vec<String> = sub.mappings.iter().map(Mapping::to_string).collect();
    let props: Vec<String> = sub
        .properties
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    [
        quote(sub.name.as_str()),
        quote(&sub.domain),
        quote(&mappings.join(";")),
        quote(&props.join(";")),
        sub.logged_in.to_string(),
        sub.auto_logout.map(|t| t.to_string()).unwrap_or_default(),
    ]
    .join(",")
}

/// Writes every subscriber of `index` as CSV with a header row; returns the row count.
pub fn export<W: Write>(index: &SubscriberIndex, mut out: W) -> Result<usize, CsvError> {
    writeln!(out, "{}", COLUMNS.join(","))?;
    let mut n = 0;
    for sub in index.iter() {
        writeln!(out, "{}", format_row(&sub))?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}
