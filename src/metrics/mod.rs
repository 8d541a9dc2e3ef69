//! Server metrics. Counters live in a thread-local of each shard's thread (a shard is
//! one thread), so counting is a plain `Cell` add: no atomics, no sharing on the data
//! path. A scrape asks every shard for a snapshot through the channel mesh and sums
//! them.
//!
//! The plain counters are declared once, in the `counters!` table below; the labelled
//! families (disconnects, errors, the latency histogram) are written out by hand.

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
    /// Replaced by a login of the same player with `replace_existing`.
    SessionReplaced,
    /// Its signed token expired without a refresh.
    TokenExpired,
}

const REASONS: [(Disconnect, &str); 10] = [
    (Disconnect::ClientClosed, "client_closed"),
    (Disconnect::Idle, "idle_timeout"),
    (Disconnect::FrameTimeout, "frame_timeout"),
    (Disconnect::LoginTimeout, "login_timeout"),
    (Disconnect::SlowConsumer, "slow_consumer"),
    (Disconnect::ProtocolError, "protocol_error"),
    (Disconnect::Shutdown, "shutdown"),
    (Disconnect::ServerFull, "server_full"),
    (Disconnect::SessionReplaced, "session_replaced"),
    (Disconnect::TokenExpired, "token_expired"),
];

/// Upper bounds of the delivery-latency histogram buckets, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

const N_REASONS: usize = REASONS.len();
const N_CODES: usize = 19;
/// `LATENCY_BUCKETS_US`, then +Inf.
const N_BUCKETS: usize = LATENCY_BUCKETS_US.len() + 1;

