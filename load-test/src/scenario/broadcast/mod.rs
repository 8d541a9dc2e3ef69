//! The broadcast scenarios (fanout, chat, churn). One measured run: one plan per
//! harness thread, every worker set up, all started on one shared clock, server and
//! harness cost sampled at the edges of the measured window (`threads`), the workers'
//! results merged into a [`Report`]. `--find-max` repeats runs (`find_max`).

mod find_max;
mod threads;

use std::sync::{mpsc, Arc};

use anyhow::{bail, Result};
use hdrhistogram::Histogram;

use crate::check::CheckCounts;
use crate::cli::{BroadcastArgs, LoadArgs};
use crate::clock::mono_ns;
use crate::jwt::Minter;
use crate::latency::{new_histogram, Percentiles, Window};
use crate::procstat::ProcSample;
use crate::progress::LiveView;
use crate::report::{write_outputs, Incidents, ReconnectReport, Report};
use crate::resume::ResumeCounts;
use crate::schedule::Arrivals;
use crate::targets::Target;
use crate::worker::{DropMode, RoomPlan, Timing, WorkerPlan, WorkerResult};

use super::{base_plan, join_workers, outputs, run_info, run_prefix, sample_server, server_cost};
use find_max::find_max;
use threads::{abort, await_setup, spawn_workers, watch, Edge};

/// The shape of a broadcast scenario (fanout, chat, churn).
#[derive(Debug, Clone)]
pub struct BroadcastSpec {
    /// Scenario name.
    pub scenario: &'static str,
    /// Rooms.
    pub rooms: usize,
    /// Members per room for the whole run.
    pub members: usize,
    /// Senders per room.
    pub senders: usize,
    /// Churners per room.
    pub churners: usize,
    /// Joins plus leaves per second, all churners together.
    pub churn_rate: f64,
    /// The reconnect scenario's drops (None: nobody drops).
    pub drops: Option<DropSpec>,
}

/// Who drops their connection in the reconnect scenario, how often and how.
#[derive(Debug, Clone)]
pub struct DropSpec {
    /// Members per room that drop and resume (the last ones; never senders).
    pub droppers: usize,
    /// Drops per second over all dropping members.
    pub per_second: f64,
    /// Close the old connection first, leave it open, or alternate.
    pub mode: DropMode,
}

impl BroadcastSpec {
    /// A scenario without churners.
    pub fn new(scenario: &'static str, rooms: usize, members: usize, senders: usize) -> Self {
        Self {
            scenario,
            rooms,
            members,
            senders,
            churners: 0,
            churn_rate: 0.0,
            drops: None,
        }
    }

    fn params(&self, load: &LoadArgs, rate: f64) -> String {
        let mut p = format!(
            "rooms={} members={} senders={} rate={}/s{} body={}B",
            self.rooms,
            self.members,
            self.senders,
            rate,
            if load.poisson { " poisson" } else { "" },
            load.body_size
        );
        if self.churners > 0 {
            p += &format!(
                " churners={} churn-rate={}/s",
                self.churners, self.churn_rate
            );
        }
        if let Some(d) = &self.drops {
            p += &format!(
                " droppers={}/room drops={}/s drop-mode={}",
                d.droppers,
                d.per_second,
                d.mode.name()
            );
        }
        p
    }
}

/// Runs a broadcast scenario (or `--find-max` over it), prints and writes the report.
/// Returns whether the run counts as a success for the exit code.
pub fn broadcast(spec: &BroadcastSpec, args: &BroadcastArgs) -> Result<bool> {
    let BroadcastArgs { load, out, .. } = args;
    let outputs = outputs(out);
    // Before any load: a bad path must not cost a whole run.
    outputs.check()?;
    if let Some(drops) = &spec.drops {
        check_reconnect(drops, args)?;
    }
    if load.find_max {
        return find_max(spec, args, &outputs);
    }
    let (report, hist) = measure(spec, args, load.rate, 0)?;
    print!("{}", report.table());
    write_outputs(&report, &hist, &outputs)?;
    Ok(!report.has_errors() || load.tolerate_loss)
}

/// What the reconnect scenario refuses before anything starts: other targets (no
/// resume there), `--find-max` (drops would compete with the rate it seeks) and rooms
/// with no member left to drop.
fn check_reconnect(drops: &DropSpec, args: &BroadcastArgs) -> Result<()> {
    if args.target.target != Target::Corecast {
        bail!(
            "reconnect supports only --target corecast (it resumes with since_seq and \
             replace_existing), not {}",
            args.target.target.name()
        );
    }
    if args.load.find_max {
        bail!("reconnect does not take --find-max");
    }
    if drops.droppers == 0 {
        bail!("reconnect needs at least one member per room that does not send (--members above --senders)");
    }
    Ok(())
}

