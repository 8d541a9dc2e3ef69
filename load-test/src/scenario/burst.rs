//! The burst scenario (corecast only): every sender writes `--burst` messages of
//! `--body-size` bytes to its room back to back, as fast as its socket takes them (no
//! schedule), while every healthy member (senders included) reads as fast as it can
//! and `--stalled` members per room never read (SO_RCVBUF 4096). corecast's
//! slow-consumer rule must cut the stalled members and nobody else: any disconnect,
//! server error, loss, duplicate or reorder of a healthy member or a sender fails the
//! run; a stalled member's cut is expected, and a stalled member left uncut is only
//! reported.
//!
//! One thread: set up in batches of `--setup-concurrency` (blocking handshakes), then
//! one epoll loop over the senders' and healthy members' sockets until each healthy
//! receiver has every message of its room (or `--timeout`), then each stalled
//! member's socket is read to its end to see whether and how it was cut.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::body::{read_stamp, write_body, Stamp};
use crate::check::{CheckCounts, ReceiverCheck};
use crate::cli::BurstArgs;
use crate::clock::{mono_ns, process_cpu_us};
use crate::jwt::Minter;
use crate::poller::{Poller, Ready, READ, WRITE};
use crate::report::{check_output_paths, RunInfo, ServerCost};
use crate::targets::{Codec, Event, Target, Transport};

use super::{run_info, run_prefix, sample_server, server_cost};

/// A stalled member's receive buffer: small, so the server's queue for it fills fast.
const STALLED_RCVBUF: usize = 4096;
/// Bytes a sender queues ahead of its socket per loop turn (readers get turns too).
const SENDER_AHEAD: usize = 256 * 1024;
/// Read buffer per `read` call.
const READ_CHUNK: usize = 256 * 1024;
/// Reads per readable socket per loop turn (level-triggered: the rest comes next turn).
const READS_PER_TURN: usize = 4;
/// How long a stalled member's socket may stay silent before it counts as not cut.
const STALLED_QUIET: Duration = Duration::from_millis(500);

/// What a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Sends `--burst` messages and reads like a healthy member.
    Sender,
    /// Reads as fast as it can.
    Healthy,
    /// Never reads until the burst is over.
    Stalled,
}

/// One connection of the burst.
struct BurstConn {
    class: Class,
    room: usize,
    room_name: String,
    /// Global sender id (senders only).
    sender_id: u32,
    socket: Socket,
    codec: Codec,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    /// Messages still to queue (senders).
    remaining: u64,
    /// Counter of the next message (senders).
    next_counter: u64,
    /// Waiting for the socket to take more (senders).
    blocked: bool,
    check: ReceiverCheck,
    counts: CheckCounts,
    /// Distinct deliveries.
    unique: u64,
    /// Own messages received back (senders).
    own_echoes: u64,
    closed: bool,
    /// Why it closed, or the first error frame the server sent it.
    reason: Option<String>,
    /// Server error frames received.
    errors: u64,
}

impl BurstConn {
    fn sending(&self) -> bool {
        self.class == Class::Sender
            && !self.closed
            && (self.remaining > 0 || self.wpos < self.wbuf.len())
    }
}

/// Per-class totals.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClassReport {
    /// Connections of the class.
    pub connections: u64,
    /// Distinct deliveries received.
    pub received: u64,
    /// Deliveries they should have received (every message of their room).
    pub expected: u64,
    /// Connections the server closed (or that failed).
    pub disconnected: u64,
    /// Of those, closed after SLOW_CONSUMER.
    pub slow_consumer: u64,
    /// Error frames from the server.
    pub server_errors: u64,
    /// Loss, duplicates and order checks.
    pub checks: CheckCounts,
    /// The first disconnect or error, as the server said it.
    pub first_reason: Option<String>,
}

