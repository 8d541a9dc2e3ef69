//! The command line (clap derive). Every scenario is a subcommand with its own
//! parameters plus the shared target, load and output options.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::jwt::Minter;
use crate::targets::{Target, Transport};
use crate::worker::DropMode;

const ABOUT: &str =
    "Open-loop load generator for corecast (and Redis pub/sub, NATS core for comparison).";

const LONG_ABOUT: &str = "\
Open-loop load generator for corecast (and Redis pub/sub, NATS core for comparison).

Every sender follows its own schedule (constant rate, or Poisson arrivals with
--poisson) that never waits for the server. Each body carries the *scheduled* send
time (CLOCK_MONOTONIC ns), the sender id and a per-sender counter, padded to
--body-size. A delivery's latency is its receive time minus its scheduled send time,
so server stalls and harness stalls both show up as latency (no coordinated omission).

Every delivery is checked: loss, duplicates, each sender's order, and on corecast the
room seq (increasing, no gaps). A run with loss says so loudly and exits 1 unless
--tolerate-loss.

Phases: connect and join everything, then warm-up (--warmup, excluded), the measured
window (--duration), then a drain (--drain) for late deliveries; what has not arrived
by then is lost.

Output files (--json, --hgrm, --plot) are checked before any connection is made.
Progress goes to stderr: a bar on a terminal, otherwise one plain line a second
(--quiet: neither); the report goes to stdout.

Scenarios:
  fanout   R rooms of M members, S senders per room
  chat     every member of every room sends
  churn    members join and leave at a rate while others broadcast
  connect  N clients connect and log in: connect+login latency and logins/s
  idle     hold N connections, report server RSS per connection
  burst    B messages per sender back to back; only stalled members may be cut
  reconnect  fanout in which a share of members drop their connection and resume
  plot     overlay saved --json runs in one latency-by-percentile SVG
  table    print saved --json runs side by side as a Markdown table

Server cost: with --server-pid, reads /proc/PID/stat and /proc/PID/status around the
window: server CPU us per 1000 deliveries and RSS per connection. The harness's own
CPU is always reported; near 100% of a core means the generator is the bottleneck.

Example:
  corecast-load fanout --addr 127.0.0.1:7878 --rooms 10 --members 100 --senders 1 \\
      --rate 200 --duration 10s --json run.json --plot run.svg";

/// corecast-load: the load-test harness.
#[derive(Debug, Parser)]
#[command(name = "corecast-load", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    /// The scenario.
    #[command(subcommand)]
    pub command: Command,
}

/// Scenarios and tools.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// R rooms of M members; S of each room's members broadcast at --rate each.
    Fanout(FanoutArgs),
    /// Every member of every room broadcasts at --rate.
    Chat(ChatArgs),
    /// Churners join and leave at --churn-rate while senders broadcast.
    Churn(ChurnArgs),
    /// N clients connect and log in (as fast as possible, or at --connect-rate).
    Connect(ConnectArgs),
    /// Hold N connections (over several processes if needed); report server RSS per connection.
    Idle(IdleArgs),
    /// Each sender writes --burst messages back to back; stalled members must be cut,
    /// nobody else (corecast only).
    Burst(BurstArgs),
    /// Fanout in which --drop-share of the members drop their connection and resume
    /// it (replace_existing, since_seq): every message exactly once per member across
    /// its connections (corecast only).
    Reconnect(ReconnectArgs),
    /// Overlay saved --json reports in one latency-by-percentile SVG.
    Plot(PlotArgs),
    /// Print saved --json reports side by side as a Markdown table.
    Table(TableArgs),
    /// Internal: one child process of `idle`.
    #[command(hide = true)]
    IdleChild(IdleChildArgs),
}

