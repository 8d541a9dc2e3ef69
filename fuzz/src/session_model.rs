//! A socket-free simulation of a whole server's sessions (one or more shards, in one
//! thread), checked against a reference model of PROTOCOL.md. Shared by the `session`
//! fuzz target and `tests/properties.rs` (which includes this file by path), so both
//! check the same rules.
//!
//! [`Sim`] drives the real code the way the server's tasks do: each connection has the
//! server's own protocol [`Driver`] (framing, decoding, the rate limit, `session::handle`,
//! a login's wait for its claim, closing), fed through `Driver::received` and
//! `Driver::poll` as `conn::reader` feeds it, with a clock the simulation controls (it
//! does not advance: a connection has its burst of `--max-messages-per-second` tokens in
//! all). A claim whose owner is another shard is answered once its batches are delivered;
//! batches between shards wait in FIFO channels. After every [`Op`] it drains every queue
//! and compares what each connection received with what [`Model`] says it should have,
//! as sets of [`Event`]s (with every batch delivered first; in racy mode batches are
//! delivered in a fuzzed order and only the model-free rules apply). The model-free
//! rules: every queued frame is a well-formed `ServerMessage`; a connection that never
//! logged in gets no `MessageNotification`; notifications and messages come only for
//! rooms the connection is in; the `seq`s a member sees in a room strictly increase;
//! `decode_request` reads every payload as prost does; a successful JoinResponse has an
//! epoch of 1 to 32 bytes; no login waits for a claim once everything is delivered;
//! and once everyone has disconnected, no connection or player id is left, and no room
//! or retained message once the TTL of the empty rooms kept for their history passes.
//!
//! History (v1.1): the model numbers each creation of a room, and the check binds the
//! server's epochs to those one to one (a room keeps its epoch exactly while it lives or
//! is kept). It predicts each JoinResponse's epoch, `last_seq` and `recovered`, the
//! replay (which retained messages, visible ones only, cut by `history_limit`), in
//! order per room with live traffic (after the JoinResponse, before anything live),
//! what each owner shard retains (`ShardState::retained`: counts, and bytes charged as
//! `Retained::cost` charges the frame `response::message_notification` encodes) and
//! how many rooms it keeps; `replace_existing` closes the old session (SESSION_REPLACED)
//! before the new login succeeds. Clients resume from what they saw ([`Seen`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;

use corecast::config::Secret;
use corecast::conn::driver::{Driver, DriverSettings, Input, Wants};
use corecast::conn::session::{SessionConfig, MAX_EPOCH_BYTES, MAX_ID_BYTES};
use corecast::frame::HEADER_LEN;
use corecast::notify::LocalNotify;
use corecast::proto::{
    client_message::Data as In, login_request::AuthConfig, server_message::Data as Out,
    AuthConfigBearer, ClientMessage, ErrorCode, JoinRequest, LeaveRequest, LoginRequest, Ping,
    RoomConfig, SendMessage, ServerMessage,
};
use corecast::request::{decode_request, LoginView, Request};
use corecast::response;
pub use corecast::shard::history::HistoryLimits;
use corecast::shard::history::Retained;
use corecast::shard::members::ConnShared;
use corecast::shard::messages::Batch;
use corecast::shard::outbound::OutState;
use corecast::shard::routing::{owner_shard, ShardId};
use corecast::shard::{ShardLimits, ShardState};

/// Most connections a simulation keeps registered at once.
pub const MAX_CONNS: usize = 6;

/// The token a server with authentication expects.
pub const TOKEN: &str = "s3cret";

/// Index into [`ids`]; small, so that players and rooms collide often.
pub type IdIndex = u8;

/// The ids requests use: short ones that collide, non-ASCII, and the length limits.
pub fn ids() -> [String; 8] {
    [
        "a".into(),
        "b".into(),
        "c".into(),
        "lobby".into(),
        "é€".into(),
        String::new(),
        "x".repeat(MAX_ID_BYTES),
        "y".repeat(MAX_ID_BYTES + 1),
    ]
}

/// The id at `index` (modulo the pool).
pub fn id(index: IdIndex) -> String {
    let pool = ids();
    pool[usize::from(index) % pool.len()].clone()
}

/// Server settings for one simulation.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--max-room-members`.
    pub max_room_members: u32,
    /// `--max-outbound-bytes`: small values exercise the slow-consumer cut.
    pub max_outbound_bytes: usize,
    /// `--max-frame-bytes`.
    pub max_frame_bytes: usize,
    /// Whether logins must carry [`TOKEN`].
    pub auth: bool,
    /// `--max-rooms-per-connection`.
    pub max_rooms_per_connection: u32,
    /// `--max-targets`.
    pub max_targets: usize,
    /// `--max-messages-per-second` (0: off). The simulated clock does not advance, so a
    /// connection has this many requests in all, as one burst.
    pub max_messages_per_second: u32,
    /// Shards (1 or more); each connection lives on one, rooms and ids are hashed.
    pub shards: usize,
    /// With several shards: deliver cross-shard batches only when an [`Op::Deliver`]
    /// says which, instead of settling after every op; the model is then off.
    pub racy: bool,
    /// `--history-messages`, `--history-bytes`, `--history-shard-bytes` and
    /// `--history-ttl`. The TTL is zero or [`KEPT_TTL`]: the owner reads the real clock,
    /// which no run advances that far, so an empty room with history is kept until an
    /// [`Op::Expire`] (or the teardown) says its TTL is over.
    pub history: HistoryLimits,
}

/// The `--history-ttl` of a simulation that keeps empty rooms: longer than any run.
pub const KEPT_TTL: Duration = Duration::from_secs(3600);

/// `JoinRequest.since_seq`, as a client picks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// This number.
    Seq(u64),
    /// The last `seq` the clients saw in the room (a JoinResponse's `last_seq`, or a
    /// message since), less this many: 0 is an up-to-date resume.
    Back(u64),
}

/// `JoinRequest.epoch`, as a client picks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochPick {
    /// The empty string.
    Empty,
    /// The room's epoch as the clients last saw it in a JoinResponse (empty if never).
    Seen,
    /// The epoch the clients saw before that one (the room's previous creation; empty
    /// if none): a resume from an older epoch.
    Previous,
    /// A well-formed epoch no room has.
    Wrong,
    /// One byte over [`MAX_EPOCH_BYTES`]: BAD_REQUEST.
    TooLong,
}

/// A v1.1 join's history fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinHistory {
    /// `since_seq`.
    pub since: Since,
    /// `epoch`.
    pub epoch: EpochPick,
    /// `history_limit`.
    pub limit: u32,
}

/// What the clients have seen of each room (the epochs its JoinResponses gave, oldest
/// first, and the latest `seq`), from which they pick a resume's `epoch` and `since_seq`.
#[derive(Debug, Default)]
pub struct Seen {
    rooms: BTreeMap<String, SeenRoom>,
}

#[derive(Debug, Default)]
struct SeenRoom {
    epochs: Vec<String>,
    seq: u64,
}

impl Seen {
    fn joined(&mut self, room: &str, epoch: &str, last_seq: u64) {
        let seen = self.rooms.entry(room.to_owned()).or_default();
        if seen.epochs.last().map(String::as_str) != Some(epoch) {
            seen.epochs.push(epoch.to_owned());
        }
        seen.seq = last_seq;
    }

    fn message(&mut self, room: &str, epoch: &str, seq: u64) {
        if let Some(seen) = self.rooms.get_mut(room) {
            if seen.epochs.last().map(String::as_str) == Some(epoch) {
                seen.seq = seen.seq.max(seq);
            }
        }
    }

    fn epoch(&self, room: &str, pick: EpochPick) -> String {
        let epochs = self.rooms.get(room).map_or(&[][..], |r| &r.epochs[..]);
        match pick {
            EpochPick::Empty => String::new(),
            EpochPick::Seen => epochs.last().cloned().unwrap_or_default(),
            EpochPick::Previous => epochs
                .len()
                .checked_sub(2)
                .map(|i| epochs[i].clone())
                .unwrap_or_default(),
            EpochPick::Wrong => "0".repeat(17),
            EpochPick::TooLong => "e".repeat(MAX_EPOCH_BYTES + 1),
        }
    }

