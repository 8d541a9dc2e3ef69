//! The client over WebSocket (PROTOCOL.md, "WebSocket"): the upgrade, then a byte
//! stream adapter, so the rest of the client (framing, requests, split halves) is the
//! same as over TCP. Outgoing length-prefixed frames become one masked binary message
//! each; each incoming binary message is handed on as a length-prefixed frame.

use std::io::{self, Cursor, Read};

use super::transport::{Reader, Writer};

use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// What the server answered the upgrade with, when it was not `101`.
fn refused(status_line: &str, body: &str) -> io::Error {
    io::Error::other(format!(
        "WebSocket upgrade refused: {status_line}: {}",
        body.trim()
    ))
}

/// Sends the upgrade request for `path` and reads the `101` answer. Returns the bytes
/// that followed it (the server's first messages, if any).
pub(super) fn handshake(
    stream: &mut Reader,
    writer: &mut Writer,
    host: &str,
    path: &str,
) -> io::Result<Vec<u8>> {
    let key = "Y29yZWNhc3QtY2xpZW50IQ=="; // 16 bytes in base64, as RFC 6455 asks
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: corecast.v1\r\n\r\n"
    );
    writer.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    let end = loop {
        if let Some(at) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if response.len() > 16 * 1024 {
            return Err(io::Error::other(
                "WebSocket upgrade: response headers too long",
            ));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            let text = String::from_utf8_lossy(&response).into_owned();
            let status = text
                .lines()
                .next()
                .unwrap_or("connection closed")
                .to_string();
            return Err(refused(
                &status,
                text.split("\r\n\r\n").nth(1).unwrap_or(""),
            ));
        }
        response.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    let status = head.lines().next().unwrap_or_default().to_string();
    if !status.starts_with("HTTP/1.1 101") {
        // The refusal's body says why; read what is there.
        let _ = stream
            .tcp()
            .set_read_timeout(Some(std::time::Duration::from_millis(500)));
        let mut body = response[end..].to_vec();
        let _ = stream.read_to_end(&mut body);
        return Err(refused(&status, &String::from_utf8_lossy(&body)));
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    if !head.contains(&format!("Sec-WebSocket-Accept: {accept}")) {
        return Err(io::Error::other(
            "WebSocket upgrade: wrong Sec-WebSocket-Accept",
        ));
    }
    Ok(response[end..].to_vec())
}

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
