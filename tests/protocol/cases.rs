// The protocol tests, included by tests/protocol.rs (TCP) and tests/protocol_ws.rs
// (WebSocket), each of which defines `TRANSPORT` and declares `mod common`.

use std::time::Duration;

use common::*;
use corecast::client::ClientError;
use corecast::config::Config;
use corecast::proto::{
    client_message, server_message::Data, ErrorCode, JoinRequest, LeaveRequest, LoginRequest, Ping,
    RoomConfig, SendMessage,
};

// ---- login ----

#[test]
fn requests_before_login_get_failed_precondition_and_the_connection_stays_open() {
    let server = start_on(TRANSPORT);
    let mut c = server.connect();
    c.send(client_message::Data::JoinRequest(JoinRequest {
        room_id: "r".into(),
        room_config: None,
        ..Default::default()
    }))
    .unwrap();
    assert_error(&mut c, ErrorCode::FailedPrecondition);
    c.send(client_message::Data::LeaveRequest(LeaveRequest {
        room_id: "r".into(),
    }))
    .unwrap();
    assert_error(&mut c, ErrorCode::FailedPrecondition);
    c.send_message("r", &[], "x").unwrap();
    assert_error(&mut c, ErrorCode::FailedPrecondition);
    c.login("late", None)
        .expect("login still works on the same connection");
    c.join("r", None).unwrap();
}

#[test]
fn player_id_must_be_1_to_128_bytes() {
    let server = start_on(TRANSPORT);
    let mut c = server.connect();
    assert_rejected(c.login("", None), ErrorCode::BadRequest);
    assert_rejected(c.login(&"p".repeat(129), None), ErrorCode::BadRequest);
    c.login(&"p".repeat(128), None)
        .expect("128 bytes is fine, connection still open");
}

#[test]
fn duplicate_player_id_and_second_login_are_already_logged_in_and_leave_the_session_alone() {
    let server = start_on(TRANSPORT);
    let mut first = server.login("alice");
    first.join("room", None).unwrap();
    let mut second = server.connect();
    assert_rejected(second.login("alice", None), ErrorCode::AlreadyLoggedIn);
    assert_rejected(first.login("alice", None), ErrorCode::AlreadyLoggedIn);
    assert_rejected(first.login("other", None), ErrorCode::AlreadyLoggedIn);
    // The existing session is untouched: still alice, still in the room.
    first.send_message("room", &[], "still here").unwrap();
    let m = next_message(&mut first);
    assert_eq!(
        (m.sender_id.as_str(), &m.body[..]),
        ("alice", &b"still here"[..])
    );
    // The rejected connection can log in under another id.
    second.login("bob", None).unwrap();
}

#[test]
fn auth_token_is_required_when_configured() {
    let server = start_with_on(
        TRANSPORT,
        Config {
            auth_token: Some(corecast::config::Secret::new("s3cret")),
            ..config()
        },
    );
    for token in [None, Some("wrong"), Some("s3cret-but-longer"), Some("")] {
        let mut c = server.connect();
        assert_rejected(c.login("p", token), ErrorCode::Unauthorized);
        c.expect_closed()
            .expect("unauthorized logins are disconnected");
    }
    let mut ok = server.connect();
    ok.login("p", Some("s3cret")).unwrap();
    ok.join("r", None).unwrap();
}

#[test]
fn without_a_configured_token_any_or_no_token_is_accepted() {
    let server = start_on(TRANSPORT);
    server.connect().login("a", None).unwrap();
    server.connect().login("b", Some("whatever")).unwrap();
}

#[test]
fn successful_responses_carry_error_none() {
    let server = start_on(TRANSPORT);
    let mut c = server.connect();
    c.send(client_message::Data::LoginRequest(LoginRequest {
        player_id: "p".into(),
        auth_config: None,
        ..Default::default()
    }))
    .unwrap();
    let Data::LoginResponse(login) = next_data(&mut c) else {
        panic!("login response")
    };
    assert_eq!(
        login.error.expect("error present on success").code(),
        ErrorCode::None
    );
    let join = c.join("r", Some(4)).unwrap();
    assert_eq!(join.error.expect("present").code(), ErrorCode::None);
    let leave = c.leave("r").unwrap();
    assert_eq!(leave.error.expect("present").code(), ErrorCode::None);
}

// ---- join ----

#[test]
fn join_creates_the_room_and_reports_members_and_config() {
    let server = start_on(TRANSPORT);
    let mut a = server.login("a");
    let mut b = server.login("b");
    let ja = a.join("lobby", Some(3)).unwrap();
    assert_eq!(ja.current_players, vec!["a"]);
    assert_eq!(ja.room_config, Some(RoomConfig { max_players: 3 }));
    let jb = b.join("lobby", None).unwrap();
    let mut players = jb.current_players.clone();
    players.sort();
    assert_eq!(players, vec!["a", "b"], "the joiner is included");
    assert_eq!(
        jb.room_config,
        Some(RoomConfig { max_players: 3 }),
        "the room's own config"
    );
    match next_data(&mut a) {
        Data::JoinNotification(n) => {
            assert_eq!((n.room_id.as_str(), n.player_id.as_str()), ("lobby", "b"))
        }
        other => panic!("expected a join notification, got {other:?}"),
    }
    assert_nothing_pending(&mut b); // the joiner gets no notification of its own join
}