    fn since(&self, room: &str, since: Since) -> u64 {
        match since {
            Since::Seq(n) => n,
            Since::Back(n) => self.rooms.get(room).map_or(0, |r| r.seq.saturating_sub(n)),
        }
    }
}

/// Which token a login carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// No `auth_config`.
    Absent,
    /// [`TOKEN`].
    Right,
    /// Something else.
    Wrong,
}

/// One client payload.
#[derive(Debug, Clone)]
pub enum Payload {
    /// `LoginRequest`.
    Login {
        /// The player id.
        player: IdIndex,
        /// The bearer token.
        token: Token,
        /// `replace_existing`.
        replace: bool,
    },
    /// `JoinRequest`.
    Join {
        /// The room id.
        room: IdIndex,
        /// `room_config.max_players`, if a config is sent.
        max_players: Option<u32>,
        /// `since_seq`, `epoch` and `history_limit` (`None`: a v1 join).
        history: Option<JoinHistory>,
    },
    /// `LeaveRequest`.
    Leave {
        /// The room id.
        room: IdIndex,
    },
    /// `SendMessage`.
    Send {
        /// The room id.
        room: IdIndex,
        /// `target_ids`.
        targets: Vec<IdIndex>,
        /// The body.
        body: Vec<u8>,
        /// Appends an unknown varint field to the `SendMessage` (fast path must skip it).
        unknown_field: bool,
    },
    /// `Ping`.
    Ping(u64),
    /// A `ClientMessage` with no `data`.
    Empty,
    /// Any bytes.
    Raw(Vec<u8>),
}

impl Payload {
    /// The payload's bytes, as a client that has seen nothing would send them.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with(&Seen::default())
    }

    /// The payload's bytes, as a client that has `seen` what it has sends them.
    pub fn encode_with(&self, seen: &Seen) -> Vec<u8> {
        let data = match self {
            Payload::Login {
                player,
                token,
                replace,
            } => In::LoginRequest(LoginRequest {
                player_id: id(*player),
                auth_config: match token {
                    Token::Absent => None,
                    Token::Right => Some(AuthConfig::Bearer(AuthConfigBearer {
                        token: TOKEN.into(),
                    })),
                    Token::Wrong => Some(AuthConfig::Bearer(AuthConfigBearer {
                        token: "wrong".into(),
                    })),
                },
                replace_existing: *replace,
            }),
            Payload::Join {
                room,
                max_players,
                history,
            } => {
                let room_id = id(*room);
                let (since_seq, epoch, history_limit) = match history {
                    Some(h) => (
                        seen.since(&room_id, h.since),
                        seen.epoch(&room_id, h.epoch),
                        h.limit,
                    ),
                    None => (0, String::new(), 0),
                };
                In::JoinRequest(JoinRequest {
                    room_id,
                    room_config: max_players.map(|max_players| RoomConfig { max_players }),
                    since_seq,
                    epoch,
                    history_limit,
                })
            }
            Payload::Leave { room } => In::LeaveRequest(LeaveRequest { room_id: id(*room) }),
            Payload::Send {
                room,
                targets,
                body,
                unknown_field,
            } => {
                let send = SendMessage {
                    target_ids: targets.iter().map(|t| id(*t)).collect(),
                    room_id: id(*room),
                    body: Bytes::copy_from_slice(body),
                };
                let mut inner = send.encode_to_vec();
                if *unknown_field {
                    // Field 9, varint 300: unknown to SendMessage, skipped by both decoders.
                    inner.extend_from_slice(&[0x48, 0xac, 0x02]);
                }
                let mut payload = vec![0x22];
                prost::encoding::encode_varint(inner.len() as u64, &mut payload);
                payload.extend_from_slice(&inner);
                return payload;
            }
            Payload::Ping(nonce) => In::Ping(Ping { nonce: *nonce }),
            Payload::Empty => return ClientMessage { data: None }.encode_to_vec(),
            Payload::Raw(bytes) => return bytes.clone(),
        };
        ClientMessage { data: Some(data) }.encode_to_vec()
    }
}

/// One step of a simulation. Connection numbers pick among the registered
/// connections, modulo their count.
#[derive(Debug, Clone)]
pub enum Op {
    /// A new connection (ignored at [`MAX_CONNS`]).
    Connect,
    /// A connection goes away.
    Disconnect(u8),
    /// One read's worth of frames from a connection.
    Input {
        /// Which connection.
        conn: u8,
        /// The payloads, framed back to back.
        payloads: Vec<Payload>,
    },
    /// The oldest batch of one busy channel between shards is handled (racy mode).
    Deliver(u8),
    /// Graceful shutdown begins.
    Shutdown,
    /// `--history-ttl` passes: every shard forgets its empty rooms.
    Expire,
}

/// What a connection observed, normalised for comparison (error messages are for
/// logs, and the order of `current_players` is not part of the protocol).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// `LoginResponse`; `-1` if `error` was absent.
    Login(i32),
    /// `JoinResponse`; players (sorted) and config only on success.
    Join {
        /// `room_id`.
        room: String,
        /// `error.code`, or `-1` if absent.
        code: i32,
        /// `current_players`, sorted.
        players: Vec<String>,
        /// `room_config.max_players`.
        max_players: Option<u32>,
        /// `epoch` (the model's are `#` and the number of the room's creation; a
        /// check maps the server's onto them, one to one).
        epoch: String,
        /// `last_seq`.
        last_seq: u64,
        /// `recovered`.
        recovered: bool,
    },
    /// `JoinNotification`.
    JoinNote {
        /// `room_id`.
        room: String,
        /// `player_id`.
        player: String,
    },
    /// `LeaveResponse`.
    Leave {
        /// `room_id`.
        room: String,
        /// `error.code`, or `-1` if absent.
        code: i32,
    },
    /// `LeaveNotification`.
    LeaveNote {
        /// `room_id`.
        room: String,
        /// `player_id`.
        player: String,
    },
    /// `MessageNotification`.
    Message {
        /// `sender_id`.
        sender: String,
        /// `room_id`.
        room: String,
        /// `body`.
        body: Vec<u8>,
        /// `seq`.
        seq: u64,
    },
    /// `Pong`.
    Pong(u64),
    /// `ServerMessage.error`.
    Error(i32),
}

fn code_of(error: Option<corecast::proto::Error>) -> i32 {
    error.map_or(-1, |e| e.code)
}

impl Event {
    /// A refused join's `JoinResponse`: no members, config or position.
    fn join_refused(room: String, code: i32) -> Event {
        Event::Join {
            room,
            code,
            players: Vec::new(),
            max_players: None,
            epoch: String::new(),
            last_seq: 0,
            recovered: false,
        }
    }

    /// The room of an event the room's owner orders for a connection: a successful
    /// join or leave, a notification, a message. A connection receives those of one
    /// room in the order the model says, whatever the other rooms do.
    fn ordered_room(&self) -> Option<&str> {
        let none = ErrorCode::None as i32;
        match self {
            Event::Join { room, code, .. } | Event::Leave { room, code } if *code == none => {
                Some(room)
            }
            Event::JoinNote { room, .. }
            | Event::LeaveNote { room, .. }
            | Event::Message { room, .. } => Some(room),
            _ => None,
        }
    }

