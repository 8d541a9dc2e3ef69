//! WebSocket (RFC 6455) on the same shards as TCP (PROTOCOL.md, "WebSocket"): the HTTP
//! upgrade, and a sans-I/O codec between WebSocket frames and the length-prefixed
//! frames the rest of the server speaks. `tungstenite` parses and formats the frame
//! headers; nothing here owns a socket or a runtime.
//!
//! - In: [`Decoder`] turns what the client sends into `u32 length + ClientMessage`
//!   frames for the [`Driver`](crate::conn::driver::Driver) (unmasking is a copy the
//!   bytes need anyway), answers pings, and reports a close or a bad frame.
//! - Out: the writer sends each queued frame (the shared, encoded-once `Bytes`) as a
//!   per-connection header ([`binary_header`]) followed by the frame's payload, the
//!   length prefix skipped: the payload is never copied per recipient.

use std::cell::{Cell, RefCell};
use std::io::Cursor;

use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use crate::wire::proto::ErrorCode;

/// Longest upgrade request accepted (request line and headers).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// The subprotocol selected when the client offers it.
pub const SUBPROTOCOL: &str = "corecast.v1";

/// Paths the upgrade is accepted on: corecast's own, and the original protocol's.
pub const PATHS: [&str; 2] = ["/ws", "/app"];

/// Close codes (RFC 6455, 7.4.1).
pub mod close {
    /// The client closed, and the server answers.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A malformed frame (unmasked, reserved bits, a bad opcode or fragment).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message (corecast speaks binary protobuf only).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Any other error that closes the connection (UNAUTHORIZED, SLOW_CONSUMER, ...).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message over `--max-frame-bytes`.
    pub const TOO_BIG: u16 = 1009;
}

/// What a WebSocket connection's reader and writer share: control frames waiting to
/// be written, and the code the closing frame will carry.
#[derive(Debug, Default)]
pub struct WsLink {
    /// Whole control frames (pongs) to write before the next message.
    pub control: RefCell<Vec<u8>>,
    /// The close code decided by the reader (a client's close, a bad frame); the
    /// writer picks one from the server's state otherwise.
    pub close_code: Cell<Option<u16>>,
}

/// A refused upgrade: an HTTP status with a reason the client can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The status code.
    pub status: u16,
    /// Why, as plain text.
    pub message: String,
}

impl HttpError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// The whole HTTP response.
    pub fn response(&self) -> Vec<u8> {
        let reason = match self.status {
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            426 => "Upgrade Required",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let extra = if self.status == 426 {
            "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n"
        } else if self.status == 405 {
            "Allow: GET\r\n"
        } else {
            ""
        };
        let body = format!("{}\n", self.message);
        format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            self.status,
            body.len()
        )
        .into_bytes()
    }
}

/// An accepted upgrade: the 101 response, and how many request bytes it used (what
/// follows is the client's first WebSocket bytes).
#[derive(Debug)]
pub struct Accepted {
    /// The `101 Switching Protocols` response.
    pub response: Vec<u8>,
    /// Bytes of the request.
    pub used: usize,
}

