//! Known open defect, kept as a reproduction: under concurrent load a connection can
//! go 5 to 30+ s without an answer. Seen in about 2 of 30 runs, with plain TCP and
//! TLS, 1 or 2 shards, read timeouts on or off. When it is stuck, the shard thread
//! sleeps in io_uring while server sockets hold unread bytes, which points at a lost
//! readiness wake-up (glommio 0.9.0's `poll_read` arms an early readiness poll after a
//! short read; see the README's known issues). Ignored until fixed, because it is
//! intermittent; reproduce with:
//!
//!     for i in $(seq 30); do cargo test --test stall -- --ignored || break; done

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;
use corecast::config::Config;
use corecast::proto::server_message::Data;

#[test]
#[ignore = "known intermittent stall (lost readiness wake-up); run with --ignored"]
fn every_round_trip_completes_promptly_under_concurrent_load() {
    let server = start_with(Config {
        max_messages_per_second: 0,
        ..config()
    });
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let mut c = server.login(&format!("p{t}"));
            let room = format!("r{}", t / 2);
            c.join(&room, None).unwrap();
            thread::spawn(move || {
                c.set_timeout(Duration::from_secs(2));
                let me = format!("p{t}");
                for i in 0..400u32 {
                    let start = Instant::now();
                    c.send_message(&room, &[], i.to_be_bytes().to_vec())
                        .unwrap();
                    c.expect(|d| match d {
                        Data::MessageNotification(m) if m.sender_id == me => Ok(()),
                        other => Err(other),
                    })
                    .unwrap_or_else(|e| {
                        panic!("p{t} message {i}: {e} after {:?}", start.elapsed())
                    });
                    c.ping(u64::from(i)).unwrap_or_else(|e| {
                        panic!("p{t} ping {i}: {e} after {:?}", start.elapsed())
                    });
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
