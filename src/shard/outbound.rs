//! `Outbound`: a connection's queue of frames to send, bounded in bytes. Frames are
//! shared `Bytes` (a broadcast frame is one allocation however many queues hold it);
//! the writer hands up to `MAX_IOV` of them to one `sendmsg`, so a burst costs one
//! syscall and no copy.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};

use crate::notify::LocalNotify;

/// Frames handed to one `sendmsg`.
const MAX_IOV: usize = 64;

/// How far past the byte limit a queue may grow while its client is reading: a burst
/// already on its way between shards when the senders were slowed down lands on a
/// member that reads, instead of cutting it. A client that writes nothing is cut at the
/// limit itself, so this is the bound only for clients that read.
pub const READER_SLACK: usize = 4;

/// A client whose writer wrote within this long counts as reading (long enough that a
/// reader descheduled on a busy machine still counts).
pub const READING_WINDOW: Duration = Duration::from_millis(500);

thread_local! {
    /// Bytes queued on this shard's connections since the last yield point (see
    /// [`queued_since_yield`]).
    static QUEUED_SINCE_YIELD: Cell<usize> = const { Cell::new(0) };
}

/// Takes the bytes queued on this thread's (shard's) connections since the last call.
///
/// The tasks that queue frames (a sender's reader fanning out, the inbox handing out
/// deliveries) let the writers run when this passes a budget: without that, one read
/// of a back-to-back burst could queue megabytes onto every member before any writer
/// ran, and cut members that read as fast as they can.
pub fn queued_since_yield() -> usize {
    QUEUED_SINCE_YIELD.with(|q| q.replace(0))
}

/// Counts `bytes` queued for another shard (a payload forwarded to a room's owner)
/// toward the same budget: the flusher and the peers then get their turn too.
pub fn note_forwarded(bytes: usize) {
    QUEUED_SINCE_YIELD.with(|q| q.set(q.get() + bytes));
}

/// Where a connection's output stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutState {
    /// Accepting frames.
    Open,
    /// No new frames; the writer sends what is queued until `deadline`, then closes.
    Draining {
        /// When the writer gives up on a client that does not read.
        deadline: Instant,
    },
    /// Slow consumer: the writer makes one last non-blocking attempt, then closes.
    Cut,
}

/// The result of [`Outbound::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Queued for sending.
    Queued,
    /// The connection is closing; the frame was dropped.
    Closed,
    /// The frame would have passed the byte limit: the connection was cut.
    SlowConsumer,
}

/// What all the outbound queues of one shard may hold together
/// (`--max-shard-outbound-bytes`), and what they hold now.
#[derive(Debug)]
pub struct ShardBudget {
    cap: usize,
    queued: Cell<usize>,
}

impl ShardBudget {
    /// A budget of `cap` bytes, nothing queued.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            queued: Cell::new(0),
        }
    }

    /// Bytes queued on the shard's connections.
    pub fn queued(&self) -> usize {
        self.queued.get()
    }

    fn add(&self, n: usize) {
        self.queued.set(self.queued.get() + n);
    }

    fn sub(&self, n: usize) {
        self.queued.set(self.queued.get().saturating_sub(n));
    }
}

/// A connection's outbound queue; owned by its shard, drained by its writer task.
#[derive(Debug)]
pub struct Outbound {
    queue: RefCell<VecDeque<Bytes>>,
    queued_bytes: Cell<usize>,
    max_bytes: usize,
    state: Cell<OutState>,
    /// Whether the front frame has been partly written (it must then be finished).
    front_started: Cell<bool>,
    /// When the queue last went from empty to non-empty (delivery latency metric).
    busy_since: Cell<Option<Instant>>,
    /// Whether the writer has ever written something (the client has read).
    has_written: Cell<bool>,
    /// When the writer found the socket full, if it has written nothing since.
    full_since: Cell<Option<Instant>>,
    /// Wakes the writer: new frames or a state change.
    pub(crate) writer: LocalNotify,
    /// The shard's budget this queue counts toward, if any.
    shard: Option<Rc<ShardBudget>>,
}

