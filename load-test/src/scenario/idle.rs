//! The idle scenario: hold N logged-in (optionally joined) connections and report the
//! server's RSS per connection. Above `--per-process` connections (the file limit is
//! 20,000 per process here) child processes of this binary hold them, each from its
//! own loopback source address so ephemeral ports never run out.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::cli::{IdleArgs, IdleChildArgs, SetupArgs, TargetArgs, UnpacedArgs};
use crate::clock::{children_cpu_us, mono_ns, process_cpu_us};
use crate::jwt::Minter;
use crate::latency::new_histogram;
use crate::procstat::ProcSample;
use crate::progress::LiveView;
use crate::report::{write_outputs, Outputs, Report};
use crate::worker::{RoomPlan, Worker, WorkerPlan, KEEPALIVE_NS, KEEPALIVE_PARTS};

use super::{base_plan, run_info, run_prefix, sample_server, server_cost};

fn idle_plan(
    target: &TargetArgs,
    jwt: Option<&Arc<Minter>>,
    setup: &SetupArgs,
    prefix: String,
    connections: usize,
    rooms: usize,
) -> WorkerPlan {
    let mut plan = base_plan(target, jwt, setup.setup_concurrency, "", 0);
    plan.prefix = prefix;
    if rooms == 0 {
        plan.clients = connections;
    } else {
        for r in 0..rooms {
            let members = connections / rooms + usize::from(r < connections % rooms);
            plan.rooms.push(RoomPlan {
                members,
                senders: 0,
                churners: 0,
                droppers: 0,
            });
        }
    }
    plan
}

/// Keeps `worker`'s connections alive until `stop` returns true.
fn hold(worker: &mut Worker, mut stop: impl FnMut(u64) -> bool) -> Result<()> {
    worker.running = true;
    let mut next_keepalive = mono_ns() + KEEPALIVE_NS / KEEPALIVE_PARTS as u64;
    loop {
        let now = mono_ns();
        if stop(now) {
            return Ok(());
        }
        if now >= next_keepalive {
            worker.keepalive_some();
            next_keepalive = now + KEEPALIVE_NS / KEEPALIVE_PARTS as u64;
        }
        worker.pump(now + 100_000_000)?;
    }
}

/// The hidden child (`idle-child`): set up, say READY, hold until stdin closes.
pub fn idle_child(args: &IdleChildArgs) -> Result<()> {
    let mut target = args.target.clone();
    target.source_addrs = 0;
    // The parent passes its --jwt-ttl on: the child's tokens last the parent's hold.
    let jwt = target.minter(args.setup.setup_timeout)?;
    let mut plan = idle_plan(
        &target,
        jwt.as_ref(),
        &args.setup,
        args.prefix.clone(),
        args.connections,
        args.rooms,
    );
    plan.sources = args.source.into_iter().collect();
    let mut worker = Worker::new(plan)?;
    worker.setup(args.setup.timeout_ns())?;
    println!("READY {}", worker.ready_count);
    std::io::stdout().flush()?;
    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        flag.store(true, Ordering::Relaxed);
    });
    hold(&mut worker, |_| closed.load(Ordering::Relaxed))
}

/// The progress line while holding: connections, seconds held of `hold_s`.
fn holding(held: u64, held_ns: u64, hold_s: f64) -> String {
    format!(
        "holding {held} connections: {:.0} of {hold_s:.1} s",
        held_ns as f64 / 1e9
    )
}

/// The idle scenario.
pub fn idle(args: &IdleArgs) -> Result<bool> {
    let target = &args.run.target;
    let outputs = Outputs {
        json: args.run.out.json.as_deref(),
        hgrm: None,
        plot: None,
    };
    outputs.check()?;
    // Checked before anything starts; each process mints its own connections' tokens.
    let jwt = target.minter(args.run.setup.setup_timeout + args.hold)?;
    // Piped: a line a second while holding (a terminal shows only the line below).
    let mut view = LiveView::lines_only(args.run.out.quiet);
    let before = sample_server(target.server_pid)?;
    let cpu_before = process_cpu_us() + children_cpu_us();
    let prefix = run_prefix(0);
    let start = mono_ns();
    let (held, after) = if args.connections <= args.per_process {
        hold_here(args, jwt.as_ref(), prefix, &mut view)?
    } else {
        hold_in_children(args, jwt.as_deref(), &prefix, &mut view)?
    };
    let elapsed_s = (mono_ns() - start) as f64 / 1e9;
    let report = report(args, held, before, after, cpu_before, elapsed_s);
    view.finish();
    print!("{}", report.table());
    write_outputs(&report, &new_histogram(), &outputs)?;
    Ok(held == args.connections as u64)
}

/// Holds every connection in this process for `--hold`; returns how many were held
/// and the server sampled at the end of the hold.
fn hold_here(
    args: &IdleArgs,
    jwt: Option<&Arc<Minter>>,
    prefix: String,
    view: &mut LiveView,
) -> Result<(u64, Option<ProcSample>)> {
    let UnpacedArgs { target, setup, .. } = &args.run;
    let plan = idle_plan(target, jwt, setup, prefix, args.connections, args.rooms);
    let mut worker = Worker::new(plan)?;
    worker.setup(setup.timeout_ns())?;
    let held = worker.ready_count as u64;
    if !args.run.out.quiet {
        eprintln!("holding {held} connections for {:.1} s", args.hold);
    }
    let from = mono_ns();
    let until = from + (args.hold * 1e9) as u64;
    hold(&mut worker, |now| {
        view.heartbeat(now, &holding(held, now - from, args.hold));
        now >= until
    })?;
    Ok((held, sample_server(target.server_pid)?))
}

