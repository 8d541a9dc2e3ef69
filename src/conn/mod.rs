//! One client connection: a reader task and a writer task on the accepting shard.
//!
//! The reader reads into the shard's scratch buffer (borrowed only while a read is
//! polled, so an idle connection holds no read buffer), decodes every whole frame in
//! place and keeps only a partial tail. The writer drains the [`Outbound`] queue with
//! one `sendmsg` per batch and closes the socket when the queue is closed and drained.
//! With TLS, a handshake task runs first, and the writer goes through rustls instead
//! ([`transport`]).
//!
//! [`Outbound`]: crate::shard::outbound::Outbound
//! [`transport`]: crate::conn::transport

pub mod rate_limit;
pub mod session;
pub mod transport;

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::net::TcpStream;

use crate::conn::rate_limit::TokenBucket;
use crate::conn::session::Outcome;
use crate::conn::transport::{wait_for_room, Transport, Wait};
use crate::frame::{self, FrameError};
use crate::metrics::{self, Count, Disconnect};
use crate::proto::ErrorCode;
use crate::proto::{client_message::Data, ClientMessage};
use crate::request::{decode_request, Request};
use crate::response;
use crate::shard::context::ShardContext;
use crate::shard::members::ConnShared;
use crate::shard::outbound::OutState;
use crate::tls::{self, HandshakeEnd};

/// Frames handled per read before the reader lets other tasks run.
const FRAMES_PER_TURN: usize = 256;

/// Shortest read timeout handed to glommio (it rejects zero).
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// Size of the per-shard read scratch buffer.
pub const SCRATCH_BYTES: usize = 64 * 1024;

/// Counts a live socket until both of its tasks are done.
struct LiveGuard {
    ctx: Rc<ShardContext>,
    fd: RawFd,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.ctx.sockets.borrow_mut().remove(&self.fd);
        self.ctx.live.set(self.ctx.live.get() - 1);
        self.ctx.connections.fetch_sub(1, Ordering::Relaxed);
        self.ctx.live_changed.notify();
    }
}

/// Takes over an accepted socket: checks the connection limit, then starts its tasks.
pub fn spawn(ctx: &Rc<ShardContext>, stream: TcpStream) {
    let count = ctx.connections.fetch_add(1, Ordering::Relaxed) + 1;
    if count > ctx.max_connections {
        ctx.connections.fetch_sub(1, Ordering::Relaxed);
        metrics::disconnect(Disconnect::ServerFull);
        // A TLS client could not read a plain frame, and a handshake is what an
        // overloaded server should not spend: it is just closed.
        if ctx.tls.is_none() {
            reject(
                &stream,
                ErrorCode::ServerFull,
                "server is at --max-connections",
            );
        }
        return;
    }
    ctx.live.set(ctx.live.get() + 1);
    metrics::count(Count::Accepted);
    let fd = stream.as_raw_fd();
    ctx.sockets.borrow_mut().insert(fd);
    let guard = Rc::new(LiveGuard {
        ctx: ctx.clone(),
        fd,
    });
    if let Err(e) = configure(&stream, ctx) {
        tracing::debug!(error = %e, "socket setup failed");
        return;
    }
    let accepted = Instant::now();
    if ctx.tls.is_some() {
        glommio::spawn_local(handshake_then_start(ctx.clone(), stream, guard, accepted)).detach();
    } else {
        start(ctx, Transport::Plain(stream), guard, accepted);
    }
}

/// Registers the connection and starts its reader and writer.
fn start(ctx: &Rc<ShardContext>, stream: Transport, guard: Rc<LiveGuard>, accepted: Instant) {
    let conn = ctx.state.borrow_mut().register();
    let stream = Rc::new(RefCell::new(stream));
    glommio::spawn_local(read_loop(
        ctx.clone(),
        conn.clone(),
        stream.clone(),
        guard.clone(),
        accepted,
    ))
    .detach();
    glommio::spawn_local(write_loop(conn, stream, guard)).detach();
}

