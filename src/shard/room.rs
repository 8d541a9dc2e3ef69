//! A room as its owner shard holds it: config, members (player id -> connection
//! address), how many members each shard hosts, the `seq` counter, its `epoch` and its
//! retained [`History`]. Pure state and rules, no I/O.

use std::rc::Rc;
use std::sync::Arc;

use ahash::RandomState;
use indexmap::IndexMap;
use smallvec::SmallVec;

use crate::shard::history::History;
use crate::shard::messages::{ConnAddr, RoomKey};
use crate::shard::routing::ShardId;
use crate::wire::proto::ErrorCode;

/// A rejected request: the code and a message for the client's logs.
pub type Rejection = (ErrorCode, String);

/// Authoritative state of one room.
#[derive(Debug)]
pub struct Room {
    /// Key the member shards index the room by.
    pub key: RoomKey,
    /// The room id.
    pub id: Rc<str>,
    /// `RoomConfig.max_players` it was created with (0: no per-room cap).
    pub max_players: u32,
    /// Keyed by client-chosen ids: randomly seeded hashing.
    members: IndexMap<Arc<str>, ConnAddr, RandomState>,
    per_shard: SmallVec<[u32; 8]>,
    seq: u64,
    /// Chosen afresh each time the room is created: `seq` counts within it.
    pub epoch: Box<str>,
    /// Retained messages (empty with history off).
    pub history: History,
    /// When the last member left (the room is kept for `--history-ttl`).
    pub empty_since: Option<std::time::Instant>,
}

impl Room {
    /// An empty room.
    pub fn new(
        key: RoomKey,
        id: Rc<str>,
        epoch: Box<str>,
        max_players: u32,
        nr_shards: usize,
    ) -> Self {
        Self {
            key,
            id,
            max_players,
            members: IndexMap::default(),
            per_shard: SmallVec::from_elem(0, nr_shards),
            seq: 0,
            epoch,
            history: History::default(),
            empty_since: None,
        }
    }

    /// The latest `seq` assigned (0 before the first message).
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// Whether `player` may join, given the request's config and the server's cap.
    pub fn check_join(
        &self,
        player: &str,
        config: Option<u32>,
        server_cap: u32,
    ) -> Result<(), Rejection> {
        if self.members.contains_key(player) {
            return Err((
                ErrorCode::AlreadyJoinedTheRoom,
                format!("already a member of room {:?}", &*self.id),
            ));
        }
        if let Some(requested) = config {
            if requested != self.max_players {
                return Err((
                    ErrorCode::RoomConfigDoesNotMatch,
                    format!(
                        "room {:?} has max_players {}, the request asked for {requested}",
                        &*self.id, self.max_players
                    ),
                ));
            }
        }
        let cap = self.capacity(server_cap);
        if self.members.len() as u64 >= u64::from(cap) {
            return Err((
                ErrorCode::RoomIsFull,
                format!("room {:?} is full ({cap} members)", &*self.id),
            ));
        }
        Ok(())
    }

    /// The effective member cap: the room's own, bounded by the server's.
    pub fn capacity(&self, server_cap: u32) -> u32 {
        match self.max_players {
            0 => server_cap,
            own => own.min(server_cap),
        }
    }

    /// Adds a member (after [`Room::check_join`]).
    pub fn add(&mut self, player: Arc<str>, addr: ConnAddr) {
        self.per_shard[addr.shard] += 1;
        self.members.insert(player, addr);
    }

    /// Removes `player` if it is the member at `addr`; a stale address changes nothing.
    pub fn remove(&mut self, player: &str, addr: ConnAddr) -> bool {
        if self.members.get(player) != Some(&addr) {
            return false;
        }
        self.members.swap_remove(player);
        self.per_shard[addr.shard] -= 1;
        true
    }

    /// The room's own `Arc` of a member's id (shared, not copied).
    pub fn member_id(&self, player: &str) -> Option<&Arc<str>> {
        self.members.get_key_value(player).map(|(id, _)| id)
    }

    /// Where `player` is connected, if it is a member.
    pub fn member(&self, player: &str) -> Option<ConnAddr> {
        self.members.get(player).copied()
    }

    /// Assigns the next message's `seq`: 1, 2, 3, ...
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Shards hosting at least one member.
    pub fn member_shards(&self) -> SmallVec<[ShardId; 8]> {
        self.per_shard
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(s, _)| s)
            .collect()
    }

    /// Member ids, in join order except after removals.
    pub fn player_ids(&self) -> impl Iterator<Item = &str> + Clone {
        self.members.keys().map(|p| &**p)
    }

    /// Whether the room has no members (and should be removed).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(shard: ShardId, conn: u64) -> ConnAddr {
        ConnAddr { shard, conn }
    }

    fn room(max: u32) -> Room {
        Room::new(1, "lobby".into(), "e1".into(), max, 2)
    }

    #[test]
    fn join_rules_in_order() {
        let mut r = room(2);
        assert!(r.check_join("a", Some(2), 100).is_ok());
        r.add("a".into(), addr(0, 1));
        assert_eq!(
            r.check_join("a", None, 100).unwrap_err().0,
            ErrorCode::AlreadyJoinedTheRoom
        );
        assert_eq!(
            r.check_join("b", Some(3), 100).unwrap_err().0,
            ErrorCode::RoomConfigDoesNotMatch
        );
        assert!(
            r.check_join("b", None, 100).is_ok(),
            "no config accepts the room's own"
        );
        r.add("b".into(), addr(1, 1));
        assert_eq!(
            r.check_join("c", Some(2), 100).unwrap_err().0,
            ErrorCode::RoomIsFull
        );
    }

    #[test]
    fn zero_max_players_means_the_server_cap() {
        let mut r = room(0);
        assert_eq!(r.capacity(3), 3);
        for i in 0..3 {
            r.add(format!("p{i}").into(), addr(0, i));
        }
        assert_eq!(
            r.check_join("x", Some(0), 3).unwrap_err().0,
            ErrorCode::RoomIsFull
        );
        assert_eq!(
            room(10).capacity(3),
            3,
            "the server cap bounds a room's own"
        );
    }

    #[test]
    fn seq_counts_from_one() {
        let mut r = room(0);
        assert_eq!((r.next_seq(), r.next_seq(), r.next_seq()), (1, 2, 3));
    }

    #[test]
    fn member_shards_follow_adds_and_removes() {
        let mut r = room(0);
        r.add("a".into(), addr(1, 7));
        assert_eq!(r.member_shards().as_slice(), &[1]);
        r.add("b".into(), addr(0, 3));
        assert_eq!(r.member_shards().as_slice(), &[0, 1]);
        assert!(!r.remove("a", addr(1, 8)), "stale address");
        assert!(r.remove("a", addr(1, 7)));
        assert_eq!(r.member_shards().as_slice(), &[0]);
        assert!(r.remove("b", addr(0, 3)));
        assert!(r.is_empty());
    }
}