    /// Decodes one queued frame; panics on anything that is not a whole, valid
    /// `ServerMessage` with `data` set.
    pub fn from_frame(bytes: &[u8]) -> Event {
        let (header, payload) = bytes.split_at(HEADER_LEN);
        let len = u32::from_be_bytes(header.try_into().expect("4-byte header")) as usize;
        assert_eq!(len, payload.len(), "length prefix matches the payload");
        let msg = ServerMessage::decode(payload).expect("a queued frame is a ServerMessage");
        match msg.data.expect("every ServerMessage has data") {
            Out::LoginResponse(r) => Event::Login(code_of(r.error)),
            Out::JoinResponse(r) => {
                let code = code_of(r.error);
                let ok = code == ErrorCode::None as i32;
                let mut players = if ok { r.current_players } else { Vec::new() };
                players.sort();
                Event::Join {
                    room: r.room_id,
                    code,
                    players,
                    max_players: if ok {
                        r.room_config.map(|c| c.max_players)
                    } else {
                        None
                    },
                    epoch: r.epoch,
                    last_seq: r.last_seq,
                    recovered: r.recovered,
                }
            }
            Out::JoinNotification(n) => Event::JoinNote {
                room: n.room_id,
                player: n.player_id,
            },
            Out::LeaveResponse(r) => Event::Leave {
                room: r.room_id,
                code: code_of(r.error),
            },
            Out::LeaveNotification(n) => Event::LeaveNote {
                room: n.room_id,
                player: n.player_id,
            },
            Out::MessageNotification(m) => Event::Message {
                sender: m.sender_id,
                room: m.room_id,
                body: m.body.to_vec(),
                seq: m.seq,
            },
            Out::Pong(p) => Event::Pong(p.nonce),
            Out::Error(e) => Event::Error(e.code),
        }
    }
}

/// The reference model's view of a room. It exists while it has members, or, empty,
/// while it is kept for its history (history on, a TTL, a message numbered).
#[derive(Debug)]
struct ModelRoom {
    max_players: u32,
    /// Player id -> connection number.
    members: BTreeMap<String, usize>,
    seq: u64,
    /// Which creation of the room this is (its epoch: a new one each time).
    creation: usize,
    /// Retained messages, oldest first.
    history: VecDeque<Kept>,
}

/// A retained message.
#[derive(Debug)]
struct Kept {
    seq: u64,
    sender: String,
    body: Vec<u8>,
    /// A targeted message's sender and named targets; `None` for a broadcast.
    audience: Option<Vec<String>>,
    /// What the server charges it against the byte bounds, as `Retained::cost`
    /// computes it for the frame `response::message_notification` encodes.
    cost: usize,
}

impl Kept {
    fn visible_to(&self, player: &str) -> bool {
        self.audience
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|id| id == player))
    }

    fn event(&self, room: &str) -> Event {
        Event::Message {
            sender: self.sender.clone(),
            room: room.to_owned(),
            body: self.body.clone(),
            seq: self.seq,
        }
    }
}

/// The reference model: PROTOCOL.md's rules over plain maps, synchronous, no I/O.
#[derive(Debug)]
pub struct Model {
    /// `--history-*`.
    history: HistoryLimits,
    /// Shards (rooms are owned by `owner_shard`).
    shards: usize,
    /// Room creations so far (each one a new epoch).
    creations: usize,
    /// Per owner shard, the (room, creation, seq) of messages in the order they were
    /// retained: past `--history-shard-bytes` the shard's oldest go first.
    retention: Vec<VecDeque<(String, usize, u64)>>,
    /// The server's epoch strings <-> the model's room creations, as observed.
    epochs: BTreeMap<String, usize>,
    creation_epochs: BTreeMap<usize, String>,
    /// Logged-in player -> connection number.
    players: BTreeMap<String, usize>,
    rooms: BTreeMap<String, ModelRoom>,
    /// Per connection number: its player, rooms (join order), whether output is closed.
    conns: BTreeMap<usize, ModelConn>,
    shutting_down: bool,
    /// What each connection should receive during the current op.
    expected: BTreeMap<usize, Vec<Event>>,
    /// Connections that closed during the current op on a server of several shards:
    /// answers from other shards to their earlier requests may arrive after the close
    /// and be dropped, so they get a subset of `expected`.
    closed_early: BTreeSet<usize>,
}

#[derive(Debug, Default)]
struct ModelConn {
    /// The shard that accepted it.
    shard: ShardId,
    player: Option<String>,
    rooms: Vec<String>,
    /// `--max-rooms-per-connection` slots still held by answers on their way back from
    /// another shard (a refused join, a leave): the server frees them on arrival.
    held_slots: u32,
    closed: bool,
    /// Requests it may still make (`None`: no rate limit). The clock is frozen, so the
    /// bucket holds the burst it started with, less what was taken.
    tokens: Option<u32>,
    /// Whether its last request was refused by the rate limit (one RATE_LIMITED error
    /// per run of refusals).
    refusing: bool,
}

/// What the model says the connection does after a payload.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

impl Model {
    fn new(settings: &Settings) -> Self {
        let shards = settings.shards.max(1);
        Model {
            history: settings.history,
            shards,
            creations: 0,
            retention: vec![VecDeque::new(); shards],
            epochs: BTreeMap::new(),
            creation_epochs: BTreeMap::new(),
            players: BTreeMap::new(),
            rooms: BTreeMap::new(),
            conns: BTreeMap::new(),
            shutting_down: false,
            expected: BTreeMap::new(),
            closed_early: BTreeSet::new(),
        }
    }

    fn owner(&self, room: &str) -> ShardId {
        owner_shard(room, self.shards)
    }

    /// Messages and bytes retained by the rooms `shard` owns.
    fn retained(&self, shard: ShardId) -> (usize, usize) {
        self.rooms
            .iter()
            .filter(|(id, _)| self.owner(id) == shard)
            .flat_map(|(_, r)| &r.history)
            .fold((0, 0), |(n, bytes), k| (n + 1, bytes + k.cost))
    }

    /// Rooms `shard` owns (kept empty ones included).
    fn owned_rooms(&self, shard: ShardId) -> usize {
        self.rooms
            .keys()
            .filter(|id| self.owner(id) == shard)
            .count()
    }

    /// The TTL of every empty room is over.
    fn expire(&mut self) {
        self.rooms.retain(|_, r| !r.members.is_empty());
    }

    /// The server's `epoch` `real` was seen where the model says creation `placeholder`
    /// (`#n`): each epoch is one creation of one room and each creation one epoch.
    fn bind_epoch(&mut self, real: &str, placeholder: &str) {
        let creation: usize = placeholder[1..].parse().expect("a model epoch");
        let known = self.epochs.get(real).copied();
        let bound = self.creation_epochs.get(&creation).cloned();
        match (known, &bound) {
            (None, None) => {
                self.epochs.insert(real.to_owned(), creation);
                self.creation_epochs.insert(creation, real.to_owned());
            }
            (Some(k), Some(b)) if k == creation && b.as_str() == real => {}
            _ => panic!(
                "epoch {real:?} (seen for creation {known:?}) where the model has creation \
                 {creation} (seen as {bound:?}): a room kept its epoch across a re-creation, \
                 or changed it while it lived"
            ),
        }
    }

    /// Whether a request's `epoch` is the current one of `room`.
    fn is_epoch_of(&self, epoch: &str, room: &ModelRoom) -> bool {
        self.epochs.get(epoch) == Some(&room.creation)
    }

    fn tell(&mut self, conn: usize, event: Event) {
        if !self.conns[&conn].closed {
            self.expected.entry(conn).or_default().push(event);
        }
    }

