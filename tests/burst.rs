//! Bursts never cut a healthy reader: a member that reads as fast as it can gets every
//! message of a back-to-back burst, in order, whatever members that never read do; the
//! sender is not cut for its own echoes while it reads them; the members that read
//! nothing are still cut. At one and two shards.

mod common;

use std::os::fd::AsRawFd;
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;
use corecast::client::Client;
use corecast::config::Config;
use corecast::proto::{client_message::Data, SendMessage};

const ROOM: &str = "burst";

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How long a healthy reader may wait for the next message of the burst.
const PER_MESSAGE: Duration = Duration::from_secs(20);

/// A member that never reads, with a 4 KiB receive buffer (as in the reproduction).
fn stalled(server: &TestServer, name: &str) -> Client {
    let mut c = server.login(name);
    c.join(ROOM, None).unwrap();
    let size: libc::c_int = 4096;
    // SAFETY: setsockopt on a socket we own, with a correctly sized int.
    let rc = unsafe {
        libc::setsockopt(
            c.stream().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    c
}

/// The i-th message's body: its index, then filler up to `size` bytes.
fn body(i: u32, size: usize) -> Vec<u8> {
    let mut b = vec![b'x'; size];
    b[..4].copy_from_slice(&i.to_be_bytes());
    b
}

/// Reads `count` messages on a thread; returns them as (index, seq) or why it stopped.
fn read_all(mut c: Client, count: u32, size: usize) -> JoinHandle<Result<(), String>> {
    c.set_timeout(PER_MESSAGE);
    std::thread::spawn(move || {
        let mut last_seq = 0;
        for expected in 0..count {
            let m = c
                .expect(|d| match d {
                    corecast::proto::server_message::Data::MessageNotification(m) => Ok(m),
                    other => Err(other),
                })
                .map_err(|e| format!("after {expected} of {count} messages: {e}"))?;
            let index = u32::from_be_bytes(m.body[..4].try_into().unwrap());
            if index != expected || m.body.len() != size {
                return Err(format!("message {expected}: got index {index}"));
            }
            if m.seq != last_seq + 1 && last_seq != 0 {
                return Err(format!("seq {} after {last_seq}", m.seq));
            }
            last_seq = m.seq;
        }
        Ok(())
    })
}

/// One sender bursts `count` messages of `size` bytes at a room of `stalled_members`
/// that never read, `readers` that read as fast as they can, and the sender itself
/// (which reads its echoes on another thread).
fn burst(shards: usize, stalled_members: usize, readers: usize, count: u32, size: usize) {
    burst_with(
        Config::default(),
        shards,
        stalled_members,
        readers,
        count,
        size,
    );
}

/// [`burst`] on a server with `base`'s limits.
fn burst_with(
    base: Config,
    shards: usize,
    stalled_members: usize,
    readers: usize,
    count: u32,
    size: usize,
) {
    // One burst at a time: each takes both cores, and a healthy reader starved of CPU
    // by the other tests' bursts would not be the reader these tests are about.
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = start_with(Config {
        max_shard_outbound_bytes: base.max_shard_outbound_bytes,
        shards: Some(shards),
        // The burst is the point, not the per-connection rate limit.
        max_messages_per_second: 0,
        metrics_listen: Some("127.0.0.1:0".into()),
        // Members that stopped reading are cut this long after their socket filled.
        write_timeout: 3,
        ..config()
    });
    let metrics = server.server().metrics_addr().unwrap();
    let idle: Vec<Client> = (0..stalled_members)
        .map(|i| stalled(&server, &format!("stalled-{i}")))
        .collect();
    let healthy: Vec<JoinHandle<Result<(), String>>> = (0..readers)
        .map(|i| {
            let mut c = server.login(&format!("reader-{i}"));
            c.join(ROOM, None).unwrap();
            read_all(c, count, size)
        })
        .collect();
    let mut sender = server.login("sender");
    sender.join(ROOM, None).unwrap();
    let (mut tx, mut rx) = sender.split().unwrap();
    let echoes = std::thread::spawn(move || {
        for expected in 0..count {
            let m = loop {
                match rx.recv_timeout(PER_MESSAGE) {
                    Ok(msg) => match msg.data {
                        Some(corecast::proto::server_message::Data::MessageNotification(m)) => {
                            break m
                        }
                        _ => continue,
                    },
                    Err(e) => return Err(format!("echo {expected} of {count}: {e}")),
                }
            };
            let index = u32::from_be_bytes(m.body[..4].try_into().unwrap());
            if index != expected {
                return Err(format!("echo {expected}: got index {index}"));
            }
        }
        Ok(())
    });
    for i in 0..count {
        tx.send(Data::SendMessage(SendMessage {
            target_ids: vec![],
            room_id: ROOM.into(),
            body: body(i, size).into(),
        }))
        .unwrap_or_else(|e| panic!("sending message {i}: {e}"));
    }
    for (i, reader) in healthy.into_iter().enumerate() {
        reader
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("healthy reader {i} lost messages: {e}"));
    }
    echoes
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the sender lost its echoes: {e}"));
    // The members that read nothing were cut (at their byte limit, or by
    // --write-timeout), so what they pin is bounded. Not read here: reading them would
    // make them readers.
    let cut = r#"corecast_disconnects_total{reason="slow_consumer"}"#;
    eventually(Duration::from_secs(30), || {
        let (_, scrape) = http_get(metrics, "/metrics");
        (metric(&scrape, cut) >= stalled_members as f64).then_some(())
    });
    drop(idle);
    // Everything queued was written or dropped with its connection: the shards'
    // outbound accounting (what --max-shard-outbound-bytes is checked against) is back
    // at zero.
    eventually(Duration::from_secs(30), || {
        let (_, scrape) = http_get(metrics, "/metrics");
        let queued: f64 = scrape
            .lines()
            .filter(|l| l.starts_with("corecast_outbound_bytes{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum();
        (queued == 0.0).then_some(())
    });
}

#[test]
fn a_burst_of_16k_frames_cuts_only_the_member_that_never_reads_one_shard() {
    burst(1, 1, 1, 300, 16_000);
}

#[test]
fn twenty_stalled_members_do_not_cost_the_fast_reader_a_message_one_shard() {
    burst(1, 20, 1, 600, 8_000);
}

#[test]
fn a_burst_of_64k_frames_with_several_readers_and_stalled_members_one_shard() {
    burst(1, 3, 4, 120, 64_000);
}

#[test]
fn twenty_stalled_members_do_not_cost_the_fast_reader_a_message_two_shards() {
    burst(2, 20, 1, 600, 8_000);
}

#[test]
fn a_burst_of_64k_frames_with_several_readers_and_stalled_members_two_shards() {
    burst(2, 3, 4, 120, 64_000);
}

#[test]
fn a_small_shard_budget_trims_only_the_members_that_never_read() {
    // 3 MiB for the whole shard, against 20 members that never read (1 MiB each
    // otherwise): the cap cuts them earlier, and never the reader or the sender.
    let base = Config {
        max_shard_outbound_bytes: 3 << 20,
        ..Config::default()
    };
    burst_with(base, 1, 20, 1, 600, 8_000);
}

#[test]
fn a_burst_of_16k_frames_cuts_only_the_member_that_never_reads_two_shards() {
    burst(2, 1, 1, 300, 16_000);
}
