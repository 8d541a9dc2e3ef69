//! Writes the committed seed corpus: `cargo run --bin gen_seeds` (from `fuzz/`)
//! rewrites `corpus/frame_decoder/seed-*` and `corpus/session/seed-*`.

use std::fs;
use std::path::Path;

use corecast_fuzz::script::{self, Tiers};
use corecast_fuzz::session_model::{EpochPick, JoinHistory, Op, Payload, Since, Token};

/// `frame_decoder` selector byte for the default 64 KiB maximum.
const MAX_64K: u8 = 6;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    write_all(&root.join("frame_decoder"), &frame_seeds())?;
    write_all(&root.join("session"), &session_seeds())?;
    Ok(())
}

fn write_all(dir: &Path, seeds: &[(&str, Vec<u8>)]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    for (name, bytes) in seeds {
        fs::write(dir.join(format!("seed-{name}")), bytes)?;
    }
    println!("{}: {} seeds", dir.display(), seeds.len());
    Ok(())
}

fn login(player: u8) -> Payload {
    Payload::Login {
        player,
        token: Token::Absent,
        replace: false,
    }
}

fn replace(player: u8) -> Payload {
    Payload::Login {
        player,
        token: Token::Absent,
        replace: true,
    }
}

fn join(room: u8) -> Payload {
    Payload::Join {
        room,
        max_players: None,
        history: None,
    }
}

/// A v1.1 join: resume from `since` with the epoch `epoch`, at most `limit` replayed.
fn resume(room: u8, since: Since, epoch: EpochPick, limit: u32) -> Payload {
    Payload::Join {
        room,
        max_players: None,
        history: Some(JoinHistory {
            since,
            epoch,
            limit,
        }),
    }
}

fn send(room: u8, targets: Vec<u8>, body: &[u8]) -> Payload {
    Payload::Send {
        room,
        targets,
        body: body.to_vec(),
        unknown_field: false,
    }
}

