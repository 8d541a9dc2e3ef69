//! A worker's part of the connect scenario: its clients connect and log in as fast as
//! possible (with a bound on handshakes in flight) or on an open-loop schedule, and
//! each one's connect+login latency is timed from when it was due to start.

use std::cmp::Reverse;
use std::sync::mpsc;

use anyhow::Result;

use crate::clock::mono_ns;
use crate::latency::{new_histogram, LatencyRecorder, Window};
use crate::schedule::Schedule;

use super::{Progress, Timer, Worker, PROGRESS_EVERY_NS};

/// How the connect scenario paces its clients.
#[derive(Debug, Clone, Copy)]
pub struct ConnectPacing {
    /// Connects per second for this worker (None: as fast as `concurrency` allows).
    pub rate: Option<f64>,
    /// Handshakes in flight at once when unpaced.
    pub concurrency: usize,
    /// Give up after this long.
    pub timeout_ns: u64,
}

impl Worker {
    /// Drives this worker's share of a connect run: connects and logs in every client;
    /// connect latency lands in `send_lag`. Returns the time the first connect started.
    pub fn drive_connect(
        &mut self,
        pacing: ConnectPacing,
        progress: &mpsc::Sender<Progress>,
    ) -> Result<u64> {
        self.running = true;
        self.send_lag = new_histogram();
        self.latency = LatencyRecorder::new(Window {
            start_ns: 0,
            end_ns: 0,
        });
        let start = mono_ns() + 1_000_000;
        let n = self.conns.len();
        if let Some(rate) = pacing.rate {
            let mut schedule = Schedule::new(rate, self.plan.arrivals, start, 0.0, self.plan.seed);
            for ci in 0..n {
                self.timers
                    .push(Reverse((schedule.advance(), Timer::Connect(ci))));
            }
        }
        let deadline = start + pacing.timeout_ns;
        let mut next_progress = start + PROGRESS_EVERY_NS;
        loop {
            let now = mono_ns();
            while let Some((due, timer)) = self.pop_due(now) {
                if let Timer::Connect(ci) = timer {
                    self.start(ci, due)?;
                }
            }
            if pacing.rate.is_none() && now >= start {
                while self.in_flight < pacing.concurrency && self.next_to_start < n {
                    let ci = self.next_to_start;
                    self.next_to_start += 1;
                    self.start(ci, mono_ns())?;
                }
            }
            if now >= next_progress {
                self.send_progress(progress);
                next_progress = now + PROGRESS_EVERY_NS;
            }
            let finished = self.ready_count + self.counters.incidents.connect_failures as usize;
            if finished >= n && self.timers.is_empty() {
                break;
            }
            if now > deadline {
                let unfinished = n.saturating_sub(finished);
                self.counters.incidents.connect_failures += unfinished as u64;
                self.note_error(format!(
                    "{unfinished} clients not logged in after the timeout"
                ));
                break;
            }
            self.pump(next_progress.min(deadline))?;
        }
        self.send_progress(progress);
        Ok(start)
    }
}