    fn hold_slot(&mut self, conn: usize) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.held_slots += 1;
        }
    }

    /// Every answer has arrived: held slots are free again.
    fn settled(&mut self) {
        for c in self.conns.values_mut() {
            c.held_slots = 0;
        }
    }

    fn close(&mut self, conn: usize) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.closed = true;
        }
    }

    fn connect(&mut self, conn: usize, shard: ShardId, settings: &Settings) {
        let rate = settings.max_messages_per_second;
        let state = ModelConn {
            shard,
            tokens: (rate > 0).then_some(rate),
            ..ModelConn::default()
        };
        self.conns.insert(conn, state);
        if self.shutting_down {
            self.tell(conn, Event::Error(ErrorCode::ServerShuttingDown as i32));
            self.close(conn);
        }
    }

    fn shutdown(&mut self) {
        self.shutting_down = true;
        let conns: Vec<usize> = self.conns.keys().copied().collect();
        for conn in conns {
            self.tell(conn, Event::Error(ErrorCode::ServerShuttingDown as i32));
            self.close(conn);
        }
    }

    fn disconnect(&mut self, conn: usize) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let Some(player) = c.player else {
            return;
        };
        for room in c.rooms {
            self.remove_member(&room, &player);
        }
        self.players.remove(&player);
    }

    fn remove_member(&mut self, room_id: &str, player: &str) {
        let keeps = self.history.enabled() && !self.history.ttl.is_zero();
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        room.members.remove(player);
        if room.members.is_empty() {
            // Kept for its history only if it numbered a message; else forgotten (its
            // next creation is a new epoch).
            if !(keeps && room.seq > 0) {
                self.rooms.remove(room_id);
            }
            return;
        }
        let others: Vec<usize> = room.members.values().copied().collect();
        for other in others {
            let note = Event::LeaveNote {
                room: room_id.to_owned(),
                player: player.to_owned(),
            };
            self.tell(other, note);
        }
    }

    /// Applies one framed payload.
    fn payload(&mut self, conn: usize, payload: &[u8], settings: &Settings) -> Flow {
        let flow = self.apply(conn, payload, settings);
        if flow == Flow::Close && settings.shards > 1 {
            self.closed_early.insert(conn);
        }
        flow
    }

    /// The order: the frame's length, then decoding (neither takes a token), then the
    /// rate limit, then the request itself.
    fn apply(&mut self, conn: usize, payload: &[u8], settings: &Settings) -> Flow {
        if payload.len() > settings.max_frame_bytes {
            self.tell(conn, Event::Error(ErrorCode::FrameTooLarge as i32));
            self.close(conn);
            return Flow::Close;
        }
        let Ok(msg) = ClientMessage::decode(payload) else {
            self.tell(conn, Event::Error(ErrorCode::BadRequest as i32));
            self.close(conn);
            return Flow::Close;
        };
        if !self.admit(conn, &msg) {
            return Flow::Continue;
        }
        let Some(data) = msg.data else {
            self.tell(conn, Event::Error(ErrorCode::BadRequest as i32));
            return Flow::Continue;
        };
        let player = self.conns[&conn].player.clone();
        let valid = |id: &str| !id.is_empty() && id.len() <= MAX_ID_BYTES;
        match data {
            In::Ping(ping) => self.tell(conn, Event::Pong(ping.nonce)),
            In::LoginRequest(login) => return self.login(conn, login, settings),
            In::JoinRequest(_) | In::LeaveRequest(_) | In::SendMessage(_) if player.is_none() => {
                self.tell(conn, Event::Error(ErrorCode::FailedPrecondition as i32));
            }
            In::JoinRequest(join) => {
                let player = player.expect("checked above");
                let room_id = join.room_id;
                let requested = join.room_config.map(|c| c.max_players);
                let c = &self.conns[&conn];
                let slots = c.rooms.len() as u64 + u64::from(c.held_slots);
                let remote = owner_shard(&room_id, settings.shards.max(1)) != c.shard;
                let replay = Replay {
                    since: join.since_seq,
                    epoch: join.epoch,
                    limit: join.history_limit,
                };
                // The session's order: the room id, the connection's slots, the epoch.
                let code = if !valid(&room_id) {
                    ErrorCode::BadRequest
                } else if slots >= u64::from(settings.max_rooms_per_connection) {
                    ErrorCode::FailedPrecondition
                } else if replay.epoch.len() > MAX_EPOCH_BYTES {
                    ErrorCode::BadRequest
                } else {
                    let code = self.join(conn, &player, &room_id, requested, &replay, settings);
                    if code != ErrorCode::None && remote {
                        self.hold_slot(conn);
                    }
                    code
                };
                if code != ErrorCode::None {
                    self.tell(conn, Event::join_refused(room_id, code as i32));
                }
            }
            In::LeaveRequest(leave) => {
                let player = player.expect("checked above");
                let room_id = leave.room_id;
                let member = self
                    .rooms
                    .get(&room_id)
                    .is_some_and(|r| r.members.get(&player) == Some(&conn));
                let code = if !valid(&room_id) {
                    ErrorCode::BadRequest
                } else if !member {
                    ErrorCode::NotInRoom
                } else {
                    ErrorCode::None
                };
                let event = Event::Leave {
                    room: room_id.clone(),
                    code: code as i32,
                };
                self.tell(conn, event);
                if code == ErrorCode::None {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.rooms.retain(|r| *r != room_id);
                        if owner_shard(&room_id, settings.shards.max(1)) != c.shard {
                            c.held_slots += 1;
                        }
                    }
                    self.remove_member(&room_id, &player);
                }
            }
            In::SendMessage(send) => {
                let player = player.expect("checked above");
                self.send(conn, &player, send, settings);
            }
        }
        Flow::Continue
    }

    /// The token bucket: each request takes a token. One refused for want of a token
    /// is answered in kind if it expects an answer (a login, a join with its `room_id`, a
    /// leave with its `room_id`, all RATE_LIMITED); anything else gets one RATE_LIMITED
    /// error for a run of refusals (any refusal continues the run, an admitted request
    /// ends it).
    fn admit(&mut self, conn: usize, msg: &ClientMessage) -> bool {
        let c = self.conns.get_mut(&conn).expect("a connected connection");
        let Some(tokens) = &mut c.tokens else {
            return true;
        };
        if *tokens > 0 {
            *tokens -= 1;
            c.refusing = false;
            return true;
        }
        let first = !std::mem::replace(&mut c.refusing, true);
        let limited = ErrorCode::RateLimited as i32;
        let answer = match &msg.data {
            Some(In::LoginRequest(_)) => Some(Event::Login(limited)),
            Some(In::JoinRequest(join)) => Some(Event::join_refused(join.room_id.clone(), limited)),
            Some(In::LeaveRequest(leave)) => Some(Event::Leave {
                room: leave.room_id.clone(),
                code: limited,
            }),
            _ => first.then_some(Event::Error(limited)),
        };
        if let Some(event) = answer {
            self.tell(conn, event);
        }
        false
    }

    fn login(&mut self, conn: usize, login: LoginRequest, settings: &Settings) -> Flow {
        let player = login.player_id;
        let token_ok = !settings.auth
            || matches!(&login.auth_config, Some(AuthConfig::Bearer(b)) if b.token == TOKEN);
        // The server's order: a second login on the connection, then the token (without
        // it nothing else matters), then the id, then whether the id is taken.
        let code = if self.conns[&conn].player.is_some() {
            ErrorCode::AlreadyLoggedIn
        } else if !token_ok {
            ErrorCode::Unauthorized
        } else if player.is_empty() || player.len() > MAX_ID_BYTES {
            ErrorCode::BadRequest
        } else if let Some(&old) = self.players.get(&player) {
            if login.replace_existing {
                // The old session gets SESSION_REPLACED (unless it is closing anyway)
                // and is closed, a leave from every room; then this login succeeds.
                if !self.conns[&old].closed {
                    self.tell(old, Event::Error(ErrorCode::SessionReplaced as i32));
                    self.close(old);
                }
                self.disconnect(old);
                ErrorCode::None
            } else {
                ErrorCode::AlreadyLoggedIn
            }
        } else {
            ErrorCode::None
        };
        self.tell(conn, Event::Login(code as i32));
        match code {
            ErrorCode::None => {
                self.players.insert(player.clone(), conn);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.player = Some(player);
                }
            }
            ErrorCode::Unauthorized => {
                self.close(conn);
                return Flow::Close;
            }
            _ => {}
        }
        Flow::Continue
    }

    /// A join by a logged-in player with a valid room id; queues the success events
    /// (the JoinResponse, then the replay) and returns the code (NONE on success).
    fn join(
        &mut self,
        conn: usize,
        player: &str,
        room_id: &str,
        requested: Option<u32>,
        replay: &Replay,
        settings: &Settings,
    ) -> ErrorCode {
        let fresh = !self.rooms.contains_key(room_id);
        if fresh {
            self.creations += 1;
        }
        let creation = self.creations;
        let room = self
            .rooms
            .entry(room_id.to_owned())
            .or_insert_with(|| ModelRoom {
                max_players: requested.unwrap_or(0),
                members: BTreeMap::new(),
                seq: 0,
                creation,
                history: VecDeque::new(),
            });
        if room.members.is_empty() {
            // A kept room is created again with this join's config (same epoch).
            room.max_players = requested.unwrap_or(0);
        }
        let cap = match room.max_players {
            0 => settings.max_room_members,
            own => own.min(settings.max_room_members),
        };
        let code = if room.members.contains_key(player) {
            ErrorCode::AlreadyJoinedTheRoom
        } else if requested.is_some_and(|r| r != room.max_players) {
            ErrorCode::RoomConfigDoesNotMatch
        } else if room.members.len() as u64 >= u64::from(cap) {
            ErrorCode::RoomIsFull
        } else {
            ErrorCode::None
        };
        if code != ErrorCode::None {
            if fresh {
                self.rooms.remove(room_id);
            }
            return code;
        }
        let (recovered, replayed) = self.replay(room_id, player, replay);
        let room = self.rooms.get_mut(room_id).expect("just found");
        let others: Vec<usize> = room.members.values().copied().collect();
        room.members.insert(player.to_owned(), conn);
        let players: Vec<String> = room.members.keys().cloned().collect();
        let max_players = Some(room.max_players);
        let (epoch, last_seq) = (format!("#{}", room.creation), room.seq);
        for other in others {
            let note = Event::JoinNote {
                room: room_id.to_owned(),
                player: player.to_owned(),
            };
            self.tell(other, note);
        }
        let response = Event::Join {
            room: room_id.to_owned(),
            code: ErrorCode::None as i32,
            players,
            max_players,
            epoch,
            last_seq,
            recovered,
        };
        self.tell(conn, response);
        for event in replayed {
            self.tell(conn, event);
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.rooms.push(room_id.to_owned());
        }
        ErrorCode::None
    }

    fn send(&mut self, conn: usize, player: &str, send: SendMessage, settings: &Settings) {
        let room_id = send.room_id;
        if send.target_ids.len() > settings.max_targets
            || room_id.is_empty()
            || room_id.len() > MAX_ID_BYTES
        {
            self.tell(conn, Event::Error(ErrorCode::BadRequest as i32));
            return;
        }
        let room = self
            .rooms
            .get_mut(&room_id)
            .filter(|r| r.members.get(player) == Some(&conn));
        let Some(room) = room else {
            self.tell(conn, Event::Error(ErrorCode::NotInRoom as i32));
            return;
        };
        room.seq += 1;
        let seq = room.seq;
        if self.history.enabled() {
            let audience = (!send.target_ids.is_empty()).then(|| {
                std::iter::once(player.to_owned())
                    .chain(send.target_ids.iter().cloned())
                    .collect::<Vec<String>>()
            });
            let frame = response::message_notification(player, &room_id, &send.body, seq);
            let cost = Retained {
                seq,
                frame,
                audience: audience
                    .as_ref()
                    .map(|ids| ids.iter().map(|id| id.as_str().into()).collect()),
            }
            .cost();
            let kept = Kept {
                seq,
                sender: player.to_owned(),
                body: send.body.to_vec(),
                audience,
                cost,
            };
            self.retain(&room_id, kept);
        }
        let room = self.rooms.get_mut(&room_id).expect("a member's room");
        let recipients: BTreeSet<usize> = if send.target_ids.is_empty() {
            room.members.values().copied().collect()
        } else {
            send.target_ids
                .iter()
                .filter_map(|t| room.members.get(t).copied())
                .collect()
        };
        for to in recipients {
            let event = Event::Message {
                sender: player.to_owned(),
                room: room_id.clone(),
                body: send.body.to_vec(),
                seq,
            };
            self.tell(to, event);
        }
    }
}

