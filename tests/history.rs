//! v1.1 history and resume (PROTOCOL.md "History and resume", "Reconnecting while the
//! old connection still looks alive"), against the real server: epochs, last_seq,
//! resumes that recover and ones that cannot, history_limit, targeted replays, the
//! per-room and per-shard bounds, the TTL of an empty room, and replace_existing.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use corecast::client::{Client, ClientError, JoinHistory};
use corecast::config::Config;
use corecast::proto::{server_message::Data, ErrorCode, JoinResponse};
use corecast::shard::routing::owner_shard;

use common::*;

fn with_shards(shards: usize) -> Config {
    Config {
        shards: Some(shards),
        ..config()
    }
}

fn with_metrics(config: Config) -> Config {
    Config {
        metrics_listen: Some("127.0.0.1:0".into()),
        ..config
    }
}

/// A room id owned by `shard` of `shards`.
fn room_on(shard: usize, shards: usize, tag: &str) -> String {
    (0..)
        .map(|i| format!("{tag}-{i}"))
        .find(|r| owner_shard(r, shards) == shard)
        .unwrap()
}

/// The next `n` message seqs `c` receives (join/leave notifications skipped).
fn seqs(c: &mut Client, n: usize) -> Vec<u64> {
    (0..n).map(|_| next_message(c).seq).collect()
}

/// Every message seq `room` sends `c` until a barrier: a second JoinRequest for a room
/// `c` is in, refused by the room's owner after everything it sent `c` before.
fn replayed(c: &mut Client, room: &str) -> Vec<u64> {
    c.send(corecast::proto::client_message::Data::JoinRequest(
        corecast::proto::JoinRequest {
            room_id: room.into(),
            ..Default::default()
        },
    ))
    .unwrap();
    let mut got = Vec::new();
    loop {
        match next_data(c) {
            Data::JoinResponse(r) if r.room_id == room => {
                let code = r.error.map(|e| e.code());
                assert_eq!(code, Some(ErrorCode::AlreadyJoinedTheRoom), "{room}");
                return got;
            }
            Data::MessageNotification(m) if m.room_id == room => got.push(m.seq),
            _ => {}
        }
    }
}

fn resume(c: &mut Client, room: &str, epoch: &str, seq: u64) -> JoinResponse {
    c.join_with(room, None, &JoinHistory::resume(epoch, seq))
        .expect("resume join")
}

fn scrape(server: &TestServer) -> String {
    http_get(server.server().metrics_addr().unwrap(), "/metrics").1
}

/// Sum of a per-shard gauge.
fn gauge(scrape: &str, name: &str) -> f64 {
    (0..4)
        .map(|s| format!("{name}{{shard=\"{s}\"}}"))
        .filter(|series| scrape.contains(&format!("{series} ")))
        .map(|series| metric(scrape, &series))
        .sum()
}

#[test]
fn every_join_tells_the_rooms_epoch_and_last_seq_and_a_v1_join_replays_nothing() {
    let server = start();
    let mut a = server.login("a");
    let first = a.join("lobby", None).unwrap();
    assert!(!first.epoch.is_empty() && first.epoch.len() <= 32);
    assert_eq!((first.last_seq, first.recovered), (0, false));
    for i in 0..3 {
        a.send_message("lobby", &[], format!("m{i}")).unwrap();
    }
    assert_eq!(seqs(&mut a, 3), vec![1, 2, 3]);
    let mut b = server.login("b");
    let second = b.join("lobby", None).unwrap();
    assert_eq!(second.epoch, first.epoch, "one room, one epoch");
    assert_eq!((second.last_seq, second.recovered), (3, false));
    assert_no_messages_from(&mut b, "lobby");
}

