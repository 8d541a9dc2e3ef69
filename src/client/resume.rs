//! [`Resume`]: what a client that reconnects needs to remember of its rooms (v1.1
//! history and resume): per room, the epoch and the last `seq` seen, the
//! [`JoinHistory`] to rejoin with, and whether a rejoin recovered everything.
//!
//! Feed it every `JoinResponse`, `LeaveResponse` and `MessageNotification` the
//! application sees ([`Resume::observe`]); when the connection drops call
//! [`Resume::disconnected`], then on the new connection rejoin each of
//! [`Resume::rooms`] with [`Resume::history`]. The replayed messages arrive after each
//! `JoinResponse` like live ones; once the replay is over ([`Resume::finish`], at a
//! barrier such as a ping sent after the `JoinResponse` arrived: the server queues the
//! replay with the response), a [`Rejoin`] says what was recovered.

use indexmap::IndexMap;

use super::requests::JoinHistory;
use crate::wire::proto::{server_message::Data, ErrorCode};

/// How many retained messages a rejoin asks for when nothing was seen in the room yet
/// (a resume needs `since_seq` > 0, so this is a `history_limit` replay checked here).
pub const FROM_START_LIMIT: u32 = 10_000;

/// Where a client stands in one room's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The room's epoch.
    pub epoch: String,
    /// The highest `seq` handed to the application in this epoch (0: none).
    pub seen: u64,
    /// `last_seq` at the latest join that was not a full resume: what came before it
    /// was not wanted.
    pub joined_at: u64,
}

impl Cursor {
    /// The `since_seq` to resume after.
    pub fn since(&self) -> u64 {
        self.seen.max(self.joined_at)
    }
}

/// How a rejoin went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing said while away is missing: all of it was replayed.
    Recovered,
    /// The room has a new epoch (it was created afresh: a server restart, or it stayed
    /// empty past the server's history TTL): what was said before is gone.
    Restarted,
    /// Same epoch, but the server's history no longer reaches back to the last message
    /// seen (or, when none had been seen, the replay could not be shown complete).
    HistoryLost,
}

/// The report of one rejoin, once its replay is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejoin {
    /// The room rejoined.
    pub room: String,
    /// Whether everything said while away was recovered.
    pub outcome: Outcome,
    /// Messages replayed (seen for the first time) by this rejoin.
    pub replayed: u64,
}

/// What [`Resume::observe`] made of a server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Nothing this tracks (pongs, notifications, errors, failed joins).
    Other,
    /// A room joined for the first time: tracked from now on.
    Joined,
    /// A room rejoined after [`Resume::disconnected`]: its replay follows; the report
    /// comes from [`Resume::finish`] (or [`Seen::NewAfterReplay`]).
    Rejoined,
    /// A message not seen before: show it.
    New,
    /// A message at or below the room's cursor: seen before, skip it.
    Duplicate,
    /// A live message (past the rejoin's replay) arrived before [`Resume::finish`]:
    /// show the report, then the message (which is new).
    NewAfterReplay(Rejoin),
    /// A rejoin failed (its `JoinResponse` carried an error): the room is forgotten.
    RejoinFailed,
}

/// A rejoin whose replay is still arriving.
#[derive(Debug, Clone)]
struct Replay {
    outcome: Outcome,
    /// The room's `last_seq` at the rejoin: replayed messages are at or below it.
    until: u64,
    replayed: u64,
    /// Nothing had been seen (a `history_limit` replay): the next `seq` a complete
    /// replay would bring, while it has been complete so far.
    from_start_next: Option<u64>,
}

#[derive(Debug, Clone)]
struct Room {
    cursor: Cursor,
    /// The connection dropped: the next successful join of this room is its rejoin.
    lost: bool,
    replay: Option<Replay>,
}

/// The rooms a client is in and where it stands in each, in join order.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    rooms: IndexMap<String, Room>,
}

