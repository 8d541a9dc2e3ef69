//! The command line as a new user meets it: bad output paths and meaningless values
//! are refused before any connection is made; progress is one plain line a second on
//! a piped stderr, nothing with --quiet, and the bar on a terminal.

mod common;

use std::io::{ErrorKind, Read};
use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use corecast::config::Config;
use corecast::server::Server;

use common::{run_binary, LIMIT};

fn server() -> Server {
    Server::start(Config {
        listen: "127.0.0.1:0".into(),
        shards: Some(1),
        shutdown_grace: 1,
        ..Config::default()
    })
    .expect("corecast starts")
}

/// A listener nobody accepts on: a harness that connected leaves a connection queued.
fn bait() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("local addr").to_string();
    (listener, addr)
}

fn assert_never_connected(listener: &TcpListener, what: &str) {
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("{what}: the harness connected (from {peer})"),
        Err(e) => panic!("{what}: accept: {e}"),
    }
}

/// A fresh directory for one test's files.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corecast-load-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn bad_output_paths_are_refused_before_any_connection() {
    let (listener, addr) = bait();
    let dir = scratch_dir("outputs");
    let fine = dir.join("fine.json");
    let missing = dir.join("no-such-dir").join("run.hgrm");
    let cases: Vec<(Vec<&str>, &str, &Path)> = vec![
        (
            vec![
                "fanout",
                "--json",
                path_str(&fine),
                "--hgrm",
                path_str(&missing),
            ],
            "--hgrm",
            &missing,
        ),
        (
            vec!["chat", "--plot", path_str(&missing)],
            "--plot",
            &missing,
        ),
        (vec!["connect", "--json", path_str(&dir)], "--json", &dir),
        (
            vec!["idle", "--json", path_str(&missing)],
            "--json",
            &missing,
        ),
    ];
    for (scenario, flag, path) in cases {
        let mut args = scenario.clone();
        args.extend(["--addr", &addr, "--quiet"]);
        let out = run_binary(&args, LIMIT);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        let expected = format!(
            "corecast-load: error: cannot write {flag} {}: ",
            path.display()
        );
        assert!(
            out.stderr.starts_with(&expected),
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{args:?} printed a report");
        assert_never_connected(&listener, &format!("{args:?}"));
    }
    assert!(!fine.exists(), "the check leaves no file behind");

    let out = run_binary(
        &["plot", "--out", path_str(&missing), "never-read.json"],
        LIMIT,
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "cannot write --out {}: No such file or directory",
            missing.display()
        )),
        "plot checks --out before reading its inputs: {}",
        out.stderr
    );
    std::fs::remove_dir_all(&dir).expect("remove scratch dir");
}

#[test]
fn meaningless_values_are_refused_before_any_connection() {
    let (listener, addr) = bait();
    for (args, message) in [
        (
            ["fanout", "--rate", "0"],
            "invalid value '0' for '--rate <RATE>': must be a finite number above zero",
        ),
        (
            ["chat", "--duration", "0s"],
            "invalid value '0s' for '--duration <DURATION>': must be more than zero",
        ),
        (
            ["churn", "--members", "0"],
            "invalid value '0' for '--members <MEMBERS>': must be at least 1",
        ),
    ] {
        let mut full = args.to_vec();
        full.extend(["--addr", &addr]);
        let out = run_binary(&full, LIMIT);
        assert_eq!(out.code, 2, "{full:?}: {}", out.stderr);
        assert!(out.stderr.contains(message), "{full:?}: {}", out.stderr);
        assert_never_connected(&listener, &format!("{full:?}"));
    }
}

/// The `[  1.0s] ...` lines of a piped stderr, as (seconds, text).
fn progress_lines(stderr: &str) -> Vec<(f64, String)> {
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix('[')?;
            let (secs, text) = rest.split_once("s] ")?;
            Some((secs.trim().parse().ok()?, text.to_string()))
        })
        .collect()
}

fn assert_a_second_apart(lines: &[(f64, String)], stderr: &str) {
    for pair in lines.windows(2) {
        // Printed to 0.1 s: a gap of at least 1 s shows as at least 0.9.
        assert!(pair[1].0 - pair[0].0 >= 0.9, "{stderr}");
    }
}

