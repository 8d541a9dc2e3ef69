//! One shard's state, owned by its executor thread and touched by nothing else.
//!
//! Owner side: the rooms and player ids that hash to this shard. Local side: this
//! shard's connections and, per room, which of them are members (the fan-out index).
//! `route` is the only way a decision leaves a handler: a message for this shard is
//! handled at once (the local fast path, no channel hop); one for another shard waits
//! in that shard's outbox until the flusher sends the whole batch as one channel
//! message.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use ahash::RandomState;
use bytes::Bytes;
use indexmap::IndexMap;
use rustc_hash::{FxBuildHasher, FxHashMap};
use smallvec::SmallVec;

use crate::metrics::{self, Count};
use crate::notify::LocalNotify;
use crate::outbound::{Outbound, Push};
use crate::proto::{ErrorCode, RoomConfig};
use crate::request::{decode_request, Request, SendView};
use crate::response;
use crate::room::Room;
use crate::router::{
    Batch, ConnAddr, ConnId, Control, MemberEvent, OwnerRequest, RoomKey, ShardMessage,
};
use crate::routing::{owner_shard, ShardId};

/// Room keys carry their owner shard in the bits above this.
const ROOM_KEY_SHARD_SHIFT: u32 = 48;

/// A connection as its shard sees it; shared by its reader, its writer and the
/// fan-out index.
#[derive(Debug)]
pub struct ConnShared {
    /// Id on this shard.
    pub id: ConnId,
    /// Frames waiting to be written.
    pub out: Outbound,
    /// The logged-in player id.
    pub player: RefCell<Option<Arc<str>>>,
    /// The owner's answer to a pending login claim.
    pub claim: Cell<Option<bool>>,
    /// Wakes the reader while it waits for a claim.
    pub wake: LocalNotify,
    /// Rooms joined plus joins in flight (`--max-rooms-per-connection`).
    pub room_slots: Cell<u32>,
    /// Rooms this connection is indexed under on this shard.
    rooms: RefCell<SmallVec<[RoomKey; 4]>>,
}

impl ConnShared {
    /// Queues a response to this connection's own request (`Outbound::push_reply`).
    pub fn reply(&self, frame: Bytes) -> Push {
        self.cut_logged(self.out.push_reply(frame, slow_consumer_frame))
    }

    /// Queues a notification; a connection over its byte limit is cut as a slow consumer.
    pub fn push(&self, frame: &Bytes) -> Push {
        self.cut_logged(self.out.push(frame, slow_consumer_frame))
    }

    fn cut_logged(&self, pushed: Push) -> Push {
        if pushed == Push::SlowConsumer {
            tracing::debug!(conn = self.id, "slow consumer cut");
        }
        pushed
    }
}

fn slow_consumer_frame() -> Bytes {
    response::error(
        ErrorCode::SlowConsumer,
        "outbound buffer over --max-outbound-bytes: disconnected",
    )
}

/// Local members of one room, in the order they joined (swap-removal aside).
type LocalMembers = IndexMap<ConnId, Rc<ConnShared>, FxBuildHasher>;

/// Limits the shard state enforces.
#[derive(Debug, Clone)]
pub struct ShardLimits {
    /// `--max-room-members`.
    pub max_room_members: u32,
    /// `--max-outbound-bytes`.
    pub max_outbound_bytes: usize,
    /// How long a closing connection may take to flush.
    pub close_grace: std::time::Duration,
}

/// Everything one shard owns.
#[derive(Debug)]
pub struct ShardState {
    id: ShardId,
    nr_shards: usize,
    limits: ShardLimits,
    // Owner side.
    rooms: FxHashMap<RoomKey, Room>,
    // Keyed by client-chosen strings: randomly seeded, so colliding keys cannot be
    // precomputed (FxHash stays for server-chosen integer keys).
    room_keys: HashMap<Rc<str>, RoomKey, RandomState>,
    member_rooms: FxHashMap<ConnAddr, SmallVec<[RoomKey; 4]>>,
    players: HashMap<Arc<str>, ConnAddr, RandomState>,
    next_room: u64,
    // Local side.
    conns: FxHashMap<ConnId, Rc<ConnShared>>,
    local_rooms: FxHashMap<RoomKey, LocalMembers>,
    /// Connections gone but not yet out of every owner's rooms: player, owners left.
    disconnecting: FxHashMap<ConnId, (Arc<str>, usize)>,
    next_conn: ConnId,
    // Routing.
    outbox: Vec<Batch>,
    flush: Rc<LocalNotify>,
    shutting_down: Option<Instant>,
}

