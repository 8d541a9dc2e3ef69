//! Redis pub/sub over RESP: a small, real RESP parser (RESP2 types plus RESP3 push and
//! null, so a server that speaks RESP3 to us still parses) and the commands we send.
//! Room = channel; join = SUBSCRIBE; leave = UNSUBSCRIBE; publish = PUBLISH on a
//! connection that is not in subscribe mode (RESP2 forbids PUBLISH there).

use std::ops::Range;

use anyhow::{bail, Context, Result};

use super::{Event, JoinInfo};

/// Largest bulk string or array accepted.
const MAX_LEN: usize = 512 * 1024 * 1024;

/// One RESP value whose strings are ranges into the parsed buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+...`
    Simple(Range<usize>),
    /// `-...`
    Error(Range<usize>),
    /// `:n`
    Int(i64),
    /// `$n` (None: the null bulk string `$-1`).
    Bulk(Option<Range<usize>>),
    /// `*n` or RESP3 push `>n` (None: the null array `*-1`).
    Array(Option<Vec<Resp>>),
    /// RESP3 `_`.
    Null,
}

/// Finds the `\r\n` ending the line that starts at `pos`; returns the line's end.
fn line_end(buf: &[u8], pos: usize) -> Option<usize> {
    let nl = buf.get(pos..)?.iter().position(|&b| b == b'\n')? + pos;
    (nl > pos && buf[nl - 1] == b'\r').then_some(nl - 1)
}

fn parse_int(bytes: &[u8]) -> Result<i64> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad RESP integer {:?}", String::from_utf8_lossy(bytes)))
}

/// Parses one value at `pos`: `Ok(None)` when more bytes are needed, else the value
/// and the position after it.
pub fn parse(buf: &[u8], pos: usize) -> Result<Option<(Resp, usize)>> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(end) = line_end(buf, pos + 1) else {
        if buf.len() - pos > 64 * 1024 {
            bail!("RESP line longer than 64 KiB");
        }
        return Ok(None);
    };
    let line = pos + 1..end;
    let next = end + 2;
    let value = match kind {
        b'+' => (Resp::Simple(line), next),
        b'-' => (Resp::Error(line), next),
        b':' => (Resp::Int(parse_int(&buf[line])?), next),
        b'_' => (Resp::Null, next),
        b'$' => {
            let n = parse_int(&buf[line])?;
            if n < 0 {
                (Resp::Bulk(None), next)
            } else {
                let n = n as usize;
                if n > MAX_LEN {
                    bail!("RESP bulk string of {n} bytes");
                }
                if buf.len() < next + n + 2 {
                    return Ok(None);
                }
                if &buf[next + n..next + n + 2] != b"\r\n" {
                    bail!("RESP bulk string not followed by CRLF");
                }
                (Resp::Bulk(Some(next..next + n)), next + n + 2)
            }
        }
        b'*' | b'>' => {
            let n = parse_int(&buf[line])?;
            if n < 0 {
                (Resp::Array(None), next)
            } else {
                if n as usize > MAX_LEN {
                    bail!("RESP array of {n} elements");
                }
                let mut items = Vec::with_capacity((n as usize).min(16));
                let mut at = next;
                for _ in 0..n {
                    let Some((item, after)) = parse(buf, at)? else {
                        return Ok(None);
                    };
                    items.push(item);
                    at = after;
                }
                (Resp::Array(Some(items)), at)
            }
        }
        other => bail!("unknown RESP type byte {:?}", other as char),
    };
    Ok(Some(value))
}

/// Writes a command as a RESP array of bulk strings.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// A Redis connection's codec.
#[derive(Debug, Default)]
pub struct RedisCodec;

impl RedisCodec {
    /// The handshake: PING, answered by `+PONG`.
    pub fn login(&mut self, out: &mut Vec<u8>) {
        command(out, &[b"PING"]);
    }

    /// SUBSCRIBE.
    pub fn join(&mut self, out: &mut Vec<u8>, room: &str) {
        command(out, &[b"SUBSCRIBE", room.as_bytes()]);
    }

    /// UNSUBSCRIBE.
    pub fn leave(&mut self, out: &mut Vec<u8>, room: &str) {
        command(out, &[b"UNSUBSCRIBE", room.as_bytes()]);
    }

