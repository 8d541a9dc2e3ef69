//! The protocol driver of one connection: plain code over bytes and time, with no
//! socket and no clock inside (quinn-proto's habit). The connection's reader task feeds
//! it what it reads and the time it read it; the fuzz and property simulation feed it
//! scripted bytes and a scripted clock. It is the only copy of these rules:
//!
//! - framing: whole frames are handled where they lie, a partial tail is kept;
//! - order: a login waits for its claim before any later frame is handled, and at most
//!   [`FRAMES_PER_TURN`] frames are handled before the task lets others run;
//! - limits: the per-connection token bucket (`--max-messages-per-second`), the frame
//!   size, `--frame-timeout` for a started frame, `--login-timeout`, `--idle-timeout`;
//! - what closes the connection: an oversized or undecodable frame, a bad token, a
//!   signed token's expiry (unless refreshed first).
//!
//! What each request does is [`session`](crate::conn::session)'s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::conn::rate_limit::TokenBucket;
use crate::conn::session::{self, Outcome, SessionConfig};
use crate::metrics;
use crate::shard::context::SCRATCH_BYTES;
use crate::shard::members::ConnShared;
use crate::shard::ShardState;
use crate::wire::frame::{self, FrameError};
use crate::wire::proto::{client_message::Data, ClientMessage, ErrorCode};
use crate::wire::request::{decode_request, Request};
use crate::wire::response;

/// Frames handled per call before the task lets other tasks run.
pub const FRAMES_PER_TURN: usize = 256;

/// Shortest read timeout handed out (glommio rejects zero).
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// The limits one connection's driver enforces.
#[derive(Debug, Clone, Copy)]
pub struct DriverSettings {
    /// `--max-frame-bytes`.
    pub max_frame_bytes: usize,
    /// `--max-messages-per-second` (0: unlimited).
    pub max_messages_per_second: u32,
    /// `--idle-timeout`, `None` when off.
    pub idle: Option<Duration>,
    /// `--frame-timeout`.
    pub frame_timeout: Duration,
    /// `--login-timeout`.
    pub login_timeout: Duration,
}

impl DriverSettings {
    /// The driver's settings from the server configuration.
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_frame_bytes: config.max_frame_bytes,
            max_messages_per_second: config.max_messages_per_second,
            idle: config.idle_timeout(),
            frame_timeout: config.frame_timeout(),
            login_timeout: config.login_timeout(),
        }
    }
}

/// What one call into the driver works on.
pub struct Input<'a> {
    /// The connection's shard.
    pub shard: &'a mut ShardState,
    /// The connection.
    pub conn: &'a ConnShared,
    /// What requests are checked against.
    pub session: &'a SessionConfig,
    /// The time, read once by the caller.
    pub now: Instant,
    /// The latest a connection that starts closing now may take to flush.
    pub close_by: Instant,
}

/// What the connection's task does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wants {
    /// Read from the socket, for at most this long (`None`: no limit).
    Read(Option<Duration>),
    /// More frames are held: let other tasks run, then call [`Driver::poll`] again.
    Yield,
    /// A login waits for its owner's answer in `conn.claim`: wait for `conn.wake`.
    Claim,
    /// Stop reading: the connection is closing (an error frame may be queued).
    Close,
}

/// Why a read that timed out ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// Nothing arrived for `--idle-timeout`.
    Idle,
    /// A started frame did not complete within `--frame-timeout` (slowloris).
    FrameTimeout,
    /// No successful login within `--login-timeout`.
    LoginTimeout,
    /// The session's token expired (JWT on) and no refresh came.
    TokenExpired,
}

/// One connection's protocol state between reads.
#[derive(Debug)]
pub struct Driver {
    settings: DriverSettings,
    limit: RateLimit,
    login_deadline: Instant,
    /// Bytes read but not yet handled: a partial frame, or frames left by a pause.
    carry: Vec<u8>,
    /// Whether `carry` holds whole frames to handle before the next read.
    carry_has_frames: bool,
    /// When the partial frame in `carry` started to arrive.
    frame_started: Option<Instant>,
    /// A login waiting for its claim.
    claim: Option<Arc<str>>,
    /// Whether the last read was asked for by a logged-in connection.
    logged_in_at_read: bool,
    /// When the session's token expired, as known at the last read.
    expires_at_read: Option<Instant>,
}

