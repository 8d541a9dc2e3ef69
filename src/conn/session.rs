//! What one connection's requests do: validation, login rules, and dispatch to the
//! shard. No sockets here; the connection feeds decoded requests in and acts on the
//! returned [`Outcome`].

use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::auth::{unix_now, Identity, Verifier};
use crate::config::Secret;
pub use crate::config::SessionConfig;
use crate::shard::history::ReplayRequest;
use crate::shard::members::ConnShared;
use crate::shard::room::Rejection;
use crate::shard::ShardState;
use crate::wire::proto::{client_message::Data, ErrorCode};
use crate::wire::request::{LoginView, Request, SendView};
use crate::wire::response;

pub use crate::wire::MAX_ID_BYTES;

/// Longest room epoch, in bytes (PROTOCOL.md: the server's are at most 32).
pub const MAX_EPOCH_BYTES: usize = 32;

/// What the connection does after a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Read the next request.
    Continue,
    /// Wait for the login claim's answer before reading further (keeps order).
    AwaitClaim(Arc<str>),
    /// An error frame is queued; close once it is flushed.
    Close,
}

/// Checks a player or room id: 1 to 128 bytes (UTF-8 is checked by decoding).
pub fn validate_id(what: &str, id: &str) -> Result<(), Rejection> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err((
            ErrorCode::BadRequest,
            format!(
                "{what} must be 1 to {MAX_ID_BYTES} bytes of UTF-8, got {} bytes",
                id.len()
            ),
        ));
    }
    Ok(())
}

/// Whether `login` carries the configured token (constant-time in the token's bytes).
pub fn authorized(login: &LoginView<'_>, expected: Option<&Secret>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let given = login.token.unwrap_or_default().as_bytes();
    bool::from(given.ct_eq(expected.expose().as_bytes()))
}

/// Handles one decoded request from `conn`; `payload` is its raw bytes.
pub fn handle(
    state: &mut ShardState,
    conn: &ConnShared,
    config: &SessionConfig,
    request: Request<'_>,
    payload: &[u8],
) -> Outcome {
    let data = match request {
        Request::Send(view) => return send(state, conn, config, &view, payload),
        Request::Login(view) => return login(state, conn, config, view),
        Request::Message(msg) => msg.data,
    };
    let Some(data) = data else {
        conn.reply(response::error(
            ErrorCode::BadRequest,
            "ClientMessage has no data set",
        ));
        return Outcome::Continue;
    };
    match data {
        Data::Ping(ping) => {
            conn.reply(response::pong(ping.nonce));
            Outcome::Continue
        }
        Data::LoginRequest(login) => self::login(state, conn, config, LoginView::of(&login)),
        Data::SendMessage(send_msg) => send(state, conn, config, &SendView::of(&send_msg), payload),
        Data::JoinRequest(join) => {
            let Some(player) = logged_in(conn) else {
                return Outcome::Continue;
            };
            if let Err((code, message)) = validate_id("room_id", &join.room_id) {
                let error = response::err(code, message);
                conn.reply(response::join_rejected(&join.room_id, None, error));
                return Outcome::Continue;
            }
            if !conn.may_join(&join.room_id) {
                let message = format!("your token does not allow joining room {:?}", join.room_id);
                let error = response::err(ErrorCode::Forbidden, message);
                conn.reply(response::join_rejected(&join.room_id, None, error));
                return Outcome::Continue;
            }
            if conn.room_slots.get() >= config.max_rooms_per_connection {
                let message = format!(
                    "this connection is in (or joining) {} rooms, the --max-rooms-per-connection limit",
                    conn.room_slots.get()
                );
                let error = response::err(ErrorCode::FailedPrecondition, message);
                conn.reply(response::join_rejected(&join.room_id, None, error));
                return Outcome::Continue;
            }
            if join.epoch.len() > MAX_EPOCH_BYTES {
                let message = format!(
                    "epoch is at most {MAX_EPOCH_BYTES} bytes (as JoinResponse gave it), got {}",
                    join.epoch.len()
                );
                let error = response::err(ErrorCode::BadRequest, message);
                conn.reply(response::join_rejected(&join.room_id, None, error));
                return Outcome::Continue;
            }
            conn.room_slots.set(conn.room_slots.get() + 1);
            let max_players = join.room_config.map(|c| c.max_players);
            let replay = ReplayRequest {
                since_seq: join.since_seq,
                epoch: join.epoch,
                limit: join.history_limit,
            };
            state.join(conn, player, join.room_id, max_players, replay);
            Outcome::Continue
        }
        Data::LeaveRequest(leave) => {
            let Some(player) = logged_in(conn) else {
                return Outcome::Continue;
            };
            if let Err((code, message)) = validate_id("room_id", &leave.room_id) {
                conn.reply(response::leave(
                    &leave.room_id,
                    response::err(code, message),
                ));
                return Outcome::Continue;
            }
            state.leave(conn, player, leave.room_id);
            Outcome::Continue
        }
    }
}

fn login(
    state: &mut ShardState,
    conn: &ConnShared,
    config: &SessionConfig,
    login: LoginView<'_>,
) -> Outcome {
    let current = conn.player.borrow().clone();
    if let Some(current) = current {
        return refresh(conn, config, &login, &current);
    }
    // The token first: without it, nothing else about the request matters.
    let player: Arc<str> = if let Some(verifier) = &config.jwt {
        match verify(verifier, &login) {
            Ok(identity) if login.player_id.is_empty() || login.player_id == identity.sub => {
                let player = identity.sub.as_str().into();
                // Inert until the claim grants the id: nothing reads them before.
                conn.adopt(verifier, identity);
                player
            }
            Ok(identity) => {
                let message = format!(
                    "the token is for player {:?}, not player_id {:?}",
                    identity.sub, login.player_id
                );
                return unauthorized(conn, message);
            }
            Err(message) => return unauthorized(conn, message),
        }
    } else {
        if !authorized(&login, config.auth_token.as_ref()) {
            return unauthorized(conn, "missing or wrong bearer token".into());
        }
        if let Err((code, message)) = validate_id("player_id", login.player_id) {
            conn.reply(response::login(response::err(code, message)));
            return Outcome::Continue;
        }
        login.player_id.into()
    };
    state.claim(conn, player.clone(), login.replace_existing);
    Outcome::AwaitClaim(player)
}

