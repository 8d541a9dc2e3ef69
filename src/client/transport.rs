//! Where a client reads from and writes to: the TCP socket itself, or the two sides
//! of a TLS session.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;

use super::tls_session::{TlsReader, TlsSession};
use super::ws::{WsReader, WsWriter};

/// Where a client reads from: the socket, or a TLS session's receiving side.
#[derive(Debug)]
pub(super) enum Reader {
    Plain(TcpStream),
    Tls(TlsReader),
    Ws(WsReader),
}

impl Reader {
    /// The TCP socket (under TLS, if any).
    pub(super) fn tcp(&self) -> &TcpStream {
        match self {
            Reader::Plain(stream) => stream,
            Reader::Tls(reader) => &reader.sock,
            Reader::Ws(reader) => reader.inner.tcp(),
        }
    }
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Reader::Plain(stream) => stream.read(buf),
            Reader::Tls(reader) => reader.read(buf),
            Reader::Ws(reader) => reader.read(buf),
        }
    }
}

/// Where a client writes to: the socket (a handle of its own), or a TLS session.
#[derive(Debug)]
pub(super) enum Writer {
    Plain(TcpStream),
    Tls(Arc<TlsSession>),
    Ws(WsWriter),
}

impl Writer {
    pub(super) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Writer::Plain(stream) => stream.write_all(bytes),
            Writer::Tls(session) => session.write(bytes),
            Writer::Ws(writer) => writer.write_all(bytes),
        }
    }

    pub(super) fn close(&self) -> io::Result<()> {
        let closed = match self {
            Writer::Plain(stream) => stream.shutdown(Shutdown::Both),
            Writer::Tls(session) => session.close(),
            Writer::Ws(writer) => return writer.inner.close(),
        };
        match closed {
            // Already closed by the server: the goal is reached.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }
}
