//! Server frames: responses, notifications and errors, each encoded once into a
//! shared `Bytes`. The notifications a broadcast sends are encoded by hand straight
//! from borrowed strings (one allocation: the frame); a test holds them byte-identical
//! to prost's encoding.

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, message, WireType};

use crate::wire::frame::{self, HEADER_LEN};
use crate::wire::proto::{
    server_message::Data, Error, ErrorCode, LeaveResponse, LoginResponse, Pong, RoomConfig,
    ServerMessage,
};

/// `ServerMessage` field numbers of the notifications encoded by hand.
const JOIN_RESPONSE: u32 = 2;
const JOIN_NOTIFICATION: u32 = 3;
const LEAVE_NOTIFICATION: u32 = 5;
const MESSAGE_NOTIFICATION: u32 = 6;

/// The `error` every successful response carries (code NONE).
pub fn ok() -> Option<Error> {
    Some(Error {
        code: ErrorCode::None as i32,
        message: String::new(),
    })
}

/// An `Error` with a code and a human-readable message (counted in the metrics).
pub fn err(code: ErrorCode, message: impl Into<String>) -> Option<Error> {
    crate::metrics::error(code);
    Some(Error {
        code: code as i32,
        message: message.into(),
    })
}

fn server(data: Data) -> Bytes {
    frame::encode(&ServerMessage { data: Some(data) })
}

/// `ServerMessage.error`: an error not tied to a response.
pub fn error(code: ErrorCode, message: impl Into<String>) -> Bytes {
    crate::metrics::error(code);
    server(Data::Error(Error {
        code: code as i32,
        message: message.into(),
    }))
}

/// `LoginResponse`.
pub fn login(error: Option<Error>) -> Bytes {
    server(Data::LoginResponse(LoginResponse { error }))
}

/// Where a room stands, told to a joiner (v1.1 `JoinResponse` fields 5-7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomPosition<'a> {
    /// The room's epoch.
    pub epoch: &'a str,
    /// Its latest `seq`.
    pub last_seq: u64,
    /// Whether the join's resume found every message it asked for.
    pub recovered: bool,
}

/// `JoinResponse`, hand-encoded like the notifications: the member list is written
/// straight from the room's ids, with no `String` per member (a 10,000-member room
/// is 10,000 ids per join).
pub fn join<'a>(
    room_id: &str,
    current_players: impl Iterator<Item = &'a str> + Clone,
    room_config: Option<RoomConfig>,
    error: Option<Error>,
) -> Bytes {
    join_at(
        room_id,
        current_players,
        room_config,
        error,
        RoomPosition::default(),
    )
}

/// A successful `JoinResponse` with the room's position (epoch, last_seq, recovered).
pub fn join_at<'a>(
    room_id: &str,
    current_players: impl Iterator<Item = &'a str> + Clone,
    room_config: Option<RoomConfig>,
    error: Option<Error>,
    position: RoomPosition<'_>,
) -> Bytes {
    // A repeated string writes every element, empty or not.
    let inner = bytes_field_len(1, room_id.as_bytes())
        + current_players
            .clone()
            .map(|p| len_delimited_len(2, p.as_bytes()))
            .sum::<usize>()
        + room_config
            .as_ref()
            .map_or(0, |c| message::encoded_len(3, c))
        + error.as_ref().map_or(0, |e| message::encoded_len(4, e))
        + bytes_field_len(5, position.epoch.as_bytes())
        + varint_field_len(6, position.last_seq)
        + varint_field_len(7, u64::from(position.recovered));
    let mut buf = start(JOIN_RESPONSE, inner);
    put_bytes_field(&mut buf, 1, room_id.as_bytes());
    for player in current_players {
        put_len_delimited(&mut buf, 2, player.as_bytes());
    }
    if let Some(config) = &room_config {
        message::encode(3, config, &mut buf);
    }
    if let Some(error) = &error {
        message::encode(4, error, &mut buf);
    }
    put_bytes_field(&mut buf, 5, position.epoch.as_bytes());
    put_varint_field(&mut buf, 6, position.last_seq);
    put_varint_field(&mut buf, 7, u64::from(position.recovered));
    debug_assert_eq!(buf.len(), buf.capacity());
    buf.freeze()
}