/// A member drops at seq `k`; while it is away and while it rejoins, another member
/// keeps talking. The resume gives exactly k+1.. in order, then live traffic with no
/// gap and no duplicate: for rooms owned by each shard (so one of them is on another
/// shard than the joiner, whichever shard accepted it).
fn resume_is_gap_free_against_live_traffic(shards: usize) {
    const TOTAL: u64 = 400;
    let server = start_with(Config {
        history_messages: 1000,
        ..with_shards(shards)
    });
    for owner in 0..shards {
        let room = room_on(owner, shards, &format!("resume{shards}"));
        let mut talker = server.login(&format!("talker-{owner}"));
        talker.join(&room, None).unwrap();
        let mut b = server.login(&format!("b-{owner}"));
        let joined = b.join(&room, None).unwrap();
        for i in 0..5 {
            talker.send_message(&room, &[], format!("{i}")).unwrap();
        }
        assert_eq!(seqs(&mut b, 5), vec![1, 2, 3, 4, 5]);
        drop(b);
        // Meanwhile: the rest, sent from another thread while `b` comes back.
        let sender = {
            let room = room.clone();
            thread::spawn(move || {
                for i in 5..TOTAL {
                    talker.send_message(&room, &[], format!("{i}")).unwrap();
                }
                talker
            })
        };
        // The old session must be gone before the id is free: wait for it.
        let mut b = eventually(Duration::from_secs(5), || {
            let mut c = server.connect();
            c.login(&format!("b-{owner}"), None).ok().map(|_| c)
        });
        let resumed = resume(&mut b, &room, &joined.epoch, 5);
        assert_eq!(resumed.epoch, joined.epoch);
        assert!(resumed.recovered, "{resumed:?}");
        let last = resumed.last_seq;
        assert!((5..=TOTAL).contains(&last));
        b.set_timeout(Duration::from_secs(20));
        let got = seqs(&mut b, (TOTAL - 5) as usize);
        let want: Vec<u64> = (6..=TOTAL).collect();
        assert_eq!(got, want, "room owned by shard {owner}: replay then live");
        let mut talker = sender.join().unwrap();
        assert_eq!(seqs(&mut talker, TOTAL as usize).last(), Some(&TOTAL));
        assert_no_messages_from(&mut b, &room);
    }
}

#[test]
fn a_resume_is_gap_free_against_live_traffic_on_one_shard() {
    resume_is_gap_free_against_live_traffic(1);
}

#[test]
fn a_resume_is_gap_free_against_live_traffic_on_two_shards() {
    resume_is_gap_free_against_live_traffic(2);
}

#[test]
fn history_that_no_longer_reaches_back_is_not_recovered() {
    let server = start_with(Config {
        history_messages: 5,
        ..config()
    });
    let mut a = server.login("a");
    let epoch = a.join("r", None).unwrap().epoch;
    let mut b = server.login("b");
    b.join("r", None).unwrap();
    for i in 0..2 {
        a.send_message("r", &[], format!("{i}")).unwrap();
    }
    assert_eq!(seqs(&mut b, 2), vec![1, 2]);
    b.leave("r").unwrap();
    for i in 2..12 {
        a.send_message("r", &[], format!("{i}")).unwrap();
    }
    assert_eq!(seqs(&mut a, 12).last(), Some(&12));
    let resumed = resume(&mut b, "r", &epoch, 2);
    assert_eq!((resumed.last_seq, resumed.recovered), (12, false));
    assert_eq!(
        seqs(&mut b, 5),
        vec![8, 9, 10, 11, 12],
        "what is still kept"
    );
    assert_no_messages_from(&mut b, "r");
    // Within the kept range it is a full recovery.
    b.leave("r").unwrap();
    let resumed = resume(&mut b, "r", &epoch, 9);
    assert!(resumed.recovered);
    assert_eq!(seqs(&mut b, 3), vec![10, 11, 12]);
}

