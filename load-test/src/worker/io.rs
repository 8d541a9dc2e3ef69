//! A worker's sockets: setting every connection up, starting a connect, the epoll
//! pump, keepalives, and the reads and writes the pump hands out.

use std::cmp::Reverse;

use anyhow::{bail, Context, Result};

use crate::clock::mono_ns;
use crate::conn::{start_connect, ConnState};
use crate::poller::{READ, WRITE};

use super::{Worker, KEEPALIVE_PARTS};

/// Bytes read per `read` call.
pub(super) const READ_CHUNK: usize = 256 * 1024;

impl Worker {
    /// Connects, logs in and joins every connection, `setup_concurrency` at a time.
    pub fn setup(&mut self, timeout_ns: u64) -> Result<()> {
        let deadline = mono_ns() + timeout_ns;
        while self.ready_count < self.conns.len() {
            while self.in_flight < self.plan.setup_concurrency
                && self.next_to_start < self.conns.len()
            {
                let ci = self.next_to_start;
                self.next_to_start += 1;
                self.start(ci, mono_ns())?;
            }
            let now = mono_ns();
            if now > deadline {
                bail!(
                    "setup timed out: {} of {} connections ready ({} in flight)",
                    self.ready_count,
                    self.conns.len(),
                    self.in_flight
                );
            }
            self.pump(now + 10_000_000)?;
        }
        Ok(())
    }

    /// Starts connecting connection `ci`; its connect latency counts from `started_ns`.
    pub fn start(&mut self, ci: usize, started_ns: u64) -> Result<()> {
        let source = (!self.plan.sources.is_empty())
            .then(|| self.plan.sources[ci % self.plan.sources.len()]);
        let socket = match start_connect(self.plan.addr, source) {
            Ok(s) => s,
            Err(e) if self.running => {
                self.counters.incidents.connect_failures += 1;
                self.note_error(format!("connect: {e}"));
                self.conns[ci].state = ConnState::Closed;
                return Ok(());
            }
            Err(e) => return Err(e).with_context(|| format!("connect to {}", self.plan.addr)),
        };
        let conn = &mut self.conns[ci];
        self.poller.add(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            ci as u64,
            READ | WRITE,
        )?;
        conn.socket = Some(socket);
        conn.write_interest = true;
        conn.state = ConnState::Connecting;
        conn.started_ns = started_ns;
        self.in_flight += 1;
        Ok(())
    }

    /// Writes touched connections, then waits for I/O until `wake_at` or the next
    /// timer, whichever is first, and handles what became ready (the caller fires the
    /// timers).
    pub fn pump(&mut self, wake_at: u64) -> Result<()> {
        self.flush_dirty()?;
        let next = self
            .timers
            .peek()
            .map_or(wake_at, |Reverse((due, _))| (*due).min(wake_at));
        let now = mono_ns();
        let timeout = next.saturating_sub(now);
        let timeout = if timeout <= self.plan.spin_ns {
            0
        } else {
            timeout
        };
        let mut ready = std::mem::take(&mut self.ready);
        self.poller.wait(Some(timeout), &mut ready)?;
        let next_timer = self
            .timers
            .peek()
            .map_or(u64::MAX, |Reverse((due, _))| *due);
        for (i, r) in ready.iter().enumerate() {
            // A burst of deliveries must not hold back sends that fall due meanwhile:
            // every few connections, stop if a timer is due. The connections not yet
            // served stay ready (level-triggered) and come back in the next wait.
            if i % 16 == 15 && mono_ns() >= next_timer {
                break;
            }
            let ci = r.token as usize;
            if r.writable {
                self.on_writable(ci)?;
            }
            if r.readable {
                self.on_readable(ci)?;
            }
        }
        ready.clear();
        self.ready = ready;
        Ok(())
    }

    /// Keepalives, because corecast closes a connection that sends nothing for its
    /// `--idle-timeout` (60 s by default) and most members of a broadcast scenario only
    /// listen. Pings the next 1/`KEEPALIVE_PARTS` of the connections (round robin): called
    /// every `KEEPALIVE_NS / KEEPALIVE_PARTS`, each connection is pinged once per
    /// `KEEPALIVE_NS`, spread out instead of all in one tick inside the window.
    pub fn keepalive_some(&mut self) {
        let n = self.conns.len();
        for _ in 0..n.div_ceil(KEEPALIVE_PARTS) {
            let ci = self.keepalive_cursor % n;
            self.keepalive_cursor = ci + 1;
            let conn = &mut self.conns[ci];
            conn.codec.keepalive(&mut conn.wbuf);
            self.mark_dirty(ci);
        }
    }