impl ShardState {
    /// The state of shard `id` of `nr_shards`; `flush` wakes its flusher.
    pub fn new(id: ShardId, nr_shards: usize, limits: ShardLimits, flush: Rc<LocalNotify>) -> Self {
        Self {
            id,
            nr_shards,
            limits,
            rooms: FxHashMap::default(),
            room_keys: HashMap::default(),
            member_rooms: FxHashMap::default(),
            players: HashMap::default(),
            next_room: 0,
            conns: FxHashMap::default(),
            local_rooms: FxHashMap::default(),
            disconnecting: FxHashMap::default(),
            next_conn: 0,
            outbox: (0..nr_shards).map(|_| Vec::new()).collect(),
            flush,
            shutting_down: None,
        }
    }

    /// This shard's id.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// Connections currently registered on this shard.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Rooms this shard owns.
    pub fn owned_rooms(&self) -> usize {
        self.rooms.len()
    }

    /// Registers a new connection.
    pub fn register(&mut self) -> Rc<ConnShared> {
        self.next_conn += 1;
        let conn = Rc::new(ConnShared {
            id: self.next_conn,
            out: Outbound::new(self.limits.max_outbound_bytes),
            player: RefCell::new(None),
            claim: Cell::new(None),
            wake: LocalNotify::default(),
            room_slots: Cell::new(0),
            rooms: RefCell::new(SmallVec::new()),
        });
        if let Some(deadline) = self.shutting_down {
            conn.out.close_after(Some(shutting_down_frame()), deadline);
        }
        self.conns.insert(conn.id, conn.clone());
        conn
    }

    fn addr(&self, conn: ConnId) -> ConnAddr {
        ConnAddr {
            shard: self.id,
            conn,
        }
    }

    // ---- requests from this shard's connections ----

    /// Asks the player id's owner for `player`; the answer lands in `conn.claim`.
    pub fn claim(&mut self, conn: &ConnShared, player: Arc<str>) {
        conn.claim.set(None);
        let owner = owner_shard(&player, self.nr_shards);
        let from = self.addr(conn.id);
        self.route(
            owner,
            ShardMessage::ToOwner(OwnerRequest::Claim { player, from }),
        );
    }

    /// Forwards a join to the room's owner.
    pub fn join(
        &mut self,
        conn: &ConnShared,
        player: Arc<str>,
        room_id: String,
        max_players: Option<u32>,
    ) {
        let owner = owner_shard(&room_id, self.nr_shards);
        let from = self.addr(conn.id);
        self.route(
            owner,
            ShardMessage::ToOwner(OwnerRequest::Join {
                room_id,
                max_players,
                player,
                from,
            }),
        );
    }

    /// Forwards a leave to the room's owner.
    pub fn leave(&mut self, conn: &ConnShared, player: Arc<str>, room_id: String) {
        let owner = owner_shard(&room_id, self.nr_shards);
        let from = self.addr(conn.id);
        self.route(
            owner,
            ShardMessage::ToOwner(OwnerRequest::Leave {
                room_id,
                player,
                from,
            }),
        );
    }

    /// A `SendMessage`: handled in place when this shard owns the room (no copy),
    /// else its payload is copied once and forwarded.
    pub fn send(
        &mut self,
        conn: &ConnShared,
        player: &Arc<str>,
        view: &SendView<'_>,
        payload: &[u8],
    ) {
        let owner = owner_shard(view.room_id, self.nr_shards);
        let from = self.addr(conn.id);
        if owner == self.id {
            self.on_send(view, player, from);
        } else {
            let req = OwnerRequest::Send {
                payload: Bytes::copy_from_slice(payload),
                player: player.clone(),
                from,
            };
            self.route(owner, ShardMessage::ToOwner(req));
        }
    }