impl Driver {
    /// A driver for a connection accepted at `accepted`.
    pub fn new(settings: DriverSettings, accepted: Instant) -> Self {
        let rate = settings.max_messages_per_second;
        Self {
            settings,
            limit: RateLimit {
                bucket: TokenBucket::new(rate, rate, accepted),
                refusing: false,
            },
            login_deadline: accepted + settings.login_timeout,
            carry: Vec::new(),
            carry_has_frames: false,
            frame_started: None,
            claim: None,
            logged_in_at_read: false,
            expires_at_read: None,
        }
    }

    /// Does what can be done without new bytes (a claim's answer, held frames) and
    /// says what the task must do next.
    pub fn poll(&mut self, input: Input<'_>) -> Wants {
        if let Some(player) = self.claim.take() {
            match input.conn.claim.take() {
                Some(ok) => session::finish_login(input.conn, player, ok),
                None if input.conn.out.is_closing() => return Wants::Close,
                None => {
                    self.claim = Some(player);
                    return Wants::Claim;
                }
            }
        }
        if input.conn.out.is_closing() || close_if_expired(input.conn, input.now, input.close_by) {
            return Wants::Close;
        }
        if self.carry_has_frames {
            let carry = std::mem::take(&mut self.carry);
            let used = self.handle_frames(input, &carry);
            self.keep(carry, used);
            return Wants::Yield;
        }
        Wants::Read(self.read_timeout(input.conn, input.now))
    }

    /// `data` arrived at `input.now`: handles its whole frames (up to
    /// [`FRAMES_PER_TURN`]) and keeps the rest.
    pub fn received(&mut self, input: Input<'_>, data: &[u8]) {
        if close_if_expired(input.conn, input.now, input.close_by) {
            // Too late for a refresh in `data`: it arrived after the token expired.
            return;
        }
        self.limit.bucket.refill(input.now);
        if self.carry.is_empty() {
            let used = self.handle_frames(input, data);
            self.carry.extend_from_slice(&data[used..]);
            if used > 0 {
                self.frame_started = None;
            }
        } else {
            let mut carry = std::mem::take(&mut self.carry);
            carry.extend_from_slice(data);
            let used = self.handle_frames(input, &carry);
            self.keep(carry, used);
        }
    }

    /// Why a read asked for by [`Driver::poll`] at an earlier time timed out at `now`.
    pub fn expired(&self, now: Instant) -> Expired {
        if self.expires_at_read.is_some_and(|at| now >= at) {
            Expired::TokenExpired
        } else if self
            .frame_started
            .is_some_and(|at| now >= at + self.settings.frame_timeout)
        {
            Expired::FrameTimeout
        } else if !self.logged_in_at_read && now >= self.login_deadline {
            Expired::LoginTimeout
        } else {
            Expired::Idle
        }
    }

    /// The nearest of: the idle timeout, the started frame's deadline, the login
    /// deadline.
    fn read_timeout(&mut self, conn: &ConnShared, now: Instant) -> Option<Duration> {
        let started = if self.carry.is_empty() {
            None
        } else {
            Some(*self.frame_started.get_or_insert(now))
        };
        self.logged_in_at_read = conn.player.borrow().is_some();
        let mut timeout = self.settings.idle;
        let mut tighten = |until: Instant| {
            let left = until.saturating_duration_since(now).max(MIN_TIMEOUT);
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        };
        if let Some(at) = started {
            tighten(at + self.settings.frame_timeout);
        }
        if !self.logged_in_at_read {
            tighten(self.login_deadline);
        }
        self.expires_at_read = conn.expires.get().filter(|_| self.logged_in_at_read);
        if let Some(at) = self.expires_at_read {
            tighten(at);
        }
        timeout
    }

