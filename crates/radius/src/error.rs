//! Typed errors of the codec, the attribute crypto, the dictionary loader and the pair parser.

use std::path::PathBuf;

/// Why a datagram or a [`crate::Message`] is not a valid RADIUS packet, or an edit of one is refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PacketError {
    /// Fewer than the 20 header octets were received.
    #[error("truncated packet: {len} octets, the header alone needs 20")]
    Truncated {
        /// Octets available.
        len: usize,
    },
    /// The Length field is outside 20..=4096 (RFC 2865 §3).
    #[error("bad Length field {length}: must be within 20..=4096")]
    BadLength {
        /// Value of the Length field.
        length: u16,
    },
    /// The Length field claims more octets than the datagram holds.
    #[error("Length field {length} exceeds the {available} octets received")]
    LengthExceedsBuffer {
        /// Value of the Length field.
        length: u16,
        /// Octets actually received.
        available: usize,
    },
    /// An encoded packet would be longer than 4096 octets.
    #[error("encoded packet would be {length} octets, the maximum is 4096")]
    TooLong {
        /// Length the packet would have.
        length: usize,
    },
    /// An attribute header or value runs past the packet's Length.
    #[error("attribute at offset {offset} runs past the end of the packet")]
    AttributeOverrun {
        /// Offset of the attribute's Type octet from the start of the packet.
        offset: usize,
    },
    /// An attribute's Length octet is below 2 (the TLV header alone).
    #[error("attribute at offset {offset} has a Length below 2")]
    ZeroLengthAttribute {
        /// Offset of the attribute's Type octet from the start of the packet.
        offset: usize,
    },
    /// An attribute value longer than the 253 octets a TLV can carry.
    #[error("attribute {typ} value is {len} octets, at most 253 fit")]
    ValueTooLong {
        /// Attribute type.
        typ: u8,
        /// Value length.
        len: usize,
    },
    /// An edit names an attribute position the message does not have.
    #[error("no attribute at index {index}: the message has {len}")]
    NoAttributeAt {
        /// The index given.
        index: usize,
        /// Attributes in the message.
        len: usize,
    },
    /// A Vendor-Specific sub-attribute does not fit the vendor's format.
    #[error("vendor {vendor} attribute {typ}: {reason}")]
    VendorAttribute {
        /// Vendor (SMI private enterprise) number.
        vendor: u32,
        /// Vendor attribute type.
        typ: u32,
        /// What does not fit.
        reason: &'static str,
    },
}

/// Why an encrypted attribute value cannot be revealed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// The ciphertext length is not what the scheme produces.
    #[error("encrypted value of {len} octets: {expected}")]
    BadLength {
        /// Length received.
        len: usize,
        /// What the scheme requires.
        expected: &'static str,
    },
    /// A Tunnel-Password salt without its mandatory high bit (RFC 2868 §3.5).
    #[error("tunnel password salt {salt:#06x} lacks the high bit")]
    BadSalt {
        /// The salt received.
        salt: u16,
    },
    /// The decrypted Tunnel-Password length octet is larger than the data.
    #[error("decrypted tunnel password claims {claimed} octets, only {available} present")]
    BadInnerLength {
        /// Length octet after decryption.
        claimed: usize,
        /// Octets available after it.
        available: usize,
    },
    /// The plaintext is longer than the scheme can carry.
    #[error("value of {len} octets is too long to encrypt (maximum {max})")]
    TooLong {
        /// Plaintext length.
        len: usize,
        /// Maximum.
        max: usize,
    },
    /// A packet structure problem met while re-encrypting.
    #[error(transparent)]
    Packet(#[from] PacketError),
}

/// A dictionary file that cannot be loaded; `file:line:` first, then what was expected.
#[derive(Debug, thiserror::Error)]
pub enum DictionaryError {
    /// A syntax or consistency error on one line.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// File (or name given to `parse_str`).
        file: String,
        /// 1-based line number.
        line: usize,
        /// What was found and what was expected.
        message: String,
    },
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// Path that failed.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
}

/// Why a text pair (`Name = value`) cannot be parsed or encoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PairError {
    /// The text does not have the `Name op value` shape.
    #[error("cannot parse {text:?}: expected `Name = value` (operators = := += == != -=)")]
    Syntax {
        /// The offending text.
        text: String,
    },
    /// The attribute name is neither in the dictionary nor an `Attr-N` style name.
    #[error("unknown attribute {name:?}")]
    UnknownAttribute {
        /// The name given.
        name: String,
    },
    /// The value does not parse as the attribute's type.
    #[error("attribute {name}: cannot parse {value:?} as {expected}")]
    BadValue {
        /// Attribute name.
        name: String,
        /// The value text.
        value: String,
        /// The expected type or form.
        expected: String,
    },
    /// The attribute cannot be put into a packet.
    #[error("attribute {name}: {reason}")]
    Encode {
        /// Attribute name.
        name: String,
        /// Why.
        reason: String,
    },
}
