//! Per-connection rate limiting: a token bucket refilled from the clock, checked per
//! request. Pure arithmetic over `Instant`s handed in, so it is tested without time
//! passing.

use std::time::Instant;

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket; `rate` 0 means unlimited.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Adds the tokens earned since the last refill.
    pub fn refill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
    }

    /// Takes one token; `false` when the bucket is empty (the request is refused).
    pub fn take(&mut self) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_full_bucket_allows_a_burst_then_refuses() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5, t0);
        assert_eq!((0..8).filter(|_| b.take()).count(), 5);
    }

    #[test]
    fn tokens_come_back_at_the_rate_and_never_past_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5, t0);
        while b.take() {}
        b.refill(t0 + Duration::from_millis(300));
        assert_eq!((0..8).filter(|_| b.take()).count(), 3);
        b.refill(t0 + Duration::from_secs(60));
        assert_eq!(
            (0..8).filter(|_| b.take()).count(),
            5,
            "capped at the burst"
        );
    }

    #[test]
    fn rate_zero_is_unlimited() {
        let mut b = TokenBucket::new(0, 1, Instant::now());
        assert!((0..10_000).all(|_| b.take()));
    }
}
