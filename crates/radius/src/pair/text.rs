//! The radclient / users-file text syntax: `Name[:tag] op value`, quoting, dates, names of
//! raw attributes.

use std::fmt::Write as _;

use super::{is_raw_name, mask_v4, mask_v6, raw_name, Op, Pair, Value};
use crate::dict::{AttrId, AttributeDef, Dictionary, ValueType};
use crate::error::PairError;

impl Pair {
    /// radclient-style text: `Class = 0x436c6173732d31`, `Framed-IP-Address = 192.0.2.1`,
    /// `Tunnel-Type:1 = VLAN`, `Alc-Subsc-ID-Str = "x"`.
    pub fn to_text(&self, dict: &Dictionary) -> String {
        let mut out = self.name.clone();
        if let Some(tag) = self.tag {
            let _ = write!(out, ":{tag}");
        }
        let _ = write!(out, " {} ", self.op.as_str());
        let def = if is_raw_name(&self.name) {
            None
        } else {
            dict.attribute(&self.name)
        };
        out.push_str(&value_text(dict, def, &self.value));
        out
    }

    /// The value without radclient's quoting, as JSON records and property maps carry it:
    /// numbers as numbers unless the dictionary names the value (`Acct-Status-Type` is
    /// `Start`), text unquoted (in hex when it is not UTF-8), octets as `0x` and lower-case
    /// hex, addresses, prefixes, interface ids and MAC addresses in their usual text, dates as
    /// seconds since the Unix epoch.
    pub fn plain_value(&self, dict: &Dictionary) -> PlainValue {
        let def = if is_raw_name(&self.name) {
            None
        } else {
            dict.attribute(&self.name)
        };
        let number = |n: u64| match def.and_then(|d| dict.value_name(d, n)) {
            Some(name) => PlainValue::Text(name.to_string()),
            None => PlainValue::Unsigned(n),
        };
        match &self.value {
            Value::String(s) => match std::str::from_utf8(s) {
                Ok(text) => PlainValue::Text(text.to_string()),
                Err(_) => PlainValue::Text(hex(s)),
            },
            Value::Integer(n) => number(u64::from(*n)),
            Value::Integer64(n) => number(*n),
            Value::Byte(n) => number(u64::from(*n)),
            Value::Short(n) => number(u64::from(*n)),
            Value::Date(n) => PlainValue::Unsigned(u64::from(*n)),
            Value::Signed(n) => PlainValue::Signed(i64::from(*n)),
            other => PlainValue::Text(value_text(dict, def, other)),
        }
    }
}

/// A pair's value as plain data (see [`Pair::plain_value`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlainValue {
    /// Text: strings, named values, addresses, `0x` hex octets.
    Text(String),
    /// An unsigned number without a dictionary name (integer, date).
    Unsigned(u64),
    /// A `signed` number.
    Signed(i64),
}

impl std::fmt::Display for PlainValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlainValue::Text(text) => f.write_str(text),
            PlainValue::Unsigned(n) => write!(f, "{n}"),
            PlainValue::Signed(n) => write!(f, "{n}"),
        }
    }
}

fn value_text(dict: &Dictionary, def: Option<&AttributeDef>, value: &Value) -> String {
    let named = |n: u64| def.and_then(|d| dict.value_name(d, n)).map(str::to_string);
    match value {
        Value::String(s) => quote(s),
        Value::Octets(o) => hex(o),
        Value::Integer(n) => named(u64::from(*n)).unwrap_or_else(|| n.to_string()),
        Value::Integer64(n) => named(*n).unwrap_or_else(|| n.to_string()),
        Value::Signed(n) => n.to_string(),
        Value::Date(n) => format!("\"{}\"", format_date(*n)),
        Value::IpAddr(a) => a.to_string(),
        Value::Ipv6Addr(a) => a.to_string(),
        Value::Ipv6Prefix(len, a) => format!("{a}/{len}"),
        Value::Ipv4Prefix(len, a) => format!("{a}/{len}"),
        Value::Ifid(i) => i
            .chunks(2)
            .map(|c| format!("{:02x}{:02x}", c[0], c[1]))
            .collect::<Vec<_>>()
            .join(":"),
        Value::Byte(n) => named(u64::from(*n)).unwrap_or_else(|| n.to_string()),
        Value::Short(n) => named(u64::from(*n)).unwrap_or_else(|| n.to_string()),
        Value::Ether(m) => m
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + 2 * bytes.len());
    out.push_str("0x");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    let utf8 = std::str::from_utf8(bytes).ok();
    match utf8 {
        Some(text) => {
            for ch in text.chars() {
                match ch {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                        let _ = write!(out, "\\{:03o}", c as u32);
                    }
                    c => out.push(c),
                }
            }
        }
        None => {
            for &b in bytes {
                match b {
                    b'"' => out.push_str("\\\""),
                    b'\\' => out.push_str("\\\\"),
                    0x20..=0x7e => out.push(b as char),
                    _ => {
                        let _ = write!(out, "\\{b:03o}");
                    }
                }
            }
        }
    }
    out.push('"');
    out
}

