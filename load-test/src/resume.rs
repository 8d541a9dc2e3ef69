//! A reconnecting member's accounting across its connections (the `reconnect`
//! scenario). The member keeps one [`ReceiverCheck`] for its whole life, whichever
//! connection a message arrives on, so every message of its room must arrive exactly
//! once and in order over all its connections together: seq 1, 2 on one connection and
//! 3, 4 after a resume is clean; a seq missing across the resume is a gap and a loss, a
//! seq replayed that had already arrived is a duplicate. [`ResumeTrack`] adds what the
//! resumes change: the seq anchor at the first join (the room's `last_seq`), where a new
//! connection resumes (the last seq seen, in the room's epoch), whether each resume
//! came back `recovered`, and which deliveries are replays (seq up to the resumed
//! join's `last_seq`), kept out of the live latency. Pure bookkeeping, no sockets.

use serde::{Deserialize, Serialize};

use crate::check::ReceiverCheck;
use crate::targets::{JoinInfo, ResumePoint};

/// What the members' drops and resumes did, summed over members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeCounts {
    /// Connections dropped (each followed by a reconnect).
    pub drops: u64,
    /// Drops due while the member was still reconnecting or had seen nothing to
    /// resume after: skipped.
    pub drops_skipped: u64,
    /// Drops that closed the socket first.
    pub closed: u64,
    /// Drops that left the old connection open (the new login must replace it).
    pub replaced: u64,
    /// Resumed joins answered.
    pub resumes: u64,
    /// Of those, `recovered` true.
    pub recovered: u64,
    /// Of those, `recovered` false: messages the member can no longer get (an error).
    pub unrecovered: u64,
    /// Resumes that found the room in another epoch.
    pub epoch_changed: u64,
    /// Deliveries that were replays (seq up to the resumed join's `last_seq`).
    pub replayed: u64,
    /// Deliveries on a left-open old connection after its member gave up on it
    /// (ignored, as a real client would).
    pub ignored_on_old: u64,
    /// Left-open old connections that got SESSION_REPLACED.
    pub session_replaced: u64,
    /// Left-open old connections the server closed.
    pub old_closed: u64,
    /// Left-open old connections still open at the end (an error: the new login
    /// should have replaced them).
    pub old_not_closed: u64,
    /// Members whose last reconnect had not finished by the end (an error).
    pub incomplete: u64,
}

impl ResumeCounts {
    /// Adds another set of counts.
    pub fn add(&mut self, o: &ResumeCounts) {
        self.drops += o.drops;
        self.drops_skipped += o.drops_skipped;
        self.closed += o.closed;
        self.replaced += o.replaced;
        self.resumes += o.resumes;
        self.recovered += o.recovered;
        self.unrecovered += o.unrecovered;
        self.epoch_changed += o.epoch_changed;
        self.replayed += o.replayed;
        self.ignored_on_old += o.ignored_on_old;
        self.session_replaced += o.session_replaced;
        self.old_closed += o.old_closed;
        self.old_not_closed += o.old_not_closed;
        self.incomplete += o.incomplete;
    }

    /// Resumes that came back unrecovered, old sessions not replaced, reconnects not
    /// finished: each one fails the run.
    pub fn errors(&self) -> u64 {
        self.unrecovered + self.old_not_closed + self.incomplete
    }
}

/// One reconnecting member's resume state (its deliveries go through its
/// [`ReceiverCheck`], passed in).
#[derive(Debug, Clone, Default)]
pub struct ResumeTrack {
    /// The room's epoch as last seen (None before the first join).
    epoch: Option<String>,
    /// Deliveries with a seq up to this one are replays (the last resume's `last_seq`).
    replay_until: u64,
}

impl ResumeTrack {
    /// The member's first join: the room's epoch, and every seq after the room's
    /// `last_seq` is the member's to receive.
    pub fn on_first_join(&mut self, check: &mut ReceiverCheck, info: &JoinInfo) {
        self.epoch = Some(info.epoch.clone());
        self.replay_until = 0;
        check.set_seq_anchor(Some(info.last_seq));
    }

    /// Where a new connection resumes: after the last seq seen, in the epoch it
    /// counts in. None before the first join, or while the last seq is 0 (nothing sent
    /// yet; the protocol takes only `since_seq` > 0 as a resume).
    pub fn resume_point(&self, check: &ReceiverCheck) -> Option<ResumePoint> {
        let epoch = self.epoch.clone()?;
        let since_seq = check.last_seq().filter(|&s| s > 0)?;
        Some(ResumePoint { since_seq, epoch })
    }

    /// The answer to a resumed join from `from`: counts it, recovered or not, and
    /// makes the seqs up to its `last_seq` replays. In another epoch the seq count
    /// restarts, so the next delivery anchors it again (the loss shows per sender).
    pub fn on_resumed(
        &mut self,
        check: &mut ReceiverCheck,
        from: &ResumePoint,
        info: &JoinInfo,
        counts: &mut ResumeCounts,
    ) {
        counts.resumes += 1;
        if info.recovered {
            counts.recovered += 1;
        } else {
            counts.unrecovered += 1;
        }
        if info.epoch != from.epoch {
            counts.epoch_changed += 1;
            check.set_seq_anchor(None);
            self.epoch = Some(info.epoch.clone());
        }
        self.replay_until = info.last_seq;
    }

