//! A run's results: the [`Report`] and its `--json`, `--hgrm` and `--plot` outputs.
//! `table`: the human table a run prints; `markdown`: saved reports side by side.

mod markdown;
mod table;

use std::path::Path;

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::check::CheckCounts;
use crate::latency::{hgrm_text, percentile_curve, CurvePoint, Percentiles};
use crate::plot::{render_svg, Series, YScale};
use crate::resume::ResumeCounts;

pub use markdown::markdown_table;

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

/// The reconnect scenario's drops and resumes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReconnectReport {
    /// Members that drop and resume (all rooms).
    pub dropping_members: u64,
    /// close, replace or mixed.
    pub drop_mode: String,
    /// Drops, resumes, recovered or not, replays.
    #[serde(flatten)]
    pub counts: ResumeCounts,
    /// Latency of replayed deliveries (scheduled in the window): they waited out a
    /// reconnect, so they are kept out of `latency`, which is live deliveries only.
    pub replay_latency: Percentiles,
    /// From dropping a connection to the resumed JoinResponse.
    pub resume_time: Percentiles,
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

/// What run a report is of: the head of every report (a [`Report`], and burst's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Legend label (`--label`, default "<target> <scenario>").
    pub label: String,
    /// fanout, chat, churn, reconnect, connect, idle or burst.
    pub scenario: String,
    /// corecast, redis or nats.
    pub target: String,
    /// The command line that produced it.
    pub command: String,
    /// Scenario parameters, human-readable.
    pub params: String,
    /// Unix time of the run.
    pub unix_time: u64,
}

/// Everything a run reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Label, scenario, target, command line, parameters, time.
    #[serde(flatten)]
    pub run: RunInfo,
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
    /// Reconnect scenario: drops and resumes (absent elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect: Option<ReconnectReport>,
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
        !self.checks.is_clean()
            || self.incidents.connect_failures > 0
            || self.reconnect_errors() > 0
    }

    /// Reconnect scenario: unrecovered resumes, old sessions left open, reconnects
    /// not finished (0 elsewhere).
    pub fn reconnect_errors(&self) -> u64 {
        self.reconnect.as_ref().map_or(0, |r| r.counts.errors())
    }

    /// Achieved over offered deliveries.
    pub fn achieved_ratio(&self) -> f64 {
        if self.offered_deliveries_per_s > 0.0 {
            self.achieved_deliveries_per_s / self.offered_deliveries_per_s
        } else {
            1.0
        }
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
            &report.run.label,
            &[Series {
                label: &report.run.label,
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
            label: &r.run.label,
            points: &r.curve,
        })
        .collect();
    std::fs::write(out, render_svg(title, &series, y_scale))
        .with_context(|| format!("write {}", out.display()))?;
    Ok(())
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
            run: RunInfo {
                label: "x".into(),
                scenario: "fanout".into(),
                ..RunInfo::default()
            },
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
}
