//! Runs a scenario: builds one plan per harness thread, sets everything up, starts all
//! workers on one shared clock, samples server and harness cost around the measured
//! window, merges the workers' results into a [`Report`]. Also `--find-max`.

use std::net::IpAddr;
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hdrhistogram::Histogram;

use crate::broadcast::{Timing, WorkerResult};
use crate::check::CheckCounts;
use crate::cli::{BroadcastArgs, LoadArgs, TargetArgs};
use crate::clock::{mono_ns, process_cpu_us, process_preemptions, set_fine_timer_slack};
use crate::connect::ConnectPacing;
use crate::latency::{new_histogram, Percentiles, Window};
use crate::procstat::{self, ProcSample};
use crate::progress::LiveView;
use crate::report::{write_outputs, Incidents, Outputs, Report, ServerCost, Step};
use crate::schedule::Arrivals;
use crate::worker::{RoomPlan, Worker, WorkerPlan};

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
        p
    }
}

/// A unique-per-run name prefix: player ids must be unique server-wide, and rooms of
/// earlier runs may still be draining.
pub fn run_prefix(run: usize) -> String {
    let nanos = mono_ns() % 1_000_000;
    format!("L{}x{}x{}", std::process::id(), run, nanos)
}

fn sources(target: &TargetArgs) -> Vec<IpAddr> {
    (0..target.source_addrs)
        .map(|i| IpAddr::from([127, 0, 0, 2 + i]))
        .collect()
}

/// A worker's plan with nothing to do yet: target and sources from `target`, at most
/// `setup_concurrency` handshakes in flight, names under `prefix` + `w<index>`.
pub(crate) fn base_plan(
    target: &TargetArgs,
    setup_concurrency: usize,
    prefix: &str,
    index: usize,
) -> WorkerPlan {
    WorkerPlan {
        index,
        target: target.target,
        addr: target.addr,
        token: target.token.clone(),
        prefix: format!("{prefix}w{index}"),
        rooms: Vec::new(),
        clients: 0,
        rate: 0.0,
        arrivals: Arrivals::Constant,
        body_size: crate::body::STAMP_LEN,
        churn_rate: 0.0,
        setup_concurrency: setup_concurrency.max(1),
        sources: sources(target),
        seed: index as u64,
        skip_counter: None,
        spin_ns: 0,
    }
}

pub(crate) fn sample_server(pid: Option<u32>) -> Result<Option<ProcSample>> {
    pid.map(procstat::sample).transpose()
}

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

/// The server's cost: CPU from `start` to `end` over `window_s` seconds and per 1000
/// `deliveries` (connect: logins), RSS from `before` (before connecting) to `end` per
/// connection. `None` without `--server-pid` or its samples.
pub(crate) fn server_cost(
    pid: Option<u32>,
    before: Option<ProcSample>,
    start: Option<ProcSample>,
    end: Option<ProcSample>,
    window_s: f64,
    deliveries: u64,
    connections: u64,
) -> Option<ServerCost> {
    let (pid, before, start, end) = (pid?, before?, start?, end?);
    let cpu_us = end.cpu_us.saturating_sub(start.cpu_us);
    Some(ServerCost {
        pid,
        cpu_us,
        cpu_pct: cpu_us as f64 / (window_s * 1e6) * 100.0,
        cpu_us_per_1000_deliveries: if deliveries > 0 {
            cpu_us as f64 * 1000.0 / deliveries as f64
        } else {
            0.0
        },
        rss_before_kib: before.rss_kib,
        rss_after_kib: end.rss_kib,
        rss_per_connection_bytes: (end.rss_kib as f64 - before.rss_kib as f64) * 1024.0
            / connections.max(1) as f64,
    })
}

