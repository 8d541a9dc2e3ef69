//! Where a client reads from and writes to: the TCP socket itself, the two sides of a
//! TLS session, or either of those carrying WebSocket messages.

use std::io::{self, Cursor, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;

use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use super::tls_session::{TlsReader, TlsSession};

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

// ---- WebSocket: outgoing length-prefixed frames become one masked binary message
// each; each incoming binary message is handed on as a length-prefixed frame. ----

/// The receiving side: WebSocket messages in, length-prefixed frames out.
#[derive(Debug)]
pub(super) struct WsReader {
    pub(super) inner: Box<Reader>,
    /// Bytes read and not yet decoded.
    raw: Vec<u8>,
    /// Frames decoded and not yet handed out.
    ready: Vec<u8>,
    /// Where handing out `ready` stands.
    at: usize,
    /// A fragmented message.
    message: Option<Vec<u8>>,
    /// A close frame arrived.
    closed: bool,
}

impl WsReader {
    pub(super) fn new(inner: Reader, first: Vec<u8>) -> Self {
        Self {
            inner: Box::new(inner),
            raw: first,
            ready: Vec::new(),
            at: 0,
            message: None,
            closed: false,
        }
    }

    /// Decodes every whole frame in `raw`.
    fn decode(&mut self) -> io::Result<()> {
        let mut used = 0;
        loop {
            let mut cursor = Cursor::new(&self.raw[used..]);
            let Some((header, len)) = FrameHeader::parse(&mut cursor).map_err(io::Error::other)?
            else {
                break;
            };
            let start = used + cursor.position() as usize;
            let len = len as usize;
            if self.raw.len() - start < len {
                break;
            }
            let mut payload = self.raw[start..start + len].to_vec();
            if let Some(mask) = header.mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i & 3];
                }
            }
            used = start + len;
            match header.opcode {
                OpCode::Data(Data::Binary | Data::Continue) => {
                    let mut message = self.message.take().unwrap_or_default();
                    message.extend_from_slice(&payload);
                    if header.is_final {
                        self.ready
                            .extend_from_slice(&(message.len() as u32).to_be_bytes());
                        self.ready.extend_from_slice(&message);
                    } else {
                        self.message = Some(message);
                    }
                }
                OpCode::Control(Control::Close) => {
                    self.closed = true;
                    break;
                }
                OpCode::Control(_) => {}
                OpCode::Data(_) => {
                    return Err(io::Error::other("the server sent a non-binary message"));
                }
            }
        }
        self.raw.drain(..used);
        Ok(())
    }
}

impl Read for WsReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.at < self.ready.len() {
                let n = buf.len().min(self.ready.len() - self.at);
                buf[..n].copy_from_slice(&self.ready[self.at..self.at + n]);
                self.at += n;
                if self.at == self.ready.len() {
                    self.ready.clear();
                    self.at = 0;
                }
                return Ok(n);
            }
            if self.closed {
                return Ok(0);
            }
            self.decode()?;
            if self.at < self.ready.len() || self.closed {
                continue;
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.inner.read(&mut chunk)?;
            if n == 0 {
                return Ok(0);
            }
            self.raw.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Encodes length-prefixed frames as masked binary messages (a partial frame waits
/// for its rest).
#[derive(Debug)]
pub(super) struct WsWriter {
    pub(super) inner: Box<Writer>,
    pending: Vec<u8>,
    mask: u32,
}

impl WsWriter {
    pub(super) fn new(inner: Writer) -> Self {
        Self {
            inner: Box::new(inner),
            pending: Vec::new(),
            mask: 0x9e37_79b9,
        }
    }

    pub(super) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut at = 0;
        while self.pending.len() - at >= 4 {
            let len = u32::from_be_bytes(self.pending[at..at + 4].try_into().unwrap_or_default())
                as usize;
            if self.pending.len() - at - 4 < len {
                break;
            }
            let payload = &self.pending[at + 4..at + 4 + len];
            // A fresh mask per message (xorshift; masking is not secrecy here).
            self.mask ^= self.mask << 13;
            self.mask ^= self.mask >> 17;
            self.mask ^= self.mask << 5;
            let mask = self.mask.to_be_bytes();
            let header = FrameHeader {
                opcode: OpCode::Data(Data::Binary),
                mask: Some(mask),
                ..FrameHeader::default()
            };
            header
                .format(len as u64, &mut out)
                .map_err(io::Error::other)?;
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
            at += 4 + len;
        }
        self.pending.drain(..at);
        self.inner.write_all(&out)
    }
}
