//! The live progress line (indicatif): phase, send and delivery rates, and the p99 of
//! the last half second. Hidden with `--quiet` or when stderr is not a terminal.

use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use crate::latency::new_histogram;
use crate::worker::Progress;

/// Aggregates worker snapshots and draws them.
pub struct LiveView {
    bar: ProgressBar,
    sent: u64,
    delivered: u64,
    connected: u64,
    interval: Histogram<u64>,
    since_ns: u64,
}

impl LiveView {
    /// A view whose bar spans `total_ms` (warm-up plus window); hidden if `quiet`.
    pub fn new(quiet: bool, total_ms: u64) -> Self {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total_ms.max(1))
        };
        let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Self {
            bar,
            sent: 0,
            delivered: 0,
            connected: 0,
            interval: new_histogram(),
            since_ns: 0,
        }
    }

    /// Adds a worker snapshot.
    pub fn add(&mut self, p: Progress) {
        self.sent += p.sent;
        self.delivered += p.delivered;
        self.connected += p.connected;
        // Same bounds on both sides: cannot fail.
        let _ = self.interval.add(&p.interval);
    }

    /// Redraws if half a second passed; `phase` names what is happening, `pos_ms` is
    /// the bar position.
    pub fn tick(&mut self, now_ns: u64, phase: &str, pos_ms: u64) {
        if self.since_ns == 0 {
            self.since_ns = now_ns;
            return;
        }
        let dt = (now_ns - self.since_ns) as f64 / 1e9;
        if dt < 0.5 {
            return;
        }
        let p99 = if self.interval.is_empty() {
            0.0
        } else {
            self.interval.value_at_quantile(0.99) as f64 / 1e6
        };
        let msg = if self.connected > 0 && self.sent == 0 {
            format!(
                "{phase}: {:.0} logins/s, p99 {p99:.3} ms",
                self.connected as f64 / dt
            )
        } else {
            format!(
                "{phase}: sent {:.0}/s, deliveries {:.0}/s, p99 {p99:.3} ms",
                self.sent as f64 / dt,
                self.delivered as f64 / dt
            )
        };
        self.bar.set_position(pos_ms);
        self.bar.set_message(msg);
        self.sent = 0;
        self.delivered = 0;
        self.connected = 0;
        self.interval.reset();
        self.since_ns = now_ns;
    }

    /// Shows a message without rates (setup).
    pub fn message(&self, msg: String) {
        self.bar.set_message(msg);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
