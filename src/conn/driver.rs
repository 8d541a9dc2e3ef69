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
//! - what closes the connection: an oversized or undecodable frame, a bad token.
//!
//! What each request does is [`session`](crate::conn::session)'s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::conn::rate_limit::TokenBucket;
use crate::conn::session::{self, Outcome, SessionConfig};
use crate::metrics;
use crate::shard::members::ConnShared;
use crate::shard::ShardState;
use crate::wire::frame::{self, FrameError};
use crate::wire::proto::{client_message::Data, ClientMessage, ErrorCode};
use crate::wire::request::{decode_request, Request};
use crate::wire::response;

/// Frames handled per call before the task lets other tasks run.
pub const FRAMES_PER_TURN: usize = 256;

/// Carry capacity kept between frames; a larger buffer is freed once empty.
const CARRY_KEPT: usize = 64 * 1024;

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
        if input.conn.out.is_closing() {
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
        if self
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
        timeout
    }

    /// Keeps what `handle_frames` left of `carry` (the first `used` bytes are done).
    fn keep(&mut self, mut carry: Vec<u8>, used: usize) {
        carry.drain(..used);
        if used > 0 {
            // A frame completed: whatever is left is a new frame's start.
            self.frame_started = None;
        }
        if carry.is_empty() && carry.capacity() > CARRY_KEPT {
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
mod tests {
    use super::*;

    use std::rc::Rc;

    use prost::Message;

    use crate::shard::routing::owner_shard;
    use crate::shard::ShardLimits;
    use crate::wire::frame::HEADER_LEN;
    use crate::wire::proto::{
        server_message::Data as Out, JoinRequest, LeaveRequest, LoginRequest, Ping, ServerMessage,
    };

    const ZERO: Duration = Duration::ZERO;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Idle 60 s, a started frame 10 s, login 30 s: three distinct deadlines.
    fn settings(rate: u32) -> DriverSettings {
        DriverSettings {
            max_frame_bytes: 1024,
            max_messages_per_second: rate,
            idle: Some(secs(60)),
            frame_timeout: secs(10),
            login_timeout: secs(30),
        }
    }

    /// One connection's driver and its shard (a one-shard server unless the test builds
    /// another), with a clock the test moves: times are offsets from the accept.
    struct Conn {
        shard: ShardState,
        conn: Rc<ConnShared>,
        session: SessionConfig,
        driver: Driver,
        accepted: Instant,
    }

    fn limits() -> ShardLimits {
        ShardLimits {
            max_room_members: 10,
            max_outbound_bytes: 1 << 20,
            max_shard_outbound_bytes: usize::MAX,
            close_grace: secs(1),
        }
    }

    impl Conn {
        fn new(settings: DriverSettings) -> Self {
            Self::on(ShardState::new(0, 1, limits(), Rc::default()), settings)
        }

        /// A connection on `shard`.
        fn on(mut shard: ShardState, settings: DriverSettings) -> Self {
            let conn = shard.register();
            let accepted = Instant::now();
            Self {
                shard,
                conn,
                session: SessionConfig {
                    auth_token: None,
                    max_rooms_per_connection: 10,
                    max_targets: 10,
                },
                driver: Driver::new(settings, accepted),
                accepted,
            }
        }

        fn received(&mut self, at: Duration, data: &[u8]) {
            let now = self.accepted + at;
            let input = Input {
                shard: &mut self.shard,
                conn: &self.conn,
                session: &self.session,
                now,
                close_by: now + secs(1),
            };
            self.driver.received(input, data);
        }

        fn poll(&mut self, at: Duration) -> Wants {
            let now = self.accepted + at;
            let input = Input {
                shard: &mut self.shard,
                conn: &self.conn,
                session: &self.session,
                now,
                close_by: now + secs(1),
            };
            self.driver.poll(input)
        }

        /// Polls past any `Yield` and returns the read timeout asked for.
        fn read_timeout(&mut self, at: Duration) -> Option<Duration> {
            for _ in 0..10 {
                match self.poll(at) {
                    Wants::Yield => {}
                    Wants::Read(timeout) => return timeout,
                    other => panic!("a read, not {other:?}"),
                }
            }
            panic!("the driver keeps yielding");
        }

        fn expired(&self, at: Duration) -> Expired {
            self.driver.expired(self.accepted + at)
        }

        /// What was queued for the client since the last call, one line per frame.
        fn replies(&self) -> Vec<String> {
            let mut replies = Vec::new();
            while let Some(frame) = self.conn.out.front() {
                self.conn.out.consume(frame.len());
                let msg = ServerMessage::decode(&frame[HEADER_LEN..]).expect("a ServerMessage");
                replies.push(show(msg.data.expect("data set")));
            }
            replies
        }
    }

    fn code(error: Option<crate::wire::proto::Error>) -> &'static str {
        error.map_or("(none)", |e| {
            ErrorCode::try_from(e.code).map_or("?", |c| c.as_str_name())
        })
    }

    /// A server frame in brief (error messages left out).
    fn show(data: Out) -> String {
        match data {
            Out::LoginResponse(r) => format!("login {}", code(r.error)),
            Out::JoinResponse(r) => format!(
                "join {} {} players {:?} config {:?}",
                r.room_id,
                code(r.error),
                r.current_players,
                r.room_config
            ),
            Out::LeaveResponse(r) => format!("leave {} {}", r.room_id, code(r.error)),
            Out::Pong(p) => format!("pong {}", p.nonce),
            Out::Error(e) => format!(
                "error {}",
                ErrorCode::try_from(e.code).map_or("?", |c| c.as_str_name())
            ),
            other => format!("{other:?}"),
        }
    }

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        frame
    }

    fn request(data: Data) -> Vec<u8> {
        framed(&ClientMessage { data: Some(data) }.encode_to_vec())
    }

    fn ping(nonce: u64) -> Vec<u8> {
        request(Data::Ping(Ping { nonce }))
    }

    fn login(player: &str) -> Vec<u8> {
        request(Data::LoginRequest(LoginRequest {
            player_id: player.into(),
            auth_config: None,
        }))
    }

    #[test]
    fn a_frame_split_across_reads_is_handled_once_complete() {
        let mut c = Conn::new(settings(0));
        let first = ping(1);
        let wire = [first.clone(), ping(2)].concat();
        // Part of the first header: nothing to handle, and the frame's deadline is on.
        c.received(ZERO, &wire[..HEADER_LEN - 1]);
        assert!(c.replies().is_empty());
        assert_eq!(c.read_timeout(secs(1)), Some(secs(10)));
        // The first frame and part of the second's payload.
        let cut = first.len() + HEADER_LEN + 1;
        c.received(secs(2), &wire[HEADER_LEN - 1..cut]);
        assert_eq!(c.replies(), ["pong 1"]);
        // The rest: the second frame, handled once.
        c.received(secs(3), &wire[cut..]);
        assert_eq!(c.replies(), ["pong 2"]);
        assert_eq!(
            c.read_timeout(secs(3)),
            Some(secs(27)),
            "no frame started: the login deadline"
        );
        assert!(c.replies().is_empty());
    }

    #[test]
    fn a_timed_out_read_is_named_by_the_deadline_that_passed() {
        // Anonymous, nothing started: the login deadline is the nearest.
        let mut c = Conn::new(settings(0));
        assert_eq!(c.read_timeout(ZERO), Some(secs(30)));
        assert_eq!(c.expired(secs(30)), Expired::LoginTimeout);
        // A frame started 25 s in: the login deadline (30 s) comes before its own (35 s).
        c.received(secs(25), &ping(1)[..2]);
        assert_eq!(c.read_timeout(secs(25)), Some(secs(5)));
        assert_eq!(c.expired(secs(30)), Expired::LoginTimeout);
        assert_eq!(c.expired(secs(35)), Expired::FrameTimeout);

        // Logged in, nothing started: only the idle timeout.
        let mut c = Conn::new(settings(0));
        c.received(secs(1), &login("p"));
        assert_eq!(c.read_timeout(secs(1)), Some(secs(60)));
        assert_eq!(c.replies(), ["login NONE"]);
        assert_eq!(c.expired(secs(61)), Expired::Idle);
        // A started frame: its deadline.
        c.received(secs(2), &ping(1)[..HEADER_LEN + 1]);
        assert_eq!(c.read_timeout(secs(2)), Some(secs(10)));
        assert_eq!(c.expired(secs(12)), Expired::FrameTimeout);
        // Completed, the frame's deadline is off again.
        c.received(secs(3), &ping(1)[HEADER_LEN + 1..]);
        assert_eq!(c.replies(), ["pong 1"]);
        assert_eq!(c.read_timeout(secs(3)), Some(secs(60)));
        assert_eq!(c.expired(secs(63)), Expired::Idle);
    }

    #[test]
    fn more_than_a_turn_of_frames_yields_then_handles_the_rest() {
        let mut c = Conn::new(settings(0));
        let turn = FRAMES_PER_TURN as u64;
        let wire: Vec<u8> = (0..=turn).flat_map(ping).collect();
        c.received(ZERO, &wire);
        let pongs: Vec<String> = (0..turn).map(|n| format!("pong {n}")).collect();
        assert_eq!(c.replies(), pongs);
        assert_eq!(c.poll(ZERO), Wants::Yield);
        assert_eq!(c.replies(), [format!("pong {turn}")]);
        assert!(matches!(c.poll(ZERO), Wants::Read(_)));
        assert!(c.replies().is_empty());
    }

    #[test]
    fn a_login_holds_the_frames_after_it_until_its_claim_is_answered() {
        // Shard 0 of 2, and a player id that shard 1 owns: the claim crosses shards.
        let player = (0..)
            .map(|n| format!("p{n}"))
            .find(|id| owner_shard(id, 2) == 1)
            .expect("some id is shard 1's");
        let mut other = ShardState::new(1, 2, limits(), Rc::default());
        let mut c = Conn::on(ShardState::new(0, 2, limits(), Rc::default()), settings(0));
        c.received(ZERO, &[login(&player), ping(1)].concat());
        assert_eq!(c.poll(ZERO), Wants::Claim);
        assert_eq!(c.poll(ZERO), Wants::Claim, "still unanswered");
        assert!(c.replies().is_empty(), "the ping waits behind the login");
        // The claim to its owner, the answer back.
        for (to, batch) in c.shard.take_outbox() {
            assert_eq!(to, 1);
            other.handle_batch(batch);
        }
        for (to, batch) in other.take_outbox() {
            assert_eq!(to, 0);
            c.shard.handle_batch(batch);
        }
        assert_eq!(c.poll(ZERO), Wants::Yield);
        assert_eq!(c.replies(), ["login NONE", "pong 1"]);
        assert_eq!(c.read_timeout(ZERO), Some(secs(60)), "logged in: idle only");
    }

    #[test]
    fn past_its_burst_a_connection_is_answered_rate_limited() {
        let mut c = Conn::new(settings(2));
        let pings = |nonces: std::ops::Range<u64>| -> Vec<u8> { nonces.flat_map(ping).collect() };
        // A burst of 2: the third request gets the error, the fourth nothing.
        c.received(ZERO, &pings(1..5));
        assert_eq!(c.replies(), ["pong 1", "pong 2", "error RATE_LIMITED"]);
        // Requests that expect an answer get it, RATE_LIMITED, before any session rule
        // (not logged in would be FAILED_PRECONDITION).
        c.received(ZERO, &login("p"));
        let room = "r".to_owned();
        c.received(
            ZERO,
            &request(Data::JoinRequest(JoinRequest {
                room_id: room.clone(),
                room_config: None,
            })),
        );
        c.received(
            ZERO,
            &request(Data::LeaveRequest(LeaveRequest { room_id: room })),
        );
        assert_eq!(
            c.replies(),
            [
                "login RATE_LIMITED",
                "join r RATE_LIMITED players [] config None",
                "leave r RATE_LIMITED",
            ]
        );
        // Still the same run of refusals: no second error.
        c.received(ZERO, &pings(5..6));
        assert!(c.replies().is_empty());
        assert!(c.read_timeout(ZERO).is_some(), "refused, not closed");
        // A second later, 2 tokens again; the run ended, so a new one gets its error.
        c.received(secs(1), &pings(6..9));
        assert_eq!(c.replies(), ["pong 6", "pong 7", "error RATE_LIMITED"]);
        // Out of tokens, an undecodable payload still closes the connection.
        c.received(secs(1), &framed(&[0x22, 0x7f]));
        assert_eq!(c.replies(), ["error BAD_REQUEST"]);
        assert_eq!(c.poll(secs(1)), Wants::Close);

        // And an oversized frame, from its header alone.
        let mut c = Conn::new(settings(1));
        c.received(ZERO, &pings(1..3));
        assert_eq!(c.replies(), ["pong 1", "error RATE_LIMITED"]);
        c.received(ZERO, &2_000u32.to_be_bytes());
        assert_eq!(c.replies(), ["error FRAME_TOO_LARGE"]);
        assert_eq!(c.poll(ZERO), Wants::Close);
    }
}
