//! A small blocking client over `std::net`: one connection, one thread. It is what the
//! integration tests use and a reference for client authors; it is not built for
//! thousands of connections (the load-test harness drives those itself). It speaks
//! plain TCP ([`Client::connect`]) or TLS ([`Client::connect_tls`], rustls).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use prost::Message;
use rustls::{ClientConnection, StreamOwned};
use rustls_pki_types::ServerName;

use crate::frame::{self, FrameError, FrameReader};
use crate::proto::{
    client_message, login_request::AuthConfig, server_message::Data, AuthConfigBearer,
    ClientMessage, ErrorCode, JoinRequest, JoinResponse, LeaveRequest, LeaveResponse, LoginRequest,
    LoginResponse, Ping, RoomConfig, SendMessage, ServerMessage,
};
use crate::tls::{self, TlsError};

/// The largest frame the client accepts from a server.
const MAX_INBOUND_FRAME: usize = 16 * 1024 * 1024;

/// What can go wrong on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Socket error.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// Nothing arrived within the timeout.
    #[error("timed out waiting for the server")]
    Timeout,
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// The server sent a frame that is not a `ServerMessage`.
    #[error("undecodable frame: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The server sent an oversized frame.
    #[error("framing: {0}")]
    Frame(#[from] FrameError),
    /// A response carried an error code other than NONE.
    #[error("server answered {code:?}: {message}")]
    Rejected {
        /// The code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// The TLS configuration is unusable (a handshake failure is `Io`).
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// [`Client::split`] of a TLS connection (one TLS session cannot be shared by two
    /// threads without a lock; split is for plain TCP).
    #[error("split needs a plain TCP connection")]
    SplitTls,
}

/// The connection under a [`Client`]: plain TCP or TLS.
enum Connection {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Connection::Plain(stream) => stream.read(buf),
            Connection::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Connection::Plain(stream) => stream.write(buf),
            Connection::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Connection::Plain(stream) => stream.flush(),
            Connection::Tls(stream) => stream.flush(),
        }
    }
}

/// One blocking connection to a corecast server.
pub struct Client {
    stream: Connection,
    reader: FrameReader,
    /// Messages received while waiting for another one, in arrival order.
    pending: VecDeque<ServerMessage>,
    timeout: Duration,
}

