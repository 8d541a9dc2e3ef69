//! Micro-benchmarks of the server's hot pure code, no sockets and no executor:
//!
//! 1. decode: `frame::next_frame` + `request::decode_request` on one framed
//!    `SendMessage` (8-byte room id, 128-byte body, no targets; the zero-copy view)
//!    and on one framed `Ping` (the prost path);
//! 2. encode: `response::message_notification`, the one shared broadcast frame;
//! 3. fan-out to N = 1, 10, 100, 1000 local members: `ShardState::handle_batch` with
//!    `ToMembers(Deliver)` messages for a room whose members joined through
//!    `ToMembers(Joined)` (the real member-side path), and, as a baseline, a bare loop
//!    of `ConnShared::push` over the same connections;
//! 4. the owner's send: `ShardState::send` (check membership, number, encode once,
//!    retain, hand to the one local member) with history off (`--history-messages 0`)
//!    and on (the defaults: 100 messages, 256 KiB per room, so every send also evicts
//!    the oldest), measured alternately, off then on, three times each;
//! 5. the JWT publish check on the send path (`Grants::may_publish`) against 1 to 1000
//!    exact ids or `prefix*` patterns;
//! 6. verifying one login token (`Verifier::verify`: signature and claims) with HS256,
//!    ES256, EdDSA and RS256 keys made at start.
//!
//! Each case warms up, sizes a batch of iterations to take about 8 ms, then times 31
//! such batches and prints the median and the minimum per operation. Fan-out drains
//! every queue after each chunk of 32 deliveries, outside the timed region, so the
//! queues stay short and far below `--max-outbound-bytes`.
//!
//! Run: `cargo bench --bench hotpath` (a few seconds), or
//! `cargo bench --bench hotpath -- --quick` (or `CORECAST_BENCH_QUICK=1`) for a short
//! smoke run. Without cargo bench's `--bench` flag (as under `cargo test --benches`)
//! the quick version runs.

use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use corecast::config::{Config, DEFAULT_MAX_OUTBOUND_BYTES, DEFAULT_MAX_ROOM_MEMBERS};
use corecast::frame::{self, DEFAULT_MAX_FRAME_BYTES};
use corecast::notify::LocalNotify;
use corecast::proto::{client_message::Data, ClientMessage, Ping, SendMessage};
use corecast::request::{decode_request, Request};
use corecast::response;
use corecast::shard::history::{HistoryLimits, ReplayRequest};
use corecast::shard::members::ConnShared;
use corecast::shard::messages::{MemberEvent, RoomKey, ShardMessage};
use corecast::shard::{ShardLimits, ShardState};

const ROOM_ID: &str = "room-042";
const SENDER_ID: &str = "player-0042";
const BODY_LEN: usize = 128;
const ROOM_KEY: RoomKey = 1;
const FAN_OUT_SIZES: [usize; 4] = [1, 10, 100, 1000];
/// Deliveries between two drains of the outbound queues.
const CHUNK: u64 = 32;

/// How long and how often each case is measured.
struct Settings {
    samples: usize,
    target: Duration,
    warmup: Duration,
}

const FULL: Settings = Settings {
    samples: 31,
    target: Duration::from_millis(8),
    warmup: Duration::from_millis(100),
};

const QUICK: Settings = Settings {
    samples: 5,
    target: Duration::from_micros(500),
    warmup: Duration::from_millis(5),
};

/// Per-operation times of one case.
struct Stats {
    iters: u64,
    median_ns: f64,
    min_ns: f64,
}

