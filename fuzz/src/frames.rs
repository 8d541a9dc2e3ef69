//! The `frame_decoder` target's checks: framing bounds, `FrameReader` against
//! `next_frame` at arbitrary split points, and `decode_request` against prost.

use prost::Message;

use corecast::frame::{next_frame, FrameError, FrameReader, HEADER_LEN};
use corecast::proto::ClientMessage;
use corecast::request::decode_request;

use crate::session_model::check_agrees_with_prost;

/// Maximum payload lengths the first input byte selects from.
const MAX_LENS: [usize; 8] = [0, 1, 5, 16, 100, 1_024, 65_536, u32::MAX as usize];

/// Runs every check on one input: byte 0 selects the maximum frame length, the rest
/// is the stream.
pub fn check(data: &[u8]) {
    let Some((&select, stream)) = data.split_first() else {
        return;
    };
    let max = MAX_LENS[usize::from(select) % MAX_LENS.len()];
    let (payloads, end) = frames(stream, max);
    for payload in &payloads {
        check_decode(payload);
    }
    // The whole stream as one payload too: unframed bytes are decoded the same way.
    check_decode(stream);
    check_reader(stream, max, &payloads, end);
}

/// How a stream ends after its whole frames.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// `n` bytes of a partial frame are left.
    NeedMore(usize),
    /// A header announced a payload over the maximum.
    TooLarge(FrameError),
}

/// Splits `stream` with `next_frame`, checking each answer against the header.
fn frames(stream: &[u8], max: usize) -> (Vec<&[u8]>, End) {
    let mut payloads = Vec::new();
    let mut rest = stream;
    loop {
        let announced = rest
            .first_chunk::<HEADER_LEN>()
            .map(|h| u32::from_be_bytes(*h) as usize);
        match next_frame(rest, max) {
            Ok(Some(range)) => {
                let len = announced.expect("a frame has a header");
                assert_eq!(range, HEADER_LEN..HEADER_LEN + len);
                assert!(len <= max && range.end <= rest.len());
                payloads.push(&rest[range.clone()]);
                rest = &rest[range.end..];
            }
            Ok(None) => {
                if let Some(len) = announced {
                    assert!(len <= max && rest.len() < HEADER_LEN + len);
                }
                return (payloads, End::NeedMore(rest.len()));
            }
            Err(e) => {
                let len = announced.expect("an error needs a header");
                assert_eq!(e, FrameError::TooLarge { len, max });
                assert!(len > max);
                return (payloads, End::TooLarge(e));
            }
        }
    }
}

/// `decode_request` never panics and agrees with prost on what is valid and on
/// what the message says.
fn check_decode(payload: &[u8]) {
    let reference = ClientMessage::decode(payload);
    match decode_request(payload) {
        Ok(request) => {
            assert!(reference.is_ok(), "accepted what prost rejects");
            check_agrees_with_prost(&request, payload);
        }
        Err(_) => assert!(reference.is_err(), "rejected what prost accepts"),
    }
}

/// Feeds `stream` to a `FrameReader` in chunks whose sizes come from the stream's own
/// bytes, alternating `extend` with `read_buf`/`commit`; it must yield `expected`,
/// then end the same way.
fn check_reader(stream: &[u8], max: usize, expected: &[&[u8]], end: End) {
    let mut reader = FrameReader::new();
    let mut got = Vec::new();
    let mut at = 0;
    let mut turn = 0usize;
    let mut error = None;
    while at < stream.len() && error.is_none() {
        let size = 1 + usize::from(stream[turn % stream.len()] % 31);
        let chunk = &stream[at..(at + size).min(stream.len())];
        if turn.is_multiple_of(2) {
            reader.extend(chunk);
        } else {
            let spare = chunk.len() + turn % 7;
            reader.read_buf(spare)[..chunk.len()].copy_from_slice(chunk);
            reader.commit(spare, chunk.len());
        }
        at += chunk.len();
        turn += 1;
        loop {
            match reader.next_payload(max) {
                Ok(Some(payload)) => got.push(payload),
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
    }
    assert_eq!(got.len(), expected.len(), "frame count");
    for (g, e) in got.iter().zip(expected) {
        assert_eq!(&g[..], *e);
    }
    match end {
        End::NeedMore(left) => {
            assert_eq!(error, None);
            assert_eq!(reader.buffered(), left);
        }
        End::TooLarge(e) => assert_eq!(error, Some(e)),
    }
}