/// A refused `JoinRequest`: its `JoinResponse` with no members.
pub fn join_rejected(
    room_id: &str,
    room_config: Option<RoomConfig>,
    error: Option<Error>,
) -> Bytes {
    join(room_id, std::iter::empty(), room_config, error)
}

/// `LeaveResponse`.
pub fn leave(room_id: &str, error: Option<Error>) -> Bytes {
    server(Data::LeaveResponse(LeaveResponse {
        room_id: room_id.to_owned(),
        error,
    }))
}

/// `Pong`.
pub fn pong(nonce: u64) -> Bytes {
    server(Data::Pong(Pong { nonce }))
}

/// `JoinNotification { room_id, player_id }`.
pub fn join_notification(room_id: &str, player_id: &str) -> Bytes {
    two_strings(JOIN_NOTIFICATION, room_id, player_id)
}

/// `LeaveNotification { room_id, player_id }`.
pub fn leave_notification(room_id: &str, player_id: &str) -> Bytes {
    two_strings(LEAVE_NOTIFICATION, room_id, player_id)
}

/// `MessageNotification { sender_id, room_id, body, seq }`: one allocation.
pub fn message_notification(sender_id: &str, room_id: &str, body: &[u8], seq: u64) -> Bytes {
    let inner = bytes_field_len(1, sender_id.as_bytes())
        + bytes_field_len(2, room_id.as_bytes())
        + bytes_field_len(3, body)
        + varint_field_len(4, seq);
    let mut buf = start(MESSAGE_NOTIFICATION, inner);
    put_bytes_field(&mut buf, 1, sender_id.as_bytes());
    put_bytes_field(&mut buf, 2, room_id.as_bytes());
    put_bytes_field(&mut buf, 3, body);
    put_varint_field(&mut buf, 4, seq);
    debug_assert_eq!(buf.len(), buf.capacity());
    buf.freeze()
}

fn two_strings(outer_tag: u32, first: &str, second: &str) -> Bytes {
    let inner = bytes_field_len(1, first.as_bytes()) + bytes_field_len(2, second.as_bytes());
    let mut buf = start(outer_tag, inner);
    put_bytes_field(&mut buf, 1, first.as_bytes());
    put_bytes_field(&mut buf, 2, second.as_bytes());
    buf.freeze()
}

/// Allocates the whole frame and writes the length prefix and the outer field header.
fn start(outer_tag: u32, inner_len: usize) -> BytesMut {
    let payload = key_len(outer_tag) + encoded_len_varint(inner_len as u64) + inner_len;
    let mut buf = BytesMut::with_capacity(HEADER_LEN + payload);
    // Frames are bounded far below 4 GiB by the inputs' own limits.
    buf.put_u32(payload as u32);
    encode_key(outer_tag, WireType::LengthDelimited, &mut buf);
    encode_varint(inner_len as u64, &mut buf);
    buf
}

/// A length-delimited field, written even when empty (an element of a repeated field).
fn len_delimited_len(tag: u32, value: &[u8]) -> usize {
    key_len(tag) + encoded_len_varint(value.len() as u64) + value.len()
}

fn put_len_delimited(buf: &mut BytesMut, tag: u32, value: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(value.len() as u64, buf);
    buf.put_slice(value);
}

/// proto3 leaves empty strings and bytes off the wire.
fn bytes_field_len(tag: u32, value: &[u8]) -> usize {
    if value.is_empty() {
        0
    } else {
        len_delimited_len(tag, value)
    }
}

fn varint_field_len(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(value)
    }
}

/// proto3 leaves zero (and false) off the wire.
fn put_varint_field(buf: &mut BytesMut, tag: u32, value: u64) {
    if value != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(value, buf);
    }
}

