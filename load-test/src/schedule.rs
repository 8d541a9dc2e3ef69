//! Open-loop send schedules: when each sender's next message is due, independent of
//! when (or whether) the server answered the previous one.

/// How the gaps between a sender's messages are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrivals {
    /// Exactly `1 / rate` apart.
    Constant,
    /// Exponentially distributed gaps with mean `1 / rate` (a Poisson process).
    Poisson,
}

/// A small, fast, seedable generator (SplitMix64); statistical quality is ample for
/// arrival jitter and keeps runs reproducible from `--seed`.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One sender's schedule: a sequence of due times in CLOCK_MONOTONIC nanoseconds.
#[derive(Debug, Clone)]
pub struct Schedule {
    arrivals: Arrivals,
    interval_ns: f64,
    start_ns: u64,
    /// Messages consumed so far (constant rate: due = start + n * interval, no drift).
    n: u64,
    /// Poisson: the running due time, as f64 to keep sub-nanosecond carries.
    poisson_at: f64,
    rng: SplitMix64,
}

impl Schedule {
    /// A schedule of `rate` messages per second starting at `start_ns`. `phase` in
    /// [0, 1) offsets a constant-rate sender by that fraction of an interval so that
    /// many senders spread out instead of firing together.
    pub fn new(rate: f64, arrivals: Arrivals, start_ns: u64, phase: f64, seed: u64) -> Self {
        let interval_ns = 1e9 / rate.max(1e-9);
        let mut rng = SplitMix64::new(seed);
        let first = match arrivals {
            Arrivals::Constant => start_ns as f64 + phase * interval_ns,
            Arrivals::Poisson => start_ns as f64 + exp_gap(&mut rng, interval_ns),
        };
        Self {
            arrivals,
            interval_ns,
            start_ns: first as u64,
            n: 0,
            poisson_at: first,
            rng,
        }
    }

    /// When the next message is due.
    pub fn next_due(&self) -> u64 {
        match self.arrivals {
            Arrivals::Constant => self.start_ns + (self.n as f64 * self.interval_ns) as u64,
            Arrivals::Poisson => self.poisson_at as u64,
        }
    }

    /// Consumes the next due time and returns it.
    pub fn advance(&mut self) -> u64 {
        let due = self.next_due();
        self.n += 1;
        if self.arrivals == Arrivals::Poisson {
            self.poisson_at += exp_gap(&mut self.rng, self.interval_ns);
        }
        due
    }
}

fn exp_gap(rng: &mut SplitMix64, mean_ns: f64) -> f64 {
    // 1 - u is in (0, 1], so the logarithm is finite.
    -(1.0 - rng.next_f64()).ln() * mean_ns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_rate_has_exact_gaps_and_no_drift() {
        let mut s = Schedule::new(3.0, Arrivals::Constant, 1_000, 0.0, 1);
        let due: Vec<u64> = (0..4).map(|_| s.advance()).collect();
        assert_eq!(due[0], 1_000);
        assert_eq!(due[1], 1_000 + 333_333_333);
        assert_eq!(
            due[3],
            1_000 + 1_000_000_000,
            "three gaps of 1/3 s add up to 1 s exactly"
        );
        let mut s = Schedule::new(1000.0, Arrivals::Constant, 0, 0.0, 1);
        let last = (0..1_000_001).map(|_| s.advance()).last().unwrap_or(0);
        assert_eq!(
            last, 1_000_000_000_000,
            "a million intervals of 1 ms are 1000 s"
        );
    }

    #[test]
    fn phase_offsets_the_first_send() {
        let mut s = Schedule::new(1000.0, Arrivals::Constant, 0, 0.5, 1);
        assert_eq!(s.advance(), 500_000);
        assert_eq!(s.advance(), 1_500_000);
    }

    #[test]
    fn schedule_ignores_the_server_it_only_depends_on_time() {
        // Open loop: consuming ten due times late yields the same times as on time.
        let mut a = Schedule::new(100.0, Arrivals::Poisson, 0, 0.0, 7);
        let mut b = Schedule::new(100.0, Arrivals::Poisson, 0, 0.0, 7);
        let late: Vec<u64> = (0..10).map(|_| a.advance()).collect();
        let on_time: Vec<u64> = (0..10).map(|_| b.advance()).collect();
        assert_eq!(late, on_time);
    }

    #[test]
    fn poisson_mean_gap_matches_the_rate_and_gaps_vary() {
        let mut s = Schedule::new(1000.0, Arrivals::Poisson, 0, 0.0, 42);
        let n = 200_000;
        let mut prev = s.advance();
        let first = prev;
        let mut min_gap = u64::MAX;
        let mut max_gap = 0;
        for _ in 0..n {
            let t = s.advance();
            assert!(t >= prev);
            min_gap = min_gap.min(t - prev);
            max_gap = max_gap.max(t - prev);
            prev = t;
        }
        let mean = (prev - first) as f64 / n as f64;
        assert!((mean - 1e6).abs() < 1e6 * 0.02, "mean gap {mean} ns");
        assert!(
            min_gap < 50_000 && max_gap > 5_000_000,
            "gaps {min_gap}..{max_gap}"
        );
    }
}
