//! The process's listening sockets: which addresses they take, the start-up check that
//! no other process holds one, and the socket options every shard binds with.
//!
//! Every listener sets SO_REUSEPORT (all shards accept on one port) and SO_REUSEADDR,
//! so a restart binds at once while the previous run's connections sit in TIME-WAIT:
//! a supervisor's restart (the reason `panic = "abort"` is safe) must not wait 60 s.
//! SO_REUSEPORT would also let a second server on the same port silently take half of
//! the connections, so [`check_free`] first binds a probe socket without it: that
//! fails while any live listener holds the address, and only then.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Pending connections the kernel queues per listener (capped by `net.core.somaxconn`).
const BACKLOG: i32 = 1024;

/// One listener of the process, named by the flag that sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The flag, e.g. `--listen`, for error messages.
    pub flag: &'static str,
    /// The address, port 0 meaning any free port.
    pub addr: SocketAddr,
}

/// Why the process's listeners cannot be set up as asked.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Two listeners of this process would share an address.
    #[error(
        "{first} {} and {second} {} overlap: one port cannot serve both (give them different ports)",
        first_addr,
        second_addr
    )]
    Clash {
        /// The first flag.
        first: &'static str,
        /// Its address.
        first_addr: SocketAddr,
        /// The second flag.
        second: &'static str,
        /// Its address.
        second_addr: SocketAddr,
    },
    /// Another process (or another listener) already listens there.
    #[error("{flag} {addr}: the address is in use by another listener ({source})")]
    InUse {
        /// The flag.
        flag: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The address cannot be bound at all (not local, no permission).
    #[error("{flag} {addr}: cannot bind ({source})")]
    Bind {
        /// The flag.
        flag: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Refuses two listeners of the process on one address (the same port on the same IP,
/// or on a wildcard that covers the other's IP). With SO_REUSEPORT the kernel would
/// otherwise split connections between them without a word.
pub fn check_distinct(endpoints: &[Endpoint]) -> Result<(), ListenError> {
    for (i, a) in endpoints.iter().enumerate() {
        for b in &endpoints[i + 1..] {
            if overlap(a.addr, b.addr) {
                return Err(ListenError::Clash {
                    first: a.flag,
                    first_addr: a.addr,
                    second: b.flag,
                    second_addr: b.addr,
                });
            }
        }
    }
    Ok(())
}

/// Whether connections to one address could reach the other's listener.
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() == 0 || b.port() == 0 || a.port() != b.port() {
        return false;
    }
    let (a, b) = (a.ip(), b.ip());
    // An IPv6 wildcard is dual-stack (Linux's default), so it covers every address;
    // an IPv4 wildcard covers every IPv4 address.
    a == b
        || (a.is_ipv6() && a.is_unspecified())
        || (b.is_ipv6() && b.is_unspecified())
        || (a.is_ipv4() && b.is_ipv4() && (a.is_unspecified() || b.is_unspecified()))
}

/// Fails if a live listener holds `endpoint`'s address. The probe socket sets
/// SO_REUSEADDR but not SO_REUSEPORT: it binds over TIME-WAIT connections and is refused
/// by a listening socket, which is exactly the distinction a restart needs.
pub fn check_free(endpoint: Endpoint) -> Result<(), ListenError> {
    if endpoint.addr.port() == 0 {
        return Ok(());
    }
    let socket = new_socket(endpoint.addr).map_err(|source| bind_error(endpoint, source))?;
    socket
        .bind(&SockAddr::from(endpoint.addr))
        .map_err(|source| bind_error(endpoint, source))
}

fn bind_error(endpoint: Endpoint, source: io::Error) -> ListenError {
    let Endpoint { flag, addr } = endpoint;
    if source.kind() == io::ErrorKind::AddrInUse {
        ListenError::InUse { flag, addr, source }
    } else {
        ListenError::Bind { flag, addr, source }
    }
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    Ok(socket)
}

/// Binds one shard's listener (SO_REUSEADDR and SO_REUSEPORT) and hands it to glommio;
/// the [`StopListening`] ends its listening state when the shard stops. Must run on a
/// glommio executor.
pub fn bind(addr: SocketAddr) -> io::Result<(glommio::net::TcpListener, StopListening)> {
    let socket = new_socket(addr)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(BACKLOG)?;
    let fd = socket.into_raw_fd();
    // SAFETY: the descriptor is a bound, listening TCP socket whose ownership moves to
    // the glommio listener here (into_raw_fd gave it up).
    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(fd) };
    Ok((listener, StopListening(fd)))
}

/// Takes a listener out of the listening state while its descriptor is still open.
///
/// Dropping a glommio listener is not enough for a restart to bind at once: while
/// io_uring holds an accept armed on it, the kernel keeps the socket listening, until
/// the ring completes that accept or is torn down, which happens asynchronously after
/// the executor's thread has ended. `shutdown(2)` on a listening socket stops it
/// listening at once and completes the armed accept.
#[derive(Debug)]
pub struct StopListening(RawFd);

impl StopListening {
    /// Stops listening; the caller still owns (and later drops) the listener.
    pub fn now(&self) {
        // SAFETY: the listener that owns this descriptor is alive whenever this runs:
        // both belong to the same shard task, which calls this before dropping it.
        unsafe { libc::shutdown(self.0, libc::SHUT_RDWR) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(flag: &'static str, addr: &str) -> Endpoint {
        Endpoint {
            flag,
            addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn listeners_that_could_receive_each_others_connections_overlap() {
        let cases = [
            ("127.0.0.1:7878", "127.0.0.1:7878", true),
            ("0.0.0.0:7878", "127.0.0.1:7878", true),
            ("127.0.0.1:7878", "0.0.0.0:7878", true),
            ("[::]:7878", "127.0.0.1:7878", true),
            ("[::]:7878", "[::1]:7878", true),
            ("127.0.0.1:7878", "127.0.0.1:9090", false),
            ("127.0.0.1:7878", "127.0.0.2:7878", false),
            ("127.0.0.1:7878", "[::1]:7878", false),
            ("0.0.0.0:7878", "[::1]:7878", false),
            ("127.0.0.1:0", "127.0.0.1:0", false),
        ];
        for (a, b, expected) in cases {
            assert_eq!(
                overlap(a.parse().unwrap(), b.parse().unwrap()),
                expected,
                "{a} vs {b}"
            );
        }
    }

    #[test]
    fn a_clash_names_both_flags_and_addresses() {
        let err = check_distinct(&[
            at("--listen", "127.0.0.1:7878"),
            at("--metrics-listen", "0.0.0.0:7878"),
        ])
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--listen 127.0.0.1:7878"), "{text}");
        assert!(text.contains("--metrics-listen 0.0.0.0:7878"), "{text}");
        assert!(check_distinct(&[
            at("--listen", "127.0.0.1:7878"),
            at("--metrics-listen", "127.0.0.1:9090"),
        ])
        .is_ok());
    }

    #[test]
    fn a_live_listener_is_caught_and_a_closed_one_is_not() {
        let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = Endpoint {
            flag: "--listen",
            addr: live.local_addr().unwrap(),
        };
        assert!(matches!(
            check_free(endpoint),
            Err(ListenError::InUse { .. })
        ));
        drop(live);
        check_free(endpoint).unwrap();
    }
}
