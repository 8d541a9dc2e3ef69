//! Latency accounting without coordinated omission: a delivery's latency is its receive
//! time minus its *scheduled* send time, so a stalled server or a stalled sender shows
//! up as latency instead of as fewer samples. Only messages scheduled inside the
//! measured window count; warm-up is excluded.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency the histograms track (60 s); larger values are clamped to it.
pub const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// A fresh latency histogram: 1 ns to 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Cannot fail: the bounds and precision are constants within hdrhistogram's limits.
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("valid histogram bounds")
}

/// The measured window: messages scheduled in `[start_ns, end_ns)` are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// End of warm-up.
    pub start_ns: u64,
    /// End of sending.
    pub end_ns: u64,
}

impl Window {
    /// Whether a message scheduled at `scheduled_ns` belongs to the results.
    pub fn contains(&self, scheduled_ns: u64) -> bool {
        scheduled_ns >= self.start_ns && scheduled_ns < self.end_ns
    }
}

/// Records deliveries into a run histogram and an interval histogram (for the live
/// progress line).
#[derive(Debug)]
pub struct LatencyRecorder {
    window: Window,
    /// Everything recorded in the window.
    pub total: Histogram<u64>,
    /// Recorded since the last [`LatencyRecorder::take_interval`].
    pub interval: Histogram<u64>,
}

impl LatencyRecorder {
    /// A recorder for `window`.
    pub fn new(window: Window) -> Self {
        Self {
            window,
            total: new_histogram(),
            interval: new_histogram(),
        }
    }

    /// Records one delivery; returns whether it fell in the measured window.
    pub fn record(&mut self, scheduled_ns: u64, received_ns: u64) -> bool {
        let latency = received_ns.saturating_sub(scheduled_ns).max(1);
        self.interval.saturating_record(latency);
        if !self.window.contains(scheduled_ns) {
            return false;
        }
        self.total.saturating_record(latency);
        true
    }

    /// The interval histogram so far; resets it.
    pub fn take_interval(&mut self) -> Histogram<u64> {
        let snapshot = self.interval.clone();
        self.interval.reset();
        snapshot
    }
}

/// The percentiles a report prints, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th.
    pub p90_us: f64,
    /// 99th.
    pub p99_us: f64,
    /// 99.9th.
    pub p999_us: f64,
    /// 99.99th.
    pub p9999_us: f64,
    /// Maximum.
    pub max_us: f64,
}

impl Percentiles {
    /// The summary of a nanosecond histogram.
    pub fn of(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            p9999_us: us(h.value_at_quantile(0.9999)),
            max_us: us(h.max()),
        }
    }
}

/// One point of a latency-by-percentile curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Percentile, 0 to 100.
    pub percentile: f64,
    /// Latency at that percentile, microseconds.
    pub latency_us: f64,
}

/// The classic HdrHistogram percentile iteration (5 ticks per half distance), as the
/// points a plot draws.
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<CurvePoint> {
    h.iter_quantiles(5)
        .map(|v| CurvePoint {
            percentile: v.percentile(),
            latency_us: h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0,
        })
        .collect()
}