#[test]
fn a_byte_bound_per_room_evicts_the_oldest() {
    let server = start_with(Config {
        history_bytes: 1000,
        ..config()
    });
    let mut a = server.login("a");
    let epoch = a.join("r", None).unwrap().epoch;
    for _ in 0..10 {
        a.send_message("r", &[], vec![b'x'; 300]).unwrap();
    }
    assert_eq!(seqs(&mut a, 10).last(), Some(&10));
    let mut b = server.login("b");
    let resumed = resume(&mut b, "r", &epoch, 1);
    assert!(!resumed.recovered);
    // Each frame is a little over 300 bytes: three fit in 1000.
    assert_eq!(seqs(&mut b, 3), vec![8, 9, 10]);
    assert_no_messages_from(&mut b, "r");
}

#[test]
fn a_shard_byte_bound_evicts_the_shards_oldest_whatever_the_room() {
    let server = start_with(with_metrics(Config {
        shards: Some(1),
        history_shard_bytes: 4000,
        ..config()
    }));
    let mut a = server.login("a");
    let old_epoch = a.join("old", None).unwrap().epoch;
    a.join("new", None).unwrap();
    for _ in 0..5 {
        a.send_message("old", &[], vec![b'o'; 500]).unwrap();
    }
    for _ in 0..6 {
        a.send_message("new", &[], vec![b'n'; 500]).unwrap();
    }
    assert_eq!(seqs(&mut a, 11).len(), 11);
    let text = scrape(&server);
    let bytes = gauge(&text, "corecast_history_bytes");
    assert!(bytes > 0.0 && bytes <= 4000.0, "{bytes}");
    let mut b = server.login("b");
    let resumed = resume(&mut b, "old", &old_epoch, 1);
    assert!(
        !resumed.recovered,
        "room 'old' lost its oldest to room 'new'"
    );
    let kept = replayed(&mut b, "old");
    // Eleven frames of ~515 bytes in 4000: the newest seven are kept, from both rooms.
    assert_eq!(kept, vec![5], "old's 1-4 went first");
    let mut c = server.login("c");
    c.join_with("new", None, &JoinHistory::last(100)).unwrap();
    assert_eq!(replayed(&mut c, "new"), vec![1, 2, 3, 4, 5, 6]);
    let text = scrape(&server);
    assert_eq!(metric(&text, "corecast_history_replays_total"), 2.0);
    assert_eq!(
        metric(&text, "corecast_history_replayed_messages_total"),
        7.0
    );
    assert_eq!(metric(&text, "corecast_resumes_not_recovered_total"), 1.0);
    assert_eq!(gauge(&text, "corecast_history_messages"), 7.0);
}

#[test]
fn another_epoch_is_not_recovered_and_history_limit_replays_the_last_n() {
    let server = start();
    let mut a = server.login("a");
    a.join("r", None).unwrap();
    for i in 0..6 {
        a.send_message("r", &[], format!("{i}")).unwrap();
    }
    assert_eq!(seqs(&mut a, 6).last(), Some(&6));
    let mut b = server.login("b");
    let resumed = resume(&mut b, "r", "not-the-epoch", 3);
    assert_eq!((resumed.recovered, resumed.last_seq), (false, 6));
    assert_no_messages_from(&mut b, "r");
    b.leave("r").unwrap();
    let joined = b.join_with("r", None, &JoinHistory::last(2)).unwrap();
    assert!(!joined.recovered, "not a resume");
    assert_eq!(seqs(&mut b, 2), vec![5, 6]);
    assert_no_messages_from(&mut b, "r");
    // A resume the limit cuts short is not a recovery.
    b.leave("r").unwrap();
    let history = JoinHistory {
        since: Some((joined.epoch.clone(), 1)),
        limit: 3,
    };
    let cut = b.join_with("r", None, &history).unwrap();
    assert!(!cut.recovered);
    assert_eq!(seqs(&mut b, 3), vec![4, 5, 6]);
}

