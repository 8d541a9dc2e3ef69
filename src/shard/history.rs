//! A room's retained messages (v1.1 history), as its owner keeps them: the newest
//! frames, each the very `Bytes` that was fanned out (a reference count, not a copy),
//! bounded in count and bytes. Pure state, no I/O; the owner bounds all rooms together
//! (`--history-shard-bytes`) and keeps empty rooms for `--history-ttl`.
//!
//! What is retained is always a suffix of the room's numbering: eviction takes the
//! oldest first, so `seq`s `last_seq - len + 1 ..= last_seq` are all there and a
//! resume is complete exactly when it starts inside (or right after) that range.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

/// The `--history-*` bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Messages per room (`--history-messages`); 0 turns history off.
    pub messages: usize,
    /// Frame bytes per room (`--history-bytes`).
    pub bytes: usize,
    /// Frame bytes per shard, all rooms together (`--history-shard-bytes`).
    pub shard_bytes: usize,
    /// How long an empty room is kept (`--history-ttl`).
    pub ttl: Duration,
}

impl HistoryLimits {
    /// History off.
    pub const OFF: HistoryLimits = HistoryLimits {
        messages: 0,
        bytes: 0,
        shard_bytes: 0,
        ttl: Duration::ZERO,
    };

    /// Whether anything is retained at all.
    pub fn enabled(&self) -> bool {
        self.messages > 0 && self.bytes > 0 && self.shard_bytes > 0
    }
}

/// One retained message.
#[derive(Debug)]
pub struct Retained {
    /// Its `seq`.
    pub seq: u64,
    /// The `MessageNotification` frame every recipient was sent.
    pub frame: Bytes,
    /// For a targeted message, the player ids it may be replayed to (its sender and
    /// the targets it named); `None` for a broadcast.
    pub audience: Option<Box<[Arc<str>]>>,
}

impl Retained {
    /// What it is charged against the byte bounds: the frame, plus the ids of a
    /// targeted message's audience.
    pub fn cost(&self) -> usize {
        let ids = self
            .audience
            .as_deref()
            .map_or(0, |ids| ids.iter().map(|id| id.len() + 16).sum());
        self.frame.len() + ids
    }

    /// Whether `player` may see it in a replay.
    pub fn visible_to(&self, player: &str) -> bool {
        self.audience
            .as_deref()
            .is_none_or(|ids| ids.iter().any(|id| &**id == player))
    }
}

/// What a join asks to be replayed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayRequest {
    /// `JoinRequest.since_seq` (0: not a resume).
    pub since_seq: u64,
    /// `JoinRequest.epoch`.
    pub epoch: String,
    /// `JoinRequest.history_limit` (0: none).
    pub limit: u32,
}

impl ReplayRequest {
    /// Whether the join asks for anything (a v1 join does not).
    pub fn wants_replay(&self) -> bool {
        self.since_seq > 0 || self.limit > 0
    }
}

/// What a join replays and whether a resume found everything.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replay {
    /// The frames, oldest first.
    pub frames: Vec<Bytes>,
    /// `JoinResponse.recovered`.
    pub recovered: bool,
    /// Whether the join was a resume (asked `since_seq` > 0).
    pub resume: bool,
}

/// A room's retained messages, oldest first.
#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<Retained>,
    bytes: usize,
}

/// What a change to a history did to its totals.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    /// Messages removed.
    pub evicted: usize,
    /// Bytes removed.
    pub evicted_bytes: usize,
}

impl History {
    /// Messages retained.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes retained (as [`Retained::cost`] counts them).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The oldest retained `seq`.
    pub fn first_seq(&self) -> Option<u64> {
        self.entries.front().map(|e| e.seq)
    }

    /// Retains `entry` (the room's newest message), then evicts the oldest until the
    /// room's bounds hold again; an entry larger than the byte bound is not kept.
    pub fn push(&mut self, entry: Retained, limits: &HistoryLimits) -> Delta {
        debug_assert!(self.entries.back().is_none_or(|e| e.seq < entry.seq));
        self.bytes += entry.cost();
        self.entries.push_back(entry);
        let mut delta = Delta::default();
        while self.entries.len() > limits.messages || self.bytes > limits.bytes {
            self.pop(&mut delta);
        }
        delta
    }