    /// PUBLISH (answered by the number of receivers, reported as [`Event::Other`]).
    pub fn publish(&mut self, out: &mut Vec<u8>, room: &str, body: &[u8]) {
        // The hot path: one small header format instead of per-argument ones.
        let header = format!(
            "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{}\r\n${}\r\n",
            room.len(),
            room,
            body.len()
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }

    /// The next reply or push message as an event.
    pub fn next_event<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Event<'a>, usize)>> {
        let Some((value, used)) = parse(buf, 0)? else {
            return Ok(None);
        };
        let bulk = |v: Option<&Resp>| match v {
            Some(Resp::Bulk(Some(r))) => Some(&buf[r.clone()]),
            _ => None,
        };
        let event = match &value {
            Resp::Simple(r) if buf[r.clone()].eq_ignore_ascii_case(b"PONG") => Event::LoggedIn,
            Resp::Error(r) => {
                Event::Rejected(String::from_utf8_lossy(&buf[r.clone()]).into_owned())
            }
            Resp::Array(Some(items)) => match bulk(items.first()) {
                Some(kind) if kind.eq_ignore_ascii_case(b"message") && items.len() == 3 => {
                    let body = bulk(items.get(2)).context("RESP message without a payload")?;
                    Event::Delivery { seq: None, body }
                }
                Some(kind) if kind.eq_ignore_ascii_case(b"subscribe") => {
                    Event::Joined(JoinInfo::default())
                }
                Some(kind) if kind.eq_ignore_ascii_case(b"unsubscribe") => Event::Left,
                _ => Event::Other,
            },
            _ => Event::Other,
        };
        Ok(Some((event, used)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_resp2_type_and_push() {
        let wire = b"+OK\r\n-ERR no\r\n:42\r\n$3\r\na\r\n\r\n$-1\r\n*2\r\n$1\r\nx\r\n:-7\r\n*-1\r\n>1\r\n+p\r\n_\r\n";
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((v, next)) = parse(wire, at).unwrap() {
            got.push(v);
            at = next;
        }
        assert_eq!(at, wire.len());
        assert_eq!(got[0], Resp::Simple(1..3));
        assert_eq!(got[1], Resp::Error(6..12));
        assert_eq!(got[2], Resp::Int(42));
        assert_eq!(
            got[3],
            Resp::Bulk(Some(23..26)),
            "binary-safe: the CRLF inside is data"
        );
        assert_eq!(&wire[23..26], b"a\r\n");
        assert_eq!(got[4], Resp::Bulk(None));
        assert!(matches!(&got[5], Resp::Array(Some(v)) if v.len() == 2 && v[1] == Resp::Int(-7)));
        assert_eq!(got[6], Resp::Array(None));
        assert!(matches!(&got[7], Resp::Array(Some(v)) if v.len() == 1));
        assert_eq!(got[8], Resp::Null);
    }

    #[test]
    fn incomplete_input_needs_more_at_every_cut() {
        let wire = b"*3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n$5\r\nhello\r\n";
        for cut in 0..wire.len() {
            assert_eq!(parse(&wire[..cut], 0).unwrap(), None, "cut {cut}");
        }
        let mut codec = RedisCodec;
        let (ev, used) = codec.next_event(wire).unwrap().unwrap();
        assert_eq!(
            ev,
            Event::Delivery {
                seq: None,
                body: b"hello"
            }
        );
        assert_eq!(used, wire.len());
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(b"?what\r\n", 0).is_err());
        assert!(parse(b"$3\r\nabcXY", 0).is_err());
        assert!(parse(b":x\r\n", 0).is_err());
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        RedisCodec.join(&mut out, "r1");
        assert_eq!(out, b"*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nr1\r\n");
        let mut fast = Vec::new();
        RedisCodec.publish(&mut fast, "room", b"a\r\nb");
        let mut slow = Vec::new();
        command(&mut slow, &[b"PUBLISH", b"room", b"a\r\nb"]);
        assert_eq!(fast, slow);
    }

    #[test]
    fn subscription_replies_become_events() {
        let mut c = RedisCodec;
        let wire = b"*3\r\n$9\r\nsubscribe\r\n$2\r\nr1\r\n:1\r\n";
        assert_eq!(
            c.next_event(wire).unwrap().unwrap().0,
            Event::Joined(JoinInfo::default())
        );
        let wire = b"*3\r\n$11\r\nunsubscribe\r\n$2\r\nr1\r\n:0\r\n";
        assert_eq!(c.next_event(wire).unwrap().unwrap().0, Event::Left);
        assert_eq!(
            c.next_event(b"+PONG\r\n").unwrap().unwrap().0,
            Event::LoggedIn
        );
        assert_eq!(c.next_event(b":3\r\n").unwrap().unwrap().0, Event::Other);
    }
}
