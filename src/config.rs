//! Server configuration: the command line, with `CORECAST_*` environment fallbacks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

pub use crate::auth::secret::{strip_newline, Secret};
use crate::auth::{Expect, Verifier};

use crate::wire::frame::DEFAULT_MAX_FRAME_BYTES;

/// Default `--max-outbound-bytes`: 1 MiB per connection. It holds 16 maximum-size
/// frames or ~7,000 typical 150-byte notifications of backlog on top of the kernel's
/// own socket buffer, so a client that is briefly descheduled is never cut; and it
/// bounds what a stuck client can pin: 10,000 stuck clients queue at most 10 GiB of
/// frames (plus one response each).
pub const DEFAULT_MAX_OUTBOUND_BYTES: usize = 1024 * 1024;

/// Default `--max-shard-outbound-bytes`: 1 GiB per shard, so stuck clients cannot
/// queue more than that on any core, whatever their number (10,000 of them at 1 MiB
/// each would otherwise pin 10 GiB).
pub const DEFAULT_MAX_SHARD_OUTBOUND_BYTES: usize = 1 << 30;

/// Default `--history-messages`: the last 100 messages of each room are kept for
/// resume and `history_limit` replays.
pub const DEFAULT_HISTORY_MESSAGES: usize = 100;

/// Default `--history-bytes`: at most 256 KiB of frames per room (a quarter of a
/// connection's default queue limit, so one replay never cuts its joiner).
pub const DEFAULT_HISTORY_BYTES: usize = 256 * 1024;

/// Default `--history-shard-bytes`: 64 MiB of retained frames per shard, whatever the
/// number of rooms (the oldest go first, from any room).
pub const DEFAULT_HISTORY_SHARD_BYTES: usize = 64 * 1024 * 1024;

/// Default `--history-ttl`, in seconds: how long an empty room keeps its epoch, seq
/// and history for members coming back.
pub const DEFAULT_HISTORY_TTL: u64 = 300;

/// Default `--max-room-members`. A joiner receives every member's id: at 10,000
/// members of 128-byte ids that `JoinResponse` is 1.3 MB, well under the 8 MiB frame
/// limit of common clients (tokio-util's `LengthDelimitedCodec` default).
pub const DEFAULT_MAX_ROOM_MEMBERS: u32 = 10_000;

/// File descriptors kept back from the connection budget for listeners, io_uring,
/// eventfds and the process's own files.
pub const FD_RESERVE: u64 = 100;

/// corecast: a thread-per-core broadcast chat server (u32 length + protobuf over TCP).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "corecast",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true
)]
pub struct Config {
    /// A tool instead of the server (`corecast token`).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to listen on. Port 0 picks any free port (all shards share it).
    #[arg(long, env = "CORECAST_LISTEN", default_value = "127.0.0.1:7878")]
    pub listen: String,

    /// Number of shards: one pinned executor per shard, each on its own CPU. Default:
    /// every CPU in this process's affinity mask (so `taskset` is respected).
    #[arg(long, env = "CORECAST_SHARDS")]
    pub shards: Option<usize>,

    /// Largest accepted frame payload, in bytes. A larger length prefix gets
    /// FRAME_TOO_LARGE and the connection is closed.
    #[arg(long, env = "CORECAST_MAX_FRAME_BYTES", default_value_t = DEFAULT_MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,

    /// Per-connection cap on bytes queued for sending. A client that lets more pile up
    /// is a slow consumer: it gets SLOW_CONSUMER (if that still fits in its socket) and
    /// is disconnected; nobody else waits for it.
    #[arg(long, env = "CORECAST_MAX_OUTBOUND_BYTES", default_value_t = DEFAULT_MAX_OUTBOUND_BYTES)]
    pub max_outbound_bytes: usize,

