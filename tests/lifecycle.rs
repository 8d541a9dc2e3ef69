//! Graceful shutdown, through the library and through the real binary and SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use corecast::client::Client;
use corecast::proto::ErrorCode;

#[test]
fn shutdown_flushes_queued_messages_then_sends_server_shutting_down_and_returns() {
    let server = start();
    let mut a = server.login("a");
    let mut b = server.login("b");
    a.join("r", None).unwrap();
    b.join("r", None).unwrap();
    assert_graceful_shutdown(server, a, b, 50);
}

#[test]
fn shutdown_does_not_wait_forever_for_a_client_that_never_reads() {
    let server = start_with(corecast::config::Config {
        shutdown_grace: 1,
        ..config()
    });
    let mut sender = server.login("sender");
    let mut stuck = server.login("stuck");
    sender.join("r", None).unwrap();
    stuck.join("r", None).unwrap();
    // Frames the stuck member never reads (well under its 1 MiB limit: no cut). They may
    // all fit in loopback socket buffers, so what this checks is that the server waits
    // out the grace period for a client that has not closed, not the queue itself.
    for _ in 0..8 {
        sender
            .send_message("r", &[], vec![b'x'; 32 * 1024])
            .unwrap();
    }
    for _ in 0..8 {
        next_message(&mut sender);
    }
    let started = Instant::now();
    server.stop().expect("clean stop");
    let took = started.elapsed();
    // It waited for the unclosed member up to the grace period, then gave up on it.
    assert!(
        took >= Duration::from_millis(900),
        "gave up early: {took:?}"
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
    drop(stuck);
}

#[test]
fn the_binary_logs_its_address_and_exits_0_on_sigterm_after_telling_clients() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_corecast"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "2",
            "--shutdown-grace",
            "2",
        ])
        .env("RUST_LOG", "info")
        .env("CORECAST_AUTH_TOKEN", "tok")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn corecast");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("a listening line").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            assert!(rest.contains("(2 shards)"), "{line}");
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // The token came from the environment.
    let mut denied = Client::connect(&addr).unwrap();
    assert!(denied.login("x", None).is_err());
    drop(denied);
    let mut c = Client::connect(&addr).unwrap();
    c.login("p", Some("tok")).unwrap();
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_error(&mut c, ErrorCode::ServerShuttingDown);
    c.expect_closed().unwrap();
    drop(c);
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        !rest
            .iter()
            .any(|l| l.contains("tok\"") || l.contains(" tok ")),
        "the token is never logged"
    );
}

#[test]
fn help_explains_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_corecast"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--shards",
        "--max-frame-bytes",
        "--max-outbound-bytes",
        "--max-connections",
        "--max-room-members",
        "--idle-timeout",
        "--shutdown-grace",
        "--auth-token",
        "CORECAST_AUTH_TOKEN",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    // And every other flag the parser knows, each with its own explanation.
    use clap::CommandFactory;
    for arg in corecast::config::Config::command().get_arguments() {
        let Some(long) = arg.get_long() else {
            continue;
        };
        assert!(help.contains(&format!("--{long}")), "--help lacks --{long}");
        assert!(arg.get_help().is_some(), "--{long} has no help text");
    }
}

#[test]
fn a_second_server_on_a_taken_port_fails_instead_of_sharing_it() {
    let server = start();
    let clash = corecast::server::Server::start(corecast::config::Config {
        listen: server.addr.to_string(),
        ..config()
    });
    assert!(matches!(
        clash,
        Err(corecast::server::ServerError::Bind { .. })
    ));
}
