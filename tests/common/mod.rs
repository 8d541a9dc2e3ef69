//! Shared test harness: a real server on port 0 with two shards, and helpers that wait
//! for messages with timeouts (never sleeps).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use corecast::client::{Client, ClientError};
use corecast::config::Config;
use corecast::proto::{server_message::Data, ErrorCode, MessageNotification};
use corecast::server::Server;

/// A server that shuts down gracefully when dropped.
pub struct TestServer {
    server: Option<Server>,
    pub addr: SocketAddr,
    /// How [`TestServer::connect`] connects.
    pub transport: Transport,
}

/// How a test's clients reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The TCP port (`--listen`).
    Tcp,
    /// The WebSocket port (`--ws-listen`), path `/ws`.
    WebSocket,
}

/// [`start`] with clients over `transport`.
pub fn start_on(transport: Transport) -> TestServer {
    start_with_on(transport, config())
}

/// [`start_with`] with clients over `transport` (a WebSocket listener is added).
pub fn start_with_on(transport: Transport, config: Config) -> TestServer {
    let config = match transport {
        Transport::Tcp => config,
        Transport::WebSocket => Config {
            ws_listen: Some("127.0.0.1:0".into()),
            ..config
        },
    };
    let mut server = start_with(config);
    server.transport = transport;
    server
}

/// Defaults for tests: port 0, two shards, a short grace period.
pub fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        shards: Some(2),
        shutdown_grace: 2,
        ..Config::default()
    }
}

pub fn start() -> TestServer {
    start_with(config())
}

pub fn start_with(config: Config) -> TestServer {
    let server = Server::start(config).expect("server starts");
    let addr = server.local_addr();
    TestServer {
        server: Some(server),
        addr,
        transport: Transport::Tcp,
    }
}

impl TestServer {
    pub fn connect(&self) -> Client {
        match self.transport {
            Transport::Tcp => Client::connect(self.addr).expect("connect"),
            Transport::WebSocket => {
                let ws = self.server().ws_addr().expect("a --ws-listen port");
                Client::connect_ws(ws, "/ws").expect("connect over WebSocket")
            }
        }
    }

    /// A connected, logged-in client.
    pub fn login(&self, player: &str) -> Client {
        let mut c = self.connect();
        c.login(player, None).expect("login");
        c
    }

    /// Starts a graceful shutdown and waits for it.
    pub fn stop(mut self) -> Result<(), corecast::server::ServerError> {
        let server = self.server.take().expect("running");
        server.shutdown();
        server.wait()
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
            let _ = server.wait();
        }
    }
}

/// The next `MessageNotification`, skipping join/leave notifications.
pub fn next_message(c: &mut Client) -> MessageNotification {
    c.expect(|d| match d {
        Data::MessageNotification(m) => Ok(m),
        other => Err(other),
    })
    .expect("a message notification")
}

/// The next message of any kind.
pub fn next_data(c: &mut Client) -> Data {
    c.recv().expect("a message").data.expect("data set")
}

/// Asserts that `c` receives nothing (checked with a ping round trip: anything `c`'s
/// own shard had queued for it before the pong arrives first). A delivery still on its
/// way from a room owned by another shard is not covered: use
/// [`assert_no_messages_from`] for that.
pub fn assert_nothing_pending(c: &mut Client) {
    let nonce = 0xfeed;
    c.send(corecast::proto::client_message::Data::Ping(
        corecast::proto::Ping { nonce },
    ))
    .unwrap();
    match next_data(c) {
        Data::Pong(p) => assert_eq!(p.nonce, nonce),
        other => panic!("expected nothing before the pong, got {other:?}"),
    }
}

/// Asserts that no `MessageNotification` is queued for `c` (join and leave
/// notifications may be), using a ping round trip as the barrier: like
/// [`assert_nothing_pending`], it covers what `c`'s own shard had queued, not a
/// delivery still crossing from another shard (see [`assert_no_messages_from`]).
pub fn assert_no_messages(c: &mut Client) {
    let nonce = 0xbeef;
    c.send(corecast::proto::client_message::Data::Ping(
        corecast::proto::Ping { nonce },
    ))
    .unwrap();
    loop {
        match next_data(c) {
            Data::Pong(p) if p.nonce == nonce => return,
            Data::MessageNotification(m) => panic!("unexpected message {m:?}"),
            _ => {}
        }
    }
}