/// Splits a text value: a double- or single-quoted string with escapes, or a bare word.
fn unquote(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let (&first, _) = bytes.split_first()?;
    if first != b'"' && first != b'\'' {
        return Some(bytes.to_vec());
    }
    if bytes.len() < 2 || *bytes.last()? != first {
        return None;
    }
    let inner = &bytes[1..bytes.len() - 1];
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let b = inner[i];
        if b != b'\\' {
            if b == first {
                return None;
            }
            out.push(b);
            i += 1;
            continue;
        }
        let next = *inner.get(i + 1)?;
        i += 2;
        match next {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'0'..=b'7' => {
                let digits = inner.get(i - 1..i + 2)?;
                let s = std::str::from_utf8(digits).ok()?;
                out.push(u8::from_str_radix(s, 8).ok()?);
                i += 2;
            }
            b'x' => {
                let digits = inner.get(i..i + 2)?;
                let s = std::str::from_utf8(digits).ok()?;
                out.push(u8::from_str_radix(s, 16).ok()?);
                i += 2;
            }
            other => out.push(other),
        }
    }
    Some(out)
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))?;
    if digits.len() % 2 != 0 {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(digits.get(i..i + 2)?, 16).ok())
        .collect()
}

fn parse_u64(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => text.parse().ok(),
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `Nov 22 2026 06:34:03 UTC`, the form FreeRADIUS prints.
fn format_date(secs: u32) -> String {
    let secs = i64::from(secs);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{} {d:02} {y} {:02}:{:02}:{:02} UTC",
        MONTHS[(m - 1) as usize],
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

fn parse_date(text: &str) -> Option<u32> {
    if let Some(n) = parse_u64(text) {
        return u32::try_from(n).ok();
    }
    let parts: Vec<&str> = text.split_whitespace().collect();
    let (mon, day, year, time) = match parts[..] {
        [mon, day, year, time] | [mon, day, year, time, "UTC"] => (mon, day, year, time),
        _ => return None,
    };
    let m = MONTHS.iter().position(|n| n.eq_ignore_ascii_case(mon))? as u32 + 1;
    let d: u32 = day.parse().ok()?;
    let y: i64 = year.parse().ok()?;
    let hms: Vec<u32> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, mi, s] = hms[..] else { return None };
    if !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let secs = days_from_civil(y, m, d) * 86_400 + i64::from(h * 3600 + mi * 60 + s);
    u32::try_from(secs).ok()
}

fn parse_ether(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    let mut out = [0u8; 6];
    if parts.len() != 6 {
        return None;
    }
    for (o, p) in out.iter_mut().zip(parts) {
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *o = u8::from_str_radix(p, 16).ok()?;
    }
    Some(out)
}

fn parse_ifid(text: &str) -> Option<[u8; 8]> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut out = [0u8; 8];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 4 {
            return None;
        }
        let v = u16::from_str_radix(p, 16).ok()?;
        out[2 * i..2 * i + 2].copy_from_slice(&v.to_be_bytes());
    }
    Some(out)
}

