//! The high-level request helpers of [`Client`] (log in, join, leave, send, ping) and
//! its waits for what the server sends (`recv`, `expect`, `expect_closed`), and
//! [`raw_frame`] for tests of malformed input.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::inbound::server_error;
use super::{Client, ClientError};
use crate::wire::frame;
use crate::wire::proto::{
    client_message, login_request::AuthConfig, server_message::Data, AuthConfigBearer,
    ClientMessage, ErrorCode, JoinRequest, JoinResponse, LeaveRequest, LeaveResponse, LoginRequest,
    LoginResponse, Ping, RoomConfig, SendMessage, ServerMessage,
};

/// What a join asks to be replayed (v1.1 history): nothing by default, as in v1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinHistory {
    /// Resume: the room's epoch and the last `seq` this client saw in it.
    pub since: Option<(String, u64)>,
    /// Replay at most this many retained messages (0: no cap on a resume, nothing
    /// without one).
    pub limit: u32,
}

impl JoinHistory {
    /// Resume after `seq` in `epoch`.
    pub fn resume(epoch: impl Into<String>, seq: u64) -> Self {
        Self {
            since: Some((epoch.into(), seq)),
            limit: 0,
        }
    }

    /// The last `n` retained messages.
    pub fn last(n: u32) -> Self {
        Self {
            since: None,
            limit: n,
        }
    }
}

impl Client {
    /// Sends one `ClientMessage` frame.
    pub fn send(&mut self, msg: client_message::Data) -> Result<(), ClientError> {
        let bytes = frame::encode(&ClientMessage { data: Some(msg) });
        self.send_raw(&bytes)
    }