    /// Keeps what `handle_frames` left of `carry` (the first `used` bytes are done).
    fn keep(&mut self, mut carry: Vec<u8>, used: usize) {
        carry.drain(..used);
        if used > 0 {
            // A frame completed: whatever is left is a new frame's start.
            self.frame_started = None;
        }
        if carry.is_empty() && carry.capacity() > SCRATCH_BYTES {
            carry = Vec::new();
        }
        self.carry = carry;
    }

    /// Handles the whole frames at the start of `data`; returns the bytes used and
    /// records whether whole frames are left for the next poll.
    fn handle_frames(&mut self, input: Input<'_>, data: &[u8]) -> usize {
        let Input {
            shard,
            conn,
            session,
            now,
            close_by,
        } = input;
        let _turn = metrics::Turn::start(now);
        self.carry_has_frames = false;
        let mut at = 0;
        for _ in 0..FRAMES_PER_TURN {
            let range = match frame::next_frame(&data[at..], self.settings.max_frame_bytes) {
                Ok(Some(range)) => range,
                Ok(None) => return at,
                Err(e @ FrameError::TooLarge { .. }) => {
                    close_with(conn, ErrorCode::FrameTooLarge, e.to_string(), close_by);
                    return at;
                }
            };
            let payload = &data[at + range.start..at + range.end];
            at += range.end;
            let request = match decode_request(payload) {
                Ok(request) => request,
                Err(e) => {
                    let message = format!("payload is not a valid ClientMessage: {e}");
                    close_with(conn, ErrorCode::BadRequest, message, close_by);
                    return at;
                }
            };
            if !self.limit.admit(conn, &request) {
                continue;
            }
            match session::handle(shard, conn, session, request, payload) {
                Outcome::Continue => {}
                Outcome::AwaitClaim(player) => {
                    // Whatever follows is handled once the claim is answered.
                    self.claim = Some(player);
                    self.carry_has_frames = true;
                    return at;
                }
                Outcome::Close => {
                    conn.out.close_after(None, close_by);
                    return at;
                }
            }
        }
        self.carry_has_frames = true;
        at
    }
}

/// Closes a logged-in session whose token has expired by `now` (UNAUTHORIZED "token
/// expired"); says whether it did.
pub fn close_if_expired(conn: &ConnShared, now: Instant, close_by: Instant) -> bool {
    let expired = conn.expires.get().is_some_and(|at| now >= at) && conn.player.borrow().is_some();
    if expired && conn.ended_by.get().is_none() {
        conn.ended_by.set(Some(metrics::Disconnect::TokenExpired));
        close_with(
            conn,
            ErrorCode::Unauthorized,
            "token expired".into(),
            close_by,
        );
    }
    expired
}

/// Queues an error frame and closes the connection once it is flushed.
fn close_with(conn: &ConnShared, code: ErrorCode, message: String, close_by: Instant) {
    conn.out
        .close_after(Some(response::error(code, message)), close_by);
}

/// The per-connection request rate limit.
#[derive(Debug)]
struct RateLimit {
    bucket: TokenBucket,
    /// Whether the last request was refused (one RATE_LIMITED error per burst).
    refusing: bool,
}

impl RateLimit {
    /// Whether to handle `request`; a refused request that expects a response gets
    /// that response with RATE_LIMITED, others get one error per burst.
    fn admit(&mut self, conn: &ConnShared, request: &Request<'_>) -> bool {
        if self.bucket.take() {
            self.refusing = false;
            return true;
        }
        let limited = || response::err(ErrorCode::RateLimited, "over --max-messages-per-second");
        match request {
            _ if request.login_view().is_some() => {
                conn.reply(response::login(limited()));
            }
            Request::Message(ClientMessage {
                data: Some(Data::JoinRequest(join)),
            }) => {
                conn.reply(response::join_rejected(&join.room_id, None, limited()));
            }
            Request::Message(ClientMessage {
                data: Some(Data::LeaveRequest(leave)),
            }) => {
                conn.reply(response::leave(&leave.room_id, limited()));
            }
            _ if !self.refusing => {
                let message =
                    "over --max-messages-per-second: messages are dropped until the rate falls";
                conn.reply(response::error(ErrorCode::RateLimited, message));
            }
            _ => {}
        }
        self.refusing = true;
        false
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