impl Resume {
    /// Tracks no room yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The rooms tracked, in join order.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(String::as_str)
    }

    /// Where the client stands in `room`.
    pub fn cursor(&self, room: &str) -> Option<&Cursor> {
        self.rooms.get(room).map(|r| &r.cursor)
    }

    /// What to (re)join `room` with: a resume after the last `seq` seen; when nothing
    /// was seen yet, the room's retained messages (up to [`FROM_START_LIMIT`]),
    /// checked here; nothing for a room not tracked.
    pub fn history(&self, room: &str) -> JoinHistory {
        match self.rooms.get(room) {
            Some(r) if r.cursor.since() > 0 => {
                JoinHistory::resume(r.cursor.epoch.clone(), r.cursor.since())
            }
            Some(r) => JoinHistory {
                since: Some((r.cursor.epoch.clone(), 0)),
                limit: FROM_START_LIMIT,
            },
            None => JoinHistory::default(),
        }
    }

    /// The connection dropped: every room's next successful join is a rejoin (and a
    /// rejoin still replaying is abandoned).
    pub fn disconnected(&mut self) {
        for room in self.rooms.values_mut() {
            room.lost = true;
            room.replay = None;
        }
    }

    /// Stops tracking `room` (left, or given up).
    pub fn forget(&mut self, room: &str) {
        self.rooms.shift_remove(room);
    }

    /// Ends `room`'s rejoin replay (call at a barrier after its `JoinResponse`): its
    /// report, or None when no rejoin was replaying.
    pub fn finish(&mut self, room: &str) -> Option<Rejoin> {
        let replay = self.rooms.get_mut(room)?.replay.take()?;
        Some(report(room, replay))
    }

    /// Notes a server message; says whether to show it.
    pub fn observe(&mut self, data: &Data) -> Seen {
        match data {
            Data::JoinResponse(r) => {
                let failed = r
                    .error
                    .as_ref()
                    .is_some_and(|e| e.code() != ErrorCode::None);
                let Some(room) = self.rooms.get_mut(&r.room_id) else {
                    if !failed {
                        let cursor = Cursor {
                            epoch: r.epoch.clone(),
                            seen: 0,
                            joined_at: r.last_seq,
                        };
                        self.rooms.insert(
                            r.room_id.clone(),
                            Room {
                                cursor,
                                lost: false,
                                replay: None,
                            },
                        );
                        return Seen::Joined;
                    }
                    return Seen::Other;
                };
                if !room.lost {
                    // ALREADY_JOINED_THE_ROOM, or a repeated answer: still joined.
                    return Seen::Other;
                }
                if failed {
                    self.rooms.shift_remove(&r.room_id);
                    return Seen::RejoinFailed;
                }
                room.lost = false;
                let since = room.cursor.since();
                let same_epoch = r.epoch == room.cursor.epoch;
                let outcome = if !same_epoch {
                    Outcome::Restarted
                } else if since == 0 || r.recovered {
                    Outcome::Recovered
                } else {
                    Outcome::HistoryLost
                };
                if !same_epoch {
                    room.cursor = Cursor {
                        epoch: r.epoch.clone(),
                        seen: 0,
                        joined_at: r.last_seq,
                    };
                } else if outcome == Outcome::HistoryLost {
                    room.cursor.joined_at = room.cursor.joined_at.max(r.last_seq);
                }
                room.replay = Some(Replay {
                    outcome,
                    until: r.last_seq,
                    replayed: 0,
                    from_start_next: (same_epoch && since == 0).then_some(1),
                });
                Seen::Rejoined
            }
            Data::LeaveResponse(r) => {
                if r.error.as_ref().is_none_or(|e| e.code() == ErrorCode::None) {
                    self.rooms.shift_remove(&r.room_id);
                }
                Seen::Other
            }
            Data::MessageNotification(m) => {
                let Some(room) = self.rooms.get_mut(&m.room_id) else {
                    return Seen::New;
                };
                if m.seq <= room.cursor.seen {
                    return Seen::Duplicate;
                }
                room.cursor.seen = m.seq;
                let Some(replay) = room.replay.as_mut() else {
                    return Seen::New;
                };
                if m.seq > replay.until {
                    let replay = room.replay.take().expect("replaying");
                    return Seen::NewAfterReplay(report(&m.room_id, replay));
                }
                replay.replayed += 1;
                if let Some(next) = replay.from_start_next.as_mut() {
                    if m.seq == *next {
                        *next += 1;
                    } else {
                        replay.from_start_next = None;
                        replay.outcome = Outcome::HistoryLost;
                    }
                }
                Seen::New
            }
            _ => Seen::Other,
        }
    }
}

