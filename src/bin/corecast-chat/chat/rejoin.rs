//! Reconnection, as the chat state machine sees it: [`Chat::disconnected`] when the
//! connection drops (no input is taken until it is back), [`Chat::reconnected`] once
//! logged in again (every room rejoined with a resume, from the epoch and last seq
//! seen), and one line per room saying what was recovered, printed after the replayed
//! messages: a ping sent once a rejoin's answer arrived is the barrier, since the
//! server queues a replay together with its `JoinResponse`.

use std::collections::{BTreeMap, BTreeSet};

use corecast::client::{Outcome, Rejoin, Seen};
use corecast::proto::{client_message, server_message::Data, JoinRequest, Ping};

use super::{Action, Chat};
use crate::format::{clean, failure};

/// The first nonce of the rejoin barriers (keepalive pings use 0).
const BARRIER_NONCE: u64 = 1 << 32;

/// A reconnection's rejoins on their way.
#[derive(Debug, Default)]
pub(super) struct Rejoining {
    /// Rooms whose `JoinResponse` has not arrived yet.
    answers: BTreeSet<String>,
    /// The barrier pings sent, and whose replay each one ends.
    barriers: BTreeMap<u64, String>,
    next_nonce: u64,
}

impl Chat {
    /// The connection dropped: input waits until it is back and every room rejoined.
    pub(crate) fn disconnected(&mut self) {
        self.offline = true;
        self.awaiting = None;
        self.rejoin = None;
        self.resume.disconnected();
    }

    /// Logged in again on a new connection: rejoins every room, in join order, each
    /// with a resume.
    pub(crate) fn reconnected(&mut self) -> Vec<Action> {
        self.offline = false;
        let rooms: Vec<String> = self.resume.rooms().map(str::to_string).collect();
        let mut actions = Vec::new();
        for room in &rooms {
            let history = self.resume.history(room);
            let (epoch, since_seq) = history.since.unwrap_or_default();
            actions.push(Action::Send(client_message::Data::JoinRequest(
                JoinRequest {
                    room_id: room.clone(),
                    room_config: None,
                    since_seq,
                    epoch,
                    history_limit: history.limit,
                },
            )));
        }
        self.rejoin = Some(Rejoining {
            answers: rooms.into_iter().collect(),
            barriers: BTreeMap::new(),
            next_nonce: BARRIER_NONCE,
        });
        self.rejoin_progress(&mut actions);
        actions
    }

    /// A rejoin's `JoinResponse` ([`Seen::Rejoined`] or [`Seen::RejoinFailed`]).
    pub(super) fn rejoined(&mut self, data: Data, seen: Seen) -> Vec<Action> {
        let Data::JoinResponse(r) = data else {
            return vec![];
        };
        let rejoin = self.rejoin.get_or_insert_with(|| Rejoining {
            next_nonce: BARRIER_NONCE,
            ..Default::default()
        });
        rejoin.answers.remove(&r.room_id);
        let mut actions = Vec::new();
        if seen == Seen::Rejoined {
            let nonce = rejoin.next_nonce;
            rejoin.next_nonce += 1;
            rejoin.barriers.insert(nonce, r.room_id.clone());
            if let Some(room) = self.room_mut(&r.room_id) {
                room.members = r.current_players.into_iter().collect();
            }
            actions.push(Action::Send(client_message::Data::Ping(Ping { nonce })));
        } else {
            let why = failure(r.error.as_ref()).unwrap_or_default();
            let why = why.strip_prefix("! ").unwrap_or(&why);
            actions.push(Action::Print(clean(&format!(
                "! could not rejoin {}: {why}",
                r.room_id
            ))));
            self.rooms.retain(|room| room.id != r.room_id);
            if self.current.as_deref() == Some(r.room_id.as_str()) {
                self.current = self.rooms.last().map(|room| room.id.clone());
            }
        }
        self.rejoin_progress(&mut actions);
        actions
    }

    /// A pong: when it is a rejoin's barrier, that room's replay is over.
    pub(super) fn barrier(&mut self, nonce: u64) -> Option<Vec<Action>> {
        let room = self.rejoin.as_mut()?.barriers.remove(&nonce)?;
        let mut actions: Vec<Action> = self
            .resume
            .finish(&room)
            .map(|report| self.report(report))
            .into_iter()
            .collect();
        self.rejoin_progress(&mut actions);
        Some(actions)
    }

    /// The line saying what a rejoin recovered.
    pub(super) fn report(&self, report: Rejoin) -> Action {
        let Rejoin {
            room,
            outcome,
            replayed,
        } = report;
        let lost = |why: &str| {
            format!(
                "! room {room}: could not recover what was said while disconnected ({why}): \
                 messages may be missing"
            )
        };
        let line = match outcome {
            Outcome::Recovered if replayed == 0 => {
                format!("* room {room}: resumed, nothing missed")
            }
            Outcome::Recovered => {
                format!("* room {room}: resumed, {replayed} missed message(s) recovered")
            }
            Outcome::Restarted => lost("the room restarted"),
            Outcome::HistoryLost => lost("the server's history no longer reaches back"),
        };
        Action::Print(clean(&line))
    }

    /// Once every rejoin is answered and replayed: input is taken again, and lines
    /// sent before the drop that were never echoed are reported (a replay brings the
    /// echoes of those the server had taken).
    fn rejoin_progress(&mut self, actions: &mut Vec<Action>) {
        let Some(rejoin) = &self.rejoin else {
            return;
        };
        if !rejoin.answers.is_empty() || !rejoin.barriers.is_empty() {
            return;
        }
        self.rejoin = None;
        if self.unconfirmed > 0 {
            actions.push(Action::Print(format!(
                "! {} line(s) sent before the connection was lost were not confirmed by \
                 the server (they may not have been delivered); not sent again",
                self.unconfirmed
            )));
            self.unconfirmed = 0;
        }
    }
}
