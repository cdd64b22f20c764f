//! Typed attribute/value pairs: radclient / users-file text syntax, encoding into packets
//! (VSA, extended, tags, `concat`, encryption) and decoding from them.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::attr::VENDOR_SPECIFIC;
use crate::auth;
use crate::dict::{AttrId, AttributeDef, Dictionary, Encrypt, ValueType};
use crate::error::{CryptoError, PairError};
use crate::packet::{vsa_build, vsa_split_body, Packet, RawAttribute};
use crate::wire::{AttributeIter, MAX_VALUE_LEN};

/// A typed attribute value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// `string` (any octets; printed escaped).
    String(Vec<u8>),
    /// `octets`, `abinary`, unknown attributes, and values that do not decode as their type.
    Octets(Vec<u8>),
    /// `integer`.
    Integer(u32),
    /// `integer64`.
    Integer64(u64),
    /// `signed`.
    Signed(i32),
    /// `date` (seconds since the Unix epoch).
    Date(u32),
    /// `ipaddr`.
    IpAddr(Ipv4Addr),
    /// `ipv6addr`.
    Ipv6Addr(Ipv6Addr),
    /// `ipv6prefix`: length and prefix (host bits zero).
    Ipv6Prefix(u8, Ipv6Addr),
    /// `ipv4prefix`: length and prefix (host bits zero).
    Ipv4Prefix(u8, Ipv4Addr),
    /// `ifid`.
    Ifid([u8; 8]),
    /// `byte`.
    Byte(u8),
    /// `short`.
    Short(u16),
    /// `ether`.
    Ether([u8; 6]),
}

/// Operator between name and value (users-file / radclient syntax).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Op {
    /// `=`: add if not present (plain assignment in radclient input).
    #[default]
    Equal,
    /// `:=`: set, replacing.
    Set,
    /// `+=`: append.
    Add,
    /// `-=`: remove matching.
    Sub,
    /// `==`: check equality.
    CmpEq,
    /// `!=`
    CmpNe,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `=~`: regular expression match.
    RegMatch,
    /// `!~`
    RegNoMatch,
}

impl Op {
    /// The operator's text.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Equal => "=",
            Op::Set => ":=",
            Op::Add => "+=",
            Op::Sub => "-=",
            Op::CmpEq => "==",
            Op::CmpNe => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::RegMatch => "=~",
            Op::RegNoMatch => "!~",
        }
    }

    const ALL: [Op; 12] = [
        Op::Set,
        Op::Add,
        Op::Sub,
        Op::CmpEq,
        Op::CmpNe,
        Op::Ge,
        Op::Le,
        Op::RegMatch,
        Op::RegNoMatch,
        Op::Equal,
        Op::Gt,
        Op::Lt,
    ];
}

/// One attribute with its typed value, as written in radclient input or a users file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pair {
    /// Wire position.
    pub attr: AttrId,
    /// Dictionary name, or `Attr-<oid>` for attributes kept raw.
    pub name: String,
    /// RFC 2868 tag.
    pub tag: Option<u8>,
    /// Operator.
    pub op: Op,
    /// Value.
    pub value: Value,
}

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
}

fn is_raw_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("attr-") || lower.starts_with("vendor-specific.")
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

fn mask_v6(addr: Ipv6Addr, len: u8) -> Ipv6Addr {
    let bits = u128::from(addr);
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    };
    Ipv6Addr::from(bits & mask)
}

