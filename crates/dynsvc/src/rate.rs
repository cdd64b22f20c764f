//! The overall control-plane rate limit of data triggers ("Dynamic service data trigger rate
//! limiting in the control plane"): a token bucket driven by the caller's clock.

use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_sec: u32,
    burst: u32,
    /// Tokens in millionths, so that sub-token refills between close calls are not lost.
    micro_tokens: u64,
    last: Option<Instant>,
}

const MICRO: u64 = 1_000_000;

impl TokenBucket {
    /// A full bucket: `burst` frames pass at once, then `rate_per_sec` a second.
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        Self {
            rate_per_sec,
            burst,
            micro_tokens: u64::from(burst) * MICRO,
            last: None,
        }
    }

    /// Takes one token at `now`; false when the bucket is empty (the frame is dropped).
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last);
            self.micro_tokens = self
                .micro_tokens
                .saturating_add(refill(elapsed, self.rate_per_sec))
                .min(u64::from(self.burst) * MICRO);
        }
        self.last = Some(self.last.map_or(now, |last| last.max(now)));
        if self.micro_tokens >= MICRO {
            self.micro_tokens -= MICRO;
            true
        } else {
            false
        }
    }
}

fn refill(elapsed: Duration, rate_per_sec: u32) -> u64 {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    micros.saturating_mul(u64::from(rate_per_sec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_passes_then_the_rate_refills() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 3);
        assert!((0..3).all(|_| bucket.take(start)));
        assert!(!bucket.take(start));
        // 10/s: one token every 100 ms.
        assert!(!bucket.take(start + Duration::from_millis(99)));
        assert!(bucket.take(start + Duration::from_millis(100)));
        assert!(!bucket.take(start + Duration::from_millis(100)));
        // A long pause refills to the burst, not beyond.
        let later = start + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| bucket.take(later)).count(), 3);
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let start = Instant::now() + Duration::from_secs(1);
        let mut bucket = TokenBucket::new(1000, 1);
        assert!(bucket.take(start));
        assert!(!bucket.take(start - Duration::from_millis(500)));
    }
}
