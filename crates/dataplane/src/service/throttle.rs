//! The data trigger throttle of capture SAPs (Nokia SR OS dynamic data services, "Control
//! plane protection", 1: "capture-sap data trigger packet throttling (frames dropped at
//! IOM)"): per (capture SAP, outer tag, inner tag) at most one frame goes to the control plane
//! while that data trigger is in progress; the others are dropped here and counted as the
//! SAP's "Forwarding Engine Stats Dropped".
//!
//! The marks live in one fixed table of atomic words shared by every worker and by the control
//! side, which releases a mark when its trigger leaves progress. Nothing on the packet path
//! locks or allocates.
//!
//! * A word holds the key (SAP slot, outer VLAN id, inner VLAN id) and the second, on the
//!   pipeline's clock, the mark was set; 0 is a free word.
//! * Keys hash (seeded) to a bucket of [`BUCKET`] words, one cache line, and stay in it.
//! * A mark older than the hold time no longer throttles: if the control side never answers
//!   for a key (it crashed, or the frame was lost on the way), the key sends one frame per
//!   hold time instead of none forever. The next frame of it refreshes the mark.
//! * When the bucket of a new key has no free or stale word, the frame is not throttled: it
//!   goes to the control plane, which drops it when its trigger is already in progress and
//!   rate-limits all of them. Such frames are counted ([`TriggerThrottle::overflows`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Words of one bucket: 8 × 8 bytes, one cache line.
pub const BUCKET: usize = 8;

/// Marks the table holds unless configured (512 KiB).
pub const DEFAULT_THROTTLE_ENTRIES: usize = 1 << 16;

/// How long a mark throttles its key when the control side does not release it, unless
/// configured: longer than an authentication with its retries plus the default 30 s setup
/// timeout.
pub const DEFAULT_THROTTLE_HOLD_SECS: u32 = 120;

/// SAP slots above this are not throttled (the key has 20 bits for the slot).
const MAX_SLOT: u32 = (1 << 20) - 2;
const KEY_BITS: u32 = 44;
const KEY_MASK: u64 = (1 << KEY_BITS) - 1;
/// Seconds are kept modulo 2^20 (12 days): ages are computed with wrapping arithmetic.
const TIME_MASK: u64 = (1 << (64 - KEY_BITS)) - 1;

/// The throttle key of one punted frame: its capture SAP's slot and its VLAN ids. The control
/// side hands it back to [`TriggerThrottle::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ThrottleKey(u64);

impl ThrottleKey {
    /// The key of a frame with VLAN ids `outer` and `inner` (0 = none) on the SAP in `slot`;
    /// `None` for a slot too large to be throttled.
    pub fn new(slot: u32, outer: u16, inner: u16) -> Option<ThrottleKey> {
        (slot <= MAX_SLOT).then(|| {
            ThrottleKey(
                (u64::from(slot + 1) << 24)
                    | (u64::from(outer & 0xfff) << 12)
                    | u64::from(inner & 0xfff),
            )
        })
    }

    /// The SAP slot the key belongs to.
    pub fn slot(self) -> u32 {
        (self.0 >> 24) as u32 - 1
    }
}

/// What [`TriggerThrottle::admit`] decided for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The key was not marked (or its mark was stale): it is marked now; punt the frame.
    First,
    /// A trigger of this key is in progress: drop the frame.
    Throttled,
    /// The key's bucket is full of live marks: punt the frame unmarked.
    Overflow,
}

/// The marks of data triggers in progress (see the module docs).
#[derive(Debug)]
pub struct TriggerThrottle {
    words: Box<[AtomicU64]>,
    bucket_mask: usize,
    seed: u64,
    hold_secs: u64,
    overflows: AtomicU64,
}

