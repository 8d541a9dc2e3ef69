//! The counters' unit tests, and the whole Prometheus text pinned byte for byte.

use super::*;

#[test]
fn a_turn_stamps_only_while_it_lives() {
    let start = Instant::now() - Duration::from_secs(60);
    {
        let _turn = Turn::start(start);
        assert_eq!(turn_started(), start, "inside the turn: its start");
    }
    assert!(
        turn_started() > start + Duration::from_secs(59),
        "after the turn: the clock, not the stale start"
    );
}

#[test]
fn counts_are_per_thread_and_snapshots_sum() {
    let before = snapshot();
    count(Count::Login);
    count(Count::Deliveries(5));
    error(ErrorCode::NotInRoom);
    latency(Duration::from_micros(40));
    let after = snapshot();
    assert_eq!(after.logins - before.logins, 1);
    assert_eq!(after.deliveries - before.deliveries, 5);
    assert_eq!(
        after.errors[ErrorCode::NotInRoom as usize] - before.errors[ErrorCode::NotInRoom as usize],
        1
    );
    assert_eq!(
        after.latency_buckets[2] - before.latency_buckets[2],
        1,
        "40 us falls in le=50us"
    );
    let other = std::thread::spawn(snapshot).join().unwrap();
    assert_eq!(
        other,
        Counters::default(),
        "another thread (shard) has its own counters"
    );
}

#[test]
fn render_sums_shards_into_prometheus_text() {
    let mut a = Counters {
        logins: 2,
        token_refreshes: 14,
        ..Counters::default()
    };
    a.errors[ErrorCode::SlowConsumer as usize] = 1;
    let b = Counters {
        logins: 3,
        latency_buckets: [1; 15],
        ..Counters::default()
    };
    let shards = two_shards(a, b);
    let text = render(&shards, true);
    assert!(text.contains("corecast_logins_total 5\n"));
    assert!(text.contains("corecast_errors_total{code=\"SLOW_CONSUMER\"} 1\n"));
    assert!(text.contains("corecast_connections{shard=\"1\"} 6\n"));
    assert!(text.contains("corecast_delivery_latency_seconds_bucket{le=\"+Inf\"} 15\n"));
    assert!(text.contains("corecast_ready 1\n"));
}

fn golden_shards() -> [ShardStats; 2] {
    let a = Counters {
        accepted: 1,
        logins: 2,
        token_refreshes: 14,
        joins: 3,
        leaves: 4,
        messages_in: 5,
        deliveries: 6,
        bytes_in: 7,
        bytes_out: 8,
        cross_shard: 9,
        replays: 10,
        replayed: 11,
        resumes_recovered: 12,
        resumes_not_recovered: 13,
        disconnects: std::array::from_fn(|i| 10 + i as u64),
        errors: std::array::from_fn(|i| 20 + i as u64),
        latency_buckets: std::array::from_fn(|i| 40 + i as u64),
        latency_sum_us: 1_234_567,
    };
    let b = Counters {
        accepted: 100,
        logins: 200,
        token_refreshes: 1400,
        joins: 300,
        leaves: 400,
        messages_in: 500,
        deliveries: 600,
        bytes_in: 700,
        bytes_out: 800,
        cross_shard: 900,
        replays: 1000,
        replayed: 1100,
        resumes_recovered: 1200,
        resumes_not_recovered: 1300,
        disconnects: [1000; 10],
        errors: [2000; N_CODES],
        latency_buckets: [3000; 15],
        latency_sum_us: 5_000_000,
    };
    two_shards(a, b)
}

