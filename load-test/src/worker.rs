//! One harness thread: an epoll loop over its own connections plus a binary heap of
//! timers (each sender's next send, each churner's next join/leave, each scheduled
//! connect). It sleeps exactly until the earliest timer or I/O, fires everything due,
//! then writes each touched connection once. One scheduler per thread, not one
//! sleeping task per sender.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, SocketAddr};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;

use crate::body::{read_stamp, write_body, Stamp};
use crate::check::{CheckCounts, ReceiverCheck};
use crate::clock::mono_ns;
use crate::conn::{start_connect, Conn, ConnState, Role};
use crate::latency::{new_histogram, LatencyRecorder, Window};
use crate::poller::{Poller, Ready, READ, WRITE};
use crate::report::Incidents;
use crate::schedule::{Arrivals, Schedule};
use crate::targets::{Codec, Event, Target};

/// Bytes read per `read` call.
const READ_CHUNK: usize = 256 * 1024;

/// How often every connection sends a keepalive (well under corecast's 60 s idle timeout).
pub const KEEPALIVE_NS: u64 = 20_000_000_000;
/// Slices of the connections pinged in turn within each `KEEPALIVE_NS`.
pub const KEEPALIVE_PARTS: usize = 64;

/// What one worker sets up and drives.
#[derive(Debug, Clone)]
pub struct WorkerPlan {
    /// Worker index (names and seeds).
    pub index: usize,
    /// Server kind.
    pub target: Target,
    /// Server address.
    pub addr: SocketAddr,
    /// corecast bearer token / NATS auth token.
    pub token: Option<String>,
    /// Unique prefix of this run's player ids and room names.
    pub prefix: String,
    /// Rooms this worker owns (with all their members).
    pub rooms: Vec<RoomPlan>,
    /// Connect-scenario clients (log in only).
    pub clients: usize,
    /// Messages per second per sender.
    pub rate: f64,
    /// Arrival process.
    pub arrivals: Arrivals,
    /// Body size in bytes.
    pub body_size: usize,
    /// Join+leave operations per second over this worker's churners.
    pub churn_rate: f64,
    /// Handshakes in flight at once during setup.
    pub setup_concurrency: usize,
    /// Loopback source addresses to spread connections over (empty: kernel's choice).
    pub sources: Vec<IpAddr>,
    /// Seed of this worker's random streams.
    pub seed: u64,
    /// Debug: sender 0 of this worker skips sending this counter value (loss injection).
    pub skip_counter: Option<u64>,
    /// Spin instead of sleeping when the next timer is this close (ns).
    pub spin_ns: u64,
}

/// One room of a plan.
#[derive(Debug, Clone)]
pub struct RoomPlan {
    /// Members from start to end.
    pub members: usize,
    /// How many of them send.
    pub senders: usize,
    /// Extra members that join and leave during the run.
    pub churners: usize,
}

/// Membership of a churner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChurnState {
    /// Not in the room.
    Out,
    /// Join sent.
    Joining,
    /// In the room.
    In,
    /// Leave sent.
    Leaving,
}

/// A member of a room.
pub struct Member {
    /// Room index.
    pub room: usize,
    /// Its receiving connection.
    pub conn: usize,
    /// None: a member throughout; Some: a churner.
    pub churn: Option<ChurnState>,
    /// Its delivery check (a churner's restarts at each join).
    pub check: ReceiverCheck,
    /// A churner's schedule of join/leave operations.
    pub churn_schedule: Option<Schedule>,
}

/// A sender.
pub struct Sender {
    /// Room index.
    pub room: usize,
    /// Its index among the room's senders.
    pub local: usize,
    /// The connection it publishes on.
    pub conn: usize,
    /// Its schedule (set at the start of the measured run).
    pub schedule: Option<Schedule>,
    /// Messages sent (= next counter).
    pub sent: u64,
}

/// A room.
pub struct Room {
    /// Its name (room id, channel, subject).
    pub name: String,
    /// Sender indices, in room-local order.
    pub senders: Vec<usize>,
    /// Members present from start to end.
    pub static_members: u64,
}

/// Timer kinds, ordered so the heap is deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Sender `n` is due.
    Send(usize),
    /// Churner member `n` is due to join or leave.
    Churn(usize),
    /// Client connection `n` is due to connect.
    Connect(usize),
}