fn parse_value(dict: &Dictionary, def: &AttributeDef, text: &str) -> Option<Value> {
    let unquoted = unquote(text)?;
    let word = std::str::from_utf8(&unquoted).ok();
    let integer = |max: u64| -> Option<u64> {
        let w = word?;
        dict.value_by_name(def, w)
            .or_else(|| parse_u64(w))
            .filter(|&n| n <= max)
    };
    Some(match def.kind {
        ValueType::String => Value::String(unquoted),
        ValueType::Octets
        | ValueType::Abinary
        | ValueType::Tlv
        | ValueType::Vsa
        | ValueType::Extended
        | ValueType::LongExtended
        | ValueType::Evs => match parse_hex(text) {
            Some(bytes) => Value::Octets(bytes),
            None if text.starts_with('"') || text.starts_with('\'') => Value::Octets(unquoted),
            None => return None,
        },
        ValueType::Integer => Value::Integer(integer(u64::from(u32::MAX))? as u32),
        ValueType::Integer64 => Value::Integer64(integer(u64::MAX)?),
        ValueType::Byte => Value::Byte(integer(255)? as u8),
        ValueType::Short => Value::Short(integer(65_535)? as u16),
        ValueType::Signed => Value::Signed(word?.parse().ok()?),
        ValueType::Date => Value::Date(parse_date(word?)?),
        ValueType::IpAddr => Value::IpAddr(word?.parse().ok()?),
        ValueType::Ipv6Addr => Value::Ipv6Addr(word?.parse().ok()?),
        ValueType::ComboIp => match word?.parse::<std::net::IpAddr>().ok()? {
            std::net::IpAddr::V4(a) => Value::IpAddr(a),
            std::net::IpAddr::V6(a) => Value::Ipv6Addr(a),
        },
        ValueType::Ipv6Prefix => {
            let (addr, len) = word?.split_once('/').unwrap_or((word?, "128"));
            let len: u8 = len.parse().ok().filter(|&l| l <= 128)?;
            Value::Ipv6Prefix(len, mask_v6(addr.parse().ok()?, len))
        }
        ValueType::Ipv4Prefix => {
            let (addr, len) = word?.split_once('/').unwrap_or((word?, "32"));
            let len: u8 = len.parse().ok().filter(|&l| l <= 32)?;
            Value::Ipv4Prefix(len, mask_v4(addr.parse().ok()?, len))
        }
        ValueType::Ifid => Value::Ifid(parse_ifid(word?)?),
        ValueType::Ether => Value::Ether(parse_ether(word?)?),
    })
}

/// Parses an `Attr-<oid>` / `Vendor-Specific.<vendor>.<type>` / `Vendor-<v>-Attr-<t>` name.
fn parse_raw_name(name: &str) -> Option<AttrId> {
    let lower = name.to_ascii_lowercase();
    let oid: Vec<u32> = if let Some(oid) = lower.strip_prefix("attr-") {
        oid.split('.')
            .map(|c| c.parse().ok())
            .collect::<Option<_>>()?
    } else if let Some(oid) = lower.strip_prefix("vendor-specific.") {
        let mut v = vec![26];
        v.extend(
            oid.split('.')
                .map(|c| c.parse::<u32>().ok())
                .collect::<Option<Vec<_>>>()?,
        );
        v
    } else if let Some(rest) = lower.strip_prefix("vendor-") {
        let (vendor, typ) = rest.split_once("-attr-")?;
        vec![26, vendor.parse().ok()?, typ.parse().ok()?]
    } else {
        return None;
    };
    let small = |n: u32| u8::try_from(n).ok();
    let (id, rest) = match oid[..] {
        [26, vendor, typ, ref rest @ ..] => (AttrId::Vendor { vendor, typ }, rest),
        [base @ 241..=246, 26, vendor, typ, ref rest @ ..] => (
            AttrId::ExtendedVendor {
                base: base as u8,
                vendor,
                typ: small(typ)?,
            },
            rest,
        ),
        [base @ 241..=246, typ, ref rest @ ..] => (
            AttrId::Extended {
                base: base as u8,
                typ: small(typ)?,
            },
            rest,
        ),
        [t, ref rest @ ..] => (AttrId::Standard(small(t)?), rest),
        [] => return None,
    };
    let mut id = id;
    for &c in rest {
        id = AttrId::Tlv {
            parent: Box::new(id),
            typ: small(c)?,
        };
    }
    Some(id)
}

/// Splits `Name[:tag] op value`. Names contain '-', so '-' only starts an operator in "-=",
/// and ':' only in ":=" (otherwise it introduces a tag).
fn split_pair(text: &str) -> Option<(&str, Op, &str)> {
    let text = text.trim();
    let bytes = text.as_bytes();
    let name_end = bytes
        .iter()
        .enumerate()
        .position(|(i, &b)| {
            let next_is_equal = bytes.get(i + 1) == Some(&b'=');
            b.is_ascii_whitespace()
                || matches!(b, b'=' | b'!' | b'<' | b'>' | b'+' | b'~')
                || (matches!(b, b'-' | b':') && next_is_equal)
        })
        .unwrap_or(bytes.len());
    let name = &text[..name_end];
    let rest = text[name_end..].trim_start();
    let op = Op::ALL
        .into_iter()
        .find(|op| rest.starts_with(op.as_str()))?;
    let value = rest[op.as_str().len()..].trim();
    if name.is_empty() || value.is_empty() {
        return None;
    }
    Some((name, op, value))
}

