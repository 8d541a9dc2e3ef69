//! A run's results: the human table, `--json`, `--hgrm` and `--plot` outputs.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::check::CheckCounts;
use crate::latency::{hgrm_text, percentile_curve, CurvePoint, Percentiles};
use crate::plot::{render_svg, Series, YScale};

/// The server's cost over the measured window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerCost {
    /// The server's pid.
    pub pid: u32,
    /// CPU time used in the window, microseconds.
    pub cpu_us: u64,
    /// CPU used as a share of one core, percent.
    pub cpu_pct: f64,
    /// CPU microseconds per 1000 deliveries received in the window (connect: per
    /// 1000 logins).
    pub cpu_us_per_1000_deliveries: f64,
    /// RSS before the harness connected, KiB.
    pub rss_before_kib: u64,
    /// RSS at the end of the window, KiB.
    pub rss_after_kib: u64,
    /// (after - before) / connections, bytes.
    pub rss_per_connection_bytes: f64,
}

/// What went wrong or churned during a run: counted by each worker, summed into the
/// report (a flat part of its JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Incidents {
    /// Connections the server closed during the run.
    pub disconnects: u64,
    /// Errors the server sent during the run.
    pub server_errors: u64,
    /// The first error or disconnect.
    pub first_error: Option<String>,
    /// Churn joins + leaves done.
    pub churn_ops: u64,
    /// Churn operations skipped (previous still pending).
    pub churn_skipped: u64,
    /// Connect scenario: clients that failed.
    pub connect_failures: u64,
}

impl Incidents {
    /// Adds `other`'s counts; the first error stays the first one seen.
    pub fn add(&mut self, other: &Incidents) {
        self.disconnects += other.disconnects;
        self.server_errors += other.server_errors;
        self.churn_ops += other.churn_ops;
        self.churn_skipped += other.churn_skipped;
        self.connect_failures += other.connect_failures;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    /// The sum over `all`.
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a Incidents>) -> Incidents {
        let mut total = Incidents::default();
        for i in all {
            total.add(i);
        }
        total
    }
}

/// One step of `--find-max`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Offered messages per second.
    pub offered_msgs_per_s: f64,
    /// Achieved deliveries over offered deliveries.
    pub achieved_ratio: f64,
    /// p99 latency.
    pub p99_us: f64,
    /// Whether it was sustainable.
    pub ok: bool,
    /// Why not, if not.
    pub verdict: String,
}

/// Everything a run reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Legend label (`--label`, default "<target> <scenario>").
    pub label: String,
    /// fanout, chat, churn, connect or idle.
    pub scenario: String,
    /// corecast, redis or nats.
    pub target: String,
    /// The command line that produced it.
    pub command: String,
    /// Scenario parameters, human-readable.
    pub params: String,
    /// Unix time of the run.
    pub unix_time: u64,
    /// Measured window, seconds.
    pub duration_s: f64,
    /// Warm-up, seconds.
    pub warmup_s: f64,
    /// Connections the harness held.
    pub connections: u64,
    /// Senders times rate.
    pub offered_msgs_per_s: f64,
    /// Messages scheduled (and sent) in the window per second.
    pub sent_msgs_per_s: f64,
    /// Offered messages times static room members.
    pub offered_deliveries_per_s: f64,
    /// Deliveries to members present throughout, received during the window, per second.
    pub achieved_deliveries_per_s: f64,
    /// All deliveries (churners' included) received during the window, per second.
    pub all_deliveries_per_s: f64,
    /// Delivery latency (connect scenario: connect+login latency).
    pub latency: Percentiles,
    /// Actual minus scheduled send time: high values mean the harness lagged.
    pub send_lag: Percentiles,
    /// Loss, duplicate and order checks.
    pub checks: CheckCounts,
    /// Disconnects, server errors, churn and connect failures.
    #[serde(flatten)]
    pub incidents: Incidents,
    /// Connect scenario: logins per second.
    pub connections_per_s: f64,
    /// Harness CPU over the window as a share of one core, percent (all threads).
    pub harness_cpu_pct: f64,
    /// Harness threads.
    pub harness_threads: usize,
    /// Times the harness was preempted (involuntary context switches) in the window.
    pub harness_preemptions: u64,
    /// Server cost, with `--server-pid`.
    pub server: Option<ServerCost>,
    /// `--find-max` steps.
    pub find_max: Vec<Step>,
    /// Latency by percentile (for plots).
    pub curve: Vec<CurvePoint>,
}