/// What a join asks to be replayed (`JoinRequest` fields 3-5).
#[derive(Debug)]
struct Replay {
    since: u64,
    epoch: String,
    limit: u32,
}

impl Model {
    /// Retains `kept` in `room_id`, then evicts the oldest until the room's count and
    /// byte bounds hold, then the oldest of the owner shard's rooms until its bound does.
    fn retain(&mut self, room_id: &str, kept: Kept) {
        let limits = self.history;
        let shard = self.owner(room_id);
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        self.retention[shard].push_back((room_id.to_owned(), room.creation, kept.seq));
        room.history.push_back(kept);
        while room.history.len() > limits.messages
            || room.history.iter().map(|k| k.cost).sum::<usize>() > limits.bytes
        {
            room.history.pop_front();
        }
        while self.retained(shard).1 > limits.shard_bytes {
            let Some((id, creation, seq)) = self.retention[shard].pop_front() else {
                break;
            };
            if let Some(room) = self.rooms.get_mut(&id).filter(|r| r.creation == creation) {
                while room.history.front().is_some_and(|k| k.seq <= seq) {
                    room.history.pop_front();
                }
            }
        }
    }

    /// `recovered` and the replayed messages for `player` joining `room` with `req`.
    /// A resume (`since` > 0 in the room's epoch) gets every retained message after
    /// `since` that the player may see, and is recovered when no message after `since`
    /// is missing from the history; `limit` keeps the last that many (then it is not
    /// recovered). Otherwise the last `limit` visible messages, not recovered.
    fn replay(&self, room_id: &str, player: &str, req: &Replay) -> (bool, Vec<Event>) {
        let limit = req.limit as usize;
        let room = &self.rooms[room_id];
        let visible = room.history.iter().filter(|k| k.visible_to(player));
        if req.since > 0 && self.is_epoch_of(&req.epoch, room) {
            let mut events: Vec<Event> = visible
                .filter(|k| k.seq > req.since)
                .map(|k| k.event(room_id))
                .collect();
            let mut recovered = req.since >= room.seq
                || (req.since + 1..=room.seq).all(|seq| room.history.iter().any(|k| k.seq == seq));
            if limit > 0 && events.len() > limit {
                events.drain(..events.len() - limit);
                recovered = false;
            }
            return (recovered, events);
        }
        let mut events: Vec<Event> = visible
            .rev()
            .take(limit)
            .map(|k| k.event(room_id))
            .collect();
        events.reverse();
        (false, events)
    }
}

/// How long a closing connection may take to flush: `close_by` is the clock plus this.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Most driver polls in a row for one connection: a driver that never asks for a read
/// (or for a claim, or to close) would keep a real shard busy forever.
const MAX_POLLS: usize = 10_000;

/// A registered connection as the simulation tracks it.
struct SimConn {
    /// The connection number the model knows it by.
    number: usize,
    /// The shard that accepted it.
    shard: ShardId,
    conn: Rc<ConnShared>,
    /// The server's protocol driver of this connection.
    driver: Driver,
    /// Whether the driver waits for a login's claim: the reader then neither reads nor
    /// sees the client go until the answer arrives.
    waiting: bool,
    /// Frames the client sent and the reader has not read (they wait in the socket while
    /// the reader waits for a claim), one payload each.
    unread: VecDeque<Vec<u8>>,
    /// Whether it ever completed a login.
    logged_in: bool,
    /// Per room it is in: the epoch its JoinResponse gave, and the last `seq` seen
    /// since it joined.
    last_seq: BTreeMap<String, (String, u64)>,
    /// The player id and `replace_existing` of the last login it sent (what a wait
    /// for a claim is for).
    login: Option<(String, bool)>,
}

/// The real shard code of a whole server driven without sockets or threads, next to
/// the model. Cross-shard batches wait in per-pair FIFO queues, like the flume
/// channels between executors.
pub struct Sim {
    settings: Settings,
    config: SessionConfig,
    /// Every connection's driver settings.
    driver_settings: DriverSettings,
    /// The simulated clock: what every driver is told the time is. It does not advance.
    now: Instant,
    shards: Vec<ShardState>,
    /// Batches in flight, index `from * nr_shards + to`.
    in_flight: Vec<VecDeque<Batch>>,
    conns: Vec<SimConn>,
    next_number: usize,
    /// The reference model; `None` when batches are delivered in a fuzzed order, whose
    /// outcomes only the model-free rules judge.
    model: Option<Model>,
    shutting_down: bool,
    /// What the clients have seen of the rooms (for their resumes).
    seen: Seen,
    /// Connections disconnected while the op ran (sessions replaced): their number and
    /// what they received, checked with the others.
    departed: Vec<(usize, Vec<Event>)>,
}