/// The histogram as HdrHistogram's classic percentile-distribution text (`.hgrm`),
/// values in milliseconds, as `HistogramLogProcessor`/`outputPercentileDistribution`
/// write it and the HdrHistogram plotter reads it.
pub fn hgrm_text(h: &Histogram<u64>) -> String {
    const SCALE: f64 = 1e6; // ns -> ms
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total_count = 0u64;
    for v in h.iter_quantiles(5) {
        let value = v.value_iterated_to() as f64 / SCALE;
        let q = v.quantile_iterated_to();
        total_count += v.count_since_last_iteration();
        if q < 1.0 {
            let _ = writeln!(
                out,
                "{:12.3} {:2.12} {:10} {:14.2}",
                value,
                q,
                total_count,
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(out, "{:12.3} {:2.12} {:10}", value, q, total_count);
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / SCALE,
        h.stdev() / SCALE
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / SCALE,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        SUB_BUCKETS
    );
    out
}

/// Sub-buckets of a 3-significant-digit histogram, as the `.hgrm` footer reports.
const SUB_BUCKETS: u64 = 2048;

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn latency_is_measured_from_the_scheduled_time() {
        let mut r = LatencyRecorder::new(Window {
            start_ns: 0,
            end_ns: u64::MAX,
        });
        // Scheduled at 10 ms, actually sent late at 15 ms, received at 16 ms: the
        // 5 ms the sender stalled is counted, not hidden.
        r.record(10 * MS, 16 * MS);
        assert_eq!(r.total.len(), 1);
        let v = r.total.max();
        assert!(
            (6 * MS - 6 * MS / 1000..=6 * MS + 6 * MS / 1000).contains(&v),
            "{v}"
        );
    }

    #[test]
    fn warm_up_and_after_end_are_excluded() {
        let mut r = LatencyRecorder::new(Window {
            start_ns: 100 * MS,
            end_ns: 200 * MS,
        });
        assert!(!r.record(99 * MS, 101 * MS), "scheduled during warm-up");
        assert!(r.record(100 * MS, 101 * MS));
        assert!(
            r.record(199 * MS, 250 * MS),
            "scheduled in the window, arrived in the drain"
        );
        assert!(!r.record(200 * MS, 201 * MS), "scheduled after the end");
        assert_eq!(r.total.len(), 2);
        assert_eq!(r.take_interval().len(), 4, "the live view sees everything");
        assert_eq!(r.interval.len(), 0);
    }

    #[test]
    fn stall_shows_in_the_tail() {
        // 1000 sends 1 ms apart; the server stalls 100 ms around the 500th: every
        // message scheduled during the stall gets the remaining stall as latency.
        let mut r = LatencyRecorder::new(Window {
            start_ns: 0,
            end_ns: u64::MAX,
        });
        for i in 0..1000u64 {
            let scheduled = i * MS;
            let received = if (500..600).contains(&i) {
                600 * MS
            } else {
                scheduled + 50_000
            };
            r.record(scheduled, received);
        }
        let p = Percentiles::of(&r.total);
        assert!(p.p50_us < 100.0, "{p:?}");
        let p95 = r.total.value_at_quantile(0.95) as f64 / 1000.0;
        assert!(
            p95 > 40_000.0,
            "10% of samples waited out part of the stall: {p95} us"
        );
        assert!(p.max_us > 99_000.0, "{p:?}");
    }

    #[test]
    fn hgrm_has_the_classic_layout() {
        let mut h = new_histogram();
        for i in 1..=1000u64 {
            h.record(i * 1000).unwrap();
        }
        let text = hgrm_text(&h);
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        assert!(header.contains("Value") && header.contains("1/(1-Percentile)"));
        assert_eq!(lines.next(), Some(""));
        let first: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(first.len(), 4);
        assert_eq!(first[1], "0.000000000000");
        assert!(
            text.contains("#[Max     =        1.000, Total count    =         1000]"),
            "{text}"
        );
        let last_row = text
            .lines()
            .rfind(|l| !l.starts_with('#') && !l.is_empty())
            .unwrap();
        assert!(last_row.contains("1.000000000000"), "{last_row}");
        assert!(last_row.trim_end().ends_with("1000"));
    }

    #[test]
    fn curve_is_monotonic_and_reaches_100() {
        let mut h = new_histogram();
        for i in 1..=10_000u64 {
            h.record(i * 100).unwrap();
        }
        let curve = percentile_curve(&h);
        assert!(curve
            .windows(2)
            .all(|w| w[0].percentile <= w[1].percentile && w[0].latency_us <= w[1].latency_us));
        assert_eq!(curve.last().map(|p| p.percentile), Some(100.0));
    }
}
