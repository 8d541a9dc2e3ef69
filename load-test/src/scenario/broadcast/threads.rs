//! The worker threads of one broadcast run: each sets its worker up and waits; the
//! run starts them all on one timing, then watches them to the end, sampling the
//! server and the harness at the edges of the measured window.

use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::clock::{mono_ns, process_cpu_us, process_preemptions, set_fine_timer_slack};
use crate::procstat::ProcSample;
use crate::progress::LiveView;
use crate::worker::{Progress, Timing, Worker, WorkerPlan, WorkerResult};

use crate::scenario::sample_server;

/// What starts a worker thread: the run's timing, or `None` to abort.
pub(super) type StartSender = mpsc::Sender<Option<Timing>>;
/// A worker thread, ending with its worker's results.
pub(super) type WorkerHandle = JoinHandle<Result<WorkerResult>>;

/// Starts one thread per plan (see [`worker_thread`]); returns each one's start
/// channel and handle.
pub(super) fn spawn_workers(
    plans: Vec<WorkerPlan>,
    setup_timeout: u64,
    ready_tx: &mpsc::Sender<Result<(), String>>,
    progress_tx: mpsc::Sender<Progress>,
) -> Result<(Vec<StartSender>, Vec<WorkerHandle>)> {
    let mut starts = Vec::new();
    let mut handles = Vec::new();
    for plan in plans {
        let (start_tx, start_rx) = mpsc::channel::<Option<Timing>>();
        starts.push(start_tx);
        let ready_tx = ready_tx.clone();
        let progress_tx = progress_tx.clone();
        let handle = thread::Builder::new()
            .name(format!("load-{}", plan.index))
            .spawn(move || worker_thread(plan, setup_timeout, &ready_tx, &start_rx, &progress_tx))
            .context("spawn worker thread")?;
        handles.push(handle);
    }
    Ok((starts, handles))
}

/// A worker thread: sets its worker up, says so on `ready_tx` (or why not), waits for
/// the timing on `start_rx`, drives the run and hands back the results.
fn worker_thread(
    plan: WorkerPlan,
    setup_timeout: u64,
    ready_tx: &mpsc::Sender<Result<(), String>>,
    start_rx: &mpsc::Receiver<Option<Timing>>,
    progress_tx: &mpsc::Sender<Progress>,
) -> Result<WorkerResult> {
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
    worker.drive_broadcast(timing, progress_tx)?;
    Ok(worker.finish())
}

/// Waits until all `workers` have reported on their setup, keeping the live view
/// going; returns the first setup error, if any.
pub(super) fn await_setup(
    ready_rx: &mpsc::Receiver<Result<(), String>>,
    workers: usize,
    view: &mut LiveView,
    setting_up: &str,
) -> Option<String> {
    let mut setup_error = None;
    let mut waiting = workers;
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
        view.heartbeat(mono_ns(), setting_up);
    }
    setup_error
}

/// The server's and the harness's counters at one edge of the measured window.
pub(super) struct Edge {
    pub(super) server: Option<ProcSample>,
    pub(super) cpu_us: u64,
    pub(super) preemptions: u64,
}

impl Edge {
    fn sample(server_pid: Option<u32>) -> Result<Self> {
        Ok(Self {
            server: sample_server(server_pid)?,
            cpu_us: process_cpu_us(),
            preemptions: process_preemptions(),
        })
    }
}

/// Tells every worker thread not to start and waits for all of them.
pub(super) fn abort(starts: &[StartSender], handles: Vec<WorkerHandle>) {
    for s in starts {
        let _ = s.send(None);
    }
    for h in handles {
        let _ = h.join();
    }
}

/// Shows the workers' progress until all have finished, sampling the window's start
/// and end edges as the clock passes them (`None`: not reached).
pub(super) fn watch(
    handles: &[WorkerHandle],
    progress_rx: &mpsc::Receiver<Progress>,
    timing: Timing,
    view: &mut LiveView,
    server_pid: Option<u32>,
) -> Result<(Option<Edge>, Option<Edge>)> {
    let (warm_end, send_end) = (timing.window.start_ns, timing.window.end_ns);
    let (mut start, mut end) = (None, None);
    while handles.iter().any(|h| !h.is_finished()) {
        match progress_rx.recv_timeout(Duration::from_millis(20)) {
            Ok(p) => view.add(p),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => thread::sleep(Duration::from_millis(5)),
        }
        let now = mono_ns();
        if now >= warm_end && start.is_none() {
            start = Some(Edge::sample(server_pid)?);
        }
        if now >= send_end && end.is_none() {
            end = Some(Edge::sample(server_pid)?);
        }
        let phase = if now < warm_end {
            "warm-up"
        } else if now < send_end {
            "measuring"
        } else {
            "draining"
        };
        view.tick(now, phase, now.saturating_sub(timing.start_ns) / 1_000_000);
    }
    Ok((start, end))
}
