//! The `corecast-chat` binary against a real server: two chat processes with piped
//! stdin and stdout; one types, the test reads what the other prints. Every wait is
//! for an expected line, with a timeout (a reader thread per process and a channel).

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use common::*;

use corecast::client::Client;
use corecast::config::Config;
use corecast::proto::{server_message::Data, ErrorCode};
use proxy::Proxy;

const WAIT: Duration = Duration::from_secs(10);

/// A running `corecast-chat` with its input and a channel of its output lines.
struct Chat {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Everything printed so far, for failure messages.
    seen: Vec<String>,
}

impl Chat {
    fn start(addr: SocketAddr, args: &[&str]) -> Chat {
        let mut child = Command::new(env!("CARGO_BIN_EXE_corecast-chat"))
            .arg("--addr")
            .arg(addr.to_string())
            .args(args)
            .env_remove("CORECAST_AUTH_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("corecast-chat starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Chat {
            name: args.join(" "),
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Starts `NAME ROOM` and waits until it has joined.
    fn joined(addr: SocketAddr, name: &str, room: &str, members: &str) -> Chat {
        let mut chat = Chat::start(addr, &[name, room]);
        chat.expect(&format!("* joined {room} (members: {members})"));
        chat
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to corecast-chat");
        stdin.flush().expect("flush");
    }

    /// Waits for `wanted`, skipping other lines; panics with what arrived on timeout.
    fn expect(&mut self, wanted: &str) {
        self.wait_for(&format!("{wanted:?}"), |line| line == wanted);
    }

    /// Waits for a line starting with `prefix`, skipping others; returns it.
    fn expect_prefix(&mut self, prefix: &str) -> String {
        self.wait_for(&format!("{prefix:?}..."), |line| line.starts_with(prefix))
    }

    /// Waits for a line that `matches`, skipping others, and returns it; on timeout
    /// panics with `what` it waited for and what arrived.
    fn wait_for(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "{}: waited for {what} ({e}); it printed {:#?}",
                    self.name, self.seen
                ),
            }
        }
    }

