//! The harness against a real corecast server (in this process, port 0): a clean run
//! reports no loss and sane figures; an injected loss is caught and fails the run;
//! churn, connect and idle work end to end; connect refuses more clients than the
//! process's open-file limit allows.

mod common;

use corecast::config::Config;
use corecast::server::Server;

use common::{args, assert_checks_clean, churn_is_clean, harness, num, short_run, LIMIT};

/// A one-shard corecast (default history) and its address.
fn server() -> (Server, String) {
    let server = common::corecast(1, Config::default().history_messages);
    let addr = server.local_addr().to_string();
    (server, addr)
}

#[test]
fn fanout_reports_every_delivery_and_no_loss() {
    let (_server, addr) = server();
    let pid = std::process::id().to_string();
    let common = short_run(&addr);
    let scenario = [
        "fanout",
        "--rooms",
        "2",
        "--members",
        "20",
        "--senders",
        "2",
        "--rate",
        "200",
        "--server-pid",
        &pid,
    ];
    let run = harness(&args(&scenario, &common), LIMIT);
    let r = &run.report;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(r["scenario"], "fanout");
    assert_eq!(r["target"], "corecast");
    assert_eq!(num(r, &["connections"]), 40.0);
    assert_eq!(num(r, &["offered_msgs_per_s"]), 800.0);
    assert_eq!(num(r, &["offered_deliveries_per_s"]), 16_000.0);
    // 2 rooms x 2 senders x 200/s x 1 s x 20 members.
    assert_eq!(num(r, &["latency", "count"]), 16_000.0);
    assert_checks_clean(r, &[], &["unexpected"], &run.stdout);
    assert!(num(r, &["latency", "p50_us"]) > 0.0);
    assert!(num(r, &["latency", "max_us"]) >= num(r, &["latency", "p99_us"]));
    assert!(num(r, &["achieved_deliveries_per_s"]) > 0.0);
    assert!(
        r["server"]["rss_after_kib"].as_u64().is_some(),
        "server cost with --server-pid"
    );
    assert!(!r["curve"].as_array().expect("curve").is_empty());
    assert!(run.stdout.contains("p99.99"), "{}", run.stdout);
    assert!(!run.stdout.contains("LOSS"), "{}", run.stdout);
}

#[test]
fn an_injected_loss_is_detected_and_fails_the_run() {
    let (_server, addr) = server();
    let common = short_run(&addr);
    // Sender 0 skips counter 50: each of the 10 members of its room misses one message.
    let scenario = [
        "fanout",
        "--rooms",
        "1",
        "--members",
        "10",
        "--senders",
        "1",
        "--rate",
        "200",
        "--debug-skip-counter",
        "50",
    ];
    let run = harness(&args(&scenario, &common), LIMIT);
    assert_eq!(run.code, 1, "a loss must fail the run: {}", run.stdout);
    assert_eq!(num(&run.report, &["checks", "lost"]), 10.0);
    assert_eq!(
        num(&run.report, &["checks", "seq_gaps"]),
        0.0,
        "the server never saw it"
    );
    assert!(
        run.stdout.contains("LOSS OR DISORDER: lost 10"),
        "{}",
        run.stdout
    );

    let mut tolerant = args(&scenario, &common);
    tolerant.push("--tolerate-loss");
    let run = harness(&tolerant, LIMIT);
    assert_eq!(run.code, 0, "--tolerate-loss: {}", run.stdout);
    assert_eq!(num(&run.report, &["checks", "lost"]), 10.0);
}