#[test]
fn targeted_messages_are_replayed_only_to_their_sender_and_targets() {
    let server = start();
    let mut clients: Vec<Client> = ["a", "b", "c"].iter().map(|p| server.login(p)).collect();
    let epoch = clients
        .iter_mut()
        .map(|c| c.join("r", None).unwrap().epoch)
        .last()
        .unwrap();
    clients[0].send_message("r", &[], "all").unwrap();
    clients[0].send_message("r", &["b"], "to b").unwrap();
    clients[0].send_message("r", &[], "all again").unwrap();
    for (c, live) in clients.iter_mut().zip([2, 3, 2]) {
        let _ = seqs(c, live);
    }
    // Everyone leaves, then resumes from the start.
    let mut seen = Vec::new();
    for (c, player) in clients.iter_mut().zip(["a", "b", "c"]) {
        c.leave("r").unwrap();
        assert!(resume(c, "r", &epoch, 1).recovered);
        let n = if player == "c" { 1 } else { 2 };
        let got: Vec<_> = (0..n)
            .map(|_| String::from_utf8(next_message(c).body.to_vec()).unwrap())
            .collect();
        assert_no_messages_from(c, "r");
        seen.push(got);
    }
    assert_eq!(seen[0], vec!["to b", "all again"], "the sender");
    assert_eq!(seen[1], vec!["to b", "all again"], "the target");
    assert_eq!(seen[2], vec!["all again"], "not addressed: not replayed");
    let mut d = server.login("d");
    d.join_with("r", None, &JoinHistory::last(10)).unwrap();
    let got: Vec<_> = (0..2).map(|_| next_message(&mut d).seq).collect();
    assert_eq!(got, vec![1, 3]);
    assert_no_messages_from(&mut d, "r");
}

#[test]
fn an_empty_room_keeps_its_epoch_for_the_ttl_and_starts_afresh_after() {
    let server = start_with(with_metrics(Config {
        history_ttl: 1,
        ..config()
    }));
    let mut a = server.login("a");
    let epoch = a.join("r", None).unwrap().epoch;
    a.send_message("r", &[], "kept").unwrap();
    assert_eq!(next_message(&mut a).seq, 1);
    a.leave("r").unwrap();
    // Within the TTL: the same room, numbering and history.
    let back = resume(&mut a, "r", &epoch, 1);
    assert_eq!(
        (back.epoch.as_str(), back.last_seq, back.recovered),
        (epoch.as_str(), 1, true)
    );
    a.send_message("r", &[], "second").unwrap();
    assert_eq!(next_message(&mut a).seq, 2);
    a.leave("r").unwrap();
    // The room is forgotten once the TTL has run out (the sweep frees its memory).
    eventually(Duration::from_secs(10), || {
        let text = scrape(&server);
        (gauge(&text, "corecast_rooms") == 0.0 && gauge(&text, "corecast_history_bytes") == 0.0)
            .then_some(())
    });
    let fresh = resume(&mut a, "r", &epoch, 2);
    assert_ne!(fresh.epoch, epoch, "a new room, a new epoch");
    assert_eq!((fresh.last_seq, fresh.recovered), (0, false));
    assert_no_messages_from(&mut a, "r");
    a.send_message("r", &[], "new").unwrap();
    assert_eq!(next_message(&mut a).seq, 1, "seq counts within the epoch");
}

#[test]
fn with_history_off_nothing_is_kept_and_empty_rooms_go_at_once() {
    let server = start_with(with_metrics(Config {
        history_messages: 0,
        ..config()
    }));
    let mut a = server.login("a");
    let epoch = a.join("r", None).unwrap().epoch;
    let mut b = server.login("b");
    b.join("r", None).unwrap();
    a.send_message("r", &[], "1").unwrap();
    assert_eq!(next_message(&mut b).seq, 1);
    b.leave("r").unwrap();
    a.send_message("r", &[], "2").unwrap();
    assert_eq!(seqs(&mut a, 2), vec![1, 2]);
    let resumed = resume(&mut b, "r", &epoch, 1);
    assert!(!resumed.recovered, "seq 2 is not kept");
    assert_no_messages_from(&mut b, "r");
    // Nothing missed is still a recovery.
    b.leave("r").unwrap();
    assert!(resume(&mut b, "r", &epoch, 2).recovered);
    let text = scrape(&server);
    assert_eq!(gauge(&text, "corecast_history_messages"), 0.0);
    assert_eq!(metric(&text, "corecast_resumes_recovered_total"), 1.0);
    assert_eq!(metric(&text, "corecast_resumes_not_recovered_total"), 1.0);
    assert_eq!(metric(&text, "corecast_history_replays_total"), 0.0);
    b.leave("r").unwrap();
    a.leave("r").unwrap();
    assert_ne!(
        a.join("r", None).unwrap().epoch,
        epoch,
        "forgotten when empty"
    );
}