/// Completes the TLS handshake, then starts the connection. The handshake counts
/// against `--login-timeout` (a client that never finishes it must not hold a slot)
/// and ends at once when the shard starts shutting down.
async fn handshake_then_start(
    ctx: Rc<ShardContext>,
    stream: TcpStream,
    guard: Rc<LiveGuard>,
    accepted: Instant,
) {
    let Some(acceptor) = ctx.tls.clone() else {
        return;
    };
    let limit = ctx.config.login_timeout();
    match tls::accept(&acceptor, stream, limit, ctx.shutdown_started()).await {
        Ok(stream) => start(&ctx, Transport::Tls(Box::new(stream)), guard, accepted),
        Err(end) => {
            tracing::debug!(?end, "TLS handshake did not complete");
            metrics::disconnect(match end {
                HandshakeEnd::Timeout => Disconnect::LoginTimeout,
                HandshakeEnd::Shutdown => Disconnect::Shutdown,
                // Gone before finishing (a TCP health check, a client giving up).
                HandshakeEnd::Failed(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    Disconnect::ClientClosed
                }
                // Not TLS, or a TLS error (an untrusted certificate, no common version).
                HandshakeEnd::Failed(_) => Disconnect::ProtocolError,
            });
        }
    }
}

fn configure(stream: &TcpStream, ctx: &ShardContext) -> glommio::Result<(), ()> {
    stream.set_nodelay(true)?;
    // TLS reads are bounded by `read_within` and the handshake by its own limit.
    if ctx.tls.is_none() {
        stream.set_read_timeout(ctx.config.idle_timeout())?;
    }
    Ok(())
}

/// Sends one error frame without waiting and drops the socket (a fresh socket's send
/// buffer is empty, so the frame fits).
fn reject(stream: &TcpStream, code: ErrorCode, message: &str) {
    let frame = response::error(code, message);
    let fd = stream.as_raw_fd();
    // SAFETY: valid fd and buffer; MSG_DONTWAIT because accepted sockets are blocking.
    unsafe {
        libc::send(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        );
        libc::shutdown(fd, libc::SHUT_WR);
    }
}

/// Why a reader stopped.
#[derive(Debug)]
enum ReadEnd {
    Eof,
    Idle,
    /// A started frame did not complete within `--frame-timeout` (slowloris).
    FrameTimeout,
    /// No successful login within `--login-timeout`.
    LoginTimeout,
    Error(io::Error),
    Closing,
}

/// Why a connection ended, for the metrics. The queue's state decides first: a
/// server-side close (a slow-consumer cut, a shutdown, a protocol error) makes the
/// writer shut the socket, so the reader then sees an ordinary end of stream.
fn disconnect_reason(end: &ReadEnd, state: OutState, ready: bool) -> Disconnect {
    match (state, end) {
        (OutState::Cut, _) => Disconnect::SlowConsumer,
        (OutState::Draining { .. }, _) if !ready => Disconnect::Shutdown,
        (OutState::Draining { .. }, _) | (OutState::Open, ReadEnd::Closing) => {
            Disconnect::ProtocolError
        }
        (OutState::Open, ReadEnd::Idle) => Disconnect::Idle,
        (OutState::Open, ReadEnd::FrameTimeout) => Disconnect::FrameTimeout,
        (OutState::Open, ReadEnd::LoginTimeout) => Disconnect::LoginTimeout,
        (OutState::Open, ReadEnd::Eof | ReadEnd::Error(_)) => Disconnect::ClientClosed,
    }
}

