//! The Redis and NATS adapters against the real servers (Debian packages redis-server
//! and nats-server): the same scenarios, the same checks, no loss.

mod common;

use common::{args, churn_is_clean, harness, nats, num, redis, short_run, Peer, LIMIT};

/// `--target TARGET` and the short run against `peer`.
fn target_run(peer: &Peer, target: &str) -> Vec<String> {
    let mut common = short_run(&peer.addr.to_string());
    common.extend(["--target".to_string(), target.to_string()]);
    common
}

fn fanout_is_clean(peer: &Peer, target: &str) {
    let pid = peer.pid().to_string();
    let common = target_run(peer, target);
    let scenario = [
        "fanout",
        "--rooms",
        "2",
        "--members",
        "10",
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
    assert_eq!(r["target"], target);
    // 2 rooms x 2 senders x 200/s x 1 s x 10 members, senders receiving their own.
    assert_eq!(num(r, &["latency", "count"]), 8_000.0, "{}", run.stdout);
    assert_eq!(num(r, &["checks", "lost"]), 0.0);
    assert_eq!(num(r, &["checks", "duplicates"]), 0.0);
    assert_eq!(num(r, &["checks", "sender_reorders"]), 0.0);
    assert_eq!(num(r, &["checks", "seq_gaps"]), 0.0, "no seq on {target}");
    assert!(r["server"]["cpu_us"].as_u64().is_some());
}

fn churn_and_loss(peer: &Peer, target: &str) {
    let common = target_run(peer, target);
    churn_is_clean(&common);

    let lossy = [
        "fanout",
        "--members",
        "5",
        "--rate",
        "100",
        "--debug-skip-counter",
        "10",
    ];
    let run = harness(&args(&lossy, &common), LIMIT);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(num(&run.report, &["checks", "lost"]), 5.0);
}

fn connect_works(peer: &Peer, target: &str) {
    let addr = peer.addr.to_string();
    let run = harness(
        &[
            "connect",
            "--target",
            target,
            "--addr",
            &addr,
            "--clients",
            "200",
        ],
        LIMIT,
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(num(&run.report, &["connections"]), 200.0);
}

#[test]
fn redis_pubsub() {
    let peer = redis();
    fanout_is_clean(&peer, "redis");
    churn_and_loss(&peer, "redis");
    connect_works(&peer, "redis");
}

#[test]
fn nats_core() {
    let peer = nats();
    fanout_is_clean(&peer, "nats");
    churn_and_loss(&peer, "nats");
    connect_works(&peer, "nats");
}