/// The harness's own command line, for the report.
pub(crate) fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// Seconds since the Unix epoch, for the report.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs a broadcast scenario once at `rate` msgs/s per sender.
pub fn run_broadcast_once(
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
    let threads = target.threads.clamp(1, spec.rooms.max(1));
    let prefix = run_prefix(run);
    let mut plans: Vec<WorkerPlan> = (0..threads)
        .map(|t| base_plan(target, setup.setup_concurrency, &prefix, t))
        .collect();
    for r in 0..spec.rooms {
        plans[r % threads].rooms.push(RoomPlan {
            members: spec.members,
            senders: spec.senders,
            churners: spec.churners,
        });
    }
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
    }

    let before = sample_server(target.server_pid)?;
    let mut view = LiveView::new(out.quiet, ((load.warmup + load.duration) * 1000.0) as u64);
    let setting_up = format!(
        "setting up {} connections",
        spec.rooms * (spec.members + spec.churners)
    );
    view.message(mono_ns(), &setting_up);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let (progress_tx, progress_rx) = mpsc::channel();
    let mut starts = Vec::new();
    let mut handles = Vec::new();
    let setup_timeout = setup.timeout_ns();
    for plan in plans {
        let (start_tx, start_rx) = mpsc::channel::<Option<Timing>>();
        starts.push(start_tx);
        let ready_tx = ready_tx.clone();
        let progress_tx = progress_tx.clone();
        let handle = thread::Builder::new()
            .name(format!("load-{}", plan.index))
            .spawn(move || -> Result<WorkerResult> {
                set_fine_timer_slack();
                let setup = Worker::new(plan).and_then(|mut w| w.setup(setup_timeout).map(|()| w));
                let mut worker = match setup {
                    Ok(w) => {
                        let _ = ready_tx.send(Ok(()));
                        w
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:#}")));
                        return Err(e);
                    }
                };
                let Ok(Some(timing)) = start_rx.recv() else {
                    bail!("run aborted")
                };
                worker.run_broadcast(timing, &progress_tx)?;
                Ok(worker.finish())
            })
            .context("spawn worker thread")?;
        handles.push(handle);
    }
    drop(progress_tx);
    let mut setup_error = None;
    let mut waiting = handles.len();
    while waiting > 0 {
        // Not a blocking recv: the view reports a long setup as it goes.
        match ready_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(())) => waiting -= 1,
            Ok(Err(e)) => {
                waiting -= 1;
                setup_error = setup_error.or(Some(e));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                setup_error = setup_error.or(Some("worker thread died".into()));
                break;
            }
        }
        view.heartbeat(mono_ns(), &setting_up);
    }
    if let Some(e) = setup_error {
        for s in &starts {
            let _ = s.send(None);
        }
        for h in handles {
            let _ = h.join();
        }
        view.finish();
        bail!("setup failed: {e}");
    }
    let start_ns = mono_ns() + 20_000_000;
    let warm_end = start_ns + (load.warmup * 1e9) as u64;
    let send_end = warm_end + (load.duration * 1e9) as u64;
    let timing = Timing {
        start_ns,
        window: Window {
            start_ns: warm_end,
            end_ns: send_end,
        },
        drain_ns: (load.drain * 1e9) as u64,
    };
    for s in &starts {
        let _ = s.send(Some(timing));
    }
    let (mut server_start, mut server_end, mut cpu_start, mut cpu_end) = (None, None, None, None);
    let (mut preempt_start, mut preempt_end) = (0, 0);
    while handles.iter().any(|h| !h.is_finished()) {
        match progress_rx.recv_timeout(Duration::from_millis(20)) {
            Ok(p) => view.add(p),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => thread::sleep(Duration::from_millis(5)),
        }
        let now = mono_ns();
        if now >= warm_end && cpu_start.is_none() {
            server_start = Some(sample_server(target.server_pid)?);
            cpu_start = Some(process_cpu_us());
            preempt_start = process_preemptions();
        }
        if now >= send_end && cpu_end.is_none() {
            server_end = Some(sample_server(target.server_pid)?);
            cpu_end = Some(process_cpu_us());
            preempt_end = process_preemptions();
        }
        let phase = if now < warm_end {
            "warm-up"
        } else if now < send_end {
            "measuring"
        } else {
            "draining"
        };
        view.tick(now, phase, now.saturating_sub(start_ns) / 1_000_000);
    }
    view.finish();
    let mut results = Vec::new();
    for h in handles {
        results.push(h.join().map_err(|_| anyhow!("worker thread panicked"))??);
    }
    let (latency, lag, checks) = merge(&results);
    let sum = |f: fn(&WorkerResult) -> u64| results.iter().map(f).sum::<u64>();
    let connections = sum(|r| r.connections);
    let delivered = sum(|r| r.counters.delivered_in_window);
    let all_delivered = sum(|r| r.counters.all_delivered_in_window);
    let window_s = load.duration;
    let mut report = Report {
        label: out
            .label
            .clone()
            .unwrap_or_else(|| format!("{} {}", target.target.name(), spec.scenario)),
        scenario: spec.scenario.into(),
        target: target.target.name().into(),
        command: command_line(),
        params: spec.params(load, rate),
        unix_time: unix_now(),
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
        harness_cpu_pct: match (cpu_start, cpu_end) {
            (Some(a), Some(b)) => (b - a) as f64 / (window_s * 1e6) * 100.0,
            _ => 0.0,
        },
        harness_threads: threads,
        harness_preemptions: preempt_end.saturating_sub(preempt_start),
        server: server_cost(
            target.server_pid,
            before,
            server_start.flatten(),
            server_end.flatten(),
            window_s,
            delivered,
            connections,
        ),
        ..Report::default()
    };
    report.set_latency(&latency);
    Ok((report, latency))
}