    /// Writes every connection touched this tick.
    pub fn flush_dirty(&mut self) -> Result<()> {
        let mut dirty = std::mem::take(&mut self.dirty);
        for ci in dirty.drain(..) {
            self.conns[ci].dirty = false;
            self.flush(ci)?;
        }
        self.dirty = dirty;
        Ok(())
    }

    fn flush(&mut self, ci: usize) -> Result<()> {
        if self.conns[ci].state == ConnState::Connecting {
            return Ok(());
        }
        match self.conns[ci].flush() {
            Ok(done) => {
                let conn = &mut self.conns[ci];
                if done == conn.write_interest {
                    if let Some(fd) = conn.fd() {
                        let interest = if done { READ } else { READ | WRITE };
                        self.poller.modify(fd, ci as u64, interest)?;
                        conn.write_interest = !done;
                    }
                }
                Ok(())
            }
            Err(e) => self.on_closed(ci, format!("write: {e}")),
        }
    }

    fn on_writable(&mut self, ci: usize) -> Result<()> {
        let conn = &mut self.conns[ci];
        match conn.state {
            ConnState::Connecting => {
                let error = conn.socket.as_ref().map(|s| s.take_error());
                match error {
                    Some(Ok(None)) => {}
                    Some(Ok(Some(e))) | Some(Err(e)) => {
                        return self.on_closed(ci, format!("connect: {e}"))
                    }
                    None => return Ok(()),
                }
                conn.state = ConnState::LoggingIn;
                let token = conn.token.as_deref().or(self.plan.token.as_deref());
                if conn.rejoin.is_some() {
                    conn.codec
                        .login_replacing(&mut conn.wbuf, &conn.player, token);
                } else {
                    conn.codec.login(&mut conn.wbuf, &conn.player, token);
                }
                self.flush(ci)
            }
            ConnState::Closed | ConnState::Idle => Ok(()),
            _ => self.flush(ci),
        }
    }

    fn on_readable(&mut self, ci: usize) -> Result<()> {
        if matches!(
            self.conns[ci].state,
            ConnState::Connecting | ConnState::Closed | ConnState::Idle
        ) {
            if self.conns[ci].state == ConnState::Connecting {
                // A refused connect reports readable with an error; the write side checks it.
                return self.on_writable(ci);
            }
            return Ok(());
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.read_some(ci, &mut scratch);
        self.scratch = scratch;
        result
    }

    fn read_some(&mut self, ci: usize, scratch: &mut [u8]) -> Result<()> {
        // A few reads per wakeup, then let other connections have their turn.
        for _ in 0..4 {
            let n = match self.conns[ci].read(scratch) {
                Ok(None) => return Ok(()),
                Ok(Some(0)) => return self.on_closed(ci, "closed by the server".into()),
                Ok(Some(n)) => n,
                Err(e) => return self.on_closed(ci, format!("read: {e}")),
            };
            let now = mono_ns();
            let mut rbuf = std::mem::take(&mut self.conns[ci].rbuf);
            if rbuf.is_empty() {
                let used = self.parse(ci, &scratch[..n], now)?;
                rbuf.extend_from_slice(&scratch[used..n]);
            } else {
                rbuf.extend_from_slice(&scratch[..n]);
                let used = self.parse(ci, &rbuf, now)?;
                rbuf.drain(..used);
            }
            if self.conns[ci].state != ConnState::Closed {
                self.conns[ci].rbuf = rbuf;
            }
            if n < scratch.len() {
                return Ok(());
            }
        }
        Ok(())
    }

    fn parse(&mut self, ci: usize, data: &[u8], now: u64) -> Result<usize> {
        let mut pos = 0;
        loop {
            let conn = &mut self.conns[ci];
            if conn.state == ConnState::Closed {
                return Ok(data.len());
            }
            let before = conn.wbuf.len();
            let next = conn
                .codec
                .next_event(&data[pos..], &mut conn.wbuf)
                .with_context(|| format!("protocol error on connection {}", conn.player))?;
            if conn.wbuf.len() != before {
                self.mark_dirty(ci);
            }
            let Some((event, used)) = next else {
                return Ok(pos);
            };
            pos += used;
            self.on_event(ci, event, now)?;
        }
    }
}
