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

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use prost::Message;
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use crate::tls::TlsError;
use crate::wire::frame::{self, FrameError, FrameReader};
use crate::wire::proto::{
    client_message, login_request::AuthConfig, server_message::Data, AuthConfigBearer,
    ClientMessage, ErrorCode, JoinRequest, JoinResponse, LeaveRequest, LeaveResponse, LoginRequest,
    LoginResponse, Ping, RoomConfig, SendMessage, ServerMessage,
};

/// The largest frame the client accepts from a server.
const MAX_INBOUND_FRAME: usize = 16 * 1024 * 1024;

/// How long [`Client::connect_tls_with`] waits for the handshake to complete.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What can go wrong on the client side.
///
/// Every variant's message includes what it wraps, and none reports it again as its
/// `source()`, so a chain printer (`anyhow`'s `{:#}`) prints each cause once.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Socket error.
    #[error("i/o: {0}")]
    Io(io::Error),
    /// Nothing arrived within the timeout.
    #[error("timed out waiting for the server")]
    Timeout,
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// The server closed the connection right after an error the caller had not been
    /// handed yet (`ServerMessage.error`, or a failed `LoginResponse`): SERVER_FULL,
    /// SERVER_SHUTTING_DOWN, UNAUTHORIZED, ... The message itself stays queued.
    #[error("the server closed the connection after error {}: {message}", .code.as_str_name())]
    ClosedAfterError {
        /// The code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// The server sent a frame that is not a `ServerMessage`.
    #[error("undecodable frame: {0}")]
    Decode(prost::DecodeError),
    /// The server sent an oversized frame.
    #[error("framing: {0}")]
    Frame(FrameError),
    /// A plain client's first bytes from the server are a TLS record (typically the
    /// alert a TLS server answers a non-TLS client with), not a frame.
    #[error(
        "the server answered with a TLS record (bytes {}), not a corecast frame: \
         this port speaks TLS, connect with TLS",
        hex(.header)
    )]
    TlsExpected {
        /// The four bytes that were read as a frame length.
        header: [u8; 4],
    },
    /// A response carried an error code other than NONE.
    #[error("server answered {code:?}: {message}")]
    Rejected {
        /// The code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// The TLS configuration is unusable (a server name that is not a DNS name or an
    /// IP address, a root certificate rustls refuses).
    #[error("tls: {0}")]
    Tls(TlsError),
    /// A CA file given to [`TlsTrust::ca_file`] is unreadable or holds no certificate.
    #[error("cannot load CA certificates from {}: {reason}", .path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// [`TlsTrust::system`] found no usable root certificate.
    #[error("no usable system root certificates: {0}")]
    SystemRoots(String),
    /// The TLS handshake failed (the message says why, and what usually fixes it).
    #[error("TLS handshake with {server_name} failed: {error}{}", handshake_hint(.error))]
    Handshake {
        /// The name the server's certificate was checked against.
        server_name: String,
        /// rustls' reason.
        error: rustls::Error,
    },
    /// The server closed the connection during the TLS handshake.
    #[error(
        "the server closed the connection during the TLS handshake \
         (a corecast server at --max-connections closes TLS clients that way)"
    )]
    HandshakeClosed,
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl From<prost::DecodeError> for ClientError {
    fn from(e: prost::DecodeError) -> Self {
        ClientError::Decode(e)
    }
}