/// One measured run of a broadcast scenario at `rate` msgs/s per sender (`run`: its
/// number among `--find-max`'s steps). Returns its report and latency histogram.
fn measure(
    spec: &BroadcastSpec,
    args: &BroadcastArgs,
    rate: f64,
    run: usize,
) -> Result<(Report, Histogram<u64>)> {
    let BroadcastArgs {
        target,
        setup,
        load,
        out,
    } = args;
    if spec.senders > spec.members {
        bail!(
            "--senders ({}) cannot exceed --members ({})",
            spec.senders,
            spec.members
        );
    }
    // Tokens are minted while the workers are built, long before the window; each
    // run (a --find-max step) mints afresh, valid for the longest it can take.
    let run_s = setup.setup_timeout + load.warmup + load.duration + load.drain;
    let jwt = target.minter(run_s)?;
    let plans = plan_workers(spec, args, rate, run, jwt.as_ref());
    let threads = plans.len();
    let before = sample_server(target.server_pid)?;
    let mut view = LiveView::new(out.quiet, ((load.warmup + load.duration) * 1000.0) as u64);
    let setting_up = format!(
        "setting up {} connections",
        spec.rooms * (spec.members + spec.churners)
    );
    view.message(mono_ns(), &setting_up);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let (progress_tx, progress_rx) = mpsc::channel();
    let (starts, handles) = spawn_workers(plans, setup.timeout_ns(), &ready_tx, progress_tx)?;
    if let Some(e) = await_setup(&ready_rx, handles.len(), &mut view, &setting_up) {
        abort(&starts, handles);
        view.finish();
        bail!("setup failed: {e}");
    }
    let timing = timing(load);
    for s in &starts {
        let _ = s.send(Some(timing));
    }
    let (start, end) = watch(&handles, &progress_rx, timing, &mut view, target.server_pid)?;
    view.finish();
    let measured = Measured {
        threads,
        before,
        start,
        end,
        results: join_workers(handles)?,
    };
    Ok(measured.report(spec, args, rate))
}

/// One plan per harness thread (at most one per room): rooms dealt out in turn, the
/// load's rate, arrivals, body and seed, each worker's share of the churn rate, and
/// `jwt` to mint login tokens with.
fn plan_workers(
    spec: &BroadcastSpec,
    args: &BroadcastArgs,
    rate: f64,
    run: usize,
    jwt: Option<&Arc<Minter>>,
) -> Vec<WorkerPlan> {
    let BroadcastArgs {
        target,
        setup,
        load,
        ..
    } = args;
    let threads = target.threads.clamp(1, spec.rooms.max(1));
    let prefix = run_prefix(run);
    let mut plans: Vec<WorkerPlan> = (0..threads)
        .map(|t| base_plan(target, jwt, setup.setup_concurrency, &prefix, t))
        .collect();
    for r in 0..spec.rooms {
        plans[r % threads].rooms.push(RoomPlan {
            members: spec.members,
            senders: spec.senders,
            churners: spec.churners,
            droppers: spec.drops.as_ref().map_or(0, |d| d.droppers),
        });
    }
    let total_droppers = spec.drops.as_ref().map_or(0, |d| spec.rooms * d.droppers);
    let total_churners = (spec.rooms * spec.churners).max(1) as f64;
    for (t, plan) in plans.iter_mut().enumerate() {
        let churners: usize = plan.rooms.iter().map(|r| r.churners).sum();
        plan.rate = rate;
        plan.arrivals = if load.poisson {
            Arrivals::Poisson
        } else {
            Arrivals::Constant
        };
        plan.body_size = load.body_size;
        plan.churn_rate = spec.churn_rate * churners as f64 / total_churners;
        plan.seed = load.seed.wrapping_mul(1_000_003).wrapping_add(t as u64);
        plan.skip_counter = if t == 0 {
            load.debug_skip_counter
        } else {
            None
        };
        plan.spin_ns = load.spin_us * 1000;
        if let Some(d) = &spec.drops {
            plan.drop_rate = d.per_second / total_droppers.max(1) as f64;
            plan.drop_mode = d.mode;
        }
    }
    plans
}

