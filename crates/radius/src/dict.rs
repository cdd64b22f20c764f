//! FreeRADIUS-format dictionaries, read as they are, with O(1) name and number lookups.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::DictionaryError;

/// Where an attribute lives on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttrId {
    /// A top-level attribute type 1..=255.
    Standard(u8),
    /// A Vendor-Specific (26) sub-attribute.
    Vendor {
        /// SMI private enterprise number.
        vendor: u32,
        /// Vendor attribute type (width given by the vendor's `format=`).
        typ: u32,
    },
    /// An RFC 6929 extended attribute `base.typ` (base 241..=246).
    Extended {
        /// Top-level type 241..=246.
        base: u8,
        /// Extended-Type.
        typ: u8,
    },
    /// An RFC 6929 Extended-Vendor-Specific attribute `base.26.vendor.typ`.
    ExtendedVendor {
        /// Top-level type 241..=246.
        base: u8,
        /// SMI private enterprise number.
        vendor: u32,
        /// Vendor-Type.
        typ: u8,
    },
    /// A sub-TLV of a `tlv` attribute.
    Tlv {
        /// The enclosing attribute.
        parent: Box<AttrId>,
        /// Sub-type.
        typ: u8,
    },
    /// A server-internal attribute (number above 255 outside any vendor): never on the wire.
    Internal(u32),
}

impl AttrId {
    /// Whether this is one of the RFC 6929 "long extended" bases (245, 246) that fragment.
    pub fn is_long_extended(&self) -> bool {
        match self {
            AttrId::Extended { base, .. } | AttrId::ExtendedVendor { base, .. } => {
                matches!(base, 245 | 246)
            }
            AttrId::Tlv { parent, .. } => parent.is_long_extended(),
            _ => false,
        }
    }
}

/// The OID form FreeRADIUS uses in `Attr-…` names: `1`, `26.6527.151`, `241.26.6527.1`, `59.1`.
impl fmt::Display for AttrId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrId::Standard(t) => write!(f, "{t}"),
            AttrId::Vendor { vendor, typ } => write!(f, "26.{vendor}.{typ}"),
            AttrId::Extended { base, typ } => write!(f, "{base}.{typ}"),
            AttrId::ExtendedVendor { base, vendor, typ } => write!(f, "{base}.26.{vendor}.{typ}"),
            AttrId::Tlv { parent, typ } => write!(f, "{parent}.{typ}"),
            AttrId::Internal(n) => write!(f, "{n}"),
        }
    }
}

/// Value type of an attribute, as named in dictionary files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// `string`: printable text (may hold any octets).
    String,
    /// `octets`: opaque binary.
    Octets,
    /// `integer`: 32-bit unsigned.
    Integer,
    /// `integer64`: 64-bit unsigned.
    Integer64,
    /// `signed`: 32-bit signed.
    Signed,
    /// `date`: seconds since the Unix epoch, 32-bit.
    Date,
    /// `ipaddr`: IPv4 address.
    IpAddr,
    /// `ipv6addr`: IPv6 address.
    Ipv6Addr,
    /// `ipv6prefix`: reserved octet, prefix length, prefix (RFC 3162).
    Ipv6Prefix,
    /// `ipv4prefix`: reserved octet, prefix length, 4 address octets (RFC 6572).
    Ipv4Prefix,
    /// `ifid`: 8-octet interface identifier.
    Ifid,
    /// `byte`: 8-bit unsigned.
    Byte,
    /// `short`: 16-bit unsigned.
    Short,
    /// `ether`: 6-octet MAC address.
    Ether,
    /// `tlv`: a container of sub-TLVs.
    Tlv,
    /// `vsa`: the Vendor-Specific container.
    Vsa,
    /// `extended`: RFC 6929 extended container (241..=244).
    Extended,
    /// `long-extended`: RFC 6929 long extended container (245, 246).
    LongExtended,
    /// `evs`: RFC 6929 Extended-Vendor-Specific container.
    Evs,
    /// `abinary`: Ascend binary filter, handled as octets.
    Abinary,
    /// `combo-ip`: IPv4 or IPv6 address depending on length.
    ComboIp,
}