/// The burst report (`--json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BurstReport {
    /// Label, "burst", "corecast", command line, parameters, time.
    #[serde(flatten)]
    pub run: RunInfo,
    /// Connections set up.
    pub connections: u64,
    /// Messages the senders wrote.
    pub sent: u64,
    /// From the first write to the last healthy delivery (or the timeout), seconds.
    pub wall_s: f64,
    /// Whether the healthy receivers got everything before `--timeout`.
    pub completed: bool,
    /// Deliveries to senders and healthy members per second of `wall_s`.
    pub deliveries_per_s: f64,
    /// Senders (their own echoes in `own_echoes`).
    pub senders: ClassReport,
    /// Own messages the senders received back, and how many they sent.
    pub own_echoes: u64,
    /// Healthy members (not senders).
    pub healthy: ClassReport,
    /// Stalled members (cuts expected).
    pub stalled: ClassReport,
    /// The harness's CPU over the burst, % of one core.
    pub harness_cpu_pct: f64,
    /// Server cost over the burst (with `--server-pid`).
    pub server: Option<ServerCost>,
    /// Healthy or sender disconnects, errors, loss or disorder.
    pub failed: bool,
}

/// The burst scenario.
pub fn burst(args: &BurstArgs) -> Result<bool> {
    let target = &args.run.target;
    if target.target != Target::Corecast {
        bail!(
            "burst supports only --target corecast (it tests corecast's slow-consumer rule), \
             not {}",
            target.target.name()
        );
    }
    if target.transport != Transport::Tcp {
        bail!("burst runs over TCP only (its stalled members shrink SO_RCVBUF on plain sockets): --transport ws is not taken");
    }
    if target.threads != 1 || target.source_addrs != 0 {
        bail!("burst runs on one thread from the kernel's source address: --threads must be 1 and --source-addrs 0");
    }
    if args.senders + args.stalled > args.members {
        bail!(
            "--senders {} plus --stalled {} exceed --members {}",
            args.senders,
            args.stalled,
            args.members
        );
    }
    check_output_paths(&[("--json", args.run.out.json.as_deref())])?;
    let jwt = target.minter(args.run.setup.setup_timeout + args.timeout)?;
    let quiet = args.run.out.quiet;
    let before = sample_server(target.server_pid)?;
    let total = args.rooms * args.members;
    if !quiet {
        eprintln!("setting up {total} connections");
    }
    let mut conns = setup(args, jwt.as_deref())?;
    let expected = (args.senders * args.burst) as u64;
    if !quiet {
        eprintln!(
            "bursting: {} senders x {} messages of {} B",
            args.rooms * args.senders,
            args.burst,
            args.body_size
        );
    }
    let start_sample = sample_server(target.server_pid)?;
    let cpu_before = process_cpu_us();
    let start = mono_ns();
    let completed = drive(&mut conns, args, expected, start)?;
    let end = mono_ns();
    let end_sample = sample_server(target.server_pid)?;
    let harness_cpu_us = process_cpu_us() - cpu_before;
    drain_stalled(&mut conns, expected, args.senders);
    let wall_s = (end - start) as f64 / 1e9;
    let report = report(
        args,
        &conns,
        expected,
        completed,
        wall_s,
        harness_cpu_us,
        server_cost(
            target.server_pid,
            before,
            start_sample,
            end_sample,
            wall_s,
            0,
            total as u64,
        ),
    );
    print!("{}", table(&report));
    if let Some(path) = &args.run.out.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("write --json {}", path.display()))?;
    }
    Ok(!report.failed)
}

fn room_name(prefix: &str, room: usize) -> String {
    format!("{prefix}-burst{room}")
}

