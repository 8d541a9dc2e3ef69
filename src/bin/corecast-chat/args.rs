//! The command line: [`Args`], parsed by clap.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::command::COMMANDS;

/// corecast-chat: a terminal chat client for a corecast server.
///
/// Connects, logs in as NAME, joins ROOM, then sends each line typed to the current
/// room and prints what arrives, one line each.
///
/// When the connection drops (the server closed it, shut down, or the network failed),
/// it reconnects by itself, waiting longer after each failed attempt (--reconnect-*),
/// logs in again (replacing its old session if the server still has it), and rejoins
/// every room where it left off: the messages said meanwhile are printed like any
/// other, then one line per room says they were recovered, or plainly that they could
/// not be (the room restarted, or the server's history no longer reaches back).
/// Lines typed while disconnected are held and sent once the rooms are rejoined; no
/// further input is read until then (/quit still quits). It does not reconnect, and
/// exits 1, when another session of the same player replaced it (SESSION_REPLACED),
/// when its credentials were refused (UNAUTHORIZED), or with --no-reconnect.
#[derive(Debug, Clone, Parser)]
#[command(name = "corecast-chat", version, about, long_about, after_help = COMMANDS)]
pub(crate) struct Args {
    /// Server address (host:port).
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub(crate) addr: String,

    /// Bearer token, when the server requires one: its --auth-token, or a signed token
    /// (JWT) whose sub is NAME when it verifies tokens (`corecast token` mints one).
    #[arg(long, env = "CORECAST_AUTH_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,

    /// Read the bearer token from this file, again at every (re)connection: a backend
    /// that rewrites the file before the token expires keeps reconnections working.
    #[arg(
        long,
        env = "CORECAST_TOKEN_FILE",
        value_name = "FILE",
        conflicts_with = "token"
    )]
    pub(crate) token_file: Option<PathBuf>,

    /// Speak TLS, trusting the system's root certificates (SSL_CERT_FILE or
    /// SSL_CERT_DIR replace them when set, as with OpenSSL).
    #[arg(long)]
    pub(crate) tls: bool,

    /// Speak TLS, trusting only the CA certificates in this PEM file (one or several).
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_ca: Option<PathBuf>,

    /// The name the server's certificate must carry (a DNS name or IP address in its
    /// subjectAltName). Default: the host part of --addr. Implies --tls.
    #[arg(long, value_name = "NAME")]
    pub(crate) tls_name: Option<String>,

    /// The server's --max-frame-bytes: a line that would make a larger frame is
    /// refused here with a message (the server would close the connection).
    #[arg(long, default_value_t = 65536, value_name = "BYTES")]
    pub(crate) max_frame_bytes: usize,

    /// Seconds without sending anything after which a keepalive ping goes out (0:
    /// never). Keep it under the server's --idle-timeout (default 60 s).
    #[arg(long, default_value_t = 20)]
    pub(crate) keepalive: u64,

    /// At the end of input or /quit, seconds to wait for the server to echo what was
    /// sent; messages still unconfirmed then are reported, and the exit status is 1.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub(crate) quit_wait: u64,

    /// After the connection drops, report it and exit 1 instead of reconnecting.
    #[arg(long)]
    pub(crate) no_reconnect: bool,

    /// Reconnection attempts in a row before giving up (exit 1); 0: no limit.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub(crate) reconnect_attempts: u32,

    /// Seconds before the first reconnection attempt; each failed attempt doubles the
    /// wait (randomised between half and all of it), up to --reconnect-max-delay.
    #[arg(long, default_value = "0.5", value_name = "SECONDS", value_parser = seconds)]
    pub(crate) reconnect_delay: Duration,

    /// The longest wait between reconnection attempts, in seconds.
    #[arg(long, default_value = "30", value_name = "SECONDS", value_parser = seconds)]
    pub(crate) reconnect_max_delay: Duration,

    /// Player name to log in with.
    pub(crate) name: String,

    /// Room to join first.
    #[arg(default_value = "lobby")]
    pub(crate) room: String,
}

impl Args {
    /// The bearer token to log in with now: --token, or --token-file read afresh.
    pub(crate) fn token(&self) -> anyhow::Result<Option<String>> {
        let Some(path) = &self.token_file else {
            return Ok(self.token.clone());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--token-file {}: {e}", path.display()))?;
        Ok(Some(text.trim().to_string()))
    }
}

/// A number of seconds, fractions allowed.
fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("not a number of seconds: {text}"))
}