async fn read_loop(
    ctx: Rc<ShardContext>,
    conn: Rc<ConnShared>,
    stream: Rc<RefCell<Transport>>,
    _live: Rc<LiveGuard>,
    accepted: Instant,
) {
    let end = read_frames(&ctx, &conn, &stream, accepted).await;
    metrics::disconnect(disconnect_reason(&end, conn.out.state(), ctx.is_ready()));
    match &end {
        ReadEnd::FrameTimeout => {
            let message = format!(
                "frame not completed within --frame-timeout ({} s)",
                ctx.config.frame_timeout
            );
            close_with(&ctx, &conn, ErrorCode::BadRequest, message);
        }
        ReadEnd::LoginTimeout => {
            let message = format!(
                "no login within --login-timeout ({} s)",
                ctx.config.login_timeout
            );
            close_with(&ctx, &conn, ErrorCode::FailedPrecondition, message);
        }
        ReadEnd::Error(e) => tracing::debug!(conn = conn.id, error = %e, "read failed"),
        other => tracing::trace!(conn = conn.id, end = ?other, "reader done"),
    }
    ctx.state.borrow_mut().disconnect(conn.id);
    if !matches!(end, ReadEnd::Eof | ReadEnd::Error(_)) {
        linger(&ctx, &stream).await;
    }
}

