//! Login tokens for a corecast that verifies JWTs (`--jwt-secret-file` or
//! `--jwt-private-key`): one per player id, `sub` = the player id, `exp` = now +
//! `--jwt-ttl` (default: the run's longest possible length plus 1 h), signed with
//! corecast's own [`Signer`], so the server sees what `corecast token` would mint.
//!
//! Where minting happens: never inside a measured window. [`Worker::new`] mints every
//! connection's token while it builds the plan, before anything connects (a
//! reconnecting member's new connection reuses its member's token); `burst` mints
//! while it builds its connections, before its handshakes. The connect scenario
//! builds its workers (and so mints) before it samples the server and the harness and
//! before the first connect, so its logins/s, connect latency and CPU figures do not
//! include the harness's signing.
//!
//! [`Worker::new`]: crate::worker::Worker::new

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use corecast::auth::{unix_now, Claims, Signer};

use crate::targets::Target;

/// Margin added to a run's longest possible length for the default token lifetime.
pub const TTL_MARGIN_S: f64 = 3600.0;

/// Mints login tokens with one key and one expiry.
#[derive(Debug)]
pub struct Minter {
    signer: Signer,
    /// `exp` of every token, seconds since the Unix epoch.
    exp: u64,
    /// Lifetime from now, seconds (passed on to `idle`'s child processes).
    ttl_s: f64,
}

impl Minter {
    /// The minter the `--jwt-*` options describe (`None` without a key), with tokens
    /// valid for `ttl_s` (`--jwt-ttl`) or `run_s` (the run's longest possible length)
    /// plus [`TTL_MARGIN_S`]. Refused for targets other than corecast, for a `--jwt-ttl`
    /// without a key, and for a key that cannot sign. (Called through
    /// `TargetArgs::minter`.)
    pub fn from_options(
        secret_file: Option<&Path>,
        private_key: Option<&Path>,
        ttl_s: Option<f64>,
        target: Target,
        run_s: f64,
    ) -> Result<Option<Arc<Self>>> {
        let (option, path) = match (secret_file, private_key) {
            (Some(p), _) => ("--jwt-secret-file", p),
            (None, Some(p)) => ("--jwt-private-key", p),
            (None, None) => {
                if ttl_s.is_some() {
                    bail!("--jwt-ttl needs --jwt-secret-file or --jwt-private-key");
                }
                return Ok(None);
            }
        };
        if target != Target::Corecast {
            bail!(
                "{option} mints corecast login tokens; --target {} does not take it",
                target.name()
            );
        }
        let signer = signer(option, path)?;
        let ttl_s = ttl_s.unwrap_or(run_s + TTL_MARGIN_S);
        let minter = Self {
            signer,
            exp: unix_now().saturating_add(ttl_s.ceil() as u64),
            ttl_s,
        };
        // A key that reads but cannot sign fails here, before anything connects.
        minter.mint("probe")?;
        Ok(Some(Arc::new(minter)))
    }

    /// A token for `player` (`sub` = `player`).
    pub fn mint(&self, player: &str) -> Result<String> {
        let claims = Claims {
            sub: player.into(),
            exp: self.exp as f64,
            ..Claims::default()
        };
        self.signer
            .sign(&claims)
            .with_context(|| format!("minting a login token for {player}"))
    }

    /// Tokens' lifetime from when this minter was made, seconds.
    pub fn ttl_s(&self) -> f64 {
        self.ttl_s
    }
}

/// The signer of `option`'s file at `path`: an HS256 secret (trailing newline
/// stripped, as the server reads it) or a private key in PEM.
fn signer(option: &str, path: &Path) -> Result<Signer> {
    let bytes = std::fs::read(path).with_context(|| format!("{option} {}", path.display()))?;
    let signer = if option == "--jwt-secret-file" {
        Signer::hs256(corecast::config::strip_newline(&bytes))
    } else {
        Signer::private_pem(&bytes)
    };
    signer.with_context(|| format!("{option} {}", path.display()))
}
