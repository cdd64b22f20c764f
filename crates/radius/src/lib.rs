//! Sans-IO RADIUS codec (RFC 2865/2866/5176/3579/6929) with FreeRADIUS dictionaries.
//!
//! * [`wire::Packet`] is a zero-copy, never-panicking view over a datagram;
//! * [`Message`] is the owned form the AAA engine and scripts edit: the attributes in one buffer,
//!   in wire order;
//! * [`auth`] computes and checks authenticators and hides attribute values;
//! * [`Dictionary`] reads FreeRADIUS dictionary files as they are and turns attributes into
//!   typed [`Pair`]s and back (radclient text syntax included).
//!
//! Nothing here opens sockets, reads clocks or spawns threads; the only I/O is reading
//! dictionary files when asked to.
//!
//! ```
//! use brasa_radius::{attr, auth, Code, Dictionary, Message};
//!
//! let dict = Dictionary::builtin();
//! let secret = b"testing123";
//! let request_authenticator = [7u8; 16]; // random in real life
//!
//! // Build an Access-Accept from radclient-style text and sign it.
//! let mut accept = Message::new(Code::AccessAccept, 42);
//! for pair in dict.parse_pairs("Class = \"gold\", Alc-SLA-Prof-Str = \"100M\", Tunnel-Type:1 = VLAN")? {
//!     dict.add_pair(&mut accept, &pair, secret, &request_authenticator)?;
//! }
//! accept.add(attr::MESSAGE_AUTHENTICATOR, [0u8; 16])?;
//! let mut bytes = accept.encode()?;
//! auth::fill_message_authenticator(&mut bytes, &request_authenticator, secret);
//! auth::sign_response(&mut bytes, &request_authenticator, secret);
//!
//! // The receiving side checks and decodes it.
//! assert!(auth::verify_response(&bytes, &request_authenticator, secret));
//! let decoded = Message::decode(&bytes)?;
//! assert_eq!(decoded.get_vsa(&dict, 6527, 13).as_deref(), Some(&b"100M"[..]));
//! let text: Vec<String> = dict.decode_pairs(&decoded, None).iter().map(|p| p.to_text(&dict)).collect();
//! assert_eq!(text[..3], ["Class = 0x676f6c64", "Alc-SLA-Prof-Str = \"100M\"", "Tunnel-Type:1 = VLAN"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod acct;
pub mod attr;
pub mod auth;
pub mod coa;
pub mod code;
pub mod dict;
pub mod error;
pub mod message;
pub mod pair;
pub mod vsa;
pub mod wire;

pub use attr::{AcctStatusType, AcctTerminateCause, ErrorCause};
pub use code::Code;
pub use dict::{AttrId, AttributeDef, Dictionary, Encrypt, ValueType, VendorDef, VendorFormat};
pub use error::{CryptoError, DictionaryError, PacketError, PairError};
pub use message::{Attributes, Message};
pub use pair::{Op, Pair, PlainValue, Value};
pub use wire::RawAttr;