fn mix(mut x: u64) -> u64 {
    // The splitmix64 finaliser: every key bit reaches every bucket-index bit.
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl TriggerThrottle {
    /// A table of at least `entries` marks (rounded up to whole buckets, a power of two of
    /// them), whose marks hold `hold_secs` seconds; `seed` keys the bucket hash so that tags
    /// chosen by a customer cannot aim at one bucket. The memory is zeroed pages from the
    /// allocator: untouched buckets cost nothing resident.
    pub fn new(entries: usize, hold_secs: u32, seed: u64) -> TriggerThrottle {
        let buckets = entries.div_ceil(BUCKET).max(1).next_power_of_two();
        TriggerThrottle {
            words: (0..buckets * BUCKET).map(|_| AtomicU64::new(0)).collect(),
            bucket_mask: buckets - 1,
            seed,
            hold_secs: u64::from(hold_secs.max(1)),
            overflows: AtomicU64::new(0),
        }
    }

    /// Marks the table can hold.
    pub fn capacity(&self) -> usize {
        self.words.len()
    }

    /// Frames punted unmarked because their bucket was full.
    pub fn overflows(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }

    fn bucket(&self, key: ThrottleKey) -> &[AtomicU64] {
        let start = (mix(key.0 ^ self.seed) as usize & self.bucket_mask) * BUCKET;
        &self.words[start..start + BUCKET]
    }

    fn live(&self, word: u64, now_s: u64) -> bool {
        word != 0 && ((now_s.wrapping_sub(word >> KEY_BITS)) & TIME_MASK) < self.hold_secs
    }

    /// Decides for a frame of `key` arriving at `now_ns` (the pipeline's clock) and marks the
    /// key when the frame is the first.
    pub fn admit(&self, key: ThrottleKey, now_ns: u64) -> Admission {
        let now_s = (now_ns / 1_000_000_000) & TIME_MASK;
        let marked = key.0 | (now_s << KEY_BITS);
        let bucket = self.bucket(key);
        // A lost race (another worker, or a release) re-reads the bucket; two passes settle
        // every race but a pathological one, which punts the frame like an overflow.
        for _ in 0..2 {
            let mut free = None;
            let mut settled = true;
            for word in bucket {
                let seen = word.load(Ordering::Acquire);
                if seen & KEY_MASK == key.0 {
                    if self.live(seen, now_s) {
                        return Admission::Throttled;
                    }
                    // Stale: this frame goes through and renews the mark.
                    match word.compare_exchange(seen, marked, Ordering::AcqRel, Ordering::Acquire) {
                        Ok(_) => return Admission::First,
                        Err(_) => {
                            settled = false;
                            break;
                        }
                    }
                }
                if free.is_none() && !self.live(seen, now_s) {
                    free = Some((word, seen));
                }
            }
            if !settled {
                continue;
            }
            let Some((word, seen)) = free else {
                break;
            };
            if word
                .compare_exchange(seen, marked, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Admission::First;
            }
        }
        self.overflows.fetch_add(1, Ordering::Relaxed);
        Admission::Overflow
    }

    /// Releases the mark of `key` (its trigger left progress, or the control plane dropped its
    /// frame): its next frame goes to the control plane. Releasing an unmarked key does nothing.
    /// The whole bucket is scanned: a race of two workers with a release in between (the same
    /// word freed and taken again) can leave a key marked twice.
    pub fn release(&self, key: ThrottleKey) {
        for word in self.bucket(key) {
            let mut seen = word.load(Ordering::Acquire);
            while seen & KEY_MASK == key.0 {
                match word.compare_exchange(seen, 0, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => break,
                    // A worker renewed it meanwhile: release the renewed mark.
                    Err(now) => seen = now,
                }
            }
        }
    }

    /// Releases every mark of the SAP in `slot` (the slot now holds another SAP, or none).
    pub fn release_slot(&self, slot: u32) {
        let Some(probe) = ThrottleKey::new(slot, 0, 0) else {
            return;
        };
        let slot_bits = probe.0 >> 24;
        for word in self.words.iter() {
            let seen = word.load(Ordering::Acquire);
            if seen != 0 && (seen & KEY_MASK) >> 24 == slot_bits {
                let _ = word.compare_exchange(seen, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }

    /// Marks held now, stale ones included (for tests and `show`).
    pub fn marked(&self) -> usize {
        self.words
            .iter()
            .filter(|w| w.load(Ordering::Relaxed) != 0)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    const SEC: u64 = 1_000_000_000;

    fn key(slot: u32, outer: u16, inner: u16) -> ThrottleKey {
        ThrottleKey::new(slot, outer, inner).expect("small slot")
    }

    #[test]
    fn first_frame_marks_later_frames_are_throttled_until_released() {
        let t = TriggerThrottle::new(1024, 60, 7);
        let k = key(3, 1214, 101);
        assert_eq!(t.admit(k, 5 * SEC), Admission::First);
        assert_eq!(t.admit(k, 5 * SEC), Admission::Throttled);
        assert_eq!(t.admit(key(3, 1214, 102), 5 * SEC), Admission::First);
        assert_eq!(t.admit(key(4, 1214, 101), 5 * SEC), Admission::First);
        t.release(k);
        assert_eq!(t.admit(k, 6 * SEC), Admission::First);
        assert_eq!(t.admit(k, 6 * SEC), Admission::Throttled);
        assert_eq!(k.slot(), 3);
    }

    #[test]
    fn a_mark_nobody_releases_lets_one_frame_through_per_hold_time() {
        let t = TriggerThrottle::new(1024, 60, 7);
        let k = key(0, 10, 0);
        assert_eq!(t.admit(k, 0), Admission::First);
        assert_eq!(t.admit(k, 59 * SEC), Admission::Throttled);
        assert_eq!(t.admit(k, 60 * SEC), Admission::First);
        assert_eq!(t.admit(k, 61 * SEC), Admission::Throttled);
        assert_eq!(t.marked(), 1, "the renewed mark reuses its word");
    }

    #[test]
    fn a_full_bucket_punts_unmarked_and_counts_it() {
        // One bucket: the ninth live key has no word.
        let t = TriggerThrottle::new(BUCKET, 60, 7);
        for inner in 0..BUCKET as u16 {
            assert_eq!(t.admit(key(1, 1, inner), 0), Admission::First);
        }
        let ninth = key(1, 1, 99);
        assert_eq!(t.admit(ninth, 0), Admission::Overflow);
        assert_eq!(t.admit(ninth, 0), Admission::Overflow);
        assert_eq!(t.overflows(), 2);
        // A release frees a word; stale marks are reused too.
        t.release(key(1, 1, 0));
        assert_eq!(t.admit(ninth, 0), Admission::First);
        assert_eq!(t.admit(key(1, 2, 2), 61 * SEC), Admission::First);
    }

    #[test]
    fn release_slot_forgets_only_that_sap() {
        let t = TriggerThrottle::new(1024, 60, 7);
        for outer in 1..50 {
            t.admit(key(5, outer, 0), 0);
            t.admit(key(6, outer, 0), 0);
        }
        t.release_slot(5);
        assert_eq!(t.marked(), 49);
        assert_eq!(t.admit(key(5, 1, 0), 0), Admission::First);
        assert_eq!(t.admit(key(6, 1, 0), 0), Admission::Throttled);
    }

    #[test]
    fn keys_cover_every_vlan_pair_and_reject_huge_slots() {
        assert!(ThrottleKey::new(MAX_SLOT, 4095, 4095).is_some());
        assert!(ThrottleKey::new(MAX_SLOT + 1, 0, 0).is_none());
        assert_ne!(key(0, 0, 0), key(0, 0, 1));
        assert_ne!(key(0, 1, 0), key(0, 0, 1));
    }

    proptest! {
        /// Against a model (a set of marked keys): with room for every key, the table decides
        /// exactly as the set does.
        #[test]
        fn behaves_like_a_set_while_it_has_room(
            ops in proptest::collection::vec((any::<bool>(), 0u32..4, 0u16..40, 0u16..3), 1..400),
            seed in any::<u64>(),
        ) {
            // 480 possible keys, 8192 words: no bucket overflows in practice, and if one did
            // the frame would be punted, which the model checks as "not throttled" anyway.
            let t = TriggerThrottle::new(8192, 60, seed);
            let mut model = HashSet::new();
            for (release, slot, outer, inner) in ops {
                let k = key(slot, outer, inner);
                if release {
                    t.release(k);
                    model.remove(&k);
                } else {
                    let got = t.admit(k, SEC);
                    if model.contains(&k) {
                        prop_assert_eq!(got, Admission::Throttled);
                    } else {
                        prop_assert_ne!(got, Admission::Throttled);
                        if got == Admission::First {
                            model.insert(k);
                        }
                    }
                }
            }
            prop_assert_eq!(t.marked(), model.len());
        }
    }

    #[test]
    fn workers_racing_on_one_key_punt_it_once() {
        let t = std::sync::Arc::new(TriggerThrottle::new(1024, 60, 1));
        let firsts = std::sync::Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (t, firsts) = (t.clone(), firsts.clone());
                std::thread::spawn(move || {
                    for outer in 0..2000u16 {
                        if t.admit(key(0, outer, 7), 0) == Admission::First {
                            firsts.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no panic");
        }
        // 2000 keys over 128 buckets overflow some: every key is punted marked at most once.
        let overflow = t.overflows();
        assert!(firsts.load(Ordering::Relaxed) <= 2000);
        assert_eq!(
            firsts.load(Ordering::Relaxed) as usize,
            t.marked(),
            "one mark per First ({overflow} overflows)"
        );
    }
}
