//! The harness against a corecast that verifies login tokens (in this process, port
//! 0): with --jwt-secret-file (and --jwt-private-key against --jwt-public-key) every
//! login carries a token minted for its player and succeeds, and the checks stay clean
//! in a connect, a fanout and a reconnect run (whose new connections reuse their
//! member's token); without a token every login is refused and the run fails saying
//! why; other targets refuse the options before anything starts.

mod common;

use std::path::{Path, PathBuf};

use corecast::config::Config;
use corecast::server::Server;

use common::{args, assert_checks_clean, harness, num, run_binary, short_run, LIMIT};

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("corecast-load-jwt-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A one-shard corecast that verifies tokens as `config` says, and its address.
fn jwt_server(config: Config) -> (Server, String) {
    let server = Server::start(Config {
        listen: "127.0.0.1:0".into(),
        shards: Some(1),
        shutdown_grace: 1,
        ..config
    })
    .expect("corecast with JWT starts");
    let addr = server.local_addr().to_string();
    (server, addr)
}

/// A 40-byte HS256 secret (with the newline `echo` adds) in `dir`.
fn secret_file(dir: &Scratch) -> PathBuf {
    let path = dir.path("secret");
    std::fs::write(&path, format!("{}\n", "k".repeat(40))).expect("write secret");
    path
}

/// A corecast with `--jwt-secret-file` and the secret file's path as an argument.
fn hs256_server(dir: &Scratch) -> (Server, String, String) {
    let secret = secret_file(dir);
    let (server, addr) = jwt_server(Config {
        jwt_secret_file: Some(secret.clone()),
        ..Config::default()
    });
    (
        server,
        addr,
        secret.to_str().expect("utf-8 path").to_string(),
    )
}

fn openssl(args: &[&str], dir: &Path) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (the key pair is made at test time)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn connect_with_hs256_tokens_logs_everyone_in() {
    let dir = Scratch::new("connect");
    let (_server, addr, secret) = hs256_server(&dir);
    let pid = std::process::id().to_string();
    let connect = [
        "connect",
        "--addr",
        &addr,
        "--clients",
        "300",
        "--concurrency",
        "32",
        "--jwt-secret-file",
        &secret,
        "--server-pid",
        &pid,
    ];
    let run = harness(&connect, LIMIT);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(num(&run.report, &["connections"]), 300.0);
    assert_eq!(num(&run.report, &["connect_failures"]), 0.0);
    assert_eq!(num(&run.report, &["server_errors"]), 0.0);
    assert!(run.report["first_error"].is_null(), "{}", run.stdout);
    assert!(num(&run.report, &["server", "cpu_us"]) > 0.0);
}

#[test]
fn fanout_and_reconnect_with_hs256_tokens_are_clean() {
    let dir = Scratch::new("fanout");
    let (_server, addr, secret) = hs256_server(&dir);
    let mut common = short_run(&addr);
    common.extend(["--jwt-secret-file".to_string(), secret]);
    let fanout = [
        "fanout",
        "--rooms",
        "2",
        "--members",
        "10",
        "--senders",
        "1",
        "--rate",
        "200",
    ];
    let run = harness(&args(&fanout, &common), LIMIT);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(num(&run.report, &["connections"]), 20.0);
    // 2 rooms x 1 sender x 200/s x 1 s x 10 members.
    assert_eq!(num(&run.report, &["latency", "count"]), 4000.0);
    assert_checks_clean(&run.report, &[], &["unexpected"], &run.stdout);

    // Each new connection of a dropping member logs in (replace_existing) with the
    // token minted for the member at plan time.
    let reconnect = [
        "reconnect",
        "--rooms",
        "2",
        "--members",
        "10",
        "--rate",
        "100",
        "--drop-share",
        "0.3",
        "--drops-per-second",
        "30",
    ];
    let run = harness(&args(&reconnect, &common), LIMIT);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let resumes = num(&run.report, &["reconnect", "resumes"]);
    assert!(resumes > 5.0, "{}", run.stdout);
    assert_eq!(resumes, num(&run.report, &["reconnect", "drops"]));
    assert_checks_clean(&run.report, &[], &["unexpected"], &run.stdout);
}

#[test]
fn eddsa_tokens_from_a_private_key_pass_the_servers_public_key() {
    let dir = Scratch::new("eddsa");
    openssl(
        &["genpkey", "-algorithm", "ed25519", "-out", "k.pem"],
        &dir.0,
    );
    openssl(
        &["pkey", "-in", "k.pem", "-pubout", "-out", "k.pub.pem"],
        &dir.0,
    );
    let (_server, addr) = jwt_server(Config {
        jwt_public_key: Some(dir.path("k.pub.pem")),
        ..Config::default()
    });
    let key = dir.path("k.pem");
    let connect = [
        "connect",
        "--addr",
        &addr,
        "--clients",
        "100",
        "--jwt-private-key",
        key.to_str().expect("utf-8 path"),
    ];
    let run = harness(&connect, LIMIT);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(num(&run.report, &["connections"]), 100.0);
}

#[test]
fn without_a_token_every_login_is_refused_and_the_run_says_why() {
    let dir = Scratch::new("refused");
    let (_server, addr, _secret) = hs256_server(&dir);
    let limit = std::time::Duration::from_secs(30);

    let out = run_binary(
        &[
            "connect",
            "--addr",
            &addr,
            "--clients",
            "20",
            "--timeout",
            "10s",
            "--quiet",
        ],
        limit,
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("connections            0"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("UNAUTHORIZED") || out.stdout.contains("Unauthorized"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("FAILED"), "{}", out.stderr);

    let mut fanout = vec!["fanout", "--rooms", "1", "--members", "5", "--quiet"];
    let common = short_run(&addr);
    fanout.extend(common.iter().map(String::as_str));
    let out = run_binary(&fanout, limit);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("setup failed"), "{}", out.stderr);
    assert!(out.stderr.contains("nauthorized"), "{}", out.stderr);
}

#[test]
fn other_targets_and_a_bad_key_are_refused_before_anything_starts() {
    let dir = Scratch::new("others");
    let secret = secret_file(&dir);
    let secret = secret.to_str().expect("utf-8 path");
    let limit = std::time::Duration::from_secs(20);
    // Nothing listens on port 9: a run that started would fail differently.
    for target in ["redis", "nats"] {
        let out = run_binary(
            &[
                "fanout",
                "--target",
                target,
                "--addr",
                "127.0.0.1:9",
                "--jwt-secret-file",
                secret,
            ],
            limit,
        );
        assert_eq!(out.code, 2, "{target}: {}", out.stderr);
        assert!(
            out.stderr.contains(&format!(
                "--jwt-secret-file mints corecast login tokens; --target {target} does not take it"
            )),
            "{target}: {}",
            out.stderr
        );
    }
    let short = dir.path("short");
    std::fs::write(&short, "only sixteen b\n").expect("write");
    let out = run_binary(
        &[
            "connect",
            "--addr",
            "127.0.0.1:9",
            "--jwt-secret-file",
            short.to_str().expect("utf-8 path"),
        ],
        limit,
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--jwt-secret-file"), "{}", out.stderr);
    assert!(out.stderr.contains("at least 32"), "{}", out.stderr);
}
