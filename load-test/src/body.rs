//! The message body every sender emits: its scheduled send time, its sender id and a
//! per-sender counter, then padding up to the requested size. Every target carries it
//! as an opaque payload, so latency and order checks work the same on all of them.

/// Bytes of the stamp at the start of every body.
pub const STAMP_LEN: usize = 20;

/// What a body carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Scheduled (not actual) send time, CLOCK_MONOTONIC nanoseconds.
    pub scheduled_ns: u64,
    /// The sender's id within its worker.
    pub sender: u32,
    /// 0, 1, 2, ... per sender, in the order scheduled.
    pub counter: u64,
}

/// Writes `stamp` and padding into `out` (cleared first), `size` bytes in all
/// (at least [`STAMP_LEN`]).
pub fn write_body(out: &mut Vec<u8>, stamp: Stamp, size: usize) {
    out.clear();
    out.extend_from_slice(&stamp.scheduled_ns.to_le_bytes());
    out.extend_from_slice(&stamp.sender.to_le_bytes());
    out.extend_from_slice(&stamp.counter.to_le_bytes());
    out.resize(size.max(STAMP_LEN), b'.');
}

/// Reads the stamp of a body; `None` if it is too short to hold one.
pub fn read_stamp(body: &[u8]) -> Option<Stamp> {
    let scheduled_ns = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
    let sender = u32::from_le_bytes(body.get(8..12)?.try_into().ok()?);
    let counter = u64::from_le_bytes(body.get(12..20)?.try_into().ok()?);
    Some(Stamp {
        scheduled_ns,
        sender,
        counter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pads() {
        let stamp = Stamp {
            scheduled_ns: 123_456_789_012,
            sender: 7,
            counter: 99,
        };
        let mut body = Vec::new();
        write_body(&mut body, stamp, 64);
        assert_eq!(body.len(), 64);
        assert_eq!(read_stamp(&body), Some(stamp));
        write_body(&mut body, stamp, 3);
        assert_eq!(body.len(), STAMP_LEN, "never shorter than the stamp");
        assert_eq!(read_stamp(&body[..19]), None);
    }
}