impl ValueType {
    /// Parses a dictionary type name (case-insensitive; `octets[N]` is handled by the caller).
    pub fn from_name(name: &str) -> Option<ValueType> {
        Some(match name.to_ascii_lowercase().as_str() {
            "string" => ValueType::String,
            "octets" => ValueType::Octets,
            "integer" | "uint32" => ValueType::Integer,
            "integer64" | "uint64" => ValueType::Integer64,
            "signed" | "int32" => ValueType::Signed,
            "date" => ValueType::Date,
            "ipaddr" | "ipv4addr" => ValueType::IpAddr,
            "ipv6addr" => ValueType::Ipv6Addr,
            "ipv6prefix" => ValueType::Ipv6Prefix,
            "ipv4prefix" => ValueType::Ipv4Prefix,
            "ifid" => ValueType::Ifid,
            "byte" | "uint8" => ValueType::Byte,
            "short" | "uint16" => ValueType::Short,
            "ether" => ValueType::Ether,
            "tlv" => ValueType::Tlv,
            "vsa" => ValueType::Vsa,
            "extended" => ValueType::Extended,
            "long-extended" => ValueType::LongExtended,
            "evs" => ValueType::Evs,
            "abinary" => ValueType::Abinary,
            "combo-ip" => ValueType::ComboIp,
            _ => return None,
        })
    }

    /// Whether values of this type are numbers that `VALUE` lines can name.
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            ValueType::Integer
                | ValueType::Integer64
                | ValueType::Signed
                | ValueType::Byte
                | ValueType::Short
                | ValueType::Date
        )
    }
}

/// Attribute encryption (`encrypt=N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Encrypt {
    /// Sent in clear.
    #[default]
    None,
    /// `encrypt=1`: User-Password hiding (RFC 2865 §5.2).
    UserPassword,
    /// `encrypt=2`: Tunnel-Password salted hiding (RFC 2868 §3.5).
    TunnelPassword,
    /// `encrypt=3`: Ascend-Send-Secret.
    AscendSecret,
}

/// Vendor-Specific layout (`format=t,l[,c]`): octets of the type and length fields, and
/// whether a continuation octet follows (WiMAX).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VendorFormat {
    /// Octets of the vendor type field: 1, 2 or 4.
    pub type_size: u8,
    /// Octets of the vendor length field: 0, 1 or 2.
    pub length_size: u8,
    /// Whether a continuation octet follows the length.
    pub continuation: bool,
}

impl Default for VendorFormat {
    fn default() -> Self {
        VendorFormat {
            type_size: 1,
            length_size: 1,
            continuation: false,
        }
    }
}

/// A `VENDOR` definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorDef {
    /// Vendor name as written in the dictionary.
    pub name: String,
    /// SMI private enterprise number.
    pub id: u32,
    /// Vendor-Specific layout.
    pub format: VendorFormat,
}

/// An `ATTRIBUTE` definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttributeDef {
    /// Name as written in the dictionary.
    pub name: String,
    /// Wire position.
    pub id: AttrId,
    /// Value type.
    pub kind: ValueType,
    /// RFC 2868 tag (`has_tag`).
    pub has_tag: bool,
    /// Encryption scheme (`encrypt=N`).
    pub encrypt: Encrypt,
    /// Split over several attributes when longer than 253 octets (`concat`).
    pub concat: bool,
    /// Several values packed in one attribute (`array`), decoded as octets here.
    pub array: bool,
    /// Server-side only, never encoded (`virtual`).
    pub is_virtual: bool,
    /// Fixed length from `octets[N]`.
    pub fixed_len: Option<usize>,
}

#[derive(Clone, Debug, Default)]
struct ValueTable {
    by_value: HashMap<u64, String>,
    by_name: HashMap<String, u64>,
}

/// A set of attribute, value and vendor definitions.
///
/// Lookups by name are case-insensitive (as in FreeRADIUS) and by number exact; both are hash
/// lookups. When a later definition reuses a name or a number it replaces the earlier one for
/// that key, as FreeRADIUS does with `dictionary.compat`.
#[derive(Clone, Debug, Default)]
pub struct Dictionary {
    attrs: Vec<AttributeDef>,
    by_name: HashMap<String, usize>,
    by_id: HashMap<AttrId, usize>,
    vendors: Vec<VendorDef>,
    vendor_by_name: HashMap<String, usize>,
    vendor_by_id: HashMap<u32, usize>,
    values: HashMap<String, ValueTable>,
}

/// The dictionary files shipped in `crates/radius/dictionaries`, by file name.
pub const BUILTIN_FILES: &[(&str, &str)] = &[
    ("dictionary", include_str!("../dictionaries/dictionary")),
    (
        "dictionary.rfc",
        include_str!("../dictionaries/dictionary.rfc"),
    ),
    (
        "dictionary.rfc6929",
        include_str!("../dictionaries/dictionary.rfc6929"),
    ),
    (
        "dictionary.adsl-forum",
        include_str!("../dictionaries/dictionary.adsl-forum"),
    ),
    (
        "dictionary.alcatel-lucent-sr",
        include_str!("../dictionaries/dictionary.alcatel-lucent-sr"),
    ),
];

