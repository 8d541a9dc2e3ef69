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

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use glommio::net::TcpStream;

use crate::conn::transport::Transport;
use crate::metrics::{self, Count, Disconnect};
use crate::shard::context::ShardContext;
use crate::tls::{self, HandshakeEnd};
use crate::wire::proto::ErrorCode;
use crate::wire::response;

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
    glommio::spawn_local(reader::read_loop(
        ctx.clone(),
        conn.clone(),
        stream.clone(),
        guard.clone(),
        accepted,
    ))
    .detach();
    let write_timeout = ctx.config.write_timeout();
    glommio::spawn_local(writer::write_loop(conn, stream, guard, write_timeout)).detach();
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