/// Which server, where, and how the harness connects.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Server kind.
    #[arg(long, value_enum, default_value_t = Target::Corecast)]
    pub target: Target,
    /// Server address (with --transport ws: the server's --ws-listen address).
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub addr: SocketAddr,
    /// How to reach the server: tcp, or ws (corecast only: a WebSocket upgrade on
    /// /ws at --addr, then one masked binary frame per message).
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    pub transport: Transport,
    /// Bearer token for corecast's login (auth_token in NATS CONNECT).
    #[arg(long, env = "CORECAST_AUTH_TOKEN")]
    pub token: Option<String>,
    /// corecast with JWT on (--jwt-secret-file on the server): every login carries an
    /// HS256 token minted with the secret in FILE (trailing newline ignored, at least
    /// 32 bytes), sub = the player id. Minted before anything connects.
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub jwt_secret_file: Option<PathBuf>,
    /// corecast with JWT on (--jwt-public-key on the server): every login carries a
    /// token signed with this private key (PKCS#8 PEM: RS256, ES256 or EdDSA, told
    /// apart by the key), sub = the player id. Minted before anything connects.
    #[arg(long, value_name = "PEM", conflicts_with_all = ["token", "jwt_secret_file"])]
    pub jwt_private_key: Option<PathBuf>,
    /// How long minted tokens stay valid (exp = now + this; default: the run's longest
    /// possible length plus 1 h). Needs --jwt-secret-file or --jwt-private-key.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub jwt_ttl: Option<f64>,
    /// The server's pid: report its CPU and RSS over the window (from /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Harness threads (rooms or clients are split over them).
    #[arg(long, default_value_t = 1, value_parser = parse_count)]
    pub threads: usize,
    /// Spread connections over this many loopback source addresses 127.0.0.2..
    /// (0: kernel's choice; at most 254, up to 127.0.0.255). Each source address has
    /// its own ~28k ephemeral ports.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=254))]
    pub source_addrs: u8,
}

/// How the clients are set up before a measured run (`connect` measures the setup
/// itself and has its own `--concurrency` and `--timeout` instead).
#[derive(Debug, Clone, Args)]
pub struct SetupArgs {
    /// Handshakes (connect, login, join) in flight at once while setting up.
    #[arg(long, default_value_t = 256, value_parser = parse_count)]
    pub setup_concurrency: usize,
    /// Give up setting up after this long.
    #[arg(long, default_value = "60s", value_parser = parse_positive_duration)]
    pub setup_timeout: f64,
}

impl SetupArgs {
    /// `--setup-timeout` in nanoseconds.
    pub fn timeout_ns(&self) -> u64 {
        (self.setup_timeout * 1e9) as u64
    }
}

/// The open-loop load and how it is measured.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Messages per second per sender (a positive number).
    #[arg(long, default_value_t = 100.0, value_parser = parse_rate)]
    pub rate: f64,
    /// Poisson arrivals (exponential gaps) instead of a constant rate.
    #[arg(long)]
    pub poisson: bool,
    /// Body size in bytes (at least 20: the stamp).
    #[arg(long, default_value_t = 64, value_parser = parse_body_size)]
    pub body_size: usize,
    /// Measured window (e.g. 10s, 500ms, 2m; more than zero).
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    pub duration: f64,
    /// Warm-up before the window, excluded from results.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: f64,
    /// After sending stops, wait this long for late deliveries; later ones are lost.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub drain: f64,
    /// Seed of the arrival and phase randomness.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Exit 0 even if messages were lost, duplicated or reordered.
    #[arg(long)]
    pub tolerate_loss: bool,
    /// Step the rate up (x --step-factor) until achieved < --min-achieved of offered or
    /// p99 > --p99-limit-ms; report the highest sustainable rate.
    #[arg(long)]
    pub find_max: bool,
    /// --find-max: p99 latency limit, milliseconds.
    #[arg(long, default_value_t = 5.0, value_parser = parse_positive)]
    pub p99_limit_ms: f64,
    /// --find-max: lowest acceptable achieved/offered deliveries (above 0, at most 1).
    #[arg(long, default_value_t = 0.99, value_parser = parse_fraction)]
    pub min_achieved: f64,
    /// --find-max: rate multiplier per step (above 1).
    #[arg(long, default_value_t = 1.5, value_parser = parse_step_factor)]
    pub step_factor: f64,
    /// --find-max: most steps.
    #[arg(long, default_value_t = 12, value_parser = parse_count)]
    pub max_steps: usize,
    /// Poll instead of sleeping when the next send is this close, microseconds (burns
    /// harness CPU for sharper schedules).
    #[arg(long, default_value_t = 0)]
    pub spin_us: u64,
    /// Debug: sender 0 silently skips this counter value (checks must report 1 loss
    /// per member of its room).
    #[arg(long, hide = true)]
    pub debug_skip_counter: Option<u64>,
}