#[test]
fn piped_progress_is_one_plain_line_a_second() {
    let server = server();
    let addr = server.local_addr().to_string();
    let fanout = [
        "fanout",
        "--addr",
        &addr,
        "--rooms",
        "2",
        "--members",
        "10",
        "--rate",
        "100",
        "--warmup",
        "200ms",
        "--duration",
        "3s",
        "--drain",
        "2s",
    ];
    let out = run_binary(&fanout, LIMIT);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        !out.stderr.contains('\r') && !out.stderr.contains('\x1b'),
        "{:?}",
        out.stderr
    );
    let lines = progress_lines(&out.stderr);
    assert_eq!(
        lines.first().map(|l| l.1.as_str()),
        Some("setting up 20 connections"),
        "{}",
        out.stderr
    );
    let rates: Vec<_> = lines
        .iter()
        .filter(|(_, t)| t.contains(": sent ") && t.contains(" deliveries "))
        .cloned()
        .collect();
    // 3.2 s of sending: a line at about 1, 2 and 3 s after the first snapshot.
    assert!(rates.len() >= 2, "{}", out.stderr);
    let measured: Vec<f64> = rates
        .iter()
        .filter_map(|(_, t)| t.strip_prefix("measuring: sent ")?.split_once('/'))
        .filter_map(|(n, _)| n.parse().ok())
        .collect();
    assert!(
        !measured.is_empty() && measured.iter().all(|&n| (150.0..=250.0).contains(&n)),
        "2 rooms x 1 sender x 100/s: {}",
        out.stderr
    );
    assert_a_second_apart(&rates, &out.stderr);
    assert!(out.stdout.contains("p99.99"), "the report is on stdout");

    let mut quiet = fanout.to_vec();
    quiet.push("--quiet");
    let out = run_binary(&quiet, LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(progress_lines(&out.stderr), vec![], "{}", out.stderr);

    let connect = [
        "connect",
        "--addr",
        &addr,
        "--clients",
        "600",
        "--connect-rate",
        "250",
    ];
    let out = run_binary(&connect, LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let connecting: Vec<_> = progress_lines(&out.stderr)
        .into_iter()
        .filter(|(_, t)| t.starts_with("connecting: "))
        .collect();
    // 600 clients at 250/s: 2.4 s.
    assert!(connecting.len() >= 2, "{}", out.stderr);
    assert_a_second_apart(&connecting, &out.stderr);
    assert!(
        connecting
            .iter()
            .all(|(_, t)| !t.ends_with("p99 0.000 ms") && t.contains(" logins/s, p99 ")),
        "the p99 is of connect+login latency: {}",
        out.stderr
    );

    let idle = [
        "idle",
        "--addr",
        &addr,
        "--connections",
        "50",
        "--hold",
        "2500ms",
    ];
    let out = run_binary(&idle, LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let holding: Vec<_> = progress_lines(&out.stderr)
        .into_iter()
        .filter(|(_, t)| t.starts_with("holding 50 connections: "))
        .collect();
    assert!(holding.len() >= 2, "{}", out.stderr);
    assert_a_second_apart(&holding, &out.stderr);
}

/// A pseudo-terminal: (controller, the terminal end).
fn pty() -> (OwnedFd, OwnedFd) {
    let (mut controller, mut terminal) = (-1, -1);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: valid out-pointers; a null name and termios are allowed.
    let rc = unsafe {
        libc::openpty(
            &mut controller,
            &mut terminal,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two open descriptors that nothing else owns.
    unsafe {
        (
            OwnedFd::from_raw_fd(controller),
            OwnedFd::from_raw_fd(terminal),
        )
    }
}

#[test]
fn a_terminal_gets_the_bar_not_lines() {
    let server = server();
    let addr = server.local_addr().to_string();
    let (controller, terminal) = pty();
    let mut child = Command::new(env!("CARGO_BIN_EXE_corecast-load"))
        .args([
            "fanout",
            "--addr",
            &addr,
            "--members",
            "5",
            "--warmup",
            "200ms",
            "--duration",
            "2s",
            "--drain",
            "1s",
        ])
        .env("TERM", "xterm")
        .stdout(Stdio::null())
        .stderr(Stdio::from(terminal))
        .spawn()
        .expect("start corecast-load");
    // The Command kept no copy of the terminal end: once the child exits, reads on
    // the controller end fail (EIO) and the reader stops.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut file = std::fs::File::from(controller);
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = file.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send(String::from_utf8_lossy(&seen).into_owned());
    });
    let seen = match rx.recv_timeout(LIMIT) {
        Ok(seen) => seen,
        Err(_) => {
            let _ = child.kill();
            panic!("corecast-load on a terminal did not finish within {LIMIT:?}");
        }
    };
    let status = child.wait().expect("wait corecast-load");
    assert!(status.success(), "{seen:?}");
    assert!(seen.contains("measuring: sent"), "{seen:?}");
    assert!(seen.contains('\r') || seen.contains('\x1b'), "{seen:?}");
    assert_eq!(progress_lines(&seen), vec![], "{seen:?}");
}
