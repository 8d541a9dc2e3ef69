//! [`Chat`], the chat client's state machine: what an input line leads to (the
//! [`Action`]s the main loop performs), and, in `rooms`, what the server's messages
//! change and print; in `rejoin`, what a reconnection does (every room rejoined with a
//! resume, and what was recovered said). No socket, no terminal: the unit tests in
//! `tests` drive it.

mod rejoin;
mod rooms;
#[cfg(test)]
mod tests;

use prost::Message;

use corecast::client::Resume;
use corecast::proto::{client_message, ClientMessage, JoinRequest, LeaveRequest, SendMessage};

use crate::body::{encode_private, encode_public};
use crate::command::{parse_line, Command, COMMANDS};
use crate::format::{clean, list};
use rooms::Room;

/// What the main loop does for the chat state machine.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Send this request to the server.
    Send(client_message::Data),
    /// Print this line.
    Print(String),
    /// Disconnect and exit (once what was sent is confirmed).
    Quit,
}

/// A request that changes the current room, sent and not answered yet.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Awaiting {
    Join(String),
    Leave(String),
}

/// The chat client's state: joined rooms, in join order, the current room, and what
/// is still on its way.
#[derive(Debug)]
pub(crate) struct Chat {
    /// Our own player id (the sender of our echoes).
    me: String,
    /// The server's frame limit: larger requests are refused here.
    max_frame_bytes: usize,
    rooms: Vec<Room>,
    current: Option<String>,
    /// A join or leave waiting for its answer: input waits with it.
    awaiting: Option<Awaiting>,
    /// Our messages sent and not echoed back yet (a private one is addressed to its
    /// sender too, so that it is echoed).
    pub(crate) unconfirmed: usize,
    /// Each room's epoch and last seq seen, to rejoin it with a resume.
    resume: Resume,
    /// The connection is down: no input is taken until it is back and rejoined.
    offline: bool,
    /// A reconnection's rejoins still on their way.
    rejoin: Option<rejoin::Rejoining>,
}

impl Chat {
    pub(crate) fn new(me: &str, max_frame_bytes: usize) -> Self {
        Self {
            me: me.to_string(),
            max_frame_bytes,
            rooms: Vec::new(),
            current: None,
            awaiting: None,
            unconfirmed: 0,
            resume: Resume::new(),
            offline: false,
            rejoin: None,
        }
    }

    /// Whether the next input line can be taken (no join or leave is on its way, and
    /// the connection is up with every room rejoined).
    pub(crate) fn ready(&self) -> bool {
        self.awaiting.is_none() && !self.offline && self.rejoin.is_none()
    }

    /// Whether everything sent has been answered or echoed.
    pub(crate) fn settled(&self) -> bool {
        self.awaiting.is_none() && self.unconfirmed == 0
    }

    /// The line editor's prompt.
    pub(crate) fn prompt(&self) -> String {
        match &self.current {
            Some(room) => clean(&format!("{room}> ")),
            None => "> ".to_string(),
        }
    }

    /// What an input line leads to.
    pub(crate) fn on_line(&mut self, line: &str) -> Vec<Action> {
        let command = match parse_line(line) {
            Ok(command) => command,
            Err(usage) => return vec![Action::Print(format!("! {usage}"))],
        };
        match command {
            Command::Nothing => vec![],
            Command::Say(text) => match self.current.clone() {
                Some(room) => {
                    let request = send_message(&room, vec![], encode_public(&text));
                    self.message(request, "line")
                }
                None => vec![not_in_a_room()],
            },
            Command::To { targets, text } => self.to(targets, &text),
            Command::Join(room) => {
                if self.room(&room).is_some() {
                    let line = format!("* current room: {room}");
                    self.current = Some(room);
                    vec![Action::Print(clean(&line))]
                } else {
                    let request = client_message::Data::JoinRequest(JoinRequest {
                        room_id: room.clone(),
                        room_config: None,
                        ..Default::default()
                    });
                    self.request(request, "room name", Awaiting::Join(room))
                }
            }
            Command::Leave(room) => match room.or_else(|| self.current.clone()) {
                // Asked even for a room not joined here: the server's answer is the truth.
                Some(room_id) => {
                    let request = client_message::Data::LeaveRequest(LeaveRequest {
                        room_id: room_id.clone(),
                    });
                    self.request(request, "room name", Awaiting::Leave(room_id))
                }
                None => vec![not_in_a_room()],
            },
            Command::Who(room) => match room.or_else(|| self.current.clone()) {
                Some(room_id) => match self.room(&room_id) {
                    Some(room) => vec![Action::Print(clean(&format!(
                        "* members of {room_id}: {}",
                        list(&room.members)
                    )))],
                    None => vec![Action::Print(clean(&format!("! not in {room_id}")))],
                },
                None => vec![not_in_a_room()],
            },
            Command::Help => COMMANDS
                .lines()
                .map(|l| Action::Print(l.to_string()))
                .collect(),
            Command::Quit => vec![Action::Quit],
        }
    }

