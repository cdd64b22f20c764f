//! CSV import and export of the subscriber database (the library side of `brasa sm import` /
//! `export`): an export imports into an empty SM as the same subscribers and VPNs.
//!
//! A file holds up to two tables, each a header row naming its columns followed by one record
//! per line. Fields follow RFC 4180 (`"a,b"`, `""` for a quote inside quotes); no field can hold
//! a line break, because every text the SM accepts is free of control characters.
//!
//! 1. Optionally first, the VPNs: a header with a `vpn` column ([`VPN_COLUMNS`]), one VPN per
//!    line, and an empty line that ends the table. Columns: `vpn` (the name, required),
//!    `domain`, `vlan` (a VLAN-id) or `mpls` (`RT/RD@PE-IP` entries, each followed by its
//!    downstream labels as `LABEL=PREFIX` with more `PREFIX`es after it, or `LABEL=` for a
//!    label without ranges).
//! 2. The subscribers: a header with a `name` column ([`COLUMNS`]). Columns: `name` (required),
//!    `domain`, `mappings` (the network IDs: IP mappings, then `community@VPN`), `properties`
//!    (`key=value`; the first `=` ends the key, which cannot hold one), `logged_in`
//!    (`true`/`false`), `auto_logout` (Unix seconds), `state` (hex), `services` (the
//!    subscriber services as their JSON list, the form the store and the management API use;
//!    empty for none).
//!
//! What the BGP LEG learnt (labels of MPLS entries, `range@VPN` mappings derived from
//! communities) is not exported: it is derived again from the routes the LEG receives.
//!
//! The list columns (`mappings`, `properties`, `mpls`) separate their items with `;`. Inside an
//! item, `\;` stands for `;` and `\\` for `\`, so property values and VPN names may hold either;
//! any other backslash is refused rather than guessed at.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, Write};

use brasa_subsvc::SubscriberServices;

use crate::index::SubscriberIndex;
use crate::mapping::{parse_label, parse_vlan_id, MplsVpnId, NetworkId};
use crate::name::{NameCase, SubscriberName};
use crate::record::{
    ChangeSet, DownstreamLabel, MplsVpnEntry, Subscriber, Vpn, VpnKind, DEFAULT_DOMAIN,
};

/// Columns of the subscriber table, in the order [`export`] writes them.
pub const COLUMNS: [&str; 8] = [
    "name",
    "domain",
    "mappings",
    "properties",
    "logged_in",
    "auto_logout",
    "state",
    "services",
];

/// Columns of the VPN table, in the order [`export`] writes them.
pub const VPN_COLUMNS: [&str; 4] = ["vpn", "domain", "vlan", "mpls"];

/// What to do with invalid rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImportMode {
    /// Any invalid row refuses the whole file; nothing is imported.
    AllOrNothing,
    /// Invalid rows are reported and skipped; the others are imported.
    SkipInvalid,
}

impl ImportMode {
    /// The name used on the command line and in the management API.
    pub fn as_str(self) -> &'static str {
        match self {
            ImportMode::AllOrNothing => "all-or-nothing",
            ImportMode::SkipInvalid => "skip-invalid",
        }
    }
}

impl std::str::FromStr for ImportMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [ImportMode::AllOrNothing, ImportMode::SkipInvalid]
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!("invalid mode {s:?}; expected \"all-or-nothing\" or \"skip-invalid\"")
            })
    }
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
    /// A header row is missing or wrong.
    #[error("line {line}: {message}")]
    Header {
        /// 1-based line number of the header (or of the end of the file).
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// All-or-nothing import with invalid rows: nothing was imported.
    #[error("{} invalid rows, nothing imported; first: {}", .0.len(), .0.first().map(|e| e.to_string()).unwrap_or_default())]
    Refused(Vec<RowError>),
}

/// The outcome of an import.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Subscriber rows imported.
    pub imported: usize,
    /// VPNs created (a VPN row equal to an existing VPN creates nothing).
    pub vpns: usize,
    /// Rows skipped (only in [`ImportMode::SkipInvalid`]).
    pub skipped: Vec<RowError>,
    /// What changed, for the store and the push sender.
    pub changes: ChangeSet,
}