/// Checks the upgrade request at the start of `buf`: `Ok(None)` while it is
/// incomplete. `origins`: the `--ws-allowed-origins` list (empty: any origin).
pub fn upgrade(buf: &[u8], origins: &[String]) -> Result<Option<Accepted>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let used = match request.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_REQUEST_BYTES => {
            return Err(HttpError::new(
                431,
                format!("the upgrade request is over {MAX_REQUEST_BYTES} bytes"),
            ));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::new(431, "more than 32 header fields"));
        }
        Err(e) => return Err(HttpError::new(400, format!("not an HTTP request: {e}"))),
    };
    if request.method != Some("GET") {
        return Err(HttpError::new(405, "a WebSocket upgrade is a GET request"));
    }
    let path = request.path.unwrap_or("");
    let path = path.split('?').next().unwrap_or(path);
    if !PATHS.contains(&path) {
        return Err(HttpError::new(
            404,
            format!("no WebSocket endpoint at {path:?}: use /ws (or /app)"),
        ));
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let has_token = |name: &str, token: &str| {
        request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token("Upgrade", "websocket") || !has_token("Connection", "upgrade") {
        return Err(HttpError::new(
            426,
            "this port speaks WebSocket: send Upgrade: websocket and Connection: Upgrade",
        ));
    }
    if header("Sec-WebSocket-Version").map(str::trim) != Some("13") {
        return Err(HttpError::new(
            426,
            "only WebSocket version 13 is supported",
        ));
    }
    let Some(key) = header("Sec-WebSocket-Key").map(str::trim) else {
        return Err(HttpError::new(400, "missing Sec-WebSocket-Key"));
    };
    if key.len() != 24 {
        return Err(HttpError::new(
            400,
            "Sec-WebSocket-Key must be 16 bytes in base64",
        ));
    }
    if let Some(origin) = header("Origin") {
        if !origins.is_empty() && !origins.iter().any(|o| o == origin.trim()) {
            return Err(HttpError::new(
                403,
                format!("origin {origin:?} is not in --ws-allowed-origins"),
            ));
        }
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let protocol = if has_token("Sec-WebSocket-Protocol", SUBPROTOCOL) {
        format!("Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n")
    } else {
        String::new()
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{protocol}\r\n"
    )
    .into_bytes();
    Ok(Some(Accepted { response, used }))
}

/// Why the decoder stops: the error the client gets, and the close code after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsError {
    /// The `error` ServerMessage's code.
    pub code: ErrorCode,
    /// Its message.
    pub message: String,
    /// The close frame's code.
    pub close: u16,
}

impl WsError {
    fn protocol(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::BadRequest,
            message: message.into(),
            close: close::PROTOCOL_ERROR,
        }
    }

    fn too_large(len: u64, max: usize) -> Self {
        Self {
            code: ErrorCode::FrameTooLarge,
            message: format!("message of {len} bytes exceeds the limit of {max}"),
            close: close::TOO_BIG,
        }
    }
}

/// What one [`Decoder::feed`] found besides messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fed {
    /// Keep reading.
    More,
    /// The client sent a close frame (with this code, 1005 when none): answer and end.
    Closed(u16),
}

/// The inbound half of one WebSocket connection.
#[derive(Debug)]
pub struct Decoder {
    /// Bytes received and not yet decoded (a partial frame).
    carry: Vec<u8>,
    /// A fragmented binary message being assembled.
    message: Option<Vec<u8>>,
    /// `--max-frame-bytes`: the largest message.
    max: usize,
}

