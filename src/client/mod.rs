//! A small blocking client over `std::net`: one connection, one thread (or two, after
//! [`Client::split`]). It is what the integration tests and `corecast-chat` use and a
//! reference for client authors; it is not built for thousands of connections (the
//! load-test harness drives those itself). It speaks plain TCP ([`Client::connect`])
//! or TLS ([`Client::connect_tls_with`], rustls), trusting the system's root
//! certificates or the CAs in a PEM file ([`TlsTrust`]).
//!
//! Over TLS the two halves of a split client share one rustls session behind a mutex
//! that is held only to hand it bytes or take bytes from it, never across a blocking
//! socket call: the receiving half waits in `read` on its own handle of the socket,
//! and the sending half encrypts, then writes under a second lock that keeps the
//! records in the order rustls numbered them.
//!
//! Layout: this file is [`Client`] and connecting; `requests` its request helpers and
//! waits; `halves` the split halves ([`ClientSender`], [`ClientReceiver`]); `inbound`
//! the receiving state (framing, decoding, queueing); `transport` plain or TLS reading
//! and writing; `tls_session` the handshake and the shared rustls session; `trust`
//! [`TlsTrust`]; `error` [`ClientError`]; `resume` [`Resume`], what a client that
//! reconnects remembers of its rooms (the epoch and last `seq` of each) to rejoin
//! them without losing a message; `backoff` [`Backoff`], the delays between its
//! reconnection attempts.

mod backoff;
mod error;
mod halves;
mod inbound;
mod requests;
mod resume;
mod tls_session;
mod transport;
mod trust;
mod ws;

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConnection;
use rustls_pki_types::ServerName;

use crate::tls::TlsError;
use inbound::Inbound;
use tls_session::{handshake, TlsReader, TlsSession};
use transport::{Reader, Writer};

pub use backoff::Backoff;
pub use error::ClientError;
pub use halves::{ClientReceiver, ClientSender};
pub use requests::{raw_frame, JoinHistory};
pub use resume::{Cursor, Outcome, Rejoin, Resume, Seen, FROM_START_LIMIT};
pub use trust::TlsTrust;

/// One blocking connection to a corecast server.
#[derive(Debug)]
pub struct Client {
    inbound: Inbound,
    writer: Writer,
    tls: bool,
    timeout: Duration,
}

impl Client {
    /// Connects with TCP_NODELAY; waits use a default timeout of 5 s.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let writer = Writer::Plain(stream.try_clone()?);
        Ok(Self::over(Reader::Plain(stream), writer, false))
    }

    /// Connects over WebSocket (the server's `--ws-listen`) on `path` (`/ws`), plain.
    /// The client then works as over TCP; only raw bytes sent with `send_raw` must be
    /// whole length-prefixed frames (each becomes one binary message).
    pub fn connect_ws(addr: impl ToSocketAddrs, path: &str) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let host = stream.peer_addr()?.to_string();
        let writer = Writer::Plain(stream.try_clone()?);
        Self::upgrade(Reader::Plain(stream), writer, &host, path, false)
    }

    /// Connects over WebSocket with TLS (wss: a server with `--tls-cert` and
    /// `--ws-listen`), checking its certificate as [`Client::connect_tls_with`] does.
    pub fn connect_wss(
        addr: impl ToSocketAddrs,
        server_name: &str,
        trust: &TlsTrust,
        path: &str,
    ) -> Result<Self, ClientError> {
        let tls = Self::connect_tls_with(addr, server_name, trust)?;
        let Inbound { reader, .. } = tls.inbound;
        Self::upgrade(reader, tls.writer, server_name, path, true)
    }

    /// The WebSocket upgrade over a connected stream, then the client over it.
    fn upgrade(
        mut reader: Reader,
        mut writer: Writer,
        host: &str,
        path: &str,
        tls: bool,
    ) -> Result<Self, ClientError> {
        let first = ws::handshake(&mut reader, &mut writer, host, path)?;
        let reader = Reader::Ws(transport::WsReader::new(reader, first));
        let writer = Writer::Ws(transport::WsWriter::new(writer));
        Ok(Self::over(reader, writer, tls))
    }

    /// Connects over TLS trusting only `root_cert_der` (a DER certificate: the
    /// server's own self-signed one, or its CA); the same as [`Client::connect_tls_with`]
    /// with [`TlsTrust::ca_der`].
    pub fn connect_tls(
        addr: impl ToSocketAddrs,
        server_name: &str,
        root_cert_der: &[u8],
    ) -> Result<Self, ClientError> {
        Self::connect_tls_with(addr, server_name, &TlsTrust::ca_der([root_cert_der])?)
    }

    /// Connects over TLS to a server started with `--tls-cert`/`--tls-key`, checking
    /// its certificate against `trust` for `server_name` (a DNS name or IP address in
    /// the certificate's subjectAltName). The handshake completes here, within 5 s, so
    /// a certificate problem is reported here ([`ClientError::Handshake`]).
    pub fn connect_tls_with(
        addr: impl ToSocketAddrs,
        server_name: &str,
        trust: &TlsTrust,
    ) -> Result<Self, ClientError> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| TlsError::ServerName(server_name.into()))?;
        let mut conn =
            ClientConnection::new(trust.config.clone(), name).map_err(TlsError::Rejected)?;
        let mut sock = TcpStream::connect(addr)?;
        sock.set_nodelay(true)?;
        handshake(&mut conn, &mut sock, server_name)?;
        sock.set_read_timeout(None)?;
        let session = Arc::new(TlsSession::new(conn, sock.try_clone()?));
        let reader = TlsReader::new(session.clone(), sock);
        Ok(Self::over(Reader::Tls(reader), Writer::Tls(session), true))
    }

    fn over(reader: Reader, writer: Writer, tls: bool) -> Self {
        Self {
            inbound: Inbound::new(reader),
            writer,
            tls,
            timeout: Duration::from_secs(5),
        }
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Sets how long the waiting calls wait.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The server's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inbound.reader.tcp().peer_addr()
    }

    /// The underlying TCP socket (under TLS, if any), for tests that misbehave on
    /// purpose.
    pub fn stream(&self) -> &TcpStream {
        self.inbound.reader.tcp()
    }
}
