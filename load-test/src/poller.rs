//! A minimal level-triggered epoll wrapper whose wait takes a nanosecond timeout
//! (`epoll_pwait2`, Linux 5.11+): the scheduler sleeps exactly until the next send is
//! due, where `epoll_wait`'s millisecond timeout would add up to 1 ms of fake latency.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Interest in reading.
pub const READ: u32 = libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32;
/// Interest in writing (also how a non-blocking connect reports completion).
pub const WRITE: u32 = libc::EPOLLOUT as u32;

/// One readiness report.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    /// The token given at registration.
    pub token: u64,
    /// Readable (or hung up / error: a read will tell).
    pub readable: bool,
    /// Writable (or error: a write will tell).
    pub writable: bool,
}

/// An epoll instance and its event buffer.
pub struct Poller {
    epfd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Poller {
    /// A new epoll instance reporting up to 1024 events per wait.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let epfd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self {
            epfd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 1024],
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, interest: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: interest,
            u64: token,
        };
        // SAFETY: `ev` outlives the call; the kernel validates `fd`.
        let rc = unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Registers `fd` under `token`.
    pub fn add(&self, fd: RawFd, token: u64, interest: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, interest)
    }

    /// Changes the interest of a registered `fd`.
    pub fn modify(&self, fd: RawFd, token: u64, interest: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, interest)
    }

    /// Unregisters `fd` (closing it does too; this is for fds that stay open).
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits up to `timeout_ns` (None: forever; 0: poll) and appends what is ready.
    pub fn wait(&mut self, timeout_ns: Option<u64>, out: &mut Vec<Ready>) -> io::Result<()> {
        let ts = timeout_ns.map(|ns| libc::timespec {
            tv_sec: (ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (ns % 1_000_000_000) as libc::c_long,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: the event buffer is valid for `len` entries; the timespec outlives
        // the call; a null sigmask means "leave it alone".
        let n = unsafe {
            libc::epoll_pwait2(
                self.epfd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                ts_ptr,
                std::ptr::null(),
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(err);
        }
        for ev in &self.events[..n as usize] {
            let flags = ev.events;
            let error = flags & (libc::EPOLLERR as u32 | libc::EPOLLHUP as u32) != 0;
            out.push(Ready {
                token: ev.u64,
                readable: error || flags & READ != 0,
                writable: error || flags & WRITE != 0,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::mono_ns;

    #[test]
    fn timeout_has_sub_millisecond_precision() {
        crate::clock::set_fine_timer_slack();
        let mut p = Poller::new().unwrap();
        let mut out = Vec::new();
        let mut slept = Vec::new();
        for _ in 0..21 {
            let t = mono_ns();
            p.wait(Some(200_000), &mut out).unwrap();
            slept.push(mono_ns() - t);
        }
        assert!(out.is_empty());
        slept.sort_unstable();
        assert!(slept[0] >= 200_000, "woke early: {} ns", slept[0]);
        // A millisecond-granular wait would sleep at least 1 ms every time; the
        // fastest of 21 is immune to a busy machine.
        assert!(
            slept[0] < 900_000,
            "fastest 200 us sleep took {} ns",
            slept[0]
        );
    }

    #[test]
    fn reports_readable_sockets_by_token() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        let mut p = Poller::new().unwrap();
        p.add(b.as_raw_fd(), 42, READ).unwrap();
        a.write_all(b"x").unwrap();
        let mut out = Vec::new();
        p.wait(Some(5_000_000_000), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].token, 42);
        assert!(out[0].readable);
    }
}