fn mask_v4(addr: Ipv4Addr, len: u8) -> Ipv4Addr {
    let bits = u32::from(addr);
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    Ipv4Addr::from(bits & mask)
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

fn raw_name(id: &AttrId) -> String {
    format!("Attr-{id}")
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

fn encode_error(name: &str, reason: impl Into<String>) -> PairError {
    PairError::Encode {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Octets of a typed value as they go on the wire (before tag and encryption).
fn value_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::String(b) | Value::Octets(b) => b.clone(),
        Value::Integer(n) | Value::Date(n) => n.to_be_bytes().to_vec(),
        Value::Integer64(n) => n.to_be_bytes().to_vec(),
        Value::Signed(n) => n.to_be_bytes().to_vec(),
        Value::IpAddr(a) => a.octets().to_vec(),
        Value::Ipv6Addr(a) => a.octets().to_vec(),
        Value::Ipv6Prefix(len, a) => {
            let mut v = vec![0, *len];
            v.extend_from_slice(&a.octets()[..usize::from(*len).div_ceil(8)]);
            v
        }
        Value::Ipv4Prefix(len, a) => {
            let mut v = vec![0, *len];
            v.extend_from_slice(&a.octets());
            v
        }
        Value::Ifid(i) => i.to_vec(),
        Value::Byte(n) => vec![*n],
        Value::Short(n) => n.to_be_bytes().to_vec(),
        Value::Ether(m) => m.to_vec(),
    }
}

fn decode_value(kind: ValueType, data: &[u8]) -> Option<Value> {
    Some(match kind {
        ValueType::String => Value::String(data.to_vec()),
        ValueType::Integer => Value::Integer(u32::from_be_bytes(data.try_into().ok()?)),
        ValueType::Integer64 => Value::Integer64(u64::from_be_bytes(data.try_into().ok()?)),
        ValueType::Signed => Value::Signed(i32::from_be_bytes(data.try_into().ok()?)),
        ValueType::Date => Value::Date(u32::from_be_bytes(data.try_into().ok()?)),
        ValueType::IpAddr => Value::IpAddr(Ipv4Addr::from(<[u8; 4]>::try_from(data).ok()?)),
        ValueType::Ipv6Addr => Value::Ipv6Addr(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?)),
        ValueType::ComboIp => match data.len() {
            4 => Value::IpAddr(Ipv4Addr::from(<[u8; 4]>::try_from(data).ok()?)),
            16 => Value::Ipv6Addr(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?)),
            _ => return None,
        },
        ValueType::Ipv6Prefix => {
            let (&len, rest) = data.get(1..)?.split_first()?;
            if len > 128 || rest.len() > 16 || rest.len() < usize::from(len).div_ceil(8) {
                return None;
            }
            let mut octets = [0u8; 16];
            octets[..rest.len()].copy_from_slice(rest);
            let addr = Ipv6Addr::from(octets);
            if mask_v6(addr, len) != addr {
                return None;
            }
            Value::Ipv6Prefix(len, addr)
        }
        ValueType::Ipv4Prefix => {
            if data.len() != 6 || data[1] > 32 {
                return None;
            }
            let addr = Ipv4Addr::new(data[2], data[3], data[4], data[5]);
            if mask_v4(addr, data[1]) != addr {
                return None;
            }
            Value::Ipv4Prefix(data[1], addr)
        }
        ValueType::Ifid => Value::Ifid(data.try_into().ok()?),
        ValueType::Byte => Value::Byte(*<&[u8; 1]>::try_from(data).ok()?.first()?),
        ValueType::Short => Value::Short(u16::from_be_bytes(data.try_into().ok()?)),
        ValueType::Ether => Value::Ether(data.try_into().ok()?),
        ValueType::Octets
        | ValueType::Abinary
        | ValueType::Tlv
        | ValueType::Vsa
        | ValueType::Extended
        | ValueType::LongExtended
        | ValueType::Evs => Value::Octets(data.to_vec()),
    })
}