enum Files<'a> {
    Disk,
    Embedded(&'a [(&'a str, &'a str)]),
    NoIncludes,
}

struct Parser<'a> {
    dict: &'a mut Dictionary,
    files: Files<'a>,
    depth: usize,
}

struct Block {
    vendor: Option<(u32, Option<u8>)>,
    tlv: Vec<AttrId>,
}

fn syntax(file: &str, line: usize, message: impl Into<String>) -> DictionaryError {
    DictionaryError::Syntax {
        file: file.to_string(),
        line,
        message: message.into(),
    }
}

fn parse_number(text: &str) -> Option<u64> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else {
        text.parse().ok()
    }
}

impl Dictionary {
    /// An empty dictionary.
    pub fn new() -> Dictionary {
        Dictionary::default()
    }

    /// The dictionaries shipped with brasa (RFC attributes a BNG/AAA deployment needs, and
    /// Alcatel-Lucent SR vendor 6527), embedded in the binary.
    pub fn builtin() -> Dictionary {
        // The embedded files are checked by the `builtin_dictionary_loads` test; should that
        // ever regress, what was parsed until the error is still returned.
        let mut dict = Dictionary::new();
        let _ = dict.merge_builtin();
        dict
    }

    /// Like [`Dictionary::builtin`], reporting a parse error in the embedded files.
    pub fn try_builtin() -> Result<Dictionary, DictionaryError> {
        let mut dict = Dictionary::new();
        dict.merge_builtin()?;
        Ok(dict)
    }

    fn merge_builtin(&mut self) -> Result<(), DictionaryError> {
        let mut parser = Parser {
            dict: self,
            files: Files::Embedded(BUILTIN_FILES),
            depth: 0,
        };
        parser.parse_file("dictionary", BUILTIN_FILES[0].1)
    }

    /// Loads a dictionary file, following `$INCLUDE` relative to the including file.
    pub fn load_file(path: &Path) -> Result<Dictionary, DictionaryError> {
        let mut dict = Dictionary::new();
        dict.merge_file(path)?;
        Ok(dict)
    }

    /// Adds the definitions of a dictionary file (and its includes) to this dictionary.
    pub fn merge_file(&mut self, path: &Path) -> Result<(), DictionaryError> {
        let mut parser = Parser {
            dict: self,
            files: Files::Disk,
            depth: 0,
        };
        parser.load_path(path)
    }

    /// Parses dictionary text; `name` is used in error messages. `$INCLUDE` is an error here.
    pub fn parse_str(name: &str, text: &str) -> Result<Dictionary, DictionaryError> {
        let mut dict = Dictionary::new();
        dict.merge_str(name, text)?;
        Ok(dict)
    }

    /// Adds the definitions of dictionary text to this dictionary (`$INCLUDE` is an error).
    pub fn merge_str(&mut self, name: &str, text: &str) -> Result<(), DictionaryError> {
        let mut parser = Parser {
            dict: self,
            files: Files::NoIncludes,
            depth: 0,
        };
        parser.parse_file(name, text)
    }

    /// Attribute by name, case-insensitively.
    pub fn attribute(&self, name: &str) -> Option<&AttributeDef> {
        // Keys are stored lower-case; fold short names on the stack to avoid an allocation
        // on every lookup by the usual mixed-case names.
        let mut buf = [0u8; 64];
        let index = match buf.get_mut(..name.len()) {
            Some(folded) => {
                folded.copy_from_slice(name.as_bytes());
                folded.make_ascii_lowercase();
                let key = std::str::from_utf8(folded).ok()?;
                *self.by_name.get(key)?
            }
            None => *self.by_name.get(&name.to_ascii_lowercase())?,
        };
        self.attrs.get(index)
    }

    /// Attribute by wire position.
    pub fn attribute_by_id(&self, id: &AttrId) -> Option<&AttributeDef> {
        self.by_id.get(id).and_then(|&i| self.attrs.get(i))
    }

    /// Vendor by name (case-insensitive) or by decimal number.
    pub fn vendor(&self, name_or_id: &str) -> Option<&VendorDef> {
        if let Ok(id) = name_or_id.parse::<u32>() {
            return self.vendor_by_id(id);
        }
        self.vendor_by_name
            .get(&name_or_id.to_ascii_lowercase())
            .and_then(|&i| self.vendors.get(i))
    }