fn framed(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        out.extend((p.len() as u32).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

fn with_max(select: u8, stream: Vec<u8>) -> Vec<u8> {
    let mut out = vec![select];
    out.extend(stream);
    out
}

/// One frame of each request, a stream of all, and malformed streams.
fn frame_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let requests = [
        ("login", login(0).encode()),
        (
            "login-token",
            Payload::Login {
                player: 3,
                token: Token::Right,
                replace: true,
            }
            .encode(),
        ),
        (
            "join",
            Payload::Join {
                room: 3,
                max_players: Some(4),
                history: Some(JoinHistory {
                    since: Since::Seq(7),
                    epoch: EpochPick::Wrong,
                    limit: 50,
                }),
            }
            .encode(),
        ),
        ("leave", Payload::Leave { room: 3 }.encode()),
        ("send", send(3, vec![], b"hello").encode()),
        ("send-targets", send(3, vec![0, 1], b"hi").encode()),
        (
            "send-unknown-field",
            Payload::Send {
                room: 3,
                targets: vec![2],
                body: b"x".to_vec(),
                unknown_field: true,
            }
            .encode(),
        ),
        ("ping", Payload::Ping(300).encode()),
        ("empty", Payload::Empty.encode()),
    ];
    let mut seeds: Vec<(&str, Vec<u8>)> = requests
        .iter()
        .map(|(name, p)| (*name, with_max(MAX_64K, framed(std::slice::from_ref(p)))))
        .collect();
    let all: Vec<Vec<u8>> = requests.iter().map(|(_, p)| p.clone()).collect();
    seeds.push(("all", with_max(MAX_64K, framed(&all))));
    let send = send(3, vec![0], b"body").encode();
    // Two send_message fields: prost merges them, the fast path must defer.
    seeds.push((
        "send-twice",
        with_max(MAX_64K, framed(&[[send.clone(), send.clone()].concat()])),
    ));
    let mut bad_utf8 = send.clone();
    let at = bad_utf8.len() - 6;
    bad_utf8[at] = 0xff;
    seeds.push(("send-bad-utf8", with_max(MAX_64K, framed(&[bad_utf8]))));
    let mut truncated = framed(std::slice::from_ref(&send));
    truncated.pop();
    seeds.push(("truncated", with_max(MAX_64K, truncated)));
    seeds.push(("too-large", with_max(3, framed(&[vec![0; 17]]))));
    seeds.push((
        "huge-header",
        with_max(MAX_64K, u32::MAX.to_be_bytes().to_vec()),
    ));
    // A length-delimited field whose length runs past the payload.
    seeds.push((
        "bad-length",
        with_max(MAX_64K, framed(&[vec![0x22, 0x7f, 0x0a]])),
    ));
    seeds
}

/// Short sessions: the happy path, every error, and a slow consumer.
fn session_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let roomy = Tiers::ROOMY;
    let input = |conn: u8, payloads: Vec<Payload>| Op::Input { conn, payloads };
    let chat = vec![
        Op::Connect,
        Op::Connect,
        input(0, vec![login(0), join(3)]),
        input(1, vec![login(1), join(3), send(3, vec![], b"hello")]),
        input(0, vec![send(3, vec![1], b"to b"), Payload::Ping(7)]),
        input(1, vec![Payload::Leave { room: 3 }]),
        Op::Disconnect(0),
    ];
    let errors = vec![
        Op::Connect,
        input(0, vec![join(3), send(3, vec![], b"x"), Payload::Empty]),
        input(0, vec![login(5), login(7), login(0), login(0)]),
        input(
            0,
            vec![join(5), join(3), join(3), Payload::Leave { room: 2 }],
        ),
        input(
            0,
            vec![
                Payload::Join {
                    room: 2,
                    max_players: Some(1),
                    history: None,
                },
                send(1, vec![], b"y"),
            ],
        ),
        Op::Connect,
        input(
            1,
            vec![
                login(1),
                Payload::Join {
                    room: 2,
                    max_players: Some(2),
                    history: None,
                },
                join(2),
            ],
        ),
        input(1, vec![Payload::Raw(vec![0x22, 0x7f])]),
    ];
    let auth = vec![
        Op::Connect,
        Op::Connect,
        input(
            0,
            vec![Payload::Login {
                player: 0,
                token: Token::Right,
                replace: false,
            }],
        ),
        input(
            1,
            vec![
                Payload::Login {
                    player: 1,
                    token: Token::Wrong,
                    replace: false,
                },
                Payload::Ping(1),
            ],
        ),
        Op::Shutdown,
        Op::Connect,
    ];
    let slow = vec![
        Op::Connect,
        Op::Connect,
        input(0, vec![login(0), join(3)]),
        input(1, vec![login(1), join(3)]),
        input(
            1,
            vec![send(3, vec![], &[b'z'; 250]), send(3, vec![], b"more")],
        ),
        input(0, vec![Payload::Ping(2)]),
    ];
    let too_large = vec![Op::Connect, input(0, vec![Payload::Raw(vec![0x2a; 200])])];
    let limits = vec![
        Op::Connect,
        input(0, vec![login(0), join(3), join(2)]),
        input(
            0,
            vec![
                send(3, vec![0, 1], b"two targets"),
                send(3, vec![0], b"one"),
            ],
        ),
    ];
    // Two clients' requests cross in flight; batches are delivered one by one.
    let racy = vec![
        Op::Connect,
        Op::Connect,
        input(0, vec![login(0), join(3), send(3, vec![], b"early")]),
        input(1, vec![login(1), join(3)]),
        Op::Deliver(0),
        Op::Deliver(1),
        input(
            0,
            vec![send(3, vec![], b"hello"), Payload::Leave { room: 3 }],
        ),
        Op::Deliver(1),
        Op::Disconnect(1),
        Op::Deliver(0),
        Op::Deliver(0),
    ];
    // History: a member goes, messages go on, it comes back and resumes (then with a
    // stale epoch, a wrong one, a limit), the room empties and is kept, then forgotten.
    let history = vec![
        Op::Connect,
        Op::Connect,
        input(0, vec![login(0), join(3), send(3, vec![], b"one")]),
        input(1, vec![login(1), join(3), send(3, vec![0], b"to a")]),
        Op::Disconnect(0),
        input(0, vec![send(3, vec![], b"two"), send(3, vec![1], b"self")]),
        Op::Connect,
        input(
            1,
            vec![
                login(0),
                resume(3, Since::Back(3), EpochPick::Seen, 0),
                resume(2, Since::Seq(0), EpochPick::Empty, 2),
            ],
        ),
        input(
            1,
            vec![
                Payload::Leave { room: 3 },
                resume(3, Since::Seq(1), EpochPick::Wrong, 1),
            ],
        ),
        Op::Disconnect(0),
        Op::Disconnect(0),
        Op::Connect,
        input(
            0,
            vec![login(2), resume(3, Since::Back(0), EpochPick::Seen, 9)],
        ),
        Op::Disconnect(0),
        Op::Expire,
        Op::Connect,
        input(
            0,
            vec![login(2), resume(3, Since::Seq(2), EpochPick::Seen, 9)],
        ),
        input(
            0,
            vec![send(3, vec![], b"new epoch"), Payload::Leave { room: 3 }],
        ),
        input(0, vec![resume(3, Since::Seq(1), EpochPick::Previous, 0)]),
    ];
    // A second login of a player still logged in: ALREADY_LOGGED_IN, then with
    // replace_existing the old session is closed (SESSION_REPLACED) and it succeeds.
    let replaced = vec![
        Op::Connect,
        Op::Connect,
        Op::Connect,
        input(0, vec![login(0), join(3), join(4)]),
        input(1, vec![login(1), join(3)]),
        input(
            2,
            vec![login(0), replace(0), join(3), send(3, vec![], b"back")],
        ),
        input(1, vec![replace(1), Payload::Ping(3)]),
    ];
    vec![
        ("chat", script::write(roomy, &chat)),
        ("history", script::write(Tiers::HISTORY, &history)),
        (
            "history-bounds",
            script::write(
                Tiers {
                    history: 2,
                    history_bytes: 1,
                    history_shard_bytes: 1,
                    ..Tiers::HISTORY
                },
                &history,
            ),
        ),
        (
            "history-two-shards",
            script::write(
                Tiers {
                    two_shards: true,
                    history_ttl: false,
                    ..Tiers::HISTORY
                },
                &history,
            ),
        ),
        ("replace", script::write(Tiers::HISTORY, &replaced)),
        (
            "replace-two-shards",
            script::write(
                Tiers {
                    two_shards: true,
                    ..roomy
                },
                &replaced,
            ),
        ),
        (
            "errors",
            script::write(
                Tiers {
                    room_cap: 1,
                    ..roomy
                },
                &errors,
            ),
        ),
        (
            "auth-shutdown",
            script::write(
                Tiers {
                    auth: true,
                    ..roomy
                },
                &auth,
            ),
        ),
        (
            "slow-consumer",
            script::write(
                Tiers {
                    outbound: 1,
                    ..roomy
                },
                &slow,
            ),
        ),
        (
            "frame-too-large",
            script::write(
                Tiers {
                    frame_max: 1,
                    ..roomy
                },
                &too_large,
            ),
        ),
        (
            "two-shards",
            script::write(
                Tiers {
                    two_shards: true,
                    ..roomy
                },
                &chat,
            ),
        ),
        (
            "two-shards-racy",
            script::write(
                Tiers {
                    two_shards: true,
                    racy: true,
                    ..roomy
                },
                &racy,
            ),
        ),
        (
            "per-connection-limits",
            script::write(
                Tiers {
                    rooms_per_conn: 0,
                    targets: 1,
                    ..roomy
                },
                &limits,
            ),
        ),
    ]
}