/// Measures `run(iters)`, which performs `iters` operations and returns the time
/// they took (so setup or cleanup inside it can stay untimed).
fn measure(settings: &Settings, mut run: impl FnMut(u64) -> Duration) -> Stats {
    // Warm up and calibrate: double until a batch takes a quarter of the target,
    // keep going until the warm-up time is over, then scale to the target.
    let started = Instant::now();
    let mut iters = 1u64;
    let mut took = run(iters);
    while took < settings.target / 4 || started.elapsed() < settings.warmup {
        if took < settings.target / 4 {
            iters *= 2;
        }
        took = run(iters);
    }
    let scaled = iters as u128 * settings.target.as_nanos() / took.as_nanos().max(1);
    let iters = u64::try_from(scaled).unwrap_or(u64::MAX).max(1);

    let mut per_op: Vec<f64> = (0..settings.samples)
        .map(|_| run(iters).as_nanos() as f64 / iters as f64)
        .collect();
    per_op.sort_by(f64::total_cmp);
    Stats {
        iters,
        median_ns: per_op[per_op.len() / 2],
        min_ns: per_op[0],
    }
}

/// Times `iters` calls of `op`, all inside the timed region.
fn timed<T>(mut op: impl FnMut() -> T) -> impl FnMut(u64) -> Duration {
    move |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(op());
        }
        start.elapsed()
    }
}

/// One table row; `members` adds the per-member column.
fn row(name: &str, stats: &Stats, members: Option<usize>) {
    let per_member = match members {
        Some(n) => format!("{:>12.2}", stats.median_ns / n as f64),
        None => format!("{:>12}", "-"),
    };
    println!(
        "{name:<40} {:>10} {:>12.1} {:>12.1} {per_member}",
        stats.iters, stats.median_ns, stats.min_ns
    );
}

fn client_frame(data: Data) -> Bytes {
    frame::encode(&ClientMessage { data: Some(data) })
}

/// The per-request work of a connection's reader: find the frame, decode it.
fn decode_one(buf: &[u8]) -> Result<Request<'_>, prost::DecodeError> {
    match frame::next_frame(buf, DEFAULT_MAX_FRAME_BYTES) {
        Ok(Some(range)) => decode_request(&buf[range]),
        other => panic!("not one whole frame: {other:?}"),
    }
}

/// A single-shard state whose `n` connections are all local members of `ROOM_KEY`.
fn shard_with_members(n: usize) -> (ShardState, Vec<Rc<ConnShared>>) {
    let limits = ShardLimits {
        max_room_members: DEFAULT_MAX_ROOM_MEMBERS,
        max_outbound_bytes: DEFAULT_MAX_OUTBOUND_BYTES,
        max_shard_outbound_bytes: usize::MAX,
        close_grace: Duration::from_secs(1),
        history: corecast::shard::history::HistoryLimits::OFF,
    };
    let mut state = ShardState::new(0, 1, limits, Rc::new(LocalNotify::default()));
    let conns: Vec<Rc<ConnShared>> = (0..n).map(|_| state.register()).collect();
    // What the owner sends after accepting each join: index the member, reply.
    let joined = response::join(ROOM_ID, std::iter::empty(), None, response::ok());
    let batch = conns
        .iter()
        .map(|c| {
            ShardMessage::ToMembers(MemberEvent::Joined {
                conn: c.id,
                room: ROOM_KEY,
                frame: joined.clone(),
                replay: Vec::new(),
            })
        })
        .collect();
    state.handle_batch(batch);
    drain(&conns);
    (state, conns)
}

/// A single-shard state with `history`, whose one connection has joined `ROOM_ID`
/// through the owner (so `ShardState::send` finds it a member).
fn owner_with_sender(history: HistoryLimits) -> (ShardState, Rc<ConnShared>) {
    let limits = ShardLimits {
        max_room_members: DEFAULT_MAX_ROOM_MEMBERS,
        max_outbound_bytes: DEFAULT_MAX_OUTBOUND_BYTES,
        max_shard_outbound_bytes: usize::MAX,
        close_grace: Duration::from_secs(1),
        history,
    };
    let mut state = ShardState::new(0, 1, limits, Rc::new(LocalNotify::default()));
    let conn = state.register();
    state.join(
        &conn,
        SENDER_ID.into(),
        ROOM_ID.into(),
        None,
        ReplayRequest::default(),
    );
    drain(std::slice::from_ref(&conn));
    (state, conn)
}

