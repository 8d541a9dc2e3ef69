//! Unit tests of the protocol driver, without a socket.

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
        history: crate::shard::history::HistoryLimits::OFF,
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
                jwt: None,
                max_rooms_per_connection: 10,
                max_targets: 10,
            },
            driver: Driver::new(settings, accepted),
            accepted,
        }
    }

    /// The driver and its input at `at`, with a close deadline 1 s later.
    fn at(&mut self, at: Duration) -> (&mut Driver, Input<'_>) {
        let now = self.accepted + at;
        let input = Input {
            shard: &mut self.shard,
            conn: &self.conn,
            session: &self.session,
            now,
            close_by: now + secs(1),
        };
        (&mut self.driver, input)
    }

    fn received(&mut self, at: Duration, data: &[u8]) {
        let (driver, input) = self.at(at);
        driver.received(input, data);
    }

    fn poll(&mut self, at: Duration) -> Wants {
        let (driver, input) = self.at(at);
        driver.poll(input)
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
        ..Default::default()
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
            ..Default::default()
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
