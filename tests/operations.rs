//! Metrics, health and readiness over HTTP, scraped after real traffic.

mod common;

use std::time::Duration;

use common::*;
use corecast::config::Config;
use corecast::proto::ErrorCode;

fn sum(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[test]
fn metrics_count_the_traffic_and_health_endpoints_answer() {
    let server = start_with(Config {
        metrics_listen: Some("127.0.0.1:0".into()),
        ..config()
    });
    let http = server.server().metrics_addr().expect("metrics enabled");
    let mut a = server.login("a");
    let mut b = server.login("b");
    a.join("r", None).unwrap();
    b.join("r", None).unwrap();
    for i in 0..10u8 {
        a.send_message("r", &[], vec![i]).unwrap();
    }
    for _ in 0..10 {
        next_message(&mut a);
        next_message(&mut b);
    }
    a.send_message("nowhere", &[], "x").unwrap();
    assert_error(&mut a, ErrorCode::NotInRoom);
    b.leave("r").unwrap();

    let (status, m) = http_get(http, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(metric(&m, "corecast_logins_total"), 2.0);
    assert_eq!(metric(&m, "corecast_joins_total"), 2.0);
    assert_eq!(metric(&m, "corecast_leaves_total"), 1.0);
    assert_eq!(metric(&m, "corecast_messages_in_total"), 10.0);
    // 10 messages to 2 members, b's join notified to a, b's leave notified to a.
    assert_eq!(metric(&m, "corecast_deliveries_total"), 22.0);
    assert_eq!(
        metric(&m, "corecast_errors_total{code=\"NOT_IN_ROOM\"}"),
        1.0
    );
    assert_eq!(metric(&m, "corecast_connections_accepted_total"), 2.0);
    assert_eq!(
        sum(&m, "corecast_connections{"),
        2.0,
        "two open, summed over shards"
    );
    assert!(metric(&m, "corecast_bytes_in_total") > 0.0);
    assert!(metric(&m, "corecast_bytes_out_total") > 0.0);
    assert!(metric(&m, "corecast_delivery_latency_seconds_count") > 0.0);
    assert_eq!(sum(&m, "corecast_inbox_depth{"), 0.0);
    assert!(
        m.contains("corecast_connections{shard=\"1\"}"),
        "per-shard series"
    );
    assert_eq!(metric(&m, "corecast_ready"), 1.0);

    assert_eq!(http_get(http, "/healthz"), (200, "ok\n".into()));
    assert_eq!(http_get(http, "/readyz"), (200, "ready\n".into()));
    assert_eq!(http_get(http, "/nope").0, 404);

    // A disconnect is counted by reason.
    drop(b);
    eventually(Duration::from_secs(5), || {
        let (_, m) = http_get(http, "/metrics");
        (metric(&m, "corecast_disconnects_total{reason=\"client_closed\"}") == 1.0).then_some(())
    });

    // Draining: a connected client keeps the server in its grace period; readiness
    // turns 503 while health still answers.
    server.server().shutdown();
    eventually(Duration::from_secs(5), || {
        (http_get(http, "/readyz").0 == 503).then_some(())
    });
    assert_eq!(http_get(http, "/healthz").0, 200);
    assert_error(&mut a, ErrorCode::ServerShuttingDown);
}

#[test]
fn head_answers_like_get_without_a_body_and_process_metrics_are_served() {
    let server = start_with(Config {
        metrics_listen: Some("127.0.0.1:0".into()),
        ..config()
    });
    let http = server.server().metrics_addr().unwrap();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, head, body) = http_request(http, "HEAD", path);
        assert_eq!(status, 200, "HEAD {path}");
        assert!(body.is_empty(), "HEAD {path} sent a body: {body:?}");
        let (_, _, got) = http_request(http, "GET", path);
        assert!(
            head.contains("Content-Length: ") && !got.is_empty(),
            "HEAD {path}: {head}"
        );
    }
    assert_eq!(http_request(http, "POST", "/metrics").0, 405);

    let (_, m) = http_get(http, "/metrics");
    assert!(metric(&m, "process_resident_memory_bytes") > 0.0);
    assert!(metric(&m, "process_open_fds") >= 3.0);
    assert!(metric(&m, "process_max_fds") >= metric(&m, "process_open_fds"));
    assert!(
        metric(&m, "process_threads") >= 2.0,
        "one thread per shard at least"
    );
    let started = metric(&m, "process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // Whole seconds of boot time and clock ticks: a little slack either way.
    assert!(
        started <= now + 2.0 && started > now - 600.0,
        "{started} vs {now}"
    );
    assert!(metric(&m, "process_cpu_seconds_total") >= 0.0);
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(
        m.lines().any(|l| l.starts_with("corecast_build_info{")
            && l.contains(&version)
            && l.ends_with(" 1")),
        "{m}"
    );
}