impl Decoder {
    /// A decoder for messages of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            carry: Vec::new(),
            message: None,
            max,
        }
    }

    /// Decodes `data`: each complete binary message is appended to `frames` as a
    /// length-prefixed frame, each ping's pong to `control`.
    pub fn feed(
        &mut self,
        data: &[u8],
        frames: &mut Vec<u8>,
        control: &mut Vec<u8>,
    ) -> Result<Fed, WsError> {
        self.carry.extend_from_slice(data);
        let mut at = 0;
        let result = loop {
            match self.next_frame(at, frames, control) {
                Ok(Some((used, fed))) => {
                    at += used;
                    if fed != Fed::More {
                        break Ok(fed);
                    }
                }
                Ok(None) => break Ok(Fed::More),
                Err(e) => break Err(e),
            }
        };
        self.carry.drain(..at);
        if self.carry.is_empty() && self.carry.capacity() > 2 * MAX_REQUEST_BYTES {
            self.carry = Vec::new();
        }
        result
    }

    /// Decodes the frame at `carry[at..]`: `None` while it is incomplete.
    fn next_frame(
        &mut self,
        at: usize,
        frames: &mut Vec<u8>,
        control: &mut Vec<u8>,
    ) -> Result<Option<(usize, Fed)>, WsError> {
        let mut cursor = Cursor::new(&self.carry[at..]);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(None),
            Err(e) => return Err(WsError::protocol(format!("bad WebSocket frame: {e}"))),
        };
        let header_len = cursor.position() as usize;
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(WsError::protocol("reserved bits set (no extension agreed)"));
        }
        let Some(mask) = header.mask else {
            return Err(WsError::protocol("client frames must be masked"));
        };
        let so_far = self.message.as_ref().map_or(0, Vec::len) as u64;
        if matches!(header.opcode, OpCode::Data(_)) && so_far + len > self.max as u64 {
            return Err(WsError::too_large(so_far + len, self.max));
        }
        if matches!(header.opcode, OpCode::Control(_)) && (len > 125 || !header.is_final) {
            return Err(WsError::protocol(
                "control frames are at most 125 bytes and never fragmented",
            ));
        }
        let available = self.carry.len() - at - header_len;
        if (available as u64) < len {
            return Ok(None);
        }
        let len = len as usize;
        let start = at + header_len;
        let payload = &self.carry[start..start + len];
        let unmasked = payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]);
        let used = header_len + len;
        match header.opcode {
            OpCode::Data(Data::Binary) if self.message.is_some() => Err(WsError::protocol(
                "a new message began before the fragmented one ended",
            )),
            OpCode::Data(Data::Binary) if header.is_final => {
                frames.extend_from_slice(&(len as u32).to_be_bytes());
                frames.extend(unmasked);
                Ok(Some((used, Fed::More)))
            }
            OpCode::Data(Data::Binary) => {
                self.message = Some(unmasked.collect());
                Ok(Some((used, Fed::More)))
            }
            OpCode::Data(Data::Continue) => {
                let Some(message) = self.message.as_mut() else {
                    return Err(WsError::protocol("a continuation frame without a message"));
                };
                message.extend(unmasked);
                if header.is_final {
                    let message = self.message.take().unwrap_or_default();
                    frames.extend_from_slice(&(message.len() as u32).to_be_bytes());
                    frames.extend_from_slice(&message);
                }
                Ok(Some((used, Fed::More)))
            }
            OpCode::Data(Data::Text) => Err(WsError {
                code: ErrorCode::BadRequest,
                message: "text messages are not accepted: send each ClientMessage as one \
                          binary message"
                    .into(),
                close: close::UNSUPPORTED_DATA,
            }),
            OpCode::Control(Control::Ping) => {
                let payload: Vec<u8> = unmasked.collect();
                control.extend_from_slice(&control_frame(Control::Pong, &payload));
                Ok(Some((used, Fed::More)))
            }
            OpCode::Control(Control::Pong) => Ok(Some((used, Fed::More))),
            OpCode::Control(Control::Close) => {
                let payload: Vec<u8> = unmasked.collect();
                let code = match payload.as_slice() {
                    [a, b, ..] => u16::from_be_bytes([*a, *b]),
                    _ => 1005,
                };
                Ok(Some((used, Fed::Closed(code))))
            }
            OpCode::Data(Data::Reserved(op)) | OpCode::Control(Control::Reserved(op)) => {
                Err(WsError::protocol(format!("reserved opcode {op:#x}")))
            }
        }
    }
}

/// A server-side (unmasked) control frame.
pub fn control_frame(kind: Control, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        opcode: OpCode::Control(kind),
        ..FrameHeader::default()
    };
    let mut out = Vec::with_capacity(2 + payload.len());
    // Writing to a Vec cannot fail.
    let _ = header.format(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

/// A close frame with `code` (and no reason).
pub fn close_frame(code: u16) -> Vec<u8> {
    control_frame(Control::Close, &code.to_be_bytes())
}

/// The header of an unmasked, final binary frame of `len` payload bytes, in the first
/// `.1` bytes of `.0`.
pub fn binary_header(len: usize) -> ([u8; 10], usize) {
    let mut out = [0u8; 10];
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Binary),
        ..FrameHeader::default()
    };
    let size = header.len(len as u64);
    // The 10-byte array holds the longest unmasked header.
    let _ = header.format(len as u64, &mut &mut out[..]);
    (out, size)
}

#[cfg(test)]
#[path = "ws_tests.rs"]
mod tests;