    /// Whether a delivery with this seq is a replay of the last resume (not live).
    pub fn is_replay(&self, seq: Option<u64>) -> bool {
        seq.is_some_and(|s| s <= self.replay_until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::CheckCounts;

    fn info(epoch: &str, last_seq: u64, recovered: bool) -> JoinInfo {
        JoinInfo {
            epoch: epoch.into(),
            last_seq,
            recovered,
        }
    }

    /// One sender; its counter `c` is the room's seq `c + 1`. Returns (new, replay)
    /// of each delivery.
    fn deliver(
        track: &ResumeTrack,
        check: &mut ReceiverCheck,
        seqs: &[u64],
        counts: &mut CheckCounts,
    ) -> Vec<(bool, bool)> {
        seqs.iter()
            .map(|&seq| {
                let replay = track.is_replay(Some(seq));
                (check.on_delivery(0, seq - 1, Some(seq), counts), replay)
            })
            .collect()
    }

    /// A member joined at last_seq 0, saw `before` on its first connection, dropped
    /// and resumed with the server answering `resumed`.
    fn member_across_a_resume(
        before: &[u64],
        resumed: JoinInfo,
        after: &[u64],
    ) -> (ReceiverCheck, CheckCounts, ResumeCounts, Vec<(bool, bool)>) {
        let mut check = ReceiverCheck::from_start(1);
        let mut track = ResumeTrack::default();
        let mut counts = CheckCounts::default();
        let mut resume = ResumeCounts::default();
        track.on_first_join(&mut check, &info("e1", 0, false));
        deliver(&track, &mut check, before, &mut counts);
        let from = track
            .resume_point(&check)
            .expect("something to resume after");
        assert_eq!(from.since_seq, *before.last().unwrap());
        assert_eq!(from.epoch, "e1");
        track.on_resumed(&mut check, &from, &resumed, &mut resume);
        let seen = deliver(&track, &mut check, after, &mut counts);
        (check, counts, resume, seen)
    }

    #[test]
    fn seqs_split_over_two_connections_by_a_resume_are_clean() {
        let (check, counts, resume, seen) =
            member_across_a_resume(&[1, 2], info("e1", 4, true), &[3, 4, 5, 6]);
        assert!(counts.is_clean(), "{counts:?}");
        assert_eq!(check.lost_from_start(&[6]), 0);
        assert_eq!(
            (resume.resumes, resume.recovered, resume.errors()),
            (1, 1, 0)
        );
        let replays: Vec<bool> = seen.iter().map(|&(_, replay)| replay).collect();
        assert_eq!(replays, [true, true, false, false], "3 and 4 are replays");
        assert!(seen.iter().all(|&(new, _)| new));
    }

    #[test]
    fn a_seq_missing_across_the_resume_is_a_gap_and_a_loss() {
        let (check, counts, _, _) = member_across_a_resume(&[1, 2], info("e1", 4, true), &[4, 5]);
        assert_eq!(counts.seq_gaps, 1, "3 never came");
        assert_eq!(check.lost_from_start(&[5]), 1);
        assert_eq!(counts.duplicates, 0);
    }

    #[test]
    fn a_seq_replayed_twice_is_a_duplicate() {
        let (check, counts, _, seen) =
            member_across_a_resume(&[1, 2], info("e1", 4, true), &[2, 3, 4]);
        assert_eq!(counts.duplicates, 1, "2 had arrived before the drop");
        assert_eq!(counts.seq_reorders, 1, "and its seq is not above 2");
        assert_eq!(check.lost_from_start(&[4]), 0);
        assert!(!seen[0].0, "a duplicate is not a new delivery");
    }

    #[test]
    fn a_gap_at_the_start_counts_against_the_join_anchor() {
        let mut check = ReceiverCheck::from_start(1);
        let mut track = ResumeTrack::default();
        let mut counts = CheckCounts::default();
        track.on_first_join(&mut check, &info("e1", 0, false));
        assert!(
            track.resume_point(&check).is_none(),
            "nothing to resume after"
        );
        deliver(&track, &mut check, &[2, 3], &mut counts);
        assert_eq!(counts.seq_gaps, 1, "seq 1 was the member's to get");
    }

    #[test]
    fn an_unrecovered_resume_is_an_error_and_another_epoch_reanchors_the_seq() {
        let (_, _, resume, _) = member_across_a_resume(&[1, 2], info("e1", 9, false), &[]);
        assert_eq!((resume.unrecovered, resume.errors()), (1, 1));

        let (check, counts, resume, _) =
            member_across_a_resume(&[1, 2], info("e2", 0, false), &[1]);
        assert_eq!((resume.epoch_changed, resume.unrecovered), (1, 1));
        assert_eq!(
            counts.seq_reorders, 0,
            "seq 1 of the new epoch anchors afresh"
        );
        assert_eq!(counts.duplicates, 1, "counter 0 again: the body says so");
        assert_eq!(check.last_seq(), Some(1));
    }
}
