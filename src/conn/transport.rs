//! `Transport`: a connection's socket, plain TCP or TLS, shared by its reader and
//! writer (`Rc<RefCell<_>>`, borrowed only while one of them polls it).
//!
//! Plain connections keep the fast path: the writer hands queued frames straight to
//! `sendmsg` (`Outbound::write_to`). TLS connections write here instead: queued
//! frames are copied into one record's worth of plaintext, handed to rustls with one
//! `poll_write` (one record, one socket write) and flushed when the queue is empty.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{future, AsyncRead, AsyncWrite};
use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;

use crate::shard::members::ConnShared;
use crate::shard::outbound::{OutState, Outbound};

/// Plaintext handed to rustls per write: one full TLS record (16 KiB is the largest
/// record payload), so one socket write per batch of frames.
const TLS_BATCH: usize = 16 * 1024;

/// A connection's socket.
pub enum Transport {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, after a completed handshake.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Transport {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(stream) => stream,
            Transport::Tls(stream) => stream.get_ref().0,
        }
    }

    /// Whether this is a TLS connection.
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// Sets the read timeout of a plain socket. TLS sockets keep none: their callers
    /// bound each whole read instead, because rustls can return plaintext while leaving
    /// a socket read pending, which would keep glommio's timer armed with a timeout
    /// that no longer applies (a frame timeout firing on a connection that is merely
    /// idle, say).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> glommio::Result<(), ()> {
        match self {
            Transport::Plain(stream) => stream.set_read_timeout(timeout),
            Transport::Tls(_) => Ok(()),
        }
    }

    /// Reads plaintext into `buf`.
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self {
            Transport::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Transport::Tls(stream) => Pin::new(&mut **stream).poll_read(cx, buf),
        }
    }

    /// Writes plaintext from `buf` (for TLS: into rustls, which also writes what it can
    /// of its records to the socket).
    pub fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            Transport::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Transport::Tls(stream) => Pin::new(&mut **stream).poll_write(cx, buf),
        }
    }

    /// Writes out everything buffered (for TLS: rustls' pending records).
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Transport::Tls(stream) => Pin::new(&mut **stream).poll_flush(cx),
        }
    }

    /// Whether TLS records are waiting to be written to the socket.
    fn tls_pending(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(stream) => stream.get_ref().1.wants_write(),
        }
    }

    /// Queues a TLS close_notify (the next flush sends it); nothing for plain TCP.
    fn send_close_notify(&mut self) {
        if let Transport::Tls(stream) = self {
            stream.get_mut().1.send_close_notify();
        }
    }
}

impl AsRawFd for Transport {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }
}

/// What ended a writer's wait for socket room.
pub enum Wait<T> {
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
pub async fn wait_for_room<T>(
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
pub async fn write_frames_tls(conn: &ConnShared, stream: &RefCell<Transport>) -> io::Result<()> {
    // Plaintext taken from the queue that rustls has not accepted yet (its own buffer
    // was full). Released whenever it empties: an idle connection holds no buffer.
    let mut staged: Vec<u8> = Vec::new();
    let mut close_notify_sent = false;
    loop {
        if staged.is_empty() {
            stage(&conn.out, &mut staged);
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
            OutState::Open => None,
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
        match wait_for_room(&conn.out, deadline, progress).await {
            Wait::Progress(Ok(())) | Wait::Woken => {}
            Wait::Progress(Err(e)) => return Err(e),
            Wait::Deadline => return Ok(()),
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
