//! `Transport`: a connection's socket, plain TCP or TLS, shared by its reader and
//! writer (`Rc<RefCell<_>>`, borrowed only while one of them polls it).
//!
//! The writer ([`crate::conn::writer`]) is the one place frames are written, plain or
//! TLS; this is the socket it writes to and the reader reads from.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;

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
    pub fn tls_pending(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(stream) => stream.get_ref().1.wants_write(),
        }
    }

    /// Queues a TLS close_notify (the next flush sends it); nothing for plain TCP.
    pub fn send_close_notify(&mut self) {
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