/// Connects, logs in and joins every connection, `--setup-concurrency` handshakes at a
/// time; returns them non-blocking, in room order (senders, healthy, stalled). With
/// `jwt`, each login's token is minted here, during setup, before the burst.
fn setup(args: &BurstArgs, jwt: Option<&Minter>) -> Result<Vec<BurstConn>> {
    let target = &args.run.target;
    let deadline = mono_ns() + args.run.setup.timeout_ns();
    let prefix = run_prefix(0);
    let mut plan = Vec::new();
    for room in 0..args.rooms {
        for m in 0..args.members {
            let class = if m < args.senders {
                Class::Sender
            } else if m >= args.members - args.stalled {
                Class::Stalled
            } else {
                Class::Healthy
            };
            let sender_id = (room * args.senders + m.min(args.senders)) as u32;
            plan.push((class, room, m, sender_id));
        }
    }
    let mut conns = Vec::with_capacity(plan.len());
    for batch in plan.chunks(args.run.setup.setup_concurrency) {
        let mut fresh = Vec::with_capacity(batch.len());
        for &(class, room, m, sender_id) in batch {
            let socket = connect(target.addr, class == Class::Stalled, deadline)
                .with_context(|| format!("connect to {}", target.addr))?;
            fresh.push(BurstConn {
                class,
                room,
                room_name: room_name(&prefix, room),
                sender_id,
                socket,
                codec: Codec::new(Target::Corecast, Transport::Tcp),
                rbuf: Vec::new(),
                wbuf: Vec::new(),
                wpos: 0,
                remaining: if class == Class::Sender {
                    args.burst as u64
                } else {
                    0
                },
                next_counter: 0,
                blocked: false,
                check: ReceiverCheck::from_start(args.senders),
                counts: CheckCounts::default(),
                unique: 0,
                own_echoes: 0,
                closed: false,
                reason: None,
                errors: 0,
            });
            let c = fresh.last_mut().expect("just pushed");
            let player = format!("{prefix}-b{room}m{m}");
            let minted = jwt.map(|j| j.mint(&player)).transpose()?;
            let token = minted.as_deref().or(target.token.as_deref());
            c.codec.login(&mut c.wbuf, &player, token);
        }
        handshake_step(&mut fresh, deadline, "login", |e| {
            matches!(e, Event::LoggedIn)
        })?;
        for c in &mut fresh {
            c.codec.join(&mut c.wbuf, &c.room_name);
        }
        handshake_step(&mut fresh, deadline, "join", |e| {
            matches!(e, Event::Joined(_))
        })?;
        conns.extend(fresh);
    }
    for c in &conns {
        c.socket.set_nonblocking(true)?;
    }
    Ok(conns)
}

fn remaining(deadline: u64) -> Result<Duration> {
    let now = mono_ns();
    if now >= deadline {
        bail!("setup did not finish within --setup-timeout");
    }
    Ok(Duration::from_nanos(deadline - now))
}

/// A blocking connection to `addr` (with a 4096-byte receive buffer if `stalled`,
/// set before connecting so the window never grows past it).
fn connect(addr: SocketAddr, stalled: bool, deadline: u64) -> Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if stalled {
        socket.set_recv_buffer_size(STALLED_RCVBUF)?;
    }
    socket.connect_timeout(&SockAddr::from(addr), remaining(deadline)?)?;
    socket.set_tcp_nodelay(true)?;
    Ok(socket)
}

/// Writes every connection's queued request, then reads each one's answer (`done`).
fn handshake_step(
    conns: &mut [BurstConn],
    deadline: u64,
    what: &str,
    done: impl Fn(&Event<'_>) -> bool,
) -> Result<()> {
    for c in conns.iter_mut() {
        (&c.socket).write_all(&c.wbuf)?;
        c.wbuf.clear();
    }
    let mut chunk = vec![0u8; 64 * 1024];
    for c in conns.iter_mut() {
        'answer: loop {
            let mut pos = 0;
            while let Some((event, used)) = c.codec.next_event(&c.rbuf[pos..], &mut c.wbuf)? {
                pos += used;
                if let Event::Rejected(msg) = &event {
                    bail!("{what} refused: {msg}");
                }
                if done(&event) {
                    c.rbuf.drain(..pos);
                    break 'answer;
                }
            }
            c.rbuf.drain(..pos);
            c.socket.set_read_timeout(Some(remaining(deadline)?))?;
            let n = match (&c.socket).read(&mut chunk) {
                Ok(0) => bail!("server closed a connection during {what}"),
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    bail!("setup did not finish within --setup-timeout ({what})")
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) => return Err(e).context(what.to_string()),
            };
            c.rbuf.extend_from_slice(&chunk[..n]);
        }
    }
    Ok(())
}