/// What [`export`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exported {
    /// VPN rows.
    pub vpns: usize,
    /// Subscriber rows.
    pub subscribers: usize,
}

/// Column positions of a parsed header row.
#[derive(Debug, Clone)]
pub struct Header {
    columns: Vec<usize>,
}

impl Header {
    /// Parses the header row of the subscriber table.
    pub fn parse(line: &str) -> Result<Self, String> {
        Self::parse_for(line, &COLUMNS)
    }

    /// Parses the header row of the VPN table.
    pub fn parse_vpn(line: &str) -> Result<Self, String> {
        Self::parse_for(line, &VPN_COLUMNS)
    }

    /// A header naming `known` columns; the first of them (the key) must be present.
    fn parse_for(line: &str, known: &[&str]) -> Result<Self, String> {
        let fields = split_record(line)?;
        let mut columns = Vec::with_capacity(fields.len());
        for f in &fields {
            let name = f.trim().to_ascii_lowercase();
            let col = known
                .iter()
                .position(|c| *c == name)
                .ok_or_else(|| format!("unknown column {f:?} (known: {})", known.join(", ")))?;
            if columns.contains(&col) {
                return Err(format!("column {f:?} appears twice"));
            }
            columns.push(col);
        }
        if !columns.contains(&0) {
            return Err(format!("the header has no {:?} column", known[0]));
        }
        Ok(Header { columns })
    }

    /// The fields of `line` paired with their column numbers.
    fn fields(&self, line: &str) -> Result<Vec<(usize, String)>, String> {
        let fields = split_record(line)?;
        if fields.len() != self.columns.len() {
            return Err(format!(
                "{} fields, the header has {}",
                fields.len(),
                self.columns.len()
            ));
        }
        Ok(self.columns.iter().copied().zip(fields).collect())
    }
}

/// Whether a header row starts the VPN table (it has a `vpn` column).
fn is_vpn_header(line: &str) -> bool {
    split_record(line).is_ok_and(|fields| {
        fields
            .iter()
            .any(|f| f.trim().eq_ignore_ascii_case(VPN_COLUMNS[0]))
    })
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

/// Splits a list column into its items and undoes the escapes (`\;` → `;`, `\\` → `\`); blank
/// items are dropped. `what` names the column in errors.
pub fn split_list(field: &str, what: &str) -> Result<Vec<String>, String> {
    let mut items = Vec::new();
    let mut item = String::new();
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('\\' | ';')) => item.push(escaped),
                Some(other) => {
                    return Err(format!(
                    "{what}: \"\\{other}\" is not an escape (\\; is a semicolon, \\\\ a backslash)"
                ))
                }
                None => {
                    return Err(format!(
                        "{what}: the field ends in a lone backslash (\\\\ is a backslash)"
                    ))
                }
            },
            ';' => items.push(std::mem::take(&mut item)),
            c => item.push(c),
        }
    }
    items.push(item);
    items.retain(|i| !i.trim().is_empty());
    Ok(items)
}

/// Appends `item` to a list column, escaping what [`split_list`] would read as structure.
fn push_item(list: &mut String, item: &str) {
    if !list.is_empty() {
        list.push(';');
    }
    for c in item.chars() {
        if matches!(c, '\\' | ';') {
            list.push('\\');
        }
        list.push(c);
    }
}