/// Runs a broadcast scenario (or `--find-max` over it), prints and writes the report.
/// Returns whether the run counts as a success for the exit code.
pub fn run_broadcast(spec: &BroadcastSpec, args: &BroadcastArgs) -> Result<bool> {
    let BroadcastArgs { load, out, .. } = args;
    let outputs = Outputs {
        json: out.json.as_deref(),
        hgrm: out.hgrm.as_deref(),
        plot: out.plot.as_deref(),
    };
    // Before any load: a bad path must not cost a whole run.
    outputs.check()?;
    if !load.find_max {
        let (report, hist) = run_broadcast_once(spec, args, load.rate, 0)?;
        print!("{}", report.table());
        write_outputs(&report, &hist, &outputs)?;
        return Ok(!report.has_errors() || load.tolerate_loss);
    }
    let mut rate = load.rate;
    let mut steps = Vec::new();
    let mut best: Option<(Report, Histogram<u64>)> = None;
    let mut last = None;
    for run in 0..load.max_steps.max(1) {
        let (report, hist) = run_broadcast_once(spec, args, rate, run)?;
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
        let ok = verdict == "ok";
        println!(
            "find-max step {}: {:.0} msgs/s offered, {:.0} deliveries/s achieved ({:.1}%), p99 {:.3} ms: {}",
            run + 1,
            report.offered_msgs_per_s,
            report.achieved_deliveries_per_s,
            ratio * 100.0,
            p99_ms,
            verdict
        );
        steps.push(Step {
            offered_msgs_per_s: report.offered_msgs_per_s,
            achieved_ratio: ratio,
            p99_us: report.latency.p99_us,
            ok,
            verdict,
        });
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
            report.offered_msgs_per_s, report.params
        );
    } else {
        println!("no sustainable rate found: even the first step failed");
    }
    print!("{}", report.table());
    write_outputs(&report, &hist, &outputs)?;
    Ok(found || load.tolerate_loss)
}