/// The burst: senders write, senders and healthy members read, until every live
/// healthy receiver has `expected` deliveries and every live sender has written all
/// (true), or `--timeout` (false).
fn drive(conns: &mut [BurstConn], args: &BurstArgs, expected: u64, start: u64) -> Result<bool> {
    let mut poller = Poller::new().context("epoll_create")?;
    for (i, c) in conns.iter().enumerate() {
        if c.class != Class::Stalled {
            poller.add(c.socket.as_raw_fd(), i as u64, READ)?;
        }
    }
    let deadline = start + (args.timeout * 1e9) as u64;
    let mut body = Vec::with_capacity(args.body_size);
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut ready: Vec<Ready> = Vec::with_capacity(1024);
    loop {
        let mut writing = false;
        for (i, c) in conns.iter_mut().enumerate() {
            if !c.sending() || c.blocked {
                continue;
            }
            while c.remaining > 0 && c.wbuf.len() - c.wpos < SENDER_AHEAD {
                let stamp = Stamp {
                    scheduled_ns: mono_ns(),
                    sender: c.sender_id,
                    counter: c.next_counter,
                };
                write_body(&mut body, stamp, args.body_size);
                c.codec.publish(&mut c.wbuf, &c.room_name, &body);
                c.next_counter += 1;
                c.remaining -= 1;
            }
            match flush(c) {
                Ok(true) => writing |= c.remaining > 0,
                Ok(false) => {
                    c.blocked = true;
                    poller.modify(c.socket.as_raw_fd(), i as u64, READ | WRITE)?;
                }
                Err(e) => close(c, format!("write failed: {e}")),
            }
        }
        let done = conns.iter().all(|c| match c.class {
            Class::Stalled => true,
            _ => c.closed || (c.unique >= expected && !c.sending()),
        });
        if done {
            return Ok(true);
        }
        let now = mono_ns();
        if now >= deadline {
            return Ok(false);
        }
        let wait = if writing {
            0
        } else {
            (deadline - now).min(10_000_000)
        };
        ready.clear();
        poller.wait(Some(wait), &mut ready)?;
        for r in &ready {
            let i = r.token as usize;
            let c = &mut conns[i];
            if c.closed {
                continue;
            }
            if r.writable && c.blocked {
                c.blocked = false;
                poller.modify(c.socket.as_raw_fd(), r.token, READ)?;
            }
            if r.readable {
                read_some(c, &mut chunk, READS_PER_TURN, args.senders);
                if c.closed {
                    let _ = poller.delete(c.socket.as_raw_fd());
                }
            }
        }
    }
}