impl Report {
    /// Fills the latency fields from a histogram.
    pub fn set_latency(&mut self, h: &Histogram<u64>) {
        self.latency = Percentiles::of(h);
        self.curve = percentile_curve(h);
    }

    /// Whether anything was lost (or duplicated, reordered, unexpected).
    pub fn has_errors(&self) -> bool {
        !self.checks.is_clean() || self.incidents.connect_failures > 0
    }

    /// Achieved over offered deliveries.
    pub fn achieved_ratio(&self) -> f64 {
        if self.offered_deliveries_per_s > 0.0 {
            self.achieved_deliveries_per_s / self.offered_deliveries_per_s
        } else {
            1.0
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let ms = |us: f64| format!("{:.3} ms", us / 1000.0);
        let _ = writeln!(t, "== {} | {} | {}", self.label, self.scenario, self.params);
        let _ = writeln!(t, "  connections            {}", self.connections);
        if self.scenario == "connect" {
            let _ = writeln!(t, "  logins/s               {:.0}", self.connections_per_s);
            let _ = writeln!(
                t,
                "  failures               {}",
                self.incidents.connect_failures
            );
        } else if self.scenario != "idle" {
            let _ = writeln!(
                t,
                "  window                 {:.1} s (after {:.1} s warm-up)",
                self.duration_s, self.warmup_s
            );
            let _ = writeln!(t, "  offered msgs/s         {:.0}", self.offered_msgs_per_s);
            let _ = writeln!(t, "  sent msgs/s            {:.0}", self.sent_msgs_per_s);
            let _ = writeln!(
                t,
                "  offered deliveries/s   {:.0}",
                self.offered_deliveries_per_s
            );
            let _ = writeln!(
                t,
                "  achieved deliveries/s  {:.0} ({:.1}% of offered)",
                self.achieved_deliveries_per_s,
                self.achieved_ratio() * 100.0
            );
        }
        if self.scenario != "idle" {
            let l = &self.latency;
            let what = if self.scenario == "connect" {
                "connect+login"
            } else {
                "latency"
            };
            let _ = writeln!(t, "  {what:<22} samples {}", l.count);
            let _ = writeln!(
                t,
                "    p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}",
                ms(l.p50_us),
                ms(l.p90_us),
                ms(l.p99_us),
                ms(l.p999_us),
                ms(l.p9999_us),
                ms(l.max_us)
            );
        }
        if self.scenario != "connect" && self.scenario != "idle" {
            let c = &self.checks;
            let _ = writeln!(
                t,
                "  checks                 deliveries {}  lost {}  dup {}  sender-reorder {}  seq-reorder {}  seq-gap {}  unexpected {}",
                c.deliveries, c.lost, c.duplicates, c.sender_reorders, c.seq_reorders, c.seq_gaps, c.unexpected
            );
            let _ = writeln!(
                t,
                "  send lag               p99 {}  max {} (actual minus scheduled send)",
                ms(self.send_lag.p99_us),
                ms(self.send_lag.max_us)
            );
        }
        if self.incidents.churn_ops > 0 || self.incidents.churn_skipped > 0 {
            let _ = writeln!(
                t,
                "  churn                  {} joins/leaves, {} skipped",
                self.incidents.churn_ops, self.incidents.churn_skipped
            );
            let _ = writeln!(
                t,
                "  all deliveries/s       {:.0} (churners included)",
                self.all_deliveries_per_s
            );
        }
        if self.incidents.disconnects > 0 || self.incidents.server_errors > 0 {
            let _ = writeln!(
                t,
                "  server                 {} disconnects, {} errors",
                self.incidents.disconnects, self.incidents.server_errors
            );
        }
        if let Some(e) = &self.incidents.first_error {
            let _ = writeln!(t, "  first error            {e}");
        }
        let _ = writeln!(
            t,
            "  harness cpu            {:.0}% of one core ({} thread(s))",
            self.harness_cpu_pct, self.harness_threads
        );
        if self.harness_preemptions > 0 {
            let _ = writeln!(
                t,
                "  harness preempted      {} times (other work competed for its CPU)",
                self.harness_preemptions
            );
        }
        if self.harness_cpu_pct > 90.0 * self.harness_threads as f64 {
            let _ = writeln!(t, "  WARNING: the load generator is saturated; results are a floor on the server's capacity");
        }
        if let Some(s) = &self.server {
            if self.scenario == "connect" {
                let _ = writeln!(
                    t,
                    "  server cpu             {:.0}% of one core, {:.1} us per 1000 logins",
                    s.cpu_pct, s.cpu_us_per_1000_deliveries
                );
            } else if self.scenario != "idle" {
                let _ = writeln!(
                    t,
                    "  server cpu             {:.0}% of one core, {:.1} us per 1000 deliveries",
                    s.cpu_pct, s.cpu_us_per_1000_deliveries
                );
            }
            let _ = writeln!(
                t,
                "  server rss             {} KiB -> {} KiB, {:.0} bytes per connection",
                s.rss_before_kib, s.rss_after_kib, s.rss_per_connection_bytes
            );
        }
        if self
            .server
            .as_ref()
            .is_some_and(|s| s.rss_after_kib < s.rss_before_kib)
        {
            let _ = writeln!(
                t,
                "  WARNING: the server's RSS fell during the run (still releasing memory from \
                 earlier load?): start from a fresh server for a per-connection figure"
            );
        }
        if !self.find_max.is_empty() {
            let _ = writeln!(t, "  find-max steps:");
            for s in &self.find_max {
                let _ = writeln!(
                    t,
                    "    {:>10.0} msgs/s offered  achieved {:5.1}%  p99 {:>10}  {}",
                    s.offered_msgs_per_s,
                    s.achieved_ratio * 100.0,
                    ms(s.p99_us),
                    s.verdict
                );
            }
        }
        if self.has_errors() {
            let _ = writeln!(
                t,
                "  !!! LOSS OR DISORDER: lost {} dup {} reorders {}/{} gaps {} unexpected {} failures {} !!!",
                self.checks.lost,
                self.checks.duplicates,
                self.checks.sender_reorders,
                self.checks.seq_reorders,
                self.checks.seq_gaps,
                self.checks.unexpected,
                self.incidents.connect_failures
            );
        }
        t
    }
}

/// Where to write results.
#[derive(Debug, Clone, Default)]
pub struct Outputs<'a> {
    /// `--json`.
    pub json: Option<&'a Path>,
    /// `--hgrm`.
    pub hgrm: Option<&'a Path>,
    /// `--plot`.
    pub plot: Option<&'a Path>,
}

