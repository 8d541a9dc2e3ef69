//! corecast: u32 big-endian length + protobuf frames (PROTOCOL.md), or over WebSocket
//! (`--transport ws`) one protobuf message per binary frame ([`super::ws`]). Room
//! messages are encoded and decoded by hand on the hot path (checked against prost in
//! the tests); everything else goes through the generated types.

use anyhow::{bail, Context, Result};
use prost::Message;

use corecast::frame::{self, next_frame};
use corecast::proto::{
    client_message, login_request::AuthConfig, server_message::Data, AuthConfigBearer,
    ClientMessage, ErrorCode, JoinRequest, LeaveRequest, LoginRequest, ServerMessage,
};

use super::ws::{Frame, WsFraming, OP_BINARY};
use super::{Event, JoinInfo, ResumePoint, Transport};

/// Largest frame accepted from the server.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// A corecast connection's codec: over TCP stateless (the frames say everything),
/// over WebSocket the framing's state (upgraded yet, the masking key).
#[derive(Debug, Default)]
pub struct CorecastCodec {
    /// WebSocket framing (None: TCP's length prefix).
    ws: Option<WsFraming>,
}

impl CorecastCodec {
    /// A codec for a fresh connection over `transport`.
    pub fn new(transport: Transport) -> Self {
        Self {
            ws: (transport == Transport::Ws).then(WsFraming::default),
        }
    }

    fn push(&self, out: &mut Vec<u8>, data: client_message::Data) {
        let msg = ClientMessage { data: Some(data) };
        let at = out.len();
        frame::encode_into(&msg, msg.encoded_len(), out);
        if let Some(ws) = &self.ws {
            ws.reframe(out, at);
        }
    }

