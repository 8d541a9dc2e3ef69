//! A worker's reconnecting members (the reconnect scenario): on its Poisson schedule
//! a member drops its connection, either closing it or leaving it open as a client
//! that believes it dead does, connects again, logs in with `replace_existing` and
//! joins with `since_seq` (the last seq it saw) and the room's epoch. Its one
//! [`ReceiverCheck`](crate::check::ReceiverCheck) follows it over all its connections
//! (see [`crate::resume`]); replays are timed apart from live deliveries.

use std::cmp::Reverse;

use anyhow::Result;

use crate::clock::mono_ns;
use crate::conn::{Conn, ConnState, Rejoin, Role};
use crate::schedule::{Arrivals, Schedule, SplitMix64};
use crate::targets::{Codec, JoinInfo};

use super::{DropMode, Timer, Worker};

impl Worker {
    /// Gives every reconnecting member its Poisson schedule of drops from `start_ns`
    /// (`drop_rate` each) and arms its first drop.
    pub(super) fn schedule_drops(&mut self, start_ns: u64, rng: &mut SplitMix64) {
        if self.plan.drop_rate <= 0.0 {
            return;
        }
        for m in 0..self.members.len() {
            if self.members[m].resume.is_none() {
                continue;
            }
            let schedule = Schedule::new(
                self.plan.drop_rate,
                Arrivals::Poisson,
                start_ns,
                0.0,
                rng.next_u64(),
            );
            self.timers
                .push(Reverse((schedule.next_due(), Timer::Drop(m))));
            self.members[m].drop_schedule = Some(schedule);
        }
    }

    /// Member `m` drops its connection and starts a new one that resumes the room
    /// after the last seq it saw. Skipped (and counted) while its previous reconnect
    /// is still under way or before it has seen anything to resume after.
    pub(super) fn fire_drop(&mut self, m: usize, send_end: u64) -> Result<()> {
        let member = &mut self.members[m];
        if let Some(schedule) = member.drop_schedule.as_mut() {
            schedule.advance();
            let next = schedule.next_due();
            if next < send_end {
                self.timers.push(Reverse((next, Timer::Drop(m))));
            }
        }
        let old = member.conn;
        let from = member
            .resume
            .as_ref()
            .and_then(|r| r.resume_point(&member.check));
        let (Some(from), ConnState::Ready) = (from, self.conns[old].state) else {
            self.counters.resume.drops_skipped += 1;
            return Ok(());
        };
        let replace = match self.plan.drop_mode {
            DropMode::Close => false,
            DropMode::Replace => true,
            DropMode::Mixed => member.drops % 2 == 1,
        };
        member.drops += 1;
        if replace {
            // Still open and still read, but nothing on it counts any more.
            self.conns[old].role = Role::Abandoned(m);
            self.abandoned_open += 1;
            self.counters.resume.replaced += 1;
        } else {
            self.close_quietly(old);
            self.counters.resume.closed += 1;
        }
        self.counters.resume.drops += 1;
        self.reconnecting += 1;
        let now = mono_ns();
        let ci = self.conns.len();
        let mut conn = Conn::new(
            Codec::new(self.plan.target, self.plan.transport),
            Role::Member(m),
            self.conns[old].player.clone(),
        );
        // The member's token, minted at plan time: no signing mid-run.
        conn.token = self.conns[old].token.clone();
        conn.rejoin = Some(Rejoin {
            from,
            dropped_ns: now,
        });
        self.conns.push(conn);
        self.members[m].conn = ci;
        self.start(ci, now)
    }

    /// Closes connection `ci` from our side: no incident, nothing more read from it.
    fn close_quietly(&mut self, ci: usize) {
        let conn = &mut self.conns[ci];
        if let Some(fd) = conn.fd() {
            let _ = self.poller.delete(fd);
        }
        conn.socket = None;
        conn.state = ConnState::Closed;
        conn.rbuf = Vec::new();
    }

    /// A reconnecting member `m`'s JoinResponse on connection `ci`: its first join
    /// anchors the room's seq; a resumed one is counted (recovered or not) and timed
    /// from the drop.
    pub(super) fn on_member_joined(&mut self, ci: usize, m: usize, info: &JoinInfo, now: u64) {
        let member = &mut self.members[m];
        let Some(track) = member.resume.as_mut() else {
            return;
        };
        match self.conns[ci].rejoin.as_ref() {
            None => track.on_first_join(&mut member.check, info),
            Some(rejoin) => {
                track.on_resumed(
                    &mut member.check,
                    &rejoin.from,
                    info,
                    &mut self.counters.resume,
                );
                self.resume_time
                    .saturating_record(now.saturating_sub(rejoin.dropped_ns).max(1));
                self.reconnecting = self.reconnecting.saturating_sub(1);
            }
        }
    }

    /// An error on a connection its member left open: SESSION_REPLACED is what the
    /// new login should cause; anything else is a server error.
    pub(super) fn on_abandoned_error(&mut self, msg: &str) {
        if msg.starts_with("SessionReplaced") {
            self.counters.resume.session_replaced += 1;
        } else {
            self.counters.incidents.server_errors += 1;
            self.note_error(format!("old connection: {msg}"));
        }
    }

    /// The server closed a connection its member had left open.
    pub(super) fn on_abandoned_closed(&mut self) {
        self.counters.resume.old_closed += 1;
        self.abandoned_open = self.abandoned_open.saturating_sub(1);
    }

    /// Whether no reconnect is under way and every old connection left open has been
    /// closed by the server (the drain waits for it).
    pub fn reconnects_settled(&self) -> bool {
        self.reconnecting == 0 && self.abandoned_open == 0
    }

    /// At the end: reconnects still under way and old connections still open are
    /// errors.
    pub(super) fn count_unfinished_reconnects(&mut self) {
        self.counters.resume.incomplete += self.reconnecting as u64;
        self.counters.resume.old_not_closed += self.abandoned_open as u64;
    }
}