    /// Vendor by number.
    pub fn vendor_by_id(&self, id: u32) -> Option<&VendorDef> {
        self.vendor_by_id
            .get(&id)
            .and_then(|&i| self.vendors.get(i))
    }

    /// The vendor's Vendor-Specific layout; 1,1 when the vendor is unknown.
    pub fn vendor_format(&self, vendor: u32) -> VendorFormat {
        self.vendor_by_id(vendor)
            .map(|v| v.format)
            .unwrap_or_default()
    }

    /// Name of a `VALUE` of an integer attribute.
    pub fn value_name(&self, attr: &AttributeDef, value: u64) -> Option<&str> {
        self.values
            .get(&attr.name.to_ascii_lowercase())?
            .by_value
            .get(&value)
            .map(String::as_str)
    }

    /// Number of a `VALUE` name (case-insensitive) of an integer attribute.
    pub fn value_by_name(&self, attr: &AttributeDef, name: &str) -> Option<u64> {
        self.values
            .get(&attr.name.to_ascii_lowercase())?
            .by_name
            .get(&name.to_ascii_lowercase())
            .copied()
    }

    /// Every attribute definition currently reachable by name.
    pub fn attributes(&self) -> impl Iterator<Item = &AttributeDef> {
        let mut indexes: Vec<usize> = self.by_name.values().copied().collect();
        indexes.sort_unstable();
        indexes.dedup();
        indexes.into_iter().filter_map(|i| self.attrs.get(i))
    }

    /// Every vendor definition.
    pub fn vendors(&self) -> impl Iterator<Item = &VendorDef> {
        self.vendors.iter()
    }

    /// Adds (or replaces) an attribute definition.
    pub fn add_attribute(&mut self, def: AttributeDef) {
        let index = self.attrs.len();
        self.by_name.insert(def.name.to_ascii_lowercase(), index);
        self.by_id.insert(def.id.clone(), index);
        self.attrs.push(def);
    }

    /// Adds (or replaces) a vendor definition.
    pub fn add_vendor(&mut self, def: VendorDef) {
        let index = self.vendors.len();
        self.vendor_by_name
            .insert(def.name.to_ascii_lowercase(), index);
        self.vendor_by_id.insert(def.id, index);
        self.vendors.push(def);
    }

    /// Adds a `VALUE` name for an attribute (which may be defined later).
    pub fn add_value(&mut self, attr: &str, name: &str, value: u64) {
        let table = self.values.entry(attr.to_ascii_lowercase()).or_default();
        // Later names win for printing, as FreeRADIUS replaces its by-value entry.
        table.by_value.insert(value, name.to_string());
        table.by_name.insert(name.to_ascii_lowercase(), value);
    }
}

const MAX_INCLUDE_DEPTH: usize = 32;