fn put_bytes_field(buf: &mut BytesMut, tag: u32, value: &[u8]) {
    if !value.is_empty() {
        put_len_delimited(buf, tag, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::proto::{JoinNotification, LeaveNotification, MessageNotification};

    fn prost_frame(data: Data) -> Bytes {
        frame::encode(&ServerMessage { data: Some(data) })
    }

    #[test]
    fn message_notification_matches_prost_byte_for_byte() {
        let long_body = vec![7u8; 300];
        let cases: [(&str, &str, &[u8], u64); 5] = [
            ("alice", "lobby", b"hello", 1),
            ("", "", b"", 0),
            ("p", "r", &long_body, u64::MAX),
            ("sender-with-a-long-name", "room", b"", 128),
            ("s", "", b"\x00", 300),
        ];
        for (sender, room, body, seq) in cases {
            let ours = message_notification(sender, room, body, seq);
            let theirs = prost_frame(Data::MessageNotification(MessageNotification {
                sender_id: sender.into(),
                room_id: room.into(),
                body: Bytes::copy_from_slice(body),
                seq,
            }));
            assert_eq!(ours, theirs, "case {sender:?} {room:?} {seq}");
        }
    }

    #[test]
    fn join_response_matches_prost_byte_for_byte() {
        use crate::wire::proto::JoinResponse;
        let config = || Some(RoomConfig { max_players: 8 });
        let error = || {
            Some(Error {
                code: ErrorCode::FailedPrecondition as i32,
                message: "full".into(),
            })
        };
        type Case<'a> = (&'a str, &'a [&'a str], Option<RoomConfig>, Option<Error>);
        let cases: [Case; 5] = [
            (
                "lobby",
                &["alice", "bob"],
                config(),
                err(ErrorCode::None, ""),
            ),
            ("", &[], None, None),
            (
                "r",
                &["", "x"],
                Some(RoomConfig { max_players: 0 }),
                error(),
            ),
            ("room", &[], config(), error()),
            ("big", &["p"; 200], None, None),
        ];
        for (room, players, room_config, error) in cases {
            let ours = join(room, players.iter().copied(), room_config, error.clone());
            let theirs = prost_frame(Data::JoinResponse(JoinResponse {
                room_id: room.into(),
                current_players: players.iter().map(|p| p.to_string()).collect(),
                room_config,
                error,
                ..Default::default()
            }));
            assert_eq!(ours, theirs, "case {room:?} {}", players.len());
        }
        let positions = [
            ("a1b2", 7, true),
            ("", 0, false),
            ("e", u64::MAX, false),
            ("", 1, true),
        ];
        for (epoch, last_seq, recovered) in positions {
            let position = RoomPosition {
                epoch,
                last_seq,
                recovered,
            };
            let ours = join_at("r", ["a", "b"].into_iter(), config(), error(), position);
            let theirs = prost_frame(Data::JoinResponse(JoinResponse {
                room_id: "r".into(),
                current_players: vec!["a".into(), "b".into()],
                room_config: config(),
                error: error(),
                epoch: epoch.into(),
                last_seq,
                recovered,
            }));
            assert_eq!(ours, theirs, "position {position:?}");
        }
    }

    #[test]
    fn join_and_leave_notifications_match_prost() {
        for (room, player) in [("lobby", "bob"), ("", "x"), ("r", "")] {
            assert_eq!(
                join_notification(room, player),
                prost_frame(Data::JoinNotification(JoinNotification {
                    room_id: room.into(),
                    player_id: player.into()
                }))
            );
            assert_eq!(
                leave_notification(room, player),
                prost_frame(Data::LeaveNotification(LeaveNotification {
                    room_id: room.into(),
                    player_id: player.into()
                }))
            );
        }
    }

    #[test]
    fn ok_is_present_with_code_none() {
        let frame = login(ok());
        let msg = <ServerMessage as prost::Message>::decode(&frame[4..]).unwrap();
        let Some(Data::LoginResponse(resp)) = msg.data else {
            panic!()
        };
        assert_eq!(resp.error.unwrap().code, ErrorCode::None as i32);
    }
}
