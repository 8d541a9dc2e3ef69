//! The scenarios, each from its command line to its printed and written report:
//! `broadcast` (fanout, chat, churn, and `--find-max` over them), `connect` and
//! `idle`. Each builds its workers' plans, runs them on threads of their own (or, for
//! a large `idle`, in child processes), samples server and harness cost around what it
//! measures, and turns the workers' results into a [`Report`](crate::report::Report).
//! Here: what they share.

mod broadcast;
mod burst;
mod connect;
mod idle;

use std::net::IpAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, Result};

use crate::cli::{OutputArgs, TargetArgs};
use crate::clock::mono_ns;
use crate::jwt::Minter;
use crate::procstat::{self, ProcSample};
use crate::report::{Outputs, RunInfo, ServerCost};
use crate::schedule::Arrivals;
use crate::worker::{DropMode, WorkerPlan};

pub use broadcast::{broadcast, BroadcastSpec, DropSpec};
pub use burst::burst;
pub use connect::connect;
pub use idle::{idle, idle_child};

/// A unique-per-run name prefix: player ids must be unique server-wide, and rooms of
/// earlier runs may still be draining.
fn run_prefix(run: usize) -> String {
    let nanos = mono_ns() % 1_000_000;
    format!("L{}x{}x{}", std::process::id(), run, nanos)
}

fn sources(target: &TargetArgs) -> Vec<IpAddr> {
    (0..target.source_addrs)
        .map(|i| IpAddr::from([127, 0, 0, 2 + i]))
        .collect()
}

/// A worker's plan with nothing to do yet: target and sources from `target`, login
/// tokens minted by `jwt` ([`TargetArgs::minter`](crate::cli::TargetArgs::minter)), at most `setup_concurrency` handshakes
/// in flight, names under `prefix` + `w<index>`.
fn base_plan(
    target: &TargetArgs,
    jwt: Option<&Arc<Minter>>,
    setup_concurrency: usize,
    prefix: &str,
    index: usize,
) -> WorkerPlan {
    WorkerPlan {
        index,
        target: target.target,
        addr: target.addr,
        transport: target.transport,
        token: target.token.clone(),
        jwt: jwt.cloned(),
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
        drop_rate: 0.0,
        drop_mode: DropMode::Close,
    }
}

/// The `--json`, `--hgrm` and `--plot` files of `out`.
fn outputs(out: &OutputArgs) -> Outputs<'_> {
    Outputs {
        json: out.json.as_deref(),
        hgrm: out.hgrm.as_deref(),
        plot: out.plot.as_deref(),
    }
}

fn sample_server(pid: Option<u32>) -> Result<Option<ProcSample>> {
    pid.map(procstat::sample).transpose()
}

/// Waits for every worker thread, in order; the first error (or panic) wins.
fn join_workers<T>(handles: Vec<JoinHandle<Result<T>>>) -> Result<Vec<T>> {
    let mut results = Vec::new();
    for h in handles {
        results.push(h.join().map_err(|_| anyhow!("worker thread panicked"))??);
    }
    Ok(results)
}

/// The server's cost: CPU from `start` to `end` over `window_s` seconds and per 1000
/// `deliveries` (connect: logins), RSS from `before` (before connecting) to `end` per
/// connection. `None` without `--server-pid` or its samples.
fn server_cost(
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

/// The head of this run's report: labelled `label` (`--label`) or "<target> <scenario>",
/// with the harness's own command line and the time now (seconds since the Unix epoch).
fn run_info(label: Option<&str>, scenario: &str, target: &str, params: String) -> RunInfo {
    RunInfo {
        label: label.map_or_else(|| format!("{target} {scenario}"), str::to_string),
        scenario: scenario.into(),
        target: target.into(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        params,
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}