impl Sim {
    /// A fresh server with `settings`.
    pub fn new(settings: Settings) -> Self {
        let limits = ShardLimits {
            max_room_members: settings.max_room_members,
            max_outbound_bytes: settings.max_outbound_bytes,
            max_shard_outbound_bytes: usize::MAX,
            close_grace: CLOSE_GRACE,
            history: settings.history,
        };
        assert!(
            settings.history.ttl.is_zero() || settings.history.ttl >= KEPT_TTL,
            "a TTL the real clock could reach within a run"
        );
        let config = SessionConfig {
            auth_token: settings.auth.then(|| Secret::new(TOKEN)),
            jwt: None,
            max_rooms_per_connection: settings.max_rooms_per_connection,
            max_targets: settings.max_targets,
        };
        // The server's defaults for the deadlines, which a frozen clock never reaches.
        let driver_settings = DriverSettings {
            max_frame_bytes: settings.max_frame_bytes,
            max_messages_per_second: settings.max_messages_per_second,
            idle: Some(Duration::from_secs(60)),
            frame_timeout: Duration::from_secs(10),
            login_timeout: Duration::from_secs(10),
        };
        let nr_shards = settings.shards.max(1);
        let shards = (0..nr_shards)
            .map(|id| {
                let flush = Rc::new(LocalNotify::default());
                ShardState::new(id, nr_shards, limits.clone(), flush)
            })
            .collect();
        Self {
            shards,
            in_flight: (0..nr_shards * nr_shards)
                .map(|_| VecDeque::new())
                .collect(),
            model: (!settings.racy || nr_shards == 1).then(|| Model::new(&settings)),
            settings,
            config,
            driver_settings,
            now: Instant::now(),
            conns: Vec::new(),
            next_number: 0,
            shutting_down: false,
            seen: Seen::default(),
            departed: Vec::new(),
        }
    }

    /// Runs `ops` in order, checking every connection's output after each, then
    /// disconnects everyone and checks that nothing was left behind.
    pub fn run(&mut self, ops: &[Op]) {
        for op in ops {
            self.step(op);
        }
        self.teardown();
    }

    /// Applies one op, then checks what every connection received.
    pub fn step(&mut self, op: &Op) {
        match op {
            Op::Connect => self.connect(),
            Op::Disconnect(pick) => {
                if !self.conns.is_empty() {
                    let at = usize::from(*pick) % self.conns.len();
                    // A reader waiting for a claim is not reading: it cannot see EOF.
                    if !self.conns[at].waiting {
                        self.disconnect(at);
                    }
                }
            }
            Op::Input { conn, payloads } => {
                if self.conns.is_empty() {
                    // A connection first, checked on its own (during shutdown it is
                    // closed at once, and disconnected below).
                    self.connect();
                    self.check();
                }
                let at = usize::from(*conn) % self.conns.len();
                let seen = &self.seen;
                let frames: Vec<Vec<u8>> = payloads.iter().map(|p| framed_with(p, seen)).collect();
                if self.conns[at].waiting {
                    self.conns[at].unread.extend(frames);
                } else {
                    match self.poll(at) {
                        // The reader ends once output is closed.
                        Wants::Close => {
                            self.disconnect(at);
                        }
                        wants => {
                            self.conns[at].unread.extend(frames);
                            self.read(at, wants);
                        }
                    }
                }
            }
            Op::Deliver(pick) => {
                let busy: Vec<usize> = (0..self.in_flight.len())
                    .filter(|&pair| !self.in_flight[pair].is_empty())
                    .collect();
                if !busy.is_empty() {
                    self.deliver(busy[usize::from(*pick) % busy.len()]);
                }
            }
            Op::Expire => {
                let ttl = self.settings.history.ttl;
                for shard in &mut self.shards {
                    shard.expire_rooms(Instant::now() + ttl);
                }
                if let Some(model) = &mut self.model {
                    model.expire();
                }
            }
            Op::Shutdown => {
                self.shutting_down = true;
                for shard in &mut self.shards {
                    shard.begin_shutdown(self.now + CLOSE_GRACE);
                }
                if let Some(model) = &mut self.model {
                    model.shutdown();
                }
            }
        }
        if self.model.is_some() {
            self.settle();
        } else {
            self.collect();
            self.resume();
        }
        self.check();
    }

    fn connect(&mut self) {
        if self.conns.len() >= MAX_CONNS {
            return;
        }
        let number = self.next_number;
        self.next_number += 1;
        let shard = number % self.shards.len();
        let conn = self.shards[shard].register();
        if let Some(model) = &mut self.model {
            model.connect(number, shard, &self.settings);
        }
        self.conns.push(SimConn {
            number,
            shard,
            conn,
            driver: Driver::new(self.driver_settings, self.now),
            waiting: false,
            unread: VecDeque::new(),
            logged_in: false,
            last_seq: BTreeMap::new(),
            login: None,
        });
    }

    /// Connection `at` goes away; returns what was still queued for it.
    fn disconnect(&mut self, at: usize) -> Vec<Event> {
        let gone = self.conns.remove(at);
        self.shards[gone.shard].disconnect(gone.conn.id);
        if let Some(model) = &mut self.model {
            model.disconnect(gone.number);
        }
        self.collect();
        // Whatever is still queued goes to a socket the client is done with (the echo
        // of its last messages, say): it must only be well-formed. That it is never
        // its own LeaveNotification is checked against the real server
        // (tests/adversarial.rs, a_leaving_connection_is_not_told_of_its_own_leave).
        drain(&gone.conn)
            .iter()
            .map(|f| Event::from_frame(f))
            .collect()
    }

    /// Moves every shard's outbox into the channels, as the flushers do.
    fn collect(&mut self) {
        let nr_shards = self.shards.len();
        for (from, shard) in self.shards.iter_mut().enumerate() {
            for (to, batch) in shard.take_outbox() {
                assert_ne!(from, to, "a shard handles its own messages in place");
                self.in_flight[from * nr_shards + to].push_back(batch);
            }
        }
    }

    /// Hands the oldest batch of one channel to its shard.
    fn deliver(&mut self, pair: usize) {
        let to = pair % self.shards.len();
        if let Some(batch) = self.in_flight[pair].pop_front() {
            // Only shard-to-shard messages: the simulation sends no control messages.
            let _ = self.shards[to].handle_batch(batch);
        }
        self.collect();
        self.resume();
    }

    /// Delivers every batch in flight, and whatever they cause, in channel order.
    fn settle(&mut self) {
        self.collect();
        self.resume();
        for _ in 0..100_000 {
            let Some(pair) = self.in_flight.iter().position(|q| !q.is_empty()) else {
                return;
            };
            self.deliver(pair);
        }
        panic!("messages between shards never settle");
    }

    /// Readers waiting for a claim poll their driver (as `reader::read_frames` does when
    /// woken) and go on reading once it is answered; what they send is collected. A
    /// reader that ends (its connection closed meanwhile, or cut by the login's answer)
    /// is disconnected at the connection's next op, like any other.
    ///
    /// Until nothing more happens: what a reader reads may replace a session (cut at
    /// once when its owner is local), whose end may answer another login.
    fn resume(&mut self) {
        for _ in 0..MAX_POLLS {
            self.end_replaced();
            for at in 0..self.conns.len() {
                if self.conns[at].waiting {
                    let wants = self.poll(at);
                    self.read(at, wants);
                }
            }
            self.collect();
            let answered = self
                .conns
                .iter()
                .any(|c| c.waiting && (c.conn.claim.get().is_some() || c.conn.out.is_closing()));
            if !answered && self.next_gone().is_none() {
                return;
            }
        }
        panic!("readers waiting for claims never settle");
    }

