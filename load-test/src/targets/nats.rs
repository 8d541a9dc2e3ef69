//! NATS core over its text protocol: CONNECT, SUB, UNSUB, PUB, MSG, PING/PONG.
//! Room = subject. Each request that needs confirmation is followed by a PING: the
//! server answers PINGs in order, after everything sent before them is processed, so
//! the matching PONG says "subscribed" (or "unsubscribed", or "connected").

use std::collections::VecDeque;

use anyhow::{bail, Context, Result};

use super::{Event, JoinInfo};

/// What an expected PONG confirms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Login,
    Join,
    Leave,
    Keepalive,
}

/// A NATS connection's codec.
#[derive(Debug, Default)]
pub struct NatsCodec {
    pending: VecDeque<Pending>,
    subs: Vec<(String, u64)>,
    next_sid: u64,
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    let nl = buf.iter().position(|&b| b == b'\n')?;
    (nl > 0 && buf[nl - 1] == b'\r').then_some(nl - 1)
}

impl NatsCodec {
    /// CONNECT (verbose off: no +OK per message) then PING.
    pub fn login(&mut self, out: &mut Vec<u8>, player: &str, token: Option<&str>) {
        let token = token
            .map(|t| format!(",\"auth_token\":{}", json_string(t)))
            .unwrap_or_default();
        let connect = format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"name\":{}{}}}\r\nPING\r\n",
            json_string(player),
            token
        );
        out.extend_from_slice(connect.as_bytes());
        self.pending.push_back(Pending::Login);
    }

    /// SUB with a fresh sid, then PING.
    pub fn join(&mut self, out: &mut Vec<u8>, room: &str) {
        self.next_sid += 1;
        self.subs.push((room.to_string(), self.next_sid));
        out.extend_from_slice(format!("SUB {room} {}\r\nPING\r\n", self.next_sid).as_bytes());
        self.pending.push_back(Pending::Join);
    }

    /// UNSUB of the room's sid, then PING.
    pub fn leave(&mut self, out: &mut Vec<u8>, room: &str) {
        if let Some(i) = self.subs.iter().position(|(r, _)| r == room) {
            let (_, sid) = self.subs.swap_remove(i);
            out.extend_from_slice(format!("UNSUB {sid}\r\n").as_bytes());
        }
        out.extend_from_slice(b"PING\r\n");
        self.pending.push_back(Pending::Leave);
    }

    /// A PING whose PONG means nothing.
    pub fn keepalive(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"PING\r\n");
        self.pending.push_back(Pending::Keepalive);
    }

    /// PUB.
    pub fn publish(&mut self, out: &mut Vec<u8>, room: &str, body: &[u8]) {
        out.extend_from_slice(format!("PUB {room} {}\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }

    /// The next protocol message as an event; answers the server's PINGs.
    pub fn next_event<'a>(
        &mut self,
        buf: &'a [u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<(Event<'a>, usize)>> {
        let Some(end) = find_crlf(buf) else {
            if buf.len() > 64 * 1024 {
                bail!("NATS control line longer than 64 KiB");
            }
            return Ok(None);
        };
        let line = &buf[..end];
        let after = end + 2;
        let op_end = line
            .iter()
            .position(|&b| b == b' ' || b == b'\t')
            .unwrap_or(line.len());
        let op = &line[..op_end];
        let event = if op.eq_ignore_ascii_case(b"MSG") {
            // MSG <subject> <sid> [reply-to] <#bytes>
            let args =
                std::str::from_utf8(&line[op_end..]).context("NATS MSG line is not UTF-8")?;
            let size: usize = args
                .split_ascii_whitespace()
                .last()
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("bad NATS MSG line {args:?}"))?;
            if buf.len() < after + size + 2 {
                return Ok(None);
            }
            if &buf[after + size..after + size + 2] != b"\r\n" {
                bail!("NATS payload not followed by CRLF");
            }
            return Ok(Some((
                Event::Delivery {
                    seq: None,
                    body: &buf[after..after + size],
                },
                after + size + 2,
            )));
        } else if op.eq_ignore_ascii_case(b"PING") {
            out.extend_from_slice(b"PONG\r\n");
            Event::Other
        } else if op.eq_ignore_ascii_case(b"PONG") {
            match self.pending.pop_front() {
                Some(Pending::Login) => Event::LoggedIn,
                Some(Pending::Join) => Event::Joined(JoinInfo::default()),
                Some(Pending::Leave) => Event::Left,
                Some(Pending::Keepalive) | None => Event::Other,
            }
        } else if op.eq_ignore_ascii_case(b"-ERR") {
            Event::Rejected(String::from_utf8_lossy(line).into_owned())
        } else if op.eq_ignore_ascii_case(b"+OK") || op.eq_ignore_ascii_case(b"INFO") {
            Event::Other
        } else {
            bail!(
                "unexpected NATS message {:?}",
                String::from_utf8_lossy(line)
            );
        };
        Ok(Some((event, after)))
    }
}