#[test]
fn chat_and_churn_are_clean() {
    let (_server, addr) = server();
    let common = short_run(&addr);
    let run = harness(
        &args(
            &["chat", "--rooms", "3", "--members", "5", "--rate", "50"],
            &common,
        ),
        LIMIT,
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(num(&run.report, &["offered_msgs_per_s"]), 750.0);
    assert_eq!(num(&run.report, &["checks", "lost"]), 0.0);

    churn_is_clean(&common);
}

#[test]
fn connect_and_idle_count_their_clients() {
    let (_server, addr) = server();
    let pid = std::process::id().to_string();
    let run = harness(
        &[
            "connect",
            "--addr",
            &addr,
            "--clients",
            "300",
            "--concurrency",
            "32",
        ],
        LIMIT,
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(num(&run.report, &["connections"]), 300.0);
    assert_eq!(num(&run.report, &["latency", "count"]), 300.0);
    assert!(num(&run.report, &["connections_per_s"]) > 0.0);

    let paced = [
        "connect",
        "--addr",
        &addr,
        "--clients",
        "100",
        "--connect-rate",
        "1000",
    ];
    let run = harness(&paced, LIMIT);
    assert_eq!(run.code, 0, "{}", run.stdout);
    // 100 connects at 1000/s take about 0.1 s: the rate caps logins/s.
    assert!(
        num(&run.report, &["connections_per_s"]) < 1500.0,
        "{}",
        run.stdout
    );

    let idle = [
        "idle",
        "--addr",
        &addr,
        "--connections",
        "500",
        "--hold",
        "100ms",
        "--server-pid",
        &pid,
    ];
    let run = harness(&idle, LIMIT);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(num(&run.report, &["connections"]), 500.0);
    assert!(run.report["server"]["rss_per_connection_bytes"]
        .as_f64()
        .is_some());
}

#[test]
fn idle_spreads_over_child_processes() {
    let (_server, addr) = server();
    let idle = [
        "idle",
        "--addr",
        &addr,
        "--connections",
        "600",
        "--per-process",
        "250",
        "--hold",
        "100ms",
    ];
    let run = harness(&idle, LIMIT);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(num(&run.report, &["connections"]), 600.0);
}

#[test]
fn connect_refuses_more_clients_than_the_open_file_limit_allows() {
    use std::os::unix::process::CommandExt;
    let (_server, addr) = server();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_corecast-load"));
    command.args(["connect", "--addr", &addr, "--clients", "1000", "--quiet"]);
    // SAFETY: setrlimit is async-signal-safe; the child lowers only its own limit.
    unsafe {
        command.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 600,
                rlim_max: 600,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start corecast-load");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let out = rx
        .recv_timeout(LIMIT)
        .expect("corecast-load refuses within LIMIT")
        .expect("run corecast-load");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "1000 clients under a limit of 600 ran"
    );
    assert!(
        stderr.contains("--clients 1000 exceeds the 500 connections")
            && stderr.contains("open-file limit 600"),
        "{stderr}"
    );
}

#[test]
fn burst_delivers_everything_to_healthy_members_and_senders() {
    let (_server, addr) = server();
    let pid = std::process::id().to_string();
    // 2 rooms x 4 members: 1 sender, 2 healthy, 1 stalled (never reads) per room.
    let run = harness(
        &[
            "burst",
            "--addr",
            &addr,
            "--rooms",
            "2",
            "--members",
            "4",
            "--senders",
            "1",
            "--burst",
            "200",
            "--body-size",
            "16000",
            "--stalled",
            "1",
            "--server-pid",
            &pid,
            "--setup-timeout",
            "20s",
        ],
        LIMIT,
    );
    let r = &run.report;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(r["scenario"], "burst");
    assert_eq!(num(r, &["connections"]), 8.0);
    assert_eq!(num(r, &["sent"]), 400.0);
    assert_eq!(r["completed"], true, "{}", run.stdout);
    assert_eq!(r["failed"], false, "{}", run.stdout);
    // Each sender gets its room's 200 messages (its own echoes), each healthy member too.
    assert_eq!(num(r, &["senders", "received"]), 400.0, "{}", run.stdout);
    assert_eq!(num(r, &["senders", "expected"]), 400.0);
    assert_eq!(num(r, &["own_echoes"]), 400.0);
    assert_eq!(num(r, &["healthy", "connections"]), 4.0);
    assert_eq!(num(r, &["healthy", "received"]), 800.0, "{}", run.stdout);
    assert_eq!(num(r, &["healthy", "expected"]), 800.0);
    for class in ["senders", "healthy"] {
        assert_eq!(num(r, &[class, "disconnected"]), 0.0, "{}", run.stdout);
        assert_checks_clean(r, &[class], &[], &run.stdout);
    }
    assert_eq!(num(r, &["stalled", "connections"]), 2.0);
    assert!(num(r, &["deliveries_per_s"]) > 0.0);
    assert!(r["server"]["cpu_us"].as_u64().is_some(), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("healthy members        4 conns: received 800/800, disconnected 0"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("!!!"), "{}", run.stdout);
}

#[test]
fn burst_refuses_other_targets_and_impossible_rooms_before_connecting() {
    for (extra, why) in [
        (
            &["--target", "redis"][..],
            "burst supports only --target corecast",
        ),
        (
            &["--members", "2", "--senders", "1", "--stalled", "2"][..],
            "exceed --members 2",
        ),
    ] {
        let mut a = vec!["burst", "--addr", "127.0.0.1:1"];
        a.extend_from_slice(extra);
        let out = common::run_binary(&a, LIMIT);
        assert_eq!(out.code, 2, "{extra:?}: {}", out.stderr);
        assert!(out.stderr.contains(why), "{extra:?}: {}", out.stderr);
    }
}