/// Where results go.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Write the report as JSON (input of `plot`).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the latency histogram as HdrHistogram percentile-distribution text.
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Write a latency-by-percentile SVG of this run.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Legend label (default: "<target> <scenario>").
    #[arg(long)]
    pub label: Option<String>,
    /// No progress (a bar on a terminal, else one line per second on stderr).
    #[arg(long, short)]
    pub quiet: bool,
}

/// `fanout`.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// Rooms.
    #[arg(long, default_value_t = 1, value_parser = parse_count)]
    pub rooms: usize,
    /// Members per room (senders included).
    #[arg(long, default_value_t = 100, value_parser = parse_count)]
    pub members: usize,
    /// Senders per room.
    #[arg(long, default_value_t = 1, value_parser = parse_count)]
    pub senders: usize,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub run: BroadcastArgs,
}

/// What every broadcast scenario (fanout, chat, churn) takes besides its rooms.
#[derive(Debug, Clone, Args)]
pub struct BroadcastArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: TargetArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub setup: SetupArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub load: LoadArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub out: OutputArgs,
}

/// `chat`.
#[derive(Debug, Clone, Args)]
pub struct ChatArgs {
    /// Rooms.
    #[arg(long, default_value_t = 10, value_parser = parse_count)]
    pub rooms: usize,
    /// Members per room, every one a sender.
    #[arg(long, default_value_t = 10, value_parser = parse_count)]
    pub members: usize,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub run: BroadcastArgs,
}

/// `churn`.
#[derive(Debug, Clone, Args)]
pub struct ChurnArgs {
    /// Rooms.
    #[arg(long, default_value_t = 1, value_parser = parse_count)]
    pub rooms: usize,
    /// Members per room that stay for the whole run (senders included).
    #[arg(long, default_value_t = 50, value_parser = parse_count)]
    pub members: usize,
    /// Senders per room.
    #[arg(long, default_value_t = 1, value_parser = parse_count)]
    pub senders: usize,
    /// Extra members per room that join and leave.
    #[arg(long, default_value_t = 10, value_parser = parse_count)]
    pub churners: usize,
    /// Joins plus leaves per second, over all churners (a positive number).
    #[arg(long, default_value_t = 100.0, value_parser = parse_rate)]
    pub churn_rate: f64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub run: BroadcastArgs,
}

/// `reconnect`.
#[derive(Debug, Clone, Args)]
pub struct ReconnectArgs {
    /// Rooms.
    #[arg(long, default_value_t = 10, value_parser = parse_count)]
    pub rooms: usize,
    /// Members per room (senders and dropping members included).
    #[arg(long, default_value_t = 20, value_parser = parse_count)]
    pub members: usize,
    /// Senders per room (they never drop).
    #[arg(long, default_value_t = 1, value_parser = parse_count)]
    pub senders: usize,
    /// Share of each room's members that drop their connection and resume (rounded,
    /// at least 1; never more than the members that do not send).
    #[arg(long, default_value_t = 0.2, value_parser = parse_fraction)]
    pub drop_share: f64,
    /// Drops per second over all dropping members (Poisson arrivals); a drop due while
    /// the member is still reconnecting is skipped.
    #[arg(long, default_value_t = 5.0, value_parser = parse_rate)]
    pub drops_per_second: f64,
    /// close: close the old socket, then reconnect; replace: leave it open (the new
    /// login's replace_existing must close it with SESSION_REPLACED); mixed: each
    /// member alternates, starting with close.
    #[arg(long, value_enum, default_value_t = DropMode::Mixed)]
    pub drop_mode: DropMode,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub run: BroadcastArgs,
}

