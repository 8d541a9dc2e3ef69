//! Unit tests of the outbound queue, without a socket.

use super::*;

fn frame(n: usize) -> Bytes {
    Bytes::from(vec![b'x'; n])
}

fn slow() -> Bytes {
    Bytes::from_static(b"SLOW")
}

#[test]
fn push_counts_bytes_and_consume_releases_them() {
    let out = Outbound::new(100);
    assert_eq!(out.push(&frame(40), slow), Push::Queued);
    assert_eq!(out.push(&frame(60), slow), Push::Queued);
    assert_eq!(out.queued_bytes(), 100);
    out.consume(50);
    assert_eq!(out.queued_bytes(), 50);
    assert_eq!(out.front().unwrap().len(), 50, "second frame, 10 bytes in");
    out.consume(50);
    assert!(out.is_empty());
}

#[test]
fn passing_the_limit_cuts_and_keeps_a_partly_written_front() {
    let out = Outbound::new(100);
    out.push(&frame(60), slow);
    out.push(&frame(35), slow);
    out.consume(10);
    // The client has stopped reading since (see the next test for one that reads).
    stopped_reading(&out);
    // 85 bytes queued; 20 more would make 105 > 100.
    assert_eq!(out.push(&frame(20), slow), Push::SlowConsumer);
    assert_eq!(out.state(), OutState::Cut);
    let queue = out.queue.borrow();
    assert_eq!(queue.len(), 2);
    assert_eq!(
        queue[0].len(),
        50,
        "the started frame is finished, not torn"
    );
    assert_eq!(&queue[1][..], b"SLOW");
    drop(queue);
    assert_eq!(out.push(&frame(1), slow), Push::Closed);
}

#[test]
fn past_the_shard_budget_the_queues_behind_are_cut_and_the_others_are_not() {
    let budget = Rc::new(ShardBudget::new(80));
    let behind = Outbound::with_budget(100, budget.clone());
    let keeping_up = Outbound::with_budget(100, budget.clone());
    assert_eq!(behind.push(&frame(60), slow), Push::Queued);
    assert_eq!(keeping_up.push(&frame(30), slow), Push::Queued);
    assert_eq!(budget.queued(), 90);
    // Over the shard's 80: a queue within half its own limit still takes frames...
    assert_eq!(keeping_up.push(&frame(10), slow), Push::Queued);
    // ...one more than half its limit behind is cut.
    assert_eq!(behind.push(&frame(10), slow), Push::SlowConsumer);
    // The cut queue keeps only its last frame; a dropped queue gives back all.
    assert_eq!(budget.queued(), 40 + 4);
    drop(behind);
    assert_eq!(budget.queued(), 40);
    keeping_up.consume(40);
    assert_eq!(budget.queued(), 0);
}

/// As if the last write were longer ago than [`READING_WINDOW`].
fn stopped_reading(out: &Outbound) {
    let long_ago = Instant::now() - READING_WINDOW * 2;
    out.full_since.set(Some(long_ago));
}

#[test]
fn a_client_that_reads_may_pass_the_limit_up_to_the_slack_and_no_further() {
    let out = Outbound::new(100);
    out.push(&frame(60), slow);
    out.consume(10);
    // It wrote just now: a burst may take it past the limit...
    assert_eq!(out.push(&frame(90), slow), Push::Queued);
    assert_eq!(out.queued_bytes(), 140);
    // ...up to READER_SLACK times the limit, not beyond.
    assert_eq!(out.push(&frame(260), slow), Push::Queued);
    assert_eq!(out.push(&frame(1), slow), Push::SlowConsumer);
    // Without a recent write, the limit itself holds.
    let stalled = Outbound::new(100);
    stalled.push(&frame(60), slow);
    stalled.consume(10);
    stopped_reading(&stalled);
    assert_eq!(stalled.push(&frame(90), slow), Push::SlowConsumer);
}

#[test]
fn a_reply_within_the_limit_is_queued_whatever_its_size_but_counts() {
    let out = Outbound::new(10);
    assert_eq!(out.push_reply(frame(50), slow), Push::Queued);
    assert_eq!(out.queued_bytes(), 50);
    assert_eq!(
        out.push(&frame(1), slow),
        Push::SlowConsumer,
        "notifications still do"
    );
}

#[test]
fn a_reply_to_a_queue_already_over_the_limit_cuts() {
    let out = Outbound::new(10);
    assert_eq!(out.push_reply(frame(50), slow), Push::Queued);
    assert_eq!(out.push_reply(frame(1), slow), Push::SlowConsumer);
    assert_eq!(out.state(), OutState::Cut);
    assert_eq!(
        &out.front().unwrap()[..],
        b"SLOW",
        "the backlog went, the error stays"
    );
}

#[test]
fn cut_with_an_unstarted_front_drops_the_backlog() {
    let out = Outbound::new(10);
    out.push(&frame(10), slow);
    assert_eq!(out.push(&frame(1), slow), Push::SlowConsumer);
    assert_eq!(out.queue.borrow().len(), 1);
    assert_eq!(out.queued_bytes(), 4);
}

#[test]
fn close_after_queues_a_last_frame_beyond_the_limit() {
    let out = Outbound::new(10);
    out.push(&frame(10), slow);
    out.close_after(Some(frame(5)), Instant::now());
    assert!(matches!(out.state(), OutState::Draining { .. }));
    assert_eq!(out.queued_bytes(), 15);
    assert_eq!(out.push(&frame(1), slow), Push::Closed);
}

#[test]
fn write_to_sends_every_queued_frame_in_one_call() {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let out = Outbound::new(1000);
    out.push(&Bytes::from_static(b"ab"), slow);
    out.push(&Bytes::from_static(b"cde"), slow);
    use std::os::fd::AsRawFd;
    assert_eq!(out.write_to(a.as_raw_fd()).unwrap(), 5);
    assert!(out.is_empty());
    let mut got = [0u8; 5];
    use std::io::Read;
    (&b).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"abcde");
}

#[test]
fn a_reply_with_its_replay_is_checked_once_as_one_reply() {
    let out = Outbound::new(100);
    out.push(&frame(90), slow);
    // Within the limit before the reply: the response and its whole replay are queued,
    // past the limit (a join's replay never cuts its joiner).
    let replay = vec![frame(40), frame(40)];
    assert_eq!(out.push_reply_with(frame(10), replay, slow), Push::Queued);
    assert_eq!(out.queued_bytes(), 180);
    // Already over the limit: cut, and nothing of the replay is queued.
    let replay = vec![frame(40)];
    assert_eq!(
        out.push_reply_with(frame(10), replay, slow),
        Push::SlowConsumer
    );
    assert_eq!(out.state(), OutState::Cut);
    let queue = out.queue.borrow();
    assert_eq!(
        queue.len(),
        1,
        "the backlog dropped, nothing of the replay queued"
    );
    assert_eq!(queue[0], slow());
}
