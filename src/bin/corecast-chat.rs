//! `corecast-chat`: a terminal chat client for a corecast server.
//!
//! Three threads: one reads stdin lines, one reads server frames, and the main thread
//! owns the chat state and the socket's sending half. The two readers only forward
//! what they read as [`Event`]s, so every decision (what a line means, what a
//! notification prints, which room is current) is made by [`Chat`], a pure state
//! machine that the unit tests below drive without a socket.

use std::collections::BTreeSet;
use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use corecast::client::{Client, ClientError, ClientReceiver, ClientSender};
use corecast::proto::{
    client_message, server_message::Data, ErrorCode, JoinRequest, LeaveRequest, Ping, SendMessage,
    ServerMessage,
};

/// The commands, as `/help` and `--help` list them.
const COMMANDS: &str = "\
Commands (anything else is said to the current room):
  /to NAME[,NAME...] TEXT   send TEXT to these members of the current room only
  /join ROOM                join ROOM (or switch to it if already joined); it becomes current
  /leave [ROOM]             leave ROOM (default: the current room)
  /who [ROOM]               list the members of ROOM (default: the current room)
  /help                     this list
  /quit                     disconnect and exit (end of input does the same)
  //TEXT                    say /TEXT (a line that starts with a slash)";

/// corecast-chat: a terminal chat client for a corecast server.
///
/// Connects, logs in as NAME, joins ROOM, then sends each line typed to the current
/// room and prints what arrives, one line each.
#[derive(Debug, Parser)]
#[command(name = "corecast-chat", version, about, long_about, after_help = COMMANDS)]
struct Args {
    /// Server address (host:port).
    #[arg(long, default_value = "127.0.0.1:7878")]
    addr: String,

    /// Bearer token, when the server requires one (its --auth-token).
    #[arg(long, env = "CORECAST_AUTH_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// Seconds without sending anything after which a keepalive ping goes out (0:
    /// never). Keep it under the server's --idle-timeout (default 60 s).
    #[arg(long, default_value_t = 20)]
    keepalive: u64,

    /// Player name to log in with.
    name: String,

    /// Room to join first.
    #[arg(default_value = "lobby")]
    room: String,
}

/// What one input line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    /// A blank line: nothing to do.
    Nothing,
    /// Say this to every member of the current room.
    Say(String),
    /// Say this to the listed members of the current room only.
    To { targets: Vec<String>, text: String },
    /// Join a room, or switch to it when already a member.
    Join(String),
    /// Leave a room (None: the current one).
    Leave(Option<String>),
    /// List a room's members (None: the current room).
    Who(Option<String>),
    /// Print the command list.
    Help,
    /// Disconnect and exit.
    Quit,
}

/// Parses one input line (without its line ending); `Err` carries a usage message.
fn parse_line(line: &str) -> Result<Command, String> {
    if line.trim().is_empty() {
        return Ok(Command::Nothing);
    }
    if let Some(escaped) = line.strip_prefix("//") {
        return Ok(Command::Say(format!("/{escaped}")));
    }
    let Some(command) = line.strip_prefix('/') else {
        return Ok(Command::Say(line.to_string()));
    };
    let (word, rest) = match command.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (command, ""),
    };
    let optional = |rest: &str| (!rest.is_empty()).then(|| rest.to_string());
    match word {
        "to" => {
            let usage = || "usage: /to NAME[,NAME...] TEXT".to_string();
            let (names, text) = rest.split_once(char::is_whitespace).ok_or_else(usage)?;
            let targets: Vec<String> = names
                .split(',')
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect();
            let text = text.trim_start();
            if targets.is_empty() || text.is_empty() {
                return Err(usage());
            }
            Ok(Command::To {
                targets,
                text: text.to_string(),
            })
        }
        "join" => optional(rest)
            .map(Command::Join)
            .ok_or_else(|| "usage: /join ROOM".to_string()),
        "leave" => Ok(Command::Leave(optional(rest))),
        "who" => Ok(Command::Who(optional(rest))),
        "help" => Ok(Command::Help),
        "quit" | "exit" => Ok(Command::Quit),
        other => Err(format!("unknown command /{other} (try /help)")),
    }
}