    /// LoginRequest with an optional bearer token and `replace_existing`; over
    /// WebSocket the upgrade request goes first (the server reads what follows it as
    /// the first frames: no round trip waits for the 101).
    fn push_login(
        &self,
        out: &mut Vec<u8>,
        player: &str,
        token: Option<&str>,
        replace_existing: bool,
    ) {
        if let Some(ws) = &self.ws {
            ws.upgrade_request(out);
        }
        self.push(
            out,
            client_message::Data::LoginRequest(LoginRequest {
                player_id: player.into(),
                auth_config: token
                    .map(|t| AuthConfig::Bearer(AuthConfigBearer { token: t.into() })),
                replace_existing,
            }),
        );
    }
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
        self.push_login(out, player, token, false);
    }

    /// LoginRequest with `replace_existing`: a session of `player` still open on
    /// another connection is closed with SESSION_REPLACED and this login succeeds.
    pub fn login_replacing(&mut self, out: &mut Vec<u8>, player: &str, token: Option<&str>) {
        self.push_login(out, player, token, true);
    }

    /// JoinRequest resuming after `from.since_seq` of `from.epoch`: the retained
    /// messages after it come first, then live ones.
    pub fn join_resuming(&mut self, out: &mut Vec<u8>, room: &str, from: &ResumePoint) {
        self.push(
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
        self.push(
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
        self.push(
            out,
            client_message::Data::LeaveRequest(LeaveRequest {
                room_id: room.into(),
            }),
        );
    }

    /// A Ping (answered by a Pong, ignored).
    pub fn keepalive(&mut self, out: &mut Vec<u8>) {
        self.push(
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
        let ws_start = match &self.ws {
            Some(ws) => Some(ws.begin(out, OP_BINARY, payload)),
            None => {
                out.reserve(4 + payload);
                out.extend_from_slice(&(payload as u32).to_be_bytes());
                None
            }
        };
        out.push(4 << 3 | 2);
        put_varint(out, inner as u64);
        out.push(2 << 3 | 2);
        put_varint(out, room.len() as u64);
        out.extend_from_slice(room.as_bytes());
        out.push(3 << 3 | 2);
        put_varint(out, body.len() as u64);
        out.extend_from_slice(body);
        if let (Some(ws), Some(start)) = (&self.ws, ws_start) {
            ws.finish(out, start);
        }
    }

    /// The next server frame as an event. Over WebSocket a ping's pong goes to `out`;
    /// the upgrade's 101, pings and pongs are [`Event::Other`], and so is the closing
    /// frame (the server's Error message, if any, came before it; the end of the
    /// stream follows it).
    pub fn next_event<'a>(
        &mut self,
        buf: &'a [u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<(Event<'a>, usize)>> {
        let (payload, used) = match &mut self.ws {
            None => {
                let Some(range) = next_frame(buf, MAX_FRAME).context("corecast framing")? else {
                    return Ok(None);
                };
                let used = range.end;
                (&buf[range], used)
            }
            Some(ws) => match ws
                .next(buf, out, MAX_FRAME)
                .context("corecast over WebSocket")?
            {
                None => return Ok(None),
                Some((Frame::Message(payload), used)) => (payload, used),
                Some((_, used)) => return Ok(Some((Event::Other, used))),
            },
        };
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
            CorecastCodec::default().publish(&mut ours, room, &body);
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
        let mut codec = CorecastCodec::default();
        let (ev, used) = codec.next_event(&wire, &mut Vec::new()).unwrap().unwrap();
        assert_eq!(
            ev,
            Event::Delivery {
                seq: Some(300),
                body: &[1, 2, 3]
            }
        );
        let (ev, used2) = codec
            .next_event(&wire[used..], &mut Vec::new())
            .unwrap()
            .unwrap();
        assert_eq!(ev, Event::LoggedIn);
        assert_eq!(used + used2, wire.len());
        assert!(
            codec
                .next_event(&wire[..used - 1], &mut Vec::new())
                .unwrap()
                .is_none(),
            "partial frame"
        );
    }

    #[test]
    fn a_reconnect_replaces_and_resumes_and_reads_where_the_room_stands() {
        let mut ours = Vec::new();
        CorecastCodec::default().login_replacing(&mut ours, "p1", None);
        let from = ResumePoint {
            since_seq: 41,
            epoch: "e7".into(),
        };
        CorecastCodec::default().join_resuming(&mut ours, "lobby", &from);
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
        let (ev, _) = CorecastCodec::default()
            .next_event(&response, &mut Vec::new())
            .unwrap()
            .unwrap();
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
        let (ev, _) = CorecastCodec::default()
            .next_event(&wire, &mut Vec::new())
            .unwrap()
            .unwrap();
        assert!(matches!(ev, Event::Rejected(m) if m.contains("SlowConsumer")));
    }

    #[test]
    fn over_websocket_the_same_messages_travel_in_binary_frames() {
        let mut ws = CorecastCodec::new(Transport::Ws);
        let mut out = Vec::new();
        ws.login(&mut out, "p1", None);
        let head = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(out.starts_with(b"GET /ws HTTP/1.1\r\n"));
        let body = vec![7u8; 300];
        let at = out.len();
        ws.publish(&mut out, "lobby", &body);
        let mut tcp = Vec::new();
        CorecastCodec::default().publish(&mut tcp, "lobby", &body);
        // Masked frame: 0x82, 126, u16 length, 4-byte key, then the masked payload.
        let frame = &out[at..];
        assert_eq!((frame[0], frame[1] & 0x7f), (0x82, 126));
        let len = u16::from_be_bytes([frame[2], frame[3]]) as usize;
        let key = &frame[4..8];
        let payload: Vec<u8> = frame[8..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        assert_eq!((len, &payload[..]), (tcp.len() - 4, &tcp[4..]));
        assert!(head < at, "the login frame follows the upgrade request");

        let accept = "HTTP/1.1 101 Switching Protocols\r\n\
                      Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        let mut wire = accept.as_bytes().to_vec();
        let note = frame::encode(&ServerMessage {
            data: Some(Data::MessageNotification(MessageNotification {
                sender_id: "a".into(),
                room_id: "lobby".into(),
                body: vec![1, 2].into(),
                seq: 9,
            })),
        });
        wire.extend_from_slice(&[0x82, (note.len() - 4) as u8]);
        wire.extend_from_slice(&note[4..]);
        let (ev, used) = ws.next_event(&wire, &mut out).unwrap().unwrap();
        assert_eq!((ev, used), (Event::Other, accept.len()));
        let (ev, used2) = ws.next_event(&wire[used..], &mut out).unwrap().unwrap();
        assert_eq!(
            ev,
            Event::Delivery {
                seq: Some(9),
                body: &[1, 2]
            }
        );
        assert_eq!(used + used2, wire.len());
    }
}
