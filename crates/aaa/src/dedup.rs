//! Duplicate detection with a reply cache (RFC 5080 §2.2.2).
//!
//! A request is identified by (source address and port, code, Identifier, Request Authenticator).
//! While it is being worked on, retransmissions are absorbed; once answered, the cached reply is
//! sent again for the rest of the duplicate window, so a retransmitted request never runs a second
//! time (a second accounting record, a second upstream transaction).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The identity of a request from a NAS.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RequestKey {
    pub listener: usize,
    pub from: SocketAddr,
    pub code: u8,
    pub identifier: u8,
    pub authenticator: [u8; 16],
}

/// What the cache knows about a request.
#[derive(Debug)]
pub(crate) enum Seen<'a> {
    /// Never seen (or expired): handle it.
    New,
    /// Being worked on: absorb the retransmission.
    InProgress,
    /// Answered: send this reply again.
    Answered(&'a [u8]),
}

#[derive(Debug)]
enum Entry {
    InProgress,
    Answered(Vec<u8>),
}

/// Requests seen within the window, expired in arrival order.
#[derive(Debug)]
pub(crate) struct ReplyCache {
    window: Duration,
    /// Entries carry the sequence number of their insertion, so that a stale queue slot (the key
    /// was forgotten and inserted again) never expires the newer entry.
    entries: HashMap<RequestKey, (u64, Entry), foldhash::fast::RandomState>,
    order: VecDeque<(Instant, u64, RequestKey)>,
    next_sequence: u64,
}

impl ReplyCache {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            entries: HashMap::default(),
            order: VecDeque::new(),
            next_sequence: 0,
        }
    }

    /// Looks `key` up, registering it as in progress when it is new.
    pub fn check(&mut self, now: Instant, key: &RequestKey) -> Seen<'_> {
        self.expire(now);
        let sequence = self.next_sequence;
        match self.entries.entry(key.clone()) {
            std::collections::hash_map::Entry::Occupied(known) => match &known.into_mut().1 {
                Entry::Answered(reply) => Seen::Answered(reply),
                Entry::InProgress => Seen::InProgress,
            },
            std::collections::hash_map::Entry::Vacant(new) => {
                new.insert((sequence, Entry::InProgress));
                self.next_sequence += 1;
                self.order.push_back((now, sequence, key.clone()));
                Seen::New
            }
        }
    }

    /// Records the reply sent for `key`.
    pub fn answer(&mut self, key: &RequestKey, reply: &[u8]) {
        if let Some((_, entry)) = self.entries.get_mut(key) {
            *entry = Entry::Answered(reply.to_vec());
        }
    }

    /// Forgets `key` (the request was dropped or timed out: a retransmission may try again).
    pub fn forget(&mut self, key: &RequestKey) {
        self.entries.remove(key);
    }

    /// Number of requests remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((inserted, _, _)) = self.order.front() {
            if now.saturating_duration_since(*inserted) < self.window {
                break;
            }
            if let Some((_, sequence, key)) = self.order.pop_front() {
                if self.entries.get(&key).is_some_and(|(s, _)| *s == sequence) {
                    self.entries.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u8) -> RequestKey {
        RequestKey {
            listener: 0,
            from: "127.0.0.1:5000".parse().unwrap(),
            code: 1,
            identifier: id,
            authenticator: [id; 16],
        }
    }

    #[test]
    fn absorbs_then_replays_then_expires() {
        let start = Instant::now();
        let mut cache = ReplyCache::new(Duration::from_secs(5));
        assert!(matches!(cache.check(start, &key(1)), Seen::New));
        assert!(matches!(cache.check(start, &key(1)), Seen::InProgress));
        cache.answer(&key(1), b"reply");
        assert!(
            matches!(cache.check(start + Duration::from_secs(4), &key(1)), Seen::Answered(r) if r == b"reply")
        );
        assert!(matches!(cache.check(start, &key(2)), Seen::New));
        assert!(matches!(
            cache.check(start + Duration::from_secs(6), &key(1)),
            Seen::New
        ));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn forgotten_requests_run_again() {
        let now = Instant::now();
        let mut cache = ReplyCache::new(Duration::from_secs(5));
        assert!(matches!(cache.check(now, &key(9)), Seen::New));
        cache.forget(&key(9));
        assert!(matches!(cache.check(now, &key(9)), Seen::New));
    }
}
