//! The room and member tracking: [`Chat::on_message`] updates the joined rooms, their
//! members and the current room from what the server sends, and says what to print.

use std::collections::BTreeSet;

use corecast::client::Seen;
use corecast::proto::{server_message::Data, ErrorCode, ServerMessage};

use super::{Action, Awaiting, Chat};
use crate::body::{decode_body, Body};
use crate::format::{clean, error_line, failure, list};

/// A joined room and the members the client knows of.
#[derive(Debug)]
pub(super) struct Room {
    pub(super) id: String,
    pub(super) members: BTreeSet<String>,
}

impl Chat {
    /// Updates the state for a server message; returns what to print (and, during a
    /// rejoin, to send).
    pub(crate) fn receive(&mut self, msg: ServerMessage) -> Vec<Action> {
        let Some(data) = msg.data else {
            return vec![];
        };
        let mut actions = Vec::new();
        match self.resume.observe(&data) {
            // Seen before (a replay overlapping what had arrived): shown once only.
            Seen::Duplicate => return actions,
            seen @ (Seen::Rejoined | Seen::RejoinFailed) => return self.rejoined(data, seen),
            Seen::NewAfterReplay(report) => actions.push(self.report(report)),
            Seen::Other | Seen::Joined | Seen::New => {}
        }
        if let Data::Pong(p) = &data {
            if let Some(done) = self.barrier(p.nonce) {
                return done;
            }
        }
        actions.extend(self.show(data).map(Action::Print));
        actions
    }

    /// The line a server message prints (the one line of [`Chat::receive`], for tests).
    #[cfg(test)]
    pub(crate) fn on_message(&mut self, msg: ServerMessage) -> Option<String> {
        let mut lines = self.receive(msg).into_iter().filter_map(|a| match a {
            Action::Print(line) => Some(line),
            _ => None,
        });
        let line = lines.next();
        assert_eq!(lines.next(), None, "one line at most");
        line
    }

    /// Updates the state for a server message; returns the line to print, if any.
    fn show(&mut self, data: Data) -> Option<String> {
        let line = match data {
            Data::LoginResponse(r) => return failure(r.error.as_ref()),
            Data::JoinResponse(r) => {
                if self.awaiting == Some(Awaiting::Join(r.room_id.clone())) {
                    self.awaiting = None;
                }
                if let Some(line) = failure(r.error.as_ref()) {
                    return Some(line);
                }
                let members: BTreeSet<String> = r.current_players.into_iter().collect();
                let line = format!("* joined {} (members: {})", r.room_id, list(&members));
                self.rooms.retain(|room| room.id != r.room_id);
                self.rooms.push(Room {
                    id: r.room_id.clone(),
                    members,
                });
                self.current = Some(r.room_id);
                line
            }
            Data::JoinNotification(n) => {
                if let Some(room) = self.room_mut(&n.room_id) {
                    room.members.insert(n.player_id.clone());
                }
                format!("* {} joined {}", n.player_id, n.room_id)
            }
            Data::LeaveResponse(r) => {
                if self.awaiting == Some(Awaiting::Leave(r.room_id.clone())) {
                    self.awaiting = None;
                }
                if let Some(line) = failure(r.error.as_ref()) {
                    return Some(line);
                }
                self.rooms.retain(|room| room.id != r.room_id);
                if self.current.as_deref() != Some(r.room_id.as_str()) {
                    format!("* left {}", r.room_id)
                } else {
                    self.current = self.rooms.last().map(|room| room.id.clone());
                    match &self.current {
                        Some(now) => format!("* left {} (now in {now})", r.room_id),
                        None => format!("* left {} (no current room: /join ROOM)", r.room_id),
                    }
                }
            }
            Data::LeaveNotification(n) => {
                if let Some(room) = self.room_mut(&n.room_id) {
                    room.members.remove(&n.player_id);
                }
                format!("* {} left {}", n.player_id, n.room_id)
            }
            Data::MessageNotification(m) => {
                let mine = m.sender_id == self.me;
                if mine {
                    self.unconfirmed = self.unconfirmed.saturating_sub(1);
                }
                match decode_body(&m.body) {
                    Body::Public(text) => format!("[{}] {}: {text}", m.room_id, m.sender_id),
                    Body::Private { targets, text } => {
                        let you = |name: &str| {
                            if name == self.me {
                                "you".to_string()
                            } else {
                                name.to_string()
                            }
                        };
                        let to: Vec<String> = targets.iter().map(|t| you(t)).collect();
                        format!(
                            "[{}] {} -> {}: {text}",
                            m.room_id,
                            you(&m.sender_id),
                            to.join(", ")
                        )
                    }
                }
            }
            Data::Pong(_) => return None,
            Data::Error(e) => {
                match e.code() {
                    // The answer to one of our messages, which is not echoed: it is
                    // settled, and a join or leave in flight still gets its own answer.
                    ErrorCode::Forbidden | ErrorCode::NotInRoom => {
                        self.unconfirmed = self.unconfirmed.saturating_sub(1);
                    }
                    // Every join and leave gets its own response; this only makes sure
                    // an unexpected answer can never leave the input waiting.
                    _ => self.awaiting = None,
                }
                return Some(error_line(&e));
            }
        };
        Some(clean(&line))
    }

    pub(super) fn room(&self, id: &str) -> Option<&Room> {
        self.rooms.iter().find(|room| room.id == id)
    }

    pub(super) fn room_mut(&mut self, id: &str) -> Option<&mut Room> {
        self.rooms.iter_mut().find(|room| room.id == id)
    }
}
