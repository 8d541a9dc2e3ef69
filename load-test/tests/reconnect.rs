//! The reconnect scenario against a real corecast server (in this process, port 0):
//! members drop their connection (closing it, or leaving it open for the new login's
//! replace_existing to close) and resume with since_seq; with history on, every
//! message arrives exactly once per member across its connections and every resume is
//! recovered; with history off, a resume that missed something is unrecovered and the
//! run fails.

mod common;

use corecast::config::Config;
use corecast::server::Server;

use common::{args, assert_checks_clean, harness, num, short_run, LIMIT};

/// Two shards (rooms on both), `history_messages` retained per room.
fn server(history_messages: usize) -> Server {
    common::corecast(2, history_messages)
}

/// 3 rooms of 10 members, 1 sender each at `rate`/s for 1 s after 200 ms of warm-up,
/// 3 members per room dropping 60 times a second in all, every other drop of each
/// member leaving the old connection open.
fn reconnect_run(addr: &str, rate: &str) -> common::Run {
    let common = short_run(addr);
    let scenario = [
        "reconnect",
        "--rooms",
        "3",
        "--members",
        "10",
        "--senders",
        "1",
        "--rate",
        rate,
        "--drop-share",
        "0.3",
        "--drops-per-second",
        "60",
        "--drop-mode",
        "mixed",
    ];
    harness(&args(&scenario, &common), LIMIT)
}

#[test]
fn members_that_drop_and_resume_get_every_message_exactly_once() {
    let server = server(Config::default().history_messages);
    let run = reconnect_run(&server.local_addr().to_string(), "200");
    let r = &run.report;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(r["scenario"], "reconnect");
    assert_eq!(
        num(r, &["connections"]),
        30.0,
        "members, not their reconnections"
    );
    assert_checks_clean(r, &[], &["unexpected"], &run.stdout);
    let rc = |field: &str| num(r, &["reconnect", field]);
    assert_eq!(rc("dropping_members"), 9.0);
    assert!(rc("drops") > 20.0, "drops happened: {}", run.stdout);
    assert!(rc("closed") > 0.0 && rc("replaced") > 0.0, "{}", run.stdout);
    assert_eq!(rc("resumes"), rc("drops"), "every drop resumed");
    assert_eq!(rc("recovered"), rc("resumes"), "{}", run.stdout);
    assert_eq!(
        rc("unrecovered") + rc("incomplete") + rc("old_not_closed"),
        0.0
    );
    assert_eq!(rc("session_replaced"), rc("replaced"), "{}", run.stdout);
    assert_eq!(rc("old_closed"), rc("replaced"));
    // 3 rooms x 200/s x 1 s x 10 members, live and replayed together.
    let live = num(r, &["latency", "count"]);
    let replayed = num(r, &["reconnect", "replay_latency", "count"]);
    assert_eq!(live + replayed, 6_000.0, "{}", run.stdout);
    assert!(run.stdout.contains("resumes"), "{}", run.stdout);
    assert!(!run.stdout.contains("LOSS"), "{}", run.stdout);
}

#[test]
fn with_history_off_a_resume_that_missed_messages_fails_the_run() {
    let server = server(0);
    // 500/s per room: a message every 2 ms, so many reconnects miss one.
    let run = reconnect_run(&server.local_addr().to_string(), "500");
    let r = &run.report;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        num(r, &["reconnect", "unrecovered"]) > 0.0,
        "{}",
        run.stdout
    );
    assert!(num(r, &["checks", "lost"]) > 0.0, "{}", run.stdout);
    assert!(run.stdout.contains("RESUME FAILURES"), "{}", run.stdout);
}

#[test]
fn reconnect_refuses_other_targets_and_rooms_with_nobody_to_drop() {
    let common = short_run("127.0.0.1:9");
    let run = common::run_binary(&args(&["reconnect", "--target", "redis"], &common), LIMIT);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("only --target corecast"),
        "{}",
        run.stderr
    );
    let run = common::run_binary(
        &args(&["reconnect", "--members", "2", "--senders", "2"], &common),
        LIMIT,
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("does not send"), "{}", run.stderr);
}
