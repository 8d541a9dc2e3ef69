//! Writing a WebSocket connection's queue: each queued frame (`u32 length + payload`,
//! the one shared `Bytes` every recipient holds) goes out as this connection's own
//! frame header followed by the payload, the length prefix skipped. Plain sockets get
//! both as iovecs of one `sendmsg` (no copy of the payload); TLS copies them into the
//! record as it does every frame.
//!
//! The queue counts a frame's bytes, the wire its header's: once any byte of a header
//! is written, one byte of the prefix is consumed (so the front counts as started and a
//! slow-consumer cut keeps it whole), and the other three once the header is out.

use std::os::fd::RawFd;
use std::{io, ptr};

use crate::conn::ws::{binary_header, WsLink};
use crate::shard::outbound::{sendmsg, Outbound};

/// Frames handed to one `sendmsg` (two iovecs each: header and payload).
const FRAMES_PER_WRITE: usize = 32;

/// What [`WsOut::next_chunk`] hands a write that waits for room.
#[derive(Debug)]
pub enum Chunk {
    /// Control frames (a few bytes: pongs, the close).
    Control(Vec<u8>),
    /// A frame header, or the part of it not written yet.
    Header([u8; 10], std::ops::Range<usize>),
    /// The front frame's unwritten payload, shared.
    Payload(bytes::Bytes),
}

impl std::ops::Deref for Chunk {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Control(bytes) => bytes,
            Chunk::Header(header, range) => &header[range.clone()],
            Chunk::Payload(bytes) => bytes,
        }
    }
}

/// The front frame's header, when only part of it has been written.
#[derive(Debug, Default)]
pub struct WsOut {
    partial: Option<([u8; 10], usize, usize)>,
}

impl WsOut {
    /// Whether a frame is half written (control frames must wait for its end).
    fn mid_frame(&self, out: &Outbound) -> bool {
        out.front_started() || self.partial.is_some()
    }

    /// The next bytes to write, for a write that waits for socket room: control
    /// frames, else the front frame's header (or what is left of it), else its payload
    /// (the shared `Bytes` itself, never a copy).
    pub fn next_chunk(&self, out: &Outbound, link: &WsLink) -> Option<Chunk> {
        if !self.mid_frame(out) && !link.control.borrow().is_empty() {
            return Some(Chunk::Control(link.control.borrow().clone()));
        }
        let front = out.front()?;
        Some(match self.partial {
            Some((header, len, sent)) => Chunk::Header(header, sent..len),
            None if out.front_started() => Chunk::Payload(front),
            None => {
                let (header, len) = binary_header(front.len().saturating_sub(4));
                Chunk::Header(header, 0..len)
            }
        })
    }

    /// Accounts for `n` bytes of [`WsOut::next_chunk`] written.
    pub fn advance_chunk(&mut self, out: &Outbound, link: &WsLink, n: usize) {
        self.advance(out, link, n, 1);
    }

