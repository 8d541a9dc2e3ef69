//! A TCP proxy for tests that cut a client's connection without stopping the server:
//! [`Proxy::sever`] closes every connection through it (both sides), and
//! [`Proxy::set_upstream`] points later connections at another server (a restart on a
//! new port), and [`Proxy::refuse`] closes new connections at once while set (the
//! server out of reach, for as long as a test needs). A thread per direction per connection; everything stops when the proxy
//! is dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// A running proxy; `addr` is where clients connect.
pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    upstream: Mutex<SocketAddr>,
    /// Both sockets of every connection, to sever them.
    sockets: Mutex<Vec<TcpStream>>,
    pumps: Mutex<Vec<JoinHandle<()>>>,
    stopping: AtomicBool,
    refusing: AtomicBool,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards each connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            sockets: Mutex::new(Vec::new()),
            pumps: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        let accept = thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stopping.load(Ordering::Acquire) {
                    return;
                }
                let Ok(client) = client else { continue };
                if accepting.refusing.load(Ordering::Acquire) {
                    continue;
                }
                let upstream = *accepting.upstream.lock().unwrap();
                // No server there (stopped): the client sees its connection closed.
                let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(2))
                else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let mut sockets = accepting.sockets.lock().unwrap();
                sockets.push(client.try_clone().unwrap());
                sockets.push(server.try_clone().unwrap());
                drop(sockets);
                let mut pumps = accepting.pumps.lock().unwrap();
                pumps.push(pump(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                ));
                pumps.push(pump(server, client));
            }
        });
        Proxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Later connections go to `upstream`.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.shared.upstream.lock().unwrap() = upstream;
    }

    /// While true, new connections are closed at once.
    pub fn refuse(&self, refusing: bool) {
        self.shared.refusing.store(refusing, Ordering::Release);
    }

    /// Cuts every connection made so far, both towards the client and the server.
    pub fn sever(&self) {
        for socket in self.shared.sockets.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to` until either ends, then shuts both down.
fn pump(mut from: TcpStream, mut to: TcpStream) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    })
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        // Wakes the accept loop, which sees `stopping`.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        self.sever();
        for pump in self.shared.pumps.lock().unwrap().drain(..) {
            let _ = pump.join();
        }
    }
}