/// Reads and discards until the client closes or the grace period ends. Closing a
/// socket that still has unread input makes the kernel send a reset, which destroys
/// the final frames (an error, SERVER_SHUTTING_DOWN) the writer has just flushed.
async fn linger(ctx: &ShardContext, stream: &RefCell<Transport>) {
    let deadline = ctx.close_deadline(ctx.config.shutdown_grace());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = Some(left.max(MIN_TIMEOUT));
        if left.is_zero() || stream.borrow().set_read_timeout(timeout).is_err() {
            return;
        }
        match read_within(ctx, stream, timeout).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// One read into the shard's scratch buffer (borrowed only while polled), bounded by
/// `timeout`, which the caller has also set as the socket's read timeout (a no-op for
/// TLS, which this bounds instead).
async fn read_within(
    ctx: &ShardContext,
    stream: &RefCell<Transport>,
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let read = future::poll_fn(|cx| {
        let mut scratch = ctx.scratch.borrow_mut();
        stream.borrow_mut().poll_read(cx, &mut scratch[..])
    });
    match timeout {
        // One TLS read may take many socket reads (a record trickled in byte by byte),
        // each with the socket's full timeout: bound the whole read instead.
        Some(limit) if stream.borrow().is_tls() => {
            let expire = async {
                glommio::timer::sleep(limit).await;
                Err(io::ErrorKind::TimedOut.into())
            };
            future::or(read, expire).await
        }
        // Plain TCP: one socket read, bounded by the socket's read timeout.
        _ => read.await,
    }
}

/// The per-connection request rate limit.
struct RateLimit {
    bucket: TokenBucket,
    /// Whether the last request was refused (one RATE_LIMITED error per burst).
    refusing: bool,
}

impl RateLimit {
    /// Whether to handle `request`; a refused request that expects a response gets
    /// that response with RATE_LIMITED, others get one error per burst.
    fn admit(&mut self, conn: &ConnShared, request: &Request<'_>) -> bool {
        if self.bucket.take() {
            self.refusing = false;
            return true;
        }
        let limited = || response::err(ErrorCode::RateLimited, "over --max-messages-per-second");
        match request {
            _ if request.login_view().is_some() => {
                conn.reply(response::login(limited()));
            }
            Request::Message(ClientMessage {
                data: Some(Data::JoinRequest(join)),
            }) => {
                conn.reply(response::join_rejected(&join.room_id, None, limited()));
            }
            Request::Message(ClientMessage {
                data: Some(Data::LeaveRequest(leave)),
            }) => {
                conn.reply(response::leave(&leave.room_id, limited()));
            }
            _ if !self.refusing => {
                let message =
                    "over --max-messages-per-second: messages are dropped until the rate falls";
                conn.reply(response::error(ErrorCode::RateLimited, message));
            }
            _ => {}
        }
        self.refusing = true;
        false
    }
}

async fn read_frames(
    ctx: &ShardContext,
    conn: &ConnShared,
    stream: &RefCell<Transport>,
    accepted: Instant,
) -> ReadEnd {
    let rate = ctx.config.max_messages_per_second;
    let mut limit = RateLimit {
        bucket: TokenBucket::new(rate, rate, accepted),
        refusing: false,
    };
    let idle = ctx.config.idle_timeout();
    let frame_timeout = ctx.config.frame_timeout();
    let login_deadline = accepted + ctx.config.login_timeout();
    // Bytes read but not yet handled: a partial frame, or frames left by a pause.
    let mut carry: Vec<u8> = Vec::new();
    let mut carry_has_frames = false;
    // When the partial frame in `carry` started to arrive.
    let mut frame_started: Option<Instant> = None;
    loop {
        if conn.out.is_closing() {
            return ReadEnd::Closing;
        }
        // A client that always has data ready must not keep the shard to itself.
        glommio::yield_if_needed().await;
        ctx.wait_for_peers().await;
        let (used, step) = if carry_has_frames {
            let (used, step) = handle_frames(ctx, conn, &mut limit, &carry, Instant::now());
            carry.drain(..used);
            (used, step)
        } else {
            let now = Instant::now();
            let started = if carry.is_empty() {
                None
            } else {
                Some(*frame_started.get_or_insert(now))
            };
            let logged_in = conn.player.borrow().is_some();
            // The nearest of: the idle timeout, the started frame's deadline, the login deadline.
            let mut timeout = idle;
            let mut tighten = |until: Instant| {
                let left = until.saturating_duration_since(now).max(MIN_TIMEOUT);
                timeout = Some(timeout.map_or(left, |t| t.min(left)));
            };
            if let Some(at) = started {
                tighten(at + frame_timeout);
            }
            if !logged_in {
                tighten(login_deadline);
            }
            // Only fails for a zero duration, which MIN_TIMEOUT rules out.
            let _ = stream.borrow().set_read_timeout(timeout);
            let n = match read_within(ctx, stream, timeout).await {
                Ok(0) => return ReadEnd::Eof,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    let now = Instant::now();
                    return if started.is_some_and(|at| now >= at + frame_timeout) {
                        ReadEnd::FrameTimeout
                    } else if !logged_in && now >= login_deadline {
                        ReadEnd::LoginTimeout
                    } else {
                        ReadEnd::Idle
                    };
                }
                Err(e) => return ReadEnd::Error(e),
            };
            if conn.out.is_closing() {
                return ReadEnd::Closing;
            }
            metrics::count(Count::BytesIn(n as u64));
            let now = Instant::now();
            limit.bucket.refill(now);
            let scratch = ctx.scratch.borrow();
            if carry.is_empty() {
                let (used, step) = handle_frames(ctx, conn, &mut limit, &scratch[..n], now);
                carry.extend_from_slice(&scratch[used..n]);
                (used, step)
            } else {
                carry.extend_from_slice(&scratch[..n]);
                let (used, step) = handle_frames(ctx, conn, &mut limit, &carry, now);
                carry.drain(..used);
                (used, step)
            }
        };
        if used > 0 {
            // A frame completed: whatever is left is a new frame's start.
            frame_started = None;
        }
        match step {
            Step::NeedMore => carry_has_frames = false,
            Step::Paused => carry_has_frames = true,
            Step::AwaitClaim(player) => {
                carry_has_frames = true;
                loop {
                    if let Some(ok) = conn.claim.take() {
                        session::finish_login(conn, player, ok);
                        break;
                    }
                    if conn.out.is_closing() {
                        return ReadEnd::Closing;
                    }
                    conn.wake.notified().await;
                }
            }
            Step::Close => return ReadEnd::Closing,
        }
        if carry.is_empty() && carry.capacity() > SCRATCH_BYTES {
            carry = Vec::new();
        }
    }
}

/// Where `handle_frames` stopped.
enum Step {
    /// Only a partial frame (or nothing) is left.
    NeedMore,
    /// Stopped after `FRAMES_PER_TURN` frames to let other tasks run.
    Paused,
    /// A login waits for its claim before later frames are handled (keeps order).
    AwaitClaim(std::sync::Arc<str>),
    /// An error frame is queued; the connection closes once it is flushed.
    Close,
}