impl Outputs<'_> {
    /// Checks every requested file can be written (see [`check_output_paths`]).
    pub fn check(&self) -> Result<()> {
        check_output_paths(&[
            ("--json", self.json),
            ("--hgrm", self.hgrm),
            ("--plot", self.plot),
        ])
    }
}

/// Checks, before any load is sent, that every output named by its option can be
/// written: its directory exists, it is not a directory, it opens for writing, and no
/// two options name the same file. An existing file is opened without truncating it
/// and a file this check creates is removed again, so a run that fails later leaves
/// the outputs as they were.
pub fn check_output_paths(outputs: &[(&str, Option<&Path>)]) -> Result<()> {
    let named: Vec<(&str, &Path)> = outputs
        .iter()
        .filter_map(|&(flag, path)| path.map(|p| (flag, p)))
        .collect();
    for (i, &(flag, path)) in named.iter().enumerate() {
        if let Some((other, _)) = named[..i].iter().find(|(_, p)| *p == path) {
            bail!(
                "{other} and {flag} both name {}: each output needs its own file",
                path.display()
            );
        }
        probe_writable(path).with_context(|| format!("cannot write {flag} {}", path.display()))?;
    }
    Ok(())
}

/// Opens `path` for writing without truncating it; removes it again if this created it.
fn probe_writable(path: &Path) -> std::io::Result<()> {
    let existed = std::fs::symlink_metadata(path).is_ok();
    drop(
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?,
    );
    if !existed {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

/// Writes the requested files.
pub fn write_outputs(report: &Report, histogram: &Histogram<u64>, out: &Outputs<'_>) -> Result<()> {
    if let Some(path) = out.json {
        let text = serde_json::to_string_pretty(report).context("serialize report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(path) = out.hgrm {
        std::fs::write(path, hgrm_text(histogram))
            .with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(path) = out.plot {
        let svg = render_svg(
            &report.label,
            &[Series {
                label: &report.label,
                points: &report.curve,
            }],
            YScale::Linear,
        );
        std::fs::write(path, svg).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// Reads saved `--json` reports.
pub fn load_reports(inputs: &[std::path::PathBuf]) -> Result<Vec<Report>> {
    let mut reports = Vec::new();
    for path in inputs {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let report: Report =
            serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        reports.push(report);
    }
    Ok(reports)
}

/// Overlays saved `--json` reports in one SVG.
pub fn plot_files(
    title: &str,
    inputs: &[std::path::PathBuf],
    out: &Path,
    y_scale: YScale,
) -> Result<()> {
    check_output_paths(&[("--out", Some(out))])?;
    let reports = load_reports(inputs)?;
    let series: Vec<Series<'_>> = reports
        .iter()
        .map(|r| Series {
            label: &r.label,
            points: &r.curve,
        })
        .collect();
    std::fs::write(out, render_svg(title, &series, y_scale))
        .with_context(|| format!("write {}", out.display()))?;
    Ok(())
}

/// Saved reports side by side as a Markdown table (one row per run).
pub fn markdown_table(reports: &[Report]) -> String {
    if reports
        .iter()
        .all(|r| r.scenario == "connect" || r.scenario == "idle")
    {
        return markdown_connections_table(reports);
    }
    let mut t = String::new();
    let ms = |us: f64| format!("{:.3}", us / 1000.0);
    let _ = writeln!(
        t,
        "| run | offered msgs/s | achieved deliveries/s | p50 ms | p90 ms | p99 ms | p99.9 ms | p99.99 ms | max ms \
         | lost / dup / reordered | server CPU | server CPU us / 1000 deliveries | server RSS / conn | harness CPU |"
    );
    let _ = writeln!(
        t,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in reports {
        let c = &r.checks;
        let (cpu, per_k, rss) = match &r.server {
            Some(s) => (
                format!("{:.0}%", s.cpu_pct),
                format!("{:.0}", s.cpu_us_per_1000_deliveries),
                format!("{:.0} B", s.rss_per_connection_bytes),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(
            t,
            "| {} | {:.0} | {:.0} ({:.1}%) | {} | {} | {} | {} | {} | {} | {} / {} / {} | {} | {} | {} | {:.0}% |",
            r.label,
            r.offered_msgs_per_s,
            r.achieved_deliveries_per_s,
            r.achieved_ratio() * 100.0,
            ms(r.latency.p50_us),
            ms(r.latency.p90_us),
            ms(r.latency.p99_us),
            ms(r.latency.p999_us),
            ms(r.latency.p9999_us),
            ms(r.latency.max_us),
            c.lost,
            c.duplicates,
            c.sender_reorders + c.seq_reorders,
            cpu,
            per_k,
            rss,
            r.harness_cpu_pct
        );
    }
    t
}

/// The connect and idle scenarios' table: logins and memory instead of deliveries.
fn markdown_connections_table(reports: &[Report]) -> String {
    let mut t = String::new();
    let ms = |us: f64| format!("{:.3}", us / 1000.0);
    let _ = writeln!(
        t,
        "| run | connections | logins/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | failures \
         | server CPU us / 1000 logins | server RSS / conn | harness CPU |"
    );
    let _ = writeln!(
        t,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in reports {
        let (per_k, rss) = match &r.server {
            Some(s) => (
                format!("{:.0}", s.cpu_us_per_1000_deliveries),
                format!("{:.0} B", s.rss_per_connection_bytes),
            ),
            None => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0}% |",
            r.label,
            r.connections,
            r.connections_per_s,
            ms(r.latency.p50_us),
            ms(r.latency.p90_us),
            ms(r.latency.p99_us),
            ms(r.latency.p999_us),
            ms(r.latency.max_us),
            r.incidents.connect_failures,
            per_k,
            rss,
            r.harness_cpu_pct
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh, empty directory under the system's temporary directory.
    fn scratch_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("corecast-load-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn output_paths_are_checked_without_leaving_or_clobbering_files() {
        let dir = scratch_dir("outputs");
        let new = dir.join("new.json");
        let old = dir.join("old.hgrm");
        std::fs::write(&old, "keep me").unwrap();
        let outputs = Outputs {
            json: Some(&new),
            hgrm: Some(&old),
            plot: None,
        };
        outputs.check().unwrap();
        assert!(!new.exists(), "the probe removes a file it created");
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "keep me");

        let missing = dir.join("no-such-dir").join("run.svg");
        let err = Outputs {
            json: Some(&new),
            plot: Some(&missing),
            ..Outputs::default()
        }
        .check()
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.starts_with(&format!("cannot write --plot {}: ", missing.display())),
            "{text}"
        );
        assert!(text.contains("No such file or directory"), "{text}");
        assert!(!new.exists());

        let err = format!(
            "{:#}",
            Outputs {
                json: Some(&dir),
                ..Outputs::default()
            }
            .check()
            .unwrap_err()
        );
        assert!(
            err.starts_with(&format!("cannot write --json {}: ", dir.display())),
            "{err}"
        );
        assert!(err.contains("Is a directory"), "{err}");

        let err = format!(
            "{:#}",
            Outputs {
                json: Some(&old),
                hgrm: None,
                plot: Some(&old),
            }
            .check()
            .unwrap_err()
        );
        assert_eq!(
            err,
            format!(
                "--json and --plot both name {}: each output needs its own file",
                old.display()
            )
        );
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "keep me");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn json_round_trips_and_losses_are_loud() {
        let mut r = Report {
            label: "x".into(),
            scenario: "fanout".into(),
            ..Report::default()
        };
        let mut h = crate::latency::new_histogram();
        h.record(1000).unwrap();
        r.set_latency(&h);
        let text = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        assert!(!r.table().contains("LOSS"));
        r.checks.lost = 3;
        assert!(r.has_errors());
        assert!(r.table().contains("LOSS OR DISORDER: lost 3"));
    }

    #[test]
    fn markdown_has_a_row_per_report() {
        let a = Report {
            label: "corecast".into(),
            offered_msgs_per_s: 1000.0,
            ..Report::default()
        };
        let b = Report {
            label: "redis".into(),
            ..Report::default()
        };
        let md = markdown_table(&[a, b]);
        assert_eq!(md.lines().count(), 4);
        assert!(md
            .lines()
            .nth(2)
            .is_some_and(|l| l.starts_with("| corecast | 1000 |")));
        assert!(md.lines().all(|l| l.matches('|').count() == 15));
    }
}