impl Outbound {
    /// An empty open queue holding at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            queue: RefCell::new(VecDeque::new()),
            queued_bytes: Cell::new(0),
            max_bytes,
            state: Cell::new(OutState::Open),
            front_started: Cell::new(false),
            busy_since: Cell::new(None),
            has_written: Cell::new(false),
            full_since: Cell::new(None),
            writer: LocalNotify::default(),
            shard: None,
        }
    }

    /// An empty open queue holding at most `max_bytes`, counted toward `shard`.
    pub fn with_budget(max_bytes: usize, shard: Rc<ShardBudget>) -> Self {
        let mut out = Self::new(max_bytes);
        out.shard = Some(shard);
        out
    }

    /// Whether the shard is over its budget and this queue is among those behind:
    /// the shard's cap trims the connections furthest behind first.
    fn over_shard_budget(&self, adding: usize) -> bool {
        self.shard
            .as_ref()
            .is_some_and(|b| b.queued() + adding > b.cap && self.is_behind())
    }

    /// Queues a frame; a frame that would pass the limit cuts the connection, and
    /// `slow_consumer_frame` is queued after the partly written frame, if any.
    /// The frame is borrowed: a shared broadcast frame is cloned (a reference count)
    /// only for a queue that takes it, not for one that is closing.
    pub fn push(&self, frame: &Bytes, slow_consumer_frame: impl FnOnce() -> Bytes) -> Push {
        if self.state.get() != OutState::Open {
            return Push::Closed;
        }
        let queued = self.queued_bytes.get() + frame.len();
        let over =
            queued > self.max_bytes && !(queued <= self.max_bytes * READER_SLACK && self.reading());
        if over || self.over_shard_budget(frame.len()) {
            self.cut(slow_consumer_frame());
            return Push::SlowConsumer;
        }
        self.enqueue(frame.clone());
        Push::Queued
    }

    /// Whether the client reads: its socket has taken bytes and is not full, or filled
    /// up less than [`READING_WINDOW`] ago. Read only past the byte limit.
    fn reading(&self) -> bool {
        self.reading_at(Instant::now())
    }

    /// [`Outbound::reading`] at `now`.
    pub fn reading_at(&self, now: Instant) -> bool {
        match self.full_since.get() {
            Some(full) => now.saturating_duration_since(full) < READING_WINDOW,
            None => self.has_written.get(),
        }
    }

    /// The writer found the socket full (the clock for [`Outbound::reading`] starts).
    pub fn mark_full(&self) {
        if self.full_since.get().is_none() {
            self.full_since.set(Some(Instant::now()));
        }
    }

    /// Queues a response to the client's own request. A response is queued whatever
    /// its size while the queue is within its limit (a large room's `JoinResponse` must
    /// not cut its own joiner); one to a client whose queue is already over the limit
    /// cuts it like a notification would. Without that, a client that keeps sending
    /// requests and never reads would grow its queue without bound, rate limit or not.
    pub fn push_reply(&self, frame: Bytes, slow_consumer_frame: impl FnOnce() -> Bytes) -> Push {
        if self.state.get() != OutState::Open {
            return Push::Closed;
        }
        if self.queued_bytes.get() > self.max_bytes {
            self.cut(slow_consumer_frame());
            return Push::SlowConsumer;
        }
        self.enqueue(frame);
        Push::Queued
    }

    /// Queues a response followed by frames that belong to it (a join's replay), as
    /// one reply: checked against the limit once, before the first ([`Outbound::push_reply`]).
    pub fn push_reply_with(
        &self,
        frame: Bytes,
        rest: impl IntoIterator<Item = Bytes>,
        slow_consumer_frame: impl FnOnce() -> Bytes,
    ) -> Push {
        let pushed = self.push_reply(frame, slow_consumer_frame);
        if pushed == Push::Queued {
            for frame in rest {
                self.enqueue(frame);
            }
        }
        pushed
    }

    fn enqueue(&self, frame: Bytes) {
        self.queued_bytes.set(self.queued_bytes.get() + frame.len());
        if let Some(b) = &self.shard {
            b.add(frame.len());
        }
        QUEUED_SINCE_YIELD.with(|q| q.set(q.get() + frame.len()));
        let mut queue = self.queue.borrow_mut();
        queue.push_back(frame);
        if queue.len() == 1 {
            self.busy_since.set(Some(crate::metrics::turn_started()));
            // The writer sleeps only on an empty queue.
            self.writer.notify();
        }
    }

    /// Whether more than half the byte limit is queued: the client is behind.
    pub fn is_behind(&self) -> bool {
        self.queued_bytes.get() > self.max_bytes / 2
    }

    /// Whether the front frame is partly written (it must then be finished first).
    pub fn front_started(&self) -> bool {
        self.front_started.get()
    }

    /// Queues a last frame (beyond the limit), then drains until `deadline`.
    pub fn close_after(&self, last: Option<Bytes>, deadline: Instant) {
        if self.state.get() != OutState::Open {
            return;
        }
        if let Some(frame) = last {
            self.enqueue(frame);
        }
        self.state.set(OutState::Draining { deadline });
        self.writer.notify();
    }

    /// Wakes the writer without queueing a frame (it has control frames to send).
    pub fn wake_writer(&self) {
        self.writer.notify();
    }

    /// Cuts a slow consumer: drops the backlog (but a partly written front), queues
    /// `last`, and makes the writer close after one last attempt.
    pub fn cut(&self, last: Bytes) {
        let mut queue = self.queue.borrow_mut();
        let keep = usize::from(self.front_started.get() && !queue.is_empty());
        queue.truncate(keep);
        queue.push_back(last);
        let before = self.queued_bytes.get();
        self.queued_bytes.set(queue.iter().map(Bytes::len).sum());
        if let Some(b) = &self.shard {
            b.sub(before);
            b.add(self.queued_bytes.get());
        }
        self.state.set(OutState::Cut);
        self.writer.notify();
    }

    /// The current state.
    pub fn state(&self) -> OutState {
        self.state.get()
    }

    /// Whether the connection stopped accepting frames.
    pub fn is_closing(&self) -> bool {
        self.state.get() != OutState::Open
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.get()
    }

    /// Whether nothing is left to write.
    pub fn is_empty(&self) -> bool {
        self.queue.borrow().is_empty()
    }

    /// Writes as much of the queue as the socket takes now, with one non-blocking
    /// `sendmsg`; returns the bytes written (`WouldBlock` when the socket is full).
    pub fn write_to(&self, fd: RawFd) -> io::Result<usize> {
        let written = {
            let queue = self.queue.borrow();
            let mut iov = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_IOV];
            let mut count = 0;
            for (slot, frame) in iov.iter_mut().zip(queue.iter()) {
                slot.iov_base = frame.as_ptr() as *mut libc::c_void;
                slot.iov_len = frame.len();
                count += 1;
            }
            if count == 0 {
                return Ok(0);
            }
            // The iovecs point into frames kept alive by the borrowed queue.
            sendmsg(fd, &mut iov[..count])?
        };
        self.consume(written);
        Ok(written)
    }

    /// The queued frames (the front one's unwritten bytes first), for a writer that
    /// frames them itself (WebSocket).
    pub fn frames(&self) -> std::cell::Ref<'_, VecDeque<Bytes>> {
        self.queue.borrow()
    }

    /// The front frame's unwritten bytes, for a blocking write that waits for room.
    pub fn front(&self) -> Option<Bytes> {
        self.queue.borrow().front().cloned()
    }

    /// Marks `n` bytes from the front as written.
    pub fn consume(&self, mut n: usize) {
        let written_total = n as u64;
        if n > 0 {
            // No clock read per write: only a full socket starts the clock.
            self.has_written.set(true);
            self.full_since.set(None);
            if let Some(b) = &self.shard {
                b.sub(n);
            }
        }
        self.queued_bytes.set(self.queued_bytes.get() - n);
        let mut queue = self.queue.borrow_mut();
        while n > 0 {
            let Some(front) = queue.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                queue.pop_front();
                self.front_started.set(false);
            } else {
                front.advance(n);
                self.front_started.set(true);
                n = 0;
            }
        }
        if queue.is_empty() {
            if let Some(since) = self.busy_since.take() {
                crate::metrics::latency(since.elapsed());
            }
        }
        crate::metrics::count(crate::metrics::Count::BytesOut(written_total));
        if queue.is_empty() && queue.capacity() > 4 * MAX_IOV {
            // A burst grew the ring; an idle connection should not keep it.
            queue.shrink_to(MAX_IOV);
        }
    }
}

/// One non-blocking `sendmsg` of `iov` (MSG_DONTWAIT: accepted sockets are blocking
/// fds, which glommio polls); the bytes written. The caller keeps what the iovecs point
/// to alive and unmoved for the call.
pub(crate) fn sendmsg(fd: RawFd, iov: &mut [libc::iovec]) -> io::Result<usize> {
    // SAFETY: msghdr is plain data; zeroed is a valid "no address, no control".
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len();
    // SAFETY: the iovecs are valid for the call, as the caller promises.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

impl Drop for Outbound {
    fn drop(&mut self) {
        // What a closed connection still held no longer counts against its shard.
        if let Some(b) = &self.shard {
            b.sub(self.queued_bytes.get());
        }
    }
}

#[cfg(test)]
#[path = "outbound_tests.rs"]
mod tests;
