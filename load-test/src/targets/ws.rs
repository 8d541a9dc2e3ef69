//! corecast over WebSocket (`--transport ws`, PROTOCOL.md "WebSocket"): the HTTP
//! upgrade, then each ClientMessage as one masked binary frame and each ServerMessage
//! as one unmasked binary frame, without the u32 length prefix TCP uses.
//!
//! Sans-I/O like the other codecs: the client's side writes straight into the
//! connection's write buffer (the frame header, then the payload, masked in place with
//! the connection's fixed key: no copy beyond what TCP does), and the server's frames
//! are read where they lie in the read buffer (the payload is a slice of it).

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Result};

/// The Sec-WebSocket-Key every connection sends (RFC 6455's example nonce: the key
/// only proves the server speaks WebSocket, it is no secret) ...
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// ... and the Sec-WebSocket-Accept a server must answer it with.
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The subprotocol offered (the server selects it).
pub const SUBPROTOCOL: &str = "corecast.v1";

/// Longest 101 response accepted.
const MAX_RESPONSE: usize = 16 * 1024;

/// Opcodes (RFC 6455, 5.2).
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
/// A binary frame's opcode.
pub const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Per-connection masking keys: distinct, never zero (a zero key would skip the XOR
/// a browser does).
static NEXT_KEY: AtomicU32 = AtomicU32::new(1);

/// One WebSocket connection's framing state.
#[derive(Debug, Clone)]
pub struct WsFraming {
    /// This connection's masking key (fixed for its life).
    mask: [u8; 4],
    /// Whether the server's 101 has been read.
    upgraded: bool,
}

impl Default for WsFraming {
    fn default() -> Self {
        let n = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        let key = n.wrapping_mul(0x9E37_79B9) | 0x0101_0101;
        Self {
            mask: key.to_be_bytes(),
            upgraded: false,
        }
    }
}

/// What a server frame was.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The upgrade's 101 response (consumed).
    Upgraded,
    /// One binary message: one ServerMessage.
    Message(&'a [u8]),
    /// A ping, answered; a pong.
    Control,
    /// The closing frame: its code (0 if none) and reason.
    Close(u16, String),
}

/// A frame header's length for a payload of `len` bytes, masked.
fn header_len(len: usize) -> usize {
    6 + match len {
        0..=125 => 0,
        126..=65535 => 2,
        _ => 8,
    }
}

impl WsFraming {
    /// The upgrade request (GET /ws, version 13, offering `corecast.v1`).
    pub fn upgrade_request(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(
            format!(
                "GET /ws HTTP/1.1\r\nHost: corecast\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
            )
            .as_bytes(),
        );
    }

    /// Starts a masked frame of `opcode` carrying `len` payload bytes: writes the
    /// header and returns where the payload starts (pass it to [`WsFraming::finish`]
    /// once the payload is written).
    pub fn begin(&self, out: &mut Vec<u8>, opcode: u8, len: usize) -> usize {
        out.reserve(header_len(len) + len);
        out.push(0x80 | opcode);
        match len {
            0..=125 => out.push(0x80 | len as u8),
            126..=65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&self.mask);
        out.len()
    }

    /// Masks the payload written since [`WsFraming::begin`] returned `start`.
    pub fn finish(&self, out: &mut [u8], start: usize) {
        let payload = &mut out[start..];
        let word = u32::from_ne_bytes(self.mask);
        let mut chunks = payload.chunks_exact_mut(4);
        for c in &mut chunks {
            let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
            c.copy_from_slice(&v.to_ne_bytes());
        }
        for (b, m) in chunks.into_remainder().iter_mut().zip(self.mask) {
            *b ^= m;
        }
    }

    /// Appends `payload` as one masked binary frame.
    pub fn binary(&self, out: &mut Vec<u8>, payload: &[u8]) {
        let start = self.begin(out, OP_BINARY, payload.len());
        out.extend_from_slice(payload);
        self.finish(out, start);
    }

    /// Rewrites the length-prefixed frame at `out[at..]` (the TCP encoding, written by
    /// the shared encoder) as a masked binary frame. Used for logins, joins, leaves and
    /// pings, not for the publishes on the hot path, which [`WsFraming::begin`] frames
    /// directly.
    pub fn reframe(&self, out: &mut Vec<u8>, at: usize) {
        let payload = out.split_off(at + 4);
        out.truncate(at);
        self.binary(out, &payload);
    }

    /// The next thing at the start of `buf` and the bytes it used, or `None` if `buf`
    /// holds none whole yet. A ping's pong goes to `out`.
    pub fn next<'a>(
        &mut self,
        buf: &'a [u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<Option<(Frame<'a>, usize)>> {
        if !self.upgraded {
            return self.read_upgrade(buf);
        }
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        if b0 & 0x70 != 0 {
            bail!("WebSocket frame with reserved bits set ({b0:#04x})");
        }
        if b1 & 0x80 != 0 {
            bail!("the server masked a frame (RFC 6455 forbids it)");
        }
        let (len, mut pos) = match b1 & 0x7f {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => (u64::from_be_bytes(b.try_into().expect("8 bytes")), 10),
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        if len > max as u64 {
            bail!("WebSocket frame too large: {len} bytes (the harness takes at most {max})");
        }
        let len = len as usize;
        let Some(payload) = buf.get(pos..pos + len) else {
            return Ok(None);
        };
        pos += len;
        let opcode = b0 & 0x0f;
        let fin = b0 & 0x80 != 0;
        let frame = match opcode {
            OP_BINARY if fin => Frame::Message(payload),
            OP_BINARY | OP_CONTINUATION => {
                bail!(
                    "the server fragmented a message (corecast sends each whole; not reassembled)"
                )
            }
            OP_TEXT => bail!("the server sent a text frame (corecast speaks binary)"),
            OP_PING => {
                let start = self.begin(out, OP_PONG, payload.len());
                out.extend_from_slice(payload);
                self.finish(out, start);
                Frame::Control
            }
            OP_PONG => Frame::Control,
            OP_CLOSE => {
                let code = payload
                    .get(..2)
                    .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
                let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or(&[])).into();
                Frame::Close(code, reason)
            }
            op => bail!("reserved WebSocket opcode {op:#x}"),
        };
        Ok(Some((frame, pos)))
    }

    /// Reads the server's answer to the upgrade: a `101` with the right
    /// Sec-WebSocket-Accept, or an error with the server's status line and reason.
    fn read_upgrade<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Frame<'a>, usize)>> {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            if buf.len() > MAX_RESPONSE {
                bail!("no end to the upgrade response in {MAX_RESPONSE} bytes");
            }
            return Ok(None);
        };
        let head = String::from_utf8_lossy(&buf[..end]);
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or("");
        if !status.starts_with("HTTP/1.1 101") {
            let body = String::from_utf8_lossy(&buf[end + 4..]);
            bail!("upgrade refused: {status}: {}", body.trim());
        }
        let accept = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("Sec-WebSocket-Accept"))
            .map(|(_, v)| v.trim());
        if accept != Some(ACCEPT) {
            bail!("upgrade answered with Sec-WebSocket-Accept {accept:?}, not {ACCEPT:?}");
        }
        self.upgraded = true;
        Ok(Some((Frame::Upgraded, end + 4)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unmasks a client frame the way the server does: (opcode, payload, used).
    fn unmask(buf: &[u8]) -> (u8, Vec<u8>, usize) {
        assert_eq!(buf[0] & 0x80, 0x80, "FIN");
        assert_eq!(buf[1] & 0x80, 0x80, "masked");
        let (len, pos) = match buf[1] & 0x7f {
            126 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let mask = &buf[pos..pos + 4];
        let payload = buf[pos + 4..pos + 4 + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        (buf[0] & 0x0f, payload, pos + 4 + len)
    }

    #[test]
    fn frames_of_every_length_class_are_masked_and_unmask_back() {
        let ws = WsFraming::default();
        assert!(ws.mask.iter().all(|&b| b != 0));
        for len in [0, 1, 5, 125, 126, 1000, 65535, 65536, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut out = vec![9, 9];
            ws.binary(&mut out, &payload);
            assert_eq!(out.len(), 2 + header_len(len) + len, "len {len}");
            let (op, back, used) = unmask(&out[2..]);
            assert_eq!((op, used), (OP_BINARY, out.len() - 2));
            assert_eq!(back, payload, "len {len}");
            if len > 0 {
                assert_ne!(&out[out.len() - len..], &payload[..], "masked");
            }
        }
    }

    #[test]
    fn reframing_a_length_prefixed_frame_keeps_what_came_before() {
        let ws = WsFraming::default();
        let mut out = b"head".to_vec();
        out.extend_from_slice(&3u32.to_be_bytes());
        out.extend_from_slice(&[1, 2, 3]);
        ws.reframe(&mut out, 4);
        assert_eq!(&out[..4], b"head");
        assert_eq!(unmask(&out[4..]), (OP_BINARY, vec![1, 2, 3], out.len() - 4));
    }

    #[test]
    fn reads_the_upgrade_then_messages_pings_and_the_close() {
        let mut ws = WsFraming::default();
        let mut out = Vec::new();
        let mut wire = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: corecast.v1\r\n\r\n"
        )
        .into_bytes();
        let head = wire.len();
        wire.extend_from_slice(&[0x82, 3, 1, 2, 3]);
        wire.extend_from_slice(&[0x89, 2, b'h', b'i']);
        let mut long = vec![0x82, 126, 0x01, 0x00];
        long.extend_from_slice(&[5u8; 256]);
        wire.extend_from_slice(&long);
        wire.extend_from_slice(&[0x88, 4, 0x03, 0xe9, b'o', b'k']);

        assert!(ws
            .next(&wire[..head - 1], &mut out, 1 << 20)
            .unwrap()
            .is_none());
        let (f, used) = ws.next(&wire, &mut out, 1 << 20).unwrap().unwrap();
        assert_eq!((f, used), (Frame::Upgraded, head));
        let mut at = used;
        assert!(ws
            .next(&wire[at..at + 4], &mut out, 1 << 20)
            .unwrap()
            .is_none());
        let (f, used) = ws.next(&wire[at..], &mut out, 1 << 20).unwrap().unwrap();
        assert_eq!(f, Frame::Message(&[1, 2, 3]));
        at += used;
        let (f, used) = ws.next(&wire[at..], &mut out, 1 << 20).unwrap().unwrap();
        assert_eq!(f, Frame::Control);
        assert_eq!(unmask(&out), (OP_PONG, b"hi".to_vec(), out.len()), "pong");
        at += used;
        let (f, used) = ws.next(&wire[at..], &mut out, 1 << 20).unwrap().unwrap();
        assert_eq!(f, Frame::Message(&[5; 256]));
        at += used;
        let (f, used) = ws.next(&wire[at..], &mut out, 1 << 20).unwrap().unwrap();
        assert_eq!(f, Frame::Close(1001, "ok".into()));
        assert_eq!(at + used, wire.len());
    }

    #[test]
    fn refusals_and_bad_frames_are_errors() {
        let mut ws = WsFraming::default();
        let refused = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nno such\n";
        let e = ws.next(refused, &mut Vec::new(), 100).unwrap_err();
        assert!(e.to_string().contains("404 Not Found: no such"), "{e}");
        let bad_accept = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\n\r\n";
        assert!(ws.next(bad_accept, &mut Vec::new(), 100).is_err());
        ws.upgraded = true;
        for (frame, what) in [
            (&[0x82, 0x81, 0, 0, 0, 0, 1][..], "masked"),
            (&[0x81, 1, b'x'][..], "text"),
            (&[0x02, 1, 1][..], "fragmented"),
            (&[0x82, 126, 1, 0][..], "too large"),
        ] {
            let e = ws.next(frame, &mut Vec::new(), 100).unwrap_err();
            assert!(e.to_string().contains(what), "{what}: {e}");
        }
    }
}