impl From<TlsError> for ClientError {
    fn from(e: TlsError) -> Self {
        ClientError::Tls(e)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What usually fixes a handshake failure, appended to its message.
fn handshake_hint(error: &rustls::Error) -> &'static str {
    use rustls::CertificateError as Cert;
    match error {
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer) => {
            " (no trusted CA signed the server's certificate: trust the CA that did)"
        }
        rustls::Error::InvalidCertificate(Cert::NotValidForName)
        | rustls::Error::InvalidCertificate(Cert::NotValidForNameContext { .. }) => {
            " (the certificate does not carry the name the server was reached by: use a \
             name in its subjectAltName)"
        }
        // webpki's CaUsedAsEndEntity reaches rustls as an opaque `Other` error.
        rustls::Error::InvalidCertificate(Cert::Other(other))
            if format!("{other:?}").contains("CaUsedAsEndEntity") =>
        {
            " (the server's certificate is a CA certificate, as `openssl req -x509` makes \
             by default: serve a leaf certificate signed by a CA, and trust the CA)"
        }
        rustls::Error::InvalidMessage(_) => {
            " (the server's answer is not TLS: does this port speak TLS?)"
        }
        _ => "",
    }
}

/// The four bytes read as a frame length, when they are the start of a TLS record:
/// content type 20-23 (change_cipher_spec, alert, handshake, application_data), then
/// protocol version 3.0 to 3.4 (SSL 3.0 to TLS 1.3's legacy 3.3). Every such value is
/// over 335 MB, so it only ever shows up as an oversized frame.
fn tls_record_header(len: usize) -> Option<[u8; 4]> {
    let header = u32::try_from(len).ok()?.to_be_bytes();
    (matches!(header[0], 0x14..=0x17) && header[1] == 0x03 && header[2] <= 0x04).then_some(header)
}

/// Which certificates a TLS client trusts, ready to connect with
/// ([`Client::connect_tls_with`]). Cheap to clone.
#[derive(Clone)]
pub struct TlsTrust {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTrust").finish_non_exhaustive()
    }
}

impl TlsTrust {
    /// The system's root certificates: on Debian, the `ca-certificates` bundle in
    /// `/etc/ssl/certs`. As with OpenSSL, `SSL_CERT_FILE` (a PEM file) or
    /// `SSL_CERT_DIR` replace the system's store when set.
    pub fn system() -> Result<Self, ClientError> {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let reasons: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
            let reason = if reasons.is_empty() {
                "the store is empty".to_string()
            } else {
                reasons.join("; ")
            };
            return Err(ClientError::SystemRoots(reason));
        }
        Self::with_roots(roots)
    }

    /// Every certificate in a PEM file: one CA, or several (a bundle), or a server's
    /// own self-signed certificate. Only these are trusted, not the system's roots.
    pub fn ca_file(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        let path = path.as_ref();
        let error = |reason: String| ClientError::CaFile {
            path: path.to_owned(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| error(e.to_string()))?;
        if certs.is_empty() {
            return Err(error("no CERTIFICATE section".into()));
        }
        let mut roots = RootCertStore::empty();
        for (i, cert) in certs.into_iter().enumerate() {
            roots
                .add(cert)
                .map_err(|e| error(format!("certificate {}: {e}", i + 1)))?;
        }
        Self::with_roots(roots)
    }

    /// These DER certificates (CAs, or a server's own self-signed certificate).
    pub fn ca_der<'a>(certs: impl IntoIterator<Item = &'a [u8]>) -> Result<Self, ClientError> {
        let mut roots = RootCertStore::empty();
        for der in certs {
            roots
                .add(CertificateDer::from(der.to_vec()))
                .map_err(TlsError::Rejected)?;
        }
        Self::with_roots(roots)
    }

    /// A rustls configuration of the caller's own (other roots, client certificates).
    pub fn from_config(config: Arc<ClientConfig>) -> Self {
        Self { config }
    }

    fn with_roots(roots: RootCertStore) -> Result<Self, ClientError> {
        // The provider is named, as the server's is (src/tls.rs), so that a second
        // provider enabled elsewhere in the build cannot make the default ambiguous.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rejected)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

/// Locks a mutex of the TLS session; a poisoned one (a thread panicked while it held
/// it, leaving rustls' state unknown) is an error, not a panic.
fn lock<T>(mutex: &Mutex<T>) -> io::Result<MutexGuard<'_, T>> {
    mutex
        .lock()
        .map_err(|_| io::Error::other("TLS session state lost (a thread panicked using it)"))
}

