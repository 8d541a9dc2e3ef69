//! Framing: a u32 big-endian payload length, then the payload. Pure code over byte
//! slices, no sockets: "need more bytes" is a normal return, not an error.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

/// Bytes in the length prefix.
pub const HEADER_LEN: usize = 4;

/// Default maximum payload length (`--max-frame-bytes`).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;

/// A framing error: the stream cannot be resynchronised after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The announced payload length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
}

/// Where the next complete frame sits at the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some(range))` with the payload's
/// range when a whole frame is present (the frame ends at `range.end`), and an error
/// as soon as the header announces a payload over `max_len`, before any of it arrives.
pub fn next_frame(
    buf: &[u8],
    max_len: usize,
) -> Result<Option<std::ops::Range<usize>>, FrameError> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*header) as usize;
    if len > max_len {
        return Err(FrameError::TooLarge { len, max: max_len });
    }
    let end = HEADER_LEN + len;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some(HEADER_LEN..end))
}

/// Encodes `msg` as one frame in a single allocation, ready to be shared by clones.
pub fn encode<M: Message>(msg: &M) -> Bytes {
    let len = msg.encoded_len();
    let mut buf = BytesMut::with_capacity(HEADER_LEN + len);
    encode_into(msg, len, &mut buf);
    buf.freeze()
}

/// Appends `msg` as one frame to `buf`; `len` must be `msg.encoded_len()`.
pub fn encode_into<M: Message>(msg: &M, len: usize, buf: &mut impl BufMut) {
    // A payload over 4 GiB cannot be framed; every message we build is far smaller.
    debug_assert!(u32::try_from(len).is_ok());
    buf.put_u32(len as u32);
    // Cannot fail: the buffer has room for `len` bytes or grows (BytesMut, Vec).
    msg.encode_raw(buf);
}

/// Accumulates bytes from a stream and yields whole frames: the client side's reader
/// (the server reads through `connection`, which keeps no buffer while idle).
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: BytesMut,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Spare room to read into; call [`FrameReader::commit`] with the count read.
    pub fn read_buf(&mut self, at_least: usize) -> &mut [u8] {
        let len = self.buf.len();
        self.buf.resize(len + at_least, 0);
        &mut self.buf[len..]
    }

    /// Keeps `filled` bytes of the last [`FrameReader::read_buf`], drops the rest.
    pub fn commit(&mut self, at_least: usize, filled: usize) {
        let len = self.buf.len() - at_least;
        self.buf.truncate(len + filled);
    }

    /// The next whole frame's payload, if one is buffered.
    pub fn next_payload(&mut self, max_len: usize) -> Result<Option<Bytes>, FrameError> {
        match next_frame(&self.buf, max_len)? {
            None => Ok(None),
            Some(range) => {
                let mut frame = self.buf.split_to(range.end);
                Ok(Some(frame.split_off(HEADER_LEN).freeze()))
            }
        }
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::proto::{server_message::Data, Pong, ServerMessage};

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn partial_header_and_partial_payload_need_more() {
        let f = frame(b"hello");
        for cut in 0..f.len() {
            assert_eq!(next_frame(&f[..cut], 100), Ok(None), "cut at {cut}");
        }
        assert_eq!(next_frame(&f, 100), Ok(Some(4..9)));
    }

    #[test]
    fn several_frames_in_one_buffer() {
        let mut buf = frame(b"a");
        buf.extend(frame(b"bc"));
        buf.extend(frame(b""));
        buf.extend(&frame(b"def")[..5]);
        let mut at = 0;
        let mut seen = Vec::new();
        while let Some(r) = next_frame(&buf[at..], 100).unwrap() {
            seen.push(buf[at + r.start..at + r.end].to_vec());
            at += r.end;
        }
        assert_eq!(seen, vec![b"a".to_vec(), b"bc".to_vec(), Vec::new()]);
        assert_eq!(buf.len() - at, 5, "the partial frame stays buffered");
    }

    #[test]
    fn zero_length_frame_is_a_frame() {
        assert_eq!(next_frame(&[0, 0, 0, 0], 0), Ok(Some(4..4)));
    }

    #[test]
    fn over_the_maximum_is_rejected_from_the_header_alone() {
        let header = 65_537u32.to_be_bytes();
        assert_eq!(
            next_frame(&header, 65_536),
            Err(FrameError::TooLarge {
                len: 65_537,
                max: 65_536
            })
        );
        assert_eq!(next_frame(&65_536u32.to_be_bytes(), 65_536), Ok(None));
        assert!(next_frame(&u32::MAX.to_be_bytes(), 65_536).is_err());
    }

    #[test]
    fn encode_writes_a_big_endian_length_then_the_payload() {
        let msg = ServerMessage {
            data: Some(Data::Pong(Pong { nonce: 300 })),
        };
        let bytes = encode(&msg);
        let payload = msg.encode_to_vec();
        assert_eq!(&bytes[..4], &(payload.len() as u32).to_be_bytes());
        assert_eq!(&bytes[4..], &payload[..]);
    }

    #[test]
    fn reader_yields_frames_split_across_reads() {
        let mut wire = frame(b"first");
        wire.extend(frame(b"second"));
        let mut reader = FrameReader::new();
        let mut got = Vec::new();
        for byte in &wire {
            reader.extend(std::slice::from_ref(byte));
            while let Some(p) = reader.next_payload(100).unwrap() {
                got.push(p);
            }
        }
        assert_eq!(
            got,
            vec![Bytes::from_static(b"first"), Bytes::from_static(b"second")]
        );
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn reader_read_buf_commit_keeps_only_filled_bytes() {
        let mut reader = FrameReader::new();
        let dst = reader.read_buf(16);
        dst[..6].copy_from_slice(&frame(b"xy"));
        reader.commit(16, 6);
        assert_eq!(
            reader.next_payload(10).unwrap(),
            Some(Bytes::from_static(b"xy"))
        );
    }
}