/// Handles the whole frames at the start of `data`; returns the bytes used.
fn handle_frames(
    ctx: &ShardContext,
    conn: &ConnShared,
    limit: &mut RateLimit,
    data: &[u8],
    now: Instant,
) -> (usize, Step) {
    let _turn = metrics::Turn::start(now);
    let mut state = ctx.state.borrow_mut();
    let max = ctx.config.max_frame_bytes;
    let mut at = 0;
    for _ in 0..FRAMES_PER_TURN {
        let range = match frame::next_frame(&data[at..], max) {
            Ok(Some(range)) => range,
            Ok(None) => return (at, Step::NeedMore),
            Err(e @ FrameError::TooLarge { .. }) => {
                close_with(ctx, conn, ErrorCode::FrameTooLarge, e.to_string());
                return (at, Step::Close);
            }
        };
        let payload = &data[at + range.start..at + range.end];
        at += range.end;
        let request = match decode_request(payload) {
            Ok(request) => request,
            Err(e) => {
                close_with(
                    ctx,
                    conn,
                    ErrorCode::BadRequest,
                    format!("payload is not a valid ClientMessage: {e}"),
                );
                return (at, Step::Close);
            }
        };
        if !limit.admit(conn, &request) {
            continue;
        }
        match session::handle(&mut state, conn, &ctx.session, request, payload) {
            Outcome::Continue => {}
            Outcome::AwaitClaim(player) => return (at, Step::AwaitClaim(player)),
            Outcome::Close => {
                conn.out
                    .close_after(None, ctx.close_deadline(ctx.config.shutdown_grace()));
                return (at, Step::Close);
            }
        }
    }
    (at, Step::Paused)
}

fn close_with(ctx: &ShardContext, conn: &ConnShared, code: ErrorCode, message: String) {
    let deadline = ctx.close_deadline(ctx.config.shutdown_grace());
    conn.out
        .close_after(Some(response::error(code, message)), deadline);
}

async fn write_loop(conn: Rc<ConnShared>, stream: Rc<RefCell<Transport>>, _live: Rc<LiveGuard>) {
    let fd = stream.borrow().as_raw_fd();
    let tls = stream.borrow().is_tls();
    let written = if tls {
        transport::write_frames_tls(&conn, &stream).await
    } else {
        write_frames(&conn, &stream, fd).await
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

async fn write_frames(conn: &ConnShared, stream: &RefCell<Transport>, fd: RawFd) -> io::Result<()> {
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
            Ok(_) if conn.out.front_started() => {}
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        // The socket is full.
        let deadline = match conn.out.state() {
            OutState::Open => None,
            OutState::Draining { deadline } => Some(deadline),
            // A slow consumer's last frame does not fit: give up now.
            OutState::Cut => return Ok(()),
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
        match wait_for_room(&conn.out, deadline, write).await {
            Wait::Progress(Ok(())) | Wait::Woken => {}
            Wait::Progress(Err(e)) => return Err(e),
            Wait::Deadline => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_side_close_is_counted_by_its_cause_not_by_the_eof_it_causes() {
        let draining = OutState::Draining {
            deadline: Instant::now(),
        };
        let cases = [
            (ReadEnd::Eof, OutState::Cut, true, Disconnect::SlowConsumer),
            (
                ReadEnd::Closing,
                OutState::Cut,
                true,
                Disconnect::SlowConsumer,
            ),
            (ReadEnd::Eof, draining, false, Disconnect::Shutdown),
            (ReadEnd::Closing, draining, true, Disconnect::ProtocolError),
            (ReadEnd::Eof, OutState::Open, true, Disconnect::ClientClosed),
            (ReadEnd::Idle, OutState::Open, true, Disconnect::Idle),
            (
                ReadEnd::FrameTimeout,
                OutState::Open,
                true,
                Disconnect::FrameTimeout,
            ),
            (
                ReadEnd::LoginTimeout,
                OutState::Open,
                true,
                Disconnect::LoginTimeout,
            ),
        ];
        for (end, state, ready, expected) in cases {
            assert_eq!(
                disconnect_reason(&end, state, ready),
                expected,
                "{end:?} in {state:?}"
            );
        }
    }
}