/// A LoginRequest on a logged-in connection: with JWT on and the same player, a
/// refresh (the new token's claims and expiry replace the old); otherwise
/// ALREADY_LOGGED_IN.
fn refresh(
    conn: &ConnShared,
    config: &SessionConfig,
    login: &LoginView<'_>,
    current: &str,
) -> Outcome {
    let already = |conn: &ConnShared| {
        let err = response::err(
            ErrorCode::AlreadyLoggedIn,
            "this connection is already logged in",
        );
        conn.reply(response::login(err));
        Outcome::Continue
    };
    let other_player = !login.player_id.is_empty() && login.player_id != current;
    let Some(verifier) = config.jwt.as_ref().filter(|_| !other_player) else {
        return already(conn);
    };
    match verify(verifier, login) {
        Ok(identity) if identity.sub == current => {
            conn.adopt(verifier, identity);
            crate::metrics::count(crate::metrics::Count::TokenRefresh);
            conn.reply(response::login(response::ok()));
            Outcome::Continue
        }
        // No player_id: the token's sub names the player, another one.
        Ok(_) if login.player_id.is_empty() => already(conn),
        Ok(identity) => {
            let message = format!(
                "the token is for player {:?}, not player_id {:?}",
                identity.sub, current
            );
            unauthorized(conn, message)
        }
        Err(message) => unauthorized(conn, message),
    }
}

/// Verifies the login's token now.
fn verify(verifier: &Verifier, login: &LoginView<'_>) -> Result<Identity, String> {
    verifier
        .verify(login.token.unwrap_or_default(), unix_now())
        .map_err(|e| e.0)
}

/// LoginResponse UNAUTHORIZED, then close.
fn unauthorized(conn: &ConnShared, message: String) -> Outcome {
    conn.reply(response::login(response::err(
        ErrorCode::Unauthorized,
        message,
    )));
    Outcome::Close
}

/// Applies the owner's answer to a claim: the login response, and the session's player.
pub fn finish_login(conn: &ConnShared, player: Arc<str>, ok: bool) {
    if ok {
        crate::metrics::count(crate::metrics::Count::Login);
        *conn.player.borrow_mut() = Some(player);
        conn.reply(response::login(response::ok()));
    } else {
        let message = format!("player_id {:?} is already logged in", &*player);
        conn.reply(response::login(response::err(
            ErrorCode::AlreadyLoggedIn,
            message,
        )));
    }
}

fn send(
    state: &mut ShardState,
    conn: &ConnShared,
    config: &SessionConfig,
    view: &SendView<'_>,
    payload: &[u8],
) -> Outcome {
    let Some(player) = logged_in(conn) else {
        return Outcome::Continue;
    };
    if view.target_count() > config.max_targets {
        let message = format!(
            "{} target_ids, more than --max-targets {}",
            view.target_count(),
            config.max_targets
        );
        conn.reply(response::error(ErrorCode::BadRequest, message));
        return Outcome::Continue;
    }
    if let Err((code, message)) = validate_id("room_id", view.room_id) {
        conn.reply(response::error(code, message));
        return Outcome::Continue;
    }
    if !conn.may_publish(view.room_id) {
        let message = format!(
            "your token does not allow sending in room {:?}; nothing was delivered",
            view.room_id
        );
        conn.reply(response::error(ErrorCode::Forbidden, message));
        return Outcome::Continue;
    }
    state.send(conn, &player, view, payload);
    Outcome::Continue
}

/// The session's player, or a FAILED_PRECONDITION error queued for the client.
fn logged_in(conn: &ConnShared) -> Option<Arc<str>> {
    let player = conn.player.borrow().clone();
    if player.is_none() {
        conn.reply(response::error(
            ErrorCode::FailedPrecondition,
            "log in first",
        ));
    }
    player
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login_with(token: Option<&str>) -> LoginView<'_> {
        LoginView {
            player_id: "p",
            token,
            replace_existing: false,
        }
    }

    #[test]
    fn ids_are_one_to_128_bytes() {
        assert!(validate_id("room_id", "").is_err());
        assert!(validate_id("room_id", "a").is_ok());
        assert!(validate_id("room_id", &"x".repeat(128)).is_ok());
        assert_eq!(
            validate_id("room_id", &"x".repeat(129)).unwrap_err().0,
            ErrorCode::BadRequest
        );
        // 43 three-byte characters are 129 bytes: the limit is bytes, not characters.
        assert!(validate_id("player_id", &"€".repeat(43)).is_err());
    }

    #[test]
    fn token_must_match_when_configured() {
        assert!(authorized(&login_with(None), None));
        assert!(authorized(&login_with(Some("anything")), None));
        let secret = Secret::new("s3cret");
        assert!(authorized(&login_with(Some("s3cret")), Some(&secret)));
        assert!(!authorized(&login_with(Some("s3cre")), Some(&secret)));
        assert!(!authorized(&login_with(Some("s3cret!")), Some(&secret)));
        assert!(!authorized(&login_with(None), Some(&secret)));
    }
}