/// A JSON string literal (CONNECT options).
fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_join_leave_are_confirmed_by_pongs_in_order() {
        let mut c = NatsCodec::default();
        let mut out = Vec::new();
        c.login(&mut out, "p1", None);
        c.join(&mut out, "room.1");
        c.leave(&mut out, "room.1");
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with(
            "CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"p1\"}\r\nPING\r\n"
        ));
        assert!(text.contains("SUB room.1 1\r\nPING\r\n"));
        assert!(text.ends_with("UNSUB 1\r\nPING\r\n"));
        let wire = b"INFO {\"server_id\":\"x\"}\r\nPONG\r\nPONG\r\nPONG\r\n";
        let mut at = 0;
        let mut events = Vec::new();
        out.clear();
        while let Some((ev, used)) = c.next_event(&wire[at..], &mut out).unwrap() {
            events.push(ev);
            at += used;
        }
        assert_eq!(
            events,
            vec![
                Event::Other,
                Event::LoggedIn,
                Event::Joined(JoinInfo::default()),
                Event::Left
            ]
        );
    }

    #[test]
    fn msg_with_and_without_reply_and_binary_payload() {
        let mut c = NatsCodec::default();
        let mut out = Vec::new();
        let wire = b"MSG r 1 5\r\na\r\nbc\r\nMSG r 1 inbox.x 2\r\nhi\r\n";
        let (ev, used) = c.next_event(wire, &mut out).unwrap().unwrap();
        assert_eq!(
            ev,
            Event::Delivery {
                seq: None,
                body: b"a\r\nbc"
            }
        );
        let (ev, used2) = c.next_event(&wire[used..], &mut out).unwrap().unwrap();
        assert_eq!(
            ev,
            Event::Delivery {
                seq: None,
                body: b"hi"
            }
        );
        assert_eq!(used + used2, wire.len());
        for cut in 0..used {
            assert!(
                c.next_event(&wire[..cut], &mut out).unwrap().is_none(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn answers_server_pings_and_reports_errors() {
        let mut c = NatsCodec::default();
        let mut out = Vec::new();
        assert_eq!(
            c.next_event(b"PING\r\n", &mut out).unwrap().unwrap().0,
            Event::Other
        );
        assert_eq!(out, b"PONG\r\n");
        let (ev, _) = c
            .next_event(b"-ERR 'Slow Consumer'\r\n", &mut out)
            .unwrap()
            .unwrap();
        assert!(matches!(ev, Event::Rejected(m) if m.contains("Slow Consumer")));
        assert!(c.next_event(b"WHAT\r\n", &mut out).is_err());
    }

    #[test]
    fn publish_is_pub_line_then_payload() {
        let mut out = Vec::new();
        NatsCodec::default().publish(&mut out, "room.2", b"xyz");
        assert_eq!(out, b"PUB room.2 3\r\nxyz\r\n");
    }
}