/// What the writers do, in short: every queued byte counts as written.
fn drain(conns: &[Rc<ConnShared>]) {
    for conn in conns {
        assert!(!conn.out.is_closing(), "a queue hit its byte limit");
        conn.out.consume(conn.out.queued_bytes());
    }
}

/// Times `iters` deliveries, `CHUNK` at a time, draining the queues untimed between.
fn fan_out<'a>(
    conns: &'a [Rc<ConnShared>],
    mut deliver: impl FnMut(u64) -> Duration + 'a,
) -> impl FnMut(u64) -> Duration + 'a {
    move |iters| {
        let mut took = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min(CHUNK);
            took += deliver(n);
            drain(conns);
            left -= n;
        }
        took
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick")
        || std::env::var_os("CORECAST_BENCH_QUICK").is_some()
        || !args.iter().any(|a| a == "--bench");
    let settings = if quick { &QUICK } else { &FULL };
    let started = Instant::now();

    println!(
        "corecast hot path: {} samples of ~{:?} each{}",
        settings.samples,
        settings.target,
        if quick { " (quick)" } else { "" }
    );
    println!(
        "{:<40} {:>10} {:>12} {:>12} {:>12}",
        "case", "iters", "median ns", "min ns", "ns/member"
    );

    // 1. Decode.
    let body = vec![0x5a_u8; BODY_LEN];
    let send = client_frame(Data::SendMessage(SendMessage {
        target_ids: Vec::new(),
        room_id: ROOM_ID.into(),
        body: body.clone().into(),
    }));
    assert!(matches!(decode_one(&send), Ok(Request::Send(_))));
    let stats = measure(settings, timed(|| decode_one(black_box(&send)).is_ok()));
    row(
        &format!("decode SendMessage ({} B frame)", send.len()),
        &stats,
        None,
    );

    let ping = client_frame(Data::Ping(Ping { nonce: 123_456_789 }));
    assert!(matches!(decode_one(&ping), Ok(Request::Message(_))));
    let stats = measure(settings, timed(|| decode_one(black_box(&ping)).is_ok()));
    row(
        &format!("decode Ping ({} B frame)", ping.len()),
        &stats,
        None,
    );

    // 2. Encode the broadcast frame (seq 1000: a two-byte varint).
    let encode = || {
        response::message_notification(
            black_box(SENDER_ID),
            black_box(ROOM_ID),
            black_box(&body),
            black_box(1000),
        )
    };
    let frame = encode();
    let stats = measure(settings, timed(encode));
    row(
        &format!("encode MessageNotification ({} B)", frame.len()),
        &stats,
        None,
    );

    // 3. Fan-out of the shared frame.
    for n in FAN_OUT_SIZES {
        let (mut state, conns) = shard_with_members(n);
        // A batch of Deliver messages, built untimed, as the owner's flusher sends it.
        let deliver = |count: u64| {
            let batch = (0..count)
                .map(|_| {
                    ShardMessage::ToMembers(MemberEvent::Deliver {
                        room: ROOM_KEY,
                        frame: frame.clone(),
                    })
                })
                .collect();
            let start = Instant::now();
            black_box(state.handle_batch(batch));
            start.elapsed()
        };
        let stats = measure(settings, fan_out(&conns, deliver));
        row(&format!("fan-out shard Deliver, N={n}"), &stats, Some(n));

        let push = |count: u64| {
            let start = Instant::now();
            for _ in 0..count {
                for conn in &conns {
                    black_box(conn.push(&frame));
                }
            }
            start.elapsed()
        };
        let stats = measure(settings, fan_out(&conns, push));
        row(&format!("fan-out ConnShared::push, N={n}"), &stats, Some(n));
    }

    // 4. The owner's send, history off and on, alternately.
    let player: std::sync::Arc<str> = SENDER_ID.into();
    let payload = send.slice(frame::HEADER_LEN..);
    let Ok(Request::Send(view)) = decode_request(&payload) else {
        unreachable!("decoded above");
    };
    for round in 0..3 {
        for (name, history) in [
            ("off", HistoryLimits::OFF),
            ("on", Config::default().history()),
        ] {
            let (mut state, conn) = owner_with_sender(history);
            let conns = [conn];
            let send_n = |count: u64| {
                let start = Instant::now();
                for _ in 0..count {
                    state.send(&conns[0], &player, black_box(&view), &payload);
                }
                start.elapsed()
            };
            let stats = measure(settings, fan_out(&conns, send_n));
            row(
                &format!("owner send, history {name} (#{})", round + 1),
                &stats,
                None,
            );
        }
    }

    // 5. A token's publish claim, checked on every send (JWT on): one hash lookup and
    //    one trie walk, whatever the number of patterns.
    for n in [1usize, 10, 100, 1000] {
        let exact: Vec<String> = (0..n).map(|i| format!("room-{i:03}x")).collect();
        let prefixes: Vec<String> = (0..n).map(|i| format!("match-{i:04}-*")).collect();
        for (kind, patterns, room) in [
            ("exact", &exact, format!("room-{:03}x", n - 1)),
            ("prefix", &prefixes, format!("match-{:04}-game", n - 1)),
        ] {
            let grants = corecast::auth::Grants::compile(None, Some(patterns.as_slice()));
            assert!(grants.may_publish(&room) && !grants.may_publish("elsewhere"));
            let stats = measure(
                settings,
                timed(|| grants.may_publish(black_box(room.as_str()))),
            );
            row(&format!("publish check, {n} {kind} patterns"), &stats, None);
        }
    }

    // 6. Verifying a login's token, per algorithm (keys made now; RSA by openssl).
    for (name, signer, verifier) in token_keys() {
        let claims = corecast::auth::Claims {
            sub: SENDER_ID.into(),
            exp: (corecast::auth::unix_now() + 3600) as f64,
            rooms: Some(vec!["lobby".into(), "match-*".into()]),
            ..Default::default()
        };
        let token = signer.sign(&claims).unwrap();
        let now = corecast::auth::unix_now();
        assert!(verifier.verify(&token, now).is_ok());
        let stats = measure(
            settings,
            timed(|| verifier.verify(black_box(&token), now).is_ok()),
        );
        row(&format!("verify login token, {name}"), &stats, None);
    }

    println!("total {:.1} s", started.elapsed().as_secs_f64());
}

