//! How a python-policy's cache is laid out in Redis, and the Lua scripts that change it.
//!
//! Per policy `P`, with the configured prefix (`brasa:pc:` by default):
//!
//! * `PREFIX{P}:e:KEY` — one string per entry: the value as the script saved it, with the
//!   entry's expiry as the Redis key's own (`PXAT`), so Redis reclaims it and `PTTL` is the
//!   Time Left of the dump;
//! * `PREFIX{P}:i` — a sorted set of the entry keys scored by their expiry (milliseconds of
//!   the Redis server's clock): what `max-entries` counts, and what the dump walks.
//!
//! `{P}` is a Cluster hash tag: every key of a policy hashes to one slot, so the scripts
//! below, which touch the index and an entry together, are atomic in a Cluster too. Expiry
//! times are taken from the Redis server's clock (`TIME` inside the scripts), never from a
//! node's: two brasa nodes with skewed clocks agree on every lifetime.
//!
//! Index members of expired entries are removed lazily: by a save of a new key before it
//! counts, and by the periodic sweep.

use redis::Script;

/// The Redis keys of one python-policy's cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyKeys {
    index: Vec<u8>,
    entry_prefix: Vec<u8>,
}

impl PolicyKeys {
    /// The keys of `policy` under `prefix`.
    pub fn new(prefix: &str, policy: &str) -> PolicyKeys {
        let base = format!("{prefix}{{{policy}}}");
        PolicyKeys {
            index: format!("{base}:i").into_bytes(),
            entry_prefix: format!("{base}:e:").into_bytes(),
        }
    }

    /// The sorted set of entry keys scored by expiry.
    pub fn index(&self) -> &[u8] {
        &self.index
    }

    /// The Redis key holding the value of cache entry `key`.
    pub fn entry(&self, key: &[u8]) -> Vec<u8> {
        let mut entry = Vec::with_capacity(self.entry_prefix.len() + key.len());
        entry.extend_from_slice(&self.entry_prefix);
        entry.extend_from_slice(key);
        entry
    }
}

/// The Redis server's clock in milliseconds, as every script reads it.
const NOW: &str = "local t = redis.call('TIME')\n\
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

/// `cache.save`: KEYS = index, entry; ARGV = key, value, entry-size, max-entries, lifetime ms.
/// Returns `{0, 0}` saved, `{1, size}` over entry-size, `{2, 0}` max-entries reached. The
/// count and the write are one atomic step, so nodes saving at once cannot overshoot.
const SAVE: &str = "local size = #ARGV[1] + #ARGV[2]\n\
if size > tonumber(ARGV[3]) then return {1, size} end\n\
NOW\
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then\n\
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))\n\
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return {2, 0} end\n\
end\n\
local expires = string.format('%d', now + tonumber(ARGV[5]))\n\
redis.call('SET', KEYS[2], ARGV[2], 'PXAT', expires)\n\
redis.call('ZADD', KEYS[1], expires, ARGV[1])\n\
return {0, 0}\n";

/// `cache.clear`: KEYS = index, entry; ARGV = key. Returns 1 if a live entry was removed.
const CLEAR: &str = "redis.call('ZREM', KEYS[1], ARGV[1])\n\
return redis.call('DEL', KEYS[2])\n";

/// `cache.set_lifetime`: KEYS = index, entry; ARGV = key, lifetime ms (already capped).
/// Returns 0 when there is no live entry, 1 when set; a zero lifetime removes the entry.
const SET_LIFETIME: &str = "NOW\
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end\n\
if tonumber(ARGV[2]) == 0 then\n\
  redis.call('DEL', KEYS[2])\n\
  redis.call('ZREM', KEYS[1], ARGV[1])\n\
  return 1\n\
end\n\
local expires = string.format('%d', now + tonumber(ARGV[2]))\n\
redis.call('PEXPIREAT', KEYS[2], expires)\n\
redis.call('ZADD', KEYS[1], expires, ARGV[1])\n\
return 1\n";

/// Live entries of a policy: KEYS = index. Read-only.
const COUNT: &str = "NOW\
return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%d', now), '+inf')\n";

/// Removes index members of expired entries: KEYS = index. Returns how many.
const SWEEP: &str = "NOW\
return redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))\n";

/// The shebang of a script that writes (refused when Redis is out of memory).
const WRITES: &str = "#!lua";
/// The shebang of a read-only script.
const READS: &str = "#!lua flags=no-writes";

/// The scripts, loaded once (`EVALSHA`, falling back to `EVAL` when the server lacks one).
///
/// Each starts with a Redis 7 shebang: a writing script is then refused as a whole when
/// Redis is over its `maxmemory` (an `OOM` error: the shared caches' global memory bound),
/// where a script without one would be let through; the count is flagged read-only.
pub struct Scripts {
    /// See [`SAVE`].
    pub save: Script,
    /// See [`CLEAR`].
    pub clear: Script,
    /// See [`SET_LIFETIME`].
    pub set_lifetime: Script,
    /// See [`COUNT`].
    pub count: Script,
    /// See [`SWEEP`].
    pub sweep: Script,
}

impl Scripts {
    /// Compiles the script texts (hashing them; nothing is sent yet).
    pub fn new() -> Scripts {
        let script = |shebang: &str, text: &str| {
            Script::new(&format!("{shebang}\n{}", text.replace("NOW", NOW)))
        };
        Scripts {
            save: script(WRITES, SAVE),
            clear: script(WRITES, CLEAR),
            set_lifetime: script(WRITES, SET_LIFETIME),
            count: script(READS, COUNT),
            sweep: script(WRITES, SWEEP),
        }
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts::new()
    }
}

/// What the save script answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveReply {
    /// Stored.
    Saved,
    /// Key plus value of this many bytes is over `entry-size`.
    TooLarge(usize),
    /// `max-entries` live entries already.
    Full,
}

impl SaveReply {
    /// Decodes the script's `{code, size}`; `None` for anything else.
    pub fn decode(reply: &[i64]) -> Option<SaveReply> {
        match reply {
            [0, _] => Some(SaveReply::Saved),
            [1, size] => usize::try_from(*size).ok().map(SaveReply::TooLarge),
            [2, _] => Some(SaveReply::Full),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_policy_carries_its_hash_tag() {
        let keys = PolicyKeys::new("brasa:pc:", "python-policy-1");
        assert_eq!(keys.index(), b"brasa:pc:{python-policy-1}:i");
        assert_eq!(
            keys.entry(b"00:20:fc:1e:cd:53"),
            b"brasa:pc:{python-policy-1}:e:00:20:fc:1e:cd:53"
        );
        // Binary keys are kept as they are.
        assert_eq!(
            keys.entry(&[0, 0xff]),
            b"brasa:pc:{python-policy-1}:e:\x00\xff"
        );
    }

    #[test]
    fn save_replies_decode() {
        assert_eq!(SaveReply::decode(&[0, 0]), Some(SaveReply::Saved));
        assert_eq!(
            SaveReply::decode(&[1, 2000]),
            Some(SaveReply::TooLarge(2000))
        );
        assert_eq!(SaveReply::decode(&[2, 0]), Some(SaveReply::Full));
        assert_eq!(SaveReply::decode(&[1, -1]), None);
        assert_eq!(SaveReply::decode(&[3, 0]), None);
        assert_eq!(SaveReply::decode(&[]), None);
    }
}
