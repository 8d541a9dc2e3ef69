//! The owner side of a shard: the rooms and player ids that hash to it. It decides
//! (who may log in, join, leave, send; in which order the room's members hear of it)
//! and tells the member shards through the mesh. It knows no connection, only
//! addresses.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::RandomState;
use bytes::Bytes;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::metrics::{self, Count};
use crate::shard::history::{Delta, HistoryLimits, ReplayRequest, Retained};
use crate::shard::mesh::Mesh;
use crate::shard::messages::{ConnAddr, ConnId, MemberEvent, OwnerRequest, RoomKey, ShardMessage};
use crate::shard::room::Room;
use crate::shard::routing::ShardId;
use crate::wire::proto::{ErrorCode, RoomConfig};
use crate::wire::request::{decode_request, Request, SendView};
use crate::wire::response::{self, RoomPosition};

/// Room keys carry their owner shard in the bits above this.
const ROOM_KEY_SHARD_SHIFT: u32 = 48;

/// The rooms and player ids one shard owns.
#[derive(Debug)]
pub struct Owner {
    /// `--max-room-members`.
    max_room_members: u32,
    rooms: FxHashMap<RoomKey, Room>,
    // Keyed by client-chosen strings: randomly seeded, so colliding keys cannot be
    // precomputed (FxHash stays for server-chosen integer keys).
    room_keys: HashMap<Rc<str>, RoomKey, RandomState>,
    member_rooms: FxHashMap<ConnAddr, SmallVec<[RoomKey; 4]>>,
    players: HashMap<Arc<str>, ConnAddr, RandomState>,
    /// Logins with `replace_existing` waiting for the session they replace to be gone.
    replacing: HashMap<Arc<str>, ConnAddr, RandomState>,
    next_room: u64,
    /// Makes epochs differ between processes (and restarts): random per owner.
    epoch_prefix: u64,
    retention: Retention,
    /// Empty rooms kept for `--history-ttl`, oldest first: (since when, room).
    expiring: VecDeque<(Instant, RoomKey)>,
}

/// The shard-wide side of history: totals, and every retained message in the order
/// it was retained, so that the shard's oldest go first past `--history-shard-bytes`.
#[derive(Debug)]
struct Retention {
    limits: HistoryLimits,
    messages: usize,
    bytes: usize,
    /// (room, seq) of retained messages, oldest first; entries that a room's own
    /// bounds already evicted stay until they reach the front or a compaction.
    order: VecDeque<(RoomKey, u64)>,
}

impl Retention {
    fn removed(&mut self, delta: Delta) {
        self.messages -= delta.evicted;
        self.bytes -= delta.evicted_bytes;
    }
}