/// (name, signer, verifier) for HS256, ES256 and EdDSA, and RS256 when the openssl
/// command is there to make the RSA key (ring cannot).
fn token_keys() -> Vec<(
    &'static str,
    corecast::auth::Signer,
    corecast::auth::Verifier,
)> {
    use corecast::auth::{Expect, Signer, Verifier};
    let secret = [7u8; 32];
    let mut keys = vec![(
        "HS256",
        Signer::hs256(&secret).unwrap(),
        Verifier::hs256(&secret, Expect::default()).unwrap(),
    )];
    for (name, alg) in [
        ("ES256", &rcgen::PKCS_ECDSA_P256_SHA256),
        ("EdDSA", &rcgen::PKCS_ED25519),
    ] {
        let pair = rcgen::KeyPair::generate_for(alg).unwrap();
        keys.push((
            name,
            Signer::private_pem(pair.serialize_pem().as_bytes()).unwrap(),
            Verifier::public_pem(pair.public_key_pem().as_bytes(), Expect::default()).unwrap(),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("rsa.pem");
    let public = dir.path().join("rsa.pub.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .output()
        .is_ok_and(|o| o.status.success())
        && std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public)
            .output()
            .is_ok_and(|o| o.status.success());
    if made {
        keys.push((
            "RS256 (2048-bit)",
            Signer::private_pem(&std::fs::read(&key).unwrap()).unwrap(),
            Verifier::public_pem(&std::fs::read(&public).unwrap(), Expect::default()).unwrap(),
        ));
    } else {
        println!("(no openssl command: RS256 not measured)");
    }
    keys
}
