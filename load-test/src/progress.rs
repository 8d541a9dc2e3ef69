//! The live progress: phase, send and delivery rates, and the p99 of the last
//! interval. On a terminal (stderr) an indicatif bar redrawn every half second; when
//! stderr is not a terminal (piped, redirected to a file) one plain line per second on
//! stderr, without carriage returns or escape sequences; nothing with `--quiet`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use crate::clock::mono_ns;
use crate::latency::new_histogram;
use crate::worker::Progress;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// An indicatif bar (stderr is a terminal).
    Bar,
    /// One plain line per second (stderr is not a terminal).
    Lines,
    /// Nothing (`--quiet`).
    Hidden,
}

impl Style {
    /// The style for `--quiet` and whether stderr is a terminal.
    pub fn choose(quiet: bool, stderr_is_terminal: bool) -> Self {
        match (quiet, stderr_is_terminal) {
            (true, _) => Self::Hidden,
            (false, true) => Self::Bar,
            (false, false) => Self::Lines,
        }
    }

    /// The style for `--quiet` and this process's stderr.
    pub fn detect(quiet: bool) -> Self {
        Self::choose(quiet, std::io::stderr().is_terminal())
    }
}

/// Bar redraws, half a second apart.
const BAR_PERIOD_NS: u64 = 500_000_000;
/// Plain lines, a second apart.
const LINE_PERIOD_NS: u64 = 1_000_000_000;

enum Draw {
    Bar(ProgressBar),
    Lines {
        out: Box<dyn Write + Send>,
        /// When the view was made: lines show the seconds since.
        created_ns: u64,
        /// When the last line was written (0: none yet).
        last_line_ns: u64,
    },
    Hidden,
}

/// Aggregates worker snapshots and shows them.
pub struct LiveView {
    draw: Draw,
    sent: u64,
    delivered: u64,
    connected: u64,
    interval: Histogram<u64>,
    since_ns: u64,
}

impl LiveView {
    /// A view for a run of `total_ms` (warm-up plus window: the bar's length), in the
    /// style [`Style::detect`] picks, lines to stderr.
    pub fn new(quiet: bool, total_ms: u64) -> Self {
        Self::with_style(
            Style::detect(quiet),
            total_ms,
            Box::new(std::io::stderr()),
            mono_ns(),
        )
    }

    /// For scenarios without a bar (idle): plain lines when stderr is not a terminal,
    /// else nothing (a terminal shows what the scenario prints itself).
    pub fn lines_only(quiet: bool) -> Self {
        let style = match Style::detect(quiet) {
            Style::Bar => Style::Hidden,
            other => other,
        };
        Self::with_style(style, 0, Box::new(std::io::stderr()), mono_ns())
    }