fn report(room: &str, replay: Replay) -> Rejoin {
    let mut outcome = replay.outcome;
    if let Some(next) = replay.from_start_next {
        // Nothing had been seen: complete only if every seq up to the rejoin came.
        if next <= replay.until {
            outcome = Outcome::HistoryLost;
        }
    }
    Rejoin {
        room: room.to_string(),
        outcome,
        replayed: replay.replayed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::proto::{Error, JoinResponse, LeaveResponse, MessageNotification};

    fn joined(room: &str, epoch: &str, last_seq: u64, recovered: bool) -> Data {
        Data::JoinResponse(JoinResponse {
            room_id: room.into(),
            epoch: epoch.into(),
            last_seq,
            recovered,
            ..Default::default()
        })
    }

    fn msg(room: &str, seq: u64) -> Data {
        Data::MessageNotification(MessageNotification {
            room_id: room.into(),
            seq,
            ..Default::default()
        })
    }

    #[test]
    fn a_resume_replays_after_the_last_seq_seen() {
        let mut r = Resume::new();
        assert_eq!(r.history("a"), JoinHistory::default());
        assert_eq!(r.observe(&joined("a", "e1", 4, false)), Seen::Joined);
        assert_eq!(r.observe(&msg("a", 5)), Seen::New);
        assert_eq!(r.observe(&msg("a", 6)), Seen::New);
        assert_eq!(r.observe(&msg("a", 6)), Seen::Duplicate);
        assert_eq!(r.history("a"), JoinHistory::resume("e1", 6));

        r.disconnected();
        assert_eq!(r.rooms().collect::<Vec<_>>(), ["a"]);
        assert_eq!(r.observe(&joined("a", "e1", 9, true)), Seen::Rejoined);
        for seq in 7..=9 {
            assert_eq!(r.observe(&msg("a", seq)), Seen::New);
        }
        assert_eq!(
            r.finish("a"),
            Some(Rejoin {
                room: "a".into(),
                outcome: Outcome::Recovered,
                replayed: 3
            })
        );
        assert_eq!(r.finish("a"), None);
        assert_eq!(r.history("a"), JoinHistory::resume("e1", 9));
    }

    #[test]
    fn a_live_message_ends_the_replay() {
        let mut r = Resume::new();
        r.observe(&joined("a", "e1", 2, false));
        r.disconnected();
        r.observe(&joined("a", "e1", 4, true));
        assert_eq!(r.history("a"), JoinHistory::resume("e1", 2), "mid-replay");
        // seq 3 was targeted at someone else: only 4 is replayed to us.
        assert_eq!(r.observe(&msg("a", 4)), Seen::New);
        assert_eq!(
            r.observe(&msg("a", 5)),
            Seen::NewAfterReplay(Rejoin {
                room: "a".into(),
                outcome: Outcome::Recovered,
                replayed: 1
            })
        );
        assert_eq!(r.finish("a"), None);
    }

    #[test]
    fn a_new_epoch_or_a_short_history_is_not_recovered() {
        let mut r = Resume::new();
        r.observe(&joined("a", "e1", 0, false));
        r.observe(&msg("a", 1));
        r.observe(&joined("b", "f1", 10, false));
        r.observe(&msg("b", 11));
        r.disconnected();
        // The server restarted: a new epoch, seq from 1 again.
        assert_eq!(r.observe(&joined("a", "e2", 0, false)), Seen::Rejoined);
        assert_eq!(r.finish("a").unwrap().outcome, Outcome::Restarted);
        assert_eq!(r.cursor("a").unwrap().epoch, "e2");
        assert_eq!(r.observe(&msg("a", 1)), Seen::New, "not a duplicate");
        // Same epoch, history gone.
        assert_eq!(r.observe(&joined("b", "f1", 30, false)), Seen::Rejoined);
        assert_eq!(r.finish("b").unwrap().outcome, Outcome::HistoryLost);
        // The loss was reported: the next resume starts at the rejoin.
        assert_eq!(r.history("b"), JoinHistory::resume("f1", 30));
        assert_eq!(r.rooms().collect::<Vec<_>>(), ["a", "b"], "join order");
    }

    #[test]
    fn nothing_seen_yet_asks_for_the_retained_messages() {
        let mut r = Resume::new();
        r.observe(&joined("a", "e1", 0, false));
        let asked = JoinHistory {
            since: Some(("e1".into(), 0)),
            limit: FROM_START_LIMIT,
        };
        assert_eq!(r.history("a"), asked);
        r.disconnected();
        r.observe(&joined("a", "e1", 2, false));
        r.observe(&msg("a", 1));
        r.observe(&msg("a", 2));
        assert_eq!(r.finish("a").unwrap().outcome, Outcome::Recovered);
        // Nothing said meanwhile.
        r.disconnected();
        r.observe(&joined("a", "e1", 2, true));
        assert_eq!(r.finish("a").unwrap().outcome, Outcome::Recovered);
        // A gap (or a replay cut short) cannot be shown complete.
        let mut r = Resume::new();
        r.observe(&joined("a", "e1", 0, false));
        r.disconnected();
        r.observe(&joined("a", "e1", 3, false));
        r.observe(&msg("a", 2));
        r.observe(&msg("a", 3));
        assert_eq!(r.finish("a").unwrap().outcome, Outcome::HistoryLost);
        let mut r = Resume::new();
        r.observe(&joined("a", "e1", 0, false));
        r.disconnected();
        r.observe(&joined("a", "e1", 3, false));
        r.observe(&msg("a", 1));
        assert_eq!(r.finish("a").unwrap().outcome, Outcome::HistoryLost);
    }

    #[test]
    fn leaves_and_failed_rejoins_forget_the_room() {
        let mut r = Resume::new();
        r.observe(&joined("a", "e1", 0, false));
        r.observe(&joined("b", "e1", 0, false));
        let refused = Data::JoinResponse(JoinResponse {
            room_id: "a".into(),
            error: Some(Error {
                code: ErrorCode::AlreadyJoinedTheRoom as i32,
                message: "already".into(),
            }),
            ..Default::default()
        });
        assert_eq!(r.observe(&refused), Seen::Other);
        assert!(r.cursor("a").is_some(), "still joined");
        r.observe(&Data::LeaveResponse(LeaveResponse {
            room_id: "b".into(),
            error: None,
        }));
        assert!(r.cursor("b").is_none());
        r.disconnected();
        let full = Data::JoinResponse(JoinResponse {
            room_id: "a".into(),
            error: Some(Error {
                code: ErrorCode::RoomIsFull as i32,
                message: "full".into(),
            }),
            ..Default::default()
        });
        assert_eq!(r.observe(&full), Seen::RejoinFailed);
        assert_eq!(r.rooms().count(), 0);
        // Messages of rooms not tracked are shown.
        assert_eq!(r.observe(&msg("z", 1)), Seen::New);
    }
}
