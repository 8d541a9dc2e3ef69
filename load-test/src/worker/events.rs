//! What the server's events do to a worker: a login leads to a join (or readiness),
//! joins and leaves move churners in and out, deliveries are checked and timed, and a
//! closed connection is an incident (or, during setup, the end of the run).

use anyhow::{bail, Result};

use crate::body::read_stamp;
use crate::clock::mono_ns;
use crate::conn::{ConnState, Role};
use crate::targets::{Event, JoinInfo};

use super::{ChurnState, Worker};

impl Worker {
    pub(super) fn on_event(&mut self, ci: usize, event: Event<'_>, now: u64) -> Result<()> {
        match event {
            Event::Delivery { seq, body } => {
                self.on_delivery(ci, seq, body, now);
                Ok(())
            }
            Event::LoggedIn => self.on_logged_in(ci, now),
            Event::Joined(info) => self.on_joined(ci, &info, now),
            Event::Left => {
                self.on_left(ci);
                Ok(())
            }
            Event::Rejected(msg) if matches!(self.conns[ci].role, Role::Abandoned(_)) => {
                self.on_abandoned_error(&msg);
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
                match &conn.rejoin {
                    Some(rejoin) => conn.codec.join_resuming(&mut conn.wbuf, room, &rejoin.from),
                    None => conn.codec.join(&mut conn.wbuf, room),
                }
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

    fn on_joined(&mut self, ci: usize, info: &JoinInfo, now: u64) -> Result<()> {
        let Role::Member(m) = self.conns[ci].role else {
            return Ok(());
        };
        if self.conns[ci].state == ConnState::Joining {
            self.on_member_joined(ci, m, info, now);
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
        let m = match self.conns[ci].role {
            Role::Member(m) => m,
            Role::Abandoned(_) => {
                // Its member gave up on it: what still arrives is not counted.
                self.counters.resume.ignored_on_old += 1;
                return;
            }
            _ => {
                self.checks.unexpected += 1;
                return;
            }
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
            if member.resume.as_ref().is_some_and(|r| r.is_replay(seq)) {
                // A replay waited out the member's reconnect: timed apart, so the
                // live latency stays the live path's.
                self.counters.resume.replayed += 1;
                if self.window.contains(stamp.scheduled_ns) {
                    self.replay_latency
                        .saturating_record(now.saturating_sub(stamp.scheduled_ns).max(1));
                }
            } else {
                self.latency.record(stamp.scheduled_ns, now);
            }
        }
    }

    pub(super) fn on_closed(&mut self, ci: usize, why: String) -> Result<()> {
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
        if matches!(conn.role, Role::Abandoned(_)) {
            self.on_abandoned_closed();
            return Ok(());
        }
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
}
