//! corecast: u32 big-endian length + protobuf frames (PROTOCOL.md). Room messages are
//! encoded and decoded by hand on the hot path (checked against prost in the tests);
//! everything else goes through the generated types.

use anyhow::{bail, Context, Result};
use prost::Message;

use corecast::frame::{self, next_frame};
use corecast::proto::{
    client_message, login_request::AuthConfig, server_message::Data, AuthConfigBearer,
    ClientMessage, ErrorCode, JoinRequest, LeaveRequest, LoginRequest, ServerMessage,
};

use super::{Event, JoinInfo, ResumePoint};

/// Largest frame accepted from the server.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// A corecast connection's codec (stateless: the frames say everything).
#[derive(Debug, Default)]
pub struct CorecastCodec;

fn push(out: &mut Vec<u8>, data: client_message::Data) {
    let msg = ClientMessage { data: Some(data) };
    frame::encode_into(&msg, msg.encoded_len(), out);
}

/// LoginRequest with an optional bearer token and `replace_existing`.
fn push_login(out: &mut Vec<u8>, player: &str, token: Option<&str>, replace_existing: bool) {
    push(
        out,
        client_message::Data::LoginRequest(LoginRequest {
            player_id: player.into(),
            auth_config: token.map(|t| AuthConfig::Bearer(AuthConfigBearer { token: t.into() })),
            replace_existing,
        }),
    );
}

fn varint_len(v: u64) -> usize {
    prost::encoding::encoded_len_varint(v)
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    prost::encoding::encode_varint(v, out);
}

impl CorecastCodec {
    /// LoginRequest with an optional bearer token.
    pub fn login(&mut self, out: &mut Vec<u8>, player: &str, token: Option<&str>) {
        push_login(out, player, token, false);
    }

    /// LoginRequest with `replace_existing`: a session of `player` still open on
    /// another connection is closed with SESSION_REPLACED and this login succeeds.
    pub fn login_replacing(&mut self, out: &mut Vec<u8>, player: &str, token: Option<&str>) {
        push_login(out, player, token, true);
    }

    /// JoinRequest resuming after `from.since_seq` of `from.epoch`: the retained
    /// messages after it come first, then live ones.
    pub fn join_resuming(&mut self, out: &mut Vec<u8>, room: &str, from: &ResumePoint) {
        push(
            out,
            client_message::Data::JoinRequest(JoinRequest {
                room_id: room.into(),
                room_config: None,
                since_seq: from.since_seq,
                epoch: from.epoch.clone(),
                history_limit: 0,
            }),
        );
    }

    /// JoinRequest without a room config (the room's own is accepted).
    pub fn join(&mut self, out: &mut Vec<u8>, room: &str) {
        push(
            out,
            client_message::Data::JoinRequest(JoinRequest {
                room_id: room.into(),
                room_config: None,
                ..Default::default()
            }),
        );
    }

    /// LeaveRequest.
    pub fn leave(&mut self, out: &mut Vec<u8>, room: &str) {
        push(
            out,
            client_message::Data::LeaveRequest(LeaveRequest {
                room_id: room.into(),
            }),
        );
    }

    /// A Ping (answered by a Pong, ignored).
    pub fn keepalive(&mut self, out: &mut Vec<u8>) {
        push(
            out,
            client_message::Data::Ping(corecast::proto::Ping { nonce: 0 }),
        );
    }

    /// A broadcast SendMessage (no targets), encoded straight into `out`.
    pub fn publish(&mut self, out: &mut Vec<u8>, room: &str, body: &[u8]) {
        // SendMessage { room_id = 2, body = 3 } inside ClientMessage.send_message = 4.
        let inner = 1
            + varint_len(room.len() as u64)
            + room.len()
            + 1
            + varint_len(body.len() as u64)
            + body.len();
        let payload = 1 + varint_len(inner as u64) + inner;
        out.reserve(4 + payload);
        out.extend_from_slice(&(payload as u32).to_be_bytes());
        out.push(4 << 3 | 2);
        put_varint(out, inner as u64);
        out.push(2 << 3 | 2);
        put_varint(out, room.len() as u64);
        out.extend_from_slice(room.as_bytes());
        out.push(3 << 3 | 2);
        put_varint(out, body.len() as u64);
        out.extend_from_slice(body);
    }

