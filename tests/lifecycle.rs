//! Graceful shutdown, through the library and through the real binary and SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use corecast::client::Client;
use corecast::config::Config;
use corecast::proto::ErrorCode;
use corecast::server::listen::ListenError;
use corecast::server::{Server, ServerError};

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
    let server = start_with(Config {
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
    // It waited for the unclosed member up to the grace period, then gave up on it;
    // the grace is the whole bound, closing included (the margin is thread joins).
    assert!(
        took >= Duration::from_millis(700),
        "gave up early: {took:?}"
    );
    assert!(took < Duration::from_millis(1400), "took {took:?}");
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
    let server = start_with(Config {
        metrics_listen: Some("127.0.0.1:0".into()),
        ..config()
    });
    let metrics = server.server().metrics_addr().unwrap();
    let clash = Server::start(Config {
        listen: server.addr.to_string(),
        ..config()
    });
    assert!(matches!(
        clash,
        Err(ServerError::Listen(ListenError::InUse {
            flag: "--listen",
            ..
        }))
    ));
    let clash = Server::start(Config {
        metrics_listen: Some(metrics.to_string()),
        ..config()
    });
    assert!(matches!(
        clash,
        Err(ServerError::Listen(ListenError::InUse {
            flag: "--metrics-listen",
            ..
        }))
    ));
}

/// A port that was free a moment ago, for tests whose servers refuse it before binding.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_restart_binds_at_once_while_the_last_runs_connections_are_closing() {
    // Ports the kernel picked (a port merely believed free could be taken meanwhile
    // by another test's server), then the same ports again.
    let server = start_with(Config {
        metrics_listen: Some("127.0.0.1:0".into()),
        shutdown_grace: 1,
        ..config()
    });
    let metrics = server.server().metrics_addr().unwrap();
    let port = server.addr.port();
    let fixed = || Config {
        listen: format!("127.0.0.1:{port}"),
        metrics_listen: Some(metrics.to_string()),
        shutdown_grace: 1,
        ..config()
    };
    // Clients that stay connected through the stop (their sockets are left in
    // FIN-WAIT-2 and TIME-WAIT on the server's port) and probes the server closed
    // first (TIME-WAIT on the metrics port).
    let mut clients: Vec<Client> = (0..4).map(|i| server.login(&format!("p{i}"))).collect();
    for c in &mut clients {
        c.join("r", None).unwrap();
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(http_get(metrics, path).0, 200);
    }
    server.stop().expect("clean stop");

    let restarted = start_with(fixed());
    assert_eq!(restarted.addr.port(), port);
    let mut c = restarted.login("after-restart");
    c.join("r", None).unwrap();
    assert_eq!(http_get(metrics, "/healthz").0, 200);
    // A live listener is still caught on both ports.
    assert!(matches!(
        Server::start(fixed()),
        Err(ServerError::Listen(ListenError::InUse { .. }))
    ));
    drop(clients);
}

#[test]
fn two_listeners_of_the_process_on_one_address_are_refused() {
    let port = free_port();
    for (listen, metrics) in [
        (format!("127.0.0.1:{port}"), format!("127.0.0.1:{port}")),
        (format!("127.0.0.1:{port}"), format!("0.0.0.0:{port}")),
        (format!("0.0.0.0:{port}"), format!("127.0.0.1:{port}")),
    ] {
        let err = Server::start(Config {
            listen: listen.clone(),
            metrics_listen: Some(metrics.clone()),
            ..config()
        })
        .err()
        .unwrap_or_else(|| panic!("--listen {listen} with --metrics-listen {metrics} started"));
        assert!(
            matches!(err, ServerError::Listen(ListenError::Clash { .. })),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("--listen") && text.contains("--metrics-listen"),
            "{text}"
        );
    }
}

/// Runs the binary with `args` and `env` until it exits; its exit status and stderr.
fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_corecast"))
        .args(args)
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .output()
        .expect("run corecast");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn start_up_errors_name_the_cause_and_the_fix_once() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    /// Arguments, environment, and the words the error line must hold.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 4] = [
        (
            &["--listen", "127.0.0.1:0"],
            &[("CORECAST_AUTH_TOKEN", "")],
            &["--auth-token", "empty"],
        ),
        (
            &["--listen", &listen, "--metrics-listen", &listen],
            &[],
            &["--listen", "--metrics-listen", "overlap"],
        ),
        (
            &["--listen", "127.0.0.1:0"],
            &[("CORECAST_METRICS_LISTEN", "no-such-host.invalid:9090")],
            &["--metrics-listen", "no-such-host.invalid:9090"],
        ),
        (
            &[
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                "/nonexistent/cert.pem",
            ],
            &[],
            &["--tls-key"],
        ),
    ];
    for (args, env, expected) in cases {
        let (status, stderr) = run_binary(args, env);
        assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("corecast: "), "{args:?}: {stderr}");
        for word in expected {
            assert!(
                last.contains(word),
                "{args:?}: {word:?} missing in {last:?}"
            );
        }
        assert!(!stderr.contains("Error: corecast server"), "{stderr}");
        assert!(!stderr.contains("Caused by"), "{stderr}");
    }
}

#[test]
fn a_low_memlock_limit_is_named_with_its_fix() {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(env!("CARGO_BIN_EXE_corecast"));
    command
        .args(["--listen", "127.0.0.1:0", "--shards", "1"])
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64 * 1024,
                rlim_max: 64 * 1024,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = command.output().expect("run corecast");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("locked-memory limit"), "{stderr}");
    assert!(stderr.contains("ulimit -l"), "{stderr}");
}

#[test]
fn logs_are_plain_text_off_a_terminal_and_json_when_asked() {
    let (status, stderr) = run_binary(&["--listen", "not an address"], &[("RUST_LOG", "info")]);
    assert_eq!(status.code(), Some(1));
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a pipe: {stderr:?}"
    );

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (_, stderr) = run_binary(
        &[
            "--log-format",
            "json",
            "--listen",
            &listen,
            "--metrics-listen",
            &listen,
        ],
        &[("RUST_LOG", "info")],
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(
            line.starts_with('{') && line.ends_with('}') && line.contains("\"level\""),
            "not a JSON log line: {line}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("ERROR") && l.contains("overlap")),
        "{stderr}"
    );
}

#[test]
fn the_binary_stops_within_its_grace_with_a_client_that_never_closes_and_warns_of_extra_shards() {
    // One shard more than there are CPUs: accepted, with a warning that says what
    // the extra shard costs.
    let shards = (corecast::server::allowed_cpus().len() + 1).to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_corecast"))
        .args(["--listen", "127.0.0.1:0", "--shutdown-grace", "1"])
        .args(["--shards", &shards])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn corecast");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut warned = false;
    let addr = loop {
        let line = lines.next().expect("a listening line").unwrap();
        warned |= line.contains("WARN") && line.contains("shards share CPUs");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    assert!(warned, "no warning for --shards {shards}");
    let mut idle = Client::connect(&addr).unwrap();
    idle.login("idle", None).unwrap();
    idle.join("r", None).unwrap();
    let started = Instant::now();
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let took = started.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        took < Duration::from_millis(1400),
        "took {took:?} with --shutdown-grace 1"
    );
    drop(idle);
}