    /// Sessions a replacing login waits for, once the server closed them, are gone: a
    /// replaced one was cut (its writer's `SHUT_RDWR` wakes its reader, which sees the
    /// end), one closing after an error had its reader stop at once (the simulation
    /// otherwise lets such readers go at their connection's next op).
    fn end_replaced(&mut self) {
        while let Some(at) = self.next_gone() {
            let number = self.conns[at].number;
            let events = self.disconnect(at);
            self.departed.push((number, events));
        }
    }

    /// A connection [`Sim::end_replaced`] ends.
    fn next_gone(&self) -> Option<usize> {
        {
            let wanted: Vec<String> = self
                .conns
                .iter()
                .filter(|c| c.waiting)
                .filter_map(|c| c.login.as_ref().filter(|(_, replace)| *replace))
                .map(|(player, _)| player.clone())
                .collect();
            self.conns.iter().position(|c| {
                !c.waiting
                    && (c.conn.ended_by.get()
                        == Some(corecast::metrics::Disconnect::SessionReplaced)
                        || (c.conn.out.is_closing()
                            && c.conn
                                .player
                                .borrow()
                                .as_deref()
                                .is_some_and(|p| wanted.iter().any(|w| w == p))))
            })
        }
    }

    /// The driver's answer to a poll of connection `at` now.
    fn poll(&mut self, at: usize) -> Wants {
        let Self {
            conns,
            shards,
            config,
            now,
            ..
        } = self;
        let sim = &mut conns[at];
        let input = input(&mut shards[sim.shard], &sim.conn, config, *now);
        sim.driver.poll(input)
    }

    /// The reader's loop (`reader::read_frames`) from a poll's answer `wants`: whenever
    /// the driver asks for a read, the next unread frame arrives, one payload per read
    /// (so that the model judges each), until the driver waits for a claim or closes, or
    /// nothing is left to read.
    fn read(&mut self, at: usize, mut wants: Wants) {
        for _ in 0..MAX_POLLS {
            match wants {
                Wants::Yield => {}
                Wants::Claim => {
                    let replacing = self.conns[at].login.as_ref().is_some_and(|l| l.1);
                    assert!(
                        self.shards.len() > 1 || replacing,
                        "a local claim is answered at once (unless it replaces a session)"
                    );
                    self.conns[at].waiting = true;
                    return;
                }
                Wants::Close => {
                    // The reader is done: what the client sent after is never read.
                    let sim = &mut self.conns[at];
                    sim.waiting = false;
                    sim.unread.clear();
                    return;
                }
                Wants::Read(_) => {
                    self.conns[at].waiting = false;
                    let Some(frame) = self.conns[at].unread.pop_front() else {
                        return;
                    };
                    self.received(at, &frame);
                }
            }
            wants = self.poll(at);
        }
        panic!(
            "conn {}: the driver never asks for a read",
            self.conns[at].number
        );
    }

    /// One read of `frame` (one whole framed payload) by connection `at`, and the
    /// model's verdict on its payload: whether the connection closes on it.
    fn received(&mut self, at: usize, frame: &[u8]) {
        let payload = &frame[HEADER_LEN..];
        check_decoder(payload);
        if let Ok(ClientMessage {
            data: Some(In::LoginRequest(login)),
        }) = ClientMessage::decode(payload)
        {
            self.conns[at].login = Some((login.player_id, login.replace_existing));
        }
        let Self {
            conns,
            shards,
            config,
            now,
            model,
            settings,
            ..
        } = self;
        let sim = &mut conns[at];
        let input = input(&mut shards[sim.shard], &sim.conn, config, *now);
        sim.driver.received(input, frame);
        let Some(model) = model else {
            return;
        };
        let flow = model.payload(sim.number, payload, settings);
        // A connection cut as a slow consumer (its own echo or answer over the limit)
        // is closed whatever its request was; `check` judges what it received.
        if sim.conn.out.state() != OutState::Cut {
            assert_eq!(
                sim.conn.out.is_closing(),
                flow == Flow::Close,
                "conn {}: whether the connection closes",
                sim.number
            );
        }
    }

    /// Drains every queue and compares it with the model; applies the model-free rules.
    fn check(&mut self) {
        let mut expected = self.model.as_mut().map(|m| std::mem::take(&mut m.expected));
        let closed_early = self
            .model
            .as_mut()
            .map(|m| {
                m.settled();
                std::mem::take(&mut m.closed_early)
            })
            .unwrap_or_default();
        let mut received: Vec<(usize, Vec<Event>, bool)> = Vec::new();
        for sim in &mut self.conns {
            let got: Vec<Event> = drain(&sim.conn)
                .iter()
                .map(|f| Event::from_frame(f))
                .collect();
            observe(sim, &got, &mut self.seen);
            if sim.conn.out.state() == OutState::Cut {
                // A cut drops the backlog (nothing was partly written) for one error.
                let slow = vec![Event::Error(ErrorCode::SlowConsumer as i32)];
                assert!(
                    got.is_empty() || got == slow,
                    "conn {}: a cut queue holds only SLOW_CONSUMER: {got:?}",
                    sim.number
                );
                if let Some(model) = &mut self.model {
                    model.close(sim.number);
                }
                if let Some(expected) = &mut expected {
                    expected.remove(&sim.number);
                }
                continue;
            }
            received.push((sim.number, got, closed_early.contains(&sim.number)));
        }
        // A replaced session's last frame is SESSION_REPLACED: what it was sent in
        // the op before is dropped with its queue, exactly as the model says.
        for (number, got) in std::mem::take(&mut self.departed) {
            received.push((number, got, false));
        }
        let (Some(model), Some(mut expected)) = (&mut self.model, expected) else {
            return;
        };
        for (number, mut got, early) in received {
            let mut want = expected.remove(&number).unwrap_or_default();
            match_epochs(model, &mut got, &want);
            // Per room, the owner's order: the JoinResponse, its replay, then live
            // traffic (a connection closed meanwhile gets a prefix of it).
            let rooms: BTreeSet<&str> = want.iter().filter_map(Event::ordered_room).collect();
            for room in rooms
                .iter()
                .copied()
                .chain(got.iter().filter_map(Event::ordered_room))
            {
                let of_room = |events: &[Event]| -> Vec<Event> {
                    events
                        .iter()
                        .filter(|e| e.ordered_room() == Some(room))
                        .cloned()
                        .collect()
                };
                let (g, w) = (of_room(&got), of_room(&want));
                if early {
                    assert!(
                        w.starts_with(&g),
                        "conn {number} received in room {room:?} {g:?}, not a prefix of {w:?}"
                    );
                } else {
                    assert_eq!(g, w, "conn {number} received in room {room:?}, in order");
                }
            }
            got.sort();
            want.sort();
            if early {
                assert!(
                    is_sub_multiset(&got, &want),
                    "conn {number} received {got:?}, not part of {want:?}"
                );
            } else {
                assert_eq!(got, want, "conn {number} received");
            }
        }
        assert!(
            expected.values().all(Vec::is_empty),
            "events for unknown connections: {expected:?}"
        );
        // What the owners keep: every room (kept empty ones included) and every
        // retained message, counted and measured as the model says.
        for (id, shard) in self.shards.iter().enumerate() {
            assert_eq!(
                shard.retained(),
                model.retained(id),
                "shard {id}: messages and bytes retained"
            );
            assert_eq!(
                shard.owned_rooms(),
                model.owned_rooms(id),
                "shard {id}: rooms owned"
            );
        }
    }

