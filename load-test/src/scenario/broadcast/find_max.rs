//! `--find-max`: broadcast runs at a rising rate (x `--step-factor` a step) until one
//! loses, falls short of `--min-achieved` or exceeds `--p99-limit-ms`; the last
//! sustainable run is the one reported.

use anyhow::{bail, Result};
use hdrhistogram::Histogram;

use crate::cli::{BroadcastArgs, LoadArgs};
use crate::report::{write_outputs, Outputs, Report, Step};

use super::{measure, BroadcastSpec};

/// Steps the rate up from `--rate`, printing a line per step, then prints and writes
/// the report of the highest sustainable step (or of the failed first one) with every
/// step in it. Returns whether the run counts as a success for the exit code.
pub(super) fn find_max(
    spec: &BroadcastSpec,
    args: &BroadcastArgs,
    outputs: &Outputs<'_>,
) -> Result<bool> {
    let load = &args.load;
    let mut rate = load.rate;
    let mut steps = Vec::new();
    let mut best: Option<(Report, Histogram<u64>)> = None;
    let mut last = None;
    for run in 0..load.max_steps.max(1) {
        let (report, hist) = measure(spec, args, rate, run)?;
        let step = step(&report, load);
        println!(
            "find-max step {}: {:.0} msgs/s offered, {:.0} deliveries/s achieved ({:.1}%), p99 {:.3} ms: {}",
            run + 1,
            report.offered_msgs_per_s,
            report.achieved_deliveries_per_s,
            step.achieved_ratio * 100.0,
            step.p99_us / 1000.0,
            step.verdict
        );
        let ok = step.ok;
        steps.push(step);
        if !ok {
            last = Some((report, hist));
            break;
        }
        best = Some((report, hist));
        rate *= load.step_factor;
    }
    let found = best.is_some();
    let Some((mut report, hist)) = best.or(last) else {
        bail!("find-max ran no step")
    };
    report.find_max = steps;
    if found {
        println!(
            "highest sustainable rate: {:.0} msgs/s offered ({})",
            report.offered_msgs_per_s, report.run.params
        );
    } else {
        println!("no sustainable rate found: even the first step failed");
    }
    print!("{}", report.table());
    write_outputs(&report, &hist, outputs)?;
    Ok(found || load.tolerate_loss)
}

/// A run's step: sustainable ("ok") unless it lost or disordered messages, achieved
/// less than `--min-achieved` or had a p99 over `--p99-limit-ms`.
fn step(report: &Report, load: &LoadArgs) -> Step {
    let ratio = report.achieved_ratio();
    let p99_ms = report.latency.p99_us / 1000.0;
    let verdict = if report.has_errors() {
        format!("loss/disorder (lost {})", report.checks.lost)
    } else if ratio < load.min_achieved {
        format!(
            "achieved {:.1}% < {:.1}%",
            ratio * 100.0,
            load.min_achieved * 100.0
        )
    } else if p99_ms > load.p99_limit_ms {
        format!("p99 {p99_ms:.3} ms > {} ms", load.p99_limit_ms)
    } else {
        "ok".to_string()
    };
    Step {
        offered_msgs_per_s: report.offered_msgs_per_s,
        achieved_ratio: ratio,
        p99_us: report.latency.p99_us,
        ok: verdict == "ok",
        verdict,
    }
}