impl ReconnectArgs {
    /// Dropping members per room: `--drop-share` of the members, rounded, at least 1,
    /// at most the members that do not send (0 when every member sends).
    pub fn droppers(&self) -> usize {
        let wanted = ((self.members as f64 * self.drop_share).round() as usize).max(1);
        wanted.min(self.members.saturating_sub(self.senders))
    }
}

/// `connect`.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Clients (each connects and logs in once, then stays connected until the end).
    #[arg(long, default_value_t = 1000, value_parser = parse_count)]
    pub clients: usize,
    /// Connects per second, open loop (default: as fast as --concurrency allows).
    #[arg(long, value_parser = parse_rate)]
    pub connect_rate: Option<f64>,
    /// Poisson arrivals for --connect-rate.
    #[arg(long)]
    pub poisson: bool,
    /// Handshakes in flight at once when unpaced.
    #[arg(long, default_value_t = 64, value_parser = parse_count)]
    pub concurrency: usize,
    /// Give up after this long.
    #[arg(long, default_value = "60s", value_parser = parse_positive_duration)]
    pub timeout: f64,
    /// Exit 0 even if some clients failed.
    #[arg(long)]
    pub tolerate_loss: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: TargetArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub out: OutputArgs,
}

/// `idle`.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// Connections to hold.
    #[arg(long, default_value_t = 10_000, value_parser = parse_count)]
    pub connections: usize,
    /// Also join them to this many rooms (0: logged in only).
    #[arg(long, default_value_t = 0)]
    pub rooms: usize,
    /// How long to hold them before the final RSS sample.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub hold: f64,
    /// Connections per process; above it, child processes hold the rest (the file
    /// limit here is 20,000 per process).
    #[arg(long, default_value_t = 19_000, value_parser = parse_count)]
    pub per_process: usize,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub run: UnpacedArgs,
}

/// What the scenarios without an open-loop load (idle, burst) take besides their own
/// parameters.
#[derive(Debug, Clone, Args)]
pub struct UnpacedArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: TargetArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub setup: SetupArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub out: IdleOutputArgs,
}

/// Where `idle`'s results go: it has no latencies, so no `--hgrm` or `--plot` (refused
/// rather than silently not written).
#[derive(Debug, Clone, Args)]
pub struct IdleOutputArgs {
    /// Write the report as JSON (input of `table`).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Legend label (default: "<target> <scenario>").
    #[arg(long)]
    pub label: Option<String>,
    /// No progress lines.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `burst`.
#[derive(Debug, Clone, Args)]
pub struct BurstArgs {
    /// Rooms.
    #[arg(long, default_value_t = 1, value_parser = parse_count)]
    pub rooms: usize,
    /// Members per room (senders and stalled members included).
    #[arg(long, default_value_t = 10, value_parser = parse_count)]
    pub members: usize,
    /// Senders per room (members that also send; they read like healthy members).
    #[arg(long, default_value_t = 1, value_parser = parse_count)]
    pub senders: usize,
    /// Messages each sender writes back to back, as fast as its socket takes them.
    #[arg(long, default_value_t = 1000, value_parser = parse_count)]
    pub burst: usize,
    /// Body size in bytes (at least 20: the stamp; at most what fits in corecast's
    /// default frame limit).
    #[arg(long, default_value_t = 16_000, value_parser = parse_burst_body_size)]
    pub body_size: usize,
    /// Members per room that never read (SO_RCVBUF 4096): expected to be cut.
    #[arg(long, default_value_t = 0)]
    pub stalled: usize,
    /// Give up waiting for the healthy members' deliveries after this long.
    #[arg(long, default_value = "60s", value_parser = parse_positive_duration)]
    pub timeout: f64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub run: UnpacedArgs,
}

/// The hidden child of `idle`.
#[derive(Debug, Clone, Args)]
pub struct IdleChildArgs {
    /// Connections in this child.
    #[arg(long)]
    pub connections: usize,
    /// Rooms to spread them over (0: none).
    #[arg(long, default_value_t = 0)]
    pub rooms: usize,
    /// Name prefix.
    #[arg(long)]
    pub prefix: String,
    /// Source address for this child's connections.
    #[arg(long)]
    pub source: Option<std::net::IpAddr>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: TargetArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub setup: SetupArgs,
}

/// `plot`.
#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// Output SVG.
    #[arg(long)]
    pub out: PathBuf,
    /// Title.
    #[arg(long, default_value = "latency by percentile")]
    pub title: String,
    /// Logarithmic latency axis (whole decades): curves far apart stay readable.
    #[arg(long)]
    pub log_y: bool,
    /// Reports written with --json.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

/// `table`.
#[derive(Debug, Clone, Args)]
pub struct TableArgs {
    /// Reports written with --json.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

/// The longest duration any option takes: 30 days (longer ones would overflow the
/// nanosecond clock arithmetic, and no run is that long).
pub const MAX_DURATION_S: f64 = 30.0 * 86_400.0;

/// Parses "10", "10s", "250ms", "2m", "1.5s", "100us" into seconds (zero allowed, at
/// most [`MAX_DURATION_S`]).
pub fn parse_duration(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?} (e.g. 10s, 250ms, 2m)"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "m" | "min" => 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (use s, ms, us or m)")),
    };
    let seconds = value * scale;
    if seconds > MAX_DURATION_S {
        return Err(format!("{s:?} is longer than 30 days"));
    }
    Ok(seconds)
}