    /// A connection's reader is done. An anonymous connection is forgotten at once. A
    /// logged-in one asks every owner to drop it from its rooms and stays registered
    /// until all have answered: whatever an owner sent it before (the echo of its own
    /// last message, say) arrives first on the same FIFO channel and is still
    /// delivered. Then it is forgotten and its player id released.
    pub fn disconnect(&mut self, conn_id: ConnId) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let Some(player) = conn.player.take() else {
            self.forget(conn_id);
            return;
        };
        self.disconnecting
            .insert(conn_id, (player.clone(), self.nr_shards));
        let from = self.addr(conn_id);
        for shard in 0..self.nr_shards {
            let req = OwnerRequest::Disconnect {
                player: player.clone(),
                from,
            };
            self.route(shard, ShardMessage::ToOwner(req));
        }
    }

    /// Unregisters a connection: no more frames for it; the writer flushes and closes.
    fn forget(&mut self, conn_id: ConnId) {
        let Some(conn) = self.conns.remove(&conn_id) else {
            return;
        };
        conn.out
            .close_after(None, Instant::now() + self.limits.close_grace);
        for key in conn.rooms.take() {
            self.unindex(key, conn_id);
        }
    }

    /// Graceful shutdown: every connection gets SERVER_SHUTTING_DOWN after what is
    /// already queued, and closes once flushed or at `deadline`.
    pub fn begin_shutdown(&mut self, deadline: Instant) {
        self.shutting_down = Some(deadline);
        let frame = shutting_down_frame();
        for conn in self.conns.values() {
            conn.out.close_after(Some(frame.clone()), deadline);
            conn.wake.notify();
        }
    }

    // ---- routing ----

    /// Handles a batch from another shard; returns its control messages.
    pub fn handle_batch(&mut self, batch: Batch) -> SmallVec<[Control; 1]> {
        let _turn = metrics::Turn::start(Instant::now());
        let mut controls = SmallVec::new();
        for msg in batch {
            match msg {
                ShardMessage::Control(control) => controls.push(control),
                other => self.handle(other),
            }
        }
        controls
    }

    fn handle(&mut self, msg: ShardMessage) {
        match msg {
            ShardMessage::ToOwner(req) => self.on_owner_request(req),
            ShardMessage::ToMembers(event) => self.on_member_event(event),
            ShardMessage::Control(_) => {}
        }
    }

    fn route(&mut self, dest: ShardId, msg: ShardMessage) {
        if dest == self.id {
            self.handle(msg);
        } else {
            self.outbox[dest].push(msg);
            self.flush.notify();
        }
    }

    fn tell_conn(&mut self, to: ConnAddr, event: MemberEvent) {
        self.route(to.shard, ShardMessage::ToMembers(event));
    }

    fn reply(&mut self, to: ConnAddr, frame: Bytes) {
        self.tell_conn(
            to,
            MemberEvent::Reply {
                conn: to.conn,
                frame,
            },
        );
    }

    /// Takes every non-empty outbox, for the flusher to send.
    pub fn take_outbox(&mut self) -> SmallVec<[(ShardId, Batch); 4]> {
        self.outbox
            .iter_mut()
            .enumerate()
            .filter(|(_, batch)| !batch.is_empty())
            // The next batch starts with this one's capacity instead of regrowing.
            .map(|(dest, batch)| {
                let capacity = batch.len();
                (dest, std::mem::replace(batch, Vec::with_capacity(capacity)))
            })
            .collect()
    }

    // ---- owner side ----

    fn on_owner_request(&mut self, req: OwnerRequest) {
        match req {
            OwnerRequest::Claim { player, from } => {
                let ok = match self.players.entry(player.clone()) {
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(from);
                        true
                    }
                    std::collections::hash_map::Entry::Occupied(_) => false,
                };
                self.tell_conn(
                    from,
                    MemberEvent::Claimed {
                        conn: from.conn,
                        player,
                        ok,
                    },
                );
            }
            OwnerRequest::Release { player, from } => {
                if self.players.get(&player) == Some(&from) {
                    self.players.remove(&player);
                }
            }
            OwnerRequest::Join {
                room_id,
                max_players,
                player,
                from,
            } => self.on_join(room_id, max_players, player, from),
            OwnerRequest::Leave {
                room_id,
                player,
                from,
            } => self.on_leave(&room_id, &player, from),
            OwnerRequest::Send {
                payload,
                player,
                from,
            } => {
                // The sender's shard decoded this payload already: it cannot fail.
                let request = decode_request(&payload).ok();
                if let Some(view) = request.as_ref().and_then(Request::send_view) {
                    self.on_send(&view, &player, from);
                }
            }
            OwnerRequest::Disconnect { player, from } => {
                for key in self.member_rooms.remove(&from).unwrap_or_default() {
                    self.leave_room(key, &player, from, None);
                }
                self.tell_conn(from, MemberEvent::DisconnectDone { conn: from.conn });
            }
        }
    }

    fn on_join(
        &mut self,
        room_id: String,
        max_players: Option<u32>,
        player: Arc<str>,
        from: ConnAddr,
    ) {
        let key = match self.room_keys.get(room_id.as_str()) {
            Some(&key) => key,
            None => {
                self.next_room += 1;
                let key = ((self.id as u64) << ROOM_KEY_SHARD_SHIFT) | self.next_room;
                let id: Rc<str> = room_id.as_str().into();
                self.rooms.insert(
                    key,
                    Room::new(key, id.clone(), max_players.unwrap_or(0), self.nr_shards),
                );
                self.room_keys.insert(id, key);
                key
            }
        };
        let cap = self.limits.max_room_members;
        let Some(room) = self.rooms.get_mut(&key) else {
            return;
        };
        let config = Some(RoomConfig {
            max_players: room.max_players,
        });
        if let Err((code, message)) = room.check_join(&player, max_players, cap) {
            let frame = response::join_rejected(&room_id, config, response::err(code, message));
            if room.is_empty() {
                self.drop_room(key);
            }
            self.tell_conn(
                from,
                MemberEvent::JoinRejected {
                    conn: from.conn,
                    frame,
                },
            );
            return;
        }
        metrics::count(Count::Join);
        let notification = response::join_notification(&room.id, &player);
        let others = room.member_shards();
        room.add(player, from);
        let frame = response::join(&room_id, room.player_ids(), config, response::ok());
        self.member_rooms.entry(from).or_default().push(key);
        self.deliver(others, key, notification);
        // After the notifications: the joiner is not yet indexed when they arrive.
        self.tell_conn(
            from,
            MemberEvent::Joined {
                conn: from.conn,
                room: key,
                frame,
            },
        );
    }

    fn on_leave(&mut self, room_id: &str, player: &str, from: ConnAddr) {
        let key = self.room_keys.get(room_id).copied();
        let member = key
            .and_then(|k| self.rooms.get(&k))
            .and_then(|r| r.member(player));
        let (Some(key), true) = (key, member == Some(from)) else {
            let frame = response::leave(
                room_id,
                response::err(
                    ErrorCode::NotInRoom,
                    format!("not a member of room {room_id:?}"),
                ),
            );
            self.reply(from, frame);
            return;
        };
        if let Some(keys) = self.member_rooms.get_mut(&from) {
            keys.retain(|k| *k != key);
        }
        metrics::count(Count::Leave);
        let frame = response::leave(room_id, response::ok());
        self.leave_room(key, player, from, Some(frame));
    }

    /// `from` leaves room `key`: its shard unindexes it (and sends it `response`)
    /// before the others' LeaveNotification arrives on the same FIFO channel, so the
    /// leaver is never notified of its own leave. What was sent to the room before
    /// (the echo of its last message) still reaches it.
    fn leave_room(&mut self, key: RoomKey, player: &str, from: ConnAddr, response: Option<Bytes>) {
        self.tell_conn(
            from,
            MemberEvent::Left {
                conn: from.conn,
                room: key,
                frame: response,
            },
        );
        self.remove_member(key, player, from);
    }

    /// Removes a member, tells the others, and drops the room when it is empty.
    fn remove_member(&mut self, key: RoomKey, player: &str, from: ConnAddr) {
        let Some(room) = self.rooms.get_mut(&key) else {
            return;
        };
        if !room.remove(player, from) {
            return;
        }
        if room.is_empty() {
            self.drop_room(key);
            return;
        }
        let notification = response::leave_notification(&room.id, player);
        let shards = room.member_shards();
        self.deliver(shards, key, notification);
    }

    /// Sends one room-wide frame to each member shard, which fans it out locally.
    fn deliver(&mut self, shards: SmallVec<[ShardId; 8]>, room: RoomKey, frame: Bytes) {
        for shard in shards {
            let frame = frame.clone();
            self.route(
                shard,
                ShardMessage::ToMembers(MemberEvent::Deliver { room, frame }),
            );
        }
    }

    fn drop_room(&mut self, key: RoomKey) {
        if let Some(room) = self.rooms.remove(&key) {
            self.room_keys.remove(&room.id);
        }
    }

    fn on_send(&mut self, view: &SendView<'_>, player: &str, from: ConnAddr) {
        let key = self.room_keys.get(view.room_id).copied();
        let room = key.and_then(|k| self.rooms.get_mut(&k));
        let Some(room) = room.filter(|r| r.member(player) == Some(from)) else {
            let message = format!("not a member of room {:?}", view.room_id);
            self.reply(from, response::error(ErrorCode::NotInRoom, message));
            return;
        };
        metrics::count(Count::MessageIn);
        let key = room.key;
        let seq = room.next_seq();
        // Encoded once; every recipient on every shard shares this allocation.
        let frame = response::message_notification(player, &room.id, view.body, seq);
        if view.target_count() == 0 {
            let shards = room.member_shards();
            self.deliver(shards, key, frame);
            return;
        }
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
            self.route(
                shard,
                ShardMessage::ToMembers(MemberEvent::DeliverTo {
                    conns,
                    frame: frame.clone(),
                }),
            );
        }
    }

    // ---- member side ----

    fn on_member_event(&mut self, event: MemberEvent) {
        match event {
            MemberEvent::Claimed { conn, player, ok } => match self.conns.get(&conn) {
                Some(c) => {
                    c.claim.set(Some(ok));
                    c.wake.notify();
                }
                // The connection went away while its claim was in flight.
                None if ok => self.release(conn, player),
                None => {}
            },
            MemberEvent::Joined { conn, room, frame } => {
                // A connection already gone is dropped from the room by its Disconnect,
                // which its owner handles after this join.
                if let Some(c) = self.conns.get(&conn) {
                    self.local_rooms
                        .entry(room)
                        .or_default()
                        .insert(conn, c.clone());
                    c.rooms.borrow_mut().push(room);
                    c.reply(frame);
                }
            }
            MemberEvent::JoinRejected { conn, frame } => {
                if let Some(c) = self.conns.get(&conn) {
                    c.room_slots.set(c.room_slots.get().saturating_sub(1));
                    c.reply(frame);
                }
            }
            MemberEvent::Left { conn, room, frame } => {
                if let Some(c) = self.conns.get(&conn).cloned() {
                    c.room_slots.set(c.room_slots.get().saturating_sub(1));
                    c.rooms.borrow_mut().retain(|k| *k != room);
                    self.unindex(room, conn);
                    if let Some(frame) = frame {
                        c.reply(frame);
                    }
                }
            }
            MemberEvent::Reply { conn, frame } => {
                if let Some(c) = self.conns.get(&conn) {
                    c.reply(frame);
                }
            }
            MemberEvent::Deliver { room, frame } => {
                if let Some(members) = self.local_rooms.get(&room) {
                    metrics::count(Count::Deliveries(members.len() as u64));
                    for member in members.values() {
                        member.push(&frame);
                    }
                }
            }
            MemberEvent::DeliverTo { conns, frame } => {
                metrics::count(Count::Deliveries(conns.len() as u64));
                for conn in conns {
                    if let Some(c) = self.conns.get(&conn) {
                        c.push(&frame);
                    }
                }
            }
            MemberEvent::DisconnectDone { conn } => {
                let Some((_, left)) = self.disconnecting.get_mut(&conn) else {
                    return;
                };
                *left -= 1;
                if *left > 0 {
                    return;
                }
                if let Some((player, _)) = self.disconnecting.remove(&conn) {
                    self.forget(conn);
                    self.release(conn, player);
                }
            }
        }
    }

    /// Gives `player` back to its owner once `conn` no longer holds it.
    fn release(&mut self, conn: ConnId, player: Arc<str>) {
        let owner = owner_shard(&player, self.nr_shards);
        let from = self.addr(conn);
        self.route(
            owner,
            ShardMessage::ToOwner(OwnerRequest::Release { player, from }),
        );
    }

    fn unindex(&mut self, room: RoomKey, conn: ConnId) {
        if let Some(members) = self.local_rooms.get_mut(&room) {
            members.swap_remove(&conn);
            if members.is_empty() {
                self.local_rooms.remove(&room);
            }
        }
    }
}

fn shutting_down_frame() -> Bytes {
    response::error(ErrorCode::ServerShuttingDown, "server is shutting down")
}
