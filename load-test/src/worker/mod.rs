//! One harness thread: an epoll loop over its own connections plus a binary heap of
//! timers (each sender's next send, each churner's next join/leave, each scheduled
//! connect). It sleeps exactly until the earliest timer or I/O, fires everything due,
//! then writes each touched connection once. One scheduler per thread, not one
//! sleeping task per sender.
//!
//! - `plan`: the worker's plan and the rooms, members, senders and connections built
//!   from it.
//! - `io`: setting up, connecting, the epoll pump, reads and writes.
//! - `events`: what the server's events do (logged in, joined, left, delivery, closed).
//! - `broadcast`, `connect`: the measured phases a scenario drives
//!   ([`Worker::drive_broadcast`], [`Worker::drive_connect`]).
//! - `reconnect`: members that drop their connection and resume on a new one
//!   (the reconnect scenario, a broadcast run with drops).

mod broadcast;
mod connect;
mod events;
mod io;
mod plan;
mod reconnect;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;

use crate::check::CheckCounts;
use crate::conn::Conn;
use crate::latency::{new_histogram, LatencyRecorder, Window};
use crate::poller::{Poller, Ready};
use crate::report::Incidents;
use crate::resume::ResumeCounts;

pub use broadcast::Timing;
pub use connect::ConnectPacing;
pub use plan::{ChurnState, DropMode, Member, Room, RoomPlan, Sender, WorkerPlan};

/// How often every connection sends a keepalive (well under corecast's 60 s idle timeout).
pub const KEEPALIVE_NS: u64 = 20_000_000_000;
/// Slices of the connections pinged in turn within each `KEEPALIVE_NS`.
pub const KEEPALIVE_PARTS: usize = 64;
/// How often workers report progress.
pub const PROGRESS_EVERY_NS: u64 = 250_000_000;

/// Timer kinds, ordered so the heap is deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Sender `n` is due.
    Send(usize),
    /// Churner member `n` is due to join or leave.
    Churn(usize),
    /// Client connection `n` is due to connect.
    Connect(usize),
    /// Reconnecting member `n` is due to drop its connection.
    Drop(usize),
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
    /// Reconnect scenario: drops and resumes.
    pub resume: ResumeCounts,
}

/// What a worker hands back.
pub struct WorkerResult {
    /// Delivery latency (or connect latency in the connect scenario).
    pub latency: Histogram<u64>,
    /// Send lag: actual minus scheduled send time.
    pub send_lag: Histogram<u64>,
    /// Check totals.
    pub checks: CheckCounts,
    /// Counters.
    pub counters: RunCounters,
    /// Connections it held.
    pub connections: u64,
    /// When its last connection became ready.
    pub last_ready_ns: u64,
    /// Reconnect scenario: latency of replayed deliveries (kept out of `latency`).
    pub replay_latency: Histogram<u64>,
    /// Reconnect scenario: from dropping a connection to the resumed JoinResponse.
    pub resume_time: Histogram<u64>,
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
    /// Reconnect scenario: latency of replayed deliveries scheduled in the window.
    pub replay_latency: Histogram<u64>,
    /// Reconnect scenario: drop to resumed JoinResponse.
    pub resume_time: Histogram<u64>,
    /// Reconnect scenario: members reconnecting now (dropped, not yet resumed).
    pub reconnecting: usize,
    /// Reconnect scenario: old connections left open that the server has not closed.
    pub abandoned_open: usize,
}

impl Worker {
    /// Builds the connections, members, senders and rooms of `plan` (nothing connects
    /// yet), and with `--jwt-*` mints every connection's login token: this is where
    /// the harness signs, before any connect and so outside every measured window.
    pub fn new(plan: WorkerPlan) -> Result<Self> {
        let mut w = Self::empty(plan)?;
        for (ri, room) in w.plan.rooms.clone().iter().enumerate() {
            w.add_room(ri, room);
        }
        w.add_clients();
        if let Some(minter) = &w.plan.jwt {
            for conn in &mut w.conns {
                conn.token = Some(minter.mint(&conn.player)?);
            }
        }
        Ok(w)
    }

    /// A worker for `plan` with no connections, rooms or timers yet.
    fn empty(plan: WorkerPlan) -> Result<Self> {
        Ok(Self {
            conns: Vec::new(),
            members: Vec::new(),
            senders: Vec::new(),
            rooms: Vec::new(),
            poller: Poller::new().context("epoll_create")?,
            ready: Vec::with_capacity(1024),
            dirty: Vec::new(),
            keepalive_cursor: 0,
            timers: BinaryHeap::new(),
            scratch: vec![0; io::READ_CHUNK],
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
            replay_latency: new_histogram(),
            resume_time: new_histogram(),
            reconnecting: 0,
            abandoned_open: 0,
            plan,
        })
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

    /// Pops every timer due at `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<(u64, Timer)> {
        match self.timers.peek() {
            Some(Reverse((due, _))) if *due <= now => self.timers.pop().map(|Reverse(t)| t),
            _ => None,
        }
    }

    /// Sends a progress snapshot and resets the interval counters.
    pub fn send_progress(&mut self, progress: &mpsc::Sender<Progress>) {
        let snapshot = Progress {
            sent: std::mem::take(&mut self.progress_sent),
            delivered: std::mem::take(&mut self.progress_delivered),
            connected: std::mem::take(&mut self.progress_connected),
            interval: self.latency.take_interval(),
        };
        // The main thread may have stopped listening (error path); nothing to do then.
        let _ = progress.send(snapshot);
    }

    /// Final loss accounting and the worker's results.
    pub fn finish(mut self) -> WorkerResult {
        self.count_final_losses();
        self.count_unfinished_reconnects();
        WorkerResult {
            latency: self.latency.total.clone(),
            send_lag: self.send_lag.clone(),
            checks: self.checks,
            counters: self.counters.clone(),
            // A reconnect's new connection is the same member: count members' connections.
            connections: self.conns.len() as u64 - self.counters.resume.drops,
            last_ready_ns: self.last_ready_ns,
            replay_latency: self.replay_latency.clone(),
            resume_time: self.resume_time.clone(),
        }
    }

    /// Adds every member's missing deliveries to the lost count: a static member's
    /// against what its room's senders sent, a churner's within its current stint.
    fn count_final_losses(&mut self) {
        for m in 0..self.members.len() {
            let member = &self.members[m];
            let lost = match member.churn {
                None => {
                    let room = &self.rooms[member.room];
                    let sent: Vec<u64> =
                        room.senders.iter().map(|&s| self.senders[s].sent).collect();
                    member.check.lost_from_start(&sent)
                }
                Some(ChurnState::Out) => 0,
                Some(_) => member.check.lost_mid_stream(),
            };
            self.checks.lost += lost;
        }
    }
}