#[test]
fn replace_existing_closes_the_old_session_and_the_new_one_takes_its_place() {
    let server = start_with(with_metrics(config()));
    let mut watcher = server.login("watcher");
    watcher.join("r", None).unwrap();
    let mut old = server.login("p");
    old.join("r", None).unwrap();
    // Without replace_existing the v1 rule stands.
    let mut refused = server.connect();
    assert_rejected(refused.login("p", None), ErrorCode::AlreadyLoggedIn);
    let mut new = server.connect();
    new.login_with("p", None, true).unwrap();
    assert_error(&mut old, ErrorCode::SessionReplaced);
    old.expect_closed().unwrap();
    // The old session has left the room already: the new one joins at once.
    new.join("r", None).unwrap();
    let events: Vec<_> = (0..3)
        .map(|_| match next_data(&mut watcher) {
            Data::JoinNotification(n) => ("join", n.player_id),
            Data::LeaveNotification(n) => ("leave", n.player_id),
            other => panic!("{other:?}"),
        })
        .collect();
    let join_p = ("join", "p".to_string());
    let leave_p = ("leave", "p".to_string());
    assert_eq!(events, vec![join_p.clone(), leave_p, join_p]);
    let text = scrape(&server);
    assert_eq!(
        metric(
            &text,
            "corecast_disconnects_total{reason=\"session_replaced\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "corecast_disconnects_total{reason=\"slow_consumer\"}"
        ),
        0.0
    );
}

/// replace_existing racing a live session that keeps sending, across two shards: the
/// new login always wins, the old session always ends with SESSION_REPLACED, and the
/// new session's join never finds the old one still in the room.
#[test]
fn replace_existing_racing_a_live_session_always_hands_over_cleanly() {
    let server = start_with(with_shards(2));
    let rooms: Vec<String> = (0..2).map(|s| room_on(s, 2, "race")).collect();
    let mut current = server.login("p");
    for room in &rooms {
        current.join(room, None).unwrap();
    }
    for round in 0..20 {
        let stop = Arc::new(AtomicBool::new(false));
        let chatter = {
            let stop = stop.clone();
            let rooms = rooms.clone();
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if current
                        .send_message(&rooms[(n % 2) as usize], &[], "x")
                        .is_err()
                    {
                        break;
                    }
                    n += 1;
                    if n.is_multiple_of(64) {
                        thread::yield_now();
                    }
                }
                // Drain until the server closes us: SESSION_REPLACED must be among it.
                let mut replaced = false;
                loop {
                    match current.recv() {
                        Ok(m) => {
                            if let Some(Data::Error(e)) = m.data {
                                replaced |= e.code() == ErrorCode::SessionReplaced;
                            }
                        }
                        Err(ClientError::ClosedAfterError { code, .. }) => {
                            replaced |= code == ErrorCode::SessionReplaced;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                replaced
            })
        };
        let mut next = server.connect();
        next.login_with("p", None, true)
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        for room in &rooms {
            next.join(room, None)
                .unwrap_or_else(|e| panic!("round {round}, {room}: {e:?}"));
        }
        stop.store(true, Ordering::Relaxed);
        assert!(
            chatter.join().unwrap(),
            "round {round}: the old session was told"
        );
        current = next;
    }
}
