//! Signed identity tokens (PROTOCOL.md, "Signed identity tokens (JWT)") against the
//! real server: every key and token is generated at test time.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{assert_error, assert_no_messages_from, assert_rejected, next_message, TestServer};
use corecast::auth::{unix_now, Audience, Claims, Signer};
use corecast::client::{Client, ClientError};
use corecast::config::{Config, Secret};
use corecast::proto::{client_message, server_message::Data, ErrorCode, LoginRequest};
use corecast::server::Server;

const SECRET: &str = "test-secret-of-at-least-32-bytes-0123456789";

fn hs256_config() -> Config {
    Config {
        jwt_secret: Some(Secret::new(SECRET)),
        metrics_listen: Some("127.0.0.1:0".into()),
        ..common::config()
    }
}

fn scrape(server: &TestServer) -> String {
    common::http_get(server.server().metrics_addr().unwrap(), "/metrics").1
}

fn hs256() -> Signer {
    Signer::hs256(SECRET.as_bytes()).unwrap()
}

fn claims(sub: &str) -> Claims {
    Claims {
        sub: sub.into(),
        exp: (unix_now() + 600) as f64,
        ..Claims::default()
    }
}

fn token(claims: &Claims) -> String {
    hs256().sign(claims).unwrap()
}

/// A client logged in as `sub` with a plain HS256 token (player_id left empty).
fn login(server: &TestServer, claims: &Claims) -> Client {
    let mut c = server.connect();
    c.login("", Some(&token(claims))).expect("login");
    c
}

/// Logs in with `token` and expects LoginResponse UNAUTHORIZED, then the close.
fn assert_unauthorized(server: &TestServer, player: &str, token: Option<&str>, says: &str) {
    let mut c = server.connect();
    match c.login(player, token) {
        Err(ClientError::Rejected { code, message }) => {
            assert_eq!(code, ErrorCode::Unauthorized, "{message}");
            assert!(message.contains(says), "{says:?} not in {message:?}");
        }
        other => panic!("expected UNAUTHORIZED ({says}), got {other:?}"),
    }
    c.expect_closed().expect("closed after UNAUTHORIZED");
}

fn send_login(c: &mut Client, player: &str, token: &str) {
    c.send(client_message::Data::LoginRequest(LoginRequest {
        player_id: player.into(),
        auth_config: Some(corecast::proto::login_request::AuthConfig::Bearer(
            corecast::proto::AuthConfigBearer {
                token: token.into(),
            },
        )),
        replace_existing: false,
    }))
    .unwrap();
}

#[test]
fn a_token_names_the_player_and_an_empty_player_id_means_its_sub() {
    let server = common::start_with(hs256_config());
    let mut alice = server.connect();
    alice
        .login("alice", Some(&token(&claims("alice"))))
        .unwrap();
    let mut bob = login(&server, &claims("bob"));
    alice.join("lobby", None).unwrap();
    let joined = bob.join("lobby", None).unwrap();
    assert!(
        joined.current_players.iter().any(|p| p == "bob"),
        "{joined:?}"
    );
    bob.send_message("lobby", &[], "hi").unwrap();
    assert_eq!(next_message(&mut alice).sender_id, "bob");
}