    /// Evicts every entry up to and including `seq` (the shard-wide bound).
    pub fn evict_through(&mut self, seq: u64) -> Delta {
        let mut delta = Delta::default();
        while self.first_seq().is_some_and(|first| first <= seq) {
            self.pop(&mut delta);
        }
        delta
    }

    /// Forgets everything.
    pub fn clear(&mut self) -> Delta {
        let delta = Delta {
            evicted: self.entries.len(),
            evicted_bytes: self.bytes,
        };
        self.entries.clear();
        self.bytes = 0;
        delta
    }

    fn pop(&mut self, delta: &mut Delta) {
        if let Some(e) = self.entries.pop_front() {
            let cost = e.cost();
            self.bytes -= cost;
            delta.evicted += 1;
            delta.evicted_bytes += cost;
        }
    }

    /// The replay for `player` joining with `req` in a room whose epoch is `epoch`
    /// and whose latest message is `last_seq`.
    ///
    /// - A resume (`since_seq` > 0, same epoch) gets every retained message after
    ///   `since_seq` that `player` may see; `recovered` is true exactly when none was
    ///   missing (the history reaches back to `since_seq + 1`) and `limit`, if set,
    ///   did not cut the replay short.
    /// - A resume in another epoch is not recovered; like a join without a resume it
    ///   gets the last `limit` messages (none when `limit` is 0).
    pub fn replay(&self, player: &str, req: &ReplayRequest, epoch: &str, last_seq: u64) -> Replay {
        let resume = req.since_seq > 0;
        let limit = (req.limit > 0).then_some(req.limit as usize);
        if resume && req.epoch == epoch {
            let oldest_missing_ok = last_seq.saturating_sub(self.entries.len() as u64);
            let mut frames: Vec<Bytes> = self
                .entries
                .iter()
                .filter(|e| e.seq > req.since_seq && e.visible_to(player))
                .map(|e| e.frame.clone())
                .collect();
            let mut recovered = req.since_seq >= oldest_missing_ok;
            if let Some(limit) = limit.filter(|&l| frames.len() > l) {
                frames.drain(..frames.len() - limit);
                recovered = false;
            }
            return Replay {
                frames,
                recovered,
                resume,
            };
        }
        let frames = match limit {
            Some(limit) => {
                let mut last: Vec<Bytes> = self
                    .entries
                    .iter()
                    .rev()
                    .filter(|e| e.visible_to(player))
                    .take(limit)
                    .map(|e| e.frame.clone())
                    .collect();
                last.reverse();
                last
            }
            None => Vec::new(),
        };
        Replay {
            frames,
            recovered: false,
            resume,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(messages: usize, bytes: usize) -> HistoryLimits {
        HistoryLimits {
            messages,
            bytes,
            shard_bytes: usize::MAX,
            ttl: Duration::from_secs(1),
        }
    }

    fn broadcast(seq: u64, len: usize) -> Retained {
        Retained {
            seq,
            frame: Bytes::from(vec![seq as u8; len]),
            audience: None,
        }
    }

    fn targeted(seq: u64, ids: &[&str]) -> Retained {
        Retained {
            seq,
            frame: Bytes::from(vec![seq as u8; 10]),
            audience: Some(ids.iter().map(|&id| Arc::from(id)).collect()),
        }
    }

    fn seqs(frames: &[Bytes]) -> Vec<u8> {
        frames.iter().map(|f| f[0]).collect()
    }

    fn resume(epoch: &str, since_seq: u64, limit: u32) -> ReplayRequest {
        ReplayRequest {
            since_seq,
            epoch: epoch.into(),
            limit,
        }
    }

    #[test]
    fn count_and_byte_bounds_evict_the_oldest() {
        let mut h = History::default();
        let l = limits(3, 1000);
        for seq in 1..=5 {
            h.push(broadcast(seq, 100), &l);
        }
        assert_eq!((h.len(), h.bytes(), h.first_seq()), (3, 300, Some(3)));
        let l = limits(100, 250);
        let delta = h.push(broadcast(6, 100), &l);
        assert_eq!(delta.evicted, 2, "400 bytes over a 250 bound: two go");
        assert_eq!((h.len(), h.first_seq()), (2, Some(5)));
        let delta = h.push(broadcast(7, 300), &l);
        assert!(h.is_empty(), "an entry over the byte bound is not kept");
        assert_eq!(delta.evicted_bytes, 500);
    }

    #[test]
    fn a_resume_is_recovered_exactly_when_history_reaches_back() {
        let mut h = History::default();
        let l = limits(3, 1000);
        for seq in 1..=5 {
            h.push(broadcast(seq, 10), &l);
        }
        // Retained: 3, 4, 5.
        let r = h.replay("p", &resume("e", 2, 0), "e", 5);
        assert_eq!((seqs(&r.frames), r.recovered), (vec![3, 4, 5], true));
        let r = h.replay("p", &resume("e", 1, 0), "e", 5);
        assert_eq!(
            (seqs(&r.frames), r.recovered),
            (vec![3, 4, 5], false),
            "2 is gone"
        );
        let r = h.replay("p", &resume("e", 5, 0), "e", 5);
        assert_eq!((r.frames.len(), r.recovered), (0, true), "nothing missed");
        let r = h.replay("p", &resume("old", 4, 0), "e", 5);
        assert_eq!((r.frames.len(), r.recovered), (0, false), "another epoch");
        let r = h.replay("p", &resume("old", 4, 2), "e", 5);
        assert_eq!((seqs(&r.frames), r.recovered), (vec![4, 5], false));
        let r = h.replay("p", &resume("e", 2, 2), "e", 5);
        assert_eq!(
            (seqs(&r.frames), r.recovered),
            (vec![4, 5], false),
            "a limit that cuts a resume short is not a recovery"
        );
    }

    #[test]
    fn an_empty_history_recovers_only_what_was_never_sent() {
        let h = History::default();
        assert!(h.replay("p", &resume("e", 7, 0), "e", 7).recovered);
        assert!(!h.replay("p", &resume("e", 6, 0), "e", 7).recovered);
    }

    #[test]
    fn history_limit_without_a_resume_gives_the_last_n_visible() {
        let mut h = History::default();
        let l = limits(10, 1000);
        h.push(broadcast(1, 10), &l);
        h.push(targeted(2, &["a", "b"]), &l);
        h.push(broadcast(3, 10), &l);
        h.push(targeted(4, &["c"]), &l);
        let r = h.replay("a", &resume("", 0, 2), "e", 4);
        assert_eq!(
            (seqs(&r.frames), r.recovered, r.resume),
            (vec![2, 3], false, false)
        );
        let r = h.replay("z", &resume("", 0, 10), "e", 4);
        assert_eq!(
            seqs(&r.frames),
            vec![1, 3],
            "targeted ones only to their audience"
        );
        let r = h.replay("c", &resume("e", 1, 0), "e", 4);
        assert_eq!((seqs(&r.frames), r.recovered), (vec![3, 4], true));
        assert!(h
            .replay("c", &ReplayRequest::default(), "e", 4)
            .frames
            .is_empty());
    }

    #[test]
    fn evict_through_and_clear_report_what_they_freed() {
        let mut h = History::default();
        let l = limits(10, 1000);
        for seq in 1..=4 {
            h.push(broadcast(seq, 10), &l);
        }
        h.push(targeted(5, &["ab"]), &l);
        assert_eq!(h.bytes(), 40 + 10 + 2 + 16);
        assert_eq!(
            h.evict_through(2),
            Delta {
                evicted: 2,
                evicted_bytes: 20
            }
        );
        assert_eq!(h.first_seq(), Some(3));
        assert_eq!(
            h.clear(),
            Delta {
                evicted: 3,
                evicted_bytes: 48
            }
        );
        assert_eq!(h.bytes(), 0);
    }
}
