//! A connection's writer task, plain and TLS: drains the [`Outbound`] queue until it
//! is closed and drained or the socket fails, waits for socket room (or the drain
//! deadline) when the socket is full, and half-closes after a graceful drain.
//!
//! Plain connections hand queued frames straight to `sendmsg` (`Outbound::write_to`:
//! no copy, one system call per batch). TLS connections copy one record's worth of
//! frames into plaintext, hand it to rustls with one `poll_write` (one record, one
//! socket write) and flush when the queue is empty.
//!
//! [`Outbound`]: crate::shard::outbound::Outbound

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::future;

use crate::conn::transport::Transport;
use crate::conn::ws::{self, WsLink};
use crate::conn::ws_writer::WsOut;
use crate::conn::LiveGuard;
use crate::shard::members::{slow_consumer_frame, ConnShared};
use crate::shard::outbound::{OutState, Outbound};

/// Plaintext handed to rustls per write: one full TLS record (16 KiB is the largest
/// record payload), so one socket write per batch of frames.
const TLS_BATCH: usize = 16 * 1024;

/// How long a writer has been unable to write while the connection is open: a socket
/// that takes nothing for `--write-timeout` belongs to a client that stopped reading
/// (cut as a slow consumer, however little it has queued).
#[derive(Debug, Default)]
struct Stalled {
    since: Option<Instant>,
}

impl Stalled {
    /// `written` bytes went out: the clock restarts at the next full socket.
    fn progress(&mut self, written: usize) {
        if written > 0 {
            self.since = None;
        }
    }

    /// When an open connection whose socket is full now is cut.
    fn deadline(&mut self, write_timeout: Option<Duration>) -> Option<Instant> {
        let since = *self.since.get_or_insert_with(Instant::now);
        write_timeout.map(|t| since + t)
    }

    /// The deadline passed: an open connection is cut (the writer then makes its last
    /// attempt); `false` when it was closing anyway.
    fn cut_if_open(&self, conn: &ConnShared) -> bool {
        if conn.out.state() != OutState::Open {
            return false;
        }
        tracing::debug!(
            conn = conn.id,
            "no write progress within --write-timeout: cut"
        );
        conn.out.cut(slow_consumer_frame());
        true
    }
}

/// The one wait both writers make when the socket is full: for room (the write
/// makes progress), for news on the queue, or for the deadline (a drain's end, or
/// `--write-timeout`, which cuts an open connection). `Ok(false)`: the writer is done.
async fn await_room(
    conn: &ConnShared,
    stalled: &mut Stalled,
    deadline: Option<Instant>,
    progress: impl std::future::Future<Output = io::Result<()>>,
) -> io::Result<bool> {
    match wait_for_room(&conn.out, deadline, progress).await {
        Wait::Progress(Ok(())) => stalled.progress(1),
        Wait::Woken => {}
        Wait::Progress(Err(e)) => return Err(e),
        Wait::Deadline => return Ok(stalled.cut_if_open(conn)),
    }
    Ok(true)
}

pub(crate) async fn write_loop(
    conn: Rc<ConnShared>,
    stream: Rc<RefCell<Transport>>,
    live: Rc<LiveGuard>,
    write_timeout: Option<Duration>,
    ws: Option<Rc<WsLink>>,
) {
    let fd = stream.borrow().as_raw_fd();
    let tls = stream.borrow().is_tls();
    let ws = ws.map(|link| WsWrite {
        link,
        out: WsOut::default(),
        ctx: live.ctx.clone(),
        close_sent: false,
    });
    let written = match (tls, ws) {
        (true, ws) => write_frames_tls(&conn, &stream, write_timeout, ws).await,
        (false, Some(ws)) => write_frames_ws(&conn, &stream, fd, write_timeout, ws).await,
        (false, None) => write_frames(&conn, &stream, fd, write_timeout).await,
    };
    if let Err(e) = &written {
        tracing::trace!(conn = conn.id, error = %e, "writer stopped");
    }
    // A graceful close half-closes: the client reads what was flushed, then closes,
    // and the lingering reader sees it. Otherwise both directions go at once, which
    // also wakes the reader (its read returns 0) so it unregisters the connection.
    let graceful = written.is_ok() && matches!(conn.out.state(), OutState::Draining { .. });
    let how = if graceful {
        libc::SHUT_WR
    } else {
        libc::SHUT_RDWR
    };
    // SAFETY: the fd stays open while `stream` lives. For TLS this is the socket under
    // the TLS stream: a cut still wakes the reader, whose TLS read then sees the end.
    unsafe { libc::shutdown(fd, how) };
}

