//! One shard's state, owned by its executor thread and touched by nothing else.
//!
//! Three parts, each with one job:
//! - [`owner`]: the rooms and player ids that hash to this shard (decides);
//! - [`members`]: this shard's connections and the room -> local members index (fans
//!   out);
//! - [`mesh`]: where decisions go: outboxes to the other shards, and a local queue.
//!
//! [`ShardState`] is the one entry point. A request from a connection or a batch from
//! a peer enters here once; the part it is for handles it; whatever that causes for
//! this shard waits in the mesh's local queue and is handled, in order, before the
//! entry point returns. No handler calls another back.
//!
//! Also here: the cross-shard [`messages`], [`routing`] (`owner_shard`), a [`room`],
//! a connection's [`outbound`] queue, and the [`context`] a shard's tasks share.

pub mod context;
pub mod history;
pub mod members;
pub mod mesh;
pub mod messages;
pub mod outbound;
pub mod owner;
pub mod room;
pub mod routing;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use smallvec::SmallVec;

use crate::metrics;
use crate::notify::LocalNotify;
use crate::shard::history::{HistoryLimits, ReplayRequest};
use crate::shard::members::{ConnShared, Members};
use crate::shard::mesh::Mesh;
use crate::shard::messages::{Batch, ConnId, Control, OwnerRequest, ShardMessage};
use crate::shard::owner::Owner;
use crate::shard::routing::ShardId;
use crate::wire::request::SendView;

/// Limits the shard state enforces.
#[derive(Debug, Clone)]
pub struct ShardLimits {
    /// `--max-room-members`.
    pub max_room_members: u32,
    /// `--max-outbound-bytes`.
    pub max_outbound_bytes: usize,
    /// `--max-shard-outbound-bytes`.
    pub max_shard_outbound_bytes: usize,
    /// How long a closing connection may take to flush.
    pub close_grace: Duration,
    /// `--history-*`.
    pub history: HistoryLimits,
}

/// Everything one shard owns.
#[derive(Debug)]
pub struct ShardState {
    owner: Owner,
    members: Members,
    mesh: Mesh,
}

impl ShardState {
    /// The state of shard `id` of `nr_shards`; `flush` wakes its flusher.
    pub fn new(id: ShardId, nr_shards: usize, limits: ShardLimits, flush: Rc<LocalNotify>) -> Self {
        Self {
            owner: Owner::new(limits.max_room_members, limits.history),
            members: Members::new(
                limits.max_outbound_bytes,
                limits.max_shard_outbound_bytes,
                limits.close_grace,
            ),
            mesh: Mesh::new(id, nr_shards, flush),
        }
    }

    /// This shard's id.
    pub fn id(&self) -> ShardId {
        self.mesh.id()
    }

    /// Connections currently registered on this shard.
    pub fn connection_count(&self) -> usize {
        self.members.count()
    }

    /// Bytes queued for this shard's clients.
    pub fn outbound_bytes(&self) -> usize {
        self.members.queued_bytes()
    }

    /// Rooms this shard owns.
    pub fn owned_rooms(&self) -> usize {
        self.owner.room_count()
    }

    /// Messages and bytes retained by the rooms this shard owns.
    pub fn retained(&self) -> (usize, usize) {
        self.owner.retained()
    }

    /// Forgets owned rooms that have been empty for `--history-ttl`.
    pub fn expire_rooms(&mut self, now: Instant) {
        self.owner.expire(now);
    }

    /// Registers a new connection.
    pub fn register(&mut self) -> Rc<ConnShared> {
        self.members.register()
    }

    // ---- requests from this shard's connections ----

    /// Asks the player id's owner for `player`; the answer lands in `conn.claim`.
    /// With `replace`, a session holding it is closed first (SESSION_REPLACED).
    pub fn claim(&mut self, conn: &ConnShared, player: Arc<str>, replace: bool) {
        conn.claim.set(None);
        let from = self.mesh.addr(conn.id);
        let owner = self.mesh.owner_of(&player);
        let req = OwnerRequest::Claim {
            player,
            from,
            replace,
        };
        self.mesh.send(owner, ShardMessage::ToOwner(req));
        self.run_local();
    }