/// Expands the table of plain counters (invoked right below) into everything that
/// names them: the `Counters` fields, the `Count` variants, the thread-local cells,
/// `count` (one `Cell` add per variant), the snapshot, the sum and the rendered series.
macro_rules! counters {
    ($($field:ident: $variant:ident $(($payload:ty))? => $name:literal, $help:literal;)*) => {
        /// Counter values of one shard (or their sum).
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct Counters {
            $(#[doc = $help] pub $field: u64,)*
            /// Disconnects, by reason (`REASONS` order).
            pub disconnects: [u64; N_REASONS],
            /// Error frames sent, by `ErrorCode`.
            pub errors: [u64; N_CODES],
            /// Delivery latency histogram counts (`LATENCY_BUCKETS_US`, then +Inf).
            pub latency_buckets: [u64; N_BUCKETS],
            /// Sum of observed latencies, in microseconds.
            pub latency_sum_us: u64,
        }

        /// The counters a shard's code bumps: a bare variant counts one, a payload
        /// counts that many.
        #[derive(Debug, Clone, Copy)]
        pub enum Count {
            $(#[doc = concat!("`", $name, "`: ", $help)] $variant $(($payload))?,)*
        }

        /// A shard's counters, touched by its thread only.
        struct Local {
            $($field: Cell<u64>,)*
            disconnects: [Cell<u64>; N_REASONS],
            errors: [Cell<u64>; N_CODES],
            latency_buckets: [Cell<u64>; N_BUCKETS],
            latency_sum_us: Cell<u64>,
        }

        impl Local {
            const fn new() -> Local {
                Local {
                    $($field: Cell::new(0),)*
                    disconnects: [const { Cell::new(0) }; N_REASONS],
                    errors: [const { Cell::new(0) }; N_CODES],
                    latency_buckets: [const { Cell::new(0) }; N_BUCKETS],
                    latency_sum_us: Cell::new(0),
                }
            }

            fn snapshot(&self) -> Counters {
                Counters {
                    $($field: self.$field.get(),)*
                    disconnects: self.disconnects.each_ref().map(Cell::get),
                    errors: self.errors.each_ref().map(Cell::get),
                    latency_buckets: self.latency_buckets.each_ref().map(Cell::get),
                    latency_sum_us: self.latency_sum_us.get(),
                }
            }
        }

        /// Adds to a counter of the current shard.
        pub fn count(what: Count) {
            LOCAL.with(|l| match what {
                $(Count::$variant $((counters!(@bind n $payload)))? => {
                    bump(&l.$field, counters!(@amount $(n $payload)?))
                })*
            });
        }

        impl Counters {
            /// Adds another shard's counters.
            pub fn add(&mut self, other: &Counters) {
                $(self.$field += other.$field;)*
                add_all(&mut self.disconnects, &other.disconnects);
                add_all(&mut self.errors, &other.errors);
                add_all(&mut self.latency_buckets, &other.latency_buckets);
                self.latency_sum_us += other.latency_sum_us;
            }

            /// Writes the plain counters as Prometheus series, in table order.
            fn render_plain(&self, out: &mut String) {
                $(
                    family(out, $name, $help, "counter");
                    let _ = writeln!(out, "{} {}", $name, self.$field);
                )*
            }
        }
    };
    // A payload variant binds its amount as `n`; a bare one counts 1.
    (@bind $n:ident $payload:ty) => { $n };
    (@amount) => { 1 };
    (@amount $n:ident $payload:ty) => { $n };
}

// The plain counters: add a counter here, nowhere else. Each row is
// `field: CountVariant[(u64)] => "prometheus_name", "HELP text";` and its series is
// rendered in row order.
counters! {
    accepted: Accepted => "corecast_connections_accepted_total", "Connections accepted.";
    logins: Login => "corecast_logins_total", "Successful logins.";
    token_refreshes: TokenRefresh => "corecast_token_refreshes_total",
        "Signed tokens (JWT) refreshed on a logged-in connection.";
    joins: Join => "corecast_joins_total", "Successful joins.";
    leaves: Leave => "corecast_leaves_total",
        "Successful leave requests (disconnects not included).";
    messages_in: MessageIn => "corecast_messages_in_total",
        "Messages accepted by their room's owner.";
    deliveries: Deliveries(u64) => "corecast_deliveries_total",
        "Frames queued to recipients by fan-out (messages, join and leave notifications).";
    bytes_in: BytesIn(u64) => "corecast_bytes_in_total", "Bytes read from clients.";
    bytes_out: BytesOut(u64) => "corecast_bytes_out_total", "Bytes written to clients.";
    cross_shard: CrossShard(u64) => "corecast_cross_shard_messages_total",
        "Messages sent between shards.";
    replays: Replay => "corecast_history_replays_total",
        "Joins that replayed retained messages (a resume or a history_limit).";
    replayed: Replayed(u64) => "corecast_history_replayed_messages_total",
        "Retained messages replayed to joiners.";
    resumes_recovered: ResumeRecovered => "corecast_resumes_recovered_total",
        "Resumes (since_seq > 0) that found every message they asked for.";
    resumes_not_recovered: ResumeNotRecovered => "corecast_resumes_not_recovered_total",
        "Resumes told recovered=false (another epoch, or history that no longer reaches back).";
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
    /// Bytes queued for its clients (against `--max-shard-outbound-bytes`).
    pub outbound_bytes: usize,
    /// Messages retained by the rooms it owns.
    pub history_messages: usize,
    /// Bytes retained by the rooms it owns (against `--history-shard-bytes`).
    pub history_bytes: usize,
}

thread_local! {
    /// When the shard began its current turn (an inbox batch, a read's frames).
    static TURN_STARTED: Cell<Option<Instant>> = const { Cell::new(None) };
    static LOCAL: Local = const { Local::new() };
}

fn bump(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get().wrapping_add(n));
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
    LOCAL.with(Local::snapshot)
}

/// Writes a metric family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

/// Renders every shard's stats as Prometheus text exposition format.
pub fn render(shards: &[ShardStats], ready: bool) -> String {
    let mut total = Counters::default();
    for s in shards {
        total.add(&s.counters);
    }
    let mut out = String::with_capacity(4096);
    total.render_plain(&mut out);

    let name = "corecast_disconnects_total";
    family(&mut out, name, "Connections ended, by reason.", "counter");
    for ((_, reason), n) in REASONS.iter().zip(total.disconnects) {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {n}");
    }
    let name = "corecast_errors_total";
    family(&mut out, name, "Error codes sent to clients.", "counter");
    for (i, &n) in total.errors.iter().enumerate() {
        if let Ok(code) = ErrorCode::try_from(i as i32) {
            if code != ErrorCode::None {
                let _ = writeln!(out, "{name}{{code=\"{}\"}} {n}", code.as_str_name());
            }
        }
    }

    let mut gauge = |name: &str, help: &str, value: fn(&ShardStats) -> usize| {
        family(&mut out, name, help, "gauge");
        for s in shards {
            let _ = writeln!(out, "{name}{{shard=\"{}\"}} {}", s.shard, value(s));
        }
    };
    gauge(
        "corecast_connections",
        "Open connections, per shard.",
        |s| s.connections,
    );
    gauge("corecast_rooms", "Rooms, per owner shard.", |s| s.rooms);
    gauge(
        "corecast_inbox_depth",
        "Batches waiting in a shard's inbox.",
        |s| s.inbox_depth,
    );
    gauge(
        "corecast_outbound_bytes",
        "Bytes queued for clients and not yet written, per shard.",
        |s| s.outbound_bytes,
    );
    gauge(
        "corecast_history_messages",
        "Messages retained for resume and replay, per owner shard.",
        |s| s.history_messages,
    );
    gauge(
        "corecast_history_bytes",
        "Bytes retained for resume and replay, per owner shard.",
        |s| s.history_bytes,
    );

    let name = "corecast_delivery_latency_seconds";
    family(
        &mut out,
        name,
        "Time a connection's outbound queue stayed non-empty: from the start of the shard turn that queued a frame into an empty queue to the write that emptied it (one sample per busy period).",
        "histogram",
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

    family(
        &mut out,
        "corecast_ready",
        "1 while accepting connections.",
        "gauge",
    );
    let _ = writeln!(out, "corecast_ready {}", u8::from(ready));
    out
}

#[cfg(test)]
mod tests;
