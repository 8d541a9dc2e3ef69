//! Server metrics. Counters live in a thread-local of each shard's thread (a shard is
//! one thread), so counting is a plain `Cell` add: no atomics, no sharing on the data
//! path. A scrape asks every shard for a snapshot through the channel mesh and sums
//! them.

pub mod process;

use std::cell::Cell;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::proto::ErrorCode;

/// Why a connection ended, for `corecast_disconnects_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// The client closed (or reset) the connection.
    ClientClosed,
    /// `--idle-timeout`.
    Idle,
    /// `--frame-timeout` (slowloris).
    FrameTimeout,
    /// `--login-timeout`.
    LoginTimeout,
    /// Cut as a slow consumer.
    SlowConsumer,
    /// Closed after a protocol error (FRAME_TOO_LARGE, BAD_REQUEST, UNAUTHORIZED).
    ProtocolError,
    /// Graceful shutdown.
    Shutdown,
    /// Refused: `--max-connections`.
    ServerFull,
}

const REASONS: [(Disconnect, &str); 8] = [
    (Disconnect::ClientClosed, "client_closed"),
    (Disconnect::Idle, "idle_timeout"),
    (Disconnect::FrameTimeout, "frame_timeout"),
    (Disconnect::LoginTimeout, "login_timeout"),
    (Disconnect::SlowConsumer, "slow_consumer"),
    (Disconnect::ProtocolError, "protocol_error"),
    (Disconnect::Shutdown, "shutdown"),
    (Disconnect::ServerFull, "server_full"),
];

/// Upper bounds of the delivery-latency histogram buckets, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

const N_CODES: usize = 16;

/// Counter values of one shard (or their sum).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Connections accepted.
    pub accepted: u64,
    /// Successful logins.
    pub logins: u64,
    /// Successful joins.
    pub joins: u64,
    /// Successful leaves (disconnects not included).
    pub leaves: u64,
    /// Messages accepted by their room's owner.
    pub messages_in: u64,
    /// Frames queued for recipients by fan-out.
    pub deliveries: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Messages sent to other shards.
    pub cross_shard: u64,
    /// Disconnects, by reason (`REASONS` order).
    pub disconnects: [u64; 8],
    /// Error frames sent, by `ErrorCode`.
    pub errors: [u64; N_CODES],
    /// Delivery latency histogram counts (`LATENCY_BUCKETS_US`, then +Inf).
    pub latency_buckets: [u64; 15],
    /// Sum of observed latencies, in microseconds.
    pub latency_sum_us: u64,
}

impl Counters {
    /// Adds another shard's counters.
    pub fn add(&mut self, other: &Counters) {
        self.accepted += other.accepted;
        self.logins += other.logins;
        self.joins += other.joins;
        self.leaves += other.leaves;
        self.messages_in += other.messages_in;
        self.deliveries += other.deliveries;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.cross_shard += other.cross_shard;
        add_all(&mut self.disconnects, &other.disconnects);
        add_all(&mut self.errors, &other.errors);
        add_all(&mut self.latency_buckets, &other.latency_buckets);
        self.latency_sum_us += other.latency_sum_us;
    }
}

fn add_all<const N: usize>(into: &mut [u64; N], from: &[u64; N]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

/// One shard's answer to a scrape.
#[derive(Debug, Clone, Default)]
pub struct ShardStats {
    /// The shard.
    pub shard: usize,
    /// Its counters.
    pub counters: Counters,
    /// Open sockets on it.
    pub connections: usize,
    /// Rooms it owns.
    pub rooms: usize,
    /// Batches waiting in its inbox.
    pub inbox_depth: usize,
}

struct Local {
    accepted: Cell<u64>,
    logins: Cell<u64>,
    joins: Cell<u64>,
    leaves: Cell<u64>,
    messages_in: Cell<u64>,
    deliveries: Cell<u64>,
    bytes_in: Cell<u64>,
    bytes_out: Cell<u64>,
    cross_shard: Cell<u64>,
    disconnects: [Cell<u64>; 8],
    errors: [Cell<u64>; N_CODES],
    latency_buckets: [Cell<u64>; 15],
    latency_sum_us: Cell<u64>,
}

thread_local! {
    /// When the shard began its current turn (an inbox batch, a read's frames).
    static TURN_STARTED: Cell<Option<Instant>> = const { Cell::new(None) };
    static LOCAL: Local = const {
        Local {
            accepted: Cell::new(0),
            logins: Cell::new(0),
            joins: Cell::new(0),
            leaves: Cell::new(0),
            messages_in: Cell::new(0),
            deliveries: Cell::new(0),
            bytes_in: Cell::new(0),
            bytes_out: Cell::new(0),
            cross_shard: Cell::new(0),
            disconnects: [const { Cell::new(0) }; 8],
            errors: [const { Cell::new(0) }; N_CODES],
            latency_buckets: [const { Cell::new(0) }; 15],
            latency_sum_us: Cell::new(0),
        }
    };
}

fn bump(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get().wrapping_add(n));
}

