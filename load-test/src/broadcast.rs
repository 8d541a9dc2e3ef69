//! The measured part of the broadcast scenarios (fanout, chat, churn): open-loop
//! senders, churners, deliveries checked and timed, then a drain.

use std::cmp::Reverse;
use std::sync::mpsc;

use anyhow::Result;
use hdrhistogram::Histogram;

use crate::check::CheckCounts;
use crate::clock::mono_ns;
use crate::latency::{new_histogram, LatencyRecorder, Window};
use crate::schedule::{Schedule, SplitMix64};
use crate::worker::{Progress, RunCounters, Timer, Worker, KEEPALIVE_NS, KEEPALIVE_PARTS};

/// How often workers report progress.
pub const PROGRESS_EVERY_NS: u64 = 250_000_000;

/// When a run happens.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// First sends (warm-up starts).
    pub start_ns: u64,
    /// The measured window (warm-up end to send end).
    pub window: Window,
    /// After the send end, how long to wait for late deliveries.
    pub drain_ns: u64,
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
}

impl Worker {
    /// Runs the senders and churners on `timing`, then drains.
    pub fn run_broadcast(
        &mut self,
        timing: Timing,
        progress: &mpsc::Sender<Progress>,
    ) -> Result<()> {
        self.running = true;
        self.window = timing.window;
        self.latency = LatencyRecorder::new(timing.window);
        self.send_lag = new_histogram();
        let send_end = timing.window.end_ns;
        let mut rng = SplitMix64::new(self.plan.seed);
        let n_senders = self.senders.len().max(1) as f64;
        for s in 0..self.senders.len() {
            let phase = s as f64 / n_senders;
            let schedule = Schedule::new(
                self.plan.rate,
                self.plan.arrivals,
                timing.start_ns,
                phase,
                rng.next_u64(),
            );
            self.timers
                .push(Reverse((schedule.next_due(), Timer::Send(s))));
            self.senders[s].schedule = Some(schedule);
        }
        let churners: Vec<usize> = (0..self.members.len())
            .filter(|&m| self.members[m].churn.is_some())
            .collect();
        if !churners.is_empty() && self.plan.churn_rate > 0.0 {
            let per_churner = self.plan.churn_rate / churners.len() as f64;
            for (i, &m) in churners.iter().enumerate() {
                let phase = i as f64 / churners.len() as f64;
                let schedule = Schedule::new(
                    per_churner,
                    self.plan.arrivals,
                    timing.start_ns,
                    phase,
                    rng.next_u64(),
                );
                self.timers
                    .push(Reverse((schedule.next_due(), Timer::Churn(m))));
                self.members[m].churn_schedule = Some(schedule);
            }
        }
        let drain_deadline = send_end + timing.drain_ns;
        let mut next_progress = mono_ns() + PROGRESS_EVERY_NS;
        let mut next_keepalive = mono_ns() + KEEPALIVE_NS / KEEPALIVE_PARTS as u64;
        loop {
            let now = mono_ns();
            if now >= next_keepalive {
                self.keepalive_some();
                next_keepalive = now + KEEPALIVE_NS / KEEPALIVE_PARTS as u64;
            }
            while let Some((_, timer)) = self.pop_due(now) {
                match timer {
                    Timer::Send(s) => self.fire_send(s, send_end),
                    Timer::Churn(m) => self.fire_churn(m, send_end),
                    Timer::Connect(_) => {}
                }
            }
            if now >= next_progress {
                self.send_progress(progress);
                next_progress = now + PROGRESS_EVERY_NS;
            }
            if now >= send_end
                && (self.unique_static >= self.expected_static || now >= drain_deadline)
            {
                break;
            }
            let wake = next_progress.min(next_keepalive).min(if now < send_end {
                send_end
            } else {
                drain_deadline
            });
            self.pump(wake)?;
        }
        self.flush_dirty()?;
        self.send_progress(progress);
        Ok(())
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
        for m in 0..self.members.len() {
            let member = &self.members[m];
            let lost = match member.churn {
                None => {
                    let room = &self.rooms[member.room];
                    let sent: Vec<u64> =
                        room.senders.iter().map(|&s| self.senders[s].sent).collect();
                    member.check.lost_from_start(&sent)
                }
                Some(crate::worker::ChurnState::Out) => 0,
                Some(_) => member.check.lost_mid_stream(),
            };
            self.checks.lost += lost;
        }
        WorkerResult {
            latency: self.latency.total.clone(),
            send_lag: self.send_lag.clone(),
            checks: self.checks,
            counters: self.counters.clone(),
            connections: self.conns.len() as u64,
            last_ready_ns: self.last_ready_ns,
        }
    }
}
