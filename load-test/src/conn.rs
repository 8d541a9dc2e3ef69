//! One client connection: a non-blocking socket, a write buffer that coalesces
//! everything due in one tick into one `write`, and the partial tail of the last read.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use crate::targets::{Codec, ResumePoint};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Not yet started.
    Idle,
    /// Non-blocking connect in progress.
    Connecting,
    /// Handshake sent, waiting for [`crate::targets::Event::LoggedIn`].
    LoggingIn,
    /// Initial join sent.
    Joining,
    /// Set up.
    Ready,
    /// Closed (by the server, an error, or us).
    Closed,
}

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The receiving connection of member `n` (also its sending one, except on Redis).
    Member(usize),
    /// The publishing connection of sender `n` (Redis only).
    Publisher(usize),
    /// A connect/idle-scenario client: log in, nothing else.
    Client,
    /// A connection member `n` gave up on (reconnect scenario) while the server may
    /// still hold it open: what arrives on it is ignored, the server is expected to
    /// close it with SESSION_REPLACED once the member's new connection logs in.
    Abandoned(usize),
}

/// One connection.
pub struct Conn {
    /// The socket (None once closed).
    pub socket: Option<Socket>,
    /// Its protocol state.
    pub codec: Codec,
    /// Life-cycle state.
    pub state: ConnState,
    /// Purpose.
    pub role: Role,
    /// The player id it logs in as.
    pub player: String,
    /// Its own login token, minted for `player` at plan time (`--jwt-*`; None: the
    /// plan's `--token`, if any).
    pub token: Option<String>,
    /// Bytes read but not yet a whole message.
    pub rbuf: Vec<u8>,
    /// Bytes to write; `wbuf[wpos..]` is still unwritten.
    pub wbuf: Vec<u8>,
    wpos: usize,
    /// Whether epoll watches for writability.
    pub write_interest: bool,
    /// When its connect started or was scheduled (connect latency).
    pub started_ns: u64,
    /// Whether it sits in the worker's dirty list.
    pub dirty: bool,
    /// A member's reconnection: log in with `replace_existing` and resume the room
    /// from here (None: a first connection, plain login and join).
    pub rejoin: Option<Rejoin>,
}

/// What a member's new connection resumes (reconnect scenario).
#[derive(Debug, Clone)]
pub struct Rejoin {
    /// Where to resume the room.
    pub from: ResumePoint,
    /// When the member dropped its previous connection (resume time).
    pub dropped_ns: u64,
}

impl Conn {
    /// A connection not yet started.
    pub fn new(codec: Codec, role: Role, player: String) -> Self {
        Self {
            socket: None,
            codec,
            state: ConnState::Idle,
            role,
            player,
            token: None,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            write_interest: false,
            started_ns: 0,
            dirty: false,
            rejoin: None,
        }
    }

    /// The raw fd, if open.
    pub fn fd(&self) -> Option<RawFd> {
        self.socket.as_ref().map(|s| s.as_raw_fd())
    }

    /// Writes as much of the buffer as the socket takes. `Ok(true)` when all is
    /// written, `Ok(false)` when the socket is full (wait for writability).
    pub fn flush(&mut self) -> io::Result<bool> {
        let Some(mut socket) = self.socket.as_ref() else {
            self.wbuf.clear();
            self.wpos = 0;
            return Ok(true);
        };
        while self.wpos < self.wbuf.len() {
            match socket.write(&self.wbuf[self.wpos..]) {
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.wpos > 1 << 20 {
                        self.wbuf.drain(..self.wpos);
                        self.wpos = 0;
                    }
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        Ok(true)
    }

    /// Reads into `buf`; `Ok(None)` when nothing is available now, `Ok(Some(0))` on EOF.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let Some(mut socket) = self.socket.as_ref() else {
            return Ok(Some(0));
        };
        loop {
            return match socket.read(buf) {
                Ok(n) => Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }
}

/// Starts a non-blocking connect to `addr`, optionally from a chosen loopback source
/// address (each source address has its own ~28k ephemeral ports).
pub fn start_connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        // Let connect() pick the port per destination instead of bind() reserving one.
        let one: libc::c_int = 1;
        // SAFETY: valid fd, option value is a c_int that outlives the call.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => Ok(socket),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(socket),
        Err(e) => Err(e),
    }
}