/// The run's clock from now: 20 ms to start every worker, then warm-up, the measured
/// window and the drain.
fn timing(load: &LoadArgs) -> Timing {
    let start_ns = mono_ns() + 20_000_000;
    let warm_end = start_ns + (load.warmup * 1e9) as u64;
    let send_end = warm_end + (load.duration * 1e9) as u64;
    Timing {
        start_ns,
        window: Window {
            start_ns: warm_end,
            end_ns: send_end,
        },
        drain_ns: (load.drain * 1e9) as u64,
    }
}

/// What a run measured: the workers' results and the samples around them.
struct Measured {
    threads: usize,
    /// The server before connecting.
    before: Option<ProcSample>,
    /// The window's start and end edges.
    start: Option<Edge>,
    end: Option<Edge>,
    results: Vec<WorkerResult>,
}

impl Measured {
    /// The run's report and its merged latency histogram.
    fn report(
        &self,
        spec: &BroadcastSpec,
        args: &BroadcastArgs,
        rate: f64,
    ) -> (Report, Histogram<u64>) {
        let BroadcastArgs {
            target, load, out, ..
        } = args;
        let results = &self.results;
        let (latency, lag, checks) = merge(results);
        let reconnect = spec
            .drops
            .as_ref()
            .map(|d| reconnect_report(d, spec, results));
        let sum = |f: fn(&WorkerResult) -> u64| results.iter().map(f).sum::<u64>();
        let connections = sum(|r| r.connections);
        let delivered = sum(|r| r.counters.delivered_in_window);
        let all_delivered = sum(|r| r.counters.all_delivered_in_window);
        let window_s = load.duration;
        let mut report = Report {
            run: run_info(
                out.label.as_deref(),
                spec.scenario,
                target.name(),
                spec.params(load, rate),
            ),
            duration_s: window_s,
            warmup_s: load.warmup,
            connections,
            offered_msgs_per_s: (spec.rooms * spec.senders) as f64 * rate,
            sent_msgs_per_s: sum(|r| r.counters.sent_in_window) as f64 / window_s,
            offered_deliveries_per_s: sum(|r| r.counters.offered_deliveries) as f64 / window_s,
            achieved_deliveries_per_s: delivered as f64 / window_s,
            all_deliveries_per_s: all_delivered as f64 / window_s,
            send_lag: Percentiles::of(&lag),
            checks,
            incidents: Incidents::sum(results.iter().map(|r| &r.counters.incidents)),
            harness_cpu_pct: match (&self.start, &self.end) {
                (Some(a), Some(b)) => (b.cpu_us - a.cpu_us) as f64 / (window_s * 1e6) * 100.0,
                _ => 0.0,
            },
            harness_threads: self.threads,
            harness_preemptions: self
                .end
                .as_ref()
                .map_or(0, |e| e.preemptions)
                .saturating_sub(self.start.as_ref().map_or(0, |s| s.preemptions)),
            server: server_cost(
                target.server_pid,
                self.before,
                self.start.as_ref().and_then(|s| s.server),
                self.end.as_ref().and_then(|e| e.server),
                window_s,
                delivered,
                connections,
            ),
            reconnect,
            ..Report::default()
        };
        report.set_latency(&latency);
        (report, latency)
    }
}

/// The reconnect scenario's part of the report: drops and resumes, replay latency and
/// resume time over all workers.
fn reconnect_report(
    drops: &DropSpec,
    spec: &BroadcastSpec,
    results: &[WorkerResult],
) -> ReconnectReport {
    let mut counts = ResumeCounts::default();
    let mut replay = new_histogram();
    let mut resume = new_histogram();
    for r in results {
        counts.add(&r.counters.resume);
        // Same bounds everywhere: cannot fail.
        let _ = replay.add(&r.replay_latency);
        let _ = resume.add(&r.resume_time);
    }
    ReconnectReport {
        dropping_members: (spec.rooms * drops.droppers) as u64,
        drop_mode: drops.mode.name().into(),
        counts,
        replay_latency: Percentiles::of(&replay),
        resume_time: Percentiles::of(&resume),
    }
}

/// The workers' latency and send-lag histograms and check counts, added up.
fn merge(results: &[WorkerResult]) -> (Histogram<u64>, Histogram<u64>, CheckCounts) {
    let mut latency = new_histogram();
    let mut lag = new_histogram();
    let mut checks = CheckCounts::default();
    for r in results {
        // Same bounds everywhere: cannot fail.
        let _ = latency.add(&r.latency);
        let _ = lag.add(&r.send_lag);
        checks.add(&r.checks);
    }
    (latency, lag, checks)
}