    /// The next server frame as an event.
    pub fn next_event<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Event<'a>, usize)>> {
        let Some(range) = next_frame(buf, MAX_FRAME).context("corecast framing")? else {
            return Ok(None);
        };
        let used = range.end;
        let payload = &buf[range];
        if let Some((body, seq)) = parse_notification(payload) {
            return Ok(Some((
                Event::Delivery {
                    seq: Some(seq),
                    body,
                },
                used,
            )));
        }
        let msg = ServerMessage::decode(payload).context("undecodable ServerMessage")?;
        let rejected = |e: Option<corecast::proto::Error>| {
            e.filter(|e| e.code() != ErrorCode::None)
                .map(|e| Event::Rejected(format!("{:?}: {}", e.code(), e.message)))
        };
        let event = match msg.data {
            Some(Data::LoginResponse(r)) => rejected(r.error).unwrap_or(Event::LoggedIn),
            Some(Data::JoinResponse(r)) => rejected(r.error).unwrap_or(Event::Joined(JoinInfo {
                epoch: r.epoch,
                last_seq: r.last_seq,
                recovered: r.recovered,
            })),
            Some(Data::LeaveResponse(r)) => rejected(r.error).unwrap_or(Event::Left),
            Some(Data::Error(e)) => rejected(Some(e)).unwrap_or(Event::Other),
            Some(Data::MessageNotification(_)) => {
                bail!("MessageNotification the fast path could not read")
            }
            _ => Event::Other,
        };
        Ok(Some((event, used)))
    }
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Reads a payload that is exactly one `message_notification`: (body, seq) borrowed
/// from the frame, with no allocation. `None` for anything else.
fn parse_notification(payload: &[u8]) -> Option<(&[u8], u64)> {
    let mut pos = 0;
    if read_varint(payload, &mut pos)? != (6 << 3 | 2) {
        return None;
    }
    let len = read_varint(payload, &mut pos)? as usize;
    if payload.len() - pos != len {
        return None;
    }
    let inner = &payload[pos..];
    let (mut pos, mut body, mut seq) = (0, &inner[..0], 0);
    while pos < inner.len() {
        let key = read_varint(inner, &mut pos)?;
        match (key >> 3, key & 7) {
            (3, 2) => {
                let n = read_varint(inner, &mut pos)? as usize;
                body = inner.get(pos..pos.checked_add(n)?)?;
                pos += n;
            }
            (4, 0) => seq = read_varint(inner, &mut pos)?,
            (_, 0) => {
                read_varint(inner, &mut pos)?;
            }
            (_, 1) => pos += 8,
            (_, 2) => {
                let n = read_varint(inner, &mut pos)? as usize;
                pos = pos.checked_add(n)?;
            }
            (_, 5) => pos += 4,
            _ => return None,
        }
    }
    (pos == inner.len()).then_some((body, seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use corecast::proto::{LoginResponse, MessageNotification, SendMessage};

    #[test]
    fn publish_matches_prost() {
        for (room, body_len) in [
            ("r", 20),
            ("room-with-a-long-name-0123456789", 300),
            ("x", 20_000),
        ] {
            let body = vec![7u8; body_len];
            let mut ours = Vec::new();
            CorecastCodec.publish(&mut ours, room, &body);
            let reference = frame::encode(&ClientMessage {
                data: Some(client_message::Data::SendMessage(SendMessage {
                    target_ids: vec![],
                    room_id: room.into(),
                    body: body.clone().into(),
                })),
            });
            assert_eq!(ours, reference.to_vec(), "room {room} body {body_len}");
        }
    }

    #[test]
    fn reads_notifications_without_prost_and_others_with_it() {
        let note = ServerMessage {
            data: Some(Data::MessageNotification(MessageNotification {
                sender_id: "alice".into(),
                room_id: "lobby".into(),
                body: vec![1, 2, 3].into(),
                seq: 300,
            })),
        };
        let mut wire = frame::encode(&note).to_vec();
        let login = ServerMessage {
            data: Some(Data::LoginResponse(LoginResponse {
                error: Some(corecast::proto::Error {
                    code: ErrorCode::None as i32,
                    message: String::new(),
                }),
            })),
        };
        wire.extend_from_slice(&frame::encode(&login));
        let mut codec = CorecastCodec;
        let (ev, used) = codec.next_event(&wire).unwrap().unwrap();
        assert_eq!(
            ev,
            Event::Delivery {
                seq: Some(300),
                body: &[1, 2, 3]
            }
        );
        let (ev, used2) = codec.next_event(&wire[used..]).unwrap().unwrap();
        assert_eq!(ev, Event::LoggedIn);
        assert_eq!(used + used2, wire.len());
        assert!(
            codec.next_event(&wire[..used - 1]).unwrap().is_none(),
            "partial frame"
        );
    }

    #[test]
    fn a_reconnect_replaces_and_resumes_and_reads_where_the_room_stands() {
        let mut ours = Vec::new();
        CorecastCodec.login_replacing(&mut ours, "p1", None);
        let from = ResumePoint {
            since_seq: 41,
            epoch: "e7".into(),
        };
        CorecastCodec.join_resuming(&mut ours, "lobby", &from);
        let mut wire = &ours[..];
        let mut next = || {
            let range = next_frame(wire, MAX_FRAME).unwrap().unwrap();
            let msg = ClientMessage::decode(&wire[range.clone()]).unwrap();
            wire = &wire[range.end..];
            msg.data
        };
        let Some(client_message::Data::LoginRequest(login)) = next() else {
            panic!("not a login")
        };
        assert_eq!(
            (login.player_id.as_str(), login.replace_existing),
            ("p1", true)
        );
        let Some(client_message::Data::JoinRequest(join)) = next() else {
            panic!("not a join")
        };
        assert_eq!(
            (join.room_id.as_str(), join.since_seq, join.epoch.as_str()),
            ("lobby", 41, "e7")
        );

        let response = frame::encode(&ServerMessage {
            data: Some(Data::JoinResponse(corecast::proto::JoinResponse {
                room_id: "lobby".into(),
                error: Some(corecast::proto::Error::default()),
                epoch: "e7".into(),
                last_seq: 44,
                recovered: true,
                ..Default::default()
            })),
        });
        let (ev, _) = CorecastCodec.next_event(&response).unwrap().unwrap();
        assert_eq!(
            ev,
            Event::Joined(JoinInfo {
                epoch: "e7".into(),
                last_seq: 44,
                recovered: true
            })
        );
    }

    #[test]
    fn error_codes_become_rejections() {
        let slow = ServerMessage {
            data: Some(Data::Error(corecast::proto::Error {
                code: ErrorCode::SlowConsumer as i32,
                message: "too slow".into(),
            })),
        };
        let wire = frame::encode(&slow);
        let (ev, _) = CorecastCodec.next_event(&wire).unwrap().unwrap();
        assert!(matches!(ev, Event::Rejected(m) if m.contains("SlowConsumer")));
    }
}