fn syntax(text: &str) -> PairError {
    PairError::Syntax {
        text: text.to_string(),
    }
}

impl Dictionary {
    fn raw_or_def(&self, name: &str) -> Result<(AttrId, Option<&AttributeDef>), PairError> {
        if let Some(def) = self.attribute(name) {
            return Ok((def.id.clone(), Some(def)));
        }
        parse_raw_name(name)
            .map(|id| (id, None))
            .ok_or_else(|| PairError::UnknownAttribute {
                name: name.to_string(),
            })
    }

    /// Parses `Name = value`, `Name := value`, `Name += value`, `Name:tag = value`, vendor and
    /// extended names, `Attr-<oid>` raw names, with the value parsed by the attribute's type.
    pub fn parse_pair(&self, text: &str) -> Result<Pair, PairError> {
        let (name_tag, op, value_text) = split_pair(text).ok_or_else(|| syntax(text))?;
        let (name, tag) = match name_tag.rsplit_once(':') {
            Some((name, tag)) => {
                let tag: u8 = tag
                    .parse()
                    .ok()
                    .filter(|t| (1..=0x1f).contains(t))
                    .ok_or_else(|| PairError::BadValue {
                        name: name.to_string(),
                        value: tag.to_string(),
                        expected: "a tag between 1 and 31".into(),
                    })?;
                (name, Some(tag))
            }
            None => (name_tag, None),
        };
        let (attr, def) = self.raw_or_def(name)?;
        let bad = |expected: String| PairError::BadValue {
            name: name.to_string(),
            value: value_text.to_string(),
            expected,
        };
        let (name, value) = match def {
            Some(def) => {
                if tag.is_some() && !def.has_tag {
                    return Err(bad(format!(
                        "no tag: {} is not a tagged attribute",
                        def.name
                    )));
                }
                let value = parse_value(self, def, value_text)
                    .ok_or_else(|| bad(format!("{:?}", def.kind).to_ascii_lowercase()))?;
                (def.name.clone(), value)
            }
            None => {
                let bytes = parse_hex(value_text)
                    .or_else(|| {
                        (value_text.starts_with('"') || value_text.starts_with('\''))
                            .then(|| unquote(value_text))
                            .flatten()
                    })
                    .ok_or_else(|| bad("0x-prefixed hex octets".into()))?;
                (raw_name(&attr), Value::Octets(bytes))
            }
        };
        Ok(Pair {
            attr,
            name,
            tag,
            op,
            value,
        })
    }

    /// Parses radclient input: pairs separated by commas or newlines; `#` comments and blank
    /// lines are skipped. Commas inside quoted strings are kept.
    pub fn parse_pairs(&self, text: &str) -> Result<Vec<Pair>, PairError> {
        let mut pairs = Vec::new();
        for line in text.lines() {
            let mut start = 0;
            let mut quote: Option<char> = None;
            let mut escaped = false;
            let mut pieces = Vec::new();
            for (i, c) in line.char_indices() {
                match (quote, c) {
                    (Some(_), '\\') if !escaped => {
                        escaped = true;
                        continue;
                    }
                    (Some(q), c) if c == q && !escaped => quote = None,
                    (None, '"' | '\'') => quote = Some(c),
                    (None, ',') => {
                        pieces.push(&line[start..i]);
                        start = i + 1;
                    }
                    (None, '#') => {
                        pieces.push(&line[start..i]);
                        start = line.len();
                        break;
                    }
                    _ => {}
                }
                escaped = false;
            }
            if start < line.len() {
                pieces.push(&line[start..]);
            }
            for piece in pieces {
                if !piece.trim().is_empty() {
                    pairs.push(self.parse_pair(piece)?);
                }
            }
        }
        Ok(pairs)
    }

    /// Parses radclient input holding several packets, separated by blank lines (as
    /// `radclient -f` files are): one pair list per packet.
    pub fn parse_packets(&self, text: &str) -> Result<Vec<Vec<Pair>>, PairError> {
        let mut packets = Vec::new();
        let mut current = String::new();
        for line in text.lines().chain(std::iter::once("")) {
            if line.trim().is_empty() {
                let pairs = self.parse_pairs(&current)?;
                if !pairs.is_empty() {
                    packets.push(pairs);
                }
                current.clear();
            } else {
                current.push_str(line);
                current.push('\n');
            }
        }
        Ok(packets)
    }
}