/// A progress snapshot sent to the main thread.
pub struct Progress {
    /// Messages sent since the previous snapshot.
    pub sent: u64,
    /// Deliveries since the previous snapshot.
    pub delivered: u64,
    /// Connections set up since the previous snapshot.
    pub connected: u64,
    /// Latencies since the previous snapshot.
    pub interval: Histogram<u64>,
}

/// Counters of a run.
#[derive(Debug, Default, Clone)]
pub struct RunCounters {
    /// Messages scheduled in the measured window and queued on a live connection
    /// (injected losses and closed connections excluded).
    pub sent_in_window: u64,
    /// Deliveries whose message was scheduled in the window, times static members.
    pub offered_deliveries: u64,
    /// Deliveries to members present from start to end received during the window
    /// (by receive time): what `offered_deliveries` is compared with.
    pub delivered_in_window: u64,
    /// All deliveries received during the window, churners' included.
    pub all_delivered_in_window: u64,
    /// Disconnects, server errors, churn and connect failures.
    pub incidents: Incidents,
}

/// One worker's state.
pub struct Worker {
    /// Its plan.
    pub plan: WorkerPlan,
    /// Connections (index = epoll token).
    pub conns: Vec<Conn>,
    /// Members.
    pub members: Vec<Member>,
    /// Senders.
    pub senders: Vec<Sender>,
    /// Rooms.
    pub rooms: Vec<Room>,
    poller: Poller,
    ready: Vec<Ready>,
    dirty: Vec<usize>,
    /// Next connection `keepalive_some` pings.
    keepalive_cursor: usize,
    /// Pending timers: (due ns, what).
    pub timers: BinaryHeap<Reverse<(u64, Timer)>>,
    scratch: Vec<u8>,
    body: Vec<u8>,
    /// Deliveries' latency.
    pub latency: LatencyRecorder,
    /// Connect latency (connect scenario) or send lag (actual minus scheduled send).
    pub send_lag: Histogram<u64>,
    /// Check totals.
    pub checks: CheckCounts,
    /// Run counters.
    pub counters: RunCounters,
    /// Distinct deliveries to static members (to stop draining once all arrived).
    pub unique_static: u64,
    /// Handshakes in flight.
    pub in_flight: usize,
    /// Next connection to start when starting in index order.
    pub next_to_start: usize,
    /// Connections ready.
    pub ready_count: usize,
    /// Progress since the last snapshot.
    pub progress_sent: u64,
    /// Deliveries since the last snapshot.
    pub progress_delivered: u64,
    /// Connections since the last snapshot.
    pub progress_connected: u64,
    /// Whether setup is over (events after it are run-time events).
    pub running: bool,
    /// The measured window.
    pub window: Window,
    /// Deliveries static members should get, given what was sent so far.
    pub expected_static: u64,
    /// When the last connection became ready.
    pub last_ready_ns: u64,
}

impl Worker {
    /// Builds the connections, members, senders and rooms of `plan` (nothing connects yet).
    pub fn new(plan: WorkerPlan) -> Result<Self> {
        let mut w = Self {
            conns: Vec::new(),
            members: Vec::new(),
            senders: Vec::new(),
            rooms: Vec::new(),
            poller: Poller::new().context("epoll_create")?,
            ready: Vec::with_capacity(1024),
            dirty: Vec::new(),
            keepalive_cursor: 0,
            timers: BinaryHeap::new(),
            scratch: vec![0; READ_CHUNK],
            body: Vec::new(),
            latency: LatencyRecorder::new(Window {
                start_ns: 0,
                end_ns: 0,
            }),
            send_lag: new_histogram(),
            checks: CheckCounts::default(),
            counters: RunCounters::default(),
            unique_static: 0,
            in_flight: 0,
            next_to_start: 0,
            ready_count: 0,
            progress_sent: 0,
            progress_delivered: 0,
            progress_connected: 0,
            running: false,
            window: Window {
                start_ns: 0,
                end_ns: 0,
            },
            expected_static: 0,
            last_ready_ns: 0,
            plan,
        };
        let target = w.plan.target;
        for (ri, room) in w.plan.rooms.clone().iter().enumerate() {
            let name = format!("{}-room{}", w.plan.prefix, ri);
            let mut senders = Vec::new();
            for mi in 0..room.members + room.churners {
                let conn = w.conns.len();
                let member = w.members.len();
                let player = format!("{}-r{}m{}", w.plan.prefix, ri, mi);
                w.conns.push(Conn::new(
                    Codec::new(target),
                    Role::Member(member),
                    player.clone(),
                ));
                let churner = mi >= room.members;
                w.members.push(Member {
                    room: ri,
                    conn,
                    churn: churner.then_some(ChurnState::Out),
                    check: ReceiverCheck::from_start(room.senders),
                    churn_schedule: None,
                });
                if mi < room.senders {
                    let sender = w.senders.len();
                    let send_conn = if target.separate_publisher() {
                        let pc = w.conns.len();
                        w.conns.push(Conn::new(
                            Codec::new(target),
                            Role::Publisher(sender),
                            format!("{player}-pub"),
                        ));
                        pc
                    } else {
                        conn
                    };
                    w.senders.push(Sender {
                        room: ri,
                        local: mi,
                        conn: send_conn,
                        schedule: None,
                        sent: 0,
                    });
                    senders.push(sender);
                }
            }
            w.rooms.push(Room {
                name,
                senders,
                static_members: room.members as u64,
            });
        }
        for ci in 0..w.plan.clients {
            let player = format!("{}-c{}", w.plan.prefix, ci);
            w.conns
                .push(Conn::new(Codec::new(target), Role::Client, player));
        }
        Ok(w)
    }

