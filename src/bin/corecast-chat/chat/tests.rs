//! The unit tests of [`Chat`](super::Chat): lines in, actions out; server messages
//! in, lines to print out.

use super::*;
use crate::format::error_line;
use corecast::proto::{
    server_message::Data, Error, ErrorCode, JoinNotification, JoinResponse, LeaveNotification,
    LeaveResponse, MessageNotification, Pong, ServerMessage,
};

const LIMIT: usize = 65536;

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
        ..Default::default()
    })))
}

fn left(chat: &mut Chat, room: &str) -> Option<String> {
    chat.on_message(data(Data::LeaveResponse(LeaveResponse {
        room_id: room.into(),
        error: ok(),
    })))
}

/// The room's next message (the seq after the last one seen).
fn message(chat: &mut Chat, sender: &str, room: &str, body: &str) -> Option<String> {
    let seq = chat.resume.cursor(room).map_or(1, |c| c.since() + 1);
    chat.on_message(data(Data::MessageNotification(MessageNotification {
        sender_id: sender.into(),
        room_id: room.into(),
        body: body.to_string().into_bytes().into(),
        seq,
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

fn sent(actions: &[Action]) -> Vec<&client_message::Data> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(request) => Some(request),
            _ => None,
        })
        .collect()
}

#[test]
fn lines_go_to_the_current_room() {
    let mut chat = Chat::new("ann", LIMIT);
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
    // A public line that would read as private goes out escaped.
    assert_eq!(
        chat.on_line("//to ben hi"),
        [Action::Send(send_message(
            "lobby",
            vec![],
            "//to ben hi".into()
        ))]
    );
    // Private: marked, and addressed to the sender too (its echo confirms it).
    assert_eq!(
        chat.on_line("/to ben psst"),
        [Action::Send(send_message(
            "lobby",
            vec!["ben".into(), "ann".into()],
            "/to ben psst".into()
        ))]
    );
    assert_eq!(chat.unconfirmed, 3);
}

#[test]
fn private_messages_show_as_private() {
    let mut chat = Chat::new("ann", LIMIT);
    joined(&mut chat, "lobby", &["ann", "ben", "cat"]);
    assert_eq!(
        message(&mut chat, "ben", "lobby", "/to ann psst").as_deref(),
        Some("[lobby] ben -> you: psst")
    );
    assert_eq!(
        message(&mut chat, "ben", "lobby", "/to ann,cat hi both").as_deref(),
        Some("[lobby] ben -> you, cat: hi both")
    );
    // Our own private message, echoed.
    chat.on_line("/to ben psst");
    assert_eq!(chat.unconfirmed, 1);
    assert_eq!(
        message(&mut chat, "ann", "lobby", "/to ben psst").as_deref(),
        Some("[lobby] you -> ben: psst")
    );
    assert!(chat.settled());
    // Public lines, escaped or not.
    assert_eq!(
        message(&mut chat, "ben", "lobby", "//to ann hi").as_deref(),
        Some("[lobby] ben: /to ann hi")
    );
    assert_eq!(
        message(&mut chat, "ben", "lobby", "hello").as_deref(),
        Some("[lobby] ben: hello")
    );
}

#[test]
fn to_unknown_members_is_warned() {
    let mut chat = Chat::new("ann", LIMIT);
    joined(&mut chat, "lobby", &["ann", "ben"]);
    let nobody = chat.on_line("/to nobody hi");
    assert_eq!(printed(&nobody), ["! not in lobby: nobody; nothing sent"]);
    assert!(sent(&nobody).is_empty());
    assert_eq!(chat.unconfirmed, 0);

    let some = chat.on_line("/to ben,nobody hi");
    assert_eq!(printed(&some), ["! not in lobby: nobody; sent to ben only"]);
    assert_eq!(
        sent(&some),
        [&send_message(
            "lobby",
            vec!["ben".into(), "ann".into()],
            "/to ben hi".into()
        )]
    );
    // A member who left is unknown again.
    chat.on_message(data(Data::LeaveNotification(LeaveNotification {
        room_id: "lobby".into(),
        player_id: "ben".into(),
    })));
    assert_eq!(
        printed(&chat.on_line("/to ben hi")),
        ["! not in lobby: ben; nothing sent"]
    );
}

#[test]
fn too_long_lines_are_refused_here() {
    let mut chat = Chat::new("ann", 100);
    joined(&mut chat, "lobby", &["ann"]);
    // ClientMessage{SendMessage{room_id "lobby", body}} is 2 + 7 + 2 + len bytes
    // for short bodies (one-byte lengths): an 89-byte line makes a 100-byte frame.
    let fits = "x".repeat(89);
    assert_eq!(sent(&chat.on_line(&fits)).len(), 1);
    let over = chat.on_line(&"x".repeat(90));
    assert!(sent(&over).is_empty());
    assert_eq!(
        printed(&over),
        [
            "! line too long: it makes a 101-byte frame, the server takes at most 100 \
              (--max-frame-bytes); not sent"
        ]
    );
    assert_eq!(chat.unconfirmed, 1, "the refused line is not awaited");
    let join = chat.on_line(&format!("/join {}", "r".repeat(100)));
    assert!(sent(&join).is_empty());
    assert!(chat.ready(), "a refused join is not awaited");
}

#[test]
fn input_waits_for_joins_and_leaves() {
    let mut chat = Chat::new("ann", LIMIT);
    chat.on_line("/join lobby");
    assert!(!chat.ready());
    assert_eq!(chat.prompt(), "> ");
    // Another room's answer is not this one.
    joined(&mut chat, "other", &["ann"]);
    assert!(!chat.ready());
    joined(&mut chat, "lobby", &["ann"]);
    assert!(chat.ready());
    assert_eq!(chat.prompt(), "lobby> ");
    chat.on_line("/leave");
    assert!(!chat.ready());
    left(&mut chat, "lobby");
    assert!(chat.ready());
    // A refused join is an answer too.
    chat.on_line("/join full");
    chat.on_message(data(Data::JoinResponse(JoinResponse {
        room_id: "full".into(),
        current_players: vec![],
        room_config: None,
        error: Some(Error {
            code: ErrorCode::RoomIsFull as i32,
            message: "full".into(),
        }),
        ..Default::default()
    })));
    assert!(chat.ready());
}

#[test]
fn quitting_waits_for_echoes() {
    let mut chat = Chat::new("ann", LIMIT);
    joined(&mut chat, "lobby", &["ann", "ben"]);
    chat.on_line("one");
    chat.on_line("two");
    assert!(!chat.settled());
    message(&mut chat, "ben", "lobby", "not mine");
    message(&mut chat, "ann", "lobby", "one");
    assert!(!chat.settled());
    message(&mut chat, "ann", "lobby", "two");
    assert!(chat.settled());
}

/// A message the server refuses (FORBIDDEN by the token's `publish` claim, or
/// NOT_IN_ROOM) is settled by its error, and a join in flight keeps input waiting.
#[test]
fn a_refused_message_is_settled_and_does_not_end_a_join() {
    let mut chat = Chat::new("ann", LIMIT);
    joined(&mut chat, "lobby", &["ann"]);
    chat.on_line("hello");
    chat.on_line("/join match-7");
    assert!(!chat.ready() && !chat.settled());
    let refusal = |code: ErrorCode| {
        data(Data::Error(Error {
            code: code as i32,
            message: "your token does not allow sending in room \"lobby\"".into(),
        }))
    };
    let line = chat.on_message(refusal(ErrorCode::Forbidden));
    assert!(line.unwrap().starts_with("! error FORBIDDEN: "));
    assert!(!chat.ready(), "the join is still on its way");
    assert_eq!(chat.unconfirmed, 0);
    joined(&mut chat, "match-7", &["ann"]);
    assert!(chat.ready() && chat.settled());
    chat.on_line("gg");
    chat.on_message(refusal(ErrorCode::NotInRoom));
    assert!(chat.settled());
    // Any other error still frees the input (it may be the last word before a close).
    chat.on_line("/join x");
    chat.on_message(refusal(ErrorCode::RateLimited));
    assert!(chat.ready());
}

#[test]
fn join_switches_and_leave_falls_back() {
    let mut chat = Chat::new("ann", LIMIT);
    joined(&mut chat, "lobby", &["ann"]);
    assert_eq!(
        chat.on_line("/join games"),
        [Action::Send(client_message::Data::JoinRequest(
            JoinRequest {
                room_id: "games".into(),
                room_config: None,
                ..Default::default()
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
    let mut chat = Chat::new("ann", LIMIT);
    joined(&mut chat, "lobby", &["ann"]);
    joined(&mut chat, "games", &["ann"]);
    assert_eq!(left(&mut chat, "lobby").as_deref(), Some("* left lobby"));
    assert_eq!(chat.current.as_deref(), Some("games"));
}

#[test]
fn who_tracks_joins_and_leaves() {
    let mut chat = Chat::new("ann", LIMIT);
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
    let mut chat = Chat::new("ann", LIMIT);
    assert_eq!(
        message(&mut chat, "ben", "lobby", "hello").as_deref(),
        Some("[lobby] ben: hello")
    );
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
    let mut chat = Chat::new("ann", LIMIT);
    joined(&mut chat, "lobby", &["ann"]);
    let full = chat.on_message(data(Data::JoinResponse(JoinResponse {
        room_id: "games".into(),
        current_players: vec![],
        room_config: None,
        error: Some(Error {
            code: ErrorCode::RoomIsFull as i32,
            message: "room games is full".into(),
        }),
        ..Default::default()
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
    let mut chat = Chat::new("ann", LIMIT);
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

fn joined_at(
    chat: &mut Chat,
    room: &str,
    epoch: &str,
    last_seq: u64,
    recovered: bool,
) -> Vec<Action> {
    chat.receive(data(Data::JoinResponse(JoinResponse {
        room_id: room.into(),
        current_players: vec!["ann".into(), "ben".into()],
        error: ok(),
        epoch: epoch.into(),
        last_seq,
        recovered,
        ..Default::default()
    })))
}

fn seq_message(chat: &mut Chat, room: &str, seq: u64, body: &str) -> Vec<Action> {
    chat.receive(data(Data::MessageNotification(MessageNotification {
        sender_id: "ben".into(),
        room_id: room.into(),
        body: body.to_string().into_bytes().into(),
        seq,
    })))
}

fn pong(chat: &mut Chat, nonce: u64) -> Vec<Action> {
    chat.receive(data(Data::Pong(Pong { nonce })))
}

/// The barrier ping a rejoin's answer sends.
fn barrier(actions: &[Action]) -> u64 {
    match sent(actions)[..] {
        [client_message::Data::Ping(p)] => p.nonce,
        _ => panic!("expected one barrier ping, got {actions:?}"),
    }
}

#[test]
fn a_reconnection_rejoins_with_a_resume_and_reports_per_room() {
    let mut chat = Chat::new("ann", LIMIT);
    joined_at(&mut chat, "lobby", "e1", 0, false);
    seq_message(&mut chat, "lobby", 1, "one");
    joined_at(&mut chat, "games", "g1", 5, false);
    seq_message(&mut chat, "games", 6, "six");
    chat.on_line("/join lobby");
    chat.on_line("unconfirmed");
    assert_eq!(chat.unconfirmed, 1);

    chat.disconnected();
    assert!(!chat.ready(), "no input while disconnected");
    let rejoins = chat.reconnected();
    assert_eq!(
        sent(&rejoins),
        [
            &client_message::Data::JoinRequest(JoinRequest {
                room_id: "lobby".into(),
                since_seq: 1,
                epoch: "e1".into(),
                ..Default::default()
            }),
            &client_message::Data::JoinRequest(JoinRequest {
                room_id: "games".into(),
                since_seq: 6,
                epoch: "g1".into(),
                ..Default::default()
            })
        ]
    );
    assert!(!chat.ready(), "input waits for the rejoins");

    // lobby: two missed messages replayed, then the barrier's pong.
    let nonce = barrier(&joined_at(&mut chat, "lobby", "e1", 3, true));
    assert_eq!(
        printed(&seq_message(&mut chat, "lobby", 2, "two")),
        ["[lobby] ben: two"]
    );
    assert_eq!(
        printed(&seq_message(&mut chat, "lobby", 2, "two")),
        Vec::<&str>::new(),
        "dup"
    );
    assert_eq!(
        printed(&seq_message(&mut chat, "lobby", 3, "three")),
        ["[lobby] ben: three"]
    );
    assert_eq!(
        printed(&pong(&mut chat, nonce)),
        ["* room lobby: resumed, 2 missed message(s) recovered"]
    );
    // games restarted: said plainly; the last room done, input resumes.
    let nonce = barrier(&joined_at(&mut chat, "games", "g2", 0, false));
    assert_eq!(
        printed(&pong(&mut chat, nonce)),
        [
            "! room games: could not recover what was said while disconnected (the room \
             restarted): messages may be missing",
            "! 1 line(s) sent before the connection was lost were not confirmed by the \
             server (they may not have been delivered); not sent again"
        ]
    );
    assert!(chat.ready());
    assert!(chat.settled());
    assert_eq!(chat.prompt(), "lobby> ", "the current room is kept");
}

#[test]
fn a_live_message_before_the_barrier_reports_first_and_failed_rejoins_are_said() {
    let mut chat = Chat::new("ann", LIMIT);
    joined_at(&mut chat, "lobby", "e1", 4, false);
    joined_at(&mut chat, "full", "f1", 0, false);
    chat.disconnected();
    chat.reconnected();
    let nonce = barrier(&joined_at(&mut chat, "lobby", "e1", 4, true));
    assert_eq!(
        printed(&seq_message(&mut chat, "lobby", 5, "live")),
        ["* room lobby: resumed, nothing missed", "[lobby] ben: live"]
    );
    assert!(printed(&pong(&mut chat, nonce)).is_empty());
    assert!(!chat.ready());
    let refused = chat.receive(data(Data::JoinResponse(JoinResponse {
        room_id: "full".into(),
        error: Some(Error {
            code: ErrorCode::RoomIsFull as i32,
            message: "room full is full".into(),
        }),
        ..Default::default()
    })));
    assert_eq!(
        printed(&refused),
        ["! could not rejoin full: error ROOM_IS_FULL: room full is full"]
    );
    assert!(chat.ready());
    assert_eq!(chat.prompt(), "lobby> ");
}