/// Salt for `encrypt=2` derived from the authenticator (random per request) plus the
/// attribute's position, so that the salts of one packet all differ (RFC 2868 §3.5) without a
/// random source in the codec.
fn tunnel_salt(authenticator: &[u8; 16], position: usize) -> u16 {
    let base = u16::from_be_bytes([authenticator[0], authenticator[1]]);
    0x8000 | (base.wrapping_add(position as u16) & 0x7fff)
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

    /// Encodes `pair` into `packet`: tag, encryption with (`secret`, `authenticator`) when the
    /// dictionary says `encrypt=N`, then wrapping into Vendor-Specific / extended / TLV
    /// attributes, splitting `concat` and long-extended values. Pairs with `Attr-…` names are
    /// written verbatim.
    pub fn add_pair(
        &self,
        packet: &mut Packet,
        pair: &Pair,
        secret: &[u8],
        authenticator: &[u8; 16],
    ) -> Result<(), PairError> {
        let def = if is_raw_name(&pair.name) {
            None
        } else {
            self.attribute(&pair.name).filter(|d| d.id == pair.attr)
        };
        let mut data = value_bytes(&pair.value);
        let (concat, name) = match def {
            Some(def) => {
                if def.is_virtual {
                    return Err(encode_error(&def.name, "virtual attribute, never sent"));
                }
                if let (Value::Integer(n), Some(tag)) = (&pair.value, pair.tag) {
                    if *n > 0x00ff_ffff {
                        return Err(encode_error(
                            &def.name,
                            "a tagged integer carries at most 24 bits (the tag is the top octet)",
                        ));
                    }
                    data[0] = tag;
                }
                match def.encrypt {
                    Encrypt::None => {}
                    Encrypt::UserPassword => {
                        if data.len() > auth::MAX_USER_PASSWORD_LEN {
                            return Err(encode_error(&def.name, "longer than 128 octets"));
                        }
                        data = auth::hide_user_password(&data, secret, authenticator);
                    }
                    Encrypt::TunnelPassword => {
                        if data.len() > auth::MAX_TUNNEL_PASSWORD_LEN {
                            return Err(encode_error(&def.name, "longer than 239 octets"));
                        }
                        let salt = tunnel_salt(authenticator, packet.attributes.len());
                        data = auth::hide_tunnel_password(&data, secret, authenticator, salt);
                    }
                    Encrypt::AscendSecret => {
                        if data.len() > 16 {
                            return Err(encode_error(&def.name, "longer than 16 octets"));
                        }
                        data = auth::hide_ascend_secret(&data, secret, authenticator);
                    }
                }
                if def.has_tag && !matches!(pair.value, Value::Integer(_)) {
                    // RFC 2868: Tunnel-Password always carries its tag octet; other strings only
                    // when a tag was given.
                    match pair.tag {
                        Some(tag) => data.insert(0, tag),
                        None if def.encrypt == Encrypt::TunnelPassword => data.insert(0, 0),
                        None => {}
                    }
                }
                (def.concat, def.name.as_str())
            }
            None => (false, pair.name.as_str()),
        };
        let encoded = self
            .wrap(&pair.attr, data, concat)
            .map_err(|r| encode_error(name, r))?;
        packet.attributes.extend(encoded);
        Ok(())
    }

    /// Wraps attribute data into top-level attributes according to its position.
    fn wrap(&self, id: &AttrId, data: Vec<u8>, concat: bool) -> Result<Vec<RawAttribute>, String> {
        let one = |typ: u8, value: Vec<u8>| -> Result<Vec<RawAttribute>, String> {
            if value.len() > MAX_VALUE_LEN {
                return Err(format!(
                    "{} octets do not fit one attribute (253 maximum)",
                    value.len()
                ));
            }
            Ok(vec![RawAttribute { typ, value }])
        };
        match id {
            AttrId::Standard(t) => {
                if concat && data.len() > MAX_VALUE_LEN {
                    Ok(data
                        .chunks(MAX_VALUE_LEN)
                        .map(|c| RawAttribute {
                            typ: *t,
                            value: c.to_vec(),
                        })
                        .collect())
                } else {
                    one(*t, data)
                }
            }
            AttrId::Vendor { vendor, typ } => {
                let value = vsa_build(*vendor, *typ, &data, self.vendor_format(*vendor))
                    .map_err(|e| e.to_string())?;
                one(VENDOR_SPECIFIC, value)
            }
            AttrId::Extended { base, typ } => extended(*base, &[*typ], data),
            AttrId::ExtendedVendor { base, vendor, typ } => {
                let mut header = vec![26];
                header.extend_from_slice(&vendor.to_be_bytes());
                header.push(*typ);
                extended(*base, &header, data)
            }
            AttrId::Tlv { parent, typ } => {
                if data.len() > MAX_VALUE_LEN {
                    return Err("sub-TLV longer than 253 octets".into());
                }
                let mut tlv = vec![*typ, (data.len() + 2) as u8];
                tlv.extend_from_slice(&data);
                self.wrap(parent, tlv, false)
            }
            AttrId::Internal(_) => Err("server-internal attribute, not encodable".into()),
        }
    }

    /// Decodes every attribute of `packet` into typed pairs in wire order: Vendor-Specific
    /// sub-attributes by the vendor's format, extended and long-extended (reassembled),
    /// `concat` attributes joined, tags split, sub-TLVs flattened, encrypted values revealed
    /// when `crypt` gives (secret, authenticator). Unknown or malformed attributes come out as
    /// `Attr-<oid>` octets. Never fails.
    pub fn decode_pairs(&self, packet: &Packet, crypt: Option<(&[u8], &[u8; 16])>) -> Vec<Pair> {
        let mut out = Vec::new();
        let attrs = &packet.attributes;
        let mut i = 0;
        while i < attrs.len() {
            let attr = &attrs[i];
            i += 1;
            match attr.typ {
                VENDOR_SPECIFIC => self.decode_vsa(&attr.value, crypt, &mut out),
                241..=244 => match attr.value.split_first() {
                    Some((&26, rest)) if rest.len() >= 5 => {
                        let vendor = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                        let id = AttrId::ExtendedVendor {
                            base: attr.typ,
                            vendor,
                            typ: rest[4],
                        };
                        self.decode_one(id, &rest[5..], crypt, &mut out);
                    }
                    Some((&typ, rest)) if typ != 26 => self.decode_one(
                        AttrId::Extended {
                            base: attr.typ,
                            typ,
                        },
                        rest,
                        crypt,
                        &mut out,
                    ),
                    _ => out.push(raw_pair(AttrId::Standard(attr.typ), &attr.value)),
                },
                245 | 246 => {
                    let (Some(&ext), Some(&flags)) = (attr.value.first(), attr.value.get(1)) else {
                        out.push(raw_pair(AttrId::Standard(attr.typ), &attr.value));
                        continue;
                    };
                    let mut data = attr.value[2..].to_vec();
                    let mut more = flags & 0x80 != 0;
                    let start = i;
                    while more {
                        match attrs.get(i) {
                            Some(next)
                                if next.typ == attr.typ
                                    && next.value.first() == Some(&ext)
                                    && next.value.len() >= 2 =>
                            {
                                data.extend_from_slice(&next.value[2..]);
                                more = next.value[1] & 0x80 != 0;
                                i += 1;
                            }
                            _ => break,
                        }
                    }
                    if more {
                        // Fragment chain cut short: keep every fragment raw.
                        for a in &attrs[start - 1..i] {
                            out.push(raw_pair(AttrId::Standard(a.typ), &a.value));
                        }
                        continue;
                    }
                    if ext == 26 {
                        if data.len() >= 5 {
                            let vendor = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                            let id = AttrId::ExtendedVendor {
                                base: attr.typ,
                                vendor,
                                typ: data[4],
                            };
                            self.decode_one(id, &data[5..], crypt, &mut out);
                        } else {
                            out.push(raw_pair(AttrId::Standard(attr.typ), &attr.value));
                        }
                    } else {
                        self.decode_one(
                            AttrId::Extended {
                                base: attr.typ,
                                typ: ext,
                            },
                            &data,
                            crypt,
                            &mut out,
                        );
                    }
                }
                typ => {
                    let id = AttrId::Standard(typ);
                    let concat = self.attribute_by_id(&id).is_some_and(|d| d.concat);
                    if concat {
                        let mut data = attr.value.clone();
                        while let Some(next) = attrs.get(i).filter(|n| n.typ == typ) {
                            data.extend_from_slice(&next.value);
                            i += 1;
                        }
                        self.decode_one(id, &data, crypt, &mut out);
                    } else {
                        self.decode_one(id, &attr.value, crypt, &mut out);
                    }
                }
            }
        }
        out
    }

    fn decode_vsa(&self, value: &[u8], crypt: Option<(&[u8], &[u8; 16])>, out: &mut Vec<Pair>) {
        let split = value.get(..4).and_then(|id| {
            let vendor = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
            let subs = vsa_split_body(&value[4..], self.vendor_format(vendor))?;
            Some((vendor, subs))
        });
        let Some((vendor, subs)) = split else {
            out.push(raw_pair(AttrId::Standard(VENDOR_SPECIFIC), value));
            return;
        };
        let mut pending: Option<(u32, Vec<u8>)> = None;
        for sub in subs {
            // WiMAX-style continuation: join fragments flagged "more".
            let data = match pending.take() {
                Some((typ, mut data)) if typ == sub.typ => {
                    data.extend_from_slice(sub.value);
                    data
                }
                Some((typ, data)) => {
                    self.decode_one(AttrId::Vendor { vendor, typ }, &data, crypt, out);
                    sub.value.to_vec()
                }
                None => sub.value.to_vec(),
            };
            if sub.more {
                pending = Some((sub.typ, data));
            } else {
                self.decode_one(
                    AttrId::Vendor {
                        vendor,
                        typ: sub.typ,
                    },
                    &data,
                    crypt,
                    out,
                );
            }
        }
        if let Some((typ, data)) = pending {
            self.decode_one(AttrId::Vendor { vendor, typ }, &data, crypt, out);
        }
    }

    fn decode_one(
        &self,
        id: AttrId,
        data: &[u8],
        crypt: Option<(&[u8], &[u8; 16])>,
        out: &mut Vec<Pair>,
    ) {
        let Some(def) = self.attribute_by_id(&id) else {
            out.push(raw_pair(id, data));
            return;
        };
        if def.kind == ValueType::Tlv {
            if crate::wire::check_attributes(data, 0).is_ok() && !data.is_empty() {
                for sub in AttributeIter::new(data) {
                    let child = AttrId::Tlv {
                        parent: Box::new(id.clone()),
                        typ: sub.typ,
                    };
                    self.decode_one(child, sub.value, crypt, out);
                }
                return;
            }
            out.push(raw_pair(id, data));
            return;
        }
        // `array` attributes pack several fixed-width values into one attribute: one pair each.
        if let Some(width) = fixed_width(def.kind).filter(|_| def.array && !def.has_tag) {
            if data.len() > width
                && data.len().is_multiple_of(width)
                && def.encrypt == Encrypt::None
            {
                for chunk in data.chunks(width) {
                    if let Some(value) = decode_value(def.kind, chunk) {
                        out.push(Pair {
                            attr: id.clone(),
                            name: def.name.clone(),
                            tag: None,
                            op: Op::Equal,
                            value,
                        });
                    }
                }
                return;
            }
        }
        match self.decode_typed(def, data, crypt) {
            Some((tag, value)) => out.push(Pair {
                attr: id,
                name: def.name.clone(),
                tag,
                op: Op::Equal,
                value,
            }),
            None => out.push(raw_pair(id, data)),
        }
    }

    fn decode_typed(
        &self,
        def: &AttributeDef,
        data: &[u8],
        crypt: Option<(&[u8], &[u8; 16])>,
    ) -> Option<(Option<u8>, Value)> {
        let mut tag = None;
        let mut data = data.to_vec();
        let is_int = def.kind == ValueType::Integer;
        // RFC 2868 §3: tags are 0x01..=0x1F; 0x00 means "no tag". A tagged integer carries the
        // tag in its top octet; Tunnel-Password always carries the tag octet; other strings
        // only when the first octet is a valid tag.
        let valid_tag = |b: u8| (1..=0x1f).contains(&b).then_some(b);
        if def.has_tag {
            if is_int {
                if data.len() == 4 && data[0] <= 0x1f {
                    tag = valid_tag(data[0]);
                    data[0] = 0;
                }
            } else if def.encrypt == Encrypt::TunnelPassword {
                tag = valid_tag(*data.first()?);
                data.remove(0);
            } else if let Some(t) = data.first().and_then(|&b| valid_tag(b)) {
                tag = Some(t);
                data.remove(0);
            }
        }
        if def.encrypt != Encrypt::None {
            let (secret, authenticator) = crypt?;
            data = match def.encrypt {
                Encrypt::UserPassword => {
                    auth::reveal_user_password(&data, secret, authenticator).ok()?
                }
                Encrypt::TunnelPassword => {
                    auth::reveal_tunnel_password(&data, secret, authenticator).ok()?
                }
                Encrypt::AscendSecret => {
                    auth::reveal_ascend_secret(&data, secret, authenticator).ok()?
                }
                Encrypt::None => data,
            };
        }
        if let Some(n) = def.fixed_len {
            if data.len() != n {
                return None;
            }
        }
        let value = decode_value(def.kind, &data)?;
        Some((tag, value))
    }

    /// Re-encrypts every encrypted attribute (`encrypt=1/2/3`, standard, Vendor-Specific,
    /// extended and extended-vendor) of a packet being proxied: decrypt with
    /// (`old_secret`, `old_authenticator`), encrypt with (`new_secret`, `new_authenticator`).
    /// Tags and Tunnel-Password salts are kept. Long-extended (245/246) encrypted attributes are
    /// not supported and left untouched. On error the packet is unchanged.
    pub fn reencrypt(
        &self,
        packet: &mut Packet,
        old_secret: &[u8],
        old_authenticator: &[u8; 16],
        new_secret: &[u8],
        new_authenticator: &[u8; 16],
    ) -> Result<(), CryptoError> {
        let recrypt = |def: &AttributeDef, data: &[u8]| -> Result<Vec<u8>, CryptoError> {
            let (prefix, body) = if def.has_tag && def.encrypt == Encrypt::TunnelPassword {
                data.split_at(usize::from(!data.is_empty()))
            } else {
                data.split_at(0)
            };
            let mut out = prefix.to_vec();
            match def.encrypt {
                Encrypt::None => out.extend_from_slice(body),
                Encrypt::UserPassword => {
                    let plain = auth::reveal_user_password(body, old_secret, old_authenticator)?;
                    out.extend(auth::hide_user_password(
                        &plain,
                        new_secret,
                        new_authenticator,
                    ));
                }
                Encrypt::TunnelPassword => {
                    let plain = auth::reveal_tunnel_password(body, old_secret, old_authenticator)?;
                    let salt = u16::from_be_bytes([body[0], body[1]]);
                    out.extend(auth::hide_tunnel_password(
                        &plain,
                        new_secret,
                        new_authenticator,
                        salt,
                    ));
                }
                Encrypt::AscendSecret => {
                    let plain = auth::reveal_ascend_secret(body, old_secret, old_authenticator)?;
                    out.extend(auth::hide_ascend_secret(
                        &plain,
                        new_secret,
                        new_authenticator,
                    ));
                }
            }
            Ok(out)
        };
        let encrypted = |id: &AttrId| {
            self.attribute_by_id(id)
                .filter(|d| d.encrypt != Encrypt::None)
        };
        let mut rewritten = packet.attributes.clone();
        for attr in rewritten.iter_mut() {
            match attr.typ {
                VENDOR_SPECIFIC => {
                    let Some(id) = attr.value.get(..4) else {
                        continue;
                    };
                    let vendor = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
                    let format = self.vendor_format(vendor);
                    let Some(subs) = vsa_split_body(&attr.value[4..], format) else {
                        continue;
                    };
                    if !subs
                        .iter()
                        .any(|s| encrypted(&AttrId::Vendor { vendor, typ: s.typ }).is_some())
                    {
                        continue;
                    }
                    let mut value = vendor.to_be_bytes().to_vec();
                    for s in &subs {
                        match encrypted(&AttrId::Vendor { vendor, typ: s.typ }) {
                            Some(def) => {
                                let data = recrypt(def, s.value)?;
                                let built = vsa_build(vendor, s.typ, &data, format)?;
                                value.extend_from_slice(&built[4..]);
                            }
                            None => value.extend_from_slice(s.raw),
                        }
                    }
                    attr.value = value;
                }
                241..=244 => {
                    let (id, header) = match attr.value.first() {
                        Some(&26) if attr.value.len() >= 6 => {
                            let v = &attr.value;
                            let vendor = u32::from_be_bytes([v[1], v[2], v[3], v[4]]);
                            (
                                AttrId::ExtendedVendor {
                                    base: attr.typ,
                                    vendor,
                                    typ: v[5],
                                },
                                6,
                            )
                        }
                        Some(&typ) => (
                            AttrId::Extended {
                                base: attr.typ,
                                typ,
                            },
                            1,
                        ),
                        None => continue,
                    };
                    if let Some(def) = encrypted(&id) {
                        let mut value = attr.value[..header].to_vec();
                        value.extend(recrypt(def, &attr.value[header..])?);
                        attr.value = value;
                    }
                }
                typ => {
                    if let Some(def) = encrypted(&AttrId::Standard(typ)) {
                        attr.value = recrypt(def, &attr.value)?;
                    }
                }
            }
        }
        for attr in &rewritten {
            if attr.value.len() > MAX_VALUE_LEN {
                return Err(CryptoError::Packet(
                    crate::error::PacketError::ValueTooLong {
                        typ: attr.typ,
                        len: attr.value.len(),
                    },
                ));
            }
        }
        packet.attributes = rewritten;
        Ok(())
    }
}

