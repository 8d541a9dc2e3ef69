//! The servers the harness can load, behind one codec interface: the worker drives
//! connections and schedules, a [`Codec`] turns "log in", "join", "publish" into bytes
//! and bytes back into [`Event`]s. Every target carries the same body, so latency and
//! order checks are identical across them.
//!
//! Room semantics on each: corecast rooms (join = JoinRequest); Redis channels
//! (join = SUBSCRIBE; a subscribed RESP2 connection cannot PUBLISH, so a Redis sender
//! publishes on a second connection while its subscriber connection receives); NATS
//! subjects (join = SUB; one connection does both). A sender is always a subscribed
//! member too, so it receives its own messages as corecast's sender does.

pub mod corecast;
pub mod nats;
pub mod redis;
pub mod ws;

use anyhow::Result;
use serde::{Deserialize, Serialize};

/// Which server to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// corecast (length-prefixed protobuf; checks the room `seq` too).
    Corecast,
    /// Redis pub/sub over RESP2 (room = channel).
    Redis,
    /// NATS core over its text protocol (room = subject).
    Nats,
}

impl Target {
    /// Whether a sender needs a second connection to publish (Redis).
    pub fn separate_publisher(self) -> bool {
        self == Target::Redis
    }

    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Target::Corecast => "corecast",
            Target::Redis => "redis",
            Target::Nats => "nats",
        }
    }
}

/// How the harness reaches the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Plain TCP (corecast's length-prefixed frames; every target).
    #[default]
    Tcp,
    /// WebSocket (corecast's `--ws-listen`: the upgrade on /ws, then one masked binary
    /// frame per message; corecast only).
    Ws,
}

impl Transport {
    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Ws => "ws",
        }
    }
}

/// Something a connection received.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// The login (corecast) or handshake (PING/PONG) completed.
    LoggedIn,
    /// A join (subscribe) completed, with what corecast's JoinResponse says about
    /// the room's history (empty on Redis and NATS).
    Joined(JoinInfo),
    /// A leave (unsubscribe) completed.
    Left,
    /// A room message, with corecast's room `seq`.
    Delivery {
        /// The room's sequence number (corecast only).
        seq: Option<u64>,
        /// The body as sent.
        body: &'a [u8],
    },
    /// The server refused something or reported an error.
    Rejected(String),
    /// Anything else (notifications, acknowledgements of publishes, pongs).
    Other,
}

/// What a corecast JoinResponse says about the room's history (v1.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinInfo {
    /// The room's epoch (`seq` counts within it).
    pub epoch: String,
    /// The room's latest `seq` at the moment of the join.
    pub last_seq: u64,
    /// A resume found every message after `since_seq`.
    pub recovered: bool,
}

/// Where a reconnecting member resumes a room: after `since_seq` of `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    /// The last `seq` the member saw (replay everything after it).
    pub since_seq: u64,
    /// The epoch that `seq` counts in.
    pub epoch: String,
}

/// One connection's protocol state.
#[derive(Debug)]
pub enum Codec {
    /// corecast.
    Corecast(corecast::CorecastCodec),
    /// Redis.
    Redis(redis::RedisCodec),
    /// NATS.
    Nats(nats::NatsCodec),
}

impl Codec {
    /// The codec for a fresh connection to `target` over `transport` (only corecast
    /// speaks WebSocket; the options refuse `--transport ws` for the others before
    /// anything is built).
    pub fn new(target: Target, transport: Transport) -> Self {
        match target {
            Target::Corecast => Codec::Corecast(corecast::CorecastCodec::new(transport)),
            Target::Redis => Codec::Redis(redis::RedisCodec),
            Target::Nats => Codec::Nats(nats::NatsCodec::default()),
        }
    }

    /// Starts the handshake (answered by [`Event::LoggedIn`]).
    pub fn login(&mut self, out: &mut Vec<u8>, player: &str, token: Option<&str>) {
        match self {
            Codec::Corecast(c) => c.login(out, player, token),
            Codec::Redis(c) => c.login(out),
            Codec::Nats(c) => c.login(out, player, token),
        }
    }

    /// Starts a handshake that takes over `player`'s session if another connection
    /// still holds it (corecast's `replace_existing`; a plain login elsewhere).
    pub fn login_replacing(&mut self, out: &mut Vec<u8>, player: &str, token: Option<&str>) {
        match self {
            Codec::Corecast(c) => c.login_replacing(out, player, token),
            _ => self.login(out, player, token),
        }
    }

    /// Joins `room` asking for every retained message after `from` (corecast's
    /// `since_seq` and `epoch`; a plain join elsewhere).
    pub fn join_resuming(&mut self, out: &mut Vec<u8>, room: &str, from: &ResumePoint) {
        match self {
            Codec::Corecast(c) => c.join_resuming(out, room, from),
            _ => self.join(out, room),
        }
    }

    /// Joins `room` (answered by [`Event::Joined`]).
    pub fn join(&mut self, out: &mut Vec<u8>, room: &str) {
        match self {
            Codec::Corecast(c) => c.join(out, room),
            Codec::Redis(c) => c.join(out, room),
            Codec::Nats(c) => c.join(out, room),
        }
    }

    /// Leaves `room` (answered by [`Event::Left`]).
    pub fn leave(&mut self, out: &mut Vec<u8>, room: &str) {
        match self {
            Codec::Corecast(c) => c.leave(out, room),
            Codec::Redis(c) => c.leave(out, room),
            Codec::Nats(c) => c.leave(out, room),
        }
    }

    /// Something that keeps an idle connection open (corecast Ping, RESP PING, NATS PING).
    pub fn keepalive(&mut self, out: &mut Vec<u8>) {
        match self {
            Codec::Corecast(c) => c.keepalive(out),
            Codec::Redis(_) => redis::command(out, &[b"PING"]),
            Codec::Nats(c) => c.keepalive(out),
        }
    }

    /// Broadcasts `body` to `room`.
    pub fn publish(&mut self, out: &mut Vec<u8>, room: &str, body: &[u8]) {
        match self {
            Codec::Corecast(c) => c.publish(out, room, body),
            Codec::Redis(c) => c.publish(out, room, body),
            Codec::Nats(c) => c.publish(out, room, body),
        }
    }

    /// The next event at the start of `buf` and the bytes it used, or `None` if `buf`
    /// holds no whole message yet. Replies the protocol requires (NATS PONG, a WebSocket
    /// pong) go to `out`.
    pub fn next_event<'a>(
        &mut self,
        buf: &'a [u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<(Event<'a>, usize)>> {
        match self {
            Codec::Corecast(c) => c.next_event(buf, out),
            Codec::Redis(c) => c.next_event(buf),
            Codec::Nats(c) => c.next_event(buf, out),
        }
    }
}
