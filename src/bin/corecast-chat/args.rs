//! The command line: [`Args`], parsed by clap.

use std::path::PathBuf;

use clap::Parser;

use crate::command::COMMANDS;

/// corecast-chat: a terminal chat client for a corecast server.
///
/// Connects, logs in as NAME, joins ROOM, then sends each line typed to the current
/// room and prints what arrives, one line each.
#[derive(Debug, Parser)]
#[command(name = "corecast-chat", version, about, long_about, after_help = COMMANDS)]
pub(crate) struct Args {
    /// Server address (host:port).
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub(crate) addr: String,

    /// Bearer token, when the server requires one (its --auth-token).
    #[arg(long, env = "CORECAST_AUTH_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,

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

    /// Player name to log in with.
    pub(crate) name: String,

    /// Room to join first.
    #[arg(default_value = "lobby")]
    pub(crate) room: String,
}
