//! Delivery checks: no loss, no duplicate, each sender's messages in the order sent
//! (by the counter in the body) and, on corecast, the room's `seq` increasing with no
//! gap. Pure bookkeeping, no sockets.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Problems found, summed over receivers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckCounts {
    /// Deliveries received (duplicates included).
    pub deliveries: u64,
    /// Messages a receiver should have got and never did.
    pub lost: u64,
    /// The same (sender, counter) received twice by one receiver.
    pub duplicates: u64,
    /// A sender's message received after a later one of the same sender.
    pub sender_reorders: u64,
    /// A room `seq` not above the previous one (corecast only).
    pub seq_reorders: u64,
    /// Room `seq` values skipped between two deliveries (corecast only).
    pub seq_gaps: u64,
    /// Deliveries to a connection that was not in the sender's room, or undecodable.
    pub unexpected: u64,
}

impl CheckCounts {
    /// Adds another set of counts.
    pub fn add(&mut self, o: &CheckCounts) {
        self.deliveries += o.deliveries;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.sender_reorders += o.sender_reorders;
        self.seq_reorders += o.seq_reorders;
        self.seq_gaps += o.seq_gaps;
        self.unexpected += o.unexpected;
    }

    /// Whether every delivery was exactly as expected.
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.duplicates == 0
            && self.sender_reorders == 0
            && self.seq_reorders == 0
            && self.seq_gaps == 0
            && self.unexpected == 0
    }
}

/// What one receiver saw of one sender.
#[derive(Debug, Clone, Default)]
struct SenderTrack {
    /// The first counter this receiver may expect (0 for a member from the start; the
    /// first one seen for a member that joined mid-stream). `None` until anchored.
    first: Option<u64>,
    /// Every counter in `first..next` has been seen.
    next: u64,
    /// Counters above `next` seen out of order.
    ahead: BTreeSet<u64>,
    /// Highest counter seen.
    max_seen: Option<u64>,
    /// Distinct counters seen.
    unique: u64,
}

impl SenderTrack {
    fn anchored_at_zero() -> Self {
        Self {
            first: Some(0),
            ..Self::default()
        }
    }

    /// Returns whether this delivery is new (not a duplicate).
    fn on_counter(&mut self, c: u64, counts: &mut CheckCounts) -> bool {
        let Some(first) = self.first else {
            self.first = Some(c);
            self.next = c + 1;
            self.max_seen = Some(c);
            self.unique = 1;
            return true;
        };
        if c < first {
            // Older than the anchor of a member that joined mid-stream: it arrived
            // after a later message of the same sender.
            counts.sender_reorders += 1;
            return true;
        }
        if c < self.next || self.ahead.contains(&c) {
            counts.duplicates += 1;
            return false;
        }
        if self.max_seen.is_some_and(|m| c < m) {
            counts.sender_reorders += 1;
        }
        if c == self.next {
            self.next += 1;
            while self.ahead.remove(&self.next) {
                self.next += 1;
            }
        } else {
            self.ahead.insert(c);
        }
        self.max_seen = Some(self.max_seen.map_or(c, |m| m.max(c)));
        self.unique += 1;
        true
    }

    /// Messages in `first..=max_seen` never seen (holes in what did arrive).
    fn holes(&self) -> u64 {
        match (self.first, self.max_seen) {
            (Some(first), Some(max)) => (max + 1 - first).saturating_sub(self.unique),
            _ => 0,
        }
    }
}

/// Everything one receiver (one member connection) tracks.
#[derive(Debug, Clone)]
pub struct ReceiverCheck {
    senders: Vec<SenderTrack>,
    last_seq: Option<u64>,
}

impl ReceiverCheck {
    /// A receiver that is a member from before the first message: it must see every
    /// message of each of the room's `n_senders` senders from counter 0.
    pub fn from_start(n_senders: usize) -> Self {
        Self {
            senders: vec![SenderTrack::anchored_at_zero(); n_senders],
            last_seq: None,
        }
    }

    /// A receiver that joins mid-stream: each sender's first delivery anchors it.
    pub fn mid_stream(n_senders: usize) -> Self {
        Self {
            senders: vec![SenderTrack::default(); n_senders],
            last_seq: None,
        }
    }

    /// Checks one delivery from the room's sender number `sender` (its index within
    /// the room) with body counter `counter` and, on corecast, the room `seq`.
    /// Returns whether the delivery was new (not a duplicate).
    pub fn on_delivery(
        &mut self,
        sender: usize,
        counter: u64,
        seq: Option<u64>,
        counts: &mut CheckCounts,
    ) -> bool {
        counts.deliveries += 1;
        if let Some(seq) = seq {
            match self.last_seq {
                Some(last) if seq <= last => counts.seq_reorders += 1,
                Some(last) if seq > last + 1 => counts.seq_gaps += seq - last - 1,
                _ => {}
            }
            self.last_seq = Some(self.last_seq.map_or(seq, |l| l.max(seq)));
        }
        match self.senders.get_mut(sender) {
            Some(track) => track.on_counter(counter, counts),
            None => {
                counts.unexpected += 1;
                false
            }
        }
    }