    /// Bytes all of one shard's connections may have queued together. Past it, a
    /// connection more than half its own limit behind is cut as a slow consumer when
    /// more arrives for it (the ones furthest behind go first); one that keeps up is not.
    #[arg(
        long,
        env = "CORECAST_MAX_SHARD_OUTBOUND_BYTES",
        default_value_t = DEFAULT_MAX_SHARD_OUTBOUND_BYTES
    )]
    pub max_shard_outbound_bytes: usize,

    /// Messages each room retains for resume and replay (v1.1 history). 0 turns
    /// history off: nothing is retained, a resume is never `recovered` unless nothing
    /// was missed, and empty rooms are forgotten at once.
    #[arg(long, env = "CORECAST_HISTORY_MESSAGES", default_value_t = DEFAULT_HISTORY_MESSAGES)]
    pub history_messages: usize,

    /// Bytes of frames each room retains, at most (the oldest go first).
    #[arg(long, env = "CORECAST_HISTORY_BYTES", default_value_t = DEFAULT_HISTORY_BYTES)]
    pub history_bytes: usize,

    /// Bytes of frames all rooms owned by one shard retain together, at most (the
    /// shard's oldest go first, whichever room they belong to).
    #[arg(
        long,
        env = "CORECAST_HISTORY_SHARD_BYTES",
        default_value_t = DEFAULT_HISTORY_SHARD_BYTES
    )]
    pub history_shard_bytes: usize,

    /// Seconds an empty room keeps its epoch, seq and history (a join within it
    /// continues the room; after it the room starts afresh with a new epoch).
    /// 0 forgets an empty room at once.
    #[arg(long, env = "CORECAST_HISTORY_TTL", default_value_t = DEFAULT_HISTORY_TTL)]
    pub history_ttl: u64,

    /// Most concurrent connections (all shards together); the excess gets SERVER_FULL
    /// and is closed. Default: the open-file limit (raised to its hard limit at start)
    /// minus 100 descriptors kept for the server itself.
    #[arg(long, env = "CORECAST_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Most members in one room, whatever the room's own `max_players` says.
    #[arg(long, env = "CORECAST_MAX_ROOM_MEMBERS", default_value_t = DEFAULT_MAX_ROOM_MEMBERS)]
    pub max_room_members: u32,

    /// Seconds a connection may send nothing before it is closed (0 disables).
    #[arg(long, env = "CORECAST_IDLE_TIMEOUT", default_value_t = 60)]
    pub idle_timeout: u64,

    /// Seconds given to clients to receive SERVER_SHUTTING_DOWN and what was queued for
    /// them before the server closes every connection and exits.
    #[arg(long, env = "CORECAST_SHUTDOWN_GRACE", default_value_t = 5)]
    pub shutdown_grace: u64,

    /// Seconds a connection's writer may find its socket full without writing a byte
    /// before the client counts as a slow consumer and is cut, however little it has
    /// queued (0 disables; the byte limit still applies).
    #[arg(long, env = "CORECAST_WRITE_TIMEOUT", default_value_t = 10)]
    pub write_timeout: u64,

    /// Bearer token every login must carry. Without one, any login is accepted (a
    /// development default; the server warns at start). Never logged.
    #[arg(long, env = "CORECAST_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<Secret>,

    /// HS256 secret that login tokens (JWT) are signed with, at least 32 bytes. Give it
    /// in the environment or with --jwt-secret-file: a command line is visible to every
    /// local user. Never logged.
    #[arg(
        long,
        env = "CORECAST_JWT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub jwt_secret: Option<Secret>,

    /// File holding the HS256 secret (its bytes; one trailing newline is ignored).
    #[arg(long, env = "CORECAST_JWT_SECRET_FILE", value_name = "FILE")]
    pub jwt_secret_file: Option<PathBuf>,

    /// PEM public key that verifies login tokens (JWT): RSA (RS256), EC P-256 (ES256)
    /// or Ed25519 (EdDSA), told apart by the key.
    #[arg(long, env = "CORECAST_JWT_PUBLIC_KEY", value_name = "PEM")]
    pub jwt_public_key: Option<PathBuf>,

    /// With JWT on: the `iss` every token must carry.
    #[arg(long, env = "CORECAST_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// With JWT on: a value the token's `aud` must contain. Without it, tokens that
    /// carry an `aud` are refused (they were meant for another service).
    #[arg(long, env = "CORECAST_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// With JWT on: seconds of clock skew allowed on `exp` and `nbf` (a session ends
    /// at `exp` plus this).
    #[arg(long, env = "CORECAST_JWT_LEEWAY", default_value_t = crate::auth::DEFAULT_LEEWAY_SECS)]
    pub jwt_leeway: u64,

    /// The token verifier, built by `Server::start` from the --jwt-* flags.
    #[arg(skip)]
    pub verifier: Option<Arc<Verifier>>,

    /// Accept WebSocket clients on this address too (paths /ws and /app, subprotocol
    /// corecast.v1; wss with --tls-cert/--tls-key). They share the shards, rooms and
    /// limits of the TCP clients. Off by default.
    #[arg(long, env = "CORECAST_WS_LISTEN")]
    pub ws_listen: Option<String>,

    /// Origins a browser may open a WebSocket from, comma-separated (e.g.
    /// https://chat.example.com). An upgrade with another Origin gets 403; one with no
    /// Origin (not a browser) is accepted. Default: any origin.
    #[arg(long, env = "CORECAST_WS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub ws_allowed_origins: Vec<String>,

    /// Serve Prometheus `/metrics`, `/healthz` and `/readyz` over HTTP on this address
    /// (e.g. 0.0.0.0:9090). Off by default.
    #[arg(long, env = "CORECAST_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,

    /// Most rooms one connection may be in, joins still in flight included; a join past
    /// it gets FAILED_PRECONDITION.
    #[arg(
        long,
        env = "CORECAST_MAX_ROOMS_PER_CONNECTION",
        default_value_t = 1000
    )]
    pub max_rooms_per_connection: u32,

    /// Most `target_ids` in one SendMessage; more gets BAD_REQUEST and nothing is sent.
    #[arg(long, env = "CORECAST_MAX_TARGETS", default_value_t = 256)]
    pub max_targets: usize,

    /// Requests per second per connection (token bucket holding one second's worth).
    /// Requests over it are dropped with one RATE_LIMITED error per burst. 0 disables.
    #[arg(long, env = "CORECAST_MAX_MESSAGES_PER_SECOND", default_value_t = 1000)]
    pub max_messages_per_second: u32,

    /// Seconds a client has to finish a frame it started (slowloris defence); a client
    /// that trickles bytes slower gets BAD_REQUEST and is closed.
    #[arg(long, env = "CORECAST_FRAME_TIMEOUT", default_value_t = 10)]
    pub frame_timeout: u64,

    /// Seconds a connection has to log in successfully; Ping alone does not keep an
    /// anonymous connection open past it (it would hold a connection slot for free).
    #[arg(long, env = "CORECAST_LOGIN_TIMEOUT", default_value_t = 10)]
    pub login_timeout: u64,

    /// Microseconds an idle shard spins before it parks. Spinning cuts cross-core
    /// wake-up latency (~58 us to ~14 us here) but burns CPU that a co-located load
    /// generator may need.
    #[arg(long, env = "CORECAST_SPIN_US", default_value_t = 0)]
    pub spin_us: u64,

    /// Milliseconds a busy shard runs before it polls its I/O and channels again.
    #[arg(long, env = "CORECAST_PREEMPT_MS", default_value_t = 2)]
    pub preempt_ms: u64,

    /// PEM file with the certificate chain (leaf first) for TLS on the client port.
    /// Given with --tls-key, every client connection must speak TLS; without both, the
    /// port is plain TCP.
    #[arg(long, env = "CORECAST_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "CORECAST_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,

    /// Log format on standard error: `text` (coloured only when it is a terminal) or
    /// `json` (one object per line, for log collectors). The level comes from RUST_LOG.
    #[arg(long, env = "CORECAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The tools `corecast` runs instead of the server.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Signs a login token (JWT) for a player, as a matchmaker or backend would, and
    /// prints it.
    Token(crate::auth::cli::TokenArgs),
}