#[test]
fn bad_tokens_get_unauthorized_and_the_connection_closes() {
    let server = common::start_with(hs256_config());
    let now = unix_now();
    assert_unauthorized(&server, "alice", None, "signed token (JWT) is required");
    assert_unauthorized(&server, "alice", Some("not-a-jwt"), "not a compact JWT");
    // Signed with another key.
    let other = Signer::hs256(b"some-other-secret-also-32-bytes-long!!").unwrap();
    let forged = other.sign(&claims("alice")).unwrap();
    assert_unauthorized(&server, "alice", Some(&forged), "signature does not verify");
    // alg none, no signature.
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&serde_json::to_string(&claims("alice")).unwrap())
    );
    assert_unauthorized(&server, "alice", Some(&none), "token header");
    // Expired, not yet valid (beyond the default 5 s leeway).
    let expired = Claims {
        exp: (now - 60) as f64,
        ..claims("alice")
    };
    assert_unauthorized(&server, "alice", Some(&token(&expired)), "token expired");
    let early = Claims {
        nbf: Some((now + 60) as f64),
        ..claims("alice")
    };
    assert_unauthorized(&server, "alice", Some(&token(&early)), "not yet valid");
    // Someone else's token.
    let bobs = token(&claims("bob"));
    assert_unauthorized(&server, "alice", Some(&bobs), "is for player \"bob\"");
    // Garbage in a claim.
    let garbage = serde_json::json!({"sub": "alice", "exp": now + 600, "rooms": "lobby"});
    let garbage = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &garbage,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_unauthorized(&server, "", Some(&garbage), "invalid type");
    // The static bearer token of v1 is not a JWT.
    assert_unauthorized(&server, "alice", Some(SECRET), "not a compact JWT");
    // Nobody got in: alice is free.
    let mut alice = server.connect();
    alice
        .login("alice", Some(&token(&claims("alice"))))
        .unwrap();
}

#[test]
fn a_token_far_over_the_frame_size_is_cut_and_a_long_one_under_it_is_refused() {
    let server = common::start_with(Config {
        max_frame_bytes: 64 * 1024,
        ..hs256_config()
    });
    let mut c = server.connect();
    send_login(&mut c, "alice", &"x".repeat(1 << 20));
    assert_error(&mut c, ErrorCode::FrameTooLarge);
    c.expect_closed().unwrap();
    let padded = Claims {
        rooms: Some(vec!["r".repeat(100); 200]),
        ..claims("alice")
    };
    assert_unauthorized(&server, "alice", Some(&token(&padded)), "more than 16384");
}

#[test]
fn issuer_and_audience_are_checked_when_configured() {
    let server = common::start_with(Config {
        jwt_issuer: Some("matchmaker".into()),
        jwt_audience: Some("corecast".into()),
        ..hs256_config()
    });
    let good = Claims {
        iss: Some("matchmaker".into()),
        aud: Some(Audience::One("corecast".into())),
        ..claims("alice")
    };
    login(&server, &good);
    let wrong_iss = Claims {
        iss: Some("mallory".into()),
        ..good.clone()
    };
    assert_unauthorized(&server, "", Some(&token(&wrong_iss)), "issuer");
    let wrong_aud = Claims {
        aud: Some(Audience::One("billing".into())),
        ..good.clone()
    };
    assert_unauthorized(&server, "", Some(&token(&wrong_aud)), "audience");
    let no_aud = Claims { aud: None, ..good };
    assert_unauthorized(&server, "", Some(&token(&no_aud)), "audience");
}