    /// Loss for a member from the start: `sent[i]` messages of sender `i` were sent,
    /// each should have arrived once.
    pub fn lost_from_start(&self, sent: &[u64]) -> u64 {
        self.senders
            .iter()
            .zip(sent)
            .map(|(t, &n)| n.saturating_sub(t.unique))
            .sum()
    }

    /// Loss for a member that joined mid-stream: holes between the first and the last
    /// message it got from each sender (what was sent before its join or after its
    /// leave is not its to receive).
    pub fn lost_mid_stream(&self) -> u64 {
        self.senders.iter().map(SenderTrack::holes).sum()
    }

    /// The highest room `seq` seen (or anchored with [`ReceiverCheck::set_seq_anchor`]).
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// Sets where the room `seq` is taken to stand: `Some(s)`, the next delivery must
    /// carry `s + 1` (a joiner that learnt the room's last seq); `None`, the next one
    /// anchors it (a room that started counting afresh).
    pub fn set_seq_anchor(&mut self, seq: Option<u64>) {
        self.last_seq = seq;
    }

    /// Distinct messages received.
    #[cfg(test)]
    pub fn unique_received(&self) -> u64 {
        self.senders.iter().map(|t| t.unique).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(check: &mut ReceiverCheck, msgs: &[(usize, u64, u64)]) -> CheckCounts {
        let mut counts = CheckCounts::default();
        for &(sender, counter, seq) in msgs {
            check.on_delivery(sender, counter, Some(seq), &mut counts);
        }
        counts
    }

    #[test]
    fn clean_stream_is_clean() {
        let mut c = ReceiverCheck::from_start(2);
        let counts = feed(
            &mut c,
            &[(0, 0, 1), (1, 0, 2), (0, 1, 3), (1, 1, 4), (0, 2, 5)],
        );
        assert!(counts.is_clean(), "{counts:?}");
        assert_eq!(c.lost_from_start(&[3, 2]), 0);
        assert_eq!(c.unique_received(), 5);
    }

    #[test]
    fn a_dropped_message_is_a_loss_and_a_seq_gap() {
        let mut c = ReceiverCheck::from_start(1);
        // Counter 2 (seq 3) never arrives.
        let counts = feed(&mut c, &[(0, 0, 1), (0, 1, 2), (0, 3, 4), (0, 4, 5)]);
        assert_eq!(counts.seq_gaps, 1);
        assert_eq!(counts.sender_reorders, 0);
        assert_eq!(c.lost_from_start(&[5]), 1);
    }

    #[test]
    fn a_lost_tail_is_a_loss() {
        let mut c = ReceiverCheck::from_start(1);
        feed(&mut c, &[(0, 0, 1), (0, 1, 2)]);
        assert_eq!(c.lost_from_start(&[4]), 2, "two sent messages never came");
    }

    #[test]
    fn duplicates_are_counted_once_and_not_as_new() {
        let mut c = ReceiverCheck::from_start(1);
        let mut counts = CheckCounts::default();
        assert!(c.on_delivery(0, 0, Some(1), &mut counts));
        assert!(!c.on_delivery(0, 0, Some(1), &mut counts));
        assert_eq!(counts.duplicates, 1);
        assert_eq!(counts.seq_reorders, 1, "a repeated seq is not increasing");
        assert_eq!(c.lost_from_start(&[1]), 0);
    }

    #[test]
    fn out_of_order_sender_messages_are_reorders_not_losses() {
        let mut c = ReceiverCheck::from_start(1);
        let mut counts = CheckCounts::default();
        for counter in [0, 2, 1, 3] {
            c.on_delivery(0, counter, None, &mut counts);
        }
        assert_eq!(counts.sender_reorders, 1);
        assert_eq!(counts.duplicates, 0);
        assert_eq!(c.lost_from_start(&[4]), 0);
        // A later duplicate of a message that arrived out of order is still caught.
        c.on_delivery(0, 2, None, &mut counts);
        assert_eq!(counts.duplicates, 1);
    }

    #[test]
    fn seq_going_backwards_is_a_seq_reorder() {
        let mut c = ReceiverCheck::from_start(2);
        let counts = feed(&mut c, &[(0, 0, 2), (1, 0, 1)]);
        assert_eq!(counts.seq_reorders, 1);
        assert_eq!(counts.sender_reorders, 0, "different senders");
    }

    #[test]
    fn mid_stream_member_counts_holes_only() {
        let mut c = ReceiverCheck::mid_stream(1);
        // Joined while counters 0..10 were already sent; saw 10, 11, 13, left.
        let counts = feed(&mut c, &[(0, 10, 11), (0, 11, 12), (0, 13, 14)]);
        assert_eq!(c.lost_mid_stream(), 1, "12 is a hole");
        assert_eq!(counts.seq_gaps, 1);
    }

    #[test]
    fn unknown_sender_is_unexpected() {
        let mut c = ReceiverCheck::from_start(1);
        let mut counts = CheckCounts::default();
        c.on_delivery(5, 0, None, &mut counts);
        assert_eq!(counts.unexpected, 1);
        assert!(!counts.is_clean());
    }
}