    /// Writes what the socket takes now with one `sendmsg`: control frames when no
    /// frame is half written, then up to [`FRAMES_PER_WRITE`] frames. Returns the bytes
    /// written and whether that was all that was offered.
    pub fn write_to(
        &mut self,
        out: &Outbound,
        link: &WsLink,
        fd: RawFd,
    ) -> io::Result<(usize, bool)> {
        let mut headers = [[0u8; 10]; FRAMES_PER_WRITE];
        let mut iov = [libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        }; 2 * FRAMES_PER_WRITE + 1];
        let mut count = 0;
        let mut offered = 0;
        let mut frames_offered = 0;
        let written = {
            let control = link.control.borrow();
            let frames = out.frames();
            let mut push = |iov: &mut [libc::iovec], base: *const u8, len: usize| {
                if len > 0 {
                    iov[count] = libc::iovec {
                        iov_base: base as *mut libc::c_void,
                        iov_len: len,
                    };
                    count += 1;
                    offered += len;
                }
            };
            if !self.mid_frame(out) && !control.is_empty() {
                push(&mut iov, control.as_ptr(), control.len());
            }
            for (i, frame) in frames.iter().take(FRAMES_PER_WRITE).enumerate() {
                frames_offered += 1;
                match (i, self.partial) {
                    (0, Some((header, len, sent))) => {
                        headers[0] = header;
                        push(&mut iov, headers[0][sent..].as_ptr(), len - sent);
                        push(&mut iov, frame[3..].as_ptr(), frame.len() - 3);
                    }
                    (0, None) if out.front_started() => {
                        push(&mut iov, frame.as_ptr(), frame.len());
                    }
                    _ => {
                        let (header, len) = binary_header(frame.len() - 4);
                        headers[i] = header;
                        push(&mut iov, headers[i].as_ptr(), len);
                        push(&mut iov, frame[4..].as_ptr(), frame.len() - 4);
                    }
                }
            }
            if count == 0 {
                return Ok((0, true));
            }
            // The iovecs point into `headers`, the control buffer and frames kept alive
            // by the borrows held until the call returns.
            sendmsg(fd, &mut iov[..count])?
        };
        self.advance(out, link, written, frames_offered);
        Ok((written, written == offered))
    }

    /// Accounts for `n` wire bytes written over (at most) the first `frames` frames,
    /// control frames first when no frame was half written.
    fn advance(&mut self, out: &Outbound, link: &WsLink, mut n: usize, frames: usize) {
        if !self.mid_frame(out) {
            let mut control = link.control.borrow_mut();
            let take = n.min(control.len());
            control.drain(..take);
            n -= take;
            if !control.is_empty() {
                return;
            }
        }
        for _ in 0..frames {
            if n == 0 {
                return;
            }
            let (front_len, started) = match out.frames().front() {
                Some(front) => (front.len(), out.front_started()),
                None => return,
            };
            match self.partial {
                Some((header, len, sent)) => {
                    let rest = len - sent;
                    if n < rest {
                        self.partial = Some((header, len, sent + n));
                        return;
                    }
                    n -= rest;
                    self.partial = None;
                    let take = n.min(front_len - 3);
                    out.consume(3 + take);
                    n -= take;
                    if take < front_len - 3 {
                        return;
                    }
                }
                None if started => {
                    let take = n.min(front_len);
                    out.consume(take);
                    n -= take;
                    if take < front_len {
                        return;
                    }
                }
                None => {
                    let (header, len) = binary_header(front_len - 4);
                    if n < len {
                        // The prefix's first byte stands for the header begun.
                        out.consume(1);
                        self.partial = Some((header, len, n));
                        return;
                    }
                    n -= len;
                    let take = n.min(front_len - 4);
                    out.consume(4 + take);
                    n -= take;
                    if take < front_len - 4 {
                        return;
                    }
                }
            }
        }
    }

    /// Moves frames into `staged` (TLS plaintext), headers included, up to about
    /// `limit` bytes: control frames first, whole headers always.
    pub fn stage(&mut self, out: &Outbound, link: &WsLink, staged: &mut Vec<u8>, limit: usize) {
        if !self.mid_frame(out) {
            staged.append(&mut link.control.borrow_mut());
        }
        while staged.len() < limit {
            let Some(front) = out.frames().front().cloned() else {
                return;
            };
            let room = limit - staged.len();
            if out.front_started() {
                let take = front.len().min(room);
                staged.extend_from_slice(&front[..take]);
                out.consume(take);
                continue;
            }
            let (header, len) = binary_header(front.len() - 4);
            staged.extend_from_slice(&header[..len]);
            let take = (front.len() - 4).min(room.saturating_sub(len));
            staged.extend_from_slice(&front[4..4 + take]);
            out.consume(4 + take);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(payload: &[u8]) -> Bytes {
        let mut f = (payload.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(payload);
        Bytes::from(f)
    }

    fn wire(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            let (h, len) = binary_header(p.len());
            out.extend_from_slice(&h[..len]);
            out.extend_from_slice(p);
        }
        out
    }

    /// Writes the queue through a socket pair, `chunk` bytes at a time (through
    /// `next_chunk`/`advance_chunk`), and returns what the peer read.
    fn drain_by_chunks(out: &Outbound, link: &WsLink, st: &mut WsOut, chunk: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while let Some(bytes) = st.next_chunk(out, link) {
            let n = bytes.len().min(chunk);
            got.extend_from_slice(&bytes[..n]);
            st.advance_chunk(out, link, n);
        }
        got
    }

    #[test]
    fn chunked_writes_frame_every_message_with_its_own_header() {
        let big = vec![9u8; 70_000];
        let payloads: [&[u8]; 4] = [b"one", b"", &big, b"last"];
        for chunk in [1, 2, 3, 5, 11, 1000, usize::MAX] {
            let out = Outbound::new(1 << 20);
            for p in payloads {
                out.push(&frame(p), Bytes::new);
            }
            let link = WsLink::default();
            link.control.borrow_mut().extend_from_slice(b"\x8a\x00");
            let mut st = WsOut::default();
            let got = drain_by_chunks(&out, &link, &mut st, chunk);
            let mut expected = b"\x8a\x00".to_vec();
            expected.extend(wire(&payloads));
            assert_eq!(got.len(), expected.len(), "chunk {chunk}");
            assert!(got == expected, "chunk {chunk}");
            assert!(out.is_empty() && out.queued_bytes() == 0);
        }
    }

    #[test]
    fn sendmsg_writes_the_same_bytes_and_control_waits_for_a_half_written_frame() {
        let mut fds = [0; 2];
        // SAFETY: plain socketpair call.
        assert_eq!(
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) },
            0
        );
        let out = Outbound::new(1 << 20);
        let payloads: Vec<Vec<u8>> = (0..100).map(|i| vec![i as u8; i * 37]).collect();
        for p in &payloads {
            out.push(&frame(p), Bytes::new);
        }
        let link = WsLink::default();
        let mut st = WsOut::default();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut ponged = false;
        while !out.is_empty() || !link.control.borrow().is_empty() {
            let _ = st.write_to(&out, &link, fds[0]).unwrap();
            if !ponged && out.front_started() {
                // A pong arrives while a frame is half written: it goes after it.
                link.control.borrow_mut().extend_from_slice(b"\x8a\x00");
                ponged = true;
            }
            // SAFETY: reading into our own buffer.
            let n = unsafe { libc::read(fds[1], buf.as_mut_ptr().cast(), buf.len()) };
            got.extend_from_slice(&buf[..n as usize]);
        }
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let plain = wire(&refs);
        if ponged {
            // The pong stands between two frames, never inside one.
            let at = (0..got.len()).find(|&i| {
                got[i..].starts_with(b"\x8a\x00") && {
                    let mut rest = got.clone();
                    rest.drain(i..i + 2);
                    rest == plain
                }
            });
            assert!(at.is_some(), "the pong split a frame");
        } else {
            assert!(got == plain);
        }
        // SAFETY: closing our own fds.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}
