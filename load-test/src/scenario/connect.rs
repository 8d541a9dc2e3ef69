//! The connect scenario: clients spread over the harness threads connect and log in
//! (as fast as `--concurrency` allows, or at `--connect-rate`); reports logins/s,
//! connect+login latency and the server's cost of the logged-in clients.

use std::sync::{mpsc, Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;

use crate::cli::ConnectArgs;
use crate::clock::{mono_ns, process_cpu_us, set_fine_timer_slack};
use crate::jwt::Minter;
use crate::latency::new_histogram;
use crate::procstat::ProcSample;
use crate::progress::LiveView;
use crate::report::{write_outputs, Incidents, Report};
use crate::schedule::Arrivals;
use crate::worker::{ConnectPacing, Progress, Worker, WorkerResult};

use super::{base_plan, join_workers, outputs, run_info, run_prefix, sample_server, server_cost};

/// A connect thread, ending with its worker's results and when its first connect started.
type ConnectHandle = JoinHandle<Result<(WorkerResult, u64)>>;

/// The connect scenario.
pub fn connect(args: &ConnectArgs) -> Result<bool> {
    let target = &args.target;
    let outputs = outputs(&args.out);
    outputs.check()?;
    check_budget(args)?;
    let threads = target.threads.clamp(1, args.clients.max(1));
    let prefix = run_prefix(0);
    // Every client's connection is built here, and with --jwt-* its login token
    // minted, before the server and the harness are sampled and before the first
    // connect: logins/s, connect latency and CPU never include the harness's signing.
    let jwt = target.minter(args.timeout)?;
    let workers = build_connectors(args, threads, &prefix, jwt.as_ref())?;
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
    let handles = spawn_connectors(workers, progress_tx, connected_tx, &release)?;
    await_connected(&handles, &progress_rx, &connected_rx, &mut view)?;
    view.finish();
    let sampled = Sampled {
        before,
        after: sample_server(target.server_pid)?,
        harness_cpu_us: process_cpu_us() - cpu_before,
        seconds: mono_ns().saturating_sub(sampled_from) as f64 / 1e9,
    };
    release.wait();
    let results = join_workers(handles)?;
    let (report, connect_latency) = sampled.report(args, threads, &results);
    print!("{}", report.table());
    write_outputs(&report, &connect_latency, &outputs)?;
    Ok(!report.has_errors() || args.tolerate_loss)
}

/// Refuses more clients than this process has descriptors for.
fn check_budget(args: &ConnectArgs) -> Result<()> {
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
    Ok(())
}

/// One worker per harness thread, each with its share of the clients (built, not
/// connected; tokens minted by `jwt`), of `--concurrency` and of `--connect-rate`.
fn build_connectors(
    args: &ConnectArgs,
    threads: usize,
    prefix: &str,
    jwt: Option<&Arc<Minter>>,
) -> Result<Vec<(Worker, ConnectPacing)>> {
    let mut workers = Vec::new();
    let concurrency = (args.concurrency / threads).max(1);
    for t in 0..threads {
        let mut plan = base_plan(&args.target, jwt, concurrency, prefix, t);
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
        workers.push((Worker::new(plan)?, pacing));
    }
    Ok(workers)
}

/// Starts one connect thread per worker (see [`connector`]).
fn spawn_connectors(
    workers: Vec<(Worker, ConnectPacing)>,
    progress_tx: mpsc::Sender<Progress>,
    connected_tx: mpsc::Sender<()>,
    release: &Arc<Barrier>,
) -> Result<Vec<ConnectHandle>> {
    let mut handles = Vec::new();
    for (t, (worker, pacing)) in workers.into_iter().enumerate() {
        let progress_tx = progress_tx.clone();
        let connected_tx = connected_tx.clone();
        let release = release.clone();
        handles.push(
            thread::Builder::new()
                .name(format!("connect-{t}"))
                .spawn(move || connector(worker, pacing, &progress_tx, &connected_tx, &release))
                .context("spawn worker thread")?,
        );
    }
    Ok(handles)
}

/// A connect thread: connects its clients, says so on `connected_tx` (whether or not
/// that went well), holds them until `release`, then hands back the results.
fn connector(
    mut worker: Worker,
    pacing: ConnectPacing,
    progress_tx: &mpsc::Sender<Progress>,
    connected_tx: &mpsc::Sender<()>,
    release: &Barrier,
) -> Result<(WorkerResult, u64)> {
    set_fine_timer_slack();
    let run = worker
        .drive_connect(pacing, progress_tx)
        .map(|start| (worker, start));
    let _ = connected_tx.send(());
    release.wait();
    run.map(|(w, start)| (w.finish(), start))
}

/// Shows the connect progress until every thread has connected its clients.
fn await_connected(
    handles: &[ConnectHandle],
    progress_rx: &mpsc::Receiver<Progress>,
    connected_rx: &mpsc::Receiver<()>,
    view: &mut LiveView,
) -> Result<()> {
    let wall_start = mono_ns();
    let mut connected = 0;
    while connected < handles.len() {
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
    Ok(())
}

/// The server before connecting and with every client connected, and the harness's
/// CPU over the same `seconds`.
struct Sampled {
    before: Option<ProcSample>,
    after: Option<ProcSample>,
    harness_cpu_us: u64,
    seconds: f64,
}

impl Sampled {
    /// The connect report of `results` (each with its first connect's start) and the
    /// merged connect latency.
    fn report(
        &self,
        args: &ConnectArgs,
        threads: usize,
        results: &[(WorkerResult, u64)],
    ) -> (Report, Histogram<u64>) {
        let target = &args.target;
        let first_start = results.iter().map(|(_, s)| *s).min().unwrap_or(0);
        let last_ready = results
            .iter()
            .map(|(r, _)| r.last_ready_ns)
            .max()
            .unwrap_or(0);
        let elapsed_s = last_ready.saturating_sub(first_start) as f64 / 1e9;
        let mut connect_latency = new_histogram();
        for (r, _) in results {
            let _ = connect_latency.add(&r.send_lag);
        }
        let incidents = Incidents::sum(results.iter().map(|(r, _)| &r.counters.incidents));
        let logged_in = connect_latency.len();
        let mut report = Report {
            run: run_info(
                args.out.label.as_deref(),
                "connect",
                target.name(),
                params(args),
            ),
            duration_s: elapsed_s,
            connections: logged_in,
            incidents,
            connections_per_s: if elapsed_s > 0.0 {
                logged_in as f64 / elapsed_s
            } else {
                0.0
            },
            harness_cpu_pct: self.harness_cpu_us as f64 / (self.seconds.max(1e-9) * 1e6) * 100.0,
            harness_threads: threads,
            // CPU per 1000 logins, RSS per logged-in connection.
            server: server_cost(
                target.server_pid,
                self.before,
                self.before,
                self.after,
                self.seconds.max(1e-9),
                logged_in,
                logged_in,
            ),
            ..Report::default()
        };
        report.set_latency(&connect_latency);
        (report, connect_latency)
    }
}

/// The report's parameters: clients, and their rate or concurrency.
fn params(args: &ConnectArgs) -> String {
    format!(
        "clients={} {}",
        args.clients,
        match args.connect_rate {
            Some(r) => format!("rate={r}/s{}", if args.poisson { " poisson" } else { "" }),
            None => format!("concurrency={}", args.concurrency),
        }
    )
}