/// How the server writes its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; ANSI colours only when standard error is a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        // Parsing an empty command line cannot fail: every argument has a default or
        // is optional. `try_parse_from` would still read CORECAST_* variables, so the
        // defaults are spelled out instead.
        Self {
            command: None,
            listen: "127.0.0.1:7878".into(),
            shards: None,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_outbound_bytes: DEFAULT_MAX_OUTBOUND_BYTES,
            max_shard_outbound_bytes: DEFAULT_MAX_SHARD_OUTBOUND_BYTES,
            history_messages: DEFAULT_HISTORY_MESSAGES,
            history_bytes: DEFAULT_HISTORY_BYTES,
            history_shard_bytes: DEFAULT_HISTORY_SHARD_BYTES,
            history_ttl: DEFAULT_HISTORY_TTL,
            max_connections: None,
            max_room_members: DEFAULT_MAX_ROOM_MEMBERS,
            idle_timeout: 60,
            shutdown_grace: 5,
            write_timeout: 10,
            auth_token: None,
            jwt_secret: None,
            jwt_secret_file: None,
            jwt_public_key: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway: crate::auth::DEFAULT_LEEWAY_SECS,
            verifier: None,
            ws_listen: None,
            ws_allowed_origins: Vec::new(),
            metrics_listen: None,
            max_rooms_per_connection: 1000,
            max_targets: 256,
            max_messages_per_second: 1000,
            frame_timeout: 10,
            login_timeout: 10,
            spin_us: 0,
            preempt_ms: 2,
            tls_cert: None,
            tls_key: None,
            log_format: LogFormat::Text,
        }
    }
}

