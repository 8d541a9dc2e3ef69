//! The owner side of a shard: the rooms and player ids that hash to it. It decides
//! (who may log in, join, leave, send; in which order the room's members hear of it)
//! and tells the member shards through the mesh. It knows no connection, only
//! addresses.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use ahash::RandomState;
use bytes::Bytes;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::metrics::{self, Count};
use crate::shard::mesh::Mesh;
use crate::shard::messages::{ConnAddr, ConnId, MemberEvent, OwnerRequest, RoomKey, ShardMessage};
use crate::shard::room::Room;
use crate::shard::routing::ShardId;
use crate::wire::proto::{ErrorCode, RoomConfig};
use crate::wire::request::{decode_request, Request, SendView};
use crate::wire::response;

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
    next_room: u64,
}

impl Owner {
    /// An owner with no rooms and no players.
    pub fn new(max_room_members: u32) -> Self {
        Self {
            max_room_members,
            rooms: FxHashMap::default(),
            room_keys: HashMap::default(),
            member_rooms: FxHashMap::default(),
            players: HashMap::default(),
            next_room: 0,
        }
    }

    /// Rooms owned.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Handles one request from a member shard (this one included).
    pub fn handle(&mut self, req: OwnerRequest, mesh: &mut Mesh) {
        match req {
            OwnerRequest::Claim { player, from } => {
                let ok = match self.players.entry(player.clone()) {
                    Entry::Vacant(slot) => {
                        slot.insert(from);
                        true
                    }
                    Entry::Occupied(_) => false,
                };
                let event = MemberEvent::Claimed {
                    conn: from.conn,
                    player,
                    ok,
                };
                mesh.to_member(from, event);
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
            } => self.join(room_id, max_players, player, from, mesh),
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
        mesh: &mut Mesh,
    ) {
        let key = match self.room_keys.get(room_id.as_str()) {
            Some(&key) => key,
            None => {
                self.next_room += 1;
                let key = ((mesh.id() as u64) << ROOM_KEY_SHARD_SHIFT) | self.next_room;
                let id: Rc<str> = room_id.as_str().into();
                let room = Room::new(key, id.clone(), max_players.unwrap_or(0), mesh.nr_shards());
                self.rooms.insert(key, room);
                self.room_keys.insert(id, key);
                key
            }
        };
        let Some(room) = self.rooms.get_mut(&key) else {
            return;
        };
        let config = Some(RoomConfig {
            max_players: room.max_players,
        });
        if let Err((code, message)) = room.check_join(&player, max_players, self.max_room_members) {
            let frame = response::join_rejected(&room_id, config, response::err(code, message));
            if room.is_empty() {
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
        let notification = response::join_notification(&room.id, &player);
        let others = room.member_shards();
        room.add(player, from);
        let frame = response::join(&room_id, room.player_ids(), config, response::ok());
        self.member_rooms.entry(from).or_default().push(key);
        deliver(mesh, others, key, notification);
        // After the notifications: the joiner is not yet indexed when they arrive.
        let event = MemberEvent::Joined {
            conn: from.conn,
            room: key,
            frame,
        };
        mesh.to_member(from, event);
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
            self.drop_room(key);
            return;
        }
        let notification = response::leave_notification(&room.id, player);
        let shards = room.member_shards();
        deliver(mesh, shards, key, notification);
    }

    fn drop_room(&mut self, key: RoomKey) {
        if let Some(room) = self.rooms.remove(&key) {
            self.room_keys.remove(&room.id);
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
        // Encoded once; every recipient on every shard shares this allocation.
        let frame = response::message_notification(player, &room.id, view.body, seq);
        if view.target_count() == 0 {
            let shards = room.member_shards();
            deliver(mesh, shards, key, frame);
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
            let event = MemberEvent::DeliverTo {
                conns,
                frame: frame.clone(),
            };
            mesh.send(shard, ShardMessage::ToMembers(event));
        }
    }
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