#[test]
fn rooms_and_publish_claims_forbid_joins_and_sends_outside_them() {
    let server = common::start_with(hs256_config());
    let mut watcher = login(&server, &claims("watcher"));
    for room in ["lobby", "match-1", "secret"] {
        watcher.join(room, None).unwrap();
    }
    let limited = Claims {
        rooms: Some(vec!["lobby".into(), "match-*".into()]),
        publish: Some(vec!["match-*".into()]),
        ..claims("player")
    };
    let mut player = login(&server, &limited);
    assert_rejected(player.join("secret", None), ErrorCode::Forbidden);
    assert_rejected(player.join("match", None), ErrorCode::Forbidden);
    player.join("lobby", None).unwrap();
    player.join("match-1", None).unwrap();
    // May listen in the lobby but not speak there.
    player.send_message("lobby", &[], "shout").unwrap();
    assert_error(&mut player, ErrorCode::Forbidden);
    // Nor send to a room it is not in and may not join (FORBIDDEN, not NOT_IN_ROOM).
    player.send_message("secret", &[], "psst").unwrap();
    assert_error(&mut player, ErrorCode::Forbidden);
    assert_no_messages_from(&mut watcher, "lobby");
    assert_no_messages_from(&mut watcher, "secret");
    player.send_message("match-1", &[], "gg").unwrap();
    let m = next_message(&mut watcher);
    assert_eq!(
        (m.room_id.as_str(), m.sender_id.as_str()),
        ("match-1", "player")
    );
    assert_eq!(next_message(&mut player).body, "gg", "its own echo");
    // It hears the lobby.
    watcher.send_message("lobby", &[], "hello").unwrap();
    let m = next_message(&mut player);
    assert_eq!((m.room_id.as_str(), &m.body[..]), ("lobby", &b"hello"[..]));
    assert_eq!(next_message(&mut watcher).body, "hello", "its own echo");

    // An empty publish claim: listen only.
    let listener = Claims {
        publish: Some(Vec::new()),
        ..claims("listener")
    };
    let mut listener = login(&server, &listener);
    listener.join("lobby", None).unwrap();
    listener.send_message("lobby", &[], "x").unwrap();
    assert_error(&mut listener, ErrorCode::Forbidden);
    assert_no_messages_from(&mut watcher, "lobby");
}

#[test]
fn a_verified_sub_may_replace_its_own_session_and_nobody_else_can() {
    let server = common::start_with(hs256_config());
    let mut old = login(&server, &claims("alice"));
    old.join("lobby", None).unwrap();
    // Bob's token cannot take alice's id, with or without replace_existing.
    let mut bob = server.connect();
    assert_rejected(
        bob.login_with("alice", Some(&token(&claims("bob"))), true),
        ErrorCode::Unauthorized,
    );
    let mut new = server.connect();
    new.login_with("", Some(&token(&claims("alice"))), true)
        .unwrap();
    assert_error(&mut old, ErrorCode::SessionReplaced);
    new.join("lobby", None).unwrap();
}

/// A server whose sessions end exactly at `exp`.
fn no_leeway() -> TestServer {
    common::start_with(Config {
        jwt_leeway: 0,
        ..hs256_config()
    })
}

/// Waits `window` for an error on `c` and asserts none came (the connection stays open
/// and quiet meanwhile).
fn assert_no_error_within(c: &mut Client, window: Duration) {
    c.set_timeout(window);
    match c.expect_error() {
        Err(ClientError::Timeout) => {}
        other => panic!("expected no error within {window:?}, got {other:?}"),
    }
    c.set_timeout(Duration::from_secs(5));
}

#[test]
fn at_exp_the_session_is_told_and_closed() {
    let server = no_leeway();
    let started = Instant::now();
    let short = Claims {
        exp: (unix_now() + 2) as f64,
        ..claims("alice")
    };
    let mut alice = login(&server, &short);
    alice.set_timeout(Duration::from_secs(5));
    let (code, message) = alice.expect_error().unwrap();
    assert_eq!(
        (code, message.as_str()),
        (ErrorCode::Unauthorized, "token expired")
    );
    alice.expect_closed().unwrap();
    let waited = started.elapsed();
    assert!(waited <= Duration::from_secs(3), "closed after {waited:?}");
    let scrape = scrape(&server);
    assert_eq!(
        common::metric(
            &scrape,
            "corecast_disconnects_total{reason=\"token_expired\"}"
        ),
        1.0
    );
}