/// A TLS session shared by the two halves of a connection.
#[derive(Debug)]
struct TlsSession {
    /// rustls' state; held only to hand it bytes or take bytes from it.
    conn: Mutex<ClientConnection>,
    /// The socket's sending side; held from encryption to the end of the write, so
    /// records reach the socket in the order rustls numbered them.
    out: Mutex<TcpStream>,
}

impl TlsSession {
    /// Encrypts `plaintext` and writes it, with whatever else rustls has queued
    /// (an alert, a close_notify, a key update); an empty `plaintext` writes only that.
    fn write(&self, plaintext: &[u8]) -> io::Result<()> {
        let mut out = lock(&self.out)?;
        let mut rest = plaintext;
        loop {
            let mut records = Vec::new();
            {
                let mut conn = lock(&self.conn)?;
                // rustls buffers a bounded amount: take what it accepts, encrypt it,
                // and come back for the rest.
                let taken = if rest.is_empty() {
                    0
                } else {
                    conn.writer().write(rest)?
                };
                rest = &rest[taken..];
                while conn.wants_write() {
                    conn.write_tls(&mut records)?;
                }
                if taken == 0 && records.is_empty() && !rest.is_empty() {
                    return Err(io::ErrorKind::WriteZero.into());
                }
            }
            out.write_all(&records)?;
            if rest.is_empty() {
                return Ok(());
            }
        }
    }

    /// Sends a close_notify (best effort: the server may be gone), then closes the
    /// socket in both directions.
    fn close(&self) -> io::Result<()> {
        if let Ok(mut conn) = lock(&self.conn) {
            conn.send_close_notify();
        }
        let _ = self.write(&[]);
        let out = lock(&self.out)?;
        out.shutdown(Shutdown::Both)
    }
}

/// The receiving side of a TLS session.
struct TlsReader {
    session: Arc<TlsSession>,
    /// The socket, a handle of its own (the same socket as the session's `out`).
    sock: TcpStream,
    /// Ciphertext read from the socket, `start..end` not yet handed to rustls.
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The socket reached its end; `eof_fed`: rustls has been told.
    eof: bool,
    eof_fed: bool,
}

impl fmt::Debug for TlsReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsReader")
            .field("sock", &self.sock)
            .field("buffered", &(self.end - self.start))
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

impl TlsReader {
    /// Plaintext rustls has already decrypted: `Some(n)` (0 at a close_notify), None
    /// when it needs more ciphertext.
    fn plaintext(&self, dst: &mut [u8]) -> io::Result<Option<usize>> {
        let mut conn = lock(&self.session.conn)?;
        match conn.reader().read(dst) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Hands the buffered ciphertext (or the end of the stream) to rustls, and sends
    /// what it has to answer. Called only when rustls holds no plaintext, so its
    /// received-plaintext limit is never in the way.
    fn feed(&mut self) -> io::Result<()> {
        let (processed, answer) = {
            let mut conn = lock(&self.session.conn)?;
            if self.start < self.end {
                let mut pending = &self.buf[self.start..self.end];
                self.start += conn.read_tls(&mut pending)?;
            } else if self.eof && !self.eof_fed {
                // A read of 0 bytes is how rustls learns of the end of the stream.
                conn.read_tls(&mut io::empty())?;
                self.eof_fed = true;
            }
            let processed = conn.process_new_packets().map(drop);
            (processed, conn.wants_write())
        };
        if answer {
            // A failure to send an alert or a key update shows up on the next send.
            let _ = self.session.write(&[]);
        }
        processed.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl Read for TlsReader {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(n) = self.plaintext(dst)? {
                return Ok(n);
            }
            if self.start == self.end {
                if self.eof_fed {
                    return Ok(0);
                }
                if !self.eof {
                    // The blocking wait, with no lock held: the sending half goes on.
                    let n = self.sock.read(&mut self.buf)?;
                    self.start = 0;
                    self.end = n;
                    self.eof = n == 0;
                }
            }
            self.feed()?;
        }
    }
}

/// Where a client reads from: the socket, or a TLS session's receiving side.
#[derive(Debug)]
enum Reader {
    Plain(TcpStream),
    Tls(TlsReader),
}

impl Reader {
    /// The TCP socket (under TLS, if any).
    fn tcp(&self) -> &TcpStream {
        match self {
            Reader::Plain(stream) => stream,
            Reader::Tls(reader) => &reader.sock,
        }
    }
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Reader::Plain(stream) => stream.read(buf),
            Reader::Tls(reader) => reader.read(buf),
        }
    }
}

