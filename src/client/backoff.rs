//! [`Backoff`]: the delays between reconnection attempts (exponential, capped, with
//! jitter), for a client that reconnects by itself after a drop.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Exponential backoff with "equal jitter": attempt `n` (from 0) waits between half
/// and all of `min(max, initial * 2^n)`, so clients dropped together (a server
/// restart) do not all come back at the same instant, and no wait is ever shorter
/// than half its step. [`Backoff::reset`] after a successful session starts over.
///
/// ```
/// use std::time::Duration;
/// use corecast::client::Backoff;
///
/// let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
/// let first = backoff.next_delay();
/// assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(500));
/// assert_eq!(backoff.attempts(), 1);
/// backoff.reset();
/// assert_eq!(backoff.attempts(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempts: u32,
    /// xorshift64 state (never 0).
    rng: u64,
}

impl Backoff {
    /// Starts at `initial` (at least 1 ms), doubling up to `max` (at least `initial`).
    pub fn new(initial: Duration, max: Duration) -> Self {
        let seed = RandomState::new().build_hasher().finish();
        Self::with_seed(initial, max, seed)
    }

    /// The same with a fixed seed for the jitter (tests).
    pub fn with_seed(initial: Duration, max: Duration, seed: u64) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Self {
            initial,
            max: max.max(initial),
            attempts: 0,
            // splitmix64 of the seed: nearby seeds give unrelated sequences.
            rng: {
                let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                (z ^ (z >> 31)) | 1
            },
        }
    }

    /// The step of attempt `n` before jitter: `min(max, initial * 2^n)`.
    pub fn step(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// How long to wait before the next attempt; counts the attempt.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step(self.attempts);
        self.attempts = self.attempts.saturating_add(1);
        let half = step / 2;
        let nanos = (step - half).as_nanos().min(u64::MAX as u128) as u64;
        let jitter = if nanos == 0 {
            0
        } else {
            self.random() % (nanos + 1)
        };
        half + Duration::from_nanos(jitter)
    }

    /// Attempts counted since the start or the last [`Backoff::reset`].
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Starts over from `initial` (after a session that worked).
    pub fn reset(&mut self) {
        self.attempts = 0;
    }

    fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_and_reset() {
        for seed in 0..200 {
            let mut b = Backoff::with_seed(100 * MS, 1000 * MS, seed);
            let steps = [100, 200, 400, 800, 1000, 1000, 1000];
            for (n, step) in steps.into_iter().enumerate() {
                assert_eq!(b.step(n as u32), step * MS);
                let d = b.next_delay();
                assert!(
                    d >= step * MS / 2 && d <= step * MS,
                    "seed {seed} attempt {n}: {d:?} outside [{}, {step}] ms",
                    step / 2
                );
            }
            assert_eq!(b.attempts(), 7);
            b.reset();
            assert_eq!(b.attempts(), 0);
            let d = b.next_delay();
            assert!(d >= 50 * MS && d <= 100 * MS, "{d:?}");
        }
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..50 {
            seen.insert(
                Backoff::with_seed(Duration::from_secs(1), Duration::from_secs(1), seed)
                    .next_delay(),
            );
        }
        assert!(seen.len() > 40, "only {} distinct delays", seen.len());
    }

    #[test]
    fn huge_attempt_counts_stay_capped() {
        let mut b = Backoff::with_seed(MS, Duration::from_secs(30), 7);
        for _ in 0..200 {
            assert!(b.next_delay() <= Duration::from_secs(30));
        }
        assert_eq!(b.step(u32::MAX), Duration::from_secs(30));
        // Degenerate settings are made usable.
        let mut zero = Backoff::with_seed(Duration::ZERO, Duration::ZERO, 1);
        assert!(zero.next_delay() <= MS);
    }
}