impl Client {
    /// Connects with TCP_NODELAY; waits use a default timeout of 5 s.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self::over(Connection::Plain(stream)))
    }

    /// Connects over TLS to a server started with `--tls-cert`/`--tls-key`, trusting
    /// only `root_cert_der` (the server's self-signed certificate or its CA, DER) for
    /// `server_name` (a DNS name or IP address in the certificate). The handshake
    /// completes here, within the default 5 s timeout, so a bad certificate fails here.
    /// [`Client::split`] is not available on a TLS client.
    pub fn connect_tls(
        addr: impl ToSocketAddrs,
        server_name: &str,
        root_cert_der: &[u8],
    ) -> Result<Self, ClientError> {
        let config = tls::client_config(root_cert_der)?;
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| TlsError::ServerName(server_name.into()))?;
        let session = ClientConnection::new(config, name).map_err(TlsError::Rejected)?;
        let socket = TcpStream::connect(addr)?;
        socket.set_nodelay(true)?;
        let mut stream = StreamOwned::new(session, socket);
        let deadline = Instant::now() + Duration::from_secs(5);
        while stream.conn.is_handshaking() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout);
            }
            stream.sock.set_read_timeout(Some(left))?;
            match stream.conn.complete_io(&mut stream.sock) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(ClientError::Timeout)
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Self::over(Connection::Tls(Box::new(stream))))
    }

    fn over(stream: Connection) -> Self {
        Self {
            stream,
            reader: FrameReader::new(),
            pending: VecDeque::new(),
            timeout: Duration::from_secs(5),
        }
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Connection::Tls(_))
    }

    /// Sets how long the waiting calls wait.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The server's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.tcp().peer_addr()
    }

    /// The underlying TCP socket (under TLS, if any), for tests that misbehave on
    /// purpose.
    pub fn stream(&self) -> &TcpStream {
        self.stream.tcp()
    }

    /// Sends one `ClientMessage` frame.
    pub fn send(&mut self, msg: client_message::Data) -> Result<(), ClientError> {
        let bytes = frame::encode(&ClientMessage { data: Some(msg) });
        self.send_raw(&bytes)
    }

    /// Writes raw bytes to the connection (tests of malformed input; under TLS they
    /// are encrypted like any other bytes).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Logs in; `Err(Rejected)` if the server answered with an error code.
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
        if let Some(msg) = self.pending.pop_front() {
            return Ok(msg);
        }
        self.read_message(Instant::now() + self.timeout)
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
            let msg = match self.pending.pop_front() {
                Some(msg) => msg,
                None => match self.read_message(deadline) {
                    Ok(msg) => msg,
                    Err(e) => break Err(e),
                },
            };
            match msg.data {
                Some(data) => match pick(data) {
                    Ok(found) => break Ok(found),
                    Err(data) => skipped.push_back(ServerMessage { data: Some(data) }),
                },
                None => skipped.push_back(msg),
            }
        };
        skipped.append(&mut self.pending);
        self.pending = skipped;
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
            match self.read_message(deadline) {
                Ok(_) => continue,
                Err(ClientError::Closed) => return Ok(()),
                Err(ClientError::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Ok(())
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn read_message(&mut self, deadline: Instant) -> Result<ServerMessage, ClientError> {
        read_message(&mut self.stream, &mut self.reader, Some(deadline))
    }

    /// Splits the connection into a sending and a receiving half that can live on two
    /// threads (both use the same socket, through `TcpStream::try_clone`). Messages
    /// already received and bytes already buffered go to the receiving half. Plain TCP
    /// only: a TLS client gets [`ClientError::SplitTls`].
    pub fn split(self) -> Result<(ClientSender, ClientReceiver), ClientError> {
        let Connection::Plain(stream) = self.stream else {
            return Err(ClientError::SplitTls);
        };
        let write_stream = stream.try_clone()?;
        Ok((
            ClientSender {
                stream: write_stream,
            },
            ClientReceiver {
                stream,
                reader: self.reader,
                pending: self.pending,
            },
        ))
    }
}

/// The sending half of a split [`Client`]: requests go out at once; their answers
/// arrive on the [`ClientReceiver`].
#[derive(Debug)]
pub struct ClientSender {
    stream: TcpStream,
}

impl ClientSender {
    /// Sends one `ClientMessage` frame.
    pub fn send(&mut self, msg: client_message::Data) -> Result<(), ClientError> {
        let bytes = frame::encode(&ClientMessage { data: Some(msg) });
        self.stream.write_all(&bytes)?;
        Ok(())
    }

    /// Closes the connection for both halves: a receiver blocked in
    /// [`ClientReceiver::recv`] returns [`ClientError::Closed`].
    pub fn close(&self) -> Result<(), ClientError> {
        match self.stream.shutdown(Shutdown::Both) {
            // Already closed by the server: the goal is reached.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => Ok(other?),
        }
    }
}

/// The receiving half of a split [`Client`].
#[derive(Debug)]
pub struct ClientReceiver {
    stream: TcpStream,
    reader: FrameReader,
    pending: VecDeque<ServerMessage>,
}

impl ClientReceiver {
    /// The next message, waiting as long as it takes; [`ClientError::Closed`] once the
    /// connection is closed.
    pub fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        if let Some(msg) = self.pending.pop_front() {
            return Ok(msg);
        }
        read_message(&mut self.stream, &mut self.reader, None)
    }

    /// The next message, waiting up to `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<ServerMessage, ClientError> {
        if let Some(msg) = self.pending.pop_front() {
            return Ok(msg);
        }
        read_message(
            &mut self.stream,
            &mut self.reader,
            Some(Instant::now() + timeout),
        )
    }
}

/// Reads until one whole `ServerMessage` is buffered, or `deadline` (None: no limit).
fn read_message(
    stream: &mut (impl Read + AsTcp),
    reader: &mut FrameReader,
    deadline: Option<Instant>,
) -> Result<ServerMessage, ClientError> {
    loop {
        if let Some(payload) = reader.next_payload(MAX_INBOUND_FRAME)? {
            return Ok(ServerMessage::decode(payload)?);
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
        stream.tcp().set_read_timeout(timeout)?;
        const CHUNK: usize = 64 * 1024;
        let dst = reader.read_buf(CHUNK);
        let read = stream.read(dst);
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                reader.commit(CHUNK, 0);
                return Err(match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
                    io::ErrorKind::Interrupted => continue,
                    // TLS: the server closed the socket without a close_notify (a cut).
                    io::ErrorKind::UnexpectedEof => ClientError::Closed,
                    _ => ClientError::Io(e),
                });
            }
        };
        reader.commit(CHUNK, n);
        if n == 0 {
            return Err(ClientError::Closed);
        }
    }
}

/// Gives the TCP socket under a connection (for its read timeout).
trait AsTcp {
    fn tcp(&self) -> &TcpStream;
}

impl AsTcp for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl AsTcp for Connection {
    fn tcp(&self) -> &TcpStream {
        match self {
            Connection::Plain(stream) => stream,
            Connection::Tls(stream) => stream.get_ref(),
        }
    }
}

/// Encodes a `ClientMessage` frame with an arbitrary payload (for raw-bytes tests).
pub fn raw_frame(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.freeze()
}

fn check(error: Option<crate::proto::Error>) -> Result<(), ClientError> {
    match error {
        Some(e) if e.code() != ErrorCode::None => Err(ClientError::Rejected {
            code: e.code(),
            message: e.message,
        }),
        _ => Ok(()),
    }
}
