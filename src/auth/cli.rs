//! `corecast token`: signs a login token with the same rules the server verifies.

use std::path::PathBuf;

use clap::Args;

use crate::auth::secret::{strip_newline, Secret};
use crate::auth::{unix_now, Audience, Claims, Signer};

/// What `corecast token` signs, and with which key.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The player id (`sub`).
    #[arg(long)]
    pub sub: String,

    /// Seconds from now until the token expires (`exp`).
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,

    /// Rooms the player may join: ids, or prefixes ending in `*`, comma-separated
    /// (absent: any room).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub rooms: Option<Vec<String>>,

    /// Rooms the player may send in, same form (absent: every room it may join).
    #[arg(long, value_delimiter = ',', num_args = 1.., conflicts_with = "listen_only")]
    pub publish: Option<Vec<String>>,

    /// An empty `publish` claim: the player may join (per --rooms) but never send.
    #[arg(long)]
    pub listen_only: bool,

    /// `iss` claim.
    #[arg(long)]
    pub iss: Option<String>,

    /// `aud` claim.
    #[arg(long)]
    pub aud: Option<String>,

    /// HS256: the shared secret (prefer the environment or --secret-file).
    #[arg(
        long,
        env = "CORECAST_JWT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub secret: Option<Secret>,

    /// HS256: a file holding the shared secret.
    #[arg(long, value_name = "FILE", conflicts_with = "secret")]
    pub secret_file: Option<PathBuf>,

    /// RS256 / ES256 / EdDSA: the private key in PEM (PKCS#8; RSA also PKCS#1).
    #[arg(long, value_name = "PEM", conflicts_with_all = ["secret", "secret_file"])]
    pub private_key: Option<PathBuf>,
}

impl TokenArgs {
    /// The claims these arguments describe, `ttl` seconds after `now_unix`.
    pub fn claims(&self, now_unix: u64) -> Claims {
        Claims {
            sub: self.sub.clone(),
            exp: now_unix.saturating_add(self.ttl) as f64,
            iat: Some(now_unix as f64),
            iss: self.iss.clone(),
            aud: self.aud.clone().map(Audience::One),
            rooms: self.rooms.clone(),
            publish: if self.listen_only {
                Some(Vec::new())
            } else {
                self.publish.clone()
            },
            ..Claims::default()
        }
    }

    /// The signer these arguments name.
    pub fn signer(&self) -> anyhow::Result<Signer> {
        use anyhow::Context;
        if let Some(path) = &self.private_key {
            let pem =
                std::fs::read(path).with_context(|| format!("--private-key {}", path.display()))?;
            return Signer::private_pem(&pem)
                .with_context(|| format!("--private-key {}", path.display()));
        }
        if let Some(path) = &self.secret_file {
            let secret =
                std::fs::read(path).with_context(|| format!("--secret-file {}", path.display()))?;
            return Signer::hs256(strip_newline(&secret))
                .with_context(|| format!("--secret-file {}", path.display()));
        }
        let Some(secret) = &self.secret else {
            anyhow::bail!("no key: give --private-key, --secret-file or CORECAST_JWT_SECRET");
        };
        Signer::hs256(secret.expose().as_bytes()).context("CORECAST_JWT_SECRET")
    }

    /// Signs the token.
    pub fn run(&self) -> anyhow::Result<String> {
        Ok(self.signer()?.sign(&self.claims(unix_now()))?)
    }
}