/// Holds the connections in child processes of at most `--per-process` each for
/// `--hold`; returns how many were held and the server sampled at the end of the hold
/// (before the children are let go).
fn hold_in_children(
    args: &IdleArgs,
    jwt: Option<&Minter>,
    prefix: &str,
    view: &mut LiveView,
) -> Result<(u64, Option<ProcSample>)> {
    let children = args.connections.div_ceil(args.per_process);
    if children > 250 {
        bail!("too many child processes ({children})");
    }
    let mut procs = spawn_children(args, jwt, prefix, children)?;
    let held = await_children(&mut procs)?;
    if !args.run.out.quiet {
        eprintln!(
            "holding {held} connections in {children} processes for {:.1} s",
            args.hold
        );
    }
    let from = mono_ns();
    let until = from + (args.hold * 1e9) as u64;
    loop {
        let now = mono_ns();
        if now >= until {
            break;
        }
        view.heartbeat(now, &holding(held, now - from, args.hold));
        let left = std::time::Duration::from_nanos(until - now);
        std::thread::sleep(left.min(std::time::Duration::from_millis(100)));
    }
    let after = sample_server(args.run.target.server_pid)?;
    for mut child in procs {
        drop(child.stdin.take());
        let _ = child.wait();
    }
    Ok((held, after))
}

/// Starts `children` `idle-child` processes sharing out the connections and rooms,
/// child `i` on source address 127.0.0.(2 + i), each minting its connections' tokens
/// with the same key and lifetime as `jwt`.
fn spawn_children(
    args: &IdleArgs,
    jwt: Option<&Minter>,
    prefix: &str,
    children: usize,
) -> Result<Vec<Child>> {
    let UnpacedArgs { target, setup, .. } = &args.run;
    let exe = std::env::current_exe().context("locate own executable")?;
    let mut procs = Vec::new();
    for i in 0..children {
        let n = args.connections / children + usize::from(i < args.connections % children);
        let mut cmd = Command::new(&exe);
        cmd.arg("idle-child")
            .args(["--connections", &n.to_string()])
            .args(["--rooms", &args.rooms.div_ceil(children).to_string()])
            .args(["--prefix", &format!("{prefix}c{i}")])
            .args(["--source", &format!("127.0.0.{}", 2 + i)])
            .args(["--target", target.target.name()])
            .args(["--addr", &target.addr.to_string()])
            .args(["--transport", target.transport.name()])
            .args(["--setup-concurrency", &setup.setup_concurrency.to_string()])
            .args(["--setup-timeout", &format!("{}s", setup.setup_timeout)]);
        if let Some(t) = &target.token {
            cmd.env("CORECAST_AUTH_TOKEN", t);
        }
        if let Some(jwt) = jwt {
            for (option, path) in [
                ("--jwt-secret-file", &target.jwt_secret_file),
                ("--jwt-private-key", &target.jwt_private_key),
            ] {
                if let Some(path) = path {
                    cmd.arg(option).arg(path);
                }
            }
            cmd.args(["--jwt-ttl", &format!("{}s", jwt.ttl_s())]);
        }
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn idle child")?;
        procs.push(child);
    }
    Ok(procs)
}

/// Reads every child's `READY <n>` line; returns the connections they hold in all.
/// A child that fails to set up ends every child and the run.
fn await_children(procs: &mut [Child]) -> Result<u64> {
    let mut total = 0u64;
    for i in 0..procs.len() {
        let stdout = procs[i].stdout.take().context("child stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(n) = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            for c in procs.iter_mut() {
                let _ = c.kill();
            }
            bail!("idle child {i} failed to set up (see its error above)");
        };
        total += n;
    }
    Ok(total)
}

/// The idle report: `held` connections, the server `before` and `after`, the harness's
/// (and its children's) CPU since `cpu_before`, over the `elapsed_s` of the whole run.
fn report(
    args: &IdleArgs,
    held: u64,
    before: Option<ProcSample>,
    after: Option<ProcSample>,
    cpu_before: u64,
    elapsed_s: f64,
) -> Report {
    let target = &args.run.target;
    Report {
        run: run_info(
            args.run.out.label.as_deref(),
            "idle",
            target.name(),
            format!(
                "connections={} rooms={} hold={}s",
                args.connections, args.rooms, args.hold
            ),
        ),
        duration_s: args.hold,
        connections: held,
        harness_cpu_pct: (process_cpu_us() + children_cpu_us() - cpu_before) as f64
            / (elapsed_s * 1e6)
            * 100.0,
        harness_threads: 1,
        // No deliveries: CPU over the whole run, RSS per held connection.
        server: server_cost(target.server_pid, before, before, after, elapsed_s, 0, held),
        ..Report::default()
    }
}