async fn write_frames(
    conn: &ConnShared,
    stream: &RefCell<Transport>,
    fd: RawFd,
    write_timeout: Option<Duration>,
) -> io::Result<()> {
    let mut stalled = Stalled::default();
    loop {
        if conn.out.is_empty() {
            if conn.out.is_closing() {
                return Ok(());
            }
            conn.out.writer.notified().await;
            continue;
        }
        match conn.out.write_to(fd) {
            // A frame left half written means the socket is full: wait, don't retry.
            Ok(n) if conn.out.front_started() => stalled.progress(n),
            Ok(_) => {
                stalled.progress(1);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        // The socket is full.
        let Some(deadline) = full_socket_deadline(conn, &mut stalled, write_timeout) else {
            return Ok(());
        };
        // Wait for room by writing the front frame as soon as the socket takes it. The
        // frame is read from the queue at each poll and consumed in the same poll
        // (glommio's `poll_write` sends synchronously or not at all), so nothing is held
        // across the wait and a cut meanwhile may drop an unstarted front.
        let write = future::poll_fn(|cx| {
            let Some(front) = conn.out.front() else {
                return Poll::Ready(Ok(()));
            };
            let written = stream.borrow_mut().poll_write(cx, &front);
            written.map_ok(|n| conn.out.consume(n))
        });
        conn.out.mark_full();
        if !await_room(conn, &mut stalled, deadline, write).await? {
            return Ok(());
        }
    }
}

/// A WebSocket writer's state: the link to its reader, the front frame's header
/// progress, and whether the closing frame went out.
struct WsWrite {
    link: Rc<WsLink>,
    out: WsOut,
    ctx: Rc<crate::shard::context::ShardContext>,
    close_sent: bool,
}

impl WsWrite {
    /// Queues the close frame once, with the code the reader chose, else 1001 for a
    /// shutdown and 1008 for any other close after an error. `false`: already sent.
    fn queue_close(&mut self) -> bool {
        if self.close_sent {
            return false;
        }
        self.close_sent = true;
        let code = self
            .link
            .close_code
            .get()
            .unwrap_or(if self.ctx.is_ready() {
                ws::close::POLICY_VIOLATION
            } else {
                ws::close::GOING_AWAY
            });
        self.link
            .control
            .borrow_mut()
            .extend_from_slice(&ws::close_frame(code));
        true
    }
}

/// The plain-socket WebSocket writer: [`write_frames`] with each frame's header
/// written by `WsOut` beside the shared payload, and a close frame at the end.
async fn write_frames_ws(
    conn: &ConnShared,
    stream: &RefCell<Transport>,
    fd: RawFd,
    write_timeout: Option<Duration>,
    mut ws: WsWrite,
) -> io::Result<()> {
    let mut stalled = Stalled::default();
    loop {
        let idle = conn.out.is_empty() && ws.link.control.borrow().is_empty();
        if idle {
            if conn.out.is_closing() {
                if conn.out.state() == OutState::Cut || !ws.queue_close() {
                    return Ok(());
                }
                continue;
            }
            conn.out.writer.notified().await;
            continue;
        }
        match ws.out.write_to(&conn.out, &ws.link, fd) {
            Ok((n, false)) => stalled.progress(n),
            Ok(_) => {
                stalled.progress(1);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let Some(deadline) = full_socket_deadline(conn, &mut stalled, write_timeout) else {
            return Ok(());
        };
        let write = future::poll_fn(|cx| {
            let Some(chunk) = ws.out.next_chunk(&conn.out, &ws.link) else {
                return Poll::Ready(Ok(()));
            };
            let written = stream.borrow_mut().poll_write(cx, &chunk);
            written.map_ok(|n| ws.out.advance_chunk(&conn.out, &ws.link, n))
        });
        conn.out.mark_full();
        if !await_room(conn, &mut stalled, deadline, write).await? {
            return Ok(());
        }
    }
}

/// How long a plain writer whose socket is full waits for room: until
/// `--write-timeout` for an open connection, the drain's deadline for a closing one;
/// `None` for a cut one (a slow consumer's last frame does not fit: give up now).
fn full_socket_deadline(
    conn: &ConnShared,
    stalled: &mut Stalled,
    write_timeout: Option<Duration>,
) -> Option<Option<Instant>> {
    match conn.out.state() {
        OutState::Open => Some(stalled.deadline(write_timeout)),
        OutState::Draining { deadline } => Some(Some(deadline)),
        OutState::Cut => None,
    }
}

/// What ended a writer's wait for socket room.
enum Wait<T> {
    /// The write made progress (or failed).
    Progress(T),
    /// The queue changed: new frames, or a cut.
    Woken,
    /// A draining connection's deadline passed.
    Deadline,
}

/// Waits for `progress` (a write that needs socket room), a change of `out`'s state,
/// or, while draining, the drain deadline: the one wait both writers (plain and TLS)
/// make when the socket is full. `deadline` is `None` for an open connection.
async fn wait_for_room<T>(
    out: &Outbound,
    deadline: Option<Instant>,
    progress: impl std::future::Future<Output = T>,
) -> Wait<T> {
    let progress = async { Wait::Progress(progress.await) };
    let woken = async {
        out.writer.notified().await;
        Wait::Woken
    };
    let expire = async {
        match deadline {
            Some(at) => {
                glommio::timer::sleep(at.saturating_duration_since(Instant::now())).await;
                Wait::Deadline
            }
            None => future::pending().await,
        }
    };
    future::or(progress, future::or(woken, expire)).await
}

/// The TLS writer: drains `conn`'s queue through rustls until the queue is closed and
/// drained (`Ok`) or the socket fails. A graceful close ends with a close_notify.
///
/// Frames leave the queue as they are copied into the staging buffer, so the queue's
/// byte limit no longer counts them; that is at most one record's worth plus what
/// rustls buffers (64 KiB by default), the counterpart of the kernel's socket buffer
/// on the plain path. The delivery latency metric stops when the queue empties into
/// the staging buffer.
async fn write_frames_tls(
    conn: &ConnShared,
    stream: &RefCell<Transport>,
    write_timeout: Option<Duration>,
    mut ws: Option<WsWrite>,
) -> io::Result<()> {
    let mut stalled = Stalled::default();
    // Plaintext taken from the queue that rustls has not accepted yet (its own buffer
    // was full). Released whenever it empties: an idle connection holds no buffer.
    let mut staged: Vec<u8> = Vec::new();
    let mut close_notify_sent = false;
    loop {
        if staged.is_empty() {
            match ws.as_mut() {
                Some(ws) => ws.out.stage(&conn.out, &ws.link, &mut staged, TLS_BATCH),
                None => stage(&conn.out, &mut staged),
            }
        }
        if staged.is_empty() && !stream.borrow().tls_pending() {
            staged = Vec::new();
            if !conn.out.is_closing() {
                conn.out.writer.notified().await;
                continue;
            }
            let graceful = matches!(conn.out.state(), OutState::Draining { .. });
            if !graceful || close_notify_sent {
                return Ok(());
            }
            if ws.as_mut().is_some_and(WsWrite::queue_close) {
                continue;
            }
            // Tell the client the stream ends here (not truncated), then flush that.
            stream.borrow_mut().send_close_notify();
            close_notify_sent = true;
            continue;
        }
        let progress = future::poll_fn(|cx| {
            let mut stream = stream.borrow_mut();
            if staged.is_empty() {
                return stream.poll_flush(cx);
            }
            stream.poll_write(cx, &staged).map_ok(|n| {
                staged.drain(..n);
            })
        });
        let deadline = match conn.out.state() {
            OutState::Open => stalled.deadline(write_timeout),
            OutState::Draining { deadline } => Some(deadline),
            OutState::Cut => {
                // A slow consumer gets what the socket takes now, nothing more.
                match future::poll_once(progress).await {
                    Some(Ok(())) => continue,
                    Some(Err(e)) => return Err(e),
                    None => return Ok(()),
                }
            }
        };
        conn.out.mark_full();
        if !await_room(conn, &mut stalled, deadline, progress).await? {
            return Ok(());
        }
    }
}

/// Moves up to `TLS_BATCH` bytes of queued frames into `staged` (a large frame goes in
/// parts; the queue then keeps its rest whole at the front, even across a cut).
fn stage(out: &Outbound, staged: &mut Vec<u8>) {
    while staged.len() < TLS_BATCH {
        let Some(front) = out.front() else {
            return;
        };
        let take = front.len().min(TLS_BATCH - staged.len());
        if take == 0 {
            // Frames carry at least their 4-byte length; never spin on an empty one.
            return;
        }
        staged.extend_from_slice(&front[..take]);
        out.consume(take);
    }
}