/// Writes as much of a sender's queue as its socket takes: `Ok(true)` when all of it.
fn flush(c: &mut BurstConn) -> io::Result<bool> {
    while c.wpos < c.wbuf.len() {
        match (&c.socket).write(&c.wbuf[c.wpos..]) {
            Ok(n) => c.wpos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.wbuf.drain(..c.wpos);
                c.wpos = 0;
                return Ok(false);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    c.wbuf.clear();
    c.wpos = 0;
    Ok(true)
}

fn close(c: &mut BurstConn, why: String) {
    if !c.closed {
        c.closed = true;
        // The server's own word (SLOW_CONSUMER, ...) beats "closed".
        if c.reason.is_none() {
            c.reason = Some(why);
        }
        let _ = c.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// Reads up to `reads` chunks from `c` and checks every delivery in them; EOF or a
/// read error closes it. Returns whether anything was read.
fn read_some(c: &mut BurstConn, chunk: &mut [u8], reads: usize, senders: usize) -> bool {
    let mut any = false;
    for _ in 0..reads {
        match (&c.socket).read(chunk) {
            Ok(0) => {
                close(c, "closed by the server".into());
                break;
            }
            Ok(n) => {
                any = true;
                c.rbuf.extend_from_slice(&chunk[..n]);
                if let Err(e) = consume(c, senders) {
                    close(c, format!("unreadable stream: {e:#}"));
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                close(c, format!("read failed: {e}"));
                break;
            }
        }
    }
    any
}

/// Checks every whole frame in `c.rbuf`.
fn consume(c: &mut BurstConn, senders: usize) -> Result<()> {
    let mut pos = 0;
    let mut scratch = Vec::new();
    let rbuf = std::mem::take(&mut c.rbuf);
    let result = loop {
        match c.codec.next_event(&rbuf[pos..], &mut scratch) {
            Ok(Some((event, used))) => {
                pos += used;
                match event {
                    Event::Delivery { seq, body } => on_delivery(c, seq, body, senders),
                    Event::Rejected(msg) => {
                        c.errors += 1;
                        if c.reason.is_none() {
                            c.reason = Some(msg);
                        }
                    }
                    _ => {}
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    c.rbuf = rbuf;
    c.rbuf.drain(..pos);
    result
}

fn on_delivery(c: &mut BurstConn, seq: Option<u64>, body: &[u8], senders: usize) {
    let Some(stamp) = read_stamp(body) else {
        c.counts.deliveries += 1;
        c.counts.unexpected += 1;
        return;
    };
    let id = stamp.sender as usize;
    // Sender ids are room * senders + index; another room's sender is unexpected.
    let index = if id / senders == c.room {
        id % senders
    } else {
        usize::MAX
    };
    if c.check
        .on_delivery(index, stamp.counter, seq, &mut c.counts)
    {
        c.unique += 1;
        if c.class == Class::Sender && stamp.sender == c.sender_id {
            c.own_echoes += 1;
        }
    }
}

/// Reads every stalled member to its end: what it got before the cut, and how it was
/// cut (or that it was not: then it gets the rest now, or goes quiet).
fn drain_stalled(conns: &mut [BurstConn], expected: u64, senders: usize) {
    let mut chunk = vec![0u8; READ_CHUNK];
    for c in conns.iter_mut().filter(|c| c.class == Class::Stalled) {
        if c.socket.set_nonblocking(false).is_err()
            || c.socket.set_read_timeout(Some(STALLED_QUIET)).is_err()
        {
            close(c, "socket options failed".into());
            continue;
        }
        while !c.closed && c.unique < expected {
            match (&c.socket).read(&mut chunk) {
                Ok(0) => close(c, "closed by the server".into()),
                Ok(n) => {
                    c.rbuf.extend_from_slice(&chunk[..n]);
                    if let Err(e) = consume(c, senders) {
                        close(c, format!("unreadable stream: {e:#}"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Quiet for STALLED_QUIET: still connected, not cut.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => close(c, format!("read failed: {e}")),
            }
        }
    }
}

fn class_report(conns: &[BurstConn], class: Class, expected: u64) -> ClassReport {
    let mut r = ClassReport::default();
    for c in conns.iter().filter(|c| c.class == class) {
        r.connections += 1;
        r.received += c.unique;
        r.expected += expected;
        r.server_errors += c.errors;
        let mut counts = c.counts;
        counts.lost = expected.saturating_sub(c.unique);
        r.checks.add(&counts);
        let slow = c
            .reason
            .as_deref()
            .is_some_and(|m| m.contains("SlowConsumer"));
        if c.closed {
            r.disconnected += 1;
            r.slow_consumer += u64::from(slow);
        }
        if r.first_reason.is_none() && (c.closed || c.errors > 0) {
            r.first_reason = c.reason.clone();
        }
    }
    r
}

fn report(
    args: &BurstArgs,
    conns: &[BurstConn],
    expected: u64,
    completed: bool,
    wall_s: f64,
    harness_cpu_us: u64,
    server: Option<ServerCost>,
) -> BurstReport {
    let senders = class_report(conns, Class::Sender, expected);
    let healthy = class_report(conns, Class::Healthy, expected);
    let stalled = class_report(conns, Class::Stalled, expected);
    let deliveries = senders.received + healthy.received;
    let bad = |r: &ClassReport| r.disconnected > 0 || r.server_errors > 0 || !r.checks.is_clean();
    let failed = !completed || bad(&senders) || bad(&healthy);
    let wall = wall_s.max(1e-9);
    BurstReport {
        run: run_info(
            args.run.out.label.as_deref(),
            "burst",
            "corecast",
            format!(
                "rooms={} members={} senders={} stalled={} burst={} body={}B",
                args.rooms, args.members, args.senders, args.stalled, args.burst, args.body_size
            ),
        ),
        connections: conns.len() as u64,
        sent: conns
            .iter()
            .filter(|c| c.class == Class::Sender)
            .map(|c| c.next_counter)
            .sum(),
        wall_s,
        completed,
        deliveries_per_s: deliveries as f64 / wall,
        own_echoes: conns.iter().map(|c| c.own_echoes).sum(),
        senders,
        healthy,
        stalled,
        harness_cpu_pct: harness_cpu_us as f64 / (wall * 1e6) * 100.0,
        server: server.map(|mut s| {
            s.cpu_us_per_1000_deliveries = if deliveries > 0 {
                s.cpu_us as f64 * 1000.0 / deliveries as f64
            } else {
                0.0
            };
            s
        }),
        failed,
    }
}

fn checks_line(c: &CheckCounts) -> String {
    format!(
        "lost {}  dup {}  sender-reorder {}  seq-reorder {}  seq-gap {}  unexpected {}",
        c.lost, c.duplicates, c.sender_reorders, c.seq_reorders, c.seq_gaps, c.unexpected
    )
}

fn class_line(r: &ClassReport) -> String {
    let mut s = format!(
        "{} conns: received {}/{}, disconnected {}",
        r.connections, r.received, r.expected, r.disconnected
    );
    if r.server_errors > 0 {
        s += &format!(", server errors {}", r.server_errors);
    }
    if let Some(why) = &r.first_reason {
        s += &format!(" (first: {why})");
    }
    s
}

/// The printed report.
pub fn table(r: &BurstReport) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = writeln!(t, "== {} | burst | {}", r.run.target, r.run.params);
    let _ = writeln!(t, "  connections            {}", r.connections);
    let _ = writeln!(
        t,
        "  burst                  {} msgs sent, {:.3} s wall (first write to last healthy delivery){}",
        r.sent,
        r.wall_s,
        if r.completed { "" } else { ", TIMED OUT" }
    );
    let _ = writeln!(
        t,
        "  achieved deliveries/s  {:.0} ({} to senders and healthy members)",
        r.deliveries_per_s,
        r.senders.received + r.healthy.received
    );
    let _ = writeln!(t, "  senders                {}", class_line(&r.senders));
    let sent_total = r.sent;
    let _ = writeln!(
        t,
        "    own echoes           {}/{}",
        r.own_echoes, sent_total
    );
    let _ = writeln!(
        t,
        "    checks               {}",
        checks_line(&r.senders.checks)
    );
    let _ = writeln!(t, "  healthy members        {}", class_line(&r.healthy));
    let _ = writeln!(
        t,
        "    checks               {}",
        checks_line(&r.healthy.checks)
    );
    let s = &r.stalled;
    if s.connections > 0 {
        let _ = writeln!(
            t,
            "  stalled members        {} conns: cut {} (SLOW_CONSUMER {}, other {}), not cut {}, received {}/{} (expected: cut)",
            s.connections,
            s.disconnected,
            s.slow_consumer,
            s.disconnected - s.slow_consumer,
            s.connections - s.disconnected,
            s.received,
            s.expected
        );
    }
    let _ = writeln!(
        t,
        "  harness cpu            {:.0}% of one core",
        r.harness_cpu_pct
    );
    if let Some(sv) = &r.server {
        let _ = writeln!(
            t,
            "  server cpu             {:.0}% of one core, {:.1} us per 1000 deliveries",
            sv.cpu_pct, sv.cpu_us_per_1000_deliveries
        );
    }
    if r.failed {
        let _ = writeln!(
            t,
            "!!! HEALTHY CLIENTS CUT, TIMED OUT, OR LOSS OR DISORDER: see senders and healthy members above !!!"
        );
    }
    t
}