    /// Writes raw bytes to the connection (tests of malformed input; under TLS they
    /// are encrypted like any other bytes).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.writer.write_all(bytes)?;
        Ok(())
    }

    /// Logs in; `Err(Rejected)` if the server answered with an error code,
    /// `Err(ClosedAfterError)` if it sent an error and closed (SERVER_FULL).
    pub fn login(&mut self, player_id: &str, token: Option<&str>) -> Result<(), ClientError> {
        self.login_with(player_id, token, false)
    }

    /// Logs in; with `replace_existing` a session of the same player on another
    /// connection is closed (it gets SESSION_REPLACED) instead of this login failing
    /// with ALREADY_LOGGED_IN: what a client reconnecting after a blip wants.
    pub fn login_with(
        &mut self,
        player_id: &str,
        token: Option<&str>,
        replace_existing: bool,
    ) -> Result<(), ClientError> {
        self.send(client_message::Data::LoginRequest(LoginRequest {
            player_id: player_id.into(),
            auth_config: token.map(|t| AuthConfig::Bearer(AuthConfigBearer { token: t.into() })),
            replace_existing,
        }))?;
        let resp: LoginResponse = self.expect(|d| match d {
            Data::LoginResponse(r) => Ok(r),
            other => Err(other),
        })?;
        check(resp.error)
    }

    /// Refreshes a logged-in session's signed token (JWT) before it expires: the new
    /// token's claims and expiry apply from then on. It must be for the same player;
    /// a bad one gets UNAUTHORIZED and the server closes the connection.
    pub fn refresh_token(&mut self, token: &str) -> Result<(), ClientError> {
        self.login_with("", Some(token), false)
    }

    /// Joins a room (`max_players` None sends no config); returns the full response.
    pub fn join(
        &mut self,
        room_id: &str,
        max_players: Option<u32>,
    ) -> Result<JoinResponse, ClientError> {
        self.join_with(room_id, max_players, &JoinHistory::default())
    }

    /// Joins a room asking for history: a resume (`since`) or the last messages
    /// (`limit`). The replayed `MessageNotification`s follow the response: read them
    /// with `recv`. `JoinResponse.recovered` says whether a resume found everything.
    pub fn join_with(
        &mut self,
        room_id: &str,
        max_players: Option<u32>,
        history: &JoinHistory,
    ) -> Result<JoinResponse, ClientError> {
        let (epoch, since_seq) = history.since.clone().unwrap_or_default();
        self.send(client_message::Data::JoinRequest(JoinRequest {
            room_id: room_id.into(),
            room_config: max_players.map(|m| RoomConfig { max_players: m }),
            since_seq,
            epoch,
            history_limit: history.limit,
        }))?;
        let resp: JoinResponse = self.expect(|d| match d {
            Data::JoinResponse(r) if r.room_id == room_id => Ok(r),
            other => Err(other),
        })?;
        check(resp.error.clone())?;
        Ok(resp)
    }

    /// Leaves a room.
    pub fn leave(&mut self, room_id: &str) -> Result<LeaveResponse, ClientError> {
        self.send(client_message::Data::LeaveRequest(LeaveRequest {
            room_id: room_id.into(),
        }))?;
        let resp: LeaveResponse = self.expect(|d| match d {
            Data::LeaveResponse(r) if r.room_id == room_id => Ok(r),
            other => Err(other),
        })?;
        check(resp.error.clone())?;
        Ok(resp)
    }

    /// Broadcasts (`targets` empty) or targets a message; the server sends no response.
    pub fn send_message(
        &mut self,
        room_id: &str,
        targets: &[&str],
        body: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        self.send(client_message::Data::SendMessage(SendMessage {
            target_ids: targets.iter().map(|t| t.to_string()).collect(),
            room_id: room_id.into(),
            body: body.into(),
        }))
    }

    /// Sends a ping and waits for its pong; returns the round-trip time.
    pub fn ping(&mut self, nonce: u64) -> Result<Duration, ClientError> {
        let start = Instant::now();
        self.send(client_message::Data::Ping(Ping { nonce }))?;
        self.expect(|d| match d {
            Data::Pong(p) if p.nonce == nonce => Ok(()),
            other => Err(other),
        })?;
        Ok(start.elapsed())
    }

    /// The next message, in arrival order, waiting up to the timeout.
    pub fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        self.inbound.next(Some(Instant::now() + self.timeout))
    }

    /// The next message whose data `pick` accepts; the ones it passes over stay queued
    /// for later `recv` calls, in order.
    pub fn expect<T>(
        &mut self,
        mut pick: impl FnMut(Data) -> Result<T, Data>,
    ) -> Result<T, ClientError> {
        let mut skipped = VecDeque::new();
        let deadline = Instant::now() + self.timeout;
        let result = loop {
            let msg = match self.inbound.pending.pop_front() {
                Some(msg) => msg,
                None => match self.inbound.read(Some(deadline)) {
                    Ok(msg) => msg,
                    Err(e) => break Err(e),
                },
            };
            match msg.data {
                Some(data) => {
                    let error = server_error(&data).cloned();
                    match pick(data) {
                        Ok(found) => {
                            if error.is_some() && error == self.inbound.unseen_error {
                                self.inbound.unseen_error = None;
                            }
                            break Ok(found);
                        }
                        Err(data) => skipped.push_back(ServerMessage { data: Some(data) }),
                    }
                }
                None => skipped.push_back(msg),
            }
        };
        skipped.append(&mut self.inbound.pending);
        self.inbound.pending = skipped;
        result
    }

    /// Waits for `ServerMessage.error` and returns its code and message.
    pub fn expect_error(&mut self) -> Result<(ErrorCode, String), ClientError> {
        self.expect(|d| match d {
            Data::Error(e) => Ok((e.code(), e.message)),
            other => Err(other),
        })
    }

    /// Waits until the server closes the connection, discarding what arrives first.
    pub fn expect_closed(&mut self) -> Result<(), ClientError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.inbound.read(Some(deadline)) {
                Ok(_) => continue,
                Err(ClientError::Closed | ClientError::ClosedAfterError { .. }) => return Ok(()),
                Err(ClientError::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Ok(())
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Encodes a `ClientMessage` frame with an arbitrary payload (for raw-bytes tests).
pub fn raw_frame(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.freeze()
}

fn check(error: Option<crate::wire::proto::Error>) -> Result<(), ClientError> {
    match error {
        Some(e) if e.code() != ErrorCode::None => Err(ClientError::Rejected {
            code: e.code(),
            message: e.message,
        }),
        _ => Ok(()),
    }
}
