//! The client's TLS: the handshake, and the rustls session that the two halves of a
//! split connection share ([`TlsSession`], the sending side; [`TlsReader`], the
//! receiving side). The session's mutex is held only to hand rustls bytes or take
//! bytes from it, never across a blocking socket call.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustls::ClientConnection;

use super::ClientError;

/// How long [`Client::connect_tls_with`](super::Client::connect_tls_with) waits for the
/// handshake to complete.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Completes a client handshake on `sock` within [`HANDSHAKE_TIMEOUT`].
pub(super) fn handshake(
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

/// Locks a mutex of the TLS session; a poisoned one (a thread panicked while it held
/// it, leaving rustls' state unknown) is an error, not a panic.
fn lock<T>(mutex: &Mutex<T>) -> io::Result<MutexGuard<'_, T>> {
    mutex
        .lock()
        .map_err(|_| io::Error::other("TLS session state lost (a thread panicked using it)"))
}

/// A TLS session shared by the two halves of a connection.
#[derive(Debug)]
pub(super) struct TlsSession {
    /// rustls' state; held only to hand it bytes or take bytes from it.
    conn: Mutex<ClientConnection>,
    /// The socket's sending side; held from encryption to the end of the write, so
    /// records reach the socket in the order rustls numbered them.
    out: Mutex<TcpStream>,
}

impl TlsSession {
    /// The session `conn`, writing to `out`.
    pub(super) fn new(conn: ClientConnection, out: TcpStream) -> Self {
        Self {
            conn: Mutex::new(conn),
            out: Mutex::new(out),
        }
    }

    /// Encrypts `plaintext` and writes it, with whatever else rustls has queued
    /// (an alert, a close_notify, a key update); an empty `plaintext` writes only that.
    pub(super) fn write(&self, plaintext: &[u8]) -> io::Result<()> {
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
    pub(super) fn close(&self) -> io::Result<()> {
        if let Ok(mut conn) = lock(&self.conn) {
            conn.send_close_notify();
        }
        let _ = self.write(&[]);
        let out = lock(&self.out)?;
        out.shutdown(Shutdown::Both)
    }
}

/// The receiving side of a TLS session.
pub(super) struct TlsReader {
    session: Arc<TlsSession>,
    /// The socket, a handle of its own (the same socket as the session's `out`).
    pub(super) sock: TcpStream,
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
    /// The receiving side of `session`, reading from `sock`.
    pub(super) fn new(session: Arc<TlsSession>, sock: TcpStream) -> Self {
        Self {
            session,
            sock,
            buf: vec![0; 32 * 1024].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            eof_fed: false,
        }
    }

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
