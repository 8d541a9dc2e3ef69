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

use crate::cli::TargetArgs;
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
    /// The minter `target`'s `--jwt-*` options describe (`None` without them), with
    /// tokens valid for `--jwt-ttl` or `run_s` (the run's longest possible length)
    /// plus [`TTL_MARGIN_S`]. Refused for targets other than corecast, for a `--jwt-ttl`
    /// without a key, and for a key that cannot sign.
    pub fn from_target(target: &TargetArgs, run_s: f64) -> Result<Option<Arc<Self>>> {
        let (option, path) = match (&target.jwt_secret_file, &target.jwt_private_key) {
            (Some(p), _) => ("--jwt-secret-file", p),
            (None, Some(p)) => ("--jwt-private-key", p),
            (None, None) => {
                if target.jwt_ttl.is_some() {
                    bail!("--jwt-ttl needs --jwt-secret-file or --jwt-private-key");
                }
                return Ok(None);
            }
        };
        if target.target != Target::Corecast {
            bail!(
                "{option} mints corecast login tokens; --target {} does not take it",
                target.target.name()
            );
        }
        let signer = signer(option, path)?;
        let ttl_s = target.jwt_ttl.unwrap_or(run_s + TTL_MARGIN_S);
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    use crate::cli::{Cli, Command};
    use corecast::auth::{Expect, Verifier};

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
        let minter = Minter::from_target(&target(&["--jwt-secret-file", file]), 10.0)
            .unwrap()
            .expect("a minter");
        assert_eq!(minter.ttl_s(), 10.0 + TTL_MARGIN_S);
        let token = minter.mint("L1-c7").unwrap();
        let verifier = Verifier::hs256(secret.as_bytes(), Expect::default()).unwrap();
        let identity = verifier.verify(&token, unix_now()).unwrap();
        assert_eq!(identity.sub, "L1-c7");
        assert!(identity.exp >= unix_now() + 3600, "{}", identity.exp);
        let minter = Minter::from_target(
            &target(&["--jwt-secret-file", file, "--jwt-ttl", "2m"]),
            10.0,
        )
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
            Minter::from_target(&target(args), 1.0)
                .expect_err(&format!("{args:?}"))
                .to_string()
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
        let e = format!(
            "{:#}",
            Minter::from_target(&target(&["--jwt-secret-file", short]), 1.0).unwrap_err()
        );
        assert!(e.contains("at least 32"), "{e}");
        let e = format!(
            "{:#}",
            Minter::from_target(&target(&["--jwt-private-key", "/nonexistent/k.pem"]), 1.0)
                .unwrap_err()
        );
        assert!(e.contains("--jwt-private-key /nonexistent/k.pem"), "{e}");
        assert!(Minter::from_target(&target(&[]), 1.0).unwrap().is_none());
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