/// The counters a shard's code bumps.
#[derive(Debug, Clone, Copy)]
pub enum Count {
    /// A connection was accepted.
    Accepted,
    /// A login succeeded.
    Login,
    /// A join succeeded.
    Join,
    /// A leave succeeded.
    Leave,
    /// A message was accepted by its owner.
    MessageIn,
    /// Frames queued by fan-out.
    Deliveries(u64),
    /// Bytes read.
    BytesIn(u64),
    /// Bytes written.
    BytesOut(u64),
    /// Messages sent to other shards.
    CrossShard(u64),
}

/// The shard's current turn (a batch of frames read, or a batch from another shard):
/// frames queued while it lives are stamped with its start, so a fan-out to N members
/// costs one clock read, not N. Dropping it ends the turn, so a frame queued outside
/// any turn (a timeout's error, a shutdown notice) reads the clock itself instead of
/// taking a stale turn's start.
#[must_use = "the turn ends when this is dropped"]
pub struct Turn(());

impl Turn {
    /// Starts a turn at `now`.
    pub fn start(now: Instant) -> Turn {
        TURN_STARTED.with(|t| t.set(Some(now)));
        Turn(())
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        TURN_STARTED.with(|t| t.set(None));
    }
}

/// When the current turn started (the clock, outside any turn).
pub fn turn_started() -> Instant {
    TURN_STARTED.with(|t| t.get()).unwrap_or_else(Instant::now)
}

/// Adds to a counter of the current shard.
pub fn count(what: Count) {
    LOCAL.with(|l| match what {
        Count::Accepted => bump(&l.accepted, 1),
        Count::Login => bump(&l.logins, 1),
        Count::Join => bump(&l.joins, 1),
        Count::Leave => bump(&l.leaves, 1),
        Count::MessageIn => bump(&l.messages_in, 1),
        Count::Deliveries(n) => bump(&l.deliveries, n),
        Count::BytesIn(n) => bump(&l.bytes_in, n),
        Count::BytesOut(n) => bump(&l.bytes_out, n),
        Count::CrossShard(n) => bump(&l.cross_shard, n),
    });
}

/// Counts a disconnect.
pub fn disconnect(reason: Disconnect) {
    let index = REASONS.iter().position(|(r, _)| *r == reason).unwrap_or(0);
    LOCAL.with(|l| bump(&l.disconnects[index], 1));
}

/// Counts an error frame sent to a client.
pub fn error(code: ErrorCode) {
    let index = (code as usize).min(N_CODES - 1);
    LOCAL.with(|l| bump(&l.errors[index], 1));
}

/// Records one delivery latency (enqueue to written).
pub fn latency(elapsed: Duration) {
    let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    let bucket = LATENCY_BUCKETS_US
        .iter()
        .position(|&b| us <= b)
        .unwrap_or(LATENCY_BUCKETS_US.len());
    LOCAL.with(|l| {
        bump(&l.latency_buckets[bucket], 1);
        bump(&l.latency_sum_us, us);
    });
}

/// This shard's counters now.
pub fn snapshot() -> Counters {
    LOCAL.with(|l| Counters {
        accepted: l.accepted.get(),
        logins: l.logins.get(),
        joins: l.joins.get(),
        leaves: l.leaves.get(),
        messages_in: l.messages_in.get(),
        deliveries: l.deliveries.get(),
        bytes_in: l.bytes_in.get(),
        bytes_out: l.bytes_out.get(),
        cross_shard: l.cross_shard.get(),
        disconnects: l.disconnects.each_ref().map(Cell::get),
        errors: l.errors.each_ref().map(Cell::get),
        latency_buckets: l.latency_buckets.each_ref().map(Cell::get),
        latency_sum_us: l.latency_sum_us.get(),
    })
}