impl Owner {
    /// An owner with no rooms and no players.
    pub fn new(max_room_members: u32, history: HistoryLimits) -> Self {
        let prefix =
            RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()));
        Self {
            max_room_members,
            rooms: FxHashMap::default(),
            room_keys: HashMap::default(),
            member_rooms: FxHashMap::default(),
            players: HashMap::default(),
            replacing: HashMap::default(),
            next_room: 0,
            epoch_prefix: prefix,
            retention: Retention {
                limits: history,
                messages: 0,
                bytes: 0,
                order: VecDeque::new(),
            },
            expiring: VecDeque::new(),
        }
    }

    /// Rooms owned (empty ones kept for their history included).
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Messages and bytes retained by this shard's rooms.
    pub fn retained(&self) -> (usize, usize) {
        (self.retention.messages, self.retention.bytes)
    }

    /// Forgets the empty rooms whose `--history-ttl` has run out by `now`.
    pub fn expire(&mut self, now: Instant) {
        let ttl = self.retention.limits.ttl;
        while let Some(&(since, key)) = self.expiring.front() {
            if since + ttl > now {
                break;
            }
            self.expiring.pop_front();
            let expired = self
                .rooms
                .get(&key)
                .is_some_and(|r| r.is_empty() && r.empty_since.is_some_and(|t| t + ttl <= now));
            if expired {
                self.drop_room(key);
            }
        }
    }

    /// Handles one request from a member shard (this one included).
    pub fn handle(&mut self, req: OwnerRequest, mesh: &mut Mesh) {
        match req {
            OwnerRequest::Claim {
                player,
                from,
                replace,
            } => match self.players.get(&player).copied() {
                None => {
                    self.players.insert(player.clone(), from);
                    claimed(mesh, from, player, true);
                }
                Some(old) if replace && old != from => {
                    // Granted when the old session's Release arrives: by then it has
                    // left every room, so this login's joins cannot find it there.
                    if let Some(earlier) = self.replacing.insert(player.clone(), from) {
                        claimed(mesh, earlier, player, false);
                    }
                    mesh.to_member(old, MemberEvent::Replaced { conn: old.conn });
                }
                Some(_) => claimed(mesh, from, player, false),
            },
            OwnerRequest::Release { player, from } => {
                if self.players.get(&player) == Some(&from) {
                    self.players.remove(&player);
                    if let Some(next) = self.replacing.remove(&player) {
                        self.players.insert(player.clone(), next);
                        claimed(mesh, next, player, true);
                    }
                }
            }
            OwnerRequest::Join {
                room_id,
                max_players,
                player,
                from,
                replay,
            } => self.join(room_id, max_players, player, from, &replay, mesh),
            OwnerRequest::Leave {
                room_id,
                player,
                from,
            } => self.leave(&room_id, &player, from, mesh),
            OwnerRequest::Send {
                payload,
                player,
                from,
            } => {
                // The sender's shard decoded this payload already: it cannot fail.
                let request = decode_request(&payload).ok();
                if let Some(view) = request.as_ref().and_then(Request::send_view) {
                    self.send(&view, &player, from, mesh);
                }
            }
            OwnerRequest::Disconnect { player, from } => {
                for key in self.member_rooms.remove(&from).unwrap_or_default() {
                    self.leave_room(key, &player, from, None, mesh);
                }
                mesh.to_member(from, MemberEvent::DisconnectDone { conn: from.conn });
            }
        }
    }

    fn join(
        &mut self,
        room_id: String,
        max_players: Option<u32>,
        player: Arc<str>,
        from: ConnAddr,
        replay: &ReplayRequest,
        mesh: &mut Mesh,
    ) {
        let key = match self.room_keys.get(room_id.as_str()).copied() {
            Some(key) if self.expired(key) => {
                self.drop_room(key);
                self.create_room(&room_id, max_players, mesh)
            }
            Some(key) => key,
            None => self.create_room(&room_id, max_players, mesh),
        };
        let Some(room) = self.rooms.get_mut(&key) else {
            return;
        };
        if room.is_empty() {
            // An empty room kept for its history is created again, with this join's
            // config, and continues its epoch and numbering.
            room.max_players = max_players.unwrap_or(0);
        }
        let config = Some(RoomConfig {
            max_players: room.max_players,
        });
        if let Err((code, message)) = room.check_join(&player, max_players, self.max_room_members) {
            let frame = response::join_rejected(&room_id, config, response::err(code, message));
            if room.is_empty() && room.empty_since.is_none() {
                self.drop_room(key);
            }
            let event = MemberEvent::JoinRejected {
                conn: from.conn,
                frame,
            };
            mesh.to_member(from, event);
            return;
        }
        metrics::count(Count::Join);
        room.empty_since = None;
        let notification = response::join_notification(&room.id, &player);
        let others = room.member_shards();
        let replayed = if replay.wants_replay() {
            room.history
                .replay(&player, replay, &room.epoch, room.last_seq())
        } else {
            Default::default()
        };
        if replayed.resume {
            metrics::count(if replayed.recovered {
                Count::ResumeRecovered
            } else {
                Count::ResumeNotRecovered
            });
        }
        if !replayed.frames.is_empty() {
            metrics::count(Count::Replay);
            metrics::count(Count::Replayed(replayed.frames.len() as u64));
        }
        room.add(player, from);
        let position = RoomPosition {
            epoch: &room.epoch,
            last_seq: room.last_seq(),
            recovered: replayed.recovered,
        };
        let frame = response::join_at(
            &room_id,
            room.player_ids(),
            config,
            response::ok(),
            position,
        );
        self.member_rooms.entry(from).or_default().push(key);
        deliver(mesh, others, key, notification);
        // After the notifications: the joiner is not yet indexed when they arrive.
        // The replay rides with the response: nothing live can come between them.
        let event = MemberEvent::Joined {
            conn: from.conn,
            room: key,
            frame,
            replay: replayed.frames,
        };
        mesh.to_member(from, event);
    }

    fn create_room(&mut self, room_id: &str, max_players: Option<u32>, mesh: &Mesh) -> RoomKey {
        self.next_room += 1;
        let key = ((mesh.id() as u64) << ROOM_KEY_SHARD_SHIFT) | self.next_room;
        // 16 + at most 16 hex digits: within the protocol's 32 bytes, and unique in the
        // process (the key) and across processes and restarts (the random prefix).
        let epoch = format!("{:016x}{key:x}", self.epoch_prefix).into_boxed_str();
        let id: Rc<str> = room_id.into();
        let room = Room::new(
            key,
            id.clone(),
            epoch,
            max_players.unwrap_or(0),
            mesh.nr_shards(),
        );
        self.rooms.insert(key, room);
        self.room_keys.insert(id, key);
        key
    }

    /// Whether room `key` is empty and past its `--history-ttl` (the clock is read
    /// only for an empty room).
    fn expired(&self, key: RoomKey) -> bool {
        let ttl = self.retention.limits.ttl;
        self.rooms
            .get(&key)
            .and_then(|r| r.empty_since)
            .is_some_and(|since| since + ttl <= Instant::now())
    }

    fn leave(&mut self, room_id: &str, player: &str, from: ConnAddr, mesh: &mut Mesh) {
        let key = self.room_keys.get(room_id).copied();
        let member = key
            .and_then(|k| self.rooms.get(&k))
            .and_then(|r| r.member(player));
        let (Some(key), true) = (key, member == Some(from)) else {
            let message = format!("not a member of room {room_id:?}");
            let frame = response::leave(room_id, response::err(ErrorCode::NotInRoom, message));
            reply(mesh, from, frame);
            return;
        };
        if let Some(keys) = self.member_rooms.get_mut(&from) {
            keys.retain(|k| *k != key);
        }
        metrics::count(Count::Leave);
        let frame = response::leave(room_id, response::ok());
        self.leave_room(key, player, from, Some(frame), mesh);
    }

    /// `from` leaves room `key`: its shard unindexes it (and sends it `response`)
    /// before the others' LeaveNotification arrives on the same FIFO channel, so the
    /// leaver is never notified of its own leave. What was sent to the room before
    /// (the echo of its last message) still reaches it.
    fn leave_room(
        &mut self,
        key: RoomKey,
        player: &str,
        from: ConnAddr,
        response: Option<Bytes>,
        mesh: &mut Mesh,
    ) {
        let event = MemberEvent::Left {
            conn: from.conn,
            room: key,
            frame: response,
        };
        mesh.to_member(from, event);
        let Some(room) = self.rooms.get_mut(&key) else {
            return;
        };
        if !room.remove(player, from) {
            return;
        }
        if room.is_empty() {
            if keeps_when_empty(&self.retention.limits, room) {
                let now = Instant::now();
                room.empty_since = Some(now);
                self.expiring.push_back((now, key));
            } else {
                self.drop_room(key);
            }
            return;
        }
        let notification = response::leave_notification(&room.id, player);
        let shards = room.member_shards();
        deliver(mesh, shards, key, notification);
    }

    fn drop_room(&mut self, key: RoomKey) {
        if let Some(mut room) = self.rooms.remove(&key) {
            self.room_keys.remove(&room.id);
            let delta = room.history.clear();
            self.retention.removed(delta);
        }
    }

    /// Retains a message of `key` (history on), then applies the shard-wide bound.
    fn retain(&mut self, key: RoomKey, entry: Retained) {
        let seq = entry.seq;
        let cost = entry.cost();
        let Some(room) = self.rooms.get_mut(&key) else {
            return;
        };
        let delta = room.history.push(entry, &self.retention.limits);
        self.retention.messages += 1;
        self.retention.bytes += cost;
        self.retention.removed(delta);
        self.retention.order.push_back((key, seq));
        while self.retention.bytes > self.retention.limits.shard_bytes {
            let Some((key, seq)) = self.retention.order.pop_front() else {
                break;
            };
            if let Some(room) = self.rooms.get_mut(&key) {
                let delta = room.history.evict_through(seq);
                self.retention.removed(delta);
            }
        }
        // Rooms' own bounds leave stale entries behind: drop them once they are the
        // majority, so the order costs O(1) per message amortized.
        if self.retention.order.len() > 2 * self.retention.messages + 64 {
            let rooms = &self.rooms;
            self.retention.order.retain(|(key, seq)| {
                rooms
                    .get(key)
                    .and_then(|r| r.history.first_seq())
                    .is_some_and(|first| first <= *seq)
            });
        }
    }

    /// A `SendMessage` from `player` at `from`: numbered by the room, encoded once,
    /// and handed to every member shard (or to the targets' shards).
    pub fn send(&mut self, view: &SendView<'_>, player: &str, from: ConnAddr, mesh: &mut Mesh) {
        let key = self.room_keys.get(view.room_id).copied();
        let room = key.and_then(|k| self.rooms.get_mut(&k));
        let Some(room) = room.filter(|r| r.member(player) == Some(from)) else {
            let message = format!("not a member of room {:?}", view.room_id);
            reply(mesh, from, response::error(ErrorCode::NotInRoom, message));
            return;
        };
        metrics::count(Count::MessageIn);
        let key = room.key;
        let seq = room.next_seq();
        // Encoded once; every recipient on every shard shares this allocation, and so
        // does the room's history.
        let frame = response::message_notification(player, &room.id, view.body, seq);
        if view.target_count() == 0 {
            let shards = room.member_shards();
            if self.retention.limits.enabled() {
                let audience = None;
                self.retain(
                    key,
                    Retained {
                        seq,
                        frame: frame.clone(),
                        audience,
                    },
                );
            }
            deliver(mesh, shards, key, frame);
            return;
        }
        if self.retention.limits.enabled() {
            let audience = std::iter::once(player)
                .chain(view.targets())
                .map(|id| room.member_id(id).cloned().unwrap_or_else(|| id.into()))
                .collect();
            let entry = Retained {
                seq,
                frame: frame.clone(),
                audience: Some(audience),
            };
            self.retain(key, entry);
        }
        let Some(room) = self.rooms.get(&key) else {
            return;
        };
        let mut per_shard: SmallVec<[(ShardId, SmallVec<[ConnId; 4]>); 2]> = SmallVec::new();
        for target in view.targets() {
            let Some(addr) = room.member(target) else {
                continue;
            };
            match per_shard.iter_mut().find(|(s, _)| *s == addr.shard) {
                Some((_, conns)) if conns.contains(&addr.conn) => {}
                Some((_, conns)) => conns.push(addr.conn),
                None => per_shard.push((addr.shard, smallvec::smallvec![addr.conn])),
            }
        }
        for (shard, conns) in per_shard {
            let event = MemberEvent::DeliverTo {
                conns,
                frame: frame.clone(),
            };
            mesh.send(shard, ShardMessage::ToMembers(event));
        }
    }
}

fn claimed(mesh: &mut Mesh, to: ConnAddr, player: Arc<str>, ok: bool) {
    let event = MemberEvent::Claimed {
        conn: to.conn,
        player,
        ok,
    };
    mesh.to_member(to, event);
}

fn reply(mesh: &mut Mesh, to: ConnAddr, frame: Bytes) {
    let event = MemberEvent::Reply {
        conn: to.conn,
        frame,
    };
    mesh.to_member(to, event);
}

/// Sends one room-wide frame to each member shard, which fans it out locally.
fn deliver(mesh: &mut Mesh, shards: SmallVec<[ShardId; 8]>, room: RoomKey, frame: Bytes) {
    for shard in shards {
        let event = MemberEvent::Deliver {
            room,
            frame: frame.clone(),
        };
        mesh.send(shard, ShardMessage::ToMembers(event));
    }
}

/// Whether an emptied room is kept for its history (resumes within the TTL) rather
/// than forgotten: history is on, the TTL is not zero, and the room has numbered a
/// message worth resuming.
fn keeps_when_empty(limits: &HistoryLimits, room: &Room) -> bool {
    limits.enabled() && limits.ttl > Duration::ZERO && room.last_seq() > 0
}