    /// The next line, whatever it is.
    fn next_line(&mut self) -> String {
        let line = self
            .lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("{}: no line ({e}); printed {:#?}", self.name, self.seen));
        self.seen.push(line.clone());
        line
    }

    /// Closes stdin (the end of input).
    fn close_input(&mut self) {
        drop(self.stdin.take());
    }

    /// Closes stdin and waits for the process to exit.
    fn finish(mut self) -> ExitStatus {
        self.close_input();
        self.wait()
    }

    /// Waits for the process to exit: its stdout closes (the reader thread ends and
    /// the channel disconnects), then its status is collected.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{} did not exit; printed {:#?}", self.name, self.seen)
                }
            }
        }
        self.child.wait().expect("exit status")
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_chat_clients_talk() {
    let server = start();
    let addr = server.addr;

    let mut ann = Chat::joined(addr, "ann", "lobby", "ann");
    let mut ben = Chat::joined(addr, "ben", "lobby", "ann, ben");
    ann.expect("* ben joined lobby");

    // A third member through the library client, to check a targeted message skips it.
    let mut cat = server.login("cat");
    cat.join("lobby", None).expect("join");
    ann.expect("* cat joined lobby");
    ben.expect("* cat joined lobby");

    // Broadcast: everyone, the sender included.
    ben.type_line("hello, lobby");
    ann.expect("[lobby] ben: hello, lobby");
    ben.expect("[lobby] ben: hello, lobby");

    // Targeted: only ann gets it, marked private; ben sees his own echo.
    ben.type_line("/to ann psst");
    ben.expect("[lobby] you -> ann: psst");
    ann.expect("[lobby] ben -> you: psst");
    assert_eq!(&next_message(&mut cat).body[..], b"hello, lobby");
    // A public line that reads like the marker is escaped on the wire and shown as
    // public; the marker is corecast-chat's convention, so a body from another client
    // that starts with it looks private.
    ben.type_line("//to ann not private");
    ann.expect("[lobby] ben: /to ann not private");
    assert_eq!(
        &next_message(&mut cat).body[..],
        b"//to ann not private",
        "other clients see the escape"
    );
    cat.send_message("lobby", &[], &b"/to ann looks private"[..])
        .unwrap();
    ann.expect("[lobby] cat -> you: looks private");
    // cat broadcast it: ben got it too, and it reads as addressed to ann.
    ben.expect("[lobby] ben: /to ann not private");
    ben.expect("[lobby] cat -> ann: looks private");
    assert_eq!(&next_message(&mut cat).body[..], b"/to ann looks private");
    // Names the client does not know as members are warned about; with none left,
    // nothing is sent.
    ben.type_line("/to nobody hi");
    assert_eq!(ben.next_line(), "! not in lobby: nobody; nothing sent");
    ben.type_line("/to ann,nobody psst again");
    assert_eq!(ben.next_line(), "! not in lobby: nobody; sent to ann only");
    ben.expect("[lobby] you -> ann: psst again");
    ann.expect("[lobby] ben -> you: psst again");
    // The room's owner is the barrier: had the targeted message reached cat, it would
    // come before the owner's answer to cat's second join.
    assert_no_messages_from(&mut cat, "lobby");
    drop(cat);
    ann.expect("* cat left lobby");
    ben.expect("* cat left lobby");

    ann.type_line("/who");
    ann.expect("* members of lobby: ann, ben");

    // /join switches the current room; the other member hears of it.
    ben.type_line("/join games");
    ben.expect("* joined games (members: ben)");
    ann.type_line("/join games");
    ann.expect("* joined games (members: ann, ben)");
    ben.expect("* ann joined games");
    ann.type_line("gg");
    ben.expect("[games] ann: gg");
    ann.type_line("/who");
    ann.expect("* members of games: ann, ben");

    // /leave: ben falls back to lobby; leaving again is the server's NOT_IN_ROOM.
    ben.type_line("/leave games");
    ben.expect("* left games (now in lobby)");
    ann.expect("* ben left games");
    ben.type_line("/leave games");
    let error = ben.next_line();
    assert!(
        error.starts_with("! error NOT_IN_ROOM: "),
        "expected NOT_IN_ROOM, got {error:?}"
    );
    ben.type_line("back in the lobby");
    ann.expect("[lobby] ben: back in the lobby");
    ben.expect("[lobby] ben: back in the lobby");

    // Local mistakes are explained, not sent.
    ben.type_line("/dance");
    assert_eq!(ben.next_line(), "! unknown command /dance (try /help)");

    // /quit: a clean exit, and the server tells the others.
    ann.type_line("/quit");
    assert!(ann.wait().success(), "ann exits 0 on /quit");
    ben.expect("* ann left lobby");

    // End of input also quits cleanly.
    assert!(ben.finish().success(), "ben exits 0 at end of input");
    server.stop().expect("server stops cleanly");
}

#[test]
fn server_shutdown_is_reported() {
    let server = start();
    let mut ann = Chat::start(server.addr, &["--no-reconnect", "ann"]);
    ann.expect("* joined lobby (members: ann)");
    server.stop().expect("server stops cleanly");
    let name = ErrorCode::ServerShuttingDown.as_str_name();
    let line = ann.next_line();
    assert!(
        line.starts_with(&format!("! error {name}: ")),
        "got {line:?}"
    );
    ann.expect("! disconnected: connection closed by the server");
    assert!(!ann.wait().success(), "a lost connection exits non-zero");
}

#[test]
fn token_is_sent_and_checked() {
    // Parsed like the real command line, so the test does not depend on how the
    // token is stored in `Config`.
    let config = Config::try_parse_from([
        "corecast",
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "2",
        "--shutdown-grace",
        "2",
        "--auth-token",
        "s3cret",
    ])
    .expect("valid flags");
    let server = start_with(config);
    let addr = server.addr;

    let mut ann = Chat::start(addr, &["--token", "s3cret", "ann"]);
    ann.expect("* joined lobby (members: ann)");

    let wrong = Command::new(env!("CARGO_BIN_EXE_corecast-chat"))
        .args(["--addr", &addr.to_string(), "--token", "nope", "ben"])
        .env_remove("CORECAST_AUTH_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("corecast-chat runs");
    assert!(!wrong.status.success(), "a rejected login exits non-zero");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("logging in as ben") && stderr.contains("Unauthorized"),
        "stderr: {stderr}"
    );

    assert!(ann.finish().success());
    server.stop().expect("server stops cleanly");
}