#[test]
fn a_refresh_before_exp_keeps_the_session_and_replaces_its_claims() {
    let server = no_leeway();
    let exp = unix_now() + 2;
    let first = Claims {
        exp: exp as f64,
        rooms: Some(vec!["a".into()]),
        ..claims("alice")
    };
    let mut alice = login(&server, &first);
    alice.join("a", None).unwrap();
    assert_rejected(alice.join("b", None), ErrorCode::Forbidden);
    let renewed = Claims {
        rooms: Some(vec!["b".into()]),
        ..claims("alice")
    };
    // player_id empty or the same: both refresh.
    alice.refresh_token(&token(&renewed)).unwrap();
    alice.login("alice", Some(&token(&renewed))).unwrap();
    // Another player's token on this connection: ALREADY_LOGGED_IN, nothing changes.
    assert_rejected(
        alice.login("", Some(&token(&claims("bob")))),
        ErrorCode::AlreadyLoggedIn,
    );
    assert_rejected(
        alice.login("bob", Some(&token(&claims("bob")))),
        ErrorCode::AlreadyLoggedIn,
    );
    // The new claims apply: b is allowed now, a (already joined) is no longer joinable.
    alice.join("b", None).unwrap();
    alice.leave("a").unwrap();
    assert_rejected(alice.join("a", None), ErrorCode::Forbidden);
    // Past the first token's exp, the session lives on.
    assert_no_error_within(&mut alice, Duration::from_secs(exp + 1 - unix_now()));
    alice.ping(99).unwrap();
    let scrape = scrape(&server);
    assert_eq!(
        common::metric(&scrape, "corecast_token_refreshes_total"),
        2.0
    );
}

#[test]
fn a_refresh_with_a_bad_or_mismatched_token_closes_the_session() {
    let server = common::start_with(hs256_config());
    let mut alice = login(&server, &claims("alice"));
    send_login(&mut alice, "alice", "garbage");
    match alice.expect(|d| match d {
        Data::LoginResponse(r) => Ok(r),
        other => Err(other),
    }) {
        Ok(r) => assert_eq!(r.error.unwrap().code(), ErrorCode::Unauthorized),
        other => panic!("expected a LoginResponse, got {other:?}"),
    }
    alice.expect_closed().unwrap();

    // player_id says carol, the token says bob: a mismatched token.
    let mut carol = login(&server, &claims("carol"));
    assert_rejected(
        carol.login("carol", Some(&token(&claims("bob")))),
        ErrorCode::Unauthorized,
    );
    carol.expect_closed().unwrap();
}

#[test]
fn a_refresh_after_exp_is_too_late() {
    let server = no_leeway();
    let short = Claims {
        exp: (unix_now() + 1) as f64,
        ..claims("alice")
    };
    let mut alice = login(&server, &short);
    alice.set_timeout(Duration::from_secs(5));
    let (code, _) = alice.expect_error().unwrap();
    assert_eq!(code, ErrorCode::Unauthorized);
    // The refresh arrives after the close was decided: the server does not answer it.
    send_login(&mut alice, "", &token(&claims("alice")));
    alice.expect_closed().unwrap();
}

#[test]
fn the_static_token_still_works_without_jwt_and_excludes_it() {
    let server = common::start_with(Config {
        auth_token: Some(Secret::new("dev-token")),
        ..common::config()
    });
    let mut c = server.connect();
    c.login("alice", Some("dev-token")).unwrap();
    // Without JWT a second login is ALREADY_LOGGED_IN, as in v1.
    assert_rejected(
        c.login("alice", Some("dev-token")),
        ErrorCode::AlreadyLoggedIn,
    );
    let both = Server::start(Config {
        auth_token: Some(Secret::new("dev-token")),
        ..hs256_config()
    });
    assert!(both.is_err());
}

#[test]
fn misconfigured_keys_stop_the_start_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "too short\n").unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let cases: [(Config, &str); 5] = [
        (
            Config {
                jwt_secret: Some(Secret::new("short")),
                ..common::config()
            },
            "at least 32",
        ),
        (
            Config {
                jwt_secret_file: Some(short),
                ..common::config()
            },
            "at least 32",
        ),
        (
            Config {
                jwt_public_key: Some(not_pem.clone()),
                ..common::config()
            },
            "not PEM",
        ),
        (
            Config {
                jwt_public_key: Some(not_pem),
                ..hs256_config()
            },
            "give one of",
        ),
        (
            Config {
                jwt_issuer: Some("x".into()),
                ..common::config()
            },
            "need a --jwt-* key",
        ),
    ];
    for (config, says) in cases {
        let e = Server::start(config).err().expect("refused").to_string();
        assert!(e.contains(says), "{says:?} not in {e:?}");
    }
}

