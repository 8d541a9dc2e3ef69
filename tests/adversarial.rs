//! Hostile clients against a real server (port 0, two shards, bounded in time). Every
//! test also checks that an unrelated pair of clients keeps exchanging messages in
//! order while the attack goes on.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use corecast::client::{raw_frame, Client, ClientError};
use corecast::config::Config;
use corecast::proto::{client_message, server_message::Data, ErrorCode, JoinRequest};

/// An unrelated pair in a room of its own.
struct Bystanders {
    a: Client,
    b: Client,
    room: String,
    sent: u64,
}

impl Bystanders {
    fn new(server: &TestServer, tag: &str) -> Self {
        let mut a = server.login(&format!("{tag}-a"));
        let mut b = server.login(&format!("{tag}-b"));
        let room = format!("{tag}-room");
        a.join(&room, None).unwrap();
        b.join(&room, None).unwrap();
        Self {
            a,
            b,
            room,
            sent: 0,
        }
    }

    /// A few messages from a to b arrive complete and in order.
    fn check(&mut self) {
        for _ in 0..3 {
            self.sent += 1;
            self.a
                .send_message(&self.room, &[], self.sent.to_be_bytes().to_vec())
                .unwrap();
        }
        for expected in self.sent - 2..=self.sent {
            let m = next_message(&mut self.b);
            assert_eq!(
                m.body.as_ref(),
                expected.to_be_bytes(),
                "bystander message {expected}"
            );
            assert_eq!(m.seq, expected);
        }
    }
}

fn login_frame(player: &[u8]) -> Vec<u8> {
    // ClientMessage{login_request{player_id}}; `player` may be invalid UTF-8.
    let mut inner = vec![0x0a, player.len() as u8];
    inner.extend_from_slice(player);
    let mut payload = vec![0x0a, inner.len() as u8];
    payload.extend(inner);
    raw_frame(&payload).to_vec()
}