/// The connect scenario.
pub fn run_connect(args: &crate::cli::ConnectArgs) -> Result<bool> {
    let target = &args.target;
    let outputs = Outputs {
        json: args.out.json.as_deref(),
        hgrm: args.out.hgrm.as_deref(),
        plot: args.out.plot.as_deref(),
    };
    outputs.check()?;
    let budget = corecast::config::connection_budget();
    if args.clients as u64 > budget {
        bail!(
            "--clients {} exceeds the {budget} connections this process can hold (open-file \
             limit {}, less {} descriptors kept for the harness); use `idle`, which \
             spreads clients over processes, for more",
            args.clients,
            corecast::config::raise_nofile_limit(),
            corecast::config::FD_RESERVE
        );
    }
    let threads = target.threads.clamp(1, args.clients.max(1));
    let prefix = run_prefix(0);
    let before = sample_server(target.server_pid)?;
    let cpu_before = process_cpu_us();
    let sampled_from = mono_ns();
    // Every worker reports when its clients are all in (or it failed), then holds
    // them open until the server has been sampled: the figures are of connected
    // clients, not of a server busy closing them.
    let (connected_tx, connected_rx) = mpsc::channel::<()>();
    let release = Arc::new(Barrier::new(threads + 1));
    let view_total = (args.timeout * 1000.0) as u64;
    let mut view = LiveView::new(args.out.quiet, view_total);
    let (progress_tx, progress_rx) = mpsc::channel();
    let mut handles = Vec::new();
    let concurrency = (args.concurrency / threads).max(1);
    for t in 0..threads {
        let mut plan = base_plan(target, concurrency, &prefix, t);
        plan.clients = args.clients / threads + usize::from(t < args.clients % threads);
        plan.arrivals = if args.poisson {
            Arrivals::Poisson
        } else {
            Arrivals::Constant
        };
        plan.seed = t as u64 + 1;
        let pacing = ConnectPacing {
            rate: args.connect_rate.map(|r| r / threads as f64),
            concurrency,
            timeout_ns: (args.timeout * 1e9) as u64,
        };
        let progress_tx = progress_tx.clone();
        let connected_tx = connected_tx.clone();
        let release = release.clone();
        handles.push(
            thread::Builder::new()
                .name(format!("connect-{t}"))
                .spawn(move || -> Result<(WorkerResult, u64)> {
                    set_fine_timer_slack();
                    let run = Worker::new(plan).and_then(|mut w| {
                        let start = w.run_connect(pacing, &progress_tx)?;
                        Ok((w, start))
                    });
                    let _ = connected_tx.send(());
                    release.wait();
                    run.map(|(w, start)| (w.finish(), start))
                })
                .context("spawn worker thread")?,
        );
    }
    drop(progress_tx);
    drop(connected_tx);
    let wall_start = mono_ns();
    let mut connected = 0;
    while connected < threads {
        if let Ok(p) = progress_rx.recv_timeout(Duration::from_millis(20)) {
            view.add(p);
        }
        connected += connected_rx.try_iter().count();
        // A worker that ends before the release can only have panicked.
        if handles.iter().any(|h| h.is_finished()) {
            bail!("a connect worker thread panicked");
        }
        let now = mono_ns();
        view.tick(now, "connecting", (now - wall_start) / 1_000_000);
    }
    view.finish();
    let after = sample_server(target.server_pid)?;
    let cpu_after = process_cpu_us();
    let sampled_s = mono_ns().saturating_sub(sampled_from) as f64 / 1e9;
    release.wait();
    let mut results = Vec::new();
    for h in handles {
        results.push(h.join().map_err(|_| anyhow!("worker thread panicked"))??);
    }
    let first_start = results.iter().map(|(_, s)| *s).min().unwrap_or(0);
    let last_ready = results
        .iter()
        .map(|(r, _)| r.last_ready_ns)
        .max()
        .unwrap_or(0);
    let elapsed_s = last_ready.saturating_sub(first_start) as f64 / 1e9;
    let mut connect_latency = new_histogram();
    for (r, _) in &results {
        let _ = connect_latency.add(&r.send_lag);
    }
    let incidents = Incidents::sum(results.iter().map(|(r, _)| &r.counters.incidents));
    let logged_in = connect_latency.len();
    let mut report = Report {
        label: args
            .out
            .label
            .clone()
            .unwrap_or_else(|| format!("{} connect", target.target.name())),
        scenario: "connect".into(),
        target: target.target.name().into(),
        command: command_line(),
        params: format!(
            "clients={} {}",
            args.clients,
            match args.connect_rate {
                Some(r) => format!("rate={r}/s{}", if args.poisson { " poisson" } else { "" }),
                None => format!("concurrency={}", args.concurrency),
            }
        ),
        unix_time: unix_now(),
        duration_s: elapsed_s,
        connections: logged_in,
        incidents,
        connections_per_s: if elapsed_s > 0.0 {
            logged_in as f64 / elapsed_s
        } else {
            0.0
        },
        harness_cpu_pct: (cpu_after - cpu_before) as f64 / (sampled_s.max(1e-9) * 1e6) * 100.0,
        harness_threads: threads,
        // CPU per 1000 logins, RSS per logged-in connection.
        server: server_cost(
            target.server_pid,
            before,
            before,
            after,
            sampled_s.max(1e-9),
            logged_in,
            logged_in,
        ),
        ..Report::default()
    };
    report.set_latency(&connect_latency);
    print!("{}", report.table());
    write_outputs(&report, &connect_latency, &outputs)?;
    Ok(!report.has_errors() || args.tolerate_loss)
}
