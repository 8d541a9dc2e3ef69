//! The member side of a shard: its own connections and, per room, which of them are
//! members (the fan-out index). It turns a connection's requests into messages for
//! the owners, and the owners' events into frames on the right queues.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use indexmap::IndexMap;
use rustc_hash::{FxBuildHasher, FxHashMap};
use smallvec::SmallVec;

use crate::auth::{unix_now, Grants, Identity, Verifier};
use crate::metrics::{self, Count, Disconnect};
use crate::notify::LocalNotify;
use crate::shard::mesh::Mesh;
use crate::shard::messages::{ConnId, MemberEvent, OwnerRequest, RoomKey};
use crate::shard::outbound::{Outbound, Push, ShardBudget};
use crate::wire::proto::ErrorCode;
use crate::wire::response;

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
    /// Listed in `Members::behind`.
    listed_behind: Cell<bool>,
    /// Why the server ended this session, when the reason is the session's own rather
    /// than the queue's (a replacement, an expired token): what the disconnect is
    /// counted as.
    pub ended_by: Cell<Option<Disconnect>>,
    /// What the session's token allows (JWT `rooms` and `publish`); `None`: anything.
    pub grants: RefCell<Option<Box<Grants>>>,
    /// When the session's token stops verifying (JWT on): the session is closed then,
    /// unless a refresh moved it.
    pub expires: Cell<Option<Instant>>,
}

impl ConnShared {
    /// Takes a verified token's grants and expiry as this session's.
    pub fn adopt(&self, verifier: &Verifier, identity: Identity) {
        let deadline = verifier.deadline(&identity, Instant::now(), unix_now());
        self.expires.set(Some(deadline));
        *self.grants.borrow_mut() = Some(Box::new(identity.grants));
    }

    /// Whether the session's token lets it join `room`.
    pub fn may_join(&self, room: &str) -> bool {
        self.grants
            .borrow()
            .as_ref()
            .is_none_or(|g| g.may_join(room))
    }

    /// Whether the session's token lets it send in `room`.
    pub fn may_publish(&self, room: &str) -> bool {
        self.grants
            .borrow()
            .as_ref()
            .is_none_or(|g| g.may_publish(room))
    }
}

impl ConnShared {
    /// Queues a response to this connection's own request (`Outbound::push_reply`).
    pub fn reply(&self, frame: Bytes) -> Push {
        self.cut_logged(self.out.push_reply(frame, slow_consumer_frame))
    }