impl Parser<'_> {
    fn load_path(&mut self, path: &Path) -> Result<(), DictionaryError> {
        let text = std::fs::read_to_string(path).map_err(|e| DictionaryError::Io {
            path: path.to_path_buf(),
            source: Arc::new(e),
        })?;
        self.parse_file(&path.display().to_string(), &text)
    }

    fn include(
        &mut self,
        from: &str,
        line: usize,
        target: &str,
        optional: bool,
    ) -> Result<(), DictionaryError> {
        if self.depth >= MAX_INCLUDE_DEPTH {
            return Err(syntax(from, line, "$INCLUDE nested too deeply (loop?)"));
        }
        self.depth += 1;
        let result = match self.files {
            Files::NoIncludes => Err(syntax(
                from,
                line,
                "$INCLUDE is not available when parsing a string (use Dictionary::load_file)",
            )),
            Files::Embedded(files) => match files.iter().find(|(name, _)| *name == target) {
                Some((name, text)) => self.parse_file(name, text),
                None if optional => Ok(()),
                None => Err(syntax(
                    from,
                    line,
                    format!("$INCLUDE {target}: no such built-in file"),
                )),
            },
            Files::Disk => {
                let base = Path::new(from).parent().unwrap_or(Path::new("."));
                let path: PathBuf = base.join(target);
                if optional && !path.exists() {
                    Ok(())
                } else if path.is_dir() {
                    Err(syntax(
                        from,
                        line,
                        format!("$INCLUDE {}: is a directory", path.display()),
                    ))
                } else {
                    self.load_path(&path).map_err(|e| match e {
                        DictionaryError::Io { source, .. } => {
                            syntax(from, line, format!("$INCLUDE {}: {source}", path.display()))
                        }
                        other => other,
                    })
                }
            }
        };
        self.depth -= 1;
        result
    }

    fn parse_file(&mut self, file: &str, text: &str) -> Result<(), DictionaryError> {
        let mut block = Block {
            vendor: None,
            tlv: Vec::new(),
        };
        let mut vendor_name = String::new();
        for (index, raw_line) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw_line.split('#').next().unwrap_or("");
            let tokens: Vec<&str> = content.split_whitespace().collect();
            let Some(&keyword) = tokens.first() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "$INCLUDE" | "$INCLUDE-" => {
                    let [_, target] = tokens[..] else {
                        return Err(syntax(file, line, "expected `$INCLUDE <file>`"));
                    };
                    self.include(file, line, target, keyword.ends_with('-'))?;
                }
                "ATTRIBUTE" => self.attribute(file, line, &tokens, &block)?,
                "VALUE" => {
                    let [_, attr, name, number] = tokens[..] else {
                        return Err(syntax(file, line, "expected `VALUE <attribute> <name> <number>`"));
                    };
                    let value = parse_number(number).ok_or_else(|| {
                        syntax(file, line, format!("VALUE {attr} {name}: expected a number, found {number:?}"))
                    })?;
                    self.dict.add_value(attr, name, value);
                }
                "VENDOR" => self.vendor(file, line, &tokens)?,
                "BEGIN-VENDOR" => {
                    if tokens.len() < 2 || tokens.len() > 3 {
                        return Err(syntax(
                            file,
                            line,
                            "expected `BEGIN-VENDOR <name> [format=Extended-Vendor-Specific-N]`",
                        ));
                    }
                    let vendor = self.dict.vendor(tokens[1]).map(|v| v.id).ok_or_else(|| {
                        syntax(file, line, format!("BEGIN-VENDOR {}: unknown vendor (expected a VENDOR line first)", tokens[1]))
                    })?;
                    let mut ext = None;
                    if let Some(option) = tokens.get(2) {
                        let parent = option
                            .strip_prefix("format=")
                            .or_else(|| option.strip_prefix("parent="))
                            .ok_or_else(|| syntax(file, line, format!("BEGIN-VENDOR: unknown option {option:?}, expected format=Extended-Vendor-Specific-N")))?;
                        let base = self.evs_base(parent).ok_or_else(|| {
                            syntax(file, line, format!("BEGIN-VENDOR: {parent:?} is not an Extended-Vendor-Specific attribute"))
                        })?;
                        ext = Some(base);
                    }
                    block.vendor = Some((vendor, ext));
                    vendor_name = tokens[1].to_string();
                }
                "END-VENDOR" => {
                    match (tokens.get(1), block.vendor) {
                        (Some(name), Some(_)) if name.eq_ignore_ascii_case(&vendor_name) => {}
                        _ => {
                            return Err(syntax(
                                file,
                                line,
                                format!("END-VENDOR {}: expected `END-VENDOR {vendor_name}` closing a BEGIN-VENDOR", tokens.get(1).unwrap_or(&"")),
                            ))
                        }
                    }
                    block.vendor = None;
                }
                "BEGIN-TLV" => {
                    let Some(name) = tokens.get(1) else {
                        return Err(syntax(file, line, "expected `BEGIN-TLV <attribute>`"));
                    };
                    let def = self.dict.attribute(name).filter(|d| d.kind == ValueType::Tlv).ok_or_else(|| {
                        syntax(file, line, format!("BEGIN-TLV {name}: expected a previously defined attribute of type tlv"))
                    })?;
                    block.tlv.push(def.id.clone());
                }
                "END-TLV" => {
                    if block.tlv.pop().is_none() {
                        return Err(syntax(file, line, "END-TLV without BEGIN-TLV"));
                    }
                }
                "FLAGS" | "PROTOCOL" => {}
                other => {
                    return Err(syntax(
                        file,
                        line,
                        format!("unknown keyword {other:?}: expected ATTRIBUTE, VALUE, VENDOR, BEGIN-VENDOR, END-VENDOR, BEGIN-TLV, END-TLV or $INCLUDE"),
                    ))
                }
            }
        }
        if block.vendor.is_some() {
            return Err(syntax(
                file,
                text.lines().count(),
                format!("BEGIN-VENDOR {vendor_name} is never closed (expected END-VENDOR)"),
            ));
        }
        Ok(())
    }

    fn evs_base(&self, name: &str) -> Option<u8> {
        let def = self.dict.attribute(name)?;
        match def.id {
            AttrId::Extended { base, typ: 26 } => Some(base),
            _ => None,
        }
    }

    fn vendor(&mut self, file: &str, line: usize, tokens: &[&str]) -> Result<(), DictionaryError> {
        if tokens.len() < 3 || tokens.len() > 4 {
            return Err(syntax(
                file,
                line,
                "expected `VENDOR <name> <number> [format=t,l]`",
            ));
        }
        let id = parse_number(tokens[2])
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                syntax(
                    file,
                    line,
                    format!(
                        "VENDOR {}: expected a vendor number, found {:?}",
                        tokens[1], tokens[2]
                    ),
                )
            })?;
        let mut format = VendorFormat::default();
        if let Some(option) = tokens.get(3) {
            let spec = option.strip_prefix("format=").ok_or_else(|| {
                syntax(
                    file,
                    line,
                    format!(
                        "VENDOR {}: unknown option {option:?}, expected format=t,l",
                        tokens[1]
                    ),
                )
            })?;
            let parts: Vec<&str> = spec.split(',').collect();
            let bad = || {
                syntax(file, line, format!("VENDOR {}: bad format {spec:?}, expected t,l[,c] with t in 1,2,4 and l in 0,1,2", tokens[1]))
            };
            let (t, l) = match parts[..] {
                [t, l] | [t, l, "c"] => (t, l),
                _ => return Err(bad()),
            };
            format.type_size = match t {
                "1" => 1,
                "2" => 2,
                "4" => 4,
                _ => return Err(bad()),
            };
            format.length_size = match l {
                "0" => 0,
                "1" => 1,
                "2" => 2,
                _ => return Err(bad()),
            };
            format.continuation = parts.len() == 3;
            if format.continuation && (format.type_size, format.length_size) != (1, 1) {
                return Err(bad());
            }
        }
        self.dict.add_vendor(VendorDef {
            name: tokens[1].to_string(),
            id,
            format,
        });
        Ok(())
    }

    fn attribute(
        &mut self,
        file: &str,
        line: usize,
        tokens: &[&str],
        block: &Block,
    ) -> Result<(), DictionaryError> {
        if tokens.len() < 4 || tokens.len() > 5 {
            return Err(syntax(
                file,
                line,
                "expected `ATTRIBUTE <name> <number> <type> [flags]`",
            ));
        }
        let name = tokens[1];
        let (type_name, fixed_len) = match tokens[3].split_once('[') {
            Some((base, rest)) => {
                let n = rest
                    .strip_suffix(']')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| {
                        syntax(
                            file,
                            line,
                            format!(
                                "ATTRIBUTE {name}: bad type {:?}, expected e.g. octets[16]",
                                tokens[3]
                            ),
                        )
                    })?;
                (base, Some(n))
            }
            None => (tokens[3], None),
        };
        let kind = ValueType::from_name(type_name).ok_or_else(|| {
            syntax(file, line, format!("ATTRIBUTE {name}: unknown type {type_name:?}, expected string, octets, integer, integer64, signed, date, ipaddr, ipv6addr, ipv6prefix, ipv4prefix, ifid, byte, short, ether, tlv, vsa, extended, long-extended, evs, abinary or combo-ip"))
        })?;
        let mut def = AttributeDef {
            name: name.to_string(),
            id: AttrId::Internal(0),
            kind,
            has_tag: false,
            encrypt: Encrypt::None,
            concat: false,
            array: false,
            is_virtual: false,
            fixed_len,
        };
        let mut vendor_override = None;
        if let Some(flags) = tokens.get(4) {
            let is_vendor = !flags.contains('=')
                && !flags.contains(',')
                && self.dict.vendor(flags).is_some()
                && !is_flag(flags);
            if is_vendor {
                vendor_override = self.dict.vendor(flags).map(|v| v.id);
            } else {
                for flag in flags.split(',') {
                    match flag {
                        "has_tag" => def.has_tag = true,
                        "encrypt=0" => def.encrypt = Encrypt::None,
                        "encrypt=1" => def.encrypt = Encrypt::UserPassword,
                        "encrypt=2" => def.encrypt = Encrypt::TunnelPassword,
                        "encrypt=3" => def.encrypt = Encrypt::AscendSecret,
                        "concat" => def.concat = true,
                        "array" => def.array = true,
                        "virtual" => def.is_virtual = true,
                        "secret" | "internal" | "abinary" => {}
                        other => {
                            return Err(syntax(
                                file,
                                line,
                                format!("ATTRIBUTE {name}: unknown flag {other:?}, expected has_tag, encrypt=1|2|3, concat, array, virtual, secret or a vendor name"),
                            ))
                        }
                    }
                }
            }
        }
        let components: Vec<u32> = tokens[2]
            .split('.')
            .map(|c| parse_number(c).and_then(|n| u32::try_from(n).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| syntax(file, line, format!("ATTRIBUTE {name}: bad number {:?}, expected a number or an OID like 241.1 or 26.6527.151", tokens[2])))?;
        let vendor = vendor_override.map(|v| (v, None)).or(block.vendor);
        def.id = resolve_number(&components, vendor, block.tlv.last()).map_err(|why| {
            syntax(
                file,
                line,
                format!("ATTRIBUTE {name}: number {} {why}", tokens[2]),
            )
        })?;
        self.dict.add_attribute(def);
        Ok(())
    }
}

