//! A worker's part of the broadcast scenarios (fanout, chat, churn): open-loop
//! senders, churners, deliveries checked and timed (see `events`), then a drain.

use std::cmp::Reverse;
use std::sync::mpsc;

use anyhow::Result;

use crate::body::{write_body, Stamp};
use crate::check::ReceiverCheck;
use crate::clock::mono_ns;
use crate::conn::ConnState;
use crate::latency::{new_histogram, LatencyRecorder, Window};
use crate::schedule::{Schedule, SplitMix64};

use super::{
    ChurnState, Progress, Timer, Worker, KEEPALIVE_NS, KEEPALIVE_PARTS, PROGRESS_EVERY_NS,
};

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

impl Worker {
    /// Drives this worker's share of a broadcast run: schedules the senders and
    /// churners on `timing`, fires them until the send end, then drains.
    pub fn drive_broadcast(
        &mut self,
        timing: Timing,
        progress: &mpsc::Sender<Progress>,
    ) -> Result<()> {
        self.running = true;
        self.window = timing.window;
        self.latency = LatencyRecorder::new(timing.window);
        self.send_lag = new_histogram();
        let mut rng = SplitMix64::new(self.plan.seed);
        self.schedule_senders(timing.start_ns, &mut rng);
        self.schedule_churners(timing.start_ns, &mut rng);
        self.schedule_drops(timing.start_ns, &mut rng);
        self.fire_until_drained(timing, progress)?;
        self.flush_dirty()?;
        self.send_progress(progress);
        Ok(())
    }

    /// Gives every sender its schedule from `start_ns`, phases spread evenly over one
    /// period, and arms its first send.
    fn schedule_senders(&mut self, start_ns: u64, rng: &mut SplitMix64) {
        let n_senders = self.senders.len().max(1) as f64;
        for s in 0..self.senders.len() {
            let phase = s as f64 / n_senders;
            let schedule = Schedule::new(
                self.plan.rate,
                self.plan.arrivals,
                start_ns,
                phase,
                rng.next_u64(),
            );
            self.timers
                .push(Reverse((schedule.next_due(), Timer::Send(s))));
            self.senders[s].schedule = Some(schedule);
        }
    }

    /// Gives every churner its share of the plan's churn rate as a schedule from
    /// `start_ns` and arms its first join (nothing without churners or churn rate).
    fn schedule_churners(&mut self, start_ns: u64, rng: &mut SplitMix64) {
        let churners: Vec<usize> = (0..self.members.len())
            .filter(|&m| self.members[m].churn.is_some())
            .collect();
        let churning = !churners.is_empty() && self.plan.churn_rate > 0.0;
        if !churning {
            return;
        }
        let per_churner = self.plan.churn_rate / churners.len() as f64;
        for (i, &m) in churners.iter().enumerate() {
            let phase = i as f64 / churners.len() as f64;
            let schedule = Schedule::new(
                per_churner,
                self.plan.arrivals,
                start_ns,
                phase,
                rng.next_u64(),
            );
            self.timers
                .push(Reverse((schedule.next_due(), Timer::Churn(m))));
            self.members[m].churn_schedule = Some(schedule);
        }
    }

    /// The loop of the run: keepalives, due sends, churns and drops, progress every
    /// `PROGRESS_EVERY_NS`; after the send end, until every static member has what was
    /// sent (and every reconnect has settled) or the drain deadline passes.
    fn fire_until_drained(
        &mut self,
        timing: Timing,
        progress: &mpsc::Sender<Progress>,
    ) -> Result<()> {
        let send_end = timing.window.end_ns;
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
                    Timer::Drop(m) => self.fire_drop(m, send_end)?,
                    Timer::Connect(_) => {}
                }
            }
            if now >= next_progress {
                self.send_progress(progress);
                next_progress = now + PROGRESS_EVERY_NS;
            }
            let all_in = self.unique_static >= self.expected_static && self.reconnects_settled();
            if now >= send_end && (all_in || now >= drain_deadline) {
                return Ok(());
            }
            let wake = next_progress.min(next_keepalive).min(if now < send_end {
                send_end
            } else {
                drain_deadline
            });
            self.pump(wake)?;
        }
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