    /// Queues a response and what belongs to it (a join's replay) as one reply.
    pub fn reply_with(&self, frame: Bytes, rest: Vec<Bytes>) -> Push {
        self.cut_logged(self.out.push_reply_with(frame, rest, slow_consumer_frame))
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

/// The frame a slow consumer gets last (if its socket takes it).
pub fn slow_consumer_frame() -> Bytes {
    response::error(
        ErrorCode::SlowConsumer,
        "outbound buffer over --max-outbound-bytes: disconnected",
    )
}

/// The frame a session replaced by a newer login of its player gets last.
pub fn session_replaced_frame() -> Bytes {
    response::error(
        ErrorCode::SessionReplaced,
        "this player logged in again with replace_existing: this session is closed",
    )
}

/// The frame every connection gets last in a graceful shutdown.
pub fn shutting_down_frame() -> Bytes {
    response::error(ErrorCode::ServerShuttingDown, "server is shutting down")
}

/// Local members of one room, in the order they joined (swap-removal aside).
type LocalMembers = IndexMap<ConnId, Rc<ConnShared>, FxBuildHasher>;

/// One shard's connections and its room -> local members index.
#[derive(Debug)]
pub struct Members {
    max_outbound_bytes: usize,
    /// What all this shard's queues hold, against `--max-shard-outbound-bytes`.
    budget: Rc<ShardBudget>,
    close_grace: Duration,
    conns: FxHashMap<ConnId, Rc<ConnShared>>,
    local_rooms: FxHashMap<RoomKey, LocalMembers>,
    /// Connections gone but not yet out of every owner's rooms: player, owners left.
    disconnecting: FxHashMap<ConnId, (Arc<str>, usize)>,
    next_conn: ConnId,
    shutting_down: Option<Instant>,
    /// Connections that fell more than half their limit behind (see
    /// [`Members::readers_behind`]).
    behind: Vec<Rc<ConnShared>>,
}

impl Members {
    /// No connections yet; `max_outbound_bytes` bounds each one's queue, `close_grace`
    /// is how long a closing one may take to flush.
    pub fn new(max_outbound_bytes: usize, max_shard_bytes: usize, close_grace: Duration) -> Self {
        Self {
            max_outbound_bytes,
            budget: Rc::new(ShardBudget::new(max_shard_bytes)),
            close_grace,
            conns: FxHashMap::default(),
            local_rooms: FxHashMap::default(),
            disconnecting: FxHashMap::default(),
            next_conn: 0,
            shutting_down: None,
            behind: Vec::new(),
        }
    }

    /// Bytes queued on this shard's connections.
    pub fn queued_bytes(&self) -> usize {
        self.budget.queued()
    }

    /// Connections registered.
    pub fn count(&self) -> usize {
        self.conns.len()
    }

    /// Registers a new connection.
    pub fn register(&mut self) -> Rc<ConnShared> {
        self.next_conn += 1;
        let conn = Rc::new(ConnShared {
            id: self.next_conn,
            out: Outbound::with_budget(self.max_outbound_bytes, self.budget.clone()),
            player: RefCell::new(None),
            claim: Cell::new(None),
            wake: LocalNotify::default(),
            room_slots: Cell::new(0),
            rooms: RefCell::new(SmallVec::new()),
            listed_behind: Cell::new(false),
            ended_by: Cell::new(None),
            grants: RefCell::new(None),
            expires: Cell::new(None),
        });
        if let Some(deadline) = self.shutting_down {
            conn.out.close_after(Some(shutting_down_frame()), deadline);
        }
        self.conns.insert(conn.id, conn.clone());
        conn
    }

    /// A connection's reader is done. An anonymous connection is forgotten at once. A
    /// logged-in one asks every owner to drop it from its rooms and stays registered
    /// until all have answered: whatever an owner sent it before (the echo of its own
    /// last message, say) arrives first on the same FIFO channel and is still
    /// delivered. Then it is forgotten and its player id released.
    pub fn disconnect(&mut self, conn_id: ConnId, mesh: &mut Mesh) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let Some(player) = conn.player.take() else {
            self.forget(conn_id);
            return;
        };
        let nr_shards = mesh.nr_shards();
        self.disconnecting
            .insert(conn_id, (player.clone(), nr_shards));
        let from = mesh.addr(conn_id);
        for shard in 0..nr_shards {
            let req = OwnerRequest::Disconnect {
                player: player.clone(),
                from,
            };
            mesh.send(shard, crate::shard::messages::ShardMessage::ToOwner(req));
        }
    }

    /// Unregisters a connection: no more frames for it; the writer flushes and closes.
    fn forget(&mut self, conn_id: ConnId) {
        let Some(conn) = self.conns.remove(&conn_id) else {
            return;
        };
        conn.out
            .close_after(None, Instant::now() + self.close_grace);
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

    /// Applies an owner's event to this shard's connections.
    pub fn handle(&mut self, event: MemberEvent, mesh: &mut Mesh) {
        match event {
            MemberEvent::Claimed { conn, player, ok } => match self.conns.get(&conn) {
                Some(c) => {
                    c.claim.set(Some(ok));
                    c.wake.notify();
                }
                // The connection went away while its claim was in flight.
                None if ok => release(mesh, conn, player),
                None => {}
            },
            MemberEvent::Joined {
                conn,
                room,
                frame,
                replay,
            } => {
                // A connection already gone is dropped from the room by its Disconnect,
                // which its owner handles after this join.
                if let Some(c) = self.conns.get(&conn) {
                    self.local_rooms
                        .entry(room)
                        .or_default()
                        .insert(conn, c.clone());
                    c.rooms.borrow_mut().push(room);
                    // The replay is part of the answer to the join: queued with the
                    // response, checked against the byte limit once, as one reply.
                    metrics::count(Count::Deliveries(replay.len() as u64));
                    c.reply_with(frame, replay);
                }
            }
            MemberEvent::Replaced { conn } => {
                // A session already closing (or gone) releases its player anyway. One
                // whose grant came in the same batch, not yet taken by its reader, is
                // replaced too: its reader takes the grant, then sees the close.
                if let Some(c) = self.conns.get(&conn) {
                    let granted = c.player.borrow().is_some() || c.claim.get() == Some(true);
                    if granted && !c.out.is_closing() {
                        tracing::debug!(conn, "session replaced");
                        c.ended_by.set(Some(Disconnect::SessionReplaced));
                        c.out.cut(session_replaced_frame());
                    }
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
                        if member.out.is_behind() && !member.listed_behind.get() {
                            member.listed_behind.set(true);
                            self.behind.push(member.clone());
                        }
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
                    release(mesh, conn, player);
                }
            }
        }
    }

    /// Whether any connection is listed as behind.
    pub fn has_behind(&self) -> bool {
        !self.behind.is_empty()
    }

    /// Whether a connection that is behind still reads at `now`
    /// ([`Outbound::reading_at`]): a member that has not caught up with a burst. Senders on this shard wait
    /// for it (TCP pushes back on them) rather than have it cut; a member that writes
    /// nothing does not hold anyone up and is cut at its byte limit.
    pub fn readers_behind(&mut self, now: Instant) -> bool {
        if self.behind.is_empty() {
            return false;
        }
        self.behind.retain(|c| {
            let keep = !c.out.is_closing() && c.out.is_behind();
            c.listed_behind.set(keep);
            keep
        });
        self.behind.iter().any(|c| c.out.reading_at(now))
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

/// Gives `player` back to its owner once `conn` no longer holds it.
fn release(mesh: &mut Mesh, conn: ConnId, player: Arc<str>) {
    let from = mesh.addr(conn);
    let owner = mesh.owner_of(&player);
    mesh.send(
        owner,
        crate::shard::messages::ShardMessage::ToOwner(OwnerRequest::Release { player, from }),
    );
}
