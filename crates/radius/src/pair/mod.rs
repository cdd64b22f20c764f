//! Typed attribute/value pairs, by job: `text` reads and writes the radclient / users-file
//! syntax, `encode` puts pairs into packets (VSA, extended, tags, `concat`, encryption),
//! `decode` takes them out again, and `crypt` re-hides encrypted attributes for another
//! secret when a packet is proxied.

mod crypt;
mod decode;
mod encode;
mod text;

pub use text::PlainValue;

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::dict::AttrId;

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

fn is_raw_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("attr-") || lower.starts_with("vendor-specific.")
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

fn raw_name(id: &AttrId) -> String {
    format!("Attr-{id}")
}
