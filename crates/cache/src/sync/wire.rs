//! [`CacheEvent`]s to and from their protobuf form.

use super::proto;
use crate::{CacheEvent, Version};

/// The wire form of `event` for the cache tagged `tag`.
pub fn event_to_proto(tag: &str, event: &CacheEvent) -> proto::CacheEvent {
    let (kind, value, expires_at) = match event {
        CacheEvent::Save {
            value, expires_at, ..
        } => (proto::EventKind::Save, value.clone(), *expires_at),
        CacheEvent::SetLifetime {
            value, expires_at, ..
        } => (proto::EventKind::SetLifetime, value.clone(), *expires_at),
        CacheEvent::Clear { .. } => (proto::EventKind::Clear, Vec::new(), 0),
    };
    let version = event.version();
    proto::CacheEvent {
        sync_tag: tag.to_owned(),
        kind: kind as i32,
        key: event.key().to_vec(),
        value,
        expires_at_ms: expires_at,
        version_timestamp_ms: version.timestamp,
        version_node_id: version.node_id,
    }
}

/// The event a wire event describes; `None` for an unknown kind or a clear with a value.
pub fn event_from_proto(event: proto::CacheEvent) -> Option<CacheEvent> {
    let version = Version {
        timestamp: event.version_timestamp_ms,
        node_id: event.version_node_id,
    };
    match proto::EventKind::try_from(event.kind).ok()? {
        proto::EventKind::Save => Some(CacheEvent::Save {
            key: event.key,
            value: event.value,
            expires_at: event.expires_at_ms,
            version,
        }),
        proto::EventKind::SetLifetime => Some(CacheEvent::SetLifetime {
            key: event.key,
            value: event.value,
            expires_at: event.expires_at_ms,
            version,
        }),
        proto::EventKind::Clear if event.value.is_empty() => Some(CacheEvent::Clear {
            key: event.key,
            version,
        }),
        proto::EventKind::Clear | proto::EventKind::Unspecified => None,
    }
}