fn extended(base: u8, header: &[u8], data: Vec<u8>) -> Result<Vec<RawAttribute>, String> {
    if matches!(base, 245 | 246) {
        // Long extended: Extended-Type, flags (M = more), then the fragment. Vendor header
        // (for EVS) belongs to the data and is only in the first fragment (RFC 6929 §2.2).
        let (ext, rest_header) = header.split_first().ok_or("empty extended header")?;
        let mut payload = rest_header.to_vec();
        payload.extend_from_slice(&data);
        let chunk = MAX_VALUE_LEN - 2;
        let chunks: Vec<&[u8]> = if payload.is_empty() {
            vec![&[][..]]
        } else {
            payload.chunks(chunk).collect()
        };
        let last = chunks.len() - 1;
        Ok(chunks
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let mut value = vec![*ext, if i < last { 0x80 } else { 0 }];
                value.extend_from_slice(c);
                RawAttribute { typ: base, value }
            })
            .collect())
    } else {
        let mut value = header.to_vec();
        value.extend_from_slice(&data);
        if value.len() > MAX_VALUE_LEN {
            return Err(format!(
                "{} octets do not fit one extended attribute",
                data.len()
            ));
        }
        Ok(vec![RawAttribute { typ: base, value }])
    }
}

/// Wire width of fixed-size types (for `array` attributes).
fn fixed_width(kind: ValueType) -> Option<usize> {
    Some(match kind {
        ValueType::Byte => 1,
        ValueType::Short => 2,
        ValueType::Integer | ValueType::Signed | ValueType::Date | ValueType::IpAddr => 4,
        ValueType::Integer64 | ValueType::Ifid => 8,
        ValueType::Ether => 6,
        ValueType::Ipv6Addr => 16,
        _ => return None,
    })
}

fn raw_pair(id: AttrId, data: &[u8]) -> Pair {
    Pair {
        name: raw_name(&id),
        attr: id,
        tag: None,
        op: Op::Equal,
        value: Value::Octets(data.to_vec()),
    }
}