    /// Connects, logs in and joins every connection, `setup_concurrency` at a time.
    pub fn setup(&mut self, timeout_ns: u64) -> Result<()> {
        let deadline = mono_ns() + timeout_ns;
        while self.ready_count < self.conns.len() {
            while self.in_flight < self.plan.setup_concurrency
                && self.next_to_start < self.conns.len()
            {
                let ci = self.next_to_start;
                self.next_to_start += 1;
                self.start(ci, mono_ns())?;
            }
            let now = mono_ns();
            if now > deadline {
                bail!(
                    "setup timed out: {} of {} connections ready ({} in flight)",
                    self.ready_count,
                    self.conns.len(),
                    self.in_flight
                );
            }
            self.pump(now + 10_000_000)?;
        }
        Ok(())
    }

    /// Starts connecting connection `ci`; its connect latency counts from `started_ns`.
    pub fn start(&mut self, ci: usize, started_ns: u64) -> Result<()> {
        let source = (!self.plan.sources.is_empty())
            .then(|| self.plan.sources[ci % self.plan.sources.len()]);
        let socket = match start_connect(self.plan.addr, source) {
            Ok(s) => s,
            Err(e) if self.running => {
                self.counters.incidents.connect_failures += 1;
                self.note_error(format!("connect: {e}"));
                self.conns[ci].state = ConnState::Closed;
                return Ok(());
            }
            Err(e) => return Err(e).with_context(|| format!("connect to {}", self.plan.addr)),
        };
        let conn = &mut self.conns[ci];
        self.poller.add(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            ci as u64,
            READ | WRITE,
        )?;
        conn.socket = Some(socket);
        conn.write_interest = true;
        conn.state = ConnState::Connecting;
        conn.started_ns = started_ns;
        self.in_flight += 1;
        Ok(())
    }

    /// Records the first error of the run.
    pub fn note_error(&mut self, msg: String) {
        if self.counters.incidents.first_error.is_none() {
            self.counters.incidents.first_error = Some(msg);
        }
    }

    /// Queues a connection for writing at the end of this tick.
    pub fn mark_dirty(&mut self, ci: usize) {
        if !self.conns[ci].dirty {
            self.conns[ci].dirty = true;
            self.dirty.push(ci);
        }
    }

    /// Fires due timers with `fire`, writes touched connections, then waits for I/O
    /// until `wake_at` or the next timer, and handles what became ready.
    pub fn pump(&mut self, wake_at: u64) -> Result<()> {
        self.flush_dirty()?;
        let next = self
            .timers
            .peek()
            .map_or(wake_at, |Reverse((due, _))| (*due).min(wake_at));
        let now = mono_ns();
        let timeout = next.saturating_sub(now);
        let timeout = if timeout <= self.plan.spin_ns {
            0
        } else {
            timeout
        };
        let mut ready = std::mem::take(&mut self.ready);
        self.poller.wait(Some(timeout), &mut ready)?;
        let next_timer = self
            .timers
            .peek()
            .map_or(u64::MAX, |Reverse((due, _))| *due);
        for (i, r) in ready.iter().enumerate() {
            // A burst of deliveries must not hold back sends that fall due meanwhile:
            // every few connections, stop if a timer is due. The connections not yet
            // served stay ready (level-triggered) and come back in the next wait.
            if i % 16 == 15 && mono_ns() >= next_timer {
                break;
            }
            let ci = r.token as usize;
            if r.writable {
                self.on_writable(ci)?;
            }
            if r.readable {
                self.on_readable(ci)?;
            }
        }
        ready.clear();
        self.ready = ready;
        Ok(())
    }

