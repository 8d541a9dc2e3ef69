//! Every round trip completes promptly while 16 clients hammer the server at once.
//!
//! Before glommio was patched (vendor/glommio/PATCHED.md) an executor could park with
//! runnable tasks queued: in 207 runs of a variant of this test with longer timeouts,
//! three saw a connection left unanswered until the server's idle timeout closed it,
//! and two never finished the server's shutdown. `tests/executor.rs` pins the cause down deterministically;
//! this is the end-to-end check, and what to loop when touching the executor:
//!
//!     for i in $(seq 200); do cargo test -q --test stall || break; done

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;
use corecast::config::Config;
use corecast::proto::server_message::Data;

#[test]
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