/// Quotes a field when RFC 4180 requires it (or a reader might trim it).
fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) || field.starts_with(' ') {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// Parses one row of the subscriber table (syntax only; the index checks the rest).
pub fn parse_row(header: &Header, line: &str, case: NameCase) -> Result<Subscriber, String> {
    let mut name = None;
    let mut sub_domain = DEFAULT_DOMAIN.to_owned();
    let mut mappings = Vec::new();
    let mut communities = Vec::new();
    let mut properties = Vec::new();
    let mut state = Vec::new();
    let mut services = SubscriberServices::new();
    let mut logged_in = false;
    let mut auto_logout = None;
    for (col, field) in header.fields(line)? {
        match col {
            0 => {
                name = Some(
                    SubscriberName::new(&field, case)
                        .map_err(|e| format!("name {field:?}: {e}"))?,
                )
            }
            1 if !field.is_empty() => sub_domain = field,
            2 => {
                for text in split_list(&field, "mappings")? {
                    match text.parse() {
                        Ok(NetworkId::Ip(m)) => mappings.push(m),
                        Ok(NetworkId::Community(c)) => communities.push(c),
                        Err(e) => return Err(format!("mapping {text:?}: {e}")),
                    }
                }
            }
            3 => {
                for pair in split_list(&field, "properties")? {
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
            6 => {
                state =
                    parse_hex(field.trim()).ok_or_else(|| format!("state {field:?} is not hex"))?
            }
            7 if !field.trim().is_empty() => {
                services = serde_json::from_str(&field)
                    .map_err(|e| format!("services: not a JSON list of subscriber services: {e}"))?
            }
            _ => {}
        }
    }
    let name = name.ok_or("the name is missing")?;
    Ok(Subscriber {
        name,
        domain: sub_domain,
        mappings,
        communities,
        learned: Vec::new(),
        properties,
        state,
        logged_in,
        auto_logout,
        services,
    })
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Formats one subscriber as a row of the subscriber table in [`COLUMNS`] order (no line end).
pub fn format_row(sub: &Subscriber) -> String {
    let mut mappings = String::new();
    for m in &sub.mappings {
        push_item(&mut mappings, &m.to_string());
    }
    for c in &sub.communities {
        push_item(&mut mappings, &c.to_string());
    }
    let mut props = String::new();
    for (k, v) in &sub.properties {
        push_item(&mut props, &format!("{k}={v}"));
    }
    let mut state = String::with_capacity(sub.state.len() * 2);
    for b in &sub.state {
        let _ = write!(state, "{b:02x}");
    }
    [
        quote(sub.name.as_str()),
        quote(&sub.domain),
        quote(&mappings),
        quote(&props),
        sub.logged_in.to_string(),
        sub.auto_logout.map(|t| t.to_string()).unwrap_or_default(),
        state,
        services_json(&sub.services),
    ]
    .join(",")
}

/// The services column: empty for none, else their JSON list (compact, so on one line), quoted.
fn services_json(services: &SubscriberServices) -> String {
    if services.is_empty() {
        return String::new();
    }
    // Serialising plain data into a String cannot fail.
    quote(&serde_json::to_string(services).unwrap_or_default())
}

/// Parses one row of the VPN table (syntax only; the index checks the rest).
pub fn parse_vpn_row(header: &Header, line: &str) -> Result<Vpn, String> {
    let mut name = None;
    let mut domain = DEFAULT_DOMAIN.to_owned();
    let mut vlan = None;
    let mut mpls = Vec::new();
    for (col, field) in header.fields(line)? {
        match col {
            0 => name = Some(field),
            1 if !field.is_empty() => domain = field,
            2 if !field.trim().is_empty() => {
                let text = field.trim();
                vlan = Some(
                    parse_vlan_id(text)
                        .ok_or_else(|| format!("vlan {text:?} is not a VLAN-id in 1..=4094"))?,
                )
            }
            3 => {
                for entry in split_list(&field, "mpls")? {
                    mpls.push(parse_mpls_entry(&entry)?);
                }
            }
            _ => {}
        }
    }
    let name = name.ok_or("the VPN name is missing")?;
    let kind = match (vlan, mpls.is_empty()) {
        (Some(id), true) => VpnKind::Vlan(id),
        (None, false) => VpnKind::Mpls(mpls),
        (Some(_), false) => return Err(format!("VPN {name:?} has both a vlan and mpls entries")),
        (None, true) => return Err(format!("VPN {name:?} needs a vlan or mpls entries")),
    };
    Ok(Vpn { name, domain, kind })
}

/// `RT/RD@PE-IP` followed by `LABEL=` or `LABEL=PREFIX` tokens, each further `PREFIX` adding a
/// range to the label before it.
fn parse_mpls_entry(text: &str) -> Result<MplsVpnEntry, String> {
    let mut tokens = text.split_whitespace();
    let id_text = tokens.next().unwrap_or_default();
    let id: MplsVpnId = id_text
        .parse()
        .map_err(|e| format!("mpls entry {id_text:?}: {e}"))?;
    let mut labels: Vec<DownstreamLabel> = Vec::new();
    for token in tokens {
        let range = match token.split_once('=') {
            Some((label, range)) => {
                let label = parse_label(label).map_err(|e| format!("mpls entry {id}: {e}"))?;
                if labels.iter().any(|l| l.label == label) {
                    return Err(format!("mpls entry {id}: label {label} is given twice"));
                }
                labels.push(DownstreamLabel {
                    label,
                    ranges: Vec::new(),
                });
                range
            }
            None => token,
        };
        if range.is_empty() {
            continue;
        }
        let current = labels
            .last_mut()
            .ok_or_else(|| format!("mpls entry {id}: range {range:?} comes before any LABEL="))?;
        current.ranges.push(
            range
                .parse()
                .map_err(|e| format!("mpls entry {id}: range {range:?}: {e}"))?,
        );
    }
    Ok(MplsVpnEntry {
        id,
        labels,
        learned_labels: Vec::new(),
    })
}

/// Formats one VPN as a row of the VPN table in [`VPN_COLUMNS`] order (no line end).
pub fn format_vpn_row(vpn: &Vpn) -> String {
    let (vlan, mpls) = match &vpn.kind {
        VpnKind::Vlan(id) => (id.to_string(), String::new()),
        VpnKind::Mpls(entries) => {
            let mut list = String::new();
            for e in entries {
                let mut entry = e.id.to_string();
                for l in &e.labels {
                    let _ = write!(entry, " {}=", l.label);
                    for (i, r) in l.ranges.iter().enumerate() {
                        let sep = if i == 0 { "" } else { " " };
                        let _ = write!(entry, "{sep}{r}");
                    }
                }
                push_item(&mut list, &entry);
            }
            (String::new(), list)
        }
    };
    [quote(&vpn.name), quote(&vpn.domain), vlan, quote(&mpls)].join(",")
}

type Lines<R> = std::iter::Enumerate<std::io::Lines<R>>;

/// The next line that is not blank, with its 1-based number.
fn next_non_blank<R: BufRead>(lines: &mut Lines<R>) -> Result<Option<(usize, String)>, CsvError> {
    for (i, line) in lines.by_ref() {
        let line = line?;
        if !line.trim().is_empty() {
            return Ok(Some((i + 1, line)));
        }
    }
    Ok(None)
}

/// Imports a file into `index`: VPNs are created (one equal to an existing VPN is left as it
/// is), subscribers created or replaced per row.
///
/// Every row is checked against the index and against earlier rows (an exact mapping in two
/// rows, a VLAN VPN created by rows of two domains) before any subscriber is applied, so that
/// [`ImportMode::AllOrNothing`] really imports nothing when one row is bad: the VPNs the file
/// created for its subscribers are removed again.
pub fn import<R: BufRead>(
    index: &mut SubscriberIndex,
    reader: R,
    mode: ImportMode,
    progress: impl FnMut(usize),
) -> Result<ImportReport, CsvError> {
    let mut created = Vec::new();
    let result = import_into(index, reader, mode, progress, &mut created);
    if result.is_err() {
        // No subscriber was applied, so nothing uses these VPNs yet.
        for name in created.iter().rev() {
            let _ = index.remove_vpn(name);
        }
    }
    result
}

fn import_into<R: BufRead>(
    index: &mut SubscriberIndex,
    reader: R,
    mode: ImportMode,
    mut progress: impl FnMut(usize),
    created: &mut Vec<String>,
) -> Result<ImportReport, CsvError> {
    let case = index.config().name_case;
    let mut lines = reader.lines().enumerate();
    let mut report = ImportReport::default();
    let mut errors = Vec::new();
    let Some((mut header_line, mut header_text)) = next_non_blank(&mut lines)? else {
        return Err(CsvError::Header {
            line: 1,
            message: "the file is empty".into(),
        });
    };
    if is_vpn_header(&header_text) {
        let header = Header::parse_vpn(&header_text).map_err(|message| CsvError::Header {
            line: header_line,
            message,
        })?;
        let mut vpn_lines: HashMap<String, usize> = HashMap::new();
        for (i, line) in lines.by_ref() {
            let line = line?;
            if line.trim().is_empty() {
                break;
            }
            let line_no = i + 1;
            let outcome = parse_vpn_row(&header, &line).and_then(|vpn| {
                if let Some(first) = vpn_lines.get(&vpn.name) {
                    return Err(format!(
                        "VPN {:?} already appears on line {first}",
                        vpn.name
                    ));
                }
                vpn_lines.insert(vpn.name.clone(), line_no);
                match index.vpn(&vpn.name) {
                    Some(existing) if existing.configured() == vpn => Ok(None),
                    Some(_) => Err(format!(
                        "VPN {:?} exists with another definition; an import does not change VPNs",
                        vpn.name
                    )),
                    None => {
                        let name = vpn.name.clone();
                        let changes = index.add_vpn(vpn).map_err(|e| e.to_string())?;
                        Ok(Some((name, changes)))
                    }
                }
            });
            match outcome {
                Ok(Some((name, changes))) => {
                    created.push(name);
                    report.vpns += 1;
                    report.changes.vpns.extend(changes.vpns);
                }
                Ok(None) => {}
                Err(message) => errors.push(RowError {
                    line: line_no,
                    message,
                }),
            }
        }
        match next_non_blank(&mut lines)? {
            Some((line, text)) => (header_line, header_text) = (line, text),
            None => {
                // Only VPNs in the file.
                return finish(mode, errors, report, Vec::new(), index, &mut progress);
            }
        }
    }
    let header = Header::parse(&header_text).map_err(|message| CsvError::Header {
        line: header_line,
        message,
    })?;
    let mut rows: Vec<Subscriber> = Vec::new();
    let mut claimed: HashMap<(Option<Box<str>>, String), usize> = HashMap::new();
    let mut vlan_domains: HashMap<Box<str>, String> = HashMap::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, line) in lines {
        let line_no = i + 1;
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
            for c in &sub.communities {
                if let Some(first) = claimed.get(&(Some(c.vpn.clone()), c.community.to_string())) {
                    return Err(format!("{c} is also given on line {first}"));
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
                // A community's text never looks like a prefix's, so one map serves both.
                for c in &sub.communities {
                    claimed.insert((Some(c.vpn.clone()), c.community.to_string()), line_no);
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
    finish(mode, errors, report, rows, index, &mut progress)
}

/// Refuses the file or applies the validated subscriber rows.
fn finish(
    mode: ImportMode,
    errors: Vec<RowError>,
    mut report: ImportReport,
    rows: Vec<Subscriber>,
    index: &mut SubscriberIndex,
    progress: &mut impl FnMut(usize),
) -> Result<ImportReport, CsvError> {
    if mode == ImportMode::AllOrNothing && !errors.is_empty() {
        return Err(CsvError::Refused(errors));
    }
    report.skipped = errors;
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

/// Writes the VPN table (when there are VPNs) and every subscriber of `index`.
pub fn export<W: Write>(index: &SubscriberIndex, mut out: W) -> Result<Exported, CsvError> {
    let mut counts = Exported::default();
    for vpn in index.vpns() {
        if counts.vpns == 0 {
            writeln!(out, "{}", VPN_COLUMNS.join(","))?;
        }
        // Learnt labels are not part of the row format.
        writeln!(out, "{}", format_vpn_row(vpn))?;
        counts.vpns += 1;
    }
    if counts.vpns > 0 {
        // The empty line ends the VPN table.
        writeln!(out)?;
    }
    writeln!(out, "{}", COLUMNS.join(","))?;
    for sub in index.iter() {
        writeln!(out, "{}", format_row(&sub))?;
        counts.subscribers += 1;
    }
    out.flush()?;
    Ok(counts)
}
