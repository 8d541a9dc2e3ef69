//! Where a shard's decisions go: one outbox per peer shard, sent by the flusher as one
//! channel message per wake-up, and a local queue for messages to this shard itself,
//! which the shard drains after the handler that queued them has returned. Routing
//! therefore never calls a handler back: a request enters the shard once, and what it
//! causes is handled in the order it was caused, exactly as a peer would see it.

use std::collections::VecDeque;
use std::rc::Rc;

use smallvec::SmallVec;

use crate::notify::LocalNotify;
use crate::shard::messages::{Batch, ConnAddr, ConnId, MemberEvent, OwnerRequest, ShardMessage};
use crate::shard::routing::{owner_shard, ShardId};

/// The outgoing side of one shard.
#[derive(Debug)]
pub struct Mesh {
    id: ShardId,
    nr_shards: usize,
    outbox: Vec<Batch>,
    local: VecDeque<ShardMessage>,
    flush: Rc<LocalNotify>,
}

impl Mesh {
    /// The mesh of shard `id` of `nr_shards`; `flush` wakes its flusher.
    pub fn new(id: ShardId, nr_shards: usize, flush: Rc<LocalNotify>) -> Self {
        Self {
            id,
            nr_shards,
            outbox: (0..nr_shards).map(|_| Vec::new()).collect(),
            local: VecDeque::new(),
            flush,
        }
    }

    /// This shard's id.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// Number of shards.
    pub fn nr_shards(&self) -> usize {
        self.nr_shards
    }

    /// The owner of a room or player id.
    pub fn owner_of(&self, key: &str) -> ShardId {
        owner_shard(key, self.nr_shards)
    }

    /// A connection of this shard, as owners address it.
    pub fn addr(&self, conn: ConnId) -> ConnAddr {
        ConnAddr {
            shard: self.id,
            conn,
        }
    }

    /// Sends `msg` to shard `dest`: queued locally when that is this shard.
    pub fn send(&mut self, dest: ShardId, msg: ShardMessage) {
        if dest == self.id {
            self.local.push_back(msg);
        } else {
            self.outbox[dest].push(msg);
            self.flush.notify();
        }
    }

    /// A request to the owner of `key` (a room or player id).
    pub fn to_owner(&mut self, key: &str, request: OwnerRequest) {
        let owner = self.owner_of(key);
        self.send(owner, ShardMessage::ToOwner(request));
    }

    /// An event for the shard that hosts connection `to`.
    pub fn to_member(&mut self, to: ConnAddr, event: MemberEvent) {
        self.send(to.shard, ShardMessage::ToMembers(event));
    }

    /// The oldest message this shard sent itself.
    pub fn next_local(&mut self) -> Option<ShardMessage> {
        self.local.pop_front()
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(conn: ConnId) -> ShardMessage {
        ShardMessage::ToOwner(OwnerRequest::Release {
            player: "p".into(),
            from: ConnAddr { shard: 0, conn },
        })
    }

    #[test]
    fn local_messages_queue_in_order_and_remote_ones_wait_in_their_outbox() {
        let flush = Rc::new(LocalNotify::default());
        let mut mesh = Mesh::new(0, 3, flush);
        mesh.send(0, release(1));
        mesh.send(2, release(2));
        mesh.send(0, release(3));
        mesh.send(2, release(4));
        let local: Vec<_> = std::iter::from_fn(|| mesh.next_local()).collect();
        assert!(matches!(
            local.as_slice(),
            [
                ShardMessage::ToOwner(OwnerRequest::Release {
                    from: ConnAddr { conn: 1, .. },
                    ..
                }),
                ShardMessage::ToOwner(OwnerRequest::Release {
                    from: ConnAddr { conn: 3, .. },
                    ..
                }),
            ]
        ));
        let outboxes = mesh.take_outbox();
        assert_eq!(outboxes.len(), 1);
        assert_eq!(outboxes[0].0, 2);
        assert_eq!(outboxes[0].1.len(), 2);
        assert!(mesh.take_outbox().is_empty(), "taken once");
    }
}