/// Where a client writes to: the socket (a handle of its own), or a TLS session.
#[derive(Debug)]
enum Writer {
    Plain(TcpStream),
    Tls(Arc<TlsSession>),
}

impl Writer {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Writer::Plain(stream) => stream.write_all(bytes),
            Writer::Tls(session) => session.write(bytes),
        }
    }

    fn close(&self) -> io::Result<()> {
        let closed = match self {
            Writer::Plain(stream) => stream.shutdown(Shutdown::Both),
            Writer::Tls(session) => session.close(),
        };
        match closed {
            // Already closed by the server: the goal is reached.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }
}

/// The receiving state of a connection: what [`Client`] reads with, and what
/// [`ClientReceiver`] takes over.
#[derive(Debug)]
struct Inbound {
    reader: Reader,
    frames: FrameReader,
    /// Messages received while waiting for another one, in arrival order.
    pending: VecDeque<ServerMessage>,
    /// The error the server sent last, while nothing has followed it and the caller
    /// has not been handed it: a close right after it is reported with it.
    unseen_error: Option<crate::wire::proto::Error>,
}

impl Inbound {
    fn new(reader: Reader) -> Self {
        Self {
            reader,
            frames: FrameReader::new(),
            pending: VecDeque::new(),
            unseen_error: None,
        }
    }

    /// The next message, queued or from the socket, waiting until `deadline` (None:
    /// no limit).
    fn next(&mut self, deadline: Option<Instant>) -> Result<ServerMessage, ClientError> {
        let msg = match self.pending.pop_front() {
            Some(msg) => msg,
            None => self.read(deadline)?,
        };
        if let Some(data) = &msg.data {
            self.handed(data);
        }
        Ok(msg)
    }

    /// Notes that the caller was handed `data`.
    fn handed(&mut self, data: &Data) {
        if server_error(data).is_some() && server_error(data) == self.unseen_error.as_ref() {
            self.unseen_error = None;
        }
    }

    /// Reads until one whole `ServerMessage` is buffered, or `deadline`.
    fn read(&mut self, deadline: Option<Instant>) -> Result<ServerMessage, ClientError> {
        let result = self.read_frame(deadline);
        match &result {
            Ok(msg) => {
                self.unseen_error = msg.data.as_ref().and_then(server_error).cloned();
            }
            Err(ClientError::Closed) => {
                if let Some(e) = self.unseen_error.take() {
                    return Err(ClientError::ClosedAfterError {
                        code: e.code(),
                        message: e.message,
                    });
                }
            }
            Err(ClientError::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                if let Some(e) = self.unseen_error.take() {
                    return Err(ClientError::ClosedAfterError {
                        code: e.code(),
                        message: e.message,
                    });
                }
            }
            Err(_) => {}
        }
        result
    }

    fn read_frame(&mut self, deadline: Option<Instant>) -> Result<ServerMessage, ClientError> {
        loop {
            match self.frames.next_payload(MAX_INBOUND_FRAME) {
                Ok(Some(payload)) => return Ok(ServerMessage::decode(payload)?),
                Ok(None) => {}
                Err(FrameError::TooLarge { len, max }) => {
                    return Err(match tls_record_header(len) {
                        Some(header) => ClientError::TlsExpected { header },
                        None => ClientError::Frame(FrameError::TooLarge { len, max }),
                    })
                }
            }
            let timeout = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(ClientError::Timeout);
                    }
                    Some(left)
                }
                None => None,
            };
            self.reader.tcp().set_read_timeout(timeout)?;
            const CHUNK: usize = 64 * 1024;
            let dst = self.frames.read_buf(CHUNK);
            let n = match self.reader.read(dst) {
                Ok(n) => n,
                Err(e) => {
                    self.frames.commit(CHUNK, 0);
                    return Err(match e.kind() {
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
                        io::ErrorKind::Interrupted => continue,
                        // TLS: the server closed the socket without a close_notify.
                        io::ErrorKind::UnexpectedEof => ClientError::Closed,
                        _ => ClientError::Io(e),
                    });
                }
            };
            self.frames.commit(CHUNK, n);
            if n == 0 {
                return Err(ClientError::Closed);
            }
        }
    }
}