    /// A view in `style`; `Lines` go to `out`, timed from `now_ns`.
    pub fn with_style(
        style: Style,
        total_ms: u64,
        out: Box<dyn Write + Send>,
        now_ns: u64,
    ) -> Self {
        let draw = match style {
            Style::Bar => {
                let bar = ProgressBar::new(total_ms.max(1));
                let template = "{spinner} [{elapsed_precise}] [{bar:30}] {msg}";
                let bar_style = ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
                bar.set_style(bar_style);
                bar.enable_steady_tick(Duration::from_millis(200));
                Draw::Bar(bar)
            }
            Style::Lines => Draw::Lines {
                out,
                created_ns: now_ns,
                last_line_ns: 0,
            },
            Style::Hidden => Draw::Hidden,
        };
        Self {
            draw,
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

    /// Shows the rates since the last time if half a second (bar) or a second (lines)
    /// passed; `phase` names what is happening, `pos_ms` is the bar position.
    pub fn tick(&mut self, now_ns: u64, phase: &str, pos_ms: u64) {
        if self.since_ns == 0 {
            self.since_ns = now_ns;
            return;
        }
        let period = match self.draw {
            Draw::Lines { .. } => LINE_PERIOD_NS,
            _ => BAR_PERIOD_NS,
        };
        let elapsed_ns = now_ns.saturating_sub(self.since_ns);
        if elapsed_ns < period {
            return;
        }
        let dt = elapsed_ns as f64 / 1e9;
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
        match &self.draw {
            Draw::Bar(bar) => {
                bar.set_position(pos_ms);
                bar.set_message(msg);
            }
            Draw::Lines { .. } => self.line(now_ns, &msg),
            Draw::Hidden => {}
        }
        self.sent = 0;
        self.delivered = 0;
        self.connected = 0;
        self.interval.reset();
        self.since_ns = now_ns;
    }

    /// Shows a message without rates (setup): the bar's message, or a line now.
    pub fn message(&mut self, now_ns: u64, msg: &str) {
        match &self.draw {
            Draw::Bar(bar) => bar.set_message(msg.to_string()),
            Draw::Lines { .. } => self.line(now_ns, msg),
            Draw::Hidden => {}
        }
    }

    /// While nothing else is shown (setup, idle's hold): a line with `msg` if a second
    /// passed since the last one. The bar shows its own spinner and clock instead.
    pub fn heartbeat(&mut self, now_ns: u64, msg: &str) {
        if let Draw::Lines { last_line_ns, .. } = self.draw {
            if now_ns.saturating_sub(last_line_ns) >= LINE_PERIOD_NS {
                self.line(now_ns, msg);
            }
        }
    }

    /// Writes one plain line (lines style only). A closed stderr is ignored: progress
    /// is not worth failing a run over.
    fn line(&mut self, now_ns: u64, msg: &str) {
        if let Draw::Lines {
            out,
            created_ns,
            last_line_ns,
        } = &mut self.draw
        {
            let seconds = now_ns.saturating_sub(*created_ns) as f64 / 1e9;
            let _ = writeln!(out, "{}", plain_line(seconds, msg));
            let _ = out.flush();
            *last_line_ns = now_ns;
        }
    }

    /// Removes the bar.
    pub fn finish(&mut self) {
        match &mut self.draw {
            Draw::Bar(bar) => bar.finish_and_clear(),
            Draw::Lines { out, .. } => {
                let _ = out.flush();
            }
            Draw::Hidden => {}
        }
    }
}

/// One progress line: seconds since the view was made, then `msg`; control
/// characters (a carriage return, an escape) become spaces.
pub fn plain_line(seconds: f64, msg: &str) -> String {
    let msg: String = msg
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("[{seconds:6.1}s] {msg}")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer whose bytes the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    const S: u64 = 1_000_000_000;

    fn snapshot(sent: u64, delivered: u64, latency_ns: u64) -> Progress {
        let mut interval = new_histogram();
        interval.record(latency_ns).unwrap();
        Progress {
            sent,
            delivered,
            connected: 0,
            interval,
        }
    }

    #[test]
    fn the_style_follows_quiet_and_the_terminal() {
        assert_eq!(Style::choose(false, true), Style::Bar);
        assert_eq!(Style::choose(false, false), Style::Lines);
        assert_eq!(Style::choose(true, true), Style::Hidden);
        assert_eq!(Style::choose(true, false), Style::Hidden);
    }

    #[test]
    fn lines_come_once_a_second_plain() {
        let out = Shared::default();
        let t0 = 100 * S;
        let mut view = LiveView::with_style(Style::Lines, 12_000, Box::new(out.clone()), t0);
        view.message(t0, "setting up 40 connections");
        view.heartbeat(t0 + S / 2, "setting up 40 connections");
        view.heartbeat(t0 + S, "setting up 40 connections");
        // The first tick starts the first interval.
        view.tick(t0 + S, "warm-up", 0);
        view.add(snapshot(500, 10_000, 1_000));
        view.tick(t0 + S + S / 2, "warm-up", 500);
        view.add(snapshot(500, 10_000, 1_000));
        view.tick(t0 + 2 * S, "measuring", 1000);
        view.tick(t0 + 2 * S + S / 2, "measuring", 1500);
        view.tick(t0 + 3 * S, "measuring", 2000);
        view.finish();
        let text = out.text();
        assert_eq!(
            text,
            "[   0.0s] setting up 40 connections\n\
             [   1.0s] setting up 40 connections\n\
             [   2.0s] measuring: sent 1000/s, deliveries 20000/s, p99 0.001 ms\n\
             [   3.0s] measuring: sent 0/s, deliveries 0/s, p99 0.000 ms\n",
        );
        assert!(!text.contains('\r') && !text.contains('\x1b'));
    }

    #[test]
    fn hidden_and_bar_views_write_no_lines() {
        for style in [Style::Hidden, Style::Bar] {
            let out = Shared::default();
            let mut view = LiveView::with_style(style, 1000, Box::new(out.clone()), S);
            view.message(S, "setting up");
            view.tick(S, "measuring", 0);
            view.add(snapshot(1, 1, 1000));
            view.tick(3 * S, "measuring", 1000);
            view.heartbeat(5 * S, "holding");
            view.finish();
            assert_eq!(out.text(), "", "{style:?}");
        }
    }

    #[test]
    fn control_characters_never_reach_a_line() {
        assert_eq!(plain_line(1.5, "a\rb\x1b[2Kc"), "[   1.5s] a b [2Kc");
    }
}
