//! Sans-IO RADIUS codec (RFC 2865/2866/5176/3579/6929) with FreeRADIUS dictionaries.
//!
//! * [`wire::Packet`] is a zero-copy, never-panicking view over a datagram;
//! * [`Packet`] is the owned form the AAA engine edits (attributes in wire order);
//! * [`auth`] computes and checks authenticators and hides attribute values;
//! * [`Dictionary`] reads FreeRADIUS dictionary files as they are and turns attributes into
//!   typed [`Pair`]s and back (radclient text syntax included).
//!
//! Nothing here opens sockets, reads clocks or spawns threads; the only I/O is reading
//! dictionary files when asked to.
#![warn(missing_docs)]

pub mod auth;
pub mod dict;
pub mod error;
pub mod packet;
pub mod pair;
pub mod wire;

pub use dict::{AttrId, AttributeDef, Dictionary, Encrypt, ValueType, VendorDef, VendorFormat};
pub use error::{CryptoError, DictionaryError, PacketError, PairError};
pub use packet::{Code, Packet, RawAttribute};
pub use pair::{Op, Pair, Value};