/// The error a message carries when it is one: `ServerMessage.error`, or a
/// `LoginResponse` with a code other than NONE.
fn server_error(data: &Data) -> Option<&crate::wire::proto::Error> {
    match data {
        Data::Error(e) => Some(e),
        Data::LoginResponse(r) => r.error.as_ref().filter(|e| e.code() != ErrorCode::None),
        _ => None,
    }
}

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
        let session = Arc::new(TlsSession {
            conn: Mutex::new(conn),
            out: Mutex::new(sock.try_clone()?),
        });
        let reader = TlsReader {
            session: session.clone(),
            sock,
            buf: vec![0; 32 * 1024].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            eof_fed: false,
        };
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

    /// Sends one `ClientMessage` frame.
    pub fn send(&mut self, msg: client_message::Data) -> Result<(), ClientError> {
        let bytes = frame::encode(&ClientMessage { data: Some(msg) });
        self.send_raw(&bytes)
    }

    /// Writes raw bytes to the connection (tests of malformed input; under TLS they
    /// are encrypted like any other bytes).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.writer.write_all(bytes)?;
        Ok(())
    }

    /// Logs in; `Err(Rejected)` if the server answered with an error code,
    /// `Err(ClosedAfterError)` if it sent an error and closed (SERVER_FULL).
    pub fn login(&mut self, player_id: &str, token: Option<&str>) -> Result<(), ClientError> {
        self.send(client_message::Data::LoginRequest(LoginRequest {
            player_id: player_id.into(),
            auth_config: token.map(|t| AuthConfig::Bearer(AuthConfigBearer { token: t.into() })),
        }))?;
        let resp: LoginResponse = self.expect(|d| match d {
            Data::LoginResponse(r) => Ok(r),
            other => Err(other),
        })?;
        check(resp.error)
    }

    /// Joins a room (`max_players` None sends no config); returns the full response.
    pub fn join(
        &mut self,
        room_id: &str,
        max_players: Option<u32>,
    ) -> Result<JoinResponse, ClientError> {
        self.send(client_message::Data::JoinRequest(JoinRequest {
            room_id: room_id.into(),
            room_config: max_players.map(|m| RoomConfig { max_players: m }),
        }))?;
        let resp: JoinResponse = self.expect(|d| match d {
            Data::JoinResponse(r) if r.room_id == room_id => Ok(r),
            other => Err(other),
        })?;
        check(resp.error.clone())?;
        Ok(resp)
    }

    /// Leaves a room.
    pub fn leave(&mut self, room_id: &str) -> Result<LeaveResponse, ClientError> {
        self.send(client_message::Data::LeaveRequest(LeaveRequest {
            room_id: room_id.into(),
        }))?;
        let resp: LeaveResponse = self.expect(|d| match d {
            Data::LeaveResponse(r) if r.room_id == room_id => Ok(r),
            other => Err(other),
        })?;
        check(resp.error.clone())?;
        Ok(resp)
    }

    /// Broadcasts (`targets` empty) or targets a message; the server sends no response.
    pub fn send_message(
        &mut self,
        room_id: &str,
        targets: &[&str],
        body: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        self.send(client_message::Data::SendMessage(SendMessage {
            target_ids: targets.iter().map(|t| t.to_string()).collect(),
            room_id: room_id.into(),
            body: body.into(),
        }))
    }

    /// Sends a ping and waits for its pong; returns the round-trip time.
    pub fn ping(&mut self, nonce: u64) -> Result<Duration, ClientError> {
        let start = Instant::now();
        self.send(client_message::Data::Ping(Ping { nonce }))?;
        self.expect(|d| match d {
            Data::Pong(p) if p.nonce == nonce => Ok(()),
            other => Err(other),
        })?;
        Ok(start.elapsed())
    }

    /// The next message, in arrival order, waiting up to the timeout.
    pub fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        self.inbound.next(Some(Instant::now() + self.timeout))
    }

    /// The next message whose data `pick` accepts; the ones it passes over stay queued
    /// for later `recv` calls, in order.
    pub fn expect<T>(
        &mut self,
        mut pick: impl FnMut(Data) -> Result<T, Data>,
    ) -> Result<T, ClientError> {
        let mut skipped = VecDeque::new();
        let deadline = Instant::now() + self.timeout;
        let result = loop {
            let msg = match self.inbound.pending.pop_front() {
                Some(msg) => msg,
                None => match self.inbound.read(Some(deadline)) {
                    Ok(msg) => msg,
                    Err(e) => break Err(e),
                },
            };
            match msg.data {
                Some(data) => {
                    let error = server_error(&data).cloned();
                    match pick(data) {
                        Ok(found) => {
                            if error.is_some() && error == self.inbound.unseen_error {
                                self.inbound.unseen_error = None;
                            }
                            break Ok(found);
                        }
                        Err(data) => skipped.push_back(ServerMessage { data: Some(data) }),
                    }
                }
                None => skipped.push_back(msg),
            }
        };
        skipped.append(&mut self.inbound.pending);
        self.inbound.pending = skipped;
        result
    }

    /// Waits for `ServerMessage.error` and returns its code and message.
    pub fn expect_error(&mut self) -> Result<(ErrorCode, String), ClientError> {
        self.expect(|d| match d {
            Data::Error(e) => Ok((e.code(), e.message)),
            other => Err(other),
        })
    }

    /// Waits until the server closes the connection, discarding what arrives first.
    pub fn expect_closed(&mut self) -> Result<(), ClientError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.inbound.read(Some(deadline)) {
                Ok(_) => continue,
                Err(ClientError::Closed | ClientError::ClosedAfterError { .. }) => return Ok(()),
                Err(ClientError::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Ok(())
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Splits the connection into a sending and a receiving half that can live on two
    /// threads, over plain TCP or TLS. Messages already received and bytes already
    /// buffered go to the receiving half. (It cannot fail any more; the `Result` is
    /// kept for callers written when TLS could not be split.)
    pub fn split(self) -> Result<(ClientSender, ClientReceiver), ClientError> {
        Ok((
            ClientSender {
                writer: self.writer,
            },
            ClientReceiver {
                inbound: self.inbound,
            },
        ))
    }
}

/// Completes a client handshake on `sock` within [`HANDSHAKE_TIMEOUT`].
fn handshake(
    conn: &mut ClientConnection,
    sock: &mut TcpStream,
    server_name: &str,
) -> Result<(), ClientError> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClientError::Timeout);
        }
        sock.set_read_timeout(Some(left))?;
        if let Err(e) = conn.complete_io(sock) {
            return Err(match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => {
                    ClientError::HandshakeClosed
                }
                _ => match e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                {
                    Some(error) => ClientError::Handshake {
                        server_name: server_name.to_string(),
                        error: error.clone(),
                    },
                    None => ClientError::Io(e),
                },
            });
        }
    }
    Ok(())
}