    /// Pops every timer due at `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<(u64, Timer)> {
        match self.timers.peek() {
            Some(Reverse((due, _))) if *due <= now => self.timers.pop().map(|Reverse(t)| t),
            _ => None,
        }
    }

    /// Keepalives, because corecast closes a connection that sends nothing for its
    /// `--idle-timeout` (60 s by default) and most members of a broadcast scenario only
    /// listen. Pings the next 1/`KEEPALIVE_PARTS` of the connections (round robin): called
    /// every `KEEPALIVE_NS / KEEPALIVE_PARTS`, each connection is pinged once per
    /// `KEEPALIVE_NS`, spread out instead of all in one tick inside the window.
    pub fn keepalive_some(&mut self) {
        let n = self.conns.len();
        for _ in 0..n.div_ceil(KEEPALIVE_PARTS) {
            let ci = self.keepalive_cursor % n;
            self.keepalive_cursor = ci + 1;
            let conn = &mut self.conns[ci];
            conn.codec.keepalive(&mut conn.wbuf);
            self.mark_dirty(ci);
        }
    }

    /// Writes every connection touched this tick.
    pub fn flush_dirty(&mut self) -> Result<()> {
        let mut dirty = std::mem::take(&mut self.dirty);
        for ci in dirty.drain(..) {
            self.conns[ci].dirty = false;
            self.flush(ci)?;
        }
        self.dirty = dirty;
        Ok(())
    }

    fn flush(&mut self, ci: usize) -> Result<()> {
        if self.conns[ci].state == ConnState::Connecting {
            return Ok(());
        }
        match self.conns[ci].flush() {
            Ok(done) => {
                let conn = &mut self.conns[ci];
                if done == conn.write_interest {
                    if let Some(fd) = conn.fd() {
                        let interest = if done { READ } else { READ | WRITE };
                        self.poller.modify(fd, ci as u64, interest)?;
                        conn.write_interest = !done;
                    }
                }
                Ok(())
            }
            Err(e) => self.on_closed(ci, format!("write: {e}")),
        }
    }

    fn on_writable(&mut self, ci: usize) -> Result<()> {
        let conn = &mut self.conns[ci];
        match conn.state {
            ConnState::Connecting => {
                let error = conn.socket.as_ref().map(|s| s.take_error());
                match error {
                    Some(Ok(None)) => {}
                    Some(Ok(Some(e))) | Some(Err(e)) => {
                        return self.on_closed(ci, format!("connect: {e}"))
                    }
                    None => return Ok(()),
                }
                conn.state = ConnState::LoggingIn;
                let token = self.plan.token.clone();
                conn.codec
                    .login(&mut conn.wbuf, &conn.player, token.as_deref());
                self.flush(ci)
            }
            ConnState::Closed | ConnState::Idle => Ok(()),
            _ => self.flush(ci),
        }
    }

    fn on_readable(&mut self, ci: usize) -> Result<()> {
        if matches!(
            self.conns[ci].state,
            ConnState::Connecting | ConnState::Closed | ConnState::Idle
        ) {
            if self.conns[ci].state == ConnState::Connecting {
                // A refused connect reports readable with an error; the write side checks it.
                return self.on_writable(ci);
            }
            return Ok(());
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.read_some(ci, &mut scratch);
        self.scratch = scratch;
        result
    }

    fn read_some(&mut self, ci: usize, scratch: &mut [u8]) -> Result<()> {
        // A few reads per wakeup, then let other connections have their turn.
        for _ in 0..4 {
            let n = match self.conns[ci].read(scratch) {
                Ok(None) => return Ok(()),
                Ok(Some(0)) => return self.on_closed(ci, "closed by the server".into()),
                Ok(Some(n)) => n,
                Err(e) => return self.on_closed(ci, format!("read: {e}")),
            };
            let now = mono_ns();
            let mut rbuf = std::mem::take(&mut self.conns[ci].rbuf);
            if rbuf.is_empty() {
                let used = self.parse(ci, &scratch[..n], now)?;
                rbuf.extend_from_slice(&scratch[used..n]);
            } else {
                rbuf.extend_from_slice(&scratch[..n]);
                let used = self.parse(ci, &rbuf, now)?;
                rbuf.drain(..used);
            }
            if self.conns[ci].state != ConnState::Closed {
                self.conns[ci].rbuf = rbuf;
            }
            if n < scratch.len() {
                return Ok(());
            }
        }
        Ok(())
    }

    fn parse(&mut self, ci: usize, data: &[u8], now: u64) -> Result<usize> {
        let mut pos = 0;
        loop {
            let conn = &mut self.conns[ci];
            if conn.state == ConnState::Closed {
                return Ok(data.len());
            }
            let before = conn.wbuf.len();
            let next = conn
                .codec
                .next_event(&data[pos..], &mut conn.wbuf)
                .with_context(|| format!("protocol error on connection {}", conn.player))?;
            if conn.wbuf.len() != before {
                self.mark_dirty(ci);
            }
            let Some((event, used)) = next else {
                return Ok(pos);
            };
            pos += used;
            self.on_event(ci, event, now)?;
        }
    }

    fn on_event(&mut self, ci: usize, event: Event<'_>, now: u64) -> Result<()> {
        match event {
            Event::Delivery { seq, body } => {
                self.on_delivery(ci, seq, body, now);
                Ok(())
            }
            Event::LoggedIn => self.on_logged_in(ci, now),
            Event::Joined => self.on_joined(ci),
            Event::Left => {
                self.on_left(ci);
                Ok(())
            }
            Event::Rejected(msg) => {
                let who = self.conns[ci].player.clone();
                if !self.running {
                    bail!("server rejected {who}: {msg}");
                }
                self.counters.incidents.server_errors += 1;
                self.note_error(format!("{who}: {msg}"));
                Ok(())
            }
            Event::Other => Ok(()),
        }
    }

    fn on_logged_in(&mut self, ci: usize, now: u64) -> Result<()> {
        let conn = &mut self.conns[ci];
        if conn.state != ConnState::LoggingIn {
            return Ok(());
        }
        match conn.role {
            Role::Member(m) if self.members[m].churn.is_none() => {
                conn.state = ConnState::Joining;
                let room = &self.rooms[self.members[m].room].name;
                conn.codec.join(&mut conn.wbuf, room);
                self.mark_dirty(ci);
            }
            Role::Client => {
                let latency = now.saturating_sub(conn.started_ns).max(1);
                self.send_lag.saturating_record(latency);
                // The live view's p99 (connect's recorder has no window: only this).
                self.latency.interval.saturating_record(latency);
                self.became_ready(ci);
            }
            _ => self.became_ready(ci),
        }
        Ok(())
    }

    fn became_ready(&mut self, ci: usize) {
        self.conns[ci].state = ConnState::Ready;
        self.last_ready_ns = mono_ns();
        self.ready_count += 1;
        self.progress_connected += 1;
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    fn on_joined(&mut self, ci: usize) -> Result<()> {
        let Role::Member(m) = self.conns[ci].role else {
            return Ok(());
        };
        if self.conns[ci].state == ConnState::Joining {
            self.became_ready(ci);
            return Ok(());
        }
        if self.members[m].churn == Some(ChurnState::Joining) {
            self.members[m].churn = Some(ChurnState::In);
        }
        Ok(())
    }

    fn on_left(&mut self, ci: usize) {
        let Role::Member(m) = self.conns[ci].role else {
            return;
        };
        if self.members[m].churn == Some(ChurnState::Leaving) {
            self.end_stint(m);
        }
    }

    /// Closes a churner's membership stint: its holes count as loss.
    pub fn end_stint(&mut self, m: usize) {
        let member = &mut self.members[m];
        self.checks.lost += member.check.lost_mid_stream();
        member.churn = Some(ChurnState::Out);
    }

    fn on_delivery(&mut self, ci: usize, seq: Option<u64>, body: &[u8], now: u64) {
        self.progress_delivered += 1;
        let in_window = now >= self.window.start_ns && now < self.window.end_ns;
        if in_window {
            self.counters.all_delivered_in_window += 1;
        }
        let Role::Member(m) = self.conns[ci].role else {
            self.checks.unexpected += 1;
            return;
        };
        let Some(stamp) = read_stamp(body) else {
            self.checks.unexpected += 1;
            return;
        };
        let member = &mut self.members[m];
        let sender = match self.senders.get(stamp.sender as usize) {
            Some(s) if s.room == member.room => s,
            _ => {
                self.checks.unexpected += 1;
                return;
            }
        };
        if member.churn == Some(ChurnState::Out) {
            self.checks.unexpected += 1;
            return;
        }
        let new = member
            .check
            .on_delivery(sender.local, stamp.counter, seq, &mut self.checks);
        if new {
            // Duplicates are counted by the checks, never as achieved deliveries.
            if in_window && member.churn.is_none() {
                self.counters.delivered_in_window += 1;
            }
            if member.churn.is_none() {
                self.unique_static += 1;
            }
            self.latency.record(stamp.scheduled_ns, now);
        }
    }

    fn on_closed(&mut self, ci: usize, why: String) -> Result<()> {
        let conn = &mut self.conns[ci];
        if conn.state == ConnState::Closed {
            return Ok(());
        }
        let was = conn.state;
        conn.state = ConnState::Closed;
        if let Some(fd) = conn.fd() {
            // Closing the fd would unregister it too; delete first so a reused fd
            // number never inherits this token.
            let _ = self.poller.delete(fd);
        }
        conn.socket = None;
        conn.rbuf = Vec::new();
        let who = conn.player.clone();
        if !self.running {
            bail!("connection {who} failed during setup: {why}");
        }
        if matches!(was, ConnState::Connecting | ConnState::LoggingIn) {
            self.counters.incidents.connect_failures += 1;
            self.in_flight = self.in_flight.saturating_sub(1);
        } else {
            self.counters.incidents.disconnects += 1;
        }
        self.note_error(format!("{who}: {why}"));
        Ok(())
    }

    /// Queues sender `s`'s next message if it is due before `send_end`.
    pub fn fire_send(&mut self, s: usize, send_end: u64) {
        let sender = &mut self.senders[s];
        let Some(schedule) = sender.schedule.as_mut() else {
            return;
        };
        let due = schedule.advance();
        let next = schedule.next_due();
        if due >= send_end {
            return;
        }
        let counter = sender.sent;
        sender.sent += 1;
        let room = &self.rooms[sender.room];
        let conn_idx = sender.conn;
        self.expected_static += room.static_members;
        self.progress_sent += 1;
        let in_window = self.window.contains(due);
        if in_window {
            self.counters.offered_deliveries += room.static_members;
            // Taken per message (not the tick's time): a late batch shows in full.
            self.send_lag
                .saturating_record(mono_ns().saturating_sub(due).max(1));
        }
        let injected_loss = s == 0 && self.plan.skip_counter == Some(counter);
        let conn = &mut self.conns[conn_idx];
        if !injected_loss && conn.state != ConnState::Closed {
            if in_window {
                self.counters.sent_in_window += 1;
            }
            write_body(
                &mut self.body,
                Stamp {
                    scheduled_ns: due,
                    sender: s as u32,
                    counter,
                },
                self.plan.body_size,
            );
            conn.codec.publish(&mut conn.wbuf, &room.name, &self.body);
            self.mark_dirty(conn_idx);
        }
        if next < send_end {
            self.timers.push(Reverse((next, Timer::Send(s))));
        }
    }

    /// Makes churner `m` join or leave (skipped while its previous one is pending).
    pub fn fire_churn(&mut self, m: usize, send_end: u64) {
        let member = &mut self.members[m];
        let ci = member.conn;
        if let Some(schedule) = member.churn_schedule.as_mut() {
            schedule.advance();
            let next = schedule.next_due();
            if next < send_end {
                self.timers.push(Reverse((next, Timer::Churn(m))));
            }
        }
        if self.conns[ci].state != ConnState::Ready {
            return;
        }
        let room = &self.rooms[member.room].name;
        let conn = &mut self.conns[ci];
        match member.churn {
            Some(ChurnState::Out) => {
                member.check = ReceiverCheck::mid_stream(self.rooms[member.room].senders.len());
                member.churn = Some(ChurnState::Joining);
                conn.codec.join(&mut conn.wbuf, room);
            }
            Some(ChurnState::In) => {
                member.churn = Some(ChurnState::Leaving);
                conn.codec.leave(&mut conn.wbuf, room);
            }
            _ => {
                self.counters.incidents.churn_skipped += 1;
                return;
            }
        }
        self.counters.incidents.churn_ops += 1;
        self.mark_dirty(ci);
    }
}
