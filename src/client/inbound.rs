//! The receiving state of a connection: frames read from the [`Reader`], decoded into
//! `ServerMessage`s, queued while a caller waits for another one, and an error the
//! server sent right before closing reported with the close.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::time::Instant;

use prost::Message;

use super::transport::Reader;
use super::ClientError;
use crate::wire::frame::{FrameError, FrameReader};
use crate::wire::proto::{server_message::Data, ErrorCode, ServerMessage};

/// The largest frame the client accepts from a server.
const MAX_INBOUND_FRAME: usize = 16 * 1024 * 1024;

/// The four bytes read as a frame length, when they are the start of a TLS record:
/// content type 20-23 (change_cipher_spec, alert, handshake, application_data), then
/// protocol version 3.0 to 3.4 (SSL 3.0 to TLS 1.3's legacy 3.3). Every such value is
/// over 335 MB, so it only ever shows up as an oversized frame.
fn tls_record_header(len: usize) -> Option<[u8; 4]> {
    let header = u32::try_from(len).ok()?.to_be_bytes();
    (matches!(header[0], 0x14..=0x17) && header[1] == 0x03 && header[2] <= 0x04).then_some(header)
}

/// The receiving state of a connection: what [`Client`](super::Client) reads with, and
/// what [`ClientReceiver`](super::ClientReceiver) takes over.
#[derive(Debug)]
pub(super) struct Inbound {
    pub(super) reader: Reader,
    frames: FrameReader,
    /// Messages received while waiting for another one, in arrival order.
    pub(super) pending: VecDeque<ServerMessage>,
    /// The error the server sent last, while nothing has followed it and the caller
    /// has not been handed it: a close right after it is reported with it.
    pub(super) unseen_error: Option<crate::wire::proto::Error>,
}

impl Inbound {
    pub(super) fn new(reader: Reader) -> Self {
        Self {
            reader,
            frames: FrameReader::new(),
            pending: VecDeque::new(),
            unseen_error: None,
        }
    }

    /// The next message, queued or from the socket, waiting until `deadline` (None:
    /// no limit).
    pub(super) fn next(&mut self, deadline: Option<Instant>) -> Result<ServerMessage, ClientError> {
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
    pub(super) fn read(&mut self, deadline: Option<Instant>) -> Result<ServerMessage, ClientError> {
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
pub(super) fn server_error(data: &Data) -> Option<&crate::wire::proto::Error> {
    match data {
        Data::Error(e) => Some(e),
        Data::LoginResponse(r) => r.error.as_ref().filter(|e| e.code() != ErrorCode::None),
        _ => None,
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
}