/// What the main loop does for the chat state machine.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    /// Send this request to the server.
    Send(client_message::Data),
    /// Print this line.
    Print(String),
    /// Disconnect and exit.
    Quit,
}

/// A joined room and the members the client knows of.
#[derive(Debug)]
struct Room {
    id: String,
    members: BTreeSet<String>,
}

/// The chat client's state: joined rooms, in join order, and the current room.
#[derive(Debug, Default)]
struct Chat {
    rooms: Vec<Room>,
    current: Option<String>,
}

impl Chat {
    /// What an input line leads to.
    fn on_line(&mut self, line: &str) -> Vec<Action> {
        let command = match parse_line(line) {
            Ok(command) => command,
            Err(usage) => return vec![Action::Print(format!("! {usage}"))],
        };
        match command {
            Command::Nothing => vec![],
            Command::Say(text) => match &self.current {
                Some(room) => vec![Action::Send(send_message(room, vec![], text))],
                None => vec![not_in_a_room()],
            },
            Command::To { targets, text } => match &self.current {
                Some(room) => {
                    // The server does not echo a targeted message to its sender (unless
                    // listed): show what was sent.
                    let echo = format!("[{room}] you -> {}: {text}", targets.join(", "));
                    vec![
                        Action::Send(send_message(room, targets, text)),
                        Action::Print(clean(&echo)),
                    ]
                }
                None => vec![not_in_a_room()],
            },
            Command::Join(room) => {
                if self.room(&room).is_some() {
                    let line = format!("* current room: {room}");
                    self.current = Some(room);
                    vec![Action::Print(clean(&line))]
                } else {
                    vec![Action::Send(client_message::Data::JoinRequest(
                        JoinRequest {
                            room_id: room,
                            room_config: None,
                        },
                    ))]
                }
            }
            Command::Leave(room) => match room.or_else(|| self.current.clone()) {
                // Asked even for a room not joined here: the server's answer is the truth.
                Some(room_id) => vec![Action::Send(client_message::Data::LeaveRequest(
                    LeaveRequest { room_id },
                ))],
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

    /// Updates the state for a server message; returns the line to print, if any.
    fn on_message(&mut self, msg: ServerMessage) -> Option<String> {
        let line = match msg.data? {
            Data::LoginResponse(r) => return failure(r.error.as_ref()),
            Data::JoinResponse(r) => {
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
            Data::MessageNotification(m) => format!(
                "[{}] {}: {}",
                m.room_id,
                m.sender_id,
                String::from_utf8_lossy(&m.body)
            ),
            Data::Pong(_) => return None,
            Data::Error(e) => return Some(error_line(&e)),
        };
        Some(clean(&line))
    }

    fn room(&self, id: &str) -> Option<&Room> {
        self.rooms.iter().find(|room| room.id == id)
    }

    fn room_mut(&mut self, id: &str) -> Option<&mut Room> {
        self.rooms.iter_mut().find(|room| room.id == id)
    }
}

fn send_message(room: &str, targets: Vec<String>, text: String) -> client_message::Data {
    client_message::Data::SendMessage(SendMessage {
        target_ids: targets,
        room_id: room.to_string(),
        body: text.into_bytes().into(),
    })
}

fn not_in_a_room() -> Action {
    Action::Print("! not in a room: /join ROOM first".to_string())
}

fn list(members: &BTreeSet<String>) -> String {
    members
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The error line for a response's `error` field, None when it says NONE.
fn failure(error: Option<&corecast::proto::Error>) -> Option<String> {
    error
        .filter(|e| e.code != ErrorCode::None as i32)
        .map(error_line)
}

/// `! error CODE: message`, with the code's protocol name.
fn error_line(error: &corecast::proto::Error) -> String {
    let code = match ErrorCode::try_from(error.code) {
        Ok(code) => code.as_str_name().to_string(),
        Err(_) => format!("CODE_{}", error.code),
    };
    clean(&format!("! error {code}: {}", error.message))
}

/// Escapes control characters: names, room ids and bodies come from other users, and
/// must not move the cursor, clear the screen or forge a second line.
fn clean(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// What the reader threads hand to the main loop.
enum Event {
    /// One input line, without its line ending.
    Line(String),
    /// Standard input ended.
    InputClosed,
    /// One message from the server.
    Server(ServerMessage),
    /// The connection ended.
    Disconnected(ClientError),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("corecast-chat: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut client =
        Client::connect(&args.addr).with_context(|| format!("connecting to {}", args.addr))?;
    client
        .login(&args.name, args.token.as_deref())
        .with_context(|| format!("logging in as {}", args.name))?;
    let (mut sender, receiver) = client.split().context("splitting the connection")?;

    let (events, inbox) = mpsc::channel();
    spawn_server_reader(receiver, events.clone())?;
    spawn_input_reader(events)?;

    let mut chat = Chat::default();
    let mut out = io::stdout().lock();
    let mut last_sent = Instant::now();
    let keepalive = (args.keepalive > 0).then(|| Duration::from_secs(args.keepalive));
    // The first room is joined like any /join, so its answer is printed the same way.
    let mut queued = chat.on_line(&format!("/join {}", args.room));

    loop {
        for action in queued.drain(..) {
            match action {
                Action::Send(request) => {
                    sender.send(request).context("sending to the server")?;
                    last_sent = Instant::now();
                }
                Action::Print(line) => print(&mut out, &line)?,
                Action::Quit => return quit(&sender),
            }
        }
        let event = match keepalive {
            Some(every) => {
                let left = every.saturating_sub(last_sent.elapsed());
                match inbox.recv_timeout(left) {
                    Ok(event) => event,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        queued.push(Action::Send(client_message::Data::Ping(Ping { nonce: 0 })));
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return quit(&sender),
                }
            }
            None => match inbox.recv() {
                Ok(event) => event,
                Err(mpsc::RecvError) => return quit(&sender),
            },
        };
        match event {
            Event::Line(line) => queued = chat.on_line(&line),
            Event::InputClosed => return quit(&sender),
            Event::Server(msg) => {
                if let Some(line) = chat.on_message(msg) {
                    print(&mut out, &line)?;
                }
            }
            Event::Disconnected(e) => {
                let why = match e {
                    ClientError::Closed => "connection closed by the server".to_string(),
                    other => other.to_string(),
                };
                print(&mut out, &format!("! disconnected: {why}"))?;
                return Ok(ExitCode::FAILURE);
            }
        }
    }
}

fn print(out: &mut impl Write, line: &str) -> anyhow::Result<()> {
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

fn quit(sender: &ClientSender) -> anyhow::Result<ExitCode> {
    sender.close().context("closing the connection")?;
    Ok(ExitCode::SUCCESS)
}

fn spawn_server_reader(
    mut receiver: ClientReceiver,
    events: mpsc::Sender<Event>,
) -> anyhow::Result<()> {
    thread::Builder::new()
        .name("server-reader".into())
        .spawn(move || loop {
            match receiver.recv() {
                Ok(msg) => {
                    if events.send(Event::Server(msg)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = events.send(Event::Disconnected(e));
                    return;
                }
            }
        })
        .context("starting the server reader")?;
    Ok(())
}

fn spawn_input_reader(events: mpsc::Sender<Event>) -> anyhow::Result<()> {
    thread::Builder::new()
        .name("input-reader".into())
        .spawn(move || {
            let mut input = io::stdin().lock();
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match input.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        let line = line.trim_end_matches(['\n', '\r']).to_string();
                        if events.send(Event::Line(line)).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = events.send(Event::InputClosed);
        })
        .context("starting the input reader")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use corecast::proto::{
        Error, JoinNotification, JoinResponse, LeaveNotification, LeaveResponse,
        MessageNotification, Pong,
    };

    fn data(d: Data) -> ServerMessage {
        ServerMessage { data: Some(d) }
    }

    fn ok() -> Option<Error> {
        Some(Error {
            code: ErrorCode::None as i32,
            message: String::new(),
        })
    }

    fn joined(chat: &mut Chat, room: &str, members: &[&str]) -> Option<String> {
        chat.on_message(data(Data::JoinResponse(JoinResponse {
            room_id: room.into(),
            current_players: members.iter().map(|m| m.to_string()).collect(),
            room_config: None,
            error: ok(),
        })))
    }

    fn left(chat: &mut Chat, room: &str) -> Option<String> {
        chat.on_message(data(Data::LeaveResponse(LeaveResponse {
            room_id: room.into(),
            error: ok(),
        })))
    }

    fn printed(actions: &[Action]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Print(line) => Some(line.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn plain_lines_are_said() {
        assert_eq!(
            parse_line("hello there"),
            Ok(Command::Say("hello there".into()))
        );
        assert_eq!(
            parse_line("  spaced  "),
            Ok(Command::Say("  spaced  ".into()))
        );
        assert_eq!(parse_line(""), Ok(Command::Nothing));
        assert_eq!(parse_line("   "), Ok(Command::Nothing));
        assert_eq!(
            parse_line("//etc/hosts"),
            Ok(Command::Say("/etc/hosts".into()))
        );
    }

    #[test]
    fn commands_parse() {
        assert_eq!(
            parse_line("/to ben psst, over here"),
            Ok(Command::To {
                targets: vec!["ben".into()],
                text: "psst, over here".into()
            })
        );
        assert_eq!(
            parse_line("/to ben,cat hi"),
            Ok(Command::To {
                targets: vec!["ben".into(), "cat".into()],
                text: "hi".into()
            })
        );
        assert_eq!(parse_line("/join games"), Ok(Command::Join("games".into())));
        assert_eq!(
            parse_line("/join  games "),
            Ok(Command::Join("games".into()))
        );
        assert_eq!(parse_line("/leave"), Ok(Command::Leave(None)));
        assert_eq!(
            parse_line("/leave games"),
            Ok(Command::Leave(Some("games".into())))
        );
        assert_eq!(parse_line("/who"), Ok(Command::Who(None)));
        assert_eq!(
            parse_line("/who games"),
            Ok(Command::Who(Some("games".into())))
        );
        assert_eq!(parse_line("/help"), Ok(Command::Help));
        assert_eq!(parse_line("/quit"), Ok(Command::Quit));
    }

    #[test]
    fn bad_commands_get_usage() {
        assert!(parse_line("/to").unwrap_err().starts_with("usage: /to"));
        assert!(parse_line("/to ben").unwrap_err().starts_with("usage: /to"));
        assert!(parse_line("/to , hi")
            .unwrap_err()
            .starts_with("usage: /to"));
        assert_eq!(parse_line("/join"), Err("usage: /join ROOM".into()));
        assert_eq!(
            parse_line("/dance now"),
            Err("unknown command /dance (try /help)".into())
        );
    }

    #[test]
    fn lines_go_to_the_current_room() {
        let mut chat = Chat::default();
        assert_eq!(
            printed(&chat.on_line("hi")),
            ["! not in a room: /join ROOM first"]
        );
        assert_eq!(
            joined(&mut chat, "lobby", &["ben", "ann"]).as_deref(),
            Some("* joined lobby (members: ann, ben)")
        );
        assert_eq!(
            chat.on_line("hi"),
            [Action::Send(send_message("lobby", vec![], "hi".into()))]
        );
        let to = chat.on_line("/to ben psst");
        assert_eq!(
            to[0],
            Action::Send(send_message("lobby", vec!["ben".into()], "psst".into()))
        );
        assert_eq!(printed(&to), ["[lobby] you -> ben: psst"]);
    }

    #[test]
    fn join_switches_and_leave_falls_back() {
        let mut chat = Chat::default();
        joined(&mut chat, "lobby", &["ann"]);
        assert_eq!(
            chat.on_line("/join games"),
            [Action::Send(client_message::Data::JoinRequest(
                JoinRequest {
                    room_id: "games".into(),
                    room_config: None
                }
            ))]
        );
        // Not current until the server says yes.
        assert_eq!(chat.current.as_deref(), Some("lobby"));
        joined(&mut chat, "games", &["ann"]);
        assert_eq!(chat.current.as_deref(), Some("games"));
        // Joining a room already joined only switches, without asking the server.
        assert_eq!(
            printed(&chat.on_line("/join lobby")),
            ["* current room: lobby"]
        );
        assert_eq!(
            printed(&chat.on_line("/join games")),
            ["* current room: games"]
        );

        assert_eq!(
            chat.on_line("/leave"),
            [Action::Send(client_message::Data::LeaveRequest(
                LeaveRequest {
                    room_id: "games".into()
                }
            ))]
        );
        assert_eq!(
            left(&mut chat, "games").as_deref(),
            Some("* left games (now in lobby)")
        );
        assert_eq!(
            left(&mut chat, "lobby").as_deref(),
            Some("* left lobby (no current room: /join ROOM)")
        );
        assert_eq!(chat.current, None);
        assert_eq!(
            printed(&chat.on_line("/leave")),
            ["! not in a room: /join ROOM first"]
        );
    }

    #[test]
    fn leaving_another_room_keeps_the_current_one() {
        let mut chat = Chat::default();
        joined(&mut chat, "lobby", &["ann"]);
        joined(&mut chat, "games", &["ann"]);
        assert_eq!(left(&mut chat, "lobby").as_deref(), Some("* left lobby"));
        assert_eq!(chat.current.as_deref(), Some("games"));
    }

    #[test]
    fn who_tracks_joins_and_leaves() {
        let mut chat = Chat::default();
        joined(&mut chat, "lobby", &["ann"]);
        let join = chat.on_message(data(Data::JoinNotification(JoinNotification {
            room_id: "lobby".into(),
            player_id: "ben".into(),
        })));
        assert_eq!(join.as_deref(), Some("* ben joined lobby"));
        chat.on_message(data(Data::JoinNotification(JoinNotification {
            room_id: "lobby".into(),
            player_id: "cat".into(),
        })));
        assert_eq!(
            printed(&chat.on_line("/who")),
            ["* members of lobby: ann, ben, cat"]
        );
        let leave = chat.on_message(data(Data::LeaveNotification(LeaveNotification {
            room_id: "lobby".into(),
            player_id: "ben".into(),
        })));
        assert_eq!(leave.as_deref(), Some("* ben left lobby"));
        assert_eq!(
            printed(&chat.on_line("/who")),
            ["* members of lobby: ann, cat"]
        );
        assert_eq!(printed(&chat.on_line("/who games")), ["! not in games"]);
    }

    #[test]
    fn notifications_format() {
        let mut chat = Chat::default();
        let msg = chat.on_message(data(Data::MessageNotification(MessageNotification {
            sender_id: "ann".into(),
            room_id: "lobby".into(),
            body: "hello".into(),
            seq: 7,
        })));
        assert_eq!(msg.as_deref(), Some("[lobby] ann: hello"));
        let err = chat.on_message(data(Data::Error(Error {
            code: ErrorCode::NotInRoom as i32,
            message: "not a member of games".into(),
        })));
        assert_eq!(
            err.as_deref(),
            Some("! error NOT_IN_ROOM: not a member of games")
        );
        let unknown = error_line(&Error {
            code: 99,
            message: "new".into(),
        });
        assert_eq!(unknown, "! error CODE_99: new");
        assert_eq!(chat.on_message(data(Data::Pong(Pong { nonce: 1 }))), None);
        assert_eq!(chat.on_message(ServerMessage { data: None }), None);
    }

    #[test]
    fn failed_responses_change_nothing() {
        let mut chat = Chat::default();
        joined(&mut chat, "lobby", &["ann"]);
        let full = chat.on_message(data(Data::JoinResponse(JoinResponse {
            room_id: "games".into(),
            current_players: vec![],
            room_config: None,
            error: Some(Error {
                code: ErrorCode::RoomIsFull as i32,
                message: "room games is full".into(),
            }),
        })));
        assert_eq!(
            full.as_deref(),
            Some("! error ROOM_IS_FULL: room games is full")
        );
        assert_eq!(chat.current.as_deref(), Some("lobby"));
        let not_in = chat.on_message(data(Data::LeaveResponse(LeaveResponse {
            room_id: "games".into(),
            error: Some(Error {
                code: ErrorCode::NotInRoom as i32,
                message: "not in games".into(),
            }),
        })));
        assert_eq!(not_in.as_deref(), Some("! error NOT_IN_ROOM: not in games"));
        assert_eq!(chat.current.as_deref(), Some("lobby"));
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut chat = Chat::default();
        let msg = chat.on_message(data(Data::MessageNotification(MessageNotification {
            sender_id: "e\u{1b}[2Jve".into(),
            room_id: "lobby".into(),
            body: "two\nlines\u{7}".into(),
            seq: 1,
        })));
        assert_eq!(
            msg.as_deref(),
            Some("[lobby] e\\u{1b}[2Jve: two\\nlines\\u{7}")
        );
    }
}