impl Config {
    /// The idle timeout, `None` when disabled.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout > 0).then(|| Duration::from_secs(self.idle_timeout))
    }

    /// How long a started frame may take to arrive in full.
    pub fn frame_timeout(&self) -> Duration {
        Duration::from_secs(self.frame_timeout.max(1))
    }

    /// How long a new connection may take to log in.
    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.login_timeout.max(1))
    }

    /// How long a writer may make no progress before a slow-consumer cut.
    pub fn write_timeout(&self) -> Option<Duration> {
        (self.write_timeout > 0).then(|| Duration::from_secs(self.write_timeout))
    }

    /// The history bounds (`--history-*`).
    pub fn history(&self) -> crate::shard::history::HistoryLimits {
        crate::shard::history::HistoryLimits {
            messages: self.history_messages,
            bytes: self.history_bytes,
            shard_bytes: self.history_shard_bytes,
            ttl: Duration::from_secs(self.history_ttl),
        }
    }

    /// The shutdown grace period.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace)
    }

    /// The token verifier the --jwt-* flags describe, `None` when JWT is off.
    pub fn jwt_verifier(&self) -> Result<Option<Verifier>, String> {
        let sources = [
            self.jwt_secret.is_some(),
            self.jwt_secret_file.is_some(),
            self.jwt_public_key.is_some(),
        ];
        let on = sources.iter().filter(|&&given| given).count();
        if on > 1 {
            return Err("give one of --jwt-secret, --jwt-secret-file and --jwt-public-key".into());
        }
        if on == 0 {
            if self.jwt_issuer.is_some() || self.jwt_audience.is_some() {
                return Err("--jwt-issuer and --jwt-audience need a --jwt-* key".into());
            }
            return Ok(None);
        }
        if self.auth_token.is_some() {
            return Err(
                "--auth-token and JWT verification exclude each other: with --jwt-* on, \
                 every login carries a signed token"
                    .into(),
            );
        }
        let expect = Expect {
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            leeway: Duration::from_secs(self.jwt_leeway),
        };
        let read = |flag: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
        };
        let verifier = if let Some(secret) = &self.jwt_secret {
            Verifier::hs256(secret.expose().as_bytes(), expect)
                .map_err(|e| format!("--jwt-secret (CORECAST_JWT_SECRET): {e}"))?
        } else if let Some(path) = &self.jwt_secret_file {
            let secret = read("--jwt-secret-file", path)?;
            Verifier::hs256(strip_newline(&secret), expect)
                .map_err(|e| format!("--jwt-secret-file {}: {e}", path.display()))?
        } else {
            let path = self
                .jwt_public_key
                .as_deref()
                .unwrap_or(std::path::Path::new(""));
            Verifier::public_pem(&read("--jwt-public-key", path)?, expect)
                .map_err(|e| format!("--jwt-public-key {}: {e}", path.display()))?
        };
        Ok(Some(verifier))
    }

    /// `--max-connections`, or its default from the open-file limit.
    pub fn max_connections(&self) -> usize {
        self.max_connections
            .unwrap_or_else(|| usize::try_from(connection_budget().max(1)).unwrap_or(usize::MAX))
    }
}

