//! Messages between shards, named by direction: `ToOwner` requests go to the shard
//! that owns a room or a player id; `ToMembers` events go from an owner back to the
//! shards that host the connections concerned. One flume message carries a batch.

use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::shard::history::ReplayRequest;
use crate::shard::routing::ShardId;

/// A connection id, unique within its shard for the process's life.
pub type ConnId = u64;

/// A room's key, unique in the process: the owner shard in the high bits.
pub type RoomKey = u64;

/// Where a connection lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnAddr {
    /// The shard that accepted it.
    pub shard: ShardId,
    /// Its id on that shard.
    pub conn: ConnId,
}

/// What flows through a shard's inbox: a batch of messages from one shard.
pub type Batch = Vec<ShardMessage>;

/// One cross-shard message.
#[derive(Debug)]
pub enum ShardMessage {
    /// To the owner of a room or player id.
    ToOwner(OwnerRequest),
    /// From an owner to a shard hosting members.
    ToMembers(MemberEvent),
    /// Server control, handled by the shard's executor.
    Control(Control),
}

/// The bytes of frames and payloads a batch carries (what it costs its receiver to
/// hand out), for the cross-shard in-flight bound.
pub fn batch_bytes(batch: &Batch) -> usize {
    batch
        .iter()
        .map(|msg| match msg {
            ShardMessage::ToOwner(OwnerRequest::Send { payload, .. }) => payload.len(),
            ShardMessage::ToMembers(MemberEvent::Joined { frame, replay, .. }) => {
                frame.len() + replay.iter().map(Bytes::len).sum::<usize>()
            }
            ShardMessage::ToMembers(
                MemberEvent::Deliver { frame, .. }
                | MemberEvent::DeliverTo { frame, .. }
                | MemberEvent::Reply { frame, .. }
                | MemberEvent::JoinRejected { frame, .. },
            ) => frame.len(),
            _ => 0,
        })
        .sum()
}

/// Control messages from the server handle or the metrics responder.
#[derive(Debug)]
pub enum Control {
    /// Begin graceful shutdown.
    Shutdown,
    /// Reply with this shard's stats (a metrics scrape).
    Stats(flume::Sender<crate::metrics::ShardStats>),
}

/// A request to the shard owning a room or a player id.
// Fields are named for what they carry (`from`: the requesting connection).
#[allow(missing_docs)]
#[derive(Debug)]
pub enum OwnerRequest {
    /// Claim a player id for a login; with `replace`, a session holding it is closed
    /// (SESSION_REPLACED) and the claim granted once it has left every room.
    Claim {
        player: Arc<str>,
        from: ConnAddr,
        replace: bool,
    },
    /// Free a player id after its connection left every room.
    Release { player: Arc<str>, from: ConnAddr },
    /// Join a room (`max_players` None: no config sent).
    Join {
        room_id: String,
        max_players: Option<u32>,
        player: Arc<str>,
        from: ConnAddr,
        replay: ReplayRequest,
    },
    /// Leave a room.
    Leave {
        room_id: String,
        player: Arc<str>,
        from: ConnAddr,
    },
    /// A `SendMessage` payload, forwarded whole (one allocation) and re-read by the owner.
    Send {
        payload: Bytes,
        player: Arc<str>,
        from: ConnAddr,
    },
    /// The connection closed: leave every room of this owner.
    Disconnect { player: Arc<str>, from: ConnAddr },
}

/// An owner's answer or broadcast to a shard hosting the connections concerned.
#[allow(missing_docs)]
#[derive(Debug)]
pub enum MemberEvent {
    /// The outcome of a `Claim`.
    Claimed {
        conn: ConnId,
        player: Arc<str>,
        ok: bool,
    },
    /// The connection joined: index it under `room`, then send it `frame` (its
    /// JoinResponse) and the `replay` (retained messages), before anything live.
    Joined {
        conn: ConnId,
        room: RoomKey,
        frame: Bytes,
        replay: Vec<Bytes>,
    },
    /// Another connection logged in as this one's player with `replace_existing`:
    /// send it SESSION_REPLACED and close it.
    Replaced { conn: ConnId },
    /// A join was refused: send the connection `frame` and free its room slot.
    JoinRejected { conn: ConnId, frame: Bytes },
    /// The connection left `room` (or is leaving every room as it disconnects): drop
    /// it from the room's index, then send it `frame` (its LeaveResponse; none on a
    /// disconnect). Sent before the room's LeaveNotification, so that the leaver is
    /// not among those notified.
    Left {
        conn: ConnId,
        room: RoomKey,
        frame: Option<Bytes>,
    },
    /// A frame for one connection (a response or an error).
    Reply { conn: ConnId, frame: Bytes },
    /// A frame for every local member of `room`.
    Deliver { room: RoomKey, frame: Bytes },
    /// A frame for some local members (targeted messages).
    DeliverTo {
        conns: SmallVec<[ConnId; 4]>,
        frame: Bytes,
    },
    /// The owner processed a `Disconnect`.
    DisconnectDone { conn: ConnId },
}