/// Asserts that `room` sent `c` no `MessageNotification`, with the room's owner as the
/// barrier: a second JoinRequest for a room `c` is in is refused by the owner, after
/// everything the owner sent `c` before it, whichever shard owns the room.
pub fn assert_no_messages_from(c: &mut Client, room: &str) {
    c.send(corecast::proto::client_message::Data::JoinRequest(
        corecast::proto::JoinRequest {
            room_id: room.into(),
            room_config: None,
            ..Default::default()
        },
    ))
    .unwrap();
    loop {
        match next_data(c) {
            Data::JoinResponse(r) if r.room_id == room => {
                let code = r.error.map(|e| e.code());
                assert_eq!(code, Some(ErrorCode::AlreadyJoinedTheRoom), "{room}");
                return;
            }
            Data::MessageNotification(m) => panic!("unexpected message {m:?}"),
            _ => {}
        }
    }
}

/// Retries `attempt` until it succeeds or `timeout` passes.
pub fn eventually<T>(timeout: Duration, mut attempt: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = attempt() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        std::thread::yield_now();
    }
}

/// Asserts a response error code.
pub fn assert_rejected<T: std::fmt::Debug>(result: Result<T, ClientError>, code: ErrorCode) {
    match result {
        Err(ClientError::Rejected { code: got, message }) => {
            assert_eq!(got, code, "message: {message}");
            assert!(!message.is_empty(), "errors carry a message");
        }
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

/// Asserts `ServerMessage.error` with `code` (and a message) is the next error.
pub fn assert_error(c: &mut Client, code: ErrorCode) {
    let (got, message) = c.expect_error().expect("an error message");
    assert_eq!(got, code, "message: {message}");
    assert!(!message.is_empty(), "errors carry a message");
}

/// Readers that each collect `messages` seqs on their own thread and publish their
/// progress, so a sender can keep them within a window (flow control against the
/// readers only: a test's slow consumers never read).
pub struct PacedReaders {
    progress: std::sync::Arc<Vec<std::sync::atomic::AtomicU64>>,
    handles: Vec<std::thread::JoinHandle<Vec<u64>>>,
}

impl PacedReaders {
    pub fn spawn(readers: Vec<Client>, messages: u64) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        let progress: std::sync::Arc<Vec<AtomicU64>> =
            std::sync::Arc::new(readers.iter().map(|_| AtomicU64::new(0)).collect());
        let handles = readers
            .into_iter()
            .enumerate()
            .map(|(i, mut r)| {
                let progress = progress.clone();
                std::thread::spawn(move || {
                    r.set_timeout(Duration::from_secs(30));
                    (0..messages)
                        .map(|_| {
                            let seq = next_message(&mut r).seq;
                            progress[i].fetch_add(1, Ordering::Release);
                            seq
                        })
                        .collect()
                })
            })
            .collect();
        Self { progress, handles }
    }

    /// Waits until every reader has received all but `window` of `sent` messages.
    pub fn wait_within(&self, sent: u64, window: u64) {
        use std::sync::atomic::Ordering;
        eventually(Duration::from_secs(30), || {
            self.progress
                .iter()
                .all(|p| p.load(Ordering::Acquire) + window >= sent)
                .then_some(())
        });
    }

    /// Every reader's received seqs.
    pub fn join(self) -> Vec<Vec<u64>> {
        self.handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect()
    }
}

/// `GET path` over plain HTTP/1.1 (the metrics port): status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = http_request(addr, "GET", path);
    (status, body)
}

/// `METHOD path` over plain HTTP/1.1: status, header lines and body.
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: corecast\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response)
        .unwrap_or_else(|e| panic!("{method} {path}: {e} after {response:?}"));
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_string(), body.to_string())
}

/// The value of one Prometheus series (`name` or `name{labels}`) in a scrape.
pub fn metric(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no series {series} in:\n{scrape}"))
        .parse()
        .unwrap()
}

/// The graceful-shutdown contract, for `a` and `b` already in room "r": `a` sends
/// `messages` messages (all accepted before the stop), the server stops, `b` still gets
/// every one in order, both then get SERVER_SHUTTING_DOWN and a clean end of stream,
/// and clients that read everything let the stop finish well within its grace.
pub fn assert_graceful_shutdown(server: TestServer, mut a: Client, mut b: Client, messages: u8) {
    for i in 0..messages {
        a.send_message("r", &[], vec![i]).unwrap();
    }
    for _ in 0..messages {
        next_message(&mut a);
    }
    let started = Instant::now();
    let stopping = std::thread::spawn(move || server.stop());
    for i in 0..messages {
        assert_eq!(&next_message(&mut b).body[..], &[i]);
    }
    for c in [&mut a, &mut b] {
        assert_error(c, ErrorCode::ServerShuttingDown);
        // Under TLS, a close_notify then the end of the stream: `Closed`, not a truncation.
        c.expect_closed().unwrap();
    }
    drop((a, b));
    stopping.join().unwrap().expect("clean stop");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}