#[test]
fn join_rules_config_mismatch_already_joined_full_and_bad_room_id() {
    let server = start_on(TRANSPORT);
    let mut a = server.login("a");
    let mut b = server.login("b");
    let mut c = server.login("c");
    a.join("duo", Some(2)).unwrap();
    assert_rejected(b.join("duo", Some(5)), ErrorCode::RoomConfigDoesNotMatch);
    assert_rejected(b.join("duo", Some(0)), ErrorCode::RoomConfigDoesNotMatch);
    assert_rejected(a.join("duo", Some(2)), ErrorCode::AlreadyJoinedTheRoom);
    b.join("duo", Some(2)).unwrap();
    assert_rejected(c.join("duo", None), ErrorCode::RoomIsFull);
    assert_rejected(c.join("", None), ErrorCode::BadRequest);
    assert_rejected(c.join(&"r".repeat(129), None), ErrorCode::BadRequest);
    c.join(&"r".repeat(128), None).expect("128 bytes is fine");
}

#[test]
fn no_config_or_zero_means_no_room_cap_but_the_server_cap_applies() {
    let server = start_with_on(
        TRANSPORT,
        Config {
            max_room_members: 3,
            ..config()
        },
    );
    let mut clients: Vec<_> = (0..4).map(|i| server.login(&format!("p{i}"))).collect();
    clients[0].join("open", None).unwrap();
    clients[1].join("open", Some(0)).unwrap();
    clients[2].join("open", None).unwrap();
    assert_rejected(clients[3].join("open", None), ErrorCode::RoomIsFull);
}

// ---- leave and disconnect ----

#[test]
fn leave_notifies_the_others_and_not_in_room_is_an_error() {
    let server = start_on(TRANSPORT);
    let mut a = server.login("a");
    let mut b = server.login("b");
    assert_rejected(a.leave("nowhere"), ErrorCode::NotInRoom);
    a.join("r", None).unwrap();
    b.join("r", None).unwrap();
    assert_rejected(b.leave("other-room"), ErrorCode::NotInRoom);
    b.leave("r").unwrap();
    let left = a.expect(|d| match d {
        Data::LeaveNotification(n) => Ok(n),
        other => Err(other),
    });
    let left = left.unwrap();
    assert_eq!((left.room_id.as_str(), left.player_id.as_str()), ("r", "b"));
    assert_rejected(b.leave("r"), ErrorCode::NotInRoom);
    // b no longer receives the room's messages.
    a.send_message("r", &[], "after").unwrap();
    assert_eq!(&next_message(&mut a).body[..], b"after");
    assert_no_messages(&mut b);
}

#[test]
fn an_empty_room_is_removed() {
    let server = start_on(TRANSPORT);
    let mut a = server.login("a");
    a.join("r", Some(2)).unwrap();
    a.leave("r").unwrap();
    // A new room with another config: the old one is gone.
    let j = a.join("r", Some(7)).unwrap();
    assert_eq!(j.room_config, Some(RoomConfig { max_players: 7 }));
    a.send_message("r", &[], "x").unwrap();
    assert_eq!(
        next_message(&mut a).seq,
        1,
        "a new room counts from 1 again"
    );
}

#[test]
fn disconnect_is_a_leave_from_every_room_and_frees_the_player_id() {
    let server = start_on(TRANSPORT);
    let mut watcher = server.login("watcher");
    let mut gone = server.login("gone");
    let rooms: Vec<String> = (0..8).map(|i| format!("room-{i}")).collect();
    for room in &rooms {
        watcher.join(room, None).unwrap();
        gone.join(room, None).unwrap();
    }
    drop(gone);
    let mut seen: Vec<String> = (0..rooms.len())
        .map(|_| {
            watcher
                .expect(|d| match d {
                    Data::LeaveNotification(n) if n.player_id == "gone" => Ok(n.room_id),
                    other => Err(other),
                })
                .unwrap()
        })
        .collect();
    seen.sort();
    let mut expected = rooms.clone();
    expected.sort();
    assert_eq!(seen, expected);
    // The id is freed once every owner has dropped it: the first retry may race that.
    let mut again = server.connect();
    eventually(Duration::from_secs(5), || again.login("gone", None).ok());
    again.join("room-0", None).unwrap();
}

// ---- messages ----