    /// `/to`: the targets are checked against the members this client knows of (the
    /// server silently ignores unknown ids, so the sender would get no sign). Unknown
    /// names are warned about and left out; with no known name left nothing is sent.
    fn to(&mut self, targets: Vec<String>, text: &str) -> Vec<Action> {
        let Some(room_id) = self.current.clone() else {
            return vec![not_in_a_room()];
        };
        let members = self.room(&room_id).map(|r| &r.members);
        let (known, unknown): (Vec<String>, Vec<String>) = targets
            .into_iter()
            .partition(|t| members.is_some_and(|m| m.contains(t)));
        if known.is_empty() {
            return vec![Action::Print(clean(&format!(
                "! not in {room_id}: {}; nothing sent",
                unknown.join(", ")
            )))];
        }
        let mut actions = Vec::new();
        if !unknown.is_empty() {
            actions.push(Action::Print(clean(&format!(
                "! not in {room_id}: {}; sent to {} only",
                unknown.join(", "),
                known.join(", ")
            ))));
        }
        let body = encode_private(&known, text);
        let mut target_ids = known;
        if !target_ids.contains(&self.me) {
            // Addressed to the sender too: its echo confirms the server took it.
            target_ids.push(self.me.clone());
        }
        actions.extend(self.message(send_message(&room_id, target_ids, body), "line"));
        actions
    }

    /// A message the server will echo back to us.
    fn message(&mut self, request: client_message::Data, what: &str) -> Vec<Action> {
        match self.fits(request, what) {
            Ok(send) => {
                self.unconfirmed += 1;
                vec![send]
            }
            Err(refused) => vec![refused],
        }
    }

    /// A join or leave: input waits for its answer.
    fn request(
        &mut self,
        request: client_message::Data,
        what: &str,
        awaiting: Awaiting,
    ) -> Vec<Action> {
        match self.fits(request, what) {
            Ok(send) => {
                self.awaiting = Some(awaiting);
                vec![send]
            }
            Err(refused) => vec![refused],
        }
    }

    /// `Send`, or a refusal when the frame would be over the server's limit (the
    /// server would close the connection for it).
    fn fits(&self, request: client_message::Data, what: &str) -> Result<Action, Action> {
        let len = ClientMessage {
            data: Some(request),
        };
        let size = len.encoded_len();
        match len.data {
            Some(request) if size <= self.max_frame_bytes => Ok(Action::Send(request)),
            _ => Err(Action::Print(format!(
                "! {what} too long: it makes a {size}-byte frame, the server takes at most \
                 {} (--max-frame-bytes); not sent",
                self.max_frame_bytes
            ))),
        }
    }
}

fn send_message(room: &str, targets: Vec<String>, body: String) -> client_message::Data {
    client_message::Data::SendMessage(SendMessage {
        target_ids: targets,
        room_id: room.to_string(),
        body: body.into_bytes().into(),
    })
}

fn not_in_a_room() -> Action {
    Action::Print("! not in a room: /join ROOM first".to_string())
}