#[test]
fn help_lists_the_commands() {
    let out = Command::new(env!("CARGO_BIN_EXE_corecast-chat"))
        .arg("--help")
        .output()
        .expect("corecast-chat --help runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--addr",
        "--token",
        "NAME",
        "ROOM",
        "/to NAME",
        "/join ROOM",
        "/who",
        "/quit",
        "--no-reconnect",
        "--reconnect-attempts",
        "held and sent once the rooms are rejoined",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

/// Piped input: the line is read only once the first join has been answered, sent,
/// and echoed before the client exits 0 at the end of input. (It used to be handled
/// before the join's answer arrived: "not in a room", exit 0, the line lost.)
#[test]
fn piped_input_is_delivered_before_the_client_exits() {
    let server = start();
    let mut cat = server.login("cat");
    cat.join("lobby", None).unwrap();
    for i in 0..3 {
        let name = format!("ann{i}");
        let mut ann = Chat::start(server.addr, &[&name]);
        // Written and closed at once, before the join can have been answered.
        ann.type_line(&format!("hi from {name}"));
        ann.type_line("/to cat psst");
        ann.close_input();
        let status = ann.wait();
        assert!(status.success(), "{name}: printed {:#?}", ann.seen);
        assert_eq!(
            ann.seen,
            [
                format!("* joined lobby (members: {name}, cat)"),
                format!("[lobby] {name}: hi from {name}"),
                "[lobby] you -> cat: psst".to_string(),
            ]
        );
        let said = next_message(&mut cat);
        assert_eq!(
            (said.sender_id.as_str(), &said.body[..]),
            (name.as_str(), format!("hi from {name}").as_bytes())
        );
        assert_eq!(&next_message(&mut cat).body[..], b"/to cat psst");
    }
    // A line after /join goes to the new room; /quit waits for the echoes too.
    let mut ben = Chat::start(server.addr, &["ben"]);
    ben.type_line("/join games");
    ben.type_line("in games");
    ben.type_line("/join lobby");
    ben.type_line("last words");
    ben.type_line("/quit");
    assert!(ben.wait().success());
    for line in ["[games] ben: in games", "[lobby] ben: last words"] {
        assert!(ben.seen.contains(&line.to_string()), "{:#?}", ben.seen);
    }
    assert_eq!(&next_message(&mut cat).body[..], b"last words");
}

/// Messages the server drops (here: over the rate limit) are never echoed: the client
/// gives up after --quit-wait, says how many, and exits 1.
#[test]
fn unconfirmed_messages_are_reported_at_exit() {
    let server = start_with(Config {
        // Login and join take two of the three tokens: most lines are dropped.
        max_messages_per_second: 3,
        ..common::config()
    });
    let mut ann = Chat::start(server.addr, &["--quit-wait", "1", "ann"]);
    for i in 0..20 {
        ann.type_line(&format!("line {i}"));
    }
    ann.close_input();
    let status = ann.wait();
    assert!(!status.success(), "printed {:#?}", ann.seen);
    assert!(
        ann.seen
            .iter()
            .any(|l| l.starts_with("! error RATE_LIMITED: ")),
        "{:#?}",
        ann.seen
    );
    let last = ann.seen.last().expect("a last line");
    assert!(
        last.starts_with("! quitting with ")
            && last.ends_with(" message(s) not confirmed by the server"),
        "{:#?}",
        ann.seen
    );
}

/// A line whose frame would exceed the server's --max-frame-bytes (65536 by default,
/// the chat client's default too) is refused by the client, and the session goes on;
/// the longest line that fits is delivered.
#[test]
fn an_over_long_line_is_refused_and_the_session_kept() {
    use corecast::proto::{client_message, ClientMessage, SendMessage};
    use prost::Message;
    let frame_len = |body_len: usize| {
        ClientMessage {
            data: Some(client_message::Data::SendMessage(SendMessage {
                target_ids: vec![],
                room_id: "lobby".into(),
                body: vec![b'x'; body_len].into(),
            })),
        }
        .encoded_len()
    };
    let limit = Config::default().max_frame_bytes;
    let longest = (0..limit).rev().find(|&n| frame_len(n) <= limit).unwrap();
    assert!(frame_len(longest + 1) > limit);

    let server = start();
    let mut ann = Chat::joined(server.addr, "ann", "lobby", "ann");
    ann.type_line(&"x".repeat(longest + 1));
    assert_eq!(
        ann.next_line(),
        format!(
            "! line too long: it makes a {}-byte frame, the server takes at most {limit} \
             (--max-frame-bytes); not sent",
            frame_len(longest + 1)
        )
    );
    ann.type_line(&"x".repeat(longest));
    ann.expect(&format!("[lobby] ann: {}", "x".repeat(longest)));
    ann.type_line("still here");
    ann.expect("[lobby] ann: still here");
    assert!(ann.finish().success());
}

/// SERVER_FULL is what the user is told, not "connection closed by the server".
#[test]
fn a_full_server_is_reported() {
    let server = start_with(Config {
        max_connections: Some(1),
        ..common::config()
    });
    let ann = Chat::joined(server.addr, "ann", "lobby", "ann");
    let full = Command::new(env!("CARGO_BIN_EXE_corecast-chat"))
        .args(["--addr", &server.addr.to_string(), "ben"])
        .env_remove("CORECAST_AUTH_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("corecast-chat runs");
    assert!(!full.status.success());
    let stderr = String::from_utf8_lossy(&full.stderr);
    assert!(
        stderr.contains("logging in as ben") && stderr.contains("SERVER_FULL"),
        "stderr: {stderr}"
    );
    assert!(ann.finish().success());
}

/// The split halves the chat client is built on: messages already queued move to the
/// receiving half, sends and receives work from two threads, and `close` unblocks a
/// receiver waiting with no timeout.
#[test]
fn client_split_halves_work() {
    let server = start();
    let addr = server.addr;
    let mut ann = Client::connect(addr).expect("connect");
    ann.login("ann", None).expect("login");
    ann.join("lobby", None).expect("join");
    let mut ben = Client::connect(addr).expect("connect");
    ben.login("ben", None).expect("login");
    ben.join("lobby", None).expect("join");
    // ann's JoinNotification for ben is on its way (maybe already buffered by ann's
    // Client): after the split it must come through the receiving half, first.
    let (mut sender, mut receiver) = ann.split().expect("split");
    let (seen_tx, seen) = mpsc::channel();
    let reader = thread::spawn(move || loop {
        match receiver.recv() {
            Ok(msg) => {
                let _ = seen_tx.send(msg.data.expect("data"));
            }
            Err(e) => return e,
        }
    });
    sender
        .send(corecast::proto::client_message::Data::SendMessage(
            corecast::proto::SendMessage {
                target_ids: vec![],
                room_id: "lobby".into(),
                body: "from the sending half".into(),
            },
        ))
        .expect("send");
    let first = seen.recv_timeout(WAIT).expect("a first message");
    assert!(
        matches!(&first, Data::JoinNotification(n) if n.player_id == "ben"),
        "the queued join notification comes first, got {first:?}"
    );
    let second = seen.recv_timeout(WAIT).expect("a second message");
    assert!(
        matches!(&second, Data::MessageNotification(m) if m.body == "from the sending half"),
        "then ann's own broadcast, got {second:?}"
    );
    assert_eq!(&next_message(&mut ben).body[..], b"from the sending half");
    // The receiver is now blocked with no timeout: close() must wake it.
    sender.close().expect("close");
    let ended = reader.join().expect("reader thread");
    assert!(
        matches!(ended, corecast::client::ClientError::Closed),
        "got {ended:?}"
    );
    drop(ben);
    server.stop().expect("server stops cleanly");
}

/// Quick reconnection for the tests: the first attempt within 50 ms, at most 200 ms
/// between attempts.
const FAST_RECONNECT: [&str; 4] = ["--reconnect-delay", "0.05", "--reconnect-max-delay", "0.2"];

/// `ann` in `lobby` with [`FAST_RECONNECT`], once she has joined it.
fn reconnecting_ann(addr: SocketAddr) -> Chat {
    let mut args = FAST_RECONNECT.to_vec();
    args.extend(["ann", "lobby"]);
    let mut ann = Chat::start(addr, &args);
    ann.expect("* joined lobby (members: ann)");
    ann
}

/// A server; ann in `lobby` through a proxy to it (reconnecting fast), so the test can
/// cut or redirect her connection; then ben in `lobby` on a direct connection.
fn ann_behind_a_proxy_and_ben() -> (TestServer, Proxy, Chat, Client) {
    let server = start();
    let proxy = Proxy::start(server.addr);
    let ann = reconnecting_ann(proxy.addr);
    let mut ben = server.login("ben");
    ben.join("lobby", None).unwrap();
    (server, proxy, ann, ben)
}

/// The `[lobby] ben: ...` bodies printed so far, in order.
fn said_by_ben(chat: &Chat) -> Vec<String> {
    chat.seen
        .iter()
        .filter_map(|l| l.strip_prefix("[lobby] ben: "))
        .map(str::to_string)
        .collect()
}

/// The connection is cut (the server keeps running) while another member keeps
/// talking: the chat client reconnects, resumes, and shows every message it missed,
/// in order and once, then says it recovered them; live messages follow.
#[test]
fn a_dropped_connection_is_resumed_without_losing_a_message() {
    let (_server, proxy, mut ann, mut ben) = ann_behind_a_proxy_and_ben();
    ann.expect("* ben joined lobby");
    ben.send_message("lobby", &[], &b"before"[..]).unwrap();
    assert_eq!(next_message(&mut ben).body, "before");
    ann.expect("[lobby] ben: before");

    // ann cannot come back until the server has taken every message she misses.
    proxy.refuse(true);
    proxy.sever();
    let lost = ann.expect_prefix("* connection lost: ");
    assert!(lost.contains("; reconnecting in "), "{lost}");
    for i in 1..=5 {
        ben.send_message("lobby", &[], format!("missed {i}"))
            .unwrap();
    }
    for i in 1..=5 {
        assert_eq!(next_message(&mut ben).body, format!("missed {i}"));
    }
    proxy.refuse(false);
    ann.expect("* reconnected");
    ann.expect("* room lobby: resumed, 5 missed message(s) recovered");
    for i in 6..=7 {
        ben.send_message("lobby", &[], format!("live {i}")).unwrap();
    }
    ann.expect("[lobby] ben: live 7");
    assert_eq!(
        said_by_ben(&ann),
        [
            "before", "missed 1", "missed 2", "missed 3", "missed 4", "missed 5", "live 6",
            "live 7"
        ],
        "printed {:#?}",
        ann.seen
    );
    // Input works again, in the same room.
    ann.type_line("back");
    ann.expect("[lobby] ann: back");
    assert!(ann.finish().success());
}

/// The server restarted (the room has a new epoch): the chat client reconnects to the
/// new one and says plainly that what was said meanwhile could not be recovered.
#[test]
fn a_restarted_server_is_reported_as_not_recovered() {
    let (first, proxy, mut ann, mut ben) = ann_behind_a_proxy_and_ben();
    ben.send_message("lobby", &[], &b"before the restart"[..])
        .unwrap();
    ann.expect("[lobby] ben: before the restart");
    drop(ben);
    first.stop().expect("first server stops");
    ann.expect_prefix("! error SERVER_SHUTTING_DOWN: ");
    ann.expect_prefix("* connection lost: ");
    // Attempts fail while no server is there (the proxy closes the connection).
    ann.expect_prefix("* reconnecting failed: ");

    let second = start();
    proxy.set_upstream(second.addr);
    ann.expect("* reconnected");
    ann.expect(
        "! room lobby: could not recover what was said while disconnected (the room \
         restarted): messages may be missing",
    );
    ann.type_line("on the new server");
    ann.expect("[lobby] ann: on the new server");
    assert!(ann.finish().success());
}

/// Another login of the same player with replace_existing ends this session with
/// SESSION_REPLACED: corecast-chat says why and exits 1 instead of fighting back.
#[test]
fn a_replaced_session_stops_instead_of_reconnecting() {
    let server = start();
    let mut ann = reconnecting_ann(server.addr);

    let mut other = server.connect();
    other
        .login_with("ann", None, true)
        .expect("replacing login");
    ann.expect_prefix("! error SESSION_REPLACED: ");
    ann.expect(
        "! disconnected: connection closed by the server; not reconnecting: this player \
         logged in on another connection",
    );
    assert!(!ann.wait().success(), "a replaced session exits non-zero");
    assert!(
        !ann.seen
            .iter()
            .any(|l| l.contains("reconnect") && l.starts_with('*')),
        "{:#?}",
        ann.seen
    );
    // The new session keeps the name; the old one left the room.
    let joined = other.join("lobby", None).expect("join");
    assert_eq!(joined.current_players, ["ann"]);
    other.ping(1).expect("still connected");
}

/// With no server to come back to, the client gives up after --reconnect-attempts.
#[test]
fn reconnecting_gives_up_after_the_last_attempt() {
    let server = start();
    let mut args = FAST_RECONNECT.to_vec();
    args.extend(["--reconnect-attempts", "2", "ann"]);
    let mut ann = Chat::start(server.addr, &args);
    ann.expect("* joined lobby (members: ann)");
    server.stop().expect("server stops");
    let first = ann.expect_prefix("* connection lost: ");
    assert!(first.ends_with("(attempt 1 of 2)"), "{first}");
    let second = ann.expect_prefix("* reconnecting failed: ");
    assert!(second.ends_with("(attempt 2 of 2)"), "{second}");
    let last = ann.expect_prefix("! reconnecting failed: ");
    assert!(
        last.ends_with("; giving up after 2 reconnection attempt(s)"),
        "{last}"
    );
    assert!(!ann.wait().success());
}

const JWT_SECRET: &str = "chat-test-secret-of-at-least-32-bytes";

/// A server that verifies HS256 tokens and ends sessions exactly at `exp`.
fn jwt_server() -> TestServer {
    start_with(Config {
        jwt_secret: Some(corecast::config::Secret::new(JWT_SECRET)),
        jwt_leeway: 0,
        ..common::config()
    })
}

/// An HS256 token for `sub`, valid for `ttl` seconds.
fn jwt(sub: &str, ttl: u64) -> String {
    let claims = corecast::auth::Claims {
        sub: sub.into(),
        exp: (corecast::auth::unix_now() + ttl) as f64,
        ..Default::default()
    };
    corecast::auth::Signer::hs256(JWT_SECRET.as_bytes())
        .unwrap()
        .sign(&claims)
        .unwrap()
}

/// Replaces `path`'s contents at once (a reader never sees half a token).
fn write_token(path: &std::path::Path, token: &str) {
    let fresh = path.with_extension("new");
    std::fs::write(&fresh, format!("{token}\n")).unwrap();
    std::fs::rename(fresh, path).unwrap();
}

/// With --token-file, a session whose token expires reconnects with the token the file
/// holds by then, and resumes where it left off.
#[test]
fn an_expired_token_is_renewed_from_the_token_file() {
    let server = jwt_server();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    write_token(&file, &jwt("ann", 2));
    let mut args = FAST_RECONNECT.to_vec();
    args.extend(["--token-file", file.to_str().unwrap(), "ann", "lobby"]);
    let mut ann = Chat::start(server.addr, &args);
    ann.expect("* joined lobby (members: ann)");
    // The backend renews the file before the first token expires.
    write_token(&file, &jwt("ann", 600));
    let mut ben = server.connect();
    ben.login("", Some(&jwt("ben", 600))).unwrap();
    ben.join("lobby", None).unwrap();
    ann.expect("* ben joined lobby");
    ann.expect("! error UNAUTHORIZED: token expired");
    ann.expect("* reconnected");
    ann.expect_prefix("* room lobby: resumed");
    ben.send_message("lobby", &[], &b"still here?"[..]).unwrap();
    ann.expect("[lobby] ben: still here?");
    assert!(ann.finish().success());
}

/// With a token given once (--token), an expired session cannot come back: the client
/// says so and exits non-zero instead of retrying a token the server will refuse.
#[test]
fn an_expired_token_without_a_file_stops_the_client() {
    let server = jwt_server();
    let token = jwt("ann", 1);
    let mut args = FAST_RECONNECT.to_vec();
    args.extend(["--token", &token, "ann", "lobby"]);
    let mut ann = Chat::start(server.addr, &args);
    ann.expect("* joined lobby (members: ann)");
    ann.expect("! error UNAUTHORIZED: token expired");
    ann.expect_prefix("! disconnected: ");
    assert!(
        ann.seen
            .last()
            .unwrap()
            .ends_with("not reconnecting: the server no longer accepts the credentials"),
        "{:#?}",
        ann.seen
    );
    assert!(!ann.wait().success());
    // A token for someone else is refused at login, with the server's reason.
    let mut args = vec!["--token".to_string(), jwt("bob", 60), "ann".into()];
    args.push("lobby".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut ann = Chat::start(server.addr, &args);
    assert!(!ann.wait().success());
}