    /// Forwards a join to the room's owner.
    pub fn join(
        &mut self,
        conn: &ConnShared,
        player: Arc<str>,
        room_id: String,
        max_players: Option<u32>,
        replay: ReplayRequest,
    ) {
        let from = self.mesh.addr(conn.id);
        let owner = self.mesh.owner_of(&room_id);
        let req = OwnerRequest::Join {
            room_id,
            max_players,
            player,
            from,
            replay,
        };
        self.mesh.send(owner, ShardMessage::ToOwner(req));
        self.run_local();
    }

    /// Forwards a leave to the room's owner.
    pub fn leave(&mut self, conn: &ConnShared, player: Arc<str>, room_id: String) {
        let from = self.mesh.addr(conn.id);
        let owner = self.mesh.owner_of(&room_id);
        let req = OwnerRequest::Leave {
            room_id,
            player,
            from,
        };
        self.mesh.send(owner, ShardMessage::ToOwner(req));
        self.run_local();
    }

    /// A `SendMessage`: handled in place when this shard owns the room (the view
    /// borrows the read buffer: no copy), else its payload is copied once and
    /// forwarded.
    pub fn send(
        &mut self,
        conn: &ConnShared,
        player: &Arc<str>,
        view: &SendView<'_>,
        payload: &[u8],
    ) {
        let from = self.mesh.addr(conn.id);
        let owner = self.mesh.owner_of(view.room_id);
        if owner == self.mesh.id() {
            self.owner.send(view, player, from, &mut self.mesh);
        } else {
            outbound::note_forwarded(payload.len());
            let req = OwnerRequest::Send {
                payload: Bytes::copy_from_slice(payload),
                player: player.clone(),
                from,
            };
            self.mesh.send(owner, ShardMessage::ToOwner(req));
        }
        self.run_local();
    }

    /// A connection's reader is done (see [`Members::disconnect`]).
    pub fn disconnect(&mut self, conn_id: ConnId) {
        self.members.disconnect(conn_id, &mut self.mesh);
        self.run_local();
    }

    /// Graceful shutdown: every connection gets SERVER_SHUTTING_DOWN after what is
    /// already queued, and closes once flushed or at `deadline`.
    pub fn begin_shutdown(&mut self, deadline: Instant) {
        self.members.begin_shutdown(deadline);
    }

    // ---- messages from other shards ----

    /// Handles a batch from another shard; returns its control messages.
    pub fn handle_batch(&mut self, batch: Batch) -> SmallVec<[Control; 1]> {
        let _turn = metrics::Turn::start(Instant::now());
        let mut controls = SmallVec::new();
        for msg in batch {
            match msg {
                ShardMessage::Control(control) => controls.push(control),
                other => {
                    self.dispatch(other);
                    self.run_local();
                }
            }
        }
        controls
    }

    /// Whether any member is listed as behind (no clock read: the common case).
    pub fn has_members_behind(&self) -> bool {
        self.members.has_behind()
    }

    /// Whether a member of this shard that is reading is behind a burst (see
    /// [`Members::readers_behind`]).
    pub fn readers_behind(&mut self, now: Instant) -> bool {
        self.members.readers_behind(now)
    }

    /// Takes every non-empty outbox, for the flusher to send.
    pub fn take_outbox(&mut self) -> SmallVec<[(ShardId, Batch); 4]> {
        self.mesh.take_outbox()
    }

    fn dispatch(&mut self, msg: ShardMessage) {
        match msg {
            ShardMessage::ToOwner(req) => self.owner.handle(req, &mut self.mesh),
            ShardMessage::ToMembers(event) => self.members.handle(event, &mut self.mesh),
            // Control messages come only from the server, in batches of their own.
            ShardMessage::Control(_) => {}
        }
    }

    /// Handles what this shard sent itself, in the order it was sent.
    fn run_local(&mut self) {
        while let Some(msg) = self.mesh.next_local() {
            self.dispatch(msg);
        }
    }
}
