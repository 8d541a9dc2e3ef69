//! The harness over WebSocket (`--transport ws`) against a real corecast listening on
//! both transports (port 0 each): fanout, connect, churn and reconnect runs are
//! clean; a run over TCP and one over WebSocket against the same server both are; the
//! other targets and `burst` refuse ws before anything connects.

mod common;

use common::{args, assert_checks_clean, harness, num, run_binary, short_run, LIMIT};

/// A fanout of 2 rooms x 20 members, 2 senders per room at 200 msgs/s, over
/// `transport` to `addr`: every delivery arrives once, in order, with no seq gap.
fn fanout_is_clean(addr: &str, transport: &str) {
    let pid = std::process::id().to_string();
    let common = short_run(addr);
    let scenario = [
        "fanout",
        "--transport",
        transport,
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
    assert_eq!(run.code, 0, "{transport}: {}", run.stdout);
    let name = if transport == "ws" {
        "corecast-ws"
    } else {
        "corecast"
    };
    assert_eq!(r["target"], name, "{}", run.stdout);
    assert_eq!(num(r, &["connections"]), 40.0);
    // 2 rooms x 2 senders x 200/s x 1 s x 20 members, every one timed.
    assert_eq!(num(r, &["latency", "count"]), 16_000.0, "{}", run.stdout);
    assert_checks_clean(r, &[], &["unexpected"], &run.stdout);
    assert!(
        num(r, &["achieved_deliveries_per_s"]) >= 15_000.0,
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("LOSS"), "{}", run.stdout);
}

#[test]
fn fanout_over_websocket_is_clean() {
    let (_server, _tcp, ws) = common::corecast_ws(1);
    fanout_is_clean(&ws, "ws");
}

#[test]
fn connect_over_websocket_logs_every_client_in() {
    let (_server, _tcp, ws) = common::corecast_ws(1);
    let run = harness(
        &[
            "connect",
            "--transport",
            "ws",
            "--addr",
            &ws,
            "--clients",
            "300",
            "--concurrency",
            "32",
        ],
        LIMIT,
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.report["target"], "corecast-ws");
    assert_eq!(num(&run.report, &["connections"]), 300.0, "{}", run.stdout);
}

#[test]
fn churn_over_websocket_is_clean() {
    let (_server, _tcp, ws) = common::corecast_ws(2);
    let mut common = short_run(&ws);
    common.extend(["--transport".to_string(), "ws".to_string()]);
    common::churn_is_clean(&common);
}

#[test]
fn tcp_and_websocket_runs_against_one_server_are_both_clean() {
    let (_server, tcp, ws) = common::corecast_ws(2);
    fanout_is_clean(&tcp, "tcp");
    fanout_is_clean(&ws, "ws");
}

#[test]
fn the_tcp_port_is_not_a_websocket_and_the_ws_port_is_not_tcp() {
    let (_server, tcp, ws) = common::corecast_ws(1);
    // A WebSocket upgrade sent to the TCP listener is not a corecast frame: setup fails.
    let out = run_binary(
        &[
            "connect",
            "--transport",
            "ws",
            "--addr",
            &tcp,
            "--clients",
            "1",
            "--timeout",
            "5s",
        ],
        LIMIT,
    );
    assert_ne!(out.code, 0, "{}{}", out.stdout, out.stderr);
    // A length-prefixed login sent to the WebSocket listener is refused with HTTP 400.
    let out = run_binary(
        &[
            "connect",
            "--addr",
            &ws,
            "--clients",
            "1",
            "--timeout",
            "5s",
        ],
        LIMIT,
    );
    assert_ne!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

#[test]
fn only_corecast_takes_websocket_and_burst_does_not() {
    for target in ["redis", "nats"] {
        let out = run_binary(
            &[
                "fanout",
                "--target",
                target,
                "--transport",
                "ws",
                "--addr",
                "127.0.0.1:9",
            ],
            LIMIT,
        );
        assert_eq!(out.code, 2, "{target}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains(&format!(
                "--transport ws speaks corecast's WebSocket protocol; --target {target} is reached over tcp only"
            )),
            "{}",
            out.stderr
        );
    }
    let out = run_binary(
        &["burst", "--transport", "ws", "--addr", "127.0.0.1:9"],
        LIMIT,
    );
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("burst runs over TCP only"),
        "{}",
        out.stderr
    );
}

#[test]
fn reconnect_over_websocket_resumes_every_member_and_replaces_left_open_sockets() {
    let (_server, _tcp, ws) = common::corecast_ws(2);
    let mut common = short_run(&ws);
    common.extend(["--transport".to_string(), "ws".to_string()]);
    let scenario = [
        "reconnect",
        "--rooms",
        "3",
        "--members",
        "10",
        "--senders",
        "1",
        "--rate",
        "200",
        "--drop-share",
        "0.3",
        "--drops-per-second",
        "60",
        "--drop-mode",
        "mixed",
    ];
    let run = harness(&args(&scenario, &common), LIMIT);
    let r = &run.report;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(r["target"], "corecast-ws");
    assert_checks_clean(r, &[], &["unexpected"], &run.stdout);
    let rc = |field: &str| num(r, &["reconnect", field]);
    assert!(rc("drops") > 20.0, "drops happened: {}", run.stdout);
    assert!(rc("closed") > 0.0 && rc("replaced") > 0.0, "{}", run.stdout);
    assert_eq!(rc("recovered"), rc("drops"), "{}", run.stdout);
    // A left-open WebSocket gets SESSION_REPLACED (then its closing frame) and is closed.
    assert_eq!(rc("session_replaced"), rc("replaced"), "{}", run.stdout);
    assert_eq!(rc("old_closed"), rc("replaced"), "{}", run.stdout);
    assert_eq!(rc("old_not_closed"), 0.0, "{}", run.stdout);
}