#[test]
fn slowloris_trickling_one_byte_at_a_time_is_closed_at_the_frame_deadline() {
    let server = start_with(Config {
        frame_timeout: 1,
        ..config()
    });
    let mut by = Bystanders::new(&server, "by");
    let mut slow = server.connect();
    slow.login("slow", None).unwrap();
    // A frame announcing 100 bytes, then one byte every 100 ms: each byte arrives well
    // within any per-read timeout, but the frame never completes.
    slow.send_raw(&100u32.to_be_bytes()).unwrap();
    let stream = slow.stream().try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut stream = stream;
            // Pacing the attack, not synchronising the test.
            while !stop.load(Ordering::Relaxed) && stream.write_all(&[0x0a]).is_ok() {
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let started = Instant::now();
    by.check();
    assert_error(&mut slow, ErrorCode::BadRequest);
    slow.expect_closed().unwrap();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
    assert!(took < Duration::from_secs(4), "closed after {took:?}");
    by.check();
}

#[test]
fn a_connection_flood_gets_server_full_and_the_count_recovers() {
    let server = start_with(Config {
        max_connections: Some(10),
        ..config()
    });
    let mut by = Bystanders::new(&server, "by");
    let mut admitted = Vec::new();
    let mut refused = 0;
    for i in 0..30 {
        let mut c = server.connect();
        match c.login(&format!("flood-{i}"), None) {
            Ok(()) => admitted.push(c),
            Err(ClientError::Rejected { .. }) => unreachable!("login itself is not refused"),
            Err(_) => {
                // Refused connections got SERVER_FULL, then EOF.
                refused += 1;
            }
        }
    }
    assert_eq!(admitted.len(), 8, "10 slots, 2 taken by the bystanders");
    assert_eq!(refused, 22);
    let mut probe = server.connect();
    assert_error(&mut probe, ErrorCode::ServerFull);
    by.check();
    drop(admitted);
    drop(probe);
    // The slots come back once the server has noticed the closes.
    let back: Vec<Client> = (0..8)
        .map(|i| {
            eventually(Duration::from_secs(5), || {
                let mut c = Client::connect(server.addr).ok()?;
                c.login(&format!("back-{i}"), None).ok().map(|_| c)
            })
        })
        .collect();
    // Each reclaimed slot is a working connection.
    for (i, mut c) in back.into_iter().enumerate() {
        c.ping(i as u64).expect("a reclaimed connection answers");
    }
    by.check();
}

#[test]
fn resets_and_half_closes_mid_frame_are_leaves_and_lose_nothing_complete() {
    let server = start();
    let mut by = Bystanders::new(&server, "by");
    let mut watcher = server.login("watcher");
    watcher.join("hall", None).unwrap();
    let send = raw_frame(&[
        0x22, 0x09, 0x12, 0x04, b'h', b'a', b'l', b'l', 0x1a, 0x01, b'!',
    ])
    .to_vec();
    for (i, how) in ["half-close", "reset", "half-close-after-frame"]
        .into_iter()
        .enumerate()
    {
        let name = format!("p{i}");
        let mut c = server.login(&name);
        c.join("hall", None).unwrap();
        let mut s = c.stream().try_clone().unwrap();
        match how {
            "half-close" => {
                s.write_all(&send[..5]).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
            }
            "reset" => {
                s.write_all(&send[..5]).unwrap();
                socket_reset(&s);
                drop(s);
                drop(c);
            }
            _ => {
                // A complete SendMessage, then half-close: the message is delivered
                // (to the sender too, who still reads), then the connection ends.
                s.write_all(&send).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                let echo = next_message(&mut c);
                assert_eq!(
                    (echo.sender_id.as_str(), echo.body.as_ref()),
                    (name.as_str(), &b"!"[..])
                );
                let seen = next_message(&mut watcher);
                assert_eq!(seen.sender_id, name);
                // Then the server closes, sending it nothing more: its own leave is
                // for the others (a frame after the client's FIN would also make a
                // client that shut down both directions see a reset).
                match c.recv() {
                    Err(ClientError::Closed) => {}
                    other => panic!("{how}: after its echo, only the close; got {other:?}"),
                }
            }
        }
        let left = watcher
            .expect(|d| match d {
                Data::LeaveNotification(n) => Ok(n.player_id),
                other => Err(other),
            })
            .unwrap();
        assert_eq!(left, name, "{how}: the connection's end is a leave");
        by.check();
    }
}

/// A client that sends, then half-closes, still reads its echo, and then only the
/// close: the LeaveNotification its disconnect causes goes to the other members, never
/// to itself. (A frame after its FIN would also reset a client that had shut down
/// both directions: the split-client test saw that as ECONNRESET.) Whether the frame
/// slipped in was a race between the owner's notification and the connection's
/// close, so the check runs many times.
#[test]
fn a_leaving_connection_is_not_told_of_its_own_leave() {
    let server = start();
    let mut watcher = server.login("watcher");
    watcher.join("lobby", None).unwrap();
    for i in 0..30 {
        let name = format!("leaver{i}");
        let mut c = server.login(&name);
        c.join("lobby", None).unwrap();
        c.send_message("lobby", &[], b"bye".to_vec()).unwrap();
        assert_eq!(next_message(&mut c).body.as_ref(), b"bye", "the echo");
        assert_eq!(next_message(&mut watcher).sender_id, name);
        c.stream().shutdown(Shutdown::Write).unwrap();
        match c.recv() {
            Err(ClientError::Closed) => {}
            other => panic!("run {i}: after its echo, only the close; got {other:?}"),
        }
        let left = watcher
            .expect(|d| match d {
                Data::LeaveNotification(n) => Ok(n.player_id),
                other => Err(other),
            })
            .unwrap();
        assert_eq!(left, name, "the others are told");
    }
}

/// Closes with SO_LINGER 0: the kernel sends a reset instead of a FIN.
fn socket_reset(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a valid fd with a correctly sized struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

#[test]
fn a_client_joining_10000_rooms_is_capped_per_connection() {
    let server = start_with(Config {
        max_rooms_per_connection: 100,
        max_messages_per_second: 0,
        ..config()
    });
    let mut by = Bystanders::new(&server, "by");
    let mut greedy = server.login("greedy");
    greedy.set_timeout(Duration::from_secs(20));
    // Pipelined: every join is in flight before any response is read.
    let mut burst = Vec::new();
    for i in 0..10_000 {
        let join = client_message::Data::JoinRequest(JoinRequest {
            room_id: format!("r{i}"),
            room_config: None,
            ..Default::default()
        });
        burst.extend_from_slice(&corecast::frame::encode(&corecast::proto::ClientMessage {
            data: Some(join),
        }));
    }
    greedy.send_raw(&burst).unwrap();
    let (mut ok, mut capped) = (0, 0);
    for _ in 0..10_000 {
        let resp = greedy
            .expect(|d| match d {
                Data::JoinResponse(r) => Ok(r),
                other => Err(other),
            })
            .unwrap();
        match resp.error.unwrap().code() {
            ErrorCode::None => ok += 1,
            ErrorCode::FailedPrecondition => capped += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((ok, capped), (100, 9_900));
    by.check();
    // Leaving frees a slot.
    greedy.leave("r0").unwrap();
    greedy.join("one-more", None).unwrap();
    assert_rejected(greedy.join("too-many", None), ErrorCode::FailedPrecondition);
}

#[test]
fn a_flooding_client_is_rate_limited_and_others_keep_their_order() {
    let server = start_with(Config {
        max_messages_per_second: 200,
        ..config()
    });
    let mut by = Bystanders::new(&server, "by");
    let mut flooder = server.login("flooder");
    let mut victim = server.login("victim");
    flooder.join("flood", None).unwrap();
    victim.join("flood", None).unwrap();
    let mut burst = Vec::new();
    for i in 0..5_000u32 {
        let send = client_message::Data::SendMessage(corecast::proto::SendMessage {
            target_ids: vec![],
            room_id: "flood".into(),
            body: i.to_be_bytes().to_vec().into(),
        });
        burst.extend_from_slice(&corecast::frame::encode(&corecast::proto::ClientMessage {
            data: Some(send),
        }));
    }
    let started = Instant::now();
    flooder.send_raw(&burst).unwrap();
    assert_error(&mut flooder, ErrorCode::RateLimited);
    by.check();
    // What got through is in order, and no more than the burst plus the refill.
    assert_flood_delivered_in_order_and_bounded(&mut flooder, &mut victim, started);
    // A refused join still gets its JoinResponse, with RATE_LIMITED.
    let mut joins = Vec::new();
    for i in 0..400 {
        let join = client_message::Data::JoinRequest(JoinRequest {
            room_id: format!("j{i}"),
            room_config: None,
            ..Default::default()
        });
        joins.extend_from_slice(&corecast::frame::encode(&corecast::proto::ClientMessage {
            data: Some(join),
        }));
    }
    flooder.send_raw(&joins).unwrap();
    let limited = flooder
        .expect(|d| match d {
            Data::JoinResponse(r)
                if r.error
                    .as_ref()
                    .is_some_and(|e| e.code() == ErrorCode::RateLimited) =>
            {
                Ok(r)
            }
            other => Err(other),
        })
        .unwrap();
    assert!(limited.room_id.starts_with('j'));
}

/// The flooder's own LeaveRequest is the barrier: it reaches the room behind every
/// message the flooder got through (a ping to the victim is not one, since the room
/// may live on another shard). The leave is retried while the bucket is empty.
fn assert_flood_delivered_in_order_and_bounded(
    flooder: &mut Client,
    victim: &mut Client,
    started: Instant,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match flooder.leave("flood") {
            Ok(_) => break,
            Err(ClientError::Rejected {
                code: ErrorCode::RateLimited,
                ..
            }) => assert!(Instant::now() < deadline, "the bucket never refilled"),
            Err(e) => panic!("leave failed: {e:?}"),
        }
    }
    // The leave came after the whole burst on the flooder's stream: every message
    // admitted was admitted by now.
    let elapsed = started.elapsed();
    let mut bodies = Vec::new();
    loop {
        match next_data(victim) {
            Data::LeaveNotification(l) if l.player_id == "flooder" => break,
            Data::MessageNotification(m) => {
                bodies.push(u32::from_be_bytes(m.body[..4].try_into().unwrap()))
            }
            _ => {}
        }
    }
    let allowed = 200.0 + 200.0 * elapsed.as_secs_f64() + 1.0;
    assert!(!bodies.is_empty(), "the first burst gets through");
    assert!(
        (bodies.len() as f64) <= allowed,
        "{} delivered, at most {allowed:.0} allowed",
        bodies.len()
    );
    assert!(bodies.windows(2).all(|w| w[0] < w[1]), "in the order sent");
}

#[test]
fn several_slow_consumers_in_one_big_room_are_all_cut_and_readers_get_everything() {
    const MESSAGES: u64 = 400;
    const WINDOW: u64 = 4;
    let server = start_with(Config {
        max_outbound_bytes: 256 * 1024,
        ..config()
    });
    let mut by = Bystanders::new(&server, "by");
    let mut sender = server.login("sender");
    sender.join("big", None).unwrap();
    let slow: Vec<Client> = (0..4)
        .map(|i| {
            let mut c = server.login(&format!("slow-{i}"));
            c.join("big", None).unwrap();
            c
        })
        .collect();
    let readers: Vec<Client> = (0..12)
        .map(|i| {
            let mut r = server.login(&format!("reader-{i}"));
            r.join("big", None).unwrap();
            r
        })
        .collect();
    let readers = PacedReaders::spawn(readers, MESSAGES);
    let mut targets: Vec<String> = (0..4).map(|i| format!("slow-{i}")).collect();
    targets.extend((0..12).map(|i| format!("reader-{i}")));
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    let body = vec![b'b'; 32 * 1024];
    for sent in 0..MESSAGES {
        readers.wait_within(sent, WINDOW);
        sender.send_message("big", &targets, body.clone()).unwrap();
        if sent % 100 == 0 {
            by.check();
        }
    }
    for seqs in readers.join() {
        assert_eq!(seqs, (1..=MESSAGES).collect::<Vec<_>>());
    }
    let mut left: Vec<String> = (0..4)
        .map(|_| {
            sender
                .expect(|d| match d {
                    Data::LeaveNotification(n) if n.player_id.starts_with("slow-") => {
                        Ok(n.player_id)
                    }
                    other => Err(other),
                })
                .unwrap()
        })
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["slow-0", "slow-1", "slow-2", "slow-3"],
        "every slow consumer was cut"
    );
    drop(slow);
    by.check();
}

#[test]
fn invalid_utf8_and_huge_repeated_fields_are_refused_cleanly() {
    let server = start();
    let mut by = Bystanders::new(&server, "by");
    // Invalid UTF-8 in a string field: not a valid ClientMessage.
    let mut c = Client::connect(server.addr).unwrap();
    c.send_raw(&login_frame(&[b'o', 0xff])).unwrap();
    assert_error(&mut c, ErrorCode::BadRequest);
    c.expect_closed().unwrap();
    // 15,000 target ids in one frame (fast path) and twice that via prost's merge path.
    let mut t = server.login("targets");
    t.join("t-room", None).unwrap();
    let mut inner = Vec::new();
    for _ in 0..15_000 {
        inner.extend_from_slice(&[0x0a, 0x00]);
    }
    inner.extend_from_slice(&[0x12, 0x06, b't', b'-', b'r', b'o', b'o', b'm']);
    let mut payload = vec![0x22];
    prost::encoding::encode_varint(inner.len() as u64, &mut payload);
    payload.extend_from_slice(&inner);
    t.send_raw(&raw_frame(&payload)).unwrap();
    assert_error(&mut t, ErrorCode::BadRequest);
    let mut doubled = payload.clone();
    doubled.extend_from_slice(&payload[..]);
    t.send_raw(&raw_frame(&doubled)).unwrap();
    assert_error(&mut t, ErrorCode::BadRequest);
    assert_no_messages(&mut t);
    // Still open and working.
    t.send_message("t-room", &[], "ok").unwrap();
    assert_eq!(next_message(&mut t).body.as_ref(), b"ok");
    by.check();
}

#[test]
fn duplicate_and_unknown_target_ids_deliver_once_to_known_members() {
    let server = start();
    let mut by = Bystanders::new(&server, "by");
    let mut a = server.login("a");
    let mut b = server.login("b");
    a.join("r", None).unwrap();
    b.join("r", None).unwrap();
    let targets: Vec<&str> = ["b"; 50]
        .into_iter()
        .chain(["nobody", "", "a-ghost"])
        .collect();
    a.send_message("r", &targets, "once").unwrap();
    a.send_message("r", &["nobody"], "to no one").unwrap();
    a.send_message("r", &[], "all").unwrap();
    let first = next_message(&mut b);
    assert_eq!((first.seq, first.body.as_ref()), (1, &b"once"[..]));
    assert_eq!(next_message(&mut b).seq, 3, "seq 2 went to no one");
    assert_no_messages(&mut b);
    by.check();
}

#[test]
fn a_connection_that_never_logs_in_is_closed_at_the_login_deadline() {
    let server = start_with(Config {
        login_timeout: 1,
        ..config()
    });
    let mut by = Bystanders::new(&server, "by");
    let mut anon = server.connect();
    anon.set_timeout(Duration::from_secs(5));
    anon.ping(1).unwrap();
    assert_error(&mut anon, ErrorCode::FailedPrecondition);
    anon.expect_closed().unwrap();
    by.check();
}