fn is_flag(word: &str) -> bool {
    matches!(
        word,
        "has_tag" | "concat" | "array" | "virtual" | "secret" | "internal" | "abinary"
    )
}

fn small(n: u32, what: &'static str) -> Result<u8, &'static str> {
    u8::try_from(n).map_err(|_| what)
}

fn nest(mut id: AttrId, rest: &[u32]) -> Result<AttrId, &'static str> {
    for &c in rest {
        id = AttrId::Tlv {
            parent: Box::new(id),
            typ: small(c, "has a TLV sub-type above 255")?,
        };
    }
    Ok(id)
}

fn resolve_number(
    c: &[u32],
    vendor: Option<(u32, Option<u8>)>,
    tlv: Option<&AttrId>,
) -> Result<AttrId, &'static str> {
    let (&first, rest) = c.split_first().ok_or("is empty")?;
    if let Some(parent) = tlv {
        return nest(parent.clone(), c);
    }
    match vendor {
        Some((vendor, Some(base))) => {
            let typ = small(first, "is above 255 (extended vendor types are one octet)")?;
            nest(AttrId::ExtendedVendor { base, vendor, typ }, rest)
        }
        Some((vendor, None)) => nest(AttrId::Vendor { vendor, typ: first }, rest),
        None => match (first, rest) {
            (26, [vendor, typ, more @ ..]) => nest(
                AttrId::Vendor {
                    vendor: *vendor,
                    typ: *typ,
                },
                more,
            ),
            (241..=246, [26, vendor, typ, more @ ..]) => nest(
                AttrId::ExtendedVendor {
                    base: first as u8,
                    vendor: *vendor,
                    typ: small(*typ, "has an extended vendor type above 255")?,
                },
                more,
            ),
            (241..=246, [typ, more @ ..]) => nest(
                AttrId::Extended {
                    base: first as u8,
                    typ: small(*typ, "has an extended type above 255")?,
                },
                more,
            ),
            (0..=255, _) => nest(AttrId::Standard(first as u8), rest),
            (_, []) => Ok(AttrId::Internal(first)),
            _ => Err("is an internal number (above 255) with sub-types"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_dictionary_loads() {
        let dict = Dictionary::try_builtin().unwrap();
        for (name, vendor, typ) in [
            ("Alc-Sub-Serv-Activate", 6527, 151),
            ("Alc-Sub-Serv-Deactivate", 6527, 152),
            ("Alc-Sub-Serv-Acct-Stats-Type", 6527, 153),
            ("Alc-Sub-Serv-Acct-Interim-Ivl", 6527, 154),
            ("Alc-Dyn-Serv-SAP-Id", 6527, 164),
            ("Alc-Dyn-Serv-Script-Params", 6527, 165),
            ("Alc-Dyn-Serv-Script-Action", 6527, 166),
            ("Alc-Dyn-Serv-Policy", 6527, 167),
            ("Alc-Dyn-Serv-Acct-Interim-Ivl-1", 6527, 168),
            ("Alc-Dyn-Serv-Acct-Interim-Ivl-2", 6527, 169),
            ("Alc-Dyn-Serv-Acct-Stats-Type-1", 6527, 170),
            ("Alc-Dyn-Serv-Acct-Stats-Type-2", 6527, 171),
        ] {
            let def = dict
                .attribute(name)
                .unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(def.id, AttrId::Vendor { vendor, typ }, "{name}");
            assert!(def.has_tag, "{name} is tagged");
        }
        assert!(!dict.attribute("Alc-Sub-Serv-Internal").unwrap().has_tag);
        let def = dict.attribute("alc-client-hardware-addr").unwrap();
        assert_eq!(
            def.id,
            AttrId::Vendor {
                vendor: 6527,
                typ: 27
            }
        );
        let def = dict.attribute("Alc-Ipv6-Address").unwrap();
        assert_eq!(def.kind, ValueType::Ipv6Addr);
        let action = dict.attribute("Alc-Dyn-Serv-Script-Action").unwrap();
        assert_eq!(dict.value_by_name(action, "teardown"), Some(3));
        assert_eq!(
            dict.vendor("6527").unwrap().name,
            "Alcatel-Lucent-Service-Router"
        );
        assert_eq!(dict.attribute("EAP-Message").map(|d| d.concat), Some(true));
    }

    fn error_of(text: &str) -> String {
        Dictionary::parse_str("t.dict", text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_file_line_and_expectation() {
        assert_eq!(
            error_of("ATTRIBUTE A 1 string\nATTRIBUTE B 2 strang\n"),
            "t.dict:2: ATTRIBUTE B: unknown type \"strang\", expected string, octets, integer, integer64, signed, date, ipaddr, ipv6addr, ipv6prefix, ipv4prefix, ifid, byte, short, ether, tlv, vsa, extended, long-extended, evs, abinary or combo-ip"
        );
        assert!(
            error_of("ATTRIBUTE A x string").starts_with("t.dict:1: ATTRIBUTE A: bad number \"x\"")
        );
        assert!(error_of("BEGIN-VENDOR Nope")
            .starts_with("t.dict:1: BEGIN-VENDOR Nope: unknown vendor"));
        assert!(error_of("VENDOR V 9\nBEGIN-VENDOR V\n").contains("never closed"));
        assert!(error_of("$INCLUDE other").starts_with("t.dict:1: $INCLUDE is not available"));
        assert!(error_of("FROB x").starts_with("t.dict:1: unknown keyword \"FROB\""));
        assert!(error_of("VENDOR V 9 format=3,1").contains("bad format"));
        assert!(error_of("ATTRIBUTE A 1 string has_tag,bogus").contains("unknown flag \"bogus\""));
        assert!(error_of("VALUE A b c").contains("expected a number"));
    }

    #[test]
    fn numbers_and_blocks_resolve() {
        let dict = Dictionary::parse_str(
            "t",
            "ATTRIBUTE Ext 245.26 evs\n\
             VENDOR V 99 format=2,2\n\
             VENDOR W 77\n\
             BEGIN-VENDOR V\nATTRIBUTE V-A 300 string\nATTRIBUTE V-T 5 tlv\nEND-VENDOR V\n\
             BEGIN-TLV V-T\nATTRIBUTE V-T-Sub 1 integer\nEND-TLV V-T\n\
             BEGIN-VENDOR W format=Ext\nATTRIBUTE W-E 7 octets\nEND-VENDOR W\n\
             ATTRIBUTE OID-V 26.6527.151 string\n\
             ATTRIBUTE OID-EVS 241.26.6527.9 string\n\
             ATTRIBUTE Internal-Thing 1105 string secret\n\
             ATTRIBUTE Old-Style 3 integer W\n\
             ATTRIBUTE Fixed 70 octets[16] # comment\n",
        )
        .unwrap();
        let id = |n: &str| dict.attribute(n).unwrap().id.clone();
        assert_eq!(
            id("V-A"),
            AttrId::Vendor {
                vendor: 99,
                typ: 300
            }
        );
        assert_eq!(
            id("V-T-Sub"),
            AttrId::Tlv {
                parent: Box::new(AttrId::Vendor { vendor: 99, typ: 5 }),
                typ: 1
            }
        );
        assert_eq!(
            id("W-E"),
            AttrId::ExtendedVendor {
                base: 245,
                vendor: 77,
                typ: 7
            }
        );
        assert_eq!(
            id("OID-V"),
            AttrId::Vendor {
                vendor: 6527,
                typ: 151
            }
        );
        assert_eq!(
            id("OID-EVS"),
            AttrId::ExtendedVendor {
                base: 241,
                vendor: 6527,
                typ: 9
            }
        );
        assert_eq!(id("Internal-Thing"), AttrId::Internal(1105));
        assert_eq!(id("Old-Style"), AttrId::Vendor { vendor: 77, typ: 3 });
        assert_eq!(dict.attribute("Fixed").unwrap().fixed_len, Some(16));
        assert_eq!(dict.vendor("v").unwrap().format.type_size, 2);
        assert_eq!(id("OID-EVS").to_string(), "241.26.6527.9");
    }
}
