//! Metrics, health and readiness over HTTP, scraped after real traffic.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use corecast::config::Config;
use corecast::proto::ErrorCode;

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: corecast\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response)
        .unwrap_or_else(|e| panic!("GET {path}: {e} after {response:?}"));
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no series {series} in:\n{metrics}"))
        .parse()
        .unwrap()
}

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

    let (status, m) = get(http, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(value(&m, "corecast_logins_total"), 2.0);
    assert_eq!(value(&m, "corecast_joins_total"), 2.0);
    assert_eq!(value(&m, "corecast_leaves_total"), 1.0);
    assert_eq!(value(&m, "corecast_messages_in_total"), 10.0);
    // 10 messages to 2 members, b's join notified to a, b's leave notified to a.
    assert_eq!(value(&m, "corecast_deliveries_total"), 22.0);
    assert_eq!(
        value(&m, "corecast_errors_total{code=\"NOT_IN_ROOM\"}"),
        1.0
    );
    assert_eq!(value(&m, "corecast_connections_accepted_total"), 2.0);
    assert_eq!(
        sum(&m, "corecast_connections{"),
        2.0,
        "two open, summed over shards"
    );
    assert!(value(&m, "corecast_bytes_in_total") > 0.0);
    assert!(value(&m, "corecast_bytes_out_total") > 0.0);
    assert!(value(&m, "corecast_delivery_latency_seconds_count") > 0.0);
    assert_eq!(sum(&m, "corecast_inbox_depth{"), 0.0);
    assert!(
        m.contains("corecast_connections{shard=\"1\"}"),
        "per-shard series"
    );
    assert_eq!(value(&m, "corecast_ready"), 1.0);

    assert_eq!(get(http, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(http, "/readyz"), (200, "ready\n".into()));
    assert_eq!(get(http, "/nope").0, 404);

    // A disconnect is counted by reason.
    drop(b);
    eventually(Duration::from_secs(5), || {
        let (_, m) = get(http, "/metrics");
        (value(&m, "corecast_disconnects_total{reason=\"client_closed\"}") == 1.0).then_some(())
    });

    // Draining: a connected client keeps the server in its grace period; readiness
    // turns 503 while health still answers.
    server.server().shutdown();
    eventually(Duration::from_secs(5), || {
        (get(http, "/readyz").0 == 503).then_some(())
    });
    assert_eq!(get(http, "/healthz").0, 200);
    assert_error(&mut a, ErrorCode::ServerShuttingDown);
}