/// The full exposition of `golden_shards`, as rendered before the counters were
/// declared by table: every existing series must stay byte-identical (v1.1 only added
/// series: history, resumes, SESSION_REPLACED and the new error codes; JWT refreshes
/// and the token_expired disconnect reason).
const GOLDEN: &str = r#"# HELP corecast_connections_accepted_total Connections accepted.
# TYPE corecast_connections_accepted_total counter
corecast_connections_accepted_total 101
# HELP corecast_logins_total Successful logins.
# TYPE corecast_logins_total counter
corecast_logins_total 202
# HELP corecast_token_refreshes_total Signed tokens (JWT) refreshed on a logged-in connection.
# TYPE corecast_token_refreshes_total counter
corecast_token_refreshes_total 1414
# HELP corecast_joins_total Successful joins.
# TYPE corecast_joins_total counter
corecast_joins_total 303
# HELP corecast_leaves_total Successful leave requests (disconnects not included).
# TYPE corecast_leaves_total counter
corecast_leaves_total 404
# HELP corecast_messages_in_total Messages accepted by their room's owner.
# TYPE corecast_messages_in_total counter
corecast_messages_in_total 505
# HELP corecast_deliveries_total Frames queued to recipients by fan-out (messages, join and leave notifications).
# TYPE corecast_deliveries_total counter
corecast_deliveries_total 606
# HELP corecast_bytes_in_total Bytes read from clients.
# TYPE corecast_bytes_in_total counter
corecast_bytes_in_total 707
# HELP corecast_bytes_out_total Bytes written to clients.
# TYPE corecast_bytes_out_total counter
corecast_bytes_out_total 808
# HELP corecast_cross_shard_messages_total Messages sent between shards.
# TYPE corecast_cross_shard_messages_total counter
corecast_cross_shard_messages_total 909
# HELP corecast_history_replays_total Joins that replayed retained messages (a resume or a history_limit).
# TYPE corecast_history_replays_total counter
corecast_history_replays_total 1010
# HELP corecast_history_replayed_messages_total Retained messages replayed to joiners.
# TYPE corecast_history_replayed_messages_total counter
corecast_history_replayed_messages_total 1111
# HELP corecast_resumes_recovered_total Resumes (since_seq > 0) that found every message they asked for.
# TYPE corecast_resumes_recovered_total counter
corecast_resumes_recovered_total 1212
# HELP corecast_resumes_not_recovered_total Resumes told recovered=false (another epoch, or history that no longer reaches back).
# TYPE corecast_resumes_not_recovered_total counter
corecast_resumes_not_recovered_total 1313
# HELP corecast_disconnects_total Connections ended, by reason.
# TYPE corecast_disconnects_total counter
corecast_disconnects_total{reason="client_closed"} 1010
corecast_disconnects_total{reason="idle_timeout"} 1011
corecast_disconnects_total{reason="frame_timeout"} 1012
corecast_disconnects_total{reason="login_timeout"} 1013
corecast_disconnects_total{reason="slow_consumer"} 1014
corecast_disconnects_total{reason="protocol_error"} 1015
corecast_disconnects_total{reason="shutdown"} 1016
corecast_disconnects_total{reason="server_full"} 1017
corecast_disconnects_total{reason="session_replaced"} 1018
corecast_disconnects_total{reason="token_expired"} 1019
# HELP corecast_errors_total Error codes sent to clients.
# TYPE corecast_errors_total counter
corecast_errors_total{code="INTERNAL_SERVER_ERROR"} 2021
corecast_errors_total{code="FAILED_PRECONDITION"} 2022
corecast_errors_total{code="UNAUTHORIZED"} 2023
corecast_errors_total{code="ALREADY_LOGGED_IN"} 2024
corecast_errors_total{code="ALREADY_JOINED_THE_ROOM"} 2025
corecast_errors_total{code="ROOM_IS_FULL"} 2026
corecast_errors_total{code="ROOM_NOT_FOUND"} 2027
corecast_errors_total{code="ROOM_CONFIG_DOES_NOT_MATCH"} 2028
corecast_errors_total{code="BAD_REQUEST"} 2029
corecast_errors_total{code="FRAME_TOO_LARGE"} 2030
corecast_errors_total{code="NOT_IN_ROOM"} 2031
corecast_errors_total{code="SLOW_CONSUMER"} 2032
corecast_errors_total{code="SERVER_SHUTTING_DOWN"} 2033
corecast_errors_total{code="RATE_LIMITED"} 2034
corecast_errors_total{code="SERVER_FULL"} 2035
corecast_errors_total{code="SESSION_REPLACED"} 2036
corecast_errors_total{code="FORBIDDEN"} 2037
corecast_errors_total{code="DISCONNECTED"} 2038
# HELP corecast_connections Open connections, per shard.
# TYPE corecast_connections gauge
corecast_connections{shard="0"} 4
corecast_connections{shard="1"} 6
# HELP corecast_rooms Rooms, per owner shard.
# TYPE corecast_rooms gauge
corecast_rooms{shard="0"} 1
corecast_rooms{shard="1"} 2
# HELP corecast_inbox_depth Batches waiting in a shard's inbox.
# TYPE corecast_inbox_depth gauge
corecast_inbox_depth{shard="0"} 0
corecast_inbox_depth{shard="1"} 3
# HELP corecast_outbound_bytes Bytes queued for clients and not yet written, per shard.
# TYPE corecast_outbound_bytes gauge
corecast_outbound_bytes{shard="0"} 0
corecast_outbound_bytes{shard="1"} 4096
# HELP corecast_history_messages Messages retained for resume and replay, per owner shard.
# TYPE corecast_history_messages gauge
corecast_history_messages{shard="0"} 5
corecast_history_messages{shard="1"} 0
# HELP corecast_history_bytes Bytes retained for resume and replay, per owner shard.
# TYPE corecast_history_bytes gauge
corecast_history_bytes{shard="0"} 500
corecast_history_bytes{shard="1"} 0
# HELP corecast_delivery_latency_seconds Time a connection's outbound queue stayed non-empty: from the start of the shard turn that queued a frame into an empty queue to the write that emptied it (one sample per busy period).
# TYPE corecast_delivery_latency_seconds histogram
corecast_delivery_latency_seconds_bucket{le="0.00001"} 3040
corecast_delivery_latency_seconds_bucket{le="0.000025"} 6081
corecast_delivery_latency_seconds_bucket{le="0.00005"} 9123
corecast_delivery_latency_seconds_bucket{le="0.0001"} 12166
corecast_delivery_latency_seconds_bucket{le="0.00025"} 15210
corecast_delivery_latency_seconds_bucket{le="0.0005"} 18255
corecast_delivery_latency_seconds_bucket{le="0.001"} 21301
corecast_delivery_latency_seconds_bucket{le="0.0025"} 24348
corecast_delivery_latency_seconds_bucket{le="0.005"} 27396
corecast_delivery_latency_seconds_bucket{le="0.01"} 30445
corecast_delivery_latency_seconds_bucket{le="0.025"} 33495
corecast_delivery_latency_seconds_bucket{le="0.05"} 36546
corecast_delivery_latency_seconds_bucket{le="0.1"} 39598
corecast_delivery_latency_seconds_bucket{le="1"} 42651
corecast_delivery_latency_seconds_bucket{le="+Inf"} 45705
corecast_delivery_latency_seconds_sum 6.234567
corecast_delivery_latency_seconds_count 45705
# HELP corecast_ready 1 while accepting connections.
# TYPE corecast_ready gauge
corecast_ready 1
"#;

#[test]
fn render_is_pinned_byte_for_byte() {
    assert_eq!(render(&golden_shards(), true), GOLDEN);
}

/// Two shards' figures around the counters `a` and `b`.
fn two_shards(a: Counters, b: Counters) -> [ShardStats; 2] {
    [
        ShardStats {
            shard: 0,
            counters: a,
            connections: 4,
            rooms: 1,
            inbox_depth: 0,
            outbound_bytes: 0,
            history_messages: 5,
            history_bytes: 500,
        },
        ShardStats {
            shard: 1,
            counters: b,
            connections: 6,
            rooms: 2,
            inbox_depth: 3,
            outbound_bytes: 4096,
            history_messages: 0,
            history_bytes: 0,
        },
    ]
}
