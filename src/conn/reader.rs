//! A connection's reader task: reads into the shard's scratch buffer (borrowed only
//! while a read is polled, so an idle connection holds no read buffer) and feeds the
//! [`Driver`] what arrives and when; when the connection ends it unregisters it and,
//! after a server-side close, lingers so the last frames are not lost to a reset.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;

use crate::conn::driver::{Driver, DriverSettings, Expired, Input, Wants, MIN_TIMEOUT};
use crate::conn::transport::Transport;
use crate::conn::ws::{self, Decoder, Fed, WsLink};
use crate::conn::LiveGuard;
use crate::metrics::{self, Count, Disconnect};
use crate::shard::context::ShardContext;
use crate::shard::members::ConnShared;
use crate::shard::outbound::OutState;
use crate::wire::proto::ErrorCode;
use crate::wire::response;

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
    /// A WebSocket client sent a close frame (answered by the writer).
    PeerClosed,
}

/// What a WebSocket connection's reader keeps: its decoder, the link to its writer,
/// and the bytes that came after the upgrade request.
pub(crate) struct WsReader {
    pub(crate) link: Rc<WsLink>,
    pub(crate) decoder: Decoder,
    pub(crate) first: Vec<u8>,
}

/// Why a connection ended, for the metrics. The queue's state decides first: a
/// server-side close (a slow-consumer cut, a shutdown, a protocol error) makes the
/// writer shut the socket, so the reader then sees an ordinary end of stream.
fn disconnect_reason(end: &ReadEnd, state: OutState, ready: bool) -> Disconnect {
    match (state, end) {
        (_, ReadEnd::PeerClosed) => Disconnect::ClientClosed,
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

pub(crate) async fn read_loop(
    ctx: Rc<ShardContext>,
    conn: Rc<ConnShared>,
    stream: Rc<RefCell<Transport>>,
    _live: Rc<LiveGuard>,
    accepted: Instant,
    mut ws: Option<WsReader>,
) {
    let end = read_frames(&ctx, &conn, &stream, accepted, ws.as_mut()).await;
    let reason = conn
        .ended_by
        .get()
        .unwrap_or_else(|| disconnect_reason(&end, conn.out.state(), ctx.is_ready()));
    metrics::disconnect(reason);
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

/// Feeds the driver what the socket gives until the connection ends.
async fn read_frames(
    ctx: &ShardContext,
    conn: &ConnShared,
    stream: &RefCell<Transport>,
    accepted: Instant,
    mut ws: Option<&mut WsReader>,
) -> ReadEnd {
    let mut driver = Driver::new(DriverSettings::from_config(&ctx.config), accepted);
    let grace = ctx.config.shutdown_grace();
    // WebSocket: the length-prefixed frames decoded from what was read.
    let mut decoded = Vec::new();
    if let Some(ws) = ws.as_deref_mut() {
        let first = std::mem::take(&mut ws.first);
        if !first.is_empty() {
            let ended = decode_ws(conn, ws, &first, &mut decoded);
            let input = Input {
                shard: &mut ctx.state.borrow_mut(),
                conn,
                session: &ctx.session,
                now: Instant::now(),
                close_by: ctx.close_deadline(grace),
            };
            driver.received(input, &decoded);
            if let Err(end) = ended {
                return end_ws(ctx, conn, ws, end);
            }
        }
    }
    loop {
        // A client that always has data ready must not keep the shard to itself.
        glommio::yield_if_needed().await;
        ctx.wait_for_peers().await;
        let now = Instant::now();
        let wants = driver.poll(Input {
            shard: &mut ctx.state.borrow_mut(),
            conn,
            session: &ctx.session,
            now,
            close_by: ctx.close_deadline(grace),
        });
        let timeout = match wants {
            Wants::Close => return ReadEnd::Closing,
            Wants::Yield => {
                ctx.let_writers_run(now, true).await;
                continue;
            }
            Wants::Claim => {
                conn.wake.notified().await;
                continue;
            }
            Wants::Read(timeout) => timeout,
        };
        // Only fails for a zero duration, which the driver rules out.
        let _ = stream.borrow().set_read_timeout(timeout);
        let n = match read_within(ctx, stream, timeout).await {
            Ok(0) => return ReadEnd::Eof,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return match driver.expired(Instant::now()) {
                    Expired::FrameTimeout => ReadEnd::FrameTimeout,
                    Expired::LoginTimeout => ReadEnd::LoginTimeout,
                    Expired::Idle => ReadEnd::Idle,
                    Expired::TokenExpired => {
                        let close_by = ctx.close_deadline(grace);
                        crate::conn::driver::close_if_expired(conn, Instant::now(), close_by);
                        ReadEnd::Closing
                    }
                };
            }
            Err(e) => return ReadEnd::Error(e),
        };
        if conn.out.is_closing() {
            return ReadEnd::Closing;
        }
        metrics::count(Count::BytesIn(n as u64));
        let now = Instant::now();
        let mut ended = Ok(());
        {
            let scratch = ctx.scratch.borrow();
            let data = match ws.as_deref_mut() {
                None => &scratch[..n],
                Some(ws) => {
                    ended = decode_ws(conn, ws, &scratch[..n], &mut decoded);
                    &decoded[..]
                }
            };
            let input = Input {
                shard: &mut ctx.state.borrow_mut(),
                conn,
                session: &ctx.session,
                now,
                close_by: ctx.close_deadline(grace),
            };
            driver.received(input, data);
        }
        if let (Err(end), Some(ws)) = (ended, ws.as_deref()) {
            return end_ws(ctx, conn, ws, end);
        }
        ctx.let_writers_run(now, true).await;
    }
}

/// Decodes what a WebSocket client sent into `decoded` (length-prefixed frames, to
/// be handled as usual); pongs go to the writer. `Err` when the connection ends after
/// those frames: the client closed, or sent a frame that gets an error and a close.
fn decode_ws(
    conn: &ConnShared,
    ws: &mut WsReader,
    data: &[u8],
    decoded: &mut Vec<u8>,
) -> Result<(), WsEnd> {
    decoded.clear();
    let fed = ws
        .decoder
        .feed(data, decoded, &mut ws.link.control.borrow_mut());
    if !ws.link.control.borrow().is_empty() {
        conn.out.wake_writer();
    }
    match fed {
        Ok(Fed::More) => Ok(()),
        Ok(Fed::Closed(_)) => Err(WsEnd::Closed),
        Err(e) => Err(WsEnd::Failed(e)),
    }
}

/// How a WebSocket client's input ended.
enum WsEnd {
    /// It sent a close frame.
    Closed,
    /// It sent a frame that is refused.
    Failed(ws::WsError),
}

/// Closes a WebSocket connection whose input ended, once what came before is handled:
/// the writer answers a client's close with one (1000), or sends the error and then
/// the close code it calls for.
fn end_ws(ctx: &ShardContext, conn: &ConnShared, ws: &WsReader, end: WsEnd) -> ReadEnd {
    match end {
        WsEnd::Closed => {
            ws.link.close_code.set(Some(ws::close::NORMAL));
            let deadline = ctx.close_deadline(ctx.config.shutdown_grace());
            conn.out.close_after(None, deadline);
            ReadEnd::PeerClosed
        }
        WsEnd::Failed(e) => {
            ws.link.close_code.set(Some(e.close));
            close_with(ctx, conn, e.code, e.message);
            ReadEnd::Closing
        }
    }
}

fn close_with(ctx: &ShardContext, conn: &ConnShared, code: ErrorCode, message: String) {
    let deadline = ctx.close_deadline(ctx.config.shutdown_grace());
    conn.out
        .close_after(Some(response::error(code, message)), deadline);
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