/// Renders every shard's stats as Prometheus text exposition format.
pub fn render(shards: &[ShardStats], ready: bool) -> String {
    let mut total = Counters::default();
    for s in shards {
        total.add(&s.counters);
    }
    let mut out = String::with_capacity(4096);
    let mut counter = |name: &str, help: &str, value: u64| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
        );
    };
    counter(
        "corecast_connections_accepted_total",
        "Connections accepted.",
        total.accepted,
    );
    counter("corecast_logins_total", "Successful logins.", total.logins);
    counter("corecast_joins_total", "Successful joins.", total.joins);
    counter(
        "corecast_leaves_total",
        "Successful leave requests (disconnects not included).",
        total.leaves,
    );
    counter(
        "corecast_messages_in_total",
        "Messages accepted by their room's owner.",
        total.messages_in,
    );
    counter(
        "corecast_deliveries_total",
        "Frames queued to recipients by fan-out (messages, join and leave notifications).",
        total.deliveries,
    );
    counter(
        "corecast_bytes_in_total",
        "Bytes read from clients.",
        total.bytes_in,
    );
    counter(
        "corecast_bytes_out_total",
        "Bytes written to clients.",
        total.bytes_out,
    );
    counter(
        "corecast_cross_shard_messages_total",
        "Messages sent between shards.",
        total.cross_shard,
    );
    let _ = write!(
        out,
        "# HELP corecast_disconnects_total Connections ended, by reason.\n# TYPE corecast_disconnects_total counter\n"
    );
    for (i, (_, reason)) in REASONS.iter().enumerate() {
        let _ = writeln!(
            out,
            "corecast_disconnects_total{{reason=\"{reason}\"}} {}",
            total.disconnects[i]
        );
    }
    let _ = write!(out, "# HELP corecast_errors_total Error codes sent to clients.\n# TYPE corecast_errors_total counter\n");
    for (i, &n) in total.errors.iter().enumerate() {
        if let Ok(code) = ErrorCode::try_from(i as i32) {
            if code != ErrorCode::None {
                let _ = writeln!(
                    out,
                    "corecast_errors_total{{code=\"{}\"}} {n}",
                    code.as_str_name()
                );
            }
        }
    }
    let _ = write!(out, "# HELP corecast_connections Open connections, per shard.\n# TYPE corecast_connections gauge\n");
    for s in shards {
        let _ = writeln!(
            out,
            "corecast_connections{{shard=\"{}\"}} {}",
            s.shard, s.connections
        );
    }
    let _ = write!(
        out,
        "# HELP corecast_rooms Rooms, per owner shard.\n# TYPE corecast_rooms gauge\n"
    );
    for s in shards {
        let _ = writeln!(out, "corecast_rooms{{shard=\"{}\"}} {}", s.shard, s.rooms);
    }
    let _ = write!(
        out,
        "# HELP corecast_inbox_depth Batches waiting in a shard's inbox.\n# TYPE corecast_inbox_depth gauge\n"
    );
    for s in shards {
        let _ = writeln!(
            out,
            "corecast_inbox_depth{{shard=\"{}\"}} {}",
            s.shard, s.inbox_depth
        );
    }
    let name = "corecast_delivery_latency_seconds";
    let _ = write!(
        out,
        "# HELP {name} Time a connection's outbound queue stayed non-empty: from the start of the shard turn that queued a frame into an empty queue to the write that emptied it (one sample per busy period).\n# TYPE {name} histogram\n"
    );
    let mut cumulative = 0;
    for (i, bound) in LATENCY_BUCKETS_US.iter().enumerate() {
        cumulative += total.latency_buckets[i];
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{}\"}} {cumulative}",
            *bound as f64 / 1e6
        );
    }
    cumulative += total.latency_buckets[LATENCY_BUCKETS_US.len()];
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {}", total.latency_sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {cumulative}");
    let _ = write!(
        out,
        "# HELP corecast_ready 1 while accepting connections.\n# TYPE corecast_ready gauge\n"
    );
    let _ = writeln!(out, "corecast_ready {}", u8::from(ready));
    out
}

#[cfg(test)]
mod tests {
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
            after.errors[ErrorCode::NotInRoom as usize]
                - before.errors[ErrorCode::NotInRoom as usize],
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
            ..Counters::default()
        };
        a.errors[ErrorCode::SlowConsumer as usize] = 1;
        let b = Counters {
            logins: 3,
            latency_buckets: [1; 15],
            ..Counters::default()
        };
        let shards = [
            ShardStats {
                shard: 0,
                counters: a,
                connections: 4,
                rooms: 1,
                inbox_depth: 0,
            },
            ShardStats {
                shard: 1,
                counters: b,
                connections: 6,
                rooms: 2,
                inbox_depth: 3,
            },
        ];
        let text = render(&shards, true);
        assert!(text.contains("corecast_logins_total 5\n"));
        assert!(text.contains("corecast_errors_total{code=\"SLOW_CONSUMER\"} 1\n"));
        assert!(text.contains("corecast_connections{shard=\"1\"} 6\n"));
        assert!(text.contains("corecast_delivery_latency_seconds_bucket{le=\"+Inf\"} 15\n"));
        assert!(text.contains("corecast_ready 1\n"));
    }
}