#[test]
fn broadcast_reaches_every_member_including_the_sender_with_increasing_seq() {
    let server = start_on(TRANSPORT);
    let mut members: Vec<_> = (0..5).map(|i| server.login(&format!("m{i}"))).collect();
    for m in members.iter_mut() {
        m.join("room", None).unwrap();
    }
    for i in 0..10u8 {
        members[(i % 5) as usize]
            .send_message("room", &[], vec![i])
            .unwrap();
    }
    let mut first: Option<Vec<Vec<u8>>> = None;
    for m in members.iter_mut() {
        let got: Vec<(u64, Vec<u8>)> = (0..10)
            .map(|_| next_message(m))
            .map(|n| (n.seq, n.body.to_vec()))
            .collect();
        let seqs: Vec<u64> = got.iter().map(|g| g.0).collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
        // Every message once, and the same order for every member (the senders write
        // on different connections, so that order is the room's, not the test's).
        let bodies: Vec<Vec<u8>> = got.into_iter().map(|g| g.1).collect();
        let mut sorted = bodies.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10u8).map(|i| vec![i]).collect::<Vec<_>>());
        assert_eq!(first.get_or_insert_with(|| bodies.clone()), &bodies);
    }
}

#[test]
fn targeted_messages_reach_only_listed_members_and_leave_seq_gaps() {
    let server = start_on(TRANSPORT);
    let mut a = server.login("a");
    let mut b = server.login("b");
    let mut c = server.login("c");
    for x in [&mut a, &mut b, &mut c] {
        x.join("room", None).unwrap();
    }
    a.send_message("room", &["b", "ghost", "b"], "for b")
        .unwrap();
    a.send_message("room", &[], "for all").unwrap();
    let first = next_message(&mut b);
    assert_eq!((first.seq, &first.body[..]), (1, &b"for b"[..]));
    assert_eq!(
        next_message(&mut b).seq,
        2,
        "a duplicate target receives once"
    );
    let only = next_message(&mut c);
    assert_eq!(
        (only.seq, &only.body[..]),
        (2, &b"for all"[..]),
        "gap for the message addressed to others"
    );
    assert_eq!(
        next_message(&mut a).seq,
        2,
        "the sender is not a target of its own targeted message"
    );
    for x in [&mut a, &mut b, &mut c] {
        assert_no_messages(x);
    }
}

#[test]
fn sending_to_a_room_you_are_not_in_is_not_in_room() {
    let server = start_on(TRANSPORT);
    let mut a = server.login("a");
    let mut b = server.login("b");
    b.join("theirs", None).unwrap();
    a.send_message("theirs", &[], "x").unwrap();
    assert_error(&mut a, ErrorCode::NotInRoom);
    a.send_message("nowhere", &[], "x").unwrap();
    assert_error(&mut a, ErrorCode::NotInRoom);
    assert_no_messages(&mut b);
}

#[test]
fn ping_is_answered_before_and_after_login() {
    let server = start_on(TRANSPORT);
    let mut c = server.connect();
    c.ping(7).unwrap();
    c.login("p", None).unwrap();
    c.ping(u64::MAX).unwrap();
}

#[test]
fn message_with_no_data_and_bad_field_values_are_bad_request_and_stay_open() {
    let server = start_on(TRANSPORT);
    let mut c = server.connect();
    c.send_raw(&corecast::client::raw_frame(&[])).unwrap();
    assert_error(&mut c, ErrorCode::BadRequest);
    c.login("p", None).unwrap();
    c.send(client_message::Data::SendMessage(SendMessage {
        target_ids: vec![],
        room_id: "".into(),
        body: "x".into(),
    }))
    .unwrap();
    assert_error(&mut c, ErrorCode::BadRequest);
    c.send(client_message::Data::LeaveRequest(LeaveRequest {
        room_id: "".into(),
    }))
    .unwrap();
    let Data::LeaveResponse(r) = next_data(&mut c) else {
        panic!("leave response")
    };
    assert_eq!(r.error.unwrap().code(), ErrorCode::BadRequest);
    c.send(client_message::Data::Ping(Ping { nonce: 1 }))
        .unwrap();
    assert!(matches!(next_data(&mut c), Data::Pong(_)), "still open");
}

#[test]
fn a_rejected_client_error_does_not_disturb_others() {
    let server = start_on(TRANSPORT);
    let mut a = server.login("a");
    let mut b = server.login("b");
    a.join("r", None).unwrap();
    b.join("r", None).unwrap();
    let mut bad = server.connect();
    bad.send_raw(&[0, 0, 0, 2, 0xff, 0xff]).unwrap();
    assert_error(&mut bad, ErrorCode::BadRequest);
    assert!(matches!(bad.expect_closed(), Ok(())));
    a.send_message("r", &[], "fine").unwrap();
    assert_eq!(&next_message(&mut b).body[..], b"fine");
    let err = bad.ping(1).err();
    assert!(
        matches!(err, Some(ClientError::Io(_)) | Some(ClientError::Closed)),
        "{err:?}"
    );
}