/// The sending half of a split [`Client`]: requests go out at once; their answers
/// arrive on the [`ClientReceiver`].
#[derive(Debug)]
pub struct ClientSender {
    writer: Writer,
}

impl ClientSender {
    /// Sends one `ClientMessage` frame.
    pub fn send(&mut self, msg: client_message::Data) -> Result<(), ClientError> {
        let bytes = frame::encode(&ClientMessage { data: Some(msg) });
        self.writer.write_all(&bytes)?;
        Ok(())
    }

    /// Closes the connection for both halves (after a TLS close_notify): a receiver
    /// blocked in [`ClientReceiver::recv`] returns [`ClientError::Closed`].
    pub fn close(&self) -> Result<(), ClientError> {
        Ok(self.writer.close()?)
    }
}

/// The receiving half of a split [`Client`].
#[derive(Debug)]
pub struct ClientReceiver {
    inbound: Inbound,
}

impl ClientReceiver {
    /// The next message, waiting as long as it takes; [`ClientError::Closed`] once the
    /// connection is closed ([`ClientError::ClosedAfterError`] if an error this
    /// receiver has not returned yet came last).
    pub fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        self.inbound.next(None)
    }

    /// The next message, waiting up to `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<ServerMessage, ClientError> {
        self.inbound.next(Some(Instant::now() + timeout))
    }
}

