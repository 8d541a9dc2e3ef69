//! One client connection: after an optional TLS handshake, a reader task
//! ([`reader`], which feeds the socket-free protocol [`driver`]) and a writer task
//! ([`writer`]) on the accepting shard, sharing the socket ([`transport`]).

pub mod driver;
pub mod rate_limit;
mod reader;
pub mod session;
pub mod transport;
mod writer;
pub mod ws;
mod ws_writer;

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_lite::future;
use glommio::net::TcpStream;

use crate::conn::transport::Transport;
use crate::metrics::{self, Count, Disconnect};
use crate::shard::context::ShardContext;
use crate::tls::{self, HandshakeEnd};
use crate::wire::proto::ErrorCode;
use crate::wire::response;

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `--listen`: length-prefixed frames.
    Tcp,
    /// `--ws-listen`: an HTTP upgrade, then WebSocket messages.
    WebSocket,
}

/// Counts a live socket until both of its tasks are done.
pub(crate) struct LiveGuard {
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
pub fn spawn(ctx: &Rc<ShardContext>, stream: TcpStream, kind: Listener) {
    let count = ctx.connections.fetch_add(1, Ordering::Relaxed) + 1;
    if count > ctx.max_connections {
        ctx.connections.fetch_sub(1, Ordering::Relaxed);
        metrics::disconnect(Disconnect::ServerFull);
        // A TLS client could not read a plain frame, and a handshake is what an
        // overloaded server should not spend: it is just closed.
        if ctx.tls.is_none() {
            match kind {
                Listener::Tcp => reject(
                    &stream,
                    ErrorCode::ServerFull,
                    "server is at --max-connections",
                ),
                Listener::WebSocket => {
                    let refusal = ws::HttpError {
                        status: 503,
                        message: "server is at --max-connections".into(),
                    };
                    send_and_close(&stream, &refusal.response());
                }
            }
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
    if ctx.tls.is_some() || kind == Listener::WebSocket {
        let setup = handshake_then_start(ctx.clone(), stream, guard, accepted, kind);
        glommio::spawn_local(setup).detach();
    } else {
        start(ctx, Transport::Plain(stream), guard, accepted, None);
    }
}

/// Registers the connection and starts its reader and writer. `ws`: a WebSocket
/// connection, with the bytes that followed its upgrade request.
fn start(
    ctx: &Rc<ShardContext>,
    stream: Transport,
    guard: Rc<LiveGuard>,
    accepted: Instant,
    ws: Option<Vec<u8>>,
) {
    let conn = ctx.state.borrow_mut().register();
    let stream = Rc::new(RefCell::new(stream));
    let (link, ws_reader) = match ws {
        None => (None, None),
        Some(first) => {
            let link = Rc::new(ws::WsLink::default());
            let reader = reader::WsReader {
                link: link.clone(),
                decoder: ws::Decoder::new(ctx.config.max_frame_bytes),
                first,
            };
            (Some(link), Some(reader))
        }
    };
    glommio::spawn_local(reader::read_loop(
        ctx.clone(),
        conn.clone(),
        stream.clone(),
        guard.clone(),
        accepted,
        ws_reader,
    ))
    .detach();
    let write_timeout = ctx.config.write_timeout();
    glommio::spawn_local(writer::write_loop(conn, stream, guard, write_timeout, link)).detach();
}

/// Completes the TLS handshake, then starts the connection. The handshake counts
/// against `--login-timeout` (a client that never finishes it must not hold a slot)
/// and ends at once when the shard starts shutting down.
async fn handshake_then_start(
    ctx: Rc<ShardContext>,
    stream: TcpStream,
    guard: Rc<LiveGuard>,
    accepted: Instant,
    kind: Listener,
) {
    let transport = match ctx.tls.clone() {
        None => Transport::Plain(stream),
        Some(acceptor) => {
            let limit = ctx.config.login_timeout();
            match tls::accept(&acceptor, stream, limit, ctx.shutdown_started()).await {
                Ok(stream) => Transport::Tls(Box::new(stream)),
                Err(end) => return tls_failed(end),
            }
        }
    };
    match kind {
        Listener::Tcp => start(&ctx, transport, guard, accepted, None),
        Listener::WebSocket => upgrade_then_start(ctx, transport, guard, accepted).await,
    }
}

/// Answers a WebSocket client's upgrade request, then starts the connection. Counts
/// against `--login-timeout` like a TLS handshake (a slowloris upgrade gets 408).
async fn upgrade_then_start(
    ctx: Rc<ShardContext>,
    mut stream: Transport,
    guard: Rc<LiveGuard>,
    accepted: Instant,
) {
    let deadline = accepted + ctx.config.login_timeout();
    let mut request = Vec::new();
    let refusal = loop {
        match ws::upgrade(&request, &ctx.config.ws_allowed_origins) {
            Ok(Some(upgrade)) => {
                if write_all(&mut stream, &upgrade.response, deadline)
                    .await
                    .is_ok()
                {
                    let first = request.split_off(upgrade.used);
                    start(&ctx, stream, guard, accepted, Some(first));
                } else {
                    metrics::disconnect(Disconnect::ClientClosed);
                }
                return;
            }
            Ok(None) => {}
            Err(refusal) => break refusal,
        }
        let mut buf = [0u8; 2048];
        let left = deadline.saturating_duration_since(Instant::now());
        let read = future::poll_fn(|cx| stream.poll_read(cx, &mut buf));
        let timed = async {
            glommio::timer::sleep(left).await;
            Err(io::ErrorKind::TimedOut.into())
        };
        let stop = async {
            ctx.shutdown_started().await;
            Err(io::ErrorKind::Interrupted.into())
        };
        match future::or(read, future::or(timed, stop)).await {
            Ok(0) => {
                metrics::disconnect(Disconnect::ClientClosed);
                return;
            }
            Ok(n) => request.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                metrics::disconnect(Disconnect::LoginTimeout);
                let refusal = ws::HttpError {
                    status: 408,
                    message: format!(
                        "no complete upgrade request within --login-timeout ({} s)",
                        ctx.config.login_timeout
                    ),
                };
                let _ = write_all(&mut stream, &refusal.response(), Instant::now()).await;
                return;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                metrics::disconnect(Disconnect::Shutdown);
                return;
            }
            Err(_) => {
                metrics::disconnect(Disconnect::ClientClosed);
                return;
            }
        }
    };
    tracing::debug!(status = refusal.status, message = %refusal.message, "upgrade refused");
    metrics::disconnect(Disconnect::ProtocolError);
    let _ = write_all(&mut stream, &refusal.response(), deadline).await;
    stream.send_close_notify();
    let _ = future::poll_fn(|cx| stream.poll_flush(cx)).await;
}

/// Writes all of `bytes` (and flushes TLS), giving up at `deadline` (at once when it
/// has passed and the socket is full).
async fn write_all(stream: &mut Transport, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    let write = async {
        while !bytes.is_empty() {
            let n = future::poll_fn(|cx| stream.poll_write(cx, bytes)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            bytes = &bytes[n..];
        }
        future::poll_fn(|cx| stream.poll_flush(cx)).await
    };
    let timed = async {
        glommio::timer::sleep(left.max(std::time::Duration::from_millis(10))).await;
        Err(io::ErrorKind::TimedOut.into())
    };
    future::or(write, timed).await
}

/// Counts a TLS handshake that did not complete, by why.
fn tls_failed(end: HandshakeEnd) {
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
    send_and_close(stream, &response::error(code, message));
}

/// Sends `frame` without waiting and half-closes the socket.
fn send_and_close(stream: &TcpStream, frame: &[u8]) {
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
