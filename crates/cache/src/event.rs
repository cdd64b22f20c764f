use thiserror::Error;

use crate::Millis;

/// The order of concurrent writes: wall-clock milliseconds of the write, then the writing node.
/// Later versions win (last-writer-wins); `node_id` breaks ties so replicas agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version {
    /// Wall-clock milliseconds when the write happened.
    pub timestamp: Millis,
    /// The node that wrote.
    pub node_id: u32,
}

/// One mutation of a cache, as journalled and replicated.
///
/// `Save` and `SetLifetime` both carry the entry's full resulting state (value and absolute
/// expiry), so applying a set of events in any order gives the same result: each key is a
/// last-writer-wins register. `Clear` is a versioned delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheEvent {
    /// The entry was saved (created or replaced).
    Save {
        /// Entry key.
        key: Vec<u8>,
        /// Entry value.
        value: Vec<u8>,
        /// Absolute expiry, wall-clock milliseconds.
        expires_at: Millis,
        /// Write order.
        version: Version,
    },
    /// The entry was removed.
    Clear {
        /// Entry key.
        key: Vec<u8>,
        /// Write order.
        version: Version,
    },
    /// The entry's lifetime was changed; the value is included so that a replica that missed
    /// the save still converges.
    SetLifetime {
        /// Entry key.
        key: Vec<u8>,
        /// Entry value (unchanged by this operation).
        value: Vec<u8>,
        /// New absolute expiry, wall-clock milliseconds.
        expires_at: Millis,
        /// Write order.
        version: Version,
    },
}

/// Where a [`Change`] came from, so that the shell can route it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A script or operator on this node: journal it and send it to the peer.
    Local,
    /// Applied from the peer: journal it, never send it back.
    Peer,
}

/// A recorded mutation, see [`crate::PolicyCache::drain_changes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The mutation.
    pub event: CacheEvent,
    /// Who made it.
    pub origin: Origin,
}

/// Malformed encoded event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The bytes end before the event does.
    #[error("truncated event")]
    Truncated,
    /// Unknown event kind.
    #[error("unknown event kind {0}")]
    UnknownKind(u8),
    /// Bytes left over after the event.
    #[error("{0} trailing bytes after event")]
    TrailingBytes(usize),
    /// A clear carried a value.
    #[error("clear event carries a value")]
    ClearWithValue,
}

const KIND_SAVE: u8 = 1;
const KIND_CLEAR: u8 = 2;
const KIND_SET_LIFETIME: u8 = 3;

/// Fixed part of an encoded event: kind, timestamp, node, expiry, key length, value length.
pub(crate) const FIXED_LEN: usize = 1 + 8 + 4 + 8 + 4 + 4;

impl CacheEvent {
    /// The key this event is about.
    pub fn key(&self) -> &[u8] {
        match self {
            CacheEvent::Save { key, .. }
            | CacheEvent::Clear { key, .. }
            | CacheEvent::SetLifetime { key, .. } => key,
        }
    }

    /// The event's version.
    pub fn version(&self) -> Version {
        match self {
            CacheEvent::Save { version, .. }
            | CacheEvent::Clear { version, .. }
            | CacheEvent::SetLifetime { version, .. } => *version,
        }
    }

    /// The absolute expiry the event sets, `None` for a clear.
    pub fn expires_at(&self) -> Option<Millis> {
        match self {
            CacheEvent::Save { expires_at, .. } | CacheEvent::SetLifetime { expires_at, .. } => {
                Some(*expires_at)
            }
            CacheEvent::Clear { .. } => None,
        }
    }

    /// Whether the event is worth sending to a peer whose minimum lifetime is `min_ms`:
    /// clears always are; saves only if the entry lives at least `min_ms` more after `now`.
    pub fn outlives(&self, now: Millis, min_ms: u64) -> bool {
        match self.expires_at() {
            None => true,
            Some(at) => at > now && at - now >= min_ms,
        }
    }