/// Encodes a `ClientMessage` frame with an arbitrary payload (for raw-bytes tests).
pub fn raw_frame(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.freeze()
}

fn check(error: Option<crate::wire::proto::Error>) -> Result<(), ClientError> {
    match error {
        Some(e) if e.code() != ErrorCode::None => Err(ClientError::Rejected {
            code: e.code(),
            message: e.message,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_record_headers_are_recognised() {
        // What a TLS server's alert looks like as a frame length (the number users saw).
        assert_eq!(
            tls_record_header(352_518_912),
            Some([0x15, 0x03, 0x03, 0x00])
        );
        assert_eq!(
            tls_record_header(0x1603_0100),
            Some([0x16, 0x03, 0x01, 0x00])
        );
        assert_eq!(
            tls_record_header(0x1703_0340),
            Some([0x17, 0x03, 0x03, 0x40])
        );
        // Other oversized lengths are just oversized.
        assert_eq!(tls_record_header(0x1800_0000), None);
        assert_eq!(tls_record_header(0x1502_0300), None);
        assert_eq!(tls_record_header(0x1503_0500), None);
        assert_eq!(tls_record_header(70_000), None);
        let e = ClientError::TlsExpected {
            header: [0x15, 0x03, 0x03, 0x00],
        };
        assert!(e.to_string().contains("15 03 03 00"), "{e}");
        assert!(e.to_string().contains("speaks TLS"), "{e}");
    }

    #[test]
    fn messages_do_not_repeat_their_cause() {
        // Each variant either includes its cause or returns it as the source, never
        // both: an error chain printer would print it twice.
        use std::error::Error as _;
        let errors = [
            ClientError::from(io::Error::other("boom")),
            ClientError::Frame(FrameError::TooLarge { len: 9, max: 8 }),
            ClientError::from(ServerMessage::decode(&[0xff_u8][..]).unwrap_err()),
            ClientError::from(TlsError::ServerName("x y".into())),
            ClientError::Handshake {
                server_name: "localhost".into(),
                error: rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            },
        ];
        for e in errors {
            assert!(e.source().is_none(), "{e} also has a source");
        }
    }

    #[test]
    fn handshake_errors_carry_a_hint() {
        let unknown = ClientError::Handshake {
            server_name: "localhost".into(),
            error: rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        };
        assert!(
            unknown.to_string().contains("trust the CA that did"),
            "{unknown}"
        );
    }
}