    /// Everyone leaves: once every message is delivered, no connection, room or
    /// player id may be left anywhere, so every id can log in again.
    fn teardown(&mut self) {
        self.settle();
        self.check();
        for sim in &self.conns {
            assert!(
                !sim.waiting,
                "conn {}: its login ({:?}) waits for a claim that never comes",
                sim.number, sim.login
            );
        }
        while !self.conns.is_empty() {
            self.disconnect(0);
            self.settle();
        }
        let ttl = self.settings.history.ttl;
        for (id, shard) in self.shards.iter_mut().enumerate() {
            assert_eq!(
                shard.connection_count(),
                0,
                "shard {id} still has connections"
            );
            // Only empty rooms kept for their history are left, until the TTL passes.
            if let Some(model) = &self.model {
                assert_eq!(
                    shard.owned_rooms(),
                    model.owned_rooms(id),
                    "shard {id}: kept rooms"
                );
                assert_eq!(shard.retained(), model.retained(id), "shard {id}: retained");
            }
            shard.expire_rooms(Instant::now() + ttl);
            assert_eq!(shard.owned_rooms(), 0, "shard {id} still owns rooms");
            assert_eq!(
                shard.retained(),
                (0, 0),
                "shard {id} still retains messages"
            );
        }
        if self.shutting_down {
            return;
        }
        // Valid ids only: the pool's first five, each logged in by a new connection.
        let relogins: Vec<Rc<ConnShared>> = (0..5u8)
            .map(|i| {
                let shard = usize::from(i) % self.shards.len();
                let conn = self.shards[shard].register();
                // A login with the token may be over a tiny `--max-frame-bytes`: these
                // logins check that ids were released, not the frame limit.
                let settings = DriverSettings {
                    max_frame_bytes: 1 << 16,
                    ..self.driver_settings
                };
                let mut driver = Driver::new(settings, self.now);
                let login = framed(&Payload::Login {
                    player: i,
                    token: Token::Right,
                    replace: false,
                });
                let now = self.now;
                driver.received(
                    input(&mut self.shards[shard], &conn, &self.config, now),
                    &login,
                );
                self.settle();
                for _ in 0..MAX_POLLS {
                    match driver.poll(input(&mut self.shards[shard], &conn, &self.config, now)) {
                        Wants::Read(_) => return conn,
                        Wants::Yield => {}
                        wants => panic!("a fresh login, once settled: {wants:?}"),
                    }
                }
                panic!("a fresh login's driver never asks for a read");
            })
            .collect();
        for (i, conn) in relogins.iter().enumerate() {
            let got: Vec<Event> = drain(conn).iter().map(|f| Event::from_frame(f)).collect();
            assert_eq!(
                got,
                [Event::Login(ErrorCode::None as i32)],
                "player id {:?} was released",
                id(i as u8)
            );
        }
    }
}

/// Pairs the successful JoinResponses `got` (the server's epochs) with those the model
/// said (`#` and a room creation), room by room in order, binds each epoch to its
/// creation (one to one, across the whole run) and rewrites `got`'s as the model's.
fn match_epochs(model: &mut Model, got: &mut [Event], want: &[Event]) {
    let none = ErrorCode::None as i32;
    let joins = |events: &[Event]| -> Vec<(String, String)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Join {
                    room, code, epoch, ..
                } if *code == none => Some((room.clone(), epoch.clone())),
                _ => None,
            })
            .collect()
    };
    let wanted = joins(want);
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    for event in got.iter_mut() {
        let Event::Join {
            room, code, epoch, ..
        } = event
        else {
            continue;
        };
        if *code != none {
            continue;
        }
        let nth = used.entry(room.clone()).or_default();
        let Some((_, placeholder)) = wanted.iter().filter(|(r, _)| r == room).nth(*nth) else {
            // Not expected at all: the comparison says so.
            continue;
        };
        *nth += 1;
        model.bind_epoch(epoch, placeholder);
        *epoch = placeholder.clone();
    }
}

/// Whether sorted `part` is a sub-multiset of sorted `whole`.
fn is_sub_multiset(part: &[Event], whole: &[Event]) -> bool {
    let mut whole = whole.iter();
    part.iter().all(|p| whole.any(|w| w == p))
}

/// A payload framed as a client that has seen nothing sends it.
fn framed(payload: &Payload) -> Vec<u8> {
    framed_with(payload, &Seen::default())
}

/// A payload framed as a client that has `seen` what it has sends it.
fn framed_with(payload: &Payload, seen: &Seen) -> Vec<u8> {
    let bytes = payload.encode_with(seen);
    let mut frame = Vec::with_capacity(HEADER_LEN + bytes.len());
    frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    frame.extend_from_slice(&bytes);
    frame
}

/// What one call into a driver works on, at the simulated time `now`.
fn input<'a>(
    shard: &'a mut ShardState,
    conn: &'a ConnShared,
    session: &'a SessionConfig,
    now: Instant,
) -> Input<'a> {
    Input {
        shard,
        conn,
        session,
        now,
        close_by: now + CLOSE_GRACE,
    }
}

/// Model-free rules on what one connection received, in order.
/// What the clients see is remembered in `seen`: a JoinResponse's epoch and `last_seq`,
/// the `seq`s of messages.
fn observe(sim: &mut SimConn, events: &[Event], seen: &mut Seen) {
    let none = ErrorCode::None as i32;
    for event in events {
        match event {
            Event::Login(code) if *code == none => sim.logged_in = true,
            Event::Join {
                room,
                code,
                epoch,
                last_seq,
                ..
            } if *code == none => {
                assert!(
                    !epoch.is_empty() && epoch.len() <= MAX_EPOCH_BYTES,
                    "conn {}: epoch {epoch:?} of room {room:?} is 1 to 32 bytes",
                    sim.number
                );
                let before = sim.last_seq.insert(room.clone(), (epoch.clone(), 0));
                assert_eq!(before, None, "conn {} joined {room:?} twice", sim.number);
                seen.joined(room, epoch, *last_seq);
            }
            Event::Leave { room, code } if *code == none => {
                let before = sim.last_seq.remove(room);
                assert!(
                    before.is_some(),
                    "conn {} left {room:?} unjoined",
                    sim.number
                );
            }
            Event::JoinNote { room, .. } | Event::LeaveNote { room, .. } => assert!(
                sim.last_seq.contains_key(room),
                "conn {} notified about {room:?}, which it is not in",
                sim.number
            ),
            Event::Message { room, seq, .. } => {
                assert!(
                    sim.logged_in,
                    "conn {} never logged in but got a MessageNotification",
                    sim.number
                );
                let (epoch, last) = sim.last_seq.get_mut(room).unwrap_or_else(|| {
                    panic!(
                        "conn {} got a message for {room:?}, which it is not in",
                        sim.number
                    )
                });
                assert!(*seq > *last, "seq {seq} after {last} in room {room:?}");
                *last = *seq;
                seen.message(room, epoch, *seq);
            }
            _ => {}
        }
    }
}

/// Takes every queued frame, as the writer would.
fn drain(conn: &ConnShared) -> Vec<Bytes> {
    let mut frames = Vec::new();
    while let Some(front) = conn.out.front() {
        conn.out.consume(front.len());
        frames.push(front);
    }
    assert_eq!(conn.out.queued_bytes(), 0, "byte count follows the queue");
    frames
}

/// `decode_request` accepts exactly the payloads prost accepts, and reads them as
/// prost does (checked on every payload a connection sends, before its driver reads it).
fn check_decoder(payload: &[u8]) {
    let prost_ok = ClientMessage::decode(payload).is_ok();
    match decode_request(payload) {
        Ok(request) => {
            assert!(prost_ok, "decode_request accepted what prost rejects");
            check_agrees_with_prost(&request, payload);
        }
        Err(_) => assert!(!prost_ok, "decode_request rejected what prost accepts"),
    }
}

/// The fast `SendMessage` and `LoginRequest` views read exactly what prost reads;
/// anything else is prost's own decoding.
pub fn check_agrees_with_prost(request: &Request<'_>, payload: &[u8]) {
    let reference = ClientMessage::decode(payload).expect("decode_request succeeded");
    match request {
        Request::Send(view) => {
            let Some(In::SendMessage(send)) = reference.data else {
                panic!("fast path on a payload prost reads as {reference:?}");
            };
            assert_eq!(view.room_id, send.room_id);
            assert_eq!(view.body, &send.body[..]);
            assert_eq!(view.target_count(), send.target_ids.len());
            assert!(view
                .targets()
                .eq(send.target_ids.iter().map(String::as_str)));
        }
        Request::Login(view) => {
            let Some(In::LoginRequest(login)) = reference.data else {
                panic!("login fast path on a payload prost reads as {reference:?}");
            };
            assert_eq!(*view, LoginView::of(&login));
        }
        Request::Message(msg) => assert_eq!(*msg, reference),
    }
}