    /// Bytes of [`CacheEvent::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        let value_len = match self {
            CacheEvent::Save { value, .. } | CacheEvent::SetLifetime { value, .. } => value.len(),
            CacheEvent::Clear { .. } => 0,
        };
        FIXED_LEN + self.key().len() + value_len
    }

    /// Appends the event's binary form (little-endian fixed header, then key, then value).
    ///
    /// Key and value lengths must fit in `u32`; the cache's `entry-size` limit guarantees it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (kind, key, value, expires_at, version): (u8, &[u8], &[u8], u64, Version) = match self {
            CacheEvent::Save {
                key,
                value,
                expires_at,
                version,
            } => (KIND_SAVE, key, value, *expires_at, *version),
            CacheEvent::Clear { key, version } => (KIND_CLEAR, key, &[], 0, *version),
            CacheEvent::SetLifetime {
                key,
                value,
                expires_at,
                version,
            } => (KIND_SET_LIFETIME, key, value, *expires_at, *version),
        };
        out.reserve(FIXED_LEN + key.len() + value.len());
        out.push(kind);
        out.extend_from_slice(&version.timestamp.to_le_bytes());
        out.extend_from_slice(&version.node_id.to_le_bytes());
        out.extend_from_slice(&expires_at.to_le_bytes());
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(value);
    }

    /// Parses exactly one encoded event; never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<CacheEvent, DecodeError> {
        let fixed = bytes.get(..FIXED_LEN).ok_or(DecodeError::Truncated)?;
        let kind = fixed[0];
        let timestamp = u64::from_le_bytes(array(&fixed[1..9]));
        let node_id = u32::from_le_bytes(array(&fixed[9..13]));
        let expires_at = u64::from_le_bytes(array(&fixed[13..21]));
        let key_len = u32::from_le_bytes(array(&fixed[21..25])) as usize;
        let value_len = u32::from_le_bytes(array(&fixed[25..29])) as usize;
        let rest = &bytes[FIXED_LEN..];
        let key = rest.get(..key_len).ok_or(DecodeError::Truncated)?;
        let value = rest
            .get(key_len..key_len.saturating_add(value_len))
            .ok_or(DecodeError::Truncated)?;
        let trailing = rest.len() - key_len - value_len;
        if trailing != 0 {
            return Err(DecodeError::TrailingBytes(trailing));
        }
        let version = Version { timestamp, node_id };
        match kind {
            KIND_SAVE => Ok(CacheEvent::Save {
                key: key.to_vec(),
                value: value.to_vec(),
                expires_at,
                version,
            }),
            KIND_CLEAR if value_len != 0 => Err(DecodeError::ClearWithValue),
            KIND_CLEAR => Ok(CacheEvent::Clear {
                key: key.to_vec(),
                version,
            }),
            KIND_SET_LIFETIME => Ok(CacheEvent::SetLifetime {
                key: key.to_vec(),
                value: value.to_vec(),
                expires_at,
                version,
            }),
            other => Err(DecodeError::UnknownKind(other)),
        }
    }
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_every_truncation_is_refused() {
        let version = Version {
            timestamp: 1_700_000_000_123,
            node_id: 7,
        };
        let events = [
            CacheEvent::Save {
                key: b"00:20:fc:1e:cd:53".to_vec(),
                value: b"\x03\x07\x08\x09Class-1".to_vec(),
                expires_at: 1_700_000_900_000,
                version,
            },
            CacheEvent::Clear {
                key: b"k".to_vec(),
                version,
            },
            CacheEvent::SetLifetime {
                key: b"k".to_vec(),
                value: Vec::new(),
                expires_at: 5,
                version,
            },
        ];
        for event in events {
            let mut buf = Vec::new();
            event.encode(&mut buf);
            assert_eq!(buf.len(), event.encoded_len());
            assert_eq!(CacheEvent::decode(&buf), Ok(event.clone()));
            for cut in 0..buf.len() {
                assert!(CacheEvent::decode(&buf[..cut]).is_err(), "cut at {cut}");
            }
            buf.push(0);
            assert_eq!(CacheEvent::decode(&buf), Err(DecodeError::TrailingBytes(1)));
        }
    }

    #[test]
    fn unknown_kind_is_refused() {
        let mut buf = Vec::new();
        CacheEvent::Clear {
            key: b"k".to_vec(),
            version: Version::default(),
        }
        .encode(&mut buf);
        buf[0] = 9;
        assert_eq!(CacheEvent::decode(&buf), Err(DecodeError::UnknownKind(9)));
    }
}