/// `openssl` generates the key pairs ring cannot (RSA) and the PEM files an operator
/// would have (PKCS#8 private, SPKI public).
fn openssl_pair(dir: &std::path::Path, name: &str, genpkey: &[&str]) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let run = |args: Vec<&std::ffi::OsStr>| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl (scripts/test installs it)");
        assert!(out.status.success(), "{out:?}");
    };
    let mut args: Vec<&std::ffi::OsStr> = vec!["genpkey".as_ref()];
    args.extend(genpkey.iter().map(std::ffi::OsStr::new));
    args.extend([std::ffi::OsStr::new("-out"), private.as_os_str()]);
    run(args);
    run(vec![
        "pkey".as_ref(),
        "-in".as_ref(),
        private.as_os_str(),
        "-pubout".as_ref(),
        "-out".as_ref(),
        public.as_os_str(),
    ]);
    (private, public)
}

#[test]
fn asymmetric_keys_verify_their_tokens_and_refuse_the_hs256_confusion() {
    let dir = tempfile::tempdir().unwrap();
    let kinds: [(&str, &[&str]); 3] = [
        (
            "rsa",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        ),
        (
            "ec",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ),
        ("ed25519", &["-algorithm", "ed25519"]),
    ];
    for (name, genpkey) in kinds {
        let (private, public) = openssl_pair(dir.path(), name, genpkey);
        let server = common::start_with(Config {
            jwt_public_key: Some(public.clone()),
            ..common::config()
        });
        let signer = Signer::private_pem(&std::fs::read(&private).unwrap()).unwrap();
        let mut c = server.connect();
        c.login("", Some(&signer.sign(&claims(name)).unwrap()))
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        // An HS256 token whose "secret" is the server's own public key.
        let confused = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims("mallory"),
            &jsonwebtoken::EncodingKey::from_secret(&std::fs::read(&public).unwrap()),
        )
        .unwrap();
        assert_unauthorized(&server, "", Some(&confused), "signed with HS256");
        // A token from an HS256 signer is refused the same way.
        assert_unauthorized(&server, "", Some(&token(&claims("x"))), "signed with HS256");
    }
}

#[test]
fn corecast_token_mints_what_the_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let (private, public) = openssl_pair(dir.path(), "ed", &["-algorithm", "ed25519"]);
    let mint = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_corecast"))
            .arg("token")
            .args(args)
            .env_remove("CORECAST_JWT_SECRET")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let hs = mint(&[
        "--sub",
        "alice",
        "--secret-file",
        secret_file.to_str().unwrap(),
        "--rooms",
        "lobby,match-*",
        "--listen-only",
    ]);
    let server = common::start_with(Config {
        jwt_secret_file: Some(secret_file),
        ..common::config()
    });
    let mut alice = server.connect();
    alice.login("", Some(&hs)).unwrap();
    alice.join("match-3", None).unwrap();
    assert_rejected(alice.join("other", None), ErrorCode::Forbidden);
    alice.send_message("match-3", &[], "x").unwrap();
    assert_error(&mut alice, ErrorCode::Forbidden);

    let ed = mint(&[
        "--sub",
        "bob",
        "--ttl",
        "60",
        "--private-key",
        private.to_str().unwrap(),
    ]);
    let server = common::start_with(Config {
        jwt_public_key: Some(public),
        ..common::config()
    });
    server.connect().login("bob", Some(&ed)).unwrap();
    // No key: a clear error, exit 1.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corecast"))
        .args(["token", "--sub", "x"])
        .env_remove("CORECAST_JWT_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key"));
}