/// A duration that must be more than zero (the measured window, timeouts).
pub fn parse_positive_duration(s: &str) -> Result<f64, String> {
    let seconds = parse_duration(s)?;
    if seconds > 0.0 {
        Ok(seconds)
    } else {
        Err("must be more than zero".into())
    }
}

/// A finite number above zero.
pub fn parse_positive(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err("must be a finite number above zero".into()),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

/// A rate per second: a finite number above zero (nothing would be sent at 0).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    parse_positive(s).map_err(|e| format!("{e} (a rate per second)"))
}

/// A share: above zero, at most 1.
pub fn parse_fraction(s: &str) -> Result<f64, String> {
    match parse_positive(s) {
        Ok(v) if v <= 1.0 => Ok(v),
        Ok(_) => Err("must be at most 1 (a share, e.g. 0.99)".into()),
        Err(e) => Err(e),
    }
}

/// --step-factor: above 1, or --find-max would never raise the rate.
pub fn parse_step_factor(s: &str) -> Result<f64, String> {
    match parse_positive(s) {
        Ok(v) if v > 1.0 => Ok(v),
        Ok(_) => Err("must be above 1 (each step multiplies the rate by it)".into()),
        Err(e) => Err(e),
    }
}

/// A count of at least 1 (rooms, members, clients, threads, ...).
pub fn parse_count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// --body-size: at least the stamp every body carries.
pub fn parse_body_size(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= crate::body::STAMP_LEN => Ok(n),
        Ok(_) => Err(format!(
            "must be at least {} (the stamp every body carries)",
            crate::body::STAMP_LEN
        )),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// The largest `burst --body-size`: a SendMessage frame (body, room name, protobuf
/// tags) must fit in corecast's default frame limit; 256 bytes are kept for the rest.
pub const MAX_BURST_BODY: usize = corecast::frame::DEFAULT_MAX_FRAME_BYTES - 256;

/// burst's --body-size: at least the stamp, at most [`MAX_BURST_BODY`].
pub fn parse_burst_body_size(s: &str) -> Result<usize, String> {
    let n = parse_body_size(s)?;
    if n > MAX_BURST_BODY {
        return Err(format!(
            "must be at most {MAX_BURST_BODY} (a message must fit in corecast's default \
             frame limit of {} bytes)",
            corecast::frame::DEFAULT_MAX_FRAME_BYTES
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Ok(10.0));
        assert_eq!(parse_duration("250ms"), Ok(0.25));
        assert_eq!(parse_duration("2m"), Ok(120.0));
        assert!(parse_duration("3h").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn setup_options_are_taken_where_they_apply_and_refused_elsewhere() {
        use clap::Parser;
        let parse = |args: &[&str]| Cli::try_parse_from([&["corecast-load"], args].concat());
        for scenario in ["fanout", "chat", "churn", "idle", "burst", "reconnect"] {
            let cli = parse(&[
                scenario,
                "--setup-timeout",
                "5s",
                "--setup-concurrency",
                "8",
            ])
            .unwrap_or_else(|e| panic!("{scenario}: {e}"));
            let setup = match cli.command {
                Command::Fanout(a) => a.run.setup,
                Command::Chat(a) => a.run.setup,
                Command::Churn(a) => a.run.setup,
                Command::Idle(a) => a.run.setup,
                Command::Burst(a) => a.run.setup,
                Command::Reconnect(a) => a.run.setup,
                other => panic!("{other:?}"),
            };
            assert_eq!((setup.setup_timeout, setup.setup_concurrency), (5.0, 8));
        }
        let err = parse(&["connect", "--setup-timeout", "5s"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        use clap::Parser;
        Cli::try_parse_from([&["corecast-load"], args].concat())
    }

    #[test]
    fn meaningless_values_are_refused_by_the_parser() {
        let refused: &[(&[&str], &str)] = &[
            (
                &["fanout", "--rate", "0"],
                "must be a finite number above zero",
            ),
            (&["fanout", "--rate=-5"], "above zero"),
            (&["fanout", "--rate", "NaN"], "above zero"),
            (&["fanout", "--rate", "inf"], "above zero"),
            (&["chat", "--rate", "0"], "above zero"),
            (&["churn", "--rate", "0"], "above zero"),
            (&["churn", "--churn-rate", "0"], "above zero"),
            (&["connect", "--connect-rate", "0"], "above zero"),
            (&["fanout", "--duration", "0"], "must be more than zero"),
            (&["fanout", "--duration", "0ms"], "must be more than zero"),
            (&["fanout", "--duration=-1s"], "bad duration"),
            (&["fanout", "--duration", "31days"], "bad duration unit"),
            (&["fanout", "--warmup", "44641m"], "longer than 30 days"),
            (&["fanout", "--setup-timeout", "0"], "more than zero"),
            (&["connect", "--timeout", "0s"], "more than zero"),
            (&["fanout", "--rooms", "0"], "must be at least 1"),
            (&["fanout", "--members", "0"], "at least 1"),
            (&["fanout", "--senders", "0"], "at least 1"),
            (&["chat", "--rooms", "0"], "at least 1"),
            (&["chat", "--members", "0"], "at least 1"),
            (&["churn", "--churners", "0"], "at least 1"),
            (&["connect", "--clients", "0"], "at least 1"),
            (&["connect", "--concurrency", "0"], "at least 1"),
            (&["idle", "--connections", "0"], "at least 1"),
            (&["idle", "--per-process", "0"], "at least 1"),
            (&["fanout", "--threads", "0"], "at least 1"),
            (&["fanout", "--setup-concurrency", "0"], "at least 1"),
            (&["fanout", "--body-size", "19"], "at least 20"),
            (&["fanout", "--max-steps", "0"], "at least 1"),
            (&["fanout", "--step-factor", "1"], "must be above 1"),
            (&["fanout", "--min-achieved", "0"], "above zero"),
            (&["fanout", "--min-achieved", "1.5"], "at most 1"),
            (&["fanout", "--p99-limit-ms", "0"], "above zero"),
            (&["fanout", "--source-addrs", "255"], "0..=254"),
            (&["burst", "--burst", "0"], "at least 1"),
            (&["burst", "--body-size", "19"], "at least 20"),
            (&["burst", "--body-size", "65281"], "at most 65280"),
            (&["burst", "--body-size", "1000000"], "frame limit"),
            (&["burst", "--rooms", "0"], "at least 1"),
            (&["burst", "--members", "0"], "at least 1"),
            (&["burst", "--senders", "0"], "at least 1"),
            (&["burst", "--timeout", "0"], "more than zero"),
            (&["reconnect", "--drop-share", "0"], "above zero"),
            (&["reconnect", "--drop-share", "1.5"], "at most 1"),
            (&["reconnect", "--drops-per-second", "0"], "above zero"),
            (&["reconnect", "--members", "0"], "at least 1"),
        ];
        for (args, why) in refused {
            let err = parse(args).expect_err(&format!("{args:?} was accepted"));
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{args:?}: {err}"
            );
            let text = err.to_string();
            let last = args[args.len() - 1];
            let (flag, value) = last.split_once('=').unwrap_or((args[args.len() - 2], last));
            assert!(
                text.contains(&format!("invalid value '{value}' for '{flag} <")),
                "{args:?}: {text}"
            );
            assert!(text.contains(why), "{args:?}: {text}");
        }
    }

    #[test]
    fn edge_values_that_mean_something_are_taken() {
        let cli = parse(&[
            "fanout",
            "--rate",
            "0.5",
            "--warmup",
            "0",
            "--drain",
            "0s",
            "--duration",
            "30",
            "--source-addrs",
            "254",
            "--body-size",
            "20",
            "--min-achieved",
            "1",
        ])
        .unwrap();
        let Command::Fanout(a) = cli.command else {
            panic!("{cli:?}")
        };
        let load = a.run.load;
        assert_eq!((load.rate, load.warmup, load.drain), (0.5, 0.0, 0.0));
        assert_eq!((load.duration, load.body_size), (30.0, 20));
        assert_eq!(a.run.target.source_addrs, 254);
        assert_eq!(parse_duration("43200m"), Ok(MAX_DURATION_S));
        let cli = parse(&["idle", "--rooms", "0", "--hold", "0"]).unwrap();
        let Command::Idle(a) = cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!((a.rooms, a.hold), (0, 0.0));
    }

    #[test]
    fn burst_takes_its_parameters_and_the_largest_body_that_fits() {
        let cli = parse(&[
            "burst",
            "--rooms",
            "2",
            "--members",
            "4",
            "--senders",
            "1",
            "--burst",
            "200",
            "--body-size",
            "65280",
            "--stalled",
            "1",
            "--setup-timeout",
            "5s",
        ])
        .unwrap();
        let Command::Burst(a) = cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!((a.rooms, a.members, a.senders, a.stalled), (2, 4, 1, 1));
        assert_eq!((a.burst, a.body_size), (200, MAX_BURST_BODY));
        assert_eq!(a.run.setup.setup_timeout, 5.0);
        for flag in ["--hgrm", "--plot", "--rate"] {
            let err = parse(&["burst", flag, "1"]).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{flag}"
            );
        }
    }

    #[test]
    fn reconnect_drops_a_share_of_the_members_that_do_not_send() {
        let droppers = |args: &[&str]| {
            let cli = parse(&[&["reconnect"], args].concat()).unwrap();
            let Command::Reconnect(a) = cli.command else {
                panic!("{cli:?}")
            };
            (a.droppers(), a.drop_mode)
        };
        assert_eq!(droppers(&[]), (4, DropMode::Mixed), "0.2 of 20");
        assert_eq!(droppers(&["--members", "10", "--drop-share", "0.01"]).0, 1);
        assert_eq!(droppers(&["--members", "10", "--drop-share", "1"]).0, 9);
        assert_eq!(
            droppers(&["--members", "3", "--senders", "3", "--drop-mode", "replace"]),
            (0, DropMode::Replace)
        );
    }

    #[test]
    fn idle_refuses_outputs_it_would_not_write() {
        for flag in ["--hgrm", "--plot"] {
            let err = parse(&["idle", flag, "x"]).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{flag}"
            );
        }
        assert!(parse(&["idle", "--json", "x.json"]).is_ok());
    }
}

impl TargetArgs {
    /// The login-token minter the `--jwt-*` options describe (`None` without a key),
    /// for a run that lasts at most `run_s` seconds ([`Minter::from_options`]). Every
    /// scenario calls it before anything connects, so it refuses `--transport ws` for
    /// targets other than corecast too.
    pub fn minter(&self, run_s: f64) -> anyhow::Result<Option<std::sync::Arc<Minter>>> {
        if self.transport == Transport::Ws && self.target != Target::Corecast {
            anyhow::bail!(
                "--transport ws speaks corecast's WebSocket protocol; --target {} is reached over tcp only",
                self.target.name()
            );
        }
        Minter::from_options(
            self.jwt_secret_file.as_deref(),
            self.jwt_private_key.as_deref(),
            self.jwt_ttl,
            self.target,
            run_s,
        )
    }

    /// The target's name in reports: `corecast-ws` over WebSocket, else the target's.
    pub fn name(&self) -> &'static str {
        match (self.target, self.transport) {
            (Target::Corecast, Transport::Ws) => "corecast-ws",
            (t, _) => t.name(),
        }
    }
}

#[cfg(test)]
mod jwt_tests {
    use super::*;
    use crate::jwt::TTL_MARGIN_S;
    use corecast::auth::{unix_now, Expect, Verifier};

    fn target(args: &[&str]) -> TargetArgs {
        let cli = Cli::try_parse_from([&["corecast-load", "connect"], args].concat()).unwrap();
        let Command::Connect(a) = cli.command else {
            panic!("{cli:?}")
        };
        a.target
    }

    fn scratch(name: &str, contents: &[u8]) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("corecast-load-jwt-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn tokens_carry_the_player_and_verify_with_the_servers_key() {
        let secret = "s".repeat(40);
        let path = scratch("secret", format!("{secret}\n").as_bytes());
        let file = path.to_str().unwrap();
        let minter = target(&["--jwt-secret-file", file])
            .minter(10.0)
            .unwrap()
            .expect("a minter");
        assert_eq!(minter.ttl_s(), 10.0 + TTL_MARGIN_S);
        let token = minter.mint("L1-c7").unwrap();
        let verifier = Verifier::hs256(secret.as_bytes(), Expect::default()).unwrap();
        let identity = verifier.verify(&token, unix_now()).unwrap();
        assert_eq!(identity.sub, "L1-c7");
        assert!(identity.exp >= unix_now() + 3600, "{}", identity.exp);
        let minter = target(&["--jwt-secret-file", file, "--jwt-ttl", "2m"])
            .minter(10.0)
            .unwrap()
            .expect("a minter");
        assert_eq!(minter.ttl_s(), 120.0);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn refused_without_a_use_or_a_usable_key() {
        let short = scratch("short", b"too short\n");
        let short = short.to_str().unwrap();
        let err = |args: &[&str]| {
            format!(
                "{:#}",
                target(args).minter(1.0).expect_err(&format!("{args:?}"))
            )
        };
        let e = err(&["--target", "redis", "--jwt-secret-file", short]);
        assert!(e.contains("--target redis does not take it"), "{e}");
        let e = err(&["--target", "nats", "--jwt-private-key", "k.pem"]);
        assert!(
            e.contains("--jwt-private-key mints corecast login tokens"),
            "{e}"
        );
        let e = err(&["--jwt-ttl", "1m"]);
        assert!(e.contains("--jwt-ttl needs"), "{e}");
        let e = err(&["--jwt-secret-file", short]);
        assert!(e.contains("at least 32"), "{e}");
        let e = err(&["--jwt-private-key", "/nonexistent/k.pem"]);
        assert!(e.contains("--jwt-private-key /nonexistent/k.pem"), "{e}");
        assert!(target(&[]).minter(1.0).unwrap().is_none());
        for both in [
            &["--jwt-secret-file", "a", "--jwt-private-key", "b"][..],
            &["--token", "t", "--jwt-secret-file", "a"][..],
        ] {
            let e = Cli::try_parse_from([&["corecast-load", "fanout"], both].concat())
                .expect_err("mutually exclusive");
            assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        }
    }
}