/// What a connection's requests are checked against, taken from [`Config`] once per
/// shard.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The bearer token logins must carry, if any.
    pub auth_token: Option<Secret>,
    /// The verifier of signed login tokens, when JWT is on.
    pub jwt: Option<Arc<Verifier>>,
    /// `--max-rooms-per-connection`.
    pub max_rooms_per_connection: u32,
    /// `--max-targets`.
    pub max_targets: usize,
}

impl SessionConfig {
    /// The session settings of a server configuration.
    pub fn from_config(config: &Config) -> Self {
        Self {
            auth_token: config.auth_token.clone(),
            jwt: config.verifier.clone(),
            max_rooms_per_connection: config.max_rooms_per_connection,
            max_targets: config.max_targets,
        }
    }
}

/// Connections one process can hold: its open-file limit (the soft limit raised to the
/// hard one) less [`FD_RESERVE`] descriptors for everything else.
pub fn connection_budget() -> u64 {
    raise_nofile_limit().saturating_sub(FD_RESERVE)
}

/// Raises the soft open-file limit to the hard limit; returns the soft limit in force.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// Largest descriptor table [`presize_fd_table`] asks for: 262,144 slots, about 2 MiB
/// of kernel memory. Past it the table still grows on demand, a doubling at a time.
pub const MAX_PRESIZED_FDS: u64 = 1 << 18;

/// Grows this process's file-descriptor table to hold `connections` plus
/// [`FD_RESERVE`] descriptors (capped at [`MAX_PRESIZED_FDS`] and the open-file
/// limit) now, instead of a doubling at a time
/// as connections arrive: in a multi-threaded process each doubling waits for an RCU
/// grace period (`expand_fdtable` calls `synchronize_rcu`), which stalls the thread
/// that opens the descriptor, here the shard accepting a connection, for 5 to 15 ms
/// at 256, 512, ... 16,384 descriptors. The table never shrinks, so one
/// `F_DUPFD` past the wanted size, closed at once, keeps it that size. Returns the
/// table size asked for, or `None` if the system calls failed (the table then grows on
/// demand, as before).
pub fn presize_fd_table(connections: u64) -> Option<u64> {
    let want = connections
        .saturating_add(FD_RESERVE)
        .min(MAX_PRESIZED_FDS)
        .min(raise_nofile_limit());
    let highest = libc::c_int::try_from(want.checked_sub(1)?).ok()?;
    // SAFETY: plain system calls on descriptors this function opens and closes.
    unsafe {
        let fd = libc::eventfd(0, libc::EFD_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let high = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, highest);
        libc::close(fd);
        if high < 0 {
            return None;
        }
        libc::close(high);
    }
    Some(want)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's descriptor-table size for this process (`FDSize` in
    /// /proc/self/status).
    fn fd_table_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
        line["FDSize:".len()..].trim().parse().unwrap()
    }

    #[test]
    fn the_fd_table_is_grown_up_front() {
        let want = presize_fd_table(3000).expect("eventfd and fcntl work here");
        assert_eq!(want, (3000 + FD_RESERVE).min(raise_nofile_limit()));
        assert!(
            fd_table_size() >= want,
            "FDSize {} < {want}",
            fd_table_size()
        );
        // Capped: never asks for more than MAX_PRESIZED_FDS.
        assert!(presize_fd_table(u64::MAX).unwrap() <= MAX_PRESIZED_FDS);
    }

    #[test]
    fn default_matches_an_empty_command_line() {
        let parsed = Config::try_parse_from(["corecast"]).unwrap();
        let default = Config::default();
        // Environment variables could differ in a developer's shell; compare only when unset.
        if std::env::vars().all(|(k, _)| !k.starts_with("CORECAST_")) {
            assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
        }
    }

    #[test]
    fn the_token_is_redacted_in_debug_output() {
        let config = Config {
            auth_token: Some(Secret::new("hunter2")),
            ..Config::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn tls_flags_parse() {
        let config =
            Config::try_parse_from(["corecast", "--tls-cert", "c.pem", "--tls-key", "k.pem"])
                .unwrap();
        assert_eq!(config.tls_cert, Some(PathBuf::from("c.pem")));
        assert_eq!(config.tls_key, Some(PathBuf::from("k.pem")));
    }

    #[test]
    fn idle_timeout_zero_disables() {
        let config = Config {
            idle_timeout: 0,
            ..Config::default()
        };
        assert_eq!(config.idle_timeout(), None);
    }
}
